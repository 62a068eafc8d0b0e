/**
 * The EmotionRecognizer's training (the data: src/train/recognizer-data.ts): the pipeline's
 * architecture from a seeded initialisation, mse on the 64-value emotion vector at every block
 * of a window, AdamW with a cosine schedule; after every epoch the validation pieces'
 * correlations pick the epoch kept. The kept weights are scored on the test pieces in f32,
 * bf16 and int8 (mse and mean absolute error through ordinary step-by-step inference, and
 * valence / arousal correlation per piece: a window's prediction is the mean of outputs 0 and 1
 * over its blocks, a piece's the mean of its windows), beside the linear baseline.
 *
 * Writes OUT/EmotionRecognizer.safetensors (metadata: trained, data, data_commit, metrics,
 * command) and OUT/EmotionRecognizer.metrics.json: the fields of the other models' metrics
 * files (src/train/defaults.ts, what the card reads; `extra` holds the correlations the card
 * lists) plus `emotion` (RecognizerEmotion: every correlation, per epoch and precision).
 */

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CadenzaError } from "../errors.ts";
import { writeSafetensors } from "../model/formats/safetensors.ts";
import { Model, type Precision } from "../model/model.ts";
import type { ModelSpec } from "../model/spec.ts";
import { archParameterCount, EMOTION_MODELS } from "../pipeline/emotion.ts";
import { meanBaseline } from "./baselines.ts";
import { defaultCorpusPath } from "./corpus.ts";
import { readTrainingData, type TrainingData } from "./data.ts";
import { dataCodeCommit, type ModelMetrics, type PrecisionScore } from "./defaults.ts";
import { scoreModel } from "./evaluate.ts";
import { fit } from "./loop.ts";
import { initSpec, withParams } from "./params.ts";
import { Progress } from "./progress.ts";
import type { WindowRecord } from "./recognizer-data.ts";
import {
  type Correlations,
  correlations,
  type LinearBaseline,
  linearBaseline,
} from "./recognizer-eval.ts";
import { Trainer, type TrainerOptions } from "./trainer.ts";

export const RECOGNIZER = "EmotionRecognizer";

/** What the metrics file adds for the EmotionRecognizer. */
export interface RecognizerEmotion {
  /** Test pieces: correlations of the kept weights in each precision. */
  test: Record<Precision, Correlations>;
  /** Validation correlations after each epoch (f32). */
  history: { epoch: number; valence: number; arousal: number }[];
  /** Ridge regression from a window's mean features (the linear baseline). */
  linear: LinearBaseline;
}

export type RecognizerMetrics = Omit<ModelMetrics, "set"> & {
  set: "audio";
  emotion: RecognizerEmotion;
};

export interface RecognizerTrainOptions {
  /** The folder scripts/recognizer-data.ts wrote (default data/recognizer). */
  data: string;
  out: string;
  epochs: number;
  seed?: number;
  quick?: boolean;
  lr?: number;
  command?: string;
  progress?: boolean;
  /** Native library choice (default: CADENZA_LIB, else safe). */
  library?: string;
  log?: (line: string) => void;
}

type SplitSet = { data: TrainingData; records: WindowRecord[] };

/** The data folder's three sets and their window records. */
export async function readRecognizerData(
  dir: string,
): Promise<Record<"train" | "validation" | "test", SplitSet>> {
  let index: Record<string, unknown>;
  try {
    index = JSON.parse(readFileSync(join(dir, "windows.json"), "utf8"));
  } catch (e) {
    throw new CadenzaError(
      "E_IO",
      `${join(dir, "windows.json")}: cannot read (${(e as Error).message}); build the data ` +
        "first: bun scripts/recognizer-data.ts",
    );
  }
  const load = async (split: "train" | "validation" | "test"): Promise<SplitSet> => {
    const data = await readTrainingData(join(dir, `${split}.safetensors`));
    const records = index[split] as WindowRecord[];
    if (!Array.isArray(records) || records.length !== data.count) {
      throw new CadenzaError(
        "E_FORMAT",
        `${dir}: windows.json lists ${records?.length} ${split} windows, the data holds ${data.count}`,
      );
    }
    return { data, records };
  };
  return {
    train: await load("train"),
    validation: await load("validation"),
    test: await load("test"),
  };
}

