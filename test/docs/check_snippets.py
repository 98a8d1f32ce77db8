#!/usr/bin/env python3
"""Compile every C++ code block of drover's documentation.

Scans README.md, docs/*.md and the `///` comments of include/drover/*.hpp for fenced code
blocks. A ```cpp block is wrapped as its snippet comment says and compiled (a real `-c`, not
only a syntax check: GCC 12's coroutine bugs show up in code generation) with the compiler and
the flags given after `--`. A block in another known language (sh, text, json...) is counted
and left alone; a block without a language or in an unknown one fails the test, so no example
escapes by accident. The convention is described in docs/api.md ("Examples").

Snippet comment, on the line(s) right before the fence (in a header: inside the `///` comment):

    <!-- snippet: WRAPPER [given: PARAMETERS] [before: DECLARATIONS] -->

WRAPPER is one of
    coroutine  (the default for a ```cpp block without a comment) statements in the body of
               `awaitable<void> f(asio::any_io_executor ex, PARAMETERS)`
    function   statements in the body of `void f(PARAMETERS)`
    top-level  declarations at namespace scope, in a file of their own
    file       a complete translation unit, compiled as written (no prelude)
and DECLARATIONS go at namespace scope before the wrapper. Every wrapper but `file` comes after
test/docs/prelude.hpp (drover, Asio, `asio` = boost::asio, `awaitable`, `use_awaitable`, `use()`).

Exit status 0 when every snippet compiles, 1 otherwise (file, line and compiler output are
printed for each failure), 2 for a malformed document or a usage error.
"""

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CPP_LANGS = {"cpp"}
# Languages that are shown, not compiled. Anything else is an error: a typo such as "c++" or
# "cxx" must not turn an example into an unchecked one.
OTHER_LANGS = {"sh", "console", "text", "json", "toml", "ini", "yaml", "python", "meson", "diff", "dockerfile", "hcl"}
WRAPPERS = {"coroutine", "function", "top-level", "file"}

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
COMMENT_START = re.compile(r"^\s*<!--\s*snippet:(?P<rest>.*)$")


class DocError(Exception):
    """A document breaks the convention (reported as path:line)."""


@dataclass
class Snippet:
    path: str  # relative to the source root, as printed and as given to #line
    line: int  # line of the first code line
    fence_line: int
    wrapper: str
    given: str = ""
    before: str = ""
    before_line: int = 0  # lines of the comment's before: and given: (else the comment's,
    given_line: int = 0   # or the fence's without a comment), for the #line directives
    code: list = field(default_factory=list)

    def where(self):
        return f"{self.path}:{self.fence_line}"


@dataclass
class Counts:
    cpp: int = 0
    other: dict = field(default_factory=dict)
    unmarked: dict = field(default_factory=dict)  # path -> fence lines of blocks without a language


def parse_comment(text, path, line):
    """'WRAPPER [given: ...] [before: ...]' -> (wrapper, given, before, line of given:, line of before:)."""
    lines = {k: line + text[:m.start()].count("\n") for m in re.finditer(r"\b(given|before):", text) for k in [m.group(1)]}
    parts = re.split(r"\b(given|before):", text)
    head = parts[0].split()
    if len(head) != 1 or head[0] not in WRAPPERS:
        raise DocError(f"{path}:{line}: snippet comment must start with one of {sorted(WRAPPERS)}, "
                       f"got {parts[0].strip()!r}")
    fields = {"given": "", "before": ""}
    for key, value in zip(parts[1::2], parts[2::2]):
        fields[key] = value.strip()
    if fields["given"] and head[0] in ("top-level", "file"):
        raise DocError(f"{path}:{line}: 'given:' needs a coroutine or function wrapper")
    return head[0], fields["given"], fields["before"], lines.get("given", line), lines.get("before", line)


