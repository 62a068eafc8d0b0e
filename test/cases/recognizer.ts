/**
 * The EmotionRecognizer's data (src/train/recognizer-data.ts), its linear baseline and metrics
 * (src/train/ridge.ts, src/train/recognizer-eval.ts). Runtime-neutral; registered by
 * test/recognizer.test.ts and test/deno/recognizer.test.ts. The rendering cases need FluidSynth
 * and a General MIDI SoundFont and are skipped (with the reason) without them.
 */

import { FEATURE_COUNT } from "../../src/audio/features.ts";
import { emotionVector } from "../../src/music/emotion-map.ts";
import { findFluidSynth } from "../../src/music/audio.ts";
import type { CorpusPiece } from "../../src/train/corpus.ts";
import { splitOf } from "../../src/train/corpus.ts";
import { parseTrainingData, writeTrainingData } from "../../src/train/data.ts";
import { type ArousalStats } from "../../src/train/labels.ts";
import {
  BLOCK_SAMPLES,
  EXCERPT_SECONDS,
  renderLabeller,
  renderPlan,
  renderSamples,
  renderSequence,
  renderWindows,
  selectPieces,
  WINDOWS_PER_RENDER,
  windowStarts,
  windowsToData,
} from "../../src/train/recognizer-data.ts";
import { correlations } from "../../src/train/recognizer-eval.ts";
import { fitRidge, pearson, predictRidge } from "../../src/train/ridge.ts";
import { type Case, check } from "./check.ts";
import { Rng } from "../helpers.ts";

export interface SkippableCase extends Case {
  skip?: string;
}

const synth = findFluidSynth();
const NO_SYNTH = synth.missing.length > 0
  ? `missing ${synth.missing.join(" and ")} (sudo apt-get install fluidsynth fluid-soundfont-gm)`
  : undefined;

/** A four-bar piece in 4/4 (12 ticks a quarter): a scale of quarter notes, one chord a bar. */
function piece(id: string, mode: "major" | "minor", chords: boolean): CorpusPiece {
  const scale = mode === "major" ? [0, 2, 4, 5, 7, 9, 11, 12] : [0, 2, 3, 5, 7, 8, 10, 12];
  const melody = [...scale, ...scale.slice().reverse()].map((s, i) => ({
    pitch: 62 + s,
    onset: i * 12,
    duration: 12,
  }));
  return {
    id,
    collection: chords ? "bach" : "essenFolksong",
    title: id,
    key: { tonic: 2, mode },
    meter: [4, 4],
    tempoQpm: null,
    bars: [0, 48, 96, 144],
    melody,
    chords: chords
      ? [
        { onset: 0, duration: 48, root: 2, quality: mode === "major" ? "maj" : "min" },
        { onset: 48, duration: 48, root: 9, quality: "dom7" },
        { onset: 96, duration: 48, root: 7, quality: mode === "major" ? "maj" : "min" },
        { onset: 144, duration: 48, root: 2, quality: mode === "major" ? "maj" : "min" },
      ]
      : [],
    dynamics: [],
  };
}

const STATS: ArousalStats = { logDensityMean: 0.7, logDensityStd: 0.4, pitchMean: 68, pitchStd: 4 };

const planCase: SkippableCase = {
  name: "recognizer data: render plans and sequences are seeded, varied, and play the piece",
  run: () => {
    const p = piece("test/chorale", "minor", true);
    const a = renderPlan(p, 0, 90);
    check(
      JSON.stringify(a) === JSON.stringify(renderPlan(p, 0, 90)),
      () => "plan not reproducible",
    );
    const plans = Array.from({ length: 12 }, (_, r) => renderPlan(p, r, 90));
    check(new Set(plans.map((x) => x.melodyProgram)).size >= 4, () => "programs do not vary");
    check(new Set(plans.map((x) => x.transpose)).size >= 4, () => "transpositions do not vary");
    check(plans.every((x) => x.qpm >= 0.7 * 90 - 1 && x.qpm <= 1.45 * 90 + 1), () => "tempo range");
    check(plans.every((x) => x.velocity >= 40 && x.velocity <= 115), () => "velocity range");
    const seq = renderSequence(p, a);
    const melody = seq.notes.filter((n) => n.instrument === 0);
    const chords = seq.notes.filter((n) => n.instrument === 1);
    // The 16-note line repeats until the excerpt is full; each note at tick * 60 / qpm / 12 s.
    const secondsPerQuarter = 60 / a.qpm;
    check(
      melody.every((n, i) =>
        Math.abs(
          n.startTime - (i % 16) * secondsPerQuarter - Math.floor(i / 16) * 16 * secondsPerQuarter,
        ) < 1e-9
      ),
      () => "melody onsets",
    );
    check(
      melody[0].pitch === 62 + a.transpose,
      () => `first note ${melody[0].pitch}, transpose ${a.transpose}`,
    );
    check(
      seq.totalTime === EXCERPT_SECONDS && melody.every((n) => n.endTime <= EXCERPT_SECONDS),
      () => "excerpt length",
    );
    // The first chord: the bass on its root, the tones of a minor triad above.
    const first = chords.filter((n) => n.startTime === 0).map((n) => n.pitch).sort((x, y) => x - y);
    const root = (2 + a.transpose + 120) % 12;
    check(first[0] % 12 === root, () => `bass ${first[0]} is not the root ${root}`);
    const above = first.slice(1).map((q) => (q - first[1] + 120) % 12);
    check(JSON.stringify(above) === "[0,3,7]", () => `chord tones ${above}`);
    check(
      seq.instrumentInfos[1]?.program === a.accompanimentProgram,
      () => "accompaniment program",
    );
    const line = renderSequence(
      piece("test/line", "major", false),
      renderPlan(piece("test/line", "major", false), 0, 90),
    );
    check(line.notes.every((n) => n.instrument === 0), () => "a single line got an accompaniment");
  },
};

