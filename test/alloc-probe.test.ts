/**
 * The Bun allocation probe (test/bun-alloc.ts) is sensitive enough: a body that allocates one
 * small object per call is counted at (nearly) one per call, with collections forced around
 * each chunk so none can drop them, and a body that allocates nothing stays within the slack
 * the allocation tests use (16 objects).
 */

import { expect, test } from "bun:test";
import { objectsCreated } from "./bun-alloc.ts";

const CALLS = 20_000;

test("bun probe: one object per call is counted, none is within the slack", () => {
  const kept = new Float64Array(1);
  // The objects escape into a small ring, so no compiler can keep them in registers.
  const sink: { value: number }[] = new Array(8);
  const allocating = (calls: number) => {
    for (let i = 0; i < calls; i++) {
      const box = { value: i }; // one object per call, dead 8 calls later
      sink[i & 7] = box;
      kept[0] += box.value;
    }
  };
  const clean = (calls: number) => {
    for (let i = 0; i < calls; i++) kept[0] += i;
  };
  allocating(2000);
  clean(2000);
  expect(objectsCreated(CALLS, allocating)).toBeGreaterThanOrEqual(0.95 * CALLS);
  expect(objectsCreated(CALLS, clean)).toBeLessThanOrEqual(16);
});
