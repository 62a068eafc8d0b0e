/** bf16 and int8 weight precision under Deno: the cases of test/precision.test.ts. */

import { precisionCases } from "../cases/precision.ts";

for (const c of precisionCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
