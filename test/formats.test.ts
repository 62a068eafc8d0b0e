// Model formats: every conformance model parses to the right shapes and, run through a plain
// float64 reference forward written here from docs/DESIGN.md, reproduces the Keras/PyTorch
// outputs; safetensors round trips bit-exact; malformed files fail with precise messages.

import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { detectFormat } from "../src/model/formats/detect.ts";
import { parseRtneural, toRtneural } from "../src/model/formats/rtneural.ts";
import { readSafetensors, writeSafetensors } from "../src/model/formats/safetensors.ts";
import { parseTorchStateDict, type TorchLayerDecl } from "../src/model/formats/torch.ts";
import {
  type Activation,
  type LayerKind,
  type LayerSpec,
  type ModelSpec,
  tensorShapes,
} from "../src/model/spec.ts";
import { throwsCadenzaWith } from "./cases/check.ts";
import { ALL_KINDS } from "./helpers.ts";

const CONFORMANCE = fileURLToPath(new URL("../../shared/conformance/rtneural", import.meta.url));

function modelJson(file: string): unknown {
  return JSON.parse(readFileSync(join(CONFORMANCE, "models", file), "utf8"));
}

function csv(file: string): number[][] {
  const text = readFileSync(join(CONFORMANCE, "test_data", file), "utf8").trim();
  return text.split("\n").map((line) => line.split(",").map(Number));
}

// ---------------------------------------------------------------------------------------------
// A deliberately plain float64 reference of the canonical semantics (docs/DESIGN.md), used only
// to check that the format conversions put every weight where the runtime will look for it.

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

function activate(act: Activation, v: number[]): number[] {
  switch (act) {
    case "linear":
      return v;
    case "tanh":
      return v.map(Math.tanh);
    case "sigmoid":
      return v.map(sigmoid);
    case "relu":
      return v.map((x) => Math.max(0, x));
    case "elu":
      return v.map((x) => (x > 0 ? x : Math.exp(x) - 1));
    case "softmax": {
      const m = Math.max(...v);
      const e = v.map((x) => Math.exp(x - m));
      const s = e.reduce((a, b) => a + b, 0);
      return e.map((x) => x / s);
    }
    case "gelu":
    case "logsoftmax":
      throw new Error(`${act} is not used by the conformance models`);
  }
}

function matvec(w: Float32Array, rows: number, cols: number, x: number[], row0 = 0): number[] {
  const y: number[] = [];
  for (let r = row0; r < row0 + rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[r * cols + c] * x[c];
    y.push(s);
  }
  return y;
}

type State = { h?: number[]; c?: number[]; history?: number[][] };

function stepLayer(layer: LayerSpec, state: State, x: number[]): number[] {
  const t = layer.tensors;
  const n_in = layer.inputSize;
  const n = layer.outputSize;
  switch (layer.kind) {
    case "dense": {
      const y = matvec(t.W, n, n_in, x).map((v, i) => v + (t.b?.[i] ?? 0));
      return activate(layer.activation ?? "linear", y);
    }
    case "lstm": {
      const h = state.h ?? new Array(n).fill(0);
      const c = state.c ?? new Array(n).fill(0);
      const zx = matvec(t.Wx, 4 * n, n_in, x);
      const zh = matvec(t.Wh, 4 * n, n, h);
      const z = zx.map((v, i) => v + zh[i] + t.b[i]);
      const c2 = c.map((cv, j) => sigmoid(z[n + j]) * cv + sigmoid(z[j]) * Math.tanh(z[2 * n + j]));
      state.c = c2;
      state.h = c2.map((cv, j) => sigmoid(z[3 * n + j]) * Math.tanh(cv));
      return state.h;
    }
    case "gru": {
      const h = state.h ?? new Array(n).fill(0);
      const ax = matvec(t.Wx, 3 * n, n_in, x).map((v, i) => v + t.bx[i]);
      const ah = matvec(t.Wh, 3 * n, n, h).map((v, i) => v + t.bh[i]);
      state.h = h.map((hv, j) => {
        const z = sigmoid(ax[j] + ah[j]);
        const r = sigmoid(ax[n + j] + ah[n + j]);
        const cand = Math.tanh(ax[2 * n + j] + r * ah[2 * n + j]);
        return (1 - z) * cand + z * hv;
      });
      return state.h;
    }
    case "conv1d":
      return stepConv(layer, state, x);
    case "batchnorm": {
      const eps = layer.epsilon ?? 1e-3;
      const y = x.map((v, i) => {
        const norm = (v - t.mean[i]) / Math.sqrt(t.var[i] + eps);
        return t.gamma === undefined ? norm : norm * t.gamma[i] + t.beta[i];
      });
      return activate(layer.activation ?? "linear", y);
    }
    case "prelu":
      return x.map((v, i) => (v >= 0 ? v : v * t.alpha[t.alpha.length === 1 ? 0 : i]));
    case "activation":
      return activate(layer.activation ?? "linear", x);
    default:
      throw new Error(`reference has no ${layer.kind}`);
  }
}

