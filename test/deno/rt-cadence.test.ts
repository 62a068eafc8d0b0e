/** The Worker's cadence model under Deno (cases in test/cases/rt_cadence.ts). */

import { cadenceCases } from "../cases/rt_cadence.ts";

for (const c of cadenceCases) Deno.test(c.name, c.run);
