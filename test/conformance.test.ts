/** RTNeural conformance under Bun; the cases are in test/cases/conformance.ts (shared with Deno). */

import { afterAll, expect, test } from "bun:test";
import { openNative } from "../src/native/index.ts";
import {
  CONFORMANCE_BOUND,
  conformanceCases,
  worstByConformanceCase,
} from "./cases/conformance.ts";

// `npm run test:fast` runs this file, the layer and the precision suites with CADENZA_LIB=fast:
// check that the models really ran on the build the variable names, so that the run against
// the ReleaseFast library cannot silently fall back to the ReleaseSafe one.
test("the models run on the library CADENZA_LIB names (default safe)", async () => {
  const variant = process.env.CADENZA_LIB ?? "safe";
  const api = await openNative();
  const wasm = process.env.CADENZA_BACKEND === "wasm";
  const built = wasm ? `cadenza_${variant}.wasm` : `libcadenza_${variant}.`;
  const expected = variant === "safe" || variant === "fast" ? built : variant;
  expect(api.libraryPath).toContain(expected);
});

for (const c of conformanceCases()) test(c.name, c.run, 30_000);

afterAll(() => {
  const lines = [...worstByConformanceCase].map(([name, worst]) =>
    `  ${name.padEnd(14)} ${worst.toExponential(2)}`
  );
  const library = process.env.CADENZA_LIB ?? "safe";
  console.log(
    `conformance worst abs error, ${library} library (bound ${CONFORMANCE_BOUND}):\n${
      lines.join("\n")
    }`,
  );
});
