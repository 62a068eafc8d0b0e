/** The audio front end of `cadenza live` under Bun (cases in test/cases/audio.ts). */

import { test } from "bun:test";
import { objectsCreated } from "./bun-alloc.ts";
import { audioCases, featureAllocationCase } from "./cases/audio.ts";

// 16 objects of slack for what the JIT may create while the loop runs: one object per block
// would be 20,000.
for (const c of [...audioCases, featureAllocationCase(objectsCreated, 16, "JSC objects")]) {
  test(c.name, c.run, 30_000);
}
