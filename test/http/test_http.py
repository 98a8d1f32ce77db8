#!/usr/bin/python3
"""Black-box test of `drover up --http`: drover's HTTP API (routes, server-sent events, /readyz,
/metrics, the bearer token, the Host and Origin checks, the bounds, a slow client), spoken to with
a real HTTP client over TCP.

    /usr/bin/python3 test/http/test_http.py --drover PATH --child PATH_TO_drover-test-child

Prints "ok: NAME" or "FAIL: NAME: why" per case; exits 0 when every case passed, 1 when one failed,
77 ("SKIP: reason") only when drover cannot run at all. Each group of cases runs its own drover up
in a temporary directory, on a free port, and stops it (SIGTERM, then SIGKILL) whatever happens.

Timeouts are multiplied by a scale: 5 for an AddressSanitizer build, 10 for ThreadSanitizer (seen
in the binary), or --scale / DROVER_TEST_SCALE.

Needs Python's standard library and python3-prometheus-client (its text-format parser).
"""

import argparse
import http.client
import json
import os
import queue
import re
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # reported as a failure of the /metrics cases, not a skip
    text_string_to_metric_families = None

STATES = ["stopped", "starting", "running", "ready", "stopping", "exited", "backoff", "failed"]
STATUS_KEYS = ["name", "state", "reason", "pid", "since", "uptime_ms", "restarts", "last_exit",
               "last_exit_code", "last_exit_signal", "ready", "health", "notify_status", "cpu_ms",
               "rss_bytes"]
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
ESC_LINE = "\x1b[31mred\x1b[0m"          # what the `esc` service prints (a colour escape)
ESC_LINE_ESCAPED = "\\x1B[31mred\\x1B[0m"  # drover's escaping of it (escape.hpp: ESC is \x1B)

SCALE = 1.0
CHILD = ""
TOP = ""  # the temporary directory of this run: every drover up and service runs under it


def note(text):
    """Detail for a reader of a verbose run (DROVER_TEST_VERBOSE=1), on stderr."""
    if os.environ.get("DROVER_TEST_VERBOSE"):
        print(f"  note: {text}", file=sys.stderr, flush=True)


