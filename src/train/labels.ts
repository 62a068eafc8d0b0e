/**
 * Emotion labels for the corpus: valence and arousal PROXIES computed from the notes (the usual
 * music-psychology mapping; nobody rated these pieces), one function used by every model's data.
 *
 * Valence v in [-1, 1]: the mode sets the sign; how clearly the piece's notes sound in that mode
 * sets the size. The clarity d (`modeClarity`) is measured on the piece's pitch-class content
 * (melody notes and, in four-voice pieces, the tones of the chord labels, each weighted by its
 * duration) with the Krumhansl-Kessler probe-tone profiles, which come from listeners' ratings
 * of how well each pitch class fits a major or a minor key (src/music/keyfinder.ts): d is the
 * profile correlation of the labelled key (tonic and mode) less the best correlation of any key
 * of the other mode. |v| = 0.2 + 0.75 clamp((d + 0.15) / 0.45, 0, 1): 0.2 for a piece that
 * sounds rather in the other mode (d <= -0.15: a minor folk tune heard as its relative major),
 * 0.45 at d = 0, 0.95 for d >= 0.3. So |v| is 0.2 .. 0.95 and sign(v) is the mode's, always; a
 * strongly negative valence is music that sounds clearly minor (about half of the corpus's
 * minor pieces have d below 0). The minor share s (of minor chord time in four-voice pieces, of
 * the minor third and sixth among the melody's thirds and sixths in single lines) is reported
 * with the labels (`minorShare`) but no longer moves the valence.
 *
 * Arousal a in [-1, 1]: a = tanh(0.75 z(ln notes per second) + 0.25 z(mean melody pitch)
 * [+ 0.25 (velocity - 80) / 20 when a render gives one]), z-scored with the corpus's mean and
 * standard deviation (`arousalStats`). Notes per second are the pitched melody notes over the
 * piece's length at its tempo, so a rises strictly with note density at a fixed register.
 *
 * Tempo (`pieceTempo`): the metronome mark where the score has one (15 pieces do); else a tempo
 * drawn deterministically from the piece id (FNV-1a of "tempo:" + id) in a range of beats per
 * minute that suits its collection: Bach chorales 60..84, Essen folk songs 72..120, the O'Neill
 * and Ryan fiddle-tune collections 88..126, anything else 66..116. The beat is the dotted quarter
 * in compound meters (3, 6, 9, 12 over 8 or 16), else the meter's denominator note (a quarter at
 * most: 5/8 and 7/8 count quarters). A render passes its own tempo instead.
 *
 * ```ts
 * const pieces = readCorpus();
 * const stats = arousalStats(pieces);
 * const { valence, arousal } = pieceLabels(pieces[0], stats);
 * const vec = labelEmotion(pieceLabels(pieces[0], stats));   // the 64-value emotion vector
 * ```
 */

import { chordClass, chordInfo, type ChordQuality } from "../music/chords.ts";
import { emotionVector } from "../music/emotion-map.ts";
import { keyOfHistogram } from "../music/keyfinder.ts";
import { type CorpusPiece, fnv1a, pieceEnd, TICKS_PER_QUARTER } from "./corpus.ts";

export { emotionVector };

/** Valence's size: VALENCE_MIN + VALENCE_SPAN clamp((d - CLARITY_LOW) / CLARITY_RANGE, 0, 1). */
export const VALENCE_MIN = 0.2;
export const VALENCE_SPAN = 0.75;
export const CLARITY_LOW = -0.15;
export const CLARITY_RANGE = 0.45;

/** Weights of the arousal terms (on z-scores). */
export const AROUSAL_WEIGHTS = { density: 0.75, register: 0.25, velocity: 0.25 } as const;

/** Beats per minute ranges per collection (the tempo drawn for pieces without a mark). */
export const TEMPO_RANGES: Readonly<Record<string, readonly [number, number]>> = Object.freeze({
  bach: [60, 84],
  essenFolksong: [72, 120],
  oneills1850: [88, 126],
  ryansMammoth: [88, 126],
});
export const DEFAULT_TEMPO_RANGE: readonly [number, number] = [66, 116];

