/**
 * Serves the browser demo: bundles it (web/build.ts), then serves web/index.html, the bundles,
 * the WebAssembly library (the package's prebuilt/wasm/, else the local zig-out/wasm/) and the
 * five models/*.safetensors, with the cross-origin isolation headers (COOP same-origin, COEP
 * require-corp) that SharedArrayBuffer needs in a browser. Prints the page's URL as its first
 * line of stdout.
 *
 *   bun web/serve.ts [--port 8080] [--host 127.0.0.1]
 */

import { existsSync } from "node:fs";
import { join, normalize } from "node:path";
import { buildDemo } from "./build.ts";

const HELP = `usage: bun web/serve.ts [--port N] [--host ADDRESS]

Bundles and serves the browser demo (web/index.html) with the cross-origin isolation headers
SharedArrayBuffer needs. --port 0 picks a free port (default 8080); --host defaults to
127.0.0.1. Needs the WebAssembly library: \`npm run build:wasm\` (or a package's prebuilt/).`;

function option(name: string, fallback: string): string {
  const at = Bun.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = Bun.argv[at + 1];
  if (value === undefined || value.startsWith("--")) {
    console.error(`web/serve.ts: --${name} needs a value\n\n${HELP}`);
    process.exit(2);
  }
  return value;
}

if (Bun.argv.includes("--help") || Bun.argv.includes("-h")) {
  console.log(HELP);
  process.exit(0);
}
const port = Number(option("port", "8080"));
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`web/serve.ts: --port must be an integer 0..65535, got ${option("port", "")}`);
  process.exit(2);
}
const host = option("host", "127.0.0.1");

const web = new URL(".", import.meta.url).pathname;
const root = join(web, "..");
const wasmDirs = [join(root, "prebuilt", "wasm"), join(root, "zig-out", "wasm")];
const wasmDir = wasmDirs.find((dir) => existsSync(join(dir, "cadenza_fast.wasm")));
if (wasmDir === undefined) {
  console.error(
    `web/serve.ts: cadenza_fast.wasm not found in ${wasmDirs.join(" or ")}: run ` +
      "`npm run build:wasm`",
  );
  process.exit(1);
}

await buildDemo();

/** URL path -> file, inside the four places served; null for anything else. */
function resolve(path: string): string | null {
  const clean = normalize(decodeURIComponent(path));
  if (clean.includes("..")) return null;
  if (clean === "/" || clean === "/index.html") return join(web, "index.html");
  const dist = clean.match(/^\/dist\/([\w.-]+\.(js|map))$/);
  if (dist) return join(web, "dist", dist[1]);
  const wasm = clean.match(/^\/wasm\/(cadenza_(safe|fast)\.wasm)$/);
  if (wasm) return join(wasmDir!, wasm[1]);
  const model = clean.match(/^\/models\/(\w+\.safetensors)$/);
  if (model) return join(root, "models", model[1]);
  return null;
}

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  map: "application/json",
  wasm: "application/wasm",
  safetensors: "application/octet-stream",
};

const server = Bun.serve({
  hostname: host,
  port,
  async fetch(request) {
    const headers = {
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
      "Cross-Origin-Resource-Policy": "same-origin",
      "Cache-Control": "no-store",
    };
    const path = resolve(new URL(request.url).pathname);
    const file = path === null ? null : Bun.file(path);
    if (file === null || !(await file.exists())) {
      return new Response("not found", { status: 404, headers });
    }
    const type = TYPES[path!.slice(path!.lastIndexOf(".") + 1)] ?? "application/octet-stream";
    return new Response(file, { headers: { ...headers, "Content-Type": type } });
  },
});

console.log(`http://${host}:${server.port}/`);
console.error(`serving the cadenza demo (Ctrl-C stops it); WebAssembly from ${wasmDir}`);
