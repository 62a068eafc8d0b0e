/**
 * `cadenza live`: the main job. Starts the RealtimeEngine on the five emotion models, feeds it
 * a block-rate audio stream paced in real time (a WAV file or a generated melody, 128-sample
 * blocks at 48 kHz by default: one block every 2.667 ms), prints a status line about four
 * times a second (stderr) and a summary at the end (stdout; --json for JSON).
 *
 * The feeding side (`BlockFeeder.tick`, src/audio/feeder.ts) is what an audio callback would
 * run: it turns the block into 128 features and calls only `submit` and `latest`, allocating
 * nothing. The pacer
 * sleeps to absolute deadlines (start + block x period), so timing errors never accumulate;
 * a block that is due while the loop was held up is fed at once, as a buffered device would
 * deliver it, and counted as late. Everything that allocates (stats, printing) runs between
 * blocks, on the event loop.
 */

import process from "node:process";
import { setImmediate } from "node:timers";
import { FFT_SIZE } from "../audio/features.ts";
import { BlockFeeder } from "../audio/feeder.ts";
import { MELODY_SECONDS, melodySignal } from "../audio/signal.ts";
import { readWav, type WavSampleFormat } from "../audio/wav.ts";
import { CadenzaError } from "../errors.ts";
import { type Precision, PRECISIONS } from "../model/image.ts";
import {
  defaultModelsDir,
  type EmotionModelRow,
  type EmotionOutputs,
  inspectEmotionModels,
} from "../pipeline/emotion.ts";
import {
  type LatencySummary,
  type Policy,
  RealtimeEngine,
  type RealtimeStats,
} from "../rt/index.ts";
import { intFlag, type ParsedArgs, UsageError } from "./args.ts";
import type { Command, Output } from "./command.ts";

const DEFAULT_SECONDS = 5;
const DEFAULT_BLOCK = 128;
const DEFAULT_RATE_HZ = 48_000;
const MAX_SECONDS = 86_400;
const MAX_BLOCK = 65_536;
const MAX_RATE_HZ = 1_000_000;
const MAX_SPEED = 1000;
/** How often the stream gives the event loop a turn (signals, Worker messages, watchdog). */
const YIELD_MS = 5;
const STATUS_MS = 250;
/** How long the end waits for the Worker to finish the inputs it has taken. */
const DRAIN_MS = 2000;
const NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

export interface LiveOptions {
  wav?: string;
  seconds: number;
  blockSamples: number;
  /** --rate as given; with --wav the file's rate is used. */
  rateHz?: number;
  policy: Policy;
  speed: number;
  models: string;
  library?: string;
  /** How the models hold their weight matrices (default f32). */
  /** Absent: as the files store them (f32, or int8 for int8 files). */
  precision?: Precision;
  json: boolean;
  quiet: boolean;
}

/** The audio being streamed, mono, at its own rate. */
interface Source {
  kind: "generated" | "wav";
  path: string | null;
  sampleRateHz: number;
  channels: number;
  format: WavSampleFormat | "generated";
  samples: Float32Array;
}

// ---------------------------------------------------------------------------------------------
// Flags and source.

function numberFlag(args: ParsedArgs, name: string, fallback: number, max: number): number {
  const text = args.values.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === "" || !(value > 0 && value <= max)) {
    throw new UsageError(`live: --${name} must be a number in (0, ${max}], got "${text}"`);
  }
  return value;
}

function boundedInt(args: ParsedArgs, name: string, fallback: number, max: number): number {
  const value = intFlag(args, name, fallback, "live");
  if (value > max) throw new UsageError(`live: --${name} must be at most ${max}, got ${value}`);
  return value;
}

/** The files' own precision: f32 or int8 when every file agrees, else "mixed". */
function storedPrecision(rows: EmotionModelRow[]): Precision | "mixed" {
  const kinds = new Set(rows.map((r) => r.precision));
  return kinds.size === 1 ? [...kinds][0] : "mixed";
}

