/**
 * Test hooks for the real-time engine, kept off the public class and out of src/rt/index.ts
 * and src/index.ts: tests import this file directly. Each acts on the shared control block
 * (layout.ts) as the engine's own supervision would.
 */

import { type EngineInternals, engineInternals, type RealtimeEngine } from "./engine.ts";

// deno-lint-ignore no-explicit-any
type AnyEngine = RealtimeEngine<any>;
import { Command, Control } from "./layout.ts";

function internals(engine: AnyEngine): EngineInternals {
  return engineInternals(engine);
}

/** The control block, so that tests can put sequence numbers near their wrap and the like. */
export function controlOf(engine: AnyEngine): Int32Array {
  return internals(engine).control;
}

/**
 * Puts both sequence numbers at `start` (near their wrap, say) with the ring empty, as if the
 * inputs in between had never been submitted: they count as neither skipped nor taken. Only
 * with the Worker stalled (stallWorker); throws otherwise or if the ring is not empty.
 */
export function moveSequences(engine: AnyEngine, start: number): void {
  internals(engine).moveSequences(start);
}

/** Makes the Worker throw from inside its loop, as a failing step would. */
export function crashWorker(engine: AnyEngine): void {
  internals(engine).command(Command.CRASH);
}

/**
 * The Worker hangs for `ms` without a heartbeat, as a stuck call would, or until
 * releaseWorker; it leaves as soon as it is replaced.
 */
export function stallWorker(engine: AnyEngine, ms: number): void {
  const i = internals(engine);
  Atomics.store(i.control, Control.COMMAND_ARG, ms);
  i.command(Command.STALL);
}

/** Ends a stall (stallWorker) now. */
export function releaseWorker(engine: AnyEngine): void {
  const control = internals(engine).control;
  Atomics.store(control, Control.COMMAND_ARG, 0);
  Atomics.notify(control, Control.COMMAND_ARG);
}

/**
 * `worker.terminate()` on the serving Worker. Bun stops it (and reports it closed); Deno (2.9)
 * does not stop a Worker that never returns to its event loop, so there it keeps serving.
 */
export function terminateWorker(engine: AnyEngine): void {
  internals(engine).worker()?.terminate();
}

/**
 * Each Worker from now on pauses once in the middle of writing a result (its publication
 * number `every`; 0 turns this off) until a replacement has published 3 results or `ms`
 * passed: a stand-in for a collection or the VM descheduling it inside publish.
 */
export function pauseInPublish(engine: AnyEngine, every: number, ms: number): void {
  const control = internals(engine).control;
  Atomics.store(control, Control.TEST_PAUSE_MS, ms);
  Atomics.store(control, Control.TEST_PAUSE_EVERY, every);
}
