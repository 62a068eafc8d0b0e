/**
 * The decoder, the chord vocabulary, voice leading, the bass line and the emotion map, checked
 * against plain float64 references written here and against tonal's chord and scale tables (a
 * music-theory library that is not the code under test). Runtime-neutral;
 * test/decode.test.ts and test/deno/decode.test.ts register them.
 */

import { Chord, Scale } from "tonal";
import {
  bassLine,
  CHORD_CLASSES,
  CHORD_FLOOR,
  CHORD_HIGH,
  CHORD_LOW,
  chordInfo,
  chordSymbol,
  parseKey,
  transposeChord,
  VoiceLeader,
} from "../../src/music/chords.ts";
import { CONTEXT } from "../../src/pipeline/emotion.ts";
import {
  CHORD,
  CHORD_TRACK,
  CONTEXT_CHORD,
  CONTEXT_PREVIOUS_NOTE,
  CONTEXT_SIZE,
  CONTEXT_SPAN_PITCH_CLASSES,
  Decoder,
  type DecoderOptions,
  MELODY_TRACK,
  NOTE_OFF,
  NOTE_ON,
} from "../../src/music/decode.ts";
import {
  EMOTION_NAMES,
  emotionDefaults,
  emotionFromVector,
  emotionPoint,
  emotionVector,
  NAMED_EMOTIONS,
} from "../../src/music/emotion-map.ts";
import { Rng as TestRng } from "../helpers.ts";
import { type Case, check, throwsCadenza } from "./check.ts";
import type { AllocationProbe } from "./audio.ts";

const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

/** Pipeline-shaped outputs with seeded values in each model's output range. */
export function syntheticOutputs(seed: number) {
  const rng = new TestRng(seed);
  const harmony = rng.floats(64, 0, 1);
  const sum = harmony.reduce((a, b) => a + b, 0);
  for (let i = 0; i < 64; i++) harmony[i] /= sum;
  return {
    melody: rng.floats(128, 0.01, 0.99),
    harmony,
    groove: rng.floats(32, -1, 1),
    dynamics: rng.floats(16, 0, 1),
  };
}

const BASE: DecoderOptions = {
  seed: 1,
  tempo: 120,
  meter: [4, 4],
  key: { tonic: 0, mode: "major" },
};

/** Every event of `steps` decoder steps over the same outputs, as text. */
function runDecoder(options: DecoderOptions, steps: number, outputs = syntheticOutputs(3)) {
  const decoder = new Decoder(options);
  const lines: string[] = [];
  for (let s = 0; s < steps; s++) {
    const count = decoder.step(outputs);
    const e = decoder.events;
    for (let i = 0; i < count; i++) {
      lines.push(`${e.kind[i]} ${e.track[i]} ${e.pitch[i]} ${e.velocity[i]} ${e.time[i]}`);
    }
  }
  return lines;
}

/** Melody notes sampled `draws` times from one probability vector. */
function draws(options: Partial<DecoderOptions>, melody: Float32Array, count: number): Int32Array {
  const decoder = new Decoder({ ...BASE, ...options });
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) out[i] = decoder.sampleNote(melody);
  return out;
}

function entropyBits(samples: Int32Array): number {
  const counts = new Map<number, number>();
  for (const s of samples) counts.set(s, (counts.get(s) ?? 0) + 1);
  let h = 0;
  for (const c of counts.values()) {
    const p = c / samples.length;
    h -= p * Math.log2(p);
  }
  return h;
}

/** The exact distribution the sampler should draw from (float64 reference). */
function referenceDistribution(
  melody: Float32Array,
  low: number,
  high: number,
  temperature: number,
  topK: number,
  topP: number,
): Map<number, number> {
  const entries: [number, number][] = [];
  for (let p = low; p <= high; p++) entries.push([p, Math.pow(melody[p], 1 / temperature)]);
  entries.sort((a, b) => b[1] - a[1]);
  let kept = topK > 0 ? entries.slice(0, topK) : entries;
  const total = kept.reduce((a, [, w]) => a + w, 0);
  if (topP < 1) {
    let mass = 0;
    const out: [number, number][] = [];
    for (const entry of kept) {
      out.push(entry);
      mass += entry[1];
      if (mass >= topP * total) break;
    }
    kept = out;
  }
  const sum = kept.reduce((a, [, w]) => a + w, 0);
  return new Map(kept.map(([p, w]) => [p, w / sum]));
}

