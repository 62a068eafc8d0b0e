/**
 * The public API (loadModel, modelFromSpec, Model) through the native library: shapes and
 * counts, reused output views, errors and their codes, dispose, save and reload. Runtime-neutral:
 * test/api.test.ts runs these under Bun and test/deno/api.test.ts under Deno.
 */

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, type Model, modelFromSpec, type ModelSpec } from "../../src/index.ts";
import { openNative } from "../../src/native/index.ts";
import { readCsv, rtneuralData, rtneuralModel } from "../helpers.ts";
import { type Case, check, rejectsCadenza, throwsCadenza } from "./check.ts";

const DENSE = rtneuralModel("dense.json");
const FULL = rtneuralModel("full_model.json");

/** Every number in a nested JSON array: an RTNeural file's weights, counted independently. */
function countNumbers(value: unknown): number {
  if (typeof value === "number") return 1;
  if (!Array.isArray(value)) return 0;
  return value.reduce((sum: number, item) => sum + countNumbers(item), 0);
}

function rtneuralCounts(path: string): { parameters: number; layers: number } {
  const json = JSON.parse(readFileSync(path, "utf8"));
  const weights = json.layers.map((layer: { weights: unknown }) => countNumbers(layer.weights));
  return {
    parameters: weights.reduce((a: number, b: number) => a + b, 0),
    layers: json.layers.length,
  };
}

async function withModel(load: Promise<Model>, body: (model: Model) => void | Promise<void>) {
  const model = await load;
  try {
    await body(model);
  } finally {
    model.dispose();
  }
}

/** Runs `steps` rows of dense_x_python.csv through a model, returning a copy of every output. */
function stream(model: Model, steps: number): Float32Array[] {
  const x = new Float32Array(model.inputSize);
  return readCsv(rtneuralData("dense_x_python.csv")).slice(0, steps).map((row) => {
    x.set(row);
    return model.forward(x).slice();
  });
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((value, i) => Object.is(value, b[i]));
}

/** Batch kernels sum in another order than the one-row kernel: equal to float32 rounding. */
function closeValues(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length &&
    a.every((value, i) => Math.abs(value - b[i]) <= 1e-6 * (1 + Math.abs(b[i])));
}

function identitySpec(width: number): ModelSpec {
  const W = new Float32Array(width * width);
  for (let i = 0; i < width; i++) W[i * width + i] = 1;
  return {
    inputSize: width,
    maxBatch: 4,
    layers: [{
      kind: "dense",
      inputSize: width,
      outputSize: width,
      tensors: { W, b: new Float32Array(width) },
    }],
  };
}

const shapeCase: Case = {
  name: "loads the conformance dense model with its shape and parameter count",
  run: () =>
    withModel(loadModel(DENSE), (model) => {
      const counts = rtneuralCounts(DENSE);
      check(model.inputSize === 1 && model.outputSize === 1, () =>
        `sizes ${model.inputSize}, ${model.outputSize}`);
      check(model.parameterCount === counts.parameters, () =>
        `params ${model.parameterCount} vs ${counts.parameters}`);
      check(model.weightBytes === counts.parameters * 4, () =>
        `weightBytes ${model.weightBytes}`);
      check(model.layers[0].kind === "dense" && model.layers[0].outputSize === 8, () =>
        JSON.stringify(model.layers[0]));
      check(model.spec.layers.length === model.layers.length, () =>
        "spec and layers disagree");
      const info = model.nativeInfo();
      check(info.parameterCount === counts.parameters, () =>
        `native params ${info.parameterCount}`);
      check(info.layerCount === model.layers.length, () =>
        `native layers ${info.layerCount}`);
      check(info.maxBatch === 64 && model.maxBatch === 64, () =>
        `maxBatch ${info.maxBatch}`);
      check(info.allocCount > 0, () => `allocCount ${info.allocCount}`);
    }),
};

const reusedViewCase: Case = {
  name: "forward returns one reused view; inputs at an offset are read correctly",
  run: () =>
    withModel(loadModel(DENSE), (model) => {
      const rows = readCsv(rtneuralData("dense_x_python.csv"));
      const first = model.forward(new Float32Array(rows[1]));
      const kept = first.slice();
      const second = model.forward(new Float32Array(rows[2]));
      check(first === second, () => "forward returned a new array");
      check(!sameValues(kept, second), () => "the view was not updated by the second forward");
      const backing = new Float32Array([99, 99, 99, rows[1][0]]);
      check(
        sameValues(model.forward(backing.subarray(3)), kept),
        () => "offset input read wrongly",
      );
    }),
};

const batchCase: Case = {
  name: "forwardBatch returns reused views that match forward row by row",
  run: () =>
    withModel(loadModel(DENSE, { maxBatch: 4 }), (model) => {
      const x = new Float32Array([0, 154.5, 293.9]);
      const rows = x.map((value) => model.forward(new Float32Array([value]))[0]);
      const batch = model.forwardBatch(x, 3);
      check(batch.length === 3 && closeValues(batch, rows), () => `batch ${batch} vs rows ${rows}`);
      check(model.forwardBatch(x, 3) === batch, () => "forwardBatch returned a new array");
      throwsCadenza(
        () => model.forwardBatch(new Float32Array(5), 5),
        "E_ARGUMENT",
        /1\.\.4/,
        "batch 5 > 4",
      );
      throwsCadenza(() => model.forwardBatch(x, 0), "E_ARGUMENT", /got 0/, "batch 0");
      throwsCadenza(
        () => model.forwardBatch(x, 2),
        "E_SHAPE",
        /expected Float32Array of 2/,
        "rows",
      );
    }),
};

