/**
 * Magnitude pruning of a ModelSpec (docs/PRUNING.md).
 *
 * - Unstructured: in every weight matrix (dense W, lstm/gru Wx and Wh, conv1d W, attention
 *   Wq Wk Wv Wo, transformer those and W1 W2) the `round(sparsity * length)` entries of least
 *   magnitude are set to 0 (ties: the lower index first). Shapes stay; biases and norms are
 *   never pruned. `masks` says which entries were removed, so fine-tuning can hold them at 0.
 * - Structured: whole units are removed and the shapes shrink, so the result is an ordinary
 *   smaller ModelSpec. A unit is a dense layer's output (its W row and bias, and the matching
 *   input column of the layer that reads it), an LSTM/GRU hidden unit (its rows in every gate
 *   of Wx, Wh and the biases, its recurrent column of Wh, and the reader's input column), or a
 *   transformer's feed-forward column (row of W1 and b1, column of W2; d_model stays). Only
 *   widths inside the model shrink: a layer whose output is the model's output, or is read by
 *   a layer whose input width cannot change (attention, transformer, layernorm, conv1d, skip)
 *   or normalised over all units (softmax), is left whole and the report says why. A unit's
 *   score is the L2 norm of the weights that make it (its rows, with the bias) times the L2
 *   norm of the weights that read it (the reader's column, and an LSTM/GRU's own recurrent
 *   column); the lowest scores go. Optionally (`heads`) attention heads are removed by zeroing
 *   their q, k, v rows and biases and their Wo columns: the canonical attention layer has no
 *   inner width apart from d_model, so a head cannot be cut out of the shapes.
 *
 * ```ts
 * const { spec: small, report } = prune(model.spec, { sparsity: 0.5, structured: true });
 * (await modelFromSpec(small)).save("pruned.safetensors");  // an ordinary, smaller model
 * ```
 */

import { CadenzaError } from "../errors.ts";
import { MATRIX_TENSORS } from "../model/image.ts";
import {
  describe,
  type LayerKind,
  type LayerSpec,
  type ModelSpec,
  parameterCount,
  resolveArch,
  TENSOR_NAMES,
} from "../model/spec.ts";

export interface PruneOptions {
  /** 0..<1: the fraction of each layer's prunable weights (or units, when structured) removed. */
  sparsity: number;
  /** Remove whole units (shapes shrink) instead of zeroing single weights. */
  structured?: boolean;
  /** Layer index -> sparsity for that layer (0 leaves it whole). */
  perLayer?: Record<number, number>;
  /**
   * Structured only: the fraction of attention heads removed in each attention and transformer
   * layer, by zeroing them (default 0; see the file comment: no shape shrinks).
   */
  heads?: number;
}

/** What happened to one layer. */
export type PruneAction =
  | "weights"
  | "units"
  | "ff-columns"
  | "heads"
  | "ff-columns+heads"
  | "none";

export interface LayerPruneReport {
  layer: number;
  kind: LayerKind;
  name?: string;
  action: PruneAction;
  /** The sparsity asked of this layer. */
  sparsity: number;
  /** Why a layer asked to be pruned was not (action "none"). */
  reason?: string;
  /** "inputSize->outputSize" (transformer: with its ffDim), before and after. */
  shapeBefore: string;
  shapeAfter: string;
  /** Units (structured: outputs, hidden units or FF columns) before and after. */
  unitsBefore: number;
  unitsAfter: number;
  /** Removed units, in the layer's original numbering (structured). */
  removedUnits?: number[];
  /** Removed heads (structured with `heads`). */
  removedHeads?: number[];
  parametersBefore: number;
  parametersAfter: number;
  /** Elements of the weight matrices, and how many of them are nonzero. */
  matrixBefore: number;
  matrixAfter: number;
  nonzerosBefore: number;
  nonzerosAfter: number;
  /** 1 - nonzerosAfter / matrixBefore: the share of the original weights gone. */
  weightSparsity: number;
}

export interface PruneReport {
  structured: boolean;
  sparsity: number;
  layers: LayerPruneReport[];
  parametersBefore: number;
  parametersAfter: number;
  /** Nonzero parameters (every tensor) before and after. */
  nonzerosBefore: number;
  nonzerosAfter: number;
  /** Weight-matrix elements of the original, and the nonzero ones left. */
  matrixBefore: number;
  matrixNonzerosAfter: number;
}

