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
 *
 * Then the burst: CALLS (default 100,000) submit+latest pairs back to back, as an audio
 * callback that outruns the Worker, in chunks of the runtime's allocation probe (5,000 calls,
 * a forced collection before each: test/bun-alloc.ts, test/deno/alloc-probe.ts), each chunk
 * between its own two markers, so that the tracer sees the same calls the probe counts. The
 * markers' own allocations are measured alone (other marker paths, the same chunks around an
 * empty loop) and reported beside the burst's. Under Deno this needs --v8-flags=--expose-gc.
 */

import { existsSync, openSync, readFileSync, readlinkSync, writeSync } from "node:fs";
import process from "node:process";
import { RealtimeEngine } from "../../src/rt/engine.ts";

export const BEGIN = "/cadenza-syscall-window-begin";
export const END = "/cadenza-syscall-window-end";
export const BURST_BEGIN = "/cadenza-syscall-burst-begin";
export const BURST_END = "/cadenza-syscall-burst-end";
const CALIBRATE_BEGIN = "/cadenza-syscall-calibrate-begin";
const CALIBRATE_END = "/cadenza-syscall-calibrate-end";
const CALLS = Number(process.env.CADENZA_SYSCALL_CALLS ?? 100_000);
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

  // The burst (see the header).
  // Each runtime's probe uses its own API, so only that one is loaded (a computed specifier:
  // neither type checker follows it into the other runtime's module).
  const probeModule = bun ? "../bun-alloc.ts" : "../deno/alloc-probe.ts";
  const probes = await import(probeModule);
  const probe: (calls: number, body: (calls: number) => void) => number = bun
    ? probes.objectsCreated
    : probes.bytesPerThousand;
  let burstCalls = 0;
  let burstChunks = 0;
  const pairs = (n: number) => {
    for (let k = 0; k < n; k++) {
      engine.submit(inputs[k & 7]);
      engine.latest(into);
    }
  };
  // The burst's markers: writes of preallocated bytes to /dev/null, which allocate less than
  // a path look-up (whose strings cost the probe an object or two a chunk).
  const sink = openSync("/dev/null", "w");
  const mark = (text: string) => {
    const bytes = new TextEncoder().encode(text.slice(1));
    return () => writeSync(sink, bytes);
  };
  const burstBegin = mark(BURST_BEGIN);
  const burstEnd = mark(BURST_END);
  const calibrateBegin = mark(CALIBRATE_BEGIN);
  const calibrateEnd = mark(CALIBRATE_END);
  const burst = (n: number) => {
    burstBegin();
    pairs(n);
    burstEnd();
    burstCalls += n;
    burstChunks++;
  };
  const calibrate = (n: number) => {
    calibrateBegin();
    for (let k = 0; k < n; k++);
    calibrateEnd();
  };
  // Warm up the burst's loop and the markers' path until optimised, untraced by the test.
  for (let k = 0; k < 20; k++) pairs(5000);
  probe(20_000, calibrate);
  const markersOnly = probe(CALLS, calibrate);
  const burstBefore = engine.stats();
  const allocated = probe(CALLS, burst);
  const burstAfter = engine.stats();
  console.log(JSON.stringify({
    blocks: BLOCKS,
    notifies: after.notifies - before.notifies,
    wokenEarly: after.wokenEarly - before.wokenEarly,
    completed: after.completed - before.completed,
    blockMs: after.blockMs,
    burst: {
      calls: burstCalls,
      chunks: burstChunks,
      accepted: burstAfter.submitted - burstBefore.submitted,
      notifies: burstAfter.notifies - burstBefore.notifies,
      allocated,
      markersOnly,
      unit: bun ? "JSC objects" : "bytes per 1,000 calls",
    },
  }));
  await engine.stop();
}
