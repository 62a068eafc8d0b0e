/**
 * The Bun allocation probe of the audio, live, pipeline and rt tests. JSC's per-type object
 * counts include every cell allocated since the last collection, dead or not, so after a forced
 * collection the growth over a run counts the objects it created, as long as no collection
 * runs inside it. To keep one out, the calls run in chunks of CHUNK, each after its own
 * Bun.gc(true): a chunk that allocates one 32-byte object per call makes ~160 KB, below what
 * starts a collection, so an allocation per call shows in every chunk and cannot hide. Each
 * chunk's count is less the same measure around an empty loop (the reading's own objects).
 * The total is the typical (lower median) chunk times the chunks: one-time JIT work lands in
 * one chunk, an allocation per call in all of them. test/alloc-probe.test.ts checks both
 * directions.
 */

import { heapStats } from "bun:jsc";

/** Calls per measured chunk. */
export const CHUNK = 5000;

function objectCount(): number {
  let total = 0;
  for (const count of Object.values(heapStats().objectTypeCounts)) total += count as number;
  return total;
}

function chunkObjects(run: (calls: number) => void, calls: number): number {
  Bun.gc(true);
  const before = objectCount();
  run(calls);
  return objectCount() - before;
}

const empty = (calls: number) => {
  for (let i = 0; i < calls; i++);
};

/** Objects created by body(calls) in chunks (see above), less the empty loop's: typical total. */
export function objectsCreated(calls: number, body: (calls: number) => void): number {
  const baseline = [0, 1, 2, 3, 4].map(() => chunkObjects(empty, CHUNK)).sort((a, b) => a - b)[2];
  const chunks: number[] = [];
  for (let done = 0; done < calls; done += CHUNK) {
    const n = Math.min(CHUNK, calls - done);
    chunks.push(chunkObjects(body, n) - baseline);
  }
  return typicalTotal(chunks);
}

/**
 * The run's total as its typical chunk makes it: the lower median chunk times the number of
 * chunks. An allocation per call is in every chunk, so in the median; a few objects the JIT or
 * the runtime makes now and then land in some chunks only, and are not.
 */
export function typicalTotal(chunks: readonly number[]): number {
  const sorted = [...chunks].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] * chunks.length;
}