const determinismCase: Case = {
  name: "decode: the same seed gives the same events, another seed other events",
  run: () => {
    const a = runDecoder(BASE, 256);
    const b = runDecoder(BASE, 256);
    check(a.length > 50, () => `only ${a.length} events in 16 bars`);
    check(a.join("\n") === b.join("\n"), () => "two runs with seed 1 differ");
    const c = runDecoder({ ...BASE, seed: 2 }, 256);
    check(a.join("\n") !== c.join("\n"), () => "seeds 1 and 2 gave the same events");
  },
};

const samplingCase: Case = {
  name: "decode: sampling matches the float64 reference distribution (temperature, top-k, top-p)",
  run: () => {
    const melody = syntheticOutputs(11).melody;
    const n = 20_000;
    for (
      const [temperature, topK, topP] of [[1, 0, 1], [0.5, 0, 1], [2, 0, 1], [1, 5, 1], [
        1,
        0,
        0.3,
      ], [0.7, 8, 0.5]]
    ) {
      const samples = draws({ temperature, topK, topP, low: 48, high: 84 }, melody, n);
      const want = referenceDistribution(melody, 48, 84, temperature, topK, topP);
      const counts = new Map<number, number>();
      for (const s of samples) counts.set(s, (counts.get(s) ?? 0) + 1);
      for (const [pitch, count] of counts) {
        check(
          want.has(pitch),
          () => `T=${temperature} k=${topK} p=${topP}: drew ${pitch}, outside`,
        );
        void count;
      }
      for (const [pitch, p] of want) {
        // Binomial: 5 standard deviations (plus one count) is a false alarm in under 1e-6.
        const got = counts.get(pitch) ?? 0;
        const sd = Math.sqrt(n * p * (1 - p));
        check(
          Math.abs(got - n * p) <= 5 * sd + 1,
          () => `T=${temperature} k=${topK} p=${topP}: note ${pitch} drawn ${got}, want ${n * p}`,
        );
      }
    }
  },
};

const temperatureCase: Case = {
  name: "decode: lower temperature concentrates on the argmax (frequency up, entropy down)",
  run: () => {
    // Every note below 0.7 but one at 0.9: a clear argmax.
    const melody = syntheticOutputs(5).melody.map((x) => 0.01 + 0.69 * x);
    const argmax = 67;
    melody[argmax] = 0.9;
    let lastFreq = -1;
    let lastEntropy = Infinity;
    for (const t of [4, 1, 0.5, 0.2, 0.05]) {
      const samples = draws({ temperature: t }, melody, 10_000);
      const freq = samples.filter((s) => s === argmax).length / samples.length;
      const h = entropyBits(samples);
      check(freq > lastFreq, () => `T=${t}: argmax frequency ${freq} not above ${lastFreq}`);
      check(h < lastEntropy, () => `T=${t}: entropy ${h} not below ${lastEntropy}`);
      lastFreq = freq;
      lastEntropy = h;
    }
    check(lastFreq > 0.9, () => `T=0.05: argmax frequency only ${lastFreq}`);
    const greedy = draws({ temperature: 0 }, melody, 100);
    check(greedy.every((s) => s === argmax), () => "T=0 must always take the argmax");
  },
};

