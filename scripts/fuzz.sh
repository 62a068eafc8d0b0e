#!/usr/bin/env bash
# Coverage-guided fuzzing of the library's native readers (docs/TESTING.md, "Coverage-guided
# fuzzing"): builds zig-out/bin/cadenza-fuzz (`zig build fuzz`), replays every file under
# fuzz/regressions/<target>/ (inputs that once crashed it), then fuzzes each target for
# --seconds from its seed corpus fuzz/corpus/<target>/ with the dictionary fuzz/dict.
#
#   scripts/fuzz.sh [--seconds N] [--targets model,graph,trainer] [--out DIR] [--seed N]
#
# --seconds is per target (default 40: the CI smoke run, two minutes for the three). New
# corpus entries, crashes and hangs go under --out (default out/fuzz/<target>/, git-ignored);
# the fuzzer's JSON summary line per target is also written to OUT/summary.jsonl. Exits 1 when
# a regression file or the fuzzing found a crash or a hang.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=40
targets=model,graph,trainer
out=out/fuzz
seed=$(date +%s)
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "scripts/fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

scripts/zig build fuzz
fuzzer=zig-out/bin/cadenza-fuzz
mkdir -p "$out"
status=0
for target in ${targets//,/ }; do
  if compgen -G "fuzz/regressions/$target/*" > /dev/null; then
    echo "== $target: replaying fuzz/regressions/$target/"
    if ! "$fuzzer" "$target" --reproduce fuzz/regressions/"$target"/* > "$out/$target.regressions.log" 2>&1; then
      cat "$out/$target.regressions.log" >&2
      status=1
    fi
  fi
  echo "== $target: fuzzing for $seconds s (seed $seed)"
  "$fuzzer" "$target" --seconds "$seconds" --seed "$seed" --corpus "fuzz/corpus/$target" \
    --dict fuzz/dict --out "$out/$target" 2> >(tee "$out/$target.log" >&2) || status=1
  tail -n 1 "$out/$target.log" >> "$out/summary.jsonl"
done
exit $status
