/**
 * A trainer: the native training engine (docs/DESIGN.md, "Training ABI") for one model, batch
 * size and sequence length, driven from TypeScript. Every buffer a step needs (the f32
 * targets, the mask, the loss) is allocated here once; `step` converts class ids and lengths
 * into the ABI's targets and mask in place and makes one native call.
 *
 * ```ts
 * const model = await loadModel("melody.safetensors");
 * const trainer = model.trainer({ optimizer: "adamw", lr: 1e-3, batch: 32, seqLen: 64, loss: "xent" });
 * const batcher = new Batcher(data, { batch: 32, seqLen: 64, seed: 1 });
 * for (const b of batcher.epoch(0)) trainer.stepBatch(b); // returns the loss
 * trainer.evaluateData(heldOut);                 // { loss, accuracy, weight }
 * await trainer.save("ckpt.safetensors");        // weights + optimizer state + step, resumable
 * await trainer.export("melody-trained.safetensors"); // an ordinary model file
 * ```
 */

import { CadenzaError } from "../errors.ts";
import { writeSafetensors } from "../model/formats/safetensors.ts";
import { packImage } from "../model/image.ts";
import { Model, type ModelOptions, registerTrainerFactory } from "../model/model.ts";
import {
  describe,
  type ModelSpec,
  outputSize,
  parameterCount,
  validateSpec,
} from "../model/spec.ts";
import {
  NATIVE_MODEL,
  type NativeApi,
  type NativeBacked,
  type NativeTrainer,
  statusCode,
  TRAINER_CONFIG_WORDS,
  TRAINER_INFO_FIELDS,
} from "../native/api.ts";
import { type LibraryChoice, openNative } from "../native/index.ts";
import { writeFileAtomic } from "./atomic.ts";
import { readCheckpoint, writeCheckpoint } from "./checkpoint.ts";
import {
  type Batch,
  Batcher,
  IGNORE_CLASS,
  LOSSES,
  type LossName,
  type TrainingData,
} from "./data.ts";
import { parameterLayout, withParams } from "./params.ts";

export type OptimizerName = "adamw" | "sgd";

export interface TrainerOptions {
  /** "adamw" (default) or "sgd" (with momentum). */
  optimizer?: OptimizerName;
  /** Peak learning rate (default 1e-3). */
  lr?: number;
  /** Floor of the cosine decay (default 0). */
  lrMin?: number;
  /** Linear warm-up steps (default 0). */
  warmupSteps?: number;
  /** Step at which the cosine decay ends (default 0: constant after warm-up). */
  totalSteps?: number;
  /** Sequences per step (default 32). */
  batch?: number;
  /** Steps per sequence (default 1: rows without state). */
  seqLen?: number;
  /** "xent" (default), "bce", "mse" or "kl" (docs/TRAINING.md). */
  loss?: LossName;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay on the weight matrices (default 0.01 with AdamW, 0 with SGD). */
  weightDecay?: number;
  /** SGD momentum (default 0.9). */
  momentum?: number;
  /** Clip the global gradient norm to this (default 0: off). */
  clipNorm?: number;
  /** xent with class ids (default 0). */
  labelSmoothing?: number;
  /** kl: the distillation temperature (default 1). */
  temperature?: number;
  /** Truncated BPTT window in steps (default 0: the whole sequence). */
  bpttWindow?: number;
  /** Quantisation-aware training: the forward runs the int8 inference arithmetic. */
  qat?: boolean;
  /**
   * 1 (default) or 2: a native helper thread splits the large products. Same bits either way;
   * it pays only when a second core is idle (docs/DESIGN.md, "Engine, as built").
   */
  threads?: 1 | 2;
  /** "safe" (default), "fast" or a library path. */
  library?: LibraryChoice;
}

/** The options with every default filled in: what a checkpoint records. */
export type TrainerConfig = Required<Omit<TrainerOptions, "library">>;

const OPTION_KEYS: readonly string[] = [
  "optimizer",
  "lr",
  "lrMin",
  "warmupSteps",
  "totalSteps",
  "batch",
  "seqLen",
  "loss",
  "beta1",
  "beta2",
  "eps",
  "weightDecay",
  "momentum",
  "clipNorm",
  "labelSmoothing",
  "temperature",
  "bpttWindow",
  "qat",
  "threads",
  "library",
];

