/**
 * The real-time Worker: it owns the models (a StepRunner, src/rt/runner.ts), waits for input
 * with Atomics.wait, runs a step, publishes the result under the sequence lock and records
 * timings, all through the shared buffer laid out in layout.ts. Once it serves, it never
 * returns to its event loop: stop and the test crash arrive as Control.COMMAND, and it reports
 * to the engine only by postMessage (load, failure, stop).
 *
 * Messages in:  { type: "init", config } then { type: "start", buffer, shape, policy, epoch,
 *               timeOriginMs }.
 * Messages out: { type: "loaded", ... }, { type: "running" }, { type: "failed", phase, code,
 *               message }, { type: "stopped" }.
 */

import { CadenzaError } from "../errors.ts";
import { HISTOGRAM_WORDS, histogramRecord } from "./histogram.ts";
import {
  Command,
  computeLayout,
  Control,
  COUNT_MASK,
  createViews,
  Histogram,
  type Layout,
  type LayoutShape,
  newestBuffer,
  newestCount,
  newestEpoch,
  NO_BUFFER,
  packNewest,
  packRead,
  POS_MASK,
  publicationId,
  readEpoch,
  readTakes,
  recordOf,
  RESULT_BUFFERS,
  resultChecksum,
  SEQ_MASK,
  type Views,
  WorkerState,
} from "./layout.ts";
import { createStepRunner, type RunnerConfig, type StepRunner } from "./runner.ts";
import { Cadence } from "./cadence.ts";

/** How long one wait lasts before the Worker beats its heart and looks at COMMAND again. */
export const WAIT_MS = 20;

export type Policy = "latest" | "every";

/**
 * How the Worker waits for input: "cadence" learns the caller's block period and sleeps until
 * just before the next block is due, then polls, so submit() at a steady cadence finds it
 * awake and never notifies; "notify" sleeps until submit() wakes it (a system call on the
 * caller's thread each block).
 */
export type WakeMode = "cadence" | "notify";

export interface StartMessage {
  type: "start";
  buffer: SharedArrayBuffer;
  shape: LayoutShape;
  policy: Policy;
  wake: WakeMode;
  /** The caller's block period hint (ms); 0 to learn it. */
  blockMs: number;
  /** Wake "cadence": warm the caches (StepRunner.prefetch) on waking before a block. */
  prefetch: boolean;
  epoch: number;
  /** The engine thread's performance.timeOrigin, to put submit times on this clock. */
  timeOriginMs: number;
}

interface WorkerScope {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
}

const scope = globalThis as unknown as WorkerScope;

let runner: StepRunner | null = null;

scope.onmessage = (event: MessageEvent) => {
  const message = event.data;
  if (message?.type === "init") void load(message.config as RunnerConfig);
  else if (message?.type === "start") serve(message as StartMessage);
};

async function load(config: RunnerConfig): Promise<void> {
  try {
    runner = await createStepRunner(config);
  } catch (err) {
    fail("load", err);
    return;
  }
  scope.postMessage({
    type: "loaded",
    inputSize: runner.inputSize,
    outputNames: [...runner.outputNames],
    outputSizes: runner.outputs.map((view) => view.length),
    modelNames: [...runner.modelNames],
    loadMs: runner.loadMs,
    weightBytes: runner.weightBytes,
    native: runner.native === true,
  });
}

function serve(message: StartMessage): void {
  let loop: ServeLoop | null = null;
  try {
    loop = new ServeLoop(runner!, message);
    scope.postMessage({ type: "running" });
    loop.run();
  } catch (err) {
    loop?.setState(WorkerState.FAILED);
    loop?.leave(false);
    disposeAfterFailure();
    loop?.leave(true);
    fail("run", err);
    return;
  }
  loop.leave(false);
  runner!.dispose();
  // Last: the engine takes a cleared record to mean this Worker is gone, its models freed.
  loop.leave(true);
  scope.postMessage({ type: "stopped" });
  scope.close();
}

/** Frees the models' native memory, which would outlive this Worker otherwise. */
function disposeAfterFailure(): void {
  try {
    runner?.dispose();
  } catch {
    // The step's own failure is the one to report; a second from dispose adds nothing.
  }
}

function fail(phase: "load" | "run", err: unknown): void {
  const text = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  const code = err instanceof CadenzaError ? err.code : null;
  scope.postMessage({ type: "failed", phase, code, message: text });
  scope.close();
}

/** What #publish did with a result. */
const Published = { YES: 0, REPLACED: 1, NO_BUFFER: 2 } as const;

