#!/usr/bin/env node
// Installs the Zig version pinned in build.zig.zon into .toolchain/ (from PyPI's `ziglang`
// package, through pip) and builds the native library with it. Runs as the npm postinstall and
// as `npm run setup`; set CADENZA_SKIP_NATIVE=1 to skip it. Node only, no dependencies.
// Before that it looks for FluidSynth and a General MIDI SoundFont (audio rendering, `--wav`)
// and, when they are missing and it runs as root where apt-get exists, installs the Debian
// packages fluidsynth and fluid-soundfont-gm; it never fails the install over them (set
// CADENZA_SKIP_AUDIO=1 to skip this step). In a checkout (not in an installed package) it does
// the same for Debian's chromium, which the browser demo's test (test/browser.test.ts) drives
// headless (CADENZA_SKIP_BROWSER=1 skips it; without it that test is skipped, saying so).

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { delimiter, dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function say(line) {
  console.log(`cadenza setup: ${line}`);
}

function fail(lines) {
  for (const line of lines) console.error(`cadenza setup: ${line}`);
  console.error("cadenza setup: set CADENZA_SKIP_NATIVE=1 to install without building the library");
  process.exit(1);
}

function pinnedZigVersion() {
  const zon_path = join(root, "build.zig.zon");
  const zon = readFileSync(zon_path, "utf8");
  const match = zon.match(/\.minimum_zig_version\s*=\s*"([^"]+)"/);
  if (match === null) fail([`${zon_path} has no .minimum_zig_version = "<version>"`]);
  return match[1];
}

function run(program, args) {
  return spawnSync(program, args, { cwd: root, stdio: "inherit" });
}

function checkPython(version) {
  const manual = [
    `or unpack Zig ${version} from https://ziglang.org/download/ into`,
    `  .toolchain/zig-${version}/ziglang/ (zig and lib/ side by side), then run \`npm run setup\``,
  ];
  const python = spawnSync("python3", ["--version"], { encoding: "utf8" });
  if (python.error !== undefined || python.status !== 0) {
    fail([
      "python3 was not found; it is needed to fetch Zig from PyPI.",
      "Install Python 3 with pip,",
      ...manual,
    ]);
  }
  const pip = spawnSync("python3", ["-m", "pip", "--version"], { encoding: "utf8" });
  if (pip.status !== 0) {
    fail([
      "pip is missing for python3: install it (`python3 -m ensurepip --user`, or your",
      "  system's python3-pip package),",
      ...manual,
    ]);
  }
}

function installZig(version, zig_path) {
  const target = join(root, ".toolchain", `zig-${version}`);
  checkPython(version);
  say(
    `installing Zig ${version} into ${relative(root, target)} (PyPI ziglang==${version}, ~50 MB)`,
  );
  const result = run("python3", [
    "-m",
    "pip",
    "install",
    "--target",
    target,
    `ziglang==${version}`,
  ]);
  if (result.status !== 0 || !existsSync(zig_path)) {
    fail([
      `pip could not install ziglang==${version} (exit ${result.status}); see its output above`,
    ]);
  }
  say(`installed ${relative(root, zig_path)}`);
}

function buildLibrary(zig_path) {
  say(`building the native library: ${relative(root, zig_path)} build`);
  const result = run(zig_path, ["build"]);
  if (result.status !== 0) fail([`zig build failed (exit ${result.status}); see its output above`]);
  const lib_dir = join(root, "zig-out", "lib");
  const libraries = existsSync(lib_dir) ? readdirSync(lib_dir) : [];
  if (libraries.length === 0) fail([`zig build succeeded but ${relative(root, lib_dir)} is empty`]);
  for (const name of libraries) say(`built ${relative(root, join(lib_dir, name))}`);
}

// The same places src/music/audio.ts looks in.
const SOUNDFONTS = [
  "/usr/share/sounds/sf2/FluidR3_GM.sf2",
  "/usr/share/sounds/sf2/default-GM.sf2",
  "/usr/share/soundfonts/FluidR3_GM.sf2",
  "/usr/share/soundfonts/default.sf2",
  "/usr/share/sounds/sf2/TimGM6mb.sf2",
  "/opt/homebrew/share/soundfonts/default.sf2",
  "/usr/local/share/soundfonts/default.sf2",
];

