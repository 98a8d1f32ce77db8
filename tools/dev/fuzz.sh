#!/usr/bin/env bash
# Fuzz every parser of outside input with libFuzzer (test/fuzz, docs/fuzzing.md):
#   tools/dev/fuzz.sh [SECONDS] [TARGET...]
# Installs clang 14 and its fuzzer runtime if missing (Debian 12), builds the targets in
# "<build>-fuzz" (-Dfuzz=true), then for each TARGET (default: all):
#   1. runs it once over its committed seed corpus, test/fuzz/corpus/TARGET (a fast regression
#      check: every seed, including each past crash, must pass);
#   2. fuzzes it for SECONDS (default 20), with a fresh temporary corpus directory first (new
#      inputs are written there) and the seed directory second (only read): the repository is
#      never modified.
# Logs, new inputs and crash artifacts go to a temporary work directory, printed at the start;
# it is removed when every target passed (DROVER_FUZZ_KEEP=1 keeps it). A failure prints the
# end of the target's log and the crashing input. Extra libFuzzer flags: DROVER_FUZZ_ARGS
# (say "-jobs=2 -workers=2"; the job logs then land in the work directory).
# Prints "fuzz NAME: ok, N runs" or "fuzz NAME: FAILED (...)" per target, then
#   "fuzz: N targets, M failed"
# and exits non-zero when any failed (or the build did).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# clang 14 and libFuzzer/ASan/UBSan runtimes; llvm-14 for llvm-symbolizer (readable reports).
install_missing clang-14 libclang-rt-14-dev llvm-14

fuzz_seconds=20
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
    fuzz_seconds=$1
    shift
fi

FUZZ_DIR="${BUILD_DIR}-fuzz"
if [ ! -f "$FUZZ_DIR/build.ninja" ]; then
    CC=clang-14 CXX=clang++-14 meson setup "$FUZZ_DIR" "$DROVER_ROOT" --wrap-mode=nodownload \
        -Dfuzz=true -Dtests=disabled ${DROVER_MESON_ARGS:-}
fi
ninja -C "$FUZZ_DIR"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for exe in "$FUZZ_DIR"/test/fuzz/fuzz-*; do
        [ -f "$exe" ] && [ -x "$exe" ] && targets+=("${exe##*/fuzz-}")
    done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/bin/llvm-symbolizer-14 ]; then
    export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-14
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/drover-fuzz.XXXXXX")
echo "fuzz: ${#targets[@]} targets, ${fuzz_seconds} s each; logs, new inputs and crashes in $WORK"

# report_failure NAME LOG WHAT: the FAILED line, the end of the log and the crashing input.
report_failure() {
    local name=$1 log=$2 what=$3 reason artifact
    reason=$(grep -m1 -E 'fuzz property failed|runtime error|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)' "$log" |
        sed -E 's/^==[0-9]+==//' | cut -c1-160 || true)
    echo "fuzz $name: FAILED ($what: ${reason:-see the log}); log: $log"
    tail -n 40 "$log" | sed 's/^/    /'
    for artifact in "$WORK/$name/artifacts/"*; do
        [ -f "$artifact" ] || continue
        echo "    input ($artifact), reproduce: $FUZZ_DIR/test/fuzz/fuzz-$name $artifact"
        od -A x -t x1z -v "$artifact" | head -n 16 | sed 's/^/    /'
    done
}

failed=0
for name in "${targets[@]}"; do
    exe="$FUZZ_DIR/test/fuzz/fuzz-$name"
    seeds="$DROVER_ROOT/test/fuzz/corpus/$name"
    if [ ! -x "$exe" ] || [ ! -d "$seeds" ]; then
        echo "fuzz $name: FAILED (no such target, or no seed corpus in test/fuzz/corpus/$name)"
        failed=$((failed + 1))
        continue
    fi
    mkdir -p "$WORK/$name/corpus" "$WORK/$name/artifacts"
    opts=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$WORK/$name/artifacts/")
    if [ -f "$DROVER_ROOT/test/fuzz/$name.dict" ]; then opts+=(-dict="$DROVER_ROOT/test/fuzz/$name.dict"); fi
    set +e
    # The seeds alone: each input run once.
    (cd "$WORK/$name" && "$exe" "${opts[@]}" "$seeds"/*) >"$WORK/$name/seeds.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        # shellcheck disable=SC2086 # DROVER_FUZZ_ARGS is a list of flags
        (cd "$WORK/$name" && "$exe" "${opts[@]}" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
            ${DROVER_FUZZ_ARGS:-} "$WORK/$name/corpus" "$seeds") >"$WORK/$name/fuzz.log" 2>&1
        rc=$?
        log="$WORK/$name/fuzz.log"
        what="fuzzing"
    else
        log="$WORK/$name/seeds.log"
        what="seed corpus"
    fi
    set -e
    if [ $rc -eq 0 ]; then
        # "Done N runs" (one process), or the last "#N: cov: ..." status line (-fork=N).
        runs=$(awk '/^Done [0-9]+ runs/ { done += $2; seen = 1 }
            /^#[0-9]+: cov:/ { n = substr($1, 2) + 0 }
            END { print seen ? done : n + 0 }' "$log")
        echo "fuzz $name: ok, $runs runs"
    else
        failed=$((failed + 1))
        report_failure "$name" "$log" "$what"
    fi
done

echo "fuzz: ${#targets[@]} targets, $failed failed"
if [ $failed -ne 0 ]; then
    echo "fuzz: logs and crashing inputs kept in $WORK"
    exit 1
fi
if [ "${DROVER_FUZZ_KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
