/**
 * The fake runner (rt_runner.ts) for one restart test: the second Worker that loads it (the
 * first replacement) is slow to start serving. Its ServeLoop reads `modelMs` before it
 * confirms "running": its third read (the loader's check of a runner, checkRunner in
 * src/rt/runner.ts, makes the first two) blocks until the test creates the file `release` in
 * that folder (or RELEASE_LIMIT_MS passed), which it does only after the engine gave up on
 * this Worker and started the next one. Should that check change, the test fails on a
 * "loaded" timeout, not silently. Which Worker this is comes from a counter file in the folder passed as the
 * `models` option (the engine hands that option to the runner as it is).
 */

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RunnerConfig, StepRunner } from "../../src/rt/runner.ts";
import { createStepRunner as createFake } from "./rt_runner.ts";

/** The longest the slow Worker waits for its release (a test that died leaves no file). */
const RELEASE_LIMIT_MS = 60_000;

const never = new Int32Array(new SharedArrayBuffer(4));

export async function createStepRunner(config: RunnerConfig): Promise<StepRunner> {
  const counter = join(config.models!, "workers");
  let loaded = 0;
  try {
    loaded = Number(readFileSync(counter, "utf8"));
  } catch { /* the first Worker */ }
  writeFileSync(counter, String(loaded + 1));
  const runner = await createFake(config);
  if (loaded !== 1) return runner;
  let reads = 0;
  return {
    ...runner,
    step: runner.step,
    dispose: runner.dispose,
    get modelMs() {
      if (++reads === 3) {
        const release = join(config.models!, "release");
        const until = performance.now() + RELEASE_LIMIT_MS;
        while (!existsSync(release) && performance.now() < until) Atomics.wait(never, 0, 0, 10);
      }
      return runner.modelMs;
    },
  };
}
