/** The public API under Bun; the cases live in test/cases/api.ts (Deno runs them too). */

import { test } from "bun:test";
import { apiCases } from "./cases/api.ts";

for (const c of apiCases()) test(c.name, c.run, 30_000);
