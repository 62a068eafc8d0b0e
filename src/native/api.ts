/**
 * The one interface the rest of cadenza uses to reach the native library (zig/api.zig). Each
 * runtime has a thin adapter (bun.ts, deno.ts) that maps these calls onto its FFI; the shapes
 * and status codes follow docs/DESIGN.md, "C ABI".
 */

import { CadenzaError, type CadenzaErrorCode } from "../errors.ts";

/**
 * An opaque native handle: a token from the library's handle table (zig/handles.zig), passed as
 * a pointer-sized integer: a number under Bun, a pointer object under Deno. A destroyed, stale
 * or forged one is status 4 (badHandle) on every call.
 */
export type NativeHandle = { readonly __brand: "NativeHandle" };

/** The ABI version this TypeScript code was written against (cz_abi_version). */
export const ABI_VERSION = 1;

/** Number of u64 fields cz_model_info fills (docs/DESIGN.md lists them in order). */
export const INFO_FIELDS = 11;

/** Status codes returned by the C ABI. */
export const Status = {
  ok: 0,
  badArgument: 1,
  badImage: 2,
  outOfMemory: 3,
  badHandle: 4,
  limit: 5,
} as const;

export interface NativeApi {
  /** The shared library this adapter opened. */
  readonly libraryPath: string;
  abiVersion(): number;
  /** Validates and loads a model image; throws CadenzaError with the native message on failure. */
  create(image: Uint8Array): NativeHandle;
  destroy(handle: NativeHandle): void;
  /** Fills `out` (INFO_FIELDS u64 values) and returns the status. */
  info(handle: NativeHandle, out: BigUint64Array): number;
  /** One step: `input.length` must be input_size, `output.length` at least output_size. */
  forward(handle: NativeHandle, input: Float32Array, output: Float32Array): number;
  forwardBatch(
    handle: NativeHandle,
    input: Float32Array,
    batch: number,
    output: Float32Array,
  ): number;
  reset(handle: NativeHandle): number;
  /**
   * `steps` steps in one call, as `steps` forward calls (cz_process): input holds
   * steps * inputSize values, output at least steps * outputSize.
   */
  process(handle: NativeHandle, input: Float32Array, steps: number, output: Float32Array): number;
  /** The message of the handle's last failed call ("" when there is none). */
  lastError(handle: NativeHandle): string;
  /** A model handle as the u64 that cz_graph_create's handle array holds. */
  handleValue(handle: NativeHandle): bigint;
  /** The inverse of handleValue, for any u64 (a stale or forged one included). */
  handleOf(value: bigint): NativeHandle;
  /**
   * Validates a graph description (GRAPH_* below) against the model handles it indexes and
   * builds the graph; throws CadenzaError with the native message on failure.
   */
  graphCreate(description: Uint32Array, handles: BigUint64Array): NativeGraph;
  /** Frees the graph; its models stay loaded. */
  graphDestroy(graph: NativeGraph): void;
  /** Fills `out` (GRAPH_INFO_FIELDS u64 values) and returns the status. */
  graphInfo(graph: NativeGraph, out: BigUint64Array): number;
  /** Every node once; `output` receives every node's output, concatenated in node order. */
  graphStep(graph: NativeGraph, input: Float32Array, output: Float32Array): number;
  /**
   * Sets node `node`'s output to `values` and runs only the nodes downstream of it; `input`
   * (the graph input, input_size values) is what those nodes read of it, when they do.
   */
  graphStepFrom(
    graph: NativeGraph,
    node: number,
    values: Float32Array,
    output: Float32Array,
    input?: Float32Array,
  ): number;
  /** Resets every member model and zeroes every node output. */
  graphReset(graph: NativeGraph): number;
  /**
   * Fills `out` (up to one value per node, node order) with the nanoseconds each node took in
   * the last graphStep or graphStepFrom (0 for nodes it did not run); returns the status.
   */
  graphNodeNs(graph: NativeGraph, out: Float64Array): number;
  /** Prefetches every member model's memory into the caches; returns the status. */
  graphPrefetch(graph: NativeGraph): number;
  graphLastError(graph: NativeGraph): string;
  /**
   * The training ABI (docs/DESIGN.md, "Training ABI"). trainerCreate validates the image and
   * the TRAINER_CONFIG_WORDS config words and throws CadenzaError with the native message on
   * failure; the others return the status (the message is then in trainerLastError). `mask`
   * may be null (every position weighted 1).
   */
  trainerCreate(image: Uint8Array, config: Uint32Array): NativeTrainer;
  trainerDestroy(trainer: NativeTrainer): void;
  /** Fills `out` (TRAINER_INFO_FIELDS u64 values) and returns the status. */
  trainerInfo(trainer: NativeTrainer, out: BigUint64Array): number;
  /** One optimizer step; `loss[0]` receives the loss before the update. */
  trainerStep(
    trainer: NativeTrainer,
    input: Float32Array,
    targets: Float32Array,
    mask: Float32Array | null,
    loss: Float32Array,
  ): number;
  /** Loss and metrics, no update: `metrics` gets up to 3 values (loss, accuracy, mask sum). */
  trainerEval(
    trainer: NativeTrainer,
    input: Float32Array,
    targets: Float32Array,
    mask: Float32Array | null,
    metrics: Float32Array,
  ): number;
  /** Loss and the gradient in parameter order (`grad.length` = parameter_count), no update. */
  trainerGrad(
    trainer: NativeTrainer,
    input: Float32Array,
    targets: Float32Array,
    mask: Float32Array | null,
    loss: Float32Array,
    grad: Float32Array,
  ): number;
  /** The model output [batch][seq_len][output_size] of the training forward. */
  trainerForward(trainer: NativeTrainer, input: Float32Array, output: Float32Array): number;
  trainerGetParams(trainer: NativeTrainer, out: Float32Array): number;
  trainerSetParams(trainer: NativeTrainer, values: Float32Array): number;
  /** Which parameters step may change: one value per parameter, 1 trainable or 0 held. */
  trainerSetTrainable(trainer: NativeTrainer, values: Float32Array): number;
  /** Optimizer state (state_len floats: the step counter's two u32 words, then m, then v). */
  trainerGetState(trainer: NativeTrainer, out: Float32Array): number;
  trainerSetState(trainer: NativeTrainer, values: Float32Array): number;
  trainerLastError(trainer: NativeTrainer): string;
}