const labelCase: SkippableCase = {
  name:
    "recognizer data: labels follow the mode (valence) and the render's tempo and velocity (arousal)",
  run: () => {
    const label = renderLabeller(STATS);
    const major = piece("test/a", "major", true);
    const minor = piece("test/b", "minor", true);
    const at = (p: CorpusPiece, qpm: number, velocity: number) =>
      label(p, { qpm, transpose: 0, velocity });
    check(at(major, 90, 80).valence > 0 && at(minor, 90, 80).valence < 0, () => "valence sign");
    check(
      at(major, 140, 80).arousal > at(major, 90, 80).arousal,
      () => "arousal does not rise with tempo",
    );
    check(
      at(major, 90, 110).arousal > at(major, 90, 60).arousal,
      () => "arousal does not rise with velocity",
    );
    check(
      label(major, { qpm: 90, transpose: 12, velocity: 80 }).arousal > at(major, 90, 80).arousal,
      () => "arousal does not rise with the register",
    );
    // A transposition moves the register, not the mode or how clearly it sounds.
    for (const p of [major, minor, piece("test/c", "minor", false)]) {
      for (const transpose of [-5, 3, 6]) {
        const moved = label(p, { qpm: 90, transpose, velocity: 80 }).valence;
        check(
          moved === at(p, 90, 80).valence,
          () => `${p.id}: valence ${moved} transposed ${transpose}`,
        );
      }
    }
  },
};

const selectCase: SkippableCase = {
  name: "recognizer data: the selection keeps to its split, balances the modes, same on every run",
  run: () => {
    const pieces: CorpusPiece[] = [];
    for (let i = 0; i < 400; i++) {
      pieces.push(piece(`test/p${i}`, i % 3 === 0 ? "minor" : "major", i % 2 === 0));
    }
    for (const split of ["train", "validation", "test"] as const) {
      const chosen = selectPieces(pieces, split, { chorales: 3, lines: 4 });
      check(
        chosen.every((p) => splitOf(p.id) === split),
        () => `${split}: a piece of another split`,
      );
      for (const mode of ["major", "minor"]) {
        const of = chosen.filter((p) => p.key.mode === mode);
        check(
          of.filter((p) => p.chords.length > 0).length === 3,
          () => `${split} ${mode}: chorales`,
        );
        check(
          of.filter((p) => p.chords.length === 0).length === 4,
          () => `${split} ${mode}: lines`,
        );
      }
      const again = selectPieces([...pieces].reverse(), split, { chorales: 3, lines: 4 });
      check(
        again.map((p) => p.id).join() === chosen.map((p) => p.id).join(),
        () => "order-dependent",
      );
    }
  },
};

const renderCase: SkippableCase = {
  name:
    "recognizer data: FluidSynth renders are the same for a seed, non-silent, as long as the excerpt",
  skip: NO_SYNTH,
  run: async () => {
    const p = piece("test/chorale", "major", true);
    const plan = renderPlan(p, 1, 100);
    const a = await renderSamples(renderSequence(p, plan));
    const b = await renderSamples(renderSequence(p, plan));
    check(a.length === b.length && a.every((v, i) => v === b[i]), () => "two renders differ");
    // The excerpt plus FluidSynth's release tail: FluidSynth plays on until every voice has
    // died away, which for a harp's low strings (this plan's accompaniment) takes about 10 s.
    check(
      a.length >= EXCERPT_SECONDS * 48_000 && a.length <= (EXCERPT_SECONDS + 12) * 48_000,
      () => `${a.length / 48_000} s`,
    );
    for (let s = 0; s < EXCERPT_SECONDS; s++) {
      let sum = 0;
      for (let i = s * 48_000; i < (s + 1) * 48_000; i++) sum += a[i] * a[i];
      const rms = Math.sqrt(sum / 48_000);
      check(rms > 1e-3, () => `second ${s}: RMS ${rms}`);
    }
    const other = await renderSamples(renderSequence(p, renderPlan(p, 2, 100)));
    check(
      other.length !== a.length || other.some((v, i) => v !== a[i]),
      () => "renders 1 and 2 are the same",
    );
  },
};

