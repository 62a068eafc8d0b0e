/**
 * The real-time engine's cases, shared by test/rt.test.ts (Bun), test/rt-stress.test.ts (Bun)
 * and test/deno/rt.test.ts. Cases that run the models use the project's models/ folder, or
 * CADENZA_MODELS when set (another set of the five files).
 *
 * Waiting in these tests is on the event loop (sleep and poll), never on a timing threshold:
 * every deadline is a generous bound on "it never happened", not a performance claim.
 */

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CadenzaError } from "../../src/errors.ts";
import {
  CONTEXT_SIZE,
  EMOTION_MODELS,
  EMOTION_SIZE,
  type EmotionOutputs,
  EmotionPipeline,
  FEATURE_SIZE,
  modelFile,
} from "../../src/pipeline/emotion.ts";
import {
  NO_RESULT,
  type PipelineBuffers,
  READ_FAILED,
  RealtimeEngine,
  type RealtimeOptions,
} from "../../src/rt/engine.ts";
import { LatencyHistogram } from "../../src/rt/histogram.ts";
import {
  Control,
  newestBuffer,
  RESULT_BUFFERS,
  resultChecksum,
  SEQ_MASK,
} from "../../src/rt/layout.ts";
import { EMOTION_OUTPUTS } from "../../src/rt/runner.ts";
import {
  controlOf,
  crashWorker,
  moveSequences,
  pauseInPublish,
  releaseWorker,
  stallWorker,
  terminateWorker,
} from "../../src/rt/testing.ts";
import { envVar } from "../../src/native/io.ts";
import { Rng } from "../helpers.ts";
import { type Case, check, fail, rejectsCadenza, throwsCadenza } from "./check.ts";
import { FAKE_INPUT_SIZE, FAKE_MODELS, FAKE_OUTPUTS, fakeValue, hangInput } from "./rt_runner.ts";

/** The test runner module (no native library, about a microsecond a step). */
export const FAKE_RUNNER = new URL("./rt_runner.ts", import.meta.url).href;
/** The fake runner whose first replacement is slow to start (lateStartCase). */
const SLOW_START_RUNNER = new URL("./rt_runner_slow_start.ts", import.meta.url).href;

