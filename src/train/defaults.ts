/**
 * The default models' training, end to end: the data sets from the corpus (`buildDataSets`),
 * one model's training with held-out selection and test metrics in each precision
 * (`trainDefault`), and the model card from the metrics files (`renderCard`). The commands
 * scripts/build-training-data.ts, scripts/train-defaults.ts and scripts/card.ts are thin
 * wrappers; the CI test runs the same functions on a tiny subset.
 *
 * Files (under a data folder, data/build by default; git-ignored, rebuilt by the command):
 * `NAME-train.safetensors` (training pieces, split 0, and validation pieces, split 1: the held-out
 * evaluation of every epoch, which picks the epoch kept), `NAME-test.safetensors` (test pieces:
 * read only for the final metrics), `manifest.json` (pieces and examples per split, the corpus's
 * SHA-256, the commit of the data code, the baselines). Trained models go to another folder
 * (`NAME.safetensors` + `NAME.metrics.json`).
 *
 * ```ts
 * await buildDataSets({ out: "data/build", quick: true });
 * const m = await trainDefault("HarmonyPredictor", { data: "data/build", out: "out/trained" });
 * m.test.f32.accuracy;
 * ```
 */

import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CadenzaError } from "../errors.ts";
import type { LayerArch, ModelSpec } from "../model/spec.ts";
import { Model, type Precision } from "../model/model.ts";
import { writeSafetensors } from "../model/formats/safetensors.ts";
import { archParameterCount, EMOTION_MODELS, type EmotionModelName } from "../pipeline/emotion.ts";
import { defaultCorpusPath, fnv1a, readCorpus, type SplitName } from "./corpus.ts";
import {
  type LossName,
  readTrainingData,
  splitData,
  type TrainingData,
  writeTrainingData,
} from "./data.ts";
import { arousalStats, pieceLabels } from "./labels.ts";
import {
  chordBigramBaseline,
  type ClassBaseline,
  meanBaseline,
  sequenceBaselines,
  type ValueBaseline,
} from "./baselines.ts";
import {
  buildSet,
  melodyEvents,
  type PreparedPiece,
  preparePiece,
  repeatMinor,
  SET_NAMES,
  type SetName,
} from "./sets.ts";
import { fit } from "./loop.ts";
import { initSpec, withParams } from "./params.ts";
import { Progress } from "./progress.ts";
import { Trainer, type TrainerOptions } from "./trainer.ts";
import { scoreModel } from "./evaluate.ts";

const dense = (i: number, o: number, activation: LayerArch["activation"]): LayerArch => ({
  kind: "dense",
  inputSize: i,
  outputSize: o,
  activation,
  bias: true,
});
const transformer = (d: number): LayerArch => ({
  kind: "transformer",
  inputSize: d,
  outputSize: d,
  heads: 4,
  context: 32,
  ffDim: 4 * d,
  epsilon: 1e-5,
  activation: "gelu",
});

/**
 * The architectures trained here, as issue 10's design fixes them: the melody's first dense
 * layer takes [emotion 64, previous note 128, chord 64] = 256 and its last ends in softmax; the
 * harmony's takes [emotion 64, chord 64, span histogram 12] = 140; groove and dynamics are the
 * pipeline's own (src/pipeline/emotion.ts).
 */
export const TRAINED_ARCHS: Readonly<
  Record<Exclude<EmotionModelName, "EmotionRecognizer">, { inputSize: number; layers: LayerArch[] }>
> = {
  MelodyTransformer: {
    inputSize: 256,
    layers: [
      dense(256, 128, "linear"),
      transformer(128),
      transformer(128),
      dense(128, 128, "softmax"),
    ],
  },
  HarmonyPredictor: {
    inputSize: 140,
    layers: [dense(140, 256, "tanh"), dense(256, 128, "tanh"), dense(128, 64, "softmax")],
  },
  DynamicsEngine: archOf("DynamicsEngine"),
  GroovePredictor: archOf("GroovePredictor"),
};

function archOf(name: EmotionModelName): { inputSize: number; layers: LayerArch[] } {
  const info = EMOTION_MODELS.find((m) => m.name === name)!;
  return { inputSize: info.inputSize, layers: info.layers.map((l) => ({ ...l })) };
}

export type TrainedModelName = keyof typeof TRAINED_ARCHS;
export const TRAINED_MODELS = Object.keys(TRAINED_ARCHS) as TrainedModelName[];

export interface TrainPlan {
  set: SetName;
  loss: LossName;
  epochs: number;
  options: TrainerOptions;
}

