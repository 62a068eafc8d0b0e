/**
 * ONNX (.onnx, a protobuf ModelProto) to the canonical spec. The graph is read in node order
 * as a sequential model: every op that makes a layer must consume the latest activation, and
 * each value carries the roles of its axes (N batch, T time, C features, 1 a unit axis) so that
 * layout-only ops (Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Identity, Dropout) only move
 * roles. The mapping:
 * - Gemm, and MatMul with a constant [in][out] matrix (+ Add of a constant bias): dense.
 * - LSTM (gates i,o,f,c to i,f,g,o; Wb + Rb) and GRU (z,r,h; linear_before_reset 1): direction
 *   forward, default activations, no sequence_lens or peepholes; initial states absent, zeros,
 *   or graph inputs (recurrent state fed back, as cadenza's exporter writes; the model holds it).
 * - Conv over [N, C, T] (1-d, stride 1): causal padding ((k-1)*dilation before, 0 after) is the
 *   streaming conv1d exactly; no padding gives the same outputs from step (k-1)*dilation on.
 *   A Concat of a state input (the history) before the Conv, as the exporter writes, too.
 * - LayerNormalization (last axis), BatchNormalization (channel axis), Mul and Add by constant
 *   vectors (a batchnorm with mean 0 and variance 1, so scale and shift are kept exactly), PRelu.
 * - Relu, Tanh, Sigmoid, Elu (alpha 1), Gelu (exact, or the Div/Erf/Add/Mul/Mul pattern),
 *   Softmax over the features: fused into the layer before when it is that layer's only use.
 * - Add of the graph input (or its first n features) to the latest activation: a skip layer.
 * - The step-mode attention that cadenza's exporter writes (fused QKV Gemm, Split, the KV cache
 *   as state inputs, Softmax, output Gemm), and around it the pre-norm transformer block
 *   (LayerNormalization, attention, Add, LayerNormalization, Gemm, activation, Gemm, Add).
 * Anything else is E_FORMAT naming the node, its op type and what is supported. Weights come
 * from initializers and Constant nodes, including external data files beside the model.
 */

// Types only: the decoder (onnx-proto, protobufjs with the ONNX schema) loads when an ONNX
// file is read, so the other formats work without it.
import type onnxProto from "onnx-proto";
import { CadenzaError } from "../../errors.ts";
import {
  type Activation,
  describe,
  type LayerSpec,
  type ModelSpec,
  validateSpec,
} from "../spec.ts";

type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type AttributeProto = onnxProto.onnx.IAttributeProto;

/** The op types this reader maps (the error for any other lists them). */
export const ONNX_SUPPORTED_OPS: readonly string[] = [
  "Gemm",
  "MatMul",
  "Add",
  "Mul",
  "LSTM",
  "GRU",
  "Conv",
  "Concat (a state input before Conv)",
  "Slice (the conv history or KV cache state)",
  "LayerNormalization",
  "BatchNormalization",
  "PRelu",
  "Relu",
  "Tanh",
  "Sigmoid",
  "Elu",
  "Gelu",
  "Erf (the Gelu pattern)",
  "Softmax",
  "LogSoftmax",
  "Reshape",
  "Flatten",
  "Squeeze",
  "Unsqueeze",
  "Transpose",
  "Identity",
  "Dropout",
  "Constant",
  "Split (the exported attention)",
  "Pad (zeros before a Conv's time axis)",
  "Slice or Gather of the last time step",
  "ReduceMean/Sub/Pow/Add/Sqrt/Div (a layer norm below opset 17)",
  "Shape, Gather, ConstantOfShape, Expand, Cast (shape arithmetic for zero initial states)",
];

/** Reads the file an external-data tensor names (relative to the model's folder). */
export type ExternalReader = (location: string) => Promise<Uint8Array>;

type Role = "N" | "T" | "C" | "1";

/** A value on the data path: the model's activation after `at` layers, axes in `roles`. */
interface Act {
  t: "act";
  at: number;
  width: number;
  roles: Role[];
  /** True when the value is the graph input, or its first `width` features (skip source). */
  input: boolean;
  /** Zero frames a Pad put before the time axis: only a Conv may read such a value. */
  pad?: number;
}

/** A constant: dims and values (float tensors exactly as float32). */
interface Const {
  t: "const";
  dims: number[];
  values: Float32Array | Float64Array;
}

/** A graph input that holds recurrent state (fed back by the caller); the model keeps it. */
interface StateIn {
  t: "state";
}

/** Concat(history state, frames) before a Conv. */
interface Window {
  t: "window";
  act: Act;
  keep: number;
}

/** A value that only carries state out (a new history, Y_c): it may only be a graph output. */
interface StateOut {
  t: "stateout";
}

/** Integers computed from shapes at run time (Shape, then Gather/Concat/...): values unknown. */
interface Dyn {
  t: "dyn";
}

/** A float tensor of zeros whose shape is computed at run time (ConstantOfShape 0, Expand). */
interface Zeros {
  t: "zeros";
}

type Sym = Act | Const | StateIn | Window | StateOut | Dyn | Zeros;

const FLOAT = 1;
const INT32 = 6;
const INT64 = 7;
const DOUBLE = 11;
const EXTERNAL = 1;

function toNumber(value: unknown): number {
  if (typeof value === "number") return value;
  if (typeof value === "object" && value !== null && "toNumber" in value) {
    return (value as { toNumber(): number }).toNumber();
  }
  return Number(value);
}

/** The parse of one graph: values, layers, and where we are for messages. */
class Reader {
  readonly source: string;
  readonly syms = new Map<string, Sym>();
  readonly layers: LayerSpec[] = [];
  readonly consumers = new Map<string, number[]>();
  readonly graphOutputs = new Set<string>();
  readonly nodes: NodeProto[];
  readonly done = new Set<number>();
  /** Attention layers that carry their block's first layer norm, waiting for the FF half. */
  readonly halves = new Map<LayerSpec, number>();
  opset = 17;

  constructor(source: string, nodes: NodeProto[]) {
    this.source = source;
    this.nodes = nodes;
    nodes.forEach((node, index) => {
      for (const input of node.input ?? []) {
        if (input === "") continue;
        const list = this.consumers.get(input) ?? [];
        list.push(index);
        this.consumers.set(input, list);
      }
    });
  }

  label(index: number): string {
    const node = this.nodes[index];
    const name = node.name ? `"${node.name}"` : `${index}`;
    return `${this.source}: node ${name} (${node.opType})`;
  }

  fail(index: number, message: string, code: "E_FORMAT" | "E_SHAPE" = "E_FORMAT"): never {
    throw new CadenzaError(code, `${this.label(index)}: ${message}`);
  }

  sym(index: number, name: string | undefined): Sym | undefined {
    if (name === undefined || name === "") return undefined;
    const sym = this.syms.get(name);
    if (sym === undefined) this.fail(index, `input "${name}" is not produced by any earlier node`);
    return sym;
  }

  /** The node's input `slot`, which must be the latest activation. */
  head(index: number, slot = 0): Act {
    const name = this.nodes[index].input?.[slot];
    const sym = this.sym(index, name);
    if (sym?.t !== "act") {
      this.fail(index, `input ${slot} ("${name}"): expected the data path, got ${what(sym)}`);
    }
    if (sym.pad !== undefined && this.nodes[index].opType !== "Conv") {
      this.fail(index, `input ${slot} ("${name}") is zero-padded in time: only a Conv may read it`);
    }
    if (sym.at !== this.layers.length) {
      this.fail(
        index,
        `input ${slot} ("${name}") is the activation after layer ${sym.at}, not the latest ` +
          `(after layer ${this.layers.length}): cadenza reads sequential graphs (a residual ` +
          "Add is read from the graph input, or inside a pre-norm transformer block)",
      );
    }
    return sym;
  }

  constant(index: number, slot: number): Const {
    const name = this.nodes[index].input?.[slot];
    const sym = this.sym(index, name);
    if (sym?.t !== "const") {
      this.fail(index, `input ${slot} ("${name}"): expected a constant, got ${what(sym)}`);
    }
    return sym;
  }

  optionalConstant(index: number, slot: number): Const | undefined {
    const name = this.nodes[index].input?.[slot];
    return name === undefined || name === "" ? undefined : this.constant(index, slot);
  }

  out(index: number, sym: Sym, slot = 0): void {
    const name = this.nodes[index].output?.[slot];
    if (name !== undefined && name !== "") this.syms.set(name, sym);
  }

  /** Uses of a value: consuming nodes plus one if it is a graph output. */
  uses(name: string): number {
    return (this.consumers.get(name)?.length ?? 0) + (this.graphOutputs.has(name) ? 1 : 0);
  }

