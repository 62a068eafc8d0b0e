/**
 * `generate`: an emotion -> a piece. The four symbolic models run one step per melody note
 * (`modelStep`), conditioned through `stepFromEmotion` on the emotion vector of
 * src/music/emotion-map.ts and on the music so far (the decoder's tonic-relative context: the
 * previous note, the chord in force, the span's melody); the Decoder (src/music/decode.ts)
 * walks the sixteenth-note grid, reads the groove, harmony and dynamics of the latest step at
 * bar and chord-span starts, and turns each note step's outputs into melody events; the bass
 * line follows the chords and drums follow the groove. `respond` does the same with the
 * emotion the EmotionRecognizer hears in a WAV file (the recognizer alone, per audio block),
 * followed over time.
 *
 * While the models in use are the untrained seeded initialisations (their metadata says
 * `untrained: "true"`), every result says so (`trained: false`, the sequence's meta, the
 * summary), and stops saying so by itself when the metadata says trained.
 *
 * ```ts
 * const { sequence, chords, summary } = await generate({ emotion: "joyful", bars: 16, seed: 7 });
 * const bytes = toMidi(sequence);
 * ```
 */

import { FEATURE_BINS, FeatureExtractor } from "../audio/features.ts";
import { readWav, type WavAudio } from "../audio/wav.ts";
import { CadenzaError } from "../errors.ts";
import type { Precision } from "../model/image.ts";
import type { Model } from "../model/model.ts";
import type { LibraryChoice } from "../native/library.ts";
import { defaultModelsDir, type EmotionOutputs, EmotionPipeline } from "../pipeline/emotion.ts";
import {
  bassLine,
  type BassPattern,
  type BassSpan,
  chordSymbol,
  type KeyInfo,
  keyName,
  parseKey,
} from "./chords.ts";
import {
  CHORD,
  CHORD_TRACK,
  type ChordRate,
  type Constraint,
  CONTEXT_SIZE,
  Decoder,
  DYNAMICS,
  DYNAMICS_SIZE,
  GROOVE,
  GROOVE_SIZE,
  HARMONY_SIZE,
  MELODY_SIZE,
  MELODY_TRACK,
  NOTE_ON,
  STEPS_PER_QUARTER,
  type Voicing,
} from "./decode.ts";
import {
  EMOTION_VECTOR_SIZE,
  emotionDefaults,
  emotionFromVector,
  type EmotionName,
  type EmotionPoint,
  emotionPoint,
  nearestEmotion,
  writeEmotionVector,
} from "./emotion-map.ts";
import { Rng } from "./rng.ts";
import {
  type InstrumentInfo,
  type Note,
  type NoteSequence,
  secondsToQuarters,
} from "./sequence.ts";

export const MAX_BARS = 512;
export const DEFAULT_BARS = 8;

/** The parts of a generated piece: track index, name, General MIDI program, channel. */
export const PARTS: readonly InstrumentInfo[] = Object.freeze([
  { instrument: 0, name: "melody", program: 0, isDrum: false, channel: 0 },
  { instrument: 1, name: "chords", program: 48, isDrum: false, channel: 1 },
  { instrument: 2, name: "bass", program: 32, isDrum: false, channel: 2 },
  { instrument: 9, name: "drums", program: 0, isDrum: true, channel: 9 },
]);
const BASS_TRACK = 2;
const DRUM_TRACK = 9;

