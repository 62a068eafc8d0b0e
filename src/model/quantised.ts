/**
 * Models whose weight matrices are stored as int8 (docs/DESIGN.md, "Precision" and "int8
 * files"): the library's own scheme, one f32 scale per held row (scale = max|w| / 127,
 * q = round_half_even(w / scale) in [-127, 127]), kept as int8 values and scales from the file
 * to the model image. The native library builds the model from them directly (image weight_type
 * 3), and what it holds is exactly the file's q and scales: the loader accepts only scales that
 * the library's own quantiser gives back when it quantises q * scale (checked per row).
 */

import { CadenzaError } from "../errors.ts";
import {
  heldRows,
  IMAGE_HEADER_WORDS,
  IMAGE_MAGIC,
  IMAGE_RECORD_WORDS,
  IMAGE_VERSION,
  layerRecord,
  MATRIX_TENSORS,
  roundHalfEven,
  writeRecord,
} from "./image.ts";
import {
  DEFAULT_MAX_BATCH,
  type LayerArch,
  type LayerSpec,
  type ModelSpec,
  TENSOR_NAMES,
  tensorShapes,
  validateSpec,
} from "./spec.ts";

/** The `__metadata__.quantization` value of an int8 file: the scheme its tensors follow. */
export const INT8_SCHEME = "int8-per-row-absmax";

/** Image word 15 for matrices carried quantised (zig/image.zig, weight_type_int8_stored). */
const WEIGHT_TYPE_INT8_STORED = 4;

/** One weight matrix as int8: row-major values and one scale per stored row. */
export interface Int8Tensor {
  q: Int8Array;
  scales: Float32Array;
}

/** A layer whose matrices (MATRIX_TENSORS) are int8; its other tensors stay f32. */
export interface Int8LayerSpec extends LayerArch {
  /** The f32 tensors: biases, norms (no matrix). */
  tensors: Record<string, Float32Array>;
  /** The matrix tensors, int8. */
  int8: Record<string, Int8Tensor>;
}

export interface Int8ModelSpec {
  inputSize: number;
  layers: Int8LayerSpec[];
  maxBatch?: number;
  meta?: Record<string, string>;
}

/** Below this (the smallest normal f32) a row's largest magnitude gives scale 0. */
const MIN_NORMAL_F32 = 2 ** -126;

/**
 * Rows of matrix `name` as stored, one scale each: the rows the library quantises separately.
 * LSTM holds Wx and Wh fused, so row r of both shares one scale (stored with each tensor).
 */
export function storedRows(layer: LayerArch, name: string): number {
  return tensorShapes(layer)[name][0];
}

/** The matrices of `layer`: names in image order. */
function matrixNames(layer: LayerArch): string[] {
  const matrices = MATRIX_TENSORS[layer.kind];
  return TENSOR_NAMES(layer.kind, layer).filter((name) => matrices.includes(name));
}

/**
 * `spec` quantised as the library quantises at load (image.ts `specAsHeld` dequantises the same
 * values): an int8 model of the file computes exactly what `loadModel(f32 file, { precision:
 * "int8" })` computes.
 *
 * @example
 * const int8 = quantiseSpec((await loadSpec("models/HarmonyPredictor.safetensors")).spec);
 */
export function quantiseSpec(spec: ModelSpec): Int8ModelSpec {
  validateSpec(spec, "quantiseSpec");
  const layers = spec.layers.map((layer): Int8LayerSpec => {
    const { tensors: all, ...arch } = layer;
    const names = matrixNames(layer);
    const tensors: Record<string, Float32Array> = {};
    for (const [name, values] of Object.entries(all)) {
      if (!names.includes(name)) tensors[name] = new Float32Array(values);
    }
    const int8: Record<string, Int8Tensor> = {};
    for (const name of names) {
      int8[name] = {
        q: new Int8Array(all[name].length),
        scales: new Float32Array(storedRows(layer, name)),
      };
    }
    heldRows(layer).forEach((row) => {
      let max = 0;
      for (const p of row) {
        const t = all[p.tensor];
        for (let i = p.offset; i < p.offset + p.len; i++) max = Math.max(max, Math.abs(t[i]));
      }
      const scale = max < MIN_NORMAL_F32 ? 0 : Math.fround(max / 127);
      for (const p of row) {
        const t = all[p.tensor];
        const held = int8[p.tensor];
        held.scales[p.offset / p.len] = scale;
        for (let i = p.offset; i < p.offset + p.len; i++) {
          const q = scale === 0 ? 0 : roundHalfEven(Math.fround(t[i] / scale));
          held.q[i] = Math.min(127, Math.max(-127, q));
        }
      }
    });
    return { ...arch, tensors, int8 };
  });
  const out: Int8ModelSpec = {
    inputSize: spec.inputSize,
    layers,
    maxBatch: spec.maxBatch ?? DEFAULT_MAX_BATCH,
  };
  if (spec.meta !== undefined) out.meta = { ...spec.meta };
  return out;
}

