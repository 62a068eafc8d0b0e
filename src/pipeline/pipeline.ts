/**
 * A generic pipeline: a small DAG of named models joined by edge slices, run in topological
 * order. When every model is a native Model from one library (as loadModel makes them), the
 * whole graph runs in the native library in one call per step (zig/graph.zig, docs/DESIGN.md
 * "Native graph"); other models (plain TypeScript, a peer runtime, wrappers) run node by node
 * here, with the same edge arithmetic. Every buffer is allocated when the pipeline is built, so
 * `step` allocates nothing in JavaScript (test/pipeline.test.ts counts heap objects) nor, on
 * the native path, in native code (test/graph.test.ts counts allocations).
 *
 * ```ts
 * const nodes = [
 *   { name: "enc", model: "Encoder", inputs: [{ from: "input" }] },
 *   { name: "dec", model: "Decoder", inputs: [{ from: "enc", op: "maxpool2" }] },
 * ];
 * const pipeline = new Pipeline(nodes, { Encoder: encoder, Decoder: decoder });
 * const out = pipeline.step(features); // out.enc, out.dec: views reused by every step
 * ```
 */

import { CadenzaError } from "../errors.ts";
import { loadModel } from "../model/load.ts";
import { setOwn } from "../own.ts";
import {
  GRAPH_INFO_FIELDS,
  GRAPH_INPUT_SOURCE,
  GRAPH_MAGIC,
  GRAPH_NODES_MAX,
  GRAPH_VERSION,
  GraphOp,
  NATIVE_MODEL,
  type NativeApi,
  type NativeBacked,
  type NativeGraph,
  statusCode,
} from "../native/api.ts";

/**
 * How an edge turns its source slice into the destination's input values. `copy` keeps the
 * slice as is; `maxpoolN` / `meanpoolN` reduce each run of N consecutive values to one, so the
 * slice length must be a multiple of N.
 */
export type EdgeOp = "copy" | "maxpool2" | "maxpool4" | "meanpool2" | "meanpool4";

/**
 * Op codes and pooling factors, indexed the same way; the node-by-node path switches on the
 * code; `native` is the op word of the native graph description.
 */
const EDGE_OPS: Record<EdgeOp, { code: number; factor: number; native: number }> = {
  copy: { code: 0, factor: 1, native: GraphOp.copy },
  maxpool2: { code: 1, factor: 2, native: GraphOp.maxpool2 },
  maxpool4: { code: 1, factor: 4, native: GraphOp.maxpool4 },
  meanpool2: { code: 2, factor: 2, native: GraphOp.meanpool2 },
  meanpool4: { code: 2, factor: 4, native: GraphOp.meanpool4 },
};

/** Most edges one node may have in the native graph (zig/graph.zig, edge_count_max). */
const NATIVE_EDGES_MAX = 256;

/** The name an edge uses to read the pipeline's own input. No node may take it. */
export const GRAPH_INPUT = "input";

/** One slice of a source feeding a node. A node's inputs are concatenated in order. */
export interface PipelineEdge {
  /** A node name, or "input" for the values passed to `step`. */
  from: string;
  /** First value of the source read by this edge (default 0). */
  offset?: number;
  /** Source values read (default: the rest of the source after `offset`). */
  length?: number;
  /** Default "copy". */
  op?: EdgeOp;
}

export interface PipelineNode {
  /** The node's name: the key of its output in the object `step` returns. */
  name: string;
  /** The key of its model in the models record. */
  model: string;
  inputs: PipelineEdge[];
}

/** What the pipeline needs of a model: the public Model of src/index.ts fits it. */
export interface PipelineModel {
  readonly inputSize: number;
  readonly outputSize: number;
  readonly parameterCount: number;
  readonly weightBytes: number;
  /** One step; the state advances; returns a view that the next call may overwrite. */
  forward(input: Float32Array): Float32Array;
  reset(): void;
  dispose(): void;
}

export interface PipelineOptions {
  /** Length of the array `step` takes; inferred from the edges that read "input" if absent. */
  inputSize?: number;
  /**
   * Time every node of every step into `nodeNs` (default false): the native graph's own
   * monotonic timestamps (one more native call per step), or performance.now() around each
   * model on the node-by-node path.
   */
  timed?: boolean;
}

