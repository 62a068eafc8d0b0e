/**
 * Training end to end through the native engine: a small LSTM and a small transformer learn an
 * order-2 Markov language to a held-out loss that the best order-1 predictor cannot reach
 * (acceptance 2), deterministically by seed; a resumed run equals an uninterrupted one bit for
 * bit (acceptance 5); a student of a quarter of the teacher's size keeps 95% of its held-out
 * accuracy (acceptance 3); QAT through the int8 inference path against post-training int8
 * (acceptance 4), and the QAT forward is the int8 inference forward bit for bit; export to an
 * ordinary model file. Runtime-neutral: test/train.test.ts and test/deno/train.test.ts.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, modelFromSpec } from "../../src/model/load.ts";
import type { LayerArch, ModelSpec } from "../../src/model/spec.ts";
import type { TrainingData } from "../../src/train/data.ts";
import { logitsSpec, scoreModel, teacherLogits } from "../../src/train/evaluate.ts";
import { fit } from "../../src/train/loop.ts";
import { initSpec } from "../../src/train/params.ts";
import {
  markovLanguage,
  markovScores,
  type MarkovTask,
  markovTask,
} from "../../src/train/tasks.ts";
import { Trainer, type TrainerOptions } from "../../src/train/trainer.ts";
import { type Case, check, rejectsCadenza, throwsCadenzaWith } from "./check.ts";

const VOCAB = 8;
const LANGUAGE = markovLanguage(VOCAB, 5);

/** Training and held-out sequences of the language (different sampling seeds). */
function markovData(
  positionSize: number,
  steps = 24,
): { train: TrainingData; heldOut: MarkovTask } {
  const train = markovTask({ count: 256, steps, seed: 21, positionSize }, LANGUAGE).data;
  const heldOut = markovTask({ count: 64, steps, seed: 22, positionSize }, LANGUAGE);
  return { train, heldOut };
}

function lstmArch(hidden: number): { inputSize: number; layers: LayerArch[] } {
  return {
    inputSize: VOCAB,
    layers: [
      { kind: "lstm", inputSize: VOCAB, outputSize: hidden },
      { kind: "dense", inputSize: hidden, outputSize: VOCAB, activation: "softmax", bias: true },
    ],
  };
}

const POSITION = 8;

function transformerArch(): { inputSize: number; layers: LayerArch[] } {
  const d = 24;
  return {
    inputSize: VOCAB + POSITION,
    layers: [
      {
        kind: "dense",
        inputSize: VOCAB + POSITION,
        outputSize: d,
        activation: "linear",
        bias: true,
      },
      {
        kind: "transformer",
        inputSize: d,
        outputSize: d,
        heads: 2,
        context: 8,
        ffDim: 48,
        epsilon: 1e-5,
        activation: "gelu",
      },
      { kind: "dense", inputSize: d, outputSize: VOCAB, activation: "softmax", bias: true },
    ],
  };
}

