/**
 * A loaded model: a native handle plus the canonical spec it came from. Every buffer a call
 * needs is allocated here, once; forward and forwardBatch return views of that memory, so the
 * per-step path allocates nothing in JS or in native code.
 */

import { writeFileAtomicSync } from "../atomic.ts";
import { CadenzaError } from "../errors.ts";
import {
  INFO_FIELDS,
  NATIVE_MODEL,
  type NativeApi,
  type NativeHandle,
  type NativeModelRef,
  statusCode,
} from "../native/api.ts";
import { type LibraryChoice, openNative } from "../native/index.ts";
// Types only: the trainer (src/train/trainer.ts) builds on this module, not the other way round;
// it registers itself as the factory `trainer()` calls (registerTrainerFactory).
import type { Trainer, TrainerOptions } from "../train/trainer.ts";
import { writeSafetensors, writeSafetensorsInt8 } from "./formats/safetensors.ts";
import {
  packImage,
  type Precision,
  PRECISIONS,
  SPARSE_CHOICES,
  type SparseChoice,
  sparseLayers,
  weightBytes,
} from "./image.ts";
import {
  dequantiseSpec,
  type Int8ModelSpec,
  int8ParameterCount,
  int8WeightBytes,
  packInt8Image,
} from "./quantised.ts";
import {
  archOf,
  DEFAULT_MAX_BATCH,
  describe,
  type LayerArch,
  type ModelSpec,
  parameterCount,
  validateSpec,
} from "./spec.ts";

export type { Precision } from "./image.ts";

/** Makes a trainer for a model: Trainer.forModel, registered when src/train/trainer.ts loads. */
export type TrainerFactory = (model: Model, options?: TrainerOptions) => Trainer;

let trainerFactory: TrainerFactory | null = null;

/** Called once by src/train/trainer.ts, so that `model.trainer()` reaches Trainer.forModel. */
export function registerTrainerFactory(factory: TrainerFactory): void {
  trainerFactory = factory;
}

export interface ModelOptions {
  /** Most rows forwardBatch accepts (1..4096); overrides the spec's maxBatch. */
  maxBatch?: number;
  /** "safe" (default), "fast", or a library path; default from CADENZA_LIB. */
  library?: LibraryChoice;
  /** Names the model in error messages (a path, or "<bytes>"). */
  source?: string;
  /**
   * How the weight matrices are held: "f32" (default), or "bf16", rounded to nearest even at
   * load, half the bytes to stream per step (biases, norms and state stay f32; each weight
   * moves by at most 2^-8 of itself, and outputs by about that); or "int8": each matrix row
   * quantised to int8 with its own scale at load, each matrix-vector input quantised per
   * call, integer dot products rescaled once per output (docs/DESIGN.md, "Precision").
   */
  precision?: Precision;
  /**
   * Dense layers held as compressed sparse rows: "auto" (default: where the weight matrix is
   * sparse enough for the sparse kernel to be faster, as pruning leaves it; docs/PRUNING.md),
   * "never" or "always". f32 only; results equal the dense kernel's up to the order of the
   * f32 additions.
   */
  sparse?: SparseChoice;
}

/** What the native library reports about a loaded model (cz_model_info). */
export interface NativeInfo {
  abiVersion: number;
  inputSize: number;
  outputSize: number;
  parameterCount: number;
  weightBytes: number;
  /** Every byte the model holds natively: weights, state, scratch. */
  arenaBytes: number;
  stateFloats: number;
  maxBatch: number;
  layerCount: number;
  /** Allocations made by this model's allocator since create; constant after create. */
  allocCount: number;
  freeCount: number;
  libraryPath: string;
}

interface Held {
  api: NativeApi;
  handle: NativeHandle;
}

// A safety net for models that are dropped without dispose(): their native memory is freed
// when the garbage collector notices. dispose() unregisters, so nothing is freed twice.
const registry = new FinalizationRegistry<Held>((held) => held.api.destroy(held.handle));