const LOSS_IDS: Record<LossName, number> = { mse: 0, xent: 1, bce: 2, kl: 3 };

export interface Metrics {
  /** Mask-weighted mean loss. */
  loss: number;
  /** xent, kl: argmax agreement; bce: thresholded agreement per value; mse: mean abs error. */
  accuracy: number;
  /** Sum of the mask (positions counted). */
  weight: number;
}

function argError(field: string, expected: string, got: unknown): CadenzaError {
  return new CadenzaError(
    "E_ARGUMENT",
    `trainer options.${field}: expected ${expected}, got ${describe(got)}`,
  );
}

/** Fills in and checks the options (each error names the option). */
export function trainerConfig(options: TrainerOptions = {}): TrainerConfig {
  if (typeof options !== "object" || options === null) throw argError("", "an object", options);
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `trainer options.${key}: expected no such option (the options are ${
          OPTION_KEYS.join(", ")
        })`,
      );
    }
  }
  const optimizer = options.optimizer ?? "adamw";
  if (optimizer !== "adamw" && optimizer !== "sgd") {
    throw argError("optimizer", '"adamw" or "sgd"', optimizer);
  }
  const loss = options.loss ?? "xent";
  if (!LOSSES.includes(loss)) throw argError("loss", LOSSES.map((l) => `"${l}"`).join(", "), loss);
  const c: TrainerConfig = {
    optimizer,
    lr: options.lr ?? 1e-3,
    lrMin: options.lrMin ?? 0,
    warmupSteps: options.warmupSteps ?? 0,
    totalSteps: options.totalSteps ?? 0,
    batch: options.batch ?? 32,
    seqLen: options.seqLen ?? 1,
    loss,
    beta1: options.beta1 ?? 0.9,
    beta2: options.beta2 ?? 0.999,
    eps: options.eps ?? 1e-8,
    weightDecay: options.weightDecay ?? (optimizer === "adamw" ? 0.01 : 0),
    momentum: options.momentum ?? 0.9,
    clipNorm: options.clipNorm ?? 0,
    labelSmoothing: options.labelSmoothing ?? 0,
    temperature: options.temperature ?? 1,
    bpttWindow: options.bpttWindow ?? 0,
    qat: options.qat ?? false,
    threads: options.threads ?? 1,
  };
  const int = (field: keyof TrainerConfig, min: number, max: number) => {
    const v = c[field] as number;
    if (!Number.isInteger(v) || v < min || v > max) {
      throw argError(field, `an integer in ${min}..${max}`, v);
    }
  };
  int("batch", 1, 4096);
  int("seqLen", 1, 65536);
  int("warmupSteps", 0, 2 ** 32 - 1);
  int("totalSteps", 0, 2 ** 32 - 1);
  int("bpttWindow", 0, 65536);
  const real = (field: keyof TrainerConfig, ok: (v: number) => boolean, expected: string) => {
    const v = c[field] as number;
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) throw argError(field, expected, v);
  };
  real("lr", (v) => v > 0, "a finite number > 0");
  real("lrMin", (v) => v >= 0 && v <= c.lr, `a number in 0..lr (${c.lr})`);
  real("beta1", (v) => v >= 0 && v < 1, "a number in [0, 1)");
  real("beta2", (v) => v >= 0 && v < 1, "a number in [0, 1)");
  // A normal float32 (>= 2^-126): a subnormal eps can divide 0 by 0 in AdamW (the library refuses it too).
  real("eps", (v) => v >= 1.1754943508222875e-38, "a normal float32 > 0 (at least 1.1754944e-38)");
  real("weightDecay", (v) => v >= 0, "a number >= 0");
  real("momentum", (v) => v >= 0 && v < 1, "a number in [0, 1)");
  real("clipNorm", (v) => v >= 0, "a number >= 0 (0: off)");
  real("labelSmoothing", (v) => v >= 0 && v < 1, "a number in [0, 1)");
  real("temperature", (v) => v > 0, "a number > 0");
  if (typeof c.qat !== "boolean") throw argError("qat", "a boolean", c.qat);
  if (c.threads !== 1 && c.threads !== 2) throw argError("threads", "1 or 2", c.threads);
  if (c.batch * c.seqLen > 2 ** 20) {
    throw argError("batch", `batch * seqLen <= ${2 ** 20}`, `${c.batch} * ${c.seqLen}`);
  }
  return c;
}

