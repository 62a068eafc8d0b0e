/** Music output under Deno (cases in test/cases/music-io.ts). */

import { musicIoCases } from "../cases/music-io.ts";

for (const c of musicIoCases) {
  if (c.skip !== undefined) console.warn(`skipped: ${c.name}: ${c.skip}`);
  const name = c.skip === undefined ? c.name : `${c.name} (skipped: ${c.skip})`;
  Deno.test({ name, fn: c.run, ignore: c.skip !== undefined });
}
