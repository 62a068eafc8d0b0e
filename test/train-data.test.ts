/** Training data, tasks, progress and the float64 reference under Bun (test/cases/train_data.ts). */

import { test } from "bun:test";
import { trainDataCases } from "./cases/train_data.ts";

for (const c of trainDataCases()) test(c.name, c.run, 30_000);
