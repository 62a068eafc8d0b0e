/** test/cases/train_cli.ts under Bun. */

import { test } from "bun:test";
import { trainCliCases } from "./cases/train_cli.ts";

for (const c of trainCliCases()) test(c.name, c.run, 120_000);
