/**
 * Percentiles and plain timing loops, shared by `cadenza bench` (src/cli/bench.ts), the mitata
 * suites in bench/ and scripts/: one sample per call from performance.now(), summarised as
 * median, p99 and max in microseconds; and the deterministic inputs every timing uses.
 */

/** The value below which `p` percent of sorted samples lie (nearest rank). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
}

export interface LatencySummary {
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

/** Median, p99 and max of samples given in microseconds. */
export function summarizeUs(samples_us: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(samples_us).sort();
  // Nanosecond resolution is all the clocks give; more digits would only be noise in the JSON.
  const ns = (us: number) => Math.round(us * 1e3) / 1e3;
  return {
    p50Us: ns(percentile(sorted, 50)),
    p99Us: ns(percentile(sorted, 99)),
    maxUs: ns(sorted[sorted.length - 1]),
  };
}

/** Times `iterations` calls of `fn` (after `warmup` untimed ones), one sample per call. */
export function timeSync(fn: (i: number) => unknown, iterations: number, warmup: number) {
  for (let i = 0; i < warmup; i++) fn(i);
  const samples_us = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const start = performance.now();
    fn(i);
    samples_us[i] = (performance.now() - start) * 1e3;
  }
  return summarizeUs(samples_us);
}

/** timeSync for a function that returns a promise, awaited inside the timed span. */
export async function timeAsync(
  fn: (i: number) => Promise<unknown>,
  iterations: number,
  warmup: number,
): Promise<LatencySummary> {
  for (let i = 0; i < warmup; i++) await fn(i);
  const samples_us = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const start = performance.now();
    await fn(i);
    samples_us[i] = (performance.now() - start) * 1e3;
  }
  return summarizeUs(samples_us);
}

/** `count` deterministic input vectors of `size` values in [-1, 1). */
export function benchInputs(count: number, size: number, seed = 1): Float32Array[] {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
  return Array.from({ length: count }, () => Float32Array.from({ length: size }, next));
}