  /**
   * True when the latest layer's output reaches `name` through layout-only ops alone and
   * nothing else reads it (`name` itself may have `allowed` uses): then an op on `name` may
   * change the layer (fuse an activation, take a bias) without changing another reader's value.
   */
  sole(name: string, allowed = 1): boolean {
    for (const [other, sym] of this.syms) {
      if (sym.t !== "act" || sym.at !== this.layers.length) continue;
      const limit = other === name ? allowed : 1;
      if (this.uses(other) > limit || (other !== name && this.graphOutputs.has(other))) {
        return false;
      }
    }
    return this.uses(name) === allowed;
  }

  /** Appends a layer made from `input`; returns the activation after it. */
  push(layer: LayerSpec, roles: Role[]): Act {
    this.layers.push(layer);
    return { t: "act", at: this.layers.length, width: layer.outputSize, roles, input: false };
  }
}

function what(sym: Sym | undefined): string {
  if (sym === undefined) return "nothing";
  switch (sym.t) {
    case "act":
      return `the activation after layer ${sym.at}`;
    case "const":
      return `a constant [${sym.dims.join(", ")}]`;
    case "state":
      return "a recurrent-state input";
    case "window":
      return "a conv history Concat";
    case "stateout":
      return "a recurrent-state output";
    case "dyn":
      return "integers computed from a shape";
    case "zeros":
      return "zeros of a computed shape";
  }
}

// ---- attributes --------------------------------------------------------------------------

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name) ?? undefined;
}

function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a === undefined ? fallback : toNumber(a.i);
}

function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a === undefined ? fallback : (a.f ?? fallback);
}

function attrInts(node: NodeProto, name: string): number[] | undefined {
  const a = attr(node, name);
  return a === undefined ? undefined : (a.ints ?? []).map(toNumber);
}

function attrString(node: NodeProto, name: string): string | undefined {
  const a = attr(node, name);
  return a?.s ? new TextDecoder().decode(a.s) : undefined;
}

function attrStrings(node: NodeProto, name: string): string[] | undefined {
  const a = attr(node, name);
  return a === undefined ? undefined : (a.strings ?? []).map((s) => new TextDecoder().decode(s));
}

/** Integers from an attribute (opset < 13) or a constant input (opset >= 13). */
function intsFrom(r: Reader, index: number, name: string, slot: number): number[] | undefined {
  const fromAttr = attrInts(r.nodes[index], name);
  if (fromAttr !== undefined) return fromAttr;
  const c = r.optionalConstant(index, slot);
  return c === undefined ? undefined : Array.from(c.values);
}

// ---- tensors -----------------------------------------------------------------------------

interface TensorSource {
  external: Map<string, Uint8Array>;
  source: string;
}

function dataOf(t: TensorProto, from: TensorSource, what: string): Uint8Array | undefined {
  if (t.dataLocation !== EXTERNAL) {
    return t.rawData && t.rawData.length > 0 ? t.rawData : undefined;
  }
  const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? "", e.value ?? ""]));
  const location = entries.get("location") ?? "";
  const file = from.external.get(location);
  if (file === undefined) {
    throw new CadenzaError("E_IO", `${from.source}: ${what}: external data "${location}" not read`);
  }
  const offset = Number(entries.get("offset") ?? 0);
  const length = entries.has("length") ? Number(entries.get("length")) : file.length - offset;
  if (!(offset >= 0 && length >= 0 && offset + length <= file.length)) {
    throw new CadenzaError(
      "E_FORMAT",
      `${from.source}: ${what}: external data offset ${offset} + length ${length}: expected ` +
        `within "${location}" (${file.length} bytes)`,
    );
  }
  return file.subarray(offset, offset + length);
}

/** A TensorProto's values (float, double, int32, int64) as a constant. */
function readTensor(t: TensorProto, from: TensorSource, what: string): Const {
  const dims = (t.dims ?? []).map(toNumber);
  const count = dims.reduce((a, b) => a * b, 1);
  const raw = dataOf(t, from, what);
  const width = { [FLOAT]: 4, [INT32]: 4, [INT64]: 8, [DOUBLE]: 8 }[t.dataType ?? 0];
  if (width === undefined) {
    throw new CadenzaError(
      "E_FORMAT",
      `${from.source}: ${what}: data_type ${t.dataType}: expected 1 (float), 6 (int32), ` +
        "7 (int64) or 11 (double)",
    );
  }
  let values: Float32Array | Float64Array;
  if (raw !== undefined) {
    if (raw.length !== count * width) {
      throw new CadenzaError(
        "E_SHAPE",
        `${from.source}: ${what}: ${raw.length} data bytes, expected ${count * width} ` +
          `([${dims.join(", ")}] of ${width}-byte values)`,
      );
    }
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    values = t.dataType === FLOAT ? new Float32Array(count) : new Float64Array(count);
    for (let i = 0; i < count; i++) {
      values[i] = t.dataType === FLOAT
        ? view.getFloat32(i * 4, true)
        : t.dataType === DOUBLE
        ? view.getFloat64(i * 8, true)
        : t.dataType === INT32
        ? view.getInt32(i * 4, true)
        : Number(view.getBigInt64(i * 8, true));
    }
  } else {
    const list: unknown[] = t.dataType === FLOAT
      ? t.floatData ?? []
      : t.dataType === DOUBLE
      ? t.doubleData ?? []
      : t.dataType === INT32
      ? t.int32Data ?? []
      : t.int64Data ?? [];
    if (list.length !== count) {
      throw new CadenzaError(
        "E_SHAPE",
        `${from.source}: ${what}: ${list.length} values, expected ${count} ([${dims.join(", ")}])`,
      );
    }
    values = t.dataType === FLOAT ? new Float32Array(count) : new Float64Array(count);
    list.forEach((v, i) => values[i] = toNumber(v));
  }
  return { t: "const", dims, values };
}

function floats(c: Const): Float32Array {
  return c.values instanceof Float32Array ? c.values.slice() : Float32Array.from(c.values);
}

/** The constant as a vector of n values: [n], [1, n], ... or a scalar broadcast. */
function vectorOf(r: Reader, index: number, c: Const, n: number, what: string): Float32Array {
  const nonUnit = c.dims.filter((d) => d !== 1);
  if (c.values.length === 1) return new Float32Array(n).fill(c.values[0]);
  if (nonUnit.length === 1 && nonUnit[0] === n && c.dims[c.dims.length - 1] === n) {
    return floats(c);
  }
  return r.fail(
    index,
    `${what}: expected ${n} values ([${n}]), got [${c.dims.join(", ")}]`,
    "E_SHAPE",
  );
}

function transposed(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) out[j * rows + i] = values[i * cols + j];
  }
  return out;
}

function reorderBlocks(
  values: Float32Array,
  block: number,
  order: readonly number[],
): Float32Array {
  const out = new Float32Array(values.length);
  order.forEach((from, to) =>
    out.set(values.subarray(from * block, (from + 1) * block), to * block)
  );
  return out;
}

// ---- layout-only ops ---------------------------------------------------------------------

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function squeeze(r: Reader, index: number): void {
  const x = r.sym(index, r.nodes[index].input?.[0]);
  if (x?.t !== "act") return r.fail(index, `expected the data path as input 0, got ${what(x)}`);
  const axes = (intsFrom(r, index, "axes", 1) ?? x.roles.map((role, i) => role === "1" ? i : -1)
    .filter((i) => i >= 0)).map((a) => normAxis(a, x.roles.length));
  for (const a of axes) {
    if (x.roles[a] !== "1") {
      r.fail(index, `axis ${a} is the ${x.roles[a]} axis of [${x.roles}], expected a unit axis`);
    }
  }
  r.out(index, { ...x, roles: x.roles.filter((_, i) => !axes.includes(i)) });
}

function unsqueeze(r: Reader, index: number): void {
  const x = r.sym(index, r.nodes[index].input?.[0]);
  if (x?.t !== "act") return r.fail(index, `expected the data path as input 0, got ${what(x)}`);
  const axes = intsFrom(r, index, "axes", 1) ?? r.fail(index, "expected axes");
  const rank = x.roles.length + axes.length;
  const sorted = axes.map((a) => normAxis(a, rank)).sort((a, b) => a - b);
  const roles = [...x.roles];
  for (const a of sorted) roles.splice(a, 0, "1");
  r.out(index, { ...x, roles });
}

function transpose(r: Reader, index: number): void {
  const x = r.sym(index, r.nodes[index].input?.[0]);
  if (x?.t !== "act") return r.fail(index, `expected the data path as input 0, got ${what(x)}`);
  const perm = attrInts(r.nodes[index], "perm") ?? x.roles.map((_, i) => x.roles.length - 1 - i);
  r.out(index, { ...x, roles: perm.map((p) => x.roles[p]) });
}

