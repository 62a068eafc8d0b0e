/**
 * The Deno.dlopen adapter. Arrays go as `buffer` parameters (Deno reads each view's address at
 * the call, offset included). Lengths go as BigInts: Deno's fast call path takes `usize` only as
 * a BigInt (a number falls back to a path ~4x slower), and the BigInts come from a cache so that
 * a forward allocates nothing in JS. No symbol is `nonblocking`: those run on another thread and
 * cost ~130 us per awaited call.
 */

import {
  createError,
  decodeMessage,
  MESSAGE_BYTES,
  type NativeApi,
  type NativeGraph,
  type NativeHandle,
  type NativeTrainer,
  openLibrary,
} from "./api.ts";

const symbols = {
  cz_abi_version: { parameters: [], result: "u32" },
  cz_model_create: {
    parameters: ["buffer", "usize", "buffer", "buffer", "usize"],
    result: "u32",
  },
  cz_model_destroy: { parameters: ["pointer"], result: "void" },
  cz_model_info: { parameters: ["pointer", "buffer", "usize"], result: "u32" },
  cz_forward: { parameters: ["pointer", "buffer", "usize", "buffer", "usize"], result: "u32" },
  cz_forward_batch: {
    parameters: ["pointer", "buffer", "usize", "u32", "buffer", "usize"],
    result: "u32",
  },
  cz_reset: { parameters: ["pointer"], result: "u32" },
  cz_process: {
    parameters: ["pointer", "buffer", "usize", "u32", "buffer", "usize"],
    result: "u32",
  },
  cz_last_error: { parameters: ["pointer", "buffer", "usize"], result: "usize" },
  cz_graph_create: {
    parameters: ["buffer", "usize", "buffer", "usize", "buffer", "buffer", "usize"],
    result: "u32",
  },
  cz_graph_destroy: { parameters: ["pointer"], result: "void" },
  cz_graph_info: { parameters: ["pointer", "buffer", "usize"], result: "u32" },
  cz_graph_step: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
    result: "u32",
  },
  cz_graph_step_from: {
    parameters: ["pointer", "u32", "buffer", "usize", "buffer", "usize"],
    result: "u32",
  },
  cz_graph_step_from_input: {
    parameters: ["pointer", "u32", "buffer", "usize", "buffer", "usize", "buffer", "usize"],
    result: "u32",
  },
  cz_graph_reset: { parameters: ["pointer"], result: "u32" },
  cz_graph_node_ns: { parameters: ["pointer", "buffer", "usize"], result: "u32" },
  cz_graph_prefetch: { parameters: ["pointer", "pointer"], result: "u32" },
  cz_graph_last_error: { parameters: ["pointer", "buffer", "usize"], result: "usize" },
  cz_trainer_create: {
    parameters: ["buffer", "usize", "buffer", "usize", "buffer", "buffer", "usize"],
    result: "u32",
  },
  cz_trainer_destroy: { parameters: ["pointer"], result: "void" },
  cz_trainer_info: { parameters: ["pointer", "buffer", "usize"], result: "u32" },
  cz_trainer_step: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize", "buffer", "usize", "buffer"],
    result: "u32",
  },
  cz_trainer_eval: {
    parameters: [
      "pointer",
      "buffer",
      "usize",
      "buffer",
      "usize",
      "buffer",
      "usize",
      "buffer",
      "usize",
    ],
    result: "u32",
  },
  cz_trainer_grad: {
    parameters: [
      "pointer",
      "buffer",
      "usize",
      "buffer",
      "usize",
      "buffer",
      "usize",
      "buffer",
      "buffer",
      "usize",
    ],
    result: "u32",
  },
  cz_trainer_forward: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
    result: "u32",
  },
  cz_trainer_get_params: { parameters: ["pointer", "buffer", "usize"], result: "u32" },
  cz_trainer_set_params: { parameters: ["pointer", "buffer", "usize"], result: "u32" },
  cz_trainer_set_trainable: { parameters: ["pointer", "buffer", "usize"], result: "u32" },
  cz_trainer_get_state: { parameters: ["pointer", "buffer", "usize"], result: "u32" },
  cz_trainer_set_state: { parameters: ["pointer", "buffer", "usize"], result: "u32" },
  cz_trainer_last_error: { parameters: ["pointer", "buffer", "usize"], result: "usize" },
} as const satisfies Deno.ForeignLibraryInterface;

type Ptr = Deno.PointerValue;
type Buf = ArrayBufferView;

