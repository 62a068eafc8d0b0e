/**
 * Bundles the browser demo (web/main.ts, web/worker.ts, web/worklet.ts) into web/dist/ with
 * Bun's bundler. The demo reuses src/ as it is: the few modules there that also read files
 * (the model loader's path branch, the native library finder, the atomic writer) import
 * node:fs and node:process, which a browser lacks; here those imports resolve to stubs that
 * throw "not available in a browser" if called. The browser paths never call them: models are
 * loaded from fetched bytes and the library from openWasmLibrary. bun:ffi (the Bun adapter's, imported
 * only under Bun) is stubbed the same way.
 *
 *   bun web/build.ts        # also run by web/serve.ts at start
 */

import type { BunPlugin } from "bun";

/** What src/ imports from each Node module (the build fails naming any new one). */
const STUBBED: Record<string, string[]> = {
  "node:fs": [
    "statSync",
    "readFileSync",
    "closeSync",
    "fsyncSync",
    "openSync",
    "renameSync",
    "rmSync",
    "writeSync",
  ],
  "node:fs/promises": ["readFile", "writeFile"],
  "node:url": ["fileURLToPath"],
  "bun:ffi": ["dlopen", "FFIType"],
};

function stubModule(name: string): string {
  const lines = [
    "const unavailable = (what) => () => {",
    `  throw new Error(\`\${what} (${name}) is not available in a browser\`);`,
    "};",
  ];
  if (name === "node:process") {
    lines.push("export default { pid: 0, env: {}, argv: [] };");
  } else if (name === "bun:ffi") {
    lines.push('export const dlopen = unavailable("dlopen");', "export const FFIType = {};");
  } else {
    for (const fn of STUBBED[name]) lines.push(`export const ${fn} = unavailable("${fn}");`);
  }
  return lines.join("\n");
}

const browserStubs: BunPlugin = {
  name: "cadenza-browser-stubs",
  setup(build) {
    build.onResolve({ filter: /^(node:(fs|fs\/promises|process|url)|bun:ffi)$/ }, (args) => ({
      path: args.path,
      namespace: "cadenza-stub",
    }));
    build.onLoad({ filter: /.*/, namespace: "cadenza-stub" }, (args) => ({
      contents: stubModule(args.path),
      loader: "js",
    }));
  },
};

const here = new URL(".", import.meta.url).pathname;

/** Builds web/dist/{main,worker,worklet}.js; throws with the bundler's messages on failure. */
export async function buildDemo(): Promise<string[]> {
  const result = await Bun.build({
    entrypoints: ["main.ts", "worker.ts", "worklet.ts"].map((f) => `${here}${f}`),
    outdir: `${here}dist`,
    target: "browser",
    format: "esm",
    // The worklet is one self-contained module (AudioWorklet modules load no chunks).
    splitting: false,
    minify: false,
    sourcemap: "linked",
    plugins: [browserStubs],
  });
  if (!result.success) {
    throw new Error(`web/build.ts: ${result.logs.map(String).join("\n")}`);
  }
  return result.outputs.map((o) => o.path);
}

if (import.meta.main) {
  for (const path of await buildDemo()) console.log(path);
}
