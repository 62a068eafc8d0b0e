/**
 * Packs a ModelSpec into the binary "model image" v1 that cz_model_create reads (docs/DESIGN.md,
 * "Model image v1"). The native parser re-checks every byte; validating here first gives the
 * caller a message that names the layer and field instead of a bare status code.
 */

import { CadenzaError } from "../errors.ts";
import {
  ACTIVATION_IDS,
  DEFAULT_MAX_BATCH,
  KIND_IDS,
  type LayerArch,
  type LayerKind,
  type LayerSpec,
  type ModelSpec,
  outputSize,
  resolveArch,
  TENSOR_NAMES,
  tensorShapes,
  validateSpec,
} from "./spec.ts";

export const IMAGE_MAGIC = 0x4D495A43;
export const IMAGE_VERSION = 1;
export const IMAGE_HEADER_WORDS = 8;
export const IMAGE_RECORD_WORDS = 16;

/** image_bytes is a u32 word in the header. */
const IMAGE_BYTES_MAX = 0xFFFF_FFFF;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * How a model holds its weight matrices (layer record word 15, weight_type): "f32"; "bf16"
 * (bfloat16, rounded to nearest even by the native library when it loads the image; half the
 * bytes); or "int8" (one f32 scale per matrix row, inputs quantised per call, integer dot
 * products; docs/DESIGN.md, "Precision"). Biases, norms and state are f32 in every case.
 */
export type Precision = "f32" | "bf16" | "int8";

export const PRECISIONS: readonly Precision[] = ["f32", "bf16", "int8"];

const WEIGHT_TYPE_IDS: Record<Precision, number> = { f32: 0, bf16: 1, int8: 2 };

/** Word 15 of a dense layer whose W is held as compressed sparse rows (p1: its nonzeros). */
export const SPARSE_WEIGHT_TYPE = 3;

const MATRIX_ELEMENT_BYTES: Record<Precision, number> = { f32: 4, bf16: 2, int8: 1 };

/**
 * Which dense layers hold W as compressed sparse rows (image word 15 = 3, zig/layers/sparse.zig):
 * "auto" (default) those whose W is sparse enough for the sparse kernel to be the faster
 * (`sparseWins`, from bench/prune.bench.ts), "never", or "always" (every dense layer: for
 * benchmarks and tests). Only at precision f32; results equal the dense kernel's up to the
 * order of the f32 additions.
 */
export type SparseChoice = "auto" | "never" | "always";

export const SPARSE_CHOICES: readonly SparseChoice[] = ["auto", "never", "always"];

/**
 * The measured rule (docs/PRUNING.md, bench/prune.bench.ts): the sparse kernel beats the dense
 * one on a W of at least SPARSE_MIN_COLS columns of which at least SPARSE_MIN_ZEROS of the
 * entries are zero. Below either, the dense SIMD kernel is faster (at 50% zeros 4-30x faster
 * on every pipeline shape; at 90% still 1.1-8x), and a pruned layer stays dense with its zeros.
 */
export const SPARSE_MIN_ZEROS = 0.95;
export const SPARSE_MIN_COLS = 256;

function zeroShare(w: Float32Array): number {
  let zeros = 0;
  for (let i = 0; i < w.length; i++) zeros += w[i] === 0 ? 1 : 0;
  return zeros / w.length;
}

/** Whether the sparse kernel is the faster for this dense layer (the rule above). */
export function sparseWins(layer: LayerSpec): boolean {
  return layer.kind === "dense" && layer.inputSize >= SPARSE_MIN_COLS &&
    zeroShare(layer.tensors.W) >= SPARSE_MIN_ZEROS;
}

/** Per layer: held as sparse rows under `choice` at `precision` (f32 only). */
export function sparseLayers(
  spec: ModelSpec,
  precision: Precision,
  choice: SparseChoice = "auto",
): boolean[] {
  return spec.layers.map((layer) =>
    precision === "f32" && layer.kind === "dense" && layer.inputSize <= 65536 &&
    (choice === "always" || (choice === "auto" && sparseWins(layer)))
  );
}

