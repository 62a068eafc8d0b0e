/**
 * The soak (issue 14), shared by test/soak.test.ts (Bun) and test/deno/soak.test.ts: the
 * engine runs the five models at audio block rate (128 frames at 48 kHz, one submit and one
 * latest a block) for CADENZA_SOAK_S seconds (30 in CI; 600 for the long run), sampling the
 * process's resident memory every second. It fails if resident memory grows by more than
 * RSS_GROWTH_MAX between the end of the warm-up (5 s) and the end, or if any submitted input
 * goes unaccounted. The end-to-end p99 (cumulative, from the engine's histogram) at each tenth
 * of the run is reported, not asserted (timings are not pass/fail here): docs/TESTING.md keeps
 * the figures.
 */

import process from "node:process";
import { RealtimeEngine } from "../../src/rt/engine.ts";
import { envVar } from "../../src/native/io.ts";
import { Rng } from "../helpers.ts";
import { type Case, check } from "./check.ts";
import { modelsDir, sleep, waitFor } from "./rt.ts";

/** Resident memory may grow this much after warm-up: allocator and JIT noise, not a leak. */
export const RSS_GROWTH_MAX = 32 * 1024 * 1024;
const BLOCK_MS = (128 / 48_000) * 1000;
const WARMUP_S = 5;

export function soakCase(seconds: number): Case {
  return {
    name: `soak: the engine at block rate for ${seconds} s; resident memory grows less than ` +
      `${RSS_GROWTH_MAX >> 20} MiB after warm-up, every input accounted for`,
    run: async () => {
      const engine = await RealtimeEngine.start({ models: modelsDir(), policy: "latest" });
      try {
        const rng = new Rng(99);
        const into = engine.createBuffers();
        const inputs = Array.from({ length: 64 }, () => rng.floats(engine.inputSize, -1, 1));
        const rss: number[] = [];
        const p99: number[] = [];
        const t0 = performance.now();
        let blocks = 0;
        let accepted = 0;
        let results = 0;
        let lastCount = 0;
        while (performance.now() - t0 < seconds * 1000) {
          // The blocks due by now, as an audio callback would run them.
          const due = Math.floor((performance.now() - t0) / BLOCK_MS);
          for (; blocks < due; blocks++) {
            if (engine.submit(inputs[blocks & 63])) accepted++;
            if (engine.latest(into) >= 0) results++;
          }
          const second = Math.floor((performance.now() - t0) / 1000);
          if (second >= rss.length) {
            rss.push(process.memoryUsage().rss);
            const s = engine.stats().latencyUs.endToEnd;
            if (rss.length % Math.max(1, Math.floor(seconds / 10)) === 0) {
              p99.push(s.p99Us);
            }
            lastCount = s.count;
          }
          await sleep(1);
        }
        await waitFor(() => engine.stats().pending === 0 && engine.stats().inFlight === 0, "drain");
        const s = engine.stats();
        check(s.submitted === accepted, () => `submitted ${s.submitted}, accepted ${accepted}`);
        check(
          s.submitted === s.completed + s.skipped + s.lost,
          () => `submitted ${s.submitted} != ${s.completed} + ${s.skipped} + ${s.lost}`,
        );
        check(s.workerRestarts === 0, () => `${s.workerRestarts} restarts: ${s.lastError}`);
        check(results > blocks / 2, () => `${results} results for ${blocks} blocks`);
        const base = rss[Math.min(WARMUP_S, rss.length - 1)];
        const growth = Math.max(...rss.slice(WARMUP_S)) - base;
        const report = {
          seconds,
          blocks,
          accepted,
          completed: s.completed,
          skipped: s.skipped,
          rssMiBAfterWarmup: +(base / 2 ** 20).toFixed(1),
          rssGrowthMiB: +(growth / 2 ** 20).toFixed(2),
          endToEndP99UsCumulative: p99,
          endToEndCount: lastCount,
        };
        if (envVar("CADENZA_SOAK_VERBOSE")) console.log(JSON.stringify(report));
        check(growth < RSS_GROWTH_MAX, () => `resident memory grew: ${JSON.stringify(report)}`);
      } finally {
        await engine.stop();
      }
    },
  };
}