def T(seconds):
    """A timeout, scaled for slow (sanitizer) builds."""
    return seconds * SCALE


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def wait_until(pred, timeout, what, interval=0.05):
    """Polls pred() until it returns something true; returns that value or fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        last = pred()  # a Failure in it (a wrong answer) ends the wait at once
        if last:
            return last
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def q(s):
    """TOML basic string."""
    return json.dumps(s)


def child_cmd(*ops):
    return "[" + ", ".join(q(str(x)) for x in (CHILD,) + ops) + "]"


# ---------------------------------------------------------------------------------------------
# HTTP


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value (the last one)
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower(), "")

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise Failure(f"body is not JSON: {self.body[:200]!r}")

    def __repr__(self):
        return f"HTTP {self.status} {self.header('content-type')!r} {self.body[:300]!r}"


def expect_json(resp, status):
    check(resp.status == status, f"expected {status}, got {resp!r}")
    check(resp.header("content-type").startswith("application/json"),
          f"Content-Type of a JSON answer is {resp.header('content-type')!r}")
    return resp.json()


def expect_error(resp, status, code=None):
    """Every error is JSON {"error":{"code","message"}}."""
    if isinstance(status, int):
        status = (status,)
    check(resp.status in status, f"expected {'/'.join(map(str, status))}, got {resp!r}")
    check(resp.header("content-type").startswith("application/json"),
          f"error with Content-Type {resp.header('content-type')!r}: {resp!r}")
    body = resp.json()
    check(isinstance(body, dict) and isinstance(body.get("error"), dict),
          f"error body is not {{\"error\":{{...}}}}: {body!r}")
    err = body["error"]
    check(isinstance(err.get("code"), str) and err["code"],
          f"error has no string code: {body!r}")
    check(isinstance(err.get("message"), str) and err["message"],
          f"error has no string message: {body!r}")
    if code is not None:
        check(err["code"] == code, f"error code {err['code']!r}, expected {code!r}: {body!r}")
    return err


def http_request(port, method, path, body=None, headers=None, timeout=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout or T(10))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def check_status_object(st, name=None):
    check(isinstance(st, dict), f"status is not an object: {st!r}")
    missing = [k for k in STATUS_KEYS if k not in st]
    check(not missing, f"status lacks {missing}: {st!r}")
    where = f"status of {st.get('name')!r}"

    def typed(key, types, nullable=False):
        v = st[key]
        types = types if isinstance(types, tuple) else (types,)
        if v is None:
            check(nullable, f"{where}: {key} is null")
            return
        check(isinstance(v, types) and (bool in types or not isinstance(v, bool)),
              f"{where}: {key} = {v!r} has the wrong type")

    typed("name", str)
    if name is not None:
        check(st["name"] == name, f"status name {st['name']!r}, expected {name!r}")
    typed("state", str)
    check(st["state"] in STATES, f"{where}: unknown state {st['state']!r}")
    typed("reason", str)
    typed("pid", int, True)
    typed("since", str)
    check(RFC3339.match(st["since"]), f"{where}: since {st['since']!r} is not RFC 3339")
    typed("uptime_ms", (int, float), True)
    typed("restarts", int)
    typed("last_exit", (str, dict), True)
    typed("last_exit_code", int, True)
    typed("last_exit_signal", (int, str), True)
    typed("ready", bool)
    typed("health", str)
    check(st["health"] in ("unknown", "healthy", "unhealthy"), f"{where}: health {st['health']!r}")
    typed("notify_status", str, True)
    typed("cpu_ms", (int, float), True)
    typed("rss_bytes", int, True)


class Stream:
    """A GET on a raw TCP socket whose body is read as server-sent events by a thread."""

    def __init__(self, port, path, headers=None, rcvbuf=None, host=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(T(10))
        self.sock.connect(("127.0.0.1", port))
        lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}",
                 "Accept: text/event-stream"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        self.deadline = None
        self.status = None
        self.headers = {}
        self.events = queue.Queue()
        self.seen = []
        self.first_field = None
        self.retry = None
        self.ended = False
        self.error = None
        self.thread = None
        self._text = ""
        self._event = None
        self._data = []

    # -- reading

    def _recv(self):
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Failure("the answer took too long to read (a stream where an answer was expected?)")
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _readline(self):
        while b"\r\n" not in self.buf:
            self._recv()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _readexact(self, n):
        while len(self.buf) < n:
            self._recv()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def read_head(self, timeout=None):
        """Reads the status line and headers; returns the status."""
        self.sock.settimeout(timeout or T(10))
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        return self.status

    def header(self, name):
        return self.headers.get(name.lower(), "")

    def chunked(self):
        return "chunked" in self.header("transfer-encoding").lower()

    def read_body(self, timeout=None):
        """The whole body of a non-stream answer (an error)."""
        self.sock.settimeout(timeout or T(10))
        self.deadline = time.monotonic() + (timeout or T(10))
        if self.chunked():
            out = b""
            while True:
                size = int(self._readline().split(b";")[0], 16)
                if size == 0:
                    break
                out += self._readexact(size)
                self._readexact(2)
            return out
        if "content-length" in self.headers:
            return self._readexact(int(self.header("content-length")))
        try:
            while True:
                self._recv()
        except (EOFError, OSError, Failure):
            pass
        return self.buf

    def response(self):
        """Status, headers and body as a Resp (for an answer that is not a stream)."""
        if self.status is None:
            self.read_head()
        return Resp(self.status, dict(self.headers), self.read_body())

    def start(self):
        """Reads the event stream in a thread (after read_head)."""
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            if self.chunked():
                while True:
                    size = int(self._readline().split(b";")[0], 16)
                    if size == 0:
                        break
                    self._feed(self._readexact(size))
                    self._readexact(2)
            else:
                if self.buf:
                    data, self.buf = self.buf, b""
                    self._feed(data)
                while True:
                    d = self.sock.recv(65536)
                    if not d:
                        break
                    self._feed(d)
        except EOFError:
            pass
        except Exception as e:  # reset, or a shutdown by close()
            self.error = e
        finally:
            self.ended = True
            self.events.put(None)

    def _feed(self, data):
        self._text += data.decode("utf-8", "replace")
        while True:
            i = self._text.find("\n")
            if i < 0:
                return
            line, self._text = self._text[:i], self._text[i + 1:]
            if line.endswith("\r"):
                line = line[:-1]
            self._line(line)

    def _line(self, line):
        if line == "":
            if self._event is not None or self._data:
                data = "\n".join(self._data)
                ev = {"event": self._event or "message", "data": data, "json": None}
                try:
                    ev["json"] = json.loads(data)
                except ValueError:
                    pass
                self.events.put(ev)
            self._event, self._data = None, []
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if self.first_field is None:
            self.first_field = field
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "retry":
            self.retry = value

    def next(self, timeout):
        """The next event, or None at the end of the stream; raises queue.Empty on a timeout."""
        ev = self.events.get(timeout=timeout)
        if ev is not None:
            self.seen.append(ev)
        return ev

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"no {what} on the stream within {timeout:.1f}s "
                              f"(last events: {summarize(self.seen[-6:])})")
            try:
                ev = self.next(left)
            except queue.Empty:
                continue
            if ev is None:
                raise Failure(f"stream ended ({self.error!r}) before {what} "
                              f"(last events: {summarize(self.seen[-6:])})")
            if pred(ev):
                return ev

    def collect(self, duration):
        """Every event for `duration` seconds (stops early at the end of the stream)."""
        out = []
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                ev = self.next(left)
            except queue.Empty:
                return out
            if ev is None:
                return out
            out.append(ev)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.thread:
            self.thread.join(5)


def summarize(events):
    return [f"{e['event']}:{e['data'][:120]}" for e in events]


def open_stream(d, path, **kw):
    """A stream that must answer 200 text/event-stream; reading started."""
    s = Stream(d.port, path, headers=d.auth_headers(), **kw)
    try:
        s.read_head()
        if s.status != 200:
            r = Resp(s.status, dict(s.headers), s.read_body())
            raise Failure(f"GET {path}: {r!r}")
        check(s.header("content-type").startswith("text/event-stream"),
              f"GET {path}: Content-Type {s.header('content-type')!r}, expected text/event-stream")
        s.start()
        return s
    except BaseException:
        s.close()
        raise


# ---------------------------------------------------------------------------------------------
# drover up


class Drover:
    def __init__(self, drover, tmp, config, http_addr=None, token=None, extra=()):
        self.drover = drover
        self.tmp = tmp
        self.config = os.path.join(tmp, "drover.toml")
        with open(self.config, "w") as f:
            f.write(config)
        self.token = token
        self.extra = list(extra)
        self.http_addr = http_addr
        self.port = None
        self.proc = None
        self.log_path = os.path.join(tmp, "drover.log")
        self.log = None
        self.exit_note = None

    def start(self):
        for _attempt in range(3):
            self.port = free_port()
            args = [self.drover, "up", "-f", self.config, "--socket", os.path.join(self.tmp, "ctl.sock"),
                    "--http", self.http_addr or f"127.0.0.1:{self.port}"]
            if self.token is not None:
                tf = os.path.join(self.tmp, "token")
                with open(tf, "w") as f:
                    f.write(self.token + "\n")  # as `echo TOKEN > FILE` writes it
                os.chmod(tf, 0o600)
                args += ["--http-token-file", tf]
            args += self.extra
            self.log = open(self.log_path, "ab")
            env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
            env["NO_COLOR"] = "1"
            self.proc = subprocess.Popen(args, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT, env=env)
            deadline = time.monotonic() + T(15)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    r = http_request(self.port, "GET", "/livez", timeout=T(2))
                    if r.status == 200:
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            rc = self.proc.poll()
            log = self.log_tail()
            if rc is not None and "in use" in log and _attempt < 2:  # another process took the port
                self.log.close()
                continue
            self.stop()
            raise Failure(f"drover up did not answer /livez on 127.0.0.1:{self.port} "
                          f"(exit {rc}); its output: {log[-1500:]!r}")

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        """SIGTERM, wait, SIGKILL; returns a note when it did not end well, else None."""
        note = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(T(15))
            except subprocess.TimeoutExpired:
                note = "drover up did not end within %.0fs of SIGTERM (killed)" % T(15)
                self.proc.kill()
                self.proc.wait()
        if self.proc and note is None and self.proc.returncode not in (0, None):
            note = f"drover up exited {self.proc.returncode} after SIGTERM"
        if self.log:
            self.log.close()
            self.log = None
        return note

    def auth_headers(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def req(self, method, path, body=None, headers=None, auth=True, timeout=None):
        h = dict(self.auth_headers() if auth else {})
        h.update(headers or {})
        return http_request(self.port, method, path, body=body, headers=h, timeout=timeout)

    def get_json(self, path, status=200):
        return expect_json(self.req("GET", path), status)

    def post_ok(self, path, timeout=None):
        r = self.req("POST", path, timeout=timeout)
        body = expect_json(r, 200)
        check(body == {"ok": True}, f"POST {path}: body {body!r}, expected {{\"ok\":true}}")

    def status(self, name):
        st = self.get_json(f"/api/v1/services/{name}")
        check_status_object(st, name)
        return st

    def services(self):
        body = self.get_json("/api/v1/services")
        check(isinstance(body, dict) and isinstance(body.get("services"), list),
              f"/api/v1/services: {body!r}")
        for st in body["services"]:
            check_status_object(st)
        return {st["name"]: st for st in body["services"]}

    def wait_pid(self, name, what="a pid"):
        return wait_until(lambda: self.status(name)["pid"], T(10), f"{name} to have {what}")

    def wait_new_pid(self, name, old):
        def new():
            st = self.status(name)
            return st if st["pid"] is not None and st["pid"] != old else None
        return wait_until(new, T(15), f"{name} to run again with a pid other than {old}")


def main_config():
    return f"""
