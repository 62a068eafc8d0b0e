/** test/cases/train_defaults.ts under Deno. */

import { trainDefaultsCases } from "../cases/train_defaults.ts";

for (const c of trainDefaultsCases()) {
  Deno.test({ name: c.name, fn: c.run, sanitizeResources: false });
}
