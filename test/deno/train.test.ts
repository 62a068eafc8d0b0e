/** test/cases/train.ts under Deno. */

import { trainCases } from "../cases/train.ts";

for (const c of trainCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
