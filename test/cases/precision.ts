/**
 * bf16 and int8 weight precision (ModelOptions.precision; layer record word 15, weight_type,
 * in docs/DESIGN.md). Every kind, stacks, the RTNeural fixtures (bf16) and the five default
 * models at bf16 against
 *   - the float64 reference (test/reference.ts) run on the same weights rounded to bf16 here,
 *     by a rounding written independently of the library: only float32 accumulation differs;
 *   - the f32 model on the unrounded weights: the rounding of the weights differs too;
 * and at int8 against a float64 int8 reference written here from docs/DESIGN.md (weights
 * quantised per held row, every matrix input per call) and the f32 model; plus weightBytes,
 * the allocation count, and the refusals of the option and of the native parser. Shared by
 * test/precision.test.ts (Bun) and test/deno/precision.test.ts.
 */

import { loadModel, type Model, modelFromSpec } from "../../src/index.ts";
import type { LayerKind, LayerSpec, ModelSpec } from "../../src/model/spec.ts";
import { defaultModelsDir, EMOTION_MODELS, modelFile } from "../../src/pipeline/emotion.ts";
import { parseRtneural } from "../../src/model/formats/rtneural.ts";
import type { NativeApi } from "../../src/native/api.ts";
import { openNative } from "../../src/native/index.ts";
import { readFileSync } from "node:fs";
import {
  ALL_KINDS,
  describe,
  deviation,
  HEADER_WORDS,
  ODD_SIZES,
  randomModel,
  readCsv,
  RECORD_WORDS,
  recordOffset,
  Rng,
  rtneuralData,
  rtneuralModel,
  tensorOrder,
  writeImage,
} from "../helpers.ts";
import { Int8Reference, type MatchedStep } from "../int8-reference.ts";
import { ReferenceModel } from "../reference.ts";
import { type Case, check, checkDeviation, fail, rejectsCadenza, throwsCadenza } from "./check.ts";
import { type Fixture, FIXTURES as CONFORMANCE_FIXTURES } from "./conformance.ts";
import { caseSeed, stepsFor } from "./layers.ts";

/**
 * bf16 model vs the float64 reference on bf16-rounded weights, normalised as LAYER_BOUND: the
 * weights are exact, so this is the float32 accumulation and activation error of the f32
 * kernels (docs/TESTING.md), the same bound.
 */
export const BF16_REFERENCE_BOUND = 2e-5;

/**
 * bf16 model vs the f32 model (and the RTNeural fixtures' float32 outputs), normalised the same
 * way. Rounding a weight to bf16 moves it by at most 2^-8 of itself (8 significant bits, ties
 * to even), so a dot product moves by at most 2^-8 sum |w x|, several times |w . x| when terms
 * cancel, and the error grows through layers, recurrent steps and attention's softmax (a score
 * error shifts the weights of every value). Worst seen over CADENZA_TEST_SEED 0..6: 1.4e-2
 * (attention width 33); the bound is 8 * 2^-8.
 */
export const BF16_F32_BOUND = 3e-2;

/** Worst normalised errors per case: [vs reference, vs f32]. */
export const worstByPrecisionCase = new Map<string, [number, number]>();

/** The tensors a bf16 model holds as bf16, per docs/DESIGN.md (independent of src/model). */
const MATRICES: Record<LayerKind, readonly string[]> = {
  dense: ["W"],
  lstm: ["Wx", "Wh"],
  gru: ["Wx", "Wh"],
  conv1d: ["W"],
  batchnorm: [],
  layernorm: [],
  prelu: [],
  activation: [],
  attention: ["Wq", "Wk", "Wv", "Wo"],
  transformer: ["Wq", "Wk", "Wv", "Wo", "W1", "W2"],
  skip: [],
};

const scratch32 = new Float32Array(1);
const scratchBits = new Uint32Array(scratch32.buffer);

function fromBits(bits: number): number {
  scratchBits[0] = bits >>> 0;
  return scratch32[0];
}

/**
 * The bf16 value nearest to float32 `v`, ties to the even mantissa: of the two bf16 values
 * around v (v's top 16 bits, and the next one away from zero), the closer one.
 */
