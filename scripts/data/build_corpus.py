#!/usr/bin/env python3
"""Extract the training corpus for cadenza's default models from the music21 corpus.

Offline and reproducible: music21 (pinned below) ships the scores; this script reads them and
writes data/corpus.jsonl.gz, one JSON object per line and piece, sorted by id, with integer times in ticks
of 1/12 quarter note (exact for every duplet, triplet and dotted value in these collections).

    python3 scripts/data/build_corpus.py            # writes data/corpus.jsonl.gz and data/SOURCES.md
    python3 scripts/data/build_corpus.py --check    # writes nothing; exit 1 if data/ differs
(about 15 minutes of CPU for the 10,000 pieces; --check compares the decompressed JSON lines
and SOURCES.md byte for byte: gzip's own bytes can differ between zlib builds).
    python3 scripts/data/build_corpus.py --limit 20 --out /tmp/c   # a small subset elsewhere

What each piece holds (docs in data/SOURCES.md):
  id, collection, title, key {tonic 0..11, mode major|minor} (music21's Krumhansl analysis of the
  whole piece), meter [numerator, denominator], tempo_qpm (a metronome mark, or null), bars (tick
  offset of every bar line), melody [[pitch, onset, duration], ...] (pitch -1 is a rest; the
  top voice of polyphonic pieces), chords [[onset, duration, root 0..11, quality], ...] (one per
  beat, only where the piece has several voices), dynamics [[onset, mark], ...] where marked.
"""

import argparse
import gzip
import json
import os
import sys

MUSIC21_VERSION = "10.5.1"
TICKS_PER_QUARTER = 12

# Collections used and why: Bach chorales give four-part harmony in major and minor (chords and
# melody); the Essen folk songs, O'Neill's and Ryan's tunes give many single-line melodies with
# their keys and meters.
COLLECTIONS = [
    ("bach", "composer", "J. S. Bach chorales (four voices): melody, harmony, key, meter"),
    ("essenFolksong", "dir", "Essen folk-song collection (ABC): melodies, key, meter"),
    ("oneills1850", "dir", "O'Neill's Music of Ireland (1850): melodies, key, meter"),
    ("ryansMammoth", "dir", "Ryan's Mammoth Collection (1883): melodies, key, meter"),
]

# Chord templates as pitch classes above the root. Order matters only for ties (earlier wins),
# so plain triads come before their extensions.
TEMPLATES = [
    ("maj", (0, 4, 7)),
    ("min", (0, 3, 7)),
    ("dom7", (0, 4, 7, 10)),
    ("min7", (0, 3, 7, 10)),
    ("maj7", (0, 4, 7, 11)),
    ("dim", (0, 3, 6)),
    ("hdim7", (0, 3, 6, 10)),
    ("dim7", (0, 3, 6, 9)),
    ("aug", (0, 4, 8)),
    ("sus4", (0, 5, 7)),
]


def ticks(quarter_length):
    value = float(quarter_length) * TICKS_PER_QUARTER
    rounded = round(value)
    if abs(value - rounded) > 1e-6:
        raise ValueError(f"duration {quarter_length} quarters is not a whole number of ticks")
    return int(rounded)


def label_chord(weights):
    """Best template for a duration-weighted pitch-class profile: (root, quality) or None.

    Score = weight inside the template - weight outside it - 0.5 * (template tones missing),
    counted in quarters; a window with under a quarter of tone content is no chord.
    """
    total = sum(weights)
    if total <= 0:
        return None
    best = None
    for root in range(12):
        for quality, template in TEMPLATES:
            tones = {(root + t) % 12 for t in template}
            inside = sum(weights[pc] for pc in tones)
            missing = sum(1 for pc in tones if weights[pc] == 0)
            score = inside - (total - inside) - 0.5 * missing * total / len(template)
            if weights[root] == 0:
                continue
            if best is None or score > best[0] + 1e-9:
                best = (score, root, quality)
    return None if best is None else (best[1], best[2])


def chords_per_beat(score, beat_ticks, end_ticks):
    """One chord label per beat from every voice's notes sounding in that beat."""
    sounding = []
    for n in score.flatten().notes:
        start = ticks(n.offset)
        stop = start + ticks(n.quarterLength)
        for p in n.pitches:
            sounding.append((start, stop, p.pitchClass))
    chords = []
    for window in range(0, end_ticks, beat_ticks):
        weights = [0.0] * 12
        window_end = window + beat_ticks
        for start, stop, pc in sounding:
            overlap = min(stop, window_end) - max(start, window)
            if overlap > 0:
                weights[pc] += overlap / TICKS_PER_QUARTER
        label = label_chord(weights)
        if label is None:
            continue
        root, quality = label
        if chords and chords[-1][2] == root and chords[-1][3] == quality and \
                chords[-1][0] + chords[-1][1] == window:
            chords[-1][1] += beat_ticks
        else:
            chords.append([window, beat_ticks, root, quality])
    return chords


