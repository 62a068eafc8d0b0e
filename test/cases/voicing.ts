/**
 * The tune on top: in pieces from `generate` (the committed models, every named emotion), read
 * back from the written MIDI file by the tests' own SMF reader (test/midi-parse.ts), each chord
 * strike sounds under the melody note of its moment, the bass under the chord, and the chords
 * still move smoothly from one voicing to the next. The analysis here is written from the MIDI
 * notes alone (channel 0 melody, 1 chords, 2 bass), not from the decoder's code.
 * Runtime-neutral; test/voicing.test.ts and test/deno/voicing.test.ts register them.
 *
 * The rule (docs/MUSIC.md, "Chords"): at each strike the melody note of the moment is the one
 * sounding at the strike's first note, or, in a rest, the last one begun before it. Every chord
 * note is strictly below it when it is at least CHORD_FLOOR + 12 (MIDI 55); a melody note under
 * that (only with a melody range set below G3) leaves the chord in its register, 50..74. The
 * default melody range starts at 60, so there the exception cannot occur: the tests below
 * assert no exception at all over 8 emotions x 24 seeds, and the exact rule with a low range.
 */

import { CHORD_FLOOR, CHORD_HIGH, CHORD_LOW } from "../../src/music/chords.ts";
import { EMOTION_NAMES } from "../../src/music/emotion-map.ts";
import type { Voicing } from "../../src/music/decode.ts";
import { generate } from "../../src/music/generate.ts";
import { toMidi } from "../../src/music/midi.ts";
import { EmotionPipeline } from "../../src/pipeline/emotion.ts";
import { parseSmf, type SmfFile, type SmfNote } from "../midi-parse.ts";
import { type Case, check } from "./check.ts";

const SEEDS = 24;
const BARS = 8;
/** Chord notes starting within this of a strike's first note belong to it (the roll is <= 22.5 ms). */
const STRIKE_WINDOW_S = 0.04;

let shared: EmotionPipeline | null = null;
async function pipeline(): Promise<EmotionPipeline> {
  shared ??= await EmotionPipeline.load();
  return shared;
}

export function disposeVoicingPipeline(): void {
  shared?.dispose();
  shared = null;
}

export interface Strike {
  tick: number;
  /** Ascending. */
  pitches: number[];
  /** The melody note of the moment (sounding, else the last begun), -1 for none yet. */
  melody: number;
  /** Whether that note is sounding at the strike (not just the last before a rest). */
  sounding: boolean;
  /** The bass notes sounding at the strike (or starting with it). */
  bass: number[];
}

/** The chord strikes of a piece, each with the melody and bass of its moment. */
export function strikesOf(smf: SmfFile): Strike[] {
  const notes = smf.tracks.flatMap((t) => t.notes);
  const part = (channel: number) =>
    notes.filter((n) => n.channel === channel).sort((a, b) => a.startTick - b.startTick);
  const melody = part(0);
  const chords = part(1);
  const bass = part(2);
  const window = smf.ppq * (smf.tempos[0].qpm / 60) * STRIKE_WINDOW_S;
  const groups: SmfNote[][] = [];
  for (const note of chords) {
    const last = groups[groups.length - 1];
    if (last !== undefined && note.startTick - last[0].startTick <= window) last.push(note);
    else groups.push([note]);
  }
  return groups.map((group) => {
    const tick = group[0].startTick;
    const sounding = melody.find((m) => m.startTick <= tick && tick < m.endTick);
    const before = melody.filter((m) => m.startTick <= tick);
    const reference = sounding ?? before[before.length - 1];
    return {
      tick,
      pitches: group.map((n) => n.pitch).sort((a, b) => a - b),
      melody: reference?.pitch ?? -1,
      sounding: sounding !== undefined,
      bass: bass.filter((b) => b.startTick <= tick + window && tick < b.endTick).map((b) =>
        b.pitch
      ),
    };
  });
}

