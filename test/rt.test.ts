/**
 * The real-time engine under Bun (cases in test/cases/rt.ts). The allocation case counts the
 * objects 100,000 submit+latest pairs create with the probe of test/bun-alloc.ts.
 */

import { test } from "bun:test";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { objectsCreated } from "./bun-alloc.ts";
import type { Case } from "./cases/check.ts";
import {
  allocationCase,
  deathCase,
  failedRestart,
  modelsDir,
  rareAcceptCase,
  rtCases,
} from "./cases/rt.ts";

const TIMEOUT_MS = 30_000;

const cases: Case[] = [
  ...rtCases,
  // Bun's worker.terminate() stops a Worker mid-run; Deno's does not (test/deno/rt.test.ts).
  deathCase("terminate"),
  // 16 objects of slack for what the JIT may still create while the loop runs: 100,000 calls
  // that allocated even one object each would be 6,000 times over.
  allocationCase(objectsCreated, 16, "JSC objects"),
  rareAcceptCase(objectsCreated, 16, "JSC objects"),
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
