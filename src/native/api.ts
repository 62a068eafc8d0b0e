/**
 * The one interface the rest of cadenza uses to reach the native library (zig/api.zig). Each
 * runtime has a thin adapter (bun.ts, deno.ts) that maps these calls onto its FFI; the shapes
 * and status codes follow docs/DESIGN.md, "C ABI".
 */

import type { CadenzaErrorCode } from "../errors.ts";

/** An opaque native model handle: a pointer number under Bun, a pointer object under Deno. */
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
  /** The message of the handle's last failed call ("" when there is none). */
  lastError(handle: NativeHandle): string;
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
