/**
 * cadenza: real-time neural inference for generative music, on Bun and Deno.
 *
 * @example
 * import { loadModel } from "cadenza";
 * const model = await loadModel("model.json"); // RTNeural JSON, .safetensors or a state_dict
 * const output = model.forward(new Float32Array(model.inputSize)); // reused view: copy to keep
 * model.dispose();
 */

export { CadenzaError, type CadenzaErrorCode } from "./errors.ts";
export { Model, type ModelOptions, type NativeInfo, type Precision } from "./model/model.ts";
export {
  type LoadedSpec,
  loadModel,
  type LoadOptions,
  loadSpec,
  modelFromSpec,
  type SpecOptions,
} from "./model/load.ts";
export {
  type Activation,
  archOf,
  type LayerArch,
  type LayerKind,
  type LayerSpec,
  type ModelSpec,
  outputSize,
  parameterCount,
  validateSpec,
} from "./model/spec.ts";
export type { ModelFormat } from "./model/formats/detect.ts";
export type { TorchLayerDecl, TorchLayerKind } from "./model/formats/torch.ts";
export { readSafetensors, writeSafetensors } from "./model/formats/safetensors.ts";
export { toRtneural } from "./model/formats/rtneural.ts";
export type { LibraryChoice } from "./native/library.ts";
export {
  Pipeline,
  type PipelineEdge,
  type PipelineGraphInfo,
  type PipelineModel,
  type PipelineNode,
  type PipelineOptions,
} from "./pipeline/pipeline.ts";
export {
  defaultModelsDir,
  EMOTION_GRAPH,
  EMOTION_MODELS,
  type EmotionModelName,
  type EmotionModelRow,
  type EmotionOutputs,
  EmotionPipeline,
  inspectEmotionModels,
} from "./pipeline/emotion.ts";
export {
  LatencyHistogram,
  type LatencySummary,
  type PipelineBuffers,
  type Policy,
  RealtimeEngine,
  type RealtimeOptions,
  type RealtimeStats,
} from "./rt/index.ts";

// Music output: the note sequence, MIDI files, piano rolls, audio and the key finder (src/music).
export {
  barTimes,
  cloneSequence,
  compareNotes,
  DRUM_CHANNEL,
  emptySequence,
  type InstrumentInfo,
  instrumentInfoOf,
  instrumentsOf,
  keyAt,
  keyFromSharps,
  keyName,
  type KeySignature,
  keySharps,
  type Note,
  type NoteSequence,
  notesOf,
  pitchName,
  quantizeSequence,
  quartersPerBar,
  quartersToSeconds,
  secondsToQuarters,
  secondsToStep,
  type SequenceOptions,
  sortNotes,
  stepToSeconds,
  type Tempo,
  tempoAt,
  type TimeSignature,
  timeSignatureAt,
  totalBars,
  validateSequence,
} from "./music/sequence.ts";
export {
  fromMidi,
  type FromMidiOptions,
  MAX_MIDI_BYTES,
  MAX_MIDI_SECONDS,
  MIDI_PPQ,
  toMidi,
  type ToMidiOptions,
} from "./music/midi.ts";
export {
  type ChordMark,
  pianoRollSvg,
  type PianoRollOptions,
  renderPianoRoll,
} from "./music/pianoroll.ts";
export {
  findFluidSynth,
  type FindOptions,
  type FluidSynthInfo,
  renderWav,
  type RenderWavOptions,
  SOUNDFONT_PATHS,
} from "./music/audio.ts";
export {
  findKey,
  KK_MAJOR_PROFILE,
  KK_MINOR_PROFILE,
  type KeyEstimate,
  keyOfHistogram,
  type KeyOptions,
  pitchClassHistogram,
} from "./music/keyfinder.ts";
