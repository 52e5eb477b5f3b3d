"""Clustering quality gates, through the real daemon and graphd-worker.

Data: a sellergen network with planted rings (SELLERGEN_BIN; skipped
without it), 10000 sellers, seed 21, ring fraction 6%, loaded through
Ingest. Every run uses the default spec (Leiden CPM, seed 1) unless stated.

Gates (thresholds asserted, values printed for the log):
- ring recovery: mean over rings, weighted by ring size, of the best
  Jaccard between the ring and any cluster >= 0.9;
- honest sellers whose only shared entities are hubs stay out of every
  ring's cluster;
- each ring's warehouse address is among the top 3 shared entities of the
  ring's best cluster;
- determinism: the same spec and seed on the same data give byte-identical
  StreamAssignments output;
- stable ids: after adding 1% new links, at least 95% of sellers keep
  their cluster id (DiffSnapshots' summary and the assignments agree);
- DiffSnapshots reports a planted merge (two rings given common entities)
  and a planted split (a ring's shared entities deleted, its halves given
  new ones).
"""

import collections
import random

import pytest

from bbutil import ADDRESS, DEVICE, SELLER, T, expect_status, pb, ref
from test_analytics import generate, loaded_daemon, run_job
from test_investigate import ingest, report
import grpc

GEN_ARGS = ["--sellers", "10000", "--seed", "21", "--ring-fraction", "0.06"]
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def net(sellergen_bin, tmp_path_factory):
    return generate(sellergen_bin, tmp_path_factory, "sellergen-q", GEN_ARGS)


@pytest.fixture(scope="module")
def q(net, tmp_path_factory):
    yield from loaded_daemon(net, tmp_path_factory, "quality")


@pytest.fixture(scope="module")
def ids(q, net):
    """seller key -> store id, and back."""
    k2i = {}
    for key in net.truth:
        e = q.stub.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, key)), timeout=T()).entity
        k2i[key] = e.id
    return k2i, {v: k for k, v in k2i.items()}


def assignments(stub, snap=0):
    """[(seller id, cluster id)] and the raw bytes of every batch."""
    out, raw = [], []
    for b in stub.StreamAssignments(pb.StreamAssignmentsRequest(snapshot_id=snap), timeout=T(60)):
        raw.append(b.SerializeToString())
        out.extend(zip(b.seller_ids, b.cluster_ids))
    return out, b"".join(raw)


def cluster_default(stub, name):
    _, seen = run_job(stub, name=name)
    assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, (seen[-1].state, seen[-1].reason)
    return seen[-1].snapshot_id


def ring_members(net):
    rings = collections.defaultdict(set)
    for key, (ring, _) in net.truth.items():
        if ring:
            rings[ring].add(key)
    return rings


def best_clusters(net, ids, assign):
    """ring -> (best cluster id, Jaccard), and seller key -> cluster id."""
    i2k = ids[1]
    of = {i2k[s]: c for s, c in assign}
    members = collections.defaultdict(set)
    for k, c in of.items():
        members[c].add(k)
    best = {}
    for ring, keys in ring_members(net).items():
        cand = collections.Counter(of[k] for k in keys)
        scored = [(len(keys & members[c]) / len(keys | members[c]), -c) for c in cand]
        j, negc = max(scored)
        best[ring] = (-negc, j)
    return best, of


@pytest.fixture(scope="module")
def first(q, net, ids):
    sid = cluster_default(q.stub, "quality-1")
    assign, raw = assignments(q.stub, sid)
    best, of = best_clusters(net, ids, assign)
    return sid, assign, raw, best, of


def test_ring_recovery(net, first, capsys):
    _, _, _, best, _ = first
    rings = ring_members(net)
    total = sum(len(v) for v in rings.values())
    rec = sum(len(rings[r]) * best[r][1] for r in rings) / total
    report(capsys, "ring recovery (size-weighted best Jaccard) %.4f over %d rings, %d sellers"
          % (rec, len(rings), total))
    assert len(rings) >= 10
    assert rec >= 0.9


