/**
 * The HarmonyPredictor's 64 chord classes as chord symbols, their voicings and the bass line.
 *
 * Vocabulary (class -> chord): class q * 12 + r for r = root pitch class 0 (C) .. 11 (B) and
 * q = 0 major, 1 minor, 2 dominant seventh, 3 minor seventh, 4 diminished triad (classes
 * 0..59); classes 60..63 are the augmented triads on C, C#, D and D# (an augmented triad is
 * symmetric, so these four are all twelve: E aug has the notes of C aug). Symbols are spelt
 * with flats in flat keys (F, Bb, Eb, Ab, Db major; D, G, C, F, Bb, Eb minor), sharps
 * otherwise: "C", "Ebm", "G7", "F#m7", "Bdim", "Caug".
 *
 * Voicing: close-position chords in a register (MIDI 50..74); each chord takes the inversion
 * and octave that moves the voices least from the previous voicing (the sum over the new notes
 * of the distance to the nearest previous note and back), with a small pull towards the
 * register's centre so that the voicing does not drift. Given the melody note it sounds with,
 * the chord goes under it (`VoiceLeader`: the register's top comes down to the note below the
 * melody, or the chord drops into the octave under a low melody note), so that the tune is
 * heard on top. The bass line keeps under the chords. `VoiceLeader` allocates nothing.
 *
 * ```ts
 * chordSymbol(14, { tonic: 2, mode: "minor" });   // "Dm"
 * const leader = new VoiceLeader();
 * const count = leader.voice(7);                   // leader.notes[0 .. count) = B3 D4 G4 (59 62 67)
 * leader.voice(0, 64);                             // C under a melody E4 (64): E3 G3 C4 (52 55 60)
 * ```
 */

import { CadenzaError } from "../errors.ts";
import type { Mode } from "./emotion-map.ts";

export const CHORD_CLASSES = 64;

export type ChordQuality = "maj" | "min" | "dom7" | "min7" | "dim" | "aug";

/** Intervals above the root, in semitones, for each quality. */
export const QUALITY_INTERVALS: Readonly<Record<ChordQuality, readonly number[]>> = Object.freeze({
  maj: [0, 4, 7],
  min: [0, 3, 7],
  dom7: [0, 4, 7, 10],
  min7: [0, 3, 7, 10],
  dim: [0, 3, 6],
  aug: [0, 4, 8],
});

const QUALITY_ORDER: readonly ChordQuality[] = ["maj", "min", "dom7", "min7", "dim"];
const SUFFIX: Readonly<Record<ChordQuality, string>> = {
  maj: "",
  min: "m",
  dom7: "7",
  min7: "m7",
  dim: "dim",
  aug: "aug",
};

export const SHARP_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
export const FLAT_NAMES = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"];

export interface KeyInfo {
  tonic: number;
  mode: Mode;
}

export interface ChordInfo {
  class: number;
  /** Root pitch class 0..11. */
  root: number;
  quality: ChordQuality;
  /** Pitch classes, root first. */
  pitchClasses: number[];
}

function checkClass(cls: number): void {
  if (!Number.isInteger(cls) || cls < 0 || cls >= CHORD_CLASSES) {
    throw new CadenzaError("E_ARGUMENT", `chord class must be an integer 0..63, got ${cls}`);
  }
}

export function chordRoot(cls: number): number {
  return cls < 60 ? cls % 12 : cls - 60;
}

export function chordQuality(cls: number): ChordQuality {
  return cls < 60 ? QUALITY_ORDER[Math.floor(cls / 12)] : "aug";
}

export function chordInfo(cls: number): ChordInfo {
  checkClass(cls);
  const root = chordRoot(cls);
  const quality = chordQuality(cls);
  return {
    class: cls,
    root,
    quality,
    pitchClasses: QUALITY_INTERVALS[quality].map((i) => (root + i) % 12),
  };
}

/** The class of a chord given by root pitch class and quality. */
export function chordClass(root: number, quality: ChordQuality): number {
  const r = ((root % 12) + 12) % 12;
  if (quality === "aug") return 60 + (r % 4);
  return QUALITY_ORDER.indexOf(quality) * 12 + r;
}

/**
 * The class of chord `cls` with its root moved by `semitones` (any integer): the quality
 * stays, the root turns mod 12 (mod 4 for the augmented classes 60..63, whose roots repeat
 * every major third). The models work tonic-relative (the piece's tonic is C): the chord `cls`
 * of a piece with tonic t is `transposeChord(cls, -t)` to them, and back with `+t`.
 */
