/**
 * Writes what scripts/profile-driver.c needs to run the emotion pipeline with no JavaScript in
 * the process (so that callgrind counts the library alone): for each precision, the five model
 * images, the native graph description the Pipeline builds, and the outputs of every node after
 * CHECK_STEPS steps from a reset state, which the driver must reproduce bit for bit.
 *
 *   bun scripts/profile-images.ts OUT_DIR LIBRARY [MODELS_DIR]     (scripts/profile.sh runs it)
 *
 * LIBRARY is "fast", "safe" or a library path; the expected outputs are that library's, since
 * builds for other CPUs (other vector widths) sum in another order.
 * Files: OUT_DIR/<precision>/{node<i>.img, graph.u32, expected.f32, nodes.txt, models.json}
 * (models.json: each node's name, parameter count and weight bytes as held). Inputs come
 * from the LCG in `checkInput`, which the driver repeats exactly (every value is a multiple of
 * 2^-15, so both sides compute identical floats).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { CadenzaError } from "../src/errors.ts";
import { loadModel, type Model } from "../src/index.ts";
import { packImage, type Precision, PRECISIONS } from "../src/model/image.ts";
import { NATIVE_MODEL, type NativeApi } from "../src/native/api.ts";
import {
  defaultModelsDir,
  EMOTION_GRAPH,
  EMOTION_MODELS,
  type EmotionModelName,
  EmotionPipeline,
  GRAPH_INPUT_SIZE,
  modelFile,
} from "../src/pipeline/emotion.ts";

/** Steps of the agreement check; the driver runs the same count before it measures. */
const CHECK_STEPS = 16;

/** Step `step`'s input: an LCG over u32, 16 bits of it scaled to [-1, 1) in steps of 2^-15. */
function checkInput(step: number, into: Float32Array): Float32Array {
  let state = (step * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < into.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    into[i] = ((state >>> 16) - 32768) / 32768;
  }
  return into;
}

interface Captured {
  description: Uint32Array;
  handles: BigUint64Array;
}

/** Wraps api.graphCreate so that the description the Pipeline builds is kept for the driver. */
function captureGraph(api: NativeApi, into: Captured[]): void {
  const create = api.graphCreate.bind(api);
  api.graphCreate = (description, handles) => {
    into.push({ description: description.slice(), handles: handles.slice() });
    return create(description, handles);
  };
}

async function writePrecision(
  out: string,
  library: string,
  modelsDir: string,
  precision: Precision,
) {
  const dir = join(out, precision);
  mkdirSync(dir, { recursive: true });
  const models = {} as Record<EmotionModelName, Model>;
  for (const info of EMOTION_MODELS) {
    models[info.name] = await loadModel(modelFile(modelsDir, info.name), {
      library,
      precision,
    });
  }
  const ref = models.EmotionRecognizer[NATIVE_MODEL]()!;
  const captured: Captured[] = [];
  captureGraph(ref.api, captured);
  const pipeline = new EmotionPipeline(models);
  if (!pipeline.native || captured.length !== 1) {
    throw new CadenzaError("E_NATIVE", "profile-images: the pipeline did not build a native graph");
  }
  const { description, handles } = captured[0];
  const names: EmotionModelName[] = [];
  for (const [i, handle] of handles.entries()) {
    const name = EMOTION_MODELS.find((info) =>
      ref.api.handleValue(models[info.name][NATIVE_MODEL]()!.handle) === handle
    )!.name;
    names.push(name);
    const image = packImage(models[name].spec, name, precision);
    writeFileSync(join(dir, `node${i}.img`), image);
  }
  writeFileSync(join(dir, "graph.u32"), new Uint8Array(description.buffer));
  writeFileSync(join(dir, "nodes.txt"), names.join("\n") + "\n");
  const rows = names.map((name) => ({
    name,
    parameters: models[name].parameterCount,
    weightBytes: models[name].weightBytes,
  }));
  writeFileSync(join(dir, "models.json"), JSON.stringify(rows, null, 1) + "\n");

  pipeline.reset();
  // The driver fills the whole graph input ([features | context]) from checkInput.
  const input = new Float32Array(GRAPH_INPUT_SIZE);
  for (let step = 0; step < CHECK_STEPS; step++) pipeline.pipeline.step(checkInput(step, input));
  const outputs = names.map((name) => {
    const node = EMOTION_GRAPH.find((n) => n.model === name)!;
    return pipeline.outputs[node.name];
  });
  const total = outputs.reduce((n, o) => n + o.length, 0);
  const expected = new Float32Array(total);
  let offset = 0;
  for (const o of outputs) {
    expected.set(o, offset);
    offset += o.length;
  }
  writeFileSync(join(dir, "expected.f32"), new Uint8Array(expected.buffer));
  pipeline.dispose();
  console.log(`${dir}: ${names.join(", ")}; ${total} output floats after ${CHECK_STEPS} steps`);
}

const [out, library] = process.argv.slice(2);
if (out === undefined || library === undefined) {
  console.error("usage: bun scripts/profile-images.ts OUT_DIR LIBRARY [MODELS_DIR]");
  process.exit(2);
}
const modelsDir = process.argv[4] ?? defaultModelsDir();
for (const precision of PRECISIONS) await writePrecision(out, library, modelsDir, precision);
