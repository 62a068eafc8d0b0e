/**
 * Bad input of every class gives a CadenzaError with the right code and a message naming the
 * field: truncated and malformed files (RTNeural JSON, safetensors, PyTorch state_dict), wrong
 * shapes, unknown layer and activation names, NaN/Inf weights, absurd sizes, wrong input
 * lengths, use after dispose. Then the same classes as raw images straight to the native create
 * (no TypeScript validation in the way): a status and a message, never a crash.
 */

import { describe as group, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { CadenzaError } from "../src/errors.ts";
import { loadModel, modelFromSpec } from "../src/index.ts";
import { parseRtneural } from "../src/model/formats/rtneural.ts";
import { readSafetensors, writeSafetensors } from "../src/model/formats/safetensors.ts";
import { parseTorchStateDict } from "../src/model/formats/torch.ts";
import { packImage } from "../src/model/image.ts";
import type { LayerSpec, ModelSpec } from "../src/model/spec.ts";
import { type NativeApi, openNative } from "../src/native/index.ts";
import {
  ALL_KINDS,
  HEADER_WORDS,
  randomModel,
  recordOffset,
  Rng,
  rtneuralModel,
  writeImage,
} from "./helpers.ts";
import { rejectsCadenza, throwsCadenza } from "./cases/check.ts";

const rng = new Rng(0xbad);
const encode = (text: string) => new TextEncoder().encode(text);
const rtneuralText = (name: string) => readFileSync(rtneuralModel(name), "utf8");
const rtneuralJson = (name: string) => JSON.parse(rtneuralText(name));

/** A small valid spec of dense -> lstm -> dense (width 3). */
function smallSpec(): ModelSpec {
  return randomModel(rng, ["dense", "lstm", "dense"], 3, [{ outputSize: 3 }, { outputSize: 3 }, {
    outputSize: 2,
  }], 4);
}

/** A deep copy with tensors copied too, so a test can break one field. */
function cloneSpec(spec: ModelSpec): ModelSpec {
  const layers = spec.layers.map((l): LayerSpec => ({
    ...l,
    tensors: Object.fromEntries(Object.entries(l.tensors).map(([k, v]) => [k, v.slice()])),
  }));
  return { ...spec, layers };
}

group("RTNeural JSON", () => {
  test("truncated file", async () => {
    const text = rtneuralText("lstm.json");
    for (const cut of [1, 100, text.length >> 1, text.length - 2]) {
      await rejectsCadenza(
        () => loadModel(encode(text.slice(0, cut)), { format: "rtneural" }),
        "E_FORMAT",
        /JSON/i,
        `cut at ${cut}`,
      );
    }
  });

  test("not a model: missing layers, layers not a list", () => {
    throwsCadenza(
      () => parseRtneural({ in_shape: [null, 1] }, "m.json"),
      "E_FORMAT",
      /m\.json.*layers/,
      "no layers",
    );
    throwsCadenza(
      () => parseRtneural({ in_shape: [null, 1], layers: {} }, "m.json"),
      "E_FORMAT",
      /layers/,
      "layers object",
    );
    throwsCadenza(() => parseRtneural([], "m.json"), "E_FORMAT", /m\.json/, "array");
  });

  test("unknown layer type and activation name the layer and field", () => {
    const json = rtneuralJson("dense.json");
    json.layers[2].type = "swishlayer";
    throwsCadenza(
      () => parseRtneural(json, "m.json"),
      "E_FORMAT",
      /layers\[2\].*type.*swishlayer/,
      "type",
    );
    const json2 = rtneuralJson("dense.json");
    json2.layers[1].activation = "swish";
    throwsCadenza(
      () => parseRtneural(json2, "m.json"),
      "E_FORMAT",
      /layers\[1\].*activation.*swish/,
      "activation",
    );
  });

  test("wrong weight shapes name the weights", () => {
    const json = rtneuralJson("lstm.json");
    json.layers[1].weights[1].pop();
    throwsCadenza(
      () => parseRtneural(json, "m.json"),
      "E_SHAPE",
      /layers\[1\].*weights\[1\]/,
      "short U",
    );
    const json2 = rtneuralJson("gru.json");
    json2.layers[1].weights.pop();
    throwsCadenza(
      () => parseRtneural(json2, "m.json"),
      "E_FORMAT",
      /layers\[1\].*weights/,
      "missing bias",
    );
    const json3 = rtneuralJson("dense.json");
    json3.layers[0].shape = [null, 9];
    expect(() => parseRtneural(json3, "m.json")).toThrow(CadenzaError);
  });

  test("NaN, Inf and float32-overflowing weights name the element", () => {
    for (const bad of [NaN, Infinity, -Infinity, 1e39]) {
      const json = rtneuralJson("dense.json");
      json.layers[2].weights[0][3][4] = bad;
      throwsCadenza(
        () => parseRtneural(json, "m.json"),
        "E_FORMAT",
        /layer 2.*finite/,
        `weight ${bad}`,
      );
    }
  });

  test("absurd widths are refused before any allocation", () => {
    const json = rtneuralJson("dense.json");
    json.layers[0].shape = [null, 1e9];
    // The weights cannot match such a width, so the shape check refuses it before reading.
    const err = throwsCadenzaAny(
      () => parseRtneural(json, "m.json"),
      ["E_LIMIT", "E_SHAPE"],
      "width 1e9",
    );
    expect(err.message).toMatch(/layers\[0\]/);
  });
});

/** Like throwsCadenza but any of `codes` will do (for a width that breaks two rules at once). */
function throwsCadenzaAny(fn: () => unknown, codes: string[], what: string): CadenzaError {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof CadenzaError) || !codes.includes(err.code)) {
      throw new Error(`${what}: got ${err}`);
    }
    return err;
  }
  throw new Error(`${what}: nothing thrown`);
}

