/**
 * Standard MIDI Files to and from a NoteSequence.
 *
 * The bytes are written and read by `midi-file` (the encoder and parser that `@tonejs/midi` is
 * built on); this module maps its event lists to notes and back. `@tonejs/midi` itself is not
 * used here: its writer stores a key signature's sharps as `index + 7` (G major becomes 0x0F, an
 * invalid signature), and its reader pairs note-offs with note-ons across channels and keeps one
 * channel per track, which loses the parts of a type-0 file.
 *
 * ```ts
 * const bytes = toMidi(seq);                         // type 1: a conductor track + one per part
 * const back = fromMidi(bytes, { file: "song.mid" }); // notes in seconds, parts by track/channel
 * ```
 */

import { type MidiData, type MidiEvent, parseMidi, writeMidi } from "midi-file";
import { CadenzaError } from "../errors.ts";
import {
  DRUM_CHANNEL,
  type InstrumentInfo,
  instrumentsOf,
  keyFromSharps,
  keySharps,
  type Note,
  type NoteSequence,
  timeMap,
  validateSequence,
} from "./sequence.ts";

/** Ticks per quarter note in the files toMidi writes (divisible by 1..8, 10, 12, 16, 24, 32). */
export const MIDI_PPQ = 480;

/** The largest file fromMidi reads; real pieces are far smaller (a symphony is ~1 MB). */
export const MAX_MIDI_BYTES = 8 * 1024 * 1024;

/** fromMidi refuses a file whose events reach further than this (a corrupt delta time). */
export const MAX_MIDI_SECONDS = 24 * 3600;

/** Text events `cadenza:key=value` carry `seq.meta`; `cadenza:instrument=N` a part's number. */
const META_PREFIX = "cadenza:";
const INSTRUMENT_TAG = `${META_PREFIX}instrument=`;

export interface ToMidiOptions {
  /** Ticks per quarter note (default MIDI_PPQ). */
  ppq?: number;
}

export interface FromMidiOptions {
  /** The file's name, used in error messages. */
  file?: string;
}

// ---------------------------------------------------------------------------------------------
// Writing.

/** UTF-8 bytes as a string of code units 0..255, which midi-file writes byte for byte. */
function binaryString(text: string): string {
  return String.fromCharCode(...new TextEncoder().encode(text));
}

function textFromBinary(text: string): string {
  const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return text; // Latin-1, as older files have it
  }
}

interface Timed {
  tick: number;
  /** Order among events at one tick: note-offs first, so a repeated note is not cut. */
  rank: number;
  event: MidiEvent;
}

function ticksOf(seq: NoteSequence, ppq: number): (seconds: number) => number {
  const map = timeMap(seq);
  return (seconds) => Math.round(map.toQuarters(seconds) * ppq);
}

/** Start and end ticks of a note: from its quantized steps when they map exactly to ticks. */
function noteTicks(
  seq: NoteSequence,
  note: Note,
  ppq: number,
  toTicks: (s: number) => number,
): [number, number] {
  const spq = seq.stepsPerQuarter;
  if (spq !== undefined && note.quantizedStartStep !== undefined && ppq % spq === 0) {
    return [note.quantizedStartStep * (ppq / spq), note.quantizedEndStep! * (ppq / spq)];
  }
  const start = toTicks(note.startTime);
  return [start, Math.max(start + 1, toTicks(note.endTime))];
}

