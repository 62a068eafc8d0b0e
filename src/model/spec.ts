/**
 * Canonical layer specs: every model format is converted to this one sequential form, which
 * src/model/image.ts packs for the native library. Tensor layouts are in docs/DESIGN.md
 * ("Canonical layer specs"); this file holds the types, the per-kind tables and validation.
 */

import { CadenzaError, type CadenzaErrorCode } from "../errors.ts";

export type Activation =
  | "linear"
  | "tanh"
  | "sigmoid"
  | "relu"
  | "elu"
  | "gelu"
  | "softmax"
  | "logsoftmax";

/** Activation ids as the model image stores them. */
export const ACTIVATION_IDS: Record<Activation, number> = {
  linear: 0,
  tanh: 1,
  sigmoid: 2,
  relu: 3,
  elu: 4,
  gelu: 5,
  softmax: 6,
  logsoftmax: 7,
};

export type LayerKind =
  | "dense"
  | "lstm"
  | "gru"
  | "conv1d"
  | "batchnorm"
  | "layernorm"
  | "prelu"
  | "activation"
  | "attention"
  | "transformer"
  | "skip";

/** Layer kind ids as the model image stores them. */
export const KIND_IDS: Record<LayerKind, number> = {
  dense: 1,
  lstm: 2,
  gru: 3,
  conv1d: 4,
  batchnorm: 5,
  layernorm: 6,
  prelu: 7,
  activation: 8,
  attention: 9,
  transformer: 10,
  skip: 11,
};

/** The architecture of one layer, without its tensors (what safetensors metadata stores). */
export interface LayerArch {
  kind: LayerKind;
  /** Optional human name (e.g. "encoder.0"); used in messages. */
  name?: string;
  inputSize: number;
  outputSize: number;
  /**
   * Fused activation (dense, conv1d, batchnorm), the activation layer's function, or the
   * transformer's FF activation.
   */
  activation?: Activation;
  /** dense: has a bias (default true). */
  bias?: boolean;
  /** batchnorm: has gamma and beta (default true). */
  affine?: boolean;
  /** batchnorm, layernorm, transformer. */
  epsilon?: number;
  /** conv1d. */
  kernelSize?: number;
  dilation?: number;
  groups?: number;
  /** attention, transformer. */
  heads?: number;
  context?: number;
  /** transformer feed-forward width. */
  ffDim?: number;
}

/** A layer with its tensors, named as in docs/DESIGN.md (W, b, Wx, Wh, ...). */
export interface LayerSpec extends LayerArch {
  tensors: Record<string, Float32Array>;
}

export interface ModelSpec {
  inputSize: number;
  layers: LayerSpec[];
  /** forwardBatch accepts up to this many rows (default 64). */
  maxBatch?: number;
  /** Free-form description carried through save/load (e.g. { untrained: "true" }). */
  meta?: Record<string, string>;
}

/** Limits shared with the native image parser (zig/image.zig); a spec beyond them is refused. */
export const LIMITS = {
  widthMax: 65536,
  kernelMax: 4096,
  dilationMax: 4096,
  headsMax: 256,
  contextMax: 8192,
  ffDimMax: 65536,
  maxBatchMax: 4096,
  layersMax: 1024,
} as const;

export const DEFAULT_MAX_BATCH = 64;

/** Optional LayerArch fields, in the order archOf writes them. */
const OPTIONAL_FIELDS = [
  "activation",
  "bias",
  "affine",
  "epsilon",
  "kernelSize",
  "dilation",
  "groups",
  "heads",
  "context",
  "ffDim",
] as const;
type OptionalField = (typeof OPTIONAL_FIELDS)[number];

const KNOWN_KEYS: ReadonlySet<string> = new Set([
  "kind",
  "name",
  "inputSize",
  "outputSize",
  "tensors",
  ...OPTIONAL_FIELDS,
]);

/** The optional fields that mean something for each kind; any other one set is an error. */
export const KIND_FIELDS: Record<LayerKind, readonly OptionalField[]> = {
  dense: ["activation", "bias"],
  lstm: [],
  gru: [],
  conv1d: ["activation", "kernelSize", "dilation", "groups"],
  batchnorm: ["activation", "affine", "epsilon"],
  layernorm: ["epsilon"],
  prelu: [],
  activation: ["activation"],
  attention: ["heads", "context"],
  transformer: ["heads", "context", "ffDim", "epsilon", "activation"],
  skip: [],
};

