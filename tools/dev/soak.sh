#!/usr/bin/env bash
# The chaos soak of `drover up`: 50 services of several kinds under random kills, reloads (good
# and broken), parallel `drover ctl` clients, signal storms and descriptor pressure, with the
# invariants checked every second and after the shutdown (tools/dev/soak.py says which).
#   ./tools/dev/soak.sh                  # 60 s, a seed from the clock (printed)
#   ./tools/dev/soak.sh 3600 --seed 42   # an hour, replaying seed 42's choices
#   ./tools/dev/soak.sh 60 --services 200 --flood-mibps 10 -v
# Exit status: 0 no violation; 1 a violation (the seed, the evidence and the last driver events
# are printed, the run's files kept); 77 a prerequisite is missing (meson's "skipped").
# Runs as root (service cgroups are checked too) or as a normal user.
# SOAK_NO_BUILD=1 uses the build directory as it is; SOAK_DROVER / SOAK_CHILD name other binaries.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ -z "${SOAK_NO_BUILD:-}" ]; then
    ninja -C "$BUILD_DIR" tools/drover/drover test/drover-test-child >/dev/null
fi
command -v python3 >/dev/null || { echo "soak: SKIP: no python3"; exit 77; }
exec python3 "$DROVER_ROOT/tools/dev/soak.py" \
    --drover "${SOAK_DROVER:-$BUILD_DIR/tools/drover/drover}" \
    --child "${SOAK_CHILD:-$BUILD_DIR/test/drover-test-child}" "$@"
