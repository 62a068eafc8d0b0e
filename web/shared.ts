/**
 * The demo's shared memory: one SharedArrayBuffer that the page, the engine Worker and the
 * AudioWorklet all map. The Worker decodes music ahead of the audio clock into an event ring;
 * the worklet (the real-time thread) plays the events when their frame comes and counts its
 * callbacks, frames and underruns; the page draws from both. Atomics order every hand-over: a
 * writer stores the entries first and then publishes the count with Atomics.store, a reader
 * loads the count with Atomics.load before it reads the entries. Nothing here waits or locks.
 */

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
  COUNT: 16,
});

/** Event ring capacity (a power of two); at most this many events are decoded ahead. */
export const RING = 4096;

/** Event kinds, as the decoder's (src/music/decode.ts): NOTE_OFF 0, NOTE_ON 1, CHORD 2. */
export const EVENT_NOTE_OFF = 0;
export const EVENT_NOTE_ON = 1;
export const EVENT_CHORD = 2;

export interface Shared {
  readonly buffer: SharedArrayBuffer;
  readonly control: Int32Array;
  /** RING pairs: [frame, kind | track << 4 | pitch << 8 | velocity << 16]. */
  readonly events: Int32Array;
}

export function createShared(): SharedArrayBuffer {
  return new SharedArrayBuffer((C.COUNT + 2 * RING) * 4);
}

export function mapShared(buffer: SharedArrayBuffer): Shared {
  return {
    buffer,
    control: new Int32Array(buffer, 0, C.COUNT),
    events: new Int32Array(buffer, C.COUNT * 4, 2 * RING),
  };
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
  | { type: "timing"; steps: number; p50us: number; maxUs: number }
  | { type: "error"; message: string };