group("safetensors", () => {
  const spec = smallSpec();
  const file = writeSafetensors(spec);
  const headerLen = Number(new DataView(file.buffer).getBigUint64(0, true));
  /** Rewrites the JSON header (padded to keep the data offset) with `edit` applied. */
  const withHeader = (edit: (h: Record<string, any>) => void): Uint8Array => {
    const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLen)));
    edit(header);
    const json = encode(JSON.stringify(header));
    const padded = Math.ceil(json.length / 8) * 8;
    const out = new Uint8Array(8 + padded + file.length - 8 - headerLen);
    new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
    out.fill(0x20, 8, 8 + padded);
    out.set(json, 8);
    out.set(file.subarray(8 + headerLen), 8 + padded);
    return out;
  };
  const arch = (h: Record<string, any>) => JSON.parse(h.__metadata__.architecture);
  const setArch = (
    h: Record<string, any>,
    a: unknown,
  ) => (h.__metadata__.architecture = JSON.stringify(a));

  test("round trip is valid", () => {
    expect(readSafetensors(file, "m.safetensors").layers.length).toBe(3);
  });

  test("truncated in the length, the header and the data", () => {
    throwsCadenza(
      () => readSafetensors(file.slice(0, 5), "m.st"),
      "E_FORMAT",
      /m\.st.*8 bytes/,
      "length",
    );
    throwsCadenza(
      () => readSafetensors(file.slice(0, 8 + (headerLen >> 1)), "m.st"),
      "E_FORMAT",
      /header length/,
      "header",
    );
    throwsCadenza(
      () => readSafetensors(file.slice(0, file.length - 4), "m.st"),
      "E_FORMAT",
      /data/,
      "data",
    );
  });

  test("absurd header length", () => {
    const bad = file.slice();
    new DataView(bad.buffer).setBigUint64(0, 1n << 60n, true);
    throwsCadenza(() => readSafetensors(bad, "m.st"), "E_FORMAT", /header length/, "2^60");
  });

  test("bad JSON header", () => {
    const bad = file.slice();
    bad[9] = 0x7d;
    throwsCadenza(() => readSafetensors(bad, "m.st"), "E_FORMAT", /JSON/, "json");
  });

  test("tensor dtype, offsets and shape name the tensor", () => {
    const f16 = withHeader((h) => (h["layers.0.W"].dtype = "F16"));
    throwsCadenza(() => readSafetensors(f16, "m.st"), "E_FORMAT", /layers\.0\.W.*dtype/, "dtype");
    const off = withHeader((h) => (h["layers.1.b"].data_offsets = [0, 1e12]));
    throwsCadenza(
      () => readSafetensors(off, "m.st"),
      "E_FORMAT",
      /layers\.1\.b.*data_offsets/,
      "offsets",
    );
    const shape = withHeader((h) => {
      const [a, b] = h["layers.2.W"].shape;
      h["layers.2.W"].shape = [b, a];
    });
    throwsCadenza(() => readSafetensors(shape, "m.st"), "E_SHAPE", /layers\.2\.W.*shape/, "shape");
    const missing = withHeader((h) => delete h["layers.2.b"]);
    expect(() => readSafetensors(missing, "m.st")).toThrow(CadenzaError);
  });

  test("architecture: unknown kind, unknown activation, absurd width", () => {
    const kind = withHeader((h) => {
      const a = arch(h);
      a.layers[1].kind = "mamba";
      setArch(h, a);
    });
    throwsCadenza(() => readSafetensors(kind, "m.st"), "E_FORMAT", /layer 1.*kind.*mamba/, "kind");
    const act = withHeader((h) => {
      const a = arch(h);
      a.layers[0].activation = "swish";
      setArch(h, a);
    });
    throwsCadenza(
      () => readSafetensors(act, "m.st"),
      "E_FORMAT",
      /layer 0.*activation.*swish/,
      "activation",
    );
    const wide = withHeader((h) => {
      const a = arch(h);
      a.layers[2].outputSize = 1e9;
      setArch(h, a);
    });
    throwsCadenza(() => readSafetensors(wide, "m.st"), "E_LIMIT", /layer 2.*outputSize/, "width");
  });

  test("NaN and Inf data name the tensor element", () => {
    for (const bad of [NaN, Infinity]) {
      const copy = file.slice();
      new DataView(copy.buffer).setFloat32(8 + headerLen + 8, bad, true);
      throwsCadenza(
        () => readSafetensors(copy, "m.st"),
        "E_FORMAT",
        /tensor W\[2\].*finite/,
        `value ${bad}`,
      );
    }
  });
});

