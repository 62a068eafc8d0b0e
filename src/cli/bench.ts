/**
 * `cadenza bench`: latency of each model of the emotion pipeline and of the full pipeline step,
 * with `--peers` the same models with the same weights in onnxruntime-node, checked to agree
 * before anything is timed. The measuring parts live in src/bench/ (statistics, agreement,
 * peers, report), shared with the mitata suites in bench/ and the tests.
 */

import { resolve } from "node:path";
import process from "node:process";
import { type Precision, PRECISIONS } from "../model/image.ts";
import type { Model } from "../model/model.ts";
import {
  defaultModelsDir,
  EMOTION_MODELS,
  type EmotionModelName,
  type EmotionPipeline,
  FEATURE_SIZE,
} from "../pipeline/emotion.ts";
import { runtime } from "../native/io.ts";
import { writeFileAtomicSync } from "../atomic.ts";
import { agreementTolerance, checkAgreement, pipelineStepper } from "../bench/agreement.ts";
import { loadBenchPipeline } from "../bench/load.ts";
import { importOrt, OrtPipeline } from "../bench/peers.ts";
import { type BenchReport, type ModelFigures, printReport } from "../bench/report.ts";
import { benchInputs, summarizeUs, timeAsync, timeSync } from "../bench/stats.ts";
import { intFlag, type ParsedArgs, UsageError } from "./args.ts";
import type { Command, Output } from "./command.ts";

export const BENCH_HELP = `usage: cadenza bench [--models DIR] [--baseline DIR] [--iterations N]
                     [--precision f32|bf16|int8] [--json FILE] [--peers]

Times each model of the emotion pipeline (one step, batch 1) and the full pipeline step:
median, p99 and max latency in microseconds, parameters, weight bytes and the process's
resident memory; then the targets (single model < 2 ms, pipeline < 10 ms, ~4 MB of weights).

  --models DIR      folder with the five .safetensors files (default: the project's models/),
                    e.g. a directory from \`cadenza compress\`; its files load as stored
  --baseline DIR    with --models: also time this FP32 directory's pipeline step in the same
                    run, in alternating rounds, and print compressed / FP32 (default: the
                    project's models/ when --models names another directory)
  --iterations N    timed steps per model and for the pipeline (default 1000)
  --warmup N        untimed steps first (default 100)
  --precision P     as stored (default: f32 files at f32, int8 files at int8); f32; bf16: weight matrices held as bfloat16, half the bytes;
                    int8: matrices as int8 with a scale per row, inputs quantised per call.
                    --peers then run the weights as held (bf16-rounded, or int8 dequantised
                    to q * scale) in f32 arithmetic
  --json FILE       also write the figures as JSON (shape in docs/PERFORMANCE.md)
  --peers           also run onnxruntime-node on the same models and weights (ONNX exported in
                    memory), after checking that its outputs agree within ${1e-4} (${5e-2} at
                    int8, where onnxruntime does not quantise the inputs)

The native library is CADENZA_LIB (safe, fast or a path); bench defaults to fast.`;

function checkPrecision(args: ParsedArgs): Precision | undefined {
  const precision = args.values.get("precision");
  if (precision === undefined) return undefined;
  if (PRECISIONS.includes(precision as Precision)) return precision as Precision;
  throw new UsageError(`bench: --precision must be f32, bf16 or int8, got "${precision}"`);
}

async function runBench(args: ParsedArgs, output: Output): Promise<number> {
  const precision = checkPrecision(args);
  const iterations = intFlag(args, "iterations", 1000, "bench");
  const warmup = intFlag(args, "warmup", 100, "bench");
  const dir = args.values.get("models") ?? defaultModelsDir();
  const { pipeline, models, library } = await loadBenchPipeline(dir, precision);
  try {
    const held = precision ?? models.MelodyTransformer.precision;
    const report = measureAll(pipeline, models, { iterations, warmup, library, precision: held });
    const baseline = baselineDir(args, dir);
    if (baseline !== undefined) {
      report.baseline = await measureBaseline(pipeline, baseline, iterations, warmup);
    }
    if (args.switches.has("peers")) {
      report.peers = {
        onnxruntime: await measurePeers(pipeline, models, report, iterations, warmup),
      };
    }
    printReport(report, output);
    const jsonPath = args.values.get("json");
    if (jsonPath !== undefined) {
      writeFileAtomicSync(
        jsonPath,
        new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"),
      );
      output.err(`wrote ${jsonPath}`);
    }
    return 0;
  } finally {
    pipeline.dispose();
  }
}

/** The FP32 directory to compare with, or undefined when there is none to compare. */
function baselineDir(args: ParsedArgs, dir: string): string | undefined {
  const given = args.values.get("baseline");
  if (given !== undefined) return given;
  if (!args.values.has("models")) return undefined;
  return resolve(dir) === resolve(defaultModelsDir()) ? undefined : defaultModelsDir();
}

