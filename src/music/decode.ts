/**
 * The decoder: pipeline results -> note events, one grid step (a sixteenth note) at a time.
 * The models run once per melody NOTE, not per grid step: each grid step begins with
 * `beginStep(latest)`, which reads the latest result (the groove at a bar's first step, the
 * harmony at a chord span's first step, the dynamics of chord strikes) and says whether the
 * step sounds a new melody note; only then does the caller run the models, with the context
 * vector `context()` builds, and hand their result to `step`. Its state is explicit and seeded
 * (src/music/rng.ts; no Math.random), and beginStep, context and step allocate nothing, so the
 * same object decodes offline (`generate`) and at audio block rate (examples/realtime.ts).
 *
 * The models are tonic-relative (the piece's tonic is C): the decoder rotates their melody and
 * harmony distributions up by the key's tonic before it samples, and builds the context
 * rotated down (docs/MUSIC.md, "Tonic-relative music"). What it reads from each result:
 * - melody (128 next-note probabilities): at an onset, the probabilities of the notes in the
 *   range [low, high] (and, with `constrain`, in the key or the chord in force) are normalised
 *   to a distribution, sharpened or flattened by the temperature (p^(1/T); T = 0 takes the
 *   argmax), cut to the top k and to the smallest set holding probability top-p, and sampled.
 * - harmony (64-way softmax): at each chord span's first step the chord is drawn from the
 *   latest result at the same temperature (with `constrain: "key"`, from the chords whose
 *   notes are all in the key). Each strike of it (the span's first step, and each beat when
 *   comping) is voiced by `VoiceLeader` under the melody note of its moment: `beginStep`
 *   draws the chord and the strike's velocities, `step` samples the step's melody note first
 *   and then sounds the chord under it (under the last note in a rest), so that the tune is
 *   on top and the melody is exactly what it would be with any voicing.
 * - groove (32 values in [-1, 1]), read at each bar's first step: the bar's onset grid, rests,
 *   swing, micro-timing, chord rhythm and comping (`GROOVE` below).
 * - dynamics (16 values in [0, 1]), read at each onset: velocity and articulation
 *   (`DYNAMICS` below).
 *
 * Events land in the decoder's own typed arrays (`events`), overwritten by the next step:
 *
 * ```ts
 * const decoder = new Decoder({ seed: 7, tempo: 120, meter: [4, 4], key: { tonic: 7, mode: "major" } });
 * const context = new Float32Array(CONTEXT_SIZE);
 * let latest = pipeline.stepFromEmotion(emotion);          // before the first bar
 * for (let s = 0; s < steps; s++) {
 *   if (decoder.beginStep(latest)) latest = pipeline.stepFromEmotion(emotion, decoder.context(context));
 *   const count = decoder.step(latest);
 *   for (let i = 0; i < count; i++) decoder.events.kind[i];  // NOTE_ON, NOTE_OFF or CHORD
 * }
 * ```
 */

import { CadenzaError } from "../errors.ts";
import {
  CHORD_CLASSES,
  chordInKey,
  chordQuality,
  chordRoot,
  type KeyInfo,
  QUALITY_INTERVALS,
  scaleMask,
  transposeChord,
  VoiceLeader,
} from "./chords.ts";
import { INV_RNG_RANGE, Rng } from "./rng.ts";

/** What each of the GroovePredictor's 32 values means to the decoder (index -> meaning). */
export const GROOVE = Object.freeze({
  /** 0..15: onset propensity of the bar's sixteenth-note slot s (slot s reads s mod 16). */
  ONSET: 0,
  /** Density: scales every onset propensity by 0.5 .. 1.5. */
  DENSITY: 16,
  /** Swing: above 0, the off-beat sixteenths are delayed by up to a third of a sixteenth. */
  SWING: 17,
  /** Micro-timing spread: above 0, each onset moves by up to +-25 ms (seeded). */
  TIMING_SPREAD: 18,
  /** Push or lay back: the whole bar's onsets shift by -15 .. +15 ms. */
  TIMING_SHIFT: 19,
  /** Rest: each onset is a rest with probability 0 .. 0.35. */
  REST: 20,
  /** Hold: each onset after the first ties into the note before with probability 0 .. 0.35. */
  HOLD: 21,
  /** Chord rhythm: above 0, two chords a bar (one per half bar) instead of one. */
  CHORD_RATE: 22,
  /** Bass pattern: below -1/3 roots, to 1/3 root and fifth, above a walking line. */
  BASS_PATTERN: 23,
  /** Comping: above 1/3 the chord is struck again on every beat. */
  COMPING: 24,
  /** Drums (with --drums): kick density. */
  KICK: 25,
  /** Drums: backbeat snare (on unless below -0.6). */
  SNARE: 26,
  /** Drums: hi-hat in sixteenths above 0.3, else eighths. */
  HAT: 27,
  /** Drums: open hi-hat on the bar's last off-beat above 0.4. */
  OPEN_HAT: 28,
  /** Drums: crash on each four-bar phrase's first beat above -0.2. */
  CRASH: 29,
  /** Drums: a tom fill in each phrase's fourth bar above 0.2. */
  FILL: 30,
  /** Drums: ghost snare notes where the onset propensity is high, above 0.3. */
  GHOST: 31,
});