/** The roles of a layout-only reshape (units added or removed, C kept whole and last). */
function reshape(r: Reader, index: number): void {
  const x = r.sym(index, r.nodes[index].input?.[0]);
  if (x?.t !== "act") return r.fail(index, `expected the data path as input 0, got ${what(x)}`);
  const shape = Array.from(r.constant(index, 1).values);
  const rows = x.roles.filter((role) => role === "N" || role === "T");
  const roles: Role[] = shape.map((d, i): Role => {
    if (d === 0) return x.roles[i] ?? r.fail(index, `shape[${i}] is 0 past the input's rank`);
    if (d === 1) return "1";
    if (i === shape.length - 1 && (d === x.width || d === -1)) return "C";
    if (d === -1 && rows.length === 1) return rows[0];
    return r.fail(
      index,
      `shape [${shape}] on [${x.roles}] (C = ${x.width}): expected a layout-only reshape ` +
        "(unit axes added or removed, the features kept whole in the last axis)",
    );
  });
  const kept = (list: Role[]) => list.filter((role) => role !== "1").join("");
  if (kept(roles) !== kept(x.roles)) {
    r.fail(index, `shape [${shape}] turns [${x.roles}] into [${roles}]: not layout-only`);
  }
  r.out(index, { ...x, roles });
}

function flatten(r: Reader, index: number): void {
  const x = r.sym(index, r.nodes[index].input?.[0]);
  if (x?.t !== "act") return r.fail(index, `expected the data path as input 0, got ${what(x)}`);
  const axis = normAxis(attrInt(r.nodes[index], "axis", 1), x.roles.length);
  const before = x.roles.slice(0, axis).filter((role) => role !== "1");
  const after = x.roles.slice(axis).filter((role) => role !== "1");
  if (before.length > 1 || after.join("") !== "C") {
    r.fail(index, `axis ${axis} of [${x.roles}]: expected the features alone after the axis`);
  }
  r.out(index, { ...x, roles: [before[0] ?? "1", "C"] });
}

// ---- layers ------------------------------------------------------------------------------

const ACTIVATION_OPS: Record<string, Activation> = {
  Relu: "relu",
  Tanh: "tanh",
  Sigmoid: "sigmoid",
  Elu: "elu",
  Gelu: "gelu",
  Softmax: "softmax",
  LogSoftmax: "logsoftmax",
};

/** Kinds that fuse an activation. */
const FUSES: ReadonlySet<string> = new Set(["dense", "conv1d", "batchnorm"]);

/** An activation on the latest value: fused into the layer that made it when that is its only use. */
function activation(r: Reader, index: number, act: Activation, input = 0): void {
  const x = r.head(index, input);
  const last = r.layers[r.layers.length - 1];
  const name = r.nodes[index].input?.[input] ?? "";
  const fusable = last !== undefined && FUSES.has(last.kind) && x.at === r.layers.length &&
    (last.activation ?? "linear") === "linear" && r.sole(name) && !r.halves.has(last);
  if (fusable) {
    last.activation = act;
    r.out(index, { ...x });
    return;
  }
  const layer: LayerSpec = {
    kind: "activation",
    inputSize: x.width,
    outputSize: x.width,
    activation: act,
    tensors: {},
  };
  r.out(index, r.push(layer, x.roles));
}

function activationOp(r: Reader, index: number, op: string): void {
  const node = r.nodes[index];
  const x = r.head(index);
  if (op === "Elu" && attrFloat(node, "alpha", 1) !== 1) {
    r.fail(
      index,
      `attribute alpha: expected 1 (cadenza's elu), got ${attrFloat(node, "alpha", 1)}`,
    );
  }
  if (op === "Gelu" && (attrString(node, "approximate") ?? "none") !== "none") {
    r.fail(
      index,
      `attribute approximate: expected "none" (the erf form), got "${
        attrString(node, "approximate")
      }"`,
    );
  }
  if (op === "Softmax" || op === "LogSoftmax") {
    const fallback = r.opset >= 13 ? -1 : 1;
    const axis = normAxis(attrInt(node, "axis", fallback), x.roles.length);
    const rest = x.roles.slice(axis).filter((role) => role !== "1").join("");
    if (x.roles[axis] !== "C" && !(r.opset < 13 && rest === "C")) {
      r.fail(index, `axis ${axis} of [${x.roles}]: expected the features axis`);
    }
  }
  activation(r, index, ACTIVATION_OPS[op]);
}

/** The Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(0.5) pattern, from the Div. */
function matchGelu(r: Reader, index: number): boolean {
  const div = r.nodes[index];
  const x = div.input?.[0] ?? "";
  const scale = r.syms.get(div.input?.[1] ?? "");
  if (scale?.t !== "const" || scale.values.length !== 1) return false;
  if (Math.abs(scale.values[0] - Math.SQRT2) > 1e-6) return false;
  const only = (name: string, op: string): number | undefined => {
    const list = r.consumers.get(name) ?? [];
    return list.length === 1 && r.nodes[list[0]].opType === op ? list[0] : undefined;
  };
  const erf = only(div.output?.[0] ?? "", "Erf");
  if (erf === undefined) return false;
  const add = only(r.nodes[erf].output?.[0] ?? "", "Add");
  if (add === undefined || !isScalar(r, r.nodes[add], 1)) return false;
  const mul = only(r.nodes[add].output?.[0] ?? "", "Mul");
  if (mul === undefined || !(r.nodes[mul].input ?? []).includes(x)) return false;
  const half = only(r.nodes[mul].output?.[0] ?? "", "Mul");
  if (half === undefined || !isScalar(r, r.nodes[half], 0.5)) return false;
  // x feeds Div and Mul: one use for fusion purposes.
  const fusable = r.sole(x, 2);
  const last = r.layers[r.layers.length - 1];
  const head = r.head(index);
  if (
    fusable && last !== undefined && FUSES.has(last.kind) &&
    (last.activation ?? "linear") === "linear" && !r.halves.has(last)
  ) {
    last.activation = "gelu";
    r.out(half, { ...head });
  } else {
    r.out(
      half,
      r.push({
        kind: "activation",
        inputSize: head.width,
        outputSize: head.width,
        activation: "gelu",
        tensors: {},
      }, head.roles),
    );
  }
  for (const i of [index, erf, add, mul, half]) r.done.add(i);
  return true;
}

function isScalar(r: Reader, node: NodeProto, value: number): boolean {
  return (node.input ?? []).some((name) => {
    const c = r.syms.get(name);
    return c?.t === "const" && c.values.length === 1 && c.values[0] === value;
  });
}

function dense(
  r: Reader,
  index: number,
  x: Act,
  w: Float32Array,
  n_out: number,
  b: Float32Array | undefined,
): void {
  const layer: LayerSpec = {
    kind: "dense",
    inputSize: x.width,
    outputSize: n_out,
    tensors: { W: w },
  };
  if (b === undefined) layer.bias = false;
  else layer.tensors.b = b;
  r.out(index, r.push(layer, x.roles));
}

function gemm(r: Reader, index: number): void {
  const node = r.nodes[index];
  const x = r.head(index);
  if (x.roles.length !== 2 || x.roles[1] !== "C") {
    r.fail(index, `input 0 has axes [${x.roles}]: expected [rows, features]`);
  }
  if (attrInt(node, "transA", 0) !== 0) r.fail(index, "attribute transA: expected 0, got 1");
  const w = r.constant(index, 1);
  const trans_b = attrInt(node, "transB", 0) === 1;
  if (w.dims.length !== 2) r.fail(index, `B: expected a matrix, got [${w.dims}]`, "E_SHAPE");
  const [n_out, n_in] = trans_b ? w.dims : [w.dims[1], w.dims[0]];
  if (n_in !== x.width) {
    r.fail(index, `B [${w.dims}]: expected ${x.width} inputs (transB ${+trans_b})`, "E_SHAPE");
  }
  let weights = trans_b ? floats(w) : transposed(floats(w), n_in, n_out);
  const alpha = attrFloat(node, "alpha", 1);
  const beta = attrFloat(node, "beta", 1);
  if (alpha !== 1) weights = weights.map((v) => v * alpha);
  const c = r.optionalConstant(index, 2);
  let bias = c === undefined ? undefined : vectorOf(r, index, c, n_out, "C");
  if (bias !== undefined && beta !== 1) bias = bias.map((v) => v * beta);
  dense(r, index, x, weights, n_out, bias);
}

function matmul(r: Reader, index: number): void {
  const x = r.head(index);
  if (x.roles[x.roles.length - 1] !== "C") {
    r.fail(index, `input 0 has axes [${x.roles}]: expected the features last`);
  }
  const w = r.constant(index, 1);
  if (w.dims.length !== 2 || w.dims[0] !== x.width) {
    r.fail(index, `B [${w.dims}]: expected a constant [${x.width}][out] matrix`, "E_SHAPE");
  }
  dense(r, index, x, transposed(floats(w), w.dims[0], w.dims[1]), w.dims[1], undefined);
}

