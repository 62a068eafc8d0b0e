/**
 * Writing output files from the CLI: each file goes to a new temporary file beside its target,
 * is flushed and renamed over the target, so a failed or interrupted command never leaves a
 * partial file (`convert`, `generate`, `respond`).
 */

import { statSync } from "node:fs";
import { dirname } from "node:path";
import { writeFileAtomicSync } from "../atomic.ts";

/** Writes `bytes` over `path` atomically (src/atomic.ts). */
export function writeAtomically(path: string, bytes: Uint8Array): void {
  writeFileAtomicSync(path, bytes);
}

/** Why `path` cannot be written as a new or replaced file, or null when it can. */
export function unwritableReason(path: string): string | null {
  const dir = dirname(path);
  try {
    if (!statSync(dir).isDirectory()) return `${dir} is not a directory`;
  } catch {
    return `the directory ${dir} does not exist`;
  }
  try {
    if (statSync(path).isDirectory()) return `${path} is a directory`;
  } catch {
    // Does not exist yet: fine.
  }
  return null;
}
