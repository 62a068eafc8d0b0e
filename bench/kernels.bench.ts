/**
 * What fraction of the machine do cadenza's kernels use? GFLOP/s of dense 512->256 and
 * 256->128 (batch 1 and 64) and of an LSTM 256->128 step, beside the FMA peak measured by
 * bench/peak.zig and the same layers as plain TypeScript loops (bench/plain.ts). The batch-1
 * kernels run with bf16 weights too (half the bytes to stream, the same f32 arithmetic), in
 * the same group as f32, so mitata's summary shows the ratio.
 *
 *   CADENZA_LIB=fast bun bench/kernels.bench.ts
 *   deno run --allow-ffi --allow-read --allow-env --allow-run --allow-write bench/kernels.bench.ts
 */
import { bench, do_not_optimize, group, run, summary } from "mitata";
import { modelFromSpec, type Precision } from "../src/index.ts";
import type { LayerSpec, ModelSpec } from "../src/model/spec.ts";
import {
  benchInputs,
  benchLibrary,
  denseFlop,
  gflops,
  loadPeak,
  lstmFlop,
  measureFmaPeak,
  measureReadBandwidth,
  medianNs,
  printTable,
  runtimeName,
} from "./lib.ts";
import { PlainModel } from "./plain.ts";

interface Kernel {
  name: string;
  spec: ModelSpec;
  batch: number;
  flop: number;
  /** Bytes of the weight matrices as f32; bf16 holds half. */
  weightBytes: number;
}

/** Batch-1 kernels also run at bf16, where the bytes streamed, not the FLOPs, halve. */
const precisionsOf = (k: Kernel): Precision[] => k.batch === 1 ? ["f32", "bf16"] : ["f32"];
const alias = (k: Kernel, precision: Precision) =>
  precision === "f32" ? `${k.name}: cadenza` : `${k.name}: cadenza ${precision}`;

function weights(len: number, fanIn: number, seed: number): Float32Array {
  const [values] = benchInputs(1, len, seed);
  const scale = 1 / Math.sqrt(fanIn);
  for (let i = 0; i < len; i++) values[i] *= scale;
  return values;
}

function denseSpec(inputSize: number, outputSize: number): ModelSpec {
  const layer: LayerSpec = {
    kind: "dense",
    inputSize,
    outputSize,
    activation: "linear",
    tensors: { W: weights(outputSize * inputSize, inputSize, 11), b: weights(outputSize, 1, 12) },
  };
  return { inputSize, layers: [layer], maxBatch: 64 };
}

function lstmSpec(inputSize: number, hidden: number): ModelSpec {
  const layer: LayerSpec = {
    kind: "lstm",
    inputSize,
    outputSize: hidden,
    tensors: {
      Wx: weights(4 * hidden * inputSize, inputSize, 21),
      Wh: weights(4 * hidden * hidden, hidden, 22),
      b: weights(4 * hidden, 1, 23),
    },
  };
  return { inputSize, layers: [layer], maxBatch: 64 };
}

const kernels: Kernel[] = [];
for (const [n_in, n_out] of [[512, 256], [256, 128]]) {
  for (const batch of [1, 64]) {
    kernels.push({
      name: `dense ${n_in}->${n_out} batch ${batch}`,
      spec: denseSpec(n_in, n_out),
      batch,
      flop: denseFlop(n_in, n_out, batch),
      weightBytes: 4 * n_in * n_out,
    });
  }
}
kernels.push({
  name: "lstm 256->128 step",
  spec: lstmSpec(256, 128),
  batch: 1,
  flop: lstmFlop(256, 128),
  weightBytes: 4 * 4 * 128 * (256 + 128),
});

const library = benchLibrary();
for (const k of kernels) {
  const model = await modelFromSpec(k.spec, { library });
  const bf16 = precisionsOf(k).includes("bf16")
    ? await modelFromSpec(k.spec, { library, precision: "bf16" })
    : null;
  const plain = new PlainModel(k.spec);
  const inputs = benchInputs(8, k.spec.inputSize * k.batch, 5);
  const rows = Array.from(
    { length: k.batch },
    (_, r) => inputs[0].subarray(r * k.spec.inputSize, (r + 1) * k.spec.inputSize),
  );
  let i = 0;
  group(k.name, () => {
    summary(() => {
      if (k.batch === 1) {
        bench(alias(k, "f32"), () => do_not_optimize(model.forward(inputs[i++ & 7])))
          .baseline();
        if (bf16 !== null) {
          bench(alias(k, "bf16"), () => do_not_optimize(bf16.forward(inputs[i++ & 7])));
        }
        bench(`${k.name}: plain TS`, () => do_not_optimize(plain.forward(inputs[i++ & 7])));
      } else {
        bench(
          `${k.name}: cadenza`,
          () => do_not_optimize(model.forwardBatch(inputs[i++ & 7], k.batch)),
        )
          .baseline();
        bench(`${k.name}: plain TS`, () => {
          for (const row of rows) do_not_optimize(plain.forward(row));
        });
      }
    });
  });
}

const peak = await loadPeak();
const result = await run();
// Measured after the suites, when nothing else of ours runs; best of many short runs.
const peak16 = measureFmaPeak(peak, 16);
const peak8 = measureFmaPeak(peak, 8);

console.log(
  `\nFMA peak, one core: ${peak16.toFixed(1)} GFLOP/s with 16-lane vectors, ` +
    `${peak8.toFixed(1)} with 8-lane. ${runtimeName}, library ${library}.`,
);
// The read side of the machine's limits: where the bandwidth steps down shows the cache sizes.
const sizesKb = [32, 256, 1024, 1536, 2048, 3072, 4096, 16384];
printTable(
  ["working set KB", ...sizesKb.map(String)],
  [["read GB/s", ...sizesKb.map((kb) => measureReadBandwidth(peak, kb * 1024).toFixed(0))]],
);
const percent = (part: number, whole: number) => `${(100 * part / whole).toFixed(0)}%`;
const table = kernels.flatMap((k) =>
  precisionsOf(k).map((precision) => {
    const cadenza = medianNs(result, alias(k, precision));
    const plain = medianNs(result, `${k.name}: plain TS`);
    const rate = gflops(k.flop, cadenza);
    const bytes = precision === "bf16" ? k.weightBytes / 2 : k.weightBytes;
    const boundNs = bytes / measureReadBandwidth(peak, bytes);
    return [
      `${k.name} ${precision}`,
      (cadenza / 1e3).toFixed(2),
      rate.toFixed(1),
      percent(rate, peak16),
      precision === "f32" ? gflops(k.flop, plain).toFixed(2) : "-",
      (boundNs / 1e3).toFixed(2),
      k.batch === 1 ? percent(boundNs, cadenza) : "-",
    ];
  })
);
printTable(
  [
    "kernel",
    "cadenza us",
    "GFLOP/s",
    "of peak",
    "plain GFLOP/s",
    "bound us",
    "bound/time",
  ],
  table,
);
console.log("bound: weight bytes / streaming read bandwidth measured at that size (batch 1).");
peak.close();