/** What the native graph reports (cz_graph_info), for tests and diagnostics. */
export interface PipelineGraphInfo {
  nodeCount: number;
  inputSize: number;
  /** Floats of every node's output together. */
  outputLength: number;
  /** Every byte the graph holds natively (its models' memory not included). */
  bytesHeld: number;
  /** Allocations made by the graph's allocator since create; constant after create. */
  allocCount: number;
  freeCount: number;
}

/** An edge resolved against the graph; plain numbers and buffers, read by step. */
interface CompiledEdge {
  /** Index into the node list in run order, or -1 for the graph input. */
  source: number;
  offset: number;
  length: number;
  code: number;
  factor: number;
  /** The op word of the native graph description. */
  native: number;
  /** Where the edge's values start in the node's input buffer. */
  target: number;
}

interface CompiledNode {
  name: string;
  /** The key of its model in the models record. */
  key: string;
  model: PipelineModel;
  edges: CompiledEdge[];
  /** The model's input; the source's own buffer when one full-width copy feeds the node. */
  input: Float32Array;
  /**
   * A view of the pipeline's one output buffer, owned by the pipeline so that later model
   * calls outside it cannot change a result.
   */
  output: Float32Array;
  /** Gather from the sources into `input` before the forward call. */
  gather: boolean;
  /** Indices (run order) of this node and every node downstream of it, ascending. */
  downstream: Int32Array;
  /** Whether some node downstream reads the graph input, which stepFrom must then be given. */
  downstreamReadsInput: boolean;
}

export class Pipeline<Outputs extends Record<string, Float32Array> = Record<string, Float32Array>> {
  /** The models by the names the graph uses. */
  readonly models: Readonly<Record<string, PipelineModel>>;
  /** The graph as given (run order is topological, see `order`). */
  readonly nodes: readonly PipelineNode[];
  /** Node names in the order step runs them. */
  readonly order: readonly string[];
  readonly inputSize: number;
  readonly outputs: Outputs;
  /**
   * With `timed`, the nanoseconds each node took in the last step or stepFrom, in run order
   * (0 for nodes a stepFrom did not run); all 0 otherwise.
   */
  readonly nodeNs: Float64Array;
  readonly #timed: boolean;
  readonly #compiled: CompiledNode[];
  /** Every node's output, in run order; `outputs` holds views of it. */
  readonly #all: Float32Array;
  /** The step's input, copied before any node runs (node-by-node path). */
  readonly #input: Float32Array;
  /** The native graph, or null when the models run node by node. */
  readonly #native: NativeRun | null;
  #disposed = false;

