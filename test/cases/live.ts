/**
 * `cadenza live`, run in-process through main() on the project's models/, faster than real
 * time (--speed), with its output captured. The counters must add up: every submit() either
 * produced a result or was dropped (refused by a full ring, or skipped by the "latest" policy).
 * Runtime-neutral; test/live.test.ts and test/deno/live.test.ts register them.
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { melodySignal } from "../../src/audio/signal.ts";
import type { Output } from "../../src/cli/command.ts";
import { BlockFeeder } from "../../src/audio/feeder.ts";
import type { LiveSummary } from "../../src/cli/live.ts";
import { main } from "../../src/cli/main.ts";
import { type EmotionOutputs, EmotionPipeline } from "../../src/pipeline/emotion.ts";
import { RealtimeEngine } from "../../src/rt/index.ts";
import type { AllocationProbe } from "./audio.ts";
import { encodeWav } from "./audio.ts";
import { type Case, check, fail } from "./check.ts";

const MODEL_NAMES = [
  "EmotionRecognizer",
  "MelodyTransformer",
  "HarmonyPredictor",
  "DynamicsEngine",
  "GroovePredictor",
];

export async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const output: Output = { out: (line) => out.push(line), err: (line) => err.push(line) };
  const code = await main(argv, output);
  return { code, out: out.join("\n"), err: err.join("\n") };
}

export function parseSummary(text: string): LiveSummary {
  try {
    return JSON.parse(text) as LiveSummary;
  } catch {
    return fail(`live --json printed something that is not JSON:\n${text}`);
  }
}

/** Checks what holds for any completed run of `blocks` blocks. */
export function checkCounters(s: LiveSummary, blocks: number, what: string): void {
  const c = s.counters;
  const text = () => `${what}: ${JSON.stringify(c)} (last error: ${s.lastError})`;
  check(c.submitted === blocks, () => `${text()}: expected ${blocks} submits`);
  check(c.submitted === c.accepted + c.rejected, () => `${text()}: accepted + rejected`);
  check(c.dropped === c.rejected + c.skipped, () => `${text()}: dropped`);
  check(c.submitted === c.completed + c.dropped, () => `${text()}: completed + dropped`);
  check(c.pending === 0 && c.unfinished === 0, () => `${text()}: not drained`);
  check(c.completed > 0 && c.resultsRead > 0, () => `${text()}: no results`);
  check(c.workerRestarts === 0 && s.lastError === null, () => `${text()}: restarts`);
  check(
    s.latencyUs.pipeline.count === c.completed,
    () => `${what}: ${s.latencyUs.pipeline.count} pipeline timings for ${c.completed} results`,
  );
  const models = Object.keys(s.latencyUs.models);
  check(models.join() === MODEL_NAMES.join(), () => `${what}: latency of models ${models}`);
  check(s.last !== null && s.last.note >= 0 && s.last.note < 128, () => `${what}: last result`);
  // The five models hold about a million matrix weights: 4 bytes each at f32, 2 at bf16.
  const weightBytesMin = s.precision === "bf16" ? 2_000_000 : 4_000_000;
  check(
    s.weightBytes > weightBytesMin && s.modelLoadMs > 0 && s.memory.rssBytes > 0,
    () => `${what}: ${s.precision} weight bytes ${s.weightBytes}, load ${s.modelLoadMs} ms`,
  );
  check(!s.interrupted && s.engineState === "running", () => `${what}: ${s.engineState}`);
}

const generatedCase: Case = {
  name: "live: --seconds 1 of the generated melody; submitted = completed + dropped (latest)",
  run: async () => {
    const result = await cli("live", "--seconds", "1", "--speed", "4", "--json", "--quiet");
    check(result.code === 0, () => `exit ${result.code}: ${result.err}`);
    const s = parseSummary(result.out);
    checkCounters(s, 375, "latest");
    check(s.stream.policy === "latest" && s.stream.blockSamples === 128, () => "stream");
    check(Math.abs(s.stream.blockPeriodUs - 8000 / 3) < 1e-6, () => `${s.stream.blockPeriodUs}`);
    check(s.source.kind === "generated" && s.source.sampleRateHz === 48_000, () => "source");
    check(s.source.binHz === 48_000 / 4096, () => "bins");
    // The trained files of models/ say so in their metadata.
    check(!s.untrained && s.models.every((m) => !m.untrained), () => "trained not reported");
    check(s.models.map((m) => m.name).join() === MODEL_NAMES.join(), () => "models");
    check(result.err === "", () => `--quiet printed: ${result.err}`);
  },
};

