/** RTNeural conformance under Deno: the same cases as test/conformance.test.ts. */

import { conformanceCases } from "../cases/conformance.ts";

for (const c of conformanceCases()) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
}