export interface GenerateOptions {
  /** A named emotion (see EMOTION_NAMES) or a point { valence, arousal } in [-1, 1]^2. */
  emotion?: EmotionName | string | EmotionPoint;
  /** 1..512 (default 8). */
  bars?: number;
  /** Integer 0..2^32-1 (default 0). */
  seed?: number;
  /** Quarter notes per minute, 20..400 (default: from the emotion's arousal). */
  tempo?: number;
  /** [numerator, denominator] (default: from the emotion). */
  meter?: [number, number];
  /** { tonic, mode } or a name like "D minor", "Bb", "F#m" (default: from the emotion). */
  key?: KeyInfo | string;
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Off ("none") by default: the notes are what the models say. */
  constrain?: Constraint;
  /** Melody range [low, high] in MIDI notes (default [60, 84]). */
  range?: [number, number];
  /** Melody to continue: its last notes fill the models' context and the decoder's state. */
  primer?: NoteSequence;
  /** Adds a drum track (channel 10) from the groove. */
  drums?: boolean;
  chordRate?: ChordRate;
  /** "under-melody" (default: each chord strike under the melody note) or "register". */
  voicing?: Voicing;
  /** The models' folder (default: the project's models/). */
  models?: string;
  precision?: Precision;
  library?: LibraryChoice;
  /** A loaded pipeline to use instead of loading `models` (it is reset, not disposed). */
  pipeline?: EmotionPipeline;
}

export interface ChordEvent {
  /** Seconds. */
  time: number;
  /** 0-based bar and 1-based beat (in the meter's beat unit). */
  bar: number;
  beat: number;
  symbol: string;
  /** The HarmonyPredictor class 0..63 (docs/MUSIC.md). */
  class: number;
}

export interface EmotionPathPoint {
  time: number;
  bar: number;
  valence: number;
  arousal: number;
  name: EmotionName;
}

export interface GenerateResult {
  sequence: NoteSequence;
  chords: ChordEvent[];
  emotionPath: EmotionPathPoint[];
  seed: number;
  /** False while any model's metadata says untrained. */
  trained: boolean;
  key: KeyInfo;
  tempo: number;
  meter: [number, number];
  bars: number;
  /** One line: emotion, key, tempo, meter, bars, counts, seed, and "UNTRAINED" while so. */
  summary: string;
  /**
   * Pipeline steps run: one per generated melody note, one per primer note, and one before
   * the first bar when there is no primer (its groove and harmony open the piece).
   */
  modelSteps: number;
}

/** What the labels say while the models are untrained. */
export const UNTRAINED_NOTE =
  "UNTRAINED models (seeded random initialisations): the notes are noise with a tempo";

/** Whether every model of the pipeline is trained (none says untrained: "true"). */
export function pipelineTrained(pipeline: EmotionPipeline): boolean {
  return Object.values(pipeline.models).every((model) =>
    (model as Partial<Model>).meta?.untrained !== "true"
  );
}

interface Settings {
  bars: number;
  seed: number;
  tempo: number;
  meter: [number, number];
  key: KeyInfo;
  point: EmotionPoint;
  drums: boolean;
}

function check(ok: boolean, field: string, value: unknown, allowed: string): void {
  if (!ok) {
    throw new CadenzaError("E_ARGUMENT", `${field} must be ${allowed}, got ${String(value)}`);
  }
}

function settingsOf(options: GenerateOptions, point: EmotionPoint): Settings {
  const bars = options.bars ?? DEFAULT_BARS;
  check(Number.isInteger(bars) && bars >= 1 && bars <= MAX_BARS, "bars", bars, "1..512");
  const seed = options.seed ?? 0;
  check(Number.isInteger(seed) && seed >= 0 && seed <= 0xffff_ffff, "seed", seed, "0..4294967295");
  const defaults = emotionDefaults(point);
  const key = typeof options.key === "string" ? parseKey(options.key) : options.key;
  return {
    bars,
    seed,
    tempo: options.tempo ?? defaults.tempo,
    meter: options.meter ?? defaults.meter,
    key: key ?? { tonic: defaults.tonic, mode: defaults.mode },
    point,
    drums: options.drums === true,
  };
}

/**
 * THE MODEL STEP, run once per melody note: the symbolic models on the emotion and the
 * decoder's context (CONTEXT_SIZE values, tonic-relative: `Decoder.context`). The results are
 * tonic-relative too; the decoder turns them to the key.
 */
