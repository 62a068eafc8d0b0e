/**
 * A loop for a profiler: the LSTM-40 amp model of bench/amp.bench.ts, `process` over one
 * second of 48 kHz audio REPS times (default 300), then the time per sample. No mitata, so
 * that a sampling profiler sees the native step and little else:
 *
 *   perf record -F 5000 -- env CADENZA_LIB=fast bun bench/amp-profile.ts
 *   perf report --no-children --sort symbol
 */
import process from "node:process";
import type { LibraryChoice } from "../src/index.ts";
import { loadAmpModel } from "./amp.ts";

const SAMPLES = 48_000;
const library = (process.env.CADENZA_LIB ?? "fast") as LibraryChoice;
const reps = Number(process.env.REPS ?? 300);
const model = await loadAmpModel(40, library);
const input = new Float32Array(SAMPLES);
for (let n = 0; n < SAMPLES; n++) input[n] = 0.5 * Math.sin(2 * Math.PI * 110 * n / 48_000);
const output = new Float32Array(SAMPLES);
const start = performance.now();
for (let r = 0; r < reps; r++) model.process(input, SAMPLES, output);
const ns = (performance.now() - start) * 1e6 / (reps * SAMPLES);
console.log(
  `LSTM-40 amp model, process: ${ns.toFixed(1)} ns per sample (${reps} x ${SAMPLES} samples)`,
);
model.dispose();
