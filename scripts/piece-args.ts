/**
 * The command line that scripts/generate-check.ts and scripts/voicing-check.ts share:
 * `[--models DIR] [--n N] [--bars B] [--json] [--help]`, N pieces per emotion of B bars.
 * Prints `help` and exits 0 on --help; exits 2 naming the flags on a bad N or B.
 */

import process from "node:process";
import { parseArgs } from "node:util";

export interface PieceArgs {
  models?: string;
  n: number;
  bars: number;
  json: boolean;
}

export function pieceArgs(script: string, help: string, defaultN: number): PieceArgs {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      models: { type: "string" },
      n: { type: "string", default: String(defaultN) },
      bars: { type: "string", default: "8" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(help);
    process.exit(0);
  }
  const n = Number(values.n);
  const bars = Number(values.bars);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(bars) || bars < 1 || bars > 512) {
    console.error(`${script}: --n ${values.n} --bars ${values.bars}: expected N >= 1, 1..512`);
    process.exit(2);
  }
  return { models: values.models, n, bars, json: values.json };
}
