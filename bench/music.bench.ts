/**
 * How long does music output take for one generated piece (16 bars, 4 parts with drums)? MIDI
 * writing and reading, the piano-roll SVG and PNG, the key finder; then FluidSynth's offline
 * render, timed a few times by hand (each takes a good part of a second) and reported as a
 * multiple of real time.
 *
 *   bun bench/music.bench.ts
 *   deno run --allow-ffi --allow-read --allow-env --allow-write --allow-run --allow-sys bench/music.bench.ts
 */
import { bench, do_not_optimize, run, summary } from "mitata";
import { generate } from "../src/music/generate.ts";
import { fromMidi, toMidi } from "../src/music/midi.ts";
import { pianoRollSvg, renderPianoRoll } from "../src/music/pianoroll.ts";
import { findFluidSynth, renderWav } from "../src/music/audio.ts";
import { findKey } from "../src/music/keyfinder.ts";
import { runtimeName } from "./lib.ts";

const piece = await generate({ emotion: "joyful", bars: 16, seed: 7, drums: true });
const seq = piece.sequence;
const chords = piece.chords.map((c) => ({ time: c.time, symbol: c.symbol }));
const midi = toMidi(seq);
console.log(
  `${runtimeName}: ${seq.notes.length} notes, ${
    seq.totalTime.toFixed(1)
  } s, ${midi.length} MIDI bytes`,
);

summary(() => {
  bench("toMidi", () => do_not_optimize(toMidi(seq)));
  bench("fromMidi", () => do_not_optimize(fromMidi(midi)));
  bench("findKey", () => do_not_optimize(findKey(seq)));
  bench("pianoRollSvg", () => do_not_optimize(pianoRollSvg(seq, { chords })));
  bench("renderPianoRoll (PNG)", () => do_not_optimize(renderPianoRoll(seq, { chords })));
});
await run();

const synth = findFluidSynth();
if (synth.missing.length > 0) {
  console.log(`renderWav: skipped, missing ${synth.missing.join(" and ")}`);
} else {
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    do_not_optimize(await renderWav(seq));
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const median_s = times[2] / 1000;
  console.log(
    `renderWav (FluidSynth, ${synth.soundFont}): median of 5 ${median_s.toFixed(3)} s ` +
      `for ${seq.totalTime.toFixed(1)} s of music = ${
        (seq.totalTime / median_s).toFixed(1)
      }x real time`,
  );
}
