/**
 * The cadenza CLI: in-process through main() (output captured), and as a process under Bun and
 * under Deno for the exit codes and the runtime entry points.
 */

import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { commands, main } from "../src/cli/main.ts";
import { parseArgs } from "../src/cli/args.ts";
import type { Output } from "../src/cli/command.ts";
import { readCsv, rtneuralData, rtneuralModel } from "./helpers.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const DENSE = rtneuralModel("dense.json");
const GRU = rtneuralModel("gru.json");
const scratch = mkdtempSync(join(tmpdir(), "cadenza-cli-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const output: Output = { out: (line) => out.push(line), err: (line) => err.push(line) };
  const code = await main(argv, output);
  return { code, out: out.join("\n"), err: err.join("\n") };
}

function spawn(command: string[]) {
  const result = Bun.spawnSync(command, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  return { code: result.exitCode, out: result.stdout.toString(), err: result.stderr.toString() };
}

test("--help lists the commands; each command has its own --help", async () => {
  const top = await cli("--help");
  expect(top.code).toBe(0);
  expect(top.out).toMatch(/usage: cadenza <command>/);
  for (const { name } of commands) {
    const help = await cli(name, "--help");
    expect(help.code).toBe(0);
    expect(help.out).toMatch(new RegExp(`^usage: cadenza ${name}\\b`));
    expect(top.out).toContain(`  ${name} `);
  }
});

test("inspect prints the layer table and totals", async () => {
  const result = await cli("inspect", rtneuralModel("full_model.json"));
  expect(result.code).toBe(0);
  const lines = result.out.split("\n");
  expect(lines[1].split(/\s+/)).toEqual([
    "index",
    "kind",
    "name",
    "in",
    "->",
    "out",
    "activation",
    "params",
    "bytes",
  ]);
  expect(lines[3].trim().split(/\s+/)).toEqual([
    "1",
    "conv1d",
    "-",
    "8",
    "->",
    "4",
    "tanh",
    "100",
    "400",
  ]);
  expect(lines.at(-1)).toBe("total: 461 parameters, 1844 weight bytes");
});

test("inspect DIR prints the five pipeline models with exact counts beside the seed table", async () => {
  const result = await cli("inspect", join(ROOT, "models"));
  expect(result.code).toBe(0);
  const seed: Record<string, [number, number]> = {
    EmotionRecognizer: [493792, 497664],
    MelodyTransformer: [445952, 412672],
    HarmonyPredictor: [77248, 74048],
    DynamicsEngine: [13520, 13456],
    GroovePredictor: [18656, 19040],
  };
  for (const [name, [params, seeded]] of Object.entries(seed)) {
    const row = result.out.split("\n").find((line) => line.startsWith(name + " "));
    expect(row).toBeDefined();
    expect(row).toContain(` ${params} `);
    expect(row).toContain(` ${params * 4} `);
    expect(row).toContain(` ${seeded} `);
    expect(row).toContain(" trained");
    expect(row).not.toContain("UNTRAINED");
  }
  expect(result.out).toContain("total: 1049168 parameters, 4196672 weight bytes");
  const json = JSON.parse((await cli("inspect", join(ROOT, "models"), "--json")).out);
  expect(json.models.map((m: { name: string }) => m.name)).toEqual(Object.keys(seed));
});

test("inspect --json describes the architecture", async () => {
  const result = await cli("inspect", DENSE, "--json");
  expect(result.code).toBe(0);
  const json = JSON.parse(result.out);
  expect(json).toMatchObject({
    format: "rtneural",
    inputSize: 1,
    outputSize: 1,
    parameterCount: 321,
  });
  expect(json.weightBytes).toBe(1284);
  expect(json.layers).toHaveLength(12);
  expect(json.layers[0]).toEqual({
    index: 0,
    kind: "dense",
    inputSize: 1,
    outputSize: 8,
    params: 16,
    bytes: 64,
  });
  expect(json.layers.reduce((sum: number, layer: { params: number }) => sum + layer.params, 0))
    .toBe(321);
});

test("inspect reads a PyTorch state_dict with --layers", async () => {
  const layers = join(scratch, "lstm_torch.layers.json");
  writeFileSync(
    layers,
    JSON.stringify([
      { kind: "lstm", name: "lstm" },
      { kind: "lstm", name: "lstm2", numLayers: 3 },
      { kind: "linear", name: "dense" },
    ]),
  );
  const result = await cli(
    "inspect",
    rtneuralModel("lstm_torch.json"),
    "--layers",
    layers,
    "--json",
  );
  expect(result.err).toBe("");
  const json = JSON.parse(result.out);
  expect(json.format).toBe("torch");
  expect(json.layers.map((layer: { kind: string }) => layer.kind)).toEqual([
    "lstm",
    "lstm",
    "lstm",
    "lstm",
    "dense",
  ]);
});

test("run streams the rows with state carried, outputs on stdout, timing on stderr", async () => {
  const result = await cli("run", GRU, "--input", rtneuralData("gru_x_python.csv"));
  expect(result.code).toBe(0);
  const got = result.out.split("\n").map(Number);
  const want = readCsv(rtneuralData("gru_y_python.csv")).map((row) => row[0]);
  expect(got).toHaveLength(want.length);
  const worst = Math.max(...got.map((value, i) => Math.abs(value - want[i])));
  expect(worst).toBeLessThan(1e-4);
  expect(result.err).toMatch(
    /^load \d+\.\d+ ms; 100 steps: median \d+\.\d+ us, p99 \d+\.\d+ us, max \d+\.\d+ us \(\S+\)$/,
  );
});

test("run --steps cycles through the rows; --quiet prints only the timing", async () => {
  const cycled = await cli(
    "run",
    DENSE,
    "--input",
    rtneuralData("dense_x_python.csv"),
    "--steps",
    "250",
  );
  const lines = cycled.out.split("\n");
  expect(lines).toHaveLength(250);
  expect(lines[200]).toBe(lines[0]);
  const quiet = await cli("run", DENSE, "--input", rtneuralData("dense_x_python.csv"), "--quiet");
  expect(quiet.out).toBe("");
  expect(quiet.err).toMatch(/100 steps/);
  const fast = await cli(
    "run",
    DENSE,
    "--input",
    rtneuralData("dense_x_python.csv"),
    "--quiet",
    "--library",
    "fast",
  );
  expect(fast.err).toMatch(/\(libcadenza_fast\.so\)$/);
});

test("run refuses bad input rows with the file and line", async () => {
  const input = join(scratch, "bad.csv");
  writeFileSync(input, "0.5\n1,2\n");
  const wide = await cli("run", DENSE, "--input", input);
  expect(wide.code).toBe(1);
  expect(wide.err).toBe(
    `cadenza: E_SHAPE: ${input}:2: expected 1 values (the model's input size), got 2`,
  );
  writeFileSync(input, "0.5\nnope\n");
  const word = await cli("run", DENSE, "--input", input);
  expect(word.err).toBe(`cadenza: E_FORMAT: ${input}:2: expected a number, got "nope"`);
});

test("run reads CRLF files with blank and comment lines the same as LF ones", async () => {
  const lf = join(scratch, "lf.csv");
  const crlf = join(scratch, "crlf.csv");
  writeFileSync(lf, "0.5\n0.25\n");
  writeFileSync(crlf, "# dense.json takes one value\r\n0.5\r\n\r\n0.25 # second step\r\n");
  const want = await cli("run", DENSE, "--input", lf);
  const got = await cli("run", DENSE, "--input", crlf);
  expect(want.code).toBe(0);
  expect(got.code).toBe(0);
  expect(got.out.split("\n").length).toBe(2);
  expect(got.out).toBe(want.out);
});

test("usage mistakes exit 2 with a pointer to --help", async () => {
  const cases = [
    ["bogus"],
    [],
    ["inspect"],
    ["inspect", DENSE, "--bogus"],
    ["inspect", DENSE, "--format", "keras"],
    ["run", DENSE],
    ["run", DENSE, "--input", "x.csv", "--steps", "0"],
    ["bench", "--precision", "f16"],
    ["live", "--precision", "f16"],
  ];
  for (const argv of cases) {
    const result = await cli(...argv);
    expect({ argv, code: result.code }).toEqual({ argv, code: 2 });
    expect(result.err).toMatch(/cadenza/);
  }
  expect((await cli("bogus")).err).toMatch(/unknown command "bogus"/);
  expect((await cli("inspect", DENSE, "--bogus")).err).toMatch(/unknown flag --bogus/);
});

test("flags: parseArgs (node:util) behind the commands' own messages", () => {
  const spec = { values: { seconds: "N", models: "DIR" }, switches: ["json"] };
  const parsed = parseArgs(
    ["a", "--seconds", "-1", "--json", "--models=m d", "--seconds=2", "--", "--json", "-"],
    spec,
    "t",
  );
  expect(parsed.positionals).toEqual(["a", "--json", "-"]);
  expect([...parsed.values]).toEqual([["seconds", "2"], ["models", "m d"]]);
  expect([...parsed.switches]).toEqual(["json"]);
  expect(() => parseArgs(["--seconds"], spec, "t")).toThrow("t: --seconds needs a value");
  expect(() => parseArgs(["--json=1"], spec, "t")).toThrow("t: unknown flag --json=1");
  expect(() => parseArgs(["--bogus", "x"], spec, "t")).toThrow("t: unknown flag --bogus");
  expect(() => parseArgs(["-s"], spec, "t")).toThrow("t: unknown flag -s");
  expect(() => parseArgs(["--__proto__"], spec, "t")).toThrow("t: unknown flag --__proto__");
  expect(() => parseArgs(["--toString"], spec, "t")).toThrow("t: unknown flag --toString");
});

test("errors print `cadenza: <code>: <message>` and exit 1", async () => {
  const missing = join(scratch, "missing.json");
  const result = await cli("inspect", missing);
  expect(result.code).toBe(1);
  expect(result.err).toStartWith(`cadenza: E_IO: cannot read ${missing}`);
});

test("as a process under Bun: exit codes and streams", () => {
  const bun = process.execPath;
  const ok = spawn([bun, "src/cli/main.ts", "inspect", DENSE]);
  expect(ok.code).toBe(0);
  expect(ok.out).toMatch(/total: 321 parameters/);
  expect(spawn([bun, "src/cli/main.ts", "bogus"]).code).toBe(2);
  const missing = spawn([bun, "src/cli/main.ts", "inspect", join(scratch, "missing.json")]);
  expect(missing.code).toBe(1);
  expect(missing.err).toMatch(/^cadenza: E_IO: /);
});

test("as a process under Deno with only --allow-ffi --allow-read", () => {
  const deno = join(ROOT, "node_modules/.bin/deno");
  const base = [deno, "run", "--allow-ffi", "--allow-read", "src/cli/main.ts"];
  const result = spawn([
    ...base,
    "run",
    DENSE,
    "--input",
    rtneuralData("dense_x_python.csv"),
    "--steps",
    "3",
  ]);
  expect(result.err).toMatch(/3 steps/);
  expect(result.code).toBe(0);
  expect(result.out.trim().split("\n")).toHaveLength(3);
  expect(spawn([...base, "inspect", DENSE, "--bogus"]).code).toBe(2);
});

test("inspect and convert read the amp JSON and ONNX, and convert writes ONNX", async () => {
  const h = 8;
  const row = (n: number, v: number) => Array.from({ length: n }, (_, i) => v * ((i % 5) - 2));
  const amp = {
    model_data: {
      model: "SimpleRNN",
      input_size: 1,
      output_size: 1,
      unit_type: "GRU",
      hidden_size: h,
      skip: 1,
    },
    state_dict: {
      "rec.weight_ih_l0": Array.from({ length: 3 * h }, () => [0.1]),
      "rec.weight_hh_l0": Array.from({ length: 3 * h }, () => row(h, 0.05)),
      "rec.bias_ih_l0": row(3 * h, 0.01),
      "rec.bias_hh_l0": row(3 * h, 0.02),
      "lin.weight": [row(h, 0.3)],
      "lin.bias": [0.1],
    },
  };
  const amp_path = join(scratch, "amp.json");
  writeFileSync(amp_path, JSON.stringify(amp));
  const shown = await cli("inspect", amp_path);
  expect(shown.code).toBe(0);
  expect(shown.out).toMatch(/\(amp\)/);
  expect(shown.out).toMatch(/gru/);
  expect(shown.out).toMatch(/skip/);
  const onnx_path = join(scratch, "amp.onnx");
  const written = await cli("convert", amp_path, onnx_path);
  expect(written.code).toBe(0);
  expect(written.out).toMatch(/\(amp\) -> .*amp\.onnx \(onnx\): 3 layers/);
  const back = join(scratch, "amp-from-onnx.safetensors");
  const again = await cli("convert", onnx_path, back);
  expect(again.code).toBe(0);
  expect(again.out).toMatch(/\(onnx\) -> .*\(safetensors\): 3 layers/);
  const json = await cli("inspect", onnx_path, "--json");
  expect(json.code).toBe(0);
  const kinds = JSON.parse(json.out).layers.map((l: { kind: string }) => l.kind);
  expect(kinds).toEqual(["gru", "dense", "skip"]);
  // RTNeural JSON as AIDA-X reads it: the skip becomes in_skip.
  const aida = join(scratch, "amp-aida.json");
  const rt = await cli("convert", amp_path, aida);
  expect(rt.code).toBe(0);
  const shown_rt = await cli("inspect", aida, "--json");
  expect(JSON.parse(shown_rt.out).layers.map((l: { kind: string }) => l.kind)).toEqual([
    "gru",
    "dense",
    "skip",
  ]);
});
