/** Block processing under Bun (cases in test/cases/process.ts). */

import { test } from "bun:test";
import { objectsCreated } from "./bun-alloc.ts";
import { processAllocationCase, processCases } from "./cases/process.ts";

// 16 objects of slack for what the JIT may create while the loop runs: one object per call
// would be 40,000.
for (const c of [...processCases, processAllocationCase(objectsCreated, 16, "JSC objects")]) {
  test(c.name, c.run, 30_000);
}
