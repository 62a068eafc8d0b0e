/**
 * The package's root folder (the one with package.json, models/ and the built libraries),
 * found from this module's own location: src/native/ in a checkout, dist/ in the built
 * JavaScript that Node loads (scripts/build-dist.ts). Found once, then kept.
 */

import { fileURLToPath } from "node:url";
import { CadenzaError } from "../errors.ts";
import { fileExists } from "./io.ts";

let root: string | null = null;

export function packageRoot(): string {
  if (root !== null) return root;
  if (!import.meta.url.startsWith("file:")) {
    // Loaded from a registry URL (JSR, https): there is no folder to find libraries or models in.
    throw new CadenzaError(
      "E_UNAVAILABLE",
      `cadenza was loaded from ${import.meta.url}, not from files on disk, so it has no ` +
        "package folder with a native library or default models: pass a library path " +
        "(CADENZA_LIB or the library option), model paths, or openWasmLibrary(bytes)",
    );
  }
  for (const up of ["../../", "../", "./"]) {
    const dir = fileURLToPath(new URL(up, import.meta.url));
    if (fileExists(`${dir}package.json`)) return (root = dir);
  }
  return (root = fileURLToPath(new URL("../../", import.meta.url)));
}
