/**
 * ModelSpec -> ONNX ModelProto bytes (opset 17), so onnxruntime and other ONNX tools can run
 * the same models with the same weights. Every recurrent state crosses the graph boundary
 * explicitly: an input that holds the state before the step and an output that holds it after,
 * so a caller steps the model by feeding each output back as the next step's input
 * (OnnxStepper below does exactly that). The mapping per layer kind:
 * - dense: Gemm (transB) + activation ops; gelu as the erf pattern ORT fuses into Gelu.
 * - lstm: LSTM with gates reordered from i,f,g,o to ONNX's i,o,f,c; the bias goes in Wb (Rb 0);
 *   states `state.L.h` / `state.L.c` [1, N, H].
 * - gru: GRU with linear_before_reset=1 (reset_after); state `state.L.h` [1, N, H].
 * - conv1d: Concat(history, x) -> Conv -> the last (k-1)*dilation frames become the new
 *   history `state.L.history` [N, in, (k-1)*dilation].
 * - attention / transformer (step mode): fused QKV Gemm, the KV cache passed as `past.L.k`
 *   [N, heads, dh, P] (keys stored transposed so no Transpose runs per step) and `past.L.v`
 *   [N, heads, P, dh], concatenated with this step's and cut to the last `context` positions;
 *   the results are `present.L.k` / `present.L.v`. P starts at 0.
 * - batchnorm: BatchNormalization (inference) with the layer's own statistics and epsilon, so
 *   cadenza's ONNX reader gets the same tensors back (no gamma/beta: ones and zeros).
 * - layernorm: LayerNormalization; prelu: PRelu; activation: its op.
 * The graph's data input is `input` [N, inputSize] and its output `output` [N, outputSize].
 */
import onnxProto from "onnx-proto";
import { CadenzaError } from "../../errors.ts";
import { type Activation, type LayerSpec, type ModelSpec, resolveArch } from "../spec.ts";

const onnx = onnxProto.onnx;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type AttributeProto = onnxProto.onnx.IAttributeProto;
type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

const OPSET = 17;
const IR_VERSION = 8;
const FLOAT = 1;
const INT64 = 7;
const BATCH_DIM = "N";

/** One recurrent state: fed as `input` before a step, read from `output` after it. */
export interface OnnxState {
  input: string;
  output: string;
  /** The state's shape at the start (zeros) for a batch of `batch` rows. */
  initialShape(batch: number): number[];
}

export interface OnnxExport {
  bytes: Uint8Array;
  inputSize: number;
  outputSize: number;
  /** Graph input and output names of the data path. */
  input: string;
  output: string;
  states: OnnxState[];
}

export interface OnnxExportOptions {
  /** Graph name (e.g. the model's name). */
  name?: string;
}

/** Writes `spec` as an ONNX model; throws CadenzaError E_UNSUPPORTED for what ONNX lacks. */
export function exportOnnx(spec: ModelSpec, options: OnnxExportOptions = {}): OnnxExport {
  if (spec.layers.length === 0) {
    throw new CadenzaError("E_ARGUMENT", "onnx export: the model has no layers, expected >= 1");
  }
  const g = new GraphBuilder();
  g.addInput("input", [BATCH_DIM, spec.inputSize]);
  let x = "input";
  spec.layers.forEach((layer, index) => {
    x = exportLayer(g, layer, index, x);
  });
  const outputSize = spec.layers[spec.layers.length - 1].outputSize;
  g.node("Identity", [x], {}, ["output"]);
  g.addOutput("output", [BATCH_DIM, outputSize]);
  const bytes = g.encode(options.name ?? "cadenza", spec.meta ?? {});
  return {
    bytes,
    inputSize: spec.inputSize,
    outputSize,
    input: "input",
    output: "output",
    states: g.states,
  };
}

function exportLayer(g: GraphBuilder, layer: LayerSpec, index: number, x: string): string {
  switch (layer.kind) {
    case "dense":
      return exportDense(g, layer, index, x);
    case "lstm":
      return exportLstm(g, layer, index, x);
    case "gru":
      return exportGru(g, layer, index, x);
    case "conv1d":
      return exportConv1d(g, layer, index, x);
    case "batchnorm":
      return exportBatchNorm(g, layer, index, x);
    case "layernorm":
      return exportLayerNorm(g, layer, index, x, "gamma", "beta");
    case "prelu":
      return exportPRelu(g, layer, index, x);
    case "activation":
      return exportActivation(g, resolveArch(layer).activation, x);
    case "attention":
      return exportAttention(g, layer, index, x);
    case "transformer":
      return exportTransformer(g, layer, index, x);
    case "skip":
      return exportSkip(g, layer, x);
  }
}