function nonzeroCount(w: Float32Array): number {
  let n = 0;
  for (let i = 0; i < w.length; i++) n += w[i] !== 0 ? 1 : 0;
  return n;
}

/** The tensors of each kind that are weight matrices, held at the model's precision. */
export const MATRIX_TENSORS: Readonly<Record<LayerKind, readonly string[]>> = {
  dense: ["W"],
  lstm: ["Wx", "Wh"],
  gru: ["Wx", "Wh"],
  conv1d: ["W"],
  batchnorm: [],
  layernorm: [],
  prelu: [],
  activation: [],
  attention: ["Wq", "Wk", "Wv", "Wo"],
  transformer: ["Wq", "Wk", "Wv", "Wo", "W1", "W2"],
  skip: [],
};

/**
 * The rows of `layer`'s weight matrices as the library holds them, each a list of row-major
 * [tensor, row length, offset] pieces: at int8 each held row has one scale. LSTM holds Wx and
 * Wh fused ([x, h] in one matrix), so its row r is row r of both; every other kind holds
 * each matrix tensor's rows as they are (conv1d: row o is W[o], all its taps).
 */
export function heldRows(layer: LayerArch): { tensor: string; offset: number; len: number }[][] {
  const rows: { tensor: string; offset: number; len: number }[][] = [];
  if (layer.kind === "lstm") {
    const n_in = layer.inputSize;
    const h = layer.outputSize;
    for (let r = 0; r < 4 * h; r++) {
      rows.push([
        { tensor: "Wx", offset: r * n_in, len: n_in },
        { tensor: "Wh", offset: r * h, len: h },
      ]);
    }
    return rows;
  }
  for (const name of MATRIX_TENSORS[layer.kind]) {
    const count = rowCount(layer, name);
    const len = tensorShapes(layer)[name].reduce((a, b) => a * b, 1) / count;
    for (let r = 0; r < count; r++) rows.push([{ tensor: name, offset: r * len, len }]);
  }
  return rows;
}

/** Rows of matrix tensor `name` (its first dimension in DESIGN.md's table). */
function rowCount(layer: LayerArch, name: string): number {
  switch (layer.kind) {
    case "gru":
      return 3 * layer.outputSize;
    case "transformer":
      return name === "W1" ? resolveArch(layer).ffDim : layer.outputSize;
    default:
      return layer.outputSize;
  }
}

/**
 * Bytes the parameters of `spec` take as a model of `precision` holds them (no padding): matrix
 * elements at 4 (f32), 2 (bf16) or 1 (int8) bytes, plus at int8 one 4-byte scale per held row;
 * a dense W held as sparse rows (`sparse[i]`) at 6 bytes per nonzero plus 4 per row and one;
 * everything else at 4.
 */
export function weightBytes(
  spec: ModelSpec,
  precision: Precision,
  sparse: readonly boolean[] = [],
): number {
  const matrix_bytes = MATRIX_ELEMENT_BYTES[precision];
  let total = 0;
  for (const [index, layer] of spec.layers.entries()) {
    const matrices = MATRIX_TENSORS[layer.kind];
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const t = layer.tensors[name];
      if (sparse[index] && name === "W") {
        // Sparse rows: 4 bytes per value, 2 per column index, 4 per row offset.
        total += 6 * nonzeroCount(t) + 4 * (layer.outputSize + 1);
        continue;
      }
      const bytes = matrices.includes(name) ? matrix_bytes : 4;
      total += t.length * bytes;
    }
    if (precision === "int8") total += 4 * heldRows(layer).length;
  }
  return total;
}

/** Below this (the smallest normal f32) a row's largest magnitude gives scale 0. */
const MIN_NORMAL_F32 = 2 ** -126;

/** Round half to even. */
export function roundHalfEven(t: number): number {
  const below = Math.floor(t);
  const frac = t - below;
  if (frac !== 0.5) return frac < 0.5 ? below : below + 1;
  return below % 2 === 0 ? below : below + 1;
}

