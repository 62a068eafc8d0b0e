/**
 * Structure-aware fuzzing of the TypeScript readers (issue 14), shared by
 * test/reader-fuzz.test.ts (Bun) and test/deno/reader-fuzz.test.ts. Each reader starts from
 * valid files and gets mutants that keep their structure and break one thing in it:
 * - JSON formats (RTNeural, amp, state_dict, safetensors' header): the parsed tree is mutated
 *   (a node replaced by a boundary value: huge, negative, fractional, NaN-like, a string, null,
 *   an empty or deep array; a key removed, renamed or duplicated into another object) and
 *   written back;
 * - binary formats (safetensors, ONNX, MIDI, WAV): their length and count fields (the
 *   safetensors header length, MIDI chunk lengths and variable-length deltas, RIFF chunk sizes,
 *   protobuf varints) are set to boundary values, and bytes are flipped, cut or repeated.
 * Every mutant must give a result or a CadenzaError with a message shorter than 1,000
 * characters; anything else (TypeError, RangeError, a hang) fails the run with its seed and
 * iteration, so that it can be replayed and kept as a regression file under test/fuzz/.
 *
 * CADENZA_READER_FUZZ_ITERS sets the mutants per format (default 150);
 * CADENZA_READER_FUZZ_SEED the seed; CADENZA_FUZZ_LAST names a file that holds the mutant under
 * way (what a hang or a crash was reading).
 */

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseWav } from "../../src/audio/wav.ts";
import { CadenzaError } from "../../src/errors.ts";
import { envVar } from "../../src/native/io.ts";
import { exportOnnx } from "../../src/model/formats/onnx-export.ts";
import { toRtneural } from "../../src/model/formats/rtneural.ts";
import { loadSpec, type SpecOptions } from "../../src/model/load.ts";
import { fromMidi } from "../../src/music/midi.ts";
import { randomModel, Rng } from "../helpers.ts";
import { ampJson } from "./amp.ts";
import { encodeWav } from "./audio.ts";
import { type Case, fail } from "./check.ts";

const MODELS = fileURLToPath(new URL("../../models/", import.meta.url));
const enc = (s: string) => new TextEncoder().encode(s);

const BOUNDARY_VALUES: unknown[] = [
  0,
  -1,
  1,
  0.5,
  -0.0,
  1e300,
  -1e300,
  2 ** 31,
  2 ** 32,
  2 ** 53 + 2,
  1e-320,
  "NaN",
  "",
  "x",
  null,
  true,
  [],
  {},
  [[[[[]]]]],
  [1e308, -1e308],
  Array(70).fill(0),
];
const BOUNDARY_INTS = [0, 1, 2, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];

type Json = unknown;

/** Every container (array or object) in `tree`, with its path. */
function containers(tree: Json, out: (unknown[] | Record<string, unknown>)[] = []) {
  if (Array.isArray(tree)) {
    out.push(tree);
    // Long arrays of numbers: sample a few, not every element.
    for (let i = 0; i < tree.length; i += Math.max(1, tree.length >> 3)) containers(tree[i], out);
  } else if (tree !== null && typeof tree === "object") {
    out.push(tree as Record<string, unknown>);
    for (const v of Object.values(tree)) containers(v, out);
  }
  return out;
}

/** One structural mutation of a JSON tree, in place (the tree is a fresh copy). */
function mutateTree(tree: Json, rng: Rng): void {
  const all = containers(tree);
  const node = rng.pick(all);
  // A copy of another part of the file (a matrix where a vector belongs) or a boundary value.
  const value = structuredClone(rng.next() < 0.15 ? rng.pick(all) : rng.pick(BOUNDARY_VALUES));
  if (Array.isArray(node)) {
    const push = node.length === 0 || rng.next() < 0.2;
    const cut = !push && rng.next() < 0.2;
    if (push) node.push(value);
    else if (cut) node.length = rng.int(0, node.length - 1);
    else node[rng.int(0, node.length - 1)] = value;
    return;
  }
  const keys = Object.keys(node);
  if (keys.length === 0) {
    node["x"] = value;
    return;
  }
  const key = rng.pick(keys);
  const r = rng.next();
  if (r < 0.15) delete node[key];
  else if (r < 0.25) {
    node[key + "_"] = node[key];
    delete node[key];
  } else node[key] = value;
}

