/** The audio front end of `cadenza live` under Deno (cases in test/cases/audio.ts). */

import { audioCases, featureAllocationCase } from "../cases/audio.ts";
import { bytesPerThousand } from "./alloc-probe.ts";

// 256 bytes per 1,000 blocks of slack: one 16-byte object per block would be 16,000.
const cases = [...audioCases, featureAllocationCase(bytesPerThousand, 256, "bytes per 1,000")];

for (const c of cases) Deno.test({ name: c.name, fn: c.run });
