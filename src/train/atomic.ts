/**
 * Atomic file replacement for checkpoints and exported models: the bytes go to a new temporary
 * file beside the target, are flushed, and the temporary file is renamed over the target. A
 * run stopped mid-write leaves the previous checkpoint whole.
 */

import { closeSync, openSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { writeFileAtomicSync } from "../atomic.ts";
import { CadenzaError } from "../errors.ts";

/**
 * Fails now (E_IO naming the path) if a file cannot be created beside `path`: a long run
 * should learn of a read-only directory or a missing --allow-write before it starts, not at
 * its first checkpoint.
 */
export function checkWritable(path: string): void {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}-probe.tmp`);
  try {
    closeSync(openSync(temp, "w", 0o644));
    rmSync(temp, { force: true });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new CadenzaError("E_IO", `cannot write ${path}: ${reason}`, { cause: err });
  }
}

/** Writes `bytes` over `path` atomically (src/atomic.ts, the one writer). */
export function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  writeFileAtomicSync(path, bytes);
  return Promise.resolve();
}