group("PyTorch state_dict", () => {
  const layers = [{ kind: "lstm" as const, name: "lstm" }, {
    kind: "lstm" as const,
    name: "lstm2",
    numLayers: 3,
  }, { kind: "linear" as const, name: "dense" }];
  const dict = () => rtneuralJson("lstm_torch.json");

  test("missing tensor names the key", () => {
    const d = dict();
    delete d["lstm2.weight_hh_l1"];
    throwsCadenza(
      () => parseTorchStateDict(d, layers, "t.json"),
      "E_FORMAT",
      /lstm2\.weight_hh_l1/,
      "missing",
    );
  });

  test("extra tensor names the key", () => {
    const d = dict();
    d["lstm3.weight_ih_l0"] = [[1]];
    throwsCadenza(
      () => parseTorchStateDict(d, layers, "t.json"),
      "E_FORMAT",
      /lstm3\.weight_ih_l0/,
      "extra",
    );
  });

  test("wrong shape names the key", () => {
    const d = dict();
    d["dense.weight"] = [[1, 2, 3]];
    expect(() => parseTorchStateDict(d, layers, "t.json")).toThrow(/dense\.weight/);
  });

  test("NaN weight names the key", () => {
    const d = dict();
    d["lstm.bias_hh_l0"][5] = NaN;
    expect(() => parseTorchStateDict(d, layers, "t.json")).toThrow(/finite/);
  });

  test("unknown declared kind", () => {
    expect(() => parseTorchStateDict(dict(), [{ kind: "mamba" as "lstm", name: "lstm" }], "t.json"))
      .toThrow(CadenzaError);
  });

  test("truncated file through loadModel", async () => {
    const text = rtneuralText("lstm_torch.json");
    await rejectsCadenza(
      () => loadModel(encode(text.slice(0, 999)), { format: "torch", layers }),
      "E_FORMAT",
      /JSON/i,
      "cut",
    );
  });
});

