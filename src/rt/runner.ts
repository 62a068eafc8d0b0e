/**
 * What the real-time Worker runs each step: a `StepRunner`. The default runs the five-model
 * `EmotionPipeline` (src/pipeline/emotion.ts) from 128 audio features, or (input "emotion")
 * from a 64-value emotion vector with `stepFromEmotion`; `graph` runs a user graph of model
 * files through the generic `Pipeline`; `runner` names a module of the caller's own that
 * exports `createStepRunner(config)`. The pipelines run as the native graph when their models
 * allow (one native call per step), timed per node by native timestamps, which feed the
 * per-model latency histograms.
 */

import { CadenzaError } from "../errors.ts";
import type { Precision } from "../model/model.ts";
import type { Pipeline, PipelineModel, PipelineNode } from "../pipeline/pipeline.ts";

/**
 * What the caller submits: "features" (default), the 128 audio features the emotion pipeline
 * starts from (or a graph's input), or "emotion", a 64-value emotion vector (from text,
 * biometrics, a generator) that the pipeline takes in place of the recognizer's output.
 */
export type InputMode = "features" | "emotion";

/**
 * The context the emotion pipeline's symbolic models read beside each input
 * (src/pipeline/emotion.ts CONTEXT_SIZE, repeated here so that the caller's side of the engine
 * loads no pipeline module): the emotion pipeline's input slot holds [values | context].
 */
export const EMOTION_CONTEXT_SIZE = 204;

/** The five outputs of the emotion pipeline, in the order results store them. */
export const EMOTION_OUTPUTS = ["emotion", "melody", "harmony", "dynamics", "groove"] as const;

/** A graph of model files for the generic Pipeline (Pipeline.fromGraph's argument). */
export interface GraphConfig {
  nodes: PipelineNode[];
  /** Model key -> path of a model file. */
  files: Record<string, string>;
  inputSize?: number;
}

/** How the Worker builds its runner; posted to it, so plain data only. */
export interface RunnerConfig {
  /** Folder of the five emotion models (default: the project's models/). */
  models?: string;
  graph?: GraphConfig;
  /** URL of a module exporting `createStepRunner(config: RunnerConfig): Promise<StepRunner>`. */
  runner?: string;
  /** The native library the models use: "safe", "fast" or a path (default CADENZA_LIB, safe). */
  library?: string;
  /** How the models hold their weight matrices (loadModel's `precision`; default "f32"). */
  precision?: Precision;
  /** What each input is (default "features"); "emotion" only with the emotion pipeline. */
  input?: InputMode;
}

export interface StepRunner {
  readonly inputSize: number;
  readonly outputNames: readonly string[];
  /** Views that `step` fills, in `outputNames` order; the same arrays every step. */
  readonly outputs: readonly Float32Array[];
  readonly modelNames: readonly string[];
  /** Milliseconds each model's forward took in the last step, in `modelNames` order. */
  readonly modelMs: Float64Array;
  readonly loadMs: number;
  readonly weightBytes: number;
  /** Whether a step is one native call (the native graph); absent means false. */
  readonly native?: boolean;
  step(input: Float32Array): void;
  /** Optional: warm the caches for the next step (called shortly before it is due). */
  prefetch?(): void;
  dispose(): void;
}

/** Builds the runner `config` asks for. */
export async function createStepRunner(config: RunnerConfig): Promise<StepRunner> {
  if (config.runner !== undefined) return await moduleRunner(config);
  const options = { library: config.library, precision: config.precision };
  const input = config.input ?? "features";
  if (config.graph !== undefined) {
    if (input !== "features") {
      throw new CadenzaError(
        "E_ARGUMENT",
        `src/rt/runner.ts: input "${input}" needs the emotion pipeline; a graph takes its input`,
      );
    }
    return await graphRunner(config.graph, options);
  }
  return await emotionRunner(config.models, options, input);
}

/** What every model the Worker loads is loaded with. */
interface ModelLoadOptions {
  library?: string;
  precision?: Precision;
}

async function moduleRunner(config: RunnerConfig): Promise<StepRunner> {
  const module = await import(config.runner!);
  if (typeof module.createStepRunner !== "function") {
    throw new CadenzaError(
      "E_ARGUMENT",
      `src/rt/runner.ts: module ${config.runner} does not export createStepRunner(config)`,
    );
  }
  const runner: StepRunner = await module.createStepRunner(config);
  checkRunner(runner, config.runner!);
  return runner;
}

