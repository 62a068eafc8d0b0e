/**
 * The native activations (vectorised approximations) against float64 Math over a dense sweep
 * of the float32 range, through an activation-layer model: a uniform grid over [-32, 32] plus
 * every 4099th float32 bit pattern (every exponent, both signs, subnormals to 3.4e38).
 * Error: |got - exact| / max(1, |exact|), i.e. absolute for bounded outputs and relative where
 * the output grows like x. The measured maxima are recorded in docs/TESTING.md.
 */

import { afterAll, expect, test } from "bun:test";
import { modelFromSpec } from "../src/index.ts";
import type { Activation } from "../src/model/spec.ts";
import { Rng } from "./helpers.ts";
import { applyActivation, scalarActivation } from "./reference.ts";

/** Bound per activation; linear and relu must be exact. */
const BOUNDS: Record<Exclude<Activation, "softmax" | "logsoftmax">, number> = {
  linear: 0,
  relu: 0,
  tanh: 2e-6,
  sigmoid: 2e-6,
  elu: 2e-6,
  gelu: 2e-6,
};

const SOFTMAX_BOUND = 2e-6;
const WIDTH = 1024;
const measured = new Map<string, { worst: number; at: number }>();

/** The sweep, as float32 values in chunks of WIDTH (the last chunk padded with zeros). */
function* sweep(): Generator<Float32Array> {
  const values: number[] = [];
  for (let x = -32; x <= 32; x += 1 / 4096) values.push(x);
  const bits = new Uint32Array(1);
  const asFloat = new Float32Array(bits.buffer);
  for (let u = 0; u < 2 ** 32; u += 4099) {
    bits[0] = u;
    if (Number.isFinite(asFloat[0])) values.push(asFloat[0]);
  }
  values.push(3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -1e-45, 0, -0);
  for (let i = 0; i < values.length; i += WIDTH) {
    const chunk = new Float32Array(WIDTH);
    chunk.set(values.slice(i, i + WIDTH));
    yield chunk;
  }
}

function errorOf(got: number, exact: number): number {
  const e = Math.abs(got - exact) / Math.max(1, Math.abs(exact));
  return Number.isNaN(e) ? Infinity : e;
}

for (const act of Object.keys(BOUNDS) as (keyof typeof BOUNDS)[]) {
  test(`activation ${act}: max error over the float32 sweep <= ${BOUNDS[act]}`, async () => {
    const layer = {
      kind: "activation" as const,
      inputSize: WIDTH,
      outputSize: WIDTH,
      activation: act,
      tensors: {},
    };
    const model = await modelFromSpec({ inputSize: WIDTH, layers: [layer], maxBatch: 1 });
    let worst = 0;
    let at = 0;
    try {
      for (const chunk of sweep()) {
        const got = model.forward(chunk);
        for (let i = 0; i < WIDTH; i++) {
          const e = errorOf(got[i], scalarActivation(act, chunk[i]));
          if (e > worst) [worst, at] = [e, chunk[i]];
        }
      }
    } finally {
      model.dispose();
    }
    measured.set(act, { worst, at });
    if (worst > BOUNDS[act]) throw new Error(`${act}: max error ${worst} at x = ${at}`);
  }, 120_000);
}

for (const act of ["softmax", "logsoftmax"] as const) {
  test(`activation ${act}: max error over random vectors <= ${SOFTMAX_BOUND}`, async () => {
    const rng = new Rng(0x50f7);
    let worst = 0;
    for (const width of [1, 3, 17, 33, 1024]) {
      const layer = {
        kind: "activation" as const,
        inputSize: width,
        outputSize: width,
        activation: act,
        tensors: {},
      };
      const model = await modelFromSpec({ inputSize: width, layers: [layer], maxBatch: 1 });
      try {
        for (const scale of [0.1, 1, 10, 100, 1000]) {
          for (let trial = 0; trial < 20; trial++) {
            const x = rng.floats(width, -scale, scale);
            const want = applyActivation(act, Float64Array.from(x));
            const got = model.forward(x);
            for (let i = 0; i < width; i++) worst = Math.max(worst, errorOf(got[i], want[i]));
          }
        }
      } finally {
        model.dispose();
      }
    }
    measured.set(act, { worst, at: NaN });
    expect(worst).toBeLessThanOrEqual(SOFTMAX_BOUND);
  });
}

afterAll(() => {
  const lines = [...measured].map(([act, m]) =>
    `  ${act.padEnd(8)} ${m.worst.toExponential(2)} at x = ${m.at}`
  );
  console.log(`activation max error (normalised by max(1, |exact|)):\n${lines.join("\n")}`);
});
