/**
 * ONNX import (src/model/formats/onnx.ts). Two kinds of evidence:
 * - Round trip: every layer kind, exported by cadenza's own exporter and read back, gives the
 *   same outputs bit for bit as the model it came from.
 * - Hand-built graphs, made here with the ONNX protobuf schema in the layouts torch.onnx.export
 *   writes (sequence-first LSTM, [N, C, T] Conv with causal pads, MatMul + Add, ...), covering
 *   every mapped op; each is compared, over 24 steps, with the float64 reference
 *   (test/reference.ts) of the canonical spec that the test writes down from the ONNX operator
 *   definitions, within 1e-5 (float32 kernels against float64; measured below 1e-6).
 * Plus: an unsupported op is E_FORMAT naming the node, its op type and the supported ops, and
 * initializers in an external-data file beside the model load as if embedded.
 * Shared by test/onnx-import.test.ts (Bun) and test/deno/onnx-import.test.ts.
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import onnxProto from "onnx-proto";
import { CadenzaError, loadModel, loadSpec, modelFromSpec } from "../../src/index.ts";
import { exportOnnx } from "../../src/model/formats/onnx-export.ts";
import type { LayerKind, LayerSpec, ModelSpec } from "../../src/model/spec.ts";
import type { Model } from "../../src/model/model.ts";
import { ALL_ACTIVATIONS, deviation, randomModel, Rng } from "../helpers.ts";
import { ReferenceModel } from "../reference.ts";
import { type Case, check, checkDeviation, fail, rejectsCadenza } from "./check.ts";

const onnx = onnxProto.onnx;

export const ONNX_BOUND = 1e-5;
const STEPS = 24;
export const worstByOnnxCase = new Map<string, number>();

// ---- a small graph builder, independent of the exporter ----------------------------------

type Attr = number | number[] | string | string[] | { f: number };

interface NodeDef {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, Attr>;
}

interface GraphDef {
  input: { name: string; dims: (number | string)[] };
  states?: { name: string; dims: (number | string)[] }[];
  outputs: string[];
  nodes: NodeDef[];
  floats?: Record<string, { dims: number[]; data: Float32Array }>;
  ints?: Record<string, number[]>;
  opset?: number;
}

function attribute(name: string, value: Attr): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === "number") return { name, type: T.INT, i: value };
  if (typeof value === "string") {
    return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  }
  if (Array.isArray(value) && typeof value[0] === "string") {
    return {
      name,
      type: T.STRINGS,
      strings: (value as string[]).map((v) => new TextEncoder().encode(v)),
    };
  }
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value as number[] };
  return { name, type: T.FLOAT, f: value.f };
}

function valueInfo(name: string, dims: (number | string)[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: 1,
        shape: { dim: dims.map((d) => typeof d === "number" ? { dimValue: d } : { dimParam: d }) },
      },
    },
  };
}

function floatTensor(
  name: string,
  dims: number[],
  data: Float32Array,
): onnxProto.onnx.ITensorProto {
  return { name, dims, dataType: 1, rawData: new Uint8Array(data.slice().buffer) };
}

export function buildGraph(g: GraphDef, external?: Set<string>): Uint8Array {
  const initializer: onnxProto.onnx.ITensorProto[] = [];
  for (const [name, t] of Object.entries(g.floats ?? {})) {
    const tensor = floatTensor(name, t.dims, t.data);
    if (external?.has(name)) {
      tensor.rawData = null;
      tensor.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      tensor.externalData = [{ key: "location", value: `${name}.bin` }];
    }
    initializer.push(tensor);
  }
  for (const [name, values] of Object.entries(g.ints ?? {})) {
    initializer.push({ name, dims: [values.length], dataType: 7, int64Data: values });
  }
  for (const node of g.nodes) {
    const { scalarIndex, scalarValue } = node as NodeDef & {
      scalarIndex?: string;
      scalarValue?: number;
    };
    if (scalarIndex !== undefined) {
      initializer.push({ name: scalarIndex, dims: [], dataType: 7, int64Data: [scalarValue ?? 1] });
    }
  }
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: g.opset ?? 17 }],
    producerName: "cadenza-test",
    graph: {
      name: "test",
      node: g.nodes.map((n, i) => ({
        name: `${n.op.toLowerCase()}_${i}`,
        opType: n.op,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs ?? {}).map(([k, v]) => attribute(k, v)),
      })),
      initializer,
      input: [
        valueInfo(g.input.name, g.input.dims),
        ...(g.states ?? []).map((s) => valueInfo(s.name, s.dims)),
      ],
      output: g.outputs.map((name) => valueInfo(name, [])),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

// ---- checks ------------------------------------------------------------------------------

/** Runs `steps` inputs through the model and the float64 reference of `expected`. */
async function agree(name: string, model: Model, expected: ModelSpec, rng: Rng): Promise<void> {
  const ref = new ReferenceModel(expected);
  check(
    model.inputSize === expected.inputSize && model.outputSize === ref.outputSize,
    () =>
      `${name}: sizes ${model.inputSize} -> ${model.outputSize}, expected ` +
      `${expected.inputSize} -> ${ref.outputSize}`,
  );
  const x = rng.floats(STEPS * model.inputSize, -1.5, 1.5);
  const got = model.process(x, STEPS);
  let worst = 0;
  for (let t = 0; t < STEPS; t++) {
    const want = ref.forward(x.subarray(t * model.inputSize, (t + 1) * model.inputSize));
    const d = deviation(got.subarray(t * model.outputSize, (t + 1) * model.outputSize), want);
    worst = Math.max(worst, d.worst);
    checkDeviation(d, ONNX_BOUND, () => `${name} step ${t}`);
  }
  worstByOnnxCase.set(name, worst);
}

