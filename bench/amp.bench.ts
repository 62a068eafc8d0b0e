/**
 * Block processing for audio-rate models: one second of 48 kHz audio (48,000 samples) through a
 * guitar-amp model (LSTM, hidden 40, one input, a dense head and the skip connection, loaded
 * from the amp JSON format), per-sample `forward` (48,000 native calls) against one `process`
 * call. Both produce the same bits (test/cases/process.ts); this measures what the per-call
 * overhead costs. The same for a model whose step costs next to nothing (a gain plus the dry
 * signal: dense 1->1 and skip), where the per-call overhead is all there is.
 *
 *   bun bench/amp.bench.ts                       (the ReleaseFast library unless CADENZA_LIB)
 *   deno run --allow-ffi --allow-read --allow-env --allow-write bench/amp.bench.ts
 *
 * Published peer figure for a nearby shape (not this machine): RTNeural's layer benchmark
 * (github.com/jatinchowdhury18/RTNeural-compare, results/bench_eigen.txt, 48 kHz, Eigen
 * backend, compile-time model) processes 10 s through an LSTM 32->32 in 0.424 s and 64->64 in
 * 1.548 s: 0.88 and 3.22 us per sample. An LSTM-40 with one input (6,560 multiply-adds a step)
 * sits between them in work (32->32: 8,192; 64->64: 32,768).
 */
import process from "node:process";
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { type LibraryChoice, type Model, modelFromSpec } from "../src/index.ts";
import { loadAmpModel } from "./amp.ts";
import { printTable, runtimeName } from "./lib.ts";

const SAMPLES = 48_000;
const HIDDEN = 40;

const library = (process.env.CADENZA_LIB ?? "fast") as LibraryChoice;
const model = await loadAmpModel(HIDDEN, library);

const tiny = await modelFromSpec({
  inputSize: 1,
  layers: [
    {
      kind: "dense",
      inputSize: 1,
      outputSize: 1,
      tensors: { W: new Float32Array([0.5]), b: new Float32Array(1) },
    },
    { kind: "skip", inputSize: 1, outputSize: 1, tensors: {} },
  ],
}, { library });

const input = new Float32Array(SAMPLES);
for (let n = 0; n < SAMPLES; n++) input[n] = 0.5 * Math.sin(2 * Math.PI * 110 * n / 48_000);
const output = new Float32Array(SAMPLES);
const one = new Float32Array(1);

function perSample(m: Model): void {
  for (let n = 0; n < SAMPLES; n++) {
    one[0] = input[n];
    output[n] = m.forward(one)[0];
  }
}

group("1 s of 48 kHz audio, LSTM-40 amp model", () => {
  summary(() => {
    bench("forward per sample", () => perSample(model)).baseline(true);
    bench("process, one call", () => do_not_optimize(model.process(input, SAMPLES, output)));
  });
});
group("1 s of 48 kHz audio, dense 1->1 + skip (call-bound)", () => {
  summary(() => {
    bench("tiny: forward per sample", () => perSample(tiny)).baseline(true);
    bench("tiny: process, one call", () => do_not_optimize(tiny.process(input, SAMPLES, output)));
  });
});

const result = await run();
const median = (alias: string) => {
  const trial = result.benchmarks.find((b) => b.alias === alias);
  const p50 = trial?.runs[0]?.stats?.p50;
  if (p50 === undefined) throw new Error(`bench/amp.bench.ts: no result for "${alias}"`);
  return p50;
};
const row = (name: string, ns: number, base: number) => [
  name,
  (ns / 1e6).toFixed(2),
  (ns / SAMPLES).toFixed(1),
  `${(1e9 / ns).toFixed(0)}x`,
  `${(base / ns).toFixed(2)}x`,
];
const forwardNs = median("forward per sample");
const processNs = median("process, one call");
const tinyForwardNs = median("tiny: forward per sample");
const tinyProcessNs = median("tiny: process, one call");
console.log(`\n${runtimeName}, library ${model.nativeInfo().libraryPath}`);
printTable(["path", "ms per second of audio", "ns per sample", "real-time factor", "vs forward"], [
  row("LSTM-40 amp: forward per sample", forwardNs, forwardNs),
  row("LSTM-40 amp: process, one call", processNs, forwardNs),
  row("dense 1->1 + skip: forward per sample", tinyForwardNs, tinyForwardNs),
  row("dense 1->1 + skip: process, one call", tinyProcessNs, tinyForwardNs),
  ["RTNeural LSTM 32->32 (published)", "88.4", "884", "23.6x", ""],
  ["RTNeural LSTM 64->64 (published)", "322.5", "3225", "6.5x", ""],
]);
console.log(
  "RTNeural: RTNeural-compare results/bench_eigen.txt (static model, Eigen, 48 kHz, its " +
    "author's machine): nearby shapes, not LSTM-40 with one input, and another CPU.",
);
model.dispose();
tiny.dispose();
