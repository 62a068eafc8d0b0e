/**
 * int8 files and compressed pipeline directories under Bun; the cases are in
 * test/cases/compress.ts (shared with Deno).
 */

import { test } from "bun:test";
import { int8FileCases } from "./cases/compress.ts";

for (const c of int8FileCases()) test(c.name, c.run, 60_000);