export function liveOptions(args: ParsedArgs): LiveOptions {
  if (args.positionals.length > 0) {
    throw new UsageError(`live: takes no arguments, got: ${args.positionals.join(" ")}`);
  }
  const policy = args.values.get("policy") ?? "latest";
  if (policy !== "latest" && policy !== "every") {
    throw new UsageError(`live: --policy must be "latest" or "every", got "${policy}"`);
  }
  const precision = args.values.get("precision");
  if (precision !== undefined && !(PRECISIONS as readonly string[]).includes(precision)) {
    throw new UsageError(
      `live: --precision must be one of ${PRECISIONS.join(", ")}, got "${precision}"`,
    );
  }
  return {
    wav: args.values.get("wav"),
    seconds: numberFlag(args, "seconds", DEFAULT_SECONDS, MAX_SECONDS),
    blockSamples: boundedInt(args, "block", DEFAULT_BLOCK, MAX_BLOCK),
    rateHz: args.values.has("rate") ? boundedInt(args, "rate", 1, MAX_RATE_HZ) : undefined,
    policy,
    speed: numberFlag(args, "speed", 1, MAX_SPEED),
    models: args.values.get("models") ?? defaultModelsDir(),
    library: args.values.get("library"),
    precision: precision as Precision | undefined,
    json: args.switches.has("json"),
    quiet: args.switches.has("quiet"),
  };
}

async function loadSource(options: LiveOptions): Promise<Source> {
  if (options.wav === undefined) {
    const sampleRateHz = options.rateHz ?? DEFAULT_RATE_HZ;
    // One pass of the phrase, looped: the same audio however long the stream runs.
    const samples = melodySignal(sampleRateHz, { seconds: MELODY_SECONDS });
    return {
      kind: "generated",
      path: null,
      sampleRateHz,
      channels: 1,
      format: "generated",
      samples,
    };
  }
  const wav = await readWav(options.wav);
  if (options.rateHz !== undefined && options.rateHz !== wav.sampleRateHz) {
    throw new UsageError(
      `live: --rate ${options.rateHz} differs from ${options.wav}'s ${wav.sampleRateHz} Hz; ` +
        "a WAV file streams at its own rate (it is not resampled)",
    );
  }
  if (wav.frames === 0) {
    throw new CadenzaError("E_FORMAT", `${options.wav}: WAV: the "data" chunk holds no frames`);
  }
  return {
    kind: "wav",
    path: options.wav,
    sampleRateHz: wav.sampleRateHz,
    channels: wav.channels,
    format: wav.format,
    samples: wav.samples,
  };
}

// ---------------------------------------------------------------------------------------------
// The stream.

interface Plan {
  blocks: number;
  /** Wall-clock milliseconds between blocks (the audio period divided by --speed). */
  periodMs: number;
  audioPeriodUs: number;
}

function planOf(options: LiveOptions, source: Source): Plan {
  const audioPeriodUs = (options.blockSamples / source.sampleRateHz) * 1e6;
  const blocks = Math.max(
    1,
    Math.ceil((options.seconds * source.sampleRateHz) / options.blockSamples),
  );
  return { blocks, periodMs: audioPeriodUs / 1000 / options.speed, audioPeriodUs };
}

/** A word to sleep on with Atomics.wait: nothing ever notifies it, so waits run to the deadline. */
const sleepWord = new Int32Array(new SharedArrayBuffer(4));

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Waits until `deadlineMs` in Atomics.wait, which wakes within tens of microseconds where a
 * timer may be a millisecond late. Synchronous, so that a block costs no promise.
 */
function sleepUntil(deadlineMs: number): void {
  const waitMs = deadlineMs - performance.now();
  if (waitMs > 0) Atomics.wait(sleepWord, 0, 0, waitMs);
}

/** Waits on the event loop for most of a long wait, then sleeps to the deadline. */
async function waitUntil(deadlineMs: number): Promise<void> {
  const waitMs = deadlineMs - performance.now();
  if (waitMs > YIELD_MS) await sleepMs(waitMs - YIELD_MS / 2);
  sleepUntil(deadlineMs);
}

