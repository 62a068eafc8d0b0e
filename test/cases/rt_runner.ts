/**
 * A StepRunner for the real-time engine's tests, loaded inside the Worker through the engine's
 * `runner` option. It needs no native library and takes about a microsecond a step, so results
 * are published as fast as the engine can go (the most contention a reader can meet), and its
 * outputs are a known function of the input: output k, value i = input[0] + 256 k + i.
 * An input whose [0] is NaN makes the step hang for input[1] ms, as a stuck model would.
 */

import type { RunnerConfig, StepRunner } from "../../src/rt/runner.ts";

/** The emotion pipeline's widths, so tests can swap this runner in for it. */
export const FAKE_INPUT_SIZE = 128;
export const FAKE_OUTPUTS = { emotion: 64, melody: 128, harmony: 64, dynamics: 16, groove: 32 };
export const FAKE_MODELS = ["first", "second"];

/** The value the fake runner puts at output `k`, index `i`, for an input whose [0] is `x`. */
export function fakeValue(x: number, k: number, i: number): number {
  return x + 256 * k + i;
}

/** What a hanging step waits on; nothing ever notifies it. */
const never = new Int32Array(new SharedArrayBuffer(4));

/** An input that makes the fake runner's step hang for `ms` milliseconds. */
export function hangInput(ms: number): Float32Array {
  const input = new Float32Array(FAKE_INPUT_SIZE);
  input[0] = Number.NaN;
  input[1] = ms;
  return input;
}

export function createStepRunner(_config: RunnerConfig): Promise<StepRunner> {
  const outputs = Object.values(FAKE_OUTPUTS).map((size) => new Float32Array(size));
  const modelMs = new Float64Array(FAKE_MODELS.length);
  return Promise.resolve({
    inputSize: FAKE_INPUT_SIZE,
    outputNames: Object.keys(FAKE_OUTPUTS),
    outputs,
    modelNames: FAKE_MODELS,
    modelMs,
    loadMs: 0,
    weightBytes: 0,
    step(input: Float32Array): void {
      const started = performance.now();
      const x = input[0];
      if (Number.isNaN(x)) Atomics.wait(never, 0, 0, input[1]);
      for (let k = 0; k < outputs.length; k++) {
        const output = outputs[k];
        for (let i = 0; i < output.length; i++) output[i] = fakeValue(x, k, i);
      }
      modelMs[0] = performance.now() - started;
      modelMs[1] = modelMs[0];
    },
    dispose(): void {},
  });
}