def test_hub_only_sellers_stay_out(net, first, capsys):
    _, _, _, best, of = first
    hubs = {e for e, _ in net.hub_rows}
    ring_clusters = {c for c, _ in best.values()}
    hub_only = []
    for key, (ring, _) in net.truth.items():
        if ring:
            continue
        ents = [e for e in net.adj[(SELLER, key)] if e[0] != SELLER]
        shared = [e for e in ents if net.seller_count(e) > 1]
        direct = [e for e in net.adj[(SELLER, key)] if e[0] == SELLER]
        if shared and not direct and all(e in hubs for e in shared):
            hub_only.append(key)
    inside = [k for k in hub_only if of[k] in ring_clusters]
    report(capsys, "hub-only honest sellers: %d, in a ring cluster: %d" % (len(hub_only), len(inside)))
    assert len(hub_only) >= 100
    assert inside == []


def test_warehouse_in_top3(q, net, first, capsys):
    sid, _, _, best, _ = first
    wh = {}
    for ring, ents in net.rings.items():
        wh[ring] = [e for e in ents if e[0] == ADDRESS][0]
    misses = []
    for ring, (cid, _) in sorted(best.items()):
        rep = q.stub.GetCluster(pb.GetClusterRequest(snapshot_id=sid, cluster_id=cid),
                                timeout=T())
        top = [(s.entity.type, s.entity.key) for s in rep.cluster.top_shared[:3]]
        if wh[ring] not in top:
            misses.append((ring, cid, top))
    report(capsys, "warehouse in top 3: %d of %d rings" % (len(best) - len(misses), len(best)))
    assert misses == []


def test_determinism(q, first):
    sid, assign, raw, _, _ = first
    again = cluster_default(q.stub, "quality-again")
    a2, raw2 = assignments(q.stub, again)
    m1 = q.stub.GetSnapshot(pb.SnapshotRequest(snapshot_id=sid), timeout=T())
    m2 = q.stub.GetSnapshot(pb.SnapshotRequest(snapshot_id=again), timeout=T())
    assert m1.input_checksum == m2.input_checksum
    assert raw2 == raw, "same data, spec and seed gave different assignments"
    assert m2.objective == m1.objective and m2.clusters == m1.clusters


def diff(stub, a, b, **kw):
    ev = list(stub.DiffSnapshots(pb.DiffSnapshotsRequest(from_snapshot_id=a, to_snapshot_id=b,
                                                         **kw), timeout=T(60)))
    assert ev and ev[0].kind == pb.DiffEvent.KIND_SUMMARY
    by = collections.defaultdict(list)
    for e in ev[1:]:
        by[e.kind].append(e)
    return ev[0], by


def test_diff_identical(q, first):
    sid = first[0]
    s, by = diff(q.stub, sid, sid)
    assert s.counts.sellers == s.counts.sellers_stayed == len(first[1])
    assert s.counts.sellers_moved == 0 and not by[pb.DiffEvent.KIND_MOVED]
    assert not by[pb.DiffEvent.KIND_BORN] and not by[pb.DiffEvent.KIND_DISSOLVED]
    assert s.counts.continued == len(by[pb.DiffEvent.KIND_CONTINUED]) > 0
    assert "stayed" in s.summary