/** Kinds whose output width must equal their input width. */
const SAME_WIDTH: ReadonlySet<LayerKind> = new Set<LayerKind>([
  "batchnorm",
  "layernorm",
  "prelu",
  "activation",
  "attention",
  "transformer",
  "skip",
]);

const ATTENTION_TENSORS = ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"];

/** Tensor names of a layer in image order (docs/DESIGN.md, "Canonical layer specs"). */
export function TENSOR_NAMES(
  kind: LayerKind,
  arch: { bias?: boolean; affine?: boolean } = {},
): string[] {
  switch (kind) {
    case "dense":
      return arch.bias === false ? ["W"] : ["W", "b"];
    case "lstm":
      return ["Wx", "Wh", "b"];
    case "gru":
      return ["Wx", "Wh", "bx", "bh"];
    case "conv1d":
      return ["W", "b"];
    case "batchnorm":
      return arch.affine === false ? ["mean", "var"] : ["gamma", "beta", "mean", "var"];
    case "layernorm":
      return ["gamma", "beta"];
    case "prelu":
      return ["alpha"];
    case "activation":
    case "skip":
      return [];
    case "attention":
      return [...ATTENTION_TENSORS];
    case "transformer":
      return ["ln1_g", "ln1_b", ...ATTENTION_TENSORS, "ln2_g", "ln2_b", "W1", "b1", "W2", "b2"];
  }
}

/**
 * Tensor shapes of a valid architecture, in TENSOR_NAMES order. prelu's alpha is given as [n];
 * a single shared slope ([1]) is also accepted by validateSpec.
 */
export function tensorShapes(arch: LayerArch): Record<string, number[]> {
  const { inputSize: n_in, outputSize: n_out } = arch;
  const r = resolveArch(arch);
  switch (arch.kind) {
    case "dense":
      return r.bias ? { W: [n_out, n_in], b: [n_out] } : { W: [n_out, n_in] };
    case "lstm":
      return { Wx: [4 * n_out, n_in], Wh: [4 * n_out, n_out], b: [4 * n_out] };
    case "gru":
      return {
        Wx: [3 * n_out, n_in],
        Wh: [3 * n_out, n_out],
        bx: [3 * n_out],
        bh: [3 * n_out],
      };
    case "conv1d":
      return { W: [n_out, n_in / r.groups, r.kernelSize], b: [n_out] };
    case "batchnorm":
      return Object.fromEntries(TENSOR_NAMES("batchnorm", r).map((name) => [name, [n_out]]));
    case "layernorm":
      return { gamma: [n_out], beta: [n_out] };
    case "prelu":
      return { alpha: [n_out] };
    case "activation":
    case "skip":
      return {};
    case "attention":
      return attentionShapes(n_out);
    case "transformer": {
      const ff = r.ffDim;
      return {
        ln1_g: [n_out],
        ln1_b: [n_out],
        ...attentionShapes(n_out),
        ln2_g: [n_out],
        ln2_b: [n_out],
        W1: [ff, n_out],
        b1: [ff],
        W2: [n_out, ff],
        b2: [n_out],
      };
    }
  }
}

function attentionShapes(d: number): Record<string, number[]> {
  const shapes: Record<string, number[]> = {};
  for (const name of ATTENTION_TENSORS) shapes[name] = name.startsWith("W") ? [d, d] : [d];
  return shapes;
}

/** A layer's architecture with every applicable default filled in. */
export interface ResolvedArch extends LayerArch {
  activation: Activation;
  bias: boolean;
  affine: boolean;
  epsilon: number;
  kernelSize: number;
  dilation: number;
  groups: number;
  heads: number;
  context: number;
  ffDim: number;
}

/**
 * Fills the defaults: activation linear (transformer FF: gelu), bias and affine true, epsilon
 * 1e-5 (batchnorm 1e-3, as Keras), dilation and groups 1. Fields that do not apply read 0.
 */
