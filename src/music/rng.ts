/**
 * The decoder's seeded generator: xoshiro128** seeded through splitmix32, all state in a
 * Uint32Array so that drawing allocates nothing (a draw returns a small integer, never a boxed
 * double). The same seed gives the same stream in Bun and in Deno.
 *
 * ```ts
 * const rng = new Rng(7);
 * const u = rng.nextU24() / RNG_RANGE;           // uniform in [0, 1)
 * ```
 */

import { CadenzaError } from "../errors.ts";

/** nextU24() is below this: 2^24. */
export const RNG_RANGE = 16_777_216;
export const INV_RNG_RANGE = 1 / RNG_RANGE;

export class Rng {
  readonly #s = new Uint32Array(4);
  readonly seed: number;

  /** `seed`: an integer 0 .. 2^32 - 1. */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
      throw new CadenzaError("E_ARGUMENT", `seed must be an integer 0..4294967295, got ${seed}`);
    }
    this.seed = seed;
    this.reseed(seed);
  }

  reseed(seed: number): void {
    let z = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      // splitmix32
      z = (z + 0x9e3779b9) | 0;
      let x = z;
      x = Math.imul(x ^ (x >>> 16), 0x21f0aaad);
      x = Math.imul(x ^ (x >>> 15), 0x735a2d97);
      this.#s[i] = (x ^ (x >>> 15)) >>> 0;
    }
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
  }

  /** A uniform integer 0 .. 2^24 - 1 (a small integer: no allocation). */
  nextU24(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9);
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result >>> 8;
  }

  /** A uniform double in [0, 1) (for code off the real-time path). */
  next(): number {
    return this.nextU24() * INV_RNG_RANGE;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
