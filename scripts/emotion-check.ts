/**
 * Does the emotion reach the music through the trained models alone? For each named emotion,
 * N melodies of 32 notes are sampled (seeded, at --temperature T, default 1) from the trained MelodyTransformer,
 * a chord drawn from the HarmonyPredictor every 4 notes (its input: the emotion, the chord in
 * force, the last span's pitch-class histogram), with no key constraint; the Krumhansl-Schmuckler
 * key finder (src/music/keyfinder.ts) names each melody's mode. Also the GroovePredictor's
 * expected onsets per bar (sum over 16 slots of (1 + g) / 2 times the density factor) against
 * arousal. This is the models' side of issue 10's acceptance 3; the decoder's version (through
 * `generate`) needs the graph's new inputs.
 *
 *   bun scripts/emotion-check.ts [--models DIR] [--n 50] [--seed 1] [--temperature 1]
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { join } from "node:path";
import { loadModel } from "../src/model/load.ts";
import { EMOTION_NAMES, emotionVector } from "../src/music/emotion-map.ts";
import { keyOfHistogram } from "../src/music/keyfinder.ts";
import { Rng, RNG_RANGE } from "../src/music/rng.ts";
import { defaultDataDir } from "../src/train/defaults.ts";
import { readCorpus } from "../src/train/corpus.ts";
import { arousalStats, labelCorpus } from "../src/train/labels.ts";

const HELP =
  `usage: bun scripts/emotion-check.ts [--models DIR] [--n 50] [--seed 1] [--temperature 1]

Samples N melodies per named emotion from the trained models in DIR (default
data/build/trained/) and prints the share the key finder calls major, and the groove's expected
onsets per bar against arousal. --temperature: notes and chords drawn from p^(1/T).`;

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    models: { type: "string" },
    n: { type: "string", default: "50" },
    seed: { type: "string", default: "1" },
    temperature: { type: "string", default: "1" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const dir = values.models ?? `${defaultDataDir().replace(/\/$/, "")}/trained`;
const n = Number(values.n);
const melody = await loadModel(join(dir, "MelodyTransformer.safetensors"));
const harmony = await loadModel(join(dir, "HarmonyPredictor.safetensors"));
const groove = await loadModel(join(dir, "GroovePredictor.safetensors"));
const rng = new Rng(Number(values.seed));

const temperature = Number(values.temperature);
if (!(temperature > 0)) {
  console.error(`--temperature: expected a number above 0, got ${values.temperature}`);
  process.exit(2);
}
const weights = new Float64Array(128);
/** A draw from p^(1/T) (the decoder's temperature). */
function draw(p: Float32Array): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) total += weights[i] = Math.pow(p[i], 1 / temperature);
  let u = (rng.nextU24() / RNG_RANGE) * total;
  for (let i = 0; i < p.length; i++) {
    u -= weights[i];
    if (u < 0) return i;
  }
  return p.length - 1;
}

const mIn = new Float32Array(256);
const hIn = new Float32Array(140);
for (const name of EMOTION_NAMES) {
  const e = emotionVector(name);
  let major = 0;
  for (let k = 0; k < n; k++) {
    melody.reset();
    const hist = new Float64Array(12);
    let span = new Float64Array(12);
    let chord = -1;
    let prev = -1;
    for (let step = 0; step < 32; step++) {
      if (step % 4 === 0) {
        hIn.fill(0);
        hIn.set(e, 0);
        if (chord >= 0) hIn[64 + chord] = 1;
        let s = 0;
        for (const v of span) s += v;
        if (s > 0) { for (let i = 0; i < 12; i++) hIn[128 + i] = span[i] / s; }
        chord = draw(harmony.forward(hIn));
        span = new Float64Array(12);
      }
      mIn.fill(0);
      mIn.set(e, 0);
      if (prev >= 0) mIn[64 + prev] = 1;
      mIn[192 + chord] = 1;
      prev = draw(melody.forward(mIn));
      hist[prev % 12]++;
      span[prev % 12]++;
    }
    if (keyOfHistogram(hist).mode === "major") major++;
  }
  console.log(
    `${name.padEnd(11)} valence ${emotionVector(name)[0].toFixed(2).padStart(5)}: major ${
      (100 * major / n).toFixed(0)
    }% of ${n}`,
  );
}
for (const a of [-1, -0.5, 0, 0.5, 1]) {
  const g = groove.forward(emotionVector({ valence: 0, arousal: a }));
  let onsets = 0;
  for (let s = 0; s < 16; s++) onsets += (1 + g[s]) / 2;
  onsets *= 0.5 + (1 + g[16]) / 2;
  console.log(
    `arousal ${a.toFixed(1).padStart(4)}: expected onsets per 16-slot bar ${onsets.toFixed(2)}`,
  );
}
// The reference: the same key finder on the first 32 notes of the corpus's own melodies, against
// the corpus's whole-piece key (music21's analysis), by mode and arousal.
const pieces = readCorpus();
const labels = labelCorpus(pieces, arousalStats(pieces));
const agree: Record<string, [number, number]> = {};
for (const p of pieces) {
  const h = new Float64Array(12);
  let k = 0;
  for (const note of p.melody) {
    if (note.pitch < 0) continue;
    if (k++ >= 32) break;
    h[note.pitch % 12]++;
  }
  if (h.every((v) => v === h[0])) continue;
  const a = labels.get(p.id)!.arousal;
  const bin = `${p.key.mode} pieces, arousal ${
    a > 0.3 ? "above 0.3" : a < -0.3 ? "below -0.3" : "-0.3..0.3"
  }`;
  const cell = agree[bin] ??= [0, 0];
  cell[1]++;
  if (keyOfHistogram(h).mode === p.key.mode) cell[0]++;
}
console.log("corpus reference (key finder on a piece's first 32 notes names the piece's mode):");
for (const [bin, [hit, all]] of Object.entries(agree).sort()) {
  console.log(`  ${bin}: ${(100 * hit / all).toFixed(0)}% of ${all}`);
}
melody.dispose();
harmony.dispose();
groove.dispose();
