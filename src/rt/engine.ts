/**
 * The real-time engine: a Worker owns the models and runs the pipeline; the caller (an audio
 * thread, a UI loop) talks to it through one SharedArrayBuffer (layout.ts). The caller side,
 * `submit`, `latest` and `createBuffers`, never waits, never awaits, and `submit` and `latest`
 * allocate nothing (test/rt.test.ts counts it). A Worker that throws, dies or stops beating is
 * replaced; meanwhile `latest` keeps returning the last good result.
 *
 * ```ts
 * const engine = await RealtimeEngine.start({ policy: "latest", precision: "bf16" });
 * const out = engine.createBuffers();                  // once, outside the audio callback
 * // in the callback, every block:
 * engine.submit(features, context);                    // 128 audio features, 204 context
 * const seq = engine.latest(out);                      // newest result's input number, or < 0
 * // ...
 * await engine.stop();
 * ```
 *
 * With `input: "emotion"` the engine takes a 64-value emotion vector per submit instead (text,
 * biometrics or a generator choosing the mood) and runs the pipeline from it
 * (EmotionPipeline.stepFromEmotion): the recognizer does not run, and `emotion` in each result
 * is the vector submitted.
 *
 * ```ts
 * const engine = await RealtimeEngine.start({ input: "emotion" });
 * engine.submit(emotionVector, context);               // 64 values (engine.inputSize), 204
 * ```
 *
 * The context (optional, all zero when absent; `engine.contextSize` values, 204 for the emotion
 * pipeline and 0 for a graph or a runner of the caller's own) is what the symbolic models know
 * of the music so far: the decoder's `context()` (src/music/decode.ts, docs/MUSIC.md). Each
 * input slot holds [values | context].
 *
 * Sequence numbers count accepted submits from 0 (modulo 2^31): `latest` returns the number of
 * the input its result was computed from. The engine is used from the thread that started it.
 */

import process from "node:process";
import { CadenzaError, type CadenzaErrorCode } from "../errors.ts";
import { describe } from "../model/spec.ts";
import { setOwn } from "../own.ts";
import type { Precision } from "../model/model.ts";
import type { LibraryChoice } from "../native/library.ts";
import type { EmotionOutputs } from "../pipeline/emotion.ts";
import { HISTOGRAM_WORDS, histogramSummary, type LatencySummary } from "./histogram.ts";
import {
  checkShape,
  Command,
  computeLayout,
  Control,
  COUNT_MASK,
  createBuffer,
  createViews,
  fenceNewest,
  fenceRead,
  Histogram,
  type Layout,
  type LayoutShape,
  newestCount,
  NO_BUFFER,
  packRead,
  POS_MASK,
  publicationId,
  readEpoch,
  readSeq,
  readTakes,
  recordOf,
  RESULT_BUFFERS,
  TAKES_MASK,
  type Views,
  WORKER_RECORDS,
  WORKER_STATE_NAMES,
} from "./layout.ts";
import {
  EMOTION_CONTEXT_SIZE,
  type GraphConfig,
  type InputMode,
  type RunnerConfig,
} from "./runner.ts";
import type { Policy, WakeMode } from "./worker.ts";

export type { Policy, WakeMode } from "./worker.ts";
export type { InputMode } from "./runner.ts";

/** What `latest()` returns before the first result is published. */
export const NO_RESULT = -1;
/**
 * What `latest()` returns when every attempt found the result being overwritten (the Worker
 * lapped the reader); counted in stats().readFailures. `into` keeps the last good result.
 */
export const READ_FAILED = -2;

/** Output name -> values; `createBuffers()` makes one to pass to `latest()`. */
export type PipelineBuffers = Record<string, Float32Array>;

export interface RealtimeOptions {
  /** Folder of the five emotion models (default: the project's models/). */
  models?: string;
  /** A graph of model files to run instead of the emotion pipeline. */
  graph?: GraphConfig;
  /** A module exporting `createStepRunner(config)` to run instead (see src/rt/runner.ts). */
  runner?: string | URL;
  /** "latest" (default): the Worker skips to the newest input. "every": it runs each one. */
  policy?: Policy;
  /**
   * What submit() takes: "features" (default), 128 audio features (a graph's input with
   * `graph`), or "emotion", a 64-value emotion vector run with stepFromEmotion (emotion
   * pipeline only). `engine.inputSize` says how many values; either comes with an optional
   * context (`engine.contextSize` values) for the emotion pipeline.
   */
  input?: InputMode;
  /** Input ring slots, a power of two (default 8). */
  slots?: number;
  /**
   * How the Worker waits for input (default "cadence"): "cadence" learns the block period from
   * the submit times (or takes `blockMs`) and wakes just before each block is due, so that
   * submit() at a steady cadence makes no system call; "notify" sleeps until submit() wakes
   * it with Atomics.notify. The cadence costs CPU: the Worker polls for up to a few hundred
   * microseconds around each block (docs/PERFORMANCE.md).
   */
  wake?: WakeMode;
  /** The caller's block period in ms (e.g. 128 / 48000 * 1000); default: learned. */
  blockMs?: number;
  /**
   * With wake "cadence": on waking before a block, ask the CPU to bring the models' memory
   * back into the caches before the input comes (default true: the int8 step at block rate
   * took 27% less, bf16 12%, f32 the same; docs/PERFORMANCE.md, "Block rate").
   */
  prefetch?: boolean;
  /** A running Worker whose heartbeat stalls this long is replaced (default 2000 ms). */
  watchdogMs?: number;
  /** Failed replacements in a row before the engine gives up (default 5). */
  maxRestarts?: number;
  /**
   * How long starting a Worker (loading its models) may take (default 60000 ms; Infinity for
   * no limit).
   */
  loadTimeoutMs?: number;
  /** The native library: "safe", "fast" or a path (default CADENZA_LIB, else "safe"). */
  library?: LibraryChoice;
  /**
   * How the Worker's models hold their weight matrices (loadModel's `precision`): "f32"
   * (default) or "bf16", half the bytes streamed per step. Checked when the models load.
   */
  precision?: Precision;
}

