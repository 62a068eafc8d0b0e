/**
 * Shared bench helpers: the machine's measured limits (bench/peak.zig, built on first use and
 * opened through bun:ffi or Deno.dlopen), GFLOP/s and bandwidth arithmetic, and the tables the
 * suites print after mitata's own output. Percentiles, timing and the agreement check live in
 * src/bench/ (the `cadenza bench` command uses them too) and are re-exported here.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import process from "node:process";
import { table } from "../src/bench/report.ts";
import type { ModelSpec } from "../src/model/spec.ts";

export { benchInputs, type LatencySummary, percentile, summarizeUs } from "../src/bench/stats.ts";
export { checkAgreement } from "../src/bench/agreement.ts";
export { table } from "../src/bench/report.ts";

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = join(BENCH_DIR, "..");
const ZIG = join(REPO_ROOT, ".toolchain/zig-0.15.2/ziglang/zig");

// deno-lint-ignore no-explicit-any
const G = globalThis as any;
export const runtimeName: "bun" | "deno" | "node" = G.Bun ? "bun" : G.Deno ? "deno" : "node";

/** The machine's limits as bench/peak.zig measures them. */
export interface PeakLib {
  /** Runs the FMA loop with 16- or 8-lane vectors; returns the FLOPs done. */
  fma(lanes: 16 | 8, iterations: number): number;
  /** Sums `data` `repeats` times; returns bytes read. */
  read(data: Float32Array, repeats: number): number;
  /** `count` floats starting on a 64-byte (cache line) boundary, for `read`. */
  aligned(count: number): Float32Array;
  close(): void;
}

const CACHE_LINE_BYTES = 64;

/**
 * A cache-line-aligned view of `count` floats. The runtimes align a new buffer differently
 * (Bun: 64 bytes; Deno 2.9: 16 bytes past a line), and a 64-byte vector load that straddles
 * two lines halves the rate at which the L1 and L2 caches deliver: the probe would then
 * measure the allocator, not the machine.
 */
function alignedFloats(count: number, address: (data: Float32Array) => number): Float32Array {
  const data = new Float32Array(count + CACHE_LINE_BYTES / 4);
  const offset = ((CACHE_LINE_BYTES - (address(data) % CACHE_LINE_BYTES)) % CACHE_LINE_BYTES) / 4;
  const view = data.subarray(offset, offset + count);
  if (address(view) % CACHE_LINE_BYTES !== 0) {
    throw new Error(`bench/lib.ts: cannot align a Float32Array (address ${address(data)})`);
  }
  return view;
}

/** Builds bench/peak.zig (cached by source hash under zig-out/bench) and opens it. */
export async function loadPeak(): Promise<PeakLib> {
  const path = buildPeak();
  if (runtimeName === "bun") return await openPeakBun(path);
  if (runtimeName === "deno") return openPeakDeno(path);
  throw new Error("bench/lib.ts: the peak library needs Bun or Deno (FFI)");
}

function libraryFileName(): string {
  if (process.platform === "darwin") return "libczpeak.dylib";
  if (process.platform === "win32") return "czpeak.dll";
  return "libczpeak.so";
}

function buildPeak(): string {
  const source = join(BENCH_DIR, "peak.zig");
  const hash = createHash("sha256").update(readFileSync(source)).digest("hex").slice(0, 16);
  const outDir = join(REPO_ROOT, "zig-out", "bench", `peak-${hash}`);
  const lib = join(outDir, libraryFileName());
  if (existsSync(lib)) return lib;
  mkdirSync(outDir, { recursive: true });
  execFileSync(ZIG, [
    "build-lib",
    "-dynamic",
    "-O",
    "ReleaseFast",
    "-mcpu=native",
    source,
    `-femit-bin=${lib}`,
    "--cache-dir",
    join(REPO_ROOT, ".zig-cache"),
  ], { stdio: ["ignore", "inherit", "inherit"] });
  return lib;
}

async function openPeakBun(path: string): Promise<PeakLib> {
  const ffi = await import("bun:ffi");
  const { symbols, close } = ffi.dlopen(path, {
    cz_peak_fma_chains: { args: [], returns: "u32" },
    cz_peak_fma16: { args: ["u64", "f32"], returns: "f32" },
    cz_peak_fma8: { args: ["u64", "f32"], returns: "f32" },
    cz_peak_read: { args: ["ptr", "usize", "u32"], returns: "f32" },
  });
  const chains = symbols.cz_peak_fma_chains();
  return {
    fma(lanes, iterations) {
      const fn = lanes === 16 ? symbols.cz_peak_fma16 : symbols.cz_peak_fma8;
      sink(fn(iterations, 1.5));
      return iterations * 2 * lanes * chains;
    },
    read(data, repeats) {
      sink(symbols.cz_peak_read(ffi.ptr(data), data.length, repeats));
      return data.byteLength * repeats;
    },
    aligned: (count) => alignedFloats(count, (data) => ffi.ptr(data)),
    close,
  };
}

