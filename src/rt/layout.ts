/**
 * The engine's one SharedArrayBuffer, as both sides see it. The caller (engine.ts) and the
 * Worker (worker.ts) compute the same layout from the same `LayoutShape` and touch memory only
 * through these offsets.
 *
 * ```
 * control   Int32 x CONTROL_WORDS   sequence numbers, state, counters, result headers
 * submitted Float64 x slots         caller's performance.now() (ms) per input slot
 * input     Float32 x slots x inputSize          the input ring
 * results   Float32 x RESULT_BUFFERS x resultSize  outputs, concatenated in output order
 * latency   Int32 x histograms x HISTOGRAM_WORDS  [pipeline, end-to-end, model 0, model 1...]
 * ```
 *
 * Input ring: the caller writes slot `write & (slots-1)` and then bumps WRITE_SEQ; the Worker
 * copies a slot out and then bumps READ_SEQ, which frees every slot before it. Sequence numbers
 * are Int32 and wrap; only their differences are used, so `slots` is a power of two.
 *
 * Results: a sequence lock over RESULT_BUFFERS (3) buffers. The Worker writes the buffer after
 * the newest, its version odd while it writes, even when done, and then points NEWEST at it.
 * A reader copies NEWEST's buffer and keeps the copy only if the version was even and did not
 * change; a reader is torn only if the Worker finishes two whole results during one copy,
 * and then the version check rejects the copy. The reader re-checks the version with a
 * compare-exchange that writes it back unchanged, and the Worker makes it odd with an
 * exchange that reads from that write: so the copy happens before the Worker's next writes
 * in the JavaScript memory model itself, not only on CPUs that keep loads in order. Each result carries the checksum of its values
 * and its sequence number, so a test can prove that no accepted copy was torn.
 */

import { CadenzaError } from "../errors.ts";
import { HISTOGRAM_WORDS } from "./histogram.ts";

/** Words of the control block; each group sits in its own 64-byte cache line. */
export const Control = {
  // Written by the caller.
  WRITE_SEQ: 0,
  REJECTED: 1,
  /** A request to the Worker (Command below); the engine also clears it. */
  COMMAND: 2,
  /** latest() calls that gave up after READ_ATTEMPTS torn copies. */
  READ_FAILURES: 3,
  /** Which Worker may publish: the engine bumps it before starting a replacement. */
  EPOCH: 4,
  /** The argument of COMMAND (STALL: milliseconds). */
  COMMAND_ARG: 5,

  // Written by the Worker.
  READ_SEQ: 16,
  /** 1 while the Worker waits, so submit() notifies only then. */
  SLEEPING: 17,
  HEARTBEAT: 18,
  STATE: 19,
  COMPLETED: 20,
  /** Inputs passed over by the "latest" policy. */
  SKIPPED: 21,
  /** Index of the newest complete result buffer; -1 before the first. */
  NEWEST: 22,

  // Result headers, one word per buffer each, written by the Worker under the version.
  VERSION: 32,
  RESULT_SEQ: 36,
  CHECKSUM: 40,
} as const;

export const CONTROL_WORDS = 64;

/** Values of Control.COMMAND. */
export const Command = {
  NONE: 0,
  STOP: 1,
  /** Test hook: the Worker throws from its loop, as a failing model would. */
  CRASH: 2,
  /** Test hook: the Worker hangs for COMMAND_ARG ms without a heartbeat, as a stuck one would. */
  STALL: 3,
} as const;

/** Values of Control.STATE. */
export const WorkerState = {
  STARTING: 0,
  IDLE: 1,
  BUSY: 2,
  STOPPED: 3,
  FAILED: 4,
  /** In the STALL test hook. */
  STALLED: 5,
} as const;

export const WORKER_STATE_NAMES = [
  "starting",
  "idle",
  "busy",
  "stopped",
  "failed",
  "stalled",
] as const;

export const RESULT_BUFFERS = 3;

/** Result sequence numbers are reported modulo 2^31, so -1 always means "none". */
export const SEQ_MASK = 0x7fffffff;

/** Histograms before the per-model ones. */
export const Histogram = { PIPELINE: 0, END_TO_END: 1, FIRST_MODEL: 2 } as const;

/** What both sides agree on before the buffer exists (posted to the Worker as is). */
export interface LayoutShape {
  slots: number;
  inputSize: number;
  /** Widths of the outputs, in the order results store them. */
  outputSizes: number[];
  /** Models timed per step (one histogram each). */
  modelCount: number;
}

