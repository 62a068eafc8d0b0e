/**
 * The real-time engine under Deno (cases in test/cases/rt.ts), with a short torn-read stress
 * run. Deno's worker.terminate() does not stop a Worker that never returns to its event loop
 * (see src/rt/testing.ts, terminateWorker), so the watchdog is tested here with a hang.
 * The allocation case measures 100 chunks of 1,000 calls with the probe of alloc-probe.ts.
 */

import type { Case } from "../cases/check.ts";
import { envInt } from "../helpers.ts";
import { allocationCase, rareAcceptCase, rtCases, stressCase } from "../cases/rt.ts";
import { bytesPerThousand } from "./alloc-probe.ts";

const submits = envInt("CADENZA_RT_SUBMITS", 20_000);

const cases: Case[] = [
  ...rtCases,
  // 256 bytes per 1,000 calls of slack: one 12-byte number boxed per call would be 12,000.
  allocationCase(bytesPerThousand, 256, "bytes per 1,000 calls"),
  rareAcceptCase(bytesPerThousand, 256, "bytes per 1,000 calls"),
  stressCase({ submits, policy: "latest", fake: true }),
  stressCase({ submits, policy: "latest", fake: false }),
  stressCase({ submits: submits / 10, policy: "every", fake: true }),
];

for (const c of cases) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
}
