/**
 * The EmotionRecognizer's training data: corpus pieces rendered to audio and heard through the
 * project's own feature extractor, paired with the pieces' emotion labels.
 *
 * One render of a piece (`renderPlan`, seeded by the piece id and the render index, so the same
 * on every run):
 * - the melody (repeated until the excerpt is long enough) on a General MIDI program drawn from
 *   MELODY_PROGRAMS, and, where the piece has chords (the four-voice chorales), the chords as a
 *   close-position accompaniment with their root in the bass, on a program from
 *   ACCOMPANIMENT_PROGRAMS;
 * - a tempo drawn around the piece's own (its metronome mark, else the labels' tempo), a
 *   transposition of -5..+6 semitones (octaves kept in a singable range), a base velocity
 *   40..115 with accents on bar starts and a little jitter;
 * - the first EXCERPT_SECONDS written as MIDI (`toMidi`) and rendered by FluidSynth at 48 kHz
 *   (`renderWav`), read back with `parseWav`, mixed down to mono;
 * - the features of every 128-sample block (`FeatureExtractor`, as `live` and `respond` use it),
 *   and WINDOWS_PER_RENDER windows of `steps` blocks from WINDOW_START_SECONDS on (after the
 *   extractor's smoothed features have settled).
 *
 * The target of every block of a window is the 64-value emotion vector (`emotionVector`) of the
 * piece's valence and the arousal of this render (its tempo and velocity).
 */

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseWav } from "../audio/wav.ts";
import { FEATURE_COUNT, FeatureExtractor } from "../audio/features.ts";
import { CadenzaError } from "../errors.ts";
import { EMOTION_VECTOR_SIZE, emotionVector } from "../music/emotion-map.ts";
import { renderWav } from "../music/audio.ts";
import { Rng } from "../music/rng.ts";
import { emptySequence, type NoteSequence } from "../music/sequence.ts";
import {
  barTicks,
  type CorpusPiece,
  fnv1a,
  pieceEnd,
  type SplitName,
  splitOf,
  TICKS_PER_QUARTER,
} from "./corpus.ts";
import type { TrainingData } from "./data.ts";
import { type ArousalStats, pieceLabels, pieceValence } from "./labels.ts";

export const RENDER_RATE_HZ = 48_000;
export const BLOCK_SAMPLES = 128;
export const EXCERPT_SECONDS = 10;
export const WINDOW_START_SECONDS = 4;
export const WINDOWS_PER_RENDER = 4;

/** Melody programs (GM, 0-based): pianos, mallets, organ, guitars, strings, brass, reeds, flutes. */
export const MELODY_PROGRAMS: readonly number[] = [
  0,
  1,
  4,
  11,
  19,
  21,
  24,
  25,
  40,
  41,
  42,
  48,
  52,
  56,
  60,
  65,
  68,
  70,
  71,
  73,
  74,
  79,
];
/** Accompaniment programs: piano, electric piano, organ, guitar, harp, strings, pad, choir. */
export const ACCOMPANIMENT_PROGRAMS: readonly number[] = [0, 4, 19, 24, 46, 48, 49, 89, 52];

/** How one render of a piece sounds. */
export interface RenderPlan {
  pieceId: string;
  render: number;
  melodyProgram: number;
  /** -1 when the piece has no chords. */
  accompanimentProgram: number;
  qpm: number;
  transpose: number;
  /** Base velocity 1..127 (the render's dynamics). */
  velocity: number;
  /** The seed of the per-note velocity jitter. */
  seed: number;
}

/** What the labels need of a render: its tempo, transposition and mean melody velocity. */
export interface RenderFacts {
  qpm: number;
  transpose: number;
  velocity: number;
}

/** The labels of a piece as rendered: valence and arousal in [-1, 1]. */
export type RenderLabeller = (piece: CorpusPiece, render: RenderFacts) => {
  valence: number;
  arousal: number;
};

/** The plan of render `render` of `piece`: the same on every run. */
export function renderPlan(piece: CorpusPiece, render: number, baseQpm: number): RenderPlan {
  const rng = new Rng((fnv1a(piece.id) ^ Math.imul(render + 1, 0x9e3779b1)) >>> 0);
  const pick = <T>(list: readonly T[]) => list[Math.floor(rng.next() * list.length)];
  const melodyProgram = pick(MELODY_PROGRAMS);
  const accompanimentProgram = piece.chords.length > 0 ? pick(ACCOMPANIMENT_PROGRAMS) : -1;
  // The tempo: 0.7x .. 1.45x the piece's own, log-uniform, kept within 40..220 qpm.
  const factor = Math.exp(Math.log(0.7) + rng.next() * (Math.log(1.45) - Math.log(0.7)));
  const qpm = Math.round(Math.min(220, Math.max(40, baseQpm * factor)));
  let transpose = Math.floor(rng.next() * 12) - 5;
  const pitches = piece.melody.filter((n) => n.pitch >= 0).map((n) => n.pitch);
  const mean = pitches.reduce((s, p) => s + p, 0) / Math.max(1, pitches.length);
  while (mean + transpose > 82) transpose -= 12;
  while (mean + transpose < 55) transpose += 12;
  const velocity = 40 + Math.floor(rng.next() * 76);
  const seed = rng.nextU24();
  return {
    pieceId: piece.id,
    render,
    melodyProgram,
    accompanimentProgram,
    qpm,
    transpose,
    velocity,
    seed,
  };
}

