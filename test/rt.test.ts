/**
 * The real-time engine under Bun (cases in test/cases/rt.ts). The allocation probe: after
 * Bun.gc(true), JSC's per-type object counts include every cell allocated since, dead or not,
 * until the next collection, and a loop that allocates nothing triggers none; so the sum of
 * the counts after 100,000 submit+latest pairs, minus the same measure around an empty loop,
 * counts the objects those calls created.
 */

import { heapStats } from "bun:jsc";
import { test } from "bun:test";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Case } from "./cases/check.ts";
import {
  allocationCase,
  argumentsCase,
  checksumCase,
  deathCase,
  failedRestart,
  graphCase,
  histogramCase,
  modelsDir,
  pipelineCase,
  policyCases,
  startFailureCase,
  statsCase,
  stopCase,
  structureCase,
} from "./cases/rt.ts";

const TIMEOUT_MS = 30_000;

function objectCount(): number {
  let total = 0;
  for (const count of Object.values(heapStats().objectTypeCounts)) total += count as number;
  return total;
}

/** Objects created by body(calls), less those an empty loop of the same shape creates. */
function objectsCreated(calls: number, body: (calls: number) => void): number {
  const measure = (run: () => void) => {
    Bun.gc(true);
    const before = objectCount();
    run();
    return objectCount() - before;
  };
  const baseline = measure(() => {
    for (let i = 0; i < calls; i++);
  });
  return measure(() => body(calls)) - baseline;
}

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
  deathCase("terminate"),
  deathCase("crash", true),
  // 16 objects of slack for what the JIT may still create while the loop runs: 100,000 calls
  // that allocated even one object each would be 6,000 times over.
  allocationCase(objectsCreated, 16, "JSC objects"),
];

for (const c of cases) test(c.name, c.run, TIMEOUT_MS);

test(
  "rt: models that vanish make restarts fail; the engine gives up and keeps the result",
  async () => {
    const source = modelsDir() ?? fileURLToPath(new URL("../models/", import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), "cadenza-rt-"));
    cpSync(source, dir, { recursive: true });
    try {
      await failedRestart(dir, () => rmSync(join(dir, "EmotionRecognizer.safetensors")));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  TIMEOUT_MS,
);
