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
export { Progress, type ProgressOptions, type ProgressUpdate } from "./train/progress.ts";
export { copyTask, markovLanguage, markovTask, unigramBaseline } from "./train/tasks.ts";
