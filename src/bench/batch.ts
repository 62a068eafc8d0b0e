/**
 * A graph run on `rows` independent rows at once (the offline, many-takes use, and the batch
 * figures of bench/models.bench.ts): each node's model takes its rows through forwardBatch
 * (every row from the model's current state, which does not advance), and each edge is
 * repeated once per row, so the one TypeScript graph interpreter (src/pipeline/pipeline.ts)
 * gathers the rows with its own edge arithmetic.
 */

import type { Model } from "../model/model.ts";
import {
  GRAPH_INPUT,
  Pipeline,
  type PipelineEdge,
  type PipelineModel,
  type PipelineNode,
} from "../pipeline/pipeline.ts";

/** `model` on `rows` rows: input and output are the rows side by side. */
function rowsOf(model: Model, rows: number): PipelineModel {
  return {
    inputSize: model.inputSize * rows,
    outputSize: model.outputSize * rows,
    parameterCount: model.parameterCount,
    weightBytes: model.weightBytes,
    forward: (input) => model.forwardBatch(input, rows),
    reset: () => model.reset(),
    // The caller owns the models.
    dispose: () => {},
  };
}

/**
 * The pipeline of `nodes` over `models` for `rows` rows: `step` takes the rows' inputs side by
 * side (rows * inputSize values) and each output holds its rows side by side. The models stay
 * the caller's (dispose does not touch them).
 */
export function batchedPipeline(
  nodes: readonly PipelineNode[],
  models: Record<string, Model>,
  inputSize: number,
  rows: number,
): Pipeline {
  const widthOf = (from: string) =>
    from === GRAPH_INPUT
      ? inputSize
      : models[nodes.find((node) => node.name === from)!.model].outputSize;
  const batched = nodes.map((node) => {
    const inputs: PipelineEdge[] = [];
    for (let r = 0; r < rows; r++) {
      for (const edge of node.inputs) {
        const width = widthOf(edge.from);
        const offset = edge.offset ?? 0;
        const length = edge.length ?? width - offset;
        inputs.push({ from: edge.from, op: edge.op, offset: r * width + offset, length });
      }
    }
    return { name: node.name, model: node.model, inputs };
  });
  const adapters: Record<string, PipelineModel> = {};
  for (const [key, model] of Object.entries(models)) adapters[key] = rowsOf(model, rows);
  return new Pipeline(batched, adapters, { inputSize: inputSize * rows });
}
