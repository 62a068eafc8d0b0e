/**
 * The WebAssembly backend beside the native library, on the same inputs: the same model images
 * give the same outputs (to the kernels' rounding), and the same bad images, stale handles and
 * bad lengths give the same status codes and the same messages. Shared by the Bun and Deno
 * twins (test/wasm.test.ts, test/deno/wasm.test.ts).
 */

import { CadenzaError } from "../src/errors.ts";
import { openNative, openWasmLibrary } from "../src/native/index.ts";
import { readFile } from "../src/native/io.ts";
import { packageRoot } from "../src/native/root.ts";
import { loadModel } from "../src/model/load.ts";
import type { NativeApi, NativeHandle } from "../src/native/api.ts";
import { packImage } from "../src/model/image.ts";
import { ALL_KINDS, outputSizeOf, randomModel, Rng } from "./helpers.ts";
import { check } from "./cases/check.ts";

/**
 * Bound on |wasm - native| per output. Both run the same f32 kernels, but the native build
 * uses 8- or 16-wide FMA vectors and wasm 4-wide a*b+c (two roundings), so sums are taken in
 * a different order and rounded differently: a few ulps of values of order 1, well inside the
 * 2e-5 that both meet against the float64 reference (test/layers.test.ts).
 */
const BOUND = 2e-5;

function created(api: NativeApi, image: Uint8Array): NativeHandle | CadenzaError {
  try {
    return api.create(image);
  } catch (err) {
    if (err instanceof CadenzaError) return err;
    throw err;
  }
}

export interface WasmCase {
  name: string;
  run: () => Promise<void>;
}

