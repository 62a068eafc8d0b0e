/**
 * The native model file: safetensors (u64 LE header length, JSON header, little-endian row-major
 * data) with the architecture as JSON in `__metadata__`. Tensors are F32 and named
 * `layers.<i>.<tensorName>`. The writer is deterministic (fixed key order, data in layer and
 * tensor order, header padded with spaces to 8 bytes) so that a read/write round trip is
 * byte-exact.
 */

import { CadenzaError } from "../../errors.ts";
import { setOwn } from "../../own.ts";
import {
  archOf,
  DEFAULT_MAX_BATCH,
  describe,
  type LayerArch,
  type LayerSpec,
  LIMITS,
  type ModelSpec,
  TENSOR_NAMES,
  tensorShapes,
  validateLayerArch,
  validateSpec,
} from "../spec.ts";
import { formatShape } from "./nested.ts";
import { MATRIX_TENSORS } from "../image.ts";
import {
  INT8_SCHEME,
  type Int8LayerSpec,
  type Int8ModelSpec,
  type Int8Tensor,
  storedRows,
  validateInt8Spec,
} from "../quantised.ts";

export const SAFETENSORS_FORMAT = "cadenza";
export const SAFETENSORS_VERSION = "1";

/** Metadata keys the format owns; spec.meta may not use them. */
const RESERVED_META = ["format", "cadenza_version", "architecture", "quantization"];

/** The safetensors reference implementation refuses headers above 100 MB; so do we. */
const HEADER_BYTES_MAX = 100_000_000;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function tensorKey(layer_index: number, name: string): string {
  return `layers.${layer_index}.${name}`;
}

function formatError(source: string, message: string): CadenzaError {
  return new CadenzaError("E_FORMAT", `${source}: ${message}`);
}

// ---------------------------------------------------------------------------------------------
// Writing.

/** The shape written for a tensor: its arch shape, or [1] for a shared prelu slope. */
function writtenShape(layer: LayerSpec, name: string, shapes: Record<string, number[]>): number[] {
  const shape = shapes[name];
  const len = shape.reduce((a, b) => a * b, 1);
  return layer.tensors[name].length === len ? shape : [layer.tensors[name].length];
}

function metadataOf(spec: ModelSpec | Int8ModelSpec): Record<string, string> {
  const architecture = JSON.stringify({
    inputSize: spec.inputSize,
    maxBatch: spec.maxBatch ?? DEFAULT_MAX_BATCH,
    layers: spec.layers.map(archOf),
  });
  const meta: Record<string, string> = {
    format: SAFETENSORS_FORMAT,
    cadenza_version: SAFETENSORS_VERSION,
    architecture,
  };
  for (const [key, value] of Object.entries(spec.meta ?? {})) {
    if (RESERVED_META.includes(key)) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `writeSafetensors: meta.${key}: expected a key other than ${RESERVED_META.join(", ")}, ` +
          `got ${describe(key)}`,
      );
    }
    setOwn(meta, key, value);
  }
  return meta;
}

/**
 * Validates `spec` and writes it as a safetensors file.
 *
 * @example
 * await Bun.write("melody.safetensors", writeSafetensors(spec));
 */
export function writeSafetensors(spec: ModelSpec): Uint8Array {
  validateSpec(spec, "writeSafetensors");
  const header: Record<string, unknown> = { __metadata__: metadataOf(spec) };
  const tensors: Float32Array[] = [];
  let data_bytes = 0;
  spec.layers.forEach((layer, i) => {
    const shapes = tensorShapes(layer);
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const values = layer.tensors[name];
      const end = data_bytes + values.length * 4;
      header[tensorKey(i, name)] = {
        dtype: "F32",
        shape: writtenShape(layer, name, shapes),
        data_offsets: [data_bytes, end],
      };
      tensors.push(values);
      data_bytes = end;
    }
  });
  const json = new TextEncoder().encode(JSON.stringify(header));
  const header_bytes = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const out = new Uint8Array(8 + header_bytes + data_bytes);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(header_bytes), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + header_bytes);
  let offset = 8 + header_bytes;
  for (const values of tensors) {
    writeF32(view, offset, values);
    offset += values.length * 4;
  }
  return out;
}

