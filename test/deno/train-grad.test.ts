/** test/cases/train_grad.ts under Deno. */

import { trainGradCases } from "../cases/train_grad.ts";

for (const c of trainGradCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
