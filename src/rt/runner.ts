/**
 * What the real-time Worker runs each step: a `StepRunner`. The default runs the five-model
 * `EmotionPipeline` (src/pipeline/emotion.ts); `graph` runs a user graph of model files through
 * the generic `Pipeline`; `runner` names a module of the caller's own that exports
 * `createStepRunner(config)`. Every model is wrapped so its forward call is timed on the
 * Worker's clock, which feeds the per-model latency histograms.
 */

import { CadenzaError } from "../errors.ts";
import type { Precision } from "../model/model.ts";
import type { PipelineModel, PipelineNode } from "../pipeline/pipeline.ts";

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
  step(input: Float32Array): void;
  dispose(): void;
}

/** A model whose forward records its duration in `timings[index]`. */
class TimedModel implements PipelineModel {
  readonly inputSize: number;
  readonly outputSize: number;
  readonly parameterCount: number;
  readonly weightBytes: number;
  readonly #model: PipelineModel;
  readonly #timings: Float64Array;
  readonly #index: number;

  constructor(model: PipelineModel, timings: Float64Array, index: number) {
    this.inputSize = model.inputSize;
    this.outputSize = model.outputSize;
    this.parameterCount = model.parameterCount;
    this.weightBytes = model.weightBytes;
    this.#model = model;
    this.#timings = timings;
    this.#index = index;
  }

  forward(input: Float32Array): Float32Array {
    const start = performance.now();
    const output = this.#model.forward(input);
    this.#timings[this.#index] = performance.now() - start;
    return output;
  }

  reset(): void {
    this.#model.reset();
  }

  dispose(): void {
    this.#model.dispose();
  }
}

/** Builds the runner `config` asks for. */
export async function createStepRunner(config: RunnerConfig): Promise<StepRunner> {
  if (config.runner !== undefined) return await moduleRunner(config);
  const options = { library: config.library, precision: config.precision };
  if (config.graph !== undefined) return await graphRunner(config.graph, options);
  return await emotionRunner(config.models, options);
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
): Promise<StepRunner> {
  const emotion = await import("../pipeline/emotion.ts");
  const { loadModel } = await import("../model/load.ts");
  const folder = dir ?? emotion.defaultModelsDir();
  const modelNames = emotion.EMOTION_MODELS.map((info) => info.name);
  const modelMs = new Float64Array(modelNames.length);
  const started = performance.now();
  const models: Record<string, PipelineModel> = {};
  let pipeline;
  try {
    for (const [i, name] of modelNames.entries()) {
      const model = await loadModel(emotion.modelFile(folder, name), options);
      models[name] = new TimedModel(model, modelMs, i);
    }
    pipeline = new emotion.EmotionPipeline(models);
  } catch (err) {
    for (const model of Object.values(models)) model.dispose();
    throw err;
  }
  const loadMs = performance.now() - started;
  const inputSize = emotion.FEATURE_SIZE;
  const timing = { inputSize, outputNames: EMOTION_OUTPUTS, modelNames, modelMs, loadMs };
  return pipelineRunner(pipeline, timing, "EmotionPipeline");
}

async function graphRunner(graph: GraphConfig, options: ModelLoadOptions): Promise<StepRunner> {
  const { Pipeline } = await import("../pipeline/pipeline.ts");
  const { loadModel } = await import("../model/load.ts");
  const modelNames = Object.keys(graph.files);
  const modelMs = new Float64Array(modelNames.length);
  const started = performance.now();
  let loaded = 0;
  const pipeline = await Pipeline.fromGraph(
    graph,
    async (source) => new TimedModel(await loadModel(source, options), modelMs, loaded++),
  );
  const loadMs = performance.now() - started;
  const { inputSize, order: outputNames } = pipeline;
  return pipelineRunner(pipeline, { inputSize, outputNames, modelNames, modelMs, loadMs }, "graph");
}

/** What a pipeline runner needs from EmotionPipeline or Pipeline. */
interface RunnablePipeline {
  readonly outputs: Readonly<Record<string, Float32Array>>;
  readonly weightBytes: number;
  step(input: Float32Array): unknown;
  dispose(): void;
}

/** The runner over a built pipeline, its outputs in `outputNames` order. */
function pipelineRunner(
  pipeline: RunnablePipeline,
  timing: Pick<StepRunner, "inputSize" | "outputNames" | "modelNames" | "modelMs" | "loadMs">,
  source: string,
): StepRunner {
  const views = pipeline.outputs;
  const runner: StepRunner = {
    ...timing,
    outputs: timing.outputNames.map((name) => views[name]),
    weightBytes: pipeline.weightBytes,
    step: (input) => pipeline.step(input),
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
