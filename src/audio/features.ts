/**
 * The 128 audio features the EmotionRecognizer takes, computed per block (any block size; the
 * pipeline uses 128 samples). What a listener needs to tell the music's emotion is pitch (mode,
 * harmony), loudness, brightness and how busy the music is, so the extractor hears notes:
 *
 * - a Hann-windowed 4096-point FFT over the latest 4096 samples (85 ms at 48 kHz, bins
 *   11.7 Hz apart), recomputed at every `compute`, so a 128-sample hop gives 375 frames a second;
 * - its bins folded into 96 semitone bands, MIDI notes 24..119 (C1 32.7 Hz .. B8 7.9 kHz);
 * - from the bands, a pitch-class profile (chroma) smoothed over the last seconds, how well it
 *   fits a major or a minor key by several key templates (the mode: what valence is mostly made
 *   of), plus loudness, onset strength (spectral flux), brightness and bass share.
 *
 * | index | feature |
 * |---|---|
 * | 0..95 | semitone band of MIDI note 24 + i: the level of its strongest FFT bin (bins whose centre lies within a quarter tone of the note; a band narrower than a bin reads the bin nearest the note) |
 * | 96..101 | mode now: the chroma (below) smoothed over 2 s, its Pearson correlation at the best of the 12 tonics with each of six key templates (MODE_TEMPLATES): Temperley's major and minor key profiles, the major and the harmonic minor scale (1 on the scale's pitch classes, 0 elsewhere), the major and the minor triad (0 in silence) |
 * | 102..107 | mode over the piece: the same with the chroma smoothed over 8 s (features 108..119) |
 * | 108..119 | chroma smoothed: pitch class c (C = 0) of a frame is the share of band amplitude in the bands of class c (sums to 1; 0 in silence), through a one-pole filter of time constant 8 s |
 * | 120 | loudness: the level of the window's RMS (Hann-weighted) |
 * | 121 | loudness smoothed (2 s) |
 * | 122 | onset strength: the rise of the band levels since the previous `compute`, summed over bands, per second, / 96 / 2 |
 * | 123 | onset strength smoothed (2 s): how busy the music is |
 * | 124 | brightness smoothed (2 s): the amplitude-weighted mean band index / 95 (0 in silence) |
 * | 125 | bass share: the share of band amplitude below MIDI 48 (C3) |
 * | 126 | major key clarity: Pearson's correlation of the smoothed chroma with the Krumhansl-Kessler major profile, at the best of the 12 tonics |
 * | 127 | minor key clarity: the same with the minor profile |
 *
 * A level is decibels above AMPLITUDE_FLOOR (-80 dBFS), divided by 80: log10(1 + amplitude /
 * AMPLITUDE_FLOOR) / 4, where amplitude is normalised so that a sine of amplitude A centred on a
 * bin reads A there (off-centre, the Hann window reads it up to 1.4 dB lower). Silence reads 0 and
 * a full-scale sine about 1. The smoothed features start equal to the unsmoothed ones at the first
 * `compute` after construction or `reset`, and onset strength starts at 0; so one `compute` after
 * any pattern of `push` calls depends on the latest 4096 samples alone. The filters follow the
 * samples pushed between two `compute` calls, so the features mean the same at any block size;
 * until a filter's time constant has passed since the first `compute`, it is the plain
 * (time-weighted) mean of the frames since then, so it settles from the start.
 *
 * Everything is allocated in the constructor, so `push` and `compute` can run inside an audio
 * callback.
 *
 * ```ts
 * const extractor = new FeatureExtractor(48_000);
 * const features = new Float32Array(FEATURE_COUNT);
 * // every block:
 * extractor.push(block, 0, block.length);
 * extractor.compute(features);                  // features[60 - 24] is the band of middle C
 * ```
 */

import { CadenzaError } from "../errors.ts";