function writeF32(view: DataView, offset: number, values: Float32Array): void {
  if (LITTLE_ENDIAN) {
    new Uint8Array(view.buffer, offset, values.length * 4).set(
      new Uint8Array(values.buffer, values.byteOffset, values.length * 4),
    );
  } else {
    for (let i = 0; i < values.length; i++) view.setFloat32(offset + i * 4, values[i], true);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading.

interface Entry {
  key: string;
  dtype: "F32" | "I8";
  shape: number[];
  begin: number;
  end: number;
}

function readHeader(bytes: Uint8Array, source: string): Record<string, unknown> {
  if (!(bytes instanceof Uint8Array)) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `${source}: expected a Uint8Array, got ${describe(bytes)}`,
    );
  }
  if (bytes.length < 8) {
    throw formatError(source, `truncated header: expected at least 8 bytes, got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header_len = view.getBigUint64(0, true);
  if (header_len > BigInt(bytes.length - 8)) {
    throw formatError(
      source,
      `header length ${header_len} is beyond the file (${bytes.length - 8} bytes after the length)`,
    );
  }
  if (header_len > BigInt(HEADER_BYTES_MAX)) {
    throw new CadenzaError(
      "E_LIMIT",
      `${source}: header length ${header_len} is above ${HEADER_BYTES_MAX}`,
    );
  }
  const text_bytes = bytes.subarray(8, 8 + Number(header_len));
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(text_bytes));
  } catch (err) {
    throw new CadenzaError("E_FORMAT", `${source}: bad JSON header: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw formatError(source, `header: expected a JSON object, got ${describe(header)}`);
  }
  return header as Record<string, unknown>;
}

function readMetadata(header: Record<string, unknown>, source: string): Record<string, string> {
  const meta = header.__metadata__;
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
    throw formatError(
      source,
      `__metadata__: expected an object (a cadenza model), got ${describe(meta)}`,
    );
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(meta)) {
    if (typeof value !== "string") {
      throw formatError(source, `__metadata__.${key}: expected a string, got ${describe(value)}`);
    }
    setOwn(out, key, value);
  }
  const expect = (key: string, want: string) => {
    if (out[key] !== want) {
      throw formatError(
        source,
        `__metadata__.${key}: expected "${want}", got ${describe(out[key])}`,
      );
    }
  };
  expect("format", SAFETENSORS_FORMAT);
  expect("cadenza_version", SAFETENSORS_VERSION);
  if (!Object.hasOwn(out, "architecture")) {
    throw formatError(
      source,
      "__metadata__.architecture: expected the architecture JSON, got nothing",
    );
  }
  return out;
}

interface Architecture {
  inputSize: number;
  maxBatch: number;
  layers: LayerArch[];
}

function readArchitecture(text: string, source: string): Architecture {
  let arch: unknown;
  try {
    arch = JSON.parse(text);
  } catch (err) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: __metadata__.architecture: bad JSON: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const a = arch as Partial<Architecture> | null;
  const bad = (field: string, expected: string, got: unknown): never => {
    throw formatError(source, `architecture.${field}: expected ${expected}, got ${describe(got)}`);
  };
  if (typeof a !== "object" || a === null || Array.isArray(a)) bad("", "an object", a);
  if (!Number.isInteger(a!.inputSize)) bad("inputSize", "an integer", a!.inputSize);
  if (!Number.isInteger(a!.maxBatch)) bad("maxBatch", "an integer", a!.maxBatch);
  const layers = a!.layers;
  if (!Array.isArray(layers) || layers.length < 1 || layers.length > LIMITS.layersMax) {
    bad("layers", `a list of 1..${LIMITS.layersMax} layers`, layers);
  }
  let width = a!.inputSize as number;
  layers!.forEach((layer, i) => {
    validateLayerArch(layer, i, width, source);
    width = layer.outputSize;
  });
  return a as Architecture;
}

