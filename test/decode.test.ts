/** The decoder, chords and emotion map under Bun (cases in test/cases/decode.ts). */

import { test } from "bun:test";
import { objectsCreated } from "./bun-alloc.ts";
import { decodeCases, decoderAllocationCase } from "./cases/decode.ts";

// 16 objects of slack for what the JIT may create while the loop runs: one object per step
// would be 20,000.
for (const c of [...decodeCases, decoderAllocationCase(objectsCreated, 16, "JSC objects")]) {
  test(c.name, c.run, 30_000);
}
