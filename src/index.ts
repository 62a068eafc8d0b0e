/**
 * cadenza: real-time neural inference for generative music, on Bun and Deno.
 *
 * @example
 * import { loadModel } from "cadenza";
 * const model = await loadModel("model.json"); // RTNeural/amp JSON, .onnx, .safetensors, ...
 * const output = model.forward(new Float32Array(model.inputSize)); // reused view: copy to keep
 * model.process(block, block.length / model.inputSize, block);  // a block in one native call
 * model.dispose();
 */

export { CadenzaError, type CadenzaErrorCode } from "./errors.ts";
export { Model, type ModelOptions, type NativeInfo, type Precision } from "./model/model.ts";
export type { SparseChoice } from "./model/image.ts";
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
export {
  isInt8Safetensors,
  readSafetensors,
  readSafetensorsInt8,
  writeSafetensors,
  writeSafetensorsInt8,
} from "./model/formats/safetensors.ts";
export {
  dequantiseSpec,
  INT8_SCHEME,
  type Int8LayerSpec,
  type Int8ModelSpec,
  int8ParameterCount,
  type Int8Tensor,
  int8WeightBytes,
  quantiseSpec,
} from "./model/quantised.ts";
export { toRtneural } from "./model/formats/rtneural.ts";
export { looksLikeAmpJson, parseAmpJson } from "./model/formats/amp.ts";
export { type ExternalReader, ONNX_SUPPORTED_OPS, readOnnx } from "./model/formats/onnx.ts";
export type { LibraryChoice } from "./native/library.ts";
export { openWasmLibrary } from "./native/index.ts";
export {
  Pipeline,
  type PipelineEdge,
  type PipelineGraphInfo,
  type PipelineModel,
  type PipelineNode,
  type PipelineOptions,
} from "./pipeline/pipeline.ts";
export {
  CONTEXT,
  CONTEXT_SIZE,
  defaultModelsDir,
  EMOTION_GRAPH,
  EMOTION_MODELS,
  EMOTION_SIZE,
  type EmotionModelName,
  type EmotionModelRow,
  type EmotionOutputs,
  EmotionPipeline,
  FEATURE_SIZE,
  GRAPH_INPUT_SIZE,
  inspectEmotionModels,
} from "./pipeline/emotion.ts";
export {
  type InputMode,
  LatencyHistogram,
  type LatencySummary,
  NO_RESULT,
  type PipelineBuffers,
  type Policy,
  READ_FAILED,
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
  keySharps,
  type KeySignature,
  MAX_BARS,
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
  type TimeMap,
  timeMap,
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
  type PianoRollOptions,
  pianoRollSvg,
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
  type KeyEstimate,
  keyOfHistogram,
  type KeyOptions,
  KK_MAJOR_PROFILE,
  KK_MINOR_PROFILE,
  pitchClassHistogram,
} from "./music/keyfinder.ts";

// Music generation: emotion -> pipeline -> decoder -> notes (src/music; docs/MUSIC.md).
export {
  type BassPattern,
  CHORD_CLASSES,
  type ChordInfo,
  chordInfo,
  type ChordQuality,
  chordSymbol,
  type KeyInfo,
  keyName as keyInfoName,
  parseKey,
  transposeChord,
  VoiceLeader,
} from "./music/chords.ts";
export {
  type ChordRate,
  type Constraint,
  Decoder,
  type DecoderEvents,
  type DecoderOptions,
  DYNAMICS,
  GROOVE,
  STEPS_PER_QUARTER,
  type Voicing,
} from "./music/decode.ts";
export {
  type DecodedEmotion,
  EMOTION_NAMES,
  type EmotionDefaults,
  emotionDefaults,
  emotionFromVector,
  type EmotionName,
  type EmotionPoint,
  emotionPoint,
  emotionVector,
  NAMED_EMOTIONS,
  writeEmotionVector,
} from "./music/emotion-map.ts";
export {
  type ChordEvent,
  type EmotionPathPoint,
  generate,
  type GenerateOptions,
  type GenerateResult,
  respond,
  type RespondOptions,
  type RespondResult,
} from "./music/generate.ts";
export { Rng } from "./music/rng.ts";
export {
  type Batch,
  Batcher,
  type BatcherOptions,
  checkDataForModel,
  IGNORE_CLASS,
  type LossName,
  parseTrainingData,
  readTrainingData,
  splitData,
  type TrainingData,
  writeTrainingData,
} from "./train/data.ts";
export {
  createTrainer,
  type Metrics,
  type OptimizerName,
  Trainer,
  type TrainerConfig,
  type TrainerOptions,
} from "./train/trainer.ts";
export { fit, type FitOptions, type FitResult } from "./train/loop.ts";
export { type ModelScore, scoreModel, teacherLogits } from "./train/evaluate.ts";
export { initSpec } from "./train/params.ts";
export {
  type CompressedModel,
  type CompressOptions,
  compressPipeline,
  type CompressReport,
} from "./optimize/compress.ts";
export {
  type EvaluateOptions,
  evaluatePipeline,
  type MetricValue,
  type ModelEvaluation,
  type PipelineEvaluation,
} from "./optimize/evaluate.ts";
export { Progress, type ProgressOptions, type ProgressUpdate } from "./train/progress.ts";
export { copyTask, markovLanguage, markovTask, unigramBaseline } from "./train/tasks.ts";
export {
  type CorpusChord,
  type CorpusNote,
  type CorpusPiece,
  type CorpusQuality,
  parseCorpus,
  readCorpus,
  type SplitName,
  splitOf,
  toTonicC,
} from "./train/corpus.ts";
export {
  type ArousalStats,
  arousalStats,
  labelCorpus,
  labelEmotion,
  type PieceLabels,
  pieceLabels,
  pieceTempo,
  type RenderOptions,
} from "./train/labels.ts";
export {
  chordSpans,
  dynamicsTargets,
  foldQuality,
  grooveTargets,
  matchChord,
  type PreparedPiece,
  preparePiece,
  type SetName,
  type Span,
} from "./train/sets.ts";
export {
  chordBigramBaseline,
  type ClassBaseline,
  meanBaseline,
  sequenceBaselines,
  type ValueBaseline,
} from "./train/baselines.ts";
export {
  buildDataSets,
  type Manifest,
  type ModelMetrics,
  TRAIN_PLANS,
  trainDefault,
  TRAINED_ARCHS,
  TRAINED_MODELS,
  type TrainedModelName,
} from "./train/defaults.ts";
export { readMetrics, renderCard, writeCard } from "./train/card.ts";
export {
  type LayerPruneReport,
  prune,
  type PruneAction,
  pruneFinetune,
  type PruneFinetuneOptions,
  type PruneFinetuneResult,
  type PruneMasks,
  type PruneOptions,
  type PruneProgress,
  type PruneReport,
  type PruneResult,
  type PruneRound,
  trainableMask,
} from "./optimize/prune.ts";
