/**
 * The soak under Bun (test/cases/soak.ts): CADENZA_SOAK_S seconds (default 30; the long run is
 * CADENZA_SOAK_S=600 CADENZA_SOAK_VERBOSE=1 nice bun test test/soak.test.ts).
 */

import { test } from "bun:test";
import { soakCase } from "./cases/soak.ts";
import { envInt } from "./helpers.ts";

const seconds = envInt("CADENZA_SOAK_S", 30);
const c = soakCase(seconds);
test(c.name, c.run, (seconds + 60) * 1000);
