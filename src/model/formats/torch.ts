/**
 * PyTorch state_dict dumps (a JSON object of nested arrays keyed like `lstm.weight_ih_l0`) to the
 * canonical spec. A state_dict carries no architecture, so the caller lists the layers; sizes
 * come from the tensor shapes and every tensor must be used exactly once.
 */

import { CadenzaError } from "../../errors.ts";
import {
  type Activation,
  ACTIVATION_IDS,
  describe,
  type LayerSpec,
  LIMITS,
  type ModelSpec,
  validateSpec,
} from "../spec.ts";
import { formatShape, readNested, shapeOf } from "./nested.ts";

export type TorchLayerKind =
  | "linear"
  | "lstm"
  | "gru"
  | "conv1d"
  | "batchnorm"
  | "layernorm"
  | "prelu"
  | "activation";

/** One torch.nn module of a sequential model, in forward order. */
export interface TorchLayerDecl {
  kind: TorchLayerKind;
  /** The module's state_dict prefix (e.g. "lstm2" for `lstm2.weight_ih_l0`); none if absent. */
  name?: string;
  /** lstm, gru: stacked layers (num_layers), default 1. */
  numLayers?: number;
  /** The activation applied after the module (fused where the canonical kind allows). */
  activation?: Activation;
  /** conv1d: checked against the weight's shape when given. */
  kernelSize?: number;
  dilation?: number;
  groups?: number;
  /** batchnorm, layernorm: default 1e-5 as in PyTorch. */
  epsilon?: number;
  /** The input width; needed only when the first module has no tensors (an activation). */
  inputSize?: number;
}

const TORCH_KINDS: readonly TorchLayerKind[] = [
  "linear",
  "lstm",
  "gru",
  "conv1d",
  "batchnorm",
  "layernorm",
  "prelu",
  "activation",
];

const TORCH_EPSILON = 1e-5;

/** The state of one parse: the dict, the keys not used yet, and where we are for messages. */
interface Reader {
  dict: Record<string, unknown>;
  unused: Set<string>;
  source: string;
  what: string;
  prefix: string;
}

interface Tensor {
  key: string;
  shape: number[];
  values: Float32Array;
}

function keyOf(reader: Reader, param: string): string {
  return reader.prefix === "" ? param : `${reader.prefix}.${param}`;
}

function take(reader: Reader, param: string, rank: number): Tensor {
  const tensor = takeOptional(reader, param, rank);
  if (tensor === undefined) {
    throw new CadenzaError(
      "E_FORMAT",
      `${reader.what}: tensor "${keyOf(reader, param)}": expected in the state_dict, got nothing`,
    );
  }
  return tensor;
}

function takeOptional(reader: Reader, param: string, rank: number): Tensor | undefined {
  const key = keyOf(reader, param);
  if (!Object.hasOwn(reader.dict, key)) return undefined;
  reader.unused.delete(key);
  const value = reader.dict[key];
  const shape = shapeOf(value);
  const what = `${reader.what}: tensor "${key}"`;
  if (shape.length !== rank) {
    throw new CadenzaError(
      "E_SHAPE",
      `${what}: expected ${rank} dimension(s), got shape ${formatShape(shape)}`,
    );
  }
  return { key, shape, values: readNested(value, shape, what) };
}

function expectShape(reader: Reader, tensor: Tensor, shape: number[], meaning: string): void {
  if (tensor.shape.length === shape.length && tensor.shape.every((d, i) => d === shape[i])) return;
  throw new CadenzaError(
    "E_SHAPE",
    `${reader.what}: tensor "${tensor.key}": expected shape ${formatShape(shape)} (${meaning}), ` +
      `got ${formatShape(tensor.shape)}`,
  );
}

function expectWidth(reader: Reader, width: number | undefined, got: number, tensor: Tensor) {
  if (width === undefined || width === got) return;
  throw new CadenzaError(
    "E_SHAPE",
    `${reader.what}: tensor "${tensor.key}": expected input width ${width} (the previous ` +
      `layer's output), got ${got} (shape ${formatShape(tensor.shape)})`,
  );
}

/** Canonical spec layers of one declaration; `width` is the width flowing in, if known. */
type LayerReader = (reader: Reader, decl: TorchLayerDecl, width: number | undefined) => LayerSpec[];

function readLinear(reader: Reader, decl: TorchLayerDecl, width: number | undefined): LayerSpec[] {
  const weight = take(reader, "weight", 2);
  const [n_out, n_in] = weight.shape;
  expectWidth(reader, width, n_in, weight);
  const layer: LayerSpec = {
    kind: "dense",
    inputSize: n_in,
    outputSize: n_out,
    tensors: { W: weight.values },
  };
  const bias = takeOptional(reader, "bias", 1);
  if (bias === undefined) layer.bias = false;
  else {
    expectShape(reader, bias, [n_out], "out");
    layer.tensors.b = bias.values;
  }
  if (decl.activation !== undefined && decl.activation !== "linear") {
    layer.activation = decl.activation;
  }
  return [layer];
}

