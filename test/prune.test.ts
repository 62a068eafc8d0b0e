/** test/cases/prune.ts under Bun. */

import { test } from "bun:test";
import { pruneCases } from "./cases/prune.ts";

for (const c of pruneCases()) test(c.name, c.run, 120_000);
