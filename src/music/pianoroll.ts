/**
 * Piano-roll pictures of a NoteSequence: an SVG built here, rasterised to PNG by resvg.
 *
 * Notes are bars coloured by part (drums in a lane of their own), with a pitch axis labelled at
 * every C, bar and beat lines, bar numbers, chord symbols above the bars, a legend and a title
 * line (title, emotion, key, tempo, meter, length and whether the models were trained, from
 * `seq.meta`). The width follows the piece: `pixelsPerQuarter` per quarter note, reduced so the
 * picture stays within `maxWidth`.
 *
 * ```ts
 * const png = renderPianoRoll(seq, { chords: [{ time: 0, symbol: "Am" }, { time: 2, symbol: "F" }] });
 * ```
 */

import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import type { Resvg as ResvgClass } from "@resvg/resvg-js";
import { CadenzaError } from "../errors.ts";
import {
  barTimes,
  instrumentsOf,
  keyName,
  type NoteSequence,
  pitchName,
  quartersPerBar,
  type TimeMap,
  timeMap,
  timeSignatureAt,
  totalBars,
  validateSequence,
} from "./sequence.ts";

/** A chord symbol drawn above the bars from `time` (seconds) on. */
export interface ChordMark {
  time: number;
  symbol: string;
}

export interface PianoRollOptions {
  /** Chord symbols to print above the bars (e.g. the decoder's chords). */
  chords?: readonly ChordMark[];
  /** Replaces the title (default: `seq.meta.title`, else "cadenza"). */
  title?: string;
  /** Horizontal scale (default 36 px per quarter note: 144 px per 4/4 bar). */
  pixelsPerQuarter?: number;
  /** The widest picture drawn, in pixels (default 4000); longer pieces are squeezed to fit. */
  maxWidth?: number;
  /** Height of one semitone row in pixels (default: 7, less for wide ranges). */
  rowHeight?: number;
  /** Extra font files (TTF/OTF) for the text; system fonts are used too. */
  fontFiles?: readonly string[];
  /** false: only `fontFiles` (no system fonts). With no font at all the text is left out. */
  systemFonts?: boolean;
}

// Colours: one per part in instrument order, drums always grey. Chosen to stay apart for the
// usual colour-vision deficiencies (Okabe-Ito hues).
const PART_COLOURS = ["#d55e00", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#a0522d"];
const DRUM_COLOUR = "#5f6b73";
const FONT_STACK = "'DejaVu Sans', 'Liberation Sans', Arial, Helvetica, sans-serif";
const DEFAULT_FONTS = [
  "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
  "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
  "/usr/share/fonts/TTF/DejaVuSans.ttf",
  "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
  "/Library/Fonts/Arial.ttf",
  "C:\\Windows\\Fonts\\arial.ttf",
];

const MARGIN_LEFT = 52;
const MARGIN_RIGHT = 16;
const HEADER = 64; // title and legend
const CHORD_STRIP = 22;
const BAR_NUMBERS = 14;
const FOOT = 14;
const MIN_PLOT_WIDTH = 240;
const MAX_BARS_DRAWN = 4096;

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fmt(x: number): string {
  return (Math.round(x * 100) / 100).toString();
}

type Attrs = Record<string, string | number>;

/** One SVG element: numbers rounded to 0.01 px, attribute values and text escaped. */
function el(tag: string, attrs: Attrs, text?: string): string {
  const list = Object.entries(attrs).map(([k, v]) =>
    `${k}="${typeof v === "number" ? fmt(v) : escapeXml(v)}"`
  );
  const open = `<${tag} ${list.join(" ")}`;
  return text === undefined ? `${open}/>` : `${open}>${escapeXml(text)}</${tag}>`;
}

const line = (x1: number, y1: number, x2: number, y2: number, stroke: string) =>
  el("line", { x1, y1, x2, y2, stroke, "stroke-width": 1 });

interface Layout {
  width: number;
  height: number;
  plotLeft: number;
  plotTop: number;
  plotWidth: number;
  rollHeight: number;
  drumTop: number;
  drumRows: number[];
  lowPitch: number;
  highPitch: number;
  row: number;
  map: TimeMap;
  x: (seconds: number) => number;
}

function checkOptions(options: PianoRollOptions): void {
  const positive = (name: string, value: number | undefined, hi: number) => {
    if (value !== undefined && !(Number.isFinite(value) && value > 0 && value <= hi)) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `renderPianoRoll: ${name} is ${value}; expected 0 < value <= ${hi}`,
      );
    }
  };
  positive("pixelsPerQuarter", options.pixelsPerQuarter, 1000);
  positive("maxWidth", options.maxWidth, 32000);
  positive("rowHeight", options.rowHeight, 64);
  (options.chords ?? []).forEach((c, i) => {
    if (!(Number.isFinite(c.time) && c.time >= 0) || typeof c.symbol !== "string") {
      throw new CadenzaError(
        "E_ARGUMENT",
        `renderPianoRoll: chords[${i}] is ${
          JSON.stringify(c)
        }; expected {time: seconds >= 0, symbol: string}`,
      );
    }
  });
}

