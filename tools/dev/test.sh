#!/usr/bin/env bash
# Build drover and run the whole test suite three times: the normal build, an ASan+UBSan build
# ("<build>-asan") and a TSan build ("<build>-tsan"); then fuzz every parser of outside input
# for 20 s each (tools/dev/fuzz.sh, build directory "<build>-fuzz"; each fuzz target counts as
# one test). Ends with one summary line over all:
#   "test: N passed, M failed"
# DROVER_TEST_SANITIZERS picks the sanitizer passes ("asan-ubsan tsan" by default; "none" skips
# them) and DROVER_TEST_FUZZ=0 skips the fuzzing (quicker local runs); DROVER_TEST_FUZZ_SECONDS
# changes the 20 s. Arguments go to `meson test` (a suite name, say).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

passed_total=0
failed_total=0
skipped_total=0
rc_total=0

# run_suite DIR: build DIR and run its tests; adds to the totals.
run_suite() {
    local dir=$1
    ninja -C "$dir"
    set +e
    meson test -C "$dir" --print-errorlogs --verbose "${@:2}" 2>&1 | tee "$dir/test-output.txt"
    local rc=${PIPESTATUS[0]}
    set -e
    # Sum doctest's per-suite summaries: "[doctest] test cases: 12 | 12 passed | 0 failed | 0 skipped"
    local passed failed
    read -r passed failed < <(awk -F'|' '/\[doctest\] test cases:/ {
        for (i = 1; i <= NF; i++) { if ($i ~ /passed/) p += $i + 0; if ($i ~ /failed/) f += $i + 0 } }
        END { print p + 0, f + 0 }' "$dir/test-output.txt")
    # Tests that are not doctest programs (the docs snippets, the installed package, the demo)
    # count as one test each, by meson's result (SKIP: exit 77).
    local other_passed=0 other_failed=0 other_skipped=0
    if [ -f "$dir/meson-logs/testlog.json" ]; then
        read -r other_passed other_failed other_skipped < <(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    if "[doctest] test cases:" in (t.get("stdout") or ""):
        continue
    r = t.get("result")
    if r == "OK": p += 1
    elif r == "SKIP": s += 1
    else: f += 1
print(p, f, s)
PY
)
    fi
    passed=$((passed + other_passed))
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && [ "$other_failed" -eq 0 ]; then failed=1; fi # a suite crashed or timed out
    failed=$((failed + other_failed))
    skipped_total=$((skipped_total + other_skipped))
    echo "test ($(basename "$dir")): $passed passed, $failed failed"
    passed_total=$((passed_total + passed))
    failed_total=$((failed_total + failed))
    if [ "$rc" -ne 0 ]; then rc_total=$rc; fi
}

run_suite "$BUILD_DIR" "$@"

# Every suite again under each sanitizer: zero reports (a report fails its test). The launcher's
# raw-syscall child is not instrumented (see architecture.md).
#   asan-ubsan: AddressSanitizer + UndefinedBehaviorSanitizer, in "<build>-asan";
#   tsan: ThreadSanitizer, in "<build>-tsan", without the fallback-launcher runs (libtsan's
#         clone() interceptor assumes a fork-like clone; see test/meson.build).
for san in ${DROVER_TEST_SANITIZERS:-asan-ubsan tsan}; do
    case $san in
    none) continue ;;
    asan-ubsan) dir="${BUILD_DIR}-asan"; extra=() ;;
    tsan) dir="${BUILD_DIR}-tsan"; extra=(--no-suite fallback-launchers) ;;
    *) echo "DROVER_TEST_SANITIZERS: unknown sanitizer '$san' (asan-ubsan, tsan, none)" >&2; exit 2 ;;
    esac
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$DROVER_ROOT" --wrap-mode=nodownload -Dsanitizer="$san" ${DROVER_MESON_ARGS:-}
    fi
    run_suite "$dir" "${extra[@]}" "$@"
done

if [ "${DROVER_TEST_FUZZ:-1}" != 0 ]; then
    # libFuzzer, ASan and UBSan on each parser: the seed corpus once, then a short bounded run.
    set +e
    "$DROVER_ROOT/tools/dev/fuzz.sh" "${DROVER_TEST_FUZZ_SECONDS:-20}" 2>&1 | tee "$BUILD_DIR/fuzz-output.txt"
    rc=${PIPESTATUS[0]}
    set -e
    read -r targets failed < <(awk '/^fuzz: [0-9]+ targets, [0-9]+ failed$/ { print $2, $4 }' "$BUILD_DIR/fuzz-output.txt")
    targets=${targets:-0}
    failed=${failed:-0}
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi # the build or the setup failed
    echo "test (fuzz): $((targets - failed < 0 ? 0 : targets - failed)) passed, $failed failed"
    passed_total=$((passed_total + (targets - failed < 0 ? 0 : targets - failed)))
    failed_total=$((failed_total + failed))
    if [ "$rc" -ne 0 ]; then rc_total=$rc; fi
fi

if [ "$skipped_total" -gt 0 ]; then
    echo "test: $passed_total passed, $failed_total failed, $skipped_total skipped"
else
    echo "test: $passed_total passed, $failed_total failed"
fi
exit "$rc_total"
