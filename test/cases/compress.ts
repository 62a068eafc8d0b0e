/**
 * int8 files and compressed pipeline directories (issue 11), runtime-neutral: test/compress.test.ts
 * (Bun) and test/deno/compress.test.ts register them.
 *
 * The int8 files are checked against the library itself, an independent implementation of the
 * quantiser (zig/layers/matvec_int8.zig): a model built from the file's int8 values must hold
 * exactly what the library makes when it quantises the f32 weights at load, so every output is
 * compared bit for bit (tolerance 0), step after step (state included).
 */

import { CadenzaError } from "../../src/errors.ts";
import {
  readSafetensorsInt8,
  writeSafetensors,
  writeSafetensorsInt8,
} from "../../src/model/formats/safetensors.ts";
import { packImage, specAsHeld, weightBytes } from "../../src/model/image.ts";
import { loadModel, loadSpec } from "../../src/model/load.ts";
import { Model } from "../../src/model/model.ts";
import { dequantiseSpec, type Int8ModelSpec, quantiseSpec } from "../../src/model/quantised.ts";
import type { LayerArch, ModelSpec } from "../../src/model/spec.ts";
import { openNative } from "../../src/native/index.ts";
import { compressPipeline } from "../../src/optimize/compress.ts";
import { evaluatePipeline } from "../../src/optimize/evaluate.ts";
import { RealtimeEngine } from "../../src/rt/engine.ts";
import {
  EMOTION_MODELS,
  type EmotionOutputs,
  EmotionPipeline,
  inspectEmotionModels,
  modelFile,
} from "../../src/pipeline/emotion.ts";
import { type TrainingData, writeTrainingData } from "../../src/train/data.ts";
import { scoreModel } from "../../src/train/evaluate.ts";
import { initSpec } from "../../src/train/params.ts";
import { main } from "../../src/cli/main.ts";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Case, check, fail, throwsCadenza } from "./check.ts";

/** One small model per matrix kind, odd widths (padding in every panel and column quad). */
function kindArchs(): { name: string; inputSize: number; layers: LayerArch[] }[] {
  return [
    {
      name: "dense 13 -> 17 -> 5",
      inputSize: 13,
      layers: [
        { kind: "dense", inputSize: 13, outputSize: 17, activation: "tanh" },
        { kind: "dense", inputSize: 17, outputSize: 5, activation: "linear", bias: false },
      ],
    },
    {
      name: "lstm 7 -> 11, dense",
      inputSize: 7,
      layers: [
        { kind: "lstm", inputSize: 7, outputSize: 11 },
        { kind: "dense", inputSize: 11, outputSize: 3, activation: "softmax" },
      ],
    },
    {
      name: "gru 9 -> 5",
      inputSize: 9,
      layers: [{ kind: "gru", inputSize: 9, outputSize: 5 }],
    },
    {
      name: "conv1d 6 -> 10 k3 d2",
      inputSize: 6,
      layers: [{ kind: "conv1d", inputSize: 6, outputSize: 10, kernelSize: 3, dilation: 2 }],
    },
    {
      name: "transformer d 12 ff 20, attention",
      inputSize: 12,
      layers: [
        { kind: "transformer", inputSize: 12, outputSize: 12, heads: 3, context: 5, ffDim: 20 },
        { kind: "attention", inputSize: 12, outputSize: 12, heads: 2, context: 4 },
      ],
    },
  ];
}

function inputs(size: number, steps: number, seed: number): Float32Array[] {
  const out: Float32Array[] = [];
  for (let s = 0; s < steps; s++) {
    out.push(new Float32Array(size).map((_, i) => Math.sin(seed + 0.71 * i + 1.37 * s) * 1.5));
  }
  return out;
}

/** Every output of `a` and `b` over the same steps, bit for bit. */
function checkSameOutputs(a: Model, b: Model, what: string): void {
  for (const [step, x] of inputs(a.inputSize, 12, a.inputSize).entries()) {
    const ya = a.forward(x).slice();
    const yb = b.forward(x);
    for (let i = 0; i < ya.length; i++) {
      if (!Object.is(ya[i], yb[i])) {
        fail(`${what}: step ${step} output ${i}: ${yb[i]}, expected ${ya[i]} (bit for bit)`);
      }
    }
  }
}