group("spec validation (modelFromSpec)", () => {
  const base = smallSpec();

  test("wrong tensor length names layer and tensor", async () => {
    const spec = cloneSpec(base);
    spec.layers[1].tensors.Wh = spec.layers[1].tensors.Wh.slice(1);
    await rejectsCadenza(() => modelFromSpec(spec), "E_SHAPE", /layer 1.*tensor Wh/, "Wh");
  });

  test("unknown kind and activation", async () => {
    const spec = cloneSpec(base);
    (spec.layers[0] as { kind: string }).kind = "mamba";
    await rejectsCadenza(() => modelFromSpec(spec), "E_FORMAT", /layer 0.*kind/, "kind");
    const spec2 = cloneSpec(base);
    (spec2.layers[2] as { activation: string }).activation = "swish";
    await rejectsCadenza(
      () => modelFromSpec(spec2),
      "E_FORMAT",
      /layer 2.*activation/,
      "activation",
    );
  });

  test("NaN and Inf weights name the element", async () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const spec = cloneSpec(base);
      spec.layers[2].tensors.b[1] = bad;
      await rejectsCadenza(
        () => modelFromSpec(spec),
        "E_FORMAT",
        /layer 2.*tensor b\[1\].*finite/,
        `b ${bad}`,
      );
    }
  });

  test("absurd sizes: widths, kernel, heads, context, maxBatch", async () => {
    const wide = cloneSpec(base);
    wide.layers[2].outputSize = 1e9;
    await rejectsCadenza(() => modelFromSpec(wide), "E_LIMIT", /layer 2.*outputSize/, "width");
    const conv = randomModel(rng, ["conv1d"], 3, [{ kernelSize: 3 }]);
    conv.layers[0].kernelSize = 1e6;
    await rejectsCadenza(() => modelFromSpec(conv), "E_LIMIT", /kernelSize/, "kernel");
    const att = randomModel(rng, ["attention"], 4, [{ heads: 2, context: 3 }]);
    att.layers[0].context = 1e6;
    await rejectsCadenza(() => modelFromSpec(att), "E_LIMIT", /context/, "context");
    await rejectsCadenza(
      () => modelFromSpec(base, { maxBatch: 1e6 }),
      "E_LIMIT",
      /maxBatch/,
      "maxBatch",
    );
  });

  test("widths that do not chain", async () => {
    const spec = cloneSpec(base);
    spec.inputSize = 4;
    await rejectsCadenza(() => modelFromSpec(spec), "E_SHAPE", /layer 0.*inputSize/, "chain");
  });

  test("state beyond the arena limit is refused natively with E_LIMIT", async () => {
    // Valid by every per-field limit, but the conv history alone needs 15 * 4096 * 16384 floats.
    const n = 16384;
    const layer: LayerSpec = {
      kind: "conv1d",
      inputSize: n,
      outputSize: n,
      kernelSize: 16,
      dilation: 4096,
      groups: n,
      tensors: { W: new Float32Array(n * 16), b: new Float32Array(n) },
    };
    await rejectsCadenza(
      () => modelFromSpec({ inputSize: n, layers: [layer] }),
      "E_LIMIT",
      /memory.*limit/,
      "arena",
    );
  });
});

