/**
 * Faults under Bun (test/cases/faults.ts). CADENZA_FAULT_KILLS sets how many Worker kills
 * (default 100), CADENZA_FAULT_WRITES how many killed writes (default 40).
 */

import { test } from "bun:test";
import { killMidWriteCase, workerKillCase } from "./cases/faults.ts";
import { envInt } from "./helpers.ts";

for (
  const c of [
    workerKillCase(envInt("CADENZA_FAULT_KILLS", 100)),
    killMidWriteCase(envInt("CADENZA_FAULT_WRITES", 40)),
  ]
) test(c.name, c.run, 300_000);