const shapeErrorCase: Case = {
  name: "a wrong input length is E_SHAPE naming expected and got",
  run: () =>
    withModel(loadModel(DENSE), (model) => {
      const pattern =
        /dense\.json: forward input: expected Float32Array of 1, got Float32Array of 2/;
      throwsCadenza(() => model.forward(new Float32Array(2)), "E_SHAPE", pattern, "length 2");
      const f64 = new Float64Array(1) as unknown as Float32Array;
      throwsCadenza(() => model.forward(f64), "E_SHAPE", /got Float64Array/, "Float64Array");
    }),
};

const disposeCase: Case = {
  name: "every call after dispose throws E_DISPOSED; dispose is idempotent",
  run: async () => {
    const model = await loadModel(DENSE);
    model.dispose();
    model.dispose();
    check(model.disposed, () => "disposed is false");
    const x = new Float32Array(1);
    throwsCadenza(() => model.forward(x), "E_DISPOSED", /forward called after dispose/, "forward");
    throwsCadenza(() => model.forwardBatch(x, 1), "E_DISPOSED", /forwardBatch/, "forwardBatch");
    throwsCadenza(() => model.reset(), "E_DISPOSED", /reset/, "reset");
    throwsCadenza(() => model.nativeInfo(), "E_DISPOSED", /nativeInfo/, "nativeInfo");
    await rejectsCadenza(
      () => model.save(join(tmpdir(), "never.safetensors")),
      "E_DISPOSED",
      /save/,
      "save",
    );
  },
};

const ioErrorCase: Case = {
  name: "a missing file is E_IO naming the path",
  run: async () => {
    const path = join(tmpdir(), "cadenza-no-such-dir", "model.json");
    await rejectsCadenza(
      () => loadModel(path),
      "E_IO",
      /cadenza-no-such-dir\/model\.json/,
      "missing",
    );
  },
};

const saveCase: Case = {
  name: "save then load gives identical outputs (stateful full_model)",
  run: async () => {
    const dir = mkdtempSync(join(tmpdir(), "cadenza-api-"));
    try {
      const path = join(dir, "full.safetensors");
      let want: Float32Array[] = [];
      await withModel(loadModel(FULL), async (model) => {
        await model.save(path);
        want = stream(model, 40);
      });
      await withModel(loadModel(path), (model) => {
        check(model.parameterCount === rtneuralCounts(FULL).parameters, () => "params changed");
        const got = stream(model, 40);
        for (let i = 0; i < want.length; i++) {
          check(sameValues(got[i], want[i]), () => `step ${i}: ${got[i]} vs ${want[i]}`);
        }
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

const resetCase: Case = {
  name: "reset returns a stateful model to its initial state",
  run: () =>
    withModel(loadModel(FULL), (model) => {
      const fresh = stream(model, 8);
      model.reset();
      const again = stream(model, 8);
      check(!sameValues(fresh[7], fresh[0]), () => "the model carries no state (test is moot)");
      for (let i = 0; i < 8; i++) {
        check(sameValues(again[i], fresh[i]), () => `step ${i} after reset`);
      }
    }),
};

const optionsCase: Case = {
  name: "loader options: bytes, format, library",
  run: async () => {
    const bytes = new Uint8Array(readFileSync(DENSE));
    await withModel(loadModel(bytes, { library: "fast" }), (model) => {
      check(model.source === "<bytes>", () => `source ${model.source}`);
      check(
        /(libcadenza_fast\.\w+|cadenza_fast\.wasm)$/.test(model.nativeInfo().libraryPath),
        () => "not the fast library",
      );
    });
    await rejectsCadenza(
      () => loadModel(bytes, { format: "safetensors" }),
      "E_FORMAT",
      /<bytes>/,
      "as safetensors",
    );
    const bogus = { format: "keras" } as unknown as { format: "auto" };
    await rejectsCadenza(() => loadModel(DENSE, bogus), "E_ARGUMENT", /format/, "unknown format");
    await rejectsCadenza(
      () => loadModel(rtneuralModel("lstm_torch.json"), { format: "torch" }),
      "E_ARGUMENT",
      /layers/,
      "torch without layers",
    );
    const lib = join(tmpdir(), "cadenza-no-such-lib.so");
    await rejectsCadenza(
      () => loadModel(DENSE, { library: lib }),
      "E_NATIVE",
      /cadenza-no-such-lib/,
      "library",
    );
  },
};

const specCase: Case = {
  name: "modelFromSpec: a valid spec runs, a broken one names the field",
  run: async () => {
    await withModel(modelFromSpec(identitySpec(3)), (model) => {
      const y = model.forward(new Float32Array([1, -2, 3]));
      check(sameValues(y, new Float32Array([1, -2, 3])), () => `identity gave ${y}`);
      check(model.maxBatch === 4, () => `maxBatch ${model.maxBatch}`);
    });
    const broken = identitySpec(3);
    broken.layers[0].tensors.W = new Float32Array(8);
    await rejectsCadenza(
      () => modelFromSpec(broken, { source: "mine" }),
      "E_SHAPE",
      /mine.*W/,
      "short W",
    );
    await rejectsCadenza(
      () => modelFromSpec(identitySpec(3), { maxBatch: 0 }),
      "E_LIMIT",
      /maxBatch/,
      "maxBatch 0",
    );
  },
};

const nativeErrorCase: Case = {
  name: "a native create failure surfaces the library's message",
  run: async () => {
    const api = await openNative();
    throwsCadenza(() => api.create(new Uint8Array(12)), "E_FORMAT", /\w{4,}/, "zeroed image");
  },
};

export function apiCases(): Case[] {
  return [
    shapeCase,
    reusedViewCase,
    batchCase,
    shapeErrorCase,
    disposeCase,
    ioErrorCase,
    saveCase,
    resetCase,
    optionsCase,
    specCase,
    nativeErrorCase,
  ];
}
