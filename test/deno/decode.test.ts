/** The decoder, chords and emotion map under Deno (cases in test/cases/decode.ts). */

import { decodeCases, decoderAllocationCase } from "../cases/decode.ts";
import { bytesPerThousand } from "./alloc-probe.ts";

// 256 bytes per 1,000 steps of slack: one 16-byte object per step would be 16,000.
const cases = [...decodeCases, decoderAllocationCase(bytesPerThousand, 256, "bytes per 1,000")];

for (const c of cases) Deno.test({ name: c.name, fn: c.run });
