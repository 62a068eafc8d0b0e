/**
 * The float64 training reference: the loss of a model on a batch of sequences, computed with
 * test/reference.ts (the float64 forward written from docs/DESIGN.md alone) and the losses as
 * docs/DESIGN.md ("Training ABI") defines them, and its gradient by central finite differences.
 * The native f32 gradients (cz_trainer_grad) are checked against it.
 *
 * The weights are held as float64 here (test/reference.ts only indexes its tensors, so a
 * Float64Array serves where its types say Float32Array): a perturbation w +- h is exact, and
 * the difference quotient's error is O(h^2) truncation plus O(1e-16 / h) rounding.
 */

import type { LayerSpec, ModelSpec } from "../src/model/spec.ts";
import { parameterLayout } from "../src/train/params.ts";
import { ReferenceModel } from "./reference.ts";

export type RefLoss = "mse" | "xent" | "bce" | "kl";

export interface RefBatch {
  batch: number;
  seqLen: number;
  /** batch * seqLen * inputSize */
  inputs: ArrayLike<number>;
  /** As the ABI takes them: ids [batch][seqLen] (xent with ids) or [batch][seqLen][K]. */
  targets: ArrayLike<number>;
  /** [batch][seqLen] weights, or null for all ones. */
  mask: ArrayLike<number> | null;
}

export interface RefLossConfig {
  loss: RefLoss;
  /** xent: targets are class ids (else distributions). */
  ids?: boolean;
  labelSmoothing?: number;
  temperature?: number;
}

/** A float64 copy of the spec; tensors become Float64Array (see the header). */
export function float64Spec(spec: ModelSpec): ModelSpec {
  const layers = spec.layers.map((l) => {
    const tensors: Record<string, Float32Array> = {};
    for (const [k, v] of Object.entries(l.tensors)) {
      tensors[k] = Float64Array.from(v) as unknown as Float32Array;
    }
    return { ...l, tensors };
  });
  return { ...spec, layers };
}

/**
 * The spec whose output is the loss's z: the last layer's pre-activation when it is a dense,
 * conv1d, batchnorm or activation layer ending in softmax (xent, kl) or sigmoid (bce).
 */
export function logitSpec(spec: ModelSpec, loss: RefLoss): ModelSpec {
  const last = spec.layers[spec.layers.length - 1];
  const fused = ["dense", "conv1d", "batchnorm", "activation"].includes(last.kind);
  const want = loss === "bce" ? "sigmoid" : loss === "xent" || loss === "kl" ? "softmax" : null;
  if (!fused || want === null || last.activation !== want) return spec;
  const layers: LayerSpec[] = [...spec.layers];
  layers[layers.length - 1] = { ...last, activation: "linear" };
  return { ...spec, layers };
}

function logSoftmax(z: ArrayLike<number>, scale: number): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < z.length; i++) max = Math.max(max, z[i] * scale);
  let sum = 0;
  for (let i = 0; i < z.length; i++) sum += Math.exp(z[i] * scale - max);
  const lse = max + Math.log(sum);
  return Float64Array.from({ length: z.length }, (_, i) => z[i] * scale - lse);
}

