/**
 * An independent float64 implementation of every canonical layer kind, written from the
 * semantics in docs/DESIGN.md ("Canonical layer specs") and nothing else. Tests run a ModelSpec
 * through it step by step, with state, and compare the native float32 library against it.
 * Plain loops on purpose: it must be easy to check by reading, not fast.
 */

import type { Activation, LayerSpec, ModelSpec } from "../src/model/spec.ts";

/** erf(x) to about 1e-15, by the series of positive terms e^{-x^2} sum 2^n x^{2n+1}/(2n+1)!! */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  // erfc(6) is about 2e-17, below half an ulp of 1.
  if (a >= 6) return Math.sign(x);
  let term = a;
  let sum = a;
  for (let n = 1; n < 200 && term > sum * 1e-17; n++) {
    term *= (2 * a * a) / (2 * n + 1);
    sum += term;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum;
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** One element-wise activation (softmax is not element-wise: see applyActivation). */
export function scalarActivation(act: Activation, x: number): number {
  switch (act) {
    case "linear":
      return x;
    case "tanh":
      return Math.tanh(x);
    case "sigmoid":
      return sigmoid(x);
    case "relu":
      return x > 0 ? x : 0;
    case "elu":
      return x > 0 ? x : Math.expm1(x);
    case "gelu":
      return gelu(x);
    case "softmax":
    case "logsoftmax":
      throw new Error(`${act} is applied over a whole vector`);
  }
}

/** Applies `act` in place; softmax and logsoftmax normalise over all of `y`. */
export function applyActivation(act: Activation, y: Float64Array): Float64Array {
  if (act === "logsoftmax") {
    let max = -Infinity;
    for (const v of y) max = Math.max(max, v);
    let sum = 0;
    for (const v of y) sum += Math.exp(v - max);
    const log_sum = Math.log(sum);
    for (let i = 0; i < y.length; i++) y[i] = y[i] - max - log_sum;
    return y;
  }
  if (act !== "softmax") {
    for (let i = 0; i < y.length; i++) y[i] = scalarActivation(act, y[i]);
    return y;
  }
  let max = -Infinity;
  for (const v of y) max = Math.max(max, v);
  let sum = 0;
  for (let i = 0; i < y.length; i++) {
    y[i] = Math.exp(y[i] - max);
    sum += y[i];
  }
  for (let i = 0; i < y.length; i++) y[i] /= sum;
  return y;
}

/** y[o] += sum_i W[row0 + o][i] * x[i] for o < rows; W is row-major with `cols` columns. */
function matVecAdd(
  w: Float32Array,
  row0: number,
  rows: number,
  cols: number,
  x: ArrayLike<number>,
  y: Float64Array,
): void {
  if (x.length !== cols) throw new Error(`matVec: x has ${x.length} values, expected ${cols}`);
  for (let o = 0; o < rows; o++) {
    let acc = 0;
    const base = (row0 + o) * cols;
    for (let i = 0; i < cols; i++) acc += w[base + i] * x[i];
    y[o] += acc;
  }
}

function affine(w: Float32Array, b: Float32Array | undefined, rows: number, x: ArrayLike<number>) {
  const y = new Float64Array(rows);
  if (b !== undefined) { for (let o = 0; o < rows; o++) y[o] = b[o]; }
  matVecAdd(w, 0, rows, x.length, x, y);
  return y;
}

/** Layer norm with biased variance, as DESIGN.md specifies. */
function layerNorm(x: Float64Array, gamma: Float32Array, beta: Float32Array, eps: number) {
  const n = x.length;
  let mean = 0;
  for (const v of x) mean += v;
  mean /= n;
  let variance = 0;
  for (const v of x) variance += (v - mean) * (v - mean);
  variance /= n;
  const inv = 1 / Math.sqrt(variance + eps);
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * gamma[i] + beta[i];
  return y;
}

/** A layer of the reference: state lives in `state` so a batch row can save and restore it. */
interface RefLayer {
  readonly out: number;
  state: Float64Array[];
  /** `input` is the model's input of this step (the skip layer adds it). */
  step(x: Float64Array, input: Float64Array): Float64Array;
}

function tensor(l: LayerSpec, index: number, name: string, len: number): Float32Array {
  const t = l.tensors[name];
  if (t === undefined) {
    throw new Error(`reference: layer ${index} (${l.kind}) has no tensor ${name}`);
  }
  if (t.length !== len) {
    throw new Error(`reference: layer ${index} tensor ${name} has ${t.length}, expected ${len}`);
  }
  return t;
}

/** Epsilon with the defaults ModelSpec documents (batchnorm 1e-3 as Keras, else 1e-5). */
function epsilonOf(l: LayerSpec): number {
  const eps = l.epsilon ?? (l.kind === "batchnorm" ? 1e-3 : 1e-5);
  // The image stores epsilon as f32; use the value the native side sees.
  return Math.fround(eps);
}

function denseLayer(l: LayerSpec, i: number): RefLayer {
  const w = tensor(l, i, "W", l.outputSize * l.inputSize);
  const b = l.bias === false ? undefined : tensor(l, i, "b", l.outputSize);
  const act = l.activation ?? "linear";
  return {
    out: l.outputSize,
    state: [],
    step: (x) => applyActivation(act, affine(w, b, l.outputSize, x)),
  };
}

function lstmLayer(l: LayerSpec, i: number): RefLayer {
  const h_len = l.outputSize;
  const wx = tensor(l, i, "Wx", 4 * h_len * l.inputSize);
  const wh = tensor(l, i, "Wh", 4 * h_len * h_len);
  const b = tensor(l, i, "b", 4 * h_len);
  const layer: RefLayer = {
    out: h_len,
    state: [new Float64Array(h_len), new Float64Array(h_len)],
    step(x) {
      const [h, c] = layer.state;
      const z = affine(wx, b, 4 * h_len, x);
      matVecAdd(wh, 0, 4 * h_len, h_len, h, z);
      const h_next = new Float64Array(h_len);
      for (let j = 0; j < h_len; j++) {
        const ig = sigmoid(z[j]);
        const fg = sigmoid(z[h_len + j]);
        const gg = Math.tanh(z[2 * h_len + j]);
        const og = sigmoid(z[3 * h_len + j]);
        c[j] = fg * c[j] + ig * gg;
        h_next[j] = og * Math.tanh(c[j]);
      }
      h.set(h_next);
      return h_next;
    },
  };
  return layer;
}

function gruLayer(l: LayerSpec, i: number): RefLayer {
  const h_len = l.outputSize;
  const wx = tensor(l, i, "Wx", 3 * h_len * l.inputSize);
  const wh = tensor(l, i, "Wh", 3 * h_len * h_len);
  const bx = tensor(l, i, "bx", 3 * h_len);
  const bh = tensor(l, i, "bh", 3 * h_len);
  const layer: RefLayer = {
    out: h_len,
    state: [new Float64Array(h_len)],
    step(x) {
      const [h] = layer.state;
      const gx = affine(wx, bx, 3 * h_len, x);
      const gh = affine(wh, bh, 3 * h_len, h);
      const h_next = new Float64Array(h_len);
      for (let j = 0; j < h_len; j++) {
        const z = sigmoid(gx[j] + gh[j]);
        const r = sigmoid(gx[h_len + j] + gh[h_len + j]);
        const n = Math.tanh(gx[2 * h_len + j] + r * gh[2 * h_len + j]);
        h_next[j] = (1 - z) * n + z * h[j];
      }
      h.set(h_next);
      return h_next;
    },
  };
  return layer;
}

function conv1dLayer(l: LayerSpec, i: number): RefLayer {
  const k = l.kernelSize ?? 1;
  const dilation = l.dilation ?? 1;
  const groups = l.groups ?? 1;
  const in_len = l.inputSize;
  const out_len = l.outputSize;
  const in_per_group = in_len / groups;
  const out_per_group = out_len / groups;
  const w = tensor(l, i, "W", out_len * in_per_group * k);
  const b = tensor(l, i, "b", out_len);
  const act = l.activation ?? "linear";
  const span = (k - 1) * dilation + 1;
  // history[s] is the input s steps ago (0 = the current one), zero before the sequence starts.
  const layer: RefLayer = {
    out: out_len,
    state: [new Float64Array(span * in_len)],
    step(x) {
      const [history] = layer.state;
      history.copyWithin(in_len, 0, (span - 1) * in_len);
      history.set(x, 0);
      const y = new Float64Array(out_len);
      for (let o = 0; o < out_len; o++) {
        const c0 = Math.floor(o / out_per_group) * in_per_group;
        let acc = b[o];
        for (let c = 0; c < in_per_group; c++) {
          for (let t = 0; t < k; t++) {
            const ago = (k - 1 - t) * dilation;
            acc += w[(o * in_per_group + c) * k + t] * history[ago * in_len + c0 + c];
          }
        }
        y[o] = acc;
      }
      return applyActivation(act, y);
    },
  };
  return layer;
}

function batchnormLayer(l: LayerSpec, i: number): RefLayer {
  const n = l.outputSize;
  const affineOn = l.affine !== false;
  const gamma = affineOn ? tensor(l, i, "gamma", n) : undefined;
  const beta = affineOn ? tensor(l, i, "beta", n) : undefined;
  const mean = tensor(l, i, "mean", n);
  const variance = tensor(l, i, "var", n);
  const eps = epsilonOf(l);
  const act = l.activation ?? "linear";
  const step = (x: Float64Array) => {
    const y = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      const norm = (x[j] - mean[j]) / Math.sqrt(variance[j] + eps);
      y[j] = gamma && beta ? norm * gamma[j] + beta[j] : norm;
    }
    return applyActivation(act, y);
  };
  return { out: n, state: [], step };
}