export function modelStep(
  pipeline: EmotionPipeline,
  emotion: Float32Array,
  context: Float32Array,
): EmotionOutputs {
  return pipeline.stepFromEmotion(emotion, context);
}

/** The latest step's outputs, kept by the caller between note steps. */
interface Latest {
  melody: Float32Array;
  harmony: Float32Array;
  groove: Float32Array;
  dynamics: Float32Array;
}

function latestBuffers(): Latest {
  return {
    melody: new Float32Array(MELODY_SIZE),
    harmony: new Float32Array(HARMONY_SIZE),
    groove: new Float32Array(GROOVE_SIZE),
    dynamics: new Float32Array(DYNAMICS_SIZE),
  };
}

function keep(latest: Latest, outputs: EmotionOutputs): void {
  latest.melody.set(outputs.melody);
  latest.harmony.set(outputs.harmony);
  latest.groove.set(outputs.groove);
  latest.dynamics.set(outputs.dynamics);
}

/** "joyful", or "point near calm" for a point of the plane. */
function emotionLabel(emotion: GenerateOptions["emotion"], point: EmotionPoint): string {
  if (typeof emotion === "string") return emotion;
  return `point near ${nearestEmotion(point)}`;
}

/** Where each step's emotion vector comes from. */
type EmotionSource = (step: number, seconds: number) => Float32Array;

/** Generates a piece for an emotion. */
export async function generate(options: GenerateOptions = {}): Promise<GenerateResult> {
  const point = emotionPoint(options.emotion ?? "joyful");
  const settings = settingsOf(options, point);
  const vector = writeEmotionVector(point, new Float32Array(EMOTION_VECTOR_SIZE));
  return await withPipeline(
    options,
    (pipeline) =>
      compose(pipeline, options, settings, () => vector, emotionLabel(options.emotion, point)),
  );
}

export interface RespondOptions extends Omit<GenerateOptions, "emotion" | "bars"> {
  /** Bars to generate (default: as many as the audio lasts at the tempo, at most 512). */
  bars?: number;
  /** Smoothing of the recognised emotion, seconds (default 1). */
  smoothing?: number;
}

export interface RespondResult extends GenerateResult {
  /** The audio's length in seconds. */
  audioSeconds: number;
}

/**
 * Music that follows the emotion the EmotionRecognizer hears in a WAV file: the audio runs
 * through the project's feature extractor block by block (128 samples, as `cadenza live`
 * feeds it) and the pipeline; the recognised 64-value emotion, smoothed over `smoothing`
 * seconds, conditions each grid step of the piece at the same time in the audio. Tempo, meter
 * and key come from the mean recognised emotion unless given.
 */
export async function respond(
  wavPath: string,
  options: RespondOptions = {},
): Promise<RespondResult> {
  return await respondToAudio(await readWav(wavPath), wavPath, options);
}

