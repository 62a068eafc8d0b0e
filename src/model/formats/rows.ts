/**
 * Input rows as text (`cadenza run --input FILE`, and anyone feeding a model from a file):
 * numbers separated by commas, semicolons or whitespace, one step per line.
 */

import { CadenzaError } from "../../errors.ts";

/** A decimal number as a CSV of floats writes it: no hex, no Infinity, no separators. */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** One token as the float32 the model will see; throws naming the file and line. */
function parseValue(token: string, where: string): number {
  if (!DECIMAL.test(token)) {
    throw new CadenzaError("E_FORMAT", `${where}: expected a number, got "${token}"`);
  }
  const value = Number(token);
  if (!Number.isFinite(Math.fround(value))) {
    throw new CadenzaError(
      "E_FORMAT",
      `${where}: expected a number within float32 range (magnitude at most 3.4028235e38), ` +
        `got "${token}"`,
    );
  }
  return value;
}

/**
 * Rows of numbers (comma, semicolon or whitespace separated), each exactly `width` long. Lines
 * may end in LF, CRLF or CR; blank lines and everything from a `#` to the end of its line are
 * skipped.
 */
export function parseRows(text: string, width: number, path: string): Float32Array[] {
  const values: number[] = [];
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const hash = lines[i].indexOf("#");
    const line = (hash < 0 ? lines[i] : lines[i].slice(0, hash)).trim();
    if (line === "") continue;
    const tokens = line.split(/[\s,;]+/).filter((token) => token !== "");
    if (tokens.length !== width) {
      const got = tokens.length;
      throw new CadenzaError(
        "E_SHAPE",
        `${path}:${i + 1}: expected ${width} values (the model's input size), got ${got}`,
      );
    }
    for (const token of tokens) values.push(parseValue(token, `${path}:${i + 1}`));
  }
  if (values.length === 0) throw new CadenzaError("E_FORMAT", `${path}: no input rows`);
  const all = Float32Array.from(values);
  const rows: Float32Array[] = [];
  for (let offset = 0; offset < all.length; offset += width) {
    rows.push(all.subarray(offset, offset + width));
  }
  return rows;
}