/** Per layer, the tensors with removed entries: 1 kept, 0 pruned (held at 0 by fine-tuning). */
export type PruneMasks = Array<Record<string, Uint8Array>>;

export interface PruneResult {
  spec: ModelSpec;
  report: PruneReport;
  /** Unstructured pruning and zeroed heads: which entries were removed. */
  masks?: PruneMasks;
}

const PASS_THROUGH: ReadonlySet<LayerKind> = new Set<LayerKind>([
  "activation",
  "batchnorm",
  "prelu",
]);
const READERS: ReadonlySet<LayerKind> = new Set<LayerKind>(["dense", "lstm", "gru"]);
const COUPLING = new Set(["softmax", "logsoftmax"]);

function argError(field: string, expected: string, got: unknown): CadenzaError {
  return new CadenzaError(
    "E_ARGUMENT",
    `prune: ${field}: expected ${expected}, got ${describe(got)}`,
  );
}

function checkFraction(field: string, value: unknown): number {
  if (typeof value !== "number" || !(value >= 0 && value < 1)) {
    throw argError(field, "a number in [0, 1)", value);
  }
  return value;
}

/** The options, checked: each layer's sparsity (index order). */
export function layerSparsities(spec: ModelSpec, options: PruneOptions): number[] {
  if (typeof options !== "object" || options === null) {
    throw argError("options", "an object", options);
  }
  const known = ["sparsity", "structured", "perLayer", "heads"];
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw argError(`options.${key}`, `no such option (the options are ${known.join(", ")})`, key);
    }
  }
  const base = checkFraction("options.sparsity", options.sparsity);
  if (options.structured !== undefined && typeof options.structured !== "boolean") {
    throw argError("options.structured", "true or false", options.structured);
  }
  if (options.heads !== undefined) checkFraction("options.heads", options.heads);
  const out = spec.layers.map(() => base);
  const per = options.perLayer ?? {};
  if (typeof per !== "object" || per === null) throw argError("options.perLayer", "an object", per);
  for (const [key, value] of Object.entries(per)) {
    const index = Number(key);
    if (!Number.isInteger(index) || index < 0 || index >= spec.layers.length) {
      throw argError(
        "options.perLayer",
        `layer indices 0..${spec.layers.length - 1}`,
        key,
      );
    }
    out[index] = checkFraction(`options.perLayer[${index}]`, value);
  }
  return out;
}

/** A deep copy of the spec (tensors copied). */
export function copySpec(spec: ModelSpec): ModelSpec {
  const layers = spec.layers.map((layer) => {
    const tensors: Record<string, Float32Array> = {};
    for (const [name, t] of Object.entries(layer.tensors)) tensors[name] = t.slice();
    return { ...layer, tensors };
  });
  return { ...spec, layers, meta: spec.meta === undefined ? undefined : { ...spec.meta } };
}

function nonzeros(values: Float32Array): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) if (values[i] !== 0) n++;
  return n;
}

function layerCounts(layer: LayerSpec) {
  let parameters = 0;
  let nz = 0;
  let matrix = 0;
  let matrixNz = 0;
  const matrices = MATRIX_TENSORS[layer.kind];
  for (const [name, t] of Object.entries(layer.tensors)) {
    const n = nonzeros(t);
    parameters += t.length;
    nz += n;
    if (matrices.includes(name)) {
      matrix += t.length;
      matrixNz += n;
    }
  }
  return { parameters, nz, matrix, matrixNz };
}

export function unitsOf(layer: LayerSpec): number {
  return layer.kind === "transformer" ? resolveArch(layer).ffDim : layer.outputSize;
}

function shapeText(layer: LayerSpec): string {
  const ff = layer.kind === "transformer" ? ` ff ${resolveArch(layer).ffDim}` : "";
  return `${layer.inputSize}->${layer.outputSize}${ff}`;
}