function layout(seq: NoteSequence, options: PianoRollOptions): Layout {
  let low = 128;
  let high = -1;
  for (const n of seq.notes) {
    if (n.isDrum) continue;
    low = Math.min(low, n.pitch);
    high = Math.max(high, n.pitch);
  }
  if (high < 0) [low, high] = [60, 72];
  // Whole octaves from C to B around the notes, with a little air.
  const low_pitch = Math.floor(low / 12) * 12;
  const high_pitch = Math.min(127, Math.ceil((high + 1) / 12) * 12 - 1);
  const span = high_pitch - low_pitch + 1;
  const row = options.rowHeight ?? Math.max(3, Math.min(7, Math.floor(420 / span)));
  const drum_rows = [...new Set(seq.notes.filter((n) => n.isDrum).map((n) => n.pitch))].sort((
    a,
    b,
  ) => a - b);
  const map = timeMap(seq);
  const quarters = Math.max(map.toQuarters(seq.totalTime), 1);
  const max_width = options.maxWidth ?? 4000;
  const wanted = quarters * (options.pixelsPerQuarter ?? 36);
  const plot_width = Math.max(
    MIN_PLOT_WIDTH,
    Math.min(wanted, max_width - MARGIN_LEFT - MARGIN_RIGHT),
  );
  const px_per_quarter = plot_width / quarters;
  const plot_top = HEADER + CHORD_STRIP + BAR_NUMBERS;
  const roll_height = span * row;
  const drum_top = plot_top + roll_height + (drum_rows.length > 0 ? 12 : 0);
  const drum_height = drum_rows.length * Math.max(row + 1, 8);
  return {
    width: Math.ceil(MARGIN_LEFT + plot_width + MARGIN_RIGHT),
    height: Math.ceil(drum_top + drum_height + FOOT),
    plotLeft: MARGIN_LEFT,
    plotTop: plot_top,
    plotWidth: plot_width,
    rollHeight: roll_height,
    drumTop: drum_top,
    drumRows: drum_rows,
    lowPitch: low_pitch,
    highPitch: high_pitch,
    row,
    map,
    x: (seconds) => MARGIN_LEFT + map.toQuarters(seconds) * px_per_quarter,
  };
}

function drumRow(l: Layout): number {
  return Math.max(l.row + 1, 8);
}

function titleLine(seq: NoteSequence, options: PianoRollOptions): string {
  const meta = seq.meta ?? {};
  const parts: string[] = [options.title ?? meta.title ?? "cadenza"];
  if (meta.emotion !== undefined) parts.push(meta.emotion);
  if (seq.keySignatures.length > 0) parts.push(keyName(seq.keySignatures[0]));
  if (seq.tempos.length > 0) parts.push(`${fmt(seq.tempos[0].qpm)} bpm`);
  const ts = timeSignatureAt(seq, 0);
  parts.push(`${ts.numerator}/${ts.denominator}`);
  parts.push(`${fmt(totalBars(seq))} bars`);
  if (meta.trained === "false") parts.push("untrained models (random weights)");
  else if (meta.trained === "true") parts.push("trained models");
  if (meta.seed !== undefined) parts.push(`seed ${meta.seed}`);
  return parts.join("  ·  ");
}