const everyCase: Case = {
  name: "live: --policy every runs every accepted block (nothing skipped)",
  run: async () => {
    const result = await cli(
      "live",
      "--seconds",
      "0.5",
      "--speed",
      "2",
      "--policy",
      "every",
      "--block",
      "256",
      "--rate",
      "32000",
      "--json",
      "--quiet",
    );
    check(result.code === 0, () => `exit ${result.code}: ${result.err}`);
    const s = parseSummary(result.out);
    checkCounters(s, 63, "every");
    check(s.counters.skipped === 0, () => `every skipped ${s.counters.skipped}`);
    check(s.counters.completed === s.counters.accepted, () => "every: accepted not all run");
    check(s.source.sampleRateHz === 32_000 && s.source.binHz === 32_000 / 4096, () => "rate");
  },
};

const bf16Case: Case = {
  name: "live: --precision bf16 runs the models with bf16 weights and says so in the summary",
  run: async () => {
    const result = await cli(
      "live",
      "--seconds",
      "0.5",
      "--speed",
      "4",
      "--precision",
      "bf16",
      "--json",
      "--quiet",
    );
    check(result.code === 0, () => `exit ${result.code}: ${result.err}`);
    const s = parseSummary(result.out);
    checkCounters(s, 188, "bf16");
    const reference = await EmotionPipeline.load(undefined, { precision: "bf16" });
    const want = reference.weightBytes;
    reference.dispose();
    check(
      s.precision === "bf16" && s.weightBytes === want,
      () => `precision ${s.precision}, ${s.weightBytes} weight bytes, expected bf16 and ${want}`,
    );
  },
};

const STATUS = new RegExp(
  String.raw`^live \d+\.\d\d s  submitted \d+  completed \d+  dropped \d+  ` +
    String.raw`step p50 [\d.]+ p99 [\d.]+ us  e2e p50 [\d.]+ p99 [\d.]+ us  ` +
    String.raw`(note \d+ [A-G]#?-?\d+  chord \d+|note -  chord -)$`,
);

const textCase: Case = {
  name: "live: status lines on stderr, the summary table on stdout",
  run: async () => {
    // 1 s of audio at 2x: 500 ms of wall time, so the 250 ms status line comes at least once.
    const result = await cli("live", "--seconds", "1", "--speed", "2");
    check(result.code === 0, () => `exit ${result.code}: ${result.err}`);
    const status = result.err.split("\n");
    check(
      status.length >= 1 && status.every((line) => STATUS.test(line)),
      () => `status lines:\n${result.err}`,
    );
    const out = result.out;
    for (
      const pattern of [
        /^cadenza live: 1\.00 s of audio in \d+\.\d\d s, 128-sample blocks every 2667 us/m,
        /^blocks: submitted 375 = completed \d+ \+ dropped \d+ \(rejected \d+, skipped \d+\)/m,
        /^ {2}pipeline step +\d+ /m,
        /^ {2}end-to-end submit->publish +\d+ /m,
        /^ {2}MelodyTransformer +\d+ /m,
        /^models: 5 loaded in [\d.]+ ms, f32 weights, \d+ weight bytes; process RSS [\d.]+ MiB$/m,
      ]
    ) {
      check(pattern.test(out), () => `summary lacks ${pattern}:\n${out}`);
    }
  },
};

