/**
 * A deployable pipeline directory from a models/ directory (issue 11): per model, optionally
 * the distilled student in its place (models/compact/), optionally pruned, optionally stored
 * as int8 (.safetensors with I8 matrices and per-row scales, loaded as int8 without an f32 copy).
 * The result is the five `<Name>.safetensors` files that EmotionPipeline.load, the real-time
 * engine and the CLI take, plus `compress.json`, which says how each one was made.
 *
 * ```ts
 * const report = await compressPipeline({ from: "models/", out: "out/compact", int8: true, distill: true });
 * console.log(report.weightBytes); // the five models' weight bytes as the library holds them
 * ```
 */

import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import process from "node:process";
import { writeFileAtomicSync } from "../atomic.ts";
import { CadenzaError } from "../errors.ts";
import { writeSafetensors, writeSafetensorsInt8 } from "../model/formats/safetensors.ts";
import { weightBytes } from "../model/image.ts";
import { loadSpec } from "../model/load.ts";
import { quantiseSpec } from "../model/quantised.ts";
import { type ModelSpec, parameterCount } from "../model/spec.ts";
import { EMOTION_MODELS, type EmotionModelName, modelFile } from "../pipeline/emotion.ts";
import { readTrainingData } from "../train/data.ts";
import { prune, pruneFinetune } from "./prune.ts";

/** The students `distill` uses: in models/compact/ beside the teachers (models/compact/README.md). */
export function defaultStudentsDir(from: string): string {
  return join(from, "compact");
}

/** A function that prunes one model's spec (src/optimize/prune.ts), injected by the caller. */
export type PruneStep = (
  name: EmotionModelName,
  spec: ModelSpec,
) => Promise<{ spec: ModelSpec; note: string }>;

/** Where each model's training set is, for fine-tuning after pruning. */
export interface FinetuneData {
  /** The symbolic sets (`<task>-train.safetensors`; default data/build). */
  data?: string;
  /** The recognizer's folder (train.safetensors, validation.safetensors; default data/recognizer). */
  recognizerData?: string;
  /** Epochs of fine-tuning for every model (default FINETUNE_EPOCHS: 1, the recognizer 8). */
  epochs?: number;
  library?: string;
}

const TRAIN_SETS: Record<EmotionModelName, string> = {
  EmotionRecognizer: "train.safetensors",
  MelodyTransformer: "melody-train.safetensors",
  HarmonyPredictor: "harmony-train.safetensors",
  GroovePredictor: "groove-train.safetensors",
  DynamicsEngine: "dynamics-train.safetensors",
};

/** Fine-tuning peak learning rates: a tenth to a half of each model's training peak. */
/**
 * Default fine-tuning epochs: one pass over a symbolic set is 20,000-170,000 examples; the
 * recognizer's rendered set is a few thousand windows, and one pass left its valence correlation
 * 13% short after 50% pruning, so it gets the 8 epochs it was trained with.
 */
export const FINETUNE_EPOCHS: Record<EmotionModelName, number> = {
  EmotionRecognizer: 8,
  MelodyTransformer: 1,
  HarmonyPredictor: 1,
  GroovePredictor: 1,
  DynamicsEngine: 1,
};

const FINETUNE_LR: Record<EmotionModelName, number> = {
  EmotionRecognizer: 2e-4,
  MelodyTransformer: 2e-4,
  HarmonyPredictor: 5e-4,
  GroovePredictor: 5e-4,
  DynamicsEngine: 5e-4,
};

/**
 * A PruneStep of src/optimize/prune.ts: magnitude pruning to `sparsity` (unstructured, or
 * whole units with `structured`), then, with `finetune`, training on each model's training set
 * with the pruned weights held at 0 (pruneFinetune; the validation part held out).
 */