export function nearestBf16(v: number): number {
  scratch32[0] = v;
  const toward = scratchBits[0] & 0xffff0000;
  const below = fromBits(toward);
  if (below === v) return v;
  const away = fromBits(toward + 0x10000);
  const d_below = Math.abs(v - below);
  const d_away = Math.abs(away - v);
  if (d_below !== d_away) return d_below < d_away ? below : away;
  return ((toward >>> 16) & 1) === 0 ? below : away;
}

/** `spec` with every weight matrix rounded to bf16 (what a bf16 model computes with). */
export function roundedSpec(spec: ModelSpec): ModelSpec {
  const layers = spec.layers.map((layer): LayerSpec => {
    const tensors = { ...layer.tensors };
    for (const name of MATRICES[layer.kind]) tensors[name] = tensors[name].map(nearestBf16);
    return { ...layer, tensors };
  });
  return { ...spec, layers };
}

/** Parameter bytes as held at bf16: matrices 2 bytes an element, everything else 4. */
function bf16Bytes(spec: ModelSpec): number {
  let bytes = 0;
  for (const layer of spec.layers) {
    for (const name of tensorOrder(layer)) {
      bytes += layer.tensors[name].length * (MATRICES[layer.kind].includes(name) ? 2 : 4);
    }
  }
  return bytes;
}

function checkHeld(bf: Model, f32: Model, spec: ModelSpec, where: () => string): void {
  check(bf.precision === "bf16" && f32.precision === "f32", () => `${where()}: precision`);
  const want = bf16Bytes(spec);
  const native = bf.nativeInfo().weightBytes;
  check(
    bf.weightBytes === want && native === want,
    () => `${where()}: weightBytes ${bf.weightBytes}, native ${native}, expected ${want}`,
  );
  check(
    f32.weightBytes === f32.parameterCount * 4,
    () => `${where()}: f32 weightBytes ${f32.weightBytes}`,
  );
}

interface Plan {
  steps: number;
  batch: number;
}

/**
 * Streams steps through the bf16 model, the f32 model and the reference on rounded weights,
 * then a batch from the current state, then reset (the first step must repeat exactly). The
 * bf16 model's allocation count must not move. Returns the worst [vs reference, vs f32].
 */
async function compareBf16(spec: ModelSpec, seed: number, plan: Plan): Promise<[number, number]> {
  const rng = new Rng(seed);
  const where = () => `seed ${seed} ${describe(spec)}`;
  const ref = new ReferenceModel(roundedSpec(spec));
  const maxBatch = Math.max(plan.batch, 1);
  const bf = await modelFromSpec(spec, { precision: "bf16", maxBatch });
  const f32 = await modelFromSpec(spec, { maxBatch });
  const worst: [number, number] = [0, 0];
  const compare = (got: Float32Array, want: ArrayLike<number>, k: 0 | 1, what: string) => {
    const d = deviation(got, want);
    worst[k] = Math.max(worst[k], d.worst);
    const bound = k === 0 ? BF16_REFERENCE_BOUND : BF16_F32_BOUND;
    const against = k === 0 ? "reference on bf16 weights" : "f32 model";
    checkDeviation(d, bound, () => `${where()}: ${what} vs ${against}`);
  };
  try {
    checkHeld(bf, f32, spec, where);
    const before = bf.nativeInfo();
    const xs = Array.from({ length: plan.steps }, () => rng.floats(spec.inputSize, -2, 2));
    const first = bf.forward(xs[0]).slice();
    for (let s = 0; s < plan.steps; s++) {
      const got = s === 0 ? first : bf.forward(xs[s]).slice();
      compare(got, ref.forward(xs[s]), 0, `step ${s}`);
      compare(got, f32.forward(xs[s]), 1, `step ${s}`);
    }
    const rows = rng.floats(plan.batch * spec.inputSize, -2, 2);
    const batch = bf.forwardBatch(rows, plan.batch).slice();
    compare(batch, ref.forwardBatch(rows, plan.batch), 0, `batch of ${plan.batch}`);
    compare(batch, f32.forwardBatch(rows, plan.batch), 1, `batch of ${plan.batch}`);
    bf.reset();
    const again = bf.forward(xs[0]);
    check(again.every((v, i) => Object.is(v, first[i])), () => `${where()}: step 0 after reset`);
    const after = bf.nativeInfo();
    check(
      after.allocCount === before.allocCount && after.freeCount === before.freeCount,
      () => `${where()}: allocations ${before.allocCount} -> ${after.allocCount}`,
    );
  } finally {
    bf.dispose();
    f32.dispose();
  }
  return worst;
}