/** How each model trains (the full run; --quick takes one epoch of the quick data). */
export const TRAIN_PLANS: Readonly<Record<TrainedModelName, TrainPlan>> = {
  MelodyTransformer: {
    set: "melody",
    loss: "xent",
    epochs: 12,
    options: { lr: 1e-3, lrMin: 1e-4, warmupSteps: 100, batch: 16, seqLen: 32, clipNorm: 1 },
  },
  HarmonyPredictor: {
    set: "harmony",
    loss: "xent",
    epochs: 20,
    options: { lr: 2e-3, lrMin: 1e-4, batch: 128, seqLen: 1 },
  },
  DynamicsEngine: {
    set: "dynamics",
    loss: "mse",
    epochs: 20,
    options: { lr: 2e-3, lrMin: 1e-4, batch: 128, seqLen: 1 },
  },
  GroovePredictor: {
    set: "groove",
    loss: "mse",
    epochs: 20,
    options: { lr: 2e-3, lrMin: 1e-4, batch: 128, seqLen: 1 },
  },
};

export const MODEL_SET: Readonly<Record<TrainedModelName, SetName>> = {
  MelodyTransformer: "melody",
  HarmonyPredictor: "harmony",
  DynamicsEngine: "dynamics",
  GroovePredictor: "groove",
};

/** The project's default data folder (git-ignored). */
export function defaultDataDir(): string {
  return fileURLToPath(new URL("../../data/build/", import.meta.url));
}

