/**
 * RTNeural JSON (the format RTNeural's Python exporters write from Keras models) to and from the
 * canonical spec. Weights arrive as Keras get_weights() lists; this file turns each Keras layout
 * into the canonical one of docs/DESIGN.md and back.
 */

import { CadenzaError } from "../../errors.ts";
import {
  type Activation,
  ACTIVATION_IDS,
  describe,
  type LayerSpec,
  type ModelSpec,
  validateSpec,
} from "../spec.ts";
import { readNested, shapeOf, toNested, transpose } from "./nested.ts";

type Json = Record<string, unknown>;

/** One RTNeural layer being read: its place in the file and the width flowing into it. */
interface Ctx {
  layer: Json;
  what: string;
  width: number;
  out: number;
}

const SUPPORTED_TYPES = [
  "dense",
  "time-distributed-dense",
  "lstm",
  "gru",
  "conv1d",
  "batchnorm",
  "prelu",
  "activation",
];

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function formatError(what: string, expected: string, got: unknown): CadenzaError {
  return new CadenzaError("E_FORMAT", `${what}: expected ${expected}, got ${describe(got)}`);
}

/** The last entry of an RTNeural shape list ([null, null, 8] -> 8), a positive integer. */
function lastDim(value: unknown, what: string): number {
  const last = Array.isArray(value) ? value[value.length - 1] : undefined;
  if (typeof last !== "number" || !Number.isInteger(last) || last < 1) {
    throw formatError(
      what,
      "a list ending in a positive integer",
      Array.isArray(value) ? last : value,
    );
  }
  return last;
}

/** RTNeural writes kernel_size and dilation as [k]; a bare number is accepted too. */
function intParam(ctx: Ctx, key: string, fallback?: number): number {
  const raw = ctx.layer[key] ?? fallback;
  const value = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw formatError(`${ctx.what}: ${key}`, "a positive integer (or [integer])", value);
  }
  return value;
}

/** "" and "linear" mean no activation; other names are the canonical ones. */
function activationOf(ctx: Ctx): Activation {
  const name = ctx.layer.activation ?? "";
  if (name === "" || name === "linear") return "linear";
  if (typeof name === "string" && Object.hasOwn(ACTIVATION_IDS, name)) return name as Activation;
  const names = `"", ${Object.keys(ACTIVATION_IDS).join(", ")}`;
  throw formatError(`${ctx.what}: activation`, `one of ${names}`, name);
}

function weightsOf(ctx: Ctx, counts: readonly number[]): unknown[] {
  const weights = ctx.layer.weights ?? [];
  if (!Array.isArray(weights) || !counts.includes(weights.length)) {
    const expected = `a weights list of ${counts.join(" or ")} arrays`;
    throw new CadenzaError(
      "E_FORMAT",
      `${ctx.what}: weights: expected ${expected}, got ${describe(weights)}`,
    );
  }
  return weights;
}

function read(ctx: Ctx, weights: unknown[], index: number, shape: number[], label: string) {
  return readNested(weights[index], shape, `${ctx.what}: weights[${index}] (${label})`);
}

function withActivation(layer: LayerSpec, act: Activation): LayerSpec {
  if (act !== "linear") layer.activation = act;
  return layer;
}

function sameWidth(ctx: Ctx): void {
  if (ctx.out !== ctx.width) {
    throw new CadenzaError(
      "E_SHAPE",
      `${ctx.what}: shape: expected last entry ${ctx.width} (the input width), got ${ctx.out}`,
    );
  }
}

function parseDense(ctx: Ctx): LayerSpec[] {
  const { width: n_in, out: n_out } = ctx;
  const weights = weightsOf(ctx, [1, 2]);
  const kernel = read(ctx, weights, 0, [n_in, n_out], "kernel [in][out]");
  const layer: LayerSpec = { kind: "dense", inputSize: n_in, outputSize: n_out, tensors: {} };
  layer.tensors.W = transpose(kernel, n_in, n_out);
  if (weights.length === 2) layer.tensors.b = read(ctx, weights, 1, [n_out], "bias [out]");
  else layer.bias = false;
  return [withActivation(layer, activationOf(ctx))];
}

