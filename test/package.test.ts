/**
 * The published package, as a user gets it: `npm pack` (its prepack builds dist/ and every
 * platform's library, scripts/pack.mjs), then `npm install --offline` of the tarball into an
 * empty folder with no Zig on PATH and no .toolchain/, then the README's example run from
 * there by Bun and Deno (the bundled native library) and by Node (the WebAssembly backend).
 * The tarball's dependencies come from the npm cache; where one is not cached the install
 * step cannot work offline, and the test says so and skips the runs instead of failing.
 */

import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
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

test("npm pack installs offline into an empty folder; bun, deno and node run the example", () => {
  const work = mkdtempSync(join(tmpdir(), "cadenza-pack-"));
  try {
    const packed = run("npm", ["pack", "--pack-destination", work], root, {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
    } as Record<string, string>);
    expect(packed.status, packed.err).toBe(0);
    const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
    expect(tarball).toBeDefined();

    const app = join(work, "app");
    spawnSync("mkdir", [app]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", type: "module" }));
    writeFileSync(join(app, "example.mjs"), EXAMPLE);
    // No Zig anywhere: PATH has only the system folders and the runtimes' own.
    const env = {
      HOME: process.env.HOME ?? "/root",
      PATH: `/usr/local/bin:/usr/bin:/bin`,
      CADENZA_SKIP_AUDIO: "1",
    };
    const install = run(
      "npm",
      ["install", "--offline", "--no-audit", "--no-fund", join(work, tarball!)],
      app,
      env,
    );
    if (install.status !== 0 && /ENOTCACHED|offline/i.test(install.err)) {
      console.warn(
        `skipping the runs: a dependency of the tarball is not in the npm cache, and this ` +
          `test installs offline only:\n${install.err.slice(-600)}`,
      );
      return;
    }
    expect(install.status, install.err).toBe(0);
    const installed = join(app, "node_modules", "cadenza");
    expect(readdirSync(installed)).not.toContain("zig");
    expect(readdirSync(join(installed, "prebuilt"))).toContain("wasm");

    const runs: [string, string[], RegExp][] = [
      [join(bin, "bun"), ["example.mjs"], /prebuilt\/linux-x64(-avx512)?\/libcadenza_safe\.so$/],
      [
        join(bin, "deno"),
        ["run", "-A", "example.mjs"],
        /prebuilt\/linux-x64(-avx512)?\/libcadenza_safe\.so$/,
      ],
      [
        process.execPath === "" ? "node" : "node",
        ["example.mjs"],
        /prebuilt\/wasm\/cadenza_safe\.wasm$/,
      ],
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
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}, 900_000);