function readEntries(header: Record<string, unknown>, data_bytes: number, source: string): Entry[] {
  const entries: Entry[] = [];
  for (const [key, info] of Object.entries(header)) {
    if (key === "__metadata__") continue;
    const what = `${source}: tensor "${key}"`;
    const i = info as Record<string, unknown> | null;
    if (typeof i !== "object" || i === null) {
      throw new CadenzaError(
        "E_FORMAT",
        `${what}: expected {dtype, shape, data_offsets}, got ${describe(i)}`,
      );
    }
    if (i.dtype !== "F32" && i.dtype !== "I8") {
      throw new CadenzaError(
        "E_FORMAT",
        `${what}: dtype: expected "F32" (or "I8" in an int8 file), got ${describe(i.dtype)}`,
      );
    }
    const element_bytes = i.dtype === "I8" ? 1 : 4;
    const shape = i.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new CadenzaError(
        "E_FORMAT",
        `${what}: shape: expected a list of sizes, got ${describe(shape)}`,
      );
    }
    const offsets = i.data_offsets;
    const [begin, end] = Array.isArray(offsets) ? offsets : [];
    const valid = Array.isArray(offsets) && offsets.length === 2 && Number.isInteger(begin) &&
      Number.isInteger(end) && 0 <= begin && begin <= end && end <= data_bytes;
    if (!valid) {
      const got = Array.isArray(offsets) ? `[${offsets.join(", ")}]` : describe(offsets);
      throw new CadenzaError(
        "E_FORMAT",
        `${what}: data_offsets: expected [begin, end] within the ${data_bytes} data bytes, ` +
          `got ${got}`,
      );
    }
    const elements = shape.reduce((x: number, y: number) => x * y, 1);
    if (end - begin !== elements * element_bytes) {
      throw new CadenzaError(
        "E_FORMAT",
        `${what}: data_offsets: expected ${elements * element_bytes} bytes for shape ` +
          `${formatShape(shape)} (${i.dtype}), got ${end - begin}`,
      );
    }
    entries.push({ key, dtype: i.dtype, shape, begin, end });
  }
  return entries;
}

/** Tensors must tile the data area exactly: no overlap, no hole, nothing after the last one. */
function checkTiling(entries: Entry[], data_bytes: number, source: string): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let position = 0;
  for (const entry of sorted) {
    if (entry.begin < position) {
      throw formatError(
        source,
        `tensor "${entry.key}": data_offsets: overlaps the previous tensor ` +
          `(expected begin >= ${position}, got ${entry.begin})`,
      );
    }
    if (entry.begin > position) {
      throw formatError(
        source,
        `tensor "${entry.key}": data_offsets: leaves a hole ` +
          `(expected begin ${position}, got ${entry.begin})`,
      );
    }
    position = entry.end;
  }
  if (position !== data_bytes) {
    throw formatError(
      source,
      `data: expected ${position} bytes after the header, got ${data_bytes}`,
    );
  }
}

function readF32(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bytes.subarray(offset, offset + count * 4));
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset + offset, count * 4);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  }
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function readLayerTensors(
  arch: LayerArch,
  index: number,
  byKey: Map<string, Entry>,
  bytes: Uint8Array,
  data_start: number,
  source: string,
): LayerSpec {
  const tensors: Record<string, Float32Array> = {};
  const shapes = tensorShapes(arch);
  for (const name of TENSOR_NAMES(arch.kind, arch)) {
    const key = tensorKey(index, name);
    const entry = byKey.get(key);
    if (entry === undefined) {
      throw formatError(
        source,
        `tensor "${key}": expected for layer ${index} (${arch.kind}), got nothing`,
      );
    }
    if (entry.dtype !== "F32") {
      throw formatError(source, `tensor "${key}": dtype: expected "F32", got "${entry.dtype}"`);
    }
    const shared_slope = arch.kind === "prelu" && sameShape(entry.shape, [1]);
    if (!sameShape(entry.shape, shapes[name]) && !shared_slope) {
      throw new CadenzaError(
        "E_SHAPE",
        `${source}: tensor "${key}": expected shape ${formatShape(shapes[name])}, ` +
          `got ${formatShape(entry.shape)}`,
      );
    }
    tensors[name] = readF32(bytes, data_start + entry.begin, (entry.end - entry.begin) / 4);
    byKey.delete(key);
  }
  return { ...arch, tensors };
}

