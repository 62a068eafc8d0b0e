/**
 * `cadenza generate` (an emotion -> a piece) and `cadenza respond IN.wav` (music that follows
 * the emotion heard in a WAV file). Every flag is checked before anything runs, and every
 * output's directory before anything is written; the files are then written to temporary files
 * and renamed into place, so an error never leaves a partial file.
 */

import { statSync } from "node:fs";
import { readWav, type WavAudio } from "../audio/wav.ts";
import { CadenzaError } from "../errors.ts";
import { type Precision, PRECISIONS } from "../model/image.ts";
import { readFile } from "../native/io.ts";
import { type KeyInfo, keyName, parseKey } from "../music/chords.ts";
import { type Constraint, STEPS_PER_QUARTER } from "../music/decode.ts";
import { EMOTION_NAMES, isEmotionName } from "../music/emotion-map.ts";
import {
  DEFAULT_BARS,
  generate,
  type GenerateOptions,
  type GenerateResult,
  MAX_BARS,
  respondToAudio,
} from "../music/generate.ts";
import { fromMidi, toMidi } from "../music/midi.ts";
import { findFluidSynth, renderWav } from "../music/audio.ts";
import type { NoteSequence } from "../music/sequence.ts";
import type { ParsedArgs } from "./args.ts";
import { UsageError } from "./args.ts";
import type { Command, Output } from "./command.ts";
import { unwritableReason, writeAtomically } from "./files.ts";

/** What the two commands share: the music options and where the results go. */
interface Plan {
  options: GenerateOptions;
  out?: string;
  png?: string;
  wav?: string;
  /** With --wav-optional: skip the WAV (with a note) when FluidSynth is missing. */
  wavOptional: boolean;
  soundfont?: string;
  json: boolean;
}

const SHARED_VALUES = {
  bars: "N",
  seed: "N",
  tempo: "BPM",
  meter: "N/D",
  key: "KEY",
  temperature: "T",
  "top-k": "K",
  "top-p": "P",
  constrain: "none|key|chord",
  low: "NOTE",
  high: "NOTE",
  "chord-rate": "auto|bar|half",
  voicing: "under-melody|register",
  primer: "FILE.mid",
  out: "FILE.mid",
  png: "FILE.png",
  wav: "FILE.wav",
  soundfont: "FILE.sf2",
  models: "DIR",
  precision: "f32|bf16|int8",
  library: "safe|fast|PATH",
} as const;

const SHARED_SWITCHES = ["drums", "json", "wav-optional"];