[drover]
shutdown_grace = "5s"

[service.web]
command = {child_cmd("sleep", 600000)}
stop = {{ grace = "2s" }}

[service.talker]
command = {child_cmd("count", 0, 200)}
stop = {{ grace = "2s" }}

[service.esc]
command = {child_cmd("print-pid", "write-line", ESC_LINE, "write-hostile", "sleep", 600000)}
stop = {{ grace = "2s" }}
"""


MAIN_SERVICES = {"web", "talker", "esc"}


# ---------------------------------------------------------------------------------------------
# 1. every endpoint


def t_livez(d):
    body = expect_json(d.req("GET", "/livez"), 200)
    check(body.get("ok") is True, f"/livez body {body!r}")


def t_services(d):
    for prefix in ("/api/v1", "/v1"):
        body = d.get_json(f"{prefix}/services")
        check(isinstance(body, dict) and isinstance(body.get("services"), list),
              f"{prefix}/services body {body!r}")
        names = set()
        for st in body["services"]:
            check_status_object(st)
            names.add(st["name"])
        check(names == MAIN_SERVICES, f"{prefix}/services names {sorted(names)}")


def t_service_one(d):
    for prefix in ("/api/v1", "/v1"):
        st = d.get_json(f"{prefix}/services/web")
        check_status_object(st, "web")
        err = expect_error(d.req("GET", f"{prefix}/services/wbe"), 404, "unknown_service")
        check("did you mean" in err["message"] and "web" in err["message"],
              f"{prefix}/services/wbe: message without a suggestion: {err['message']!r}")
        expect_error(d.req("GET", f"{prefix}/services/zzzzzzzz"), 404, "unknown_service")


def t_operations(d):
    for prefix in ("/api/v1", "/v1"):
        d.post_ok(f"{prefix}/services/talker/stop")
        st = d.status("talker")
        check(st["state"] == "stopped" and st["pid"] is None, f"after stop: {st!r}")
        d.post_ok(f"{prefix}/services/talker/start")
        st = d.status("talker")
        check(st["state"] in ("running", "ready") and st["pid"], f"after start: {st!r}")
        old = d.status("web")
        d.post_ok(f"{prefix}/services/web/restart")
        st = d.wait_new_pid("web", old["pid"])
        check(st["restarts"] == old["restarts"] + 1,
              f"restarts {old['restarts']} -> {st['restarts']} after one restart")
    expect_error(d.req("POST", "/api/v1/services/nosuch/restart"), 404, "unknown_service")


def t_method_not_allowed(d):
    for method, path, allow in (("GET", "/api/v1/services/web/restart", "POST"),
                                ("GET", "/api/v1/services/web/stop", "POST"),
                                ("GET", "/v1/services/web/start", "POST"),
                                ("POST", "/api/v1/services", "GET"),
                                ("DELETE", "/api/v1/services/web", "GET")):
        r = d.req(method, path)
        expect_error(r, 405)
        check(allow in r.header("allow"), f"{method} {path}: Allow {r.header('allow')!r}, expected {allow}")


def t_not_found(d):
    for path in ("/nope", "/api/v1/nope", "/api/v2/services", "/api/v1/services/web/frobnicate"):
        expect_error(d.req("GET", path), 404)


def t_logs(d):
    def five():
        r = d.req("GET", "/api/v1/services/talker/logs?n=5")
        check(r.status == 200, f"logs: {r!r}")
        check(r.header("content-type").startswith("text/plain"), f"logs Content-Type {r.header('content-type')!r}")
        lines = r.text().splitlines()
        check(len(lines) <= 5, f"logs?n=5 gave {len(lines)} lines")
        return lines if len(lines) == 5 else None
    lines = wait_until(five, T(10), "5 lines of talker in logs?n=5")
    for line in lines:
        check(re.fullmatch(r"count \d+ \d+", line), f"talker line {line!r}")
    # The ESC line comes back escaped in the text form too.
    r = d.req("GET", "/api/v1/services/esc/logs?n=100")
    check(r.status == 200, f"esc logs: {r!r}")
    check(ESC_LINE_ESCAPED in r.text(), f"esc logs lack {ESC_LINE_ESCAPED!r}: {r.text()[:300]!r}")
    check("\x1b" not in r.text(), "esc logs hold a raw ESC byte")
    expect_error(d.req("GET", "/api/v1/services/talker/logs?n=abc"), 400)
    expect_error(d.req("GET", "/api/v1/services/nosuch/logs?n=5"), 404, "unknown_service")


def t_static(d):
    r = d.req("GET", "/", auth=False)
    check(r.status == 200 and r.header("content-type").startswith("text/html"), f"GET /: {r!r}")
    r = d.req("GET", "/dashboard.js", auth=False)
    check(r.status == 200 and "javascript" in r.header("content-type"), f"GET /dashboard.js: {r!r}")
    r = d.req("GET", "/dashboard.css", auth=False)
    check(r.status == 200 and r.header("content-type").startswith("text/css"), f"GET /dashboard.css: {r!r}")


def t_reload(d):
    old = d.services()
    d.post_ok("/api/v1/reload")  # the file did not change: nothing restarts
    new = d.services()
    for name in MAIN_SERVICES:
        check(new[name]["pid"] == old[name]["pid"], f"reload of an unchanged file restarted {name}")
    expect_error(d.req("GET", "/api/v1/reload"), 405)


def t_shutdown(d):
    r = d.req("POST", "/api/v1/shutdown")
    check(r.status == 202, f"POST /api/v1/shutdown: {r!r}")
    try:
        rc = d.proc.wait(T(15))
    except subprocess.TimeoutExpired:
        raise Failure(f"drover up still runs {T(15):.0f}s after POST /api/v1/shutdown")
    check(rc == 0, f"drover up exited {rc} after POST /api/v1/shutdown")


# ---------------------------------------------------------------------------------------------
# 2. server-sent events


def t_sse_snapshot_restart(d):
    s = open_stream(d, "/api/v1/events")
    try:
        ev = s.wait_for(lambda e: True, T(10), "a first event")
        check(s.first_field == "retry" and s.retry == "2000",
              f"stream does not begin with 'retry: 2000' (first field {s.first_field!r}, retry {s.retry!r})")
        check(ev["event"] == "snapshot", f"first event is {ev['event']!r}, expected snapshot")
        snap = ev["json"]
        check(isinstance(snap, dict) and isinstance(snap.get("services"), list), f"snapshot data {ev['data'][:200]!r}")
        for st in snap["services"]:
            check_status_object(st)
        by_name = {st["name"]: st for st in snap["services"]}
        check(set(by_name) == MAIN_SERVICES, f"snapshot services {sorted(by_name)}")
        old = by_name["web"]
        check(old["pid"], f"web has no pid in the snapshot: {old!r}")
        d.post_ok("/api/v1/services/web/restart")
        st_ev = s.wait_for(lambda e: e["event"] == "state" and isinstance(e["json"], dict)
                           and e["json"].get("service") == "web", T(10), "a state event of web")
        j = st_ev["json"]
        for k in ("type", "service", "time", "state", "text"):
            check(k in j, f"state event lacks {k}: {j!r}")
        check(j["type"] == "state" and j["state"] in STATES, f"state event {j!r}")
        s.wait_for(lambda e: e["event"] == "status" and isinstance(e["json"], dict)
                   and e["json"].get("name") == "web"
                   and e["json"].get("restarts") == old["restarts"] + 1
                   and e["json"].get("pid") not in (None, old["pid"]),
                   T(15), f"a status event of web with restarts {old['restarts'] + 1} and a new pid")
        # The stream carries output by default: talker prints 5 lines a second.
        out = s.wait_for(lambda e: e["event"] == "output" and isinstance(e["json"], dict)
                         and e["json"].get("service") == "talker", T(10), "an output event of talker")
        for k in ("type", "service", "time", "stream", "text", "escaped"):
            check(k in out["json"], f"output event lacks {k}: {out['json']!r}")
        check(out["json"]["stream"] == "stdout", f"output event {out['json']!r}")
        check(re.fullmatch(r"count \d+ \d+", out["json"]["text"]), f"output event {out['json']!r}")
        for e in s.seen:
            check(e["json"] is not None, f"event {e['event']!r} with data that is not JSON: {e['data'][:200]!r}")
    finally:
        s.close()


def t_sse_no_output(d):
    s = open_stream(d, "/api/v1/events?output=0")
    try:
        first = s.wait_for(lambda e: True, T(10), "a first event")
        check(first["event"] == "snapshot", f"first event {first['event']!r}")
        old = d.status("talker")
        d.post_ok("/api/v1/services/talker/restart")
        s.wait_for(lambda e: e["event"] == "state" and e["json"].get("service") == "talker",
                   T(10), "a state event of talker")
        s.collect(1.5)  # talker prints 7 lines meanwhile
        outs = [e for e in s.seen if e["event"] == "output"]
        check(not outs, f"?output=0 stream has {len(outs)} output events: {summarize(outs[:3])}")
        # ... while the service did print.
        st = d.status("talker")
        check(st["pid"] != old["pid"], "talker was not restarted")
        r = d.req("GET", "/api/v1/services/talker/logs?n=3")
        check(r.status == 200 and r.text().strip(), f"talker printed nothing? {r!r}")
    finally:
        s.close()


def t_sse_logs_follow(d):
    s = open_stream(d, "/api/v1/services/esc/logs?follow=1")
    try:
        old = d.status("esc")
        d.post_ok("/api/v1/services/esc/restart")
        new = d.wait_new_pid("esc", old["pid"])
        pid_line = f"pid {new['pid']}"
        ev = s.wait_for(lambda e: e["event"] == "line" and isinstance(e["json"], dict)
                        and e["json"].get("text") == pid_line, T(10), f"a line event {pid_line!r}")
        for k in ("time", "stream", "text", "escaped"):
            check(k in ev["json"], f"line event lacks {k}: {ev['json']!r}")
        check(ev["json"]["stream"] == "stdout", f"line event {ev['json']!r}")
        ev = s.wait_for(lambda e: e["event"] == "line", T(10), "the ESC line after the pid line")
        j = ev["json"]
        check(j.get("escaped") == ESC_LINE_ESCAPED,
              f"ESC line: escaped {j.get('escaped')!r}, expected {ESC_LINE_ESCAPED!r}")
        check(j.get("text") == ESC_LINE, f"ESC line: text {j.get('text')!r}, expected {ESC_LINE!r}")
        ev = s.wait_for(lambda e: e["event"] == "line", T(10), "the hostile line after the ESC line")
        esc = ev["json"].get("escaped", "")
        bad = [c for c in esc if ord(c) < 0x20 or ord(c) == 0x7f or 0x80 <= ord(c) <= 0x9f
               or 0x202a <= ord(c) <= 0x202e or 0x2066 <= ord(c) <= 0x2069 or ord(c) in (0x200e, 0x200f, 0x61c)]
        check(esc and not bad, f"hostile line's escaped form holds controls {bad!r}: {esc!r}")
    finally:
        s.close()
    expect_error(d.req("GET", "/api/v1/services/nosuch/logs?follow=1"), 404, "unknown_service")


# ---------------------------------------------------------------------------------------------
# 3. /readyz


def readyz_config():
    return f"""
