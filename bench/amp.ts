/**
 * The guitar-amp model that bench/amp.bench.ts and bench/amp-profile.ts run: the amp JSON
 * format (one-input LSTM, a dense head and the skip connection) with seeded weights.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LibraryChoice, loadModel, type Model } from "../src/index.ts";

/** Seeded uniform values in +-bound, as nested lists (a PyTorch state_dict entry). */
function seededRows(rows: number, cols: number, bound: number, seed: number): number[][] {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 * 2 - 1) * bound;
  };
  return Array.from({ length: rows }, () => Array.from({ length: cols }, next));
}

/**
 * A guitar-amp model (the amp JSON format: one-input LSTM of `hidden` units, a dense head and
 * the skip connection) with seeded weights in PyTorch's LSTM init range, loaded through a
 * temporary file as a user's file would be: bench/amp.bench.ts and bench/amp-profile.ts.
 */
export async function loadAmpModel(hidden: number, library: LibraryChoice): Promise<Model> {
  const k = 1 / Math.sqrt(hidden);
  const amp = {
    model_data: {
      model: "SimpleRNN",
      input_size: 1,
      skip: 1,
      output_size: 1,
      unit_type: "LSTM",
      num_layers: 1,
      hidden_size: hidden,
      bias_fl: true,
    },
    state_dict: {
      "rec.weight_ih_l0": seededRows(4 * hidden, 1, k, 1),
      "rec.weight_hh_l0": seededRows(4 * hidden, hidden, k, 2),
      "rec.bias_ih_l0": seededRows(1, 4 * hidden, k, 3)[0],
      "rec.bias_hh_l0": seededRows(1, 4 * hidden, k, 4)[0],
      "lin.weight": seededRows(1, hidden, k, 5),
      "lin.bias": seededRows(1, 1, k, 6)[0],
    },
  };
  const dir = mkdtempSync(join(tmpdir(), "cadenza-amp-bench-"));
  try {
    const path = join(dir, `lstm${hidden}.json`);
    writeFileSync(path, JSON.stringify(amp));
    return await loadModel(path, { library });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
