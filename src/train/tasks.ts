/**
 * Synthetic sequence tasks with known answers, for the tests that show training learns and for
 * trying the CLI without real data: an order-2 Markov language whose entropy rate and best
 * order-1 and order-0 predictors are computed exactly from its transition table, and
 * copy/reverse (reproduce a random string after a delimiter). Each returns ordinary
 * TrainingData (docs/TRAINING.md), seeded: the same options give the same bytes.
 */

import { IGNORE_CLASS, type TrainingData } from "./data.ts";
import { TrainRng } from "./rng.ts";

/** Sinusoidal position features (pairs of sin/cos at geometric wavelengths), `size` values. */
export function positionFeatures(position: number, size: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i += 2) {
    const wavelength = Math.pow(64, i / Math.max(1, size));
    out[i] = Math.sin(position / wavelength);
    if (i + 1 < size) out[i + 1] = Math.cos(position / wavelength);
  }
  return out;
}

export interface MarkovOptions {
  /** Symbols (default 8). */
  vocab?: number;
  /** Sequences and steps per sequence. */
  count: number;
  steps: number;
  seed: number;
  /** Extra sinusoidal position features per step (default 0): order for attention. */
  positionSize?: number;
  /** Steps run before a sequence is recorded, so it starts near the stationary law (default 16). */
  burnIn?: number;
}

/** An order-2 Markov language: its table, its laws and what the best predictors score. */
export interface MarkovLanguage {
  vocab: number;
  /** P(c | a, b) at [(a * vocab + b) * vocab + c]. */
  table: Float64Array;
  /** Stationary law of the pair (a, b) at [a * vocab + b]. */
  pairs: Float64Array;
  /** Entropy rate in nats per symbol: the loss of the true order-2 model on long data. */
  entropyRate: number;
  /** H(X_t | X_{t-1}) under the stationary law: the best order-1 model's expected loss. */
  order1Entropy: number;
  /** H(X_t): the best order-0 (unigram) model's expected loss. */
  unigramEntropy: number;
}

/**
 * A random order-2 table: from each context (a, b) most of the mass goes to two symbols, so
 * knowing both previous symbols is worth far more than knowing one.
 */
export function markovLanguage(vocab: number, seed: number): MarkovLanguage {
  const rng = new TrainRng(seed);
  const v = vocab;
  const table = new Float64Array(v * v * v);
  for (let ctx = 0; ctx < v * v; ctx++) {
    const row = table.subarray(ctx * v, (ctx + 1) * v);
    row.fill(0.1 / v);
    const first = rng.below(v);
    let second = rng.below(v - 1);
    if (second >= first) second++;
    row[first] += 0.7;
    row[second] += 0.2;
  }
  // The pair chain (a, b) -> (b, c): its stationary law by power iteration.
  let pairs = new Float64Array(v * v).fill(1 / (v * v));
  for (let it = 0; it < 2000; it++) {
    const next = new Float64Array(v * v);
    for (let a = 0; a < v; a++) {
      for (let b = 0; b < v; b++) {
        const p = pairs[a * v + b];
        for (let c = 0; c < v; c++) next[b * v + c] += p * table[(a * v + b) * v + c];
      }
    }
    pairs = next;
  }
  const entropy = (row: ArrayLike<number>) => {
    let h = 0;
    for (let i = 0; i < row.length; i++) if (row[i] > 0) h -= row[i] * Math.log(row[i]);
    return h;
  };
  let entropyRate = 0;
  const order1 = new Float64Array(v * v); // P(c | b) * p(b)
  const marginal = new Float64Array(v);
  for (let a = 0; a < v; a++) {
    for (let b = 0; b < v; b++) {
      const row = table.subarray((a * v + b) * v, (a * v + b + 1) * v);
      const p = pairs[a * v + b];
      entropyRate += p * entropy(row);
      for (let c = 0; c < v; c++) order1[b * v + c] += p * row[c];
      marginal[b] += p;
    }
  }
  let order1Entropy = 0;
  for (let b = 0; b < v; b++) {
    const row = order1.subarray(b * v, (b + 1) * v).map((x) => x / marginal[b]);
    order1Entropy += marginal[b] * entropy(row);
  }
  return {
    vocab: v,
    table,
    pairs,
    entropyRate,
    order1Entropy,
    unigramEntropy: entropy(marginal),
  };
}

