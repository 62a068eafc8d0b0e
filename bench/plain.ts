/**
 * A plain float32 TypeScript implementation of every canonical layer kind (docs/DESIGN.md,
 * "Canonical layer specs"), run over a ModelSpec: loops over Float32Arrays, no library, no
 * SIMD. It is the "what you would write by hand" peer in bench/peers.bench.ts and the third
 * opinion when cadenza and onnxruntime-node are compared. Buffers are allocated once.
 */
import { type Activation, type LayerSpec, type ModelSpec, resolveArch } from "../src/model/spec.ts";

interface PlainLayer {
  readonly output: Float32Array;
  forward(x: Float32Array): void;
  reset(): void;
}

/** One model in plain TypeScript, stepped like cadenza's Model.forward (state advances). */
export class PlainModel {
  readonly inputSize: number;
  readonly outputSize: number;
  readonly #layers: PlainLayer[];

  constructor(spec: ModelSpec) {
    this.inputSize = spec.inputSize;
    this.#layers = spec.layers.map(makeLayer);
    this.outputSize = spec.layers[spec.layers.length - 1].outputSize;
  }

  /** One step; returns a buffer that the next call overwrites. */
  forward(input: Float32Array): Float32Array {
    let x = input;
    for (const layer of this.#layers) {
      layer.forward(x);
      x = layer.output;
    }
    return x;
  }

