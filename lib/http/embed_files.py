#!/usr/bin/env python3
"""Writes the C++ definition of drover::detail::static_files() (lib/http/static_files.hpp) from
files given as URL_PATH=FILE: each file's bytes become a char array, served at URL_PATH with the
content type its extension says. Run by meson at build time: no file is copied by hand."""
import os
import sys

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def main():
    out, pairs = sys.argv[1], sys.argv[2:]
    lines = ['#include "static_files.hpp"', "", "namespace drover::detail {", "", "namespace {", ""]
    entries = []
    for i, pair in enumerate(pairs):
        url, path = pair.split("=", 1)
        ext = os.path.splitext(path)[1]
        if ext not in TYPES:
            sys.exit(f"embed_files.py: {path}: no content type for '{ext}'")
        data = open(path, "rb").read()
        body = ",".join(str(b if b < 128 else b - 256) for b in data)  # char may be signed
        lines.append(f"constexpr char file{i}[] = {{{body}{',' if data else ''}0}};")
        entries.append(f'    {{"{url}", "{TYPES[ext]}", std::string_view(file{i}, {len(data)})}},')
    lines += ["", "constexpr static_file files[] = {", *entries, "};", "", "} // namespace", ""]
    lines += ["std::span<const static_file> static_files() noexcept {", "    return files;", "}", ""]
    lines += ["} // namespace drover::detail", ""]
    with open(out, "w") as f:
        f.write("\n".join(lines))


main()
