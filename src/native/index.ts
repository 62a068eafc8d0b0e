/**
 * Opens the native library through the adapter for the running runtime. The adapters are
 * imported dynamically so that Deno never loads bun:ffi and Bun never sees Deno.dlopen. One
 * NativeApi is kept per library path: every model shares the one loaded instance. Where the
 * runtime has no FFI (Node), or on request, the WebAssembly build serves instead (wasm.ts).
 */

import { CadenzaError } from "../errors.ts";
import { ABI_VERSION, type NativeApi } from "./api.ts";
import { readFile, runtime } from "./io.ts";
import { type LibraryChoice, resolveLibrary, resolveWasm } from "./library.ts";

const opened = new Map<string, NativeApi>();

async function openAdapter(library_path: string): Promise<NativeApi> {
  if (runtime() === "bun") return (await import("./bun.ts")).openBun(library_path);
  return (await import("./deno.ts")).openDeno(library_path);
}

async function openWasmLibrary(path: string): Promise<NativeApi> {
  const { instantiateWasm, openWasm } = await import("./wasm.ts");
  return openWasm(await instantiateWasm(await readFile(path), path), path);
}

/**
 * The NativeApi for a library choice ("safe", "fast", "wasm", "wasm-fast" or a path; default
 * CADENZA_LIB or safe; CADENZA_BACKEND=wasm picks the WebAssembly build of safe or fast).
 */
export async function openNative(choice?: LibraryChoice): Promise<NativeApi> {
  const wasm = resolveWasm(choice, runtime() === "node");
  const library_path = wasm?.path ?? resolveLibrary(choice);
  const cached = opened.get(library_path);
  if (cached !== undefined) return cached;
  const api = wasm !== null ? await openWasmLibrary(library_path) : await openAdapter(library_path);
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
