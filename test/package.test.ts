/**
 * The published packages, as a user gets them: `npm pack` (its prepack builds dist/ and the
 * WebAssembly build, and lists the platform packages as optionalDependencies,
 * scripts/pack.mjs), `node scripts/pack.mjs platforms` (`zig build prebuilt`: every target,
 * one package folder per platform) and `npm pack` of the linux-x64 one; then `npm install
 * --offline` of the two tarballs into an empty folder with no Zig on PATH and no .toolchain/,
 * then the README's example run from there by Bun and Deno (the platform package's native
 * library) and by Node (the WebAssembly backend). The main tarball alone, without its platform
 * package, gives Bun the loader's error naming that package. The tarballs' dependencies come
 * from the npm cache; where one is not cached the install step cannot work offline, and the
 * test says so and skips the runs instead of failing. A second test runs `deno publish
 * --dry-run` on jsr.json (nothing is published).
 */

import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const bin = join(root, "node_modules", ".bin");

const EXAMPLE = `
import { generate, loadModel, renderPianoRoll, toMidi } from "cadenza";

const { sequence, chords, summary } = await generate({ emotion: "joyful", bars: 4, seed: 7 });
const midi = toMidi(sequence);
const png = renderPianoRoll(sequence, { chords });
const model = await loadModel(new URL("./node_modules/cadenza/models/HarmonyPredictor.safetensors", import.meta.url).pathname.replace(/^\\/([A-Za-z]:)/, "$1"));
const y = model.forward(new Float32Array(model.inputSize).fill(0.5));
console.log(JSON.stringify({
  notes: sequence.notes.length,
  midiHeader: String.fromCharCode(...midi.subarray(0, 4)),
  pngBytes: png.length,
  library: model.nativeInfo().libraryPath,
  finite: y.every(Number.isFinite),
  summary,
}));
`;

function run(cmd: string, args: string[], cwd: string, env: Record<string, string>) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: "utf8", timeout: 600_000 });
  return { status: r.status, out: r.stdout ?? "", err: `${r.stderr ?? ""}${r.error ?? ""}` };
}

/** npm install --offline of `tarballs` into a new folder `app` of `work`; null: not cached. */
function install(work: string, app: string, tarballs: string[], env: Record<string, string>) {
  const dir = join(work, app);
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "app", type: "module" }));
  writeFileSync(join(dir, "example.mjs"), EXAMPLE);
  const r = run("npm", ["install", "--offline", "--no-audit", "--no-fund", ...tarballs], dir, env);
  if (r.status !== 0 && /ENOTCACHED|offline/i.test(r.err)) {
    console.warn(
      `skipping the runs: a dependency of the tarball is not in the npm cache, and this ` +
        `test installs offline only:\n${r.err.slice(-600)}`,
    );
    return null;
  }
  expect(r.status, r.err).toBe(0);
  return dir;
}

