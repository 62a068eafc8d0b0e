/**
 * Scoring a loaded inference Model (any precision: f32, bf16, int8) on data, step by step
 * through `model.forward` exactly as it runs in use, each sequence from `reset()`; and the
 * teacher logits that distillation trains a student on. The arithmetic of the scores is
 * float64 here, so an int8 model is judged by what its int8 kernels output and nothing else.
 */

import { CadenzaError } from "../errors.ts";
import type { Model } from "../model/model.ts";
import type { ModelSpec } from "../model/spec.ts";
import { IGNORE_CLASS, type LossName, type TrainingData } from "./data.ts";

export interface ModelScore {
  /** Mean loss over positions with a target (xent: -log p of the target class). */
  loss: number;
  /** xent: argmax == target; bce: (p >= 0.5) == (t >= 0.5) per value; mse: mean abs error. */
  accuracy: number;
  positions: number;
}

const FUSED = ["dense", "conv1d", "batchnorm", "activation"];

/** The spec with a final softmax or sigmoid removed (its outputs are then the logits). */
export function logitsSpec(
  spec: ModelSpec,
): { spec: ModelSpec; removed: "softmax" | "sigmoid" | null } {
  const last = spec.layers[spec.layers.length - 1];
  const act = last.activation;
  if (!FUSED.includes(last.kind) || (act !== "softmax" && act !== "sigmoid")) {
    return { spec, removed: null };
  }
  const layers = [...spec.layers];
  layers[layers.length - 1] = { ...last, activation: "linear" };
  return { spec: { ...spec, layers }, removed: act };
}

function softmaxInPlace(z: Float64Array): void {
  let max = -Infinity;
  for (const v of z) max = Math.max(max, v);
  let sum = 0;
  for (let i = 0; i < z.length; i++) sum += z[i] = Math.exp(z[i] - max);
  for (let i = 0; i < z.length; i++) z[i] /= sum;
}

/**
 * Scores `model` on `data` with `loss`. For xent the model's outputs are read as
 * probabilities when it ends in softmax, else as logits (softmax applied here); for bce as
 * probabilities when it ends in sigmoid, else as logits.
 */
export function scoreModel(model: Model, data: TrainingData, loss: LossName): ModelScore {
  if (data.inputSize !== model.inputSize) {
    throw new CadenzaError(
      "E_SHAPE",
      `${data.source}: inputs have ${data.inputSize} values per step, ${model.source} takes ` +
        `${model.inputSize}`,
    );
  }
  // model.layers, not model.spec: an int8-stored model would dequantise for spec.
  const last = model.layers[model.layers.length - 1].activation;
  const k = model.outputSize;
  const p = new Float64Array(k);
  let total = 0;
  let hits = 0;
  let positions = 0;
  let elements = 0;
  for (let n = 0; n < data.count; n++) {
    model.reset();
    for (let t = 0; t < data.lengths[n]; t++) {
      const at = n * data.steps + t;
      const y = model.forward(data.inputs.subarray(at * data.inputSize, (at + 1) * data.inputSize));
      p.set(y);
      if (data.targetKind === "classes") {
        const id = data.targets[at];
        if (id === IGNORE_CLASS) continue;
        if (last !== "softmax") softmaxInPlace(p);
        let best = 0;
        for (let j = 1; j < k; j++) if (p[j] > p[best]) best = j;
        total -= Math.log(Math.max(p[id], 1e-30));
        hits += best === id ? 1 : 0;
        positions++;
        continue;
      }
      const tgt = data.targets.subarray(at * k, (at + 1) * k);
      positions++;
      for (let j = 0; j < k; j++) {
        if (loss === "bce") {
          const q = last === "sigmoid" ? p[j] : 1 / (1 + Math.exp(-p[j]));
          const c = Math.min(Math.max(q, 1e-12), 1 - 1e-12);
          total -= (tgt[j] * Math.log(c) + (1 - tgt[j]) * Math.log(1 - c)) / k;
          hits += (q >= 0.5) === (tgt[j] >= 0.5) ? 1 : 0;
        } else {
          total += (p[j] - tgt[j]) ** 2 / k;
          hits += Math.abs(p[j] - tgt[j]);
        }
        elements++;
      }
    }
  }
  if (positions === 0) {
    throw new CadenzaError("E_ARGUMENT", `${data.source}: no position has a target`);
  }
  const accuracy = data.targetKind === "classes" ? hits / positions : hits / elements;
  return { loss: total / positions, accuracy, positions };
}

/**
 * The teacher's logits at every step of `data` ([N][T][K], zeros past each length), run
 * through `teacher` as loaded: distillation's targets (loss kl). `logitModel` must be the
 * teacher's spec without its final softmax (logitsSpec), loaded like the teacher.
 */
export function teacherLogits(logitModel: Model, data: TrainingData): TrainingData {
  const k = logitModel.outputSize;
  const targets = new Float32Array(data.count * data.steps * k);
  for (let n = 0; n < data.count; n++) {
    logitModel.reset();
    for (let t = 0; t < data.lengths[n]; t++) {
      const at = n * data.steps + t;
      targets.set(
        logitModel.forward(data.inputs.subarray(at * data.inputSize, (at + 1) * data.inputSize)),
        at * k,
      );
    }
  }
  return {
    ...data,
    source: `${data.source} (teacher logits)`,
    targetKind: "values",
    targets,
    targetSize: k,
    meta: { ...data.meta, loss: "kl" },
  };
}
