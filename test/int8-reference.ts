/**
 * The int8 reference: a ModelSpec run as an int8 model computes it (docs/DESIGN.md,
 * "Precision", written here from that text), in float64, free over a whole sequence: its
 * state is its own, never copied from the library.
 *
 * One thing is not determined by the text: the library quantises its float32 values, which
 * differ from these float64 ones by float32 rounding and the activations' approximation (about
 * 2e-6, see TIE_ABS). Where t = x * 127 / max|x| lies that near a rounding
 * boundary (k + 1/2) either integer is a correct int8 result. The reference marks
 * each such tie; `forwardMatching` runs the step once per way of rounding its ties (at most
 * 2^TIES_MAX) from the same state and keeps the run nearest to the library's output, so the
 * reference follows the library through a tie instead of drifting a whole step away, and is
 * otherwise independent of it. Away from ties the integer sums are equal, so the library must
 * match to the float32 budget. A wrong step anywhere (one input or weight off by one
 * quantisation step) moves outputs by a whole step's effect, far above that budget.
 */

import type { Activation, LayerSpec, ModelSpec } from "../src/model/spec.ts";
import { applyActivation, ReferenceModel, sigmoid } from "./reference.ts";

const f32 = Math.fround;
const MIN_NORMAL = 2 ** -126;
/** Below this an input vector counts as zeros (127 / max would overflow f32). */
const INPUT_MIN = 2 ** -121;
/**
 * How far the library's float32 input to a quantisation may be from the reference's float64
 * one: the activations' approximation (<= 2e-6, docs/TESTING.md) plus a few float32 roundings
 * of values up to max|x| (2^-20 of it). In t = x * 127 / max|x| that is TIE_ABS * 127 / max|x|
 * + 127 * 2^-20; a t that near a rounding boundary is a tie.
 */
export const TIE_ABS = 2e-6;
const TIE_REL = 2 ** -20;
/** The most ties one step may hold (2^TIES_MAX runs); more fails the case. */
export const TIES_MAX = 10;

function halfEven(t: number): number {
  const below = Math.floor(t);
  const frac = t - below;
  if (frac !== 0.5) return frac < 0.5 ? below : below + 1;
  return below % 2 === 0 ? below : below + 1;
}

const clampQ = (q: number) => Math.min(127, Math.max(-127, q));

/** A weight matrix as an int8 model holds it: q [rows][cols] and one scale per row. */
export interface QMatrix {
  rows: number;
  cols: number;
  q: Int8Array;
  scale: Float64Array;
}

/** Per row: scale = max|w| / 127 in f32 (0 below 2^-126), q = round_half_even(w / scale). */
export function quantiseMatrix(w: ArrayLike<number>, rows: number, cols: number): QMatrix {
  const m = { rows, cols, q: new Int8Array(rows * cols), scale: new Float64Array(rows) };
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(w[r * cols + c]));
    const scale = max < MIN_NORMAL ? 0 : f32(max / 127);
    m.scale[r] = scale;
    if (scale === 0) continue;
    for (let c = 0; c < cols; c++) {
      m.q[r * cols + c] = clampQ(halfEven(f32(w[r * cols + c] / scale)));
    }
  }
  return m;
}

/** How the ties of one run are rounded: bit i set rounds the i-th tie met the other way. */
class Ties {
  met = 0;
  constructor(readonly flips: number) {}
  /** The rounding of a tie at t: q as computed, or its neighbour across the boundary. */
  round(t: number, q: number): number {
    const i = this.met++;
    if (i >= 31 || (this.flips & (1 << i)) === 0) return q;
    return clampQ(q > t ? q - 1 : q + 1);
  }
}

/** A quantised input: q and its scale. */
interface QInput {
  q: Int8Array;
  sx: number;
}

/**
 * x quantised as the library does per call, in f32 steps: inv = 127 / max|x|, t = x * inv,
 * q = round_half_even(t); sx = max|x| / 127. `exact`: x holds the very float32 values the
 * library quantises (model inputs, zero state), so it has no ties.
 */
