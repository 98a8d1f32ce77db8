#!/usr/bin/env python3
"""The chaos soak of `drover up` (run through tools/dev/soak.sh, which builds what it needs).

    soak.py --drover PATH --child PATH [SECONDS] [--seed N] [--services 50] [--keep]

Runs `drover up` with SERVICES services of several kinds (stable, crash-looping, ignoring
SIGTERM, forking grandchildren and setsid / double-fork escapees, flooding stdout, printing
hostile bytes, a numbered-line counter with a rotating log file) for SECONDS, while threads do
at random: kill -9 of main processes and of grandchildren, SIGHUP and `drover ctl reload` with
random config edits (added, removed, changed services) and broken configs, `drover ctl`
requests in parallel (status --json, restart, logs -f), signal storms at drover, and descriptor
pressure (drover's soft RLIMIT_NOFILE lowered for a few seconds). Every second it checks the
invariants (see `class Checker`); at the end it stops drover with SIGTERM and checks again.

Everything random comes from one seed, printed first; `--seed N` replays the same choices (the
timing of the machine is not replayed, so a replay is likely, not certain, to hit the same bug).
Exit status: 0 no violation, 1 a violation (the seed, the invariant, the evidence and the last
driver events are printed), 2 usage, 77 a prerequisite is missing (meson's "skipped").

Standard library only.
"""

import argparse
import collections
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# The spare leaves drover keeps for reuse (max_spares in lib/detail/cgroup.cpp).
MAX_SPARE_LEAVES = 4

SKIP = 77
CLK_TCK = os.sysconf("SC_CLK_TCK")
LIVE_STATES = {"starting", "running", "ready", "stopping"}
FOREVER = "1000000000"  # milliseconds: longer than any soak


def now():
    return time.monotonic()


def skip(why):
    print(f"soak: SKIP: {why}", flush=True)
    sys.exit(SKIP)


# ---- the configuration ------------------------------------------------------------------------


def q(s):
    """A TOML basic string (JSON's escapes are TOML's for what we write)."""
    return json.dumps(s)


class Service:
    """One [service.NAME] of the generated drover.toml."""

    def __init__(self, name, kind, argv, restart="always", grace="2s", burst=0, backoff_max="1s", log=None,
                 pinned=False):
        self.name = name
        self.kind = kind
        self.argv = argv
        self.restart = restart
        self.grace = grace
        self.burst = burst
        self.backoff_max = backoff_max
        self.log = log  # (file, max_size, keep) or None
        self.pinned = pinned  # never removed by a random edit (the counter, group members)
        self.gen = 0  # bumped by a "change" edit: a new SOAK_GEN value restarts the service

    def grace_s(self):
        return float(self.grace.rstrip("s"))

    def killable(self):
        """Its main process lives until killed: a kill -9 of it must be counted as a restart."""
        return self.kind in ("sleeper", "trap", "ignorer", "grandkids", "forker", "counter", "flood")

    def toml(self, run_id):
        lines = [f"[service.{q(self.name)}]", "command = [" + ", ".join(q(a) for a in self.argv) + "]"]
        lines.append(f"env = {{ SOAK_RUN = {q(run_id)}, SOAK_SVC = {q(self.name)}, SOAK_GEN = {q(str(self.gen))} }}")
        lines.append(f"restart = {q(self.restart)}")
        lines.append(f'stop = {{ signal = "TERM", grace = {q(self.grace)} }}')
        lines.append(f"start_limit = {{ burst = {self.burst}, interval = \"60s\" }}")
        lines.append(f'backoff = {{ initial = "100ms", max = {q(self.backoff_max)} }}')
        if self.log:
            lines.append(f"log = {{ file = {q(self.log[0])}, max_size = {q(self.log[1])}, keep = {self.log[2]} }}")
        return "\n".join(lines) + "\n"


FLOOD_MIBPS = 5  # per flood service; set from --flood-mibps
SETSID_OP = "spawn-grandchild-setsid"  # "spawn-grandchild" with --no-setsid


def make_service(kind, name, child, rng):
    c = child
    if kind == "sleeper":
        return Service(name, kind, [c, "sleep", FOREVER])
    if kind == "trap":
        return Service(name, kind, [c, "trap-term", FOREVER])
    if kind == "ignorer":  # stopping it always takes the grace, then SIGKILL
        return Service(name, kind, [c, "ignore-term", FOREVER], grace=rng.choice(["1s", "2s"]))
    if kind == "grandkids":  # grandchildren holding stdout; a setsid escapee; a double-fork orphan
        return Service(name, kind, [c, "spawn-grandchild", FOREVER, SETSID_OP, FOREVER,
                                    "spawn-orphan", FOREVER, "sleep", FOREVER])
    if kind == "forker":
        return Service(name, kind, [c, "fork-children", "3", FOREVER, "sleep", FOREVER])
    if kind == "crashloop":
        return Service(name, kind, [c, "sleep", str(rng.randint(100, 800)), "exit", "3"], restart="on-failure",
                       backoff_max="2s")
    if kind == "crashlimit":  # reaches its start limit: failed, revived now and then by `ctl start`
        return Service(name, kind, [c, "exit", "1"], restart="on-failure", burst=3)
    if kind == "flood":
        return Service(name, kind, [c, "flood", str(FLOOD_MIBPS)])
    if kind == "hostile":
        argv = [c]
        for _ in range(100):
            argv += ["write-hostile", "sleep", "200"]
        return Service(name, kind, argv + ["exit", "0"], log=(f"logs/{name}.log", "64KiB", 3))
    if kind == "oneshot":
        return Service(name, kind, [c, "write-line", "done", "exit", "0"], restart="no")
    raise ValueError(kind)


