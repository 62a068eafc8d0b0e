/**
 * Music output (src/music): the note-sequence functions, MIDI files checked by the tests' own
 * SMF reader (test/midi-parse.ts, independent of the library that writes them), corrupt files,
 * the piano-roll PNG (its IHDR read here), audio through FluidSynth (its WAV read here) and the
 * key finder. Runtime-neutral; test/music-io.test.ts and test/deno/music-io.test.ts register
 * them.
 */

import {
  barTimes,
  emptySequence,
  type InstrumentInfo,
  keyName,
  keySharps,
  MAX_BARS,
  type Note,
  type NoteSequence,
  quantizeSequence,
  quartersToSeconds,
  secondsToQuarters,
  sortNotes,
  totalBars,
  validateSequence,
} from "../../src/music/sequence.ts";
import { fromMidi, MIDI_PPQ, toMidi } from "../../src/music/midi.ts";
import {
  findKey,
  keyOfHistogram,
  KK_MAJOR_PROFILE,
  KK_MINOR_PROFILE,
} from "../../src/music/keyfinder.ts";
import { findFluidSynth, renderWav } from "../../src/music/audio.ts";
import { renderPianoRoll } from "../../src/music/pianoroll.ts";
import tonejs from "@tonejs/midi";
import { Rng } from "../helpers.ts";
import { decodePng, type PngImage, pngSize } from "../png-read.ts";
import { parseSmf, type SmfFile } from "../midi-parse.ts";
import {
  type Case,
  check,
  fail,
  rejectsCadenza,
  throwsCadenza,
  throwsCadenzaWith,
} from "./check.ts";

/** A case that may be skipped, with the reason (the runtimes' test files honour it). */
export interface MusicCase extends Case {
  skip?: string;
}

// ---------------------------------------------------------------------------------------------
// A test piece: melody, chords, bass and drums over `bars` bars, on a step grid.

export const PARTS: InstrumentInfo[] = [
  { instrument: 0, name: "melody", program: 73, isDrum: false, channel: 0 },
  { instrument: 1, name: "chords", program: 0, isDrum: false, channel: 1 },
  { instrument: 2, name: "bass", program: 33, isDrum: false, channel: 2 },
  { instrument: 9, name: "drums", program: 0, isDrum: true, channel: 9 },
];

export interface PieceOptions {
  bars: number;
  tempo: number;
  meter: [number, number];
  tonic: number;
  mode: "major" | "minor";
  seed: number;
}

const MAJOR = [0, 2, 4, 5, 7, 9, 11];
const MINOR = [0, 2, 3, 5, 7, 8, 10];

/** A seeded piece in the key: random scale notes in the melody, I/IV/V triads, roots in the bass. */
export function testPiece(o: PieceOptions): NoteSequence {
  const rng = new Rng(o.seed);
  const spq = 4;
  const seq = emptySequence({
    tempo: o.tempo,
    meter: o.meter,
    key: { tonic: o.tonic, mode: o.mode },
    instruments: PARTS,
    stepsPerQuarter: spq,
    meta: { title: "test piece", seed: String(o.seed), trained: "false" },
  });
  const scale = o.mode === "major" ? MAJOR : MINOR;
  const bar_steps = (o.meter[0] * 4 * spq) / o.meter[1];
  const add = (pitch: number, start: number, end: number, part: InstrumentInfo, velocity = 80) => {
    const note: Note = {
      pitch,
      velocity,
      startTime: quartersToSeconds(seq, start / spq),
      endTime: quartersToSeconds(seq, end / spq),
      instrument: part.instrument,
      program: part.program,
      isDrum: part.isDrum,
      quantizedStartStep: start,
      quantizedEndStep: end,
    };
    seq.notes.push(note);
  };
  for (let bar = 0; bar < o.bars; bar++) {
    const at = bar * bar_steps;
    const degree = [0, 3, 4, 0][bar % 4];
    const root = o.tonic + scale[degree];
    for (const third of [0, 2, 4]) {
      const d = degree + third;
      add(48 + o.tonic + scale[d % 7] + 12 * Math.floor(d / 7), at, at + bar_steps, PARTS[1], 64);
    }
    add(36 + (root % 12), at, at + bar_steps, PARTS[2], 90);
    for (let s = 0; s < bar_steps; s += 2) {
      const d = rng.int(0, 6);
      add(60 + o.tonic + scale[d], at + s, at + s + rng.int(1, 2), PARTS[0], rng.int(60, 110));
    }
    for (let s = 0; s < bar_steps; s += spq) {
      add(s === 0 ? 36 : 42, at + s, at + s + 1, PARTS[3], 100);
    }
  }
  seq.totalTime = quartersToSeconds(seq, (o.bars * bar_steps) / spq);
  validateSequence(seq);
  return seq;
}

const BASE: PieceOptions = { bars: 8, tempo: 120, meter: [4, 4], tonic: 9, mode: "minor", seed: 7 };

// ---------------------------------------------------------------------------------------------
// Sequence functions.

