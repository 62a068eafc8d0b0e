/**
 * Accuracy of a pipeline directory on the held-out (test) sets, measured beside the FP32
 * models it was made from (issue 11, `cadenza eval`). Per model: its task metric (next-note and
 * next-chord accuracy, valence and arousal correlation per piece, mean squared error of groove
 * and dynamics), the same metric of the FP32 reference on the same data, top-1 agreement with
 * the reference (melody, harmony), the cosine similarity of the emotion embedding to the
 * reference's (recognizer), and weight bytes as the library holds them. Every model runs step by
 * step through `forward`/`process` exactly as in use; the statistics are float64.
 *
 * ```ts
 * const report = await evaluatePipeline({ dir: "out/compact", reference: "models/" });
 * for (const m of report.models) console.log(m.name, m.metric, m.value, m.reference, m.within);
 * ```
 */

import { existsSync } from "node:fs";
import { join } from "node:path";
import { CadenzaError } from "../errors.ts";
import type { Precision } from "../model/image.ts";
import { loadModel } from "../model/load.ts";
import type { Model } from "../model/model.ts";
import { EMOTION_MODELS, type EmotionModelName, modelFile } from "../pipeline/emotion.ts";
import { IGNORE_CLASS, readTrainingData, type TrainingData } from "../train/data.ts";
import { correlations } from "../train/recognizer-eval.ts";
import type { WindowRecord } from "../train/recognizer-data.ts";
import { readFileSync } from "node:fs";

/** Largest relative loss of a task metric that still counts as kept (issue 11: 5%). */
export const METRIC_TOLERANCE = 0.05;

/** The held-out set of each symbolic model in the data directory (scripts/build-training-data.ts). */
export const TEST_SETS: Readonly<Record<Exclude<EmotionModelName, "EmotionRecognizer">, string>> = {
  MelodyTransformer: "melody-test.safetensors",
  HarmonyPredictor: "harmony-test.safetensors",
  GroovePredictor: "groove-test.safetensors",
  DynamicsEngine: "dynamics-test.safetensors",
};

export interface MetricValue {
  /** The metric's name: "accuracy", "valence r", "arousal r", "mse". */
  metric: string;
  /** True when higher is better. */
  higherIsBetter: boolean;
  value: number;
  /** The FP32 reference's value on the same data. */
  reference: number;
  /** value / reference - 1. */
  relative: number;
  /** Within METRIC_TOLERANCE of the reference, in the worse direction. */
  within: boolean;
}

export interface ModelEvaluation {
  name: EmotionModelName;
  file: string;
  precision: Precision;
  parameters: number;
  weightBytes: number;
  referenceParameters: number;
  referenceWeightBytes: number;
  /** Task metrics; every one must be `within` for the model to keep its accuracy. */
  metrics: MetricValue[];
  /** Top-1 agreement with the reference (melody, harmony), over positions with a target. */
  agreement?: number;
  /** Mean cosine similarity of the 64 emotion values to the reference's, per step (recognizer). */
  cosine?: number;
  /** Cross-entropy (classes) or mean absolute error (values) of the model and the reference. */
  extra: Record<string, number>;
  /** Steps or positions scored. */
  positions: number;
}

export interface PipelineEvaluation {
  dir: string;
  reference: string;
  models: ModelEvaluation[];
  /** Models whose held-out data was not found (named with the command that builds it). */
  missing: string[];
  weightBytes: number;
  referenceWeightBytes: number;
  /** Every metric of every model within METRIC_TOLERANCE, and no model missing. */
  allWithin: boolean;
}

export interface EvaluateOptions {
  dir: string;
  /** The FP32 models compared with (default: the directory `compress.json` names, else models/). */
  reference: string;
  /** The symbolic held-out sets (default data/build). */
  data?: string;
  /** The recognizer's data folder with test.safetensors and windows.json (default data/recognizer). */
  recognizerData?: string;
  /** Load the directory's models at this precision (default: as stored). */
  precision?: Precision;
  library?: string;
  /** Score only the first N sequences of each set (quick checks). */
  limit?: number;
  onProgress?: (line: string) => void;
}

function metricValue(
  metric: string,
  higherIsBetter: boolean,
  value: number,
  reference: number,
): MetricValue {
  const relative = value / reference - 1;
  const within = higherIsBetter
    ? value >= reference * (1 - METRIC_TOLERANCE)
    : value <= reference * (1 + METRIC_TOLERANCE);
  return { metric, higherIsBetter, value, reference, relative, within };
}

