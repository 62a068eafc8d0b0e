/**
 * Training throughput: one optimizer step (forward, loss, backward, AdamW) of each of the five
 * pipeline models' shapes (bench/train_shapes.ts) in cadenza's native trainer, as examples
 * (sequences) per second, beside the same step in JAX on the CPU (bench/train-jax.py, jit-
 * compiled) and TensorFlow.js (bench/train-tfjs.ts, wasm backend), in one run.
 *
 *   CADENZA_LIB=fast nice bun bench/train.bench.ts                 (cadenza alone, mitata)
 *   CADENZA_LIB=fast nice bun bench/train.bench.ts --peers [--seconds 3] [--json out.json]
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

function jaxResults(seconds: number): PeerResult[] | string {
  const script = fileURLToPath(new URL("./train-jax.py", import.meta.url));
  const result = spawnSync("python3", [script, "--seconds", String(seconds)], {
    input: JSON.stringify(TRAIN_SHAPES),
    encoding: "utf-8",
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
  const ours = TRAIN_SHAPES.map((shape) => ({
    shape,
    ...timeSteps(setups.get(shape.name)!, seconds),
  }));
  const jax = jaxResults(seconds);
  await useBackend("wasm");
  const tfjs = TRAIN_SHAPES.map((shape) => tfjsTrainBench(shape, seconds));
  const rows = ours.map(({ shape, median }, i) => {
    const cz = shape.batch / median;
    const j = typeof jax === "string" ? undefined : jax.find((r) => r.model === shape.name);
    return [
      shape.name,
      `${shape.batch} x ${shape.seqLen}`,
      cz.toFixed(0),
      j === undefined ? "-" : j.examples_per_s.toFixed(0),
      j === undefined ? "-" : `${(cz / j.examples_per_s).toFixed(2)}x`,
      tfjs[i].examples_per_s.toFixed(0),
      `${(cz / tfjs[i].examples_per_s).toFixed(1)}x`,
    ];
  });
  console.log(
    table(
      [
        "model",
        "batch x steps",
        "cadenza ex/s",
        "JAX ex/s",
        "vs JAX",
        "TF.js wasm ex/s",
        "vs TF.js",
      ],
      rows,
    ).join("\n"),
  );
  if (typeof jax === "string") console.log(jax);
  const json = flag("json", "");
  if (json !== "") {
    writeFileSync(
      json,
      JSON.stringify(
        {
          cadenza: ours.map(({ shape, median, steps }) => ({
            model: shape.name,
            batch: shape.batch,
            seqLen: shape.seqLen,
            step_ms: median * 1000,
            examples_per_s: shape.batch / median,
            steps,
          })),
          jax,
          tfjs,
        },
        null,
        1,
      ),
    );
  }
}
for (const s of setups.values()) s.trainer.dispose();
