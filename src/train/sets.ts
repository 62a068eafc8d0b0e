/**
 * The symbolic training sets of the four music models, from the corpus (src/train/corpus.ts) and
 * its labels (src/train/labels.ts), in the layouts of the models' inputs (docs/TRAINING.md's
 * cadenza-data format; the context vector of docs/DESIGN.md). Every piece is first moved to tonic
 * C (`toTonicC`); every example carries the piece's emotion vector `labelEmotion(labels)`.
 *
 * Chord spans: a bar, or two half bars when the meter's numerator is even and at least 4 (4/4,
 * 4/2, 6/8, 12/8, 6/4...) and the bar is complete. Each span has one chord of the 64-class
 * vocabulary (src/music/chords.ts):
 * - four-voice pieces: the corpus label sounding longest in the span, its quality folded onto
 *   the vocabulary (`foldQuality`: maj7 -> maj, sus4 -> maj, hdim7 -> dim, dim7 -> dim: the
 *   triad on the same root; the other six map to themselves);
 * - single lines: a template match (`matchChord`) on the span's duration-weighted pitch classes:
 *   score = weight inside the chord - weight outside - 0.35 for a seventh - 0.15 for dim/aug
 *   + 0.05 when every chord note is in the mode's scale (major; harmonic and natural minor)
 *   + 0.03 for keeping the previous span's chord; the best score wins (lowest class on ties).
 *   A span without notes keeps the previous chord (the tonic triad at the start).
 *
 * Sets (inputs -> targets):
 * - melody: sequences of up to 32 pitched notes (rests are the decoder's, not tokens); step k
 *   input [emotion 64 | previous note one-hot 128 (zero at the piece's first note) | chord of the
 *   note's span one-hot 64] = 256; target the note's tonic-relative MIDI number (xent).
 * - harmony: per piece an opening example [emotion 64 | zeros 76] -> the first span's chord (the
 *   decoder's first step has no chord in force and no melody), then one example per span with a
 *   next span: [emotion 64 | span chord one-hot 64 | the span's melody so far as the decoder
 *   sees it, `spanSoFarHistogram` 12 (duration-weighted, sums to 1, zero without notes)] = 140;
 *   target the next span's chord class (xent).
 * - groove: one example per complete bar: emotion 64 -> 32 values (`grooveTargets`, mse).
 * - dynamics: one example per complete bar: [emotion mean-pooled by 4 16 | the bar's groove
 *   0..15] -> 16 values (`dynamicsTargets`, mse).
 */

import { CHORD_CLASSES, chordClass, chordInfo, type ChordQuality } from "../music/chords.ts";
import {
  barTicks,
  type CorpusPiece,
  type CorpusQuality,
  pieceEnd,
  type SplitName,
  splitOf,
  toTonicC,
} from "./corpus.ts";
import type { TrainingData } from "./data.ts";
import { labelEmotion, type PieceLabels } from "./labels.ts";

export const MELODY_CONTEXT = 32;
export const MELODY_INPUT = 256;
export const HARMONY_INPUT = 140;
export const GROOVE_INPUT = 64;
export const DYNAMICS_INPUT = 32;
const SIXTEENTH = 3; // ticks

/** The 64-class vocabulary's quality for a corpus quality (see the module comment). */
export function foldQuality(q: CorpusQuality): ChordQuality {
  switch (q) {
    case "maj7":
    case "sus4":
      return "maj";
    case "hdim7":
    case "dim7":
      return "dim";
    default:
      return q;
  }
}

const MAJOR_SCALE = new Set([0, 2, 4, 5, 7, 9, 11]);
const MINOR_SCALE = new Set([0, 2, 3, 5, 7, 8, 10, 11]);
const CHORD_PCS = Array.from({ length: CHORD_CLASSES }, (_, c) => chordInfo(c).pitchClasses);

