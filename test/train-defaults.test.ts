/** The default models' data -> training -> card pipeline under Bun (test/cases/train_defaults.ts). */

import { test } from "bun:test";
import { trainDefaultsCases } from "./cases/train_defaults.ts";

for (const c of trainDefaultsCases()) test(c.name, c.run, 120_000);
