/**
 * The training calls of the native library (docs/DESIGN.md, "Training ABI") as the trainer
 * uses them: a narrow view of NativeApi's trainer methods (src/native/), so that trainer.ts
 * reads as the ABI does and a library without the training ABI is refused with one message.
 */

import { CadenzaError } from "../errors.ts";
import type { NativeApi } from "../native/api.ts";

/** An opaque native trainer handle (cz_trainer_create). */
export type NativeTrainer = { readonly __brand: "NativeTrainer" };

/** Words of cz_trainer_create's config. */
export const TRAINER_CONFIG_WORDS = 32;
/** u64 fields cz_trainer_info fills. */
export const TRAINER_INFO_FIELDS = 11;

export interface TrainerApi {
  /** Validates and creates; throws CadenzaError with the native message on failure. */
  create(image: Uint8Array, config: Uint32Array): NativeTrainer;
  destroy(t: NativeTrainer): void;
  info(t: NativeTrainer, out: BigUint64Array): number;
  step(
    t: NativeTrainer,
    x: Float32Array,
    y: Float32Array,
    mask: Float32Array | null,
    loss: Float32Array,
  ): number;
  eval(
    t: NativeTrainer,
    x: Float32Array,
    y: Float32Array,
    mask: Float32Array | null,
    metrics: Float32Array,
  ): number;
  grad(
    t: NativeTrainer,
    x: Float32Array,
    y: Float32Array,
    mask: Float32Array | null,
    loss: Float32Array,
    grad: Float32Array,
  ): number;
  forward(t: NativeTrainer, x: Float32Array, out: Float32Array): number;
  getParams(t: NativeTrainer, out: Float32Array): number;
  setParams(t: NativeTrainer, values: Float32Array): number;
  getState(t: NativeTrainer, out: Float32Array): number;
  setState(t: NativeTrainer, values: Float32Array): number;
  lastError(t: NativeTrainer): string;
}

// deno-lint-ignore no-explicit-any
type Loose = Record<string, (...args: any[]) => any>;

/** The trainer calls of an opened library; E_NATIVE when it has no training ABI. */
export function trainerApi(api: NativeApi, source: string): TrainerApi {
  const a = api as unknown as Loose;
  if (typeof a.trainerCreate !== "function") {
    throw new CadenzaError(
      "E_NATIVE",
      `${source}: ${api.libraryPath} has no training ABI (cz_trainer_*): rebuild it with ` +
        "`npm run build:native`",
    );
  }
  return {
    create: (image, config) => a.trainerCreate(image, config),
    destroy: (t) => a.trainerDestroy(t),
    info: (t, out) => a.trainerInfo(t, out),
    step: (t, x, y, mask, loss) => a.trainerStep(t, x, y, mask, loss),
    eval: (t, x, y, mask, metrics) => a.trainerEval(t, x, y, mask, metrics),
    grad: (t, x, y, mask, loss, grad) => a.trainerGrad(t, x, y, mask, loss, grad),
    forward: (t, x, out) => a.trainerForward(t, x, out),
    getParams: (t, out) => a.trainerGetParams(t, out),
    setParams: (t, values) => a.trainerSetParams(t, values),
    getState: (t, out) => a.trainerGetState(t, out),
    setState: (t, values) => a.trainerSetState(t, values),
    lastError: (t) => a.trainerLastError(t),
  };
}