/** `respond` on audio already read (`name` labels it in messages and the sequence's meta). */
export async function respondToAudio(
  wav: WavAudio,
  name: string,
  options: RespondOptions = {},
): Promise<RespondResult> {
  if (wav.frames === 0) {
    throw new CadenzaError("E_FORMAT", `${name}: WAV: the "data" chunk holds no frames`);
  }
  const smoothing = options.smoothing ?? 1;
  check(
    typeof smoothing === "number" && smoothing > 0 && smoothing <= 60,
    "smoothing",
    smoothing,
    "seconds in (0, 60]",
  );
  if (options.bars !== undefined) settingsOf(options, { valence: 0, arousal: 0 });
  return await withPipeline(options, (pipeline) => {
    const heard = hear(pipeline, wav, smoothing);
    const blocks = heard.length / EMOTION_VECTOR_SIZE;
    const mean = new Float32Array(EMOTION_VECTOR_SIZE);
    for (let b = 0; b < blocks; b++) {
      for (let i = 0; i < EMOTION_VECTOR_SIZE; i++) {
        mean[i] += heard[b * EMOTION_VECTOR_SIZE + i] / blocks;
      }
    }
    const decoded = emotionFromVector(mean);
    const point = { valence: decoded.valence, arousal: decoded.arousal };
    const audioSeconds = wav.frames / wav.sampleRateHz;
    const provisional = settingsOf({ ...options, bars: 1 }, point);
    const barSeconds = ((60 / provisional.tempo) * 4 * provisional.meter[0]) /
      provisional.meter[1];
    const bars = options.bars ??
      Math.min(MAX_BARS, Math.max(1, Math.ceil(audioSeconds / barSeconds)));
    const settings = settingsOf({ ...options, bars }, point);
    const blockSeconds = HEAR_BLOCK / wav.sampleRateHz;
    const source: EmotionSource = (_step, seconds) => {
      const b = Math.min(blocks - 1, Math.floor(seconds / blockSeconds));
      return heard.subarray(b * EMOTION_VECTOR_SIZE, (b + 1) * EMOTION_VECTOR_SIZE);
    };
    const result = compose(pipeline, options, settings, source, decoded.name);
    result.sequence.meta!.source = name;
    return { ...result, audioSeconds };
  });
}

/** Samples per block the recognizer hears (as `cadenza live` feeds the engine). */
const HEAR_BLOCK = 128;

/**
 * The recognised emotion per block: the audio through the feature extractor and the
 * EmotionRecognizer alone (the symbolic models run per note, in compose), block by block,
 * smoothed by a one-pole filter of time constant `smoothing` seconds. The pipeline is reset
 * afterwards, so generation starts from a clean state.
 */
function hear(pipeline: EmotionPipeline, wav: WavAudio, smoothing: number): Float32Array {
  const blocks = Math.ceil(wav.frames / HEAR_BLOCK);
  const heard = new Float32Array(blocks * EMOTION_VECTOR_SIZE);
  const extractor = new FeatureExtractor(wav.sampleRateHz);
  const features = new Float32Array(FEATURE_BINS);
  const alpha = 1 - Math.exp(-HEAR_BLOCK / wav.sampleRateHz / smoothing);
  const state = new Float32Array(EMOTION_VECTOR_SIZE);
  const recognizer = pipeline.models.EmotionRecognizer;
  for (let b = 0; b < blocks; b++) {
    const start = b * HEAR_BLOCK;
    extractor.push(wav.samples, start, Math.min(HEAR_BLOCK, wav.frames - start));
    extractor.compute(features);
    const emotion = recognizer.forward(features);
    for (let i = 0; i < EMOTION_VECTOR_SIZE; i++) {
      state[i] = b === 0 ? emotion[i] : state[i] + alpha * (emotion[i] - state[i]);
    }
    heard.set(state, b * EMOTION_VECTOR_SIZE);
  }
  pipeline.reset();
  return heard;
}

async function withPipeline<T>(
  options: GenerateOptions,
  body: (pipeline: EmotionPipeline) => T,
): Promise<T> {
  if (options.pipeline !== undefined) {
    options.pipeline.reset();
    return body(options.pipeline);
  }
  const pipeline = await EmotionPipeline.load(options.models ?? defaultModelsDir(), {
    precision: options.precision,
    library: options.library,
  });
  try {
    return body(pipeline);
  } finally {
    pipeline.dispose();
  }
}

/** A primer's melody as the piece's opening: its notes, bars and pitches, highest per onset. */
export interface PrimerPart {
  notes: Note[];
  bars: number;
  pitches: number[];
}

/** Notes of a primer the models see: the transformer's context length. */
const PRIMER_NOTES = 32;

/**
 * The primer's melody (its lowest-numbered non-drum part, the last 32 notes), re-timed by
 * quarter notes to the piece's tempo and starting in its first bar, so that the piece opens
 * with it and the generated bars follow.
 */