/** The indices of the `count` smallest values (ties: lower index first). */
function smallest(scores: ArrayLike<number>, count: number): number[] {
  const order = Array.from({ length: scores.length }, (_, i) => i);
  order.sort((a, b) => Math.abs(scores[a]) - Math.abs(scores[b]) || a - b);
  return order.slice(0, count).sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------
// Unstructured

/** Zeroes the round(s * n) smallest-magnitude entries of each matrix; returns the masks. */
function pruneWeights(layer: LayerSpec, sparsity: number): Record<string, Uint8Array> {
  const masks: Record<string, Uint8Array> = {};
  for (const name of MATRIX_TENSORS[layer.kind]) {
    const w = layer.tensors[name];
    const count = Math.round(sparsity * w.length);
    if (count === 0) continue;
    const mask = new Uint8Array(w.length).fill(1);
    // Float64 keys sorted natively: |w| in the high part, the index to break ties.
    const keys = new Float64Array(w.length);
    for (let i = 0; i < w.length; i++) keys[i] = Math.abs(w[i]);
    const order = Uint32Array.from({ length: w.length }, (_, i) => i);
    order.sort((a, b) => keys[a] - keys[b] || a - b);
    for (let k = 0; k < count; k++) {
      w[order[k]] = 0;
      mask[order[k]] = 0;
    }
    masks[name] = mask;
  }
  return masks;
}

// ---------------------------------------------------------------------------------------------
// Structured: units

/** Rows of a [rows][cols] matrix kept. */
function keepRows(w: Float32Array, cols: number, rows: number[]): Float32Array {
  const out = new Float32Array(rows.length * cols);
  rows.forEach((r, i) => out.set(w.subarray(r * cols, (r + 1) * cols), i * cols));
  return out;
}

/** Columns of a [rows][cols] matrix kept. */
function keepCols(w: Float32Array, cols: number, keep: number[]): Float32Array {
  const rows = w.length / cols;
  const out = new Float32Array(rows * keep.length);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < keep.length; j++) out[r * keep.length + j] = w[r * cols + keep[j]];
  }
  return out;
}

function keepItems(v: Float32Array, keep: number[]): Float32Array {
  return Float32Array.from(keep, (i) => v[i]);
}

/** Rows of gate-stacked tensors: gate g's row for unit n is g * H + n. */
function gateRows(keep: number[], gates: number, hidden: number): number[] {
  const rows: number[] = [];
  for (let g = 0; g < gates; g++) for (const n of keep) rows.push(g * hidden + n);
  return rows;
}

function sumSquaresRow(w: Float32Array, cols: number, row: number): number {
  let s = 0;
  for (let c = 0; c < cols; c++) s += w[row * cols + c] ** 2;
  return s;
}

function sumSquaresCol(w: Float32Array, cols: number, col: number): number {
  let s = 0;
  for (let r = col; r < w.length; r += cols) s += w[r] ** 2;
  return s;
}

/**
 * The layer that reads layer i's outputs, through pass-through layers, or why there is none
 * that can lose input columns.
 */
function readerOf(spec: ModelSpec, i: number): { reader: number } | { reason: string } {
  if (i === spec.layers.length - 1) return { reason: "its outputs are the model's output" };
  if (COUPLING.has(spec.layers[i].activation ?? "")) {
    return { reason: `its ${spec.layers[i].activation} couples every output` };
  }
  for (let j = i + 1; j < spec.layers.length; j++) {
    const next = spec.layers[j];
    if (READERS.has(next.kind)) return { reader: j };
    if (!PASS_THROUGH.has(next.kind)) {
      return { reason: `layer ${j} (${next.kind}) reads its outputs and keeps its input width` };
    }
    if (next.kind === "activation" && COUPLING.has(next.activation ?? "")) {
      return { reason: `layer ${j}'s ${next.activation} couples every output` };
    }
  }
  return { reason: "its outputs are the model's output" };
}

function gatesOf(kind: LayerKind): number {
  return kind === "lstm" ? 4 : kind === "gru" ? 3 : 1;
}

