/**
 * Opens the native library through the adapter for the running runtime. The adapters are
 * imported dynamically so that Deno never loads bun:ffi and Bun never sees Deno.dlopen. One
 * NativeApi is kept per library path: every model shares the one loaded instance.
 */

import { CadenzaError } from "../errors.ts";
import { ABI_VERSION, type NativeApi } from "./api.ts";
import { runtime } from "./io.ts";
import { type LibraryChoice, resolveLibrary } from "./library.ts";

const opened = new Map<string, NativeApi>();

async function openAdapter(library_path: string): Promise<NativeApi> {
  if (runtime() === "bun") return (await import("./bun.ts")).openBun(library_path);
  return (await import("./deno.ts")).openDeno(library_path);
}

/** The NativeApi for a library choice ("safe", "fast" or a path; default CADENZA_LIB or safe). */
export async function openNative(choice?: LibraryChoice): Promise<NativeApi> {
  const library_path = resolveLibrary(choice);
  const cached = opened.get(library_path);
  if (cached !== undefined) return cached;
  const api = await openAdapter(library_path);
  const version = api.abiVersion();
  if (version !== ABI_VERSION) {
    throw new CadenzaError(
      "E_NATIVE",
      `${library_path} has ABI version ${version}, expected ${ABI_VERSION}: rebuild it with ` +
        "`npm run build:native`",
    );
  }
  opened.set(library_path, api);
  return api;
}

export type { LibraryChoice } from "./library.ts";
export type { NativeApi, NativeHandle } from "./api.ts";