function graphCase(
  name: string,
  make: (rng: Rng) => { graph: GraphDef; expected: ModelSpec },
): Case {
  return {
    name: `onnx import: ${name} matches the float64 reference`,
    run: async () => {
      const rng = new Rng(0x0dd + name.length);
      const { graph, expected } = make(rng);
      const model = await loadModel(buildWithConstants(graph));
      try {
        const kinds = model.layers.map((l) => l.kind).join(",");
        const want = expected.layers.map((l) => l.kind).join(",");
        check(kinds === want, () => `${name}: layers ${kinds}, expected ${want}`);
        await agree(name, model, expected, rng);
      } finally {
        model.dispose();
      }
    },
  };
}

// ---- hand-built graphs -------------------------------------------------------------------

const w = (rng: Rng, n: number, scale = 0.5) => rng.floats(n, -scale, scale);

function transpose2(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) out[j * rows + i] = values[i * cols + j];
  }
  return out;
}

/** Gate blocks reordered: block j of the result is block order[j] of `values`. */
function blocks(values: Float32Array, size: number, order: number[]): Float32Array {
  const out = new Float32Array(values.length);
  order.forEach((from, to) => out.set(values.subarray(from * size, (from + 1) * size), to * size));
  return out;
}

/** MatMul + Add (torch's Linear on 3-d input), Gemm with transB 0 and alpha/beta, activations. */
export function denseGraph(rng: Rng) {
  const [a, b, c] = [5, 7, 4];
  const w1 = w(rng, a * b), b1 = w(rng, b), w2 = w(rng, c * b), b2 = w(rng, c);
  const graph: GraphDef = {
    input: { name: "x", dims: ["N", a] },
    outputs: ["y"],
    nodes: [
      { op: "MatMul", inputs: ["x", "w1"], outputs: ["m"] },
      { op: "Add", inputs: ["b1", "m"], outputs: ["h"] },
      { op: "Relu", inputs: ["h"], outputs: ["r"] },
      { op: "Identity", inputs: ["r"], outputs: ["r2"] },
      { op: "Dropout", inputs: ["r2"], outputs: ["r3"] },
      {
        op: "Gemm",
        inputs: ["r3", "w2", "b2"],
        outputs: ["g"],
        attrs: { alpha: { f: 0.5 }, beta: { f: 2 } },
      },
      { op: "Tanh", inputs: ["g"], outputs: ["t"] },
      { op: "Sigmoid", inputs: ["t"], outputs: ["s"] },
      { op: "Softmax", inputs: ["s"], outputs: ["y"], attrs: { axis: -1 } },
    ],
    floats: {
      w1: { dims: [a, b], data: w1 },
      b1: { dims: [b], data: b1 },
      w2: { dims: [b, c], data: w2 },
      b2: { dims: [1, c], data: b2 },
    },
  };
  const expected: ModelSpec = {
    inputSize: a,
    layers: [
      {
        kind: "dense",
        inputSize: a,
        outputSize: b,
        activation: "relu",
        tensors: { W: transpose2(w1, a, b), b: b1 },
      },
      {
        kind: "dense",
        inputSize: b,
        outputSize: c,
        activation: "tanh",
        tensors: { W: transpose2(w2, b, c).map((v) => v * 0.5), b: b2.map((v) => v * 2) },
      },
      { kind: "activation", inputSize: c, outputSize: c, activation: "sigmoid", tensors: {} },
      { kind: "activation", inputSize: c, outputSize: c, activation: "softmax", tensors: {} },
    ],
  };
  return { graph, expected };
}

/**
 * torch.onnx.export of nn.LSTM (sequence-first [T, N, C]) + nn.Linear, gates i,o,f,c; the
 * initial cell state made as torch makes it for a dynamic batch (Shape, Gather, Unsqueeze,
 * Concat, ConstantOfShape).
 */
