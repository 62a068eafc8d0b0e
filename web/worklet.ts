/**
 * The demo's real-time thread: an AudioWorkletProcessor. Each render quantum (128 frames) it
 * takes the events whose frame has come from the shared ring (web/shared.ts), plays them on a
 * small synthesiser (sine-and-triangle voices with an envelope: melody brighter, chords
 * softer), and advances the audio clock the engine Worker decodes ahead of. It counts its
 * callbacks and its underruns (a quantum that ends past what the Worker has decoded) where the
 * page and the test read them. It never waits, locks or allocates after construction.
 */

import {
  C,
  EVENT_ALL_OFF,
  EVENT_NOTE_OFF,
  EVENT_NOTE_ON,
  eventKind,
  eventPitch,
  eventTrack,
  eventVelocity,
  mapShared,
  RING,
  type Shared,
  superseded,
} from "./shared.ts";

// The AudioWorkletGlobalScope's names (not in TypeScript's DOM library).
declare const sampleRate: number;
declare function registerProcessor(name: string, processor: unknown): void;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: unknown);
}

const VOICES = 32;
const ATTACK_S = 0.004;
const RELEASE_S = 0.18;
/** Per track: [level, decay time constant in s, triangle share]. */
const TIMBRE = [
  [0.16, 1.2, 0.55], // melody
  [0.07, 2.5, 0.15], // chords
];

class CadenzaSynth extends AudioWorkletProcessor {
  readonly #shared: Shared;
  readonly #pitch = new Int32Array(VOICES).fill(-1);
  readonly #track = new Int32Array(VOICES);
  readonly #phase = new Float64Array(VOICES);
  readonly #step = new Float64Array(VOICES);
  readonly #level = new Float64Array(VOICES);
  readonly #env = new Float64Array(VOICES);
  /** 1 attack/sustain, 2 released, 0 free. */
  readonly #stage = new Uint8Array(VOICES);
  readonly #age = new Float64Array(VOICES);
  #peak = 0;

  constructor(options: { processorOptions: { buffer: SharedArrayBuffer } }) {
    super();
    this.#shared = mapShared(options.processorOptions.buffer);
  }

  #noteOn(track: number, pitch: number, velocity: number): void {
    let v = this.#stage.indexOf(0);
    if (v < 0) {
      // Steal the oldest voice.
      v = 0;
      for (let i = 1; i < VOICES; i++) if (this.#age[i] > this.#age[v]) v = i;
    }
    this.#pitch[v] = pitch;
    this.#track[v] = track;
    this.#phase[v] = 0;
    this.#step[v] = (440 * 2 ** ((pitch - 69) / 12)) / sampleRate;
    this.#level[v] = TIMBRE[track > 1 ? 1 : track][0] * (velocity / 127);
    this.#env[v] = 0;
    this.#stage[v] = 1;
    this.#age[v] = 0;
    Atomics.add(this.#shared.control, C.NOTES, 1);
  }

  #noteOff(track: number, pitch: number): void {
    for (let v = 0; v < VOICES; v++) {
      if (this.#stage[v] === 1 && this.#pitch[v] === pitch && this.#track[v] === track) {
        this.#stage[v] = 2;
      }
    }
  }

  #allOff(): void {
    for (let v = 0; v < VOICES; v++) if (this.#stage[v] === 1) this.#stage[v] = 2;
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const { control, events } = this.#shared;
    const out = outputs[0];
    const left = out[0];
    const n = left.length;
    left.fill(0);
    if (Atomics.load(control, C.STATE) !== 1) {
      for (let c = 1; c < out.length; c++) out[c].fill(0);
      return true;
    }
    const frame = Atomics.load(control, C.FRAME);
    const end = frame + n;
    Atomics.add(control, C.CALLBACKS, 1);
    if (Atomics.load(control, C.DECODED) < end) Atomics.add(control, C.UNDERRUNS, 1);
    // The events due in this quantum, in the ring's order (time order, but for what a change
    // of emotion superseded: dropped).
    const written = Atomics.load(control, C.WRITTEN);
    let read = Atomics.load(control, C.READ);
    while (read < written) {
      const at = (read % RING) * 2;
      const due = events[at];
      if (superseded(this.#shared, read, due)) {
        read++;
        continue;
      }
      if (due >= end) break;
      if (due < frame) Atomics.add(control, C.LATE, 1);
      const packed = events[at + 1];
      const kind = eventKind(packed);
      if (kind === EVENT_NOTE_ON) {
        this.#noteOn(eventTrack(packed), eventPitch(packed), eventVelocity(packed));
      } else if (kind === EVENT_NOTE_OFF) this.#noteOff(eventTrack(packed), eventPitch(packed));
      else if (kind === EVENT_ALL_OFF) this.#allOff();
      read++;
    }
    Atomics.store(control, C.READ, read);
    this.#render(left, n);
    for (let c = 1; c < out.length; c++) out[c].set(left);
    Atomics.store(control, C.FRAME, end);
    return true;
  }

  #render(into: Float32Array, n: number): void {
    const dt = 1 / sampleRate;
    const attack = dt / ATTACK_S;
    const release = Math.exp(-dt / (RELEASE_S / 5));
    for (let v = 0; v < VOICES; v++) {
      const stage = this.#stage[v];
      if (stage === 0) continue;
      const timbre = TIMBRE[this.#track[v] > 1 ? 1 : this.#track[v]];
      const decay = Math.exp(-dt / timbre[1]);
      const tri = timbre[2];
      let phase = this.#phase[v];
      let env = this.#env[v];
      const step = this.#step[v];
      const level = this.#level[v];
      let attacking = stage === 1 && this.#age[v] < ATTACK_S;
      for (let i = 0; i < n; i++) {
        if (stage === 2) env *= release;
        else if (attacking) {
          env += attack;
          if (env >= 1) {
            env = 1;
            attacking = false;
          }
        } else env *= decay;
        const sine = Math.sin(2 * Math.PI * phase);
        const triangle = 4 * Math.abs(phase - 0.5) - 1;
        into[i] += level * env * ((1 - tri) * sine + tri * triangle);
        phase += step;
        if (phase >= 1) phase -= 1;
      }
      this.#phase[v] = phase;
      this.#env[v] = env;
      this.#age[v] += n * dt;
      if (stage === 2 && env < 1e-4) this.#stage[v] = 0;
    }
    let peak = this.#peak;
    for (let i = 0; i < n; i++) {
      const a = Math.abs(into[i]);
      if (a > peak) peak = a;
    }
    if (peak > this.#peak) {
      this.#peak = peak;
      Atomics.store(this.#shared.control, C.PEAK, Math.round(peak * 1e6));
    }
  }
}

registerProcessor("cadenza-synth", CadenzaSynth);