/** What each of the DynamicsEngine's 16 values means to the decoder (index -> meaning). */
export const DYNAMICS = Object.freeze({
  /** Base velocity: 30 .. 120. */
  LEVEL: 0,
  /** Beat accent: up to +25 on beat starts. */
  ACCENT: 1,
  /** Downbeat accent: up to +12 more on each bar's first slot. */
  DOWNBEAT: 2,
  /** In-bar dynamic: 0.5 flat, above crescendo, below diminuendo (up to 20 over the bar). */
  BAR_SHAPE: 3,
  /** Phrase arc: 0.5 flat, above swells (+-15) over each four-bar phrase. */
  PHRASE_ARC: 4,
  /** Humanise: velocity jitter up to +-12 (seeded). */
  JITTER: 5,
  /** Melody articulation: sounding fraction of each note's slot, 0.25 (staccato) .. 1 (legato). */
  ARTICULATION: 6,
  /** Accented notes (beat starts) sound up to 0.25 longer (capped at legato). */
  ACCENT_LENGTH: 7,
  /** Chord velocity relative to the melody's: 0.45 .. 0.9. */
  CHORD_LEVEL: 8,
  /** Bass velocity relative to the melody's: 0.55 .. 1. */
  BASS_LEVEL: 9,
  /** Chord articulation: 0.5 .. 1 of each strike's length. */
  CHORD_ARTICULATION: 10,
  /** Bass articulation: 0.4 .. 1 of each note's length. */
  BASS_ARTICULATION: 11,
  /** Chord roll: each chord note starts up to 7.5 ms after the one below it. */
  ROLL: 12,
  /** Drum level: velocity 40 .. 120. */
  DRUM_LEVEL: 13,
  /** Register: 0.5 flat, above higher notes louder, below softer (+-0.5 per semitone from C5). */
  REGISTER: 14,
  /** Hi-hat level relative to the kit: 0.4 .. 1. */
  HAT_LEVEL: 15,
});

/**
 * The context vector the models read (src/pipeline/emotion.ts CONTEXT, written out here so
 * that the decoder needs nothing of the pipeline): the previous note one-hot at 0..127, the
 * chord in force one-hot at 128..191, the span's melody pitch classes at 192..203.
 */
export const CONTEXT_PREVIOUS_NOTE = 0;
export const CONTEXT_CHORD = 128;
export const CONTEXT_SPAN_PITCH_CLASSES = 192;
export const CONTEXT_SIZE = 204;

export const MELODY_SIZE = 128;
export const HARMONY_SIZE = 64;
export const GROOVE_SIZE = 32;
export const DYNAMICS_SIZE = 16;
/** Grid steps per quarter note: the grid is in sixteenth notes. */
export const STEPS_PER_QUARTER = 4;

export type Constraint = "none" | "key" | "chord";
export type ChordRate = "auto" | "bar" | "half";
/**
 * How chords are voiced: "under-melody" (each strike under the melody note of its moment,
 * `VoiceLeader.voice(cls, melody)`) or "register" (in MIDI 50..74 whatever the melody does).
 */
export type Voicing = "under-melody" | "register";

export interface DecoderOptions {
  /** Integer 0 .. 2^32 - 1. */
  seed: number;
  /** Quarter notes per minute, 20 .. 400. */
  tempo: number;
  /** [numerator 1..16, denominator 2|4|8|16]. */
  meter: [number, number];
  key: KeyInfo;
  /** >= 0 (default 1; 0 takes the most probable note and chord). */
  temperature?: number;
  /** Keep only the k most probable notes, 1..128 (default 0: all). */
  topK?: number;
  /** Keep the smallest set of notes holding this probability, (0, 1] (default 1: all). */
  topP?: number;
  /** Default "none": what the models say. */
  constrain?: Constraint;
  /** Melody range, MIDI notes (default 60 .. 84). */
  low?: number;
  high?: number;
  /** Chords per bar: "auto" (from groove), "bar" or "half". */
  chordRate?: ChordRate;
  /** Default "under-melody": the tune on top. The melody is the same either way. */
  voicing?: Voicing;
}

/** Event kinds in `Decoder.events.kind`. */
export const NOTE_OFF = 0;
export const NOTE_ON = 1;
/** A new chord: `pitch` holds its class, `velocity` its span in steps. */
export const CHORD = 2;

export const MELODY_TRACK = 0;
export const CHORD_TRACK = 1;

/** The most events one step can emit. */
const EVENT_CAPACITY = 32;

/** One step's events, in typed arrays the decoder owns (overwritten by the next step). */
export interface DecoderEvents {
  count: number;
  kind: Uint8Array;
  track: Uint8Array;
  pitch: Uint8Array;
  velocity: Uint8Array;
  /** Seconds from the start. */
  time: Float64Array;
  /** The grid step the event belongs to. */
  step: Int32Array;
}

