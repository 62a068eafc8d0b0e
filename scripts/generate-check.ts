/**
 * Issue 10's acceptance 3 through the whole generator: for each named emotion, N pieces from
 * `generate` (the trained models of models/, the decoder with no key constraint, seeds 1..N),
 * the key finder (src/music/keyfinder.ts, Krumhansl-Schmuckler) on every pitched note of the
 * piece (melody, chords, bass), the share it calls major, and the melody's notes per bar.
 * Tempo follows arousal by the emotion map (docs/MUSIC.md); the note density is the models'.
 *
 *   bun scripts/generate-check.ts [--models DIR] [--n 50] [--bars 8] [--json]
 */

import { EMOTION_NAMES, emotionPoint } from "../src/music/emotion-map.ts";
import { generate } from "../src/music/generate.ts";
import { findKey } from "../src/music/keyfinder.ts";
import { pieceArgs } from "./piece-args.ts";

const HELP = `usage: bun scripts/generate-check.ts [--models DIR] [--n 50] [--bars 8] [--json]

Generates N pieces per named emotion (seeds 1..N, no key constraint) and prints, per emotion, the
share of pieces the key finder calls major, the tempo, and the melody's notes per bar.`;

const values = pieceArgs("generate-check", HELP, 50);
const { n, bars } = values;

export interface EmotionRow {
  emotion: string;
  valence: number;
  arousal: number;
  pieces: number;
  majorShare: number;
  tempo: number;
  notesPerBar: number;
}

const rows: EmotionRow[] = [];
for (const emotion of EMOTION_NAMES) {
  let major = 0;
  let melodyNotes = 0;
  let tempo = 0;
  for (let seed = 1; seed <= n; seed++) {
    const result = await generate({ emotion, bars, seed, models: values.models });
    const key = findKey(result.sequence);
    if (key.mode === "major") major++;
    melodyNotes += result.sequence.notes.filter((note) => note.instrument === 0).length;
    tempo = result.sequence.tempos[0].qpm;
  }
  const point = emotionPoint(emotion);
  rows.push({
    emotion,
    valence: point.valence,
    arousal: point.arousal,
    pieces: n,
    majorShare: major / n,
    tempo,
    notesPerBar: melodyNotes / (n * bars),
  });
  if (!values.json) {
    const row = rows[rows.length - 1];
    console.log(
      `${emotion.padEnd(11)} v ${row.valence.toFixed(2).padStart(5)} a ` +
        `${row.arousal.toFixed(2).padStart(5)}: major ${(100 * row.majorShare).toFixed(0)}% ` +
        `of ${n}, ${row.tempo} bpm, ${row.notesPerBar.toFixed(2)} melody notes per bar`,
    );
  }
}
if (values.json) console.log(JSON.stringify(rows, null, 2));
