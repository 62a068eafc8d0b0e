/**
 * The few assertions the shared cases need, runtime-neutral so the same case functions run
 * under `bun test` and `deno test`. A failure throws an Error whose message carries everything
 * needed to reproduce it (seed, spec, step, worst value).
 */

import { CadenzaError, type CadenzaErrorCode } from "../../src/errors.ts";
import type { Deviation } from "../helpers.ts";

/** One named check; the Bun and Deno test files register each as a test. */
export interface Case {
  name: string;
  run: () => void | Promise<void>;
}

export function fail(message: string): never {
  throw new Error(message);
}

export function check(ok: boolean, message: () => string): void {
  if (!ok) fail(message());
}

/** Fails when the normalised deviation is over `bound` (or NaN). */
export function checkDeviation(d: Deviation, bound: number, context: () => string): void {
  if (!(d.worst <= bound)) {
    fail(
      `${context()}: worst error ${d.worst.toExponential(3)} > bound ${bound.toExponential(1)} ` +
        `at index ${d.index} (got ${d.got}, want ${d.want})`,
    );
  }
}

function errorText(err: unknown): string {
  if (err instanceof CadenzaError) return `CadenzaError ${err.code}: ${err.message}`;
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

function checkCadenzaError(
  err: unknown,
  code: CadenzaErrorCode,
  pattern: RegExp,
  what: string,
): CadenzaError {
  if (!(err instanceof CadenzaError)) {
    fail(`${what}: expected CadenzaError ${code}, got ${errorText(err)}`);
  }
  check(err.code === code, () => `${what}: expected code ${code}, got ${errorText(err)}`);
  check(
    pattern.test(err.message),
    () => `${what}: message should match ${pattern}: ${err.message}`,
  );
  return err;
}

/** Runs `fn`; it must throw a CadenzaError with `code` and a message matching `pattern`. */
export function throwsCadenza(
  fn: () => unknown,
  code: CadenzaErrorCode,
  pattern: RegExp,
  what: string,
): CadenzaError {
  try {
    fn();
  } catch (err) {
    return checkCadenzaError(err, code, pattern, what);
  }
  return fail(`${what}: expected CadenzaError ${code}, but nothing was thrown`);
}

/**
 * Runs `fn`; it must throw a CadenzaError with `code` whose message contains every one of
 * `parts` (each a plain substring).
 */
export function throwsCadenzaWith(
  fn: () => unknown,
  code: CadenzaErrorCode,
  ...parts: string[]
): CadenzaError {
  const what = `expected ${code} naming ${parts.map((part) => JSON.stringify(part)).join(", ")}`;
  const err = throwsCadenza(fn, code, /(?:)/, what);
  check(err.name === "CadenzaError", () => `${what}: name is ${err.name}`);
  for (const part of parts) check(err.message.includes(part), () => `${what}: ${err.message}`);
  return err;
}

/** The async form of throwsCadenza (for loaders that return promises). */
export async function rejectsCadenza(
  fn: () => Promise<unknown>,
  code: CadenzaErrorCode,
  pattern: RegExp,
  what: string,
): Promise<CadenzaError> {
  try {
    await fn();
  } catch (err) {
    return checkCadenzaError(err, code, pattern, what);
  }
  return fail(`${what}: expected CadenzaError ${code}, but nothing was thrown`);
}
