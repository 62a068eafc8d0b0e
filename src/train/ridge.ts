/**
 * Ridge regression in float64 (the linear baseline beside the trained EmotionRecognizer) and
 * the correlation the card reports.
 *
 * `fitRidge(x, y, n, d, k, lambda)` standardises each input column (mean 0, standard deviation
 * 1 over the rows), then solves (Xs^T Xs + lambda n I) W = Xs^T (y - mean y) by Cholesky; the
 * intercept is the mean of y. Constant columns get weight 0.
 *
 * ```ts
 * const model = fitRidge(x, y, rows, 128, 2, 1e-2);
 * const yHat = predictRidge(model, xTest, testRows);   // [testRows][2]
 * pearson(yHat column, y column);
 * ```
 */

import { CadenzaError } from "../errors.ts";

export interface RidgeModel {
  inputs: number;
  outputs: number;
  mean: Float64Array;
  scale: Float64Array;
  /** [inputs][outputs] on standardised inputs. */
  weights: Float64Array;
  intercept: Float64Array;
}

/** Fits ridge regression of y [n][k] on x [n][d] (row-major). */
export function fitRidge(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  n: number,
  d: number,
  k: number,
  lambda: number,
): RidgeModel {
  if (x.length !== n * d || y.length !== n * k || n < 2 || !(lambda > 0)) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `fitRidge: x has ${x.length} values, y ${y.length}; expected ${n} x ${d} and ${n} x ${k} ` +
        `with n >= 2 and lambda > 0 (got ${lambda})`,
    );
  }
  const mean = new Float64Array(d);
  const scale = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x[i * d + j] / n;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) scale[j] += (x[i * d + j] - mean[j]) ** 2 / n;
  }
  for (let j = 0; j < d; j++) scale[j] = scale[j] > 1e-20 ? 1 / Math.sqrt(scale[j]) : 0;
  const intercept = new Float64Array(k);
  for (let i = 0; i < n; i++) for (let c = 0; c < k; c++) intercept[c] += y[i * k + c] / n;
  const gram = new Float64Array(d * d);
  const rhs = new Float64Array(d * k);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) row[j] = (x[i * d + j] - mean[j]) * scale[j];
    for (let a = 0; a < d; a++) {
      const ra = row[a];
      if (ra === 0) continue;
      for (let b = 0; b <= a; b++) gram[a * d + b] += ra * row[b];
      for (let c = 0; c < k; c++) rhs[a * k + c] += ra * (y[i * k + c] - intercept[c]);
    }
  }
  for (let a = 0; a < d; a++) {
    for (let b = 0; b < a; b++) gram[b * d + a] = gram[a * d + b];
    gram[a * d + a] += lambda * n;
  }
  const weights = solveCholesky(gram, rhs, d, k);
  return { inputs: d, outputs: k, mean, scale, weights, intercept };
}

/** Predictions [n][k] of a fitted model for x [n][d]. */
export function predictRidge(model: RidgeModel, x: ArrayLike<number>, n: number): Float64Array {
  const { inputs: d, outputs: k } = model;
  if (x.length !== n * d) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `predictRidge: x has ${x.length} values, expected ${n} x ${d}`,
    );
  }
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < k; c++) out[i * k + c] = model.intercept[c];
    for (let j = 0; j < d; j++) {
      const v = (x[i * d + j] - model.mean[j]) * model.scale[j];
      if (v === 0) continue;
      for (let c = 0; c < k; c++) out[i * k + c] += v * model.weights[j * k + c];
    }
  }
  return out;
}

/** Solves A X = B for symmetric positive definite A [d][d], B [d][k]. */
function solveCholesky(a: Float64Array, b: Float64Array, d: number, k: number): Float64Array {
  const l = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * d + j];
      for (let m = 0; m < j; m++) s -= l[i * d + m] * l[j * d + m];
      if (i === j) {
        if (!(s > 0)) {
          throw new CadenzaError(
            "E_ARGUMENT",
            "fitRidge: the system is not positive definite (non-finite inputs?)",
          );
        }
        l[i * d + i] = Math.sqrt(s);
      } else {
        l[i * d + j] = s / l[j * d + j];
      }
    }
  }
  const x = Float64Array.from(b);
  for (let c = 0; c < k; c++) {
    for (let i = 0; i < d; i++) {
      let s = x[i * k + c];
      for (let m = 0; m < i; m++) s -= l[i * d + m] * x[m * k + c];
      x[i * k + c] = s / l[i * d + i];
    }
    for (let i = d - 1; i >= 0; i--) {
      let s = x[i * k + c];
      for (let m = i + 1; m < d; m++) s -= l[m * d + i] * x[m * k + c];
      x[i * k + c] = s / l[i * d + i];
    }
  }
  return x;
}

/** Pearson's correlation of two equally long series (0 when either is constant). */
export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  if (n !== b.length || n < 2) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `pearson: lengths ${a.length} and ${b.length}; expected equal, >= 2`,
    );
  }
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i] / n;
    mb += b[i] / n;
  }
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
}
