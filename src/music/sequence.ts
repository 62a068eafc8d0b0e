/**
 * The note sequence: plain data, close to Magenta's NoteSequence, and every other music module
 * is a function over it (decode writes one, toMidi/fromMidi convert it, renderPianoRoll draws
 * it). Times are in seconds; quantized positions, where present, are in steps of
 * `stepsPerQuarter`.
 *
 * ```ts
 * const seq = emptySequence({ tempo: 120, meter: [4, 4], key: { tonic: 0, mode: "major" } });
 * seq.notes.push({ pitch: 60, velocity: 90, startTime: 0, endTime: 0.5, instrument: 0,
 *   program: 0, isDrum: false });
 * seq.totalTime = 0.5;
 * validateSequence(seq); // throws a CadenzaError naming the note and field that are wrong
 * ```
 */

import { CadenzaError } from "../errors.ts";

/** One note. `instrument` is the track index; `program` the General MIDI program (0..127). */
export interface Note {
  /** MIDI note number 0..127. */
  pitch: number;
  /** MIDI velocity 1..127. */
  velocity: number;
  /** Seconds from the start of the piece. */
  startTime: number;
  /** Seconds; greater than startTime. */
  endTime: number;
  /** Track index (0 melody, 1 chords, 2 bass, 9 drums in generated pieces). */
  instrument: number;
  /** General MIDI program 0..127. */
  program: number;
  isDrum: boolean;
  /** Quantized start and end, in steps of `stepsPerQuarter` (absent if not quantized). */
  quantizedStartStep?: number;
  quantizedEndStep?: number;
}

export interface Tempo {
  /** Seconds. */
  time: number;
  /** Quarter notes per minute. */
  qpm: number;
}

export interface TimeSignature {
  time: number;
  numerator: number;
  denominator: number;
}

/** `key` is the tonic as a pitch class (0 = C .. 11 = B). */
export interface KeySignature {
  time: number;
  key: number;
  mode: "major" | "minor";
}

/** A named part of the piece (its MIDI track). */
export interface InstrumentInfo {
  instrument: number;
  name: string;
  program: number;
  isDrum: boolean;
  /** MIDI channel 0..15 (9 is the General MIDI drum channel). */
  channel: number;
}

export interface NoteSequence {
  notes: Note[];
  tempos: Tempo[];
  timeSignatures: TimeSignature[];
  keySignatures: KeySignature[];
  instrumentInfos: InstrumentInfo[];
  /** Seconds: the end of the last note, or of the last bar for generated pieces. */
  totalTime: number;
  /** Present when the notes carry quantized steps. */
  stepsPerQuarter?: number;
  /** Free-form provenance (generator, seed, emotion, whether the models were trained). */
  meta?: Record<string, string>;
}

/** Options of `emptySequence`; everything has a default (120 qpm, 4/4, C major). */
export interface SequenceOptions {
  /** Quarter notes per minute (default 120). */
  tempo?: number;
  /** [beats per bar, beat unit], e.g. [3, 4] (default [4, 4]). */
  meter?: readonly [number, number];
  /** Tonic pitch class 0..11 and mode (default C major). */
  key?: { tonic: number; mode: "major" | "minor" };
  /** Parts of the piece; notes name one of them by `instrument`. */
  instruments?: InstrumentInfo[];
  /** Set when the notes will carry quantized steps. */
  stepsPerQuarter?: number;
  /** Seconds (default 0: the end of the last note once notes are added). */
  totalTime?: number;
  meta?: Record<string, string>;
}

/** The General MIDI drum channel (channel 10, counted from 1). */
export const DRUM_CHANNEL = 9;

/** A sequence with one tempo, one time signature and one key at time 0, and no notes. */
export function emptySequence(options: SequenceOptions = {}): NoteSequence {
  const [numerator, denominator] = options.meter ?? [4, 4];
  const key = options.key ?? { tonic: 0, mode: "major" };
  const seq: NoteSequence = {
    notes: [],
    tempos: [{ time: 0, qpm: options.tempo ?? 120 }],
    timeSignatures: [{ time: 0, numerator, denominator }],
    keySignatures: [{ time: 0, key: key.tonic, mode: key.mode }],
    instrumentInfos: (options.instruments ?? []).map((info) => ({ ...info })),
    totalTime: options.totalTime ?? 0,
  };
  if (options.stepsPerQuarter !== undefined) seq.stepsPerQuarter = options.stepsPerQuarter;
  if (options.meta !== undefined) seq.meta = { ...options.meta };
  validateSequence(seq);
  return seq;
}

