/**
 * The Deno allocation probe of the audio, live and rt tests. V8 counts heapUsed to the byte
 * between collections, so after a forced collection (gc(), from --v8-flags=--expose-gc, which
 * `deno task test` passes) the growth over a run is what it allocated, as long as no scavenge
 * runs inside it. To keep one out the calls run in chunks of CHUNK, each after its own gc(): one
 * 16-byte object per call makes 80 KB a chunk, far below the young generation, so an allocation
 * per call shows in every chunk and cannot hide. A chunk whose heap shrank all the same saw a
 * collection: it is measured again (never counted as zero), and the probe fails if that keeps
 * happening. Each chunk's growth is less the same measure around an empty loop; the total is
 * the typical (lower median) chunk times the chunks (one-time JIT work lands in one chunk, an
 * allocation per call in all). Reported per 1,000 calls. test/deno/alloc-probe.test.ts checks both directions.
 */

/** Calls per measured chunk. */
export const CHUNK = 5000;

const gc = (globalThis as { gc?: (options?: { type: "minor" | "major" }) => void }).gc;

function collect(): void {
  if (gc === undefined) {
    throw new Error("alloc-probe: run Deno with --v8-flags=--expose-gc (deno task test does)");
  }
  // A scavenge empties the young generation, where the calls' objects would go: enough to
  // start each chunk with its whole budget, and far cheaper than a full collection.
  gc({ type: "minor" });
}

function heapUsed(): number {
  return Deno.memoryUsage().heapUsed;
}

function chunkBytes(run: (calls: number) => void, calls: number): number {
  for (let attempt = 0; attempt < 5; attempt++) {
    collect();
    const before = heapUsed();
    run(calls);
    const grown = heapUsed() - before;
    if (grown >= 0) return grown;
  }
  throw new Error("alloc-probe: a collection ran inside every attempt to measure a chunk");
}

const empty = (calls: number) => {
  for (let i = 0; i < calls; i++);
};

/** Bytes per 1,000 calls of body, in chunks (see above), less the empty loop's, typical. */
export function bytesPerThousand(calls: number, body: (calls: number) => void): number {
  const baseline = [0, 1, 2, 3, 4].map(() => chunkBytes(empty, CHUNK)).sort((a, b) => a - b)[2];
  const chunks: number[] = [];
  for (let done = 0; done < calls; done += CHUNK) {
    const n = Math.min(CHUNK, calls - done);
    chunks.push(chunkBytes(body, n) - baseline);
  }
  // The lower median chunk times the chunks: an allocation per call is in every chunk, so in
  // the median; what the JIT or the runtime makes now and then lands in some chunks only.
  const sorted = [...chunks].sort((a, b) => a - b);
  const typical = sorted[Math.floor((sorted.length - 1) / 2)] * chunks.length;
  return Math.round(typical * (1000 / calls));
}
