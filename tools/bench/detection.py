#!/usr/bin/python3
"""Detection quality of graphd on generated marketplaces, through the daemon.

One module for the quality gates (tests/blackbox/test_detection.py) and for
the comparison table (run it as a program). Everything goes through a real
graphd: the network is ingested, clustered with a spec, and read back with
StreamAssignments, GetCluster, RankSuspects and LinkedSellers; the answers
are scored against sellergen's ground truth (truth.csv: kind and group of
every seller; rings.csv: each ring's warehouse; hubs.csv: shared addresses
and IPs that belong to no group).

Measures, for one clustering:
  ring recovery    mean over rings, weighted by ring size, of the best
                   Jaccard between the ring and any cluster
  pair P / R / F1  pairs of sellers in one true group (ring, family or
                   franchise chain) against pairs in one cluster
  honest share     sellers of no ring inside the rings' best clusters, over
                   all sellers of those clusters
  warehouse top 3  rings whose warehouse is among the top 3 supply sources
                   (GetCluster top_shared) of the ring's best cluster
and, for the daemon's default evidence rule:
  AUC              RankSuspects (after a clustering, so that sellers the
                   walk cannot reach are ranked by group) seeded with the
                   `counterfeit` label (false labels included), by the
                   reply's order: unlabelled ring members against
                   unlabelled sellers of no ring (unlisted sellers tie last)
  evidence         LinkedSellers (2 hops) from up to 50 labelled ring
                   members: evidence entities that GetEntity says are hubs
                   or context (must be none), and citations of shared
                   non-group crowds (hubs.csv entries of 6+ sellers)

As a program: for each profile, seed and size, the table of four settings
(the daemon's defaults; the previous defaults, evidence rule RARITY with
resolution 0.1; python-igraph's Leiden (modularity) on the plain
seller-seller projection, the number of shared entities per pair, default
hub caps applied to bound its cost; and the best fixed spec of a sweep over
uniform hub caps and resolutions under the previous rule, best by mean pair
F1 over all cells), then the sweep's top specs.

  PYTHONPATH=build/proto /usr/bin/python3 tools/bench/detection.py \\
      --graphd build/graphd/graphd --sellergen build/tools/gen/sellergen \\
      --profiles classic,heavy,adversarial --seeds 1,2,3 --sizes 10000

Needs Debian's python3-grpcio, python3-protobuf and (for the naive
reference) python3-igraph.
"""

import argparse
import collections
import csv
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

CROWD_MIN = 6  # a shared non-group entity with this many sellers is a crowd
LINKED_FROM = 50

TYPE_NUM = {"seller": 1, "address": 2, "payment_account": 3, "device": 4, "phone": 5,
            "email": 6, "ip": 7}
DEFAULT_CAPS = {2: 500, 3: 200, 4: 200, 5: 100, 6: 100, 7: 100}


# ------------------------------------------------------------- ground truth

class Truth:
    """sellergen's files: sellers, groups, rings' warehouses, crowds."""

    def __init__(self, d):
        self.dir = d
        self.kind, self.group, self.ring, self.labelled = {}, {}, {}, {}
        with open(os.path.join(d, "truth.csv"), newline="") as f:
            for r in csv.DictReader(f):
                k = r["seller_key"]
                self.ring[k] = int(r["ring"])
                self.labelled[k] = r["labelled"] == "1"
                # classic files before kind/group existed: rings only
                self.kind[k] = r.get("kind") or ("ring" if self.ring[k] else "honest")
                self.group[k] = int(r.get("group") or self.ring[k])
        self.warehouse = {}
        with open(os.path.join(d, "rings.csv"), newline="") as f:
            for r in csv.DictReader(f):
                self.warehouse[int(r["ring"])] = r["warehouse_key"]
        self.crowds = {}
        with open(os.path.join(d, "hubs.csv"), newline="") as f:
            for r in csv.DictReader(f):
                if int(r["sellers"]) >= CROWD_MIN:
                    self.crowds[(TYPE_NUM[r["type"]], r["key"])] = int(r["sellers"])
        self.rings = collections.defaultdict(set)
        self.groups = collections.defaultdict(set)
        for k, g in self.group.items():
            if g:
                self.groups[g].add(k)
            if self.ring[k]:
                self.rings[self.ring[k]].add(k)

    def links(self):
        """(a_type, a_key, b_type, b_key) rows of links.csv."""
        with open(os.path.join(self.dir, "links.csv"), newline="") as f:
            for r in csv.DictReader(f):
                yield TYPE_NUM[r["a_type"]], r["a_key"], TYPE_NUM[r["b_type"]], r["b_key"]


def _pairs(n):
    return n * (n - 1) // 2