function jsonMutant(seed: Uint8Array, rng: Rng): Uint8Array {
  const tree = JSON.parse(new TextDecoder().decode(seed));
  for (let n = rng.int(1, 3); n > 0; n--) mutateTree(tree, rng);
  return enc(JSON.stringify(tree));
}

function byteMutant(seed: Uint8Array, rng: Rng, fields: number[]): Uint8Array {
  let out = seed.slice();
  for (let n = rng.int(1, 3); n > 0; n--) {
    const r = rng.next();
    if (r < 0.4 && fields.length > 0) {
      // A length or count field set to a boundary value (little or big endian, 1-8 bytes).
      const at = rng.pick(fields);
      const width = rng.pick([1, 2, 4, 8]);
      const v = BigInt(rng.pick(BOUNDARY_INTS)) * (rng.next() < 0.2 ? 3n : 1n);
      for (let i = 0; i < width && at + i < out.length; i++) {
        const shift = BigInt(8 * (rng.next() < 0.5 ? i : width - 1 - i));
        out[at + i] = Number((v >> shift) & 255n);
      }
    } else if (r < 0.6) out[rng.int(0, out.length - 1)] ^= 1 << rng.int(0, 7);
    else if (r < 0.75) out = out.slice(0, rng.int(0, out.length));
    else if (r < 0.9) {
      const a = rng.int(0, out.length - 1);
      const b = Math.min(out.length, a + rng.int(1, 64));
      const copy = new Uint8Array(out.length + b - a);
      copy.set(out.subarray(0, b));
      copy.set(out.subarray(a), b);
      out = copy;
    } else out[rng.int(0, out.length - 1)] = rng.pick([0, 0x7f, 0x80, 0xff]);
  }
  return out;
}

/** A safetensors file with its JSON header mutated as a tree (the length kept consistent). */
function safetensorsHeaderMutant(seed: Uint8Array, rng: Rng): Uint8Array {
  const len = Number(new DataView(seed.buffer, seed.byteOffset).getBigUint64(0, true));
  const header = jsonMutant(seed.subarray(8, 8 + len), rng);
  const out = new Uint8Array(8 + header.length + seed.length - 8 - len);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  out.set(seed.subarray(8 + len), 8 + header.length);
  return out;
}

/** Offsets of the MIDI file's chunk lengths and of every byte of its first track. */
function midiFields(bytes: Uint8Array): number[] {
  const fields = [4, 10, 12, 18];
  for (let i = 22; i < bytes.length; i++) fields.push(i);
  return fields;
}

/** Offsets of the RIFF size and of every chunk's size field. */
function wavFields(bytes: Uint8Array): number[] {
  const fields = [4];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 12; at + 8 <= bytes.length;) {
    fields.push(at + 4, at + 8, at + 10, at + 12, at + 14);
    at += 8 + view.getUint32(at + 4, true) + (view.getUint32(at + 4, true) & 1);
  }
  return fields;
}

interface Target {
  name: string;
  seeds: Uint8Array[];
  mutate: (seed: Uint8Array, rng: Rng) => Uint8Array;
  read: (bytes: Uint8Array) => unknown;
}

function smallSpecs() {
  const specs = [];
  for (let seed = 77; seed < 85; seed++) {
    const rng = new Rng(seed);
    specs.push(
      randomModel(rng, ["dense", "lstm", "dense"], 3, [{ outputSize: 5 }, { outputSize: 2 }]),
      randomModel(rng, ["gru", "dense"], 2, [{ outputSize: 3 }]),
      randomModel(rng, ["conv1d", "dense"], 2, [{ outputSize: 3 }]),
    );
  }
  return specs;
}