function tarList(tarball: string): string[] {
  const r = spawnSync("tar", ["tzf", tarball], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim().split("\n");
}

test(
  "npm pack: the main and the linux-x64 tarballs install offline; bun, deno and node run the example",
  () => {
    const work = mkdtempSync(join(tmpdir(), "cadenza-pack-"));
    try {
      const devEnv = {
        ...process.env,
        PATH: `${bin}:${process.env.PATH}`,
      } as Record<string, string>;
      const packed = run("npm", ["pack", "--pack-destination", work], root, devEnv);
      expect(packed.status, packed.err).toBe(0);
      const main = join(work, readdirSync(work).find((f) => f.endsWith(".tgz"))!);
      // The platform packages: every target built (CI builds them all this way), one packed.
      const made = run(
        "node",
        [join(root, "scripts", "pack.mjs"), "platforms", "--out", join(work, "npm")],
        root,
        devEnv,
      );
      expect(made.status, made.err).toBe(0);
      expect(readdirSync(join(work, "npm")).sort()).toEqual([
        "cadenza-darwin-arm64",
        "cadenza-darwin-x64",
        "cadenza-linux-arm64",
        "cadenza-linux-x64",
        "cadenza-win32-x64",
      ]);
      const platformPacked = run(
        "npm",
        ["pack", join(work, "npm", "cadenza-linux-x64")],
        work,
        devEnv,
      );
      expect(platformPacked.status, platformPacked.err).toBe(0);
      const platform = join(work, "cadenza-linux-x64-0.1.0.tgz");
      expect(existsSync(platform)).toBe(true);
      // The main tarball: the WebAssembly build and no native library, no Zig sources; the
      // platform tarball: the AVX2+FMA and AVX-512 builds.
      const mainFiles = tarList(main);
      expect(mainFiles).toContain("package/prebuilt/wasm/cadenza_safe.wasm");
      expect(mainFiles.filter((f) => /\.(so|dylib|dll)$/.test(f))).toEqual([]);
      expect(mainFiles.some((f) => f.startsWith("package/zig/"))).toBe(false);
      expect(tarList(platform).sort()).toEqual([
        "package/LICENSE",
        "package/README.md",
        "package/linux-x64-avx512/libcadenza_fast.so",
        "package/linux-x64-avx512/libcadenza_safe.so",
        "package/linux-x64/libcadenza_fast.so",
        "package/linux-x64/libcadenza_safe.so",
        "package/package.json",
      ]);

      // No Zig anywhere: PATH has only the system folders and the runtimes' own.
      const env = {
        HOME: process.env.HOME ?? "/root",
        PATH: `/usr/local/bin:/usr/bin:/bin`,
        CADENZA_SKIP_AUDIO: "1",
      };
      const app = install(work, "app", [main, platform], env);
      if (app === null) return;
      const installed = join(app, "node_modules", "cadenza");
      expect(readdirSync(installed)).not.toContain("zig");
      expect(readdirSync(join(installed, "prebuilt"))).toEqual(["wasm"]);

      const native = /node_modules\/cadenza-linux-x64\/linux-x64(-avx512)?\/libcadenza_safe\.so$/;
      const runs: [string, string[], RegExp][] = [
        [join(bin, "bun"), ["example.mjs"], native],
        [join(bin, "deno"), ["run", "-A", "example.mjs"], native],
        ["node", ["example.mjs"], /prebuilt\/wasm\/cadenza_safe\.wasm$/],
      ];
      for (const [cmd, args, library] of runs) {
        const r = run(cmd, args, app, env);
        expect(r.status, `${cmd}: ${r.err}`).toBe(0);
        const result = JSON.parse(r.out.trim().split("\n").pop()!);
        expect(result.midiHeader).toBe("MThd");
        expect(result.notes).toBeGreaterThan(0);
        expect(result.pngBytes).toBeGreaterThan(1000);
        expect(result.finite).toBe(true);
        expect(result.library).toMatch(library);
      }

      // Without the platform package (optional dependencies omitted), the loader says what it
      // looked for and which package brings the library.
      const bare = install(work, "bare", [main], env);
      if (bare === null) return;
      const r = run(join(bin, "bun"), ["example.mjs"], bare, env);
      expect(r.status).not.toBe(0);
      expect(r.err).toContain("native library not found for linux-x64");
      expect(r.err).toContain("cadenza-linux-x64/linux-x64/libcadenza_safe.so");
      expect(r.err).toContain("optional dependency cadenza-linux-x64");
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
  900_000,
);

test("jsr: deno publish --dry-run accepts jsr.json", () => {
  const r = run(
    join(bin, "deno"),
    ["publish", "--config", "jsr.json", "--dry-run", "--allow-dirty"],
    root,
    { ...process.env, NO_COLOR: "1" } as Record<string, string>,
  );
  expect(r.status, `${r.out}\n${r.err}`).toBe(0);
  const said = `${r.out}${r.err}`;
  expect(said).toContain("Success Dry run complete");
  expect(said).toContain("src/index.ts");
  expect(said).toContain("models/MelodyTransformer.safetensors");
  expect(said).toContain("LICENSE");
}, 300_000);