function quantiseInput(x: ArrayLike<number>, exact: boolean, ties: Ties): QInput {
  const xf = Array.from(x, (v) => f32(v));
  let max = 0;
  for (const v of xf) max = Math.max(max, Math.abs(v));
  const out: QInput = { q: new Int8Array(xf.length), sx: 0 };
  if (max < INPUT_MIN) return out;
  const inv = f32(127 / max);
  out.sx = f32(max / 127);
  const margin = (TIE_ABS * 127) / max + 127 * TIE_REL;
  xf.forEach((v, i) => {
    const t = f32(v * inv);
    const q = clampQ(halfEven(t));
    const frac = Math.abs(t) - Math.floor(Math.abs(t));
    const tie = !exact && Math.abs(frac - 0.5) <= margin;
    out.q[i] = tie ? ties.round(t, q) : q;
  });
  return out;
}

/** y[o] = (sum q_w q_x) * sx * scale[o] + b[o] in float64. */
function qMatVec(m: QMatrix, x: QInput, b: ArrayLike<number> | undefined): Float64Array {
  const y = new Float64Array(m.rows);
  for (let o = 0; o < m.rows; o++) {
    let acc = 0;
    for (let i = 0; i < m.cols; i++) acc += m.q[o * m.cols + i] * x.q[i];
    y[o] = acc * x.sx * m.scale[o] + (b === undefined ? 0 : b[o]);
  }
  return y;
}

/** One layer of the int8 reference; `state` is everything a step advances. */
interface Int8Layer {
  state: Float64Array[];
  step(x: Float64Array, exact: boolean, ties: Ties): Float64Array;
}

function denseInt8(l: LayerSpec): Int8Layer {
  const m = quantiseMatrix(l.tensors.W, l.outputSize, l.inputSize);
  const b = l.bias === false ? undefined : l.tensors.b;
  return {
    state: [],
    step: (x, exact, ties) =>
      applyActivation(l.activation ?? "linear", qMatVec(m, quantiseInput(x, exact, ties), b)),
  };
}

function lstmInt8(l: LayerSpec): Int8Layer {
  const [n_in, n] = [l.inputSize, l.outputSize];
  const fused = new Float32Array(4 * n * (n_in + n));
  for (let r = 0; r < 4 * n; r++) {
    fused.set(l.tensors.Wx.subarray(r * n_in, (r + 1) * n_in), r * (n_in + n));
    fused.set(l.tensors.Wh.subarray(r * n, (r + 1) * n), r * (n_in + n) + n_in);
  }
  const m = quantiseMatrix(fused, 4 * n, n_in + n);
  const layer: Int8Layer = {
    state: [new Float64Array(n), new Float64Array(n), new Float64Array(1)],
    step(x, exact, ties) {
      const [h, c, stepped] = layer.state;
      const qx = quantiseInput([...x, ...h], exact && stepped[0] === 0, ties);
      const z = qMatVec(m, qx, l.tensors.b);
      for (let j = 0; j < n; j++) {
        c[j] = sigmoid(z[n + j]) * c[j] + sigmoid(z[j]) * Math.tanh(z[2 * n + j]);
        h[j] = sigmoid(z[3 * n + j]) * Math.tanh(c[j]);
      }
      stepped[0] = 1;
      return h.slice();
    },
  };
  return layer;
}

function gruInt8(l: LayerSpec): Int8Layer {
  const n = l.outputSize;
  const mx = quantiseMatrix(l.tensors.Wx, 3 * n, l.inputSize);
  const mh = quantiseMatrix(l.tensors.Wh, 3 * n, n);
  const layer: Int8Layer = {
    state: [new Float64Array(n), new Float64Array(1)],
    step(x, exact, ties) {
      const [h, stepped] = layer.state;
      const gx = qMatVec(mx, quantiseInput(x, exact, ties), l.tensors.bx);
      const gh = qMatVec(mh, quantiseInput(h, stepped[0] === 0, ties), l.tensors.bh);
      const next = new Float64Array(n);
      for (let j = 0; j < n; j++) {
        const z = sigmoid(gx[j] + gh[j]);
        const r = sigmoid(gx[n + j] + gh[n + j]);
        const candidate = Math.tanh(gx[2 * n + j] + r * gh[2 * n + j]);
        next[j] = (1 - z) * candidate + z * h[j];
      }
      h.set(next);
      stepped[0] = 1;
      return next;
    },
  };
  return layer;
}

