/**
 * Gradient checks through the training ABI: the native f32 gradient (cz_trainer_grad, through
 * Trainer.gradient) of every layer kind under every loss, on random odd shapes, at sequence
 * lengths 1 and 37, against central finite differences of the float64 reference
 * (test/train_reference.ts). Runtime-neutral: test/train-grad.test.ts and
 * test/deno/train-grad.test.ts register the cases.
 *
 * Tolerance, per checked parameter: |native - fd| <= 2e-3 * (|fd| + 1e-2 * max |fd|), the max
 * over the model's checked parameters. Why: the reference's quotient is good to about 1e-9
 * (h = 1e-5 * max(1, |w|) in float64: O(h^2) truncation, O(1e-16 / h) rounding); the native
 * f32 gradient carries float32 rounding through sums of up to a few hundred terms and 37 steps
 * of backpropagation through time, and the vectorised activations' errors (at most 5e-7, zig
 * act tests): about 1e-5 relative at worst, so 2e-3 leaves a factor of 100. A wrong derivative
 * (a missing term, a transposed matrix, a wrong sign) is off by O(1). The 1e-2 * max term
 * judges the smallest entries, where f32 cancellation dominates, against the gradient's scale.
 * batchnorm's mean and var are checked too: the ABI reports their true gradient (and never
 * updates them).
 */

import type { Activation, LayerKind, ModelSpec } from "../../src/model/spec.ts";
import { parameterLayout } from "../../src/train/params.ts";
import { Trainer, type TrainerOptions } from "../../src/train/trainer.ts";
import { ALL_ACTIVATIONS, ALL_KINDS, randomLayer, Rng } from "../helpers.ts";
import {
  finiteDifferences,
  type RefBatch,
  referenceLoss,
  type RefLoss,
  type RefLossConfig,
  sampledIndices,
} from "../train_reference.ts";
import { type Case, check, fail } from "./check.ts";

const RELATIVE = 2e-3;
const SCALE_SHARE = 1e-2;

interface LossCase {
  name: string;
  cfg: RefLossConfig;
  /** The head's activation. */
  head: "linear" | "tanh" | "softmax" | "sigmoid";
}

const LOSS_CASES: LossCase[] = [
  { name: "mse", cfg: { loss: "mse" }, head: "tanh" },
  {
    name: "xent ids + label smoothing",
    cfg: { loss: "xent", ids: true, labelSmoothing: 0.1 },
    head: "softmax",
  },
  { name: "xent distributions", cfg: { loss: "xent" }, head: "linear" },
  { name: "bce", cfg: { loss: "bce" }, head: "sigmoid" },
  { name: "kl T=2", cfg: { loss: "kl", temperature: 2 }, head: "softmax" },
];

/** A model: the layer under test, then a dense head of `k` outputs. */
function modelFor(rng: Rng, kind: LayerKind, seqLen: number, head: LossCase["head"]): ModelSpec {
  const inputSize = rng.pick([3, 5]);
  const layer = randomLayer(rng, kind, inputSize, {
    outputSize: rng.pick([3, 5]),
    context: kind === "attention" || kind === "transformer" ? rng.pick([1, 4, 40]) : undefined,
    ffDim: kind === "transformer" ? 7 : undefined,
  });
  const k = rng.pick([3, 4]);
  const w = layer.outputSize;
  const headLayer = randomLayer(rng, "dense", w, { outputSize: k, activation: head, bias: true });
  void seqLen;
  return { inputSize, layers: [layer, headLayer], maxBatch: 4 };
}

function batchFor(
  rng: Rng,
  spec: ModelSpec,
  cfg: RefLossConfig,
  batch: number,
  seqLen: number,
): RefBatch {
  const k = spec.layers[spec.layers.length - 1].outputSize;
  const positions = batch * seqLen;
  const inputs = rng.floats(positions * spec.inputSize, -1, 1);
  let targets: Float32Array;
  if (cfg.loss === "xent" && cfg.ids) {
    targets = Float32Array.from({ length: positions }, () => rng.int(0, k - 1));
  } else if (cfg.loss === "xent") {
    targets = new Float32Array(positions * k);
    for (let p = 0; p < positions; p++) {
      const row = rng.floats(k, 0.05, 1);
      const sum = row.reduce((s, v) => s + v, 0);
      targets.set(row.map((v) => v / sum), p * k);
    }
  } else if (cfg.loss === "bce") {
    targets = rng.floats(positions * k, 0, 1);
  } else {
    targets = rng.floats(positions * k, -1.5, 1.5);
  }
  // Some positions masked out and some weighted, so the mask's arithmetic is checked too.
  const mask = Float32Array.from(
    { length: positions },
    (_, p) => (p % 5 === 3 ? 0 : p % 3 === 1 ? 0.5 : 1),
  );
  return { batch, seqLen, inputs, targets, mask };
}

