/**
 * The five-model emotion pipeline: its models' architectures as data, its graph, and
 * `EmotionPipeline`, which loads the five model files and runs the graph with `Pipeline`:
 * with loaded (native) models, each step and stepFromEmotion is one native call that runs the
 * whole graph (zig/graph.zig). models/MODELS.md is the card for the default files (untrained
 * seeded initialisations).
 *
 * ```ts
 * const pipeline = await EmotionPipeline.load();          // the project's models/
 * const out = pipeline.step(features, context);           // 128 audio features, 204 context
 * out.melody;                                             // 128 next-note probabilities (view)
 * pipeline.stepFromEmotion(emotion, context);             // 64 values from text or biometrics
 * ```
 *
 * The context (CONTEXT_SIZE = 204 values, tonic-relative, built by the music decoder) is what
 * the symbolic models know of the music so far: the previous melody note, the chord in force
 * and the melody of the current chord span (CONTEXT below, docs/MUSIC.md). The graph input is
 * [features 0..127 | context 128..331].
 */

import { join } from "node:path";
import { packageRoot } from "../native/root.ts";
import { CadenzaError } from "../errors.ts";
import { describe, type LayerArch, parameterCount, tensorShapes } from "../model/spec.ts";
import { loadModel, type LoadOptions, loadSpec } from "../model/load.ts";
import { int8ParameterCount, int8WeightBytes } from "../model/quantised.ts";
import { Pipeline, type PipelineModel, type PipelineNode } from "./pipeline.ts";

export type EmotionModelName =
  | "EmotionRecognizer"
  | "MelodyTransformer"
  | "HarmonyPredictor"
  | "DynamicsEngine"
  | "GroovePredictor";

/** The step result: one reused view per node, overwritten by the next step. */
export interface EmotionOutputs extends Record<string, Float32Array> {
  /** 64 emotion values in [-1, 1]. */
  emotion: Float32Array;
  /**
   * 128 next-note probabilities (a softmax: they sum to 1), one per tonic-relative MIDI
   * number (the piece's tonic is C).
   */
  melody: Float32Array;
  /** 64 next-chord probabilities (a softmax: they sum to 1), tonic-relative classes. */
  harmony: Float32Array;
  /** 16 expression values in [0, 1]. */
  dynamics: Float32Array;
  /** 32 groove values in [-1, 1]. */
  groove: Float32Array;
}

export interface EmotionModelInfo {
  name: EmotionModelName;
  /** The graph node that runs it, and the key of its output. */
  node: keyof EmotionOutputs & string;
  inputSize: number;
  outputSize: number;
  layers: LayerArch[];
  /** The figure in the original design's table; ours must land within 10% of it. */
  seedParameters: number;
  description: string;
}

const dense = (
  inputSize: number,
  outputSize: number,
  activation: LayerArch["activation"],
): LayerArch => ({ kind: "dense", inputSize, outputSize, activation, bias: true });

const transformer = (d: number): LayerArch => ({
  kind: "transformer",
  inputSize: d,
  outputSize: d,
  heads: 4,
  context: 32,
  ffDim: 4 * d,
  epsilon: 1e-5,
  activation: "gelu",
});