/**
 * Each held row of `layer`'s matrices quantised as the library does at int8 and dequantised
 * (q * scale, in f32): scale = max|w| / 127, q = round_half_even(w / scale) in [-127, 127].
 */
function dequantisedInt8(layer: LayerSpec): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const name of MATRIX_TENSORS[layer.kind]) out[name] = new Float32Array(layer.tensors[name]);
  for (const row of heldRows(layer)) {
    let max = 0;
    for (const p of row) {
      const t = layer.tensors[p.tensor];
      for (let i = p.offset; i < p.offset + p.len; i++) max = Math.max(max, Math.abs(t[i]));
    }
    const scale = max < MIN_NORMAL_F32 ? 0 : Math.fround(max / 127);
    for (const p of row) {
      const t = layer.tensors[p.tensor];
      const held = out[p.tensor];
      for (let i = p.offset; i < p.offset + p.len; i++) {
        const q = scale === 0 ? 0 : roundHalfEven(Math.fround(t[i] / scale));
        held[i] = Math.fround(Math.min(127, Math.max(-127, q)) * scale);
      }
    }
  }
  return out;
}

/** f32 values rounded to the nearest bfloat16, ties to even (what a bf16 model computes with). */
export function roundToBf16(values: Float32Array): Float32Array {
  const bits = new Uint32Array(values.length);
  new Float32Array(bits.buffer).set(values);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const nan = (b & 0x7fffffff) > 0x7f800000;
    bits[i] = nan ? b : ((b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000) >>> 0;
  }
  return new Float32Array(bits.buffer);
}

/**
 * A copy of `spec` whose weight matrices hold the values a model of `precision` computes with,
 * for peers that run f32 arithmetic on the same weights: bf16-rounded, or at int8 the
 * dequantised q * scale (the peer still computes with unquantised inputs, so at int8 its
 * outputs differ from the model's by the input quantisation).
 */
export function specAsHeld(spec: ModelSpec, precision: Precision): ModelSpec {
  if (precision === "f32") return spec;
  const layers = spec.layers.map((layer) => {
    const tensors = { ...layer.tensors };
    if (precision === "int8") Object.assign(tensors, dequantisedInt8(layer));
    else for (const name of MATRIX_TENSORS[layer.kind]) tensors[name] = roundToBf16(tensors[name]);
    return { ...layer, tensors };
  });
  return { ...spec, layers };
}

/** The kind-specific words of one layer record: act, p[0..8], f[0..2]. */
export interface LayerFields {
  act: number;
  p: number[];
  f: number[];
}

/** The act, p and f words of a layer record, defaults applied (see docs/DESIGN.md). */
export function layerFields(layer: LayerSpec): LayerFields {
  const r = resolveArch(layer);
  const act = ACTIVATION_IDS[r.activation];
  switch (layer.kind) {
    case "dense":
      return { act, p: [r.bias ? 1 : 0], f: [] };
    case "conv1d":
      return { act, p: [r.kernelSize, r.dilation, r.groups], f: [] };
    case "batchnorm":
      return { act, p: [r.affine ? 1 : 0], f: [r.epsilon] };
    case "layernorm":
      return { act: 0, p: [], f: [r.epsilon] };
    case "activation":
      return { act, p: [], f: [] };
    case "attention":
      return { act: 0, p: [r.heads, r.context], f: [] };
    case "transformer":
      return { act, p: [r.heads, r.context, r.ffDim], f: [r.epsilon] };
    case "lstm":
    case "gru":
    case "prelu":
    case "skip":
      return { act: 0, p: [], f: [] };
  }
}

function imageBytes(spec: ModelSpec): number {
  let words = IMAGE_HEADER_WORDS;
  for (const layer of spec.layers) {
    words += IMAGE_RECORD_WORDS;
    for (const name of TENSOR_NAMES(layer.kind, layer)) words += 1 + layer.tensors[name].length;
  }
  return words * 4;
}

