/**
 * What does the real-time engine cost the caller's thread, and how long from submit() to the
 * result being readable by latest()?
 *
 *   bun bench/rt.bench.ts
 *   deno run -A bench/rt.bench.ts          (needs --allow-ffi --allow-read --allow-env at least)
 *
 * Models from CADENZA_MODELS or models/; the native library is CADENZA_LIB (default fast);
 * CADENZA_RT_TRIALS round trips (default 2000). mitata times the caller's calls; the round trip
 * is timed here: submit, then poll latest() until it returns that input's result, one trial per
 * millisecond so that the Worker is asleep when each input arrives (as at an audio block rate).
 * The Worker's own histograms (stats()) split the round trip into wake-up and pipeline step.
 */
import process from "node:process";
import { bench, do_not_optimize, run, summary } from "mitata";
import { defaultModelsDir, EmotionPipeline, FEATURE_SIZE } from "../src/pipeline/emotion.ts";
import { LatencyHistogram, type LatencySummary, RealtimeEngine } from "../src/rt/index.ts";
import { benchLibrary, printTable, runtimeName } from "./lib.ts";

const dir = process.env.CADENZA_MODELS ?? defaultModelsDir();
const library = benchLibrary();
const trials = Number(process.env.CADENZA_RT_TRIALS ?? 2000);

const features: Float32Array[] = [];
for (let k = 0; k < 8; k++) {
  features.push(Float32Array.from({ length: FEATURE_SIZE }, (_, i) => Math.sin(0.37 * i + k)));
}

// The caller's cost. 1024 slots: the Worker empties the ring every step, so most submits in
// this tight loop are accepted (the full path); the share is printed below.
const engine = await RealtimeEngine.start({ models: dir, library, policy: "latest", slots: 1024 });
const into = engine.createBuffers();
const reference = await EmotionPipeline.load(dir);
let n = 0;

summary(() => {
  bench("submit + latest", () => {
    engine.submit(features[n++ & 7]);
    do_not_optimize(engine.latest(into));
  });
  bench("latest", () => do_not_optimize(engine.latest(into)));
  bench("pipeline.step on this thread (no engine)", () => {
    do_not_optimize(reference.step(features[n++ & 7]));
  });
});

const before = engine.stats();
await run();
const after = engine.stats();
const calls = after.submitted + after.rejected - before.submitted - before.rejected;
const acceptedShare = (after.submitted - before.submitted) / Math.max(1, calls);
await engine.stop();
reference.dispose();

// The round trip, on a fresh engine so the Worker's histograms hold only these trials.
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const paced = await RealtimeEngine.start({ models: dir, library, policy: "latest" });
const out = paced.createBuffers();
const roundTrip = new LatencyHistogram();
for (let seq = 0; seq < trials; seq++) {
  await sleep(1);
  const start = performance.now();
  if (!paced.submit(features[seq & 7])) throw new Error(`bench/rt.bench.ts: submit ${seq} refused`);
  while (paced.latest(out) < seq);
  roundTrip.record((performance.now() - start) * 1000);
}
const stats = paced.stats();
await paced.stop();

const row = (what: string, s: LatencySummary) => [
  what,
  s.p50Us.toFixed(1),
  s.p99Us.toFixed(1),
  s.maxUs.toFixed(1),
  String(s.count),
];
console.log(
  `\n${runtimeName}, library ${library}, ${trials} paced round trips; submits accepted in the ` +
    `tight loop: ${(acceptedShare * 100).toFixed(0)}%`,
);
printTable(["latency (us)", "p50", "p99", "max", "count"], [
  row("round trip: submit -> latest sees it (caller clock)", roundTrip.summary()),
  row("submit -> published (Worker clock)", stats.latencyUs.endToEnd),
  row("pipeline step in the Worker", stats.latencyUs.pipeline),
  ...Object.entries(stats.latencyUs.models).map(([name, s]) => row(`  ${name}`, s)),
]);