function layernormLayer(l: LayerSpec, i: number): RefLayer {
  const n = l.outputSize;
  const gamma = tensor(l, i, "gamma", n);
  const beta = tensor(l, i, "beta", n);
  const eps = epsilonOf(l);
  return { out: n, state: [], step: (x) => layerNorm(x, gamma, beta, eps) };
}

function preluLayer(l: LayerSpec, i: number): RefLayer {
  const n = l.outputSize;
  const alpha = l.tensors["alpha"];
  if (alpha === undefined || (alpha.length !== n && alpha.length !== 1)) {
    throw new Error(`reference: layer ${i} prelu alpha must have ${n} or 1 values`);
  }
  const step = (x: Float64Array) => {
    const y = new Float64Array(n);
    for (let j = 0; j < n; j++) y[j] = x[j] >= 0 ? x[j] : alpha[alpha.length === 1 ? 0 : j] * x[j];
    return y;
  };
  return { out: n, state: [], step };
}

function activationLayer(l: LayerSpec): RefLayer {
  const act = l.activation ?? "linear";
  return { out: l.outputSize, state: [], step: (x) => applyActivation(act, Float64Array.from(x)) };
}

/** Attention weights by name; the transformer reuses them. */
interface AttentionWeights {
  d: number;
  heads: number;
  context: number;
  wq: Float32Array;
  bq: Float32Array;
  wk: Float32Array;
  bk: Float32Array;
  wv: Float32Array;
  bv: Float32Array;
  wo: Float32Array;
  bo: Float32Array;
}

