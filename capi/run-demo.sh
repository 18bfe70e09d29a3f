#!/usr/bin/env bash
# Builds libtfk (static and shared), compiles examples/demo.c against each and
# runs both: the C ABI as a C engine sees it. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p transformer-kernels-capi --quiet
lib=target/release
out=target/capi-demo
mkdir -p "$out"
cc=${CC:-cc}
flags=(-std=c11 -O2 -Wall -Wextra -Werror -Icapi/include)
"$cc" "${flags[@]}" capi/examples/demo.c "$lib/libtfk.a" -lpthread -ldl -lm -o "$out/demo-static"
"$cc" "${flags[@]}" capi/examples/demo.c -L"$lib" -ltfk -lm -Wl,-rpath,"$PWD/$lib" -o "$out/demo-shared"
# The header must also compile as C++ (extern "C" guards).
if command -v c++ >/dev/null; then
    echo '#include "tfk.h"' | c++ -x c++ -std=c++17 -Wall -Werror -Icapi/include -fsyntax-only -
fi
echo "--- static"
"$out/demo-static"
echo "--- shared"
"$out/demo-shared"
