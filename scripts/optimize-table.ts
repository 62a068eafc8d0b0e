/**
 * The table of docs/OPTIMIZATION.md, from one command: builds each variant of the pipeline
 * (`cadenza compress` into out/optimize/), runs `cadenza eval` on it against the FP32 models of
 * models/, times the combination against FP32 with `cadenza bench --models`, and writes the
 * table between the markers of docs/OPTIMIZATION.md. Rerun it whenever models/ changes.
 *
 *   bun scripts/optimize-table.ts [--limit N] [--no-bench] [--no-finetune] [--no-write]
 *
 * --no-finetune leaves out the row that fine-tunes every pruned model (the slow one: about a
 * quarter of an hour on a shared 2-core machine).
 *
 * Needs the held-out sets: bun scripts/build-training-data.ts (data/build) and
 * bun scripts/recognizer-data.ts (data/recognizer).
 */

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { writeFileAtomicSync } from "../src/atomic.ts";
import { main } from "../src/cli/main.ts";
import { compressPipeline, pruneStep } from "../src/optimize/compress.ts";
import { evaluatePipeline, type PipelineEvaluation } from "../src/optimize/evaluate.ts";
import type { Precision } from "../src/model/image.ts";
import { loadSpec } from "../src/model/load.ts";
import { writeSafetensorsInt8 } from "../src/model/formats/safetensors.ts";
import { quantiseSpec } from "../src/model/quantised.ts";
import { EMOTION_MODELS, modelFile } from "../src/pipeline/emotion.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    limit: { type: "string" },
    "no-bench": { type: "boolean", default: false },
    "no-finetune": { type: "boolean", default: false },
    "no-write": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  process.stdout.write(
    "bun scripts/optimize-table.ts [--limit N] [--no-bench] [--no-finetune] [--no-write]\n" +
      "Builds the pipeline variants into out/optimize/, evaluates each on the held-out sets\n" +
      "and writes the table of docs/OPTIMIZATION.md (--no-write: print it only).\n",
  );
  process.exit(0);
}
const limit = values.limit === undefined ? undefined : Number(values.limit);
const MODELS = "models";
const WORK = "out/optimize";
const DOC = "docs/OPTIMIZATION.md";
const BEGIN = "<!-- optimize-table:begin -->";
const END = "<!-- optimize-table:end -->";
const log = (line: string) => process.stderr.write(line + "\n");

interface Row {
  name: string;
  command: string;
  dir: string;
  precision?: Precision;
  build?: () => Promise<void>;
}

/** models/qat/ holds the QAT files (int8); a model without one is quantised post-training. */
async function buildQat(out: string): Promise<string[]> {
  mkdirSync(out, { recursive: true });
  const qat: string[] = [];
  for (const info of EMOTION_MODELS) {
    const trained = modelFile(join(MODELS, "qat"), info.name);
    const target = modelFile(out, info.name);
    if (existsSync(trained)) {
      writeFileAtomicSync(target, readFileSync(trained));
      qat.push(info.name);
    } else {
      const { spec } = await loadSpec(modelFile(MODELS, info.name));
      writeFileAtomicSync(target, writeSafetensorsInt8(quantiseSpec(spec)));
    }
  }
  return qat;
}

let qatModels: string[] = [];
const rows: Row[] = [
  {
    name: "FP32",
    command: "`cadenza eval models/ --precision f32`",
    dir: MODELS,
    precision: "f32",
  },
  {
    name: "bf16",
    command: "`cadenza eval models/ --precision bf16`",
    dir: MODELS,
    precision: "bf16",
  },
  {
    name: "int8, post-training",
    command: "`cadenza compress models/ --out DIR --int8`",
    dir: join(WORK, "int8"),
    build: async () => {
      await compressPipeline({ from: MODELS, out: join(WORK, "int8"), int8: true });
    },
  },
  {
    name: "int8, QAT",
    command: "`cadenza quantize models/M.safetensors models/qat/M.safetensors --qat --data " +
      "data/build/TASK-train.safetensors --epochs 1` per model in models/qat/ (the others " +
      "post-training)",
    dir: join(WORK, "qat"),
    build: async () => {
      qatModels = await buildQat(join(WORK, "qat"));
    },
  },
  {
    name: "pruned 50% (unstructured), no fine-tuning",
    command: "`cadenza compress models/ --out DIR --prune 0.5`",
    dir: join(WORK, "pruned"),
    build: async () => {
      await compressPipeline({
        from: MODELS,
        out: join(WORK, "pruned"),
        prune: pruneStep({ sparsity: 0.5 }),
      });
    },
  },
  ...(values["no-finetune"] ? [] : [{
    name: "pruned 50% (unstructured), fine-tuned (1 epoch; EmotionRecognizer 8)",
    command: "`cadenza compress models/ --out DIR --prune 0.5 --finetune`",
    dir: join(WORK, "pruned-finetuned"),
    build: async () => {
      await compressPipeline({
        from: MODELS,
        out: join(WORK, "pruned-finetuned"),
        prune: pruneStep({ sparsity: 0.5, finetune: {}, onProgress: log }),
        onProgress: log,
      });
    },
  }]),
  {
    name: "distilled students (FP32)",
    command: "`cadenza compress models/ --out DIR --distill`",
    dir: join(WORK, "distilled"),
    build: async () => {
      await compressPipeline({ from: MODELS, out: join(WORK, "distilled"), distill: true });
    },
  },
  {
    name: "int8 + MelodyTransformer student",
    command: "`cadenza compress models/ --out DIR --int8 --distill-only MelodyTransformer`",
    dir: join(WORK, "compact"),
    build: async () => {
      await compressPipeline({
        from: MODELS,
        out: join(WORK, "compact"),
        int8: true,
        distill: ["MelodyTransformer"],
      });
    },
  },
  {
    name: "**int8 + both students (the compressed pipeline)**",
    command: "`cadenza compress models/ --out DIR --int8 --distill`",
    dir: join(WORK, "compact-both"),
    build: async () => {
      await compressPipeline({
        from: MODELS,
        out: join(WORK, "compact-both"),
        int8: true,
        distill: true,
      });
    },
  },
];

