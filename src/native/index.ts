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

async function openWasmFile(path: string): Promise<NativeApi> {
  const { instantiateWasm, openWasm } = await import("./wasm.ts");
  return openWasm(await instantiateWasm(await readFile(path), path), path);
}

function checkVersion(api: NativeApi, source: string): NativeApi {
  const version = api.abiVersion();
  if (version !== ABI_VERSION) {
    throw new CadenzaError(
      "E_NATIVE",
      `${source} has ABI version ${version}, expected ${ABI_VERSION}: rebuild it with ` +
        "`npm run build:native`",
    );
  }
  return api;
}

/**
 * Opens the WebAssembly library from its bytes, for hosts that read no files (a browser: fetch
 * `cadenza_safe.wasm` or `cadenza_fast.wasm` from the package's prebuilt/wasm/), and returns the
 * library choice that names it: pass it as the `library` option of loadModel, Model.create or
 * EmotionPipeline.load. `source` names the library in messages and is the choice returned (a
 * URL, say); opening the same source again returns the one already open.
 *
 * @example
 * const bytes = new Uint8Array(await (await fetch("/cadenza_fast.wasm")).arrayBuffer());
 * const library = await openWasmLibrary(bytes, "/cadenza_fast.wasm");
 * const model = await loadModel(modelBytes, { library });
 */
export async function openWasmLibrary(bytes: Uint8Array, source: string): Promise<LibraryChoice> {
  if (opened.has(source)) return source;
  if (!(bytes instanceof Uint8Array)) {
    throw new CadenzaError("E_ARGUMENT", `openWasmLibrary: expected the bytes of ${source}`);
  }
  const { instantiateWasm, openWasm } = await import("./wasm.ts");
  const api = checkVersion(openWasm(await instantiateWasm(bytes, source), source), source);
  opened.set(source, api);
  return source;
}

/**
 * The NativeApi for a library choice ("safe", "fast", "wasm", "wasm-fast" or a path; default
 * CADENZA_LIB or safe; CADENZA_BACKEND=wasm picks the WebAssembly build of safe or fast).
 */
export async function openNative(choice?: LibraryChoice): Promise<NativeApi> {
  // A library already open under this name (a path opened before, or openWasmLibrary's).
  const known = choice !== undefined ? opened.get(choice) : undefined;
  if (known !== undefined) return known;
  const wasm = resolveWasm(choice, runtime() === "node");
  const library_path = wasm?.path ?? resolveLibrary(choice);
  const cached = opened.get(library_path);
  if (cached !== undefined) return cached;
  const api = checkVersion(
    wasm !== null ? await openWasmFile(library_path) : await openAdapter(library_path),
    library_path,
  );
  opened.set(library_path, api);
  return api;
}

export type { LibraryChoice } from "./library.ts";
export type { NativeApi, NativeHandle } from "./api.ts";
