/** Music output under Deno (cases in test/cases/music-io.ts). */

import { musicIoCases } from "../cases/music-io.ts";

for (const c of musicIoCases) Deno.test({ name: c.name, fn: c.run });