  constructor(
    nodes: PipelineNode[],
    models: Record<string, PipelineModel>,
    opts: PipelineOptions = {},
  ) {
    checkGraph(nodes, models);
    const ordered = topologicalOrder(nodes);
    this.models = models;
    this.nodes = nodes;
    this.order = ordered.map((n) => n.name);
    this.inputSize = opts.inputSize ?? inferInputSize(ordered, models);
    this.#all = new Float32Array(ordered.reduce((n, node) => n + models[node.model].outputSize, 0));
    this.#input = new Float32Array(this.inputSize);
    this.nodeNs = new Float64Array(ordered.length);
    this.#timed = opts.timed === true;
    this.#compiled = compile(ordered, models, this.inputSize, this.#all);
    const outputs: Record<string, Float32Array> = {};
    for (const node of this.#compiled) setOwn(outputs, node.name, node.output);
    this.outputs = Object.freeze(outputs) as Outputs;
    this.#native = nativeRun(this.#compiled, this.inputSize);
    if (this.#native !== null) graphs.register(this, this.#native, this);
  }

  /** Whether steps run in the native graph (one native call each) rather than node by node. */
  get native(): boolean {
    return this.#native !== null;
  }

  /** What the native graph reports, or null when the models run node by node. */
  graphInfo(): PipelineGraphInfo | null {
    this.#checkLive();
    const run = this.#native;
    if (run === null) return null;
    const fields = new BigUint64Array(GRAPH_INFO_FIELDS);
    this.#checkStatus(run, run.api.graphInfo(run.graph, fields), "graphInfo");
    const field = (index: number) => Number(fields[index]);
    return {
      nodeCount: field(1),
      inputSize: field(2),
      outputLength: field(3),
      bytesHeld: field(4),
      allocCount: field(5),
      freeCount: field(6),
    };
  }

  /**
   * Loads every model named in `files` (model key -> path or bytes) with `load` (default
   * loadModel, format detected), then builds the pipeline, which owns them; if any load or the
   * graph check fails, the models already loaded are disposed.
   *
   * ```ts
   * const p = await Pipeline.fromGraph({
   *   nodes: [{ name: "mood", model: "E", inputs: [{ from: "input" }] },
   *           { name: "beat", model: "G", inputs: [{ from: "mood" }] }],
   *   files: { E: "models/EmotionRecognizer.safetensors", G: "my/groove.json" },
   * });
   * ```
   */
  static async fromGraph(
    graph: {
      nodes: PipelineNode[];
      files: Record<string, string | Uint8Array>;
      inputSize?: number;
    },
    load: (source: string | Uint8Array) => Promise<PipelineModel> = loadModel,
  ): Promise<Pipeline> {
    const models: Record<string, PipelineModel> = {};
    try {
      for (const [key, source] of Object.entries(graph.files)) {
        setOwn(models, key, await load(source));
      }
      return new Pipeline(graph.nodes, models, { inputSize: graph.inputSize });
    } catch (err) {
      for (const model of Object.values(models)) model.dispose();
      throw err;
    }
  }

  /** Runs every node on `input` (length `inputSize`); returns the reused output views. */
  step(input: Float32Array): Outputs {
    this.#checkLive();
    if (!(input instanceof Float32Array) || input.length !== this.inputSize) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `Pipeline.step: input has ${lengthOf(input)} values, expected ${this.inputSize} ` +
          "(a Float32Array)",
      );
    }
    const run = this.#native;
    if (run !== null) {
      this.#checkMembers(run);
      this.#checkStatus(run, run.api.graphStep(run.graph, input, this.#all), "step");
      if (this.#timed) this.#checkStatus(run, run.api.graphNodeNs(run.graph, this.nodeNs), "step");
      return this.outputs;
    }
    // The input may be memory a node writes during the step (one of `outputs`, or a member
    // model's own output view); the native graph copies it first, and so does this path.
    const copy = this.#input;
    copy.set(input);
    const nodes = this.#compiled;
    for (let i = 0; i < nodes.length; i++) this.#runTimed(i, copy);
    return this.outputs;
  }

  /**
   * Sets node `name`'s output to `values` (its model does not run, its state does not advance)
   * and runs every node downstream of it. Nodes not downstream keep their last outputs.
   * `input` (inputSize values, as for `step`) is the graph input that downstream nodes read,
   * when some do (a context slice beside the node being set, say); without it, none may.
   */
  stepFrom(name: string, values: Float32Array, input?: Float32Array): Outputs {
    this.#checkLive();
    const index = this.order.indexOf(name);
    if (index < 0) {
      throw new CadenzaError("E_ARGUMENT", `Pipeline.stepFrom: no node named "${name}"`);
    }
    return this.stepFromIndex(index, values, input);
  }

  /** stepFrom with the node's run-order index, for callers that resolved it once. */
  stepFromIndex(index: number, values: Float32Array, input?: Float32Array): Outputs {
    this.#checkLive();
    const nodes = this.#compiled;
    const start = nodes[index];
    if (
      start === undefined || !(values instanceof Float32Array) ||
      values.length !== start.output.length
    ) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `Pipeline.stepFrom: node ${index} takes ${start?.output.length ?? 0} values, ` +
          `got ${lengthOf(values)}`,
      );
    }
    if (input !== undefined) {
      if (!(input instanceof Float32Array) || input.length !== this.inputSize) {
        throw new CadenzaError(
          "E_ARGUMENT",
          `Pipeline.stepFrom: input has ${lengthOf(input)} values, expected ${this.inputSize} ` +
            "(a Float32Array)",
        );
      }
    } else if (start.downstreamReadsInput) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `Pipeline.stepFrom: a node downstream of "${start.name}" reads the graph input: ` +
          "pass it",
      );
    }
    const run = this.#native;
    if (run !== null) {
      this.#checkMembers(run);
      const status = run.api.graphStepFrom(run.graph, index, values, this.#all, input);
      this.#checkStatus(run, status, "stepFrom");
      if (this.#timed) {
        this.#checkStatus(run, run.api.graphNodeNs(run.graph, this.nodeNs), "stepFrom");
      }
      return this.outputs;
    }
    // As in step, the input is copied before any node runs (it may be memory a node writes).
    let copy: Float32Array | null = null;
    if (input !== undefined) {
      copy = this.#input;
      copy.set(input);
    }
    start.output.set(values);
    const downstream = start.downstream;
    if (this.#timed) this.nodeNs.fill(0);
    // downstream[0] is the start node itself, whose output was just set.
    for (let i = 1; i < downstream.length; i++) this.#runTimed(downstream[i], copy);
    return this.outputs;
  }

  /** Resets every model's state and zeroes every output, as just after construction. */
  reset(): void {
    this.#checkLive();
    const run = this.#native;
    if (run !== null) {
      this.#checkMembers(run);
      this.#checkStatus(run, run.api.graphReset(run.graph), "reset");
      this.#all.fill(0);
      return;
    }
    for (const node of this.#compiled) {
      node.model.reset();
      node.output.fill(0);
      if (node.gather) node.input.fill(0);
    }
  }

  /**
   * For a caller that runs the models itself (a peer runtime whose session answers with a
   * promise, say): node `index`'s input for this step (run order), gathered from `input` and
   * the outputs set so far with the same edge arithmetic as `step`, in a buffer the pipeline
   * owns. Call it for each node in run order, each followed by `setOutput`. Node-by-node
   * pipelines only (`native` false).
   *
   * ```ts
   * for (let i = 0; i < p.order.length; i++) {
   *   p.setOutput(i, await session.run(p.inputOf(i, features)));
   * }
   * ```
   */
  inputOf(index: number, input: Float32Array): Float32Array {
    const node = this.#driven(index, "inputOf");
    if (node.gather) gather(node, this.#compiled, input);
    return node.input;
  }

  /** Node `index`'s output for this step, as its model returned it (see inputOf). */
  setOutput(index: number, values: Float32Array): Outputs {
    const node = this.#driven(index, "setOutput");
    if (!(values instanceof Float32Array) || values.length !== node.output.length) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `Pipeline.setOutput: node ${index} gives ${node.output.length} values, got ` +
          lengthOf(values),
      );
    }
    node.output.set(values);
    return this.outputs;
  }

  #driven(index: number, call: string): CompiledNode {
    this.#checkLive();
    const node = this.#compiled[index];
    if (this.#native !== null || node === undefined) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `Pipeline.${call}: ` +
          (node === undefined
            ? `node ${index}, expected 0..${this.#compiled.length - 1}`
            : "the native graph runs its own models; use step"),
      );
    }
    return node;
  }

  /**
   * Asks the CPU to bring the models' memory into the caches without waiting for it (native
   * graph only; otherwise nothing): a caller that slept between steps calls this shortly
   * before the next one.
   */
  prefetch(): void {
    this.#checkLive();
    const run = this.#native;
    if (run === null) return;
    this.#checkMembers(run);
    this.#checkStatus(run, run.api.graphPrefetch(run.graph), "prefetch");
  }

  /** Index in run order of node `name` (-1 if none), for stepFromIndex. */
  indexOf(name: string): number {
    return this.order.indexOf(name);
  }

  get parameterCount(): number {
    let total = 0;
    for (const model of Object.values(this.models)) total += model.parameterCount;
    return total;
  }

  get weightBytes(): number {
    let total = 0;
    for (const model of Object.values(this.models)) total += model.weightBytes;
    return total;
  }

  /**
   * Disposes every model the pipeline was given (the native graph first, which uses them);
   * later calls throw E_DISPOSED.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const run = this.#native;
    if (run !== null) {
      graphs.unregister(this);
      run.api.graphDestroy(run.graph);
    }
    for (const model of Object.values(this.models)) model.dispose();
  }

  /** Runs node `index` (run order), timing it into nodeNs when timed. */
  #runTimed(index: number, input: Float32Array | null): void {
    const node = this.#compiled[index];
    if (!this.#timed) {
      this.#run(node, input);
      return;
    }
    const start = performance.now();
    this.#run(node, input);
    this.nodeNs[index] = (performance.now() - start) * 1e6;
  }

  #run(node: CompiledNode, input: Float32Array | null): void {
    if (node.gather) gather(node, this.#compiled, input);
    const result = node.model.forward(node.input);
    node.output.set(result);
  }

  #checkLive(): void {
    if (this.#disposed) throw new CadenzaError("E_DISPOSED", "Pipeline: used after dispose()");
  }

  /**
   * The native graph runs its models' handles: a model disposed outside the pipeline would
   * leave it a freed handle, so that is caught here, before each native call.
   */
  #checkMembers(run: NativeRun): void {
    const members = run.members;
    for (let i = 0; i < members.length; i++) {
      if (members[i].disposed) {
        const node = this.#compiled[i];
        throw new CadenzaError(
          "E_DISPOSED",
          `Pipeline: model "${node.key}" (node "${node.name}") was disposed outside the pipeline`,
        );
      }
    }
  }

  #checkStatus(run: NativeRun, status: number, call: string): void {
    if (status === 0) return;
    const message = run.api.graphLastError(run.graph) || `status ${status}`;
    throw new CadenzaError(statusCode(status), `Pipeline.${call}: native graph: ${message}`);
  }
}

