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
  FEATURE_COUNT,
  FeatureExtractor,
  KEY_PROFILES,
} from "../../src/audio/features.ts";
import { KK_MAJOR_PROFILE, KK_MINOR_PROFILE } from "../../src/music/keyfinder.ts";
import { MELODY_BPM, MELODY_NOTES, melodySignal } from "../../src/audio/signal.ts";
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
// Features, against a float64 reference written from the definition in src/audio/features.ts:
// a direct DFT (no FFT) of the Hann-windowed latest 4096 samples at every bin a band reads.

function sine(amplitude: number, hz: number, rateHz: number, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = amplitude * Math.sin((2 * Math.PI * hz * i) / rateHz);
  return out;
}

function featuresOf(
  samples: Float32Array,
  blockSamples = samples.length,
  rateHz = 48_000,
): Float32Array {
  const extractor = new FeatureExtractor(rateHz);
  for (let at = 0; at < samples.length; at += blockSamples) {
    extractor.push(samples, at, Math.min(blockSamples, samples.length - at));
  }
  const into = new Float32Array(FEATURE_COUNT);
  extractor.compute(into);
  return into;
}

function argmax(values: ArrayLike<number>, from = 0, to = values.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (values[i] > values[best]) best = i;
  return best;
}

const level = (amplitude: number) => Math.log10(1 + amplitude / AMPLITUDE_FLOOR) / 4;
const hzOf = (note: number) => 440 * 2 ** ((note - 69) / 12);
const KK = [
  [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
  [6.33, 2.68, 3.52, 5.38, 2.6, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17],
];

// Temperley's profiles, the major and harmonic minor scales, the major and minor triads.
const TEMPLATES = [
  [5, 2, 3.5, 2, 4.5, 4, 2, 4.5, 2, 3.5, 1.5, 4],
  [5, 2, 3.5, 4.5, 2, 4, 2, 4.5, 3.5, 2, 1.5, 4],
  [1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1],
  [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1],
  [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0],
  [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0],
];

function correlation(a: number[], b: number[]): number {
  const ma = a.reduce((s, v) => s + v, 0) / a.length;
  const mb = b.reduce((s, v) => s + v, 0) / b.length;
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) ** 2;
    bb += (b[i] - mb) ** 2;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/**
 * The features of one `compute` (the first after construction) in float64: the latest 4096
 * samples (zeros before the signal starts).
 */
function referenceFeatures(samples: Float32Array, rateHz: number): Float64Array {
  const n = 4096;
  const frame = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const at = samples.length - n + i;
    frame[i] = at >= 0 ? samples[at] : 0;
  }
  const w = (i: number) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / n);
  const windowed = frame.map((x, i) => x * w(i));
  const cos = Float64Array.from({ length: n }, (_, i) => Math.cos((2 * Math.PI * i) / n));
  const sin = Float64Array.from({ length: n }, (_, i) => Math.sin((2 * Math.PI * i) / n));
  const bin = (k: number) => {
    let re = 0;
    let im = 0;
    for (let i = 0; i < n; i++) {
      const phase = (k * i) % n; // exact: k * i < 2^53
      re += windowed[i] * cos[phase];
      im -= windowed[i] * sin[phase];
    }
    // Sum of the window is n / 2; a sine of amplitude A centred on bin k reads A; Nyquist once.
    return (Math.hypot(re, im) * 2) / (n / 2) * (k === n / 2 ? 0.5 : 1);
  };
  const out = new Float64Array(128);
  const amp = new Float64Array(96);
  const binHz = rateHz / n;
  for (let b = 0; b < 96; b++) {
    const note = 24 + b;
    if (hzOf(note) >= rateHz / 2) continue;
    const bins: number[] = [];
    for (let k = 0; k <= n / 2; k++) {
      const hz = k * binHz;
      if (hz >= hzOf(note - 0.5) && hz < hzOf(note + 0.5)) bins.push(k);
    }
    if (bins.length === 0) bins.push(Math.round(hzOf(note) / binHz));
    amp[b] = Math.max(...bins.map(bin));
    out[b] = level(amp[b]);
  }
  const total = amp.reduce((s, a) => s + a, 0);
  const chroma = new Array(12).fill(0);
  for (let b = 0; b < 96; b++) chroma[(24 + b) % 12] += total > 1e-4 ? amp[b] / total : 0;
  for (let c = 0; c < 12; c++) out[108 + c] = chroma[c];
  let power = 0;
  for (let i = 0; i < n; i++) power += w(i) * frame[i] ** 2;
  out[120] = out[121] = level(Math.sqrt(power / (n / 2)));
  let weighted = 0;
  let bass = 0;
  for (let b = 0; b < 96; b++) {
    weighted += b * amp[b];
    if (b < 24) bass += amp[b];
  }
  out[124] = total > 1e-4 ? weighted / total / 95 : 0;
  out[125] = total > 1e-4 ? bass / total : 0;
  const flat = chroma.every((c) => Math.abs(c - chroma[0]) < 1e-9);
  for (let m = 0; m < 2; m++) {
    let best = -1;
    for (let t = 0; t < 12; t++) {
      const rotated = chroma.map((_, c) => chroma[(t + c) % 12]);
      best = Math.max(best, correlation(rotated, KK[m]));
    }
    out[126 + m] = flat ? 0 : best;
  }
  // At the first compute both smoothed chromas (2 s and 8 s) are the frame's own.
  for (let m = 0; m < 6; m++) {
    let best = -1;
    for (let t = 0; t < 12; t++) {
      const rotated = chroma.map((_, c) => chroma[(t + c) % 12]);
      best = Math.max(best, correlation(rotated, TEMPLATES[m]));
    }
    out[96 + m] = out[102 + m] = flat ? 0 : best;
  }
  return out;
}

