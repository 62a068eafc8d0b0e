/** test/cases/train_cli.ts under Deno. */

import { trainCliCases } from "../cases/train_cli.ts";

for (const c of trainCliCases()) Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