function grid(seq: NoteSequence, l: Layout, out: string[]): void {
  const right = l.plotLeft + l.plotWidth;
  // Rows: black keys shaded, a line under every C, its name on the axis.
  for (let p = l.lowPitch; p <= l.highPitch; p++) {
    const y = l.plotTop + (l.highPitch - p) * l.row;
    if ([1, 3, 6, 8, 10].includes(p % 12)) {
      out.push(
        el("rect", { x: l.plotLeft, y, width: l.plotWidth, height: l.row, fill: "#f1f3f5" }),
      );
    }
    if (p % 12 === 0) {
      const base = y + l.row;
      out.push(line(l.plotLeft, base, right, base, "#c9ced4"));
      const label = { x: l.plotLeft - 6, y: base - 1, "font-size": 10, "text-anchor": "end" };
      out.push(el("text", { ...label, fill: "#495057" }, pitchName(p)));
    }
  }
  const drum_height = l.drumRows.length * drumRow(l);
  if (drum_height > 0) {
    const lane = { x: l.plotLeft, y: l.drumTop, width: l.plotWidth, height: drum_height };
    out.push(el("rect", { ...lane, fill: "#f8f9fa", stroke: "#adb5bd", "stroke-width": 1 }));
  }
  const bottom = drum_height > 0 ? l.drumTop + drum_height : l.plotTop + l.rollHeight;
  const top = l.plotTop - BAR_NUMBERS - CHORD_STRIP + 4;
  const bars = barTimes(seq).slice(0, MAX_BARS_DRAWN);
  const px_per_bar = bars.length > 1 ? l.x(bars[1]) - l.x(bars[0]) : l.plotWidth;
  // Bar lines at least 10 px apart and numbers at least 28 px apart, every 1, 2, 4, 8... bars.
  const spacing = (px: number) => 2 ** Math.max(0, Math.ceil(Math.log2(px / px_per_bar)));
  const line_every = spacing(10);
  const number_every = Math.max(line_every, spacing(28));
  bars.forEach((t, i) => {
    const ts = timeSignatureAt(seq, t);
    // Beat lines, where there is room for them.
    const beat_q = 4 / ts.denominator;
    const q0 = l.map.toQuarters(t);
    if ((px_per_bar * beat_q) / quartersPerBar(ts) >= 8) {
      for (let b = 1; b < ts.numerator; b++) {
        const x = l.x(l.map.toSeconds(q0 + b * beat_q));
        out.push(line(x, l.plotTop, x, bottom, "#e3e6ea"));
      }
    }
    if (i % line_every === 0) out.push(line(l.x(t), top, l.x(t), bottom, "#868e96"));
    if (i % number_every === 0) {
      const at = { x: l.x(t) + 3, y: l.plotTop - 3, "font-size": 9, fill: "#868e96" };
      out.push(el("text", at, String(i + 1)));
    }
  });
  out.push(line(right, top, right, bottom, "#868e96"));
  const frame = { x: l.plotLeft, y: l.plotTop, width: l.plotWidth, height: l.rollHeight };
  out.push(el("rect", { ...frame, fill: "none", stroke: "#adb5bd", "stroke-width": 1 }));
}

function chordStrip(
  chords: readonly ChordMark[],
  seq: NoteSequence,
  l: Layout,
  out: string[],
): void {
  const y = l.plotTop - BAR_NUMBERS - 6;
  const sorted = [...chords].filter((c) => c.time < seq.totalTime).sort((a, b) => a.time - b.time);
  let last_end = -Infinity;
  let last_symbol = "";
  for (const chord of sorted) {
    const x = l.x(chord.time) + 4;
    // Skip a chord that repeats the last one or would overprint it (about 8 px a character).
    if (chord.symbol === last_symbol || x < last_end) continue;
    const at = { x, y, "font-size": 13, "font-weight": "bold", fill: "#212529" };
    out.push(el("text", at, chord.symbol));
    last_end = x + chord.symbol.length * 8 + 4;
    last_symbol = chord.symbol;
  }
}

function notes(seq: NoteSequence, l: Layout, colour: Map<number, string>, out: string[]): void {
  const drum_row = drumRow(l);
  for (const n of seq.notes) {
    const x = l.x(n.startTime);
    const y = n.isDrum
      ? l.drumTop + l.drumRows.indexOf(n.pitch) * drum_row + 1
      : l.plotTop + (l.highPitch - n.pitch) * l.row + 0.5;
    const fill = colour.get(n.instrument) ?? DRUM_COLOUR;
    out.push(el("rect", {
      x,
      y,
      width: Math.max(1.5, l.x(n.endTime) - x - 1),
      height: (n.isDrum ? drum_row : l.row) - 1.5,
      rx: 1.5,
      fill,
      "fill-opacity": 0.45 + (0.55 * n.velocity) / 127,
      stroke: fill,
      "stroke-width": 0.6,
    }));
  }
  if (l.drumRows.length > 0) {
    const y = l.drumTop + (l.drumRows.length * drum_row) / 2 + 4;
    const at = { x: l.plotLeft - 6, y, "font-size": 10, "text-anchor": "end", fill: "#495057" };
    out.push(el("text", at, "drums"));
  }
}

