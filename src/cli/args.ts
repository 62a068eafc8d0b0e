/**
 * Command-line flags: each command declares its flags; anything else is a usage error (exit 2).
 * Accepts `--name value`, `--name=value` and boolean `--name`; `--` ends the flags.
 */

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

export function parseArgs(argv: readonly string[], spec: FlagSpec, command: string): ParsedArgs {
  const parsed: ParsedArgs = { positionals: [], values: new Map(), switches: new Set() };
  const values = spec.values ?? {};
  const switches = new Set(spec.switches ?? []);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      parsed.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      parsed.positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = (eq < 0 ? arg : arg.slice(0, eq)).replace(/^--?/, "");
    if (Object.hasOwn(values, name)) {
      const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
      if (value === undefined) throw new UsageError(`${command}: --${name} needs a value`);
      parsed.values.set(name, value);
    } else if (switches.has(name) && eq < 0) {
      parsed.switches.add(name);
    } else {
      throw new UsageError(`${command}: unknown flag ${arg}`);
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