/** Mul or Add by a constant, per feature (a batchnorm that keeps scale and shift exactly). */
function affine(r: Reader, index: number, op: "Mul" | "Add", slot: number): void {
  const x = r.head(index, slot);
  const c = r.constant(index, 1 - slot);
  const channel = x.roles.indexOf("C");
  const trailing = x.roles.slice(channel + 1).every((role) => role === "1");
  if (!trailing && c.values.length !== 1) {
    r.fail(index, `input ${slot} has axes [${x.roles}]: expected the features last`);
  }
  const v = vectorOf(r, index, c, x.width, `input ${1 - slot}`);
  const last = r.layers[r.layers.length - 1];
  const name = r.nodes[index].input?.[slot] ?? "";
  const only = last !== undefined && r.sole(name) && !r.halves.has(last);
  // The scale and shift after a decomposed layer norm are its gamma and beta.
  if (only && last.kind === "layernorm" && decomposed.has(last)) {
    const t = last.tensors;
    const fresh = op === "Mul"
      ? t.gamma.every((g) => g === 1) && t.beta.every((b) => b === 0)
      : t.beta.every((b) => b === 0);
    if (fresh) {
      if (op === "Mul") t.gamma = v;
      else t.beta = v;
      r.out(index, { ...x });
      return;
    }
  }
  if (
    op === "Add" && only && last.kind === "dense" && last.bias === false &&
    (last.activation ?? "linear") === "linear"
  ) {
    delete last.bias;
    last.tensors.b = v;
    r.out(index, { ...x });
    return;
  }
  if (
    op === "Add" && only && last.kind === "batchnorm" && folded.has(last) &&
    (last.activation ?? "linear") === "linear" && last.tensors.beta.every((b) => b === 0)
  ) {
    last.tensors.beta = v;
    r.out(index, { ...x });
    return;
  }
  const n = x.width;
  const layer: LayerSpec = {
    kind: "batchnorm",
    inputSize: n,
    outputSize: n,
    epsilon: FOLDED_EPSILON,
    tensors: {
      gamma: op === "Mul" ? v : new Float32Array(n).fill(1),
      beta: op === "Add" ? v : new Float32Array(n),
      mean: new Float32Array(n),
      var: new Float32Array(n).fill(1),
    },
  };
  folded.add(layer);
  r.out(index, r.push(layer, x.roles));
}

/**
 * sqrt(1 + 1e-30) is 1 in float64, so gamma / sqrt(var + eps) is gamma and beta - mean * scale
 * is beta: the library's fold keeps a Mul/Add constant exactly.
 */
const FOLDED_EPSILON = 1e-30;
const folded = new WeakSet<LayerSpec>();

function add(r: Reader, index: number): void {
  const node = r.nodes[index];
  const [a, b] = [r.sym(index, node.input?.[0]), r.sym(index, node.input?.[1])];
  if (a?.t === "const" && b?.t === "act") return affine(r, index, "Add", 1);
  if (a?.t === "act" && b?.t === "const") return affine(r, index, "Add", 0);
  if (a?.t !== "act" || b?.t !== "act") {
    r.fail(
      index,
      `expected the data path and a constant or a residual, got ${what(a)} and ${what(b)}`,
    );
  }
  const [older, newer] = a.at <= b.at ? [a, b] : [b, a];
  const slot = newer === a ? 0 : 1;
  r.head(index, slot);
  if (older.at === newer.at) r.fail(index, "adds a value to itself: not a residual cadenza maps");
  const block = r.layers.slice(older.at).map((l) => l.kind).join();
  if (older.at === 0 && older.input && block !== "layernorm,attention") {
    const kept = (roles: Role[]) => roles.filter((role) => role !== "1").join("");
    if (kept(older.roles) !== kept(newer.roles)) {
      r.fail(index, `the input's axes [${older.roles}] and [${newer.roles}]: expected the same`);
    }
    if (older.width !== newer.width) {
      r.fail(
        index,
        `the input's ${older.width} features and ${newer.width}: expected equal widths`,
        "E_SHAPE",
      );
    }
    const layer: LayerSpec = {
      kind: "skip",
      inputSize: newer.width,
      outputSize: newer.width,
      tensors: {},
    };
    r.out(index, r.push(layer, newer.roles));
    return;
  }
  residual(r, index, older, newer);
}

/** x + f(x) inside a pre-norm transformer block: LN + attention, then LN + FF. */
function residual(r: Reader, index: number, older: Act, newer: Act): void {
  const span = r.layers.slice(older.at);
  const kinds = span.map((l) => l.kind).join(", ");
  if (span.length === 2 && span[0].kind === "layernorm" && span[1].kind === "attention") {
    const [ln, att] = span;
    const half: LayerSpec = {
      ...att,
      tensors: { ...att.tensors, ln1_g: ln.tensors.gamma, ln1_b: ln.tensors.beta },
    };
    r.layers.splice(older.at, 2, half);
    r.halves.set(half, ln.epsilon ?? 1e-5);
    r.out(index, { ...newer, at: r.layers.length });
    return;
  }
  const first = span[0];
  if (
    span.length === 3 && r.halves.has(r.layers[older.at - 1]) && first.kind === "layernorm" &&
    span[1].kind === "dense" && span[2].kind === "dense" &&
    (span[2].activation ?? "linear") === "linear"
  ) {
    const half = r.layers[older.at - 1];
    const eps = r.halves.get(half) ?? 1e-5;
    if (Math.fround(eps) !== Math.fround(first.epsilon ?? 1e-5)) {
      r.fail(
        index,
        `the block's layer norms have epsilons ${eps} and ${first.epsilon}: cadenza's transformer has one`,
      );
    }
    const [ff1, ff2] = [span[1], span[2]];
    const d = half.outputSize;
    const t = half.tensors;
    const block: LayerSpec = {
      kind: "transformer",
      inputSize: d,
      outputSize: d,
      heads: half.heads,
      context: half.context,
      ffDim: ff1.outputSize,
      epsilon: eps,
      activation: ff1.activation ?? "linear",
      tensors: {
        ln1_g: t.ln1_g,
        ln1_b: t.ln1_b,
        Wq: t.Wq,
        bq: t.bq,
        Wk: t.Wk,
        bk: t.bk,
        Wv: t.Wv,
        bv: t.bv,
        Wo: t.Wo,
        bo: t.bo,
        ln2_g: first.tensors.gamma,
        ln2_b: first.tensors.beta,
        W1: ff1.tensors.W,
        b1: ff1.tensors.b ?? new Float32Array(ff1.outputSize),
        W2: ff2.tensors.W,
        b2: ff2.tensors.b ?? new Float32Array(d),
      },
    };
    r.halves.delete(half);
    r.layers.splice(older.at - 1, 4, block);
    r.out(index, { ...newer, at: r.layers.length });
    return;
  }
  r.fail(
    index,
    `a residual Add around layers ${older.at}..${r.layers.length - 1} (${kinds}): cadenza maps ` +
      "a residual from the graph input (a skip layer) or a pre-norm transformer block " +
      "(LayerNormalization, attention, Add, LayerNormalization, Gemm, activation, Gemm, Add)",
  );
}

/** Layer norms read from the opset < 17 decomposition: their Mul and Add become gamma, beta. */
const decomposed = new WeakSet<LayerSpec>();

/**
 * torch's layer norm below opset 17: ReduceMean(x) -> Sub(x, mean) -> Pow(., 2) -> ReduceMean ->
 * Add(eps) -> Sqrt -> Div(x - mean, .), all over the last axis; matched from the first
 * ReduceMean. Returns false when the node does not start that pattern.
 */
