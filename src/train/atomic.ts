/**
 * Atomic file replacement for checkpoints and exported models: the bytes go to a new temporary
 * file beside the target, are flushed, and the temporary file is renamed over the target. A
 * run stopped mid-write leaves the previous checkpoint whole.
 */

import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import process from "node:process";
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

export function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const suffix = Math.floor(Math.random() * 2 ** 32).toString(16);
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}-${suffix}.tmp`);
  let fd = -1;
  let created = false;
  try {
    fd = openSync(temp, "wx", 0o644);
    created = true;
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(temp, path);
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    if (created) {
      try {
        rmSync(temp, { force: true });
      } catch {
        // Left behind; its name says what it was.
      }
    }
    const reason = err instanceof Error ? err.message : String(err);
    throw new CadenzaError("E_IO", `cannot write ${path}: ${reason}`, { cause: err });
  }
  return Promise.resolve();
}
