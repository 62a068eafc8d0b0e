/**
 * The model card: a Markdown section written from the metrics files that `trainDefault` (and the
 * EmotionRecognizer's training, in the same format) leaves beside each trained model, so every
 * number in it comes from a command. `writeCard` replaces the part of models/MODELS.md between
 * `<!-- card:begin -->` and `<!-- card:end -->` (appending the section when there is none) and
 * leaves the rest of the file as it is. A model trained elsewhere (the EmotionRecognizer) joins
 * the card by leaving its own NAME.metrics.json (the `ModelMetrics` shape of
 * src/train/defaults.ts; `extra` holds measures of its own, e.g. valence and arousal correlation)
 * in the same folder.
 *
 * ```ts
 * const md = renderCard(readMetrics("out/trained"));
 * writeCard("models/MODELS.md", md);
 * ```
 */

import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CadenzaError } from "../errors.ts";
import type { ModelMetrics } from "./defaults.ts";
import type { ClassBaseline, ValueBaseline } from "./baselines.ts";

export const CARD_BEGIN = "<!-- card:begin -->";
export const CARD_END = "<!-- card:end -->";

const ORDER = [
  "EmotionRecognizer",
  "MelodyTransformer",
  "HarmonyPredictor",
  "GroovePredictor",
  "DynamicsEngine",
];

/** Every NAME.metrics.json of a folder, in the pipeline's order. */
export function readMetrics(dir: string): ModelMetrics[] {
  if (!existsSync(dir)) throw new CadenzaError("E_IO", `${dir}: no such folder of trained models`);
  const files = readdirSync(dir).filter((f) => f.endsWith(".metrics.json"));
  if (files.length === 0) {
    throw new CadenzaError(
      "E_IO",
      `${dir}: no *.metrics.json (train first: bun scripts/train-defaults.ts)`,
    );
  }
  const out = files.map((f) => {
    try {
      return JSON.parse(readFileSync(join(dir, f), "utf8")) as ModelMetrics;
    } catch (e) {
      throw new CadenzaError(
        "E_FORMAT",
        `${join(dir, f)}: not a metrics file (${(e as Error).message})`,
      );
    }
  });
  return out.sort((a, b) => ORDER.indexOf(a.model) - ORDER.indexOf(b.model));
}

const f4 = (x: number) => x.toFixed(4);
const int = (x: number) => x.toLocaleString("en-US");

function isClass(b: ClassBaseline | ValueBaseline): b is ClassBaseline {
  return "accuracy" in b;
}

