/** The five default models loaded for timing, on the fast library unless CADENZA_LIB says. */

import type { Model } from "../model/model.ts";
import { loadModel } from "../model/load.ts";
import type { Precision } from "../model/image.ts";
import {
  EMOTION_MODELS,
  type EmotionModelName,
  EmotionPipeline,
  modelFile,
} from "../pipeline/emotion.ts";
import { envVar } from "../native/io.ts";

/**
 * The five models from `dir` with the chosen library (default fast), and their pipeline;
 * `precision` absent loads each file as stored (f32, or int8 for an int8 file).
 */
export async function loadBenchPipeline(dir: string, precision?: Precision): Promise<{
  pipeline: EmotionPipeline;
  models: Record<EmotionModelName, Model>;
  library: string;
}> {
  const library = envVar("CADENZA_LIB") ?? "fast";
  const models: Partial<Record<EmotionModelName, Model>> = {};
  try {
    for (const info of EMOTION_MODELS) {
      models[info.name] = await loadModel(modelFile(dir, info.name), { library, precision });
    }
  } catch (err) {
    for (const m of Object.values(models)) m.dispose();
    throw err;
  }
  const full = models as Record<EmotionModelName, Model>;
  return { pipeline: new EmotionPipeline(full), models: full, library };
}
