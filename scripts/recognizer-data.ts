/**
 * Builds the EmotionRecognizer's training data: corpus pieces rendered with FluidSynth at 48 kHz,
 * heard through the project's feature extractor per 128-sample block, paired with the pieces'
 * emotion labels (src/train/recognizer-data.ts says how). Writes, under --out (default
 * data/recognizer/, git-ignored):
 *   train.safetensors, validation.safetensors, test.safetensors   cadenza-data, loss mse,
 *       inputs [N][T][128], targets [N][T][64]
 *   windows.json   per split, every window's piece, render plan, valence and arousal
 *
 *   bun scripts/recognizer-data.ts [--quick] [--steps 128] [--jobs 2] [--out DIR] [--cache DIR]
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { arousalStats } from "../src/train/labels.ts";
import { readCorpus, type SplitName } from "../src/train/corpus.ts";
import { writeTrainingData } from "../src/train/data.ts";
import { pieceTempo } from "../src/train/labels.ts";
import {
  FULL_SIZES,
  QUICK_SIZES,
  type RenderedWindows,
  renderLabeller,
  renderPlan,
  renderWindows,
  selectPieces,
  WINDOWS_PER_RENDER,
  windowsToData,
} from "../src/train/recognizer-data.ts";

const HELP = `bun scripts/recognizer-data.ts [options]

Renders corpus pieces with FluidSynth, computes the feature extractor's 128 features per
128-sample block, and writes the EmotionRecognizer's training data (cadenza-data safetensors).

  --quick        a small subset (24 train, 6 validation, 6 test pieces; about a minute)
  --steps T      blocks per window (default 128: 0.34 s at 48 kHz)
  --jobs J       renders in flight at once (default 2)
  --out DIR      where to write (default data/recognizer, or data/recognizer-quick with --quick)
  --cache DIR    keep the rendered WAV files there and reuse them (a changed feature extractor
                 then needs no FluidSynth run); default: no cache
  --help         this text
`;

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    quick: { type: "boolean", default: false },
    steps: { type: "string", default: "128" },
    jobs: { type: "string", default: "2" },
    out: { type: "string" },
    cache: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const steps = Number(values.steps);
const jobs = Number(values.jobs);
if (!(Number.isInteger(steps) && steps >= 1 && steps <= 1024)) {
  throw new Error(`--steps ${values.steps}: expected an integer 1..1024`);
}
if (!(Number.isInteger(jobs) && jobs >= 1 && jobs <= 16)) {
  throw new Error(`--jobs ${values.jobs}: expected an integer 1..16`);
}
const out = values.out ?? (values.quick ? "data/recognizer-quick" : "data/recognizer");
const sizes = values.quick ? QUICK_SIZES : FULL_SIZES;

const started = performance.now();
const pieces = readCorpus();
const labeller = renderLabeller(arousalStats(pieces));
const splits: SplitName[] = ["train", "validation", "test"];
const work = splits.flatMap((split) =>
  selectPieces(pieces, split, sizes[split]).map((piece) => ({ split, piece }))
);
const rendered = new Map<SplitName, RenderedWindows[]>(splits.map((s) => [s, []]));
const results: (RenderedWindows | undefined)[] = new Array(work.length);
let next = 0;
let done = 0;
const tty = process.stderr.isTTY === true;
const report = () => {
  const elapsed = (performance.now() - started) / 1000;
  const eta = done > 0 ? (elapsed / done) * (work.length - done) : NaN;
  const line = `render ${done}/${work.length} pieces, ${elapsed.toFixed(0)} s, ETA ${
    Number.isFinite(eta) ? eta.toFixed(0) : "?"
  } s`;
  process.stderr.write(tty ? `\r${line}` : `${line}\n`);
};
async function worker(): Promise<void> {
  while (next < work.length) {
    const i = next++;
    const { piece } = work[i];
    const plan = renderPlan(piece, 0, pieceTempo(piece));
    results[i] = await renderWindows(piece, plan, labeller, steps, undefined, values.cache);
    done++;
    if (tty || done % 25 === 0 || done === work.length) report();
  }
}
await Promise.all(Array.from({ length: jobs }, worker));
if (tty) process.stderr.write("\n");
work.forEach((w, i) => rendered.get(w.split)!.push(results[i]!));

mkdirSync(out, { recursive: true });
const index: Record<string, unknown> = {
  steps,
  windowsPerRender: WINDOWS_PER_RENDER,
  sizes,
  renderSeconds: Number(((performance.now() - started) / 1000).toFixed(1)),
};
for (const split of splits) {
  const { data, records } = windowsToData(
    rendered.get(split)!,
    steps,
    join(out, `${split}.safetensors`),
    {
      task: "EmotionRecognizer: features per 128-sample block -> emotion vector of the labels",
      data: "data/corpus.jsonl.gz rendered by scripts/recognizer-data.ts",
      split,
      pieces: String(rendered.get(split)!.length),
      steps: String(steps),
    },
    split === "train" ? 0 : 1,
  );
  writeFileSync(join(out, `${split}.safetensors`), writeTrainingData(data));
  index[split] = records;
  process.stderr.write(`${split}: ${data.count} windows of ${steps} blocks\n`);
}
writeFileSync(join(out, "windows.json"), JSON.stringify(index));
process.stderr.write(
  `wrote ${out}/ in ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
);