export const FFT_SIZE = 4096;
/** Features per block: what the EmotionRecognizer takes. */
export const FEATURE_COUNT = 128;
/** FEATURE_COUNT under the name its first users import. */
export const FEATURE_BINS = FEATURE_COUNT;
/** The level that reads 0: -80 dB below full scale. */
export const AMPLITUDE_FLOOR = 1e-4;
/** The MIDI note of band 0, and the number of semitone bands. */
export const LOWEST_BAND_NOTE = 24;
export const BANDS = 96;
/** Where each group of features starts (see the table above). */
export const MODE_NOW = 96;
export const MODE_SMOOTHED = 102;
export const CHROMA_SMOOTHED = 108;
export const LOUDNESS = 120;
export const LOUDNESS_SMOOTHED = 121;
export const ONSET = 122;
export const ONSET_SMOOTHED = 123;
export const BRIGHTNESS_SMOOTHED = 124;
export const BASS_SHARE = 125;
export const MAJOR_CLARITY = 126;
export const MINOR_CLARITY = 127;
/** Time constant of the smoothed loudness, onset strength, brightness and of the mode now, s. */
export const SMOOTHING_SECONDS = 2;
/** Time constant of the smoothed chroma (and so of the key clarity), seconds: a key is heard
 * over several bars. */
export const CHROMA_SMOOTHING_SECONDS = 8;
/** Bands below this MIDI note count as bass (feature 127). */
export const BASS_BELOW_NOTE = 48;
const ONSET_SCALE = 1 / (BANDS * 2);
/**
 * Probe-tone ratings of the 12 pitch classes above a major and a minor tonic (Krumhansl &
 * Kessler, 1982): the key profiles src/music/keyfinder.ts also uses (a test keeps them equal).
 */
