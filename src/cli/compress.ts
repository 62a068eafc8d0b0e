/**
 * `cadenza compress models/ --out DIR [--int8] [--distill] [--prune S]`: a deployable pipeline
 * directory (src/optimize/compress.ts) that EmotionPipeline.load, the real-time engine and
 * `live`/`generate --models DIR` take as they are.
 */

import { compressPipeline, pruneStep } from "../optimize/compress.ts";
import type { EmotionModelName } from "../pipeline/emotion.ts";
import { expectPositionals, intFlag, type ParsedArgs, UsageError } from "./args.ts";
import type { Command, Output } from "./command.ts";

/** The command line as given, for compress.json. */
function commandLine(args: ParsedArgs): string {
  const parts = ["cadenza compress", ...args.positionals];
  for (const [name, value] of args.values) parts.push(`--${name} ${value}`);
  for (const name of args.switches) parts.push(`--${name}`);
  return parts.join(" ");
}

/** --distill (every student) or --distill-only A,B (those). */
function distillChoice(args: ParsedArgs): boolean | EmotionModelName[] {
  const only = args.values.get("distill-only");
  if (only === undefined) return args.switches.has("distill");
  const names = only.split(",").map((name) => name.trim()).filter((name) => name !== "");
  if (names.length === 0) throw new UsageError("compress: --distill-only needs model names");
  return names as EmotionModelName[];
}

async function run(args: ParsedArgs, output: Output): Promise<number> {
  const [from] = expectPositionals(args, ["models"], "compress");
  const out = args.values.get("out");
  if (out === undefined) throw new UsageError("compress: --out DIR is required");
  const finetune = args.switches.has("finetune");
  const pruneText = args.values.get("prune");
  if (pruneText === undefined && (finetune || args.switches.has("structured"))) {
    throw new UsageError("compress: --finetune and --structured go with --prune S");
  }
  for (const flag of ["data", "recognizer-data", "epochs"]) {
    if (args.values.has(flag) && !finetune) {
      throw new UsageError(`compress: --${flag} goes with --prune S --finetune`);
    }
  }
  const sparsity = pruneText === undefined ? undefined : Number(pruneText);
  if (sparsity !== undefined && !(pruneText!.trim() !== "" && sparsity > 0 && sparsity < 1)) {
    throw new UsageError(`compress: --prune must be a sparsity in (0, 1), got "${pruneText}"`);
  }
  const epochs = args.values.has("epochs") ? intFlag(args, "epochs", 1, "compress") : undefined;
  const prune = sparsity === undefined ? undefined : pruneStep({
    sparsity,
    structured: args.switches.has("structured"),
    finetune: finetune
      ? {
        data: args.values.get("data"),
        recognizerData: args.values.get("recognizer-data"),
        epochs,
        library: args.values.get("library"),
      }
      : undefined,
    onProgress: (line) => output.err(line),
  });
  const report = await compressPipeline({
    from,
    out,
    int8: args.switches.has("int8"),
    distill: distillChoice(args),
    studentsDir: args.values.get("students"),
    prune,
    onProgress: (line) => output.err(line),
    command: commandLine(args),
  });
  if (args.switches.has("json")) {
    output.out(JSON.stringify(report, null, 2));
    return 0;
  }
  for (const m of report.models) {
    output.out(
      `${m.name}: ${m.origin}${m.pruned === null ? "" : `, ${m.pruned}`}, ${m.precision}, ` +
        `${m.parameters} parameters, ${m.weightBytes} weight bytes`,
    );
  }
  output.out(
    `compress: ${out}: ${report.parameters} parameters, ${report.weightBytes} weight bytes ` +
      `(${report.fileBytes} file bytes); check it with: cadenza eval ${out}`,
  );
  return 0;
}

export const compressCommand: Command = {
  name: "compress",
  summary: "a deployable pipeline directory: int8, distilled students, pruning",
  help: [
    "usage: cadenza compress MODELS_DIR --out DIR [--int8] [--distill | --distill-only A,B]",
    "                        [--prune S [--structured] [--finetune [--epochs N]]] [--json]",
    "",
    "Writes DIR with the five pipeline models (<Name>.safetensors) and compress.json (how each",
    "was made), ready for EmotionPipeline.load(DIR), RealtimeEngine.start({ models: DIR }),",
    "`cadenza live --models DIR` and `cadenza generate --models DIR`. The files are written to",
    "a staging folder beside DIR and moved in only when all five are whole. docs/OPTIMIZATION.md",
    "has the accuracy and speed of each choice (`cadenza eval DIR`, `cadenza bench --models DIR`).",
    "",
    "flags:",
    "  --out DIR          the pipeline directory to write (created if missing)",
    "  --int8             store every model as int8: I8 weight matrices and one f32 scale per",
    "                     row (the library's scheme); loaded as int8 without an f32 copy",
    "  --distill          use the distilled students (EmotionRecognizer, MelodyTransformer, half",
    "                     the parameters or fewer) of MODELS_DIR/compact/ in place of the teachers",
    "  --distill-only A,B only these students (e.g. MelodyTransformer); implies --distill",
    "  --students DIR     where the students are (default MODELS_DIR/compact)",
    "  --prune S          magnitude pruning (src/optimize/prune.ts) of every model to sparsity",
    "                     S in (0, 1): single weights (zeros; the file keeps its shapes), or",
    "  --structured       whole hidden units, attention feed-forward columns (smaller shapes)",
    "  --finetune         then fine-tune each pruned model on its training set, pruned weights",
    "                     held at 0 (minutes per model; a progress line per 10%)",
    "  --data DIR         the symbolic training sets (default data/build)",
    "  --recognizer-data DIR  the recognizer's (default data/recognizer)",
    "  --epochs N         fine-tuning epochs for every model (default 1, EmotionRecognizer 8)",
    "  --library L        for fine-tuning: fast (default), safe or a library path",
    "  --json             print the report as JSON",
  ].join("\n"),
  flags: {
    values: {
      out: "DIR",
      students: "DIR",
      "distill-only": "NAMES",
      prune: "S",
      data: "DIR",
      "recognizer-data": "DIR",
      epochs: "N",
      library: "safe|fast|PATH",
    },
    switches: ["int8", "distill", "json", "structured", "finetune"],
  },
  run,
};