// ---------------------------------------------------------------------------------------------
// Validation: every field checked, the message names the note (or event) and the field.

/** Any tempo a MIDI file can carry with a plausible microseconds-per-beat (>= 600). */
const MAX_QPM = 100_000;
const MAX_SECONDS = 24 * 3600;
/** Every (track, channel) of the largest MIDI file gets a number. */
const MAX_INSTRUMENT = 65536 * 16 - 1;

function bad(where: string, what: string, expected: string): never {
  throw new CadenzaError("E_ARGUMENT", `${where}: ${what}; expected ${expected}`);
}

function show(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function checkInt(where: string, field: string, value: unknown, lo: number, hi: number): void {
  if (typeof value !== "number" || !Number.isInteger(value) || value < lo || value > hi) {
    bad(where, `${field} is ${show(value)}`, `an integer ${lo}..${hi}`);
  }
}

function checkTime(where: string, field: string, value: unknown): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > MAX_SECONDS) {
    bad(where, `${field} is ${show(value)}`, `seconds in 0..${MAX_SECONDS}`);
  }
}

function checkNote(note: Note, where: string, quantized: boolean): void {
  if (typeof note !== "object" || note === null) bad(where, "not an object", "a note");
  checkInt(where, "pitch", note.pitch, 0, 127);
  checkInt(where, "velocity", note.velocity, 1, 127);
  checkTime(where, "startTime", note.startTime);
  checkTime(where, "endTime", note.endTime);
  if (!(note.endTime > note.startTime)) {
    bad(where, `endTime ${note.endTime} is not after startTime ${note.startTime}`, "end > start");
  }
  checkInt(where, "instrument", note.instrument, 0, MAX_INSTRUMENT);
  checkInt(where, "program", note.program, 0, 127);
  if (typeof note.isDrum !== "boolean") bad(where, `isDrum is ${show(note.isDrum)}`, "a boolean");
  const has_start = note.quantizedStartStep !== undefined;
  if (has_start !== (note.quantizedEndStep !== undefined)) {
    bad(where, "only one of quantizedStartStep/quantizedEndStep is set", "both or neither");
  }
  if (!has_start) return;
  if (!quantized) bad(where, "has quantized steps", "stepsPerQuarter on the sequence");
  checkInt(where, "quantizedStartStep", note.quantizedStartStep, 0, 2 ** 31 - 1);
  checkInt(where, "quantizedEndStep", note.quantizedEndStep, 1, 2 ** 31 - 1);
  if (note.quantizedEndStep! <= note.quantizedStartStep!) {
    bad(where, "quantizedEndStep is not after quantizedStartStep", "end > start");
  }
}

function checkEvents(seq: NoteSequence, name: string): void {
  if (!Array.isArray(seq.tempos)) bad(name, "tempos is not an array", "an array");
  seq.tempos.forEach((t, i) => {
    const where = `${name}.tempos[${i}]`;
    checkTime(where, "time", t.time);
    if (typeof t.qpm !== "number" || !(t.qpm > 0 && t.qpm <= MAX_QPM)) {
      bad(where, `qpm is ${show(t.qpm)}`, `quarter notes per minute in (0, ${MAX_QPM}]`);
    }
  });
  if (!Array.isArray(seq.timeSignatures)) bad(name, "timeSignatures is not an array", "an array");
  seq.timeSignatures.forEach((ts, i) => {
    const where = `${name}.timeSignatures[${i}]`;
    checkTime(where, "time", ts.time);
    checkInt(where, "numerator", ts.numerator, 1, 255);
    if (![1, 2, 4, 8, 16, 32, 64].includes(ts.denominator)) {
      bad(where, `denominator is ${show(ts.denominator)}`, "one of 1, 2, 4, 8, 16, 32, 64");
    }
  });
  if (!Array.isArray(seq.keySignatures)) bad(name, "keySignatures is not an array", "an array");
  seq.keySignatures.forEach((ks, i) => {
    const where = `${name}.keySignatures[${i}]`;
    checkTime(where, "time", ks.time);
    checkInt(where, "key", ks.key, 0, 11);
    if (ks.mode !== "major" && ks.mode !== "minor") {
      bad(where, `mode is ${show(ks.mode)}`, `"major" or "minor"`);
    }
  });
}