[drover]
shutdown_grace = "5s"

[service.db]
command = {child_cmd("sleep", int(1500 * SCALE), "write-line", "db is ready", "sleep", 600000)}
ready = {{ log = "db is ready" }}
stop = {{ grace = "2s" }}

[service.web]
command = {child_cmd("sleep", 600000)}
depends_on = {{ db = "ready" }}
stop = {{ grace = "2s" }}

[service.init]
command = {child_cmd("exit", 0)}
restart = "no"

[service.bo]
command = {child_cmd("sleep", 600000)}
backoff = {{ initial = "60s", max = "60s", jitter = 0.1 }}
stop = {{ grace = "2s" }}

[service.once]
command = {child_cmd("sleep", 600000)}
restart = "no"
stop = {{ grace = "2s" }}
"""


def readyz(d):
    r = d.req("GET", "/readyz", auth=False)
    if r.status == 200:
        body = expect_json(r, 200)
        check(body.get("ready") is True, f"/readyz 200 body {body!r}")
        check(body.get("waiting") == [], f"/readyz 200 body {body!r}: expected \"waiting\":[]")
        return body
    body = expect_json(r, 503)
    check(body.get("ready") is False and isinstance(body.get("waiting"), list) and body["waiting"],
          f"/readyz 503 body {body!r}")
    for w in body["waiting"]:
        check(isinstance(w, dict) and all(isinstance(w.get(k), str) for k in ("name", "state", "reason")),
              f"/readyz waiting entry {w!r}")
    return body


def waiting(body):
    return {w["name"]: w for w in body.get("waiting", [])}


def t_readyz(d):
    body = readyz(d)
    check(body["ready"] is False, f"/readyz ready at once, before db printed its line: {body!r}")
    w = waiting(body)
    check("db" in w and "web" in w, f"/readyz waiting {sorted(w)}, expected db and web")
    check("init" not in w, f"a one-shot that exited 0 counts as not ready: {w.get('init')!r}")
    body = wait_until(lambda: readyz(d)["ready"], T(15) + 1.5 * SCALE, "/readyz to become 200")
    init = d.status("init")
    check(init["state"] == "exited", f"init: {init!r}")

    # A service stopped on request is not required.
    d.post_ok("/api/v1/services/db/stop")
    body = readyz(d)
    check(body["ready"] is True, f"/readyz after stopping db on request: {body!r}")

    # A service in backoff makes it 503.
    def bo_in_backoff():
        st = d.status("bo")
        if st["state"] == "backoff":
            return st
        if st["pid"] is not None and st["state"] in ("running", "ready"):
            try:  # the first restart may be immediate: kill it again
                os.kill(st["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        return None
    wait_until(bo_in_backoff, T(15), "bo to be in backoff after kill -9", interval=0.3)
    body = readyz(d)
    check(body["ready"] is False and waiting(body).get("bo", {}).get("state") == "backoff",
          f"/readyz with bo in backoff: {body!r}")
    d.post_ok("/api/v1/services/bo/stop")
    wait_until(lambda: readyz(d)["ready"], T(10), "/readyz 200 once bo is stopped on request")

    # A failed service makes it 503.
    st = d.status("once")
    check(st["pid"], f"once: {st!r}")
    os.kill(st["pid"], signal.SIGKILL)
    wait_until(lambda: d.status("once")["state"] == "failed", T(10), "once to be failed after kill -9")
    body = readyz(d)
    check(body["ready"] is False and waiting(body).get("once", {}).get("state") == "failed",
          f"/readyz with once failed: {body!r}")


# ---------------------------------------------------------------------------------------------
# 4. /metrics


def metrics(d, auth=True):
    r = d.req("GET", "/metrics", auth=auth)
    check(r.status == 200, f"/metrics: {r!r}")
    check(r.header("content-type").startswith("text/plain"), f"/metrics Content-Type {r.header('content-type')!r}")
    check(text_string_to_metric_families is not None, "python3-prometheus-client is not installed")
    try:
        fams = list(text_string_to_metric_families(r.text()))
    except Exception as e:
        raise Failure(f"/metrics does not parse: {e!r}; text starts {r.text()[:300]!r}")
    samples = {}
    types = {}
    for f in fams:
        for s in f.samples:
            samples.setdefault(s.name, []).append(s)
            types[s.name] = f.type
    return r, samples, types


def by_service(samples, name):
    out = {}
    for s in samples.get(name, []):
        out.setdefault(s.labels.get("service"), []).append(s)
    return out


def t_metrics(d):
    r, samples, types = metrics(d)
    check("version=0.0.4" in r.header("content-type"), f"/metrics Content-Type {r.header('content-type')!r}")
    svcs = d.services()

    state = by_service(samples, "drover_service_state")
    check(set(state) == MAIN_SERVICES, f"drover_service_state services {sorted(map(str, state))}")
    for name, ss in state.items():
        check(all(set(s.labels) == {"service", "state"} for s in ss), f"drover_service_state labels {ss[0].labels}")
        check(sorted(s.labels["state"] for s in ss) == sorted(STATES),
              f"{name}: drover_service_state states {sorted(s.labels['state'] for s in ss)}")
        ones = [s.labels["state"] for s in ss if s.value == 1]
        check(len(ones) == 1 and all(s.value in (0, 1) for s in ss),
              f"{name}: drover_service_state is 1 for {ones}, expected exactly one")
        if svcs[name]["state"] in ("running", "ready", "stopped"):  # stable states
            check(ones[0] == svcs[name]["state"], f"{name}: metrics say {ones[0]}, API says {svcs[name]['state']}")
    check(types.get("drover_service_state") == "gauge", f"drover_service_state type {types.get('drover_service_state')}")

    def per_service(metric, typ, values=None, only=None):
        got = by_service(samples, metric)
        want = set(only if only is not None else MAIN_SERVICES)
        check(want <= set(got), f"{metric} missing for {sorted(want - set(got))}")
        check(types.get(metric) == typ, f"{metric} has type {types.get(metric)}, expected {typ}")
        for name, ss in got.items():
            for s in ss:
                check(s.value >= 0 or values is not None, f"{metric}{s.labels} = {s.value}")
                if values is not None:
                    check(s.value in values, f"{metric}{s.labels} = {s.value}, expected one of {values}")
        return got

    per_service("drover_service_restarts_total", "counter")
    per_service("drover_service_ready", "gauge", (0, 1))
    per_service("drover_service_healthy", "gauge", (-1, 0, 1))
    probes = per_service("drover_service_probes_total", "counter")
    for name, ss in probes.items():
        check(sorted(s.labels.get("result") for s in ss) == ["fail", "ok"],
              f"{name}: drover_service_probes_total results {[s.labels for s in ss]}")
    running = [n for n, st in svcs.items() if st["pid"] is not None]
    per_service("drover_service_uptime_seconds", "gauge", only=running)
    per_service("drover_service_cpu_seconds_total", "counter", only=running)
    per_service("drover_service_resident_memory_bytes", "gauge", only=running)
    for metric, typ in (("drover_services", "gauge"), ("drover_http_connections", "gauge"),
                        ("drover_http_requests_total", "counter"), ("drover_events_lost_total", "counter"),
                        ("process_cpu_seconds_total", "counter"), ("process_resident_memory_bytes", "gauge"),
                        ("process_open_fds", "gauge")):
        check(metric in samples, f"{metric} missing")
        check(types.get(metric) == typ, f"{metric} has type {types.get(metric)}, expected {typ}")
    check(samples["drover_services"][0].value == len(MAIN_SERVICES), f"drover_services = {samples['drover_services'][0].value}")
    check(samples["drover_http_connections"][0].value >= 1, "drover_http_connections < 1 during a request")
    check(samples["process_resident_memory_bytes"][0].value > 0, "process_resident_memory_bytes is 0")
    check(samples["process_open_fds"][0].value > 3, "process_open_fds <= 3")

    # restarts_total rises by one after a restart; the ended run's signal shows.
    before = by_service(samples, "drover_service_restarts_total")["web"][0].value
    old = d.status("web")
    d.post_ok("/api/v1/services/web/restart")
    d.wait_new_pid("web", old["pid"])
    _, samples, _ = metrics(d)
    after = by_service(samples, "drover_service_restarts_total")["web"][0].value
    check(after == before + 1, f"drover_service_restarts_total{{service=web}} {before} -> {after} after a restart")
    sig = by_service(samples, "drover_service_last_exit_signal").get("web")
    check(sig and sig[0].value == signal.SIGTERM, f"drover_service_last_exit_signal{{service=web}} = {sig}")
    check("web" not in by_service(samples, "drover_service_last_exit_code"),
          "drover_service_last_exit_code{service=web} present though web was killed by a signal")
    # A stopped service has no uptime.
    d.post_ok("/api/v1/services/talker/stop")
    _, samples, _ = metrics(d)
    check("talker" not in by_service(samples, "drover_service_uptime_seconds"),
          "drover_service_uptime_seconds{service=talker} present while talker is stopped")
    ones = [s.labels["state"] for s in by_service(samples, "drover_service_state")["talker"] if s.value == 1]
    check(ones == ["stopped"], f"talker stopped: drover_service_state is 1 for {ones}")


# ---------------------------------------------------------------------------------------------
# 5. the bearer token


def token_config():
    return f"""
