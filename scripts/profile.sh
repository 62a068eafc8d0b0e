#!/bin/sh
# Instruction counts and simulated cache misses per pipeline step (callgrind), beside native
# timings of the same code, at f32 and bf16: the profile in docs/PERFORMANCE.md.
#
#   scripts/profile.sh [WORK_DIR] [STEPS]      (defaults /tmp/cadenza-profile, 100)
#
# About 4 minutes on the 2-core VM (callgrind runs AVX2 code ~50x slower than the CPU).
# Valgrind (3.19 here) cannot decode AVX-512, so callgrind profiles a build for x86-64-v3
# (AVX2 + FMA, 8-lane vectors) in zig-out/profile-v3/; the same build is also timed natively
# (so counts and times are of one binary), and so is the usual native (AVX-512) build.
# The cache simulation models this machine's core: D1 48 KB 12-way, and as last level the 2 MB
# 16-way L2 (not the shared L3), so that LL misses are the lines a step fetches from beyond L2.
# Needs valgrind, gcc with valgrind/callgrind.h, python3, and `npm ci` done (Bun, Zig).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/cadenza-profile}
steps=${2:-100}
bun="$root/node_modules/.bin/bun"
v3_lib="$root/zig-out/profile-v3/lib/libcadenza_fast.so"
native_lib="$root/zig-out/lib/libcadenza_fast.so"
cache="--D1=49152,12,64 --I1=65536,8,64 --LL=2097152,16,64"

mkdir -p "$work"
echo "profile: building the x86-64-v3 library and the driver" >&2
(cd "$root" && scripts/zig build -Dcpu=x86_64_v3 --prefix zig-out/profile-v3)
[ -f "$native_lib" ] || (cd "$root" && scripts/zig build)
gcc -O2 -Wall -Wextra -o "$work/driver" "$root/scripts/profile-driver.c" -ldl
"$bun" "$root/scripts/profile-images.ts" "$work/v3" "$v3_lib" >&2
"$bun" "$root/scripts/profile-images.ts" "$work/native" "$native_lib" >&2

for precision in f32 bf16; do
  data="$work/v3/$precision"
  out="$work/$precision"
  mkdir -p "$out"
  cp "$data/models.json" "$out/models.json"
  nodes=$(wc -l < "$data/nodes.txt")
  set -- graph
  k=0
  while [ "$k" -lt "$nodes" ]; do set -- "$@" "model $k"; k=$((k + 1)); done
  for mode in "$@"; do
    name=$(echo "$mode" | tr -d ' ')
    echo "profile: $precision $mode" >&2
    # shellcheck disable=SC2086 # $mode and $cache are word lists on purpose
    valgrind --tool=callgrind --collect-atstart=no --cache-sim=yes $cache \
      --callgrind-out-file="$out/$name.callgrind" \
      "$work/driver" "$v3_lib" "$data" $mode "$steps" > /dev/null 2> "$out/$name.valgrind.log"
    # Three timed runs of each build, interleaved; the summary takes the median of their
    # medians (a shared VM moves single runs, the bf16 step most: it sits at the L2's edge).
    : > "$out/$name.v3.txt"
    : > "$out/$name.native.txt"
    for _ in 1 2 3; do
      # shellcheck disable=SC2086
      "$work/driver" "$v3_lib" "$data" $mode 5000 >> "$out/$name.v3.txt"
      # shellcheck disable=SC2086
      "$work/driver" "$native_lib" "$work/native/$precision" $mode 5000 >> "$out/$name.native.txt"
    done
    callgrind_annotate --show-percs=no --threshold=100 --auto=no \
      --show=Ir,D1mr,D1mw,DLmr,DLmw "$out/$name.callgrind" > "$out/$name.annotate.txt"
  done
done
python3 "$root/scripts/profile-summary.py" "$work" "$steps" | tee "$work/summary.txt"