/** The native graph of a pipeline and the models it runs, in run order. */
interface NativeRun {
  api: NativeApi;
  graph: NativeGraph;
  members: NativeBacked[];
}

// A pipeline dropped without dispose() frees its graph when collected; its models have their
// own safety net. Destroying a graph never touches its models, so the order does not matter.
const graphs = new FinalizationRegistry<NativeRun>((run) => run.api.graphDestroy(run.graph));

/** "12" for a Float32Array of 12, "12 (Array)" for anything else with a length. */
function lengthOf(values: unknown): string {
  const length = (values as { length?: unknown } | null)?.length;
  const count = typeof length === "number" ? String(length) : "no";
  if (values instanceof Float32Array) return count;
  const kind = values === null ? "null" : (values as object)?.constructor?.name ?? typeof values;
  return `${count} (${kind})`;
}

/**
 * The native graph for the compiled nodes, or null when they cannot share one: a model that
 * is not native, models from different libraries, one model at two nodes (each node keeps
 * its own state natively), or a graph beyond the native limits.
 */
function nativeRun(compiled: CompiledNode[], inputSize: number): NativeRun | null {
  if (compiled.length > GRAPH_NODES_MAX) return null;
  const members: NativeBacked[] = [];
  for (const node of compiled) {
    const model = node.model as Partial<NativeBacked>;
    if (typeof model[NATIVE_MODEL] !== "function") return null;
    if (members.includes(model as NativeBacked)) return null;
    if (node.edges.length > NATIVE_EDGES_MAX) return null;
    members.push(model as NativeBacked);
  }
  const refs = members.map((model, i) => {
    const ref = model[NATIVE_MODEL]();
    if (ref === null) {
      const node = compiled[i];
      throw new CadenzaError(
        "E_DISPOSED",
        `Pipeline: model "${node.key}" (node "${node.name}") is disposed`,
      );
    }
    return ref;
  });
  const api = refs[0].api;
  if (refs.some((ref) => ref.api !== api)) return null;
  const handles = BigUint64Array.from(refs, (ref) => api.handleValue(ref.handle));
  let graph: NativeGraph;
  try {
    graph = api.graphCreate(describeGraph(compiled, inputSize), handles);
  } catch (err) {
    if (!(err instanceof CadenzaError)) throw err;
    throw new CadenzaError(err.code, `Pipeline graph: native: ${err.message}`, { cause: err });
  }
  return { api, graph, members };
}

