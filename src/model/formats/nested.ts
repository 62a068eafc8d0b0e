/**
 * Nested JSON arrays (as Keras get_weights() and PyTorch state_dict dumps write them) to flat
 * row-major Float32Arrays, with the shape checked so that a malformed file gives a message
 * naming the tensor and both shapes rather than a wrong model.
 */

import { CadenzaError } from "../../errors.ts";
import { describe } from "../spec.ts";

/** The shape a nested array claims, read along its first elements ([] for a scalar). */
export function shapeOf(value: unknown): number[] {
  const shape: number[] = [];
  let item = value;
  while (Array.isArray(item)) {
    shape.push(item.length);
    if (item.length === 0) break;
    item = item[0];
  }
  return shape;
}

/** Dimensions a message shows at most: a hostile file may nest arrays thousands deep. */
const SHAPE_DIMS_SHOWN = 8;

export function formatShape(shape: readonly number[]): string {
  if (shape.length === 0) return "a scalar";
  if (shape.length <= SHAPE_DIMS_SHOWN) return `[${shape.join("][")}]`;
  return `[${shape.slice(0, SHAPE_DIMS_SHOWN).join("][")}]... (${shape.length} dimensions)`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((dim, i) => dim === b[i]);
}

/**
 * Reads `value` as a nested array of exactly `shape` into a row-major Float32Array. `what`
 * starts every message (e.g. `lstm.json: layers[1] (lstm): weights[0]`).
 */
export function readNested(value: unknown, shape: readonly number[], what: string): Float32Array {
  const got = shapeOf(value);
  if (!sameShape(got, shape)) {
    throw new CadenzaError(
      "E_SHAPE",
      `${what}: expected shape ${formatShape(shape)}, got ${formatShape(got)}`,
    );
  }
  const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fill(value, shape, 0, out, 0, what, "");
  return out;
}

/** Depth-first copy; depth is bounded by shape.length (at most a few levels). */
function fill(
  value: unknown,
  shape: readonly number[],
  depth: number,
  out: Float32Array,
  offset: number,
  what: string,
  path: string,
): number {
  if (depth === shape.length) {
    if (typeof value !== "number") {
      throw new CadenzaError(
        "E_FORMAT",
        `${what}${path}: expected a number, got ${describe(value)}`,
      );
    }
    out[offset] = value;
    return offset + 1;
  }
  if (!Array.isArray(value) || value.length !== shape[depth]) {
    const expected = `an array of ${shape[depth]} (shape ${formatShape(shape)})`;
    throw new CadenzaError(
      "E_SHAPE",
      `${what}${path}: expected ${expected}, got ${describe(value)}`,
    );
  }
  if (depth === shape.length - 1) return fillRow(value, out, offset, what, path);
  for (let i = 0; i < value.length; i++) {
    offset = fill(value[i], shape, depth + 1, out, offset, what, `${path}[${i}]`);
  }
  return offset;
}

function fillRow(row: unknown[], out: Float32Array, offset: number, what: string, path: string) {
  for (let i = 0; i < row.length; i++) {
    const item = row[i];
    if (typeof item !== "number") {
      const got = describe(item);
      throw new CadenzaError("E_FORMAT", `${what}${path}[${i}]: expected a number, got ${got}`);
    }
    out[offset + i] = item;
  }
  return offset + row.length;
}

/** Transposes a row-major [rows][cols] matrix to [cols][rows]. */
export function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  }
  return out;
}

/** The inverse of readNested for writers: a row-major Float32Array to nested number arrays. */
export function toNested(values: Float32Array, shape: readonly number[]): unknown {
  if (shape.length <= 1) return Array.from(values);
  const stride = values.length / shape[0];
  const rows: unknown[] = [];
  for (let i = 0; i < shape[0]; i++) {
    rows.push(toNested(values.subarray(i * stride, (i + 1) * stride), shape.slice(1)));
  }
  return rows;
}
