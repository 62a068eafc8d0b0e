/**
 * The emotion map: named emotions -> a point on the valence/arousal plane -> the 64-value
 * emotion vector that `EmotionPipeline.stepFromEmotion` takes, and back. The vector layout is a
 * contract: the EmotionRecognizer is to be trained to output exactly this vector from audio,
 * so `emotionFromVector(recognizer output)` reads the emotion it heard.
 *
 * Layout (every value in [-1, 1], a smooth function of (v, a) = (valence, arousal)):
 * - [0] valence v, [1] arousal a (each clamped to [-1, 1]);
 * - [2..9] soft memberships of the 8 named emotions, in `EMOTION_NAMES` order:
 *   2 * exp(-d^2 / (2 * 0.5^2)) - 1, d the distance from (v, a) to the emotion's point
 *   (1 at the point, -1 far away);
 * - [10..63] 27 Fourier feature pairs: value 10 + 2j is sin(pi/2 * (kx_j v + ky_j a)) and
 *   11 + 2j its cos, for the 27 fixed frequency pairs of `FOURIER_FREQUENCIES`.
 *
 * Tempo, meter and key follow the usual music-psychology mapping: valence sets the mode (major
 * at v >= 0, minor below), arousal the tempo (60 + 45 (a + 1) quarter notes a minute: 60 at
 * a = -1, 105 at 0, 150 at 1); the tonic and meter come from the nearest named emotion.
 *
 * ```ts
 * const point = emotionPoint("joyful");          // { valence: 0.8, arousal: 0.55 }
 * const vec = emotionVector(point);               // Float32Array(64)
 * emotionFromVector(vec).name;                    // "joyful"
 * ```
 */

import { CadenzaError } from "../errors.ts";

export const EMOTION_VECTOR_SIZE = 64;

export const EMOTION_NAMES = [
  "joyful",
  "tender",
  "calm",
  "sad",
  "angry",
  "fearful",
  "triumphant",
  "mysterious",
] as const;

export type EmotionName = (typeof EMOTION_NAMES)[number];

export interface EmotionPoint {
  /** -1 (unpleasant) .. 1 (pleasant). */
  valence: number;
  /** -1 (sleepy, still) .. 1 (excited, energetic). */
  arousal: number;
}

export type Mode = "major" | "minor";

/** What the music takes from an emotion when the user does not say. */
export interface EmotionDefaults {
  /** Quarter notes per minute. */
  tempo: number;
  meter: [number, number];
  /** Tonic pitch class 0 (C) .. 11 (B). */
  tonic: number;
  mode: Mode;
}

interface NamedEmotion extends EmotionPoint {
  /** Tonic pitch class of its key (the mode follows valence). */
  tonic: number;
  meter: [number, number];
}

/**
 * The named emotions' points (a circumplex: pleasant-excited top right, unpleasant-still bottom
 * left) with the tonic and meter each one suggests.
 */
export const NAMED_EMOTIONS: Readonly<Record<EmotionName, Readonly<NamedEmotion>>> = Object
  .freeze({
    joyful: { valence: 0.8, arousal: 0.55, tonic: 7, meter: [4, 4] }, // G major
    tender: { valence: 0.6, arousal: -0.45, tonic: 5, meter: [3, 4] }, // F major
    calm: { valence: 0.35, arousal: -0.85, tonic: 0, meter: [4, 4] }, // C major
    sad: { valence: -0.7, arousal: -0.55, tonic: 2, meter: [4, 4] }, // D minor
    angry: { valence: -0.6, arousal: 0.85, tonic: 0, meter: [4, 4] }, // C minor
    fearful: { valence: -0.8, arousal: 0.35, tonic: 6, meter: [4, 4] }, // F# minor
    triumphant: { valence: 0.55, arousal: 0.95, tonic: 2, meter: [4, 4] }, // D major
    mysterious: { valence: -0.25, arousal: -0.15, tonic: 11, meter: [6, 8] }, // B minor
  });

/** Width of the membership kernel on the V/A plane. */
const MEMBERSHIP_SIGMA = 0.5;

/** The 27 (kx, ky) frequency pairs of the Fourier features, in units of pi/2. */
export const FOURIER_FREQUENCIES: readonly (readonly [number, number])[] = Object.freeze(
  (() => {
    const pairs: [number, number][] = [];
    for (let ky = 1; ky <= 3; ky++) pairs.push([0, ky]);
    for (let kx = 1; kx <= 3; kx++) for (let ky = -3; ky <= 3; ky++) pairs.push([kx, ky]);
    for (let ky = -1; ky <= 1; ky++) pairs.push([4, ky]);
    return pairs;
  })(),
);

