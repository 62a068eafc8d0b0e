/** The WebAssembly backend against the native library under Deno: test/wasm-backend.ts. */

import { wasmCases } from "../wasm-backend.ts";

for (const c of wasmCases) Deno.test({ name: c.name, fn: c.run });
