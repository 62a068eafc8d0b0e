/** The EmotionRecognizer's data and baseline under Deno (cases in test/cases/recognizer.ts). */

import { recognizerCases } from "../cases/recognizer.ts";

for (const c of recognizerCases) {
  Deno.test({
    name: c.skip === undefined ? c.name : `${c.name} (skipped: ${c.skip})`,
    ignore: c.skip !== undefined,
    fn: c.run,
  });
}