function sameInt8(a: Int8ModelSpec, b: Int8ModelSpec, what: string): void {
  a.layers.forEach((layer, i) => {
    for (const [name, held] of Object.entries(layer.int8)) {
      const other = b.layers[i].int8[name];
      check(
        held.q.every((v, k) => v === other.q[k]) &&
          held.scales.every((v, k) => Object.is(v, other.scales[k])),
        () => `${what}: layer ${i} ${name}: int8 values or scales differ after the round trip`,
      );
    }
  });
}

async function roundTrip(spec: ModelSpec, what: string): Promise<void> {
  const int8 = quantiseSpec(spec);
  const bytes = writeSafetensorsInt8(int8);
  const read = readSafetensorsInt8(bytes, what);
  sameInt8(int8, read, what);
  const again = writeSafetensorsInt8(read);
  check(
    again.length === bytes.length && again.every((v, i) => v === bytes[i]),
    () => `${what}: write(read(file)) is not byte-identical`,
  );
  const fromFile = await loadModel(bytes);
  const atLoad = await Model.create(spec, { precision: "int8" });
  const dequantised = await Model.create(dequantiseSpec(int8), { precision: "int8" });
  try {
    check(fromFile.precision === "int8", () => `${what}: loaded at ${fromFile.precision}`);
    check(fromFile.int8 !== null, () => `${what}: the model does not keep the int8 values`);
    const expected = weightBytes(spec, "int8");
    check(
      fromFile.weightBytes === expected && fromFile.nativeInfo().weightBytes === expected,
      () =>
        `${what}: weight bytes ${fromFile.weightBytes} / native ${fromFile.nativeInfo().weightBytes}` +
        `, expected ${expected}`,
    );
    checkSameOutputs(atLoad, fromFile, `${what}: int8 file vs f32 weights quantised at load`);
    atLoad.reset();
    fromFile.reset();
    checkSameOutputs(dequantised, fromFile, `${what}: int8 file vs its dequantised values at int8`);
  } finally {
    fromFile.dispose();
    atLoad.dispose();
    dequantised.dispose();
  }
}

/** The dequantised values are what the library computes with at int8 (image.ts specAsHeld). */
function checkDequantisedIsHeld(spec: ModelSpec, what: string): void {
  const held = specAsHeld(spec, "int8");
  const dequantised = dequantiseSpec(quantiseSpec(spec));
  held.layers.forEach((layer, i) => {
    for (const [name, values] of Object.entries(layer.tensors)) {
      const other = dequantised.layers[i].tensors[name];
      check(
        values.every((v, k) => Object.is(v, other[k])),
        () => `${what}: layer ${i} ${name}: dequantised values differ from specAsHeld`,
      );
    }
  });
}

