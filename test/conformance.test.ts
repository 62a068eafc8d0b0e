/** RTNeural conformance under Bun; the cases are in test/cases/conformance.ts (shared with Deno). */

import { afterAll, test } from "bun:test";
import {
  CONFORMANCE_BOUND,
  conformanceCases,
  worstByConformanceCase,
} from "./cases/conformance.ts";

for (const c of conformanceCases()) test(c.name, c.run, 30_000);

afterAll(() => {
  const lines = [...worstByConformanceCase].map(([name, worst]) =>
    `  ${name.padEnd(14)} ${worst.toExponential(2)}`
  );
  console.log(`conformance worst abs error (bound ${CONFORMANCE_BOUND}):\n${lines.join("\n")}`);
});