def score_partition(truth, cluster_of):
    """Scores {seller key: cluster id} against the truth (see the module
    docstring). Returns a dict."""
    members = collections.defaultdict(set)
    for k, c in cluster_of.items():
        members[c].add(k)
    pred = sum(_pairs(len(m)) for m in members.values())
    true = sum(_pairs(len(g)) for g in truth.groups.values())
    tp = 0
    for m in members.values():
        cnt = collections.Counter(truth.group[k] for k in m if truth.group[k])
        tp += sum(_pairs(x) for x in cnt.values())
    p = tp / pred if pred else 1.0
    r = tp / true if true else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    best, acc, total = {}, 0.0, 0
    for ring, keys in truth.rings.items():
        cands = collections.Counter(cluster_of[k] for k in keys)
        j, c = max((len(keys & members[c]) / len(keys | members[c]), -c) for c in cands)
        best[ring] = (-c, j)
        acc += j * len(keys)
        total += len(keys)
    ring_clusters = {c for c, _ in best.values()}
    inside = sum(len(members[c]) for c in ring_clusters)
    honest = sum(1 for c in ring_clusters for k in members[c] if not truth.ring[k])
    return {"recovery": acc / total if total else 1.0, "precision": p, "recall": r, "f1": f1,
            "honest_share": honest / inside if inside else 0.0, "honest_in_rings": honest,
            "rings": len(truth.rings), "best": best, "members": members}