/** The description words (docs/DESIGN.md, "Native graph"): node i runs handle i. */
function describeGraph(compiled: CompiledNode[], inputSize: number): Uint32Array {
  const words = [GRAPH_MAGIC, GRAPH_VERSION, compiled.length, inputSize];
  for (const [i, node] of compiled.entries()) {
    words.push(i, node.edges.length);
    for (const edge of node.edges) {
      const source = edge.source < 0 ? GRAPH_INPUT_SOURCE : edge.source;
      words.push(source, edge.offset, edge.length, edge.native);
    }
  }
  return Uint32Array.from(words);
}

/** Fills node.input from its edges. `input` is null only when no edge reads the graph input. */
function gather(node: CompiledNode, nodes: CompiledNode[], input: Float32Array | null): void {
  const target = node.input;
  const edges = node.edges;
  for (let e = 0; e < edges.length; e++) {
    const edge = edges[e];
    const source = edge.source < 0 ? input! : nodes[edge.source].output;
    if (edge.code === 0) copySlice(source, edge, target);
    else if (edge.code === 1) maxPool(source, edge, target);
    else meanPool(source, edge, target);
  }
}

function copySlice(source: Float32Array, edge: CompiledEdge, target: Float32Array): void {
  const offset = edge.offset;
  const at = edge.target;
  for (let i = 0; i < edge.length; i++) target[at + i] = source[offset + i];
}

