/** The soak under Deno: the case of test/soak.test.ts (CADENZA_SOAK_S, default 30). */

import { soakCase } from "../cases/soak.ts";
import { envInt } from "../helpers.ts";

const c = soakCase(envInt("CADENZA_SOAK_S", 30));
Deno.test({ name: c.name, fn: c.run, sanitizeResources: false, sanitizeOps: false });
