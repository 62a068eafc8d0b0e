/**
 * RTNeural conformance (../shared/conformance/rtneural, README there): each model file streams
 * its x one sample at a time through a freshly reset model, compared with the outputs that
 * TensorFlow/Keras or PyTorch produced. full_model has no expected file: it is compared with the
 * float64 reference. Shared by test/conformance.test.ts (Bun) and test/deno/conformance.test.ts.
 */

import { readFileSync } from "node:fs";
import { loadModel, type Model } from "../../src/index.ts";
import { parseRtneural } from "../../src/model/formats/rtneural.ts";
import type { TorchLayerDecl } from "../../src/model/formats/torch.ts";
import { deviation, readCsv, rtneuralData, rtneuralModel } from "../helpers.ts";
import { ReferenceModel } from "../reference.ts";
import { type Case, check, checkDeviation } from "./check.ts";

/**
 * Absolute error allowed against the Keras/PyTorch outputs (all |y| < 1 here), float32
 * throughout; docs/TESTING.md derives it.
 */
export const CONFORMANCE_BOUND = 2e-5;

/** Worst absolute error per case, for the report in docs/TESTING.md. */
export const worstByConformanceCase = new Map<string, number>();

export interface Fixture {
  name: string;
  model: string;
  data: string;
  /** PyTorch state_dict cases: the layer list that goes beside the file. */
  torch?: TorchLayerDecl[];
  /** Output steps before the expected data starts (a valid, not causal, convolution). */
  lead?: number;
}

export const FIXTURES: Fixture[] = [
  { name: "dense", model: "dense.json", data: "dense" },
  { name: "lstm", model: "lstm.json", data: "lstm" },
  { name: "lstm_1d", model: "lstm_1d.json", data: "lstm_1d" },
  { name: "gru", model: "gru.json", data: "gru" },
  { name: "gru_1d", model: "gru_1d.json", data: "gru_1d" },
  { name: "conv1d", model: "conv.json", data: "conv" },
  {
    name: "lstm_torch",
    model: "lstm_torch.json",
    data: "lstm_torch",
    torch: [{ kind: "lstm", name: "lstm" }, { kind: "lstm", name: "lstm2", numLayers: 3 }, {
      kind: "linear",
      name: "dense",
    }],
  },
  {
    name: "gru_torch",
    model: "gru_torch.json",
    data: "gru_torch",
    torch: [{ kind: "gru", name: "gru" }, { kind: "gru", name: "gru2", numLayers: 3 }, {
      kind: "linear",
      name: "dense",
    }],
  },
  {
    name: "conv1d_torch",
    model: "conv1d_torch.json",
    data: "conv1d_torch",
    torch: [{ kind: "conv1d" }],
    lead: 4,
  },
];

async function load(f: Fixture): Promise<Model> {
  const path = rtneuralModel(f.model);
  if (f.torch === undefined) return await loadModel(path, { format: "rtneural" });
  return await loadModel(path, { format: "torch", layers: f.torch });
}

/** Expected outputs as [step][channel]; conv1d_torch's file is [channel][step]. */
function expected(f: Fixture): number[][] {
  const rows = readCsv(rtneuralData(`${f.data}_y_python.csv`));
  if (f.lead === undefined) return rows;
  return rows[0].map((_, step) => rows.map((channel) => channel[step]));
}

function fixtureCase(f: Fixture): Case {
  return {
    name: `rtneural ${f.name}`,
    run: async () => {
      const xs = readCsv(rtneuralData(`${f.data}_x_python.csv`));
      const ys = expected(f);
      const lead = f.lead ?? 0;
      check(
        xs.length === ys.length + lead,
        () => `${f.name}: ${xs.length} inputs, ${ys.length} outputs`,
      );
      const model = await load(f);
      let worst = 0;
      try {
        model.reset();
        const x = new Float32Array(model.inputSize);
        const stepped = new Float32Array(xs.length * model.outputSize);
        for (let n = 0; n < xs.length; n++) {
          x.set(xs[n]);
          const got = model.forward(x);
          stepped.set(got, n * model.outputSize);
          if (n < lead) continue;
          const want = ys[n - lead];
          const d = deviation(got.subarray(0, want.length), want);
          worst = Math.max(worst, d.worst);
          checkDeviation(d, CONFORMANCE_BOUND, () => `${f.name} step ${n}`);
        }
        // The same data through block processing, in one call: the same bits as the steps.
        model.reset();
        const block = new Float32Array(xs.length * model.inputSize);
        xs.forEach((row, n) => block.set(row, n * model.inputSize));
        const processed = model.process(block, xs.length);
        const same = new Uint32Array(processed.buffer, processed.byteOffset, processed.length);
        const want_bits = new Uint32Array(stepped.buffer);
        const differs = same.findIndex((bits, i) => bits !== want_bits[i]);
        check(differs < 0, () => `${f.name}: process output ${differs} differs from forward's`);
      } finally {
        model.dispose();
      }
      worstByConformanceCase.set(f.name, worst);
    },
  };
}

/** full_model.json against the float64 reference, fed dense_x_python.csv (README). */
function fullModelCase(): Case {
  return {
    name: "rtneural full_model vs float64 reference",
    run: async () => {
      const path = rtneuralModel("full_model.json");
      const spec = parseRtneural(JSON.parse(readFileSync(path, "utf8")), path);
      const ref = new ReferenceModel(spec);
      const model = await loadModel(path, { format: "rtneural" });
      let worst = 0;
      try {
        model.reset();
        const x = new Float32Array(1);
        for (const [n, row] of readCsv(rtneuralData("dense_x_python.csv")).entries()) {
          x[0] = row[0];
          const d = deviation(model.forward(x), ref.forward(x));
          worst = Math.max(worst, d.worst);
          checkDeviation(d, CONFORMANCE_BOUND, () => `full_model step ${n}`);
        }
      } finally {
        model.dispose();
      }
      worstByConformanceCase.set("full_model", worst);
    },
  };
}

export function conformanceCases(): Case[] {
  return [...FIXTURES.map(fixtureCase), fullModelCase()];
}