function maxPool(source: Float32Array, edge: CompiledEdge, target: Float32Array): void {
  const factor = edge.factor;
  let at = edge.target;
  for (let i = edge.offset; i < edge.offset + edge.length; i += factor) {
    let best = source[i];
    for (let k = 1; k < factor; k++) best = Math.max(best, source[i + k]);
    target[at++] = best;
  }
}

/** Summed in doubles from the first value and rounded once, exactly as zig/graph.zig does. */
function meanPool(source: Float32Array, edge: CompiledEdge, target: Float32Array): void {
  const factor = edge.factor;
  let at = edge.target;
  for (let i = edge.offset; i < edge.offset + edge.length; i += factor) {
    let sum = source[i];
    for (let k = 1; k < factor; k++) sum += source[i + k];
    target[at++] = sum / factor;
  }
}

function graphError(message: string): CadenzaError {
  return new CadenzaError("E_ARGUMENT", `Pipeline graph: ${message}`);
}

function checkGraph(nodes: PipelineNode[], models: Record<string, PipelineModel>): void {
  if (nodes.length === 0) throw graphError("no nodes");
  const names = new Set<string>();
  for (const [i, node] of nodes.entries()) {
    if (typeof node.name !== "string" || node.name === "" || node.name === GRAPH_INPUT) {
      throw graphError(
        `node ${i} has name ${JSON.stringify(node.name)}, expected a non-empty ` +
          `name other than "${GRAPH_INPUT}"`,
      );
    }
    if (names.has(node.name)) throw graphError(`node ${i}: duplicate name "${node.name}"`);
    names.add(node.name);
    if (!Object.hasOwn(models, node.model)) {
      throw graphError(
        `node "${node.name}": no model "${node.model}" among ` +
          `[${Object.keys(models).join(", ")}]`,
      );
    }
    if (!Array.isArray(node.inputs) || node.inputs.length === 0) {
      throw graphError(`node "${node.name}": expected at least one input edge`);
    }
  }
  for (const node of nodes) {
    for (const [e, edge] of node.inputs.entries()) {
      if (edge.from !== GRAPH_INPUT && !names.has(edge.from)) {
        throw graphError(`node "${node.name}" input ${e}: no node named "${edge.from}"`);
      }
      if (edge.op !== undefined && !Object.hasOwn(EDGE_OPS, edge.op)) {
        throw graphError(
          `node "${node.name}" input ${e}: op "${edge.op}", expected one of ` +
            `${Object.keys(EDGE_OPS).join(", ")}`,
        );
      }
    }
  }
}

/** Kahn's algorithm, stable: among ready nodes the one listed first runs first. */
function topologicalOrder(nodes: PipelineNode[]): PipelineNode[] {
  const placed = new Set<string>();
  const ordered: PipelineNode[] = [];
  while (ordered.length < nodes.length) {
    const next = nodes.find((node) =>
      !placed.has(node.name) &&
      node.inputs.every((edge) => edge.from === GRAPH_INPUT || placed.has(edge.from))
    );
    if (next === undefined) {
      const stuck = nodes.filter((node) => !placed.has(node.name)).map((node) => node.name);
      throw graphError(`a cycle among nodes [${stuck.join(", ")}]`);
    }
    placed.add(next.name);
    ordered.push(next);
  }
  return ordered;
}