/** The last commit touching the data code, or "unknown" outside a git checkout. */
export function dataCodeCommit(): string {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  try {
    return execFileSync(
      "git",
      [
        "log",
        "-1",
        "--format=%H",
        "--",
        "scripts/data",
        "src/train/corpus.ts",
        "src/train/labels.ts",
        "src/train/sets.ts",
      ],
      { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
    ).trim() || "unknown";
  } catch {
    return "unknown";
  }
}

/** The quick subset: about one piece in `every`, chosen by hash (so every split has some). */
export function inQuickSubset(id: string, every = 40): boolean {
  return fnv1a(`quick:${id}`) % every === 0;
}

export interface Manifest {
  corpus: string;
  corpusSha256: string;
  dataCommit: string;
  quick: boolean;
  pieces: Record<SplitName, number>;
  examples: Record<SetName, Record<SplitName, number>>;
  /** Positions (targets) per test set. */
  baselines: {
    melody: { mostFrequent: ClassBaseline; ngram: ClassBaseline; chordBigram: ClassBaseline };
    harmony: { mostFrequent: ClassBaseline; ngram: ClassBaseline };
  };
  command: string;
}

export interface BuildOptions {
  out?: string;
  corpus?: string;
  quick?: boolean;
  /** One piece in this many for --quick (40). */
  quickEvery?: number;
  command?: string;
  log?: (line: string) => void;
}

/** Builds the four sets' train (+validation) and test files and the manifest. */
// deno-lint-ignore require-await -- a Promise by contract (callers await it), so that reading the corpus may stream later without changing the API
export async function buildDataSets(options: BuildOptions = {}): Promise<Manifest> {
  const out = options.out ?? defaultDataDir();
  const corpusPath = options.corpus ?? defaultCorpusPath();
  const log = options.log ?? (() => {});
  const quick = options.quick ?? false;
  mkdirSync(out, { recursive: true });
  const bytes = readFileSync(corpusPath);
  const all = readCorpus(corpusPath);
  // Labels' z-scores use the whole corpus's statistics (a property of the label definition).
  const stats = arousalStats(all);
  const pieces = quick ? all.filter((p) => inQuickSubset(p.id, options.quickEvery)) : all;
  log(`${pieces.length} pieces${quick ? " (quick subset)" : ""}`);
  const prepared: Record<SplitName, PreparedPiece[]> = { train: [], validation: [], test: [] };
  for (const p of pieces) {
    const pp = preparePiece(p, pieceLabels(p, stats));
    prepared[pp.split].push(pp);
  }
  const examples = {} as Manifest["examples"];
  for (const name of SET_NAMES) {
    const train = buildSet(name, repeatMinor(name, prepared.train), `${name}-train`);
    const val = buildSet(name, prepared.validation, `${name}-validation`);
    const test = buildSet(name, prepared.test, `${name}-test`);
    const joined = concat(train, val, `${name}-train`);
    joined.meta = {
      ...joined.meta,
      corpus: "data/corpus.jsonl.gz",
      split: "train 0, validation 1",
    };
    writeFileSync(join(out, `${name}-train.safetensors`), writeTrainingData(joined));
    test.meta = { ...test.meta, corpus: "data/corpus.jsonl.gz", split: "test" };
    writeFileSync(join(out, `${name}-test.safetensors`), writeTrainingData(test));
    examples[name] = { train: train.count, validation: val.count, test: test.count };
    log(`${name}: ${train.count} train, ${val.count} validation, ${test.count} test examples`);
  }
  const melodySeq = (ps: PreparedPiece[]) => ps.map((p) => melodyEvents(p).map((e) => e.pitch));
  const pairs = (ps: PreparedPiece[]) =>
    ps.map((p) => melodyEvents(p).map((e) => [e.pitch, e.chord] as const));
  const chordSeq = (ps: PreparedPiece[]) => ps.map((p) => p.spans.map((s) => s.chord));
  const manifest: Manifest = {
    corpus: "data/corpus.jsonl.gz",
    corpusSha256: createHash("sha256").update(bytes).digest("hex"),
    dataCommit: dataCodeCommit(),
    quick,
    pieces: {
      train: prepared.train.length,
      validation: prepared.validation.length,
      test: prepared.test.length,
    },
    examples,
    baselines: {
      melody: {
        ...sequenceBaselines(melodySeq(prepared.train), melodySeq(prepared.test), 128, 0),
        chordBigram: chordBigramBaseline(pairs(prepared.train), pairs(prepared.test), 128, 64),
      },
      harmony: sequenceBaselines(chordSeq(prepared.train), chordSeq(prepared.test), 64, 0),
    },
    command: options.command ?? "bun scripts/build-training-data.ts",
  };
  writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
}

function concat(a: TrainingData, b: TrainingData, source: string): TrainingData {
  const inputs = new Float32Array(a.inputs.length + b.inputs.length);
  inputs.set(a.inputs);
  inputs.set(b.inputs, a.inputs.length);
  const targets = a.targets instanceof Int32Array
    ? new Int32Array(a.targets.length + b.targets.length)
    : new Float32Array(a.targets.length + b.targets.length);
  targets.set(a.targets);
  targets.set(b.targets, a.targets.length);
  const lengths = new Int32Array(a.count + b.count);
  lengths.set(a.lengths);
  lengths.set(b.lengths, a.count);
  const split = new Uint8Array(a.count + b.count);
  split.fill(1, a.count);
  return { ...a, source, count: a.count + b.count, inputs, targets, lengths, split };
}

export interface PrecisionScore {
  loss: number;
  /** xent: next-class accuracy; mse: mean absolute error. */
  accuracy: number;
}

export interface ModelMetrics {
  model: string;
  set: SetName;
  loss: LossName;
  parameters: number;
  seedParameters: number;
  epochs: number;
  bestEpoch: number;
  steps: number;
  seconds: number;
  quick: boolean;
  options: TrainerOptions;
  /** Validation metrics after each epoch. */
  history: { epoch: number; trainLoss: number; loss: number; accuracy: number }[];
  /** The validation loss of the initial (untrained) weights: the loss falls from it. */
  initialLoss: number;
  examples: Record<SplitName, number>;
  pieces: Record<SplitName, number>;
  test: { f32: PrecisionScore; bf16: PrecisionScore; int8: PrecisionScore };
  baselines: (ClassBaseline | ValueBaseline)[];
  dataCommit: string;
  corpusSha256: string;
  trainedAt: string;
  command: string;
  /** Further held-out measures by name (e.g. the recognizer's valence and arousal correlations). */
  extra?: Record<string, number>;
}

export interface TrainOptions {
  data?: string;
  out: string;
  quick?: boolean;
  seed?: number;
  /** Overrides the plan's epochs. */
  epochs?: number;
  command?: string;
  progress?: boolean;
  log?: (line: string) => void;
}

/** Trains one default model from the data folder's files, writes NAME.safetensors + metrics. */
export async function trainDefault(
  name: TrainedModelName,
  options: TrainOptions,
): Promise<ModelMetrics> {
  const plan = TRAIN_PLANS[name];
  if (plan === undefined) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `unknown model "${name}"; known: ${TRAINED_MODELS.join(", ")}`,
    );
  }
  const dir = options.data ?? defaultDataDir();
  const log = options.log ?? (() => {});
  const manifestPath = join(dir, "manifest.json");
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  } catch (e) {
    throw new CadenzaError(
      "E_IO",
      `${manifestPath}: cannot read the data manifest (${(e as Error).message}); build the data ` +
        `first: bun scripts/build-training-data.ts`,
    );
  }
  const quick = options.quick ?? false;
  const all = await readTrainingData(join(dir, `${plan.set}-train.safetensors`));
  const test = await readTrainingData(join(dir, `${plan.set}-test.safetensors`));
  const { train, heldOut } = splitData(all, 0.1, 1);
  const epochs = options.epochs ?? (quick ? 1 : plan.epochs);
  const arch = TRAINED_ARCHS[name];
  const seed = options.seed ?? 1;
  const batchesPerEpoch = Math.floor(train.count / (plan.options.batch ?? 32));
  const trainerOptions: TrainerOptions = {
    ...plan.options,
    loss: plan.loss,
    totalSteps: batchesPerEpoch * epochs,
    warmupSteps: Math.min(plan.options.warmupSteps ?? 0, Math.floor(batchesPerEpoch * epochs / 4)),
  };
  const spec = initSpec({ ...arch, meta: { name } }, seed);
  const trainer = await Trainer.create(spec, trainerOptions, name);
  const started = performance.now();
  try {
    const initialLoss = trainer.evaluateData(heldOut).loss;
    const history: ModelMetrics["history"] = [];
    let best: Float32Array | null = null;
    let bestLoss = Infinity;
    let bestEpoch = 0;
    const result = await fit(trainer, train, heldOut, {
      epochs,
      seed,
      progress: options.progress === false
        ? undefined
        : new Progress({ label: name, totalSteps: batchesPerEpoch * epochs, intervalMs: 10_000 }),
      onEpoch: (epoch, m, trainLoss) => {
        if (m === null) return;
        history.push({ epoch, trainLoss, loss: m.loss, accuracy: m.accuracy });
        log(
          `${name} epoch ${epoch}: train ${trainLoss.toFixed(4)}, validation ${
            m.loss.toFixed(4)
          } / ${m.accuracy.toFixed(4)}`,
        );
        if (m.loss < bestLoss) {
          bestLoss = m.loss;
          bestEpoch = epoch;
          best = trainer.params();
        }
      },
    });
    const seconds = (performance.now() - started) / 1000;
    const kept = withParams(trainer.initial, best ?? trainer.params());
    const f32 = await scoreIn(kept, test, plan.loss, "f32");
    const bf16 = await scoreIn(kept, test, plan.loss, "bf16");
    const int8 = await scoreIn(kept, test, plan.loss, "int8");
    const baselines: (ClassBaseline | ValueBaseline)[] = plan.set === "melody"
      ? [
        manifest.baselines.melody.mostFrequent,
        manifest.baselines.melody.ngram,
        ...(manifest.baselines.melody.chordBigram ? [manifest.baselines.melody.chordBigram] : []),
      ]
      : plan.set === "harmony"
      ? [manifest.baselines.harmony.mostFrequent, manifest.baselines.harmony.ngram]
      : [
        meanBaseline(train.targets as Float32Array, test.targets as Float32Array, test.targetSize),
      ];
    const info = EMOTION_MODELS.find((m) => m.name === name)!;
    const metrics: ModelMetrics = {
      model: name,
      set: plan.set,
      loss: plan.loss,
      parameters: archParameterCount(arch.layers),
      seedParameters: info.seedParameters,
      epochs,
      bestEpoch,
      steps: result.steps,
      seconds,
      quick,
      options: trainerOptions,
      history,
      initialLoss,
      examples: manifest.examples[plan.set],
      pieces: manifest.pieces,
      test: { f32, bf16, int8 },
      baselines,
      dataCommit: manifest.dataCommit,
      corpusSha256: manifest.corpusSha256,
      trainedAt: new Date().toISOString(),
      command: options.command ??
        `bun scripts/train-defaults.ts --model ${name}${quick ? " --quick" : ""}`,
    };
    mkdirSync(options.out, { recursive: true });
    kept.meta = {
      ...(kept.meta ?? {}),
      name,
      trained: "true",
      data:
        `data/corpus.jsonl.gz (sha256 ${manifest.corpusSha256.slice(0, 16)}), ${plan.set} set, ` +
        `${manifest.pieces.train} training pieces${quick ? " (quick subset)" : ""}`,
      data_commit: manifest.dataCommit,
      metrics: JSON.stringify({ test: metrics.test, baselines, bestEpoch, epochs }),
      command: metrics.command,
    };
    delete kept.meta.untrained;
    writeFileSync(join(options.out, `${name}.safetensors`), writeSafetensors(kept));
    writeFileSync(
      join(options.out, `${name}.metrics.json`),
      JSON.stringify(metrics, null, 2) + "\n",
    );
    return metrics;
  } finally {
    trainer.dispose();
  }
}

async function scoreIn(
  spec: ModelSpec,
  data: TrainingData,
  loss: LossName,
  precision: Precision,
): Promise<PrecisionScore> {
  const model = await Model.create(spec, {
    precision,
    source: `${spec.meta?.name ?? "model"} (${precision})`,
  });
  try {
    const s = scoreModel(model, data, loss);
    return { loss: s.loss, accuracy: s.accuracy };
  } finally {
    model.dispose();
  }
}