export function lstmGraph(rng: Rng) {
  const [c, h, o] = [3, 6, 2];
  const W = w(rng, 4 * h * c), R = w(rng, 4 * h * h), B = w(rng, 8 * h);
  const lw = w(rng, o * h), lb = w(rng, o);
  const graph: GraphDef = {
    input: { name: "x", dims: ["T", "N", c] },
    outputs: ["y"],
    nodes: [
      { op: "Shape", inputs: ["x"], outputs: ["shape"] },
      { op: "Gather", inputs: ["shape", "one"], outputs: ["batch"], attrs: { axis: 0 } },
      { op: "Unsqueeze", inputs: ["batch", "axis0"], outputs: ["batch1"] },
      {
        op: "Concat",
        inputs: ["unit", "batch1", "hidden"],
        outputs: ["c0shape"],
        attrs: { axis: 0 },
      },
      { op: "ConstantOfShape", inputs: ["c0shape"], outputs: ["c0"] },
      {
        op: "LSTM",
        inputs: ["x", "W", "R", "B", "", "h0", "c0"],
        outputs: ["Y", "", ""],
        attrs: { hidden_size: h },
      },
      { op: "Squeeze", inputs: ["Y", "axis1"], outputs: ["seq"] },
      { op: "MatMul", inputs: ["seq", "lw"], outputs: ["m"] },
      { op: "Add", inputs: ["m", "lb"], outputs: ["y"] },
    ],
    floats: {
      W: { dims: [1, 4 * h, c], data: W },
      R: { dims: [1, 4 * h, h], data: R },
      B: { dims: [1, 8 * h], data: B },
      h0: { dims: [1, 1, h], data: new Float32Array(h) },
      lw: { dims: [h, o], data: lw },
      lb: { dims: [o], data: lb },
    },
    ints: { axis1: [1], axis0: [0], unit: [1], hidden: [h] },
  };
  // Gather's index is a scalar; ConstantOfShape's value a one-element float tensor.
  Object.assign(graph.nodes[1], { scalarIndex: "one" });
  (graph.nodes[4] as NodeDef & { tensor?: Float32Array }).tensor = new Float32Array([0]);
  // ONNX i,o,f,c -> canonical i,f,g,o; one bias Wb + Rb.
  const order = [0, 2, 3, 1];
  const sum = B.slice(0, 4 * h).map((v, i) => v + B[4 * h + i]);
  const expected: ModelSpec = {
    inputSize: c,
    layers: [
      {
        kind: "lstm",
        inputSize: c,
        outputSize: h,
        tensors: {
          Wx: blocks(W, h * c, order),
          Wh: blocks(R, h * h, order),
          b: blocks(sum, h, order),
        },
      },
      { kind: "dense", inputSize: h, outputSize: o, tensors: { W: transpose2(lw, h, o), b: lb } },
    ],
  };
  return { graph, expected };
}

/** GRU (z,r,h, linear_before_reset) over a batch-first input (Transpose), then Elu and Gelu. */
export function gruGraph(rng: Rng) {
  const [c, h] = [4, 5];
  const W = w(rng, 3 * h * c), R = w(rng, 3 * h * h), B = w(rng, 6 * h);
  const graph: GraphDef = {
    input: { name: "x", dims: ["N", "T", c] },
    outputs: ["y"],
    nodes: [
      { op: "Transpose", inputs: ["x"], outputs: ["xt"], attrs: { perm: [1, 0, 2] } },
      {
        op: "GRU",
        inputs: ["xt", "W", "R", "B"],
        outputs: ["Y"],
        attrs: { hidden_size: h, linear_before_reset: 1, activations: ["Sigmoid", "Tanh"] },
      },
      { op: "Squeeze", inputs: ["Y", "axis1"], outputs: ["seq"] },
      { op: "Elu", inputs: ["seq"], outputs: ["e"], attrs: { alpha: { f: 1 } } },
      { op: "Gelu", inputs: ["e"], outputs: ["y"] },
    ],
    floats: {
      W: { dims: [1, 3 * h, c], data: W },
      R: { dims: [1, 3 * h, h], data: R },
      B: { dims: [1, 6 * h], data: B },
    },
    ints: { axis1: [1] },
    opset: 20,
  };
  const expected: ModelSpec = {
    inputSize: c,
    layers: [
      {
        kind: "gru",
        inputSize: c,
        outputSize: h,
        tensors: { Wx: W, Wh: R, bx: B.slice(0, 3 * h), bh: B.slice(3 * h) },
      },
      { kind: "activation", inputSize: h, outputSize: h, activation: "elu", tensors: {} },
      { kind: "activation", inputSize: h, outputSize: h, activation: "gelu", tensors: {} },
    ],
  };
  return { graph, expected };
}

/** Conv over [N, C, T] with causal pads, dilation and groups, BatchNormalization, PRelu. */
export function convGraph(rng: Rng) {
  const [c, o, k, dil, groups] = [4, 6, 3, 2, 2];
  const W = w(rng, o * (c / groups) * k), b = w(rng, o);
  const gamma = w(rng, o), beta = w(rng, o), mean = w(rng, o), variance = rng.floats(o, 0.5, 2);
  const slope = w(rng, o);
  const graph: GraphDef = {
    input: { name: "x", dims: ["N", c, "T"] },
    outputs: ["y"],
    nodes: [
      {
        op: "Conv",
        inputs: ["x", "W", "b"],
        outputs: ["conv"],
        attrs: { kernel_shape: [k], dilations: [dil], group: groups, pads: [(k - 1) * dil, 0] },
      },
      {
        op: "BatchNormalization",
        inputs: ["conv", "gamma", "beta", "mean", "var"],
        outputs: ["bn"],
        attrs: { epsilon: { f: 1e-3 } },
      },
      { op: "Transpose", inputs: ["bn"], outputs: ["ntc"], attrs: { perm: [0, 2, 1] } },
      { op: "PRelu", inputs: ["ntc", "slope"], outputs: ["y"] },
    ],
    floats: {
      W: { dims: [o, c / groups, k], data: W },
      b: { dims: [o], data: b },
      gamma: { dims: [o], data: gamma },
      beta: { dims: [o], data: beta },
      mean: { dims: [o], data: mean },
      var: { dims: [o], data: variance },
      slope: { dims: [o], data: slope },
    },
  };
  const expected: ModelSpec = {
    inputSize: c,
    layers: [
      {
        kind: "conv1d",
        inputSize: c,
        outputSize: o,
        kernelSize: k,
        dilation: dil,
        groups,
        tensors: { W, b },
      },
      {
        kind: "batchnorm",
        inputSize: o,
        outputSize: o,
        epsilon: 1e-3,
        tensors: { gamma, beta, mean, var: variance },
      },
      { kind: "prelu", inputSize: o, outputSize: o, tensors: { alpha: slope } },
    ],
  };
  return { graph, expected };
}