function header(
  seq: NoteSequence,
  options: PianoRollOptions,
  colour: Map<number, string>,
  out: string[],
): void {
  const title = { x: MARGIN_LEFT, y: 24, "font-size": 15, "font-weight": "bold", fill: "#212529" };
  out.push(el("text", title, titleLine(seq, options)));
  let x = MARGIN_LEFT;
  for (const info of instrumentsOf(seq)) {
    if (!seq.notes.some((n) => n.instrument === info.instrument)) continue;
    const fill = colour.get(info.instrument) ?? DRUM_COLOUR;
    out.push(el("rect", { x, y: 37, width: 14, height: 10, rx: 2, fill }));
    out.push(el("text", { x: x + 19, y: 46, "font-size": 11, fill: "#343a40" }, info.name));
    x += 19 + info.name.length * 7 + 18;
  }
}

/** The piano roll as an SVG document (what renderPianoRoll rasterises). */
export function pianoRollSvg(seq: NoteSequence, options: PianoRollOptions = {}): string {
  validateSequence(seq);
  checkOptions(options);
  const l = layout(seq, options);
  const colour = new Map<number, string>();
  let next = 0;
  for (const info of instrumentsOf(seq)) {
    colour.set(
      info.instrument,
      info.isDrum ? DRUM_COLOUR : PART_COLOURS[next++ % PART_COLOURS.length],
    );
  }
  const size = { width: l.width, height: l.height };
  const root = { xmlns: "http://www.w3.org/2000/svg", ...size, "font-family": FONT_STACK };
  const out: string[] = [
    el("svg", root).replace("/>", ">"),
    el("rect", { ...size, fill: "#ffffff" }),
  ];
  header(seq, options, colour, out);
  grid(seq, l, out);
  chordStrip(options.chords ?? [], seq, l, out);
  notes(seq, l, colour, out);
  out.push("</svg>");
  return out.join("\n");
}

let resvg_class: typeof ResvgClass | undefined;

/**
 * resvg is loaded on first use, not at import: its loader asks for the CPU list, which Deno
 * grants only with --allow-sys, and importing cadenza must not need that.
 */
function loadResvg(): typeof ResvgClass {
  if (resvg_class !== undefined) return resvg_class;
  try {
    const require = createRequire(import.meta.url);
    resvg_class = (require("@resvg/resvg-js") as { Resvg: typeof ResvgClass }).Resvg;
    return resvg_class;
  } catch (err) {
    const reason = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    throw new CadenzaError(
      "E_UNAVAILABLE",
      `the PNG renderer (@resvg/resvg-js) could not be loaded: ${reason}` +
        " (under Deno it needs --allow-sys and --allow-ffi)",
      { cause: err },
    );
  }
}

/**
 * The piano roll as PNG bytes. Throws E_ARGUMENT for an invalid sequence or option, and
 * E_UNAVAILABLE when resvg cannot be loaded (Deno without --allow-sys and --allow-ffi). Text uses
 * DejaVu Sans (or another system sans-serif); with no font installed the picture is drawn
 * without its text.
 */
export function renderPianoRoll(seq: NoteSequence, options: PianoRollOptions = {}): Uint8Array {
  const svg = pianoRollSvg(seq, options);
  const files = [...(options.fontFiles ?? []), ...DEFAULT_FONTS.filter((f) => existsSync(f))];
  const system = options.systemFonts ?? true;
  const font_files = system ? files : [...(options.fontFiles ?? [])];
  const has_dejavu = font_files.some((f) => /DejaVuSans\.ttf$/.test(f));
  const resvg = new (loadResvg())(svg, {
    font: {
      loadSystemFonts: system,
      fontFiles: font_files,
      ...(has_dejavu ? { defaultFontFamily: "DejaVu Sans", sansSerifFamily: "DejaVu Sans" } : {}),
    },
    logLevel: "off",
  });
  return new Uint8Array(resvg.render().asPng());
}