const clamp1 = (x: number) => Math.max(-1, Math.min(1, x));

export function isEmotionName(name: string): name is EmotionName {
  return (EMOTION_NAMES as readonly string[]).includes(name);
}

/** The point of a named emotion, or a given point checked (finite, within [-1, 1]). */
export function emotionPoint(emotion: EmotionName | string | EmotionPoint): EmotionPoint {
  if (typeof emotion === "string") {
    if (!isEmotionName(emotion)) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `unknown emotion "${emotion}"; known emotions: ${EMOTION_NAMES.join(", ")}`,
      );
    }
    const { valence, arousal } = NAMED_EMOTIONS[emotion];
    return { valence, arousal };
  }
  for (const field of ["valence", "arousal"] as const) {
    const value = emotion?.[field];
    if (typeof value !== "number" || !Number.isFinite(value) || value < -1 || value > 1) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `emotion ${field} must be a number in [-1, 1], got ${String(value)}`,
      );
    }
  }
  return { valence: emotion.valence, arousal: emotion.arousal };
}

/** Writes the 64-value vector of (valence, arousal) into `into` (allocates nothing). */
export function writeEmotionVector(point: EmotionPoint, into: Float32Array): Float32Array {
  if (into.length !== EMOTION_VECTOR_SIZE) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `writeEmotionVector: into must hold ${EMOTION_VECTOR_SIZE} values, got ${into.length}`,
    );
  }
  const v = clamp1(point.valence);
  const a = clamp1(point.arousal);
  into[0] = v;
  into[1] = a;
  for (let k = 0; k < EMOTION_NAMES.length; k++) {
    const named = NAMED_EMOTIONS[EMOTION_NAMES[k]];
    const dv = v - named.valence;
    const da = a - named.arousal;
    const d2 = dv * dv + da * da;
    into[2 + k] = 2 * Math.exp(-d2 / (2 * MEMBERSHIP_SIGMA * MEMBERSHIP_SIGMA)) - 1;
  }
  for (let j = 0; j < FOURIER_FREQUENCIES.length; j++) {
    const [kx, ky] = FOURIER_FREQUENCIES[j];
    const phase = (Math.PI / 2) * (kx * v + ky * a);
    into[10 + 2 * j] = Math.sin(phase);
    into[11 + 2 * j] = Math.cos(phase);
  }
  return into;
}

/** The 64-value emotion vector of a named emotion or a V/A point. */
export function emotionVector(emotion: EmotionName | string | EmotionPoint): Float32Array {
  return writeEmotionVector(emotionPoint(emotion), new Float32Array(EMOTION_VECTOR_SIZE));
}

/** The named emotion nearest to a point of the plane. */
export function nearestEmotion(point: EmotionPoint): EmotionName {
  let best: EmotionName = EMOTION_NAMES[0];
  let bestD = Infinity;
  for (const name of EMOTION_NAMES) {
    const named = NAMED_EMOTIONS[name];
    const d = (point.valence - named.valence) ** 2 + (point.arousal - named.arousal) ** 2;
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  return best;
}

export interface DecodedEmotion extends EmotionPoint {
  /** The named emotion nearest to (valence, arousal). */
  name: EmotionName;
}

/**
 * Reads a 64-value emotion vector back: valence and arousal are values 0 and 1 (clamped to
 * [-1, 1]; NaN reads 0), the name the nearest named emotion to that point.
 */
export function emotionFromVector(vector: ArrayLike<number>): DecodedEmotion {
  if (vector.length !== EMOTION_VECTOR_SIZE) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `emotionFromVector: expected ${EMOTION_VECTOR_SIZE} values, got ${vector.length}`,
    );
  }
  const valence = Number.isNaN(vector[0]) ? 0 : clamp1(vector[0]);
  const arousal = Number.isNaN(vector[1]) ? 0 : clamp1(vector[1]);
  return { valence, arousal, name: nearestEmotion({ valence, arousal }) };
}

/** Quarter notes per minute for an arousal: 60 at -1, 105 at 0, 150 at 1. */
export function tempoForArousal(arousal: number): number {
  return Math.round(60 + 45 * (clamp1(arousal) + 1));
}

/** Major for valence >= 0, minor below. */
export function modeForValence(valence: number): Mode {
  return valence >= 0 ? "major" : "minor";
}

/** Tempo, meter and key for an emotion (tonic and meter from the nearest named emotion). */
export function emotionDefaults(point: EmotionPoint): EmotionDefaults {
  const named = NAMED_EMOTIONS[nearestEmotion(point)];
  return {
    tempo: tempoForArousal(point.arousal),
    meter: [named.meter[0], named.meter[1]],
    tonic: named.tonic,
    mode: modeForValence(point.valence),
  };
}