function limited(data: TrainingData, limit: number | undefined): number {
  return limit === undefined ? data.count : Math.min(limit, data.count);
}

function argmax(y: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < y.length; j++) if (y[j] > y[best]) best = j;
  return best;
}

/** Next-note or next-chord: accuracy, cross-entropy and agreement, model and reference at once. */
/**
 * Steps model and reference through every sequence of `data` (state reset per sequence) and
 * hands each position's index and both outputs to `visit` (`kept` is reused between calls).
 */
function eachPosition(
  model: Model,
  ref: Model,
  data: TrainingData,
  limit: number | undefined,
  visit: (at: number, kept: Float32Array, r: Float32Array) => void,
): void {
  const kept = new Float32Array(model.outputSize);
  for (let n = 0; n < limited(data, limit); n++) {
    model.reset();
    ref.reset();
    for (let t = 0; t < data.lengths[n]; t++) {
      const at = n * data.steps + t;
      const x = data.inputs.subarray(at * data.inputSize, (at + 1) * data.inputSize);
      kept.set(model.forward(x));
      visit(at, kept, ref.forward(x));
    }
  }
}

function scoreClasses(model: Model, ref: Model, data: TrainingData, limit?: number) {
  let hits = 0, refHits = 0, agree = 0, positions = 0, xent = 0, refXent = 0;
  eachPosition(model, ref, data, limit, (at, kept, r) => {
    const id = data.targets[at];
    if (id === IGNORE_CLASS) return;
    const a = argmax(kept);
    const b = argmax(r);
    hits += a === id ? 1 : 0;
    refHits += b === id ? 1 : 0;
    agree += a === b ? 1 : 0;
    xent -= Math.log(Math.max(kept[id], 1e-30));
    refXent -= Math.log(Math.max(r[id], 1e-30));
    positions++;
  });
  return {
    accuracy: hits / positions,
    refAccuracy: refHits / positions,
    agreement: agree / positions,
    xent: xent / positions,
    refXent: refXent / positions,
    positions,
  };
}

/** Groove, dynamics: mean squared and absolute error per value. */
function scoreValues(model: Model, ref: Model, data: TrainingData, limit?: number) {
  const k = model.outputSize;
  let se = 0, refSe = 0, ae = 0, refAe = 0, elements = 0, positions = 0;
  eachPosition(model, ref, data, limit, (at, kept, r) => {
    const target = data.targets.subarray(at * k, (at + 1) * k);
    for (let j = 0; j < k; j++) {
      se += (kept[j] - target[j]) ** 2;
      refSe += (r[j] - target[j]) ** 2;
      ae += Math.abs(kept[j] - target[j]);
      refAe += Math.abs(r[j] - target[j]);
    }
    elements += k;
    positions++;
  });
  return {
    mse: se / elements,
    refMse: refSe / elements,
    mae: ae / elements,
    refMae: refAe / elements,
    positions,
  };
}

/** The recognizer: per-window mean valence and arousal, embedding cosine, squared error. */
function scoreRecognizer(
  model: Model,
  ref: Model,
  data: TrainingData,
  records: WindowRecord[],
  limit?: number,
) {
  const k = model.outputSize;
  const count = limited(data, limit);
  const predicted = new Float64Array(count * 2);
  const refPredicted = new Float64Array(count * 2);
  const block = new Float32Array(data.steps * k);
  let cosine = 0, se = 0, refSe = 0, steps = 0;
  for (let n = 0; n < count; n++) {
    model.reset();
    ref.reset();
    const x = data.inputs.subarray(
      n * data.steps * data.inputSize,
      (n + 1) * data.steps * data.inputSize,
    );
    block.set(model.process(x, data.steps));
    const r = ref.process(x, data.steps);
    for (let t = 0; t < data.steps; t++) {
      let dot = 0, aa = 0, bb = 0;
      const target = data.targets.subarray((n * data.steps + t) * k, (n * data.steps + t + 1) * k);
      for (let j = 0; j < k; j++) {
        const a = block[t * k + j];
        const b = r[t * k + j];
        dot += a * b;
        aa += a * a;
        bb += b * b;
        se += (a - target[j]) ** 2;
        refSe += (b - target[j]) ** 2;
      }
      cosine += aa === 0 || bb === 0 ? (aa === bb ? 1 : 0) : dot / Math.sqrt(aa * bb);
      predicted[2 * n] += block[t * k] / data.steps;
      predicted[2 * n + 1] += block[t * k + 1] / data.steps;
      refPredicted[2 * n] += r[t * k] / data.steps;
      refPredicted[2 * n + 1] += r[t * k + 1] / data.steps;
      steps++;
    }
  }
  const kept = records.slice(0, count);
  return {
    own: correlations(kept, predicted),
    ref: correlations(kept, refPredicted),
    cosine: cosine / steps,
    mse: se / (steps * k),
    refMse: refSe / (steps * k),
    positions: steps,
  };
}