/** The template match of a tonic-relative pitch-class weight vector (see the module comment). */
export function matchChord(
  weights: ArrayLike<number>,
  mode: "major" | "minor",
  previous: number,
): number {
  let total = 0;
  for (let i = 0; i < 12; i++) total += weights[i];
  if (total <= 0) return previous;
  const scale = mode === "major" ? MAJOR_SCALE : MINOR_SCALE;
  let best = 0;
  let bestScore = -Infinity;
  for (let c = 0; c < CHORD_CLASSES; c++) {
    const pcs = CHORD_PCS[c];
    let inside = 0;
    for (const pc of pcs) inside += weights[pc];
    let score = (2 * inside - total) / total;
    if (pcs.length === 4) score -= 0.35;
    if (c >= 48) score -= 0.15;
    if (pcs.every((pc) => scale.has(pc))) score += 0.05;
    if (c === previous) score += 0.03;
    if (score > bestScore + 1e-12) {
      bestScore = score;
      best = c;
    }
  }
  return best;
}

/** One chord span of a (tonic-C) piece. */
export interface Span {
  start: number;
  end: number;
  chord: number;
  /** Duration-weighted pitch classes of the melody in the span, summing to 1 (or all zero). */
  histogram: Float32Array;
}

/** The chord spans of a piece already moved to tonic C. */
export function chordSpans(piece: CorpusPiece): Span[] {
  const end = pieceEnd(piece);
  const full = barTicks(piece.meter);
  const halves = piece.meter[0] % 2 === 0 && piece.meter[0] >= 4;
  const bounds: [number, number][] = [];
  const lines = piece.bars.length > 0 ? piece.bars : [0];
  for (let i = 0; i < lines.length; i++) {
    const s = lines[i];
    const e = i + 1 < lines.length ? lines[i + 1] : Math.max(end, s + full);
    if (e <= s) continue;
    if (halves && e - s === full && full % 2 === 0) {
      bounds.push([s, s + full / 2], [s + full / 2, e]);
    } else bounds.push([s, e]);
  }
  const spans: Span[] = [];
  let previous = piece.key.mode === "major" ? 0 : 12;
  for (const [s, e] of bounds) {
    const w = new Float64Array(12);
    for (const n of piece.melody) {
      if (n.pitch < 0) continue;
      const overlap = Math.min(e, n.onset + n.duration) - Math.max(s, n.onset);
      if (overlap > 0) w[n.pitch % 12] += overlap;
    }
    let chord: number;
    if (piece.chords.length > 0) {
      const byClass = new Map<number, number>();
      for (const c of piece.chords) {
        const overlap = Math.min(e, c.onset + c.duration) - Math.max(s, c.onset);
        if (overlap <= 0) continue;
        const cls = chordClass(c.root, foldQuality(c.quality));
        byClass.set(cls, (byClass.get(cls) ?? 0) + overlap);
      }
      chord = previous;
      let most = 0;
      for (const [cls, t] of byClass) if (t > most) [most, chord] = [t, cls];
    } else {
      chord = matchChord(w, piece.key.mode, previous);
    }
    let total = 0;
    for (const x of w) total += x;
    const histogram = new Float32Array(12);
    if (total > 0) { for (let i = 0; i < 12; i++) histogram[i] = w[i] / total; }
    spans.push({ start: s, end: e, chord, histogram });
    previous = chord;
  }
  return spans;
}