function matchLayerNorm(r: Reader, index: number): boolean {
  const node = r.nodes[index];
  const x_name = node.input?.[0] ?? "";
  const x = r.syms.get(x_name);
  if (x?.t !== "act" || x.at !== r.layers.length || x.pad !== undefined) return false;
  const lastAxis = (i: number) => {
    const axes = intsFrom(r, i, "axes", 1);
    return axes?.length === 1 && normAxis(axes[0], x.roles.length) === x.roles.length - 1 &&
      attrInt(r.nodes[i], "keepdims", 1) === 1;
  };
  const only = (name: string, op: string): number | undefined => {
    const list = r.consumers.get(name) ?? [];
    return list.length >= 1 && list.every((i) => r.nodes[i].opType === op) ? list[0] : undefined;
  };
  if (x.roles[x.roles.length - 1] !== "C" || !lastAxis(index)) return false;
  const sub = only(node.output?.[0] ?? "", "Sub");
  if (sub === undefined || r.nodes[sub].input?.[0] !== x_name) return false;
  const centred = r.nodes[sub].output?.[0] ?? "";
  const users = r.consumers.get(centred) ?? [];
  const pow = users.find((i) => r.nodes[i].opType === "Pow");
  const div = users.find((i) => r.nodes[i].opType === "Div");
  if (pow === undefined || div === undefined || users.length !== 2) return false;
  if (!isScalar(r, r.nodes[pow], 2)) return false;
  const mean2 = only(r.nodes[pow].output?.[0] ?? "", "ReduceMean");
  if (mean2 === undefined || !lastAxis(mean2)) return false;
  const addEps = only(r.nodes[mean2].output?.[0] ?? "", "Add");
  if (addEps === undefined) return false;
  const eps = (r.nodes[addEps].input ?? []).map((name) => r.syms.get(name))
    .find((sym) => sym?.t === "const" && sym.values.length === 1);
  const sqrt = only(r.nodes[addEps].output?.[0] ?? "", "Sqrt");
  if (eps?.t !== "const" || sqrt === undefined) return false;
  if (r.nodes[div].input?.[1] !== r.nodes[sqrt].output?.[0]) return false;
  const n = x.width;
  const layer: LayerSpec = {
    kind: "layernorm",
    inputSize: n,
    outputSize: n,
    epsilon: eps.values[0],
    tensors: { gamma: new Float32Array(n).fill(1), beta: new Float32Array(n) },
  };
  decomposed.add(layer);
  r.out(div, r.push(layer, x.roles));
  for (const i of [index, sub, pow, mean2, addEps, sqrt, div]) r.done.add(i);
  return true;
}

function layerNorm(r: Reader, index: number): void {
  const node = r.nodes[index];
  const x = r.head(index);
  const axis = normAxis(attrInt(node, "axis", -1), x.roles.length);
  if (x.roles[axis] !== "C" || x.roles.slice(axis + 1).some((role) => role !== "1")) {
    r.fail(index, `axis ${axis} of [${x.roles}]: expected the features axis, last`);
  }
  const n = x.width;
  const gamma = vectorOf(r, index, r.constant(index, 1), n, "Scale");
  const b = r.optionalConstant(index, 2);
  const layer: LayerSpec = {
    kind: "layernorm",
    inputSize: n,
    outputSize: n,
    epsilon: attrFloat(node, "epsilon", 1e-5),
    tensors: { gamma, beta: b === undefined ? new Float32Array(n) : vectorOf(r, index, b, n, "B") },
  };
  r.out(index, r.push(layer, x.roles));
}

function batchNorm(r: Reader, index: number): void {
  const node = r.nodes[index];
  const x = r.head(index);
  if (x.roles.length >= 2 && x.roles[1] !== "C") {
    r.fail(index, `input 0 has axes [${x.roles}]: expected the channels in axis 1`);
  }
  if (attrInt(node, "training_mode", 0) !== 0) r.fail(index, "attribute training_mode: expected 0");
  const n = x.width;
  const v = (slot: number, name: string) => vectorOf(r, index, r.constant(index, slot), n, name);
  const layer: LayerSpec = {
    kind: "batchnorm",
    inputSize: n,
    outputSize: n,
    epsilon: attrFloat(node, "epsilon", 1e-5),
    tensors: {
      gamma: v(1, "scale"),
      beta: v(2, "B"),
      mean: v(3, "input_mean"),
      var: v(4, "input_var"),
    },
  };
  r.out(index, r.push(layer, x.roles));
}

function prelu(r: Reader, index: number): void {
  const x = r.head(index);
  const slope = r.constant(index, 1);
  const alpha = slope.values.length === 1
    ? floats(slope)
    : vectorOf(r, index, slope, x.width, "slope");
  r.out(
    index,
    r.push({ kind: "prelu", inputSize: x.width, outputSize: x.width, tensors: { alpha } }, x.roles),
  );
}

/** An initial state: absent, a state input, or zeros. */
function checkInitialState(r: Reader, index: number, slot: number, name: string): void {
  const sym = r.sym(index, r.nodes[index].input?.[slot]);
  if (sym === undefined || sym.t === "state" || sym.t === "zeros") return;
  if (sym.t === "const" && sym.values.every((v) => v === 0)) return;
  r.fail(
    index,
    `${name}: expected absent, zeros or a graph input (state fed back), got ${what(sym)}`,
  );
}

/** Common checks of LSTM and GRU; returns the roles of Y and of Y_h. */
function recurrentRoles(r: Reader, index: number, x: Act, gates: number, hidden: number) {
  const node = r.nodes[index];
  const direction = attrString(node, "direction") ?? "forward";
  if (direction !== "forward") {
    r.fail(index, `attribute direction: expected "forward", got "${direction}"`);
  }
  if (attr(node, "clip") !== undefined) r.fail(index, "attribute clip: expected none");
  const acts = attrStrings(node, "activations");
  const defaults = gates === 4 ? ["Sigmoid", "Tanh", "Tanh"] : ["Sigmoid", "Tanh"];
  if (acts !== undefined && acts.join() !== defaults.join()) {
    r.fail(index, `attribute activations: expected ${defaults.join(", ")}, got ${acts.join(", ")}`);
  }
  if ((node.input?.[4] ?? "") !== "") {
    r.fail(index, "sequence_lens: expected none (every sequence full length)");
  }
  const layout = attrInt(node, "layout", 0);
  const seq = layout === 0 ? x.roles : [x.roles[1], x.roles[0], x.roles[2]];
  const ok = x.roles.length === 3 && (seq[0] === "T" || seq[0] === "1") &&
    (seq[1] === "N" || seq[1] === "1") && seq[2] === "C";
  if (!ok) {
    r.fail(index, `X has axes [${x.roles}] (layout ${layout}): expected [time, batch, features]`);
  }
  const w = r.constant(index, 1);
  const rr = r.constant(index, 2);
  const shape_ok = w.dims.join() === [1, gates * hidden, x.width].join() &&
    rr.dims.join() === [1, gates * hidden, hidden].join();
  if (!shape_ok) {
    r.fail(
      index,
      `W [${w.dims}], R [${rr.dims}]: expected [1, ${gates * hidden}, ${x.width}] and ` +
        `[1, ${gates * hidden}, ${hidden}]`,
      "E_SHAPE",
    );
  }
  const y: Role[] = layout === 0 ? [seq[0], "1", seq[1], "C"] : [seq[1], seq[0], "1", "C"];
  const y_h: Role[] = layout === 0 ? ["1", seq[1], "C"] : [seq[1], "1", "C"];
  return { w, rr, y, y_h, timeUnit: seq[0] === "1" };
}

function recurrentOutputs(
  r: Reader,
  index: number,
  state: Act,
  roles: ReturnType<typeof recurrentRoles>,
  c_slot?: number,
) {
  r.out(index, { ...state, roles: roles.y }, 0);
  // Y_h is the last step's output: the same values only when the time axis is a unit.
  if (roles.timeUnit) r.out(index, { ...state, roles: roles.y_h }, 1);
  else r.out(index, { t: "stateout" }, 1);
  if (c_slot !== undefined) r.out(index, { t: "stateout" }, c_slot);
}

function lstm(r: Reader, index: number): void {
  const node = r.nodes[index];
  const x = r.head(index);
  const h = attrInt(node, "hidden_size", 0);
  if (attrInt(node, "input_forget", 0) !== 0) r.fail(index, "attribute input_forget: expected 0");
  const roles = recurrentRoles(r, index, x, 4, h);
  if ((node.input?.[7] ?? "") !== "") r.fail(index, "P (peepholes): expected none");
  checkInitialState(r, index, 5, "initial_h");
  checkInitialState(r, index, 6, "initial_c");
  // ONNX gates i,o,f,c; canonical i,f,g,o.
  const order = [0, 2, 3, 1];
  const wx = reorderBlocks(floats(roles.w), h * x.width, order);
  const wh = reorderBlocks(floats(roles.rr), h * h, order);
  const bias = r.optionalConstant(index, 3);
  const b = new Float32Array(4 * h);
  if (bias !== undefined) {
    const both = vectorOf(r, index, bias, 8 * h, "B");
    const sum = new Float32Array(4 * h);
    for (let i = 0; i < 4 * h; i++) sum[i] = both[i] + both[4 * h + i];
    b.set(reorderBlocks(sum, h, order));
  }
  const layer: LayerSpec = {
    kind: "lstm",
    inputSize: x.width,
    outputSize: h,
    tensors: { Wx: wx, Wh: wh, b },
  };
  recurrentOutputs(r, index, r.push(layer, []), roles, 2);
}

