/**
 * Puts `cadenza bench --json` figures beside the memory-traffic bound: for each model and the
 * pipeline step, its weight bytes over the streaming read bandwidth that bench/peak.zig
 * measures at that working-set size (docs/PERFORMANCE.md, "Method"), the median's ratio to it,
 * and onnxruntime's median over cadenza's when the file has peers.
 *
 *   CADENZA_LIB=fast bun src/cli/main.ts bench --iterations 2000 --peers --json /tmp/f32.json
 *   bun scripts/bench-bounds.ts /tmp/f32.json [/tmp/bf16.json ...]
 *
 * Prints one markdown table per file (the README's model tables come from these).
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { loadPeak, measureReadBandwidth, type PeakLib } from "../bench/lib.ts";

interface Figures {
  name: string;
  weightBytes: number;
  p50Us: number;
  p99Us: number;
}

interface Report {
  precision: string;
  runtime: string;
  iterations: number;
  date: string;
  models: Figures[];
  pipeline: { p50Us: number; p99Us: number };
  peers?: {
    onnxruntime: { models: { name: string; p50Us: number }[]; pipeline: { p50Us: number } };
  };
}

function boundUs(peak: PeakLib, bytes: number): number {
  return bytes / measureReadBandwidth(peak, bytes) / 1e3;
}

function printReport(peak: PeakLib, file: string): void {
  const report = JSON.parse(readFileSync(file, "utf8")) as Report;
  const ort = report.peers?.onnxruntime;
  const weightBytes = report.models.reduce((n, m) => n + m.weightBytes, 0);
  const rows: (Figures & { ortUs?: number })[] = [
    ...report.models.map((m) => ({
      ...m,
      ortUs: ort?.models.find((o) => o.name === m.name)?.p50Us,
    })),
    { name: "pipeline step", weightBytes, ...report.pipeline, ortUs: ort?.pipeline.p50Us },
  ];
  console.log(
    `\n${file}: ${report.precision}, ${report.runtime}, ${report.iterations} iterations, ` +
      `${report.date}\n`,
  );
  console.log(
    "| model | weight KB | p50 us | p99 us | bound us | p50 / bound | onnxruntime p50 us | ratio |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const bound = boundUs(peak, r.weightBytes);
    const ratio = r.ortUs === undefined ? "-" : `${(r.ortUs / r.p50Us).toFixed(2)}x`;
    console.log(
      `| ${r.name} | ${(r.weightBytes / 1024).toFixed(0)} | ${r.p50Us.toFixed(2)} | ` +
        `${r.p99Us.toFixed(1)} | ${bound.toFixed(2)} | ${(r.p50Us / bound).toFixed(2)}x | ` +
        `${r.ortUs === undefined ? "-" : r.ortUs.toFixed(1)} | ${ratio} |`,
    );
  }
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: bun scripts/bench-bounds.ts BENCH.json [BENCH.json ...]");
  process.exit(2);
}
const peak = await loadPeak();
for (const file of files) printReport(peak, file);
peak.close();
