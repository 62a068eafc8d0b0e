/**
 * Checkpoints: everything a trainer needs to continue a run bit for bit, in one safetensors
 * file. Tensors: the weights as `layers.<i>.<name>` (the model file's names and shapes) and
 * `optimizer` (the ABI's state: step counter words, then the moments), and `trainable` (U8, one
 * per parameter, 1 trainable, 0 held) when some are held. `__metadata__`:
 * `format` "cadenza-checkpoint", `version` "1", `architecture` (as in a model file), `meta`
 * (the model's own metadata, JSON), `config` (the trainer options, every default filled in),
 * `step`, and `progress` (the caller's position in its data: epoch, batch, seeds; JSON).
 */

import { CadenzaError } from "../errors.ts";
import {
  archOf,
  DEFAULT_MAX_BATCH,
  type LayerArch,
  type ModelSpec,
  TENSOR_NAMES,
  tensorShapes,
  validateSpec,
} from "../model/spec.ts";
import { readFile } from "../native/io.ts";
import { readTensorFile, type Tensor, writeTensorFile } from "./tensors.ts";

export const CHECKPOINT_FORMAT = "cadenza-checkpoint";
export const CHECKPOINT_VERSION = "1";

export interface CheckpointContents {
  spec: ModelSpec;
  /** The trainer config (TrainerConfig) as saved. */
  config: Record<string, unknown>;
  optimizer: Float32Array;
  step: number;
  /** The caller's own record of where the run was (epoch, batch, seed...). */
  progress: Record<string, unknown>;
  /** Which parameters are trainable (1) or held (0); null: all trainable. */
  trainable: Uint8Array | null;
}

export function writeCheckpoint(c: CheckpointContents): Uint8Array {
  const tensors = new Map<string, Tensor>();
  c.spec.layers.forEach((layer, i) => {
    const shapes = tensorShapes(layer);
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const data = layer.tensors[name];
      const shape = shapes[name].reduce((a, b) => a * b, 1) === data.length
        ? shapes[name]
        : [data.length];
      tensors.set(`layers.${i}.${name}`, { shape, data });
    }
  });
  tensors.set("optimizer", { shape: [c.optimizer.length], data: c.optimizer });
  if (c.trainable !== null) {
    tensors.set("trainable", { shape: [c.trainable.length], data: c.trainable });
  }
  const architecture = JSON.stringify({
    inputSize: c.spec.inputSize,
    maxBatch: c.spec.maxBatch ?? DEFAULT_MAX_BATCH,
    layers: c.spec.layers.map(archOf),
  });
  return writeTensorFile({
    meta: {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      architecture,
      meta: JSON.stringify(c.spec.meta ?? {}),
      config: JSON.stringify(c.config),
      step: String(c.step),
      progress: JSON.stringify(c.progress),
    },
    tensors,
  });
}

function bad(source: string, message: string): CadenzaError {
  return new CadenzaError("E_FORMAT", `${source}: ${message}`);
}

function json(meta: Record<string, string>, key: string, source: string): Record<string, unknown> {
  try {
    const value = JSON.parse(meta[key] ?? "");
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value;
  } catch {
    // reported below
  }
  throw bad(
    source,
    `__metadata__.${key}: expected a JSON object, got ${JSON.stringify(meta[key])}`,
  );
}

export function parseCheckpoint(bytes: Uint8Array, source: string): CheckpointContents {
  const { meta, tensors } = readTensorFile(bytes, source);
  if (meta.format !== CHECKPOINT_FORMAT || meta.version !== CHECKPOINT_VERSION) {
    throw bad(
      source,
      `__metadata__.format/version: expected "${CHECKPOINT_FORMAT}" "${CHECKPOINT_VERSION}" (a ` +
        `trainer checkpoint), got ${JSON.stringify(meta.format)} ${JSON.stringify(meta.version)}`,
    );
  }
  const arch = json(meta, "architecture", source) as {
    inputSize: number;
    maxBatch: number;
    layers: LayerArch[];
  };
  if (!Array.isArray(arch.layers)) throw bad(source, "architecture.layers: expected a list");
  const layers = arch.layers.map((layer, i) => {
    const t: Record<string, Float32Array> = {};
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const tensor = tensors.get(`layers.${i}.${name}`);
      if (tensor === undefined || !(tensor.data instanceof Float32Array)) {
        throw bad(
          source,
          `tensor "layers.${i}.${name}": expected F32 weights, got ${
            tensor === undefined ? "nothing" : "another dtype"
          }`,
        );
      }
      t[name] = tensor.data;
    }
    return { ...layer, tensors: t };
  });
  const spec: ModelSpec = { inputSize: arch.inputSize, layers, maxBatch: arch.maxBatch };
  const modelMeta = json(meta, "meta", source) as Record<string, string>;
  if (Object.keys(modelMeta).length > 0) spec.meta = modelMeta;
  validateSpec(spec, source);
  const optimizer = tensors.get("optimizer");
  if (optimizer === undefined || !(optimizer.data instanceof Float32Array)) {
    throw bad(source, 'tensor "optimizer": expected F32 optimizer state');
  }
  const step = Number(meta.step);
  if (!Number.isSafeInteger(step) || step < 0) {
    throw bad(source, `__metadata__.step: expected a step count, got ${JSON.stringify(meta.step)}`);
  }
  const trainable = tensors.get("trainable");
  if (trainable !== undefined && !(trainable.data instanceof Uint8Array)) {
    throw bad(source, 'tensor "trainable": expected U8 values (1 trainable, 0 held)');
  }
  return {
    spec,
    trainable: trainable === undefined ? null : trainable.data as Uint8Array,
    config: json(meta, "config", source),
    optimizer: optimizer.data,
    step,
    progress: json(meta, "progress", source),
  };
}

export async function readCheckpoint(path: string): Promise<CheckpointContents> {
  return parseCheckpoint(await readFile(path), path);
}
