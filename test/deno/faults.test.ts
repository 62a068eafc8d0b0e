/**
 * Faults under Deno: the same cases as test/faults.test.ts. A Deno Worker takes about 2-3 s to
 * start on this machine, so the default is 10 kills for each policy (100 take about 5 minutes:
 * CADENZA_FAULT_KILLS=100, figures in docs/TESTING.md). Deno cannot terminate a Worker that
 * never yields (src/rt/testing.ts), so the Worker stopped between two operations is killed by a
 * throw only.
 */

import { killMidWriteCase, stoppedBetweenCase, workerKillCase } from "../cases/faults.ts";
import { envInt } from "../helpers.ts";

const kills = envInt("CADENZA_FAULT_KILLS", 10);

for (
  const c of [
    workerKillCase(kills, "latest"),
    workerKillCase(kills, "every"),
    stoppedBetweenCase("take", "crash"),
    stoppedBetweenCase("publish", "crash"),
    killMidWriteCase(envInt("CADENZA_FAULT_WRITES", 40)),
  ]
) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
