/**
 * The torn-read stress test: a reader on this thread races the Worker's publishing and checks
 * every result it reads (checksum over all five outputs and the sequence number, monotonic
 * sequence numbers, and with the fake runner the values themselves). CADENZA_RT_SUBMITS sets
 * the accepted submits per run (default 50,000); the long run is
 *
 *   CADENZA_RT_SUBMITS=1000000 bun test test/rt-stress.test.ts
 */

import { test } from "bun:test";
import { stressCase } from "./cases/rt.ts";
import { envInt } from "./helpers.ts";

const submits = envInt("CADENZA_RT_SUBMITS", 50_000);
// With the five models the run is bounded by the Worker: 8 slots freed per step of ~150 us,
// about 20 us a submit, and several times that on a loaded machine.
const timeoutMs = Math.max(120_000, submits / 2);

const cases = [
  stressCase({ submits, policy: "latest", fake: true }),
  stressCase({ submits, policy: "latest", fake: false }),
  stressCase({ submits: Math.ceil(submits / 10), policy: "every", fake: true }),
  stressCase({ submits: Math.ceil(submits / 50), policy: "every", fake: false }),
];

for (const c of cases) test(c.name, c.run, timeoutMs);
