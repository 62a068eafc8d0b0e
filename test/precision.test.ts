/**
 * bf16 and int8 weight precision under Bun; the cases are in test/cases/precision.ts (shared
 * with Deno).
 */

import { afterAll, test } from "bun:test";
import {
  BF16_F32_BOUND,
  BF16_REFERENCE_BOUND,
  INT8_F32_BOUND,
  INT8_REFERENCE_BOUND,
  precisionCases,
  worstByPrecisionCase,
  worstInt8ByCase,
} from "./cases/precision.ts";

for (const c of precisionCases()) test(c.name, c.run, 60_000);

function report(title: string, worst: Map<string, [number, number]>): string {
  const sorted = [...worst].sort((a, b) => b[1][1] - a[1][1]).slice(0, 8);
  const lines = sorted.map(([name, [ref, f32]]) =>
    `  ${name.padEnd(40)} ${ref.toExponential(2)}  ${f32.toExponential(2)}`
  );
  return `${title}:\n${lines.join("\n")}`;
}

function int8Report(): string {
  const lines = [...worstInt8ByCase].map(([name, [ref, f32, ties, flipped]]) =>
    `  ${name.padEnd(44)} ${ref.toExponential(2)}  ${f32.toExponential(2)}  ${ties} ties, ` +
    `${flipped} rounded the other way`
  );
  return `int8 worst normalised error vs the free int8 reference (bound ${INT8_REFERENCE_BOUND}) ` +
    `and vs f32 (bound ${INT8_F32_BOUND}):\n${lines.join("\n")}`;
}

afterAll(() => {
  console.log(report(
    `bf16 worst normalised error vs reference on bf16 weights (bound ${BF16_REFERENCE_BOUND}) ` +
      `and vs f32 (bound ${BF16_F32_BOUND})`,
    worstByPrecisionCase,
  ));
  console.log(int8Report());
});