function readRecords(dir: string): WindowRecord[] {
  const path = join(dir, "windows.json");
  try {
    const index = JSON.parse(readFileSync(path, "utf8")) as { test?: WindowRecord[] };
    if (!Array.isArray(index.test)) throw new Error("no test windows");
    return index.test;
  } catch (err) {
    throw new CadenzaError("E_FORMAT", `${path}: ${(err as Error).message}`);
  }
}

/**
 * Runs the held-out sets through the directory's models and the reference's. Throws E_IO naming
 * the file when a model file of either directory is missing; a missing data set is listed in
 * `missing` (and `allWithin` is then false).
 */
export async function evaluatePipeline(options: EvaluateOptions): Promise<PipelineEvaluation> {
  const data = options.data ?? "data/build";
  const recognizerData = options.recognizerData ?? "data/recognizer";
  const progress = options.onProgress ?? (() => {});
  for (const dir of [options.dir, options.reference]) {
    for (const info of EMOTION_MODELS) {
      const file = modelFile(dir, info.name);
      if (!existsSync(file)) {
        throw new CadenzaError(
          "E_IO",
          `eval: ${file} is missing: ${dir} is not a pipeline directory (it holds ` +
            `${EMOTION_MODELS.map((m) => `${m.name}.safetensors`).join(", ")})`,
        );
      }
    }
  }
  const models: ModelEvaluation[] = [];
  const missing: string[] = [];
  for (const [index, info] of EMOTION_MODELS.entries()) {
    const name = info.name;
    const file = modelFile(options.dir, name);
    const setPath = name === "EmotionRecognizer"
      ? join(recognizerData, "test.safetensors")
      : join(data, TEST_SETS[name]);
    const model = await loadModel(file, { library: options.library, precision: options.precision });
    const ref = await loadModel(modelFile(options.reference, name), {
      library: options.library,
      precision: "f32",
      dequantise: true,
    });
    try {
      const base = {
        name,
        file,
        precision: model.precision,
        parameters: model.parameterCount,
        weightBytes: model.weightBytes,
        referenceParameters: ref.parameterCount,
        referenceWeightBytes: ref.weightBytes,
      };
      if (!existsSync(setPath)) {
        const build = name === "EmotionRecognizer"
          ? "bun scripts/recognizer-data.ts"
          : "bun scripts/build-training-data.ts";
        missing.push(`${name}: ${setPath} (build it: ${build})`);
        models.push({ ...base, metrics: [], extra: {}, positions: 0 });
        continue;
      }
      progress(`eval: [${index + 1}/${EMOTION_MODELS.length}] ${name} on ${setPath}`);
      const set = await readTrainingData(setPath);
      if (name === "EmotionRecognizer") {
        const s = scoreRecognizer(model, ref, set, readRecords(recognizerData), options.limit);
        models.push({
          ...base,
          metrics: [
            metricValue("valence r", true, s.own.valence, s.ref.valence),
            metricValue("arousal r", true, s.own.arousal, s.ref.arousal),
          ],
          cosine: s.cosine,
          extra: { mse: s.mse, referenceMse: s.refMse },
          positions: s.positions,
        });
      } else if (set.targetKind === "classes") {
        const s = scoreClasses(model, ref, set, options.limit);
        models.push({
          ...base,
          metrics: [metricValue("accuracy", true, s.accuracy, s.refAccuracy)],
          agreement: s.agreement,
          extra: { crossEntropy: s.xent, referenceCrossEntropy: s.refXent },
          positions: s.positions,
        });
      } else {
        const s = scoreValues(model, ref, set, options.limit);
        models.push({
          ...base,
          metrics: [metricValue("mse", false, s.mse, s.refMse)],
          extra: { mae: s.mae, referenceMae: s.refMae },
          positions: s.positions,
        });
      }
    } finally {
      model.dispose();
      ref.dispose();
    }
  }
  const weightBytes = models.reduce((s, m) => s + m.weightBytes, 0);
  return {
    dir: options.dir,
    reference: options.reference,
    models,
    missing,
    weightBytes,
    referenceWeightBytes: models.reduce((s, m) => s + m.referenceWeightBytes, 0),
    allWithin: missing.length === 0 && models.every((m) => m.metrics.every((v) => v.within)),
  };
}
