/**
 * What a demanding (or careless) caller sends: views with byte offsets, shared memory and
 * aliasing, keys that are prototype names, truncated files, bad option objects, hostile input
 * rows. Runtime-neutral: test/hostile.test.ts runs these under Bun, test/deno/hostile.test.ts
 * under Deno.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseRows } from "../../src/model/formats/rows.ts";
import {
  EmotionPipeline,
  loadModel,
  loadSpec,
  type Model,
  modelFromSpec,
  type ModelSpec,
  Pipeline,
  type PipelineModel,
  readSafetensors,
  writeSafetensors,
} from "../../src/index.ts";
import { outputSizeOf, randomModel, Rng } from "../helpers.ts";
import { type Case, check, rejectsCadenza, throwsCadenza } from "./check.ts";

function sameValues(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((value, i) => Object.is(value, b[i]));
}

/** Two dense layers and an LSTM: stateless and stateful layers, odd widths. */
function smallSpec(seed: number): ModelSpec {
  const rng = new Rng(seed);
  return randomModel(rng, ["dense", "lstm", "dense"], 5, [{ outputSize: 17 }, { outputSize: 3 }]);
}

async function withModel(spec: ModelSpec, body: (model: Model) => void | Promise<void>) {
  const model = await modelFromSpec(spec);
  try {
    await body(model);
  } finally {
    model.dispose();
  }
}

const viewsCase: Case = {
  name: "hostile: inputs that are offset subarrays or shared memory give the same outputs",
  run: () =>
    withModel(smallSpec(1), (model) => {
      const rng = new Rng(2);
      const x = rng.floats(model.inputSize * 3, -1, 1);
      const plain = (batch: number, input: Float32Array) => {
        model.reset();
        return batch === 0
          ? model.forward(input).slice()
          : model.forwardBatch(input, batch).slice();
      };
      const want1 = plain(0, x.slice(0, model.inputSize));
      const want3 = plain(3, x.slice());
      // A view 3 floats into a larger buffer: the pointer passed must include byteOffset.
      const padded = new Float32Array(x.length + 3);
      padded.set(x, 3);
      const offset = padded.subarray(3);
      check(offset.byteOffset === 12, () => "the view has no offset");
      check(sameValues(plain(0, offset.subarray(0, model.inputSize)), want1), () => "offset");
      check(sameValues(plain(3, offset), want3), () => "offset batch");
      const shared = new Float32Array(new SharedArrayBuffer(4 * (x.length + 1)), 4);
      shared.set(x);
      check(sameValues(plain(0, shared.subarray(0, model.inputSize)), want1), () => "shared");
      check(sameValues(plain(3, shared), want3), () => "shared batch");
    }),
};

const aliasCase: Case = {
  name: "hostile: the model's own output view fed back as its input reads the values first",
  run: async () => {
    const rng = new Rng(5);
    const spec = randomModel(rng, ["dense", "gru", "dense"], 4, [
      { outputSize: 9 },
      { outputSize: 6 },
      { outputSize: 4 },
    ]);
    await withModel(spec, (model) => {
      const x = rng.floats(4, -1, 1);
      model.reset();
      const want = model.forward(model.forward(x).slice()).slice();
      model.reset();
      const fed = model.forward(model.forward(x));
      check(sameValues(fed, want), () => "forward(its own output view) differs from a copy");
      const rows = rng.floats(8, -1, 1);
      const batchWant = model.forwardBatch(model.forwardBatch(rows, 2).slice(), 2).slice();
      const batchFed = model.forwardBatch(model.forwardBatch(rows, 2), 2);
      check(sameValues(batchFed, batchWant), () => "forwardBatch(its own output view) differs");
    });
  },
};

