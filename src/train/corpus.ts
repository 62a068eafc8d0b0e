/**
 * The training corpus (data/corpus.jsonl.gz, data/SOURCES.md): typed pieces, the transposition
 * of a piece to tonic C, and the split by piece that every model's data uses.
 *
 * - Times are integer ticks, `TICKS_PER_QUARTER` (12) per quarter note.
 * - `toTonicC(piece)` moves every pitch and chord root down by the key's tonic (the mode stays),
 *   so the symbolic models see "G major" and "C major" alike (pitches clamped to 0..127).
 * - `splitOf(id)`: FNV-1a (32 bit) of the id's UTF-8 bytes mod 100: 0..79 train, 80..89
 *   validation (model selection), 90..99 test (held out: only the card's final metrics read it).
 *
 * ```ts
 * const pieces = readCorpus();                       // data/corpus.jsonl.gz, sorted by id
 * const train = pieces.filter((p) => splitOf(p.id) === "train");
 * const inC = toTonicC(train[0]);                    // key.tonic === 0
 * ```
 */

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { CadenzaError } from "../errors.ts";
import type { Mode } from "../music/emotion-map.ts";

export const TICKS_PER_QUARTER = 12;

/** The chord qualities the corpus script labels (data/SOURCES.md). */
export type CorpusQuality =
  | "maj"
  | "min"
  | "dom7"
  | "min7"
  | "maj7"
  | "dim"
  | "hdim7"
  | "dim7"
  | "aug"
  | "sus4";

export const CORPUS_QUALITIES: readonly CorpusQuality[] = [
  "maj",
  "min",
  "dom7",
  "min7",
  "maj7",
  "dim",
  "hdim7",
  "dim7",
  "aug",
  "sus4",
];

/** A melody event: MIDI pitch (-1 for a rest), onset and duration in ticks. */
export interface CorpusNote {
  pitch: number;
  onset: number;
  duration: number;
}

/** A chord label of a four-voice piece: onset and duration in ticks, root pitch class, quality. */
export interface CorpusChord {
  onset: number;
  duration: number;
  root: number;
  quality: CorpusQuality;
}

export interface CorpusPiece {
  /** "collection/file[#number]", unique; the split hashes it. */
  id: string;
  collection: string;
  title: string;
  /** The whole piece's key (tonic pitch class, C = 0). */
  key: { tonic: number; mode: Mode };
  /** [numerator, denominator]. */
  meter: [number, number];
  /** A metronome mark (quarter notes a minute) where the score has one. */
  tempoQpm: number | null;
  /** The tick of every bar line of the first part (a pickup bar starts at 0). */
  bars: number[];
  melody: CorpusNote[];
  /** Empty for single-line pieces. */
  chords: CorpusChord[];
  /** Dynamic marks where the score has them. */
  dynamics: { onset: number; mark: string }[];
}

export type SplitName = "train" | "validation" | "test";

/** The project's data/corpus.jsonl.gz. */
export function defaultCorpusPath(): string {
  return fileURLToPath(new URL("../../data/corpus.jsonl.gz", import.meta.url));
}