function attentionWeights(l: LayerSpec, i: number): AttentionWeights {
  const d = l.outputSize;
  const heads = l.heads ?? 1;
  const context = l.context ?? 0;
  if (d % heads !== 0 || context < 1) throw new Error(`reference: layer ${i} bad heads/context`);
  const m = (name: string) => tensor(l, i, name, d * d);
  const v = (name: string) => tensor(l, i, name, d);
  return {
    d,
    heads,
    context,
    wq: m("Wq"),
    bq: v("bq"),
    wk: m("Wk"),
    bk: v("bk"),
    wv: m("Wv"),
    bv: v("bv"),
    wo: m("Wo"),
    bo: v("bo"),
  };
}

/**
 * One step of causal self-attention. `cache` holds [keys (context*d), values (context*d),
 * [steps seen]]; slot `steps % context` receives the newest position, so past `context` steps the
 * oldest is overwritten (the ring of DESIGN.md).
 */
function attentionStep(a: AttentionWeights, cache: Float64Array[], x: Float64Array) {
  const { d, heads, context } = a;
  const [keys, values, seen] = cache;
  const q = affine(a.wq, a.bq, d, x);
  const slot = seen[0] % context;
  keys.set(affine(a.wk, a.bk, d, x), slot * d);
  values.set(affine(a.wv, a.bv, d, x), slot * d);
  seen[0] += 1;
  const count = Math.min(seen[0], context);
  const dh = d / heads;
  const scale = 1 / Math.sqrt(dh);
  const concat = new Float64Array(d);
  for (let h = 0; h < heads; h++) {
    const scores = new Float64Array(count);
    for (let p = 0; p < count; p++) {
      let dot = 0;
      for (let j = 0; j < dh; j++) dot += q[h * dh + j] * keys[p * d + h * dh + j];
      scores[p] = dot * scale;
    }
    applyActivation("softmax", scores);
    for (let p = 0; p < count; p++) {
      for (let j = 0; j < dh; j++) concat[h * dh + j] += scores[p] * values[p * d + h * dh + j];
    }
  }
  return affine(a.wo, a.bo, d, concat);
}

