/**
 * The default models' data -> training -> card pipeline (issue 10): the corpus reader and its
 * split, the label proxies on the whole corpus, the training sets' layouts against hand-built
 * pieces, the chord template matcher against tonal's chord tables, the n-gram baseline on a
 * sequence whose answer is known, and the CI run (a tiny subset, one epoch: the loss falls, the
 * files load, the card holds the metrics). Runtime-neutral: test/train-defaults.test.ts and
 * test/deno/train-defaults.test.ts register the cases.
 */

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Chord, Note } from "tonal";
import {
  type CorpusPiece,
  fnv1a,
  parseCorpus,
  readCorpus,
  splitOf,
  toTonicC,
} from "../../src/train/corpus.ts";
import {
  arousalFrom,
  arousalStats,
  labelCorpus,
  modeClarity,
  pieceLabels,
  pieceValence,
} from "../../src/train/labels.ts";
import { KK_MAJOR_PROFILE, KK_MINOR_PROFILE } from "../../src/music/keyfinder.ts";
import { emotionVector } from "../../src/music/emotion-map.ts";
import {
  foldQuality,
  harmonySet,
  matchChord,
  melodySet,
  preparePiece,
} from "../../src/train/sets.ts";
import { sequenceBaselines } from "../../src/train/baselines.ts";
import { buildDataSets, trainDefault, TRAINED_MODELS } from "../../src/train/defaults.ts";
import { CARD_BEGIN, CARD_END, readMetrics, renderCard, writeCard } from "../../src/train/card.ts";
import { loadModel } from "../../src/model/load.ts";
import { type Case, check } from "./check.ts";

let corpusCache: CorpusPiece[] | null = null;
const corpus = () => corpusCache ??= readCorpus();

/** Spearman's rank correlation (ranks by sort; ties broken by index: the data has few). */
function spearman(x: readonly number[], y: readonly number[]): number {
  const rank = (v: readonly number[]) => {
    const order = v.map((_, i) => i).sort((a, b) => v[a] - v[b]);
    const r = new Float64Array(v.length);
    order.forEach((i, k) => (r[i] = k));
    return r;
  };
  const rx = rank(x);
  const ry = rank(y);
  const n = x.length;
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (rx[i] - ry[i]) ** 2;
  return 1 - (6 * d2) / (n * (n * n - 1));
}

function piece(partial: Partial<CorpusPiece>): CorpusPiece {
  return {
    id: "test/piece",
    collection: "essenFolksong",
    title: "",
    key: { tonic: 7, mode: "major" },
    meter: [4, 4],
    tempoQpm: 120,
    bars: [0, 48],
    melody: [],
    chords: [],
    dynamics: [],
    ...partial,
  };
}