function stepConv(layer: LayerSpec, state: State, x: number[]): number[] {
  const k = layer.kernelSize!;
  const d = layer.dilation ?? 1;
  const groups = layer.groups ?? 1;
  const c_in = layer.inputSize / groups;
  const per_group = layer.outputSize / groups;
  const span = (k - 1) * d + 1;
  const history = state.history ??
    Array.from({ length: span }, () => new Array(layer.inputSize).fill(0));
  history.shift();
  history.push(x);
  state.history = history;
  const y: number[] = [];
  for (let o = 0; o < layer.outputSize; o++) {
    const g = Math.floor(o / per_group);
    let s = layer.tensors.b[o];
    for (let c = 0; c < c_in; c++) {
      for (let tap = 0; tap < k; tap++) {
        // Tap k-1 multiplies the newest input.
        const input = history[span - 1 - (k - 1 - tap) * d];
        s += layer.tensors.W[(o * c_in + c) * k + tap] * input[g * c_in + c];
      }
    }
    y.push(s);
  }
  return activate(layer.activation ?? "linear", y);
}

function runReference(spec: ModelSpec, inputs: number[][]): number[][] {
  const states: State[] = spec.layers.map(() => ({}));
  return inputs.map((x) => {
    let v = x;
    spec.layers.forEach((layer, i) => (v = stepLayer(layer, states[i], v)));
    return v;
  });
}

function maxError(got: number[][], want: number[][]): number {
  let err = 0;
  got.forEach((row, i) => row.forEach((v, j) => (err = Math.max(err, Math.abs(v - want[i][j])))));
  return err;
}

// ---------------------------------------------------------------------------------------------

const LSTM_TORCH: TorchLayerDecl[] = [
  { kind: "lstm", name: "lstm" },
  { kind: "lstm", name: "lstm2", numLayers: 3 },
  { kind: "linear", name: "dense" },
];
const GRU_TORCH: TorchLayerDecl[] = [
  { kind: "gru", name: "gru" },
  { kind: "gru", name: "gru2", numLayers: 3 },
  { kind: "linear", name: "dense" },
];

/** Conformance cases: model, parser, x, y; errors are float64 reference vs Keras/PyTorch. */
const CASES: { name: string; spec: () => ModelSpec; x: string; y: string }[] = [
  {
    name: "dense",
    spec: () => parseRtneural(modelJson("dense.json"), "dense.json"),
    x: "dense_x_python.csv",
    y: "dense_y_python.csv",
  },
  {
    name: "lstm",
    spec: () => parseRtneural(modelJson("lstm.json"), "lstm.json"),
    x: "lstm_x_python.csv",
    y: "lstm_y_python.csv",
  },
  {
    name: "lstm_1d",
    spec: () => parseRtneural(modelJson("lstm_1d.json"), "lstm_1d.json"),
    x: "lstm_1d_x_python.csv",
    y: "lstm_1d_y_python.csv",
  },
  {
    name: "gru",
    spec: () => parseRtneural(modelJson("gru.json"), "gru.json"),
    x: "gru_x_python.csv",
    y: "gru_y_python.csv",
  },
  {
    name: "gru_1d",
    spec: () => parseRtneural(modelJson("gru_1d.json"), "gru_1d.json"),
    x: "gru_1d_x_python.csv",
    y: "gru_1d_y_python.csv",
  },
  {
    name: "conv1d",
    spec: () => parseRtneural(modelJson("conv.json"), "conv.json"),
    x: "conv_x_python.csv",
    y: "conv_y_python.csv",
  },
  {
    name: "lstm_torch",
    spec: () => parseTorchStateDict(modelJson("lstm_torch.json"), LSTM_TORCH, "lstm_torch.json"),
    x: "lstm_torch_x_python.csv",
    y: "lstm_torch_y_python.csv",
  },
  {
    name: "gru_torch",
    spec: () => parseTorchStateDict(modelJson("gru_torch.json"), GRU_TORCH, "gru_torch.json"),
    x: "gru_torch_x_python.csv",
    y: "gru_torch_y_python.csv",
  },
];

