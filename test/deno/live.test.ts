/** `cadenza live` under Deno, in-process (cases in test/cases/live.ts). */

import { feederAllocationCase, liveCases } from "../cases/live.ts";
import { bytesPerThousand } from "./alloc-probe.ts";

// 256 bytes per 1,000 blocks of slack: one 16-byte object per block would be 16,000.
const cases = [...liveCases, feederAllocationCase(bytesPerThousand, 256, "bytes per 1,000")];

for (const c of cases) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
}
