/**
 * Writes the model card (the "Training card" section of models/MODELS.md, between
 * `<!-- card:begin -->` and `<!-- card:end -->`) from the metrics files of a folder of trained
 * models (src/train/card.ts). Every number in it comes from those files.
 *
 *   bun scripts/card.ts [--models DIR] [--out FILE] [--print]
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { readMetrics, renderCard, writeCard } from "../src/train/card.ts";
import { defaultDataDir } from "../src/train/defaults.ts";

const HELP = `usage: bun scripts/card.ts [--models DIR] [--out FILE] [--print]

Reads DIR/*.metrics.json (default data/build/trained/) and writes the training card into FILE
(default models/MODELS.md, the part between the card markers; the rest is kept). --print: write
the card to stdout instead.`;

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    models: { type: "string" },
    out: { type: "string" },
    print: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const dir = values.models ?? `${defaultDataDir().replace(/\/$/, "")}/trained`;
const card = renderCard(readMetrics(dir));
if (values.print) {
  console.log(card);
} else {
  const out = values.out ?? fileURLToPath(new URL("../models/MODELS.md", import.meta.url));
  writeCard(out, card);
  console.error(`wrote the card into ${out}`);
}
