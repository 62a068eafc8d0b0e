/**
 * Pruning (src/optimize/prune.ts): unstructured pruning reaches exactly the asked sparsity in
 * every matrix by removing the smallest magnitudes; a structurally pruned model computes what
 * the original computes with the removed units' contributions taken out (checked in float64
 * by test/reference.ts on the original with those columns zeroed, worked out here by hand from
 * the report's removed units); zero sparsity changes nothing; fine-tuning keeps removed
 * weights at 0 and lowers the held-out loss of the pruned model; pruned files load through
 * the ordinary loadModel. Runtime-neutral: test/prune.test.ts and test/deno/prune.test.ts.
 *
 * Bound: PRUNE_BOUND on the error normalised by max(1, |output|max) over a sequence through a
 * 7-layer model: test/cases/layers.ts holds each layer to 2e-5 against the same reference;
 * seven layers of f32 rounding in a chain stay under 1e-4.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, modelFromSpec } from "../../src/model/load.ts";
import { writeSafetensors } from "../../src/model/formats/safetensors.ts";
import {
  MATRIX_TENSORS,
  packImage,
  SPARSE_MIN_COLS,
  SPARSE_MIN_ZEROS,
} from "../../src/model/image.ts";
import type { LayerArch, LayerSpec, ModelSpec } from "../../src/model/spec.ts";
import { prune, pruneFinetune, trainableMask } from "../../src/optimize/prune.ts";
import { type TrainingData, writeTrainingData } from "../../src/train/data.ts";
import { fit } from "../../src/train/loop.ts";
import { initSpec } from "../../src/train/params.ts";
import { markovLanguage, markovTask } from "../../src/train/tasks.ts";
import { Trainer } from "../../src/train/trainer.ts";
import { writeFileAtomicSync } from "../../src/atomic.ts";
import { cli } from "./live.ts";
import { openNative } from "../../src/native/index.ts";
import { deviation, Rng } from "../helpers.ts";
import { ReferenceModel } from "../reference.ts";
import {
  type Case,
  check,
  checkDeviation,
  fail,
  rejectsCadenza,
  throwsCadenza,
  throwsCadenzaWith,
} from "./check.ts";

export const PRUNE_BOUND = 1e-4;

/** dense, batchnorm, dense, lstm, activation, gru, dense softmax: every unit kind and pass-through. */
const CHAIN_ARCH: { inputSize: number; layers: LayerArch[] } = {
  inputSize: 7,
  layers: [
    { kind: "dense", inputSize: 7, outputSize: 13, activation: "tanh", bias: true },
    { kind: "batchnorm", inputSize: 13, outputSize: 13 },
    { kind: "dense", inputSize: 13, outputSize: 11, activation: "relu", bias: true },
    { kind: "lstm", inputSize: 11, outputSize: 9 },
    { kind: "activation", inputSize: 9, outputSize: 9, activation: "sigmoid" },
    { kind: "gru", inputSize: 9, outputSize: 6 },
    { kind: "dense", inputSize: 6, outputSize: 5, activation: "softmax", bias: true },
  ],
};
/** Which layer reads each prunable layer's units (by hand from the architecture above). */
const CHAIN_READERS: Record<number, number> = { 0: 2, 2: 3, 3: 5, 5: 6 };

const ATTENTION_ARCH: { inputSize: number; layers: LayerArch[] } = {
  inputSize: 5,
  layers: [
    { kind: "dense", inputSize: 5, outputSize: 8, activation: "linear", bias: true },
    {
      kind: "transformer",
      inputSize: 8,
      outputSize: 8,
      heads: 4,
      context: 4,
      ffDim: 13,
      epsilon: 1e-5,
      activation: "gelu",
    },
    { kind: "conv1d", inputSize: 8, outputSize: 6, kernelSize: 3, activation: "tanh" },
    { kind: "dense", inputSize: 6, outputSize: 3, activation: "linear", bias: true },
  ],
};

/** Every tensor uniform in (-0.6, 0.6) (batchnorm variance in (0.5, 1.5)): no zeros, no ties. */
function randomSpec(arch: { inputSize: number; layers: LayerArch[] }, seed: number): ModelSpec {
  const spec = initSpec(arch, seed);
  const rng = new Rng(seed);
  for (const layer of spec.layers) {
    for (const [name, t] of Object.entries(layer.tensors)) {
      for (let i = 0; i < t.length; i++) {
        t[i] = name === "var" ? 0.5 + rng.next() : (rng.next() * 2 - 1) * 0.6;
      }
    }
  }
  return spec;
}

