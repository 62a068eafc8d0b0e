/**
 * The demo's engine thread: a dedicated Worker that loads the five trained models on the
 * WebAssembly backend (the same Zig library, fetched as cadenza_fast.wasm) and runs the
 * emotion pipeline and the music decoder ahead of the audio clock, exactly the step loop of
 * `generate` (src/music/generate.ts): one model step per melody note, from the emotion's
 * vector and the decoder's context. Decoded events go into the shared ring (web/shared.ts) a
 * lookahead ahead of the frame the AudioWorklet has reached; the worklet never waits for it.
 */

import { loadModel } from "../src/model/load.ts";
import { openWasmLibrary } from "../src/native/index.ts";
import { EMOTION_MODELS, type EmotionOutputs, EmotionPipeline } from "../src/pipeline/emotion.ts";
import type { PipelineModel } from "../src/pipeline/pipeline.ts";
import { CONTEXT_SIZE, Decoder } from "../src/music/decode.ts";
import {
  EMOTION_VECTOR_SIZE,
  emotionDefaults,
  emotionPoint,
  writeEmotionVector,
} from "../src/music/emotion-map.ts";
import { pipelineTrained } from "../src/music/generate.ts";
import { histogramRecord } from "../src/rt/histogram.ts";
import {
  C,
  EVENT_ALL_OFF,
  type FromWorker,
  mapShared,
  packEvent,
  recordCut,
  RING,
  type Shared,
  type ToWorker,
} from "./shared.ts";

/**
 * How far ahead of the audio the music is decoded, in seconds: how long this thread may be
 * kept from running (a busy machine, a collection) before the worklet runs dry. A change of
 * emotion does not wait for it: it cuts the decoded music CUT_AHEAD_S ahead of the clock.
 */
const LOOKAHEAD_S = 2;
/** How far ahead of the audio clock a change of emotion starts, in seconds. */
const CUT_AHEAD_S = 0.1;
/** How often the worker looks at the audio clock, in ms. */
const POLL_MS = 10;

const post = (message: FromWorker) => (self as unknown as Worker).postMessage(message);

let shared: Shared | null = null;
let pipeline: EmotionPipeline | null = null;
const context = new Float32Array(CONTEXT_SIZE);
const emotion = new Float32Array(EMOTION_VECTOR_SIZE);
/** The latest model step's outputs, kept between note steps (as generate keeps them). */
const latest = {
  melody: new Float32Array(128),
  harmony: new Float32Array(64),
  groove: new Float32Array(32),
  dynamics: new Float32Array(16),
};
let decoder: Decoder | null = null;
/** The frame the current decoder's time 0 falls on. */
let baseFrame = 0;
/** The latest frame published: the ring is kept in time order (see publish). */
let lastFrame = 0;
let sampleRate = 48_000;
let timer: ReturnType<typeof setTimeout> | null = null;

function keep(outputs: EmotionOutputs): void {
  latest.melody.set(outputs.melody);
  latest.harmony.set(outputs.harmony);
  latest.groove.set(outputs.groove);
  latest.dynamics.set(outputs.dynamics);
}

function modelStep(): void {
  const started = performance.now();
  keep(pipeline!.stepFromEmotion(emotion, decoder!.context(context)));
  histogramRecord(shared!.steps, 0, (performance.now() - started) * 1000);
  Atomics.add(shared!.control, C.STEPS, 1);
}

/**
 * Writes the decoder's `count` events into the ring, then publishes them. The worklet plays the
 * ring in order, so the frames never go back: an event that swing or micro-timing put before
 * one already published (by at most part of a step) is played with it.
 */
function publish(count: number): void {
  const { control, events } = shared!;
  const e = decoder!.events;
  let written = Atomics.load(control, C.WRITTEN);
  for (let i = 0; i < count; i++) {
    const at = (written % RING) * 2;
    lastFrame = Math.max(lastFrame, baseFrame + Math.round(e.time[i] * sampleRate));
    events[at] = lastFrame;
    events[at + 1] = packEvent(e.kind[i], e.track[i], e.pitch[i], e.velocity[i]);
    written++;
  }
  Atomics.store(control, C.WRITTEN, written);
}

/** Appends one event of the worker's own (the all-notes-off of a cut). */
function publishOne(frame: number, packed: number): void {
  const { control, events } = shared!;
  const written = Atomics.load(control, C.WRITTEN);
  const at = (written % RING) * 2;
  events[at] = frame;
  events[at + 1] = packed;
  lastFrame = frame;
  Atomics.store(control, C.WRITTEN, written + 1);
}

