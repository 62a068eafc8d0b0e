/** int8 files and compressed pipeline directories under Deno: the cases of test/compress.test.ts. */

import { compressDirCases, int8FileCases } from "../cases/compress.ts";

for (const c of [...int8FileCases(), ...compressDirCases()]) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
}
