/**
 * Restarts during publication under Deno (test/cases/rt.ts, restartStressCase).
 * CADENZA_RT_RESTARTS sets how many (default 8: a Deno Worker takes about 2 s to start here).
 */

import { restartStressCase } from "../cases/rt.ts";
import { envInt } from "../helpers.ts";

const restarts = envInt("CADENZA_RT_RESTARTS", 8);
const c = restartStressCase({ restarts, publishesBeforePause: 300, pauseMs: 5000 });
Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