export type EngineState = "running" | "restarting" | "failed" | "stopping" | "stopped";

/** Everything `stats()` reports: counters, latencies (us, Worker clock), load, memory. */
export interface RealtimeStats {
  policy: Policy;
  slots: number;
  state: EngineState;
  workerState: string;
  input: InputMode;
  /** Whether the Worker runs the native graph: one native call per step. */
  nativeGraph: boolean;
  wake: WakeMode;
  /** The block period the Worker works with (ms; 0 until learned, or with wake "notify"). */
  blockMs: number;
  /** Submits that woke the Worker with Atomics.notify (a system call on the caller's thread). */
  notifies: number;
  /** Steps whose input the Worker was already awake for (wake "cadence"). */
  wokenEarly: number;
  /** Milliseconds the Worker spent polling for inputs (the CPU the cadence costs). */
  pollMs: number;
  /** Accepted submits. */
  submitted: number;
  /** Submits refused because the ring was full (or the engine stopped). */
  rejected: number;
  /** Inputs the "latest" policy passed over for a newer one. */
  skipped: number;
  /**
   * Inputs a Worker took and never published: it was replaced (it died, hung, or was paused
   * past the watchdog) while holding one, or the engine stopped while it did. Counted when the
   * engine fences that Worker out, from then on unable to publish, at most one per
   * replacement (and one at stop). submitted = completed + skipped + lost + pending + inFlight.
   */
  lost: number;
  /**
   * Inputs taken and not yet published: the one the serving Worker is stepping (0 or 1; a
   * replaced Worker's is counted lost at once).
   */
  inFlight: number;
  /** rejected + skipped + lost: inputs that never produced a result. */
  dropped: number;
  completed: number;
  /** Accepted inputs the Worker has not taken yet. */
  pending: number;
  /** latest() calls that found only torn copies (the Worker outran the reader twice). */
  readFailures: number;
  workerRestarts: number;
  /** Replaced Workers that left on their own, their models disposed. */
  workersExited: number;
  /**
   * Replaced Workers that were terminated before they could leave (hung in JavaScript past the
   * grace period): their models' native memory could not be freed.
   */
  workersTerminated: number;
  lastError: string | null;
  latencyUs: {
    /** One whole pipeline step. */
    pipeline: LatencySummary;
    /** submit() to the result being published. */
    endToEnd: LatencySummary;
    /** Each model's forward call. */
    models: Record<string, LatencySummary>;
  };
  modelLoadMs: number;
  weightBytes: number;
  memory: { rssBytes: number; heapUsedBytes: number };
}

/** Every key RealtimeOptions has; any other is refused (a misspelled option). */
const OPTION_KEYS: readonly string[] = [
  "models",
  "graph",
  "runner",
  "policy",
  "input",
  "slots",
  "wake",
  "blockMs",
  "prefetch",
  "watchdogMs",
  "maxRestarts",
  "loadTimeoutMs",
  "library",
  "precision",
];

const DEFAULTS = { policy: "latest" as Policy, slots: 8, watchdogMs: 2000, maxRestarts: 5 };
const LOAD_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 2000;
/** The longest delay setTimeout honours (about 24.8 days). */
const TIMER_MS_MAX = 0x7fffffff;
/** Copies latest() tries before giving up; each retry needs the Worker to lap the reader. */
const READ_ATTEMPTS = 4;
/** A submit this much (ms) before a dozing Worker's wake time lets it wake by itself. */
const EARLY_SLACK_MS = 0.05;
/** A dozing Worker this far (ms) past its wake time overslept: a submit wakes it. */
const OVERSLEPT_MS = 0.2;
/** The middle and half-width of the punctual window [-EARLY_SLACK_MS, OVERSLEPT_MS]. */
const PUNCTUAL_MID_MS = (OVERSLEPT_MS - EARLY_SLACK_MS) / 2;
const PUNCTUAL_HALF_MS = (OVERSLEPT_MS + EARLY_SLACK_MS) / 2;
/** How long a replaced Worker has to leave on its own before it is terminated. */
const GRACE_MS = 1000;

/** A replaced Worker not yet known to be gone. */
interface Retired {
  worker: Worker;
  epoch: number;
  sinceMs: number;
  terminated: boolean;
}

/** What src/rt/testing.ts reaches: kept off the public class. */
export interface EngineInternals {
  control: Int32Array;
  command(command: number): void;
  worker(): Worker | null;
  /** Puts both sequence numbers at `start`, the ring empty (with the Worker stalled). */
  moveSequences(start: number): void;
}

/**
 * The epoch being served, and READ's takes and NEWEST's count when it began (at its fence).
 * Its counts are derived from the shared words (layout.ts, "Accounting"), each exact however
 * the Worker was killed:
 *
 * - takes: READ's takes field minus `takesAt` (modulo 2^13), changed only by the take's one
 *   compare-exchange. Read together with the publications below, it is only ever 0 or 1
 *   ahead of them (the Worker takes only when it holds nothing), so 13 bits are plenty.
 * - publications: NEWEST's count minus `countAt` (modulo 2^21), changed only by the
 *   publication's one compare-exchange, extended to 32 bits by DONE[record], which the
 *   Worker adds to right after: DONE is at most one short (a Worker killed between the two),
 *   so DONE + ((count - countAt - DONE) mod 2^21) is the exact number. DONE is read before
 *   NEWEST so that it never counts a publication the count read misses.
 */
interface EpochAccount {
  epoch: number;
  record: number;
  takesAt: number;
  countAt: number;
}

const internalsOf = new WeakMap<object, EngineInternals>();