export function trainDefaultsCases(): Case[] {
  return [
    {
      name: "corpus: FNV-1a matches the published test vectors; the split is by id and stable",
      run: () => {
        // FNV-1a 32-bit reference values (the algorithm's published test vectors).
        check(fnv1a("") === 0x811c9dc5, () => `fnv1a("") = ${fnv1a("").toString(16)}`);
        check(fnv1a("a") === 0xe40c292c, () => `fnv1a("a") = ${fnv1a("a").toString(16)}`);
        check(
          fnv1a("foobar") === 0xbf9cf968,
          () => `fnv1a("foobar") = ${fnv1a("foobar").toString(16)}`,
        );
        const pieces = corpus();
        check(pieces.length === 10326, () => `expected 10,326 pieces, got ${pieces.length}`);
        const ids = new Set(pieces.map((p) => p.id));
        check(ids.size === pieces.length, () => "piece ids are not unique");
        const counts = { train: 0, validation: 0, test: 0 };
        for (const p of pieces) {
          const s = splitOf(p.id);
          check(splitOf(p.id) === s, () => `${p.id}: split not deterministic`);
          const bucket = fnv1a(p.id) % 100;
          const want = bucket < 80 ? "train" : bucket < 90 ? "validation" : "test";
          check(s === want, () => `${p.id}: bucket ${bucket} gave ${s}`);
          counts[s]++;
        }
        // The hash spreads: each share within 2 points of 80 / 10 / 10 over 10,326 pieces.
        const share = (n: number) => (100 * n) / pieces.length;
        check(Math.abs(share(counts.train) - 80) < 2, () => `train share ${share(counts.train)}`);
        check(Math.abs(share(counts.test) - 10) < 2, () => `test share ${share(counts.test)}`);
      },
    },
    {
      name: "corpus: bad lines are refused with the field named; toTonicC moves pitches and roots",
      run: () => {
        let message = "";
        try {
          parseCorpus(
            new TextEncoder().encode('{"id":"x/y","key":{"tonic":13,"mode":"major"}}\n'),
            "c.jsonl",
          );
        } catch (e) {
          message = (e as Error).message;
        }
        check(/c\.jsonl.*line 1.*key\.tonic/.test(message), () => `message: ${message}`);
        const p = toTonicC(piece({
          key: { tonic: 7, mode: "minor" },
          melody: [{ pitch: 67, onset: 0, duration: 12 }, { pitch: -1, onset: 12, duration: 12 }],
          chords: [{ onset: 0, duration: 12, root: 2, quality: "maj" }],
        }));
        check(p.key.tonic === 0 && p.key.mode === "minor", () => JSON.stringify(p.key));
        check(p.melody[0].pitch === 60 && p.melody[1].pitch === -1, () => JSON.stringify(p.melody));
        check(p.chords[0].root === 7, () => `D in G minor is the fifth: got ${p.chords[0].root}`);
      },
    },
    {
      name: "labels: sign(valence) is the mode for every corpus piece; arousal rises with density",
      run: () => {
        const pieces = corpus();
        const stats = arousalStats(pieces);
        const labels = labelCorpus(pieces, stats);
        const nps: number[] = [];
        const ar: number[] = [];
        for (const p of pieces) {
          const l = labels.get(p.id)!;
          const sign = p.key.mode === "major" ? 1 : -1;
          check(
            Math.sign(l.valence) === sign,
            () => `${p.id}: ${p.key.mode}, valence ${l.valence}`,
          );
          check(
            Math.abs(l.valence) <= 1 && Math.abs(l.arousal) <= 1,
            () => `${p.id}: out of range`,
          );
          nps.push(l.notesPerSecond);
          ar.push(l.arousal);
        }
        // Notes per second dominate arousal (weight 0.75 against 0.25 for register): over the
        // corpus the rank correlation is high (0.9 leaves room for the register term).
        const rho = spearman(nps, ar);
        check(rho > 0.9, () => `Spearman(notes per second, arousal) = ${rho}`);
        // At a fixed register, strictly increasing in density.
        let last = -Infinity;
        for (const d of [0.5, 1, 2, 4, 8]) {
          const a = arousalFrom(d, 70, stats);
          check(a > last, () => `arousal at ${d} notes/s (${a}) is not above ${last}`);
          last = a;
        }
        // A render at twice the tempo is more aroused than at the piece's own.
        const p = pieces[0];
        const own = pieceLabels(p, stats);
        const fast = pieceLabels(p, stats, { tempoQpm: own.tempoQpm * 2 });
        check(fast.arousal > own.arousal, () => `${own.arousal} -> ${fast.arousal}`);
      },
    },
    {
      name: "labels: valence's size is the mode's clarity (Krumhansl-Kessler), its sign the mode",
      run: () => {
        // Plain float64 reference: Pearson of the pitch-class weights with a rotated profile.
        const r = (w: number[], profile: readonly number[], tonic: number) => {
          const x = w.map((_, i) => w[(i + tonic) % 12]);
          const mx = x.reduce((a, b) => a + b) / 12;
          const my = profile.reduce((a, b) => a + b) / 12;
          let sxy = 0, sxx = 0, syy = 0;
          for (let i = 0; i < 12; i++) {
            sxy += (x[i] - mx) * (profile[i] - my);
            sxx += (x[i] - mx) ** 2;
            syy += (profile[i] - my) ** 2;
          }
          return sxy / Math.sqrt(sxx * syy);
        };
        const notes = (pitches: number[]) =>
          pitches.map((pitch, i) => ({ pitch, onset: 12 * i, duration: 12 }));
        // A minor, clearly: A C E, the leading note G#, B D; and an "A minor" tune that sounds
        // like its relative C major (C E G, hardly an A).
        const clear = piece({
          key: { tonic: 9, mode: "minor" },
          melody: notes([69, 72, 76, 69, 68, 71, 69, 74, 72, 71, 69, 64, 69]),
        });
        const relative = piece({
          key: { tonic: 9, mode: "minor" },
          melody: notes([72, 76, 79, 72, 74, 76, 77, 79, 72, 71, 72, 69]),
        });
        for (const [p, lo, hi] of [[clear, 0.1, 1], [relative, -1, -0.15]] as const) {
          const w = new Array(12).fill(0);
          for (const n of p.melody) w[n.pitch % 12] += n.duration;
          let other = -Infinity;
          for (let t = 0; t < 12; t++) other = Math.max(other, r(w, KK_MAJOR_PROFILE, t));
          const d = r(w, KK_MINOR_PROFILE, 9) - other;
          const got = modeClarity(p);
          check(
            Math.abs(got - d) < 1e-9,
            () => `${p.melody.length} notes: clarity ${got}, reference ${d}`,
          );
          check(d > lo && d < hi, () => `clarity ${d}, expected in (${lo}, ${hi})`);
          // |v| = 0.2 + 0.75 clamp((d + 0.15) / 0.45, 0, 1), negative for a minor piece.
          const want = -(0.2 + 0.75 * Math.min(1, Math.max(0, (d + 0.15) / 0.45)));
          const v = pieceValence(p);
          check(Math.abs(v - want) < 1e-9, () => `valence ${v} (clarity ${d}), want ${want}`);
        }
      },
    },
    {
      name:
        "sets: the melody inputs are [emotion | previous note | chord] with tonic-relative targets",
      run: () => {
        // G major: G4 A4 B4 (rest) C5 in one 4/4 bar, then D5 in the next.
        const p = piece({
          melody: [
            { pitch: 67, onset: 0, duration: 12 },
            { pitch: 69, onset: 12, duration: 6 },
            { pitch: 71, onset: 18, duration: 6 },
            { pitch: -1, onset: 24, duration: 12 },
            { pitch: 72, onset: 36, duration: 12 },
            { pitch: 74, onset: 48, duration: 48 },
          ],
          bars: [0, 48],
        });
        const labels = {
          valence: 0.6,
          arousal: -0.2,
          tempoQpm: 120,
          minorShare: 0,
          modeClarity: 0.2,
          notesPerSecond: 2,
          meanPitch: 70,
        };
        const prepared = preparePiece(p, labels);
        const data = melodySet([prepared], "t");
        check(
          data.count === 1 && data.lengths[0] === 5,
          () => `count ${data.count} length ${data.lengths[0]}`,
        );
        check(
          data.inputSize === 256 && data.steps === 32,
          () => `${data.inputSize} x ${data.steps}`,
        );
        const want = [60, 62, 64, 65, 67];
        const emotion = emotionVector({ valence: 0.6, arousal: -0.2 });
        for (let k = 0; k < 5; k++) {
          check(
            data.targets[k] === want[k],
            () => `step ${k}: target ${data.targets[k]}, want ${want[k]}`,
          );
          const row = data.inputs.subarray(k * 256, (k + 1) * 256);
          for (let i = 0; i < 64; i++) {
            check(row[i] === emotion[i], () => `step ${k}: emotion[${i}]`);
          }
          const prev = [...row.subarray(64, 192)].flatMap((v, i) => (v !== 0 ? [[i, v]] : []));
          if (k === 0) check(prev.length === 0, () => `step 0 has a previous note ${prev}`);
          else {check(prev.length === 1 && prev[0][0] === want[k - 1] && prev[0][1] === 1, () =>
              `step ${k}: previous ${prev}`);}
          const chord = [...row.subarray(192, 256)].filter((v) => v === 1).length;
          check(chord === 1, () => `step ${k}: ${chord} chord bits`);
        }
        check(data.targets[5] === -1, () => "padding has a target");
        // Two spans a bar in 4/4: the first half (C D E = tonic-relative G A B) reads C major.
        check(prepared.spans.length === 4, () => `${prepared.spans.length} spans`);
        check(prepared.spans[0].chord === 0, () => `first span chord ${prepared.spans[0].chord}`);
        const h = harmonySet([prepared], "t");
        // The opening example (no chord, no melody: the decoder's first step), then 3 transitions.
        check(h.count === 4 && h.inputSize === 140, () => `harmony ${h.count} x ${h.inputSize}`);
        for (let i = 0; i < 64; i++) {
          check(h.inputs[i] === emotion[i], () => `opening emotion[${i}]`);
        }
        check(
          h.inputs.subarray(64, 140).every((v) => v === 0),
          () => "the opening has a chord or melody",
        );
        check(
          h.targets[0] === prepared.spans[0].chord,
          () => "the opening's target is not the first chord",
        );
        const row = h.inputs.subarray(140, 280);
        check(
          row[64 + prepared.spans[0].chord] === 1,
          () => "the first transition's chord in force",
        );
        let sum = 0;
        for (let i = 128; i < 140; i++) sum += row[i];
        check(Math.abs(sum - 1) < 1e-6, () => `histogram sums to ${sum}`);
        // Span 0 holds C (12 ticks), D (6), E (6); the decoder asks for the next chord at the
        // step of its last note (E), before E is drawn: C 12 and D 6 ticks, so 2/3 and 1/3.
        check(
          Math.abs(row[128] - 2 / 3) < 1e-6 && Math.abs(row[130] - 1 / 3) < 1e-6 && row[132] === 0,
          () => `histogram ${[...row.subarray(128, 140)]}`,
        );
        check(
          h.targets[1] === prepared.spans[1].chord,
          () => "harmony target is not the next span's chord",
        );
      },
    },
    {
      name:
        "sets: the template matcher names tonal's triads and sevenths; qualities fold as documented",
      run: () => {
        const kinds: [string, number][] = [["", 0], ["m", 1], ["7", 2], ["m7", 3]];
        for (let root = 0; root < 12; root++) {
          for (const [suffix, q] of kinds) {
            const name = Note.pitchClass(Note.fromMidi(60 + root)) + suffix;
            const chord = Chord.get(name);
            check(!chord.empty, () => `tonal does not know ${name}`);
            const w = new Float64Array(12);
            for (const n of chord.notes) w[Note.chroma(n)!] = 1;
            const tonic = Note.chroma(chord.tonic!)!;
            for (const mode of ["major", "minor"] as const) {
              const got = matchChord(w, mode, 0);
              check(
                got === q * 12 + tonic,
                () => `${name} (${mode}): class ${got}, want ${q * 12 + tonic}`,
              );
            }
          }
        }
        check(foldQuality("maj7") === "maj" && foldQuality("sus4") === "maj", () => "maj7/sus4");
        check(foldQuality("hdim7") === "dim" && foldQuality("dim7") === "dim", () => "hdim7/dim7");
        check(
          matchChord(new Float64Array(12), "major", 17) === 17,
          () => "an empty span keeps the chord",
        );
      },
    },
    {
      name:
        "baselines: the trigram predicts a deterministic cycle exactly; most-frequent takes the mode",
      run: () => {
        const { mostFrequent, ngram } = sequenceBaselines([[0, 1, 2, 0, 1, 2, 0, 1, 2]], [[
          0,
          1,
          2,
          0,
        ]], 3);
        check(ngram.accuracy === 1, () => `trigram accuracy ${ngram.accuracy}`);
        check(
          mostFrequent.accuracy === 0.5,
          () => `most-frequent accuracy ${mostFrequent.accuracy}`,
        );
        check(ngram.positions === 4, () => `positions ${ngram.positions}`);
        check(
          ngram.loss! < mostFrequent.loss!,
          () => `losses ${ngram.loss} vs ${mostFrequent.loss}`,
        );
      },
    },
    {
      name: "pipeline (CI): data -> one epoch per model -> card on a tiny subset; the loss falls",
      run: async () => {
        const dir = mkdtempSync(join(tmpdir(), "cadenza-defaults-"));
        try {
          const manifest = await buildDataSets({ out: dir, quick: true, quickEvery: 80 });
          check(
            manifest.pieces.train > 50 && manifest.pieces.test > 0,
            () => JSON.stringify(manifest.pieces),
          );
          const out = join(dir, "trained");
          for (const name of TRAINED_MODELS) {
            const m = await trainDefault(name, { data: dir, out, quick: true, progress: false });
            const after = m.history[m.history.length - 1].loss;
            check(
              after < m.initialLoss,
              () => `${name}: validation loss ${m.initialLoss} -> ${after}`,
            );
            check(
              m.parameters === m.parameters && m.epochs === 1,
              () => `${name}: epochs ${m.epochs}`,
            );
            const model = await loadModel(join(out, `${name}.safetensors`));
            try {
              check(
                model.spec.meta?.trained === "true",
                () => `${name}: metadata ${JSON.stringify(model.spec.meta)}`,
              );
              check(
                model.spec.meta?.untrained === undefined,
                () => `${name}: still says untrained`,
              );
              check(
                JSON.parse(model.spec.meta!.metrics).test.f32.loss === m.test.f32.loss,
                () => `${name}: metrics`,
              );
            } finally {
              model.dispose();
            }
          }
          const metrics = readMetrics(out);
          check(metrics.length === 4, () => `${metrics.length} metrics files`);
          const card = renderCard(metrics);
          for (const m of metrics) {
            check(
              card.includes(m.test.f32.accuracy.toFixed(4)),
              () => `${m.model}: FP32 figure missing`,
            );
            check(
              card.includes(m.test.int8.accuracy.toFixed(4)),
              () => `${m.model}: int8 figure missing`,
            );
          }
          const md = join(dir, "MODELS.md");
          writeFileSync(md, "# head\n\nkept text\n");
          writeCard(md, card);
          writeCard(md, card);
          const text = readFileSync(md, "utf8");
          check(
            text.startsWith("# head\n\nkept text\n"),
            () => "the card overwrote the file's text",
          );
          check(
            text.split(CARD_BEGIN).length === 2 && text.split(CARD_END).length === 2,
            () => "card written twice",
          );
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
    },
  ];
}
