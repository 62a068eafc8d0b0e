/**
 * The training data file (docs/TRAINING.md), the synthetic tasks, the progress line and the
 * float64 training reference itself; none of this needs the native trainer. Runtime-neutral:
 * test/train-data.test.ts and test/deno/train-data.test.ts register the cases.
 */

import {
  Batcher,
  checkDataForModel,
  IGNORE_CLASS,
  parseTrainingData,
  splitData,
  type TrainingData,
  writeTrainingData,
} from "../../src/train/data.ts";
import { flattenParams, initSpec, parameterLayout, withParams } from "../../src/train/params.ts";
import { formatDuration, Progress } from "../../src/train/progress.ts";
import { TrainRng } from "../../src/train/rng.ts";
import {
  copyTask,
  markovLanguage,
  markovScores,
  markovTask,
  unigramBaseline,
} from "../../src/train/tasks.ts";
import { type Tensor, writeTensorFile } from "../../src/train/tensors.ts";
import type { ModelSpec } from "../../src/model/spec.ts";
import { finiteDifferences, referenceLoss, type RefLossConfig } from "../train_reference.ts";
import { Rng } from "../helpers.ts";
import { type Case, check, fail, throwsCadenzaWith } from "./check.ts";

function file(tensors: Record<string, Tensor>, meta: Record<string, string> = {}): Uint8Array {
  return writeTensorFile({ meta, tensors: new Map(Object.entries(tensors)) });
}

const f32 = (shape: number[], fill = 0.5): Tensor => ({
  shape,
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill),
});
const i32 = (shape: number[], fill = 0): Tensor => ({
  shape,
  data: new Int32Array(shape.reduce((a, b) => a * b, 1)).fill(fill),
});

const MODEL = { inputSize: 4, outputSize: 3, source: "m.safetensors" };

function roundTrip(): void {
  const task = markovTask({ count: 5, steps: 7, seed: 3 });
  const data: TrainingData = { ...task.data, split: Uint8Array.from([0, 1, 0, 0, 1]) };
  data.lengths[2] = 4;
  const back = parseTrainingData(writeTrainingData(data), "x.safetensors");
  check(back.count === 5 && back.steps === 7 && back.inputSize === 8, () => "sizes");
  check(back.targetKind === "classes" && back.targetSize <= 8, () => `${back.targetKind}`);
  check(back.inputs.every((v, i) => v === data.inputs[i]), () => "inputs differ");
  check(back.targets.every((v, i) => v === data.targets[i]), () => "targets differ");
  check(back.lengths.join() === data.lengths.join(), () => "lengths differ");
  check(back.split!.join() === "0,1,0,0,1", () => "split differs");
  check(back.meta.task === "markov2" && back.meta.format === "cadenza-data", () => "meta");
  // numpy's defaults: F64 inputs and I64 ids read the same.
  const wide = file({
    inputs: { shape: [2, 4], data: Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8]) },
    targets: { shape: [2], data: Int32Array.from([2, 0]) },
  });
  const d2 = parseTrainingData(wide, "np.safetensors");
  check(d2.steps === 1 && d2.inputs[7] === 8 && d2.targets[0] === 2, () => "2-D data");
  checkDataForModel(d2, MODEL, "xent");
}