export class Model {
  readonly layers: readonly LayerArch[];
  readonly inputSize: number;
  readonly outputSize: number;
  readonly parameterCount: number;
  /** How the weight matrices are held (ModelOptions.precision). */
  readonly precision: Precision;
  /**
   * Bytes the weights take as held: parameterCount * 4 in f32; matrices at 2 in bf16; at
   * int8 matrices at 1 plus a 4-byte scale per held matrix row.
   */
  readonly weightBytes: number;
  readonly maxBatch: number;
  /** Names the model in error messages. */
  readonly source: string;
  /** Indices of the dense layers held as sparse rows (ModelOptions.sparse). */
  readonly sparseLayers: readonly number[];

  /**
   * The int8 values and scales of a model loaded from an int8 file (loadModel of a file
   * written by `cadenza compress --int8`, or Model.createInt8): what the library holds, with
   * no f32 copy of a matrix. null for every other model.
   */
  readonly int8: Int8ModelSpec | null;

  #spec: ModelSpec | null;
  #api: NativeApi;
  #handle: NativeHandle | null;
  #output: Float32Array;
  #batch_views: Float32Array[];
  #info: BigUint64Array;
  /** process's own output memory (grown to the largest block) and its view for #block_steps. */
  #block: Float32Array = new Float32Array(0);
  #block_view: Float32Array = this.#block;
  #block_steps = 0;

  private constructor(
    api: NativeApi,
    handle: NativeHandle,
    spec: ModelSpec | Int8ModelSpec,
    int8: boolean,
    source: string,
    precision: Precision,
    sparse: readonly boolean[],
  ) {
    this.#spec = int8 ? null : spec as ModelSpec;
    this.int8 = int8 ? spec as Int8ModelSpec : null;
    this.layers = spec.layers.map((layer) => archOf(layer));
    this.inputSize = spec.inputSize;
    this.outputSize = spec.layers[spec.layers.length - 1].outputSize;
    this.parameterCount = int8
      ? int8ParameterCount(spec as Int8ModelSpec)
      : parameterCount(spec as ModelSpec);
    this.precision = precision;
    this.weightBytes = int8
      ? int8WeightBytes(spec as Int8ModelSpec)
      : weightBytes(spec as ModelSpec, precision, sparse);
    this.sparseLayers = sparse.flatMap((held, i) => (held ? [i] : []));
    this.maxBatch = spec.maxBatch ?? DEFAULT_MAX_BATCH;
    this.source = source;
    this.#api = api;
    this.#handle = handle;
    this.#output = new Float32Array(this.outputSize * this.maxBatch);
    this.#batch_views = new Array<Float32Array>(this.maxBatch);
    this.#batch_views[0] = this.#output.subarray(0, this.outputSize);
    this.#info = new BigUint64Array(INFO_FIELDS);
    registry.register(this, { api, handle }, this);
  }

  /** Validates the spec, packs it into a model image and loads it into the native library. */
  static async create(spec: ModelSpec, options: ModelOptions = {}): Promise<Model> {
    checkOptionsObject(options, MODEL_OPTION_KEYS);
    const source = options.source ?? "<spec>";
    const precision = checkPrecision(options.precision, source);
    const given: ModelSpec = {
      ...spec,
      maxBatch: options.maxBatch ?? spec?.maxBatch ?? DEFAULT_MAX_BATCH,
    };
    validateSpec(given, source);
    // The model keeps its own copy: a caller that reuses its arrays afterwards must not change
    // what `spec` and save() report, which would no longer be the weights the library holds.
    const full = copySpec(given);
    const sparse = sparseLayers(full, precision, checkSparse(options.sparse, source));
    const image = packImage(full, source, precision, sparse);
    const { api, handle } = await createNative(image, options.library, source);
    const model = new Model(api, handle, full, false, source, precision, sparse);
    model.#checkNativeSizes();
    return model;
  }

