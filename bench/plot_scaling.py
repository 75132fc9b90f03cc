#!/usr/bin/env python3
"""bench/plot_scaling.py: renders scaling_bench's CSV as a speedup plot (PNG).

x: workers; y: speedup over 1 worker, with the ideal line (speedup = workers)
for reference; each point is labelled with its efficiency. The CSV is what
`scaling_bench --csv PATH` writes: '#' comment lines (the first one becomes the
subtitle), then a header with at least the columns workers, speedup and
efficiency.

Uses matplotlib if it can be imported; if not (a pyenv or venv python3, say)
but Debian's /usr/bin/python3 has it (apt-get install python3-matplotlib),
reruns itself with that; else gnuplot (through subprocess) if it is on PATH;
exits 1 if there is none of them.

    build-bench/bench/scaling_bench --csv bench/results/scaling-2cpu.csv
    python3 bench/plot_scaling.py bench/results/scaling-2cpu.csv \\
        [-o bench/results/scaling-2cpu.png] [--title TITLE]
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile


def read_csv(path):
    """Returns (comment lines without their '#', rows as dicts of floats)."""
    comments, lines = [], []
    with open(path, newline="") as f:
        for line in f:
            if line.startswith("#"):
                comments.append(line[1:].strip())
            elif line.strip():
                lines.append(line)
    rows = []
    for rec in csv.DictReader(lines):
        rows.append({k: float(v) for k, v in rec.items()})
    if not rows:
        sys.exit(f"plot_scaling.py: no data rows in {path}")
    for col in ("workers", "speedup", "efficiency"):
        if col not in rows[0]:
            sys.exit(f"plot_scaling.py: {path} has no '{col}' column")
    return comments, rows


def plot_matplotlib(rows, out, title, subtitle):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = [r["workers"] for r in rows]
    s = [r["speedup"] for r in rows]
    top = max(max(w), max(s))
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    # On top (zorder), so that it stays visible where the data lie on it.
    ax.plot([0, top], [0, top], "--", color="grey", label="ideal (speedup = workers)", zorder=3)
    ax.plot(w, s, "o-", color="tab:blue", label="chronos")
    for r in rows:
        ax.annotate(
            f"{r['efficiency'] * 100:.0f}%",
            (r["workers"], r["speedup"]),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=8,
        )
    ax.set_xlim(0, top + 0.5)
    ax.set_ylim(0, top + 0.5)
    ax.set_xticks(range(0, int(top) + 1))
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup over 1 worker")
    ax.set_title(title)
    if subtitle:
        fig.text(0.5, 0.01, subtitle, ha="center", fontsize=7, color="dimgrey")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out)


def plot_gnuplot(rows, out, title, subtitle):
    top = max(max(r["workers"] for r in rows), max(r["speedup"] for r in rows))
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as dat:
        for r in rows:
            dat.write(f"{r['workers']} {r['speedup']} {r['efficiency'] * 100:.0f}%\n")
    quote = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')
    script = f"""
set terminal pngcairo size 640,480 noenhanced
set output "{quote(out)}"
set title "{quote(title)}\\n{quote(subtitle)}"
set xlabel "workers"
set ylabel "speedup over 1 worker"
set xrange [0:{top + 0.5}]
set yrange [0:{top + 0.5}]
set xtics 1
set grid
set key top left
plot x with lines dashtype 2 lc "grey" title "ideal (speedup = workers)", \\
     "{quote(dat.name)}" using 1:2 with linespoints pt 7 lc "blue" title "chronos", \\
     "{quote(dat.name)}" using 1:2:3 with labels offset 2,-1 font ",8" notitle
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    finally:
        os.unlink(dat.name)


def have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def system_python_with_matplotlib():
    """/usr/bin/python3 if it is not this interpreter and can import matplotlib."""
    cand = "/usr/bin/python3"
    if os.environ.get("PLOT_SCALING_REEXEC") or not os.access(cand, os.X_OK):
        return None
    if os.path.realpath(cand) == os.path.realpath(sys.executable):
        return None
    probe = subprocess.run([cand, "-c", "import matplotlib"], capture_output=True)
    return cand if probe.returncode == 0 else None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", help="scaling_bench --csv output")
    p.add_argument("-o", "--output", help="PNG to write (default: the CSV's name with .png)")
    p.add_argument("--title", default="chronos: CPU-bound fan-out, speedup vs workers")
    a = p.parse_args()
    out = a.output or os.path.splitext(a.csv)[0] + ".png"
    comments, rows = read_csv(a.csv)
    subtitle = comments[0] if comments else ""
    if have_matplotlib():
        plot_matplotlib(rows, out, a.title, subtitle)
    elif python := system_python_with_matplotlib():
        os.environ["PLOT_SCALING_REEXEC"] = "1"
        os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])
    elif shutil.which("gnuplot"):
        plot_gnuplot(rows, out, a.title, subtitle)
    else:
        sys.exit(
            "plot_scaling.py: needs matplotlib (apt-get install python3-matplotlib) or gnuplot"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
