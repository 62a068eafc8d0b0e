/**
 * The core suites under Node (`npm run test:node`): Node has no FFI, so these run on the
 * WebAssembly backend, with the same cases and bounds as under Bun and Deno. Bundled to
 * JavaScript by scripts/build-node-tests.ts; formats.test.ts is bundled as it is.
 */

import { test } from "node:test";
import { apiCases } from "../cases/api.ts";
import { conformanceCases } from "../cases/conformance.ts";
import { disposePipeline, generateCases } from "../cases/generate.ts";
import { hostileCases } from "../cases/hostile.ts";
import { layerCases } from "../cases/layers.ts";
import { pipelineCases } from "../cases/pipeline.ts";
import { precisionCases } from "../cases/precision.ts";
import { openNative } from "../../src/native/index.ts";

test("node runs on the WebAssembly backend", async () => {
  const api = await openNative();
  if (!api.libraryPath.endsWith(".wasm")) throw new Error(`not wasm: ${api.libraryPath}`);
});

const suites = {
  conformance: conformanceCases(),
  layers: layerCases(),
  precision: precisionCases(),
  pipeline: pipelineCases(),
  generate: generateCases,
  hostile: hostileCases,
  api: apiCases(),
};
for (const [suite, cases] of Object.entries(suites)) {
  for (const c of cases) test(`${suite}: ${c.name}`, { timeout: 120_000 }, c.run);
}
test("generate: dispose the shared pipeline", disposePipeline);
