/**
 * The demo's shared memory: one SharedArrayBuffer that the page, the engine Worker and the
 * AudioWorklet all map. The Worker decodes music ahead of the audio clock into an event ring;
 * the worklet (the real-time thread) plays the events when their frame comes and counts its
 * callbacks, frames and underruns; the page draws from both. Atomics order every hand-over: a
 * writer stores the entries first and then publishes the count with Atomics.store, a reader
 * loads the count with Atomics.load before it reads the entries. Nothing here waits or locks.
 *
 * A change of emotion must be heard at once, though the ring already holds a lookahead of the
 * old music: the worker records a cut (a frame a moment ahead of the audio clock, and the ring
 * index where the new music begins) and appends the new piece, opening with an all-notes-off
 * at that frame. Every reader drops the events written before a cut's index that fall at or
 * after its frame (`superseded`), so the old music stops at the cut and the new one starts
 * there; the ring's order is time order again from the cut's index on.
 *
 * The worker's model-step times go into a latency histogram in the same memory, the real-time
 * engine's own (src/rt/histogram.ts), which the page reads without messages.
 */

import { HISTOGRAM_WORDS } from "../src/rt/histogram.ts";

/** Int32 control words (indices into `control`). */
export const C = Object.freeze({
  /** 0 stopped, 1 playing (the worker sets it once the first lookahead is decoded). */
  STATE: 0,
  /** AudioWorklet process() calls since playing began. */
  CALLBACKS: 1,
  /** Render quanta whose end lay past what the worker had decoded (the music ran dry). */
  UNDERRUNS: 2,
  /** Frames rendered since playing began: the audio clock. */
  FRAME: 3,
  /** The worker's music is complete up to this frame. */
  DECODED: 4,
  /** Events written to the ring (worker), and read from it (worklet). */
  WRITTEN: 5,
  READ: 6,
  /** Notes the worklet has started. */
  NOTES: 7,
  /** Events the worklet reached after their frame had passed (late, played at once). */
  LATE: 8,
  /** The loudest output sample so far, times 1e6 (the synth did make sound). */
  PEAK: 9,
  /** Model steps the worker has run. */
  STEPS: 10,
  /** The sample rate, set by the page. */
  SAMPLE_RATE: 11,
  /** Cuts recorded so far (the worker stores the cut's words first, then this count). */
  CUTS: 12,
  COUNT: 16,
});

/** The last cuts kept, [frame, ring index] each; enough for changes a lookahead apart. */
export const CUT_SLOTS = 16;

/** Event ring capacity (a power of two); at most this many events are decoded ahead. */
export const RING = 4096;

/** Event kinds, as the decoder's (src/music/decode.ts): NOTE_OFF 0, NOTE_ON 1, CHORD 2. */
export const EVENT_NOTE_OFF = 0;
export const EVENT_NOTE_ON = 1;
export const EVENT_CHORD = 2;
/** Not the decoder's: every sounding note ends (opens the music after a cut). */
export const EVENT_ALL_OFF = 3;

export interface Shared {
  readonly buffer: SharedArrayBuffer;
  readonly control: Int32Array;
  /** RING pairs: [frame, kind | track << 4 | pitch << 8 | velocity << 16]. */
  readonly events: Int32Array;
  /** CUT_SLOTS pairs [frame, ring index], slot = cut number % CUT_SLOTS. */
  readonly cuts: Int32Array;
  /** The model steps' latency histogram (src/rt/histogram.ts, at word 0). */
  readonly steps: Int32Array;
}

const CUTS_AT = C.COUNT + 2 * RING;
const STEPS_AT = CUTS_AT + 2 * CUT_SLOTS;

export function createShared(): SharedArrayBuffer {
  return new SharedArrayBuffer((STEPS_AT + HISTOGRAM_WORDS) * 4);
}

export function mapShared(buffer: SharedArrayBuffer): Shared {
  return {
    buffer,
    control: new Int32Array(buffer, 0, C.COUNT),
    events: new Int32Array(buffer, C.COUNT * 4, 2 * RING),
    cuts: new Int32Array(buffer, CUTS_AT * 4, 2 * CUT_SLOTS),
    steps: new Int32Array(buffer, STEPS_AT * 4, HISTOGRAM_WORDS),
  };
}

/** Records a cut at `frame` before ring index `index` (the worker; one writer). */
export function recordCut(shared: Shared, frame: number, index: number): void {
  const count = Atomics.load(shared.control, C.CUTS);
  const slot = (count % CUT_SLOTS) * 2;
  shared.cuts[slot] = frame;
  shared.cuts[slot + 1] = index;
  Atomics.store(shared.control, C.CUTS, count + 1);
}

/**
 * Whether the event at ring index `index`, due at `frame`, was superseded by a cut: written
 * before the cut's index and due at or after its frame. Allocates nothing.
 */
export function superseded(shared: Shared, index: number, frame: number): boolean {
  const count = Atomics.load(shared.control, C.CUTS);
  for (let k = Math.max(0, count - CUT_SLOTS); k < count; k++) {
    const slot = (k % CUT_SLOTS) * 2;
    if (index < shared.cuts[slot + 1] && frame >= shared.cuts[slot]) return true;
  }
  return false;
}

export function packEvent(kind: number, track: number, pitch: number, velocity: number): number {
  return kind | (track << 4) | (pitch << 8) | (velocity << 16);
}

export const eventKind = (packed: number): number => packed & 0xf;
export const eventTrack = (packed: number): number => (packed >> 4) & 0xf;
export const eventPitch = (packed: number): number => (packed >> 8) & 0xff;
export const eventVelocity = (packed: number): number => (packed >> 16) & 0xff;

/** Messages from the page to the worker. */
export type ToWorker =
  | { type: "init"; buffer: SharedArrayBuffer; wasm: string; models: string }
  | { type: "play"; emotion: string; seed: number }
  | { type: "stop" };

/** A piece (or a change of emotion) begins at `frame`, with these settings. */
export interface PieceInfo {
  type: "piece";
  emotion: string;
  frame: number;
  tempo: number;
  meter: [number, number];
  key: { tonic: number; mode: "major" | "minor" };
  /** Frames per bar. */
  barFrames: number;
  trained: boolean;
}

/** Messages from the worker to the page. */
export type FromWorker =
  | { type: "ready"; library: string; parameters: number; weightBytes: number; loadMs: number }
  | PieceInfo
  | { type: "error"; message: string };
