/**
 * Limits and files that change underfoot (issue 14), shared by test/limits.test.ts (Bun) and
 * test/deno/limits.test.ts: a 10 GB safetensors header length, a tensor past the size cap,
 * JSON nested 100,000 deep, a MIDI file whose deltas add up past a billion ticks, and a model
 * file truncated and replaced while it is being loaded. Each is a CadenzaError with a short
 * message; none allocates what the file claims (the test would run out of memory or time).
 */

import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { CadenzaError } from "../../src/errors.ts";
import { writeSafetensors } from "../../src/model/formats/safetensors.ts";
import { loadModel, loadSpec } from "../../src/model/load.ts";
import { fromMidi } from "../../src/music/midi.ts";
import { runtime } from "../../src/native/io.ts";
import { randomModel, Rng } from "../helpers.ts";
import { type Case, check, fail, rejectsCadenza, throwsCadenza } from "./check.ts";
import { sleep } from "./rt.ts";

/** A message this long or longer would be echoing the file back. */
const MESSAGE_MAX = 1000;

function short(err: CadenzaError, what: string): void {
  check(err.message.length < MESSAGE_MAX, () => `${what}: a ${err.message.length}-char message`);
}

const encode = (text: string) => new TextEncoder().encode(text);

function smallSafetensors(seed: number): Uint8Array {
  const spec = randomModel(new Rng(seed), ["dense", "gru", "dense"], 4, [{ outputSize: 9 }, {
    outputSize: 3,
  }]);
  return writeSafetensors(spec);
}

/** `bytes` with its JSON header rewritten by `edit`. */
function withHeader(bytes: Uint8Array, edit: (h: Record<string, unknown>) => void): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const len = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + len)));
  edit(header);
  const h = encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + bytes.length - 8 - len);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(bytes.subarray(8 + len), 8 + h.length);
  return out;
}

const headerCase: Case = {
  name: "limits: a 10 GB safetensors header length is E_FORMAT at once, read as given or detected",
  run: async () => {
    const bytes = smallSafetensors(3).slice();
    new DataView(bytes.buffer).setBigUint64(0, 10_000_000_000n, true);
    const err = await rejectsCadenza(
      () => loadSpec(bytes, { format: "safetensors" }),
      "E_FORMAT",
      /header length 10000000000 is beyond the file/,
      "a 10 GB header length",
    );
    short(err, "10 GB header");
    await rejectsCadenza(() => loadSpec(bytes), "E_FORMAT", /./, "the same, format detected");
  },
};

const tensorCase: Case = {
  name: "limits: a tensor declared 200,000 x 200,000 (160 GB) is refused without allocating it",
  run: async () => {
    const huge = withHeader(smallSafetensors(4), (h) => {
      const key = Object.keys(h).find((k) => k !== "__metadata__")!;
      h[key] = { dtype: "F32", shape: [200_000, 200_000], data_offsets: [0, 160_000_000_000] };
    });
    const err = await rejectsCadenza(
      () => loadSpec(huge),
      "E_FORMAT",
      /tensor "layers\.0\.W": data_offsets: expected \[begin, end\] within the \d+ data bytes, got \[0, 160000000000\]/,
      "a 160 GB tensor",
    );
    short(err, "160 GB tensor");
  },
};

const DEPTH = 100_000;

const nestedCase: Case = {
  name: `limits: JSON nested ${DEPTH} deep (arrays, objects, an RTNeural weight) is refused ` +
    "with a short message",
  run: async () => {
    const texts = {
      arrays: "[".repeat(DEPTH) + "]".repeat(DEPTH),
      objects: '{"a":'.repeat(DEPTH) + "1" + "}".repeat(DEPTH),
      rtneural: '{"in_shape":[null,null,1],"layers":[{"type":"dense","shape":[null,null,1],' +
        '"weights":' + "[".repeat(DEPTH) + "]".repeat(DEPTH) + "}]}",
      amp: '{"model_data":{"layers":1},"state_dict":' + '{"a":'.repeat(DEPTH) + "1" +
        "}".repeat(DEPTH) + "}",
    };
    for (const [what, text] of Object.entries(texts)) {
      let err: unknown;
      try {
        await loadSpec(encode(text));
      } catch (e) {
        err = e;
      }
      if (!(err instanceof CadenzaError)) fail(`${what}: expected a CadenzaError, got ${err}`);
      check(/^E_(FORMAT|SHAPE)$/.test(err.code), () => `${what}: ${err.code}`);
      short(err, what);
    }
  },
};

