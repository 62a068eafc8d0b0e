/**
 * The writer test/cases/limits.ts loads against: it rewrites the file named by its argument in
 * place (truncate, then the bytes in 4 KiB pieces), over and over, alternating between two
 * model files (argv: path, first, second), so a reader sees it truncated, half-written or
 * replaced by the other model at any moment. Killed by the test.
 */

import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from "node:fs";
import process from "node:process";

const [path, a, b] = process.argv.slice(-3);
const versions = [readFileSync(a), readFileSync(b)];
console.log("writing");
for (let n = 0;; n++) {
  const bytes = versions[n % 2];
  const fd = openSync(path, "r+");
  ftruncateSync(fd, 0);
  for (let at = 0; at < bytes.length; at += 4096) {
    writeSync(fd, bytes, at, Math.min(4096, bytes.length - at), at);
  }
  closeSync(fd);
}