[drover]
shutdown_grace = "5s"

[service.web]
command = {child_cmd("sleep", 600000)}
stop = {{ grace = "2s" }}
"""


def t_token(d):
    tok = d.token
    for path in ("/api/v1/services", "/v1/services", "/metrics", "/api/v1/events"):
        r = d.req("GET", path, auth=False)
        expect_error(r, 401, "unauthorized")
        check(r.header("www-authenticate").lower().startswith("bearer"),
              f"GET {path} without a token: WWW-Authenticate {r.header('www-authenticate')!r}")
    same_len = ("x" if tok[0] != "x" else "y") + tok[1:]
    for bad in (f"Bearer {same_len}", f"Bearer {tok[:-1]}", f"Bearer {tok}x", f"Bearer {tok[:8]}",
                "Bearer ", f"Basic {tok}", tok, f"bearer  {same_len}"):
        r = d.req("GET", "/api/v1/services", headers={"Authorization": bad}, auth=False)
        expect_error(r, 401, "unauthorized")
    expect_error(d.req("POST", "/api/v1/services/web/restart",
                       headers={"Authorization": f"Bearer {same_len}"}, auth=False), 401, "unauthorized")
    check(d.req("GET", "/api/v1/services").status == 200, "right token: not 200")
    check(d.req("GET", "/metrics").status == 200, "right token on /metrics: not 200")
    d.post_ok("/api/v1/services/web/restart")
    for path in ("/livez", "/readyz"):
        r = d.req("GET", path, auth=False)
        check(r.status == 200, f"GET {path} without a token: {r!r}")
    for path in ("/", "/dashboard.js", "/dashboard.css"):
        r = d.req("GET", path, auth=False)
        check(r.status == 200, f"GET {path} (static) without a token: {r!r}")
    s = open_stream(d, "/api/v1/events")  # with the token
    try:
        s.wait_for(lambda e: e["event"] == "snapshot", T(10), "a snapshot")
    finally:
        s.close()


def run_refused(drover, tmp, args, what):
    """drover up must refuse to start: returns (exit status, output)."""
    cfg = os.path.join(tmp, "drover.toml")
    with open(cfg, "w") as f:
        f.write(token_config())
    argv = [drover, "up", "-f", cfg, "--socket", os.path.join(tmp, "refused.sock")] + args
    p = subprocess.Popen(argv, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=T(10))
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        try:
            out, _ = p.communicate(timeout=T(15))
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        raise Failure(f"{what}: drover up started anyway (still running after {T(10):.0f}s): "
                      f"{out.decode('utf-8', 'replace')[-500:]!r}")
    text = out.decode("utf-8", "replace")
    note(f"{what}: exit {p.returncode}: {text.strip()[-300:]!r}")
    check(p.returncode != 0, f"{what}: drover up exited 0: {text[-500:]!r}")
    return p.returncode, text


def t_token_refusals(drover):
    with tempfile.TemporaryDirectory(prefix="refusals-", dir=TOP) as tmp:
        port = free_port()
        rc, text = run_refused(drover, tmp, ["--http", f"0.0.0.0:{port}"], "--http 0.0.0.0 without a token")
        check("--http-token-file" in text, f"--http 0.0.0.0 without a token: message does not name "
                                           f"--http-token-file (exit {rc}): {text[-500:]!r}")
        empty = os.path.join(tmp, "empty-token")
        open(empty, "w").close()
        os.chmod(empty, 0o600)
        rc, text = run_refused(drover, tmp, ["--http", f"127.0.0.1:{port}", "--http-token-file", empty],
                               "an empty token file")
        check("empty-token" in text, f"an empty token file: the message does not name it (exit {rc}): {text[-500:]!r}")
        missing = os.path.join(tmp, "missing-token")
        rc, text = run_refused(drover, tmp, ["--http", f"127.0.0.1:{port}", "--http-token-file", missing],
                               "a missing token file")
        check("missing-token" in text, f"a missing token file: the message does not name it (exit {rc}): {text[-500:]!r}")


# ---------------------------------------------------------------------------------------------
# 6. Host and Origin (no token: loopback only)


def t_host_origin(d):
    p = d.port
    for host in ("evil.example", f"evil.example:{p}", f"127.0.0.1.evil.example:{p}", f"localhost.evil.example:{p}"):
        expect_error(d.req("GET", "/api/v1/services", headers={"Host": host}), 403, "forbidden")
    for host in (f"127.0.0.1:{p}", f"localhost:{p}", f"[::1]:{p}"):
        r = d.req("GET", "/api/v1/services", headers={"Host": host})
        check(r.status == 200, f"Host {host}: {r!r}")
    expect_error(d.req("POST", "/api/v1/services/web/restart", headers={"Host": "evil.example"}), 403, "forbidden")
    for origin in ("http://evil.example", f"http://evil.example:{p}", f"http://127.0.0.1:{p + 1 if p < 65535 else p - 1}"):
        expect_error(d.req("POST", "/api/v1/services/web/restart", headers={"Origin": origin}), 403, "forbidden")
    old = d.status("web")
    r = d.req("POST", "/api/v1/services/web/restart", headers={"Origin": f"http://127.0.0.1:{p}"})
    check(r.status == 200, f"POST with Origin matching Host: {r!r}")
    d.wait_new_pid("web", old["pid"])
    check(d.status("web")["restarts"] == old["restarts"] + 1, "a refused POST restarted web anyway")


# ---------------------------------------------------------------------------------------------
# 7. bounds


def raw_exchange(port, head, body=b"", timeout=None):
    """Sends head (+ body, from a thread: the server may answer and close before reading it);
    returns a Resp, or None when the connection closed without an answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout or T(10))
    try:
        def send():
            try:
                s.sendall(head + body)
            except OSError:
                pass
        th = threading.Thread(target=send, daemon=True)
        th.start()
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return None
                buf += d
        except ConnectionResetError:
            return None
        head_b, rest = buf.split(b"\r\n\r\n", 1)
        lines = head_b.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        try:
            while len(rest) < n:
                d = s.recv(65536)
                if not d:
                    break
                rest += d
        except ConnectionResetError:
            pass
        return Resp(int(lines[0].split()[1]), headers, rest[:n])
    finally:
        s.close()


