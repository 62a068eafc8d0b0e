/** The Worker's cadence model under Bun (cases in test/cases/rt_cadence.ts). */

import { test } from "bun:test";
import { cadenceCases } from "./cases/rt_cadence.ts";

for (const c of cadenceCases) test(c.name, c.run);
