/**
 * How fast is each model of the emotion pipeline, and the pipeline step, at batch 1 and 64; and
 * how close is each to its memory-traffic bound (weight bytes / streaming read bandwidth
 * measured at that working-set size by bench/peak.zig)?
 *
 *   CADENZA_LIB=fast bun bench/models.bench.ts            (models from CADENZA_MODELS or models/)
 *   deno run --allow-ffi --allow-read --allow-env --allow-run --allow-write bench/models.bench.ts
 */
import process from "node:process";
import { bench, do_not_optimize, group, run } from "mitata";
import { batchedPipeline } from "../src/bench/batch.ts";
import { loadBenchPipeline } from "../src/bench/load.ts";
import {
  defaultModelsDir,
  EMOTION_GRAPH,
  EMOTION_MODELS,
  FEATURE_SIZE,
  GRAPH_INPUT_SIZE,
} from "../src/pipeline/emotion.ts";
import {
  benchInputs,
  gflops,
  loadPeak,
  measureFmaPeak,
  measureReadBandwidth,
  medianNs,
  printTable,
  runtimeName,
  specFlop,
} from "./lib.ts";

const BATCH = 64;
const dir = process.env.CADENZA_MODELS ?? defaultModelsDir();
const { pipeline, models, library } = await loadBenchPipeline(dir);

for (const info of EMOTION_MODELS) {
  const model = models[info.name];
  const one = benchInputs(8, model.inputSize, 5);
  const many = benchInputs(8, model.inputSize * BATCH, 6);
  let i = 0;
  group(info.name, () => {
    bench(`${info.name} batch 1`, () => do_not_optimize(model.forward(one[i++ & 7])));
    bench(
      `${info.name} batch ${BATCH}`,
      () => do_not_optimize(model.forwardBatch(many[i++ & 7], BATCH)),
    );
  });
}

// The pipeline at batch 64 runs each model's forwardBatch over the same graph (rows start from
// each model's current state, which does not advance: the offline, many-takes use).
const batched = batchedPipeline(EMOTION_GRAPH, models, GRAPH_INPUT_SIZE, BATCH);
const pipelineBatch = (features: Float32Array) => batched.step(features);
const features = benchInputs(8, FEATURE_SIZE, 3);
const featureRows = benchInputs(8, GRAPH_INPUT_SIZE * BATCH, 4);
let j = 0;
group("pipeline step", () => {
  bench("pipeline batch 1", () => do_not_optimize(pipeline.step(features[j++ & 7])));
  bench(`pipeline batch ${BATCH}`, () => pipelineBatch(featureRows[j++ & 7]));
});

const result = await run();
const peak = await loadPeak();
const peak16 = measureFmaPeak(peak, 16);

const rows = [
  ...EMOTION_MODELS.map((info) => ({
    name: info.name,
    flop: specFlop(models[info.name].spec),
    bytes: models[info.name].weightBytes,
  })),
  {
    name: "pipeline",
    flop: EMOTION_MODELS.reduce((n, info) => n + specFlop(models[info.name].spec), 0),
    bytes: pipeline.weightBytes,
  },
];
const table = rows.map((r) => {
  const one = medianNs(result, `${r.name} batch 1`);
  const many = medianNs(result, `${r.name} batch ${BATCH}`);
  const boundNs = r.bytes / measureReadBandwidth(peak, r.bytes);
  return [
    r.name,
    (r.bytes / 1024).toFixed(0),
    (one / 1e3).toFixed(2),
    (boundNs / 1e3).toFixed(2),
    `${(one / boundNs).toFixed(2)}x`,
    gflops(r.flop, one).toFixed(1),
    (many / 1e3).toFixed(1),
    (many / 1e3 / BATCH).toFixed(2),
    gflops(r.flop * BATCH, many).toFixed(1),
    `${(100 * gflops(r.flop * BATCH, many) / peak16).toFixed(0)}%`,
  ];
});
console.log(
  `\n${runtimeName}, library ${library}, models ${dir}; FMA peak ${peak16.toFixed(0)} GFLOP/s`,
);
printTable([
  "model",
  "weight KB",
  "b1 us",
  "bound us",
  "b1/bound",
  "b1 GFLOP/s",
  `b${BATCH} us`,
  "us/row",
  `b${BATCH} GFLOP/s`,
  "of peak",
], table);
console.log("bound: weight bytes / read bandwidth measured at that working-set size.");
peak.close();
pipeline.dispose();
