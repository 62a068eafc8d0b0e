/** Music output under Bun (cases in test/cases/music-io.ts). */

import { test } from "bun:test";
import { musicIoCases } from "./cases/music-io.ts";

for (const c of musicIoCases) test(c.name, c.run, 60_000);