const SHARED_HELP = [
  "  --bars N            1..512 (generate: default 8; respond: as long as the audio)",
  "  --seed N            integer 0..4294967295 (default 0); the same seed gives the same bytes",
  "  --tempo BPM         quarter notes per minute, 20..400 (default: from arousal, 60..150)",
  "  --meter N/D         time signature, N 1..16, D 2|4|8|16 (default: from the emotion)",
  '  --key KEY           e.g. "G", "D minor", "F#m", "Bb major" (default: from the emotion;',
  "                      major for valence >= 0, minor below)",
  "  --temperature T     0..100 (default 1): below 1 sharper, above flatter; 0 takes the most",
  "                      probable note and chord",
  "  --top-k K           sample among the K most probable notes, 1..128 (default: all)",
  "  --top-p P           sample among the fewest notes holding probability P, (0, 1] (default 1)",
  "  --constrain C       none (default: the notes are what the models say), key (melody and",
  "                      chords in the key), chord (melody in the chord in force)",
  "  --low NOTE          lowest melody note, MIDI 0..127 (default 60, C4)",
  "  --high NOTE         highest melody note, MIDI 0..127 (default 84, C6)",
  "  --chord-rate R      auto (from the groove), bar (one chord a bar) or half (two)",
  "  --voicing V         under-melody (default: each chord struck under the melody note of",
  "                      its moment, the tune on top) or register (chords in MIDI 50..74",
  "                      whatever the melody does); the melody is the same either way",
  "  --primer FILE.mid   a MIDI file whose melody (its first part) the piece continues: its",
  "                      last 32 notes open the piece (re-timed to its tempo, whole bars),",
  "                      fill the models' context and set the decoder's previous note",
  "  --drums             add a drum track (General MIDI channel 10) from the groove",
  "  --out FILE.mid      write the piece as a Standard MIDI File (melody, chords, bass and",
  "                      drums on their own tracks and channels)",
  "  --png FILE.png      write a piano roll: notes coloured by part, bar lines, chord symbols",
  "                      (under Deno this needs --allow-sys: the image library asks for it)",
  "  --wav FILE.wav      render audio with FluidSynth and a General MIDI SoundFont (needs the",
  "                      fluidsynth program and a .sf2: Debian's fluidsynth and",
  "                      fluid-soundfont-gm packages; a clear error when missing)",
  "                      (under Deno this needs --allow-run)",
  "  --wav-optional      with --wav: skip the WAV with a note when FluidSynth is missing",
  "  --soundfont FILE    the SoundFont for --wav (default: the GM SoundFont found on the system)",
  "  --json              print the note sequence, chords, emotion path and seed as JSON",
  "  --models DIR        the five model files (default: the project's models/)",
  "  --precision P       f32, bf16 or int8 weights (default: as the files store them)",
  "  --library L         the native library: safe (default), fast, or a path",
  "",
  "Nothing is written when any flag or input is wrong (exit 2) or generating fails (exit 1):",
  "every output is made in memory first, then each file is written to a temporary file and",
  "renamed into place, so no partial file is ever left. Output directories must exist.",
  "While the models in models/ are untrained seeded initialisations, every output says so",
  "(the summary, the MIDI file's text, the piano roll's title, the JSON).",
].join("\n");

function usage(command: string, message: string): never {
  throw new UsageError(`${command}: ${message}`);
}

function integerFlag(
  args: ParsedArgs,
  name: string,
  lo: number,
  hi: number,
  command: string,
): number | undefined {
  const text = args.values.get(name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < lo || value > hi) {
    usage(command, `--${name} must be an integer ${lo}..${hi}, got "${text}"`);
  }
  return value;
}

function numberFlag(
  args: ParsedArgs,
  name: string,
  lo: number,
  hi: number,
  command: string,
  allowed = `a number in ${lo}..${hi}`,
  openLow = false,
): number | undefined {
  const text = args.values.get(name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (
    text.trim() === "" || !Number.isFinite(value) || value < lo || value > hi ||
    (openLow && value === lo)
  ) {
    usage(command, `--${name} must be ${allowed}, got "${text}"`);
  }
  return value;
}

function choiceFlag<T extends string>(
  args: ParsedArgs,
  name: string,
  choices: readonly T[],
  command: string,
): T | undefined {
  const text = args.values.get(name);
  if (text === undefined) return undefined;
  if (!(choices as readonly string[]).includes(text)) {
    usage(command, `--${name} must be one of ${choices.join(", ")}, got "${text}"`);
  }
  return text as T;
}

function meterFlag(args: ParsedArgs, command: string): [number, number] | undefined {
  const text = args.values.get("meter");
  if (text === undefined) return undefined;
  const match = /^(\d+)\/(\d+)$/.exec(text.trim());
  const num = match ? Number(match[1]) : NaN;
  const den = match ? Number(match[2]) : NaN;
  if (!(num >= 1 && num <= 16) || ![2, 4, 8, 16].includes(den)) {
    usage(
      command,
      `--meter must be N/D with N 1..16 and D 2, 4, 8 or 16 (e.g. 3/4, 6/8), got "${text}"`,
    );
  }
  return [num, den];
}

function keyFlag(args: ParsedArgs, command: string): KeyInfo | undefined {
  const text = args.values.get("key");
  if (text === undefined) return undefined;
  try {
    return parseKey(text);
  } catch {
    return usage(
      command,
      `--key must be a note name A..G with an optional # or b and mode, like "G", "D minor", ` +
        `"F#m" or "Bb major", got "${text}"`,
    );
  }
}

/** An output path: its directory must exist and it must not be a directory. */
function outputFlag(args: ParsedArgs, name: string, command: string): string | undefined {
  const path = args.values.get(name);
  if (path === undefined) return undefined;
  if (path.trim() === "") usage(command, `--${name} needs a file name, got ""`);
  const reason = unwritableReason(path);
  if (reason !== null) usage(command, `--${name} ${path}: cannot write there: ${reason}`);
  return path;
}

async function primerFlag(args: ParsedArgs, command: string): Promise<NoteSequence | undefined> {
  const path = args.values.get("primer");
  if (path === undefined) return undefined;
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    return usage(command, `--primer ${path}: ${(err as Error).message}`);
  }
  let primer: NoteSequence;
  try {
    primer = fromMidi(bytes, { file: path });
  } catch (err) {
    return usage(command, `--primer ${path}: not a readable MIDI file: ${(err as Error).message}`);
  }
  if (!primer.notes.some((note) => !note.isDrum)) {
    usage(command, `--primer ${path}: the file holds no melodic (non-drum) notes to continue`);
  }
  return primer;
}