class Config:
    """The driver's model of the configuration and its writer. `services` is the last configuration
    written whole and valid (what drover runs once it is applied)."""

    def __init__(self, path, run_id, child, n, seconds, rng):
        self.path = path
        self.run_id = run_id
        self.child = child
        self.services = collections.OrderedDict()
        self.added = 0
        self.group = None
        # The counter: 500 numbered lines/s, about 30 KB/s in its log file. max_size is small so
        # that it rotates often; keep is large enough that no rotated file is deleted in the run,
        # so every line of every incarnation can be checked (drover allows keep <= 1000).
        per_s = 30_000
        max_size = max(64 * 1024, int(per_s * seconds / 500))
        keep = min(1000, int(per_s * seconds / max_size * 1.5) + 20)
        counter = Service("counter", "counter", [child, "count", "0", "2"], log=("logs/counter.log", str(max_size), keep),
                          pinned=True)
        self.counter_max_size = max_size
        self.add(counter)
        mix = [("flood", 0.04), ("hostile", 0.04), ("oneshot", 0.04), ("crashlimit", 0.02), ("crashloop", 0.08),
               ("grandkids", 0.16), ("forker", 0.08), ("ignorer", 0.12), ("trap", 0.12)]
        kinds = []
        for kind, share in mix:
            if kind == "flood" and FLOOD_MIBPS == 0:
                continue
            kinds += [kind] * max(1 if n >= 12 else 0, round(share * n))
        while len(kinds) < n - 1:
            kinds.append("sleeper")
        kinds = kinds[: n - 1]
        counts = collections.Counter()
        for kind in kinds:
            counts[kind] += 1
            self.add(make_service(kind, f"{kind}-{counts[kind]}", child, rng))
        # A one_for_all group of two sleepers: killing one restarts both.
        members = [s for s in self.services.values() if s.kind == "sleeper"][:2]
        if len(members) == 2:
            for m in members:
                m.pinned = True
            self.group = [m.name for m in members]

    def add(self, s):
        self.services[s.name] = s

    def text(self, services=None):
        services = self.services if services is None else services
        out = ['[drover]', 'shutdown_grace = "5s"', ""]
        for s in services.values():
            out.append(s.toml(self.run_id))
        if self.group:
            out.append('[group.pair]\nservices = [' + ", ".join(q(m) for m in self.group) + ']\nstrategy = "one_for_all"\n')
        return "\n".join(out)

    def write(self, text):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)  # drover never reads half a file

    def broken_text(self, rng):
        """A configuration with one error of a random kind, and what it is."""
        good = self.text()
        victim = rng.choice([s for s in self.services.values()])
        kinds = ["unknown key", "bad duration", "unknown dependency", "syntax error", "unset variable",
                 "no command"]
        kind = rng.choice(kinds)
        if kind == "unknown key":
            return good + f"\n[service.broken-x]\ncommand = [{q(self.child)}]\ndepend_on = []\n", kind
        if kind == "bad duration":
            return good.replace(f'stop = {{ signal = "TERM", grace = {q(victim.grace)} }}',
                                'stop = { signal = "TERM", grace = "5x" }', 1), kind
        if kind == "unknown dependency":
            return good + f'\n[service.broken-y]\ncommand = [{q(self.child)}]\ndepends_on = ["no-such-service"]\n', kind
        if kind == "syntax error":
            return good + "\nthis is not toml\n", kind
        if kind == "unset variable":
            return good + f'\n[service.broken-z]\ncommand = [{q(self.child)}]\ncwd = "${{SOAK_SURELY_UNSET_VARIABLE}}"\n', kind
        return good + "\n[service.broken-w]\nrestart = \"always\"\n", kind


# ---- looking at processes ---------------------------------------------------------------------


def read(path, mode="rb"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def proc_stat(pid):
    """(state, ppid, starttime in ticks) or None."""
    s = read(f"/proc/{pid}/stat")
    if not s:
        return None
    rest = s[s.rfind(b")") + 2:].split()
    return rest[0].decode(), int(rest[1]), int(rest[19])


def cgroup2_of(pid):
    s = read(f"/proc/{pid}/cgroup")
    if s is None:
        return None
    for line in s.decode(errors="replace").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def cgroup2_mount():
    s = read("/proc/self/mountinfo")
    for line in (s or b"").decode(errors="replace").splitlines():
        f = line.split()
        if "-" in f[6:]:
            d = f.index("-", 6)
            if d + 1 < len(f) and f[d + 1] == "cgroup2":
                unesc = lambda p: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), p)
                return unesc(f[4]), unesc(f[3])
    return None, None


class Proc:
    __slots__ = ("pid", "svc", "state", "ppid", "start", "cgroup")


