/**
 * A WAV reader for the `live` command: RIFF/WAVE with PCM 16-, 24- or 32-bit integer or 32-bit
 * float samples (plain or WAVE_FORMAT_EXTENSIBLE), any channel count mixed down to mono by
 * averaging, at the file's own sample rate. Nothing is resampled: a caller that computes
 * spectral features gets bins relative to `sampleRateHz`.
 *
 * ```ts
 * const audio = await readWav("take.wav");      // { sampleRateHz, channels, format, samples }
 * audio.samples;                                 // mono Float32Array in [-1, 1]
 * ```
 *
 * Every problem is a CadenzaError E_FORMAT naming the file, the chunk or field and what was
 * expected; a chunk that runs past the end of the file is reported as truncated.
 *
 * The samples are decoded by `wavefile`. The chunk walk and the checks of the header stay here:
 * wavefile accepts a "data" chunk cut short by the end of the file (it decodes the frames that
 * are there, silently) and its errors do not name the field, so this module validates every
 * header word first and hands wavefile only a file that is whole. Not on the real-time path:
 * the file is read and mixed down once, before streaming starts.
 */

import * as wavefile from "wavefile";
import { CadenzaError } from "../errors.ts";
import { readFile } from "../native/io.ts";

export type WavSampleFormat = "int16" | "int24" | "int32" | "float32";

export interface WavAudio {
  sampleRateHz: number;
  /** Channels in the file; `samples` is their average. */
  channels: number;
  format: WavSampleFormat;
  /** Frames (samples per channel). */
  frames: number;
  /** The mono mixdown, one value per frame, full scale at +-1. */
  samples: Float32Array;
}

const FORMAT_PCM = 1;
const FORMAT_FLOAT = 3;
const FORMAT_EXTENSIBLE = 0xfffe;
/** The fmt chunk's fixed part; WAVE_FORMAT_EXTENSIBLE adds 24 bytes after a 2-byte size. */
const FMT_BASE_BYTES = 16;
const FMT_EXTENSIBLE_BYTES = 40;
/** More channels than any real layout; guards the mixdown loop against garbage headers. */
const MAX_CHANNELS = 256;
const MAX_RATE_HZ = 1_000_000;

interface FmtChunk {
  /** Where the chunk's body starts, and its format tag (0xFFFE for WAVE_FORMAT_EXTENSIBLE). */
  at: number;
  tag: number;
  /** The sample format's code: the tag, or the extensible sub-format's. */
  code: number;
  channels: number;
  sampleRateHz: number;
  blockAlign: number;
  format: WavSampleFormat;
}

interface DataChunk {
  offset: number;
  bytes: number;
}

/** Reads and decodes a WAV file; E_IO when it cannot be read, E_FORMAT when it is not valid. */
export async function readWav(path: string): Promise<WavAudio> {
  return parseWav(await readFile(path), path);
}

/** Decodes the bytes of a WAV file; `path` names it in error messages. */
export function parseWav(bytes: Uint8Array, path: string): WavAudio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = checkRiffHeader(view, path);
  let fmt: FmtChunk | null = null;
  let data: DataChunk | null = null;
  for (let at = 12; at < end;) {
    if (end - at < 8) {
      throw formatError(
        path,
        `truncated: a chunk header at byte ${at} needs 8 bytes, ` +
          `${end - at} remain`,
      );
    }
    const id = fourCC(view, at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (size > end - body) {
      throw formatError(
        path,
        `truncated: chunk "${id}" at byte ${at} declares ${size} bytes, ` +
          `${end - body} remain`,
      );
    }
    if (id === "fmt ") fmt = parseFmt(view, body, size, path);
    else if (id === "data" && data === null) data = { offset: body, bytes: size };
    // Chunks are padded to an even length; a missing pad byte at the very end is tolerated.
    at = body + size + (size & 1);
  }
  if (fmt === null) throw formatError(path, 'no "fmt " chunk: the sample format is unknown');
  if (data === null) throw formatError(path, 'no "data" chunk: the file holds no samples');
  return decode(bytes, fmt, data, path);
}

function formatError(path: string, message: string): CadenzaError {
  return new CadenzaError("E_FORMAT", `${path}: WAV: ${message}`);
}

function fourCC(view: DataView, at: number): string {
  let text = "";
  for (let i = 0; i < 4; i++) {
    const code = view.getUint8(at + i);
    text += code >= 0x20 && code < 0x7f ? String.fromCharCode(code) : "?";
  }
  return text;
}

/** Checks "RIFF" size "WAVE"; returns where the chunks end (the RIFF size, capped at the file). */
function checkRiffHeader(view: DataView, path: string): number {
  if (view.byteLength < 12) {
    throw formatError(path, `truncated: ${view.byteLength} bytes, a RIFF/WAVE header needs 12`);
  }
  const riff = fourCC(view, 0);
  if (riff !== "RIFF") {
    const hint = riff === "RIFX" ? " (big-endian RIFX is not supported)" : "";
    throw formatError(path, `expected "RIFF" at byte 0, found "${riff}"${hint}`);
  }
  const wave = fourCC(view, 8);
  if (wave !== "WAVE") throw formatError(path, `expected "WAVE" at byte 8, found "${wave}"`);
  const riffSize = view.getUint32(4, true);
  if (riffSize < 4) throw formatError(path, `RIFF size is ${riffSize}, expected at least 4`);
  // Writers that stream often leave the RIFF size too large; the chunk walk catches real
  // truncation, so the file's length bounds it instead.
  return Math.min(8 + riffSize, view.byteLength);
}