const constraintCase: Case = {
  name: "decode: --constrain key keeps every note in the key (tonal's scale); chord in the chord",
  run: () => {
    for (const key of ["D minor", "Eb major", "F# minor", "A major"]) {
      const parsed = parseKey(key);
      const scale = new Set(Scale.get(key).notes.map((n) => chroma(n)));
      const decoder = new Decoder({ ...BASE, key: parsed, constrain: "key", low: 40, high: 100 });
      const out = syntheticOutputs(8);
      let notes = 0;
      for (let s = 0; s < 512; s++) {
        const count = decoder.step(out);
        const e = decoder.events;
        for (let i = 0; i < count; i++) {
          if (e.kind[i] === CHORD) {
            const tones = Chord.get(chordSymbol(e.pitch[i])).notes.map(chroma);
            check(
              tones.every((t) => scale.has(t)),
              () => `${key}: chord ${e.pitch[i]} not diatonic`,
            );
          }
          if (e.kind[i] !== NOTE_ON || e.track[i] !== MELODY_TRACK) continue;
          notes++;
          check(scale.has(e.pitch[i] % 12), () => `${key}: note ${e.pitch[i]} is not in the key`);
          check(e.pitch[i] >= 40 && e.pitch[i] <= 100, () => `note ${e.pitch[i]} out of range`);
        }
      }
      check(notes > 50, () => `${key}: only ${notes} notes`);
    }
    const decoder = new Decoder({ ...BASE, constrain: "chord" });
    const out = syntheticOutputs(9);
    let tones = new Set<number>();
    let notes = 0;
    for (let s = 0; s < 512; s++) {
      const count = decoder.step(out);
      const e = decoder.events;
      for (let i = 0; i < count; i++) {
        if (e.kind[i] === CHORD) {
          tones = new Set(Chord.get(chordSymbol(e.pitch[i])).notes.map(chroma));
        }
        if (e.kind[i] === NOTE_ON && e.track[i] === MELODY_TRACK) {
          notes++;
          check(tones.has(e.pitch[i] % 12), () => `note ${e.pitch[i]} not in the chord in force`);
        }
      }
    }
    check(notes > 50, () => `chord constraint: only ${notes} notes`);
  },
};

function chroma(name: string | number): number {
  if (typeof name === "number") return name;
  const letter = { C: 0, D: 2, E: 4, F: 5, G: 7, A: 9, B: 11 }[name[0]]!;
  let pc = letter;
  for (const c of name.slice(1)) pc += c === "#" ? 1 : c === "b" ? -1 : 0;
  return ((pc % 12) + 12) % 12;
}

const eventsCase: Case = {
  name:
    "decode: events pair up, notes stay in range, the one melody voice never overlaps itself, chords sound under it",
  run: () => {
    const decoder = new Decoder({ ...BASE, low: 55, high: 79, meter: [3, 4], tempo: 90 });
    const open = new Map<string, number>();
    let melodyOpen = 0;
    let lastTime = 0;
    /** The last melody note begun (in this step too: a chord strikes with its step's note). */
    let melody = -1;
    let chordNotes = 0;
    const out = syntheticOutputs(4);
    const steps = 12 * 8;
    for (let s = 0; s <= steps; s++) {
      const count = s < steps ? decoder.step(out) : decoder.finish(steps * decoder.stepSeconds);
      const e = decoder.events;
      for (let i = 0; i < count; i++) {
        if (e.kind[i] === NOTE_ON && e.track[i] === MELODY_TRACK) melody = e.pitch[i];
      }
      for (let i = 0; i < count; i++) {
        const id = `${e.track[i]}:${e.pitch[i]}`;
        if (e.kind[i] === NOTE_ON) {
          check(!open.has(id), () => `note ${id} started twice without an end`);
          open.set(id, e.time[i]);
          if (e.track[i] === MELODY_TRACK) {
            melodyOpen++;
            check(melodyOpen === 1, () => `melody has ${melodyOpen} notes at once at step ${s}`);
            check(e.pitch[i] >= 55 && e.pitch[i] <= 79, () => `melody note ${e.pitch[i]}`);
          } else {
            // Melody notes of 55 and up are all high enough for the chords to sound under them.
            check(e.track[i] === CHORD_TRACK, () => `track ${e.track[i]}`);
            check(e.pitch[i] >= CHORD_FLOOR && e.pitch[i] <= CHORD_HIGH, () => `chord note ${id}`);
            check(
              melody < 0 || e.pitch[i] < melody,
              () => `step ${s}: chord note ${e.pitch[i]} not under the melody's ${melody}`,
            );
            chordNotes++;
          }
          check(e.velocity[i] >= 1 && e.velocity[i] <= 127, () => `velocity ${e.velocity[i]}`);
        } else if (e.kind[i] === NOTE_OFF) {
          const start = open.get(id);
          check(start !== undefined, () => `note ${id} ended without a start`);
          check(e.time[i] > start!, () => `note ${id} ends at ${e.time[i]} <= start ${start}`);
          open.delete(id);
          if (e.track[i] === MELODY_TRACK) melodyOpen--;
        }
        lastTime = Math.max(lastTime, e.time[i]);
      }
    }
    check(open.size === 0, () => `${open.size} notes never ended`);
    check(chordNotes > 20, () => `only ${chordNotes} chord notes`);
    check(lastTime <= steps * decoder.stepSeconds + 1e-9, () => `an event after the end`);
  },
};

