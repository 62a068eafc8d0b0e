/**
 * The generic Pipeline and the five-model EmotionPipeline: parameter counts against the seed
 * table, the committed models/ files against the generator, the graph against the five models
 * called one by one by hand (bit-exact), reused views, stepFromEmotion, reset and graph errors.
 * Shared by test/pipeline.test.ts (Bun; it adds the allocation count) and
 * test/deno/pipeline.test.ts.
 *
 * The hand computation below is written from the graph's documentation (models/MODELS.md),
 * not from src/pipeline, so that a mistake on either side shows as a difference.
 */

import { readFileSync } from "node:fs";
import {
  archOf,
  CadenzaError,
  loadModel,
  type Model,
  modelFromSpec,
  type ModelSpec,
} from "../../src/index.ts";
import {
  GRAPH_INFO_FIELDS,
  GRAPH_INPUT_SOURCE,
  GRAPH_MAGIC,
  NATIVE_MODEL,
  type NativeApi,
  type NativeBacked,
  type NativeGraph,
} from "../../src/native/api.ts";
import { readSafetensors, writeSafetensors } from "../../src/model/formats/safetensors.ts";
import {
  archParameterCount,
  CONTEXT_SIZE,
  defaultModelsDir,
  EMOTION_GRAPH,
  EMOTION_MODELS,
  type EmotionModelName,
  type EmotionOutputs,
  EmotionPipeline,
  FEATURE_SIZE,
  GRAPH_INPUT_SIZE,
  inspectEmotionModels,
  modelFile,
} from "../../src/pipeline/emotion.ts";
import { Pipeline, type PipelineModel, type PipelineNode } from "../../src/pipeline/pipeline.ts";
import { batchedPipeline } from "../../src/bench/batch.ts";
import { DEFAULT_SEED, generateSpec } from "../../scripts/gen-models.ts";
import { type Case, check, fail, rejectsCadenza, throwsCadenza } from "./check.ts";
import { envInt, Rng } from "../helpers.ts";

/** Exact counts of our architectures, and the seed table's figures beside them. */
export const EXPECTED_COUNTS: Record<EmotionModelName, { ours: number; seed: number }> = {
  EmotionRecognizer: { ours: 493_792, seed: 497_664 },
  MelodyTransformer: { ours: 445_952, seed: 412_672 },
  HarmonyPredictor: { ours: 77_248, seed: 74_048 },
  DynamicsEngine: { ours: 13_520, seed: 13_456 },
  GroovePredictor: { ours: 18_656, seed: 19_040 },
};
export const EXPECTED_TOTAL = 1_049_168;

const KEYS = ["emotion", "melody", "harmony", "dynamics", "groove"] as const;

export type HandModels = Record<EmotionModelName, Model>;
type HandOutputs = Record<(typeof KEYS)[number], Float32Array>;

/** Loads the five default models separately from any pipeline's own copies. */
export async function loadByHand(): Promise<HandModels> {
  const models: Partial<HandModels> = {};
  for (const info of EMOTION_MODELS) {
    models[info.name] = await loadModel(modelFile(defaultModelsDir(), info.name));
  }
  return models as HandModels;
}

function disposeAll(models: Record<string, { dispose(): void }>): void {
  for (const model of Object.values(models)) model.dispose();
}

/** 128 deterministic audio-feature-like values for step t, roughly unit scale. */
export function features(t: number): Float32Array {
  const x = new Float32Array(128);
  for (let i = 0; i < 128; i++) x[i] = Math.sin(0.37 * i + 1.3 * t) + 0.5 * Math.cos(0.11 * i * t);
  return x;
}

/**
 * A context vector as the decoder builds it (models/MODELS.md): step t's previous note one-hot
 * at 0..127, its chord one-hot at 128..191 and a pitch-class histogram summing to 1 at
 * 192..203; every fourth step has no note and no chord yet (all zero).
 */
export function context(t: number): Float32Array {
  const c = new Float32Array(CONTEXT_SIZE);
  if (t % 4 === 0) return c;
  c[(48 + 5 * t) % 128] = 1;
  c[128 + ((7 * t) % 64)] = 1;
  const a = (3 * t) % 12;
  const b = (a + 4) % 12;
  c[192 + a] = 0.75;
  c[192 + b] = 0.25;
  return c;
}

/**
 * One step by hand, from features x or (x null) from a given emotion vector, with a context
 * (default all zero). Melody reads [emotion, context 0..191] (previous note, chord in force);
 * harmony reads [emotion, context 128..203] (chord in force, the span's pitch classes);
 * dynamics reads [mean of each four emotion values, groove 0..15].
 */
export function byHand(
  models: HandModels,
  x: Float32Array | null,
  given?: Float32Array,
  ctx: Float32Array = new Float32Array(204),
) {
  const emotion = x === null
    ? Float32Array.from(given!)
    : models.EmotionRecognizer.forward(x).slice();
  const melody_in = new Float32Array(256);
  melody_in.set(emotion, 0);
  melody_in.set(ctx.subarray(0, 192), 64);
  const melody = models.MelodyTransformer.forward(melody_in).slice();
  const groove = models.GroovePredictor.forward(emotion).slice();
  const harmony_in = new Float32Array(140);
  harmony_in.set(emotion, 0);
  harmony_in.set(ctx.subarray(128, 204), 64);
  const harmony = models.HarmonyPredictor.forward(harmony_in).slice();
  const dynamics_in = new Float32Array(32);
  for (let k = 0; k < 16; k++) {
    const e = emotion.subarray(4 * k, 4 * k + 4);
    dynamics_in[k] = (e[0] + e[1] + e[2] + e[3]) / 4;
  }
  dynamics_in.set(groove.subarray(0, 16), 16);
  const dynamics = models.DynamicsEngine.forward(dynamics_in).slice();
  return { emotion, melody, harmony, dynamics, groove } satisfies HandOutputs;
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((value, i) => Object.is(value, b[i]));
}

