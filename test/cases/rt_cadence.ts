/**
 * The Worker's cadence model (src/rt/cadence.ts) on synthetic submit times: it is plain
 * arithmetic, so every case is exact and needs no Worker and no clock.
 */

import { Cadence } from "../../src/rt/cadence.ts";
import { Rng } from "../helpers.ts";
import { type Case, check } from "./check.ts";

const PERIOD = 128 / 48;

/** Feeds `blocks` submits on a cadence of `period` ms, each late by 0..`lateMs` (seeded). */
function feed(cadence: Cadence, blocks: number, period: number, lateMs: number, rng: Rng): number {
  let t = 0;
  for (let k = 0; k < blocks; k++) {
    t = 1000 + k * period;
    cadence.observe(t + rng.floats(1, 0, lateMs)[0]);
  }
  return t;
}

export const cadenceCases: Case[] = [
  {
    name: "rt cadence: a steady caller late by up to 0.3 ms: period within 0.5%, next block " +
      "predicted within the span its submits fall in, the lead and poll window covering it",
    run: () => {
      const cadence = new Cadence();
      const rng = new Rng(7);
      const last = feed(cadence, 400, PERIOD, 0.3, rng);
      check(
        Math.abs(cadence.periodMs - PERIOD) < 0.005 * PERIOD,
        () => `period ${cadence.periodMs}, expected ${PERIOD}`,
      );
      const due = cadence.dueMs(last + 1);
      const nominal = last + PERIOD;
      check(
        due >= nominal - 0.02 && due <= nominal + 0.3,
        () => `due ${due - nominal} ms after the nominal time, expected within its submits' 0..0.3`,
      );
      // Awake from due - lead to due + pollAfter: that must cover most of [nominal, +0.3].
      check(
        due - cadence.leadMs <= nominal && due + cadence.pollAfterMs >= nominal + 0.2,
        () => `awake ${due - cadence.leadMs - nominal}..${due + cadence.pollAfterMs - nominal} ms`,
      );
      // Just past the due time plus the polling window: the next block is predicted.
      const next = cadence.dueMs(due + cadence.pollAfterMs + 0.01);
      check(Math.abs(next - due - cadence.periodMs) < 1e-9, () => `next due ${next - due}`);
    },
  },
  {
    name: "rt cadence: a caller that pauses for four blocks, or submits irregularly, is not " +
      "predicted (the Worker sleeps until notified)",
    run: () => {
      const cadence = new Cadence();
      const rng = new Rng(8);
      const last = feed(cadence, 50, PERIOD, 0.1, rng);
      check(!Number.isNaN(cadence.dueMs(last + 0.5)), () => "a steady cadence not predicted");
      const missed = last + 4 * PERIOD + cadence.pollAfterMs + 0.2;
      check(!Number.isNaN(cadence.dueMs(missed - PERIOD)), () => "lost after three missed blocks");
      check(Number.isNaN(cadence.dueMs(missed)), () => "predicted after four missed blocks");
      const irregular = new Cadence();
      let t = 0;
      let predicted = 0;
      for (let k = 0; k < 500; k++) {
        t += rng.floats(1, 0.2, 6)[0];
        irregular.observe(t);
        if (!Number.isNaN(irregular.dueMs(t))) predicted++;
      }
      check(predicted < 50, () => `irregular submits predicted ${predicted} times of 500`);
    },
  },
  {
    name: "rt cadence: a hinted period is used as given; a new cadence is learned after 8 misses",
    run: () => {
      const hinted = new Cadence(5);
      const rng = new Rng(9);
      feed(hinted, 20, 5, 0.2, rng);
      check(hinted.periodMs === 5, () => `hinted period became ${hinted.periodMs}`);
      const cadence = new Cadence();
      let t = feed(cadence, 40, PERIOD, 0, rng);
      for (let k = 1; k <= 40; k++) cadence.observe(t + k * 10);
      t += 400;
      check(Math.abs(cadence.periodMs - 10) < 1e-6, () => `period ${cadence.periodMs}`);
      check(cadence.dueMs(t + 1) === t + 10, () => `due ${cadence.dueMs(t + 1) - t}`);
    },
  },
  {
    name: "rt cadence: the wake-up lead grows with late wake-ups, within 0.1..0.4 ms",
    run: () => {
      const cadence = new Cadence();
      for (let k = 0; k < 50; k++) cadence.woke(k, k);
      check(Math.abs(cadence.leadMs - 0.1) < 1e-9, () => `lead ${cadence.leadMs} when on time`);
      for (let k = 0; k < 50; k++) cadence.woke(k, k + 0.08);
      check(cadence.leadMs > 0.25 && cadence.leadMs < 0.27, () => `lead ${cadence.leadMs}`);
      for (let k = 0; k < 50; k++) cadence.woke(k, k + 5);
      check(cadence.leadMs === 0.4, () => `lead ${cadence.leadMs} past the cap`);
    },
  },
];