export function transposeChord(cls: number, semitones: number): number {
  if (cls >= 60) return 60 + ((((cls - 60 + semitones) % 4) + 4) % 4);
  const root = cls % 12;
  return cls - root + ((((root + semitones) % 12) + 12) % 12);
}

/** Tonics whose keys are written with flats (F# major and D# minor are written with sharps). */
const FLAT_TONICS: Readonly<Record<Mode, readonly number[]>> = {
  major: [5, 10, 3, 8, 1],
  minor: [2, 7, 0, 5, 10, 3],
};

/** Whether a key's signature has flats. */
export function keyUsesFlats(key: KeyInfo): boolean {
  return FLAT_TONICS[key.mode].includes(key.tonic);
}

/** A pitch class's name, spelt for the key (flats in flat keys). */
export function pitchClassName(pc: number, key?: KeyInfo): string {
  return (key !== undefined && keyUsesFlats(key) ? FLAT_NAMES : SHARP_NAMES)[pc];
}

/** The key's name: "G major", "Bb minor". */
export function keyName(key: KeyInfo): string {
  return `${pitchClassName(key.tonic, key)} ${key.mode}`;
}

/** The chord symbol of a class ("C", "Ebm", "G7", "F#m7", "Bdim", "Caug"). */
export function chordSymbol(cls: number, key?: KeyInfo): string {
  checkClass(cls);
  return pitchClassName(chordRoot(cls), key) + SUFFIX[chordQuality(cls)];
}

/** Intervals of the major and natural minor scales. */
const SCALE_STEPS: Readonly<Record<Mode, readonly number[]>> = {
  major: [0, 2, 4, 5, 7, 9, 11],
  minor: [0, 2, 3, 5, 7, 8, 10],
};

/** A 12-entry mask (1 = in the key) of the key's scale (major, or natural minor). */
export function scaleMask(key: KeyInfo, into: Uint8Array = new Uint8Array(12)): Uint8Array {
  into.fill(0);
  for (const step of SCALE_STEPS[key.mode]) into[(key.tonic + step) % 12] = 1;
  return into;
}

/** Whether every note of the chord lies in the key's scale. */
export function chordInKey(cls: number, mask: Uint8Array): boolean {
  const root = chordRoot(cls);
  for (const i of QUALITY_INTERVALS[chordQuality(cls)]) {
    if (mask[(root + i) % 12] === 0) return false;
  }
  return true;
}

/** The register chords are voiced in (MIDI notes, inclusive). */
export const CHORD_LOW = 50;
export const CHORD_HIGH = 74;
/**
 * The lowest note a chord goes down to to stay under a low melody note (G2): below it close
 * chords turn to mud against the bass, so a melody under CHORD_FLOOR + 12 is not followed.
 */
export const CHORD_FLOOR = 43;
const CHORD_CENTRE = 62;
/** Semitones of movement one semitone of distance from the centre costs. */
const CENTRE_PULL = 0.35;

/**
 * Voices chords one after another with the least movement, under the melody when told its
 * note. Allocates nothing after construction: `voice` writes the notes (ascending) into
 * `notes` and returns their count.
 *
 * Under a melody note m (`voice(cls, m)`), every voice is strictly below m, chosen in this
 * order: (1) the least-movement voicing in the register CHORD_LOW .. min(CHORD_HIGH, m - 1);
 * (2) when no inversion fits there (m is at most about a ninth above CHORD_LOW), the one
 * close voicing in the octave m - 12 .. m - 1, which is below the register, if m - 12 is at
 * least CHORD_FLOOR; (3) otherwise (m under 55, only with a melody range set that low) the
 * register as without a melody, where the melody then sounds among or under the chord.
 */
export class VoiceLeader {
  /** The current voicing, ascending; `count` notes. */
  readonly notes: Int32Array = new Int32Array(4);
  count = 0;
  readonly #candidate = new Int32Array(4);
  readonly #best = new Int32Array(4);
  readonly #pcs = new Int32Array(4);

  reset(): void {
    this.count = 0;
  }

