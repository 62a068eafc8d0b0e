/**
 * Pruning, public API: `prune` (magnitude pruning, unstructured or structured; the passes are
 * in magnitude.ts) and `pruneFinetune` (prune, then fine-tune with the training engine, in one
 * round or gradually in several). Unstructured fine-tuning holds every removed weight at 0
 * through the trainer's native trainable mask (`Trainer.setTrainable`: a held parameter is
 * never changed by a step, weight decay included), so nothing has to be re-applied after each
 * optimiser step. A structurally pruned model is an ordinary smaller spec and fine-tunes as
 * any model does.
 *
 * ```ts
 * const data = await readTrainingData("harmony-train.safetensors");
 * const { spec, report, history } = await pruneFinetune(model.spec, {
 *   sparsity: 0.5, data, epochs: 1, steps: 2, lr: 1e-4,
 * });
 * ```
 */

import { CadenzaError } from "../errors.ts";
import type { ModelSpec } from "../model/spec.ts";
import { outputSize, validateSpec } from "../model/spec.ts";
import type { LibraryChoice } from "../native/library.ts";
import {
  Batcher,
  checkDataForModel,
  type LossName,
  splitData,
  type TrainingData,
} from "../train/data.ts";
import { type Metrics, Trainer, type TrainerOptions } from "../train/trainer.ts";
import {
  layerSparsities,
  mergeMasks,
  type Planned,
  type PruneMasks,
  type PruneOptions,
  type PruneReport,
  pruneReport,
  type PruneResult,
  pruneStructuredTo,
  pruneUnstructured,
  trainableMask,
  unitsOf,
} from "./magnitude.ts";

export type {
  LayerPruneReport,
  PruneAction,
  PruneMasks,
  PruneOptions,
  PruneReport,
  PruneResult,
} from "./magnitude.ts";
export { trainableMask } from "./magnitude.ts";

/**
 * Magnitude pruning of `spec` (a copy; the argument is not changed). Returns the pruned spec,
 * a report per layer and, for unstructured pruning (and zeroed heads), the masks of the removed
 * entries. The pruned spec's meta records `pruned` ("unstructured" or "structured") and
 * `pruned_sparsity`. See src/optimize/magnitude.ts for what each mode removes.
 *
 * @example
 * const { spec, report } = prune(model.spec, { sparsity: 0.5 });
 * report.matrixNonzerosAfter / report.matrixBefore;   // 0.5
 * const small = prune(model.spec, { sparsity: 0.5, structured: true }).spec;  // fewer units
 */
export function prune(spec: ModelSpec, options: PruneOptions): PruneResult {
  validateSpec(spec, "prune");
  const sparsities = layerSparsities(spec, options);
  const structured = options.structured ?? false;
  const r = structured
    ? pruneStructuredTo(spec, (i, units) => Math.round(sparsities[i] * units), options.heads ?? 0)
    : pruneUnstructured(spec, sparsities);
  const out = r.spec;
  out.meta = {
    ...(out.meta ?? {}),
    pruned: structured ? "structured" : "unstructured",
    pruned_sparsity: String(options.sparsity),
  };
  validateSpec(out, "prune (result)");
  const report = pruneReport(spec, out, r.planned, sparsities, structured, options.sparsity);
  return r.masks === undefined ? { spec: out, report } : { spec: out, report, masks: r.masks };
}

/** One fine-tuning step's news, for a progress line. */
export interface PruneProgress {
  /** Round (1-based) of `rounds`, each a pruning then `epochs` epochs of fine-tuning. */
  round: number;
  rounds: number;
  epoch: number;
  epochs: number;
  /** Steps done over the whole run, of `totalSteps`. */
  step: number;
  totalSteps: number;
  loss: number;
  /** Sequences trained on so far. */
  examples: number;
}