function onPath(program) {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter((dir) => dir !== "");
  return dirs.some((dir) => existsSync(join(dir, program)));
}

function audioFound() {
  const soundfont = process.env.CADENZA_SOUNDFONT;
  const fonts = soundfont !== undefined && soundfont !== "" ? [soundfont] : SOUNDFONTS;
  return onPath("fluidsynth") && fonts.some((path) => existsSync(path));
}

function aptInstall(packages, purpose) {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const options = { cwd: root, stdio: "inherit", env, timeout: 600_000 };
  say(`installing ${packages.join(" ")} for ${purpose} (apt-get update, then install)`);
  const update = spawnSync("apt-get", ["update", "-qq"], options);
  if (update.status !== 0) return false;
  const args = ["install", "-y", "-qq", "--no-install-recommends", ...packages];
  return spawnSync("apt-get", args, options).status === 0;
}

/** FluidSynth and a SoundFont for `--wav`: optional, so this never stops the install. */
function setupAudio() {
  if (process.env.CADENZA_SKIP_AUDIO === "1") return;
  if (audioFound()) {
    say("FluidSynth and a General MIDI SoundFont found: audio rendering (--wav) is available");
    return;
  }
  const as_root = typeof process.getuid === "function" && process.getuid() === 0;
  if (as_root && onPath("apt-get")) {
    if (aptInstall(["fluidsynth", "fluid-soundfont-gm"], "audio rendering") && audioFound()) {
      say("installed FluidSynth and the FluidR3 GM SoundFont: audio rendering (--wav) is available");
      return;
    }
  }
  say(
    "audio rendering (--wav) is unavailable: install fluidsynth and fluid-soundfont-gm " +
      "(sudo apt-get install fluidsynth fluid-soundfont-gm); everything else works without them",
  );
}

const BROWSERS = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

/** Headless Chromium for the browser demo's test: a checkout's, optional, never fatal. */
function setupBrowser() {
  if (process.env.CADENZA_SKIP_BROWSER === "1" || !existsSync(join(root, "zig"))) return;
  if (BROWSERS.some(onPath)) return;
  const as_root = typeof process.getuid === "function" && process.getuid() === 0;
  if (as_root && onPath("apt-get")) {
    if (aptInstall(["chromium"], "the browser demo's test") && BROWSERS.some(onPath)) {
      say("installed chromium: test/browser.test.ts runs the browser demo headless");
      return;
    }
  }
  say(
    "no Chromium: test/browser.test.ts will be skipped (install it with " +
      "`sudo apt-get install chromium`, or point CADENZA_CHROMIUM at a Chrome or Chromium)",
  );
}

function main() {
  try {
    setupAudio();
  } catch (err) {
    say(`audio rendering (--wav) is unavailable: ${err instanceof Error ? err.message : err}`);
  }
  try {
    setupBrowser();
  } catch (err) {
    say(`no Chromium for the browser test: ${err instanceof Error ? err.message : err}`);
  }
  // An installed package carries no Zig sources and nothing to build: its native library
  // comes in the platform package (cadenza-<os>-<cpu>, an optional dependency) and the
  // WebAssembly build in prebuilt/wasm/ (scripts/pack.mjs).
  if (!existsSync(join(root, "zig"))) {
    say("an installed package: the native library is in its platform package, nothing to build");
    return;
  }
  if (process.env.CADENZA_SKIP_NATIVE === "1") {
    say("CADENZA_SKIP_NATIVE=1: skipping Zig and the native build");
    return;
  }
  const version = pinnedZigVersion();
  const zig_path = join(root, ".toolchain", `zig-${version}`, "ziglang", "zig");
  if (existsSync(zig_path)) say(`Zig ${version} found at ${relative(root, zig_path)}`);
  else installZig(version, zig_path);
  buildLibrary(zig_path);
}

main();