def scan(run_id):
    """Every live process carrying SOAK_RUN=run_id (with its SOAK_SVC), and every process's
    (state, ppid) for the zombie check."""
    tag = b"SOAK_RUN=" + run_id.encode()
    ours, all_stat = [], {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        pid = int(e)
        st = proc_stat(pid)
        if st is None:
            continue
        all_stat[pid] = st
        env = read(f"/proc/{pid}/environ")
        if not env or tag not in env:
            continue
        vars_ = dict(v.split(b"=", 1) for v in env.split(b"\0") if b"=" in v)
        if vars_.get(b"SOAK_RUN") != run_id.encode():
            continue
        p = Proc()
        p.pid, p.svc = pid, vars_.get(b"SOAK_SVC", b"?").decode(errors="replace")
        p.state, p.ppid, p.start = st
        p.cgroup = cgroup2_of(pid)
        ours.append(p)
    return ours, all_stat


def descendants(root, all_stat):
    kids = collections.defaultdict(list)
    for pid, (_, ppid, _) in all_stat.items():
        kids[ppid].append(pid)
    out, todo = set(), [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


def signal_pid(pid, sig, expect_svc=None, run_id=None):
    """Signals pid through a pidfd; with expect_svc, only if the process is still that service's
    (the pid may have been reused since it was seen). True if sent."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if expect_svc is not None:
            env = read(f"/proc/{pid}/environ") or b""
            if (b"SOAK_SVC=" + expect_svc.encode() + b"\0") not in env or (b"SOAK_RUN=" + run_id.encode()) not in env:
                return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# ---- the soak ---------------------------------------------------------------------------------


class Violation(Exception):
    pass


class Soak:
    def __init__(self, a):
        self.a = a
        self.seed = a.seed
        self.rng = random.Random(self.seed)
        self.lock = threading.RLock()  # the model: config, status, kills, events
        self.cfg_lock = threading.Lock()  # one configuration change at a time
        self.events = collections.deque(maxlen=400)
        self.counts = collections.Counter()  # events injected, by kind
        self.stop = threading.Event()
        self.violations = []
        self.children = set()  # ctl processes started by the driver
        self.drover = None
        self.status = {}  # name -> the last status object
        self.status_time = 0.0
        self.last_live = {}  # name -> when it was last seen starting/running/ready/stopping
        self.touched = collections.defaultdict(list)  # name -> times of restarts/changes/removals we did
        self.kills = collections.defaultdict(set)  # name -> main pids killed by us, counted as restarts
        self.kill_time = {}  # (name, pid) -> when
        self.pressure_until = 0.0  # ctl failures are expected until then
        self.checks = 0
        self.baseline = {"fds": 0, "rss": 0}
        self.zombies = {}  # pid -> first seen
        self.empty_leaves = {}  # path -> consecutive checks seen empty
        self.cgroup_dir = None
        self.cgroup_seen = False
        self.out_offset = 0
        self.hostile_checked = 0
        self.refused_reloads = 0
        self.local = threading.local()

    # -- bookkeeping --

    def event(self, kind, text):
        with self.lock:
            self.events.append((now() - self.t0, kind, text))
            if kind not in ("check",):
                self.counts[kind] += 1
        if self.a.verbose:
            print(f"[{now() - self.t0:8.3f}] {kind}: {text}", flush=True)

    def violate(self, what, details=""):
        with self.lock:
            self.violations.append((now() - self.t0, what, details))
        self.event("VIOLATION", what)
        self.stop.set()

    def ctl(self, *args, timeout=20, check_pressure=True):
        """Runs drover ctl; (rc, stdout, stderr). rc None on a timeout."""
        cmd = [self.a.drover, "ctl", "--socket", self.sock, *args]
        try:
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except OSError as e:
            return -999, b"", str(e).encode()
        with self.lock:
            self.children.add(p)
        try:
            out, err = p.communicate(timeout=timeout)
            return p.returncode, out, err
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            return None, out, err
        finally:
            with self.lock:
                self.children.discard(p)

    def under_pressure(self):
        return now() < self.pressure_until

    def alive(self):
        return self.drover is not None and self.drover.poll() is None

    # -- setup --

    def start(self):
        a = self.a
        self.tmp = tempfile.mkdtemp(prefix="drover-soak-")
        self.run_id = f"soak-{os.getpid()}-{self.seed}-{int(time.time())}"
        self.sock = os.path.join(self.tmp, "ctl.sock")
        self.cfg = Config(os.path.join(self.tmp, "drover.toml"), self.run_id, a.child, a.services, a.seconds, self.rng)
        self.cfg.write(self.cfg.text())
        self.out_path = os.path.join(self.tmp, "drover.out")
        self.err_path = os.path.join(self.tmp, "drover.err")
        # O_APPEND: the driver truncates the file when the floods have made it large, and drover's
        # writes go on at the new end.
        out = open(self.out_path, "ab")
        err = open(self.err_path, "ab")
        # Descriptor pressure from the start: a low hard limit (drover raises its soft limit to
        # the hard one, so the hard one is what it gets), enough for the services with room.
        self.nofile = max(1024, 24 * a.services)

        def pre():
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, self.nofile))

        env = {k: v for k, v in os.environ.items() if not k.startswith("SOAK_") and k != "NOTIFY_SOCKET"}
        self.t0 = now()
        self.drover = subprocess.Popen([a.drover, "up", "-f", self.cfg.path, "--socket", self.sock], stdout=out,
                                       stderr=err, stdin=subprocess.DEVNULL, cwd=self.tmp, env=env, preexec_fn=pre,
                                       start_new_session=True)
        out.close()
        err.close()
        self.dpid = self.drover.pid
        self.event("start", f"drover up pid {self.dpid}, {len(self.cfg.services)} services, tmp {self.tmp}")
        deadline = now() + 20
        while now() < deadline:
            if not self.alive():
                raise Violation(f"drover up exited at start with {self.drover.returncode}")
            rc, o, _ = self.ctl("status", "--json", timeout=10)
            if rc == 0:
                break
            time.sleep(0.2)
        else:
            raise Violation("drover up's control socket did not answer within 20 s")
        mount, _ = cgroup2_mount()
        rel = cgroup2_of(self.dpid)
        if mount and rel is not None:
            own = mount + ("" if rel == "/" else rel)
            self.cgroup_dir = f"{own}/drover-{self.dpid}"
            self.cgroup_why = (f"{self.cgroup_dir} never appeared: drover could not make cgroups here "
                               f"(is {own} writable by this user? {os.access(own, os.W_OK)})")
        else:
            self.cgroup_why = "no cgroup2 filesystem is mounted, or drover has no cgroup2 membership"

    # -- the chaos --

    def trng(self):
        """The calling chaos thread's own random stream (each seeded from the seed at the start),
        so that one thread's choices do not depend on how the others' interleave."""
        return getattr(self.local, "rng", self.rng)

    def pick_running(self, killable_only=False):
        with self.lock:
            c = [(n, s) for n, s in self.status.items()
                 if s.get("pid") and s["state"] in ("running", "ready") and n in self.cfg.services
                 and (not killable_only or self.cfg.services[n].killable())]
        return self.trng().choice(c) if c else (None, None)

    def act_kill_main(self):
        name, st = self.pick_running()
        if self.trng().random() < 0.15:  # the counter more often: its log spans incarnations
            with self.lock:
                c = self.status.get("counter")
            if c and c.get("pid") and c["state"] in ("running", "ready"):
                name, st = "counter", c
        if not name:
            return
        pid = st["pid"]
        t = now()
        if signal_pid(pid, signal.SIGKILL, name, self.run_id):
            self.event("kill-main", f"{name} pid {pid}")
            with self.lock:
                if self.cfg.services[name].killable() and pid not in self.kills[name]:
                    self.kills[name].add(pid)
                    self.kill_time[(name, pid)] = t

    def act_kill_grandchild(self):
        procs, _ = scan(self.run_id)
        with self.lock:
            mains = {s.get("pid") for s in self.status.values()}
        c = [p for p in procs if p.pid not in mains and p.state != "Z"]
        if not c:
            return
        p = self.trng().choice(c)
        if signal_pid(p.pid, signal.SIGKILL, p.svc, self.run_id):
            self.event("kill-grandchild", f"{p.svc} pid {p.pid}")

    def act_restart(self):
        with self.lock:
            names = list(self.cfg.services)
        name = self.trng().choice(names)
        with self.lock:
            self.touched[name].append(now())
        self.event("ctl-restart", name)
        rc, _, err = self.ctl("restart", name, timeout=60)
        with self.lock:
            self.touched[name].append(now())
        self.event("ctl-restart-done", f"{name} rc {rc} {err.decode(errors='replace').strip()[:200]}")

    def act_revive(self):
        with self.lock:
            failed = [n for n, s in self.status.items() if s["state"] == "failed" and n in self.cfg.services]
        if failed:
            name = self.trng().choice(failed)
            rc, _, err = self.ctl("start", name, timeout=30)
            self.event("ctl-start", f"{name} rc {rc} {err.decode(errors='replace').strip()[:200]}")

    def act_logs(self):
        with self.lock:
            names = list(self.cfg.services)
        name = self.trng().choice(names)
        secs = self.trng().uniform(0.5, 4)
        cmd = [self.a.drover, "ctl", "--socket", self.sock, "logs", "-f", "-n", "20", name]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        with self.lock:
            self.children.add(p)
        got = [0]

        def reader():
            for chunk in iter(lambda: p.stdout.read(65536), b""):
                got[0] += len(chunk)

        r = threading.Thread(target=reader, daemon=True)
        r.start()
        self.stop.wait(secs)
        rc = p.poll()
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        r.join(2)
        with self.lock:
            self.children.discard(p)
        self.event("ctl-logs-f", f"{name} for {secs:.1f}s: {got[0]} bytes, ended by itself: {rc}")

    def act_status(self):
        rc, o, err = self.ctl("status", "--json", timeout=30)
        self.event("ctl-status", f"rc {rc}")
        if rc == 0:
            try:
                json.loads(o)
            except ValueError as e:
                self.violate("ctl status --json printed something that is not JSON", f"{e}: {o[:500]!r}")

    def act_storm(self):
        sigs = [signal.SIGUSR1, signal.SIGCHLD, signal.SIGWINCH, signal.SIGHUP, signal.SIGPIPE, signal.SIGURG,
                signal.SIGCONT]
        n = self.trng().randint(50, 500)
        chosen = [self.trng().choice(sigs) for _ in range(n)]
        with self.cfg_lock:  # HUP rereads the file: only while it holds the valid configuration
            for s in chosen:
                try:
                    os.kill(self.dpid, s)
                except ProcessLookupError:
                    return
        self.event("signal-storm", f"{n} signals ({collections.Counter(signal.Signals(s).name for s in chosen)})")

    def act_pressure(self):
        try:
            nfd = len(os.listdir(f"/proc/{self.dpid}/fd"))
            soft, hard = resource.prlimit(self.dpid, resource.RLIMIT_NOFILE)
        except OSError:
            return
        low = nfd + self.trng().randint(0, 6)
        secs = self.trng().uniform(1, 4)
        with self.lock:
            self.pressure_until = now() + secs + 5
        try:
            resource.prlimit(self.dpid, resource.RLIMIT_NOFILE, (low, hard))
        except OSError:
            return
        self.event("fd-pressure", f"soft RLIMIT_NOFILE {soft} -> {low} ({nfd} open) for {secs:.1f}s")
        self.stop.wait(secs)
        try:
            resource.prlimit(self.dpid, resource.RLIMIT_NOFILE, (soft, hard))
        except OSError:
            pass
        with self.lock:
            self.pressure_until = now() + 5  # what failed meanwhile (a spawn, a ctl) settles
        self.event("fd-pressure-end", f"soft RLIMIT_NOFILE back to {soft}")

    def act_reload(self):
        """A random valid edit, applied by SIGHUP or `drover ctl reload`."""
        with self.cfg_lock:
            with self.lock:
                removable = [s for s in self.cfg.services.values() if not s.pinned]
                what = self.trng().choice(["add", "remove", "change", "change"])
                if what == "remove" and len(removable) > self.a.services // 2:
                    s = self.trng().choice(removable)
                    del self.cfg.services[s.name]
                    self.touched[s.name].append(now())
                    desc = f"removed {s.name}"
                elif what == "add" or not removable:
                    self.cfg.added += 1
                    kind = self.trng().choice(["sleeper", "grandkids", "ignorer", "crashloop", "trap", "forker",
                                            "hostile", "oneshot"])
                    s = make_service(kind, f"added-{self.cfg.added}-{kind}", self.cfg.child, self.trng())
                    self.cfg.add(s)
                    desc = f"added {s.name}"
                else:
                    s = self.trng().choice(list(self.cfg.services.values()))
                    s.gen += 1
                    if s.kind == "ignorer":
                        s.grace = self.trng().choice(["1s", "2s"])
                    self.touched[s.name].append(now())
                    desc = f"changed {s.name} (SOAK_GEN {s.gen})"
                self.cfg.write(self.cfg.text())
                self.last_reload = now()
            if self.trng().random() < 0.5:
                os.kill(self.dpid, signal.SIGHUP)
                self.event("reload-hup", desc)
            else:
                rc, _, err = self.ctl("reload", timeout=30)
                self.event("reload-ctl", f"{desc}: rc {rc}")
                if rc not in (0, None) and not self.under_pressure() and self.alive():
                    self.violate("drover ctl reload refused a valid configuration",
                                 f"{desc}: rc {rc}: {err.decode(errors='replace')}")
            with self.lock:
                if desc.startswith("changed"):
                    self.touched[s.name].append(now())

    def act_broken(self):
        """A configuration with an error: drover must refuse it whole and keep running."""
        with self.cfg_lock:
            with self.lock:
                text, kind = self.cfg.broken_text(self.trng())
                before = set(self.status)
            self.cfg.write(text)
            try:
                if self.trng().random() < 0.5:
                    rc, _, err = self.ctl("reload", timeout=30)
                    self.event("broken-ctl", f"{kind}: rc {rc}: {err.decode(errors='replace').strip()[:160]}")
                    if rc == 0:
                        self.violate("drover ctl reload accepted a broken configuration", f"{kind}:\n{text[-400:]}")
                else:
                    n0 = self.count_refused()
                    os.kill(self.dpid, signal.SIGHUP)
                    deadline = now() + 10
                    while now() < deadline and self.count_refused() == n0 and self.alive():
                        time.sleep(0.05)
                    self.event("broken-hup", f"{kind}: refused: {self.count_refused() > n0}")
                    if self.count_refused() == n0 and self.alive() and not self.under_pressure():
                        self.violate("SIGHUP with a broken configuration: drover logged no refusal within 10 s", kind)
            finally:
                self.cfg.write(self.cfg.text())  # the file on disk is always valid between changes
        rc, o, _ = self.ctl("status", "--json", timeout=30)
        if rc == 0:
            names = {s["name"] for s in json.loads(o)["services"]}
            bad = {n for n in names if n.startswith("broken-")}
            if bad:
                self.violate("a refused configuration's services are running", str(sorted(bad)))

    def count_refused(self):
        s = read(self.err_path) or b""
        return s.count(b"reload refused")

    def chaos(self, kinds, seed):
        """One chaos thread: picks actions from `kinds` (name -> weight) until stopped."""
        acts = {"kill-main": self.act_kill_main, "kill-grandchild": self.act_kill_grandchild,
                "restart": self.act_restart, "revive": self.act_revive, "logs": self.act_logs,
                "status": self.act_status, "storm": self.act_storm, "pressure": self.act_pressure,
                "reload": self.act_reload, "broken": self.act_broken}
        names, weights = zip(*kinds.items())
        rng = self.local.rng = random.Random(seed)
        while not self.stop.is_set():
            if self.stop.wait(rng.uniform(0.05, 0.6)):
                break
            if now() - self.t0 > self.a.seconds:
                break
            act = rng.choices(names, weights)[0]
            try:
                acts[act]()
            except Exception:
                if not self.stop.is_set() and self.alive():
                    self.violate("the driver itself failed (not drover's fault)", traceback.format_exc())

    # -- the checks --

    def check(self, final=False):
        """One round of invariants. Reads the status first, then /proc: a process seen after a
        status said its service was not live was there after its tree should have gone."""
        self.checks += 1
        t = now()
        if not self.alive():
            self.violate("drover up exited during the run", f"status {self.drover.returncode}")
            return
        # /proc's start times count from boot: a process started after this moment is newer than
        # the status read next, which cannot speak for it (a crash-looping service's new run).
        self.status_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        rc, o, err = self.ctl("status", "--json", timeout=30)
        if rc != 0:
            if self.under_pressure():
                self.event("check", f"status unavailable under descriptor pressure: rc {rc}")
                return
            self.violate("drover ctl status failed", f"rc {rc}: {err.decode(errors='replace')}")
            return
        try:
            services = json.loads(o)["services"]
        except (ValueError, KeyError) as e:
            self.violate("ctl status --json is not the expected JSON", f"{e}: {o[:400]!r}")
            return
        with self.lock:
            self.status = {s["name"]: s for s in services}
            self.status_time = t
            for s in services:
                if s["state"] in LIVE_STATES:
                    self.last_live[s["name"]] = t
        procs, all_stat = scan(self.run_id)
        elapsed = t - self.t0
        self.check_status(services, t)
        self.check_processes(procs, all_stat, t)
        self.check_resources(elapsed)
        self.check_cgroups(procs, t)
        self.check_output()
        self.truncate_output()

    def grace(self, name):
        s = self.cfg.services.get(name)
        return (s.grace_s() if s else 2.0) + 1.0

    def check_status(self, services, t):
        with self.lock:
            for s in services:
                name = s["name"]
                if s["state"] in ("exited", "backoff") and s["last_exit"] is None:
                    self.violate("a service that ended has no last exit status", json.dumps(s))
                # A restart asked for is counted when asked; its run's exit comes once it is
                # stopped: while it stops, the first run has no exit yet.
                if s["restarts"] > 0 and s["last_exit"] is None and s["state"] != "stopping":
                    self.violate("a service that restarted has no last exit status", json.dumps(s))
                # Restart accounting: every main process we killed (while nothing else of ours
                # was stopping it) is one automatic restart. The counter is never reset (a
                # removed name is never added again), so restarts >= kills at all times once
                # drover has seen the exit; a kill under 3 s old may not be seen yet.
                counted = 0
                for pid in self.kills.get(name, ()):
                    kt = self.kill_time[(name, pid)]
                    if t - kt < 3:
                        continue
                    g = self.grace(name) + 2
                    if any(kt - g - 1 <= x <= kt + 1 for x in self.touched.get(name, ())):
                        continue  # it was being stopped by us at the time: not an automatic restart
                    counted += 1
                if s["restarts"] < counted:
                    self.violate(f"restarts of '{name}' fewer than the kills of its main process",
                                 f"restarts {s['restarts']}, kills counted {counted}: pids "
                                 f"{sorted(self.kills[name])}; status {json.dumps(s)}")

    def check_processes(self, procs, all_stat, t):
        with self.lock:
            status = dict(self.status)
            last_live = dict(self.last_live)
        # Zombies whose parent is drover: it reaps its children through pidfds and its orphans
        # on SIGCHLD, so none may last from one check to the next (a service's own unreaped
        # children are the service's business, and are not looked at).
        zs = {pid for pid, (state, ppid, _) in all_stat.items() if ppid == self.dpid and state == "Z"}
        for pid in list(self.zombies):
            if pid not in zs:
                del self.zombies[pid]
        for pid in zs:
            # Under descriptor pressure drover may not be able to list its children to reap the
            # orphans among them (it retries on the next SIGCHLD): the clock starts after it.
            if self.under_pressure():
                self.zombies[pid] = t
            first = self.zombies.setdefault(pid, t)
            if t - first >= 1.0:
                self.violate("a zombie child of drover outlived two checks",
                             f"pid {pid} zombie since {first - self.t0:.2f}s: {read(f'/proc/{pid}/stat')!r}")
        # Every process of the run belongs to a live service (or one that stopped within its
        # grace), and to its current run: none older than the current main process.
        mains = {}
        for name, s in status.items():
            if s.get("pid") and s["state"] in ("running", "ready", "starting"):
                st = proc_stat(s["pid"])
                env = read(f"/proc/{s['pid']}/environ") or b""
                if st and (b"SOAK_SVC=" + name.encode() + b"\0") in env:
                    mains[name] = (s["pid"], st[2], s.get("uptime_ms") or 0)
        for p in procs:
            if p.state == "Z":
                continue
            s = status.get(p.svc)
            live = s is not None and s["state"] in LIVE_STATES
            if p.start / CLK_TCK >= self.status_boot - 0.05:
                continue
            if not live:
                since = last_live.get(p.svc, self.t0)
                if t - since > self.grace(p.svc) + 1.0:
                    self.violate("a process outlived its service's tree",
                                 f"pid {p.pid} (SOAK_SVC={p.svc}, ppid {p.ppid}, state {p.state}, "
                                 f"cgroup {p.cgroup}): service {json.dumps(s) if s else 'not in the status'}, "
                                 f"last seen live {since - self.t0:.2f}s, now {t - self.t0:.2f}s")
                continue
            m = mains.get(p.svc)
            if m and p.pid != m[0] and p.start + 1 < m[1] and m[2] > 1000:
                # Created more than a tick before the current main process, which has run for a
                # second: a leftover of an earlier run, while drover stops a run's whole tree
                # before starting the next one.
                self.violate("a process of an earlier run outlived it (two runs overlap)",
                             f"pid {p.pid} (SOAK_SVC={p.svc}, ppid {p.ppid}, started at tick {p.start}) while "
                             f"the main process is {m[0]} (started at tick {m[1]}, up {m[2]} ms); "
                             f"cgroup {p.cgroup}")

    def check_resources(self, elapsed):
        # drover's descriptors and memory follow the number of services and of control clients,
        # both of which the first part of the run already has at their usual level (the counts of
        # added services and parallel ctl clients are bounded). A leak grows with time instead:
        # twice the peak of the first 20 % (plus slack for the reload that adds a few services
        # and for allocator noise) stays far above normal churn but is crossed by a leak of one
        # descriptor per restart or per request within a long run.
        try:
            fds = len(os.listdir(f"/proc/{self.dpid}/fd"))
            rss = 0
            for line in (read(f"/proc/{self.dpid}/status") or b"").decode().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        except OSError:
            return
        with self.lock:
            self.peak = getattr(self, "peak", {"fds": 0, "rss": 0})
            self.peak["fds"] = max(self.peak["fds"], fds)
            self.peak["rss"] = max(self.peak["rss"], rss)
            if elapsed <= 0.2 * self.a.seconds:
                self.baseline["fds"] = max(self.baseline["fds"], fds)
                self.baseline["rss"] = max(self.baseline["rss"], rss)
                return
            fd_bound = 2 * self.baseline["fds"] + 64
            rss_bound = 2 * self.baseline["rss"] + 64 * 1024 * 1024
        if fds > fd_bound:
            self.violate("drover's descriptor count grew past its bound",
                         f"{fds} open > {fd_bound} (2 x {self.baseline['fds']} + 64); "
                         f"{self.describe_fds()}")
        if rss > rss_bound:
            self.violate("drover's RSS grew past its bound", f"{rss} > {rss_bound} (2 x {self.baseline['rss']} + 64 MiB)")

    def describe_fds(self):
        kinds = collections.Counter()
        try:
            for fd in os.listdir(f"/proc/{self.dpid}/fd"):
                try:
                    target = os.readlink(f"/proc/{self.dpid}/fd/{fd}")
                except OSError:
                    continue
                kinds[re.sub(r"\[\d+\]|run-\d+|/\d+", "#", target)] += 1
        except OSError:
            pass
        return "by kind: " + ", ".join(f"{k} x{n}" for k, n in kinds.most_common(12))

    def check_cgroups(self, procs, t):
        if not self.cgroup_dir or not os.path.isdir(self.cgroup_dir):
            return
        self.cgroup_seen = True
        # A process of the run outside drover's cgroups has escaped them.
        for p in procs:
            if p.state == "Z" or p.cgroup is None:
                continue
            if f"/drover-{self.dpid}/run-" not in p.cgroup:
                self.violate("a service process outside drover's cgroups",
                             f"pid {p.pid} (SOAK_SVC={p.svc}) in {p.cgroup}")
        # A leaf is removed once empty and its main process reaped, or kept as one of at most
        # MAX_SPARE_LEAVES spares for the next spawn (lib/detail/cgroup.cpp): more empty ones
        # than that for 3 checks in a row (2 s or more) were forgotten.
        seen = set()
        try:
            leaves = [e for e in os.listdir(self.cgroup_dir) if e.startswith("run-")]
        except OSError:
            return
        for leaf in leaves:
            path = f"{self.cgroup_dir}/{leaf}"
            ev = read(f"{path}/cgroup.events")
            if ev is None or b"populated 0" not in ev:
                continue
            seen.add(path)
            n, first = self.empty_leaves.get(path, (0, t))
            self.empty_leaves[path] = (n + 1, first)
        stale = sorted((first, path) for path, (n, first) in self.empty_leaves.items()
                       if path in seen and n >= 3 and t - first >= 2)
        if len(stale) > MAX_SPARE_LEAVES:
            first, path = stale[0]
            self.violate("empty leaf cgroups of drover were not removed",
                         f"{len(stale)} empty for 2 s or more (at most {MAX_SPARE_LEAVES} are kept as spares); "
                         f"{path} empty since {first - self.t0:.2f}s")
        for path in list(self.empty_leaves):
            if path not in seen:
                del self.empty_leaves[path]

    # Bytes drover must never pass to its output unescaped: C0 controls but \n, DEL, C1 controls
    # (raw or UTF-8), bidi overrides and isolates; and invalid UTF-8.
    FORBIDDEN = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")

    def check_output(self):
        try:
            size = os.path.getsize(self.out_path)
            with open(self.out_path, "rb") as f:
                start = max(self.out_offset, size - 2 * 1024 * 1024)
                if start > size:
                    start = 0
                f.seek(start)
                data = f.read(size - start)
        except OSError:
            return
        self.out_offset = size
        if start > 0:
            data = data[data.find(b"\n") + 1:]
        data = data[: data.rfind(b"\n") + 1]
        self.scan_bytes(data, "drover's stdout")

    def scan_bytes(self, data, where):
        m = self.FORBIDDEN.search(data)
        if m:
            a = data.rfind(b"\n", 0, m.start()) + 1
            b = data.find(b"\n", m.end())
            self.violate(f"an unescaped control byte in {where}", repr(data[a:b if b >= 0 else None][:300]))
            return
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            self.violate(f"invalid UTF-8 in {where}", f"{e}: {data[max(0, e.start - 80):e.end + 80]!r}")

    def truncate_output(self):
        # The floods write tens of MB/s: keep drover's stdout file below 256 MiB (it is opened
        # O_APPEND, so drover writes on at the new end).
        try:
            if os.path.getsize(self.out_path) > 256 * 1024 * 1024:
                os.truncate(self.out_path, 0)
                self.out_offset = 0
                self.event("truncate", "drover's stdout file")
        except OSError:
            pass

    # -- after the run --

    def check_counter_logs(self):
        """Every numbered line of every counter incarnation, in order, across the rotated files
        (oldest first): per pid, 0..k contiguous, none twice. A line lost by a full queue would
        come with drover's "N lines dropped" marker: then a gap is allowed, and reported."""
        base = os.path.join(self.tmp, "logs", "counter.log")
        files = sorted((f for f in os.listdir(os.path.dirname(base)) if f.startswith("counter.log.")),
                       key=lambda f: -int(f.rsplit(".", 1)[1]))
        files = [os.path.join(os.path.dirname(base), f) for f in files] + [base]
        seq = {}  # pid -> next expected number
        markers, lines, gaps = 0, 0, []
        pat = re.compile(rb"^\S+ stdout count (\d+) (\d+)$")
        for path in files:
            for i, line in enumerate((read(path) or b"").split(b"\n")):
                if not line:
                    continue
                if b" drover " in line[:40] and b"dropped" in line:
                    markers += 1
                    continue
                m = pat.match(line)
                if not m:
                    continue
                lines += 1
                pid, n = int(m.group(1)), int(m.group(2))
                expect = seq.get(pid, 0)
                if n != expect:
                    if markers == 0 or n < expect:
                        lost = sum(int(x) for x in re.findall(rb"(\d+) supervisor events lost", read(self.err_path) or b""))
                        what = "repeated or reordered" if n < expect else "lost (with no marker in the file)"
                        self.violate(f"the counter's log {what} a line",
                                     f"pid {pid}: expected {expect}, found {n} at {os.path.basename(path)}:{i + 1}; "
                                     f"files {[os.path.basename(f) for f in files]}; drover's stderr reports "
                                     f"{lost} supervisor events lost in all")
                        return
                    gaps.append((pid, expect, n))
                seq[pid] = n + 1
        if lines == 0:
            self.violate("the counter's log file has no numbered lines", str(files))
        kills = len(self.kills.get("counter", ()))
        self.summary_counter = (f"{lines} lines from {len(seq)} incarnations in {len(files)} files "
                                f"(max_size {self.cfg.counter_max_size}), {markers} drop markers, "
                                f"{len(gaps)} gaps under markers; main process killed {kills} times")
        if len(seq) < 1 + (1 if kills else 0):
            self.violate("the counter's log misses incarnations", self.summary_counter)

    def shutdown(self):
        self.event("shutdown", "SIGTERM to drover up")
        os.kill(self.dpid, signal.SIGTERM)
        limit = 5 + 15  # shutdown_grace, then what drover needs to kill and reap, with slack
        try:
            rc = self.drover.wait(limit)
        except subprocess.TimeoutExpired:
            self.violate("drover up did not exit after SIGTERM", f"still running {limit}s later")
            return
        t_exit = now()
        leftovers, _ = scan(self.run_id)
        leftovers = [p for p in leftovers if p.state != "Z"]
        self.event("exited", f"drover up exited with {rc}; {len(leftovers)} processes of the run left")
        if rc != 0:
            self.violate("drover up did not exit 0 after SIGTERM", f"exit status {rc}")
        if leftovers:
            time.sleep(1)
            later = [p for p in scan(self.run_id)[0] if p.state != "Z"]
            self.violate("processes of the run outlived drover up",
                         "; ".join(f"pid {p.pid} {p.svc} ppid {p.ppid} state {p.state} cgroup {p.cgroup}"
                                   for p in leftovers[:20]) + f" (1 s later: {len(later)} left)")
        if self.cgroup_dir:
            if os.path.exists(self.cgroup_dir):
                self.violate("drover's cgroup directory is left after it exited",
                             f"{self.cgroup_dir}: {sorted(os.listdir(self.cgroup_dir))}")
        self.check_counter_logs()
        for f in os.listdir(os.path.join(self.tmp, "logs")):
            if f.startswith("hostile") or f.startswith("added-") and "hostile" in f:
                data = read(os.path.join(self.tmp, "logs", f)) or b""
                self.scan_bytes(data[: data.rfind(b"\n") + 1], f"the log file {f}")
        self.check_output()
        del t_exit

    # -- the run --

    def run(self):
        a = self.a
        print(f"soak: seed {self.seed} (replay with --seed {self.seed}); {a.seconds}s, {a.services} services; "
              f"drover {a.drover}; child {a.child}", flush=True)
        self.start()
        threads = [
            # kills: main processes and grandchildren
            {"kill-main": 6, "kill-grandchild": 4},
            {"kill-main": 3, "kill-grandchild": 3, "revive": 1},
            # control clients in parallel
            {"status": 4, "restart": 2, "logs": 2},
            {"status": 3, "logs": 3, "restart": 1},
            # configuration and process-wide chaos
            {"reload": 4, "broken": 2, "storm": 2, "pressure": 1},
        ]
        workers = [threading.Thread(target=self.chaos, args=(k, self.rng.random()), daemon=True) for k in threads]
        for w in workers:
            w.start()
        next_check = now()
        while now() - self.t0 < a.seconds and not self.stop.is_set():
            self.check()
            next_check += 1.0
            self.stop.wait(max(0.0, next_check - now()))
        self.stop.set()
        for w in workers:
            w.join(90)
        if not self.violations:
            self.pressure_until = 0
            time.sleep(max(3, 2 + max(s.grace_s() for s in self.cfg.services.values())))
            self.check(final=True)  # settled: after the last kills, restarts and reloads
        if not self.violations:
            self.shutdown()

    def cleanup(self):
        self.stop.set()
        with self.lock:
            kids = list(self.children)
        for p in kids:
            try:
                p.kill()
            except OSError:
                pass
        if self.drover and self.drover.poll() is None:
            try:
                os.kill(self.dpid, signal.SIGTERM)
                self.drover.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    self.drover.kill()
                    self.drover.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        if hasattr(self, "run_id"):
            for _ in range(3):
                left = scan(self.run_id)[0]
                if not left:
                    break
                for p in left:
                    signal_pid(p.pid, signal.SIGKILL, p.svc, self.run_id)
                time.sleep(0.2)

    def report(self):
        elapsed = now() - self.t0 if hasattr(self, "t0") else 0
        if self.violations:
            print(f"\nsoak: FAILED (seed {self.seed}; replay: tools/dev/soak.sh {self.a.seconds} --seed {self.seed} "
                  f"--services {self.a.services})", flush=True)
            for t, what, details in self.violations[:5]:
                print(f"\nVIOLATION at {t:.3f}s: {what}\n  {details}")
            print("\nthe last driver events:")
            for t, kind, text in list(self.events)[-50:]:
                print(f"  [{t:8.3f}] {kind}: {text}")
            for label, path in (("stderr", getattr(self, "err_path", None)), ("stdout", getattr(self, "out_path", None))):
                if path and os.path.exists(path):
                    with open(path, "rb") as f:
                        f.seek(max(0, os.path.getsize(path) - 6000))
                        tail = f.read().decode(errors="replace").splitlines()[-40:]
                    print(f"\ndrover's {label} ({path}), last lines:")
                    for line in tail:
                        print("  " + line[:300])
            print(f"\nsoak: the run's files are kept in {getattr(self, 'tmp', '?')}")
            return 1
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items()) if k not in ("check", "start", "exited", "shutdown", "ctl-restart-done", "fd-pressure-end"))
        print(f"\nsoak: OK (seed {self.seed}): {elapsed:.1f}s, {self.checks} checks, violations: 0")
        print(f"  events injected: {kinds}")
        print(f"  drover: peak {self.peak['fds']} descriptors (bound {2 * self.baseline['fds'] + 64}), "
              f"peak RSS {self.peak['rss'] // 1024} KiB (bound {(2 * self.baseline['rss']) // 1024 + 65536} KiB)")
        print(f"  counter: {getattr(self, 'summary_counter', '?')}")
        print("  cgroups: " + ("leaves checked, none left" if self.cgroup_seen else "not checked: " + self.cgroup_why))
        if not self.a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"  files kept in {self.tmp}")
        return 0


