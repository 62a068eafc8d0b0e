/**
 * The ONNX exporter, checked by running its output in onnxruntime-node against two
 * independent implementations: bench/plain.ts (itself checked here against the float64
 * reference of test/reference.ts) and cadenza. Every layer kind, several steps past the KV
 * cache's length so the ring wraps, and a batch of independent rows.
 */
import { describe, expect, test } from "bun:test";
import * as ort from "onnxruntime-node";
import onnxProto from "onnx-proto";
import { PlainModel } from "../bench/plain.ts";
import { checkAgreement, type Stepper } from "../src/bench/agreement.ts";
import { ORT_SESSION_OPTIONS } from "../src/bench/peers.ts";
import { CadenzaError } from "../src/errors.ts";
import { exportOnnx, OnnxStepper } from "../src/model/formats/onnx-export.ts";
import type { LayerKind, ModelSpec } from "../src/model/spec.ts";
import { modelFromSpec } from "../src/index.ts";
import { ALL_ACTIVATIONS, ALL_KINDS, deviation, randomModel, Rng } from "./helpers.ts";
import { ReferenceModel } from "./reference.ts";

/** float32 implementations of the same float64 maths: measured ~1e-6, bounded well above. */
const TOLERANCE = 1e-5;
/** Past the longest context helpers.ts draws (6), so every KV cache wraps. */
const STEPS = 10;

function modelAround(rng: Rng, kind: LayerKind, inputSize = 17): ModelSpec {
  return randomModel(rng, ["dense", kind, "dense"], inputSize, [
    { outputSize: 12, activation: "tanh" },
    {},
    { outputSize: 5, activation: "linear" },
  ]);
}

async function ortStepper(spec: ModelSpec, batch = 1) {
  const exported = exportOnnx(spec);
  const session = await ort.InferenceSession.create(exported.bytes, { ...ORT_SESSION_OPTIONS });
  const state = new OnnxStepper(ort, exported, batch);
  return {
    exported,
    async step(x: Float32Array): Promise<Float32Array> {
      state.input.set(x);
      return state.accept(await session.run(state.feeds));
    },
    reset: () => state.reset(),
  };
}

function inputs(rng: Rng, size: number, count = STEPS): Float32Array[] {
  return Array.from({ length: count }, () => rng.floats(size, -1.5, 1.5));
}

describe("bench/plain.ts", () => {
  for (const kind of ALL_KINDS) {
    test(`${kind} matches the float64 reference`, () => {
      const rng = new Rng(100 + ALL_KINDS.indexOf(kind));
      const spec = modelAround(rng, kind);
      const plain = new PlainModel(spec);
      const reference = new ReferenceModel(spec);
      for (const x of inputs(rng, spec.inputSize)) {
        const d = deviation(plain.forward(x), reference.forward(x));
        expect(d.worst).toBeLessThan(TOLERANCE);
      }
    });
  }
});