function inputs(spec: ModelSpec, steps: number, seed: number): Float32Array[] {
  const rng = new Rng(seed);
  return Array.from(
    { length: steps },
    () => Float32Array.from({ length: spec.inputSize }, () => rng.next() * 2 - 1),
  );
}

async function nativeRun(spec: ModelSpec, xs: Float32Array[]): Promise<Float32Array> {
  const model = await modelFromSpec(spec);
  try {
    const out: number[] = [];
    for (const x of xs) out.push(...model.forward(x));
    return Float32Array.from(out);
  } finally {
    model.dispose();
  }
}

function referenceRun(spec: ModelSpec, xs: Float32Array[]): Float64Array {
  const ref = new ReferenceModel(spec);
  const out: number[] = [];
  for (const x of xs) out.push(...ref.forward(x));
  return Float64Array.from(out);
}

function zeroCols(w: Float32Array, cols: number, which: number[]): void {
  for (let r = 0; r < w.length / cols; r++) for (const c of which) w[r * cols + c] = 0;
}

function cloneSpec(spec: ModelSpec): ModelSpec {
  return {
    ...spec,
    layers: spec.layers.map((l) => ({
      ...l,
      tensors: Object.fromEntries(Object.entries(l.tensors).map(([k, v]) => [k, v.slice()])),
    })),
  };
}

/** Unstructured: each matrix loses exactly round(s n) entries, the smallest ones; nothing else. */
function exactSparsity(): void {
  for (const [arch, seed] of [[CHAIN_ARCH, 1], [ATTENTION_ARCH, 2]] as const) {
    const spec = randomSpec(arch, seed);
    for (const s of [0.5, 0.7, 0.9]) {
      const { spec: out, masks, report } = prune(spec, { sparsity: s, perLayer: { 0: 0 } });
      check(masks !== undefined, () => "unstructured pruning returns masks");
      out.layers.forEach((layer, i) => {
        const before = spec.layers[i];
        for (const [name, t] of Object.entries(layer.tensors)) {
          const orig = before.tensors[name];
          const isMatrix = MATRIX_TENSORS[layer.kind].includes(name);
          const want = isMatrix && i !== 0 ? Math.round(s * t.length) : 0;
          let zeros = 0;
          let maxRemoved = 0;
          let minKept = Infinity;
          for (let k = 0; k < t.length; k++) {
            if (t[k] === 0) {
              zeros++;
              maxRemoved = Math.max(maxRemoved, Math.abs(orig[k]));
              check(masks![i][name]?.[k] === 0, () => `layer ${i} ${name}[${k}]: not in the mask`);
            } else {
              check(t[k] === orig[k], () => `layer ${i} ${name}[${k}] changed`);
              minKept = Math.min(minKept, Math.abs(orig[k]));
            }
          }
          check(
            zeros === want,
            () => `s ${s} layer ${i} ${name}: ${zeros} zeros, expected ${want}`,
          );
          check(
            maxRemoved <= minKept,
            () => `layer ${i} ${name}: removed |w| ${maxRemoved} > kept ${minKept}`,
          );
        }
      });
      check(
        report.parametersAfter === report.parametersBefore,
        () => "unstructured pruning keeps the parameter count",
      );
    }
  }
}