/** An opaque native trainer handle (cz_trainer_create), kept apart from model handles. */
export type NativeTrainer = { readonly __brand: "NativeTrainer" };

/** Words of cz_trainer_create's config and u64 fields of cz_trainer_info (docs/DESIGN.md). */
export const TRAINER_CONFIG_WORDS = 32;
export const TRAINER_INFO_FIELDS = 11;

/** An opaque native graph handle (cz_graph_create), kept apart from model handles. */
export type NativeGraph = { readonly __brand: "NativeGraph" };

/** Number of u64 fields cz_graph_info fills (docs/DESIGN.md, "Native graph"). */
export const GRAPH_INFO_FIELDS = 7;

/** The graph description's header words and limits (docs/DESIGN.md, "Native graph"). */
export const GRAPH_MAGIC = 0x52475a43;
export const GRAPH_VERSION = 1;
export const GRAPH_HEADER_WORDS = 4;
export const GRAPH_NODES_MAX = 256;
/** An edge source word that names the graph input rather than a node. */
export const GRAPH_INPUT_SOURCE = 0xffffffff;
/** Edge op words. */
export const GraphOp = {
  copy: 0,
  maxpool2: 1,
  maxpool4: 2,
  meanpool2: 3,
  meanpool4: 4,
} as const;

/**
 * The method by which a model backed by the native library (src/model/model.ts) hands its
 * library and live handle to the native graph; it returns null once the model is disposed.
 */
export const NATIVE_MODEL: unique symbol = Symbol("cadenza.nativeModel");

export interface NativeModelRef {
  readonly api: NativeApi;
  readonly handle: NativeHandle;
}

/** A model the native graph can run: src/model/model.ts's Model is one. */
export interface NativeBacked {
  readonly disposed: boolean;
  [NATIVE_MODEL](): NativeModelRef | null;
}

/** Maps a non-zero native status to the CadenzaError code that describes it. */
export function statusCode(status: number): CadenzaErrorCode {
  switch (status) {
    case Status.badArgument:
      return "E_ARGUMENT";
    case Status.badImage:
      return "E_FORMAT";
    case Status.limit:
      return "E_LIMIT";
    case Status.badHandle:
      return "E_DISPOSED";
    default:
      return "E_NATIVE";
  }
}

/** Decodes a NUL-terminated UTF-8 message from a buffer the native side filled. */
export function decodeMessage(bytes: Uint8Array, written_len: number): string {
  let end = Math.min(written_len, bytes.length);
  const nul = bytes.indexOf(0);
  if (nul >= 0 && nul < end) end = nul;
  return new TextDecoder().decode(bytes.subarray(0, end));
}

/** Size of the buffers native messages are written into (create errors, last_error). */
export const MESSAGE_BYTES = 1024;

/** Runs an adapter's dlopen; a failure becomes a CadenzaError naming the library. */
export function openLibrary<T>(library_path: string, open: (path: string) => T): T {
  try {
    return open(library_path);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new CadenzaError("E_NATIVE", `cannot load native library ${library_path}: ${reason}`);
  }
}

/** The error of a failed cz_model_create or cz_graph_create: its message, else its status. */
export function createError(status: number, message: Uint8Array): CadenzaError {
  const text = decodeMessage(message, message.length) || `status ${status}`;
  return new CadenzaError(statusCode(status), text);
}