/** The 32 config words of cz_trainer_create. */
export function configWords(c: TrainerConfig): Uint32Array {
  const words = new Uint32Array(TRAINER_CONFIG_WORDS);
  const f = new Float32Array(words.buffer);
  words[0] = 1;
  words[1] = c.batch;
  words[2] = c.seqLen;
  words[3] = LOSS_IDS[c.loss];
  words[4] = c.optimizer === "adamw" ? 0 : 1;
  words[5] = (c.qat ? 1 : 0) | (c.threads === 2 ? 2 : 0);
  words[6] = c.warmupSteps;
  words[7] = c.totalSteps;
  words[8] = c.bpttWindow;
  f[11] = c.lr;
  f[12] = c.lrMin;
  f[13] = c.beta1;
  f[14] = c.beta2;
  f[15] = c.eps;
  f[16] = c.weightDecay;
  f[17] = c.momentum;
  f[18] = c.clipNorm;
  f[19] = c.labelSmoothing;
  f[20] = c.temperature;
  return words;
}

// A safety net for trainers dropped without dispose().
const registry = new FinalizationRegistry<{ api: NativeApi; handle: NativeTrainer }>(
  (held) => held.api.trainerDestroy(held.handle),
);

export class Trainer {
  /** The model's architecture and its weights as they were when the trainer was made. */
  readonly initial: ModelSpec;
  readonly config: TrainerConfig;
  readonly inputSize: number;
  readonly outputSize: number;
  readonly parameterCount: number;
  /** Floats of optimizer state (step counter words, then the moments). */
  readonly stateLength: number;
  /** Names the model in messages. */
  readonly source: string;
  readonly library: LibraryChoice | undefined;

  #api: NativeApi;
  #handle: NativeTrainer | null;
  #targets: Float32Array;
  #mask: Float32Array;
  #loss = new Float32Array(1);
  #metrics = new Float32Array(3);
  #info = new BigUint64Array(TRAINER_INFO_FIELDS);
  #output: Float32Array;
  #trainable: Uint8Array | null = null;

