/**
 * Training throughput: one optimizer step (forward, loss, backward, AdamW) of each of the five
 * pipeline models' shapes (bench/train_shapes.ts) in cadenza's native trainer, as examples
 * (sequences) per second, beside the same step in JAX on the CPU (bench/train-jax.py, jit-
 * compiled) and TensorFlow.js (bench/train-tfjs.ts, wasm backend), in one run.
 *
 *   CADENZA_LIB=fast nice bun bench/train.bench.ts                 (cadenza alone, mitata)
 *   CADENZA_LIB=fast nice bun bench/train.bench.ts --peers [--seconds 3] [--rounds 3] [--json out.json]
 *
 * --peers needs `python3 -m pip install jax`; without it the JAX column says so.
 */

import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { bench, do_not_optimize, run, summary } from "mitata";
import { initSpec } from "../src/train/params.ts";
import { TrainRng } from "../src/train/rng.ts";
import { Trainer } from "../src/train/trainer.ts";
import { table } from "./lib.ts";
import { type PeerResult, tfjsTrainBench, useBackend } from "./train-tfjs.ts";
import { TRAIN_SHAPES, type TrainShape } from "./train_shapes.ts";

interface Setup {
  trainer: Trainer;
  inputs: Float32Array;
  targets: Float32Array | Int32Array;
}

async function setup(shape: TrainShape): Promise<Setup> {
  const spec = initSpec(
    { inputSize: shape.inputSize, layers: shape.layers.map((l) => ({ ...l })) },
    1,
  );
  const trainer = await Trainer.create(spec, {
    batch: shape.batch,
    seqLen: shape.seqLen,
    loss: shape.loss,
    lr: 1e-3,
    weightDecay: 0.01,
    library: "fast",
  });
  const rng = new TrainRng(2);
  const positions = shape.batch * shape.seqLen;
  const inputs = Float32Array.from(
    { length: positions * shape.inputSize },
    () => rng.float() * 2 - 1,
  );
  const targets = shape.loss === "xent"
    ? Int32Array.from({ length: positions }, () => rng.below(shape.outputSize))
    : Float32Array.from({ length: positions * shape.outputSize }, () => rng.float());
  return { trainer, inputs, targets };
}

/** Median seconds per step over about `seconds` of steps after a warm-up. */
function timeSteps(s: Setup, seconds: number): { median: number; steps: number } {
  for (let i = 0; i < 3; i++) s.trainer.step(s.inputs, s.targets);
  const times: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end || times.length < 5) {
    const start = performance.now();
    do_not_optimize(s.trainer.step(s.inputs, s.targets));
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)] / 1000, steps: times.length };
}

/** JAX's results, or why there are none; `oneThread` pins XLA to one thread like cadenza. */
function jaxResults(seconds: number, oneThread: boolean): PeerResult[] | string {
  const script = fileURLToPath(new URL("./train-jax.py", import.meta.url));
  const env = { ...process.env };
  if (oneThread) {
    env.XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1";
  }
  const result = spawnSync("python3", [script, "--seconds", String(seconds)], {
    input: JSON.stringify(TRAIN_SHAPES),
    encoding: "utf-8",
    env,
  });
  if (result.status !== 0) {
    return `JAX not measured: ${(result.stderr || String(result.error)).trim().split("\n").pop()}`;
  }
  return JSON.parse(result.stdout.trim().split("\n").pop()!).results;
}

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};

const setups = new Map<string, Setup>();
for (const shape of TRAIN_SHAPES) setups.set(shape.name, await setup(shape));

if (!argv.includes("--peers")) {
  summary(() => {
    for (const shape of TRAIN_SHAPES) {
      const s = setups.get(shape.name)!;
      bench(`train step ${shape.name} (batch ${shape.batch} x ${shape.seqLen})`, () => {
        do_not_optimize(s.trainer.step(s.inputs, s.targets));
      });
    }
  });
  await run();
} else {
  const seconds = Number(flag("seconds", "3"));
  const rounds = Number(flag("rounds", "1"));
  // Each round measures every implementation once, in turn, so load from other tenants
  // falls on all of them alike; the table gives each cell's median over the rounds.
  type Row = Record<"cadenza" | "jax" | "jax1" | "tfjs", (number | undefined)[]>;
  const cells = new Map<string, Row>(
    TRAIN_SHAPES.map((s) => [s.name, { cadenza: [], jax: [], jax1: [], tfjs: [] }]),
  );
  const notes = new Set<string>();
  const rate = (r: PeerResult[] | string, name: string) => {
    if (typeof r === "string") notes.add(r);
    return typeof r === "string" ? undefined : r.find((x) => x.model === name)?.examples_per_s;
  };
  await useBackend("wasm");
  for (let round = 0; round < rounds; round++) {
    for (const shape of TRAIN_SHAPES) {
      const { median } = timeSteps(setups.get(shape.name)!, seconds);
      cells.get(shape.name)!.cadenza.push(shape.batch / median);
    }
    const jax = jaxResults(seconds, false);
    const jax1 = jaxResults(seconds, true);
    for (const shape of TRAIN_SHAPES) {
      const row = cells.get(shape.name)!;
      row.jax.push(rate(jax, shape.name));
      row.jax1.push(rate(jax1, shape.name));
      row.tfjs.push(tfjsTrainBench(shape, seconds).examples_per_s);
    }
  }
  const median = (values: (number | undefined)[]) => {
    const v = values.filter((x): x is number => x !== undefined).sort((a, b) => a - b);
    return v.length === 0 ? undefined : v[Math.floor(v.length / 2)];
  };
  const fmt = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(0));
  const summary = TRAIN_SHAPES.map((shape) => {
    const row = cells.get(shape.name)!;
    return {
      model: shape.name,
      batch: shape.batch,
      seqLen: shape.seqLen,
      cadenza: median(row.cadenza)!,
      jax: median(row.jax),
      jaxOneThread: median(row.jax1),
      tfjsWasm: median(row.tfjs)!,
      rounds: row,
    };
  });
  const rows = summary.map((r) => {
    const bestJax = Math.max(r.jax ?? 0, r.jaxOneThread ?? 0);
    return [
      r.model,
      `${r.batch} x ${r.seqLen}`,
      fmt(r.cadenza),
      fmt(r.jax),
      fmt(r.jaxOneThread),
      bestJax > 0 ? `${(r.cadenza / bestJax).toFixed(2)}x` : "-",
      fmt(r.tfjsWasm),
      `${(r.cadenza / r.tfjsWasm).toFixed(1)}x`,
    ];
  });
  console.log(
    table(
      [
        "model",
        "batch x steps",
        "cadenza ex/s",
        "JAX ex/s",
        "JAX 1 thread",
        "vs best JAX",
        "TF.js wasm ex/s",
        "vs TF.js",
      ],
      rows,
    ).join("\n"),
  );
  console.log(`medians of ${rounds} round(s) of about ${seconds} s per cell`);
  for (const note of notes) console.log(note);
  const json = flag("json", "");
  if (json !== "") writeFileSync(json, JSON.stringify(summary, null, 1));
}
for (const s of setups.values()) s.trainer.dispose();
