#!/usr/bin/env bash
# Same-process A/B of one CPU kernel family: the kernels-cpu/FAMILY of git
# revision OLD (default HEAD) against the working tree's, linked into one
# program (scripts/FAMILY_ab.c, which alternates them on the same buffers and
# checks their bits), pinned to one core. On a shared host whose speed moves
# by up to 2x within minutes, a same-process ratio is the number to quote.
#   scripts/kernels_ab.sh lightning|norm|kron|qgemm [OLD] [ROUNDS] [HARNESS ARGS..]
# AB_CFLAGS adds compiler flags to both sides (e.g. -DNAME=VALUE to try a
# tuning constant that the source guards with #ifndef).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
family=${1:?usage: $0 FAMILY [OLD] [ROUNDS] [HARNESS ARGS..]}
old_rev=${2:-HEAD}
rounds=${3:-15}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/old"
git -C "$root" archive "$old_rev" kernels-cpu | tar -x -C "$tmp/old"
flags=(-O3 -std=c11 -fno-math-errno ${AB_CFLAGS:-})
avx512=(-mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mf16c)
avx2=(-mavx2 -mfma -mf16c)
compile() { # kernels-cpu dir, unit (FILE, or FILE:ISA for a file of another name), object
    local isa_flags=() file=${2%%:*} isa=${2##*:}
    case $isa in
    avx2) isa_flags=("${avx2[@]}") ;;
    avx512) isa_flags=("${avx512[@]}") ;;
    avx512bf16) isa_flags=("${avx512[@]}" -mavx512bf16) ;;
    amx) isa_flags=("${avx512[@]}" -mavx512bf16 -mamx-tile -mamx-int8 -mamx-bf16) ;;
    esac
    gcc "${flags[@]}" -I"$1/include" "${isa_flags[@]}" -c "$1/$family/$file.c" -o "$3"
}
# the ISA units, and files named *_ISA.c (qgemm/wgemv_int4_avx2.c) with them
units=()
for u in avx2 avx512 avx512bf16 amx; do
    [ -f "$root/kernels-cpu/$family/$u.c" ] && units+=("$u")
    for f in "$root/kernels-cpu/$family"/*_"$u".c; do
        [ -f "$f" ] && units+=("$(basename "$f" .c):$u")
    done
done
for side in old new; do
    src=$([ "$side" = old ] && echo "$tmp/old/kernels-cpu" || echo "$root/kernels-cpu")
    for u in "${units[@]}"; do
        o="$tmp/$side-$u.o"
        compile "$src" "$u" "$o"
        # rename the entry points only (the libc calls stay as they are)
        nm --defined-only -g "$o" | awk -v p="$side" '{print $3, p "_" $3}' >"$o.map"
        objcopy --redefine-syms="$o.map" "$o"
    done
done
# the working tree's family under its own names too: its variant table and
# helpers (tk_lightning_workspace_floats) for the harness
k="$root/kernels-cpu"
gcc "${flags[@]}" -I"$k/include" -c "$k/$family/variants.c" -o "$tmp/variants.o"
gcc "${flags[@]}" -I"$k/include" -c "$k/$family/scalar.c" -o "$tmp/scalar.o"
for u in "${units[@]}"; do compile "$k" "$u" "$tmp/cur-$u.o"; done
gcc "${flags[@]}" -I"$k/include" -I"$root/scripts" "$root/scripts/${family}_ab.c" \
    "$tmp"/old-*.o "$tmp"/new-*.o "$tmp"/cur-*.o "$tmp"/{variants,scalar}.o -lm -o "$tmp/ab"
taskset -c 1 "$tmp/ab" "$rounds" "${@:4}"
