/**
 * onnxruntime-node as a peer of cadenza: each model exported to ONNX in memory
 * (src/model/formats/onnx-export.ts) with the weights cadenza holds, run through the public
 * promise-returning session and, where the installed version has it, the synchronous internal
 * binding; and the emotion pipeline over them through src/pipeline/pipeline.ts (the one
 * TypeScript graph interpreter), five session runs per step.
 */

import { createRequire } from "node:module";
import { CadenzaError } from "../errors.ts";
// Types only: the exporter (and onnx-proto, a dev dependency) loads when a peer is made.
import type { OnnxExport, OnnxStepper, OrtLike } from "../model/formats/onnx-export.ts";
import { specAsHeld } from "../model/image.ts";
import type { Model } from "../model/model.ts";
import {
  EMOTION_GRAPH,
  EMOTION_MODELS,
  type EmotionModelName,
  type EmotionOutputs,
  FEATURE_SIZE,
  GRAPH_INPUT_SIZE,
} from "../pipeline/emotion.ts";
import { Pipeline, type PipelineModel } from "../pipeline/pipeline.ts";

/** The part of onnxruntime-node used here. */
export interface OrtModule extends OrtLike {
  InferenceSession: {
    create(bytes: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession>;
  };
}
export interface OrtSession {
  run(
    feeds: Record<string, unknown>,
  ): Promise<Record<string, { data: unknown; dims: readonly number[] }>>;
  release?(): Promise<void>;
}
interface OrtSyncSession {
  run(
    feeds: Record<string, unknown>,
    fetches: Record<string, null>,
    options: object,
  ): Record<string, { data: unknown; dims: readonly number[] }>;
  outputMetadata: { name: string }[];
}

/**
 * Session options for the peer: one intra-op thread, as cadenza runs one model on one thread;
 * on this 2-core VM more threads only add hand-off cost at batch 1 (docs/PERFORMANCE.md).
 */
export const ORT_SESSION_OPTIONS = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
} as const;

/** Imports onnxruntime-node (a devDependency), or throws a CadenzaError saying how to get it. */
export async function importOrt(): Promise<OrtModule> {
  try {
    return (await import("onnxruntime-node")) as unknown as OrtModule;
  } catch (err) {
    throw new CadenzaError(
      "E_ARGUMENT",
      "bench --peers needs onnxruntime-node (a dev " +
        `dependency): run \`npm install\` in the repository (${(err as Error).message})`,
    );
  }
}

/**
 * A synchronous onnxruntime session through onnxruntime-node's internal binding (the public
 * run() wraps this same call in a promise and a setImmediate hop). Internal API: null when the
 * installed version does not have it.
 */
function openSyncSession(bytes: Uint8Array, options: object): OrtSyncSession | null {
  try {
    const require = createRequire(import.meta.url);
    const { binding, initOrt } = require("onnxruntime-node/dist/binding.js");
    initOrt();
    const session = new binding.InferenceSession();
    session.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, options);
    return session as OrtSyncSession;
  } catch {
    return null;
  }
}

/** One model in onnxruntime: an async session and, when available, a sync one. */
export class OrtModel implements PipelineModel {
  readonly name: string;
  readonly exported: OnnxExport;
  readonly inputSize: number;
  readonly outputSize: number;
  readonly parameterCount: number;
  readonly weightBytes: number;
  readonly #session: OrtSession;
  readonly #sync: OrtSyncSession | null;
  readonly #fetches: Record<string, null> = {};
  readonly #asyncState: OnnxStepper;
  readonly #syncState: OnnxStepper;