export const wasmCases: WasmCase[] = [
  {
    name: "wasm: the library option picks the WebAssembly build, with the same ABI version",
    run: async () => {
      const wasm = await openNative("wasm");
      check(wasm.libraryPath.endsWith("cadenza_safe.wasm"), () => wasm.libraryPath);
      check(wasm.abiVersion() === (await openNative("safe")).abiVersion(), () => "abi differs");
    },
  },
  {
    name: "wasm: random models of every layer kind match the native library step by step",
    run: async () => {
      const native = await openNative("safe");
      const wasm = await openNative("wasm");
      const rng = new Rng(0x3a5);
      for (const kind of ALL_KINDS) {
        const spec = randomModel(rng, [kind, "dense"], 17);
        const image = packImage(spec);
        const hn = native.create(image);
        const hw = wasm.create(image);
        const out_n = new Float32Array(outputSizeOf(spec));
        const out_w = new Float32Array(outputSizeOf(spec));
        const x = new Float32Array(17);
        let worst = 0;
        for (let step = 0; step < 6; step++) {
          for (let i = 0; i < x.length; i++) x[i] = rng.uniform(-1, 1);
          check(native.forward(hn, x, out_n) === 0, () => `${kind}: native forward failed`);
          check(wasm.forward(hw, x, out_w) === 0, () => `${kind}: wasm forward failed`);
          for (let i = 0; i < out_n.length; i++) {
            worst = Math.max(worst, Math.abs(out_n[i]! - out_w[i]!));
          }
        }
        check(worst <= BOUND, () => `${kind}: wasm differs from native by ${worst}`);
        native.destroy(hn);
        wasm.destroy(hw);
      }
    },
  },
  {
    name: "wasm: corrupted images give the same typed errors and messages as native",
    run: async () => {
      const native = await openNative("safe");
      const wasm = await openNative("wasm");
      const rng = new Rng(0x77);
      const image = packImage(randomModel(rng, ["lstm", "dense"], 5));
      // An empty image reaches native code as a null pointer under Deno and as an empty one
      // under Bun (E_ARGUMENT or E_FORMAT): wasm must refuse it either way.
      const empty = created(wasm, new Uint8Array(0));
      check(empty instanceof CadenzaError && empty.code === "E_FORMAT", () => "empty image");
      const bad: Uint8Array[] = [
        image.subarray(0, 40),
        image.subarray(0, image.length - 4),
      ];
      for (let k = 0; k < 40; k++) {
        const copy = image.slice();
        copy[rng.int(0, Math.min(copy.length, 256))] ^= 1 << rng.int(0, 8);
        bad.push(copy);
      }
      let errors = 0;
      for (const b of bad) {
        const n = created(native, b);
        const w = created(wasm, b);
        if (n instanceof CadenzaError || w instanceof CadenzaError) {
          check(
            n instanceof CadenzaError && w instanceof CadenzaError,
            () => "one loaded, one did not",
          );
          const ne = n as CadenzaError;
          const we = w as CadenzaError;
          check(ne.code === we.code, () => `codes ${ne.code} vs ${we.code}`);
          check(ne.message === we.message, () => `messages differ:\n${ne.message}\n${we.message}`);
          errors++;
        } else {
          native.destroy(n);
          wasm.destroy(w);
        }
      }
      check(errors >= 3, () => `only ${errors} corrupted images were refused`);
    },
  },
  {
    name: "wasm: stale and forged handles and bad lengths are refused as natively",
    run: async () => {
      const native = await openNative("safe");
      const wasm = await openNative("wasm");
      const image = packImage(randomModel(new Rng(5), ["gru"], 4));
      for (const api of [native, wasm]) {
        const h = api.create(image);
        const x = new Float32Array(4);
        const y = new Float32Array(64);
        check(
          api.forward(h, new Float32Array(3), y) === 1,
          () => `${api.libraryPath}: short input`,
        );
        check(api.lastError(h).includes("expected 4"), () => api.lastError(h));
        api.destroy(h);
        check(api.forward(h, x, y) === 4, () => `${api.libraryPath}: stale handle`);
        check(api.forward(api.handleOf(0xdeadbeefn), x, y) === 4, () => "forged handle");
        check(api.forward(api.handleOf(1n << 50n), x, y) === 4, () => "wide forged handle");
      }
      let threw = false;
      try {
        wasm.trainerCreate(image, new Uint32Array(32));
      } catch (err) {
        threw = err instanceof CadenzaError && err.code === "E_NATIVE";
      }
      check(threw, () => "training on wasm did not throw E_NATIVE");
    },
  },
  {
    name: "wasm: openWasmLibrary opens the library from its bytes (as a browser does) and " +
      "models loaded from bytes through it match the build opened by path",
    run: async () => {
      const root = packageRoot();
      const bytes = await readFile(`${root}zig-out/wasm/cadenza_safe.wasm`);
      const library = await openWasmLibrary(bytes, "memory:cadenza_safe.wasm");
      check(library === "memory:cadenza_safe.wasm", () => library);
      // The same source again is the instance already open.
      check((await openWasmLibrary(new Uint8Array(0), library)) === library, () => "reopened");
      const file = `${root}models/HarmonyPredictor.safetensors`;
      const fromBytes = await loadModel(await readFile(file), { library });
      const byPath = await loadModel(file, { library: "wasm" });
      check(fromBytes.nativeInfo().libraryPath === library, () => "library path");
      const x = new Float32Array(fromBytes.inputSize);
      for (let i = 0; i < x.length; i++) x[i] = Math.cos(i * 0.7);
      // The same wasm code on the same weights: bit for bit.
      const a = fromBytes.forward(x).slice();
      const b = byPath.forward(x);
      for (let i = 0; i < a.length; i++) check(a[i] === b[i], () => `output ${i}`);
      fromBytes.dispose();
      byPath.dispose();
      // Bytes that are not the library fail with E_NATIVE naming the source.
      for (const bad of [new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 9]), bytes.slice(0, 64)]) {
        let error: unknown = null;
        try {
          await openWasmLibrary(bad, "memory:broken.wasm");
        } catch (err) {
          error = err;
        }
        check(
          error instanceof CadenzaError && error.code === "E_NATIVE" &&
            error.message.includes("memory:broken.wasm"),
          () => String(error),
        );
      }
    },
  },
];