group("Model calls", () => {
  test("wrong input lengths and batch sizes", async () => {
    const model = await modelFromSpec(smallSpec());
    try {
      throwsCadenza(
        () => model.forward(new Float32Array(2)),
        "E_SHAPE",
        /forward input.*3/,
        "short",
      );
      throwsCadenza(() => model.forward(new Float32Array(4)), "E_SHAPE", /forward input/, "long");
      throwsCadenza(
        () => model.forward([1, 2, 3] as unknown as Float32Array),
        "E_SHAPE",
        /Float32Array/,
        "array",
      );
      throwsCadenza(
        () => model.forwardBatch(new Float32Array(6), 3),
        "E_SHAPE",
        /forwardBatch input.*9/,
        "batch rows",
      );
      throwsCadenza(
        () => model.forwardBatch(new Float32Array(15), 5),
        "E_ARGUMENT",
        /batch.*1\.\.4/,
        "over max",
      );
      throwsCadenza(
        () => model.forwardBatch(new Float32Array(0), 0),
        "E_ARGUMENT",
        /batch/,
        "zero",
      );
    } finally {
      model.dispose();
    }
  });

  test("use after dispose", async () => {
    const model = await modelFromSpec(smallSpec());
    model.dispose();
    model.dispose();
    throwsCadenza(
      () => model.forward(new Float32Array(3)),
      "E_DISPOSED",
      /forward.*dispose/,
      "forward",
    );
    throwsCadenza(
      () => model.forwardBatch(new Float32Array(3), 1),
      "E_DISPOSED",
      /forwardBatch/,
      "batch",
    );
    throwsCadenza(() => model.reset(), "E_DISPOSED", /reset/, "reset");
    throwsCadenza(() => model.nativeInfo(), "E_DISPOSED", /nativeInfo/, "info");
  });

  test("missing file", async () => {
    await rejectsCadenza(
      () => loadModel("/nonexistent/model.safetensors"),
      "E_IO",
      /nonexistent/,
      "path",
    );
  });
});

// ---- raw images to the native create ----

/** Sends `image` to the native create and checks the status maps to `code` and the message. */
function nativeRefuses(
  api: NativeApi,
  image: Uint8Array,
  code: string,
  pattern: RegExp,
  what: string,
) {
  throwsCadenza(() => api.destroy(api.create(image)), code as "E_FORMAT", pattern, what);
}

function setWord(image: Uint8Array, word: number, value: number): Uint8Array {
  const copy = image.slice();
  new DataView(copy.buffer).setUint32(word * 4, value >>> 0, true);
  return copy;
}