async function withScratch<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "cadenza-train-"));
  try {
    return await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Trained {
  spec: ModelSpec;
  heldOutLoss: number;
  accuracy: number;
  params: Float32Array;
}

async function trainOn(
  spec: ModelSpec,
  train: TrainingData,
  heldOut: TrainingData,
  options: TrainerOptions,
  epochs: number,
  seed: number,
): Promise<Trained> {
  const trainer = await Trainer.create(spec, options);
  try {
    const { history } = await fit(trainer, train, heldOut, { epochs, seed });
    const last = history[history.length - 1]!;
    return {
      spec: trainer.toSpec(),
      heldOutLoss: last.loss,
      accuracy: last.accuracy,
      params: trainer.params(),
    };
  } finally {
    trainer.dispose();
  }
}

const LSTM_OPTIONS: TrainerOptions = { lr: 2e-2, batch: 32, seqLen: 24, loss: "xent", clipNorm: 1 };

/** Held-out figures of a learning run beside the language's exact ones (nats per symbol). */
export interface LearnFigures {
  heldOutLoss: number;
  heldOutAccuracy: number;
  /** The best order-1 predictor's and the true model's loss on the same held-out data. */
  order1: number;
  order2: number;
  unigram: number;
  steps: number;
}

/** Acceptance 2a: an LSTM (24 units) on the order-2 language; twice, to compare the bits. */
export async function lstmFigures(): Promise<LearnFigures & { sameBits: boolean }> {
  const { train, heldOut } = markovData(0);
  const best = markovScores(heldOut);
  const spec = initSpec(lstmArch(24), 3);
  const epochs = 16;
  const options = { ...LSTM_OPTIONS, lr: 3e-2, totalSteps: epochs * 8 };
  const a = await trainOn(spec, train, heldOut.data, options, epochs, 7);
  const b = await trainOn(spec, train, heldOut.data, options, epochs, 7);
  return {
    heldOutLoss: a.heldOutLoss,
    heldOutAccuracy: a.accuracy,
    ...best,
    unigram: LANGUAGE.unigramEntropy,
    steps: epochs * 8,
    sameBits: a.params.every((v, i) => Object.is(v, b.params[i])),
  };
}

/** Acceptance 2b: a one-block transformer (d 24, 2 heads, context 8) with position features. */
export async function transformerFigures(): Promise<LearnFigures> {
  const { train, heldOut } = markovData(POSITION);
  const best = markovScores(heldOut);
  const spec = initSpec(transformerArch(), 4);
  const epochs = 16;
  const a = await trainOn(
    spec,
    train,
    heldOut.data,
    {
      lr: 2e-2,
      batch: 32,
      seqLen: 24,
      loss: "xent",
      clipNorm: 1,
      warmupSteps: 8,
      totalSteps: epochs * 8,
    },
    epochs,
    8,
  );
  return {
    heldOutLoss: a.heldOutLoss,
    heldOutAccuracy: a.accuracy,
    ...best,
    unigram: LANGUAGE.unigramEntropy,
    steps: epochs * 8,
  };
}

/** Halfway from the best order-1 predictor to the true model: order 2 was learned. */
function checkLearned(f: LearnFigures, what: string): void {
  const target = (f.order1 + f.order2) / 2;
  check(
    f.heldOutLoss < target,
    () =>
      `${what} held-out loss ${f.heldOutLoss.toFixed(4)} >= ${target.toFixed(4)} (order-1 ` +
      `${f.order1.toFixed(4)}, order-2 optimum ${f.order2.toFixed(4)})`,
  );
  check(
    f.heldOutLoss > f.order2 - 0.05,
    () => `${what}: below the optimum: ${f.heldOutLoss} < ${f.order2}`,
  );
}

async function lstmLearns(): Promise<void> {
  const f = await lstmFigures();
  checkLearned(f, "LSTM");
  check(f.sameBits, () => "two runs with one seed differ");
}

async function transformerLearns(): Promise<void> {
  checkLearned(await transformerFigures(), "transformer");
}

async function resumeIsExact(): Promise<void> {
  const { train, heldOut } = markovData(0, 12);
  const spec = initSpec(lstmArch(12), 5);
  const options: TrainerOptions = { ...LSTM_OPTIONS, seqLen: 12, warmupSteps: 3, totalSteps: 24 };
  await withScratch(async (dir) => {
    const whole = await Trainer.create(spec, options);
    await fit(whole, train, heldOut.data, { epochs: 3, seed: 9 });
    const want = whole.params();
    const wantState = whole.optimizerState();
    whole.dispose();
    const ckpt = join(dir, "run.ckpt.safetensors");
    const first = await Trainer.create(spec, options);
    const part = await fit(first, train, heldOut.data, {
      epochs: 3,
      seed: 9,
      stopAfter: 11,
      checkpoint: { path: ckpt, every: 1 },
    });
    check(part.stopped && part.steps === 11, () => `stopped ${part.stopped} after ${part.steps}`);
    first.dispose();
    const { trainer, progress } = await Trainer.resume(ckpt);
    check(trainer.stepCount === 11, () => `resumed at step ${trainer.stepCount}`);
    const from = progress as { epoch: number; batch: number };
    check(from.epoch === 1 && from.batch === 3, () => `progress ${JSON.stringify(progress)}`);
    await fit(trainer, train, heldOut.data, { epochs: 3, seed: 9, from });
    const got = trainer.params();
    const gotState = trainer.optimizerState();
    trainer.dispose();
    check(
      got.every((v, i) => Object.is(v, want[i])),
      () => "resumed weights differ from the uninterrupted run",
    );
    check(
      gotState.every((v, i) => Object.is(v, wantState[i])),
      () => "resumed optimizer state differs",
    );
  });
}

/** Export writes an ordinary model file: loadModel reads it and computes the trainer's outputs. */
async function exportLoads(): Promise<void> {
  const { train, heldOut } = markovData(0, 12);
  const spec = initSpec(lstmArch(10), 6);
  const trainer = await Trainer.create(spec, { ...LSTM_OPTIONS, seqLen: 12 });
  await withScratch(async (dir) => {
    await fit(trainer, train, null, { epochs: 1, seed: 1 });
    const path = join(dir, "m.safetensors");
    await trainer.export(path, { task: "markov2" });
    const model = await loadModel(path);
    check(model.spec.meta?.task === "markov2", () => `meta ${JSON.stringify(model.spec.meta)}`);
    const x = heldOut.data.inputs.subarray(0, trainer.config.batch * 12 * VOCAB);
    const out = trainer.forward(x);
    // The trainer's outputs for sequence 0 equal the model's step-by-step forward.
    model.reset();
    for (let t = 0; t < 12; t++) {
      const y = model.forward(x.subarray(t * VOCAB, (t + 1) * VOCAB));
      for (let j = 0; j < VOCAB; j++) {
        const want = out[t * VOCAB + j];
        check(
          Math.abs(y[j] - want) <= 1e-5,
          () => `step ${t} output ${j}: model ${y[j]}, trainer ${want}`,
        );
      }
    }
    model.dispose();
  });
  trainer.dispose();
}

export interface DistillFigures {
  teacherParameters: number;
  studentParameters: number;
  teacherAccuracy: number;
  studentAccuracy: number;
  teacherLoss: number;
  studentLoss: number;
}

/**
 * Acceptance 3: an LSTM teacher (48 units) trained on the labels; a student (16 units, 15% of
 * the parameters) trained only on the teacher's logits (kl, temperature 1); both scored on the
 * held-out labels through ordinary inference.
 */
export async function distillFigures(): Promise<DistillFigures> {
  const { train, heldOut } = markovData(0);
  const teacherSpec = initSpec(lstmArch(48), 10);
  const trained = await trainOn(
    teacherSpec,
    train,
    heldOut.data,
    { ...LSTM_OPTIONS, totalSteps: 96 },
    12,
    11,
  );
  const teacher = await modelFromSpec(trained.spec);
  const logits = await modelFromSpec(logitsSpec(trained.spec).spec);
  const soft = teacherLogits(logits, train);
  const softHeld = teacherLogits(logits, heldOut.data);
  logits.dispose();
  const epochs = 24;
  const student = await trainOn(
    initSpec(lstmArch(16), 12),
    soft,
    softHeld,
    { ...LSTM_OPTIONS, lr: 3e-2, loss: "kl", temperature: 1, totalSteps: epochs * 8 },
    epochs,
    13,
  );
  const studentModel = await modelFromSpec(student.spec);
  const t = scoreModel(teacher, heldOut.data, "xent");
  const s = scoreModel(studentModel, heldOut.data, "xent");
  const figures = {
    teacherParameters: teacher.parameterCount,
    studentParameters: studentModel.parameterCount,
    teacherAccuracy: t.accuracy,
    studentAccuracy: s.accuracy,
    teacherLoss: t.loss,
    studentLoss: s.loss,
  };
  teacher.dispose();
  studentModel.dispose();
  return figures;
}

async function distillation(): Promise<void> {
  const f = await distillFigures();
  check(
    f.studentParameters <= 0.25 * f.teacherParameters,
    () => `student ${f.studentParameters} of ${f.teacherParameters}`,
  );
  check(
    f.studentAccuracy >= 0.95 * f.teacherAccuracy,
    () =>
      `student accuracy ${f.studentAccuracy.toFixed(4)} < 95% of teacher ${
        f.teacherAccuracy.toFixed(4)
      }`,
  );
}

/**
 * Acceptance 4: a float model's post-training int8 against the same model after QAT
 * fine-tuning, both scored through the int8 inference path; and the QAT trainer's forward
 * is that int8 path bit for bit.
 */
export interface QatFigures {
  /** f32 fine-tuned as long as QAT ran, then int8 after training. */
  tunedPtqLoss: number;
  tunedPtqAccuracy: number;
  floatLoss: number;
  floatAccuracy: number;
  ptqLoss: number;
  ptqAccuracy: number;
  qatLoss: number;
  qatAccuracy: number;
}

export async function qatFigures(): Promise<QatFigures> {
  const { train, heldOut } = markovData(0);
  const spec = initSpec(lstmArch(24), 14);
  const float = await trainOn(
    spec,
    train,
    heldOut.data,
    { ...LSTM_OPTIONS, totalSteps: 96 },
    12,
    15,
  );
  const floatModel = await modelFromSpec(float.spec);
  const floatScore = scoreModel(floatModel, heldOut.data, "xent");
  floatModel.dispose();
  const ptqModel = await modelFromSpec(float.spec, { precision: "int8" });
  const ptq = scoreModel(ptqModel, heldOut.data, "xent");
  ptqModel.dispose();
  const qatTrainer = await Trainer.create(float.spec, { ...LSTM_OPTIONS, lr: 1e-3, qat: true });
  await fit(qatTrainer, train, null, { epochs: 3, seed: 16 });
  const qatSpec = qatTrainer.toSpec();
  const qatModel = await modelFromSpec(qatSpec, { precision: "int8" });
  // Bit for bit: the QAT forward of sequence 0 is the int8 model's step-by-step forward.
  const x = heldOut.data.inputs.subarray(0, 32 * 24 * VOCAB);
  const out = qatTrainer.forward(x);
  qatModel.reset();
  for (let t = 0; t < 24; t++) {
    const y = qatModel.forward(x.subarray(t * VOCAB, (t + 1) * VOCAB));
    for (let j = 0; j < VOCAB; j++) {
      check(
        Object.is(y[j], out[t * VOCAB + j]),
        () => `QAT forward step ${t} [${j}]: ${out[t * VOCAB + j]}, int8 model ${y[j]}`,
      );
    }
  }
  qatTrainer.dispose();
  const after = scoreModel(qatModel, heldOut.data, "xent");
  qatModel.dispose();
  // The control: the same 3 epochs in f32, then int8 after training. It tells QAT's own gain
  // from that of 3 more epochs.
  const control = await Trainer.create(float.spec, { ...LSTM_OPTIONS, lr: 1e-3 });
  await fit(control, train, null, { epochs: 3, seed: 16 });
  const controlModel = await modelFromSpec(control.toSpec(), { precision: "int8" });
  control.dispose();
  const tuned = scoreModel(controlModel, heldOut.data, "xent");
  controlModel.dispose();
  return {
    tunedPtqLoss: tuned.loss,
    tunedPtqAccuracy: tuned.accuracy,
    floatLoss: floatScore.loss,
    floatAccuracy: floatScore.accuracy,
    ptqLoss: ptq.loss,
    ptqAccuracy: ptq.accuracy,
    qatLoss: after.loss,
    qatAccuracy: after.accuracy,
  };
}

async function qat(): Promise<void> {
  const f = await qatFigures();
  check(
    f.qatLoss <= f.ptqLoss && f.qatAccuracy >= f.ptqAccuracy - 0.01,
    () =>
      `QAT held-out loss ${f.qatLoss.toFixed(4)}, accuracy ${f.qatAccuracy.toFixed(4)}; ` +
      `post-training int8 ${f.ptqLoss.toFixed(4)}, ${f.ptqAccuracy.toFixed(4)}`,
  );
}

/** model.trainer() on a loaded model, and the refusals of the trainer's API. */
async function apiAndRefusals(): Promise<void> {
  const spec = initSpec(lstmArch(6), 1);
  const model = await modelFromSpec(spec);
  const trainer = model.trainer({ batch: 2, seqLen: 3, loss: "xent" });
  const x = new Float32Array(2 * 3 * VOCAB).fill(0.5);
  const ids = Int32Array.from([1, 2, -1, 3, 4, 5]);
  const before = trainer.params();
  const loss = trainer.step(x, ids);
  check(
    Number.isFinite(loss) && trainer.stepCount === 1,
    () => `loss ${loss}, step ${trainer.stepCount}`,
  );
  check(trainer.params().some((v, i) => v !== before[i]), () => "a step changed no weight");
  const m = trainer.evaluate(x, ids);
  check(m.weight === 5 && m.accuracy >= 0 && m.accuracy <= 1, () => JSON.stringify(m));
  throwsCadenzaWith(() => trainer.step(x.subarray(1), ids), "E_SHAPE", "step inputs", "47");
  throwsCadenzaWith(
    () => trainer.step(x, Int32Array.from([0, 0, 0, 0, 0, 8])),
    "E_ARGUMENT",
    "class id 8",
  );
  throwsCadenzaWith(() => trainer.step(x, new Float32Array(5)), "E_SHAPE", "targets", "48");
  throwsCadenzaWith(() => trainer.setParams(new Float32Array(3)), "E_SHAPE", "setParams");
  const nan = trainer.params();
  nan[0] = NaN;
  throwsCadenzaWith(() => trainer.setParams(nan), "E_ARGUMENT", "finite");
  trainer.dispose();
  trainer.dispose();
  throwsCadenzaWith(() => trainer.step(x, ids), "E_DISPOSED", "after dispose");
  model.dispose();
  throwsCadenzaWith(() => model.trainer(), "E_DISPOSED", "after dispose");
  await rejectsCadenza(
    () => Trainer.create(spec, { lr: 0 }),
    "E_ARGUMENT",
    /options\.lr: expected a finite number > 0/,
    "lr",
  );
  await rejectsCadenza(
    () => Trainer.create(spec, { eps: 1e-40 }),
    "E_ARGUMENT",
    /options\.eps: expected a normal float32 > 0/,
    "subnormal eps",
  );
  await rejectsCadenza(
    () => Trainer.create(spec, { loss: "hinge" as "mse" }),
    "E_ARGUMENT",
    /options\.loss/,
    "loss",
  );
  await rejectsCadenza(
    () => Trainer.create(spec, { lR: 1 } as TrainerOptions),
    "E_ARGUMENT",
    /options\.lR: expected no such option/,
    "typo",
  );
  const mse = await Trainer.create(spec, { batch: 2, seqLen: 3, loss: "mse" });
  throwsCadenzaWith(() => mse.step(x, ids), "E_ARGUMENT", "class ids go with loss xent");
  mse.dispose();
  await withScratch(async (dir) => {
    const path = join(dir, "model.safetensors");
    await (await modelFromSpec(spec)).save(path);
    await rejectsCadenza(
      () => Trainer.resume(path),
      "E_FORMAT",
      /cadenza-checkpoint/,
      "a model is no checkpoint",
    );
  });
}

/** Fine-tuning a pruned model: held zeros stay 0 through steps and through save/resume. */
async function heldZeros(): Promise<void> {
  const { train } = markovData(0, 12);
  const spec = initSpec(lstmArch(10), 2);
  const w = spec.layers[0].tensors.Wx;
  for (let i = 0; i < w.length; i += 2) w[i] = 0;
  const trainer = await Trainer.create(spec, { ...LSTM_OPTIONS, seqLen: 12 });
  const held = trainer.holdZeros();
  check(held === w.length / 2, () => `held ${held} of ${w.length}`);
  await withScratch(async (dir) => {
    const ckpt = join(dir, "c.safetensors");
    await fit(trainer, train, null, { epochs: 2, seed: 1, checkpoint: { path: ckpt, every: 0 } });
    const { trainer: again } = await Trainer.resume(ckpt);
    const mask = again.trainable();
    check(mask !== null && mask.every((m, i) => m === trainer.trainable()![i]), () => "mask lost");
    await fit(again, train, null, { epochs: 3, seed: 1, from: { epoch: 2, batch: 0 } });
    const after = again.toSpec().layers[0].tensors.Wx;
    check(
      after.every((v, i) => (i % 2 === 0 ? v === 0 : v !== w[i])),
      () => "a held zero moved, or a free weight did not",
    );
    again.dispose();
  });
  trainer.dispose();
}

/**
 * The QAT forward of the other kinds (transformer, conv1d, layer norm, GRU) equals the int8
 * model's step-by-step inference bit for bit, through the ABI.
 */
async function qatForwardAllKinds(): Promise<void> {
  const d = 12;
  const spec = initSpec({
    inputSize: VOCAB,
    layers: [
      {
        kind: "conv1d",
        inputSize: VOCAB,
        outputSize: d,
        kernelSize: 3,
        dilation: 2,
        groups: 1,
        activation: "tanh",
      },
      { kind: "layernorm", inputSize: d, outputSize: d, epsilon: 1e-5 },
      {
        kind: "transformer",
        inputSize: d,
        outputSize: d,
        heads: 3,
        context: 5,
        ffDim: 20,
        epsilon: 1e-5,
        activation: "gelu",
      },
      { kind: "gru", inputSize: d, outputSize: 7 },
      { kind: "dense", inputSize: 7, outputSize: VOCAB, activation: "softmax", bias: true },
    ],
  }, 9);
  const seqLen = 9;
  const trainer = await Trainer.create(spec, { batch: 2, seqLen, loss: "xent", qat: true });
  const model = await modelFromSpec(spec, { precision: "int8" });
  const x = markovTask({ count: 2, steps: seqLen, seed: 3 }, LANGUAGE).data.inputs;
  const out = trainer.forward(x);
  for (let n = 0; n < 2; n++) {
    model.reset();
    for (let t = 0; t < seqLen; t++) {
      const at = n * seqLen + t;
      const y = model.forward(x.subarray(at * VOCAB, (at + 1) * VOCAB));
      for (let j = 0; j < VOCAB; j++) {
        check(
          Object.is(y[j], out[at * VOCAB + j]),
          () => `sequence ${n} step ${t} [${j}]: QAT ${out[at * VOCAB + j]}, int8 model ${y[j]}`,
        );
      }
    }
  }
  // And it is not the f32 forward: the check above would pass for a QAT that did nothing.
  const f32 = await modelFromSpec(spec);
  f32.reset();
  let differs = false;
  for (let t = 0; t < seqLen; t++) {
    const y = f32.forward(x.subarray(t * VOCAB, (t + 1) * VOCAB));
    for (let j = 0; j < VOCAB; j++) differs ||= y[j] !== out[t * VOCAB + j];
  }
  check(differs, () => "the QAT forward equals the f32 forward");
  f32.dispose();
  trainer.dispose();
  model.dispose();
}

/** threads: 2 (the native helper thread) trains the same bits as one thread. */
async function helperThreadSameBits(): Promise<void> {
  const { train } = markovData(0);
  const spec = initSpec(lstmArch(48), 6);
  const run = async (threads: 1 | 2) => {
    const t = await Trainer.create(spec, { ...LSTM_OPTIONS, threads });
    await fit(t, train, null, { epochs: 1, seed: 2 });
    const p = t.params();
    t.dispose();
    return p;
  };
  const [one, two] = [await run(1), await run(2)];
  check(one.every((v, i) => Object.is(v, two[i])), () => "threads 2 trained other weights");
  await rejectsCadenza(
    () => Trainer.create(spec, { threads: 3 as 2 }),
    "E_ARGUMENT",
    /options\.threads: expected 1 or 2/,
    "threads",
  );
}

export function trainCases(): Case[] {
  return [
    {
      name: "train: threads 2 (the helper thread) gives the same weights as one thread",
      run: helperThreadSameBits,
    },
    {
      name:
        "train: the QAT forward is the int8 inference forward bit for bit (conv1d, layernorm, transformer, gru)",
      run: qatForwardAllKinds,
    },
    {
      name: "train: held parameters (a pruned model's zeros) stay 0 through steps and resume",
      run: heldZeros,
    },
    {
      name: "train: model.trainer() steps a loaded model; bad options, shapes and ids refused",
      run: apiAndRefusals,
    },
    {
      name:
        "train: an LSTM learns an order-2 language past the order-1 baseline, same seed same bits",
      run: lstmLearns,
    },
    {
      name: "train: a transformer learns the same language past the order-1 baseline",
      run: transformerLearns,
    },
    { name: "train: a resumed run equals the uninterrupted one bit for bit", run: resumeIsExact },
    {
      name: "train: export writes a model loadModel reads, with the trainer's outputs",
      run: exportLoads,
    },
    {
      name: "train: distillation keeps 95% of the teacher's accuracy at a quarter of its size",
      run: distillation,
    },
    {
      name: "train: QAT through the int8 path scores at least as post-training int8 does",
      run: qat,
    },
  ];
}