/** Structured: the smaller model equals the original with the removed units' columns zeroed. */
async function structuredEqualsRemoval(): Promise<void> {
  const spec = randomSpec(CHAIN_ARCH, 3);
  const { spec: small, report } = prune(spec, { sparsity: 0.5, structured: true });
  const masked = cloneSpec(spec);
  for (const [from, reader] of Object.entries(CHAIN_READERS)) {
    const i = Number(from);
    const removed = report.layers[i].removedUnits ?? [];
    const units = spec.layers[i].outputSize;
    check(
      removed.length === Math.round(0.5 * units) &&
        small.layers[i].outputSize === units - removed.length,
      () => `layer ${i}: removed ${removed.length} of ${units}, now ${small.layers[i].outputSize}`,
    );
    const r = masked.layers[reader];
    zeroCols(r.kind === "dense" ? r.tensors.W : r.tensors.Wx, r.inputSize, removed);
    const l = masked.layers[i];
    if (l.kind === "lstm" || l.kind === "gru") zeroCols(l.tensors.Wh, l.outputSize, removed);
  }
  check(
    small.layers[6].outputSize === 5 && small.layers[0].inputSize === 7,
    () => "interfaces kept",
  );
  const xs = inputs(spec, 6, 4);
  const want = referenceRun(masked, xs);
  // Exact in float64: the removal is the same function, not an approximation of it.
  checkDeviation(deviation(referenceRun(small, xs), want), 1e-12, () => "pruned spec, float64");
  checkDeviation(deviation(await nativeRun(small, xs), want), PRUNE_BOUND, () => "pruned model");
  // And the removed units mattered: the original differs.
  const orig = referenceRun(spec, xs);
  check(deviation(orig, want).worst > 1e-3, () => "the units removed changed nothing");
}

/** FF columns shrink ffDim; zeroed heads remove their share of the attention. */
async function structuredTransformer(): Promise<void> {
  const spec = randomSpec(ATTENTION_ARCH, 5);
  const { spec: small, report, masks } = prune(spec, {
    sparsity: 0.5,
    structured: true,
    heads: 0.5,
  });
  const t = report.layers[1];
  check(
    small.layers[1].ffDim === 6 && t.removedUnits?.length === 7 && t.removedHeads?.length === 2,
    () => `transformer: ffDim ${small.layers[1].ffDim}, ${JSON.stringify(t)}`,
  );
  check(
    report.layers[0].action === "none" &&
      /keeps its input width/.test(report.layers[0].reason ?? ""),
    () => `dense before a transformer: ${JSON.stringify(report.layers[0])}`,
  );
  check(masks?.[1]?.Wq !== undefined, () => "zeroed heads come with masks");
  const masked = cloneSpec(spec);
  const tr = masked.layers[1].tensors;
  zeroCols(tr.W2, 13, t.removedUnits!);
  const dk = 2;
  for (const h of t.removedHeads!) {
    for (let r = h * dk; r < (h + 1) * dk; r++) {
      for (const name of ["Wq", "Wk", "Wv"]) tr[name].fill(0, r * 8, (r + 1) * 8);
      for (const name of ["bq", "bk", "bv"]) tr[name][r] = 0;
      zeroCols(tr.Wo, 8, [r]);
    }
  }
  const xs = inputs(spec, 7, 6);
  const want = referenceRun(masked, xs);
  checkDeviation(deviation(referenceRun(small, xs), want), 1e-12, () => "transformer, float64");
  checkDeviation(deviation(await nativeRun(small, xs), want), PRUNE_BOUND, () => "transformer");
}

/** Sparsity 0 in either mode: the same tensors and the same outputs, bit for bit. */
async function zeroSparsityIdentical(): Promise<void> {
  for (const [arch, seed] of [[CHAIN_ARCH, 7], [ATTENTION_ARCH, 8]] as const) {
    const spec = randomSpec(arch, seed);
    const xs = inputs(spec, 5, 9);
    const base = await nativeRun(spec, xs);
    for (const structured of [false, true]) {
      const { spec: out, report } = prune(spec, { sparsity: 0, structured });
      check(
        report.parametersAfter === report.parametersBefore,
        () => "sparsity 0 removed something",
      );
      const got = await nativeRun(out, xs);
      check(
        got.every((v, i) => Object.is(v, base[i])),
        () => `structured ${structured}: outputs changed at sparsity 0`,
      );
    }
  }
}