export function resolveArch(arch: LayerArch): ResolvedArch {
  const fallback_act: Activation = arch.kind === "transformer" ? "gelu" : "linear";
  const fallback_eps = arch.kind === "batchnorm" ? 1e-3 : 1e-5;
  return {
    ...arch,
    activation: arch.activation ?? fallback_act,
    bias: arch.bias ?? true,
    affine: arch.affine ?? true,
    epsilon: arch.epsilon ?? fallback_eps,
    kernelSize: arch.kernelSize ?? 0,
    dilation: arch.dilation ?? 1,
    groups: arch.groups ?? 1,
    heads: arch.heads ?? 0,
    context: arch.context ?? 0,
    ffDim: arch.ffDim ?? 0,
  };
}

/** The architecture of a layer without its tensors, keys in a fixed order (for metadata). */
export function archOf(layer: LayerArch): LayerArch {
  const out: Record<string, unknown> = { kind: layer.kind };
  if (layer.name !== undefined) out.name = layer.name;
  out.inputSize = layer.inputSize;
  out.outputSize = layer.outputSize;
  for (const field of OPTIONAL_FIELDS) {
    if (layer[field] !== undefined) out[field] = layer[field];
  }
  return out as unknown as LayerArch;
}

/** Total number of weights (tensor elements) of a spec. */
export function parameterCount(spec: ModelSpec): number {
  let count = 0;
  for (const layer of spec.layers) {
    for (const tensor of Object.values(layer.tensors)) count += tensor.length;
  }
  return count;
}

/** The model's output width: the last layer's outputSize. */
export function outputSize(spec: ModelSpec): number {
  const last = spec.layers[spec.layers.length - 1];
  if (last === undefined) {
    throw new CadenzaError("E_ARGUMENT", "outputSize: expected a spec with at least one layer");
  }
  return last.outputSize;
}

// ---------------------------------------------------------------------------------------------
// Validation. Each check throws a CadenzaError whose message reads
// "<source>: layer <i> (<kind> "<name>"): <field>: expected <what>, got <value>".

/** Where a problem is, for messages. */
type Where = { source: string; layer: string };

function layerLabel(index: number, arch: { kind?: unknown; name?: unknown }): string {
  const kind = typeof arch.kind === "string" ? arch.kind : "?";
  const name = typeof arch.name === "string" ? ` "${arch.name}"` : "";
  return `layer ${index} (${kind}${name})`;
}

/** A short, bounded description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (typeof value === "number") return Number.isNaN(value) ? "NaN" : String(value);
  if (typeof value === "string") {
    return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "..." : value);
  }
  if (typeof value === "boolean") return String(value);
  if (value instanceof Float32Array) return `Float32Array of ${value.length}`;
  if (ArrayBuffer.isView(value)) {
    const length = (value as unknown as { length?: unknown }).length;
    const name = value.constructor.name;
    return typeof length === "number" ? `${name} of ${length}` : name;
  }
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return typeof value === "object" ? "an object" : typeof value;
}

function fail(
  code: CadenzaErrorCode,
  where: Where,
  field: string,
  expected: string,
  got: string,
): never {
  const place = where.layer === "" ? "" : ` ${where.layer}:`;
  throw new CadenzaError(
    code,
    `${where.source}:${place} ${field}: expected ${expected}, got ${got}`,
  );
}

function checkInt(where: Where, field: string, value: unknown, lo: number, hi: number): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    fail("E_FORMAT", where, field, `an integer in ${lo}..${hi}`, describe(value));
  }
  if (value < lo || value > hi) {
    fail("E_LIMIT", where, field, `an integer in ${lo}..${hi}`, describe(value));
  }
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !ArrayBuffer.isView(value);
}

/** Checks a model's top-level fields; returns the layer list to check next. */
function validateModelFields(spec: unknown, where: Where): unknown[] {
  if (!isRecord(spec)) fail("E_FORMAT", where, "spec", "an object", describe(spec));
  checkInt(where, "inputSize", spec.inputSize, 1, LIMITS.widthMax);
  if (spec.maxBatch !== undefined) {
    checkInt(where, "maxBatch", spec.maxBatch, 1, LIMITS.maxBatchMax);
  }
  if (spec.meta !== undefined) {
    if (!isRecord(spec.meta)) fail("E_FORMAT", where, "meta", "an object", describe(spec.meta));
    for (const [key, value] of Object.entries(spec.meta)) {
      if (typeof value !== "string") {
        fail("E_FORMAT", where, `meta.${key}`, "a string", describe(value));
      }
    }
  }
  const layers = spec.layers;
  if (!Array.isArray(layers)) fail("E_FORMAT", where, "layers", "an array", describe(layers));
  if (layers.length < 1 || layers.length > LIMITS.layersMax) {
    fail("E_LIMIT", where, "layers", `1..${LIMITS.layersMax} layers`, String(layers.length));
  }
  return layers;
}