function checkSame(got: Float32Array, want: Float32Array, what: () => string): void {
  if (sameValues(got, want)) return;
  const i = got.findIndex((value, j) => !Object.is(value, want[j]));
  check(false, () =>
    `${what()}: differs at ${i}: ${got[i]} vs ${want[i]} (lengths ` +
    `${got.length}, ${want.length})`);
}

function snapshot(out: EmotionOutputs): Float32Array[] {
  return KEYS.map((key) => out[key].slice());
}

async function withPipeline(body: (p: EmotionPipeline, hand: HandModels) => void): Promise<void> {
  const pipeline = await EmotionPipeline.load();
  const hand = await loadByHand();
  try {
    body(pipeline, hand);
  } finally {
    pipeline.dispose();
    disposeAll(hand);
  }
}

const countsCase: Case = {
  name: "the five architectures: exact parameter counts, and the seed table's figures",
  run: () => {
    let total = 0;
    for (const info of EMOTION_MODELS) {
      const count = archParameterCount(info.layers);
      const want = EXPECTED_COUNTS[info.name];
      check(count === want.ours, () => `${info.name}: ${count} parameters, expected ${want.ours}`);
      check(info.seedParameters === want.seed, () => `${info.name}: seed ${info.seedParameters}`);
      total += count;
    }
    check(total === EXPECTED_TOTAL, () => `total ${total}`);
  },
};

const filesCase: Case = {
  name: "the generator is deterministic and models/ holds trained models of its architectures",
  run: () => {
    for (const info of EMOTION_MODELS) {
      const spec = generateSpec(info, DEFAULT_SEED);
      const bytes = writeSafetensors(spec);
      const again = writeSafetensors(generateSpec(info, DEFAULT_SEED));
      check(sameBytes(bytes, again), () => `${info.name}: two runs differ`);
      const other = generateSpec(info, DEFAULT_SEED + 1).layers[0].tensors.W;
      check(!sameValues(other, spec.layers[0].tensors.W), () => `${info.name}: seed ignored`);
      const committed = readSafetensors(
        new Uint8Array(readFileSync(modelFile(defaultModelsDir(), info.name))),
        modelFile(defaultModelsDir(), info.name),
      );
      check(
        JSON.stringify(committed.layers.map(archOf)) === JSON.stringify(spec.layers.map(archOf)),
        () => `${info.name}: models/ has another architecture than src/pipeline/emotion.ts`,
      );
      check(
        committed.meta?.trained === "true" && committed.meta?.untrained === undefined,
        () => `${info.name}: models/ is not labelled trained`,
      );
      check(
        !sameValues(committed.layers[0].tensors.W, spec.layers[0].tensors.W),
        () => `${info.name}: models/ holds the initialisation, not trained weights`,
      );
    }
  },
};

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

const inspectCase: Case = {
  name: "inspectEmotionModels: the rows cadenza inspect prints for models/",
  run: async () => {
    const rows = await inspectEmotionModels();
    check(rows.length === 5, () => `${rows.length} rows`);
    for (const row of rows) {
      const want = EXPECTED_COUNTS[row.name];
      check(
        row.parameters === want.ours && row.bytes === want.ours * 4,
        () => `${row.name}: ${row.parameters} parameters, ${row.bytes} bytes`,
      );
      check(row.seedParameters === want.seed && row.withinSeed, () => `${row.name}: seed`);
      check(!row.untrained, () => `${row.name}: labelled untrained`);
    }
    const melody = rows.find((row) => row.name === "MelodyTransformer")!;
    check(
      melody.architecture.includes("transformer d128 (4 heads, context 32, ff 512 gelu)"),
      () => melody.architecture,
    );
    await rejectsCadenza(
      () => inspectEmotionModels("/nonexistent-cadenza-models"),
      "E_IO",
      /EmotionRecognizer\.safetensors/,
      "missing folder",
    );
  },
};

const loadCase: Case = {
  name: "EmotionPipeline.load: counts, bytes and the trained label of the default files",
  run: () =>
    withPipeline((pipeline) => {
      for (const info of EMOTION_MODELS) {
        const model = pipeline.models[info.name] as Model;
        const want = EXPECTED_COUNTS[info.name].ours;
        check(model.parameterCount === want, () => `${info.name}: ${model.parameterCount}`);
        check(model.weightBytes === want * 4, () => `${info.name}: ${model.weightBytes} bytes`);
        check(model.spec.meta?.trained === "true", () => `${info.name}: not labelled trained`);
        check(
          /^[0-9a-f]{40}$/.test(model.spec.meta?.data_commit ?? ""),
          () => `${info.name}: data`,
        );
      }
      check(pipeline.parameterCount === EXPECTED_TOTAL, () => `${pipeline.parameterCount}`);
      check(pipeline.weightBytes === EXPECTED_TOTAL * 4, () => `${pipeline.weightBytes}`);
    }),
};

const byHandCase: Case = {
  name: "step equals the five models run one by one by hand, bit-exact, over 40 steps",
  run: () =>
    withPipeline((pipeline, hand) => {
      for (let t = 0; t < 40; t++) {
        const x = features(t);
        const out = t % 2 === 0 ? pipeline.step(x, context(t)) : pipeline.step(x);
        const want = t % 2 === 0 ? byHand(hand, x, undefined, context(t)) : byHand(hand, x);
        for (const key of KEYS) checkSame(out[key], want[key], () => `step ${t}, ${key}`);
      }
    }),
};

