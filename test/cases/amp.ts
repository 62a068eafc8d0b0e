/**
 * The guitar-amp model JSON (NeuralPi, Proteus, AIDA-X, Automated-GuitarAmpModelling): the
 * tests write such files themselves (PyTorch-initialised LSTM and GRU weights, hidden 8..64,
 * one or two inputs, skip 0 or 1), load them with loadModel(path) and run 2,048 samples through
 * `process` and `forward`, against a float64 reference of PyTorch's equations written here from
 * the PyTorch documentation (independent of src/). Shared by test/amp.test.ts and
 * test/deno/amp.test.ts.
 *
 * Bound 1e-5 absolute (outputs here are within about +-2): float32 weights and products with
 * vectorised sigmoid/tanh (about 1e-7 absolute each) through a contracting recurrence; the
 * worst measured is printed by the Bun suite.
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, loadSpec, toRtneural } from "../../src/index.ts";
import { Rng } from "../helpers.ts";
import { type Case, check, rejectsCadenza } from "./check.ts";

export const AMP_BOUND = 1e-5;
export const AMP_SAMPLES = 2048;
export const worstByAmpCase = new Map<string, number>();

interface AmpShape {
  unit: "LSTM" | "GRU";
  hidden: number;
  inputs: number;
  skip: 0 | 1;
}

const SHAPES: AmpShape[] = [
  { unit: "LSTM", hidden: 8, inputs: 1, skip: 1 },
  { unit: "LSTM", hidden: 40, inputs: 2, skip: 1 },
  { unit: "LSTM", hidden: 64, inputs: 1, skip: 0 },
  { unit: "GRU", hidden: 8, inputs: 2, skip: 0 },
  { unit: "GRU", hidden: 24, inputs: 1, skip: 1 },
  { unit: "GRU", hidden: 64, inputs: 2, skip: 1 },
];

type Matrix = number[][];

/** PyTorch's default init: uniform in +-1/sqrt(hidden), as float32 values. */
function matrix(rng: Rng, rows: number, cols: number, bound: number): Matrix {
  return Array.from({ length: rows }, () => Array.from(rng.floats(cols, -bound, bound)));
}

/** The file's JSON, as the trainers write it (state_dict values as nested lists). */
export function ampJson(shape: AmpShape, seed: number): Record<string, unknown> {
  const rng = new Rng(seed);
  const gates = shape.unit === "LSTM" ? 4 : 3;
  const h = shape.hidden;
  const k = 1 / Math.sqrt(h);
  return {
    model_data: {
      model: "SimpleRNN",
      input_size: shape.inputs,
      skip: shape.skip,
      output_size: 1,
      unit_type: shape.unit,
      num_layers: 1,
      hidden_size: h,
      bias_fl: true,
    },
    state_dict: {
      "rec.weight_ih_l0": matrix(rng, gates * h, shape.inputs, k),
      "rec.weight_hh_l0": matrix(rng, gates * h, h, k),
      "rec.bias_ih_l0": matrix(rng, 1, gates * h, k)[0],
      "rec.bias_hh_l0": matrix(rng, 1, gates * h, k)[0],
      "lin.weight": matrix(rng, 1, h, k),
      "lin.bias": matrix(rng, 1, 1, k)[0],
    },
  };
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

function dot(row: number[], x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < row.length; i++) s += row[i] * x[i];
  return s;
}

/**
 * PyTorch's nn.LSTM / nn.GRU step (torch docs), then nn.Linear, then `+ x[:, :, 0:skip]`, in
 * float64. LSTM gates i,f,g,o; GRU gates r,z,n with n = tanh(W_in x + b_in + r (W_hn h + b_hn)).
 */
export class AmpReference {
  readonly #d: Record<string, Matrix | number[]>;
  readonly #shape: AmpShape;
  #h: Float64Array;
  #c: Float64Array;

  constructor(json: Record<string, unknown>, shape: AmpShape) {
    this.#d = json.state_dict as Record<string, Matrix | number[]>;
    this.#shape = shape;
    this.#h = new Float64Array(shape.hidden);
    this.#c = new Float64Array(shape.hidden);
  }

