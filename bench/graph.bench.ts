/**
 * What does running the pipeline step in one native call (the native graph) save over running
 * the same five models node by node from TypeScript (one FFI call per model, edges gathered in
 * JS, as the real-time Worker does to time each model)? Same models, same handles, f32 and bf16.
 *
 *   CADENZA_LIB=fast bun bench/graph.bench.ts            (models from CADENZA_MODELS or models/)
 *   deno run --allow-ffi --allow-read --allow-env bench/graph.bench.ts
 */
import process from "node:process";
import { bench, do_not_optimize, group, run, summary } from "mitata";
import type { Model, Precision } from "../src/index.ts";
import {
  defaultModelsDir,
  EMOTION_MODELS,
  type EmotionModelName,
  EmotionPipeline,
  FEATURE_SIZE,
} from "../src/pipeline/emotion.ts";
import type { PipelineModel } from "../src/pipeline/pipeline.ts";
import { loadBenchPipeline } from "../src/bench/load.ts";
import { benchInputs, medianNs, printTable, runtimeName } from "./lib.ts";

/** A plain object around a native model: Pipeline cannot hand it to the native graph. */
function wrapped(model: Model): PipelineModel {
  return {
    inputSize: model.inputSize,
    outputSize: model.outputSize,
    parameterCount: model.parameterCount,
    weightBytes: model.weightBytes,
    forward: (x) => model.forward(x),
    reset: () => model.reset(),
    dispose: () => {},
  };
}

const dir = process.env.CADENZA_MODELS ?? defaultModelsDir();
const features = benchInputs(64, FEATURE_SIZE, 3);
const precisions: Precision[] = ["f32", "bf16"];
const owned: EmotionPipeline[] = [];
let library = "";
let i = 0;
for (const precision of precisions) {
  const loaded = await loadBenchPipeline(dir, precision);
  library = loaded.library;
  const byNode = new EmotionPipeline(
    Object.fromEntries(
      EMOTION_MODELS.map((info) => [info.name, wrapped(loaded.models[info.name])]),
    ) as Record<EmotionModelName, PipelineModel>,
  );
  if (!loaded.pipeline.native || byNode.native) {
    throw new Error("bench/graph.bench.ts: expected one native and one node-by-node pipeline");
  }
  owned.push(loaded.pipeline);
  group(`pipeline step ${precision}`, () => {
    summary(() => {
      bench(
        `${precision}: native graph`,
        () => do_not_optimize(loaded.pipeline.step(features[i++ & 63])),
      ).baseline();
      bench(`${precision}: node by node`, () => do_not_optimize(byNode.step(features[i++ & 63])));
    });
  });
}

const result = await run();
console.log(`\n${runtimeName}, library ${library}, models ${dir} (mitata medians)`);
printTable(
  ["precision", "native graph us", "node by node us", "difference us"],
  precisions.map((p) => {
    const graph = medianNs(result, `${p}: native graph`) / 1e3;
    const nodes = medianNs(result, `${p}: node by node`) / 1e3;
    return [p, graph.toFixed(2), nodes.toFixed(2), (nodes - graph).toFixed(2)];
  }),
);
for (const pipeline of owned) pipeline.dispose();