export function decoderAllocationCase(probe: AllocationProbe, slack: number, unit: string): Case {
  return {
    name: `decode: 20,000 decoder steps allocate nothing (${unit}, slack ${slack})`,
    run: () => {
      // The note-level protocol generate and examples/realtime.ts use: beginStep on the
      // latest result, context and a new result only when a note is due.
      const decoder = new Decoder({
        ...BASE,
        key: { tonic: 5, mode: "minor" },
        constrain: "chord",
        topK: 12,
        topP: 0.9,
      });
      const outputs = [syntheticOutputs(21), syntheticOutputs(22), syntheticOutputs(23)];
      const context = new Float32Array(CONTEXT_SIZE);
      const sum = new Float64Array(2);
      let turn = 0;
      const body = (calls: number) => {
        for (let i = 0; i < calls; i++) {
          if (decoder.beginStep(outputs[turn])) {
            decoder.context(context);
            sum[1] += context[CONTEXT_SIZE - 1];
            turn = turn === 2 ? 0 : turn + 1;
          }
          sum[0] += decoder.step(outputs[turn]);
        }
      };
      body(4000);
      const rounds: number[] = [];
      while (rounds.length < 5 && !(rounds.length > 0 && Math.min(...rounds) <= slack)) {
        rounds.push(probe(20_000, body));
      }
      check(sum[0] > 0, () => "the decoder emitted no events");
      check(
        Math.min(...rounds) <= slack,
        () => `decoder steps allocated ${rounds.join(", ")} ${unit}, all > ${slack}`,
      );
    },
  };
}

const vocabularyCase: Case = {
  name: "chords: the 64 classes are the documented chords, as tonal reads their symbols",
  run: () => {
    const seen = new Set<string>();
    for (let cls = 0; cls < CHORD_CLASSES; cls++) {
      const info = chordInfo(cls);
      for (const key of [undefined, { tonic: 3, mode: "minor" as const }]) {
        const symbol = chordSymbol(cls, key);
        const chord = Chord.get(symbol);
        check(!chord.empty, () => `class ${cls}: tonal does not know "${symbol}"`);
        const want = chord.notes.map(chroma).sort((a, b) => a - b).join(",");
        const got = [...info.pitchClasses].sort((a, b) => a - b).join(",");
        check(want === got, () => `class ${cls} "${symbol}": ${got}, tonal says ${want}`);
      }
      seen.add([...info.pitchClasses].sort((a, b) => a - b).join(","));
    }
    check(seen.size === 64, () => `only ${seen.size} distinct chords among 64 classes`);
    check(chordSymbol(14, { tonic: 2, mode: "minor" }) === "Dm", () => chordSymbol(14));
    check(chordSymbol(34, { tonic: 5, mode: "major" }) === "Bb7", () => chordSymbol(34));
    check(chordSymbol(61) === "C#aug", () => chordSymbol(61));
    check(NAMES.length === 12, () => "names");
  },
};

