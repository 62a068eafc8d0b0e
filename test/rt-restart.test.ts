/**
 * Restarts during publication under Bun (test/cases/rt.ts, restartStressCase).
 * CADENZA_RT_RESTARTS sets how many (default 20).
 */

import { test } from "bun:test";
import { restartStressCase } from "./cases/rt.ts";
import { envInt } from "./helpers.ts";

const restarts = envInt("CADENZA_RT_RESTARTS", 20);
const c = restartStressCase({ restarts, publishesBeforePause: 300, pauseMs: 5000 });
test(c.name, c.run, 180_000);
