/**
 * Makes the committed optimisation artefacts from models/ (docs/OPTIMIZATION.md): the distilled
 * students in models/compact/ (EmotionRecognizer, MelodyTransformer; architectures in
 * models/compact/*.arch.json) and the QAT int8 files in models/qat/. Each is one `cadenza`
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
  {
    kind: "students",
    model: "EmotionRecognizer",
    argv: [
      "distill",
      "--teacher",
      "models/EmotionRecognizer.safetensors",
      "--student",
      "models/compact/EmotionRecognizer.arch.json",
      "--data",
      RECOGNIZER_TRAIN,
      "--eval",
      RECOGNIZER_VALIDATION,
      "--epochs",
      "6",
      "--library",
      "fast",
      "--checkpoint",
      "out/optimize-ckpt/recognizer.ckpt.safetensors",
      "--out",
      "models/compact/EmotionRecognizer.safetensors",
    ],
  },
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