function inferInputSize(ordered: PipelineNode[], models: Record<string, PipelineModel>): number {
  let size = 0;
  for (const node of ordered) {
    for (const edge of node.inputs) {
      if (edge.from !== GRAPH_INPUT) continue;
      if (edge.length === undefined && node.inputs.length !== 1) {
        throw graphError(
          `node "${node.name}": an "input" edge beside others needs a length ` +
            `(or pass options.inputSize)`,
        );
      }
      const factor = EDGE_OPS[edge.op ?? "copy"].factor;
      const length = edge.length ?? models[node.model].inputSize * factor;
      size = Math.max(size, (edge.offset ?? 0) + length);
    }
  }
  if (size === 0) throw graphError('no node reads "input"');
  return size;
}

function compile(
  ordered: PipelineNode[],
  models: Record<string, PipelineModel>,
  inputSize: number,
  all: Float32Array,
): CompiledNode[] {
  const index = new Map(ordered.map((node, i) => [node.name, i]));
  const compiled: CompiledNode[] = [];
  let at = 0;
  for (const node of ordered) {
    const model = models[node.model];
    const edges = compileEdges(node, model, compiled, index, inputSize);
    const passThrough = edges.length === 1 && edges[0].source >= 0 && edges[0].code === 0 &&
      edges[0].offset === 0 && edges[0].length === compiled[edges[0].source].output.length;
    compiled.push({
      name: node.name,
      key: node.model,
      model,
      edges,
      input: passThrough ? compiled[edges[0].source].output : new Float32Array(model.inputSize),
      output: all.subarray(at, at + model.outputSize),
      gather: !passThrough,
      downstream: new Int32Array(0),
      downstreamReadsInput: false,
    });
    at += model.outputSize;
  }
  for (let i = 0; i < compiled.length; i++) {
    const downstream = downstreamOf(i, compiled);
    compiled[i].downstream = downstream;
    compiled[i].downstreamReadsInput = Array.from(downstream).some((d) =>
      d !== i && compiled[d].edges.some((edge) => edge.source < 0)
    );
  }
  return compiled;
}

function compileEdges(
  node: PipelineNode,
  model: PipelineModel,
  compiled: CompiledNode[],
  index: Map<string, number>,
  inputSize: number,
): CompiledEdge[] {
  const edges: CompiledEdge[] = [];
  let target = 0;
  for (const [e, edge] of node.inputs.entries()) {
    const source = edge.from === GRAPH_INPUT ? -1 : index.get(edge.from)!;
    const width = source < 0 ? inputSize : compiled[source].output.length;
    const offset = edge.offset ?? 0;
    const length = edge.length ?? width - offset;
    const { code, factor, native } = EDGE_OPS[edge.op ?? "copy"];
    const where = `node "${node.name}" input ${e} (from "${edge.from}", width ${width})`;
    if (
      !Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length <= 0 ||
      offset + length > width
    ) {
      throw graphError(`${where}: slice [${offset}, ${offset}+${length}) is outside the source`);
    }
    if (length % factor !== 0) {
      throw graphError(`${where}: length ${length} is not a multiple of the pool factor ${factor}`);
    }
    edges.push({ source, offset, length, code, factor, native, target });
    target += length / factor;
  }
  if (target !== model.inputSize) {
    throw graphError(
      `node "${node.name}": its inputs give ${target} values, model ` +
        `"${node.model}" expects ${model.inputSize}`,
    );
  }
  return edges;
}

/** The start node and every node that reads from it directly or not, in run order. */
function downstreamOf(start: number, compiled: CompiledNode[]): Int32Array {
  const reached = [start];
  for (let i = start + 1; i < compiled.length; i++) {
    if (compiled[i].edges.some((edge) => reached.includes(edge.source))) reached.push(i);
  }
  return Int32Array.from(reached);
}