/** Starts a piece for `name` at `frame`: the decoder and the emotion, as generate sets them. */
function begin(name: string, seed: number, frame: number): void {
  const point = emotionPoint(name);
  const defaults = emotionDefaults(point);
  writeEmotionVector(point, emotion);
  const key = { tonic: defaults.tonic, mode: defaults.mode };
  decoder = new Decoder({ seed, tempo: defaults.tempo, meter: defaults.meter, key });
  baseFrame = frame;
  // One step with no music yet gives the first bar its groove and harmony; the reset clears it
  // from the melody's KV cache, so that the first note's step is the cache's first.
  pipeline!.reset();
  modelStep();
  pipeline!.reset();
  post({
    type: "piece",
    emotion: name,
    frame,
    tempo: defaults.tempo,
    meter: [defaults.meter[0], defaults.meter[1]],
    key,
    barFrames: Math.round(decoder.stepsPerBar * decoder.stepSeconds * sampleRate),
    trained: pipelineTrained(pipeline!),
  });
}

/** The frame up to which every event of the current decoder is in the ring. */
function decodedFrame(): number {
  // Swing and micro-timing move an onset within its step: one step of margin.
  const steps = Math.max(0, decoder!.stepIndex - 1);
  return baseFrame + Math.floor(steps * decoder!.stepSeconds * sampleRate);
}

/** Decodes steps until the music reaches the audio clock plus the lookahead. */
function fill(): void {
  const { control } = shared!;
  const target = Atomics.load(control, C.FRAME) + Math.round(LOOKAHEAD_S * sampleRate);
  while (decodedFrame() < target) {
    // Never overwrite events the worklet has not read: at most RING - 64 outstanding.
    if (Atomics.load(control, C.WRITTEN) - Atomics.load(control, C.READ) > RING - 64) break;
    if (decoder!.beginStep(latest)) modelStep();
    publish(decoder!.step(latest));
    Atomics.store(control, C.DECODED, decodedFrame());
  }
}

function tick(): void {
  try {
    fill();
  } catch (err) {
    post({ type: "error", message: err instanceof Error ? err.message : String(err) });
    return;
  }
  timer = setTimeout(tick, POLL_MS);
}

async function init(message: Extract<ToWorker, { type: "init" }>): Promise<void> {
  const started = performance.now();
  shared = mapShared(message.buffer);
  sampleRate = Atomics.load(shared.control, C.SAMPLE_RATE);
  const fetchBytes = async (url: string) => {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`cannot fetch ${url}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  };
  const library = await openWasmLibrary(await fetchBytes(message.wasm), message.wasm);
  const models: Record<string, PipelineModel> = {};
  for (const info of EMOTION_MODELS) {
    const url = `${message.models}/${info.name}.safetensors`;
    models[info.name] = await loadModel(await fetchBytes(url), { library });
  }
  pipeline = new EmotionPipeline(models as ConstructorParameters<typeof EmotionPipeline>[0]);
  post({
    type: "ready",
    library,
    parameters: pipeline.parameterCount,
    weightBytes: pipeline.weightBytes,
    loadMs: performance.now() - started,
  });
}

function play(name: string, seed: number): void {
  const { control } = shared!;
  if (timer !== null) clearTimeout(timer);
  if (decoder === null || Atomics.load(control, C.STATE) === 0) {
    // A fresh start: the clock begins at frame 0 once the first lookahead is decoded.
    Atomics.store(control, C.FRAME, 0);
    lastFrame = 0;
    Atomics.store(control, C.READ, Atomics.load(control, C.WRITTEN));
    begin(name, seed, 0);
    fill();
    Atomics.store(control, C.STATE, 1);
  } else {
    // A change of emotion: the music already decoded stops CUT_AHEAD_S ahead of the audio
    // clock (the readers drop what was written before the cut and falls after it), every
    // sounding note ends there, and the new piece starts there.
    const now = Atomics.load(control, C.FRAME);
    const at = now + Math.round(CUT_AHEAD_S * sampleRate);
    recordCut(shared!, at, Atomics.load(control, C.WRITTEN));
    publishOne(at, packEvent(EVENT_ALL_OFF, 0, 0, 0));
    begin(name, seed, at);
  }
  tick();
}

self.onmessage = (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  if (message.type === "init") {
    init(message).catch((err) =>
      post({ type: "error", message: err instanceof Error ? err.message : String(err) })
    );
  } else if (message.type === "play") {
    try {
      play(message.emotion, message.seed);
    } catch (err) {
      post({ type: "error", message: err instanceof Error ? err.message : String(err) });
    }
  } else if (message.type === "stop") {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (shared !== null) Atomics.store(shared.control, C.STATE, 0);
  }
};
