/**
 * int8 files and compressed pipeline directories under Bun; the cases are in
 * test/cases/compress.ts (shared with Deno).
 */

import { test } from "bun:test";
import { compressDirCases, int8FileCases } from "./cases/compress.ts";

for (const c of [...int8FileCases(), ...compressDirCases()]) test(c.name, c.run, 120_000);