// Indices into the decoder's Float64Array of doubles (kept in a typed array: a double stored
// in an object field or passed between functions may be boxed by V8).
const F_STEP_SEC = 0;
const F_SWING_SEC = 1;
const F_SPREAD_SEC = 2;
const F_SHIFT_SEC = 3;
const F_MEL_OFF = 4;
const F_TEMP = 5;
const F_TOP_P = 6;
const F_REST_P = 7;
const F_HOLD_P = 8;
const F_STRIKE_END = 9;
/** The time of the event #push writes next (passed here: a double argument may be boxed). */
const F_EVENT_TIME = 10;
/** The onset of the current step, the end of the step, and the velocity level of a part. */
const F_ONSET = 11;
const F_STEP_END = 12;
const F_LEVEL = 13;
/** Steps of melody heard so far in the current chord span (the histogram's total). */
const F_SPAN_TOTAL = 14;
/** A velocity before its register term and level (#velocityBase writes it). */
const F_VELOCITY = 15;
/** The pending strike's register slope, level and roll (seconds per note). */
const F_STRIKE_REGISTER = 16;
const F_STRIKE_LEVEL = 17;
const F_STRIKE_ROLL = 18;
const F_COUNT = 19;

export interface ResolvedDecoderOptions {
  seed: number;
  tempo: number;
  meter: [number, number];
  key: KeyInfo;
  temperature: number;
  topK: number;
  topP: number;
  constrain: Constraint;
  low: number;
  high: number;
  chordRate: ChordRate;
  voicing: Voicing;
}

function fail(field: string, value: unknown, allowed: string): never {
  throw new CadenzaError("E_ARGUMENT", `${field} must be ${allowed}, got ${String(value)}`);
}

const isInt = (x: unknown): x is number => typeof x === "number" && Number.isInteger(x);

/** Checks the options and fills in the defaults; throws E_ARGUMENT naming the field. */
export function resolveDecoderOptions(options: DecoderOptions): ResolvedDecoderOptions {
  const o = options;
  if (!isInt(o.seed) || o.seed < 0 || o.seed > 0xffff_ffff) {
    fail("seed", o.seed, "an integer 0..4294967295");
  }
  if (typeof o.tempo !== "number" || !(o.tempo >= 20 && o.tempo <= 400)) {
    fail("tempo", o.tempo, "a number of quarter notes per minute in 20..400");
  }
  const [num, den] = Array.isArray(o.meter) ? o.meter : [NaN, NaN];
  if (!isInt(num) || num < 1 || num > 16 || ![2, 4, 8, 16].includes(den)) {
    fail("meter", o.meter, "[numerator 1..16, denominator 2, 4, 8 or 16]");
  }
  if (!isInt(o.key?.tonic) || o.key.tonic < 0 || o.key.tonic > 11) {
    fail("key.tonic", o.key?.tonic, "a pitch class 0..11");
  }
  if (o.key.mode !== "major" && o.key.mode !== "minor") {
    fail("key.mode", o.key.mode, "major or minor");
  }
  const temperature = o.temperature ?? 1;
  if (typeof temperature !== "number" || !(temperature >= 0 && temperature <= 100)) {
    fail("temperature", temperature, "a number in 0..100");
  }
  const topK = o.topK ?? 0;
  if (!isInt(topK) || topK < 0 || topK > 128) fail("topK", topK, "an integer 0..128 (0: off)");
  const topP = o.topP ?? 1;
  if (typeof topP !== "number" || !(topP > 0 && topP <= 1)) {
    fail("topP", topP, "a number in (0, 1]");
  }
  const constrain = o.constrain ?? "none";
  if (!["none", "key", "chord"].includes(constrain)) {
    fail("constrain", constrain, "none, key or chord");
  }
  const low = o.low ?? 60;
  const high = o.high ?? 84;
  if (!isInt(low) || low < 0 || low > 127) fail("low", low, "a MIDI note 0..127");
  if (!isInt(high) || high < 0 || high > 127) fail("high", high, "a MIDI note 0..127");
  if (high < low) fail("high", high, `at least low (${low})`);
  const key = { tonic: o.key.tonic, mode: o.key.mode };
  if (constrain !== "none") {
    const mask = scaleMask(key);
    let inKey = 0;
    for (let p = low; p <= high; p++) inKey += mask[p % 12];
    if (inKey === 0 || (constrain === "chord" && high - low < 11)) {
      fail(
        "the range",
        `${low}..${high}`,
        constrain === "chord"
          ? "at least an octave wide to hold every chord's notes with --constrain chord"
          : "wide enough to hold a note of the key",
      );
    }
  }
  const chordRate = o.chordRate ?? "auto";
  if (!["auto", "bar", "half"].includes(chordRate)) {
    fail("chordRate", chordRate, "auto, bar or half");
  }
  const voicing = o.voicing ?? "under-melody";
  if (!["under-melody", "register"].includes(voicing)) {
    fail("voicing", voicing, "under-melody or register");
  }
  return {
    seed: o.seed,
    tempo: o.tempo,
    meter: [num, den],
    key,
    temperature,
    topK,
    topP,
    constrain,
    low,
    high,
    chordRate,
    voicing,
  };
}

