/**
 * Faults (issue 14), shared by test/faults.test.ts (Bun) and test/deno/faults.test.ts:
 * - the engine's Worker killed at random points, many times in one run;
 * - an atomic write (src/atomic.ts) killed with SIGKILL at random points in a child process.
 *
 * Waiting is on the event loop with generous deadlines ("it never happened"), not timing
 * claims.
 */

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runtime } from "../../src/native/io.ts";
import { type Policy, RealtimeEngine, type RealtimeStats } from "../../src/rt/engine.ts";
import {
  computeLayout,
  Control,
  createViews,
  newestBuffer,
  newestCount,
  newestEpoch,
  packNewest,
  packRead,
  POS_MASK,
  publicationId,
  readEpoch,
  readTakes,
  RESULT_BUFFERS,
  resultChecksum,
  SEQ_MASK,
} from "../../src/rt/layout.ts";
import { EMOTION_OUTPUTS } from "../../src/rt/runner.ts";
import {
  controlOf,
  crashWorker,
  releaseWorker,
  stallWorker,
  terminateWorker,
} from "../../src/rt/testing.ts";
import { Rng } from "../helpers.ts";
import { type Case, check, fail } from "./check.ts";
import { checkFakeValues, FAKE_RUNNER, sleep, waitFor, withEngine, wordsOf } from "./rt.ts";
import { FAKE_INPUT_SIZE, FAKE_MODELS, FAKE_OUTPUTS, fakeValue } from "./rt_runner.ts";
import { patternBytes, verdict } from "./atomic_child.ts";

/**
 * Checks each counter against its own bound while the engine runs: none goes back, inFlight
 * is 0 or 1 (2 for a take made between stats()'s loads of NEWEST and READ), and lost grows
 * by at most one per replacement (a Worker holds one input at most, and only a replacement or
 * a stop loses it). Returns the stats for the next sample.
 */
function checkSample(
  s: RealtimeStats,
  before: RealtimeStats | null,
  kills: number,
  policy: Policy,
): RealtimeStats {
  const where = () =>
    `after ${kills} kills, ${s.workerRestarts} restarts: ${JSON.stringify(countsOf(s))}`;
  check(s.inFlight <= 2, () => `inFlight ${s.inFlight}, ${where()}`);
  // One fence per replacement: the restarts made, and one under way.
  const fences = s.workerRestarts + (s.state === "running" ? 0 : 1);
  check(s.lost <= fences, () => `lost ${s.lost} > ${fences} replacements, ${where()}`);
  if (policy === "every") check(s.skipped === 0, () => `policy every skipped, ${where()}`);
  if (before !== null) {
    for (const key of ["submitted", "completed", "skipped", "lost"] as const) {
      check(s[key] >= before[key], () => `${key} went back from ${before[key]}, ${where()}`);
    }
  }
  return s;
}

/** What a failure message shows of stats(). */
const statsKeys = [
  "state",
  "workerState",
  "lastError",
  "workerRestarts",
  "workersExited",
  "workersTerminated",
  "submitted",
  "completed",
  "skipped",
  "lost",
  "pending",
  "inFlight",
];

function countsOf(s: RealtimeStats) {
  const { submitted, completed, skipped, lost, pending, inFlight } = s;
  return { submitted, completed, skipped, lost, pending, inFlight };
}

/**
 * The Worker is killed `kills` times at random points (after a random number of submits and
 * reads, 0 to 40 ms apart): by a throw inside its loop, and under Bun also by
 * worker.terminate() (Deno does not stop a Worker that never yields, see testing.ts). Every
 * read is checked (never torn: checksum and values belong to one result; sequence never goes
 * back), reads go on while a restart is under way, and at the end every accepted input is
 * accounted for. The sum is not the only check: stats() derives skipped as the inputs read
 * past minus those taken (docs/DESIGN.md), so each count is also held to what the caller
 * knows independently: submitted to the submits it saw accepted, completed to at least the
 * distinct results it read, lost to one per kill at most, and under policy "every" skipped to
 * 0 (every input taken, so submitted = completed + lost exactly); and none ever goes back.
 */
