/** Hostile inputs under Deno: the same cases as test/hostile.test.ts. */

import { hostileCases } from "../cases/hostile.ts";

for (const c of hostileCases) Deno.test({ name: c.name, fn: c.run });
