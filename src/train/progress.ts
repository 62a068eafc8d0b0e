/**
 * A progress line for long work on stderr: epoch, step, loss, examples/s and ETA. On a
 * terminal it redraws one line (carriage return) at most `intervalMs` apart; otherwise (a
 * pipe, a log file, CI) it writes a plain line every `intervalMs`, so logs stay readable.
 */

import process from "node:process";

export interface ProgressOptions {
  /** Steps in the whole run (for the bar and the ETA). */
  totalSteps: number;
  /** What the line starts with (e.g. "train"). */
  label?: string;
  /** Where to write: stderr by default; tests pass a collector. */
  write?: (text: string) => void;
  /** Redraw (terminal) or print (otherwise) at most this often; default 250 ms / 2000 ms. */
  intervalMs?: number;
  /** Force terminal or plain mode (default: whether stderr is a TTY). */
  tty?: boolean;
  /** The clock in ms (tests pass a fake one). */
  now?: () => number;
}

export interface ProgressUpdate {
  epoch: number;
  epochs: number;
  /** Steps done in the whole run. */
  step: number;
  loss: number;
  /** Examples (sequences) done since the progress started. */
  examples: number;
}

/** "1:02:03", "4:05" */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

export class Progress {
  readonly totalSteps: number;
  readonly label: string;
  readonly tty: boolean;
  #write: (text: string) => void;
  #interval: number;
  #now: () => number;
  #start: number;
  #startStep = -1;
  #last = -Infinity;
  #drawn = false;
  #latest: ProgressUpdate | null = null;

  constructor(options: ProgressOptions) {
    this.totalSteps = options.totalSteps;
    this.label = options.label ?? "train";
    this.tty = options.tty ?? Boolean(process.stderr.isTTY);
    this.#write = options.write ?? ((text) => process.stderr.write(text));
    this.#interval = options.intervalMs ?? (this.tty ? 250 : 2000);
    this.#now = options.now ?? (() => performance.now());
    this.#start = this.#now();
  }

  /** Records the latest state; draws when the interval has passed (or `force`). */
  update(u: ProgressUpdate, force = false): void {
    if (this.#startStep < 0) this.#startStep = u.step;
    this.#latest = u;
    const t = this.#now();
    if (!force && t - this.#last < this.#interval) return;
    this.#last = t;
    const line = this.line(u, (t - this.#start) / 1000);
    if (this.tty) {
      this.#write(`\r${line}\x1b[K`);
      this.#drawn = true;
    } else {
      this.#write(`${line}\n`);
    }
  }

  /** A message on its own line (e.g. an epoch's held-out evaluation), keeping the bar below. */
  note(text: string): void {
    if (this.tty && this.#drawn) this.#write("\r\x1b[K");
    this.#write(`${text}\n`);
    this.#drawn = false;
    if (this.tty && this.#latest !== null) this.update(this.#latest, true);
  }

  /** Draws the final state and ends the line. */
  done(): void {
    if (this.#latest !== null) this.update(this.#latest, true);
    if (this.tty && this.#drawn) this.#write("\n");
    this.#drawn = false;
  }

  /** The text of one progress line after `elapsed` seconds. */
  line(u: ProgressUpdate, elapsed: number): string {
    const rate = elapsed > 0 ? u.examples / elapsed : 0;
    const done = Math.min(1, this.totalSteps > 0 ? u.step / this.totalSteps : 1);
    const stepsDone = u.step - Math.max(0, this.#startStep);
    const eta = stepsDone > 0 ? (elapsed / stepsDone) * (this.totalSteps - u.step) : NaN;
    const width = 20;
    const filled = Math.round(done * width);
    const bar = this.tty ? `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ` : "";
    return `${this.label} ${bar}epoch ${u.epoch}/${u.epochs} step ${u.step}/${this.totalSteps} ` +
      `loss ${formatLoss(u.loss)} ${formatRate(rate)} ex/s ETA ${formatDuration(eta)}`;
  }
}

function formatLoss(loss: number): string {
  return Number.isFinite(loss) ? loss.toFixed(4) : String(loss);
}

function formatRate(rate: number): string {
  return rate >= 100 ? rate.toFixed(0) : rate.toFixed(1);
}