const buildCase: SkippableCase = {
  name:
    "recognizer data: a tiny build has the documented shapes, targets and splits, and round-trips",
  skip: NO_SYNTH,
  run: async () => {
    const label = renderLabeller(STATS);
    const steps = 16;
    const rendered = [];
    for (const [id, mode] of [["test/x", "major"], ["test/y", "minor"]] as const) {
      const p = piece(id, mode, id === "test/x");
      rendered.push(await renderWindows(p, renderPlan(p, 0, 100), label, steps));
    }
    const { data, records } = windowsToData(rendered, steps, "tiny", { task: "test" }, 1);
    check(
      data.count === 2 * WINDOWS_PER_RENDER && records.length === data.count,
      () => `${data.count} windows`,
    );
    check(data.inputs.length === data.count * steps * FEATURE_COUNT, () => "inputs shape");
    check(data.split!.every((s) => s === 1), () => "split");
    const starts = windowStarts(steps);
    check(
      starts[0] * BLOCK_SAMPLES >= 4 * 48_000 - BLOCK_SAMPLES,
      () => `first window at block ${starts[0]}`,
    );
    for (let n = 0; n < data.count; n++) {
      const want = emotionVector({ valence: records[n].valence, arousal: records[n].arousal });
      for (const t of [0, steps - 1]) {
        const got = data.targets.subarray((n * steps + t) * 64, (n * steps + t + 1) * 64);
        check(got.every((v, i) => v === want[i]), () => `window ${n} step ${t}: target`);
      }
      const f = data.inputs.subarray(n * steps * FEATURE_COUNT, (n + 1) * steps * FEATURE_COUNT);
      check(f.some((v) => v > 0.1), () => `window ${n}: silent features`);
    }
    check(
      records[0].valence > 0 && records[WINDOWS_PER_RENDER].valence < 0,
      () => "valence by mode",
    );
    const back = parseTrainingData(writeTrainingData(data), "tiny");
    check(
      back.count === data.count && back.inputs.every((v, i) => v === data.inputs[i]),
      () => "round trip",
    );
    check(back.meta.loss === "mse" && back.targetSize === 64, () => "metadata");
  },
};

const ridgeCase: SkippableCase = {
  name: "recognizer baseline: ridge recovers a linear law; correlations per piece average windows",
  run: () => {
    const rng = new Rng(7);
    const n = 400;
    const d = 5;
    const x = rng.floats(n * d, -1, 1);
    const w = [0.5, -1, 0, 2, 0.25];
    const y = new Float64Array(n * 2);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < d; j++) y[2 * i] += w[j] * x[i * d + j];
      y[2 * i] += 3;
      y[2 * i + 1] = -y[2 * i];
    }
    const model = fitRidge(x, y, n, d, 2, 1e-9);
    const p = predictRidge(model, x, n);
    const err = p.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
    check(err < 1e-6, () => `ridge misses an exact linear law by ${err}`);
    // A large penalty shrinks the fit towards the mean.
    const flat = predictRidge(fitRidge(x, y, n, d, 2, 1e6), x, n);
    check(flat.every((v, i) => Math.abs(v - (i % 2 === 0 ? 3 : -3)) < 0.05), () => "penalty");
    check(Math.abs(pearson([1, 2, 3, 4], [2, 4, 6, 8]) - 1) < 1e-12, () => "pearson +1");
    check(Math.abs(pearson([1, 2, 3, 4], [4, 3, 2, 1]) + 1) < 1e-12, () => "pearson -1");
    // Three pieces, two windows each: the per-piece means decide.
    const rec = (piece: string, valence: number, arousal: number) => ({
      piece,
      render: 0,
      window: 0,
      valence,
      arousal,
      plan: {} as never,
    });
    const records = [
      rec("a", 0.5, 0),
      rec("a", 0.5, 0),
      rec("b", -0.5, 1),
      rec("b", -0.5, 1),
      rec("c", 0.2, -1),
      rec("c", 0.2, -1),
    ];
    const predicted = [0.9, 0, 0.1, 0, -0.7, 1, -0.1, 0.8, 0.3, -0.9, 0.3, -1.1];
    const c = correlations(records, predicted);
    const want = pearson([0.5, -0.4, 0.3], [0.5, -0.5, 0.2]);
    check(
      c.pieces === 3 && Math.abs(c.valence - want) < 1e-12,
      () => `valence r ${c.valence}, expected ${want}`,
    );
    check(c.modeAccuracy === 1, () => `mode accuracy ${c.modeAccuracy}`);
  },
};

export const recognizerCases: SkippableCase[] = [
  planCase,
  labelCase,
  selectCase,
  renderCase,
  buildCase,
  ridgeCase,
];