export function primerPart(
  primer: NoteSequence,
  tempo: number,
  meter: readonly [number, number],
): PrimerPart {
  const melodic = primer.notes.filter((note) => !note.isDrum);
  if (melodic.length === 0) {
    throw new CadenzaError("E_ARGUMENT", "primer: the sequence holds no melodic (non-drum) notes");
  }
  const part = Math.min(...melodic.map((note) => note.instrument));
  const notes = melodic.filter((note) => note.instrument === part)
    .sort((a, b) => a.startTime - b.startTime || b.pitch - a.pitch)
    .slice(-PRIMER_NOTES);
  const barQuarters = (4 * meter[0]) / meter[1];
  const quarters = (seconds: number) => secondsToQuarters(primer, seconds);
  const offset = Math.floor(quarters(notes[0].startTime) / barQuarters + 1e-9) * barQuarters;
  const secondsPerQuarter = 60 / tempo;
  let endQuarters = 0;
  const out: Note[] = notes.map((note) => {
    const start = quarters(note.startTime) - offset;
    const end = Math.max(start + 1 / STEPS_PER_QUARTER, quarters(note.endTime) - offset);
    endQuarters = Math.max(endQuarters, end);
    const startStep = Math.round(start * STEPS_PER_QUARTER);
    return {
      pitch: note.pitch,
      velocity: note.velocity,
      startTime: start * secondsPerQuarter,
      endTime: end * secondsPerQuarter,
      instrument: MELODY_TRACK,
      program: PARTS[MELODY_TRACK].program,
      isDrum: false,
      quantizedStartStep: startStep,
      quantizedEndStep: Math.max(startStep + 1, Math.round(end * STEPS_PER_QUARTER)),
    };
  });
  const pitches: number[] = [];
  for (let i = 0; i < notes.length; i++) {
    if (i > 0 && notes[i].startTime === notes[i - 1].startTime) continue;
    pitches.push(notes[i].pitch);
  }
  return { notes: out, bars: Math.max(1, Math.ceil(endQuarters / barQuarters - 1e-9)), pitches };
}