/**
 * Checks one layer's architecture (no tensors): kind, widths chained from `input_width`, and
 * every field the kind uses. Exported for readers that need a valid architecture before they
 * can look for tensors.
 */
export function validateLayerArch(
  arch: unknown,
  index: number,
  input_width: number,
  source: string,
): asserts arch is LayerArch {
  const where: Where = { source, layer: `layer ${index}` };
  if (!isRecord(arch)) fail("E_FORMAT", where, "layer", "an object", describe(arch));
  where.layer = layerLabel(index, arch);
  const kind = arch.kind;
  if (typeof kind !== "string" || !Object.hasOwn(KIND_IDS, kind)) {
    fail("E_FORMAT", where, "kind", `one of ${Object.keys(KIND_IDS).join(", ")}`, describe(kind));
  }
  if (arch.name !== undefined && typeof arch.name !== "string") {
    fail("E_FORMAT", where, "name", "a string", describe(arch.name));
  }
  for (const key of Object.keys(arch)) {
    if (!KNOWN_KEYS.has(key)) {
      fail("E_FORMAT", where, key, "no such field (see LayerArch)", describe(arch[key]));
    }
  }
  const fields = KIND_FIELDS[kind as LayerKind];
  for (const field of OPTIONAL_FIELDS) {
    if (arch[field] !== undefined && !fields.includes(field)) {
      fail(
        "E_FORMAT",
        where,
        field,
        `nothing (it does not apply to ${kind})`,
        describe(arch[field]),
      );
    }
  }
  const n_in = checkInt(where, "inputSize", arch.inputSize, 1, LIMITS.widthMax);
  const n_out = checkInt(where, "outputSize", arch.outputSize, 1, LIMITS.widthMax);
  if (n_in !== input_width) {
    const previous = index === 0 ? "the model's inputSize" : `layer ${index - 1}'s outputSize`;
    fail("E_SHAPE", where, "inputSize", `${input_width} (${previous})`, String(n_in));
  }
  if (SAME_WIDTH.has(kind as LayerKind) && n_out !== n_in) {
    fail("E_SHAPE", where, "outputSize", `${n_in} (equal to inputSize for ${kind})`, String(n_out));
  }
  validateKindFields(arch, kind as LayerKind, where);
}

function validateKindFields(arch: Record<string, unknown>, kind: LayerKind, where: Where): void {
  const n_in = arch.inputSize as number;
  const n_out = arch.outputSize as number;
  if (arch.activation !== undefined) {
    const act = arch.activation;
    if (typeof act !== "string" || !Object.hasOwn(ACTIVATION_IDS, act)) {
      const names = Object.keys(ACTIVATION_IDS).join(", ");
      fail("E_FORMAT", where, "activation", `one of ${names}`, describe(act));
    }
  }
  for (const field of ["bias", "affine"] as const) {
    if (arch[field] !== undefined && typeof arch[field] !== "boolean") {
      fail("E_FORMAT", where, field, "true or false", describe(arch[field]));
    }
  }
  if (arch.epsilon !== undefined) checkEpsilon(where, arch.epsilon);
  if (kind === "conv1d") {
    checkInt(where, "kernelSize", arch.kernelSize, 1, LIMITS.kernelMax);
    if (arch.dilation !== undefined) {
      checkInt(where, "dilation", arch.dilation, 1, LIMITS.dilationMax);
    }
    const groups = arch.groups === undefined ? 1 : checkInt(where, "groups", arch.groups, 1, n_in);
    if (n_in % groups !== 0 || n_out % groups !== 0) {
      const got = `groups ${groups}, inputSize ${n_in}, outputSize ${n_out}`;
      fail("E_SHAPE", where, "groups", "a divisor of inputSize and outputSize", got);
    }
  }
  if (kind === "attention" || kind === "transformer") {
    const heads = checkInt(where, "heads", arch.heads, 1, LIMITS.headsMax);
    checkInt(where, "context", arch.context, 1, LIMITS.contextMax);
    if (n_in % heads !== 0) {
      fail("E_SHAPE", where, "heads", `a divisor of the width ${n_in}`, String(heads));
    }
  }
  if (kind === "transformer") checkInt(where, "ffDim", arch.ffDim, 1, LIMITS.ffDimMax);
}

