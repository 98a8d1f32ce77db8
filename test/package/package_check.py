"""What the package checks (check_installed.py, check_subproject.py) share: running a command
with its output shown, the compiler from meson's arguments, and the temporary directory a check
runs in, removed in every case, with its result as meson's exit status."""

import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SKIP = 77  # meson's "skipped"


def run(cmd, quiet=False, **kw):
    """Runs cmd, printing it and (unless quiet: meson's JSON) its output; its stdout.
    A failure raises RuntimeError, which check_in_temp_dir reports."""
    print("$", " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if p.stdout.strip() and not quiet:
        print(p.stdout.rstrip())
    if p.stderr.strip():
        print(p.stderr.rstrip(), file=sys.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"{Path(str(cmd[0])).name} failed with exit status {p.returncode}")
    return p.stdout


def compiler_of(remainder):
    """The compiler command after meson's "--"."""
    return remainder[1:] if remainder[:1] == ["--"] else remainder


def missing_tool(*tools):
    """The first of tools not on PATH (an empty one counts as "compiler"), or None."""
    for tool in tools:
        if not tool or not shutil.which(tool):
            return tool or "compiler"
    return None


def expect_output(out, expected):
    if out != expected:
        raise RuntimeError(f"the program printed {out}, expected {expected}")


def check_in_temp_dir(prefix, check):
    """Runs check(tmp) in a fresh temporary directory and removes it afterwards. check returns
    what it proved (printed with the time taken) or raises RuntimeError (printed as FAILED).
    Returns the exit status for meson: 0 or 1."""
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        proved = check(tmp)
        print(f"{proved}; {time.monotonic() - start:.1f} s")
        return 0
    except RuntimeError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