/** Keras recurrent layers run tanh inside; other cell activations are not this layer kind. */
function checkRecurrentActivation(ctx: Ctx): void {
  const name = ctx.layer.activation ?? "tanh";
  if (name !== "tanh" && name !== "") {
    throw formatError(
      `${ctx.what}: activation`,
      `"tanh" (the only cell activation supported)`,
      name,
    );
  }
}

function parseLstm(ctx: Ctx): LayerSpec[] {
  checkRecurrentActivation(ctx);
  const { width: n_in, out: h } = ctx;
  const weights = weightsOf(ctx, [3]);
  const w = read(ctx, weights, 0, [n_in, 4 * h], "kernel W [in][4H]");
  const u = read(ctx, weights, 1, [h, 4 * h], "recurrent kernel U [H][4H]");
  const b = read(ctx, weights, 2, [4 * h], "bias [4H]");
  const tensors = { Wx: transpose(w, n_in, 4 * h), Wh: transpose(u, h, 4 * h), b };
  return [{ kind: "lstm", inputSize: n_in, outputSize: h, tensors }];
}

function parseGru(ctx: Ctx): LayerSpec[] {
  checkRecurrentActivation(ctx);
  const { width: n_in, out: h } = ctx;
  const weights = weightsOf(ctx, [3]);
  if (shapeOf(weights[2]).length === 1) {
    throw formatError(`${ctx.what}: weights[2] (bias)`, "[2][3H] (Keras reset_after=True)", "[3H]");
  }
  const w = read(ctx, weights, 0, [n_in, 3 * h], "kernel W [in][3H]");
  const u = read(ctx, weights, 1, [h, 3 * h], "recurrent kernel U [H][3H]");
  const b = read(ctx, weights, 2, [2, 3 * h], "bias [2][3H]");
  const tensors = {
    Wx: transpose(w, n_in, 3 * h),
    Wh: transpose(u, h, 3 * h),
    bx: b.slice(0, 3 * h),
    bh: b.slice(3 * h),
  };
  return [{ kind: "gru", inputSize: n_in, outputSize: h, tensors }];
}

/** Keras kernel [k][in/groups][out] -> canonical W[out][in/groups][k], tap order kept. */
function kerasToConv(kernel: Float32Array, k: number, c_in: number, n_out: number): Float32Array {
  const out = new Float32Array(kernel.length);
  for (let t = 0; t < k; t++) {
    for (let c = 0; c < c_in; c++) {
      for (let o = 0; o < n_out; o++) {
        out[(o * c_in + c) * k + t] = kernel[(t * c_in + c) * n_out + o];
      }
    }
  }
  return out;
}

function convToKeras(w: Float32Array, k: number, c_in: number, n_out: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let o = 0; o < n_out; o++) {
    for (let c = 0; c < c_in; c++) {
      for (let t = 0; t < k; t++) out[(t * c_in + c) * n_out + o] = w[(o * c_in + c) * k + t];
    }
  }
  return out;
}

function parseConv1d(ctx: Ctx): LayerSpec[] {
  const { width: n_in, out: n_out } = ctx;
  const k = intParam(ctx, "kernel_size");
  const dilation = intParam(ctx, "dilation", 1);
  const groups = intParam(ctx, "groups", 1);
  if (n_in % groups !== 0 || n_out % groups !== 0) {
    const got = `${groups} with ${n_in} inputs and ${n_out} outputs`;
    throw new CadenzaError(
      "E_SHAPE",
      `${ctx.what}: groups: expected a divisor of both widths, got ${got}`,
    );
  }
  const c_in = n_in / groups;
  const weights = weightsOf(ctx, [1, 2]);
  const kernel = read(ctx, weights, 0, [k, c_in, n_out], "kernel [k][in/groups][out]");
  const b = weights.length === 2
    ? read(ctx, weights, 1, [n_out], "bias [out]")
    : new Float32Array(n_out);
  const layer: LayerSpec = {
    kind: "conv1d",
    inputSize: n_in,
    outputSize: n_out,
    kernelSize: k,
    tensors: { W: kerasToConv(kernel, k, c_in, n_out), b },
  };
  if (dilation !== 1) layer.dilation = dilation;
  if (groups !== 1) layer.groups = groups;
  return [withActivation(layer, activationOf(ctx))];
}

