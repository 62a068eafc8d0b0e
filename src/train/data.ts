/**
 * Training data files (docs/TRAINING.md): a safetensors file holding `inputs` [N][T][F],
 * `targets` (class ids [N][T], or values [N][T][C]), optional `lengths` [N] and `split` [N].
 * This file reads and writes them, checks them against a model (every error names the file,
 * the tensor, the shape expected and the shape found), splits off the held-out part and cuts
 * seeded, shuffled batches into buffers that are reused from batch to batch.
 */

import { CadenzaError } from "../errors.ts";
import { readFile } from "../native/io.ts";
import { TrainRng } from "./rng.ts";
import { readTensorFile, shapeText, type Tensor, writeTensorFile } from "./tensors.ts";

export const DATA_FORMAT = "cadenza-data";
export const DATA_VERSION = "1";

/** Class id that marks a step with no target (it adds nothing to the loss or the metrics). */
export const IGNORE_CLASS = -1;

export type LossName = "xent" | "bce" | "mse" | "kl";
export const LOSSES: readonly LossName[] = ["xent", "bce", "mse", "kl"];

export interface TrainingData {
  /** The file, or a name for data built in code; errors name it. */
  source: string;
  /** N sequences of T steps of F input values. */
  count: number;
  steps: number;
  inputSize: number;
  /** N * T * F values, row-major. */
  inputs: Float32Array;
  /** "classes": one class id per step (IGNORE_CLASS for none); "values": targetSize per step. */
  targetKind: "classes" | "values";
  /** N * T class ids, or N * T * targetSize values. */
  targets: Int32Array | Float32Array;
  /** Values per step for "values"; for "classes", one more than the largest class id. */
  targetSize: number;
  /** Steps used of each sequence, 1..T; the rest is padding. */
  lengths: Int32Array;
  /** Per sequence: 0 training, 1 held out; null when the file has no split. */
  split: Uint8Array | null;
  /** The file's metadata (task, loss, provenance...). */
  meta: Record<string, string>;
}

/** What a model needs of the data: its widths (and its name for messages). */
export interface DataShapeOf {
  inputSize: number;
  outputSize: number;
  source: string;
}

function shapeError(source: string, message: string): CadenzaError {
  return new CadenzaError("E_SHAPE", `${source}: ${message}`);
}

