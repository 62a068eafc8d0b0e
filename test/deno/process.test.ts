/** Block processing under Deno (cases in test/cases/process.ts). */

import { processAllocationCase, processCases } from "../cases/process.ts";
import { bytesPerThousand } from "./alloc-probe.ts";

// 256 bytes per 1,000 calls of slack: one 16-byte object per call would be 32,000.
const cases = [...processCases, processAllocationCase(bytesPerThousand, 256, "bytes per 1,000")];

for (const c of cases) Deno.test({ name: c.name, fn: c.run });
