#!/usr/bin/env python3
"""The embedding example (docs/examples/embed_server.cpp) builds and answers: its own route, and
drover's API, probes, metrics and dashboard under its /drover/ prefix, over real TCP.

    test_embed.py --server PATH_TO_embed-server --child PATH_TO_drover-test-child
Prints "ok: ..." per check; exit 0 when all pass, 1 otherwise."""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--server", required=True)
ap.add_argument("--child", required=True)
a = ap.parse_args()

failures = []


def check(name, cond, detail=""):
    print(("ok: " if cond else "FAIL: ") + name + ("" if cond else f": {detail}"), flush=True)
    if not cond:
        failures.append(name)


def get(port, path, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request(method, path, body=body, headers={"Host": f"127.0.0.1:{port}"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


# Port 0: the server prints the one it got.
proc = subprocess.Popen([a.server, "0", a.child, "sleep", "600"], stdout=subprocess.PIPE, text=True)
try:
    line = proc.stdout.readline()
    check("the server starts and says where it listens", line.startswith("listening on 127.0.0.1:"), line)
    port = int(line.strip().rsplit(":", 1)[1])

    s, _, body = get(port, "/hello")
    check("its own route answers", s == 200 and b"hello" in body, (s, body))

    deadline = time.monotonic() + 30
    while True:
        s, _, body = get(port, "/drover/api/v1/services/worker")
        st = json.loads(body)
        if st.get("state") == "running" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check("drover's API under /drover: the worker runs", s == 200 and st["state"] == "running", (s, body))
    pid = st["pid"]

    s, _, body = get(port, "/drover/livez")
    check("/drover/livez", s == 200 and json.loads(body) == {"ok": True}, (s, body))
    s, _, body = get(port, "/drover/readyz")
    check("/drover/readyz", s == 200 and json.loads(body)["ready"] is True, (s, body))
    s, h, body = get(port, "/drover/metrics")
    check("/drover/metrics", s == 200 and b'drover_service_state{service="worker",state="running"} 1' in body, (s, body[:200]))
    s, h, body = get(port, "/drover")
    check("/drover redirects to /drover/", s == 308 and h.get("Location") == "/drover/", (s, h))
    s, h, body = get(port, "/drover/")
    check("the dashboard under /drover/", s == 200 and h.get("Content-Type", "").startswith("text/html"), (s, h))

    s, _, body = get(port, "/drover/api/v1/services/worker/restart", method="POST", body="")
    check("restart through the prefix", s == 200 and json.loads(body) == {"ok": True}, (s, body))
    s, _, body = get(port, "/drover/api/v1/services/worker")
    st = json.loads(body)
    check("the worker has a new pid and one restart", st["pid"] not in (None, pid) and st["restarts"] == 1, body)

    s, _, body = get(port, "/elsewhere")
    check("the application's 404 stays its own", s == 404, (s, body))
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
check("the server stops on SIGTERM with its supervisor", rc == 0, rc)
sys.exit(1 if failures else 0)