/**
 * A many-to-one GRU as torch writes one (`gru(x)[0][-1]` then nn.Linear on [N, H]): the
 * sequence's last step by Gather(-1) on the time axis. Streamed, every step's output is what
 * the graph gives for the sequence that ends at that step.
 */
export function lastStepGraph(rng: Rng) {
  const [c, h, o] = [3, 4, 2];
  const W = w(rng, 3 * h * c), R = w(rng, 3 * h * h), B = w(rng, 6 * h);
  const lw = w(rng, o * h), lb = w(rng, o);
  const graph: GraphDef = {
    input: { name: "x", dims: ["T", "N", c] },
    outputs: ["y"],
    nodes: [
      {
        op: "GRU",
        inputs: ["x", "W", "R", "B"],
        outputs: ["Y"],
        attrs: { hidden_size: h, linear_before_reset: 1 },
      },
      { op: "Squeeze", inputs: ["Y", "axis1"], outputs: ["seq"] },
      { op: "Gather", inputs: ["seq", "minus1"], outputs: ["last"], attrs: { axis: 0 } },
      { op: "Gemm", inputs: ["last", "lw", "lb"], outputs: ["y"], attrs: { transB: 1 } },
    ],
    floats: {
      W: { dims: [1, 3 * h, c], data: W },
      R: { dims: [1, 3 * h, h], data: R },
      B: { dims: [1, 6 * h], data: B },
      lw: { dims: [o, h], data: lw },
      lb: { dims: [o], data: lb },
    },
    ints: { axis1: [1] },
  };
  Object.assign(graph.nodes[2], { scalarIndex: "minus1", scalarValue: -1 });
  const expected: ModelSpec = {
    inputSize: c,
    layers: [
      {
        kind: "gru",
        inputSize: c,
        outputSize: h,
        tensors: { Wx: W, Wh: R, bx: B.slice(0, 3 * h), bh: B.slice(3 * h) },
      },
      { kind: "dense", inputSize: h, outputSize: o, tensors: { W: lw, b: lb } },
    ],
  };
  return { graph, expected };
}

/** nn.LayerNorm as torch exports it below opset 17 (ReduceMean ... Div, Mul, Add), opset 14. */
export function decomposedNormGraph(rng: Rng) {
  const [a, n] = [4, 6];
  const wg = w(rng, n * a), bg = w(rng, n), gamma = w(rng, n, 1.5), beta = w(rng, n);
  const graph: GraphDef = {
    input: { name: "x", dims: ["N", a] },
    outputs: ["y"],
    nodes: [
      { op: "Gemm", inputs: ["x", "wg", "bg"], outputs: ["h"], attrs: { transB: 1 } },
      { op: "ReduceMean", inputs: ["h"], outputs: ["mean"], attrs: { axes: [-1] } },
      { op: "Sub", inputs: ["h", "mean"], outputs: ["d"] },
      { op: "Pow", inputs: ["d", "two"], outputs: ["sq"] },
      { op: "ReduceMean", inputs: ["sq"], outputs: ["var"], attrs: { axes: [-1] } },
      { op: "Add", inputs: ["var", "eps"], outputs: ["ve"] },
      { op: "Sqrt", inputs: ["ve"], outputs: ["sd"] },
      { op: "Div", inputs: ["d", "sd"], outputs: ["z"] },
      { op: "Mul", inputs: ["z", "gamma"], outputs: ["zg"] },
      { op: "Add", inputs: ["zg", "beta"], outputs: ["ln"] },
      { op: "Relu", inputs: ["ln"], outputs: ["y"] },
    ],
    floats: {
      wg: { dims: [n, a], data: wg },
      bg: { dims: [n], data: bg },
      two: { dims: [], data: new Float32Array([2]) },
      eps: { dims: [], data: new Float32Array([1e-5]) },
      gamma: { dims: [n], data: gamma },
      beta: { dims: [n], data: beta },
    },
    opset: 14,
  };
  const expected: ModelSpec = {
    inputSize: a,
    layers: [
      { kind: "dense", inputSize: a, outputSize: n, tensors: { W: wg, b: bg } },
      {
        kind: "layernorm",
        inputSize: n,
        outputSize: n,
        epsilon: Math.fround(1e-5),
        tensors: { gamma, beta },
      },
      { kind: "activation", inputSize: n, outputSize: n, activation: "relu", tensors: {} },
    ],
  };
  return { graph, expected };
}

/**
 * The same many-to-one shape with `out[-1:]` (Slice from -1 on the time axis, then Squeeze)
 * and an LSTM whose initial state is zeros expanded to a computed shape (Expand, Cast).
 */
