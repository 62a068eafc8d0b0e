/**
 * The engine's one SharedArrayBuffer, as both sides see it. The caller (engine.ts) and the
 * Worker (worker.ts) compute the same layout from the same `LayoutShape` and touch memory only
 * through these offsets.
 *
 * ```
 * control   Int32 x CONTROL_WORDS   sequence numbers, state, counters, result headers
 * submitted Float64 x slots         caller's performance.now() (ms) per input slot
 * wakeAt    Float64 x 1             when a dozing Worker wakes (engine clock, ms)
 * input     Float32 x slots x inputSize          the input ring
 * results   Float32 x RESULT_BUFFERS x resultSize  outputs, concatenated in output order
 * latency   Int32 x histograms x HISTOGRAM_WORDS  [pipeline, end-to-end, model 0, model 1...]
 * ```
 *
 * Input ring: the caller writes slot `write & (slots-1)` and then bumps WRITE_SEQ; the Worker
 * copies a slot out and then moves READ past it, which frees every slot before it. WRITE_SEQ
 * is an Int32 that wraps; only differences are used, so `slots` is a power of two. READ packs
 * three fields (see `packRead`): the read position modulo 2^11 (enough: the ring never holds
 * more than MAX_SLOTS = 1024, so `(write - READ) & POS_MASK` is the number pending), the
 * number of takes modulo 2^13, and the epoch of the Worker allowed to take. A take is ONE
 * compare-exchange of READ that moves the position past the input taken and adds 1 to the
 * takes: in that one step the inputs passed over become skipped and the one taken held.
 *
 * Results: RESULT_BUFFERS (3) buffers under a sequence lock each, and one word, NEWEST, that
 * names the newest published result. NEWEST packs three fields (see `packNewest`): the buffer
 * (3: none yet), the low bits of the epoch of the Worker allowed to publish, and a count of
 * publications. The epoch fences out replaced Workers at every step that matters, not only at
 * a check made before it (a Worker can pause anywhere: a collection, the VM descheduling it):
 *
 * - A Worker writes only a buffer it has claimed (CLAIM[b]: compare-exchange 0 -> its epoch,
 *   released after), and only one that NEWEST does not name once claimed: so no two Workers
 *   ever write one buffer, and nobody writes the buffer NEWEST names.
 * - It publishes with a compare-exchange of NEWEST from the value it read after claiming to
 *   (its epoch, count + 1, buffer). Before a replacement starts, the engine rewrites NEWEST's
 *   epoch field (`fenceNewest`), so every later publication by a replaced Worker fails: NEWEST
 *   never moves backwards and never names a replaced Worker's result.
 * - Each buffer records the publication it was written for (PUB_ID: count and buffer, as in
 *   NEWEST) under its version. A reader keeps a copy only if the version was even and did not
 *   change and PUB_ID equals what NEWEST said when the read began: a buffer rewritten since
 *   (by a replaced Worker that can no longer publish it, or by the next publication) is
 *   refused rather than taken for the result NEWEST named.
 *
 * The reader re-checks the version with a compare-exchange that writes it back unchanged, and
 * the Worker makes it odd with an exchange that reads from that write: so the copy happens
 * before the Worker's next writes in the JavaScript memory model itself, not only on CPUs that
 * keep loads in order. Each result also carries the checksum of its values and its sequence
 * number, so a test can prove that no accepted copy was torn.
 *
 * Worker records (WORKER_RECORDS of them, record `epoch & 7`): OWNER (the epoch using it, 0
 * when free) and DONE (the publications that Worker counted, each right after its NEWEST
 * compare-exchange; it may lag NEWEST's count by one). The engine never starts an epoch whose
 * record is still owned, so epochs equal modulo 256 (NEWEST's and READ's field) are never
 * alive at once.
 *
 * Accounting (exact wherever a Worker is killed): every change of an input's class is one
 * atomic operation on one word. A take is READ's compare-exchange (pending -> skipped + held);
 * a publication is NEWEST's (held -> completed, NEWEST's count); a loss is the engine's fence
 * of READ and NEWEST (held -> lost: from then on the replaced Worker can neither take nor
 * publish), worked out on the engine's thread from the words the fence read. The counts that
 * stats() reports are derived from these words (engine.ts, EpochAccount), never from a count
 * a Worker adds after the fact; the argument, kill point by kill point, is in engine.ts
 * (#settle) and docs/DESIGN.md.
 *
 * Cadence (issue 16): the caller's side stores nothing extra; the Worker learns the block
 * period from the submit times and sleeps until just before the next block is due, so that
 * at a steady cadence submit() finds it awake (SLEEPING 0) and makes no system call.
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
  /**
   * Test hook (src/rt/testing.ts): each Worker pauses once in the middle of writing a result,
   * on its own publication number TEST_PAUSE_EVERY (0: never), until a replacement has
   * published 3 results or TEST_PAUSE_MS passed.
   */
  TEST_PAUSE_MS: 6,
  TEST_PAUSE_EVERY: 7,
  /** Notifies submit() made because the Worker slept (the fallback; 0 at a steady cadence). */
  NOTIFIES: 8,
  /** The caller's block period hint in microseconds (0: learn it from the submit times). */
  PERIOD_US: 9,

  // Written by the Worker.
  /** Position, takes and epoch packed (packRead): the Worker's take, the engine's fence. */
  READ: 16,
  /**
   * 1 while the Worker sleeps until notified: submit() notifies. 2 while it dozes until just
   * before the next block is due (its wake time in the wakeAt word): submit() notifies only an
   * input that comes earlier than that, so at a steady cadence it never does.
   */
  SLEEPING: 17,
  HEARTBEAT: 18,
  STATE: 19,
  /** The newest published result: buffer, epoch and count packed (packNewest). */
  NEWEST: 22,
  /**
   * Publish attempts that found no free buffer (every other one claimed by a replaced Worker
   * paused mid-write); the Worker keeps the result and tries again.
   */
  UNPUBLISHED: 24,
  /** Steps that began with the Worker awake (it woke before the block was due). */
  WOKEN_EARLY: 25,
  /** The block period the Worker works with, microseconds (0: none learned yet). */
  LEARNED_PERIOD_US: 26,
  /** Microseconds the Worker spent polling for inputs (awake, not in a step). */
  POLL_US: 27,

  // Result headers, one word per buffer each, written by the Worker under the version.
  VERSION: 32,
  RESULT_SEQ: 36,
  CHECKSUM: 40,
  /** The publication (packNewest's count and buffer fields) the buffer was written for. */
  PUB_ID: 44,
  /** The epoch of the Worker writing the buffer; 0 when free. */
  CLAIM: 48,

  // Worker records, WORKER_RECORDS each.
  OWNER: 64,
  /** Publications the record's Worker counted (it adds 1 after each NEWEST compare-exchange). */
  DONE: 72,
} as const;

