/**
 * A model's parameters as the training ABI holds them: one f32 vector, layer by layer, each
 * layer's tensors in the order of "Canonical layer specs" (docs/DESIGN.md, "Training ABI"),
 * each row-major. This file maps between that vector and a ModelSpec's named tensors, and
 * initialises a spec's tensors from a seed when a model is given as an architecture alone.
 */

import { CadenzaError } from "../errors.ts";
import { MATRIX_TENSORS } from "../model/image.ts";
import {
  type LayerArch,
  type LayerSpec,
  type ModelSpec,
  TENSOR_NAMES,
  tensorShapes,
} from "../model/spec.ts";
import { TrainRng } from "./rng.ts";

export interface ParamSlot {
  layer: number;
  name: string;
  offset: number;
  length: number;
  /** A weight matrix (weight decay and int8 apply to it). */
  matrix: boolean;
}

/** Where each tensor of `spec` sits in the parameter vector. */
export function parameterLayout(spec: ModelSpec): ParamSlot[] {
  const slots: ParamSlot[] = [];
  let offset = 0;
  spec.layers.forEach((layer, i) => {
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const length = layer.tensors[name].length;
      const matrix = MATRIX_TENSORS[layer.kind].includes(name);
      slots.push({ layer: i, name, offset, length, matrix });
      offset += length;
    }
  });
  return slots;
}

/** The parameter vector of `spec` (a copy). */
export function flattenParams(spec: ModelSpec): Float32Array {
  const slots = parameterLayout(spec);
  const last = slots[slots.length - 1];
  const out = new Float32Array(last === undefined ? 0 : last.offset + last.length);
  for (const s of slots) out.set(spec.layers[s.layer].tensors[s.name], s.offset);
  return out;
}

/** `spec` with its tensors replaced by copies of the values in `params`. */
export function withParams(spec: ModelSpec, params: Float32Array): ModelSpec {
  const slots = parameterLayout(spec);
  const total = slots.reduce((n, s) => n + s.length, 0);
  if (params.length !== total) {
    throw new CadenzaError(
      "E_SHAPE",
      `withParams: expected ${total} parameters, got ${params.length}`,
    );
  }
  const layers: LayerSpec[] = spec.layers.map((layer) => ({ ...layer, tensors: {} }));
  for (const s of slots) {
    layers[s.layer].tensors[s.name] = params.slice(s.offset, s.offset + s.length);
  }
  return { ...spec, layers, meta: spec.meta === undefined ? undefined : { ...spec.meta } };
}

function uniform(rng: TrainRng, length: number, limit: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (rng.float() * 2 - 1) * limit;
  return out;
}

/** Glorot-uniform limit for a [rows][cols] matrix. */
function glorot(rows: number, cols: number): number {
  return Math.sqrt(6 / (rows + cols));
}

/**
 * Seeded initial tensors for an architecture: matrices Glorot uniform (the LSTM forget-gate
 * bias 1, so early gradients flow through time), biases and norm shifts 0, norm gains 1,
 * prelu slopes 0.25, batchnorm statistics mean 0 and variance 1. Same seed, same values.
 */
export function initLayer(arch: LayerArch, rng: TrainRng): LayerSpec {
  const shapes = tensorShapes(arch);
  const tensors: Record<string, Float32Array> = {};
  const per = (rows: number, cols: number, count = 1) =>
    uniform(rng, rows * cols * count, glorot(rows, cols));
  for (const name of TENSOR_NAMES(arch.kind, arch)) {
    const shape = shapes[name];
    const length = shape.reduce((a, b) => a * b, 1);
    if (MATRIX_TENSORS[arch.kind].includes(name)) {
      const cols = length / shape[0];
      // Gated layers: each gate's block is its own matrix for the fan-in/fan-out.
      const gates = arch.kind === "lstm" ? 4 : arch.kind === "gru" ? 3 : 1;
      tensors[name] = per(shape[0] / gates, cols, gates);
    } else if (/^(gamma|ln\d_g)$/.test(name) || name === "var") {
      tensors[name] = new Float32Array(length).fill(1);
    } else if (name === "alpha") {
      tensors[name] = new Float32Array(length).fill(0.25);
    } else {
      tensors[name] = new Float32Array(length);
    }
  }
  if (arch.kind === "lstm") tensors.b.fill(1, arch.outputSize, 2 * arch.outputSize);
  return { ...arch, tensors };
}

/** A spec from an architecture, its tensors initialised from `seed` (initLayer). */
export function initSpec(
  arch: {
    inputSize: number;
    layers: LayerArch[];
    maxBatch?: number;
    meta?: Record<string, string>;
  },
  seed: number,
): ModelSpec {
  const rng = new TrainRng(seed);
  const layers = arch.layers.map((layer) => initLayer(layer, rng));
  const spec: ModelSpec = { inputSize: arch.inputSize, layers };
  if (arch.maxBatch !== undefined) spec.maxBatch = arch.maxBatch;
  if (arch.meta !== undefined) spec.meta = { ...arch.meta };
  return spec;
}
