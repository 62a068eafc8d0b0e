/** Limits and files changed underfoot, under Bun (test/cases/limits.ts). */

import { test } from "bun:test";
import { limitCases, rewrittenCase } from "./cases/limits.ts";
import { envInt } from "./helpers.ts";

for (const c of [...limitCases, rewrittenCase(envInt("CADENZA_REWRITE_LOADS", 300))]) {
  test(c.name, c.run, 120_000);
}