function parseBatchnorm(ctx: Ctx): LayerSpec[] {
  sameWidth(ctx);
  const n = ctx.width;
  const weights = weightsOf(ctx, [2, 4]);
  const names = weights.length === 4 ? ["gamma", "beta", "mean", "var"] : ["mean", "var"];
  const tensors: Record<string, Float32Array> = {};
  names.forEach((name, i) => (tensors[name] = read(ctx, weights, i, [n], `${name} [n]`)));
  const epsilon = ctx.layer.epsilon ?? 1e-3;
  if (typeof epsilon !== "number") throw formatError(`${ctx.what}: epsilon`, "a number", epsilon);
  const layer: LayerSpec = { kind: "batchnorm", inputSize: n, outputSize: n, epsilon, tensors };
  if (weights.length === 2) layer.affine = false;
  return [withActivation(layer, activationOf(ctx))];
}

/** Keras PReLU alpha: [1][n] with shared time axis, [1][1] or [1] fully shared, or [n]. */
function parsePrelu(ctx: Ctx): LayerSpec[] {
  sameWidth(ctx);
  const n = ctx.width;
  const weights = weightsOf(ctx, [1]);
  const shape = shapeOf(weights[0]);
  const accepted = [[1, n], [1, 1], [n], [1]];
  const match = accepted.find((s) =>
    s.length === shape.length && s.every((d, i) => d === shape[i])
  );
  const alpha = read(ctx, weights, 0, match ?? [1, n], "alpha [1][n] or [1][1]");
  const layers: LayerSpec[] = [{ kind: "prelu", inputSize: n, outputSize: n, tensors: { alpha } }];
  return appendActivation(layers, n, activationOf(ctx));
}

function appendActivation(layers: LayerSpec[], n: number, act: Activation): LayerSpec[] {
  if (act === "linear") return layers;
  return [...layers, {
    kind: "activation",
    inputSize: n,
    outputSize: n,
    activation: act,
    tensors: {},
  }];
}

function parseActivation(ctx: Ctx): LayerSpec[] {
  sameWidth(ctx);
  weightsOf(ctx, [0]);
  const n = ctx.width;
  return [
    withActivation(
      { kind: "activation", inputSize: n, outputSize: n, tensors: {} },
      activationOf(ctx),
    ),
  ];
}

const PARSERS: Record<string, (ctx: Ctx) => LayerSpec[]> = {
  "dense": parseDense,
  "time-distributed-dense": parseDense,
  "lstm": parseLstm,
  "gru": parseGru,
  "conv1d": parseConv1d,
  "batchnorm": parseBatchnorm,
  "prelu": parsePrelu,
  "activation": parseActivation,
};

/**
 * Converts a parsed RTNeural JSON model to a validated canonical spec. `source` (usually the
 * file path) starts every error message.
 *
 * @example
 * const spec = parseRtneural(JSON.parse(text), "models/lstm.json");
 */
