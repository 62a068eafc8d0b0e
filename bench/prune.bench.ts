/**
 * Does pruning make the models faster? (1) The sparse kernel (compressed sparse rows,
 * zig/layers/sparse.zig) against the dense SIMD kernel on every dense-layer shape of the
 * emotion pipeline, the weights magnitude-pruned to 50%, 70%, 90% and 95%: one layer, batch 1,
 * the same weights held both ways (ModelOptions.sparse "always" / "never"). (2) The five
 * default models against their structurally pruned (50%) forms and their 50/70/90%
 * unstructured forms as loaded by default ("auto": sparse rows only where the rule in
 * src/model/image.ts says they win), timed in alternation.
 *
 *   CADENZA_LIB=fast bun bench/prune.bench.ts           (models from CADENZA_MODELS or models/)
 *   deno run --allow-ffi --allow-read --allow-env bench/prune.bench.ts
 */
import process from "node:process";
import { bench, do_not_optimize, group, run } from "mitata";
import { loadSpec, modelFromSpec } from "../src/model/load.ts";
import type { Model } from "../src/model/model.ts";
import { SPARSE_MIN_COLS, SPARSE_MIN_ZEROS } from "../src/model/image.ts";
import type { ModelSpec } from "../src/model/spec.ts";
import { prune } from "../src/optimize/prune.ts";
import { defaultModelsDir, EMOTION_MODELS } from "../src/pipeline/emotion.ts";
import { initSpec } from "../src/train/params.ts";
import { benchInputs, benchLibrary, medianNs, printTable, runtimeName } from "./lib.ts";

const dir = process.env.CADENZA_MODELS ?? defaultModelsDir();
const library = benchLibrary();
const SPARSITIES = [0.5, 0.7, 0.9];
/** The layer table adds 95%, where the rule's threshold was looked for. */
const LAYER_SPARSITIES = [...SPARSITIES, 0.95];

/** Every dense layer shape (out x in) of the five models, once each. */
const shapes: [number, number][] = [];
const specs: Record<string, ModelSpec> = {};
for (const info of EMOTION_MODELS) {
  const { spec } = await loadSpec(`${dir}/${info.name}.safetensors`);
  specs[info.name] = spec;
  for (const l of spec.layers) {
    if (l.kind === "dense" && !shapes.some(([o, i]) => o === l.outputSize && i === l.inputSize)) {
      shapes.push([l.outputSize, l.inputSize]);
    }
  }
}
shapes.sort((a, b) => b[0] * b[1] - a[0] * a[1]);

const loaded: Model[] = [];
async function load(spec: ModelSpec, sparse: "auto" | "never" | "always"): Promise<Model> {
  const m = await modelFromSpec(spec, { library, sparse });
  loaded.push(m);
  return m;
}

function stepBench(alias: string, model: Model): void {
  const xs = benchInputs(8, model.inputSize, 5);
  let i = 0;
  bench(alias, () => do_not_optimize(model.forward(xs[i++ & 7])));
}

for (const [out, inp] of shapes) {
  const layer = initSpec({
    inputSize: inp,
    layers: [{ kind: "dense", inputSize: inp, outputSize: out, activation: "linear", bias: true }],
  }, out * 7 + inp);
  for (const s of LAYER_SPARSITIES) {
    const pruned = prune(layer, { sparsity: s }).spec;
    const dense = await load(pruned, "never");
    const sparse = await load(pruned, "always");
    group(`dense ${out}x${inp} at ${s * 100}%`, () => {
      stepBench(`${out}x${inp} ${s} dense`, dense);
      stepBench(`${out}x${inp} ${s} sparse`, sparse);
    });
  }
}

/** The models: the original, its structured 50% form, its unstructured forms (sparse "auto"). */
const forms: Record<string, Model[]> = {};
for (const info of EMOTION_MODELS) {
  const spec = specs[info.name];
  forms[info.name] = [
    await load(spec, "never"),
    await load(prune(spec, { sparsity: 0.5, structured: true }).spec, "auto"),
    ...await Promise.all(SPARSITIES.map((s) => load(prune(spec, { sparsity: s }).spec, "auto"))),
  ];
}

/**
 * Median ns per step of each model, timed in alternation: windows of about 20 us of steps of
 * each model in turn, 4000 rounds. Windows that short mostly escape the scheduler's time
 * slices on a shared machine, and the load, which drifts over seconds, falls on all alike.
 */
function interleaved(models: Model[], rounds = 4000): number[] {
  const xs = models.map((m) => benchInputs(8, m.inputSize, 9));
  const calls = models.map((m, k) => {
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) do_not_optimize(m.forward(xs[k][i & 7]));
    const ns = (performance.now() - t0) * 1e6 / 200;
    return Math.max(1, Math.round(20_000 / ns));
  });
  const times = models.map(() => new Float64Array(rounds));
  for (let r = 0; r < rounds; r++) {
    models.forEach((m, k) => {
      const t0 = performance.now();
      for (let i = 0; i < calls[k]; i++) do_not_optimize(m.forward(xs[k][i & 7]));
      times[k][r] = (performance.now() - t0) * 1e6 / calls[k];
    });
  }
  return times.map((t) => t.sort()[rounds >> 1]);
}

const result = await run();

console.log(`\n${runtimeName}, library ${library}; one step at batch 1, median (p50)`);
printTable(
  ["dense out x in", "sparsity", "dense us", "sparse us", "sparse/dense", "faster"],
  shapes.flatMap(([out, inp]) =>
    LAYER_SPARSITIES.map((s) => {
      const d = medianNs(result, `${out}x${inp} ${s} dense`);
      const sp = medianNs(result, `${out}x${inp} ${s} sparse`);
      return [
        `${out}x${inp}`,
        `${s * 100}%`,
        (d / 1e3).toFixed(3),
        (sp / 1e3).toFixed(3),
        `${(sp / d).toFixed(2)}x`,
        sp < d ? "sparse" : "dense",
      ];
    })
  ),
);
console.log(
  `rule (src/model/image.ts): a dense layer runs sparse when W has at least ${SPARSE_MIN_COLS} ` +
    `columns and at least ${SPARSE_MIN_ZEROS * 100}% of its entries are zero.`,
);
printTable(
  [
    "model",
    "original us",
    "structured 50% us",
    "ratio",
    "params kept",
    ...SPARSITIES.map((s) => `unstructured ${s * 100}% us`),
  ],
  EMOTION_MODELS.map((info) => {
    const [o, st, ...un] = interleaved(forms[info.name]);
    const kept = prune(specs[info.name], { sparsity: 0.5, structured: true }).report;
    return [
      info.name,
      (o / 1e3).toFixed(2),
      (st / 1e3).toFixed(2),
      `${(st / o).toFixed(2)}x`,
      `${(kept.parametersAfter / kept.parametersBefore * 100).toFixed(0)}%`,
      ...un.map((u) => (u / 1e3).toFixed(2)),
    ];
  }),
);
console.log("models: medians over 4000 windows of about 20 us per form, timed in alternation.");
for (const m of loaded) m.dispose();