function gru(r: Reader, index: number): void {
  const node = r.nodes[index];
  const x = r.head(index);
  const h = attrInt(node, "hidden_size", 0);
  if (attrInt(node, "linear_before_reset", 0) !== 1) {
    r.fail(
      index,
      "attribute linear_before_reset: expected 1 (reset after the matrix, as PyTorch and Keras)",
    );
  }
  const roles = recurrentRoles(r, index, x, 3, h);
  checkInitialState(r, index, 5, "initial_h");
  const bias = r.optionalConstant(index, 3);
  const both = bias === undefined ? new Float32Array(6 * h) : vectorOf(r, index, bias, 6 * h, "B");
  const layer: LayerSpec = {
    kind: "gru",
    inputSize: x.width,
    outputSize: h,
    tensors: {
      Wx: floats(roles.w),
      Wh: floats(roles.rr),
      bx: both.slice(0, 3 * h),
      bh: both.slice(3 * h),
    },
  };
  recurrentOutputs(r, index, r.push(layer, []), roles);
}

function concat(r: Reader, index: number): void {
  const node = r.nodes[index];
  const [a, b] = [r.sym(index, node.input?.[0]), r.sym(index, node.input?.[1])];
  if ((node.input?.length ?? 0) !== 2 || a?.t !== "state" || b?.t !== "act") {
    r.fail(
      index,
      `expected Concat(history state input, frames) before a Conv, got ${what(a)} and ${what(b)}`,
    );
  }
  r.head(index, 1);
  const axis = normAxis(attrInt(node, "axis", 0), b.roles.length);
  if (b.roles.length !== 3 || b.roles[1] !== "C" || b.roles[2] !== "1" || axis !== 2) {
    r.fail(index, `frames [${b.roles}] on axis ${axis}: expected [N, C, 1] on axis 2`);
  }
  const slices = (r.consumers.get(node.output?.[0] ?? "") ?? []).filter((i) =>
    r.nodes[i].opType === "Slice"
  );
  if (slices.length !== 1) {
    r.fail(index, "expected one Slice of the window (the new history), got " + slices.length);
  }
  const s = slices[0];
  const keep = r.constant(s, 2).values[0] - r.constant(s, 1).values[0];
  r.out(s, { t: "stateout" });
  r.done.add(s);
  r.out(index, { t: "window", act: b, keep });
}

function conv(r: Reader, index: number): void {
  const node = r.nodes[index];
  const input = r.sym(index, node.input?.[0]);
  const x = input?.t === "window" ? input.act : r.head(index);
  if (x.at !== r.layers.length) r.fail(index, "the history Concat is not of the latest activation");
  if (x.roles.length !== 3 || x.roles[1] !== "C" || (x.roles[2] !== "T" && x.roles[2] !== "1")) {
    r.fail(index, `input has axes [${x.roles}]: expected [batch, channels, time] (1-d)`);
  }
  const w = r.constant(index, 1);
  const group = attrInt(node, "group", 1);
  if (w.dims.length !== 3) {
    r.fail(index, `W [${w.dims}]: expected a 1-d kernel [out, in/group, k]`, "E_SHAPE");
  }
  const [n_out, per_group, k] = w.dims;
  if (per_group * group !== x.width) {
    r.fail(
      index,
      `W [${w.dims}] with group ${group}: expected ${x.width} input channels`,
      "E_SHAPE",
    );
  }
  const dilation = (attrInts(node, "dilations") ?? [1])[0];
  const strides = attrInts(node, "strides") ?? [1];
  if (strides.some((s) => s !== 1)) r.fail(index, `attribute strides [${strides}]: expected 1`);
  const own = attrInts(node, "pads") ?? [0, 0];
  // A Pad before the Conv (torch's F.pad for a causal convolution) adds to the left padding.
  const pads = [own[0] + (x.pad ?? 0), own[1]];
  const auto = attrString(node, "auto_pad") ?? "NOTSET";
  const keep = (k - 1) * dilation;
  if (input?.t === "window") {
    if (input.keep !== keep || pads.some((p) => p !== 0)) {
      r.fail(
        index,
        `a history of ${input.keep} frames with pads [${pads}]: expected ${keep} frames ` +
          "((k-1)*dilation) and no padding",
      );
    }
  } else {
    const causal = pads[0] === keep && pads[1] === 0;
    const valid = pads.every((p) => p === 0) && x.roles[2] === "T";
    if (auto !== "NOTSET" || !(causal || valid)) {
      r.fail(
        index,
        `pads [${pads}] (auto_pad ${auto}): expected causal padding [${keep}, 0] or ` +
          "none over a time axis: cadenza's conv1d streams causally",
      );
    }
  }
  const b = r.optionalConstant(index, 2);
  const layer: LayerSpec = {
    kind: "conv1d",
    inputSize: x.width,
    outputSize: n_out,
    kernelSize: k,
    dilation,
    groups: group,
    tensors: {
      W: floats(w),
      b: b === undefined ? new Float32Array(n_out) : vectorOf(r, index, b, n_out, "B"),
    },
  };
  r.out(index, r.push(layer, x.roles));
}

/** Zeros before the time axis of [N, C, T] (torch's F.pad(x, (k - 1, 0))), for a Conv. */
function pad(r: Reader, index: number): void {
  const node = r.nodes[index];
  const x = r.sym(index, node.input?.[0]);
  const pads = intsFrom(r, index, "pads", 1) ?? [];
  const mode = attrString(node, "mode") ?? "constant";
  const value = r.optionalConstant(index, 2)?.values[0] ?? attrFloat(node, "value", 0);
  const rank = x?.t === "act" ? x.roles.length : 0;
  const ok = x?.t === "act" && rank === 3 && x.roles[1] === "C" && mode === "constant" &&
    value === 0 && pads.length === 2 * rank && pads.every((p, i) => i === 2 ? p >= 0 : p === 0) &&
    (node.input?.[3] ?? "") === "";
  if (!ok) {
    r.fail(
      index,
      `pads [${pads}] (mode ${mode}, value ${value}) on ${what(x)}: expected zeros before the ` +
        "time axis of [N, C, T] only (a causal Conv's padding)",
    );
  }
  r.out(index, { ...x, pad: (x.pad ?? 0) + pads[2] });
}

/** The first n features of the graph input (the source of a narrower skip). */
function slice(r: Reader, index: number): void {
  const x = r.sym(index, r.nodes[index].input?.[0]);
  const starts = r.optionalConstant(index, 1)?.values ?? [];
  const ends = r.optionalConstant(index, 2)?.values ?? [];
  const axes = r.optionalConstant(index, 3)?.values ?? [];
  const steps = r.optionalConstant(index, 4)?.values ?? [1];
  const axis = x?.t === "act" && axes.length === 1 ? normAxis(axes[0], x.roles.length) : -1;
  if (
    x?.t === "act" && x.roles[axis] === "T" && starts[0] === -1 && ends[0] > 0 && steps[0] === 1
  ) {
    // out[-1:] of a sequence: the step model's output at the sequence's last step.
    r.out(index, { ...x, roles: x.roles.map((role, i) => i === axis ? "1" : role) });
    return;
  }
  const ok = x?.t === "act" && x.at === 0 && x.input && starts.length === 1 && starts[0] === 0 &&
    steps[0] === 1 && axes.length === 1 && x.roles[normAxis(axes[0], x.roles.length)] === "C" &&
    ends[0] >= 1;
  if (!ok) {
    r.fail(
      index,
      "Slice is read as the first features of the graph input (a skip source), the last " +
        "step of a sequence, or the new conv history or KV cache; got another slice",
    );
  }
  r.out(index, { ...x, width: Math.min(ends[0], x.width) });
}

/** Gather(index -1) on the time axis: the sequence's last step (torch's `out[-1]`). */
function gather(r: Reader, index: number): void {
  const node = r.nodes[index];
  const x = r.sym(index, node.input?.[0]);
  const indices = r.optionalConstant(index, 1);
  const axis = x?.t === "act" ? normAxis(attrInt(node, "axis", 0), x.roles.length) : -1;
  const last = indices !== undefined && indices.values.length === 1 && indices.values[0] === -1;
  if (x?.t !== "act" || x.roles[axis] !== "T" || !last) {
    r.fail(index, "Gather is read on shapes, or as index -1 of the time axis (the last step)");
  }
  const scalar = indices.dims.length === 0;
  const roles = scalar
    ? x.roles.filter((_, i) => i !== axis)
    : x.roles.map((role, i) => i === axis ? "1" : role);
  r.out(index, { ...x, roles });
}

// ---- the exported step-mode attention ----------------------------------------------------

/** The one consumer of `name` with op `op`, or a failure naming what was expected. */
function next(r: Reader, from: number, name: string, op: string, role: string): number {
  const list = r.consumers.get(name) ?? [];
  const found = list.find((i) => r.nodes[i].opType === op);
  if (found === undefined) {
    r.fail(
      from,
      `the attention pattern expects ${role} (${op}) after "${name}", got ` +
        `${list.map((i) => r.nodes[i].opType).join(", ") || "nothing"}`,
    );
  }
  return found;
}