const viewsCase: Case = {
  name: "step returns the same object and the same views every time",
  run: () =>
    withPipeline((pipeline) => {
      const a = pipeline.step(features(1));
      const views = KEYS.map((key) => a[key]);
      const kept = snapshot(a);
      const b = pipeline.step(features(2));
      check(a === b && pipeline.outputs === a, () => "step returned a new object");
      KEYS.forEach((key, i) => check(b[key] === views[i], () => `${key}: a new view`));
      check(!sameValues(kept[1], b.melody), () => "the melody view was not updated");
      check(Object.isFrozen(a), () => "the outputs object can be reassigned");
    }),
};

const fromEmotionCase: Case = {
  name: "stepFromEmotion equals the four downstream models by hand; the recognizer is untouched",
  run: () =>
    withPipeline((pipeline, hand) => {
      for (let t = 0; t < 10; t++) {
        const emotion = features(100 + t).subarray(0, 64).map(Math.tanh);
        const out = pipeline.stepFromEmotion(emotion, context(t));
        const want = byHand(hand, null, emotion, context(t));
        for (const key of KEYS) checkSame(out[key], want[key], () => `step ${t}, ${key}`);
      }
      // Without a context, the context is all zero (not the last one given).
      const emotion = features(120).subarray(0, 64).map(Math.tanh);
      const out = pipeline.stepFromEmotion(emotion);
      const want = byHand(hand, null, emotion);
      for (const key of KEYS) checkSame(out[key], want[key], () => `no context, ${key}`);
      throwsCadenza(
        () => pipeline.stepFromEmotion(emotion, new Float32Array(203)),
        "E_ARGUMENT",
        /stepFromEmotion: context: expected a Float32Array of 204, got Float32Array of 203/,
        "short context",
      );
      // The recognizer's LSTM did not advance: a step now equals its first step from reset.
      const got = pipeline.step(features(7)).emotion;
      checkSame(got, hand.EmotionRecognizer.forward(features(7)), () => "recognizer state");
      throwsCadenza(
        () => pipeline.stepFromEmotion(new Float32Array(63)),
        "E_ARGUMENT",
        /expected a Float32Array of 64, got Float32Array of 63/,
        "short emotion",
      );
    }),
};

const contextCase: Case = {
  name:
    "the context reaches melody and harmony only: the recognizer, groove and dynamics ignore it",
  run: () =>
    withPipeline((pipeline) => {
      const emotion = features(300).subarray(0, 64).map(Math.tanh);
      const plain = snapshot(pipeline.stepFromEmotion(emotion, context(0)));
      pipeline.reset();
      const given = snapshot(pipeline.stepFromEmotion(emotion, context(1)));
      // KEYS: emotion, melody, harmony, dynamics, groove.
      for (const i of [0, 3, 4]) checkSame(given[i], plain[i], () => `${KEYS[i]} changed`);
      check(!sameValues(given[1], plain[1]), () => "the melody ignored the context");
      check(!sameValues(given[2], plain[2]), () => "the harmony ignored the context");
      // The span's pitch classes (context 192..203) reach the harmony, not the melody.
      pipeline.reset();
      const a = snapshot(pipeline.stepFromEmotion(emotion, context(1)));
      const changed = context(1);
      changed.fill(0, 192);
      changed[192 + 9] = 1;
      pipeline.reset();
      const b = snapshot(pipeline.stepFromEmotion(emotion, changed));
      checkSame(b[1], a[1], () => "the melody read the span's pitch classes");
      check(!sameValues(b[2], a[2]), () => "the harmony ignored the span's pitch classes");
    }),
};

const resetCase: Case = {
  name: "reset restores the first-step outputs",
  run: () =>
    withPipeline((pipeline) => {
      const first = snapshot(pipeline.step(features(0)));
      for (let t = 1; t < 20; t++) pipeline.step(features(t));
      const later = snapshot(pipeline.step(features(0)));
      check(!sameValues(later[1], first[1]), () => "the melody's KV cache had no effect");
      pipeline.reset();
      const again = snapshot(pipeline.step(features(0)));
      KEYS.forEach((key, i) => checkSame(again[i], first[i], () => `after reset, ${key}`));
    }),
};

const rangeCase: Case = {
  name: "outputs are in their ranges and the untrained weights do not saturate",
  run: () =>
    withPipeline((pipeline) => {
      let saturated = 0;
      let values = 0;
      for (let t = 0; t < 50; t++) {
        const out = pipeline.step(features(t));
        const sum = out.harmony.reduce((a, b) => a + b, 0);
        check(Math.abs(sum - 1) < 1e-4, () => `step ${t}: harmony sums to ${sum}`);
        const notes = out.melody.reduce((a, b) => a + b, 0);
        check(Math.abs(notes - 1) < 1e-4, () => `step ${t}: melody sums to ${notes}`);
        for (const v of [...out.melody, ...out.dynamics]) {
          check(v >= 0 && v <= 1, () => `step ${t}: probability ${v}`);
        }
        for (const v of [...out.emotion, ...out.groove]) {
          check(Math.abs(v) <= 1, () => `step ${t}: tanh output ${v}`);
          if (Math.abs(v) > 0.99) saturated++;
          values++;
        }
      }
      check(saturated / values < 0.05, () => `${saturated} of ${values} tanh outputs saturated`);
    }),
};