group("native create without TypeScript validation", () => {
  const spec = randomModel(rng, ["conv1d", "attention", "dense"], 4, [
    { outputSize: 4, kernelSize: 3 },
    { heads: 2, context: 3 },
    { outputSize: 2 },
  ], 4);
  const image = writeImage(spec);
  const rec1 = recordOffset(spec, 1) / 4;
  const api = () => openNative("safe");

  test("the independent image writer agrees with packImage for every kind", () => {
    for (const kind of ALL_KINDS) {
      const s = randomModel(rng, [kind], 5, [], 3);
      expect(writeImage(s)).toEqual(packImage(s));
    }
    expect(writeImage(spec)).toEqual(packImage(spec));
  });

  test("the valid image loads", async () => {
    const a = await api();
    a.destroy(a.create(image));
  });

  test("truncated anywhere", async () => {
    const a = await api();
    nativeRefuses(a, new Uint8Array(0), "E_FORMAT", /header|0 bytes/, "empty");
    nativeRefuses(a, image.slice(0, 20), "E_FORMAT", /header/, "in header");
    for (const cut of [40, rec1 * 4 + 8, image.length - 4]) {
      const cutImage = setWord(image.slice(0, cut), 7, cut);
      nativeRefuses(a, cutImage, "E_FORMAT", /image ends inside (layer|tensor)/, `cut at ${cut}`);
    }
    nativeRefuses(a, image.slice(0, image.length - 4), "E_FORMAT", /image_bytes/, "length word");
  });

  test("header fields", async () => {
    const a = await api();
    nativeRefuses(a, setWord(image, 0, 0x12345678), "E_FORMAT", /magic/, "magic");
    nativeRefuses(a, setWord(image, 1, 2), "E_FORMAT", /version/, "version");
    nativeRefuses(a, setWord(image, 3, 0), "E_FORMAT", /layer_count/, "no layers");
    nativeRefuses(a, setWord(image, 3, 5000), "E_LIMIT", /layer_count/, "5000 layers");
    nativeRefuses(a, setWord(image, 4, 1e9), "E_LIMIT", /input_size/, "input 1e9");
    nativeRefuses(a, setWord(image, 5, 7), "E_FORMAT", /output_size/, "output");
    nativeRefuses(a, setWord(image, 6, 0), "E_FORMAT", /max_batch/, "batch 0");
    nativeRefuses(a, setWord(image, 6, 5000), "E_LIMIT", /max_batch/, "batch 5000");
  });

  test("unknown kind and activation", async () => {
    const a = await api();
    nativeRefuses(a, setWord(image, rec1, 99), "E_FORMAT", /layer 1.*kind/, "kind 99");
    nativeRefuses(a, setWord(image, HEADER_WORDS + 1, 42), "E_FORMAT", /layer 0.*act/, "act 42");
  });

  test("absurd sizes", async () => {
    const a = await api();
    nativeRefuses(a, setWord(image, HEADER_WORDS + 3, 1e9), "E_LIMIT", /layer 0.*out/, "out 1e9");
    nativeRefuses(a, setWord(image, HEADER_WORDS + 4, 5000), "E_LIMIT", /kernelSize/, "kernel");
    nativeRefuses(
      a,
      setWord(image, HEADER_WORDS + 5, 0xffffffff),
      "E_LIMIT",
      /dilation/,
      "dilation",
    );
    nativeRefuses(a, setWord(image, rec1 + 4, 300), "E_LIMIT", /heads/, "heads");
    nativeRefuses(a, setWord(image, rec1 + 5, 1e6), "E_LIMIT", /context/, "context");
    nativeRefuses(a, setWord(image, rec1 + 4, 3), "E_FORMAT", /layer 1/, "heads not dividing");
    nativeRefuses(a, setWord(image, rec1 + 5, 0), "E_FORMAT", /layer 1/, "context 0");
  });

  test("shapes: chaining, tensor count, tensor length", async () => {
    const a = await api();
    nativeRefuses(a, setWord(image, rec1 + 2, 5), "E_FORMAT", /layer 1.*in/, "chain");
    nativeRefuses(a, setWord(image, HEADER_WORDS + 14, 1), "E_FORMAT", /tensor_count/, "count");
    nativeRefuses(
      a,
      setWord(image, HEADER_WORDS + 16, 5),
      "E_FORMAT",
      /tensor 0 \(W\).*elements/,
      "length",
    );
    const longer = new Uint8Array(image.length + 4);
    longer.set(image);
    nativeRefuses(
      a,
      setWord(longer, 7, longer.length),
      "E_FORMAT",
      /after the last layer/,
      "trailing",
    );
  });

  test("NaN and Inf weights and epsilon", async () => {
    const a = await api();
    for (const bits of [0x7fc00000, 0x7f800000, 0xff800000, 0x7f800001]) {
      nativeRefuses(
        a,
        setWord(image, HEADER_WORDS + 17 + 2, bits),
        "E_FORMAT",
        /layer 0.*tensor 0 \(W\) element 2.*finite/,
        `bits ${bits}`,
      );
      nativeRefuses(
        a,
        setWord(image, HEADER_WORDS + 12, bits),
        "E_FORMAT",
        /f0.*finite/,
        `f0 ${bits}`,
      );
    }
  });

  test("weight_type word and bad calls after a good create", async () => {
    const a = await api();
    nativeRefuses(
      a,
      setWord(image, HEADER_WORDS + 15, 5),
      "E_FORMAT",
      /word 15 \(weight_type\) is 5, expected 0 \(f32\), 1 \(bf16\), 2 \(int8\), 3 \(sparse\) or 4 \(int8, stored quantised\)/,
      "weight_type",
    );
    nativeRefuses(
      a,
      setWord(image, HEADER_WORDS + 15, 3),
      "E_FORMAT",
      /word 15 \(weight_type\) is 3 \(sparse\), .*sparse weights are for dense layers only/,
      "weight_type 3 (sparse) on conv1d",
    );
    const handle = a.create(image);
    try {
      expect(a.forward(handle, new Float32Array(3), new Float32Array(2))).toBe(1);
      expect(a.lastError(handle)).toMatch(/in/);
      expect(a.forward(handle, new Float32Array(4), new Float32Array(1))).toBe(1);
      expect(a.forwardBatch(handle, new Float32Array(20), 5, new Float32Array(10))).not.toBe(0);
      expect(a.forwardBatch(handle, new Float32Array(0), 0, new Float32Array(0))).toBe(1);
      expect(a.forward(handle, new Float32Array(4), new Float32Array(2))).toBe(0);
    } finally {
      a.destroy(handle);
    }
  });
});
