#!/usr/bin/env python3
"""The format check: every C++ source under include/, lib/, tools/ and test/ is exactly as
clang-format leaves it with the repository's .clang-format.

clang-format's output differs between major versions, and .clang-format is written for the one
Debian 12 ships (14): with another version, or none, the check is skipped (exit 77) and says why.
To fix a failure: clang-format -i <file> (tools/dev/setup.sh installs clang-format).
"""
import argparse
import pathlib
import re
import subprocess
import sys

SKIP = 77
VERSION = 14
DIRS = ("include", "lib", "tools", "test")
SUFFIXES = {".cpp", ".hpp", ".h"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--clang-format", default="")
    a = ap.parse_args()
    if not a.clang_format:
        print(f"skipped: clang-format is not installed (apt-get install clang-format, version {VERSION})")
        return SKIP
    out = subprocess.run([a.clang_format, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.", out)
    if not m or int(m.group(1)) != VERSION:
        print(f"skipped: .clang-format is checked with clang-format {VERSION}; this is: {out.strip()!r}")
        return SKIP
    root = pathlib.Path(a.root)
    files = sorted(str(p) for d in DIRS for p in (root / d).rglob("*") if p.suffix in SUFFIXES and p.is_file())
    if not files:
        print(f"no sources found under {root}")
        return 1
    bad = []
    for i in range(0, len(files), 50):
        r = subprocess.run([a.clang_format, "--dry-run", "--Werror", *files[i:i + 50]],
                           capture_output=True, text=True, cwd=root)
        for line in r.stderr.splitlines():
            m = re.match(r"(.+?):(\d+):\d+: error: code should be clang-formatted", line)
            if m:
                bad.append((m.group(1), m.group(2)))
        if r.returncode != 0 and not bad:
            print(r.stderr)
            return 1
    if bad:
        first = {}
        for f, line in bad:
            first.setdefault(f, line)
        for f, line in first.items():
            print(f"{pathlib.Path(f).relative_to(root) if f.startswith(str(root)) else f}:{line}: not formatted")
        print(f"format: {len(first)} of {len(files)} files differ from clang-format's output; "
              "run clang-format -i on them")
        return 1
    print(f"format: {len(files)} files as clang-format {VERSION} leaves them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