/** P(next | previous) under the stationary law: the best order-1 predictor. */
export function order1Table(lang: MarkovLanguage): Float64Array {
  const v = lang.vocab;
  const out = new Float64Array(v * v);
  for (let a = 0; a < v; a++) {
    for (let b = 0; b < v; b++) {
      for (let c = 0; c < v; c++) {
        out[b * v + c] += lang.pairs[a * v + b] * lang.table[(a * v + b) * v + c];
      }
    }
  }
  for (let b = 0; b < v; b++) {
    let s = 0;
    for (let c = 0; c < v; c++) s += out[b * v + c];
    for (let c = 0; c < v; c++) out[b * v + c] /= s;
  }
  return out;
}

export interface MarkovTask {
  language: MarkovLanguage;
  /** Inputs: one-hot of the current symbol (then position features); target: the next symbol. */
  data: TrainingData;
  /** The symbols themselves, count * (steps + 1), for scoring predictors. */
  symbols: Int32Array;
}

/** Samples sequences of the language `markovLanguage(vocab, seed)` (the sampling seed differs). */
export function markovTask(options: MarkovOptions, language?: MarkovLanguage): MarkovTask {
  const v = options.vocab ?? 8;
  const lang = language ?? markovLanguage(v, options.seed);
  const { count, steps } = options;
  const pos = options.positionSize ?? 0;
  const burnIn = options.burnIn ?? 16;
  const rng = new TrainRng((options.seed * 2654435761 + 1) >>> 0);
  const width = v + pos;
  const symbols = new Int32Array(count * (steps + 1));
  const inputs = new Float32Array(count * steps * width);
  const targets = new Int32Array(count * steps);
  const draw = (a: number, b: number) => {
    const row = (a * v + b) * v;
    let u = rng.float();
    for (let c = 0; c < v - 1; c++) {
      u -= lang.table[row + c];
      if (u < 0) return c;
    }
    return v - 1;
  };
  for (let n = 0; n < count; n++) {
    let a = rng.below(v);
    let b = rng.below(v);
    for (let i = 0; i < burnIn; i++) [a, b] = [b, draw(a, b)];
    const seq = symbols.subarray(n * (steps + 1), (n + 1) * (steps + 1));
    seq[0] = b;
    for (let t = 1; t <= steps; t++) {
      [a, b] = [b, draw(a, b)];
      seq[t] = b;
    }
    for (let t = 0; t < steps; t++) {
      const at = (n * steps + t) * width;
      inputs[at + seq[t]] = 1;
      if (pos > 0) inputs.set(positionFeatures(t, pos), at + v);
      targets[n * steps + t] = seq[t + 1];
    }
  }
  const data: TrainingData = {
    source: `<markov vocab ${v} seed ${options.seed}>`,
    count,
    steps,
    inputSize: width,
    inputs,
    targetKind: "classes",
    targets,
    targetSize: v,
    lengths: new Int32Array(count).fill(steps),
    split: null,
    meta: {
      task: "markov2",
      loss: "xent",
      entropy_rate_nats: lang.entropyRate.toFixed(6),
    },
  };
  return { language: lang, data, symbols };
}

/**
 * Mean cross-entropy (nats) on a task's targets of the true order-2 model (the best any
 * predictor can do; at step 0 it knows one symbol, so it uses the order-1 law there) and of
 * the best order-1 model.
 */
