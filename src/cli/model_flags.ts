/**
 * The flags every command that opens a model shares: --format, --layers (the module list of a
 * PyTorch state_dict, as a JSON file) and --library.
 */

import { CadenzaError } from "../errors.ts";
import type { SpecOptions } from "../model/load.ts";
import type { TorchLayerDecl } from "../model/formats/torch.ts";
import { readText } from "../native/io.ts";
import type { ParsedArgs } from "./args.ts";
import { UsageError } from "./args.ts";

export const MODEL_FLAGS = {
  format: "auto|rtneural|safetensors|torch|amp|onnx",
  layers: "FILE",
} as const;

export const MODEL_FLAGS_HELP = [
  "  --format F       auto (default: detected from the content), rtneural, safetensors, torch,",
  "                   amp (NeuralPi/Proteus/AIDA-X model JSON) or onnx",
  "  --layers FILE    JSON list of a PyTorch state_dict's modules, in forward order, e.g.",
  '                   [{"kind":"lstm","name":"lstm"},{"kind":"linear","name":"dense"}]',
].join("\n");

const FORMATS = ["auto", "rtneural", "safetensors", "torch", "amp", "onnx"] as const;

async function readLayers(path: string): Promise<TorchLayerDecl[]> {
  const text = await readText(path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CadenzaError("E_FORMAT", `${path}: expected JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(json)) {
    throw new CadenzaError("E_FORMAT", `${path}: expected a JSON list of layer declarations`);
  }
  return json as TorchLayerDecl[];
}

/** SpecOptions from --format and --layers. */
export async function specOptions(args: ParsedArgs, command: string): Promise<SpecOptions> {
  const format = args.values.get("format") ?? "auto";
  if (!(FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(
      `${command}: --format must be one of ${FORMATS.join(", ")}, got "${format}"`,
    );
  }
  const layers_path = args.values.get("layers");
  const layers = layers_path === undefined ? undefined : await readLayers(layers_path);
  return { format: format as SpecOptions["format"], layers };
}
