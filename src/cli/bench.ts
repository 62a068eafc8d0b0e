/**
 * `cadenza bench`: latency of each model of the emotion pipeline and of the full pipeline step,
 * with `--peers` the same models with the same weights in onnxruntime-node, checked to agree
 * before anything is timed. The measuring parts live in src/bench/ (statistics, agreement,
 * peers, report), shared with the mitata suites in bench/ and the tests.
 */

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
import { benchInputs, timeAsync, timeSync } from "../bench/stats.ts";
import { intFlag, type ParsedArgs, UsageError } from "./args.ts";
import type { Command, Output } from "./command.ts";

export const BENCH_HELP = `usage: cadenza bench [--models DIR] [--iterations N]
                     [--precision f32|bf16|int8] [--json FILE] [--peers]

Times each model of the emotion pipeline (one step, batch 1) and the full pipeline step:
median, p99 and max latency in microseconds, parameters, weight bytes and the process's
resident memory; then the targets (single model < 2 ms, pipeline < 10 ms, ~4 MB of weights).

  --models DIR      folder with the five .safetensors files (default: the project's models/)
  --iterations N    timed steps per model and for the pipeline (default 1000)
  --warmup N        untimed steps first (default 100)
  --precision P     f32 (default); bf16: weight matrices held as bfloat16, half the bytes;
                    int8: matrices as int8 with a scale per row, inputs quantised per call.
                    --peers then run the weights as held (bf16-rounded, or int8 dequantised
                    to q * scale) in f32 arithmetic
  --json FILE       also write the figures as JSON (shape in docs/PERFORMANCE.md)
  --peers           also run onnxruntime-node on the same models and weights (ONNX exported in
                    memory), after checking that its outputs agree within ${1e-4} (${5e-2} at
                    int8, where onnxruntime does not quantise the inputs)

The native library is CADENZA_LIB (safe, fast or a path); bench defaults to fast.`;

function checkPrecision(args: ParsedArgs): Precision {
  const precision = args.values.get("precision") ?? "f32";
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
    const report = measureAll(pipeline, models, { iterations, warmup, library, precision });
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
    values: { models: "DIR", iterations: "N", warmup: "N", precision: "P", json: "FILE" },
    switches: ["peers"],
  },
  run: runBench,
};
