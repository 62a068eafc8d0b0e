/** Structure-aware fuzzing of the readers under Deno: the cases of test/reader-fuzz.test.ts. */

import { readerFuzzCases, regressionCase } from "../cases/reader_fuzz.ts";
import { envInt } from "../helpers.ts";

const cases = readerFuzzCases(
  envInt("CADENZA_READER_FUZZ_ITERS", 150),
  envInt("CADENZA_READER_FUZZ_SEED", 0x14f),
);
for (const c of [regressionCase, ...cases]) Deno.test({ name: c.name, fn: c.run });
