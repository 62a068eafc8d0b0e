/**
 * The native graph under Bun: the shared cases of test/cases/pipeline.ts (Deno runs them too,
 * test/deno/graph.test.ts). The Zig unit tests in zig/graph.zig cover the same ground natively.
 */

import { test } from "bun:test";
import { graphCases } from "./cases/pipeline.ts";

for (const c of graphCases()) test(c.name, c.run, 60_000);
