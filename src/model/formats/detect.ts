/**
 * Tells model file formats apart by content, not by extension: a safetensors file starts with
 * its header length and then "{"; an ONNX file is a protobuf ModelProto whose first field is
 * ir_version (byte 0x08, as every ONNX writer orders it); RTNeural JSON has `in_shape` and
 * `layers`; the guitar-amp JSON has `model_data` and `state_dict`; anything else that is a JSON
 * object of arrays is taken as a PyTorch state_dict dump.
 */

import { CadenzaError } from "../../errors.ts";
import { looksLikeAmpJson } from "./amp.ts";

export type ModelFormat = "rtneural" | "safetensors" | "torch" | "amp" | "onnx";

/** protobuf field 1 (ir_version), wire type 0 (varint): the first byte of an ONNX file. */
const ONNX_FIRST_BYTE = 0x08;

const OPEN_BRACE = 0x7B;

/**
 * A u64 length and then "{". A length that runs past the end (a truncated file) still counts
 * when one of its first 8 bytes is 0, which JSON text never holds: the safetensors reader then
 * says what is wrong with the header instead of a JSON parser failing on its binary length.
 */
function looksLikeSafetensors(bytes: Uint8Array): boolean {
  if (bytes.length < 10 || bytes[8] !== OPEN_BRACE) return false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header_len = view.getBigUint64(0, true);
  if (header_len >= 2n && header_len <= BigInt(bytes.length - 8)) return true;
  return bytes.subarray(0, 8).includes(0);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The format of a model file's bytes. `path` is used only in the error message. Throws E_FORMAT
 * when the bytes are none of the three.
 *
 * @example
 * const format = detectFormat(await Bun.file(path).bytes(), path);
 */
export function detectFormat(bytes: Uint8Array, path?: string): ModelFormat {
  const source = path ?? "model file";
  if (looksLikeSafetensors(bytes)) return "safetensors";
  if (bytes[0] === ONNX_FIRST_BYTE) return "onnx";
  let json: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    json = JSON.parse(text);
  } catch (err) {
    throw new CadenzaError(
      "E_FORMAT",
      `${source}: expected a safetensors file, an ONNX file or JSON (RTNeural, amp model or ` +
        `a PyTorch state_dict), got none of them (${(err as Error).message})`,
      { cause: err },
    );
  }
  if (isRecord(json) && Array.isArray(json.layers) && Array.isArray(json.in_shape)) {
    return "rtneural";
  }
  if (looksLikeAmpJson(json)) return "amp";
  const values = isRecord(json) ? Object.values(json) : [];
  if (values.length > 0 && values.every((v) => Array.isArray(v) || typeof v === "number")) {
    return "torch";
  }
  throw new CadenzaError(
    "E_FORMAT",
    `${source}: expected RTNeural JSON ({in_shape, layers}), an amp model ({model_data, ` +
      "state_dict}) or a state_dict (an object of arrays), got JSON that is none of them",
  );
}