/** Reorders gate blocks of `block` elements: output block j is input block order[j]. */
function reorderGates(values: Float32Array, block: number, order: readonly number[]): Float32Array {
  const out = new Float32Array(values.length);
  order.forEach((from, to) =>
    out.set(values.subarray(from * block, (from + 1) * block), to * block)
  );
  return out;
}

/** PyTorch GRU gates are r,z,n; the canonical order is z,r,n. */
const GRU_TORCH_TO_CANONICAL = [1, 0, 2];

function readRecurrent(
  reader: Reader,
  decl: TorchLayerDecl,
  width: number | undefined,
): LayerSpec[] {
  const gates = decl.kind === "lstm" ? 4 : 3;
  const count = decl.numLayers ?? 1;
  const layers: LayerSpec[] = [];
  for (let k = 0; k < count; k++) {
    const w_ih = take(reader, `weight_ih_l${k}`, 2);
    const w_hh = take(reader, `weight_hh_l${k}`, 2);
    const h = w_hh.shape[1];
    const n_in = w_ih.shape[1];
    expectShape(reader, w_hh, [gates * h, h], `${gates}H x H with H = ${h}`);
    expectShape(reader, w_ih, [gates * h, n_in], `${gates}H x in with H = ${h}`);
    expectWidth(reader, k === 0 ? width : h, n_in, w_ih);
    const b_ih = readBias(reader, `bias_ih_l${k}`, gates * h);
    const b_hh = readBias(reader, `bias_hh_l${k}`, gates * h);
    const name = decl.name === undefined ? undefined : count > 1 ? `${decl.name}.l${k}` : decl.name;
    const layer = decl.kind === "lstm"
      ? lstmLayer(n_in, h, w_ih.values, w_hh.values, b_ih, b_hh)
      : gruLayer(n_in, h, w_ih.values, w_hh.values, b_ih, b_hh);
    if (name !== undefined) layer.name = name;
    layers.push(layer);
  }
  return appendActivation(layers, layers[layers.length - 1].outputSize, decl.activation);
}

function readBias(reader: Reader, param: string, len: number): Float32Array {
  const bias = takeOptional(reader, param, 1);
  if (bias === undefined) return new Float32Array(len);
  expectShape(reader, bias, [len], "gates x H");
  return bias.values;
}

function lstmLayer(
  n_in: number,
  h: number,
  w_ih: Float32Array,
  w_hh: Float32Array,
  b_ih: Float32Array,
  b_hh: Float32Array,
): LayerSpec {
  // Canonical LSTM keeps one bias: bias_ih + bias_hh, summed in float32 as PyTorch would.
  const b = new Float32Array(4 * h);
  for (let i = 0; i < b.length; i++) b[i] = b_ih[i] + b_hh[i];
  return { kind: "lstm", inputSize: n_in, outputSize: h, tensors: { Wx: w_ih, Wh: w_hh, b } };
}

function gruLayer(
  n_in: number,
  h: number,
  w_ih: Float32Array,
  w_hh: Float32Array,
  b_ih: Float32Array,
  b_hh: Float32Array,
): LayerSpec {
  const order = GRU_TORCH_TO_CANONICAL;
  const tensors = {
    Wx: reorderGates(w_ih, h * n_in, order),
    Wh: reorderGates(w_hh, h * h, order),
    bx: reorderGates(b_ih, h, order),
    bh: reorderGates(b_hh, h, order),
  };
  return { kind: "gru", inputSize: n_in, outputSize: h, tensors };
}

function readConv1d(reader: Reader, decl: TorchLayerDecl, width: number | undefined): LayerSpec[] {
  const weight = take(reader, "weight", 3);
  const [n_out, c_in, k] = weight.shape;
  const groups = decl.groups ?? 1;
  if (decl.kernelSize !== undefined && decl.kernelSize !== k) {
    expectShape(reader, weight, [n_out, c_in, decl.kernelSize], "out x in/groups x kernelSize");
  }
  expectWidth(reader, width, c_in * groups, weight);
  const bias = takeOptional(reader, "bias", 1);
  if (bias !== undefined) expectShape(reader, bias, [n_out], "out");
  const layer: LayerSpec = {
    kind: "conv1d",
    inputSize: c_in * groups,
    outputSize: n_out,
    kernelSize: k,
    tensors: { W: weight.values, b: bias?.values ?? new Float32Array(n_out) },
  };
  if (decl.dilation !== undefined && decl.dilation !== 1) layer.dilation = decl.dilation;
  if (groups !== 1) layer.groups = groups;
  if (decl.activation !== undefined && decl.activation !== "linear") {
    layer.activation = decl.activation;
  }
  return [layer];
}