function openPeakDeno(path: string): PeakLib {
  const lib = G.Deno.dlopen(path, {
    cz_peak_fma_chains: { parameters: [], result: "u32" },
    cz_peak_fma16: { parameters: ["u64", "f32"], result: "f32" },
    cz_peak_fma8: { parameters: ["u64", "f32"], result: "f32" },
    cz_peak_read: { parameters: ["buffer", "usize", "u32"], result: "f32" },
  });
  const s = lib.symbols;
  const chains = s.cz_peak_fma_chains();
  return {
    fma(lanes, iterations) {
      const fn = lanes === 16 ? s.cz_peak_fma16 : s.cz_peak_fma8;
      sink(fn(BigInt(iterations), 1.5));
      return iterations * 2 * lanes * chains;
    },
    read(data, repeats) {
      sink(s.cz_peak_read(data, BigInt(data.length), repeats));
      return data.byteLength * repeats;
    },
    aligned: (count) =>
      alignedFloats(
        count,
        (data) => Number(G.Deno.UnsafePointer.value(G.Deno.UnsafePointer.of(data))),
      ),
    close: () => lib.close(),
  };
}

let sinkValue = 0;
/** Keeps a result observable so no engine can drop the call that made it. */
export function sink(value: number): void {
  sinkValue += value;
}
export function sinkTotal(): number {
  return sinkValue;
}

/** The best of `trials` timed runs of `work` (returns units done), as units per second. */
export function bestRate(work: () => number, trials: number): number {
  let best = 0;
  for (let t = 0; t < trials; t++) {
    const start = performance.now();
    const units = work();
    const seconds = (performance.now() - start) / 1e3;
    best = Math.max(best, units / seconds);
  }
  return best;
}

/**
 * FP32 FMA peak of one core in GFLOP/s: the best of many ~0.5 ms runs, shorter than a time
 * slice, since other tenants of a shared VM take whole slices and only the best run shows the
 * core alone.
 */
export function measureFmaPeak(peak: PeakLib, lanes: 16 | 8): number {
  const iterations = lanes === 16 ? 200_000 : 400_000;
  peak.fma(lanes, iterations);
  return bestRate(() => peak.fma(lanes, iterations), 200) / 1e9;
}

/**
 * Streaming read bandwidth in GB/s over a working set of `bytes` (already in cache after the
 * first pass, cache-line aligned as the native library's weights are), the rate at which a
 * batch-1 step can stream its weights at best.
 */
export function measureReadBandwidth(peak: PeakLib, bytes: number): number {
  const data = peak.aligned(Math.max(16, Math.floor(bytes / 4)));
  for (let i = 0; i < data.length; i++) data[i] = (i % 7) * 0.25;
  const repeats = Math.max(1, Math.round(16e6 / data.byteLength));
  peak.read(data, 1);
  return bestRate(() => peak.read(data, repeats), 50) / 1e9;
}

/** GFLOP/s for `flop` floating-point operations done in `ns` nanoseconds. */
export function gflops(flop: number, ns: number): number {
  return flop / ns;
}

/** FLOPs of one dense layer (multiply-adds count two) for `batch` rows. */
export function denseFlop(inputSize: number, outputSize: number, batch = 1): number {
  return 2 * inputSize * outputSize * batch;
}

/** FLOPs of one LSTM step: the fused gate matrix over [x, h]. */
export function lstmFlop(inputSize: number, hiddenSize: number, batch = 1): number {
  return 2 * 4 * hiddenSize * (inputSize + hiddenSize) * batch;
}

/** Prints rows as an aligned plain-text table (first column left, the rest right). */
export function printTable(header: string[], rows: string[][]): void {
  for (const line of table(header, rows)) console.log(line);
}

/** The median time (ns) of a named benchmark in a mitata run() result. */
export function medianNs(
  result: { benchmarks: { alias: string; runs: { stats?: { p50: number } }[] }[] },
  alias: string,
): number {
  const trial = result.benchmarks.find((b) => b.alias === alias);
  const p50 = trial?.runs[0]?.stats?.p50;
  if (p50 === undefined) throw new Error(`bench/lib.ts: no result for benchmark "${alias}"`);
  return p50;
}

/**
 * FLOPs of one step of a model (per row): two per weight-matrix element (every tensor named
 * W...), plus q.k and p.v over a full KV cache for attention; biases and activations left out.
 */
export function specFlop(spec: ModelSpec): number {
  let flop = 0;
  for (const layer of spec.layers) {
    for (const [name, t] of Object.entries(layer.tensors)) {
      if (name.startsWith("W")) flop += 2 * t.length;
    }
    if (layer.kind === "attention" || layer.kind === "transformer") {
      flop += 4 * layer.outputSize * (layer.context ?? 0);
    }
  }
  return flop;
}

/** The fast library unless CADENZA_LIB names another: timing the checked build says little. */
export function benchLibrary(): string {
  return process.env.CADENZA_LIB ?? "fast";
}
