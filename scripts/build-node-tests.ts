/**
 * Bundles the Node test entries (test/node/suites.ts, and test/formats.test.ts with its
 * bun:test import mapped to test/node/bun-test.ts) into .node-test/, which sits at the depth
 * of test/ so that the suites' relative paths (../../shared/conformance) still resolve.
 * Run by `npm run test:node` under Bun.
 */

import { rmSync } from "node:fs";

const root = new URL("../", import.meta.url).pathname;
rmSync(`${root}.node-test`, { recursive: true, force: true });
const result = await Bun.build({
  entrypoints: [`${root}test/node/suites.ts`, `${root}test/formats.test.ts`],
  outdir: `${root}.node-test`,
  target: "node",
  format: "esm",
  splitting: true,
  packages: "external",
  external: ["bun:ffi"],
  plugins: [{
    name: "bun-test-for-node",
    setup(build) {
      build.onResolve({ filter: /^bun:test$/ }, () => ({ path: `${root}test/node/bun-test.ts` }));
    },
  }],
});
if (!result.success) {
  for (const log of result.logs) console.error(log);
  process.exit(1);
}
for (const out of result.outputs) console.log(out.path.slice(root.length));
