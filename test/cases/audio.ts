/**
 * The audio front end of `cadenza live` (src/audio): the WAV reader over files written here by
 * an independent little encoder, the feature extractor against tones whose spectrum is known,
 * and the generated melody. Runtime-neutral; test/audio.test.ts and test/deno/audio.test.ts
 * register them with their runtime's allocation probe.
 */

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AMPLITUDE_FLOOR,
  FEATURE_BINS,
  FeatureExtractor,
  FFT_SIZE,
} from "../../src/audio/features.ts";
import { MELODY_BPM, MELODY_NOTES, melodySignal, noteHz } from "../../src/audio/signal.ts";
import { parseWav, readWav } from "../../src/audio/wav.ts";
import { type Case, check, rejectsCadenza, throwsCadenza } from "./check.ts";
import { Rng } from "../helpers.ts";

// ---------------------------------------------------------------------------------------------
// An independent WAV encoder: chunks laid out by hand from the RIFF/WAVE layout.

const ascii = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** A chunk: id, little-endian size, body, and a pad byte when the size is odd. */
function chunk(id: string, body: Uint8Array, declared = body.length): Uint8Array {
  const header = new Uint8Array(8);
  header.set(ascii(id), 0);
  new DataView(header.buffer).setUint32(4, declared, true);
  return concat([header, body, new Uint8Array(body.length & 1)]);
}

function riff(chunks: Uint8Array[], form = "WAVE", magic = "RIFF"): Uint8Array {
  const body = concat([ascii(form), ...chunks]);
  return concat([ascii(magic), u32(body.length), body]);
}

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
}

interface FmtFields {
  tag: number;
  channels: number;
  rateHz: number;
  bits: number;
  blockAlign?: number;
  /** WAVE_FORMAT_EXTENSIBLE with this sub-format code. */
  subFormat?: number;
}

function fmtBody(f: FmtFields): Uint8Array {
  const blockAlign = f.blockAlign ?? f.channels * (f.bits / 8);
  const out = new Uint8Array(f.subFormat === undefined ? 16 : 40);
  const view = new DataView(out.buffer);
  view.setUint16(0, f.subFormat === undefined ? f.tag : 0xfffe, true);
  view.setUint16(2, f.channels, true);
  view.setUint32(4, f.rateHz, true);
  view.setUint32(8, f.rateHz * blockAlign, true);
  view.setUint16(12, blockAlign, true);
  view.setUint16(14, f.bits, true);
  if (f.subFormat !== undefined) {
    view.setUint16(16, 22, true);
    view.setUint16(18, f.bits, true);
    view.setUint32(20, f.channels === 2 ? 3 : 4, true);
    // KSDATAFORMAT_SUBTYPE_*: the format code, then the fixed GUID tail.
    view.setUint16(24, f.subFormat, true);
    out.set([0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71], 26);
  }
  return out;
}

type Encoding = "int16" | "int24" | "int32" | "float32";

/** Interleaves frames[frame][channel] (raw integers, or floats for float32). */
function dataBody(encoding: Encoding, frames: number[][]): Uint8Array {
  const width = { int16: 2, int24: 3, int32: 4, float32: 4 }[encoding];
  const channels = frames[0]?.length ?? 1;
  const out = new Uint8Array(frames.length * channels * width);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const frame of frames) {
    for (const value of frame) {
      if (encoding === "int16") view.setInt16(at, value, true);
      if (encoding === "int32") view.setInt32(at, value, true);
      if (encoding === "float32") view.setFloat32(at, value, true);
      if (encoding === "int24") {
        const bits = value & 0xffffff;
        out[at] = bits & 0xff;
        out[at + 1] = (bits >> 8) & 0xff;
        out[at + 2] = (bits >> 16) & 0xff;
      }
      at += width;
    }
  }
  return out;
}

const FORMATS: Record<Encoding, { tag: number; bits: number; full: number }> = {
  int16: { tag: 1, bits: 16, full: 2 ** 15 },
  int24: { tag: 1, bits: 24, full: 2 ** 23 },
  int32: { tag: 1, bits: 32, full: 2 ** 31 },
  float32: { tag: 3, bits: 32, full: 1 },
};

/** Frames of raw values covering both extremes, zero and small values, per channel. */
function rawFrames(encoding: Encoding, channels: number, count: number): number[][] {
  const { full } = FORMATS[encoding];
  const rng = new Rng(11 + channels);
  const frames: number[][] = [];
  for (let i = 0; i < count; i++) {
    const frame: number[] = [];
    for (let c = 0; c < channels; c++) {
      const fixed = [-full, full - (encoding === "float32" ? 0 : 1), 0, -1, 1];
      const value = i < fixed.length ? fixed[(i + c) % fixed.length] : rng.uniform(-full, full);
      frame.push(encoding === "float32" ? Math.fround(value) : Math.trunc(value));
    }
    frames.push(frame);
  }
  return frames;
}

