/**
 * A generated test signal for `cadenza live` when no WAV file is given: a short melody of sine
 * tones (each with a quieter octave partial) shaped by attack/decay/release envelopes, over a
 * soft held bass note, plus a little white noise. The same arguments give the same samples in
 * every runtime (the noise is a seeded xorshift32, the rest plain IEEE arithmetic).
 *
 * ```ts
 * const samples = melodySignal(48_000);         // MELODY_SECONDS of mono audio at 48 kHz
 * ```
 */

import { CadenzaError } from "../errors.ts";

/**
 * The phrase: MIDI notes, one per beat, at MELODY_BPM (C major, up and back down). It sits in
 * octaves 5-6 (523-1047 Hz), well apart from the bass note (MIDI 48), the only thing below;
 * each note is the strongest of the feature extractor's semitone bands above the bass.
 */
export const MELODY_NOTES: readonly number[] = Object.freeze([
  72,
  76,
  79,
  84,
  83,
  79,
  81,
  77,
  76,
  74,
  79,
  72,
]);
export const MELODY_BPM = 180;
/** The phrase's length: one beat per note. */
export const MELODY_SECONDS = (MELODY_NOTES.length * 60) / MELODY_BPM;
const BASS_NOTE = 48;
const MELODY_GAIN = 0.35;
const PARTIAL_GAIN = 0.12;
const BASS_GAIN = 0.15;
const NOISE_GAIN = 0.01;
const ATTACK_S = 0.01;
const DECAY_S = 0.25;
const SUSTAIN = 0.4;
const RELEASE_S = 0.05;
const MAX_SAMPLES = 2 ** 28;

export interface SignalOptions {
  /** Length in seconds (default MELODY_SECONDS, one pass of the phrase). */
  seconds?: number;
  /** Seed of the noise (default 1). */
  seed?: number;
}

/** Frequency of MIDI note `note` in Hz (A4 = 69 = 440 Hz). */
export function noteHz(note: number): number {
  return 440 * 2 ** ((note - 69) / 12);
}

/** The melody at `sampleRateHz`, mono, peaks below 0.7. */
export function melodySignal(sampleRateHz: number, options: SignalOptions = {}): Float32Array {
  const seconds = options.seconds ?? MELODY_SECONDS;
  const length = Math.round(seconds * sampleRateHz);
  if (!(sampleRateHz >= 1) || !(length >= 1) || length > MAX_SAMPLES) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `melodySignal: ${seconds} s at ${sampleRateHz} Hz is ${length} samples, ` +
        `expected 1..${MAX_SAMPLES}`,
    );
  }
  const out = new Float32Array(length);
  const beatS = 60 / MELODY_BPM;
  const bassHz = noteHz(BASS_NOTE);
  let noise = (options.seed ?? 1) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    const t = i / sampleRateHz;
    const beat = Math.floor(t / beatS);
    const note = MELODY_NOTES[beat % MELODY_NOTES.length];
    const sinceOnsetS = t - beat * beatS;
    const hz = noteHz(note);
    const phase = 2 * Math.PI * hz * sinceOnsetS;
    const tone = Math.sin(phase) * MELODY_GAIN + Math.sin(2 * phase) * PARTIAL_GAIN;
    noise ^= noise << 13;
    noise ^= noise >>> 17;
    noise ^= noise << 5;
    noise >>>= 0;
    const hiss = (noise / 4294967296 - 0.5) * 2 * NOISE_GAIN;
    const bass = Math.sin(2 * Math.PI * bassHz * t) * BASS_GAIN;
    out[i] = tone * envelope(sinceOnsetS, beatS) + bass + hiss;
  }
  return out;
}

/** Attack, decay to the sustain level, and a release that ends at the next onset. */
function envelope(sinceOnsetS: number, noteS: number): number {
  const releaseAtS = noteS - RELEASE_S;
  if (sinceOnsetS < ATTACK_S) return sinceOnsetS / ATTACK_S;
  const decayed = SUSTAIN + (1 - SUSTAIN) * Math.exp(-(sinceOnsetS - ATTACK_S) / DECAY_S);
  if (sinceOnsetS < releaseAtS) return decayed;
  const releasing = SUSTAIN + (1 - SUSTAIN) * Math.exp(-(releaseAtS - ATTACK_S) / DECAY_S);
  return releasing * Math.max(0, (noteS - sinceOnsetS) / RELEASE_S);
}
