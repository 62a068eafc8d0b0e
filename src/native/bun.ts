/**
 * The bun:ffi adapter. TypedArrays are passed straight as `ptr` arguments, so Bun reads their
 * address at each call: no `ptr()` value is kept across calls (it can go stale when the JIT
 * moves small arrays), and a forward allocates nothing in JS.
 */

import { dlopen, FFIType, type Pointer } from "bun:ffi";
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

const { ptr, usize, u32, void: none } = FFIType;

const symbols = {
  cz_abi_version: { args: [], returns: u32 },
  cz_model_create: { args: [ptr, usize, ptr, ptr, usize], returns: u32 },
  cz_model_destroy: { args: [ptr], returns: none },
  cz_model_info: { args: [ptr, ptr, usize], returns: u32 },
  cz_forward: { args: [ptr, ptr, usize, ptr, usize], returns: u32 },
  cz_forward_batch: { args: [ptr, ptr, usize, u32, ptr, usize], returns: u32 },
  cz_reset: { args: [ptr], returns: u32 },
  cz_process: { args: [ptr, ptr, usize, u32, ptr, usize], returns: u32 },
  cz_last_error: { args: [ptr, ptr, usize], returns: usize },
  cz_graph_create: { args: [ptr, usize, ptr, usize, ptr, ptr, usize], returns: u32 },
  cz_graph_destroy: { args: [ptr], returns: none },
  cz_graph_info: { args: [ptr, ptr, usize], returns: u32 },
  cz_graph_step: { args: [ptr, ptr, usize, ptr, usize], returns: u32 },
  cz_graph_step_from: { args: [ptr, u32, ptr, usize, ptr, usize], returns: u32 },
  cz_graph_step_from_input: {
    args: [ptr, u32, ptr, usize, ptr, usize, ptr, usize],
    returns: u32,
  },
  cz_graph_reset: { args: [ptr], returns: u32 },
  cz_graph_node_ns: { args: [ptr, ptr, usize], returns: u32 },
  cz_graph_prefetch: { args: [ptr, ptr], returns: u32 },
  cz_graph_last_error: { args: [ptr, ptr, usize], returns: usize },
  cz_trainer_create: { args: [ptr, usize, ptr, usize, ptr, ptr, usize], returns: u32 },
  cz_trainer_destroy: { args: [ptr], returns: none },
  cz_trainer_info: { args: [ptr, ptr, usize], returns: u32 },
  cz_trainer_step: { args: [ptr, ptr, usize, ptr, usize, ptr, usize, ptr], returns: u32 },
  cz_trainer_eval: { args: [ptr, ptr, usize, ptr, usize, ptr, usize, ptr, usize], returns: u32 },
  cz_trainer_grad: {
    args: [ptr, ptr, usize, ptr, usize, ptr, usize, ptr, ptr, usize],
    returns: u32,
  },
  cz_trainer_forward: { args: [ptr, ptr, usize, ptr, usize], returns: u32 },
  cz_trainer_get_params: { args: [ptr, ptr, usize], returns: u32 },
  cz_trainer_set_params: { args: [ptr, ptr, usize], returns: u32 },
  cz_trainer_set_trainable: { args: [ptr, ptr, usize], returns: u32 },
  cz_trainer_get_state: { args: [ptr, ptr, usize], returns: u32 },
  cz_trainer_set_state: { args: [ptr, ptr, usize], returns: u32 },
  cz_trainer_last_error: { args: [ptr, ptr, usize], returns: usize },
} as const;

function toPointer(handle: NativeHandle | NativeGraph | NativeTrainer): Pointer {
  return handle as unknown as Pointer;
}

