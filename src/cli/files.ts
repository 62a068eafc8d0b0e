/**
 * Writing output files from the CLI: each file goes to a new temporary file beside its target,
 * is flushed and renamed over the target, so a failed or interrupted command never leaves a
 * partial file (`convert`, `generate`, `respond`).
 */

import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { CadenzaError } from "../errors.ts";

/**
 * Writes `bytes` to a new temporary file beside `path`, flushes it and renames it over `path`;
 * on any failure the temporary file is removed (if it can be) and `path` is left as it was.
 */
export function writeAtomically(path: string, bytes: Uint8Array): void {
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
    if (created) removeQuietly(temp);
    const reason = err instanceof Error ? err.message : String(err);
    throw new CadenzaError("E_IO", `cannot write ${path}: ${reason}`, { cause: err });
  }
}

/** Cleanup after a failed write: that failure is the one to report, not a second one. */
export function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // Left behind; its name says what it was.
  }
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