/** The melody (channel 0) notes of a piece, in time order. */
export function melodyOf(smf: SmfFile): SmfNote[] {
  return smf.tracks.flatMap((t) => t.notes).filter((n) => n.channel === 0)
    .sort((a, b) => a.startTick - b.startTick);
}

/**
 * Melody notes that start while a chord sounds, and how many of those are at or under the
 * highest chord note sounding then.
 */
export function melodyOverChords(smf: SmfFile): { withChord: number; under: number } {
  const chords = smf.tracks.flatMap((t) => t.notes).filter((n) => n.channel === 1);
  let withChord = 0;
  let under = 0;
  for (const m of melodyOf(smf)) {
    const sounding = chords.filter((c) => c.startTick <= m.startTick && m.startTick < c.endTick);
    if (sounding.length === 0) continue;
    withChord++;
    if (m.pitch <= Math.max(...sounding.map((c) => c.pitch))) under++;
  }
  return { withChord, under };
}

/**
 * Voice movement from one voicing to the next, per voice: each note's distance to the nearest
 * note of the other voicing, both ways, over the notes of both (0 for the same voicing).
 */
export function movementPerVoice(a: readonly number[], b: readonly number[]): number {
  const near = (from: readonly number[], to: readonly number[]) =>
    from.reduce((s, n) => s + Math.min(...to.map((m) => Math.abs(m - n))), 0);
  return (near(a, b) + near(b, a)) / (a.length + b.length);
}

async function piece(
  emotion: string,
  seed: number,
  range?: [number, number],
  voicing?: Voicing,
): Promise<Strike[]> {
  return strikesOf(await pieceFile(emotion, seed, range, voicing));
}

async function pieceFile(
  emotion: string,
  seed: number,
  range?: [number, number],
  voicing?: Voicing,
): Promise<SmfFile> {
  const result = await generate({
    emotion,
    bars: BARS,
    seed,
    range,
    voicing,
    pipeline: await pipeline(),
  });
  return parseSmf(toMidi(result.sequence));
}

