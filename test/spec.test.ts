// Canonical specs: validation messages, shapes, counts, and the model image v1 layout checked
// word by word against docs/DESIGN.md for a small hand-written spec.

import { describe, expect, test } from "bun:test";
import type { CadenzaErrorCode } from "../src/errors.ts";
import { packImage } from "../src/model/image.ts";
import {
  archOf,
  type LayerSpec,
  type ModelSpec,
  outputSize,
  parameterCount,
  TENSOR_NAMES,
  tensorShapes,
  validateSpec,
} from "../src/model/spec.ts";
import { throwsCadenzaWith } from "./cases/check.ts";

/** 0, 1, 2, ... as float32 times `scale`, so every weight in the image is recognisable. */
function seq(len: number, scale = 1): Float32Array {
  return Float32Array.from({ length: len }, (_, i) => i * scale);
}

function f32Bits(value: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value, true);
  return view.getUint32(0, true);
}

/** dense 2->3 relu, batchnorm 3, conv1d 3->2 (k2, d3), transformer d2, lstm 2->1. */
function handSpec(): ModelSpec {
  const t = (shapes: Record<string, number>) =>
    Object.fromEntries(Object.entries(shapes).map(([name, len], i) => [name, seq(len, i + 1)]));
  return {
    inputSize: 2,
    layers: [
      {
        kind: "dense",
        inputSize: 2,
        outputSize: 3,
        activation: "relu",
        tensors: t({ W: 6, b: 3 }),
      },
      {
        kind: "batchnorm",
        inputSize: 3,
        outputSize: 3,
        tensors: { ...t({ gamma: 3, beta: 3, mean: 3 }), var: Float32Array.of(1, 2, 3) },
      },
      {
        kind: "conv1d",
        inputSize: 3,
        outputSize: 2,
        kernelSize: 2,
        dilation: 3,
        activation: "tanh",
        tensors: t({ W: 12, b: 2 }),
      },
      {
        kind: "transformer",
        inputSize: 2,
        outputSize: 2,
        heads: 2,
        context: 5,
        ffDim: 3,
        tensors: t({
          ln1_g: 2,
          ln1_b: 2,
          Wq: 4,
          bq: 2,
          Wk: 4,
          bk: 2,
          Wv: 4,
          bv: 2,
          Wo: 4,
          bo: 2,
          ln2_g: 2,
          ln2_b: 2,
          W1: 6,
          b1: 3,
          W2: 6,
          b2: 2,
        }),
      },
      {
        kind: "lstm",
        name: "rnn",
        inputSize: 2,
        outputSize: 1,
        tensors: t({ Wx: 8, Wh: 4, b: 4 }),
      },
    ],
  };
}

/** Walks an image by the documented layout; independent of image.ts. */
function decodeImage(image: Uint8Array) {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const word = (i: number) => view.getUint32(i * 4, true);
  const header = Array.from({ length: 8 }, (_, i) => word(i));
  let at = header[2];
  const records = [];
  for (let l = 0; l < header[3]; l++) {
    const words = Array.from({ length: 16 }, (_, i) => word(at + i));
    const f = [view.getFloat32((at + 12) * 4, true), view.getFloat32((at + 13) * 4, true)];
    at += 16;
    const tensors: Float32Array[] = [];
    for (let t = 0; t < words[14]; t++) {
      const count = word(at);
      tensors.push(
        Float32Array.from({ length: count }, (_, i) => view.getFloat32((at + 1 + i) * 4, true)),
      );
      at += 1 + count;
    }
    records.push({ words, f, tensors });
  }
  return { header, records, end_bytes: at * 4 };
}

