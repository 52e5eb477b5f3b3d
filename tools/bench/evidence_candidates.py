#!/usr/bin/python3
"""Evidence weightings measured against each other on generated marketplaces.

The comparison behind algorithms/evidence.h's rule (docs/ARCHITECTURE.md,
"Evidence weighting"). For each sellergen network given, each candidate
projects sellers onto a weighted seller-seller graph (default hub caps,
default type weights, direct links 1.0), python-igraph's Leiden (CPM)
clusters it at each resolution of a grid, and the best pair F1 is reported
with its ring recovery and honest share (tools/bench/detection.py scores).

  newman     w(t) / (n - 1)                  Newman 2001, PRE 64 016132
  ra         w(t) / n                        resource allocation, Zhou et al. 2009
  rarity     w(t) / log2(1 + n)              graphd's previous rule
  validated  a pair is tied (weight = shared entities) only when the number
             of entities it shares is unlikely given both sellers' degrees
             (hypergeometric tail, Bonferroni 0.01); Tumminello et al. 2011
  corroborated  the rule of algorithms/evidence.h, computed here in Python
             on the whole entity's sellers (the daemon samples 64)

  /usr/bin/python3 tools/bench/evidence_candidates.py DIR...

DIR: a sellergen --out directory. Needs python3-igraph.
"""

import collections
import math
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import detection  # noqa: E402

TW = {1: 1.0, 2: 0.8, 3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0, 7: 0.5}
CAPS = detection.DEFAULT_CAPS
RESOLUTIONS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
FULL, MIN_WEIGHT = 0.1, 0.2


def load(truth):
    keys = sorted(truth.kind)
    idx = {k: i for i, k in enumerate(keys)}
    ent = collections.defaultdict(set)
    links = set()
    for at, ak, bt, bk in truth.links():
        if bt == 1:
            a, b = idx[ak], idx[bk]
            if a != b:
                links.add((min(a, b), max(a, b)))
        else:
            ent[(bt, bk)].add(idx[ak])
    return keys, ent, links


def corroboration(ent, links, n_sellers):
    """c of every entity of >= 3 sellers under its cap (evidence.h)."""
    of = collections.defaultdict(list)
    for e, s in ent.items():
        if 2 <= len(s) <= CAPS[e[0]]:
            for x in s:
                of[x].append(e)
    nbr = collections.defaultdict(set)
    for a, b in links:
        nbr[a].add(b)
        nbr[b].add(a)
    c = {}
    for e, s in ent.items():
        if not 3 <= len(s) <= CAPS[e[0]]:
            continue
        k = len(s)
        cnt = collections.Counter(f for x in s for f in of[x] if f != e)
        mass = sum(len(nbr[x] & s) for x in s) / 2
        for f, m in cnt.items():
            nf = len(ent[f])
            mass += TW[f[0]] * max(0.0, m * (m - 1) / 2 - nf * (nf - 1) / 2 * (k / n_sellers) ** 2)
        c[e] = min(1.0, mass / (k * (k - 1) / 2))
    return c


def log_hyper_tail(k, n, ka, kb):
    """P(X >= k) for X ~ Hypergeometric(n, ka, kb)."""
    def lc(a, b):
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)
    terms = [lc(ka, x) + lc(n - ka, kb - x) - lc(n, kb) for x in range(k, min(ka, kb) + 1)]
    if not terms:
        return 0.0
    top = max(terms)
    return math.exp(top) * sum(math.exp(t - top) for t in terms)


def project(rule, ent, links, n_sellers):
    acc = collections.Counter()
    if rule == "validated":
        deg = collections.Counter(x for s in ent.values() for x in s)
        shared = collections.Counter()
        for e, s in ent.items():
            if 2 <= len(s) <= CAPS[e[0]]:
                ss = sorted(s)
                for i in range(len(ss)):
                    for j in range(i + 1, len(ss)):
                        shared[(ss[i], ss[j])] += 1
        cut = 0.01 / max(1, len(shared))
        for (a, b), k in shared.items():
            if log_hyper_tail(k, len(ent), deg[a], deg[b]) < cut:
                acc[(a, b)] += k
    else:
        c = corroboration(ent, links, n_sellers) if rule == "corroborated" else {}
        for e, s in ent.items():
            n, t = len(s), e[0]
            if n < 2 or n > CAPS[t]:
                continue
            if rule == "newman":
                w = TW[t] / (n - 1)
            elif rule == "ra":
                w = TW[t] / n
            elif rule == "rarity":
                w = TW[t] / math.log2(1 + n)
            else:
                nw = 1.0 / (n - 1)
                w = TW[t] * (nw + (1 - nw) * min(1.0, c.get(e, 0.0) / FULL))
                if w <= MIN_WEIGHT:
                    continue
            ss = sorted(s)
            for i in range(len(ss)):
                for j in range(i + 1, len(ss)):
                    acc[(ss[i], ss[j])] += w
    for a, b in links:
        acc[(a, b)] += 1.0
    return acc


def main():
    import igraph
    for d in sys.argv[1:]:
        truth = detection.Truth(d)
        keys, ent, links = load(truth)
        print("## %s" % d)
        print("| candidate | best resolution | pair F1 | precision | recall | ring recovery "
              "| honest share |")
        print("|---|---|---|---|---|---|---|")
        for rule in ("newman", "ra", "rarity", "validated", "corroborated"):
            acc = project(rule, ent, links, len(keys))
            g = igraph.Graph(n=len(keys), edges=list(acc.keys()))
            best = None
            for res in RESOLUTIONS:
                random.seed(1)
                igraph.set_random_number_generator(random)
                part = g.community_leiden(objective_function="CPM", weights=list(acc.values()),
                                          resolution_parameter=res, beta=0.01, n_iterations=5)
                s = detection.score_partition(
                    truth, {k: part.membership[i] for i, k in enumerate(keys)})
                if best is None or s["f1"] > best[1]["f1"]:
                    best = (res, s)
            res, s = best
            print("| %s | %g | %.3f | %.3f | %.3f | %.3f | %.4f |" % (
                rule, res, s["f1"], s["precision"], s["recall"], s["recovery"],
                s["honest_share"]), flush=True)


if __name__ == "__main__":
    main()
