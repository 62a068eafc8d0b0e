/**
 * The Krumhansl-Schmuckler key finder: a duration-weighted pitch-class histogram of the pitched
 * notes, correlated (Pearson) with the Krumhansl-Kessler major and minor key profiles rotated
 * to each of the 12 tonics; the best of the 24 is the key.
 *
 * ```ts
 * const { tonic, mode, correlation, name } = findKey(seq); // e.g. 9, "minor", 0.87, "A minor"
 * ```
 */

import { CadenzaError } from "../errors.ts";
import { keyName, type NoteSequence } from "./sequence.ts";

/** Probe-tone ratings of the 12 pitch classes above a major tonic (Krumhansl & Kessler, 1982). */
export const KK_MAJOR_PROFILE: readonly number[] = [
  6.35,
  2.23,
  3.48,
  2.33,
  4.38,
  4.09,
  2.52,
  5.19,
  2.39,
  3.66,
  2.29,
  2.88,
];

/** The same for a minor tonic. */
export const KK_MINOR_PROFILE: readonly number[] = [
  6.33,
  2.68,
  3.52,
  5.38,
  2.6,
  3.53,
  2.54,
  4.75,
  3.98,
  2.69,
  3.34,
  3.17,
];

export interface KeyEstimate {
  /** Pitch class of the tonic, 0 = C .. 11 = B. */
  tonic: number;
  mode: "major" | "minor";
  /** Pearson correlation of the histogram with the chosen key's profile, -1..1. */
  correlation: number;
  /** "A minor", "Eb major". */
  name: string;
  /** All 24 correlations: [0..11] major keys on C..B, [12..23] minor keys on C..B. */
  scores: number[];
}

export interface KeyOptions {
  /** Only these instruments (default: every pitched instrument; drums never count). */
  instruments?: readonly number[];
}

/** Seconds of sounding per pitch class (drums excluded), summed over the chosen instruments. */
export function pitchClassHistogram(seq: NoteSequence, options: KeyOptions = {}): number[] {
  const histogram = new Array<number>(12).fill(0);
  const only = options.instruments === undefined ? undefined : new Set(options.instruments);
  for (const note of seq.notes) {
    if (note.isDrum || (only !== undefined && !only.has(note.instrument))) continue;
    histogram[note.pitch % 12] += Math.max(0, note.endTime - note.startTime);
  }
  return histogram;
}

function pearson(x: ArrayLike<number>, y: ArrayLike<number>, shift: number): number {
  let mx = 0;
  let my = 0;
  for (let i = 0; i < 12; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= 12;
  my /= 12;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < 12; i++) {
    const dx = x[(i + shift) % 12] - mx;
    const dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : 0;
}

/**
 * The key of a 12-bin pitch-class histogram. Throws E_ARGUMENT when it is not 12 finite,
 * non-negative values or when all bins are equal (no pitch stands out: no key).
 */
export function keyOfHistogram(histogram: ArrayLike<number>): KeyEstimate {
  if (histogram.length !== 12) {
    throw new CadenzaError("E_ARGUMENT", `keyOfHistogram: ${histogram.length} bins; expected 12`);
  }
  for (let i = 0; i < 12; i++) {
    const v = histogram[i];
    if (!Number.isFinite(v) || v < 0) {
      throw new CadenzaError("E_ARGUMENT", `keyOfHistogram: bin ${i} is ${v}; expected >= 0`);
    }
  }
  const scores: number[] = [];
  // The profile of the key on tonic t rates pitch class p with profile[(p - t) mod 12].
  for (const profile of [KK_MAJOR_PROFILE, KK_MINOR_PROFILE]) {
    for (let tonic = 0; tonic < 12; tonic++) scores.push(pearson(histogram, profile, tonic));
  }
  let best = 0;
  for (let k = 1; k < 24; k++) if (scores[k] > scores[best]) best = k;
  const first = histogram[0];
  let flat = true;
  for (let i = 1; i < 12; i++) if (histogram[i] !== first) flat = false;
  if (flat) {
    throw new CadenzaError(
      "E_ARGUMENT",
      "keyOfHistogram: every pitch class has the same weight (or there are no notes); no key",
    );
  }
  const tonic = best % 12;
  const mode = best < 12 ? "major" : "minor";
  return { tonic, mode, correlation: scores[best], name: keyName({ key: tonic, mode }), scores };
}

/** The key of a sequence's pitched notes (see keyOfHistogram for the errors). */
export function findKey(seq: NoteSequence, options: KeyOptions = {}): KeyEstimate {
  return keyOfHistogram(pitchClassHistogram(seq, options));
}
