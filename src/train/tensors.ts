/**
 * Named tensors in a safetensors file, of any name and a few dtypes: what the training data
 * files and the checkpoints hold (a model file is read by src/model/formats/safetensors.ts,
 * which insists on a cadenza architecture). Reading accepts F32, F64, I32, I64 and U8 (what
 * numpy and PyTorch write by default), F64 kept as float64 and I64 narrowed to int32 when every
 * value fits; writing uses F32, F64, I32 and U8. Every refusal names the file and the tensor.
 */

import { CadenzaError } from "../errors.ts";
import { setOwn } from "../own.ts";
import { describe } from "../model/spec.ts";

export type TensorData = Float32Array | Float64Array | Int32Array | Uint8Array;

export interface Tensor {
  shape: number[];
  data: TensorData;
}

export interface TensorFile {
  meta: Record<string, string>;
  tensors: Map<string, Tensor>;
}

const BYTES: Record<string, number> = { F32: 4, F64: 8, I32: 4, I64: 8, U8: 1 };
const HEADER_BYTES_MAX = 100_000_000;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function formatError(source: string, message: string): CadenzaError {
  return new CadenzaError("E_FORMAT", `${source}: ${message}`);
}

/** "[2, 3]" */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function dtypeOf(data: TensorData): string {
  if (data instanceof Float32Array) return "F32";
  if (data instanceof Float64Array) return "F64";
  if (data instanceof Int32Array) return "I32";
  return "U8";
}

/** Writes tensors (in the map's order) and string metadata as one safetensors file. */
export function writeTensorFile(file: TensorFile): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(file.meta).length > 0) header.__metadata__ = file.meta;
  let data_bytes = 0;
  const parts: Uint8Array[] = [];
  for (const [name, tensor] of file.tensors) {
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    if (elements !== tensor.data.length) {
      throw new CadenzaError(
        "E_SHAPE",
        `writeTensorFile: tensor "${name}": shape ${shapeText(tensor.shape)} needs ${elements} ` +
          `values, got ${tensor.data.length}`,
      );
    }
    const bytes = new Uint8Array(
      tensor.data.buffer,
      tensor.data.byteOffset,
      tensor.data.byteLength,
    );
    setOwn(header, name, {
      dtype: dtypeOf(tensor.data),
      shape: tensor.shape,
      data_offsets: [data_bytes, data_bytes + bytes.length],
    });
    parts.push(bytes);
    data_bytes += bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const header_bytes = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const out = new Uint8Array(8 + header_bytes + data_bytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(header_bytes), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + header_bytes);
  let offset = 8 + header_bytes;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function readHeader(bytes: Uint8Array, source: string): [Record<string, unknown>, number] {
  if (bytes.length < 8) {
    throw formatError(source, `truncated: expected at least 8 bytes, got ${bytes.length}`);
  }
  const length = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(bytes.length - 8)) {
    throw formatError(source, `header length ${length} is beyond the file (${bytes.length} bytes)`);
  }
  if (length > BigInt(HEADER_BYTES_MAX)) {
    throw new CadenzaError("E_LIMIT", `${source}: header length ${length} > ${HEADER_BYTES_MAX}`);
  }
  let header: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(8, 8 + Number(length)),
    );
    header = JSON.parse(text);
  } catch (err) {
    throw formatError(source, `bad JSON header: ${(err as Error).message}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw formatError(source, `header: expected a JSON object, got ${describe(header)}`);
  }
  return [header as Record<string, unknown>, 8 + Number(length)];
}

function readMeta(value: unknown, source: string): Record<string, string> {
  const meta: Record<string, string> = {};
  if (value === undefined) return meta;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw formatError(source, `__metadata__: expected an object, got ${describe(value)}`);
  }
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw formatError(source, `__metadata__.${key}: expected a string, got ${describe(v)}`);
    }
    setOwn(meta, key, v);
  }
  return meta;
}

function decode(
  bytes: Uint8Array,
  dtype: string,
  count: number,
  name: string,
  source: string,
): TensorData {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case "F32": {
      // Bytes copied, not values: every bit pattern survives (a checkpoint's step counter
      // words are integers held in f32 slots).
      const out = new Float32Array(count);
      if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes.subarray(0, count * 4));
      else for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    case "F64": {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    }
    case "I32": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(i * 4, true);
      return out;
    }
    case "I64": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = view.getBigInt64(i * 8, true);
        if (v < -2147483648n || v > 2147483647n) {
          throw formatError(
            source,
            `tensor "${name}": I64 value ${v} at index ${i} does not fit an int32`,
          );
        }
        out[i] = Number(v);
      }
      return out;
    }
    default:
      return bytes.slice(0, count);
  }
}

/** Reads every tensor of a safetensors file; offsets, sizes and dtypes are checked. */
export function readTensorFile(bytes: Uint8Array, source: string): TensorFile {
  const [header, data_start] = readHeader(bytes, source);
  const data_bytes = bytes.length - data_start;
  const tensors = new Map<string, Tensor>();
  const entries: [string, number, number][] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const what = `tensor "${name}"`;
    const i = info as Record<string, unknown> | null;
    if (typeof i !== "object" || i === null) {
      throw formatError(source, `${what}: expected {dtype, shape, data_offsets}`);
    }
    const dtype = i.dtype;
    if (typeof dtype !== "string" || !Object.hasOwn(BYTES, dtype)) {
      throw formatError(
        source,
        `${what}: dtype: expected one of ${Object.keys(BYTES).join(", ")}, got ${describe(dtype)}`,
      );
    }
    const shape = i.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw formatError(source, `${what}: shape: expected a list of sizes, got ${describe(shape)}`);
    }
    const count = shape.reduce((a: number, b: number) => a * b, 1);
    const offsets = i.data_offsets;
    const [begin, end] = Array.isArray(offsets) ? offsets : [];
    if (
      !Array.isArray(offsets) || offsets.length !== 2 || !Number.isSafeInteger(begin) ||
      !Number.isSafeInteger(end) || begin < 0 || end < begin || end > data_bytes
    ) {
      throw formatError(
        source,
        `${what}: data_offsets: expected [begin, end] within the ${data_bytes} data bytes, ` +
          `got ${describe(offsets)}`,
      );
    }
    if (end - begin !== count * BYTES[dtype]) {
      throw formatError(
        source,
        `${what}: data_offsets: expected ${count * BYTES[dtype]} bytes for ${dtype} ` +
          `${shapeText(shape)}, got ${end - begin}`,
      );
    }
    entries.push([name, begin, end]);
    const data = decode(
      bytes.subarray(data_start + begin, data_start + end),
      dtype,
      count,
      name,
      source,
    );
    tensors.set(name, { shape: shape as number[], data });
  }
  entries.sort((a, b) => a[1] - b[1]);
  let position = 0;
  for (const [name, begin, end] of entries) {
    if (begin !== position) {
      throw formatError(
        source,
        `tensor "${name}": data_offsets: expected begin ${position} (tensors must tile the ` +
          `data area), got ${begin}`,
      );
    }
    position = end;
  }
  if (position !== data_bytes) {
    throw formatError(
      source,
      `data: expected ${position} bytes after the header, got ${data_bytes}`,
    );
  }
  return { meta: readMeta(header.__metadata__, source), tensors };
}
