/** Training data, tasks, progress and the float64 reference under Deno (test/cases/train_data.ts). */

import { trainDataCases } from "../cases/train_data.ts";

for (const c of trainDataCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
