/** The public API under Deno: the same cases as test/api.test.ts. */

import { apiCases } from "../cases/api.ts";

for (const c of apiCases()) Deno.test({ name: c.name, fn: c.run });