export function workerKillCase(kills: number, policy: Policy = "latest"): Case {
  return {
    name: `faults: the Worker killed at ${kills} random points (policy ${policy}); reads never ` +
      "torn, counters add up and stay in their bounds, calls go on during restarts",
    run: async () => {
      const engine = await RealtimeEngine.start({
        runner: FAKE_RUNNER,
        policy,
        watchdogMs: 200,
      });
      try {
        const rng = new Rng(14);
        const into = engine.createBuffers();
        const words = wordsOf(into);
        const outputs = EMOTION_OUTPUTS.map((name) => into[name]);
        const input = new Float32Array(engine.inputSize);
        const canTerminate = runtime() === "bun";
        let accepted = 0;
        let reads = 0;
        let distinct = 0;
        let killed = 0;
        let sample: RealtimeStats | null = null;
        let last = -1;
        let slowest = 0;
        let readsDuringRestart = 0;
        const exercise = () => {
          input[0] = accepted;
          const t0 = performance.now();
          if (engine.submit(input)) accepted++;
          const seq = engine.latest(into);
          slowest = Math.max(slowest, performance.now() - t0);
          if (seq < 0) return;
          reads++;
          if (engine.stats().state !== "running") readsDuringRestart++;
          if (seq < last || seq >= accepted) {
            fail(`read ${reads}: sequence ${seq} after ${last}, with ${accepted} accepted`);
          }
          if (seq !== last) distinct++;
          const sum = resultChecksum(words, 0, words.length, seq);
          if (sum !== engine.resultChecksum) fail(`read ${reads}: torn result ${seq}`);
          checkFakeValues(outputs, seq, reads);
          last = seq;
        };
        const restartStart: number[] = [];
        for (let k = 0; k < kills; k++) {
          // Wait for the replacement to serve so that each kill lands on a live Worker,
          // exercising the caller side all the while: the engine has restarted once per kill so
          // far, and a result came after that. (A new result alone is not enough: the Worker
          // told to throw can publish one more before it reaches the command, while the engine
          // has not yet heard of its death; a kill issued then would be cleared by the restart,
          // which drops any command aimed at the Worker it replaces.)
          let before: number | null = null;
          const t0 = performance.now();
          for (;;) {
            const s = engine.stats();
            if (before === null && s.state === "running" && s.workerRestarts >= k) before = last;
            if (before !== null && last > before && s.state === "running") break;
            if (performance.now() - t0 > 30_000) {
              fail(`kill ${k}: no new result in 30 s (${JSON.stringify(s, statsKeys)})`);
            }
            exercise();
            sample = checkSample(engine.stats(), sample, killed, policy);
            await sleep(1);
          }
          if (k > 0) restartStart.push(performance.now() - t0);
          const steps = rng.int(0, 40);
          for (let i = 0; i < steps; i++) {
            exercise();
            if (rng.next() < 0.5) await sleep(1);
          }
          killed++;
          if (canTerminate && rng.next() < 0.5) terminateWorker(engine);
          else crashWorker(engine);
          // Calls go on at once: the restart happens behind them.
          for (let i = 0; i < 5; i++) exercise();
        }
        await waitFor(
          () => {
            exercise();
            const s = engine.stats();
            sample = checkSample(s, sample, killed, policy);
            return s.state === "running" && s.workerRestarts >= kills && last >= 0;
          },
          () => `the last restart (${JSON.stringify(engine.stats(), statsKeys)})`,
          30_000,
        );
        await waitFor(
          () => {
            const s = engine.stats();
            return s.pending === 0 && s.inFlight === 0 &&
              s.workersExited + s.workersTerminated === s.workerRestarts;
          },
          () =>
            `the ring to drain and the replaced Workers to leave (${
              JSON.stringify(engine.stats(), statsKeys)
            })`,
          30_000,
        );
        const s = checkSample(engine.stats(), sample, killed, policy);
        check(s.workerRestarts === kills, () => `${s.workerRestarts} restarts for ${kills} kills`);
        check(
          s.completed >= distinct,
          () => `completed ${s.completed}, but ${distinct} distinct results were read`,
        );
        if (policy === "every") {
          check(
            s.skipped === 0 && s.submitted === s.completed + s.lost,
            () => `policy every: ${JSON.stringify(countsOf(s))}`,
          );
        }
        check(s.submitted === accepted, () => `submitted ${s.submitted}, accepted ${accepted}`);
        check(
          s.submitted === s.completed + s.skipped + s.lost,
          () =>
            `submitted ${s.submitted} != completed ${s.completed} + skipped ${s.skipped} + ` +
            `lost ${s.lost}`,
        );
        check(reads > kills, () => `only ${reads} reads`);
        // submit and latest are synchronous and never wait on the Worker: calls made while
        // the engine was restarting returned, with the last good result (checked above).
        check(readsDuringRestart > 0, () => "no read completed while a restart was under way");
        if (process.env.CADENZA_FAULTS_VERBOSE) {
          console.log(JSON.stringify({
            kills,
            policy,
            reads,
            distinct,
            readsDuringRestart,
            accepted,
            slowestCallMs: slowest,
            restartMs: restartStart.sort((a, b) => a - b)[restartStart.length >> 1],
            completed: s.completed,
            skipped: s.skipped,
            lost: s.lost,
            exited: s.workersExited,
            terminated: s.workersTerminated,
          }));
        }
      } finally {
        await engine.stop();
      }
    },
  };
}

