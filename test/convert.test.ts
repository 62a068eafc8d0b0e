/**
 * `cadenza convert` under Bun (cases in test/cases/convert.ts, shared with Deno), plus the
 * command as a process under Deno: it writes only with --allow-write, and says so without it.
 */

import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { convertCases } from "./cases/convert.ts";
import { rtneuralModel } from "./helpers.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), "cadenza-convert-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

for (const c of convertCases()) test(c.name, c.run, 30_000);

function denoConvert(permissions: string[], out: string) {
  const deno = `${ROOT}node_modules/.bin/deno`;
  const argv = ["convert", rtneuralModel("gru.json"), join(scratch, out)];
  const result = Bun.spawnSync([deno, "run", ...permissions, "src/cli/main.ts", ...argv], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: result.exitCode, out: result.stdout.toString(), err: result.stderr.toString() };
}

test("convert as a process under Deno: --allow-write is needed and named when missing", () => {
  const refused = denoConvert(["--allow-read", "--allow-env"], "refused.safetensors");
  expect(refused.code).toBe(1);
  expect(refused.err).toMatch(
    /^cadenza: E_IO: cannot write .*refused\.safetensors: .*--allow-write/,
  );
  expect(readdirSync(scratch)).toEqual([]);
  const written = denoConvert(["--allow-read", "--allow-env", "--allow-write"], "gru.safetensors");
  expect(written.err).toBe("");
  expect(written.code).toBe(0);
  expect(written.out).toMatch(/-> .*gru\.safetensors \(safetensors\): 4 layers, 529 parameters/);
  expect(readdirSync(scratch)).toEqual(["gru.safetensors"]);
}, 30_000);
