/**
 * `cadenza bench`: latency of each model of the emotion pipeline and of the full pipeline step,
 * with `--peers` the same models with the same weights in onnxruntime-node (exported by
 * src/model/formats/onnx-export.ts), checked to agree before anything is timed. The timing,
 * percentile, agreement and graph helpers here are shared with the mitata suites in bench/.
 */

import { createRequire } from "node:module";
import process from "node:process";
import { CadenzaError } from "../errors.ts";
// Types only: the exporter (and onnx-proto, a dev dependency) loads when --peers asks for it.
import type { OnnxExport, OnnxStepper, OrtLike } from "../model/formats/onnx-export.ts";
import { loadModel, type Model } from "../index.ts";
import { type Precision, PRECISIONS, specAsHeld } from "../model/image.ts";
import type { PipelineNode } from "../pipeline/pipeline.ts";
import {
  defaultModelsDir,
  EMOTION_GRAPH,
  EMOTION_MODELS,
  type EmotionModelName,
  EmotionPipeline,
  FEATURE_SIZE,
  modelFile,
} from "../pipeline/emotion.ts";
import { envVar, runtime, writeFile } from "../native/io.ts";
import { intFlag, type ParsedArgs, UsageError } from "./args.ts";
import type { Command, Output } from "./command.ts";

export const BENCH_HELP = `usage: cadenza bench [--models DIR] [--iterations N]
                     [--precision f32|bf16|int8] [--json FILE] [--peers]

Times each model of the emotion pipeline (one step, batch 1) and the full pipeline step:
median, p99 and max latency in microseconds, parameters, weight bytes and the process's
resident memory; then the targets (single model < 2 ms, pipeline < 10 ms, ~4 MB of weights).

  --models DIR      folder with the five .safetensors files (default: the project's models/)
  --iterations N    timed steps per model and for the pipeline (default 1000)
  --warmup N        untimed steps first (default 100)
  --precision P     f32 (default); bf16: weight matrices held as bfloat16, half the bytes;
                    int8: matrices as int8 with a scale per row, inputs quantised per call.
                    --peers then run the weights as held (bf16-rounded, or int8 dequantised
                    to q * scale) in f32 arithmetic
  --json FILE       also write the figures as JSON (shape in docs/PERFORMANCE.md)
  --peers           also run onnxruntime-node on the same models and weights (ONNX exported in
                    memory), after checking that its outputs agree within ${1e-4} (${5e-2} at
                    int8, where onnxruntime does not quantise the inputs)

The native library is CADENZA_LIB (safe, fast or a path); bench defaults to fast.`;

// ---------------------------------------------------------------------------------------------
// Statistics and timing

/** The value below which `p` percent of sorted samples lie (nearest rank). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
}

export interface LatencySummary {
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

/** Median, p99 and max of samples given in microseconds. */
export function summarizeUs(samples_us: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(samples_us).sort();
  // Nanosecond resolution is all the clocks give; more digits would only be noise in the JSON.
  const ns = (us: number) => Math.round(us * 1e3) / 1e3;
  return {
    p50Us: ns(percentile(sorted, 50)),
    p99Us: ns(percentile(sorted, 99)),
    maxUs: ns(sorted[sorted.length - 1]),
  };
}

/** Times `iterations` calls of `fn` (after `warmup` untimed ones), one sample per call. */
export function timeSync(fn: (i: number) => unknown, iterations: number, warmup: number) {
  for (let i = 0; i < warmup; i++) fn(i);
  const samples_us = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const start = performance.now();
    fn(i);
    samples_us[i] = (performance.now() - start) * 1e3;
  }
  return summarizeUs(samples_us);
}

/** timeSync for a function that returns a promise, awaited inside the timed span. */
export async function timeAsync(
  fn: (i: number) => Promise<unknown>,
  iterations: number,
  warmup: number,
): Promise<LatencySummary> {
  for (let i = 0; i < warmup; i++) await fn(i);
  const samples_us = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const start = performance.now();
    await fn(i);
    samples_us[i] = (performance.now() - start) * 1e3;
  }
  return summarizeUs(samples_us);
}

/** `count` deterministic input vectors of `size` values in [-1, 1). */
export function benchInputs(count: number, size: number, seed = 1): Float32Array[] {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
  return Array.from({ length: count }, () => Float32Array.from({ length: size }, next));
}

// ---------------------------------------------------------------------------------------------
// Agreement across implementations

