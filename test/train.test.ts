/** test/cases/train.ts under Bun. */

import { test } from "bun:test";
import { trainCases } from "./cases/train.ts";

for (const c of trainCases()) test(c.name, c.run, 120_000);