function conv1dInt8(l: LayerSpec): Int8Layer {
  const [k, dilation, groups] = [l.kernelSize ?? 1, l.dilation ?? 1, l.groups ?? 1];
  const [n_in, n_out] = [l.inputSize, l.outputSize];
  const [in_g, out_g] = [n_in / groups, n_out / groups];
  // Each group's matrix over its gathered taps: row o is W[o] (all taps), one scale per row.
  const m = quantiseMatrix(l.tensors.W, n_out, in_g * k);
  const span = (k - 1) * dilation + 1;
  const layer: Int8Layer = {
    state: [new Float64Array(span * n_in), new Float64Array(1)],
    step(x, exact, ties) {
      const [history, seen] = layer.state;
      history.copyWithin(n_in, 0, (span - 1) * n_in);
      history.set(x, 0);
      const y = new Float64Array(n_out);
      for (let g = 0; g < groups; g++) {
        // Column c * k + t of row o is W[o][c][t]: the taps in W's own order.
        const taps = new Float64Array(in_g * k);
        for (let c = 0; c < in_g; c++) {
          for (let t = 0; t < k; t++) {
            const ago = (k - 1 - t) * dilation;
            taps[c * k + t] = ago <= seen[0] ? history[ago * n_in + g * in_g + c] : 0;
          }
        }
        const rows: QMatrix = {
          rows: out_g,
          cols: in_g * k,
          q: m.q.subarray(g * out_g * in_g * k, (g + 1) * out_g * in_g * k),
          scale: m.scale.subarray(g * out_g, (g + 1) * out_g),
        };
        const bias = l.tensors.b.subarray(g * out_g, (g + 1) * out_g);
        y.set(qMatVec(rows, quantiseInput(taps, exact, ties), bias), g * out_g);
      }
      seen[0] += 1;
      return applyActivation(l.activation ?? "linear", y);
    },
  };
  return layer;
}

/** Layer norm with biased variance (test/reference.ts has the same, unexported). */
function layerNorm(x: Float64Array, g: Float32Array, b: Float32Array, eps: number) {
  const mean = x.reduce((s, v) => s + v, 0) / x.length;
  const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
  return x.map((v, i) => (v - mean) / Math.sqrt(variance + eps) * g[i] + b[i]);
}

/** Attention and the transformer block; `block` adds the norms and the feed-forward part. */
function attentionInt8(l: LayerSpec, block: boolean): Int8Layer {
  const d = l.outputSize;
  const [heads, context] = [l.heads ?? 1, l.context ?? 1];
  const t = l.tensors;
  const qkv = quantiseMatrix([...t.Wq, ...t.Wk, ...t.Wv], 3 * d, d);
  const bqkv = [...t.bq, ...t.bk, ...t.bv];
  const wo = quantiseMatrix(t.Wo, d, d);
  const ff = block ? (l.ffDim ?? 0) : 0;
  const w1 = block ? quantiseMatrix(t.W1, ff, d) : null;
  const w2 = block ? quantiseMatrix(t.W2, d, ff) : null;
  const eps = f32(l.epsilon ?? 1e-5);
  const act: Activation = l.activation ?? "gelu";
  const layer: Int8Layer = {
    state: [new Float64Array(context * d), new Float64Array(context * d), new Float64Array(1)],
    step(x, exact, ties) {
      const [keys, values, seen] = layer.state;
      const input = block ? layerNorm(x, t.ln1_g, t.ln1_b, eps) : x;
      const p = qMatVec(qkv, quantiseInput(input, exact && !block, ties), bqkv);
      const slot = seen[0] % context;
      keys.set(p.subarray(d, 2 * d), slot * d);
      values.set(p.subarray(2 * d, 3 * d), slot * d);
      seen[0] += 1;
      const count = Math.min(seen[0], context);
      const dh = d / heads;
      const concat = new Float64Array(d);
      for (let h = 0; h < heads; h++) {
        const s = new Float64Array(count);
        for (let q = 0; q < count; q++) {
          for (let j = 0; j < dh; j++) s[q] += p[h * dh + j] * keys[q * d + h * dh + j];
          s[q] /= Math.sqrt(dh);
        }
        applyActivation("softmax", s);
        for (let q = 0; q < count; q++) {
          for (let j = 0; j < dh; j++) concat[h * dh + j] += s[q] * values[q * d + h * dh + j];
        }
      }
      const att = qMatVec(wo, quantiseInput(concat, false, ties), t.bo);
      if (!block) return att;
      const x1 = x.map((v, j) => v + att[j]);
      const ln2 = layerNorm(x1, t.ln2_g, t.ln2_b, eps);
      const hidden = applyActivation(act, qMatVec(w1!, quantiseInput(ln2, false, ties), t.b1));
      const y = qMatVec(w2!, quantiseInput(hidden, false, ties), t.b2);
      return y.map((v, j) => v + x1[j]);
    },
  };
  return layer;
}

