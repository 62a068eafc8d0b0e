/**
 * The emotion pipeline in TensorFlow.js, for bench/wasm.bench.ts: the same five models with
 * the weights cadenza loaded (read from each Model's spec), the same graph (EMOTION_GRAPH's
 * edges written out), stepped one position at a time with state as cadenza keeps it: the
 * LSTM's h and c, and each transformer block's key/value cache over the last `context`
 * positions. Written as a TensorFlow.js user would: weights as tensors made once (matrices
 * pre-transposed for matMul, the q/k/v projections fused), every step inside tf.tidy, the
 * five outputs read back with one dataSync.
 */

import * as tf from "@tensorflow/tfjs";
import type { Model } from "../src/model/model.ts";
import type { LayerSpec } from "../src/model/spec.ts";
import {
  CONTEXT,
  EMOTION_MODELS,
  type EmotionModelName,
  type EmotionPipeline,
} from "../src/pipeline/emotion.ts";
import { activate, layerNorm } from "./tfjs-ops.ts";

type Step = (x: tf.Tensor2D) => tf.Tensor2D;

interface Stateful {
  step: Step;
  reset(): void;
  dispose(): void;
}

function weight(layer: LayerSpec, name: string): Float32Array {
  const t = layer.tensors[name];
  if (!(t instanceof Float32Array)) {
    throw new Error(`wasm-tfjs: tensor ${name} of a ${layer.kind} layer is not f32`);
  }
  return t;
}

/** [out][in] row-major -> a [in, out] tensor for x [1, in] . W. */
function matrix(layer: LayerSpec, name: string, out: number, inputs: number): tf.Tensor2D {
  return tf.tidy(() => tf.tensor2d(weight(layer, name), [out, inputs]).transpose());
}

function vector(layer: LayerSpec, name: string): tf.Tensor1D {
  return tf.tensor1d(weight(layer, name));
}

function dense(layer: LayerSpec): Stateful {
  const w = matrix(layer, "W", layer.outputSize, layer.inputSize);
  const b = vector(layer, "b");
  return {
    step: (x) => activate(layer.activation, tf.add(tf.matMul(x, w), b)),
    reset() {},
    dispose: () => tf.dispose([w, b]),
  };
}

function lstm(layer: LayerSpec): Stateful {
  const n = layer.outputSize;
  const wx = matrix(layer, "Wx", 4 * n, layer.inputSize);
  const wh = matrix(layer, "Wh", 4 * n, n);
  const b = vector(layer, "b");
  let h: tf.Tensor2D = tf.zeros([1, n]);
  let c: tf.Tensor2D = tf.zeros([1, n]);
  return {
    step(x) {
      const z = tf.add(tf.add(tf.matMul(x, wx), tf.matMul(h, wh)), b);
      const [i, f, g, o] = tf.split(z, 4, 1);
      const cNext = tf.add(tf.mul(tf.sigmoid(f), c), tf.mul(tf.sigmoid(i), tf.tanh(g)));
      const hNext = tf.mul(tf.sigmoid(o), tf.tanh(cNext));
      // The state outlives the step's tidy.
      tf.dispose([h, c]);
      h = tf.keep(hNext) as tf.Tensor2D;
      c = tf.keep(cNext) as tf.Tensor2D;
      return hNext as tf.Tensor2D;
    },
    reset() {
      tf.dispose([h, c]);
      h = tf.zeros([1, n]);
      c = tf.zeros([1, n]);
    },
    dispose: () => tf.dispose([wx, wh, b, h, c]),
  };
}