/** The symbols as called here: any view (shared memory included) where Deno asks for a buffer. */
interface Symbols {
  cz_abi_version(): number;
  cz_model_create(
    image: Buf,
    image_len: bigint,
    handle_out: Buf,
    err: Buf,
    err_len: bigint,
  ): number;
  cz_model_destroy(handle: Ptr): void;
  cz_model_info(handle: Ptr, out: Buf, out_len: bigint): number;
  cz_forward(handle: Ptr, x: Buf, x_len: bigint, y: Buf, y_len: bigint): number;
  cz_forward_batch(
    handle: Ptr,
    x: Buf,
    x_len: bigint,
    batch: number,
    y: Buf,
    y_len: bigint,
  ): number;
  cz_reset(handle: Ptr): number;
  cz_process(
    handle: Ptr,
    x: Buf,
    x_len: bigint,
    steps: number,
    y: Buf,
    y_len: bigint,
  ): number;
  cz_last_error(handle: Ptr, buf: Buf, buf_len: bigint): number | bigint;
  cz_graph_create(
    desc: Buf,
    desc_len: bigint,
    handles: Buf,
    handle_count: bigint,
    graph_out: Buf,
    err: Buf,
    err_len: bigint,
  ): number;
  cz_graph_destroy(graph: Ptr): void;
  cz_graph_info(graph: Ptr, out: Buf, out_len: bigint): number;
  cz_graph_step(graph: Ptr, x: Buf, x_len: bigint, y: Buf, y_len: bigint): number;
  cz_graph_step_from(
    graph: Ptr,
    node: number,
    x: Buf,
    x_len: bigint,
    y: Buf,
    y_len: bigint,
  ): number;
  cz_graph_step_from_input(
    graph: Ptr,
    node: number,
    values: Buf,
    values_len: bigint,
    x: Buf,
    x_len: bigint,
    y: Buf,
    y_len: bigint,
  ): number;
  cz_graph_reset(graph: Ptr): number;
  cz_graph_node_ns(graph: Ptr, out: Buf, out_len: bigint): number;
  cz_graph_prefetch(graph: Ptr, bytes_out: Ptr): number;
  cz_graph_last_error(graph: Ptr, buf: Buf, buf_len: bigint): number | bigint;
  cz_trainer_create(
    image: Buf,
    image_len: bigint,
    config: Buf,
    config_len: bigint,
    handle_out: Buf,
    err: Buf,
    err_len: bigint,
  ): number;
  cz_trainer_destroy(t: Ptr): void;
  cz_trainer_info(t: Ptr, out: Buf, out_len: bigint): number;
  cz_trainer_step(
    t: Ptr,
    x: Buf,
    x_len: bigint,
    y: Buf,
    y_len: bigint,
    mask: Buf | null,
    mask_len: bigint,
    loss: Buf,
  ): number;
  cz_trainer_eval(
    t: Ptr,
    x: Buf,
    x_len: bigint,
    y: Buf,
    y_len: bigint,
    mask: Buf | null,
    mask_len: bigint,
    metrics: Buf,
    metrics_len: bigint,
  ): number;
  cz_trainer_grad(
    t: Ptr,
    x: Buf,
    x_len: bigint,
    y: Buf,
    y_len: bigint,
    mask: Buf | null,
    mask_len: bigint,
    loss: Buf,
    grad: Buf,
    grad_len: bigint,
  ): number;
  cz_trainer_forward(t: Ptr, x: Buf, x_len: bigint, y: Buf, y_len: bigint): number;
  cz_trainer_get_params(t: Ptr, out: Buf, out_len: bigint): number;
  cz_trainer_set_params(t: Ptr, values: Buf, values_len: bigint): number;
  cz_trainer_set_trainable(t: Ptr, values: Buf, values_len: bigint): number;
  cz_trainer_get_state(t: Ptr, out: Buf, out_len: bigint): number;
  cz_trainer_set_state(t: Ptr, values: Buf, values_len: bigint): number;
  cz_trainer_last_error(t: Ptr, buf: Buf, buf_len: bigint): number | bigint;
}

/** One BigInt per distinct length, made once: few distinct lengths occur in one process. */
const lengths = new Map<number, bigint>();

function len(view: ArrayBufferView & { length: number }): bigint {
  const n = view.length;
  let big = lengths.get(n);
  if (big === undefined) {
    big = BigInt(n);
    lengths.set(n, big);
  }
  return big;
}

function toPointer(handle: NativeHandle | NativeGraph | NativeTrainer): Deno.PointerObject {
  return handle as unknown as Deno.PointerObject;
}