/** Something that runs a model or pipeline step by step. */
export interface Stepper {
  name: string;
  step(input: Float32Array): Float32Array | Promise<Float32Array>;
  reset(): void;
}

export interface Agreement {
  name: string;
  against: string;
  /** Largest |difference| over every step and output value. */
  worstAbs: number;
  step: number;
  index: number;
}

/** Outputs of the five pipeline models and steps must agree within this (absolute; they are
 * bounded by tanh, sigmoid and softmax, so absolute and relative error are alike). */
export const AGREEMENT_TOLERANCE = 1e-4;

/**
 * At int8 the peer runs the dequantised weights q * scale in f32, but not the per-call
 * quantisation of each matrix-vector input (up to 1/254 of the vector's largest magnitude per
 * element), so outputs differ by that: measured up to 2.6e-2 over this check's 48 pipeline
 * steps and 2.0e-2 over 2000 random steps of each model; the bound leaves about 2x.
 */
export const INT8_AGREEMENT_TOLERANCE = 5e-2;

/** The agreement tolerance for a precision. */
export function agreementTolerance(precision: Precision): number {
  return precision === "int8" ? INT8_AGREEMENT_TOLERANCE : AGREEMENT_TOLERANCE;
}

/**
 * Runs every stepper on the same inputs from a reset state and compares each with the first;
 * throws CadenzaError E_NATIVE naming the worst value when any differs by more than
 * `tolerance`. All steppers are reset again afterwards.
 */
export async function checkAgreement(
  steppers: Stepper[],
  inputs: Float32Array[],
  tolerance = AGREEMENT_TOLERANCE,
): Promise<Agreement[]> {
  const [base, ...others] = steppers;
  const rows = others.map((s) => ({
    name: s.name,
    against: base.name,
    worstAbs: 0,
    step: -1,
    index: -1,
  }));
  for (const s of steppers) s.reset();
  for (let step = 0; step < inputs.length; step++) {
    const want = Float32Array.from(await base.step(inputs[step]));
    for (const [k, other] of others.entries()) {
      compareInto(rows[k], want, await other.step(inputs[step]), step);
    }
  }
  for (const s of steppers) s.reset();
  const bad = rows.find((row) => !(row.worstAbs <= tolerance));
  if (bad) {
    throw new CadenzaError(
      "E_NATIVE",
      `${bad.name} disagrees with ${bad.against}: ` +
        `|difference| ${bad.worstAbs} at step ${bad.step}, value ${bad.index}, over the ` +
        `tolerance ${tolerance}`,
    );
  }
  return rows;
}