export const CONTROL_WORDS = 80;
export const WORKER_RECORDS = 8;

/** The record of the Worker serving `epoch`. */
export function recordOf(epoch: number): number {
  return epoch & (WORKER_RECORDS - 1);
}

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

/** NEWEST's buffer field when nothing is published yet. */
export const NO_BUFFER = 3;
const EPOCH_BITS = 8;
const EPOCH_MASK = (1 << EPOCH_BITS) - 1;
const COUNT_SHIFT = 2 + EPOCH_BITS;
/** Publications counted modulo 2^21: a reader would have to pause across 2^21 to be fooled. */
export const COUNT_MASK = (1 << (31 - COUNT_SHIFT)) - 1;

/** NEWEST as one non-negative Int32: buffer in bits 0-1, epoch 2-9, count 10-30. */
export function packNewest(buffer: number, epoch: number, count: number): number {
  return buffer | ((epoch & EPOCH_MASK) << 2) | ((count & COUNT_MASK) << COUNT_SHIFT);
}

export function newestBuffer(newest: number): number {
  return newest & 3;
}

export function newestEpoch(newest: number): number {
  return (newest >>> 2) & EPOCH_MASK;
}

export function newestCount(newest: number): number {
  return (newest >>> COUNT_SHIFT) & COUNT_MASK;
}