def scan(lines, path, counts, snippets):
    """lines: [(line_number, text)] of one markdown text (a .md file or a header's comments)."""
    pending = None  # (wrapper, given, before, given_line, before_line, comment_line) waiting for its fence
    i = 0
    while i < len(lines):
        number, text = lines[i]
        m = COMMENT_START.match(text)
        if m:
            if pending:
                raise DocError(f"{path}:{pending[5]}: snippet comment not followed by a code fence")
            body, start = m.group("rest"), number
            while "-->" not in body:
                i += 1
                if i == len(lines):
                    raise DocError(f"{path}:{start}: unterminated snippet comment")
                body += "\n" + lines[i][1]
            if body.split("-->", 1)[1].strip():
                raise DocError(f"{path}:{lines[i][0]}: text after the snippet comment's '-->'")
            pending = (*parse_comment(body.split("-->", 1)[0], path, start), start)
            i += 1
            continue
        m = FENCE.match(text)
        if not m:
            if pending and text.strip():
                raise DocError(f"{path}:{pending[5]}: snippet comment not followed by a code fence")
            i += 1
            continue
        indent, fence, lang = len(m.group("indent")), m.group("fence"), m.group("info")
        closing = re.compile(r"^\s*" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
        body, j = [], i + 1
        while j < len(lines) and not closing.match(lines[j][1]):
            # Content is indented like its fence (a block inside a list item).
            t = lines[j][1]
            body.append((lines[j][0], t[min(indent, len(t) - len(t.lstrip())):]))
            j += 1
        if j == len(lines):
            raise DocError(f"{path}:{number}: code fence is never closed")
        if lang in CPP_LANGS:
            wrapper, given, before, given_line, before_line, _ = pending or ("coroutine", "", "", number, number, number)
            snippets.append(Snippet(path, body[0][0] if body else number + 1, number, wrapper, given,
                                    before, before_line, given_line, [t for _, t in body]))
            counts.cpp += 1
        elif pending:
            raise DocError(f"{path}:{pending[5]}: snippet comment before a {lang or 'bare'} block (only cpp is compiled)")
        elif lang in OTHER_LANGS:
            counts.other[lang] = counts.other.get(lang, 0) + 1
        elif lang == "":
            counts.unmarked.setdefault(path, []).append(number)
        else:
            raise DocError(f"{path}:{number}: unknown code block language {lang!r}: use cpp for C++ "
                           f"(compiled) or one of {sorted(OTHER_LANGS)}")
        pending = None
        i = j + 1
    if pending:
        raise DocError(f"{path}:{pending[5]}: snippet comment not followed by a code fence")


def header_comment_runs(path, text):
    """The `///` comment blocks of a header as markdown: lists of (line_number, text)."""
    runs, run = [], []
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*///(?!/) ?(.*)$", line)
        if m:
            run.append((number, m.group(1)))
            continue
        if "```" in line or "~~~" in line:
            raise DocError(f"{path}:{number}: code fence outside a /// comment: the test would not see it")
        if run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    return runs


def collect(root):
    counts, snippets, files = Counts(), [], []
    for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        rel = p.relative_to(root).as_posix()
        files.append(rel)
        scan(list(enumerate(p.read_text(encoding="utf-8").splitlines(), 1)), rel, counts, snippets)
    for p in sorted((root / "include" / "drover").glob("*.hpp")):
        rel = p.relative_to(root).as_posix()
        files.append(rel)
        for run in header_comment_runs(rel, p.read_text(encoding="utf-8")):
            scan(run, rel, counts, snippets)
    return counts, snippets, files


def c_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrap(s, index, prelude):
    """The C++ source of one snippet; #line directives make errors point into the document."""
    out = []
    if s.wrapper != "file":
        out.append(f'#include {c_string(str(prelude))}')
    namespace = s.wrapper in ("coroutine", "function")
    if namespace:
        # One namespace per snippet, so snippets (and their declarations) can share a
        # translation unit.
        out.append(f"namespace drover_snippet_{index} {{")
    if s.before:
        out += [f"#line {s.before_line} {c_string(s.path)}", s.before]
    if namespace:
        params = s.given
        if s.wrapper == "coroutine":
            params = "[[maybe_unused]] asio::any_io_executor ex" + (", " + params if params else "")
            out.append(f"#line {s.given_line} {c_string(s.path)}")
            out.append(f"awaitable<void> snippet({params}) {{")
        else:
            out.append(f"#line {s.given_line} {c_string(s.path)}")
            out.append(f"void snippet({params}) {{")
    out.append(f"#line {s.line} {c_string(s.path)}")
    out += s.code
    if namespace:
        # Errors GCC reports at the end of the function (its coroutine bugs do) point at the
        # closing fence. A coroutine snippet without co_await would otherwise be a function
        # without a return.
        out += [f"#line {s.line + len(s.code)} {c_string(s.path)}",
                ("co_return; " if s.wrapper == "coroutine" else "") + "} }"]
    return "\n".join(out) + "\n"


def blamed(s, output):
    """Whether the compiler's output points into snippet s (its comment, code or closing fence)."""
    for m in re.finditer(r"^(?:\s*(?:from\s+)?)?(?P<path>[^\s:]+):(?P<line>\d+):", output, re.M):
        if m.group("path") == s.path and min(s.before_line, s.given_line) <= int(m.group("line")) <= s.line + len(s.code) + 1:
            return True
    return False


def compile_source(compiler, source):
    # -Wno-subobject-linkage: the #line directives make GCC believe a snippet's lambda lives in
    # another file than the one compiled, and a drover template instantiated with it (say
    # with_task_group's coroutine frame) then draws a warning no real program would get.
    cmd = compiler + ["-Wno-subobject-linkage", "-x", "c++", "-c", "-o", os.devnull, "-"]
    p = subprocess.run(cmd, input=source, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source-root", required=True, type=Path)
    ap.add_argument("--prelude", required=True, type=Path)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--allow-unmarked", action="append", default=[], metavar="PATH=COUNT",
                    help="accept exactly COUNT code blocks without a language in PATH (a file "
                         "this change may not edit); fails once the count differs, so the "
                         "allowance is dropped as soon as the blocks are marked")
    ap.add_argument("--pkg-config", nargs=2, metavar=("PKG_CONFIG_PATH", "PACKAGE"),
                    help="add `pkg-config --cflags PACKAGE` (found in PKG_CONFIG_PATH) to the flags")
    ap.add_argument("--pkg-config-exe", default="pkg-config")
    ap.add_argument("--private-include", action="append", default=[], metavar="DIR",
                    help="drop -IDIR from pkg-config's flags: meson's uninstalled .pc adds the "
                         "library's private include directories, which the installed one has not")
    ap.add_argument("--show-source", action="store_true", help="print the wrapped source of a failing snippet")
    ap.add_argument("compiler", nargs=argparse.REMAINDER, help="-- compiler and flags")
    args = ap.parse_args()
    compiler = args.compiler[1:] if args.compiler[:1] == ["--"] else args.compiler
    if not compiler:
        ap.error("no compiler given after --")
    start = time.monotonic()

    root = args.source_root.resolve()
    try:
        counts, snippets, files = collect(root)
    except DocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    allowed = {}
    for a in args.allow_unmarked:
        path, _, n = a.partition("=")
        allowed[path] = int(n)
    problems = []
    for path in sorted(set(counts.unmarked) | set(allowed)):
        found, ok = counts.unmarked.get(path, []), allowed.get(path, 0)
        if len(found) != ok:
            lines = ", ".join(str(n) for n in found)
            problems.append(f"{path}: {len(found)} code block(s) without a language"
                            + (f" (line {lines})" if found else "") + f", {ok} allowed: mark each as "
                            "cpp, sh, text... and keep --allow-unmarked in test/docs/meson.build in step")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2

    if args.pkg_config:
        env = dict(os.environ, PKG_CONFIG_PATH=args.pkg_config[0])
        p = subprocess.run([args.pkg_config_exe, "--cflags", args.pkg_config[1]], env=env, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"error: pkg-config --cflags {args.pkg_config[1]}: {p.stderr.strip()}", file=sys.stderr)
            return 2
        private = {"-I" + str(Path(d).resolve()) for d in args.private_include}
        compiler += [f for f in p.stdout.split() if not f.startswith("-I") or
                     "-I" + str(Path(f[2:]).resolve()) not in private]
    print("compiler:", " ".join(compiler))

    prelude = args.prelude.resolve()
    grouped = [(i, s) for i, s in enumerate(snippets) if s.wrapper in ("coroutine", "function")]
    alone = [(i, s) for i, s in enumerate(snippets) if s.wrapper not in ("coroutine", "function")]
    failures = {}  # snippet index -> compiler output

    def check_alone(item):
        i, s = item
        rc, out = compile_source(compiler, wrap(s, i, prelude))
        return i, rc, out

    def check_group(items):
        """Compile the statement snippets in one translation unit (most of the time goes to
        the headers). If that fails, the snippets the errors point into are compiled alone,
        for their own report, and the others again together; a failure nobody can be blamed
        for makes every snippet compile alone."""
        rc, out = compile_source(compiler, "".join(wrap(s, i, prelude) for i, s in items))
        if rc == 0:
            return []
        suspects = [(i, s) for i, s in items if blamed(s, out)]
        if not suspects:
            results = list(pool.map(check_alone, items))
            if all(rc == 0 for _, rc, _ in results):  # two snippets clash, say
                results.append((None, rc, "the statement snippets fail together but each compiles alone:\n" + out))
            return results
        rest = [item for item in items if item not in suspects]
        alone_jobs = [pool.submit(check_alone, item) for item in suspects]
        return (check_group(rest) if rest else []) + [job.result() for job in alone_jobs]

    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        jobs = [pool.submit(check_alone, item) for item in alone]
        results = check_group(grouped) if grouped else []
        results += [job.result() for job in jobs]
        for i, rc, out in results:
            if rc != 0:
                failures[i] = out

    for i in sorted(failures, key=lambda i: -1 if i is None else i):
        if i is None:
            print("\nFAILED:", file=sys.stderr)
        else:
            s = snippets[i]
            print(f"\n{s.where()}: FAILED: this {s.wrapper} snippet does not compile:", file=sys.stderr)
        lines = failures[i].rstrip().splitlines()
        shown = lines[:60]
        print("\n".join("    " + l for l in shown), file=sys.stderr)
        if len(lines) > len(shown):
            print(f"    ... ({len(lines) - len(shown)} more lines)", file=sys.stderr)
        if args.show_source:
            print("    wrapped source:\n" + wrap(s, i, prelude), file=sys.stderr)

    other = ", ".join(f"{n} {lang}" for lang, n in sorted(counts.other.items()))
    unmarked = sum(len(v) for v in counts.unmarked.values())
    by_wrapper = {}
    for s in snippets:
        by_wrapper[s.wrapper] = by_wrapper.get(s.wrapper, 0) + 1
    print(f"docs snippets: {len(snippets)} C++ snippets compiled "
          f"({', '.join(f'{n} {w}' for w, n in sorted(by_wrapper.items()))}) from {len(files)} files, "
          f"{len(failures)} failed; not compiled: {other or 'none'}"
          + (f", {unmarked} without a language (allowed)" if unmarked else "")
          + f"; {time.monotonic() - start:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
