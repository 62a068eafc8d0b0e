/**
 * Writes every models/<Name>.safetensors as models/onnx/<Name>.onnx (opset 17), with the same
 * weights, for onnxruntime and other ONNX tools. The files are build outputs (git-ignored):
 * the same specs give the same bytes, and bench/peers.bench.ts exports in memory instead.
 *
 *   bun scripts/export-onnx.ts [--models DIR] [--out DIR]
 *
 * Recurrent state is explicit: see src/model/formats/onnx-export.ts for the input and output
 * names (state.L.h / state.L.h.next, past.L.k / present.L.k, ...) and their start shapes.
 */
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { exportOnnx } from "../src/model/formats/onnx-export.ts";
import { readSafetensors } from "../src/model/formats/safetensors.ts";
import { exit, readFile, scriptArgs, writeFile } from "../src/native/io.ts";
import { defaultModelsDir } from "../src/pipeline/emotion.ts";

interface Args {
  models: string;
  out: string | undefined;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { models: defaultModelsDir(), out: undefined };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if ((flag === "--models" || flag === "--out") && value !== undefined) {
      args[flag === "--models" ? "models" : "out"] = value;
      i++;
    } else {
      console.error(`export-onnx: unknown argument ${flag}; usage: [--models DIR] [--out DIR]`);
      exit(2);
    }
  }
  return args;
}

async function main(): Promise<void> {
  const args = parseArgs(scriptArgs());
  const out = args.out ?? join(args.models, "onnx");
  const files = readdirSync(args.models).filter((f) => f.endsWith(".safetensors")).sort();
  if (files.length === 0) {
    console.error(`export-onnx: no .safetensors files in ${args.models}`);
    exit(1);
  }
  mkdirSync(out, { recursive: true });
  for (const file of files) {
    const source = join(args.models, file);
    const spec = readSafetensors(await readFile(source), source);
    const name = file.replace(/\.safetensors$/, "");
    const exported = exportOnnx(spec, { name });
    const target = join(out, `${name}.onnx`);
    await writeFile(target, exported.bytes);
    const states = exported.states.map((s) => s.input).join(", ") || "none";
    console.log(`wrote ${target} (${exported.bytes.length} bytes; states: ${states})`);
  }
}

await main();
