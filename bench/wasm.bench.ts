/**
 * The emotion pipeline's step (five models) on cadenza's WebAssembly backend beside the native
 * library and beside TensorFlow.js 4.22 on its own WebAssembly backend (tfjs-backend-wasm, the
 * same five models with the same weights, bench/wasm-tfjs.ts), same inputs, in one run. The
 * outputs are checked to agree first: cadenza wasm against native within 1e-4, TensorFlow.js
 * against native within 1e-3 (its own summation order, tanh, erf and softmax; the measured
 * worst is printed). cadenza runs its ReleaseFast builds; TensorFlow.js runs one thread (its
 * threaded build is off: cadenza steps on one thread too, and this VM has two cores).
 *
 *   bun bench/wasm.bench.ts [--no-tfjs]
 *   deno run --allow-ffi --allow-read --allow-env --allow-net bench/wasm.bench.ts
 */
import process from "node:process";
import { bench, do_not_optimize, run, summary } from "mitata";
import { CONTEXT, CONTEXT_SIZE, EmotionPipeline, FEATURE_SIZE } from "../src/pipeline/emotion.ts";
import { runtimeName } from "./lib.ts";

const withTf = !process.argv.includes("--no-tfjs");

const native = await EmotionPipeline.load(undefined, { library: "fast" });
const wasm = await EmotionPipeline.load(undefined, { library: "wasm-fast" });
const x = new Float32Array(FEATURE_SIZE);
for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37);
// A context as the decoder writes it: previous note 67, chord class 9, a span's melody.
const context = new Float32Array(CONTEXT_SIZE);
context[CONTEXT.PREVIOUS_NOTE + 67] = 1;
context[CONTEXT.CHORD + 9] = 1;
context[CONTEXT.SPAN_PITCH_CLASSES + 0] = 0.5;
context[CONTEXT.SPAN_PITCH_CLASSES + 7] = 0.5;

let tfPipeline: import("./wasm-tfjs.ts").TfEmotionPipeline | null = null;
let tfInfo = "";
if (withTf) {
  const tf = await import("@tensorflow/tfjs");
  const tfWasm = await import("@tensorflow/tfjs-backend-wasm");
  const { fileURLToPath } = await import("node:url");
  tfWasm.setWasmPaths(
    fileURLToPath(new URL("../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url)),
  );
  tfWasm.setThreadsCount(1);
  await tf.setBackend("wasm");
  await tf.ready();
  const { TfEmotionPipeline } = await import("./wasm-tfjs.ts");
  tfPipeline = new TfEmotionPipeline(native);
  tfInfo = `TensorFlow.js ${tf.version.tfjs} on ${tf.getBackend()}, simd ` +
    `${await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT")}, threads ${tfWasm.getThreadsCount()}`;
  console.log(tfInfo);
}

/** The worst absolute difference between two steps' outputs, over every output. */
function worstOf(a: Record<string, Float32Array>, b: Record<string, Float32Array>): number {
  let worst = 0;
  for (const key of ["emotion", "melody", "groove", "harmony", "dynamics"]) {
    const u = a[key]!;
    const v = b[key]!;
    if (u.length !== v.length) throw new Error(`${key}: ${u.length} values against ${v.length}`);
    for (let i = 0; i < u.length; i++) worst = Math.max(worst, Math.abs(u[i]! - v[i]!));
  }
  return worst;
}

// Agreement before timing: 48 steps from the same state (past the transformer's 32-position
// context, so the cache's ring is exercised), every output.
let worstWasm = 0;
let worstTf = 0;
for (let s = 0; s < 48; s++) {
  const a = native.step(x, context);
  worstWasm = Math.max(worstWasm, worstOf(a, wasm.step(x, context)));
  if (tfPipeline !== null) worstTf = Math.max(worstTf, worstOf(a, tfPipeline.step(x, context)));
}
if (!(worstWasm <= 1e-4)) throw new Error(`cadenza wasm and native disagree by ${worstWasm}`);
if (!(worstTf <= 1e-3)) throw new Error(`TensorFlow.js and cadenza disagree by ${worstTf}`);
console.log(
  `${runtimeName}: over 48 steps, cadenza wasm agrees with native to ` +
    `${worstWasm.toExponential(2)}` +
    (tfPipeline !== null ? `, TensorFlow.js wasm to ${worstTf.toExponential(2)}` : ""),
);

summary(() => {
  bench("pipeline step, cadenza native (fast)", () => do_not_optimize(native.step(x, context)));
  bench("pipeline step, cadenza wasm simd128 (fast)", () => do_not_optimize(wasm.step(x, context)));
  if (tfPipeline !== null) {
    const tfp = tfPipeline;
    bench("pipeline step, TensorFlow.js wasm", () => do_not_optimize(tfp.step(x, context)));
  }
});
await run();

// Under load mitata's averages swing; the three also run interleaved, 20 steps each in turn
// for 200 rounds, and the median of each one's per-step times is printed, with the ratios.
const runs: [string, () => unknown][] = [
  ["cadenza native", () => native.step(x, context)],
  ["cadenza wasm", () => wasm.step(x, context)],
];
if (tfPipeline !== null) runs.push(["TensorFlow.js wasm", () => tfPipeline!.step(x, context)]);
const times = runs.map(() => [] as number[]);
for (let round = 0; round < 200; round++) {
  runs.forEach(([, step], i) => {
    const start = performance.now();
    for (let k = 0; k < 20; k++) step();
    times[i].push(((performance.now() - start) * 1000) / 20);
  });
}
const medians = times.map((t) => t.sort((a, b) => a - b)[t.length >> 1]);
console.log(`\ninterleaved medians (${runtimeName}), us per pipeline step:`);
runs.forEach(([name], i) => {
  console.log(
    `  ${name.padEnd(20)} ${medians[i].toFixed(1).padStart(8)}  ` +
      `(${(medians[i] / medians[0]).toFixed(2)}x native)`,
  );
});
native.dispose();
wasm.dispose();
tfPipeline?.dispose();