/** The five architectures, in the order the graph runs them. */
export const EMOTION_MODELS: readonly EmotionModelInfo[] = Object.freeze([
  {
    name: "EmotionRecognizer",
    node: "emotion",
    inputSize: 128,
    outputSize: 64,
    layers: [
      dense(128, 512, "tanh"),
      dense(512, 256, "tanh"),
      { kind: "lstm", inputSize: 256, outputSize: 168 },
      dense(168, 64, "tanh"),
    ],
    seedParameters: 497_664,
    description: "128 audio features -> 64 emotion values; the LSTM carries the recent past",
  },
  {
    name: "MelodyTransformer",
    node: "melody",
    inputSize: 256,
    outputSize: 128,
    layers: [
      dense(256, 128, "linear"),
      transformer(128),
      transformer(128),
      dense(128, 128, "softmax"),
    ],
    seedParameters: 412_672,
    description: "[emotion 64, previous note 128, chord in force 64] -> 128 next-note " +
      "probabilities; causal attention over the last 32 notes (KV cache)",
  },
  {
    name: "HarmonyPredictor",
    node: "harmony",
    inputSize: 140,
    outputSize: 64,
    layers: [dense(140, 256, "tanh"), dense(256, 128, "tanh"), dense(128, 64, "softmax")],
    seedParameters: 74_048,
    description: "[emotion 64, chord in force 64, the span's melody pitch classes 12] -> 64 " +
      "next-chord probabilities",
  },
  {
    name: "DynamicsEngine",
    node: "dynamics",
    inputSize: 32,
    outputSize: 16,
    layers: [dense(32, 128, "relu"), dense(128, 64, "relu"), dense(64, 16, "sigmoid")],
    seedParameters: 13_456,
    description: "[emotion mean-pooled by 4, groove 0..15] -> 16 expression values",
  },
  {
    name: "GroovePredictor",
    node: "groove",
    inputSize: 64,
    outputSize: 32,
    layers: [dense(64, 128, "tanh"), dense(128, 64, "tanh"), dense(64, 32, "tanh")],
    seedParameters: 19_040,
    description: "64 emotion values -> 32 groove values (swing, micro-timing, density)",
  },
]);

/** Audio features the recognizer takes, and the emotion width stepFromEmotion takes. */
export const FEATURE_SIZE = 128;
export const EMOTION_SIZE = 64;

/**
 * The context vector's layout (204 values, tonic-relative: the piece's tonic is C), built by
 * the decoder (src/music/decode.ts, `Decoder.context`) before each model step.
 */
export const CONTEXT = Object.freeze({
  /** 0..127: the previous melody note, one-hot on its MIDI number; all 0 before the first. */
  PREVIOUS_NOTE: 0,
  /** 128..191: the chord in force, one-hot over the 64 classes; all 0 if none. */
  CHORD: 128,
  /**
   * 192..203: the melody of the current chord span so far, a pitch-class histogram weighted
   * by duration and summing to 1; all 0 while the span has no note.
   */
  SPAN_PITCH_CLASSES: 192,
});
export const CONTEXT_SIZE = 204;
/** The graph input: [features 0..127 | context 128..331]. */
export const GRAPH_INPUT_SIZE = FEATURE_SIZE + CONTEXT_SIZE;

/**
 * The graph, as data; its input is [features 128 | context 204] (GRAPH_INPUT_SIZE). The
 * recognizer reads the features. Melody reads [emotion 64, previous note 128, chord in force
 * 64] (context 0..191); harmony reads [emotion 64, chord in force 64, span pitch classes 12]
 * (context 128..203). Dynamics reads a 32-value compact context: the emotion mean-pooled in
 * fours (values 4k..4k+3 -> value k), then groove values 0..15.
 */
export const EMOTION_GRAPH: readonly PipelineNode[] = Object.freeze([
  {
    name: "emotion",
    model: "EmotionRecognizer",
    inputs: [{ from: "input", offset: 0, length: FEATURE_SIZE }],
  },
  {
    name: "melody",
    model: "MelodyTransformer",
    inputs: [
      { from: "emotion" },
      { from: "input", offset: FEATURE_SIZE + CONTEXT.PREVIOUS_NOTE, length: 192 },
    ],
  },
  { name: "groove", model: "GroovePredictor", inputs: [{ from: "emotion" }] },
  {
    name: "harmony",
    model: "HarmonyPredictor",
    inputs: [
      { from: "emotion" },
      { from: "input", offset: FEATURE_SIZE + CONTEXT.CHORD, length: 76 },
    ],
  },
  {
    name: "dynamics",
    model: "DynamicsEngine",
    inputs: [{ from: "emotion", op: "meanpool4" }, { from: "groove", offset: 0, length: 16 }],
  },
]);

/** Parameters of an architecture from its tensor shapes (what the loaded model reports). */
export function archParameterCount(layers: readonly LayerArch[]): number {
  let count = 0;
  for (const layer of layers) {
    for (const shape of Object.values(tensorShapes(layer))) {
      count += shape.reduce((a, b) => a * b, 1);
    }
  }
  return count;
}