export function parseRtneural(json: unknown, source: string): ModelSpec {
  if (!isRecord(json)) throw formatError(source, "an RTNeural model object", json);
  const input_size = lastDim(json.in_shape, `${source}: in_shape`);
  const file_layers = json.layers;
  if (!Array.isArray(file_layers) || file_layers.length === 0) {
    throw formatError(`${source}: layers`, "a non-empty list", file_layers);
  }
  const layers: LayerSpec[] = [];
  let width = input_size;
  for (let i = 0; i < file_layers.length; i++) {
    const layer = file_layers[i];
    const type = isRecord(layer) ? layer.type : undefined;
    const what = `${source}: layers[${i}] (${typeof type === "string" ? type : "?"})`;
    if (!isRecord(layer)) throw formatError(what, "a layer object", layer);
    if (typeof type !== "string" || !Object.hasOwn(PARSERS, type)) {
      throw formatError(`${what}: type`, `one of ${SUPPORTED_TYPES.join(", ")}`, type);
    }
    const out = lastDim(layer.shape, `${what}: shape`);
    layers.push(...PARSERS[type]({ layer, what, width, out }));
    width = out;
  }
  layers.push(...aidaExtras(json, width, input_size, source));
  const spec: ModelSpec = { inputSize: input_size, layers };
  validateSpec(spec, source);
  return spec;
}

/**
 * AIDA-X's two fields beside RTNeural's: `out_gain` (dB) scales the network's output and
 * `in_skip` (0 or 1) then adds the input sample, `out = in + net(in) * gain` as its plugin
 * computes. The gain becomes a batchnorm with mean 0 and variance 1 (its fold keeps the gain
 * exactly: y = x * gain), the skip a skip layer.
 */
function aidaExtras(json: Json, width: number, input_size: number, source: string): LayerSpec[] {
  const extras: LayerSpec[] = [];
  const gain_db = json.out_gain;
  if (gain_db !== undefined && gain_db !== 0) {
    if (typeof gain_db !== "number" || !Number.isFinite(gain_db)) {
      throw formatError(`${source}: out_gain`, "a number (dB)", gain_db);
    }
    const gain = gain_db > -90 ? Math.fround(Math.pow(10, Math.fround(gain_db * 0.05))) : 0;
    extras.push({
      kind: "batchnorm",
      name: "out_gain",
      inputSize: width,
      outputSize: width,
      epsilon: 1e-30,
      tensors: {
        gamma: new Float32Array(width).fill(gain),
        beta: new Float32Array(width),
        mean: new Float32Array(width),
        var: new Float32Array(width).fill(1),
      },
    });
  }
  const skip = json.in_skip;
  if (skip !== undefined && skip !== 0) {
    if (skip !== 1 || width > input_size) {
      throw formatError(
        `${source}: in_skip`,
        `0, or 1 with an output no wider than the input (${input_size})`,
        skip,
      );
    }
    extras.push({
      kind: "skip",
      name: "in_skip",
      inputSize: width,
      outputSize: width,
      tensors: {},
    });
  }
  return extras;
}

// ---------------------------------------------------------------------------------------------
// Export.

/** Activations RTNeural's JSON loader knows. */
const RTNEURAL_ACTIVATIONS: ReadonlySet<Activation> = new Set<Activation>([
  "linear",
  "tanh",
  "sigmoid",
  "relu",
  "elu",
  "softmax",
]);

function exportActivation(layer: LayerSpec, index: number): string {
  const act = layer.activation ?? "linear";
  if (!RTNEURAL_ACTIVATIONS.has(act)) {
    throw new CadenzaError(
      "E_FORMAT",
      `toRtneural: layer ${index} (${layer.kind}): activation: expected one RTNeural supports ` +
        `(${[...RTNEURAL_ACTIVATIONS].join(", ")}), got ${describe(act)}`,
    );
  }
  return act === "linear" ? "" : act;
}