  /**
   * Loads an int8 spec (quantiseSpec, readSafetensorsInt8) as an int8 model: the image carries
   * the int8 values and scales (weight_type 4) and the library holds exactly them; nothing is
   * widened to f32 but one layer at a time inside the library while it packs. `precision` may
   * only be "int8" (or absent).
   *
   * @example
   * const model = await Model.createInt8(quantiseSpec(spec), { library: "fast" });
   */
  static async createInt8(spec: Int8ModelSpec, options: ModelOptions = {}): Promise<Model> {
    checkOptionsObject(options, MODEL_OPTION_KEYS);
    const source = options.source ?? "<int8 spec>";
    if (options.precision !== undefined && options.precision !== "int8") {
      throw new CadenzaError(
        "E_ARGUMENT",
        `${source}: precision: the weights are stored as int8, expected "int8" or nothing, got ` +
          `${describe(options.precision)} (dequantise explicitly for another precision)`,
      );
    }
    const given: Int8ModelSpec = {
      ...spec,
      maxBatch: options.maxBatch ?? spec?.maxBatch ?? DEFAULT_MAX_BATCH,
    };
    const image = packInt8Image(given, source);
    const held = copyInt8Spec(given);
    const { api, handle } = await createNative(image, options.library, source);
    const model = new Model(api, handle, held, true, source, "int8", []);
    model.#checkNativeSizes();
    return model;
  }

  /**
   * The canonical spec, with maxBatch filled in. For a model loaded from int8 (`int8` is not
   * null) it is made when asked for, each time: the dequantised values (q * scale), an f32 copy.
   */
  get spec(): ModelSpec {
    return this.#spec ?? dequantiseSpec(this.int8!);
  }

  /** The file's free-form metadata (`spec.meta`), read without dequantising an int8 model. */
  get meta(): Readonly<Record<string, string>> | undefined {
    return this.#spec !== null ? this.#spec.meta : this.int8?.meta;
  }

  /**
   * Runs one step and advances the model's state. Returns a view of memory the model reuses:
   * it is overwritten by the next forward or forwardBatch (copy it to keep it).
   */
  forward(input: Float32Array): Float32Array {
    const handle = this.#live("forward");
    if (!(input instanceof Float32Array) || input.length !== this.inputSize) {
      throw this.#shapeError("forward", input, this.inputSize);
    }
    const output = this.#batch_views[0];
    const status = this.#api.forward(handle, input, output);
    if (status !== 0) throw this.#nativeError(handle, status, "forward");
    return output;
  }