function spanAt(spans: readonly Span[], tick: number): number {
  let lo = 0;
  let hi = spans.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (spans[mid].start <= tick) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** A labelled piece ready for the sets: tonic C, its spans and its emotion vector. */
export interface PreparedPiece {
  piece: CorpusPiece;
  labels: PieceLabels;
  emotion: Float32Array;
  spans: Span[];
  split: SplitName;
  /** The original tonic (the piece is moved down by it). */
  tonic: number;
}

export function preparePiece(original: CorpusPiece, labels: PieceLabels): PreparedPiece {
  const piece = toTonicC(original);
  return {
    piece,
    labels,
    emotion: labelEmotion(labels),
    spans: chordSpans(piece),
    split: splitOf(original.id),
    tonic: original.key.tonic,
  };
}

/** The pitched notes of a piece with the chord of each note's span. */
export function melodyEvents(p: PreparedPiece): { pitch: number; chord: number }[] {
  const out: { pitch: number; chord: number }[] = [];
  for (const n of p.piece.melody) {
    if (n.pitch < 0) continue;
    out.push({ pitch: n.pitch, chord: p.spans[spanAt(p.spans, n.onset)].chord });
  }
  return out;
}

function dataOf(
  source: string,
  count: number,
  steps: number,
  inputSize: number,
  inputs: Float32Array,
  targets: Int32Array | Float32Array,
  targetSize: number,
  lengths: Int32Array,
  meta: Record<string, string>,
): TrainingData {
  return {
    source,
    count,
    steps,
    inputSize,
    inputs,
    targetKind: targets instanceof Int32Array ? "classes" : "values",
    targets,
    targetSize,
    lengths,
    split: null,
    meta: { format: "cadenza-data", version: "1", ...meta },
  };
}

/** The melody set of some pieces: [N, 32, 256] inputs, [N, 32] next-note classes. */
export function melodySet(pieces: readonly PreparedPiece[], source: string): TrainingData {
  const chunks: { p: PreparedPiece; ev: { pitch: number; chord: number }[]; from: number }[] = [];
  for (const p of pieces) {
    const ev = melodyEvents(p);
    for (let from = 0; from < ev.length; from += MELODY_CONTEXT) chunks.push({ p, ev, from });
  }
  const n = chunks.length;
  const T = MELODY_CONTEXT;
  const F = MELODY_INPUT;
  const inputs = new Float32Array(n * T * F);
  const targets = new Int32Array(n * T).fill(-1);
  const lengths = new Int32Array(n);
  chunks.forEach(({ p, ev, from }, r) => {
    const len = Math.min(T, ev.length - from);
    lengths[r] = len;
    for (let k = 0; k < len; k++) {
      const i = from + k;
      const row = (r * T + k) * F;
      inputs.set(p.emotion, row);
      if (i > 0) inputs[row + 64 + ev[i - 1].pitch] = 1;
      inputs[row + 192 + ev[i].chord] = 1;
      targets[r * T + k] = ev[i].pitch;
    }
  });
  return dataOf(source, n, T, F, inputs, targets, 128, lengths, {
    loss: "xent",
    task:
      "MelodyTransformer: next tonic-relative note from [emotion, previous note, chord in force]",
  });
}

/**
 * The span melody histogram the decoder hands the harmony model when it asks for the next
 * span's chord: the harmony of span i + 1 comes from the model step of span i's LAST melody
 * note, whose context holds the span's notes before it (the note itself is drawn after the
 * step). So: the pitched notes with their onset in [start, end) but the last, each weighted by
 * its length up to the span's end (src/music/decode.ts counts a note in its onset's span only),
 * normalised to sum 1; all zero when that leaves nothing.
 */
export function spanSoFarHistogram(piece: CorpusPiece, span: Span): Float32Array {
  const w = new Float64Array(12);
  let lastOnset = -1;
  for (const n of piece.melody) {
    if (n.pitch >= 0 && n.onset >= span.start && n.onset < span.end && n.onset > lastOnset) {
      lastOnset = n.onset;
    }
  }
  let total = 0;
  for (const n of piece.melody) {
    if (n.pitch < 0 || n.onset < span.start || n.onset >= lastOnset) continue;
    const steps = Math.min(n.onset + n.duration, span.end) - n.onset;
    if (steps > 0) {
      w[n.pitch % 12] += steps;
      total += steps;
    }
  }
  const out = new Float32Array(12);
  if (total > 0) { for (let i = 0; i < 12; i++) out[i] = w[i] / total; }
  return out;
}

/**
 * The harmony set: [N, 140] inputs, [N] next-span chord classes. Per piece, first the opening
 * example the decoder asks for before any music (no chord in force, no melody: [emotion, 0, 0]
 * -> the first span's chord), then one example per span with a next span ([emotion, span chord,
 * `spanSoFarHistogram`] -> the next span's chord).
 */
export function harmonySet(pieces: readonly PreparedPiece[], source: string): TrainingData {
  let n = 0;
  for (const p of pieces) n += p.spans.length;
  const F = HARMONY_INPUT;
  const inputs = new Float32Array(n * F);
  const targets = new Int32Array(n);
  let r = 0;
  for (const p of pieces) {
    if (p.spans.length === 0) continue;
    inputs.set(p.emotion, r * F);
    targets[r++] = p.spans[0].chord;
    for (let i = 0; i + 1 < p.spans.length; i++, r++) {
      const row = r * F;
      inputs.set(p.emotion, row);
      inputs[row + 64 + p.spans[i].chord] = 1;
      inputs.set(spanSoFarHistogram(p.piece, p.spans[i]), row + 128);
      targets[r] = p.spans[i + 1].chord;
    }
  }
  return dataOf(source, n, 1, F, inputs, targets, 64, new Int32Array(n).fill(1), {
    loss: "xent",
    task: "HarmonyPredictor: next span's chord from [emotion, chord in force, span melody so far]",
  });
}

/** The complete bars of a piece: [start, end) pairs of the meter's full length. */
export function completeBars(piece: CorpusPiece): [number, number][] {
  const full = barTicks(piece.meter);
  const end = pieceEnd(piece);
  const out: [number, number][] = [];
  for (let i = 0; i < piece.bars.length; i++) {
    const s = piece.bars[i];
    const e = i + 1 < piece.bars.length ? piece.bars[i + 1] : end;
    if (e - s === full) out.push([s, e]);
  }
  return out;
}

const clamp = (x: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, x));

