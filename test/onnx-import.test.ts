/** ONNX import under Bun (cases in test/cases/onnx.ts, shared with Deno). */

import { afterAll, test } from "bun:test";
import { ONNX_BOUND, onnxCases, worstByOnnxCase } from "./cases/onnx.ts";

for (const c of onnxCases()) test(c.name, c.run, 30_000);

afterAll(() => {
  const lines = [...worstByOnnxCase].map(([name, worst]) =>
    `  ${name.padEnd(90).slice(0, 90)} ${worst.toExponential(2)}`
  );
  console.log(`onnx import worst error vs float64 (bound ${ONNX_BOUND}):\n${lines.join("\n")}`);
});
