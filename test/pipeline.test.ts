/**
 * The pipeline under Bun: the shared cases (test/cases/pipeline.ts, Deno runs them too) and
 * the allocation count, which needs bun:jsc's heap statistics.
 */

import { expect, test } from "bun:test";
import { heapStats } from "bun:jsc";
import { EmotionPipeline } from "../src/pipeline/emotion.ts";
import { features, pipelineCases } from "./cases/pipeline.ts";

for (const c of pipelineCases()) test(c.name, c.run, 30_000);

/**
 * After a full collection, the heap's live objects and its capacity. JSC only counts objects
 * when it collects, so garbage made between two readings shows as capacity: the blocks the
 * allocator had to add (measured here: one 32-byte object a step adds ~290 KB per 10,000
 * steps; a subarray per step ~620 KB).
 */
function heapReading(): { objects: number; capacity_bytes: number } {
  Bun.gc(true);
  const stats = heapStats();
  return { objects: stats.objectCount, capacity_bytes: stats.heapCapacity };
}

test("step and stepFromEmotion allocate nothing in JS (10,000 of each)", async () => {
  const pipeline = await EmotionPipeline.load();
  try {
    const x = features(3);
    const emotion = new Float32Array(64).fill(0.25);
    // Warm up first, so the JIT's own objects are made before the count starts.
    for (let i = 0; i < 2_000; i++) {
      pipeline.step(x);
      pipeline.stepFromEmotion(emotion);
    }
    const before = heapReading();
    Bun.gc(true);
    const start = heapStats().heapCapacity;
    for (let i = 0; i < 10_000; i++) {
      pipeline.step(x);
      pipeline.stepFromEmotion(emotion);
    }
    // Read before collecting: the growth is what the 20,000 calls allocated.
    const grown_bytes = heapStats().heapCapacity - start;
    const after = heapReading();
    // Slack: 64 KB is 3 bytes a call, well under one 16-byte object a call. The live count
    // moves by ~250-370 whatever the step count (heapStats' own result objects and JIT
    // structures, measured at 10,000 and 30,000 steps), against 20,000 for one retained
    // object a call.
    expect(grown_bytes).toBeLessThan(64 * 1024);
    expect(after.objects - before.objects).toBeLessThan(1_000);
  } finally {
    pipeline.dispose();
  }
}, 60_000);