/** log(1 + e^x) without overflow. */
function softplus(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

/** The loss at one position (z the model's logits or output, t its targets). */
export function positionLoss(z: Float64Array, t: ArrayLike<number>, cfg: RefLossConfig): number {
  const k = z.length;
  switch (cfg.loss) {
    case "mse": {
      let s = 0;
      for (let j = 0; j < k; j++) s += (z[j] - t[j]) ** 2;
      return s / k;
    }
    case "bce": {
      let s = 0;
      for (let j = 0; j < k; j++) s += t[j] * softplus(-z[j]) + (1 - t[j]) * softplus(z[j]);
      return s / k;
    }
    case "xent": {
      const logp = logSoftmax(z, 1);
      if (cfg.ids) {
        const s = cfg.labelSmoothing ?? 0;
        let sum = 0;
        for (let j = 0; j < k; j++) sum += (s / k + (j === t[0] ? 1 - s : 0)) * logp[j];
        return -sum;
      }
      let sum = 0;
      for (let j = 0; j < k; j++) sum -= t[j] * logp[j];
      return sum;
    }
    case "kl": {
      const temp = cfg.temperature ?? 1;
      const logq = logSoftmax(z, 1 / temp);
      const logp = logSoftmax(t, 1 / temp);
      let sum = 0;
      for (let j = 0; j < k; j++) sum += Math.exp(logp[j]) * (logp[j] - logq[j]);
      return temp * temp * sum;
    }
  }
}

/**
 * The mask-weighted mean loss of `spec` (float64 or float32 tensors) over the batch: each
 * sequence from zero state, its positions run step by step.
 */
export function referenceLoss(spec: ModelSpec, b: RefBatch, cfg: RefLossConfig): number {
  const model = new ReferenceModel(logitSpec(spec, cfg.loss));
  const f = spec.inputSize;
  const k = model.outputSize;
  const perStep = cfg.loss === "xent" && cfg.ids ? 1 : k;
  let total = 0;
  let weight = 0;
  for (let n = 0; n < b.batch; n++) {
    model.reset();
    for (let t = 0; t < b.seqLen; t++) {
      const p = n * b.seqLen + t;
      const x = Array.from({ length: f }, (_, i) => b.inputs[p * f + i]);
      const z = model.forward(x);
      const w = b.mask === null ? 1 : b.mask[p];
      if (w === 0) continue;
      const tgt = Array.from({ length: perStep }, (_, j) => b.targets[p * perStep + j]);
      total += w * positionLoss(z, tgt, cfg);
      weight += w;
    }
  }
  return total / weight;
}

/** The model output (final activation applied) at every position: [batch][seqLen][K]. */
export function referenceOutputs(spec: ModelSpec, b: Omit<RefBatch, "targets" | "mask">) {
  const model = new ReferenceModel(spec);
  const f = spec.inputSize;
  const out = new Float64Array(b.batch * b.seqLen * model.outputSize);
  for (let n = 0; n < b.batch; n++) {
    model.reset();
    for (let t = 0; t < b.seqLen; t++) {
      const p = n * b.seqLen + t;
      const x = Array.from({ length: f }, (_, i) => b.inputs[p * f + i]);
      out.set(model.forward(x), p * model.outputSize);
    }
  }
  return out;
}

/** Where a parameter index lives: the tensor array and the index in it. */
function locate(spec: ModelSpec, index: number): [Float32Array, number] {
  for (const s of parameterLayout(spec)) {
    if (index >= s.offset && index < s.offset + s.length) {
      return [spec.layers[s.layer].tensors[s.name], index - s.offset];
    }
  }
  throw new Error(`parameter ${index} is beyond the model`);
}

/**
 * Central differences (L(w + h) - L(w - h)) / 2h for the parameters at `indices`, in float64,
 * h = step * max(1, |w|).
 */
export function finiteDifferences(
  spec: ModelSpec,
  b: RefBatch,
  cfg: RefLossConfig,
  indices: readonly number[],
  step = 1e-5,
): Float64Array {
  const s64 = float64Spec(spec);
  const out = new Float64Array(indices.length);
  indices.forEach((index, i) => {
    const [tensor, at] = locate(s64, index);
    const w = tensor[at];
    const h = step * Math.max(1, Math.abs(w));
    tensor[at] = w + h;
    const up = referenceLoss(s64, b, cfg);
    tensor[at] = w - h;
    const down = referenceLoss(s64, b, cfg);
    tensor[at] = w;
    out[i] = (up - down) / (2 * h);
  });
  return out;
}

/**
 * Parameters to check: every index of a tensor up to `perTensor` long, else `perTensor` of
 * them spread evenly (first and last included), so every tensor of every layer is covered.
 */
export function sampledIndices(spec: ModelSpec, perTensor: number): number[] {
  const out: number[] = [];
  for (const s of parameterLayout(spec)) {
    if (s.length <= perTensor) {
      for (let i = 0; i < s.length; i++) out.push(s.offset + i);
    } else {
      for (let i = 0; i < perTensor; i++) {
        out.push(s.offset + Math.round((i * (s.length - 1)) / (perTensor - 1)));
      }
    }
  }
  return out;
}
