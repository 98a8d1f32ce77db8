#!/usr/bin/env python3
"""Use drover as a meson subproject of a parent project, as a user's project would.

The parent (subproject-parent/: meson.build and main.cpp) is copied into a temporary directory
with drover's source tree linked in as its subprojects/drover, configured with
--wrap-mode=nodownload, built, and its program run: it spawns a child through the subproject's
libdrover and checks the child's exit status. The script also checks that drover, as a
subproject, built only its library: meson's log shows no lookup of CLI11, Boost.JSON or doctest,
and `meson introspect` lists no executable and no test of drover's (neither the tools nor the
test suites). The temporary directory is removed in every case.

Usage: check_subproject.py --source-root DIR --parent DIR --meson MESON -- COMPILER...
Exit status 0 on success, 1 on failure, 77 (meson's "skipped") when a tool is missing.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from package_check import SKIP, check_in_temp_dir, compiler_of, expect_output, missing_tool, run

EXPECTED = ["child: exited with code 7"]

# What only drover's tools or tests look up; none of it may appear in the parent's meson log.
FORBIDDEN_LOOKUPS = {
    "CLI11": re.compile(r"cli11", re.IGNORECASE),
    "Boost.JSON": re.compile(r"boost_json|found: json", re.IGNORECASE),
    "doctest": re.compile(r"doctest", re.IGNORECASE),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source-root", required=True, type=Path)
    ap.add_argument("--parent", required=True, type=Path)
    ap.add_argument("--meson", required=True)
    ap.add_argument("compiler", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    compiler = compiler_of(args.compiler)
    missing = missing_tool(args.meson, compiler[0] if compiler else "")
    if missing:
        print(f"SKIP: {missing} not found")
        return SKIP
    return check_in_temp_dir("drover-subproject-", lambda tmp: check(args, compiler, tmp))


def check(args, compiler, tmp):
    parent = tmp / "parent"
    shutil.copytree(args.parent, parent)
    (parent / "subprojects").mkdir()
    # A symlink, not a copy: meson accepts it, and it keeps the test from copying the
    # source tree's build directories.
    (parent / "subprojects" / "drover").symlink_to(args.source_root.resolve(), target_is_directory=True)
    print(f"{parent / 'subprojects' / 'drover'} -> {args.source_root.resolve()}")

    build = tmp / "build"
    # The compiler of this build; everything else as a user's first `meson setup` has it.
    env = dict(os.environ, CXX=shlex.join(compiler))
    run([args.meson, "setup", build, parent, "--wrap-mode=nodownload"], env=env)

    log = (build / "meson-logs" / "meson-log.txt").read_text(errors="replace")
    for what, pattern in FORBIDDEN_LOOKUPS.items():
        hits = [line for line in log.splitlines() if pattern.search(line)]
        if hits:
            raise RuntimeError(f"the subproject configuration looked up {what}:\n  " + "\n  ".join(hits[:5]))
    for opt in ("tools", "tests"):
        if f"drover: {opt} off" not in log:
            raise RuntimeError(f"the parent's meson log does not say that drover's {opt} are off")

    targets = json.loads(run([args.meson, "introspect", "--targets", build], quiet=True))
    drover_targets = [t for t in targets if t.get("subproject") == "drover"]
    print("drover's targets:", ", ".join(f"{t['name']} ({t['type']})" for t in drover_targets))
    if not any(t["type"] == "shared library" and t["name"] == "drover" for t in drover_targets):
        raise RuntimeError("the subproject has no libdrover target")
    exes = [t["name"] for t in drover_targets if t["type"] == "executable"]
    if exes:
        raise RuntimeError(f"the subproject builds executables (tools or tests): {exes}")
    tests = json.loads(run([args.meson, "introspect", "--tests", build], quiet=True))
    if tests:
        raise RuntimeError(f"the subproject registered tests: {[t['name'] for t in tests]}")

    run([args.meson, "compile", "-C", build, "-j", "2"])
    exe = build / "parent"
    out = run([exe]).splitlines()
    expect_output(out, EXPECTED)
    for d in ("tools", "test"):
        if (build / "subprojects" / "drover" / d).exists():
            raise RuntimeError(f"the build has a subprojects/drover/{d} directory: drover's {d} were built")
    return "subproject: a parent project built and ran a program on drover_dep"


if __name__ == "__main__":
    sys.exit(main())
