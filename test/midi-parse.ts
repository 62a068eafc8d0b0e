/**
 * A small Standard MIDI File reader for the tests, written from the SMF 1.0 layout and
 * independent of the libraries src/music uses: chunks, variable-length delta times, running
 * status, sysex, the meta events tempo (0x51), time signature (0x58), key signature (0x59),
 * track name (0x03) and text (0x01), and notes paired first-in first-out per channel and key.
 * It throws a plain Error on anything malformed; it is meant for files the code under test wrote
 * and for the CLI tests.
 */

export interface SmfNote {
  pitch: number;
  velocity: number;
  channel: number;
  /** Absolute ticks. */
  startTick: number;
  endTick: number;
}

export interface SmfTrack {
  name: string;
  texts: string[];
  /** Channels that carry channel events in this track, ascending. */
  channels: number[];
  /** The first program change per channel (channel -> program). */
  programs: Map<number, number>;
  notes: SmfNote[];
  /** Note-ons on a key of a channel that was still sounding (a writer should end it first). */
  overlaps: number;
  /** Absolute tick of the end-of-track event (or of the last event when it is missing). */
  endTick: number;
}

export interface SmfFile {
  format: number;
  /** Ticks per quarter note. */
  ppq: number;
  tracks: SmfTrack[];
  tempos: { tick: number; microsecondsPerQuarter: number; qpm: number }[];
  timeSignatures: { tick: number; numerator: number; denominator: number }[];
  keySignatures: { tick: number; sharps: number; minor: boolean }[];
  /** The latest end of any track, in ticks. */
  endTick: number;
}

class Reader {
  at = 0;
  constructor(readonly bytes: Uint8Array, readonly end: number, readonly what: string) {}

  u8(): number {
    if (this.at >= this.end) throw new Error(`${this.what}: ran past the end at byte ${this.at}`);
    return this.bytes[this.at++];
  }

  /** A variable-length quantity: at most four bytes of seven bits. */
  vlq(): number {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      const b = this.u8();
      value = value * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) return value;
    }
    throw new Error(`${this.what}: variable-length number longer than 4 bytes at ${this.at}`);
  }

  take(n: number): Uint8Array {
    if (this.at + n > this.end) throw new Error(`${this.what}: ${n} bytes past the end`);
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const be32 = (b: Uint8Array, at: number) =>
  ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
const id4 = (b: Uint8Array, at: number) =>
  String.fromCharCode(b[at], b[at + 1], b[at + 2], b[at + 3]);

function parseTrack(r: Reader, index: number, file: SmfFile): SmfTrack {
  const track: SmfTrack = {
    name: "",
    texts: [],
    channels: [],
    programs: new Map(),
    notes: [],
    overlaps: 0,
    endTick: 0,
  };
  const channels = new Set<number>();
  const open = new Map<number, { tick: number; velocity: number }[]>();
  let tick = 0;
  let status = 0;
  let ended = false;
  while (r.at < r.end && !ended) {
    tick += r.vlq();
    let first = r.u8();
    if (first >= 0x80) {
      if (first < 0xf0) status = first;
    } else if (status === 0) {
      throw new Error(`track ${index}: running status with no status byte at ${r.at - 1}`);
    }
    const kind = first >= 0x80 ? first : status;
    if (first >= 0x80 && first < 0xf0) first = r.u8(); // first data byte
    if (kind === 0xff) {
      const type = r.u8();
      const body = r.take(r.vlq());
      if (type === 0x03 && track.name === "") track.name = text(body);
      else if (type === 0x01) track.texts.push(text(body));
      else if (type === 0x51) {
        if (body.length !== 3) throw new Error(`track ${index}: tempo of ${body.length} bytes`);
        const us = (body[0] << 16) | (body[1] << 8) | body[2];
        file.tempos.push({ tick, microsecondsPerQuarter: us, qpm: 60e6 / us });
      } else if (type === 0x58) {
        file.timeSignatures.push({ tick, numerator: body[0], denominator: 2 ** body[1] });
      } else if (type === 0x59) {
        const sharps = body[0] > 127 ? body[0] - 256 : body[0];
        file.keySignatures.push({ tick, sharps, minor: body[1] === 1 });
      } else if (type === 0x2f) ended = true;
      continue;
    }
    if (kind === 0xf0 || kind === 0xf7) {
      r.take(r.vlq());
      continue;
    }
    if (kind > 0xf0) {
      throw new Error(`track ${index}: system message 0x${kind.toString(16)} in a file`);
    }
    const channel = kind & 0x0f;
    const type = kind >> 4;
    channels.add(channel);
    const data1 = first;
    const data2 = type === 0xc || type === 0xd ? 0 : r.u8();
    const key = channel * 128 + data1;
    if (type === 0x9 && data2 > 0) {
      const stack = open.get(key) ?? [];
      if (stack.length > 0) track.overlaps++;
      stack.push({ tick, velocity: data2 });
      open.set(key, stack);
    } else if (type === 0x8 || type === 0x9) {
      const on = open.get(key)?.shift();
      if (on !== undefined) {
        track.notes.push({
          pitch: data1,
          velocity: on.velocity,
          channel,
          startTick: on.tick,
          endTick: tick,
        });
      }
    } else if (type === 0xc && !track.programs.has(channel)) track.programs.set(channel, data1);
  }
  const dangling = [...open.values()].reduce((n, s) => n + s.length, 0);
  if (dangling > 0) throw new Error(`track ${index}: ${dangling} notes never end`);
  track.endTick = tick;
  track.channels = [...channels].sort((a, b) => a - b);
  track.notes.sort((a, b) => a.startTick - b.startTick || a.pitch - b.pitch);
  return track;
}

/** Parses a whole file; throws on a malformed one. */
export function parseSmf(bytes: Uint8Array): SmfFile {
  if (bytes.length < 14 || id4(bytes, 0) !== "MThd") throw new Error("no MThd header");
  const header_length = be32(bytes, 4);
  const format = (bytes[8] << 8) | bytes[9];
  const count = (bytes[10] << 8) | bytes[11];
  const division = (bytes[12] << 8) | bytes[13];
  if (division & 0x8000) throw new Error("SMPTE time division is not handled by this reader");
  const file: SmfFile = {
    format,
    ppq: division,
    tracks: [],
    tempos: [],
    timeSignatures: [],
    keySignatures: [],
    endTick: 0,
  };
  let at = 8 + header_length;
  while (at < bytes.length) {
    if (at + 8 > bytes.length) throw new Error(`truncated chunk header at ${at}`);
    const length = be32(bytes, at + 4);
    const end = at + 8 + length;
    if (end > bytes.length) throw new Error(`chunk at ${at} runs past the end`);
    if (id4(bytes, at) === "MTrk") {
      const index = file.tracks.length;
      const r = new Reader(bytes, end, `track ${index}`);
      r.at = at + 8;
      file.tracks.push(parseTrack(r, index, file));
    }
    at = end;
  }
  if (file.tracks.length !== count) {
    throw new Error(`header declares ${count} tracks, found ${file.tracks.length}`);
  }
  file.endTick = Math.max(0, ...file.tracks.map((t) => t.endTick));
  return file;
}
