/**
 * The shape of one CLI command. Each command lives in its own file in src/cli/ and is listed in
 * main.ts; main.ts parses the flags the command declares and handles --help for it.
 */

import type { FlagSpec, ParsedArgs } from "./args.ts";

/** Where a command writes: `out` for results (stdout), `err` for diagnostics (stderr). */
export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export interface Command {
  name: string;
  /** One line for the top-level help. */
  summary: string;
  /** The full --help text. */
  help: string;
  flags: FlagSpec;
  /** Returns the exit code; throws CadenzaError (exit 1) or UsageError (exit 2). */
  run(args: ParsedArgs, output: Output): Promise<number>;
}

export const consoleOutput: Output = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
};
