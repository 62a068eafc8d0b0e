/**
 * Audio from a NoteSequence: the sequence is written as a MIDI file and rendered offline by
 * FluidSynth with a General MIDI SoundFont (Debian/Ubuntu: `apt-get install fluidsynth
 * fluid-soundfont-gm`, which `npm ci` does itself when it runs as root). FluidSynth renders to a
 * file with no audio driver, many times faster than real time; the WAV is 16-bit stereo and runs
 * from the start of the piece to the end of its last note's release (about 2 s past the end).
 *
 * ```ts
 * const found = findFluidSynth();            // { fluidsynth, soundFont, missing, install }
 * const wav = await renderWav(seq);          // CadenzaError E_UNAVAILABLE when missing
 * ```
 */

import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { CadenzaError } from "../errors.ts";
import { envVar } from "../native/io.ts";
import { toMidi } from "./midi.ts";
import { type NoteSequence, validateSequence } from "./sequence.ts";

/** Where General MIDI SoundFonts are installed by the usual packages, in the order tried. */
export const SOUNDFONT_PATHS: readonly string[] = [
  "/usr/share/sounds/sf2/FluidR3_GM.sf2", // Debian, Ubuntu: fluid-soundfont-gm
  "/usr/share/sounds/sf2/default-GM.sf2",
  "/usr/share/soundfonts/FluidR3_GM.sf2", // Arch: soundfont-fluid
  "/usr/share/soundfonts/default.sf2", // Fedora: fluid-soundfont-gm
  "/usr/share/sounds/sf2/TimGM6mb.sf2",
  "/opt/homebrew/share/soundfonts/default.sf2",
  "/usr/local/share/soundfonts/default.sf2",
];

/** What renderWav needs and where it was found. */
export interface FluidSynthInfo {
  /** Path of the fluidsynth program, or undefined when it is not on PATH. */
  fluidsynth: string | undefined;
  /** Path of the SoundFont, or undefined when none was found. */
  soundFont: string | undefined;
  /** What is missing, in words (empty when both were found). */
  missing: string[];
  /** How to install what is missing. */
  install: string;
}

export interface FindOptions {
  /** A SoundFont (.sf2) to use instead of the installed ones. */
  soundFont?: string;
}

export interface RenderWavOptions extends FindOptions {
  /** Samples per second (default 44100). */
  sampleRate?: number;
  /** FluidSynth's master gain (default 0.5; FluidSynth's own 0.2 is quiet). */
  gain?: number;
  /** Give up after this many milliseconds (default 60 s plus 2x the piece's length). */
  timeoutMs?: number;
}

const INSTALL =
  "install FluidSynth and a General MIDI SoundFont: `sudo apt-get install fluidsynth fluid-soundfont-gm` " +
  "(Debian/Ubuntu), `brew install fluid-synth` plus a .sf2 (macOS), or pass a SoundFont with " +
  "--soundfont FILE / CADENZA_SOUNDFONT";