const ownCopyCase: Case = {
  name: "hostile: arrays the caller reuses after modelFromSpec change neither spec nor save()",
  run: async () => {
    const spec = smallSpec(10);
    const dir = mkdtempSync(join(tmpdir(), "cadenza-hostile-"));
    try {
      await withModel(spec, async (model) => {
        const x = new Rng(11).floats(model.inputSize, -1, 1);
        model.reset();
        const want = model.forward(x).slice();
        for (const layer of spec.layers) {
          for (const values of Object.values(layer.tensors)) values.fill(0);
        }
        const held = model.spec.layers[0].tensors.W;
        check(held.some((v) => v !== 0), () => "model.spec shares the caller's arrays");
        const path = join(dir, "copy.safetensors");
        await model.save(path);
        const again = await loadModel(path);
        try {
          check(sameValues(again.forward(x), want), () => "save() wrote the caller's new values");
        } finally {
          again.dispose();
        }
      });
      await rejectsCadenza(
        () => modelFromSpec(smallSpec(12), null as unknown as undefined),
        "E_ARGUMENT",
        /options: expected an object \(or nothing\), got null/,
        "modelFromSpec options null",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

/** A PyTorch LSTM state_dict (H = 3, 2 inputs) as nested JSON arrays. */
function lstmStateDict(rng: Rng): Uint8Array {
  const matrix = (rows: number, cols: number) =>
    Array.from({ length: rows }, () => Array.from(rng.floats(cols, -1, 1)));
  const dict = {
    "lstm.weight_ih_l0": matrix(12, 2),
    "lstm.weight_hh_l0": matrix(12, 3),
    "lstm.bias_ih_l0": Array.from(rng.floats(12, -1, 1)),
    "lstm.bias_hh_l0": Array.from(rng.floats(12, -1, 1)),
  };
  return new TextEncoder().encode(JSON.stringify(dict));
}

const torchDeclCase: Case = {
  name: "hostile: a state_dict's lstm with an activation applies it; a misspelled field is refused",
  run: async () => {
    const bytes = lstmStateDict(new Rng(13));
    const plain = await loadModel(bytes, {
      format: "torch",
      layers: [{ kind: "lstm", name: "lstm" }],
    });
    const relu = await loadModel(bytes, {
      format: "torch",
      layers: [{ kind: "lstm", name: "lstm", activation: "relu" }],
    });
    try {
      const rng = new Rng(14);
      let negatives = 0;
      for (let step = 0; step < 8; step++) {
        const x = rng.floats(2, -2, 2);
        const want = plain.forward(x).map((v) => Math.max(0, v));
        negatives += want.filter((v) => v === 0).length;
        check(sameValues(relu.forward(x), want), () => `step ${step}: the activation was dropped`);
      }
      check(negatives > 0, () => "no negative LSTM output: the check proves nothing");
    } finally {
      plain.dispose();
      relu.dispose();
    }
    const typo = [{ kind: "lstm", name: "lstm", activaton: "relu" }] as unknown as [];
    await rejectsCadenza(
      () => loadSpec(bytes, { format: "torch", layers: typo }),
      "E_ARGUMENT",
      /declared layer 0 \(lstm "lstm"\): activaton: expected nothing \(a lstm declaration takes .*activation/,
      "a misspelled declaration field",
    );
  },
};

/** A wrapper that hides the native model, so the pipeline runs it node by node. */
function nodeByNode(model: Model): PipelineModel {
  return {
    inputSize: model.inputSize,
    outputSize: model.outputSize,
    parameterCount: model.parameterCount,
    weightBytes: model.weightBytes,
    forward: (x) => model.forward(x),
    reset: () => model.reset(),
    dispose: () => model.dispose(),
  };
}

const pipelineAliasCase: Case = {
  name: "hostile: Pipeline.step(one of its own outputs) equals step(a copy), native or not",
  run: async () => {
    const rng = new Rng(15);
    const a = await modelFromSpec(randomModel(rng, ["dense"], 4, [{ outputSize: 4 }]));
    const b = await modelFromSpec(randomModel(rng, ["dense"], 4, [{ outputSize: 3 }]));
    const nodes = [
      { name: "A", model: "A", inputs: [{ from: "input" }] },
      { name: "B", model: "B", inputs: [{ from: "input" }] },
    ];
    const x = rng.floats(4, -1, 1);
    try {
      for (const native of [true, false]) {
        const models = native ? { A: a, B: b } : { A: nodeByNode(a), B: nodeByNode(b) };
        const pipeline = new Pipeline(nodes, models);
        check(pipeline.native === native, () => `native is ${pipeline.native}`);
        const want = pipeline.step(pipeline.step(x).A.slice()).B.slice();
        const got = pipeline.step(pipeline.step(x).A).B;
        check(sameValues(got, want), () => `native ${native}: step(outputs.A) differs`);
      }
    } finally {
      a.dispose();
      b.dispose();
    }
  },
};

const protoMetaCase: Case = {
  name: 'hostile: a metadata key "__proto__" survives a safetensors round trip byte for byte',
  run: () => {
    const spec = smallSpec(6);
    spec.meta = JSON.parse('{"__proto__": "kept", "note": "also kept"}');
    const bytes = writeSafetensors(spec);
    const back = readSafetensors(bytes, "proto.safetensors");
    const meta = back.meta ?? {};
    check(
      Object.hasOwn(meta, "__proto__") && meta["__proto__"] === "kept",
      () => `meta read back: ${JSON.stringify(meta)}`,
    );
    check(Object.getPrototypeOf(meta) === Object.prototype, () => "meta's prototype changed");
    const again = writeSafetensors(back);
    check(
      again.length === bytes.length && again.every((b, i) => b === bytes[i]),
      () => "the rewritten file differs",
    );
  },
};

const truncatedCase: Case = {
  name: "hostile: a truncated safetensors file or an absurd header length names the header",
  run: async () => {
    const bytes = writeSafetensors(smallSpec(7));
    await rejectsCadenza(
      () => loadSpec(bytes.slice(0, 40)),
      "E_FORMAT",
      /<bytes>: header length \d+ is beyond the file \(32 bytes after the length\)/,
      "a file cut inside its header",
    );
    const huge = bytes.slice();
    new DataView(huge.buffer).setBigUint64(0, 2n ** 60n + 5n, true);
    await rejectsCadenza(
      () => loadSpec(huge),
      "E_FORMAT",
      /header length 1152921504606846981 is beyond the file/,
      "a header length above 2^53",
    );
    await rejectsCadenza(
      () => loadSpec(new TextEncoder().encode('{"layers": 3')),
      "E_FORMAT",
      /expected a safetensors file, an ONNX file or JSON \(.*\), got none of them \(.*JSON/,
      "broken JSON is still reported as JSON",
    );
  },
};

const protoGraphCase: Case = {
  name: 'hostile: "__proto__" as a model key and node name in a graph works like any name',
  run: async () => {
    const spec = smallSpec(8);
    const bytes = writeSafetensors(spec);
    const files = JSON.parse('{"__proto__": 0}') as Record<string, Uint8Array>;
    Object.defineProperty(files, "__proto__", { value: bytes, enumerable: true });
    const nodes = [{ name: "__proto__", model: "__proto__", inputs: [{ from: "input" }] }];
    const pipeline = await Pipeline.fromGraph({ nodes, files });
    try {
      check(Object.getPrototypeOf(pipeline.models) === Object.prototype, () => "models proto");
      const out = pipeline.step(new Float32Array(5).fill(0.5));
      check(
        Object.hasOwn(out, "__proto__") && out["__proto__"].length === outputSizeOf(spec),
        () => `outputs keys: ${Object.keys(out)}`,
      );
    } finally {
      pipeline.dispose();
    }
  },
};

const optionsCase: Case = {
  name: "hostile: null or misspelled options and a directory path are CadenzaErrors naming it",
  run: async () => {
    const bytes = writeSafetensors(smallSpec(9));
    await rejectsCadenza(
      () => loadModel(bytes, null as unknown as undefined),
      "E_ARGUMENT",
      /options: expected an object \(or nothing\), got null/,
      "loadModel options null",
    );
    await rejectsCadenza(
      () => loadModel(bytes, { precison: "bf16" } as unknown as undefined),
      "E_ARGUMENT",
      /options\.precison: expected no such option \(the options are .*precision/,
      "a misspelled loadModel option",
    );
    await rejectsCadenza(
      () => modelFromSpec(smallSpec(9), { format: "torch" } as unknown as undefined),
      "E_ARGUMENT",
      /options\.format: expected no such option/,
      "a loading option given to modelFromSpec",
    );
    await rejectsCadenza(
      () => loadSpec(bytes, 7 as unknown as undefined),
      "E_ARGUMENT",
      /options: expected an object/,
      "loadSpec options 7",
    );
    const dir = mkdtempSync(join(tmpdir(), "cadenza-hostile-"));
    try {
      await rejectsCadenza(
        () => loadSpec(dir),
        "E_IO",
        new RegExp(`cannot read ${dir}: .*[Ii]s a directory`),
        "a directory",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};

const emotionArgumentCase: Case = {
  name: "hostile: stepFromEmotion with nothing or a plain array is E_ARGUMENT",
  run: async () => {
    const pipeline = await EmotionPipeline.load();
    try {
      for (const bad of [undefined, null, new Array(64).fill(0), new Float64Array(64)]) {
        throwsCadenza(
          () => pipeline.stepFromEmotion(bad as unknown as Float32Array),
          "E_ARGUMENT",
          /stepFromEmotion: expected a Float32Array of 64, got /,
          `stepFromEmotion(${Object.prototype.toString.call(bad)})`,
        );
      }
    } finally {
      pipeline.dispose();
    }
  },
};

const rowsCase: Case = {
  name: "hostile: run --input rows: CRLF, CR, blank lines, comments; bad numbers name the line",
  run: () => {
    const text = "# header\r\n1, 2\r\n\r\n  \r\n3 4 # trailing note\r5;6\n#end";
    const rows = parseRows(text, 2, "in.csv");
    check(rows.length === 3, () => `${rows.length} rows`);
    const flat = rows.flatMap((row) => Array.from(row));
    check(flat.join() === "1,2,3,4,5,6", () => `values ${flat}`);
    const bad: [string, RegExp][] = [
      ["1,2\n1e39,0\n", /^in\.csv:2: expected a number within float32 range .*"1e39"/],
      ["0x10,1\n", /^in\.csv:1: expected a number, got "0x10"/],
      ["1,Infinity\n", /^in\.csv:1: expected a number, got "Infinity"/],
      ["1,2,\n3\n", /^in\.csv:2: expected 2 values \(the model's input size\), got 1/],
      ["\r\n# only comments\r\n", /^in\.csv: no input rows/],
    ];
    for (const [input, pattern] of bad) {
      throwsCadenza(
        () => parseRows(input, 2, "in.csv"),
        pattern.source.includes("values") ? "E_SHAPE" : "E_FORMAT",
        pattern,
        JSON.stringify(input),
      );
    }
  },
};

export const hostileCases: Case[] = [
  viewsCase,
  aliasCase,
  ownCopyCase,
  torchDeclCase,
  pipelineAliasCase,
  protoMetaCase,
  truncatedCase,
  protoGraphCase,
  optionsCase,
  emotionArgumentCase,
  rowsCase,
];
