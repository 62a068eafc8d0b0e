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
import { applyActivation, ReferenceModel, sigmoid } from "../reference.ts";
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
  /layer 0 \(\w+\): word 15 \(weight_type\) is \d+, expected 0 \(f32\), 1 \(bf16\) or 2 \(int8\)/;

function parserCases(): Case[] {
  const words = [3, 4, 0x100, 0x7fffffff, 0x80000000, 0xffffffff];
  return [{
    name: "bf16: the parser takes word 15 as 0, 1 or 2 (1 only where there is a matrix)",
    run: async () => {
      const api = await openNative("safe");
      const rng = new Rng(0x15);
      for (const spec of kindSpecs(rng)) {
        const kind = spec.layers[0].kind;
        const image = writeImage(spec);
        const word15 = recordOffset(spec, 0) / 4 + RECORD_WORDS - 1;
        for (const value of [...words, rng.int(3, 0x7fffffff)]) {
          throwsCadenza(
            () => api.destroy(api.create(setWord(image, word15, value))),
            "E_FORMAT",
            WEIGHT_TYPE_MESSAGE,
            `${kind} word 15 = ${value}`,
          );
        }
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
 * int8 model vs the float64 int8 reference below, normalised as LAYER_BOUND: where the
 * reference quantises exactly the values the library quantises, the integer sums are equal and
 * only the f32 rescale, accumulation elsewhere and activations differ, so the f32 bound holds.
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

/**
 * A quantised input element whose scaled value t = x * 127 / max|x| lies within this of a
 * rounding boundary (k + 0.5) may round the other way in the library, whose x differs from the
 * reference's by float32 rounding (about 1e-6 of max|x|, so 1.3e-4 in t): there the reference
 * allows the whole effect of that element moving by one step.
 */
const INT8_TIE_MARGIN = 2e-3;

export const worstInt8ByCase = new Map<string, [number, number]>();

const f32 = Math.fround;
const MIN_NORMAL = 2 ** -126;
/** Below this an input vector counts as zeros (127 / max would overflow f32). */
const INPUT_MIN = 2 ** -121;

function halfEven(t: number): number {
  const below = Math.floor(t);
  const frac = t - below;
  if (frac !== 0.5) return frac < 0.5 ? below : below + 1;
  return below % 2 === 0 ? below : below + 1;
}

const clampQ = (q: number) => Math.min(127, Math.max(-127, q));

/** A weight matrix as an int8 model holds it: q [rows][cols] and one scale per row. */
interface QMatrix {
  rows: number;
  cols: number;
  q: Int8Array;
  scale: Float64Array;
}

/** Per row: scale = max|w| / 127 in f32 (0 below 2^-126), q = round_half_even(w / scale). */
function quantiseMatrix(w: ArrayLike<number>, rows: number, cols: number): QMatrix {
  const m = { rows, cols, q: new Int8Array(rows * cols), scale: new Float64Array(rows) };
  for (let r = 0; r < rows; r++) {
    let max = 0;
    for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(w[r * cols + c]));
    const scale = max < MIN_NORMAL ? 0 : f32(max / 127);
    m.scale[r] = scale;
    if (scale === 0) continue;
    for (let c = 0; c < cols; c++) {
      m.q[r * cols + c] = clampQ(halfEven(f32(w[r * cols + c] / scale)));
    }
  }
  return m;
}

/** A quantised input: q, its scale, and which elements sit near a rounding boundary. */
interface QInput {
  q: Int8Array;
  sx: number;
  near: number[];
}

/**
 * x quantised as the library does per call, in f32 steps: inv = 127 / max|x|, t = x * inv,
 * q = round_half_even(t); sx = max|x| / 127. `exact` says x holds the very values the library
 * quantises (model inputs, zero state); otherwise elements near a boundary are listed.
 */
function quantiseInput(x: ArrayLike<number>, exact: boolean): QInput {
  const xf = Array.from(x, (v) => f32(v));
  let max = 0;
  for (const v of xf) max = Math.max(max, Math.abs(v));
  const out: QInput = { q: new Int8Array(xf.length), sx: 0, near: [] };
  if (max < INPUT_MIN) return out;
  const inv = f32(127 / max);
  out.sx = f32(max / 127);
  xf.forEach((v, i) => {
    const t = f32(v * inv);
    out.q[i] = clampQ(halfEven(t));
    const frac = Math.abs(t) - Math.floor(Math.abs(t));
    if (!exact && Math.abs(frac - 0.5) < INT8_TIE_MARGIN) out.near.push(i);
  });
  return out;
}

/** y[o] = (sum q_w q_x) * sx * scale[o] + b[o] in float64; slack[o] bounds a tie's effect. */
function qMatVec(
  m: QMatrix,
  x: QInput,
  b: ArrayLike<number> | undefined,
): { y: Float64Array; slack: Float64Array } {
  const y = new Float64Array(m.rows);
  const slack = new Float64Array(m.rows);
  for (let o = 0; o < m.rows; o++) {
    let acc = 0;
    for (let i = 0; i < m.cols; i++) acc += m.q[o * m.cols + i] * x.q[i];
    y[o] = acc * x.sx * m.scale[o] + (b === undefined ? 0 : b[o]);
    for (const i of x.near) slack[o] += x.sx * m.scale[o] * Math.abs(m.q[o * m.cols + i]);
  }
  return { y, slack };
}

/** Zero slack when no input of the step had an element near a boundary, else null (unbounded). */
function tiesFree(inputs: QInput[], out: number): Float64Array | null {
  return inputs.every((x) => x.near.length === 0) ? new Float64Array(out) : null;
}

/** One layer of the int8 reference; `slack` is the last step's tie allowance per output. */
interface Int8Layer {
  state: Float64Array[];
  slack: Float64Array | null;
  step(x: Float64Array, exact: boolean): Float64Array;
  /** Recurrent layers: take the library's h (their output) as the state. */
  resync?(y: ArrayLike<number>): void;
}

function denseInt8(l: LayerSpec): Int8Layer {
  const m = quantiseMatrix(l.tensors.W, l.outputSize, l.inputSize);
  const b = l.bias === false ? undefined : l.tensors.b;
  const layer: Int8Layer = {
    state: [],
    slack: null,
    step(x, exact) {
      const qx = quantiseInput(x, exact);
      const { y, slack } = qMatVec(m, qx, b);
      const linear = (l.activation ?? "linear") === "linear";
      layer.slack = linear ? slack : tiesFree([qx], l.outputSize);
      return applyActivation(l.activation ?? "linear", y);
    },
  };
  return layer;
}

function lstmInt8(l: LayerSpec): Int8Layer {
  const [n_in, h_len] = [l.inputSize, l.outputSize];
  const fused = new Float32Array(4 * h_len * (n_in + h_len));
  for (let r = 0; r < 4 * h_len; r++) {
    fused.set(l.tensors.Wx.subarray(r * n_in, (r + 1) * n_in), r * (n_in + h_len));
    fused.set(l.tensors.Wh.subarray(r * h_len, (r + 1) * h_len), r * (n_in + h_len) + n_in);
  }
  const m = quantiseMatrix(fused, 4 * h_len, n_in + h_len);
  const layer: Int8Layer = {
    state: [new Float64Array(h_len), new Float64Array(h_len), new Float64Array(1)],
    slack: null,
    step(x, exact) {
      const [h, c, synced] = layer.state;
      const qx = quantiseInput([...x, ...h], exact && synced[0] === 0);
      const z = qMatVec(m, qx, l.tensors.b).y;
      for (let j = 0; j < h_len; j++) {
        c[j] = sigmoid(z[h_len + j]) * c[j] + sigmoid(z[j]) * Math.tanh(z[2 * h_len + j]);
        h[j] = sigmoid(z[3 * h_len + j]) * Math.tanh(c[j]);
      }
      synced[0] = 1;
      layer.slack = tiesFree([qx], h_len);
      return h.slice();
    },
    resync(y) {
      layer.state[0].set(y);
      layer.state[2][0] = 0;
    },
  };
  return layer;
}

function gruInt8(l: LayerSpec): Int8Layer {
  const h_len = l.outputSize;
  const mx = quantiseMatrix(l.tensors.Wx, 3 * h_len, l.inputSize);
  const mh = quantiseMatrix(l.tensors.Wh, 3 * h_len, h_len);
  const layer: Int8Layer = {
    state: [new Float64Array(h_len), new Float64Array(1)],
    slack: null,
    step(x, exact) {
      const [h, synced] = layer.state;
      const qx = quantiseInput(x, exact);
      const qh = quantiseInput(h, synced[0] === 0);
      const gx = qMatVec(mx, qx, l.tensors.bx).y;
      const gh = qMatVec(mh, qh, l.tensors.bh).y;
      const next = new Float64Array(h_len);
      for (let j = 0; j < h_len; j++) {
        const z = sigmoid(gx[j] + gh[j]);
        const r = sigmoid(gx[h_len + j] + gh[h_len + j]);
        const n = Math.tanh(gx[2 * h_len + j] + r * gh[2 * h_len + j]);
        next[j] = (1 - z) * n + z * h[j];
      }
      h.set(next);
      synced[0] = 1;
      layer.slack = tiesFree([qx, qh], h_len);
      return next;
    },
    resync(y) {
      layer.state[0].set(y);
      layer.state[1][0] = 0;
    },
  };
  return layer;
}

function conv1dInt8(l: LayerSpec): Int8Layer {
  const [k, dilation, groups] = [l.kernelSize ?? 1, l.dilation ?? 1, l.groups ?? 1];
  const [n_in, n_out] = [l.inputSize, l.outputSize];
  const [in_g, out_g] = [n_in / groups, n_out / groups];
  // Each group's matrix over its gathered taps: row o is W[o] (all taps), one scale per row.
  const m = quantiseMatrix(l.tensors.W, n_out, in_g * k);
  const span = (k - 1) * dilation + 1;
  const layer: Int8Layer = {
    state: [new Float64Array(span * n_in), new Float64Array(1)],
    slack: null,
    step(x, exact) {
      const [history, seen] = layer.state;
      history.copyWithin(n_in, 0, (span - 1) * n_in);
      history.set(x, 0);
      const y = new Float64Array(n_out);
      const inputs: QInput[] = [];
      for (let g = 0; g < groups; g++) {
        // Column c * k + t of row o is W[o][c][t]: the taps in W's own order.
        const taps = new Float64Array(in_g * k);
        for (let c = 0; c < in_g; c++) {
          for (let t = 0; t < k; t++) {
            const ago = (k - 1 - t) * dilation;
            taps[c * k + t] = ago <= seen[0] ? history[ago * n_in + g * in_g + c] : 0;
          }
        }
        const qx = quantiseInput(taps, exact);
        inputs.push(qx);
        const rows: QMatrix = {
          rows: out_g,
          cols: in_g * k,
          q: m.q.subarray(g * out_g * in_g * k, (g + 1) * out_g * in_g * k),
          scale: m.scale.subarray(g * out_g, (g + 1) * out_g),
        };
        y.set(qMatVec(rows, qx, l.tensors.b.subarray(g * out_g, (g + 1) * out_g)).y, g * out_g);
      }
      seen[0] += 1;
      layer.slack = tiesFree(inputs, n_out);
      return applyActivation(l.activation ?? "linear", y);
    },
  };
  return layer;
}

/** Attention and the transformer block; `block` adds the norms and the feed-forward part. */
function attentionInt8(l: LayerSpec, block: boolean): Int8Layer {
  const d = l.outputSize;
  const [heads, context] = [l.heads ?? 1, l.context ?? 1];
  const t = l.tensors;
  const qkv = quantiseMatrix([...t.Wq, ...t.Wk, ...t.Wv], 3 * d, d);
  const bqkv = [...t.bq, ...t.bk, ...t.bv];
  const wo = quantiseMatrix(t.Wo, d, d);
  const ff = block ? (l.ffDim ?? 0) : 0;
  const w1 = block ? quantiseMatrix(t.W1, ff, d) : null;
  const w2 = block ? quantiseMatrix(t.W2, d, ff) : null;
  const eps = f32(l.epsilon ?? 1e-5);
  const norm = (x: Float64Array, g: Float32Array, b: Float32Array) => {
    const mean = x.reduce((s, v) => s + v, 0) / x.length;
    const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
    return x.map((v, i) => (v - mean) / Math.sqrt(variance + eps) * g[i] + b[i]);
  };
  const layer: Int8Layer = {
    state: [new Float64Array(context * d), new Float64Array(context * d), new Float64Array(1)],
    slack: null,
    step(x, exact) {
      const [keys, values, seen] = layer.state;
      const input = block ? norm(x, t.ln1_g, t.ln1_b) : x;
      const q_in = quantiseInput(input, exact && !block);
      const p = qMatVec(qkv, q_in, bqkv).y;
      const slot = seen[0] % context;
      keys.set(p.subarray(d, 2 * d), slot * d);
      values.set(p.subarray(2 * d, 3 * d), slot * d);
      seen[0] += 1;
      const count = Math.min(seen[0], context);
      const dh = d / heads;
      const concat = new Float64Array(d);
      for (let h = 0; h < heads; h++) {
        const s = new Float64Array(count);
        for (let q = 0; q < count; q++) {
          for (let j = 0; j < dh; j++) s[q] += p[h * dh + j] * keys[q * d + h * dh + j];
          s[q] /= Math.sqrt(dh);
        }
        applyActivation("softmax", s);
        for (let q = 0; q < count; q++) {
          for (let j = 0; j < dh; j++) concat[h * dh + j] += s[q] * values[q * d + h * dh + j];
        }
      }
      const q_heads = quantiseInput(concat, false);
      const att = qMatVec(wo, q_heads, t.bo);
      if (!block) {
        layer.slack = q_in.near.length === 0 ? att.slack : null;
        return att.y;
      }
      const x1 = x.map((v, j) => v + att.y[j]);
      const q_ff = quantiseInput(norm(x1, t.ln2_g, t.ln2_b), false);
      const hidden = qMatVec(w1!, q_ff, t.b1).y;
      applyActivation(l.activation ?? "gelu", hidden);
      const q_hidden = quantiseInput(hidden, false);
      const y = qMatVec(w2!, q_hidden, t.b2).y;
      layer.slack = tiesFree([q_in, q_heads, q_ff, q_hidden], d);
      return y.map((v, j) => v + x1[j]);
    },
  };
  return layer;
}

/** A kind without a matrix (all stateless): the float64 reference, as int8 holds it at f32. */
function f32Layer(l: LayerSpec): Int8Layer {
  const ref = new ReferenceModel({ inputSize: l.inputSize, layers: [l] });
  return { state: [], slack: new Float64Array(l.outputSize), step: (x) => ref.forward(x) };
}

function int8Layer(l: LayerSpec): Int8Layer {
  switch (l.kind) {
    case "dense":
      return denseInt8(l);
    case "lstm":
      return lstmInt8(l);
    case "gru":
      return gruInt8(l);
    case "conv1d":
      return conv1dInt8(l);
    case "attention":
      return attentionInt8(l, false);
    case "transformer":
      return attentionInt8(l, true);
    default:
      return f32Layer(l);
  }
}

/**
 * A ModelSpec run as an int8 model computes it, in float64: weights quantised per held row and
 * every matrix-vector input per call, as docs/DESIGN.md ("Precision") defines, written here
 * from that text. The library's own float32 values differ a little from these float64 ones,
 * so a computed input near a rounding boundary may quantise the other way there; `slack`
 * bounds that where the layer's output is linear in it (else null: not bounded).
 */
class Int8Reference {
  readonly layers: Int8Layer[];

  constructor(readonly spec: ModelSpec) {
    this.layers = spec.layers.map(int8Layer);
  }

  forward(x: ArrayLike<number>): { y: Float64Array; slack: Float64Array | null } {
    let y: Float64Array = Float64Array.from(x);
    let slack: Float64Array | null = null;
    this.layers.forEach((layer, i) => {
      y = layer.step(y, i === 0);
      slack = this.layers.length === 1 ? layer.slack : null;
    });
    return { y, slack: slack ?? null };
  }

  /** Rows from the current state, which does not advance; slack null unless every row's is. */
  forwardBatch(x: ArrayLike<number>, batch: number) {
    const n = this.spec.inputSize;
    const saved = this.layers.map((l) => l.state.map((s) => s.slice()));
    const rows = [];
    for (let r = 0; r < batch; r++) {
      rows.push(this.forward(Array.from({ length: n }, (_, j) => x[r * n + j])));
      this.layers.forEach((l, i) => l.state.forEach((s, j) => s.set(saved[i][j])));
    }
    const y = Float64Array.from(rows.flatMap((row) => [...row.y]));
    const all = rows.every((row) => row.slack !== null);
    const slack = all ? Float64Array.from(rows.flatMap((row) => [...row.slack!])) : null;
    return { y, slack };
  }

  /** A single recurrent layer takes the library's output as its h (see the cases). */
  resync(y: ArrayLike<number>): void {
    if (this.layers.length === 1) this.layers[0].resync?.(y);
  }
}

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
 * |got - want| <= bound * scale + slack per value (scale = max(1, max|want|), as deviation());
 * returns the worst (|got - want| - slack) / scale.
 */
function checkWithSlack(
  got: Float32Array,
  want: Float64Array,
  slack: Float64Array,
  bound: number,
  what: () => string,
): number {
  let scale = 1;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const e = (Math.abs(got[i] - want[i]) - slack[i]) / scale;
    const err = Number.isNaN(e) ? Infinity : e;
    if (err > bound) {
      fail(
        `${what()}: value ${i}: got ${got[i]}, want ${want[i]} (slack ${slack[i]}): ` +
          `error ${err.toExponential(3)} > bound ${bound}`,
      );
    }
    worst = Math.max(worst, err);
  }
  return worst;
}

/**
 * Streams steps through the int8 model, the int8 reference and the f32 model, then a batch
 * from the current state, then reset (the first step must repeat exactly); the allocation
 * count must not move. `strict`: the reference is held to INT8_REFERENCE_BOUND (plus its
 * tie slack) wherever it gives a slack, else to INT8_F32_BOUND. Returns the worst
 * [vs reference, vs f32] and counts strict comparisons in `strictCount`.
 */
async function compareInt8(
  spec: ModelSpec,
  seed: number,
  plan: Plan,
  strict: boolean,
): Promise<[number, number, number]> {
  const rng = new Rng(seed);
  const where = () => `seed ${seed} ${describe(spec)}`;
  const ref = new Int8Reference(spec);
  const maxBatch = Math.max(plan.batch, 1);
  const m8 = await modelFromSpec(spec, { precision: "int8", maxBatch });
  const f32m = await modelFromSpec(spec, { maxBatch });
  const worst: [number, number, number] = [0, 0, 0];
  const compare = (
    got: Float32Array,
    r: { y: Float64Array; slack: Float64Array | null },
    f: Float32Array,
    what: string,
  ) => {
    if (strict && r.slack !== null) {
      const e = checkWithSlack(
        got,
        r.y,
        r.slack,
        INT8_REFERENCE_BOUND,
        () => `${where()}: ${what} vs int8 reference`,
      );
      worst[0] = Math.max(worst[0], e);
      worst[2]++;
    } else {
      const d = deviation(got, r.y);
      checkDeviation(
        d,
        INT8_F32_BOUND,
        () => `${where()}: ${what} vs int8 reference (unbounded ties)`,
      );
    }
    const d = deviation(got, f);
    worst[1] = Math.max(worst[1], d.worst);
    checkDeviation(d, INT8_F32_BOUND, () => `${where()}: ${what} vs f32 model`);
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
      compare(got, ref.forward(xs[s]), f32m.forward(xs[s]), `step ${s}`);
      ref.resync(got);
    }
    const rows = rng.floats(plan.batch * spec.inputSize, -2, 2);
    const batch = m8.forwardBatch(rows, plan.batch).slice();
    const f32Batch = f32m.forwardBatch(rows, plan.batch);
    compare(batch, ref.forwardBatch(rows, plan.batch), f32Batch, `batch of ${plan.batch}`);
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
      const [ref, f32v, strictCount] = await compareInt8(spec, seed, plan, kinds.length === 1);
      // A single layer of a kind whose reference bounds its ties must be checked strictly.
      const bounded = kinds.length === 1 && kinds[0] !== "transformer";
      check(!bounded || strictCount > 0, () => `${name}: no strict comparison was made`);
      worstInt8ByCase.set(name, [ref, f32v]);
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
      const [ref, f32v] = await compareInt8(spec, seed, { steps: 4, batch: 3 }, false);
      worstInt8ByCase.set(info.name, [ref, f32v]);
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
