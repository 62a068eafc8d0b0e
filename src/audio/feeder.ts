/**
 * What an audio callback runs per block, for any caller of the real-time engine (`cadenza live`
 * is one): the next block of a source into the feature extractor, 128 features out, one
 * `submit` and one `latest`, allocating nothing (test/cases/live.ts counts it). The engine is
 * only a type here: this module loads nothing of src/rt.
 */

import { CadenzaError } from "../errors.ts";
import type { EmotionOutputs } from "../pipeline/emotion.ts";
import type { RealtimeEngine } from "../rt/engine.ts";
import { FEATURE_BINS, FeatureExtractor } from "./features.ts";

/**
 * The audio callback's side: block -> features -> submit, then latest. `sampleRateHz` is the
 * source's rate (the extractor's semitone bands depend on it).
 */
export class BlockFeeder {
  readonly features = new Float32Array(FEATURE_BINS);
  readonly into: EmotionOutputs;
  submitted = 0;
  /** Blocks whose latest() call found a result. */
  resultsRead = 0;
  /**
   * Sequence number of the newest result read, -1 before the first. Kept in a typed array: a
   * sequence number past 2^31 is a double, which a plain field would box anew on every write.
   */
  readonly #lastSeq = new Float64Array([-1]);
  readonly #engine: RealtimeEngine<EmotionOutputs>;
  readonly #extractor: FeatureExtractor;
  readonly #samples: Float32Array;
  readonly #blockSamples: number;
  #position = 0;

  constructor(
    engine: RealtimeEngine<EmotionOutputs>,
    samples: Float32Array,
    blockSamples: number,
    sampleRateHz = 48_000,
  ) {
    if (engine.inputSize !== FEATURE_BINS || samples.length === 0) {
      throw new CadenzaError(
        "E_SHAPE",
        `BlockFeeder: the engine takes ${engine.inputSize} features and the source has ` +
          `${samples.length} samples; expected ${FEATURE_BINS} features and at least one sample`,
      );
    }
    this.#engine = engine;
    this.#extractor = new FeatureExtractor(sampleRateHz);
    this.into = engine.createBuffers();
    this.#samples = samples;
    this.#blockSamples = blockSamples;
  }

  /** One block. Allocates nothing (and takes no number: V8 boxes a double argument). */
  tick(): void {
    this.#pushBlock();
    this.#extractor.compute(this.features);
    this.submitted++;
    this.#engine.submit(this.features);
    if (this.readLatest()) this.resultsRead++;
  }

  /** Sequence number of the newest result read, -1 before the first. */
  get lastSeq(): number {
    return this.#lastSeq[0];
  }

  /** Copies the newest result into `into`; false when there is none. */
  readLatest(): boolean {
    const seq = this.#engine.latest(this.into);
    if (seq < 0) return false;
    this.#lastSeq[0] = seq;
    return true;
  }

  /** The next block of the source into the extractor, wrapping around at its end. */
  #pushBlock(): void {
    const samples = this.#samples;
    let remaining = this.#blockSamples;
    while (remaining > 0) {
      const count = Math.min(remaining, samples.length - this.#position);
      this.#extractor.push(samples, this.#position, count);
      this.#position += count;
      if (this.#position === samples.length) this.#position = 0;
      remaining -= count;
    }
  }
}
