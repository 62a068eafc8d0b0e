/**
 * Command-line flags: each command declares its flags; anything else is a usage error (exit 2).
 * Accepts `--name value`, `--name=value` and boolean `--name`; `--` ends the flags. The
 * splitting is node:util's parseArgs; this module keeps the commands' interface to it.
 */

import { parseArgs as utilParseArgs } from "node:util";

export interface FlagSpec {
  /** Flags that take a value, with the value's placeholder for help text. */
  values?: Record<string, string>;
  /** Flags that take no value. */
  switches?: string[];
}

export interface ParsedArgs {
  positionals: string[];
  values: Map<string, string>;
  switches: Set<string>;
}

/** A mistake in how the command was called: printed with a pointer to --help, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Splits argv with `parseArgs` from node:util (the same in Bun, Deno and Node) into its tokens,
 * then checks them against the command's flags so that every mistake is a UsageError naming the
 * flag: an unknown flag, a value flag without its value, a switch given a value.
 */
export function parseArgs(argv: readonly string[], spec: FlagSpec, command: string): ParsedArgs {
  const values = spec.values ?? {};
  const switches = new Set(spec.switches ?? []);
  const options: Record<string, { type: "string" | "boolean" }> = Object.create(null);
  for (const name of Object.keys(values)) options[name] = { type: "string" };
  for (const name of switches) options[name] = { type: "boolean" };
  // Not strict: unknown flags come back as tokens, refused below with our own message.
  const { tokens } = utilParseArgs({
    args: [...argv],
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const parsed: ParsedArgs = { positionals: [], values: new Map(), switches: new Set() };
  for (const token of tokens) {
    if (token.kind === "positional") {
      parsed.positionals.push(token.value);
    } else if (token.kind === "option") {
      if (Object.hasOwn(values, token.name)) {
        if (token.value === undefined) {
          throw new UsageError(`${command}: --${token.name} needs a value`);
        }
        parsed.values.set(token.name, token.value);
      } else if (switches.has(token.name) && !token.inlineValue) {
        parsed.switches.add(token.name);
      } else {
        const raw = token.inlineValue ? `${token.rawName}=${token.value}` : token.rawName;
        throw new UsageError(`${command}: unknown flag ${raw}`);
      }
    }
  }
  return parsed;
}

/** A flag's value as a positive integer, or `fallback` when absent. */
export function intFlag(args: ParsedArgs, name: string, fallback: number, command: string): number {
  const text = args.values.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1) {
    throw new UsageError(`${command}: --${name} must be a positive integer, got "${text}"`);
  }
  return value;
}

/** Exactly `count` positionals, named in the message when missing or extra. */
export function expectPositionals(args: ParsedArgs, names: string[], command: string): string[] {
  if (args.positionals.length !== names.length) {
    const wanted = names.map((name) => name.toUpperCase()).join(" ");
    throw new UsageError(
      `${command}: expected ${wanted}, got ${args.positionals.length} argument(s)` +
        (args.positionals.length > 0 ? `: ${args.positionals.join(" ")}` : ""),
    );
  }
  return args.positionals;
}
