/**
 * Faults under Bun (test/cases/faults.ts). CADENZA_FAULT_KILLS sets how many Worker kills
 * (default 100, for each policy), CADENZA_FAULT_WRITES how many killed writes (default 40).
 */

import { test } from "bun:test";
import { killMidWriteCase, stoppedBetweenCase, workerKillCase } from "./cases/faults.ts";
import { envInt } from "./helpers.ts";

const kills = envInt("CADENZA_FAULT_KILLS", 100);

for (
  const c of [
    workerKillCase(kills, "latest"),
    workerKillCase(kills, "every"),
    stoppedBetweenCase("take", "crash"),
    stoppedBetweenCase("take", "terminate"),
    stoppedBetweenCase("publish", "crash"),
    stoppedBetweenCase("publish", "terminate"),
    killMidWriteCase(envInt("CADENZA_FAULT_WRITES", 40)),
  ]
) test(c.name, c.run, 300_000);