function lstmStateDict(rng: Rng): Uint8Array {
  const matrix = (rows: number, cols: number) =>
    Array.from({ length: rows }, () => Array.from(rng.floats(cols, -1, 1)));
  return enc(JSON.stringify({
    "lstm.weight_ih_l0": matrix(12, 2),
    "lstm.weight_hh_l0": matrix(12, 3),
    "lstm.bias_ih_l0": Array.from(rng.floats(12, -1, 1)),
    "lstm.bias_hh_l0": Array.from(rng.floats(12, -1, 1)),
  }));
}

/**
 * A two-track MIDI file written by hand (the reader's own writer is not the oracle): tempo,
 * time signature, a track name, notes with running status, a pitch bend and a controller.
 */
function handMidi(): Uint8Array {
  const chunk = (id: string, body: number[]) => [
    ...enc(id),
    (body.length >>> 24) & 255,
    (body.length >>> 16) & 255,
    (body.length >>> 8) & 255,
    body.length & 255,
    ...body,
  ];
  const conductor = [
    0,
    0xff,
    0x51,
    3,
    0x07,
    0xa1,
    0x20, // 120 bpm
    0,
    0xff,
    0x58,
    4,
    4,
    2,
    24,
    8, // 4/4
    0,
    0xff,
    0x2f,
    0,
  ];
  const notes = [
    0,
    0xff,
    0x03,
    4,
    ...enc("lead"),
    0,
    0xc0,
    5, // program change
    0,
    0x90,
    60,
    90, // note on
    0x83,
    0x60,
    64,
    80, // running status, delta 480
    0x83,
    0x60,
    0x80,
    60,
    0,
    0,
    0xe0,
    0,
    0x50, // pitch bend
    0,
    0xb0,
    7,
    100, // controller
    0x87,
    0x40,
    0x80,
    64,
    0,
    0,
    0xff,
    0x2f,
    0,
  ];
  return new Uint8Array([
    ...chunk("MThd", [0, 1, 0, 2, 0x01, 0xe0]),
    ...chunk("MTrk", conductor),
    ...chunk("MTrk", notes),
  ]);
}

function targets(): Target[] {
  const specs = smallSpecs();
  const safetensors = ["MelodyTransformer", "EmotionRecognizer"].map((n) =>
    new Uint8Array(readFileSync(`${MODELS}${n}.safetensors`))
  );
  const load = (options: SpecOptions) => (bytes: Uint8Array) => loadSpec(bytes, options);
  // The random specs that each writer can express (RTNeural lacks some activations, ONNX
  // some kinds).
  const written = (write: (s: (typeof specs)[number]) => Uint8Array) => {
    const out: Uint8Array[] = [];
    for (const s of specs) {
      try {
        out.push(write(s));
      } catch (err) {
        if (!(err instanceof CadenzaError)) throw err;
      }
    }
    if (out.length === 0) fail("no seed spec could be written");
    return out;
  };
  const onnx = written((s) => exportOnnx(s).bytes);
  const rtneural = written((s) => enc(JSON.stringify(toRtneural(s))));
  const midi = [handMidi()];
  const wav = [
    encodeWav("int16", 48_000, [[0.5, -0.5], [0.25, 0], [-1, 1]]),
    encodeWav("float32", 22_050, [[0.1], [0.2], [-0.3]], { extensible: true, extraChunks: true }),
  ];
  return [
    {
      name: "safetensors (bytes)",
      seeds: safetensors,
      mutate: (s, rng) => byteMutant(s, rng, [0, 1, 2, 3, 4, 5, 6, 7]),
      read: load({ format: "safetensors" }),
    },
    {
      name: "safetensors (header tree)",
      seeds: safetensors,
      mutate: safetensorsHeaderMutant,
      read: load({}),
    },
    {
      name: "RTNeural JSON",
      seeds: rtneural,
      mutate: jsonMutant,
      read: load({ format: "rtneural" }),
    },
    {
      name: "amp JSON",
      seeds: [enc(JSON.stringify(ampJson({ unit: "LSTM", hidden: 4, inputs: 1, skip: 1 }, 3)))],
      mutate: jsonMutant,
      read: load({}),
    },
    {
      name: "state_dict",
      seeds: [lstmStateDict(new Rng(5))],
      mutate: jsonMutant,
      read: load({ format: "torch", layers: [{ kind: "lstm", name: "lstm" }] }),
    },
    {
      name: "ONNX",
      seeds: onnx,
      mutate: (s, rng) => byteMutant(s, rng, Array.from({ length: s.length }, (_, i) => i)),
      read: load({ format: "onnx" }),
    },
    {
      name: "MIDI",
      seeds: midi,
      mutate: (s, rng) => byteMutant(s, rng, midiFields(s)),
      read: fromMidi,
    },
    {
      name: "WAV",
      seeds: wav,
      mutate: (s, rng) => byteMutant(s, rng, wavFields(s)),
      read: (b) => parseWav(b, "fuzz.wav"),
    },
  ];
}