def main():
    ap = argparse.ArgumentParser(description="the chaos soak of drover up")
    ap.add_argument("seconds", nargs="?", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--drover", required=True)
    ap.add_argument("--child", required=True)
    ap.add_argument("--flood-mibps", type=int, default=5,
                    help="the rate of each of the (2 per 50) flood services, MiB/s (default 5; 0: no flood services)")
    ap.add_argument("--no-setsid", action="store_true",
                    help="no setsid grandchildren (without cgroups drover cannot follow one whose parent died)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory after a success")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every driver event as it happens")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = int.from_bytes(os.urandom(4), "little") ^ int(time.time())
    if a.services < 5:
        ap.error("--services must be at least 5")
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self"):
        skip("needs Linux with /proc")
    for what, path in (("drover", a.drover), ("drover-test-child", a.child)):
        if not os.access(path, os.X_OK):
            skip(f"{what} is not an executable at {path}")
    if not hasattr(os, "pidfd_open"):
        skip("this Python has no os.pidfd_open (3.9+ on Linux 5.3+)")
    probe = subprocess.run([a.child, "count", "1", "0"], capture_output=True)
    if probe.returncode != 0:
        skip(f"{a.child} has no 'count' operation (an old build?): {probe.stderr.decode(errors='replace').strip()}")
    global FLOOD_MIBPS, SETSID_OP
    FLOOD_MIBPS = a.flood_mibps
    if not a.no_setsid:
        # Without a cgroup per service, a setsid grandchild whose parent died is out of drover's
        # sight (docs/reliability.md, D1): that is the documented limit, not a finding.
        mount, _ = cgroup2_mount()
        own = cgroup2_of(os.getpid())
        where = os.path.join(mount, own.lstrip("/")) if mount and own is not None else None
        if not where or not os.access(where, os.W_OK):
            a.no_setsid = True
            print(f"soak: no setsid escapees: drover cannot make service cgroups here "
                  f"({where or 'no cgroup2'} is not writable by uid {os.geteuid()})", flush=True)
    if a.no_setsid:
        SETSID_OP = "spawn-grandchild"
    soak = Soak(a)
    rc = 1
    try:
        soak.run()
        rc = soak.report()
    except Violation as e:
        soak.violate(str(e))
        rc = soak.report()
    except KeyboardInterrupt:
        print("\nsoak: interrupted; cleaning up", flush=True)
        rc = 130
    except Exception:
        soak.violate("the driver itself failed (not drover's fault)", traceback.format_exc())
        rc = soak.report()
    finally:
        soak.cleanup()
    sys.exit(rc)


if __name__ == "__main__":
    main()