/** --models: an existing directory (its files are checked when they load). */
function modelsFlag(args: ParsedArgs, command: string): string | undefined {
  const dir = args.values.get("models");
  if (dir === undefined) return undefined;
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) usage(command, `--models ${dir}: not a directory holding the five model files`);
  return dir;
}

/** Every shared flag checked; throws UsageError naming the flag, the value and what is allowed. */
async function planOf(args: ParsedArgs, command: string): Promise<Plan> {
  const low = integerFlag(args, "low", 0, 127, command);
  const high = integerFlag(args, "high", 0, 127, command);
  const range: [number, number] = [low ?? 60, high ?? 84];
  if (range[1] < range[0]) {
    usage(command, `--high (${range[1]}) must be at least --low (${range[0]})`);
  }
  const constrain = choiceFlag<Constraint>(args, "constrain", ["none", "key", "chord"], command);
  if (constrain === "chord" && range[1] - range[0] < 11) {
    usage(
      command,
      `--constrain chord needs a range of at least an octave, got ${range.join("..")}`,
    );
  }
  const options: GenerateOptions = {
    bars: integerFlag(args, "bars", 1, MAX_BARS, command),
    seed: integerFlag(args, "seed", 0, 0xffff_ffff, command) ?? 0,
    tempo: numberFlag(args, "tempo", 20, 400, command),
    meter: meterFlag(args, command),
    key: keyFlag(args, command),
    temperature: numberFlag(args, "temperature", 0, 100, command),
    topK: integerFlag(args, "top-k", 1, 128, command),
    topP: numberFlag(args, "top-p", 0, 1, command, "a number in (0, 1]", true),
    constrain,
    range,
    chordRate: choiceFlag(args, "chord-rate", ["auto", "bar", "half"] as const, command),
    voicing: choiceFlag(args, "voicing", ["under-melody", "register"] as const, command),
    drums: args.switches.has("drums"),
    models: modelsFlag(args, command),
    precision: choiceFlag<Precision>(args, "precision", PRECISIONS, command),
    library: args.values.get("library"),
  };
  const plan: Plan = {
    options,
    out: outputFlag(args, "out", command),
    png: outputFlag(args, "png", command),
    wav: outputFlag(args, "wav", command),
    wavOptional: args.switches.has("wav-optional"),
    soundfont: args.values.get("soundfont"),
    json: args.switches.has("json"),
  };
  const paths = [plan.out, plan.png, plan.wav].filter((p) => p !== undefined);
  if (new Set(paths).size !== paths.length) {
    usage(command, `--out, --png and --wav must name different files, got ${paths.join(", ")}`);
  }
  if (plan.wavOptional && plan.wav === undefined) usage(command, "--wav-optional needs --wav");
  if (plan.soundfont !== undefined && plan.wav === undefined) {
    usage(command, "--soundfont needs --wav");
  }
  options.primer = await primerFlag(args, command);
  return plan;
}