describe("packImage", () => {
  test("header words follow docs/DESIGN.md", () => {
    const image = packImage(handSpec());
    // 8 header words, 5 records of 16, tensors: 2+9, 4+12, 2+14, 16+49, 3+16.
    const total_words = 8 + 5 * 16 + 11 + 16 + 16 + 65 + 19;
    expect(image.length).toBe(total_words * 4);
    expect(new TextDecoder().decode(image.subarray(0, 4))).toBe("CZIM");
    const { header, end_bytes } = decodeImage(image);
    expect(header).toEqual([0x4D495A43, 1, 8, 5, 2, 1, 64, total_words * 4]);
    expect(end_bytes).toBe(image.length);
  });

  test("per-layer words: kind, act, widths, p, f, tensor count", () => {
    const { records } = decodeImage(packImage(handSpec()));
    const eps_bn = f32Bits(1e-3);
    const eps_ln = f32Bits(1e-5);
    expect(records.map((r) => r.words)).toEqual([
      [1, 3, 2, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0],
      [5, 0, 3, 3, 1, 0, 0, 0, 0, 0, 0, 0, eps_bn, 0, 4, 0],
      [4, 1, 3, 2, 2, 3, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0],
      [10, 5, 2, 2, 2, 5, 3, 0, 0, 0, 0, 0, eps_ln, 0, 16, 0],
      [2, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0],
    ]);
  });

  test("tensors are written in TENSOR_NAMES order with their counts", () => {
    const spec = handSpec();
    const { records } = decodeImage(packImage(spec));
    spec.layers.forEach((layer, i) => {
      const names = TENSOR_NAMES(layer.kind, layer);
      expect(records[i].tensors).toEqual(names.map((name) => layer.tensors[name]));
    });
  });

  test("bias false, affine false, explicit epsilon and maxBatch reach the words", () => {
    const spec: ModelSpec = {
      inputSize: 2,
      maxBatch: 7,
      layers: [
        { kind: "dense", inputSize: 2, outputSize: 2, bias: false, tensors: { W: seq(4) } },
        {
          kind: "batchnorm",
          inputSize: 2,
          outputSize: 2,
          affine: false,
          epsilon: 0.5,
          activation: "softmax",
          tensors: { mean: seq(2), var: seq(2, 1).map((v) => v + 1) },
        },
        {
          kind: "layernorm",
          inputSize: 2,
          outputSize: 2,
          epsilon: 0.25,
          tensors: { gamma: seq(2), beta: seq(2) },
        },
        { kind: "prelu", inputSize: 2, outputSize: 2, tensors: { alpha: Float32Array.of(0.1) } },
        { kind: "activation", inputSize: 2, outputSize: 2, activation: "elu", tensors: {} },
        {
          kind: "attention",
          inputSize: 2,
          outputSize: 2,
          heads: 1,
          context: 9,
          tensors: attentionTensors(2),
        },
      ],
    };
    const { header, records } = decodeImage(packImage(spec));
    expect(header[6]).toBe(7);
    expect(records.map((r) => r.words.slice(0, 6).concat(r.words[14]))).toEqual([
      [1, 0, 2, 2, 0, 0, 1],
      [5, 6, 2, 2, 0, 0, 2],
      [6, 0, 2, 2, 0, 0, 2],
      [7, 0, 2, 2, 0, 0, 1],
      [8, 4, 2, 2, 0, 0, 0],
      [9, 0, 2, 2, 1, 9, 8],
    ]);
    expect(records.map((r) => r.f[0])).toEqual([0, 0.5, 0.25, 0, 0, 0]);
  });

  test("an invalid spec is refused before packing", () => {
    const spec = handSpec();
    spec.layers[2].tensors.b = seq(3);
    throwsCadenzaWith(
      () => packImage(spec, "m.json"),
      "E_SHAPE",
      "m.json: layer 2 (conv1d): tensor b",
    );
  });
});

function attentionTensors(d: number): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const name of ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"]) {
    out[name] = seq(name.startsWith("W") ? d * d : d, 0.5);
  }
  return out;
}

