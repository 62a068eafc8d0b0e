/** `cadenza inspect MODEL`: the layers of a model file, its parameter count and weight bytes. */

import { statSync } from "node:fs";
import { loadSpec } from "../model/load.ts";
import { int8WeightBytes } from "../model/quantised.ts";
import { type EmotionModelRow, inspectEmotionModels } from "../pipeline/emotion.ts";
import {
  archOf,
  DEFAULT_MAX_BATCH,
  type LayerSpec,
  outputSize,
  parameterCount,
} from "../model/spec.ts";
import { expectPositionals } from "./args.ts";
import type { Command } from "./command.ts";
import { MODEL_FLAGS, MODEL_FLAGS_HELP, specOptions } from "./model_flags.ts";

interface LayerRow {
  index: number;
  kind: string;
  name: string;
  shape: string;
  activation: string;
  params: number;
  bytes: number;
}

function layerParams(layer: LayerSpec): number {
  let count = 0;
  for (const tensor of Object.values(layer.tensors)) count += tensor.length;
  return count;
}

function layerRow(layer: LayerSpec, index: number): LayerRow {
  const params = layerParams(layer);
  return {
    index,
    kind: layer.kind,
    name: layer.name ?? "-",
    shape: `${layer.inputSize} -> ${layer.outputSize}`,
    activation: layer.activation ?? "-",
    params,
    bytes: params * 4,
  };
}

function table(rows: LayerRow[]): string[] {
  const header = ["index", "kind", "name", "in -> out", "activation", "params", "bytes"];
  const cells = rows.map((r) => [
    String(r.index),
    r.kind,
    r.name,
    r.shape,
    r.activation,
    String(r.params),
    String(r.bytes),
  ]);
  return align(header, cells, [true, false, false, false, false, true, true]);
}

function align(header: string[], cells: string[][], numeric: boolean[]): string[] {
  const widths = header.map((h, col) => Math.max(h.length, ...cells.map((c) => c[col].length)));
  const line = (cols: string[]) =>
    cols.map((c, col) => numeric[col] ? c.padStart(widths[col]) : c.padEnd(widths[col]))
      .join("  ").trimEnd();
  return [line(header), ...cells.map(line)];
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The five emotion-pipeline models of a directory, against the seed table's counts. */
function pipelineTable(rows: EmotionModelRow[]): string[] {
  const header = ["model", "in -> out", "params", "bytes", "stored", "seed", "diff", "weights"];
  const cells = rows.map((r) => [
    r.name,
    r.shape,
    String(r.parameters),
    String(r.bytes),
    r.precision,
    String(r.seedParameters),
    `${r.diffPercent >= 0 ? "+" : ""}${r.diffPercent.toFixed(2)}%`,
    r.untrained ? "UNTRAINED (seeded random)" : "trained",
  ]);
  const lines = align(header, cells, [false, false, true, true, false, true, true, false]);
  for (const r of rows) lines.push(`  ${r.name}: ${r.architecture}`);
  const parameters = rows.reduce((sum, r) => sum + r.parameters, 0);
  const bytes = rows.reduce((sum, r) => sum + r.bytes, 0);
  const stored = rows.every((r) => r.precision === "f32") ? "FP32" : "as stored";
  lines.push(`total: ${parameters} parameters, ${bytes} weight bytes (${stored})`);
  return lines;
}

export const inspectCommand: Command = {
  name: "inspect",
  summary: "list a model's layers, parameter count and weight bytes",
  help: [
    "usage: cadenza inspect MODEL|DIR [--json] [--format F] [--layers FILE]",
    "",
    "DIR (e.g. models/) prints the five emotion-pipeline models it holds instead: exact",
    "parameter counts and bytes beside the seed table's figures, and whether the weights",
    "are trained.",
    "",
    "Reads MODEL (.safetensors, .onnx, RTNeural .json, a guitar-amp model .json, or a PyTorch",
    "state_dict .json with --layers) and prints one row per layer: index, kind, name,",
    "in -> out, activation, params, bytes; then the totals. Does not load the native library.",
    "",
    "flags:",
    "  --json           print the architecture as JSON instead of a table",
    MODEL_FLAGS_HELP,
  ].join("\n"),
  flags: { values: { ...MODEL_FLAGS }, switches: ["json"] },
  async run(args, output) {
    const [path] = expectPositionals(args, ["model"], "inspect");
    if (isDirectory(path)) {
      const models = await inspectEmotionModels(path);
      const parameters = models.reduce((sum, r) => sum + r.parameters, 0);
      const weightBytes = models.reduce((sum, r) => sum + r.bytes, 0);
      if (args.switches.has("json")) {
        output.out(JSON.stringify({ dir: path, parameters, weightBytes, models }, null, 2));
      } else for (const line of pipelineTable(models)) output.out(line);
      return 0;
    }
    const loaded = await loadSpec(path, await specOptions(args, "inspect"));
    const { spec, format, source } = loaded;
    const rows = spec.layers.map(layerRow);
    const parameters = parameterCount(spec);
    const stored = loaded.int8 === undefined ? parameters * 4 : int8WeightBytes(loaded.int8);
    const summary = {
      source,
      format,
      inputSize: spec.inputSize,
      outputSize: outputSize(spec),
      maxBatch: spec.maxBatch ?? DEFAULT_MAX_BATCH,
      parameterCount: parameters,
      precision: loaded.int8 === undefined ? "f32" : "int8",
      weightBytes: stored,
      meta: spec.meta ?? {},
    };
    if (args.switches.has("json")) {
      const layers = spec.layers.map((layer, index) => {
        const { params, bytes } = rows[index];
        return { index, ...archOf(layer), params, bytes };
      });
      output.out(JSON.stringify({ ...summary, layers }, null, 2));
      return 0;
    }
    output.out(
      `${source} (${format}): input ${summary.inputSize}, output ${summary.outputSize}, ` +
        `max batch ${summary.maxBatch}, ${rows.length} layers`,
    );
    for (const line of table(rows)) output.out(line);
    const held = summary.precision === "int8" ? " (int8)" : "";
    output.out(`total: ${parameters} parameters, ${stored} weight bytes${held}`);
    return 0;
  },
};