/** Reads `bytes`; returns "ok" or "refused", or fails with what went wrong. */
export async function readOne(target: Target, bytes: Uint8Array, where: string) {
  try {
    await target.read(bytes);
    return "ok";
  } catch (err) {
    if (!(err instanceof CadenzaError)) {
      fail(`${target.name} ${where}: ${err instanceof Error ? err.stack : String(err)}`);
    }
    if (err.message.length >= 1000) {
      fail(`${target.name} ${where}: a ${err.message.length}-char message`);
    }
    return "refused";
  }
}

export function readerFuzzCases(iters: number, seed: number): Case[] {
  return targets().map((target) => ({
    name: `reader fuzz: ${target.name}: ${iters} structure-aware mutants give a result or a ` +
      "CadenzaError",
    run: async () => {
      const rng = new Rng(seed);
      const last = envVar("CADENZA_FUZZ_LAST");
      const tally = { ok: 0, refused: 0 };
      for (const s of target.seeds) {
        if (await readOne(target, s, "seed") !== "ok") fail(`${target.name}: a seed is refused`);
      }
      for (let i = 0; i < iters; i++) {
        const bytes = target.mutate(rng.pick(target.seeds), rng);
        // The mutant under way, kept where a hang or crash can be picked up from.
        if (last !== undefined) writeFileSync(last, bytes);
        tally[await readOne(target, bytes, `seed ${seed} iteration ${i}`)]++;
      }
      if (envVar("CADENZA_FUZZ_VERBOSE")) console.log(target.name, JSON.stringify(tally));
      if (tally.refused === 0) fail(`${target.name}: no mutant was refused; the mutator is idle`);
    },
  }));
}

const REGRESSIONS = fileURLToPath(new URL("../fuzz/", import.meta.url));

/** Each file the fuzzers found a fault with, read again by its reader (by extension). */
export const regressionCase: Case = {
  name: "reader fuzz: every file in test/fuzz/ (faults found by fuzzing) is a short CadenzaError",
  run: async () => {
    const readers: Record<string, (b: Uint8Array) => unknown> = {
      mid: (b) => fromMidi(b),
      wav: (b) => parseWav(b, "fuzz.wav"),
      safetensors: (b) => loadSpec(b, { format: "safetensors" }),
      json: (b) => loadSpec(b),
      onnx: (b) => loadSpec(b, { format: "onnx" }),
    };
    const names = readdirSync(REGRESSIONS).filter((n) => !n.endsWith(".md"));
    if (names.length === 0) fail("test/fuzz/ holds no files");
    for (const name of names) {
      const read = readers[name.slice(name.lastIndexOf(".") + 1)];
      if (read === undefined) fail(`test/fuzz/${name}: no reader for its extension`);
      const bytes = new Uint8Array(readFileSync(REGRESSIONS + name));
      const target = { name: `test/fuzz/${name}`, seeds: [], mutate: (b: Uint8Array) => b, read };
      if (await readOne(target, bytes, "regression") !== "refused") {
        fail(`test/fuzz/${name} was read as valid`);
      }
    }
  },
};
