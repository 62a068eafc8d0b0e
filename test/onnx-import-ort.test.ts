/**
 * The hand-built ONNX graphs of test/cases/onnx.ts run in onnxruntime-node over a whole
 * sequence, against cadenza's import of the same bytes run step by step with `process`: an
 * oracle for the ONNX semantics that does not share the test's own reading of the operator
 * definitions. Bun only (onnxruntime-node). Bound 1e-5: both float32, measured about 1e-7.
 */

import { expect, test } from "bun:test";
import * as ort from "onnxruntime-node";
import { ORT_SESSION_OPTIONS } from "../src/bench/peers.ts";
import { loadModel } from "../src/index.ts";
import { buildWithConstants, HAND_BUILT } from "./cases/onnx.ts";
import { deviation, Rng } from "./helpers.ts";

const STEPS = 24;

for (const [name, make, layout] of HAND_BUILT) {
  test(`${name}: cadenza's import agrees with onnxruntime over ${STEPS} steps`, async () => {
    const rng = new Rng(0x0e7 + name.length);
    const bytes = buildWithConstants(make(rng).graph);
    const model = await loadModel(bytes);
    try {
      const c = model.inputSize;
      const x = rng.floats(STEPS * c, -1.5, 1.5);
      const feed = new Float32Array(x.length);
      if (layout === "nct") {
        for (let t = 0; t < STEPS; t++) {
          for (let j = 0; j < c; j++) feed[j * STEPS + t] = x[t * c + j];
        }
      } else feed.set(x);
      const dims = {
        rows: [STEPS, c],
        tnc: [STEPS, 1, c],
        ntc: [1, STEPS, c],
        nct: [1, c, STEPS],
        last: [STEPS, 1, c],
      }[layout];
      const session = await ort.InferenceSession.create(bytes, { ...ORT_SESSION_OPTIONS });
      const input = session.inputNames[0];
      const result = await session.run({ [input]: new ort.Tensor("float32", feed, dims) });
      const want = result[session.outputNames[0]].data as Float32Array;
      const all = model.process(x, STEPS);
      const got = layout === "last" ? all.subarray(all.length - model.outputSize) : all;
      expect(want.length).toBe(got.length);
      const d = deviation(got, want);
      expect(d.worst).toBeLessThan(1e-5);
    } finally {
      model.dispose();
    }
  });
}