function attention(r: Reader, index: number, split: number): void {
  const qkv = r.nodes[index];
  const x = r.head(index);
  const d = x.width;
  const w = r.constant(index, 1);
  if (attrInt(qkv, "transB", 0) !== 1 || w.dims.join() !== [3 * d, d].join()) {
    r.fail(
      index,
      `the fused QKV Gemm: expected transB 1 and B [${3 * d}, ${d}], got [${w.dims}]`,
      "E_SHAPE",
    );
  }
  const bias = vectorOf(r, index, r.constant(index, 2), 3 * d, "C");
  const wAll = floats(w);
  const [q, k, v] = r.nodes[split].output ?? [];
  const kReshape = next(r, split, k, "Reshape", "the key reshape");
  const vReshape = next(r, split, v, "Reshape", "the value reshape");
  const qReshape = next(r, split, q, "Reshape", "the query reshape");
  const shape = Array.from(r.constant(qReshape, 1).values);
  const heads = shape[1];
  if (shape.length !== 4 || heads * shape[3] !== d) {
    r.fail(qReshape, `shape [${shape}]: expected [0, heads, 1, ${d} / heads]`);
  }
  const kConcat = next(r, kReshape, r.nodes[kReshape].output?.[0] ?? "", "Concat", "the key cache");
  const vConcat = next(
    r,
    vReshape,
    r.nodes[vReshape].output?.[0] ?? "",
    "Concat",
    "the value cache",
  );
  const kSlice = next(r, kConcat, r.nodes[kConcat].output?.[0] ?? "", "Slice", "the key cache cut");
  const vSlice = next(
    r,
    vConcat,
    r.nodes[vConcat].output?.[0] ?? "",
    "Slice",
    "the value cache cut",
  );
  const context = -r.constant(kSlice, 1).values[0];
  if (!(context >= 1) || -r.constant(vSlice, 1).values[0] !== context) {
    r.fail(kSlice, "the KV cache cut: expected the last `context` positions of both caches");
  }
  for (const c of [kConcat, vConcat]) {
    const past = r.sym(c, r.nodes[c].input?.[0]);
    if (past?.t !== "state") {
      r.fail(c, `input 0: expected the cache state input, got ${what(past)}`);
    }
  }
  const scores = next(r, qReshape, r.nodes[qReshape].output?.[0] ?? "", "MatMul", "q.k");
  const scale = next(r, scores, r.nodes[scores].output?.[0] ?? "", "Mul", "the 1/sqrt(dh) scale");
  const dh = d / heads;
  if (!isNear(r, r.nodes[scale], 1 / Math.sqrt(dh))) {
    r.fail(scale, `expected a scale of 1/sqrt(${dh})`);
  }
  const softmax = next(r, scale, r.nodes[scale].output?.[0] ?? "", "Softmax", "the softmax");
  const mixed = next(r, softmax, r.nodes[softmax].output?.[0] ?? "", "MatMul", "probabilities.v");
  const flat = next(
    r,
    mixed,
    r.nodes[mixed].output?.[0] ?? "",
    "Reshape",
    "the heads' concatenation",
  );
  const out = next(r, flat, r.nodes[flat].output?.[0] ?? "", "Gemm", "the output projection");
  const wo = r.constant(out, 1);
  if (attrInt(r.nodes[out], "transB", 0) !== 1 || wo.dims.join() !== [d, d].join()) {
    r.fail(
      out,
      `the output projection: expected transB 1 and B [${d}, ${d}], got [${wo.dims}]`,
      "E_SHAPE",
    );
  }
  const part = (t: Float32Array, i: number, len: number) => t.slice(i * len, (i + 1) * len);
  const layer: LayerSpec = {
    kind: "attention",
    inputSize: d,
    outputSize: d,
    heads,
    context,
    tensors: {
      Wq: part(wAll, 0, d * d),
      bq: part(bias, 0, d),
      Wk: part(wAll, 1, d * d),
      bk: part(bias, 1, d),
      Wv: part(wAll, 2, d * d),
      bv: part(bias, 2, d),
      Wo: floats(wo),
      bo: vectorOf(r, out, r.constant(out, 2), d, "C"),
    },
  };
  const nodes = [
    index,
    split,
    kReshape,
    vReshape,
    qReshape,
    kConcat,
    vConcat,
    kSlice,
    vSlice,
    scores,
    scale,
    softmax,
    mixed,
    flat,
    out,
  ];
  for (const i of nodes) r.done.add(i);
  r.out(kSlice, { t: "stateout" });
  r.out(vSlice, { t: "stateout" });
  r.out(out, r.push(layer, x.roles));
}

function isNear(r: Reader, node: NodeProto, value: number): boolean {
  return (node.input ?? []).some((name) => {
    const c = r.syms.get(name);
    return c?.t === "const" && c.values.length === 1 &&
      Math.abs(c.values[0] - value) <= 1e-6 * value;
  });
}

/** A Gemm whose only consumer is a three-way Split: the exported attention. */
function splitAfter(r: Reader, index: number): number | undefined {
  const list = r.consumers.get(r.nodes[index].output?.[0] ?? "") ?? [];
  if (list.length !== 1) return undefined;
  const node = r.nodes[list[0]];
  return node.opType === "Split" && (node.output?.length ?? 0) === 3 ? list[0] : undefined;
}

// ---- shape arithmetic ----------------------------------------------------------------------

/** Ops that may compute shapes or zero states (torch's dynamic-batch initial states). */
const SHAPE_OPS: ReadonlySet<string> = new Set([
  "Shape",
  "Gather",
  "Unsqueeze",
  "Squeeze",
  "Concat",
  "Slice",
  "Cast",
  "Reshape",
  "ConstantOfShape",
  "Expand",
]);

/**
 * Handles a node that works on shapes rather than the data path: Shape of any value gives
 * run-time integers, ConstantOfShape of value 0 gives zeros, Expand of zeros stays zeros, and
 * the integer ops pass "run-time integers" on. Returns false when the node is on the data path.
 */
function shapeDomain(r: Reader, index: number, op: string): boolean {
  const node = r.nodes[index];
  const inputs = (node.input ?? []).filter((name) => name !== "").map((name) => r.sym(index, name));
  if (op === "Shape") {
    r.out(index, { t: "dyn" });
    return true;
  }
  if (op === "ConstantOfShape") {
    const value = attr(node, "value")?.t;
    const c = value
      ? readTensor(value, { external: new Map(), source: r.source }, "value")
      : undefined;
    if (c !== undefined && !c.values.every((v) => v === 0)) {
      r.fail(index, "value: expected zeros (an initial state), got another constant");
    }
    r.out(index, { t: "zeros" });
    return true;
  }
  const kinds = inputs.map((sym) => sym?.t);
  if (!kinds.every((t) => t === "dyn" || t === "const" || t === "zeros")) return false;
  if (kinds[0] === "zeros") {
    r.out(index, { t: "zeros" });
    return true;
  }
  const first = inputs[0];
  if (op === "Expand" && first?.t === "const" && first.values.every((v) => v === 0)) {
    r.out(index, { t: "zeros" });
    return true;
  }
  if (!kinds.includes("dyn")) return false;
  if (op === "Expand") r.fail(index, "Expand: expected zeros to expand");
  r.out(index, { t: "dyn" });
  return true;
}

// ---- the walk ----------------------------------------------------------------------------

