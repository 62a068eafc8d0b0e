/**
 * Baselines beside which the model card puts the trained models, fitted on the training pieces
 * and scored on the test pieces, on exactly the positions the models are scored on:
 * - most-frequent: always the training set's most frequent class;
 * - n-gram: a trigram over the sequence's previous two classes, backing off to the bigram (the
 *   previous class) where the trigram's context never occurs in training, then to the unigram;
 *   its prediction is the context's most frequent next class (lowest class on ties). Its loss is
 *   the cross-entropy of the interpolated distribution 0.6 trigram + 0.3 bigram + 0.1 unigram,
 *   each add-0.1 smoothed over the K classes (a context never seen gives that order the uniform
 *   distribution).
 * - constant mean: for value targets (mse), the training targets' mean per value.
 * For the melody a sequence is a piece's pitched notes, for the harmony its chord spans.
 */

export interface ClassBaseline {
  name: string;
  accuracy: number;
  /** Mean cross-entropy (nats), where the baseline gives a distribution. */
  loss: number | null;
  positions: number;
}

class Counts {
  table = new Map<number, Float64Array>();
  constructor(readonly k: number) {}
  add(context: number, next: number): void {
    let row = this.table.get(context);
    if (row === undefined) this.table.set(context, row = new Float64Array(this.k + 1));
    row[next]++;
    row[this.k]++;
  }
  argmax(context: number): number {
    const row = this.table.get(context);
    if (row === undefined) return -1;
    let best = 0;
    for (let i = 1; i < this.k; i++) if (row[i] > row[best]) best = i;
    return best;
  }
  prob(context: number, next: number): number {
    const row = this.table.get(context);
    if (row === undefined) return 1 / this.k;
    return (row[next] + 0.1) / (row[this.k] + 0.1 * this.k);
  }
}

/** Most-frequent and n-gram baselines over class sequences with `k` classes. */
export function sequenceBaselines(
  train: readonly (readonly number[])[],
  test: readonly (readonly number[])[],
  k: number,
  /** Positions scored: from this index of each test sequence on (harmony: 1, the next span). */
  firstPosition = 0,
): { mostFrequent: ClassBaseline; ngram: ClassBaseline } {
  const uni = new Counts(k);
  const bi = new Counts(k);
  const tri = new Counts(k);
  const BOS = k; // context id for "before the start"
  for (const seq of train) {
    for (let i = firstPosition; i < seq.length; i++) {
      const p1 = i >= 1 ? seq[i - 1] : BOS;
      const p2 = i >= 2 ? seq[i - 2] : BOS;
      uni.add(0, seq[i]);
      bi.add(p1, seq[i]);
      tri.add(p2 * (k + 1) + p1, seq[i]);
    }
  }
  const top = uni.argmax(0);
  let positions = 0;
  let hitsTop = 0;
  let hitsNgram = 0;
  let lossTop = 0;
  let lossNgram = 0;
  for (const seq of test) {
    for (let i = firstPosition; i < seq.length; i++) {
      const p1 = i >= 1 ? seq[i - 1] : BOS;
      const p2 = i >= 2 ? seq[i - 2] : BOS;
      const t = seq[i];
      positions++;
      if (top === t) hitsTop++;
      let guess = tri.argmax(p2 * (k + 1) + p1);
      if (guess < 0) guess = bi.argmax(p1);
      if (guess < 0) guess = top;
      if (guess === t) hitsNgram++;
      lossTop -= Math.log(uni.prob(0, t));
      const p = 0.6 * tri.prob(p2 * (k + 1) + p1, t) + 0.3 * bi.prob(p1, t) +
        0.1 * uni.prob(0, t);
      lossNgram -= Math.log(p);
    }
  }
  const n = Math.max(positions, 1);
  return {
    mostFrequent: {
      name: "most-frequent",
      accuracy: hitsTop / n,
      loss: lossTop / n,
      positions,
    },
    ngram: {
      name: "trigram (backoff to bigram, unigram)",
      accuracy: hitsNgram / n,
      loss: lossNgram / n,
      positions,
    },
  };
}

export interface ValueBaseline {
  name: string;
  /** Mean squared error per value. */
  mse: number;
  /** Mean absolute error per value. */
  mae: number;
  positions: number;
}

/** The constant predictor: the training targets' mean per value, scored on the test targets. */
export function meanBaseline(
  trainTargets: Float32Array,
  testTargets: Float32Array,
  width: number,
): ValueBaseline {
  const mean = new Float64Array(width);
  const rows = trainTargets.length / width;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < width; j++) mean[j] += trainTargets[r * width + j];
  }
  for (let j = 0; j < width; j++) mean[j] /= Math.max(rows, 1);
  let se = 0;
  let ae = 0;
  for (let i = 0; i < testTargets.length; i++) {
    const d = testTargets[i] - mean[i % width];
    se += d * d;
    ae += Math.abs(d);
  }
  const n = Math.max(testTargets.length, 1);
  return {
    name: "constant (training mean)",
    mse: se / n,
    mae: ae / n,
    positions: testTargets.length / width,
  };
}

/**
 * A baseline that sees what the melody model sees besides the emotion: the next note from the
 * previous note and the chord in force (counts of (previous, chord) -> next, backing off to
 * chord -> next, then to the unigram). Sequences are [note, chord] pairs; the chord is the one in
 * force at the note being predicted.
 */
export function chordBigramBaseline(
  train: readonly (readonly (readonly [number, number])[])[],
  test: readonly (readonly (readonly [number, number])[])[],
  k: number,
  chords: number,
): ClassBaseline {
  const both = new Counts(k);
  const chordOnly = new Counts(k);
  const uni = new Counts(k);
  const key = (prev: number, chord: number) => (prev + 1) * chords + chord;
  for (const seq of train) {
    for (let i = 0; i < seq.length; i++) {
      const prev = i > 0 ? seq[i - 1][0] : -1;
      both.add(key(prev, seq[i][1]), seq[i][0]);
      chordOnly.add(seq[i][1], seq[i][0]);
      uni.add(0, seq[i][0]);
    }
  }
  let positions = 0;
  let hits = 0;
  let loss = 0;
  for (const seq of test) {
    for (let i = 0; i < seq.length; i++) {
      const prev = i > 0 ? seq[i - 1][0] : -1;
      const [t, c] = seq[i];
      let guess = both.argmax(key(prev, c));
      if (guess < 0) guess = chordOnly.argmax(c);
      if (guess < 0) guess = uni.argmax(0);
      positions++;
      if (guess === t) hits++;
      loss -= Math.log(
        0.6 * both.prob(key(prev, c), t) + 0.3 * chordOnly.prob(c, t) + 0.1 * uni.prob(0, t),
      );
    }
  }
  const n = Math.max(positions, 1);
  return {
    name: "bigram given the chord (backoff to chord, unigram)",
    accuracy: hits / n,
    loss: loss / n,
    positions,
  };
}