  /**
   * Runs `batch` independent rows (row-major, inputSize each) from the current state, which
   * does not advance. Returns a reused view of batch * outputSize values.
   */
  forwardBatch(input: Float32Array, batch: number): Float32Array {
    const handle = this.#live("forwardBatch");
    if (!Number.isInteger(batch) || batch < 1 || batch > this.maxBatch) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `${this.source}: forwardBatch batch: expected an integer in 1..${this.maxBatch}, ` +
          `got ${describe(batch)}`,
      );
    }
    if (!(input instanceof Float32Array) || input.length !== this.inputSize * batch) {
      throw this.#shapeError("forwardBatch", input, this.inputSize * batch);
    }
    const output = this.#batchView(batch);
    const status = this.#api.forwardBatch(handle, input, batch, output);
    if (status !== 0) throw this.#nativeError(handle, status, "forwardBatch");
    return output;
  }

  /**
   * Runs `steps` steps in one native call, exactly as `steps` calls of forward (bit for bit,
   * state carried from each step to the next): `input` holds the steps one after another
   * (steps * inputSize values). The steps * outputSize outputs go to `output` when given
   * (nothing is allocated; it may be `input` itself when outputSize <= inputSize), else to
   * memory the model keeps and reuses: the returned view is overwritten by the next process.
   * That memory grows when a larger block arrives, so a caller with a fixed block size
   * allocates only on the first call.
   *
   * @example
   * const amp = await loadModel("amp.json");           // 1 input, 1 output
   * amp.process(samples, samples.length, samples);     // in place, one call per audio block
   */
  process(input: Float32Array, steps: number, output?: Float32Array): Float32Array {
    const handle = this.#live("process");
    if (!Number.isInteger(steps) || steps < 1 || steps > 0xffffffff) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `${this.source}: process steps: expected an integer in 1..4294967295, ` +
          `got ${describe(steps)}`,
      );
    }
    if (!(input instanceof Float32Array) || input.length !== this.inputSize * steps) {
      throw this.#shapeError("process", input, this.inputSize * steps);
    }
    const out = output ?? this.#blockView(steps);
    if (!(out instanceof Float32Array) || out.length < this.outputSize * steps) {
      throw new CadenzaError(
        "E_SHAPE",
        `${this.source}: process output: expected a Float32Array of at least ` +
          `${this.outputSize * steps} (outputSize ${this.outputSize} x steps ${steps}), ` +
          `got ${describe(out)}`,
      );
    }
    const status = this.#api.process(handle, input, steps, out);
    if (status !== 0) throw this.#nativeError(handle, status, "process");
    return out;
  }

  /** Zeroes the recurrent, convolution and attention state. */
  reset(): void {
    const handle = this.#live("reset");
    const status = this.#api.reset(handle);
    if (status !== 0) throw this.#nativeError(handle, status, "reset");
  }

  nativeInfo(): NativeInfo {
    const handle = this.#live("nativeInfo");
    const status = this.#api.info(handle, this.#info);
    if (status !== 0) throw this.#nativeError(handle, status, "nativeInfo");
    const field = (index: number) => Number(this.#info[index]);
    return {
      abiVersion: field(0),
      inputSize: field(1),
      outputSize: field(2),
      parameterCount: field(3),
      weightBytes: field(4),
      arenaBytes: field(5),
      stateFloats: field(6),
      maxBatch: field(7),
      layerCount: field(8),
      allocCount: field(9),
      freeCount: field(10),
      libraryPath: this.#api.libraryPath,
    };
  }

  /**
   * Writes the model as .safetensors (architecture in its metadata), whatever the extension,
   * atomically (src/atomic.ts): an interrupted save leaves the previous file whole.
   */
  async save(path: string): Promise<void> {
    this.#live("save");
    const bytes = this.int8 === null
      ? writeSafetensors(this.#spec!)
      : writeSafetensorsInt8(this.int8);
    writeFileAtomicSync(path, bytes);
    await Promise.resolve();
  }

  /** Frees the native model. Idempotent; afterwards every other call throws E_DISPOSED. */
  dispose(): void {
    const handle = this.#handle;
    if (handle === null) return;
    this.#handle = null;
    registry.unregister(this);
    this.#api.destroy(handle);
  }

  get disposed(): boolean {
    return this.#handle === null;
  }

  /**
   * A trainer for this model's current weights: `Trainer.forModel(model, options)`
   * (src/train/trainer.ts; present once that module is loaded, as importing "cadenza" does).
   */
  trainer(options?: TrainerOptions): Trainer {
    if (trainerFactory === null) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `${this.source}: trainer() needs the training module: import it from "cadenza" ` +
          "(or src/train/trainer.ts)",
      );
    }
    return trainerFactory(this, options);
  }

  /** For the native graph (src/pipeline): the library and live handle, or null once disposed. */
  [NATIVE_MODEL](): NativeModelRef | null {
    const handle = this.#handle;
    return handle === null ? null : { api: this.#api, handle };
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #live(call: string): NativeHandle {
    const handle = this.#handle;
    if (handle === null) {
      throw new CadenzaError("E_DISPOSED", `${this.source}: ${call} called after dispose()`);
    }
    return handle;
  }

  #batchView(batch: number): Float32Array {
    let view = this.#batch_views[batch - 1];
    if (view === undefined) {
      view = this.#output.subarray(0, batch * this.outputSize);
      this.#batch_views[batch - 1] = view;
    }
    return view;
  }

  #blockView(steps: number): Float32Array {
    if (steps !== this.#block_steps) {
      const len = steps * this.outputSize;
      if (this.#block.length < len) this.#block = new Float32Array(len);
      this.#block_view = this.#block.subarray(0, len);
      this.#block_steps = steps;
    }
    return this.#block_view;
  }

  #shapeError(call: string, input: unknown, expected_len: number): CadenzaError {
    return new CadenzaError(
      "E_SHAPE",
      `${this.source}: ${call} input: expected Float32Array of ${expected_len}, ` +
        `got ${describe(input)}`,
    );
  }

  #nativeError(handle: NativeHandle, status: number, call: string): CadenzaError {
    const message = this.#api.lastError(handle) || `status ${status}`;
    return new CadenzaError(statusCode(status), `${this.source}: ${call}: ${message}`);
  }

  #checkNativeSizes(): void {
    const info = this.nativeInfo();
    const expected = [
      this.inputSize,
      this.outputSize,
      this.parameterCount,
      this.maxBatch,
      this.weightBytes,
    ];
    const got = [
      info.inputSize,
      info.outputSize,
      info.parameterCount,
      info.maxBatch,
      info.weightBytes,
    ];
    if (expected.some((value, index) => value !== got[index])) {
      this.dispose();
      throw new CadenzaError(
        "E_NATIVE",
        `${this.source}: the native model reports input/output/parameters/maxBatch/weightBytes ` +
          `${got.join("/")}, expected ${expected.join("/")}`,
      );
    }
  }
}

