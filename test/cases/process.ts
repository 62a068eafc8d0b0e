/**
 * Block processing (`Model.process`): T steps in one native call must equal T calls of
 * `forward` bit for bit, with the state carried exactly as they carry it, and allocate nothing
 * (natively: cz_model_info's counters; in JS: the runtime's probe). Shared by
 * test/process.test.ts (Bun) and test/deno/process.test.ts.
 */

import { modelFromSpec } from "../../src/index.ts";
import type { Model } from "../../src/model/model.ts";
import type { LayerKind, ModelSpec } from "../../src/model/spec.ts";
import { ALL_KINDS, randomModel, Rng } from "../helpers.ts";
import type { AllocationProbe } from "./audio.ts";
import { type Case, check, fail, throwsCadenzaWith } from "./check.ts";

/** Every kind alone, a mixed stack, and a model whose last layer adds its input (skip). */
const MODELS: [string, LayerKind[]][] = [
  ...ALL_KINDS.map((kind): [string, LayerKind[]] => [kind, [kind]]),
  ["stack", ["conv1d", "lstm", "gru", "transformer", "dense"]],
];

function skipModel(rng: Rng, inputSize: number): ModelSpec {
  const spec = randomModel(rng, ["lstm", "dense"], inputSize, [{}, {
    outputSize: 1,
    activation: "linear",
  }]);
  spec.layers.push({ kind: "skip", inputSize: 1, outputSize: 1, tensors: {} });
  return spec;
}