export function markovScores(task: MarkovTask): { order2: number; order1: number } {
  const { language: lang, symbols, data } = task;
  const v = lang.vocab;
  const o1 = order1Table(lang);
  let s2 = 0;
  let s1 = 0;
  for (let n = 0; n < data.count; n++) {
    const seq = symbols.subarray(n * (data.steps + 1), (n + 1) * (data.steps + 1));
    for (let t = 0; t < data.steps; t++) {
      const b = seq[t];
      const c = seq[t + 1];
      const p1 = o1[b * v + c];
      const p2 = t === 0 ? p1 : lang.table[(seq[t - 1] * v + b) * v + c];
      s1 -= Math.log(p1);
      s2 -= Math.log(p2);
    }
  }
  const total = data.count * data.steps;
  return { order2: s2 / total, order1: s1 / total };
}

export interface CopyOptions {
  /** Symbols (default 4), string length `length` (default 6). */
  vocab?: number;
  length?: number;
  count: number;
  seed: number;
  /** Reverse the string instead of copying it. */
  reverse?: boolean;
  positionSize?: number;
}

/**
 * Copy/reverse: `length` random symbols, a delimiter, then `length` steps at which the target
 * is the string (reversed, with `reverse`). Inputs are one-hot over vocab + 2 (symbols,
 * delimiter, blank) plus position features; targets before the delimiter are IGNORE_CLASS.
 * The best predictor that does not remember the string scores ln(vocab).
 */
export function copyTask(options: CopyOptions): TrainingData {
  const v = options.vocab ?? 4;
  const k = options.length ?? 6;
  const pos = options.positionSize ?? 0;
  const steps = 2 * k + 1;
  const width = v + 2 + pos;
  const rng = new TrainRng(options.seed);
  const { count } = options;
  const inputs = new Float32Array(count * steps * width);
  const targets = new Int32Array(count * steps).fill(IGNORE_CLASS);
  const s = new Int32Array(k);
  for (let n = 0; n < count; n++) {
    for (let i = 0; i < k; i++) s[i] = rng.below(v);
    for (let t = 0; t < steps; t++) {
      const at = (n * steps + t) * width;
      const symbol = t < k ? s[t] : t === k ? v : v + 1;
      inputs[at + symbol] = 1;
      if (pos > 0) inputs.set(positionFeatures(t, pos), at + v + 2);
      if (t >= k) {
        const i = t - k;
        if (i < k) targets[n * steps + t] = options.reverse ? s[k - 1 - i] : s[i];
      }
    }
  }
  return {
    source: `<${options.reverse ? "reverse" : "copy"} vocab ${v} length ${k} seed ${options.seed}>`,
    count,
    steps,
    inputSize: width,
    inputs,
    targetKind: "classes",
    targets,
    targetSize: v,
    lengths: new Int32Array(count).fill(steps),
    split: null,
    meta: { task: options.reverse ? "reverse" : "copy", loss: "xent" },
  };
}

/**
 * The fixed baseline for class targets: the training set's class frequencies (add-one
 * smoothed) as the prediction at every step. Returns its mean cross-entropy on `heldOut` and
 * the accuracy of always answering the most frequent class.
 */
export function unigramBaseline(
  train: TrainingData,
  heldOut: TrainingData,
  classes: number,
): { loss: number; accuracy: number } {
  const counts = new Float64Array(classes).fill(1);
  let total = classes;
  const countSteps = (d: TrainingData, visit: (id: number) => void) => {
    for (let n = 0; n < d.count; n++) {
      for (let t = 0; t < d.lengths[n]; t++) {
        const id = d.targets[n * d.steps + t];
        if (id !== IGNORE_CLASS) visit(id);
      }
    }
  };
  countSteps(train, (id) => {
    counts[id]++;
    total++;
  });
  let best = 0;
  for (let c = 1; c < classes; c++) if (counts[c] > counts[best]) best = c;
  let loss = 0;
  let hits = 0;
  let seen = 0;
  countSteps(heldOut, (id) => {
    loss -= Math.log(counts[id] / total);
    if (id === best) hits++;
    seen++;
  });
  return { loss: loss / seen, accuracy: hits / seen };
}