/** A variable-length quantity (MIDI), at most 0x0FFFFFFF. */
function vlq(n: number): number[] {
  const out = [n & 0x7f];
  for (n >>>= 7; n > 0; n >>>= 7) out.unshift((n & 0x7f) | 0x80);
  return out;
}

const midiCase: Case = {
  name: "limits: a MIDI file whose deltas reach past a billion ticks is E_FORMAT, at once",
  run: () => {
    const big = vlq(0x0fffffff);
    const track = [
      ...big,
      0x90,
      60,
      100, // note on after 268M ticks
      ...big,
      0x80,
      60,
      0,
      ...big,
      0x90,
      62,
      100,
      ...big,
      0x80,
      62,
      0, // four deltas: 1,073,741,820 ticks
      0x00,
      0xff,
      0x2f,
      0x00,
    ];
    const midi = new Uint8Array([
      ...encode("MThd"),
      0,
      0,
      0,
      6,
      0,
      0,
      0,
      1,
      0,
      1, // format 0, one track, 1 tick a beat
      ...encode("MTrk"),
      0,
      0,
      (track.length >> 8) & 255,
      track.length & 255,
      ...track,
    ]);
    const err = throwsCadenza(() => fromMidi(midi), "E_FORMAT", /tick/, "a billion-tick delta");
    short(err, "billion ticks");
  },
};

const REWRITER = fileURLToPath(new URL("./rewrite_child.ts", import.meta.url));

/**
 * A child rewrites the model file in place (truncated, written in pieces, alternating between
 * two models of different shapes) while this process loads it `loads` times: each load gives a
 * whole model of one of the two shapes or a CadenzaError, never anything else.
 */
export function rewrittenCase(loads: number): Case {
  return {
    name: `limits: a model file truncated and replaced while it is loaded ${loads} times ` +
      "gives a whole model or a CadenzaError",
    run: async () => {
      const dir = mkdtempSync(join(tmpdir(), "cadenza-rewrite-"));
      const paths = [join(dir, "a.safetensors"), join(dir, "b.safetensors")];
      const specs = [smallSafetensors(5), smallSafetensors(6)];
      paths.forEach((p, i) => writeFileSync(p, specs[i]));
      const target = join(dir, "model.safetensors");
      copyFileSync(paths[0], target);
      const args = [REWRITER, target, ...paths];
      const child = runtime() === "bun"
        ? spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] })
        : spawn(process.execPath, ["run", "--allow-read", "--allow-write", ...args], {
          stdio: ["ignore", "pipe", "inherit"],
        });
      const exited = new Promise((resolve) => child.on("exit", resolve));
      try {
        await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
        const tally = { whole: 0, refused: 0 };
        for (let i = 0; i < loads; i++) {
          try {
            const model = await loadModel(target);
            const out = model.forward(new Float32Array(model.inputSize));
            check(out.every(Number.isFinite), () => `load ${i}: non-finite output`);
            model.dispose();
            tally.whole++;
          } catch (err) {
            if (!(err instanceof CadenzaError)) fail(`load ${i}: ${err}`);
            short(err, `load ${i}`);
            tally.refused++;
          }
          if (i % 16 === 0) await sleep(0);
        }
        check(tally.refused > 0, () => `the file never changed under a load (${tally.whole})`);
        if (process.env.CADENZA_FAULTS_VERBOSE) console.log(JSON.stringify(tally));
      } finally {
        child.kill("SIGKILL");
        await exited;
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export const limitCases: Case[] = [headerCase, tensorCase, nestedCase, midiCase];
