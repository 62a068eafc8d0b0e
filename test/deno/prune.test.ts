/** test/cases/prune.ts under Deno. */

import { pruneCases } from "../cases/prune.ts";

for (const c of pruneCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