function transformer(layer: LayerSpec): Stateful {
  const d = layer.outputSize;
  const heads = layer.heads!;
  const dh = d / heads;
  const context = layer.context!;
  const ff = layer.ffDim!;
  const eps = layer.epsilon ?? 1e-5;
  const qkv = tf.tidy(() =>
    tf.concat([
      matrix(layer, "Wq", d, d),
      matrix(layer, "Wk", d, d),
      matrix(layer, "Wv", d, d),
    ], 1)
  );
  const bqkv = tf.concat([vector(layer, "bq"), vector(layer, "bk"), vector(layer, "bv")]);
  const wo = matrix(layer, "Wo", d, d);
  const bo = vector(layer, "bo");
  const [g1, b1n, g2, b2n] = ["ln1_g", "ln1_b", "ln2_g", "ln2_b"].map((n) => vector(layer, n));
  const w1 = matrix(layer, "W1", ff, d);
  const b1 = vector(layer, "b1");
  const w2 = matrix(layer, "W2", d, ff);
  const b2 = vector(layer, "b2");
  /** The cache: keys and values of the last `context` positions, [count, d]. */
  let keys: tf.Tensor2D | null = null;
  let values: tf.Tensor2D | null = null;
  const scale = 1 / Math.sqrt(dh);
  return {
    step(x) {
      const a = layerNorm(x, g1, b1n, eps);
      const [q, k, v] = tf.split(tf.add(tf.matMul(a, qkv), bqkv), 3, 1);
      let nextKeys = keys === null ? k : tf.concat([keys, k]);
      let nextValues = values === null ? v : tf.concat([values, v]);
      if (nextKeys.shape[0] > context) {
        nextKeys = nextKeys.slice([1, 0], [context, d]);
        nextValues = nextValues.slice([1, 0], [context, d]);
      }
      const count = nextKeys.shape[0];
      // Per head: q [heads, 1, dh] against keys [heads, count, dh].
      const qh = q.reshape([heads, 1, dh]);
      const kh = nextKeys.reshape([count, heads, dh]).transpose([1, 0, 2]);
      const vh = nextValues.reshape([count, heads, dh]).transpose([1, 0, 2]);
      const weights = tf.softmax(tf.mul(tf.matMul(qh, kh, false, true), scale));
      const attended = tf.matMul(weights, vh).reshape([1, d]) as tf.Tensor2D;
      const x1 = tf.add(x, tf.add(tf.matMul(attended, wo), bo)) as tf.Tensor2D;
      const hidden = activate(
        layer.activation ?? "gelu",
        tf.add(tf.matMul(layerNorm(x1, g2, b2n, eps), w1), b1),
      );
      tf.dispose([keys, values].filter((t) => t !== null) as tf.Tensor[]);
      keys = tf.keep(nextKeys) as tf.Tensor2D;
      values = tf.keep(nextValues) as tf.Tensor2D;
      return tf.add(x1, tf.add(tf.matMul(hidden, w2), b2));
    },
    reset() {
      tf.dispose([keys, values].filter((t) => t !== null) as tf.Tensor[]);
      keys = null;
      values = null;
    },
    dispose() {
      this.reset();
      tf.dispose([qkv, bqkv, wo, bo, g1, b1n, g2, b2n, w1, b1, w2, b2]);
    },
  };
}

function buildModel(model: Model): Stateful {
  const layers = model.spec.layers.map((layer) => {
    switch (layer.kind) {
      case "dense":
        return dense(layer);
      case "lstm":
        return lstm(layer);
      case "transformer":
        return transformer(layer);
      default:
        throw new Error(`wasm-tfjs: layer kind ${layer.kind} is not in the pipeline's models`);
    }
  });
  return {
    step: (x) => layers.reduce((h, layer) => layer.step(h), x),
    reset: () => layers.forEach((layer) => layer.reset()),
    dispose: () => layers.forEach((layer) => layer.dispose()),
  };
}

export interface TfOutputs {
  emotion: Float32Array;
  melody: Float32Array;
  groove: Float32Array;
  harmony: Float32Array;
  dynamics: Float32Array;
}

/** The five models of a loaded EmotionPipeline, in TensorFlow.js, run as its graph runs them. */
export class TfEmotionPipeline {
  readonly #models: Record<EmotionModelName, Stateful>;

  constructor(pipeline: EmotionPipeline) {
    const models = {} as Record<EmotionModelName, Stateful>;
    for (const info of EMOTION_MODELS) {
      models[info.name] = buildModel(pipeline.models[info.name] as Model);
    }
    this.#models = models;
  }

  /** One step from 128 features and the 204-value context, as EmotionPipeline.step. */
  step(features: Float32Array, context: Float32Array): TfOutputs {
    const m = this.#models;
    const data = tf.tidy(() => {
      const ctx = tf.tensor2d(context, [1, context.length]);
      const emotion = m.EmotionRecognizer.step(tf.tensor2d(features, [1, features.length]));
      const melody = m.MelodyTransformer.step(
        tf.concat([emotion, ctx.slice([0, CONTEXT.PREVIOUS_NOTE], [1, 192])], 1),
      );
      const groove = m.GroovePredictor.step(emotion);
      const harmony = m.HarmonyPredictor.step(
        tf.concat([emotion, ctx.slice([0, CONTEXT.CHORD], [1, 76])], 1),
      );
      const pooled = emotion.reshape([16, 4]).mean(1).reshape([1, 16]) as tf.Tensor2D;
      const dynamics = m.DynamicsEngine.step(
        tf.concat([pooled, groove.slice([0, 0], [1, 16])], 1),
      );
      return tf.concat([emotion, melody, groove, harmony, dynamics], 1);
    });
    const all = data.dataSync() as Float32Array;
    data.dispose();
    let at = 0;
    const take = (n: number) => all.subarray(at, at += n);
    return {
      emotion: take(64),
      melody: take(128),
      groove: take(32),
      harmony: take(64),
      dynamics: take(16),
    };
  }

  reset(): void {
    for (const model of Object.values(this.#models)) model.reset();
  }

  dispose(): void {
    for (const model of Object.values(this.#models)) model.dispose();
  }
}
