/**
 * Makes the committed optimisation artefacts from models/ (docs/OPTIMIZATION.md): the distilled
 * students in models/compact/ (MelodyTransformer from models/compact/MelodyTransformer.arch.json;
 * EmotionRecognizer from the teacher pruned structurally) and the QAT int8 files in models/qat/. Each is one `cadenza`
 * command, printed before it runs; rerun after models/ changes, then
 * `bun scripts/optimize-table.ts`.
 *
 *   bun scripts/optimize-models.ts [--only students|qat] [--model NAME]
 *
 * Needs data/build (bun scripts/build-training-data.ts) and, for the recognizer,
 * data/recognizer (bun scripts/recognizer-data.ts). Run it niced on a shared machine.
 */

import { mkdirSync, rmSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import { main } from "../src/cli/main.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    only: { type: "string" },
    model: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  process.stdout.write(
    "bun scripts/optimize-models.ts [--only students|qat] [--model NAME]\n" +
      "Distils the students into models/compact/ and writes the QAT int8 files into models/qat/.\n",
  );
  process.exit(0);
}

interface Step {
  kind: "students" | "qat";
  model: string;
  argv: string[];
}

const TASKS: Record<string, string> = {
  MelodyTransformer: "melody",
  HarmonyPredictor: "harmony",
  GroovePredictor: "groove",
  DynamicsEngine: "dynamics",
};

/** The recognizer's training set: windows of rendered audio, teacher outputs as targets. */
const RECOGNIZER_TRAIN = "data/recognizer/train.safetensors";
const RECOGNIZER_VALIDATION = "data/recognizer/validation.safetensors";

const steps: Step[] = [
  {
    kind: "students",
    model: "MelodyTransformer",
    argv: [
      "distill",
      "--teacher",
      "models/MelodyTransformer.safetensors",
      "--student",
      "models/compact/MelodyTransformer.arch.json",
      "--data",
      "data/build/melody-train.safetensors",
      "--epochs",
      "8",
      "--library",
      "fast",
      "--checkpoint",
      "out/optimize-ckpt/melody.ckpt.safetensors",
      "--out",
      "out/optimize-ckpt/MelodyTransformer.8.safetensors",
    ],
  },
  {
    // Four more epochs at a lower rate from the 8-epoch student (the committed one).
    kind: "students",
    model: "MelodyTransformer",
    argv: [
      "distill",
      "--teacher",
      "models/MelodyTransformer.safetensors",
      "--student",
      "out/optimize-ckpt/MelodyTransformer.8.safetensors",
      "--data",
      "data/build/melody-train.safetensors",
      "--epochs",
      "4",
      "--lr",
      "3e-4",
      "--library",
      "fast",
      "--checkpoint",
      "out/optimize-ckpt/melody2.ckpt.safetensors",
      "--out",
      "models/compact/MelodyTransformer.safetensors",
    ],
  },
  // The recognizer's student starts from the teacher itself, structurally pruned by 40% (whole
  // units: dense 512 -> 307, 256 -> 154, LSTM 168 -> 101; 196,987 parameters, 0.40x), then
  // matches the teacher's outputs (mse) in three runs of falling learning rate. Students
  // distilled from scratch (models/compact/README.md) kept arousal but lost 9-17% of the
  // valence correlation.
  {
    kind: "students",
    model: "EmotionRecognizer",
    argv: [
      "prune",
      "models/EmotionRecognizer.safetensors",
      "out/optimize-ckpt/EmotionRecognizer.pruned.safetensors",
      "--sparsity",
      "0.4",
      "--structured",
    ],
  },
  ...[["8", "5e-4", "pruned", "r1"], ["16", "3e-4", "r1", "r2"], ["16", "2e-4", "r2", "final"]]
    .map(([epochs, lr, from, to]): Step => ({
      kind: "students",
      model: "EmotionRecognizer",
      argv: [
        "distill",
        "--teacher",
        "models/EmotionRecognizer.safetensors",
        "--student",
        `out/optimize-ckpt/EmotionRecognizer.${from}.safetensors`,
        "--data",
        RECOGNIZER_TRAIN,
        "--eval",
        RECOGNIZER_VALIDATION,
        "--epochs",
        epochs,
        "--lr",
        lr,
        "--library",
        "fast",
        "--checkpoint",
        `out/optimize-ckpt/recognizer-${to}.ckpt.safetensors`,
        "--out",
        to === "final"
          ? "models/compact/EmotionRecognizer.safetensors"
          : `out/optimize-ckpt/EmotionRecognizer.${to}.safetensors`,
      ],
    })),
  ...Object.entries(TASKS).map(([model, task]): Step => ({
    kind: "qat",
    model,
    argv: [
      "quantize",
      `models/${model}.safetensors`,
      `models/qat/${model}.safetensors`,
      "--qat",
      "--data",
      `data/build/${task}-train.safetensors`,
      "--epochs",
      "1",
      "--library",
      "fast",
      "--checkpoint",
      `out/optimize-ckpt/${model}.qat.ckpt.safetensors`,
    ],
  })),
];

mkdirSync("out/optimize-ckpt", { recursive: true });
for (const step of steps) {
  if (values.only !== undefined && values.only !== step.kind) continue;
  if (values.model !== undefined && values.model !== step.model) continue;
  process.stderr.write(`optimize-models: bun src/cli/main.ts ${step.argv.join(" ")}\n`);
  const code = await main(step.argv);
  if (code !== 0) {
    process.stderr.write(`optimize-models: ${step.model} (${step.kind}) exited ${code}\n`);
    process.exit(code);
  }
}
rmSync("out/optimize-ckpt", { recursive: true, force: true });