/** Scores of layer i's units: norm of what makes each, times norm of what reads it. */
function unitScores(spec: ModelSpec, i: number, reader: number): Float64Array {
  const layer = spec.layers[i];
  const h = layer.outputSize;
  const gates = gatesOf(layer.kind);
  const made = new Float64Array(h);
  const read = new Float64Array(h);
  const t = layer.tensors;
  const addRows = (w: Float32Array, cols: number) => {
    for (let g = 0; g < gates; g++) {
      for (let n = 0; n < h; n++) made[n] += sumSquaresRow(w, cols, g * h + n);
    }
  };
  const addBias = (b: Float32Array | undefined) => {
    if (b === undefined) return;
    for (let g = 0; g < gates; g++) for (let n = 0; n < h; n++) made[n] += b[g * h + n] ** 2;
  };
  if (layer.kind === "dense") {
    addRows(t.W, layer.inputSize);
    addBias(t.b);
  } else {
    addRows(t.Wx, layer.inputSize);
    addRows(t.Wh, h);
    addBias(t.b ?? t.bx);
    addBias(t.bh);
    for (let n = 0; n < h; n++) read[n] += sumSquaresCol(t.Wh, h, n);
  }
  const r = spec.layers[reader];
  const rw = r.kind === "dense" ? r.tensors.W : r.tensors.Wx;
  for (let n = 0; n < h; n++) read[n] += sumSquaresCol(rw, r.inputSize, n);
  return made.map((m, n) => Math.sqrt(m) * Math.sqrt(read[n]));
}

/** Removes the units not in `keep` from layer i, the pass-through layers and the reader. */
function removeUnits(spec: ModelSpec, i: number, reader: number, keep: number[]): void {
  const layer = spec.layers[i];
  const h = layer.outputSize;
  const t = layer.tensors;
  if (layer.kind === "dense") {
    t.W = keepRows(t.W, layer.inputSize, keep);
    if (t.b !== undefined) t.b = keepItems(t.b, keep);
  } else {
    const rows = gateRows(keep, gatesOf(layer.kind), h);
    t.Wx = keepRows(t.Wx, layer.inputSize, rows);
    t.Wh = keepCols(keepRows(t.Wh, h, rows), h, keep);
    for (const name of ["b", "bx", "bh"]) {
      if (t[name] !== undefined) t[name] = keepItems(t[name], rows);
    }
  }
  layer.outputSize = keep.length;
  for (let j = i + 1; j < reader; j++) {
    const p = spec.layers[j];
    for (const [name, v] of Object.entries(p.tensors)) {
      if (v.length > 1 || p.kind !== "prelu") p.tensors[name] = keepItems(v, keep);
    }
    p.inputSize = p.outputSize = keep.length;
  }
  const r = spec.layers[reader];
  const name = r.kind === "dense" ? "W" : "Wx";
  r.tensors[name] = keepCols(r.tensors[name], r.inputSize, keep);
  r.inputSize = keep.length;
}

/** Removes `count` FF columns of a transformer layer (d_model stays). */
function removeFfColumns(layer: LayerSpec, count: number): number[] {
  const ff = resolveArch(layer).ffDim;
  const d = layer.outputSize;
  const t = layer.tensors;
  const scores = new Float64Array(ff);
  for (let f = 0; f < ff; f++) {
    const made = sumSquaresRow(t.W1, d, f) + t.b1[f] ** 2;
    scores[f] = Math.sqrt(made) * Math.sqrt(sumSquaresCol(t.W2, ff, f));
  }
  const gone = smallest(scores, Math.min(count, ff - 1));
  const removed = new Set(gone);
  const keep = Array.from({ length: ff }, (_, f) => f).filter((f) => !removed.has(f));
  t.W1 = keepRows(t.W1, d, keep);
  t.b1 = keepItems(t.b1, keep);
  t.W2 = keepCols(t.W2, ff, keep);
  layer.ffDim = keep.length;
  return gone;
}

/** Zeroes `count` heads of an attention or transformer layer; returns them and the masks. */
function zeroHeads(
  layer: LayerSpec,
  count: number,
): { heads: number[]; masks: Record<string, Uint8Array> } {
  const d = layer.outputSize;
  const heads = resolveArch(layer).heads;
  const dk = d / heads;
  const t = layer.tensors;
  const scores = new Float64Array(heads);
  for (let hd = 0; hd < heads; hd++) {
    let s = 0;
    for (let r = hd * dk; r < (hd + 1) * dk; r++) {
      for (const name of ["Wq", "Wk", "Wv"]) s += sumSquaresRow(t[name], d, r);
      s += sumSquaresCol(t.Wo, d, r);
    }
    scores[hd] = s;
  }
  const gone = smallest(scores, Math.min(count, heads - 1));
  const masks: Record<string, Uint8Array> = {};
  for (const name of ["Wq", "Wk", "Wv", "Wo", "bq", "bk", "bv"]) {
    masks[name] = new Uint8Array(t[name].length).fill(1);
  }
  for (const hd of gone) {
    for (let r = hd * dk; r < (hd + 1) * dk; r++) {
      for (const name of ["Wq", "Wk", "Wv"]) {
        t[name].fill(0, r * d, (r + 1) * d);
        masks[name].fill(0, r * d, (r + 1) * d);
      }
      for (const name of ["bq", "bk", "bv"]) {
        t[name][r] = 0;
        masks[name][r] = 0;
      }
      for (let o = 0; o < d; o++) {
        t.Wo[o * d + r] = 0;
        masks.Wo[o * d + r] = 0;
      }
    }
  }
  return { heads: gone, masks };
}