/** A random model of `kinds` seeded by the case name, and how many steps of batch 5 it runs. */
function kindModel(name: string, kinds: LayerKind[], n_in: number) {
  const seed = caseSeed(name);
  const spec = randomModel(new Rng(seed ^ 0x9e3779b9), kinds, n_in, [], 5);
  return { seed, spec, plan: { steps: stepsFor(spec), batch: 5 } };
}

function kindCase(name: string, kinds: LayerKind[], n_in: number): Case {
  return {
    name,
    run: async () => {
      const { seed, spec, plan } = kindModel(name, kinds, n_in);
      worstByPrecisionCase.set(name, await compareBf16(spec, seed, plan));
    },
  };
}

const STACKS: [string, LayerKind[], number][] = [
  ["dense lstm dense", ["dense", "lstm", "dense"], 3],
  ["conv1d gru dense", ["conv1d", "gru", "dense"], 17],
  ["transformer x2 dense", ["transformer", "transformer", "dense"], 33],
  ["dense attention lstm conv1d", ["dense", "attention", "lstm", "conv1d", "dense"], 3],
];

/** Every kind at each odd width, then the stacks, as cases named `${precision} ...`. */
function everyKind(
  precision: "bf16" | "int8",
  makeCase: (name: string, kinds: LayerKind[], n_in: number) => Case,
): Case[] {
  const cases: Case[] = [];
  for (const kind of ALL_KINDS) {
    for (const n of ODD_SIZES) cases.push(makeCase(`${precision} ${kind} width ${n}`, [kind], n));
  }
  for (const [name, kinds, n] of STACKS) {
    cases.push(makeCase(`${precision} stack ${name}`, kinds, n));
  }
  return cases;
}

/** The five default models: a few steps against the f32 model and the rounded reference. */
function defaultModels(): Case[] {
  return EMOTION_MODELS.map((info) => ({
    name: `bf16 default model ${info.name}`,
    run: async () => {
      const path = modelFile(defaultModelsDir(), info.name);
      const bf = await loadModel(path, { precision: "bf16", maxBatch: 3 });
      const spec = bf.spec;
      bf.dispose();
      const seed = caseSeed(info.name);
      worstByPrecisionCase.set(info.name, await compareBf16(spec, seed, { steps: 4, batch: 3 }));
    },
  }));
}

/** The RTNeural fixtures that load without a layer list, and full_model (fed dense's x). */
const FIXTURES: Fixture[] = [
  ...CONFORMANCE_FIXTURES.filter((f) => f.torch === undefined),
  { name: "full_model", model: "full_model.json", data: "dense" },
];

/**
 * Each fixture streamed at bf16 against the reference on rounded weights and, where the
 * fixture has them, against the framework's float32 outputs at the bf16 tolerance.
 */
function fixtureCase(f: Fixture): Case {
  return {
    name: `bf16 rtneural ${f.name}`,
    run: async () => {
      const path = rtneuralModel(f.model);
      const spec = parseRtneural(JSON.parse(readFileSync(path, "utf8")), path);
      const ref = new ReferenceModel(roundedSpec(spec));
      const xs = readCsv(rtneuralData(`${f.data}_x_python.csv`));
      const ys = f.name === "full_model" ? null : readCsv(rtneuralData(`${f.data}_y_python.csv`));
      const model = await loadModel(path, { format: "rtneural", precision: "bf16" });
      const worst: [number, number] = [0, 0];
      try {
        const x = new Float32Array(model.inputSize);
        for (let n = 0; n < xs.length; n++) {
          x.set(xs[n]);
          const got = model.forward(x);
          const d = deviation(got, ref.forward(x));
          worst[0] = Math.max(worst[0], d.worst);
          checkDeviation(d, BF16_REFERENCE_BOUND, () => `${f.name} step ${n} vs reference`);
          if (ys === null) continue;
          const e = deviation(got.subarray(0, ys[n].length), ys[n]);
          worst[1] = Math.max(worst[1], e.worst);
          checkDeviation(e, BF16_F32_BOUND, () => `${f.name} step ${n} vs framework outputs`);
        }
      } finally {
        model.dispose();
      }
      worstByPrecisionCase.set(`rtneural ${f.name}`, worst);
    },
  };
}