const sequenceCases: Case[] = [
  {
    name: "sequence: bars follow tempo and meter (8 bars of 4/4 at 120 = 16 s; 16 of 3/4 at 90)",
    run: () => {
      const a = testPiece(BASE);
      check(Math.abs(a.totalTime - 16) < 1e-9, () => `totalTime ${a.totalTime}`);
      check(Math.abs(totalBars(a) - 8) < 1e-9, () => `bars ${totalBars(a)}`);
      const b = testPiece({ ...BASE, bars: 16, tempo: 90, meter: [3, 4] });
      check(Math.abs(b.totalTime - 32) < 1e-9, () => `3/4 at 90: totalTime ${b.totalTime}`);
      check(Math.abs(totalBars(b) - 16) < 1e-9, () => `3/4 at 90: bars ${totalBars(b)}`);
    },
  },
  {
    name: "sequence: seconds <-> quarters through a tempo change",
    run: () => {
      const seq = emptySequence({ tempo: 60 });
      seq.tempos.push({ time: 4, qpm: 120 });
      // 4 s at 60 qpm = 4 quarters, then 2 s at 120 = 4 more.
      check(secondsToQuarters(seq, 6) === 8, () => `quarters at 6 s: ${secondsToQuarters(seq, 6)}`);
      check(quartersToSeconds(seq, 8) === 6, () => `seconds at 8 q: ${quartersToSeconds(seq, 8)}`);
      check(quartersToSeconds(seq, 2) === 2, () => `seconds at 2 q: ${quartersToSeconds(seq, 2)}`);
    },
  },
  {
    name: "sequence: bar lines through a meter change, and a bounded walk for absurd lengths",
    run: () => {
      const seq = emptySequence({ tempo: 120 }); // 4/4: a bar is 2 s
      seq.timeSignatures.push({ time: 4, numerator: 3, denominator: 4 }); // then 1.5 s bars
      seq.totalTime = 7;
      const bars = barTimes(seq);
      check(bars.join() === "0,2,4,5.5", () => `bar times ${bars}`);
      check(totalBars(seq) === 4, () => `bars ${totalBars(seq)}`);
      seq.totalTime = 6.25; // half of the last 3/4 bar
      check(totalBars(seq) === 3.5, () => `bars ${totalBars(seq)}`);
      const absurd = emptySequence({ tempo: 100_000, totalTime: 86_400 });
      check(barTimes(absurd).length === MAX_BARS, () => `${barTimes(absurd).length} bars`);
    },
  },
  {
    name: "sequence: validateSequence names the note and the field",
    run: () => {
      const seq = testPiece(BASE);
      const broken = (edit: (s: NoteSequence) => void) => () => {
        const copy = sortNotes(seq);
        edit(copy);
        validateSequence(copy);
      };
      throwsCadenzaWith(
        broken((s) => (s.notes[3].pitch = 130)),
        "E_ARGUMENT",
        "notes[3]",
        "pitch is 130",
        "0..127",
      );
      throwsCadenzaWith(
        broken((s) => (s.notes[5].velocity = 0)),
        "E_ARGUMENT",
        "notes[5]",
        "velocity",
      );
      throwsCadenzaWith(
        broken((s) => (s.notes[2].endTime = s.notes[2].startTime)),
        "E_ARGUMENT",
        "notes[2]",
        "endTime",
      );
      throwsCadenzaWith(
        broken((s) => (s.tempos[0].qpm = 0)),
        "E_ARGUMENT",
        "tempos[0]",
        "qpm is 0",
      );
      throwsCadenzaWith(
        broken((s) => (s.timeSignatures[0].denominator = 3)),
        "E_ARGUMENT",
        "timeSignatures[0]",
        "denominator is 3",
      );
      throwsCadenzaWith(broken((s) => (s.totalTime = 1)), "E_ARGUMENT", "totalTime 1");
      throwsCadenzaWith(
        broken((s) => (s.notes.find((n) => n.instrument === 9)!.isDrum = false)),
        "E_ARGUMENT",
        "isDrum is false but instrument 9 has isDrum true",
      );
      throwsCadenzaWith(
        broken((s) => (s.notes[0].startTime = NaN)),
        "E_ARGUMENT",
        "notes[0]",
        "startTime is NaN",
      );
    },
  },
  {
    name: "sequence: quantizeSequence rounds to the step grid and keeps notes at least a step long",
    run: () => {
      const seq = emptySequence({ tempo: 120 }); // a quarter is 0.5 s, a 16th step 0.125 s
      const note = { velocity: 80, instrument: 0, program: 0, isDrum: false };
      seq.notes.push({ ...note, pitch: 60, startTime: 0.13, endTime: 0.36 });
      seq.notes.push({ ...note, pitch: 62, startTime: 0.5, endTime: 0.51 });
      seq.totalTime = 1;
      const q = quantizeSequence(seq, 4);
      check(q.stepsPerQuarter === 4, () => `stepsPerQuarter ${q.stepsPerQuarter}`);
      const steps = q.notes.map((n) => [n.quantizedStartStep, n.quantizedEndStep].join("-"));
      check(steps.join(",") === "1-3,4-5", () => `steps ${steps}`);
      check(seq.notes[0].quantizedStartStep === undefined, () => "the input was modified");
    },
  },
  {
    name: "sequence: key names and signatures (A minor 0, Eb major -3, F# major 6, B minor 2)",
    run: () => {
      const rows: [number, "major" | "minor", string, number][] = [
        [9, "minor", "A minor", 0],
        [3, "major", "Eb major", -3],
        [6, "major", "F# major", 6],
        [11, "minor", "B minor", 2],
        [5, "major", "F major", -1],
        [0, "minor", "C minor", -3],
      ];
      for (const [key, mode, name, sharps] of rows) {
        check(keyName({ key, mode }) === name, () => `${key} ${mode}: ${keyName({ key, mode })}`);
        check(keySharps({ key, mode }) === sharps, () => `${name}: ${keySharps({ key, mode })}`);
      }
    },
  },
];

// ---------------------------------------------------------------------------------------------
// MIDI: written by toMidi, read by the tests' own parser.

function trackNamed(file: SmfFile, name: string) {
  const track = file.tracks.find((t) => t.name === name);
  if (track === undefined) fail(`no track named ${name}: ${file.tracks.map((t) => t.name)}`);
  return track;
}