/** What the structured pass should remove from a layer, given its current count. */
export type RemovalTarget = (layer: number, unitsNow: number) => number;

export interface Planned {
  action: PruneAction;
  reason?: string;
  removedUnits?: number[];
  removedHeads?: number[];
}

/**
 * The structured pass over a copy: each layer in order loses `target(i, units)` units (at most
 * all but one), heads as asked. Returns the actions and the head masks.
 */
function structuredPass(
  spec: ModelSpec,
  target: RemovalTarget,
  headFraction: number,
  numbering: number[][],
): { planned: Planned[]; masks: PruneMasks | undefined } {
  const planned: Planned[] = [];
  const masks: PruneMasks = spec.layers.map(() => ({}));
  let anyMask = false;
  spec.layers.forEach((layer, i) => {
    const units = unitsOf(layer);
    const want = target(i, units);
    const p: Planned = { action: "none" };
    if (layer.kind === "transformer" || layer.kind === "attention") {
      const actions: string[] = [];
      if (layer.kind === "transformer" && want > 0) {
        const gone = removeFfColumns(layer, want);
        p.removedUnits = gone.map((k) => numbering[i][k]);
        numbering[i] = numbering[i].filter((_, k) => !gone.includes(k));
        actions.push("ff-columns");
      }
      const heads = resolveArch(layer).heads;
      const headCount = Math.round(headFraction * heads);
      if (headCount > 0) {
        const z = zeroHeads(layer, headCount);
        p.removedHeads = z.heads;
        masks[i] = z.masks;
        anyMask = true;
        actions.push("heads");
      }
      if (actions.length > 0) p.action = actions.join("+") as PruneAction;
      else if (want > 0) p.reason = "attention heads are pruned only with the heads option";
    } else if (want > 0) {
      if (!READERS.has(layer.kind)) {
        p.reason = `${layer.kind} has no units to remove`;
      } else {
        const found = readerOf(spec, i);
        if ("reason" in found) {
          p.reason = `not pruned: ${found.reason}`;
        } else {
          const scores = unitScores(spec, i, found.reader);
          const gone = smallest(scores, Math.min(want, units - 1));
          const removed = new Set(gone);
          const keep = Array.from({ length: units }, (_, k) => k).filter((k) => !removed.has(k));
          removeUnits(spec, i, found.reader, keep);
          p.action = "units";
          p.removedUnits = gone.map((k) => numbering[i][k]);
          numbering[i] = keep.map((k) => numbering[i][k]);
        }
      }
    }
    planned.push(p);
  });
  return { planned, masks: anyMask ? masks : undefined };
}

