/**
 * The demo page: starts the engine Worker (web/worker.ts) and the AudioWorklet (web/worklet.ts)
 * over one SharedArrayBuffer (web/shared.ts), lets the user pick an emotion, and draws the
 * piano roll as the music plays, from the same event ring the worklet plays and the worklet's
 * own clock. `window.cadenzaDemo` is what the browser test drives.
 */

import { chordSymbol, keyName } from "../src/music/chords.ts";
import { EMOTION_NAMES } from "../src/music/emotion-map.ts";
import { histogramSummary } from "../src/rt/histogram.ts";
import {
  C,
  createShared,
  EVENT_ALL_OFF,
  EVENT_CHORD,
  EVENT_NOTE_ON,
  eventKind,
  eventPitch,
  eventTrack,
  eventVelocity,
  type FromWorker,
  mapShared,
  type PieceInfo,
  RING,
  superseded,
  type ToWorker,
} from "./shared.ts";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $<HTMLElement>("status");
const stats = $<HTMLElement>("stats");
const canvas = $<HTMLCanvasElement>("roll");
const buttons = $<HTMLElement>("emotions");

function fail(message: string): void {
  status.textContent = `error: ${message}`;
  status.className = "error";
  demo.error = message;
}

interface DrawnNote {
  track: number;
  pitch: number;
  velocity: number;
  start: number;
  end: number;
}

const demo = {
  error: null as string | null,
  ready: false,
  library: "",
  emotion: null as string | null,
  pieces: [] as PieceInfo[],
  /** Starts (or changes) the music: what the emotion buttons do. */
  play: async (_emotion: string) => {},
  /** What the worklet and the worker report, read from the shared memory. */
  stats: () => readStats(),
};
(globalThis as unknown as { cadenzaDemo: typeof demo }).cadenzaDemo = demo;

if (!globalThis.crossOriginIsolated) {
  fail("the page is not cross-origin isolated (COOP/COEP headers), so SharedArrayBuffer is off");
  throw new Error(demo.error!);
}

const buffer = createShared();
const shared = mapShared(buffer);
const audio = new AudioContext({ latencyHint: "interactive" });
Atomics.store(shared.control, C.SAMPLE_RATE, audio.sampleRate);
const rate = audio.sampleRate;

const worker = new Worker("dist/worker.js", { type: "module" });
const send = (message: ToWorker) => worker.postMessage(message);
let node: AudioWorkletNode | null = null;

worker.onmessage = (event: MessageEvent<FromWorker>) => {
  const m = event.data;
  if (m.type === "ready") {
    demo.ready = true;
    demo.library = m.library;
    status.textContent = `ready: five models, ${m.parameters.toLocaleString()} parameters ` +
      `(${(m.weightBytes / 1e6).toFixed(2)} MB) on WebAssembly (${m.library}), loaded in ` +
      `${m.loadMs.toFixed(0)} ms. Pick an emotion.`;
    for (const b of buttons.querySelectorAll("button")) b.disabled = false;
  } else if (m.type === "piece") {
    demo.pieces.push(m);
  } else fail(m.message);
};
worker.onerror = (event) => fail(`worker: ${event.message}`);
// Absolute URLs: the worker resolves relative ones against its own script (dist/).
const here = (path: string) => new URL(path, location.href).href;
send({ type: "init", buffer, wasm: here("wasm/cadenza_fast.wasm"), models: here("models") });

demo.play = async (emotion: string) => {
  if (!demo.ready) throw new Error("the models are still loading");
  if (node === null) {
    await audio.audioWorklet.addModule("dist/worklet.js");
    node = new AudioWorkletNode(audio, "cadenza-synth", {
      numberOfInputs: 0,
      outputChannelCount: [2],
      processorOptions: { buffer },
    });
    node.connect(audio.destination);
  }
  await audio.resume();
  demo.emotion = emotion;
  status.textContent = status.textContent!.replace(/ Pick an emotion\.$| Playing \w+\.$/, "") +
    ` Playing ${emotion}.`;
  for (const b of buttons.querySelectorAll("button")) {
    b.classList.toggle("on", b.dataset.emotion === emotion);
  }
  send({ type: "play", emotion, seed: 7 });
};

for (const name of EMOTION_NAMES) {
  const b = document.createElement("button");
  b.textContent = name;
  b.dataset.emotion = name;
  b.disabled = true;
  b.onclick = () => demo.play(name).catch((err) => fail(String(err)));
  buttons.append(b);
}

// The notes and chords drawn, gathered from the ring (the page reads behind the worklet).
const notes: DrawnNote[] = [];
const open = new Map<number, DrawnNote>();
const chords: { frame: number; symbol: string }[] = [];
let seen = 0;

function gather(): void {
  const written = Atomics.load(shared.control, C.WRITTEN);
  if (written - seen > RING) seen = written - RING;
  for (; seen < written; seen++) {
    const at = (seen % RING) * 2;
    const frame = shared.events[at];
    const packed = shared.events[at + 1];
    const kind = eventKind(packed);
    const track = eventTrack(packed);
    const pitch = eventPitch(packed);
    const id = track * 256 + pitch;
    if (superseded(shared, seen, frame)) continue;
    if (kind === EVENT_ALL_OFF) {
      // A change of emotion: what was gathered of the old music past the cut goes.
      for (const note of open.values()) note.end = frame;
      open.clear();
      dropAfter(frame);
    } else if (kind === EVENT_CHORD) {
      const piece = demo.pieces.findLast((p) => p.frame <= frame) ?? demo.pieces.at(-1);
      if (piece !== undefined) chords.push({ frame, symbol: chordSymbol(pitch, piece.key) });
    } else if (kind === EVENT_NOTE_ON) {
      const note = { track, pitch, velocity: eventVelocity(packed), start: frame, end: -1 };
      notes.push(note);
      open.set(id, note);
    } else {
      const note = open.get(id);
      if (note !== undefined) note.end = frame;
      open.delete(id);
    }
  }
}

