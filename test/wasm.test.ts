/** The WebAssembly backend against the native library under Bun (cases: test/wasm-backend.ts). */

import { test } from "bun:test";
import { wasmCases } from "./wasm-backend.ts";

for (const c of wasmCases) test(c.name, c.run, 60_000);