/** The card's Markdown (the section between the markers). */
export function renderCard(all: readonly ModelMetrics[]): string {
  const lines: string[] = [];
  lines.push("## Training card (written by `bun scripts/card.ts`; do not edit by hand)");
  lines.push("");
  const quick = all.some((m) => m.quick);
  if (quick) {
    lines.push(
      "> **QUICK RUN**: these figures come from the quick subset (one epoch); they show the",
    );
    lines.push("> pipeline works, not what the full run reaches.");
    lines.push("");
  }
  lines.push(
    "Data: `data/corpus.jsonl.gz` (music21 10.5.1's corpus, data/SOURCES.md), split by piece " +
      "(FNV-1a of the id mod 100: 0..79 train, 80..89 validation, 90..99 test; " +
      "src/train/corpus.ts). Every piece is moved to tonic C. Emotion labels are **proxies** " +
      "computed from the notes (src/train/labels.ts): valence's sign from the mode, its size (0.2 .. 0.95) " +
      "from how clearly the notes sound in that mode (Krumhansl-Kessler profile correlation of the " +
      "piece's key less the best key of the other mode); arousal from notes per second at the piece's tempo " +
      "and its register, z-scored and squashed. The validation pieces pick the epoch kept; only " +
      "the test pieces give the figures below.",
  );
  lines.push("");
  lines.push(
    "| model | data set | pieces train / val / test | examples train / val / test | parameters (seed) | epochs (kept) | training time | command |",
  );
  lines.push("|---|---|---|---|---|---|---|---|");
  for (const m of all) {
    lines.push(
      `| ${m.model} | ${m.set} (${m.loss}) | ${int(m.pieces.train)} / ${
        int(m.pieces.validation)
      } / ${int(m.pieces.test)} | ` +
        `${int(m.examples.train)} / ${int(m.examples.validation)} / ${int(m.examples.test)} | ` +
        `${int(m.parameters)} (${int(m.seedParameters)}, ${
          ((m.parameters / m.seedParameters - 1) * 100).toFixed(1)
        }%) | ` +
        `${m.epochs} (${m.bestEpoch}) | ${m.seconds.toFixed(0)} s | \`${m.command}\` |`,
    );
  }
  lines.push("");
  lines.push("### Held-out (test) metrics beside the baselines");
  lines.push("");
  lines.push(
    "Classes (melody: next tonic-relative note; harmony: next span's chord): accuracy and",
  );
  lines.push(
    "cross-entropy in nats. Values (groove, dynamics): mean squared error and mean absolute",
  );
  lines.push("error per value. The model in each load-time precision, beside the baselines.");
  lines.push("");
  lines.push("| model | measure | FP32 | bf16 | int8 | baseline | baseline value |");
  lines.push("|---|---|---|---|---|---|---|");
  for (const m of all) {
    const classes = m.loss === "xent" || m.loss === "kl";
    const acc = classes ? "accuracy" : "mean abs error";
    const loss = classes ? "cross-entropy" : "mean sq. error";
    const bases = m.baselines;
    const accBase = bases.map((b) => `${b.name}`).join("<br>");
    const accVals = bases.map((b) => isClass(b) ? f4(b.accuracy) : f4(b.mae)).join("<br>");
    const lossVals = bases.map((b) => isClass(b) ? (b.loss === null ? "-" : f4(b.loss)) : f4(b.mse))
      .join("<br>");
    lines.push(
      `| ${m.model} | ${acc} | ${f4(m.test.f32.accuracy)} | ${f4(m.test.bf16.accuracy)} | ${
        f4(m.test.int8.accuracy)
      } | ${accBase} | ${accVals} |`,
    );
    lines.push(
      `| | ${loss} | ${f4(m.test.f32.loss)} | ${f4(m.test.bf16.loss)} | ${
        f4(m.test.int8.loss)
      } | ${accBase} | ${lossVals} |`,
    );
  }
  lines.push("");
  const extras = all.filter((m) => m.extra !== undefined && Object.keys(m.extra).length > 0);
  if (extras.length > 0) {
    lines.push("Further held-out measures:");
    lines.push("");
    for (const m of extras) {
      const list = Object.entries(m.extra!).map(([k, v]) => `${k} ${f4(v)}`).join(", ");
      lines.push(`- ${m.model}: ${list}`);
    }
    lines.push("");
  }
  lines.push("### Validation per epoch");
  lines.push("");
  for (const m of all) {
    const h = m.history.map((e) => `${e.epoch}: ${f4(e.loss)} / ${f4(e.accuracy)}`).join("; ");
    lines.push(
      `- ${m.model}: untrained ${f4(m.initialLoss)}; ${h} (loss / ${
        m.loss === "xent" ? "accuracy" : "mean abs error"
      })`,
    );
  }
  lines.push("");
  const commits = [...new Set(all.map((m) => m.dataCommit))].join(", ");
  const shas = [...new Set(all.map((m) => m.corpusSha256.slice(0, 16)))].join(", ");
  lines.push(
    `Data code commit: ${commits}; corpus SHA-256 (first 16 hex): ${shas}; trained ` +
      `${[...new Set(all.map((m) => m.trainedAt.slice(0, 10)))].join(", ")}.`,
  );
  return lines.join("\n");
}

/** Writes `section` between the card markers of `path` (creating or appending as needed). */
export function writeCard(path: string, section: string): void {
  const block = `${CARD_BEGIN}\n${section}\n${CARD_END}`;
  let text = existsSync(path) ? readFileSync(path, "utf8") : "";
  const a = text.indexOf(CARD_BEGIN);
  const b = text.indexOf(CARD_END);
  if (a >= 0 && b > a) {
    text = text.slice(0, a) + block + text.slice(b + CARD_END.length);
  } else {
    text = (text.length > 0 ? text.replace(/\n*$/, "\n\n") : "") + block + "\n";
  }
  writeFileSync(path, text);
}