const voiceLeadingCase: Case = {
  name: "chords: voicings hold the chord's notes in the register and move less than root position",
  run: () => {
    const rng = new TestRng(77);
    const leader = new VoiceLeader();
    let led = 0;
    let naive = 0;
    let previous: number[] = [];
    let previousNaive: number[] = [];
    const movement = (a: number[], b: number[]) =>
      a.length === 0 ? 0 : b.reduce((s, n) => s + Math.min(...a.map((m) => Math.abs(m - n))), 0) +
        a.reduce((s, n) => s + Math.min(...b.map((m) => Math.abs(m - n))), 0);
    for (let i = 0; i < 400; i++) {
      const cls = Math.floor(rng.next() * 64);
      const count = leader.voice(cls);
      const notes = [...leader.notes.slice(0, count)];
      const info = chordInfo(cls);
      check(count === info.pitchClasses.length, () => `class ${cls}: ${count} notes`);
      check(
        notes.map((n) => n % 12).sort().join() === [...info.pitchClasses].sort().join(),
        () => `class ${cls}: voicing ${notes} is not the chord ${info.pitchClasses}`,
      );
      check(notes.every((n) => n >= CHORD_LOW && n <= CHORD_HIGH), () => `register: ${notes}`);
      check(notes.every((n, k) => k === 0 || n > notes[k - 1]), () => `not ascending: ${notes}`);
      led += movement(previous, notes);
      const root = 60 + info.root;
      const rootPosition = info.pitchClasses.map((pc) => root + ((pc - info.root + 12) % 12));
      naive += movement(previousNaive, rootPosition);
      previous = notes;
      previousNaive = rootPosition;
    }
    check(led < 0.6 * naive, () => `voice leading moved ${led} semitones, root position ${naive}`);
  },
};

/** The pitch classes of chord class `cls`, as tonal reads its symbol. */
function tonalPitchClasses(cls: number): number[] {
  return Chord.get(symbolOf(cls)).notes.map(chroma);
}

/** Whether some close voicing of the pitch classes (every note within an octave) fits low..high. */
function closeVoicingFits(pcs: number[], low: number, high: number): boolean {
  const set = new Set(pcs);
  for (let bottom = low; bottom <= high; bottom++) {
    if (!set.has(bottom % 12)) continue;
    // The chord's notes from `bottom` up: each pitch class once, the nearest above.
    let top = bottom;
    for (const pc of set) top = Math.max(top, bottom + ((pc - bottom % 12 + 12) % 12));
    if (top <= high) return true;
  }
  return false;
}

const underMelodyCase: Case = {
  name:
    "chords: under a melody note the voicing sits below it (register, else the octave under it, else the register)",
  run: () => {
    const rng = new TestRng(78);
    const leader = new VoiceLeader();
    const counts = { register: 0, octaveUnder: 0, tooLow: 0, none: 0 };
    for (let i = 0; i < 4000; i++) {
      const cls = Math.floor(rng.next() * 64);
      // Melody notes 36..95 and sometimes none (-1).
      const melody = rng.next() < 0.1 ? -1 : 36 + Math.floor(rng.next() * 60);
      const count = leader.voice(cls, melody);
      const notes = [...leader.notes.slice(0, count)];
      const pcs = tonalPitchClasses(cls);
      const what = () => `class ${cls} under ${melody}: ${notes}`;
      check(count === pcs.length, what);
      check(
        notes.map((n) => n % 12).sort().join() === [...pcs].sort().join(),
        () => `${what()} is not the chord ${pcs}`,
      );
      check(notes.every((n, k) => k === 0 || n > notes[k - 1]), () => `not ascending: ${what()}`);
      check(notes[count - 1] - notes[0] < 12, () => `not close position: ${what()}`);
      const inRegister = notes.every((n) => n >= CHORD_LOW && n <= CHORD_HIGH);
      if (melody < CHORD_FLOOR + 12) {
        // No melody, or one too low to follow: the register, as without a melody.
        check(inRegister, () => `register: ${what()}`);
        counts[melody < 0 ? "none" : "tooLow"]++;
        continue;
      }
      check(notes.every((n) => n < melody), () => `not under the melody: ${what()}`);
      const top = Math.min(CHORD_HIGH, melody - 1);
      if (closeVoicingFits(pcs, CHORD_LOW, top)) {
        check(inRegister, () => `a voicing fits the register under ${melody}: ${what()}`);
        counts.register++;
      } else {
        check(notes[0] >= melody - 12, () => `not in the octave under ${melody}: ${what()}`);
        counts.octaveUnder++;
      }
    }
    // Every rule was exercised.
    check(Object.values(counts).every((n) => n > 50), () => JSON.stringify(counts));
    // Without a melody the voicings are those of a fresh leader given none (-1 is the default).
    const a = new VoiceLeader();
    const b = new VoiceLeader();
    for (let i = 0; i < 200; i++) {
      const cls = Math.floor(rng.next() * 64);
      a.voice(cls);
      b.voice(cls, -1);
      check(a.notes.join() === b.notes.join(), () => `class ${cls}: ${a.notes} vs ${b.notes}`);
    }
    throwsCadenza(() => leader.voice(0, 128), "E_ARGUMENT", /melody/, "melody 128");
    throwsCadenza(() => leader.voice(0, 1.5), "E_ARGUMENT", /melody/, "melody 1.5");
  },
};

