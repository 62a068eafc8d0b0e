/** What `cadenza bench` measured (its JSON shape, docs/PERFORMANCE.md) and its text table. */

import type { Precision } from "../model/image.ts";
import { agreementTolerance } from "./agreement.ts";
import type { LatencySummary } from "./stats.ts";

/** Where the report's lines go (the CLI passes its stdout). */
export interface ReportOutput {
  out(line: string): void;
}

export interface ModelFigures extends LatencySummary {
  name: string;
  parameters: number;
  weightBytes: number;
}

export interface BenchReport {
  precision: Precision;
  iterations: number;
  runtime: string;
  library: string;
  date: string;
  models: ModelFigures[];
  pipeline: LatencySummary;
  memory: { rssBytes: number };
  /**
   * `--models DIR` beside an FP32 directory (`--baseline`): both pipelines' steps timed in
   * alternating rounds of the same run, and the ratio of the medians (compressed / FP32).
   */
  baseline?: {
    dir: string;
    weightBytes: number;
    pipeline: LatencySummary;
    compressed: LatencySummary;
    ratio: number;
    rounds: number;
  };
  peers?: {
    onnxruntime: {
      version: string;
      agreementMaxAbs: number;
      models: ModelFigures[];
      pipeline: LatencySummary;
      pipelineSync?: LatencySummary;
    };
  };
}

const fmt = (value: number, digits = 1) => value.toFixed(digits);

/** The report as the text table `cadenza bench` prints. */
export function printReport(report: BenchReport, output: ReportOutput): void {
  const peer = report.peers?.onnxruntime;
  output.out(
    `cadenza bench: ${report.precision}, ${report.iterations} iterations, ${report.runtime}, ` +
      `library ${report.library}, ${report.date}`,
  );
  const header = ["model", "params", "weight KB", "p50 us", "p99 us", "max us"];
  if (peer) header.push("ort p50 us", "ort/cadenza");
  const rows = report.models.map((m) => {
    const row = [
      m.name,
      String(m.parameters),
      fmt(m.weightBytes / 1024),
      fmt(m.p50Us),
      fmt(m.p99Us),
      fmt(m.maxUs),
    ];
    const other = peer?.models.find((p) => p.name === m.name);
    if (other) row.push(fmt(other.p50Us), `${fmt(other.p50Us / m.p50Us, 2)}x`);
    return row;
  });
  const total = report.models.reduce((n, m) => n + m.parameters, 0);
  const bytes = report.models.reduce((n, m) => n + m.weightBytes, 0);
  const p = report.pipeline;
  const pipeRow = [
    "pipeline step",
    String(total),
    fmt(bytes / 1024),
    fmt(p.p50Us),
    fmt(p.p99Us),
    fmt(p.maxUs),
  ];
  if (peer) pipeRow.push(fmt(peer.pipeline.p50Us), `${fmt(peer.pipeline.p50Us / p.p50Us, 2)}x`);
  for (const line of table(header, [...rows, pipeRow])) output.out(line);
  if (peer) {
    output.out(
      `onnxruntime-node ${peer.version}: outputs agree within ${
        peer.agreementMaxAbs.toExponential(1)
      } ` +
        `(tolerance ${agreementTolerance(report.precision)}); pipeline = five awaited ` +
        "session.run" +
        (peer.pipelineSync
          ? `; synchronous binding run: p50 ${fmt(peer.pipelineSync.p50Us)} us ` +
            `(${fmt(peer.pipelineSync.p50Us / p.p50Us, 2)}x)`
          : ""),
    );
  }
  const worstModel = Math.max(...report.models.map((m) => m.p99Us));
  output.out(
    `targets: single model p99 ${fmt(worstModel)} us vs 2000 us (${
      fmt(2000 / worstModel)
    }x under); ` +
      `pipeline p99 ${fmt(p.p99Us)} us vs 10000 us (${fmt(10000 / p.p99Us)}x under); ` +
      `weights ${fmt(bytes / 1e6, 2)} MB vs ~4 MB`,
  );
  const base = report.baseline;
  if (base) {
    output.out(
      `against FP32 ${base.dir} (${fmt(base.weightBytes / 1024)} KB of weights), ${base.rounds} ` +
        `alternating rounds: pipeline step p50 ${fmt(base.compressed.p50Us)} us vs ` +
        `${fmt(base.pipeline.p50Us)} us FP32: ${fmt(base.ratio, 3)}x the FP32 step`,
    );
  }
  output.out(`memory: rss ${fmt(report.memory.rssBytes / 1048576)} MiB`);
}

/** Aligned plain-text rows: the first column left, the others right. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join(
      "  ",
    );
  return [line(header), ...rows.map(line)];
}
