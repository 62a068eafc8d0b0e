/**
 * The emotion pipeline's step (five models in one graph call) on the WebAssembly backend beside
 * the native library, same models and inputs, in one run; the outputs are checked to agree
 * first. Both use the ReleaseFast builds.
 *
 *   bun bench/wasm.bench.ts
 *   deno run --allow-ffi --allow-read --allow-env bench/wasm.bench.ts
 */
import { bench, do_not_optimize, run, summary } from "mitata";
import { EmotionPipeline, FEATURE_SIZE } from "../src/pipeline/emotion.ts";
import { runtimeName } from "./lib.ts";

const native = await EmotionPipeline.load(undefined, { library: "fast" });
const wasm = await EmotionPipeline.load(undefined, { library: "wasm-fast" });
const x = new Float32Array(FEATURE_SIZE);
for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37);

// Agreement before timing: 48 steps from the same state, every output within 1e-4.
let worst = 0;
for (let s = 0; s < 48; s++) {
  const a = native.step(x);
  const b = wasm.step(x);
  for (const key of Object.keys(a) as (keyof typeof a)[]) {
    const u = a[key] as Float32Array;
    const v = b[key] as Float32Array;
    for (let i = 0; i < u.length; i++) worst = Math.max(worst, Math.abs(u[i]! - v[i]!));
  }
}
if (!(worst <= 1e-4)) throw new Error(`wasm and native disagree by ${worst}`);
console.log(`${runtimeName}: wasm and native agree to ${worst.toExponential(2)} over 48 steps`);

summary(() => {
  bench("pipeline step, native (fast)", () => do_not_optimize(native.step(x)));
  bench("pipeline step, wasm simd128 (fast)", () => do_not_optimize(wasm.step(x)));
});
await run();
native.dispose();
wasm.dispose();
