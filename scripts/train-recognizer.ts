/**
 * Trains the EmotionRecognizer on the rendered corpus (build the data first:
 * bun scripts/recognizer-data.ts). Writes OUT/EmotionRecognizer.safetensors and
 * OUT/EmotionRecognizer.metrics.json (what the card reads), and prints the test figures.
 *
 *   bun scripts/train-recognizer.ts [--quick] [--epochs N] [--data DIR] [--out DIR] [--seed S]
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { trainRecognizer } from "../src/train/recognizer-train.ts";

const HELP = `bun scripts/train-recognizer.ts [options]

Trains the EmotionRecognizer (the pipeline's architecture, seeded) on the data of
scripts/recognizer-data.ts, keeps the epoch with the best validation correlation, and scores it
on the test pieces (f32, bf16, int8) beside the linear baseline.

  --quick        the quick data (data/recognizer-quick) and 2 epochs
  --epochs N     epochs (default 8; 2 with --quick)
  --data DIR     the data folder (default data/recognizer, or data/recognizer-quick)
  --out DIR      where the model and metrics go (default data/build/trained)
  --seed S       initialisation and shuffle seed (default 1)
  --lr X         peak learning rate (default 0.001)
  --help         this text
`;

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    quick: { type: "boolean", default: false },
    epochs: { type: "string" },
    data: { type: "string" },
    out: { type: "string", default: "data/build/trained" },
    seed: { type: "string", default: "1" },
    lr: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const quick = values.quick === true;
const epochs = Number(values.epochs ?? (quick ? 2 : 8));
const seed = Number(values.seed);
const lr = values.lr === undefined ? undefined : Number(values.lr);
if (!(Number.isInteger(epochs) && epochs >= 1)) {
  throw new Error(`--epochs ${values.epochs}: expected an integer >= 1`);
}
if (!(Number.isInteger(seed) && seed >= 0)) {
  throw new Error(`--seed ${values.seed}: expected an integer >= 0`);
}
if (lr !== undefined && !(lr > 0)) throw new Error(`--lr ${values.lr}: expected a number > 0`);
const args = process.argv.slice(2).join(" ");
const m = await trainRecognizer({
  data: values.data ?? (quick ? "data/recognizer-quick" : "data/recognizer"),
  out: values.out!,
  epochs,
  seed,
  quick,
  lr,
  command: `bun scripts/train-recognizer.ts${args === "" ? "" : ` ${args}`}`,
});
const e = m.emotion;
const f = (x: number) => x.toFixed(3);
process.stdout.write(
  `${m.model}: ${m.pieces.test} test pieces, kept epoch ${m.bestEpoch}/${m.epochs}, ${
    m.seconds.toFixed(0)
  } s\n` +
    `  valence r: f32 ${f(e.test.f32.valence)}, bf16 ${f(e.test.bf16.valence)}, int8 ${
      f(e.test.int8.valence)
    }; ` +
    `linear ${f(e.linear.test.valence)}\n` +
    `  arousal r: f32 ${f(e.test.f32.arousal)}, bf16 ${f(e.test.bf16.arousal)}, int8 ${
      f(e.test.int8.arousal)
    }; ` +
    `linear ${f(e.linear.test.arousal)}\n` +
    `  mode (valence sign) accuracy per piece: f32 ${f(e.test.f32.modeAccuracy)}\n` +
    `wrote ${values.out}/${m.model}.safetensors and .metrics.json\n`,
);