/**
 * Reads a cadenza safetensors file into a validated spec. Refuses a truncated or oversized
 * header, bad JSON, offsets out of range, overlapping or leaving holes, dtypes other than F32,
 * tensors the architecture does not name, and files without cadenza metadata.
 *
 * @example
 * const spec = readSafetensors(await Bun.file(path).bytes(), path);
 */
export function readSafetensors(bytes: Uint8Array, source: string): ModelSpec {
  const header = readHeader(bytes, source);
  const meta = readMetadata(header, source);
  if (Object.hasOwn(meta, "quantization")) {
    throw formatError(
      source,
      `holds int8 weight matrices (__metadata__.quantization ${describe(meta.quantization)}): ` +
        "read it with readSafetensorsInt8, or load it with loadModel (int8), or ask for its f32 " +
        "values with dequantise: true",
    );
  }
  const arch = readArchitecture(meta.architecture, source);
  const data_start = 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const data_bytes = bytes.length - data_start;
  const entries = readEntries(header, data_bytes, source);
  checkTiling(entries, data_bytes, source);
  const byKey = new Map(entries.map((entry) => [entry.key, entry]));
  const layers = arch.layers.map((layer, i) =>
    readLayerTensors(layer, i, byKey, bytes, data_start, source)
  );
  refuseUnnamed(byKey, source);
  const spec: ModelSpec = { inputSize: arch.inputSize, layers, maxBatch: arch.maxBatch };
  keepExtraMeta(spec, meta);
  validateSpec(spec, source);
  return spec;
}

/** Every tensor must be one the architecture names (the readers take each as they go). */
function refuseUnnamed(byKey: Map<string, unknown>, source: string): void {
  if (byKey.size > 0) {
    const names = [...byKey.keys()].slice(0, 8).map((key) => `"${key}"`).join(", ");
    throw formatError(source, `tensors: expected only those the architecture names, got ${names}`);
  }
}

/** Metadata keys beyond the reserved ones travel with the spec as `meta`. */
function keepExtraMeta(spec: { meta?: Record<string, string> }, meta: Record<string, string>) {
  const extra = Object.entries(meta).filter(([key]) => !RESERVED_META.includes(key));
  if (extra.length > 0) spec.meta = Object.fromEntries(extra);
}

// ---------------------------------------------------------------------------------------------
// int8 files: `__metadata__.quantization` names the scheme (INT8_SCHEME); each weight matrix is
// an I8 tensor `layers.<i>.<name>` of its f32 shape plus an F32 tensor `layers.<i>.<name>.scale`
// [rows]; every other tensor is F32 as in an f32 file. F32 tensors come first in the data.

/** True when `bytes` is a cadenza safetensors file with int8 weight matrices. */
export function isInt8Safetensors(bytes: Uint8Array, source = "<bytes>"): boolean {
  const header = readHeader(bytes, source);
  const meta = header.__metadata__ as Record<string, unknown> | undefined;
  return typeof meta === "object" && meta !== null && Object.hasOwn(meta, "quantization");
}

/**
 * Writes an int8 spec (quantiseSpec) as a safetensors file: I8 matrices, F32 scales and other
 * tensors, `__metadata__.quantization` = INT8_SCHEME. Deterministic, like writeSafetensors.
 *
 * @example
 * await Bun.write("harmony.int8.safetensors", writeSafetensorsInt8(quantiseSpec(spec)));
 */
export function writeSafetensorsInt8(spec: Int8ModelSpec): Uint8Array {
  validateInt8Spec(spec, "writeSafetensorsInt8");
  const header: Record<string, unknown> = {
    __metadata__: { ...metadataOf(spec), quantization: INT8_SCHEME },
  };
  const f32: [string, number[], Float32Array][] = [];
  const i8: [string, number[], Int8Array][] = [];
  spec.layers.forEach((layer, i) => {
    const shapes = tensorShapes(layer);
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const held = layer.int8[name];
      if (held === undefined) {
        const values = layer.tensors[name];
        const shape = values.length === shapes[name].reduce((a, b) => a * b, 1)
          ? shapes[name]
          : [values.length];
        f32.push([tensorKey(i, name), shape, values]);
      } else {
        f32.push([`${tensorKey(i, name)}.scale`, [held.scales.length], held.scales]);
        i8.push([tensorKey(i, name), shapes[name], held.q]);
      }
    }
  });
  let data_bytes = 0;
  for (const [key, shape, values] of f32) {
    header[key] = {
      dtype: "F32",
      shape,
      data_offsets: [data_bytes, data_bytes + values.length * 4],
    };
    data_bytes += values.length * 4;
  }
  for (const [key, shape, values] of i8) {
    header[key] = { dtype: "I8", shape, data_offsets: [data_bytes, data_bytes + values.length] };
    data_bytes += values.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const header_bytes = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const out = new Uint8Array(8 + header_bytes + data_bytes);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(header_bytes), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + header_bytes);
  let offset = 8 + header_bytes;
  for (const [, , values] of f32) {
    writeF32(view, offset, values);
    offset += values.length * 4;
  }
  for (const [, , values] of i8) {
    out.set(new Uint8Array(values.buffer, values.byteOffset, values.length), offset);
    offset += values.length;
  }
  return out;
}