/** For src/rt/testing.ts only: not exported from src/rt/index.ts or src/index.ts. */
export function engineInternals(engine: object): EngineInternals {
  const internals = internalsOf.get(engine);
  if (internals === undefined) throw new CadenzaError("E_ARGUMENT", "not a RealtimeEngine");
  return internals;
}

/** What the Worker reports once its models are loaded. */
interface Loaded {
  inputSize: number;
  outputNames: string[];
  outputSizes: number[];
  modelNames: string[];
  loadMs: number;
  weightBytes: number;
  native: boolean;
}

interface Settings {
  policy: Policy;
  input: InputMode;
  wake: WakeMode;
  blockMs: number;
  prefetch: boolean;
  slots: number;
  watchdogMs: number;
  maxRestarts: number;
  loadTimeoutMs: number;
  config: RunnerConfig;
}

export class RealtimeEngine<B extends PipelineBuffers = EmotionOutputs> {
  // Caller side: read by submit/latest, fixed at start.
  readonly #control: Int32Array;
  readonly #input: Float32Array;
  readonly #submittedMs: Float64Array;
  /** When a dozing Worker wakes (layout.ts, SLEEPING 2). */
  readonly #wakeAtMs: Float64Array;
  readonly #slotMask: number;
  /** Floats per input slot: [values | context]. */
  readonly #inputSize: number;
  /** What submit takes: the values, then the optional context. */
  readonly #valueSize: number;
  readonly #contextSize: number;
  readonly #outputNames: readonly string[];
  readonly #outputSizes: readonly number[];
  /** Each result buffer, whole, for the one copy latest() makes. */
  readonly #resultBuffers: readonly Float32Array[];
  /**
   * latest() copies a result here and checks its version before it touches `into`, so a read
   * that fails leaves the caller's last good result as it was.
   */
  readonly #staging: Float32Array;
  /** Views of each output in #staging, in output order. */
  readonly #stagingViews: readonly Float32Array[];
  #open = true;
  /**
   * In a typed array: a checksum past 2^30 is no small integer, and a plain field would box it
   * anew on every `latest()` that finds a fresh result.
   */
  readonly #checksum = new Int32Array(1);

  // Supervision: runs on the event loop, never inside submit/latest.
  readonly #settings: Settings;
  readonly #layout: Layout;
  readonly #views: Views;
  readonly #loaded: Loaded;
  #worker: Worker | null;
  #state: EngineState = "running";
  #restarts = 0;
  #failuresInRow = 0;
  #lastError: string | null = null;
  /** The epoch being served (null after a fence to an epoch whose record was not free). */
  #account: EpochAccount | null = null;
  /** Totals of the epochs fenced off, modulo 2^32 (#settle). */
  #completedBefore = 0;
  #takenBefore = 0;
  #lost = 0;
  /** Sequence numbers a test hook jumped over (moveSequences): neither skipped nor taken. */
  #readBase = 0;
  #retired: Retired[] = [];
  #exited = 0;
  #terminated = 0;
  #stopping: Promise<void> | null = null;
  #launching: Promise<void> | null = null;
  #restartTimer: ReturnType<typeof setTimeout> | null = null;
  #watchdog: ReturnType<typeof setInterval> | null = null;
  #beat = -1;
  #beatAtMs = 0;

  private constructor(settings: Settings, worker: Worker, loaded: Loaded, layout: Layout) {
    this.#settings = settings;
    this.#worker = worker;
    this.#loaded = loaded;
    this.#layout = layout;
    this.#views = createViews(createBuffer(layout), layout);
    this.#control = this.#views.control;
    this.#input = this.#views.input;
    this.#submittedMs = this.#views.submittedMs;
    this.#wakeAtMs = this.#views.wakeAtMs;
    this.#slotMask = layout.slots - 1;
    this.#inputSize = layout.inputSize;
    const config = settings.config;
    this.#contextSize = config.graph === undefined && config.runner === undefined
      ? EMOTION_CONTEXT_SIZE
      : 0;
    this.#valueSize = layout.inputSize - this.#contextSize;
    this.#outputNames = loaded.outputNames;
    this.#outputSizes = loaded.outputSizes;
    const size = layout.resultSize;
    const buffers: Float32Array[] = [];
    for (let b = 0; b < RESULT_BUFFERS; b++) {
      buffers.push(this.#views.results.subarray(b * size, (b + 1) * size));
    }
    this.#resultBuffers = buffers;
    this.#staging = new Float32Array(size);
    this.#stagingViews = loaded.outputSizes.map((width, k) =>
      this.#staging.subarray(layout.outputOffsets[k], layout.outputOffsets[k] + width)
    );
    internalsOf.set(this, {
      control: this.#control,
      command: (command) => this.#command(command),
      worker: () => this.#worker,
      moveSequences: (start) => this.#moveSequences(start),
    });
  }

  /** Starts the Worker, waits for its models to load and for it to serve. */
  static async start<B extends PipelineBuffers = EmotionOutputs>(
    options: RealtimeOptions = {},
  ): Promise<RealtimeEngine<B>> {
    const settings = checkOptions(options);
    const { worker, loaded } = await spawn(settings);
    let engine: RealtimeEngine<B>;
    try {
      const layout = computeLayout(shapeOf(settings, loaded));
      engine = new RealtimeEngine<B>(settings, worker, loaded, layout);
      await engine.#serve(worker, 1);
    } catch (err) {
      worker.terminate();
      throw err;
    }
    engine.#watchdog = setInterval(() => engine.#checkHeartbeat(), watchdogTick(settings));
    return engine;
  }

