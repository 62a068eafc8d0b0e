/**
 * Native handles after a real destroy, and forged ones: every call is status 4 (badHandle) with
 * a message, never a read through the handle (zig/handles.zig). Before handles were table
 * tokens, cz_model_destroy unmapped the model and the first call after it killed the process.
 * Runtime-neutral: test/handles.test.ts runs these under Bun (and the C twin, test/c/handles.c),
 * test/deno/handles.test.ts under Deno.
 */

import { packImage } from "../../src/model/image.ts";
import type { ModelSpec } from "../../src/model/spec.ts";
import {
  GRAPH_INFO_FIELDS,
  GRAPH_INPUT_SOURCE,
  GRAPH_MAGIC,
  GRAPH_VERSION,
  INFO_FIELDS,
  type NativeApi,
  type NativeHandle,
  type NativeTrainer,
  Status,
  TRAINER_INFO_FIELDS,
} from "../../src/native/api.ts";
import { configWords, trainerConfig } from "../../src/train/trainer.ts";
import { openNative } from "../../src/native/index.ts";
import { randomModel, Rng } from "../helpers.ts";
import { type Case, check } from "./check.ts";

function spec(seed: number): ModelSpec {
  return randomModel(new Rng(seed), ["lstm", "dense"], 4, [{ outputSize: 6 }, { outputSize: 3 }]);
}

/** Every model-handle call on `handle` must answer status 4 and name the invalid handle. */
function expectBadHandle(api: NativeApi, handle: NativeHandle, what: string): void {
  const x = new Float32Array(8);
  const y = new Float32Array(6);
  const statuses = {
    info: api.info(handle, new BigUint64Array(INFO_FIELDS)),
    forward: api.forward(handle, x.subarray(0, 4), y),
    forwardBatch: api.forwardBatch(handle, x, 2, y),
    reset: api.reset(handle),
  };
  for (const [call, status] of Object.entries(statuses)) {
    check(status === Status.badHandle, () => `${what}: ${call} gave status ${status}, expected 4`);
  }
  const message = api.lastError(handle);
  check(
    message.startsWith("invalid handle: null, destroyed"),
    () => `${what}: last error "${message}"`,
  );
}

/** A one-node graph over `model`: the graph input straight into it. */
function oneNodeGraph(api: NativeApi, model: NativeHandle, input_size: number) {
  const description = new Uint32Array([
    GRAPH_MAGIC,
    GRAPH_VERSION,
    1,
    input_size,
    0,
    1,
    GRAPH_INPUT_SOURCE,
    0,
    input_size,
    0,
  ]);
  return api.graphCreate(description, new BigUint64Array([api.handleValue(model)]));
}

const destroyedModelCase: Case = {
  name:
    "handles: every call on a destroyed model handle is status 4, twice, and destroy again is a no-op",
  run: async () => {
    const api = await openNative();
    const image = packImage(spec(1));
    const handle = api.create(image);
    const y = new Float32Array(3);
    check(api.forward(handle, new Float32Array(4), y) === 0, () => "forward before destroy");
    api.destroy(handle);
    expectBadHandle(api, handle, "destroyed");
    api.destroy(handle);
    expectBadHandle(api, handle, "destroyed twice");
    // Models created after it, perhaps at the same address, get other handles; the old one
    // stays stale beside them.
    const others = [api.create(image), api.create(image)];
    try {
      for (const other of others) {
        check(api.handleValue(other) !== api.handleValue(handle), () => "a handle was reused");
        check(api.forward(other, new Float32Array(4), y) === 0, () => "forward on a new model");
      }
      expectBadHandle(api, handle, "stale beside new models");
    } finally {
      for (const other of others) api.destroy(other);
    }
  },
};

const forgedCase: Case = {
  name: "handles: forged handles (small numbers, neighbours of a live handle, random) are status 4",
  run: async () => {
    const api = await openNative();
    const live = api.create(packImage(spec(2)));
    try {
      const value = api.handleValue(live);
      const forged = [
        1n,
        8n,
        0x1000n,
        value + 1n,
        value - 1n,
        value ^ (1n << 16n),
        value ^ (3n << 48n),
      ];
      // Random values below 2^53, which a JavaScript number (bun:ffi's pointer) holds exactly.
      const rng = new Rng(3);
      for (let i = 0; i < 200; i++) {
        forged.push(BigInt(Math.floor(rng.next() * 2 ** 52)) + (1n << 52n) * BigInt(i & 1));
      }
      for (const f of forged) {
        if (f === value) continue;
        expectBadHandle(api, api.handleOf(f), `forged 0x${f.toString(16)}`);
        api.destroy(api.handleOf(f));
        api.graphDestroy(api.handleOf(f) as never);
      }
      // Destroying forged handles touched nothing: the live model still runs.
      check(
        api.forward(live, new Float32Array(4), new Float32Array(3)) === 0,
        () => "the live model after forged destroys",
      );
    } finally {
      api.destroy(live);
    }
  },
};