/** The project's models/ folder, where the default files live. */
export function defaultModelsDir(): string {
  return `${packageRoot()}models/`;
}

/** The file of model `name` in `dir`. */
export function modelFile(dir: string, name: EmotionModelName): string {
  return join(dir, `${name}.safetensors`);
}

/** One model of a models/ folder as `cadenza inspect DIR` shows it. */
export interface EmotionModelRow {
  name: EmotionModelName;
  /** "128 -> 64". */
  shape: string;
  /** "dense 128->512 tanh, dense 512->256 tanh, lstm 256->168, ...". */
  architecture: string;
  parameters: number;
  /** Weight bytes as stored: parameters * 4 (float32), or int8's (int8WeightBytes). */
  bytes: number;
  /** How the file stores the weight matrices. */
  precision: "f32" | "int8";
  seedParameters: number;
  /** (parameters / seedParameters - 1) * 100. */
  diffPercent: number;
  /** Within 10% of the seed table. */
  withinSeed: boolean;
  /** The file's metadata says untrained: "true" (the seeded initialisations of models/). */
  untrained: boolean;
  file: string;
}

/** A one-line architecture: "dense 128->512 tanh, lstm 256->168, transformer d128 (...)". */
export function architectureLine(layers: readonly LayerArch[]): string {
  return layers.map((layer) => {
    if (layer.kind === "transformer") {
      return `transformer d${layer.inputSize} (${layer.heads} heads, context ${layer.context}, ` +
        `ff ${layer.ffDim} ${layer.activation ?? "gelu"})`;
    }
    const act = layer.activation !== undefined && layer.activation !== "linear"
      ? ` ${layer.activation}`
      : "";
    return `${layer.kind} ${layer.inputSize}->${layer.outputSize}${act}`;
  }).join(", ");
}

/**
 * Reads the five files of `dir` (specs only: no native library) and describes each against
 * the seed table. Throws E_IO naming the file when one is missing.
 */
export async function inspectEmotionModels(
  dir: string = defaultModelsDir(),
): Promise<EmotionModelRow[]> {
  const rows: EmotionModelRow[] = [];
  for (const info of EMOTION_MODELS) {
    const file = modelFile(dir, info.name);
    const loaded = await loadSpec(file);
    const spec = loaded.int8 ?? loaded.spec;
    const parameters = loaded.int8 === undefined
      ? parameterCount(loaded.spec)
      : int8ParameterCount(loaded.int8);
    const diffPercent = (parameters / info.seedParameters - 1) * 100;
    rows.push({
      name: info.name,
      shape: `${spec.inputSize} -> ${spec.layers[spec.layers.length - 1].outputSize}`,
      architecture: architectureLine(spec.layers),
      parameters,
      bytes: loaded.int8 === undefined ? parameters * 4 : int8WeightBytes(loaded.int8),
      precision: loaded.int8 === undefined ? "f32" : "int8",
      seedParameters: info.seedParameters,
      diffPercent,
      withinSeed: Math.abs(diffPercent) < 10,
      untrained: spec.meta?.untrained === "true",
      file,
    });
  }
  return rows;
}

export class EmotionPipeline {
  readonly pipeline: Pipeline<EmotionOutputs>;
  readonly models: Readonly<Record<EmotionModelName, PipelineModel>>;
  readonly #emotionIndex: number;
  /** The graph input each step assembles: [features | context]. */
  readonly #input = new Float32Array(GRAPH_INPUT_SIZE);

  /**
   * Builds the graph over five loaded models; the pipeline owns them from now on. `timed`:
   * every step times each node into `pipeline.nodeNs` (see PipelineOptions.timed).
   */
  constructor(models: Record<EmotionModelName, PipelineModel>, options: { timed?: boolean } = {}) {
    checkWidths(models);
    const nodes = structuredClone(EMOTION_GRAPH) as PipelineNode[];
    this.pipeline = new Pipeline<EmotionOutputs>(nodes, models, {
      inputSize: GRAPH_INPUT_SIZE,
      timed: options.timed,
    });
    this.models = models;
    this.#emotionIndex = this.pipeline.indexOf("emotion");
  }