  /**
   * Voices chord class `cls` from the current voicing; with `melody` (a MIDI note, -1 for
   * none) every voice stays below it where the rules above allow. Returns the note count.
   */
  voice(cls: number, melody = -1): number {
    checkClass(cls);
    if (!Number.isInteger(melody) || melody < -1 || melody > 127) {
      throw new CadenzaError(
        "E_ARGUMENT",
        `melody must be a MIDI note 0..127 or -1, got ${melody}`,
      );
    }
    const root = chordRoot(cls);
    const intervals = QUALITY_INTERVALS[chordQuality(cls)];
    const n = intervals.length;
    for (let i = 0; i < n; i++) this.#pcs[i] = (root + intervals[i]) % 12;
    let count = 0;
    if (melody >= 0) {
      const top = melody - 1 < CHORD_HIGH ? melody - 1 : CHORD_HIGH;
      count = this.#search(n, CHORD_LOW, top);
      if (count === 0 && melody - 12 >= CHORD_FLOOR) count = this.#search(n, melody - 12, top);
    }
    if (count === 0) count = this.#search(n, CHORD_LOW, CHORD_HIGH);
    for (let k = 0; k < count; k++) this.notes[k] = this.#best[k];
    this.count = count;
    return count;
  }

  /**
   * The least-cost close voicing of the chord's `n` pitch classes with every note in
   * low .. high, into #best; returns n, or 0 when none fits.
   */
  #search(n: number, low: number, high: number): number {
    let bestCost = Infinity;
    let bestCount = 0;
    if (high < low) return 0;
    // Each inversion (which chord tone is lowest), at each octave whose notes fit.
    for (let inversion = 0; inversion < n; inversion++) {
      for (let base = low - (low % 12); base <= high; base += 12) {
        let prev = -1;
        let fits = true;
        for (let k = 0; k < n; k++) {
          const pc = this.#pcs[(inversion + k) % n];
          let note = base + pc;
          if (k > 0) {
            while (note <= prev) note += 12;
          }
          if (note < low || note > high) fits = false;
          this.#candidate[k] = note;
          prev = note;
        }
        if (!fits) continue;
        const cost = this.#cost(n);
        if (cost < bestCost) {
          bestCost = cost;
          bestCount = n;
          for (let k = 0; k < n; k++) this.#best[k] = this.#candidate[k];
        }
      }
    }
    return bestCount;
  }

  /** Movement from the current voicing (both ways, nearest notes), plus the pull to the centre. */
  #cost(n: number): number {
    let centre = 0;
    for (let k = 0; k < n; k++) centre += this.#candidate[k];
    let cost = CENTRE_PULL * Math.abs(centre / n - CHORD_CENTRE);
    if (this.count === 0) return cost;
    for (let k = 0; k < n; k++) cost += nearest(this.#candidate[k], this.notes, this.count);
    for (let k = 0; k < this.count; k++) cost += nearest(this.notes[k], this.#candidate, n);
    return cost;
  }
}

function nearest(note: number, among: Int32Array, count: number): number {
  let best = Infinity;
  for (let k = 0; k < count; k++) best = Math.min(best, Math.abs(note - among[k]));
  return best;
}

/** The bass register (MIDI notes, inclusive). */
export const BASS_LOW = 33;
export const BASS_HIGH = 52;

/**
 * The note of pitch class `pc` in the bass register nearest to `previous`, no higher than
 * `high` (default BASS_HIGH; kept at least BASS_LOW + 11, so that every pitch class fits).
 */
export function bassNote(pc: number, previous: number, high = BASS_HIGH): number {
  const top = Math.min(BASS_HIGH, Math.max(BASS_LOW + 11, high));
  let best = -1;
  for (let note = BASS_LOW; note <= top; note++) {
    if (note % 12 !== pc) continue;
    if (best < 0 || Math.abs(note - previous) < Math.abs(best - previous)) best = note;
  }
  return best;
}

export type BassPattern = "root" | "root-fifth" | "walking";

/** One chord span the bass plays under. Times are seconds; beats are in steps. */
export interface BassSpan {
  class: number;
  /** Grid steps of the span's start and its length. */
  step: number;
  steps: number;
  /** Steps per beat (4 for a quarter-note beat on a 16th grid). */
  stepsPerBeat: number;
  pattern: BassPattern;
  /**
   * The lowest chord note struck in the span, if known: the span's bass notes stay below it
   * (down to an octave above BASS_LOW at the least: see `bassNote`).
   */
  chordLow?: number;
}

export interface BassNoteEvent {
  pitch: number;
  /** Grid step and length in steps. */
  step: number;
  steps: number;
}

