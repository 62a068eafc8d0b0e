/**
 * The one atomic file writer: every file cadenza writes for a user (convert, generate,
 * respond, train's checkpoints and exported models) goes through it. The bytes go to a new
 * temporary file beside the target, are flushed (fsync) and the temporary file is renamed over
 * the target, so a process killed at any point leaves the previous file whole or the new one
 * whole, never a torn one (test/cases/faults.ts kills a writer with SIGKILL to prove it).
 */

import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import process from "node:process";
import { CadenzaError } from "./errors.ts";

/**
 * Writes `bytes` to a new temporary file beside `path`, flushes it and renames it over `path`;
 * on any failure the temporary file is removed (if it can be), `path` is left as it was, and
 * the error is a CadenzaError E_IO naming `path`.
 */
export function writeFileAtomicSync(path: string, bytes: Uint8Array): void {
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
