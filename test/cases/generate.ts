/**
 * `generate` and `respond` on the project's models, checked through the tests' own SMF reader
 * (test/midi-parse.ts) and tonal's scales, not through the code that wrote the notes.
 * Runtime-neutral; test/generate.test.ts and test/deno/generate.test.ts register them.
 */

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Buffer } from "node:buffer";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Scale } from "tonal";
import { melodySignal } from "../../src/audio/signal.ts";
import type { Output } from "../../src/cli/command.ts";
import { main } from "../../src/cli/main.ts";
import { loadSpec } from "../../src/model/load.ts";
import { writeSafetensors } from "../../src/model/formats/safetensors.ts";
import { keyName } from "../../src/music/chords.ts";
import { generate, type GenerateResult, respond } from "../../src/music/generate.ts";
import { toMidi } from "../../src/music/midi.ts";
import { emptySequence, validateSequence } from "../../src/music/sequence.ts";
import { EMOTION_MODELS, EmotionPipeline } from "../../src/pipeline/emotion.ts";
import { parseSmf } from "../midi-parse.ts";
import { encodeWav } from "./audio.ts";
import { type Case, check, rejectsCadenza } from "./check.ts";

const MODELS_DIR = new URL("../../models/", import.meta.url).pathname;

let shared: EmotionPipeline | null = null;
/** One loaded pipeline for the cases (generate resets it before each use). */
async function pipeline(): Promise<EmotionPipeline> {
  shared ??= await EmotionPipeline.load();
  return shared;
}

export function disposePipeline(): void {
  shared?.dispose();
  shared = null;
}

function fingerprint(result: GenerateResult): string {
  return JSON.stringify([result.sequence.notes, result.chords]);
}

const pieceCase: Case = {
  name: "generate: 8 bars of joyful: a valid sequence of the right length, labelled trained",
  run: async () => {
    const result = await generate({
      emotion: "joyful",
      bars: 8,
      seed: 7,
      pipeline: await pipeline(),
    });
    const seq = result.sequence;
    validateSequence(seq);
    const barSeconds = (60 / result.tempo) * 4;
    check(Math.abs(seq.totalTime - 8 * barSeconds) < 1e-9, () => `totalTime ${seq.totalTime}`);
    check(
      result.meter.join("/") === "4/4" && result.key.mode === "major",
      () => keyName(result.key),
    );
    for (const part of [0, 1, 2]) {
      check(seq.notes.some((n) => n.instrument === part), () => `part ${part} has no notes`);
    }
    check(!seq.notes.some((n) => n.isDrum), () => "drums without drums: true");
    check(
      result.chords.length >= 8 && result.chords.length <= 16,
      () => `${result.chords.length} chords`,
    );
    check(
      result.chords.every((c, i) => i === 0 || c.time > result.chords[i - 1].time),
      () => "chord order",
    );
    check(
      result.emotionPath.length === 8 && result.emotionPath[0].name === "joyful",
      () => "emotion path",
    );
    // The models in models/ are trained (their metadata says so): no output says untrained.
    check(result.trained === true, () => "trained should be true for models/");
    check(
      seq.meta?.untrained === undefined && seq.meta?.trained === "true",
      () => JSON.stringify(seq.meta),
    );
    check(!/untrained/i.test(result.summary), () => result.summary);
    const melody = seq.notes.filter((n) => n.instrument === 0);
    check(melody.every((n) => n.pitch >= 60 && n.pitch <= 84), () => "melody outside 60..84");
  },
};

const determinismCase: Case = {
  name: "generate: the same seed gives the same piece and MIDI bytes; another seed another",
  run: async () => {
    const p = await pipeline();
    const a = await generate({ emotion: "sad", bars: 4, seed: 11, pipeline: p });
    const b = await generate({ emotion: "sad", bars: 4, seed: 11, pipeline: p });
    const c = await generate({ emotion: "sad", bars: 4, seed: 12, pipeline: p });
    check(fingerprint(a) === fingerprint(b), () => "seed 11 twice gave two pieces");
    const ma = toMidi(a.sequence);
    const mb = toMidi(b.sequence);
    check(ma.length === mb.length && ma.every((x, i) => x === mb[i]), () => "MIDI bytes differ");
    check(fingerprint(a) !== fingerprint(c), () => "seeds 11 and 12 gave the same piece");
  },
};