function emotionOf(args: ParsedArgs): GenerateOptions["emotion"] {
  const name = args.values.get("emotion");
  const hasV = args.values.has("valence");
  const hasA = args.values.has("arousal");
  if (name !== undefined && (hasV || hasA)) {
    usage("generate", "give either --emotion or --valence and --arousal, not both");
  }
  if (hasV !== hasA) {
    usage(
      "generate",
      `--valence and --arousal go together; got only --${hasV ? "valence" : "arousal"}`,
    );
  }
  if (hasV) {
    const valence = numberFlag(args, "valence", -1, 1, "generate")!;
    const arousal = numberFlag(args, "arousal", -1, 1, "generate")!;
    return { valence, arousal };
  }
  const emotion = name ?? "joyful";
  if (!isEmotionName(emotion)) {
    usage(
      "generate",
      `--emotion "${emotion}" is not known; known emotions: ${EMOTION_NAMES.join(", ")}`,
    );
  }
  return emotion;
}

/**
 * Whether --wav can be rendered, checked before anything is generated or written: false when
 * FluidSynth is missing and --wav-optional says to skip it (with a note); an error otherwise.
 */
function audioReady(plan: Plan, command: string, output: Output): boolean {
  if (plan.wav === undefined) return false;
  const found = findFluidSynth({ soundFont: plan.soundfont });
  if (found.missing.length === 0) return true;
  const reason = `audio needs ${found.missing.join(" and ")}; ${found.install}`;
  if (plan.wavOptional) {
    output.err(`${command}: skipping --wav ${plan.wav}: ${reason}`);
    plan.wav = undefined;
    return false;
  }
  throw new CadenzaError("E_UNAVAILABLE", `${command}: --wav ${plan.wav}: ${reason}`);
}

/** Encodes every output in memory (and the WAV in a temporary file), then writes them all. */
async function emit(
  result: GenerateResult,
  plan: Plan,
  output: Output,
  audio: boolean,
): Promise<void> {
  const files: [string, Uint8Array][] = [];
  const midi = toMidi(result.sequence);
  if (plan.out !== undefined) files.push([plan.out, midi]);
  if (plan.png !== undefined) {
    // Loaded on use: the image library's native binding asks Deno for --allow-sys when it
    // loads, which no other command should need.
    const { renderPianoRoll } = await import("../music/pianoroll.ts");
    files.push([plan.png, renderPianoRoll(result.sequence, { chords: result.chords })]);
  }
  if (plan.wav !== undefined && audio) {
    files.push([
      plan.wav,
      await renderWav(result.sequence, {
        soundFont: plan.soundfont,
        timeoutMs: 60_000 + Math.ceil(2_000 * result.sequence.totalTime),
      }),
    ]);
  }
  for (const [path, bytes] of files) writeAtomically(path, bytes);
  if (plan.json) {
    output.out(JSON.stringify({
      summary: result.summary,
      trained: result.trained,
      seed: result.seed,
      key: keyName(result.key),
      tempo: result.tempo,
      meter: `${result.meter[0]}/${result.meter[1]}`,
      bars: result.bars,
      files: files.map(([path]) => path),
      chords: result.chords,
      emotionPath: result.emotionPath,
      sequence: result.sequence,
    }));
    return;
  }
  for (const [path, bytes] of files) output.out(`wrote ${path} (${bytes.length} bytes)`);
  output.out(
    `key ${keyName(result.key)}, tempo ${result.tempo} bpm, meter ${result.meter[0]}/` +
      `${result.meter[1]}, ${result.bars} bars (${STEPS_PER_QUARTER} steps per quarter)`,
  );
  output.out(`chords: ${chordLine(result)}`);
  output.out(result.summary);
}

/** "| G | Em D | ..." : the chords bar by bar. */
function chordLine(result: GenerateResult): string {
  const bars: string[][] = Array.from({ length: result.bars }, () => []);
  for (const chord of result.chords) bars[chord.bar]?.push(chord.symbol);
  return `| ${bars.map((symbols) => symbols.join(" ")).join(" | ")} |`;
}