export function lastSliceGraph(rng: Rng) {
  const [c, h, o] = [2, 3, 2];
  const W = w(rng, 4 * h * c), R = w(rng, 4 * h * h);
  const lw = w(rng, o * h), lb = w(rng, o);
  const graph: GraphDef = {
    input: { name: "x", dims: ["T", "N", c] },
    outputs: ["y"],
    nodes: [
      { op: "Shape", inputs: ["x"], outputs: ["shape"] },
      { op: "Slice", inputs: ["shape", "one", "two", "axis0"], outputs: ["batch"] },
      {
        op: "Concat",
        inputs: ["unit", "batch", "hidden"],
        outputs: ["hshape"],
        attrs: { axis: 0 },
      },
      { op: "Cast", inputs: ["hshape"], outputs: ["hshape64"], attrs: { to: 7 } },
      { op: "Expand", inputs: ["zero", "hshape64"], outputs: ["h0"] },
      {
        op: "LSTM",
        inputs: ["x", "W", "R", "", "", "h0"],
        outputs: ["Y"],
        attrs: { hidden_size: h },
      },
      { op: "Slice", inputs: ["Y", "minus1", "big", "axis0"], outputs: ["tail"] },
      { op: "Squeeze", inputs: ["tail", "axes01"], outputs: ["last"] },
      { op: "Gemm", inputs: ["last", "lw", "lb"], outputs: ["y"], attrs: { transB: 1 } },
    ],
    floats: {
      W: { dims: [1, 4 * h, c], data: W },
      R: { dims: [1, 4 * h, h], data: R },
      zero: { dims: [1, 1, 1], data: new Float32Array(1) },
      lw: { dims: [o, h], data: lw },
      lb: { dims: [o], data: lb },
    },
    ints: {
      one: [1],
      two: [2],
      axis0: [0],
      unit: [1],
      hidden: [h],
      minus1: [-1],
      big: [1 << 30],
      axes01: [0, 1],
    },
  };
  const order = [0, 2, 3, 1];
  const expected: ModelSpec = {
    inputSize: c,
    layers: [
      {
        kind: "lstm",
        inputSize: c,
        outputSize: h,
        tensors: {
          Wx: blocks(W, h * c, order),
          Wh: blocks(R, h * h, order),
          b: new Float32Array(4 * h),
        },
      },
      { kind: "dense", inputSize: h, outputSize: o, tensors: { W: lw, b: lb } },
    ],
  };
  return { graph, expected };
}

/** A classifier head at opset 11: Gemm then LogSoftmax with the default axis (1, the features). */
export function logSoftmaxGraph(rng: Rng) {
  const [a, n] = [5, 7];
  const wl = w(rng, n * a, 1.5), bl = w(rng, n);
  const graph: GraphDef = {
    input: { name: "x", dims: ["N", a] },
    outputs: ["y"],
    nodes: [
      { op: "Gemm", inputs: ["x", "wl", "bl"], outputs: ["logits"], attrs: { transB: 1 } },
      { op: "LogSoftmax", inputs: ["logits"], outputs: ["y"] },
    ],
    floats: { wl: { dims: [n, a], data: wl }, bl: { dims: [n], data: bl } },
    opset: 11,
  };
  const expected: ModelSpec = {
    inputSize: a,
    layers: [{
      kind: "dense",
      inputSize: a,
      outputSize: n,
      activation: "logsoftmax",
      tensors: { W: wl, b: bl },
    }],
  };
  return { graph, expected };
}

/**
 * A causal TCN as torch writes one: Pad (F.pad(x, ((k-1)*d, 0))) then Conv without padding,
 * twice, the second with its own one-frame left pad too; then the erf Gelu with its constants
 * as Constant nodes listed after the Div that starts the pattern.
 */
export function tcnGraph(rng: Rng) {
  const [c, o1, o2, k1, d1, k2] = [2, 5, 3, 3, 2, 3];
  const W1 = w(rng, o1 * c * k1), b1 = w(rng, o1), W2 = w(rng, o2 * o1 * k2), b2 = w(rng, o2);
  const graph: GraphDef = {
    input: { name: "x", dims: ["N", c, "T"] },
    outputs: ["y"],
    nodes: [
      { op: "Pad", inputs: ["x", "pads1"], outputs: ["p1"] },
      { op: "Conv", inputs: ["p1", "W1", "b1"], outputs: ["c1"], attrs: { dilations: [d1] } },
      { op: "Tanh", inputs: ["c1"], outputs: ["t1"] },
      { op: "Pad", inputs: ["t1", "pads2"], outputs: ["p2"] },
      { op: "Conv", inputs: ["p2", "W2", "b2"], outputs: ["c2"], attrs: { pads: [1, 0] } },
      { op: "Transpose", inputs: ["c2"], outputs: ["ntc"], attrs: { perm: [0, 2, 1] } },
      { op: "Div", inputs: ["ntc", "sqrt2"], outputs: ["d"] },
      { op: "Erf", inputs: ["d"], outputs: ["erf"] },
      { op: "Constant", inputs: [], outputs: ["one"] },
      { op: "Add", inputs: ["erf", "one"], outputs: ["p"] },
      { op: "Mul", inputs: ["ntc", "p"], outputs: ["xm"] },
      { op: "Constant", inputs: [], outputs: ["half"] },
      { op: "Mul", inputs: ["xm", "half"], outputs: ["y"] },
    ],
    floats: {
      W1: { dims: [o1, c, k1], data: W1 },
      b1: { dims: [o1], data: b1 },
      W2: { dims: [o2, o1, k2], data: W2 },
      b2: { dims: [o2], data: b2 },
      sqrt2: { dims: [], data: new Float32Array([Math.SQRT2]) },
    },
    ints: { pads1: [0, 0, (k1 - 1) * d1, 0, 0, 0], pads2: [0, 0, k2 - 2, 0, 0, 0] },
  };
  (graph.nodes[8] as NodeDef & { tensor?: Float32Array }).tensor = new Float32Array([1]);
  (graph.nodes[11] as NodeDef & { tensor?: Float32Array }).tensor = new Float32Array([0.5]);
  const expected: ModelSpec = {
    inputSize: c,
    layers: [
      {
        kind: "conv1d",
        inputSize: c,
        outputSize: o1,
        kernelSize: k1,
        dilation: d1,
        activation: "tanh",
        tensors: { W: W1, b: b1 },
      },
      {
        kind: "conv1d",
        inputSize: o1,
        outputSize: o2,
        kernelSize: k2,
        activation: "gelu",
        tensors: { W: W2, b: b2 },
      },
    ],
  };
  return { graph, expected };
}

