/**
 * `cadenza live` under Bun (cases in test/cases/live.ts), plus two runs as a process: under
 * Deno through its documented command line, and Ctrl-C, which must stop the engine cleanly and
 * still print the summary (exit 130).
 */

import { expect, test } from "bun:test";
import { fileURLToPath } from "node:url";
import { feederAllocationCase, liveCases, parseSummary } from "./cases/live.ts";
import { objectsCreated } from "./bun-alloc.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const TIMEOUT_MS = 30_000;

// One object per block would be 20,000; 16 is room for the JIT's own.
// Slack 64 objects over 20,000 blocks: in the whole suite JSC still makes a few cells a chunk
// (about 6 per 5,000 blocks, JIT tiering of the 4096-point feature extractor) where the file
// alone makes none; one allocation per block would be 20,000.
const FEEDER_SLACK = 64;
for (
  const c of [...liveCases, feederAllocationCase(objectsCreated, FEEDER_SLACK, "JSC objects")]
) {
  test(c.name, c.run, TIMEOUT_MS);
}

test("live runs under Deno with --allow-ffi --allow-read --allow-env", () => {
  const deno = `${ROOT}node_modules/.bin/deno`;
  const result = Bun.spawnSync(
    [deno, "run", "--allow-ffi", "--allow-read", "--allow-env", "src/cli/main.ts", "live"]
      .concat(["--seconds", "0.5", "--speed", "2", "--json", "--quiet"]),
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  expect(result.stderr.toString()).toBe("");
  expect(result.exitCode).toBe(0);
  const s = parseSummary(result.stdout.toString());
  expect(s.counters.submitted).toBe(188);
  expect(s.counters.submitted).toBe(s.counters.completed + s.counters.dropped);
  expect(s.counters.workerRestarts).toBe(0);
}, TIMEOUT_MS);

/** Starts `live` for a minute, sends SIGINT after its first status line, returns what it did. */
async function interrupted(command: string[]) {
  const child = Bun.spawn([...command, "src/cli/main.ts", "live", "--seconds", "60", "--json"], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = child.stderr.getReader();
  let err = "";
  while (!err.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    err += new TextDecoder().decode(value);
  }
  child.kill("SIGINT");
  const code = await child.exited;
  return { code, err, out: await new Response(child.stdout).text() };
}

for (
  const [runtime, command] of [
    ["Bun", [process.execPath]],
    ["Deno", [
      `${ROOT}node_modules/.bin/deno`,
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-env",
    ]],
  ] as const
) {
  test(
    `live under ${runtime}: Ctrl-C stops the engine and prints the summary (exit 130)`,
    async () => {
      const result = await interrupted([...command]);
      expect(result.err).toMatch(/^live \d+\.\d\d s {2}submitted \d+/);
      expect(result.code).toBe(130);
      const s = parseSummary(result.out);
      expect(s.interrupted).toBe(true);
      expect(s.engineState).toBe("running");
      expect(s.counters.submitted).toBeGreaterThan(0);
      expect(s.counters.submitted).toBeLessThan(60 * 375);
      expect(s.counters.submitted).toBe(s.counters.completed + s.counters.dropped);
    },
    TIMEOUT_MS,
  );
}