const errorsCase: Case = {
  name: "wrong lengths, missing files and use after dispose throw CadenzaError",
  run: async () => {
    const pipeline = await EmotionPipeline.load();
    throwsCadenza(
      () => pipeline.step(new Float32Array(127)),
      "E_ARGUMENT",
      /step: features: expected a Float32Array of 128, got Float32Array of 127/,
      "short features",
    );
    throwsCadenza(
      () => pipeline.step(features(0), new Array(204).fill(0) as unknown as Float32Array),
      "E_ARGUMENT",
      /step: context: expected a Float32Array of 204, got /,
      "a plain array as the context",
    );
    throwsCadenza(
      () => pipeline.stepFromEmotion(new Float32Array(64), null as unknown as Float32Array),
      "E_ARGUMENT",
      /stepFromEmotion: context: expected a Float32Array of 204, got null/,
      "a null context",
    );
    const groove = pipeline.models.GroovePredictor as Model;
    pipeline.dispose();
    throwsCadenza(() => pipeline.step(features(0)), "E_DISPOSED", /after dispose/, "step");
    check(groove.disposed, () => "dispose left a model loaded");
    await rejectsCadenza(
      () => EmotionPipeline.load("/nonexistent-cadenza-models"),
      "E_IO",
      /EmotionRecognizer\.safetensors/,
      "missing folder",
    );
    const hand = await loadByHand();
    const swapped = { ...hand, GroovePredictor: hand.DynamicsEngine };
    throwsCadenza(
      () => new EmotionPipeline(swapped),
      "E_SHAPE",
      /GroovePredictor maps 32 -> 16, expected 64 -> 32/,
      "wrong model",
    );
    disposeAll(hand);
  },
};

/** A dense layer with W = I and no activation: its output is its input, so edges show. */
function identitySpec(width: number): ModelSpec {
  const W = new Float32Array(width * width);
  for (let i = 0; i < width; i++) W[i * width + i] = 1;
  const layer = { kind: "dense" as const, inputSize: width, outputSize: width };
  return { inputSize: width, layers: [{ ...layer, tensors: { W, b: new Float32Array(width) } }] };
}

const edgeOpsCase: Case = {
  name: "Pipeline: copy, slices, maxpool and meanpool edges, run in topological order",
  run: async () => {
    const models = {
      A: await modelFromSpec(identitySpec(8)),
      B: await modelFromSpec(identitySpec(6)),
    };
    // Listed out of order: "b" reads "a" but comes first.
    const nodes: PipelineNode[] = [
      {
        name: "b",
        model: "B",
        inputs: [
          { from: "a", op: "maxpool2" },
          { from: "a", offset: 4, length: 4, op: "meanpool4" },
          { from: "input", offset: 1, length: 1 },
        ],
      },
      { name: "a", model: "A", inputs: [{ from: "input" }] },
    ];
    const pipeline = new Pipeline(nodes, models, { inputSize: 8 });
    check(pipeline.order.join() === "a,b", () => `order ${pipeline.order}`);
    const out = pipeline.step(Float32Array.of(1, -2, 3, 4, -5, -6, 8, 7));
    checkSame(out.a, Float32Array.of(1, -2, 3, 4, -5, -6, 8, 7), () => "a");
    checkSame(out.b, Float32Array.of(1, 4, -5, 8, 1, -2), () => "b");
    pipeline.dispose();
    check(models.A.disposed && models.B.disposed, () => "dispose left a model loaded");
  },
};

const stepFromCase: Case = {
  name: "Pipeline.stepFrom runs only downstream nodes and refuses graphs that need the input",
  run: async () => {
    const spec = identitySpec(4);
    const models = { A: await modelFromSpec(spec), B: await modelFromSpec(identitySpec(2)) };
    const chain = new Pipeline([
      { name: "a", model: "A", inputs: [{ from: "input" }] },
      { name: "b", model: "B", inputs: [{ from: "a", op: "maxpool2" }] },
    ], models);
    check(chain.inputSize === 4, () => `inferred inputSize ${chain.inputSize}`);
    chain.step(Float32Array.of(1, 2, 3, 4));
    const out = chain.stepFrom("a", Float32Array.of(9, 0, 0, 5));
    checkSame(out.b, Float32Array.of(9, 5), () => "b from a");
    throwsCadenza(
      () => chain.stepFrom("zz", new Float32Array(4)),
      "E_ARGUMENT",
      /no node named "zz"/,
      "unknown node",
    );
    throwsCadenza(
      () => chain.stepFrom("a", new Float32Array(3)),
      "E_ARGUMENT",
      /takes 4 values, got 3/,
      "short values",
    );
    const mixed = new Pipeline([
      { name: "a", model: "A", inputs: [{ from: "input" }] },
      { name: "b", model: "B", inputs: [{ from: "a", length: 1 }, { from: "input", length: 1 }] },
    ], models);
    throwsCadenza(
      () => mixed.stepFrom("a", new Float32Array(4)),
      "E_ARGUMENT",
      /downstream of "a" reads the graph input/,
      "stepFrom needing input",
    );
    // Given the input, b reads a's new value 0 and input value 0.
    mixed.step(Float32Array.of(1, 2, 3, 4));
    const given = mixed.stepFrom("a", Float32Array.of(7, 8, 9, 10), Float32Array.of(-3, 0, 0, 0));
    checkSame(given.a, Float32Array.of(7, 8, 9, 10), () => "a set");
    checkSame(given.b, Float32Array.of(7, -3), () => "b from a and the input");
    throwsCadenza(
      () => mixed.stepFrom("a", new Float32Array(4), new Float32Array(3)),
      "E_ARGUMENT",
      /stepFrom: input has 3 values, expected 4/,
      "short input",
    );
    chain.dispose();
    mixed.dispose();
  },
};