function setWord(image: Uint8Array, word: number, value: number): Uint8Array {
  const copy = image.slice();
  new DataView(copy.buffer).setUint32(word * 4, value >>> 0, true);
  return copy;
}

/** One layer of each kind, small, for the parser's word 15 checks. */
function kindSpecs(rng: Rng): ModelSpec[] {
  return ALL_KINDS.map((kind) =>
    randomModel(rng, [kind], 4, [{ context: 2, ffDim: 3, kernelSize: 2 }], 2)
  );
}

/**
 * `image` (of a one-layer `spec`, input 4) with word 15 set to bf16 (1) or int8 (2): refused
 * where the kind has no matrix, else it loads and runs a forward.
 */
function checkWeightTypeWord(
  api: NativeApi,
  spec: ModelSpec,
  image: Uint8Array,
  precision: "bf16" | "int8",
): void {
  const kind = spec.layers[0].kind;
  if (MATRICES[kind].length === 0) {
    const word = precision === "bf16" ? 1 : 2;
    throwsCadenza(
      () => api.destroy(api.create(image)),
      "E_FORMAT",
      new RegExp(
        `word 15 \\(weight_type\\) is ${word} \\(${precision}\\), expected 0 \\(f32\\): ` +
          "this kind has no weight",
      ),
      `${kind} at ${precision}`,
    );
    return;
  }
  const handle = api.create(image);
  try {
    const y = new Float32Array(spec.layers[0].outputSize);
    check(api.forward(handle, new Float32Array(4), y) === 0, () => `${kind}: forward`);
  } finally {
    api.destroy(handle);
  }
}

const WEIGHT_TYPE_MESSAGE =
  /layer 0 \(\w+\): word 15 \(weight_type\) is \d+, expected 0 \(f32\), 1 \(bf16\), 2 \(int8\), 3 \(sparse\) or 4 \(int8, stored quantised\)/;
/** Word 15 = 3 (sparse rows, dense only): p1 must count W's nonzeros; other kinds refuse it. */
const SPARSE_DENSE_MESSAGE = /layer 0 \(dense\): p1 \(nonzeros of a sparse W\) differs/;
const SPARSE_OTHER_MESSAGE =
  /layer 0 \(\w+\): word 15 \(weight_type\) is 3 \(sparse\), .*for dense layers only/;

function parserCases(): Case[] {
  // 4 (int8 stored quantised) changes the tensors' layout: test/compress.test.ts covers it.
  const words = [5, 0x100, 0x7fffffff, 0x80000000, 0xffffffff];
  return [{
    name: "bf16: the parser takes word 15 as 0..4 (1 only where there is a matrix)",
    run: async () => {
      const api = await openNative("safe");
      const rng = new Rng(0x15);
      for (const spec of kindSpecs(rng)) {
        const kind = spec.layers[0].kind;
        const image = writeImage(spec);
        const word15 = recordOffset(spec, 0) / 4 + RECORD_WORDS - 1;
        for (const value of [...words, rng.int(4, 0x7fffffff)]) {
          throwsCadenza(
            () => api.destroy(api.create(setWord(image, word15, value))),
            "E_FORMAT",
            WEIGHT_TYPE_MESSAGE,
            `${kind} word 15 = ${value}`,
          );
        }
        throwsCadenza(
          () => api.destroy(api.create(setWord(image, word15, 3))),
          "E_FORMAT",
          kind === "dense" ? SPARSE_DENSE_MESSAGE : SPARSE_OTHER_MESSAGE,
          `${kind} word 15 = 3 with p1 0`,
        );
        checkWeightTypeWord(api, spec, setWord(image, word15, 1), "bf16");
      }
    },
  }, {
    name: "bf16: a weight that would round to infinity is refused at bf16 only",
    run: async () => {
      const api = await openNative("safe");
      const spec = randomModel(new Rng(7), ["dense"], 3, [{ outputSize: 2 }], 1);
      spec.layers[0].tensors.W[4] = 3.4e38;
      const image = writeImage(spec);
      api.destroy(api.create(image));
      const word15 = HEADER_WORDS + RECORD_WORDS - 1;
      throwsCadenza(
        () => api.destroy(api.create(setWord(image, word15, 1))),
        "E_FORMAT",
        /layer 0 \(dense\): tensor 0 \(W\) element 4 is .*beyond the bf16 range/,
        "overflow",
      );
      await rejectsCadenza(
        () => modelFromSpec(spec, { precision: "bf16" }),
        "E_FORMAT",
        /<spec>: .*beyond the bf16 range/,
        "overflow through modelFromSpec",
      );
    },
  }];
}