/** FNV-1a, 32 bit, of the UTF-8 bytes of `text`. */
export function fnv1a(text: string): number {
  const bytes = new TextEncoder().encode(text);
  let h = 0x811c9dc5;
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The split of a piece, from its id alone (the same on every run, runtime and machine). */
export function splitOf(id: string): SplitName {
  const bucket = fnv1a(id) % 100;
  return bucket < 80 ? "train" : bucket < 90 ? "validation" : "test";
}

function bad(source: string, line: number, message: string): CadenzaError {
  return new CadenzaError("E_FORMAT", `${source}: line ${line}: ${message}`);
}

function int(
  value: unknown,
  source: string,
  line: number,
  field: string,
  lo = -Infinity,
  hi = Infinity,
): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < lo || value > hi) {
    throw bad(
      source,
      line,
      `${field}: expected an integer in ${lo}..${hi}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function list(value: unknown, source: string, line: number, field: string): unknown[] {
  if (!Array.isArray(value)) {
    throw bad(
      source,
      line,
      `${field}: expected an array, got ${JSON.stringify(value)?.slice(0, 40)}`,
    );
  }
  return value;
}

/** One line of the corpus, checked field by field. */
export function parsePiece(text: string, source: string, line: number): CorpusPiece {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw bad(source, line, `not JSON (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== "object") throw bad(source, line, "expected an object");
  const id = raw.id;
  if (typeof id !== "string" || id === "") throw bad(source, line, "id: expected a string");
  const where = `${source} (${id})`;
  const collection = typeof raw.collection === "string" ? raw.collection : id.split("/")[0];
  const key = raw.key as { tonic?: unknown; mode?: unknown } | undefined;
  if (key === undefined || key === null || (key.mode !== "major" && key.mode !== "minor")) {
    throw bad(where, line, `key.mode: expected "major" or "minor"`);
  }
  const tonic = int(key.tonic, where, line, "key.tonic", 0, 11);
  const meterRaw = list(raw.meter, where, line, "meter");
  if (meterRaw.length !== 2) throw bad(where, line, "meter: expected [numerator, denominator]");
  const meter: [number, number] = [
    int(meterRaw[0], where, line, "meter[0]", 1, 64),
    int(meterRaw[1], where, line, "meter[1]", 1, 64),
  ];
  let tempoQpm: number | null = null;
  if (raw.tempo_qpm !== null && raw.tempo_qpm !== undefined) {
    if (typeof raw.tempo_qpm !== "number" || !(raw.tempo_qpm > 0) || raw.tempo_qpm > 1000) {
      throw bad(where, line, `tempo_qpm: expected null or a number in (0, 1000]`);
    }
    tempoQpm = raw.tempo_qpm;
  }
  const bars = list(raw.bars, where, line, "bars").map((b, i) =>
    int(b, where, line, `bars[${i}]`, 0)
  );
  const melody = list(raw.melody, where, line, "melody").map((m, i) => {
    const e = list(m, where, line, `melody[${i}]`);
    return {
      pitch: int(e[0], where, line, `melody[${i}][0] (pitch)`, -1, 127),
      onset: int(e[1], where, line, `melody[${i}][1] (onset)`, 0),
      duration: int(e[2], where, line, `melody[${i}][2] (duration)`, 0),
    };
  });
  const chords = list(raw.chords ?? [], where, line, "chords").map((c, i) => {
    const e = list(c, where, line, `chords[${i}]`);
    const quality = e[3];
    if (!(CORPUS_QUALITIES as readonly unknown[]).includes(quality)) {
      throw bad(where, line, `chords[${i}][3]: expected one of ${CORPUS_QUALITIES.join(", ")}`);
    }
    return {
      onset: int(e[0], where, line, `chords[${i}][0] (onset)`, 0),
      duration: int(e[1], where, line, `chords[${i}][1] (duration)`, 0),
      root: int(e[2], where, line, `chords[${i}][2] (root)`, 0, 11),
      quality: quality as CorpusQuality,
    };
  });
  const dynamics = list(raw.dynamics ?? [], where, line, "dynamics").map((d, i) => {
    const e = list(d, where, line, `dynamics[${i}]`);
    return { onset: int(e[0], where, line, `dynamics[${i}][0]`, 0), mark: String(e[1]) };
  });
  return {
    id,
    collection,
    title: typeof raw.title === "string" ? raw.title : "",
    key: { tonic, mode: key.mode },
    meter,
    tempoQpm,
    bars,
    melody,
    chords,
    dynamics,
  };
}

/** The pieces of a corpus file's bytes (gzip of JSON lines, or the plain lines). */
export function parseCorpus(bytes: Uint8Array, source: string): CorpusPiece[] {
  const gz = bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
  const text = new TextDecoder().decode(gz ? gunzipSync(bytes) : bytes);
  const pieces: CorpusPiece[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === "") continue;
    pieces.push(parsePiece(lines[i], source, i + 1));
  }
  if (pieces.length === 0) throw new CadenzaError("E_FORMAT", `${source}: no pieces`);
  return pieces;
}

/** Reads the corpus (data/corpus.jsonl.gz by default). */
export function readCorpus(path: string = defaultCorpusPath()): CorpusPiece[] {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new CadenzaError("E_IO", `${path}: cannot read the corpus (${(e as Error).message})`);
  }
  return parseCorpus(bytes, path);
}

/** The piece moved so that its tonic is C: pitches - tonic (clamped to 0..127), roots mod 12. */
export function toTonicC(piece: CorpusPiece): CorpusPiece {
  const t = piece.key.tonic;
  return {
    ...piece,
    key: { tonic: 0, mode: piece.key.mode },
    melody: piece.melody.map((n) => ({
      ...n,
      pitch: n.pitch < 0 ? -1 : Math.max(0, Math.min(127, n.pitch - t)),
    })),
    chords: piece.chords.map((c) => ({ ...c, root: (c.root - t + 12) % 12 })),
  };
}

/** The tick where the piece ends: its last bar line or note end, whichever is later. */
export function pieceEnd(piece: CorpusPiece): number {
  let end = piece.bars.length > 0 ? piece.bars[piece.bars.length - 1] : 0;
  for (const n of piece.melody) end = Math.max(end, n.onset + n.duration);
  return end;
}

/** The length of a full bar in ticks, from the meter. */
export function barTicks(meter: readonly [number, number]): number {
  return Math.round((meter[0] * 4 * TICKS_PER_QUARTER) / meter[1]);
}
