/** Issue 10's acceptance 3 in small, under Deno (cases in test/cases/emotion_music.ts). */

import { disposeEmotionPipeline, emotionMusicCases } from "../cases/emotion_music.ts";

for (const c of emotionMusicCases) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
}
Deno.test({ name: "emotion -> music: dispose the shared pipeline", fn: disposeEmotionPipeline });