const fromGraphCase: Case = {
  name: "Pipeline.fromGraph: a user graph of models loaded from files",
  run: async () => {
    const dir = defaultModelsDir();
    const pipeline = await Pipeline.fromGraph(
      {
        nodes: [
          { name: "mood", model: "E", inputs: [{ from: "input" }] },
          { name: "beat", model: "G", inputs: [{ from: "mood" }] },
        ],
        files: { E: modelFile(dir, "EmotionRecognizer"), G: modelFile(dir, "GroovePredictor") },
      },
      (source) => loadModel(source),
    );
    const hand = await loadByHand();
    try {
      const out = pipeline.step(features(5));
      const emotion = hand.EmotionRecognizer.forward(features(5));
      checkSame(out.mood, emotion, () => "mood");
      checkSame(out.beat, hand.GroovePredictor.forward(emotion), () => "beat");
    } finally {
      pipeline.dispose();
      disposeAll(hand);
    }
    await rejectsCadenza(
      () => Pipeline.fromGraph({ nodes: [], files: { E: modelFile(dir, "GroovePredictor") } }),
      "E_ARGUMENT",
      /no nodes/,
      "empty graph",
    );
  },
};

/** Each bad graph and the message that must name its fault. */
function badGraphs(): [PipelineNode[], RegExp][] {
  const node = (name: string, model: string, from: string, extra = {}): PipelineNode => ({
    name,
    model,
    inputs: [{ from, ...extra }],
  });
  return [
    [[node("a", "A", "b"), node("b", "A", "a")], /cycle among nodes \[a, b\]/],
    [[node("a", "Z", "input")], /no model "Z"/],
    [[node("a", "A", "nowhere")], /no node named "nowhere"/],
    [[node("input", "A", "input")], /name "input"/],
    [[node("a", "A", "input"), node("a", "A", "input")], /duplicate name "a"/],
    [[node("a", "A", "input"), node("b", "B", "a")], /give 4 values, model "B" expects 2/],
    [
      [node("a", "A", "input"), node("b", "B", "a", { offset: 3, length: 2 })],
      /node "b" input 0 .*outside the source/,
    ],
    [
      [node("a", "A", "input"), node("b", "B", "a", { length: 3, op: "maxpool2" })],
      /not a multiple of the pool factor 2/,
    ],
    [[node("a", "A", "input", { op: "sum" })], /op "sum"/],
  ];
}

const badGraphCase: Case = {
  name: "Pipeline: bad graphs are refused with a message naming the node",
  run: async () => {
    const models = {
      A: await modelFromSpec(identitySpec(4)),
      B: await modelFromSpec(identitySpec(2)),
    };
    try {
      for (const [nodes, pattern] of badGraphs()) {
        throwsCadenza(() => new Pipeline(nodes, models), "E_ARGUMENT", pattern, String(pattern));
      }
    } finally {
      disposeAll(models);
    }
  },
};

export function pipelineCases(): Case[] {
  return [
    countsCase,
    filesCase,
    inspectCase,
    loadCase,
    byHandCase,
    contextCase,
    viewsCase,
    fromEmotionCase,
    resetCase,
    rangeCase,
    errorsCase,
    edgeOpsCase,
    stepFromCase,
    fromGraphCase,
    badGraphCase,
    drivenCase,
    batchedCase,
  ];
}

/**
 * A caller that runs the models itself (as the onnxruntime peer does, awaiting each) through
 * inputOf and setOutput gets what step gives, bit for bit; a native pipeline refuses.
 */
const drivenCase: Case = {
  name: "pipeline: driven node by node with inputOf/setOutput equals step",
  run: async () => {
    const hand = await loadByHand();
    const stepped = new EmotionPipeline(wrapAll(hand)).pipeline;
    const driven = new EmotionPipeline(wrapAll(await loadByHand())).pipeline;
    const native = await EmotionPipeline.load();
    try {
      const runOrder = driven.order.map((name) =>
        driven.models[EMOTION_GRAPH.find((node) => node.name === name)!.model]
      );
      for (let t = 0; t < 6; t++) {
        const x = new Float32Array(GRAPH_INPUT_SIZE);
        x.set(features(t));
        x.set(context(t), FEATURE_SIZE);
        stepped.step(x);
        for (let i = 0; i < runOrder.length; i++) {
          driven.setOutput(i, await Promise.resolve(runOrder[i].forward(driven.inputOf(i, x))));
        }
        for (const key of driven.order) {
          checkSame(driven.outputs[key], stepped.outputs[key], () => `step ${t}, ${key}`);
        }
      }
      throwsCadenza(() => driven.setOutput(0, new Float32Array(1)), "E_ARGUMENT", /node 0/, "len");
      throwsCadenza(() => driven.inputOf(9, features(0)), "E_ARGUMENT", /node 9/, "index");
      throwsCadenza(
        () => native.pipeline.inputOf(0, features(0)),
        "E_ARGUMENT",
        /native graph runs its own models/,
        "native",
      );
    } finally {
      stepped.dispose();
      driven.dispose();
      native.dispose();
    }
  },
};

