/**
 * The 128 audio features the EmotionRecognizer takes, computed per block: a Hann-windowed
 * 256-point FFT over the latest 256 samples, and the log-magnitude of bins 1..128 (bin 0, the
 * DC offset, is left out; bin 128 is Nyquist). Bin k is k * sampleRate / 256 Hz: at 48 kHz
 * the bins are 187.5 Hz apart. Everything is allocated in the constructor, so `push` and
 * `compute` can run inside an audio callback.
 *
 * ```ts
 * const extractor = new FeatureExtractor();
 * const features = new Float32Array(FEATURE_BINS);
 * // every block:
 * extractor.push(block, 0, block.length);
 * extractor.compute(features);                  // features[k - 1] is bin k
 * ```
 *
 * Feature value: the bin's level in decibels above AMPLITUDE_FLOOR (-80 dBFS), divided by 80:
 * log10(1 + amplitude / AMPLITUDE_FLOOR) / 4, where amplitude is normalised so that a sine of
 * amplitude A centred on a bin reads A there. Silence reads 0 and a full-scale sine about 1,
 * so the network sees a sparse vector in [0, 1] rather than a large constant offset.
 */

import { CadenzaError } from "../errors.ts";

export const FFT_SIZE = 256;
export const FEATURE_BINS = FFT_SIZE / 2;
/** The level that reads 0: -80 dB below full scale. */
export const AMPLITUDE_FLOOR = 1e-4;
const FLOOR_DECADES = 4;
const FFT_STAGES = 8;

export class FeatureExtractor {
  /** The latest FFT_SIZE samples, a ring; #write is where the next sample goes. */
  readonly #history = new Float32Array(FFT_SIZE);
  #write = 0;
  readonly #window = new Float64Array(FFT_SIZE);
  readonly #re = new Float64Array(FFT_SIZE);
  readonly #im = new Float64Array(FFT_SIZE);
  readonly #cos = new Float64Array(FFT_SIZE / 2);
  readonly #sin = new Float64Array(FFT_SIZE / 2);
  readonly #bitReversed = new Uint16Array(FFT_SIZE);
  /** Turns |X[k]| into the amplitude of a sine centred on bin k: 2 / sum(window). */
  readonly #amplitudeScale: number;

  constructor() {
    let windowSum = 0;
    for (let n = 0; n < FFT_SIZE; n++) {
      // The periodic Hann window: its sum is exactly FFT_SIZE / 2 and bins stay orthogonal.
      this.#window[n] = 0.5 - 0.5 * Math.cos((2 * Math.PI * n) / FFT_SIZE);
      windowSum += this.#window[n];
      this.#bitReversed[n] = reverseBits(n, FFT_STAGES);
    }
    for (let k = 0; k < FFT_SIZE / 2; k++) {
      this.#cos[k] = Math.cos((2 * Math.PI * k) / FFT_SIZE);
      this.#sin[k] = -Math.sin((2 * Math.PI * k) / FFT_SIZE);
    }
    this.#amplitudeScale = 2 / windowSum;
  }

  /** Appends `samples[start .. start + count)` to the history; only the latest 256 count. */
  push(samples: Float32Array, start: number, count: number): void {
    const whole = Number.isInteger(start) && Number.isInteger(count);
    if (!(whole && start >= 0 && count >= 0 && start + count <= samples.length)) {
      this.#throwRange(samples.length, start, count);
    }
    const history = this.#history;
    let write = this.#write;
    for (let i = start; i < start + count; i++) {
      history[write] = samples[i];
      write = (write + 1) & (FFT_SIZE - 1);
    }
    this.#write = write;
  }

  /** Writes the 128 features of the latest 256 samples into `into`. Allocates nothing. */
  compute(into: Float32Array): void {
    if (into.length !== FEATURE_BINS) this.#throwInto(into.length);
    this.#loadWindowed();
    this.#transform();
    const re = this.#re;
    const im = this.#im;
    const scale = this.#amplitudeScale;
    for (let k = 1; k <= FEATURE_BINS; k++) {
      // Nyquist (k = 128) is real and appears once, not as a pair: its amplitude is half.
      const pair = k === FEATURE_BINS ? 0.5 : 1;
      const amplitude = Math.sqrt(re[k] * re[k] + im[k] * im[k]) * scale * pair;
      into[k - 1] = Math.log10(1 + amplitude / AMPLITUDE_FLOOR) / FLOOR_DECADES;
    }
  }

  /** Forgets the history (silence). */
  reset(): void {
    this.#history.fill(0);
    this.#write = 0;
  }

  /** Oldest to newest, windowed, into the FFT's input in bit-reversed order. */
  #loadWindowed(): void {
    const history = this.#history;
    const window = this.#window;
    const order = this.#bitReversed;
    for (let n = 0; n < FFT_SIZE; n++) {
      const sample = history[(this.#write + n) & (FFT_SIZE - 1)];
      this.#re[order[n]] = sample * window[n];
      this.#im[order[n]] = 0;
    }
  }

  /** In-place iterative radix-2 FFT (decimation in time) of #re/#im, input bit-reversed. */
  #transform(): void {
    const re = this.#re;
    const im = this.#im;
    for (let half = 1; half < FFT_SIZE; half *= 2) {
      const stride = FFT_SIZE / (2 * half);
      for (let group = 0; group < FFT_SIZE; group += 2 * half) {
        for (let j = 0; j < half; j++) {
          const wr = this.#cos[j * stride];
          const wi = this.#sin[j * stride];
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
      `FeatureExtractor.compute: into has ${length} values, expected ${FEATURE_BINS}`,
    );
  }
}

function reverseBits(value: number, bits: number): number {
  let reversed = 0;
  for (let i = 0; i < bits; i++) reversed |= ((value >> i) & 1) << (bits - 1 - i);
  return reversed;
}
