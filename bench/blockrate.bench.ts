/**
 * The five-model step at audio block rate beside the hot figure, for f32, bf16 and int8
 * (issue 16): what a user running the engine at 128 samples / 48 kHz actually gets.
 *
 *   CADENZA_LIB=fast bun bench/blockrate.bench.ts
 *   CADENZA_LIB=fast deno run -A bench/blockrate.bench.ts
 *
 * For each precision:
 * - hot: EmotionPipeline.step (the native graph, timed per node) in a tight loop on this
 *   thread, after a warm-up: the figure the other benchmark tables show; beside it the same
 *   on this thread sleeping one block period between steps (no Worker: what sleeping alone
 *   costs), and without sleeping but with 32 MB written between steps (what cold caches
 *   alone cost);
 * - block rate: a RealtimeEngine fed one input per block period, this thread sleeping between
 *   blocks as an audio callback does, once per wake mode ("cadence": the Worker wakes itself
 *   just before each block; "notify": submit() wakes it). The Worker's own histograms give the
 *   step, the end-to-end submit -> publish time and each model's time; this thread times
 *   submit + latest around each call; process CPU time over the blocks gives the cost.
 * Beside them, the same paced loop without an engine times an empty region: the clock jitter
 * and preemption any caller sees here.
 *
 * Environment: CADENZA_MODELS (models/), CADENZA_BLOCKS (blocks per run, default 1500 = 4 s),
 * CADENZA_BLOCK_MS (default 128/48 = 2.667), CADENZA_PRECISIONS (default f32,bf16,int8),
 * CADENZA_WAKE (default notify,cadence,cadence+prefetch), CADENZA_JSON=1 for one JSON line at
 * the end.
 */
import process from "node:process";
import { defaultModelsDir, EMOTION_MODELS, EmotionPipeline } from "../src/pipeline/emotion.ts";
import type { Precision } from "../src/model/model.ts";
import { RealtimeEngine, type RealtimeStats, type WakeMode } from "../src/rt/engine.ts";
import { benchLibrary, printTable, runtimeName } from "./lib.ts";

const dir = process.env.CADENZA_MODELS ?? defaultModelsDir();
const library = benchLibrary();
const blocks = Number(process.env.CADENZA_BLOCKS ?? 1500);
const blockMs = Number(process.env.CADENZA_BLOCK_MS ?? 128 / 48);
const precisions = (process.env.CADENZA_PRECISIONS ?? "f32,bf16,int8").split(",") as Precision[];
/** "notify", "cadence" (no prefetch) or "cadence+prefetch" (RealtimeOptions wake, prefetch). */
const wakes = (process.env.CADENZA_WAKE ?? "notify,cadence,cadence+prefetch").split(",");
const WARM_BLOCKS = 200;
const HOT_STEPS = 3000;

const features: Float32Array[] = [];
for (let k = 0; k < 16; k++) {
  features.push(Float32Array.from({ length: 128 }, (_, i) => Math.sin(0.37 * i + k)));
}

/** Percentiles of the first `n` samples (sorted in place). */
function percentiles(samples: Float64Array, n: number) {
  const sorted = samples.subarray(0, n).sort();
  const at = (q: number) => sorted[Math.min(n - 1, Math.floor(q * n))];
  return { p50: at(0.5), p99: at(0.99), p999: at(0.999), max: sorted[n - 1] };
}

const pace = new Int32Array(new SharedArrayBuffer(4));

/**
 * Calls `body` once per block period for `count` blocks, sleeping in between (Atomics.wait on
 * a private word, as an audio thread waits for its device); returns the process CPU time used
 * in microseconds.
 */
function paced(count: number, body: (block: number) => void): number {
  const cpu = process.cpuUsage();
  let deadline = performance.now() + blockMs;
  for (let b = 0; b < count; b++) {
    const wait = deadline - performance.now();
    if (wait > 0) Atomics.wait(pace, 0, 0, wait);
    body(b);
    deadline += blockMs;
    // Overran by more than a block (a descheduled process): start the cadence again.
    if (performance.now() > deadline + blockMs) deadline = performance.now() + blockMs;
  }
  const used = process.cpuUsage(cpu);
  return used.user + used.system;
}