/** The keys ModelOptions has. */
export const MODEL_OPTION_KEYS: readonly string[] = [
  "maxBatch",
  "library",
  "source",
  "precision",
  "sparse",
];

/**
 * An options argument: an object (or nothing) with only `known` keys, so that a misspelled
 * option (`precison`) is refused rather than silently ignored.
 */
export function checkOptionsObject(options: unknown, known: readonly string[]): void {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `options: expected an object (or nothing), got ${describe(options)}`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `options.${key}: expected no such option (the options are ${known.join(", ")})`,
      );
    }
  }
}

/** A copy of a validated spec that shares no array or object with it. */
function copySpec(spec: ModelSpec): ModelSpec {
  const layers = spec.layers.map((layer) => {
    const tensors: Record<string, Float32Array> = {};
    for (const [name, values] of Object.entries(layer.tensors)) tensors[name] = values.slice();
    return { ...layer, tensors };
  });
  const copy: ModelSpec = { ...spec, layers };
  if (spec.meta !== undefined) copy.meta = { ...spec.meta };
  return copy;
}

/** A copy of an int8 spec that shares no array or object with it. */
function copyInt8Spec(spec: Int8ModelSpec): Int8ModelSpec {
  const layers = spec.layers.map((layer) => {
    const tensors: Record<string, Float32Array> = {};
    for (const [name, values] of Object.entries(layer.tensors)) tensors[name] = values.slice();
    const int8: Int8ModelSpec["layers"][number]["int8"] = {};
    for (const [name, held] of Object.entries(layer.int8)) {
      int8[name] = { q: held.q.slice(), scales: held.scales.slice() };
    }
    return { ...layer, tensors, int8 };
  });
  const copy: Int8ModelSpec = { ...spec, layers };
  if (spec.meta !== undefined) copy.meta = { ...spec.meta };
  return copy;
}

/** The precision option, checked: "f32" when absent. */
function checkPrecision(value: unknown, source: string): Precision {
  if (value === undefined) return "f32";
  if (PRECISIONS.includes(value as Precision)) return value as Precision;
  throw new CadenzaError(
    "E_ARGUMENT",
    `${source}: precision: expected "f32", "bf16" or "int8", got ${describe(value)}`,
  );
}

/** The sparse option, checked: "auto" when absent. */
function checkSparse(value: unknown, source: string): SparseChoice {
  if (value === undefined) return "auto";
  if (SPARSE_CHOICES.includes(value as SparseChoice)) return value as SparseChoice;
  throw new CadenzaError(
    "E_ARGUMENT",
    `${source}: sparse: expected "auto", "never" or "always", got ${describe(value)}`,
  );
}

/** Opens the library and creates a model from `image`; a refusal's message names `source`. */
async function createNative(
  image: Uint8Array,
  library: LibraryChoice | undefined,
  source: string,
): Promise<{ api: NativeApi; handle: NativeHandle }> {
  const api = await openNative(library);
  try {
    return { api, handle: api.create(image) };
  } catch (err) {
    if (err instanceof CadenzaError) {
      throw new CadenzaError(err.code, `${source}: ${err.message}`, { cause: err });
    }
    throw err;
  }
}