describe("conformance models", () => {
  for (const c of CASES) {
    test(`${c.name}: reference forward of the parsed spec matches the framework output`, () => {
      const spec = c.spec();
      const got = runReference(spec, csv(c.x));
      // The files hold float32 weights and the reference runs in float64, so what is left is
      // the frameworks' float32 rounding (measured at most 1.4e-7); a misplaced weight is far
      // above 1e-6, the bound RTNeural's own tests use.
      expect(maxError(got, csv(c.y))).toBeLessThan(1e-6);
    });
  }

  test("conv1d_torch: Conv1d(1->12, k5) output step n+4 equals column n", () => {
    const spec = parseTorchStateDict(
      modelJson("conv1d_torch.json"),
      [{ kind: "conv1d" }],
      "conv1d_torch.json",
    );
    expect(spec.layers[0]).toMatchObject({
      kind: "conv1d",
      inputSize: 1,
      outputSize: 12,
      kernelSize: 5,
    });
    const got = runReference(spec, csv("conv1d_torch_x_python.csv"));
    const want = csv("conv1d_torch_y_python.csv");
    let err = 0;
    for (let n = 0; n < want[0].length; n++) {
      for (let o = 0; o < 12; o++) err = Math.max(err, Math.abs(got[n + 4][o] - want[o][n]));
    }
    expect(err).toBeLessThan(1e-6);
  });

  test("conv1d tap order matters: Keras kernels read newest-last would not match", () => {
    const m = modelJson("conv.json") as { layers: { type: string; weights: unknown[][] }[] };
    for (const layer of m.layers) if (layer.type === "conv1d") layer.weights[0].reverse();
    const got = runReference(parseRtneural(m, "reversed"), csv("conv_x_python.csv"));
    expect(maxError(got, csv("conv_y_python.csv"))).toBeGreaterThan(1e-3);
  });

  test("full_model.json parses with the documented architecture", () => {
    const spec = parseRtneural(modelJson("full_model.json"), "full_model.json");
    const summary = spec.layers.map((
      l,
    ) => [l.kind, l.inputSize, l.outputSize, l.activation ?? "linear"]);
    expect(summary).toEqual([
      ["dense", 1, 8, "tanh"],
      ["conv1d", 8, 4, "tanh"],
      ["gru", 4, 8, "linear"],
      ["dense", 8, 1, "linear"],
    ]);
    expect(spec.layers[1]).toMatchObject({ kernelSize: 3, dilation: 2 });
  });

  test("every parsed tensor has the length its architecture gives", () => {
    for (const c of CASES) {
      for (const layer of c.spec().layers) {
        for (const [name, shape] of Object.entries(tensorShapes(layer))) {
          const len = shape.reduce((a, b) => a * b, 1);
          const ok = layer.tensors[name].length === len ||
            (layer.kind === "prelu" && layer.tensors[name].length === 1);
          expect(ok).toBe(true);
        }
      }
    }
  });

  test("conv.json: groups, dilation, 2-weight batchnorm and shared prelu come through", () => {
    const spec = parseRtneural(modelJson("conv.json"), "conv.json");
    expect(spec.layers[5]).toMatchObject({ kind: "conv1d", kernelSize: 3, dilation: 2, groups: 2 });
    expect(spec.layers[5].tensors.W.length).toBe(6 * 2 * 3);
    expect(spec.layers[6]).toMatchObject({ kind: "batchnorm", affine: false, epsilon: 5 });
    expect(spec.layers[7].tensors.alpha.length).toBe(1);
    expect(spec.layers[3].tensors.alpha.length).toBe(4);
  });

  test("dense.json: dense layers without bias", () => {
    const spec = parseRtneural(modelJson("dense.json"), "dense.json");
    expect(spec.layers.slice(-3).map((l) => l.bias)).toEqual([false, false, false]);
    expect(Object.keys(spec.layers[10].tensors)).toEqual(["W"]);
  });
});

