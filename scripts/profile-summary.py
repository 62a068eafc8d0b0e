"""Prints the tables of docs/PERFORMANCE.md's profile from what scripts/profile.sh wrote.

    python3 scripts/profile-summary.py WORK_DIR STEPS

For each precision (WORK_DIR/<precision>/): per pipeline step and per model run alone, the
instructions (Ir), simulated D1 and LL misses, and native medians of the profiled x86-64-v3
build and of the native AVX-512 build; then the instruction rate each achieves (Ir per ns of
the v3 build, the same binary callgrind counted) and, for the pipeline step, the time its
instructions would take at the best rate a model reaches with its weights in L2, beside the
time it takes. Last, the pipeline step's instructions and misses per function.
"""

import json
import re
import sys
from pathlib import Path

LINE_BYTES = 64
# A model counts as running from cache when its step misses the simulated L2 for under this
# share of its weight lines (state, KV cache and outputs miss a little in any case).
IN_CACHE_MISS_SHARE = 0.05


def totals(path: Path) -> dict:
    """Event totals of a callgrind output file."""
    events, values = None, None
    for line in path.read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("totals:") or (line.startswith("summary:") and values is None):
            values = [int(v) for v in line.split()[1:]]
    if events is None or values is None:
        raise SystemExit(f"profile-summary: {path}: no events/totals lines")
    # callgrind leaves trailing zero counts out
    return dict(zip(events, values + [0] * (len(events) - len(values))))


def native_median_ns(path: Path) -> float:
    """The median of the medians of the driver runs recorded in `path`."""
    medians = sorted(float(m) for m in re.findall(r"median_ns (\d+)", path.read_text()))
    if not medians:
        raise SystemExit(f"profile-summary: {path}: no median_ns")
    return medians[len(medians) // 2]


def functions(path: Path) -> list:
    """(function, Ir, D1 misses, LL misses) from callgrind_annotate with
    --show=Ir,D1mr,D1mw,DLmr,DLmw --show-percs=no, summed over the files a function's
    inlined code comes from."""
    sums: dict = {}
    row = re.compile(r"^\s*((?:[\d,]+|\.)\s+){5}(\S.*)$")
    for line in path.read_text().splitlines():
        match = row.match(line)
        if match is None or "PROGRAM TOTALS" in line:
            continue
        counts = line.split()[:5]
        if not all(re.fullmatch(r"[\d,]+|\.", c) for c in counts):
            continue
        name = match.group(2).split(" [")[0]
        name = name.split(":", 1)[1] if ":" in name else name
        ir, d1r, d1w, llr, llw = (0 if c == "." else int(c.replace(",", "")) for c in counts)
        acc = sums.setdefault(name, [0, 0, 0])
        acc[0] += ir
        acc[1] += d1r + d1w
        acc[2] += llr + llw
    return sorted(((n, *v) for n, v in sums.items()), key=lambda r: -r[1])


def measure(out: Path, name: str, steps: int, weight_bytes: int, parameters: int) -> dict:
    t = totals(out / f"{name}.callgrind")
    ir = t["Ir"] / steps
    ll = (t["DLmr"] + t["DLmw"]) / steps
    v3_ns = native_median_ns(out / f"{name}.v3.txt")
    return {
        "ir": ir,
        "ir_per_weight": ir / parameters,
        "d1": (t["D1mr"] + t["D1mw"]) / steps,
        "ll": ll,
        "ll_share": ll * LINE_BYTES / weight_bytes,
        "v3_us": v3_ns / 1e3,
        "native_us": native_median_ns(out / f"{name}.native.txt") / 1e3,
        "rate": ir / v3_ns,
    }


def table(header: list, rows: list) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()


def precision_report(work: Path, precision: str, steps: int) -> None:
    out = work / precision
    models = json.loads((out / "models.json").read_text())
    weight_bytes = sum(m["weightBytes"] for m in models)
    parameters = sum(m["parameters"] for m in models)
    graph = measure(out, "graph", steps, weight_bytes, parameters)
    alone = [
        (m, measure(out, f"model{k}", steps, m["weightBytes"], m["parameters"]))
        for k, m in enumerate(models)
    ]
    cached = [r for _, r in alone if r["ll_share"] < IN_CACHE_MISS_SHARE]
    best = max(cached, key=lambda r: r["rate"]) if cached else None

    def row(name: str, wb: int, r: dict) -> list:
        return [
            name,
            f"{wb / 1024:,.0f}",
            f"{r['ir']:,.0f}",
            f"{r['ir_per_weight']:.3f}",
            f"{r['d1']:,.0f}",
            f"{r['ll']:,.0f}",
            f"{100 * r['ll_share']:.0f}%",
            f"{r['v3_us']:.2f}",
            f"{r['native_us']:.2f}",
            f"{r['rate']:.2f}",
        ]

    print(
        f"## {precision}: per step ({steps} steps under callgrind; natively the median of 3 "
        "runs' medians of 5000 steps)\n"
    )
    table(
        [
            "run",
            "weight KB",
            "Ir",
            "Ir/weight",
            "D1 misses",
            "L2 misses",
            "L2-miss bytes / weight bytes",
            "v3 us",
            "AVX-512 us",
            "Ir/ns (v3)",
        ],
        [row("pipeline step", weight_bytes, graph)]
        + [row(f"{m['name']} alone", m["weightBytes"], r) for m, r in alone],
    )
    if best is not None:
        implied_us = graph["ir"] / best["rate"] / 1e3
        print(
            f"Best in-cache rate (a model alone missing L2 for < "
            f"{100 * IN_CACHE_MISS_SHARE:.0f}% of its weight lines): {best['rate']:.2f} Ir/ns. "
            f"At that rate the pipeline step's {graph['ir']:,.0f} instructions take "
            f"{implied_us:.1f} us; measured (same v3 binary) {graph['v3_us']:.1f} us, "
            f"{graph['v3_us'] / implied_us:.1f}x longer. L2 misses per step x 64 B = "
            f"{graph['ll'] * LINE_BYTES / 1e6:.2f} MB, i.e. "
            f"{graph['ll'] * LINE_BYTES / graph['v3_us'] / 1e3:.1f} GB/s at the measured time.\n"
        )
    fns = functions(out / "graph.annotate.txt")
    print(f"Pipeline step ({precision}) by function, per step:\n")
    table(
        ["function", "Ir", "share", "D1 misses", "L2 misses"],
        [
            [name, f"{ir / steps:,.0f}", f"{100 * ir / steps / graph['ir']:.1f}%",
             f"{d1 / steps:,.0f}", f"{ll / steps:,.0f}"]
            for name, ir, d1, ll in fns
            if ir / steps >= 0.002 * graph["ir"]
        ],
    )


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python3 scripts/profile-summary.py WORK_DIR STEPS")
    work, steps = Path(sys.argv[1]), int(sys.argv[2])
    for precision in ("f32", "bf16"):
        precision_report(work, precision, steps)


main()