/**
 * LayerNormalization, Mul/Add by constants, layout-only Unsqueeze/Flatten/Reshape, a Constant
 * node, the erf Gelu pattern, and a skip Add of the graph input.
 */
export function layoutGraph(rng: Rng) {
  const n = 6;
  const g = w(rng, n), beta = w(rng, n), scale = w(rng, n), shift = w(rng, n), wm = w(rng, n * n);
  const graph: GraphDef = {
    input: { name: "x", dims: ["N", n] },
    outputs: ["y"],
    nodes: [
      { op: "Unsqueeze", inputs: ["x", "axis1"], outputs: ["x3"] },
      {
        op: "LayerNormalization",
        inputs: ["x3", "g", "beta"],
        outputs: ["ln"],
        attrs: { axis: -1, epsilon: { f: 1e-5 } },
      },
      { op: "Flatten", inputs: ["ln"], outputs: ["flat"], attrs: { axis: 1 } },
      { op: "Constant", inputs: [], outputs: ["sc"], attrs: {} },
      { op: "Mul", inputs: ["flat", "sc"], outputs: ["mul"] },
      { op: "Add", inputs: ["mul", "shift"], outputs: ["aff"] },
      { op: "Reshape", inputs: ["aff", "shape"], outputs: ["re"] },
      { op: "MatMul", inputs: ["re", "wm"], outputs: ["mm"] },
      { op: "Div", inputs: ["mm", "sqrt2"], outputs: ["d"] },
      { op: "Erf", inputs: ["d"], outputs: ["erf"] },
      { op: "Add", inputs: ["erf", "one"], outputs: ["p1"] },
      { op: "Mul", inputs: ["mm", "p1"], outputs: ["xm"] },
      { op: "Mul", inputs: ["xm", "half"], outputs: ["gelu"] },
      { op: "Add", inputs: ["x", "gelu"], outputs: ["y"] },
    ],
    floats: {
      g: { dims: [n], data: g },
      beta: { dims: [n], data: beta },
      shift: { dims: [n], data: shift },
      wm: { dims: [n, n], data: wm },
      sqrt2: { dims: [], data: new Float32Array([Math.SQRT2]) },
      one: { dims: [], data: new Float32Array([1]) },
      half: { dims: [], data: new Float32Array([0.5]) },
    },
    ints: { axis1: [1], shape: [-1, n] },
  };
  // The Constant node's value: a tensor attribute, set after building the attribute list.
  const constant = graph.nodes[3];
  constant.attrs = {};
  (constant as NodeDef & { tensor?: Float32Array }).tensor = scale;
  const expected: ModelSpec = {
    inputSize: n,
    layers: [
      {
        kind: "layernorm",
        inputSize: n,
        outputSize: n,
        epsilon: 1e-5,
        tensors: { gamma: g, beta },
      },
      {
        kind: "batchnorm",
        inputSize: n,
        outputSize: n,
        epsilon: 1e-30,
        tensors: {
          gamma: scale,
          beta: shift,
          mean: new Float32Array(n),
          var: new Float32Array(n).fill(1),
        },
      },
      {
        kind: "dense",
        inputSize: n,
        outputSize: n,
        bias: false,
        activation: "gelu",
        tensors: { W: transpose2(wm, n, n) },
      },
      { kind: "skip", inputSize: n, outputSize: n, tensors: {} },
    ],
  };
  return { graph, expected };
}

/** buildGraph with Constant nodes' tensors filled in. */
export function buildWithConstants(graph: GraphDef): Uint8Array {
  const bytes = buildGraph(graph);
  const model = onnx.ModelProto.decode(bytes);
  graph.nodes.forEach((node, i) => {
    const tensor = (node as NodeDef & { tensor?: Float32Array }).tensor;
    if (tensor === undefined) return;
    model.graph!.node![i].attribute = [{
      name: "value",
      type: onnx.AttributeProto.AttributeType.TENSOR,
      t: floatTensor("", [tensor.length], tensor),
    }];
  });
  return onnx.ModelProto.encode(model).finish();
}