def auc(pos, neg):
    """ROC AUC with average ranks for ties (Mann-Whitney)."""
    allv = sorted([(v, 1) for v in pos] + [(v, 0) for v in neg])
    rank_sum, i, n = 0.0, 0, len(allv)
    while i < n:
        j = i
        while j < n and allv[j][0] == allv[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2.0 * sum(1 for k in range(i, j) if allv[k][1])
        i = j
    npos, nneg = len(pos), len(neg)
    return (rank_sum - npos * (npos + 1) / 2.0) / (npos * nneg) if npos and nneg else float("nan")


# ------------------------------------------------------------- the daemon

class Cell:
    """One generated network loaded into one daemon (stub + pb modules)."""

    def __init__(self, stub, pb, truth, timeout=600):
        self.stub, self.pb, self.truth, self.timeout = stub, pb, truth, timeout
        self._ids = None
        self._ent = {}

    def ref(self, t, key):
        return self.pb.EntityRef(type=t, key=key)

    def ingest(self, batch=5000):
        pb = self.pb

        def msgs():
            rows = []
            for at, ak, bt, bk_ in self.truth.links():
                rows.append(pb.LinkInput(a=self.ref(at, ak), b=self.ref(bt, bk_)))
                if len(rows) == batch:
                    yield pb.UpsertRequest(links=rows)
                    rows = []
            if rows:
                yield pb.UpsertRequest(links=rows)
            ents = [pb.EntityInput(type=1, key=k, labels=["counterfeit"])
                    for k, v in sorted(self.truth.labelled.items()) if v]
            for i in range(0, len(ents), batch):
                yield pb.UpsertRequest(entities=ents[i:i + batch])
        return self.stub.Ingest(msgs(), timeout=self.timeout)

    def ids(self):
        """seller key -> store id (GetEntity, 256 in flight)."""
        if self._ids is None:
            keys = sorted(self.truth.kind)
            out = {}
            for i in range(0, len(keys), 256):
                futs = [(k, self.stub.GetEntity.future(
                    self.pb.GetEntityRequest(ref=self.ref(1, k)), timeout=self.timeout))
                    for k in keys[i:i + 256]]
                for k, f in futs:
                    out[k] = f.result().entity.id
            self._ids = out
        return self._ids

    def entity(self, eid):
        e = self._ent.get(eid)
        if e is None:
            e = self._ent[eid] = self.stub.GetEntity(
                self.pb.GetEntityRequest(ref=self.pb.EntityRef(id=eid)),
                timeout=self.timeout).entity
        return e

    def cluster(self, **spec):
        """Runs a clustering job with spec, from singletons (warm_start OFF:
        each spec is scored on its own, never started from the previous
        job's clusters); returns the snapshot id."""
        pb = self.pb
        spec.setdefault("warm_start", pb.WARM_START_OFF)
        job = self.stub.StartClustering(
            pb.StartClusteringRequest(spec=pb.ClusteringSpec(**spec)), timeout=self.timeout)
        deadline = time.monotonic() + self.timeout
        while True:
            j = self.stub.GetJob(pb.JobRequest(job_id=job.id), timeout=self.timeout)
            if j.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("job %d still %s" % (job.id, j.stage))
            time.sleep(0.05)
        if j.state != pb.JOB_STATE_SUCCEEDED:
            raise RuntimeError("job %d: %s" % (job.id, j.reason))
        return j.snapshot_id

    def assignments(self, snap):
        """seller key -> cluster id."""
        i2k = {v: k for k, v in self.ids().items()}
        out = {}
        for b in self.stub.StreamAssignments(self.pb.StreamAssignmentsRequest(snapshot_id=snap),
                                             timeout=self.timeout):
            for s, c in zip(b.seller_ids, b.cluster_ids):
                out[i2k[s]] = c
        return out

    def warehouse_top3(self, snap, scored):
        """(rings whose warehouse is in their best cluster's top 3, rings)."""
        hit = 0
        misses = []
        for ring, (c, _) in sorted(scored["best"].items()):
            rep = self.stub.GetCluster(self.pb.GetClusterRequest(
                snapshot_id=snap, cluster_id=c, max_members=1, max_ties=1), timeout=self.timeout)
            top = [s.entity.key for s in rep.cluster.top_shared[:3]]
            if self.truth.warehouse[ring] in top:
                hit += 1
            else:
                misses.append((ring, len(self.truth.rings[ring])))
        return hit, len(scored["best"]), misses

    def suspects_auc(self):
        pb = self.pb
        rep = self.stub.RankSuspects(pb.RankSuspectsRequest(limit=10000, max_nearest=1),
                                     timeout=self.timeout)
        # The reply's order is the ranking (sellers the walk did not reach
        # follow with score 0, by group): score = places from the end.
        score = {s.seller.key: len(rep.suspects) - i for i, s in enumerate(rep.suspects)}
        pos = [score.get(k, 0.0) for k, r in self.truth.ring.items()
               if r and not self.truth.labelled[k]]
        neg = [score.get(k, 0.0) for k, r in self.truth.ring.items()
               if not r and not self.truth.labelled[k]]
        return auc(pos, neg)

    def linked_evidence(self, n=LINKED_FROM):
        """From up to n labelled ring members: (evidence citations, of them
        hubs or context by GetEntity, of them shared non-group crowds)."""
        starts = sorted(k for k, r in self.truth.ring.items() if r and self.truth.labelled[k])[:n]
        cited = bad = crowd = 0
        for k in starts:
            rep = self.stub.LinkedSellers(self.pb.LinkedSellersRequest(
                seller=self.ref(1, k), max_hops=2, limit=10000), timeout=self.timeout)
            for ls in rep.sellers:
                for st in ls.evidence:
                    for se in st.shared:
                        if se.entity.type == 1:
                            continue
                        cited += 1
                        e = self.entity(se.entity.id)
                        if e.over_hub_cap or e.evidence_context or e.evidence_weight <= 0:
                            bad += 1
                        if (e.type, e.key) in self.truth.crowds:
                            crowd += 1
        return cited, bad, crowd

    def score(self, **spec):
        snap = self.cluster(**spec)
        s = score_partition(self.truth, self.assignments(snap))
        s["snapshot"] = snap
        return s

    def measure(self):
        """Everything the gates look at, with the daemon's defaults, and the
        previous rule's clustering beside it: a dict."""
        s = self.score()
        s["warehouse_hit"], s["warehouse_rings"], s["warehouse_misses"] = \
            self.warehouse_top3(s["snapshot"], s)
        s["auc"] = self.suspects_auc()
        s["cited"], s["cited_bad"], s["cited_crowds"] = self.linked_evidence()
        s["old"] = self.score(evidence=self.pb.EVIDENCE_RULE_RARITY)
        return s


# ------------------------------------------------------------- the references

def naive_leiden(truth, seed=1):
    """python-igraph's Leiden (modularity) on the plain seller-seller
    projection: one per shared entity (default hub caps), one per direct
    link."""
    import igraph
    keys = sorted(truth.kind)
    idx = {k: i for i, k in enumerate(keys)}
    sellers = collections.defaultdict(set)
    w = collections.Counter()
    for at, ak, bt, bk in truth.links():
        if bt == 1:
            a, b = idx[ak], idx[bk]
            if a != b:
                w[(min(a, b), max(a, b))] += 1
        else:
            sellers[(bt, bk)].add(idx[ak])
    for (t, _), ss in sellers.items():
        if len(ss) < 2 or len(ss) > DEFAULT_CAPS[t]:
            continue
        ss = sorted(ss)
        for i in range(len(ss)):
            for j in range(i + 1, len(ss)):
                w[(ss[i], ss[j])] += 1
    g = igraph.Graph(n=len(keys), edges=list(w.keys()))
    random.seed(seed)
    igraph.set_random_number_generator(random)
    part = g.community_leiden(objective_function="modularity", weights=list(w.values()),
                              n_iterations=10)
    return score_partition(truth, {k: part.membership[i] for i, k in enumerate(keys)})


SWEEP_CAPS = (20, 50, 100, 0)        # 0: the default caps
SWEEP_RES = (0.01, 0.02, 0.05, 0.1)


def sweep_specs(pb):
    for cap in SWEEP_CAPS:
        for res in SWEEP_RES:
            caps = [pb.HubCap(type=t, max_sellers=cap) for t in DEFAULT_CAPS] if cap else []
            name = "rarity cap %s res %g" % (cap or "default", res)
            yield name, dict(evidence=pb.EVIDENCE_RULE_RARITY, resolution=res, hub_caps=caps)


# ------------------------------------------------------------- the program

def start_graphd(graphd, data, extra=()):
    """graphd on data (--no-audit, a free port, plus extra); -> (process,
    address)."""
    p = subprocess.Popen([graphd, "--data", data, "--listen", "127.0.0.1:0", "--no-audit"]
                         + list(extra),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if "listening on" not in line:
        p.kill()
        raise RuntimeError("graphd did not start: %r" % line)
    return p, line.split()[-1]


def fmt(s):
    return "%.3f | %.3f | %.3f | %.4f" % (s["recovery"], s["f1"], s["precision"],
                                          s["honest_share"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graphd", required=True)
    ap.add_argument("--sellergen", required=True)
    ap.add_argument("--profiles", default="classic,heavy,adversarial")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--sizes", default="10000")
    ap.add_argument("--ring-fraction", default="0.06")
    ap.add_argument("--no-sweep", action="store_true")
    a = ap.parse_args()

    import grpc
    from graphd.v1 import graphd_pb2 as pb, graphd_pb2_grpc as pbg

    tmp = tempfile.mkdtemp(prefix="graphd-detection-")
    sweep_f1 = collections.defaultdict(list)
    rows = []
    try:
        for size in a.sizes.split(","):
            for profile in a.profiles.split(","):
                for seed in a.seeds.split(","):
                    out = os.path.join(tmp, "%s-%s-%s" % (profile, size, seed))
                    subprocess.run([a.sellergen, "--profile", profile, "--sellers", size,
                                    "--seed", seed, "--ring-fraction", a.ring_fraction,
                                    "--out", out], check=True, capture_output=True)
                    truth = Truth(out)
                    proc, addr = start_graphd(a.graphd, os.path.join(out, "data"))
                    try:
                        ch = grpc.insecure_channel(addr)
                        cell = Cell(pbg.SellerGraphStub(ch), pb, truth)
                        cell.ingest()
                        new = cell.measure()
                        old = new["old"]
                        naive = naive_leiden(truth)
                        sweep = {}
                        if not a.no_sweep:
                            for name, spec in sweep_specs(pb):
                                sweep[name] = cell.score(**spec)
                                sweep_f1[name].append(sweep[name]["f1"])
                        rows.append((profile, size, seed, new, old, naive, sweep))
                        ch.close()
                    finally:
                        proc.terminate()
                        proc.wait(timeout=60)
                        shutil.rmtree(os.path.join(out, "data"), ignore_errors=True)
                    print("# %s %s seed %s done" % (profile, size, seed), file=sys.stderr,
                          flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = max(sweep_f1, key=lambda n: sum(sweep_f1[n]) / len(sweep_f1[n])) if sweep_f1 else None
    print("| profile | sellers | seed | setting | ring recovery | pair F1 | pair precision "
          "| honest share |")
    print("|---|---|---|---|---|---|---|---|")
    for profile, size, seed, new, old, naive, sweep in rows:
        print("| %s | %s | %s | new defaults | %s |" % (profile, size, seed, fmt(new)))
        print("| | | | old defaults | %s |" % fmt(old))
        print("| | | | python-igraph naive | %s |" % fmt(naive))
        if best:
            print("| | | | best fixed: %s | %s |" % (best, fmt(sweep[best])))
    print()
    print("| profile | sellers | seed | warehouse in top 3 | RankSuspects AUC | "
          "evidence cited | hub/context cited | crowds cited |")
    print("|---|---|---|---|---|---|---|---|")
    for profile, size, seed, s, _, _, _ in rows:
        print("| %s | %s | %s | %d / %d | %.4f | %d | %d | %d |"
              % (profile, size, seed, s["warehouse_hit"], s["warehouse_rings"], s["auc"],
                 s["cited"], s["cited_bad"], s["cited_crowds"]))
    if sweep_f1:
        print()
        print("sweep (previous rule), mean pair F1 over all cells:")
        for n in sorted(sweep_f1, key=lambda n: -sum(sweep_f1[n]) / len(sweep_f1[n]))[:5]:
            print("  %-32s %.3f (min %.3f)" % (n, sum(sweep_f1[n]) / len(sweep_f1[n]),
                                              min(sweep_f1[n])))


if __name__ == "__main__":
    main()