const clampPitch = (p: number) => Math.max(0, Math.min(127, p));
const clampVelocity = (v: number) => Math.max(1, Math.min(127, Math.round(v)));

/** The chord tones of a corpus quality, in semitones above the root. */
const QUALITY_TONES: Readonly<Record<string, readonly number[]>> = {
  maj: [0, 4, 7],
  min: [0, 3, 7],
  dom7: [0, 4, 7, 10],
  min7: [0, 3, 7, 10],
  maj7: [0, 4, 7, 11],
  dim: [0, 3, 6],
  hdim7: [0, 3, 6, 10],
  dim7: [0, 3, 6, 9],
  aug: [0, 4, 8],
  sus4: [0, 5, 7],
};

/**
 * The first `seconds` of the piece as the plan plays it: the melody on instrument 0, the
 * chords (if any) on instrument 1, repeated from the start until `seconds` are filled.
 */
export function renderSequence(
  piece: CorpusPiece,
  plan: RenderPlan,
  seconds = EXCERPT_SECONDS,
): NoteSequence {
  const hasChords = plan.accompanimentProgram >= 0;
  const seq = emptySequence({
    tempo: plan.qpm,
    meter: piece.meter,
    key: { tonic: (((piece.key.tonic + plan.transpose) % 12) + 12) % 12, mode: piece.key.mode },
    instruments: [
      { instrument: 0, name: "melody", program: plan.melodyProgram, isDrum: false, channel: 0 },
      ...(hasChords
        ? [{
          instrument: 1,
          name: "chords",
          program: plan.accompanimentProgram,
          isDrum: false,
          channel: 1,
        }]
        : []),
    ],
    meta: { source: piece.id, render: String(plan.render) },
  });
  const secondsPerTick = 60 / plan.qpm / TICKS_PER_QUARTER;
  const length = pieceEnd(piece);
  if (length <= 0) {
    throw new CadenzaError("E_ARGUMENT", `renderSequence: piece ${piece.id} has no length`);
  }
  const bar = barTicks(piece.meter);
  const rng = new Rng(plan.seed);
  const accent = (tick: number) => (piece.bars.includes(tick) || tick % bar === 0 ? 8 : 0);
  for (let offset = 0; offset * secondsPerTick < seconds; offset += length) {
    for (const n of piece.melody) {
      const start = (offset + n.onset) * secondsPerTick;
      if (n.pitch < 0 || n.duration <= 0 || start >= seconds) continue;
      const jitter = (rng.next() - 0.5) * 12;
      seq.notes.push({
        pitch: clampPitch(n.pitch + plan.transpose),
        velocity: clampVelocity(plan.velocity + accent(n.onset) + jitter),
        startTime: start,
        endTime: Math.min(seconds, (offset + n.onset + n.duration) * secondsPerTick),
        instrument: 0,
        program: plan.melodyProgram,
        isDrum: false,
      });
    }
    if (!hasChords) continue;
    const top = Math.min(...piece.melody.filter((n) => n.pitch >= 0).map((n) => n.pitch));
    for (const c of piece.chords) {
      const start = (offset + c.onset) * secondsPerTick;
      if (c.duration <= 0 || start >= seconds) continue;
      const end = Math.min(seconds, (offset + c.onset + c.duration) * secondsPerTick);
      const root = (c.root + plan.transpose + 1200) % 12;
      // The bass an octave or two below, the chord close under the melody's lowest note.
      const bass = 36 + root;
      const chordBase = Math.max(48, Math.min(60, top + plan.transpose - 14));
      const rootAbove = chordBase + ((root - chordBase) % 12 + 12) % 12;
      const velocity = clampVelocity(plan.velocity * 0.75 + (rng.next() - 0.5) * 8);
      for (const pitch of [bass, ...QUALITY_TONES[c.quality].map((t) => rootAbove + t)]) {
        seq.notes.push({
          pitch: clampPitch(pitch),
          velocity,
          startTime: start,
          endTime: end,
          instrument: 1,
          program: plan.accompanimentProgram,
          isDrum: false,
        });
      }
    }
  }
  if (seq.notes.length === 0) {
    throw new CadenzaError("E_ARGUMENT", `renderSequence: piece ${piece.id} has no notes`);
  }
  seq.notes.sort((a, b) => a.startTime - b.startTime || a.pitch - b.pitch);
  seq.totalTime = seconds;
  return seq;
}

