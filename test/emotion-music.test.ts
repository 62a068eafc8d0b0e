/** Issue 10's acceptance 3 in small, under Bun (cases in test/cases/emotion_music.ts). */

import { afterAll, test } from "bun:test";
import { disposeEmotionPipeline, emotionMusicCases } from "./cases/emotion_music.ts";

afterAll(disposeEmotionPipeline);

for (const c of emotionMusicCases) test(c.name, c.run, 60_000);
