#!/usr/bin/env bun
/**
 * The `cadenza` command line. Under Bun: `bun src/cli/main.ts <command>`; under Deno:
 * `deno run --allow-ffi --allow-read --allow-env src/cli/main.ts <command>` (`convert` also needs
 * `--allow-write`). A new command is one file in
 * src/cli/ exporting a Command, added to `commands` below.
 */

import { CadenzaError } from "../errors.ts";
import { exit, scriptArgs } from "../native/io.ts";
import { parseArgs, UsageError } from "./args.ts";
import { type Command, consoleOutput, type Output } from "./command.ts";
import { benchCommand } from "./bench.ts";
import { compressCommand } from "./compress.ts";
import { convertCommand } from "./convert.ts";
import { evalCommand } from "./eval.ts";
import { generateCommand, respondCommand } from "./generate.ts";
import { inspectCommand } from "./inspect.ts";
import { liveCommand } from "./live.ts";
import { pruneCommand } from "./prune.ts";
import { runCommand } from "./run.ts";
import { distillCommand, finetuneCommand, quantizeCommand, trainCommand } from "./train.ts";

export const commands: readonly Command[] = [
  generateCommand,
  respondCommand,
  inspectCommand,
  convertCommand,
  runCommand,
  benchCommand,
  liveCommand,
  trainCommand,
  finetuneCommand,
  distillCommand,
  quantizeCommand,
  compressCommand,
  evalCommand,
  pruneCommand,
];

function topHelp(): string {
  const width = Math.max(...commands.map((command) => command.name.length));
  const lines = commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`);
  return [
    "cadenza: real-time neural inference for generative music",
    "",
    "usage: cadenza <command> [flags]",
    "",
    "commands:",
    ...lines,
    "",
    "Run `cadenza <command> --help` for a command's flags.",
    "Environment: CADENZA_LIB=safe|fast|<path> picks the native library (default safe).",
  ].join("\n");
}

function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  const flags = end < 0 ? argv : argv.slice(0, end);
  return flags.includes("--help") || flags.includes("-h");
}

/** Runs one command line; returns the exit code (0 ok, 1 error, 2 usage). */
export async function main(
  argv: readonly string[],
  output: Output = consoleOutput,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === "--help" || name === "-h" || name === "help") {
    output.out(topHelp());
    return 0;
  }
  if (name === undefined) {
    output.err(topHelp());
    return 2;
  }
  const command = commands.find((candidate) => candidate.name === name);
  if (command === undefined) {
    output.err(
      `cadenza: unknown command "${name}"; commands: ${commands.map((c) => c.name).join(", ")}`,
    );
    output.err("Run `cadenza --help` for usage.");
    return 2;
  }
  return await dispatch(command, rest, output);
}

async function dispatch(command: Command, argv: string[], output: Output): Promise<number> {
  if (wantsHelp(argv)) {
    output.out(command.help);
    return 0;
  }
  try {
    return await command.run(parseArgs(argv, command.flags, command.name), output);
  } catch (err) {
    if (err instanceof UsageError) {
      output.err(`cadenza: ${err.message}`);
      output.err(`Run \`cadenza ${command.name} --help\` for usage.`);
      return 2;
    }
    if (err instanceof CadenzaError) {
      output.err(`cadenza: ${err.code}: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

if (import.meta.main) {
  exit(await main(scriptArgs()));
}