/**
 * The bass line under the chord spans: the root on each chord; with "root-fifth" the fifth
 * (or the chord's third for the diminished and augmented) on the span's middle beat; with
 * "walking" a note per beat through chord tones, the last beat of a span approaching the next
 * root by a semitone or a whole tone. Each note is placed in the bass register nearest the
 * note before it, so the line moves by small steps, and below the span's chords (`chordLow`).
 */
export function bassLine(spans: readonly BassSpan[]): BassNoteEvent[] {
  const notes: BassNoteEvent[] = [];
  let previous = 40;
  for (let i = 0; i < spans.length; i++) {
    const span = spans[i];
    const info = chordInfo(span.class);
    const beats = Math.max(1, Math.floor(span.steps / span.stepsPerBeat));
    const high = span.chordLow === undefined ? BASS_HIGH : span.chordLow - 1;
    const rootNote = bassNote(info.root, previous, high);
    if (span.pattern === "root" || beats < 2) {
      notes.push({ pitch: rootNote, step: span.step, steps: span.steps });
      previous = rootNote;
      continue;
    }
    const fifthPc = info.quality === "dim" || info.quality === "aug"
      ? info.pitchClasses[1]
      : (info.root + 7) % 12;
    if (span.pattern === "root-fifth") {
      const half = Math.floor(beats / 2) * span.stepsPerBeat;
      notes.push({ pitch: rootNote, step: span.step, steps: half });
      const fifth = bassNote(fifthPc, rootNote, high);
      notes.push({ pitch: fifth, step: span.step + half, steps: span.steps - half });
      previous = fifth;
      continue;
    }
    // Walking: root, chord tones, then an approach to the next root.
    const next = spans[i + 1];
    let note = rootNote;
    for (let b = 0; b < beats; b++) {
      const step = span.step + b * span.stepsPerBeat;
      const steps = b === beats - 1 ? span.steps - b * span.stepsPerBeat : span.stepsPerBeat;
      if (b > 0 && b === beats - 1 && next !== undefined) {
        const nextHigh = next.chordLow === undefined ? BASS_HIGH : next.chordLow - 1;
        const target = bassNote(chordRoot(next.class), note, nextHigh);
        // A semitone below or above the next root, whichever is nearer the current note, in
        // the register and under this span's chords (else the semitone below, placed there).
        const ceiling = Math.min(BASS_HIGH, Math.max(BASS_LOW + 11, high));
        const below = target - 1;
        const above = target + 1;
        const belowFits = below >= BASS_LOW && below <= ceiling;
        const aboveFits = above >= BASS_LOW && above <= ceiling;
        if (belowFits && aboveFits) {
          note = Math.abs(below - note) <= Math.abs(above - note) ? below : above;
        } else if (belowFits || aboveFits) {
          note = belowFits ? below : above;
        } else {
          note = bassNote((chordRoot(next.class) + 11) % 12, note, high);
        }
      } else if (b > 0) {
        note = bassNote(info.pitchClasses[b % info.pitchClasses.length], note, high);
      }
      notes.push({ pitch: note, step, steps });
    }
    previous = note;
  }
  return notes;
}

const LETTER_PC: Readonly<Record<string, number>> = { C: 0, D: 2, E: 4, F: 5, G: 7, A: 9, B: 11 };

/**
 * A key from its name: a letter, an optional # or b, then major (the default; also "maj",
 * "M") or minor ("min", "m"): "G", "D minor", "F#m", "Bb major". Throws E_ARGUMENT otherwise.
 */
export function parseKey(text: string): KeyInfo {
  const match = /^\s*([A-Ga-g])([#b]?)\s*(major|maj|M|minor|min|m)?\s*$/.exec(String(text));
  if (match === null) {
    throw new CadenzaError(
      "E_ARGUMENT",
      `key must be a note name with an optional mode, like "G", "D minor", "F#m" or ` +
        `"Bb major", got "${text}"`,
    );
  }
  const letter = LETTER_PC[match[1].toUpperCase()];
  const accidental = match[2] === "#" ? 1 : match[2] === "b" ? -1 : 0;
  const mode: Mode = match[3] === undefined || match[3] === "major" || match[3] === "maj" ||
      match[3] === "M"
    ? "major"
    : "minor";
  return { tonic: (letter + accidental + 12) % 12, mode };
}
