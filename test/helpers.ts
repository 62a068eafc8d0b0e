/**
 * Shared by the test suites (Bun and Deno): a seeded PRNG, a random spec generator for every
 * layer kind, an independent model-image writer (from docs/DESIGN.md, "Model image v1"), CSV
 * reading and the paths to the conformance data in ../shared/conformance.
 */

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Activation, LayerKind, LayerSpec, ModelSpec } from "../src/model/spec.ts";
import { envVar } from "../src/native/io.ts";

/** ../shared/conformance/rtneural relative to the repository root. */
export const RTNEURAL_DIR = fileURLToPath(
  new URL("../../shared/conformance/rtneural/", import.meta.url),
);

export const rtneuralModel = (name: string) => `${RTNEURAL_DIR}models/${name}`;
export const rtneuralData = (name: string) => `${RTNEURAL_DIR}test_data/${name}`;

/** A CSV of numbers: one row per line. */
export function readCsv(path: string): number[][] {
  const text = readFileSync(path, "utf8").trim();
  return text.split(/\r?\n/).map((line, i) => {
    const row = line.split(",").map(Number);
    if (row.some(Number.isNaN)) throw new Error(`${path}:${i + 1}: not a number row`);
    return row;
  });
}

/** An integer from the environment, else the default (used for seeds and iteration counts). */
export function envInt(name: string, fallback: number): number {
  const text = envVar(name);
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value)) throw new Error(`${name}=${text} is not an integer`);
  return value;
}

/** sfc32, a small PRNG with a 128-bit state; seeded through splitmix32 so any u32 seed works. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    let s = seed >>> 0;
    const mix = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  floats(len: number, lo: number, hi: number): Float32Array {
    const out = new Float32Array(len);
    for (let i = 0; i < len; i++) out[i] = this.uniform(lo, hi);
    return out;
  }
}

export const ALL_KINDS: readonly LayerKind[] = [
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
];

export const ALL_ACTIVATIONS: readonly Activation[] = [
  "linear",
  "tanh",
  "sigmoid",
  "relu",
  "elu",
  "gelu",
  "softmax",
];

/** The odd widths every kind is tested at (1 and sizes off every SIMD width). */
export const ODD_SIZES: readonly number[] = [1, 3, 17, 33];

/** Kinds whose output width equals their input width. */
const SAME_WIDTH: ReadonlySet<LayerKind> = new Set([
  "batchnorm",
  "layernorm",
  "prelu",
  "activation",
  "attention",
  "transformer",
  "skip",
]);

export function divisors(n: number): number[] {
  const out: number[] = [];
  for (let i = 1; i <= n; i++) if (n % i === 0) out.push(i);
  return out;
}

/** Choices a test may force; anything left out is drawn from the PRNG. */
export interface LayerChoice {
  outputSize?: number;
  activation?: Activation;
  bias?: boolean;
  affine?: boolean;
  kernelSize?: number;
  dilation?: number;
  groups?: number;
  heads?: number;
  context?: number;
  ffDim?: number;
  /** prelu: one alpha shared by every channel. */
  sharedAlpha?: boolean;
}

/** Weights uniform in +-gain/sqrt(fan_in): outputs stay of order 1 through a stack. */
function weights(rng: Rng, len: number, fan_in: number, gain = 1.5): Float32Array {
  const s = gain / Math.sqrt(Math.max(1, fan_in));
  return rng.floats(len, -s, s);
}

function denseTensors(rng: Rng, n_in: number, n_out: number, bias: boolean) {
  const t: Record<string, Float32Array> = { W: weights(rng, n_out * n_in, n_in) };
  if (bias) t.b = rng.floats(n_out, -0.5, 0.5);
  return t;
}

function attentionTensors(rng: Rng, d: number): Record<string, Float32Array> {
  // Larger q and k weights make the attention scores spread, so softmax is not near uniform.
  return {
    Wq: weights(rng, d * d, d, 3),
    bq: rng.floats(d, -0.5, 0.5),
    Wk: weights(rng, d * d, d, 3),
    bk: rng.floats(d, -0.5, 0.5),
    Wv: weights(rng, d * d, d),
    bv: rng.floats(d, -0.5, 0.5),
    Wo: weights(rng, d * d, d),
    bo: rng.floats(d, -0.5, 0.5),
  };
}