function readVector(reader: Reader, param: string, n: number | undefined): Tensor | undefined {
  const tensor = takeOptional(reader, param, 1);
  if (tensor !== undefined && n !== undefined) expectShape(reader, tensor, [n], "features");
  return tensor;
}

function readBatchnorm(
  reader: Reader,
  decl: TorchLayerDecl,
  width: number | undefined,
): LayerSpec[] {
  const mean = take(reader, "running_mean", 1);
  const n = mean.shape[0];
  expectWidth(reader, width, n, mean);
  const variance = take(reader, "running_var", 1);
  expectShape(reader, variance, [n], "features");
  // An integer counter PyTorch keeps for training; it has no effect on inference.
  reader.unused.delete(keyOf(reader, "num_batches_tracked"));
  const gamma = readVector(reader, "weight", n);
  const beta = readVector(reader, "bias", n);
  const tensors: Record<string, Float32Array> = {};
  const affine = gamma !== undefined || beta !== undefined;
  if (affine) {
    tensors.gamma = gamma?.values ?? new Float32Array(n).fill(1);
    tensors.beta = beta?.values ?? new Float32Array(n);
  }
  tensors.mean = mean.values;
  tensors.var = variance.values;
  const layer: LayerSpec = {
    kind: "batchnorm",
    inputSize: n,
    outputSize: n,
    epsilon: decl.epsilon ?? TORCH_EPSILON,
    tensors,
  };
  if (!affine) layer.affine = false;
  if (decl.activation !== undefined && decl.activation !== "linear") {
    layer.activation = decl.activation;
  }
  return [layer];
}

function readLayernorm(
  reader: Reader,
  decl: TorchLayerDecl,
  width: number | undefined,
): LayerSpec[] {
  const gamma = takeOptional(reader, "weight", 1);
  const beta = takeOptional(reader, "bias", 1);
  const n = width ?? gamma?.shape[0] ?? beta?.shape[0];
  if (n === undefined) throw needsInputSize(reader);
  if (gamma !== undefined) expectShape(reader, gamma, [n], "features");
  if (beta !== undefined) expectShape(reader, beta, [n], "features");
  const tensors = {
    gamma: gamma?.values ?? new Float32Array(n).fill(1),
    beta: beta?.values ?? new Float32Array(n),
  };
  const layer: LayerSpec = {
    kind: "layernorm",
    inputSize: n,
    outputSize: n,
    epsilon: decl.epsilon ?? TORCH_EPSILON,
    tensors,
  };
  return appendActivation([layer], n, decl.activation);
}

function readPrelu(reader: Reader, decl: TorchLayerDecl, width: number | undefined): LayerSpec[] {
  const alpha = take(reader, "weight", 1);
  if (width === undefined && alpha.shape[0] === 1) throw needsInputSize(reader);
  const n = width ?? alpha.shape[0];
  if (alpha.shape[0] !== 1) expectShape(reader, alpha, [n], "features, or 1 shared");
  const layer: LayerSpec = {
    kind: "prelu",
    inputSize: n,
    outputSize: n,
    tensors: { alpha: alpha.values },
  };
  return appendActivation([layer], n, decl.activation);
}

function readActivation(
  reader: Reader,
  decl: TorchLayerDecl,
  width: number | undefined,
): LayerSpec[] {
  if (width === undefined) throw needsInputSize(reader);
  if (decl.activation === undefined) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `${reader.what}: activation: expected one of ${Object.keys(ACTIVATION_IDS).join(", ")}, ` +
        "got nothing",
    );
  }
  return [{
    kind: "activation",
    inputSize: width,
    outputSize: width,
    activation: decl.activation,
    tensors: {},
  }];
}

function appendActivation(layers: LayerSpec[], n: number, act: Activation | undefined) {
  if (act === undefined || act === "linear") return layers;
  return [...layers, {
    kind: "activation" as const,
    inputSize: n,
    outputSize: n,
    activation: act,
    tensors: {},
  }];
}

function needsInputSize(reader: Reader): CadenzaError {
  return new CadenzaError(
    "E_ARGUMENT",
    `${reader.what}: inputSize: expected a number in the declaration of a first layer without ` +
      "tensors to infer it from, got nothing",
  );
}

const READERS: Record<TorchLayerKind, LayerReader> = {
  linear: readLinear,
  lstm: readRecurrent,
  gru: readRecurrent,
  conv1d: readConv1d,
  batchnorm: readBatchnorm,
  layernorm: readLayernorm,
  prelu: readPrelu,
  activation: readActivation,
};