  private constructor(
    api: NativeApi,
    spec: ModelSpec,
    config: TrainerConfig,
    source: string,
    library: LibraryChoice | undefined,
  ) {
    this.initial = spec;
    this.config = config;
    this.inputSize = spec.inputSize;
    this.outputSize = outputSize(spec);
    this.parameterCount = parameterCount(spec);
    this.source = source;
    this.library = library;
    this.#api = api;
    const image = packImage(spec, source, "f32");
    try {
      this.#handle = api.trainerCreate(image, configWords(config));
    } catch (err) {
      if (err instanceof CadenzaError) {
        throw new CadenzaError(err.code, `${source}: trainer: ${err.message}`, { cause: err });
      }
      throw err;
    }
    registry.register(this, { api, handle: this.#handle }, this);
    const positions = config.batch * config.seqLen;
    // Class ids converted to the ABI's f32 ids (value targets are passed as they are).
    this.#targets = new Float32Array(positions);
    this.#mask = new Float32Array(positions);
    this.#output = new Float32Array(positions * this.outputSize);
    const info = this.#readInfo();
    this.stateLength = info[2];
    if (
      info[1] !== this.parameterCount || info[3] !== this.inputSize || info[4] !== this.outputSize
    ) {
      this.dispose();
      throw new CadenzaError(
        "E_NATIVE",
        `${source}: the native trainer reports parameters/input/output ${info[1]}/${info[3]}/` +
          `${info[4]}, expected ${this.parameterCount}/${this.inputSize}/${this.outputSize}`,
      );
    }
  }

  /** A trainer for `spec` (validated; its tensors are the starting weights). */
  static async create(
    spec: ModelSpec,
    options: TrainerOptions = {},
    source = "<spec>",
  ): Promise<Trainer> {
    const config = trainerConfig(options);
    validateSpec(spec, source);
    const api = await openTrainerApi(options.library, source);
    return new Trainer(api, spec, config, source, options.library);
  }

  /** A trainer for a loaded model's weights (synchronous: the library is already open). */
  static forModel(model: Model, options: TrainerOptions = {}): Trainer {
    const config = trainerConfig(options);
    // Through NativeBacked: Deno's checker, reaching this file through the module augmentation
    // below from some entry points, sees Model without its symbol-keyed method.
    const ref = (model as unknown as NativeBacked)[NATIVE_MODEL]();
    if (ref === null) {
      throw new CadenzaError("E_DISPOSED", `${model.source}: trainer called after dispose()`);
    }
    return new Trainer(
      ref.api,
      model.spec,
      config,
      model.source,
      options.library,
    );
  }

  /** Optimizer steps taken (restored by resume). */
  get stepCount(): number {
    return this.#readInfo()[10];
  }

  get disposed(): boolean {
    return this.#handle === null;
  }

  /**
   * One optimizer step on a batch; returns the loss before the update. `inputs` is
   * [batch][seqLen][inputSize]; `targets` class ids [batch][seqLen] (Int32Array, IGNORE_CLASS
   * for none; xent) or values [batch][seqLen][outputSize] (Float32Array); `mask` optional
   * [batch][seqLen] weights.
   */
  step(
    inputs: Float32Array,
    targets: Int32Array | Float32Array,
    mask?: Float32Array | null,
  ): number {
    const handle = this.#live("step");
    const [t, m] = this.#prepare("step", inputs, targets, mask ?? null, null);
    const status = this.#api.trainerStep(handle, inputs, t, m, this.#loss);
    if (status !== 0) throw this.#nativeError(handle, status, "step");
    return this.#loss[0];
  }

  /** step() on a Batcher's batch (its lengths become the mask). */
  stepBatch(batch: Batch): number {
    const handle = this.#live("step");
    const [t, m] = this.#prepare("step", batch.inputs, batch.targets, null, batch.lengths);
    const status = this.#api.trainerStep(handle, batch.inputs, t, m, this.#loss);
    if (status !== 0) throw this.#nativeError(handle, status, "step");
    return this.#loss[0];
  }

  /** Loss and metrics on one batch, without updating anything. */
  evaluate(
    inputs: Float32Array,
    targets: Int32Array | Float32Array,
    mask?: Float32Array | null,
  ): Metrics {
    return this.#evaluate(inputs, targets, mask ?? null, null);
  }

  /**
   * Loss and metrics over a whole data set, in batches of the trainer's size (the last one
   * padded with empty rows): each batch's figures weighted by its positions.
   */
  evaluateData(data: TrainingData): Metrics {
    const batcher = new Batcher(data, {
      batch: this.config.batch,
      seqLen: this.config.seqLen,
      partial: "pad",
    });
    let loss = 0;
    let accuracy = 0;
    let weight = 0;
    for (const b of batcher.epoch(0)) {
      if (!hasTarget(b)) continue;
      const m = this.#evaluate(b.inputs, b.targets, null, b.lengths);
      loss += m.loss * m.weight;
      accuracy += m.accuracy * m.weight;
      weight += m.weight;
    }
    if (weight === 0) {
      throw new CadenzaError("E_ARGUMENT", `${data.source}: evaluate: no position has a target`);
    }
    return { loss: loss / weight, accuracy: accuracy / weight, weight };
  }

  /** The loss and its gradient (parameter order, before clipping), updating nothing. */
  gradient(
    inputs: Float32Array,
    targets: Int32Array | Float32Array,
    mask?: Float32Array | null,
  ): { loss: number; grad: Float32Array } {
    const handle = this.#live("gradient");
    const [t, m] = this.#prepare("gradient", inputs, targets, mask ?? null, null);
    const grad = new Float32Array(this.parameterCount);
    const status = this.#api.trainerGrad(handle, inputs, t, m, this.#loss, grad);
    if (status !== 0) throw this.#nativeError(handle, status, "gradient");
    return { loss: this.#loss[0], grad };
  }

  /** The model's outputs (final activation applied) at every position; a reused view. */
  forward(inputs: Float32Array): Float32Array {
    const handle = this.#live("forward");
    this.#checkInputs("forward", inputs);
    const status = this.#api.trainerForward(handle, inputs, this.#output);
    if (status !== 0) throw this.#nativeError(handle, status, "forward");
    return this.#output;
  }

  /** The current weights, in parameter order (a copy). */
  params(): Float32Array {
    const handle = this.#live("params");
    const out = new Float32Array(this.parameterCount);
    const status = this.#api.trainerGetParams(handle, out);
    if (status !== 0) throw this.#nativeError(handle, status, "params");
    return out;
  }

  setParams(values: Float32Array): void {
    const handle = this.#live("setParams");
    if (!(values instanceof Float32Array) || values.length !== this.parameterCount) {
      throw new CadenzaError(
        "E_SHAPE",
        `${this.source}: setParams: expected Float32Array of ${this.parameterCount}, got ` +
          describe(values),
      );
    }
    const status = this.#api.trainerSetParams(handle, values);
    if (status !== 0) throw this.#nativeError(handle, status, "setParams");
  }

  /**
   * Which parameters a step may change (parameter order): 1 trainable, 0 held (pruned
   * weights stay 0 while the rest fine-tune; a frozen part of the model). All are trainable
   * after create; batchnorm statistics are always held. Checkpoints keep it.
   */
  setTrainable(mask: Uint8Array | Float32Array): void {
    const handle = this.#live("setTrainable");
    if (
      !(mask instanceof Uint8Array || mask instanceof Float32Array) ||
      mask.length !== this.parameterCount
    ) {
      throw new CadenzaError(
        "E_SHAPE",
        `${this.source}: setTrainable: expected ${this.parameterCount} values (one per ` +
          `parameter), got ${describe(mask)}`,
      );
    }
    const bits = new Uint8Array(this.parameterCount);
    for (let i = 0; i < bits.length; i++) {
      if (mask[i] !== 0 && mask[i] !== 1) {
        throw new CadenzaError(
          "E_ARGUMENT",
          `${this.source}: setTrainable: value ${mask[i]} at ${i}: expected 0 (held) or 1`,
        );
      }
      bits[i] = mask[i];
    }
    const status = this.#api.trainerSetTrainable(handle, Float32Array.from(bits));
    if (status !== 0) throw this.#nativeError(handle, status, "setTrainable");
    this.#trainable = bits.every((b) => b === 1) ? null : bits;
  }

  /** Holds every weight-matrix entry that is exactly 0 (a pruned model's zeros stay 0). */
  holdZeros(): number {
    const params = this.params();
    const mask = new Uint8Array(this.parameterCount).fill(1);
    let held = 0;
    for (const slot of parameterLayout(this.initial)) {
      if (!slot.matrix) continue;
      for (let i = slot.offset; i < slot.offset + slot.length; i++) {
        if (params[i] === 0) {
          mask[i] = 0;
          held++;
        }
      }
    }
    this.setTrainable(mask);
    return held;
  }

  /** The trainable mask (a copy), or null when every parameter is trainable. */
  trainable(): Uint8Array | null {
    return this.#trainable === null ? null : this.#trainable.slice();
  }

  /** The optimizer state (step counter words, moments): what resume restores. */
  optimizerState(): Float32Array {
    const handle = this.#live("optimizerState");
    const out = new Float32Array(this.stateLength);
    const status = this.#api.trainerGetState(handle, out);
    if (status !== 0) throw this.#nativeError(handle, status, "optimizerState");
    return out;
  }

  setOptimizerState(values: Float32Array): void {
    const handle = this.#live("setOptimizerState");
    if (!(values instanceof Float32Array) || values.length !== this.stateLength) {
      throw new CadenzaError(
        "E_SHAPE",
        `${this.source}: optimizer state: expected ${this.stateLength} floats, got ` +
          describe(values),
      );
    }
    const status = this.#api.trainerSetState(handle, values);
    if (status !== 0) throw this.#nativeError(handle, status, "setOptimizerState");
  }

  /** The trained model as a spec (the current weights), metadata kept. */
  toSpec(meta: Record<string, string> = {}): ModelSpec {
    const spec = withParams(this.initial, this.params());
    spec.meta = { ...(this.initial.meta ?? {}), ...meta };
    delete spec.meta.untrained;
    return spec;
  }

  /** Loads the trained weights as an inference Model (e.g. `{ precision: "int8" }`). */
  async toModel(options: ModelOptions = {}): Promise<Model> {
    return await Model.create(this.toSpec(), { library: this.library, ...options });
  }

  /** Writes the trained model as an ordinary .safetensors model file (atomically). */
  async export(path: string, meta: Record<string, string> = {}): Promise<void> {
    await writeFileAtomic(path, writeSafetensors(this.toSpec(meta)));
  }

  /**
   * Writes a checkpoint (atomically): weights, optimizer state, step, the options and
   * `progress` (the caller's position in its data). `Trainer.resume` continues from it bit for
   * bit.
   */
  async save(path: string, progress: Record<string, unknown> = {}): Promise<void> {
    const bytes = writeCheckpoint({
      spec: withParams(this.initial, this.params()),
      config: { ...this.config },
      optimizer: this.optimizerState(),
      step: this.stepCount,
      progress,
      trainable: this.#trainable,
    });
    await writeFileAtomic(path, bytes);
  }

  /**
   * A trainer continuing the checkpoint at `path`: the same model, options, weights and
   * optimizer state. `progress` is what save() was given.
   */
  static async resume(
    path: string,
    options: { library?: LibraryChoice } = {},
  ): Promise<{ trainer: Trainer; progress: Record<string, unknown> }> {
    const c = await readCheckpoint(path);
    const config = trainerConfig({ ...(c.config as TrainerOptions), library: options.library });
    const trainer = await Trainer.create(c.spec, { ...config, library: options.library }, path);
    try {
      trainer.setOptimizerState(c.optimizer);
      if (c.trainable !== null) trainer.setTrainable(c.trainable);
    } catch (err) {
      trainer.dispose();
      throw err;
    }
    if (trainer.stepCount !== c.step) {
      trainer.dispose();
      throw new CadenzaError(
        "E_FORMAT",
        `${path}: __metadata__.step is ${c.step} but the optimizer state says ${trainer.stepCount}`,
      );
    }
    return { trainer, progress: c.progress };
  }

  /** Frees the native trainer. Idempotent. */
  dispose(): void {
    const handle = this.#handle;
    if (handle === null) return;
    this.#handle = null;
    registry.unregister(this);
    this.#api.trainerDestroy(handle);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #readInfo(): number[] {
    const handle = this.#live("info");
    const status = this.#api.trainerInfo(handle, this.#info);
    if (status !== 0) throw this.#nativeError(handle, status, "info");
    return Array.from(this.#info, Number);
  }

  #evaluate(
    inputs: Float32Array,
    targets: Int32Array | Float32Array,
    mask: Float32Array | null,
    lengths: Int32Array | null,
  ): Metrics {
    const handle = this.#live("evaluate");
    const [t, m] = this.#prepare("evaluate", inputs, targets, mask, lengths);
    const status = this.#api.trainerEval(handle, inputs, t, m, this.#metrics);
    if (status !== 0) throw this.#nativeError(handle, status, "evaluate");
    return { loss: this.#metrics[0], accuracy: this.#metrics[1], weight: this.#metrics[2] };
  }

  #checkInputs(call: string, inputs: Float32Array): void {
    const want = this.config.batch * this.config.seqLen * this.inputSize;
    if (!(inputs instanceof Float32Array) || inputs.length !== want) {
      throw new CadenzaError(
        "E_SHAPE",
        `${this.source}: ${call} inputs: expected Float32Array of ${want} ` +
          `([batch ${this.config.batch}][seqLen ${this.config.seqLen}][${this.inputSize}]), got ` +
          describe(inputs),
      );
    }
  }

  /**
   * The ABI's targets and mask: class ids become f32 ids (IGNORE_CLASS becomes id 0 with mask
   * 0), lengths become a 0/1 mask multiplied into any mask given.
   */
  #prepare(
    call: string,
    inputs: Float32Array,
    targets: Int32Array | Float32Array,
    mask: Float32Array | null,
    lengths: Int32Array | null,
  ): [Float32Array, Float32Array | null] {
    this.#checkInputs(call, inputs);
    const { batch, seqLen, loss } = this.config;
    const positions = batch * seqLen;
    if (mask !== null && (!(mask instanceof Float32Array) || mask.length !== positions)) {
      throw new CadenzaError(
        "E_SHAPE",
        `${this.source}: ${call} mask: expected Float32Array of ${positions} ([batch][seqLen]), ` +
          `got ${describe(mask)}`,
      );
    }
    if (targets instanceof Int32Array) {
      if (loss !== "xent") {
        throw new CadenzaError(
          "E_ARGUMENT",
          `${this.source}: ${call} targets: class ids go with loss xent; loss ${loss} needs ` +
            `Float32Array values [batch][seqLen][${this.outputSize}]`,
        );
      }
      if (targets.length !== positions) {
        throw new CadenzaError(
          "E_SHAPE",
          `${this.source}: ${call} targets: expected ${positions} class ids ([batch][seqLen]), ` +
            `got ${targets.length}`,
        );
      }
      const t = this.#targets.subarray(0, positions);
      const m = this.#mask;
      let any = mask !== null || lengths !== null;
      for (let p = 0; p < positions; p++) {
        const id = targets[p];
        if (id === IGNORE_CLASS) {
          t[p] = 0;
          m[p] = 0;
          any = true;
        } else if (!(id >= 0 && id < this.outputSize)) {
          throw new CadenzaError(
            "E_ARGUMENT",
            `${this.source}: ${call} targets: class id ${id} at position ${p}: expected ` +
              `0..${this.outputSize - 1} or ${IGNORE_CLASS}`,
          );
        } else {
          t[p] = id;
          m[p] = mask === null ? 1 : mask[p];
        }
      }
      if (lengths !== null) applyLengths(m, lengths, seqLen);
      return [t, any ? m : null];
    }
    const want = positions * this.outputSize;
    if (!(targets instanceof Float32Array) || targets.length !== want) {
      throw new CadenzaError(
        "E_SHAPE",
        `${this.source}: ${call} targets: expected Float32Array of ${want} ` +
          `([batch][seqLen][${this.outputSize}]) or class ids, got ${describe(targets)}`,
      );
    }
    if (lengths === null) return [targets, mask];
    const m = this.#mask;
    if (mask === null) m.fill(1);
    else m.set(mask);
    applyLengths(m, lengths, seqLen);
    return [targets, m];
  }

  #live(call: string): NativeTrainer {
    const handle = this.#handle;
    if (handle === null) {
      throw new CadenzaError("E_DISPOSED", `${this.source}: trainer ${call} after dispose()`);
    }
    return handle;
  }

  #nativeError(handle: NativeTrainer, status: number, call: string): CadenzaError {
    const message = this.#api.trainerLastError(handle) || `status ${status}`;
    return new CadenzaError(statusCode(status), `${this.source}: trainer ${call}: ${message}`);
  }
}

