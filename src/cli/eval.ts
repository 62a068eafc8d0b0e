/**
 * `cadenza eval DIR [--json]`: the held-out sets through a pipeline directory beside the FP32
 * models (src/optimize/evaluate.ts): task metrics, agreement with FP32, embedding cosine and
 * weight bytes; exit 0 whatever the figures (`allWithin` says whether all kept within 5%).
 */

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Precision } from "../model/image.ts";
import { PRECISIONS } from "../model/image.ts";
import {
  evaluatePipeline,
  METRIC_TOLERANCE,
  type PipelineEvaluation,
} from "../optimize/evaluate.ts";
import { defaultModelsDir } from "../pipeline/emotion.ts";
import { expectPositionals, intFlag, type ParsedArgs, UsageError } from "./args.ts";
import type { Command, Output } from "./command.ts";

/** The FP32 directory to compare with: --reference, else compress.json's `from`, else models/. */
function referenceOf(args: ParsedArgs, dir: string): string {
  const given = args.values.get("reference");
  if (given !== undefined) return given;
  const manifest = join(dir, "compress.json");
  if (existsSync(manifest)) {
    const from = (JSON.parse(readFileSync(manifest, "utf8")) as { from?: unknown }).from;
    if (typeof from === "string") return from;
  }
  return defaultModelsDir();
}

const pct = (x: number) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(2)}%`;

function lines(r: PipelineEvaluation): string[] {
  const out = [`eval: ${r.dir} against ${r.reference} (FP32), held-out (test) sets`];
  for (const m of r.models) {
    const metrics = m.metrics.map((v) =>
      `${v.metric} ${v.value.toFixed(4)} (FP32 ${v.reference.toFixed(4)}, ${pct(v.relative)}${
        v.within ? "" : ", BEYOND 5%"
      })`
    );
    const more = [
      m.agreement === undefined ? null : `top-1 agreement ${(100 * m.agreement).toFixed(2)}%`,
      m.cosine === undefined ? null : `embedding cosine ${m.cosine.toFixed(4)}`,
      `${m.precision}, ${m.parameters} parameters, ${m.weightBytes} weight bytes (FP32 ${m.referenceWeightBytes})`,
    ].filter((x) => x !== null);
    out.push(`  ${m.name}: ${[...metrics, ...more].join("; ")}`);
  }
  for (const miss of r.missing) out.push(`  no held-out data: ${miss}`);
  out.push(
    `total: ${r.weightBytes} weight bytes (FP32 ${r.referenceWeightBytes}); every task metric ` +
      `within ${100 * METRIC_TOLERANCE}% of FP32: ${r.allWithin ? "yes" : "no"}`,
  );
  return out;
}

async function run(args: ParsedArgs, output: Output): Promise<number> {
  const [dir] = expectPositionals(args, ["dir"], "eval");
  const precision = args.values.get("precision");
  if (precision !== undefined && !(PRECISIONS as readonly string[]).includes(precision)) {
    throw new UsageError(
      `eval: --precision must be one of ${PRECISIONS.join(", ")}, got "${precision}"`,
    );
  }
  const report = await evaluatePipeline({
    dir,
    reference: referenceOf(args, dir),
    data: args.values.get("data"),
    recognizerData: args.values.get("recognizer-data"),
    precision: precision as Precision | undefined,
    library: args.values.get("library"),
    limit: args.values.has("limit") ? intFlag(args, "limit", 0, "eval") : undefined,
    onProgress: (line) => output.err(line),
  });
  if (args.switches.has("json")) output.out(JSON.stringify(report, null, 2));
  else for (const line of lines(report)) output.out(line);
  return 0;
}

export const evalCommand: Command = {
  name: "eval",
  summary: "held-out accuracy of a pipeline directory beside FP32",
  help: [
    "usage: cadenza eval DIR [--json] [--reference DIR] [--data DIR] [--recognizer-data DIR]",
    "",
    "Runs the held-out (test) sets through DIR's five models and the FP32 reference's, step by",
    "step as in use, and prints per model: the task metric (MelodyTransformer next-note accuracy,",
    "HarmonyPredictor next-chord accuracy, EmotionRecognizer valence and arousal correlation per",
    "piece, GroovePredictor and DynamicsEngine mean squared error) beside FP32's and its relative",
    "change, top-1 agreement with FP32 (melody, harmony), the emotion embedding's cosine",
    "similarity to FP32's, and weight bytes as the library holds them. The data come from",
    "`bun scripts/build-training-data.ts` (data/build) and `bun scripts/recognizer-data.ts`",
    "(data/recognizer).",
    "",
    "flags:",
    "  --reference DIR        the FP32 models (default: compress.json's source, else models/)",
    "  --data DIR             the symbolic test sets (default data/build)",
    "  --recognizer-data DIR  test.safetensors and windows.json (default data/recognizer)",
    "  --precision P          load DIR's models at P (default: as stored; f32 files then f32)",
    "  --limit N              only the first N sequences of each set (a quick look)",
    "  --library L            safe (default), fast, or a library path (else CADENZA_LIB)",
    "  --json                 print the report as JSON",
  ].join("\n"),
  flags: {
    values: {
      reference: "DIR",
      data: "DIR",
      "recognizer-data": "DIR",
      precision: "P",
      limit: "N",
      library: "safe|fast|PATH",
    },
    switches: ["json"],
  },
  run,
};