export interface PruneFinetuneOptions extends PruneOptions {
  /** Training sequences (docs/TRAINING.md); its `split` 1 part is held out, never trained on. */
  data: TrainingData;
  /** Held-out data scored after each round (default: the data's split, else none). */
  heldOut?: TrainingData;
  /** Default: the data's metadata, else xent for class ids and mse for values. */
  loss?: LossName;
  /** Fine-tuning epochs after each pruning round (default 1). */
  epochs?: number;
  /**
   * Rounds of prune-then-fine-tune (default 1). Round r of R prunes to
   * `sparsity * (1 - (1 - r / R)^3)` (the cubic schedule of gradual pruning), so the last
   * round reaches the target.
   */
  steps?: number;
  /** Peak learning rate of each round's cosine schedule (default 1e-4). */
  lr?: number;
  /** Sequences per step (default 32). */
  batch?: number;
  /** Steps per sequence (default the data's T). */
  seqLen?: number;
  /** Data order (default 1). */
  seed?: number;
  /** Further trainer options (optimizer, weightDecay, clipNorm, threads, ...). */
  trainer?: Omit<TrainerOptions, "lr" | "batch" | "seqLen" | "loss" | "totalSteps" | "library">;
  library?: LibraryChoice;
  onProgress?: (progress: PruneProgress) => void;
}

export interface PruneRound {
  round: number;
  /** The sparsity this round pruned to (of the model's own). */
  sparsity: number;
  /** Mean training loss of the round's last epoch. */
  trainLoss: number;
  /** Held-out metrics after the round's fine-tuning (null without held-out data). */
  heldOut: Metrics | null;
  /** Held-out metrics right after the round's pruning, before its fine-tuning. */
  prunedHeldOut: Metrics | null;
}

export interface PruneFinetuneResult {
  spec: ModelSpec;
  report: PruneReport;
  /** Unstructured: the entries held at 0 (what `trainableMask` turns into the trainer's). */
  masks?: PruneMasks;
  history: PruneRound[];
}

const FINETUNE_KEYS = [
  "sparsity",
  "structured",
  "perLayer",
  "heads",
  "data",
  "heldOut",
  "loss",
  "epochs",
  "steps",
  "lr",
  "batch",
  "seqLen",
  "seed",
  "trainer",
  "library",
  "onProgress",
];

