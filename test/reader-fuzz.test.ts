/**
 * Structure-aware fuzzing of the TypeScript readers under Bun (test/cases/reader_fuzz.ts).
 * CADENZA_READER_FUZZ_ITERS mutants per format (default 150), CADENZA_READER_FUZZ_SEED.
 */

import { test } from "bun:test";
import { readerFuzzCases, regressionCase } from "./cases/reader_fuzz.ts";
import { envInt } from "./helpers.ts";

const cases = readerFuzzCases(
  envInt("CADENZA_READER_FUZZ_ITERS", 150),
  envInt("CADENZA_READER_FUZZ_SEED", 0x14f),
);
for (const c of [regressionCase, ...cases]) test(c.name, c.run, 600_000);