/** The step loop: models -> decoder -> events -> notes, chords, bass and drums. */
function compose(
  pipeline: EmotionPipeline,
  options: GenerateOptions,
  settings: Settings,
  emotionAt: EmotionSource,
  name: string,
): GenerateResult {
  const decoder = new Decoder({
    seed: settings.seed,
    tempo: settings.tempo,
    meter: settings.meter,
    key: settings.key,
    temperature: options.temperature,
    topK: options.topK,
    topP: options.topP,
    constrain: options.constrain,
    low: options.range?.[0],
    high: options.range?.[1],
    chordRate: options.chordRate,
    voicing: options.voicing,
  });
  const trained = pipelineTrained(pipeline);
  const stepSec = decoder.stepSeconds;
  const perBar = decoder.stepsPerBar;
  const totalSteps = settings.bars * perBar;
  const totalTime = totalSteps * stepSec;
  const primer = options.primer === undefined
    ? null
    : primerPart(options.primer, settings.tempo, settings.meter);
  const context = new Float32Array(CONTEXT_SIZE);
  const latest = latestBuffers();
  let modelSteps = 0;
  if (primer !== null) {
    // The primer's notes go through the models first, filling the melody's KV cache: the step
    // of note i sees note i - 1 (none for the first), as the step of each generated note does.
    for (let i = 0; i < primer.pitches.length; i++) {
      if (i > 0) decoder.prime(primer.pitches[i - 1]);
      keep(latest, modelStep(pipeline, emotionAt(0, 0), decoder.context(context)));
      modelSteps++;
    }
    decoder.prime(primer.pitches[primer.pitches.length - 1]);
  } else {
    // One step with no music yet gives the first bar its groove and harmony; the reset clears
    // it from the melody's KV cache, so that the first note's step is the cache's first.
    keep(latest, modelStep(pipeline, emotionAt(0, 0), decoder.context(context)));
    modelSteps++;
    pipeline.reset();
  }
  const notes: Note[] = [];
  const open = new Map<string, Note>();
  const chords: ChordEvent[] = [];
  const spans: (BassSpan & { dynamics: Float32Array })[] = [];
  const barGrooves: Float32Array[] = [];
  const barDynamics: Float32Array[] = [];
  const emotionPath: EmotionPathPoint[] = [];
  const collect = (count: number) => {
    const e = decoder.events;
    for (let i = 0; i < count; i++) {
      const track = e.track[i];
      const pitch = e.pitch[i];
      const time = e.time[i];
      if (e.kind[i] === CHORD) {
        const slot = e.step[i] % perBar;
        chords.push({
          time,
          bar: Math.floor(e.step[i] / perBar),
          beat: 1 + Math.floor(slot / decoder.stepsPerBeat),
          symbol: chordSymbol(pitch, settings.key),
          class: pitch,
        });
        const bar = barGrooves[barGrooves.length - 1];
        spans.push({
          class: pitch,
          step: e.step[i],
          steps: e.velocity[i],
          stepsPerBeat: decoder.stepsPerBeat,
          pattern: bassPattern(bar[GROOVE.BASS_PATTERN]),
          dynamics: barDynamics[barDynamics.length - 1],
        });
        continue;
      }
      const id = `${track}:${pitch}`;
      if (e.kind[i] === NOTE_ON && track === CHORD_TRACK) {
        // The bass of the span stays under every chord note struck in it.
        const span = spans[spans.length - 1];
        if (span !== undefined && !(span.chordLow! <= pitch)) span.chordLow = pitch;
      }
      if (e.kind[i] === NOTE_ON) {
        const note: Note = {
          pitch,
          velocity: e.velocity[i],
          startTime: time,
          endTime: time,
          instrument: PARTS[track].instrument,
          program: PARTS[track].program,
          isDrum: false,
          quantizedStartStep: e.step[i],
          quantizedEndStep: e.step[i] + 1,
        };
        notes.push(note);
        open.set(id, note);
      } else {
        const note = open.get(id);
        if (note === undefined) continue;
        open.delete(id);
        note.endTime = Math.max(time, note.startTime + 1e-3);
        note.quantizedEndStep = Math.max(
          note.quantizedStartStep! + 1,
          Math.round(note.endTime / stepSec),
        );
      }
    }
  };
  for (let step = 0; step < totalSteps; step++) {
    const emotion = emotionAt(step, step * stepSec);
    if (step % perBar === 0) {
      // What the decoder's beginStep reads for this bar: the latest step's groove.
      barGrooves.push(latest.groove.slice());
      barDynamics.push(latest.dynamics.slice());
      const heard = emotionFromVector(emotion);
      emotionPath.push({
        time: step * stepSec,
        bar: step / perBar,
        valence: round3(heard.valence),
        arousal: round3(heard.arousal),
        name: heard.name,
      });
    }
    if (decoder.beginStep(latest)) {
      keep(latest, modelStep(pipeline, emotion, decoder.context(context)));
      modelSteps++;
    }
    collect(decoder.step(latest));
  }
  collect(decoder.finish(totalTime));
  notes.push(...bassNotes(spans, stepSec));
  if (settings.drums) notes.push(...drumNotes(barGrooves, barDynamics, settings, decoder));
  // The piece ends with its last bar: swing, push and micro-timing can carry a note of the last
  // beat past it (a triumphant drum hit did), so every part is cut there, as a bar line would.
  let kept = 0;
  for (const note of notes) {
    if (note.startTime >= totalTime) continue;
    if (note.endTime > totalTime) note.endTime = totalTime;
    notes[kept++] = note;
  }
  notes.length = kept;
  let endTime = totalTime;
  if (primer !== null) {
    // The generated bars follow the primer's.
    const shiftSec = primer.bars * perBar * stepSec;
    const shiftSteps = primer.bars * perBar;
    for (const note of notes) {
      note.startTime += shiftSec;
      note.endTime += shiftSec;
      note.quantizedStartStep! += shiftSteps;
      note.quantizedEndStep! += shiftSteps;
    }
    for (const chord of chords) {
      chord.time += shiftSec;
      chord.bar += primer.bars;
    }
    for (const point of emotionPath) {
      point.time += shiftSec;
      point.bar += primer.bars;
    }
    notes.push(...primer.notes);
    endTime += shiftSec;
  }
  notes.sort((a, b) =>
    a.startTime - b.startTime || a.instrument - b.instrument || a.pitch - b.pitch
  );
  const parts = PARTS.filter((part) => settings.drums || !part.isDrum);
  const meta: Record<string, string> = {
    generator: "cadenza generate",
    // The piano roll's title line adds the emotion, key, tempo, meter, length, seed and
    // whether the models were trained (from the fields below).
    title: options.primer === undefined ? "cadenza" : "cadenza (continuing a primer)",
    emotion: name,
    valence: String(settings.point.valence),
    arousal: String(settings.point.arousal),
    seed: String(settings.seed),
    trained: String(trained),
  };
  if (primer !== null) meta.primerBars = String(primer.bars);
  if (!trained) {
    meta.untrained = "true";
    meta.note = UNTRAINED_NOTE;
  }
  const sequence: NoteSequence = {
    notes,
    tempos: [{ time: 0, qpm: settings.tempo }],
    timeSignatures: [{ time: 0, numerator: settings.meter[0], denominator: settings.meter[1] }],
    keySignatures: [{ time: 0, key: settings.key.tonic, mode: settings.key.mode }],
    instrumentInfos: parts.map((part) => ({ ...part })),
    totalTime: endTime,
    stepsPerQuarter: STEPS_PER_QUARTER,
    meta,
  };
  const melodyCount = notes.filter((n) => n.instrument === MELODY_TRACK).length;
  const summary = `${name} (valence ${fmt(settings.point.valence)}, arousal ` +
    `${fmt(settings.point.arousal)}): ${keyName(settings.key)}, ${settings.tempo} bpm, ` +
    `${settings.meter[0]}/${settings.meter[1]}, ${settings.bars} bars` +
    (primer === null ? "" : ` after a ${primer.bars}-bar primer`) + `, ${melodyCount} melody ` +
    `notes, ${chords.length} chords, seed ${settings.seed}` +
    (trained ? "" : ` | ${UNTRAINED_NOTE}`);
  return {
    sequence,
    chords,
    emotionPath,
    seed: settings.seed,
    trained,
    key: settings.key,
    tempo: settings.tempo,
    meter: settings.meter,
    bars: settings.bars + (primer?.bars ?? 0),
    summary,
    modelSteps,
  };
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const fmt = (x: number) => (x >= 0 ? "+" : "") + x.toFixed(2);

function bassPattern(value: number): BassPattern {
  return value < -1 / 3 ? "root" : value <= 1 / 3 ? "root-fifth" : "walking";
}

/** The bass under the chord spans, with the velocity and articulation of each span. */
function bassNotes(
  spans: readonly (BassSpan & { dynamics: Float32Array })[],
  stepSec: number,
): Note[] {
  const line = bassLine(spans);
  const notes: Note[] = [];
  let s = 0;
  for (const event of line) {
    while (s + 1 < spans.length && spans[s + 1].step <= event.step) s++;
    const d = spans[s].dynamics;
    const level = (30 + 90 * d[DYNAMICS.LEVEL]) * (0.55 + 0.45 * d[DYNAMICS.BASS_LEVEL]);
    const articulation = 0.4 + 0.6 * d[DYNAMICS.BASS_ARTICULATION];
    const startTime = event.step * stepSec;
    notes.push({
      pitch: event.pitch,
      velocity: Math.max(1, Math.min(127, Math.round(level))),
      startTime,
      endTime: startTime + event.steps * stepSec * articulation,
      instrument: BASS_TRACK,
      program: PARTS[2].program,
      isDrum: false,
      quantizedStartStep: event.step,
      quantizedEndStep: event.step + Math.max(1, Math.round(event.steps * articulation)),
    });
  }
  return notes;
}

const KICK = 36;
const SNARE = 38;
const HAT = 42;
const OPEN_HAT = 46;
const CRASH = 49;
const TOMS = [50, 47, 45, 43];

/** Drums from each bar's groove (docs/MUSIC.md, groove values 25..31), seeded. */
function drumNotes(
  grooves: readonly Float32Array[],
  dynamics: readonly Float32Array[],
  settings: Settings,
  decoder: Decoder,
): Note[] {
  const rng = new Rng((settings.seed ^ 0x5eed_d2d5) >>> 0);
  const perBar = decoder.stepsPerBar;
  const perBeat = decoder.stepsPerBeat;
  const stepSec = decoder.stepSeconds;
  const notes: Note[] = [];
  for (let bar = 0; bar < grooves.length; bar++) {
    const g = grooves[bar];
    const d = dynamics[bar];
    const level = 40 + 80 * d[DYNAMICS.DRUM_LEVEL];
    const hatLevel = level * (0.4 + 0.6 * d[DYNAMICS.HAT_LEVEL]);
    const swingSec = (Math.max(0, g[GROOVE.SWING]) / 3) * stepSec;
    const hit = (slot: number, pitch: number, velocity: number) => {
      const step = bar * perBar + slot;
      const jitter = (rng.next() * 2 - 1) * 0.01 * Math.max(0, g[GROOVE.TIMING_SPREAD]);
      const startTime = Math.max(0, step * stepSec + (slot % 2 === 1 ? swingSec : 0) + jitter);
      notes.push({
        pitch,
        velocity: Math.max(1, Math.min(127, Math.round(velocity))),
        startTime,
        endTime: startTime + stepSec * 0.9,
        instrument: DRUM_TRACK,
        program: 0,
        isDrum: true,
        quantizedStartStep: step,
        quantizedEndStep: step + 1,
      });
    };
    const beats = perBar / perBeat;
    const fill = bar % 4 === 3 && g[GROOVE.FILL] > 0.2;
    const fillFrom = fill ? perBar - perBeat : perBar;
    if (bar % 4 === 0 && g[GROOVE.CRASH] > -0.2) hit(0, CRASH, level);
    for (let slot = 0; slot < fillFrom; slot++) {
      const onBeat = slot % perBeat === 0;
      const beat = Math.floor(slot / perBeat);
      const propensity = (1 + g[GROOVE.ONSET + (slot % 16)]) / 2;
      if (slot === 0) hit(slot, KICK, level + 10);
      else if (onBeat && beats >= 3 && beat === Math.floor(beats / 2) && g[GROOVE.KICK] > -0.5) {
        hit(slot, KICK, level);
      } else if (g[GROOVE.KICK] > 0.3 && propensity > 0.8 && slot % 2 === 0) {
        hit(slot, KICK, level - 10);
      }
      if (onBeat && beat % 2 === 1 && g[GROOVE.SNARE] > -0.6) hit(slot, SNARE, level);
      else if (g[GROOVE.GHOST] > 0.3 && propensity > 0.75 && !onBeat) {
        hit(slot, SNARE, level * 0.35);
      }
      const hatEvery = g[GROOVE.HAT] > 0.3 ? 1 : 2;
      if (slot % hatEvery === 0) {
        const open = g[GROOVE.OPEN_HAT] > 0.4 && slot === fillFrom - 2;
        hit(slot, open ? OPEN_HAT : HAT, hatLevel * (onBeat ? 1 : 0.75));
      }
    }
    for (let slot = fillFrom, k = 0; slot < perBar; slot++, k++) {
      hit(slot, TOMS[Math.min(TOMS.length - 1, Math.floor((k * TOMS.length) / perBeat))], level);
    }
  }
  return notes;
}
