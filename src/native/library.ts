/**
 * Finds the native library. Two builds exist: "safe" (ReleaseSafe: bounds and overflow checks
 * kept) and "fast" (ReleaseFast). The choice comes from the `library` option, else the
 * CADENZA_LIB environment variable, else "safe"; either may also be a path to a library file.
 * Where it looks, in order: the platform package an install brings (the optional dependency
 * cadenza-<os>-<cpu>, e.g. cadenza-linux-x64, made by `node scripts/pack.mjs platforms`), the
 * package's own prebuilt/ folder, then the local build of `zig build` (zig-out/). The WebAssembly backend (wasm.ts) has the same two builds,
 * zig-out/wasm/cadenza_safe.wasm and cadenza_fast.wasm: it is chosen by "wasm" / "wasm-fast"
 * or a path ending in .wasm, by CADENZA_BACKEND=wasm, or where the runtime has no FFI.
 */

import { CadenzaError } from "../errors.ts";
import { readFileSync } from "node:fs";
import { arch, envVar, fileExists, platform } from "./io.ts";
import { packageRoot } from "./root.ts";

/** "safe", "fast", "wasm", "wasm-fast", or the path of a library (.so/.dylib/.dll/.wasm) file. */
export type LibraryChoice = string;

function fileName(variant: "safe" | "fast"): string {
  const name = `cadenza_${variant}`;
  switch (platform()) {
    case "windows":
      return `${name}.dll`;
    case "darwin":
      return `lib${name}.dylib`;
    default:
      return `lib${name}.so`;
  }
}

function builtLibraryPath(variant: "safe" | "fast"): string {
  const dir = platform() === "windows" ? "bin" : "lib";
  return `${packageRoot()}zig-out/${dir}/${fileName(variant)}`;
}

/** True when /proc/cpuinfo lists every AVX-512 feature the x86_64_v4 build assumes. */
function hasAvx512(): boolean {
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const flags = new Set((info.match(/^flags\s*:(.*)$/m)?.[1] ?? "").trim().split(/\s+/));
    return ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"].every((f) => flags.has(f));
  } catch {
    return false;
  }
}

/**
 * The folders of `zig build prebuilt` for this platform (zig-out/prebuilt/<platform>-<arch>/),
 * best first: on linux-x64 the AVX-512 build where the CPU has AVX-512, then the AVX2+FMA
 * baseline.
 */
function prebuiltDirs(): string[] {
  const key = `${platform()}-${arch()}`;
  return key === "linux-x64" && hasAvx512() ? ["linux-x64-avx512", key] : [key];
}

/** npm's name for this platform's package: cadenza-linux-x64, cadenza-win32-x64, ... */
export function platformPackageName(): string {
  const os = platform() === "windows" ? "win32" : platform();
  return `cadenza-${os}-${arch()}`;
}

function packageVersion(): string | null {
  try {
    return JSON.parse(readFileSync(`${packageRoot()}package.json`, "utf8")).version ?? null;
  } catch {
    return null;
  }
}

/**
 * Where the platform package can be, from this package's folder: beside it (npm's and Bun's
 * flat node_modules, pnpm's store), inside it (a nested install), and Deno's npm cache
 * (<registry>/<name>/<version>/, the same version beside this one).
 */
function platformPackageDirs(): string[] {
  const name = platformPackageName();
  const root = packageRoot();
  const up = (dir: string) => dir.replace(/[^/\\]+[/\\]$/, "");
  const dirs = [`${up(root)}${name}/`, `${root}node_modules/${name}/`];
  const version = packageVersion();
  if (version !== null) dirs.push(`${up(up(root))}${name}/${version}/`);
  return dirs;
}

/**
 * The library for "safe" or "fast": the platform package's, else one in the package's
 * prebuilt/, else the local build (zig-out/), else an error naming every place looked in.
 */
function findLibrary(variant: "safe" | "fast"): string {
  const file = fileName(variant);
  const dirs = prebuiltDirs();
  const candidates = [
    ...platformPackageDirs().flatMap((pkg) => dirs.map((dir) => `${pkg}${dir}/${file}`)),
    ...dirs.map((dir) => `${packageRoot()}prebuilt/${dir}/${file}`),
    builtLibraryPath(variant),
  ];
  const found = candidates.find((path) => fileExists(path));
  if (found !== undefined) return found;
  throw new CadenzaError(
    "E_NATIVE",
    `native library not found for ${platform()}-${arch()}: looked for ${candidates.join(", ")}. ` +
      `An install brings it in the optional dependency ${platformPackageName()} (reinstall ` +
      "without omitting optional dependencies); a checkout builds it with `npm install` (or " +
      "`npm run build:native` once the pinned Zig is installed); or use the WebAssembly " +
      "backend (CADENZA_BACKEND=wasm)",
  );
}

/** The library path for a choice (option, then CADENZA_LIB, then "safe"); checks that it exists. */
export function resolveLibrary(choice?: LibraryChoice): string {
  const chosen = choice ?? envVar("CADENZA_LIB") ?? "safe";
  const from = choice !== undefined ? "the library option" : "CADENZA_LIB";
  if (chosen === "safe" || chosen === "fast") return findLibrary(chosen);
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

/** The WebAssembly library: the package's prebuilt one, else the local build. */
function wasmCandidates(variant: "safe" | "fast"): string[] {
  const root = packageRoot();
  return [
    `${root}prebuilt/wasm/cadenza_${variant}.wasm`,
    `${root}zig-out/wasm/cadenza_${variant}.wasm`,
  ];
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
  const candidates = wasmCandidates(variant);
  const path = candidates.find((p) => fileExists(p));
  if (path === undefined) {
    throw new CadenzaError(
      "E_NATIVE",
      `WebAssembly library not found: looked for ${candidates.join(", ")}. Run ` +
        "`npm run build:wasm` to build it",
    );
  }
  return { path };
}