/** The mean velocity of the render's melody (what its arousal label hears of dynamics). */
export function meanMelodyVelocity(seq: NoteSequence): number {
  const melody = seq.notes.filter((n) => n.instrument === 0);
  return melody.reduce((s, n) => s + n.velocity, 0) / Math.max(1, melody.length);
}

/**
 * Renders the sequence with FluidSynth at 48 kHz: the mono samples. With `cacheDir`, the WAV
 * file is kept there under a hash of the sequence (and read back instead of rendering again the
 * next time), so that a change of the feature extractor does not need FluidSynth again.
 */
export async function renderSamples(seq: NoteSequence, cacheDir?: string): Promise<Float32Array> {
  const what = `render of ${seq.meta?.source ?? "a sequence"}`;
  if (cacheDir === undefined) {
    return parseWav(await renderWav(seq, { sampleRate: RENDER_RATE_HZ }), what).samples;
  }
  const key = createHash("sha256").update(JSON.stringify(seq)).update(`@${RENDER_RATE_HZ}`)
    .digest("hex").slice(0, 32);
  const path = join(cacheDir, `${key}.wav`);
  if (existsSync(path)) return parseWav(readFileSync(path), `${what} (cached ${path})`).samples;
  const bytes = await renderWav(seq, { sampleRate: RENDER_RATE_HZ });
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(`${path}.tmp`, bytes);
  renameSync(`${path}.tmp`, path);
  return parseWav(bytes, what).samples;
}

/** The features of the first `blocks` blocks of `samples` ([blocks][128]; zero-padded). */
export function blockFeatures(
  samples: Float32Array,
  blocks: number,
  rateHz = RENDER_RATE_HZ,
  extractor = new FeatureExtractor(rateHz),
): Float32Array {
  const out = new Float32Array(blocks * FEATURE_COUNT);
  const silence = new Float32Array(BLOCK_SAMPLES);
  const into = new Float32Array(FEATURE_COUNT);
  for (let b = 0; b < blocks; b++) {
    const start = b * BLOCK_SAMPLES;
    const count = Math.max(0, Math.min(BLOCK_SAMPLES, samples.length - start));
    if (count > 0) extractor.push(samples, start, count);
    if (count < BLOCK_SAMPLES) extractor.push(silence, 0, BLOCK_SAMPLES - count);
    extractor.compute(into);
    out.set(into, b * FEATURE_COUNT);
  }
  return out;
}

/** The first block of each window of a render. */
export function windowStarts(steps: number, windows = WINDOWS_PER_RENDER): number[] {
  const first = Math.round((WINDOW_START_SECONDS * RENDER_RATE_HZ) / BLOCK_SAMPLES);
  const last = Math.floor((EXCERPT_SECONDS * RENDER_RATE_HZ) / BLOCK_SAMPLES) - steps;
  if (last < first) {
    throw new CadenzaError("E_ARGUMENT", `windowStarts: ${steps} blocks do not fit the excerpt`);
  }
  const starts: number[] = [];
  for (let w = 0; w < windows; w++) {
    starts.push(first + Math.round(windows === 1 ? 0 : ((last - first) * w) / (windows - 1)));
  }
  return starts;
}

/** One render's windows: features [windows][steps][128], and the labels it was given. */
export interface RenderedWindows {
  plan: RenderPlan;
  valence: number;
  arousal: number;
  features: Float32Array;
  windows: number;
}

/** Renders one plan of a piece and cuts its windows. */
export async function renderWindows(
  piece: CorpusPiece,
  plan: RenderPlan,
  labeller: RenderLabeller,
  steps: number,
  makeExtractor: (rateHz: number) => FeatureExtractor = (r) => new FeatureExtractor(r),
  cacheDir?: string,
): Promise<RenderedWindows> {
  const seq = renderSequence(piece, plan);
  const samples = await renderSamples(seq, cacheDir);
  const starts = windowStarts(steps);
  const blocks = starts[starts.length - 1] + steps;
  const all = blockFeatures(samples, blocks, RENDER_RATE_HZ, makeExtractor(RENDER_RATE_HZ));
  const features = new Float32Array(starts.length * steps * FEATURE_COUNT);
  starts.forEach((s, w) => {
    features.set(
      all.subarray(s * FEATURE_COUNT, (s + steps) * FEATURE_COUNT),
      w * steps * FEATURE_COUNT,
    );
  });
  const { valence, arousal } = labeller(piece, {
    qpm: plan.qpm,
    transpose: plan.transpose,
    velocity: meanMelodyVelocity(seq),
  });
  return { plan, valence, arousal, features, windows: starts.length };
}

