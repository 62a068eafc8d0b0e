/**
 * What reduced-precision weights (bf16 or int8) cost in accuracy on the pipeline: the same
 * inputs through the default models loaded at f32 and at the given precision, step by step from a reset state (so recurrent state and the
 * KV cache carry the error forward), and the largest output difference per node.
 *
 *   bun scripts/precision-error.ts [bf16|int8] [STEPS] [MODELS_DIR]   (default bf16, 2000 steps, models/)
 *
 * Outputs are bounded (tanh, sigmoid, softmax), so the absolute difference is also the error
 * relative to the output range; the mean shows whether the worst case is typical.
 */
import process from "node:process";
import { benchInputs } from "../src/bench/stats.ts";
import { defaultModelsDir, EmotionPipeline, FEATURE_SIZE } from "../src/pipeline/emotion.ts";

const precision = process.argv[2] ?? "bf16";
if (precision !== "bf16" && precision !== "int8") {
  console.error(`precision-error: expected bf16 or int8, got ${precision}`);
  process.exit(2);
}
const steps = Number(process.argv[3] ?? 2000);
const dir = process.argv[4] ?? defaultModelsDir();
const f32 = await EmotionPipeline.load(dir, { library: "fast", precision: "f32" });
const reduced = await EmotionPipeline.load(dir, { library: "fast", precision });
const inputs = benchInputs(64, FEATURE_SIZE, 3);
const worst: Record<string, number> = {};
const sum: Record<string, number> = {};
let count = 0;
for (let s = 0; s < steps; s++) {
  const a = f32.step(inputs[s & 63]);
  const b = reduced.step(inputs[s & 63]);
  for (const [node, values] of Object.entries(a)) {
    const other = b[node];
    for (let i = 0; i < values.length; i++) {
      const d = Math.abs(values[i] - other[i]);
      worst[node] = Math.max(worst[node] ?? 0, d);
      sum[node] = (sum[node] ?? 0) + d;
    }
  }
  count++;
}
console.log(`${precision} vs f32 weights, ${steps} pipeline steps from reset, models ${dir}`);
console.log("| node | max abs difference | mean abs difference |");
console.log("|---|---|---|");
for (const [node, values] of Object.entries(f32.outputs)) {
  const mean = sum[node] / (count * values.length);
  console.log(`| ${node} | ${worst[node].toExponential(2)} | ${mean.toExponential(2)} |`);
}
f32.dispose();
reduced.dispose();