function exportLayer(layer: LayerSpec, index: number): Json[] {
  const { inputSize: n_in, outputSize: n_out, tensors: t } = layer;
  const shape = [null, null, n_out];
  const nested = (values: Float32Array, dims: number[]) => toNested(values, dims);
  switch (layer.kind) {
    case "dense": {
      const weights = [nested(transpose(t.W, n_out, n_in), [n_in, n_out])];
      if (t.b !== undefined) weights.push(nested(t.b, [n_out]));
      return [{ type: "dense", activation: exportActivation(layer, index), shape, weights }];
    }
    case "lstm": {
      const h = n_out;
      const weights = [
        nested(transpose(t.Wx, 4 * h, n_in), [n_in, 4 * h]),
        nested(transpose(t.Wh, 4 * h, h), [h, 4 * h]),
        nested(t.b, [4 * h]),
      ];
      return [{ type: "lstm", activation: "tanh", shape, weights }];
    }
    case "gru": {
      const h = n_out;
      const weights = [
        nested(transpose(t.Wx, 3 * h, n_in), [n_in, 3 * h]),
        nested(transpose(t.Wh, 3 * h, h), [h, 3 * h]),
        [nested(t.bx, [3 * h]), nested(t.bh, [3 * h])],
      ];
      return [{ type: "gru", activation: "tanh", shape, weights }];
    }
    case "conv1d":
      return [exportConv1d(layer, index)];
    case "batchnorm":
      return exportBatchnorm(layer, index);
    case "prelu": {
      const alpha = [Array.from(t.alpha)];
      return [{ type: "prelu", activation: "", shape, weights: [alpha] }];
    }
    case "activation": {
      const act = exportActivation(layer, index);
      return act === "" ? [] : [{ type: "activation", activation: act, shape, weights: [] }];
    }
    case "layernorm":
    case "attention":
    case "transformer":
    case "skip":
      throw new CadenzaError(
        "E_FORMAT",
        `toRtneural: layer ${index} (${layer.kind}): kind: expected one with an RTNeural ` +
          "equivalent (dense, lstm, gru, conv1d, batchnorm, prelu, activation), " +
          `got "${layer.kind}"`,
      );
  }
}

function exportConv1d(layer: LayerSpec, index: number): Json {
  const { inputSize: n_in, outputSize: n_out, tensors: t } = layer;
  const k = layer.kernelSize as number;
  const groups = layer.groups ?? 1;
  const c_in = n_in / groups;
  return {
    type: "conv1d",
    activation: exportActivation(layer, index),
    shape: [null, null, n_out],
    kernel_size: [k],
    dilation: [layer.dilation ?? 1],
    groups,
    weights: [toNested(convToKeras(t.W, k, c_in, n_out), [k, c_in, n_out]), Array.from(t.b)],
  };
}

/** RTNeural's batchnorm has no fused activation: a non-linear one becomes its own layer. */
function exportBatchnorm(layer: LayerSpec, index: number): Json[] {
  const n = layer.outputSize;
  const names = layer.affine === false ? ["mean", "var"] : ["gamma", "beta", "mean", "var"];
  const weights = names.map((name) => Array.from(layer.tensors[name]));
  const shape = [null, null, n];
  const act = exportActivation(layer, index);
  const out: Json[] = [
    { type: "batchnorm", activation: "", shape, epsilon: layer.epsilon ?? 1e-3, weights },
  ];
  if (act !== "") out.push({ type: "activation", activation: act, shape, weights: [] });
  return out;
}

/**
 * Converts a spec to an RTNeural JSON object (JSON.stringify it to write a file). Float32 weights
 * are written as the exact doubles they equal, so parseRtneural reads them back bit-exact.
 * Throws E_FORMAT for layers RTNeural has no equivalent of (layernorm, attention, transformer,
 * gelu, a skip anywhere but last). A final skip layer is written as AIDA-X's `in_skip: 1`.
 */
export function toRtneural(spec: ModelSpec): Json {
  validateSpec(spec, "toRtneural");
  // A final skip layer is AIDA-X's in_skip (the input added to the output).
  const last = spec.layers[spec.layers.length - 1];
  const skip = last.kind === "skip" && spec.layers.length > 1;
  const body = skip ? spec.layers.slice(0, -1) : spec.layers;
  const layers = body.flatMap((layer, i) => exportLayer(layer, i));
  const json: Json = { in_shape: [null, null, spec.inputSize], layers };
  if (skip) json.in_skip = 1;
  return json;
}