/** The library, refused with one message when it predates the training ABI. */
async function openTrainerApi(
  library: LibraryChoice | undefined,
  source: string,
): Promise<NativeApi> {
  const api = await openNative(library);
  if (typeof api.trainerCreate !== "function") {
    throw new CadenzaError("E_NATIVE", `${source}: ${api.libraryPath} has no training ABI`);
  }
  return api;
}

/** Zeroes the mask past each row's length. */
function applyLengths(mask: Float32Array, lengths: Int32Array, seqLen: number): void {
  for (let r = 0; r < lengths.length; r++) mask.fill(0, r * seqLen + lengths[r], (r + 1) * seqLen);
}

/** Whether a batch has at least one position with a target (the ABI needs a mask sum > 0). */
function hasTarget(b: Batch): boolean {
  const seqLen = b.lengths.length > 0 ? b.targets.length / b.lengths.length : 0;
  if (!(b.targets instanceof Int32Array)) return b.lengths.some((l) => l > 0);
  for (let r = 0; r < b.lengths.length; r++) {
    for (let t = 0; t < b.lengths[r]; t++) {
      if (b.targets[r * seqLen + t] !== IGNORE_CLASS) return true;
    }
  }
  return false;
}

/** A trainer for a loaded model: `Trainer.forModel(model, options)`. */
export function createTrainer(model: Model, options: TrainerOptions = {}): Trainer {
  return Trainer.forModel(model, options);
}

// model.trainer(options) is Trainer.forModel(model, options) once this module has loaded.
registerTrainerFactory((model, options) => Trainer.forModel(model, options));
