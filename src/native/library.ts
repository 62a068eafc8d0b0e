/**
 * Finds the native library built by `zig build` (zig-out/). Two builds exist: "safe"
 * (ReleaseSafe: bounds and overflow checks kept) and "fast" (ReleaseFast). The choice comes from
 * the `library` option, else the CADENZA_LIB environment variable, else "safe"; either may also
 * be a path to a library file.
 */

import { fileURLToPath } from "node:url";
import { CadenzaError } from "../errors.ts";
import { envVar, fileExists, platform } from "./io.ts";

/** "safe", "fast", or the path of a library file. */
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
