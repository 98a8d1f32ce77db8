#!/usr/bin/env python3
"""Plots drover-bench supervise-peers results (its --json file) with gnuplot: one PNG per
measure, the median of each contender as a bar per N, log scale where the peers differ by
orders of magnitude.

    tools/dev/plot_supervise.py bench.json docs/perf
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

MEASURES = {
    "supervise-peers: start all": ("start-all", "ms to every service running", True),
    "supervise-peers: supervisor memory per service (PSS / N)": ("memory-per-service", "KiB of PSS per service", True),
    "supervise-peers: restart after kill -9": ("restart", "us from kill -9 to the new process", True),
    "supervise-peers: stop all": ("stop-all", "ms until no service process is left", True),
}


def main(src, out_dir):
    j = json.load(open(src))
    os.makedirs(out_dir, exist_ok=True)
    for b in j["benchmarks"]:
        if b["name"] not in MEASURES:
            continue
        slug, ylabel, log = MEASURES[b["name"]]
        rows = {}  # contender -> {N: median}
        sizes = []
        for key, vals in b["samples"].items():
            if not vals:
                continue
            name, n = key.rsplit(" N=", 1)
            n = int(n)
            sizes.append(n)
            rows.setdefault(name, {})[n] = statistics.median(vals)
        sizes = sorted(set(sizes))
        names = list(rows)
        with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as d:
            d.write("N " + " ".join(f'"{n}"' for n in names) + "\n")
            for n in sizes:
                d.write(f"{n} " + " ".join(str(rows[c].get(n, "?")) for c in names) + "\n")
        png = os.path.join(out_dir, f"supervise-peers-{slug}.png")
        cols = ", ".join(f"'{d.name}' using {i + 2}:xtic(1) title columnheader" for i in range(len(names)))
        gp = (f"set terminal png noenhanced size 1000,460 font ',10'; set output '{png}';"
              f"set title '{b['name']}: median per N, lower is better'; set ylabel '{ylabel}';"
              "set style data histograms; set style histogram clustered gap 1; set style fill solid 0.7;"
              "set key outside right top; set grid ytics; set xlabel 'services (N)';"
              + ("set logscale y;" if log else "set yrange [0:*];") + f"plot {cols}")
        subprocess.run(["gnuplot", "-e", gp], check=True)
        os.unlink(d.name)
        print(png)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
