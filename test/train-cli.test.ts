/**
 * test/cases/train_cli.ts under Bun, plus `cadenza train` as a Deno process without
 * --allow-write: refused before any training, naming the path and the flag.
 */

import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeTrainingData } from "../src/train/data.ts";
import { markovTask } from "../src/train/tasks.ts";
import { trainCliCases } from "./cases/train_cli.ts";

for (const c of trainCliCases()) test(c.name, c.run, 120_000);

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), "cadenza-train-deno-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test(
  "train as a Deno process: without --allow-write it stops before training, naming the flag",
  () => {
    const data = join(scratch, "d.safetensors");
    writeFileSync(data, writeTrainingData(markovTask({ count: 40, steps: 6, seed: 1 }).data));
    const deno = `${ROOT}node_modules/.bin/deno`;
    const argv = [
      "train",
      "--model",
      "EmotionRecognizer",
      "--data",
      data,
      "--out",
      join(scratch, "m.safetensors"),
    ];
    const result = Bun.spawnSync(
      [deno, "run", "--allow-ffi", "--allow-read", "--allow-env", "src/cli/main.ts", ...argv],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    expect(result.exitCode).toBe(1);
    const err = result.stderr.toString();
    // The shapes are checked first (the data has 8 inputs, the model 128), then writing.
    expect(err).toMatch(/E_SHAPE: .*d\.safetensors: tensor "inputs": expected \[N, T, 128\]/);
    const fits = join(scratch, "fits.json");
    writeFileSync(
      fits,
      JSON.stringify({ inputSize: 8, layers: [{ kind: "lstm", inputSize: 8, outputSize: 8 }] }),
    );
    argv[2] = fits;
    const second = Bun.spawnSync(
      [deno, "run", "--allow-ffi", "--allow-read", "--allow-env", "src/cli/main.ts", ...argv],
      { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
    );
    expect(second.exitCode).toBe(1);
    expect(second.stderr.toString()).toMatch(
      /^cadenza: E_IO: cannot write .*m\.safetensors: .*--allow-write/,
    );
    expect(second.stderr.toString()).not.toMatch(/epoch/);
    expect(readdirSync(scratch).sort()).toEqual(["d.safetensors", "fits.json"]);
  },
  60_000,
);
