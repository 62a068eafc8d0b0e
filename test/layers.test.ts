/** Every layer kind against the float64 reference under Bun; cases in test/cases/layers.ts. */

import { afterAll, test } from "bun:test";
import { BASE_SEED, LAYER_BOUND, layerCases, worstByCase } from "./cases/layers.ts";

for (const c of layerCases()) test(c.name, c.run, 30_000);

afterAll(() => {
  const sorted = [...worstByCase].sort((a, b) => b[1] - a[1]).slice(0, 8);
  const lines = sorted.map(([name, worst]) => `  ${name.padEnd(40)} ${worst.toExponential(2)}`);
  console.log(
    `layers (CADENZA_TEST_SEED=${BASE_SEED}, bound ${LAYER_BOUND}), worst cases:\n${
      lines.join("\n")
    }`,
  );
});