const graphCase: Case = {
  name: "handles: a graph whose member was destroyed is status 4; a destroyed graph too",
  run: async () => {
    const api = await openNative();
    const model = api.create(packImage(spec(4)));
    const graph = oneNodeGraph(api, model, 4);
    const x = new Float32Array(4).fill(0.5);
    const y = new Float32Array(3);
    check(api.graphStep(graph, x, y) === 0, () => "graph step before destroy");
    api.destroy(model);
    for (
      const [call, status] of [
        ["step", api.graphStep(graph, x, y)],
        ["stepFrom", api.graphStepFrom(graph, 0, y, y)],
        ["reset", api.graphReset(graph)],
      ] as const
    ) {
      check(status === Status.badHandle, () => `graph ${call} gave ${status}, expected 4`);
      const message = api.graphLastError(graph);
      check(
        message.includes("node 0's model was destroyed while the graph lives"),
        () => `graph ${call}: last error "${message}"`,
      );
    }
    const info = new BigUint64Array(GRAPH_INFO_FIELDS);
    check(api.graphInfo(graph, info) === 0, () => "graph info after a member was destroyed");
    api.graphDestroy(graph);
    check(api.graphInfo(graph, info) === Status.badHandle, () => "info on a destroyed graph");
    check(api.graphStep(graph, x, y) === Status.badHandle, () => "step on a destroyed graph");
    check(api.graphLastError(graph).startsWith("invalid graph"), () => "destroyed graph message");
    api.graphDestroy(graph);
    // A model handle is not a graph handle, nor the other way round.
    const other = api.create(packImage(spec(5)));
    try {
      check(api.graphReset(other as never) === Status.badHandle, () => "model as graph");
      const g = oneNodeGraph(api, other, 4);
      check(api.reset(g as never) === Status.badHandle, () => "graph as model");
      api.graphDestroy(g);
    } finally {
      api.destroy(other);
    }
  },
};

const trainerCase: Case = {
  name:
    "handles: trainer handles destroyed, destroyed twice, stale, forged or of a model are status 4",
  run: async () => {
    const api = await openNative();
    const image = packImage(spec(4));
    const config = configWords(trainerConfig({ batch: 1, loss: "mse" }));
    const info = new BigUint64Array(TRAINER_INFO_FIELDS);
    const x = new Float32Array(4);
    const y = new Float32Array(3);
    const loss = new Float32Array(1);
    const expectBadTrainer = (t: NativeTrainer, what: string) => {
      const statuses = {
        info: api.trainerInfo(t, info),
        step: api.trainerStep(t, x, y, null, loss),
        forward: api.trainerForward(t, x, y),
        getParams: api.trainerGetParams(t, new Float32Array(8)),
      };
      for (const [call, status] of Object.entries(statuses)) {
        check(
          status === Status.badHandle,
          () => `${what}: ${call} gave status ${status}, expected 4`,
        );
      }
      const message = api.trainerLastError(t);
      check(message.startsWith("invalid trainer: null, destroyed"), () => `${what}: "${message}"`);
    };
    const trainer = api.trainerCreate(image, config);
    check(api.trainerStep(trainer, x, y, null, loss) === 0, () => "step before destroy");
    const value = api.handleValue(trainer as unknown as NativeHandle);
    api.trainerDestroy(trainer);
    expectBadTrainer(trainer, "destroyed");
    api.trainerDestroy(trainer);
    expectBadTrainer(trainer, "destroyed twice");
    const model = api.create(image);
    const other = api.trainerCreate(image, config);
    try {
      const otherValue = api.handleValue(other as unknown as NativeHandle);
      check(otherValue !== value, () => "a trainer handle was reused");
      expectBadTrainer(trainer, "stale beside a new trainer");
      const modelValue = api.handleValue(model);
      const forged = [
        1n,
        0x1000n,
        otherValue + 1n,
        otherValue ^ (1n << 16n),
        otherValue ^ (3n << 48n),
        modelValue,
      ];
      for (const f of forged) {
        const t = api.handleOf(f) as unknown as NativeTrainer;
        expectBadTrainer(t, `forged 0x${f.toString(16)}`);
        api.trainerDestroy(t);
      }
      // Neither the model passed as a trainer nor the trainer passed as a model was touched.
      check(api.forward(model, x, y) === 0, () => "the model after being passed as a trainer");
      expectBadHandle(api, other as unknown as NativeHandle, "a trainer passed as a model");
      check(
        api.trainerStep(other, x, y, null, loss) === 0,
        () => "the live trainer after all that",
      );
    } finally {
      api.trainerDestroy(other);
      api.destroy(model);
    }
  },
};

export const handleCases: Case[] = [destroyedModelCase, forgedCase, graphCase, trainerCase];