export function encodeWav(
  encoding: Encoding,
  rateHz: number,
  frames: number[][],
  options: { extensible?: boolean; extraChunks?: boolean } = {},
): Uint8Array {
  const { tag, bits } = FORMATS[encoding];
  const channels = frames[0]?.length ?? 1;
  const fmt = chunk(
    "fmt ",
    fmtBody({ tag, channels, rateHz, bits, subFormat: options.extensible ? tag : undefined }),
  );
  const data = chunk("data", dataBody(encoding, frames));
  // A LIST chunk of odd size (so a pad byte) before fmt, and data before a trailing chunk.
  const list = chunk("LIST", ascii("abc"));
  const fact = chunk("fact", u32(frames.length));
  return options.extraChunks ? riff([list, fmt, data, fact]) : riff([fmt, data]);
}

// ---------------------------------------------------------------------------------------------
// WAV cases.

const PATH = "take.wav";

function checkDecoded(encoding: Encoding, channels: number, extensible: boolean): void {
  const frames = rawFrames(encoding, channels, 64);
  const bytes = encodeWav(encoding, 22_050, frames, { extensible, extraChunks: extensible });
  const what = `${encoding} x${channels}${extensible ? " extensible" : ""}`;
  const audio = parseWav(bytes, PATH);
  check(audio.sampleRateHz === 22_050, () => `${what}: rate ${audio.sampleRateHz}`);
  check(
    audio.channels === channels && audio.frames === 64,
    () => `${what}: ${audio.channels} channels, ${audio.frames} frames`,
  );
  check(audio.format === encoding, () => `${what}: format ${audio.format}`);
  const full = FORMATS[encoding].full;
  for (let i = 0; i < frames.length; i++) {
    const want = Math.fround(frames[i].reduce((a, b) => a + b / full, 0) / channels);
    check(
      Math.abs(audio.samples[i] - want) <= 1e-7,
      () => `${what}: frame ${i} decoded ${audio.samples[i]}, expected ${want} (raw ${frames[i]})`,
    );
  }
}

const formatCases: Case[] = (["int16", "int24", "int32", "float32"] as Encoding[]).map((e) => ({
  name: `audio: WAV ${e}, mono, stereo and 3-channel extensible, mixed down to mono`,
  run: () => {
    checkDecoded(e, 1, false);
    checkDecoded(e, 2, false);
    checkDecoded(e, 3, true);
  },
}));

function validFile(): Uint8Array {
  return encodeWav("int16", 48_000, rawFrames("int16", 2, 16));
}

/** Replaces a little-endian u16/u32 at `at` in a copy of the valid file. */
function patched(at: number, value: number, width: 2 | 4): Uint8Array {
  const bytes = validFile().slice();
  const view = new DataView(bytes.buffer);
  if (width === 2) view.setUint16(at, value, true);
  else view.setUint32(at, value, true);
  return bytes;
}

const fmtOnly = (fields: FmtFields) =>
  riff([chunk("fmt ", fmtBody(fields)), chunk("data", u32(0))]);
const int16Fmt: FmtFields = { tag: 1, channels: 2, rateHz: 48_000, bits: 16 };