export function int8FileCases(): Case[] {
  const cases: Case[] = kindArchs().map((arch, n) => ({
    name: `int8 file: ${arch.name}: round trip exact, loads as the library's own quantisation`,
    run: async () => {
      const spec = initSpec({ inputSize: arch.inputSize, layers: arch.layers }, 100 + n);
      checkDequantisedIsHeld(spec, arch.name);
      await roundTrip(spec, arch.name);
    },
  }));
  cases.push({
    name: "int8 file: HarmonyPredictor of models/ loads as int8, exactly as quantised at load",
    run: async () => {
      const { spec } = await loadSpec("models/HarmonyPredictor.safetensors");
      await roundTrip(spec, "HarmonyPredictor");
    },
  });
  cases.push({
    name: "int8 file: another precision is refused unless dequantise is asked for",
    run: async () => {
      const spec = initSpec({ inputSize: 13, layers: kindArchs()[0].layers }, 7);
      const int8 = quantiseSpec(spec);
      const bytes = writeSafetensorsInt8(int8);
      for (const precision of ["f32", "bf16"] as const) {
        await throwsCadenzaAsync(
          () => loadModel(bytes, { precision }),
          "E_ARGUMENT",
          /holds int8 weights .* pass dequantise: true/,
          `precision ${precision}`,
        );
      }
      const f32 = await loadModel(bytes, { precision: "f32", dequantise: true });
      const reference = await Model.create(dequantiseSpec(int8));
      try {
        check(f32.precision === "f32" && f32.int8 === null, () => "dequantise: not an f32 model");
        checkSameOutputs(reference, f32, "dequantise: true");
      } finally {
        f32.dispose();
        reference.dispose();
      }
      throwsCadenza(
        () => writeSafetensors({ ...dequantiseSpec(int8), meta: { quantization: "x" } }),
        "E_ARGUMENT",
        /meta\.quantization: expected a key other than/,
        "the scheme key is the format's",
      );
      const { readSafetensors } = await import("../../src/model/formats/safetensors.ts");
      throwsCadenza(
        () => readSafetensors(bytes, "x.safetensors"),
        "E_FORMAT",
        /x\.safetensors: holds int8 weight matrices/,
        "readSafetensors of an int8 file",
      );
    },
  });
  cases.push({
    name: "int8 file: scales the library would not give back, -128 and a missing scale are refused",
    run: () => {
      const spec = initSpec({ inputSize: 7, layers: kindArchs()[1].layers }, 9);
      const bad = (change: (s: Int8ModelSpec) => void) => {
        const int8 = quantiseSpec(spec);
        change(int8);
        return int8;
      };
      // Row 2 halved: the same values with q / 2 and the scale doubled would be quantised by
      // the library to other q (largest |q| 127), so the file is refused, not silently changed.
      const halved = bad((s) => {
        const w = s.layers[1].int8.W;
        const cols = w.q.length / w.scales.length;
        for (let c = 0; c < cols; c++) w.q[2 * cols + c] = Math.round(w.q[2 * cols + c] / 2);
        w.scales[2] *= 2;
      });
      throwsCadenza(
        () => writeSafetensorsInt8(halved),
        "E_FORMAT",
        /layer 1 \(dense\): W row 2: largest \|q\| 6[34] with scale .* is not the library's int8 scheme/,
        "a row with largest |q| 63 or 64",
      );
      const minus = bad((s) => (s.layers[1].int8.W.q[4] = -128));
      throwsCadenza(
        () => writeSafetensorsInt8(minus),
        "E_FORMAT",
        /layer 1 \(dense\): W\[4\] is -128, expected -127\.\.127/,
        "q = -128",
      );
      const lstm = bad((s) => (s.layers[0].int8.Wh.scales[0] = s.layers[0].int8.Wh.scales[1]));
      throwsCadenza(
        () => writeSafetensorsInt8(lstm),
        "E_FORMAT",
        /layer 0 \(lstm\): Wh\.scale\[0\] is .*, expected .* \(the scale of row 0 of Wx/,
        "LSTM Wx and Wh rows disagree",
      );
      // A file with one scale tensor renamed: the reader names the missing one.
      const bytes = writeSafetensorsInt8(quantiseSpec(spec));
      const header_len = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      const header = new TextDecoder().decode(bytes.subarray(8, 8 + header_len));
      const at = 8 + header.indexOf('"layers.1.W.scale"') + '"layers.1.W.scal'.length;
      const renamed = bytes.slice();
      renamed[at] = "f".charCodeAt(0);
      throwsCadenza(
        () => readSafetensorsInt8(renamed, "r.safetensors"),
        "E_FORMAT",
        /r\.safetensors: tensor "layers\.1\.W\.scale": expected for layer 1 \(dense\), got nothing/,
        "a missing scale tensor",
      );
    },
  });
  cases.push({
    name: "int8 image: the native parser refuses a bad row count, q -128 and a negative scale",
    run: async () => {
      const api = await openNative("safe");
      const arch = { inputSize: 5, layers: [{ kind: "dense", inputSize: 5, outputSize: 3 }] };
      const spec = initSpec(arch as never, 3);
      const { packInt8Image } = await import("../../src/model/quantised.ts");
      const image = packInt8Image(quantiseSpec(spec));
      // Layout: header 32 bytes, record 64, W count word, 15 int8 bytes + 1 pad, rows, scales.
      const w_at = 32 + 64;
      const view = (bytes: Uint8Array) => new DataView(bytes.buffer);
      const corrupt = (edit: (v: DataView, b: Uint8Array) => void) => {
        const copy = image.slice();
        edit(view(copy), copy);
        return copy;
      };
      const cases: [Uint8Array, RegExp][] = [
        [
          corrupt((v) => v.setUint32(w_at + 4 + 16, 4, true)),
          /layer 0 \(dense\): tensor 0 \(W\) has 4 scale rows, expected 3/,
        ],
        [
          corrupt((_, b) => (b[w_at + 4 + 2] = 0x80)),
          /tensor 0 \(W\) int8 byte 2 is 0x80, expected a value in -127\.\.127/,
        ],
        [
          corrupt((_, b) => (b[w_at + 4 + 15] = 1)),
          /tensor 0 \(W\) int8 byte 15 is 0x01, expected 0 \(padding\)/,
        ],
        [
          corrupt((v) => v.setFloat32(w_at + 4 + 16 + 4, -1, true)),
          /tensor 0 \(W\) row 0's scale is -1 .* expected a finite value >= 0/,
        ],
      ];
      api.destroy(api.create(image));
      for (const [bytes, pattern] of cases) {
        throwsCadenza(() => api.destroy(api.create(bytes)), "E_FORMAT", pattern, String(pattern));
      }
      check(packImage(spec).length > image.length, () => "the int8 image is not smaller");
    },
  });
  return cases;
}

async function throwsCadenzaAsync(
  run: () => Promise<unknown>,
  code: string,
  pattern: RegExp,
  what: string,
): Promise<void> {
  try {
    await run();
  } catch (err) {
    check(
      err instanceof CadenzaError && err.code === code && pattern.test(err.message),
      () => `${what}: expected CadenzaError ${code} matching ${pattern}, got ${String(err)}`,
    );
    return;
  }
  fail(`${what}: expected CadenzaError ${code}, nothing was thrown`);
}

async function withScratch(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "cadenza-compress-"));
  try {
    await run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A small held-out set: deterministic inputs in [-1, 1], class ids or values as targets. */
function smallSet(
  name: string,
  inputSize: number,
  target: { classes: number } | { values: number },
  count = 6,
  steps = 5,
): TrainingData {
  const inputs = new Float32Array(count * steps * inputSize).map((_, i) => Math.sin(i * 0.61));
  const classes = "classes" in target;
  const size = classes ? target.classes : target.values;
  const targets = classes
    ? new Int32Array(count * steps).map((_, i) => (i * 7) % size)
    : new Float32Array(count * steps * size).map((_, i) => 0.5 * Math.cos(i * 0.3));
  return {
    source: name,
    count,
    steps,
    inputSize,
    inputs,
    targetKind: classes ? "classes" : "values",
    targets,
    targetSize: size,
    lengths: new Int32Array(count).fill(steps),
    split: null,
    meta: {},
  };
}

/** The five test sets eval reads, small, in `dir` (recognizer: test.safetensors + windows.json). */
function writeSmallSets(dir: string): void {
  const sets: [string, TrainingData][] = [
    ["melody-test.safetensors", smallSet("melody", 256, { classes: 128 })],
    ["harmony-test.safetensors", smallSet("harmony", 140, { classes: 64 })],
    ["groove-test.safetensors", smallSet("groove", 64, { values: 32 })],
    ["dynamics-test.safetensors", smallSet("dynamics", 32, { values: 16 })],
    ["test.safetensors", smallSet("recognizer", 128, { values: 64 })],
  ];
  for (const [file, data] of sets) writeFileSync(join(dir, file), writeTrainingData(data));
  const test = Array.from({ length: 6 }, (_, i) => ({
    piece: `piece-${i % 3}`,
    render: 0,
    window: i,
    valence: Math.sin(i),
    arousal: Math.cos(i * 1.3),
    plan: {},
  }));
  writeFileSync(join(dir, "windows.json"), JSON.stringify({ test }));
}

export function compressDirCases(): Case[] {
  return [{
    name: "compress --int8 --distill: under 1,000,000 weight bytes, loads through " +
      "EmotionPipeline.load and loadModel, teachers exactly as int8 at load",
    run: () =>
      withScratch(async (dir) => {
        const out = join(dir, "compact");
        const report = await compressPipeline({ from: "models", out, int8: true, distill: true });
        check(report.weightBytes < 1_000_000, () => `${report.weightBytes} weight bytes`);
        const rows = await inspectEmotionModels(out);
        const total = rows.reduce((n, r) => n + r.bytes, 0);
        check(total === report.weightBytes, () => `inspect ${total} vs ${report.weightBytes}`);
        check(rows.every((r) => r.precision === "int8"), () => "a model is not stored as int8");
        const students = report.models.filter((m) => m.origin === "student");
        check(students.length === 2, () => `${students.length} students`);
        for (const m of students) {
          const teacher = EMOTION_MODELS.find((e) => e.name === m.name)!;
          const full = report.models.find((r) => r.name === m.name)!;
          check(
            full.parameters * 2 <= (await loadSpec(modelFile("models", teacher.name))).spec
              .layers.reduce(
                (n, l) => n + Object.values(l.tensors).reduce((a, t) => a + t.length, 0),
                0,
              ),
            () => `${m.name}: ${full.parameters} parameters, more than half the teacher's`,
          );
        }
        // The students load through the ordinary loadModel as the committed f32 files too.
        for (const m of students) {
          const f32 = await loadModel(modelFile("models/compact", m.name));
          check(f32.precision === "f32" && f32.parameterCount === m.parameters, () => m.name);
          f32.dispose();
        }
        // The real-time engine takes the directory as it is (its Worker loads it).
        const engine = await RealtimeEngine.start<EmotionOutputs>({ models: out, policy: "every" });
        try {
          const buffers = engine.createBuffers();
          const features = new Float32Array(128).map((_, i) => Math.cos(i));
          let seq = -1;
          for (let tries = 0; tries < 400 && seq < 0; tries++) {
            engine.submit(features);
            await new Promise<void>((resolve) => setTimeout(resolve, 5));
            seq = engine.latest(buffers);
          }
          check(seq >= 0, () => "the engine published no result from the compressed directory");
          const total = buffers.melody.reduce((a, b) => a + b, 0);
          check(Math.abs(total - 1) < 1e-4, () => `engine melody sums to ${total}`);
        } finally {
          await engine.stop();
        }
        const pipeline = await EmotionPipeline.load(out);
        try {
          const features = new Float32Array(128).map((_, i) => Math.sin(i));
          const y = pipeline.step(features);
          const sum = y.melody.reduce((a, b) => a + b, 0);
          check(Math.abs(sum - 1) < 1e-4, () => `melody sums to ${sum}`);
          check(y.emotion.length === 64 && y.dynamics.length === 16, () => "output sizes");
        } finally {
          pipeline.dispose();
        }
        // A teacher in the directory holds exactly what the f32 file gives at int8.
        const stored = await loadModel(modelFile(out, "HarmonyPredictor"));
        const atLoad = await loadModel(modelFile("models", "HarmonyPredictor"), {
          precision: "int8",
        });
        try {
          check(stored.int8 !== null, () => "HarmonyPredictor is not int8-stored");
          checkSameOutputs(atLoad, stored, "HarmonyPredictor: compressed vs int8 at load");
        } finally {
          stored.dispose();
          atLoad.dispose();
        }
      }),
  }, {
    name: "eval: every field per model, the reference scored as scoreModel scores it",
    run: () =>
      withScratch(async (dir) => {
        const out = join(dir, "compact");
        await compressPipeline({ from: "models", out, int8: true, distill: true });
        writeSmallSets(dir);
        const r = await evaluatePipeline({
          dir: out,
          reference: "models",
          data: dir,
          recognizerData: dir,
        });
        check(r.missing.length === 0 && r.models.length === 5, () => JSON.stringify(r.missing));
        const by = Object.fromEntries(r.models.map((m) => [m.name, m]));
        check(
          by.EmotionRecognizer.metrics.map((m) => m.metric).join() === "valence r,arousal r",
          () => "recognizer metrics",
        );
        const cos = by.EmotionRecognizer.cosine!;
        check(cos >= -1 && cos <= 1, () => `cosine ${cos}`);
        for (const name of ["MelodyTransformer", "HarmonyPredictor"]) {
          const a = by[name].agreement!;
          check(a >= 0 && a <= 1 && by[name].metrics[0].metric === "accuracy", () => name);
        }
        for (const name of ["GroovePredictor", "DynamicsEngine"]) {
          check(by[name].metrics[0].metric === "mse", () => name);
        }
        const bytes = r.models.reduce((n, m) => n + m.weightBytes, 0);
        check(bytes === r.weightBytes && bytes < 1_000_000, () => `${bytes}`);
        for (const m of r.models) {
          for (const v of m.metrics) {
            const within = v.higherIsBetter
              ? v.value >= 0.95 * v.reference
              : v.value <= 1.05 * v.reference;
            check(v.within === within, () => `${m.name} ${v.metric}: within flag`);
          }
        }
        check(
          r.allWithin === r.models.every((m) => m.metrics.every((v) => v.within)),
          () => "allWithin",
        );
        // The reference's accuracy through the training code's own scorer (src/train/evaluate.ts).
        const ref = await loadModel(modelFile("models", "HarmonyPredictor"));
        const { readTrainingData } = await import("../../src/train/data.ts");
        const data = await readTrainingData(join(dir, "harmony-test.safetensors"));
        const want = scoreModel(ref, data, "xent").accuracy;
        ref.dispose();
        check(
          Math.abs(by.HarmonyPredictor.metrics[0].reference - want) < 1e-12,
          () => `reference accuracy ${by.HarmonyPredictor.metrics[0].reference} vs ${want}`,
        );
        const cli = await runCli(["eval", out, "--json", "--data", dir, "--recognizer-data", dir]);
        check(cli.code === 0, () => cli.err);
        const json = JSON.parse(cli.out);
        check(json.models.length === 5 && typeof json.allWithin === "boolean", () => cli.out);
      }),
  }, {
    name: "compress and eval: a bad directory is refused naming the file, nothing is written",
    run: () =>
      withScratch(async (dir) => {
        const partial = join(dir, "partial");
        mkdirSync(partial);
        writeFileSync(join(partial, "EmotionRecognizer.safetensors"), new Uint8Array(8));
        const out = join(dir, "out");
        await throwsCadenzaAsync(
          () => compressPipeline({ from: partial, out }),
          "E_IO",
          /MelodyTransformer\.safetensors is missing/,
          "a models directory without MelodyTransformer",
        );
        check(!existsSync(out), () => "compress created --out after refusing");
        const empty = join(dir, "empty");
        mkdirSync(empty);
        await throwsCadenzaAsync(
          () => compressPipeline({ from: "models", out, distill: true, studentsDir: empty }),
          "E_IO",
          /--distill: no student in/,
          "a students directory without students",
        );
        check(
          readdirSync(dir).every((name) => !name.includes(".compress-")),
          () => `a staging folder was left: ${readdirSync(dir).join(", ")}`,
        );
        await throwsCadenzaAsync(
          () => evaluatePipeline({ dir: partial, reference: "models" }),
          "E_IO",
          /eval: .*MelodyTransformer\.safetensors is missing/,
          "eval of a directory without MelodyTransformer",
        );
        const usage = await runCli(["compress", "models"]);
        check(usage.code === 2 && usage.err.includes("--out DIR is required"), () => usage.err);
        const bad = await runCli(["eval", join(dir, "nowhere")]);
        check(bad.code === 1 && bad.err.includes("is missing"), () => bad.err);
      }),
  }];
}

async function runCli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}
