/**
 * cadenza beside its peers on the same five models with the same weights, in one run:
 * onnxruntime-node (the models exported to ONNX in memory by src/model/formats/onnx-export.ts;
 * scripts/export-onnx.ts writes the same bytes to files) through the public awaited
 * session.run and through its internal synchronous binding, and plain TypeScript loops
 * (bench/plain.ts). Nothing is timed until every implementation's outputs agree with cadenza's
 * over 48 pipeline steps within AGREEMENT_TOLERANCE.
 *
 *   CADENZA_LIB=fast bun bench/peers.bench.ts            (models from CADENZA_MODELS or models/)
 *   deno run --allow-ffi --allow-read --allow-env --allow-run --allow-write bench/peers.bench.ts
 */
import process from "node:process";
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { AGREEMENT_TOLERANCE, pipelineStepper, type Stepper } from "../src/bench/agreement.ts";
import { loadBenchPipeline } from "../src/bench/load.ts";
import { importOrt, OrtPipeline } from "../src/bench/peers.ts";
import type { Model } from "../src/index.ts";
import {
  defaultModelsDir,
  EMOTION_MODELS,
  type EmotionModelName,
  EmotionPipeline,
  FEATURE_SIZE,
} from "../src/pipeline/emotion.ts";
import type { PipelineModel } from "../src/pipeline/pipeline.ts";
import { benchInputs, checkAgreement, medianNs, printTable, runtimeName } from "./lib.ts";
import { PlainModel } from "./plain.ts";

/** A PlainModel in the shape Pipeline takes, so the plain peer runs the very same graph code. */
function plainPipelineModel(model: Model): PipelineModel {
  const plain = new PlainModel(model.spec);
  return {
    inputSize: model.inputSize,
    outputSize: model.outputSize,
    parameterCount: model.parameterCount,
    weightBytes: model.weightBytes,
    forward: (x) => plain.forward(x),
    reset: () => plain.reset(),
    dispose: () => {},
  };
}

/** The ORT peer's sync path in the same Pipeline code as cadenza's. */
function ortSyncPipelineModel(peers: OrtPipeline, name: EmotionModelName): PipelineModel {
  const m = peers.models[name];
  return {
    inputSize: m.inputSize,
    outputSize: m.outputSize,
    parameterCount: 0,
    weightBytes: 0,
    forward: (x) => m.forwardSync(x),
    reset: () => m.reset(),
    dispose: () => {},
  };
}

const dir = process.env.CADENZA_MODELS ?? defaultModelsDir();
const { pipeline, models, library } = await loadBenchPipeline(dir);
const ort = await importOrt();
const peers = await OrtPipeline.create(ort, models);
const modelsOf = <T>(make: (name: EmotionModelName) => T) =>
  Object.fromEntries(EMOTION_MODELS.map((info) => [info.name, make(info.name)])) as Record<
    EmotionModelName,
    T
  >;
const plain = new EmotionPipeline(modelsOf((name) => plainPipelineModel(models[name])));
const ortSync = peers.hasSync
  ? new EmotionPipeline(modelsOf((name) => ortSyncPipelineModel(peers, name)))
  : null;

const features = benchInputs(64, FEATURE_SIZE, 3);
const ortOut = new Float32Array(peers.outputsLength);
const steppers: Stepper[] = [
  pipelineStepper("cadenza", pipeline),
  {
    name: "onnxruntime (awaited run)",
    step: async (x) => {
      await peers.step(x);
      return peers.concatOutputs(ortOut);
    },
    reset: () => peers.reset(),
  },
  pipelineStepper("plain TS", plain),
];
if (ortSync) steppers.push(pipelineStepper("onnxruntime (sync binding)", ortSync));
const agreement = await checkAgreement(steppers, features.slice(0, 48));
console.log(
  `Outputs of all five models over 48 pipeline steps agree (tolerance ` +
    `${AGREEMENT_TOLERANCE} absolute):`,
);
printTable(
  ["implementation", "against", "max |difference|"],
  agreement.map((a) => [a.name, a.against, a.worstAbs.toExponential(2)]),
);

let i = 0;
group("pipeline step, batch 1", () => {
  summary(() => {
    bench("pipeline: cadenza", () => do_not_optimize(pipeline.step(features[i++ & 63])))
      .baseline();
    bench(
      "pipeline: onnxruntime awaited",
      async () => do_not_optimize(await peers.step(features[i++ & 63])),
    );
    if (ortSync) {
      bench(
        "pipeline: onnxruntime sync",
        () => do_not_optimize(ortSync.step(features[i++ & 63])),
      );
    }
    bench("pipeline: plain TS", () => do_not_optimize(plain.step(features[i++ & 63])));
  });
});

for (const info of EMOTION_MODELS) {
  const model = models[info.name];
  const peer = peers.models[info.name];
  const plainModel = plain.models[info.name];
  const inputs = benchInputs(64, model.inputSize, 9);
  group(`${info.name}, batch 1`, () => {
    summary(() => {
      bench(`${info.name}: cadenza`, () => do_not_optimize(model.forward(inputs[i++ & 63])))
        .baseline();
      bench(
        `${info.name}: onnxruntime awaited`,
        async () => do_not_optimize(await peer.forwardAsync(inputs[i++ & 63])),
      );
      if (peer.hasSync) {
        bench(
          `${info.name}: onnxruntime sync`,
          () => do_not_optimize(peer.forwardSync(inputs[i++ & 63])),
        );
      }
      bench(`${info.name}: plain TS`, () => do_not_optimize(plainModel.forward(inputs[i++ & 63])));
    });
  });
}

const result = await run();

// mitata's summary ratios use means, which one descheduling on a shared VM can move; medians
// are what docs/PERFORMANCE.md quotes.
const variants = [
  "cadenza",
  "onnxruntime awaited",
  ...(ortSync ? ["onnxruntime sync"] : []),
  "plain TS",
];
printTable(
  ["median us (x cadenza)", ...variants],
  ["pipeline", ...EMOTION_MODELS.map((info) => info.name)].map((row) => {
    const base = medianNs(result, `${row}: cadenza`);
    return [
      row,
      ...variants.map((v) => {
        const ns = medianNs(result, `${row}: ${v}`);
        return v === "cadenza"
          ? (ns / 1e3).toFixed(2)
          : `${(ns / 1e3).toFixed(2)} (${(ns / base).toFixed(2)}x)`;
      }),
    ];
  }),
);
console.log(
  `pipeline awaited = five awaited session.run; sync = onnxruntime-node's internal binding.` +
    `\n${runtimeName}, library ${library}, models ${dir}, onnxruntime-node ` +
    `${(ort as unknown as { env: { versions: { node: string } } }).env.versions.node} ` +
    `(1 intra-op thread, graph optimisation "all").`,
);
pipeline.dispose();