/** The 64-value targets of `steps` blocks, all the emotion vector of (valence, arousal). */
export function windowTargets(valence: number, arousal: number, steps: number): Float32Array {
  const v = emotionVector({ valence, arousal });
  const out = new Float32Array(steps * EMOTION_VECTOR_SIZE);
  for (let t = 0; t < steps; t++) out.set(v, t * EMOTION_VECTOR_SIZE);
  return out;
}

/** How many pieces of each split a build renders, per mode, chorales and single lines apart. */
export interface SelectionSizes {
  /** Four-voice pieces (with chords) per mode. */
  chorales: number;
  /** Single-line pieces per mode. */
  lines: number;
}

export const FULL_SIZES: Readonly<Record<SplitName, SelectionSizes>> = {
  train: { chorales: 120, lines: 150 },
  validation: { chorales: 20, lines: 25 },
  test: { chorales: 20, lines: 35 },
};
export const QUICK_SIZES: Readonly<Record<SplitName, SelectionSizes>> = {
  train: { chorales: 12, lines: 12 },
  validation: { chorales: 3, lines: 3 },
  test: { chorales: 3, lines: 3 },
};

/**
 * The pieces of one split a build renders: of each mode, the first `chorales` pieces with chords
 * and the first `lines` without, in the order of FNV-1a of "recognizer:" + id (so the choice is
 * the same on every run and balanced between major and minor).
 */
export function selectPieces(
  pieces: readonly CorpusPiece[],
  split: SplitName,
  sizes: SelectionSizes,
): CorpusPiece[] {
  const order = pieces
    .filter((p) => splitOf(p.id) === split && p.melody.some((n) => n.pitch >= 0))
    .map((p) => ({ p, h: fnv1a(`recognizer:${p.id}`) }))
    .sort((a, b) => a.h - b.h || (a.p.id < b.p.id ? -1 : 1))
    .map((e) => e.p);
  const out: CorpusPiece[] = [];
  for (const mode of ["major", "minor"] as const) {
    const ofMode = order.filter((p) => p.key.mode === mode);
    out.push(...ofMode.filter((p) => p.chords.length > 0).slice(0, sizes.chorales));
    out.push(...ofMode.filter((p) => p.chords.length === 0).slice(0, sizes.lines));
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * The labels of a render: the valence of the piece (a transposition does not change its mode or
 * how clearly it sounds), the arousal of the piece transposed as rendered (its register), at the
 * render's tempo and velocity.
 */
export function renderLabeller(stats: ArousalStats): RenderLabeller {
  return (piece, render) => {
    const shifted = render.transpose === 0 ? piece : {
      ...piece,
      melody: piece.melody.map((n) => ({
        ...n,
        pitch: n.pitch < 0 ? -1 : clampPitch(n.pitch + render.transpose),
      })),
    };
    const labels = pieceLabels(shifted, stats, {
      tempoQpm: render.qpm,
      velocity: render.velocity,
    });
    return { valence: pieceValence(piece), arousal: labels.arousal };
  };
}

/** One window of a built set: where it came from and its labels. */
export interface WindowRecord {
  piece: string;
  render: number;
  window: number;
  valence: number;
  arousal: number;
  plan: RenderPlan;
}

/** A split's windows as training data (targets: the emotion vector of each window's labels). */
export function windowsToData(
  rendered: readonly RenderedWindows[],
  steps: number,
  source: string,
  meta: Record<string, string>,
  split: 0 | 1,
): { data: TrainingData; records: WindowRecord[] } {
  const count = rendered.reduce((s, r) => s + r.windows, 0);
  const inputs = new Float32Array(count * steps * FEATURE_COUNT);
  const targets = new Float32Array(count * steps * EMOTION_VECTOR_SIZE);
  const records: WindowRecord[] = [];
  let n = 0;
  for (const r of rendered) {
    const target = windowTargets(r.valence, r.arousal, steps);
    for (let w = 0; w < r.windows; w++, n++) {
      inputs.set(
        r.features.subarray(w * steps * FEATURE_COUNT, (w + 1) * steps * FEATURE_COUNT),
        n * steps * FEATURE_COUNT,
      );
      targets.set(target, n * steps * EMOTION_VECTOR_SIZE);
      records.push({
        piece: r.plan.pieceId,
        render: r.plan.render,
        window: w,
        valence: r.valence,
        arousal: r.arousal,
        plan: r.plan,
      });
    }
  }
  const data: TrainingData = {
    source,
    count,
    steps,
    inputSize: FEATURE_COUNT,
    inputs,
    targetKind: "values",
    targets,
    targetSize: EMOTION_VECTOR_SIZE,
    lengths: new Int32Array(count).fill(steps),
    split: new Uint8Array(count).fill(split),
    meta: { ...meta, loss: "mse" },
  };
  return { data, records };
}