/** The batch runner of bench/models.bench.ts: row r equals one step of row r from reset. */
const batchedCase: Case = {
  name: "pipeline: batchedPipeline's rows equal single steps from the same state",
  run: async () => {
    const hand = await loadByHand();
    const rows = 3;
    const batched = batchedPipeline(EMOTION_GRAPH, hand, GRAPH_INPUT_SIZE, rows);
    const single = new EmotionPipeline(wrapAll(await loadByHand()));
    try {
      const x = new Float32Array(rows * GRAPH_INPUT_SIZE);
      for (let r = 0; r < rows; r++) {
        x.set(features(r), r * GRAPH_INPUT_SIZE);
        x.set(context(r + 1), r * GRAPH_INPUT_SIZE + FEATURE_SIZE);
      }
      const out = batched.step(x);
      for (let r = 0; r < rows; r++) {
        single.reset();
        const one = single.step(features(r), context(r + 1));
        for (const key of batched.order) {
          const width = one[key].length;
          const row = out[key].subarray(r * width, (r + 1) * width);
          // forwardBatch and forward are different kernels: equal to float32 rounding.
          const worst = row.reduce((m, v, i) => Math.max(m, Math.abs(v - one[key][i])), 0);
          check(worst <= 1e-5, () => `row ${r}, ${key}: ${worst}`);
        }
      }
    } finally {
      for (const model of Object.values(hand)) model.dispose();
      single.dispose();
    }
  },
};

// ---------------------------------------------------------------------------------------------
// The native graph (zig/graph.zig): the cases test/graph.test.ts and test/deno/graph.test.ts run.

/** A model that hides its native handle, so the pipeline runs it node by node. */
function nodeByNode(model: Model): PipelineModel {
  return {
    inputSize: model.inputSize,
    outputSize: model.outputSize,
    parameterCount: model.parameterCount,
    weightBytes: model.weightBytes,
    forward: (x) => model.forward(x),
    reset: () => model.reset(),
    dispose: () => model.dispose(),
  };
}

function wrapAll(models: HandModels): Record<EmotionModelName, PipelineModel> {
  const entries = EMOTION_MODELS.map((info) => [info.name, nodeByNode(models[info.name])]);
  return Object.fromEntries(entries) as Record<EmotionModelName, PipelineModel>;
}

const nativeUsedCase: Case = {
  name: "native graph: the emotion pipeline runs in one native call; wrapped models do not",
  run: async () => {
    const pipeline = await EmotionPipeline.load();
    const plain = new EmotionPipeline(wrapAll(await loadByHand()));
    try {
      check(pipeline.native && pipeline.pipeline.native, () => "EmotionPipeline is not native");
      const info = pipeline.pipeline.graphInfo();
      check(info !== null, () => "no graph info");
      check(
        info!.nodeCount === 5 && info!.inputSize === 332 && info!.outputLength === 304,
        () => `graph info ${JSON.stringify(info)}`,
      );
      check(!plain.native && plain.pipeline.graphInfo() === null, () => "wrapped models native");
    } finally {
      pipeline.dispose();
      plain.dispose();
    }
  },
};

const samePathsCase: Case = {
  name: "native graph: step, stepFromEmotion and reset equal the node-by-node path bit for bit",
  run: async () => {
    const native = await EmotionPipeline.load();
    const plain = new EmotionPipeline(wrapAll(await loadByHand()));
    try {
      const compare = (what: string) => {
        for (const key of KEYS) {
          checkSame(native.outputs[key], plain.outputs[key], () => `${what}, ${key}`);
        }
      };
      for (let t = 0; t < 30; t++) {
        native.step(features(t), context(t));
        plain.step(features(t), context(t));
        compare(`step ${t}`);
        if (t % 7 === 3) {
          const emotion = features(200 + t).subarray(0, 64).map(Math.tanh);
          native.stepFromEmotion(emotion, context(t + 1));
          plain.stepFromEmotion(emotion, context(t + 1));
          compare(`stepFromEmotion at ${t}`);
        }
        if (t === 20) {
          native.reset();
          plain.reset();
          compare("after reset");
          check(native.outputs.melody.every((v) => v === 0), () => "reset left outputs");
        }
      }
    } finally {
      native.dispose();
      plain.dispose();
    }
  },
};

const allocCase: Case = {
  name: "native graph: 1,000 steps allocate nothing natively (graph and model counters)",
  run: async () => {
    const pipeline = await EmotionPipeline.load();
    try {
      const counts = () => {
        const graph = pipeline.pipeline.graphInfo()!;
        const models = EMOTION_MODELS.map((info) => {
          const native = (pipeline.models[info.name] as Model).nativeInfo();
          return [native.allocCount, native.freeCount];
        });
        return [[graph.allocCount, graph.freeCount], ...models].flat();
      };
      const before = counts();
      check(before[0] === 1 && before[1] === 0, () => `graph counts ${before.slice(0, 2)}`);
      const emotion = new Float32Array(64).fill(0.5);
      const contexts = Array.from({ length: 8 }, (_, t) => context(t));
      for (let t = 0; t < 1_000; t++) {
        pipeline.step(features(t & 7), contexts[t & 7]);
        if (t % 10 === 0) pipeline.stepFromEmotion(emotion, contexts[t & 3]);
        if (t % 250 === 0) pipeline.reset();
      }
      const after = counts();
      check(after.every((n, i) => n === before[i]), () => `counts ${before} -> ${after}`);
    } finally {
      pipeline.dispose();
    }
  },
};

