/**
 * The writer test/cases/faults.ts kills: it replaces the file named by its argument, over and
 * over, with whole versions (src/atomic.ts), until it is killed. Each version has its own size
 * (64 KiB to about 4 MiB, so a write takes long enough to be caught in the middle) and every
 * byte says which version it belongs to, so a torn file (a mix, or a short one) is told apart
 * from a whole one.
 */

import process from "node:process";
import { writeFileAtomicSync } from "../../src/atomic.ts";

/** Version `v`'s bytes: a 4-byte length, then (v * 31 + i) & 255 for each byte i. */
export function patternBytes(v: number): Uint8Array {
  const size = 65536 + ((v * 524287) % 4_000_000);
  const bytes = new Uint8Array(size);
  new DataView(bytes.buffer).setUint32(0, v);
  for (let i = 4; i < size; i++) bytes[i] = (v * 31 + i) & 255;
  return bytes;
}

/** The version `bytes` is a whole copy of, or -1 when they are torn. */
export function verdict(bytes: Uint8Array): number {
  if (bytes.length < 4) return -1;
  const v = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0);
  const want = patternBytes(v);
  if (want.length !== bytes.length) return -1;
  for (let i = 0; i < want.length; i++) if (want[i] !== bytes[i]) return -1;
  return v;
}

if (import.meta.main) {
  const path = process.argv[process.argv.length - 1];
  const versions = [1, 2, 3, 4, 5, 6, 7, 8].map(patternBytes);
  console.log("writing");
  for (let n = 0;; n++) {
    writeFileAtomicSync(path, versions[n % versions.length]);
  }
}
