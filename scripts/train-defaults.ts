/**
 * Trains the default music models from the built data sets (scripts/build-training-data.ts):
 * each with the Trainer/fit API of `cadenza train`, the epoch with the best validation loss kept,
 * then scored on the test pieces in FP32, bf16 and int8. Writes OUT/NAME.safetensors (metadata:
 * trained, data, data_commit, metrics, command) and OUT/NAME.metrics.json (what the card reads).
 *
 *   bun scripts/train-defaults.ts [--model NAME|all] [--quick] [--data DIR] [--out DIR]
 */

import process from "node:process";
import { parseArgs } from "node:util";
import {
  defaultDataDir,
  trainDefault,
  TRAINED_MODELS,
  type TrainedModelName,
} from "../src/train/defaults.ts";

const HELP = `usage: bun scripts/train-defaults.ts [--model NAME|all] [--quick] [--epochs N]
                                     [--data DIR] [--out DIR] [--seed S]

Trains ${TRAINED_MODELS.join(", ")} (or all) on the sets built by
scripts/build-training-data.ts (--data, default data/build/) and writes NAME.safetensors and
NAME.metrics.json into --out (default data/build/trained/). --quick: one epoch (use it with data
built by --quick). --epochs overrides the model's planned epochs.`;

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    model: { type: "string", default: "all" },
    quick: { type: "boolean", default: false },
    epochs: { type: "string" },
    data: { type: "string" },
    out: { type: "string" },
    seed: { type: "string", default: "1" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const names: TrainedModelName[] = values.model === "all"
  ? [...TRAINED_MODELS].reverse() // the small models first
  : [values.model as TrainedModelName];
for (const n of names) {
  if (!TRAINED_MODELS.includes(n)) {
    console.error(
      `--model: unknown model "${n}"; expected all or one of ${TRAINED_MODELS.join(", ")}`,
    );
    process.exit(2);
  }
}
const epochs = values.epochs === undefined ? undefined : Number(values.epochs);
if (epochs !== undefined && !(Number.isInteger(epochs) && epochs >= 1)) {
  console.error(`--epochs: expected a positive integer, got ${values.epochs}`);
  process.exit(2);
}
const data = values.data ?? defaultDataDir();
const out = values.out ?? `${data.replace(/\/$/, "")}/trained`;
for (const name of names) {
  const m = await trainDefault(name, {
    data,
    out,
    quick: values.quick,
    epochs,
    seed: Number(values.seed),
    command: `bun scripts/train-defaults.ts --model ${name}${values.quick ? " --quick" : ""}` +
      (epochs !== undefined ? ` --epochs ${epochs}` : ""),
    log: (line) => console.error(line),
  });
  const base = m.baselines.map((b) =>
    "accuracy" in b ? `${b.name} ${b.accuracy.toFixed(4)}` : `${b.name} mse ${b.mse.toFixed(4)}`
  ).join(", ");
  console.log(
    `${name}: ${m.seconds.toFixed(0)} s, kept epoch ${m.bestEpoch}/${m.epochs}; test ` +
      `FP32 ${m.test.f32.loss.toFixed(4)} / ${m.test.f32.accuracy.toFixed(4)}, bf16 ` +
      `${m.test.bf16.accuracy.toFixed(4)}, int8 ${m.test.int8.accuracy.toFixed(4)} ` +
      `(loss / ${m.loss === "xent" ? "accuracy" : "mean abs error"}); baselines: ${base}`,
  );
}