/**
 * Times the two pipeline steps in alternating rounds (compressed, FP32, compressed, ...), so
 * that a change in the machine's load falls on both; each summary pools its rounds' samples.
 */
async function measureBaseline(
  compressed: EmotionPipeline,
  dir: string,
  iterations: number,
  warmup: number,
): Promise<NonNullable<BenchReport["baseline"]>> {
  const base = await loadBenchPipeline(dir, "f32");
  try {
    const features = benchInputs(64, FEATURE_SIZE, 3);
    const rounds = 5;
    const per = Math.max(1, Math.ceil(iterations / rounds));
    const samples: [number[], number[]] = [[], []];
    const pipelines = [compressed, base.pipeline];
    for (let r = 0; r < rounds; r++) {
      pipelines.forEach((pipeline, k) => {
        for (let i = 0; i < warmup; i++) pipeline.step(features[i & 63]);
        for (let i = 0; i < per; i++) {
          const start = performance.now();
          pipeline.step(features[i & 63]);
          samples[k].push((performance.now() - start) * 1e3);
        }
        pipeline.reset();
      });
    }
    const own = summarizeUs(samples[0]);
    const fp32 = summarizeUs(samples[1]);
    const weightBytes = EMOTION_MODELS.reduce((n, m) => n + base.models[m.name].weightBytes, 0);
    return {
      dir,
      weightBytes,
      pipeline: fp32,
      compressed: own,
      ratio: own.p50Us / fp32.p50Us,
      rounds,
    };
  } finally {
    base.pipeline.dispose();
  }
}

function measureAll(
  pipeline: EmotionPipeline,
  models: Record<EmotionModelName, Model>,
  o: { iterations: number; warmup: number; library: string; precision: Precision },
): BenchReport {
  const figures = EMOTION_MODELS.map((info) => {
    const model = models[info.name];
    const inputs = benchInputs(64, model.inputSize, 7);
    const timing = timeSync((i) => model.forward(inputs[i & 63]), o.iterations, o.warmup);
    model.reset();
    return {
      name: info.name,
      parameters: model.parameterCount,
      weightBytes: model.weightBytes,
      ...timing,
    };
  });
  const features = benchInputs(64, FEATURE_SIZE, 3);
  const timing = timeSync((i) => pipeline.step(features[i & 63]), o.iterations, o.warmup);
  pipeline.reset();
  return {
    precision: o.precision,
    iterations: o.iterations,
    runtime: runtime(),
    library: o.library,
    date: new Date().toISOString(),
    models: figures,
    pipeline: timing,
    memory: { rssBytes: process.memoryUsage().rss },
  };
}

async function measurePeers(
  pipeline: EmotionPipeline,
  models: Record<EmotionModelName, Model>,
  report: BenchReport,
  iterations: number,
  warmup: number,
): Promise<NonNullable<BenchReport["peers"]>["onnxruntime"]> {
  const ort = await importOrt();
  const peers = await OrtPipeline.create(ort, models);
  const features = benchInputs(64, FEATURE_SIZE, 3);
  const ortOut = new Float32Array(peers.outputsLength);
  const agreement = await checkAgreement(
    [
      pipelineStepper("cadenza", pipeline),
      {
        name: "onnxruntime",
        step: async (x) => {
          await peers.step(x);
          return peers.concatOutputs(ortOut);
        },
        reset: () => peers.reset(),
      },
    ],
    features.slice(0, 48),
    agreementTolerance(report.precision),
  );
  const figures: ModelFigures[] = [];
  for (const info of EMOTION_MODELS) {
    const peer = peers.models[info.name];
    const inputs = benchInputs(64, peer.inputSize, 7);
    const timing = await timeAsync((i) => peer.forwardAsync(inputs[i & 63]), iterations, warmup);
    const own = report.models.find((m) => m.name === info.name)!;
    figures.push({
      name: info.name,
      parameters: own.parameters,
      weightBytes: own.weightBytes,
      ...timing,
    });
  }
  peers.reset();
  const pipelineTiming = await timeAsync((i) => peers.step(features[i & 63]), iterations, warmup);
  peers.reset();
  const pipelineSync = peers.hasSync
    ? timeSync((i) => peers.stepSync(features[i & 63]), iterations, warmup)
    : undefined;
  pipeline.reset();
  const version =
    (ort as unknown as { env?: { versions?: { node?: string } } }).env?.versions?.node ?? "?";
  return {
    version,
    agreementMaxAbs: agreement[0].worstAbs,
    models: figures,
    pipeline: pipelineTiming,
    pipelineSync,
  };
}

export const benchCommand: Command = {
  name: "bench",
  summary: "time each model and the pipeline step (--peers: beside onnxruntime-node)",
  help: BENCH_HELP,
  flags: {
    values: {
      models: "DIR",
      baseline: "DIR",
      iterations: "N",
      warmup: "N",
      precision: "P",
      json: "FILE",
    },
    switches: ["peers"],
  },
  run: runBench,
};