/** Grid steps (sixteenths) in a bar of the meter: 16 for 4/4, 12 for 3/4 and 6/8. */
export function stepsPerBar(meter: readonly [number, number]): number {
  return (meter[0] * 16) / meter[1];
}

/** Grid steps in one beat (the meter's denominator). */
export function stepsPerBeat(meter: readonly [number, number]): number {
  return 16 / meter[1];
}

export class Decoder {
  readonly options: ResolvedDecoderOptions;
  readonly events: DecoderEvents;
  readonly stepsPerBar: number;
  readonly stepsPerBeat: number;
  /** The next step to decode (0-based, over the whole piece). */
  stepIndex = 0;
  /** The chord in force (class), -1 before the first. */
  chordClass = -1;
  /** Steps of the current chord span. */
  chordSpanSteps = 0;
  /** The last melody note sampled (-1 before the first): the melody model's context. */
  previousPitch = -1;
  /** The melody note sounding now, -1 for none. */
  #melodyPitch = -1;
  readonly #rng: Rng;
  readonly #f = new Float64Array(F_COUNT);
  /** The bar's slots: 0 continue, 1 onset, 2 rest. */
  readonly #slotKind: Uint8Array;
  /** Each slot's onset shift in seconds (swing and micro-timing). */
  readonly #slotShift: Float64Array;
  readonly #weights = new Float64Array(MELODY_SIZE);
  readonly #order = new Int32Array(MELODY_SIZE);
  readonly #chordWeights = new Float64Array(HARMONY_SIZE);
  readonly #keyMask: Uint8Array;
  readonly #chordMask = new Uint8Array(12);
  readonly #voices = new VoiceLeader();
  /** Chord notes sounding now (pitches) and how many. */
  readonly #chordNotes = new Int32Array(4);
  #chordNoteCount = 0;
  /**
   * A chord strike begun by beginStep and sounded by step, once the melody note it sounds
   * under is known: its notes' velocities before the register term (seeded in beginStep, so
   * the random draws keep their order) and their count.
   */
  readonly #strikeVelocity = new Float64Array(4);
  #strikeCount = 0;
  /** options.voicing is "under-melody". */
  readonly #underMelody: boolean;
  #halfBarChords = false;
  #comping = false;
  #spanStart = 0;
  /** beginStep ran for the step at stepIndex, and step has not yet. */
  #begun = false;
  /** The current span's melody: steps per tonic-relative pitch class. */
  readonly #spanPitchClasses = new Float64Array(12);

  constructor(options: DecoderOptions) {
    const o = resolveDecoderOptions(options);
    this.options = o;
    this.#rng = new Rng(o.seed);
    this.stepsPerBar = stepsPerBar(o.meter);
    this.stepsPerBeat = stepsPerBeat(o.meter);
    this.#slotKind = new Uint8Array(this.stepsPerBar);
    this.#slotShift = new Float64Array(this.stepsPerBar);
    this.#keyMask = scaleMask(o.key);
    this.#underMelody = o.voicing === "under-melody";
    this.#f[F_STEP_SEC] = 60 / o.tempo / STEPS_PER_QUARTER;
    this.#f[F_TEMP] = o.temperature;
    this.#f[F_TOP_P] = o.topP;
    this.#f[F_MEL_OFF] = -1;
    this.events = {
      count: 0,
      kind: new Uint8Array(EVENT_CAPACITY),
      track: new Uint8Array(EVENT_CAPACITY),
      pitch: new Uint8Array(EVENT_CAPACITY),
      velocity: new Uint8Array(EVENT_CAPACITY),
      time: new Float64Array(EVENT_CAPACITY),
      step: new Int32Array(EVENT_CAPACITY),
    };
  }

  /** Seconds per grid step (a sixteenth note). */
  get stepSeconds(): number {
    return this.#f[F_STEP_SEC];
  }

  /** The slot (0-based step within the bar) the next step decodes. */
  get slot(): number {
    return this.stepIndex % this.stepsPerBar;
  }

  /** Starts a melody from a primer: its last note becomes the previous note. */
  prime(lastPitch: number): void {
    if (!isInt(lastPitch) || lastPitch < 0 || lastPitch > 127) {
      fail("primer pitch", lastPitch, "a MIDI note 0..127");
    }
    this.previousPitch = lastPitch;
  }

  /**
   * The context vector for the next model step (CONTEXT_SIZE values, tonic-relative): the
   * previous melody note one-hot on its MIDI number less the tonic (clamped to 0..127), the
   * chord in force one-hot on its class with the root less the tonic, and the current chord
   * span's melody so far as a pitch-class histogram (less the tonic), weighted by each note's
   * steps and summing to 1; each part all zero when there is none. Writes `into` and returns
   * it; allocates nothing.
   */
  context(into: Float32Array): Float32Array {
    if (!(into instanceof Float32Array) || into.length !== CONTEXT_SIZE) {
      fail("context", into?.length, `a Float32Array of ${CONTEXT_SIZE}`);
    }
    into.fill(0);
    const tonic = this.options.key.tonic;
    if (this.previousPitch >= 0) {
      const p = this.previousPitch - tonic;
      into[CONTEXT_PREVIOUS_NOTE + (p < 0 ? 0 : p)] = 1;
    }
    if (this.chordClass >= 0) into[CONTEXT_CHORD + transposeChord(this.chordClass, -tonic)] = 1;
    const total = this.#f[F_SPAN_TOTAL];
    if (total > 0) {
      for (let k = 0; k < 12; k++) {
        into[CONTEXT_SPAN_PITCH_CLASSES + k] = this.#spanPitchClasses[k] / total;
      }
    }
    return into;
  }