  reset(): void {
    for (const layer of this.#layers) layer.reset();
  }
}

function makeLayer(spec: LayerSpec): PlainLayer {
  switch (spec.kind) {
    case "dense":
      return new Dense(spec);
    case "lstm":
      return new Lstm(spec);
    case "gru":
      return new Gru(spec);
    case "conv1d":
      return new Conv1d(spec);
    case "batchnorm":
      return new BatchNorm(spec);
    case "layernorm":
      return new LayerNorm(spec);
    case "prelu":
      return new PRelu(spec);
    case "activation":
      return new ActivationLayer(spec);
    case "attention":
      return new Attention(spec);
    case "transformer":
      return new Transformer(spec);
    case "skip":
      throw new Error("bench/plain.ts: skip layers (amp models) are not in the plain peer");
  }
}

function tensor(spec: LayerSpec, name: string): Float32Array {
  const t = spec.tensors[name];
  if (!t) throw new Error(`bench/plain.ts: ${spec.kind} layer "${spec.name ?? ""}" lacks ${name}`);
  return t;
}

/** y = W x + b for W [out][in] row-major; b may be empty. */
export function matVec(
  w: Float32Array,
  b: Float32Array | undefined,
  x: Float32Array,
  y: Float32Array,
  inputSize: number,
  outputSize: number,
): void {
  for (let o = 0; o < outputSize; o++) {
    let sum = b ? b[o] : 0;
    const row = o * inputSize;
    for (let i = 0; i < inputSize; i++) sum += w[row + i] * x[i];
    y[o] = sum;
  }
}

/** erf by Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7, below float32 resolution near 1). */
export function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 +
            t * (-1.453152027 + t * 1.061405429))));
  return sign * (1 - poly * Math.exp(-a * a));
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** Applies an activation to y[0..n) in place (softmax over all n values). */
export function activate(act: Activation, y: Float32Array, n = y.length): void {
  switch (act) {
    case "linear":
      return;
    case "tanh":
      for (let i = 0; i < n; i++) y[i] = Math.tanh(y[i]);
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) y[i] = sigmoid(y[i]);
      return;
    case "relu":
      for (let i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : 0;
      return;
    case "elu":
      for (let i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : Math.expm1(y[i]);
      return;
    case "gelu":
      for (let i = 0; i < n; i++) y[i] = 0.5 * y[i] * (1 + erf(y[i] * Math.SQRT1_2));
      return;
    case "softmax":
      softmax(y, 0, n);
      return;
    case "logsoftmax":
      softmax(y, 0, n);
      for (let i = 0; i < n; i++) y[i] = Math.log(y[i]);
      return;
  }
}

function softmax(y: Float32Array, start: number, n: number): void {
  let max = -Infinity;
  for (let i = start; i < start + n; i++) max = Math.max(max, y[i]);
  let sum = 0;
  for (let i = start; i < start + n; i++) {
    y[i] = Math.exp(y[i] - max);
    sum += y[i];
  }
  for (let i = start; i < start + n; i++) y[i] /= sum;
}

class Dense implements PlainLayer {
  readonly output: Float32Array;
  readonly #w: Float32Array;
  readonly #b: Float32Array | undefined;
  readonly #act: Activation;
  readonly #in: number;

  constructor(spec: LayerSpec) {
    this.#w = tensor(spec, "W");
    this.#b = spec.bias === false ? undefined : tensor(spec, "b");
    this.#act = resolveArch(spec).activation;
    this.#in = spec.inputSize;
    this.output = new Float32Array(spec.outputSize);
  }

  forward(x: Float32Array): void {
    matVec(this.#w, this.#b, x, this.output, this.#in, this.output.length);
    activate(this.#act, this.output);
  }

  reset(): void {}
}

class Lstm implements PlainLayer {
  readonly output: Float32Array;
  readonly #spec: LayerSpec;
  readonly #z: Float32Array;
  readonly #zh: Float32Array;
  readonly #c: Float32Array;

  constructor(spec: LayerSpec) {
    const h = spec.outputSize;
    this.#spec = spec;
    this.output = new Float32Array(h);
    this.#z = new Float32Array(4 * h);
    this.#zh = new Float32Array(4 * h);
    this.#c = new Float32Array(h);
  }

  forward(x: Float32Array): void {
    const s = this.#spec, h = s.outputSize, z = this.#z, zh = this.#zh;
    matVec(tensor(s, "Wx"), tensor(s, "b"), x, z, s.inputSize, 4 * h);
    matVec(tensor(s, "Wh"), undefined, this.output, zh, h, 4 * h);
    for (let j = 0; j < h; j++) {
      const i = sigmoid(z[j] + zh[j]);
      const f = sigmoid(z[h + j] + zh[h + j]);
      const g = Math.tanh(z[2 * h + j] + zh[2 * h + j]);
      const o = sigmoid(z[3 * h + j] + zh[3 * h + j]);
      this.#c[j] = f * this.#c[j] + i * g;
      this.output[j] = o * Math.tanh(this.#c[j]);
    }
  }

  reset(): void {
    this.output.fill(0);
    this.#c.fill(0);
  }
}

class Gru implements PlainLayer {
  readonly output: Float32Array;
  readonly #spec: LayerSpec;
  readonly #zx: Float32Array;
  readonly #zh: Float32Array;

  constructor(spec: LayerSpec) {
    const h = spec.outputSize;
    this.#spec = spec;
    this.output = new Float32Array(h);
    this.#zx = new Float32Array(3 * h);
    this.#zh = new Float32Array(3 * h);
  }

  forward(x: Float32Array): void {
    const s = this.#spec, h = s.outputSize, zx = this.#zx, zh = this.#zh;
    matVec(tensor(s, "Wx"), tensor(s, "bx"), x, zx, s.inputSize, 3 * h);
    matVec(tensor(s, "Wh"), tensor(s, "bh"), this.output, zh, h, 3 * h);
    for (let j = 0; j < h; j++) {
      const z = sigmoid(zx[j] + zh[j]);
      const r = sigmoid(zx[h + j] + zh[h + j]);
      const n = Math.tanh(zx[2 * h + j] + r * zh[2 * h + j]);
      this.output[j] = (1 - z) * n + z * this.output[j];
    }
  }

  reset(): void {
    this.output.fill(0);
  }
}

class Conv1d implements PlainLayer {
  readonly output: Float32Array;
  readonly #spec: LayerSpec;
  readonly #k: number;
  readonly #dilation: number;
  readonly #groups: number;
  /** The last `span` input frames, a ring indexed by #newest. */
  readonly #history: Float32Array;
  readonly #span: number;
  #newest = 0;

  constructor(spec: LayerSpec) {
    this.#spec = spec;
    this.#k = spec.kernelSize ?? 1;
    this.#dilation = spec.dilation ?? 1;
    this.#groups = spec.groups ?? 1;
    this.#span = (this.#k - 1) * this.#dilation + 1;
    this.#history = new Float32Array(this.#span * spec.inputSize);
    this.output = new Float32Array(spec.outputSize);
  }

  forward(x: Float32Array): void {
    const s = this.#spec, cin = s.inputSize, k = this.#k;
    this.#newest = (this.#newest + 1) % this.#span;
    this.#history.set(x.subarray(0, cin), this.#newest * cin);
    const w = tensor(s, "W"), b = s.tensors.b;
    const inPerGroup = cin / this.#groups, outPerGroup = s.outputSize / this.#groups;
    for (let o = 0; o < s.outputSize; o++) {
      const firstInput = Math.floor(o / outPerGroup) * inPerGroup;
      let sum = b ? b[o] : 0;
      for (let t = 0; t < k; t++) {
        const back = (k - 1 - t) * this.#dilation;
        const frame = ((this.#newest - back) % this.#span + this.#span) % this.#span;
        for (let c = 0; c < inPerGroup; c++) {
          sum += w[(o * inPerGroup + c) * k + t] * this.#history[frame * cin + firstInput + c];
        }
      }
      this.output[o] = sum;
    }
    activate(resolveArch(s).activation, this.output);
  }

  reset(): void {
    this.#history.fill(0);
    this.#newest = 0;
  }
}

class BatchNorm implements PlainLayer {
  readonly output: Float32Array;
  readonly #spec: LayerSpec;

  constructor(spec: LayerSpec) {
    this.#spec = spec;
    this.output = new Float32Array(spec.outputSize);
  }

  forward(x: Float32Array): void {
    const s = this.#spec, eps = resolveArch(s).epsilon;
    const mean = tensor(s, "mean"), variance = tensor(s, "var");
    const gamma = s.tensors.gamma, beta = s.tensors.beta;
    for (let i = 0; i < this.output.length; i++) {
      const norm = (x[i] - mean[i]) / Math.sqrt(variance[i] + eps);
      this.output[i] = gamma && beta ? norm * gamma[i] + beta[i] : norm;
    }
    activate(resolveArch(s).activation, this.output);
  }

  reset(): void {}
}

/** y = (x - mean) / sqrt(var + eps) * gamma + beta over x[0..n) (biased variance). */
export function layerNorm(
  x: Float32Array,
  y: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  eps: number,
): void {
  const n = gamma.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i];
  mean /= n;
  let variance = 0;
  for (let i = 0; i < n; i++) variance += (x[i] - mean) * (x[i] - mean);
  const inv = 1 / Math.sqrt(variance / n + eps);
  for (let i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * gamma[i] + beta[i];
}

class LayerNorm implements PlainLayer {
  readonly output: Float32Array;
  readonly #spec: LayerSpec;

  constructor(spec: LayerSpec) {
    this.#spec = spec;
    this.output = new Float32Array(spec.outputSize);
  }

  forward(x: Float32Array): void {
    const s = this.#spec;
    layerNorm(x, this.output, tensor(s, "gamma"), tensor(s, "beta"), resolveArch(s).epsilon);
  }

  reset(): void {}
}

class PRelu implements PlainLayer {
  readonly output: Float32Array;
  readonly #alpha: Float32Array;

  constructor(spec: LayerSpec) {
    this.#alpha = tensor(spec, "alpha");
    this.output = new Float32Array(spec.outputSize);
  }

  forward(x: Float32Array): void {
    const broadcast = this.#alpha.length === 1;
    for (let i = 0; i < this.output.length; i++) {
      const a = this.#alpha[broadcast ? 0 : i];
      this.output[i] = x[i] >= 0 ? x[i] : a * x[i];
    }
  }

  reset(): void {}
}

class ActivationLayer implements PlainLayer {
  readonly output: Float32Array;
  readonly #act: Activation;

  constructor(spec: LayerSpec) {
    this.#act = resolveArch(spec).activation;
    this.output = new Float32Array(spec.outputSize);
  }

  forward(x: Float32Array): void {
    this.output.set(x.subarray(0, this.output.length));
    activate(this.#act, this.output);
  }

  reset(): void {}
}

/** Causal multi-head self-attention in step mode over a ring KV cache of `context` steps. */
class Attention implements PlainLayer {
  readonly output: Float32Array;
  readonly #spec: LayerSpec;
  readonly #heads: number;
  readonly #context: number;
  readonly #q: Float32Array;
  readonly #mixed: Float32Array;
  readonly #scores: Float32Array;
  readonly #keys: Float32Array;
  readonly #values: Float32Array;
  #steps = 0;

  constructor(spec: LayerSpec) {
    const d = spec.outputSize;
    this.#spec = spec;
    this.#heads = spec.heads ?? 1;
    this.#context = spec.context ?? 1;
    this.output = new Float32Array(d);
    this.#q = new Float32Array(d);
    this.#mixed = new Float32Array(d);
    this.#scores = new Float32Array(this.#context);
    this.#keys = new Float32Array(this.#context * d);
    this.#values = new Float32Array(this.#context * d);
  }

  forward(x: Float32Array): void {
    const s = this.#spec, d = s.outputSize, slot = this.#steps % this.#context;
    matVec(tensor(s, "Wq"), tensor(s, "bq"), x, this.#q, d, d);
    matVec(tensor(s, "Wk"), tensor(s, "bk"), x, this.#keys.subarray(slot * d), d, d);
    matVec(tensor(s, "Wv"), tensor(s, "bv"), x, this.#values.subarray(slot * d), d, d);
    this.#steps++;
    const cached = Math.min(this.#steps, this.#context);
    const dh = d / this.#heads;
    for (let head = 0; head < this.#heads; head++) this.#attendHead(head * dh, dh, cached);
    matVec(tensor(s, "Wo"), tensor(s, "bo"), this.#mixed, this.output, d, d);
  }

  #attendHead(offset: number, dh: number, cached: number): void {
    const d = this.#spec.outputSize, scale = 1 / Math.sqrt(dh);
    for (let p = 0; p < cached; p++) {
      let dot = 0;
      for (let j = 0; j < dh; j++) dot += this.#q[offset + j] * this.#keys[p * d + offset + j];
      this.#scores[p] = dot * scale;
    }
    softmax(this.#scores, 0, cached);
    for (let j = 0; j < dh; j++) {
      let sum = 0;
      for (let p = 0; p < cached; p++) sum += this.#scores[p] * this.#values[p * d + offset + j];
      this.#mixed[offset + j] = sum;
    }
  }

  reset(): void {
    this.#keys.fill(0);
    this.#values.fill(0);
    this.#steps = 0;
  }
}

/** Pre-norm block: x1 = x + attention(LN1 x); y = x1 + W2 act(W1 LN2(x1) + b1) + b2. */
class Transformer implements PlainLayer {
  readonly output: Float32Array;
  readonly #spec: LayerSpec;
  readonly #attention: Attention;
  readonly #norm: Float32Array;
  readonly #hidden: Float32Array;

  constructor(spec: LayerSpec) {
    const t = spec.tensors;
    this.#spec = spec;
    this.#attention = new Attention({
      ...spec,
      kind: "attention",
      tensors: { Wq: t.Wq, bq: t.bq, Wk: t.Wk, bk: t.bk, Wv: t.Wv, bv: t.bv, Wo: t.Wo, bo: t.bo },
    });
    this.output = new Float32Array(spec.outputSize);
    this.#norm = new Float32Array(spec.outputSize);
    this.#hidden = new Float32Array(spec.ffDim ?? 1);
  }

  forward(x: Float32Array): void {
    const s = this.#spec, d = s.outputSize, ff = this.#hidden.length, eps = resolveArch(s).epsilon;
    layerNorm(x, this.#norm, tensor(s, "ln1_g"), tensor(s, "ln1_b"), eps);
    this.#attention.forward(this.#norm);
    for (let i = 0; i < d; i++) this.output[i] = x[i] + this.#attention.output[i];
    layerNorm(this.output, this.#norm, tensor(s, "ln2_g"), tensor(s, "ln2_b"), eps);
    matVec(tensor(s, "W1"), tensor(s, "b1"), this.#norm, this.#hidden, d, ff);
    activate(resolveArch(s).activation, this.#hidden);
    const w2 = tensor(s, "W2"), b2 = tensor(s, "b2");
    for (let o = 0; o < d; o++) {
      let sum = b2[o];
      for (let i = 0; i < ff; i++) sum += w2[o * ff + i] * this.#hidden[i];
      this.output[o] += sum;
    }
  }

  reset(): void {
    this.#attention.reset();
  }
}