/** Every feature of one compute within `tolerance` of the float64 reference. */
function checkAgainstReference(samples: Float32Array, rateHz: number, what: string): Float32Array {
  const got = featuresOf(samples, 128, rateHz);
  const want = referenceFeatures(samples, rateHz);
  for (let i = 0; i < 128; i++) {
    // float32 samples and outputs, float64 arithmetic inside: 1e-5 covers the rounding of the
    // FFT's 11 stages against the direct sums (levels are ~1, shares and correlations <= 1).
    check(
      Math.abs(got[i] - want[i]) < 1e-5,
      () => `${what}: feature ${i} is ${got[i]}, the reference ${want[i]}`,
    );
  }
  return got;
}

const toneCase: Case = {
  name: "audio: a pure tone lands in its semitone band and pitch class, as the float64 reference",
  run: () => {
    for (
      const [note, rateHz, amplitude] of [[69, 48_000, 0.5], [57, 44_100, 0.25], [81, 48_000, 1], [
        100,
        32_000,
        0.1,
      ], [60, 48_000, 0.05]]
    ) {
      const features = checkAgainstReference(
        sine(amplitude, hzOf(note), rateHz, 6000),
        rateHz,
        `note ${note} at ${rateHz} Hz`,
      );
      const band = argmax(features, 0, 96);
      check(band === note - 24, () => `note ${note}: strongest band ${band}, not ${note - 24}`);
      // A sine off a bin's centre reads at most 1.42 dB (Hann scalloping) below its amplitude.
      check(
        features[band] <= level(amplitude) + 1e-6 && features[band] > level(amplitude * 0.84),
        () => `note ${note}: level ${features[band]}, amplitude's ${level(amplitude)}`,
      );
      check(argmax(features, 108, 120) === 108 + (note % 12), () => `note ${note}: chroma`);
    }
    // A chord and noise, every feature.
    const rng = new Rng(3);
    const noise = rng.floats(8000, -0.05, 0.05);
    const chord = new Float32Array(8000);
    for (const note of [45, 57, 60, 64]) {
      const s = sine(0.2, hzOf(note), 48_000, 8000);
      for (let i = 0; i < 8000; i++) chord[i] += s[i] + noise[i] / 4;
    }
    const f = checkAgainstReference(chord, 48_000, "A minor chord with noise");
    check(f[127] > f[126], () => `A minor chord: minor clarity ${f[127]} <= major ${f[126]}`);
    // The Temperley and triad pairs, now (96..101) and over the piece (102..107); a lone triad
    // lies in scales of both modes (C E G in C major and in E harmonic minor): not the scales.
    for (const at of [96, 100, 102, 106]) {
      check(
        f[at + 1] > f[at],
        () => `A minor chord: feature ${at + 1} ${f[at + 1]} <= ${at} ${f[at]}`,
      );
    }
    const major = new Float32Array(8000);
    for (const note of [48, 60, 64, 67]) {
      const s = sine(0.2, hzOf(note), 48_000, 8000);
      for (let i = 0; i < 8000; i++) major[i] += s[i];
    }
    const g = checkAgainstReference(major, 48_000, "C major chord");
    check(g[126] > g[127], () => `C major chord: major clarity ${g[126]} <= minor ${g[127]}`);
    for (const at of [96, 100, 102, 106]) {
      check(
        g[at] > g[at + 1],
        () => `C major chord: feature ${at} ${g[at]} <= ${at + 1} ${g[at + 1]}`,
      );
    }
    // Bands at or above Nyquist read 0: at 8 kHz, from C8 (4186 Hz).
    const low = featuresOf(sine(0.5, 440, 8000, 5000), 128, 8000);
    check(low.slice(108 - 24, 96).every((v) => v === 0), () => "bands above 4 kHz at 8 kHz");
    check(low[107 - 24] > 0, () => "B7 (3951 Hz) at 8 kHz reads nothing");
    check(
      KEY_PROFILES.every((p, m) =>
        p.every((v, c) => v === [KK_MAJOR_PROFILE, KK_MINOR_PROFILE][m][c])
      ),
      () => "the key profiles differ from the key finder's",
    );
  },
};