function conductorTrack(seq: NoteSequence, toTicks: (s: number) => number): Timed[] {
  const events: Timed[] = [];
  const name = seq.meta?.title ?? "cadenza";
  events.push({
    tick: 0,
    rank: 0,
    event: { deltaTime: 0, meta: true, type: "trackName", text: binaryString(name) },
  });
  for (const [key, value] of Object.entries(seq.meta ?? {})) {
    const text = binaryString(`${META_PREFIX}${key}=${value}`);
    events.push({ tick: 0, rank: 1, event: { deltaTime: 0, meta: true, type: "text", text } });
  }
  for (const t of seq.tempos) {
    const microseconds = Math.round(60_000_000 / t.qpm);
    events.push({
      tick: toTicks(t.time),
      rank: 2,
      event: { deltaTime: 0, meta: true, type: "setTempo", microsecondsPerBeat: microseconds },
    });
  }
  for (const ts of seq.timeSignatures) {
    events.push({
      tick: toTicks(ts.time),
      rank: 3,
      event: {
        deltaTime: 0,
        meta: true,
        type: "timeSignature",
        numerator: ts.numerator,
        denominator: ts.denominator,
        metronome: 24,
        thirtyseconds: 8,
      },
    });
  }
  for (const ks of seq.keySignatures) {
    events.push({
      tick: toTicks(ks.time),
      rank: 4,
      event: {
        deltaTime: 0,
        meta: true,
        type: "keySignature",
        key: keySharps(ks),
        scale: ks.mode === "major" ? 0 : 1,
      },
    });
  }
  return events;
}

function partTrack(
  seq: NoteSequence,
  info: InstrumentInfo,
  ppq: number,
  toTicks: (s: number) => number,
): Timed[] {
  const channel = info.isDrum ? DRUM_CHANNEL : info.channel;
  const events: Timed[] = [
    {
      tick: 0,
      rank: 0,
      event: { deltaTime: 0, meta: true, type: "trackName", text: binaryString(info.name) },
    },
    {
      tick: 0,
      rank: 0,
      event: {
        deltaTime: 0,
        meta: true,
        type: "text",
        text: `${INSTRUMENT_TAG}${info.instrument}`,
      },
    },
    {
      tick: 0,
      rank: 1,
      event: { deltaTime: 0, type: "programChange", channel, programNumber: info.program },
    },
  ];
  const notes = seq.notes.filter((n) => n.instrument === info.instrument);
  notes.sort((a, b) => a.startTime - b.startTime || a.pitch - b.pitch);
  let program = info.program;
  for (const note of notes) {
    const [start, end] = noteTicks(seq, note, ppq, toTicks);
    if (note.program !== program && !info.isDrum) {
      program = note.program;
      events.push({
        tick: start,
        rank: 2,
        event: { deltaTime: 0, type: "programChange", channel, programNumber: program },
      });
    }
    const pitch = note.pitch;
    events.push({
      tick: start,
      rank: 3,
      event: { deltaTime: 0, type: "noteOn", channel, noteNumber: pitch, velocity: note.velocity },
    });
    events.push({
      tick: end,
      rank: 1,
      event: { deltaTime: 0, type: "noteOff", channel, noteNumber: pitch, velocity: 0 },
    });
  }
  return events;
}

/** Orders events by tick (stable within a tick by rank), sets delta times, ends at `end_tick`. */
function finishTrack(events: Timed[], end_tick: number): MidiEvent[] {
  const order = events.map((e, i) => ({ ...e, i }));
  order.sort((a, b) => a.tick - b.tick || a.rank - b.rank || a.i - b.i);
  const out: MidiEvent[] = [];
  let last = 0;
  for (const { tick, event } of order) {
    out.push({ ...event, deltaTime: tick - last });
    last = tick;
  }
  out.push({ deltaTime: Math.max(0, end_tick - last), meta: true, type: "endOfTrack" });
  return out;
}

/**
 * A type-1 Standard MIDI File: a conductor track (title, `seq.meta` as `cadenza:key=value`
 * text events, tempos, time and key signatures), then one track per instrument in instrument
 * order, each with its name, its channel (drums on channel 10, index 9) and its program. Every
 * track ends at `seq.totalTime`, so a silent last bar is kept. Throws E_ARGUMENT for an invalid
 * sequence (see validateSequence).
 */