/**
 * The Worker stopped exactly between two of its operations: it is stalled (the STALL hook,
 * its loop parked before any take), and this thread then does what the Worker's next
 * operations would have done, on the shared words, as worker.ts does them. Then it is killed
 * (crash: it throws as soon as the stall is released; terminate, Bun only: stopped where it
 * is) and replaced. `through` says how far it got:
 * - "take": the take's one compare-exchange of READ (worker.ts #take), passing over the 4
 *   inputs before the newest of 5: at once 4 more skipped and 1 in flight; once replaced,
 *   that input is lost, and nothing else moved.
 * - "publish": that take, then the publication's compare-exchange of NEWEST with the result
 *   written as #write writes it, but not the add to DONE after it (worker.ts #publish): at
 *   once 1 more completed, 0 in flight, the result readable; once replaced, nothing lost, and
 *   the replacement's own publications each count one more.
 */
export function stoppedBetweenCase(
  through: "take" | "publish",
  killer: "crash" | "terminate",
): Case {
  return {
    name: `faults: a Worker stopped right after its ${through} compare-exchange and then ` +
      `killed (${killer}): every count exact`,
    run: () =>
      withEngine({ runner: FAKE_RUNNER, policy: "latest", watchdogMs: 60_000 }, async (engine) => {
        const into = engine.createBuffers();
        const outputs = EMOTION_OUTPUTS.map((name) => into[name]);
        const input = new Float32Array(engine.inputSize);
        const control = controlOf(engine);
        input[0] = 0;
        check(engine.submit(input), () => "the first submit was refused");
        await waitFor(() => engine.latest(into) === 0, "result 0");
        await waitFor(() => engine.stats().inFlight === 0, "the first publication counted");
        stallWorker(engine, 60_000);
        await waitFor(() => engine.stats().workerState === "stalled", "the Worker to stall");
        // From here until the kill all of this runs in one turn: nothing else touches READ.
        for (let i = 1; i <= 5; i++) {
          input[0] = i;
          check(engine.submit(input), () => `submit ${i} refused`);
        }
        const before = engine.stats();
        check(
          before.submitted === 6 && before.completed === 1 && before.pending === 5 &&
            before.skipped === 0 && before.inFlight === 0 && before.lost === 0,
          () => `before the take: ${JSON.stringify(countsOf(before))}`,
        );
        const seq = takeAsWorker(control);
        check(seq === 5, () => `took ${seq}, expected the newest, 5`);
        const taken = engine.stats();
        check(
          taken.pending === 0 && taken.skipped === 4 && taken.inFlight === 1 &&
            taken.completed === 1 && taken.lost === 0,
          () => `after the take: ${JSON.stringify(countsOf(taken))}`,
        );
        if (through === "publish") {
          publishAsWorker(control, engine.inputSize, seq);
          const published = engine.stats();
          check(
            published.completed === 2 && published.inFlight === 0 && published.skipped === 4 &&
              published.lost === 0,
            () => `after the publication: ${JSON.stringify(countsOf(published))}`,
          );
          check(engine.latest(into) === seq, () => "the publication is not readable");
          checkFakeValues(outputs, seq, 0);
        }
        if (killer === "terminate") terminateWorker(engine);
        else crashWorker(engine);
        releaseWorker(engine);
        await waitFor(
          () => engine.stats().state === "running" && engine.stats().workerRestarts === 1,
          "the replacement",
        );
        const replaced = engine.stats();
        const lost = through === "take" ? 1 : 0;
        check(
          replaced.lost === lost && replaced.inFlight === 0 && replaced.skipped === 4 &&
            replaced.completed === 2 - lost && replaced.pending === 0,
          () => `after the replacement: ${JSON.stringify(countsOf(replaced))}`,
        );
        // The replacement's publications count from there, one each.
        for (let i = 6; i < 9; i++) {
          input[0] = i;
          await waitFor(() => engine.submit(input), `a slot for ${i}`);
          await waitFor(() => engine.latest(into) === i, `result ${i}`);
          checkFakeValues(outputs, i, i);
          await waitFor(() => engine.stats().inFlight === 0, `result ${i} counted`);
          const s = engine.stats();
          check(
            s.completed === i - 3 - lost && s.skipped === 4 && s.lost === lost &&
              s.submitted === i + 1 && s.submitted === s.completed + s.skipped + s.lost,
            () => `after result ${i}: ${JSON.stringify(countsOf(s))}`,
          );
        }
      }),
  };
}