  /**
   * Copies `features` (inputSize values: 128 audio features, or a 64-value emotion vector with
   * input "emotion") and `context` (contextSize values; all zero when absent) into the next
   * input slot and wakes the Worker if it sleeps. Returns false, copying nothing, when the
   * ring is full or the engine is stopped. Never waits and allocates nothing.
   */
  submit(features: Float32Array, context?: Float32Array): boolean {
    if (features?.length !== this.#valueSize) this.#throwInputLength(features);
    if (context !== undefined && context?.length !== this.#contextSize) {
      this.#throwContextLength(context);
    }
    // The clock is read on every call, refused ones too, and before any branch. Under V8 a
    // call that returns a fraction boxes it (16 bytes) unless the optimiser inlines it, and
    // Maglev inlines no call made on fewer than 95% of the method's runs: read only once a
    // slot was found, as an audio callback that outruns the Worker finds one 5% of the time,
    // performance.now() stayed out of line and every accepted submit allocated.
    const now = performance.now();
    const control = this.#control;
    const write = Atomics.load(control, Control.WRITE_SEQ);
    // READ's low bits are the read position modulo 2^11 (layout.ts): the difference, masked,
    // is the count pending, never more than the slots.
    const read = Atomics.load(control, Control.READ);
    if (!this.#open || ((write - read) & POS_MASK) > this.#slotMask) {
      Atomics.add(control, Control.REJECTED, 1);
      return false;
    }
    const slot = write & this.#slotMask;
    const at = slot * this.#inputSize;
    this.#input.set(features, at);
    if (this.#contextSize > 0) {
      if (context === undefined) this.#input.fill(0, at + this.#valueSize, at + this.#inputSize);
      else this.#input.set(context, at + this.#valueSize);
    }
    this.#submittedMs[slot] = now;
    Atomics.store(control, Control.WRITE_SEQ, (write + 1) | 0);
    // Asleep (1), or dozing (2) until after this input, or past its wake time (the timer fired
    // late): wake it. A Worker dozing until just before the block is due finds a punctual
    // input itself: no system call here. Whether this input is punctual is worked out on every
    // accepted call, not only for a dozing Worker, so that the optimised code never meets a
    // comparison it has no type feedback for (a deoptimisation, then unoptimised runs that box).
    const sleeping = Atomics.load(control, Control.SLEEPING);
    const punctual = Math.abs(now - this.#wakeAtMs[0] - PUNCTUAL_MID_MS) <= PUNCTUAL_HALF_MS;
    if (sleeping === 1 || (sleeping === 2 && !punctual)) {
      Atomics.add(control, Control.NOTIFIES, 1);
      Atomics.notify(control, Control.WRITE_SEQ, 1);
    }
    return true;
  }

  /**
   * Copies the newest complete result into `into` (from `createBuffers()`) and returns the
   * sequence number of the input it came from (>= 0). Returns NO_RESULT (-1) before the first
   * result, and READ_FAILED (-2) in the rare case that every attempt found the result being
   * overwritten; in both cases, and when it throws, `into` is left as it was (the last good
   * result stays). Never waits and allocates nothing.
   */
  latest(into: B): number {
    const names = this.#outputNames;
    const count = names.length;
    for (let k = 0; k < count; k++) {
      const target = into[names[k]];
      if (!(target instanceof Float32Array) || target.length !== this.#outputSizes[k]) {
        this.#throwInto(k);
      }
    }
    const control = this.#control;
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const newest = Atomics.load(control, Control.NEWEST);
      const buffer = newest & 3;
      if (buffer === NO_BUFFER) return NO_RESULT;
      const version = Atomics.load(control, Control.VERSION + buffer);
      if ((version & 1) !== 0) continue;
      // Written for another publication than the one NEWEST names: rewritten since.
      if (Atomics.load(control, Control.PUB_ID + buffer) !== publicationId(newest)) continue;
      const seq = Atomics.load(control, Control.RESULT_SEQ + buffer);
      const checksum = Atomics.load(control, Control.CHECKSUM + buffer);
      this.#staging.set(this.#resultBuffers[buffer]);
      // Re-read the version with a read-modify-write that writes it back unchanged: the
      // Worker's exchange that makes it odd then reads from this write, which orders the copy
      // before any of its writes in the language's memory model, on any CPU (a plain load
      // would rely on x86's ordering of loads).
      if (
        Atomics.compareExchange(control, Control.VERSION + buffer, version, version) === version
      ) {
        const staged = this.#stagingViews;
        for (let k = 0; k < count; k++) into[names[k]].set(staged[k]);
        this.#checksum[0] = checksum;
        return seq;
      }
    }
    Atomics.add(control, Control.READ_FAILURES, 1);
    return READ_FAILED;
  }

  /**
   * The checksum published with the result the last successful `latest()` returned (see
   * layout.ts resultChecksum): it covers that result's sequence number and all its outputs.
   */
  get resultChecksum(): number {
    return this.#checksum[0];
  }

  /** Output buffers for `latest()`: one view per output over one contiguous Float32Array. */
  createBuffers(): B {
    const values = new Float32Array(this.#layout.resultSize);
    const buffers: PipelineBuffers = {};
    for (let k = 0; k < this.#outputNames.length; k++) {
      const at = this.#layout.outputOffsets[k];
      const view: Float32Array = values.subarray(at, at + this.#outputSizes[k]);
      setOwn(buffers, this.#outputNames[k], view);
    }
    return Object.freeze(buffers) as B;
  }

  /** Output names in result order. */
  get outputNames(): readonly string[] {
    return this.#outputNames;
  }

  /** The values submit takes (128 features, 64 emotion values, or a graph's input). */
  get inputSize(): number {
    return this.#valueSize;
  }

  /** The context values submit takes beside them: 204 for the emotion pipeline, else 0. */
  get contextSize(): number {
    return this.#contextSize;
  }

  /** One plain object with every counter and latency; allocates, so not for the audio thread. */
  stats(): RealtimeStats {
    const control = this.#control;
    const count = (word: number) => Atomics.load(control, word) >>> 0;
    // Derived from the words each step changes in one operation (EpochAccount): DONE, then
    // NEWEST, then READ, then WRITE_SEQ, so that nothing read later is missing what an earlier
    // word counted. Exact at any quiet moment; while the Worker runs, inFlight can read 2 for
    // a take made between the NEWEST and READ loads.
    const account = this.#account;
    const done = account === null ? 0 : Atomics.load(control, Control.DONE + account.record);
    const newest = Atomics.load(control, Control.NEWEST);
    const read = Atomics.load(control, Control.READ);
    const write = Atomics.load(control, Control.WRITE_SEQ);
    let completedNow = 0;
    let inFlight = 0;
    if (account !== null) {
      completedNow = published(account, done, newest);
      inFlight = (readTakes(read) - account.takesAt - completedNow) & TAKES_MASK;
    }
    const submitted = write >>> 0;
    const pending = (write - read) & POS_MASK;
    const taken = this.#takenBefore + completedNow + inFlight;
    const skipped = (readSeq(read, write) - this.#readBase - taken) >>> 0;
    const completed = (this.#completedBefore + completedNow) >>> 0;
    const rejected = count(Control.REJECTED);
    const lost = this.#lost;
    const summary = (h: number) => histogramSummary(this.#views.latency, h * HISTOGRAM_WORDS);
    const models: Record<string, LatencySummary> = {};
    for (const [m, name] of this.#loaded.modelNames.entries()) {
      models[name] = summary(Histogram.FIRST_MODEL + m);
    }
    const memory = process.memoryUsage();
    return {
      policy: this.#settings.policy,
      slots: this.#layout.slots,
      state: this.#state,
      workerState: WORKER_STATE_NAMES[Atomics.load(control, Control.STATE)] ?? "unknown",
      input: this.#settings.input,
      nativeGraph: this.#loaded.native,
      wake: this.#settings.wake,
      blockMs: count(Control.LEARNED_PERIOD_US) / 1000,
      notifies: count(Control.NOTIFIES),
      wokenEarly: count(Control.WOKEN_EARLY),
      pollMs: count(Control.POLL_US) / 1000,
      submitted,
      rejected,
      skipped,
      lost,
      inFlight,
      dropped: rejected + skipped + lost,
      completed,
      pending,
      readFailures: count(Control.READ_FAILURES),
      workerRestarts: this.#restarts,
      workersExited: this.#exited,
      workersTerminated: this.#terminated,
      lastError: this.#lastError,
      latencyUs: {
        pipeline: summary(Histogram.PIPELINE),
        endToEnd: summary(Histogram.END_TO_END),
        models,
      },
      modelLoadMs: this.#loaded.loadMs,
      weightBytes: this.#loaded.weightBytes,
      memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed },
    };
  }

  /**
   * Asks the Worker to finish its step and exit; terminates it if it does not in time. Every
   * call returns the same promise: it settles once the engine is stopped.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stopNow();
    return this.#stopping;
  }

  async #stopNow(): Promise<void> {
    this.#open = false;
    this.#state = "stopping";
    if (this.#watchdog !== null) clearInterval(this.#watchdog);
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    await this.#launching?.catch(() => undefined);
    const worker = this.#worker;
    this.#worker = null;
    if (worker !== null) {
      const stopped = nextMessage(worker, "stopped", STOP_TIMEOUT_MS);
      this.#command(Command.STOP);
      if (await stopped.then(() => true, () => false)) worker.terminate();
      else this.#retire(worker, Atomics.load(this.#control, Control.EPOCH));
    }
    // A Worker that still serves this buffer (one a restart had handed it to when stop came,
    // or one Deno could not terminate) leaves its loop at its next turn and publishes nothing.
    this.#command(Command.STOP);
    this.#fence(this.#nextEpoch() ?? Atomics.load(this.#control, Control.EPOCH) + 1);
    for (const retired of this.#retired) {
      if (!this.#checkGone(retired)) retired.worker.terminate();
    }
    this.#state = "stopped";
  }

  #command(command: number): void {
    Atomics.store(this.#control, Control.COMMAND, command);
    Atomics.notify(this.#control, Control.WRITE_SEQ);
    Atomics.notify(this.#control, Control.EPOCH);
  }

  #throwInputLength(features: unknown): never {
    const what = this.#settings.input === "emotion" ? "an emotion vector" : "features";
    throw new CadenzaError(
      "E_ARGUMENT",
      `RealtimeEngine.submit: ${what}: expected ${this.#valueSize} values (a Float32Array), ` +
        `got ${describe(features)}`,
    );
  }

  #throwContextLength(context: unknown): never {
    throw new CadenzaError(
      "E_ARGUMENT",
      `RealtimeEngine.submit: context: expected ${this.#contextSize} values (a Float32Array` +
        `${this.#contextSize === 0 ? ": this engine's pipeline takes no context" : ""}), ` +
        `got ${describe(context)}`,
    );
  }

  #throwInto(k: number): never {
    throw new CadenzaError(
      "E_ARGUMENT",
      `RealtimeEngine.latest: into.${this.#outputNames[k]} must be a Float32Array of ` +
        `${this.#outputSizes[k]} values (use createBuffers())`,
    );
  }

  /** Hands the buffer to a loaded Worker under `epoch` and waits until it serves. */
  async #serve(worker: Worker, epoch: number): Promise<void> {
    this.#fence(epoch);
    // A crash or stall request aimed at the Worker being replaced must not reach this one.
    if (Atomics.load(this.#control, Control.COMMAND) !== Command.STOP) {
      Atomics.store(this.#control, Control.COMMAND, Command.NONE);
    }
    const running = nextMessage(worker, "running", this.#settings.loadTimeoutMs);
    worker.postMessage({
      type: "start",
      buffer: this.#control.buffer,
      shape: shapeOf(this.#settings, this.#loaded),
      policy: this.#settings.policy,
      wake: this.#settings.wake,
      blockMs: this.#settings.blockMs,
      prefetch: this.#settings.prefetch,
      epoch,
      timeOriginMs: performance.timeOrigin,
    });
    await running;
    worker.onmessage = (event: MessageEvent) => {
      const data = event.data;
      if (data?.type === "failed") this.#onDeath(worker, `the Worker failed: ${data.message}`);
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#onDeath(worker, `the Worker threw: ${event.message}`);
    };
    // Bun reports a Worker that is gone (terminated, or closed after a failure); Deno does not.
    worker.addEventListener("close", () => this.#onDeath(worker, "the Worker exited", true));
    this.#beat = -1;
  }

  /**
   * Hands the buffer to `epoch` (layout.ts): reserves its record, and moves EPOCH, READ's and
   * NEWEST's epoch fields to it, so no Worker of another epoch can take or publish from now
   * on; settles the accounts of the epoch it ends (#settle); wakes any Worker that waits, so
   * a replaced one notices at once. Fencing the epoch being served again (#serve after the
   * #onDeath that reserved it, which no Worker has served yet) changes nothing.
   */
  #fence(epoch: number): void {
    const control = this.#control;
    const record = recordOf(epoch);
    const again = this.#account !== null && this.#account.epoch === epoch;
    const free = Atomics.load(control, Control.OWNER + record) === 0;
    Atomics.store(control, Control.OWNER + record, epoch);
    Atomics.store(control, Control.EPOCH, epoch);
    // READ first: once no take can succeed, the publications NEWEST's fence sees are final.
    const read = fenceRead(control, epoch);
    const newest = fenceNewest(control, epoch);
    if (!again) {
      this.#settle(read, newest);
      if (free) {
        // The record's last Worker is gone (it cleared OWNER, or it was killed and the engine
        // did): no late add can reach DONE any more.
        Atomics.store(control, Control.DONE + record, 0);
        this.#account = {
          epoch,
          record,
          takesAt: readTakes(read),
          countAt: newestCount(newest),
        };
      } else {
        // No free record (the engine gives up, or stops): no Worker will serve this epoch.
        this.#account = null;
      }
    }
    Atomics.notify(control, Control.EPOCH);
    Atomics.notify(control, Control.WRITE_SEQ);
  }

  /**
   * Closes the accounts of the epoch just fenced off, from READ and NEWEST as the fence found
   * them: no take and no publication of that epoch can come after. It held an input iff it
   * took one more than it published; that input can never be published now, so it is lost,
   * here, on the engine's thread, in the same turn as the fence (stats() runs on this thread
   * too and never sees the fence without this).
   *
   * Why the counts are exact wherever the Worker was killed: each change of an input's class
   * is one atomic operation on one word, and each count is a function of those words.
   * 1. Killed before a take's compare-exchange of READ (worker.ts #take): READ unchanged, the
   *    inputs stay pending (the copy it made was private).
   * 2. Killed after it: READ moved past the input taken and its takes went up by one, in the
   *    same operation: the inputs passed over are skipped (position minus takes) and the one
   *    taken is held (takes minus publications) with nothing left to count.
   * 3. Killed before the publication's compare-exchange of NEWEST (worker.ts #publish): still
   *    held; fenced, it is counted lost here.
   * 4. Killed after it and before the add to DONE: completed (NEWEST's count); DONE is one
   *    short, which EpochAccount's reading of it allows for.
   * 5. Killed after the add: completed, DONE exact.
   * A Worker that is replaced but still runs (hung, paused, Deno) changes nothing counted after
   * the fence: its take and its publication both fail on the epoch, and a late add to DONE
   * lands in its own record, which is not read again until a new epoch takes it over (only
   * once the Worker is gone, which clears it first).
   */
  #settle(read: number, newest: number): void {
    const account = this.#account;
    if (account === null) return;
    const done = Atomics.load(this.#control, Control.DONE + account.record);
    const completed = published(account, done, newest);
    const held = (readTakes(read) - account.takesAt - completed) & TAKES_MASK;
    this.#completedBefore = (this.#completedBefore + completed) >>> 0;
    this.#takenBefore = (this.#takenBefore + completed + held) >>> 0;
    this.#lost = (this.#lost + held) >>> 0;
  }

  /** The test hook (testing.ts moveSequences): the Worker must be stalled, the ring empty. */
  #moveSequences(start: number): void {
    const control = this.#control;
    const read = Atomics.load(control, Control.READ);
    const write = Atomics.load(control, Control.WRITE_SEQ);
    if (((write - read) & POS_MASK) !== 0) {
      throw new CadenzaError("E_ARGUMENT", "moveSequences: the ring is not empty");
    }
    const moved = packRead(start, readTakes(read), readEpoch(read));
    if (Atomics.compareExchange(control, Control.READ, read, moved) !== read) {
      throw new CadenzaError("E_ARGUMENT", "moveSequences: the Worker is not stalled");
    }
    Atomics.store(control, Control.WRITE_SEQ, start);
    this.#readBase = (this.#readBase + start - write) >>> 0;
  }

  /**
   * The epoch after the current one whose record no Worker still owns (a replaced Worker that
   * has not left keeps its record), or null when all are owned.
   */
  #nextEpoch(): number | null {
    const control = this.#control;
    const current = Atomics.load(control, Control.EPOCH);
    for (let step = 1; step <= WORKER_RECORDS; step++) {
      const epoch = (current + step) | 0;
      if (epoch !== 0 && Atomics.load(control, Control.OWNER + recordOf(epoch)) === 0) {
        return epoch;
      }
    }
    return null;
  }

  /** Watches a replaced Worker until it is gone; it has GRACE_MS to leave on its own. */
  #retire(worker: Worker, epoch: number, closed = false): void {
    const retired: Retired = { worker, epoch, sinceMs: performance.now(), terminated: false };
    this.#retired.push(retired);
    worker.addEventListener("close", () => this.#checkGone(retired, true));
    this.#checkGone(retired, closed);
  }

  /**
   * Whether a replaced Worker is gone. It is once it cleared its record (it counted what it
   * held and disposed its models), or once Bun reports it closed: then, if it had not cleared
   * its record, it was killed first, and the engine counts what it held and frees its claims.
   * Past the grace period a Worker still there is terminated (Bun stops it; Deno cannot stop
   * one that never yields, which then leaves at its next turn).
   */
  #checkGone(retired: Retired, closed = false): boolean {
    const at = this.#retired.indexOf(retired);
    if (at < 0) return true;
    const control = this.#control;
    const record = recordOf(retired.epoch);
    const cleared = Atomics.load(control, Control.OWNER + record) !== retired.epoch;
    if (!cleared && !closed) {
      if (!retired.terminated && performance.now() - retired.sinceMs > GRACE_MS) {
        retired.terminated = true;
        retired.worker.terminate();
      }
      return false;
    }
    this.#retired.splice(at, 1);
    if (cleared) {
      this.#exited++;
    } else {
      // What it held was counted lost at its fence; its claims and record are freed here.
      this.#terminated++;
      for (let b = 0; b < RESULT_BUFFERS; b++) {
        Atomics.compareExchange(control, Control.CLAIM + b, retired.epoch, 0);
      }
      Atomics.compareExchange(control, Control.OWNER + record, retired.epoch, 0);
    }
    retired.worker.terminate();
    return true;
  }

  #checkHeartbeat(): void {
    for (const retired of [...this.#retired]) this.#checkGone(retired);
    if (this.#state !== "running" || this.#worker === null) return;
    const beat = Atomics.load(this.#control, Control.HEARTBEAT);
    const now = performance.now();
    if (beat !== this.#beat) {
      this.#beat = beat;
      this.#beatAtMs = now;
      return;
    }
    const silentMs = now - this.#beatAtMs;
    if (silentMs > this.#settings.watchdogMs) {
      this.#onDeath(this.#worker, `the Worker stopped beating (silent ${silentMs.toFixed(0)} ms)`);
    }
  }

  /** `closed`: Bun reported the Worker gone (it can no longer clear its own record). */
  #onDeath(worker: Worker, reason: string, closed = false): void {
    if (worker !== this.#worker || this.#state !== "running") return;
    this.#lastError = reason;
    this.#state = "restarting";
    this.#worker = null;
    // Not terminated at once: fenced out by the next epoch, the Worker leaves at its next turn
    // and disposes its models itself (#retire terminates it only past the grace period).
    const replaced = Atomics.load(this.#control, Control.EPOCH);
    const next = this.#nextEpoch();
    if (next === null) {
      this.#fence((replaced + 1) | 0);
      this.#retire(worker, replaced, closed);
      this.#lastError = `${reason}; no replacement: ${WORKER_RECORDS} replaced Workers have ` +
        "not left yet";
      this.#state = "failed";
      return;
    }
    this.#fence(next);
    this.#retire(worker, replaced, closed);
    this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    const delayMs = this.#failuresInRow === 0 ? 0 : Math.min(2000, 50 * 2 ** this.#failuresInRow);
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      this.#launching = this.#restart();
    }, delayMs);
  }

  async #restart(): Promise<void> {
    let worker: Worker | null = null;
    /** The epoch handed to `worker` (it may start serving it late, even after a timeout). */
    let served: number | null = null;
    try {
      const spawned = await spawn(this.#settings);
      worker = spawned.worker;
      checkSameShape(this.#loaded, spawned.loaded);
      if (this.#state !== "restarting") throw new CadenzaError("E_DISPOSED", "engine stopped");
      // The epoch #onDeath reserved.
      served = Atomics.load(this.#control, Control.EPOCH);
      await this.#serve(worker, served);
      if (this.#state !== "restarting") throw new CadenzaError("E_DISPOSED", "engine stopped");
    } catch (err) {
      if (worker !== null && served !== null && this.#state === "restarting") {
        // The Worker got its start message but did not confirm in time: it may still begin
        // serving that epoch, so the next attempt must not reuse it. Fence it off (the late
        // Worker's take and publication then fail on the epoch) and watch it leave.
        const next = this.#nextEpoch();
        this.#fence(next ?? ((served + 1) | 0));
        this.#retire(worker, served);
        if (next === null) {
          this.#lastError = `restarting the Worker failed: ${errorText(err)}; no replacement: ` +
            `${WORKER_RECORDS} replaced Workers have not left yet`;
          this.#state = "failed";
          return;
        }
      } else {
        worker?.terminate();
      }
      if (this.#state !== "restarting") return;
      this.#lastError = `restarting the Worker failed: ${errorText(err)}`;
      this.#failuresInRow++;
      if (this.#failuresInRow > this.#settings.maxRestarts) this.#state = "failed";
      else this.#scheduleRestart();
      return;
    } finally {
      this.#launching = null;
    }
    this.#worker = worker;
    this.#restarts++;
    this.#failuresInRow = 0;
    this.#state = "running";
  }
}

function checkOptions(options: RealtimeOptions): Settings {
  const fail = (message: string): never => {
    throw new CadenzaError("E_ARGUMENT", `RealtimeEngine.start: ${message}`);
  };
  if (typeof SharedArrayBuffer !== "function" || typeof Worker !== "function") {
    fail("this runtime lacks SharedArrayBuffer or Worker");
  }
  if (typeof options !== "object" || options === null) fail("options must be an object");
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) {
      fail(`options.${key}: expected no such option (the options are ${OPTION_KEYS.join(", ")})`);
    }
  }
  const policy = options.policy ?? DEFAULTS.policy;
  if (policy !== "latest" && policy !== "every") {
    fail(`policy is ${JSON.stringify(policy)}, expected "latest" or "every"`);
  }
  const input = options.input ?? "features";
  if (input !== "features" && input !== "emotion") {
    fail(`input is ${JSON.stringify(input)}, expected "features" or "emotion"`);
  }
  // A runner module of the caller's own receives `input` in its config and decides.
  if (input === "emotion" && options.graph !== undefined) {
    fail('input "emotion" runs the emotion pipeline; it cannot be combined with graph');
  }
  const wake = options.wake ?? "cadence";
  if (wake !== "cadence" && wake !== "notify") {
    fail(`wake is ${JSON.stringify(wake)}, expected "cadence" or "notify"`);
  }
  const blockMs = options.blockMs ?? 0;
  if (!(blockMs >= 0 && blockMs <= 1000)) {
    fail(`blockMs is ${blockMs}, expected a period in ms, 0..1000 (0: learn it)`);
  }
  const prefetch = options.prefetch ?? true;
  if (typeof prefetch !== "boolean") fail(`prefetch is ${String(prefetch)}, expected a boolean`);
  const slots = options.slots ?? DEFAULTS.slots;
  const problem = checkShape({ slots, inputSize: 1, outputSizes: [1], modelCount: 0 });
  if (problem !== null) fail(problem);
  const watchdogMs = options.watchdogMs ?? DEFAULTS.watchdogMs;
  if (!(watchdogMs >= 50)) fail(`watchdogMs is ${watchdogMs}, expected at least 50`);
  const maxRestarts = options.maxRestarts ?? DEFAULTS.maxRestarts;
  if (!Number.isInteger(maxRestarts) || maxRestarts < 0) {
    fail(`maxRestarts is ${maxRestarts}, expected an integer >= 0`);
  }
  const loadTimeoutMs = options.loadTimeoutMs ?? LOAD_TIMEOUT_MS;
  if (!(loadTimeoutMs > 0)) fail(`loadTimeoutMs is ${loadTimeoutMs}, expected > 0`);
  const config: RunnerConfig = {};
  if (options.models !== undefined) config.models = options.models;
  if (options.graph !== undefined) config.graph = options.graph;
  if (options.runner !== undefined) config.runner = String(options.runner);
  if (options.library !== undefined) config.library = options.library;
  if (options.precision !== undefined) config.precision = options.precision;
  config.input = input;
  return {
    policy,
    input,
    wake,
    blockMs,
    prefetch,
    slots,
    watchdogMs,
    maxRestarts,
    loadTimeoutMs,
    config,
  };
}

/**
 * Publications of `account`'s epoch: NEWEST's count since the epoch began, extended past its
 * 21-bit wrap by DONE (read before `newest`, at most one short of it: EpochAccount).
 */
function published(account: EpochAccount, done: number, newest: number): number {
  return (done + ((newestCount(newest) - account.countAt - done) & COUNT_MASK)) >>> 0;
}

function watchdogTick(settings: Settings): number {
  return Math.max(10, Math.min(250, settings.watchdogMs / 4));
}

function shapeOf(settings: Settings, loaded: Loaded): LayoutShape {
  return {
    slots: settings.slots,
    inputSize: loaded.inputSize,
    outputSizes: loaded.outputSizes,
    modelCount: loaded.modelNames.length,
  };
}

function checkSameShape(first: Loaded, again: Loaded): void {
  const text = (l: Loaded) =>
    `input ${l.inputSize}, outputs [${l.outputSizes}], ` +
    `models [${l.modelNames}]`;
  if (text(first) !== text(again)) {
    throw new CadenzaError(
      "E_SHAPE",
      `RealtimeEngine: the restarted Worker loaded ${text(again)}, expected ${text(first)}`,
    );
  }
}

// Workers are created and loaded one at a time, engine-wide: an old Bun bug crashed when
// several new Workers opened the native library at once.
let spawnQueue: Promise<unknown> = Promise.resolve();

function spawn(settings: Settings): Promise<{ worker: Worker; loaded: Loaded }> {
  const spawned = spawnQueue.then(() => spawnNow(settings));
  spawnQueue = spawned.catch(() => undefined);
  return spawned;
}

async function spawnNow(settings: Settings): Promise<{ worker: Worker; loaded: Loaded }> {
  const worker = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
  try {
    const loaded = nextMessage(worker, "loaded", settings.loadTimeoutMs);
    worker.postMessage({ type: "init", config: settings.config });
    return { worker, loaded: (await loaded) as Loaded };
  } catch (err) {
    worker.terminate();
    throw err;
  }
}

/**
 * The next message of `type` from `worker`; rejects on a "failed" message, an error event or
 * after `timeoutMs`.
 */
function nextMessage(worker: Worker, type: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      worker.removeEventListener("message", onMessage);
      worker.removeEventListener("error", onError);
    };
    const onMessage = (event: MessageEvent) => {
      const data = event.data;
      if (data?.type === type) {
        done();
        resolve(data);
      } else if (data?.type === "failed") {
        done();
        const code: CadenzaErrorCode = data.code ?? "E_NATIVE";
        reject(
          new CadenzaError(
            code,
            `RealtimeEngine: the Worker failed (${data.phase}): ` +
              data.message,
          ),
        );
      }
    };
    const onError = (event: Event) => {
      event.preventDefault();
      done();
      const message = (event as ErrorEvent).message ?? "unknown error";
      reject(new CadenzaError("E_NATIVE", `RealtimeEngine: the Worker threw: ${message}`));
    };
    // Timers take at most 2^31 - 1 ms; a longer delay (Infinity included) would fire at once.
    const timer = setTimeout(() => {
      done();
      reject(
        new CadenzaError(
          "E_NATIVE",
          `RealtimeEngine: no "${type}" from the Worker ` +
            `within ${timeoutMs} ms`,
        ),
      );
    }, Math.min(timeoutMs, TIMER_MS_MAX));
    worker.addEventListener("message", onMessage);
    worker.addEventListener("error", onError);
  });
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
