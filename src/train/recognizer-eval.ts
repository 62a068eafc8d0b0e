/**
 * How well emotion is recognised on held-out pieces: per piece (its windows' predictions
 * averaged), Pearson's correlation of predicted and labelled valence and arousal; and the linear
 * baseline (ridge regression from a window's mean features to valence and arousal).
 *
 * ```ts
 * const base = linearBaseline(train, validation, test, index);  // { lambda, test: { valence, arousal } }
 * ```
 */

import { FEATURE_COUNT } from "../audio/features.ts";
import { CadenzaError } from "../errors.ts";
import type { TrainingData } from "./data.ts";
import type { WindowRecord } from "./recognizer-data.ts";
import { fitRidge, pearson, predictRidge } from "./ridge.ts";

/** Correlations on one split, per piece (and per window, for reference). */
export interface Correlations {
  pieces: number;
  windows: number;
  valence: number;
  arousal: number;
  windowValence: number;
  windowArousal: number;
  /** Share of pieces whose predicted valence has the sign of the label (the mode). */
  modeAccuracy: number;
}

/**
 * Correlations of predictions [windows][2] (valence, arousal) with the records' labels, per
 * piece: each piece's windows (of all its renders) averaged first.
 */
export function correlations(
  records: readonly WindowRecord[],
  predicted: ArrayLike<number>,
): Correlations {
  if (predicted.length !== records.length * 2) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `correlations: ${predicted.length / 2} predictions for ${records.length} windows`,
    );
  }
  const byPiece = new Map<string, { v: number; a: number; pv: number; pa: number; n: number }>();
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const e = byPiece.get(r.piece) ?? { v: 0, a: 0, pv: 0, pa: 0, n: 0 };
    e.v += r.valence;
    e.a += r.arousal;
    e.pv += predicted[2 * i];
    e.pa += predicted[2 * i + 1];
    e.n++;
    byPiece.set(r.piece, e);
  }
  const pieces = [...byPiece.values()];
  const col = (f: (e: typeof pieces[number]) => number) => pieces.map((e) => f(e) / e.n);
  const v = col((e) => e.v);
  const pv = col((e) => e.pv);
  let agree = 0;
  for (let i = 0; i < v.length; i++) if (Math.sign(v[i]) === Math.sign(pv[i])) agree++;
  return {
    pieces: pieces.length,
    windows: records.length,
    valence: pearson(pv, v),
    arousal: pearson(col((e) => e.pa), col((e) => e.a)),
    windowValence: pearson(
      records.map((_, i) => predicted[2 * i]),
      records.map((r) => r.valence),
    ),
    windowArousal: pearson(
      records.map((_, i) => predicted[2 * i + 1]),
      records.map((r) => r.arousal),
    ),
    modeAccuracy: agree / pieces.length,
  };
}

/** Each window's mean features over its steps: [count][128] in float64. */
export function windowMeans(data: TrainingData): Float64Array {
  const { count, steps, inputSize } = data;
  if (inputSize !== FEATURE_COUNT) {
    throw new CadenzaError(
      "E_SHAPE",
      `${data.source}: ${inputSize} features, expected ${FEATURE_COUNT}`,
    );
  }
  const out = new Float64Array(count * inputSize);
  for (let n = 0; n < count; n++) {
    for (let t = 0; t < steps; t++) {
      const at = (n * steps + t) * inputSize;
      for (let j = 0; j < inputSize; j++) out[n * inputSize + j] += data.inputs[at + j] / steps;
    }
  }
  return out;
}

/** Valence and arousal of each record: [count][2]. */
export function labelsOf(records: readonly WindowRecord[]): Float64Array {
  const y = new Float64Array(records.length * 2);
  records.forEach((r, i) => {
    y[2 * i] = r.valence;
    y[2 * i + 1] = r.arousal;
  });
  return y;
}

export interface LinearBaseline {
  /** The ridge penalty chosen on the validation pieces (mean of the two correlations). */
  lambda: number;
  validation: Correlations;
  test: Correlations;
}

export const RIDGE_LAMBDAS: readonly number[] = [1e-4, 1e-3, 1e-2, 1e-1, 1];

/** The linear baseline: ridge from window-mean features, lambda chosen on validation. */
export function linearBaseline(
  sets: Record<"train" | "validation" | "test", { data: TrainingData; records: WindowRecord[] }>,
): LinearBaseline {
  const d = FEATURE_COUNT;
  const x = windowMeans(sets.train.data);
  const y = labelsOf(sets.train.records);
  const xv = windowMeans(sets.validation.data);
  const xt = windowMeans(sets.test.data);
  let best: LinearBaseline | null = null;
  for (const lambda of RIDGE_LAMBDAS) {
    const model = fitRidge(x, y, sets.train.data.count, d, 2, lambda);
    const validation = correlations(
      sets.validation.records,
      predictRidge(model, xv, sets.validation.data.count),
    );
    const score = (validation.valence + validation.arousal) / 2;
    if (best === null || score > (best.validation.valence + best.validation.arousal) / 2) {
      const test = correlations(sets.test.records, predictRidge(model, xt, sets.test.data.count));
      best = { lambda, validation, test };
    }
  }
  return best!;
}