/**
 * The 32 groove values (docs/MUSIC.md) of one bar. Measured from the bar: 0..15 (onset
 * propensity of slot j: 2 x the share of the bar's sixteenth slots s = j mod 16 holding a note
 * onset, minus 1; -1 where the bar has no such slot), 17 swing (simple meters: of the onsets on a
 * beat's second eighth or its last sixteenth, 2 x the share on the last sixteenth - 1, i.e. the
 * dotted rhythms; -1 without such onsets or in compound meters), 20 rest (2 min(1, r / 0.35) - 1
 * for r the share of the bar's events that are rests), 21 hold (-1: the corpus onsets are the
 * notes' own, nothing is held over them), 22 chord rhythm (+1 for two spans a bar, else -1).
 * Proxies from the labels (no ground truth in scores): 16 density a / 2 (the propensities
 * already hold the measured rate), 18 spread 0.3 a - 0.5, 19 push 0.4 a, 23 bass pattern a,
 * 24 comping 0.8 a - 0.2, 25 kick a, 26 backbeat a, 27 hi-hat a, 28 open hat a - 0.3, 29 crash a,
 * 30 fill a - 0.2, 31 ghost notes a - 0.3 (a the arousal).
 */
export function grooveTargets(
  piece: CorpusPiece,
  bar: [number, number],
  arousal: number,
): Float32Array {
  const g = new Float32Array(32);
  const [s, e] = bar;
  const slots = Math.max(1, Math.round((e - s) / SIXTEENTH));
  const onset = new Uint8Array(slots);
  let events = 0;
  let rests = 0;
  let second = 0;
  let dotted = 0;
  const [num, den] = piece.meter;
  const compound = den >= 8 && num % 3 === 0;
  for (const n of piece.melody) {
    if (n.onset < s || n.onset >= e) continue;
    events++;
    if (n.pitch < 0) {
      rests++;
      continue;
    }
    const slot = Math.round((n.onset - s) / SIXTEENTH);
    if (slot < slots) onset[slot] = 1;
    const inBeat = (n.onset - s) % 12;
    if (inBeat === 6) second++;
    if (inBeat === 9) dotted++;
  }
  for (let j = 0; j < 16; j++) {
    let count = 0;
    let on = 0;
    for (let k = j; k < slots; k += 16) {
      count++;
      on += onset[k];
    }
    g[j] = count > 0 ? (2 * on) / count - 1 : -1;
  }
  const a = arousal;
  g[16] = a / 2;
  g[17] = !compound && second + dotted > 0 ? (2 * dotted) / (second + dotted) - 1 : -1;
  g[18] = 0.3 * a - 0.5;
  g[19] = 0.4 * a;
  g[20] = events > 0 ? 2 * Math.min(1, rests / events / 0.35) - 1 : -1;
  g[21] = -1;
  g[22] = num % 2 === 0 && num >= 4 ? 1 : -1;
  g[23] = a;
  g[24] = 0.8 * a - 0.2;
  g[25] = a;
  g[26] = a;
  g[27] = a;
  g[28] = a - 0.3;
  g[29] = a;
  g[30] = a - 0.2;
  g[31] = a - 0.3;
  for (let i = 0; i < 32; i++) g[i] = clamp(g[i], -1, 1);
  return g;
}

