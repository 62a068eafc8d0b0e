/**
 * The linear baseline of the EmotionRecognizer: ridge regression from a window's mean features
 * to valence and arousal, fitted on the training windows, its penalty chosen on validation,
 * scored per held-out (test) piece. Prints JSON.
 *
 *   bun scripts/recognizer-baseline.ts [--data data/recognizer]
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { readTrainingData } from "../src/train/data.ts";
import { linearBaseline } from "../src/train/recognizer-eval.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { data: { type: "string", default: "data/recognizer" }, help: { type: "boolean" } },
});
if (values.help) {
  process.stdout.write(
    "bun scripts/recognizer-baseline.ts [--data DIR]\n\nRidge baseline (window-mean features ->" +
      " valence, arousal) on DIR's train/validation/test sets (scripts/recognizer-data.ts).\n",
  );
  process.exit(0);
}
const dir = values.data!;
const index = JSON.parse(readFileSync(join(dir, "windows.json"), "utf8"));
const load = async (split: "train" | "validation" | "test") => ({
  data: await readTrainingData(join(dir, `${split}.safetensors`)),
  records: index[split],
});
const result = linearBaseline({
  train: await load("train"),
  validation: await load("validation"),
  test: await load("test"),
});
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