function checkPieceFile(seq: NoteSequence, o: PieceOptions): SmfFile {
  const file = parseSmf(toMidi(seq));
  check(file.format === 1 && file.ppq === MIDI_PPQ, () => `format ${file.format}, ppq ${file.ppq}`);
  check(file.tempos.length === 1, () => `${file.tempos.length} tempo events`);
  const us = Math.round(60e6 / o.tempo);
  check(
    file.tempos[0].microsecondsPerQuarter === us,
    () => `tempo ${file.tempos[0].microsecondsPerQuarter} us`,
  );
  const ts = file.timeSignatures;
  check(
    ts.length === 1 && ts[0].numerator === o.meter[0] && ts[0].denominator === o.meter[1],
    () => `time signatures ${JSON.stringify(ts)}`,
  );
  const ks = file.keySignatures;
  const sharps = keySharps({ key: o.tonic, mode: o.mode });
  check(
    ks.length === 1 && ks[0].sharps === sharps && ks[0].minor === (o.mode === "minor"),
    () => `key signatures ${JSON.stringify(ks)}, want ${sharps}`,
  );
  const bar_ticks = (file.ppq * 4 * o.meter[0]) / o.meter[1];
  check(
    file.endTick === o.bars * bar_ticks,
    () => `ends at tick ${file.endTick}, want ${o.bars} bars`,
  );
  for (const part of PARTS) {
    const track = trackNamed(file, part.name);
    check(
      track.channels.length === 1 && track.channels[0] === part.channel,
      () => `${part.name}: channels ${track.channels}, want ${part.channel}`,
    );
    check(track.programs.get(part.channel) === part.program, () => `${part.name}: program`);
    const want = seq.notes.filter((n) => n.instrument === part.instrument);
    check(
      track.notes.length === want.length,
      () => `${part.name}: ${track.notes.length} notes, want ${want.length}`,
    );
    want.sort((a, b) => a.startTime - b.startTime || a.pitch - b.pitch);
    track.notes.forEach((n, i) => {
      const w = want[i];
      const start = w.quantizedStartStep! * (file.ppq / 4);
      const end = w.quantizedEndStep! * (file.ppq / 4);
      check(
        n.pitch === w.pitch && n.velocity === w.velocity && n.startTick === start &&
          n.endTick === end,
        () =>
          `${part.name} note ${i}: ${
            JSON.stringify(n)
          }, want ${w.pitch} ${w.velocity} ${start}-${end}`,
      );
    });
  }
  return file;
}

/** Notes compared after a round trip: times to within half a tick at the piece's tempo. */
function checkSameNotes(a: NoteSequence, b: NoteSequence, tolerance_s: number, what: string): void {
  check(
    a.notes.length === b.notes.length,
    () => `${what}: ${b.notes.length} notes, want ${a.notes.length}`,
  );
  const x = sortNotes(a).notes;
  const y = sortNotes(b).notes;
  x.forEach((n, i) => {
    const m = y[i];
    const same = n.pitch === m.pitch && n.velocity === m.velocity &&
      n.instrument === m.instrument &&
      n.program === m.program && n.isDrum === m.isDrum &&
      Math.abs(n.startTime - m.startTime) <= tolerance_s &&
      Math.abs(n.endTime - m.endTime) <= tolerance_s;
    check(same, () => `${what}: note ${i}: ${JSON.stringify(m)}, want ${JSON.stringify(n)}`);
  });
}

/** A hand-made type-0 file: two channels in one track, running status, a tempo of 100 qpm. */
function typeZeroFile(): Uint8Array {
  const track = [
    0x00,
    0xff,
    0x03,
    0x04,
    ...Array.from("solo", (c) => c.charCodeAt(0)),
    0x00,
    0xff,
    0x51,
    0x03,
    0x09,
    0x27,
    0xc0, // 600,000 us: 100 qpm
    0x00,
    0xff,
    0x58,
    0x04,
    0x06,
    0x03,
    0x18,
    0x08, // 6/8
    0x00,
    0xff,
    0x59,
    0x02,
    0xfe,
    0x01, // two flats, minor: G minor
    0x00,
    0xc0,
    0x18, // channel 1 program 24
    0x00,
    0x90,
    0x40,
    0x50, // ch1 E4 on
    0x00,
    0x99,
    0x24,
    0x64, // ch10 kick on
    0x60,
    0x89,
    0x24,
    0x00, // 96 ticks later kick off
    0x00,
    0x80,
    0x40,
    0x00, // E4 off (ch1)
    0x00,
    0x90,
    0x43,
    0x50, // G4 on
    0x83,
    0x00,
    0x43,
    0x00, // running status: G4 off (velocity 0) 384 ticks later
    0x00,
    0xff,
    0x2f,
    0x00,
  ];
  const header = [0x4d, 0x54, 0x68, 0x64, 0, 0, 0, 6, 0, 0, 0, 1, 0, 96];
  const len = track.length;
  return Uint8Array.from([...header, 0x4d, 0x54, 0x72, 0x6b, 0, 0, len >> 8, len & 0xff, ...track]);
}