interface Row {
  precision: Precision;
  hot: { stepP50Us: number; stepP99Us: number; modelsP50Us: Record<string, number> };
  /** This thread, one step per block period, sleeping in between (no Worker, no engine). */
  slept: { stepP50Us: number; modelsP50Us: Record<string, number> };
  /** This thread, no sleep, but 32 MB written between steps (the caches evicted). */
  evicted: { stepP50Us: number; modelsP50Us: Record<string, number> };
  block: Record<string, {
    stepP50Us: number;
    stepP99Us: number;
    endToEndP50Us: number;
    endToEndP99Us: number;
    modelsP50Us: Record<string, number>;
    caller: { p50: number; p99: number; p999: number; max: number };
    /** submit() alone; the rest of `caller` is latest(). */
    submitP50Us: number;
    notifies: number;
    wokenEarly: number;
    pollMsPerBlock: number;
    cpuPercent: number;
    blockMs: number;
  }>;
}

const evictor = new Float64Array(4 << 20);

/**
 * `count` steps on this thread, each timed with its nodes; `between` runs before each step
 * (untimed).
 */
function timedSteps(pipeline: EmotionPipeline, count: number, between: () => void) {
  for (let i = 0; i < 200; i++) pipeline.step(features[i & 15]);
  const steps = new Float64Array(count);
  const nodes = pipeline.pipeline.order.map(() => new Float64Array(count));
  for (let i = 0; i < count; i++) {
    between();
    const start = performance.now();
    pipeline.step(features[i & 15]);
    steps[i] = (performance.now() - start) * 1000;
    const ns = pipeline.pipeline.nodeNs;
    for (let k = 0; k < nodes.length; k++) nodes[k][i] = ns[k] / 1000;
  }
  const modelsP50Us: Record<string, number> = {};
  for (const info of EMOTION_MODELS) {
    const k = pipeline.pipeline.order.indexOf(info.node);
    modelsP50Us[info.name] = percentiles(nodes[k], count).p50;
  }
  const p = percentiles(steps, count);
  return { stepP50Us: p.p50, stepP99Us: p.p99, modelsP50Us };
}

function onThisThread(pipeline: EmotionPipeline): Pick<Row, "hot" | "slept" | "evicted"> {
  const hot = timedSteps(pipeline, HOT_STEPS, () => {});
  const slept = timedSteps(pipeline, 600, () => Atomics.wait(pace, 0, 0, blockMs));
  let fill = 0;
  const evicted = timedSteps(pipeline, 300, () => evictor.fill(fill++));
  return { hot, slept, evicted };
}

async function blockRate(precision: Precision, mode: string): Promise<Row["block"][string]> {
  const wake = mode.split("+")[0] as WakeMode;
  const prefetch = mode.endsWith("+prefetch");
  const engine = await RealtimeEngine.start({ models: dir, library, precision, wake, prefetch });
  const into = engine.createBuffers();
  try {
    paced(WARM_BLOCKS, (b) => {
      engine.submit(features[b & 15]);
      engine.latest(into);
    });
    const before = engine.stats();
    const caller = new Float64Array(blocks);
    const submitUs = new Float64Array(blocks);
    const cpuUs = paced(blocks, (b) => {
      const start = performance.now();
      engine.submit(features[b & 15]);
      const submitted = performance.now();
      engine.latest(into);
      caller[b] = (performance.now() - start) * 1000;
      submitUs[b] = (submitted - start) * 1000;
    });
    const s: RealtimeStats = engine.stats();
    const modelsP50Us: Record<string, number> = {};
    for (const [name, m] of Object.entries(s.latencyUs.models)) modelsP50Us[name] = m.p50Us;
    return {
      stepP50Us: s.latencyUs.pipeline.p50Us,
      stepP99Us: s.latencyUs.pipeline.p99Us,
      endToEndP50Us: s.latencyUs.endToEnd.p50Us,
      endToEndP99Us: s.latencyUs.endToEnd.p99Us,
      modelsP50Us,
      caller: percentiles(caller, blocks),
      submitP50Us: percentiles(submitUs, blocks).p50,
      notifies: s.notifies - before.notifies,
      wokenEarly: s.wokenEarly - before.wokenEarly,
      pollMsPerBlock: (s.pollMs - before.pollMs) / blocks,
      cpuPercent: (cpuUs / 1000) / (blocks * blockMs) * 100,
      blockMs: s.blockMs,
    };
  } finally {
    await engine.stop();
  }
}