describe("exportOnnx in onnxruntime-node", () => {
  for (const kind of ALL_KINDS) {
    test(`${kind} agrees with plain TS and cadenza, step by step`, async () => {
      const rng = new Rng(200 + ALL_KINDS.indexOf(kind));
      const spec = modelAround(rng, kind);
      const onnx = await ortStepper(spec);
      const plain = new PlainModel(spec);
      const cadenza = await modelFromSpec(spec);
      try {
        for (const x of inputs(rng, spec.inputSize)) {
          const got = await onnx.step(x);
          expect(deviation(got, plain.forward(x)).worst).toBeLessThan(TOLERANCE);
          expect(deviation(got, cadenza.forward(x)).worst).toBeLessThan(TOLERANCE);
        }
      } finally {
        cadenza.dispose();
      }
    });
  }

  test("every activation of a dense layer", async () => {
    const rng = new Rng(300);
    for (const activation of ALL_ACTIVATIONS) {
      const spec = randomModel(rng, ["dense"], 9, [{ outputSize: 7, activation }]);
      const onnx = await ortStepper(spec);
      const plain = new PlainModel(spec);
      const x = rng.floats(9, -3, 3);
      expect(deviation(await onnx.step(x), plain.forward(x)).worst).toBeLessThan(TOLERANCE);
    }
  });

  test("rows of a batch step independently, each with its own state", async () => {
    const rng = new Rng(400);
    const spec = randomModel(rng, ["lstm", "transformer", "conv1d", "gru"], 8, [
      { outputSize: 8 },
      { heads: 2, context: 3 },
      { outputSize: 6, kernelSize: 3 },
      {},
    ]);
    const rows = 3;
    const onnx = await ortStepper(spec, rows);
    const plains = Array.from({ length: rows }, () => new PlainModel(spec));
    for (let step = 0; step < 6; step++) {
      const x = rng.floats(rows * 8, -1, 1);
      const got = await onnx.step(x);
      const n = plains[0].outputSize;
      plains.forEach((plain, r) => {
        const want = plain.forward(x.subarray(r * 8, (r + 1) * 8));
        expect(deviation(got.subarray(r * n, (r + 1) * n), want).worst).toBeLessThan(TOLERANCE);
      });
    }
  });

  test("reset returns to the start state", async () => {
    const rng = new Rng(500);
    const spec = modelAround(rng, "attention");
    const onnx = await ortStepper(spec);
    const xs = inputs(rng, spec.inputSize, 4);
    const first: Float32Array[] = [];
    for (const x of xs) first.push(Float32Array.from(await onnx.step(x)));
    onnx.reset();
    for (const [i, x] of xs.entries()) {
      expect(Array.from(await onnx.step(x))).toEqual(Array.from(first[i]));
    }
  });

  test("the file declares opset 17, the data path and every state", () => {
    const spec = modelAround(new Rng(600), "lstm");
    const exported = exportOnnx(spec, { name: "probe" });
    const model = onnxProto.onnx.ModelProto.decode(exported.bytes);
    expect(String(model.opsetImport[0].version)).toBe("17");
    expect(model.graph?.name).toBe("probe");
    expect(model.graph?.input.map((v) => v.name)).toEqual(["input", "state.1.h", "state.1.c"]);
    expect(model.graph?.output.map((v) => v.name)).toEqual([
      "state.1.h.next",
      "state.1.c.next",
      "output",
    ]);
    const h = spec.layers[1].outputSize;
    expect(exported.states.map((s) => s.initialShape(4))).toEqual([[1, 4, h], [1, 4, h]]);
  });

  test("refuses a spec it cannot express, naming the layer", () => {
    expect(() => exportOnnx({ inputSize: 3, layers: [] })).toThrow(CadenzaError);
    const spec = modelAround(new Rng(700), "gru");
    delete spec.layers[1].tensors.bh;
    expect(() => exportOnnx(spec)).toThrow(/layer 1 \(gru\) lacks tensor bh/);
  });
});

describe("checkAgreement", () => {
  const fixed = (name: string, offset: number): Stepper => ({
    name,
    step: (x) => x.map((v) => v + offset),
    reset: () => {},
  });
  const xs = [new Float32Array([0.5, -0.25]), new Float32Array([1, 2])];

  test("passes equal outputs and reports the worst difference", async () => {
    const rows = await checkAgreement([fixed("a", 0), fixed("b", 5e-5)], xs);
    expect(rows[0].worstAbs).toBeGreaterThan(0);
    expect(rows[0].worstAbs).toBeLessThan(1e-4);
  });

  test("throws when one implementation is off by more than the tolerance", async () => {
    await expect(checkAgreement([fixed("a", 0), fixed("b", 1e-3)], xs)).rejects.toThrow(
      /b disagrees with a/,
    );
  });

  test("a NaN output never passes", async () => {
    const nan: Stepper = { name: "nan", step: (x) => x.map(() => NaN), reset: () => {} };
    await expect(checkAgreement([fixed("a", 0), nan], xs)).rejects.toThrow(/nan disagrees/);
  });
});