function options(cfg: RefLossConfig, batch: number, seqLen: number): TrainerOptions {
  return {
    batch,
    seqLen,
    loss: cfg.loss as RefLoss,
    labelSmoothing: cfg.labelSmoothing ?? 0,
    temperature: cfg.temperature ?? 1,
  };
}

async function checkGradient(
  seed: number,
  kind: LayerKind,
  lc: LossCase,
  seqLen: number,
  activation?: Activation,
) {
  const rng = new Rng(seed);
  const spec = modelFor(rng, kind, seqLen, lc.head);
  if (activation !== undefined) spec.layers[0].activation = activation;
  const batch = 2;
  const b = batchFor(rng, spec, lc.cfg, batch, seqLen);
  const trainer = await Trainer.create(spec, options(lc.cfg, batch, seqLen));
  const what = () => `${kind} + dense(${lc.head}), ${lc.name}, seqLen ${seqLen}, seed ${seed}`;
  try {
    // Class ids go to the trainer as Int32Array (it hands the ABI their f32 values).
    const targets = lc.cfg.ids ? Int32Array.from(b.targets) : (b.targets as Float32Array);
    const native = trainer.gradient(b.inputs as Float32Array, targets, b.mask as Float32Array);
    const want = referenceLoss(spec, b, lc.cfg);
    check(
      Math.abs(native.loss - want) <= 1e-5 * Math.max(1, Math.abs(want)),
      () => `${what()}: loss ${native.loss}, float64 reference ${want}`,
    );
    const indices = sampledIndices(spec, 6);
    const fd = finiteDifferences(spec, b, lc.cfg, indices);
    const scale = fd.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    indices.forEach((index, j) => {
      const got = native.grad[index];
      const bound = RELATIVE * (Math.abs(fd[j]) + SCALE_SHARE * scale);
      if (!(Math.abs(got - fd[j]) <= bound)) {
        const slot = parameterLayout(spec).find((s) =>
          index >= s.offset && index < s.offset + s.length
        )!;
        fail(
          `${what()}: layer ${slot.layer} ${slot.name}[${index - slot.offset}]: native ${got}, ` +
            `finite difference ${fd[j]} (bound ${bound.toExponential(2)})`,
        );
      }
    });
  } finally {
    trainer.dispose();
  }
}

export function trainGradCases(): Case[] {
  const cases: Case[] = [];
  // Every kind under a loss that rotates through the five, at lengths 1 and 37.
  ALL_KINDS.forEach((kind, i) => {
    for (const seqLen of [1, 37]) {
      const lc = LOSS_CASES[(i + (seqLen === 1 ? 0 : 2)) % LOSS_CASES.length];
      cases.push({
        name: `gradient: ${kind}, ${lc.name}, seqLen ${seqLen}`,
        run: () => checkGradient(1000 + i * 2 + (seqLen === 1 ? 0 : 1), kind, lc, seqLen),
      });
    }
  });
  // Every loss on a recurrent model and a transformer at length 37, and on dense at length 1.
  LOSS_CASES.forEach((lc, i) => {
    for (const [kind, seqLen] of [["lstm", 37], ["transformer", 37], ["dense", 1]] as const) {
      cases.push({
        name: `gradient: loss ${lc.name} through ${kind}, seqLen ${seqLen}`,
        run: () => checkGradient(2000 + i * 3 + seqLen, kind, lc, seqLen),
      });
    }
  });
  // Every activation, fused into a dense layer (and in an activation layer), under mse.
  ALL_ACTIVATIONS.forEach((act, i) => {
    for (const kind of ["dense", "activation"] as const) {
      cases.push({
        name: `gradient: ${kind} ${act}, mse, seqLen 3`,
        run: () =>
          checkGradient(3000 + i * 2 + (kind === "dense" ? 0 : 1), kind, LOSS_CASES[0], 3, act),
      });
    }
  });
  return cases;
}