function tensorOf(layer: LayerSpec, index: number, name: string): Float32Array {
  const t = layer.tensors[name];
  if (!t) {
    throw new CadenzaError(
      "E_FORMAT",
      `onnx export: layer ${index} (${layer.kind}) lacks tensor ${name}`,
    );
  }
  return t;
}

function exportActivation(g: GraphBuilder, act: Activation, x: string): string {
  switch (act) {
    case "linear":
      return x;
    case "tanh":
      return g.node("Tanh", [x])[0];
    case "sigmoid":
      return g.node("Sigmoid", [x])[0];
    case "relu":
      return g.node("Relu", [x])[0];
    case "elu":
      return g.node("Elu", [x], { alpha: float(1) })[0];
    case "softmax":
      return g.node("Softmax", [x], { axis: -1 })[0];
    case "logsoftmax":
      return g.node("LogSoftmax", [x], { axis: -1 })[0];
    case "gelu": {
      const scaled = g.node("Div", [x, g.scalar(Math.SQRT2)])[0];
      const erf = g.node("Erf", [scaled])[0];
      const onePlus = g.node("Add", [erf, g.scalar(1)])[0];
      const times = g.node("Mul", [x, onePlus])[0];
      return g.node("Mul", [times, g.scalar(0.5)])[0];
    }
  }
}

/** Gemm with W [out][in] (transB), optional bias. */
function gemm(
  g: GraphBuilder,
  x: string,
  w: Float32Array,
  b: Float32Array | undefined,
  inputSize: number,
  outputSize: number,
  prefix: string,
): string {
  const inputs = [x, g.floats(`${prefix}.W`, w, [outputSize, inputSize])];
  if (b) inputs.push(g.floats(`${prefix}.b`, b, [outputSize]));
  return g.node("Gemm", inputs, { transB: 1 })[0];
}

function exportDense(g: GraphBuilder, layer: LayerSpec, index: number, x: string): string {
  const w = tensorOf(layer, index, "W");
  const b = layer.bias === false ? undefined : tensorOf(layer, index, "b");
  const y = gemm(g, x, w, b, layer.inputSize, layer.outputSize, `l${index}`);
  return exportActivation(g, resolveArch(layer).activation, y);
}

/** Reorders 4 gate blocks of `rows` rows each from i,f,g,o to ONNX's i,o,f,c. */
function lstmGatesToOnnx(t: Float32Array, blockLen: number): Float32Array {
  const out = new Float32Array(t.length);
  [0, 3, 1, 2].forEach((from, to) => {
    out.set(t.subarray(from * blockLen, (from + 1) * blockLen), to * blockLen);
  });
  return out;
}

function exportLstm(g: GraphBuilder, layer: LayerSpec, index: number, x: string): string {
  const h = layer.outputSize, p = `l${index}`;
  const wx = lstmGatesToOnnx(tensorOf(layer, index, "Wx"), h * layer.inputSize);
  const wh = lstmGatesToOnnx(tensorOf(layer, index, "Wh"), h * h);
  const bias = new Float32Array(8 * h);
  bias.set(lstmGatesToOnnx(tensorOf(layer, index, "b"), h));
  const state = g.addRecurrentState(`state.${index}.h`, [1, BATCH_DIM, h], 1);
  const cell = g.addRecurrentState(`state.${index}.c`, [1, BATCH_DIM, h], 1);
  const seq = g.node("Unsqueeze", [x, g.ints([0])])[0];
  g.node(
    "LSTM",
    [
      seq,
      g.floats(`${p}.W`, wx, [1, 4 * h, layer.inputSize]),
      g.floats(`${p}.R`, wh, [1, 4 * h, h]),
      g.floats(`${p}.B`, bias, [1, 8 * h]),
      "",
      state.input,
      cell.input,
    ],
    { hidden_size: h },
    ["", state.output, cell.output],
  );
  return g.node("Squeeze", [state.output, g.ints([0])])[0];
}

