/** The guitar-amp model JSON under Deno: the same cases as test/amp.test.ts. */

import { ampCases } from "../cases/amp.ts";

for (const c of ampCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
