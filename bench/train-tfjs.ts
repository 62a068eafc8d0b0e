/**
 * The training benchmark's TensorFlow.js peer: the same training step as cadenza's trainer and
 * bench/train-jax.py for each pipeline model shape (bench/train_shapes.ts), written with
 * TensorFlow.js ops and its Adam optimizer (TensorFlow.js has no AdamW; the decoupled weight
 * decay is a few element-wise ops and does not change the picture), timed after warm-up on
 * the wasm (SIMD) and cpu backends.
 *
 *   nice bun bench/train-tfjs.ts [--backend wasm|cpu] [--seconds 3] [--json OUT]
 */

import { writeFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import type { LayerArch } from "../src/model/spec.ts";
import { TRAIN_SHAPES, type TrainShape } from "./train_shapes.ts";
import { activate, layerNorm } from "./tfjs-ops.ts";

export type TfBackend = "wasm" | "cpu";

export interface PeerResult {
  model: string;
  batch: number;
  seqLen: number;
  step_ms: number;
  examples_per_s: number;
  steps: number;
}

let wasmPathSet = false;

export async function useBackend(backend: TfBackend): Promise<void> {
  if (backend === "wasm" && !wasmPathSet) {
    setWasmPaths(
      fileURLToPath(
        new URL("../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url),
      ),
    );
    wasmPathSet = true;
  }
  await tf.setBackend(backend);
  await tf.ready();
}

type Params = Record<string, tf.Variable>;

function glorot(rows: number, cols: number): tf.Variable {
  const limit = Math.sqrt(6 / (rows + cols));
  return tf.variable(tf.randomUniform([rows, cols], -limit, limit, "float32", 1));
}

const zeros = (n: number) => tf.variable(tf.zeros([n]));
const ones = (n: number) => tf.variable(tf.ones([n]));

function initLayer(layer: LayerArch): Params {
  const { inputSize: n_in, outputSize: n_out } = layer;
  switch (layer.kind) {
    case "dense":
      return { W: glorot(n_out, n_in), b: zeros(n_out) };
    case "lstm":
      return { Wx: glorot(4 * n_out, n_in), Wh: glorot(4 * n_out, n_out), b: zeros(4 * n_out) };
    case "transformer": {
      const d = n_in;
      const ff = layer.ffDim!;
      return {
        Wq: glorot(d, d),
        bq: zeros(d),
        Wk: glorot(d, d),
        bk: zeros(d),
        Wv: glorot(d, d),
        bv: zeros(d),
        Wo: glorot(d, d),
        bo: zeros(d),
        ln1_g: ones(d),
        ln1_b: zeros(d),
        ln2_g: ones(d),
        ln2_b: zeros(d),
        W1: glorot(ff, d),
        b1: zeros(ff),
        W2: glorot(d, ff),
        b2: zeros(d),
      };
    }
    default:
      throw new Error(`train-tfjs: layer kind ${layer.kind} is not in the benchmark's shapes`);
  }
}

/** x [..., in] times W^T ([out][in]) plus b. */
function affine(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const shape = x.shape;
  const flat = x.reshape([-1, shape[shape.length - 1]]);
  const y = tf.add(tf.matMul(flat, w, false, true), b);
  return y.reshape([...shape.slice(0, -1), w.shape[0]]);
}

function lstm(p: Params, x: tf.Tensor3D): tf.Tensor {
  const [batch, steps] = x.shape;
  const hidden = p.Wh.shape[1] as number;
  const zx = affine(x, p.Wx, p.b) as tf.Tensor3D;
  let h: tf.Tensor = tf.zeros([batch, hidden]);
  let c: tf.Tensor = tf.zeros([batch, hidden]);
  const hs: tf.Tensor[] = [];
  for (let t = 0; t < steps; t++) {
    const z = tf.add(
      zx.slice([0, t, 0], [batch, 1, 4 * hidden]).reshape([batch, 4 * hidden]),
      tf.matMul(h, p.Wh, false, true),
    );
    const [i, f, g, o] = tf.split(z, 4, 1);
    c = tf.add(tf.mul(tf.sigmoid(f), c), tf.mul(tf.sigmoid(i), tf.tanh(g)));
    h = tf.mul(tf.sigmoid(o), tf.tanh(c));
    hs.push(h);
  }
  return tf.stack(hs, 1);
}

function transformer(p: Params, layer: LayerArch, x: tf.Tensor3D): tf.Tensor {
  const [b, t, d] = x.shape;
  const heads = layer.heads!;
  const dh = d / heads;
  const eps = layer.epsilon ?? 1e-5;
  const a = layerNorm(x, p.ln1_g, p.ln1_b, eps);
  const split = (y: tf.Tensor) => y.reshape([b, t, heads, dh]).transpose([0, 2, 1, 3]);
  const q = split(affine(a, p.Wq, p.bq));
  const k = split(affine(a, p.Wk, p.bk));
  const v = split(affine(a, p.Wv, p.bv));
  const allowed = tf.buffer([t, t]);
  for (let i = 0; i < t; i++) {
    for (let j = 0; j < t; j++) allowed.set(j <= i && i - j < layer.context! ? 0 : -1e9, i, j);
  }
  const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(dh)), allowed.toTensor());
  const att = tf.matMul(tf.softmax(scores), v).transpose([0, 2, 1, 3]).reshape([b, t, d]);
  const x1 = tf.add(x, affine(att, p.Wo, p.bo));
  const hidden = activate(
    layer.activation ?? "gelu",
    affine(layerNorm(x1, p.ln2_g, p.ln2_b, eps), p.W1, p.b1),
  );
  return tf.add(x1, affine(hidden, p.W2, p.b2));
}