const historyCase: Case = {
  name: "audio: one compute depends on the latest 4096 samples only, however they are pushed",
  run: () => {
    const silence = featuresOf(new Float32Array(5000));
    check(silence.every((v) => v === 0), () => `silence reads ${silence.find((v) => v !== 0)}`);
    const rng = new Rng(5);
    const noise = rng.floats(1000, -1, 1);
    const tone = sine(0.5, 3000, 48_000, 4096);
    const whole = featuresOf(tone);
    const joined = new Float32Array(5096);
    joined.set(noise);
    joined.set(tone, 1000);
    for (const block of [1, 7, 128, 256, 5096]) {
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
      () => extractor.push(tone, 4000, 100),
      "E_ARGUMENT",
      /\[4000, 4100\): expected whole indices within 0\.\.4096/,
      "push",
    );
    throwsCadenza(
      () => extractor.push(tone, 0.5, 100),
      "E_ARGUMENT",
      /\[0\.5, 100\.5\): expected whole indices/,
      "push from a fractional index",
    );
    throwsCadenza(() => new FeatureExtractor(0), "E_ARGUMENT", /sampleRateHz is 0/, "rate 0");
  },
};

const smoothingCase: Case = {
  name:
    "audio: smoothed features are running means, then 2 s (8 s chroma) one-pole filters, at any block size",
  run: () => {
    // 2 s of a tone, then 2 s of silence. Once the window is silent (4096 samples after the
    // tone ends) the 2 s features, whose time constant has passed, decay as exp(-t / 2 s)
    // exactly; the chroma (8 s), still a running mean of everything since the first compute,
    // falls as 1 / (time since then). Runs that start with the same first compute (after 4096
    // samples) and go on in blocks of 128 or 384 samples agree within 1% (the filters see the
    // same signal sampled at other instants).
    const rate = 48_000;
    const signal = new Float32Array(4 * rate);
    signal.set(sine(0.3, 523.25, rate, 2 * rate));
    const run = (block: number) => {
      const extractor = new FeatureExtractor(rate);
      const into = new Float32Array(FEATURE_COUNT);
      const at: Record<number, number[]> = {};
      extractor.push(signal, 0, 4096);
      extractor.compute(into);
      for (let start = 4096; start < signal.length; start += block) {
        extractor.push(signal, start, Math.min(block, signal.length - start));
        extractor.compute(into);
        at[start + block] = Array.from(into);
      }
      return at;
    };
    const a = run(128);
    const b = run(384);
    const t1 = 2 * rate + 4096 + 1152; // a common block end after the window went silent
    const t2 = 4096 + 384 * 489; // the last common block end
    for (const [name, i] of [["loudness", 121], ["chroma C", 108], ["brightness", 124]] as const) {
      const decay = a[t2][i] / a[t1][i];
      const want = i === 108 ? (t1 - 4096) / (t2 - 4096) : Math.exp(-(t2 - t1) / rate / 2);
      check(Math.abs(decay - want) < 1e-5, () => `${name}: decays by ${decay}, expected ${want}`);
      check(
        Math.abs(a[t2][i] - b[t2][i]) < 1e-2 * Math.abs(a[t2][i]),
        () => `${name}: blocks of 128 read ${a[t2][i]}, of 384 ${b[t2][i]}`,
      );
    }
    // A tone starting after silence rises the band levels: the onset strength peaks while the
    // window fills; in a steady tone it reads far less (the sidelobes' levels wobble a little
    // as the window slides over a sine).
    const extractor = new FeatureExtractor(rate);
    const into = new Float32Array(FEATURE_COUNT);
    extractor.push(new Float32Array(4096), 0, 4096);
    extractor.compute(into);
    let onsetPeak = 0;
    for (let start = 0; start < 8192; start += 128) {
      extractor.push(signal, start, 128);
      extractor.compute(into);
      onsetPeak = Math.max(onsetPeak, into[122]);
    }
    check(onsetPeak > 0.05, () => `onset strength at the tone's start: ${onsetPeak}`);
    check(
      a[rate][122] < onsetPeak / 4,
      () => `onset in a steady tone: ${a[rate][122]}, peak ${onsetPeak}`,
    );
    check(a[t2][122] === 0, () => `onset in silence: ${a[t2][122]}`);
  },
};