  step(x: ArrayLike<number>): number {
    const h = this.#shape.hidden;
    const wi = this.#d["rec.weight_ih_l0"] as Matrix;
    const wh = this.#d["rec.weight_hh_l0"] as Matrix;
    const bi = this.#d["rec.bias_ih_l0"] as number[];
    const bh = this.#d["rec.bias_hh_l0"] as number[];
    const gi = (r: number) => dot(wi[r], x) + bi[r];
    const gh = (r: number) => dot(wh[r], this.#h) + bh[r];
    const next = new Float64Array(h);
    if (this.#shape.unit === "LSTM") {
      for (let j = 0; j < h; j++) {
        const i = sigmoid(gi(j) + gh(j));
        const f = sigmoid(gi(h + j) + gh(h + j));
        const g = Math.tanh(gi(2 * h + j) + gh(2 * h + j));
        const o = sigmoid(gi(3 * h + j) + gh(3 * h + j));
        this.#c[j] = f * this.#c[j] + i * g;
        next[j] = o * Math.tanh(this.#c[j]);
      }
    } else {
      for (let j = 0; j < h; j++) {
        const r = sigmoid(gi(j) + gh(j));
        const z = sigmoid(gi(h + j) + gh(h + j));
        const n = Math.tanh(gi(2 * h + j) + r * gh(2 * h + j));
        next[j] = (1 - z) * n + z * this.#h[j];
      }
    }
    this.#h = next;
    const lin = this.#d["lin.weight"] as Matrix;
    const y = dot(lin[0], this.#h) + (this.#d["lin.bias"] as number[])[0];
    return this.#shape.skip ? y + x[0] : y;
  }
}

/** A guitar-like test signal (decaying partials plus noise) and a slow knob, row-major. */
export function ampInput(inputs: number, samples: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const x = new Float32Array(samples * inputs);
  for (let n = 0; n < samples; n++) {
    const t = n / 48_000;
    const env = Math.exp(-3 * t);
    x[n * inputs] = env * (0.6 * Math.sin(2 * Math.PI * 110 * t) +
          0.3 * Math.sin(2 * Math.PI * 220 * t + 0.4)) + rng.uniform(-0.05, 0.05);
    if (inputs === 2) x[n * inputs + 1] = 0.5 + 0.4 * Math.sin(2 * Math.PI * 3 * t);
  }
  return x;
}

function name(shape: AmpShape): string {
  return `${shape.unit} hidden ${shape.hidden}, ${shape.inputs} input(s), skip ${shape.skip}`;
}

function shapeCase(shape: AmpShape, index: number): Case {
  return {
    name: `amp json: ${name(shape)}: loadModel(path) matches the float64 reference over ` +
      `${AMP_SAMPLES} samples`,
    run: async () => {
      const dir = mkdtempSync(join(tmpdir(), "cadenza-amp-"));
      try {
        const json = ampJson(shape, 0xa3 + index);
        const path = join(dir, "amp.json");
        writeFileSync(path, JSON.stringify(json));
        const model = await loadModel(path);
        try {
          check(
            model.inputSize === shape.inputs && model.outputSize === 1,
            () => `sizes ${model.inputSize} -> ${model.outputSize}`,
          );
          const kinds = model.layers.map((l) => l.kind).join(",");
          const want_kinds = `${shape.unit.toLowerCase()},dense${shape.skip ? ",skip" : ""}`;
          check(kinds === want_kinds, () => `layers ${kinds}, expected ${want_kinds}`);
          const x = ampInput(shape.inputs, AMP_SAMPLES, index);
          const ref = new AmpReference(json, shape);
          const got = model.process(x, AMP_SAMPLES).slice();
          model.reset();
          let worst = 0;
          for (let n = 0; n < AMP_SAMPLES; n++) {
            const row = x.subarray(n * shape.inputs, (n + 1) * shape.inputs);
            const want = ref.step(row);
            const stepped = model.forward(row)[0];
            check(
              Object.is(stepped, got[n]),
              () => `sample ${n}: forward ${stepped} != process ${got[n]}`,
            );
            const err = Math.abs(got[n] - want);
            worst = Math.max(worst, err);
            check(
              err <= AMP_BOUND,
              () => `${name(shape)} sample ${n}: got ${got[n]}, reference ${want}, error ${err}`,
            );
          }
          worstByAmpCase.set(name(shape), worst);
        } finally {
          model.dispose();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

function errorCase(): Case {
  return {
    name: "amp json: an unknown unit, a skip that does not fit and a size mismatch are named",
    run: async () => {
      const shape: AmpShape = { unit: "LSTM", hidden: 8, inputs: 1, skip: 1 };
      const bytes = (edit: (json: Record<string, Record<string, unknown>>) => void) => {
        const json = ampJson(shape, 1) as Record<string, Record<string, unknown>>;
        edit(json);
        return new TextEncoder().encode(JSON.stringify(json));
      };
      await rejectsCadenza(
        () => loadSpec(bytes((j) => j.model_data.unit_type = "RNN")),
        "E_FORMAT",
        /model_data\.unit_type: expected "LSTM" or "GRU", got "RNN"/,
        "an Elman RNN",
      );
      await rejectsCadenza(
        () => loadSpec(bytes((j) => j.model_data.hidden_size = 9)),
        "E_SHAPE",
        /model_data\.hidden_size: the state_dict's tensors give 8, but it says 9/,
        "a hidden size that disagrees",
      );
      await rejectsCadenza(
        () => loadSpec(bytes((j) => j.model_data.skip = 2)),
        "E_FORMAT",
        /model_data\.skip: expected 0 or output_size \(1/,
        "a skip wider than the output",
      );
      await rejectsCadenza(
        () => loadSpec(bytes((j) => delete j.state_dict["lin.weight"])),
        "E_FORMAT",
        /lin\.weight/,
        "a missing head",
      );
      const { format } = await loadSpec(bytes(() => {}));
      check(format === "amp", () => `detected ${format}`);
    },
  };
}

/**
 * AIDA-X reads RTNeural JSON with `in_skip` and `out_gain` (dB): `out = in + net(in) * gain`.
 * An amp JSON converted with toRtneural keeps its outputs bit for bit; a gain of -6 dB and the
 * skip are checked against the same reference scaled by hand.
 */
function aidaCase(): Case {
  return {
    name: "amp json: to RTNeural JSON with in_skip (AIDA-X) and back, and out_gain",
    run: async () => {
      const shape: AmpShape = { unit: "LSTM", hidden: 16, inputs: 1, skip: 1 };
      const json = ampJson(shape, 0x1da);
      const bytes = new TextEncoder().encode(JSON.stringify(json));
      const amp = await loadModel(bytes);
      const rt = toRtneural(amp.spec);
      check(rt.in_skip === 1, () => `in_skip ${rt.in_skip}`);
      const aida = await loadModel(new TextEncoder().encode(JSON.stringify(rt)));
      const gained = await loadModel(
        new TextEncoder().encode(JSON.stringify({ ...rt, out_gain: -6 })),
      );
      try {
        const x = ampInput(1, 512, 3);
        const want = amp.process(x, 512).slice();
        const got = aida.process(x, 512);
        for (let n = 0; n < 512; n++) {
          check(Object.is(got[n], want[n]), () => `sample ${n}: ${got[n]} != ${want[n]}`);
        }
        const gain = Math.fround(Math.pow(10, Math.fround(-6 * 0.05)));
        const unskipped = new AmpReference(json, { ...shape, skip: 0 });
        const scaled = gained.process(x, 512);
        for (let n = 0; n < 512; n++) {
          const expect = x[n] + unskipped.step([x[n]]) * gain;
          check(
            Math.abs(scaled[n] - expect) <= AMP_BOUND,
            () => `out_gain sample ${n}: ${scaled[n]}, expected ${expect}`,
          );
        }
      } finally {
        amp.dispose();
        aida.dispose();
        gained.dispose();
      }
    },
  };
}

export function ampCases(): Case[] {
  return [...SHAPES.map(shapeCase), errorCase(), aidaCase()];
}