function parseFmt(view: DataView, at: number, size: number, path: string): FmtChunk {
  if (size < FMT_BASE_BYTES) {
    throw formatError(path, `"fmt " chunk is ${size} bytes, expected at least ${FMT_BASE_BYTES}`);
  }
  const tag = view.getUint16(at, true);
  const channels = view.getUint16(at + 2, true);
  const sampleRateHz = view.getUint32(at + 4, true);
  const blockAlign = view.getUint16(at + 12, true);
  const bits = view.getUint16(at + 14, true);
  const code = tag === FORMAT_EXTENSIBLE ? extensibleCode(view, at, size, path) : tag;
  const format = sampleFormat(code, bits, path);
  if (channels < 1 || channels > MAX_CHANNELS) {
    throw formatError(path, `"fmt " channels is ${channels}, expected 1..${MAX_CHANNELS}`);
  }
  if (sampleRateHz < 1 || sampleRateHz > MAX_RATE_HZ) {
    throw formatError(path, `"fmt " sample rate is ${sampleRateHz} Hz, expected 1..${MAX_RATE_HZ}`);
  }
  const frameBytes = channels * (bits / 8);
  if (blockAlign !== frameBytes) {
    throw formatError(
      path,
      `"fmt " block align is ${blockAlign}, expected ${frameBytes} ` +
        `(${channels} channels x ${bits / 8} bytes)`,
    );
  }
  return { at, tag, code, channels, sampleRateHz, blockAlign, format };
}

/** The format code inside WAVE_FORMAT_EXTENSIBLE: the first two bytes of the sub-format GUID. */
function extensibleCode(view: DataView, at: number, size: number, path: string): number {
  if (size < FMT_EXTENSIBLE_BYTES) {
    throw formatError(
      path,
      `"fmt " chunk is WAVE_FORMAT_EXTENSIBLE but ${size} bytes, ` +
        `expected ${FMT_EXTENSIBLE_BYTES}`,
    );
  }
  return view.getUint16(at + 24, true);
}

function sampleFormat(code: number, bits: number, path: string): WavSampleFormat {
  if (code === FORMAT_PCM && (bits === 16 || bits === 24 || bits === 32)) {
    return `int${bits}` as WavSampleFormat;
  }
  if (code === FORMAT_FLOAT && bits === 32) return "float32";
  const what = code === FORMAT_PCM
    ? `PCM integer with ${bits} bits`
    : code === FORMAT_FLOAT
    ? `float with ${bits} bits`
    : `format code 0x${code.toString(16)}`;
  throw formatError(
    path,
    `"fmt " describes ${what}; supported: PCM integer 16, 24 or 32 bits, ` +
      `float 32 bits`,
  );
}

// The package's ES module exports the class by name; the CommonJS build that Deno loads for it
// puts it on the default export.
const WaveFileClass: typeof wavefile.WaveFile = wavefile.WaveFile ??
  (wavefile as unknown as { default: typeof wavefile }).default.WaveFile;

/**
 * wavefile takes the sample type from the fmt tag and reads a WAVE_FORMAT_EXTENSIBLE file's
 * samples as integers whatever its sub-format (float samples would come out as garbage), so it
 * gets a copy whose tag is the sub-format's code.
 */
function withPlainTag(bytes: Uint8Array, fmt: FmtChunk): Uint8Array {
  if (fmt.tag !== FORMAT_EXTENSIBLE) return bytes;
  const copy = bytes.slice();
  new DataView(copy.buffer).setUint16(fmt.at, fmt.code, true);
  return copy;
}

/** Full scale of each sample format: wavefile gives PCM samples as integers. */
const FULL_SCALE: Record<WavSampleFormat, number> = {
  int16: 32768,
  int24: 8388608,
  int32: 2147483648,
  float32: 1,
};

function decode(bytes: Uint8Array, fmt: FmtChunk, data: DataChunk, path: string): WavAudio {
  if (data.bytes % fmt.blockAlign !== 0) {
    throw formatError(
      path,
      `"data" chunk is ${data.bytes} bytes, not a whole number of ` +
        `${fmt.blockAlign}-byte frames`,
    );
  }
  const frames = data.bytes / fmt.blockAlign;
  const wav = new WaveFileClass(withPlainTag(bytes, fmt));
  const decoded = wav.getSamples(false, Float64Array) as unknown as Float64Array | Float64Array[];
  const channels = fmt.channels === 1 ? [decoded as Float64Array] : decoded as Float64Array[];
  if (channels.length !== fmt.channels || channels.some((c) => c.length !== frames)) {
    throw formatError(
      path,
      `the decoder read ${channels.length} channels of ` +
        `${channels[0]?.length ?? 0} frames, expected ${fmt.channels} of ${frames}`,
    );
  }
  const samples = new Float32Array(frames);
  const scale = 1 / (fmt.channels * FULL_SCALE[fmt.format]);
  for (let frame = 0; frame < frames; frame++) {
    let sum = 0;
    for (const channel of channels) sum += channel[frame];
    if (!Number.isFinite(sum)) {
      throw formatError(path, `"data" frame ${frame} holds a sample that is not a finite number`);
    }
    samples[frame] = sum * scale;
  }
  return {
    sampleRateHz: fmt.sampleRateHz,
    channels: fmt.channels,
    format: fmt.format,
    frames,
    samples,
  };
}
