/**
 * From a file or bytes to a canonical spec, and from a spec to a loaded Model. The format is
 * detected from the content unless given; a PyTorch state_dict needs its layer list beside it.
 */

import { CadenzaError } from "../errors.ts";
import { readFile } from "../native/io.ts";
import { parseAmpJson } from "./formats/amp.ts";
import { detectFormat, type ModelFormat } from "./formats/detect.ts";
import { readOnnx } from "./formats/onnx.ts";
import { parseRtneural } from "./formats/rtneural.ts";
import { isInt8Safetensors, readSafetensors, readSafetensorsInt8 } from "./formats/safetensors.ts";
import { parseTorchStateDict, type TorchLayerDecl } from "./formats/torch.ts";
import { checkOptionsObject, Model, MODEL_OPTION_KEYS, type ModelOptions } from "./model.ts";
import { dequantiseSpec, type Int8ModelSpec } from "./quantised.ts";
import type { ModelSpec } from "./spec.ts";

export interface SpecOptions {
  /** "auto" (default) detects the format from the bytes. */
  format?: "auto" | ModelFormat;
  /** The module list of a PyTorch state_dict, in forward order (format "torch" only). */
  layers?: TorchLayerDecl[];
}

export interface LoadOptions extends SpecOptions, Omit<ModelOptions, "source"> {
  /**
   * For an int8 file: load its dequantised values (q * scale, an f32 copy) so that another
   * precision can be asked for. Without it an int8 file loads as int8 only, and asking it for
   * "f32" or "bf16" is refused.
   */
  dequantise?: boolean;
}

export interface LoadedSpec {
  /** For an int8 file, its dequantised values, made when read (an f32 copy of the model). */
  spec: ModelSpec;
  /** An int8 file's int8 values and scales as stored; absent for every other file. */
  int8?: Int8ModelSpec;
  format: ModelFormat;
  /** The path, or "<bytes>". */
  source: string;
}

const FORMATS: readonly string[] = ["auto", "rtneural", "safetensors", "torch", "amp", "onnx"];

/** loadModel's keys; loadSpec accepts them too, so that one options object serves both. */
const LOAD_OPTION_KEYS: readonly string[] = [
  "format",
  "layers",
  "dequantise",
  ...MODEL_OPTION_KEYS.filter((key) => key !== "source"),
];

function parseJson(bytes: Uint8Array, source: string): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new CadenzaError("E_FORMAT", `${source}: expected JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** External-data files of an ONNX model, read beside it (a path's folder). */
function besidePath(path: string) {
  const folder = path.slice(0, path.lastIndexOf("/") + 1);
  return (location: string) => readFile(folder + location);
}

async function parseAs(
  format: ModelFormat,
  bytes: Uint8Array,
  options: SpecOptions,
  source: string,
  from_file: boolean,
): Promise<ModelSpec> {
  switch (format) {
    case "onnx":
      return await readOnnx(bytes, source, from_file ? besidePath(source) : undefined);
    case "safetensors":
      return readSafetensors(bytes, source);
    case "rtneural":
      return parseRtneural(parseJson(bytes, source), source);
    case "amp":
      return parseAmpJson(parseJson(bytes, source), source);
    case "torch":
      if (options.layers === undefined) {
        throw new CadenzaError(
          "E_ARGUMENT",
          `${source}: a PyTorch state_dict carries no architecture: pass its module list as ` +
            "`layers` (the CLI's --layers FILE)",
        );
      }
      return parseTorchStateDict(parseJson(bytes, source), options.layers, source);
  }
}

/** Reads a model file (or bytes) into its canonical spec, validated. */
export async function loadSpec(
  path_or_bytes: string | Uint8Array,
  options: SpecOptions = {},
): Promise<LoadedSpec> {
  checkOptionsObject(options, LOAD_OPTION_KEYS);
  const requested = options.format ?? "auto";
  if (!FORMATS.includes(requested)) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `format: expected one of ${FORMATS.join(", ")}, got ${JSON.stringify(requested)}`,
    );
  }
  const from_file = typeof path_or_bytes === "string";
  const source = from_file ? path_or_bytes : "<bytes>";
  const bytes = from_file ? await readFile(path_or_bytes) : path_or_bytes;
  if (!(bytes instanceof Uint8Array)) {
    throw new CadenzaError("E_ARGUMENT", "loadModel: expected a path or a Uint8Array");
  }
  const format = requested === "auto" ? detectFormat(bytes, source) : requested;
  if (format === "safetensors" && isInt8Safetensors(bytes, source)) {
    const int8 = readSafetensorsInt8(bytes, source);
    return {
      get spec() {
        return dequantiseSpec(int8);
      },
      int8,
      format,
      source,
    };
  }
  return { spec: await parseAs(format, bytes, options, source, from_file), format, source };
}

/**
 * Loads a model file (.safetensors, .onnx, RTNeural .json, guitar-amp .json, PyTorch state_dict
 * .json) or its bytes.
 * `precision: "bf16"` holds the weight matrices as bfloat16 (half the bytes per step), "int8"
 * as int8 with a scale per row (a quarter of the bytes; inputs quantised per call). A file
 * with int8 weights (`cadenza compress --int8`, writeSafetensorsInt8) loads as int8 by default,
 * its int8 values and scales going to the library as they are; another precision is refused
 * unless `dequantise: true`.
 *
 * @example
 * const model = await loadModel("models/melody.safetensors", { precision: "bf16" });
 * const probabilities = model.forward(new Float32Array(model.inputSize));
 */
export async function loadModel(
  path_or_bytes: string | Uint8Array,
  options: LoadOptions = {},
): Promise<Model> {
  checkOptionsObject(options, LOAD_OPTION_KEYS);
  const loaded = await loadSpec(path_or_bytes, options);
  const { maxBatch, library, precision, dequantise, sparse } = options;
  const source = loaded.source;
  if (loaded.int8 !== undefined) {
    if (dequantise === true) {
      return await Model.create(loaded.spec, { maxBatch, library, precision, sparse, source });
    }
    if (precision !== undefined && precision !== "int8") {
      throw new CadenzaError(
        "E_ARGUMENT",
        `${source}: holds int8 weights (__metadata__.quantization): it loads as int8 only; ` +
          `precision ${JSON.stringify(precision)} needs its f32 values: pass dequantise: true ` +
          "(loadModel's option)",
      );
    }
    return await Model.createInt8(loaded.int8, { maxBatch, library, source });
  }
  return await Model.create(loaded.spec, { maxBatch, library, precision, sparse, source });
}

/**
 * Loads a canonical spec built in code (docs/DESIGN.md, "Canonical layer specs"); the options
 * are Model's (maxBatch, library, source, precision).
 *
 * @example
 * const model = await modelFromSpec({ inputSize: 2, layers: [{ kind: "dense", inputSize: 2,
 *   outputSize: 1, tensors: { W: new Float32Array([0.5, -1]), b: new Float32Array([0]) } }] });
 */
export async function modelFromSpec(spec: ModelSpec, options: ModelOptions = {}): Promise<Model> {
  return await Model.create(spec, options);
}
