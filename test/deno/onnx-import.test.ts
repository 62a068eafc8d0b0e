/** ONNX import under Deno: the same cases as test/onnx-import.test.ts. */

import { onnxCases } from "../cases/onnx.ts";

for (const c of onnxCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
