/**
 * Builds the symbolic training sets (melody, harmony, groove, dynamics) from data/corpus.jsonl.gz
 * into a git-ignored folder (src/train/defaults.ts, buildDataSets): NAME-train.safetensors
 * (train + validation pieces, split 0/1), NAME-test.safetensors, manifest.json (split sizes,
 * corpus SHA-256, data-code commit, the n-gram and most-frequent baselines).
 *
 *   bun scripts/build-training-data.ts [--quick] [--out DIR] [--corpus FILE]
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { buildDataSets, defaultDataDir } from "../src/train/defaults.ts";

const HELP = `usage: bun scripts/build-training-data.ts [--quick] [--out DIR] [--corpus FILE]

Builds the melody, harmony, groove and dynamics training sets (cadenza-data safetensors) and
manifest.json from the corpus. --quick: about one piece in 40 (the CI subset). --out: the folder
(default data/build/, git-ignored). --corpus: another corpus file (default data/corpus.jsonl.gz).`;

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    quick: { type: "boolean", default: false },
    out: { type: "string" },
    corpus: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const out = values.out ?? defaultDataDir();
const started = performance.now();
const manifest = await buildDataSets({
  out,
  corpus: values.corpus,
  quick: values.quick,
  command: `bun scripts/build-training-data.ts${values.quick ? " --quick" : ""}`,
  log: (line) => console.error(line),
});
const b = manifest.baselines;
console.log(
  `wrote ${out} in ${((performance.now() - started) / 1000).toFixed(1)} s; pieces ` +
    `${manifest.pieces.train} / ${manifest.pieces.validation} / ${manifest.pieces.test}; test ` +
    `baselines: melody most-frequent ${b.melody.mostFrequent.accuracy.toFixed(4)}, trigram ` +
    `${b.melody.ngram.accuracy.toFixed(4)}; harmony most-frequent ` +
    `${b.harmony.mostFrequent.accuracy.toFixed(4)}, trigram ${b.harmony.ngram.accuracy.toFixed(4)}`,
);
