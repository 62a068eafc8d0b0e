/** bf16 weight precision under Bun; the cases are in test/cases/precision.ts (shared with Deno). */

import { afterAll, test } from "bun:test";
import {
  BF16_F32_BOUND,
  BF16_REFERENCE_BOUND,
  precisionCases,
  worstByPrecisionCase,
} from "./cases/precision.ts";

for (const c of precisionCases()) test(c.name, c.run, 60_000);

afterAll(() => {
  const sorted = [...worstByPrecisionCase].sort((a, b) => b[1][1] - a[1][1]).slice(0, 8);
  const lines = sorted.map(([name, [ref, f32]]) =>
    `  ${name.padEnd(40)} ${ref.toExponential(2)}  ${f32.toExponential(2)}`
  );
  console.log(
    `bf16 worst normalised error vs reference on bf16 weights (bound ${BF16_REFERENCE_BOUND}) ` +
      `and vs f32 (bound ${BF16_F32_BOUND}):\n${lines.join("\n")}`,
  );
});