// ---------------------------------------------------------------------------------------------
// Torch and RTNeural layouts of the same architecture agree.

/** Writes a spec's recurrent and dense layers as a PyTorch state_dict (inverse layouts). */
function toTorchDict(spec: ModelSpec, names: string[]): Record<string, unknown> {
  const dict: Record<string, unknown> = {};
  const rows = (v: Float32Array, n: number) =>
    Array.from({ length: v.length / n }, (_, r) => Array.from(v.subarray(r * n, (r + 1) * n)));
  spec.layers.forEach((layer, i) => {
    const p = names[i];
    const t = layer.tensors;
    const h = layer.outputSize;
    if (layer.kind === "dense") {
      dict[`${p}.weight`] = rows(t.W, layer.inputSize);
      if (t.b) dict[`${p}.bias`] = Array.from(t.b);
    } else if (layer.kind === "lstm") {
      dict[`${p}.weight_ih_l0`] = rows(t.Wx, layer.inputSize);
      dict[`${p}.weight_hh_l0`] = rows(t.Wh, h);
      dict[`${p}.bias_ih_l0`] = Array.from(t.b);
      dict[`${p}.bias_hh_l0`] = new Array(4 * h).fill(0);
    } else if (layer.kind === "gru") {
      // Canonical z,r,n back to PyTorch r,z,n.
      const swap = (v: Float32Array, block: number) =>
        Float32Array.from([
          ...v.subarray(block, 2 * block),
          ...v.subarray(0, block),
          ...v.subarray(2 * block),
        ]);
      dict[`${p}.weight_ih_l0`] = rows(swap(t.Wx, h * layer.inputSize), layer.inputSize);
      dict[`${p}.weight_hh_l0`] = rows(swap(t.Wh, h * h), h);
      dict[`${p}.bias_ih_l0`] = Array.from(swap(t.bx, h));
      dict[`${p}.bias_hh_l0`] = Array.from(swap(t.bh, h));
    }
  });
  return dict;
}

describe("torch and RTNeural agree", () => {
  for (const file of ["gru_1d.json", "lstm_1d.json"]) {
    test(`${file} rewritten as a state_dict parses to the same spec`, () => {
      const keras = parseRtneural(modelJson(file), file);
      const names = keras.layers.map((_, i) => `m${i}`);
      const decls: TorchLayerDecl[] = keras.layers.map((l, i) => ({
        kind: l.kind === "dense" ? "linear" : (l.kind as "lstm" | "gru"),
        name: names[i],
        ...(l.activation ? { activation: l.activation } : {}),
      }));
      const torch = parseTorchStateDict(toTorchDict(keras, names), decls, `${file} as torch`);
      torch.layers.forEach((layer, i) => {
        expect(layer.kind).toBe(keras.layers[i].kind);
        for (const [name, values] of Object.entries(keras.layers[i].tensors)) {
          expect(layer.tensors[name]).toEqual(values);
        }
      });
      const x = csv(file.replace(".json", "_x_python.csv"));
      expect(maxError(runReference(torch, x), runReference(keras, x))).toBe(0);
    });
  }

  test("PyTorch LSTM biases are summed and GRU gates reordered", () => {
    const dict = {
      "lstm.weight_ih_l0": [[1], [2], [3], [4]],
      "lstm.weight_hh_l0": [[5], [6], [7], [8]],
      "lstm.bias_ih_l0": [1, 2, 3, 4],
      "lstm.bias_hh_l0": [10, 20, 30, 40],
      "gru.weight_ih_l0": [[1], [2], [3]],
      "gru.weight_hh_l0": [[4], [5], [6]],
      "gru.bias_ih_l0": [7, 8, 9],
      "gru.bias_hh_l0": [10, 11, 12],
    };
    const spec = parseTorchStateDict(dict, [{ kind: "lstm", name: "lstm" }, {
      kind: "gru",
      name: "gru",
    }], "tiny");
    expect(Array.from(spec.layers[0].tensors.b)).toEqual([11, 22, 33, 44]);
    expect(Array.from(spec.layers[0].tensors.Wx)).toEqual([1, 2, 3, 4]);
    expect(Array.from(spec.layers[1].tensors.Wx)).toEqual([2, 1, 3]);
    expect(Array.from(spec.layers[1].tensors.Wh)).toEqual([5, 4, 6]);
    expect(Array.from(spec.layers[1].tensors.bx)).toEqual([8, 7, 9]);
    expect(Array.from(spec.layers[1].tensors.bh)).toEqual([11, 10, 12]);
  });
});

