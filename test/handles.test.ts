/**
 * Native handles after destroy, and forged ones, under Bun (cases in test/cases/handles.ts,
 * shared with Deno), and the same from C: test/c/handles.c built with the system C compiler
 * (CC, else cc) against the ReleaseSafe library and run in its own process.
 */

import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { resolveLibrary } from "../src/native/library.ts";
import { handleCases } from "./cases/handles.ts";

for (const c of handleCases) test(c.name, c.run, 30_000);

test("handles: the same from C, linked against the library with nothing else", () => {
  const library = resolveLibrary("safe");
  const dir = mkdtempSync(join(tmpdir(), "cadenza-handles-"));
  try {
    const exe = join(dir, "handles");
    const cc = process.env.CC ?? "cc";
    const source = new URL("./c/handles.c", import.meta.url).pathname;
    const flags = ["-std=c11", "-Wall", "-Werror", "-O1", `-Wl,-rpath,${dirname(library)}`];
    const built = spawnSync(cc, [...flags, source, "-o", exe, library], { encoding: "utf8" });
    expect(built.error).toBeUndefined();
    expect(built.stderr + built.stdout).toBe("");
    expect(built.status).toBe(0);
    const ran = spawnSync(exe, [], { encoding: "utf8" });
    expect(ran.stderr).toBe("");
    expect(ran.signal).toBeNull();
    expect(ran.stdout).toBe("ok\n");
    expect(ran.status).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