/** The declaration fields each kind reads; any other field is a mistake (often a typo). */
const DECL_FIELDS: Record<TorchLayerKind, readonly string[]> = {
  linear: ["activation"],
  lstm: ["numLayers", "activation"],
  gru: ["numLayers", "activation"],
  conv1d: ["kernelSize", "dilation", "groups", "activation"],
  batchnorm: ["epsilon", "activation"],
  layernorm: ["epsilon", "activation"],
  prelu: ["activation"],
  activation: ["activation"],
};

function checkDecl(decl: unknown, what: string): asserts decl is TorchLayerDecl {
  const fail = (field: string, expected: string, got: unknown): never => {
    throw new CadenzaError(
      "E_ARGUMENT",
      `${what}: ${field}: expected ${expected}, got ${describe(got)}`,
    );
  };
  if (typeof decl !== "object" || decl === null) fail("declaration", "an object", decl);
  const d = decl as Record<string, unknown>;
  if (typeof d.kind !== "string" || !TORCH_KINDS.includes(d.kind as TorchLayerKind)) {
    fail("kind", `one of ${TORCH_KINDS.join(", ")}`, d.kind);
  }
  const fields = ["kind", "name", "inputSize", ...DECL_FIELDS[d.kind as TorchLayerKind]];
  for (const key of Object.keys(d)) {
    if (!fields.includes(key)) {
      fail(key, `nothing (a ${d.kind} declaration takes ${fields.join(", ")})`, d[key]);
    }
  }
  if (d.name !== undefined && typeof d.name !== "string") fail("name", "a string", d.name);
  if (d.activation !== undefined && !Object.hasOwn(ACTIVATION_IDS, String(d.activation))) {
    fail("activation", `one of ${Object.keys(ACTIVATION_IDS).join(", ")}`, d.activation);
  }
  if (d.numLayers !== undefined) {
    const ok = Number.isInteger(d.numLayers) && (d.numLayers as number) >= 1 &&
      (d.numLayers as number) <= LIMITS.layersMax && (d.kind === "lstm" || d.kind === "gru");
    if (!ok) fail("numLayers", `an integer in 1..${LIMITS.layersMax} on lstm or gru`, d.numLayers);
  }
  for (const field of ["kernelSize", "dilation", "groups", "inputSize"]) {
    const value = d[field];
    if (value !== undefined && !(Number.isInteger(value) && (value as number) >= 1)) {
      fail(field, "a positive integer", value);
    }
  }
  if (d.epsilon !== undefined && typeof d.epsilon !== "number") {
    fail("epsilon", "a number", d.epsilon);
  }
}

function unusedError(source: string, unused: Set<string>): CadenzaError {
  const keys = [...unused];
  const shown = keys.slice(0, 8).map((key) => `"${key}"`).join(", ");
  const more = keys.length > 8 ? ` and ${keys.length - 8} more` : "";
  return new CadenzaError(
    "E_FORMAT",
    `${source}: state_dict: expected only the tensors of the declared layers, got ${keys.length} ` +
      `unused: ${shown}${more} (declare their modules, or check the names)`,
  );
}

/**
 * Converts a PyTorch state_dict dump to a validated canonical spec, given the modules in forward
 * order. PyTorch LSTM gates (i,f,g,o) match the canonical order and its two biases are summed;
 * GRU gates are reordered from r,z,n to z,r,n; Linear and Conv1d weights are already canonical.
 *
 * @example
 * const spec = parseTorchStateDict(JSON.parse(text), [
 *   { kind: "lstm", name: "lstm" }, { kind: "linear", name: "dense" },
 * ], "lstm_torch.json");
 */
export function parseTorchStateDict(
  json: unknown,
  layers: TorchLayerDecl[],
  source: string,
): ModelSpec {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: expected a state_dict object, got ${describe(json)}`,
    );
  }
  if (!Array.isArray(layers) || layers.length === 0) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `${source}: layers: expected a non-empty list, got ${describe(layers)}`,
    );
  }
  const dict = json as Record<string, unknown>;
  const unused = new Set(Object.keys(dict));
  const out: LayerSpec[] = [];
  let width: number | undefined = layers[0]?.inputSize;
  for (let j = 0; j < layers.length; j++) {
    const decl = layers[j];
    const label = typeof decl?.name === "string" ? ` "${decl.name}"` : "";
    const what = `${source}: declared layer ${j} (${String(decl?.kind)}${label})`;
    checkDecl(decl, what);
    const reader: Reader = { dict, unused, source, what, prefix: decl.name ?? "" };
    if (j > 0 && decl.inputSize !== undefined && decl.inputSize !== width) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `${what}: inputSize: expected ${width}, got ${decl.inputSize}`,
      );
    }
    const read = READERS[decl.kind](reader, decl, width);
    out.push(...read);
    width = read[read.length - 1].outputSize;
  }
  if (unused.size > 0) throw unusedError(source, unused);
  const spec: ModelSpec = { inputSize: out[0].inputSize, layers: out };
  validateSpec(spec, source);
  return spec;
}