/** Words of Run.pacing: a typed array, so updating them per block never boxes a number. */
const LATE_BLOCKS = 0;
const MAX_LATE_MS = 1;

interface Run {
  interrupted: boolean;
  startMs: number;
  endMs: number;
  blocksFed: number;
  /** [blocks fed more than a period after their deadline, the worst lateness in ms]. */
  pacing: Float64Array;
}

async function stream(
  feeder: BlockFeeder,
  plan: Plan,
  run: Run,
  onTurn: (nowMs: number) => void,
): Promise<void> {
  run.startMs = performance.now();
  let turnAtMs = run.startMs + YIELD_MS;
  for (let block = 0; block < plan.blocks && !run.interrupted; block++) {
    const dueMs = run.startMs + block * plan.periodMs;
    if (dueMs - performance.now() > YIELD_MS) await waitUntil(dueMs);
    else sleepUntil(dueMs);
    const nowMs = performance.now();
    feeder.tick();
    run.blocksFed = block + 1;
    const lateMs = nowMs - dueMs;
    if (lateMs > plan.periodMs) run.pacing[LATE_BLOCKS]++;
    if (lateMs > run.pacing[MAX_LATE_MS]) run.pacing[MAX_LATE_MS] = lateMs;
    if (nowMs >= turnAtMs) {
      await nextTurn();
      onTurn(nowMs);
      turnAtMs = nowMs + YIELD_MS;
    }
  }
  // The last block lasts one period, as it would on a device.
  if (!run.interrupted) await waitUntil(run.startMs + plan.blocks * plan.periodMs);
  run.endMs = performance.now();
}

/**
 * Waits until every accepted input is completed, skipped or lost with a Worker that died (or
 * the engine stops serving).
 */
async function drain(engine: RealtimeEngine<EmotionOutputs>): Promise<void> {
  const deadlineMs = performance.now() + DRAIN_MS;
  while (performance.now() < deadlineMs) {
    const s = engine.stats();
    if (s.completed + s.skipped + s.lost >= s.submitted || s.state !== "running") return;
    await sleepMs(1);
  }
}

// ---------------------------------------------------------------------------------------------
// What is printed.

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function noteName(note: number): string {
  return `${NOTE_NAMES[note % 12]}${Math.floor(note / 12) - 1}`;
}