/**
 * The f32 values an int8 spec stands for (q * scale of its row, in f32): a float copy of the
 * whole model, made only when asked for (training from an int8 file, `dequantise: true`).
 */
export function dequantiseSpec(spec: Int8ModelSpec): ModelSpec {
  const layers = spec.layers.map((layer): LayerSpec => {
    const { tensors: kept, int8, ...arch } = layer;
    const tensors: Record<string, Float32Array> = {};
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const held = int8[name];
      if (held === undefined) {
        tensors[name] = new Float32Array(kept[name]);
        continue;
      }
      const cols = held.q.length / held.scales.length;
      const values = new Float32Array(held.q.length);
      for (let i = 0; i < values.length; i++) {
        values[i] = Math.fround(held.q[i] * held.scales[Math.floor(i / cols)]);
      }
      tensors[name] = values;
    }
    return { ...arch, tensors };
  });
  const out: ModelSpec = { inputSize: spec.inputSize, layers, maxBatch: spec.maxBatch };
  if (spec.meta !== undefined) out.meta = { ...spec.meta };
  return out;
}

function formatError(source: string, message: string): CadenzaError {
  return new CadenzaError("E_FORMAT", `${source}: ${message}`);
}

/**
 * Checks the int8 part of a spec whose architecture is already valid: every matrix present as
 * int8 with its shape's length, values in -127..127, one finite scale >= 0 per stored row, and
 * each held row as the library's quantiser would give it back (a row of scale 0 is all 0; else
 * its largest |q| is 127 and max / 127 of its dequantised largest value is its scale; LSTM's
 * Wx and Wh rows agree on the scale). Then the f32 tensors through validateSpec.
 */
export function validateInt8Spec(spec: Int8ModelSpec, source: string): void {
  spec.layers.forEach((layer, index) => {
    const where = `layer ${index} (${layer.kind})`;
    const shapes = tensorShapes(layer);
    for (const name of matrixNames(layer)) {
      const held = layer.int8?.[name];
      const length = shapes[name].reduce((a, b) => a * b, 1);
      if (held === undefined || !(held.q instanceof Int8Array) || held.q.length !== length) {
        throw formatError(source, `${where}: ${name}: expected ${length} int8 values`);
      }
      const rows = storedRows(layer, name);
      if (!(held.scales instanceof Float32Array) || held.scales.length !== rows) {
        throw formatError(source, `${where}: ${name}.scale: expected ${rows} f32 scales`);
      }
      const bad = held.q.indexOf(-128);
      if (bad >= 0) {
        throw formatError(source, `${where}: ${name}[${bad}] is -128, expected -127..127`);
      }
    }
    heldRows(layer).forEach((row) => {
      const first = layer.int8[row[0].tensor];
      const r = row[0].offset / row[0].len;
      const scale = first.scales[r];
      let max = 0;
      for (const p of row) {
        const held = layer.int8[p.tensor];
        if (held.scales[r] !== scale && !(Number.isNaN(scale))) {
          throw formatError(
            source,
            `${where}: ${p.tensor}.scale[${r}] is ${held.scales[r]}, expected ${scale} (the ` +
              `scale of row ${r} of ${row[0].tensor}: the library quantises them as one row)`,
          );
        }
        for (let i = p.offset; i < p.offset + p.len; i++) max = Math.max(max, Math.abs(held.q[i]));
      }
      const at = `${where}: ${row[0].tensor} row ${r}`;
      if (!Number.isFinite(scale) || scale < 0) {
        throw formatError(source, `${at}: scale is ${scale}, expected a finite value >= 0`);
      }
      if (scale === 0 && max !== 0) {
        throw formatError(source, `${at}: scale is 0 but its largest |q| is ${max}, expected 0`);
      }
      if (scale !== 0) {
        const regained = Math.fround(Math.fround(127 * scale) / 127);
        if (max !== 127 || regained !== scale || Math.fround(127 * scale) < MIN_NORMAL_F32) {
          throw formatError(
            source,
            `${at}: largest |q| ${max} with scale ${scale} is not the library's int8 scheme ` +
              `(${INT8_SCHEME}: scale = max|w| / 127, so the largest |q| is 127 and ` +
              "max / 127 gives the scale back): quantise the f32 model with cadenza",
          );
        }
      }
    });
  });
  validateSpec(dequantiseShapes(spec), source);
}