function optionCases(): Case[] {
  const spec = randomModel(new Rng(3), ["dense"], 3, [{ outputSize: 2 }], 1);
  return [{
    name: "precision option: refuses anything but f32, bf16 and int8 by name",
    run: async () => {
      for (const bad of ["fp16", "INT8", "int4"]) {
        await rejectsCadenza(
          () => modelFromSpec(spec, { precision: bad as never, source: "m.json" }),
          "E_ARGUMENT",
          new RegExp(`^m\\.json: precision: expected "f32", "bf16" or "int8", got "${bad}"`),
          bad,
        );
      }
      const model = await modelFromSpec(spec);
      check(model.precision === "f32", () => `default precision ${model.precision}`);
      model.dispose();
    },
  }];
}

export function precisionCases(): Case[] {
  return [
    ...everyKind("bf16", kindCase),
    ...FIXTURES.map(fixtureCase),
    ...defaultModels(),
    ...parserCases(),
    ...optionCases(),
    ...everyKind("int8", int8KindCase),
    ...int8DefaultModels(),
    ...int8ParserCases(),
  ];
}

// ---- int8 ------------------------------------------------------------------------------------

/**
 * int8 model vs the float64 int8 reference (test/int8-reference.ts), run free over the whole
 * sequence, normalised as LAYER_BOUND. Away from rounding ties the integer sums are equal and
 * only the float32 rescale, accumulation elsewhere and activations differ, so the f32 budget
 * holds, for every kind, stack and default model alike; the reference resolves each tie (an
 * input within float32 rounding of a rounding boundary, TIE_ABS) the way that matches. One quantisation step
 * of one input or weight moves an output by |q| sx scale, about 1e-3 here: 50 times this bound.
 */
export const INT8_REFERENCE_BOUND = 2e-5;

/**
 * int8 model vs the f32 model, normalised the same way. A weight moves by at most half a step,
 * max|w_row| / 254, and an input by max|x| / 254, so a dot product of n terms moves by at most
 * about n max|w_row| max|x| / 127 and typically by sqrt(n) times a third of that: about 1% of
 * a typical |w . x| per matrix, compounding through layers, recurrent steps and softmaxes.
 * Worst seen over CADENZA_TEST_SEED 0..6: 5.4e-2 (attention width 17; the default models
 * 2.1e-2); the bound is about 2.8x that.
 */
export const INT8_F32_BOUND = 0.15;

/** Worst normalised [error vs the int8 reference, error vs f32], ties met, ties flipped. */
export const worstInt8ByCase = new Map<string, [number, number, number, number]>();

/** Rows held per kind at int8 (one scale each), from docs/DESIGN.md. */
function int8Rows(l: LayerSpec): number {
  const n = l.outputSize;
  switch (l.kind) {
    case "dense":
    case "conv1d":
      return n;
    case "lstm":
      return 4 * n; // Wx and Wh fused: one scale per fused row
    case "gru":
      return 6 * n;
    case "attention":
      return 4 * n;
    case "transformer":
      return 5 * n + (l.ffDim ?? 0);
    default:
      return 0;
  }
}

/** Parameter bytes as held at int8: matrix elements 1 byte, 4 per row scale, the rest 4. */
function int8Bytes(spec: ModelSpec): number {
  let bytes = 0;
  for (const layer of spec.layers) {
    for (const name of tensorOrder(layer)) {
      bytes += layer.tensors[name].length * (MATRICES[layer.kind].includes(name) ? 1 : 4);
    }
    bytes += 4 * int8Rows(layer);
  }
  return bytes;
}

/**
 * Streams steps through the int8 model, the int8 reference (free: its state is never taken
 * from the library) and the f32 model, then a batch from the current state, then reset (the
 * first step must repeat exactly); the allocation count must not move. Every output is held to
 * INT8_REFERENCE_BOUND against the reference and INT8_F32_BOUND against the f32 model. Returns
 * the worst normalised [vs reference, vs f32], the ties met and the ties flipped.
 */
