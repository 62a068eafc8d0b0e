/**
 * `cadenza convert`, run in-process through main(): every conformance model (RTNeural JSON and
 * PyTorch state_dicts, ../shared/conformance) converted to safetensors and to RTNeural JSON and
 * back again; each converted file must hold the same spec and compute the same outputs, bit
 * for bit, on the conformance inputs. Then the refusals. Runtime-neutral; test/convert.test.ts
 * and test/deno/convert.test.ts register them.
 */

import {
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel, type Model } from "../../src/index.ts";
import type { TorchLayerDecl } from "../../src/model/formats/torch.ts";
import { loadSpec } from "../../src/model/load.ts";
import { archOf, type ModelSpec, resolveArch } from "../../src/model/spec.ts";
import { readCsv, Rng, rtneuralData, rtneuralModel } from "../helpers.ts";
import { type Case, check } from "./check.ts";
import { FIXTURES } from "./conformance.ts";
import { cli } from "./live.ts";

const MODELS_DIR = fileURLToPath(new URL("../../models/", import.meta.url));

interface Source {
  name: string;
  /** The conformance model file. */
  model: string;
  /** Its input rows (one value each). */
  inputs: string;
  torch?: TorchLayerDecl[];
}

const SOURCES: Source[] = [
  ...FIXTURES.map((f) => ({
    name: f.name,
    model: f.model,
    inputs: `${f.data}_x_python.csv`,
    torch: f.torch,
  })),
  { name: "full_model", model: "full_model.json", inputs: "dense_x_python.csv" },
];