const honouredCase: Case = {
  name:
    "generate: --bars 16 --tempo 90 --meter 3/4 --key are honoured exactly (read back from MIDI)",
  run: async () => {
    const result = await generate({
      emotion: "tender",
      bars: 16,
      tempo: 90,
      meter: [3, 4],
      key: "Eb major",
      seed: 1,
      drums: true,
      pipeline: await pipeline(),
    });
    const smf = parseSmf(toMidi(result.sequence));
    // 90 qpm is 666,666.67 us a quarter: the file holds the nearest whole microsecond.
    check(smf.tempos[0]?.microsecondsPerQuarter === 666_667, () => JSON.stringify(smf.tempos));
    const ts = smf.timeSignatures[0];
    check(ts?.numerator === 3 && ts?.denominator === 4, () => JSON.stringify(smf.timeSignatures));
    check(
      smf.keySignatures[0]?.sharps === -3 && !smf.keySignatures[0].minor,
      () => JSON.stringify(smf.keySignatures),
    );
    const bars = smf.endTick / (smf.ppq * 3);
    check(Math.abs(bars - 16) < 0.5, () => `${bars} bars`);
    check(
      smf.tracks.some((t) => t.channels.includes(9) && t.notes.length > 0),
      () => "no drums on channel 10",
    );
  },
};

const keyConstraintCase: Case = {
  name: "generate: with constrain key every melody note is in the key (tonal's scale)",
  run: async () => {
    for (const [emotion, seed] of [["sad", 3], ["joyful", 4], ["mysterious", 5]] as const) {
      const result = await generate({
        emotion,
        bars: 4,
        seed,
        constrain: "key",
        pipeline: await pipeline(),
      });
      const name = keyName(result.key);
      const scale = new Set(Scale.get(name).notes.map(chroma));
      check(scale.size === 7, () => `tonal does not know ${name}`);
      const melody = result.sequence.notes.filter((n) => n.instrument === 0);
      check(melody.length > 8, () => `${emotion}: ${melody.length} notes`);
      for (const note of melody) {
        check(
          scale.has(note.pitch % 12),
          () => `${emotion} in ${name}: note ${note.pitch} outside the key`,
        );
      }
    }
  },
};

function chroma(name: string): number {
  const letter = ({ C: 0, D: 2, E: 4, F: 5, G: 7, A: 9, B: 11 } as Record<string, number>)[name[0]];
  let pc = letter;
  for (const c of name.slice(1)) pc += c === "#" ? 1 : c === "b" ? -1 : 0;
  return ((pc % 12) + 12) % 12;
}

const emotionDefaultsCase: Case = {
  name:
    "generate: tempo and mode come from the emotion; a V/A point works; bad options are refused",
  run: async () => {
    const p = await pipeline();
    const joyful = await generate({ emotion: "joyful", bars: 1, pipeline: p });
    const sad = await generate({ emotion: "sad", bars: 1, pipeline: p });
    check(joyful.tempo > sad.tempo, () => `joyful ${joyful.tempo} bpm, sad ${sad.tempo}`);
    check(joyful.key.mode === "major" && sad.key.mode === "minor", () => "modes");
    const point = await generate({
      emotion: { valence: -0.2, arousal: 0.9 },
      bars: 1,
      pipeline: p,
    });
    check(
      point.key.mode === "minor" && point.tempo > 140,
      () => `${point.tempo} ${point.key.mode}`,
    );
    await rejectsCadenza(
      () => generate({ emotion: "happy", pipeline: p }),
      "E_ARGUMENT",
      /known emotions: joyful/,
      "name",
    );
    await rejectsCadenza(() => generate({ bars: 0, pipeline: p }), "E_ARGUMENT", /bars/, "bars 0");
    await rejectsCadenza(
      () => generate({ bars: 10000, pipeline: p }),
      "E_ARGUMENT",
      /bars/,
      "bars 10000",
    );
    await rejectsCadenza(
      () => generate({ tempo: 0, pipeline: p }),
      "E_ARGUMENT",
      /tempo/,
      "tempo 0",
    );
  },
};

