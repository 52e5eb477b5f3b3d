#!/usr/bin/python3
"""Reference figures from python-igraph for tests/unit/test_cluster.c.

The C test runs graphd's Leiden on a reference graph and compares its
quality (NMI against the ground truth) with what python-igraph's own Leiden
gets on the same graph with the same objective and parameters. python-igraph
draws from Python's `random` module, not from igraph's C RNG, so the two
sides cannot share seeds run for run; both average over the same fixed seed
list instead.

Commands (all print `key value` lines on stdout):

  leiden-nmi --data DIR --graph NAME --seeds 1,2,3 [--iterations 2]
             [--beta 0.01] [--resolution 1]
      Leiden (modularity) once per seed (random.seed(seed) first):
      `seed S nmi X clusters K modularity Q` per seed, then `mean_nmi X`.

  nmi --data DIR --graph NAME --membership FILE
      NMI (igraph.compare_communities, method "nmi") of the membership in
      FILE (one label per line, vertex order) against the ground truth:
      `nmi X`. Cross-checks the C test's own NMI.

Graphs: `football` (1-based, both directions listed) and `email-eu-core`
(0-based, directed with loops): both read as undirected simple graphs,
vertex i of the file is vertex i (football: i - 1) here, as in the C test.

Exit status: 0 ok, 2 usage, 77 python-igraph missing (the C test skips).
"""

import argparse
import os
import random
import sys

try:
    import igraph
except ImportError:  # pragma: no cover - depends on the machine
    print("python-igraph is not installed", file=sys.stderr)
    sys.exit(77)

GRAPHS = {
    # name: (edges file, labels file, first vertex id in the files)
    "football": ("football/edges.txt", "football/labels.txt", 1),
    "email-eu-core": ("email-eu-core/email-Eu-core.txt",
                      "email-eu-core/email-Eu-core-department-labels.txt", 0),
}


def load(data, name):
    edges_file, labels_file, base = GRAPHS[name]
    edges = []
    with open(os.path.join(data, edges_file)) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                edges.append((int(parts[0]) - base, int(parts[1]) - base))
    labels = {}
    with open(os.path.join(data, labels_file)) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                labels[int(parts[0]) - base] = int(parts[1])
    n = max(max(max(e) for e in edges), max(labels)) + 1
    g = igraph.Graph(n=n, edges=edges)
    g.simplify()  # undirected simple graph: no loops, no multi-edges
    truth = [labels.get(i, -1) for i in range(n)]
    return g, truth


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["leiden-nmi", "nmi"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--graph", required=True, choices=sorted(GRAPHS))
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--beta", type=float, default=0.01)
    ap.add_argument("--resolution", type=float, default=1.0)
    ap.add_argument("--membership")
    args = ap.parse_args()

    g, truth = load(args.data, args.graph)
    if args.command == "nmi":
        if not args.membership:
            ap.error("nmi needs --membership")
        with open(args.membership) as f:
            memb = [int(x) for x in f.read().split()]
        if len(memb) != g.vcount():
            ap.error("membership has %d labels, graph %d vertices" % (len(memb), g.vcount()))
        print("nmi %.12f" % igraph.compare_communities(truth, memb, method="nmi"))
        return 0

    seeds = [int(s) for s in args.seeds.split(",") if s]
    total = 0.0
    for s in seeds:
        random.seed(s)
        c = g.community_leiden(objective_function="modularity",
                               resolution_parameter=args.resolution,
                               beta=args.beta, n_iterations=args.iterations)
        nmi = igraph.compare_communities(truth, c.membership, method="nmi")
        total += nmi
        print("seed %d nmi %.6f clusters %d modularity %.6f" % (s, nmi, len(c), c.modularity))
    print("mean_nmi %.6f" % (total / len(seeds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