const results: { row: Row; r: PipelineEvaluation }[] = [];
for (const row of rows) {
  log(`optimize-table: ${row.name}`);
  if (row.build) await row.build();
  const r = await evaluatePipeline({
    dir: row.dir,
    reference: MODELS,
    precision: row.precision,
    library: "fast",
    limit,
    onProgress: log,
  });
  if (r.missing.length > 0) {
    throw new Error(`optimize-table: held-out data missing: ${r.missing.join("; ")}`);
  }
  results.push({ row, r });
}

let benchLine = "";
if (!values["no-bench"]) {
  const out: string[] = [];
  const code = await main(
    ["bench", "--models", join(WORK, "compact-both"), "--iterations", "3000"],
    { out: (l) => out.push(l), err: log },
  );
  if (code !== 0) throw new Error(`optimize-table: bench exited ${code}`);
  benchLine = out.find((l) => l.startsWith("against FP32")) ?? "";
}

const f4 = (x: number) => x.toFixed(4);
const rel = (x: number) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)}%`;
function cell(r: PipelineEvaluation, model: string, metric: string): string {
  const m = r.models.find((x) => x.name === model)!;
  const v = m.metrics.find((x) => x.metric === metric)!;
  return `${f4(v.value)} (${rel(v.relative)})`;
}
function extra(r: PipelineEvaluation, model: string, key: "agreement" | "cosine"): string {
  const v = r.models.find((x) => x.name === model)![key];
  return v === undefined ? "-" : key === "agreement" ? `${(100 * v).toFixed(1)}%` : f4(v);
}

const header = [
  "variant",
  "weight bytes",
  "melody acc.",
  "harmony acc.",
  "valence r",
  "arousal r",
  "groove MSE",
  "dynamics MSE",
  "melody top-1 agr.",
  "harmony top-1 agr.",
  "emotion cosine",
  "all within 5%",
  "command",
];
const lines = [
  `| ${header.join(" | ")} |`,
  `|${header.map((_, i) => (i === 0 || i === header.length - 1 ? "---" : "---:")).join("|")}|`,
];
for (const { row, r } of results) {
  lines.push(
    "| " + [
      row.name,
      r.weightBytes.toLocaleString("en-US"),
      cell(r, "MelodyTransformer", "accuracy"),
      cell(r, "HarmonyPredictor", "accuracy"),
      cell(r, "EmotionRecognizer", "valence r"),
      cell(r, "EmotionRecognizer", "arousal r"),
      cell(r, "GroovePredictor", "mse"),
      cell(r, "DynamicsEngine", "mse"),
      extra(r, "MelodyTransformer", "agreement"),
      extra(r, "HarmonyPredictor", "agreement"),
      extra(r, "EmotionRecognizer", "cosine"),
      r.allWithin ? "yes" : "no",
      row.command,
    ].join(" | ") + " |",
  );
}
const positions = results[0].r.models.map((m) => `${m.name} ${m.positions.toLocaleString("en-US")}`)
  .join(", ");
const block = [
  BEGIN,
  "",
  "Written by `bun scripts/optimize-table.ts`" + (limit === undefined ? "" : ` --limit ${limit}`) +
  ` on ${new Date().toISOString().slice(0, 10)}; do not edit by hand. Held-out (test) sets of ` +
  "data/build and data/recognizer; every model runs step by step as in use (library fast). " +
  "In brackets: the change relative to FP32 (higher is better for accuracy and r, lower for " +
  "MSE). Positions scored: " + positions + ".",
  qatModels.length > 0 ? `\nQAT files present: ${qatModels.join(", ")}.` : "",
  "",
  ...lines,
  "",
  benchLine === ""
    ? ""
    : "`cadenza bench --models out/optimize/compact-both --iterations 3000` (CADENZA_LIB default " +
      "fast; a shared 2-core VM, timings noisy): " + benchLine,
  "",
  END,
].join("\n");

process.stdout.write(block + "\n");
if (!values["no-write"]) {
  const doc = readFileSync(DOC, "utf8");
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${DOC}: the markers ${BEGIN} ... ${END} are missing`);
  const next = doc.slice(0, a) + block + doc.slice(b + END.length);
  writeFileAtomicSync(DOC, new TextEncoder().encode(next));
  log(`optimize-table: wrote ${DOC}`);
}
