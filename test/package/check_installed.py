#!/usr/bin/env python3
"""Install drover into a temporary DESTDIR and build a program against it with pkg-config only.

The program (consumer.cpp) formats an exit_status with fmt, spawns a child through the
installed libdrover, waits for it in a coroutine and prints its status; this script compiles,
links and runs it and checks what it printed. Only drover.pc says how: if the installed
package forgets a flag or a library its public headers need, this fails the way a user's
build would. The temporary directory is removed in every case.

Usage: check_installed.py --build-root DIR --meson MESON --pkg-config PKG_CONFIG
                          --source FILE [--extra-flags "..."] -- COMPILER...
Exit status 0 on success, 1 on failure, 77 (meson's "skipped") when a tool is missing.
"""

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from package_check import SKIP, check_in_temp_dir, compiler_of, expect_output, missing_tool, run

EXPECTED = ["formatted: exited with code 3", "child: exited with code 3"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-root", required=True, type=Path)
    ap.add_argument("--meson", required=True)
    ap.add_argument("--pkg-config", required=True)
    ap.add_argument("--source", required=True, type=Path)
    ap.add_argument("--extra-flags", default="",
                    help="flags a build of this configuration needs beyond drover.pc (the sanitizer's)")
    ap.add_argument("compiler", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    compiler = compiler_of(args.compiler)
    missing = missing_tool(args.meson, args.pkg_config, compiler[0] if compiler else "")
    if missing:
        print(f"SKIP: {missing} not found")
        return SKIP
    return check_in_temp_dir("drover-package-", lambda tmp: check(args, compiler, tmp))


def check(args, compiler, tmp):
    destdir = tmp / "destdir"
    # --no-rebuild: meson test has built everything already, and other tests are running
    # out of this build directory; installing must not start ninja underneath them.
    run([args.meson, "install", "-C", args.build_root, "--no-rebuild", "--quiet", "--destdir", destdir])

    pcs = sorted(destdir.rglob("pkgconfig/drover.pc"))
    libs = sorted(destdir.rglob("libdrover.so"))
    if len(pcs) != 1 or len(libs) != 1:
        raise RuntimeError(f"expected one drover.pc and one libdrover.so under the destdir, found {pcs} and {libs}")
    print(f"installed: {pcs[0].relative_to(destdir)}:\n{pcs[0].read_text().rstrip()}")

    # The .pc names the final prefix (/usr/local...); the sysroot rewrites its -I and -L
    # into the destdir, as for a staged install. fmt is still found in the system's own
    # pkg-config directories.
    env = dict(os.environ, PKG_CONFIG_PATH=str(pcs[0].parent), PKG_CONFIG_SYSROOT_DIR=str(destdir))
    env.pop("PKG_CONFIG_LIBDIR", None)
    flags = run([args.pkg_config, "--cflags", "--libs", "drover"], env=env).split()

    exe = tmp / "consumer"
    run(compiler + ["-std=c++20", args.source, "-o", exe] + flags + shlex.split(args.extra_flags))

    # The installed library, not the build tree's: LD_LIBRARY_PATH into the destdir.
    run_env = dict(os.environ, LD_LIBRARY_PATH=str(libs[0].parent))
    out = run([exe], env=run_env).splitlines()
    maps = run(["ldd", exe], env=run_env) if shutil.which("ldd") else ""
    if maps and str(libs[0].parent) not in maps:
        raise RuntimeError("the program did not load the installed libdrover.so")
    expect_output(out, EXPECTED)
    return "installed package: built and ran a pkg-config-only program"


if __name__ == "__main__":
    sys.exit(main())