const gains = (rng: Rng, n: number) => rng.floats(n, 0.5, 1.5);
const shifts = (rng: Rng, n: number) => rng.floats(n, -0.5, 0.5);

function convLayer(rng: Rng, n_in: number, n_out: number, c: LayerChoice): LayerSpec {
  const k = c.kernelSize ?? rng.pick([1, 2, 3, 5]);
  const dilation = c.dilation ?? rng.pick([1, 2, 3]);
  const common = divisors(n_in).filter((g) => n_out % g === 0);
  const groups = c.groups ?? rng.pick(common);
  const per_group = n_in / groups;
  return {
    kind: "conv1d",
    inputSize: n_in,
    outputSize: n_out,
    activation: c.activation ?? "tanh",
    kernelSize: k,
    dilation,
    groups,
    tensors: { W: weights(rng, n_out * per_group * k, per_group * k), b: shifts(rng, n_out) },
  };
}

function transformerLayer(rng: Rng, d: number, c: LayerChoice): LayerSpec {
  const ff = c.ffDim ?? rng.pick(ODD_SIZES);
  return {
    kind: "transformer",
    inputSize: d,
    outputSize: d,
    activation: c.activation ?? "gelu",
    heads: c.heads ?? rng.pick(divisors(d)),
    context: c.context ?? rng.int(1, 6),
    ffDim: ff,
    epsilon: rng.pick([1e-5, 1e-3]),
    tensors: {
      ln1_g: gains(rng, d),
      ln1_b: shifts(rng, d),
      ...attentionTensors(rng, d),
      ln2_g: gains(rng, d),
      ln2_b: shifts(rng, d),
      W1: weights(rng, ff * d, d),
      b1: shifts(rng, ff),
      W2: weights(rng, d * ff, ff),
      b2: shifts(rng, d),
    },
  };
}

/** A random layer of `kind` reading `n_in` values, with valid shapes and finite weights. */
export function randomLayer(
  rng: Rng,
  kind: LayerKind,
  n_in: number,
  c: LayerChoice = {},
): LayerSpec {
  const n_out = SAME_WIDTH.has(kind) ? n_in : c.outputSize ?? rng.pick(ODD_SIZES);
  const act = c.activation;
  switch (kind) {
    case "dense": {
      const bias = c.bias ?? rng.next() < 0.8;
      const activation = act ?? rng.pick(ALL_ACTIVATIONS);
      return {
        kind,
        inputSize: n_in,
        outputSize: n_out,
        activation,
        bias,
        tensors: denseTensors(rng, n_in, n_out, bias),
      };
    }
    case "lstm":
      return {
        kind,
        inputSize: n_in,
        outputSize: n_out,
        tensors: {
          Wx: weights(rng, 4 * n_out * n_in, n_in),
          Wh: weights(rng, 4 * n_out * n_out, n_out),
          b: shifts(rng, 4 * n_out),
        },
      };
    case "gru":
      return {
        kind,
        inputSize: n_in,
        outputSize: n_out,
        tensors: {
          Wx: weights(rng, 3 * n_out * n_in, n_in),
          Wh: weights(rng, 3 * n_out * n_out, n_out),
          bx: shifts(rng, 3 * n_out),
          bh: shifts(rng, 3 * n_out),
        },
      };
    case "conv1d":
      return convLayer(rng, n_in, n_out, c);
    case "batchnorm": {
      const affine = c.affine ?? rng.next() < 0.7;
      const stats = { mean: shifts(rng, n_in), var: rng.floats(n_in, 0.2, 2) };
      const tensors = affine
        ? { gamma: gains(rng, n_in), beta: shifts(rng, n_in), ...stats }
        : stats;
      return {
        kind,
        inputSize: n_in,
        outputSize: n_in,
        affine,
        epsilon: rng.pick([1e-5, 1e-3, 0.5]),
        activation: act ?? rng.pick(ALL_ACTIVATIONS),
        tensors,
      };
    }
    case "layernorm":
      return {
        kind,
        inputSize: n_in,
        outputSize: n_in,
        epsilon: rng.pick([1e-5, 1e-3]),
        tensors: { gamma: gains(rng, n_in), beta: shifts(rng, n_in) },
      };
    case "prelu": {
      const shared = c.sharedAlpha ?? rng.next() < 0.3;
      return {
        kind,
        inputSize: n_in,
        outputSize: n_in,
        tensors: { alpha: rng.floats(shared ? 1 : n_in, -0.5, 0.5) },
      };
    }
    case "activation":
      return {
        kind,
        inputSize: n_in,
        outputSize: n_in,
        activation: act ?? rng.pick(ALL_ACTIVATIONS),
        tensors: {},
      };
    case "attention":
      return {
        kind,
        inputSize: n_in,
        outputSize: n_in,
        heads: c.heads ?? rng.pick(divisors(n_in)),
        context: c.context ?? rng.int(1, 6),
        tensors: attentionTensors(rng, n_in),
      };
    case "transformer":
      return transformerLayer(rng, n_in, c);
    case "skip":
      return { kind, inputSize: n_in, outputSize: n_in, tensors: {} };
  }
}