function exportGru(g: GraphBuilder, layer: LayerSpec, index: number, x: string): string {
  const h = layer.outputSize, p = `l${index}`;
  const bias = new Float32Array(6 * h);
  bias.set(tensorOf(layer, index, "bx"));
  bias.set(tensorOf(layer, index, "bh"), 3 * h);
  const state = g.addRecurrentState(`state.${index}.h`, [1, BATCH_DIM, h], 1);
  const seq = g.node("Unsqueeze", [x, g.ints([0])])[0];
  g.node(
    "GRU",
    [
      seq,
      g.floats(`${p}.W`, tensorOf(layer, index, "Wx"), [1, 3 * h, layer.inputSize]),
      g.floats(`${p}.R`, tensorOf(layer, index, "Wh"), [1, 3 * h, h]),
      g.floats(`${p}.B`, bias, [1, 6 * h]),
      "",
      state.input,
    ],
    { hidden_size: h, linear_before_reset: 1 },
    ["", state.output],
  );
  return g.node("Squeeze", [state.output, g.ints([0])])[0];
}

function exportConv1d(g: GraphBuilder, layer: LayerSpec, index: number, x: string): string {
  const k = layer.kernelSize ?? 1, dilation = layer.dilation ?? 1, groups = layer.groups ?? 1;
  const cin = layer.inputSize, keep = (k - 1) * dilation, p = `l${index}`;
  let frames = g.node("Unsqueeze", [x, g.ints([2])])[0];
  if (keep > 0) {
    const history = g.addRecurrentState(`state.${index}.history`, [BATCH_DIM, cin, keep], 0);
    frames = g.node("Concat", [history.input, frames], { axis: 2 })[0];
    g.node("Slice", [frames, g.ints([1]), g.ints([keep + 1]), g.ints([2])], {}, [history.output]);
  }
  const inputs = [
    frames,
    g.floats(`${p}.W`, tensorOf(layer, index, "W"), [layer.outputSize, cin / groups, k]),
  ];
  if (layer.tensors.b) inputs.push(g.floats(`${p}.b`, layer.tensors.b, [layer.outputSize]));
  const conv = g.node("Conv", inputs, {
    kernel_shape: [k],
    dilations: [dilation],
    group: groups,
  })[0];
  const y = g.node("Squeeze", [conv, g.ints([2])])[0];
  return exportActivation(g, resolveArch(layer).activation, y);
}

function exportBatchNorm(g: GraphBuilder, layer: LayerSpec, index: number, x: string): string {
  const n = layer.outputSize, eps = resolveArch(layer).epsilon;
  const p = `l${index}`;
  const y = g.node("BatchNormalization", [
    x,
    g.floats(`${p}.gamma`, layer.tensors.gamma ?? new Float32Array(n).fill(1), [n]),
    g.floats(`${p}.beta`, layer.tensors.beta ?? new Float32Array(n), [n]),
    g.floats(`${p}.mean`, tensorOf(layer, index, "mean"), [n]),
    g.floats(`${p}.var`, tensorOf(layer, index, "var"), [n]),
  ], { epsilon: float(eps) })[0];
  return exportActivation(g, resolveArch(layer).activation, y);
}

function exportLayerNorm(
  g: GraphBuilder,
  layer: LayerSpec,
  index: number,
  x: string,
  gamma: string,
  beta: string,
): string {
  const n = layer.outputSize;
  return g.node("LayerNormalization", [
    x,
    g.floats(`l${index}.${gamma}`, tensorOf(layer, index, gamma), [n]),
    g.floats(`l${index}.${beta}`, tensorOf(layer, index, beta), [n]),
  ], { axis: -1, epsilon: float(resolveArch(layer).epsilon) })[0];
}

function exportPRelu(g: GraphBuilder, layer: LayerSpec, index: number, x: string): string {
  const alpha = tensorOf(layer, index, "alpha");
  return g.node("PRelu", [x, g.floats(`l${index}.alpha`, alpha, [alpha.length])])[0];
}