export interface Layout extends LayoutShape {
  resultSize: number;
  /** Offset of each output within a result. */
  outputOffsets: number[];
  histogramCount: number;
  /** Byte offsets of the regions. */
  submittedAt: number;
  inputAt: number;
  resultsAt: number;
  latencyAt: number;
  byteLength: number;
}

/** The typed views of one engine buffer; both sides create them once. */
export interface Views {
  control: Int32Array;
  submittedMs: Float64Array;
  input: Float32Array;
  results: Float32Array;
  /** The same memory as `results`, as bits, for the checksum. */
  resultWords: Uint32Array;
  latency: Int32Array;
}

export const MAX_SLOTS = 1024;

/** Computes the layout; throws E_ARGUMENT when checkShape finds a problem. */
export function computeLayout(shape: LayoutShape): Layout {
  const problem = checkShape(shape);
  if (problem !== null) throw new CadenzaError("E_ARGUMENT", `src/rt/layout.ts: ${problem}`);
  const outputOffsets: number[] = [];
  let resultSize = 0;
  for (const size of shape.outputSizes) {
    outputOffsets.push(resultSize);
    resultSize += size;
  }
  const histogramCount = Histogram.FIRST_MODEL + shape.modelCount;
  const submittedAt = CONTROL_WORDS * 4;
  const inputAt = submittedAt + shape.slots * 8;
  const resultsAt = align8(inputAt + shape.slots * shape.inputSize * 4);
  const latencyAt = align8(resultsAt + RESULT_BUFFERS * resultSize * 4);
  const byteLength = align8(latencyAt + histogramCount * HISTOGRAM_WORDS * 4);
  return {
    ...shape,
    outputSizes: [...shape.outputSizes],
    resultSize,
    outputOffsets,
    histogramCount,
    submittedAt,
    inputAt,
    resultsAt,
    latencyAt,
    byteLength,
  };
}

/** null when the shape is usable, else what is wrong with it. */
export function checkShape(shape: LayoutShape): string | null {
  const { slots, inputSize, outputSizes, modelCount } = shape;
  if (!Number.isInteger(slots) || slots < 1 || slots > MAX_SLOTS || (slots & (slots - 1)) !== 0) {
    return `slots is ${slots}, expected a power of two in 1..${MAX_SLOTS}`;
  }
  if (!isWidth(inputSize)) return `inputSize is ${inputSize}, expected an integer in 1..65536`;
  if (!Array.isArray(outputSizes) || outputSizes.length === 0 || !outputSizes.every(isWidth)) {
    return `outputSizes is ${JSON.stringify(outputSizes)}, expected widths in 1..65536`;
  }
  if (!Number.isInteger(modelCount) || modelCount < 0 || modelCount > 256) {
    return `modelCount is ${modelCount}, expected an integer in 0..256`;
  }
  return null;
}

function isWidth(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65536;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** A zeroed buffer for `layout`, with NEWEST set to "no result yet". */
export function createBuffer(layout: Layout): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(layout.byteLength);
  new Int32Array(buffer, 0, CONTROL_WORDS)[Control.NEWEST] = -1;
  return buffer;
}

export function createViews(buffer: SharedArrayBuffer, layout: Layout): Views {
  if (buffer.byteLength !== layout.byteLength) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `src/rt/layout.ts: buffer has ${buffer.byteLength} bytes, layout needs ${layout.byteLength}`,
    );
  }
  const resultFloats = RESULT_BUFFERS * layout.resultSize;
  return {
    control: new Int32Array(buffer, 0, CONTROL_WORDS),
    submittedMs: new Float64Array(buffer, layout.submittedAt, layout.slots),
    input: new Float32Array(buffer, layout.inputAt, layout.slots * layout.inputSize),
    results: new Float32Array(buffer, layout.resultsAt, resultFloats),
    resultWords: new Uint32Array(buffer, layout.resultsAt, resultFloats),
    latency: new Int32Array(buffer, layout.latencyAt, layout.histogramCount * HISTOGRAM_WORDS),
  };
}

/**
 * FNV-1a over the sequence number and then each 32-bit word of `words[start, start+length)`,
 * as an Int32 (what the control block stores). Changing any one word always changes it: each
 * step is a bijection of the running hash for a fixed word.
 */
export function resultChecksum(
  words: Uint32Array,
  start: number,
  length: number,
  seq: number,
): number {
  let hash = Math.imul(0x811c9dc5 ^ seq, 0x01000193);
  const end = start + length;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ words[i], 0x01000193);
  return hash | 0;
}
