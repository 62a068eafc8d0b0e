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
import { loadModel, type Model, modelFromSpec, type ModelSpec } from "../../src/index.ts";
import { writeSafetensors } from "../../src/model/formats/safetensors.ts";
import {
  archParameterCount,
  defaultModelsDir,
  EMOTION_MODELS,
  type EmotionModelName,
  type EmotionOutputs,
  EmotionPipeline,
  inspectEmotionModels,
  modelFile,
} from "../../src/pipeline/emotion.ts";
import { Pipeline, type PipelineNode } from "../../src/pipeline/pipeline.ts";
import { DEFAULT_SEED, generateSpec } from "../../scripts/gen-models.ts";
import { type Case, check, rejectsCadenza, throwsCadenza } from "./check.ts";

/** Exact counts of our architectures, and the seed table's figures (each within 10%). */
export const EXPECTED_COUNTS: Record<EmotionModelName, { ours: number; seed: number }> = {
  EmotionRecognizer: { ours: 493_792, seed: 497_664 },
  MelodyTransformer: { ours: 421_376, seed: 412_672 },
  HarmonyPredictor: { ours: 74_176, seed: 74_048 },
  DynamicsEngine: { ours: 13_520, seed: 13_456 },
  GroovePredictor: { ours: 18_656, seed: 19_040 },
};
export const EXPECTED_TOTAL = 1_021_520;

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
 * One step by hand, from features x or (x null) from a given emotion vector. Harmony reads
 * [emotion, max of each pair of notes]; dynamics reads [mean of each four emotion values,
 * groove 0..15].
 */
export function byHand(models: HandModels, x: Float32Array | null, given?: Float32Array) {
  const emotion = x === null
    ? Float32Array.from(given!)
    : models.EmotionRecognizer.forward(x).slice();
  const melody = models.MelodyTransformer.forward(emotion).slice();
  const groove = models.GroovePredictor.forward(emotion).slice();
  const harmony_in = new Float32Array(128);
  harmony_in.set(emotion, 0);
  for (let k = 0; k < 64; k++) harmony_in[64 + k] = Math.max(melody[2 * k], melody[2 * k + 1]);
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
  name: "the five architectures: exact parameter counts, each within 10% of the seed table",
  run: () => {
    let total = 0;
    for (const info of EMOTION_MODELS) {
      const count = archParameterCount(info.layers);
      const want = EXPECTED_COUNTS[info.name];
      check(count === want.ours, () => `${info.name}: ${count} parameters, expected ${want.ours}`);
      check(info.seedParameters === want.seed, () => `${info.name}: seed ${info.seedParameters}`);
      check(Math.abs(count / want.seed - 1) < 0.1, () => `${info.name}: ${count} vs ${want.seed}`);
      total += count;
    }
    check(total === EXPECTED_TOTAL, () => `total ${total}`);
  },
};

const filesCase: Case = {
  name: "the generator is deterministic and models/ holds exactly its output",
  run: () => {
    for (const info of EMOTION_MODELS) {
      const spec = generateSpec(info, DEFAULT_SEED);
      const bytes = writeSafetensors(spec);
      const again = writeSafetensors(generateSpec(info, DEFAULT_SEED));
      check(sameBytes(bytes, again), () => `${info.name}: two runs differ`);
      const committed = new Uint8Array(readFileSync(modelFile(defaultModelsDir(), info.name)));
      check(
        sameBytes(bytes, committed),
        () => `${info.name}: models/ differs from the generator (run bun scripts/gen-models.ts)`,
      );
      const other = generateSpec(info, DEFAULT_SEED + 1).layers[0].tensors.W;
      check(!sameValues(other, spec.layers[0].tensors.W), () => `${info.name}: seed ignored`);
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
      check(row.untrained, () => `${row.name}: not labelled untrained`);
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
  name: "EmotionPipeline.load: counts, bytes and the untrained label of the default files",
  run: () =>
    withPipeline((pipeline) => {
      for (const info of EMOTION_MODELS) {
        const model = pipeline.models[info.name] as Model;
        const want = EXPECTED_COUNTS[info.name].ours;
        check(model.parameterCount === want, () => `${info.name}: ${model.parameterCount}`);
        check(model.weightBytes === want * 4, () => `${info.name}: ${model.weightBytes} bytes`);
        check(model.spec.meta?.untrained === "true", () => `${info.name}: not labelled untrained`);
        check(model.spec.meta?.seed === String(DEFAULT_SEED), () => `${info.name}: seed`);
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
        const out = pipeline.step(x);
        const want = byHand(hand, x);
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
        const out = pipeline.stepFromEmotion(emotion);
        const want = byHand(hand, null, emotion);
        for (const key of KEYS) checkSame(out[key], want[key], () => `step ${t}, ${key}`);
      }
      // The recognizer's LSTM did not advance: a step now equals its first step from reset.
      const got = pipeline.step(features(7)).emotion;
      checkSame(got, hand.EmotionRecognizer.forward(features(7)), () => "recognizer state");
      throwsCadenza(
        () => pipeline.stepFromEmotion(new Float32Array(63)),
        "E_ARGUMENT",
        /got 63 values, expected 64/,
        "short emotion",
      );
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
      /input has 127 values, expected 128/,
      "short features",
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
    chain.dispose();
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
    viewsCase,
    fromEmotionCase,
    resetCase,
    rangeCase,
    errorsCase,
    edgeOpsCase,
    stepFromCase,
    fromGraphCase,
    badGraphCase,
  ];
}
