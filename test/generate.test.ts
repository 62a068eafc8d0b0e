/**
 * `generate`, `respond` and their CLI under Bun (cases in test/cases/generate.ts), plus the CLI
 * as a process under Bun and under Deno: exit codes, and the same bytes from both runtimes.
 */

import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseSmf } from "./midi-parse.ts";
import {
  BAD_INPUTS,
  checkPieceFile,
  disposePipeline,
  generateCases,
  generateCliCases,
  writeBadInputs,
} from "./cases/generate.ts";

afterAll(disposePipeline);

for (const c of [...generateCases, ...generateCliCases]) test(c.name, c.run, 60_000);

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const BUN = [process.execPath, "src/cli/main.ts"];
const DENO = [
  join(ROOT, "node_modules/.bin/deno"),
  "run",
  "--allow-ffi",
  "--allow-read",
  "--allow-env",
  "--allow-write",
  "src/cli/main.ts",
];

function spawn(command: string[]) {
  const result = Bun.spawnSync(command, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  return { code: result.exitCode, out: result.stdout.toString(), err: result.stderr.toString() };
}

test(
  "cli generate as a process: Bun and Deno write the same bytes for a seed, other bytes for another",
  () => {
    const dir = mkdtempSync(join(tmpdir(), "cadenza-generate-spawn-"));
    try {
      const args = (seed: string, file: string) => [
        "generate",
        "--emotion",
        "joyful",
        "--bars",
        "8",
        "--seed",
        seed,
        "--out",
        join(dir, file),
      ];
      const runs: [string[], string, string][] = [
        [BUN, "7", "bun7.mid"],
        [DENO, "7", "deno7.mid"],
        [DENO, "7", "deno7b.mid"],
        [DENO, "8", "deno8.mid"],
      ];
      for (const [runtime, seed, file] of runs) {
        const r = spawn([...runtime, ...args(seed, file)]);
        expect(r.err).toBe("");
        expect(r.code).toBe(0);
      }
      const read = (file: string) => readFileSync(join(dir, file));
      checkPieceFile(read("deno7.mid"), { bars: 8, beats: 4, exact: false });
      expect(Buffer.compare(read("bun7.mid"), read("deno7.mid"))).toBe(0);
      expect(Buffer.compare(read("deno7.mid"), read("deno7b.mid"))).toBe(0);
      expect(Buffer.compare(read("deno7.mid"), read("deno8.mid"))).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  60_000,
);

test("cli generate as a process: bad input exits 2 and writes nothing, under Bun and Deno", () => {
  const dir = mkdtempSync(join(tmpdir(), "cadenza-generate-bad-"));
  try {
    writeBadInputs(dir);
    const before = readdirSync(dir).sort().join();
    for (
      const [what, argv, pattern] of BAD_INPUTS.filter(([w]) =>
        /emotion|bars 0|primer|directory/.test(w)
      )
    ) {
      for (const runtime of [BUN, DENO]) {
        const r = spawn([...runtime, ...argv(dir)]);
        expect({ what, code: r.code }).toEqual({ what, code: 2 });
        expect(r.err).toMatch(pattern);
        expect(readdirSync(dir).sort().join()).toBe(before);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

test(
  "examples/realtime.ts runs the engine at block rate, decodes notes and writes a MIDI file",
  () => {
    const dir = mkdtempSync(join(tmpdir(), "cadenza-realtime-"));
    try {
      const out = join(dir, "rt.mid");
      const r = spawn([
        process.execPath,
        "examples/realtime.ts",
        "--seconds",
        "2",
        "--speed",
        "4",
        "--out",
        out,
      ]);
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/melody +note on +\d+ velocity \d+/);
      expect(r.out).toMatch(/the caller never waits/);
      const smf = parseSmf(readFileSync(out));
      expect(smf.tracks.reduce((n, t) => n + t.notes.length, 0)).toBeGreaterThan(4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  60_000,
);
