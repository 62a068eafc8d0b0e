/** The pipeline under Deno: the cases of test/pipeline.test.ts (less the Bun heap count). */

import { pipelineCases } from "../cases/pipeline.ts";

for (const c of pipelineCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
