/**
 * The training figures of docs/TRAINING.md: the runs that test/cases/train.ts checks
 * (acceptance 2, 3 and 4 of the training engine), printed. Deterministic by seed on one
 * machine; each run takes a few seconds.
 *
 *   bun scripts/train-figures.ts [--json]
 */

import process from "node:process";
import {
  distillFigures,
  lstmFigures,
  qatFigures,
  transformerFigures,
} from "../test/cases/train.ts";

const figures = {
  lstm: await lstmFigures(),
  transformer: await transformerFigures(),
  distill: await distillFigures(),
  qat: await qatFigures(),
};
if (process.argv.includes("--json")) {
  console.log(JSON.stringify(figures, null, 1));
} else {
  const n = (x: number) => x.toFixed(4);
  for (const [name, f] of [["LSTM", figures.lstm], ["transformer", figures.transformer]] as const) {
    console.log(
      `${name}: held-out loss ${n(f.heldOutLoss)} nats (accuracy ${n(f.heldOutAccuracy)}) after ` +
        `${f.steps} steps; unigram ${n(f.unigram)}, best order-1 ${n(f.order1)}, true model ` +
        `${n(f.order2)}`,
    );
  }
  const d = figures.distill;
  console.log(
    `distill: teacher ${d.teacherParameters} parameters, accuracy ${n(d.teacherAccuracy)} ` +
      `(loss ${n(d.teacherLoss)}); student ${d.studentParameters} ` +
      `(${(d.studentParameters / d.teacherParameters).toFixed(3)}x), accuracy ` +
      `${n(d.studentAccuracy)} (loss ${n(d.studentLoss)}): ` +
      `${((d.studentAccuracy / d.teacherAccuracy) * 100).toFixed(1)}% of the teacher`,
  );
  const q = figures.qat;
  console.log(
    `int8 (held-out loss / accuracy): f32 ${n(q.floatLoss)} / ${n(q.floatAccuracy)}; ` +
      `post-training int8 ${n(q.ptqLoss)} / ${n(q.ptqAccuracy)}; QAT int8 ${n(q.qatLoss)} / ` +
      `${n(q.qatAccuracy)}; f32 fine-tuned as long, then int8 ${n(q.tunedPtqLoss)} / ` +
      `${n(q.tunedPtqAccuracy)}`,
  );
}