/** Same bits (NaN payloads included): forward and process run the same kernels. */
function checkBits(got: Float32Array, want: Float32Array, what: string): void {
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  check(a.length === b.length, () => `${what}: ${a.length} outputs, expected ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) fail(`${what}: output ${i} is ${got[i]}, forward gave ${want[i]}`);
  }
}

/** T forward calls from the model's current state, outputs concatenated. */
function forwardSteps(model: Model, input: Float32Array, steps: number): Float32Array {
  const out = new Float32Array(steps * model.outputSize);
  for (let t = 0; t < steps; t++) {
    const x = input.subarray(t * model.inputSize, (t + 1) * model.inputSize);
    out.set(model.forward(x), t * model.outputSize);
  }
  return out;
}

function equalityCase(name: string, make: (rng: Rng) => ModelSpec): Case {
  return {
    name: `process: ${name}: T steps equal T forward calls bit for bit, state carried`,
    run: async () => {
      const rng = new Rng(0x5eed + name.length);
      const spec = make(rng);
      const model = await modelFromSpec(spec);
      try {
        for (const steps of [1, 7, 300]) {
          const input = rng.floats(steps * model.inputSize, -1.5, 1.5);
          model.reset();
          const want = forwardSteps(model, input, steps);
          const after_forward = model.forward(input.subarray(0, model.inputSize)).slice();
          model.reset();
          const got = model.process(input, steps).slice();
          checkBits(got, want, `${name} T=${steps}`);
          // The state after process is the state after the forward calls.
          const after_process = model.forward(input.subarray(0, model.inputSize));
          checkBits(after_process, after_forward, `${name} T=${steps}, the step after`);
          // Uneven blocks, into a caller's buffer, continue from each other.
          model.reset();
          const into = new Float32Array(steps * model.outputSize);
          let done = 0;
          for (const part of [1, 2, 5, 300]) {
            const n = Math.min(part, steps - done);
            if (n === 0) break;
            const block = input.subarray(done * model.inputSize, (done + n) * model.inputSize);
            model.process(block, n, into.subarray(done * model.outputSize));
            done += n;
          }
          if (done < steps) {
            const rest = input.subarray(done * model.inputSize);
            model.process(rest, steps - done, into.subarray(done * model.outputSize));
          }
          checkBits(into, want, `${name} T=${steps} in uneven blocks`);
          if (model.outputSize <= model.inputSize) {
            model.reset();
            const in_place = input.slice();
            model.process(in_place, steps, in_place);
            const written = in_place.subarray(0, steps * model.outputSize);
            if (model.outputSize === model.inputSize) {
              checkBits(written, want, `${name} T=${steps} in place`);
            }
          }
        }
      } finally {
        model.dispose();
      }
    },
  };
}

function errorCase(): Case {
  return {
    name: "process: bad steps, lengths and overlaps are E_ARGUMENT/E_SHAPE naming the field",
    run: async () => {
      const rng = new Rng(7);
      const model = await modelFromSpec(randomModel(rng, ["dense"], 2, [{ outputSize: 3 }]), {
        source: "wide.model",
      });
      const input = new Float32Array(8);
      throwsCadenzaWith(() => model.process(input, 0), "E_ARGUMENT", "wide.model", "steps");
      throwsCadenzaWith(() => model.process(input, 1.5), "E_ARGUMENT", "steps", "1.5");
      throwsCadenzaWith(() => model.process(input, 3), "E_SHAPE", "process input", "6");
      const short = new Float32Array(11);
      throwsCadenzaWith(() => model.process(input, 4, short), "E_SHAPE", "at least 12", "11");
      // Output 3 wide over input 2 wide: writing step 0 would overwrite step 1's input.
      const shared = new Float32Array(12);
      throwsCadenzaWith(
        () => model.process(shared.subarray(0, 8), 4, shared),
        "E_ARGUMENT",
        "cz_process",
        "overlaps",
      );
      model.dispose();
      throwsCadenzaWith(() => model.process(input, 4), "E_DISPOSED", "process");
    },
  };
}

function nativeAllocationCase(): Case {
  return {
    name: "process: 1,000 blocks of 128 steps change no native allocation counter",
    run: async () => {
      const rng = new Rng(0xb10c);
      const spec = randomModel(rng, ["conv1d", "lstm", "gru", "transformer", "dense"], 5);
      const model = await modelFromSpec(spec);
      try {
        const before = model.nativeInfo();
        check(before.allocCount > 0, () => "create counted no allocation");
        const input = rng.floats(128 * model.inputSize, -1, 1);
        const output = new Float32Array(128 * model.outputSize);
        for (let i = 0; i < 1000; i++) model.process(input, 128, output);
        const after = model.nativeInfo();
        check(
          after.allocCount === before.allocCount && after.freeCount === before.freeCount,
          () =>
            `alloc/free ${before.allocCount}/${before.freeCount} -> ` +
            `${after.allocCount}/${after.freeCount}`,
        );
      } finally {
        model.dispose();
      }
    },
  };
}

/** `process` with a caller's buffer and with the model's own (a fixed block size). */
export function processAllocationCase(probe: AllocationProbe, slack: number, unit: string): Case {
  return {
    name: `process: 20,000 blocks allocate nothing in JS (${unit}, slack ${slack})`,
    run: async () => {
      const rng = new Rng(0xa11);
      const model = await modelFromSpec(skipModel(rng, 1));
      try {
        const input = rng.floats(64, -1, 1);
        const output = new Float32Array(64);
        const sum = new Float64Array(1);
        const body = (calls: number) => {
          for (let i = 0; i < calls; i++) {
            sum[0] += model.process(input, 64, output)[3];
            sum[0] += model.process(input, 64)[5];
          }
        };
        body(2000);
        const rounds: number[] = [];
        while (rounds.length < 5 && !(rounds.length > 0 && Math.min(...rounds) <= slack)) {
          rounds.push(probe(20_000, body));
        }
        check(Number.isFinite(sum[0]), () => `outputs are not finite: ${sum[0]}`);
        check(
          Math.min(...rounds) <= slack,
          () => `process allocated ${rounds.join(", ")} ${unit}, all > ${slack}`,
        );
      } finally {
        model.dispose();
      }
    },
  };
}

export const processCases: Case[] = [
  ...MODELS.map(([name, kinds]) =>
    equalityCase(name, (rng) => randomModel(rng, kinds, kinds[0] === "dense" ? 3 : 17))
  ),
  equalityCase("lstm + dense + skip", (rng) => skipModel(rng, 2)),
  errorCase(),
  nativeAllocationCase(),
];
