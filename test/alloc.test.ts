/**
 * The hot path allocates nothing natively: after create, 1,000 forward, 1,000 forwardBatch and
 * a reset leave the model allocator's counters (cz_model_info alloc_count, free_count)
 * unchanged, for a model of every kind and a mixed stack. create itself must have counted
 * allocations, so the counter is known to be live.
 */

import { expect, test } from "bun:test";
import { modelFromSpec } from "../src/index.ts";
import type { LayerKind } from "../src/model/spec.ts";
import { ALL_KINDS, randomModel, Rng } from "./helpers.ts";

const STEPS = 1000;
const BATCH = 4;

const MODELS: [string, LayerKind[]][] = [
  ...ALL_KINDS.map((kind): [string, LayerKind[]] => [kind, [kind]]),
  ["stack", ["conv1d", "lstm", "gru", "transformer", "dense"]],
];

for (const [name, kinds] of MODELS) {
  test(`${name}: no native allocation after create`, async () => {
    const rng = new Rng(0xa110c);
    const spec = randomModel(rng, kinds, 17, [], BATCH);
    const model = await modelFromSpec(spec);
    try {
      const before = model.nativeInfo();
      expect(before.allocCount).toBeGreaterThan(0);
      const x = rng.floats(spec.inputSize, -1, 1);
      const rows = rng.floats(spec.inputSize * BATCH, -1, 1);
      for (let i = 0; i < STEPS; i++) model.forward(x);
      for (let i = 0; i < STEPS; i++) model.forwardBatch(rows, BATCH);
      model.reset();
      const after = model.nativeInfo();
      expect(after.allocCount).toBe(before.allocCount);
      expect(after.freeCount).toBe(before.freeCount);
    } finally {
      model.dispose();
    }
  });
}