const underMelodyLeadingCase: Case = {
  name:
    "chords: under a moving melody the voices still move less than root position, each by under 2 semitones on average",
  run: () => {
    const rng = new TestRng(79);
    const leader = new VoiceLeader();
    let led = 0;
    let naive = 0;
    let voices = 0;
    let previous: number[] = [];
    let previousNaive: number[] = [];
    const movement = (a: number[], b: number[]) =>
      a.length === 0 ? 0 : b.reduce((s, n) => s + Math.min(...a.map((m) => Math.abs(m - n))), 0) +
        a.reduce((s, n) => s + Math.min(...b.map((m) => Math.abs(m - n))), 0);
    // A melody walking by steps and leaps of up to a fifth in the default range 60..84.
    let melody = 72;
    for (let i = 0; i < 400; i++) {
      melody = Math.max(60, Math.min(84, melody + Math.floor(rng.next() * 15) - 7));
      const cls = Math.floor(rng.next() * 64);
      const count = leader.voice(cls, melody);
      const notes = [...leader.notes.slice(0, count)];
      check(notes.every((n) => n < melody), () => `class ${cls}: ${notes} under ${melody}`);
      const info = chordInfo(cls);
      const root = 60 + info.root;
      const rootPosition = info.pitchClasses.map((pc) => root + ((pc - info.root + 12) % 12));
      if (previous.length > 0) voices += previous.length + notes.length;
      led += movement(previous, notes);
      naive += movement(previousNaive, rootPosition);
      previous = notes;
      previousNaive = rootPosition;
    }
    check(led < 0.6 * naive, () => `voice leading moved ${led} semitones, root position ${naive}`);
    check(led / voices < 2, () => `${(led / voices).toFixed(2)} semitones per voice`);
  },
};

const bassCase: Case = {
  name: "chords: the bass plays each chord's root on its first step, in the bass register",
  run: () => {
    const spans = [0, 9, 19, 31, 57, 62, 5].map((cls, i) => ({
      class: cls,
      step: i * 16,
      steps: 16,
      stepsPerBeat: 4,
      pattern: (["root", "root-fifth", "walking"] as const)[i % 3],
    }));
    const line = bassLine(spans);
    for (const span of spans) {
      const first = line.find((n) => n.step === span.step);
      check(first !== undefined, () => `no bass note at step ${span.step}`);
      check(
        first!.pitch % 12 === chordInfo(span.class).root,
        () => `bass ${first!.pitch} at ${span.step}`,
      );
    }
    for (let i = 1; i < line.length; i++) {
      check(
        Math.abs(line[i].pitch - line[i - 1].pitch) <= 12,
        () => `bass leaps ${line[i - 1].pitch}->${line[i].pitch}`,
      );
    }
    check(line.every((n) => n.pitch >= 28 && n.pitch <= 55), () => "bass out of register");
  },
};