/**
 * The 16 dynamics values (docs/MUSIC.md) of one bar: proxies (the corpus has no dynamic marks)
 * from the arousal a and the bar's notes. 0 base velocity 0.5 + 0.35 a; 1 beat accent 0.4 + 0.2 a;
 * 2 downbeat accent 0.4 + 0.2 a; 3 in-bar dynamic 0.5 + 0.25 tanh((last - first pitch) / 7)
 * (rising lines swell); 4 phrase arc 0.55 + 0.15 a; 5 humanise 0.3 + 0.1 a; 6 melody
 * articulation, 10 chord and 11 bass articulation: L = 0.7 - 0.25 a + 0.15 tanh(log2(mean note
 * length / an eighth)) (longer notes and calmer music play more legato); 7 accent length
 * 0.4 - 0.2 a; 8 chord velocity 0.5; 9 bass velocity 0.5 + 0.2 a; 12 chord roll 0.3 - 0.2 a;
 * 13 drum level 0.5 + 0.4 a; 14 register 0.5 + 0.25 tanh((mean pitch - 72) / 12); 15 hi-hat
 * level 0.5 + 0.3 a. Each is clamped to [0.02, 0.98].
 */
export function dynamicsTargets(
  piece: CorpusPiece,
  bar: [number, number],
  arousal: number,
  absolutePitchOffset: number,
): Float32Array {
  const d = new Float32Array(16);
  const a = arousal;
  const [s, e] = bar;
  let first = -1;
  let last = -1;
  let lenSum = 0;
  let pitchSum = 0;
  let count = 0;
  for (const n of piece.melody) {
    if (n.onset < s || n.onset >= e || n.pitch < 0) continue;
    if (first < 0) first = n.pitch;
    last = n.pitch;
    lenSum += n.duration;
    pitchSum += n.pitch + absolutePitchOffset;
    count++;
  }
  const meanLen = count > 0 ? lenSum / count : 6;
  const meanP = count > 0 ? pitchSum / count : 72;
  const legato = 0.7 - 0.25 * a + 0.15 * Math.tanh(Math.log2(meanLen / 6));
  d[0] = 0.5 + 0.35 * a;
  d[1] = 0.4 + 0.2 * a;
  d[2] = 0.4 + 0.2 * a;
  d[3] = 0.5 + 0.25 * Math.tanh(count > 0 ? (last - first) / 7 : 0);
  d[4] = 0.55 + 0.15 * a;
  d[5] = 0.3 + 0.1 * a;
  d[6] = legato;
  d[7] = 0.4 - 0.2 * a;
  d[8] = 0.5;
  d[9] = 0.5 + 0.2 * a;
  d[10] = legato;
  d[11] = legato;
  d[12] = 0.3 - 0.2 * a;
  d[13] = 0.5 + 0.4 * a;
  d[14] = 0.5 + 0.25 * Math.tanh((meanP - 72) / 12);
  d[15] = 0.5 + 0.3 * a;
  for (let i = 0; i < 16; i++) d[i] = clamp(d[i], 0.02, 0.98);
  return d;
}