const primerCase: Case = {
  name: "generate: a primer seeds the context; an empty primer is refused",
  run: async () => {
    const p = await pipeline();
    const primer = emptySequence({ tempo: 120 });
    for (let i = 0; i < 8; i++) {
      primer.notes.push({
        pitch: 60 + 2 * i,
        velocity: 80,
        startTime: i * 0.5,
        endTime: i * 0.5 + 0.4,
        instrument: 0,
        program: 0,
        isDrum: false,
      });
    }
    primer.totalTime = 4;
    const plain = await generate({ emotion: "calm", bars: 2, seed: 2, pipeline: p });
    const primed = await generate({ emotion: "calm", bars: 2, seed: 2, primer, pipeline: p });
    validateSequence(primed.sequence);
    // The piece opens with the primer (8 quarter notes at 120 qpm: 2 bars of 4/4, re-timed to
    // the piece's tempo), then the generated bars follow.
    check(
      primed.bars === 4 && primed.sequence.meta?.primerBars === "2",
      () => `${primed.bars} bars`,
    );
    const quarter = 60 / primed.tempo;
    const opening = primed.sequence.notes.filter((n) => n.startTime < 8 * quarter - 1e-9);
    check(
      opening.map((n) => n.pitch).join() === primer.notes.map((n) => n.pitch).join() &&
        opening.every((n, i) => Math.abs(n.startTime - i * quarter) < 1e-9),
      () => `opening ${opening.map((n) => `${n.pitch}@${n.startTime}`)}`,
    );
    check(primed.chords[0].bar === 2, () => `first chord in bar ${primed.chords[0].bar}`);
    check(Math.abs(primed.sequence.totalTime - 4 * 4 * quarter) < 1e-9, () => "totalTime");
    // The models saw the primer: the bars after it are not the unprimed piece's.
    const after = primed.sequence.notes.filter((n) => n.startTime >= 8 * quarter - 1e-9);
    const shift = 8 * quarter;
    check(
      JSON.stringify(after.map((n) => [n.pitch, n.startTime - shift])) !==
        JSON.stringify(plain.sequence.notes.map((n) => [n.pitch, n.startTime])),
      () => "the primer changed nothing that followed",
    );
    const again = await generate({ emotion: "calm", bars: 2, seed: 2, primer, pipeline: p });
    check(fingerprint(again) === fingerprint(primed), () => "a primed piece is not deterministic");
    await rejectsCadenza(
      () => generate({ primer: emptySequence(), pipeline: p }),
      "E_ARGUMENT",
      /no melodic/,
      "empty primer",
    );
  },
};

/** A 16-bit mono WAV file's bytes (written by the audio tests' own encoder). */
export function wavBytes(samples: Float32Array, rateHz: number): Uint8Array {
  const frames = Array.from(samples, (x) => [Math.round(Math.max(-1, Math.min(1, x)) * 32767)]);
  return encodeWav("int16", rateHz, frames);
}