export function openBun(library_path: string): NativeApi {
  const cz = openLibrary(library_path, (path) => dlopen(path, symbols)).symbols;
  const handle_out = new BigUint64Array(1);
  const message = new Uint8Array(MESSAGE_BYTES);
  /** Runs a create call that writes handle_out and message; returns the handle it wrote. */
  const created = (create: () => number): number => {
    handle_out[0] = 0n;
    message[0] = 0;
    const status = create();
    if (status !== 0 || handle_out[0] === 0n) throw createError(status, message);
    return Number(handle_out[0]);
  };
  const lastMessage = (written: number | bigint) => decodeMessage(message, Number(written));

  return {
    libraryPath: library_path,
    abiVersion: () => cz.cz_abi_version(),
    create: (image) =>
      created(() =>
        cz.cz_model_create(image, image.length, handle_out, message, message.length)
      ) as unknown as NativeHandle,
    destroy: (handle) => cz.cz_model_destroy(toPointer(handle)),
    info: (handle, out) => cz.cz_model_info(toPointer(handle), out, out.length),
    forward: (handle, input, output) =>
      cz.cz_forward(toPointer(handle), input, input.length, output, output.length),
    forwardBatch: (handle, input, batch, output) =>
      cz.cz_forward_batch(toPointer(handle), input, input.length, batch, output, output.length),
    reset: (handle) => cz.cz_reset(toPointer(handle)),
    process: (handle, input, steps, output) =>
      cz.cz_process(toPointer(handle), input, input.length, steps, output, output.length),
    lastError: (handle) =>
      lastMessage(cz.cz_last_error(toPointer(handle), message, message.length)),
    handleValue: (handle) => BigInt(handle as unknown as number),
    handleOf: (value) => Number(BigInt.asUintN(64, value)) as unknown as NativeHandle,
    graphCreate: (description, handles) =>
      created(() =>
        cz.cz_graph_create(
          description,
          description.length,
          handles,
          handles.length,
          handle_out,
          message,
          message.length,
        )
      ) as unknown as NativeGraph,
    graphDestroy: (graph) => cz.cz_graph_destroy(toPointer(graph)),
    graphInfo: (graph, out) => cz.cz_graph_info(toPointer(graph), out, out.length),
    graphStep: (graph, input, output) =>
      cz.cz_graph_step(toPointer(graph), input, input.length, output, output.length),
    graphStepFrom: (graph, node, values, output, input) =>
      input === undefined
        ? cz.cz_graph_step_from(
          toPointer(graph),
          node,
          values,
          values.length,
          output,
          output.length,
        )
        : cz.cz_graph_step_from_input(
          toPointer(graph),
          node,
          values,
          values.length,
          input,
          input.length,
          output,
          output.length,
        ),
    graphReset: (graph) => cz.cz_graph_reset(toPointer(graph)),
    graphNodeNs: (graph, out) => cz.cz_graph_node_ns(toPointer(graph), out, out.length),
    graphPrefetch: (graph) => cz.cz_graph_prefetch(toPointer(graph), null),
    graphLastError: (graph) =>
      lastMessage(cz.cz_graph_last_error(toPointer(graph), message, message.length)),
    trainerCreate: (image, config) =>
      created(() =>
        cz.cz_trainer_create(
          image,
          image.length,
          config,
          config.length,
          handle_out,
          message,
          message.length,
        )
      ) as unknown as NativeTrainer,
    trainerDestroy: (t) => cz.cz_trainer_destroy(toPointer(t)),
    trainerInfo: (t, out) => cz.cz_trainer_info(toPointer(t), out, out.length),
    trainerStep: (t, input, targets, mask, loss) =>
      cz.cz_trainer_step(
        toPointer(t),
        input,
        input.length,
        targets,
        targets.length,
        mask,
        mask?.length ?? 0,
        loss,
      ),
    trainerEval: (t, input, targets, mask, metrics) =>
      cz.cz_trainer_eval(
        toPointer(t),
        input,
        input.length,
        targets,
        targets.length,
        mask,
        mask?.length ?? 0,
        metrics,
        metrics.length,
      ),
    trainerGrad: (t, input, targets, mask, loss, grad) =>
      cz.cz_trainer_grad(
        toPointer(t),
        input,
        input.length,
        targets,
        targets.length,
        mask,
        mask?.length ?? 0,
        loss,
        grad,
        grad.length,
      ),
    trainerForward: (t, input, output) =>
      cz.cz_trainer_forward(toPointer(t), input, input.length, output, output.length),
    trainerGetParams: (t, out) => cz.cz_trainer_get_params(toPointer(t), out, out.length),
    trainerSetParams: (t, values) => cz.cz_trainer_set_params(toPointer(t), values, values.length),
    trainerSetTrainable: (t, values) =>
      cz.cz_trainer_set_trainable(toPointer(t), values, values.length),
    trainerGetState: (t, out) => cz.cz_trainer_get_state(toPointer(t), out, out.length),
    trainerSetState: (t, values) => cz.cz_trainer_set_state(toPointer(t), values, values.length),
    trainerLastError: (t) =>
      lastMessage(cz.cz_trainer_last_error(toPointer(t), message, message.length)),
  };
}
