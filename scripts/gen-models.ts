/**
 * Writes seeded random initialisations (<DIR>/<Name>.safetensors) of the
 * five emotion-pipeline architectures in src/pipeline/emotion.ts. They are NOT trained; each
 * file says so in its metadata (untrained: "true"). Same seed, same bytes.
 *
 *   bun scripts/gen-models.ts --out DIR [--seed N] [--check]
 *
 * --check writes nothing: it regenerates in memory and exits 1 if any file in DIR differs.
 */

import { writeSafetensors } from "../src/model/formats/safetensors.ts";
import type { LayerArch, LayerSpec, ModelSpec } from "../src/model/spec.ts";
import { parameterCount, tensorShapes } from "../src/model/spec.ts";
import { exit, readFile, scriptArgs, writeFile } from "../src/native/io.ts";
import { EMOTION_MODELS, type EmotionModelInfo, modelFile } from "../src/pipeline/emotion.ts";

/** The seed of the initialisations (the untrained files models/ held before training). */
export const DEFAULT_SEED = 20240917;
export const GENERATOR = "scripts/gen-models.ts (Glorot-uniform weights, xorshift32 stream)";

/**
 * Marsaglia's xorshift32: tiny, fast and identical on every runtime. Its top 24 bits give a
 * float in [0, 1) exactly representable in float32, so the weights do not depend on rounding.
 */
export class Xorshift32 {
  #state: number;

  constructor(seed: number) {
    // Mixing spreads nearby seeds apart; xorshift never leaves state 0, so avoid it.
    this.#state = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0) || 0x6d2b79f5;
  }

  nextUint32(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state;
  }

  /** Uniform in [-limit, limit). */
  uniform(limit: number): number {
    return ((this.nextUint32() >>> 8) / 16777216 * 2 - 1) * limit;
  }
}

function uniformTensor(rng: Xorshift32, length: number, limit: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = rng.uniform(limit);
  return out;
}

/**
 * One layer's tensors. Matrices Glorot uniform, so tanh and sigmoid layers start unsaturated;
 * biases 0 except the LSTM forget gate at 1 (the usual choice: the cell state is kept rather
 * than wiped at the start); layer-norm gains 1, offsets 0.
 */
function initTensors(rng: Xorshift32, arch: LayerArch): Record<string, Float32Array> {
  const tensors: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(tensorShapes(arch))) {
    const length = shape.reduce((a, b) => a * b, 1);
    if (shape.length === 2) {
      // Glorot/Xavier uniform for y = W x: fan_in = columns, fan_out = rows (per LSTM gate).
      const fan_out = arch.kind === "lstm" ? shape[0] / 4 : shape[0];
      tensors[name] = uniformTensor(rng, length, Math.sqrt(6 / (fan_out + shape[1])));
    } else if (name.endsWith("_g")) {
      tensors[name] = new Float32Array(length).fill(1);
    } else {
      tensors[name] = new Float32Array(length);
    }
  }
  if (arch.kind === "lstm") tensors.b.fill(1, arch.outputSize, 2 * arch.outputSize);
  return tensors;
}

/** The spec of one model, seeded by (seed, model index) so each model has its own stream. */
export function generateSpec(info: EmotionModelInfo, seed: number): ModelSpec {
  const index = EMOTION_MODELS.indexOf(info);
  const rng = new Xorshift32(seed + 7919 * (index + 1));
  const layers: LayerSpec[] = info.layers.map((arch) => ({
    ...arch,
    tensors: initTensors(rng, arch),
  }));
  return {
    inputSize: info.inputSize,
    layers,
    meta: {
      name: info.name,
      untrained: "true",
      description: `UNTRAINED seeded random initialisation: ${info.description}`,
      seed: String(seed),
      generator: GENERATOR,
    },
  };
}

interface Args {
  seed: number;
  out: string;
  check: boolean;
}

function parseArgs(argv: string[]): Args {
  // No default folder: models/ holds the trained models (scripts/train-defaults.ts), which an
  // initialisation must never overwrite.
  const args: Args = { seed: DEFAULT_SEED, out: "", check: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === "--check") args.check = true;
    else if (flag === "--seed" && /^\d+$/.test(argv[i + 1] ?? "")) args.seed = Number(argv[++i]);
    else if (flag === "--out" && argv[i + 1] !== undefined) args.out = argv[++i];
    else {throw new Error(
        `gen-models: unknown or incomplete argument "${flag}"; ` +
          "usage: bun scripts/gen-models.ts --out DIR [--seed N] [--check]",
      );}
  }
  if (args.out === "") {
    throw new Error(
      "gen-models: --out DIR is required (models/ holds the trained models); " +
        "usage: bun scripts/gen-models.ts --out DIR [--seed N] [--check]",
    );
  }
  return args;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function main(): Promise<number> {
  const args = parseArgs(scriptArgs());
  let stale = 0;
  for (const info of EMOTION_MODELS) {
    const spec = generateSpec(info, args.seed);
    const bytes = writeSafetensors(spec);
    const path = modelFile(args.out, info.name);
    const count = parameterCount(spec);
    const line = `${info.name.padEnd(18)} ${String(count).padStart(8)} params ` +
      `${String(count * 4).padStart(9)} bytes  ${path}`;
    if (args.check) {
      const existing = await readFile(path).catch(() => new Uint8Array(0));
      const same = sameBytes(existing, bytes);
      if (!same) stale++;
      console.log(`${same ? "ok   " : "STALE"} ${line}`);
    } else {
      await writeFile(path, bytes);
      console.log(`wrote ${line}`);
    }
  }
  if (stale > 0) console.log(`${stale} file(s) differ from seed ${args.seed}: run without --check`);
  return stale > 0 ? 1 : 0;
}

if (import.meta.main) {
  const code = await main();
  if (code !== 0) exit(code);
}