function compareInto(row: Agreement, want: Float32Array, got: Float32Array, step: number): void {
  if (got.length !== want.length) {
    throw new CadenzaError(
      "E_SHAPE",
      `${row.name} gave ${got.length} values at step ${step}, ` +
        `${row.against} gave ${want.length}`,
    );
  }
  for (let i = 0; i < want.length; i++) {
    const diff = Math.abs(got[i] - want[i]);
    if (!(diff <= row.worstAbs)) {
      Object.assign(row, { worstAbs: Number.isNaN(diff) ? Infinity : diff, step, index: i });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A pipeline graph over any models, for `rows` independent rows (the peers and batch runs)

interface Widths {
  readonly inputSize: number;
  readonly outputSize: number;
}

interface PlanNode {
  name: string;
  model: string;
  edges: { source: number; offset: number; length: number; op: string; factor: number }[];
  input: Float32Array;
  output: Float32Array;
}

/**
 * The pipeline's graph (src/pipeline/pipeline.ts semantics: edges concatenated in order,
 * copy / maxpoolN / meanpoolN) with buffers for `rows` rows; nodes must come in run order.
 */
export class GraphPlan {
  readonly nodes: PlanNode[];
  readonly rows: number;
  readonly inputSize: number;

  constructor(
    graph: readonly PipelineNode[],
    models: Record<string, Widths>,
    inputSize: number,
    rows = 1,
  ) {
    this.rows = rows;
    this.inputSize = inputSize;
    this.nodes = [];
    for (const node of graph) {
      const widths = models[node.model];
      const edges = node.inputs.map((edge) => {
        const source = edge.from === "input"
          ? -1
          : this.nodes.findIndex((n) => n.name === edge.from);
        if (source === -1 && edge.from !== "input") {
          throw new CadenzaError(
            "E_ARGUMENT",
            `bench graph: "${node.name}" reads "${edge.from}", ` +
              `which has not run before it`,
          );
        }
        const width = source < 0 ? inputSize : this.nodes[source].output.length / rows;
        const op = edge.op ?? "copy";
        const factor = op === "copy" ? 1 : Number(op.slice(-1));
        const offset = edge.offset ?? 0;
        return { source, offset, length: edge.length ?? width - offset, op, factor };
      });
      const total = edges.reduce((n, e) => n + e.length / e.factor, 0);
      if (total !== widths.inputSize) {
        throw new CadenzaError(
          "E_SHAPE",
          `bench graph: "${node.name}" gathers ${total} values, ` +
            `its model takes ${widths.inputSize}`,
        );
      }
      this.nodes.push({
        name: node.name,
        model: node.model,
        edges,
        input: new Float32Array(rows * widths.inputSize),
        output: new Float32Array(rows * widths.outputSize),
      });
    }
  }

  /** Fills node `k`'s input, every row, from the graph input and earlier outputs. */
  gather(k: number, graphInput: Float32Array): Float32Array {
    const node = this.nodes[k];
    const inWidth = node.input.length / this.rows;
    for (let r = 0; r < this.rows; r++) {
      let at = r * inWidth;
      for (const e of node.edges) {
        const src = e.source < 0 ? graphInput : this.nodes[e.source].output;
        const base = r * (src.length / this.rows) + e.offset;
        for (let i = 0; i < e.length; i += e.factor) {
          let v = e.op.startsWith("max") ? -Infinity : 0;
          for (let j = 0; j < e.factor; j++) {
            v = e.op.startsWith("max") ? Math.max(v, src[base + i + j]) : v + src[base + i + j];
          }
          node.input[at++] = e.op.startsWith("mean") ? v / e.factor : v;
        }
      }
    }
    return node.input;
  }

  /** All node outputs concatenated in node order (for agreement checks). */
  concatOutputs(into: Float32Array): Float32Array {
    let at = 0;
    for (const node of this.nodes) {
      into.set(node.output, at);
      at += node.output.length;
    }
    return into;
  }

  get outputsLength(): number {
    return this.nodes.reduce((n, node) => n + node.output.length, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// onnxruntime-node peers

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
export class OrtModel implements Widths {
  readonly name: string;
  readonly exported: OnnxExport;
  readonly inputSize: number;
  readonly outputSize: number;
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
  ) {
    this.name = name;
    this.exported = exported;
    this.inputSize = exported.inputSize;
    this.outputSize = exported.outputSize;
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
    return new OrtModel(name, exported, session, states);
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

  reset(): void {
    this.#asyncState.reset();
    this.#syncState.reset();
  }
}

/** The emotion pipeline in onnxruntime: the same graph, five session runs per step. */
export class OrtPipeline {
  readonly models: Record<EmotionModelName, OrtModel>;
  readonly plan: GraphPlan;

  constructor(models: Record<EmotionModelName, OrtModel>) {
    this.models = models;
    this.plan = new GraphPlan(EMOTION_GRAPH, models, FEATURE_SIZE);
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

  /** Five awaited session.run calls, as a user of the public API writes it. */
  async step(features: Float32Array): Promise<GraphPlan> {
    const nodes = this.plan.nodes;
    for (let k = 0; k < nodes.length; k++) {
      const y = await this.models[nodes[k].model as EmotionModelName].forwardAsync(
        this.plan.gather(k, features),
      );
      nodes[k].output.set(y);
    }
    return this.plan;
  }

  /** The same through the synchronous internal run. */
  stepSync(features: Float32Array): GraphPlan {
    const nodes = this.plan.nodes;
    for (let k = 0; k < nodes.length; k++) {
      const y = this.models[nodes[k].model as EmotionModelName].forwardSync(
        this.plan.gather(k, features),
      );
      nodes[k].output.set(y);
    }
    return this.plan;
  }

  get hasSync(): boolean {
    return Object.values(this.models).every((m) => m.hasSync);
  }

  reset(): void {
    for (const m of Object.values(this.models)) m.reset();
    for (const node of this.plan.nodes) node.output.fill(0);
  }
}

/** A cadenza EmotionPipeline as a Stepper whose output is every node's output, concatenated. */
export function pipelineStepper(name: string, pipeline: EmotionPipeline): Stepper {
  const order = EMOTION_GRAPH.map((n) => n.name);
  const width = EMOTION_MODELS.reduce((n, m) => n + m.outputSize, 0);
  const out = new Float32Array(width);
  return {
    name,
    step(x) {
      const outputs = pipeline.step(x);
      let at = 0;
      for (const key of order) {
        out.set(outputs[key], at);
        at += outputs[key].length;
      }
      return out;
    },
    reset: () => pipeline.reset(),
  };
}

// ---------------------------------------------------------------------------------------------
// Loading and the command

/** The five models from `dir` with the chosen library (default fast), and their pipeline. */
export async function loadBenchPipeline(dir: string, precision: Precision = "f32"): Promise<{
  pipeline: EmotionPipeline;
  models: Record<EmotionModelName, Model>;
  library: string;
}> {
  const library = envVar("CADENZA_LIB") ?? "fast";
  const models: Partial<Record<EmotionModelName, Model>> = {};
  try {
    for (const info of EMOTION_MODELS) {
      models[info.name] = await loadModel(modelFile(dir, info.name), { library, precision });
    }
  } catch (err) {
    for (const m of Object.values(models)) m.dispose();
    throw err;
  }
  const full = models as Record<EmotionModelName, Model>;
  return { pipeline: new EmotionPipeline(full), models: full, library };
}

export interface ModelFigures extends LatencySummary {
  name: string;
  parameters: number;
  weightBytes: number;
}

export interface BenchReport {
  precision: Precision;
  iterations: number;
  runtime: string;
  library: string;
  date: string;
  models: ModelFigures[];
  pipeline: LatencySummary;
  memory: { rssBytes: number };
  peers?: {
    onnxruntime: {
      version: string;
      agreementMaxAbs: number;
      models: ModelFigures[];
      pipeline: LatencySummary;
      pipelineSync?: LatencySummary;
    };
  };
}

function checkPrecision(args: ParsedArgs): Precision {
  const precision = args.values.get("precision") ?? "f32";
  if (PRECISIONS.includes(precision as Precision)) return precision as Precision;
  throw new UsageError(`bench: --precision must be f32, bf16 or int8, got "${precision}"`);
}

async function runBench(args: ParsedArgs, output: Output): Promise<number> {
  const precision = checkPrecision(args);
  const iterations = intFlag(args, "iterations", 1000, "bench");
  const warmup = intFlag(args, "warmup", 100, "bench");
  const dir = args.values.get("models") ?? defaultModelsDir();
  const { pipeline, models, library } = await loadBenchPipeline(dir, precision);
  try {
    const report = measureAll(pipeline, models, { iterations, warmup, library, precision });
    if (args.switches.has("peers")) {
      report.peers = {
        onnxruntime: await measurePeers(pipeline, models, report, iterations, warmup),
      };
    }
    printReport(report, output);
    const jsonPath = args.values.get("json");
    if (jsonPath !== undefined) {
      await writeFile(jsonPath, new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
      output.err(`wrote ${jsonPath}`);
    }
    return 0;
  } finally {
    pipeline.dispose();
  }
}

function measureAll(
  pipeline: EmotionPipeline,
  models: Record<EmotionModelName, Model>,
  o: { iterations: number; warmup: number; library: string; precision: Precision },
): BenchReport {
  const figures = EMOTION_MODELS.map((info) => {
    const model = models[info.name];
    const inputs = benchInputs(64, model.inputSize, 7);
    const timing = timeSync((i) => model.forward(inputs[i & 63]), o.iterations, o.warmup);
    model.reset();
    return {
      name: info.name,
      parameters: model.parameterCount,
      weightBytes: model.weightBytes,
      ...timing,
    };
  });
  const features = benchInputs(64, FEATURE_SIZE, 3);
  const timing = timeSync((i) => pipeline.step(features[i & 63]), o.iterations, o.warmup);
  pipeline.reset();
  return {
    precision: o.precision,
    iterations: o.iterations,
    runtime: runtime(),
    library: o.library,
    date: new Date().toISOString(),
    models: figures,
    pipeline: timing,
    memory: { rssBytes: process.memoryUsage().rss },
  };
}

async function measurePeers(
  pipeline: EmotionPipeline,
  models: Record<EmotionModelName, Model>,
  report: BenchReport,
  iterations: number,
  warmup: number,
): Promise<NonNullable<BenchReport["peers"]>["onnxruntime"]> {
  const ort = await importOrt();
  const peers = await OrtPipeline.create(ort, models);
  const features = benchInputs(64, FEATURE_SIZE, 3);
  const ortOut = new Float32Array(peers.plan.outputsLength);
  const agreement = await checkAgreement(
    [
      pipelineStepper("cadenza", pipeline),
      {
        name: "onnxruntime",
        step: async (x) => (await peers.step(x)).concatOutputs(ortOut),
        reset: () => peers.reset(),
      },
    ],
    features.slice(0, 48),
    agreementTolerance(report.precision),
  );
  const figures: ModelFigures[] = [];
  for (const info of EMOTION_MODELS) {
    const peer = peers.models[info.name];
    const inputs = benchInputs(64, peer.inputSize, 7);
    const timing = await timeAsync((i) => peer.forwardAsync(inputs[i & 63]), iterations, warmup);
    const own = report.models.find((m) => m.name === info.name)!;
    figures.push({
      name: info.name,
      parameters: own.parameters,
      weightBytes: own.weightBytes,
      ...timing,
    });
  }
  peers.reset();
  const pipelineTiming = await timeAsync((i) => peers.step(features[i & 63]), iterations, warmup);
  peers.reset();
  const pipelineSync = peers.hasSync
    ? timeSync((i) => peers.stepSync(features[i & 63]), iterations, warmup)
    : undefined;
  pipeline.reset();
  const version =
    (ort as unknown as { env?: { versions?: { node?: string } } }).env?.versions?.node ?? "?";
  return {
    version,
    agreementMaxAbs: agreement[0].worstAbs,
    models: figures,
    pipeline: pipelineTiming,
    pipelineSync,
  };
}

const fmt = (value: number, digits = 1) => value.toFixed(digits);

function printReport(report: BenchReport, output: Output): void {
  const peer = report.peers?.onnxruntime;
  output.out(
    `cadenza bench: ${report.precision}, ${report.iterations} iterations, ${report.runtime}, ` +
      `library ${report.library}, ${report.date}`,
  );
  const header = ["model", "params", "weight KB", "p50 us", "p99 us", "max us"];
  if (peer) header.push("ort p50 us", "ort/cadenza");
  const rows = report.models.map((m) => {
    const row = [
      m.name,
      String(m.parameters),
      fmt(m.weightBytes / 1024),
      fmt(m.p50Us),
      fmt(m.p99Us),
      fmt(m.maxUs),
    ];
    const other = peer?.models.find((p) => p.name === m.name);
    if (other) row.push(fmt(other.p50Us), `${fmt(other.p50Us / m.p50Us, 2)}x`);
    return row;
  });
  const total = report.models.reduce((n, m) => n + m.parameters, 0);
  const bytes = report.models.reduce((n, m) => n + m.weightBytes, 0);
  const p = report.pipeline;
  const pipeRow = [
    "pipeline step",
    String(total),
    fmt(bytes / 1024),
    fmt(p.p50Us),
    fmt(p.p99Us),
    fmt(p.maxUs),
  ];
  if (peer) pipeRow.push(fmt(peer.pipeline.p50Us), `${fmt(peer.pipeline.p50Us / p.p50Us, 2)}x`);
  for (const line of table(header, [...rows, pipeRow])) output.out(line);
  if (peer) {
    output.out(
      `onnxruntime-node ${peer.version}: outputs agree within ${
        peer.agreementMaxAbs.toExponential(1)
      } ` +
        `(tolerance ${agreementTolerance(report.precision)}); pipeline = five awaited ` +
        "session.run" +
        (peer.pipelineSync
          ? `; synchronous binding run: p50 ${fmt(peer.pipelineSync.p50Us)} us ` +
            `(${fmt(peer.pipelineSync.p50Us / p.p50Us, 2)}x)`
          : ""),
    );
  }
  const worstModel = Math.max(...report.models.map((m) => m.p99Us));
  output.out(
    `targets: single model p99 ${fmt(worstModel)} us vs 2000 us (${
      fmt(2000 / worstModel)
    }x under); ` +
      `pipeline p99 ${fmt(p.p99Us)} us vs 10000 us (${fmt(10000 / p.p99Us)}x under); ` +
      `weights ${fmt(bytes / 1e6, 2)} MB vs ~4 MB`,
  );
  output.out(`memory: rss ${fmt(report.memory.rssBytes / 1048576)} MiB`);
}

/** Aligned plain-text rows: the first column left, the others right. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join(
      "  ",
    );
  return [line(header), ...rows.map(line)];
}

export const benchCommand: Command = {
  name: "bench",
  summary: "time each model and the pipeline step (--peers: beside onnxruntime-node)",
  help: BENCH_HELP,
  flags: {
    values: { models: "DIR", iterations: "N", warmup: "N", precision: "P", json: "FILE" },
    switches: ["peers"],
  },
  run: runBench,
};
