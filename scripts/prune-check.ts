/**
 * 50% pruning of the trained default models, measured on their held-out test sets:
 * `bun scripts/prune-check.ts [--data data/build] [--models models] [--only NAME,...]
 * [--epochs N] [--sparsity S] [--json FILE]`. For each of MelodyTransformer, HarmonyPredictor,
 * GroovePredictor and DynamicsEngine (the EmotionRecognizer needs the audio set: skipped), it
 * prints the task metric (accuracy for melody and harmony, mean squared error for groove and
 * dynamics) of the FP32 model, of 50% unstructured and 50% structured pruning without
 * fine-tuning, and of each fine-tuned on the model's training set (NAME-train.safetensors; its
 * validation part is held out) for --epochs epochs (default: 1 for the melody model, whose
 * epoch takes minutes here, 2 for the others). Every figure is `scoreModel` on
 * NAME-test.safetensors through the ordinary inference path (the test set is never trained
 * on). Deterministic: the same data and flags give the same table.
 */

import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { loadSpec, modelFromSpec } from "../src/model/load.ts";
import type { ModelSpec } from "../src/model/spec.ts";
import { prune, pruneFinetune } from "../src/optimize/prune.ts";
import { type LossName, readTrainingData, type TrainingData } from "../src/train/data.ts";
import { MODEL_SET, TRAIN_PLANS, type TrainedModelName } from "../src/train/defaults.ts";
import { scoreModel } from "../src/train/evaluate.ts";
import { Progress } from "../src/train/progress.ts";

const args = process.argv.slice(2);
function flag(name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
}

const dataDir = flag("data", "data/build");
const modelsDir = flag("models", "models");
/** Fine-tuning epochs: --epochs for every model, else 1 for melody (a long epoch) and 2 for the rest. */
const EPOCHS: Record<TrainedModelName, number> = {
  MelodyTransformer: 1,
  HarmonyPredictor: 2,
  GroovePredictor: 2,
  DynamicsEngine: 2,
};
const epochsFlag = flag("epochs", "");
const epochsOf = (name: TrainedModelName) => epochsFlag === "" ? EPOCHS[name] : Number(epochsFlag);
const sparsity = Number(flag("sparsity", "0.5"));
const names = flag("only", "HarmonyPredictor,GroovePredictor,DynamicsEngine,MelodyTransformer")
  .split(",") as TrainedModelName[];
const jsonPath = flag("json", "");

/** Fine-tuning learning rate: a tenth to a half of each model's training peak. */
const FINETUNE_LR: Record<TrainedModelName, number> = {
  MelodyTransformer: 2e-4,
  HarmonyPredictor: 5e-4,
  GroovePredictor: 5e-4,
  DynamicsEngine: 5e-4,
};

interface Row {
  model: string;
  metric: string;
  fp32: number;
  unstructured: number;
  unstructuredFinetuned: number;
  structured: number;
  structuredFinetuned: number;
  parameters: number;
  structuredParameters: number;
  epochs: number;
  seconds: number;
}

async function score(spec: ModelSpec, test: TrainingData, loss: LossName): Promise<number> {
  const model = await modelFromSpec(spec);
  try {
    const s = scoreModel(model, test, loss);
    return loss === "mse" ? s.loss : s.accuracy;
  } finally {
    model.dispose();
  }
}

async function finetuned(
  name: TrainedModelName,
  spec: ModelSpec,
  train: TrainingData,
  structured: boolean,
): Promise<ModelSpec> {
  const plan = TRAIN_PLANS[name];
  const epochs = epochsOf(name);
  const batches = Math.floor(train.count * 0.9 / (plan.options.batch ?? 32));
  const progress = new Progress({
    totalSteps: epochs * batches,
    label: `${name} ${structured ? "structured" : "unstructured"}`,
  });
  const r = await pruneFinetune(spec, {
    sparsity,
    structured,
    data: train,
    loss: plan.loss,
    epochs,
    lr: FINETUNE_LR[name],
    batch: plan.options.batch,
    seqLen: plan.options.seqLen,
    seed: 1,
    library: "fast",
    trainer: { clipNorm: 1 },
    onProgress: (p) =>
      progress.update({
        epoch: p.epoch,
        epochs: p.epochs,
        step: p.step,
        loss: p.loss,
        examples: p.examples,
      }),
  });
  progress.done();
  return r.spec;
}

const rows: Row[] = [];
for (const name of names) {
  const set = MODEL_SET[name];
  const trainPath = join(dataDir, `${set}-train.safetensors`);
  const testPath = join(dataDir, `${set}-test.safetensors`);
  if (!existsSync(trainPath) || !existsSync(testPath)) {
    console.error(`${name}: no ${trainPath} / ${testPath}: run bun scripts/build-training-data.ts`);
    process.exit(1);
  }
  const started = performance.now();
  const loss = TRAIN_PLANS[name].loss;
  const { spec } = await loadSpec(join(modelsDir, `${name}.safetensors`));
  const test = await readTrainingData(testPath);
  const train = await readTrainingData(trainPath);
  const u = prune(spec, { sparsity });
  const s = prune(spec, { sparsity, structured: true });
  const row: Row = {
    model: name,
    metric: loss === "mse" ? "mean sq. error" : "accuracy",
    fp32: await score(spec, test, loss),
    unstructured: await score(u.spec, test, loss),
    structured: await score(s.spec, test, loss),
    unstructuredFinetuned: await score(await finetuned(name, spec, train, false), test, loss),
    structuredFinetuned: await score(await finetuned(name, spec, train, true), test, loss),
    parameters: s.report.parametersBefore,
    structuredParameters: s.report.parametersAfter,
    epochs: epochsOf(name),
    seconds: (performance.now() - started) / 1000,
  };
  rows.push(row);
  console.error(JSON.stringify(row));
}

const rel = (v: number, base: number, metric: string) => {
  const change = metric === "accuracy" ? v / base - 1 : -(v / base - 1);
  return `${change >= 0 ? "+" : ""}${(change * 100).toFixed(1)}%`;
};
const fmt = (v: number) => v.toFixed(4);
console.log(
  `| model | metric | FP32 | unstructured ${sparsity * 100}% | + fine-tuned | structured ${
    sparsity * 100
  }% (params) | + fine-tuned |`,
);
console.log("|---|---|---:|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(
    `| ${r.model} | ${r.metric} | ${fmt(r.fp32)} | ${fmt(r.unstructured)} (${
      rel(r.unstructured, r.fp32, r.metric)
    }) | ${fmt(r.unstructuredFinetuned)} (${rel(r.unstructuredFinetuned, r.fp32, r.metric)}) | ${
      fmt(r.structured)
    } (${rel(r.structured, r.fp32, r.metric)}; ${r.structuredParameters}/${r.parameters}) | ${
      fmt(r.structuredFinetuned)
    } (${rel(r.structuredFinetuned, r.fp32, r.metric)}) |`,
  );
}
console.log(
  "\nRelative change in the task metric against FP32 (positive: better); fine-tuning " +
    rows.map((r) => `${r.model} ${r.epochs}`).join(", ") + " epoch(s) on the training part.",
);
if (jsonPath !== "") writeFileSync(jsonPath, JSON.stringify({ sparsity, rows }, null, 2));
