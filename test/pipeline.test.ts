/**
 * The pipeline under Bun: the shared cases (test/cases/pipeline.ts, Deno runs them too) and
 * the allocation count, with the probe of test/bun-alloc.ts.
 */

import { expect, test } from "bun:test";
import { objectsCreated } from "./bun-alloc.ts";
import { EmotionPipeline } from "../src/pipeline/emotion.ts";
import { context, features, pipelineCases } from "./cases/pipeline.ts";

for (const c of pipelineCases()) test(c.name, c.run, 30_000);

// 16 objects of slack for what the JIT may create while the loop runs: one object per call
// would be 10,000 (the probe forces a collection before each chunk: test/alloc-probe.test.ts).
test("step and stepFromEmotion allocate nothing in JS (5,000 of each)", async () => {
  const pipeline = await EmotionPipeline.load();
  try {
    const x = features(3);
    const emotion = new Float32Array(64).fill(0.25);
    const ctx = context(5);
    const body = (calls: number) => {
      for (let i = 0; i < calls; i += 2) {
        pipeline.step(x, ctx);
        pipeline.stepFromEmotion(emotion, ctx);
      }
    };
    // Warm up first, so the JIT's own objects are made before the count starts.
    body(4_000);
    const created = objectsCreated(10_000, body);
    expect(created).toBeLessThanOrEqual(16);
  } finally {
    pipeline.dispose();
  }
}, 60_000);