const modeCase: Case = {
  name: "audio: the mode features tell a minor melody from a major one over the piece (8 s)",
  run: () => {
    // Quarter notes at 120 bpm, pure tones: A harmonic minor up and down, and C major.
    const rate = 48_000;
    const play = (notes: number[]) => {
      const beat = rate / 2;
      const out = new Float32Array(notes.length * beat);
      notes.forEach((n, i) => out.set(sine(0.3, hzOf(n), rate, beat), i * beat));
      const extractor = new FeatureExtractor(rate);
      const into = new Float32Array(FEATURE_COUNT);
      for (let at = 0; at < out.length; at += 128) {
        extractor.push(out, at, Math.min(128, out.length - at));
        extractor.compute(into);
      }
      return into;
    };
    const minor = play([69, 71, 72, 74, 76, 77, 80, 81, 80, 77, 76, 74, 72, 71, 69, 64, 69]);
    const major = play([60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60, 67, 60]);
    // Temperley's profiles (102, 103) and the scales (104, 105) over the piece.
    for (const at of [102, 104]) {
      check(
        minor[at + 1] > minor[at],
        () => `A minor melody: feature ${at + 1} ${minor[at + 1]} <= ${at} ${minor[at]}`,
      );
      check(
        major[at] > major[at + 1],
        () => `C major melody: feature ${at} ${major[at]} <= ${at + 1} ${major[at + 1]}`,
      );
    }
    for (const f of [minor, major]) {
      check(
        f.slice(96, 108).every((v) => v >= -1 && v <= 1),
        () => `mode features ${f.slice(96, 108)}`,
      );
    }
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
      const features = featuresOf(full.slice(middle - 4096, middle));
      // Above the bass (MIDI 48), the strongest semitone band is the note's.
      const band = argmax(features, 49 - 24, 96) + 24;
      check(band === note, () => `beat ${beat} (note ${note}): band of MIDI ${band}`);
    }
    throwsCadenza(() => melodySignal(0), "E_ARGUMENT", /0 Hz/, "rate 0");
  },
};

export const audioCases: Case[] = [
  ...formatCases,
  malformedCase,
  fileCase,
  toneCase,
  modeCase,
  historyCase,
  smoothingCase,
  signalCase,
];