export function toMidi(seq: NoteSequence, options: ToMidiOptions = {}): Uint8Array {
  validateSequence(seq);
  const ppq = options.ppq ?? MIDI_PPQ;
  if (!Number.isInteger(ppq) || ppq < 1 || ppq > 0x7fff) {
    throw new CadenzaError("E_ARGUMENT", `toMidi: ppq is ${ppq}; expected an integer 1..32767`);
  }
  const toTicks = ticksOf(seq, ppq);
  const parts = instrumentsOf(seq);
  const tracks = [
    conductorTrack(seq, toTicks),
    ...parts.map((info) => partTrack(seq, info, ppq, toTicks)),
  ];
  let last_tick = toTicks(seq.totalTime);
  for (const track of tracks) for (const e of track) last_tick = Math.max(last_tick, e.tick);
  const data: MidiData = {
    header: { format: 1, numTracks: tracks.length, ticksPerBeat: ppq },
    tracks: tracks.map((events) => finishTrack(events, last_tick)),
  };
  return Uint8Array.from(writeMidi(data, { running: true }));
}

// ---------------------------------------------------------------------------------------------
// Reading.

function corrupt(file: string, what: string): never {
  throw new CadenzaError("E_FORMAT", `${file}: not a readable MIDI file: ${what}`);
}

const ascii4 = (bytes: Uint8Array, at: number) =>
  String.fromCharCode(...bytes.subarray(at, at + 4));

/**
 * Checks the chunk layout (MThd then chunks whose lengths fit the file) before midi-file reads
 * it, which would otherwise read past the end as undefined; unknown chunks are dropped, as the
 * format asks.
 */
/**
 * Walks a track's events as far as their structure is sound and refuses a variable-length
 * number longer than 4 bytes (the most a Standard MIDI File allows): parseMidi adds such a
 * number up in 32-bit signed arithmetic, and a negative length sends its reader backwards
 * forever (found by test/cases/reader_fuzz.ts; test/fuzz/midi-5-byte-length.mid). Anything
 * else wrong is left for parseMidi to report.
 */
function checkVarInts(track: Uint8Array, file: string, index: number): void {
  let at = 0;
  let status = 0;
  const varInt = (): number => {
    let value = 0;
    for (let n = 0; n < 4; n++) {
      if (at >= track.length) return -1;
      const b = track[at++];
      value = value * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) return value;
    }
    corrupt(file, `track ${index}, byte ${at - 4}: a variable-length number longer than 4 bytes`);
  };
  while (at < track.length) {
    if (varInt() < 0 || at >= track.length) return;
    let type = track[at];
    if (type >= 0x80) at++;
    else if (status === 0) return;
    else type = status;
    if (type === 0xff) {
      at++; // the meta type
      const length = varInt();
      if (length < 0) return;
      at += length;
    } else if (type === 0xf0 || type === 0xf7) {
      const length = varInt();
      if (length < 0) return;
      at += length;
    } else if (type >= 0xf0) return;
    else {
      status = type;
      at += (type & 0xf0) === 0xc0 || (type & 0xf0) === 0xd0 ? 1 : 2;
    }
  }
}

