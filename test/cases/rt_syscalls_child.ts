/**
 * The program test/rt-syscalls.test.ts traces (Bun or Deno): an engine fed one input per
 * block, its caller's thread sleeping between blocks as an audio thread waits for its device
 * (Bun.sleepSync, a clock_nanosleep; under Deno Atomics.wait on a private word, a futex wait)
 * and then spinning on the clock (the vDSO's: no system call) to the block's start. It
 * prints this thread's id, waits (warming up, cadence learned) until a tracer attaches to it
 * (/proc/self/status TracerPid), then runs BLOCKS blocks between two marker system calls (a
 * look-up of a path that does not exist) and prints the engine's counters for that window as
 * JSON. Every system call the tracer sees from this thread between the markers is one that
 * submit() or latest() made, or the thread's own pacing sleep.
 */

import { existsSync, readFileSync, readlinkSync } from "node:fs";
import process from "node:process";
import { RealtimeEngine } from "../../src/rt/engine.ts";

export const BEGIN = "/cadenza-syscall-window-begin";
export const END = "/cadenza-syscall-window-end";
const BLOCKS = Number(process.env.CADENZA_SYSCALL_BLOCKS ?? 1500);
const PERIOD_MS = 128 / 48;

/** A system call naming `path` (which does not exist): the tracer's mark. */
function marker(path: string): void {
  if (existsSync(path)) throw new Error(`${path} exists`);
}

function traced(): boolean {
  return /TracerPid:\s*[1-9]/.test(readFileSync("/proc/self/status", "utf8"));
}

if (import.meta.main) {
  const engine = await RealtimeEngine.start({
    models: process.env.CADENZA_MODELS || undefined,
    precision: "int8",
  });
  const into = engine.createBuffers();
  const inputs = Array.from(
    { length: 8 },
    (_, k) => Float32Array.from({ length: engine.inputSize }, (_, i) => Math.sin(0.37 * i + k)),
  );
  const tid = readlinkSync("/proc/thread-self").split("/").pop();
  console.log(`tid ${tid}`);
  // deno-lint-ignore no-explicit-any
  const bun = (globalThis as any).Bun;
  const pace = new Int32Array(new SharedArrayBuffer(4));
  const sleep = (ms: number) => bun ? bun.sleepSync(ms) : Atomics.wait(pace, 0, 0, ms);
  let deadline = performance.now() + PERIOD_MS;
  const block = (b: number) => {
    const wait = deadline - performance.now() - 0.2;
    if (wait > 0) sleep(wait);
    while (performance.now() < deadline);
    engine.submit(inputs[b & 7]);
    engine.latest(into);
    deadline += PERIOD_MS;
    // Behind by more than a block (descheduled): start the cadence again, as a driver would.
    if (performance.now() > deadline + PERIOD_MS) deadline = performance.now() + PERIOD_MS;
  };
  // Warm up (the Worker learns the cadence) for at least 2 s, then until traced (30 s at most).
  let b = 0;
  const warmUntil = performance.now() + 2000;
  const giveUp = performance.now() + 30_000;
  const untraced = process.env.CADENZA_SYSCALL_UNTRACED === "1";
  while (performance.now() < warmUntil || (!untraced && !traced() && performance.now() < giveUp)) {
    for (let k = 0; k < 100; k++) block(b++);
  }
  for (let k = 0; k < 200; k++) block(b++);
  const before = engine.stats();
  marker(BEGIN);
  for (let k = 0; k < BLOCKS; k++) block(b++);
  marker(END);
  const after = engine.stats();
  console.log(JSON.stringify({
    blocks: BLOCKS,
    notifies: after.notifies - before.notifies,
    wokenEarly: after.wokenEarly - before.wokenEarly,
    completed: after.completed - before.completed,
    blockMs: after.blockMs,
  }));
  await engine.stop();
}
