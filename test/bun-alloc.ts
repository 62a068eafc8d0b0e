/**
 * The Bun allocation probe of the audio, live and rt tests: after Bun.gc(true), JSC's per-type
 * object counts include every cell allocated since, dead or not, until the next collection,
 * and a loop that allocates nothing triggers none; so the growth over `calls` runs of body,
 * less the same measure around an empty loop, counts the objects those runs created.
 */

import { heapStats } from "bun:jsc";

function objectCount(): number {
  let total = 0;
  for (const count of Object.values(heapStats().objectTypeCounts)) total += count as number;
  return total;
}

/** Objects created by body(calls), less those an empty loop of the same shape creates. */
export function objectsCreated(calls: number, body: (calls: number) => void): number {
  const measure = (run: () => void) => {
    Bun.gc(true);
    const before = objectCount();
    run();
    return objectCount() - before;
  };
  const baseline = measure(() => {
    for (let i = 0; i < calls; i++);
  });
  return measure(() => body(calls)) - baseline;
}