class ServeLoop {
  readonly control: Int32Array;
  readonly #views: Views;
  readonly #layout: Layout;
  readonly #runner: StepRunner;
  readonly #latest: boolean;
  readonly #epoch: number;
  /** This Worker's record (layout.ts, Control.OWNER and DONE). */
  readonly #recordIndex: number;
  /** The epoch as NEWEST and READ hold it. */
  readonly #epochField: number;
  readonly #clockOffsetMs: number;
  readonly #input: Float32Array;
  /** Submit time (engine clock, ms) of the input in #input. */
  #submittedMs = 0;
  /** The buffer this Worker published last; the next write tries the ones after it. */
  #lastBuffer: number;
  /** This Worker's publications, for the test pause. */
  #published = 0;
  /** The caller's cadence, or null in wake mode "notify". */
  readonly #cadence: Cadence | null;
  /** Whether the input being taken was found by polling (the Worker was awake for it). */
  #caught = false;
  readonly #prefetch: boolean;
  /** Submit times of the inputs being taken (#take), one per ring slot at most. */
  readonly #takenMs: Float64Array;
  /** The caller's clock minus this thread's, ms, as measured (#observe). */
  #callerOffsetMs = Number.NEGATIVE_INFINITY;

  constructor(runner: StepRunner, message: StartMessage) {
    this.#layout = computeLayout(message.shape);
    this.#views = createViews(message.buffer, this.#layout);
    this.control = this.#views.control;
    this.#runner = runner;
    this.#latest = message.policy === "latest";
    this.#epoch = message.epoch;
    this.#recordIndex = recordOf(message.epoch);
    this.#epochField = newestEpoch(packNewest(0, message.epoch, 0));
    this.#clockOffsetMs = performance.timeOrigin - message.timeOriginMs;
    this.#input = new Float32Array(this.#layout.inputSize);
    this.#cadence = message.wake === "cadence" ? new Cadence(message.blockMs) : null;
    this.#takenMs = new Float64Array(this.#layout.slots);
    this.#prefetch = message.prefetch && typeof runner.prefetch === "function";
    const newest = newestBuffer(Atomics.load(this.control, Control.NEWEST));
    this.#lastBuffer = newest === NO_BUFFER ? RESULT_BUFFERS - 1 : newest;
    checkRunnerFits(runner, this.#layout);
  }

  /** Serves until a STOP command or a newer epoch; throws on CRASH or a failing step. */
  run(): void {
    const control = this.control;
    this.setState(WorkerState.IDLE);
    for (;;) {
      Atomics.add(control, Control.HEARTBEAT, 1);
      const command = Atomics.load(control, Control.COMMAND);
      if (command === Command.STOP || !this.#current()) break;
      if (command === Command.CRASH) this.#crash();
      if (command === Command.STALL) this.#stall();
      const word = Atomics.load(control, Control.READ);
      // Fenced out (engine.ts #fence): no take of this Worker's can succeed any more.
      if (readEpoch(word) !== this.#epochField) break;
      const write = Atomics.load(control, Control.WRITE_SEQ);
      const pending = (write - word) & POS_MASK;
      if (pending === 0) {
        this.#idle(write);
        continue;
      }
      const read = (write - pending) | 0;
      const seq = this.#latest ? (write - 1) | 0 : read;
      if (!this.#take(word, read, seq)) continue;
      // Replaced since the take: the engine's fence counted the input lost; no step for it.
      if (!this.#current() || !this.#step(seq)) break;
    }
    this.setState(WorkerState.STOPPED);
  }

  /**
   * The Worker's last act on the buffer, however it leaves: any buffer it still claims is
   * released. `free` also clears its record, which tells the engine it is gone (call it after
   * disposing the models). An input it holds needs no count here: the engine counts it lost
   * when it fences this Worker out (engine.ts #settle), the only point after which it can
   * never be published.
   */
  leave(free: boolean): void {
    const control = this.control;
    for (let b = 0; b < RESULT_BUFFERS; b++) {
      Atomics.compareExchange(control, Control.CLAIM + b, this.#epoch, 0);
    }
    if (free) Atomics.compareExchange(control, Control.OWNER + this.#recordIndex, this.#epoch, 0);
  }

  /** Sets the shared state word, unless a replacement owns it now. */
  setState(state: number): void {
    if (this.#current()) Atomics.store(this.control, Control.STATE, state);
  }

  /** Whether this Worker still owns the buffer (a replacement bumps the epoch). */
  #current(): boolean {
    return Atomics.load(this.control, Control.EPOCH) === this.#epoch;
  }

  #crash(): never {
    Atomics.compareExchange(this.control, Control.COMMAND, Command.CRASH, Command.NONE);
    throw new Error("src/rt/worker.ts: crash requested by the engine's test hook");
  }

  /** The STALL test hook: no heartbeat for COMMAND_ARG ms, or until this Worker is replaced. */
  #stall(): void {
    const control = this.control;
    const stallMs = Atomics.load(control, Control.COMMAND_ARG);
    Atomics.compareExchange(control, Control.COMMAND, Command.STALL, Command.NONE);
    this.setState(WorkerState.STALLED);
    // Until released (COMMAND_ARG cleared), replaced, or stallMs passed; no heartbeat.
    const until = performance.now() + stallMs;
    while (Atomics.load(control, Control.COMMAND_ARG) !== 0 && this.#current()) {
      const left = until - performance.now();
      if (left <= 0) break;
      Atomics.wait(control, Control.COMMAND_ARG, stallMs, left < WAIT_MS ? left : WAIT_MS);
    }
    this.setState(WorkerState.IDLE);
  }

  /**
   * Waits for input. With a steady cadence: sleeps (without asking to be notified) until
   * `leadMs` before the next input is due, then polls until it comes or a little past due
   * (Cadence.pollAfterMs); otherwise, or after that, sleeps until submit() notifies it.
   */
  #idle(write: number): void {
    const cadence = this.#cadence;
    if (cadence !== null) {
      const now = performance.now();
      const due = cadence.dueMs(now);
      if (due === due) {
        const wakeAt = due - cadence.leadMs;
        if (now < wakeAt) {
          // A long period is dozed in WAIT_MS slices (the heartbeat); the last one wakes.
          const remaining = wakeAt - now;
          if (remaining <= WAIT_MS) this.#doze(write, wakeAt, remaining, true);
          else this.#doze(write, wakeAt, WAIT_MS, false);
          return;
        }
        if (now < due + cadence.pollAfterMs) {
          this.#poll(write, due + cadence.pollAfterMs, now);
          return;
        }
      }
    }
    this.#sleep(write);
  }

  /** Spins until WRITE_SEQ moves past `write`, a command or a replacement, or `untilMs`. */
  #poll(write: number, untilMs: number, startMs: number): void {
    const control = this.control;
    let now = startMs;
    while (now < untilMs) {
      if (Atomics.load(control, Control.WRITE_SEQ) !== write) {
        this.#caught = true;
        break;
      }
      if (Atomics.load(control, Control.COMMAND) !== Command.NONE || !this.#current()) break;
      now = performance.now();
    }
    Atomics.add(control, Control.POLL_US, Math.round((now - startMs) * 1000));
  }

  /**
   * Sleeps until `wakeAtMs` (this clock) without asking a punctual submit() to notify: one that
   * comes earlier than that does (SLEEPING 2, layout.ts), as do commands and replacements.
   */
  #doze(write: number, wakeAtMs: number, dozeMs: number, last: boolean): void {
    const control = this.control;
    this.#views.wakeAtMs[0] = wakeAtMs + this.#callerOffsetMs;
    Atomics.store(control, Control.SLEEPING, 2);
    let woke = "not-equal";
    if (Atomics.load(control, Control.COMMAND) === Command.NONE && this.#current()) {
      woke = Atomics.wait(control, Control.WRITE_SEQ, write, dozeMs);
    }
    Atomics.store(control, Control.SLEEPING, 0);
    if (woke !== "timed-out" || !last) return;
    this.#cadence!.woke(wakeAtMs, performance.now());
    if (this.#prefetch) this.#runner.prefetch!();
  }

  #sleep(write: number): void {
    const control = this.control;
    // submit() stores WRITE_SEQ and then reads SLEEPING; we store SLEEPING and then wait on
    // WRITE_SEQ, which re-reads it atomically: one of the two sides always sees the other.
    Atomics.store(control, Control.SLEEPING, 1);
    if (Atomics.load(control, Control.COMMAND) === Command.NONE) {
      Atomics.wait(control, Control.WRITE_SEQ, write, WAIT_MS);
    }
    Atomics.store(control, Control.SLEEPING, 0);
  }

  /**
   * Copies input `seq` and its submit time out of the ring, then takes it: ONE compare-exchange
   * of READ (`word`, read just before) that moves the position past `seq` and counts one more
   * take. That single step is the whole change of class: the inputs before `seq` become
   * skipped (position minus takes, engine.ts) and `seq` held (takes minus publications), so a
   * Worker killed at any point before it leaves every input pending, and one killed at any
   * point after it leaves them skipped and held, with nothing left to count. (This used to be
   * a compare-exchange followed by an add to SKIPPED and a store to HELD: a Bun terminate()
   * could fall between them and leave a take's skipped inputs uncounted.) The compare-exchange
   * fails only if the engine fenced this Worker out (READ's epoch moved) or a test hook moved
   * the sequence numbers; the copy is then dropped.
   */
  #take(word: number, read: number, seq: number): boolean {
    const { slots, inputSize } = this.#layout;
    const slot = seq & (slots - 1);
    const at = slot * inputSize;
    const input = this.#views.input;
    for (let i = 0; i < inputSize; i++) this.#input[i] = input[at + i];
    this.#submittedMs = this.#views.submittedMs[slot];
    const next = (seq + 1) | 0;
    // The submit times of every input taken (skipped ones too), before their slots are freed.
    let taken = 0;
    if (this.#cadence !== null) {
      const submitted = this.#views.submittedMs;
      for (let s = read; s !== next; s = (s + 1) | 0) {
        this.#takenMs[taken++] = submitted[s & (slots - 1)];
      }
    }
    const took = packRead(next, readTakes(word) + 1, this.#epoch);
    if (Atomics.compareExchange(this.control, Control.READ, word, took) !== word) return false;
    if (this.#cadence !== null) this.#observe(taken);
    return true;
  }

  /**
   * Feeds the cadence the submit times of the `count` inputs just taken (the skipped ones too:
   * the caller's cadence, not the Worker's).
   */
  #observe(count: number): void {
    const cadence = this.#cadence!;
    const control = this.control;
    // The caller's clock minus this one: at least a submit time minus when it was taken.
    // Runtimes do not all give Workers a timeOrigin that agrees to the microsecond, so it is
    // measured: the largest such difference, decaying by 1 us a sample to follow any drift.
    const sample = this.#submittedMs - performance.now();
    const decayed = this.#callerOffsetMs - 0.001;
    this.#callerOffsetMs = sample > decayed ? sample : decayed;
    for (let k = 0; k < count; k++) cadence.observe(this.#takenMs[k] - this.#callerOffsetMs);
    if (this.#caught) Atomics.add(control, Control.WOKEN_EARLY, 1);
    this.#caught = false;
    Atomics.store(control, Control.LEARNED_PERIOD_US, Math.round(cadence.periodMs * 1000));
  }

  /** Runs and publishes one step; false when this Worker turned out to be replaced. */
  #step(seq: number): boolean {
    this.setState(WorkerState.BUSY);
    const started = performance.now();
    this.#runner.step(this.#input);
    const stepped = performance.now();
    for (;;) {
      const published = this.#publish(seq & SEQ_MASK);
      if (published === Published.YES) break;
      if (published === Published.REPLACED || !this.#awaitBuffer()) return false;
    }
    const done = performance.now();
    this.setState(WorkerState.IDLE);
    this.#record(stepped - started, done + this.#clockOffsetMs - this.#submittedMs);
    return true;
  }

  /**
   * No buffer was free: each one but the buffer NEWEST names is claimed by a replaced Worker
   * paused in the middle of writing, which releases it when it resumes (its publication then
   * fails) or when the engine terminates it. The result is kept (the input stays held, nothing
   * else could publish either) and tried again after a short wait that beats the heart.
   * False when this Worker is stopped or replaced meanwhile: it leaves, and the engine's fence
   * counts the input lost.
   */
  #awaitBuffer(): boolean {
    const control = this.control;
    Atomics.add(control, Control.UNPUBLISHED, 1);
    Atomics.add(control, Control.HEARTBEAT, 1);
    if (Atomics.load(control, Control.COMMAND) === Command.STOP || !this.#current()) return false;
    // The fence and commands notify EPOCH: a replacement or a stop wakes this at once.
    Atomics.wait(control, Control.EPOCH, this.#epoch, 1);
    return this.#current();
  }

  /**
   * Writes the runner's outputs into a buffer this Worker claimed and publishes it with one
   * compare-exchange of NEWEST that includes the epoch (layout.ts explains the protocol).
   */
  #publish(seq: number): number {
    const control = this.control;
    const epoch = this.#epoch;
    for (let i = 1; i <= RESULT_BUFFERS; i++) {
      const buffer = (this.#lastBuffer + i) % RESULT_BUFFERS;
      if (Atomics.compareExchange(control, Control.CLAIM + buffer, 0, epoch) !== 0) continue;
      const newest = Atomics.load(control, Control.NEWEST);
      if (newestEpoch(newest) !== this.#epochField) {
        Atomics.store(control, Control.CLAIM + buffer, 0);
        return Published.REPLACED;
      }
      // Claimed, and not the buffer NEWEST names: no one else writes it until released, and
      // only its claimant could make NEWEST name it.
      if (newestBuffer(newest) === buffer) {
        Atomics.store(control, Control.CLAIM + buffer, 0);
        continue;
      }
      const next = packNewest(buffer, epoch, newestCount(newest) + 1);
      this.#write(buffer, seq, publicationId(next));
      const won = Atomics.compareExchange(control, Control.NEWEST, newest, next) === newest;
      Atomics.store(control, Control.CLAIM + buffer, 0);
      // Only the engine's fence changes NEWEST under the current Worker.
      if (!won) return Published.REPLACED;
      this.#lastBuffer = buffer;
      // The compare-exchange above made the input completed (NEWEST's count). This add only
      // extends that 21-bit count past its wrap; a Worker killed before it leaves DONE one
      // short, which the engine's reading of DONE allows for (engine.ts EpochAccount).
      Atomics.add(control, Control.DONE + this.#recordIndex, 1);
      return Published.YES;
    }
    return Published.NO_BUFFER;
  }

  #write(buffer: number, seq: number, publication: number): void {
    const control = this.control;
    // A Worker that died mid-write can leave the version odd: start from the next odd value.
    const version = Atomics.load(control, Control.VERSION + buffer) | 1;
    // An exchange, not a store: it reads from a reader's re-check (engine.ts latest), so that
    // reader's copy happens before the writes below on every CPU.
    Atomics.exchange(control, Control.VERSION + buffer, version);
    const { resultSize, outputOffsets } = this.#layout;
    const base = buffer * resultSize;
    const outputs = this.#runner.outputs;
    for (let k = 0; k < outputs.length; k++) {
      this.#views.results.set(outputs[k], base + outputOffsets[k]);
      if (k === 0) this.#testPause();
    }
    const checksum = resultChecksum(this.#views.resultWords, base, resultSize, seq);
    Atomics.store(control, Control.RESULT_SEQ + buffer, seq);
    Atomics.store(control, Control.CHECKSUM + buffer, checksum);
    Atomics.store(control, Control.PUB_ID + buffer, publication);
    Atomics.store(control, Control.VERSION + buffer, (version + 1) | 0);
  }

  /** The test pause (layout.ts, TEST_PAUSE_EVERY): one load per publication otherwise. */
  #testPause(): void {
    const control = this.control;
    const every = Atomics.load(control, Control.TEST_PAUSE_EVERY);
    if (every > 0 && ++this.#published === every) {
      const base = newestCount(Atomics.load(control, Control.NEWEST));
      const until = performance.now() + Atomics.load(control, Control.TEST_PAUSE_MS);
      const since = () => (newestCount(Atomics.load(control, Control.NEWEST)) - base) & COUNT_MASK;
      while (since() < 3 && performance.now() < until) {
        Atomics.wait(control, Control.TEST_PAUSE_EVERY, every, 2);
      }
    }
  }

  #record(stepMs: number, endToEndMs: number): void {
    const latency = this.#views.latency;
    histogramRecord(latency, Histogram.PIPELINE * HISTOGRAM_WORDS, stepMs * 1000);
    histogramRecord(latency, Histogram.END_TO_END * HISTOGRAM_WORDS, endToEndMs * 1000);
    const modelMs = this.#runner.modelMs;
    for (let m = 0; m < modelMs.length; m++) {
      histogramRecord(latency, (Histogram.FIRST_MODEL + m) * HISTOGRAM_WORDS, modelMs[m] * 1000);
    }
  }
}

function checkRunnerFits(runner: StepRunner, layout: Layout): void {
  const sizes = runner.outputs.map((view) => view.length);
  if (
    runner.inputSize !== layout.inputSize || sizes.join() !== layout.outputSizes.join() ||
    runner.modelMs.length !== layout.modelCount
  ) {
    throw new CadenzaError(
      "E_SHAPE",
      `src/rt/worker.ts: the runner (input ${runner.inputSize}, outputs [${sizes}], ` +
        `${runner.modelMs.length} models) does not fit the engine's buffer (input ` +
        `${layout.inputSize}, outputs [${layout.outputSizes}], ${layout.modelCount} models)`,
    );
  }
}
