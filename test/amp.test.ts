/** The guitar-amp model JSON under Bun (cases in test/cases/amp.ts, shared with Deno). */

import { afterAll, test } from "bun:test";
import { AMP_BOUND, ampCases, worstByAmpCase } from "./cases/amp.ts";

for (const c of ampCases()) test(c.name, c.run, 30_000);

afterAll(() => {
  const lines = [...worstByAmpCase].map(([name, worst]) =>
    `  ${name.padEnd(40)} ${worst.toExponential(2)}`
  );
  console.log(`amp json worst abs error (bound ${AMP_BOUND}):\n${lines.join("\n")}`);
});
