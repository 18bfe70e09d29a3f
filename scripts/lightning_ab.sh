#!/usr/bin/env bash
# Same-process A/B of the Lightning CPU kernels: the kernels-cpu of git
# revision OLD (default HEAD~1) against the working tree's, linked into one
# program (scripts/lightning_ab.c), pinned to one core.
#   scripts/lightning_ab.sh [OLD] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
old_rev=${1:-HEAD~1}
rounds=${2:-15}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/old"
git -C "$root" archive "$old_rev" kernels-cpu | tar -x -C "$tmp/old"
flags=(-O3 -std=c11 -fno-math-errno)
avx512=(-mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mf16c)
avx2=(-mavx2 -mfma -mf16c)
for side in old new; do
    src=$([ "$side" = old ] && echo "$tmp/old/kernels-cpu" || echo "$root/kernels-cpu")
    gcc "${flags[@]}" -I"$src/include" "${avx512[@]}" -c "$src/lightning/avx512.c" -o "$tmp/$side-avx512.o"
    gcc "${flags[@]}" -I"$src/include" "${avx2[@]}" -c "$src/lightning/avx2.c" -o "$tmp/$side-avx2.o"
    for o in "$tmp/$side-avx512.o" "$tmp/$side-avx2.o"; do
        # rename the entry points only (the libc calls stay as they are)
        nm --defined-only -g "$o" | awk -v p="$side" '{print $3, p "_" $3}' > "$o.map"
        objcopy --redefine-syms="$o.map" "$o"
    done
done
# tk_lightning_workspace_floats and the variant table it sits beside, with
# the working tree's kernels under their own names
k="$root/kernels-cpu"
gcc "${flags[@]}" -I"$k/include" -c "$k/lightning/variants.c" -o "$tmp/variants.o"
gcc "${flags[@]}" -I"$k/include" -c "$k/lightning/scalar.c" -o "$tmp/scalar.o"
gcc "${flags[@]}" -I"$k/include" "${avx512[@]}" -c "$k/lightning/avx512.c" -o "$tmp/avx512.o"
gcc "${flags[@]}" -I"$k/include" "${avx2[@]}" -c "$k/lightning/avx2.c" -o "$tmp/avx2.o"
gcc "${flags[@]}" -I"$k/include" -I"$root/scripts" "$root/scripts/lightning_ab.c" \
    "$tmp"/old-*.o "$tmp"/new-*.o "$tmp"/{variants,scalar,avx512,avx2}.o -lm -o "$tmp/lightning_ab"
taskset -c 1 "$tmp/lightning_ab" "$rounds"
