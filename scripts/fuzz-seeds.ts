/**
 * Writes the coverage-guided fuzzer's seed corpus (docs/TESTING.md, "Coverage-guided fuzzing"):
 *
 *   fuzz/corpus/model/    small images of every layer kind (f32, some bf16 and int8) and a few
 *                         stacks; the committed models' images cut after their first layer's
 *                         record (header + record: the fuzzer's target sets image_bytes), and
 *                         DynamicsEngine's whole image;
 *   fuzz/graph-nodes/     the four member models of the graph target (embedded in the driver);
 *   fuzz/corpus/graph/    graph descriptions over them: copies, slices of the graph input,
 *                         max and mean pooling, nodes reading nodes;
 *   fuzz/corpus/trainer/  32 config words (every loss, both optimizers, qat, the helper
 *                         thread) followed by a small model image.
 *
 *   bun scripts/fuzz-seeds.ts          (deterministic: rerunning it rewrites the same bytes)
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { packImage, type Precision } from "../src/model/image.ts";
import { readSafetensors } from "../src/model/formats/safetensors.ts";
import type { ModelSpec } from "../src/model/spec.ts";
import { configWords, trainerConfig } from "../src/train/trainer.ts";
import { ALL_KINDS, randomModel, Rng } from "../test/helpers.ts";

const root = join(import.meta.dirname ?? ".", "..");
const fuzz = join(root, "fuzz");
const dirs = {
  model: join(fuzz, "corpus", "model"),
  graph: join(fuzz, "corpus", "graph"),
  trainer: join(fuzz, "corpus", "trainer"),
  nodes: join(fuzz, "graph-nodes"),
};
for (const d of Object.values(dirs)) {
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
}

const rng = new Rng(0x5eed5);
const image = (spec: ModelSpec, precision: Precision = "f32") =>
  packImage(spec, "fuzz seed", precision);

// Models: every kind at width 3, then stacks, then precisions.
for (const kind of ALL_KINDS) {
  writeFileSync(join(dirs.model, `${kind}.img`), image(randomModel(rng, [kind], 4, [], 4)));
}
const stacks: [string, Parameters<typeof randomModel>[1]][] = [
  ["dense-lstm-dense", ["dense", "lstm", "dense"]],
  ["conv1d-gru-batchnorm", ["conv1d", "gru", "batchnorm"]],
  ["layernorm-transformer-prelu", ["layernorm", "transformer", "prelu"]],
  ["attention-activation-dense", ["attention", "activation", "dense"]],
];
for (const [name, kinds] of stacks) {
  const spec = randomModel(rng, kinds, 4, [], 3);
  writeFileSync(join(dirs.model, `${name}.img`), image(spec));
  writeFileSync(join(dirs.model, `${name}.bf16.img`), image(spec, "bf16"));
  writeFileSync(join(dirs.model, `${name}.int8.img`), image(spec, "int8"));
}
// The committed models: header and first layer record (32 + 64 bytes), and one whole.
const models = join(root, "models");
for (const file of readdirSync(models).filter((f) => f.endsWith(".safetensors")).sort()) {
  const spec = readSafetensors(readFileSync(join(models, file)), file);
  const img = image(spec);
  const name = file.replace(".safetensors", "");
  writeFileSync(join(dirs.model, `${name}.head.img`), img.subarray(0, 96));
  if (name === "DynamicsEngine") writeFileSync(join(dirs.model, `${name}.img`), img);
}

// The graph target's members: 12 -> 8, 12 -> 6, 8 -> 4, 6 -> 3.
const members = [
  randomModel(rng, ["dense"], 12, [{ outputSize: 8, activation: "tanh" }]),
  randomModel(rng, ["lstm"], 12, [{ outputSize: 6 }]),
  randomModel(rng, ["gru"], 8, [{ outputSize: 4 }]),
  randomModel(rng, ["dense"], 6, [{ outputSize: 3, activation: "softmax" }]),
];
members.forEach((spec, i) => writeFileSync(join(dirs.nodes, `node${i}.img`), image(spec)));

const GRAPH_MAGIC = 0x52475a43;
const INPUT = 0xffffffff;
const OP = { copy: 0, maxpool2: 1, maxpool4: 2, meanpool2: 3, meanpool4: 4 };
type Edge = [source: number, offset: number, length: number, op: number];
function graph(inputSize: number, nodes: [model: number, edges: Edge[]][]): Uint8Array {
  const words = [GRAPH_MAGIC, 1, nodes.length, inputSize];
  for (const [model, edges] of nodes) {
    words.push(model, edges.length);
    for (const e of edges) words.push(...e);
  }
  return new Uint8Array(Uint32Array.from(words).buffer);
}
const graphs: Record<string, Uint8Array> = {
  // Four nodes, as the emotion pipeline: a recogniser feeding three others, one of which also
  // reads another node's output, mean-pooled.
  "four-nodes": graph(16, [
    [0, [[INPUT, 0, 12, OP.copy]]],
    [1, [[0, 0, 8, OP.copy], [INPUT, 12, 4, OP.copy]]],
    [2, [[0, 0, 8, OP.copy]]],
    [3, [[0, 0, 8, OP.meanpool4], [2, 0, 4, OP.copy]]],
  ]),
  "one-node": graph(12, [[0, [[INPUT, 0, 12, OP.copy]]]]),
  "two-nodes-maxpool": graph(16, [
    [0, [[INPUT, 4, 12, OP.copy]]],
    [1, [[0, 0, 8, OP.copy], [INPUT, 0, 8, OP.maxpool2]]],
  ]),
  "three-nodes-meanpool": graph(16, [
    [2, [[INPUT, 0, 8, OP.copy]]],
    [0, [[0, 0, 4, OP.copy], [INPUT, 0, 16, OP.meanpool2]]],
    [1, [[1, 0, 8, OP.copy], [0, 0, 4, OP.copy]]],
  ]),
  "four-nodes-maxpool4": graph(32, [
    [0, [[INPUT, 0, 32, OP.maxpool4], [INPUT, 0, 16, OP.meanpool4]]],
    [2, [[0, 0, 8, OP.copy]]],
    [3, [[1, 0, 4, OP.copy], [0, 2, 2, OP.copy]]],
    [1, [[0, 0, 8, OP.copy], [2, 0, 3, OP.copy], [INPUT, 31, 1, OP.copy]]],
  ]),
};
for (const [name, bytes] of Object.entries(graphs)) {
  writeFileSync(join(dirs.graph, `${name}.u32`), bytes);
}

// Trainers: config words, then the image.
const trainers: [string, ModelSpec, Parameters<typeof trainerConfig>[0]][] = [
  ["dense-xent", randomModel(rng, ["dense", "dense"], 4, [{}, { activation: "linear" }], 2), {
    batch: 2,
    loss: "xent",
  }],
  ["lstm-mse-sgd", randomModel(rng, ["lstm", "dense"], 3, [], 2), {
    batch: 2,
    seqLen: 3,
    loss: "mse",
    optimizer: "sgd",
    clipNorm: 1,
  }],
  ["gru-bce-qat", randomModel(rng, ["gru", "dense"], 3, [{}, { activation: "sigmoid" }], 2), {
    batch: 1,
    seqLen: 4,
    loss: "bce",
    qat: true,
    warmupSteps: 2,
    totalSteps: 10,
    bpttWindow: 2,
  }],
  ["conv-kl-threads", randomModel(rng, ["conv1d", "layernorm", "dense"], 3, [], 2), {
    batch: 2,
    seqLen: 2,
    loss: "kl",
    threads: 2,
    labelSmoothing: 0.1,
    temperature: 2,
  }],
  ["transformer-xent", randomModel(rng, ["transformer", "dense"], 4, [], 2), {
    batch: 1,
    seqLen: 3,
    loss: "xent",
  }],
];
for (const [name, spec, options] of trainers) {
  const config = new Uint8Array(configWords(trainerConfig(options)).buffer);
  const img = image(spec);
  const bytes = new Uint8Array(config.length + img.length);
  bytes.set(config);
  bytes.set(img, config.length);
  writeFileSync(join(dirs.trainer, `${name}.bin`), bytes);
}
console.log("fuzz seeds written under fuzz/");