async function runGenerate(args: ParsedArgs, output: Output): Promise<number> {
  if (args.positionals.length > 0) {
    usage("generate", `takes no arguments, got: ${args.positionals.join(" ")}`);
  }
  const emotion = emotionOf(args);
  const plan = await planOf(args, "generate");
  const audio = audioReady(plan, "generate", output);
  const result = await generate({
    ...plan.options,
    emotion,
    bars: plan.options.bars ?? DEFAULT_BARS,
  });
  await emit(result, plan, output, audio);
  return 0;
}

async function runRespond(args: ParsedArgs, output: Output): Promise<number> {
  if (args.positionals.length !== 1) {
    usage("respond", `expected one WAV file, got ${args.positionals.length} argument(s)`);
  }
  const path = args.positionals[0];
  const smoothing = numberFlag(args, "smoothing", 0, 60, "respond", "seconds in (0, 60]", true);
  const plan = await planOf(args, "respond");
  let wav: WavAudio;
  try {
    wav = await readWav(path);
  } catch (err) {
    return usage("respond", `${path}: cannot read it as a WAV file: ${(err as Error).message}`);
  }
  if (wav.frames === 0) usage("respond", `${path}: the WAV file holds no audio`);
  const audio = audioReady(plan, "respond", output);
  const result = await respondToAudio(wav, path, { ...plan.options, smoothing });
  await emit(result, plan, output, audio);
  if (!plan.json) {
    output.out(
      `heard ${result.audioSeconds.toFixed(2)} s: ` +
        result.emotionPath.map((p) => p.name).filter((n, i, a) => i === 0 || a[i - 1] !== n)
          .join(" -> "),
    );
  }
  return 0;
}

export const generateCommand: Command = {
  name: "generate",
  summary: "generate a piece for an emotion: MIDI, piano roll, audio, JSON",
  help: [
    "usage: cadenza generate [--emotion NAME | --valence V --arousal A] [flags]",
    "",
    "Runs the five-model pipeline one step per sixteenth note, conditioned on an emotion, and",
    "decodes its outputs into melody, chords, bass (and drums): notes sampled from the melody",
    "probabilities, chords from the harmony classes voiced with voice leading, onsets, swing",
    "and micro-timing from the groove, velocity and articulation from the dynamics. Prints",
    "what it wrote, the key, tempo and chords, and a one-line summary. docs/MUSIC.md says",
    "what every value means.",
    "",
    "flags:",
    `  --emotion NAME      ${EMOTION_NAMES.join(", ")} (default joyful)`,
    "  --valence V         -1..1 (unpleasant .. pleasant), with --arousal",
    "  --arousal A         -1..1 (still .. excited), with --valence",
    SHARED_HELP,
    "",
    "example: cadenza generate --emotion sad --bars 16 --seed 3 --out sad.mid --png sad.png",
  ].join("\n"),
  flags: {
    values: { ...SHARED_VALUES, emotion: "NAME", valence: "V", arousal: "A" },
    switches: SHARED_SWITCHES,
  },
  run: runGenerate,
};

export const respondCommand: Command = {
  name: "respond",
  summary: "music that follows the emotion heard in a WAV file",
  help: [
    "usage: cadenza respond IN.wav [flags]",
    "",
    "Feeds IN.wav through the feature extractor block by block (128 samples, as `cadenza",
    "live` does) and the EmotionRecognizer, follows the emotion it hears over time (smoothed),",
    "and generates music whose every step is conditioned on the emotion heard at that moment",
    "of the audio. Tempo, meter and key come from the mean emotion heard unless given; the",
    "piece lasts as long as the audio unless --bars is given. Prints the same as generate and",
    "the emotions heard, in order.",
    "",
    "flags:",
    "  --smoothing S       time constant of the emotion's smoothing, seconds in (0, 60]",
    "                      (default 1)",
    SHARED_HELP,
  ].join("\n"),
  flags: { values: { ...SHARED_VALUES, smoothing: "S" }, switches: SHARED_SWITCHES },
  run: runRespond,
};