function positiveInt(field: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `pruneFinetune: options.${field}: expected a positive integer, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * Prunes `spec` and fine-tunes it on `data` with the native training engine: in `steps`
 * rounds, each pruning further (cubic schedule) and then training `epochs` epochs. Pruned
 * weights stay exactly 0 (unstructured: the trainer's trainable mask holds them). Returns the
 * pruned, fine-tuned spec, the report against the original, and each round's held-out figures.
 *
 * @example
 * const data = await readTrainingData("data/build/harmony-train.safetensors");
 * const r = await pruneFinetune(spec, { sparsity: 0.5, data, epochs: 1 });
 * r.history.at(-1)?.heldOut?.accuracy;
 */
export async function pruneFinetune(
  spec: ModelSpec,
  options: PruneFinetuneOptions,
): Promise<PruneFinetuneResult> {
  validateSpec(spec, "pruneFinetune");
  for (const key of Object.keys(options)) {
    if (!FINETUNE_KEYS.includes(key)) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `pruneFinetune: options.${key}: expected no such option (the options are ${
          FINETUNE_KEYS.join(", ")
        })`,
      );
    }
  }
  const { data } = options;
  const sparsities = layerSparsities(spec, {
    sparsity: options.sparsity,
    structured: options.structured,
    perLayer: options.perLayer,
    heads: options.heads,
  });
  const structured = options.structured ?? false;
  const rounds = positiveInt("steps", options.steps, 1);
  const epochs = positiveInt("epochs", options.epochs, 1);
  const batch = positiveInt("batch", options.batch, 32);
  const seed = options.seed ?? 1;
  const loss = options.loss ?? (data.meta.loss as LossName | undefined) ??
    (data.targetKind === "classes" ? "xent" : "mse");
  const shape = {
    inputSize: spec.inputSize,
    outputSize: outputSize(spec),
    source: "pruneFinetune",
  };
  checkDataForModel(data, shape, loss);
  let train = data;
  let heldOut = options.heldOut ?? null;
  if (data.split?.includes(1)) {
    const parts = splitData(data, 0.1, seed);
    train = parts.train;
    heldOut ??= parts.heldOut;
  }
  if (heldOut !== null) checkDataForModel(heldOut, shape, loss);
  const seqLen = positiveInt("seqLen", options.seqLen, train.steps);
  const batches = Math.floor(train.count / batch);
  if (batches < 1) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `${train.source}: ${train.count} training sequences make no batch of ${batch}`,
    );
  }
  const original = unitsOfAll(spec);
  let current = spec;
  let masks: PruneMasks | undefined;
  let numbering: number[][] | undefined;
  const planned: Planned[] = spec.layers.map(() => ({ action: "none" }));
  const history: PruneRound[] = [];
  const totalSteps = rounds * epochs * batches;
  let stepsDone = 0;
  let examples = 0;
  for (let round = 1; round <= rounds; round++) {
    const share = 1 - (1 - round / rounds) ** 3;
    const now = sparsities.map((s) => s * share);
    let roundPlanned: Planned[];
    if (structured) {
      const r = pruneStructuredTo(
        current,
        (i, units) => Math.max(0, Math.round(now[i] * original[i]) - (original[i] - units)),
        (options.heads ?? 0) * share,
        numbering,
      );
      current = r.spec;
      numbering = r.numbering;
      masks = mergeMasks(masks, r.masks);
      roundPlanned = r.planned;
    } else {
      const r = pruneUnstructured(current, now);
      current = r.spec;
      masks = mergeMasks(masks, r.masks);
      roundPlanned = r.planned;
    }
    mergePlanned(planned, roundPlanned);
    const trainer = await Trainer.create(current, {
      ...options.trainer,
      lr: options.lr ?? 1e-4,
      batch,
      seqLen,
      loss,
      totalSteps: epochs * batches,
      clipNorm: options.trainer?.clipNorm ?? 1,
      library: options.library,
    }, "pruneFinetune");
    try {
      if (masks !== undefined) trainer.setTrainable(trainableMask(current, masks));
      const prunedHeldOut = heldOut === null ? null : trainer.evaluateData(heldOut);
      let trainLoss = NaN;
      const batcher = new Batcher(train, { batch, seqLen, seed });
      for (let epoch = 0; epoch < epochs; epoch++) {
        let sum = 0;
        let count = 0;
        for (const b of batcher.epoch((round - 1) * epochs + epoch)) {
          const l = trainer.stepBatch(b);
          sum += l;
          count++;
          stepsDone++;
          examples += b.rows;
          options.onProgress?.({
            round,
            rounds,
            epoch: epoch + 1,
            epochs,
            step: stepsDone,
            totalSteps,
            loss: l,
            examples,
          });
        }
        trainLoss = sum / count;
      }
      history.push({
        round,
        sparsity: options.sparsity * share,
        trainLoss,
        heldOut: heldOut === null ? null : trainer.evaluateData(heldOut),
        prunedHeldOut,
      });
      current = trainer.toSpec();
    } finally {
      trainer.dispose();
    }
  }
  current.meta = {
    ...(current.meta ?? {}),
    pruned: structured ? "structured" : "unstructured",
    pruned_sparsity: String(options.sparsity),
    finetuned: `${rounds} round(s) x ${epochs} epoch(s), lr ${options.lr ?? 1e-4}`,
  };
  const report = pruneReport(spec, current, planned, sparsities, structured, options.sparsity);
  const result: PruneFinetuneResult = { spec: current, report, history };
  if (masks !== undefined) result.masks = masks;
  return result;
}

function unitsOfAll(spec: ModelSpec): number[] {
  return spec.layers.map((l) => unitsOf(l));
}

/** Accumulates a round's actions: removed units and heads add up, reasons stay. */
function mergePlanned(into: Planned[], round: Planned[]): void {
  round.forEach((p, i) => {
    const q = into[i];
    if (p.action !== "none") q.action = p.action;
    if (p.reason !== undefined && q.action === "none") q.reason = p.reason;
    if (p.removedUnits !== undefined) {
      q.removedUnits = [...(q.removedUnits ?? []), ...p.removedUnits].sort((a, b) => a - b);
    }
    if (p.removedHeads !== undefined) {
      q.removedHeads = [...new Set([...(q.removedHeads ?? []), ...p.removedHeads])].sort((a, b) =>
        a - b
      );
    }
  });
}