  private constructor(
    name: string,
    exported: OnnxExport,
    session: OrtSession,
    states: [OnnxStepper, OnnxStepper],
    source: Model,
  ) {
    this.name = name;
    this.exported = exported;
    this.inputSize = exported.inputSize;
    this.outputSize = exported.outputSize;
    this.parameterCount = source.parameterCount;
    this.weightBytes = source.weightBytes;
    this.#session = session;
    this.#sync = openSyncSession(exported.bytes, ORT_SESSION_OPTIONS);
    for (const m of this.#sync?.outputMetadata ?? []) this.#fetches[m.name] = null;
    [this.#asyncState, this.#syncState] = states;
  }

  static async create(ort: OrtModule, name: string, model: Model): Promise<OrtModel> {
    const { exportOnnx, OnnxStepper } = await import("../model/formats/onnx-export.ts");
    // The weights the model holds (bf16-rounded at that precision), so outputs can agree.
    const exported = exportOnnx(specAsHeld(model.spec, model.precision), { name });
    const session = await ort.InferenceSession.create(exported.bytes, { ...ORT_SESSION_OPTIONS });
    const states: [OnnxStepper, OnnxStepper] = [
      new OnnxStepper(ort, exported),
      new OnnxStepper(ort, exported),
    ];
    return new OrtModel(name, exported, session, states, model);
  }

  get hasSync(): boolean {
    return this.#sync !== null;
  }

  /** One step through the public, promise-returning session.run. */
  async forwardAsync(input: Float32Array): Promise<Float32Array> {
    this.#asyncState.input.set(input);
    return this.#asyncState.accept(await this.#session.run(this.#asyncState.feeds));
  }

  /** One step through the internal synchronous run (check hasSync first). */
  forwardSync(input: Float32Array): Float32Array {
    if (this.#sync === null) throw new CadenzaError("E_NATIVE", "onnxruntime sync run unavailable");
    this.#syncState.input.set(input);
    return this.#syncState.accept(this.#sync.run(this.#syncState.feeds, this.#fetches, {}));
  }

  /** As a PipelineModel: the synchronous run (check hasSync first). */
  forward(input: Float32Array): Float32Array {
    return this.forwardSync(input);
  }

  reset(): void {
    this.#asyncState.reset();
    this.#syncState.reset();
  }

  /** The sessions hold no native memory the process must give back before it exits. */
  dispose(): void {}
}

/** The emotion pipeline in onnxruntime: the same graph, five session runs per step. */
export class OrtPipeline {
  readonly models: Record<EmotionModelName, OrtModel>;
  readonly pipeline: Pipeline<EmotionOutputs>;
  /** Each node's peer, in the pipeline's run order. */
  readonly #runOrder: OrtModel[];

  constructor(models: Record<EmotionModelName, OrtModel>) {
    this.models = models;
    this.pipeline = new Pipeline<EmotionOutputs>([...EMOTION_GRAPH], models, {
      inputSize: GRAPH_INPUT_SIZE,
    });
    this.#runOrder = this.pipeline.order.map((name) =>
      models[EMOTION_GRAPH.find((node) => node.name === name)!.model as EmotionModelName]
    );
  }

  static async create(
    ort: OrtModule,
    models: Record<EmotionModelName, Model>,
  ): Promise<OrtPipeline> {
    const peers: Partial<Record<EmotionModelName, OrtModel>> = {};
    for (const info of EMOTION_MODELS) {
      peers[info.name] = await OrtModel.create(ort, info.name, models[info.name]);
    }
    return new OrtPipeline(peers as Record<EmotionModelName, OrtModel>);
  }

  /**
   * Five awaited session.run calls, as a user of the public API writes it; `features` (128)
   * with an all-zero context, as EmotionPipeline.step without one.
   */
  async step(features: Float32Array): Promise<EmotionOutputs> {
    const p = this.pipeline;
    const run = this.#runOrder;
    const input = this.#graphInput(features);
    for (let i = 0; i < run.length; i++) {
      p.setOutput(i, await run[i].forwardAsync(p.inputOf(i, input)));
    }
    return p.outputs;
  }

  /** The same through the synchronous internal run (check hasSync first). */
  stepSync(features: Float32Array): EmotionOutputs {
    return this.pipeline.step(this.#graphInput(features));
  }

  readonly #input = new Float32Array(GRAPH_INPUT_SIZE);

  #graphInput(features: Float32Array): Float32Array {
    this.#input.set(features.subarray(0, FEATURE_SIZE));
    return this.#input;
  }

  get hasSync(): boolean {
    return Object.values(this.models).every((m) => m.hasSync);
  }

  /** Every node's output, concatenated in EMOTION_GRAPH order (as pipelineStepper's). */
  concatOutputs(into: Float32Array): Float32Array {
    let at = 0;
    for (const node of EMOTION_GRAPH) {
      const values = this.pipeline.outputs[node.name as keyof EmotionOutputs];
      into.set(values, at);
      at += values.length;
    }
    return into;
  }

  get outputsLength(): number {
    return EMOTION_MODELS.reduce((n, m) => n + m.outputSize, 0);
  }

  reset(): void {
    this.pipeline.reset();
  }
}