function checkInstruments(seq: NoteSequence, name: string): void {
  if (!Array.isArray(seq.instrumentInfos)) bad(name, "instrumentInfos is not an array", "an array");
  const seen = new Set<number>();
  seq.instrumentInfos.forEach((info, i) => {
    const where = `${name}.instrumentInfos[${i}]`;
    checkInt(where, "instrument", info.instrument, 0, MAX_INSTRUMENT);
    if (seen.has(info.instrument)) bad(where, `instrument ${info.instrument} repeats`, "unique");
    seen.add(info.instrument);
    if (typeof info.name !== "string") bad(where, `name is ${show(info.name)}`, "a string");
    checkInt(where, "program", info.program, 0, 127);
    checkInt(where, "channel", info.channel, 0, 15);
    if (typeof info.isDrum !== "boolean") bad(where, `isDrum is ${show(info.isDrum)}`, "a boolean");
  });
}

/**
 * Throws a CadenzaError (E_ARGUMENT) naming the first bad field, e.g.
 * `sequence.notes[3]: pitch is 130; expected an integer 0..127`. `name` prefixes the path.
 */
export function validateSequence(seq: NoteSequence, name = "sequence"): void {
  if (typeof seq !== "object" || seq === null) bad(name, "not an object", "a NoteSequence");
  if (!Array.isArray(seq.notes)) bad(name, "notes is not an array", "an array");
  const spq = seq.stepsPerQuarter;
  if (spq !== undefined) checkInt(name, "stepsPerQuarter", spq, 1, 960);
  checkTime(name, "totalTime", seq.totalTime);
  checkEvents(seq, name);
  checkInstruments(seq, name);
  const drums = new Map(seq.instrumentInfos.map((info) => [info.instrument, info.isDrum]));
  let last_end = 0;
  for (let i = 0; i < seq.notes.length; i++) {
    const note = seq.notes[i];
    const where = `${name}.notes[${i}]`;
    checkNote(note, where, spq !== undefined);
    const is_drum = drums.get(note.instrument);
    if (is_drum !== undefined && is_drum !== note.isDrum) {
      bad(
        where,
        `isDrum is ${note.isDrum} but instrument ${note.instrument} has isDrum ${is_drum}`,
        "the same",
      );
    }
    last_end = Math.max(last_end, note.endTime);
  }
  // A microsecond of slack: times converted from ticks are rounded to about that.
  if (seq.totalTime + 1e-6 < last_end) {
    bad(name, `totalTime ${seq.totalTime} is before the last note's end ${last_end}`, ">= it");
  }
  if (seq.meta !== undefined) {
    for (const [key, value] of Object.entries(seq.meta)) {
      if (typeof value !== "string") bad(`${name}.meta`, `${key} is ${show(value)}`, "a string");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Time: seconds <-> quarter notes through the tempo map, bars through the time signatures.

/** Converts between seconds and quarter notes through one sequence's tempo map. */
export interface TimeMap {
  /** Quarter notes elapsed at `seconds`. */
  toQuarters(seconds: number): number;
  /** Seconds at which `quarters` quarter notes have elapsed. */
  toSeconds(quarters: number): number;
}

/** The most bars barTimes walks (a day at 1,000 qpm in 4/4 is 360,000). */
export const MAX_BARS = 1_000_000;

/**
 * The tempo map of `seq` (120 qpm until its first tempo), built once: each conversion is a
 * binary search, so converting every note of a long piece stays linear.
 */
export function timeMap(seq: NoteSequence): TimeMap {
  const tempos = [...seq.tempos].sort((a, b) => a.time - b.time);
  if (tempos.length === 0 || tempos[0].time > 0) tempos.unshift({ time: 0, qpm: 120 });
  const starts = new Float64Array(tempos.length); // quarters elapsed at each tempo change
  for (let i = 1; i < tempos.length; i++) {
    starts[i] = starts[i - 1] + ((tempos[i].time - tempos[i - 1].time) * tempos[i - 1].qpm) / 60;
  }
  const find = (value: number, key: (i: number) => number) => {
    let lo = 0;
    let hi = tempos.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (key(mid) <= value) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  return {
    toQuarters(seconds) {
      const i = find(seconds, (k) => tempos[k].time);
      return starts[i] + (Math.max(0, seconds - tempos[i].time) * tempos[i].qpm) / 60;
    },
    toSeconds(quarters) {
      const i = find(quarters, (k) => starts[k]);
      return tempos[i].time + (Math.max(0, quarters - starts[i]) * 60) / tempos[i].qpm;
    },
  };
}

/** Quarter notes elapsed at `seconds` (the tempo map integrated). */
export function secondsToQuarters(seq: NoteSequence, seconds: number): number {
  return timeMap(seq).toQuarters(seconds);
}

/** Seconds at which `quarters` quarter notes have elapsed (the inverse of secondsToQuarters). */
export function quartersToSeconds(seq: NoteSequence, quarters: number): number {
  return timeMap(seq).toSeconds(quarters);
}

/** Quarter notes in one bar of `ts` (6/8 is 3 quarters). */
export function quartersPerBar(ts: { numerator: number; denominator: number }): number {
  return (ts.numerator * 4) / ts.denominator;
}

interface BarWalk {
  /** Start of each bar, seconds. */
  times: number[];
  /** Quarter notes in the last bar. */
  lastBarQuarters: number;
  /** Quarter notes from the last bar's start to totalTime. */
  intoLast: number;
}

function walkBars(seq: NoteSequence): BarWalk {
  const map = timeMap(seq);
  const signatures = [...seq.timeSignatures].sort((a, b) => a.time - b.time);
  const changes = signatures.map((ts) => ({ at: map.toQuarters(ts.time), ts }));
  const end_quarters = map.toQuarters(seq.totalTime);
  const times: number[] = [];
  let current: { numerator: number; denominator: number } = signatures[0] ??
    { numerator: 4, denominator: 4 };
  let next = 1;
  let quarters = 0;
  let last_start = 0;
  while (quarters < end_quarters - 1e-9 && times.length < MAX_BARS) {
    while (next < changes.length && changes[next].at <= quarters + 1e-9) {
      current = changes[next++].ts;
    }
    times.push(map.toSeconds(quarters));
    last_start = quarters;
    quarters += quartersPerBar(current);
  }
  return { times, lastBarQuarters: quartersPerBar(current), intoLast: end_quarters - last_start };
}

/**
 * The start time (seconds) of every bar that begins before `seq.totalTime` (at most MAX_BARS),
 * following tempo and time-signature changes (a change inside a bar takes effect at the next
 * bar line).
 */
export function barTimes(seq: NoteSequence): number[] {
  return walkBars(seq).times;
}

/** Length in bars: whole bars plus the fraction of the last one that `totalTime` reaches. */
export function totalBars(seq: NoteSequence): number {
  const walk = walkBars(seq);
  if (walk.times.length === 0) return 0;
  return walk.times.length - 1 + walk.intoLast / walk.lastBarQuarters;
}

/** The tempo in force at `seconds` (120 qpm before the first). */
export function tempoAt(seq: NoteSequence, seconds: number): number {
  let found = { time: 0, qpm: 120 };
  for (const t of seq.tempos) if (t.time <= seconds && t.time >= found.time) found = t;
  return found.qpm;
}

/** The time signature in force at `seconds` (4/4 before the first). */
export function timeSignatureAt(seq: NoteSequence, seconds: number): TimeSignature {
  let found: TimeSignature = { time: 0, numerator: 4, denominator: 4 };
  for (const ts of [...seq.timeSignatures].sort((a, b) => a.time - b.time)) {
    if (ts.time <= seconds + 1e-9) found = ts;
  }
  return found;
}

/** The key in force at `seconds`, or undefined when the sequence has none. */
export function keyAt(seq: NoteSequence, seconds: number): KeySignature | undefined {
  let found: KeySignature | undefined;
  for (const ks of [...seq.keySignatures].sort((a, b) => a.time - b.time)) {
    if (ks.time <= seconds + 1e-9) found = ks;
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Quantization and ordering.

/**
 * A copy whose notes carry `quantizedStartStep`/`quantizedEndStep`: times rounded to the nearest
 * step of `stepsPerQuarter` through the tempo map, every note at least one step long.
 */
export function quantizeSequence(seq: NoteSequence, stepsPerQuarter: number): NoteSequence {
  validateSequence(seq);
  checkInt("quantizeSequence", "stepsPerQuarter", stepsPerQuarter, 1, 960);
  const map = timeMap(seq);
  const step = (seconds: number) => Math.round(map.toQuarters(seconds) * stepsPerQuarter);
  const notes = seq.notes.map((note) => {
    const start = step(note.startTime);
    return {
      ...note,
      quantizedStartStep: start,
      quantizedEndStep: Math.max(start + 1, step(note.endTime)),
    };
  });
  return { ...cloneSequence(seq), notes, stepsPerQuarter };
}

/** Seconds at quantized step `step` (of `seq.stepsPerQuarter`, default 4). */
export function stepToSeconds(seq: NoteSequence, step: number): number {
  return quartersToSeconds(seq, step / (seq.stepsPerQuarter ?? 4));
}

/** The step (of `seq.stepsPerQuarter`, default 4) nearest to `seconds`. */
export function secondsToStep(seq: NoteSequence, seconds: number): number {
  return Math.round(secondsToQuarters(seq, seconds) * (seq.stepsPerQuarter ?? 4));
}

/** Notes ordered by start time, then instrument, then pitch (ties keep their order). */
export function compareNotes(a: Note, b: Note): number {
  return a.startTime - b.startTime || a.instrument - b.instrument || a.pitch - b.pitch ||
    a.endTime - b.endTime;
}

/** A copy of `seq` with its notes in `compareNotes` order. */
export function sortNotes(seq: NoteSequence): NoteSequence {
  const copy = cloneSequence(seq);
  copy.notes.sort(compareNotes);
  return copy;
}

/** A deep copy (notes, events and meta are new objects). */
export function cloneSequence(seq: NoteSequence): NoteSequence {
  const copy: NoteSequence = {
    notes: seq.notes.map((n) => ({ ...n })),
    tempos: seq.tempos.map((t) => ({ ...t })),
    timeSignatures: seq.timeSignatures.map((t) => ({ ...t })),
    keySignatures: seq.keySignatures.map((k) => ({ ...k })),
    instrumentInfos: seq.instrumentInfos.map((i) => ({ ...i })),
    totalTime: seq.totalTime,
  };
  if (seq.stepsPerQuarter !== undefined) copy.stepsPerQuarter = seq.stepsPerQuarter;
  if (seq.meta !== undefined) copy.meta = { ...seq.meta };
  return copy;
}

/** The notes of one instrument (track), in `compareNotes` order. */
export function notesOf(seq: NoteSequence, instrument: number): Note[] {
  return seq.notes.filter((n) => n.instrument === instrument).sort(compareNotes);
}

/** The info for `instrument`, or one made up from its first note when the sequence has none. */
export function instrumentInfoOf(seq: NoteSequence, instrument: number): InstrumentInfo {
  const info = seq.instrumentInfos.find((i) => i.instrument === instrument);
  if (info !== undefined) return info;
  const first = seq.notes.find((n) => n.instrument === instrument);
  const is_drum = first?.isDrum ?? false;
  return {
    instrument,
    name: is_drum ? "drums" : `instrument ${instrument}`,
    program: first?.program ?? 0,
    isDrum: is_drum,
    channel: is_drum ? DRUM_CHANNEL : instrument % 16 === DRUM_CHANNEL ? 15 : instrument % 16,
  };
}

/** Every instrument that has notes or an info, infos first, ordered by instrument number. */
export function instrumentsOf(seq: NoteSequence): InstrumentInfo[] {
  const numbers = new Set<number>(seq.instrumentInfos.map((i) => i.instrument));
  for (const note of seq.notes) numbers.add(note.instrument);
  return [...numbers].sort((a, b) => a - b).map((n) => instrumentInfoOf(seq, n));
}

// ---------------------------------------------------------------------------------------------
// Names a musician reads.

const SHARP_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const MAJOR_KEY_NAMES = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
const MINOR_KEY_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"];

/** "C4" for 60 (middle C is C4). */
export function pitchName(pitch: number): string {
  return `${SHARP_NAMES[((pitch % 12) + 12) % 12]}${Math.floor(pitch / 12) - 1}`;
}

/** "A minor", "Eb major": the usual spelling of the key's tonic. */
export function keyName(key: { key: number; mode: "major" | "minor" }): string {
  const names = key.mode === "major" ? MAJOR_KEY_NAMES : MINOR_KEY_NAMES;
  return `${names[((key.key % 12) + 12) % 12]} ${key.mode}`;
}

/** Sharps (positive) or flats (negative) of the key's signature, -6..6 (F# major is 6). */
export function keySharps(key: { key: number; mode: "major" | "minor" }): number {
  const major_tonic = key.mode === "major" ? key.key : key.key + 3;
  const fifths = (((major_tonic % 12) + 12) * 7) % 12; // C=0, G=1, D=2, ... F=11
  return fifths > 6 ? fifths - 12 : fifths;
}

/** The key of a signature with `sharps` (-7..7) in `mode`: the inverse of keySharps. */
export function keyFromSharps(sharps: number, mode: "major" | "minor"): KeySignature["key"] {
  const major_tonic = (((sharps * 7) % 12) + 12) % 12;
  return mode === "major" ? major_tonic : (major_tonic + 9) % 12;
}