export const KEY_PROFILES: readonly (readonly number[])[] = [
  [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
  [6.33, 2.68, 3.52, 5.38, 2.6, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17],
];
/**
 * The templates of features 96..107, [major, minor] pairs rated over the 12 pitch classes above
 * the tonic: Temperley's key profiles (2001; fewer graded steps than Krumhansl-Kessler's
 * listener ratings, which the overtones of real instruments blur on audio), the major and the
 * harmonic minor scale, the major and the minor triad. On rendered corpus pieces these told the
 * mode better than the Krumhansl-Kessler correlation alone (docs/TRAINING.md).
 */
export const MODE_TEMPLATES: readonly (readonly number[])[] = [
  [5, 2, 3.5, 2, 4.5, 4, 2, 4.5, 2, 3.5, 1.5, 4],
  [5, 2, 3.5, 4.5, 2, 4, 2, 4.5, 3.5, 2, 1.5, 4],
  [1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1],
  [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1],
  [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0],
  [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0],
];
const FLOOR_DECADES = 4;
/** The real FFT runs as a complex FFT of half the size. */
const HALF = FFT_SIZE / 2;
const HALF_STAGES = 11;
const MASK = FFT_SIZE - 1;

/** The level of an amplitude: 0 at AMPLITUDE_FLOOR and below... about 1 at full scale. */
export function amplitudeLevel(amplitude: number): number {
  return Math.log10(1 + amplitude / AMPLITUDE_FLOOR) / FLOOR_DECADES;
}

/** The frequency of a MIDI note (A4 = 69 = 440 Hz). */
export function midiHz(note: number): number {
  return 440 * Math.pow(2, (note - 69) / 12);
}

/**
 * The FFT bins band `band` reads at `sampleRateHz`: [first, last] inclusive, or [-1, -1] when
 * the band lies at or above Nyquist. Bins whose centre lies in [note - 1/2, note + 1/2)
 * semitones; when none does, the bin nearest the note's frequency.
 */
export function bandBins(band: number, sampleRateHz: number): [number, number] {
  const binHz = sampleRateHz / FFT_SIZE;
  const note = LOWEST_BAND_NOTE + band;
  const centre = midiHz(note);
  const nyquistBin = FFT_SIZE / 2;
  if (centre / binHz >= nyquistBin) return [-1, -1];
  const first = Math.ceil(midiHz(note - 0.5) / binHz);
  const last = Math.min(nyquistBin, Math.ceil(midiHz(note + 0.5) / binHz) - 1);
  if (last < first) {
    const nearest = Math.round(centre / binHz);
    return [nearest, nearest];
  }
  return [first, last];
}

export class FeatureExtractor {
  readonly sampleRateHz: number;
  /** The latest FFT_SIZE samples, a ring; #write is where the next sample goes. */
  readonly #history = new Float32Array(FFT_SIZE);
  #write = 0;
  readonly #window = new Float64Array(FFT_SIZE);
  readonly #re = new Float64Array(HALF);
  readonly #im = new Float64Array(HALF);
  readonly #specRe = new Float64Array(HALF + 1);
  readonly #specIm = new Float64Array(HALF + 1);
  readonly #cos = new Float64Array(HALF);
  readonly #sin = new Float64Array(HALF);
  readonly #bitReversed = new Uint16Array(HALF);
  readonly #bandFirst = new Int32Array(BANDS);
  readonly #bandLast = new Int32Array(BANDS);
  readonly #bandAmplitude = new Float64Array(BANDS);
  /** The previous frame's band levels (for the onset strength). */
  readonly #previousLevel = new Float64Array(BANDS);
  /** The smoothed features' state: 12 chroma (8 s), loudness, onset, brightness, 12 chroma (2 s). */
  readonly #smoothed = new Float64Array(27);
  /** The chroma of the current frame. */
  readonly #chroma = new Float64Array(12);
  /** The key profiles, centred (mean 0) and scaled to unit norm: [mode][12]. */
  readonly #profiles = new Float64Array(24);
  /** MODE_TEMPLATES the same way: [template][12]. */
  readonly #templates = new Float64Array(MODE_TEMPLATES.length * 12);
  /**
   * Doubles passed between the methods of `compute` (V8 boxes a double argument or return value
   * of a call it does not inline; a typed array never): [0] the frame's window-weighted energy,
   * [1] brightness, [2] seconds since the previous frame, [3] seconds since the first frame.
   */
  readonly #scratch = new Float64Array(4);
  /** Samples pushed since the last compute; -1 before the first compute (state unset). */
  #pending = -1;
  /** Turns |X[k]| into the amplitude of a sine centred on bin k: 2 / sum(window). */
  readonly #amplitudeScale: number;
  readonly #windowSum: number;

  constructor(sampleRateHz = 48_000) {
    if (!(Number.isFinite(sampleRateHz) && sampleRateHz >= 1000 && sampleRateHz <= 1_000_000)) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `FeatureExtractor: sampleRateHz is ${sampleRateHz}; expected 1000..1000000`,
      );
    }
    this.sampleRateHz = sampleRateHz;
    let windowSum = 0;
    for (let n = 0; n < FFT_SIZE; n++) {
      // The periodic Hann window: its sum is exactly FFT_SIZE / 2 and bins stay orthogonal.
      this.#window[n] = 0.5 - 0.5 * Math.cos((2 * Math.PI * n) / FFT_SIZE);
      windowSum += this.#window[n];
    }
    for (let n = 0; n < HALF; n++) this.#bitReversed[n] = reverseBits(n, HALF_STAGES);
    for (let k = 0; k < FFT_SIZE / 2; k++) {
      this.#cos[k] = Math.cos((2 * Math.PI * k) / FFT_SIZE);
      this.#sin[k] = -Math.sin((2 * Math.PI * k) / FFT_SIZE);
    }
    for (let b = 0; b < BANDS; b++) {
      const [first, last] = bandBins(b, sampleRateHz);
      this.#bandFirst[b] = first;
      this.#bandLast[b] = last;
    }
    for (let m = 0; m < 2; m++) {
      const profile = KEY_PROFILES[m];
      const mean = profile.reduce((a, b) => a + b, 0) / 12;
      const norm = Math.sqrt(profile.reduce((a, b) => a + (b - mean) ** 2, 0));
      for (let c = 0; c < 12; c++) this.#profiles[m * 12 + c] = (profile[c] - mean) / norm;
    }
    MODE_TEMPLATES.forEach((template, m) => {
      const mean = template.reduce((a, b) => a + b, 0) / 12;
      const norm = Math.sqrt(template.reduce((a, b) => a + (b - mean) ** 2, 0));
      for (let c = 0; c < 12; c++) this.#templates[m * 12 + c] = (template[c] - mean) / norm;
    });
    this.#amplitudeScale = 2 / windowSum;
    this.#windowSum = windowSum;
  }

  /** Appends `samples[start .. start + count)` to the history; only the latest 4096 count. */
  push(samples: Float32Array, start: number, count: number): void {
    const whole = Number.isInteger(start) && Number.isInteger(count);
    if (!(whole && start >= 0 && count >= 0 && start + count <= samples.length)) {
      this.#throwRange(samples.length, start, count);
    }
    const history = this.#history;
    let write = this.#write;
    for (let i = start; i < start + count; i++) {
      history[write] = samples[i];
      write = (write + 1) & MASK;
    }
    this.#write = write;
    if (this.#pending >= 0) this.#pending += count;
  }

  /** Writes the 128 features of the latest samples into `into`. Allocates nothing. */
  compute(into: Float32Array): void {
    if (into.length !== FEATURE_COUNT) this.#throwInto(into.length);
    this.#loadWindowed();
    this.#transform();
    const re = this.#specRe;
    const im = this.#specIm;
    const scale = this.#amplitudeScale;
    const amplitude = this.#bandAmplitude;
    const first = this.#pending < 0;
    for (let i = MODE_NOW; i < FEATURE_COUNT; i++) into[i] = 0;
    const chroma = this.#chroma;
    chroma.fill(0);
    let total = 0;
    let bass = 0;
    let weighted = 0;
    let rise = 0;
    for (let b = 0; b < BANDS; b++) {
      let peak = 0;
      for (let k = this.#bandFirst[b]; k <= this.#bandLast[b] && k >= 0; k++) {
        // Nyquist (k = FFT_SIZE / 2) is real and appears once, not as a pair: half amplitude.
        const pair = k === FFT_SIZE / 2 ? 0.5 : 1;
        const a = Math.sqrt(re[k] * re[k] + im[k] * im[k]) * scale * pair;
        if (a > peak) peak = a;
      }
      amplitude[b] = peak;
      const level = Math.log10(1 + peak / AMPLITUDE_FLOOR) / FLOOR_DECADES;
      into[b] = level;
      if (!first && level > this.#previousLevel[b]) rise += level - this.#previousLevel[b];
      this.#previousLevel[b] = level;
      chroma[(LOWEST_BAND_NOTE + b) % 12] += peak;
      total += peak;
      weighted += b * peak;
      if (LOWEST_BAND_NOTE + b < BASS_BELOW_NOTE) bass += peak;
    }
    const audible = total > AMPLITUDE_FLOOR;
    for (let c = 0; c < 12; c++) chroma[c] = audible ? chroma[c] / total : 0;
    into[BASS_SHARE] = audible ? bass / total : 0;
    const scratch = this.#scratch;
    scratch[1] = audible ? weighted / total / (BANDS - 1) : 0;
    const rms = Math.sqrt(scratch[0] / this.#windowSum);
    into[LOUDNESS] = Math.log10(1 + rms / AMPLITUDE_FLOOR) / FLOOR_DECADES;
    const seconds = first ? 0 : this.#pending / this.sampleRateHz;
    scratch[2] = seconds;
    into[ONSET] = seconds > 0 ? (rise / seconds) * ONSET_SCALE : 0;
    this.#smooth(into, first);
    this.#keyClarity(into);
    this.#mode(into, 15, MODE_NOW);
    this.#mode(into, 0, MODE_SMOOTHED);
    this.#pending = 0;
  }

  /** Forgets the history (silence) and the smoothed state. */
  reset(): void {
    this.#history.fill(0);
    this.#write = 0;
    this.#pending = -1;
    this.#previousLevel.fill(0);
    this.#smoothed.fill(0);
    this.#scratch.fill(0);
  }

  /** The smoothed features: one-pole filters over the time since the last frame. */
  #smooth(into: Float32Array, first: boolean): void {
    const s = this.#smoothed;
    const brightness = this.#scratch[1];
    const seconds = this.#scratch[2];
    // Until a filter's time constant has passed since the first frame, it is the plain mean of
    // the frames so far (weighted by the time each stands for): it settles from the start.
    const elapsed = (this.#scratch[3] += seconds);
    const mean = first ? 1 : seconds / elapsed;
    const alpha = Math.max(mean, 1 - Math.exp(-seconds / SMOOTHING_SECONDS));
    const chromaAlpha = Math.max(mean, 1 - Math.exp(-seconds / CHROMA_SMOOTHING_SECONDS));
    const chroma = this.#chroma;
    for (let c = 0; c < 12; c++) s[c] += chromaAlpha * (chroma[c] - s[c]);
    for (let c = 0; c < 12; c++) s[15 + c] += alpha * (chroma[c] - s[15 + c]);
    s[12] += alpha * (into[LOUDNESS] - s[12]);
    s[13] += alpha * (into[ONSET] - s[13]);
    s[14] += alpha * (brightness - s[14]);
    for (let c = 0; c < 12; c++) into[CHROMA_SMOOTHED + c] = s[c];
    into[LOUDNESS_SMOOTHED] = s[12];
    into[ONSET_SMOOTHED] = s[13];
    into[BRIGHTNESS_SMOOTHED] = s[14];
  }

  /** Features 126, 127: the smoothed chroma's best correlation with each key profile. */
  #keyClarity(into: Float32Array): void {
    const s = this.#smoothed;
    let mean = 0;
    for (let c = 0; c < 12; c++) mean += s[c] / 12;
    let norm = 0;
    for (let c = 0; c < 12; c++) norm += (s[c] - mean) * (s[c] - mean);
    if (!(norm > 1e-12)) {
      into[MAJOR_CLARITY] = 0;
      into[MINOR_CLARITY] = 0;
      return;
    }
    const inv = 1 / Math.sqrt(norm);
    const profiles = this.#profiles;
    for (let m = 0; m < 2; m++) {
      let best = -1;
      for (let tonic = 0; tonic < 12; tonic++) {
        let r = 0;
        for (let c = 0; c < 12; c++) r += (s[(tonic + c) % 12] - mean) * profiles[m * 12 + c];
        if (r * inv > best) best = r * inv;
      }
      into[MAJOR_CLARITY + m] = best;
    }
  }

  /**
   * Features `to`..`to` + 5: the best correlation over the 12 tonics of the chroma state at
   * #smoothed[from..from + 12) with each of MODE_TEMPLATES (0 for a flat chroma).
   */
  #mode(into: Float32Array, from: number, to: number): void {
    const s = this.#smoothed;
    let mean = 0;
    for (let c = 0; c < 12; c++) mean += s[from + c] / 12;
    let norm = 0;
    for (let c = 0; c < 12; c++) norm += (s[from + c] - mean) * (s[from + c] - mean);
    const count = this.#templates.length / 12;
    if (!(norm > 1e-12)) {
      for (let m = 0; m < count; m++) into[to + m] = 0;
      return;
    }
    const inv = 1 / Math.sqrt(norm);
    const templates = this.#templates;
    for (let m = 0; m < count; m++) {
      let best = -1;
      for (let tonic = 0; tonic < 12; tonic++) {
        let r = 0;
        for (let c = 0; c < 12; c++) {
          r += (s[from + ((tonic + c) % 12)] - mean) * templates[m * 12 + c];
        }
        if (r * inv > best) best = r * inv;
      }
      into[to + m] = best;
    }
  }

  /**
   * Oldest to newest, windowed, into the half-size FFT's input in bit-reversed order: the real
   * frame x packed as z[n] = x[2n] + i x[2n + 1]. Leaves the window-weighted energy sum(w x^2)
   * (the loudness feature's numerator) in #scratch[0].
   */
  #loadWindowed(): void {
    const history = this.#history;
    const window = this.#window;
    const order = this.#bitReversed;
    const write = this.#write;
    const re = this.#re;
    const im = this.#im;
    let power = 0;
    for (let n = 0; n < HALF; n++) {
      const even = history[(write + 2 * n) & MASK];
      const odd = history[(write + 2 * n + 1) & MASK];
      const we = window[2 * n];
      const wo = window[2 * n + 1];
      re[order[n]] = even * we;
      im[order[n]] = odd * wo;
      power += we * even * even + wo * odd * odd;
    }
    this.#scratch[0] = power;
  }

  /**
   * The spectrum of the real frame: an in-place iterative radix-2 FFT (decimation in time) of
   * the packed half-size frame, then the split that turns it into X[k], k = 0..FFT_SIZE / 2,
   * written to #specRe/#specIm.
   */
  #transform(): void {
    const re = this.#re;
    const im = this.#im;
    const cos = this.#cos;
    const sin = this.#sin;
    for (let half = 1; half < HALF; half *= 2) {
      // Twiddles of the half-size FFT are every other one of the full size's.
      const stride = FFT_SIZE / (2 * half);
      for (let group = 0; group < HALF; group += 2 * half) {
        for (let j = 0; j < half; j++) {
          const wr = cos[j * stride];
          const wi = sin[j * stride];
          const a = group + j;
          const b = a + half;
          const tr = re[b] * wr - im[b] * wi;
          const ti = re[b] * wi + im[b] * wr;
          re[b] = re[a] - tr;
          im[b] = im[a] - ti;
          re[a] += tr;
          im[a] += ti;
        }
      }
    }
    // X[k] = E[k] + W^k O[k], E[k] = (Z[k] + conj Z[M - k]) / 2, O[k] = (Z[k] - conj Z[M - k]) / 2i.
    const outRe = this.#specRe;
    const outIm = this.#specIm;
    for (let k = 0; k <= HALF; k++) {
      const a = k & (HALF - 1);
      const b = (HALF - k) & (HALF - 1);
      const er = 0.5 * (re[a] + re[b]);
      const ei = 0.5 * (im[a] - im[b]);
      const or = 0.5 * (im[a] + im[b]);
      const oi = -0.5 * (re[a] - re[b]);
      const wr = k < HALF ? cos[k] : -1;
      const wi = k < HALF ? sin[k] : 0;
      outRe[k] = er + wr * or - wi * oi;
      outIm[k] = ei + wr * oi + wi * or;
    }
  }

  #throwRange(length: number, start: number, count: number): never {
    throw new CadenzaError(
      "E_ARGUMENT",
      `FeatureExtractor.push: samples [${start}, ${start + count}): expected whole indices ` +
        `within 0..${length}`,
    );
  }

  #throwInto(length: number): never {
    throw new CadenzaError(
      "E_ARGUMENT",
      `FeatureExtractor.compute: into has ${length} values, expected ${FEATURE_COUNT}`,
    );
  }
}

function reverseBits(value: number, bits: number): number {
  let reversed = 0;
  for (let i = 0; i < bits; i++) reversed |= ((value >> i) & 1) << (bits - 1 - i);
  return reversed;
}
