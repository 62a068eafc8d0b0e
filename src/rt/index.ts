/**
 * The real-time engine: a Worker that owns the models, a SharedArrayBuffer between it and the
 * caller, and a caller side that never waits or allocates. See engine.ts for an example.
 */

export {
  type EngineState,
  type InputMode,
  NO_RESULT,
  type PipelineBuffers,
  type Policy,
  READ_FAILED,
  RealtimeEngine,
  type RealtimeOptions,
  type RealtimeStats,
  type WakeMode,
} from "./engine.ts";
export { LatencyHistogram, type LatencySummary } from "./histogram.ts";
export { resultChecksum } from "./layout.ts";
export { EMOTION_OUTPUTS, type GraphConfig, type RunnerConfig, type StepRunner } from "./runner.ts";