const emotionMapCase: Case = {
  name:
    "emotion map: 64 values in [-1, 1], names read back, tempo and mode follow arousal and valence",
  run: () => {
    for (const name of EMOTION_NAMES) {
      const v = emotionVector(name);
      check(v.length === 64 && v.every((x) => x >= -1 && x <= 1), () => `${name}: ${v}`);
      check(
        emotionFromVector(v).name === name,
        () => `${name} reads back as ${emotionFromVector(v).name}`,
      );
      check(v[2 + EMOTION_NAMES.indexOf(name)] > 0.999, () => `${name}: own membership ${v}`);
      const point = NAMED_EMOTIONS[name];
      const d = emotionDefaults(point);
      check(d.mode === (point.valence >= 0 ? "major" : "minor"), () => `${name}: mode ${d.mode}`);
    }
    check(
      emotionDefaults(emotionPoint("joyful")).tempo > emotionDefaults(emotionPoint("sad")).tempo,
      () => "tempo",
    );
    check(
      emotionDefaults(emotionPoint("angry")).tempo > emotionDefaults(emotionPoint("calm")).tempo,
      () => "tempo",
    );
    // Smooth: a step of 0.001 moves no value by more than 0.001 * 2 pi (the steepest Fourier
    // feature, kx = 4, has slope 4 * pi / 2).
    const a = emotionVector({ valence: 0.1, arousal: 0.2 });
    const b = emotionVector({ valence: 0.101, arousal: 0.2 });
    check(a.every((x, i) => Math.abs(x - b[i]) <= 0.001 * 2 * Math.PI), () => "not smooth");
    throwsCadenza(
      () => emotionPoint("happy"),
      "E_ARGUMENT",
      /known emotions: joyful, tender/,
      "unknown",
    );
    throwsCadenza(() => emotionPoint({ valence: 2, arousal: 0 }), "E_ARGUMENT", /valence/, "range");
    throwsCadenza(() => new Decoder({ ...BASE, topP: 0 }), "E_ARGUMENT", /topP/, "topP 0");
    throwsCadenza(() => new Decoder({ ...BASE, low: 80, high: 70 }), "E_ARGUMENT", /high/, "range");
    throwsCadenza(
      () => new Decoder({ ...BASE, voicing: "above" as DecoderOptions["voicing"] }),
      "E_ARGUMENT",
      /voicing must be under-melody or register/,
      "voicing",
    );
    throwsCadenza(() => parseKey("H major"), "E_ARGUMENT", /key must be/, "key");
    check(parseKey("F#m").tonic === 6 && parseKey("Bb").mode === "major", () => "parseKey");
  },
};

/** tonal's chord symbol of a chord class (root and quality as docs/MUSIC.md numbers them). */
function symbolOf(cls: number): string {
  const root = cls < 60 ? cls % 12 : cls - 60;
  const quality = cls < 60 ? ["", "m", "7", "m7", "dim"][Math.floor(cls / 12)] : "aug";
  return NAMES[root] + quality;
}

const tonicCase: Case = {
  name:
    "decode: the models' melody and harmony are tonic-relative; the decoder turns them to the key",
  run: () => {
    // transposeChord against tonal: every class moved by every interval is the chord whose
    // notes are the original's moved by it.
    for (let cls = 0; cls < CHORD_CLASSES; cls++) {
      const notes = Chord.get(symbolOf(cls)).notes.map(chroma);
      for (let t = -13; t <= 13; t++) {
        const moved = Chord.get(symbolOf(transposeChord(cls, t))).notes.map(chroma);
        const want = notes.map((pc) => (((pc + t) % 12) + 12) % 12).sort((a, b) => a - b);
        check(
          moved.sort((a, b) => a - b).join() === want.join(),
          () => `class ${cls} by ${t}: ${moved} vs ${want}`,
        );
      }
    }
    // A model sure of tonic-relative note 64 (E: the third above C) and chord class 21 (Am,
    // the vi): in G major the decoder plays B4 (71) over Em (class 16); in Eb minor, G4 (67)
    // over Cm (class 12), at temperature 0.
    for (const [key, note, chord] of [["G major", 71, 16], ["Eb minor", 67, 12]] as const) {
      const outputs = syntheticOutputs(9);
      outputs.melody.fill(0.001);
      outputs.melody[64] = 0.9;
      outputs.harmony.fill(0);
      outputs.harmony[21] = 1;
      const decoder = new Decoder({ ...BASE, key: parseKey(key), temperature: 0, low: 40 });
      let notes = 0;
      for (let s = 0; s < 64; s++) {
        const count = decoder.step(outputs);
        const e = decoder.events;
        for (let i = 0; i < count; i++) {
          if (e.kind[i] === CHORD) check(e.pitch[i] === chord, () => `${key}: chord ${e.pitch[i]}`);
          if (e.kind[i] === NOTE_ON && e.track[i] === MELODY_TRACK) {
            check(e.pitch[i] === note, () => `${key}: note ${e.pitch[i]}`);
            notes++;
          }
        }
      }
      check(notes > 4, () => `${key}: ${notes} notes`);
    }
  },
};

