/**
 * The package's root folder (the one with package.json, models/ and the built libraries),
 * found from this module's own location: src/native/ in a checkout, dist/ in the built
 * JavaScript that Node loads (scripts/build-dist.ts). Found once, then kept.
 */

import { fileURLToPath } from "node:url";
import { fileExists } from "./io.ts";

let root: string | null = null;

export function packageRoot(): string {
  if (root !== null) return root;
  for (const up of ["../../", "../", "./"]) {
    const dir = fileURLToPath(new URL(up, import.meta.url));
    if (fileExists(`${dir}package.json`)) return (root = dir);
  }
  return (root = fileURLToPath(new URL("../../", import.meta.url)));
}