  /**
   * Loads `<dir>/<ModelName>.safetensors` for each of the five (default: models/); `options`
   * go to every loadModel call (e.g. `{ library: "fast", precision: "bf16" }`),
   * `pipelineOptions` to the constructor.
   */
  static async load(
    dir: string = defaultModelsDir(),
    options: LoadOptions = {},
    pipelineOptions: { timed?: boolean } = {},
  ): Promise<EmotionPipeline> {
    const models: Partial<Record<EmotionModelName, PipelineModel>> = {};
    try {
      for (const info of EMOTION_MODELS) {
        models[info.name] = await loadModel(modelFile(dir, info.name), options);
      }
      return new EmotionPipeline(
        models as Record<EmotionModelName, PipelineModel>,
        pipelineOptions,
      );
    } catch (err) {
      for (const model of Object.values(models)) model.dispose();
      throw err;
    }
  }

  /**
   * One step from 128 audio features and the 204-value context (CONTEXT; default all zero:
   * no note, no chord yet); every model runs and its state advances. Allocates nothing.
   */
  step(features: Float32Array, context?: Float32Array): EmotionOutputs {
    if (!(features instanceof Float32Array) || features.length !== FEATURE_SIZE) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `EmotionPipeline.step: features: expected a Float32Array of ${FEATURE_SIZE}, ` +
          `got ${describe(features)}`,
      );
    }
    this.#setContext("step", context);
    this.#input.set(features);
    return this.pipeline.step(this.#input);
  }

  /**
   * One step from a 64-value emotion vector (text or biometric input) and the context (as for
   * `step`): the recognizer does not run and its state does not advance; `emotion` in the
   * result holds a copy of the input. Allocates nothing.
   */
  stepFromEmotion(emotion: Float32Array, context?: Float32Array): EmotionOutputs {
    if (!(emotion instanceof Float32Array) || emotion.length !== EMOTION_SIZE) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `EmotionPipeline.stepFromEmotion: expected a Float32Array of ${EMOTION_SIZE}, ` +
          `got ${describe(emotion)}`,
      );
    }
    this.#setContext("stepFromEmotion", context);
    return this.pipeline.stepFromIndex(this.#emotionIndex, emotion, this.#input);
  }

  /** Writes the context into the graph input (zeros when absent); checks it. */
  #setContext(call: string, context: Float32Array | undefined): void {
    const input = this.#input;
    if (context === undefined) {
      input.fill(0, FEATURE_SIZE);
      return;
    }
    if (!(context instanceof Float32Array) || context.length !== CONTEXT_SIZE) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `EmotionPipeline.${call}: context: expected a Float32Array of ${CONTEXT_SIZE}, ` +
          `got ${describe(context)}`,
      );
    }
    input.set(context, FEATURE_SIZE);
  }

  /** Whether steps run in the native graph, one native call each (see Pipeline.native). */
  get native(): boolean {
    return this.pipeline.native;
  }

  /** The views every step overwrites (the same object step returns). */
  get outputs(): EmotionOutputs {
    return this.pipeline.outputs;
  }

  reset(): void {
    this.pipeline.reset();
  }

  get parameterCount(): number {
    return this.pipeline.parameterCount;
  }

  get weightBytes(): number {
    return this.pipeline.weightBytes;
  }

  dispose(): void {
    this.pipeline.dispose();
  }
}

/** The graph checks input widths; the outputs are part of the contract too (music reads them). */
function checkWidths(models: Record<EmotionModelName, PipelineModel>): void {
  for (const info of EMOTION_MODELS) {
    const model = models[info.name];
    if (model === undefined) {
      throw new CadenzaError("E_ARGUMENT", `EmotionPipeline: model ${info.name} is missing`);
    }
    if (model.inputSize !== info.inputSize || model.outputSize !== info.outputSize) {
      throw new CadenzaError(
        "E_SHAPE",
        `EmotionPipeline: ${info.name} maps ${model.inputSize} -> ${model.outputSize}, ` +
          `expected ${info.inputSize} -> ${info.outputSize}`,
      );
    }
  }
}