function refusals(): void {
  const ok = { inputs: f32([2, 3, 4]), targets: i32([2, 3], 1) };
  const parse = (t: Record<string, Tensor>, meta?: Record<string, string>) => () =>
    parseTrainingData(file(t, meta), "d.safetensors");
  throwsCadenzaWith(parse({ targets: ok.targets }), "E_FORMAT", "d.safetensors", '"inputs"');
  throwsCadenzaWith(
    parse({ ...ok, targets: i32([2, 4]) }),
    "E_SHAPE",
    "d.safetensors",
    'tensor "targets"',
    "T = 3",
    "[2, 4]",
  );
  throwsCadenzaWith(
    parse({ ...ok, lengths: i32([3], 1) }),
    "E_SHAPE",
    'tensor "lengths"',
    "[2]",
    "[3]",
  );
  throwsCadenzaWith(
    parse({ ...ok, lengths: i32([2], 4) }),
    "E_FORMAT",
    "sequence 0 has length 4, expected 1..3",
  );
  throwsCadenzaWith(parse({ ...ok, targets: i32([2, 3], -2) }), "E_FORMAT", "class id -2");
  throwsCadenzaWith(parse({ ...ok, split: i32([2], 2) }), "E_FORMAT", '"split"', "value 2");
  throwsCadenzaWith(parse({ ...ok, extra: f32([1]) }), "E_FORMAT", '"extra"');
  throwsCadenzaWith(parse(ok, { loss: "hinge" }), "E_FORMAT", "loss", "hinge");
  throwsCadenzaWith(parse(ok, { format: "cadenza" }), "E_FORMAT", "cadenza-data");
  throwsCadenzaWith(
    parse({ ...ok, inputs: f32([2, 3, 4], NaN) }),
    "E_FORMAT",
    'tensor "inputs"',
    "finite",
  );
  const bytes = file(ok);
  throwsCadenzaWith(
    () => parseTrainingData(bytes.subarray(0, bytes.length - 4), "cut.safetensors"),
    "E_FORMAT",
    "cut.safetensors",
  );
  // Against a model: the tensor, the shape wanted and the shape found.
  const data = parseTrainingData(file(ok), "d.safetensors");
  throwsCadenzaWith(
    () => checkDataForModel(data, { ...MODEL, inputSize: 5 }, "xent"),
    "E_SHAPE",
    'd.safetensors: tensor "inputs"',
    "[N, T, 5]",
    "m.safetensors",
    "[2, 3, 4]",
  );
  throwsCadenzaWith(
    () => checkDataForModel(data, { ...MODEL, outputSize: 1 }, "xent"),
    "E_SHAPE",
    "class id 1",
    "0..0",
  );
  throwsCadenzaWith(() => checkDataForModel(data, MODEL, "mse"), "E_SHAPE", "[N, T, 3]");
  const values = parseTrainingData(file({ ...ok, targets: f32([2, 3, 2]) }), "v.safetensors");
  throwsCadenzaWith(
    () => checkDataForModel(values, MODEL, "mse"),
    "E_SHAPE",
    'v.safetensors: tensor "targets"',
    "[2, 3, 3]",
    "[2, 3, 2]",
  );
}

function batches(): void {
  const task = markovTask({ count: 10, steps: 5, seed: 9 });
  task.data.lengths[3] = 2;
  const batcher = new Batcher(task.data, { batch: 4, seqLen: 6, seed: 1, partial: "pad" });
  check(batcher.batches === 3, () => `batches ${batcher.batches}`);
  const seen: number[] = [];
  let rows = 0;
  for (const b of batcher.epoch(0)) {
    rows += b.rows;
    for (let r = 0; r < 4; r++) {
      const len = b.lengths[r];
      for (let t = 0; t < 6; t++) {
        const id = b.targets[r * 6 + t];
        check((t < len) === (id !== IGNORE_CLASS), () => `row ${r} step ${t} len ${len} id ${id}`);
      }
      if (len > 0) {
        // Which sequence is it? Its first input's one-hot is the first symbol.
        const first = b.inputs.subarray(r * 6 * 8, r * 6 * 8 + 8).indexOf(1);
        seen.push(first);
      }
    }
  }
  check(rows === 10 && seen.length === 10, () => `rows ${rows}, seen ${seen.length}`);
  const order = (epoch: number) =>
    [...new Batcher(task.data, { batch: 5, seqLen: 5, seed: 1 })
      .epoch(epoch)].length;
  check(order(0) === 2 && order(1) === 2, () => "drop keeps full batches");
  // Same seed and epoch, same order; another epoch, another order.
  const firstIds = (seed: number, epoch: number) => {
    const b = new Batcher(task.data, { batch: 10, seqLen: 5, seed });
    const batch = b.epoch(epoch).next().value!;
    return Array.from(batch.targets.subarray(0, 50)).join();
  };
  check(firstIds(1, 0) === firstIds(1, 0), () => "not deterministic");
  check(firstIds(1, 0) !== firstIds(1, 1), () => "epochs share an order");
  throwsCadenzaWith(
    () => new Batcher(task.data, { batch: 2, seqLen: 4 }),
    "E_SHAPE",
    "5 steps do not fit seqLen 4",
  );
  const { train, heldOut } = splitData(task.data, 0.2, 4);
  check(train.count === 8 && heldOut.count === 2, () => `split ${train.count}/${heldOut.count}`);
}

