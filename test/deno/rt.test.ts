/**
 * The real-time engine under Deno (cases in test/cases/rt.ts), with a short torn-read stress
 * run. Deno's worker.terminate() does not stop a Worker that never returns to its event loop
 * (see RealtimeEngine.__terminateWorkerForTest), so the watchdog is tested here with a hang.
 *
 * The allocation probe: V8 counts heapUsed to the byte between collections, so the growth over
 * a chunk of calls, less what reading heapUsed allocates itself, is what the calls allocated,
 * unless a scavenge ran in it (then it is negative and that chunk counts 0). Summed over 100
 * chunks of 1,000 calls it is a lower bound on what they allocated, exact when no collection
 * ran. (Not a median: submits are accepted in bursts, so a typical chunk may not take the
 * accepting path at all.)
 */

import type { Case } from "../cases/check.ts";
import { envInt } from "../helpers.ts";
import {
  allocationCase,
  argumentsCase,
  checksumCase,
  deathCase,
  graphCase,
  histogramCase,
  pipelineCase,
  policyCases,
  startFailureCase,
  statsCase,
  stopCase,
  stressCase,
  structureCase,
} from "../cases/rt.ts";

const CHUNKS = 100;

function heapUsed(): number {
  return Deno.memoryUsage().heapUsed;
}

/** What one heapUsed() reading allocates itself (the median over empty chunks). */
function probeBytes(): number {
  const growth: number[] = [];
  for (let c = 0; c < 21; c++) {
    const before = heapUsed();
    growth.push(heapUsed() - before);
  }
  return growth.sort((a, b) => a - b)[10];
}

/** Bytes per 1,000 calls of body: chunk growths above the probe's own, summed. */
function bytesPerThousand(calls: number, body: (calls: number) => void): number {
  const chunk = calls / CHUNKS;
  const probe = probeBytes();
  let grown = 0;
  for (let c = 0; c < CHUNKS; c++) {
    const before = heapUsed();
    body(chunk);
    grown += Math.max(0, heapUsed() - before - probe);
  }
  return Math.round(grown * (1000 / calls));
}

const submits = envInt("CADENZA_RT_SUBMITS", 20_000);

const cases: Case[] = [
  checksumCase,
  histogramCase,
  structureCase,
  argumentsCase,
  ...policyCases,
  stopCase,
  pipelineCase,
  statsCase,
  graphCase,
  startFailureCase,
  deathCase("crash"),
  deathCase("stall"),
  deathCase("crash", true),
  // 256 bytes per 1,000 calls of slack: one 12-byte number boxed per call would be 12,000.
  allocationCase(bytesPerThousand, 256, "bytes per 1,000 calls"),
  stressCase({ submits, policy: "latest", fake: true }),
  stressCase({ submits, policy: "latest", fake: false }),
  stressCase({ submits: submits / 10, policy: "every", fake: true }),
];

for (const c of cases) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
}
