/** Music output under Bun (cases in test/cases/music-io.ts). */

import { test } from "bun:test";
import { musicIoCases } from "./cases/music-io.ts";

for (const c of musicIoCases) {
  if (c.skip === undefined) test(c.name, c.run, 60_000);
  else {
    console.warn(`skipped: ${c.name}: ${c.skip}`);
    test.skip(`${c.name} (skipped: ${c.skip})`, c.run);
  }
}