/** The report comparing the original and the pruned spec, layer by layer. */
export function pruneReport(
  original: ModelSpec,
  pruned: ModelSpec,
  planned: Planned[],
  sparsities: number[],
  structured: boolean,
  sparsity: number,
): PruneReport {
  const layers: LayerPruneReport[] = original.layers.map((before, i) => {
    const after = pruned.layers[i];
    const a = layerCounts(before);
    const b = layerCounts(after);
    const entry: LayerPruneReport = {
      layer: i,
      kind: before.kind,
      action: planned[i].action,
      sparsity: sparsities[i],
      shapeBefore: shapeText(before),
      shapeAfter: shapeText(after),
      unitsBefore: unitsOf(before),
      unitsAfter: unitsOf(after),
      parametersBefore: a.parameters,
      parametersAfter: b.parameters,
      matrixBefore: a.matrix,
      matrixAfter: b.matrix,
      nonzerosBefore: a.matrixNz,
      nonzerosAfter: b.matrixNz,
      weightSparsity: a.matrix === 0 ? 0 : 1 - b.matrixNz / a.matrix,
    };
    if (before.name !== undefined) entry.name = before.name;
    if (planned[i].reason !== undefined) entry.reason = planned[i].reason;
    if (planned[i].removedUnits !== undefined) entry.removedUnits = planned[i].removedUnits;
    if (planned[i].removedHeads !== undefined) entry.removedHeads = planned[i].removedHeads;
    return entry;
  });
  const sum = (f: (l: LayerSpec) => number, spec: ModelSpec) =>
    spec.layers.reduce((n, l) => n + f(l), 0);
  return {
    structured,
    sparsity,
    layers,
    parametersBefore: parameterCount(original),
    parametersAfter: parameterCount(pruned),
    nonzerosBefore: sum((l) => layerCounts(l).nz, original),
    nonzerosAfter: sum((l) => layerCounts(l).nz, pruned),
    matrixBefore: sum((l) => layerCounts(l).matrix, original),
    matrixNonzerosAfter: sum((l) => layerCounts(l).matrixNz, pruned),
  };
}

/** Prunes `spec` with the structured pass and a removal target (gradual pruning's rounds). */
export function pruneStructuredTo(
  spec: ModelSpec,
  target: RemovalTarget,
  headFraction = 0,
  numbering?: number[][],
): { spec: ModelSpec; planned: Planned[]; masks?: PruneMasks; numbering: number[][] } {
  const out = copySpec(spec);
  // Original numbering of each layer's current units, so removals report original indices.
  const order = numbering?.map((n) => n.slice()) ??
    spec.layers.map((l) => Array.from({ length: unitsOf(l) }, (_, k) => k));
  const { planned, masks } = structuredPass(out, target, headFraction, order);
  const result = { spec: out, planned, numbering: order };
  return masks === undefined ? result : { ...result, masks };
}

/** Unstructured pass over a copy: each layer's matrices to its sparsity; the masks. */
export function pruneUnstructured(
  spec: ModelSpec,
  sparsities: number[],
): { spec: ModelSpec; planned: Planned[]; masks: PruneMasks } {
  const out = copySpec(spec);
  const masks: PruneMasks = [];
  const planned: Planned[] = out.layers.map((layer, i) => {
    masks.push(sparsities[i] > 0 ? pruneWeights(layer, sparsities[i]) : {});
    if (Object.keys(masks[i]).length > 0) return { action: "weights" };
    return sparsities[i] > 0 && MATRIX_TENSORS[layer.kind].length === 0
      ? { action: "none", reason: `${layer.kind} has no weight matrix` }
      : { action: "none" };
  });
  return { spec: out, planned, masks };
}

/**
 * One value per parameter in the training ABI's order (docs/DESIGN.md, "Training ABI"):
 * 1 trainable, 0 held (a pruned entry). For `Trainer.setTrainable`.
 */
export function trainableMask(spec: ModelSpec, masks: PruneMasks): Uint8Array {
  const total = parameterCount(spec);
  const out = new Uint8Array(total).fill(1);
  let offset = 0;
  spec.layers.forEach((layer, i) => {
    for (const name of TENSOR_NAMES(layer.kind, layer)) {
      const length = layer.tensors[name].length;
      const mask = masks[i]?.[name];
      if (mask !== undefined) {
        if (mask.length !== length) {
          throw new CadenzaError(
            "E_SHAPE",
            `trainableMask: layer ${i} tensor ${name}: expected a mask of ${length}, got ${mask.length}`,
          );
        }
        out.set(mask, offset);
      }
      offset += length;
    }
  });
  return out;
}

/** Combines two mask sets (an entry is held if either holds it). */
export function mergeMasks(
  a: PruneMasks | undefined,
  b: PruneMasks | undefined,
): PruneMasks | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a.map((layer, i) => {
    const out: Record<string, Uint8Array> = { ...layer };
    for (const [name, mask] of Object.entries(b[i] ?? {})) {
      const old = out[name];
      out[name] = old === undefined ? mask : old.map((v, k) => v & mask[k]);
    }
    return out;
  });
}