/** The groove set: [N, 64] emotion -> [N, 32] values, one example per complete bar. */
export function grooveSet(pieces: readonly PreparedPiece[], source: string): TrainingData {
  const rows: { p: PreparedPiece; bar: [number, number] }[] = [];
  for (const p of pieces) for (const bar of completeBars(p.piece)) rows.push({ p, bar });
  const n = rows.length;
  const inputs = new Float32Array(n * GROOVE_INPUT);
  const targets = new Float32Array(n * 32);
  rows.forEach(({ p, bar }, r) => {
    inputs.set(p.emotion, r * GROOVE_INPUT);
    targets.set(grooveTargets(p.piece, bar, p.labels.arousal), r * 32);
  });
  return dataOf(source, n, 1, GROOVE_INPUT, inputs, targets, 32, new Int32Array(n).fill(1), {
    loss: "mse",
    task: "GroovePredictor: a bar's 32 groove values from the emotion",
  });
}

/** The emotion mean-pooled in fours (values 4k..4k+3 -> value k), as the graph feeds dynamics. */
export function meanPool4(emotion: Float32Array): Float32Array {
  const out = new Float32Array(16);
  for (let k = 0; k < 16; k++) {
    out[k] = (emotion[4 * k] + emotion[4 * k + 1] + emotion[4 * k + 2] + emotion[4 * k + 3]) / 4;
  }
  return out;
}

/** The dynamics set: [N, 32] [pooled emotion, bar groove 0..15] -> [N, 16] values. */
export function dynamicsSet(pieces: readonly PreparedPiece[], source: string): TrainingData {
  const rows: { p: PreparedPiece; bar: [number, number]; pooled: Float32Array }[] = [];
  for (const p of pieces) {
    const pooled = meanPool4(p.emotion);
    for (const bar of completeBars(p.piece)) rows.push({ p, bar, pooled });
  }
  const n = rows.length;
  const inputs = new Float32Array(n * DYNAMICS_INPUT);
  const targets = new Float32Array(n * 16);
  rows.forEach(({ p, bar, pooled }, r) => {
    inputs.set(pooled, r * DYNAMICS_INPUT);
    const groove = grooveTargets(p.piece, bar, p.labels.arousal);
    inputs.set(groove.subarray(0, 16), r * DYNAMICS_INPUT + 16);
    targets.set(
      dynamicsTargets(p.piece, bar, p.labels.arousal, p.tonic),
      r * 16,
    );
  });
  return dataOf(source, n, 1, DYNAMICS_INPUT, inputs, targets, 16, new Int32Array(n).fill(1), {
    loss: "mse",
    task: "DynamicsEngine: a bar's 16 expression values from [pooled emotion, groove 0..15]",
  });
}

export type SetName = "melody" | "harmony" | "groove" | "dynamics";
export const SET_NAMES: readonly SetName[] = ["melody", "harmony", "groove", "dynamics"];

/**
 * How many times each minor training piece enters the harmony training set. The corpus is 78%
 * major at every arousal (16..27% minor per quarter of the arousal range), so the harmony model
 * sees few examples at negative valence and the chords it draws there leaned major. The chords
 * carry the mode of a generated piece: with three copies "sad" pieces came out minor 92% of the
 * time (seeds 1..50) whether or not the melody set repeated its minor pieces too, with five 94%
 * (90% over seeds 1..200); the melody model trained on repeats overfitted them (its held-out
 * accuracy fell from 0.520 to 0.503), so the melody set keeps the corpus's balance. Only the
 * training split repeats: validation and test pieces count once, so their figures stay those
 * of the corpus.
 */
export const MINOR_REPEAT = 5;

/** The training pieces of a set: for harmony, minor pieces MINOR_REPEAT times. */
export function repeatMinor(set: SetName, pieces: readonly PreparedPiece[]): PreparedPiece[] {
  if (set !== "harmony") return [...pieces];
  return pieces.flatMap((
    p,
  ) => (p.piece.key.mode === "minor" ? new Array(MINOR_REPEAT).fill(p) : [p]));
}

export function buildSet(name: SetName, pieces: readonly PreparedPiece[], source: string) {
  switch (name) {
    case "melody":
      return melodySet(pieces, source);
    case "harmony":
      return harmonySet(pieces, source);
    case "groove":
      return grooveSet(pieces, source);
    case "dynamics":
      return dynamicsSet(pieces, source);
  }
}
