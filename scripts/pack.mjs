#!/usr/bin/env node
// Prepares the files an npm package carries (run by `npm pack` / `npm publish` as prepack;
// `node scripts/pack.mjs clean` is the postpack): dist/ (the JavaScript Node loads, from
// `bun build`), and prebuilt/ (the libraries of `zig build prebuilt` for every platform, and the
// WebAssembly build). prebuilt/ is removed again after packing, so that a checkout's own
// zig-out/ build is what it runs. Node only, no dependencies.

import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function say(line) {
  console.error(`cadenza pack: ${line}`);
}

function run(program, args) {
  const result = spawnSync(program, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
  if (result.status !== 0) {
    say(`${program} ${args.join(" ")} failed (exit ${result.status ?? result.error})`);
    process.exit(1);
  }
}

/** dist/: src/index.ts as ES modules for Node (the package's "node" export). */
export function buildDist() {
  const bun = join(root, "node_modules", ".bin", "bun");
  rmSync(join(root, "dist"), { recursive: true, force: true });
  run(existsSync(bun) ? bun : "bun", [
    "build",
    "src/index.ts",
    "--target=node",
    "--format=esm",
    "--splitting",
    "--packages=external",
    "--external=bun:ffi",
    "--outdir=dist",
  ]);
}

function buildPrebuilt() {
  run(join(root, "scripts", "zig"), ["build", "prebuilt", "wasm"]);
  const out = join(root, "prebuilt");
  rmSync(out, { recursive: true, force: true });
  cpSync(join(root, "zig-out", "prebuilt"), out, { recursive: true });
  cpSync(join(root, "zig-out", "wasm"), join(out, "wasm"), { recursive: true });
  for (const dir of readdirSync(out)) {
    say(`prebuilt/${dir}: ${readdirSync(join(out, dir)).join(", ")}`);
  }
}

const command = process.argv[2] ?? "pack";
if (command === "clean") rmSync(join(root, "prebuilt"), { recursive: true, force: true });
else if (command === "dist") buildDist();
else {
  buildDist();
  buildPrebuilt();
}
