#!/usr/bin/env python3
"""Check the deployment examples of docs/deploy.md, statically and against a drover binary.

Every fenced block of the document whose info string carries `title=NAME` is extracted:
drover.service (systemd unit), Dockerfile, pod.yaml (Kubernetes), drover.nomad (Nomad job, HCL),
drover.toml (the configuration they all run) and, when present, prometheus.yml. Then:

- drover.toml: TOML syntax; the longest dependency chain of stop graces fits in shutdown_grace;
  `drover up --check -f FILE` accepts it.
- the unit: Type=notify, NotifyAccess=main, ExecReload by SIGHUP, WatchdogSec, KillMode=mixed,
  Restart=on-failure, Delegate=yes, no ProtectControlGroups, TimeoutStopSec covering
  shutdown_grace; `systemd-analyze verify` on a copy whose ExecStart runs the given drover with
  the extracted drover.toml (skipped, with the reason, when systemd-analyze is missing or fails
  for want of a running systemd; a problem it reports in the unit fails the check).
- the Dockerfile: exec-form ENTRYPOINT running `drover up`, STOPSIGNAL, the config copied to
  the -f path, a non-loopback --http with a token file, shutdown_grace within docker stop's 10 s.
- pod.yaml (python3-yaml): apiVersion/kind, port 9090, liveness on /livez and readiness on
  /readyz at 9090, terminationGracePeriodSeconds covering shutdown_grace, the token file from a
  Secret volume.
- drover.nomad: parsed by the small HCL parser below (blocks, attributes, strings, numbers,
  lists, objects; no heredocs; unbalanced braces and bad syntax are errors, and the parser
  proves that on known-bad input first); http checks on /livez and /readyz, port 9090,
  kill_timeout covering shutdown_grace.
- prometheus.yml: a scrape job on /metrics with a bearer token file.
- PID 1: drover.toml run with the image's entrypoint (paths and the port made local) under
  `unshare --pid --fork --mount-proc`, with a NOTIFY_SOCKET and WATCHDOG_USEC of its own: drover
  must be the namespace's PID 1, send READY=1 and WATCHDOG=1, answer /livez, /readyz and
  /metrics (token) when it has --http, reload on SIGHUP (RELOADING=1, READY=1), and on SIGTERM
  send STOPPING=1, stop dependents first, exit 0 within 10 s and leave no process in the
  namespace. Skipped, with the reason, when no pid namespace can be made (EPERM).

Usage: check_deploy.py --doc docs/deploy.md --drover build/tools/drover/drover
Prints one line per check (ok / skip / FAIL), then "deploy: OK" (exit 0) or
"deploy: FAIL: <what>" (exit 1); "SKIP: <reason>" with exit 77 only when nothing could be checked.
"""

import argparse
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

try:
    import yaml  # Debian: python3-yaml
except ImportError:  # pragma: no cover - reported as a skip
    yaml = None

SKIP = 77
PORT = 9090
MARGIN_S = 2.0  # a manager's stop timeout must exceed shutdown_grace by this much
DOCKER_STOP_TIMEOUT_S = 10.0
PID1_STOP_LIMIT_S = 10.0

EXPECTED = {  # title -> info-string language
    "drover.toml": "toml",
    "drover.service": "ini",
    "Dockerfile": "dockerfile",
    "pod.yaml": "yaml",
    "drover.nomad": "hcl",
}
OPTIONAL = {"prometheus.yml": "yaml"}
STOP_SIGNALS = {"SIGTERM", "TERM", "15", "SIGINT", "INT", "2", "SIGQUIT", "QUIT", "3"}


# ---- reporting ----------------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.failures = []
        self.checked = 0
        self.skips = []

    def ok(self, what):
        self.checked += 1
        print(f"ok: {what}", flush=True)

    def fail(self, what):
        self.checked += 1
        self.failures.append(what)
        print(f"FAIL: {what}", flush=True)

    def skip(self, what):
        self.skips.append(what)
        print(f"skip: {what}", flush=True)

    def note(self, what):
        print(f"note: {what}", flush=True)

    def expect(self, cond, what, why=""):
        if cond:
            self.ok(what)
        else:
            self.fail(what + (f" ({why})" if why else ""))
        return cond


# ---- the document -------------------------------------------------------------------------------

FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<lang>[^\s`]*)(?P<rest>[^`]*)$")
TITLE = re.compile(r"(?:^|\s)title=(?P<title>\S+)")


@dataclass
class Snippet:
    lang: str
    title: str
    text: str
    line: int


def extract_blocks(doc_text):
    """Every fenced block with title=NAME in its info string, in order."""
    out = []
    lines = doc_text.split("\n")
    i = 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence = m.group("fence")
        close = re.compile("^" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
        start = i
        body = []
        i += 1
        while i < len(lines) and not close.match(lines[i]):
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ValueError(f"line {start + 1}: a code block is never closed")
        i += 1
        t = TITLE.search(m.group("rest"))
        if t:
            out.append(Snippet(m.group("lang"), t.group("title"), "\n".join(body) + "\n", start + 1))
    return out


# ---- durations ----------------------------------------------------------------------------------

DROVER_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def drover_duration(s):
    """A drover.toml duration ("10s", "1.5", "250ms") in seconds; None if malformed."""
    if not isinstance(s, str):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|ms|s|m|h|d)?", s)
    if not m:
        return None
    return float(m.group(1)) * DROVER_UNITS[m.group(2) or "s"]


SYSTEMD_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0, "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
}


def systemd_timespan(s):
    """A systemd time span ("15s", "1min 30s", "90") in seconds; inf for "infinity"; None if bad."""
    s = s.strip()
    if s == "infinity":
        return float("inf")
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)", s)
    if not parts or "".join(f"{a}{b}" for a, b in parts) != re.sub(r"\s+", "", s):
        return None
    total = 0.0
    for num, unit in parts:
        if unit not in SYSTEMD_UNITS:
            return None
        total += float(num) * SYSTEMD_UNITS[unit]
    return total


GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(s):
    """A Go duration ("15s", "1m30s") in seconds; None if malformed."""
    if not isinstance(s, str) or not re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", s):
        return None
    return sum(float(n) * GO_UNITS[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", s))


# ---- drover.toml --------------------------------------------------------------------------------


@dataclass
class StopBudget:
    shutdown_grace: float
    chain: float
    chain_names: list


def dependency_edges(spec):
    """(name, condition) of a service's depends_on (array of names, or a table)."""
    d = spec.get("depends_on")
    if d is None:
        return []
    if isinstance(d, list):
        return [(n, "ready") for n in d]
    out = []
    for name, cond in d.items():
        if isinstance(cond, dict):
            cond = cond.get("condition", "ready")
        out.append((name, cond))
    return out


def stop_budget(cfg):
    """shutdown_grace, and the longest chain of stop graces a shutdown walks through: a service
    stops once nothing that depends on it runs. A dependency met by "completed" or
    "completed_successfully" has ended (and will not restart) before its dependent starts, so
    it never waits for that dependent's stop."""
    sg = drover_duration(cfg.get("drover", {}).get("shutdown_grace", "10s"))
    if sg is None:
        raise ValueError("[drover] shutdown_grace is not a duration")
    services = cfg.get("service", {})
    grace = {}
    for name, spec in services.items():
        g = drover_duration(spec.get("stop", {}).get("grace", "10s"))
        if g is None:
            raise ValueError(f"service.{name}.stop.grace is not a duration")
        grace[name] = g
    dependents = {n: [] for n in services}
    for name, spec in services.items():
        for dep, cond in dependency_edges(spec):
            if dep in dependents and cond not in ("completed", "completed_successfully"):
                dependents[dep].append(name)
    memo = {}

    def longest(n, seen):
        if n in seen:
            raise ValueError(f"a dependency cycle through '{n}'")
        if n not in memo:
            best = (0.0, [])
            for t in dependents[n]:
                c = longest(t, seen | {n})
                if c[0] > best[0]:
                    best = c
            memo[n] = (best[0] + grace[n], best[1] + [n])
        return memo[n]

    chain = (0.0, [])
    for n in services:
        c = longest(n, frozenset())
        if c[0] > chain[0]:
            chain = c
    return StopBudget(sg, chain[0], chain[1])


# ---- a small HCL parser -------------------------------------------------------------------------


class HclError(Exception):
    pass


@dataclass
class HclBlock:
    type: str
    labels: list
    attrs: dict
    blocks: list = field(default_factory=list)
    line: int = 0

    def children(self, kind):
        return [b for b in self.blocks if b.type == kind]


@dataclass
class HclRef:
    """A bare reference (var.x) or function call: kept as text."""
    text: str


PUNCT = set("{}[]=,():.")


def _hcl_string(text, i, line):
    """Reads the quoted string at text[i] == '"'. Returns (value, next index)."""
    out = []
    i += 1
    n = len(text)
    while True:
        if i >= n or text[i] == "\n":
            raise HclError(f"line {line}: unterminated string")
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= n:
                raise HclError(f"line {line}: unterminated string")
            e = text[i + 1]
            simple = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
            if e in simple:
                out.append(simple[e])
                i += 2
            elif e in "uU":
                width = 4 if e == "u" else 8
                hexd = text[i + 2:i + 2 + width]
                if not re.fullmatch(r"[0-9A-Fa-f]{%d}" % width, hexd):
                    raise HclError(f"line {line}: bad \\{e} escape in a string")
                out.append(chr(int(hexd, 16)))
                i += 2 + width
            else:
                raise HclError(f"line {line}: unknown escape \\{e} in a string")
            continue
        if text.startswith("$${", i) or text.startswith("%%{", i):
            out.append(text[i + 1:i + 3])
            i += 3
            continue
        if text.startswith("${", i) or text.startswith("%{", i):
            # A template sequence: kept as written, to its matching brace (strings inside it
            # are read as strings, so their braces do not count).
            j = i + 2
            depth = 1
            while depth:
                if j >= n or text[j] == "\n":
                    raise HclError(f"line {line}: unterminated ${{ in a string")
                if text[j] == '"':
                    _, j = _hcl_string(text, j, line)
                    continue
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            out.append(text[i:j])
            i = j
            continue
        out.append(c)
        i += 1


def hcl_tokens(text):
    toks = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r":
            i += 1
        elif c == "\n":
            toks.append(("NL", "\n", line))
            line += 1
            i += 1
        elif c == "#" or text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise HclError(f"line {line}: unterminated /* comment")
            line += text.count("\n", i, j)
            i = j + 2
        elif text.startswith("<<", i):
            raise HclError(f"line {line}: heredocs are not supported by this checker")
        elif c == '"':
            value, i = _hcl_string(text, i, line)
            toks.append(("STR", value, line))
        elif c.isdigit() or (c == "-" and i + 1 < n and text[i + 1].isdigit()):
            m = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?").match(text, i)
            s = m.group(0)
            toks.append(("NUM", float(s) if any(ch in s for ch in ".eE") else int(s), line))
            i = m.end()
        elif c.isalpha() or c == "_":
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*").match(text, i)
            toks.append(("ID", m.group(0), line))
            i = m.end()
        elif c in PUNCT:
            toks.append(("P", c, line))
            i += 1
        else:
            raise HclError(f"line {line}: unexpected character {c!r}")
    toks.append(("EOF", "", line))
    return toks


class HclParser:
    def __init__(self, text):
        self.t = hcl_tokens(text)
        self.i = 0

    def peek(self):
        return self.t[self.i]

    def take(self):
        tok = self.t[self.i]
        if tok[0] != "EOF":
            self.i += 1
        return tok

    def is_p(self, ch):
        k, v, _ = self.peek()
        return k == "P" and v == ch

    def skip_nl(self):
        while self.peek()[0] == "NL":
            self.i += 1

    @staticmethod
    def shown(tok):
        return "end of file" if tok[0] == "EOF" else ("a new line" if tok[0] == "NL" else repr(tok[1]))

    def parse(self):
        attrs, blocks = self.body(inside=False)
        return HclBlock("", [], attrs, blocks, 0)

    def body(self, inside):
        attrs, blocks = {}, []
        while True:
            self.skip_nl()
            tok = self.peek()
            k, v, line = tok
            if k == "EOF":
                if inside:
                    raise HclError(f"line {line}: end of file inside a block: a '{{' is never closed")
                return attrs, blocks
            if k == "P" and v == "}":
                if not inside:
                    raise HclError(f"line {line}: '}}' closes no block")
                self.take()
                return attrs, blocks
            if k != "ID":
                raise HclError(f"line {line}: expected an attribute or a block, got {self.shown(tok)}")
            self.take()
            if self.is_p("="):
                self.take()
                if v in attrs:
                    raise HclError(f"line {line}: attribute '{v}' set twice")
                attrs[v] = self.expr()
            else:
                labels = []
                while self.peek()[0] in ("STR", "ID"):
                    labels.append(self.take()[1])
                if not self.is_p("{"):
                    raise HclError(f"line {line}: expected '=' or '{{' after '{v}', got {self.shown(self.peek())}")
                self.take()
                battrs, bblocks = self.body(inside=True)
                blocks.append(HclBlock(v, labels, battrs, bblocks, line))
            self.end_of_item()

    def end_of_item(self):
        tok = self.peek()
        if tok[0] in ("NL", "EOF") or self.is_p("}"):
            return
        raise HclError(f"line {tok[2]}: expected a new line, got {self.shown(tok)}")

    def expr(self):
        tok = self.take()
        k, v, line = tok
        if k in ("STR", "NUM"):
            return v
        if k == "ID":
            if v in ("true", "false"):
                return v == "true"
            if v == "null":
                return None
            text = v
            while self.is_p("."):
                self.take()
                k2, v2, _ = self.take()
                if k2 not in ("ID", "NUM"):
                    raise HclError(f"line {line}: bad reference after '{text}.'")
                text += f".{v2}"
            if self.is_p("("):
                self.take()
                args = self.sequence(")")
                return HclRef(f"{text}({len(args)} args)")
            return HclRef(text)
        if k == "P" and v == "[":
            return self.sequence("]")
        if k == "P" and v == "{":
            return self.object()
        raise HclError(f"line {line}: expected a value, got {self.shown(tok)}")

    def sequence(self, close):
        items = []
        while True:
            self.skip_nl()
            if self.is_p(close):
                self.take()
                return items
            items.append(self.expr())
            self.skip_nl()
            if self.is_p(","):
                self.take()
            elif not self.is_p(close):
                tok = self.peek()
                raise HclError(f"line {tok[2]}: expected ',' or '{close}', got {self.shown(tok)}")

    def object(self):
        d = {}
        while True:
            self.skip_nl()
            tok = self.take()
            k, v, line = tok
            if k == "P" and v == "}":
                return d
            if k not in ("ID", "STR"):
                raise HclError(f"line {line}: expected an object key, got {self.shown(tok)}")
            sep = self.take()
            if sep[0] != "P" or sep[1] not in "=:":
                raise HclError(f"line {line}: expected '=' after the key '{v}', got {self.shown(sep)}")
            d[v] = self.expr()
            if self.is_p(","):
                self.take()
            elif self.peek()[0] != "NL" and not self.is_p("}"):
                tok = self.peek()
                raise HclError(f"line {tok[2]}: expected ',', a new line or '}}', got {self.shown(tok)}")


def parse_hcl(text):
    return HclParser(text).parse()


HCL_GOOD = 'job "x" {\n  a = [1, "b",\n  ]\n  m = { k = "v", n = 2.5 }\n  g "y" { one = 1 }\n  s = "${x.y} $${z}"\n}\n'
HCL_BAD = {
    "a '{' never closed": 'job "x" {\n  a = 1\n',
    "a '}' too many": 'job "x" {\n}\n}\n',
    "an attribute without a value": "a =\n",
    "an unterminated string": 'a = "open\n',
    "an unclosed list": "a = [1, 2\n",
    "two attributes on one line": 'job "x" { a = 1 b = 2 }\n',
    "an attribute set twice": "a = 1\na = 2\n",
    "a block without a brace": 'job "x"\n',
    "a stray character": "a = 1 ;\n",
}


def hcl_self_test():
    """The parser accepts HCL_GOOD and rejects every HCL_BAD. An empty string if so."""
    try:
        top = parse_hcl(HCL_GOOD)
        job = top.children("job")[0]
        if job.attrs["a"] != [1, "b"] or job.attrs["m"] != {"k": "v", "n": 2.5} or \
                job.children("g")[0].attrs != {"one": 1} or job.attrs["s"] != "${x.y} ${z}":
            return "it misread a valid file"
    except HclError as e:
        return f"it refused a valid file: {e}"
    for what, text in HCL_BAD.items():
        try:
            parse_hcl(text)
        except HclError:
            continue
        return f"it accepted {what}"
    return ""


# ---- systemd units ------------------------------------------------------------------------------


def parse_unit(text):
    """{section: [(key, value), ...]}; continuation lines joined; comments dropped."""
    sections = {}
    current = None
    pending = ""
    for raw in text.split("\n"):
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        if "=" not in line or current is None:
            raise ValueError(f"not a unit file line: {line!r}")
        k, v = line.split("=", 1)
        sections[current].append((k.strip(), v.strip()))
    return sections


def unit_value(sections, section, key):
    """The last value of key (what systemd uses for single-valued settings), or None."""
    vals = [v for k, v in sections.get(section, []) if k == key]
    return vals[-1] if vals else None


def truthy(v):
    return v is not None and v.lower() in ("1", "yes", "true", "on")


def exec_argv(value):
    """ExecStart's argv, without systemd's prefixes (-, @, :, +, !)."""
    argv = shlex.split(value)
    if argv:
        argv[0] = argv[0].lstrip("-@:+!")
    return argv


def option_value(argv, *names):
    """The value of the first option named (`--opt VALUE` or `--opt=VALUE`), or None."""
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a[len(n) + 1:]
    return None


def replace_option(argv, names, value):
    out = list(argv)
    for i, a in enumerate(out):
        for n in names:
            if a == n and i + 1 < len(out):
                out[i + 1] = value
            elif a.startswith(n + "="):
                out[i] = f"{n}={value}"
    return out


def split_address(addr):
    """("host", port) of HOST:PORT, [V6]:PORT or :PORT; None if malformed."""
    m = re.fullmatch(r"\[(?P<h6>[^\]]+)\]:(?P<p6>\d+)|(?P<h>[^:\[\]]*):(?P<p>\d+)", addr or "")
    if not m:
        return None
    if m.group("h6") is not None:
        return m.group("h6"), int(m.group("p6"))
    return m.group("h"), int(m.group("p"))


def is_loopback(host):
    return host in ("localhost", "::1") or host.startswith("127.")


def check_drover_argv(rep, where, argv, want_public):
    """drover up with -f, and --http on port 9090: public (needs a token file) or loopback."""
    ok = rep.expect(len(argv) >= 2 and os.path.basename(argv[0]) == "drover" and argv[1] == "up",
                    f"{where}: runs `drover up`", f"argv is {argv}")
    cfg = option_value(argv, "-f", "--file")
    rep.expect(cfg is not None, f"{where}: names its configuration with -f")
    addr = option_value(argv, "--http")
    hp = split_address(addr)
    if not rep.expect(hp is not None and hp[1] == PORT, f"{where}: --http on port {PORT}", f"--http {addr!r}"):
        return cfg, None
    token = option_value(argv, "--http-token-file")
    public = not is_loopback(hp[0])
    if want_public:
        rep.expect(public, f"{where}: --http listens beyond loopback ({addr})",
                   "the probes and other hosts cannot reach a loopback address")
    if public:
        rep.expect(token is not None, f"{where}: a non-loopback --http comes with --http-token-file")
    return (cfg if ok else None), token


def check_unit(rep, text, budget, drover, toml_path, tmp):
    try:
        u = parse_unit(text)
    except ValueError as e:
        rep.fail(f"drover.service: {e}")
        return
    svc = "Service"
    rep.expect(unit_value(u, svc, "Type") == "notify", "drover.service: Type=notify")
    rep.expect(unit_value(u, svc, "NotifyAccess") == "main", "drover.service: NotifyAccess=main")
    start = unit_value(u, svc, "ExecStart")
    argv = exec_argv(start or "")
    check_drover_argv(rep, "drover.service ExecStart", argv, want_public=False)
    reload_ = unit_value(u, svc, "ExecReload") or ""
    rep.expect("kill" in reload_ and "-HUP" in reload_ and "$MAINPID" in reload_,
               "drover.service: ExecReload sends SIGHUP to $MAINPID", f"ExecReload={reload_!r}")
    wd = systemd_timespan(unit_value(u, svc, "WatchdogSec") or "0")
    rep.expect(wd is not None and wd > 0, "drover.service: WatchdogSec is set")
    stop = unit_value(u, svc, "TimeoutStopSec") or unit_value(u, svc, "TimeoutSec")
    stop_s = systemd_timespan(stop) if stop else 90.0  # systemd's DefaultTimeoutStopSec
    need = budget.shutdown_grace + MARGIN_S
    rep.expect(stop_s is not None and stop_s >= need,
               f"drover.service: TimeoutStopSec ({stop or 'default 90s'}) >= "
               f"shutdown_grace + {MARGIN_S:g}s ({need:g}s)")
    rep.expect(unit_value(u, svc, "KillMode") == "mixed", "drover.service: KillMode=mixed")
    rep.expect(unit_value(u, svc, "Restart") == "on-failure", "drover.service: Restart=on-failure")
    rep.expect(truthy(unit_value(u, svc, "Delegate")), "drover.service: Delegate=yes")
    rep.expect(not truthy(unit_value(u, svc, "ProtectControlGroups")),
               "drover.service: no ProtectControlGroups (it would make /sys/fs/cgroup read-only)")
    if unit_value(u, svc, "ProtectSystem") == "strict":
        rep.expect(unit_value(u, svc, "RuntimeDirectory") is not None,
                   "drover.service: ProtectSystem=strict comes with RuntimeDirectory= (the control socket in /run)")
    verify_unit(rep, text, argv, drover, toml_path, tmp)


ENVIRONMENT_TROUBLE = re.compile(
    r"not been booted with systemd|Failed to connect to bus|Failed to (initialize|set up|setup) manager|"
    r"Failed to create bus connection|Failed to allocate manager|/run/systemd|Failed to create /user|"
    r"Cannot determine cgroup|Failed to determine whether we are running in a container", re.IGNORECASE)


def verify_unit(rep, text, argv, drover, toml_path, tmp):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        rep.skip("drover.service: systemd-analyze verify: systemd-analyze is not installed")
        return
    stand_in = drover if drover and os.access(drover, os.X_OK) else "/bin/true"
    if stand_in == "/bin/true":
        rep.note("no drover binary: systemd-analyze verify runs with /bin/true as ExecStart's program")
    new_argv = [os.path.abspath(stand_in)] + replace_option(argv[1:], ("-f", "--file"), str(toml_path))
    lines = []
    for line in text.split("\n"):
        if line.strip().startswith("ExecStart="):
            line = "ExecStart=" + " ".join(shlex.quote(a) for a in new_argv)
        lines.append(line)
    d = tmp / "unit"
    d.mkdir(exist_ok=True)
    unit = d / "drover.service"
    unit.write_text("\n".join(lines))

    def run(path):
        r = subprocess.run([exe, "verify", "--man=no", str(path)], cwd=d, capture_output=True, text=True,
                           timeout=120)
        out = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
        mine = [ln for ln in out if path.name in ln or str(path) in ln]
        return r.returncode, out, mine

    rc, out, mine = run(unit)
    if mine:
        rep.fail("drover.service: systemd-analyze verify: " + " | ".join(mine))
        return
    if rc != 0:
        if out and all(ENVIRONMENT_TROUBLE.search(ln) for ln in out):
            rep.skip("drover.service: systemd-analyze verify cannot run here (no systemd as PID 1?): "
                     + " | ".join(out))
        else:
            rep.fail(f"drover.service: systemd-analyze verify exited {rc}: " + " | ".join(out))
        return
    # Does it catch a broken unit here? If not, its silence above proves nothing.
    bad = d / "broken.service"
    broken = "\n".join(lines).replace("[Service]", "[Service]\nType=notifyy\nKillMod=mixed", 1)
    bad.write_text(broken)
    _, _, bad_mine = run(bad)
    if not bad_mine:
        rep.skip("drover.service: systemd-analyze verify reports nothing even for a broken unit here; not counted")
        return
    rep.ok("drover.service: systemd-analyze verify (ExecStart -> " + " ".join(new_argv) + ")")


# ---- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions(text):
    """[(INSTRUCTION, args, line)] with continuation lines joined and comments dropped."""
    out = []
    cur, start = "", 0
    for n, raw in enumerate(text.split("\n"), 1):
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if not cur:
            start = n
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        parts = cur.split(None, 1)
        out.append((parts[0].upper(), parts[1] if len(parts) > 1 else "", start))
        cur = ""
    if cur:
        raise ValueError(f"line {start}: the last instruction ends with a continuation")
    return out


def check_dockerfile(rep, text, budget):
    """The final stage's ENTRYPOINT argv (or None)."""
    try:
        ins = dockerfile_instructions(text)
    except ValueError as e:
        rep.fail(f"Dockerfile: {e}")
        return None
    stages = []
    for i in ins:
        if i[0] == "FROM":
            stages.append([])
        elif not stages:
            if i[0] != "ARG":
                rep.fail(f"Dockerfile: line {i[2]}: {i[0]} before FROM")
                return None
            continue
        if stages:
            stages[-1].append(i)
    if not rep.expect(bool(stages), "Dockerfile: has a FROM"):
        return None
    final = stages[-1]
    ep = [i for i in final if i[0] == "ENTRYPOINT"]
    argv = None
    if ep:
        try:
            argv = json.loads(ep[-1][1])
        except json.JSONDecodeError:
            argv = None
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            argv = None
    if not rep.expect(argv is not None, "Dockerfile: ENTRYPOINT in exec form (a JSON array)",
                      "the shell form runs drover through /bin/sh -c: whether docker stop's signal "
                      "reaches it depends on the shell"):
        return None
    cfg, _ = check_drover_argv(rep, "Dockerfile ENTRYPOINT", argv, want_public=True)
    sig = [i for i in final if i[0] == "STOPSIGNAL"]
    rep.expect(bool(sig) and sig[-1][1].strip().upper() in STOP_SIGNALS,
               "Dockerfile: STOPSIGNAL is one drover stops on (TERM, INT, QUIT)",
               f"STOPSIGNAL {sig[-1][1] if sig else 'missing'}")
    if cfg:
        copied = False
        for kind, args, _ in final:
            if kind not in ("COPY", "ADD"):
                continue
            words = [w for w in args.split() if not w.startswith("--")]
            if len(words) >= 2:
                dest = words[-1]
                if dest == cfg or (dest.endswith("/") and dest + os.path.basename(words[0]) == cfg):
                    copied = True
        rep.expect(copied, f"Dockerfile: the configuration is copied to {cfg}")
    need = budget.shutdown_grace + MARGIN_S
    rep.expect(need <= DOCKER_STOP_TIMEOUT_S,
               f"Dockerfile: shutdown_grace + {MARGIN_S:g}s ({need:g}s) fits in docker stop's "
               f"default {DOCKER_STOP_TIMEOUT_S:g}s")
    return argv


# ---- Kubernetes ---------------------------------------------------------------------------------


def check_pod(rep, text, budget, entrypoint):
    if yaml is None:
        rep.skip("pod.yaml: python3-yaml is not installed (apt-get install python3-yaml)")
        return
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        rep.fail(f"pod.yaml: not valid YAML: {e}")
        return
    spec = None
    for d in docs:
        if not isinstance(d, dict):
            continue
        if d.get("kind") == "Pod" and d.get("apiVersion") == "v1":
            spec = d.get("spec")
        elif d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet") and d.get("apiVersion") == "apps/v1":
            spec = (((d.get("spec") or {}).get("template") or {}).get("spec"))
        if spec is not None:
            break
    if not rep.expect(isinstance(spec, dict), "pod.yaml: a v1 Pod (or an apps/v1 workload) with a pod spec"):
        return
    containers = spec.get("containers") or []

    def ports_of(c):
        return {p.get("name"): p.get("containerPort") for p in (c.get("ports") or []) if isinstance(p, dict)}

    c = next((c for c in containers if PORT in ports_of(c).values()), None)
    if not rep.expect(c is not None, f"pod.yaml: a container exposes containerPort {PORT}"):
        return
    names = {n for n, p in ports_of(c).items() if p == PORT and n}

    def probe(kind, path):
        hg = ((c.get(kind) or {}).get("httpGet") or {})
        port = hg.get("port")
        rep.expect(hg.get("path") == path and (port == PORT or port in names),
                   f"pod.yaml: {kind} httpGet {path} on port {PORT}",
                   f"httpGet is {hg or 'missing'}")

    probe("livenessProbe", "/livez")
    probe("readinessProbe", "/readyz")
    tg = spec.get("terminationGracePeriodSeconds", 30)
    need = budget.shutdown_grace + MARGIN_S
    rep.expect(isinstance(tg, int) and tg >= need,
               f"pod.yaml: terminationGracePeriodSeconds ({tg}) >= shutdown_grace + {MARGIN_S:g}s ({need:g}s)")
    # The command the container runs: the image's ENTRYPOINT unless the pod replaces it.
    argv = (c.get("command") or entrypoint or []) + (c.get("args") or [])
    addr = split_address(option_value(argv, "--http") or "")
    rep.expect(addr is not None and not is_loopback(addr[0]),
               "pod.yaml: drover listens beyond loopback (the kubelet probes from the node)",
               f"--http is {option_value(argv, '--http')!r}")
    token = option_value(argv, "--http-token-file")
    if not rep.expect(token is not None, "pod.yaml: drover is given --http-token-file"):
        return
    secret_volumes = {v.get("name") for v in (spec.get("volumes") or []) if isinstance(v, dict) and "secret" in v}
    found = False
    for m in c.get("volumeMounts") or []:
        if m.get("name") not in secret_volumes:
            continue
        mp = m.get("mountPath", "")
        if (m.get("subPath") and mp == token) or (not m.get("subPath") and token.startswith(mp.rstrip("/") + "/")):
            found = True
    rep.expect(found, f"pod.yaml: the token file {token} is mounted from a Secret volume")


# ---- Nomad --------------------------------------------------------------------------------------


def check_nomad(rep, text, budget, entrypoint):
    problem = hcl_self_test()
    if not rep.expect(not problem, "HCL parser self-test (valid file read, bad syntax refused)", problem):
        return
    try:
        top = parse_hcl(text)
    except HclError as e:
        rep.fail(f"drover.nomad: {e}")
        return
    rep.ok("drover.nomad: parses as HCL")
    jobs = top.children("job")
    if not rep.expect(len(jobs) == 1 and len(jobs[0].labels) == 1, "drover.nomad: one job block with a name"):
        return
    groups = jobs[0].children("group")
    if not rep.expect(bool(groups), "drover.nomad: the job has a group"):
        return
    for g in groups:
        ports = {}
        for net in g.children("network"):
            for p in net.children("port"):
                if p.labels:
                    ports[p.labels[0]] = {p.attrs.get("static"), p.attrs.get("to")}
        tasks = g.children("task")
        services = g.children("service") + [s for t in tasks for s in t.children("service")]
        checks = [(s, ch) for s in services for ch in s.children("check")]

        def has_check(path):
            for s, ch in checks:
                port = ch.attrs.get("port", s.attrs.get("port"))
                if ch.attrs.get("type") == "http" and ch.attrs.get("path") == path and PORT in ports.get(port, set()):
                    return True
            return False

        rep.expect(has_check("/livez"), f"drover.nomad: group {g.labels}: an http check on /livez at port {PORT}")
        rep.expect(has_check("/readyz"), f"drover.nomad: group {g.labels}: an http check on /readyz at port {PORT}")
        for t in tasks:
            name = f"drover.nomad: task {t.labels}"
            driver = t.attrs.get("driver")
            rep.expect(driver in ("docker", "raw_exec", "exec"), f"{name}: driver docker, raw_exec or exec",
                       f"driver {driver!r}")
            kt = t.attrs.get("kill_timeout", "5s")
            kt_s = go_duration(kt)
            need = budget.shutdown_grace + MARGIN_S
            rep.expect(kt_s is not None and kt_s >= need,
                       f"{name}: kill_timeout ({kt}) >= shutdown_grace + {MARGIN_S:g}s ({need:g}s)")
            ks = t.attrs.get("kill_signal")
            if ks is not None:
                rep.expect(str(ks).upper() in STOP_SIGNALS, f"{name}: kill_signal {ks} is one drover stops on")
            cfg = (t.children("config") or [HclBlock("config", [], {})])[0].attrs
            if driver == "docker":
                argv = cfg.get("entrypoint") or entrypoint
            else:
                argv = [cfg.get("command", "")] + list(cfg.get("args") or [])
            if not isinstance(argv, list) or not argv:
                rep.fail(f"{name}: no drover command line (config.entrypoint, or the image's ENTRYPOINT)")
                continue
            _, token = check_drover_argv(rep, name, argv, want_public=True)
            if token:
                dests = [tp.attrs.get("destination", "") for tp in t.children("template")]
                rep.expect(any(os.path.basename(d) == os.path.basename(token) for d in dests),
                           f"{name}: a template renders the token file {token}")


# ---- Prometheus ---------------------------------------------------------------------------------


def check_prometheus(rep, text):
    if yaml is None:
        rep.skip("prometheus.yml: python3-yaml is not installed")
        return
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        rep.fail(f"prometheus.yml: not valid YAML: {e}")
        return
    jobs = (cfg or {}).get("scrape_configs") or []
    good = False
    for j in jobs:
        auth = j.get("authorization") or {}
        has_token = bool(auth.get("credentials_file")) and auth.get("type", "Bearer") == "Bearer" or \
            bool(j.get("bearer_token_file"))
        targets = [t for sc in (j.get("static_configs") or []) for t in (sc.get("targets") or [])]
        if j.get("metrics_path", "/metrics") == "/metrics" and has_token and \
                any(str(t).endswith(f":{PORT}") for t in targets):
            good = True
    rep.expect(good, f"prometheus.yml: a scrape job on /metrics at port {PORT} with a bearer token file")


# ---- the drover binary --------------------------------------------------------------------------


def drover_help(drover):
    r = subprocess.run([drover, "up", "--help"], capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def validate_toml(rep, drover, toml_path, help_text):
    if re.search(r"--check\b", help_text):
        cmd = [drover, "up", "--check", "-f", str(toml_path)]
    else:
        r = subprocess.run([drover, "ctl", "--help"], capture_output=True, text=True, timeout=30)
        if re.search(r"\bcheck\b", r.stdout + r.stderr):
            cmd = [drover, "ctl", "check", "-f", str(toml_path)]
        else:
            rep.skip("drover.toml: this drover has neither `up --check` nor `ctl check`")
            return
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    rep.expect(r.returncode == 0, f"drover.toml: `{' '.join(cmd[1:3])}` accepts it",
               f"exit {r.returncode}: {(r.stderr or r.stdout).strip()}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, token=None, timeout=3.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    except OSError as e:
        return None, str(e)
    finally:
        conn.close()


def children_of(pid):
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def nspid(pid):
    """The pids of `pid` in each of its pid namespaces, outermost first."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def processes_in(ns):
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "ns" / "pid") == ns:
                    out.append(int(p.name))
            except OSError:
                pass
    return out


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, pred, timeout, start=0):
        """The first message from index `start` on that satisfies pred, reading more until the
        time is up (then None)."""
        deadline = time.monotonic() + timeout
        for m in self.messages[start:]:
            if pred(m):
                return m
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                m = self.sock.recv(65536).decode("utf-8", "replace")
            except socket.timeout:
                break
            self.messages.append(m)
            if pred(m):
                return m
        return None

    def close(self):
        self.sock.close()


STOP_NOTE = re.compile(r"^\s*(?P<name>\S+)\s+\| drover: (?P<what>stopping|stopped)\b")


def stop_order_problems(log_text, cfg):
    """Pairs (dependent, dependency) whose stop did not go dependents first; None when the log
    shows no stop notes at all."""
    first_stopping, last_stopped = {}, {}
    for n, line in enumerate(log_text.splitlines()):
        m = STOP_NOTE.match(line)
        if not m:
            continue
        if m.group("what") == "stopping":
            first_stopping.setdefault(m.group("name"), n)
        else:
            last_stopped[m.group("name")] = n
    if not first_stopping:
        return None
    bad = []
    for name, spec in cfg.get("service", {}).items():
        for dep, cond in dependency_edges(spec):
            if cond in ("completed", "completed_successfully"):
                continue
            if name in last_stopped and dep in first_stopping and last_stopped[name] > first_stopping[dep]:
                bad.append(f"{dep} began to stop before {name}, which depends on it, had stopped")
    return bad


def pid1_check(rep, drover, toml_text, cfg, entrypoint, has_http, tmp):
    if shutil.which("unshare") is None:
        rep.skip("PID 1: unshare is not installed")
        return
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        rep.skip(f"PID 1: cannot make a pid namespace here: {probe.stderr.strip() or probe.returncode}")
        return
    work = tmp / "pid1"
    work.mkdir()
    toml_path = work / "drover.toml"
    toml_path.write_text(toml_text)
    token = "deploy-check-token-0123456789abcdef"
    token_path = work / "drover-token"
    token_path.write_text(token + "\n")
    token_path.chmod(0o600)
    sock = work / "drover.sock"
    http_port = free_port()
    if has_http and entrypoint:
        argv = [drover] + entrypoint[1:]
        argv = replace_option(argv, ("-f", "--file"), str(toml_path))
        argv = replace_option(argv, ("--http",), f"127.0.0.1:{http_port}")
        argv = replace_option(argv, ("--http-token-file",), str(token_path))
        rep.note("PID 1: the image's ENTRYPOINT with local paths and --http 127.0.0.1:" + str(http_port))
    else:
        argv = [drover, "up", "-f", str(toml_path)]
        if not has_http:
            rep.note("PID 1: this drover has no --http: run without --http and --http-token-file")
        has_http = False
    argv += ["--socket", str(sock)]
    notify = NotifyListener(work / "notify.sock")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOTIFY_", "WATCHDOG_", "LISTEN_", "DROVER_")) and k != "XDG_RUNTIME_DIR"}
    env.update({"WEB_ROOT": str(work / "www"), "WEB_PORT": str(free_port()),
                "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    log_path = work / "drover.log"
    proc = None
    dpid = None
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc"] + argv, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

        def log_tail():
            lines = log_path.read_text(errors="replace").splitlines()
            return " | ".join(lines[-12:])

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and dpid is None and proc.poll() is None:
            kids = children_of(proc.pid)
            if kids and len(nspid(kids[0])) >= 2:
                dpid = kids[0]
            else:
                time.sleep(0.05)
        if dpid is None:
            rep.fail(f"PID 1: drover did not start under unshare (exit {proc.poll()}): {log_tail()}")
            return
        rep.expect(nspid(dpid)[-1] == 1, "PID 1: drover is PID 1 of its pid namespace", f"NSpid {nspid(dpid)}")
        ns = os.readlink(f"/proc/{dpid}/ns/pid")

        ready = notify.wait_for(lambda m: "READY=1" in m.split("\n"), 30)
        if not rep.expect(ready is not None, "PID 1: READY=1 on NOTIFY_SOCKET once every service is up",
                          f"messages {notify.messages}; log: {log_tail()}"):
            return
        if has_http:
            status, body = None, ""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status, body = http_get(http_port, "/readyz")
                if status == 200:
                    break
                time.sleep(0.2)
            rep.expect(status == 200, "PID 1: /readyz answers 200 without a token", f"{status}: {body[:200]}")
            status, body = http_get(http_port, "/livez")
            rep.expect(status == 200, "PID 1: /livez answers 200 without a token", f"{status}: {body[:200]}")
            status, _ = http_get(http_port, "/metrics")
            rep.expect(status == 401, "PID 1: /metrics without the token is refused (401)", f"got {status}")
            status, body = http_get(http_port, "/metrics", token)
            rep.expect(status == 200 and "drover_service_state" in body,
                       "PID 1: /metrics with the token serves drover_service_state", f"{status}: {body[:200]}")
        else:
            states, all_up = {}, False
            deadline = time.monotonic() + 10
            while not all_up and time.monotonic() < deadline:
                r = subprocess.run([drover, "ctl", "--socket", str(sock), "status", "--json"],
                                   capture_output=True, text=True, timeout=10)
                try:
                    states = {s["name"]: s for s in json.loads(r.stdout)["services"]}
                except (ValueError, KeyError, TypeError):
                    states = {}
                all_up = bool(states) and all(
                    s.get("state") in ("ready", "running") or
                    (s.get("state") == "exited" and s.get("last_exit_code") in (0, None)) for s in states.values())
                if not all_up:
                    time.sleep(0.2)
            rep.expect(all_up and set(states) == set(cfg.get("service", {})),
                       "PID 1: `drover ctl status` lists every service up",
                       f"{ {n: s.get('state') for n, s in states.items()} }")
        inside = processes_in(ns)
        rep.expect(len(inside) > 1, f"PID 1: the services run inside the namespace ({len(inside)} processes)")
        wd = notify.wait_for(lambda m: "WATCHDOG=1" in m.split("\n"), 3)
        rep.expect(wd is not None, "PID 1: WATCHDOG=1 at half of WATCHDOG_USEC")

        n = len(notify.messages)
        os.kill(dpid, signal.SIGHUP)
        reloading = notify.wait_for(lambda m: "RELOADING=1" in m.split("\n"), 10, start=n)
        again = None
        if reloading is not None:
            after = notify.messages.index(reloading, n) + 1
            again = notify.wait_for(lambda m: "READY=1" in m.split("\n"), 20, start=after)
        rep.expect(reloading is not None and again is not None,
                   "PID 1: SIGHUP reloads: RELOADING=1, then READY=1", f"messages {notify.messages[-6:]}")

        t0 = time.monotonic()
        os.kill(dpid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=PID1_STOP_LIMIT_S)
        except subprocess.TimeoutExpired:
            rep.fail(f"PID 1: drover did not exit within {PID1_STOP_LIMIT_S:g}s of SIGTERM: {log_tail()}")
            return
        took = time.monotonic() - t0
        rep.expect(rc == 0, f"PID 1: SIGTERM: drover exited 0 after {took:.2f}s (limit {PID1_STOP_LIMIT_S:g}s)",
                   f"exit {rc}: {log_tail()}")
        rep.expect(notify.wait_for(lambda m: "STOPPING=1" in m.split("\n"), 1, start=n) is not None,
                   "PID 1: STOPPING=1 when the stop began")
        left = processes_in(ns)
        deadline = time.monotonic() + 2
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = processes_in(ns)
        rep.expect(not left, "PID 1: no process left in the namespace", f"left: {left}")
        problems = stop_order_problems(log_path.read_text(errors="replace"), cfg)
        if problems is None:
            rep.note("PID 1: the output shows no 'stopping' notes; the stop order was not checked")
        else:
            rep.expect(not problems, "PID 1: services stopped dependents first", "; ".join(problems))
    finally:
        notify.close()
        if proc is not None and proc.poll() is None:
            # Only what this check started: drover (PID 1 of its namespace: the kernel takes the
            # rest with it) and unshare's process group.
            if dpid is not None:
                try:
                    os.kill(dpid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


# ---- main ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--doc", required=True, type=Path, help="docs/deploy.md")
    ap.add_argument("--drover", required=True, help="the drover binary")
    args = ap.parse_args()
    rep = Report()
    try:
        blocks = extract_blocks(args.doc.read_text())
    except (OSError, ValueError) as e:
        print(f"deploy: FAIL: {args.doc}: {e}")
        return 1
    by_title = {}
    for b in blocks:
        if b.title in by_title:
            rep.fail(f"{args.doc}:{b.line}: a second block titled {b.title}")
        by_title[b.title] = b
    for title, lang in {**EXPECTED, **OPTIONAL}.items():
        b = by_title.get(title)
        if b is None:
            if title in EXPECTED:
                rep.fail(f"{args.doc}: no block titled {title}")
            continue
        rep.expect(b.lang == lang, f"{title} (line {b.line}): info string {lang}", f"it says {b.lang!r}")
    if "drover.toml" not in by_title:
        print("deploy: FAIL: " + "; ".join(rep.failures))
        return 1

    drover = os.path.abspath(args.drover)
    have_drover = os.path.isfile(drover) and os.access(drover, os.X_OK)
    if not have_drover:
        rep.fail(f"no drover binary at {drover}")
    tmp = Path(tempfile.mkdtemp(prefix="drover-deploy-"))
    try:
        toml_text = by_title["drover.toml"].text
        toml_path = tmp / "drover.toml"
        toml_path.write_text(toml_text)
        try:
            cfg = tomllib.loads(toml_text)
            budget = stop_budget(cfg)
        except (tomllib.TOMLDecodeError, ValueError) as e:
            rep.fail(f"drover.toml: {e}")
            print("deploy: FAIL: " + "; ".join(rep.failures))
            return 1
        rep.ok(f"drover.toml: TOML; shutdown_grace {budget.shutdown_grace:g}s, longest stop chain "
               f"{budget.chain:g}s ({' -> '.join(reversed(budget.chain_names))})")
        rep.expect(budget.chain <= budget.shutdown_grace,
                   "drover.toml: the longest chain of stop graces fits in shutdown_grace",
                   "services on it would be killed at the shutdown deadline before their grace ends")
        help_text = ""
        if have_drover:
            help_text = drover_help(drover)
            validate_toml(rep, drover, toml_path, help_text)
        has_http = bool(re.search(r"--http(?![-\w])", help_text))
        if have_drover and not has_http:
            rep.note("this drover has no --http option yet: the HTTP checks of the PID 1 run are left out")

        if "drover.service" in by_title:
            check_unit(rep, by_title["drover.service"].text, budget, drover if have_drover else None, toml_path, tmp)
        entrypoint = None
        if "Dockerfile" in by_title:
            entrypoint = check_dockerfile(rep, by_title["Dockerfile"].text, budget)
        if "pod.yaml" in by_title:
            check_pod(rep, by_title["pod.yaml"].text, budget, entrypoint)
        if "drover.nomad" in by_title:
            check_nomad(rep, by_title["drover.nomad"].text, budget, entrypoint)
        if "prometheus.yml" in by_title:
            check_prometheus(rep, by_title["prometheus.yml"].text)
        if have_drover:
            pid1_check(rep, drover, toml_text, cfg, entrypoint, has_http, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if rep.failures:
        print("deploy: FAIL: " + "; ".join(rep.failures))
        return 1
    if rep.checked == 0:
        print("SKIP: " + ("; ".join(rep.skips) or "nothing could be checked"))
        return SKIP
    if rep.skips:
        print(f"skipped: {len(rep.skips)}: " + "; ".join(rep.skips))
    print("deploy: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