function need(file: Map<string, Tensor>, name: string, source: string): Tensor {
  const tensor = file.get(name);
  if (tensor === undefined) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: expected a tensor "${name}" (docs/TRAINING.md), got only ` +
        `${[...file.keys()].map((k) => `"${k}"`).join(", ") || "none"}`,
    );
  }
  return tensor;
}

function asFloat32(tensor: Tensor, name: string, source: string): Float32Array {
  const d = tensor.data;
  if (d instanceof Float32Array) return d;
  if (d instanceof Float64Array) return Float32Array.from(d);
  throw new CadenzaError(
    "E_FORMAT",
    `${source}: tensor "${name}": expected F32 or F64 values, got integers`,
  );
}

function checkFinite(values: Float32Array, name: string, source: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new CadenzaError(
        "E_FORMAT",
        `${source}: tensor "${name}": value ${values[i]} at index ${i}: expected finite values`,
      );
    }
  }
}

function readTargets(
  tensor: Tensor,
  count: number,
  steps: number,
  source: string,
): Pick<TrainingData, "targetKind" | "targets" | "targetSize"> {
  const { shape, data } = tensor;
  const want_ids = steps === 1 ? "[N] or [N, 1]" : "[N, T]";
  if (data instanceof Float32Array || data instanceof Float64Array) {
    const flat = shape.length === 2 && steps === 1;
    if ((shape.length !== 3 && !flat) || shape[0] !== count || (!flat && shape[1] !== steps)) {
      throw shapeError(
        source,
        `tensor "targets": expected class ids ${want_ids} or values ` +
          `${steps === 1 ? "[N, C] or " : ""}[N, T, C] with N = ${count}, T = ${steps} ` +
          `(as "inputs"), got ${shapeText(shape)}`,
      );
    }
    const values = asFloat32(tensor, "targets", source);
    checkFinite(values, "targets", source);
    return { targetKind: "values", targets: values, targetSize: shape[shape.length - 1] };
  }
  const ok = shape[0] === count &&
    ((shape.length === 2 && shape[1] === steps) || (shape.length === 1 && steps === 1));
  if (!ok) {
    throw shapeError(
      source,
      `tensor "targets": expected class ids ${want_ids} with N = ${count}, T = ${steps} ` +
        `(as "inputs"), got ${shapeText(shape)}`,
    );
  }
  const ids = Int32Array.from(data);
  let largest = -1;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < IGNORE_CLASS) {
      throw new CadenzaError(
        "E_FORMAT",
        `${source}: tensor "targets": class id ${ids[i]} at index ${i}: expected 0.. or ` +
          `${IGNORE_CLASS} (no target)`,
      );
    }
    if (ids[i] > largest) largest = ids[i];
  }
  return { targetKind: "classes", targets: ids, targetSize: largest + 1 };
}

function readLengths(tensor: Tensor | undefined, count: number, steps: number, source: string) {
  if (tensor === undefined) return new Int32Array(count).fill(steps);
  if (
    tensor.shape.length !== 1 || tensor.shape[0] !== count || tensor.data instanceof Float32Array ||
    tensor.data instanceof Float64Array
  ) {
    throw shapeError(
      source,
      `tensor "lengths": expected integers [${count}] (one per sequence), got ` +
        `${
          tensor.data instanceof Float32Array || tensor.data instanceof Float64Array
            ? "floats "
            : ""
        }${shapeText(tensor.shape)}`,
    );
  }
  const lengths = Int32Array.from(tensor.data);
  lengths.forEach((length, i) => {
    if (length < 1 || length > steps) {
      throw new CadenzaError(
        "E_FORMAT",
        `${source}: tensor "lengths": sequence ${i} has length ${length}, expected 1..${steps}`,
      );
    }
  });
  return lengths;
}

function readSplit(tensor: Tensor | undefined, count: number, source: string): Uint8Array | null {
  if (tensor === undefined) return null;
  const d = tensor.data;
  if (
    tensor.shape.length !== 1 || tensor.shape[0] !== count || d instanceof Float32Array ||
    d instanceof Float64Array
  ) {
    throw shapeError(
      source,
      `tensor "split": expected integers [${count}] (0 train, 1 held out), got ` +
        shapeText(tensor.shape),
    );
  }
  const split = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    if (d[i] !== 0 && d[i] !== 1) {
      throw new CadenzaError(
        "E_FORMAT",
        `${source}: tensor "split": value ${d[i]} at sequence ${i}: expected 0 (train) or 1 ` +
          "(held out)",
      );
    }
    split[i] = d[i];
  }
  return split;
}

/** Parses a training data file's bytes (docs/TRAINING.md). */
export function parseTrainingData(bytes: Uint8Array, source: string): TrainingData {
  const { meta, tensors } = readTensorFile(bytes, source);
  if (meta.format !== undefined && meta.format !== DATA_FORMAT) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: __metadata__.format: expected "${DATA_FORMAT}" (a training data file), got ` +
        `"${meta.format}"`,
    );
  }
  const known = new Set(["inputs", "targets", "lengths", "split"]);
  for (const name of tensors.keys()) {
    if (!known.has(name)) {
      throw new CadenzaError(
        "E_FORMAT",
        `${source}: tensor "${name}": expected only inputs, targets, lengths and split`,
      );
    }
  }
  const inputs_tensor = need(tensors, "inputs", source);
  const shape = inputs_tensor.shape;
  if ((shape.length !== 2 && shape.length !== 3) || shape[0] < 1 || shape.some((d) => d < 1)) {
    throw shapeError(
      source,
      `tensor "inputs": expected [N, T, F] (sequences) or [N, F] (single steps), at least 1 ` +
        `each, got ${shapeText(shape)}`,
    );
  }
  const count = shape[0];
  const steps = shape.length === 3 ? shape[1] : 1;
  const inputSize = shape[shape.length - 1];
  const inputs = asFloat32(inputs_tensor, "inputs", source);
  checkFinite(inputs, "inputs", source);
  const targets = readTargets(need(tensors, "targets", source), count, steps, source);
  const lengths = readLengths(tensors.get("lengths"), count, steps, source);
  const split = readSplit(tensors.get("split"), count, source);
  if (meta.loss !== undefined && !(LOSSES as readonly string[]).includes(meta.loss)) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: __metadata__.loss: expected one of ${LOSSES.join(", ")}, got "${meta.loss}"`,
    );
  }
  return { source, count, steps, inputSize, inputs, ...targets, lengths, split, meta };
}

/** Reads a training data file; errors name the file. */
export async function readTrainingData(path: string): Promise<TrainingData> {
  return parseTrainingData(await readFile(path), path);
}

/** The bytes of a training data file holding `data` (always 3-D inputs). */
export function writeTrainingData(data: TrainingData): Uint8Array {
  const { count: n, steps: t } = data;
  const tensors = new Map<string, Tensor>();
  tensors.set("inputs", { shape: [n, t, data.inputSize], data: data.inputs });
  tensors.set("targets", {
    shape: data.targetKind === "classes" ? [n, t] : [n, t, data.targetSize],
    data: data.targets,
  });
  tensors.set("lengths", { shape: [n], data: data.lengths });
  if (data.split !== null) tensors.set("split", { shape: [n], data: data.split });
  return writeTensorFile({
    meta: { ...data.meta, format: DATA_FORMAT, version: DATA_VERSION },
    tensors,
  });
}

/**
 * Checks that `data` fits a model trained with `loss`: inputs of the model's input width,
 * class ids below its output width (xent), or one target value per output (bce, mse, kl).
 */
export function checkDataForModel(data: TrainingData, model: DataShapeOf, loss: LossName): void {
  const src = data.source;
  const tShape = data.steps === 1 ? "[N, F] or [N, 1, F]" : "[N, T, F]";
  if (data.inputSize !== model.inputSize) {
    throw shapeError(
      src,
      `tensor "inputs": expected ${tShape.replaceAll("F", String(model.inputSize))} (the input ` +
        `width of ${model.source}), got [${data.count}, ${data.steps}, ${data.inputSize}]`,
    );
  }
  if (data.targetKind === "classes") {
    if (loss !== "xent") {
      throw shapeError(
        src,
        `tensor "targets": loss ${loss} needs values [N, T, ${model.outputSize}], got class ids ` +
          `[${data.count}, ${data.steps}] (class ids go with loss xent)`,
      );
    }
    if (data.targetSize > model.outputSize) {
      throw shapeError(
        src,
        `tensor "targets": class id ${data.targetSize - 1} is beyond the ${model.outputSize} ` +
          `outputs of ${model.source} (expected ids 0..${model.outputSize - 1})`,
      );
    }
    return;
  }
  if (data.targetSize !== model.outputSize) {
    throw shapeError(
      src,
      `tensor "targets": expected [${data.count}, ${data.steps}, ${model.outputSize}] (the ` +
        `output width of ${model.source}), got [${data.count}, ${data.steps}, ${data.targetSize}]`,
    );
  }
}

/** The sequences at `indices`, as a data set of their own. */
export function subset(
  data: TrainingData,
  indices: ArrayLike<number>,
  source: string,
): TrainingData {
  const n = indices.length;
  const inRow = data.steps * data.inputSize;
  const tRow = data.targetKind === "classes" ? data.steps : data.steps * data.targetSize;
  const inputs = new Float32Array(n * inRow);
  const targets = data.targetKind === "classes"
    ? new Int32Array(n * tRow)
    : new Float32Array(n * tRow);
  const lengths = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    const i = indices[r];
    inputs.set(data.inputs.subarray(i * inRow, (i + 1) * inRow), r * inRow);
    targets.set(data.targets.subarray(i * tRow, (i + 1) * tRow), r * tRow);
    lengths[r] = data.lengths[i];
  }
  return { ...data, source, count: n, inputs, targets, lengths, split: null };
}

/**
 * Training and held-out parts: by the file's `split` when it has one, else a seeded random
 * `fraction` of the sequences (at least one) is held out.
 */
export function splitData(
  data: TrainingData,
  fraction: number,
  seed: number,
): { train: TrainingData; heldOut: TrainingData } {
  let held: number[];
  if (data.split !== null) {
    held = [];
    data.split.forEach((s, i) => s === 1 && held.push(i));
  } else {
    const order = new TrainRng(seed ^ 0x5eed).shuffle(
      Array.from({ length: data.count }, (_, i) => i),
    );
    held = order.slice(0, Math.max(1, Math.round(data.count * fraction))).sort((a, b) => a - b);
  }
  const isHeld = new Uint8Array(data.count);
  for (const i of held) isHeld[i] = 1;
  const train: number[] = [];
  isHeld.forEach((h, i) => h === 0 && train.push(i));
  if (train.length === 0 || held.length === 0) {
    throw new CadenzaError(
      "E_FORMAT",
      `${data.source}: expected both training and held-out sequences, got ${train.length} and ` +
        `${held.length} of ${data.count}`,
    );
  }
  return {
    train: subset(data, train, data.source),
    heldOut: subset(data, held, `${data.source} (held out)`),
  };
}

/** One batch: buffers reused by the next batch of the same Batcher. */
export interface Batch {
  /** batch * seqLen * inputSize values; steps past a sequence's length are zero. */
  inputs: Float32Array;
  /** batch * seqLen ids (IGNORE_CLASS past the length) or batch * seqLen * targetSize values. */
  targets: Int32Array | Float32Array;
  /** Steps used per row, 0 for a padding row (only in the last batch of an epoch with pad). */
  lengths: Int32Array;
  /** Rows holding data (batch, except in a padded last batch). */
  rows: number;
}

export interface BatcherOptions {
  batch: number;
  seqLen: number;
  /** Shuffles each epoch in an order fixed by (seed, epoch); absent: file order. */
  seed?: number;
  /** "drop" (default) skips a last partial batch; "pad" fills it with rows of length 0. */
  partial?: "drop" | "pad";
}

/** A per-epoch order that depends only on (seed, epoch), so a resumed run sees the same one. */
export function epochOrder(count: number, seed: number | undefined, epoch: number): Int32Array {
  const order = Int32Array.from({ length: count }, (_, i) => i);
  if (seed === undefined) return order;
  return new TrainRng((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b)) >>> 0)
    .shuffle(order);
}

/** Cuts TrainingData into batches of seqLen steps (sequences shorter than seqLen are padded). */
export class Batcher {
  readonly data: TrainingData;
  readonly batch: number;
  readonly seqLen: number;
  readonly seed: number | undefined;
  readonly partial: "drop" | "pad";
  readonly current: Batch;

  constructor(data: TrainingData, options: BatcherOptions) {
    const { batch, seqLen } = options;
    if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(seqLen) || seqLen < 1) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `Batcher: batch and seqLen: expected positive integers, got ${batch} and ${seqLen}`,
      );
    }
    if (data.steps > seqLen) {
      throw shapeError(
        data.source,
        `tensor "inputs": sequences of ${data.steps} steps do not fit seqLen ${seqLen} ` +
          `(expected T <= ${seqLen}; train with seqLen ${data.steps} or cut the sequences)`,
      );
    }
    this.data = data;
    this.batch = batch;
    this.seqLen = seqLen;
    this.seed = options.seed;
    this.partial = options.partial ?? "drop";
    const perStep = data.targetKind === "classes" ? 1 : data.targetSize;
    this.current = {
      inputs: new Float32Array(batch * seqLen * data.inputSize),
      targets: data.targetKind === "classes"
        ? new Int32Array(batch * seqLen)
        : new Float32Array(batch * seqLen * perStep),
      lengths: new Int32Array(batch),
      rows: 0,
    };
  }

  /** Batches per epoch. */
  get batches(): number {
    const full = Math.floor(this.data.count / this.batch);
    return this.partial === "pad" && this.data.count % this.batch !== 0 ? full + 1 : full;
  }

  /**
   * The batches of `epoch` (0-based) from batch `from` on; each yield overwrites the buffers
   * of `current`.
   */
  *epoch(epoch: number, from = 0): Generator<Batch> {
    const order = epochOrder(this.data.count, this.seed, epoch);
    for (let b = from; b < this.batches; b++) {
      yield this.fill(order, b * this.batch);
    }
  }

  private fill(order: Int32Array, start: number): Batch {
    const d = this.data;
    const c = this.current;
    const perStep = d.targetKind === "classes" ? 1 : d.targetSize;
    const rowIn = this.seqLen * d.inputSize;
    const rowT = this.seqLen * perStep;
    c.inputs.fill(0);
    if (c.targets instanceof Int32Array) c.targets.fill(IGNORE_CLASS);
    else c.targets.fill(0);
    c.lengths.fill(0);
    c.rows = Math.min(this.batch, d.count - start);
    for (let r = 0; r < c.rows; r++) {
      const i = order[start + r];
      const len = d.lengths[i];
      c.lengths[r] = len;
      c.inputs.set(
        d.inputs.subarray(i * d.steps * d.inputSize, (i * d.steps + len) * d.inputSize),
        r * rowIn,
      );
      c.targets.set(
        d.targets.subarray(i * d.steps * perStep, (i * d.steps + len) * perStep),
        r * rowT,
      );
    }
    return c;
  }
}
