#!/usr/bin/env node
// The npm packages: the main one, and one per platform carrying that platform's native library
// (npm `optionalDependencies` with `os`/`cpu`, as esbuild and Bun ship their binaries).
//
//   node scripts/pack.mjs            prepack of `npm pack`: dist/ (the JavaScript Node loads,
//                                    from `bun build`), prebuilt/wasm/ (the WebAssembly build),
//                                    and the platform packages as optionalDependencies of the
//                                    packed package.json (the checkout's own is restored after)
//   node scripts/pack.mjs clean      postpack: restores package.json, removes prebuilt/
//   node scripts/pack.mjs dist       dist/ alone
//   node scripts/pack.mjs platforms [--out DIR] [--no-build]
//                                    `zig build prebuilt` (every target), then one package
//                                    folder per platform in DIR (default npm/):
//                                    DIR/cadenza-linux-x64/{package.json,README.md,LICENSE,
//                                    linux-x64/,linux-x64-avx512/}, ...; `npm pack DIR/<name>`
//                                    makes its tarball
//
// The checkout's package.json lists no optionalDependencies, so that `npm ci` in a checkout
// never asks the registry for them: its library is the local build. src/native/library.ts
// looks in the platform package first, then prebuilt/, then zig-out/. Node only, no
// dependencies.

import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const manifestPath = join(root, "package.json");
/** The checkout's package.json while the packed one is in its place. */
const savedManifest = join(root, ".package.json.prepack");

/** npm's os and cpu, and the folders of zig-out/prebuilt/ each platform package carries. */
export const PLATFORMS = [
  { os: "linux", cpu: "x64", dirs: ["linux-x64", "linux-x64-avx512"] },
  { os: "linux", cpu: "arm64", dirs: ["linux-arm64"] },
  { os: "darwin", cpu: "x64", dirs: ["darwin-x64"] },
  { os: "darwin", cpu: "arm64", dirs: ["darwin-arm64"] },
  { os: "win32", cpu: "x64", dirs: ["windows-x64"] },
];

export const platformPackageName = (p) => `cadenza-${p.os}-${p.cpu}`;

function say(line) {
  console.error(`cadenza pack: ${line}`);
}

function fail(line) {
  say(line);
  process.exit(1);
}

function run(program, args) {
  const result = spawnSync(program, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
  if (result.status !== 0) {
    fail(`${program} ${args.join(" ")} failed (exit ${result.status ?? result.error})`);
  }
}

function readManifest() {
  return JSON.parse(readFileSync(existsSync(savedManifest) ? savedManifest : manifestPath, "utf8"));
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

/** prebuilt/wasm/: the WebAssembly build, which every platform (and Node) can use. */
function buildWasm() {
  run(join(root, "scripts", "zig"), ["build", "wasm"]);
  const out = join(root, "prebuilt");
  rmSync(out, { recursive: true, force: true });
  cpSync(join(root, "zig-out", "wasm"), join(out, "wasm"), { recursive: true });
  say(`prebuilt/wasm: ${readdirSync(join(out, "wasm")).join(", ")}`);
}

/** One folder per platform package in `out`, from zig-out/prebuilt/. */
export function writePlatformPackages(out, build = true) {
  if (build) run(join(root, "scripts", "zig"), ["build", "prebuilt"]);
  const main = readManifest();
  const made = [];
  for (const p of PLATFORMS) {
    const name = platformPackageName(p);
    const dir = join(out, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    for (const sub of p.dirs) {
      const from = join(root, "zig-out", "prebuilt", sub);
      if (!existsSync(from)) fail(`${from} is missing: run \`scripts/zig build prebuilt\``);
      cpSync(from, join(dir, sub), { recursive: true });
    }
    const manifest = {
      name,
      version: main.version,
      description: `The ${p.os}-${p.cpu} native library of cadenza (${main.name} installs it ` +
        "as an optional dependency on this platform)",
      license: main.license,
      os: [p.os],
      cpu: [p.cpu],
      files: [...p.dirs, "README.md", "LICENSE"],
      preferUnplugged: true,
    };
    writeFileSync(join(dir, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    writeFileSync(
      join(dir, "README.md"),
      `# ${name}\n\nThe ${p.os}-${p.cpu} build of cadenza's native library (${
        p.dirs.join(", ")
      }: ` +
        "ReleaseSafe `cadenza_safe` and ReleaseFast `cadenza_fast`). Install `cadenza`, not " +
        "this package: npm picks it by `os` and `cpu`, and cadenza's loader finds it.\n",
    );
    cpSync(join(root, "LICENSE"), join(dir, "LICENSE"));
    say(`${name}: ${p.dirs.map((d) => `${d}/{${readdirSync(join(dir, d)).join(",")}}`).join(" ")}`);
    made.push(dir);
  }
  return made;
}

/** The packed package.json: the checkout's, with every platform package as optional. */
function writePackedManifest() {
  if (!existsSync(savedManifest)) cpSync(manifestPath, savedManifest);
  const manifest = readManifest();
  manifest.optionalDependencies = Object.fromEntries(
    PLATFORMS.map((p) => [platformPackageName(p), manifest.version]),
  );
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
}

function restoreManifest() {
  if (!existsSync(savedManifest)) return;
  cpSync(savedManifest, manifestPath);
  rmSync(savedManifest);
}

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1] : fallback;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const command = process.argv[2] ?? "pack";
  if (command === "clean") {
    restoreManifest();
    rmSync(join(root, "prebuilt"), { recursive: true, force: true });
  } else if (command === "dist") buildDist();
  else if (command === "platforms") {
    const out = resolve(option("out", join(root, "npm")));
    for (const dir of writePlatformPackages(out, !process.argv.includes("--no-build"))) {
      console.log(dir);
    }
  } else if (command === "pack") {
    // A pack that failed before its postpack left the packed manifest: start from the checkout's.
    restoreManifest();
    buildDist();
    buildWasm();
    writePackedManifest();
  } else {
    fail(`unknown command ${command}: expected pack, clean, dist or platforms`);
  }
}