/** Pruned files (both modes) load through the ordinary loadModel and run as the spec does. */
async function prunedFilesLoad(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "cadenza-prune-"));
  try {
    const spec = randomSpec(CHAIN_ARCH, 10);
    const xs = inputs(spec, 4, 11);
    for (const structured of [false, true]) {
      const { spec: out } = prune(spec, { sparsity: 0.6, structured });
      const path = join(dir, `pruned-${structured}.safetensors`);
      writeFileAtomicSync(path, writeSafetensors(out));
      const model = await loadModel(path);
      try {
        check(
          model.spec.meta?.pruned === (structured ? "structured" : "unstructured"),
          () => `meta.pruned: ${model.spec.meta?.pruned}`,
        );
        check(
          model.parameterCount ===
            out.layers.reduce(
              (n, l) => n + Object.values(l.tensors).reduce((m, t) => m + t.length, 0),
              0,
            ),
          () => "parameters",
        );
        const got: number[] = [];
        for (const x of xs) got.push(...model.forward(x));
        const want = await nativeRun(out, xs);
        check(got.every((v, i) => Object.is(v, want[i])), () => `${path}: outputs differ`);
      } finally {
        model.dispose();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const LANGUAGE = markovLanguage(8, 5);

async function trainedLstm(): Promise<
  { spec: ModelSpec; train: TrainingData; heldOut: TrainingData }
> {
  const train = markovTask({ count: 192, steps: 16, seed: 31 }, LANGUAGE).data;
  const heldOut = markovTask({ count: 64, steps: 16, seed: 32 }, LANGUAGE).data;
  const arch = {
    inputSize: 8,
    layers: [
      { kind: "dense", inputSize: 8, outputSize: 24, activation: "tanh", bias: true },
      { kind: "lstm", inputSize: 24, outputSize: 24 },
      { kind: "dense", inputSize: 24, outputSize: 8, activation: "softmax", bias: true },
    ] as LayerArch[],
  };
  const trainer = await Trainer.create(initSpec(arch, 3), {
    lr: 2e-2,
    batch: 32,
    seqLen: 16,
    loss: "xent",
    clipNorm: 1,
    totalSteps: 8 * 6,
  });
  try {
    await fit(trainer, train, heldOut, { epochs: 8, seed: 2 });
    return { spec: trainer.toSpec(), train, heldOut };
  } finally {
    trainer.dispose();
  }
}

/** Fine-tuning: pruned weights stay exactly 0 and the held-out loss goes down. */
async function finetuneKeepsZerosAndHelps(): Promise<void> {
  const { spec, train, heldOut } = await trainedLstm();
  const s = 0.8;
  const r = await pruneFinetune(spec, {
    sparsity: s,
    data: train,
    heldOut,
    epochs: 4,
    lr: 5e-3,
    batch: 32,
    seed: 3,
  });
  const h = r.history[0];
  check(h.prunedHeldOut !== null && h.heldOut !== null, () => "held-out figures");
  check(
    h.heldOut!.loss < h.prunedHeldOut!.loss - 0.01,
    () => `held-out loss ${h.heldOut!.loss} after fine-tuning, ${h.prunedHeldOut!.loss} before`,
  );
  // Without fine-tuning, prune() gives the same pruned model as the round started from.
  const plain = prune(spec, { sparsity: s });
  const mask = trainableMask(spec, plain.masks!);
  const flat = (m: ModelSpec) =>
    Float32Array.from(
      m.layers.flatMap((l: LayerSpec) => Object.keys(l.tensors).flatMap((k) => [...l.tensors[k]])),
    );
  const tuned = flat(r.spec);
  const start = flat(plain.spec);
  let held = 0;
  let moved = 0;
  mask.forEach((m, i) => {
    if (m === 0) {
      held++;
      if (tuned[i] !== 0) fail(`parameter ${i} was pruned but is ${tuned[i]} after fine-tuning`);
    } else if (tuned[i] !== start[i]) moved++;
  });
  check(held > 0 && moved > 0, () => `held ${held}, moved ${moved}`);
}

/** Gradual structured pruning: two rounds reach the target widths; fine-tuning helps. */
async function gradualStructured(): Promise<void> {
  const { spec, train, heldOut } = await trainedLstm();
  const r = await pruneFinetune(spec, {
    sparsity: 0.5,
    structured: true,
    data: train,
    heldOut,
    steps: 2,
    epochs: 2,
    lr: 5e-3,
  });
  check(
    r.spec.layers[0].outputSize === 12 && r.spec.layers[1].outputSize === 12 &&
      r.report.layers[1].removedUnits?.length === 12 &&
      new Set(r.report.layers[1].removedUnits).size === 12,
    () => `widths ${r.spec.layers.map((l) => l.outputSize)}; ${JSON.stringify(r.report.layers[1])}`,
  );
  check(
    r.history.length === 2 && r.history[0].sparsity < 0.5 && r.history[1].sparsity === 0.5,
    () => JSON.stringify(r.history),
  );
  const last = r.history[1];
  check(last.heldOut!.loss <= last.prunedHeldOut!.loss, () => JSON.stringify(last));
}

async function badOptions(): Promise<void> {
  const spec = randomSpec(CHAIN_ARCH, 12);
  throwsCadenzaWith(() => prune(spec, { sparsity: 1 }), "E_ARGUMENT", "options.sparsity", "[0, 1)");
  throwsCadenzaWith(
    () => prune(spec, { sparsity: 0.5, perLayer: { 9: 0.5 } }),
    "E_ARGUMENT",
    "perLayer",
    "0..6",
  );
  throwsCadenzaWith(
    () => prune(spec, { sparsity: 0.5, perLayer: { 1: -0.1 } }),
    "E_ARGUMENT",
    "perLayer[1]",
  );
  throwsCadenzaWith(
    () => prune(spec, { sparsity: 0.5, sructured: true } as unknown as { sparsity: number }),
    "E_ARGUMENT",
    "sructured",
  );
  const data = markovTask({ count: 40, steps: 4, seed: 1 }, LANGUAGE).data;
  await rejectsCadenza(
    () => pruneFinetune(spec, { sparsity: 0.5, data }),
    "E_SHAPE",
    /inputs.*expected/,
    "data of another width",
  );
}

/** `cadenza prune`: both modes, --json, --finetune with held-out figures, and the refusals. */
async function pruneCli(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "cadenza-prune-cli-"));
  try {
    const { spec, train, heldOut } = await trainedLstm();
    const input = join(dir, "m.safetensors");
    writeFileAtomicSync(input, writeSafetensors(spec));
    const data = join(dir, "train.safetensors");
    const evalFile = join(dir, "eval.safetensors");
    writeFileAtomicSync(data, writeTrainingData(train));
    writeFileAtomicSync(evalFile, writeTrainingData(heldOut));
    const out = join(dir, "s.safetensors");
    const r = await cli("prune", input, out, "--sparsity", "0.5", "--structured", "--json");
    check(r.code === 0, () => `exit ${r.code}: ${r.err}`);
    const j = JSON.parse(r.out) as { report: { layers: { unitsAfter: number }[] } };
    check(
      j.report.layers[0].unitsAfter === 12 && j.report.layers[1].unitsAfter === 12,
      () => r.out,
    );
    const small = await loadModel(out);
    check(
      small.spec.layers[1].outputSize === 12 && small.spec.meta?.pruned_from === input,
      () => JSON.stringify(small.spec.meta),
    );
    small.dispose();
    const tuned = join(dir, "u.safetensors");
    const f = await cli(
      "prune",
      input,
      tuned,
      "--sparsity",
      "0.7",
      "--finetune",
      "--data",
      data,
      "--eval",
      evalFile,
      "--epochs",
      "2",
      "--lr",
      "0.005",
    );
    check(f.code === 0, () => `exit ${f.code}: ${f.err}`);
    check(/layer 1 lstm: \d+\/\d+ weights left \(70\.0% pruned\)/.test(f.out), () => f.out);
    check(/held-out, original: loss [\d.]+, accuracy/.test(f.out), () => f.out);
    check(
      /round 1 \(sparsity 0\.700\): pruned loss [\d.]+.*fine-tuned loss/.test(f.out),
      () => f.out,
    );
    check(/prune epoch 2\/2 step \d+\/\d+/.test(f.err), () => `no progress line: ${f.err}`);
    const refusals: [string[], number, RegExp][] = [
      [["prune", input, out], 2, /--sparsity S is required/],
      [["prune", input, out, "--sparsity", "1"], 2, /--sparsity must be a fraction in \[0, 1\)/],
      [["prune", input, out, "--sparsity", "0.5", "--per-layer", "x"], 2, /--per-layer must be/],
      [
        ["prune", input, out, "--sparsity", "0.5", "--data", data],
        2,
        /--data goes with --finetune/,
      ],
      [["prune", input, out, "--sparsity", "0.5", "--finetune"], 2, /--finetune needs --data/],
      [["prune", input, out, "--sparsity", "0.5", "--per-layer", "7=0.5"], 1, /perLayer/],
      [["prune", join(dir, "none.safetensors"), out, "--sparsity", "0.5"], 1, /none\.safetensors/],
    ];
    for (const [argv, code, pattern] of refusals) {
      const e = await cli(...argv);
      check(
        e.code === code && pattern.test(e.err),
        () => `${argv.join(" ")}: exit ${e.code}: ${e.err}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A dense layer [out][in] whose W has about `zeros` of its entries 0 (either sign). */
function sparseDense(inp: number, out: number, zeros: number, seed: number): ModelSpec {
  const rng = new Rng(seed);
  const W = Float32Array.from(
    { length: inp * out },
    () => rng.next() < zeros ? (rng.next() < 0.5 ? 0 : -0) : rng.next() * 2 - 1,
  );
  const b = Float32Array.from({ length: out }, () => rng.next() - 0.5);
  return {
    inputSize: inp,
    layers: [{
      kind: "dense",
      inputSize: inp,
      outputSize: out,
      activation: "tanh",
      tensors: { W, b },
    }],
  };
}

/**
 * The sparse kernel (dense layers held as compressed sparse rows) against the float64
 * reference on odd sizes and sparsities, through forward, forwardBatch and process; its bytes
 * as documented. Bound: LAYER_BOUND of test/cases/layers.ts (2e-5), one layer.
 */
async function sparseKernelExact(): Promise<void> {
  const sizes = [1, 3, 17, 33, 70];
  for (const inp of sizes) {
    for (const out of sizes) {
      for (const zeros of [0, 0.5, 0.9, 1]) {
        const spec = sparseDense(inp, out, zeros, inp * 100 + out + zeros * 7);
        const model = await modelFromSpec(spec, { sparse: "always" });
        try {
          check(model.sparseLayers.length === 1, () => "not held sparse");
          const W = spec.layers[0].tensors.W;
          const nnz = W.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);
          check(
            model.weightBytes === 6 * nnz + 4 * (out + 1) + 4 * out &&
              model.nativeInfo().weightBytes === model.weightBytes,
            () => `${out}x${inp}: weightBytes ${model.weightBytes}, nnz ${nnz}`,
          );
          const xs = inputs(spec, 3, inp + out);
          const want = referenceRun(spec, xs);
          const got: number[] = [];
          for (const x of xs) got.push(...model.forward(x));
          const where = () => `${out}x${inp} at ${zeros} zeros`;
          checkDeviation(deviation(got, want), 2e-5, () => `${where()} forward`);
          const flat = Float32Array.from(xs.flatMap((x) => [...x]));
          checkDeviation(
            deviation(model.forwardBatch(flat, 3), want),
            2e-5,
            () => `${where()} batch`,
          );
          checkDeviation(deviation(model.process(flat, 3), want), 2e-5, () => `${where()} process`);
        } finally {
          model.dispose();
        }
      }
    }
  }
}

/** Infinities and NaN in the input: the sparse layer gives what the dense one gives. */
async function sparseNonFinite(): Promise<void> {
  const spec = sparseDense(9, 6, 0.5, 3);
  spec.layers[0].activation = "linear";
  const dense = await modelFromSpec(spec, { sparse: "never" });
  const sparse = await modelFromSpec(spec, { sparse: "always" });
  try {
    for (const bad of [Infinity, -Infinity, NaN]) {
      for (const at of [0, 4, 8]) {
        const x = Float32Array.from({ length: 9 }, (_, i) => (i === at ? bad : i / 9 - 0.4));
        const a = [...dense.forward(x)];
        const b = [...sparse.forward(x)];
        a.forEach((v, i) => {
          const same = Number.isNaN(v)
            ? Number.isNaN(b[i])
            : Number.isFinite(v)
            ? Math.abs(v - b[i]) < 1e-5
            : v === b[i];
          check(same, () => `x[${at}] = ${bad}: output ${i} dense ${v}, sparse ${b[i]}`);
        });
      }
    }
  } finally {
    dense.dispose();
    sparse.dispose();
  }
}

/** "auto" holds a layer sparse only where the measured rule says the kernel is faster. */
async function sparseAutoRule(): Promise<void> {
  const cases: [number, number, number, boolean][] = [
    [512, 256, 0.96, true],
    [512, 256, 0.9, false],
    [512, 256, 0.5, false],
    [128, 128, 0.96, false],
  ];
  check(
    SPARSE_MIN_COLS === 256 && SPARSE_MIN_ZEROS === 0.95,
    () => "the rule moved: update these cases and docs/PRUNING.md",
  );
  for (const [inp, out, s, want] of cases) {
    const pruned = prune(sparseDense(inp, out, 0, 1), { sparsity: s }).spec;
    const model = await modelFromSpec(pruned);
    check(
      (model.sparseLayers.length === 1) === want,
      () => `${out}x${inp} at ${s}: sparse layers ${model.sparseLayers}`,
    );
    model.dispose();
  }
  await rejectsCadenza(
    () => modelFromSpec(sparseDense(3, 2, 0, 1), { sparse: "yes" as "auto" }),
    "E_ARGUMENT",
    /sparse: expected "auto", "never" or "always"/,
    "bad sparse option",
  );
}

/** Images that lie about a sparse layer are refused with a status and a message. */
async function sparseBadImages(): Promise<void> {
  const api = await openNative();
  const spec = sparseDense(5, 4, 0.5, 9);
  const nnz = spec.layers[0].tensors.W.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);
  const image = packImage(spec, "test", "f32", [true]);
  const view = new DataView(image.buffer);
  const record = 8 * 4;
  check(
    view.getUint32(record + 15 * 4, true) === 3 && view.getUint32(record + 5 * 4, true) === nnz,
    () => "word 15 = 3 and p1 = nonzeros",
  );
  const bad = (edit: (v: DataView) => void) => {
    const copy = image.slice();
    edit(new DataView(copy.buffer));
    return copy;
  };
  throwsCadenza(
    () => api.create(bad((v) => v.setUint32(record + 5 * 4, nnz + 1, true))),
    "E_FORMAT",
    /p1 \(nonzeros of a sparse W\) differs/,
    "p1 off by one",
  );
  throwsCadenza(
    () => api.create(bad((v) => v.setUint32(record + 5 * 4, 21, true))),
    "E_FORMAT",
    /p1 \(nonzeros of a sparse W\) must be at most in \* out/,
    "p1 above in * out",
  );
  throwsCadenza(
    () => api.create(bad((v) => v.setUint32(record + 15 * 4, 5, true))),
    "E_FORMAT",
    /weight_type\) is 5, expected 0 \(f32\), 1 \(bf16\), 2 \(int8\), 3 \(sparse\) or 4 \(int8, stored quantised\)/,
    "word 15 = 5",
  );
  const lstm = initSpec(
    { inputSize: 3, layers: [{ kind: "lstm", inputSize: 3, outputSize: 2 }] },
    1,
  );
  const lstmImage = packImage(lstm);
  new DataView(lstmImage.buffer).setUint32(record + 15 * 4, 3, true);
  throwsCadenza(
    () => api.create(lstmImage),
    "E_FORMAT",
    /sparse weights are for dense layers only/,
    "sparse lstm",
  );
}

export function pruneCases(): Case[] {
  return [
    {
      name: "prune: unstructured reaches the exact sparsity with the smallest weights",
      run: exactSparsity,
    },
    {
      name: "prune: structured equals the original without the removed units (float64)",
      run: structuredEqualsRemoval,
    },
    { name: "prune: transformer FF columns shrink, zeroed heads", run: structuredTransformer },
    { name: "prune: sparsity 0 leaves outputs identical", run: zeroSparsityIdentical },
    { name: "prune: pruned files load through loadModel", run: prunedFilesLoad },
    {
      name: "prune: fine-tuning holds pruned weights at 0 and lowers held-out loss",
      run: finetuneKeepsZerosAndHelps,
    },
    { name: "prune: gradual structured pruning reaches the target widths", run: gradualStructured },
    { name: "prune: bad options name the field", run: badOptions },
    { name: "prune: the cadenza prune command", run: pruneCli },
    { name: "sparse kernel: equals the float64 reference on odd sizes", run: sparseKernelExact },
    {
      name: "sparse kernel: infinities and NaN as the dense kernel gives them",
      run: sparseNonFinite,
    },
    { name: "sparse kernel: auto follows the measured rule", run: sparseAutoRule },
    { name: "sparse kernel: bad images give status codes and messages", run: sparseBadImages },
  ];
}