/**
 * Validates `spec` and packs it as a model image v1, the weight matrices marked to be held at
 * `precision`. Throws CadenzaError (E_FORMAT, E_SHAPE, E_LIMIT) naming `source` and the layer
 * when the spec is invalid or the image would exceed 4 GiB.
 *
 * @example
 * const image = packImage(readSafetensors(bytes, "melody.safetensors"));
 */
export function packImage(
  spec: ModelSpec,
  source = "model spec",
  precision: Precision = "f32",
  sparse: readonly boolean[] = [],
): Uint8Array {
  validateSpec(spec, source);
  const total_bytes = imageBytes(spec);
  if (total_bytes > IMAGE_BYTES_MAX) {
    throw new CadenzaError(
      "E_LIMIT",
      `${source}: image size: expected at most ${IMAGE_BYTES_MAX} bytes, got ${total_bytes}`,
    );
  }
  const buffer = new ArrayBuffer(total_bytes);
  const view = new DataView(buffer);
  const header = [
    IMAGE_MAGIC,
    IMAGE_VERSION,
    IMAGE_HEADER_WORDS,
    spec.layers.length,
    spec.inputSize,
    outputSize(spec),
    spec.maxBatch ?? DEFAULT_MAX_BATCH,
    total_bytes,
  ];
  header.forEach((word, i) => view.setUint32(i * 4, word, true));
  let offset = IMAGE_HEADER_WORDS * 4;
  spec.layers.forEach((layer, i) => {
    offset = writeLayer(view, offset, layer, precision, sparse[i] === true);
  });
  return new Uint8Array(buffer);
}

function writeLayer(
  view: DataView,
  offset: number,
  layer: LayerSpec,
  precision: Precision,
  sparse: boolean,
): number {
  const names = TENSOR_NAMES(layer.kind, layer);
  const { record, f } = layerRecord(layer, WEIGHT_TYPE_IDS[precision]);
  if (sparse) {
    if (layer.kind !== "dense" || precision !== "f32") {
      throw new CadenzaError(
        "E_ARGUMENT",
        `packImage: sparse rows are for dense layers at f32, got ${layer.kind} at ${precision}`,
      );
    }
    record[15] = SPARSE_WEIGHT_TYPE;
    record[5] = nonzeroCount(layer.tensors.W);
  }
  offset = writeRecord(view, offset, record, f);
  for (const name of names) offset = writeTensor(view, offset, layer.tensors[name]);
  return offset;
}

/**
 * A layer's 16-word record (docs/DESIGN.md, "Model image v1") and its float words: word 15 is
 * `weightType` where the kind has a weight matrix; kinds without one stay f32 (the parser
 * refuses any other weight_type on them).
 */
export function layerRecord(
  layer: LayerSpec,
  weightType: number,
): { record: number[]; f: readonly number[] } {
  const fields = layerFields(layer);
  const record = new Array<number>(IMAGE_RECORD_WORDS).fill(0);
  record[0] = KIND_IDS[layer.kind];
  record[1] = fields.act;
  record[2] = layer.inputSize;
  record[3] = layer.outputSize;
  fields.p.forEach((value, i) => (record[4 + i] = value));
  record[14] = TENSOR_NAMES(layer.kind, layer).length;
  if (MATRIX_TENSORS[layer.kind].length > 0) record[15] = weightType;
  return { record, f: fields.f };
}

/** Writes a record (words 12..13 as the f32 values `f`); returns the offset after it. */
export function writeRecord(
  view: DataView,
  offset: number,
  record: readonly number[],
  f: readonly number[],
): number {
  record.forEach((word, i) => view.setUint32(offset + i * 4, word, true));
  f.forEach((value, i) => view.setFloat32(offset + (12 + i) * 4, value, true));
  return offset + IMAGE_RECORD_WORDS * 4;
}

function writeTensor(view: DataView, offset: number, values: Float32Array): number {
  view.setUint32(offset, values.length, true);
  offset += 4;
  if (LITTLE_ENDIAN) {
    new Float32Array(view.buffer, offset, values.length).set(values);
  } else {
    for (let i = 0; i < values.length; i++) view.setFloat32(offset + i * 4, values[i], true);
  }
  return offset + values.length * 4;
}