function us(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

/** `audioS`: the stream's position in the audio, seconds. */
function statusLine(feeder: BlockFeeder, s: RealtimeStats, audioS: number): string {
  const step = s.latencyUs.pipeline;
  const e2e = s.latencyUs.endToEnd;
  return `live ${audioS.toFixed(2)} s  submitted ${feeder.submitted}  completed ${s.completed}` +
    `  dropped ${s.dropped}  step p50 ${us(step.p50Us)} p99 ${us(step.p99Us)} us` +
    `  e2e p50 ${us(e2e.p50Us)} p99 ${us(e2e.p99Us)} us  ${musicText(feeder)}`;
}

/** The newest result's top melody note and chord index. */
function musicText(feeder: BlockFeeder): string {
  if (feeder.lastSeq < 0) return "note -  chord -";
  const note = argmax(feeder.into.melody);
  return `note ${note} ${noteName(note)}  chord ${argmax(feeder.into.harmony)}`;
}

export interface LiveSummary {
  interrupted: boolean;
  source: {
    kind: "generated" | "wav";
    path: string | null;
    sampleRateHz: number;
    channels: number;
    format: string;
    seconds: number;
    /** Always false: features are computed at the source's rate. */
    resampled: false;
    /** The feature extractor's FFT bins are binHz apart (sampleRateHz / FFT_SIZE). */
    binHz: number;
  };
  stream: {
    policy: Policy;
    blockSamples: number;
    blockPeriodUs: number;
    speed: number;
    audioSeconds: number;
    wallSeconds: number;
    lateBlocks: number;
    maxLateMs: number;
  };
  counters: {
    /** submit() calls: accepted + rejected. */
    submitted: number;
    accepted: number;
    rejected: number;
    skipped: number;
    /** Taken by a Worker that died or hung before publishing (RealtimeStats.lost). */
    lost: number;
    /** rejected + skipped + lost. */
    dropped: number;
    completed: number;
    /** Accepted, not yet taken by the Worker. */
    pending: number;
    /** Taken and still in flight at the end. */
    unfinished: number;
    resultsRead: number;
    readFailures: number;
    workerRestarts: number;
  };
  lastError: string | null;
  engineState: string;
  latencyUs: RealtimeStats["latencyUs"];
  modelLoadMs: number;
  /**
   * How the models held their weight matrices: --precision, else as the files store them
   * (f32 or int8; "mixed" when the files differ).
   */
  precision: Precision | "mixed";
  weightBytes: number;
  memory: RealtimeStats["memory"];
  models: { name: string; parameters: number; untrained: boolean }[];
  untrained: boolean;
  last: { seq: number; note: number; noteName: string; chord: number } | null;
}

function summaryOf(
  source: Source,
  options: LiveOptions,
  plan: Plan,
  run: Run,
  feeder: BlockFeeder,
  s: RealtimeStats,
  rows: EmotionModelRow[],
): LiveSummary {
  const note = argmax(feeder.into.melody);
  return {
    interrupted: run.interrupted,
    source: {
      kind: source.kind,
      path: source.path,
      sampleRateHz: source.sampleRateHz,
      channels: source.channels,
      format: source.format,
      seconds: source.samples.length / source.sampleRateHz,
      resampled: false,
      binHz: source.sampleRateHz / FFT_SIZE,
    },
    stream: {
      policy: options.policy,
      blockSamples: options.blockSamples,
      blockPeriodUs: plan.audioPeriodUs,
      speed: options.speed,
      audioSeconds: (run.blocksFed * plan.audioPeriodUs) / 1e6,
      wallSeconds: (run.endMs - run.startMs) / 1000,
      lateBlocks: run.pacing[LATE_BLOCKS],
      maxLateMs: run.pacing[MAX_LATE_MS],
    },
    counters: {
      submitted: feeder.submitted,
      accepted: s.submitted,
      rejected: s.rejected,
      skipped: s.skipped,
      lost: s.lost,
      dropped: s.dropped,
      completed: s.completed,
      pending: s.pending,
      unfinished: s.submitted - s.completed - s.skipped - s.lost - s.pending,
      resultsRead: feeder.resultsRead,
      readFailures: s.readFailures,
      workerRestarts: s.workerRestarts,
    },
    lastError: s.lastError,
    engineState: s.state,
    latencyUs: s.latencyUs,
    modelLoadMs: s.modelLoadMs,
    precision: options.precision ?? storedPrecision(rows),
    weightBytes: s.weightBytes,
    memory: s.memory,
    models: rows.map((r) => ({ name: r.name, parameters: r.parameters, untrained: r.untrained })),
    untrained: rows.some((r) => r.untrained),
    last: feeder.lastSeq < 0 ? null : {
      seq: feeder.lastSeq,
      note,
      noteName: noteName(note),
      chord: argmax(feeder.into.harmony),
    },
  };
}

function sourceLine(summary: LiveSummary): string {
  const src = summary.source;
  const what = src.kind === "generated"
    ? `the generated melody (${src.seconds.toFixed(2)} s, looped)`
    : `${src.path} (${src.channels} channel(s) ${src.format}` +
      `${src.channels > 1 ? " mixed to mono" : ""}, ${src.seconds.toFixed(2)} s, looped)`;
  return `source: ${what} at ${src.sampleRateHz} Hz, not resampled: semitone bands from ` +
    `FFT bins ${src.binHz.toFixed(2)} Hz apart`;
}

function latencyTable(latency: RealtimeStats["latencyUs"]): string[] {
  const rows: [string, LatencySummary][] = [
    ["pipeline step", latency.pipeline],
    ["end-to-end submit->publish", latency.endToEnd],
    ...Object.entries(latency.models),
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  const cell = (text: string) => text.padStart(9);
  const header = `  ${"latency (us, Worker clock)".padEnd(width)}` +
    ["count", "p50", "p99", "max"].map(cell).join("");
  return [
    header,
    ...rows.map(([name, l]) =>
      `  ${name.padEnd(width)}` +
      [String(l.count), us(l.p50Us), us(l.p99Us), us(l.maxUs)].map(cell).join("")
    ),
  ];
}

function countersLine(c: LiveSummary["counters"]): string {
  const extra = (count: number, name: string) => count !== 0 ? ` + ${name} ${count}` : "";
  return `blocks: submitted ${c.submitted} = completed ${c.completed} + dropped ${c.dropped} ` +
    `(rejected ${c.rejected}, skipped ${c.skipped}${c.lost !== 0 ? `, lost ${c.lost}` : ""})` +
    `${extra(c.pending, "pending")}` +
    `${extra(c.unfinished, "unfinished")}; results read ${c.resultsRead}; ` +
    `worker restarts ${c.workerRestarts}`;
}

function summaryText(summary: LiveSummary): string[] {
  const st = summary.stream;
  const lines = [
    `cadenza live${summary.interrupted ? " (interrupted)" : ""}: ${st.audioSeconds.toFixed(2)} s ` +
    `of audio in ${st.wallSeconds.toFixed(2)} s, ${st.blockSamples}-sample blocks every ` +
    `${us(st.blockPeriodUs)} us${st.speed !== 1 ? ` (at ${st.speed}x speed)` : ""}, ` +
    `policy ${st.policy}`,
    sourceLine(summary),
    countersLine(summary.counters),
    `pacing: ${st.lateBlocks} block(s) fed more than a period late, worst ` +
    `${st.maxLateMs.toFixed(2)} ms`,
    ...latencyTable(summary.latencyUs),
    `models: ${summary.models.length} loaded in ${summary.modelLoadMs.toFixed(1)} ms, ` +
    `${summary.precision} weights, ${summary.weightBytes} weight bytes; process RSS ` +
    `${(summary.memory.rssBytes / 2 ** 20).toFixed(1)} MiB`,
  ];
  if (summary.last !== null) {
    const l = summary.last;
    lines.push(`last result: #${l.seq}, top note ${l.note} (${l.noteName}), chord ${l.chord}`);
  }
  if (summary.lastError !== null) lines.push(`last engine error: ${summary.lastError}`);
  if (summary.untrained) {
    lines.push(
      "note: the models are untrained seeded initialisations (their metadata says " +
        'untrained: "true"); the notes and chords carry no musical meaning yet',
    );
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// The command.

/** Ctrl-C asks the stream to stop; returns the function that removes the handler. */
function onInterrupt(run: Run): () => void {
  const handler = () => {
    run.interrupted = true;
  };
  process.on("SIGINT", handler);
  return () => process.off("SIGINT", handler);
}

async function live(options: LiveOptions, output: Output): Promise<number> {
  const source = await loadSource(options);
  // Read first: a missing file is reported by name before a Worker starts.
  const rows = await inspectEmotionModels(options.models);
  // Installed before the models load, so that Ctrl-C then still ends with a clean stop.
  const run: Run = {
    interrupted: false,
    startMs: 0,
    endMs: 0,
    blocksFed: 0,
    pacing: new Float64Array(2),
  };
  const removeHandler = onInterrupt(run);
  try {
    return await startAndStream(options, output, source, rows, run);
  } finally {
    removeHandler();
  }
}

async function startAndStream(
  options: LiveOptions,
  output: Output,
  source: Source,
  rows: EmotionModelRow[],
  run: Run,
): Promise<number> {
  const plan = planOf(options, source);
  const engine = await RealtimeEngine.start<EmotionOutputs>({
    models: options.models,
    policy: options.policy,
    library: options.library,
    precision: options.precision,
  });
  let summary: LiveSummary;
  try {
    const feeder = new BlockFeeder(
      engine,
      source.samples,
      options.blockSamples,
      source.sampleRateHz,
    );
    let statusAtMs = performance.now() + STATUS_MS;
    await stream(feeder, plan, run, (nowMs) => {
      if (options.quiet || nowMs < statusAtMs) return;
      statusAtMs += STATUS_MS * Math.max(1, Math.ceil((nowMs - statusAtMs) / STATUS_MS));
      const audioS = (run.blocksFed * plan.audioPeriodUs) / 1e6;
      output.err(statusLine(feeder, engine.stats(), audioS));
    });
    await drain(engine);
    feeder.readLatest();
    summary = summaryOf(source, options, plan, run, feeder, engine.stats(), rows);
  } finally {
    await engine.stop();
  }
  if (options.json) output.out(JSON.stringify(summary, null, 2));
  else for (const line of summaryText(summary)) output.out(line);
  if (run.interrupted) return 130;
  return summary.engineState === "failed" ? 1 : 0;
}

export const liveCommand: Command = {
  name: "live",
  summary: "stream audio blocks in real time through the emotion pipeline's engine",
  help: [
    "usage: cadenza live [--wav FILE] [--seconds N] [--block N] [--rate HZ] " +
    `[--policy latest|every] [--precision ${PRECISIONS.join("|")}] [--json]`,
    "",
    "Starts the real-time engine (a Worker running the five emotion models) and feeds it an",
    "audio stream paced in real time: each block of samples becomes 128 features (a Hann-",
    "windowed 256-point FFT of the latest samples; the level of bins 1..128 in dB above",
    "-80 dBFS, divided by 80) and one submit(), then latest() reads the newest result, as an",
    "audio callback would; block deadlines are absolute, so the pace never drifts. About four",
    "times a second a status line goes to stderr: blocks submitted, completed, dropped, the",
    "pipeline step's and the end-to-end (submit->publish) p50/p99 in microseconds, the top",
    "melody note and the chord index. At the end a summary goes to stdout: counters, the",
    "latency table per model and for the pipeline, model load ms, weight bytes, RSS. Ctrl-C",
    "stops early and still prints the summary (exit 130).",
    "",
    "flags:",
    "  --wav FILE       stream a WAV file (PCM 16/24/32-bit or float 32-bit, channels mixed",
    "                   to mono) at its own sample rate, not resampled; looped if shorter",
    "                   than --seconds (default: a generated melody of sine tones)",
    `  --seconds N      seconds of audio to stream (default ${DEFAULT_SECONDS}; decimals allowed)`,
    `  --block N        samples per block (default ${DEFAULT_BLOCK})`,
    `  --rate HZ        sample rate of the generated melody (default ${DEFAULT_RATE_HZ}); with`,
    "                   --wav it must match the file's rate, or be left out",
    "  --policy P       latest (default): the Worker skips to the newest block when behind;",
    "                   every: it runs every block (the ring may fill and refuse some)",
    "  --speed X        feed X times faster than real time (default 1; for tests and stress)",
    `  --precision P    how the models hold their weight matrices: ${PRECISIONS.join(", ")}`,
    "                   (default: as the files store them, f32 or int8 for a compressed",
    "                   directory; bf16 halves the bytes each step reads, rounding each weight",
    "                   to 8 significant bits; an int8 file is refused at f32 or bf16)",
    "  --models DIR     folder of the five model files (default: the project's models/)",
    "  --library L      safe (default), fast, or a library path (else CADENZA_LIB)",
    "  --json           print the summary as JSON",
    "  --quiet          no status lines",
  ].join("\n"),
  flags: {
    values: {
      wav: "FILE",
      seconds: "N",
      block: "N",
      rate: "HZ",
      policy: "latest|every",
      precision: PRECISIONS.join("|"),
      speed: "X",
      models: "DIR",
      library: "safe|fast|PATH",
    },
    switches: ["json", "quiet"],
  },
  run(args, output) {
    return live(liveOptions(args), output);
  },
};
