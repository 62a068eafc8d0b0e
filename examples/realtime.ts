/**
 * Real-time music from audio, with two RealtimeEngines, each running its models in a Worker:
 * one runs the EmotionRecognizer alone on every audio block of a stream (a WAV file, or the
 * project's generated melody); the other runs the four symbolic models once per melody NOTE,
 * from the newest recognised emotion and the decoder's context (input "emotion"). This loop,
 * which is what an audio callback would run, feeds each block and walks the music's clock a
 * sixteenth ahead with the allocation-free Decoder: each grid step begins on the latest note
 * result (groove, harmony and dynamics at bar and chord-span starts); a step that sounds a new
 * note submits its context and is decoded when that note's result has arrived, a block or so
 * later, before the note is due. It prints the MIDI note events with their times, writes them
 * to a .mid at the end, and prints the engines' stats: submit() and latest() never wait.
 *
 *   bun examples/realtime.ts [IN.wav] [--seconds 8] [--speed 1] [--out out/realtime.mid]
 *
 * The hot loop allocates nothing: the features, the result buffers, the decoder's events and
 * the event log are typed arrays made before it starts; printing happens between blocks, on the
 * event-loop turns (as `cadenza live` prints its status).
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import process from "node:process";
import { FEATURE_BINS, FeatureExtractor } from "../src/audio/features.ts";
import { melodySignal } from "../src/audio/signal.ts";
import { readWav } from "../src/audio/wav.ts";
import {
  CHORD,
  CHORD_TRACK,
  CONTEXT_SIZE,
  Decoder,
  MELODY_TRACK,
  NOTE_ON,
  STEPS_PER_QUARTER,
} from "../src/music/decode.ts";
import { chordSymbol } from "../src/music/chords.ts";
import { toMidi } from "../src/music/midi.ts";
import type { Note, NoteSequence } from "../src/music/sequence.ts";
import { PARTS } from "../src/music/generate.ts";
import { defaultModelsDir, type EmotionOutputs, modelFile } from "../src/pipeline/emotion.ts";
import { RealtimeEngine } from "../src/rt/index.ts";

const BLOCK = 128;
const TEMPO = 120;
const KEY = { tonic: 9, mode: "minor" as const };
const LOG_CAPACITY = 1 << 16;

function flag(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const wavPath = process.argv.slice(2).find((arg, i, all) =>
  !arg.startsWith("--") && (i === 0 || !all[i - 1].startsWith("--"))
);
const seconds = Number(flag("seconds", "8"));
const speed = Number(flag("speed", "1"));
const outPath = flag("out", "out/realtime.mid");
if (!(seconds > 0 && seconds <= 600) || !(speed > 0 && speed <= 100)) {
  console.error("usage: bun examples/realtime.ts [IN.wav] [--seconds 0..600] [--speed 0..100]");
  process.exit(2);
}

const source = wavPath === undefined
  ? { rateHz: 48_000, samples: melodySignal(48_000) }
  : await readWav(wavPath).then((wav) => ({ rateHz: wav.sampleRateHz, samples: wav.samples }));
const blocks = Math.ceil((seconds * source.rateHz) / BLOCK);
const blockSeconds = BLOCK / source.rateHz;

// The recognizer alone, per audio block: a one-node graph.
const hearing = await RealtimeEngine.start<{ emotion: Float32Array }>({
  graph: {
    nodes: [{ name: "emotion", model: "EmotionRecognizer", inputs: [{ from: "input" }] }],
    files: { EmotionRecognizer: modelFile(defaultModelsDir(), "EmotionRecognizer") },
  },
});
// The symbolic models, per note: every submit runs (one at a time is ever outstanding).
const engine = await RealtimeEngine.start<EmotionOutputs>({ input: "emotion", policy: "every" });
const heard = hearing.createBuffers();
const into = engine.createBuffers();
const extractor = new FeatureExtractor();
const features = new Float32Array(FEATURE_BINS);
const context = new Float32Array(CONTEXT_SIZE);
const decoder = new Decoder({ seed: 1, tempo: TEMPO, meter: [4, 4], key: KEY });
/** How far ahead of the audio the music's clock decides its notes, in seconds. */
const LOOKAHEAD = decoder.stepSeconds;

// The event log: filled in the loop, printed and turned into notes outside it.
const log = {
  count: 0,
  kind: new Uint8Array(LOG_CAPACITY),
  track: new Uint8Array(LOG_CAPACITY),
  pitch: new Uint8Array(LOG_CAPACITY),
  velocity: new Uint8Array(LOG_CAPACITY),
  time: new Float64Array(LOG_CAPACITY),
};
/**
 * [caller's longest submit+latest in ms, blocks with no emotion yet, the music's next step,
 * the note submit waited for (-1: none), note submits].
 */
const watch = new Float64Array(5);
watch[3] = -1;
let position = 0;
let printed = 0;

/** One audio block: what an audio callback runs. Allocates nothing. */
function tick(block: number): void {
  const count = Math.min(BLOCK, source.samples.length - position);
  extractor.push(source.samples, position, count);
  position = position + count >= source.samples.length ? 0 : position + count;
  extractor.compute(features);
  const before = performance.now();
  hearing.submit(features);
  const seq = hearing.latest(heard);
  // The note result waited for, when it has arrived (policy "every": none is skipped).
  const noteSeq = watch[3] >= 0 ? engine.latest(into) : -1;
  const spent = performance.now() - before;
  if (spent > watch[0]) watch[0] = spent;
  if (seq < 0) {
    watch[1]++;
    return;
  }
  if (watch[4] === 0) {
    // Before the first bar: one step with no music yet gives it its groove and harmony.
    engine.submit(heard.emotion, decoder.context(context));
    watch[3] = watch[4]++;
    return;
  }
  if (watch[3] >= 0) {
    if (noteSeq < watch[3]) return;
    // A first result only opens the piece; a note's result decodes the step that asked.
    if (watch[3] > 0) record(decoder.step(into));
    watch[3] = -1;
  }
  // The music's clock, a sixteenth ahead: each grid step on the latest note result, and a
  // step that sounds a new note waits for that note's result.
  const now = block * blockSeconds + LOOKAHEAD;
  while (watch[2] * decoder.stepSeconds <= now) {
    if (decoder.beginStep(into)) {
      engine.submit(heard.emotion, decoder.context(context));
      watch[3] = watch[4]++;
      return;
    }
    record(decoder.step(into));
  }
}

