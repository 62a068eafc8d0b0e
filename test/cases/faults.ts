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
import { RealtimeEngine } from "../../src/rt/engine.ts";
import { resultChecksum } from "../../src/rt/layout.ts";
import { EMOTION_OUTPUTS } from "../../src/rt/runner.ts";
import { crashWorker, terminateWorker } from "../../src/rt/testing.ts";
import { Rng } from "../helpers.ts";
import { type Case, check, fail } from "./check.ts";
import { checkFakeValues, FAKE_RUNNER, sleep, waitFor, wordsOf } from "./rt.ts";
import { patternBytes, verdict } from "./atomic_child.ts";

/**
 * The Worker is killed `kills` times at random points (after a random number of submits and
 * reads, 0 to 40 ms apart): by a throw inside its loop, and under Bun also by
 * worker.terminate() (Deno does not stop a Worker that never yields, see testing.ts). Every
 * read is checked (never torn: checksum and values belong to one result; sequence never goes
 * back), reads go on while a restart is under way, and at the end every accepted input is
 * accounted for.
 */
export function workerKillCase(kills: number): Case {
  return {
    name: `faults: the Worker killed at ${kills} random points; reads never torn, ` +
      "counters add up, calls go on during restarts",
    run: async () => {
      const engine = await RealtimeEngine.start({
        runner: FAKE_RUNNER,
        policy: "latest",
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
          const sum = resultChecksum(words, 0, words.length, seq);
          if (sum !== engine.resultChecksum) fail(`read ${reads}: torn result ${seq}`);
          checkFakeValues(outputs, seq, reads);
          last = seq;
        };
        const restartStart: number[] = [];
        for (let k = 0; k < kills; k++) {
          // Wait for the replacement to serve (a result newer than any before the kill) so that
          // each kill lands on a live Worker, exercising the caller side all the while.
          const before = last;
          const t0 = performance.now();
          while (last <= before || engine.stats().state !== "running") {
            if (performance.now() - t0 > 30_000) {
              fail(`kill ${k}: no new result in 30 s (${JSON.stringify(engine.stats())})`);
            }
            exercise();
            await sleep(1);
          }
          if (k > 0) restartStart.push(performance.now() - t0);
          const steps = rng.int(0, 40);
          for (let i = 0; i < steps; i++) {
            exercise();
            if (rng.next() < 0.5) await sleep(1);
          }
          if (canTerminate && rng.next() < 0.5) terminateWorker(engine);
          else crashWorker(engine);
          // Calls go on at once: the restart happens behind them.
          for (let i = 0; i < 5; i++) exercise();
        }
        await waitFor(
          () => {
            exercise();
            const s = engine.stats();
            return s.state === "running" && s.workerRestarts >= kills && last >= 0;
          },
          "the last restart",
          30_000,
        );
        await waitFor(
          () => {
            const s = engine.stats();
            return s.pending === 0 && s.inFlight === 0 &&
              s.workersExited + s.workersTerminated === s.workerRestarts;
          },
          "the ring to drain and the replaced Workers to leave",
          30_000,
        );
        const s = engine.stats();
        check(s.workerRestarts === kills, () => `${s.workerRestarts} restarts for ${kills} kills`);
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
            reads,
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