export function openDeno(library_path: string): NativeApi {
  const lib = openLibrary(library_path, (path) => Deno.dlopen(path, symbols));
  const cz = lib.symbols as unknown as Symbols;
  const handle_out = new BigUint64Array(1);
  const message = new Uint8Array(MESSAGE_BYTES);
  /** Runs a create call that writes handle_out and message; returns the handle it wrote. */
  const created = (create: () => number): Deno.PointerObject => {
    handle_out[0] = 0n;
    message[0] = 0;
    const status = create();
    const pointer = Deno.UnsafePointer.create(handle_out[0]);
    if (status !== 0 || pointer === null) throw createError(status, message);
    return pointer;
  };
  const lastMessage = (written: number | bigint) => decodeMessage(message, Number(written));

  return {
    libraryPath: library_path,
    abiVersion: () => cz.cz_abi_version(),
    create: (image) =>
      created(() =>
        cz.cz_model_create(image, BigInt(image.length), handle_out, message, len(message))
      ) as unknown as NativeHandle,
    destroy: (handle) => cz.cz_model_destroy(toPointer(handle)),
    info: (handle, out) => cz.cz_model_info(toPointer(handle), out, len(out)),
    forward: (handle, input, output) =>
      cz.cz_forward(toPointer(handle), input, len(input), output, len(output)),
    forwardBatch: (handle, input, batch, output) =>
      cz.cz_forward_batch(toPointer(handle), input, len(input), batch, output, len(output)),
    reset: (handle) => cz.cz_reset(toPointer(handle)),
    process: (handle, input, steps, output) =>
      cz.cz_process(toPointer(handle), input, len(input), steps, output, len(output)),
    lastError: (handle) => lastMessage(cz.cz_last_error(toPointer(handle), message, len(message))),
    handleValue: (handle) => BigInt(Deno.UnsafePointer.value(toPointer(handle))),
    handleOf: (value) =>
      Deno.UnsafePointer.create(BigInt.asUintN(64, value)) as unknown as NativeHandle,
    graphCreate: (description, handles) =>
      created(() =>
        cz.cz_graph_create(
          description,
          BigInt(description.length),
          handles,
          BigInt(handles.length),
          handle_out,
          message,
          len(message),
        )
      ) as unknown as NativeGraph,
    graphDestroy: (graph) => cz.cz_graph_destroy(toPointer(graph)),
    graphInfo: (graph, out) => cz.cz_graph_info(toPointer(graph), out, len(out)),
    graphStep: (graph, input, output) =>
      cz.cz_graph_step(toPointer(graph), input, len(input), output, len(output)),
    graphStepFrom: (graph, node, values, output, input) =>
      input === undefined
        ? cz.cz_graph_step_from(toPointer(graph), node, values, len(values), output, len(output))
        : cz.cz_graph_step_from_input(
          toPointer(graph),
          node,
          values,
          len(values),
          input,
          len(input),
          output,
          len(output),
        ),
    graphReset: (graph) => cz.cz_graph_reset(toPointer(graph)),
    graphNodeNs: (graph, out) => cz.cz_graph_node_ns(toPointer(graph), out, len(out)),
    graphPrefetch: (graph) => cz.cz_graph_prefetch(toPointer(graph), null),
    graphLastError: (graph) =>
      lastMessage(cz.cz_graph_last_error(toPointer(graph), message, len(message))),
    trainerCreate: (image, config) =>
      created(() =>
        cz.cz_trainer_create(
          image,
          BigInt(image.length),
          config,
          len(config),
          handle_out,
          message,
          len(message),
        )
      ) as unknown as NativeTrainer,
    trainerDestroy: (t) => cz.cz_trainer_destroy(toPointer(t)),
    trainerInfo: (t, out) => cz.cz_trainer_info(toPointer(t), out, len(out)),
    trainerStep: (t, input, targets, mask, loss) =>
      cz.cz_trainer_step(
        toPointer(t),
        input,
        len(input),
        targets,
        len(targets),
        mask,
        mask === null ? 0n : len(mask),
        loss,
      ),
    trainerEval: (t, input, targets, mask, metrics) =>
      cz.cz_trainer_eval(
        toPointer(t),
        input,
        len(input),
        targets,
        len(targets),
        mask,
        mask === null ? 0n : len(mask),
        metrics,
        len(metrics),
      ),
    trainerGrad: (t, input, targets, mask, loss, grad) =>
      cz.cz_trainer_grad(
        toPointer(t),
        input,
        len(input),
        targets,
        len(targets),
        mask,
        mask === null ? 0n : len(mask),
        loss,
        grad,
        len(grad),
      ),
    trainerForward: (t, input, output) =>
      cz.cz_trainer_forward(toPointer(t), input, len(input), output, len(output)),
    trainerGetParams: (t, out) => cz.cz_trainer_get_params(toPointer(t), out, len(out)),
    trainerSetParams: (t, values) => cz.cz_trainer_set_params(toPointer(t), values, len(values)),
    trainerSetTrainable: (t, values) =>
      cz.cz_trainer_set_trainable(toPointer(t), values, len(values)),
    trainerGetState: (t, out) => cz.cz_trainer_get_state(toPointer(t), out, len(out)),
    trainerSetState: (t, values) => cz.cz_trainer_set_state(toPointer(t), values, len(values)),
    trainerLastError: (t) =>
      lastMessage(cz.cz_trainer_last_error(toPointer(t), message, len(message))),
  };
}
