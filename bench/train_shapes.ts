/**
 * The training benchmark's shapes: the five pipeline models (src/pipeline/emotion.ts), each
 * with the loss its outputs call for and the batch it trains at. The cadenza, JAX and
 * TensorFlow.js benchmarks all read them from here; run as a script it prints them as JSON for
 * bench/train-jax.py:
 *
 *   bun bench/train_shapes.ts | nice python3 bench/train-jax.py
 *
 * An "example" is one sequence: the two sequence models train on batches of 16 sequences of 32
 * steps (the MelodyTransformer's context), the three MLPs on batches of 128 single steps.
 */

import { EMOTION_MODELS } from "../src/pipeline/emotion.ts";
import type { LayerArch } from "../src/model/spec.ts";

export type TrainBenchLoss = "mse" | "xent" | "bce";

export interface TrainShape {
  name: string;
  inputSize: number;
  outputSize: number;
  layers: LayerArch[];
  loss: TrainBenchLoss;
  batch: number;
  seqLen: number;
}

const SETTINGS: Record<string, { loss: TrainBenchLoss; batch: number; seqLen: number }> = {
  // 64 emotion values in [-1, 1]: regression.
  EmotionRecognizer: { loss: "mse", batch: 16, seqLen: 32 },
  // 128 independent note probabilities (sigmoid): binary cross-entropy.
  MelodyTransformer: { loss: "bce", batch: 16, seqLen: 32 },
  // 64 chord probabilities (softmax): cross-entropy against a chord id.
  HarmonyPredictor: { loss: "xent", batch: 128, seqLen: 1 },
  DynamicsEngine: { loss: "bce", batch: 128, seqLen: 1 },
  GroovePredictor: { loss: "mse", batch: 128, seqLen: 1 },
};

export const TRAIN_SHAPES: readonly TrainShape[] = EMOTION_MODELS.map((m) => ({
  name: m.name,
  inputSize: m.inputSize,
  outputSize: m.outputSize,
  layers: m.layers,
  ...SETTINGS[m.name],
}));

if (import.meta.main) console.log(JSON.stringify(TRAIN_SHAPES));
