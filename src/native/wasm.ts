/**
 * The WebAssembly adapter: the same Zig library compiled to wasm32 with simd128
 * (zig-out/wasm/cadenza_*.wasm, `zig build wasm`), behind the same NativeApi. It runs where no
 * FFI exists (Node, browsers) or on request (CADENZA_BACKEND=wasm, or the library option
 * "wasm" / "wasm-fast"). The module cannot read JavaScript arrays, so each call copies its
 * arrays into one scratch region of the module's memory (grown on demand and kept), calls the
 * same C ABI export, and copies the outputs back. Arrays that overlap in JavaScript are staged
 * with the same relative layout, so the library's overlap checks see what native code sees.
 * Handles are 32-bit tokens (zig/handles.zig). The training ABI is not in the wasm build.
 */

import { CadenzaError } from "../errors.ts";
import {
  createError,
  decodeMessage,
  MESSAGE_BYTES,
  type NativeApi,
  type NativeGraph,
  type NativeHandle,
} from "./api.ts";

type Fn = (...args: number[]) => number;

interface Exports {
  memory: WebAssembly.Memory;
  cz_wasm_alloc(len: number): number;
  cz_wasm_free(ptr: number, len: number): void;
  [name: string]: unknown;
}

/** The exports every adapter call needs (the C ABI of zig/api.zig, less training). */
const REQUIRED = [
  "cz_abi_version",
  "cz_model_create",
  "cz_model_destroy",
  "cz_model_info",
  "cz_forward",
  "cz_forward_batch",
  "cz_process",
  "cz_reset",
  "cz_last_error",
  "cz_graph_create",
  "cz_graph_destroy",
  "cz_graph_info",
  "cz_graph_step",
  "cz_graph_step_from_input",
  "cz_graph_step_from",
  "cz_graph_reset",
  "cz_graph_node_ns",
  "cz_graph_prefetch",
  "cz_graph_last_error",
  "cz_wasm_alloc",
  "cz_wasm_free",
] as const;

/** The host functions the module imports: a monotonic clock for the graph's node timings. */
function hostImports(): WebAssembly.Imports {
  const now = globalThis.performance !== undefined
    ? () => globalThis.performance.now()
    : () => Date.now();
  return { env: { cz_host_now_ns: () => Math.floor(now() * 1e6) } };
}

/** Compiles and instantiates the module; failures become a CadenzaError naming the source. */
export async function instantiateWasm(
  bytes: Uint8Array,
  source: string,
): Promise<Exports> {
  let instance: WebAssembly.Instance;
  try {
    const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>);
    instance = await WebAssembly.instantiate(module, hostImports());
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new CadenzaError("E_NATIVE", `cannot load WebAssembly library ${source}: ${reason}`);
  }
  const exports = instance.exports as unknown as Exports;
  for (const name of REQUIRED) {
    if (typeof exports[name] !== "function") {
      throw new CadenzaError(
        "E_NATIVE",
        `WebAssembly library ${source} lacks the export ${name}: rebuild it with ` +
          "`scripts/zig build wasm`",
      );
    }
  }
  if (!(exports.memory instanceof WebAssembly.Memory)) {
    throw new CadenzaError("E_NATIVE", `WebAssembly library ${source} exports no memory`);
  }
  return exports;
}

const noTraining = () => {
  throw new CadenzaError(
    "E_NATIVE",
    "the WebAssembly backend has no training ABI: train with the native library under Bun or Deno",
  );
};