const wavCase: Case = {
  name: "live: --wav streams a stereo 16-bit file at its own rate, looped",
  run: async () => {
    const dir = mkdtempSync(join(tmpdir(), "cadenza-live-"));
    try {
      const rate = 22_050;
      const tone = melodySignal(rate, { seconds: 0.2 });
      const frames = Array.from(tone, (v) => [Math.round(v * 32767), Math.round(-v * 16384)]);
      const path = join(dir, "take.wav");
      writeFileSync(path, encodeWav("int16", rate, frames));
      const result = await cli("live", "--wav", path, "--seconds", "0.5", "--json", "--quiet");
      check(result.code === 0, () => `exit ${result.code}: ${result.err}`);
      const s = parseSummary(result.out);
      checkCounters(s, Math.ceil((0.5 * rate) / 128), "wav");
      check(s.source.kind === "wav" && s.source.path === path, () => `source ${s.source.path}`);
      check(s.source.channels === 2 && s.source.format === "int16", () => "format");
      check(s.source.sampleRateHz === rate && s.source.binHz === rate / 4096, () => "rate");
      check(Math.abs(s.source.seconds - 0.2) < 1e-3, () => `${s.source.seconds} s`);
      check(Math.abs(s.stream.blockPeriodUs - (128 / rate) * 1e6) < 1e-6, () => "period");
      const same = await cli("live", "--wav", path, "--rate", String(rate), "--seconds", "0.1");
      check(same.code === 0, () => `--rate equal to the file's: exit ${same.code}: ${same.err}`);
      const other = await cli("live", "--wav", path, "--rate", "48000");
      check(other.code === 2 && /differs from .*22050 Hz/.test(other.err), () => other.err);
      writeFileSync(path, encodeWav("int16", rate, frames).slice(0, 100));
      const cut = await cli("live", "--wav", path);
      check(
        cut.code === 1 && /E_FORMAT: .*take\.wav: WAV: truncated/.test(cut.err),
        () => `truncated file: exit ${cut.code}: ${cut.err}`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

const USAGE: [string[], RegExp][] = [
  [["--policy", "newest"], /--policy must be "latest" or "every", got "newest"/],
  [["--seconds", "0"], /--seconds must be a number in \(0, 86400\]/],
  [["--seconds", "abc"], /--seconds must be a number/],
  [["--block", "-5"], /--block/],
  [["--block", "100000"], /--block must be at most 65536/],
  [["--rate", "1.5"], /--rate must be a positive integer/],
  [["--speed", "0"], /--speed must be a number in \(0, 1000\]/],
  [["--precision", "f16"], /--precision must be one of f32, bf16.*, got "f16"/],
  [["extra"], /live: takes no arguments, got: extra/],
  [["--bogus"], /unknown flag --bogus/],
];

const usageCase: Case = {
  name: "live: bad flags exit 2 before anything loads; a missing file exits 1 naming it",
  run: async () => {
    for (const [argv, pattern] of USAGE) {
      const result = await cli("live", ...argv);
      check(
        result.code === 2 && pattern.test(result.err),
        () => `live ${argv.join(" ")}: exit ${result.code}, ${result.err}`,
      );
    }
    const missing = await cli("live", "--wav", "/nonexistent/take.wav");
    check(
      missing.code === 1 && /E_IO: .*\/nonexistent\/take\.wav/.test(missing.err),
      () => `missing wav: exit ${missing.code}, ${missing.err}`,
    );
    const models = await cli("live", "--models", "/nonexistent/models");
    check(
      models.code === 1 && /EmotionRecognizer/.test(models.err),
      () => `missing models: exit ${models.code}, ${models.err}`,
    );
    const help = await cli("live", "--help");
    const flags = ["--wav", "--seconds", "--block", "--rate", "--policy", "--precision", "--json"];
    for (const flag of flags) {
      check(help.out.includes(`  ${flag} `), () => `--help does not document ${flag}`);
    }
  },
};

/** What an audio callback runs per block: features, submit, latest. */
export function feederAllocationCase(probe: AllocationProbe, slack: number, unit: string): Case {
  return {
    name: `live: 20,000 feeder blocks (features + submit + latest) allocate nothing ` +
      `(${unit}, slack ${slack})`,
    run: async () => {
      const engine = await RealtimeEngine.start<EmotionOutputs>({ policy: "latest" });
      try {
        const feeder = new BlockFeeder(engine, melodySignal(48_000, { seconds: 1 }), 128);
        const body = (calls: number) => {
          for (let i = 0; i < calls; i++) feeder.tick();
        };
        // Warm up until results flow, so that the paths taken once the Worker publishes are
        // compiled before measuring (with a cold module cache the Worker starts late, and the
        // JIT's first compilations of those paths land in the measured rounds otherwise), and
        // for 50,000 blocks at least, yielding now and then: V8 was still compiling tick,
        // latest and submit after 5,000, and its code objects (8-30 KB) landed in two of the
        // four measured chunks (a median of 1,725 bytes per 1,000 blocks with no per-block
        // allocation at all). The feature extractor's 4096-point FFT makes a block slow enough
        // that the Worker publishes a fresh result for many blocks: `latest` takes its copying
        // path often, and is optimised only after tens of thousands of blocks.
        let blocks = 0;
        for (let warm = 0; warm < 200 && (blocks < 50_000 || feeder.resultsRead < 2000); warm++) {
          body(1000);
          blocks += 1000;
          if (blocks % 10_000 === 0) await new Promise<void>((resolve) => setTimeout(resolve, 0));
        }
        // One measurement: the probe forces a collection before each chunk of calls, so an
        // allocation per block shows in every chunk (test/alloc-probe.test.ts).
        const measured = probe(20_000, body);
        blocks += 20_000;
        check(
          feeder.submitted === blocks && feeder.resultsRead > 0,
          () => `${feeder.submitted} submitted of ${blocks}, ${feeder.resultsRead} read`,
        );
        check(measured <= slack, () => `feeder blocks allocated ${measured} ${unit} > ${slack}`);
      } finally {
        await engine.stop();
      }
    },
  };
}

export const liveCases: Case[] = [
  generatedCase,
  everyCase,
  bf16Case,
  textCase,
  wavCase,
  usageCase,
];