const respondCase: Case = {
  name: "respond: music as long as the audio, its emotion path following the recognizer",
  run: async () => {
    const dir = mkdtempSync(join(tmpdir(), "cadenza-respond-"));
    try {
      const path = join(dir, "in.wav");
      writeFileSync(path, wavBytes(melodySignal(16_000, { seconds: 6 }), 16_000));
      const result = await respond(path, { seed: 3, pipeline: await pipeline() });
      validateSequence(result.sequence);
      check(Math.abs(result.audioSeconds - 6) < 1e-3, () => `${result.audioSeconds} s`);
      const barSeconds = (60 / result.tempo) * 4 * result.meter[0] / result.meter[1];
      check(
        result.bars === Math.ceil(6 / barSeconds),
        () => `${result.bars} bars of ${barSeconds} s`,
      );
      check(result.emotionPath.length === result.bars, () => "one emotion per bar");
      const values = new Set(result.emotionPath.map((p) => `${p.valence},${p.arousal}`));
      check(values.size > 1, () => "the emotion heard never changed over 6 s of a melody");
      check(result.sequence.meta?.source === path, () => "meta.source");
      await rejectsCadenza(
        () => respond(join(dir, "missing.wav")),
        "E_IO",
        /missing\.wav/,
        "missing",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

const trainedLabelCase: Case = {
  name: "generate: the untrained label comes back by itself when a model's metadata says so",
  run: async () => {
    const dir = mkdtempSync(join(tmpdir(), "cadenza-untrained-"));
    try {
      for (const info of EMOTION_MODELS) {
        const { spec } = await loadSpec(join(MODELS_DIR, `${info.name}.safetensors`));
        if (info.name === "HarmonyPredictor") spec.meta = { ...spec.meta, untrained: "true" };
        writeFileSync(join(dir, `${info.name}.safetensors`), writeSafetensors(spec));
      }
      const result = await generate({ emotion: "calm", bars: 1, models: dir });
      check(result.trained === false, () => "trained should be false");
      check(/UNTRAINED/.test(result.summary), () => result.summary);
      check(
        result.sequence.meta?.untrained === "true",
        () => JSON.stringify(result.sequence.meta),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

const noteStepsCase: Case = {
  name: "generate: one model step per melody note, each seeing the note before, tonic-relative",
  run: async () => {
    const p = await pipeline();
    const contexts: Float32Array[] = [];
    const original = p.stepFromEmotion;
    p.stepFromEmotion = (emotion: Float32Array, context?: Float32Array) => {
      contexts.push(Float32Array.from(context ?? []));
      return original.call(p, emotion, context);
    };
    let result: GenerateResult;
    try {
      result = await generate({ emotion: "sad", bars: 6, seed: 5, key: "A minor", pipeline: p });
    } finally {
      p.stepFromEmotion = original;
    }
    const smf = parseSmf(toMidi(result.sequence));
    const melody = smf.tracks.flatMap((t) => t.notes.filter((n) => n.channel === 0))
      .sort((a, b) => a.startTick - b.startTick);
    check(melody.length > 8, () => `${melody.length} melody notes`);
    // One step before the first bar, then one per melody note: not one per sixteenth (96).
    check(
      contexts.length === melody.length + 1 && result.modelSteps === contexts.length,
      () => `${contexts.length} steps (${result.modelSteps} reported), ${melody.length} notes`,
    );
    const tonic = 9;
    for (const [k, context] of contexts.entries()) {
      check(context.length === 204, () => `step ${k}: context of ${context.length}`);
      const previous = context.subarray(0, 128);
      const hot = previous.findIndex((v) => v === 1);
      // Step k >= 2 chooses melody note k - 1, after note k - 2; steps 0 and 1 have none.
      const want = k < 2 ? -1 : melody[k - 2].pitch - tonic;
      check(
        hot === want && previous.reduce((a, b) => a + b, 0) === (k < 2 ? 0 : 1),
        () => `step ${k}: previous note ${hot}, expected ${want}`,
      );
      const chords = context.subarray(128, 192).reduce((a, b) => a + b, 0);
      check(chords === (k === 0 ? 0 : 1), () => `step ${k}: ${chords} chords in force`);
    }
  },
};

export const generateCases: Case[] = [
  pieceCase,
  noteStepsCase,
  determinismCase,
  honouredCase,
  keyConstraintCase,
  emotionDefaultsCase,
  primerCase,
  respondCase,
  trainedLabelCase,
];

// ---------------------------------------------------------------------------------------------
// The CLI, in-process through main() (the Bun file also spawns it under both runtimes).

export async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const output: Output = { out: (line) => out.push(line), err: (line) => err.push(line) };
  const code = await main(argv, output);
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** Checks acceptance 1 on a MIDI file: bars, tempo, meter, and separate melody/chords/bass. */
export function checkPieceFile(
  bytes: Uint8Array,
  want: { bars: number; beats: number; microsecondsPerQuarter?: number; exact: boolean },
): void {
  const smf = parseSmf(bytes);
  check(smf.tempos.length >= 1, () => "no tempo event");
  if (want.microsecondsPerQuarter !== undefined) {
    check(
      smf.tempos[0].microsecondsPerQuarter === want.microsecondsPerQuarter,
      () => `tempo ${smf.tempos[0].microsecondsPerQuarter} us, want ${want.microsecondsPerQuarter}`,
    );
  }
  check(smf.timeSignatures.length >= 1, () => "no time signature");
  check(smf.timeSignatures[0].numerator === want.beats, () => JSON.stringify(smf.timeSignatures));
  const bars = smf.endTick / (smf.ppq * want.beats * 4 / smf.timeSignatures[0].denominator);
  check(
    want.exact ? Math.abs(bars - want.bars) < 1e-9 : Math.abs(bars - want.bars) <= 0.5,
    () => `${bars} bars, want ${want.bars}`,
  );
  const channels = new Set<number>();
  for (const part of ["melody", "chords", "bass"]) {
    const track = smf.tracks.find((t) => t.name === part);
    check(track !== undefined, () => `no "${part}" track: ${smf.tracks.map((t) => t.name)}`);
    check(track!.notes.length > 0, () => `the ${part} track has no notes`);
    check(track!.channels.length === 1, () => `${part} on channels ${track!.channels}`);
    channels.add(track!.channels[0]);
  }
  check(channels.size === 3, () => `melody, chords and bass share channels: ${[...channels]}`);
}

function scratchDir(): string {
  return mkdtempSync(join(tmpdir(), "cadenza-generate-"));
}

const cliPieceCase: Case = {
  name: "cli generate: 8 joyful bars to a MIDI file; --bars 16 --tempo 90 --meter 3/4 exactly",
  run: async () => {
    const dir = scratchDir();
    try {
      const a = join(dir, "a.mid");
      const result = await cli(
        "generate",
        "--emotion",
        "joyful",
        "--bars",
        "8",
        "--seed",
        "7",
        "--out",
        a,
      );
      check(result.code === 0, () => `exit ${result.code}: ${result.err}`);
      check(
        result.out.includes(`wrote ${a}`) && /key G major, tempo 130 bpm/.test(result.out),
        () => result.out,
      );
      check(/chords: \| /.test(result.out) && !/untrained/i.test(result.out), () => result.out);
      checkPieceFile(readFileSync(a), { bars: 8, beats: 4, exact: false });
      const texts = parseSmf(readFileSync(a)).tracks.flatMap((t) => t.texts);
      check(
        texts.some((t) => /trained=true/.test(t)) && !texts.some((t) => /untrained/i.test(t)),
        () => `MIDI texts: ${texts}`,
      );
      const b = join(dir, "b.mid");
      const r2 = await cli(
        "generate",
        "--bars",
        "16",
        "--tempo",
        "90",
        "--meter",
        "3/4",
        "--seed",
        "7",
        "--out",
        b,
      );
      check(r2.code === 0, () => `exit ${r2.code}: ${r2.err}`);
      checkPieceFile(readFileSync(b), {
        bars: 16,
        beats: 3,
        microsecondsPerQuarter: 666_667,
        exact: true,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

const cliSeedCase: Case = {
  name: "cli generate: the same seed writes the same bytes, another seed another file",
  run: async () => {
    const dir = scratchDir();
    try {
      const files = ["a", "b", "c"].map((name) => join(dir, `${name}.mid`));
      const seeds = ["5", "5", "6"];
      for (let i = 0; i < 3; i++) {
        const r = await cli(
          "generate",
          "--emotion",
          "angry",
          "--bars",
          "4",
          "--seed",
          seeds[i],
          "--out",
          files[i],
        );
        check(r.code === 0, () => r.err);
      }
      const [a, b, c] = files.map((f) => readFileSync(f));
      check(Buffer.compare(a, b) === 0, () => "seed 5 twice wrote different bytes");
      check(Buffer.compare(a, c) !== 0, () => "seeds 5 and 6 wrote the same bytes");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

/** Each bad input: exit 2, a message naming the problem, and no file written. */
export const BAD_INPUTS: [string, (dir: string) => string[], RegExp][] = [
  [
    "unknown emotion",
    (d) => ["generate", "--emotion", "happy", "--out", join(d, "x.mid")],
    /--emotion "happy" is not known; known emotions: joyful, tender, calm, sad, angry, fearful, triumphant, mysterious/,
  ],
  [
    "bars 0",
    (d) => ["generate", "--bars", "0", "--out", join(d, "x.mid")],
    /--bars must be an integer 1\.\.512, got "0"/,
  ],
  [
    "bars 10000",
    (d) => ["generate", "--bars", "10000", "--out", join(d, "x.mid")],
    /--bars must be an integer 1\.\.512, got "10000"/,
  ],
  [
    "tempo 0",
    (d) => ["generate", "--tempo", "0", "--out", join(d, "x.mid")],
    /--tempo must be a number in 20\.\.400, got "0"/,
  ],
  [
    "bad meter",
    (d) => ["generate", "--meter", "4/5", "--out", join(d, "x.mid")],
    /--meter must be N\/D/,
  ],
  ["bad key", (d) => ["generate", "--key", "H", "--out", join(d, "x.mid")], /--key must be/],
  [
    "bad voicing",
    (d) => ["generate", "--voicing", "above", "--out", join(d, "x.mid")],
    /--voicing must be one of under-melody, register/,
  ],
  [
    "valence alone",
    (d) => ["generate", "--valence", "0.5", "--out", join(d, "x.mid")],
    /--valence and --arousal go together/,
  ],
  [
    "top-p 0",
    (d) => ["generate", "--top-p", "0", "--out", join(d, "x.mid")],
    /--top-p must be a number in \(0, 1\]/,
  ],
  [
    "range",
    (d) => ["generate", "--low", "80", "--high", "70", "--out", join(d, "x.mid")],
    /--high \(70\) must be at least --low \(80\)/,
  ],
  [
    "missing output directory",
    (d) => ["generate", "--out", join(d, "x.mid"), "--png", join(d, "nope", "x.png")],
    /--png .*nope.*: cannot write there: the directory .* does not exist/,
  ],
  [
    "unreadable respond input",
    (d) => ["respond", join(d, "missing.wav"), "--out", join(d, "x.mid")],
    /respond: .*missing\.wav: cannot read it as a WAV file/,
  ],
  [
    "non-WAV respond input",
    (d) => ["respond", join(d, "text.wav"), "--out", join(d, "x.mid")],
    /respond: .*text\.wav: cannot read it as a WAV file: .*RIFF/,
  ],
  [
    "missing models directory",
    (d) => ["generate", "--models", join(d, "nomodels"), "--out", join(d, "x.mid")],
    /--models .*nomodels: not a directory/,
  ],
  [
    "corrupt primer",
    (d) => ["generate", "--primer", join(d, "bad.mid"), "--out", join(d, "x.mid")],
    /--primer .*bad\.mid: not a readable MIDI file/,
  ],
];

/** The inputs the bad-input cases read: a text file named .wav, a truncated MIDI file. */
export function writeBadInputs(dir: string): void {
  writeFileSync(join(dir, "text.wav"), "this is not audio\n");
  writeFileSync(
    join(dir, "bad.mid"),
    new Uint8Array([0x4d, 0x54, 0x68, 0x64, 0, 0, 0, 6, 0, 1, 0]),
  );
}

const cliBadInputCase: Case = {
  name: "cli generate/respond: each bad input exits 2 with a clear message and writes no file",
  run: async () => {
    const dir = scratchDir();
    try {
      writeBadInputs(dir);
      const before = readdirSync(dir).sort().join();
      for (const [what, argv, pattern] of BAD_INPUTS) {
        const r = await cli(...argv(dir));
        check(r.code === 2, () => `${what}: exit ${r.code}: ${r.err}`);
        check(
          pattern.test(r.err),
          () => `${what}: message ${JSON.stringify(r.err)} should match ${pattern}`,
        );
        check(
          readdirSync(dir).sort().join() === before,
          () => `${what}: wrote ${readdirSync(dir)}`,
        );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

export const generateCliCases: Case[] = [cliPieceCase, cliSeedCase, cliBadInputCase];