describe("torch errors", () => {
  const dict = () => modelJson("lstm_torch.json") as Record<string, unknown>;

  test("a missing tensor is named", () => {
    const d = dict();
    delete d["lstm2.bias_hh_l2"];
    delete d["lstm2.weight_hh_l2"];
    throwsCadenzaWith(
      () => parseTorchStateDict(d, LSTM_TORCH, "x.json"),
      "E_FORMAT",
      'x.json: declared layer 1 (lstm "lstm2")',
      '"lstm2.weight_hh_l2"',
      "got nothing",
    );
  });

  test("a misshapen tensor gives both shapes", () => {
    const d = dict();
    d["dense.weight"] = [[1, 2, 3]];
    throwsCadenzaWith(
      () => parseTorchStateDict(d, LSTM_TORCH, "x.json"),
      "E_SHAPE",
      '"dense.weight"',
      "expected input width 8",
      "got 3",
    );
    const e = dict();
    e["lstm.bias_ih_l0"] = [1, 2];
    throwsCadenzaWith(
      () => parseTorchStateDict(e, LSTM_TORCH, "x.json"),
      "E_SHAPE",
      '"lstm.bias_ih_l0"',
      "expected shape [32]",
      "got [2]",
    );
  });

  test("unused tensors are listed", () => {
    throwsCadenzaWith(
      () => parseTorchStateDict(dict(), LSTM_TORCH.slice(0, 2), "x.json"),
      "E_FORMAT",
      "2 unused",
      '"dense.weight"',
      '"dense.bias"',
    );
    throwsCadenzaWith(
      () =>
        parseTorchStateDict(dict(), [
          LSTM_TORCH[0],
          { kind: "lstm", name: "lstm2", numLayers: 2 },
          LSTM_TORCH[2],
        ], "x.json"),
      "E_FORMAT",
      "4 unused",
      '"lstm2.weight_ih_l2"',
    );
  });

  test("a bad declaration is an argument error", () => {
    throwsCadenzaWith(
      () => parseTorchStateDict(dict(), [{ kind: "rnn" as "lstm" }], "x.json"),
      "E_ARGUMENT",
      "declared layer 0",
      "kind",
      '"rnn"',
    );
    throwsCadenzaWith(() => parseTorchStateDict(dict(), [], "x.json"), "E_ARGUMENT", "non-empty");
  });

  test("a non-number entry is a format error with its index", () => {
    const d = dict();
    (d["dense.weight"] as unknown[][])[0][3] = "x";
    throwsCadenzaWith(
      () => parseTorchStateDict(d, LSTM_TORCH, "x.json"),
      "E_FORMAT",
      '"dense.weight"[0][3]',
      "expected a number",
      '"x"',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// RTNeural errors and export.

describe("rtneural errors", () => {
  const lstm = () => modelJson("lstm.json") as { layers: Record<string, unknown>[] };

  test("a wrong kernel shape names layer, weight and both shapes", () => {
    const m = lstm();
    (m.layers[1].weights as unknown[])[1] = [[0, 1]];
    throwsCadenzaWith(
      () => parseRtneural(m, "lstm.json"),
      "E_SHAPE",
      "lstm.json: layers[1] (lstm): weights[1]",
      "expected shape [8][32]",
      "got [1][2]",
    );
  });

  test("unknown layer type and activation are refused", () => {
    const m = lstm();
    m.layers[0].type = "conv2d";
    throwsCadenzaWith(
      () => parseRtneural(m, "lstm.json"),
      "E_FORMAT",
      "layers[0]",
      "type",
      '"conv2d"',
    );
    const n = lstm();
    n.layers[0].activation = "swish";
    throwsCadenzaWith(() => parseRtneural(n, "lstm.json"), "E_FORMAT", "activation", '"swish"');
  });

  test("GRU without reset_after and a 3-weight batchnorm are refused", () => {
    const g = modelJson("gru_1d.json") as { layers: Record<string, unknown>[] };
    (g.layers[0].weights as unknown[])[2] = new Array(24).fill(0);
    throwsCadenzaWith(() => parseRtneural(g, "gru_1d.json"), "E_FORMAT", "reset_after");
    const c = modelJson("conv.json") as { layers: Record<string, unknown>[] };
    (c.layers[2].weights as unknown[]).pop();
    throwsCadenzaWith(
      () => parseRtneural(c, "conv.json"),
      "E_FORMAT",
      "layers[2] (batchnorm)",
      "2 or 4",
    );
  });

  test("missing in_shape and a width mismatch in shape are refused", () => {
    const m = lstm() as Record<string, unknown>;
    delete m.in_shape;
    throwsCadenzaWith(() => parseRtneural(m, "lstm.json"), "E_FORMAT", "in_shape");
    const c = modelJson("conv.json") as { layers: Record<string, unknown>[] };
    c.layers[3].shape = [null, 100, 5];
    throwsCadenzaWith(() => parseRtneural(c, "conv.json"), "E_SHAPE", "layers[3] (prelu)", "4");
  });

  test("NaN-like values (null) are refused with their index", () => {
    const m = lstm();
    (m.layers[2].weights as unknown[][])[1][0] = null;
    throwsCadenzaWith(
      () => parseRtneural(m, "lstm.json"),
      "E_FORMAT",
      "weights[1] (bias [out])[0]",
      "got null",
    );
  });
});

describe("toRtneural", () => {
  for (const file of ["conv.json", "dense.json", "gru.json", "lstm.json", "full_model.json"]) {
    test(`${file}: parse(toRtneural(spec)) is bit-exact`, () => {
      const spec = parseRtneural(modelJson(file), file);
      const again = parseRtneural(JSON.parse(JSON.stringify(toRtneural(spec))), "again");
      expect(again).toEqual(spec);
    });
  }

  test("layers without an RTNeural equivalent are refused", () => {
    const spec = randomSpec("layernorm", rng(3));
    throwsCadenzaWith(() => toRtneural(spec), "E_FORMAT", "layer 1 (layernorm)", "RTNeural");
  });
});

// ---------------------------------------------------------------------------------------------
// safetensors.

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6D2B79F5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomTensors(arch: LayerSpec, rand: () => number): Record<string, Float32Array> {
  const tensors: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(tensorShapes(arch))) {
    const len = shape.reduce((a, b) => a * b, 1);
    // Variances must stay positive for a meaningful spec; everything else any sign.
    tensors[name] = Float32Array.from(
      { length: len },
      () => name === "var" ? rand() + 0.1 : rand() * 2 - 1,
    );
  }
  return tensors;
}

/** A 3-layer spec: dense 5->d, the kind under test, dense ->3. */
function randomSpec(kind: LayerKind, rand: () => number): ModelSpec {
  const d = 8;
  const mid: LayerSpec = { kind, inputSize: d, outputSize: d, tensors: {} };
  if (kind === "dense") Object.assign(mid, { outputSize: 6, activation: "relu", bias: false });
  if (kind === "lstm" || kind === "gru") mid.outputSize = 7;
  if (kind === "conv1d") {
    Object.assign(mid, {
      outputSize: 4,
      kernelSize: 3,
      dilation: 2,
      groups: 2,
      activation: "tanh",
    });
  }
  if (kind === "batchnorm") {
    Object.assign(mid, { affine: false, epsilon: 0.01, activation: "sigmoid" });
  }
  if (kind === "layernorm") mid.epsilon = 1e-6;
  if (kind === "activation") mid.activation = "softmax";
  if (kind === "attention") Object.assign(mid, { heads: 2, context: 16, name: "attn" });
  if (kind === "transformer") {
    Object.assign(mid, { heads: 4, context: 32, ffDim: 12, activation: "gelu" });
  }
  mid.tensors = randomTensors(mid, rand);
  const first: LayerSpec = { kind: "dense", inputSize: 5, outputSize: d, tensors: {} };
  first.tensors = randomTensors(first, rand);
  const last: LayerSpec = {
    kind: "dense",
    inputSize: mid.outputSize,
    outputSize: 3,
    activation: "tanh",
    tensors: {},
  };
  last.tensors = randomTensors(last, rand);
  return {
    inputSize: 5,
    layers: [first, mid, last],
    maxBatch: 16,
    meta: { seed: String(kind), "1": "x" },
  };
}

describe("safetensors", () => {
  for (const kind of ALL_KINDS) {
    test(`${kind}: write(read(write(x))) is byte-exact and read(write(x)) equals x`, () => {
      const spec = randomSpec(kind, rng(ALL_KINDS.indexOf(kind) + 1));
      const bytes = writeSafetensors(spec);
      const back = readSafetensors(bytes, "x.safetensors");
      expect(back).toEqual(spec);
      expect(writeSafetensors(back)).toEqual(bytes);
      expect(detectFormat(bytes)).toBe("safetensors");
    });
  }

  test("the data starts 8-byte aligned and the header is padded with spaces", () => {
    const bytes = writeSafetensors(randomSpec("gru", rng(9)));
    const header_len = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + header_len) % 8).toBe(0);
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + header_len));
    expect(header.trimEnd().endsWith("}")).toBe(true);
    const parsed = JSON.parse(header);
    expect(Object.keys(parsed)[0]).toBe("__metadata__");
    expect(parsed.__metadata__.format).toBe("cadenza");
    expect(parsed["layers.1.Wx"]).toEqual({
      dtype: "F32",
      shape: [21, 8],
      data_offsets: [192, 192 + 21 * 8 * 4],
    });
  });

  test("a shared prelu slope is written with shape [1]", () => {
    const spec = parseRtneural(modelJson("conv.json"), "conv.json");
    const bytes = writeSafetensors(spec);
    const header_len = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + header_len)));
    expect(header["layers.7.alpha"].shape).toEqual([1]);
    expect(readSafetensors(bytes, "conv")).toEqual({ ...spec, maxBatch: 64 });
  });

  /** Rewrites the header of a valid file with `edit` (data kept). */
  function withHeader(edit: (h: Record<string, any>) => void): Uint8Array {
    const bytes = writeSafetensors(randomSpec("lstm", rng(5)));
    const header_len = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + header_len)));
    edit(header);
    const json = new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + json.length + bytes.length - 8 - header_len);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    out.set(bytes.subarray(8 + header_len), 8 + json.length);
    return out;
  }

  test("truncated files and header lengths beyond the file are refused", () => {
    throwsCadenzaWith(
      () => readSafetensors(new Uint8Array(5), "t.st"),
      "E_FORMAT",
      "t.st",
      "truncated header",
      "got 5",
    );
    const bytes = writeSafetensors(randomSpec("dense", rng(1)));
    throwsCadenzaWith(
      () => readSafetensors(bytes.subarray(0, 40), "t.st"),
      "E_FORMAT",
      "beyond the file",
    );
    throwsCadenzaWith(
      () => readSafetensors(bytes.subarray(0, bytes.length - 4), "t.st"),
      "E_FORMAT",
      "data_offsets",
    );
  });

  test("bad JSON and a missing or foreign __metadata__ are refused", () => {
    const bad = new Uint8Array(8 + 4);
    new DataView(bad.buffer).setBigUint64(0, 4n, true);
    bad.set(new TextEncoder().encode('{"a"'), 8);
    throwsCadenzaWith(() => readSafetensors(bad, "t.st"), "E_FORMAT", "t.st: bad JSON header");
    throwsCadenzaWith(
      () => readSafetensors(withHeader((h) => delete h.__metadata__), "t.st"),
      "E_FORMAT",
      "__metadata__",
      "got nothing",
    );
    throwsCadenzaWith(
      () => readSafetensors(withHeader((h) => (h.__metadata__.format = "pt")), "t.st"),
      "E_FORMAT",
      "__metadata__.format",
      '"pt"',
    );
    throwsCadenzaWith(
      () => readSafetensors(withHeader((h) => delete h.__metadata__.architecture), "t.st"),
      "E_FORMAT",
      "architecture",
    );
    throwsCadenzaWith(
      () => readSafetensors(withHeader((h) => (h.__metadata__.architecture = "{")), "t.st"),
      "E_FORMAT",
      "architecture: bad JSON",
    );
  });

  test("offsets out of range, overlapping or leaving holes are refused", () => {
    throwsCadenzaWith(
      () => readSafetensors(withHeader((h) => (h["layers.0.W"].data_offsets = [0, 1e9])), "t.st"),
      "E_FORMAT",
      '"layers.0.W"',
      "data_offsets",
      "within",
    );
    throwsCadenzaWith(
      () => readSafetensors(withHeader((h) => (h["layers.0.b"].data_offsets = [0, 32])), "t.st"),
      "E_FORMAT",
      "overlaps",
    );
    throwsCadenzaWith(
      () =>
        readSafetensors(
          withHeader((h) => {
            const [b, e] = h["layers.0.b"].data_offsets;
            h["layers.0.b"].data_offsets = [b + 4, e + 4];
          }),
          "t.st",
        ),
      "E_FORMAT",
      '"layers.0.b"',
    );
  });

  test("a non-F32 dtype is refused naming the tensor", () => {
    throwsCadenzaWith(
      () => readSafetensors(withHeader((h) => (h["layers.1.Wh"].dtype = "F16")), "t.st"),
      "E_FORMAT",
      'tensor "layers.1.Wh"',
      "dtype",
      '"F32"',
      '"F16"',
    );
  });

  test("wrong shapes, missing and extra tensors are refused", () => {
    throwsCadenzaWith(
      () =>
        readSafetensors(withHeader((h) => (h["layers.1.Wh"].shape = [28, 7].reverse())), "t.st"),
      "E_SHAPE",
      '"layers.1.Wh"',
      "expected shape [28][7]",
      "got [7][28]",
    );
    throwsCadenzaWith(
      () =>
        readSafetensors(
          withHeader((h) => {
            h["layers.9.x"] = h["layers.2.b"];
            delete h["layers.2.b"];
          }),
          "t.st",
        ),
      "E_FORMAT",
      '"layers.2.b"',
      "got nothing",
    );
    throwsCadenzaWith(
      () =>
        readSafetensors(
          withHeader((h) => {
            const arch = JSON.parse(h.__metadata__.architecture);
            arch.layers[2].bias = false;
            h.__metadata__.architecture = JSON.stringify(arch);
          }),
          "t.st",
        ),
      "E_FORMAT",
      '"layers.2.b"',
      "only those",
    );
  });

  test("an invalid architecture names the layer", () => {
    throwsCadenzaWith(
      () =>
        readSafetensors(
          withHeader((h) => {
            const arch = JSON.parse(h.__metadata__.architecture);
            arch.layers[1].inputSize = 9;
            h.__metadata__.architecture = JSON.stringify(arch);
          }),
          "t.st",
        ),
      "E_SHAPE",
      "t.st: layer 1 (lstm): inputSize: expected 8",
    );
  });

  test("reserved meta keys are refused on write", () => {
    const spec = randomSpec("dense", rng(2));
    spec.meta = { format: "x" };
    throwsCadenzaWith(() => writeSafetensors(spec), "E_ARGUMENT", "meta.format");
  });
});

describe("detectFormat", () => {
  test("tells the three formats apart by content", () => {
    const read = (f: string) => new Uint8Array(readFileSync(join(CONFORMANCE, "models", f)));
    expect(detectFormat(read("lstm.json"), "lstm.json")).toBe("rtneural");
    expect(detectFormat(read("gru_torch.json"))).toBe("torch");
    expect(detectFormat(read("conv1d_torch.json"))).toBe("torch");
    expect(detectFormat(writeSafetensors(randomSpec("prelu", rng(4))), "a.json")).toBe(
      "safetensors",
    );
  });

  test("refuses bytes that are none of them", () => {
    throwsCadenzaWith(() => detectFormat(new Uint8Array([1, 2, 3]), "m.bin"), "E_FORMAT", "m.bin");
    throwsCadenzaWith(
      () => detectFormat(new TextEncoder().encode('{"a": "b"}')),
      "E_FORMAT",
      "none of them",
    );
  });
});
