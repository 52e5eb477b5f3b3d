#!/usr/bin/python3
"""Draws the cost curve of `graphd-bench scale` as one SVG file.

Usage: scale_plot.py BENCH_OUTPUT -o FILE.svg

BENCH_OUTPUT is what graphd-bench printed (its last line is the JSON
report; "-" reads standard input). One panel per figure, sellers on the
x axis, both axes logarithmic, the measured points and the fitted line
y = a * sellers^b with b in the panel's title. Standard library only.
"""
import argparse
import json
import math
import sys

PANELS = [
    ("ingest_links_per_s", "Ingest, links/s", "{:,.0f}"),
    ("data_dir_bytes", "Data dir, MiB", None),
    ("get_entity_cpu_us", "GetEntity, CPU µs/call", "{:,.0f}"),
    ("linked2_cpu_us", "2-hop LinkedSellers, CPU µs/call", "{:,.0f}"),
    ("job_s", "Clustering job, s", "{:,.1f}"),
    ("worker_peak_rss_bytes", "Worker peak RSS, MiB", None),
    ("stream_assignments_per_s", "StreamAssignments, /s", "{:,.0f}"),
    ("linked2_p50_us", "2-hop LinkedSellers, p50 µs", "{:,.0f}"),
]
MIB = ("data_dir_bytes", "worker_peak_rss_bytes")
W, H = 300, 210          # one panel
ML, MR, MT, MB = 62, 14, 40, 36
COLS = 4


def report(path):
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    for line in reversed(text.splitlines()):
        if line.startswith('{"bench"'):
            return json.loads(line)["bench"]
    sys.exit("scale_plot.py: no graphd-bench JSON line in %s" % path)


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(xs, ys):
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    n = len(xs)
    mx, my = sum(lx) / n, sum(ly) / n
    sxx = sum((a - mx) ** 2 for a in lx)
    if n < 2 or sxx == 0:
        return None
    b = sum((a - mx) * (c - my) for a, c in zip(lx, ly)) / sxx
    return b, math.exp(my - b * mx)


def panel(out, ox, oy, pts, key, title, fmt):
    xy = [(p["sellers"], p[key]) for p in pts
          if isinstance(p.get(key), (int, float)) and p[key] > 0]
    if key in MIB:
        xy = [(x, y / 1048576.0) for x, y in xy]
    out.append('<g transform="translate(%d,%d)">' % (ox, oy))
    out.append('<rect x="0" y="0" width="%d" height="%d" fill="#fff" stroke="#ccc"/>' % (W, H))
    f = fit([x for x, _ in xy], [y for _, y in xy]) if len(xy) >= 2 else None
    head = title + ("  (b = %.2f)" % f[0] if f else "")
    out.append('<text x="%d" y="16" font-size="11" font-weight="bold">%s</text>' % (8, esc(head)))
    if not xy:
        out.append('<text x="%d" y="%d" font-size="11">not measured</text>' % (ML, H // 2))
        out.append("</g>")
        return
    lx0, lx1 = math.log10(min(x for x, _ in xy)), math.log10(max(x for x, _ in xy))
    ly0, ly1 = math.log10(min(y for _, y in xy)), math.log10(max(y for _, y in xy))
    if lx1 - lx0 < 1e-9:
        lx0, lx1 = lx0 - 0.5, lx1 + 0.5
    pad = max((ly1 - ly0) * 0.15, 0.1)
    ly0, ly1 = ly0 - pad, ly1 + pad
    pw, ph = W - ML - MR, H - MT - MB

    def px(x):
        return ML + (math.log10(x) - lx0) / (lx1 - lx0) * pw

    def py(y):
        return MT + ph - (math.log10(y) - ly0) / (ly1 - ly0) * ph

    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>' % (ML, MT + ph, ML + pw, MT + ph))
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>' % (ML, MT, ML, MT + ph))
    for x, _ in xy:
        label = "%gM" % (x / 1e6) if x >= 1e6 else "%gk" % (x / 1e3)
        out.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%s</text>'
                   % (px(x), MT + ph + 14, label))
    out.append('<text x="%d" y="%d" font-size="10" text-anchor="middle" fill="#555">sellers (log)</text>'
               % (ML + pw // 2, H - 6))
    for y in (10 ** ly0, 10 ** ((ly0 + ly1) / 2), 10 ** ly1):
        text = (fmt or "{:,.0f}").format(y) if y >= 10 else "{:.2g}".format(y)
        out.append('<text x="%d" y="%.1f" font-size="10" text-anchor="end">%s</text>'
                   % (ML - 4, py(y) + 3, esc(text)))
    if f:
        b, a = f
        x0, x1 = 10 ** lx0, 10 ** lx1
        out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#d62728" '
                   'stroke-dasharray="4 3"/>' % (px(x0), py(a * x0 ** b), px(x1), py(a * x1 ** b)))
    pl = " ".join("%.1f,%.1f" % (px(x), py(y)) for x, y in xy)
    out.append('<polyline points="%s" fill="none" stroke="#1f77b4" stroke-width="1.5"/>' % pl)
    for x, y in xy:
        out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="#1f77b4"/>' % (px(x), py(y)))
    out.append("</g>")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_output")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    b = report(args.bench_output)
    if b.get("mode") != "scale" or "scale" not in b:
        sys.exit("scale_plot.py: not a graphd-bench scale report (mode %r)" % b.get("mode"))
    pts = b["scale"]["points"]
    rows = (len(PANELS) + COLS - 1) // COLS
    tw, th = COLS * (W + 10) + 10, rows * (H + 10) + 50
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif">' % (tw, th),
           '<rect width="100%" height="100%" fill="#f7f7f7"/>',
           '<text x="10" y="22" font-size="14" font-weight="bold">graphd cost curve</text>',
           '<text x="10" y="38" font-size="11" fill="#444">%s; git %s; %s</text>'
           % (esc(b.get("command", "")), esc(str(b.get("machine", {}).get("git", "?"))),
              "dashed: fitted y = a * sellers^b")]
    for i, (key, title, fmt) in enumerate(PANELS):
        panel(out, 10 + (i % COLS) * (W + 10), 50 + (i // COLS) * (H + 10), pts, key, title, fmt)
    out.append("</svg>")
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