function constantGraphCase(): Case {
  return {
    name: "onnx import: LayerNormalization, Mul/Add, Constant, Flatten/Reshape/Unsqueeze, erf " +
      "Gelu and a skip Add match the float64 reference",
    run: async () => {
      const rng = new Rng(0x1a70);
      const { graph, expected } = layoutGraph(rng);
      const model = await loadModel(buildWithConstants(graph));
      try {
        const kinds = model.layers.map((l) => l.kind).join(",");
        const want = expected.layers.map((l) => l.kind).join(",");
        check(kinds === want, () => `layers ${kinds}, expected ${want}`);
        await agree("layout ops", model, expected, rng);
      } finally {
        model.dispose();
      }
    },
  };
}

// ---- round trip --------------------------------------------------------------------------

function roundTripSpec(rng: Rng, kind: LayerKind | "skip"): ModelSpec {
  if (kind === "skip") {
    const spec = randomModel(rng, ["lstm", "dense"], 3, [{}, {
      outputSize: 2,
      activation: "linear",
    }]);
    spec.layers.push({ kind: "skip", inputSize: 2, outputSize: 2, tensors: {} });
    return spec;
  }
  return randomModel(rng, ["dense", kind, "dense"], 9, [
    { outputSize: 8, activation: "tanh" },
    kind === "conv1d" ? { outputSize: 6 } : {},
    { outputSize: 4, activation: "linear" },
  ]);
}

const ROUND_TRIP_KINDS: (LayerKind | "skip")[] = [
  "dense",
  "lstm",
  "gru",
  "conv1d",
  "batchnorm",
  "layernorm",
  "prelu",
  "activation",
  "attention",
  "transformer",
  "skip",
];

function roundTripCase(kind: LayerKind | "skip"): Case {
  return {
    name: `onnx round trip: ${kind}: cadenza's export reads back to the same outputs`,
    run: async () => {
      const rng = new Rng(0x70 + ROUND_TRIP_KINDS.indexOf(kind));
      const spec = roundTripSpec(rng, kind);
      const original = await modelFromSpec(spec);
      const read = await loadModel(exportOnnx(spec).bytes);
      try {
        const steps = 12;
        const x = rng.floats(steps * spec.inputSize, -1.5, 1.5);
        const want = original.process(x, steps).slice();
        const got = read.process(x, steps);
        const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
        const b = new Uint32Array(want.buffer);
        const i = a.findIndex((bits, j) => bits !== b[j]);
        if (i >= 0) fail(`${kind}: output ${i} is ${got[i]}, the original gives ${want[i]}`);
        read.reset();
        await agree(`round trip ${kind}`, read, spec, rng);
      } finally {
        original.dispose();
        read.dispose();
      }
    },
  };
}

function activationRoundTrip(): Case {
  return {
    name: "onnx round trip: every fused activation of dense reads back the same",
    run: async () => {
      const rng = new Rng(0xac7);
      for (const activation of [...ALL_ACTIVATIONS, "logsoftmax" as const]) {
        const spec = randomModel(rng, ["dense", "dense"], 5, [{ outputSize: 7, activation }, {}]);
        const read = await loadSpec(exportOnnx(spec).bytes);
        const layer = read.spec.layers[0] as LayerSpec;
        check(
          (layer.activation ?? "linear") === activation,
          () => `${activation}: read back as ${layer.activation}`,
        );
        check(read.format === "onnx", () => `detected ${read.format}`);
      }
    },
  };
}

// ---- errors and external data ------------------------------------------------------------

function unsupportedCase(): Case {
  return {
    name:
      "onnx import: an unsupported op is E_FORMAT naming the node, its op and the supported ops",
    run: async () => {
      const graph: GraphDef = {
        input: { name: "x", dims: ["N", 3] },
        outputs: ["y"],
        nodes: [
          { op: "Relu", inputs: ["x"], outputs: ["r"] },
          { op: "Cos", inputs: ["r"], outputs: ["y"] },
        ],
      };
      await rejectsCadenza(
        () => loadModel(buildGraph(graph)),
        "E_FORMAT",
        /node "cos_1" \(Cos\): op Cos is not supported: cadenza maps Gemm, MatMul, .*LSTM, GRU, Conv/,
        "Cos",
      );
      const bidirectional: GraphDef = {
        input: { name: "x", dims: ["T", "N", 2] },
        outputs: ["y"],
        nodes: [{
          op: "LSTM",
          inputs: ["x", "W", "R"],
          outputs: ["y"],
          attrs: { hidden_size: 1, direction: "bidirectional" },
        }],
        floats: {
          W: { dims: [2, 4, 2], data: new Float32Array(16) },
          R: { dims: [2, 4, 1], data: new Float32Array(8) },
        },
      };
      await rejectsCadenza(
        () => loadModel(buildGraph(bidirectional)),
        "E_FORMAT",
        /node "lstm_0" \(LSTM\): attribute direction: expected "forward", got "bidirectional"/,
        "a bidirectional LSTM",
      );
      const branch: GraphDef = {
        input: { name: "x", dims: ["N", 2] },
        outputs: ["y"],
        nodes: [
          { op: "Relu", inputs: ["x"], outputs: ["a"] },
          { op: "Tanh", inputs: ["a"], outputs: ["b"] },
          { op: "Sigmoid", inputs: ["a"], outputs: ["y"] },
        ],
      };
      await rejectsCadenza(
        () => loadModel(buildGraph(branch)),
        "E_FORMAT",
        /node "sigmoid_2" \(Sigmoid\): input 0 \("a"\) is the activation after layer 1, not the latest/,
        "a branch",
      );
      await rejectsCadenza(
        () => loadModel(new Uint8Array([0x08, 0x08, 0x12, 0xff, 0xff])),
        "E_FORMAT",
        /<bytes>: expected an ONNX ModelProto/,
        "a truncated protobuf",
      );
    },
  };
}

