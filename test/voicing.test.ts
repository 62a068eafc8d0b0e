/** The chords under the melody, read back from generated MIDI, under Bun (test/cases/voicing.ts). */

import { afterAll, test } from "bun:test";
import { disposeVoicingPipeline, voicingCases } from "./cases/voicing.ts";

afterAll(disposeVoicingPipeline);

for (const c of voicingCases) test(c.name, c.run, 60_000);