const outsideDisposeCase: Case = {
  name: "native graph: a member model disposed outside the pipeline is refused, not run",
  run: async () => {
    const pipeline = await EmotionPipeline.load();
    pipeline.step(features(0));
    const groove = pipeline.models.GroovePredictor as Model;
    groove.dispose();
    const pattern = /model "GroovePredictor" \(node "groove"\) was disposed outside/;
    throwsCadenza(() => pipeline.step(features(1)), "E_DISPOSED", pattern, "step");
    throwsCadenza(
      () => pipeline.stepFromEmotion(new Float32Array(64)),
      "E_DISPOSED",
      pattern,
      "stepFromEmotion",
    );
    throwsCadenza(() => pipeline.reset(), "E_DISPOSED", pattern, "reset");
    pipeline.dispose();
    const hand = await loadByHand();
    hand.MelodyTransformer.dispose();
    throwsCadenza(
      () => new EmotionPipeline(hand),
      "E_DISPOSED",
      /model "MelodyTransformer" \(node "melody"\) is disposed/,
      "built from a disposed model",
    );
    disposeAll(hand);
  },
};

const sharedModelCase: Case = {
  name: "native graph: one model at two nodes runs node by node, as before",
  run: async () => {
    const model = await modelFromSpec(identitySpec(4));
    const pipeline = new Pipeline([
      { name: "a", model: "A", inputs: [{ from: "input" }] },
      { name: "b", model: "B", inputs: [{ from: "a" }] },
    ], { A: model, B: model });
    try {
      check(!pipeline.native, () => "a shared model went native");
      const out = pipeline.step(Float32Array.of(1, 2, 3, 4));
      checkSame(out.b, Float32Array.of(1, 2, 3, 4), () => "b");
    } finally {
      pipeline.dispose();
    }
  },
};

/** The emotion graph written from the description format in docs/DESIGN.md, by hand. */
function emotionDescription(): Uint32Array {
  const input = GRAPH_INPUT_SOURCE;
  const records = [
    [GRAPH_MAGIC, 1, 5, 332], // input: [features 128 | context 204]
    [0, 1, input, 0, 128, 0], // emotion <- the features
    [1, 2, 0, 0, 64, 0, input, 128, 192, 0], // melody <- emotion, context 0..191
    [2, 1, 0, 0, 64, 0], // groove <- emotion
    [3, 2, 0, 0, 64, 0, input, 256, 76, 0], // harmony <- emotion, context 128..203
    [4, 2, 0, 0, 64, 4, 2, 0, 16, 0], // dynamics <- emotion mean-pooled by 4, groove 0..16
  ];
  return Uint32Array.from(records.flat());
}

/** Five models in node order, their library and their handles as cz_graph_create takes them. */
function nativeOf(hand: HandModels): { api: NativeApi; handles: BigUint64Array } {
  const names: EmotionModelName[] = [
    "EmotionRecognizer",
    "MelodyTransformer",
    "GroovePredictor",
    "HarmonyPredictor",
    "DynamicsEngine",
  ];
  const refs = names.map((name) => (hand[name] as unknown as NativeBacked)[NATIVE_MODEL]()!);
  const api = refs[0].api;
  return { api, handles: BigUint64Array.from(refs, (ref) => api.handleValue(ref.handle)) };
}

const describedCase: Case = {
  name: "native graph: the documented description, by hand, equals the five models by hand",
  run: async () => {
    const graphModels = await loadByHand();
    const hand = await loadByHand();
    const { api, handles } = nativeOf(graphModels);
    const graph = api.graphCreate(emotionDescription(), handles);
    try {
      const out = new Float32Array(304);
      const input = new Float32Array(332);
      for (let t = 0; t < 10; t++) {
        input.set(features(t));
        input.set(context(t), 128);
        check(api.graphStep(graph, input, out) === 0, () => api.graphLastError(graph));
        const want = byHand(hand, features(t), undefined, context(t));
        // Node order: emotion, melody, groove, harmony, dynamics.
        const order = ["emotion", "melody", "groove", "harmony", "dynamics"] as const;
        let at = 0;
        for (const key of order) {
          const got = out.subarray(at, at + want[key].length);
          checkSame(got, want[key], () => `step ${t}, ${key}`);
          at += want[key].length;
        }
      }
      check(api.graphStep(graph, new Float32Array(127), out) === 1, () => "short input ran");
      check(
        /in_len is 127, expected 332/.test(api.graphLastError(graph)),
        () => api.graphLastError(graph),
      );
      check(api.graphStepFrom(graph, 5, out, out) === 1, () => "node 5 ran");
      check(/node 5, expected 0\.\.4/.test(api.graphLastError(graph)), () => "node message");
      // From the emotion: melody and harmony read the context, so the input must be given.
      const emotion = features(50).subarray(0, 64).map(Math.tanh);
      check(api.graphStepFrom(graph, 0, emotion, out) === 1, () => "ran without the input");
      check(
        /node 0 reads the graph input/.test(api.graphLastError(graph)),
        () => api.graphLastError(graph),
      );
      input.set(context(3), 128);
      check(
        api.graphStepFrom(graph, 0, emotion, out, input) === 0,
        () => api.graphLastError(graph),
      );
      const want = byHand(hand, null, emotion, context(3));
      const order = ["emotion", "melody", "groove", "harmony", "dynamics"] as const;
      let at = 0;
      for (const key of order) {
        checkSame(out.subarray(at, at + want[key].length), want[key], () => `stepFrom, ${key}`);
        at += want[key].length;
      }
      check(
        api.graphStepFrom(graph, 0, emotion, out, input.subarray(0, 331)) === 1,
        () => "short input ran",
      );
      check(
        /x_len is 331, expected 332/.test(api.graphLastError(graph)),
        () => api.graphLastError(graph),
      );
    } finally {
      api.graphDestroy(graph);
      disposeAll(graphModels);
      disposeAll(hand);
    }
  },
};