function externalCase(): Case {
  return {
    name: "onnx import: initializers in external-data files beside the model load as embedded",
    run: async () => {
      const rng = new Rng(0xe7);
      const { graph, expected } = lstmGraph(rng);
      const dir = mkdtempSync(join(tmpdir(), "cadenza-onnx-"));
      try {
        const names = new Set(["W", "R"]);
        for (const name of names) {
          const data = graph.floats![name].data;
          writeFileSync(join(dir, `${name}.bin`), new Uint8Array(data.slice().buffer));
        }
        const path = join(dir, "model.onnx");
        const bytes = buildGraph(graph, names);
        writeFileSync(path, bytes);
        const model = await loadModel(path);
        try {
          await agree("external data", model, expected, rng);
        } finally {
          model.dispose();
        }
        await rejectsCadenza(
          () => loadModel(bytes),
          "E_ARGUMENT",
          /keeps its data in "W\.bin": load the model from its path/,
          "external data from bytes",
        );
        rmSync(join(dir, "R.bin"));
        await rejectsCadenza(() => loadModel(path), "E_IO", /R\.bin/, "a missing data file");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * The hand-built graphs with the ORT input layout of a T-step sequence (batch 1): "rows" feeds
 * the steps as rows [T, C]; "tnc" [T, 1, C]; "ntc" [1, T, C]; "nct" [1, C, T]; "last" feeds
 * [T, 1, C] and the graph gives only the last step's output.
 */
export const HAND_BUILT: [
  string,
  (rng: Rng) => { graph: GraphDef },
  "rows" | "tnc" | "ntc" | "nct" | "last",
][] = [
  ["many-to-one GRU (Gather of the last step)", lastStepGraph, "last"],
  ["many-to-one LSTM (Slice of the last step, expanded zero state)", lastSliceGraph, "last"],
  ["decomposed layer norm (opset 14)", decomposedNormGraph, "rows"],
  ["LogSoftmax head (opset 11)", logSoftmaxGraph, "rows"],
  ["dense ops", denseGraph, "rows"],
  ["sequence-first LSTM", lstmGraph, "tnc"],
  ["batch-first GRU", gruGraph, "ntc"],
  ["causal Conv", convGraph, "nct"],
  ["Pad + Conv (torch's causal TCN), Constant-node Gelu", tcnGraph, "nct"],
  ["layout ops", layoutGraph, "rows"],
];

/** Mutated and truncated ONNX bytes: every failure is a CadenzaError, never a TypeError. */
function mutationCase(): Case {
  return {
    name: "onnx import: 400 mutated or truncated files fail only with CadenzaError",
    run: async () => {
      const rng = new Rng(0xf022);
      const spec = randomModel(rng, ["conv1d", "lstm", "transformer", "dense"], 6);
      const bytes = exportOnnx(spec).bytes;
      let read = 0;
      for (let i = 0; i < 400; i++) {
        const mutated = i % 4 === 0 ? bytes.slice(0, rng.int(1, bytes.length - 1)) : bytes.slice();
        if (i % 4 !== 0) {
          for (let k = rng.int(1, 4); k > 0; k--) {
            mutated[rng.int(0, mutated.length - 1)] = rng.int(0, 255);
          }
        }
        try {
          await loadSpec(mutated, { format: "onnx" });
          read++;
        } catch (err) {
          if (!(err instanceof CadenzaError)) {
            fail(`mutation ${i}: ${(err as Error).name}: ${(err as Error).message}`);
          }
        }
      }
      check(read < 400, () => "every mutation read back: the mutations did nothing");
    },
  };
}

export function onnxCases(): Case[] {
  return [
    graphCase("MatMul+Add, Gemm (transB 0, alpha, beta), Relu, Tanh, Sigmoid, Softmax", denseGraph),
    graphCase("sequence-first LSTM + MatMul/Add head (torch layout)", lstmGraph),
    graphCase("batch-first GRU (Transpose), Elu, Gelu", gruGraph),
    graphCase("causal Conv [N, C, T] (dilation, groups), BatchNormalization, PRelu", convGraph),
    graphCase("Pad + Conv as torch writes a causal TCN, Gelu with Constant nodes", tcnGraph),
    graphCase("many-to-one GRU: Gather(-1) of the time axis, Gemm", lastStepGraph),
    graphCase(
      "many-to-one LSTM: Slice(-1:) of the time axis, Expand/Cast zero state",
      lastSliceGraph,
    ),
    graphCase("Gemm + LogSoftmax with opset 11's default axis", logSoftmaxGraph),
    graphCase(
      "layer norm decomposed below opset 17 (ReduceMean ... Div, Mul, Add)",
      decomposedNormGraph,
    ),
    constantGraphCase(),
    ...ROUND_TRIP_KINDS.map(roundTripCase),
    activationRoundTrip(),
    unsupportedCase(),
    externalCase(),
    mutationCase(),
  ];
}