async function compareInt8(
  spec: ModelSpec,
  seed: number,
  plan: Plan,
): Promise<[number, number, number, number]> {
  const rng = new Rng(seed);
  const where = () => `seed ${seed} ${describe(spec)}`;
  const ref = new Int8Reference(spec);
  const maxBatch = Math.max(plan.batch, 1);
  const m8 = await modelFromSpec(spec, { precision: "int8", maxBatch });
  const f32m = await modelFromSpec(spec, { maxBatch });
  const worst: [number, number, number, number] = [0, 0, 0, 0];
  const compare = (got: Float32Array, r: MatchedStep, f: Float32Array, what: string) => {
    const d = deviation(got, r.y);
    worst[0] = Math.max(worst[0], d.worst);
    worst[2] += r.ties;
    worst[3] += r.flipped;
    checkDeviation(d, INT8_REFERENCE_BOUND, () => `${where()}: ${what} vs int8 reference`);
    const e = deviation(got, f);
    worst[1] = Math.max(worst[1], e.worst);
    checkDeviation(e, INT8_F32_BOUND, () => `${where()}: ${what} vs f32 model`);
  };
  try {
    check(m8.precision === "int8", () => `${where()}: precision ${m8.precision}`);
    const want = int8Bytes(spec);
    const native = m8.nativeInfo().weightBytes;
    check(
      m8.weightBytes === want && native === want,
      () => `${where()}: int8 weightBytes ${m8.weightBytes}, native ${native}, expected ${want}`,
    );
    const before = m8.nativeInfo();
    const xs = Array.from({ length: plan.steps }, () => rng.floats(spec.inputSize, -2, 2));
    const first = m8.forward(xs[0]).slice();
    for (let s = 0; s < plan.steps; s++) {
      const got = s === 0 ? first : m8.forward(xs[s]).slice();
      compare(got, ref.forwardMatching(xs[s], got), f32m.forward(xs[s]), `step ${s}`);
    }
    const rows = rng.floats(plan.batch * spec.inputSize, -2, 2);
    const batch = m8.forwardBatch(rows, plan.batch).slice();
    const f32Batch = f32m.forwardBatch(rows, plan.batch);
    const refBatch = ref.forwardBatchMatching(rows, plan.batch, batch);
    compare(batch, refBatch, f32Batch, `batch of ${plan.batch}`);
    m8.reset();
    const again = m8.forward(xs[0]);
    check(again.every((v, i) => Object.is(v, first[i])), () => `${where()}: step 0 after reset`);
    const after = m8.nativeInfo();
    check(
      after.allocCount === before.allocCount && after.freeCount === before.freeCount,
      () => `${where()}: allocations ${before.allocCount} -> ${after.allocCount}`,
    );
  } finally {
    m8.dispose();
    f32m.dispose();
  }
  return worst;
}

function int8KindCase(name: string, kinds: LayerKind[], n_in: number): Case {
  return {
    name,
    run: async () => {
      const { seed, spec, plan } = kindModel(name, kinds, n_in);
      worstInt8ByCase.set(name, await compareInt8(spec, seed, plan));
    },
  };
}

function int8DefaultModels(): Case[] {
  return EMOTION_MODELS.map((info) => ({
    name: `int8 default model ${info.name}`,
    run: async () => {
      const path = modelFile(defaultModelsDir(), info.name);
      const m = await loadModel(path, { precision: "int8", maxBatch: 3 });
      const spec = m.spec;
      m.dispose();
      const seed = caseSeed(info.name);
      worstInt8ByCase.set(info.name, await compareInt8(spec, seed, { steps: 32, batch: 3 }));
    },
  }));
}

function int8ParserCases(): Case[] {
  return [{
    name: "int8: the parser takes word 15 = 2 where there is a matrix, refuses it elsewhere",
    run: async () => {
      const api = await openNative("safe");
      const rng = new Rng(0x16);
      for (const spec of kindSpecs(rng)) {
        const word15 = recordOffset(spec, 0) / 4 + RECORD_WORDS - 1;
        checkWeightTypeWord(api, spec, setWord(writeImage(spec), word15, 2), "int8");
      }
    },
  }];
}