/** Step-mode attention; `x` is [N, d]. */
function exportAttention(g: GraphBuilder, layer: LayerSpec, index: number, x: string): string {
  const d = layer.outputSize, heads = layer.heads ?? 1, dh = d / heads, p = `l${index}`;
  const context = layer.context ?? 1;
  const t = (name: string) => tensorOf(layer, index, name);
  const wqkv = concatFloats([t("Wq"), t("Wk"), t("Wv")]);
  const qkv = gemm(g, x, wqkv, concatFloats([t("bq"), t("bk"), t("bv")]), d, 3 * d, `${p}.qkv`);
  const [q, k, v] = g.node("Split", [qkv, g.ints([d, d, d])], { axis: 1 }, [
    undefined,
    undefined,
    undefined,
  ]);
  const past = `P${index}`;
  const keys = g.addRecurrentState(
    `past.${index}.k`,
    [BATCH_DIM, heads, dh, past],
    0,
    `present.${index}.k`,
  );
  const values = g.addRecurrentState(
    `past.${index}.v`,
    [BATCH_DIM, heads, past, dh],
    0,
    `present.${index}.v`,
  );
  const kStep = g.node("Reshape", [k, g.ints([0, heads, dh, 1])])[0];
  const vStep = g.node("Reshape", [v, g.ints([0, heads, 1, dh])])[0];
  const kAll = g.node("Concat", [keys.input, kStep], { axis: 3 })[0];
  const vAll = g.node("Concat", [values.input, vStep], { axis: 2 })[0];
  const last = [g.ints([-context]), g.ints([Number.MAX_SAFE_INTEGER])];
  g.node("Slice", [kAll, ...last, g.ints([3])], {}, [keys.output]);
  g.node("Slice", [vAll, ...last, g.ints([2])], {}, [values.output]);
  const qHeads = g.node("Reshape", [q, g.ints([0, heads, 1, dh])])[0];
  const scores = g.node("MatMul", [qHeads, keys.output])[0];
  const scaled = g.node("Mul", [scores, g.scalar(1 / Math.sqrt(dh))])[0];
  const probs = g.node("Softmax", [scaled], { axis: -1 })[0];
  const mixed = g.node("MatMul", [probs, values.output])[0];
  const flat = g.node("Reshape", [mixed, g.ints([0, d])])[0];
  return gemm(g, flat, t("Wo"), t("bo"), d, d, `${p}.o`);
}

function exportTransformer(g: GraphBuilder, layer: LayerSpec, index: number, x: string): string {
  const d = layer.outputSize, ff = layer.ffDim ?? 1, p = `l${index}`;
  const t = (name: string) => tensorOf(layer, index, name);
  const n1 = exportLayerNorm(g, layer, index, x, "ln1_g", "ln1_b");
  const attended = exportAttention(g, layer, index, n1);
  const x1 = g.node("Add", [x, attended])[0];
  const n2 = exportLayerNorm(g, layer, index, x1, "ln2_g", "ln2_b");
  const hidden = gemm(g, n2, t("W1"), t("b1"), d, ff, `${p}.ff1`);
  const activated = exportActivation(g, resolveArch(layer).activation, hidden);
  const ffOut = gemm(g, activated, t("W2"), t("b2"), ff, d, `${p}.ff2`);
  return g.node("Add", [x1, ffOut])[0];
}

/** skip: the graph input (its first outputSize values) plus x. */
function exportSkip(g: GraphBuilder, layer: LayerSpec, x: string): string {
  let input = "input";
  if (layer.outputSize !== g.inputWidth) {
    input = g.node("Slice", [input, g.ints([0]), g.ints([layer.outputSize]), g.ints([1])])[0];
  }
  return g.node("Add", [x, input])[0];
}

