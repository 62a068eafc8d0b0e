/**
 * `cadenza prune IN OUT --sparsity S [--structured] [--finetune --data FILE]`: magnitude
 * pruning of a model file (src/optimize/prune.ts), optionally fine-tuned afterwards with the
 * training engine (gradually with --rounds), written as an ordinary .safetensors model. OUT is
 * written to a temporary file beside it and renamed into place, so a failed or interrupted run
 * never leaves a partial OUT.
 */

import { CadenzaError } from "../errors.ts";
import { writeSafetensors } from "../model/formats/safetensors.ts";
import { loadSpec } from "../model/load.ts";
import type { ModelSpec } from "../model/spec.ts";
import {
  prune,
  pruneFinetune,
  type PruneFinetuneResult,
  type PruneReport,
} from "../optimize/prune.ts";
import {
  checkDataForModel,
  LOSSES,
  type LossName,
  readTrainingData,
  splitData,
  type TrainingData,
} from "../train/data.ts";
import { Progress } from "../train/progress.ts";
import { type Metrics, Trainer } from "../train/trainer.ts";
import { expectPositionals, type ParsedArgs, UsageError } from "./args.ts";
import { type Command, consoleOutput, type Output } from "./command.ts";
import { unwritableReason, writeAtomically } from "./files.ts";

function numberFlag(
  args: ParsedArgs,
  name: string,
  fallback: number | undefined,
  ok: (v: number) => boolean,
  expected: string,
): number | undefined {
  const text = args.values.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || !ok(value)) {
    throw new UsageError(`prune: --${name} must be ${expected}, got "${text}"`);
  }
  return value;
}

const fraction = (v: number) => v >= 0 && v < 1;
const positiveInt = (v: number) => Number.isInteger(v) && v >= 1;