/** The take worker.ts #take makes, of the newest input (policy latest); returns its number. */
function takeAsWorker(control: Int32Array): number {
  const word = Atomics.load(control, Control.READ);
  const write = Atomics.load(control, Control.WRITE_SEQ);
  check(((write - word) & POS_MASK) > 0, () => "nothing pending to take");
  const seq = (write - 1) | 0;
  const took = packRead(seq + 1, readTakes(word) + 1, readEpoch(word));
  check(
    Atomics.compareExchange(control, Control.READ, word, took) === word,
    () => "READ moved under the test's take",
  );
  return seq;
}

/**
 * The publication worker.ts #publish and #write make of the fake runner's result for input
 * `seq` (whose [0] is `seq`), into a buffer NEWEST does not name, up to and including the
 * compare-exchange of NEWEST, and not the add to DONE that follows it.
 */
function publishAsWorker(control: Int32Array, inputSize: number, seq: number): void {
  const layout = computeLayout({
    slots: 8,
    inputSize,
    outputSizes: Object.values(FAKE_OUTPUTS),
    modelCount: FAKE_MODELS.length,
  });
  check(inputSize === FAKE_INPUT_SIZE, () => `input size ${inputSize}`);
  const views = createViews(control.buffer as SharedArrayBuffer, layout);
  const newest = Atomics.load(control, Control.NEWEST);
  const buffer = (newestBuffer(newest) + 1) % RESULT_BUFFERS;
  const next = packNewest(buffer, newestEpoch(newest), newestCount(newest) + 1);
  const version = Atomics.load(control, Control.VERSION + buffer) | 1;
  Atomics.exchange(control, Control.VERSION + buffer, version);
  const base = buffer * layout.resultSize;
  let k = 0;
  for (const width of layout.outputSizes) {
    for (let i = 0; i < width; i++) {
      views.results[base + layout.outputOffsets[k] + i] = fakeValue(seq, k, i);
    }
    k++;
  }
  const masked = seq & SEQ_MASK;
  Atomics.store(control, Control.RESULT_SEQ + buffer, masked);
  Atomics.store(
    control,
    Control.CHECKSUM + buffer,
    resultChecksum(views.resultWords, base, layout.resultSize, masked),
  );
  Atomics.store(control, Control.PUB_ID + buffer, publicationId(next));
  Atomics.store(control, Control.VERSION + buffer, (version + 1) | 0);
  check(
    Atomics.compareExchange(control, Control.NEWEST, newest, next) === newest,
    () => "NEWEST moved under the test's publication",
  );
}

const CHILD = fileURLToPath(new URL("./atomic_child.ts", import.meta.url));

function childCommand(path: string): [string, string[]] {
  if (runtime() === "bun") return [process.execPath, [CHILD, path]];
  return [process.execPath, ["run", "--allow-read", "--allow-write", "--allow-env", CHILD, path]];
}

/** Runs the writer child, SIGKILLs it after `delayMs`, and resolves when it is gone. */
function killWriterAfter(path: string, delayMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const [cmd, args] = childCommand(path);
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
      // Kill only once the child writes (its start-up time varies with the machine's load).
      if (out.includes("writing") && !timer) {
        timer = setTimeout(() => child.kill("SIGKILL"), delayMs);
      }
    });
    child.stderr.on("data", (d) => (err += d));
    let timer: ReturnType<typeof setTimeout> | undefined;
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (timer) clearTimeout(timer);
      if (signal !== "SIGKILL") reject(new Error(`writer exited ${code} ${signal}: ${err}`));
      else resolve(out);
    });
  });
}

/**
 * The child replaces one file over and over with whole versions of it (each a different size
 * and pattern, src/atomic.ts); it is killed with SIGKILL `trials` times at random points. After
 * each kill the file is exactly one whole version, never a torn one.
 */
export function killMidWriteCase(trials: number): Case {
  return {
    name: `faults: an atomic write killed with SIGKILL at ${trials} random points leaves the ` +
      "old or the new file, never a torn one",
    run: async () => {
      const dir = mkdtempSync(join(tmpdir(), "cadenza-atomic-"));
      try {
        const path = join(dir, "model.cdz");
        writeFileSync(path, patternBytes(0));
        const rng = new Rng(1414);
        const seen = new Set<number>();
        for (let t = 0; t < trials; t++) {
          const out = await killWriterAfter(path, rng.int(0, 60));
          const v = verdict(readFileSync(path));
          if (v < 0) fail(`trial ${t}: the file is torn (${out.trim().split("\n").pop()})`);
          seen.add(v);
        }
        // The kills landed at different points: more than one version was left behind.
        check(seen.size > 1, () => `every kill left version ${[...seen]}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
