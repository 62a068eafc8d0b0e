/** Native handles after destroy, and forged ones, under Deno: the cases of test/handles.test.ts. */

import { handleCases } from "../cases/handles.ts";

for (const c of handleCases) Deno.test({ name: c.name, fn: c.run });
