/**
 * The Worker's model of the caller's cadence: from the submit times of the inputs it takes it
 * learns the block period (or takes the caller's hint) and predicts when the next input is
 * due, so that it can sleep until just before then and be awake when it arrives. submit()
 * then needs no Atomics.notify, a system call on the caller's thread (docs/PERFORMANCE.md,
 * "Block rate"). Plain arithmetic on one thread: no allocation, no clock of its own.
 */

/** Submits within this share of the period of the predicted phase count as on the cadence. */
const TOLERANCE = 0.25;
/**
 * The cadence is trusted once STEADY submits more than misses (a miss counts twice) came on
 * it, and until that count falls to 0: a steady caller with a rare late submit stays trusted,
 * an irregular one does not become so.
 */
const STEADY = 8;
/** Submits off the cadence in a row before it is learned again. */
const MISSES = 8;
/** Blocks without a submit after which the caller is taken to have paused. */
const PAUSED_BLOCKS = 4;
/** The shortest and longest lead (ms) before the due time at which the Worker wakes. */
const LEAD_MIN_MS = 0.1;
const LEAD_MAX_MS = 0.4;
/** The shortest and longest time (ms) the Worker polls past the due time before it sleeps. */
const POLL_MIN_MS = 0.1;
const POLL_MAX_MS = 0.5;

export class Cadence {
  /** The period in use (ms); 0 until one is learned. */
  periodMs = 0;
  /** How early (ms) before the due time to wake: grows with the lateness of wake-ups. */
  leadMs = 0.2;
  /** How long (ms) past the due time to poll: grows with the lateness of submits. */
  pollAfterMs = 0.3;
  readonly #hintMs: number;
  #lastMs = Number.NaN;
  /**
   * When the block of the last on-cadence input was due. A caller's timer fires late more
   * often than early, and by varying amounts: the phase moves a quarter of the way towards an
   * early submit and a sixteenth towards a late one, so it settles at a low quantile of the
   * submit times, and the lead and the polling window cover the spread on either side.
   */
  #anchorMs = Number.NaN;
  #steady = 0;
  #trusted = false;
  #misses = 0;
  /**
   * The last MISSES intervals between submits: a period is learned again as their median,
   * since a caller that fell behind may submit several at once, or skip a block.
   */
  readonly #intervals = new Float64Array(MISSES);
  readonly #sorted = new Float64Array(MISSES);
  #intervalAt = 0;
  /** Running means of how late wake-ups were and how late and early submits came, ms. */
  #wakeLateMs = 0;
  #submitLateMs = 0;
  #submitEarlyMs = 0;

  /** `hintMs` > 0: the caller's block period, used from the first input on. */
  constructor(hintMs = 0) {
    this.#hintMs = hintMs > 0 ? hintMs : 0;
    this.periodMs = this.#hintMs;
  }

  /** Records the submit time (this thread's clock, ms) of an input taken. */
  observe(submitMs: number): void {
    const last = this.#lastMs;
    this.#lastMs = submitMs;
    const period = this.periodMs;
    if (last !== last || period <= 0 || this.#anchorMs !== this.#anchorMs) {
      if (last === last && this.#hintMs === 0) this.periodMs = submitMs - last;
      this.#anchorMs = submitMs;
      return;
    }
    const interval = submitMs - last;
    this.#intervals[this.#intervalAt] = interval;
    this.#intervalAt = (this.#intervalAt + 1) % MISSES;
    // Blocks since the anchor, and how far off the predicted phase this submit came; and one
    // or two blocks since the last submit (not a burst after a stall).
    const blocks = Math.round((submitMs - this.#anchorMs) / period);
    const expected = this.#anchorMs + blocks * period;
    const off = submitMs - expected;
    const since = Math.round(interval / period);
    if (
      blocks < 1 || blocks > PAUSED_BLOCKS || since < 1 || since > 2 ||
      Math.abs(off) > TOLERANCE * period
    ) {
      this.#steady = this.#steady > 2 ? this.#steady - 2 : 0;
      if (this.#steady === 0) this.#trusted = false;
      if (this.#hintMs > 0) return;
      if (++this.#misses < MISSES) return;
      // A new cadence (or a wrong one): learn it again from the recent intervals' median.
      this.#sorted.set(this.#intervals);
      this.periodMs = Math.max(0, this.#sorted.sort()[MISSES >> 1]);
      this.#misses = 0;
      this.#anchorMs = submitMs;
      return;
    }
    // A miss is forgotten only as hits outnumber it: a wrong period that fits now and then
    // still gets learned again.
    if (this.#misses > 0) this.#misses--;
    if (this.#hintMs === 0 && Math.abs(interval - period) <= TOLERANCE * period) {
      this.periodMs = period + (interval - period) / 16;
    }
    if (this.#steady < STEADY) this.#steady++;
    if (this.#steady === STEADY) this.#trusted = true;
    this.#submitLateMs += ((off > 0 ? off : 0) - this.#submitLateMs) / 16;
    this.#submitEarlyMs += ((off < 0 ? -off : 0) - this.#submitEarlyMs) / 16;
    const poll = POLL_MIN_MS + 2 * this.#submitLateMs;
    this.pollAfterMs = poll < POLL_MAX_MS ? poll : POLL_MAX_MS;
    this.#updateLead();
    this.#anchorMs = expected + (off < 0 ? off / 4 : off / 16);
  }

  /**
   * When the next input is due (ms, this thread's clock), or NaN when the cadence is not
   * steady, or when the caller has not submitted for PAUSED_BLOCKS blocks (it paused: sleep
   * until told).
   */
  dueMs(nowMs: number): number {
    if (!this.#trusted) return Number.NaN;
    const period = this.periodMs;
    const ahead = Math.ceil((nowMs - this.pollAfterMs - this.#anchorMs) / period);
    const blocks = ahead < 1 ? 1 : ahead;
    if (blocks > PAUSED_BLOCKS) return Number.NaN;
    return this.#anchorMs + blocks * period;
  }

  /** Records how late (ms) a wake-up planned for `plannedMs` came. */
  woke(plannedMs: number, nowMs: number): void {
    const late = nowMs - plannedMs;
    this.#wakeLateMs += ((late > 0 ? late : 0) - this.#wakeLateMs) / 8;
    this.#updateLead();
  }

  #updateLead(): void {
    const lead = LEAD_MIN_MS + 2 * (this.#wakeLateMs + this.#submitEarlyMs);
    this.leadMs = lead < LEAD_MAX_MS ? lead : LEAD_MAX_MS;
  }
}