def test_diff_errors(q, first):
    sid = first[0]
    expect_status(grpc.StatusCode.INVALID_ARGUMENT,
                  lambda: list(q.stub.DiffSnapshots(pb.DiffSnapshotsRequest(), timeout=T())),
                  fields=["from_snapshot_id"])
    expect_status(grpc.StatusCode.NOT_FOUND,
                  lambda: list(q.stub.DiffSnapshots(
                      pb.DiffSnapshotsRequest(from_snapshot_id=999999), timeout=T())),
                  fields=["from_snapshot_id"])
    expect_status(grpc.StatusCode.NOT_FOUND,
                  lambda: list(q.stub.DiffSnapshots(
                      pb.DiffSnapshotsRequest(from_snapshot_id=sid, to_snapshot_id=999999),
                      timeout=T())),
                  fields=["to_snapshot_id"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT,
                  lambda: list(q.stub.DiffSnapshots(
                      pb.DiffSnapshotsRequest(from_snapshot_id=sid, min_part_size=2000000),
                      timeout=T())),
                  fields=["min_part_size"])


def test_stable_ids_after_one_percent_new_links(q, net, first, ids, capsys):
    """1% more link observations: new own entities and new pairs sharing a
    fresh device, spread over random sellers (fixed seed)."""
    sid, assign, _, _, _ = first
    rng = random.Random(4)
    keys = sorted(net.truth)
    n_new = len(net.link_rows) // 100
    rows = []
    i = 0
    while len(rows) < n_new:
        a, b = rng.sample(keys, 2)
        dev = (DEVICE, "q-new-dev-%d" % i)
        rows.append(((SELLER, a), dev, NOW))
        rows.append(((SELLER, b), dev, NOW))
        i += 1
    ingest(q.stub, rows, [])
    sid2 = cluster_default(q.stub, "quality-plus-1pct")
    a2, _ = assignments(q.stub, sid2)
    old = dict(assign)
    same = sum(1 for s, c in a2 if old.get(s) == c)
    frac = same / len(a2)
    s, _ = diff(q.stub, sid, sid2)
    report(capsys, "stable ids after +1%% links (%d rows): %.4f of %d sellers kept their id"
          % (len(rows), frac, len(a2)))
    assert s.counts.sellers_stayed == same
    assert frac >= 0.95


def test_diff_planted_merge_and_split(q, net, ids, capsys):
    """Two rings get three common entities (merge); a third ring loses its
    shared entities and each half gets its own (split)."""
    stub = q.stub
    before = cluster_default(stub, "quality-before-plant")
    assign, _ = assignments(stub, before)
    best, of = best_clusters(net, ids, assign)
    rings = ring_members(net)
    # Rings recovered (Jaccard >= 0.9), biggest first.
    whole = sorted((r for r in rings if best[r][1] >= 0.9), key=lambda r: (-len(rings[r]), r))
    assert len(whole) >= 3
    ra, rb, rc = whole[0], whole[1], whole[2]
    # Merge ra and rb.
    rows = []
    for k in sorted(rings[ra] | rings[rb]):
        for j in range(3):
            rows.append(((SELLER, k), (DEVICE, "q-merge-%d" % j), NOW))
    ingest(stub, rows, [])
    # Split rc: delete what its members share, then give each half its own.
    for e in sorted(net.rings[rc]):
        stub.DeleteEntity(pb.DeleteEntityRequest(ref=ref(e[0], e[1])), timeout=T())
    shared = set()
    members = sorted(rings[rc])
    for x in members:
        for y in members:
            if x < y:
                shared |= net.shared((SELLER, x), (SELLER, y))
    for e in sorted(shared - net.rings[rc]):
        stub.DeleteEntity(pb.DeleteEntityRequest(ref=ref(e[0], e[1])), timeout=T())
    half = len(members) // 2
    rows = []
    for i, k in enumerate(members):
        part = 0 if i < half else 1
        for j in range(3):
            rows.append(((SELLER, k), (DEVICE, "q-split-%d-%d" % (part, j)), NOW))
    ingest(stub, rows, [])
    after = cluster_default(stub, "quality-after-plant")
    s, by = diff(stub, before, after)
    ca, cb, cc = best[ra][0], best[rb][0], best[rc][0]
    merges = [e for e in by[pb.DiffEvent.KIND_MERGED] if {ca, cb} <= set(e.from_clusters)]
    splits = {e.from_clusters[0]: e for e in by[pb.DiffEvent.KIND_SPLIT]}
    report(capsys, "planted: merge of %d+%d sellers (clusters %d, %d), split of %d (cluster %d); "
          "diff: %s" % (len(rings[ra]), len(rings[rb]), ca, cb, len(members), cc, s.summary))
    report(capsys, "merged: %s; split: %s" % (
        [(list(e.from_clusters), list(e.to_clusters)) for e in by[pb.DiffEvent.KIND_MERGED]],
        [(list(e.from_clusters), list(e.to_clusters)) for e in by[pb.DiffEvent.KIND_SPLIT]]))
    # Merge: one "to" cluster took both rings (smaller pairs that ride along
    # with a ring member may be listed too). It keeps one of their ids only
    # if it matches that one with Jaccard >= 1/2; two rings of similar size
    # give a fresh id (reported by the merge, not also as born).
    assert len(merges) == 1, "planted merge not reported"
    to = merges[0].to_clusters
    born = {e.to_clusters[0] for e in by[pb.DiffEvent.KIND_BORN]}
    dissolved = {e.from_clusters[0] for e in by[pb.DiffEvent.KIND_DISSOLVED]}
    old_ids = {c for _, c in assign}
    assert len(to) == 1 and (to[0] in (ca, cb) or to[0] not in old_ids)
    # Each cluster in one event: no merged-away cluster also dissolved, no
    # split-off part also born, no merge target born, no split source
    # dissolved; the summary counts what is listed.
    for e in by[pb.DiffEvent.KIND_MERGED]:
        assert not set(e.from_clusters) & dissolved and e.to_clusters[0] not in born, e
    for e in by[pb.DiffEvent.KIND_SPLIT]:
        assert not set(e.to_clusters) & born and e.from_clusters[0] not in dissolved, e
    assert s.counts.born == len(born) and s.counts.dissolved == len(dissolved)
    assert cc in splits, "planted split not reported"
    assert len(splits[cc].to_clusters) == 2
    # Moved sellers agree with the assignments.
    a2, _ = assignments(stub, after)
    new = dict(a2)
    old = dict(assign)
    moved = {e.seller_id: (e.from_clusters[0], e.to_clusters[0])
             for e in by[pb.DiffEvent.KIND_MOVED]}
    expect = {s_: (old[s_], new[s_]) for s_ in new if s_ in old and old[s_] != new[s_]}
    assert moved == expect
    assert s.counts.sellers_moved == len(moved)
    assert s.counts.merged == len(by[pb.DiffEvent.KIND_MERGED]) >= 1
    assert s.counts.split == len(by[pb.DiffEvent.KIND_SPLIT]) >= 1


def test_cancel_during_leiden(q, capsys):
    """Leiden running for a long time (1000000 iterations) on this graph: a
    cancel while the worker is in its cluster stage ends the job CANCELLED
    within 2 s (under valgrind, T(2)) and writes no snapshot. The
    sanitizer pass runs this against the ASan daemon and worker."""
    import os
    import time
    s = q.stub
    before = {x.id for x in s.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T()).snapshots}
    j = s.StartClustering(pb.StartClusteringRequest(spec=pb.ClusteringSpec(
        name="cancel-me", algorithm=pb.ALGORITHM_LEIDEN_CPM, iterations=1000000)), timeout=T())
    deadline = time.monotonic() + T(60)
    while True:
        g = s.GetJob(pb.JobRequest(job_id=j.id), timeout=T())
        assert g.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING), (g.state, g.reason)
        if g.stage == "cluster":
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)  # well inside Leiden's iterations
    t0 = time.monotonic()
    s.CancelJob(pb.JobRequest(job_id=j.id), timeout=T())
    while True:
        g = s.GetJob(pb.JobRequest(job_id=j.id), timeout=T())
        if g.state != pb.JOB_STATE_RUNNING:
            break
        time.sleep(0.005)
    dt = time.monotonic() - t0
    report(capsys, "cancel during Leiden: CANCELLED %.3f s after CancelJob" % dt)
    assert g.state == pb.JOB_STATE_CANCELLED, (g.state, g.reason)
    limit = T(2) if os.environ.get("GRAPHD_WRAPPER") else 2.0
    assert dt < limit
    assert g.snapshot_id == 0
    after = {x.id for x in s.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T()).snapshots}
    assert after == before