export function pruneStep(
  options: {
    sparsity: number;
    structured?: boolean;
    finetune?: FinetuneData;
    onProgress?: (line: string) => void;
  },
): PruneStep {
  const { sparsity, structured } = options;
  const kind = structured === true ? "structured" : "unstructured";
  return async (name, spec) => {
    if (options.finetune === undefined) {
      const pruned = prune(spec, { sparsity, structured });
      return { spec: pruned.spec, note: pruneNote(kind, sparsity, pruned.report) };
    }
    const f = options.finetune;
    const recognizer = name === "EmotionRecognizer";
    const folder = recognizer ? f.recognizerData ?? "data/recognizer" : f.data ?? "data/build";
    const path = join(folder, TRAIN_SETS[name]);
    if (!existsSync(path)) {
      throw new CadenzaError(
        "E_IO",
        `compress: --finetune: ${path} is missing (build it: ${
          recognizer ? "bun scripts/recognizer-data.ts" : "bun scripts/build-training-data.ts"
        })`,
      );
    }
    const data = await readTrainingData(path);
    const heldOut = recognizer
      ? await readTrainingData(join(folder, "validation.safetensors"))
      : undefined;
    let shown = -1;
    const result = await pruneFinetune(spec, {
      sparsity,
      structured,
      data,
      heldOut,
      epochs: f.epochs ?? FINETUNE_EPOCHS[name],
      lr: FINETUNE_LR[name],
      library: f.library ?? "fast",
      onProgress: (p) => {
        const percent = Math.floor((100 * p.step) / p.totalSteps);
        if (percent >= shown + 10) {
          shown = percent;
          options.onProgress?.(
            `compress: ${name}: fine-tuning ${percent}% (loss ${p.loss.toFixed(4)})`,
          );
        }
      },
    });
    const note = `${pruneNote(kind, sparsity, result.report)}, fine-tuned ${
      f.epochs ?? FINETUNE_EPOCHS[name]
    } epoch(s)`;
    return { spec: result.spec, note };
  };
}

function pruneNote(
  kind: string,
  sparsity: number,
  report: { matrixBefore: number; matrixNonzerosAfter: number },
): string {
  const kept = report.matrixNonzerosAfter / report.matrixBefore;
  return `pruned ${kind} ${sparsity} (${(100 * (1 - kept)).toFixed(1)}% of matrix weights gone)`;
}

export interface CompressOptions {
  /** The models/ directory the five models come from. */
  from: string;
  /** The directory written (created when missing; its five files and compress.json replaced). */
  out: string;
  /** Store every model as int8 (the library's per-row scheme). */
  int8?: boolean;
  /**
   * Use the distilled students of `studentsDir`: true for every student there (EmotionRecognizer,
   * MelodyTransformer), or the names of those to use.
   */
  distill?: boolean | readonly EmotionModelName[];
  /** Where the students are (default: `<from>/compact`). */
  studentsDir?: string;
  /** Prunes each model's spec after the student choice and before int8. */
  prune?: PruneStep;
  /** A line per step (progress). */
  onProgress?: (line: string) => void;
  /** The command line, recorded in compress.json. */
  command?: string;
}

export interface CompressedModel {
  name: EmotionModelName;
  /** The file it was made from. */
  source: string;
  /** "teacher" or "student". */
  origin: "teacher" | "student";
  pruned: string | null;
  precision: "f32" | "int8";
  parameters: number;
  /** Bytes of weights as the library holds them (the file's precision). */
  weightBytes: number;
  /** Bytes of the file written. */
  fileBytes: number;
}