const MINOR_QUALITIES = new Set(["min", "min7", "dim", "hdim7", "dim7"]);

export interface PieceLabels {
  valence: number;
  arousal: number;
  /** The tempo used (quarter notes a minute). */
  tempoQpm: number;
  /** The minor share s (reported; see the module comment). */
  minorShare: number;
  /** The mode clarity d that sets the valence's size. */
  modeClarity: number;
  /** Pitched melody notes per second at tempoQpm. */
  notesPerSecond: number;
  /** Mean MIDI pitch of the pitched melody notes. */
  meanPitch: number;
}

export interface ArousalStats {
  logDensityMean: number;
  logDensityStd: number;
  pitchMean: number;
  pitchStd: number;
}

/** Options for a rendered piece: its own tempo and MIDI velocity (1..127). */
export interface RenderOptions {
  tempoQpm?: number;
  velocity?: number;
}

/** Quarter notes per beat for the tempo ranges. */
export function beatQuarters(meter: readonly [number, number]): number {
  const [num, den] = meter;
  if (den >= 8 && num % 3 === 0) return (3 * 4) / den;
  return den >= 4 ? 1 : 4 / den;
}

/** The piece's tempo in quarter notes a minute: its mark, else the deterministic draw. */
export function pieceTempo(piece: CorpusPiece): number {
  if (piece.tempoQpm !== null) return piece.tempoQpm;
  const [lo, hi] = TEMPO_RANGES[piece.collection] ?? DEFAULT_TEMPO_RANGE;
  const u = fnv1a(`tempo:${piece.id}`) / 2 ** 32;
  return Math.round((lo + u * (hi - lo)) * beatQuarters(piece.meter));
}

/** The minor share s of a piece (see the module comment). */
export function minorShare(piece: CorpusPiece): number {
  if (piece.chords.length > 0) {
    let minor = 0;
    let all = 0;
    for (const c of piece.chords) {
      all += c.duration;
      if (MINOR_QUALITIES.has(c.quality)) minor += c.duration;
    }
    return all > 0 ? minor / all : 0.5;
  }
  const w = new Float64Array(12);
  for (const n of piece.melody) {
    if (n.pitch >= 0) w[(((n.pitch - piece.key.tonic) % 12) + 12) % 12] += n.duration;
  }
  const third = w[3] + w[4] + w[8] + w[9];
  return third > 0 ? (w[3] + w[8]) / third : 0.5;
}

const FOLD: Readonly<Record<string, ChordQuality>> = {
  maj7: "maj",
  sus4: "maj",
  hdim7: "dim",
  dim7: "dim",
};

/**
 * The mode clarity d of a piece (see the module comment): on its duration-weighted pitch
 * classes (melody, and the chord labels' tones), the Krumhansl-Kessler correlation of its
 * labelled key less the best correlation of a key of the other mode; 0 without notes.
 */
export function modeClarity(piece: CorpusPiece): number {
  const w = new Array<number>(12).fill(0);
  for (const n of piece.melody) if (n.pitch >= 0) w[n.pitch % 12] += n.duration;
  for (const c of piece.chords) {
    const quality = FOLD[c.quality] ?? (c.quality as ChordQuality);
    for (const pc of chordInfo(chordClass(c.root, quality)).pitchClasses) w[pc] += c.duration;
  }
  let scores: number[];
  try {
    scores = keyOfHistogram(w).scores;
  } catch {
    return 0; // no notes, or every pitch class alike: no key to be clear about
  }
  const own = scores[(piece.key.mode === "major" ? 0 : 12) + piece.key.tonic];
  const other = piece.key.mode === "major" ? 12 : 0;
  let best = -Infinity;
  for (let t = 0; t < 12; t++) best = Math.max(best, scores[other + t]);
  return own - best;
}

/** Valence's size for a mode clarity d (in [VALENCE_MIN, VALENCE_MIN + VALENCE_SPAN]). */
export function valenceSize(d: number): number {
  const u = Math.max(0, Math.min(1, (d - CLARITY_LOW) / CLARITY_RANGE));
  return VALENCE_MIN + VALENCE_SPAN * u;
}

