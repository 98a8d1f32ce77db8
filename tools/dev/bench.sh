#!/usr/bin/env bash
# Install the peers drover-bench compares against (Debian packages), build, and run it:
#   ./tools/dev/bench.sh --quick            # under 5 minutes (supervise-peers: about 2)
#   ./tools/dev/bench.sh --json bench.json  # the full run, every sample kept
#   ./tools/dev/bench.sh --quick --plot docs/perf   # and a PNG per benchmark
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# The peers, from Debian's packages (python3: asyncio; nodejs: child_process; golang-go:
# os/exec; tini: the PID-1 shim drover run is compared with; supervisor, runit, s6: the
# supervisors drover up is compared with in supervise-peers; process-compose is not packaged),
# and gnuplot for --plot.
peers=(python3 nodejs golang-go tini supervisor runit s6 gnuplot-nox)
missing=()
for p in "${peers[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "bench.sh: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
ninja -C "$BUILD_DIR" tools/drover-bench/drover-bench tools/drover-bench/drover-bench-tiny \
    tools/drover-bench/drover-bench-svc tools/drover/drover >/dev/null
exec "$BUILD_DIR/tools/drover-bench/drover-bench" "$@"
