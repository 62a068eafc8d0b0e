/** The native graph under Deno: the cases of test/graph.test.ts. */

import { graphCases } from "../cases/pipeline.ts";

for (const c of graphCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