function findProgram(name: string): string | undefined {
  const override = envVar("CADENZA_FLUIDSYNTH");
  if (override !== undefined && override !== "") return existsSync(override) ? override : undefined;
  const dirs = (envVar("PATH") ?? "").split(delimiter).filter((d) => d !== "");
  const names = process.platform === "win32" ? [`${name}.exe`, name] : [name];
  for (const dir of dirs) {
    for (const file of names) {
      const path = join(dir, file);
      try {
        if (statSync(path).isFile()) return path;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

/**
 * Looks for the fluidsynth program (CADENZA_FLUIDSYNTH, else PATH) and a SoundFont
 * (`options.soundFont`, CADENZA_SOUNDFONT, else SOUNDFONT_PATHS). Never throws.
 */
export function findFluidSynth(options: FindOptions = {}): FluidSynthInfo {
  const fluidsynth = findProgram("fluidsynth");
  const wanted = options.soundFont ?? envVar("CADENZA_SOUNDFONT");
  const candidates = wanted !== undefined && wanted !== "" ? [wanted] : SOUNDFONT_PATHS;
  const soundFont = candidates.find((path) => existsSync(path));
  const missing: string[] = [];
  if (fluidsynth === undefined) missing.push("the fluidsynth program (not on PATH)");
  if (soundFont === undefined) {
    missing.push(
      wanted !== undefined && wanted !== ""
        ? `the SoundFont ${wanted} (no such file)`
        : `a General MIDI SoundFont (looked in ${SOUNDFONT_PATHS.join(", ")})`,
    );
  }
  return { fluidsynth, soundFont, missing, install: INSTALL };
}

function run(program: string, args: string[], timeout_ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    try {
      execFile(
        program,
        args,
        { timeout: timeout_ms, maxBuffer: 1 << 20 },
        (err, stdout, stderr) => {
          if (err === null) resolve();
          else reject(Object.assign(err, { output: `${stderr}${stdout}`.trim() }));
        },
      );
    } catch (err) {
      reject(err); // e.g. Deno without --allow-run throws before starting anything
    }
  });
}

function checkRenderOptions(options: RenderWavOptions): void {
  const rate = options.sampleRate;
  if (rate !== undefined && !(Number.isInteger(rate) && rate >= 8000 && rate <= 192000)) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `renderWav: sampleRate is ${rate}; expected an integer 8000..192000`,
    );
  }
  const timeout = options.timeoutMs;
  if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0)) {
    throw new CadenzaError("E_ARGUMENT", `renderWav: timeoutMs is ${timeout}; expected > 0`);
  }
  const gain = options.gain;
  if (gain !== undefined && !(Number.isFinite(gain) && gain >= 0 && gain <= 10)) {
    throw new CadenzaError("E_ARGUMENT", `renderWav: gain is ${gain}; expected 0..10`);
  }
}

/**
 * Renders the sequence to WAV bytes (16-bit PCM, stereo) with FluidSynth. Throws a CadenzaError:
 * E_UNAVAILABLE when FluidSynth or the SoundFont is missing (the message says how to install
 * them) or cannot be run, E_ARGUMENT for a bad sequence or option, E_IO when FluidSynth fails.
 */
export async function renderWav(
  seq: NoteSequence,
  options: RenderWavOptions = {},
): Promise<Uint8Array> {
  validateSequence(seq);
  checkRenderOptions(options);
  const found = findFluidSynth(options);
  if (found.fluidsynth === undefined || found.soundFont === undefined) {
    throw new CadenzaError(
      "E_UNAVAILABLE",
      `audio rendering needs ${found.missing.join(" and ")}; ${found.install}`,
    );
  }
  const dir = mkdtempSync(join(tmpdir(), "cadenza-wav-"));
  try {
    const midi_path = join(dir, "in.mid");
    const wav_path = join(dir, "out.wav");
    writeFileSync(midi_path, toMidi(seq));
    const args = [
      "-n", // no MIDI input driver
      "-i", // no shell
      "-q", // no banner
      "-a",
      "file", // never open an audio device
      "-T",
      "wav",
      "-F",
      wav_path,
      "-r",
      String(options.sampleRate ?? 44100),
      "-g",
      String(options.gain ?? 0.5),
      found.soundFont,
      midi_path,
    ];
    const timeout_ms = Math.ceil(options.timeoutMs ?? 60_000 + 2_000 * seq.totalTime);
    try {
      await run(found.fluidsynth, args, timeout_ms);
    } catch (err) {
      throw runError(err, found.fluidsynth, timeout_ms);
    }
    if (!existsSync(wav_path)) {
      throw new CadenzaError("E_IO", `${found.fluidsynth} exited without writing ${wav_path}`);
    }
    return new Uint8Array(readFileSync(wav_path));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runError(err: unknown, program: string, timeout_ms: number): CadenzaError {
  const e = err as {
    name?: string;
    code?: unknown;
    killed?: boolean;
    output?: string;
    message?: string;
  };
  if (e.name === "NotCapable" || e.name === "PermissionDenied") {
    return new CadenzaError(
      "E_UNAVAILABLE",
      `cannot run ${program}: this runtime may not start programs (under Deno, grant --allow-run)`,
      { cause: err },
    );
  }
  if (e.killed === true) {
    return new CadenzaError("E_IO", `${program} took longer than ${timeout_ms} ms; stopped`, {
      cause: err,
    });
  }
  const detail = e.output !== undefined && e.output !== "" ? e.output : (e.message ?? String(err));
  return new CadenzaError("E_IO", `${program} failed (exit ${String(e.code)}): ${detail}`, {
    cause: err,
  });
}
