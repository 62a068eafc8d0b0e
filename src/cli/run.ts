/**
 * `cadenza run MODEL --input FILE`: streams input rows through a model one step at a time and
 * prints each step's outputs (stdout) and the timing (stderr): load ms, per-step us.
 */

import { CadenzaError } from "../errors.ts";
import { parseRows } from "../model/formats/rows.ts";
import { loadModel } from "../model/load.ts";
import type { Model } from "../model/model.ts";
import { readText } from "../native/io.ts";
import { expectPositionals, intFlag, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import { MODEL_FLAGS, MODEL_FLAGS_HELP, specOptions } from "./model_flags.ts";

/** Outputs kept for printing are bounded: 2^27 floats (512 MiB). */
const RESULT_FLOATS_MAX = 2 ** 27;

/** Runs the steps, timing each forward alone; outputs are copied aside for printing later. */
function timeSteps(model: Model, rows: Float32Array[], steps: number) {
  const width = model.outputSize;
  if (steps * width > RESULT_FLOATS_MAX) {
    throw new CadenzaError(
      "E_LIMIT",
      `run: ${steps} steps of ${width} outputs is more than ${RESULT_FLOATS_MAX} values`,
    );
  }
  const results = new Float32Array(steps * width);
  const step_us = new Float64Array(steps);
  for (let step = 0; step < steps; step++) {
    const start_ms = performance.now();
    const y = model.forward(rows[step % rows.length]);
    step_us[step] = (performance.now() - start_ms) * 1000;
    results.set(y, step * width);
  }
  return { results, step_us };
}

/** The nearest-rank quantile of sorted values. */
function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function timingLine(load_ms: number, step_us: Float64Array, library_path: string): string {
  const sorted = step_us.slice().sort();
  const us = (q: number) => quantile(sorted, q).toFixed(2);
  const library = library_path.slice(library_path.lastIndexOf("/") + 1);
  return `load ${load_ms.toFixed(2)} ms; ${sorted.length} steps: median ${us(0.5)} us, ` +
    `p99 ${us(0.99)} us, max ${us(1)} us (${library})`;
}

/** Shortest text that reads back as the same float32. */
function formatValue(value: number): string {
  return String(Number(value.toPrecision(9)));
}

export const runCommand: Command = {
  name: "run",
  summary: "stream input rows through a model step by step, with timing",
  help: [
    "usage: cadenza run MODEL --input FILE [--steps N] [--format F] [--layers FILE]",
    "",
    "Feeds FILE's rows (decimal numbers separated by commas, semicolons or spaces, one step",
    "per line; blank lines and text after a # are skipped; LF, CRLF or CR line ends)",
    "through MODEL one step at a time, its state carried from step to step. Prints each step's",
    "outputs to stdout, one line per step, and the timing to stderr: load ms and per-step us",
    "(median, p99, max) of the forward calls alone.",
    "",
    "flags:",
    "  --input FILE     the input rows (required)",
    "  --steps N        run N steps, cycling through the rows (default: one per row)",
    "  --quiet          print only the timing",
    "  --library L      safe (default), fast, or a library path (else CADENZA_LIB)",
    MODEL_FLAGS_HELP,
  ].join("\n"),
  flags: {
    values: { ...MODEL_FLAGS, input: "FILE", steps: "N", library: "safe|fast|PATH" },
    switches: ["quiet"],
  },
  async run(args, output) {
    const [path] = expectPositionals(args, ["model"], "run");
    const input_path = args.values.get("input");
    if (input_path === undefined) throw new UsageError("run: --input FILE is required");
    // Every usage mistake is reported before the model is loaded.
    const steps_flag = args.values.has("steps") ? intFlag(args, "steps", 1, "run") : undefined;
    const options = await specOptions(args, "run");
    const load_start_ms = performance.now();
    const model = await loadModel(path, { ...options, library: args.values.get("library") });
    const load_ms = performance.now() - load_start_ms;
    try {
      const rows = parseRows(await readText(input_path), model.inputSize, input_path);
      const steps = steps_flag ?? rows.length;
      const { results, step_us } = timeSteps(model, rows, steps);
      if (!args.switches.has("quiet")) {
        const width = model.outputSize;
        for (let step = 0; step < steps; step++) {
          const values = results.subarray(step * width, (step + 1) * width);
          output.out(Array.from(values, formatValue).join(","));
        }
      }
      output.err(timingLine(load_ms, step_us, model.nativeInfo().libraryPath));
      return 0;
    } finally {
      model.dispose();
    }
  },
};