/** The language's exact figures against its own samples (a long run converges to them). */
function markov(): void {
  const lang = markovLanguage(8, 5);
  check(
    lang.entropyRate < lang.order1Entropy - 0.3 && lang.order1Entropy < lang.unigramEntropy,
    () => `H2 ${lang.entropyRate} H1 ${lang.order1Entropy} H0 ${lang.unigramEntropy}`,
  );
  const task = markovTask({ count: 200, steps: 50, seed: 5 }, lang);
  const s = markovScores(task);
  // 10,000 symbols: the sample means sit within a few hundredths of a nat of the expectation.
  check(
    Math.abs(s.order2 - lang.entropyRate) < 0.05,
    () => `order2 ${s.order2} vs ${lang.entropyRate}`,
  );
  check(Math.abs(s.order1 - lang.order1Entropy) < 0.05, () => `order1 ${s.order1}`);
  const { train, heldOut } = splitData(task.data, 0.25, 1);
  const base = unigramBaseline(train, heldOut, 8);
  check(Math.abs(base.loss - lang.unigramEntropy) < 0.08, () => `unigram ${base.loss}`);
  const copy = copyTask({ count: 3, seed: 2, length: 4, vocab: 3, reverse: true });
  // Step 4 is the delimiter; steps 5..8 answer the string reversed.
  for (let n = 0; n < 3; n++) {
    const sym = (t: number) =>
      copy.inputs.subarray((n * 9 + t) * 5, (n * 9 + t) * 5 + 3).indexOf(1);
    for (let i = 0; i < 4; i++) {
      check(copy.targets[n * 9 + 4 + i] === sym(3 - i), () => `reverse at ${n}/${i}`);
    }
    check(copy.targets[n * 9 + 3] === IGNORE_CLASS, () => "no target before the delimiter");
  }
}

function progress(): void {
  const lines: string[] = [];
  let now = 0;
  const p = new Progress({
    totalSteps: 100,
    tty: false,
    write: (t) => lines.push(t),
    now: () => now,
    intervalMs: 1000,
  });
  p.update({ epoch: 1, epochs: 2, step: 10, loss: 1.5, examples: 320 });
  now = 500;
  p.update({ epoch: 1, epochs: 2, step: 20, loss: 1.25, examples: 640 });
  now = 2000;
  p.update({ epoch: 1, epochs: 2, step: 40, loss: 1.0, examples: 1280 });
  p.note("epoch 1: held-out loss 0.9");
  p.done();
  check(lines.length === 4, () => `lines: ${JSON.stringify(lines)}`);
  check(
    lines[1] === "train epoch 1/2 step 40/100 loss 1.0000 640 ex/s ETA 0:04\n",
    () => JSON.stringify(lines[1]),
  );
  check(lines.every((l) => !l.includes("\r")), () => "plain mode drew a carriage return");
  const tty: string[] = [];
  const q = new Progress({ totalSteps: 10, tty: true, write: (t) => tty.push(t), now: () => 0 });
  q.update({ epoch: 1, epochs: 1, step: 5, loss: 2, examples: 5 });
  q.done();
  check(tty[0].startsWith("\rtrain [##########----------]"), () => JSON.stringify(tty[0]));
  check(tty[tty.length - 1] === "\n", () => "the bar's line is not ended");
  check(formatDuration(3725) === "1:02:05" && formatDuration(NaN) === "?", () => "durations");
}

function params(): void {
  const spec = initSpec({
    inputSize: 3,
    layers: [
      { kind: "lstm", inputSize: 3, outputSize: 5 },
      { kind: "dense", inputSize: 5, outputSize: 2, activation: "softmax" },
    ],
  }, 7);
  const flat = flattenParams(spec);
  check(flat.length === 4 * 5 * 3 + 4 * 5 * 5 + 20 + 12, () => `${flat.length}`);
  const slots = parameterLayout(spec);
  check(slots.map((s) => s.name).join() === "Wx,Wh,b,W,b", () => "order");
  check(
    spec.layers[0].tensors.b[5] === 1 && spec.layers[0].tensors.b[0] === 0,
    () => "forget bias",
  );
  const back = withParams(spec, flat.map((v) => v * 2));
  check(back.layers[1].tensors.W[0] === 2 * spec.layers[1].tensors.W[0], () => "withParams");
  const again = initSpec({ inputSize: 3, layers: spec.layers }, 7);
  check(flattenParams(again).every((v, i) => v === flat[i]), () => "init not seeded");
  const rng = new TrainRng(1);
  const a = [rng.u32(), rng.u32()];
  const saved = rng.state();
  const next = rng.u32();
  rng.restore(saved);
  check(rng.u32() === next && a[0] !== a[1], () => "rng restore");
}