function checkedChunks(bytes: Uint8Array, file: string): Uint8Array {
  if (bytes.length > MAX_MIDI_BYTES) {
    throw new CadenzaError(
      "E_LIMIT",
      `${file}: ${bytes.length} bytes is more than the ${MAX_MIDI_BYTES} a MIDI file may have here`,
    );
  }
  if (bytes.length < 14 || ascii4(bytes, 0) !== "MThd") {
    corrupt(file, `it does not start with an "MThd" header (${bytes.length} bytes)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(4) < 6) corrupt(file, `the header is ${view.getUint32(4)} bytes; expected 6`);
  const kept: Uint8Array[] = [];
  let at = 0;
  let index = 0;
  while (at < bytes.length) {
    if (at + 8 > bytes.length) {
      corrupt(file, `${bytes.length - at} stray bytes at the end (byte ${at})`);
    }
    const id = ascii4(bytes, at);
    const length = view.getUint32(at + 4);
    if (at + 8 + length > bytes.length) {
      corrupt(
        file,
        `chunk ${index} ("${id}", byte ${at}) declares ${length} bytes but ${
          bytes.length - at - 8
        } remain`,
      );
    }
    if (index === 0) {
      const header = bytes.slice(at, at + 14);
      new DataView(header.buffer).setUint32(4, 6); // extra header bytes are allowed; drop them
      kept.push(header);
    } else if (id === "MTrk") {
      checkVarInts(bytes.subarray(at + 8, at + 8 + length), file, kept.length - 1);
      kept.push(bytes.subarray(at, at + 8 + length));
    }
    at += 8 + length;
    index++;
  }
  const out = new Uint8Array(kept.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const chunk of kept) {
    out.set(chunk, o);
    o += chunk.length;
  }
  return out;
}

/** Fields that must be numbers in range: a truncated event leaves them undefined. */
function checkEvent(event: MidiEvent, file: string, where: string): void {
  const bad = (field: string, value: unknown) =>
    corrupt(file, `${where} (${event.type}): ${field} is ${value}`);
  if (!Number.isInteger(event.deltaTime) || event.deltaTime < 0 || event.deltaTime > 0x0fffffff) {
    bad("delta time", event.deltaTime);
  }
  const byte = (field: string, value: unknown, hi = 127) => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > hi) {
      bad(field, value);
    }
  };
  switch (event.type) {
    case "noteOn":
    case "noteOff":
      byte("note number", event.noteNumber);
      byte("velocity", event.velocity);
      break;
    case "programChange":
      byte("program", event.programNumber);
      break;
    case "setTempo":
      if (!(event.microsecondsPerBeat > 0)) bad("microseconds per beat", event.microsecondsPerBeat);
      break;
    case "timeSignature":
      byte("numerator", event.numerator, 255);
      if (!(event.numerator >= 1)) bad("numerator", event.numerator);
      if (!(event.denominator >= 1 && event.denominator <= 64)) {
        bad("denominator", event.denominator);
      }
      break;
  }
}

/** Converts ticks to seconds through the file's tempo map (or SMPTE frames). */
function tickClock(data: MidiData, file: string): (tick: number) => number {
  const header = data.header;
  if (header.ticksPerBeat === undefined) {
    const per_second = (header.framesPerSecond ?? 0) * (header.ticksPerFrame ?? 0);
    if (!(per_second > 0)) corrupt(file, "SMPTE time division with zero ticks per second");
    return (tick) => tick / per_second;
  }
  const ppq = header.ticksPerBeat;
  if (!(ppq > 0)) corrupt(file, "the header's ticks per quarter note is 0");
  const changes: { tick: number; us: number }[] = [];
  for (const track of data.tracks) {
    let tick = 0;
    for (const event of track) {
      tick += event.deltaTime;
      if (event.type === "setTempo") changes.push({ tick, us: event.microsecondsPerBeat });
    }
  }
  changes.sort((a, b) => a.tick - b.tick);
  const starts: { tick: number; seconds: number; us: number }[] = [{
    tick: 0,
    seconds: 0,
    us: 500_000,
  }];
  for (const change of changes) {
    const last = starts[starts.length - 1];
    const seconds = last.seconds + ((change.tick - last.tick) * last.us) / (ppq * 1e6);
    if (change.tick === last.tick) starts[starts.length - 1] = { ...last, us: change.us };
    else starts.push({ tick: change.tick, seconds, us: change.us });
  }
  return (tick) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid].tick <= tick) lo = mid;
      else hi = mid - 1;
    }
    const s = starts[lo];
    return s.seconds + ((tick - s.tick) * s.us) / (ppq * 1e6);
  };
}

interface Part {
  track: number;
  channel: number;
  name: string;
  tag: number | undefined;
  program: number;
  notes: Note[];
}

interface Reading {
  file: string;
  seconds: (tick: number) => number;
  seq: NoteSequence;
  parts: Map<string, Part>;
  /** The parts of the track being read. */
  trackParts: Part[];
  ends: number[];
}

function partFor(
  r: Reading,
  track: number,
  channel: number,
  name: string,
  tag: number | undefined,
  program: number,
): Part {
  const key = `${track}/${channel}`;
  let part = r.parts.get(key);
  if (part === undefined) {
    part = { track, channel, name, tag, program, notes: [] };
    r.parts.set(key, part);
    r.trackParts.push(part);
  }
  return part;
}

/** Reads one track's events: meta into the sequence, notes paired first-in first-out per key. */
function readTrack(r: Reading, events: MidiEvent[], track: number, format: number): void {
  let name = "";
  let tag: number | undefined;
  const programs = new Array<number>(16).fill(0);
  const sounding = new Map<number, { tick: number; velocity: number; program: number }[]>();
  let tick = 0;
  events.forEach((event, i) => {
    tick += event.deltaTime;
    const time = r.seconds(tick);
    if (!(time <= MAX_MIDI_SECONDS)) {
      corrupt(
        r.file,
        `track ${track}, event ${i} lies at tick ${tick}, ${
          Math.round(time)
        } s in; more than ${MAX_MIDI_SECONDS} s`,
      );
    }
    switch (event.type) {
      case "trackName":
        if (name === "") name = textFromBinary(event.text);
        if (track === 0 && format === 1) r.seq.meta = { ...r.seq.meta, title: name };
        break;
      case "text":
        if (event.text.startsWith(INSTRUMENT_TAG)) {
          const n = Number(event.text.slice(INSTRUMENT_TAG.length));
          if (Number.isInteger(n) && n >= 0 && n <= 255) tag = n;
        } else if (event.text.startsWith(META_PREFIX)) {
          const text = textFromBinary(event.text.slice(META_PREFIX.length));
          const eq = text.indexOf("=");
          if (eq > 0) r.seq.meta = { ...r.seq.meta, [text.slice(0, eq)]: text.slice(eq + 1) };
        }
        break;
      case "setTempo":
        r.seq.tempos.push({ time, qpm: 60_000_000 / event.microsecondsPerBeat });
        break;
      case "timeSignature":
        r.seq.timeSignatures.push({
          time,
          numerator: event.numerator,
          denominator: event.denominator,
        });
        break;
      case "keySignature":
        // Out-of-range signatures (some writers store sharps + 7) are skipped, not guessed at.
        if (
          Number.isInteger(event.key) && Math.abs(event.key) <= 7 &&
          (event.scale === 0 || event.scale === 1)
        ) {
          const mode = event.scale === 0 ? "major" : "minor";
          r.seq.keySignatures.push({ time, key: keyFromSharps(event.key, mode), mode });
        }
        break;
      case "programChange":
        programs[event.channel] = event.programNumber;
        break;
      case "noteOn": {
        const key = event.channel * 128 + event.noteNumber;
        const stack = sounding.get(key) ?? [];
        stack.push({ tick, velocity: event.velocity, program: programs[event.channel] });
        sounding.set(key, stack);
        break;
      }
      case "noteOff": {
        const key = event.channel * 128 + event.noteNumber;
        const on = sounding.get(key)?.shift();
        if (on === undefined) break; // a note-off with no note sounding: nothing to end
        const part = partFor(r, track, event.channel, name, tag, on.program);
        addNote(r, part, on, tick, event.noteNumber);
        break;
      }
    }
  });
  // Notes never released end with their track.
  for (const [key, stack] of sounding) {
    for (const on of stack) {
      if (tick <= on.tick) continue;
      addNote(r, partFor(r, track, key >> 7, name, tag, on.program), on, tick, key & 127);
    }
  }
  for (const part of r.trackParts) {
    part.name = name;
    part.tag = tag;
  }
  r.trackParts = [];
  r.ends.push(r.seconds(tick));
}

function addNote(
  r: Reading,
  part: Part,
  on: { tick: number; velocity: number; program: number },
  off_tick: number,
  pitch: number,
): void {
  if (off_tick <= on.tick) return; // zero-length: nothing sounds
  part.notes.push({
    pitch,
    velocity: on.velocity,
    startTime: r.seconds(on.tick),
    endTime: r.seconds(off_tick),
    instrument: 0,
    program: on.program,
    isDrum: part.channel === DRUM_CHANNEL,
  });
}

/** Numbers the parts: a `cadenza:instrument=N` tag when unique, else in order of appearance. */
function numberParts(r: Reading): void {
  const parts = [...r.parts.values()].filter((p) => p.notes.length > 0);
  parts.sort((a, b) => a.track - b.track || a.channel - b.channel);
  const tags = parts.map((p) => p.tag);
  const tagged = tags.every((t) => t !== undefined) && new Set(tags).size === tags.length;
  const per_track = new Map<number, number>();
  for (const part of parts) per_track.set(part.track, (per_track.get(part.track) ?? 0) + 1);
  parts.forEach((part, i) => {
    const instrument = tagged ? part.tag! : i;
    const several = per_track.get(part.track)! > 1;
    const base = part.name !== "" ? part.name : `track ${part.track}`;
    const info: InstrumentInfo = {
      instrument,
      name: several ? `${base} (channel ${part.channel + 1})` : base,
      program: part.notes[0].program,
      isDrum: part.channel === DRUM_CHANNEL,
      channel: part.channel,
    };
    r.seq.instrumentInfos.push(info);
    for (const note of part.notes) r.seq.notes.push({ ...note, instrument });
  });
}

/**
 * Reads a type-0 or type-1 Standard MIDI File. Each (track, channel) with notes becomes an
 * instrument; channel 10 (index 9) is drums; a file toMidi wrote comes back with its instrument
 * numbers and meta. A corrupt file is a CadenzaError E_FORMAT naming `options.file` and what is
 * wrong (a file over MAX_MIDI_BYTES is E_LIMIT); it never reads past the end or runs unbounded.
 */
export function fromMidi(bytes: Uint8Array, options: FromMidiOptions = {}): NoteSequence {
  const file = options.file ?? "MIDI data";
  const clean = checkedChunks(bytes, file);
  let data: MidiData;
  try {
    data = parseMidi(clean);
  } catch (err) {
    corrupt(file, err instanceof Error ? err.message : String(err));
  }
  const format = data.header.format;
  if (format !== 0 && format !== 1) {
    corrupt(file, `format ${format}; only type 0 and type 1 files are read`);
  }
  if (data.tracks.length !== data.header.numTracks) {
    corrupt(
      file,
      `the header declares ${data.header.numTracks} tracks but the file holds ${data.tracks.length}`,
    );
  }
  for (const [t, track] of data.tracks.entries()) {
    track.forEach((event, i) => checkEvent(event, file, `track ${t}, event ${i}`));
  }
  const seq: NoteSequence = {
    notes: [],
    tempos: [],
    timeSignatures: [],
    keySignatures: [],
    instrumentInfos: [],
    totalTime: 0,
  };
  const r: Reading = {
    file,
    seconds: tickClock(data, file),
    seq,
    parts: new Map(),
    trackParts: [],
    ends: [],
  };
  data.tracks.forEach((events, track) => readTrack(r, events, track, format));
  numberParts(r);
  seq.notes.sort((a, b) =>
    a.startTime - b.startTime || a.instrument - b.instrument || a.pitch - b.pitch
  );
  if (seq.tempos.length === 0 && data.header.ticksPerBeat !== undefined) {
    seq.tempos.push({ time: 0, qpm: 120 });
  }
  for (const end of r.ends) seq.totalTime = Math.max(seq.totalTime, end);
  for (const note of seq.notes) seq.totalTime = Math.max(seq.totalTime, note.endTime);
  try {
    validateSequence(seq, file);
  } catch (err) {
    corrupt(file, err instanceof Error ? err.message : String(err));
  }
  return seq;
}
