/** Every layer kind against the float64 reference under Deno: the cases of test/layers.test.ts. */

import { layerCases } from "../cases/layers.ts";

for (const c of layerCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
