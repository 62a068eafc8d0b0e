/**
 * The Deno allocation probe (alloc-probe.ts) is sensitive enough: a body that allocates one
 * small object per call shows at least 16 bytes per call, with collections forced before each
 * chunk so no scavenge can drop them, and a body that allocates nothing stays within the slack
 * the allocation tests use (256 bytes per 1,000 calls).
 */

import { bytesPerThousand } from "./alloc-probe.ts";

const CALLS = 20_000;

Deno.test("deno probe: one object per call is counted, none is within the slack", () => {
  const kept = new Float64Array(1);
  // The objects escape into a small ring, so no compiler can keep them in registers.
  const sink: { value: number }[] = new Array(8);
  const allocating = (calls: number) => {
    for (let i = 0; i < calls; i++) {
      const box = { value: i }; // one object per call, dead 8 calls later
      sink[i & 7] = box;
      kept[0] += box.value;
    }
  };
  const clean = (calls: number) => {
    for (let i = 0; i < calls; i++) kept[0] += i;
  };
  allocating(2000);
  clean(2000);
  const one = bytesPerThousand(CALLS, allocating);
  const none = bytesPerThousand(CALLS, clean);
  if (one < 16_000 * 0.95) throw new Error(`one object per call measured ${one} bytes per 1,000`);
  if (none > 256) throw new Error(`no allocation measured ${none} bytes per 1,000`);
});