/** Malformed files and the message each must give. Offsets: fmt body at 20, data header at 36. */
const MALFORMED: [string, () => Uint8Array, RegExp][] = [
  ["too short", () => validFile().slice(0, 10), /truncated: 10 bytes, a RIFF\/WAVE header/],
  ["not RIFF", () => riff([], "WAVE", "RIFX"), /expected "RIFF" at byte 0, found "RIFX"/],
  ["not WAVE", () => riff([], "AVI "), /expected "WAVE" at byte 8, found "AVI "/],
  ["no fmt", () => riff([chunk("data", u32(0))]), /no "fmt " chunk/],
  ["no data", () => riff([chunk("fmt ", fmtBody(int16Fmt))]), /no "data" chunk/],
  [
    "data cut short",
    () => validFile().slice(0, -10),
    /truncated: chunk "data" at byte 36 declares 64 bytes, 54 remain/,
  ],
  [
    "a chunk header cut short",
    () => concat([patched(4, validFile().length - 8 + 3, 4), new Uint8Array(3)]),
    /truncated: a chunk header at byte 108 needs 8 bytes, 3 remain/,
  ],
  ["fmt too short", () => riff([chunk("fmt ", new Uint8Array(14))]), /"fmt " chunk is 14 bytes/],
  [
    "extensible too short",
    () => riff([chunk("fmt ", concat([patched(20, 0xfffe, 2).slice(20, 36), new Uint8Array(2)]))]),
    /WAVE_FORMAT_EXTENSIBLE but 18 bytes, expected 40/,
  ],
  ["8-bit PCM", () => fmtOnly({ ...int16Fmt, bits: 8 }), /PCM integer with 8 bits; supported/],
  ["64-bit float", () => fmtOnly({ ...int16Fmt, tag: 3, bits: 64 }), /float with 64 bits/],
  ["ADPCM", () => fmtOnly({ ...int16Fmt, tag: 2 }), /format code 0x2;/],
  ["no channels", () => patched(22, 0, 2), /channels is 0, expected 1\.\.256/],
  ["rate 0", () => patched(24, 0, 4), /sample rate is 0 Hz/],
  ["block align", () => patched(32, 3, 2), /block align is 3, expected 4 \(2 channels x 2/],
  [
    "partial frame",
    () => riff([chunk("fmt ", fmtBody(int16Fmt)), chunk("data", new Uint8Array(6))]),
    /"data" chunk is 6 bytes, not a whole number of 4-byte frames/,
  ],
  [
    "NaN sample",
    () => encodeWav("float32", 8000, [[0], [NaN], [0]]),
    /"data" frame 1 holds a sample that is not a finite number/,
  ],
];

const malformedCase: Case = {
  name: "audio: malformed and truncated WAV files are E_FORMAT naming the file and the field",
  run: () => {
    for (const [what, bytes, pattern] of MALFORMED) {
      throwsCadenza(() => parseWav(bytes(), PATH), "E_FORMAT", pattern, what);
      throwsCadenza(() => parseWav(bytes(), PATH), "E_FORMAT", /^take\.wav: WAV: /, what);
    }
  },
};

const fileCase: Case = {
  name: "audio: readWav reads a file; a missing file is E_IO naming it",
  run: async () => {
    const dir = mkdtempSync(join(tmpdir(), "cadenza-audio-"));
    try {
      const path = join(dir, "tone.wav");
      writeFileSync(path, encodeWav("int24", 44_100, rawFrames("int24", 2, 100)));
      const audio = await readWav(path);
      check(
        audio.frames === 100 && audio.sampleRateHz === 44_100,
        () => `${audio.frames} frames at ${audio.sampleRateHz} Hz`,
      );
      await rejectsCadenza(() => readWav(join(dir, "missing.wav")), "E_IO", /missing\.wav/, "io");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Features.

function sine(amplitude: number, hz: number, rateHz: number, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = amplitude * Math.sin((2 * Math.PI * hz * i) / rateHz);
  return out;
}

function featuresOf(samples: Float32Array, blockSamples = samples.length): Float32Array {
  const extractor = new FeatureExtractor();
  for (let at = 0; at < samples.length; at += blockSamples) {
    extractor.push(samples, at, Math.min(blockSamples, samples.length - at));
  }
  const into = new Float32Array(FEATURE_BINS);
  extractor.compute(into);
  return into;
}

function argmax(values: Float32Array, from = 0): number {
  let best = from;
  for (let i = from + 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

const level = (amplitude: number) => Math.log10(1 + amplitude / AMPLITUDE_FLOOR) / 4;

/** A sine centred on `bin` peaks at feature bin - 1 with its amplitude's level. */
function checkTone(bin: number, rateHz: number, amplitude: number): void {
  const hz = (bin * rateHz) / FFT_SIZE;
  const features = featuresOf(sine(amplitude, hz, rateHz, 1000), 128);
  const peak = argmax(features);
  check(
    peak === bin - 1,
    () => `${hz} Hz at ${rateHz} Hz: peak at feature ${peak}, not ${bin - 1}`,
  );
  check(
    Math.abs(features[peak] - level(amplitude)) < 1e-4,
    () => `${hz} Hz: level ${features[peak]}, expected ${level(amplitude)}`,
  );
}

const toneCase: Case = {
  name: "audio: a pure tone's features peak at its bin, at its amplitude's level",
  run: () => {
    checkTone(8, 48_000, 0.5);
    checkTone(37, 44_100, 0.25);
    checkTone(1, 48_000, 1);
    checkTone(127, 16_000, 0.1);
    // Nyquist, alternating samples, is one real line: it reads its amplitude at bin 128, and
    // the window's half-height neighbour, counted as a pair, reads the same at bin 127.
    const nyquist = Float32Array.from({ length: 512 }, (_, i) => (i & 1 ? -0.3 : 0.3));
    const features = featuresOf(nyquist);
    check(
      Math.abs(features[127] - level(0.3)) < 1e-4 && Math.abs(features[126] - level(0.3)) < 1e-4,
      () => `Nyquist: levels ${features[126]}, ${features[127]}, expected ${level(0.3)}`,
    );
    check(features[125] < level(AMPLITUDE_FLOOR), () => `Nyquist: bin 126 reads ${features[125]}`);
    // Between bins 20 and 21: the peak is one of the two.
    const between = featuresOf(sine(0.5, (20.5 * 48_000) / 256, 48_000, 512));
    check([19, 20].includes(argmax(between)), () => `bin 20.5 peaks at ${argmax(between)}`);
  },
};

const historyCase: Case = {
  name: "audio: features depend on the latest 256 samples only, however they are pushed",
  run: () => {
    const silence = featuresOf(new Float32Array(300));
    check(silence.every((v) => v === 0), () => `silence reads ${silence.find((v) => v !== 0)}`);
    const rng = new Rng(5);
    const noise = rng.floats(1000, -1, 1);
    const tone = sine(0.5, 3000, 48_000, 256);
    const whole = featuresOf(tone);
    const joined = new Float32Array(1256);
    joined.set(noise);
    joined.set(tone, 1000);
    for (const block of [1, 7, 128, 256, 1256]) {
      const streamed = featuresOf(joined, block);
      const i = streamed.findIndex((v, k) => v !== whole[k]);
      check(i < 0, () => `blocks of ${block}: feature ${i} is ${streamed[i]}, not ${whole[i]}`);
    }
    const extractor = new FeatureExtractor();
    throwsCadenza(
      () => extractor.compute(new Float32Array(64)),
      "E_ARGUMENT",
      /into has 64 values, expected 128/,
      "compute",
    );
    throwsCadenza(
      () => extractor.push(tone, 200, 100),
      "E_ARGUMENT",
      /\[200, 300\): expected whole indices within 0\.\.256/,
      "push",
    );
    throwsCadenza(
      () => extractor.push(tone, 0.5, 100),
      "E_ARGUMENT",
      /\[0\.5, 100\.5\): expected whole indices/,
      "push from a fractional index",
    );
  },
};

/** Measures what `calls` runs of body allocate (objects or bytes, per the runtime's probe). */
export type AllocationProbe = (calls: number, body: (calls: number) => void) => number;

export function featureAllocationCase(probe: AllocationProbe, slack: number, unit: string): Case {
  return {
    name: `audio: 20,000 push+compute blocks allocate nothing (${unit}, slack ${slack})`,
    run: () => {
      const extractor = new FeatureExtractor();
      const samples = melodySignal(48_000, { seconds: 1 });
      const into = new Float32Array(FEATURE_BINS);
      let at = 0;
      // In a typed array: a captured `let` holding a double is boxed anew on every write in V8.
      const sum = new Float64Array(1);
      const body = (calls: number) => {
        for (let i = 0; i < calls; i++) {
          extractor.push(samples, at, 128);
          at = at + 256 > samples.length ? 0 : at + 128;
          extractor.compute(into);
          sum[0] += into[10];
        }
      };
      body(2000);
      // One measurement: the probe forces a collection before each chunk of calls, so an
      // allocation per block shows in every chunk (test/alloc-probe.test.ts).
      const measured = probe(20_000, body);
      check(Number.isFinite(sum[0]), () => `features are not finite: ${sum[0]}`);
      check(measured <= slack, () => `push+compute allocated ${measured} ${unit} > ${slack}`);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The generated melody.

const signalCase: Case = {
  name: "audio: the generated melody is deterministic, bounded, and plays its notes",
  run: () => {
    const a = melodySignal(48_000, { seconds: 2 });
    const b = melodySignal(48_000, { seconds: 2 });
    check(a.length === 96_000, () => `length ${a.length}`);
    check(a.every((v, i) => v === b[i]), () => "two calls differ");
    const other = melodySignal(48_000, { seconds: 2, seed: 2 });
    check(other.some((v, i) => v !== a[i]), () => "the seed does not change the noise");
    const peak = a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    check(peak > 0.2 && peak < 0.7, () => `peak ${peak}`);
    const full = melodySignal(48_000);
    const beatSamples = (60 / MELODY_BPM) * 48_000;
    for (const [beat, note] of MELODY_NOTES.entries()) {
      const middle = Math.round((beat + 0.5) * beatSamples);
      const features = featuresOf(full.slice(middle - 256, middle));
      // Above the bass (bins 0-1), the strongest bin is the note's fundamental.
      const bin = argmax(features, 1) + 1;
      const want = (noteHz(note) * FFT_SIZE) / 48_000;
      check(Math.abs(bin - want) <= 1, () => `beat ${beat} (note ${note}): bin ${bin}, ~${want}`);
    }
    throwsCadenza(() => melodySignal(0), "E_ARGUMENT", /0 Hz/, "rate 0");
  },
};

export const audioCases: Case[] = [
  ...formatCases,
  malformedCase,
  fileCase,
  toneCase,
  historyCase,
  signalCase,
];
