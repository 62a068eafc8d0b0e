/** test/cases/train_grad.ts under Bun. */

import { test } from "bun:test";
import { trainGradCases } from "./cases/train_grad.ts";

for (const c of trainGradCases()) test(c.name, c.run, 120_000);