/** A word of the emotion description changed, and the message the library must give. */
const BAD_WORDS: [number, number, RegExp][] = [
  [0, 7, /word 0 \(magic\) is 0x7, expected 0x52475a43/],
  [1, 9, /word 1 \(version\) is 9/],
  [2, 6, /graph has 6 nodes and 5 model handles/],
  [3, 100, /node 0 edge 0: slice \[0, 0\+128\) is outside its source \(width 100\)/],
  [10, 0, /node 1: model 0 is already run by node 0/],
  [12, 1, /node 1 edge 0: source 1, expected an earlier node \(below 1\)/],
  [15, 9, /node 1 edge 0: op 9, expected 0\.\.4/],
  [34, 72, /node 3: its edges give 136 values, its model takes 140/],
  [43, 17, /node 4 edge 1: slice \[17, 17\+16\) is outside its source \(width 32\)/],
];

const badDescriptionCase: Case = {
  name: "native graph: bad descriptions are refused natively with a message; fuzzed never crash",
  run: async () => {
    const hand = await loadByHand();
    const { api, handles } = nativeOf(hand);
    const base = emotionDescription();
    try {
      for (const [at, value, pattern] of BAD_WORDS) {
        const words = base.slice();
        words[at] = value;
        throwsCadenza(() => api.graphCreate(words, handles), "E_ARGUMENT", pattern, `word ${at}`);
      }
      throwsCadenza(
        () => api.graphCreate(base.subarray(0, base.length - 1), handles),
        "E_ARGUMENT",
        /node 4: 2 edges need 8 words from word 38/,
        "truncated",
      );
      throwsCadenza(
        () => api.graphCreate(base, handles.subarray(0, 4)),
        "E_ARGUMENT",
        /5 nodes and 4 model handles/,
        "a handle short",
      );
      const twice = handles.slice();
      twice[4] = twice[0];
      throwsCadenza(
        () => api.graphCreate(base, twice),
        "E_ARGUMENT",
        /handles 0 and 4 are the same model/,
        "one model twice",
      );
      fuzzDescriptions(api, base, handles, envInt("CADENZA_FUZZ_ITERS", 3_000));
    } finally {
      disposeAll(hand);
    }
  },
};

/**
 * Changes 1-3 words of `base` (and sometimes its length) `iterations` times. Each result is
 * refused with a CadenzaError and a message, or accepted and then run: step, stepFrom from
 * every node with every width a node output has here (accepted or refused with status 1),
 * and reset.
 */
function fuzzDescriptions(
  api: NativeApi,
  base: Uint32Array,
  handles: BigUint64Array,
  iterations: number,
): void {
  const rng = new Rng(envInt("CADENZA_FUZZ_SEED", 0x6a7f));
  let accepted = 0;
  for (let i = 0; i < iterations; i++) {
    const words = mutate(rng, base);
    let graph: NativeGraph;
    try {
      graph = api.graphCreate(words, handles);
    } catch (err) {
      const ok = err instanceof CadenzaError && err.message.length > 0 &&
        (err.code === "E_ARGUMENT" || err.code === "E_LIMIT");
      if (!ok) fail(`seed ${rng.seed}, iteration ${i}: ${err}`);
      continue;
    }
    accepted++;
    try {
      runAccepted(api, graph, rng, () => `seed ${rng.seed}, iteration ${i}, words ${words}`);
    } finally {
      api.graphDestroy(graph);
    }
  }
  check(accepted > 0 && accepted < iterations, () => `${accepted} of ${iterations} accepted`);
}

function mutate(rng: Rng, base: Uint32Array): Uint32Array {
  const lengths = [base.length, base.length, base.length, rng.int(0, base.length + 8)];
  const words = new Uint32Array(rng.pick(lengths));
  for (let i = 0; i < words.length; i++) words[i] = i < base.length ? base[i] : rng.u32();
  const changes = rng.int(1, 3);
  for (let c = 0; c < changes && words.length > 0; c++) {
    const at = rng.int(0, words.length - 1);
    const choices = [rng.u32(), rng.int(0, 20), GRAPH_INPUT_SOURCE, words[at] + 1, words[at] - 1];
    words[at] = rng.pick(choices);
  }
  return words;
}

function runAccepted(api: NativeApi, graph: NativeGraph, rng: Rng, what: () => string): void {
  const info = new BigUint64Array(GRAPH_INFO_FIELDS);
  check(api.graphInfo(graph, info) === 0, what);
  const input = rng.floats(Number(info[2]), -2, 2);
  const out = new Float32Array(Number(info[3]));
  check(api.graphStep(graph, input, out) === 0, () => `${what()}: ${api.graphLastError(graph)}`);
  for (let node = 0; node < Number(info[1]); node++) {
    for (const width of [16, 32, 64, 128]) {
      const status = api.graphStepFrom(graph, node, input.subarray(0, width), out);
      check(status <= 1, () => `${what()}: stepFrom node ${node} gave status ${status}`);
      const given = api.graphStepFrom(graph, node, input.subarray(0, width), out, input);
      check(given <= 1, () => `${what()}: stepFrom node ${node} with input: status ${given}`);
    }
  }
  check(api.graphReset(graph) === 0, what);
}

export function graphCases(): Case[] {
  return [
    nativeUsedCase,
    samePathsCase,
    allocCase,
    outsideDisposeCase,
    sharedModelCase,
    describedCase,
    badDescriptionCase,
  ];
}