/** A model stacking `kinds` in order, each layer reading the previous one's output. */
export function randomModel(
  rng: Rng,
  kinds: readonly LayerKind[],
  inputSize: number,
  choices: readonly LayerChoice[] = [],
  maxBatch = 8,
): ModelSpec {
  const layers: LayerSpec[] = [];
  let width = inputSize;
  kinds.forEach((kind, i) => {
    const layer = randomLayer(rng, kind, width, choices[i] ?? {});
    layers.push(layer);
    width = layer.outputSize;
  });
  return { inputSize, layers, maxBatch };
}

/** The model's output width (the last layer's). */
export const outputSizeOf = (spec: ModelSpec) => spec.layers[spec.layers.length - 1].outputSize;

// ---- Model image v1, written independently from docs/DESIGN.md ----

export const IMAGE_MAGIC = 0x4d495a43;
export const HEADER_WORDS = 8;
export const RECORD_WORDS = 16;

const KIND_ID: Record<LayerKind, number> = {
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

const ACT_ID: Record<Activation, number> = {
  linear: 0,
  tanh: 1,
  sigmoid: 2,
  relu: 3,
  elu: 4,
  gelu: 5,
  softmax: 6,
  logsoftmax: 7,
};

/** Tensor names in image order, per DESIGN.md's table. */
export function tensorOrder(l: LayerSpec): string[] {
  switch (l.kind) {
    case "dense":
      return l.bias === false ? ["W"] : ["W", "b"];
    case "lstm":
      return ["Wx", "Wh", "b"];
    case "gru":
      return ["Wx", "Wh", "bx", "bh"];
    case "conv1d":
      return ["W", "b"];
    case "batchnorm":
      return l.affine === false ? ["mean", "var"] : ["gamma", "beta", "mean", "var"];
    case "layernorm":
      return ["gamma", "beta"];
    case "prelu":
      return ["alpha"];
    case "activation":
    case "skip":
      return [];
    case "attention":
      return ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"];
    case "transformer":
      return [
        "ln1_g",
        "ln1_b",
        "Wq",
        "bq",
        "Wk",
        "bk",
        "Wv",
        "bv",
        "Wo",
        "bo",
        "ln2_g",
        "ln2_b",
        "W1",
        "b1",
        "W2",
        "b2",
      ];
  }
}

/** p[0..8] and f[0..2] of a layer record. */
function recordParams(l: LayerSpec): { p: number[]; f: number[] } {
  const p = [0, 0, 0, 0, 0, 0, 0, 0];
  const f = [0, 0];
  switch (l.kind) {
    case "dense":
      p[0] = l.bias === false ? 0 : 1;
      break;
    case "conv1d":
      [p[0], p[1], p[2]] = [l.kernelSize ?? 1, l.dilation ?? 1, l.groups ?? 1];
      break;
    case "batchnorm":
      p[0] = l.affine === false ? 0 : 1;
      f[0] = l.epsilon ?? 1e-3;
      break;
    case "layernorm":
      f[0] = l.epsilon ?? 1e-5;
      break;
    case "attention":
      [p[0], p[1]] = [l.heads ?? 1, l.context ?? 1];
      break;
    case "transformer":
      [p[0], p[1], p[2]] = [l.heads ?? 1, l.context ?? 1, l.ffDim ?? 1];
      f[0] = l.epsilon ?? 1e-5;
      break;
  }
  return { p, f };
}

/** The act word: only kinds with an activation store one; the transformer's defaults to gelu. */
function recordAct(l: LayerSpec): number {
  const fallback: Activation = l.kind === "transformer" ? "gelu" : "linear";
  const uses = ["dense", "conv1d", "batchnorm", "activation", "transformer"].includes(l.kind);
  return uses ? ACT_ID[l.activation ?? fallback] : 0;
}

function imageWords(spec: ModelSpec): number {
  let words = HEADER_WORDS;
  for (const l of spec.layers) {
    words += RECORD_WORDS;
    for (const name of tensorOrder(l)) words += 1 + l.tensors[name].length;
  }
  return words;
}

/** Packs a spec into a model image without validating it (so tests can build bad images). */
export function writeImage(spec: ModelSpec): Uint8Array {
  const bytes = new Uint8Array(imageWords(spec) * 4);
  const view = new DataView(bytes.buffer);
  let at = 0;
  const u32 = (v: number) => {
    view.setUint32(at, v >>> 0, true);
    at += 4;
  };
  const f32 = (v: number) => {
    view.setFloat32(at, v, true);
    at += 4;
  };
  const header = [IMAGE_MAGIC, 1, HEADER_WORDS, spec.layers.length, spec.inputSize];
  header.push(outputSizeOf(spec), spec.maxBatch ?? 64, bytes.length);
  header.forEach(u32);
  for (const l of spec.layers) {
    const { p, f } = recordParams(l);
    const order = tensorOrder(l);
    [KIND_ID[l.kind], recordAct(l), l.inputSize, l.outputSize].forEach(u32);
    p.forEach(u32);
    f.forEach(f32);
    u32(order.length);
    u32(0);
    for (const name of order) {
      u32(l.tensors[name].length);
      l.tensors[name].forEach(f32);
    }
  }
  return bytes;
}

/** Byte offset of layer `index`'s record in an image written by writeImage. */
export function recordOffset(spec: ModelSpec, index: number): number {
  let words = HEADER_WORDS;
  for (const l of spec.layers.slice(0, index)) {
    words += RECORD_WORDS;
    for (const name of tensorOrder(l)) words += 1 + l.tensors[name].length;
  }
  return words * 4;
}

// ---- comparing float32 results with the float64 reference ----

export interface Deviation {
  /** max |got - want| / scale over all values. */
  worst: number;
  /** Index of the worst value. */
  index: number;
  got: number;
  want: number;
}

/** Normalised error |got - want| / max(1, |want|max): small and large outputs judged alike. */
export function deviation(got: ArrayLike<number>, want: ArrayLike<number>): Deviation {
  if (got.length !== want.length) throw new Error(`length ${got.length} != ${want.length}`);
  let scale = 1;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  const d: Deviation = { worst: 0, index: -1, got: NaN, want: NaN };
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - want[i]) / scale;
    // NaN in either side must fail, so it counts as an infinite error.
    const err = Number.isNaN(e) ? Infinity : e;
    if (err > d.worst || d.index < 0) {
      Object.assign(d, { worst: err, index: i, got: got[i], want: want[i] });
    }
  }
  return d;
}

/** A one-line description of a spec, for failure messages. */
export function describe(spec: ModelSpec): string {
  const layer = (l: LayerSpec) => {
    const extras = [
      "activation",
      "heads",
      "context",
      "ffDim",
      "kernelSize",
      "dilation",
      "groups",
      "affine",
      "bias",
    ]
      .filter((k) => (l as unknown as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${k}=${(l as unknown as Record<string, unknown>)[k]}`);
    return `${l.kind}(${l.inputSize}->${l.outputSize}${
      extras.length ? " " + extras.join(" ") : ""
    })`;
  };
  return spec.layers.map(layer).join(" | ");
}
