/**
 * The training commands, run in-process through main(): train from an architecture JSON on a
 * data file written with writeTrainingData, the progress and held-out lines, the checkpoint and
 * --resume, the exported model loading with loadModel, finetune, distill and quantize --qat,
 * and the refusals (shapes that do not fit the model, missing flags). Runtime-neutral:
 * test/train-cli.test.ts and test/deno/train-cli.test.ts.
 */

import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/model/load.ts";
import { writeSafetensors } from "../../src/model/formats/safetensors.ts";
import { writeTrainingData } from "../../src/train/data.ts";
import { markovLanguage, markovTask } from "../../src/train/tasks.ts";
import { TrainRng } from "../../src/train/rng.ts";
import { writeTensorFile } from "../../src/train/tensors.ts";
import { type Case, check } from "./check.ts";
import { cli } from "./live.ts";

async function withScratch(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "cadenza-train-cli-"));
  try {
    await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const ARCH = {
  inputSize: 8,
  layers: [
    { kind: "lstm", inputSize: 8, outputSize: 16 },
    { kind: "dense", inputSize: 16, outputSize: 8, activation: "softmax", bias: true },
  ],
};

function files(dir: string) {
  const lang = markovLanguage(8, 5);
  const data = join(dir, "markov.safetensors");
  writeFileSync(data, writeTrainingData(markovTask({ count: 96, steps: 12, seed: 1 }, lang).data));
  const arch = join(dir, "lstm.json");
  writeFileSync(arch, JSON.stringify(ARCH));
  return { data, arch };
}

async function trainAndResume(): Promise<void> {
  await withScratch(async (dir) => {
    const { data, arch } = files(dir);
    const out = join(dir, "m.safetensors");
    const flags = ["--data", data, "--batch", "16", "--lr", "0.02", "--seed", "3"];
    const r = await cli("train", "--model", arch, ...flags, "--epochs", "2", "--out", out);
    check(r.code === 0, () => `train: exit ${r.code}: ${r.err}`);
    check(
      /^train: .*m\.safetensors: 1736 parameters, 10 steps, held-out loss \d/.test(r.out),
      () => r.out,
    );
    check(
      /epoch 1\/2: train loss [\d.]+, held-out loss [\d.]+, accuracy [\d.]+/.test(r.err),
      () => r.err,
    );
    check(/train epoch 2\/2 step 10\/10 loss [\d.]+ [\d.]+ ex\/s ETA/.test(r.err), () => r.err);
    const model = await loadModel(out);
    check(model.spec.meta?.trained_by === "cadenza train", () => JSON.stringify(model.spec.meta));
    model.dispose();
    check(existsSync(`${out}.ckpt.safetensors`), () => "no checkpoint");
    // The same run stopped after 4 steps (mid-epoch) and resumed: the same file, bit for bit.
    const half = join(dir, "h.safetensors");
    const h1 = await cli(
      "train",
      "--model",
      arch,
      ...flags,
      "--epochs",
      "2",
      "--out",
      half,
      "--max-steps",
      "4",
    );
    check(h1.code === 0 && /stopped after 4 steps/.test(h1.err) && !existsSync(half), () => h1.err);
    const h2 = await cli(
      "train",
      "--model",
      arch,
      ...flags,
      "--epochs",
      "2",
      "--out",
      half,
      "--resume",
    );
    check(h2.code === 0 && /resuming .* at epoch 1, batch 4, step 4/.test(h2.err), () => h2.err);
    const [x, y] = [await loadModel(out), await loadModel(half)];
    const same = x.spec.layers.every((l, i) =>
      Object.entries(l.tensors).every(([k, v]) =>
        v.every((w, j) => Object.is(w, y.spec.layers[i].tensors[k][j]))
      )
    );
    x.dispose();
    y.dispose();
    check(same, () => "the resumed run wrote other weights than the uninterrupted one");
  });
}

async function otherCommands(): Promise<void> {
  await withScratch(async (dir) => {
    const { data, arch } = files(dir);
    const teacher = join(dir, "t.safetensors");
    const flags = ["--data", data, "--batch", "16", "--lr", "0.02"];
    check(
      (await cli("train", "--model", arch, ...flags, "--epochs", "2", "--out", teacher)).code === 0,
      () => "train",
    );
    const ft = await cli("finetune", teacher, ...flags, "--epochs", "1");
    check(
      ft.code === 0 && /finetune: .* -> .*t-finetuned\.safetensors: 5 steps/.test(ft.out),
      () => ft.out + ft.err,
    );
    // A "pruned" model: every other recurrent weight 0; --keep-zeros keeps them 0.
    const pruned = await loadModel(teacher);
    const spec = pruned.spec;
    pruned.dispose();
    spec.layers[0].tensors.Wh.forEach((_, i, a) => i % 2 === 0 && (a[i] = 0));
    const prunedPath = join(dir, "pruned.safetensors");
    writeFileSync(prunedPath, writeSafetensors(spec));
    const kz = await cli("finetune", prunedPath, ...flags, "--epochs", "1", "--keep-zeros");
    check(
      kz.code === 0 && /holding 512 weight-matrix entries that are 0/.test(kz.err),
      () => kz.err,
    );
    const tuned = await loadModel(join(dir, "pruned-finetuned.safetensors"));
    const wh = tuned.spec.layers[0].tensors.Wh;
    tuned.dispose();
    check(wh.every((v, i) => (i % 2 === 0) === (v === 0)), () => "--keep-zeros let a zero move");
    const small = join(dir, "small.json");
    writeFileSync(
      small,
      JSON.stringify({
        inputSize: 8,
        layers: [
          { kind: "lstm", inputSize: 8, outputSize: 4 },
          { kind: "dense", inputSize: 4, outputSize: 8, activation: "softmax", bias: true },
        ],
      }),
    );
    const s = join(dir, "s.safetensors");
    const d = await cli(
      "distill",
      "--teacher",
      teacher,
      "--student",
      small,
      ...flags,
      "--epochs",
      "1",
      "--out",
      s,
      "--json",
    );
    check(d.code === 0, () => d.err);
    const summary = JSON.parse(d.out);
    check(summary.studentParameters === 248 && summary.teacherParameters === 1736, () => d.out);
    check(summary.student.accuracy > 0 && summary.teacher.accuracy > 0, () => d.out);
    const q = join(dir, "q.safetensors");
    const r = await cli("quantize", teacher, q, "--qat", ...flags, "--epochs", "1");
    check(
      r.code === 0 && /QAT loss [\d.]+, accuracy [\d.]+; post-training int8/.test(r.out),
      () => r.out + r.err,
    );
    const qm = await loadModel(q, { precision: "int8" });
    check(qm.spec.meta?.precision === "int8", () => JSON.stringify(qm.spec.meta));
    // Stored as int8 (I8 matrices, per-row scales): it loads as int8 by default.
    check(qm.int8 !== null && qm.precision === "int8", () => "the QAT file is not an int8 file");
    qm.dispose();
    const p = join(dir, "p.safetensors");
    const ptq = await cli("quantize", teacher, p);
    check(ptq.code === 0 && /int8 \(post-training/.test(ptq.out), () => ptq.out + ptq.err);
    const pm = await loadModel(p);
    const at_load = await loadModel(teacher, { precision: "int8" });
    const x = new Float32Array(pm.inputSize).map((_, i) => Math.cos(i));
    const want = at_load.forward(x).slice();
    const same = pm.forward(x).every((v, i) => Object.is(v, want[i]));
    check(pm.int8 !== null && same, () => "post-training int8 file differs from int8 at load");
    pm.dispose();
    at_load.dispose();
  });
}

async function refusals(): Promise<void> {
  await withScratch(async (dir) => {
    const { data } = files(dir);
    const wide = join(dir, "wide.json");
    writeFileSync(
      wide,
      JSON.stringify({
        ...ARCH,
        inputSize: 9,
        layers: [{ ...ARCH.layers[0], inputSize: 9 }, ARCH.layers[1]],
      }),
    );
    const out = join(dir, "x.safetensors");
    const r = await cli("train", "--model", wide, "--data", data, "--out", out);
    check(r.code === 1, () => `exit ${r.code}`);
    check(
      r.err.includes("E_SHAPE") &&
        r.err.includes('markov.safetensors: tensor "inputs": expected [N, T, 9]') &&
        r.err.includes("[86, 12, 8]"),
      () => r.err,
    );
    check(!existsSync(out), () => "wrote a model after refusing");
    const missing = await cli("train", "--data", data, "--out", out);
    check(missing.code === 2 && missing.err.includes("--model"), () => missing.err);
    const bad = await cli(
      "train",
      "--model",
      "MelodyTransformer",
      "--data",
      data,
      "--out",
      out,
      "--epochs",
      "0",
    );
    check(bad.code === 2 && bad.err.includes("--epochs must be a positive integer"), () => bad.err);
    const noQat = await cli("quantize", out, out, "--data", data);
    check(noQat.code === 2 && noQat.err.includes("--qat"), () => noQat.err);
    const noCkpt = await cli(
      "train",
      "--model",
      join(dir, "lstm.json"),
      "--data",
      data,
      "--out",
      out,
      "--resume",
    );
    check(noCkpt.code === 1 && noCkpt.err.includes("no checkpoint"), () => noCkpt.err);
  });
}

/** Single-step data ([N, F] inputs, [N, C] values) on an MLP given by name in a file. */
async function mlpValues(): Promise<void> {
  await withScratch(async (dir) => {
    const rng = new TrainRng(4);
    const n = 64;
    const inputs = Float32Array.from({ length: n * 6 }, () => rng.float() * 2 - 1);
    // A target the MLP can fit: a fixed linear map of the inputs, squashed.
    const targets = new Float32Array(n * 2);
    for (let i = 0; i < n; i++) {
      const x = inputs.subarray(i * 6, i * 6 + 6);
      targets[i * 2] = Math.tanh(x[0] - x[3]);
      targets[i * 2 + 1] = Math.tanh(0.5 * x[1] + x[5]);
    }
    const data = join(dir, "mlp.safetensors");
    writeFileSync(
      data,
      writeTensorFile({
        meta: { loss: "mse" },
        tensors: new Map([
          ["inputs", { shape: [n, 6], data: inputs }],
          ["targets", { shape: [n, 2], data: targets }],
        ]),
      }),
    );
    const arch = join(dir, "mlp.json");
    writeFileSync(
      arch,
      JSON.stringify({
        inputSize: 6,
        layers: [
          { kind: "dense", inputSize: 6, outputSize: 16, activation: "tanh" },
          { kind: "dense", inputSize: 16, outputSize: 2, activation: "tanh" },
        ],
      }),
    );
    const out = join(dir, "mlp-out.safetensors");
    const r = await cli(
      "train",
      "--model",
      arch,
      "--data",
      data,
      "--batch",
      "8",
      "--lr",
      "0.02",
      "--epochs",
      "30",
      "--out",
      out,
      "--json",
    );
    check(r.code === 0, () => r.err);
    const s = JSON.parse(r.out);
    check(s.loss === "mse" && s.steps === 30 * 7, () => r.out);
    // The targets' variance is about 0.3: a fit far below it learned the map.
    check(s.heldOut.loss < 0.05, () => `held-out mse ${s.heldOut.loss}`);
    // --eval FILE: that file is the held-out part (here all 64 rows), the data file all trained.
    const e = await cli(
      "train",
      "--model",
      arch,
      "--data",
      data,
      "--eval",
      data,
      "--batch",
      "8",
      "--epochs",
      "1",
      "--out",
      out,
      "--json",
    );
    const es = JSON.parse(e.out);
    check(e.code === 0 && es.heldOut.weight === 64 && es.steps === 8, () => e.out + e.err);
  });
}

export function trainCliCases(): Case[] {
  return [
    { name: "cadenza train: single-step data and value targets (an MLP, mse)", run: mlpValues },
    {
      name:
        "cadenza train: progress, held-out lines, checkpoint, export; --resume gives the same model",
      run: trainAndResume,
    },
    { name: "cadenza finetune, distill and quantize --qat", run: otherCommands },
    {
      name: "cadenza train refuses data that does not fit the model, naming both shapes",
      run: refusals,
    },
  ];
}