function takeEntry(
  byKey: Map<string, Entry>,
  key: string,
  dtype: "F32" | "I8",
  shape: number[],
  source: string,
  what: string,
): Entry {
  const entry = byKey.get(key);
  if (entry === undefined) {
    throw formatError(source, `tensor "${key}": expected for ${what}, got nothing`);
  }
  if (entry.dtype !== dtype) {
    throw formatError(source, `tensor "${key}": dtype: expected "${dtype}", got "${entry.dtype}"`);
  }
  if (!sameShape(entry.shape, shape)) {
    throw new CadenzaError(
      "E_SHAPE",
      `${source}: tensor "${key}": expected shape ${formatShape(shape)}, got ${
        formatShape(entry.shape)
      }`,
    );
  }
  byKey.delete(key);
  return entry;
}

/**
 * Reads a cadenza int8 safetensors file (writeSafetensorsInt8) into a validated int8 spec: the
 * int8 values and scales as stored, no f32 copy of a matrix. Refuses what readSafetensors
 * refuses, a scheme other than INT8_SCHEME, and scales the library would not give back.
 */
export function readSafetensorsInt8(bytes: Uint8Array, source: string): Int8ModelSpec {
  const header = readHeader(bytes, source);
  const meta = readMetadata(header, source);
  if (meta.quantization !== INT8_SCHEME) {
    throw formatError(
      source,
      `__metadata__.quantization: expected "${INT8_SCHEME}", got ${describe(meta.quantization)}`,
    );
  }
  const arch = readArchitecture(meta.architecture, source);
  const data_start = 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const data_bytes = bytes.length - data_start;
  const entries = readEntries(header, data_bytes, source);
  checkTiling(entries, data_bytes, source);
  const byKey = new Map(entries.map((entry) => [entry.key, entry]));
  const layers = arch.layers.map((layer, i): Int8LayerSpec => {
    const what = `layer ${i} (${layer.kind})`;
    const shapes = tensorShapes(layer);
    const tensors: Record<string, Float32Array> = {};
    const int8: Record<string, Int8Tensor> = {};
    const matrices = MATRIX_TENSORS[layer.kind];
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const key = tensorKey(i, name);
      if (!matrices.includes(name)) {
        const entry = byKey.get(key);
        const shape = layer.kind === "prelu" && entry && sameShape(entry.shape, [1])
          ? [1]
          : shapes[name];
        const e = takeEntry(byKey, key, "F32", shape, source, what);
        tensors[name] = readF32(bytes, data_start + e.begin, (e.end - e.begin) / 4);
        continue;
      }
      const q = takeEntry(byKey, key, "I8", shapes[name], source, what);
      const rows = storedRows(layer, name);
      const s = takeEntry(byKey, `${key}.scale`, "F32", [rows], source, what);
      int8[name] = {
        q: new Int8Array(bytes.slice(data_start + q.begin, data_start + q.end).buffer),
        scales: readF32(bytes, data_start + s.begin, rows),
      };
    }
    return { ...layer, tensors, int8 };
  });
  refuseUnnamed(byKey, source);
  const spec: Int8ModelSpec = { inputSize: arch.inputSize, layers, maxBatch: arch.maxBatch };
  keepExtraMeta(spec, meta);
  validateInt8Spec(spec, source);
  return spec;
}