describe("validateSpec", () => {
  test("the hand-written spec is valid; counts and shapes", () => {
    const spec = handSpec();
    expect(() => validateSpec(spec, "hand")).not.toThrow();
    expect(parameterCount(spec)).toBe(9 + 12 + 14 + 49 + 16);
    expect(outputSize(spec)).toBe(1);
    expect(tensorShapes(spec.layers[2])).toEqual({ W: [2, 3, 2], b: [2] });
    expect(tensorShapes(spec.layers[4])).toEqual({ Wx: [4, 2], Wh: [4, 1], b: [4] });
    expect(Object.keys(tensorShapes(spec.layers[3]))).toEqual(TENSOR_NAMES("transformer"));
    expect(tensorShapes(spec.layers[3]).W1).toEqual([3, 2]);
  });

  test("archOf strips tensors and keeps a fixed key order", () => {
    const arch = archOf(handSpec().layers[2]);
    expect(Object.keys(arch)).toEqual([
      "kind",
      "inputSize",
      "outputSize",
      "activation",
      "kernelSize",
      "dilation",
    ]);
    expect(Object.keys(archOf(handSpec().layers[4]))).toEqual([
      "kind",
      "name",
      "inputSize",
      "outputSize",
    ]);
  });

  const cases: [string, (s: ModelSpec) => void, CadenzaErrorCode, string[]][] = [
    ["wrong tensor length", (s) => (s.layers[0].tensors.W = seq(5)), "E_SHAPE", [
      "hand: layer 0 (dense): tensor W: expected 6 elements ([3][2])",
      "got 5",
    ]],
    ["NaN weight", (s) => (s.layers[4].tensors.Wh[2] = NaN), "E_FORMAT", [
      'layer 4 (lstm "rnn"): tensor Wh[2]: expected a finite value, got NaN',
    ]],
    ["infinite weight", (s) => (s.layers[1].tensors.mean[0] = Infinity), "E_FORMAT", [
      "tensor mean[0]",
      "Infinity",
    ]],
    ["unknown activation", (s) => (s.layers[0].activation = "swish" as "relu"), "E_FORMAT", [
      "layer 0 (dense): activation: expected one of linear, tanh",
      'got "swish"',
    ]],
    ["bad chaining", (s) => (s.layers[3].inputSize = 3), "E_SHAPE", [
      "layer 3 (transformer): inputSize: expected 2 (layer 2's outputSize), got 3",
    ]],
    ["first layer width", (s) => (s.inputSize = 4), "E_SHAPE", [
      "layer 0 (dense): inputSize: expected 4 (the model's inputSize), got 2",
    ]],
    ["missing tensor", (s) => delete s.layers[1].tensors.beta, "E_FORMAT", [
      "layer 1 (batchnorm): tensor beta: expected a Float32Array [3]",
      "got nothing",
    ]],
    ["extra tensor", (s) => (s.layers[0].tensors.c = seq(1)), "E_FORMAT", [
      "tensor c",
      "only W, b",
    ]],
    [
      "wrong array type",
      (s) => (s.layers[0].tensors.b = Float64Array.of(1, 2, 3) as unknown as Float32Array),
      "E_FORMAT",
      ["tensor b", "Float64Array"],
    ],
    ["unknown kind", (s) => (s.layers[1].kind = "rnn" as "lstm"), "E_FORMAT", [
      "layer 1 (rnn): kind",
    ]],
    ["field of another kind", (s) => (s.layers[0].epsilon = 1e-3), "E_FORMAT", [
      "layer 0 (dense): epsilon: expected nothing (it does not apply to dense)",
    ]],
    [
      "unknown field",
      (s) => ((s.layers[0] as unknown as Record<string, unknown>).bias_ = 1),
      "E_FORMAT",
      ["bias_: expected no such field"],
    ],
    ["width beyond limits", (s) => (s.layers[4].outputSize = 70000), "E_LIMIT", [
      "outputSize: expected an integer in 1..65536, got 70000",
    ]],
    ["kernel beyond limits", (s) => (s.layers[2].kernelSize = 5000), "E_LIMIT", [
      "kernelSize",
      "1..4096",
    ]],
    ["dilation beyond limits", (s) => (s.layers[2].dilation = 4097), "E_LIMIT", [
      "dilation",
      "1..4096",
    ]],
    ["heads beyond limits", (s) => (s.layers[3].heads = 300), "E_LIMIT", ["heads", "1..256"]],
    ["heads not dividing width", (s) => (s.layers[3].heads = 3), "E_SHAPE", [
      "heads: expected a divisor of the width 2",
    ]],
    ["context beyond limits", (s) => (s.layers[3].context = 9000), "E_LIMIT", [
      "context",
      "1..8192",
    ]],
    ["ffDim missing", (s) => delete s.layers[3].ffDim, "E_FORMAT", ["ffDim", "got nothing"]],
    ["groups not dividing", (s) => (s.layers[2].groups = 2), "E_SHAPE", ["groups", "a divisor"]],
    ["non-integer width", (s) => (s.layers[0].outputSize = 2.5), "E_FORMAT", [
      "outputSize",
      "got 2.5",
    ]],
    ["same width kinds", (s) => (s.layers[1].outputSize = 4), "E_SHAPE", [
      "layer 1 (batchnorm): outputSize: expected 3",
    ]],
    ["variance below -epsilon", (s) => (s.layers[1].tensors.var[1] = -0.002), "E_FORMAT", [
      "layer 1 (batchnorm): tensor var[1]: expected var + epsilon > 0",
    ]],
    ["zero epsilon", (s) => (s.layers[1].epsilon = 0), "E_FORMAT", [
      "epsilon: expected a positive number",
    ]],
    ["non-boolean bias", (s) => (s.layers[0].bias = 1 as unknown as boolean), "E_FORMAT", [
      "bias: expected true or false",
    ]],
    ["maxBatch beyond limits", (s) => (s.maxBatch = 5000), "E_LIMIT", [
      "hand: maxBatch: expected an integer in 1..4096",
    ]],
    ["no layers", (s) => (s.layers = []), "E_LIMIT", ["layers: expected 1..1024 layers, got 0"]],
    ["non-string meta", (s) => (s.meta = { a: 1 as unknown as string }), "E_FORMAT", [
      "meta.a: expected a string",
    ]],
  ];
  for (const [name, edit, code, parts] of cases) {
    test(`catches ${name}`, () => {
      const spec = handSpec();
      edit(spec);
      throwsCadenzaWith(() => validateSpec(spec, "hand"), code, ...parts);
    });
  }

  test("a negative variance above -epsilon is valid (conv.json has one)", () => {
    const spec = handSpec();
    spec.layers[1].tensors.var[0] = -0.0009;
    expect(() => validateSpec(spec, "hand")).not.toThrow();
  });

  test("prelu accepts one shared slope or one per feature, nothing else", () => {
    const prelu = (alpha: Float32Array): ModelSpec => ({
      inputSize: 3,
      layers: [{ kind: "prelu", inputSize: 3, outputSize: 3, tensors: { alpha } } as LayerSpec],
    });
    expect(() => validateSpec(prelu(seq(1)), "p")).not.toThrow();
    expect(() => validateSpec(prelu(seq(3)), "p")).not.toThrow();
    throwsCadenzaWith(
      () => validateSpec(prelu(seq(2)), "p"),
      "E_SHAPE",
      "tensor alpha",
      "3 elements ([3] or 1)",
    );
  });

  test("layer count is limited to 1024", () => {
    const layer: LayerSpec = {
      kind: "activation",
      inputSize: 1,
      outputSize: 1,
      activation: "tanh",
      tensors: {},
    };
    const spec: ModelSpec = { inputSize: 1, layers: new Array(1025).fill(layer) };
    throwsCadenzaWith(() => validateSpec(spec, "deep"), "E_LIMIT", "layers", "got 1025");
    spec.layers.pop();
    expect(() => validateSpec(spec, "deep")).not.toThrow();
  });
});