  /**
   * Begins the grid step at `stepIndex` from the latest pipeline result (`latest`: its groove
   * at a bar's first step, its harmony at a chord span's first step, its dynamics for chord
   * strikes) and emits its chord (CHORD) and note-off events (a chord strike's notes come
   * from `step`, under the step's melody note); returns whether the step sounds a new
   * melody note. If it does, the caller runs the models with `context()` and passes their
   * result to `step`; otherwise `step(latest)`. Calling it twice for one step changes nothing.
   * Allocates nothing.
   */
  beginStep(latest: {
    harmony: Float32Array;
    groove: Float32Array;
    dynamics: Float32Array;
  }): boolean {
    const slot = this.stepIndex % this.stepsPerBar;
    if (this.#begun) return this.#slotKind[slot] === 1;
    this.#begun = true;
    const events = this.events;
    events.count = 0;
    if (slot === 0) this.#beginBar(latest.groove);
    const f = this.#f;
    const stepStart = this.stepIndex * f[F_STEP_SEC];
    f[F_STEP_END] = stepStart + f[F_STEP_SEC];
    f[F_ONSET] = stepStart + this.#slotShift[slot];
    if (f[F_ONSET] < 0) f[F_ONSET] = 0;
    // Chords first: the melody can follow the chord in force.
    const spanSteps = this.#halfBarChords ? this.stepsPerBar / 2 : this.stepsPerBar;
    if (slot === 0 || (this.#halfBarChords && slot === spanSteps)) {
      this.#spanStart = this.stepIndex;
      this.chordSpanSteps = spanSteps;
      this.#newChord(latest.harmony);
      this.#strike(latest.dynamics, slot);
    } else if (this.#comping && slot % this.stepsPerBeat === 0) {
      this.#strike(latest.dynamics, slot);
    }
    this.#flushChordOff(false);
    const kind = this.#slotKind[slot];
    if (kind !== 0 && this.#melodyPitch >= 0 && f[F_MEL_OFF] > f[F_ONSET]) {
      // The note before ends no later than this slot starts (no overlap of the one voice).
      f[F_MEL_OFF] = f[F_ONSET];
    }
    this.#flushMelodyOff(false);
    return kind === 1;
  }

  /**
   * Decodes one grid step (beginStep first, with these outputs, if the caller did not call
   * it): a new melody note, when the step has one, from `outputs` (the models' result for this
   * note: views of 128, 64, 32 and 16 values, tonic-relative), then the notes of a chord strike
   * begun by beginStep, voiced under that note. Returns the number of events in
   * `events`, in time order. Allocates nothing.
   */
  step(outputs: {
    melody: Float32Array;
    harmony: Float32Array;
    groove: Float32Array;
    dynamics: Float32Array;
  }): number {
    this.beginStep(outputs);
    this.#begun = false;
    const slot = this.stepIndex % this.stepsPerBar;
    if (this.#slotKind[slot] === 1) this.#melodyOnset(outputs, slot);
    if (this.#strikeCount > 0) {
      this.#sound();
      this.#flushChordOff(false);
    }
    this.#flushMelodyOff(false);
    this.#sortEvents();
    this.stepIndex++;
    return this.events.count;
  }

  /** Orders the step's events by time, stably (insertion sort over at most 32; no allocation). */
  #sortEvents(): void {
    const e = this.events;
    for (let i = 1; i < e.count; i++) {
      let j = i;
      while (j > 0 && e.time[j - 1] > e.time[j]) {
        swap(e.kind, j);
        swap(e.track, j);
        swap(e.pitch, j);
        swap(e.velocity, j);
        swapTime(e.time, j);
        j--;
      }
    }
  }

  /** Ends every sounding note at `time` (seconds); returns the number of events. */
  finish(time: number): number {
    const events = this.events;
    events.count = 0;
    this.#strikeCount = 0;
    if (this.#melodyPitch >= 0) {
      if (this.#f[F_MEL_OFF] > time) this.#f[F_MEL_OFF] = time;
      this.#flushMelodyOff(true);
    }
    if (this.#chordNoteCount > 0) {
      if (this.#f[F_STRIKE_END] > time) this.#f[F_STRIKE_END] = time;
      this.#flushChordOff(true);
    }
    return events.count;
  }

  /** Appends an event at time f[F_EVENT_TIME]. */
  #push(kind: number, track: number, pitch: number, velocity: number): void {
    const e = this.events;
    const i = e.count;
    if (i >= EVENT_CAPACITY) return;
    e.kind[i] = kind;
    e.track[i] = track;
    e.pitch[i] = pitch;
    e.velocity[i] = velocity;
    e.time[i] = this.#f[F_EVENT_TIME];
    e.step[i] = this.stepIndex;
    e.count = i + 1;
  }

  /** The bar's onset grid, rests, holds, swing and micro-timing from the groove values. */
  #beginBar(groove: Float32Array): void {
    const f = this.#f;
    const rng = this.#rng;
    const n = this.stepsPerBar;
    const density = 0.5 + (1 + clampUnit(groove[GROOVE.DENSITY])) / 2;
    f[F_REST_P] = 0.35 * (1 + clampUnit(groove[GROOVE.REST])) / 2;
    f[F_HOLD_P] = 0.35 * (1 + clampUnit(groove[GROOVE.HOLD])) / 2;
    const swing = Math.max(0, clampUnit(groove[GROOVE.SWING]));
    f[F_SWING_SEC] = (swing / 3) * f[F_STEP_SEC];
    f[F_SPREAD_SEC] = 0.025 * Math.max(0, clampUnit(groove[GROOVE.TIMING_SPREAD]));
    f[F_SHIFT_SEC] = 0.015 * clampUnit(groove[GROOVE.TIMING_SHIFT]);
    for (let s = 0; s < n; s++) {
      const propensity = (1 + clampUnit(groove[GROOVE.ONSET + (s % 16)])) / 2;
      const onset = s === 0 || rng.nextU24() * INV_RNG_RANGE < propensity * density;
      let kind = 0;
      if (onset) {
        const u = rng.nextU24() * INV_RNG_RANGE;
        if (u < f[F_REST_P]) kind = 2;
        else if (s > 0 && u < f[F_REST_P] + f[F_HOLD_P]) kind = 0;
        else kind = 1;
      }
      this.#slotKind[s] = kind;
      const jitter = (rng.nextU24() * INV_RNG_RANGE * 2 - 1) * f[F_SPREAD_SEC];
      this.#slotShift[s] = (s % 2 === 1 ? f[F_SWING_SEC] : 0) + f[F_SHIFT_SEC] + jitter;
    }
    const rate = this.options.chordRate;
    this.#halfBarChords = n % 2 === 0 && n >= 4 &&
      (rate === "half" || (rate === "auto" && groove[GROOVE.CHORD_RATE] > 0));
    this.#comping = groove[GROOVE.COMPING] > 1 / 3;
  }

  /**
   * Draws the chord of a new span from the (tonic-relative) harmony distribution (its strike,
   * #strike then #sound, voices it); the span's melody starts empty.
   */
  #newChord(harmony: Float32Array): void {
    const w = this.#chordWeights;
    const f = this.#f;
    const inKey = this.options.constrain === "key";
    const tonic = this.options.key.tonic;
    this.#spanPitchClasses.fill(0);
    f[F_SPAN_TOTAL] = 0;
    let total = 0;
    let best = 0;
    let bestWeight = -1;
    for (let c = 0; c < HARMONY_SIZE; c++) {
      // Class c of the piece is class c less the tonic to the model.
      let p = harmony[transposeChord(c, -tonic)];
      if (!(p > 0)) p = 0;
      if (inKey && !chordInKey(c, this.#keyMask)) {
        w[c] = 0;
        continue;
      }
      if (p > bestWeight) {
        bestWeight = p;
        best = c;
      }
      w[c] = p;
    }
    let chosen = best;
    if (f[F_TEMP] > 0 && bestWeight > 0) {
      const exponent = 1 / f[F_TEMP];
      for (let c = 0; c < HARMONY_SIZE; c++) {
        // Relative to the best keeps p^(1/T) finite for small T.
        const v = w[c] > 0 ? Math.pow(w[c] / bestWeight, exponent) : 0;
        w[c] = v;
        total += v;
      }
      let u = this.#rng.nextU24() * INV_RNG_RANGE * total;
      for (let c = 0; c < HARMONY_SIZE; c++) {
        u -= w[c];
        if (u < 0 && w[c] > 0) {
          chosen = c;
          break;
        }
      }
    }
    if (chosen >= CHORD_CLASSES) chosen = best;
    this.chordClass = chosen;
    const mask = this.#chordMask;
    mask.fill(0);
    const root = chordRoot(chosen);
    const intervals = QUALITY_INTERVALS[chordQuality(chosen)];
    for (let i = 0; i < intervals.length; i++) mask[(root + intervals[i]) % 12] = 1;
    f[F_EVENT_TIME] = f[F_ONSET];
    this.#push(CHORD, CHORD_TRACK, chosen, this.chordSpanSteps);
  }

  /**
   * Begins a strike of the chord in force at this step's onset: the notes before end, and the
   * strike's length, level, roll and velocities are read from `dynamics`; `step` sounds it
   * (#sound) once the melody note of this step is known.
   */
  #strike(dynamics: Float32Array, slot: number): void {
    const f = this.#f;
    if (this.#chordNoteCount > 0) {
      if (f[F_STRIKE_END] > f[F_ONSET]) f[F_STRIKE_END] = f[F_ONSET];
      this.#flushChordOff(true);
    }
    // The strike lasts to the next beat when comping, else to the span's end.
    const spanEnd = this.#spanStart + this.chordSpanSteps;
    const next = this.#comping
      ? Math.min(
        spanEnd,
        this.stepIndex - slot + (Math.floor(slot / this.stepsPerBeat) + 1) *
            this.stepsPerBeat,
      )
      : spanEnd;
    const lengthSec = (next - this.stepIndex) * f[F_STEP_SEC];
    const articulation = 0.5 + 0.5 * clamp01(dynamics[DYNAMICS.CHORD_ARTICULATION]);
    f[F_STRIKE_END] = f[F_ONSET] + lengthSec * articulation;
    f[F_STRIKE_LEVEL] = 0.45 + 0.45 * clamp01(dynamics[DYNAMICS.CHORD_LEVEL]);
    f[F_STRIKE_ROLL] = 0.03 * clamp01(dynamics[DYNAMICS.ROLL]) / 4;
    f[F_STRIKE_REGISTER] = clamp01(dynamics[DYNAMICS.REGISTER]) - 0.5;
    const count = QUALITY_INTERVALS[chordQuality(this.chordClass)].length;
    for (let k = 0; k < count; k++) {
      this.#velocityBase(dynamics, slot);
      this.#strikeVelocity[k] = f[F_VELOCITY];
    }
    this.#strikeCount = count;
  }

  /**
   * Sounds the strike #strike began: the chord voiced under the melody note sounding now (the
   * last one sampled: this step's, or the one held or just ended), the notes rolled upwards.
   */
  #sound(): void {
    const f = this.#f;
    const melody = this.#underMelody ? this.previousPitch : -1;
    const count = this.#voices.voice(this.chordClass, melody);
    for (let k = 0; k < count; k++) {
      const pitch = this.#voices.notes[k];
      f[F_VELOCITY] = this.#strikeVelocity[k] + f[F_STRIKE_REGISTER] * (pitch - 72);
      f[F_LEVEL] = f[F_STRIKE_LEVEL];
      const velocity = this.#scaledVelocity();
      f[F_EVENT_TIME] = f[F_ONSET] + k * f[F_STRIKE_ROLL];
      this.#push(NOTE_ON, CHORD_TRACK, pitch, velocity);
      this.#chordNotes[k] = pitch;
    }
    this.#chordNoteCount = count;
    this.#strikeCount = 0;
  }

