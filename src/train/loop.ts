/**
 * The training loop the commands and tests share: epochs of seeded, shuffled batches, a
 * held-out evaluation after each epoch, a checkpoint every N steps (and at the end of each
 * epoch), and resumption from a checkpoint's recorded position. Because an epoch's order
 * depends only on (seed, epoch) and the trainer's state is restored exactly, a resumed run
 * takes the same steps as one that never stopped.
 */

import { CadenzaError } from "../errors.ts";
import { Batcher, type TrainingData } from "./data.ts";
import type { Progress } from "./progress.ts";
import type { Metrics, Trainer } from "./trainer.ts";

export interface FitOptions {
  epochs: number;
  /** Shuffle seed (an epoch's order depends on seed and epoch only). */
  seed: number;
  /** Where to write checkpoints, and how often in steps (0: only at each epoch's end). */
  checkpoint?: { path: string; every: number };
  /** Where to start: a checkpoint's progress record ({ epoch, batch }). */
  from?: { epoch: number; batch: number };
  progress?: Progress;
  /** Called after each epoch with its held-out metrics. */
  onEpoch?: (epoch: number, metrics: Metrics | null, trainLoss: number) => void;
  /** Stop after this many steps in this call, checkpointing there (a run in pieces). */
  stopAfter?: number;
}

export interface FitResult {
  /** Held-out metrics after each epoch run (null without held-out data). */
  history: (Metrics | null)[];
  /** Steps taken by this call. */
  steps: number;
  /** True when stopAfter ended the call early. */
  stopped: boolean;
}

export async function fit(
  trainer: Trainer,
  train: TrainingData,
  heldOut: TrainingData | null,
  options: FitOptions,
): Promise<FitResult> {
  const { batch, seqLen } = trainer.config;
  const batcher = new Batcher(train, { batch, seqLen, seed: options.seed });
  if (batcher.batches === 0) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `${train.source}: ${train.count} training sequences make no full batch of ${batch}`,
    );
  }
  const history: (Metrics | null)[] = [];
  const start = options.from ?? { epoch: 0, batch: 0 };
  let steps = 0;
  let examples = 0;
  const save = async (epoch: number, next: number) => {
    if (options.checkpoint === undefined) return;
    const done = next >= batcher.batches;
    await trainer.save(options.checkpoint.path, {
      epoch: done ? epoch + 1 : epoch,
      batch: done ? 0 : next,
      seed: options.seed,
      epochs: options.epochs,
    });
  };
  for (let epoch = start.epoch; epoch < options.epochs; epoch++) {
    let sum = 0;
    let count = 0;
    const from = epoch === start.epoch ? start.batch : 0;
    let b = from;
    for (const data of batcher.epoch(epoch, from)) {
      const loss = trainer.stepBatch(data);
      sum += loss;
      count++;
      steps++;
      b++;
      examples += data.rows;
      options.progress?.update({
        epoch: epoch + 1,
        epochs: options.epochs,
        step: trainer.stepCount,
        loss,
        examples,
      });
      const every = options.checkpoint?.every ?? 0;
      if (every > 0 && trainer.stepCount % every === 0) await save(epoch, b);
      if (options.stopAfter !== undefined && steps >= options.stopAfter) {
        await save(epoch, b);
        options.progress?.done();
        return { history, steps, stopped: true };
      }
    }
    const metrics = heldOut === null ? null : trainer.evaluateData(heldOut);
    history.push(metrics);
    options.onEpoch?.(epoch + 1, metrics, count > 0 ? sum / count : NaN);
    await save(epoch, batcher.batches);
  }
  options.progress?.done();
  return { history, steps, stopped: false };
}