const contextCase: Case = {
  name:
    "decode: context() is the previous note, the chord in force and the span's melody, tonic-relative",
  run: () => {
    check(
      CONTEXT_PREVIOUS_NOTE === CONTEXT.PREVIOUS_NOTE && CONTEXT_CHORD === CONTEXT.CHORD &&
        CONTEXT_SPAN_PITCH_CLASSES === CONTEXT.SPAN_PITCH_CLASSES && CONTEXT_SIZE === 204,
      () => "the decoder's context layout differs from the pipeline's",
    );
    for (const key of ["D major", "A minor", "C major"]) {
      const tonic = parseKey(key).tonic;
      const decoder = new Decoder({ ...BASE, seed: 4, key: parseKey(key), chordRate: "half" });
      const into = new Float32Array(CONTEXT_SIZE);
      check(decoder.context(into).every((v) => v === 0), () => `${key}: context before anything`);
      // Independently: the melody notes and chords from the events, with their grid steps.
      let chord = -1;
      let spanStart = 0;
      const melody: { pitch: number; step: number }[] = [];
      let latest = syntheticOutputs(30);
      let checked = 0;
      for (let s = 0; s < 256; s++) {
        const due = decoder.beginStep(latest);
        // A chord emitted by beginStep is in force from this step.
        for (let i = 0; i < decoder.events.count; i++) {
          if (decoder.events.kind[i] === CHORD) {
            chord = decoder.events.pitch[i];
            spanStart = s;
          }
        }
        if (due) {
          decoder.context(into);
          const want = new Float32Array(CONTEXT_SIZE);
          if (melody.length > 0) {
            want[Math.max(0, melody[melody.length - 1].pitch - tonic)] = 1;
          }
          if (chord >= 0) want[128 + transposeChord(chord, -tonic)] = 1;
          // The notes played since the chord in force began.
          const inSpan = melody.filter((n) => n.step >= spanStart);
          for (let k = 0; k < 192; k++) {
            check(into[k] === want[k], () => `${key} step ${s}: context[${k}] ${into[k]}`);
          }
          const span = into.subarray(192);
          const total = span.reduce((a, b) => a + b, 0);
          check(
            inSpan.length === 0 ? total === 0 : Math.abs(total - 1) < 1e-6,
            () => `${key} step ${s}: the span histogram sums to ${total}`,
          );
          // The histogram holds exactly the span's notes' pitch classes.
          for (let k = 0; k < 12; k++) {
            const has = inSpan.some((n) => (n.pitch - tonic + 120) % 12 === k);
            check((span[k] > 0) === has, () => `${key} step ${s}: pitch class ${k}`);
          }
          checked++;
          latest = syntheticOutputs(31 + s);
        }
        const count = decoder.step(latest);
        const e = decoder.events;
        for (let i = 0; i < count; i++) {
          if (e.kind[i] === NOTE_ON && e.track[i] === MELODY_TRACK) {
            melody.push({ pitch: e.pitch[i], step: s });
          }
        }
      }
      check(checked > 40, () => `${key}: only ${checked} note steps`);
    }
  },
};

export const decodeCases: Case[] = [
  tonicCase,
  contextCase,
  determinismCase,
  samplingCase,
  temperatureCase,
  constraintCase,
  eventsCase,
  vocabularyCase,
  voiceLeadingCase,
  underMelodyCase,
  underMelodyLeadingCase,
  bassCase,
  emotionMapCase,
];
