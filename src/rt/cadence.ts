/**
 * The Worker's model of the caller's cadence: from the submit times of the inputs it takes it
 * learns the block period (or takes the caller's hint) and predicts when the next input is
 * due, so that it can sleep until just before then and be awake when it arrives. submit()
 * then needs no Atomics.notify, a system call on the caller's thread (docs/PERFORMANCE.md,
 * "Block rate"). Plain arithmetic on one thread: no allocation, no clock of its own.
 */

/** Intervals within this share of the period count as the same cadence. */
const TOLERANCE = 0.25;
/** Steady intervals before the period is trusted. */
const STEADY = 8;
/** Intervals off the cadence in a row before it is learned again. */
const MISSES = 3;
/** The shortest lead (ms) before the due time at which the Worker wakes. */
const LEAD_MIN_MS = 0.1;
/** The longest lead (ms). */
const LEAD_MAX_MS = 0.4;
/** How long after the due time (ms) the Worker keeps polling before it sleeps. */
export const POLL_AFTER_MS = 0.3;

export class Cadence {
  /** The period in use (ms); 0 until one is learned. */
  periodMs = 0;
  /** How early (ms) before the due time to wake: grows with the lateness of wake-ups. */
  leadMs = 0.2;
  readonly #hintMs: number;
  #lastMs = Number.NaN;
  /**
   * When the block of the last input was due: submits come late (the caller was descheduled,
   * its timer fired late) more than early, so the phase follows an early submit at once and a
   * late one only slowly.
   */
  #anchorMs = Number.NaN;
  #steady = 0;
  #misses = 0;
  /** Running mean of how late wake-ups were, ms. */
  #lateMs = 0;

  /** `hintMs` > 0: the caller's block period, used from the first input on. */
  constructor(hintMs = 0) {
    this.#hintMs = hintMs > 0 ? hintMs : 0;
    this.periodMs = this.#hintMs;
  }

  /** Records the submit time (this thread's clock, ms) of an input taken. */
  observe(submitMs: number): void {
    const last = this.#lastMs;
    this.#lastMs = submitMs;
    if (last !== last) return;
    const interval = submitMs - last;
    const period = this.periodMs;
    const blocks = period > 0 ? Math.round(interval / period) : 0;
    // One block, or two (the caller skipped one).
    const onCadence = (blocks === 1 || blocks === 2) &&
      Math.abs(interval - blocks * period) <= TOLERANCE * period;
    if (!onCadence) {
      if (this.#hintMs > 0 || ++this.#misses < MISSES) return;
      // A new cadence (or none): learn it again from this interval.
      this.periodMs = interval > 0 ? interval : 0;
      this.#steady = 0;
      this.#misses = 0;
      this.#anchorMs = submitMs;
      return;
    }
    this.#misses = 0;
    if (blocks === 1 && this.#hintMs === 0) this.periodMs = period + (interval - period) / 16;
    if (this.#steady < STEADY) this.#steady++;
    const expected = this.#anchorMs + blocks * period;
    if (expected !== expected || submitMs < expected) this.#anchorMs = submitMs;
    else this.#anchorMs = expected + (submitMs - expected) / 16;
  }

  /**
   * When the next input is due (ms, this thread's clock), or NaN when the cadence is not
   * steady, or when the caller has missed two blocks in a row (it paused: sleep until told).
   */
  dueMs(nowMs: number): number {
    if (this.#steady < STEADY) return Number.NaN;
    const due = this.#anchorMs + this.periodMs;
    if (nowMs <= due + POLL_AFTER_MS) return due;
    if (nowMs <= due + this.periodMs + POLL_AFTER_MS) return due + this.periodMs;
    return Number.NaN;
  }

  /** Records how late (ms) a wake-up planned for `plannedMs` came. */
  woke(plannedMs: number, nowMs: number): void {
    const late = nowMs - plannedMs;
    this.#lateMs += ((late > 0 ? late : 0) - this.#lateMs) / 8;
    const lead = LEAD_MIN_MS + 2 * this.#lateMs;
    this.leadMs = lead < LEAD_MAX_MS ? lead : LEAD_MAX_MS;
  }
}