/** Drops the notes and chords gathered that start at or after `frame`; ends the rest there. */
function dropAfter(frame: number): void {
  let kept = 0;
  for (const note of notes) {
    if (note.start >= frame) continue;
    if (note.end > frame) note.end = frame;
    notes[kept++] = note;
  }
  notes.length = kept;
  let chordsKept = 0;
  for (const chord of chords) if (chord.frame < frame) chords[chordsKept++] = chord;
  chords.length = chordsKept;
}

const COLORS = ["#f2a541", "#4aa3df"];
const LOW = 36;
const HIGH = 96;
const BEFORE_S = 6;
const AFTER_S = 1.5;

/** Whole bars played, over every piece so far (each has its own bar length). */
function barsPlayed(frame: number): number {
  let bars = 0;
  demo.pieces.forEach((piece, i) => {
    const end = Math.min(frame, demo.pieces[i + 1]?.frame ?? Infinity);
    if (end > piece.frame) bars += Math.floor((end - piece.frame) / piece.barFrames);
  });
  return bars;
}

function draw(): void {
  gather();
  const g = canvas.getContext("2d")!;
  const w = canvas.width;
  const h = canvas.height;
  const top = 22;
  g.fillStyle = "#14161c";
  g.fillRect(0, 0, w, h);
  const now = Atomics.load(shared.control, C.FRAME);
  const from = now - BEFORE_S * rate;
  const span = (BEFORE_S + AFTER_S) * rate;
  const x = (frame: number) => ((frame - from) / span) * w;
  const rowH = (h - top) / (HIGH - LOW + 1);
  const y = (pitch: number) => top + (HIGH - pitch) * rowH;
  // Octave lines (C) and bar lines of every piece.
  g.strokeStyle = "#262a33";
  for (let p = LOW; p <= HIGH; p++) {
    if (p % 12 !== 0) continue;
    g.beginPath();
    g.moveTo(0, y(p) + rowH);
    g.lineTo(w, y(p) + rowH);
    g.stroke();
  }
  demo.pieces.forEach((piece, i) => {
    const next = demo.pieces[i + 1]?.frame ?? Infinity;
    g.strokeStyle = "#3a404d";
    for (let bar = piece.frame; bar < Math.min(next, from + span); bar += piece.barFrames) {
      if (bar < from) continue;
      g.beginPath();
      g.moveTo(x(bar), top);
      g.lineTo(x(bar), h);
      g.stroke();
    }
  });
  for (const note of notes) {
    const end = note.end < 0 ? now + AFTER_S * rate : note.end;
    if (end < from || note.start > from + span) continue;
    g.globalAlpha = note.start > now ? 0.35 : 0.45 + 0.55 * (note.velocity / 127);
    g.fillStyle = COLORS[note.track] ?? "#aaa";
    g.fillRect(x(note.start), y(note.pitch), Math.max(2, x(end) - x(note.start) - 1), rowH - 1);
  }
  g.globalAlpha = 1;
  g.fillStyle = "#c9d1d9";
  g.font = "13px sans-serif";
  for (const chord of chords) {
    if (chord.frame < from || chord.frame > from + span) continue;
    g.fillText(chord.symbol, x(chord.frame) + 3, 15);
  }
  g.strokeStyle = "#e6edf3";
  g.beginPath();
  g.moveTo(x(now), 0);
  g.lineTo(x(now), h);
  g.stroke();
  const s = demo.stats();
  stats.textContent = `AudioWorklet callbacks ${s.callbacks}, underruns ${s.underruns}, late ` +
    `events ${s.late}, notes ${s.notes}, bars ${s.bars}; model steps ${s.steps} on wasm ` +
    `(p50 ${s.stepP50us.toFixed(0)} us, p99 ${s.stepP99us.toFixed(0)} us)` +
    (demo.pieces.length > 0 ? `; ${describePiece(demo.pieces.at(-1)!)}` : "");
  requestAnimationFrame(draw);
}

function describePiece(piece: PieceInfo): string {
  return `${piece.emotion}: ${Math.round(piece.tempo)} bpm, ${piece.meter.join("/")}, ` +
    keyName(piece.key) +
    (piece.trained ? "" : " (UNTRAINED models)");
}

function readStats() {
  const c = shared.control;
  const frame = Atomics.load(c, C.FRAME);
  const steps = histogramSummary(shared.steps, 0);
  return {
    playing: Atomics.load(c, C.STATE) === 1,
    callbacks: Atomics.load(c, C.CALLBACKS),
    underruns: Atomics.load(c, C.UNDERRUNS),
    late: Atomics.load(c, C.LATE),
    frames: frame,
    seconds: frame / rate,
    bars: barsPlayed(frame),
    notes: Atomics.load(c, C.NOTES),
    peak: Atomics.load(c, C.PEAK) / 1e6,
    steps: Atomics.load(c, C.STEPS),
    stepP50us: steps.p50Us,
    stepP99us: steps.p99Us,
    sampleRate: rate,
    audioState: audio.state,
    library: demo.library,
    emotion: demo.emotion,
    pieces: demo.pieces.map((p) => ({
      emotion: p.emotion,
      frame: p.frame,
      barFrames: p.barFrames,
    })),
  };
}

requestAnimationFrame(draw);