/** Logs one decoder step's events and advances the music's clock. */
function record(events: number): void {
  const e = decoder.events;
  for (let i = 0; i < events && log.count < LOG_CAPACITY; i++) {
    const at = log.count++;
    log.kind[at] = e.kind[i];
    log.track[at] = e.track[i];
    log.pitch[at] = e.pitch[i];
    log.velocity[at] = e.velocity[i];
    log.time[at] = e.time[i];
  }
  watch[2]++;
}

function printEvents(): void {
  for (; printed < log.count; printed++) {
    const t = log.time[printed].toFixed(3).padStart(7);
    const part = log.track[printed] === MELODY_TRACK ? "melody" : "chords";
    if (log.kind[printed] === CHORD) {
      console.log(`${t} s  chord   ${chordSymbol(log.pitch[printed], KEY)}`);
    } else {
      const on = log.kind[printed] === NOTE_ON;
      console.log(
        `${t} s  ${part.padEnd(6)}  note ${on ? "on " : "off"} ${log.pitch[printed]}` +
          (on ? ` velocity ${log.velocity[printed]}` : ""),
      );
    }
  }
}

const periodMs = (blockSeconds * 1000) / speed;
const startMs = performance.now();
let turnAtMs = startMs + 5;
for (let block = 0; block < blocks; block++) {
  const dueMs = startMs + block * periodMs;
  const waitMs = dueMs - performance.now();
  if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
  tick(block);
  if (performance.now() >= turnAtMs) {
    printEvents();
    turnAtMs = performance.now() + 5;
  }
}
const endTime = watch[2] * decoder.stepSeconds;
const last = decoder.finish(endTime);
for (let i = 0; i < last && log.count < LOG_CAPACITY; i++) {
  const at = log.count++;
  log.kind[at] = decoder.events.kind[i];
  log.track[at] = decoder.events.track[i];
  log.pitch[at] = decoder.events.pitch[i];
  log.velocity[at] = 0;
  log.time[at] = decoder.events.time[i];
}
printEvents();

// The log as a note sequence, written as a MIDI file.
const notes: Note[] = [];
const open = new Map<string, Note>();
for (let i = 0; i < log.count; i++) {
  if (log.kind[i] === CHORD) continue;
  const track = log.track[i];
  const id = `${track}:${log.pitch[i]}`;
  if (log.kind[i] === NOTE_ON) {
    const note: Note = {
      pitch: log.pitch[i],
      velocity: log.velocity[i],
      startTime: log.time[i],
      endTime: log.time[i] + 0.001,
      instrument: track === CHORD_TRACK ? 1 : 0,
      program: PARTS[track].program,
      isDrum: false,
    };
    notes.push(note);
    open.set(id, note);
  } else {
    const note = open.get(id);
    if (note !== undefined) note.endTime = Math.max(note.startTime + 0.001, log.time[i]);
    open.delete(id);
  }
}
const sequence: NoteSequence = {
  notes,
  tempos: [{ time: 0, qpm: TEMPO }],
  timeSignatures: [{ time: 0, numerator: 4, denominator: 4 }],
  keySignatures: [{ time: 0, key: KEY.tonic, mode: KEY.mode }],
  instrumentInfos: PARTS.slice(0, 2).map((part) => ({ ...part })),
  totalTime: Math.max(endTime, ...notes.map((n) => n.endTime)),
  meta: { generator: "examples/realtime.ts", source: wavPath ?? "generated melody" },
};
mkdirSync(dirname(outPath), { recursive: true });
writeFileSync(outPath, toMidi(sequence));

const stats = engine.stats();
const heardStats = hearing.stats();
await engine.stop();
await hearing.stop();
const us = (x: number) => `${x.toFixed(0)} us`;
console.log(
  `\nwrote ${outPath}: ${notes.length} notes over ${endTime.toFixed(2)} s ` +
    `(${watch[2]} decoder steps at ${TEMPO} bpm, ${STEPS_PER_QUARTER} a quarter; ` +
    `${watch[4]} model steps, one per melody note and one before the first bar)`,
);
console.log(
  `recognizer: ${heardStats.submitted} blocks submitted, ${heardStats.completed} results, ` +
    `${heardStats.skipped} skipped for newer (latest-wins), ${heardStats.rejected} refused, ` +
    `${heardStats.workerRestarts} restarts; step p50 ${us(heardStats.latencyUs.pipeline.p50Us)}`,
);
console.log(
  `symbolic models: ${stats.submitted} note steps, ${stats.completed} results, ` +
    `${stats.workerRestarts} restarts; step p50 ${us(stats.latencyUs.pipeline.p50Us)}, p99 ${
      us(stats.latencyUs.pipeline.p99Us)
    }; submit to result p50 ${us(stats.latencyUs.endToEnd.p50Us)}`,
);
console.log(
  `the caller never waits (submit and latest do not block): its longest submit()+latest() ` +
    `took ${us(watch[0] * 1000)} ` +
    `(a block lasts ${us(blockSeconds * 1e6)}); ${watch[1]} early blocks found no result yet`,
);
