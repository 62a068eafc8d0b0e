/** The chords under the melody, read back from generated MIDI, under Deno (test/cases/voicing.ts). */

import { disposeVoicingPipeline, voicingCases } from "../cases/voicing.ts";

for (const c of voicingCases) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
}
Deno.test({ name: "voicing: dispose the shared pipeline", fn: disposeVoicingPipeline });