async function withScratch(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "cadenza-convert-"));
  try {
    await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs `cadenza convert ...args`; it must succeed. Returns its stdout. */
async function convertOk(...args: string[]): Promise<string> {
  const result = await cli("convert", ...args);
  check(result.code === 0, () => `convert ${args.join(" ")}: exit ${result.code}: ${result.err}`);
  return result.out;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const wa = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const wb = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return wa.every((word, i) => word === wb[i]);
}

/** A layer's architecture, defaults filled, without its name (RTNeural JSON keeps none). */
function unnamedArch(spec: ModelSpec, index: number): string {
  const { name: _name, ...arch } = resolveArch(archOf(spec.layers[index]));
  return JSON.stringify(arch, Object.keys(arch).sort());
}

/** Same input width, layers, and every tensor bit for bit (layer names aside). */
function checkSameSpec(got: ModelSpec, want: ModelSpec, what: string): void {
  check(got.inputSize === want.inputSize, () => `${what}: inputSize ${got.inputSize}`);
  check(got.layers.length === want.layers.length, () => `${what}: ${got.layers.length} layers`);
  want.layers.forEach((layer, i) => {
    check(
      unnamedArch(got, i) === unnamedArch(want, i),
      () => `${what}: layer ${i}: ${unnamedArch(got, i)}, expected ${unnamedArch(want, i)}`,
    );
    for (const [name, values] of Object.entries(layer.tensors)) {
      const other = got.layers[i].tensors[name];
      check(
        other !== undefined && sameBits(other, values),
        () => `${what}: layer ${i} tensor ${name} differs`,
      );
    }
  });
}

/** Streams `rows` through each model from reset; every step's outputs must match bit for bit. */
function checkSameOutputs(reference: Model, others: Map<string, Model>, rows: number[][]): void {
  for (const model of [reference, ...others.values()]) model.reset();
  const x = new Float32Array(reference.inputSize);
  for (const [step, row] of rows.entries()) {
    x.set(row);
    const want = reference.forward(x).slice();
    for (const [what, model] of others) {
      const got = model.forward(x);
      check(sameBits(got, want), () => `${what}: step ${step}: [${got}], expected [${want}]`);
    }
  }
}

async function loadAll(paths: Record<string, string>): Promise<Map<string, Model>> {
  const models = new Map<string, Model>();
  for (const [what, path] of Object.entries(paths)) models.set(what, await loadModel(path));
  return models;
}

/**
 * IN -> a.safetensors and IN -> b.json; then a.safetensors -> c.json and b.json ->
 * d.safetensors. All four hold IN's spec; the two files of each format are the same bytes.
 */
function conversionCase(source: Source): Case {
  return {
    name: `convert ${source.name}: to safetensors and RTNeural and back, outputs bit-exact`,
    run: () =>
      withScratch(async (dir) => {
        const input = rtneuralModel(source.model);
        const flags: string[] = [];
        if (source.torch !== undefined) {
          writeFileSync(join(dir, "layers.json"), JSON.stringify(source.torch));
          flags.push("--layers", join(dir, "layers.json"));
        }
        const out = (name: string) => join(dir, name);
        const line = await convertOk(input, out("a.safetensors"), ...flags);
        check(/\(safetensors\): \d+ layers, \d+ parameters, \d+ bytes$/.test(line), () => line);
        await convertOk(input, out("b.json"), ...flags);
        await convertOk(out("a.safetensors"), out("c.json"));
        await convertOk(out("b.json"), out("d.safetensors"));
        const options = source.torch === undefined ? {} : { layers: source.torch };
        const { spec } = await loadSpec(input, options);
        for (const name of ["a.safetensors", "b.json", "c.json", "d.safetensors"]) {
          checkSameSpec((await loadSpec(out(name))).spec, spec, `${source.name} ${name}`);
        }
        const bytes = (name: string) => new Uint8Array(readFileSync(out(name)));
        check(sameBytes(bytes("b.json"), bytes("c.json")), () => "b.json and c.json differ");
        if (source.torch === undefined) {
          check(sameBytes(bytes("a.safetensors"), bytes("d.safetensors")), () =>
            "a.safetensors and d.safetensors differ");
        }
        await checkModels(input, options, dir, readCsv(rtneuralData(source.inputs)));
      }),
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

async function checkModels(
  input: string,
  options: { layers?: TorchLayerDecl[] },
  dir: string,
  rows: number[][],
): Promise<void> {
  const reference = await loadModel(input, options);
  const names = ["a.safetensors", "b.json", "c.json", "d.safetensors"];
  const converted = await loadAll(Object.fromEntries(names.map((n) => [n, join(dir, n)])));
  try {
    checkSameOutputs(reference, converted, rows);
  } finally {
    reference.dispose();
    for (const model of converted.values()) model.dispose();
  }
}

/** The files of `dir`, sorted: no temporary file may be left behind. */
function listing(dir: string): string {
  return readdirSync(dir).sort().join(", ");
}

const emotionCase: Case = {
  name: "convert: EmotionRecognizer to RTNeural and back; the note names what JSON cannot hold",
  run: () =>
    withScratch(async (dir) => {
      const input = join(MODELS_DIR, "EmotionRecognizer.safetensors");
      const result = await cli("convert", input, join(dir, "e.json"));
      check(result.code === 0, () => `exit ${result.code}: ${result.err}`);
      check(/metadata .*trained/.test(result.err), () => `no note: "${result.err}"`);
      await convertOk(join(dir, "e.json"), join(dir, "e.safetensors"));
      const { spec } = await loadSpec(input);
      checkSameSpec((await loadSpec(join(dir, "e.safetensors"))).spec, spec, "EmotionRecognizer");
      const rng = new Rng(7);
      const rows = Array.from({ length: 8 }, () => Array.from(rng.floats(128, -1, 1)));
      const reference = await loadModel(input);
      const converted = await loadAll({ "e.json": join(dir, "e.json") });
      try {
        checkSameOutputs(reference, converted, rows);
      } finally {
        reference.dispose();
        for (const model of converted.values()) model.dispose();
      }
    }),
};

const transformerCase: Case = {
  name: "convert: a transformer has no RTNeural equivalent: E_FORMAT names the layer",
  run: () =>
    withScratch(async (dir) => {
      const input = join(MODELS_DIR, "MelodyTransformer.safetensors");
      writeFileSync(join(dir, "m.json"), "kept");
      const result = await cli("convert", input, join(dir, "m.json"));
      check(result.code === 1, () => `exit ${result.code}`);
      check(
        /E_FORMAT: .*MelodyTransformer\.safetensors: .*layer 1 \(transformer\)/.test(result.err),
        () => result.err,
      );
      check(readFileSync(join(dir, "m.json"), "utf8") === "kept", () => "OUT was changed");
      check(listing(dir) === "m.json", () => `left behind: ${listing(dir)}`);
    }),
};

/** `convert ...args` must exit `code` with stderr matching `pattern`. */
async function refused(code: number, pattern: RegExp, ...args: string[]): Promise<void> {
  const result = await cli("convert", ...args);
  check(
    result.code === code && pattern.test(result.err),
    () =>
      `convert ${args.join(" ")}: exit ${result.code} (expected ${code}), stderr: ${result.err}`,
  );
}

const refusalCase: Case = {
  name: "convert: refuses to overwrite IN, unknown targets, a missing --layers; IN is kept",
  run: () =>
    withScratch(async (dir) => {
      const input = join(dir, "in.json");
      const original = readFileSync(rtneuralModel("gru.json"));
      writeFileSync(input, original);
      linkSync(input, join(dir, "link.json"));
      const same = /E_ARGUMENT: .*is the input file/;
      await refused(1, same, input, input);
      await refused(1, same, input, join(dir, "..", basename(dir), "in.json"));
      await refused(1, same, input, join(dir, "link.json"));
      await refused(2, /cannot tell the target format/, input, join(dir, "x.bin"));
      await refused(
        2,
        /ends in \.json.* --to is safetensors/,
        input,
        join(dir, "x.json"),
        "--to",
        "safetensors",
      );
      await refused(
        2,
        /--to must be safetensors, rtneural or onnx/,
        input,
        join(dir, "x"),
        "--to",
        "keras",
      );
      await refused(2, /expected IN OUT/, input);
      await refused(
        1,
        /E_ARGUMENT: .*--layers FILE/,
        rtneuralModel("gru_torch.json"),
        join(dir, "x.json"),
      );
      await refused(1, /E_IO: .*missing\.json/, join(dir, "missing.json"), join(dir, "x.json"));
      await refused(1, /E_IO: cannot write .*nowhere/, input, join(dir, "nowhere", "x.json"));
      check(sameBytes(new Uint8Array(readFileSync(input)), original), () => "IN was changed");
      check(listing(dir) === "in.json, link.json", () => `left behind: ${listing(dir)}`);
    }),
};

const replaceCase: Case = {
  name: "convert: an existing OUT is replaced whole; a failed rename leaves no temporary file",
  run: () =>
    withScratch(async (dir) => {
      const out = join(dir, "out.safetensors");
      writeFileSync(out, "x".repeat(100_000));
      await convertOk(rtneuralModel("dense.json"), out);
      const { spec } = await loadSpec(out);
      check(spec.layers.length > 0, () => "OUT does not load");
      // A directory in OUT's place makes the final rename fail after the data was written.
      mkdirSync(join(dir, "busy.json"));
      writeFileSync(join(dir, "busy.json", "keep"), "");
      await refused(
        1,
        /E_IO: cannot write .*busy\.json/,
        rtneuralModel("dense.json"),
        join(dir, "busy.json"),
      );
      check(listing(dir) === "busy.json, out.safetensors", () => `left behind: ${listing(dir)}`);
    }),
};

export function convertCases(): Case[] {
  return [
    ...SOURCES.map(conversionCase),
    emotionCase,
    transformerCase,
    refusalCase,
    replaceCase,
  ];
}
