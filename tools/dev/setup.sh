#!/usr/bin/env bash
# Shared by the README commands: install what the build needs (Debian 12, as root or with sudo)
# and (re)configure the build directory when needed. Sourced by demo.sh, test.sh and fuzz.sh.
set -euo pipefail

DROVER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD_DIR=${DROVER_BUILD_DIR:-"$DROVER_ROOT/build"}

# libboost1.81-dev, not libboost-dev (1.74, no Process v2 and no any_completion_handler).
# strace: the tests of traced children (reliability.md, C5) attach it to drover's children.
# clang-format: the format check (test/format/check_format.py; .clang-format is for version 14).
# python3-prometheus-client: the /metrics test parses drover's output with Prometheus' own parser;
# python3-yaml: the deployment check reads docs/deploy.md's pod spec; chromium: the dashboard's
# browser test (test/browser; Playwright comes from the npm registry, see test/browser/run.sh).
PACKAGES=(g++ meson ninja-build pkg-config libboost1.81-dev libboost-json1.81-dev libspdlog-dev libfmt-dev doctest-dev libcli11-dev libtomlplusplus-dev scdoc strace clang-format systemd python3 python3-prometheus-client python3-yaml chromium)

# install_missing PACKAGE...: installs those of the Debian packages that are not installed yet.
install_missing() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "drover: installing ${missing[*]}" >&2
        local SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}
install_missing "${PACKAGES[@]}"
# Node.js and npm for the browser test: Debian's packages, unless a node with npm is there already
# (another node's npm conflicts with Debian's npm package).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then install_missing nodejs npm; fi

# Configure once; reconfigure when meson asks for it (meson.build changes are picked up by ninja).
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    meson setup "$BUILD_DIR" "$DROVER_ROOT" --wrap-mode=nodownload ${DROVER_MESON_ARGS:-}
fi
