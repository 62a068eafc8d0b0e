/**
 * The part of bun:test that the shared suites use, over node:test and node:assert, so that a
 * Bun test file runs under `node --test` once bundled (scripts/build-node-tests.ts maps the
 * "bun:test" import here). Only what those files call exists; anything else fails to build.
 */

import assert from "node:assert/strict";
import * as nodeTest from "node:test";

type Body = () => unknown;

export function test(name: string, body: Body, timeout?: number): void {
  nodeTest.test(name, { timeout: timeout ?? 60_000 }, async () => {
    await body();
  });
}

export function describe(name: string, body: () => void): void {
  nodeTest.describe(name, body);
}

export const beforeAll = (f: Body) => nodeTest.before(async () => void (await f()));
export const afterAll = (f: Body) => nodeTest.after(async () => void (await f()));

/** Partial deep equality, as bun's toMatchObject: every key of `expected`, recursively. */
function matches(actual: unknown, expected: unknown): boolean {
  if (expected === null || typeof expected !== "object") return Object.is(actual, expected);
  if (actual === null || typeof actual !== "object") return false;
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length &&
      expected.every((e, i) => matches(actual[i], e));
  }
  return Object.entries(expected).every(([k, v]) =>
    matches((actual as Record<string, unknown>)[k], v)
  );
}

export function expect(actual: unknown) {
  return {
    toBe: (expected: unknown) =>
      assert.ok(Object.is(actual, expected), `${actual} is not ${expected}`),
    toEqual: (expected: unknown) => assert.deepEqual(actual, expected),
    toBeLessThan: (bound: number) => assert.ok((actual as number) < bound, `${actual} >= ${bound}`),
    toBeLessThanOrEqual: (bound: number) =>
      assert.ok((actual as number) <= bound, `${actual} > ${bound}`),
    toBeGreaterThan: (bound: number) =>
      assert.ok((actual as number) > bound, `${actual} <= ${bound}`),
    toContain: (part: string) =>
      assert.ok(String(actual).includes(part), `${actual} lacks ${part}`),
    toMatchObject: (expected: unknown) =>
      assert.ok(matches(actual, expected), `${JSON.stringify(actual)} does not match`),
    toThrow: () => assert.throws(actual as () => unknown),
  };
}