export function modelsDir(): string | undefined {
  const dir = envVar("CADENZA_MODELS");
  return dir === undefined || dir === "" ? undefined : dir;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every few ms; fails with `what` if it is still false after `limitMs`. */
export async function waitFor(
  condition: () => boolean,
  what: string | (() => string),
  limitMs = 10_000,
) {
  const deadline = performance.now() + limitMs;
  while (!condition()) {
    if (performance.now() > deadline) {
      fail(`gave up after ${limitMs} ms waiting for ${typeof what === "string" ? what : what()}`);
    }
    await sleep(2);
  }
}

/** Starts an engine, runs `body`, and always stops it. */
export async function withEngine(
  options: RealtimeOptions,
  body: (engine: RealtimeEngine) => Promise<void>,
): Promise<void> {
  const engine = await RealtimeEngine.start(options);
  try {
    await body(engine);
  } finally {
    await engine.stop();
  }
}

/** Submits `features`, retrying while the ring is full; returns after it was accepted. */
async function submitSurely(
  engine: RealtimeEngine,
  features: Float32Array,
  context?: Float32Array,
): Promise<void> {
  await waitFor(() => engine.submit(features, context), "a free input slot");
}

/** Waits until `latest` returns `seq` (or later); returns what it returned. */
async function latestAtLeast(engine: RealtimeEngine, into: EmotionOutputs, seq: number) {
  let got = -1;
  await waitFor(() => (got = engine.latest(into)) >= seq, `result ${seq} (last seen ${got})`);
  return got;
}

/** The buffers from createBuffers as one word array (they share one Float32Array). */
export function wordsOf(into: PipelineBuffers): Uint32Array {
  const first = Object.values(into)[0];
  return new Uint32Array(first.buffer, first.byteOffset, first.buffer.byteLength >>> 2);
}

function features(rng: Rng): Float32Array {
  return rng.floats(FAKE_INPUT_SIZE, -1, 1);
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}

// ---------------------------------------------------------------------------------------------
// The stress run: a reader on this thread races the Worker's publishing.

export interface StressOptions {
  submits: number;
  policy: "latest" | "every";
  /** The fake runner (fast, outputs known from the input) or the five models. */
  fake: boolean;
}

export interface StressResult {
  reads: number;
  distinctResults: number;
  accepted: number;
}

/**
 * `submits` accepted submits, each followed by reads; every read that returns a result must
 * carry the checksum of exactly the values copied out (all five outputs and the sequence
 * number), a sequence number that never goes back and names an accepted input, and, with the
 * fake runner, the values computed from that input; a read that fails must leave the last
 * result in place.
 */
export function stressRun(engine: RealtimeEngine, options: StressOptions): StressResult {
  const into = engine.createBuffers();
  const words = wordsOf(into);
  const outputs = EMOTION_OUTPUTS.map((name) => into[name]);
  const input = new Float32Array(engine.inputSize);
  let accepted = 0;
  let reads = 0;
  let distinct = 0;
  let last = -1;
  while (accepted < options.submits) {
    input[0] = accepted;
    if (engine.submit(input)) accepted++;
    for (let r = 0; r < 2; r++) {
      const seq = engine.latest(into);
      if (seq < 0) {
        // A read that failed after results existed must leave the last good one in place.
        if (last >= 0 && resultChecksum(words, 0, words.length, last) !== engine.resultChecksum) {
          fail(`a failed read after result ${last} changed the buffers`);
        }
        continue;
      }
      reads++;
      if (seq < last || seq >= accepted) {
        fail(`read ${reads}: sequence ${seq} after ${last}, with ${accepted} accepted`);
      }
      const sum = resultChecksum(words, 0, words.length, seq);
      if (sum !== engine.resultChecksum) {
        fail(
          `read ${reads}: torn result ${seq}: checksum ${sum}, published ${engine.resultChecksum}`,
        );
      }
      if (options.fake) checkFakeValues(outputs, seq, reads);
      if (seq !== last) distinct++;
      last = seq;
    }
  }
  return { reads, distinctResults: distinct, accepted };
}

export function checkFakeValues(outputs: Float32Array[], seq: number, read: number): void {
  for (let k = 0; k < outputs.length; k++) {
    const output = outputs[k];
    for (let i = 0; i < output.length; i++) {
      if (output[i] !== fakeValue(seq, k, i)) {
        fail(
          `read ${read}: result ${seq} output ${k}[${i}] = ${output[i]}, ` +
            `expected ${fakeValue(seq, k, i)} (values from another result)`,
        );
      }
    }
  }
}

/** The stress run as a case; afterwards every accepted input is accounted for. */
export function stressCase(options: StressOptions): Case {
  const runner = options.fake ? "fake runner" : "five models";
  return {
    name: `rt stress: ${options.submits} submits, policy ${options.policy}, ${runner}, ` +
      `checksum on every read`,
    run: () =>
      withEngine({
        policy: options.policy,
        runner: options.fake ? FAKE_RUNNER : undefined,
        models: modelsDir(),
        // The reader holds this thread for the whole run, so the watchdog cannot tick.
        watchdogMs: 60_000,
      }, async (engine) => {
        const result = stressRun(engine, options);
        if (envVar("CADENZA_RT_VERBOSE")) console.log(JSON.stringify(result));
        check(result.reads > 0 && result.distinctResults > 1, () =>
          `the reader saw ${result.distinctResults} distinct results in ${result.reads} reads`);
        const stats = () =>
          engine.stats();
        await waitFor(() => stats().pending === 0 && stats().workerState === "idle", "drain");
        const s = stats();
        check(s.submitted === result.accepted, () => `submitted ${s.submitted}`);
        check(s.completed + s.skipped === s.submitted, () =>
          `completed ${s.completed} + skipped ${s.skipped} != submitted ${s.submitted}`);
        if (options.policy === "every") {
          check(s.skipped === 0, () =>
            `skipped ${s.skipped}`);
        }
        check(s.workerRestarts === 0, () =>
          `restarts: ${s.lastError}`);
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Allocation: `measure` is the runtime's own probe (see the test files).

/** Runs `calls` submit+latest pairs between the probe's marks; returns what it measured. */
export type AllocationProbe = (calls: number, body: (calls: number) => void) => number;

export function allocationCase(probe: AllocationProbe, slack: number, unit: string): Case {
  return {
    name: `rt: 100,000 submit+latest calls allocate nothing (${unit}, slack ${slack})`,
    // 1024 slots: the Worker empties the ring each step, so most submits are accepted and
    // take the full path (a refused submit does less).
    run: () =>
      withEngine({ runner: FAKE_RUNNER, policy: "latest", slots: 1024 }, async (engine) => {
        const into = engine.createBuffers();
        const input = new Float32Array(engine.inputSize);
        let seen = 0;
        const body = (calls: number) => {
          for (let i = 0; i < calls; i++) {
            input[0] = i;
            engine.submit(input);
            if (engine.latest(into) >= 0) seen++;
          }
        };
        // Warm up until the accepting path has run often enough to be optimised too.
        const deadline = performance.now() + 10_000;
        while (engine.stats().submitted < 50_000 && performance.now() < deadline) {
          body(10_000);
          await sleep(0);
        }
        await latestAtLeast(engine, into, 0);
        // The least of up to five rounds: the JIT's own one-time work (a deoptimisation when
        // a rare branch is first taken) can land in one round, but an allocation made by
        // submit or latest recurs in every round.
        const rounds: number[] = [];
        const before = engine.stats().submitted;
        while (rounds.length < 5 && !(rounds.length > 0 && Math.min(...rounds) <= slack)) {
          rounds.push(probe(100_000, body));
        }
        const measured = Math.min(...rounds);
        const accepted = (engine.stats().submitted - before) / rounds.length;
        // How many submits find a free slot depends on how long the Worker keeps its core (on
        // a busy 2-core machine, 7-30%); a thousand is enough for a per-call allocation to show.
        check(seen > 0 && accepted > 1000, () => `${accepted} accepted a round, ${seen} read`);
        check(measured <= slack, () =>
          `submit+latest allocated: ${rounds.join(", ")} ${unit} ` +
          `in ${rounds.length} rounds, all > ${slack}`);
        if (envVar("CADENZA_RT_VERBOSE")) {
          console.log(`allocation: ${rounds.join(", ")} ${unit}, ${accepted} accepted a round`);
        }
      }),
  };
}

/**
 * Accepted submits that are rare among refused ones, as in an audio callback that outruns the
 * Worker: one call in ACCEPT_EVERY goes to a running engine with room, the rest to a stopped
 * one (refused, the same method and the same type feedback). An optimiser that weighs the
 * accepting path as cold may leave its calls out of line (V8's Maglev inlines no call made on
 * fewer than 95% of a function's runs), and a call left out of line that returns a fraction,
 * as performance.now() does, boxes it: 16 bytes per accepted submit under Deno.
 */
export function rareAcceptCase(probe: AllocationProbe, slack: number, unit: string): Case {
  const ACCEPT_EVERY = 20;
  return {
    name: `rt: 100,000 submit+latest calls, 1 in ${ACCEPT_EVERY} accepted, allocate nothing ` +
      `(${unit}, slack ${slack})`,
    run: async () => {
      const closed = await RealtimeEngine.start({ runner: FAKE_RUNNER });
      await closed.stop();
      await withEngine({ runner: FAKE_RUNNER, policy: "latest", slots: 1024 }, async (engine) => {
        const into = engine.createBuffers();
        const input = new Float32Array(engine.inputSize);
        let accepted = 0;
        let refused = 0;
        const body = (calls: number) => {
          for (let i = 0; i < calls; i++) {
            input[0] = i;
            if (i % ACCEPT_EVERY === 0) {
              if (engine.submit(input)) accepted++;
            } else if (!closed.submit(input)) refused++;
            engine.latest(into);
          }
        };
        // Warm up, letting the Worker run between batches, until every path is compiled.
        for (let warm = 0; warm < 40; warm++) {
          body(10_000);
          await sleep(0);
        }
        await latestAtLeast(engine, into, 0);
        const rounds: number[] = [];
        const before = accepted;
        const refusedBefore = refused;
        while (rounds.length < 5 && !(rounds.length > 0 && Math.min(...rounds) <= slack)) {
          rounds.push(probe(100_000, body));
        }
        const perRound = (accepted - before) / rounds.length;
        // The ring has 1,024 slots and the Worker empties it each step: all but a few accepted.
        check(
          perRound > 0.9 * 100_000 / ACCEPT_EVERY && refused - refusedBefore > 0,
          () => `${perRound} accepted a round of ${100_000 / ACCEPT_EVERY} sent to the open engine`,
        );
        check(
          Math.min(...rounds) <= slack,
          () =>
            `submit+latest with rare accepts allocated: ${rounds.join(", ")} ${unit} ` +
            `in ${rounds.length} rounds, all > ${slack}`,
        );
        if (envVar("CADENZA_RT_VERBOSE")) {
          console.log(`rare accepts: ${rounds.join(", ")} ${unit}, ${perRound} accepted a round`);
        }
      });
    },
  };
}

/** Bodies of the named methods of class RealtimeEngine in src/rt/engine.ts. */
function methodBodies(names: string[]): Map<string, string> {
  const path = fileURLToPath(new URL("../../src/rt/engine.ts", import.meta.url));
  const source = readFileSync(path, "utf8");
  const bodies = new Map<string, string>();
  for (const name of names) {
    const start = source.search(new RegExp(`^  ${name}\\(`, "m"));
    if (start < 0) fail(`src/rt/engine.ts: method ${name} not found`);
    const open = source.indexOf("{", source.indexOf(")", start));
    let depth = 0;
    let end = open;
    for (; end < source.length; end++) {
      if (source[end] === "{") depth++;
      if (source[end] === "}" && --depth === 0) break;
    }
    bodies.set(name, source.slice(open + 1, end));
  }
  return bodies;
}

/** What would allocate, wait or yield, as it would appear in a method body. */
const FORBIDDEN: [RegExp, string][] = [
  [/\bnew\s/, "new"],
  [/=>|\bfunction\b/, "a closure"],
  [/\basync\b|\bawait\b|\byield\b|\.then\(/, "awaiting"],
  [/Atomics\.wait/, "Atomics.wait"],
  [/\.\.\./, "spread"],
  [/`|["']\s*\+|\+\s*["']/, "string building"],
  [/[=(,:?]\s*[[{]/, "an array or object literal"],
  [/\.(subarray|slice|map|filter|concat|bind|from|of|entries|keys|values)\(/, "a copying call"],
  [/\b(Array|Object|JSON|String|Promise|Date)\b/, "a builtin that allocates"],
];

export const structureCase: Case = {
  name: "rt: submit and latest contain nothing that allocates, waits or awaits",
  run: () => {
    for (const [name, body] of methodBodies(["submit", "latest"])) {
      for (const [pattern, what] of FORBIDDEN) {
        const hit = body.match(pattern);
        check(hit === null, () => `RealtimeEngine.${name} contains ${what}: "${hit![0]}"`);
      }
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Behaviour.

export const checksumCase: Case = {
  name: "rt: the result checksum changes with any single word of any output, or the sequence",
  run: () => {
    const sizes = Object.values(FAKE_OUTPUTS);
    const total = sizes.reduce((a, b) => a + b, 0);
    const rng = new Rng(7);
    const values = rng.floats(total, -1, 1);
    const words = new Uint32Array(values.buffer);
    const sum = resultChecksum(words, 0, total, 41);
    check(resultChecksum(words, 0, total, 42) !== sum, () => "the sequence is not covered");
    let at = 0;
    for (const [k, size] of sizes.entries()) {
      for (const i of [0, size >> 1, size - 1]) {
        const keep = values[at + i];
        values[at + i] = keep + 1e-6;
        check(resultChecksum(words, 0, total, 41) !== sum, () => `output ${k}[${i}] not covered`);
        values[at + i] = keep;
      }
      at += size;
    }
    check(resultChecksum(words, 0, total, 41) === sum, () => "checksum is not a function");
  },
};

export const histogramCase: Case = {
  name: "rt: the latency histogram reports p50/p99/max within one bucket (1/16)",
  run: () => {
    const histogram = new LatencyHistogram();
    const empty = histogram.summary();
    check(empty.count === 0 && empty.p50Us === 0 && empty.maxUs === 0, () => "empty not zero");
    for (let i = 1; i <= 10_000; i++) histogram.record(i / 10);
    const s = histogram.summary();
    const near = (got: number, want: number) => got >= want && got <= want * (1 + 1 / 16) + 0.1;
    check(s.count === 10_000, () => `count ${s.count}`);
    check(near(s.p50Us, 500), () => `p50 ${s.p50Us}, expected about 500`);
    check(near(s.p99Us, 990), () => `p99 ${s.p99Us}, expected about 990`);
    check(s.maxUs === 1000, () => `max ${s.maxUs}`);
    histogram.record(-5);
    histogram.record(Number.NaN);
    histogram.record(1e12);
    check(histogram.summary().maxUs > 2e8, () => "huge values are not clamped into range");
  },
};

export const argumentsCase: Case = {
  name: "rt: bad options, inputs and buffers are CadenzaErrors naming what was expected",
  run: async () => {
    await rejectsCadenza(
      () => RealtimeEngine.start({ slots: 6 }),
      "E_ARGUMENT",
      /power of two/,
      "slots 6",
    );
    await rejectsCadenza(
      () => RealtimeEngine.start({ policy: "newest" as "latest" }),
      "E_ARGUMENT",
      /"latest" or "every"/,
      "policy",
    );
    await rejectsCadenza(
      () => RealtimeEngine.start({ input: "mood" as "emotion" }),
      "E_ARGUMENT",
      /input is "mood", expected "features" or "emotion"/,
      "input",
    );
    await rejectsCadenza(
      () => RealtimeEngine.start({ input: "emotion", graph: { nodes: [], files: {} } }),
      "E_ARGUMENT",
      /input "emotion" runs the emotion pipeline/,
      "input emotion with a graph",
    );
    await rejectsCadenza(
      () => RealtimeEngine.start({ polcy: "every" } as RealtimeOptions),
      "E_ARGUMENT",
      /options\.polcy: expected no such option \(the options are .*policy/,
      "a misspelled option",
    );
    await rejectsCadenza(
      () => RealtimeEngine.start({ runner: FAKE_RUNNER + "-missing.ts" }),
      "E_NATIVE",
      /Worker failed \(load\)/,
      "a runner module that does not exist",
    );
    await withEngine({ runner: FAKE_RUNNER }, async (engine) => {
      throwsCadenza(
        () => engine.submit(new Float32Array(3)),
        "E_ARGUMENT",
        /expected 128/,
        "short features",
      );
      const into = engine.createBuffers();
      await submitSurely(engine, new Float32Array(128));
      await latestAtLeast(engine, into, 0);
      throwsCadenza(
        () => engine.submit(null as unknown as Float32Array),
        "E_ARGUMENT",
        /features: expected 128 values .*got null/,
        "null features",
      );
      into.emotion.fill(-7);
      const wrong = { ...into, melody: new Float32Array(12) };
      throwsCadenza(
        () => engine.latest(wrong),
        "E_ARGUMENT",
        /into\.melody .* 128 values/,
        "a short output buffer",
      );
      const plain = { ...into, groove: new Array<number>(32).fill(0) as unknown as Float32Array };
      throwsCadenza(
        () => engine.latest(plain),
        "E_ARGUMENT",
        /into\.groove must be a Float32Array of 32/,
        "an output buffer that is a plain array",
      );
      check(
        into.emotion.every((v) => v === -7),
        () => "a latest() that threw wrote into.emotion",
      );
    });
  },
};

/** Submits while the Worker is stalled, so the ring fills and the policy alone decides. */
function policyCase(policy: "latest" | "every"): Case {
  return {
    name: `rt: policy ${policy}: a full ring refuses submits; the Worker ` +
      (policy === "latest" ? "takes only the newest" : "runs every input in order"),
    run: () =>
      withEngine({ runner: FAKE_RUNNER, policy, slots: 8 }, async (engine) => {
        const into = engine.createBuffers();
        const input = new Float32Array(FAKE_INPUT_SIZE);
        // Stalled until released: the submits below all find it stalled, however slow
        // this thread is.
        stallWorker(engine, 60_000);
        await waitFor(() => engine.stats().workerState === "stalled", "the Worker to stall");
        for (let i = 0; i < 8; i++) {
          input[0] = i;
          check(engine.submit(input), () => `submit ${i} refused with a free slot`);
        }
        check(!engine.submit(input), () => "a ninth submit into 8 slots was accepted");
        check(engine.latest(into) === NO_RESULT, () => "a result before the Worker ran");
        releaseWorker(engine);
        check(await latestAtLeast(engine, into, 7) === 7, () => "the last result is not 7");
        checkFakeValues(EMOTION_OUTPUTS.map((name) => into[name]), 7, 0);
        const s = engine.stats();
        check(s.rejected === 1 && s.submitted === 8, () => `rejected ${s.rejected}`);
        const want = policy === "latest" ? [1, 7] : [8, 0];
        check(s.completed === want[0] && s.skipped === want[1], () =>
          `completed ${s.completed}, skipped ${s.skipped}, expected ${want}`);
        check(s.dropped === s.rejected + s.skipped, () =>
          "dropped is not rejected + skipped");
      }),
  };
}

export const longTimeoutCase: Case = {
  name: "rt: a load timeout of Infinity or beyond 2^31 ms is no limit, not an instant timeout",
  run: async () => {
    for (const loadTimeoutMs of [Number.POSITIVE_INFINITY, 2 ** 31, 1e12]) {
      await withEngine({ runner: FAKE_RUNNER, loadTimeoutMs }, (engine) => {
        check(engine.stats().state === "running", () => `${loadTimeoutMs}: not running`);
        return Promise.resolve();
      });
    }
  },
};

export const policyCases: Case[] = [policyCase("latest"), policyCase("every")];

/** A context as the decoder builds one: previous note, chord in force, span pitch classes. */
function contextOf(seq: number): Float32Array {
  const c = new Float32Array(CONTEXT_SIZE);
  c[(55 + 3 * seq) % 128] = 1;
  c[128 + ((5 * seq) % 64)] = 1;
  c[192 + (seq % 12)] = 1;
  return c;
}

/**
 * The engine's Worker runs the models node by node, EmotionPipeline in one native graph call:
 * the same kernels on the same weights, so the results must be the same bits.
 */
function pipelineCase(precision: "f32" | "bf16" | "int8", input: "features" | "emotion"): Case {
  const method = input === "emotion" ? "stepFromEmotion" : "step";
  return {
    name: `rt: ${precision}, input ${input}: the engine runs the native graph and its results ` +
      `equal EmotionPipeline.${method} (loaded with ${precision}) on the same inputs, in order; ` +
      "every model is timed",
    run: async () => {
      const dir = modelsDir();
      const reference = await EmotionPipeline.load(dir, { precision });
      const steps = 24;
      try {
        await withEngine({ models: dir, policy: "every", precision, input }, async (engine) => {
          const rng = new Rng(2024);
          const into = engine.createBuffers();
          check(engine.outputNames.join() === EMOTION_OUTPUTS.join(), () => "output order");
          const width = input === "emotion" ? EMOTION_SIZE : FEATURE_SIZE;
          check(engine.inputSize === width, () => `inputSize ${engine.inputSize}`);
          check(engine.contextSize === CONTEXT_SIZE, () => `contextSize ${engine.contextSize}`);
          throwsCadenza(
            () => engine.submit(new Float32Array(width), new Float32Array(12)),
            "E_ARGUMENT",
            /context: expected 204 values .*got Float32Array of 12/,
            "a short context",
          );
          const s0 = engine.stats();
          check(s0.nativeGraph && s0.input === input, () => `nativeGraph ${s0.nativeGraph}`);
          check(
            s0.weightBytes === reference.weightBytes,
            () => `weightBytes ${s0.weightBytes}, expected ${reference.weightBytes}`,
          );
          throwsCadenza(
            () => engine.submit(new Float32Array(width === 64 ? 128 : 64)),
            "E_ARGUMENT",
            new RegExp(`expected ${width} values`),
            "an input of the other mode's width",
          );
          for (let seq = 0; seq < steps; seq++) {
            const values = rng.floats(width, -1, 1);
            // Every other input carries a context (a previous note, a chord, pitch classes);
            // the others none, which must read as all zero, not as the last one submitted.
            const context = seq % 2 === 0 ? contextOf(seq) : undefined;
            await submitSurely(engine, values, context);
            check(await latestAtLeast(engine, into, seq) === seq, () => `result ${seq} skipped`);
            const want = input === "emotion"
              ? reference.stepFromEmotion(values, context)
              : reference.step(values, context);
            for (const name of EMOTION_OUTPUTS) {
              check(sameValues(into[name], want[name]), () => `step ${seq}: ${name} differs`);
            }
            if (input === "emotion") {
              check(sameValues(into.emotion, values), () => "emotion is not the vector given");
            }
          }
          // Native per-node timestamps: every model timed each step; the recognizer does not
          // run from an emotion vector, so its time is 0.
          const models = engine.stats().latencyUs.models;
          for (const info of EMOTION_MODELS) {
            const m = models[info.name];
            check(m.count === steps, () => `${info.name}: ${m.count} timings`);
            const skipped = input === "emotion" && info.node === "emotion";
            check(
              skipped ? m.maxUs === 0 : m.p50Us > 0,
              () => `${info.name}: p50 ${m.p50Us} us, max ${m.maxUs} us`,
            );
          }
        });
      } finally {
        reference.dispose();
      }
    },
  };
}

export const pipelineCases: Case[] = [
  pipelineCase("f32", "features"),
  pipelineCase("bf16", "features"),
  pipelineCase("int8", "features"),
  pipelineCase("f32", "emotion"),
  pipelineCase("int8", "emotion"),
];

export const precisionCase: Case = {
  name: "rt: an unknown precision fails the start with E_ARGUMENT naming it",
  run: async () => {
    await rejectsCadenza(
      () => RealtimeEngine.start({ models: modelsDir(), precision: "f16" as "f32" }),
      "E_ARGUMENT",
      /Worker failed \(load\).*precision.*"f16"/,
      "precision f16",
    );
  },
};

export const statsCase: Case = {
  name: "rt: stats() is one plain object with counters, latencies, load time, bytes, memory",
  run: () =>
    withEngine({ models: modelsDir(), policy: "every" }, async (engine) => {
      const rng = new Rng(3);
      const into = engine.createBuffers();
      for (let seq = 0; seq < 20; seq++) {
        await submitSurely(engine, features(rng));
        await latestAtLeast(engine, into, seq);
      }
      const s = engine.stats();
      check(JSON.parse(JSON.stringify(s)).latencyUs.models !== undefined, () => "not plain data");
      check(s.submitted === 20 && s.completed === 20 && s.dropped === 0, () =>
        `counters ${JSON.stringify(s)}`);
      check(s.state === "running" && s.lastError === null && s.workerRestarts === 0, () =>
        `state ${s.state}`);
      const names = EMOTION_MODELS.map((info) =>
        info.name
      );
      check(Object.keys(s.latencyUs.models).join() === names.join(), () =>
        "model names");
      const { pipeline, endToEnd } = s.latencyUs;
      for (const [what, h] of Object.entries({ ...s.latencyUs.models, pipeline, endToEnd })) {
        check(h.count === 20, () => `${what}: ${h.count} samples, expected 20`);
        check(0 < h.p50Us && h.p50Us <= h.p99Us && h.p99Us <= h.maxUs, () =>
          `${what}: p50 ${h.p50Us}, p99 ${h.p99Us}, max ${h.maxUs}`);
      }
      check(s.latencyUs.endToEnd.p50Us >= s.latencyUs.pipeline.p50Us * 0.9, () =>
        "end-to-end shorter than the step");
      const reference = await EmotionPipeline.load(modelsDir());
      check(s.weightBytes === reference.weightBytes, () =>
        `weightBytes ${s.weightBytes}`);
      reference.dispose();
      check(s.modelLoadMs > 0 && s.memory.rssBytes > 0 && s.memory.heapUsedBytes > 0, () =>
        `load ${s.modelLoadMs} ms, rss ${s.memory.rssBytes}`);
    }),
};

export const graphCase: Case = {
  name: "rt: a graph of model files runs in the Worker like the emotion pipeline",
  run: async () => {
    const dir = modelsDir() ?? fileURLToPath(new URL("../../models/", import.meta.url));
    const graph = {
      nodes: [
        { name: "emotion", model: "E", inputs: [{ from: "input" }] },
        { name: "groove", model: "G", inputs: [{ from: "emotion" }] },
      ],
      files: { E: modelFile(dir, "EmotionRecognizer"), G: modelFile(dir, "GroovePredictor") },
    };
    await withEngine({ graph }, async (engine) => {
      check(engine.outputNames.join() === "emotion,groove", () => `${engine.outputNames}`);
      const into = engine.createBuffers();
      check(into.emotion.length === 64 && into.groove.length === 32, () => "output widths");
      await submitSurely(engine, new Float32Array(128).fill(0.5));
      await latestAtLeast(engine, into, 0);
      check(into.groove.some((v) => v !== 0), () => "groove stayed zero");
      check(Object.keys(engine.stats().latencyUs.models).join() === "E,G", () => "model keys");
    });
  },
};

export const stopCase: Case = {
  name: "rt: after stop, submit refuses and latest still returns the last result",
  run: async () => {
    const engine = await RealtimeEngine.start({ runner: FAKE_RUNNER });
    const into = engine.createBuffers();
    const input = new Float32Array(FAKE_INPUT_SIZE).fill(0);
    input[0] = 5;
    await submitSurely(engine, input);
    await latestAtLeast(engine, into, 0);
    await engine.stop();
    await engine.stop();
    check(engine.stats().state === "stopped", () => engine.stats().state);
    check(!engine.submit(input), () => "submit accepted after stop");
    into.emotion.fill(-1);
    check(
      engine.latest(into) === 0 && into.emotion[0] === fakeValue(5, 0, 0),
      () => "the last result was lost at stop",
    );
  },
};

/**
 * Models that vanish after start: the replacement cannot load them, the engine retries
 * `maxRestarts` times, then reports "failed" and keeps the last result readable. `dir` holds a
 * copy of the five files that `remove` deletes (the test file owns the file system calls).
 */
export async function failedRestart(dir: string, remove: () => void): Promise<void> {
  await withEngine({ models: dir, maxRestarts: 1, watchdogMs: 300 }, async (engine) => {
    const into = engine.createBuffers();
    await submitSurely(engine, features(new Rng(5)));
    await latestAtLeast(engine, into, 0);
    remove();
    crashWorker(engine);
    await waitFor(() => engine.stats().state === "failed", "the engine to give up");
    const s = engine.stats();
    check(
      /restarting the Worker failed: .*EmotionRecognizer/.test(s.lastError ?? ""),
      () => `lastError is ${s.lastError}`,
    );
    check(s.workerRestarts === 0, () => `restarts ${s.workerRestarts}`);
    check(engine.latest(into) === 0, () => "the last result was lost");
  });
}

/**
 * latest() tells "no result yet" (NO_RESULT) from "every attempt found the result being
 * rewritten" (READ_FAILED), and leaves `into` as it was in both cases. A Worker caught in the
 * middle of rewriting the newest buffer is played here by making that buffer's version odd,
 * as the Worker does while it writes (with the Worker stalled, so that it does not publish).
 */
export const failedReadCase: Case = {
  name: "rt: latest() returns NO_RESULT before a result and READ_FAILED for a torn one, " +
    "leaving into untouched",
  run: () =>
    withEngine({ runner: FAKE_RUNNER, watchdogMs: 5000 }, async (engine) => {
      const kept = engine.createBuffers();
      for (const name of EMOTION_OUTPUTS) kept[name].fill(-7);
      const untouched = () => EMOTION_OUTPUTS.every((name) => kept[name].every((v) => v === -7));
      check(engine.latest(kept) === NO_RESULT, () => "a result before any submit");
      check(untouched(), () => "latest() wrote into before any result");
      const input = new Float32Array(FAKE_INPUT_SIZE);
      input[0] = 5;
      await submitSurely(engine, input);
      const into = engine.createBuffers();
      await latestAtLeast(engine, into, 0);
      stallWorker(engine, 60_000);
      await waitFor(() => engine.stats().workerState === "stalled", () => {
        const { state, workerState, workerRestarts, lastError } = engine.stats();
        return `the Worker to stall (${
          JSON.stringify({ state, workerState, workerRestarts, lastError })
        })`;
      });
      const control = controlOf(engine);
      const newest = newestBuffer(Atomics.load(control, Control.NEWEST));
      check(newest >= 0 && newest < RESULT_BUFFERS, () => `NEWEST names buffer ${newest}`);
      const version = Atomics.load(control, Control.VERSION + newest);
      Atomics.store(control, Control.VERSION + newest, version | 1);
      const failures = engine.stats().readFailures;
      const seq = engine.latest(kept);
      Atomics.store(control, Control.VERSION + newest, version);
      check(seq === READ_FAILED, () => `latest returned ${seq}, expected READ_FAILED`);
      check(engine.stats().readFailures === failures + 1, () => "the failure was not counted");
      check(untouched(), () => "a failed read wrote into the buffers");
      releaseWorker(engine);
      check(engine.latest(kept) === 0, () => "the result is not readable again");
      checkFakeValues(EMOTION_OUTPUTS.map((name) => kept[name]), 5, 1);
    }),
};

/** Every stop() call settles only once the engine is stopped and no Worker serves. */
export const doubleStopCase: Case = {
  name: "rt: stop() called twice: both settle only when stopped; no Worker beats afterwards",
  run: async () => {
    const engine = await RealtimeEngine.start({ runner: FAKE_RUNNER });
    const first = engine.stop();
    await engine.stop();
    check(
      engine.stats().state === "stopped",
      () => `second stop settled in ${engine.stats().state}`,
    );
    await first;
    const control = controlOf(engine);
    const beat = Atomics.load(control, Control.HEARTBEAT);
    await sleep(100);
    check(Atomics.load(control, Control.HEARTBEAT) === beat, () => "a Worker beats after stop");
  },
};

/**
 * Sequence numbers are Int32 words that wrap: with the Worker stalled, both are put just below
 * 2^31 and 8 inputs cross the wrap; the ring still holds exactly 8, results come in order
 * with their numbers modulo 2^31, and the counters still add up.
 */
function wrapCase(policy: "latest" | "every"): Case {
  return {
    name: `rt: policy ${policy}: sequence numbers wrap past 2^31 without losing an input`,
    run: () =>
      withEngine({ runner: FAKE_RUNNER, policy, slots: 8 }, async (engine) => {
        const into = engine.createBuffers();
        const start = 0x7ffffffd;
        stallWorker(engine, 60_000);
        await waitFor(() => engine.stats().workerState === "stalled", "the Worker to stall");
        moveSequences(engine, start);
        const input = new Float32Array(FAKE_INPUT_SIZE);
        for (let i = 0; i < 8; i++) {
          input[0] = i;
          check(engine.submit(input), () => `submit ${i} refused across the wrap`);
        }
        check(!engine.submit(input), () => "a ninth submit into 8 slots was accepted");
        releaseWorker(engine);
        const last = (start + 7) & SEQ_MASK;
        await waitFor(() => engine.latest(into) === last, `result ${last}`);
        checkFakeValues(EMOTION_OUTPUTS.map((name) => into[name]), 7, 0);
        await waitFor(() => engine.stats().pending === 0, "the ring to drain");
        const s = engine.stats();
        const want = policy === "latest" ? [1, 7] : [8, 0];
        check(s.completed === want[0] && s.skipped === want[1], () =>
          `completed ${s.completed}, skipped ${s.skipped}, expected ${want}`);
        check(s.submitted === (start + 8) >>> 0 && s.rejected === 1, () =>
          `submitted ${s.submitted}, rejected ${s.rejected}`);
      }),
  };
}

export const wrapCases: Case[] = [wrapCase("latest"), wrapCase("every")];

/**
 * A Worker that hangs inside a step holds an input it will never publish: once replaced, that
 * input is counted as lost, so the counters add up.
 */
export const lostCase: Case = {
  name: "rt: an input held by a Worker that hangs mid-step is counted as lost; counters add up",
  run: () =>
    withEngine({ runner: FAKE_RUNNER, policy: "every", watchdogMs: 300 }, async (engine) => {
      const into = engine.createBuffers();
      const input = new Float32Array(FAKE_INPUT_SIZE);
      input[0] = 1;
      await submitSurely(engine, input);
      await latestAtLeast(engine, into, 0);
      await submitSurely(engine, hangInput(1500));
      await waitFor(() => engine.stats().state !== "running", "the watchdog");
      check(engine.latest(into) === 0, () => "the last good result was lost");
      await waitFor(
        () => engine.stats().state === "running" && engine.stats().workerRestarts === 1,
        "the restart",
      );
      input[0] = 2;
      await submitSurely(engine, input);
      check(await latestAtLeast(engine, into, 2) === 2, () => "no result after the restart");
      // The hung Worker's input 1 was counted lost when the watchdog fenced it out (it can never
      // publish after that); the Worker itself leaves when it wakes (Deno) or is terminated
      // past the grace period (Bun), which the engine notices on its next heartbeat check.
      await waitFor(
        () => {
          const t = engine.stats();
          return t.pending === 0 && t.inFlight === 0 &&
            t.workersExited + t.workersTerminated === 1;
        },
        "the ring to drain and the hung Worker to leave",
      );
      const s = engine.stats();
      check(
        s.lost === 1 && s.completed === 2 && s.submitted === 3,
        () => `lost ${s.lost}, completed ${s.completed}, submitted ${s.submitted}`,
      );
      check(s.workersExited + s.workersTerminated === 1, () => "the hung Worker did not leave");
      check(s.dropped === s.rejected + s.skipped + s.lost, () => `dropped ${s.dropped}`);
      check(
        s.submitted === s.completed + s.skipped + s.lost + s.pending,
        () => `counters do not add up: ${JSON.stringify(s)}`,
      );
    }),
};

/**
 * A replacement that confirms its start too late (it got its start message, then blocked past
 * loadTimeoutMs) may still begin serving afterwards: the engine fences its epoch off, and the
 * next replacement serves a new one. The late Worker then finds itself replaced and leaves
 * without taking or publishing anything, and every count stays exact ("every": nothing is
 * skipped, so each input is completed, lost or pending).
 */
export const lateStartCase: Case = {
  name: "rt: a replacement that starts too late is fenced off; the next serves; counts exact",
  run: async () => {
    // The slow runner counts the Workers that load it in this folder.
    const dir = mkdtempSync(join(tmpdir(), "cadenza-late-start-"));
    try {
      await withEngine({
        runner: SLOW_START_RUNNER,
        models: dir,
        policy: "every",
        watchdogMs: 300,
        // Long enough for a Worker that is not held back to load and start on a loaded
        // machine (Deno's Workers took a median 1.4 s here); the slow one is held until after.
        loadTimeoutMs: 5000,
        maxRestarts: 3,
      }, async (engine) => {
        const into = engine.createBuffers();
        const input = new Float32Array(FAKE_INPUT_SIZE);
        let seq = -1;
        input[0] = ++seq;
        await submitSurely(engine, input);
        await latestAtLeast(engine, into, seq);
        crashWorker(engine);
        await waitFor(() => engine.stats().state !== "running", "the engine to notice");
        await waitFor(
          () => engine.stats().state === "running" && engine.stats().workerRestarts === 1,
          "the second replacement",
          20_000,
        );
        check(
          /restarting the Worker failed: .*running/.test(engine.stats().lastError ?? ""),
          () => `lastError is ${engine.stats().lastError}`,
        );
        // The late Worker goes on now (unless Bun terminated it past the grace period) and
        // finds its epoch fenced off, while inputs flow to its successor.
        writeFileSync(join(dir, "release"), "");
        const until = performance.now() + 500;
        while (performance.now() < until) {
          input[0] = seq + 1;
          if (engine.submit(input)) seq++;
          await sleep(2);
        }
        check(await latestAtLeast(engine, into, seq) === seq, () => "the last input unserved");
        await waitFor(() => {
          const t = engine.stats();
          return t.pending === 0 && t.inFlight === 0 &&
            t.workersExited + t.workersTerminated === 2;
        }, "the ring to drain and both replaced Workers to be gone");
        const s = engine.stats();
        check(s.skipped === 0, () => `skipped ${s.skipped} under "every"`);
        check(
          s.submitted === seq + 1 && s.submitted === s.completed + s.lost,
          () =>
            `submitted ${s.submitted} (${seq + 1} sent), completed ${s.completed}, lost ${s.lost}`,
        );
        check(s.lost <= 1, () => `lost ${s.lost}: only the crashed Worker's input can be`);
        check(s.workerRestarts === 1, () => `restarts ${s.workerRestarts}`);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Worker death: the caller keeps the last good result, sees the error, and results flow again.

type Killer = "crash" | "stall" | "terminate";

export function deathCase(killer: Killer, fake = false): Case {
  return {
    name: `rt: a Worker that ${
      { crash: "throws", stall: "hangs", terminate: "is terminated" }[killer]
    } mid-run is replaced; the last result stays readable (${fake ? "fake runner" : "models"})`,
    run: () =>
      withEngine({
        models: modelsDir(),
        runner: fake ? FAKE_RUNNER : undefined,
        policy: "latest",
        watchdogMs: 300,
      }, (engine) => killAndRecover(engine, killer)),
  };
}

async function killAndRecover(engine: RealtimeEngine, killer: Killer): Promise<void> {
  const rng = new Rng(11);
  const into = engine.createBuffers();
  let seq = -1;
  // Keep the Worker busy so that the failure lands mid-run.
  for (let i = 0; i < 50; i++) {
    if (engine.submit(features(rng))) seq++;
    await sleep(1);
  }
  const good = await latestAtLeast(engine, into, seq);
  const kept = Object.fromEntries(EMOTION_OUTPUTS.map((n) => [n, into[n].slice()]));
  if (killer === "crash") crashWorker(engine);
  if (killer === "stall") stallWorker(engine, 1500);
  if (killer === "terminate") terminateWorker(engine);
  await waitFor(() => engine.stats().state !== "running", "the engine to notice the failure");
  // Meanwhile the caller side works: submits queue, latest returns the last good result.
  const during = engine.latest(into);
  check(during === good, () => `during the restart latest returned ${during}, expected ${good}`);
  for (const name of EMOTION_OUTPUTS) {
    check(sameValues(into[name], kept[name]), () => `${name} changed during the restart`);
  }
  await waitFor(
    () => engine.stats().workerRestarts >= 1 && engine.stats().state === "running",
    "the restart",
  );
  const s = engine.stats();
  const want = {
    crash: /crash requested/,
    stall: /stopped beating/,
    // Bun reports the Worker closed at once; the heartbeat would tell within the watchdog.
    terminate: /the Worker exited|stopped beating/,
  };
  check(want[killer].test(s.lastError ?? ""), () => `lastError is ${s.lastError}`);
  await submitSurely(engine, features(rng));
  const after = await latestAtLeast(engine, into, good + 1);
  check(after > good, () => `no new result after the restart (${after})`);
  check(engine.stats().workerRestarts === 1, () => `restarts ${engine.stats().workerRestarts}`);
  // The replaced Worker leaves on its own and disposes its models (a thrown step, a stall that
  // ends when it is replaced); only one already killed cannot (Bun's terminate).
  await waitFor(() => {
    const s = engine.stats();
    return s.workersExited + s.workersTerminated === 1;
  }, "the replaced Worker to be gone");
  const s2 = engine.stats();
  const exited = killer === "terminate" ? 0 : 1;
  check(
    s2.workersExited === exited && s2.workersTerminated === 1 - exited,
    () => `${s2.workersExited} Workers left on their own, ${s2.workersTerminated} were terminated`,
  );
}

export const startFailureCase: Case = {
  name: "rt: a load failure at start is a CadenzaError naming the missing model file",
  run: async () => {
    const err = await rejectsCadenza(
      () => RealtimeEngine.start({ models: "/nonexistent/cadenza-models" }),
      "E_IO",
      /EmotionRecognizer/,
      "a missing model folder",
    );
    check(err instanceof CadenzaError, () => "not a CadenzaError");
  },
};

export const fakeShapeCheck: Case = {
  name: "rt: the fake runner has the emotion pipeline's widths",
  run: () => {
    const names = EMOTION_MODELS.map((info) => info.node);
    check(Object.keys(FAKE_OUTPUTS).every((n) => names.includes(n as never)), () => "names");
    check(FAKE_MODELS.length === 2, () => "models");
  },
};

// ---------------------------------------------------------------------------------------------
// Pipeline timing (PipelineOptions.timed), which the Worker's per-model histograms rest on.

/** A model in plain TypeScript (so the pipeline runs node by node): y = x + bias, `busy` loops. */
function plainModel(width: number, bias: number, busy: number) {
  const out = new Float32Array(width);
  return {
    inputSize: width,
    outputSize: width,
    parameterCount: 0,
    weightBytes: 0,
    forward(input: Float32Array): Float32Array {
      let spin = 0;
      for (let k = 0; k < busy; k++) spin += Math.sqrt(k);
      for (let i = 0; i < width; i++) out[i] = input[i] + bias + spin * 0;
      return out;
    },
    reset() {},
    dispose() {},
  };
}

export const timedPipelineCases: Case[] = (["native", "node by node"] as const).map((path) => ({
  name: `rt: a timed pipeline (${path}) times each node it runs, within the step's duration, ` +
    "and reports 0 for nodes stepFrom does not run",
  run: async () => {
    const { Pipeline } = await import("../../src/pipeline/pipeline.ts");
    const nodes = [
      { name: "a", model: "A", inputs: [{ from: "input" }] },
      { name: "b", model: "B", inputs: [{ from: "a" }] },
      { name: "c", model: "C", inputs: [{ from: "b" }] },
    ];
    let pipeline;
    if (path === "native") {
      const emotion = await EmotionPipeline.load(modelsDir(), {}, { timed: true });
      pipeline = emotion.pipeline;
      check(pipeline.native, () => "the emotion pipeline is not native");
    } else {
      const models = {
        A: plainModel(8, 1, 2000),
        B: plainModel(8, 2, 2000),
        C: plainModel(8, 3, 2000),
      };
      pipeline = new Pipeline(nodes, models, { timed: true });
      check(!pipeline.native, () => "plain models ran natively");
    }
    try {
      const input = new Float32Array(pipeline.inputSize).fill(0.25);
      for (let step = 0; step < 20; step++) {
        const start = performance.now();
        pipeline.step(input);
        const elapsedNs = (performance.now() - start) * 1e6;
        const sum = pipeline.nodeNs.reduce((a, b) => a + b, 0);
        check(pipeline.nodeNs.every((ns) => ns > 0), () => `a node untimed: ${pipeline.nodeNs}`);
        // performance.now() is coarser than the native clock: allow 5 us of rounding.
        check(sum <= elapsedNs + 5000, () => `nodes ${sum} ns in a step of ${elapsedNs} ns`);
      }
      const first = pipeline.order[0];
      const width = pipeline.outputs[first].length;
      // The emotion graph's melody and harmony read the context from the graph input.
      pipeline.stepFrom(first, new Float32Array(width), input);
      check(pipeline.nodeNs[0] === 0, () => `the start node timed ${pipeline.nodeNs[0]} ns`);
      check(pipeline.nodeNs.slice(1).some((ns) => ns > 0), () => "no downstream node timed");
      pipeline.prefetch();
    } finally {
      pipeline.dispose();
    }
  },
}));

/**
 * The cases both runtimes run; each test file adds its allocation case (its runtime's probe)
 * and the cases only its runtime can run.
 */
export const rtCases: Case[] = [
  fakeShapeCheck,
  checksumCase,
  histogramCase,
  structureCase,
  argumentsCase,
  longTimeoutCase,
  ...policyCases,
  stopCase,
  failedReadCase,
  doubleStopCase,
  ...wrapCases,
  lostCase,
  lateStartCase,
  ...pipelineCases,
  ...timedPipelineCases,
  precisionCase,
  statsCase,
  graphCase,
  startFailureCase,
  deathCase("crash"),
  deathCase("stall"),
  deathCase("crash", true),
];

// ---------------------------------------------------------------------------------------------
// Restarts during publication: each Worker pauses once in the middle of writing a result (a
// test-only hook in the control block), long enough for the watchdog to replace it; the
// replaced Worker then wakes and finishes its write while its replacement publishes. Every
// read is checked as in the stress run: the checksum of exactly the values copied, the fake
// runner's values for that sequence number, and sequence numbers that never go back.

export interface RestartStressOptions {
  restarts: number;
  /** Publishes each Worker makes before its pause. */
  publishesBeforePause: number;
  pauseMs: number;
}

export function restartStressCase(options: RestartStressOptions): Case {
  return {
    name: `rt stress: ${options.restarts} Worker restarts while paused inside publish, ` +
      "every read checked",
    run: () =>
      withEngine({ runner: FAKE_RUNNER, policy: "latest", watchdogMs: 50 }, async (engine) => {
        pauseInPublish(engine, options.publishesBeforePause, options.pauseMs);
        const into = engine.createBuffers();
        const words = wordsOf(into);
        const outputs = EMOTION_OUTPUTS.map((name) => into[name]);
        const input = new Float32Array(engine.inputSize);
        let accepted = 0;
        let reads = 0;
        let last = -1;
        const deadline = performance.now() + 60_000;
        while (engine.stats().workerRestarts < options.restarts) {
          if (performance.now() > deadline) {
            fail(`only ${engine.stats().workerRestarts} restarts in 60 s`);
          }
          for (let i = 0; i < 200; i++) {
            input[0] = accepted;
            if (engine.submit(input)) accepted++;
            for (let r = 0; r < 2; r++) {
              const seq = engine.latest(into);
              if (seq < 0) continue;
              reads++;
              if (seq < last || seq >= accepted) {
                fail(`read ${reads}: sequence ${seq} after ${last}, with ${accepted} accepted`);
              }
              const sum = resultChecksum(words, 0, words.length, seq);
              if (sum !== engine.resultChecksum) {
                fail(
                  `read ${reads}: torn result ${seq}: checksum ${sum}, ` +
                    `published ${engine.resultChecksum}`,
                );
              }
              checkFakeValues(outputs, seq, reads);
              last = seq;
            }
          }
          await sleep(1);
        }
        pauseInPublish(engine, 0, 0);
        check(reads > 0, () => "no reads");
        // Every replaced Worker leaves (on its own, or terminated past the grace period), and
        // every accepted input is accounted for.
        await waitFor(
          () => {
            const s = engine.stats();
            return s.state === "running" && s.pending === 0 && s.inFlight === 0 &&
              s.workersExited + s.workersTerminated === s.workerRestarts;
          },
          "the replaced Workers to leave and the ring to drain",
          30_000,
        );
        const s = engine.stats();
        check(s.submitted === accepted, () => `submitted ${s.submitted}, accepted ${accepted}`);
        check(
          s.submitted === s.completed + s.skipped + s.lost,
          () =>
            `submitted ${s.submitted} != completed ${s.completed} + skipped ${s.skipped} + ` +
            `lost ${s.lost}`,
        );
        if (envVar("CADENZA_RT_VERBOSE")) {
          console.log(JSON.stringify({ reads, accepted, stats: engine.stats().workerRestarts }));
        }
      }),
  };
}
