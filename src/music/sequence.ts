/**
 * The note sequence: plain data, close to Magenta's NoteSequence, and every other music module
 * is a function over it (decode writes one, toMidi/fromMidi convert it, renderPianoRoll draws
 * it). Times are in seconds; quantized positions, where present, are in steps of
 * `stepsPerQuarter`.
 *
 * ```ts
 * const seq = emptySequence({ tempo: 120, meter: [4, 4], key: { tonic: 0, mode: "major" } });
 * seq.notes.push({ pitch: 60, velocity: 90, startTime: 0, endTime: 0.5, instrument: 0,
 *   program: 0, isDrum: false });
 * ```
 */

/** One note. `instrument` is the track index; `program` the General MIDI program (0..127). */
export interface Note {
  /** MIDI note number 0..127. */
  pitch: number;
  /** MIDI velocity 1..127. */
  velocity: number;
  /** Seconds from the start of the piece. */
  startTime: number;
  /** Seconds; greater than startTime. */
  endTime: number;
  /** Track index (0 melody, 1 chords, 2 bass, 9 drums in generated pieces). */
  instrument: number;
  /** General MIDI program 0..127. */
  program: number;
  isDrum: boolean;
  /** Quantized start and end, in steps of `stepsPerQuarter` (absent if not quantized). */
  quantizedStartStep?: number;
  quantizedEndStep?: number;
}

export interface Tempo {
  /** Seconds. */
  time: number;
  /** Quarter notes per minute. */
  qpm: number;
}

export interface TimeSignature {
  time: number;
  numerator: number;
  denominator: number;
}

/** `key` is the tonic as a pitch class (0 = C .. 11 = B). */
export interface KeySignature {
  time: number;
  key: number;
  mode: "major" | "minor";
}

/** A named part of the piece (its MIDI track). */
export interface InstrumentInfo {
  instrument: number;
  name: string;
  program: number;
  isDrum: boolean;
  /** MIDI channel 0..15 (9 is the General MIDI drum channel). */
  channel: number;
}

export interface NoteSequence {
  notes: Note[];
  tempos: Tempo[];
  timeSignatures: TimeSignature[];
  keySignatures: KeySignature[];
  instrumentInfos: InstrumentInfo[];
  /** Seconds: the end of the last note, or of the last bar for generated pieces. */
  totalTime: number;
  /** Present when the notes carry quantized steps. */
  stepsPerQuarter?: number;
  /** Free-form provenance (generator, seed, emotion, whether the models were trained). */
  meta?: Record<string, string>;
}
