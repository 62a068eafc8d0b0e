/**
 * A fixed-bucket latency histogram kept in an Int32Array (the engine's SharedArrayBuffer, or
 * any array), so one thread records and another reads without messages or locks.
 *
 * Values are recorded in tenths of a microsecond. Buckets are log-linear: the first 16 hold one
 * unit each, then every power of two is split into 16 equal buckets, so a reported percentile
 * is within 1/16 (6.25%) of the true value. Words: [count, max, bucket 0, bucket 1, ...].
 * One writer only: counts are plain increments, and a reader may see a record half done (the
 * count without its bucket), which moves a percentile by at most one sample.
 */

/** Histogram units per microsecond (a unit is 0.1 us). */
export const HISTOGRAM_UNITS_PER_US = 10;

const SUB_BITS = 4;
const SUB_BUCKETS = 1 << SUB_BITS;
/** Values at or above 2^MAX_EXPONENT units (about 214 s) land in the last bucket. */
const MAX_EXPONENT = 31;

export const HISTOGRAM_BUCKETS = SUB_BUCKETS + (MAX_EXPONENT - SUB_BITS) * SUB_BUCKETS;
const COUNT = 0;
const MAX = 1;
const FIRST_BUCKET = 2;
/** Int32 words one histogram takes. */
export const HISTOGRAM_WORDS = FIRST_BUCKET + HISTOGRAM_BUCKETS;

/** One histogram's figures, in microseconds (0 when nothing was recorded). */
export interface LatencySummary {
  count: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

function bucketOf(units: number): number {
  if (units < SUB_BUCKETS) return units;
  const exponent = 31 - Math.clz32(units);
  const mantissa = (units >>> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
  return SUB_BUCKETS + (exponent - SUB_BITS) * SUB_BUCKETS + mantissa;
}

/** The largest value (units) that falls in bucket `index`. */
function bucketTopUnits(index: number): number {
  if (index < SUB_BUCKETS) return index;
  const exponent = SUB_BITS + Math.floor((index - SUB_BUCKETS) / SUB_BUCKETS);
  const mantissa = (index - SUB_BUCKETS) % SUB_BUCKETS;
  const width = 2 ** (exponent - SUB_BITS);
  return 2 ** exponent + (mantissa + 1) * width - 1;
}

/** Records `us` microseconds in the histogram at `words[base...]`. Allocates nothing. */
export function histogramRecord(words: Int32Array, base: number, us: number): void {
  let units = Math.floor(us * HISTOGRAM_UNITS_PER_US);
  if (!(units >= 0)) units = 0;
  if (units > 0x7fffffff) units = 0x7fffffff;
  const index = bucketOf(units);
  words[base + FIRST_BUCKET + index]++;
  if (units > words[base + MAX]) words[base + MAX] = units;
  words[base + COUNT]++;
}

/** Zeroes the histogram at `words[base...]`. */
export function histogramClear(words: Int32Array, base: number): void {
  words.fill(0, base, base + HISTOGRAM_WORDS);
}

/** Count, p50, p99 and max of the histogram at `words[base...]`. */
export function histogramSummary(words: Int32Array, base: number): LatencySummary {
  const count = words[base + COUNT];
  const maxUnits = words[base + MAX];
  return {
    count,
    p50Us: percentileUnits(words, base, count, maxUnits, 0.5) / HISTOGRAM_UNITS_PER_US,
    p99Us: percentileUnits(words, base, count, maxUnits, 0.99) / HISTOGRAM_UNITS_PER_US,
    maxUs: maxUnits / HISTOGRAM_UNITS_PER_US,
  };
}

/** The top of the bucket holding the sample of rank ceil(q * count), capped at the max. */
function percentileUnits(
  words: Int32Array,
  base: number,
  count: number,
  maxUnits: number,
  q: number,
): number {
  if (count <= 0) return 0;
  const rank = Math.max(1, Math.ceil(q * count));
  let seen = 0;
  for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
    seen += words[base + FIRST_BUCKET + i];
    if (seen >= rank) return Math.min(bucketTopUnits(i), maxUnits);
  }
  return maxUnits;
}

/** A histogram in its own array, for measurements taken outside the engine (benchmarks). */
export class LatencyHistogram {
  readonly words: Int32Array = new Int32Array(HISTOGRAM_WORDS);

  record(us: number): void {
    histogramRecord(this.words, 0, us);
  }

  summary(): LatencySummary {
    return histogramSummary(this.words, 0);
  }

  clear(): void {
    histogramClear(this.words, 0);
  }
}