export interface CompressReport {
  out: string;
  models: CompressedModel[];
  parameters: number;
  weightBytes: number;
  fileBytes: number;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The students present in `dir`, by model name. */
function studentFiles(dir: string): Map<EmotionModelName, string> {
  const found = new Map<EmotionModelName, string>();
  for (const info of EMOTION_MODELS) {
    const file = modelFile(dir, info.name);
    if (existsSync(file)) found.set(info.name, file);
  }
  return found;
}

/**
 * Writes the compressed pipeline directory. Every file goes to a staging folder beside `out`
 * first; only when all five are written are they moved into `out` (each by one rename), with
 * compress.json last, so that an interrupted run leaves `out` as it was.
 */
export async function compressPipeline(options: CompressOptions): Promise<CompressReport> {
  const { from, out } = options;
  const progress = options.onProgress ?? (() => {});
  if (!isDirectory(from)) {
    throw new CadenzaError("E_IO", `compress: ${from}: expected a directory of the five models`);
  }
  for (const info of EMOTION_MODELS) {
    const file = modelFile(from, info.name);
    if (!existsSync(file)) {
      throw new CadenzaError(
        "E_IO",
        `compress: ${from}: ${basename(file)} is missing (a pipeline directory holds ` +
          `${EMOTION_MODELS.map((m) => m.name).join(", ")})`,
      );
    }
  }
  if (existsSync(out) && !isDirectory(out)) {
    throw new CadenzaError("E_IO", `compress: --out ${out}: exists and is not a directory`);
  }
  const studentsDir = options.studentsDir ?? defaultStudentsDir(from);
  const distill = options.distill ?? false;
  const students = distill === false ? new Map() : studentFiles(studentsDir);
  if (Array.isArray(distill)) {
    for (const name of distill) {
      if (!EMOTION_MODELS.some((m) => m.name === name)) {
        throw new CadenzaError(
          "E_ARGUMENT",
          `compress: distill: "${name}" is not a pipeline model (expected one of ` +
            `${EMOTION_MODELS.map((m) => m.name).join(", ")})`,
        );
      }
      if (!students.has(name)) {
        throw new CadenzaError(
          "E_IO",
          `compress: distill: no student of ${name} in ${studentsDir} (expected ` +
            `${modelFile(studentsDir, name)})`,
        );
      }
    }
    for (const name of [...students.keys()]) if (!distill.includes(name)) students.delete(name);
  }
  if (distill !== false && students.size === 0) {
    throw new CadenzaError(
      "E_IO",
      `compress: --distill: no student in ${studentsDir} (expected e.g. ` +
        `${modelFile(studentsDir, "MelodyTransformer")}; models/compact/README.md says how ` +
        "they are made)",
    );
  }
  const target = resolve(out);
  mkdirSync(dirname(target), { recursive: true });
  const staging = join(
    dirname(target),
    `.${basename(target)}.compress-${process.pid}-${Date.now()}`,
  );
  mkdirSync(staging);
  const models: CompressedModel[] = [];
  try {
    for (const [index, info] of EMOTION_MODELS.entries()) {
      const student = students.get(info.name);
      const source = student ?? modelFile(from, info.name);
      let { spec } = await loadSpec(source);
      let pruned: string | null = null;
      if (options.prune !== undefined) {
        const result = await options.prune(info.name, spec);
        spec = result.spec;
        pruned = result.note;
      }
      const meta: Record<string, string> = {
        ...(spec.meta ?? {}),
        compressed_from: source,
        compressed_by: options.command ?? "compressPipeline",
      };
      spec = { ...spec, meta };
      const int8 = options.int8 === true;
      const bytes = int8 ? writeSafetensorsInt8(quantiseSpec(spec)) : writeSafetensors(spec);
      writeFileAtomicSync(modelFile(staging, info.name), bytes);
      const model: CompressedModel = {
        name: info.name,
        source,
        origin: student === undefined ? "teacher" : "student",
        pruned,
        precision: int8 ? "int8" : "f32",
        parameters: parameterCount(spec),
        weightBytes: weightBytes(spec, int8 ? "int8" : "f32"),
        fileBytes: bytes.length,
      };
      models.push(model);
      progress(
        `compress: [${index + 1}/${EMOTION_MODELS.length}] ${info.name}: ${model.origin}` +
          `${pruned === null ? "" : `, ${pruned}`}, ${model.precision}, ${model.parameters} ` +
          `parameters, ${model.weightBytes} weight bytes`,
      );
    }
    const report: CompressReport = {
      out,
      models,
      parameters: models.reduce((s, m) => s + m.parameters, 0),
      weightBytes: models.reduce((s, m) => s + m.weightBytes, 0),
      fileBytes: models.reduce((s, m) => s + m.fileBytes, 0),
    };
    const manifest = {
      from,
      command: options.command ?? null,
      int8: options.int8 === true,
      distill: [...students.keys()],
      studentsDir: students.size > 0 ? studentsDir : null,
      ...report,
    };
    writeFileAtomicSync(
      join(staging, "compress.json"),
      new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n"),
    );
    mkdirSync(out, { recursive: true });
    for (const name of [...EMOTION_MODELS.map((m) => `${m.name}.safetensors`), "compress.json"]) {
      renameSync(join(staging, name), join(out, name));
    }
    return report;
  } finally {
    for (const name of existsSync(staging) ? readdirSync(staging) : []) {
      rmSync(join(staging, name), { force: true });
    }
    rmSync(staging, { recursive: true, force: true });
  }
}
