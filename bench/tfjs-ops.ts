/**
 * The pipeline's activations and layer norm written in TensorFlow.js ops, as cadenza computes
 * them (gelu in its erf form), for the TF.js benchmarks (bench/wasm-tfjs.ts, inference, and
 * bench/train-tfjs.ts, training).
 */

import * as tf from "@tensorflow/tfjs";

/** `name` applied to x; "linear" (or none) is x itself. Throws on an activation the pipeline's
 * models do not use, so that a benchmark never times something other than cadenza's model. */
export function activate<T extends tf.Tensor>(name: string | undefined, x: T): T {
  switch (name ?? "linear") {
    case "tanh":
      return tf.tanh(x);
    case "sigmoid":
      return tf.sigmoid(x);
    case "relu":
      return tf.relu(x);
    case "gelu": // the erf form, as cadenza's
      return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.div(x, Math.SQRT2))));
    case "softmax":
      return tf.softmax(x);
    case "linear":
      return x;
    default:
      throw new Error(`bench/tfjs-ops.ts: activation ${name} is not in the pipeline's models`);
  }
}

/** Layer normalisation over the last axis: (x - mean) / sqrt(variance + eps) * g + b. */
export function layerNorm<T extends tf.Tensor>(x: T, g: tf.Tensor, b: tf.Tensor, eps: number): T {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, eps))), g), b);
}
