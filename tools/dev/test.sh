#!/usr/bin/env bash
# Build drover and run the whole test suite; ends with one summary line:
#   "test: N passed, M failed"
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ninja -C "$BUILD_DIR"
set +e
meson test -C "$BUILD_DIR" --print-errorlogs --verbose "$@" 2>&1 | tee "$BUILD_DIR/test-output.txt"
rc=${PIPESTATUS[0]}
set -e
# Sum doctest's per-suite summaries: "[doctest] test cases: 12 | 12 passed | 0 failed | 0 skipped"
read -r passed failed < <(awk -F'|' '/\[doctest\] test cases:/ {
    for (i = 1; i <= NF; i++) { if ($i ~ /passed/) p += $i + 0; if ($i ~ /failed/) f += $i + 0 } }
    END { print p + 0, f + 0 }' "$BUILD_DIR/test-output.txt")
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi # a suite crashed or timed out
echo "test: $passed passed, $failed failed"
exit "$rc"
