#!/usr/bin/python3
"""The reference of `graphd-bench cluster`: python-igraph's Leiden alone on
the evidence graph graphd clusters (see the top of cluster.c).

    leiden_ref.py TIES.bin [--resolution 0.1] [--beta 0.01] [--iterations -1]
                  [--seed 1] [--rng python|c] [--max-iterations 100]

TIES.bin, written by graphd-bench (cluster.c, ties_write), little-endian:

    8 bytes  magic b"GDTIES01"
    int64    n   vertices (sellers 0..n-1, the worker's seller indices)
    int64    m   edges (ties), each undirected edge once, u < v, in the
                 order the worker hands them to igraph (gd_ig_graph_new:
                 CSR row order)
    int32[m] u, then int32[m] v, then float64[m] w (the tie weights)

Columnar, so the `array` module reads each column in one call (numpy is
not needed and usually not installed next to Debian's python3-igraph).

Only the community_leiden calls are timed (leiden_seconds); reading the
file and building the igraph.Graph is load_seconds. The Leiden settings are
the clustering worker's defaults (graphd/worker/worker.h, community.h):
CPM, resolution 0.1, beta 0.01, no node weights, seed 1, and iterations -1
= "until stable" as the worker does it (algorithms/igraph_bridge.c,
run_leiden): igraph 0.10.2's own negative n_iterations stops after the
first iteration that changes anything (igraph issue #2798), so the worker
calls igraph one iteration at a time (start from the previous membership)
until an iteration leaves the partition unchanged, at most 100 iterations.
This script does the same with community_leiden(n_iterations=1,
initial_membership=previous); the partition comparison between calls is
not timed. --iterations N > 0 makes one call with n_iterations=N instead.

The RNG: python-igraph draws igraph's random numbers from Python's `random`
module (igraph.set_random_number_generator); random.seed(seed) seeds it
(--rng python, the default). --rng c uses igraph's own C generator (PCG32,
as the worker does; python-igraph cannot seed it, so runs are not
reproducible).

Prints one JSON line: leiden_seconds, load_seconds, clusters, quality (the
CPM quality as igraph reports it: (2 W_in - resolution sum_c n_c^2) / (2 W),
computed here for the final membership), modularity (weighted, resolution
1), iterations, peak_rss_bytes (getrusage ru_maxrss * 1024, the whole
process), and more.
"""
import argparse
import array
import inspect
import itertools
import json
import math
import random
import resource
import struct
import sys
import time

import igraph

MAGIC = b"GDTIES01"


def load(path):
    with open(path, "rb") as f:
        hdr = f.read(24)
        if len(hdr) != 24:
            raise SystemExit("leiden_ref.py: %s: short header" % path)
        magic, n, m = struct.unpack("<8sqq", hdr)
        if magic != MAGIC:
            raise SystemExit("leiden_ref.py: %s: not a graphd-bench ties file" % path)
        cols = []
        for code in ("i", "i", "d"):
            a = array.array(code)
            if a.itemsize != (4 if code == "i" else 8):
                raise SystemExit("leiden_ref.py: array('%s') has itemsize %d" % (code, a.itemsize))
            a.fromfile(f, m)
            if sys.byteorder != "little":
                a.byteswap()
            cols.append(a)
        if f.read(1):
            raise SystemExit("leiden_ref.py: %s: trailing bytes" % path)
    return n, m, cols[0], cols[1], cols[2]


def canonical(membership):
    """Cluster labels renumbered by first appearance (as the worker's
    gd_membership_canonical), so equal partitions give equal lists."""
    ids = {}
    return [ids.setdefault(c, len(ids)) for c in membership]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ties")
    ap.add_argument("--resolution", type=float, default=0.1)
    ap.add_argument("--beta", type=float, default=0.01)
    ap.add_argument("--iterations", type=int, default=-1)
    ap.add_argument("--max-iterations", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rng", choices=("python", "c"), default="python")
    a = ap.parse_args()
    if a.iterations == 0:
        raise SystemExit("leiden_ref.py: --iterations must be non-zero")

    t0 = time.perf_counter()
    n, m, u, v, w = load(a.ties)
    g = igraph.Graph(n=n, edges=zip(u, v), directed=False)
    del u, v
    load_s = time.perf_counter() - t0
    if g.ecount() != m:
        raise SystemExit("leiden_ref.py: graph has %d edges, file %d" % (g.ecount(), m))

    # python-igraph 0.10.2 names it resolution_parameter; later versions
    # accept resolution.
    params = inspect.signature(igraph.Graph.community_leiden).parameters
    res_kw = "resolution" if "resolution" in params else "resolution_parameter"
    kw = {"objective_function": "CPM", "weights": w, res_kw: a.resolution, "beta": a.beta}

    if a.rng == "python":
        igraph.set_random_number_generator(random)
        random.seed(a.seed)
    else:
        igraph.set_random_number_generator(None)

    calls = []
    t_wall = time.perf_counter()
    if a.iterations > 0:
        t = time.perf_counter()
        cl = g.community_leiden(n_iterations=a.iterations, **kw)
        calls.append(time.perf_counter() - t)
        iterations = a.iterations
    else:
        prev = list(range(n))  # the singletons the first call starts from
        cl = None
        iterations = 0
        while iterations < a.max_iterations:
            t = time.perf_counter()
            cl = g.community_leiden(n_iterations=1,
                                    initial_membership=None if cl is None else cl.membership,
                                    **kw)
            calls.append(time.perf_counter() - t)
            iterations += 1
            cur = canonical(cl.membership)
            if cur == prev:
                break
            prev = cur
    leiden_wall = time.perf_counter() - t_wall

    t = time.perf_counter()
    total = math.fsum(w)
    inside = math.fsum(itertools.compress(w, (not x for x in cl.crossing())))
    sizes = cl.sizes()
    quality = None
    if total:
        quality = (2 * inside - a.resolution * sum(s * s for s in sizes)) / (2 * total)
    modularity = cl.q if total else None
    figures_s = time.perf_counter() - t

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "leiden_seconds": sum(calls),
        "leiden_wall_seconds": leiden_wall,
        "call_seconds": calls,
        "load_seconds": load_s,
        "figures_seconds": figures_s,
        "n": n,
        "m": m,
        "clusters": len(sizes),
        "singletons": sum(1 for s in sizes if s == 1),
        "largest_cluster": max(sizes) if sizes else 0,
        "quality": quality,
        "modularity": modularity,
        "iterations": iterations,
        "mode": ("until stable: n_iterations=1 calls" if a.iterations < 0
                 else "one call, n_iterations=%d" % a.iterations),
        "resolution": a.resolution,
        "beta": a.beta,
        "seed": a.seed if a.rng == "python" else None,
        "rng": a.rng,
        "peak_rss_bytes": rss,
        "igraph_version": igraph.__version__,
        "python_version": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