function visit(r: Reader, index: number): void {
  const node = r.nodes[index];
  const op = node.opType ?? "";
  if ((node.domain ?? "") !== "" && node.domain !== "ai.onnx") {
    r.fail(index, `domain "${node.domain}": expected the default ONNX domain`);
  }
  if (SHAPE_OPS.has(op) && shapeDomain(r, index, op)) return;
  switch (op) {
    case "Gemm": {
      const split = splitAfter(r, index);
      return split === undefined ? gemm(r, index) : attention(r, index, split);
    }
    case "MatMul":
      return matmul(r, index);
    case "Add":
      return add(r, index);
    case "Mul": {
      const [a, b] = [r.sym(index, node.input?.[0]), r.sym(index, node.input?.[1])];
      if (a?.t === "act" && b?.t === "const") return affine(r, index, "Mul", 0);
      if (a?.t === "const" && b?.t === "act") return affine(r, index, "Mul", 1);
      return r.fail(
        index,
        `expected the data path times a constant, got ${what(a)} and ${what(b)}`,
      );
    }
    case "Div":
      if (matchGelu(r, index)) return;
      return r.fail(index, "Div is read only as part of the erf Gelu pattern (x / sqrt 2)");
    case "ReduceMean":
      if (matchLayerNorm(r, index)) return;
      return r.fail(
        index,
        "ReduceMean is read only as the start of a layer norm (ReduceMean, Sub, Pow, " +
          "ReduceMean, Add, Sqrt, Div over the last axis)",
      );
    case "LSTM":
      return lstm(r, index);
    case "GRU":
      return gru(r, index);
    case "Conv":
      return conv(r, index);
    case "Concat":
      return concat(r, index);
    case "Slice":
      return slice(r, index);
    case "Pad":
      return pad(r, index);
    case "Gather":
      return gather(r, index);
    case "LayerNormalization":
      return layerNorm(r, index);
    case "BatchNormalization":
      return batchNorm(r, index);
    case "PRelu":
      return prelu(r, index);
    case "Relu":
    case "Tanh":
    case "Sigmoid":
    case "Elu":
    case "Gelu":
    case "Softmax":
    case "LogSoftmax":
      return activationOp(r, index, op);
    case "Reshape":
      return reshape(r, index);
    case "Flatten":
      return flatten(r, index);
    case "Squeeze":
      return squeeze(r, index);
    case "Unsqueeze":
      return unsqueeze(r, index);
    case "Transpose":
      return transpose(r, index);
    case "Identity":
    case "Dropout": {
      const x = r.sym(index, node.input?.[0]);
      if (x === undefined) return r.fail(index, "expected an input");
      return r.out(index, x);
    }
    case "Constant": {
      const value = attr(node, "value")?.t;
      if (!value) return r.fail(index, "expected a tensor `value` attribute");
      return r.out(
        index,
        readTensor(value, { external: new Map(), source: r.source }, `node ${index} value`),
      );
    }
    default:
      r.fail(
        index,
        `op ${op} is not supported: cadenza maps ${ONNX_SUPPORTED_OPS.join(", ")} ` +
          '(docs/DESIGN.md, "ONNX import")',
      );
  }
}

/** Graph inputs that hold recurrent state: initial states of LSTM/GRU, Concat operands. */
function stateInputs(nodes: NodeProto[], inputs: Set<string>): Set<string> {
  const states = new Set<string>();
  for (const node of nodes) {
    const ins = node.input ?? [];
    const slots = node.opType === "LSTM" ? [5, 6] : node.opType === "GRU" ? [5] : [];
    for (const s of slots) if (inputs.has(ins[s] ?? "")) states.add(ins[s]);
    if (node.opType === "Concat" && ins.length === 2 && inputs.has(ins[0]) && !inputs.has(ins[1])) {
      states.add(ins[0]);
    }
  }
  return states;
}

/**
 * The roles of the data input's axes: [N, C]; rank 3 is [T, N, C], or [N, C, T] when a Conv
 * (or the Pad before one) reads it first, or [N, T, C] when a Transpose(1, 0, 2) does.
 */
function inputRoles(r: Reader, name: string, rank: number): Role[] {
  if (rank === 1) return ["C"];
  if (rank === 2) return ["N", "C"];
  const first = r.nodes[(r.consumers.get(name) ?? [])[0] ?? -1];
  if (first?.opType === "Conv" || first?.opType === "Pad") return ["N", "C", "T"];
  const perm = first?.opType === "Transpose" ? attrInts(first, "perm") : undefined;
  if (perm?.join() === "1,0,2") return ["N", "T", "C"];
  return ["T", "N", "C"];
}

async function decode(bytes: Uint8Array, source: string): Promise<onnxProto.onnx.ModelProto> {
  let proto: typeof onnxProto;
  try {
    proto = (await import("onnx-proto")).default;
  } catch (err) {
    throw new CadenzaError(
      "E_IO",
      `${source}: reading ONNX needs the onnx-proto package (npm install onnx-proto): ` +
        (err as Error).message,
      { cause: err },
    );
  }
  try {
    return proto.onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: expected an ONNX ModelProto (protobuf): ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** External data files named by the initializers, read once each. */
async function readExternalData(
  tensors: TensorProto[],
  source: string,
  readExternal: ExternalReader | undefined,
): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for (const t of tensors) {
    if (t.dataLocation !== EXTERNAL) continue;
    const location = (t.externalData ?? []).find((e) => e.key === "location")?.value ?? "";
    if (files.has(location)) continue;
    const parts = location.split(/[\\/]/);
    if (location === "" || location.startsWith("/") || parts.includes("..")) {
      throw new CadenzaError(
        "E_FORMAT",
        `${source}: initializer "${t.name}": external data location "${location}": expected a ` +
          "relative path inside the model's folder",
      );
    }
    if (readExternal === undefined) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `${source}: initializer "${t.name}" keeps its data in "${location}": load the model ` +
          "from its path (not bytes) so the file beside it can be read",
      );
    }
    files.set(location, await readExternal(location));
  }
  return files;
}

/**
 * Reads an ONNX model into a validated canonical spec. `readExternal` reads external-data
 * files relative to the model's folder (loadSpec passes one for a path).
 *
 * @example
 * const spec = await readOnnx(await Bun.file("model.onnx").bytes(), "model.onnx");
 */
export async function readOnnx(
  bytes: Uint8Array,
  source: string,
  readExternal?: ExternalReader,
): Promise<ModelSpec> {
  const model = await decode(bytes, source);
  const graph = model.graph;
  if (!graph) throw new CadenzaError("E_FORMAT", `${source}: the ModelProto has no graph`);
  const nodes = graph.node ?? [];
  const r = new Reader(source, nodes);
  const opset = (model.opsetImport ?? []).find((o) =>
    (o.domain ?? "") === "" || o.domain === "ai.onnx"
  );
  if (opset?.version !== undefined && opset.version !== null) r.opset = toNumber(opset.version);
  for (const output of graph.output ?? []) r.graphOutputs.add(output.name ?? "");
  const initializers = graph.initializer ?? [];
  const external = await readExternalData(initializers, source, readExternal);
  for (const t of initializers) {
    r.syms.set(t.name ?? "", readTensor(t, { external, source }, `initializer "${t.name}"`));
  }
  const inputs = (graph.input ?? []).filter((v) => !r.syms.has(v.name ?? ""));
  const names = new Set(inputs.map((v) => v.name ?? ""));
  const states = stateInputs(nodes, names);
  const data = inputs.filter((v) => !states.has(v.name ?? ""));
  if (data.length !== 1) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: graph inputs: expected one data input besides the recurrent-state inputs, got ` +
        `${data.length} (${data.map((v) => v.name).join(", ") || "none"})`,
    );
  }
  for (const s of states) r.syms.set(s, { t: "state" });
  const input = data[0];
  const dims = input.type?.tensorType?.shape?.dim ?? [];
  const last = dims[dims.length - 1];
  const width = last?.dimValue === undefined || last.dimValue === null
    ? 0
    : toNumber(last.dimValue);
  const channel_axis = inputRoles(r, input.name ?? "", dims.length).indexOf("C");
  const features = dims[channel_axis];
  const n_in = features?.dimValue ? toNumber(features.dimValue) : width;
  if (!(n_in >= 1)) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: input "${input.name}": expected a fixed number of features, got shape ` +
        `[${dims.map((d) => d.dimParam || toNumber(d.dimValue)).join(", ")}]`,
    );
  }
  r.syms.set(input.name ?? "", {
    t: "act",
    at: 0,
    width: n_in,
    roles: inputRoles(r, input.name ?? "", dims.length),
    input: true,
  });
  // Constants first: a pattern read from its first node (the erf Gelu) may use a Constant
  // that the file lists after that node.
  nodes.forEach((node, index) => {
    if (node.opType !== "Constant") return;
    visit(r, index);
    r.done.add(index);
  });
  nodes.forEach((_, index) => {
    if (!r.done.has(index)) visit(r, index);
  });
  return finish(r, graph.output ?? [], n_in);
}

function finish(
  r: Reader,
  outputs: onnxProto.onnx.IValueInfoProto[],
  n_in: number,
): ModelSpec {
  const source = r.source;
  const data = outputs.filter((o) =>
    r.syms.get(o.name ?? "")?.t !== "stateout" &&
    r.syms.get(o.name ?? "")?.t !== "state"
  );
  const heads = data.filter((o) => {
    const sym = r.syms.get(o.name ?? "");
    return sym?.t === "act" && sym.at === r.layers.length;
  });
  // A state output that is also the data path (an LSTM's Y_h) counts only when nothing else is.
  const chosen = heads.length > 1
    ? heads.filter((o) => !/state|present|past/.test(o.name ?? ""))
    : heads;
  if (chosen.length !== 1 || r.layers.length === 0) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: graph outputs: expected one output that is the latest activation after at ` +
        `least one layer, got ${describe(outputs.map((o) => o.name))} ` +
        `(${r.layers.length} layers read)`,
    );
  }
  for (const half of r.halves.keys()) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: an attention block with a residual Add (layer ${r.layers.indexOf(half)}) has ` +
        "no feed-forward half: cadenza maps the pre-norm transformer block whole",
    );
  }
  const spec: ModelSpec = { inputSize: n_in, layers: r.layers };
  validateSpec(spec, source);
  return spec;
}
