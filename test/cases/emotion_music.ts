/**
 * Issue 10's acceptance 3 in small: the committed models (models/), with the decoder's key
 * constraint off (generate's default), make "joyful" pieces major and "sad" pieces minor, and
 * play more notes, faster, when the emotion is more aroused. The mode is judged by the
 * repository's Krumhansl-Schmuckler key finder (src/music/keyfinder.ts `keyOfHistogram`; it is
 * not part of the generator) on the pitch-class durations of the notes as the tests' own SMF
 * reader (test/midi-parse.ts) reads them from the written MIDI file, drums left out.
 * Runtime-neutral; test/emotion-music.test.ts and test/deno/emotion-music.test.ts register them.
 *
 * Why 24 pieces of 8 bars and at least 22 (91.7%, above issue 10's 90%): the seeds are fixed
 * (1..24), so for given models the test is deterministic, and 48 pieces take about a second.
 * The committed models give 24 of 24 for both emotions on these seeds (two misses of room); on
 * seeds 1..200 they give 199 joyful pieces major and 180 sad pieces minor (99.5% and 90%;
 * `bun scripts/generate-check.ts --n 50` gives 100% and 94%). The room is for the models, not
 * for chance: models whose sad rate were only 90% would pass a fresh draw of 24 seeds 56% of
 * the time, at 98% 99% of the time; a retrained model that lost the mode (the earlier models
 * made 42..58% of sad pieces minor) fails it.
 */

import { generate } from "../../src/music/generate.ts";
import { toMidi } from "../../src/music/midi.ts";
import { keyOfHistogram } from "../../src/music/keyfinder.ts";
import { EmotionPipeline } from "../../src/pipeline/emotion.ts";
import { parseSmf } from "../midi-parse.ts";
import { type Case, check } from "./check.ts";

export const PIECES = 24;
export const AT_LEAST = 22;
const BARS = 8;

let shared: EmotionPipeline | null = null;
async function pipeline(): Promise<EmotionPipeline> {
  shared ??= await EmotionPipeline.load();
  return shared;
}

export function disposeEmotionPipeline(): void {
  shared?.dispose();
  shared = null;
}

interface Heard {
  mode: "major" | "minor";
  /** Melody (channel 0) notes per bar. */
  notesPerBar: number;
  qpm: number;
}

async function hear(emotion: string, seed: number): Promise<Heard> {
  const result = await generate({ emotion, bars: BARS, seed, pipeline: await pipeline() });
  const smf = parseSmf(toMidi(result.sequence));
  const histogram = new Array<number>(12).fill(0);
  let melody = 0;
  for (const track of smf.tracks) {
    for (const n of track.notes) {
      if (n.channel === 9) continue;
      histogram[n.pitch % 12] += n.endTick - n.startTick;
      if (n.channel === 0) melody++;
    }
  }
  return {
    mode: keyOfHistogram(histogram).mode,
    notesPerBar: melody / BARS,
    qpm: smf.tempos[0].qpm,
  };
}

async function pieces(emotion: string): Promise<Heard[]> {
  const out: Heard[] = [];
  for (let seed = 1; seed <= PIECES; seed++) out.push(await hear(emotion, seed));
  return out;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export const emotionMusicCases: Case[] = [
  {
    name:
      `emotion -> music: of ${PIECES} joyful pieces at least ${AT_LEAST} are major, of ${PIECES} sad ones at least ${AT_LEAST} minor (key finder, no key constraint)`,
    run: async () => {
      const joyful = await pieces("joyful");
      const sad = await pieces("sad");
      const major = joyful.filter((h) => h.mode === "major").length;
      const minor = sad.filter((h) => h.mode === "minor").length;
      check(major >= AT_LEAST, () => `joyful: ${major} of ${PIECES} major (seeds 1..${PIECES})`);
      check(minor >= AT_LEAST, () => `sad: ${minor} of ${PIECES} minor (seeds 1..${PIECES})`);
    },
  },
  {
    name: "emotion -> music: more arousal, more melody notes per bar and a faster tempo",
    run: async () => {
      // Pairs at about the same valence, far apart in arousal.
      for (const [high, low] of [["joyful", "tender"], ["triumphant", "calm"], ["angry", "sad"]]) {
        const h = await pieces(high);
        const l = await pieces(low);
        const dh = mean(h.map((x) => x.notesPerBar));
        const dl = mean(l.map((x) => x.notesPerBar));
        // The density is the models' (the groove's onsets): at least a third more notes.
        check(
          dh > 1.33 * dl,
          () => `${high} ${dh.toFixed(2)} vs ${low} ${dl.toFixed(2)} melody notes per bar`,
        );
        check(h[0].qpm > l[0].qpm, () => `${high} ${h[0].qpm} qpm vs ${low} ${l[0].qpm} qpm`);
      }
    },
  },
];
