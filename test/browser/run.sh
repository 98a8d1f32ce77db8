#!/usr/bin/env bash
# The dashboard's browser test: starts `drover up --http` on a free loopback port with three
# services run by drover-test-child, drives the page in a headless Chromium (dashboard.mjs) and
# stops drover again. Usage: run.sh DROVER_BIN TEST_CHILD_BIN OUT_DIR
# Needs /usr/bin/chromium (Debian's chromium), node and npm; exits 77 (skipped) without them.
# playwright-core is installed once into ${DROVER_NODE_CACHE:-$HOME/.cache/drover-test/node}.
# OUT_DIR receives dashboard.png (and drover.log, and dashboard-fail.png on a failure).
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 DROVER_BIN TEST_CHILD_BIN OUT_DIR" >&2
    exit 2
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3

skip() {
    echo "SKIP: $*"
    exit 77
}
[ -x /usr/bin/chromium ] || skip "/usr/bin/chromium is missing (Debian package chromium)"
command -v node >/dev/null 2>&1 || skip "node is missing (Debian package nodejs)"
command -v npm >/dev/null 2>&1 || skip "npm is missing (Debian package npm)"
[ -x "$PY" ] || skip "$PY is missing (Debian package python3)"

for bin in "$1" "$2"; do
    if [ ! -x "$bin" ]; then
        echo "browser: FAIL: $bin is not an executable" >&2
        exit 1
    fi
done
DROVER=$(realpath "$1")
CHILD=$(realpath "$2")
mkdir -p "$3"
OUT=$(realpath "$3")

# playwright-core 1.62 and later need Node 20; Debian 12's nodejs is 18, which 1.61 still takes.
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
CACHE=${DROVER_NODE_CACHE:-$HOME/.cache/drover-test/node}
PLAYWRIGHT=playwright-core@1
if [ "$NODE_MAJOR" -lt 18 ]; then
    skip "node $(node --version) is too old (18 or newer)"
elif [ "$NODE_MAJOR" -lt 20 ]; then
    PLAYWRIGHT=playwright-core@1.61
    CACHE=$CACHE/node$NODE_MAJOR
fi
if [ ! -f "$CACHE/node_modules/playwright-core/package.json" ]; then
    mkdir -p "$CACHE"
    if ! npm_log=$(npm install --no-audit --no-fund --prefix "$CACHE" "$PLAYWRIGHT" 2>&1); then
        reason=$(printf '%s\n' "$npm_log" | grep -v '^npm error  *at ' | grep -m 1 -E 'Error|error code|ERR' || true)
        skip "npm install $PLAYWRIGHT failed: ${reason:-$(printf '%s\n' "$npm_log" | tail -n 1)}"
    fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/drover-browser.XXXXXX")
DROVER_PID=""
cleanup() {
    local status=$?
    if [ -n "$DROVER_PID" ] && kill -0 "$DROVER_PID" 2>/dev/null; then
        kill -TERM "$DROVER_PID" 2>/dev/null || true
        for _ in $(seq 150); do # 15 s: shutdown_grace below is 5 s
            kill -0 "$DROVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$DROVER_PID" 2>/dev/null || true
    fi
    [ -z "$DROVER_PID" ] || wait "$DROVER_PID" 2>/dev/null || true
    [ ! -f "$TMP/drover.log" ] || cp "$TMP/drover.log" "$OUT/drover.log" 2>/dev/null || true
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The configuration. JSON strings are TOML basic strings, so json.dumps quotes the child's path.
"$PY" - "$CHILD" >"$TMP/drover.toml" <<'PYEOF'
import json, sys
child = json.dumps(sys.argv[1])
def argv(*ops):
    return "[" + ", ".join([child] + [json.dumps(op) for op in ops]) + "]"
print('[drover]\nshutdown_grace = "5s"\n')
print("[service.ticker]\ncommand = " + argv("count", "0", "200") + "\n")
print("[service.web]\ncommand = " + argv("write-line", "booting", "write-line-stderr", "warming up",
      "sleep", "300", "write-line", "listening on 8080", "sleep", "1000000000"))
print('ready = { log = "listening on" }\n')
print("[service.sleeper]\ncommand = " + argv("sleep", "1000000000"))
PYEOF

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$DROVER" up -f "$TMP/drover.toml" --http "127.0.0.1:$PORT" --socket "$TMP/ctl.sock" >"$TMP/drover.log" 2>&1 &
DROVER_PID=$!

# Wait (20 s at most) until /readyz says every service is ready, or drover died.
if ! "$PY" - "$PORT" "$DROVER_PID" <<'PYEOF'; then
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 20
last = "no answer"
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("drover exited")
    try:
        with direct.open(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except urllib.error.HTTPError as e:
        last = f"{e.code} {e.read()[:300].decode(errors='replace')}"
    except OSError as e:
        last = str(e)
    time.sleep(0.1)
sys.exit(f"/readyz did not answer 200 within 20 s (last: {last})")
PYEOF
    echo "browser: FAIL: drover up --http did not get ready; its output:"
    tail -n 30 "$TMP/drover.log" | sed 's/^/  /'
    exit 1
fi

status=0
NODE_PATH="$CACHE/node_modules" node "$HERE/dashboard.mjs" "http://127.0.0.1:$PORT/" "$OUT" \
    ticker,web,sleeper web || status=$?
if ! kill -0 "$DROVER_PID" 2>/dev/null; then
    drover_status=0
    wait "$DROVER_PID" || drover_status=$?
    DROVER_PID=""
    echo "browser: FAIL: drover died during the test (exit status $drover_status)"
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "drover's output (last 30 lines):"
    tail -n 30 "$TMP/drover.log" | sed 's/^/  /'
fi
exit "$status"