def t_big_header(d):
    head = (f"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\nX-Big: " + "a" * (100 * 1024) + "\r\n\r\n").encode()
    r = raw_exchange(d.port, head)
    note(f"100 KiB header: {r!r}")
    if r is not None:
        expect_error(r, (431, 400))
    r = d.req("GET", "/livez", timeout=T(2))
    check(r.status == 200, f"/livez after a 100 KiB header: {r!r}")
    # Many small headers adding up to more than 16 KiB.
    head = (f"GET /livez HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n"
            + "".join(f"X-H{i}: {'b' * 100}\r\n" for i in range(400)) + "\r\n").encode()
    r = raw_exchange(d.port, head)
    if r is not None:
        expect_error(r, (431, 400))
    check(d.req("GET", "/livez", timeout=T(2)).status == 200, "/livez after many headers")


def t_big_body(d):
    old = d.status("web")
    body = b"x" * (1024 * 1024)
    head = (f"POST /api/v1/services/web/restart HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    r = raw_exchange(d.port, head, body)
    if r is None:
        # Answered early and closed while the body was still coming? Then the reset may have eaten
        # the answer; the headers alone must get it.
        r = raw_exchange(d.port, head, timeout=T(5))
    check(r is not None, "a 1 MiB body: the connection closed without an answer (expected 413)")
    expect_error(r, 413, "too_large")
    # Chunked, without a length: the bound still holds.
    chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
    head = (f"POST /api/v1/services/web/restart HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    r = raw_exchange(d.port, head, chunk * 16 + b"0\r\n\r\n")
    if r is None:
        r = raw_exchange(d.port, head, chunk * 2, timeout=T(5))
    check(r is not None, "a 1 MiB chunked body: the connection closed without an answer (expected 413)")
    expect_error(r, 413, "too_large")
    st = d.status("web")
    check(st["pid"] == old["pid"], "a refused POST restarted web anyway")
    check(d.req("GET", "/livez", timeout=T(2)).status == 200, "/livez after a big body")


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def t_idle_connections(d):
    n = 1000
    check(raise_nofile(n + 200) >= n + 100, "RLIMIT_NOFILE too low for 1000 connections")
    conns = []
    try:
        deadline = time.monotonic() + T(30)
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            conns.append(s)
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                s.connect(("127.0.0.1", d.port))
            except OSError as e:
                raise Failure(f"connection {i + 1} of {n}: {e!r} (drover stopped accepting?)")
        t0 = time.monotonic()
        try:
            r = d.req("GET", "/livez", timeout=T(2))
        except OSError as e:
            raise Failure(f"/livez with {n} idle connections open: no answer within {T(2):.0f}s ({e!r})")
        took = time.monotonic() - t0
        check(r.status == 200, f"/livez with {n} idle connections open: {r!r}")
        check(took < T(2), f"/livez took {took:.2f}s with {n} idle connections open")
        _, samples, _ = metrics(d)
        c = samples["drover_http_connections"][0].value
        check(c <= 256, f"drover_http_connections = {c} with {n} connections open (bound: 256)")
        old = d.status("web")
        os.kill(old["pid"], signal.SIGKILL)
        d.wait_new_pid("web", old["pid"])
    finally:
        for s in conns:
            s.close()
    check(d.req("GET", "/livez", timeout=T(2)).status == 200, "/livez after closing the idle connections")


def t_stream_limit(d):
    streams = []
    try:
        for i in range(40):
            s = Stream(d.port, "/api/v1/events?stats_ms=0")
            streams.append(s)
            status = s.read_head()
            if i < 32:
                if status != 200:
                    raise Failure(f"event stream {i + 1}: {s.response()!r}")
                s.start()
            else:
                expect_error(s.response(), 503, "busy")
        r = d.req("GET", "/livez", timeout=T(2))
        check(r.status == 200, f"/livez with 32 event streams: {r!r}")
        r = d.req("GET", "/api/v1/services", timeout=T(2))
        check(r.status == 200, f"/api/v1/services with 32 event streams: {r!r}")
    finally:
        for s in streams:
            s.close()

    # The slots come back once the streams are closed.
    def one_more():
        s = Stream(d.port, "/api/v1/events?stats_ms=0")
        try:
            return s.read_head() == 200
        finally:
            s.close()
    wait_until(one_more, T(10), "an event stream to be admitted after the 32 were closed", interval=0.2)


# ---------------------------------------------------------------------------------------------
# 8. a slow client


def slow_config():
    return f"""
[drover]
shutdown_grace = "5s"

[service.web]
command = {child_cmd("sleep", 600000)}
stop = {{ grace = "2s" }}

[service.flood]
command = {child_cmd("flood", 1)}
stop = {{ grace = "2s" }}
"""


def t_slow_client(d):
    slow = Stream(d.port, "/api/v1/events", rcvbuf=4096)
    try:
        time.sleep(1.5)  # the flood fills the stream's buffers meanwhile
        for i in range(5):
            t0 = time.monotonic()
            r = d.req("GET", "/api/v1/services", timeout=T(5))
            took = time.monotonic() - t0
            check(r.status == 200, f"/api/v1/services beside a slow client: {r!r}")
            check(took < T(1), f"/api/v1/services took {took:.2f}s beside a slow client")
            time.sleep(0.2)
        old = d.status("web")
        t0 = time.monotonic()
        d.post_ok("/api/v1/services/web/restart", timeout=T(10))
        d.wait_new_pid("web", old["pid"])
        took = time.monotonic() - t0
        check(took < T(5), f"a restart took {took:.2f}s beside a slow client")
        d.post_ok("/api/v1/services/flood/stop")

        # Now read it: it was either closed, or it tells that events were lost.
        try:
            status = slow.read_head()
        except TimeoutError:
            raise Failure("slow stream: no answer at all to read")
        except (EOFError, OSError) as e:
            note(f"slow stream closed before its headers were read: {e!r}")
            return  # closed before even the headers were read: fine
        check(status == 200, f"slow stream: status {status}")
        slow.start()
        slow.wait_for(lambda e: e["event"] == "lost", T(20), "a lost event (nor was the stream closed)")
        ev = slow.seen[-1]
        note(f"slow stream: lost event {ev['data']} after {len(slow.seen)} events")
        check(isinstance(ev["json"], dict) and isinstance(ev["json"].get("count"), int) and ev["json"]["count"] > 0,
              f"lost event data {ev['data']!r}")
    except Failure as e:
        if slow.ended and slow.thread is not None and "stream ended" in str(e):
            note(f"slow stream closed by the server after {len(slow.seen)} events ({slow.error!r})")
            return  # the server closed the slow stream: fine
        raise
    finally:
        slow.close()


# ---------------------------------------------------------------------------------------------
# runner


def kill_leftovers():
    """Any service process still alive after its drover up ended; returns their pids (killed)."""
    left = []
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")[0].decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        # Ours only: the test child, running in one of this run's directories.
        if cmd == CHILD and cwd.startswith(TOP + "/") and not zombie:
            left.append(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return left


class Runner:
    def __init__(self, only):
        self.only = only
        self.failed = 0
        self.passed = 0

    def wanted(self, name):
        return not self.only or any(name == o or name.startswith(o + ".") for o in self.only)

    def report(self, name, error):
        if error is None:
            self.passed += 1
            print(f"ok: {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL: {name}: {error}", flush=True)

    def run_one(self, name, fn, *args):
        t0 = time.monotonic()
        try:
            fn(*args)
        except Failure as e:
            return str(e)
        except Exception as e:
            return f"{type(e).__name__}: {e} ({traceback.format_exc(limit=-2).strip().splitlines()[-3:]})"
        finally:
            if os.environ.get("DROVER_TEST_VERBOSE"):
                print(f"  ({name}: {time.monotonic() - t0:.2f}s)", file=sys.stderr)
        return None

    def group(self, drover, name, config, cases, token=None):
        cases = [(f"{name}.{n}", fn) for n, fn in cases if self.wanted(f"{name}.{n}")]
        if not cases:
            return
        with tempfile.TemporaryDirectory(prefix=name + "-", dir=TOP) as tmp:
            d = Drover(drover, tmp, config, token=token)
            try:
                try:
                    d.start()
                except Failure as e:
                    for n, _ in cases:
                        self.report(n, f"drover up did not start: {e}")
                    return
                for n, fn in cases:
                    err = self.run_one(n, fn, d)
                    if err is not None:
                        err += f" [drover output: {d.log_tail()[-600:]!r}]" if d.proc.poll() is not None else ""
                    self.report(n, err)
                    if d.proc.poll() is not None:
                        for n2, _ in cases[cases.index((n, fn)) + 1:]:
                            self.report(n2, f"drover up died (exit {d.proc.returncode}): {d.log_tail()[-600:]!r}")
                        break
            finally:
                note = d.stop()
                left = kill_leftovers()
                if note or left:
                    self.report(f"{name}.shutdown", (note or "") + (f"; service processes left behind: {left}" if left else "")
                                + f" [drover output: {d.log_tail()[-1500:]!r}]")


def sanitizer_scale(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return 1.0
    if b"__tsan_init" in data:
        return 10.0
    if b"__asan_init" in data:
        return 5.0
    return 1.0


def main():
    global SCALE, CHILD, TOP
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drover", required=True)
    ap.add_argument("--child", required=True)
    ap.add_argument("--scale", type=float, default=None, help="multiply every timeout by this")
    ap.add_argument("--only", action="append", default=[], help="run only this case or group (repeatable)")
    args = ap.parse_args()
    drover = os.path.abspath(args.drover)
    CHILD = os.path.abspath(args.child)

    for path, what in ((drover, "drover"), (CHILD, "drover-test-child")):
        if not os.access(path, os.X_OK):
            print(f"SKIP: {what} is not an executable file: {path}")
            return 77
    try:
        subprocess.run([drover, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"SKIP: drover cannot run: {e}")
        return 77

    if args.scale is not None:
        SCALE = args.scale
    elif os.environ.get("DROVER_TEST_SCALE"):
        SCALE = float(os.environ["DROVER_TEST_SCALE"])
    else:
        SCALE = sanitizer_scale(drover)
    raise_nofile(4096)

    def interrupted(signum, _frame):  # a test runner's timeout: stop every drover up on the way out
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)
    with tempfile.TemporaryDirectory(prefix="drover-http-test-") as top:
        TOP = os.path.realpath(top)
        return run_all(drover, args.only)


def run_all(drover, only):
    r = Runner(only)
    r.group(drover, "endpoints", main_config(), [
        ("livez", t_livez), ("services", t_services), ("service", t_service_one), ("logs", t_logs),
        ("operations", t_operations), ("method_not_allowed", t_method_not_allowed),
        ("not_found", t_not_found), ("static", t_static), ("reload", t_reload), ("shutdown", t_shutdown)])
    r.group(drover, "sse", main_config(), [
        ("snapshot_restart", t_sse_snapshot_restart), ("output_0", t_sse_no_output),
        ("logs_follow", t_sse_logs_follow)])
    r.group(drover, "readyz", readyz_config(), [("flips", t_readyz)])
    r.group(drover, "metrics", main_config(), [("families", t_metrics)])
    r.group(drover, "token", token_config(), [("auth", t_token)], token=secrets.token_hex(16))
    if r.wanted("token.refusals"):
        r.report("token.refusals", r.run_one("token.refusals", t_token_refusals, drover))
    r.group(drover, "host_origin", main_config(), [("checks", t_host_origin)])
    r.group(drover, "bounds", main_config(), [
        ("big_header", t_big_header), ("big_body", t_big_body), ("idle_connections", t_idle_connections),
        ("stream_limit", t_stream_limit)])
    r.group(drover, "slow_client", slow_config(), [("flood", t_slow_client)])
    left = kill_leftovers()
    if left:
        r.report("leftovers", f"service processes left behind: {left}")
    print(f"{r.passed} passed, {r.failed} failed", flush=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