/** A kind without a matrix (all stateless): the float64 reference, as int8 holds it at f32. */
function f32Layer(l: LayerSpec): Int8Layer {
  const ref = new ReferenceModel({ inputSize: l.inputSize, layers: [l] });
  return { state: [], step: (x) => ref.forward(x) };
}

function int8Layer(l: LayerSpec): Int8Layer {
  switch (l.kind) {
    case "dense":
      return denseInt8(l);
    case "lstm":
      return lstmInt8(l);
    case "gru":
      return gruInt8(l);
    case "conv1d":
      return conv1dInt8(l);
    case "attention":
      return attentionInt8(l, false);
    case "transformer":
      return attentionInt8(l, true);
    default:
      return f32Layer(l);
  }
}

/** The largest |a - b| / max(1, max|b|) (deviation's measure). */
function distance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 1;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    worst = Math.max(worst, Number.isNaN(d) ? Infinity : d);
  }
  return worst / scale;
}

/** A step's output and the ties it met, of which `flipped` were rounded the other way. */
export interface MatchedStep {
  y: Float64Array;
  ties: number;
  flipped: number;
}

/** A ModelSpec run as an int8 model computes it, in float64 (see the top). */
export class Int8Reference {
  readonly layers: Int8Layer[];

  constructor(readonly spec: ModelSpec) {
    this.layers = spec.layers.map(int8Layer);
  }

  #run(x: ArrayLike<number>, ties: Ties): Float64Array {
    let y: Float64Array = Float64Array.from(x, (v) => f32(v));
    this.layers.forEach((layer, i) => {
      y = layer.step(y, i === 0, ties);
    });
    return y;
  }

  #save(): Float64Array[][] {
    return this.layers.map((l) => l.state.map((s) => s.slice()));
  }

  #restore(saved: Float64Array[][]): void {
    this.layers.forEach((l, i) => l.state.forEach((s, j) => s.set(saved[i][j])));
  }

  /**
   * One step (every state advances) whose ties are rounded as makes the output nearest to
   * `got` (the library's): each of the 2^ties roundings runs from the same state. More than
   * TIES_MAX ties in one step throws.
   */
  forwardMatching(x: ArrayLike<number>, got: ArrayLike<number>): MatchedStep {
    const saved = this.#save();
    const plain = new Ties(0);
    let y = this.#run(x, plain);
    if (plain.met === 0) return { y, ties: 0, flipped: 0 };
    if (plain.met > TIES_MAX) {
      throw new Error(`int8 reference: ${plain.met} ties in one step, at most ${TIES_MAX}`);
    }
    let best = 0;
    let nearest = distance(got, y);
    for (let flips = 1; flips < 1 << plain.met; flips++) {
      this.#restore(saved);
      const candidate = this.#run(x, new Ties(flips));
      const d = distance(got, candidate);
      if (d < nearest) [best, nearest] = [flips, d];
    }
    this.#restore(saved);
    y = this.#run(x, new Ties(best));
    let flipped = 0;
    for (let v = best; v !== 0; v &= v - 1) flipped++;
    return { y, ties: plain.met, flipped };
  }

  /** Rows from the current state, which does not advance; each row matched as above. */
  forwardBatchMatching(x: ArrayLike<number>, batch: number, got: ArrayLike<number>) {
    const [n, m] = [this.spec.inputSize, got.length / batch];
    const saved = this.#save();
    const y = new Float64Array(got.length);
    let [ties, flipped] = [0, 0];
    for (let r = 0; r < batch; r++) {
      const row = Array.from({ length: n }, (_, j) => x[r * n + j]);
      const step = this.forwardMatching(row, Array.prototype.slice.call(got, r * m, (r + 1) * m));
      y.set(step.y, r * m);
      ties += step.ties;
      flipped += step.flipped;
      this.#restore(saved);
    }
    return { y, ties, flipped };
  }
}
