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
  type LayerKind,
  type LayerSpec,
  type ModelSpec,
  outputSize,
  resolveArch,
  TENSOR_NAMES,
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
 * How a model holds its weight matrices (layer record word 15, weight_type): "f32", or "bf16"
 * (bfloat16, rounded to nearest even by the native library when it loads the image; half the
 * bytes). Biases, norms and state are f32 either way.
 */
export type Precision = "f32" | "bf16";

export const PRECISIONS: readonly Precision[] = ["f32", "bf16"];

const WEIGHT_TYPE_IDS: Record<Precision, number> = { f32: 0, bf16: 1 };

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
};

/** Bytes the parameters of `spec` take as a model of `precision` holds them (no padding). */
export function weightBytes(spec: ModelSpec, precision: Precision): number {
  const matrix_bytes = precision === "bf16" ? 2 : 4;
  let total = 0;
  for (const layer of spec.layers) {
    const matrices = MATRIX_TENSORS[layer.kind];
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const bytes = matrices.includes(name) ? matrix_bytes : 4;
      total += layer.tensors[name].length * bytes;
    }
  }
  return total;
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
 * A copy of `spec` whose weight matrices hold exactly the values a model of `precision`
 * computes with (for peers that run f32 arithmetic on the same weights).
 */
export function specAsHeld(spec: ModelSpec, precision: Precision): ModelSpec {
  if (precision === "f32") return spec;
  const layers = spec.layers.map((layer) => {
    const tensors = { ...layer.tensors };
    for (const name of MATRIX_TENSORS[layer.kind]) tensors[name] = roundToBf16(tensors[name]);
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
  for (const layer of spec.layers) offset = writeLayer(view, offset, layer, precision);
  return new Uint8Array(buffer);
}

function writeLayer(
  view: DataView,
  offset: number,
  layer: LayerSpec,
  precision: Precision,
): number {
  const fields = layerFields(layer);
  const names = TENSOR_NAMES(layer.kind, layer);
  const record = new Array<number>(IMAGE_RECORD_WORDS).fill(0);
  record[0] = KIND_IDS[layer.kind];
  record[1] = fields.act;
  record[2] = layer.inputSize;
  record[3] = layer.outputSize;
  fields.p.forEach((value, i) => (record[4 + i] = value));
  record[14] = names.length;
  // Kinds without a matrix stay f32: the parser refuses weight_type 1 on them.
  if (MATRIX_TENSORS[layer.kind].length > 0) record[15] = WEIGHT_TYPE_IDS[precision];
  record.forEach((word, i) => view.setUint32(offset + i * 4, word, true));
  fields.f.forEach((value, i) => view.setFloat32(offset + (12 + i) * 4, value, true));
  offset += IMAGE_RECORD_WORDS * 4;
  for (const name of names) offset = writeTensor(view, offset, layer.tensors[name]);
  return offset;
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