function checkEpsilon(where: Where, value: unknown): void {
  // Stored as f32 in the image: it must stay positive and finite after rounding.
  const ok = typeof value === "number" && value > 0 && Number.isFinite(Math.fround(value)) &&
    Math.fround(value) > 0;
  if (!ok) {
    fail("E_FORMAT", where, "epsilon", "a positive number finite as float32", describe(value));
  }
}

/** Checks tensor presence, type, length and finiteness of one layer with a valid arch. */
function validateTensors(layer: LayerArch & { tensors?: unknown }, where: Where): void {
  const tensors = layer.tensors;
  if (!isRecord(tensors)) fail("E_FORMAT", where, "tensors", "an object", describe(tensors));
  const shapes = tensorShapes(layer);
  for (const [name, shape] of Object.entries(shapes)) {
    const tensor = tensors[name];
    if (!(tensor instanceof Float32Array)) {
      fail(
        "E_FORMAT",
        where,
        `tensor ${name}`,
        `a Float32Array [${shape.join("][")}]`,
        describe(tensor),
      );
    }
    const want = shape.reduce((a, b) => a * b, 1);
    const broadcast = layer.kind === "prelu" && tensor.length === 1;
    if (tensor.length !== want && !broadcast) {
      const expected = `${want} elements ([${shape.join("][")}]` +
        (layer.kind === "prelu" ? " or 1)" : ")");
      fail("E_SHAPE", where, `tensor ${name}`, expected, `${tensor.length}`);
    }
    const bad = firstNonFinite(tensor);
    if (bad >= 0) {
      fail("E_FORMAT", where, `tensor ${name}[${bad}]`, "a finite value", describe(tensor[bad]));
    }
  }
  for (const name of Object.keys(tensors)) {
    if (!Object.hasOwn(shapes, name)) {
      const names = Object.keys(shapes).join(", ") || "no tensors";
      fail(
        "E_FORMAT",
        where,
        `tensor ${name}`,
        `only ${names} for ${layer.kind}`,
        "an extra tensor",
      );
    }
  }
  if (layer.kind === "batchnorm") checkVariance(tensors.var as Float32Array, layer, where);
}

/**
 * A variance may be negative (Keras accepts any set_weights; conv.json has one) as long as
 * var + epsilon, computed in float32 as the kernel does, stays positive for the square root.
 */
function checkVariance(variance: Float32Array, layer: LayerArch, where: Where): void {
  const eps = Math.fround(resolveArch(layer).epsilon);
  for (let i = 0; i < variance.length; i++) {
    if (!(Math.fround(variance[i] + eps) > 0)) {
      const got = `var ${variance[i]} with epsilon ${eps}`;
      fail("E_FORMAT", where, `tensor var[${i}]`, "var + epsilon > 0", got);
    }
  }
}

function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    // x - x is 0 for every finite x and NaN for NaN and the infinities.
    if (values[i] - values[i] !== 0) return i;
  }
  return -1;
}

/**
 * Checks every field of a spec: model fields, each layer's kind, widths chained from the model's
 * inputSize, activation names, kind parameters within LIMITS, every tensor present with the
 * right length and only finite values (batchnorm: var + epsilon > 0). Throws a CadenzaError naming `source`, the layer and field.
 */
export function validateSpec(spec: ModelSpec, source: string): void {
  const layers = validateModelFields(spec, { source, layer: "" });
  let width = spec.inputSize;
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i];
    validateLayerArch(layer, i, width, source);
    const where = { source, layer: layerLabel(i, layer) };
    if (layer.kind === "skip" && layer.outputSize > spec.inputSize) {
      const expected = `at most ${spec.inputSize} (the model's inputSize: skip adds the input)`;
      fail("E_SHAPE", where, "outputSize", expected, String(layer.outputSize));
    }
    validateTensors(layer, where);
    width = layer.outputSize;
  }
}
