/**
 * Every layer kind against the float64 reference (test/reference.ts) on random shapes and
 * weights: several steps with state, forwardBatch from the current state, state kept across
 * the batch, and reset. Shared by test/layers.test.ts (Bun) and test/deno/layers.test.ts.
 *
 * Bound: LAYER_BOUND on the error normalised by max(1, |output|max) (docs/TESTING.md says why).
 */

import { modelFromSpec } from "../../src/index.ts";
import type { LayerKind, ModelSpec } from "../../src/model/spec.ts";
import {
  ALL_ACTIVATIONS,
  ALL_KINDS,
  describe,
  deviation,
  envInt,
  type LayerChoice,
  ODD_SIZES,
  randomModel,
  Rng,
} from "../helpers.ts";
import { ReferenceModel } from "../reference.ts";
import { type Case, check, checkDeviation } from "./check.ts";

/** Normalised float32-vs-float64 error allowed for one layer stack (see docs/TESTING.md). */
export const LAYER_BOUND = 2e-5;

/** CADENZA_TEST_SEED shifts every case's seed; each case mixes in its own name. */
export const BASE_SEED = envInt("CADENZA_TEST_SEED", 0x5eed);

/** FNV-1a of the case name, so a case keeps its seed when others are added or reordered. */
export function caseSeed(name: string): number {
  let h = 0x811c9dc5 ^ BASE_SEED;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The worst normalised error seen per case, for the report in docs/TESTING.md. */
export const worstByCase = new Map<string, number>();

interface Plan {
  steps: number;
  batch: number;
}

function inputs(rng: Rng, len: number): Float32Array {
  return rng.floats(len, -2, 2);
}

/**
 * Streams `plan.steps` inputs through the native model and the reference, then a batch from
 * the current state, one more step (the batch must not have advanced the state), then reset and
 * the first steps again, which must repeat the first outputs bit for bit.
 */
export async function compareWithReference(
  spec: ModelSpec,
  seed: number,
  plan: Plan,
): Promise<number> {
  const rng = new Rng(seed);
  const where = (what: string) =>
    `seed ${seed} (CADENZA_TEST_SEED=${BASE_SEED}) ${describe(spec)}: ${what}`;
  const ref = new ReferenceModel(spec);
  const model = await modelFromSpec(spec, { maxBatch: Math.max(plan.batch, 1) });
  let worst = 0;
  const compare = (got: Float32Array, want: Float64Array, what: string) => {
    const d = deviation(got, want);
    worst = Math.max(worst, d.worst);
    checkDeviation(d, LAYER_BOUND, () => where(what));
  };
  try {
    const xs = Array.from({ length: plan.steps + 1 }, () => inputs(rng, spec.inputSize));
    const first: Float32Array[] = [];
    for (let s = 0; s < plan.steps; s++) {
      const got = model.forward(xs[s]).slice();
      first.push(got);
      compare(got, ref.forward(xs[s]), `step ${s}`);
    }
    const rows = inputs(rng, plan.batch * spec.inputSize);
    compare(
      model.forwardBatch(rows, plan.batch).slice(),
      ref.forwardBatch(rows, plan.batch),
      `batch of ${plan.batch}`,
    );
    compare(
      model.forward(xs[plan.steps]).slice(),
      ref.forward(xs[plan.steps]),
      "step after the batch",
    );
    model.reset();
    ref.reset();
    for (let s = 0; s < Math.min(plan.steps, 3); s++) {
      const got = model.forward(xs[s]);
      check(
        got.every((v, i) => Object.is(v, first[s][i])),
        () => where(`step ${s} after reset differs from before`),
      );
    }
  } finally {
    model.dispose();
  }
  return worst;
}

/** Enough steps to fill conv history and to wrap an attention ring more than twice. */
export function stepsFor(spec: ModelSpec): number {
  let steps = 5;
  for (const l of spec.layers) {
    if (l.context !== undefined) steps = Math.max(steps, 2 * l.context + 3);
    if (l.kernelSize !== undefined) {
      steps = Math.max(steps, (l.kernelSize - 1) * (l.dilation ?? 1) + 3);
    }
  }
  return steps;
}

/** A random model of `kinds` (the spec drawn from the case's seed) against the reference. */
function kindCase(
  name: string,
  kinds: LayerKind[],
  n_in: number,
  choices: LayerChoice[] = [],
): Case {
  const run = async () => {
    const seed = caseSeed(name);
    const spec = randomModel(new Rng(seed ^ 0x9e3779b9), kinds, n_in, choices, 5);
    worstByCase.set(
      name,
      await compareWithReference(spec, seed, { steps: stepsFor(spec), batch: 5 }),
    );
  };
  return { name, run };
}

function everyKindAtOddSizes(): Case[] {
  const cases: Case[] = [];
  for (const kind of ALL_KINDS) {
    for (const n of ODD_SIZES) cases.push(kindCase(`${kind} width ${n}`, [kind], n));
  }
  return cases;
}

function denseActivations(): Case[] {
  const cases: Case[] = [];
  for (const activation of ALL_ACTIVATIONS) {
    for (const [n_in, n_out] of [[1, 17], [33, 3], [17, 33]]) {
      const name = `dense ${n_in}->${n_out} ${activation}`;
      cases.push(kindCase(name, ["dense"], n_in, [{ outputSize: n_out, activation }]));
    }
    cases.push(
      kindCase(`dense no bias ${activation}`, ["dense"], 17, [{
        outputSize: 3,
        activation,
        bias: false,
      }]),
    );
  }
  return cases;
}

function convVariants(): Case[] {
  const variants: [number, number, LayerChoice][] = [
    [1, 3, { kernelSize: 1, dilation: 1, groups: 1 }],
    [3, 17, { kernelSize: 3, dilation: 1, groups: 1 }],
    [17, 17, { kernelSize: 3, dilation: 2, groups: 17 }],
    [33, 3, { kernelSize: 5, dilation: 3, groups: 3 }],
    [33, 33, { kernelSize: 2, dilation: 4, groups: 11 }],
    [3, 33, { kernelSize: 4, dilation: 1, groups: 3 }],
  ];
  return variants.map(([n_in, n_out, c]) =>
    kindCase(
      `conv1d ${n_in}->${n_out} k${c.kernelSize} d${c.dilation} g${c.groups}`,
      ["conv1d"],
      n_in,
      [{ ...c, outputSize: n_out, activation: "linear" }],
    )
  );
}

function normVariants(): Case[] {
  return [
    kindCase("batchnorm affine", ["batchnorm"], 17, [{ affine: true }]),
    kindCase("batchnorm plain relu", ["batchnorm"], 33, [{ affine: false, activation: "relu" }]),
    kindCase("prelu shared alpha", ["prelu"], 33, [{ sharedAlpha: true }]),
    kindCase("prelu per channel", ["prelu"], 17, [{ sharedAlpha: false }]),
    kindCase("layernorm width 1", ["layernorm"], 1),
  ];
}

function attentionVariants(): Case[] {
  const variants: [number, number, number][] = [[1, 1, 1], [3, 3, 2], [17, 1, 4], [33, 11, 3], [
    33,
    3,
    7,
  ]];
  const cases = variants.map(([d, heads, context]) =>
    kindCase(`attention d${d} h${heads} ctx${context} ring wrap`, ["attention"], d, [{
      heads,
      context,
    }])
  );
  cases.push(
    kindCase("transformer d17 h1 ff33 relu", ["transformer"], 17, [{
      heads: 1,
      context: 3,
      ffDim: 33,
      activation: "relu",
    }]),
    kindCase("transformer d33 h3 ff17 gelu", ["transformer"], 33, [{
      heads: 3,
      context: 5,
      ffDim: 17,
      activation: "gelu",
    }]),
  );
  return cases;
}

function stacks(): Case[] {
  const stacksOf: [string, LayerKind[], number][] = [
    ["dense lstm dense", ["dense", "lstm", "dense"], 3],
    ["conv1d gru dense", ["conv1d", "gru", "dense"], 17],
    ["lstm x3 dense", ["lstm", "lstm", "lstm", "dense"], 1],
    ["gru x3 dense", ["gru", "gru", "gru", "dense"], 1],
    [
      "norms and activations",
      ["dense", "batchnorm", "prelu", "layernorm", "activation", "dense"],
      33,
    ],
    ["transformer x2 dense", ["transformer", "transformer", "dense"], 33],
    ["dense attention lstm conv1d", ["dense", "attention", "lstm", "conv1d", "dense"], 3],
  ];
  return stacksOf.map(([name, kinds, n_in]) => kindCase(`stack ${name}`, kinds, n_in));
}

export function layerCases(): Case[] {
  return [
    ...everyKindAtOddSizes(),
    ...denseActivations(),
    ...convVariants(),
    ...normVariants(),
    ...attentionVariants(),
    ...stacks(),
  ];
}