def melody_part(score):
    parts = list(score.parts)
    if not parts:
        return score
    for part in parts:
        if "soprano" in (part.partName or "").lower():
            return part

    def mean_pitch(part):
        pitches = [p.midi for n in part.flatten().notes for p in n.pitches]
        return sum(pitches) / len(pitches) if pitches else -1

    return max(parts, key=mean_pitch)


def top_voice(score):
    """The melody: the soprano of a polyphonic score (the part named so, else the part with the
    highest mean pitch: some chorales carry instrumental parts too), the only part otherwise;
    chords in a single line keep their top note."""
    part = melody_part(score)
    melody = []
    for element in part.flatten().notesAndRests:
        if element.quarterLength == 0:
            continue  # grace notes
        onset = ticks(element.offset)
        duration = ticks(element.quarterLength)
        if element.isRest:
            pitch = -1
        else:
            pitch = max(p.midi for p in element.pitches)
        if melody and pitch == -1 and melody[-1][0] == -1:
            melody[-1][2] += duration
            continue
        if element.isNote and element.tie is not None and element.tie.type in ("continue", "stop") \
                and melody and melody[-1][0] == pitch:
            melody[-1][2] += duration
            continue
        melody.append([pitch, onset, duration])
    return melody


def piece_record(score, piece_id, collection, polyphonic):
    from music21 import dynamics, meter, tempo

    flat = score.flatten()
    signatures = flat.getElementsByClass(meter.TimeSignature)
    if len(signatures) == 0:
        return None, "no time signature"
    ts = signatures[0]
    if len(signatures) > 1 and any(s.ratioString != ts.ratioString for s in signatures):
        return None, "meter changes"
    melody = top_voice(score)
    if sum(1 for n in melody if n[0] >= 0) < 8:
        return None, "fewer than 8 notes"
    key = score.analyze("key")
    marks = flat.getElementsByClass(tempo.MetronomeMark)
    tempo_qpm = None
    if len(marks) > 0 and marks[0].number is not None:
        tempo_qpm = round(float(marks[0].getQuarterBPM()), 3)
    part = melody_part(score)
    bars = sorted({ticks(m.offset) for m in part.getElementsByClass("Measure")})
    end_ticks = max(n[1] + n[2] for n in melody)
    beat_ticks = ticks(ts.beatDuration.quarterLength)
    record = {
        "id": piece_id,
        "collection": collection,
        "title": (score.metadata.title if score.metadata and score.metadata.title else ""),
        "key": {"tonic": key.tonic.pitchClass, "mode": key.mode if key.mode in ("major", "minor")
                else "major"},
        "meter": [ts.numerator, ts.denominator],
        "tempo_qpm": tempo_qpm,
        "bars": bars,
        "melody": melody,
        "chords": chords_per_beat(score, beat_ticks, end_ticks) if polyphonic else [],
        "dynamics": [[ticks(d.offset), d.value] for d in flat.getElementsByClass(dynamics.Dynamic)],
    }
    return record, None


def iterate_collection(name, kind, limit):
    from music21 import corpus

    if kind == "composer":
        paths = sorted(corpus.getComposer(name), key=lambda p: os.path.basename(str(p)))
    else:
        root = os.path.join(os.path.dirname(corpus.__file__), name)
        paths = sorted(os.path.join(root, f) for f in os.listdir(root)
                       if f.endswith((".abc", ".mxl", ".krn", ".xml")))
    count = 0
    for path in paths:
        base = os.path.splitext(os.path.basename(str(path)))[0]
        parsed = corpus.parse(str(path))
        scores = parsed.scores if hasattr(parsed, "scores") else [parsed]
        for index, score in enumerate(scores):
            number = score.metadata.number if score.metadata and score.metadata.number else index
            piece_id = f"{name}/{base}" if len(scores) == 1 else f"{name}/{base}#{number}"
            yield piece_id, score
            count += 1
            if limit and count >= limit:
                return


