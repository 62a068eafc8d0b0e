/** Limits and files changed underfoot, under Deno: the same cases as test/limits.test.ts. */

import { limitCases, rewrittenCase } from "../cases/limits.ts";
import { envInt } from "../helpers.ts";

for (const c of [...limitCases, rewrittenCase(envInt("CADENZA_REWRITE_LOADS", 300))]) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
}
