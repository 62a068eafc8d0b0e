/**
 * Finds the native library built by `zig build` (zig-out/). Two builds exist: "safe"
 * (ReleaseSafe: bounds and overflow checks kept) and "fast" (ReleaseFast). The choice comes from
 * the `library` option, else the CADENZA_LIB environment variable, else "safe"; either may also
 * be a path to a library file. The WebAssembly backend (wasm.ts) has the same two builds,
 * zig-out/wasm/cadenza_safe.wasm and cadenza_fast.wasm: it is chosen by "wasm" / "wasm-fast"
 * or a path ending in .wasm, by CADENZA_BACKEND=wasm, or where the runtime has no FFI.
 */

import { fileURLToPath } from "node:url";
import { CadenzaError } from "../errors.ts";
import { envVar, fileExists, platform } from "./io.ts";

/** "safe", "fast", "wasm", "wasm-fast", or the path of a library (.so/.dylib/.dll/.wasm) file. */
export type LibraryChoice = string;

const repo_root = fileURLToPath(new URL("../../", import.meta.url));

function builtLibraryPath(variant: "safe" | "fast"): string {
  const name = `cadenza_${variant}`;
  switch (platform()) {
    case "windows":
      return `${repo_root}zig-out/bin/${name}.dll`;
    case "darwin":
      return `${repo_root}zig-out/lib/lib${name}.dylib`;
    default:
      return `${repo_root}zig-out/lib/lib${name}.so`;
  }
}

/** The library path for a choice (option, then CADENZA_LIB, then "safe"); checks that it exists. */
export function resolveLibrary(choice?: LibraryChoice): string {
  const chosen = choice ?? envVar("CADENZA_LIB") ?? "safe";
  const from = choice !== undefined ? "the library option" : "CADENZA_LIB";
  if (chosen === "safe" || chosen === "fast") {
    const path = builtLibraryPath(chosen);
    if (!fileExists(path)) {
      throw new CadenzaError(
        "E_NATIVE",
        `native library not found at ${path}: run \`npm install\` (or \`npm run build:native\` ` +
          `once the pinned Zig is installed) to build it`,
      );
    }
    return path;
  }
  if (chosen === "") {
    throw new CadenzaError("E_ARGUMENT", `${from} is empty: use safe, fast or a path`);
  }
  if (!fileExists(chosen)) {
    throw new CadenzaError("E_NATIVE", `native library not found at ${chosen} (from ${from})`);
  }
  return chosen;
}

/** Where a WebAssembly library comes from, and which build it is. */
export interface WasmChoice {
  readonly path: string;
}

function builtWasmPath(variant: "safe" | "fast"): string {
  return `${repo_root}zig-out/wasm/cadenza_${variant}.wasm`;
}

/**
 * The WebAssembly library for a choice, or null when the choice asks for the native one.
 * `forced` is true where the runtime has no FFI, so only wasm can serve.
 */
export function resolveWasm(choice: LibraryChoice | undefined, forced: boolean): WasmChoice | null {
  const backend = envVar("CADENZA_BACKEND");
  if (backend !== undefined && backend !== "" && backend !== "native" && backend !== "wasm") {
    throw new CadenzaError(
      "E_ARGUMENT",
      `CADENZA_BACKEND is ${JSON.stringify(backend)}: expected native or wasm`,
    );
  }
  const chosen = choice ?? envVar("CADENZA_LIB") ?? "safe";
  let variant: "safe" | "fast" | null = null;
  if (chosen === "wasm" || chosen === "wasm-safe") variant = "safe";
  else if (chosen === "wasm-fast") variant = "fast";
  else if (chosen.endsWith(".wasm")) {
    if (!fileExists(chosen)) {
      throw new CadenzaError("E_NATIVE", `WebAssembly library not found at ${chosen}`);
    }
    return { path: chosen };
  } else if (forced || backend === "wasm") {
    if (chosen === "safe" || chosen === "fast") variant = chosen;
    else if (forced) {
      throw new CadenzaError(
        "E_NATIVE",
        `this runtime has no FFI, so it needs a .wasm library, not ${chosen}`,
      );
    }
  }
  if (variant === null) return null;
  const path = builtWasmPath(variant);
  if (!fileExists(path)) {
    throw new CadenzaError(
      "E_NATIVE",
      `WebAssembly library not found at ${path}: run \`scripts/zig build wasm\` to build it`,
    );
  }
  return { path };
}