// The engine-less loop: the same pacing, an empty timed region.
const empty = new Float64Array(blocks);
const baselineCpuUs = paced(blocks, (b) => {
  const start = performance.now();
  empty[b] = (performance.now() - start) * 1000;
});
const jitter = percentiles(empty, blocks);

const rows: Row[] = [];
for (const precision of precisions) {
  const pipeline = await EmotionPipeline.load(dir, { library, precision }, { timed: true });
  const row: Row = { precision, ...onThisThread(pipeline), block: {} };
  pipeline.dispose();
  for (const wake of wakes) row.block[wake] = await blockRate(precision, wake);
  rows.push(row);
}

const us = (v: number) => v.toFixed(1);
console.log(
  `\n${runtimeName}, library ${library}, ${blocks} blocks of ${blockMs.toFixed(3)} ms ` +
    `(after ${WARM_BLOCKS} warm-up blocks, which the Worker's histograms include); hot: ` +
    `${HOT_STEPS} steps on this thread`,
);
printTable(
  ["precision", "wake", "hot p50", "block p50", "ratio", "block p99", "e2e p50", "e2e p99"],
  rows.flatMap((r) =>
    Object.entries(r.block).map(([wake, b]) => [
      r.precision,
      wake,
      us(r.hot.stepP50Us),
      us(b.stepP50Us),
      (b.stepP50Us / r.hot.stepP50Us).toFixed(2) + "x",
      us(b.stepP99Us),
      us(b.endToEndP50Us),
      us(b.endToEndP99Us),
    ])
  ),
);
console.log(
  "\nPer model, p50 us: on this thread hot, sleeping a block period between steps, with the " +
    "caches evicted between steps; then in the engine at block rate (each wake mode)",
);
const stepRow = (r: Row) => [
  r.precision,
  "(whole step)",
  us(r.hot.stepP50Us),
  us(r.slept.stepP50Us),
  us(r.evicted.stepP50Us),
  ...wakes.map((w) => us(r.block[w].stepP50Us)),
];
printTable(
  ["precision", "model", "hot", "slept", "evicted", ...wakes],
  rows.flatMap((r) => [
    stepRow(r),
    ...EMOTION_MODELS.map((info) => [
      r.precision,
      info.name,
      us(r.hot.modelsP50Us[info.name]),
      us(r.slept.modelsP50Us[info.name]),
      us(r.evicted.modelsP50Us[info.name]),
      ...wakes.map((w) => us(r.block[w].modelsP50Us[info.name])),
    ]),
  ]),
);
console.log(
  "\nCaller side (submit + latest, us) and cost; process CPU includes this thread's loop " +
    `(engine-less loop: ${(baselineCpuUs / 1000 / (blocks * blockMs) * 100).toFixed(1)}% CPU)`,
);
printTable(
  [
    "precision",
    "wake",
    "p50",
    "submit p50",
    "p99",
    "p99.9",
    "max",
    "notifies",
    "awake",
    "poll/blk ms",
    "CPU %",
  ],
  [
    [
      "(no engine)",
      "-",
      us(jitter.p50),
      "-",
      us(jitter.p99),
      us(jitter.p999),
      us(jitter.max),
      "-",
      "-",
      "-",
      "-",
    ],
    ...rows.flatMap((r) =>
      Object.entries(r.block).map(([wake, b]) => [
        r.precision,
        wake,
        us(b.caller.p50),
        us(b.submitP50Us),
        us(b.caller.p99),
        us(b.caller.p999),
        us(b.caller.max),
        String(b.notifies),
        String(b.wokenEarly),
        b.pollMsPerBlock.toFixed(3),
        b.cpuPercent.toFixed(1),
      ])
    ),
  ],
);
if (process.env.CADENZA_JSON) {
  console.log(JSON.stringify({ runtime: runtimeName, library, blocks, blockMs, jitter, rows }));
}