/**
 * The reference's finite differences against gradients derived by hand: one dense layer,
 * z = W x + b, on mse and on softmax cross-entropy, where dL/dW = mean over positions of
 * dL/dz x^T with dL/dz = 2 (z - t) / K (mse) or softmax(z) - onehot (xent).
 */
function referenceItself(): void {
  const rng = new Rng(11);
  const [f, k, batch, seqLen] = [3, 4, 2, 3];
  const spec: ModelSpec = {
    inputSize: f,
    layers: [{
      kind: "dense",
      inputSize: f,
      outputSize: k,
      activation: "softmax",
      tensors: { W: rng.floats(k * f, -1, 1), b: rng.floats(k, -0.5, 0.5) },
    }],
  };
  const inputs = rng.floats(batch * seqLen * f, -1, 1);
  const ids = Float32Array.from({ length: batch * seqLen }, (_, i) => i % k);
  const mask = Float32Array.from({ length: batch * seqLen }, (_, i) => (i === 4 ? 0 : 1 + (i % 2)));
  const values = rng.floats(batch * seqLen * k, -1, 1);
  const { W, b } = spec.layers[0].tensors;
  for (const cfg of [{ loss: "xent", ids: true }, { loss: "mse" }] as RefLossConfig[]) {
    const targets = cfg.loss === "xent" ? ids : values;
    const grad = new Float64Array(k * f + k);
    let weight = 0;
    for (let p = 0; p < batch * seqLen; p++) {
      const x = inputs.subarray(p * f, (p + 1) * f);
      const z = Array.from(
        { length: k },
        (_, o) => b[o] + x.reduce((s, xi, i) => s + W[o * f + i] * xi, 0),
      );
      let dz: number[];
      if (cfg.loss === "mse") {
        // mse reads the model output, softmax included: differentiate through it.
        const e = z.map((v) => Math.exp(v));
        const sum = e.reduce((s, v) => s + v, 0);
        const y = e.map((v) => v / sum);
        const dy = y.map((yo, o) => (2 * (yo - values[p * k + o])) / k);
        const dot = dy.reduce((s, v, o) => s + v * y[o], 0);
        dz = y.map((yo, o) => yo * (dy[o] - dot));
      } else {
        const e = z.map((v) => Math.exp(v));
        const sum = e.reduce((s, v) => s + v, 0);
        dz = e.map((v, o) => v / sum - (o === ids[p] ? 1 : 0));
      }
      const w = mask[p];
      weight += w;
      for (let o = 0; o < k; o++) {
        for (let i = 0; i < f; i++) grad[o * f + i] += w * dz[o] * x[i];
        grad[k * f + o] += w * dz[o];
      }
    }
    grad.forEach((_, i) => (grad[i] /= weight));
    const indices = Array.from({ length: k * f + k }, (_, i) => i);
    const fd = finiteDifferences(spec, { batch, seqLen, inputs, targets, mask }, cfg, indices);
    indices.forEach((i) => {
      if (!(Math.abs(fd[i] - grad[i]) <= 1e-8 * Math.max(1, Math.abs(grad[i])))) {
        fail(`${cfg.loss}: parameter ${i}: finite difference ${fd[i]}, by hand ${grad[i]}`);
      }
    });
    const loss = referenceLoss(spec, { batch, seqLen, inputs, targets, mask }, cfg);
    check(Number.isFinite(loss) && loss > 0, () => `loss ${loss}`);
  }
}

export function trainDataCases(): Case[] {
  return [
    { name: "data file: write/read round trip, numpy dtypes, 2-D single steps", run: roundTrip },
    { name: "data file: refusals name the file, the tensor and both shapes", run: refusals },
    { name: "batches: padding, masks by length, seeded per-epoch order, split", run: batches },
    { name: "tasks: Markov language figures match its samples; copy/reverse targets", run: markov },
    { name: "progress: plain lines off a terminal, one redrawn line on one", run: progress },
    { name: "params: layout, seeded init, vector <-> spec; rng state restores", run: params },
    {
      name: "float64 reference: finite differences equal hand-derived gradients",
      run: referenceItself,
    },
  ];
}
