/**
 * Faults under Deno: the same cases as test/faults.test.ts. A Deno Worker takes about 2-3 s to
 * start on this machine, so the default is 10 kills (100 take about 5 minutes:
 * CADENZA_FAULT_KILLS=100, figures in docs/TESTING.md).
 */

import { killMidWriteCase, workerKillCase } from "../cases/faults.ts";
import { envInt } from "../helpers.ts";

for (
  const c of [
    workerKillCase(envInt("CADENZA_FAULT_KILLS", 10)),
    killMidWriteCase(envInt("CADENZA_FAULT_WRITES", 40)),
  ]
) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
