/** `cadenza convert` under Deno: the same cases as test/convert.test.ts. */

import { convertCases } from "../cases/convert.ts";

for (const c of convertCases()) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
}