// The pipeline modules load the native library, so they are imported only when used: a
// runner module of the caller's own then needs no native library at all.
async function emotionRunner(
  dir: string | undefined,
  options: ModelLoadOptions,
  input: InputMode,
): Promise<StepRunner> {
  const emotion = await import("../pipeline/emotion.ts");
  const { loadModel } = await import("../model/load.ts");
  const folder = dir ?? emotion.defaultModelsDir();
  const modelNames = emotion.EMOTION_MODELS.map((info) => info.name);
  const started = performance.now();
  const models: Record<string, PipelineModel> = {};
  let pipeline;
  try {
    for (const name of modelNames) {
      models[name] = await loadModel(emotion.modelFile(folder, name), options);
    }
    pipeline = new emotion.EmotionPipeline(models, { timed: true });
  } catch (err) {
    for (const model of Object.values(models)) model.dispose();
    throw err;
  }
  const loadMs = performance.now() - started;
  // Each input is [values | context]: the features and context are the graph input itself;
  // an emotion vector and its context are copied apart (by loops: a subarray would allocate).
  const fromEmotion = input === "emotion";
  const width = fromEmotion ? emotion.EMOTION_SIZE : emotion.FEATURE_SIZE;
  const inputSize = width + emotion.CONTEXT_SIZE;
  const given = new Float32Array(emotion.EMOTION_SIZE);
  const context = new Float32Array(emotion.CONTEXT_SIZE);
  const step = fromEmotion
    ? (values: Float32Array) => {
      for (let i = 0; i < width; i++) given[i] = values[i];
      for (let i = 0; i < context.length; i++) context[i] = values[width + i];
      return pipeline.stepFromEmotion(given, context);
    }
    : (values: Float32Array) => pipeline.pipeline.step(values);
  return timedRunner(pipeline.pipeline, pipeline, step, {
    inputSize,
    outputNames: EMOTION_OUTPUTS,
    modelNames,
    loadMs,
  }, "EmotionPipeline");
}

async function graphRunner(graph: GraphConfig, options: ModelLoadOptions): Promise<StepRunner> {
  const { Pipeline } = await import("../pipeline/pipeline.ts");
  const { loadModel } = await import("../model/load.ts");
  const modelNames = Object.keys(graph.files);
  const started = performance.now();
  const models: Record<string, PipelineModel> = {};
  let pipeline;
  try {
    for (const name of modelNames) models[name] = await loadModel(graph.files[name], options);
    pipeline = new Pipeline(graph.nodes, models, { inputSize: graph.inputSize, timed: true });
  } catch (err) {
    for (const model of Object.values(models)) model.dispose();
    throw err;
  }
  const loadMs = performance.now() - started;
  const { inputSize, order: outputNames } = pipeline;
  const step = (values: Float32Array) => pipeline.step(values);
  return timedRunner(
    pipeline,
    pipeline,
    step,
    { inputSize, outputNames, modelNames, loadMs },
    "graph",
  );
}

/** What a runner needs from EmotionPipeline or Pipeline. */
interface RunnablePipeline {
  readonly outputs: Readonly<Record<string, Float32Array>>;
  readonly weightBytes: number;
  readonly native: boolean;
  dispose(): void;
}

/**
 * The runner over a built pipeline (timed), its outputs in `outputNames` order; each model's
 * time is the sum of its nodes' in `graph.nodeNs`.
 */
function timedRunner(
  graph: Pipeline,
  pipeline: RunnablePipeline,
  step: (input: Float32Array) => unknown,
  timing: Pick<StepRunner, "inputSize" | "outputNames" | "modelNames" | "loadMs">,
  source: string,
): StepRunner {
  const views = pipeline.outputs;
  const modelMs = new Float64Array(timing.modelNames.length);
  // For each model, the run-order indices of the nodes that run it.
  const byName = new Map(graph.nodes.map((node) => [node.name, node.model]));
  const nodesOf = timing.modelNames.map((model) =>
    Int32Array.from(
      graph.order.flatMap((name, index) => (byName.get(name) === model ? [index] : [])),
    )
  );
  const nodeNs = graph.nodeNs;
  const runner: StepRunner = {
    ...timing,
    modelMs,
    native: pipeline.native,
    outputs: timing.outputNames.map((name) => views[name]),
    weightBytes: pipeline.weightBytes,
    prefetch: () => graph.prefetch(),
    step: (input) => {
      step(input);
      for (let m = 0; m < nodesOf.length; m++) {
        const nodes = nodesOf[m];
        let ns = 0;
        for (let k = 0; k < nodes.length; k++) ns += nodeNs[nodes[k]];
        modelMs[m] = ns / 1e6;
      }
    },
    dispose: () => pipeline.dispose(),
  };
  checkRunner(runner, source);
  return runner;
}

function checkRunner(runner: StepRunner, source: string): void {
  const where = `src/rt/runner.ts: the runner from ${source}`;
  const names = runner.outputNames;
  if (!Array.isArray(names) || names.length === 0 || names.length !== runner.outputs?.length) {
    throw new CadenzaError("E_ARGUMENT", `${where} needs outputNames and outputs of equal length`);
  }
  if (!runner.outputs.every((view) => view instanceof Float32Array && view.length > 0)) {
    throw new CadenzaError("E_ARGUMENT", `${where}: every output must be a non-empty Float32Array`);
  }
  if (
    !(runner.modelMs instanceof Float64Array) ||
    runner.modelMs.length !== runner.modelNames.length
  ) {
    throw new CadenzaError("E_ARGUMENT", `${where}: modelMs must be a Float64Array per model`);
  }
  if (!Number.isInteger(runner.inputSize) || runner.inputSize < 1) {
    throw new CadenzaError("E_ARGUMENT", `${where}: inputSize ${runner.inputSize} is not a width`);
  }
}
