/** The EmotionRecognizer's data and baseline under Bun (cases in test/cases/recognizer.ts). */

import { test } from "bun:test";
import { recognizerCases } from "./cases/recognizer.ts";

for (const c of recognizerCases) {
  if (c.skip === undefined) test(c.name, c.run, 60_000);
  else test.skip(`${c.name} (skipped: ${c.skip})`, c.run);
}