function loss(shape: TrainShape, params: Params[], x: tf.Tensor3D, y: tf.Tensor): tf.Scalar {
  let h: tf.Tensor = x;
  shape.layers.forEach((layer, i) => {
    const last = i === shape.layers.length - 1;
    if (layer.kind === "dense") {
      const z = affine(h, params[i].W, params[i].b);
      h = last ? z : activate(layer.activation, z);
    } else if (layer.kind === "lstm") {
      h = lstm(params[i], h as tf.Tensor3D);
    } else {
      h = transformer(params[i], layer, h as tf.Tensor3D);
    }
  });
  const final = shape.layers[shape.layers.length - 1].activation;
  if (shape.loss === "xent") {
    return tf.losses.softmaxCrossEntropy(y, h) as tf.Scalar;
  }
  if (shape.loss === "bce") return tf.losses.sigmoidCrossEntropy(y, h) as tf.Scalar;
  return tf.mean(tf.square(tf.sub(activate(final, h), y))) as tf.Scalar;
}

/** Times the training step of one shape on the current backend. */
export function tfjsTrainBench(shape: TrainShape, seconds: number): PeerResult {
  const params = shape.layers.map(initLayer);
  const { batch, seqLen } = shape;
  const x = tf.randomUniform([batch, seqLen, shape.inputSize], -1, 1, "float32", 2) as tf.Tensor3D;
  const y = shape.loss === "xent"
    ? tf.oneHot(
      tf.randomUniform([batch, seqLen], 0, shape.outputSize, "int32", 3),
      shape.outputSize,
    )
    : tf.randomUniform([batch, seqLen, shape.outputSize], 0, 1, "float32", 3);
  const optimizer = tf.train.adam(1e-3, 0.9, 0.999, 1e-8);
  const step = () => {
    const cost = optimizer.minimize(() => loss(shape, params, x, y), true)!;
    cost.dataSync();
    cost.dispose();
  };
  for (let i = 0; i < 3; i++) step();
  const times: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end || times.length < 5) {
    const start = performance.now();
    step();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  optimizer.dispose();
  for (const p of params) for (const v of Object.values(p)) v.dispose();
  tf.dispose([x, y]);
  return {
    model: shape.name,
    batch,
    seqLen,
    step_ms: median,
    examples_per_s: batch / (median / 1000),
    steps: times.length,
  };
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const flag = (name: string, fallback: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  const backend = flag("backend", "wasm") as TfBackend;
  const seconds = Number(flag("seconds", "3"));
  await useBackend(backend);
  const results = TRAIN_SHAPES.map((shape) => {
    const r = tfjsTrainBench(shape, seconds);
    console.error(
      `${r.model.padEnd(18)} batch ${String(r.batch).padStart(3)} x ${
        String(r.seqLen).padStart(2)
      }` +
        `  ${r.step_ms.toFixed(2).padStart(8)} ms/step  ${
          r.examples_per_s.toFixed(1).padStart(9)
        } examples/s`,
    );
    return r;
  });
  const out = { peer: `tfjs-${backend}`, version: tf.version.tfjs, results };
  const json = flag("json", "");
  if (json !== "") writeFileSync(json, JSON.stringify(out, null, 1));
  console.log(JSON.stringify(out));
}