  /** Ends the chord's notes if they end within this step (or now, when `all`). */
  #flushChordOff(all: boolean): void {
    const f = this.#f;
    if (this.#chordNoteCount === 0 || (!all && f[F_STRIKE_END] >= f[F_STEP_END])) return;
    f[F_EVENT_TIME] = f[F_STRIKE_END];
    for (let k = 0; k < this.#chordNoteCount; k++) {
      this.#push(NOTE_OFF, CHORD_TRACK, this.#chordNotes[k], 0);
    }
    this.#chordNoteCount = 0;
  }

  /** Ends the melody note if it ends within this step (or now, when `all`). */
  #flushMelodyOff(all: boolean): void {
    const f = this.#f;
    if (this.#melodyPitch < 0 || (!all && f[F_MEL_OFF] >= f[F_STEP_END])) return;
    f[F_EVENT_TIME] = f[F_MEL_OFF];
    this.#push(NOTE_OFF, MELODY_TRACK, this.#melodyPitch, 0);
    this.#melodyPitch = -1;
  }

  /** A new melody note at this slot: sampled pitch, velocity, length to the next event. */
  #melodyOnset(
    outputs: { melody: Float32Array; dynamics: Float32Array },
    slot: number,
  ): void {
    const tonic = this.options.key.tonic;
    const pitch = this.#sample(outputs.melody, tonic);
    const dynamics = outputs.dynamics;
    const f = this.#f;
    // The note lasts until the next onset or rest of the bar, or the bar's end.
    let next = slot + 1;
    while (next < this.stepsPerBar && this.#slotKind[next] === 0) next++;
    // Its steps within the chord span count towards the span's pitch-class histogram.
    const spanEnd = this.#spanStart + this.chordSpanSteps;
    const noteEnd = this.stepIndex - slot + next;
    const steps = (noteEnd < spanEnd ? noteEnd : spanEnd) - this.stepIndex;
    if (steps > 0) {
      this.#spanPitchClasses[(pitch - tonic + 12) % 12] += steps;
      f[F_SPAN_TOTAL] += steps;
    }
    const nextTime = (this.stepIndex - slot + next) * f[F_STEP_SEC] +
      (next < this.stepsPerBar ? this.#slotShift[next] : 0);
    const accented = slot % this.stepsPerBeat === 0;
    let articulation = 0.25 + 0.75 * clamp01(dynamics[DYNAMICS.ARTICULATION]);
    if (accented) articulation += 0.25 * clamp01(dynamics[DYNAMICS.ACCENT_LENGTH]);
    if (articulation > 1) articulation = 1;
    const onset = f[F_ONSET];
    f[F_MEL_OFF] = onset + (nextTime - onset) * articulation;
    if (f[F_MEL_OFF] < onset + 0.25 * f[F_STEP_SEC]) f[F_MEL_OFF] = onset + 0.25 * f[F_STEP_SEC];
    f[F_LEVEL] = 1;
    const velocity = this.#velocity(dynamics, slot, pitch);
    f[F_EVENT_TIME] = onset;
    this.#push(NOTE_ON, MELODY_TRACK, pitch, velocity);
    this.#melodyPitch = pitch;
    this.previousPitch = pitch;
  }

  /** Velocity 1..127 from the dynamics at this slot, scaled by f[F_LEVEL] (chords, bass). */
  #velocity(dynamics: Float32Array, slot: number, pitch: number): number {
    this.#velocityBase(dynamics, slot);
    this.#f[F_VELOCITY] += (clamp01(dynamics[DYNAMICS.REGISTER]) - 0.5) * (pitch - 72);
    return this.#scaledVelocity();
  }

  /** f[F_VELOCITY] = the velocity at this slot before the register term (one seeded draw). */
  #velocityBase(dynamics: Float32Array, slot: number): void {
    let v = 30 + 90 * clamp01(dynamics[DYNAMICS.LEVEL]);
    if (slot % this.stepsPerBeat === 0) v += 25 * clamp01(dynamics[DYNAMICS.ACCENT]);
    if (slot === 0) v += 12 * clamp01(dynamics[DYNAMICS.DOWNBEAT]);
    const inBar = slot / this.stepsPerBar - 0.5;
    v += 40 * (clamp01(dynamics[DYNAMICS.BAR_SHAPE]) - 0.5) * inBar;
    const bar = Math.floor(this.stepIndex / this.stepsPerBar);
    const phrase = ((bar % 4) + slot / this.stepsPerBar) / 4;
    v += 30 * (clamp01(dynamics[DYNAMICS.PHRASE_ARC]) - 0.5) * Math.sin(Math.PI * phrase);
    v += (this.#rng.nextU24() * INV_RNG_RANGE * 2 - 1) * 12 * clamp01(dynamics[DYNAMICS.JITTER]);
    this.#f[F_VELOCITY] = v;
  }

  /** f[F_VELOCITY] times f[F_LEVEL], rounded and clamped to 1..127. */
  #scaledVelocity(): number {
    const v = this.#f[F_VELOCITY] * this.#f[F_LEVEL];
    return v < 1 ? 1 : v > 127 ? 127 : Math.round(v);
  }

  /**
   * Samples a melody note from 128 probabilities (one per MIDI note): the range and constraint
   * mask, then temperature, top-k and top-p, then one seeded draw. Allocates nothing.
   */
  sampleNote(probabilities: Float32Array): number {
    return this.#sample(probabilities, 0);
  }

  /** sampleNote from probabilities indexed by MIDI note less `shift` (the tonic). */
  #sample(probabilities: Float32Array, shift: number): number {
    const o = this.options;
    const w = this.#weights;
    const order = this.#order;
    const mask = o.constrain === "key"
      ? this.#keyMask
      : o.constrain === "chord" && this.chordClass >= 0
      ? this.#chordMask
      : o.constrain === "chord"
      ? this.#keyMask
      : null;
    // Candidates: in range and allowed, in descending probability (insertion sort).
    let n = 0;
    for (let p = o.low; p <= o.high; p++) {
      if (mask !== null && mask[p % 12] === 0) continue;
      let x = p - shift >= 0 ? probabilities[p - shift] : 0;
      if (!(x > 0)) x = 0;
      w[p] = x;
      let i = n++;
      while (i > 0 && w[order[i - 1]] < x) {
        order[i] = order[i - 1];
        i--;
      }
      order[i] = p;
    }
    const best = order[0];
    const f = this.#f;
    if (f[F_TEMP] === 0 || !(w[best] > 0)) return best;
    if (o.topK > 0 && n > o.topK) n = o.topK;
    const exponent = 1 / f[F_TEMP];
    let total = 0;
    const top = w[best];
    for (let i = 0; i < n; i++) {
      const p = order[i];
      const v = Math.pow(w[p] / top, exponent);
      w[p] = v;
      total += v;
    }
    if (f[F_TOP_P] < 1) {
      let kept = 0;
      let mass = 0;
      while (kept < n) {
        mass += w[order[kept]];
        kept++;
        if (mass >= f[F_TOP_P] * total) break;
      }
      n = kept;
      total = mass;
    }
    let u = this.#rng.nextU24() * INV_RNG_RANGE * total;
    for (let i = 0; i < n; i++) {
      u -= w[order[i]];
      if (u < 0) return order[i];
    }
    return order[n - 1];
  }
}

/** Swaps entries j - 1 and j. */
function swap(values: Uint8Array, j: number): void {
  const t = values[j];
  values[j] = values[j - 1];
  values[j - 1] = t;
}

function swapTime(values: Float64Array, j: number): void {
  const t = values[j];
  values[j] = values[j - 1];
  values[j - 1] = t;
}

function clamp01(x: number): number {
  return x > 0 ? (x < 1 ? x : 1) : 0;
}

function clampUnit(x: number): number {
  return x > -1 ? (x < 1 ? x : 1) : -1;
}
