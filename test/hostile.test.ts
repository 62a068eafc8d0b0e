/** Hostile inputs under Bun; the cases live in test/cases/hostile.ts (Deno runs them too). */

import { test } from "bun:test";
import { hostileCases } from "./cases/hostile.ts";

for (const c of hostileCases) test(c.name, c.run, 30_000);
