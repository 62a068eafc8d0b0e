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
  createViews,
  Histogram,
  type Layout,
  type LayoutShape,
  RESULT_BUFFERS,
  resultChecksum,
  SEQ_MASK,
  type Views,
  WorkerState,
} from "./layout.ts";
import { createStepRunner, type RunnerConfig, type StepRunner } from "./runner.ts";

/** How long one wait lasts before the Worker beats its heart and looks at COMMAND again. */
export const WAIT_MS = 20;

export type Policy = "latest" | "every";

export interface StartMessage {
  type: "start";
  buffer: SharedArrayBuffer;
  shape: LayoutShape;
  policy: Policy;
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
    disposeAfterFailure();
    fail("run", err);
    return;
  }
  runner!.dispose();
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

class ServeLoop {
  readonly control: Int32Array;
  readonly #views: Views;
  readonly #layout: Layout;
  readonly #runner: StepRunner;
  readonly #latest: boolean;
  readonly #epoch: number;
  readonly #clockOffsetMs: number;
  readonly #input: Float32Array;
  /** Submit time (engine clock, ms) of the input in #input. */
  #submittedMs = 0;

  constructor(runner: StepRunner, message: StartMessage) {
    this.#layout = computeLayout(message.shape);
    this.#views = createViews(message.buffer, this.#layout);
    this.control = this.#views.control;
    this.#runner = runner;
    this.#latest = message.policy === "latest";
    this.#epoch = message.epoch;
    this.#clockOffsetMs = performance.timeOrigin - message.timeOriginMs;
    this.#input = new Float32Array(this.#layout.inputSize);
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
      const read = Atomics.load(control, Control.READ_SEQ);
      const write = Atomics.load(control, Control.WRITE_SEQ);
      if (read === write) {
        this.#idle(write);
        continue;
      }
      const seq = this.#latest ? (write - 1) | 0 : read;
      if (!this.#take(read, seq)) continue;
      if (seq !== read) Atomics.add(control, Control.SKIPPED, (seq - read) | 0);
      this.#step(seq);
    }
    this.setState(WorkerState.STOPPED);
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

  #stall(): void {
    const control = this.control;
    const stallMs = Atomics.load(control, Control.COMMAND_ARG);
    Atomics.compareExchange(control, Control.COMMAND, Command.STALL, Command.NONE);
    this.setState(WorkerState.STALLED);
    Atomics.wait(control, Control.COMMAND_ARG, stallMs, stallMs);
    this.setState(WorkerState.IDLE);
  }

  #idle(write: number): void {
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
   * Copies input `seq` and its submit time out of the ring, then frees every slot up to it.
   * The compare-exchange fails only if a replaced Worker still running (Deno cannot kill one
   * that never yields) took the input first; then this copy is dropped.
   */
  #take(read: number, seq: number): boolean {
    const { slots, inputSize } = this.#layout;
    const slot = seq & (slots - 1);
    const at = slot * inputSize;
    const input = this.#views.input;
    for (let i = 0; i < inputSize; i++) this.#input[i] = input[at + i];
    this.#submittedMs = this.#views.submittedMs[slot];
    const next = (seq + 1) | 0;
    return Atomics.compareExchange(this.control, Control.READ_SEQ, read, next) === read;
  }

  #step(seq: number): void {
    this.setState(WorkerState.BUSY);
    const started = performance.now();
    this.#runner.step(this.#input);
    const stepped = performance.now();
    if (!this.#current()) return;
    this.#publish(seq & SEQ_MASK);
    const published = performance.now();
    this.setState(WorkerState.IDLE);
    this.#record(stepped - started, published + this.#clockOffsetMs - this.#submittedMs);
  }

  #publish(seq: number): void {
    const control = this.control;
    const newest = Atomics.load(control, Control.NEWEST);
    const buffer = newest < 0 ? 0 : (newest + 1) % RESULT_BUFFERS;
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
    }
    const checksum = resultChecksum(this.#views.resultWords, base, resultSize, seq);
    Atomics.store(control, Control.RESULT_SEQ + buffer, seq);
    Atomics.store(control, Control.CHECKSUM + buffer, checksum);
    Atomics.store(control, Control.VERSION + buffer, (version + 1) | 0);
    Atomics.store(control, Control.NEWEST, buffer);
    Atomics.add(control, Control.COMPLETED, 1);
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