export const voicingCases: Case[] = [
  {
    name:
      "voicing: the melody is the same notes, times and velocities under either voicing; the register voicing does cross it",
    run: async () => {
      let crossings = 0;
      let strikes = 0;
      for (const emotion of EMOTION_NAMES) {
        for (let seed = 1; seed <= 6; seed++) {
          const a = await pieceFile(emotion, seed, undefined, "under-melody");
          const b = await pieceFile(emotion, seed, undefined, "register");
          const text = (smf: SmfFile) =>
            melodyOf(smf).map((n) => `${n.pitch}@${n.startTick}-${n.endTick}v${n.velocity}`).join();
          check(
            text(a) === text(b),
            () => `${emotion} seed ${seed}: the melody changed with the voicing`,
          );
          check(
            melodyOf(a).length > 8,
            () => `${emotion} seed ${seed}: a melody of ${melodyOf(a).length}`,
          );
          for (const s of strikesOf(b)) {
            strikes++;
            if (s.melody >= 0 && s.pitches[s.pitches.length - 1] >= s.melody) crossings++;
          }
        }
      }
      // What the first case rules out does happen with the chords in a fixed register (about
      // 45% of strikes on these models), so that case can fail.
      check(crossings > 0.2 * strikes, () => `register voicing: ${crossings} of ${strikes} cross`);
    },
  },
  {
    name:
      `voicing: over 8 emotions x ${SEEDS} seeds every chord strike sounds under the melody note of its moment, the bass under the chord (MIDI read back)`,
    run: async () => {
      let strikes = 0;
      let sounding = 0;
      for (const emotion of EMOTION_NAMES) {
        for (let seed = 1; seed <= SEEDS; seed++) {
          for (const s of await piece(emotion, seed)) {
            const where = () =>
              `${emotion} seed ${seed} tick ${s.tick}: chord ${s.pitches}, melody ${s.melody}, ` +
              `bass ${s.bass}`;
            strikes++;
            if (s.sounding) sounding++;
            const top = s.pitches[s.pitches.length - 1];
            // The default melody range is 60..84: every note is high enough to sound over.
            check(s.melody < 0 || s.melody >= CHORD_FLOOR + 12, where);
            check(s.melody < 0 || top < s.melody, () => `chord over the melody: ${where()}`);
            // Under a melody note of 60 and up the chord stays above the octave under it.
            check(s.pitches[0] >= 48 && top <= CHORD_HIGH, () => `chord range: ${where()}`);
            check(s.bass.every((b) => b < s.pitches[0]), () => `bass in the chord: ${where()}`);
          }
        }
      }
      // Most strikes fall on a sounding melody note (the rest in its rests).
      check(strikes > 2000 && sounding > 0.9 * strikes, () => `${sounding} of ${strikes} strikes`);
    },
  },
  {
    name:
      "voicing: the chords still move smoothly: under 2 semitones per voice per change for every emotion, within half a semitone of the fixed register",
    run: async () => {
      // In close position, stepwise voice leading moves each voice by at most a whole tone, so
      // under 2 semitones per voice on average says the voices still move by steps, not by the
      // leaps of a chord that jumped with every melody note. The fixed register (no melody to
      // keep under) is the reference: `bun scripts/voicing-check.ts` measured 0.97 for it and
      // 1.12 under the melody on these pieces; half a semitone more per voice is the most the
      // melody may cost. A change of more than a fourth per voice is a leap.
      const measure = async (voicing: Voicing) => {
        let total = 0;
        let changes = 0;
        let leaps = 0;
        for (const emotion of EMOTION_NAMES) {
          let sum = 0;
          let count = 0;
          for (let seed = 1; seed <= SEEDS; seed++) {
            const strikes = await piece(emotion, seed, undefined, voicing);
            for (let i = 1; i < strikes.length; i++) {
              const a = strikes[i - 1].pitches;
              const b = strikes[i].pitches;
              if (a.join() === b.join()) continue;
              const moved = movementPerVoice(a, b);
              sum += moved;
              count++;
              if (moved > 5) leaps++;
            }
          }
          check(count > 50, () => `${voicing} ${emotion}: only ${count} changes of voicing`);
          check(
            sum / count < 2,
            () => `${voicing} ${emotion}: ${(sum / count).toFixed(2)} semitones per voice`,
          );
          total += sum;
          changes += count;
        }
        check(leaps <= 0.02 * changes, () => `${voicing}: ${leaps} of ${changes} changes leap`);
        return total / changes;
      };
      const under = await measure("under-melody");
      const register = await measure("register");
      check(
        under <= register + 0.5,
        () =>
          `${under.toFixed(3)} semitones per voice under the melody, ${register.toFixed(3)} fixed`,
      );
    },
  },
  {
    name:
      "voicing: with a melody range down to G2 the rule is exact: under the melody from G3 (55) up, in the register 50..74 below it",
    run: async () => {
      let under = 0;
      let register = 0;
      for (const emotion of ["sad", "calm", "joyful", "angry"]) {
        for (let seed = 1; seed <= 8; seed++) {
          for (const s of await piece(emotion, seed, [43, 67])) {
            const where = () =>
              `${emotion} seed ${seed} tick ${s.tick}: ${s.pitches} / ${s.melody}`;
            const top = s.pitches[s.pitches.length - 1];
            if (s.melody >= CHORD_FLOOR + 12) {
              check(top < s.melody && s.pitches[0] >= CHORD_FLOOR, () => `not under: ${where()}`);
              under++;
            } else {
              check(
                s.pitches[0] >= CHORD_LOW && top <= CHORD_HIGH,
                () => `not in the register: ${where()}`,
              );
              register++;
            }
          }
        }
      }
      check(under > 100 && register > 20, () => `${under} strikes under, ${register} in register`);
    },
  },
];