/** "--per-layer 0=0.3,2=0.8" -> { 0: 0.3, 2: 0.8 }. */
function perLayerFlag(text: string | undefined): Record<number, number> | undefined {
  if (text === undefined) return undefined;
  const out: Record<number, number> = {};
  for (const part of text.split(",")) {
    const m = /^\s*(\d+)\s*=\s*([0-9.eE+-]+)\s*$/.exec(part);
    const value = m === null ? NaN : Number(m[2]);
    if (m === null || !fraction(value)) {
      throw new UsageError(
        `prune: --per-layer must be LAYER=S pairs separated by commas with S in [0, 1) ` +
          `(e.g. 0=0.3,2=0.8), got "${part}"`,
      );
    }
    out[Number(m[1])] = value;
  }
  return out;
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function reportLines(report: PruneReport): string[] {
  const lines = report.layers.map((l) => {
    const what = l.action === "none"
      ? `kept${l.reason === undefined ? "" : ` (${l.reason})`}`
      : l.action === "weights"
      ? `${l.nonzerosAfter}/${l.matrixBefore} weights left (${pct(l.weightSparsity)} pruned)`
      : `${l.shapeBefore} -> ${l.shapeAfter}` +
        (l.removedHeads === undefined ? "" : `, ${l.removedHeads.length} head(s) zeroed`);
    return `  layer ${l.layer} ${l.kind}${l.name === undefined ? "" : ` "${l.name}"`}: ${what}`;
  });
  lines.push(
    `  parameters ${report.parametersBefore} -> ${report.parametersAfter}; nonzero weights ` +
      `${report.matrixBefore} -> ${report.matrixNonzerosAfter} (${
        pct(1 - report.matrixNonzerosAfter / report.matrixBefore)
      } of the weight matrices gone)`,
  );
  return lines;
}

function metricsText(m: Metrics | null, loss: LossName): string {
  if (m === null) return "n/a";
  const what = loss === "mse" ? "mean abs error" : "accuracy";
  return `loss ${m.loss.toPrecision(4)}, ${what} ${m.accuracy.toPrecision(4)}`;
}

interface FinetunePlan {
  data: TrainingData;
  heldOut?: TrainingData;
  loss: LossName;
}

async function finetunePlan(args: ParsedArgs, spec: ModelSpec): Promise<FinetunePlan> {
  const path = args.values.get("data");
  if (path === undefined) throw new UsageError("prune: --finetune needs --data FILE");
  const data = await readTrainingData(path);
  const evalPath = args.values.get("eval");
  const heldOut = evalPath === undefined ? undefined : await readTrainingData(evalPath);
  const flag = args.values.get("loss");
  if (flag !== undefined && !(LOSSES as readonly string[]).includes(flag)) {
    throw new UsageError(`prune: --loss must be one of ${LOSSES.join(", ")}, got "${flag}"`);
  }
  const loss =
    (flag ?? data.meta.loss ?? (data.targetKind === "classes" ? "xent" : "mse")) as LossName;
  const shape = {
    inputSize: spec.inputSize,
    outputSize: spec.layers[spec.layers.length - 1].outputSize,
    source: args.positionals[0],
  };
  checkDataForModel(data, shape, loss);
  if (heldOut !== undefined) checkDataForModel(heldOut, shape, loss);
  return heldOut === undefined ? { data, loss } : { data, heldOut, loss };
}

async function run(args: ParsedArgs, output: Output): Promise<number> {
  const [input, out] = expectPositionals(args, ["in", "out"], "prune");
  const sparsity = numberFlag(args, "sparsity", undefined, fraction, "a fraction in [0, 1)");
  if (sparsity === undefined) throw new UsageError("prune: --sparsity S is required (e.g. 0.5)");
  const structured = args.switches.has("structured");
  const heads = numberFlag(args, "heads", undefined, fraction, "a fraction in [0, 1)");
  if (heads !== undefined && !structured) {
    throw new UsageError("prune: --heads goes with --structured");
  }
  const finetune = args.switches.has("finetune");
  for (const flag of ["data", "eval", "epochs", "rounds", "lr", "batch", "seed", "loss"]) {
    if (!finetune && args.values.has(flag)) {
      throw new UsageError(`prune: --${flag} goes with --finetune`);
    }
  }
  const unwritable = unwritableReason(out);
  if (unwritable !== null) {
    throw new CadenzaError("E_IO", `prune: cannot write ${out}: ${unwritable}`);
  }
  const options = {
    sparsity,
    structured,
    perLayer: perLayerFlag(args.values.get("per-layer")),
    ...(heads === undefined ? {} : { heads }),
  };
  const { spec } = await loadSpec(input);
  const library = args.values.get("library");
  let result: { spec: ModelSpec; report: PruneReport };
  let tuned: PruneFinetuneResult | null = null;
  let original: Metrics | null = null;
  let loss: LossName = "xent";
  if (finetune) {
    const plan = await finetunePlan(args, spec);
    loss = plan.loss;
    const epochs = numberFlag(args, "epochs", 1, positiveInt, "a positive integer")!;
    const rounds = numberFlag(args, "rounds", 1, positiveInt, "a positive integer")!;
    const batch = numberFlag(args, "batch", 32, (v) => positiveInt(v) && v <= 4096, "1..4096")!;
    const batches = Math.floor(plan.data.count / batch);
    const direct = output === consoleOutput;
    const progress = new Progress({
      totalSteps: Math.max(1, rounds * epochs * batches),
      label: "prune",
      tty: direct ? undefined : false,
      write: direct ? undefined : (text) => output.err(text.replace(/\n$/, "")),
    });
    tuned = await pruneFinetune(spec, {
      ...options,
      data: plan.data,
      ...(plan.heldOut === undefined ? {} : { heldOut: plan.heldOut }),
      loss: plan.loss,
      epochs,
      steps: rounds,
      lr: numberFlag(args, "lr", 1e-4, (v) => v > 0, "a number > 0"),
      batch,
      seed: numberFlag(args, "seed", 1, (v) => Number.isInteger(v) && v >= 0, "an integer >= 0"),
      library,
      onProgress: (p) =>
        progress.update({
          epoch: (p.round - 1) * p.epochs + p.epoch,
          epochs: p.rounds * p.epochs,
          step: p.step,
          loss: p.loss,
          examples: p.examples,
        }),
    });
    progress.done();
    result = tuned;
    const heldOut = plan.heldOut ?? null;
    if (heldOut !== null || plan.data.split?.includes(1)) {
      original = await scoreOriginal(spec, plan, batch, library);
    }
  } else {
    result = prune(spec, options);
  }
  result.spec.meta = { ...(result.spec.meta ?? {}), pruned_from: input };
  writeAtomically(out, writeSafetensors(result.spec));
  if (args.switches.has("json")) {
    output.out(JSON.stringify({
      out,
      report: result.report,
      ...(tuned === null ? {} : { original, history: tuned.history }),
    }));
    return 0;
  }
  output.out(
    `prune: ${input} -> ${out} (${
      structured ? "structured" : "unstructured"
    }, sparsity ${sparsity})`,
  );
  for (const line of reportLines(result.report)) output.out(line);
  if (tuned !== null) {
    output.out(`  held-out, original: ${metricsText(original, loss)}`);
    for (const h of tuned.history) {
      output.out(
        `  round ${h.round} (sparsity ${h.sparsity.toFixed(3)}): pruned ${
          metricsText(h.prunedHeldOut, loss)
        }; fine-tuned ${metricsText(h.heldOut, loss)}`,
      );
    }
  }
  return 0;
}

/** The unpruned model on the same held-out part, through the same trainer evaluation. */
async function scoreOriginal(
  spec: ModelSpec,
  plan: FinetunePlan,
  batch: number,
  library: string | undefined,
): Promise<Metrics> {
  const heldOut = plan.heldOut ?? splitData(plan.data, 0.1, 1).heldOut;
  const trainer = await Trainer.create(spec, {
    batch,
    seqLen: plan.data.steps,
    loss: plan.loss,
    library,
  });
  try {
    return trainer.evaluateData(heldOut);
  } finally {
    trainer.dispose();
  }
}

export const pruneCommand: Command = {
  name: "prune",
  summary: "magnitude pruning, unstructured or structured, optionally fine-tuned",
  help: [
    "usage: cadenza prune IN OUT --sparsity S [--structured] [--finetune --data FILE [--epochs N]]",
    "",
    "Removes the weights of least magnitude from IN and writes OUT (.safetensors, an ordinary",
    "model file that loadModel and every command take). Without --structured each weight matrix",
    "loses the fraction S of its entries (set to 0; shapes stay). With --structured whole units",
    "go and the layers shrink: dense outputs, LSTM/GRU hidden units and transformer feed-forward",
    "columns (with the matching inputs of the layer that reads them); the model's input and",
    "output widths, and widths a transformer or a softmax depends on, stay. The summary lists",
    "each layer. With --finetune the pruned model trains further on --data (the pruned weights",
    "held at 0) and the held-out figures before and after are printed. docs/PRUNING.md.",
    "",
    "flags:",
    "  --sparsity S           fraction in [0, 1) removed from each layer (required)",
    "  --structured           remove whole units (smaller shapes) instead of single weights",
    "  --heads F              with --structured: zero this fraction of each attention layer's",
    "                         heads (their contribution removed; shapes stay)",
    "  --per-layer I=S,...    a different sparsity for some layers (e.g. 0=0.3,2=0.8)",
    "  --finetune             fine-tune after pruning (needs --data)",
    "  --data FILE            training data (docs/TRAINING.md); its split 1 part is held out",
    "  --eval FILE            held-out data (default: the data's split)",
    "  --epochs N             fine-tuning epochs per round (1)",
    "  --rounds N             gradual pruning: N rounds of prune then fine-tune (1)",
    "  --lr X                 peak learning rate of each round's cosine schedule (1e-4)",
    "  --batch N              sequences per step (32)",
    "  --loss L               xent, bce, mse or kl (default: the data's metadata)",
    "  --seed N               data order (1)",
    "  --json                 print the report (and the fine-tuning history) as JSON",
    "  --library L            safe (default), fast, or a library path (else CADENZA_LIB)",
  ].join("\n"),
  flags: {
    values: {
      sparsity: "S",
      heads: "F",
      "per-layer": "I=S,...",
      data: "FILE",
      eval: "FILE",
      epochs: "N",
      rounds: "N",
      lr: "X",
      batch: "N",
      loss: "L",
      seed: "N",
      library: "L",
    },
    switches: ["structured", "finetune", "json"],
  },
  run,
};