/** Valence: sign from the mode, size from the mode's clarity; sign(v) is always the mode's. */
export function pieceValence(piece: CorpusPiece): number {
  const sign = piece.key.mode === "major" ? 1 : -1;
  return sign * valenceSize(modeClarity(piece));
}

/** Pitched melody notes per second at a tempo. */
export function notesPerSecond(piece: CorpusPiece, tempoQpm: number = pieceTempo(piece)): number {
  let notes = 0;
  for (const n of piece.melody) if (n.pitch >= 0) notes++;
  const seconds = (pieceEnd(piece) / TICKS_PER_QUARTER) * (60 / tempoQpm);
  return seconds > 0 ? notes / seconds : 0;
}

/** Mean MIDI pitch of the pitched melody notes (60 when there are none). */
export function meanPitch(piece: CorpusPiece): number {
  let sum = 0;
  let count = 0;
  for (const n of piece.melody) {
    if (n.pitch >= 0) {
      sum += n.pitch;
      count++;
    }
  }
  return count > 0 ? sum / count : 60;
}

const logDensity = (nps: number) => Math.log(Math.max(nps, 1e-3));

/** The corpus's means and standard deviations that arousal z-scores with. */
export function arousalStats(pieces: readonly CorpusPiece[]): ArousalStats {
  let n = 0;
  let d1 = 0;
  let d2 = 0;
  let p1 = 0;
  let p2 = 0;
  for (const piece of pieces) {
    const d = logDensity(notesPerSecond(piece));
    const p = meanPitch(piece);
    n++;
    d1 += d;
    d2 += d * d;
    p1 += p;
    p2 += p * p;
  }
  const dm = d1 / n;
  const pm = p1 / n;
  return {
    logDensityMean: dm,
    logDensityStd: Math.sqrt(Math.max(d2 / n - dm * dm, 1e-12)),
    pitchMean: pm,
    pitchStd: Math.sqrt(Math.max(p2 / n - pm * pm, 1e-12)),
  };
}

/** Arousal from notes per second and mean pitch (and a render's velocity). */
export function arousalFrom(
  nps: number,
  pitch: number,
  stats: ArousalStats,
  velocity?: number,
): number {
  const zd = (logDensity(nps) - stats.logDensityMean) / stats.logDensityStd;
  const zp = (pitch - stats.pitchMean) / stats.pitchStd;
  let raw = AROUSAL_WEIGHTS.density * zd + AROUSAL_WEIGHTS.register * zp;
  if (velocity !== undefined) raw += AROUSAL_WEIGHTS.velocity * (velocity - 80) / 20;
  return Math.tanh(raw);
}

/** A piece's labels (a render passes its own tempo and velocity). */
export function pieceLabels(
  piece: CorpusPiece,
  stats: ArousalStats,
  render: RenderOptions = {},
): PieceLabels {
  const tempoQpm = render.tempoQpm ?? pieceTempo(piece);
  const nps = notesPerSecond(piece, tempoQpm);
  const pitch = meanPitch(piece);
  return {
    valence: pieceValence(piece),
    arousal: arousalFrom(nps, pitch, stats, render.velocity),
    tempoQpm,
    minorShare: minorShare(piece),
    modeClarity: modeClarity(piece),
    notesPerSecond: nps,
    meanPitch: pitch,
  };
}

/** Every piece's labels, by id, with the corpus's own statistics. */
export function labelCorpus(
  pieces: readonly CorpusPiece[],
  stats: ArousalStats = arousalStats(pieces),
): Map<string, PieceLabels> {
  const out = new Map<string, PieceLabels>();
  for (const p of pieces) out.set(p.id, pieceLabels(p, stats));
  return out;
}

/** The 64-value emotion vector the models see for a piece's labels. */
export function labelEmotion(labels: { valence: number; arousal: number }): Float32Array {
  return emotionVector({ valence: labels.valence, arousal: labels.arousal });
}
