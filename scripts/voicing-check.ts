/**
 * The chords against the melody, per named emotion and voicing: N pieces from `generate` (the
 * models of models/, seeds 1..N), written to MIDI and read back by the tests' SMF reader, then
 * measured by the analysis of test/cases/voicing.ts (from the MIDI notes alone). Per emotion and
 * voicing ("under-melody", the default, and "register", chords in MIDI 50..74 whatever the
 * melody does): chord strikes; the share whose top note is at or above the melody note of the
 * moment, and on it exactly (a unison); the share of melody notes starting at or under a
 * sounding chord's top; the mean voice movement per voice per change of voicing and the
 * changes that move more than a fourth per voice; the lowest chord note; strikes with a bass
 * note at or above the chord's lowest; and whether the melody is the same under both voicings.
 *
 *   bun scripts/voicing-check.ts [--models DIR] [--n 24] [--bars 8] [--json]
 */

import type { Voicing } from "../src/music/decode.ts";
import { EMOTION_NAMES } from "../src/music/emotion-map.ts";
import { generate } from "../src/music/generate.ts";
import { toMidi } from "../src/music/midi.ts";
import { EmotionPipeline } from "../src/pipeline/emotion.ts";
import { melodyOf, melodyOverChords, movementPerVoice, strikesOf } from "../test/cases/voicing.ts";
import { parseSmf } from "../test/midi-parse.ts";
import { pieceArgs } from "./piece-args.ts";

const HELP = `usage: bun scripts/voicing-check.ts [--models DIR] [--n 24] [--bars 8] [--json]

Generates N pieces per named emotion (seeds 1..N) with each voicing (under-melody, register) and
prints, per emotion and voicing, how the chords sit against the melody (read back from MIDI):
strikes over the melody note of their moment, melody notes under a sounding chord, voice
movement per change of voicing, the lowest chord note, the bass in the chord; and whether the
melody is the same under both voicings.`;

const values = pieceArgs("voicing-check", HELP, 24);
const { n, bars } = values;

interface Row {
  emotion: string;
  voicing: Voicing;
  strikes: number;
  /** Shares of strikes. */
  overMelody: number;
  unison: number;
  /** Share of melody notes starting while a chord sounds that are at or under its top. */
  melodyUnder: number;
  /** Melody notes starting while a chord sounds. */
  melodyWithChord: number;
  /** Semitones per voice per change of voicing. */
  movement: number;
  changes: number;
  leaps: number;
  lowest: number;
  bassInChord: number;
}

const VOICINGS: Voicing[] = ["under-melody", "register"];
const pipeline = await EmotionPipeline.load(values.models);
const rows: Row[] = [];
let melodyDiffers = 0;
try {
  for (const emotion of EMOTION_NAMES) {
    const melodies = new Map<number, string>();
    for (const voicing of VOICINGS) {
      const row: Row = {
        emotion,
        voicing,
        strikes: 0,
        overMelody: 0,
        unison: 0,
        melodyUnder: 0,
        melodyWithChord: 0,
        movement: 0,
        changes: 0,
        leaps: 0,
        lowest: 127,
        bassInChord: 0,
      };
      for (let seed = 1; seed <= n; seed++) {
        const result = await generate({ emotion, bars, seed, voicing, pipeline });
        const smf = parseSmf(toMidi(result.sequence));
        const melody = melodyOf(smf).map((m) =>
          `${m.pitch}@${m.startTick}-${m.endTick}v${m.velocity}`
        )
          .join();
        if (!melodies.has(seed)) melodies.set(seed, melody);
        else if (melodies.get(seed) !== melody) melodyDiffers++;
        const strikes = strikesOf(smf);
        for (let i = 0; i < strikes.length; i++) {
          const s = strikes[i];
          const top = s.pitches[s.pitches.length - 1];
          row.strikes++;
          if (s.melody >= 0 && top >= s.melody) row.overMelody++;
          if (top === s.melody) row.unison++;
          row.lowest = Math.min(row.lowest, s.pitches[0]);
          if (s.bass.some((b) => b >= s.pitches[0])) row.bassInChord++;
          if (i === 0 || strikes[i - 1].pitches.join() === s.pitches.join()) continue;
          const moved = movementPerVoice(strikes[i - 1].pitches, s.pitches);
          row.movement += moved;
          row.changes++;
          if (moved > 5) row.leaps++;
        }
        const over = melodyOverChords(smf);
        row.melodyWithChord += over.withChord;
        row.melodyUnder += over.under;
      }
      row.overMelody /= row.strikes;
      row.unison /= row.strikes;
      row.movement /= Math.max(1, row.changes);
      row.melodyUnder /= Math.max(1, row.melodyWithChord);
      rows.push(row);
      if (!values.json) {
        const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(6);
        console.log(
          `${emotion.padEnd(11)} ${voicing.padEnd(12)} ${String(row.strikes).padStart(5)} ` +
            `strikes: top >= melody ${pct(row.overMelody)} (unison ${pct(row.unison)}), ` +
            `melody notes at/under a chord top ${pct(row.melodyUnder)}, ` +
            `${row.movement.toFixed(2)} semitones/voice over ${row.changes} changes ` +
            `(${row.leaps} > a fourth), lowest ${row.lowest}, bass in chord ${row.bassInChord}`,
        );
      }
    }
  }
} finally {
  pipeline.dispose();
}

const total = (voicing: Voicing) => {
  const rs = rows.filter((r) => r.voicing === voicing);
  const strikes = rs.reduce((a, r) => a + r.strikes, 0);
  const changes = rs.reduce((a, r) => a + r.changes, 0);
  return {
    voicing,
    strikes,
    overMelody: rs.reduce((a, r) => a + r.overMelody * r.strikes, 0) / strikes,
    unison: rs.reduce((a, r) => a + r.unison * r.strikes, 0) / strikes,
    melodyUnder: rs.reduce((a, r) => a + r.melodyUnder * r.melodyWithChord, 0) /
      rs.reduce((a, r) => a + r.melodyWithChord, 0),
    movement: rs.reduce((a, r) => a + r.movement * r.changes, 0) / changes,
    changes,
    leaps: rs.reduce((a, r) => a + r.leaps, 0),
  };
};
const totals = VOICINGS.map(total);
if (values.json) {
  console.log(JSON.stringify({ pieces: n, bars, rows, totals, melodyDiffers }, null, 2));
} else {
  for (const t of totals) {
    console.log(
      `all ${t.voicing.padEnd(12)} ${t.strikes} strikes: top >= melody ` +
        `${(100 * t.overMelody).toFixed(1)}% (unison ${(100 * t.unison).toFixed(1)}%), melody ` +
        `notes at/under a chord top ${(100 * t.melodyUnder).toFixed(1)}%, ` +
        `${t.movement.toFixed(3)} semitones/voice over ${t.changes} changes, ${t.leaps} > a fourth`,
    );
  }
  console.log(
    `melody the same under both voicings: ${melodyDiffers === 0 ? "yes" : "NO"} ` +
      `(${EMOTION_NAMES.length * n} pieces, ${melodyDiffers} differ)`,
  );
}