/** A spec with the int8 tensors' places filled by zeros of their length, to validate the rest. */
function dequantiseShapes(spec: Int8ModelSpec): ModelSpec {
  const layers = spec.layers.map((layer): LayerSpec => {
    const { tensors, int8, ...arch } = layer;
    const all: Record<string, Float32Array> = { ...tensors };
    for (const [name, held] of Object.entries(int8 ?? {})) {
      all[name] = new Float32Array(held.q.length);
    }
    return { ...arch, tensors: all };
  });
  return { inputSize: spec.inputSize, layers, maxBatch: spec.maxBatch };
}

/** Parameters (tensor elements) of an int8 spec. */
export function int8ParameterCount(spec: Int8ModelSpec): number {
  let count = 0;
  for (const layer of spec.layers) {
    for (const t of Object.values(layer.tensors)) count += t.length;
    for (const t of Object.values(layer.int8)) count += t.q.length;
  }
  return count;
}

/**
 * Bytes the weights take as the library holds them: matrix elements at 1, a 4-byte scale per
 * held row, everything else at 4 (the same count as image.ts weightBytes(spec, "int8")).
 */
export function int8WeightBytes(spec: Int8ModelSpec): number {
  let total = 0;
  for (const layer of spec.layers) {
    for (const t of Object.values(layer.tensors)) total += 4 * t.length;
    for (const t of Object.values(layer.int8)) total += t.q.length;
    total += 4 * heldRows(layer).length;
  }
  return total;
}

/** Image bytes of one tensor: its count word and data (int8 matrices with rows and scales). */
function tensorBytes(layer: Int8LayerSpec, name: string): number {
  const held = layer.int8[name];
  if (held === undefined) return 4 + 4 * layer.tensors[name].length;
  return 4 + Math.ceil(held.q.length / 4) * 4 + 4 + 4 * held.scales.length;
}

/**
 * Packs a validated int8 spec as a model image v1 whose matrix layers have weight_type 4: each
 * matrix tensor's count word, its int8 values padded with zero bytes to whole words, its row
 * count and one f32 scale per row (docs/DESIGN.md, "Model image v1"). No f32 copy of a matrix
 * is made; the native library packs one layer at a time from these bytes.
 */
export function packInt8Image(spec: Int8ModelSpec, source = "int8 model spec"): Uint8Array {
  validateInt8Spec(spec, source);
  let total = IMAGE_HEADER_WORDS * 4;
  for (const layer of spec.layers) {
    total += IMAGE_RECORD_WORDS * 4;
    for (const name of TENSOR_NAMES(layer.kind, layer)) total += tensorBytes(layer, name);
  }
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  const last = spec.layers[spec.layers.length - 1];
  const header = [
    IMAGE_MAGIC,
    IMAGE_VERSION,
    IMAGE_HEADER_WORDS,
    spec.layers.length,
    spec.inputSize,
    last.outputSize,
    spec.maxBatch ?? DEFAULT_MAX_BATCH,
    total,
  ];
  header.forEach((word, i) => view.setUint32(i * 4, word, true));
  let offset = IMAGE_HEADER_WORDS * 4;
  for (const layer of spec.layers) {
    const names = TENSOR_NAMES(layer.kind, layer);
    const { record, f } = layerRecord(layer as unknown as LayerSpec, WEIGHT_TYPE_INT8_STORED);
    offset = writeRecord(view, offset, record, f);
    for (const name of names) {
      const held = layer.int8[name];
      if (held === undefined) {
        const values = layer.tensors[name];
        view.setUint32(offset, values.length, true);
        for (let i = 0; i < values.length; i++) {
          view.setFloat32(offset + 4 + 4 * i, values[i], true);
        }
        offset += 4 + 4 * values.length;
        continue;
      }
      view.setUint32(offset, held.q.length, true);
      offset += 4;
      bytes.set(new Uint8Array(held.q.buffer, held.q.byteOffset, held.q.length), offset);
      offset += Math.ceil(held.q.length / 4) * 4;
      view.setUint32(offset, held.scales.length, true);
      offset += 4;
      for (let r = 0; r < held.scales.length; r++) {
        view.setFloat32(offset + 4 * r, held.scales[r], true);
      }
      offset += 4 * held.scales.length;
    }
  }
  if (offset !== total) throw new Error(`packInt8Image: wrote ${offset} of ${total} bytes`);
  return bytes;
}
