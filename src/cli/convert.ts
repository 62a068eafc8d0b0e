/**
 * `cadenza convert IN OUT`: a model file from one format to another (in: RTNeural JSON, cadenza
 * safetensors, ONNX, the guitar-amp JSON, or a PyTorch state_dict with its module list; out:
 * safetensors, RTNeural JSON or ONNX) through the canonical spec. The weights pass through as
 * float32 values, unchanged, so the converted model computes the same outputs bit for bit
 * (ONNX out: onnxruntime computes them in its own float32 order). OUT is written to a temporary file beside it and renamed into place, so
 * a failed or interrupted conversion never leaves a partial OUT.
 */

import { statSync } from "node:fs";
import { basename, extname, resolve } from "node:path";
import { CadenzaError } from "../errors.ts";
import { toRtneural } from "../model/formats/rtneural.ts";
import { writeSafetensors } from "../model/formats/safetensors.ts";
import { loadSpec } from "../model/load.ts";
import { DEFAULT_MAX_BATCH, type ModelSpec, parameterCount } from "../model/spec.ts";
import { expectPositionals, type ParsedArgs, UsageError } from "./args.ts";
import type { Command, Output } from "./command.ts";
import { writeAtomically } from "./files.ts";
import { MODEL_FLAGS, MODEL_FLAGS_HELP, specOptions } from "./model_flags.ts";

export type ConvertTarget = "safetensors" | "rtneural" | "onnx";

const TARGETS: readonly string[] = ["safetensors", "rtneural", "onnx"];

const TARGET_BY_EXTENSION: Record<string, ConvertTarget> = {
  ".safetensors": "safetensors",
  ".json": "rtneural",
  ".onnx": "onnx",
};

/** The target format: --to, else OUT's extension; the two must not disagree. */
function convertTarget(out_path: string, to: string | undefined): ConvertTarget {
  const extension = extname(out_path).toLowerCase();
  const implied = Object.hasOwn(TARGET_BY_EXTENSION, extension)
    ? TARGET_BY_EXTENSION[extension]
    : undefined;
  if (to === undefined) {
    if (implied !== undefined) return implied;
    throw new UsageError(
      `convert: cannot tell the target format from "${out_path}": name it .safetensors, ` +
        ".json (RTNeural) or .onnx, or pass --to safetensors|rtneural|onnx",
    );
  }
  if (!TARGETS.includes(to)) {
    throw new UsageError(`convert: --to must be safetensors, rtneural or onnx, got "${to}"`);
  }
  if (implied !== undefined && implied !== to) {
    throw new UsageError(
      `convert: OUT "${out_path}" ends in ${extension}, which means ${implied}, but --to is ${to}`,
    );
  }
  return to as ConvertTarget;
}

/** True when both paths name one file: the same path, or (existing) the same inode. */
function sameFile(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true;
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

interface Encoded {
  bytes: Uint8Array;
  /** Layers as the written file lists them. */
  layers: number;
  /** What the target format has no place for, one phrase each. */
  dropped: string[];
}

async function encode(spec: ModelSpec, target: ConvertTarget, in_path: string): Promise<Encoded> {
  if (target === "safetensors") {
    return { bytes: writeSafetensors(spec), layers: spec.layers.length, dropped: [] };
  }
  if (target === "onnx") {
    // Loaded here: the exporter needs onnx-proto, which the other targets do not.
    const { exportOnnx } = await import("../model/formats/onnx-export.ts");
    const exported = exportOnnx(spec, { name: basename(in_path) });
    const dropped = spec.layers.some((layer) => layer.name !== undefined)
      ? ["layer names (the graph names values by layer index)"]
      : [];
    return { bytes: exported.bytes, layers: spec.layers.length, dropped };
  }
  let json;
  try {
    json = toRtneural(spec);
  } catch (err) {
    if (!(err instanceof CadenzaError)) throw err;
    const reason = err.message.replace(/^toRtneural: /, "");
    throw new CadenzaError(err.code, `${in_path}: cannot convert to RTNeural JSON: ${reason}`, {
      cause: err,
    });
  }
  const bytes = new TextEncoder().encode(JSON.stringify(json) + "\n");
  return { bytes, layers: (json.layers as unknown[]).length, dropped: droppedByRtneural(spec) };
}

/** RTNeural JSON holds only the layers: names, metadata and maxBatch are not written. */
function droppedByRtneural(spec: ModelSpec): string[] {
  const dropped: string[] = [];
  const named = spec.layers.filter((layer) => layer.name !== undefined).length;
  if (named > 0) dropped.push(`the names of ${named} layer(s)`);
  const keys = Object.keys(spec.meta ?? {});
  if (keys.length > 0) dropped.push(`metadata ${keys.join(", ")}`);
  const max_batch = spec.maxBatch ?? DEFAULT_MAX_BATCH;
  if (max_batch !== DEFAULT_MAX_BATCH) dropped.push(`maxBatch ${max_batch}`);
  return dropped;
}

async function convert(args: ParsedArgs, output: Output): Promise<number> {
  const [in_path, out_path] = expectPositionals(args, ["in", "out"], "convert");
  const target = convertTarget(out_path, args.values.get("to"));
  if (sameFile(in_path, out_path)) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `convert: OUT "${out_path}" is the input file "${in_path}"; refusing to overwrite it`,
    );
  }
  const { spec, format } = await loadSpec(in_path, await specOptions(args, "convert"));
  const encoded = await encode(spec, target, in_path);
  writeAtomically(out_path, encoded.bytes);
  output.out(
    `${in_path} (${format}) -> ${out_path} (${target}): ${encoded.layers} layers, ` +
      `${parameterCount(spec)} parameters, ${encoded.bytes.length} bytes`,
  );
  if (encoded.dropped.length > 0) {
    const what = target === "onnx" ? "the ONNX export" : "RTNeural JSON";
    output.err(`convert: ${what} has no place for ${encoded.dropped.join("; ")}: not written`);
  }
  return 0;
}

export const convertCommand: Command = {
  name: "convert",
  summary: "convert a model between RTNeural JSON, safetensors, ONNX, amp JSON and state_dicts",
  help: [
    "usage: cadenza convert IN OUT [--to safetensors|rtneural|onnx] [--format F] [--layers FILE]",
    "",
    "Reads IN (RTNeural JSON, a cadenza .safetensors, an .onnx model, a guitar-amp model JSON",
    "from NeuralPi/Proteus/AIDA-X, or a PyTorch state_dict .json with --layers) and writes it",
    "to OUT as safetensors, RTNeural JSON or ONNX. The target is --to, else OUT's extension:",
    ".safetensors, .json for RTNeural, .onnx. The weights are copied as they are (float32), so",
    "the converted model's outputs equal the original's bit for bit (an ONNX file read back by",
    "cadenza too). Prints the layers, parameters and bytes written.",
    "",
    "RTNeural has no attention, transformer or layernorm layer and no gelu: such a model is",
    "refused (E_FORMAT, naming the layer). A final skip layer (amp models) is written as",
    "AIDA-X's in_skip: 1. RTNeural JSON keeps neither layer names, metadata nor maxBatch; a",
    "note on stderr says what was left out.",
    "",
    "OUT is written to a temporary file beside it and renamed into place; an existing OUT is",
    "replaced, IN never. Under Deno this needs --allow-write.",
    "",
    "flags:",
    "  --to T           safetensors, rtneural or onnx (default: from OUT's extension)",
    MODEL_FLAGS_HELP,
  ].join("\n"),
  flags: { values: { ...MODEL_FLAGS, to: "safetensors|rtneural|onnx" } },
  run: convert,
};