function concatFloats(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** An integer attribute is a number; a float one is wrapped by `float()`. */
type AttrValue = number | number[] | { float: number };
const float = (value: number): AttrValue => ({ float: value });
type Dim = number | string;

/** Collects nodes, initializers and graph inputs/outputs; names values uniquely. */
class GraphBuilder {
  readonly states: OnnxState[] = [];
  readonly #nodes: NodeProto[] = [];
  readonly #initializers: TensorProto[] = [];
  readonly #inputs: ValueInfoProto[] = [];
  readonly #outputs: ValueInfoProto[] = [];
  readonly #constants = new Map<string, string>();
  #counter = 0;

  /**
   * Adds one node and returns its output names: `undefined` in `outputs` gets a fresh name,
   * "" leaves an optional output unused (ONNX's convention).
   */
  node(
    op: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    outputs: (string | undefined)[] = [undefined],
  ): string[] {
    const named = outputs.map((o) => o ?? `${op.toLowerCase()}_${this.#counter++}`);
    this.#nodes.push({
      opType: op,
      input: inputs,
      output: named,
      name: `${op}_${this.#nodes.length}`,
      attribute: Object.entries(attrs).map(([name, value]) => attribute(name, value)),
    });
    return named;
  }

  floats(name: string, data: Float32Array, dims: number[]): string {
    const bytes = new Uint8Array(data.byteLength);
    bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.#initializers.push({ name, dims, dataType: FLOAT, rawData: bytes });
    return name;
  }

  /** A float scalar constant, shared by every use of the same value. */
  scalar(value: number): string {
    return this.#constant(`f:${value}`, () => ({
      dims: [],
      dataType: FLOAT,
      floatData: [value],
    }));
  }

  /** A 1-D int64 constant (axes, shapes, slice bounds), shared by every use. */
  ints(values: number[]): string {
    return this.#constant(`i:${values.join(",")}`, () => ({
      dims: [values.length],
      dataType: INT64,
      int64Data: values,
    }));
  }

  #constant(key: string, make: () => TensorProto): string {
    const known = this.#constants.get(key);
    if (known) return known;
    const name = `const_${this.#constants.size}`;
    this.#initializers.push({ ...make(), name });
    this.#constants.set(key, name);
    return name;
  }

  /** The data input's width (the first input added). */
  inputWidth = 0;

  addInput(name: string, dims: Dim[]): void {
    if (this.#inputs.length === 0) this.inputWidth = dims[1] as number;
    this.#inputs.push(valueInfo(name, dims));
  }

  addOutput(name: string, dims: Dim[]): void {
    this.#outputs.push(valueInfo(name, dims));
  }

  /**
   * Declares a state input and its output; `dims` holds BATCH_DIM at `batchAxis` and may name
   * a symbolic length that starts at 0 (the KV cache).
   */
  addRecurrentState(input: string, dims: Dim[], batchAxis: number, output = `${input}.next`) {
    this.addInput(input, dims);
    this.addOutput(output, dims.map((d) => typeof d === "string" && d !== BATCH_DIM ? `${d}'` : d));
    const state: OnnxState = {
      input,
      output,
      initialShape: (batch) =>
        dims.map((d, axis) => axis === batchAxis ? batch : typeof d === "number" ? d : 0),
    };
    this.states.push(state);
    return state;
  }

  encode(name: string, meta: Record<string, string>): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: "", version: OPSET }],
      producerName: "cadenza",
      graph: {
        name,
        node: this.#nodes,
        initializer: this.#initializers,
        input: this.#inputs,
        output: this.#outputs,
      },
      metadataProps: Object.entries(meta).map(([key, value]) => ({ key, value })),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, dims: Dim[]): ValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: dims.map((d) => typeof d === "number" ? { dimValue: d } : { dimParam: d }) },
      },
    },
  };
}

function attribute(name: string, value: AttrValue): AttributeProto {
  const types = onnx.AttributeProto.AttributeType;
  if (Array.isArray(value)) return { name, type: types.INTS, ints: value };
  if (typeof value === "number") return { name, type: types.INT, i: value };
  return { name, type: types.FLOAT, f: value.float };
}

/** The part of onnxruntime's JavaScript API the stepper needs (onnxruntime-node or -web). */
export interface OrtTensorLike {
  readonly data: unknown;
  readonly dims: readonly number[];
}
export interface OrtLike {
  Tensor: new (type: "float32", data: Float32Array, dims: readonly number[]) => OrtTensorLike;
}

/**
 * Steps an exported model in an onnxruntime session: holds the feeds (the data input plus
 * every state), and after each run takes the new states from the results. Allocates the feeds
 * once; onnxruntime allocates the results.
 *
 * ```ts
 * const stepper = new OnnxStepper(ort, exported);
 * stepper.input.set(features);
 * const y = stepper.accept(await session.run(stepper.feeds));
 * ```
 */
export class OnnxStepper {
  /** Write the step's input here (batch * inputSize values) before running the feeds. */
  readonly input: Float32Array;
  readonly feeds: Record<string, OrtTensorLike>;
  readonly #ort: OrtLike;
  readonly #exported: OnnxExport;
  readonly #batch: number;

  constructor(ort: OrtLike, exported: OnnxExport, batch = 1) {
    this.#ort = ort;
    this.#exported = exported;
    this.#batch = batch;
    this.input = new Float32Array(batch * exported.inputSize);
    this.feeds = {
      [exported.input]: new ort.Tensor("float32", this.input, [batch, exported.inputSize]),
    };
    this.reset();
  }

  /** Keeps the new states from a run's results; returns the data output. */
  accept(results: Record<string, OrtTensorLike>): Float32Array {
    for (const state of this.#exported.states) this.feeds[state.input] = results[state.output];
    return results[this.#exported.output].data as Float32Array;
  }

  /** Zeroes every state (an empty KV cache), as at the start. */
  reset(): void {
    for (const state of this.#exported.states) {
      const dims = state.initialShape(this.#batch);
      const len = dims.reduce((a, b) => a * b, 1);
      this.feeds[state.input] = new this.#ort.Tensor("float32", new Float32Array(len), dims);
    }
  }
}