def build(limit, progress):
    import music21

    if music21.__version__ != MUSIC21_VERSION:
        sys.exit(f"build_corpus.py: music21 {MUSIC21_VERSION} is pinned, found "
                 f"{music21.__version__}: python3 -m pip install music21=={MUSIC21_VERSION}")
    records = {}
    skipped = {}
    seen_melodies = set()
    for name, kind, _ in COLLECTIONS:
        for piece_id, score in iterate_collection(name, kind, limit):
            try:
                record, why = piece_record(score, piece_id, name, kind == "composer")
            except Exception as err:  # a score music21 cannot interpret is skipped, counted
                record, why = None, f"unreadable ({type(err).__name__})"
            if record is None:
                skipped[why] = skipped.get(why, 0) + 1
                continue
            fingerprint = json.dumps(record["melody"], separators=(",", ":"))
            if fingerprint in seen_melodies:
                skipped["duplicate melody"] = skipped.get("duplicate melody", 0) + 1
                continue
            seen_melodies.add(fingerprint)
            if piece_id in records:
                piece_id = f"{piece_id}~{len(records)}"
                record["id"] = piece_id
            records[piece_id] = record
            if progress and len(records) % 250 == 0:
                print(f"  {len(records)} pieces ({piece_id})", file=sys.stderr)
    lines = [json.dumps(records[k], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
             for k in sorted(records)]
    return ("\n".join(lines) + "\n").encode("utf-8"), records, skipped


def sources_md(records, skipped):
    counts = {}
    for record in records.values():
        counts[record["collection"]] = counts.get(record["collection"], 0) + 1
    rows = "\n".join(f"| {name} | {description} | {counts.get(name, 0)} |"
                     for name, _, description in COLLECTIONS)
    skips = ", ".join(f"{why}: {n}" for why, n in sorted(skipped.items())) or "none"
    return f"""# data/: the training corpus, and where it comes from

`corpus.jsonl.gz` (gzip of JSON lines) is written by `python3 scripts/data/build_corpus.py` from the corpus that ships
inside the PyPI package `music21` {MUSIC21_VERSION}; `--check` rebuilds it in memory and compares
the decompressed lines byte for byte. Nothing here is hand-edited. Readers: `src/train/corpus.ts`.

| collection | what it gives | pieces |
|---|---|---:|
{rows}

Pieces skipped: {skips}.

## Licence
The music is public domain (Bach's chorales; the folk-song and fiddle-tune collections of the
19th and 20th centuries). The encodings are music21's corpus, distributed with music21 under its
BSD licence with the permission of their encoders; music21's `corpus/license.txt` notes that some
encodings may restrict commercial use: check the source files' own headers before such use.

## Format (one JSON object per line, sorted by id)
- times are integer ticks, {TICKS_PER_QUARTER} per quarter note, from the start of the piece;
- `key`: music21's key analysis of the whole piece (tonic as a pitch class, C = 0);
- `meter`: the time signature (pieces whose meter changes are skipped);
- `tempo_qpm`: a metronome mark where the score has one, else null;
- `bars`: the tick of every bar line of the first part (a pickup bar starts at 0);
- `melody`: `[pitch, onset, duration]`, MIDI pitch or -1 for a rest, tied notes merged;
- `chords` (four-voice pieces only): `[onset, duration, root, quality]`, one label per beat from
  every sounding voice, the best of the templates maj, min, dom7, min7, maj7, dim, hdim7, dim7,
  aug, sus4 (duration-weighted pitch classes; equal labels on adjacent beats merged);
- `dynamics`: `[onset, mark]` where the score marks them.
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "data"))
    parser.add_argument("--limit", type=int, default=0, help="at most N pieces per collection")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out")
    args = parser.parse_args()
    data, records, skipped = build(args.limit, progress=True)
    files = {"corpus.jsonl.gz": gzip.compress(data, 9, mtime=0),
             "SOURCES.md": sources_md(records, skipped).encode("utf-8")}
    if args.check:
        def same(name):
            path = os.path.join(args.out, name)
            if not os.path.exists(path):
                return False
            existing = open(path, "rb").read()
            if name.endswith(".gz"):
                return gzip.decompress(existing) == data
            return existing == files[name]

        stale = [name for name in files if not same(name)]
        if stale:
            print(f"build_corpus.py: differs from {args.out}: {', '.join(stale)}", file=sys.stderr)
            sys.exit(1)
        print(f"build_corpus.py: {len(records)} pieces, identical", file=sys.stderr)
        return
    os.makedirs(args.out, exist_ok=True)
    for name, content in files.items():
        path = os.path.join(args.out, name)
        with open(path + ".tmp", "wb") as handle:
            handle.write(content)
        os.replace(path + ".tmp", path)
    print(f"build_corpus.py: {len(records)} pieces, {len(data)} bytes -> {args.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