/** Each window's mean predicted valence and arousal (outputs 0 and 1 over its blocks). */
export function predictWindows(model: Model, data: TrainingData): Float64Array {
  const { count, steps, inputSize } = data;
  const out = new Float64Array(count * 2);
  const k = model.outputSize;
  for (let n = 0; n < count; n++) {
    model.reset();
    const y = model.process(
      data.inputs.subarray(n * steps * inputSize, (n + 1) * steps * inputSize),
      steps,
    );
    let v = 0;
    let a = 0;
    for (let t = 0; t < steps; t++) {
      v += y[t * k];
      a += y[t * k + 1];
    }
    out[2 * n] = v / steps;
    out[2 * n + 1] = a / steps;
  }
  return out;
}

async function withModel<T>(
  spec: ModelSpec,
  precision: Precision,
  library: string | undefined,
  body: (m: Model) => T,
): Promise<T> {
  const model = await Model.create(spec, {
    precision,
    source: `${RECOGNIZER} (${precision})`,
    ...(library !== undefined ? { library } : {}),
  });
  try {
    return body(model);
  } finally {
    model.dispose();
  }
}

/** Trains the EmotionRecognizer; writes the model and its metrics file into `out`. */
export async function trainRecognizer(options: RecognizerTrainOptions): Promise<RecognizerMetrics> {
  const log = options.log ?? ((line: string) => console.error(line));
  const seed = options.seed ?? 1;
  const sets = await readRecognizerData(options.data);
  const info = EMOTION_MODELS.find((m) => m.name === RECOGNIZER)!;
  const arch = { inputSize: info.inputSize, layers: info.layers.map((l) => ({ ...l })) };
  const steps = sets.train.data.steps;
  const batch = 32;
  const batchesPerEpoch = Math.floor(sets.train.data.count / batch);
  const trainerOptions: TrainerOptions = {
    optimizer: "adamw",
    lr: options.lr ?? 1e-3,
    lrMin: 1e-4,
    warmupSteps: Math.min(50, Math.floor((batchesPerEpoch * options.epochs) / 4)),
    totalSteps: batchesPerEpoch * options.epochs,
    batch,
    seqLen: steps,
    loss: "mse",
    clipNorm: 1,
    weightDecay: 0.01,
    ...(options.library !== undefined ? { library: options.library } : {}),
  };
  const spec = initSpec({ ...arch, meta: { name: RECOGNIZER } }, seed);
  const trainer = await Trainer.create(spec, trainerOptions, RECOGNIZER);
  const started = performance.now();
  try {
    const initialLoss = trainer.evaluateData(sets.validation.data).loss;
    const history: ModelMetrics["history"] = [];
    const emotionHistory: RecognizerEmotion["history"] = [];
    let best: Float32Array | null = null;
    let bestScore = -Infinity;
    let bestEpoch = 0;
    let pending: Promise<void> = Promise.resolve();
    const result = await fit(trainer, sets.train.data, sets.validation.data, {
      epochs: options.epochs,
      seed,
      progress: options.progress === false ? undefined : new Progress({
        label: RECOGNIZER,
        totalSteps: batchesPerEpoch * options.epochs,
        intervalMs: 10_000,
      }),
      onEpoch: (epoch, m, trainLoss) => {
        if (m === null) return;
        const params = trainer.params();
        history.push({ epoch, trainLoss, loss: m.loss, accuracy: m.accuracy });
        pending = pending.then(async () => {
          const c = await withModel(
            withParams(trainer.initial, params),
            "f32",
            options.library,
            (model) =>
              correlations(sets.validation.records, predictWindows(model, sets.validation.data)),
          );
          emotionHistory.push({ epoch, valence: c.valence, arousal: c.arousal });
          log(
            `${RECOGNIZER} epoch ${epoch}: train ${trainLoss.toFixed(4)}, validation ` +
              `${m.loss.toFixed(4)}, valence r ${c.valence.toFixed(3)}, arousal r ${
                c.arousal.toFixed(3)
              }`,
          );
          const score = (c.valence + c.arousal) / 2;
          if (score > bestScore) {
            bestScore = score;
            bestEpoch = epoch;
            best = params;
          }
        });
      },
    });
    await pending;
    const seconds = (performance.now() - started) / 1000;
    const kept = withParams(trainer.initial, best ?? trainer.params());
    const test = {} as Record<Precision, PrecisionScore>;
    const testCorrelations = {} as Record<Precision, Correlations>;
    for (const precision of ["f32", "bf16", "int8"] as const) {
      await withModel(kept, precision, options.library, (model) => {
        const s = scoreModel(model, sets.test.data, "mse");
        test[precision] = { loss: s.loss, accuracy: s.accuracy };
        testCorrelations[precision] = correlations(
          sets.test.records,
          predictWindows(model, sets.test.data),
        );
      });
    }
    const linear = linearBaseline(sets);
    const pieces = (s: SplitSet) => new Set(s.records.map((r) => r.piece)).size;
    const corpusSha256 = createHash("sha256").update(readFileSync(defaultCorpusPath())).digest(
      "hex",
    );
    const command = options.command ??
      `bun scripts/train-recognizer.ts --epochs ${options.epochs}${
        options.quick ? " --quick" : ""
      }`;
    const metrics: RecognizerMetrics = {
      model: RECOGNIZER,
      set: "audio",
      loss: "mse",
      parameters: archParameterCount(arch.layers),
      seedParameters: info.seedParameters,
      epochs: options.epochs,
      bestEpoch,
      steps: result.steps,
      seconds,
      quick: options.quick === true,
      options: trainerOptions,
      history,
      initialLoss,
      examples: {
        train: sets.train.data.count,
        validation: sets.validation.data.count,
        test: sets.test.data.count,
      },
      pieces: {
        train: pieces(sets.train),
        validation: pieces(sets.validation),
        test: pieces(sets.test),
      },
      test,
      baselines: [
        meanBaseline(
          sets.train.data.targets as Float32Array,
          sets.test.data.targets as Float32Array,
          sets.test.data.targetSize,
        ),
      ],
      dataCommit: dataCodeCommit(),
      corpusSha256,
      trainedAt: new Date().toISOString(),
      command,
      extra: {
        "valence r per test piece (f32)": testCorrelations.f32.valence,
        "arousal r per test piece (f32)": testCorrelations.f32.arousal,
        "valence r (bf16)": testCorrelations.bf16.valence,
        "arousal r (bf16)": testCorrelations.bf16.arousal,
        "valence r (int8)": testCorrelations.int8.valence,
        "arousal r (int8)": testCorrelations.int8.arousal,
        "valence sign = mode, share of test pieces (f32)": testCorrelations.f32.modeAccuracy,
        "linear baseline valence r": linear.test.valence,
        "linear baseline arousal r": linear.test.arousal,
      },
      emotion: { test: testCorrelations, history: emotionHistory, linear },
    };
    mkdirSync(options.out, { recursive: true });
    kept.meta = {
      ...(kept.meta ?? {}),
      name: RECOGNIZER,
      trained: "true",
      data: `data/corpus.jsonl.gz (sha256 ${corpusSha256.slice(0, 16)}) rendered with FluidSynth ` +
        `(scripts/recognizer-data.ts): ${metrics.pieces.train} training pieces, ` +
        `${metrics.examples.train} windows of ${steps} blocks${
          options.quick ? " (quick subset)" : ""
        }`,
      data_commit: metrics.dataCommit,
      metrics: JSON.stringify({
        test: { ...test },
        correlations: {
          valence: testCorrelations.f32.valence,
          arousal: testCorrelations.f32.arousal,
        },
        linear: { valence: linear.test.valence, arousal: linear.test.arousal },
        bestEpoch,
        epochs: options.epochs,
      }),
      command,
    };
    delete kept.meta.untrained;
    writeFileSync(join(options.out, `${RECOGNIZER}.safetensors`), writeSafetensors(kept));
    writeFileSync(
      join(options.out, `${RECOGNIZER}.metrics.json`),
      JSON.stringify(metrics, null, 2) + "\n",
    );
    return metrics;
  } finally {
    trainer.dispose();
  }
}