/** One array argument of a call: staged into wasm memory, copied back when `out`. */
type Arg = ArrayBufferView | null;

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Opens a compiled library: `source` names it in messages (a path or a URL). */
export function openWasm(exports: Exports, source: string): NativeApi {
  const cz = exports as unknown as Record<string, Fn>;
  const memory = exports.memory;
  let bytes = new Uint8Array(memory.buffer);
  /**
   * The module's memory as bytes. A grown memory detaches the old buffer (its views read 0
   * bytes long), so the view is re-taken then; `memory.buffer` itself is not read on every
   * call, since reading it makes an object.
   */
  const heap = (): Uint8Array => {
    if (bytes.byteLength === 0) bytes = new Uint8Array(memory.buffer);
    return bytes;
  };
  const allocate = (len: number): number => {
    const at = exports.cz_wasm_alloc(len) >>> 0;
    if (at === 0) {
      throw new CadenzaError("E_NATIVE", `WebAssembly memory cannot grow by ${len} bytes`);
    }
    return at;
  };
  // handle_out (8 bytes) then the message buffer, for the life of the module.
  const fixed = allocate(8 + MESSAGE_BYTES);
  const handle_out = fixed;
  const message_at = fixed + 8;
  const message = new Uint8Array(MESSAGE_BYTES);

  let scratch = 0;
  let scratch_len = 0;
  const ensureScratch = (len: number) => {
    if (len <= scratch_len) return;
    const grown = Math.max(len, scratch_len * 2, 4096);
    if (scratch !== 0) exports.cz_wasm_free(scratch, scratch_len);
    scratch = 0;
    scratch_len = 0;
    scratch = allocate(grown);
    scratch_len = grown;
  };

  /**
   * Copies `args` into scratch and returns each one's address (0 for null). Views on one
   * ArrayBuffer whose byte ranges overlap share one staged span, at the same relative offsets
   * and the same address alignment mod 16, so aliasing and alignment look as they do natively.
   */
  const stage = (args: Arg[]): number[] => {
    type Span = { buffer: ArrayBufferLike; start: number; end: number; at: number };
    const spans: Span[] = [];
    const spanOf: (Span | null)[] = [];
    for (const a of args) {
      if (a === null) {
        spanOf.push(null);
        continue;
      }
      const start = a.byteOffset;
      const end = a.byteOffset + a.byteLength;
      let span = spans.find((s) => s.buffer === a.buffer && start <= s.end && end >= s.start);
      if (span === undefined) {
        span = { buffer: a.buffer, start, end, at: 0 };
        spans.push(span);
      } else {
        span.start = Math.min(span.start, start);
        span.end = Math.max(span.end, end);
      }
      spanOf.push(span);
    }
    let total = 0;
    for (const s of spans) {
      s.at = align(total, 16) + (s.start % 16);
      total = s.at + (s.end - s.start);
    }
    ensureScratch(total + 16);
    const mem = heap();
    for (const s of spans) {
      s.at += scratch;
      mem.set(new Uint8Array(s.buffer, s.start, s.end - s.start), s.at);
    }
    return args.map((a, i) => (a === null ? 0 : spanOf[i]!.at + (a.byteOffset - spanOf[i]!.start)));
  };

  /** Copies the staged bytes of `a` (at `at`) back into it. */
  const unstage = (a: ArrayBufferView, at: number) => {
    new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(
      heap().subarray(at, at + a.byteLength),
    );
  };

  /** One call: stage `args`, run `f` on their addresses, copy back the `outs` (by index). */
  const call = (args: Arg[], outs: number[], f: (at: number[]) => number): number => {
    const at = stage(args);
    const status = f(at) >>> 0;
    for (const i of outs) unstage(args[i]!, at[i]!);
    return status;
  };

  // The per-step calls (forward, process, graph steps) take one f32 input and one f32 output.
  // When they do not overlap they are staged without allocating anything in JavaScript (the
  // real-time thread calls these): the input and output copied in, the output copied back.
  let floats = new Float32Array(memory.buffer);
  const floatsView = (): Float32Array => {
    if (floats.byteLength === 0) floats = new Float32Array(memory.buffer);
    return floats;
  };
  let in_at = 0;
  let out_at = 0;
  const stageFloats = (input: Float32Array, output: Float32Array): boolean => {
    if (
      input.buffer === output.buffer &&
      input.byteOffset < output.byteOffset + output.byteLength &&
      output.byteOffset < input.byteOffset + input.byteLength
    ) return false;
    const in_bytes = align(input.length * 4, 16);
    ensureScratch(in_bytes + output.length * 4 + 16);
    in_at = scratch;
    out_at = scratch + in_bytes;
    const f = floatsView();
    f.set(input, in_at >>> 2);
    f.set(output, out_at >>> 2);
    return true;
  };
  const unstageFloats = (output: Float32Array, status: number): number => {
    const f = floatsView();
    const base = out_at >>> 2;
    for (let k = 0; k < output.length; k++) output[k] = f[base + k]!;
    return status >>> 0;
  };

  // The per-step node timings (a Float64Array), staged the same allocation-free way.
  let doubles = new Float64Array(memory.buffer);
  const stageDoubles = (out: Float64Array): number => {
    ensureScratch(out.length * 8 + 16);
    if (doubles.byteLength === 0) doubles = new Float64Array(memory.buffer);
    doubles.set(out, scratch >>> 3);
    return scratch;
  };
  const unstageDoubles = (out: Float64Array, status: number): number => {
    if (doubles.byteLength === 0) doubles = new Float64Array(memory.buffer);
    const base = scratch >>> 3;
    for (let k = 0; k < out.length; k++) out[k] = doubles[base + k]!;
    return status >>> 0;
  };

  const created = (args: Arg[], f: (at: number[]) => number): number => {
    const mem = heap();
    mem.fill(0, handle_out, handle_out + 8);
    mem[message_at] = 0;
    const status = call(args, [], f);
    const view = new DataView(memory.buffer);
    const value = view.getBigUint64(handle_out, true);
    if (status !== 0 || value === 0n) {
      message.set(heap().subarray(message_at, message_at + MESSAGE_BYTES));
      throw createError(status, message);
    }
    return Number(value);
  };
  const lastMessage = (written: number) => {
    message.set(heap().subarray(message_at, message_at + MESSAGE_BYTES));
    return decodeMessage(message, written >>> 0);
  };
  const h = (handle: NativeHandle | NativeGraph): number => handle as unknown as number;

  return {
    libraryPath: source,
    abiVersion: () => cz.cz_abi_version!() >>> 0,
    create: (image) =>
      created(
        [image],
        ([p]) => cz.cz_model_create!(p!, image.length, handle_out, message_at, MESSAGE_BYTES),
      ) as unknown as NativeHandle,
    destroy: (handle) => void cz.cz_model_destroy!(h(handle)),
    info: (handle, out) => call([out], [0], ([o]) => cz.cz_model_info!(h(handle), o!, out.length)),
    forward: (handle, input, output) =>
      stageFloats(input, output)
        ? unstageFloats(
          output,
          cz.cz_forward!(h(handle), in_at, input.length, out_at, output.length),
        )
        : call(
          [input, output],
          [1],
          ([i, o]) => cz.cz_forward!(h(handle), i!, input.length, o!, output.length),
        ),
    forwardBatch: (handle, input, batch, output) =>
      stageFloats(input, output)
        ? unstageFloats(
          output,
          cz.cz_forward_batch!(h(handle), in_at, input.length, batch, out_at, output.length),
        )
        : call(
          [input, output],
          [1],
          ([i, o]) => cz.cz_forward_batch!(h(handle), i!, input.length, batch, o!, output.length),
        ),
    reset: (handle) => cz.cz_reset!(h(handle)) >>> 0,
    process: (handle, input, steps, output) =>
      stageFloats(input, output)
        ? unstageFloats(
          output,
          cz.cz_process!(h(handle), in_at, input.length, steps, out_at, output.length),
        )
        : call(
          [input, output],
          [1],
          ([i, o]) => cz.cz_process!(h(handle), i!, input.length, steps, o!, output.length),
        ),
    lastError: (handle) => lastMessage(cz.cz_last_error!(h(handle), message_at, MESSAGE_BYTES)),
    handleValue: (handle) => BigInt(h(handle) >>> 0),
    // A value that does not fit the module's 32-bit handles is no live handle: pass null.
    handleOf: (value) => {
      const v = BigInt.asUintN(64, value);
      return (v > 0xffffffffn ? 0 : Number(v)) as unknown as NativeHandle;
    },
    graphCreate: (description, handles) =>
      created(
        [description, handles],
        ([d, hs]) =>
          cz.cz_graph_create!(
            d!,
            description.length,
            hs!,
            handles.length,
            handle_out,
            message_at,
            MESSAGE_BYTES,
          ),
      ) as unknown as NativeGraph,
    graphDestroy: (graph) => void cz.cz_graph_destroy!(h(graph)),
    graphInfo: (graph, out) =>
      call([out], [0], ([o]) => cz.cz_graph_info!(h(graph), o!, out.length)),
    graphStep: (graph, input, output) =>
      stageFloats(input, output)
        ? unstageFloats(
          output,
          cz.cz_graph_step!(h(graph), in_at, input.length, out_at, output.length),
        )
        : call(
          [input, output],
          [1],
          ([i, o]) => cz.cz_graph_step!(h(graph), i!, input.length, o!, output.length),
        ),
    graphStepFrom: (graph, node, values, output, input) =>
      input !== undefined
        ? call(
          [values, input, output],
          [2],
          ([v, x, o]) =>
            cz.cz_graph_step_from_input!(
              h(graph),
              node,
              v!,
              values.length,
              x!,
              input.length,
              o!,
              output.length,
            ),
        )
        : stageFloats(values, output)
        ? unstageFloats(
          output,
          cz.cz_graph_step_from!(h(graph), node, in_at, values.length, out_at, output.length),
        )
        : call(
          [values, output],
          [1],
          ([v, o]) => cz.cz_graph_step_from!(h(graph), node, v!, values.length, o!, output.length),
        ),
    graphReset: (graph) => cz.cz_graph_reset!(h(graph)) >>> 0,
    graphNodeNs: (graph, out) =>
      unstageDoubles(out, cz.cz_graph_node_ns!(h(graph), stageDoubles(out), out.length)),
    graphPrefetch: (graph) => cz.cz_graph_prefetch!(h(graph), 0) >>> 0,
    graphLastError: (graph) =>
      lastMessage(cz.cz_graph_last_error!(h(graph), message_at, MESSAGE_BYTES)),
    trainerCreate: noTraining,
    trainerDestroy: noTraining,
    trainerInfo: noTraining,
    trainerStep: noTraining,
    trainerEval: noTraining,
    trainerGrad: noTraining,
    trainerForward: noTraining,
    trainerGetParams: noTraining,
    trainerSetParams: noTraining,
    trainerSetTrainable: noTraining,
    trainerGetState: noTraining,
    trainerSetState: noTraining,
    trainerLastError: noTraining,
  };
}
