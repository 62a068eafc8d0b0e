/**
 * Agreement across implementations of one model or pipeline: every stepper runs the same
 * inputs from a reset state and is compared with the first, before anything is timed
 * (`cadenza bench --peers`, test/onnx-export.test.ts, bench/).
 */

import { CadenzaError } from "../errors.ts";
import type { Precision } from "../model/image.ts";
import { EMOTION_GRAPH, EMOTION_MODELS, type EmotionPipeline } from "../pipeline/emotion.ts";

/** Something that runs a model or pipeline step by step. */
export interface Stepper {
  name: string;
  step(input: Float32Array): Float32Array | Promise<Float32Array>;
  reset(): void;
}

export interface Agreement {
  name: string;
  against: string;
  /** Largest |difference| over every step and output value. */
  worstAbs: number;
  step: number;
  index: number;
}

/** Outputs of the five pipeline models and steps must agree within this (absolute; they are
 * bounded by tanh, sigmoid and softmax, so absolute and relative error are alike). */
export const AGREEMENT_TOLERANCE = 1e-4;

/**
 * At int8 the peer runs the dequantised weights q * scale in f32, but not the per-call
 * quantisation of each matrix-vector input (up to 1/254 of the vector's largest magnitude per
 * element), so outputs differ by that: measured up to 2.6e-2 over this check's 48 pipeline
 * steps and 2.0e-2 over 2000 random steps of each model; the bound leaves about 2x.
 */
export const INT8_AGREEMENT_TOLERANCE = 5e-2;

/** The agreement tolerance for a precision. */
export function agreementTolerance(precision: Precision): number {
  return precision === "int8" ? INT8_AGREEMENT_TOLERANCE : AGREEMENT_TOLERANCE;
}

/**
 * Runs every stepper on the same inputs from a reset state and compares each with the first;
 * throws CadenzaError E_NATIVE naming the worst value when any differs by more than
 * `tolerance`. All steppers are reset again afterwards.
 */
export async function checkAgreement(
  steppers: Stepper[],
  inputs: Float32Array[],
  tolerance = AGREEMENT_TOLERANCE,
): Promise<Agreement[]> {
  const [base, ...others] = steppers;
  const rows = others.map((s) => ({
    name: s.name,
    against: base.name,
    worstAbs: 0,
    step: -1,
    index: -1,
  }));
  for (const s of steppers) s.reset();
  for (let step = 0; step < inputs.length; step++) {
    const want = Float32Array.from(await base.step(inputs[step]));
    for (const [k, other] of others.entries()) {
      compareInto(rows[k], want, await other.step(inputs[step]), step);
    }
  }
  for (const s of steppers) s.reset();
  const bad = rows.find((row) => !(row.worstAbs <= tolerance));
  if (bad) {
    throw new CadenzaError(
      "E_NATIVE",
      `${bad.name} disagrees with ${bad.against}: ` +
        `|difference| ${bad.worstAbs} at step ${bad.step}, value ${bad.index}, over the ` +
        `tolerance ${tolerance}`,
    );
  }
  return rows;
}

function compareInto(row: Agreement, want: Float32Array, got: Float32Array, step: number): void {
  if (got.length !== want.length) {
    throw new CadenzaError(
      "E_SHAPE",
      `${row.name} gave ${got.length} values at step ${step}, ` +
        `${row.against} gave ${want.length}`,
    );
  }
  for (let i = 0; i < want.length; i++) {
    const diff = Math.abs(got[i] - want[i]);
    if (!(diff <= row.worstAbs)) {
      Object.assign(row, { worstAbs: Number.isNaN(diff) ? Infinity : diff, step, index: i });
    }
  }
}

/** A cadenza EmotionPipeline as a Stepper whose output is every node's output, concatenated. */
export function pipelineStepper(name: string, pipeline: EmotionPipeline): Stepper {
  const order = EMOTION_GRAPH.map((n) => n.name);
  const width = EMOTION_MODELS.reduce((n, m) => n + m.outputSize, 0);
  const out = new Float32Array(width);
  return {
    name,
    step(x) {
      const outputs = pipeline.step(x);
      let at = 0;
      for (const key of order) {
        out.set(outputs[key], at);
        at += outputs[key].length;
      }
      return out;
    },
    reset: () => pipeline.reset(),
  };
}