const midiCases: Case[] = [
  {
    name:
      "midi: 8 bars of 4/4 at 120 in A minor: tempo, meter, key, named tracks and channels, every note",
    run: () => void checkPieceFile(testPiece(BASE), BASE),
  },
  {
    name: "midi: 16 bars of 3/4 at 90 in Eb major are written exactly",
    run: () => {
      const o: PieceOptions = {
        bars: 16,
        tempo: 90,
        meter: [3, 4],
        tonic: 3,
        mode: "major",
        seed: 3,
      };
      const file = checkPieceFile(testPiece(o), o);
      check(Math.abs(file.tempos[0].qpm - 90) < 1e-4, () => `qpm ${file.tempos[0].qpm}`);
    },
  },
  {
    name: "midi: drums are on channel 10 and the meta travels as text events",
    run: () => {
      const file = parseSmf(toMidi(testPiece(BASE)));
      check(
        trackNamed(file, "drums").channels.join() === "9",
        () => "drums not on channel index 9",
      );
      const texts = file.tracks[0].texts;
      check(texts.includes("cadenza:trained=false"), () => `conductor texts ${texts}`);
      check(file.tracks[0].name === "test piece", () => `title ${file.tracks[0].name}`);
    },
  },
  {
    name: "midi: same sequence, same bytes; a different seed, different bytes",
    run: () => {
      const a = toMidi(testPiece(BASE));
      const b = toMidi(testPiece(BASE));
      const c = toMidi(testPiece({ ...BASE, seed: 8 }));
      check(
        a.length === b.length && a.every((v, i) => v === b[i]),
        () => "same input, different bytes",
      );
      check(
        a.length !== c.length || a.some((v, i) => v !== c[i]),
        () => "different seeds, same bytes",
      );
    },
  },
  {
    name: "midi: round trip keeps notes, instruments, tempo, meter, key and meta",
    run: () => {
      const seq = testPiece({ ...BASE, tempo: 97, meter: [6, 8], tonic: 2, mode: "major" });
      const back = fromMidi(toMidi(seq), { file: "round.mid" });
      // 97 qpm is written as 618,557 us per quarter: times agree to that rounding (< 1e-5 s here).
      checkSameNotes(seq, back, 1e-4, "round trip");
      check(Math.abs(back.tempos[0].qpm - 97) < 1e-3, () => `tempo ${back.tempos[0].qpm}`);
      const ts = back.timeSignatures[0];
      check(
        ts.numerator === 6 && ts.denominator === 8,
        () => `meter ${ts.numerator}/${ts.denominator}`,
      );
      const ks = back.keySignatures[0];
      check(ks.key === 2 && ks.mode === "major", () => `key ${JSON.stringify(ks)}`);
      check(Math.abs(back.totalTime - seq.totalTime) < 1e-4, () => `totalTime ${back.totalTime}`);
      const names = back.instrumentInfos.map((i) =>
        `${i.instrument}:${i.name}:${i.channel}:${i.program}`
      );
      const want = PARTS.map((i) => `${i.instrument}:${i.name}:${i.channel}:${i.program}`);
      check(names.join() === want.join(), () => `instruments ${names}, want ${want}`);
      check(
        back.meta?.trained === "false" && back.meta?.title === "test piece",
        () => JSON.stringify(back.meta),
      );
      // And once more: a sequence read back writes the same file.
      const again = toMidi(back);
      const first = toMidi(seq);
      check(
        again.length === first.length && again.every((v, i) => v === first[i]),
        () => "second trip differs",
      );
    },
  },
  {
    name: "midi: unquantized times survive to within half a tick; repeated notes are not merged",
    run: () => {
      const seq = emptySequence({ tempo: 133 });
      const rng = new Rng(11);
      let t = 0;
      for (let i = 0; i < 200; i++) {
        const length = rng.uniform(0.01, 0.4);
        const pitch = rng.int(0, 3) === 0 ? 60 : rng.int(21, 108); // many repeats of 60
        seq.notes.push({
          pitch,
          velocity: rng.int(1, 127),
          startTime: t,
          endTime: t + length,
          instrument: 0,
          program: 5,
          isDrum: false,
        });
        t += length; // back to back: a repeated pitch ends on the tick where it starts again
      }
      seq.totalTime = t;
      const bytes = toMidi(seq);
      const overlaps = parseSmf(bytes).tracks[1].overlaps;
      check(overlaps === 0, () => `${overlaps} note-ons before the same key's note-off`);
      const back = fromMidi(bytes);
      const half_tick = 60 / 133 / MIDI_PPQ / 2;
      checkSameNotes(seq, back, half_tick + 1e-9, "unquantized");
    },
  },
  {
    name:
      "midi: a type-0 file with two channels becomes two instruments (running status, 6/8, G minor)",
    run: () => {
      const seq = fromMidi(typeZeroFile(), { file: "type0.mid" });
      check(
        seq.instrumentInfos.length === 2,
        () => `instruments ${JSON.stringify(seq.instrumentInfos)}`,
      );
      const drums = seq.instrumentInfos.find((i) => i.isDrum);
      check(drums?.channel === 9, () => `drums ${JSON.stringify(drums)}`);
      const tune = seq.notes.filter((n) => !n.isDrum);
      check(tune.length === 2 && tune.every((n) => n.program === 24), () => JSON.stringify(tune));
      // 96 ticks per quarter at 100 qpm: a quarter is 0.6 s; G4 starts at 96 and ends 384 later.
      const g = tune[1];
      check(
        Math.abs(g.startTime - 0.6) < 1e-9 && Math.abs(g.endTime - 3.0) < 1e-9,
        () => JSON.stringify(g),
      );
      check(
        seq.timeSignatures[0].numerator === 6 && seq.timeSignatures[0].denominator === 8,
        () => "6/8",
      );
      check(
        seq.keySignatures[0].key === 7 && seq.keySignatures[0].mode === "minor",
        () => "G minor",
      );
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Corrupt files: always a CadenzaError naming the file, never a crash or a hang.

/** A type-0 file around one track's event bytes (no end-of-track unless given). */
function smf(ppq: number, events: number[]): Uint8Array {
  const header = [0x4d, 0x54, 0x68, 0x64, 0, 0, 0, 6, 0, 0, 0, 1, ppq >> 8, ppq & 0xff];
  const n = events.length;
  return Uint8Array.from([...header, 0x4d, 0x54, 0x72, 0x6b, 0, 0, n >> 8, n & 0xff, ...events]);
}

function corruptions(): [string, Uint8Array, RegExp][] {
  const good = toMidi(testPiece({ ...BASE, bars: 2 }));
  const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  const edited = (edit: (b: Uint8Array) => void) => {
    const copy = good.slice();
    edit(copy);
    return copy;
  };
  const first_track = 14; // MThd is 14 bytes
  return [
    ["empty", new Uint8Array(0), /MThd/],
    ["text", new TextEncoder().encode("this is not a MIDI file at all"), /MThd/],
    ["truncated", good.subarray(0, good.length - 7), /declares \d+ bytes but \d+ remain/],
    [
      "track length past the end",
      edited((b) => view(b).setUint32(first_track + 4, 0x7fffffff)),
      /declares/,
    ],
    ["missing track", edited((b) => view(b).setUint16(10, 9)), /declares 9 tracks/],
    ["format 2", edited((b) => view(b).setUint16(8, 2)), /format 2/],
    ["zero ticks per quarter", edited((b) => view(b).setUint16(12, 0)), /ticks per quarter/],
    [
      "unknown event byte",
      edited((b) => {
        // The second track's first event: its delta is at +8, its status byte at +9.
        const second = first_track + 8 + view(b).getUint32(first_track + 4);
        b[second + 9] = 0xf4;
      }),
      /[Uu]nrecognised/,
    ],
    [
      "absurd delta time",
      smf(1, [0x00, 0x90, 60, 80, 0xff, 0xff, 0xff, 0x7f, 0x80, 60, 0]),
      /more than 86400 s/,
    ],
    ["tempo of 0 us", smf(96, [0x00, 0xff, 0x51, 0x03, 0, 0, 0]), /microseconds per beat is 0/],
    ["cut inside an event", smf(96, [0x00, 0x90, 60]), /velocity is undefined/],
  ];
}

/** A type-1 file of `tracks` tracks, each with one note on each of the 16 channels. */
function manyTracksFile(tracks: number): Uint8Array {
  const track: number[] = [];
  for (let ch = 0; ch < 16; ch++) track.push(0x00, 0x90 | ch, 60, 64);
  for (let ch = 0; ch < 16; ch++) track.push(ch === 0 ? 0x0a : 0x00, 0x80 | ch, 60, 0);
  track.push(0x00, 0xff, 0x2f, 0x00);
  const chunk = [0x4d, 0x54, 0x72, 0x6b, 0, 0, 0, track.length, ...track];
  const out = new Uint8Array(14 + tracks * chunk.length);
  out.set([0x4d, 0x54, 0x68, 0x64, 0, 0, 0, 6, 0, 1, tracks >> 8, tracks & 0xff, 0, 96]);
  for (let t = 0; t < tracks; t++) out.set(chunk, 14 + t * chunk.length);
  return out;
}

const corruptCases: Case[] = [
  {
    name:
      "midi: a file written by another library (@tonejs/midi) reads back, its bad key signature skipped",
    run: () => {
      const midi = new tonejs.Midi();
      midi.header.setTempo(90);
      midi.header.keySignatures.push({ key: "G", scale: "major", ticks: 0 }); // written as 0x0F
      midi.header.update();
      const track = midi.addTrack();
      track.name = "lead";
      track.channel = 3;
      track.instrument.number = 40;
      for (let i = 0; i < 8; i++) {
        track.addNote({ midi: 60 + i, time: i * 0.5, duration: 0.25, velocity: 100 / 127 });
      }
      const seq = fromMidi(midi.toArray(), { file: "tonejs.mid" });
      check(seq.notes.length === 8, () => `${seq.notes.length} notes`);
      check(seq.keySignatures.length === 0, () => `key ${JSON.stringify(seq.keySignatures)}`);
      check(Math.abs(seq.tempos[0].qpm - 90) < 1e-3, () => `tempo ${seq.tempos[0].qpm}`);
      const info = seq.instrumentInfos[0];
      check(
        info.name === "lead" && info.channel === 3 && info.program === 40,
        () => JSON.stringify(info),
      );
      // Ticks at 480 ppq and 90 qpm: within half a tick (0.7 ms) of the times given.
      seq.notes.forEach((n, i) => {
        const ok = n.pitch === 60 + i && n.velocity === 100 &&
          Math.abs(n.startTime - i * 0.5) < 7e-4 &&
          Math.abs(n.endTime - n.startTime - 0.25) < 1.4e-3;
        check(ok, () => `note ${i}: ${JSON.stringify(n)}`);
      });
    },
  },
  {
    name:
      "midi: SMPTE time (25 fps x 40 ticks = 1 ms a tick); a note never released ends with its track",
    run: () => {
      const bytes = smf(0, [
        0x00,
        0x90,
        60,
        100, // C4 on at 0
        0x00,
        0x91,
        64,
        90, // E4 on at 0 (channel 2), never released
        0x83,
        0x74,
        0x80,
        60,
        0, // 500 ticks later: C4 off
        0x87,
        0x68,
        0xff,
        0x2f,
        0x00, // end of track 1000 ticks later (1.5 s)
      ]);
      bytes.set([0xe7, 0x28], 12); // -25 frames per second, 40 ticks per frame
      const seq = fromMidi(bytes, { file: "smpte.mid" });
      const [c, e] = seq.notes;
      check(c.pitch === 60 && Math.abs(c.endTime - 0.5) < 1e-9, () => `C4 ${JSON.stringify(c)}`);
      check(e.pitch === 64 && Math.abs(e.endTime - 1.5) < 1e-9, () => `E4 ${JSON.stringify(e)}`);
      check(Math.abs(seq.totalTime - 1.5) < 1e-9, () => `totalTime ${seq.totalTime}`);
    },
  },
  {
    name: "midi: 4,000 tracks x 16 channels read in linear time (64,000 parts)",
    run: () => {
      const seq = fromMidi(manyTracksFile(4000), { file: "wide.mid" });
      check(seq.instrumentInfos.length === 64000, () => `${seq.instrumentInfos.length} parts`);
      check(seq.notes.length === 64000, () => `${seq.notes.length} notes`);
      const last = seq.instrumentInfos[63999];
      check(
        last.name === "track 3999 (channel 16)" && last.channel === 15,
        () => JSON.stringify(last),
      );
      check(
        seq.instrumentInfos[9].isDrum && !seq.instrumentInfos[8].isDrum,
        () => "channel 10 is drums",
      );
    },
  },
  {
    name: "midi: corrupt files are a CadenzaError E_FORMAT naming the file and the fault",
    run: () => {
      for (const [what, bytes, pattern] of corruptions()) {
        const err = throwsCadenza(
          () => fromMidi(bytes, { file: "bad.mid" }),
          "E_FORMAT",
          pattern,
          what,
        );
        check(err.message.startsWith("bad.mid: "), () => `${what}: ${err.message}`);
      }
    },
  },
  {
    name: "midi: fuzzed bytes never crash or hang fromMidi (2,000 mutations of a good file)",
    run: () => {
      const good = toMidi(testPiece({ ...BASE, bars: 2 }));
      const rng = new Rng(5);
      let read = 0;
      for (let i = 0; i < 2000; i++) {
        const bytes = good.slice(0, rng.int(0, 3) === 0 ? rng.int(0, good.length) : good.length);
        for (let k = rng.int(1, 4); k > 0; k--) {
          bytes[rng.int(0, Math.max(0, bytes.length - 1))] = rng.int(0, 255);
        }
        try {
          fromMidi(bytes, { file: `fuzz-${i}.mid` });
          read++;
        } catch (err) {
          const code = (err as { code?: string }).code;
          check(code === "E_FORMAT" || code === "E_LIMIT", () => `mutation ${i}: ${String(err)}`);
        }
      }
      check(read > 0, () => "no mutation was readable: the reader rejects too much");
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Key finder.

/** Plain Pearson correlation, written out again here as the reference. */
function correlation(x: number[], y: readonly number[]): number {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let dx = 0;
  let dy = 0;
  for (let i = 0; i < n; i++) {
    num += (x[i] - mx) * (y[i] - my);
    dx += (x[i] - mx) ** 2;
    dy += (y[i] - my) ** 2;
  }
  return num / Math.sqrt(dx * dy);
}

/** A cadence I-IV-V-I (major) or i-iv-V-i with the leading tone (harmonic minor), in block chords. */
function cadence(tonic: number, mode: "major" | "minor"): NoteSequence {
  const seq = emptySequence({ tempo: 120 });
  const third = mode === "major" ? 4 : 3;
  const chords = [
    [0, third, 7],
    [5, 5 + (mode === "major" ? 4 : 3), 12],
    [7, 11, 14],
    [0, third, 7],
  ];
  chords.forEach((chord, i) => {
    for (const step of chord) {
      const note = { velocity: 80, instrument: 0, program: 0, isDrum: false };
      seq.notes.push({ ...note, pitch: 60 + tonic + step, startTime: i, endTime: i + 1 });
    }
    seq.notes.push({
      pitch: 36 + tonic + chord[0],
      velocity: 80,
      startTime: i,
      endTime: i + 1,
      instrument: 1,
      program: 32,
      isDrum: false,
    });
  });
  seq.totalTime = 4;
  return seq;
}

const keyCases: Case[] = [
  {
    name: "key finder: cadences in all 24 keys are found, with the textbook correlation",
    run: () => {
      for (const mode of ["major", "minor"] as const) {
        for (let tonic = 0; tonic < 12; tonic++) {
          const seq = cadence(tonic, mode);
          const key = findKey(seq);
          check(
            key.tonic === tonic && key.mode === mode,
            () => `${keyName({ key: tonic, mode })}: found ${key.name}`,
          );
          const histogram = new Array(12).fill(0);
          for (const n of seq.notes) histogram[n.pitch % 12] += n.endTime - n.startTime;
          const profile = mode === "major" ? KK_MAJOR_PROFILE : KK_MINOR_PROFILE;
          const rotated = histogram.map((_, p) => histogram[(p + tonic) % 12]);
          const want = correlation(rotated, profile);
          check(
            Math.abs(key.correlation - want) < 1e-12,
            () => `${key.name}: r ${key.correlation}, want ${want}`,
          );
        }
      }
    },
  },
  {
    name: "key finder: durations weigh; transposing moves the tonic and keeps the correlation",
    run: () => {
      // C E G held long, A and the other scale notes short: C major, not A minor.
      const c = keyOfHistogram([4, 0, 1, 0, 4, 1, 0, 4, 0, 1, 0, 1]);
      check(c.name === "C major", () => `found ${c.name}`);
      // The same pitches with A, C and E long: A minor.
      const a = keyOfHistogram([4, 0, 1, 0, 4, 1, 0, 1, 0, 4, 0, 1]);
      check(a.name === "A minor", () => `found ${a.name}`);
      const base = cadence(0, "minor");
      const r0 = findKey(base).correlation;
      for (let shift = 1; shift < 12; shift++) {
        const moved = sortNotes(base);
        for (const n of moved.notes) n.pitch += shift;
        const key = findKey(moved);
        check(key.tonic === shift && key.mode === "minor", () => `shift ${shift}: ${key.name}`);
        check(
          Math.abs(key.correlation - r0) < 1e-12,
          () => `shift ${shift}: r ${key.correlation} != ${r0}`,
        );
      }
      throwsCadenza(() => findKey(emptySequence()), "E_ARGUMENT", /no key/, "no notes");
    },
  },
  {
    name:
      "key finder: pieces read back from MIDI files keep their keys (A minor, Eb major, F# major, D minor)",
    run: () => {
      const rows: [number, "major" | "minor"][] = [
        [9, "minor"],
        [3, "major"],
        [6, "major"],
        [2, "minor"],
      ];
      for (const [tonic, mode] of rows) {
        const seq = fromMidi(toMidi(testPiece({ ...BASE, bars: 16, tonic, mode })), {
          file: "key.mid",
        });
        const key = findKey(seq);
        const want = keyName({ key: tonic, mode });
        check(
          key.name === want,
          () => `found ${key.name} (r ${key.correlation.toFixed(3)}), want ${want}`,
        );
        // Drums never count: the drum part alone has no key.
        throwsCadenza(() => findKey(seq, { instruments: [9] }), "E_ARGUMENT", /no key/, "drums");
      }
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Piano roll: the PNG decoded here (test/png-read.ts), pixels counted by colour.

const COLOURS: Record<string, [number, number, number]> = {
  melody: [0xd5, 0x5e, 0x00],
  chords: [0x00, 0x72, 0xb2],
  bass: [0x00, 0x9e, 0x73],
  drums: [0x5f, 0x6b, 0x73],
};

/** Pixels within 3 of `rgb` in every channel, inside rows [top, bottom). */
function countColour(img: PngImage, rgb: [number, number, number], top = 0, bottom = img.height) {
  let n = 0;
  for (let y = top; y < bottom; y++) {
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 4;
      const p = img.pixels;
      if (
        Math.abs(p[i] - rgb[0]) <= 3 && Math.abs(p[i + 1] - rgb[1]) <= 3 &&
        Math.abs(p[i + 2] - rgb[2]) <= 3
      ) n++;
    }
  }
  return n;
}

/** Dark (text-coloured) pixels in rows [top, bottom). */
const darkPixels = (img: PngImage, top: number, bottom: number) => {
  let n = 0;
  for (let y = top; y < bottom; y++) {
    for (let x = 0; x < img.width; x++) {
      const i = (y * img.width + x) * 4;
      if (img.pixels[i] < 90 && img.pixels[i + 1] < 90 && img.pixels[i + 2] < 90) n++;
    }
  }
  return n;
};

/** Full velocity: the notes are drawn opaque in their part's colour. */
function loudPiece(o: PieceOptions): NoteSequence {
  const seq = testPiece(o);
  for (const n of seq.notes) n.velocity = 127;
  return seq;
}

const pianoRollCases: MusicCase[] = [
  {
    name: "piano roll: a PNG whose width grows with the bars (36 px per quarter: 144 per 4/4 bar)",
    run: () => {
      let last = 0;
      for (const bars of [2, 4, 8, 16]) {
        const png = renderPianoRoll(testPiece({ ...BASE, bars }));
        const { width, height } = pngSize(png);
        check(width > last, () => `${bars} bars: width ${width} not above ${last}`);
        // Margins 52 + 16 px, then the bars.
        check(
          width === 68 + 144 * bars,
          () => `${bars} bars: width ${width}, want ${68 + 144 * bars}`,
        );
        check(height > 200 && height < 800, () => `${bars} bars: height ${height}`);
        last = width;
      }
      const waltz = pngSize(renderPianoRoll(testPiece({ ...BASE, bars: 8, meter: [3, 4] })));
      check(waltz.width === 68 + 108 * 8, () => `8 bars of 3/4: width ${waltz.width}`);
      const long = pngSize(renderPianoRoll(testPiece({ ...BASE, bars: 512, tempo: 200 })));
      check(long.width === 4000, () => `512 bars: width ${long.width}, want the 4000 px cap`);
    },
  },
  {
    name: "piano roll: each part in its own colour, and only the parts that play",
    run: () => {
      const seq = loudPiece(BASE);
      const img = decodePng(renderPianoRoll(seq));
      for (const [part, rgb] of Object.entries(COLOURS)) {
        const n = countColour(img, rgb, 60); // below the legend
        check(n > 500, () => `${part}: ${n} pixels of its colour`);
      }
      const no_melody = sortNotes(seq);
      no_melody.notes = no_melody.notes.filter((n) => n.instrument !== 0);
      const img2 = decodePng(renderPianoRoll(no_melody));
      const left = countColour(img2, COLOURS.melody, 60);
      check(left === 0, () => `no melody notes, yet ${left} melody-coloured pixels`);
      check(countColour(img2, COLOURS.bass, 60) > 500, () => "bass missing without the melody");
    },
  },
  {
    name: "piano roll: title and chord symbols are drawn; with no font at all it still renders",
    run: () => {
      const seq = testPiece(BASE);
      const chords = Array.from(
        { length: 8 },
        (_, i) => ({ time: i * 2, symbol: ["Am", "Dm", "E7", "Am"][i % 4] }),
      );
      const full = decodePng(renderPianoRoll(seq, { chords }));
      const bare = decodePng(renderPianoRoll(seq));
      const fontless = decodePng(renderPianoRoll(seq, { chords, systemFonts: false }));
      // Rows 8..30 hold the title; 66..84 the chord symbols (layout constants of pianoroll.ts).
      check(darkPixels(full, 8, 30) > 300, () => `title: ${darkPixels(full, 8, 30)} dark pixels`);
      check(
        darkPixels(full, 66, 84) > 200,
        () => `chords: ${darkPixels(full, 66, 84)} dark pixels`,
      );
      check(
        darkPixels(bare, 66, 84) < 20,
        () => `no chords given, yet ${darkPixels(bare, 66, 84)}`,
      );
      check(darkPixels(fontless, 8, 30) === 0, () => "text drawn with no font loaded?");
      check(
        fontless.width === full.width && fontless.height === full.height,
        () => "fontless size",
      );
    },
  },
  {
    name:
      "piano roll: odd input renders (no notes, drums only, a type-0 file) and bad options are refused",
    run: () => {
      const drums_only = testPiece(BASE);
      drums_only.notes = drums_only.notes.filter((n) => n.isDrum);
      for (const seq of [emptySequence({ totalTime: 2 }), drums_only, fromMidi(typeZeroFile())]) {
        const { width } = pngSize(renderPianoRoll(seq));
        check(width >= 68 + 240, () => `width ${width}`);
      }
      const seq = testPiece(BASE);
      throwsCadenzaWith(
        () => renderPianoRoll(seq, { maxWidth: -1 }),
        "E_ARGUMENT",
        "maxWidth is -1",
      );
      throwsCadenzaWith(
        () => renderPianoRoll(seq, { chords: [{ time: NaN, symbol: "C" }] }),
        "E_ARGUMENT",
        "chords[0]",
      );
      const bad = sortNotes(seq);
      bad.notes[0].pitch = -1;
      throwsCadenzaWith(() => renderPianoRoll(bad), "E_ARGUMENT", "notes[0]", "pitch is -1");
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Audio: FluidSynth's WAV read here (RIFF chunks by hand).

interface Wav {
  rate: number;
  channels: number;
  bits: number;
  samples: Int16Array;
}

function readWav16(bytes: Uint8Array): Wav {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const id = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (id(0) !== "RIFF" || id(8) !== "WAVE") fail("not a RIFF/WAVE file");
  let at = 12;
  let fmt: { rate: number; channels: number; bits: number } | undefined;
  while (at + 8 <= bytes.length) {
    const size = view.getUint32(at + 4, true);
    if (id(at) === "fmt ") {
      const tag = view.getUint16(at + 8, true);
      fmt = {
        channels: view.getUint16(at + 10, true),
        rate: view.getUint32(at + 12, true),
        bits: view.getUint16(at + 22, true),
      };
      check(tag === 1 || tag === 0xfffe, () => `format tag ${tag}`);
    } else if (id(at) === "data") {
      if (fmt === undefined) fail("data before fmt");
      const end = Math.min(bytes.length, at + 8 + size);
      const samples = new Int16Array(bytes.slice(at + 8, end - ((end - at - 8) % 2)).buffer);
      return { ...fmt, samples };
    }
    at += 8 + size + (size & 1);
  }
  return fail("no data chunk");
}

/** RMS of each whole second of the first channel pair, as a fraction of full scale. */
function rmsPerSecond(w: Wav): number[] {
  const frame = w.channels;
  const out: number[] = [];
  for (let s = 0; (s + 1) * w.rate * frame <= w.samples.length; s++) {
    let sum = 0;
    for (let i = s * w.rate * frame; i < (s + 1) * w.rate * frame; i++) sum += w.samples[i] ** 2;
    out.push(Math.sqrt(sum / (w.rate * frame)) / 32768);
  }
  return out;
}

const synth = findFluidSynth();
const NO_SYNTH = synth.missing.length > 0
  ? `missing ${synth.missing.join(" and ")} (sudo apt-get install fluidsynth fluid-soundfont-gm)`
  : undefined;

/** FluidSynth plays on after the last note-off until the voices' release ends: at most this. */
const RELEASE_TAIL_S = 4;

const audioCases: MusicCase[] = [
  {
    name:
      "audio: FluidSynth renders a non-silent WAV as long as the piece (+ <= 4 s release), 44.1 and 22.05 kHz",
    skip: NO_SYNTH,
    run: async () => {
      const seq = testPiece({ ...BASE, bars: 4 }); // 8 s
      const wav = readWav16(await renderWav(seq));
      check(
        wav.rate === 44100 && wav.channels === 2 && wav.bits === 16,
        () => `format ${JSON.stringify({ ...wav, samples: 0 })}`,
      );
      const seconds = wav.samples.length / wav.channels / wav.rate;
      check(
        seconds >= seq.totalTime && seconds <= seq.totalTime + RELEASE_TAIL_S,
        () => `${seconds.toFixed(2)} s of audio for an ${seq.totalTime} s piece`,
      );
      const rms = rmsPerSecond(wav);
      // Every second of the piece sounds (the drums alone hit each beat): above -50 dBFS.
      for (let s = 0; s < seq.totalTime; s++) {
        check(rms[s] > 0.003, () => `second ${s}: RMS ${rms[s]} (silent?)`);
      }
      // The sample rate is honoured, and a length that is no whole number of seconds is fine.
      const short = testPiece({ ...BASE, bars: 2, tempo: 97 }); // 4.948... s
      const low = readWav16(await renderWav(short, { sampleRate: 22050 }));
      const low_s = low.samples.length / low.channels / low.rate;
      check(
        low.rate === 22050 && low_s >= short.totalTime && low_s <= short.totalTime + RELEASE_TAIL_S,
        () => `${low.rate} Hz, ${low_s} s for ${short.totalTime} s`,
      );
    },
  },
  {
    name:
      "audio: a missing FluidSynth or SoundFont is E_UNAVAILABLE saying what and how to install",
    run: async () => {
      const seq = testPiece({ ...BASE, bars: 1 });
      const err = await rejectsCadenza(
        () => renderWav(seq, { soundFont: "/nonexistent/GM.sf2" }),
        "E_UNAVAILABLE",
        /SoundFont \/nonexistent\/GM\.sf2 \(no such file\).*apt-get install fluidsynth fluid-soundfont-gm/,
        "missing SoundFont",
      );
      check(err.message.length < 600, () => `a long message: ${err.message}`);
      const found = findFluidSynth({ soundFont: "/nonexistent/GM.sf2" });
      check(
        found.soundFont === undefined && found.missing.length >= 1,
        () => JSON.stringify(found),
      );
      await rejectsCadenza(
        () => renderWav(seq, { sampleRate: 7 }),
        "E_ARGUMENT",
        /sampleRate is 7/,
        "rate",
      );
    },
  },
];

export const musicIoCases: MusicCase[] = [
  ...sequenceCases,
  ...midiCases,
  ...corruptCases,
  ...keyCases,
  ...pianoRollCases,
  ...audioCases,
];