function attentionCache(a: AttentionWeights): Float64Array[] {
  return [
    new Float64Array(a.context * a.d),
    new Float64Array(a.context * a.d),
    new Float64Array(1),
  ];
}

function attentionLayer(l: LayerSpec, i: number): RefLayer {
  const a = attentionWeights(l, i);
  const layer: RefLayer = {
    out: a.d,
    state: attentionCache(a),
    step: (x) => attentionStep(a, layer.state, x),
  };
  return layer;
}

function transformerLayer(l: LayerSpec, i: number): RefLayer {
  const a = attentionWeights(l, i);
  const d = a.d;
  const ff = l.ffDim ?? 0;
  const eps = epsilonOf(l);
  const act = l.activation ?? "gelu";
  const v = (name: string, len: number) => tensor(l, i, name, len);
  const [ln1g, ln1b, ln2g, ln2b] = [v("ln1_g", d), v("ln1_b", d), v("ln2_g", d), v("ln2_b", d)];
  const [w1, b1, w2, b2] = [v("W1", ff * d), v("b1", ff), v("W2", d * ff), v("b2", d)];
  const layer: RefLayer = {
    out: d,
    state: attentionCache(a),
    step(x) {
      const att = attentionStep(a, layer.state, layerNorm(x, ln1g, ln1b, eps));
      const x1 = x.map((value, j) => value + att[j]);
      const hidden = applyActivation(act, affine(w1, b1, ff, layerNorm(x1, ln2g, ln2b, eps)));
      const y = affine(w2, b2, d, hidden);
      for (let j = 0; j < d; j++) y[j] += x1[j];
      return y;
    },
  };
  return layer;
}

function buildLayer(l: LayerSpec, i: number): RefLayer {
  switch (l.kind) {
    case "dense":
      return denseLayer(l, i);
    case "lstm":
      return lstmLayer(l, i);
    case "gru":
      return gruLayer(l, i);
    case "conv1d":
      return conv1dLayer(l, i);
    case "batchnorm":
      return batchnormLayer(l, i);
    case "layernorm":
      return layernormLayer(l, i);
    case "prelu":
      return preluLayer(l, i);
    case "activation":
      return activationLayer(l);
    case "attention":
      return attentionLayer(l, i);
    case "transformer":
      return transformerLayer(l, i);
    case "skip":
      return {
        out: l.outputSize,
        state: [],
        step: (x, input) => x.map((value, j) => value + input[j]),
      };
  }
}

/** A ModelSpec run in float64, one step at a time, with state; the oracle of the tests. */
export class ReferenceModel {
  readonly inputSize: number;
  readonly outputSize: number;
  private readonly layers: RefLayer[];

  constructor(spec: ModelSpec) {
    this.inputSize = spec.inputSize;
    this.layers = spec.layers.map(buildLayer);
    this.outputSize = this.layers[this.layers.length - 1].out;
  }

  /** One step; recurrent, convolutional and attention state advance. */
  forward(x: ArrayLike<number>): Float64Array {
    if (x.length !== this.inputSize) {
      throw new Error(`reference: input has ${x.length} values, expected ${this.inputSize}`);
    }
    const input = Float64Array.from(x);
    let y: Float64Array = input;
    for (const layer of this.layers) y = layer.step(y, input);
    return y;
  }

  /** Independent rows, each from the current state; the state does not advance. */
  forwardBatch(x: ArrayLike<number>, batch: number): Float64Array {
    const saved = this.layers.map((layer) => layer.state.map((s) => s.slice()));
    const y = new Float64Array(batch * this.outputSize);
    for (let r = 0; r < batch; r++) {
      const row = Array.from({ length: this.inputSize }, (_, j) => x[r * this.inputSize + j]);
      y.set(this.forward(row), r * this.outputSize);
      this.layers.forEach((layer, i) => layer.state.forEach((s, j) => s.set(saved[i][j])));
    }
    return y;
  }

  reset(): void {
    for (const layer of this.layers) for (const s of layer.state) s.fill(0);
  }
}
