/** `generate`, `respond` and their CLI under Deno, in-process (cases in test/cases/generate.ts). */

import { disposePipeline, generateCases, generateCliCases } from "../cases/generate.ts";

for (const c of [...generateCases, ...generateCliCases]) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
}
Deno.test({ name: "generate: dispose the shared pipeline", fn: disposePipeline });