/** NEWEST without its epoch field: what PUB_ID holds for the buffer it names. */
export function publicationId(newest: number): number {
  return newest & ~(EPOCH_MASK << 2);
}

/**
 * Moves NEWEST's epoch field to `epoch`, keeping the result it names: every compare-exchange
 * a Worker of another epoch makes on it fails from now on. Returns NEWEST as it was just
 * before: its count is every publication the replaced Worker made.
 */
export function fenceNewest(control: Int32Array, epoch: number): number {
  for (;;) {
    const newest = Atomics.load(control, Control.NEWEST);
    const fenced = packNewest(newestBuffer(newest), epoch, newestCount(newest));
    if (Atomics.compareExchange(control, Control.NEWEST, newest, fenced) === newest) return newest;
  }
}

/** READ's position field: 11 bits, more than MAX_SLOTS needs (the ring holds <= 1024). */
export const POS_MASK = (1 << 11) - 1;
const TAKES_SHIFT = 11;
/** READ's takes field: the number of takes modulo 2^13. */
export const TAKES_MASK = (1 << 13) - 1;
const READ_EPOCH_SHIFT = 24;

/** READ as one Int32: position in bits 0-10, takes 11-23, epoch 24-31. */
export function packRead(position: number, takes: number, epoch: number): number {
  return (position & POS_MASK) | ((takes & TAKES_MASK) << TAKES_SHIFT) |
    ((epoch & EPOCH_MASK) << READ_EPOCH_SHIFT);
}

export function readTakes(read: number): number {
  return (read >>> TAKES_SHIFT) & TAKES_MASK;
}

export function readEpoch(read: number): number {
  return (read >>> READ_EPOCH_SHIFT) & EPOCH_MASK;
}

/**
 * The full read sequence number: `write` minus the inputs pending, which READ's position
 * gives modulo 2^11 and the ring bounds by MAX_SLOTS.
 */
export function readSeq(read: number, write: number): number {
  return (write - ((write - read) & POS_MASK)) | 0;
}

/**
 * Moves READ's epoch field to `epoch`, keeping position and takes: every take a Worker of
 * another epoch tries fails from now on. Returns READ as it was just before: its takes field
 * counts every take the replaced Worker made.
 */
export function fenceRead(control: Int32Array, epoch: number): number {
  for (;;) {
    const read = Atomics.load(control, Control.READ);
    const fenced = packRead(read, readTakes(read), epoch);
    if (Atomics.compareExchange(control, Control.READ, read, fenced) === read) return read;
  }
}

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
  wakeAtAt: number;
  inputAt: number;
  resultsAt: number;
  latencyAt: number;
  byteLength: number;
}

/** The typed views of one engine buffer; both sides create them once. */
export interface Views {
  control: Int32Array;
  submittedMs: Float64Array;
  /** One value: when a dozing Worker (SLEEPING 2) wakes, engine clock ms. */
  wakeAtMs: Float64Array;
  input: Float32Array;
  results: Float32Array;
  /** The same memory as `results`, as bits, for the checksum. */
  resultWords: Uint32Array;
  latency: Int32Array;
}

/** Below READ's position range (POS_MASK + 1), so the count pending is never ambiguous. */
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
  const wakeAtAt = submittedAt + shape.slots * 8;
  const inputAt = wakeAtAt + 8;
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
    wakeAtAt,
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
  new Int32Array(buffer, 0, CONTROL_WORDS)[Control.NEWEST] = packNewest(NO_BUFFER, 0, 0);
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
    wakeAtMs: new Float64Array(buffer, layout.wakeAtAt, 1),
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
