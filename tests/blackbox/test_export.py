"""graphctl export (GraphML) and the assignments CSV, read back the way
analysts read them: python-igraph's Read_GraphML and pandas.read_csv with no
options, and checked against what the daemon says (GetCluster, Neighbors,
LinkedSellers, ListClusters, StreamAssignments).

Data: a sellergen network (3000 sellers, seed 5) loaded into one
module-scoped daemon and clustered once. Suite `tools` (graphctl only; no
new daemon code).
"""

import io
import math
import os
import subprocess

import grpc
import igraph
import pandas
import pytest

from bbutil import ADDRESS, SELLER, T, neighbors_all, pb
from test_analytics import generate, loaded_daemon, run_job
from test_investigate import CAP, TYPE_NUM, WEIGHT, rule_weight

GEN_ARGS = ["--sellers", "3000", "--seed", "5"]


@pytest.fixture(scope="module")
def net(sellergen_bin, tmp_path_factory):
    return generate(sellergen_bin, tmp_path_factory, "exportgen", GEN_ARGS)


@pytest.fixture(scope="module")
def dm(net, tmp_path_factory):
    for d in loaded_daemon(net, tmp_path_factory, "export"):
        net.attach(d.stub)
        job, seen = run_job(d.stub, name="export", flagged_labels=["counterfeit"])
        assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
        yield d


@pytest.fixture
def ctl(dm, graphctl_bin):
    def run(*args, check=True):
        r = subprocess.run([graphctl_bin, "--addr", dm.addr] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=T(60))
        if check:
            assert r.returncode == 0, "graphctl %s: exit %d\n%s" % (
                " ".join(map(str, args)), r.returncode, r.stderr)
        return r
    return run


def read_graphml(path):
    g = igraph.Graph.Read_GraphML(str(path))
    for v in g.vs:
        assert v["kind"] in ("seller", "entity"), v.attributes()
    return g


def sellers_of(g):
    return {int(v["graphd_id"]): v for v in g.vs if v["kind"] == "seller"}


def entities_of(g):
    return {int(v["graphd_id"]): v for v in g.vs if v["kind"] == "entity"}


def check_evidence(dm, g, net=None):
    """Entity nodes carry the daemon's evidence weight, corroboration and
    context (GetEntity; the snapshots here use the default rule), and the
    oracle's (test_investigate.Net) when net is given; sellers 0."""
    kinds = set()
    for v in g.vs:
        if v["kind"] == "seller":
            assert (v["evidence_weight"], v["corroboration"], v["evidence_context"]) == \
                (0, 0, False), v.attributes()
            continue
        e = dm.stub.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(id=int(v["graphd_id"]))),
                              timeout=T()).entity
        assert v["seller_count"] == e.seller_count and v["hub"] == e.over_hub_cap
        assert v["evidence_weight"] == pytest.approx(e.evidence_weight, rel=1e-12, abs=0)
        assert v["corroboration"] == pytest.approx(e.corroboration, rel=1e-12, abs=0)
        assert v["evidence_context"] == e.evidence_context, v.attributes()
        if net is not None:
            w, c, context = net.evidence((TYPE_NUM[v["type"]], v["key"]))
            assert v["evidence_weight"] == pytest.approx(w, rel=1e-9, abs=1e-12), v.attributes()
            assert v["corroboration"] == pytest.approx(c, rel=1e-9, abs=1e-12), v.attributes()
            assert v["evidence_context"] == context, v.attributes()
        kinds.add("hub" if e.over_hub_cap else "context" if e.evidence_context else
                  "two" if e.seller_count == 2 else "corroborated" if e.corroboration > 0
                  else "other")
    for e in g.es:
        if e["relation"] == "uses":
            x = g.vs[e.target] if g.vs[e.target]["kind"] == "entity" else g.vs[e.source]
            assert e["weight"] == x["evidence_weight"]
        else:
            assert e["weight"] == WEIGHT[SELLER]
    return kinds


def riskiest(stub, n=1, min_size=3):
    rep = stub.ListClusters(pb.ListClustersRequest(order=pb.CLUSTER_ORDER_RISK,
                                                   min_size=min_size, limit=n), timeout=T())
    return list(rep.clusters)


def members_of(stub, cid):
    rep = stub.GetCluster(pb.GetClusterRequest(cluster_id=cid, max_members=10000, live=True),
                          timeout=T())
    assert not rep.more_members
    return rep.cluster, {m.id: m for m in rep.live_members}


def check_clusters(dm, g):
    """Sellers carry their cluster in the latest snapshot, as GetEntity
    says, and its risk."""
    risks = {}
    for sid, v in sellers_of(g).items():
        e = dm.stub.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(id=sid)), timeout=T()).entity
        assert e.cluster_id > 0 and v["cluster_id"] == e.cluster_id, (e.key, v["cluster_id"])
        if e.cluster_id not in risks:
            risks[e.cluster_id] = dm.stub.GetCluster(pb.GetClusterRequest(
                cluster_id=e.cluster_id, max_members=1), timeout=T()).cluster.risk
        assert v["cluster_risk"] == pytest.approx(risks[e.cluster_id])


def check_bipartite_and_links(dm, g, snapshot_sellers):
    """Every "uses" edge joins a seller and an entity, and is that seller's
    link as Neighbors reports it (times, count); every "direct" edge joins
    two sellers that are linked. Entities are exactly the non-seller
    neighbours that two or more of the graph's sellers link to."""
    vid = {v.index: int(v["graphd_id"]) for v in g.vs}
    links = {}  # (seller id, neighbour id) -> Neighbor
    for sid in snapshot_sellers:
        for nb in neighbors_all(dm.stub, pb.EntityRef(id=sid)):
            links[(sid, nb.entity.id)] = nb
    users = {}
    for (sid, eid), nb in links.items():
        if nb.entity.type != SELLER:
            users.setdefault(eid, set()).add(sid)
    want_entities = {e for e, u in users.items() if len(u) >= 2}
    assert set(entities_of(g)) == want_entities
    for v in entities_of(g).values():
        assert int(v["users"]) == len(users[int(v["graphd_id"])])
    uses = direct = 0
    for e in g.es:
        a, b = g.vs[e.source], g.vs[e.target]
        if e["relation"] == "uses":
            uses += 1
            kinds = {a["kind"], b["kind"]}
            assert kinds == {"seller", "entity"}, (a.attributes(), b.attributes())
            s, x = (a, b) if a["kind"] == "seller" else (b, a)
            nb = links[(vid[s.index], vid[x.index])]
            assert (e["first_seen"], e["last_seen"], e["count"]) == (
                nb.link.first_seen, nb.link.last_seen, nb.link.count)
            assert e["weight"] == pytest.approx(x["evidence_weight"])
        else:
            assert e["relation"] == "direct"
            direct += 1
            assert a["kind"] == b["kind"] == "seller"
            assert (vid[a.index], vid[b.index]) in links
    # every (seller, kept entity) pair is an edge
    assert uses == sum(len(users[x]) for x in want_entities)
    return uses, direct


def test_export_cluster(dm, ctl, tmp_path, net):
    top = riskiest(dm.stub)[0]
    summary, members = members_of(dm.stub, top.id)
    out = tmp_path / "cluster.graphml"
    r = ctl("export", "cluster", top.id, "-o", out)
    assert "cluster %d" % top.id in r.stderr
    assert not os.path.exists(str(out) + ".tmp")
    g = read_graphml(out)
    snap = dm.stub.GetSnapshot(pb.SnapshotRequest(), timeout=T())
    assert g["source"] == "cluster %d of snapshot %d" % (top.id, snap.id)
    assert g["snapshot_id"] == snap.id and g["cut"] is False and g["cut_note"] == ""
    # sellers: exactly the members, with their cluster, risk, labels, flag
    sel = sellers_of(g)
    assert set(sel) == set(members)
    for sid, v in sel.items():
        m = members[sid]
        assert v["type"] == "seller" and v["key"] == m.key
        assert v["labels"] == ";".join(m.labels)
        assert v["flagged"] == ("counterfeit" in m.labels)
        assert v["cluster_id"] == top.id
        assert v["cluster_risk"] == pytest.approx(summary.risk)
        assert (v["first_seen"], v["last_seen"]) == (m.first_seen, m.last_seen)
    assert sum(v["flagged"] for v in sel.values()) == summary.flagged
    # entities: type, key, seller count, hub, weight as the daemon says
    ents = entities_of(g)
    for eid, v in ents.items():
        e = dm.stub.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(id=eid)), timeout=T()).entity
        assert v["type"] == {2: "address", 3: "payment_account", 4: "device", 5: "phone",
                             6: "email", 7: "ip"}[e.type]
        assert v["key"] == e.key and v["seller_count"] == e.seller_count
        assert v["hub"] == e.over_hub_cap
        assert v["cluster_id"] == top.id
    # evidence: the daemon's and the oracle's; the ring's shared entities
    # are corroborated (not the old rule's w(type) / log2(1 + n))
    kinds = check_evidence(dm, g, net)
    assert "corroborated" in kinds, kinds
    wh = ents[summary.top_shared[0].entity.id]
    assert wh["evidence_weight"] == pytest.approx(WEIGHT[ADDRESS])
    assert wh["corroboration"] > 0 and not wh["evidence_context"]
    # the supply sources (the ring's warehouse first) are in the graph
    for src in summary.top_shared:
        assert src.entity.id in ents, src.entity.key
        assert int(ents[src.entity.id]["users"]) == src.cluster_sellers
    check_bipartite_and_links(dm, g, set(members))


def test_export_entity_address(dm, ctl, tmp_path, net):
    top = riskiest(dm.stub)[0]
    wh = top.top_shared[0].entity
    assert wh.type == ADDRESS
    out = tmp_path / "addr.graphml"
    ctl("export", "entity", "address", wh.key, "-o", out)
    g = read_graphml(out)
    assert g["source"].startswith("neighbourhood of address " + wh.key)
    users = {nb.entity.id for nb in neighbors_all(dm.stub, pb.EntityRef(id=wh.id), types=[SELLER])}
    sel = sellers_of(g)
    assert set(sel) == users
    assert all(v["hops"] == 1 for v in sel.values())
    root = entities_of(g)[wh.id]
    assert root["hops"] == 0 and root["key"] == wh.key and root["users"] == len(users)
    ge = dm.stub.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(id=wh.id)), timeout=T()).entity
    assert root["evidence_weight"] == ge.evidence_weight > 0
    assert root["corroboration"] == ge.corroboration > 0
    check_evidence(dm, g, net)
    check_clusters(dm, g)
    check_bipartite_and_links(dm, g, users)


def test_export_entity_seller_hops(dm, ctl, tmp_path, net):
    top = riskiest(dm.stub)[0]
    _, members = members_of(dm.stub, top.id)
    seller = members[min(members)]
    out = tmp_path / "seller.graphml"
    ctl("export", "entity", "seller", seller.key, "--hops", "2", "-o", out)
    g = read_graphml(out)
    rep = dm.stub.LinkedSellers(pb.LinkedSellersRequest(
        seller=pb.EntityRef(id=seller.id), max_hops=2, limit=10000), timeout=T())
    want = {ls.seller.id: ls.hops for ls in rep.sellers}
    want[seller.id] = 0
    sel = sellers_of(g)
    assert {k: int(v["hops"]) for k, v in sel.items()} == want
    # clusters of the latest snapshot
    assert sel[seller.id]["cluster_id"] == top.id
    assert sel[seller.id]["cluster_risk"] == pytest.approx(top.risk)
    check_evidence(dm, g, net)
    check_clusters(dm, g)
    check_bipartite_and_links(dm, g, set(want))


def test_export_snapshot(dm, ctl, tmp_path):
    want = [c for c in riskiest(dm.stub, 100, min_size=2) if c.risk >= 0.1][:3]
    assert len(want) == 3
    out = tmp_path / "snap.graphml"
    ctl("export", "snapshot", "--min-risk", "0.1", "--top", "3", "-o", out)
    g = read_graphml(out)
    sel = sellers_of(g)
    assert len(sel) == sum(c.size for c in want)
    assert {int(v["cluster_id"]) for v in sel.values()} == {c.id for c in want}
    for c in want:
        assert sum(1 for v in sel.values() if v["cluster_id"] == c.id) == c.size
    more = len([c for c in riskiest(dm.stub, 100, min_size=2) if c.risk >= 0.1]) > 3
    assert g["cut"] is more
    if more:
        assert "--top" in g["cut_note"]
    check_evidence(dm, g)
    check_bipartite_and_links(dm, g, set(sel))


def test_export_bounds_are_reported(dm, ctl, tmp_path):
    top = riskiest(dm.stub)[0]
    assert top.size > 3
    out = tmp_path / "cut.graphml"
    r = ctl("export", "cluster", top.id, "--max-sellers", "3", "--max-nodes", "5", "-o", out)
    assert "cut:" in r.stderr and "--max-sellers" in r.stderr
    g = read_graphml(out)
    assert len(sellers_of(g)) == 3 and g.vcount() <= 5
    assert g["cut"] is True and "--max-sellers" in g["cut_note"]


def test_export_to_stdout(dm, ctl, tmp_path):
    top = riskiest(dm.stub)[0]
    r = ctl("export", "cluster", top.id, "-o", "-")
    assert r.stdout.startswith("<?xml")
    p = tmp_path / "stdout.graphml"
    p.write_text(r.stdout)
    assert len(sellers_of(read_graphml(p))) == top.size


def test_assignments_csv_reads_with_pandas(dm, ctl, tmp_path):
    out = tmp_path / "assign.csv"
    ctl("assignments", "-o", out)
    df = pandas.read_csv(out)
    assert list(df.columns) == ["seller_id", "cluster_id"]
    assert str(df["seller_id"].dtype) == "int64" and str(df["cluster_id"].dtype) == "int64"
    want = []
    for b in dm.stub.StreamAssignments(pb.StreamAssignmentsRequest(), timeout=T()):
        want.extend(zip(b.seller_ids, b.cluster_ids))
    snap = dm.stub.GetSnapshot(pb.SnapshotRequest(), timeout=T())
    assert len(df) == len(want) == snap.sellers
    assert list(zip(df["seller_id"], df["cluster_id"])) == want
    # the same through stdout
    r = ctl("assignments", "-o", "-")
    df2 = pandas.read_csv(io.StringIO(r.stdout))
    assert df2.equals(df)


@pytest.mark.parametrize("args,needle", [
    (["export"], "export needs what to export"),
    (["export", "cluster"], "needs -o FILE"),
    (["export", "cluster", "-o", "x.graphml"], "needs a cluster ID"),
    (["export", "cluster", "abc", "-o", "x.graphml"], "expected a cluster id"),
    (["export", "cluster", "0", "-o", "x.graphml"], "expected a cluster id"),
    (["export", "entity", "colour", "red", "-o", "x.graphml"], "unknown entity type 'colour'"),
    (["export", "entity", "seller", "-o", "x.graphml"], "needs TYPE KEY"),
    (["export", "entity", "seller", "s1", "--hops", "4", "-o", "x.graphml"], "--hops"),
    (["export", "snapshot", "--min-risk", "1.5", "-o", "x.graphml"], "--min-risk"),
    (["export", "snapshot", "--top", "0", "-o", "x.graphml"], "--top"),
    (["export", "snapshot", "--hops", "2", "-o", "x.graphml"], "--hops"),
    (["export", "everything", "-o", "x.graphml"], "expected cluster, entity, snapshot or ties"),
    (["export", "cluster", "1", "--format", "csv", "-o", "x.graphml"], "are for export ties"),
    (["export", "ties", "--format", "tsv", "-o", "x.graphml"], "expected ncol or csv"),
    (["export", "ties", "--snapshot", "1", "-o", "x.graphml"], "not for export ties"),
    (["export", "ties", "extra", "-o", "x.graphml"], "extra"),
    (["import"], "import needs FILE"),
    (["export", "cluster", "1", "-x", "-o", "x.graphml"], "unknown option '-x'"),
    (["report"], "needs -o FILE"),
    (["report", "--top", "0", "-o", "r.html"], "--top"),
    (["report", "--max-nodes", "1", "-o", "r.html"], "--max-nodes"),
])
def test_bad_arguments(dm, ctl, tmp_path, args, needle):
    r = ctl(*args, check=False)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr, r.stderr
    assert not os.path.exists("x.graphml")


@pytest.mark.parametrize("args,code", [
    (["export", "cluster", "999999"], "NOT_FOUND"),
    (["export", "cluster", "1", "--snapshot", "999"], "NOT_FOUND"),
    (["export", "entity", "seller", "no-such-seller"], "NOT_FOUND"),
    (["export", "snapshot", "--snapshot", "999"], "NOT_FOUND"),
    (["report", "--snapshot", "999"], "NOT_FOUND"),
])
def test_daemon_errors(dm, ctl, tmp_path, args, code):
    out = tmp_path / "out.file"
    r = ctl(*(args + ["-o", out]), check=False)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "graphctl: %s:" % code in r.stderr, r.stderr
    assert not out.exists() and not os.path.exists(str(out) + ".tmp")


def test_output_file_cannot_be_created(dm, ctl, tmp_path):
    top = riskiest(dm.stub)[0]
    r = ctl("export", "cluster", top.id, "-o", tmp_path / "no-dir" / "x.graphml", check=False)
    assert r.returncode == 73, r.stderr
    assert "no-dir" in r.stderr


def test_no_snapshot_yet(daemon, graphctl_bin, tmp_path):
    out = tmp_path / "x.graphml"
    r = subprocess.run([graphctl_bin, "--addr", daemon.addr, "export", "snapshot", "-o", str(out)],
                       capture_output=True, text=True, timeout=T(60))
    assert r.returncode == 1 and "FAILED_PRECONDITION" in r.stderr, r.stderr
    assert not out.exists()
    # an entity neighbourhood needs no snapshot: clusters are simply unknown
    daemon.stub.Upsert(pb.UpsertRequest(links=[
        pb.LinkInput(a=pb.EntityRef(type=SELLER, key=k), b=pb.EntityRef(type=ADDRESS, key="a1"))
        for k in ("s1", "s2", "s3")]), timeout=T())
    r = subprocess.run([graphctl_bin, "--addr", daemon.addr, "export", "entity", "address", "a1",
                        "-o", str(out)], capture_output=True, text=True, timeout=T(60))
    assert r.returncode == 0, r.stderr
    g = read_graphml(out)
    assert g.vcount() == 4 and g.ecount() == 3
    assert all(v["cluster_id"] == 0 and math.isnan(v["cluster_risk"]) for v in g.vs)
    # three sellers sharing only a1: Newman's 1/2 of w(address), c 0
    a1 = entities_of(g)
    assert len(a1) == 1
    a1 = list(a1.values())[0]
    assert a1["evidence_weight"] == pytest.approx(WEIGHT[ADDRESS] / 2)
    assert a1["corroboration"] == 0 and a1["evidence_context"] is False
    check_evidence(daemon, g)


def test_export_evidence_follows_the_snapshot_spec(dm, ctl, tmp_path):
    """A snapshot clustered with another rule or other type weights exports
    the weights it used: RARITY, w(type) / log2(1 + n) (no corroboration);
    CORROBORATED with address weight 0.4, the rule on the daemon's c.
    Last in the module: it makes new snapshots (the latest changes)."""
    for name, spec, weight in [
        ("export-rarity", dict(evidence=pb.EVIDENCE_RULE_RARITY),
         lambda t, n, c: 0.0 if n > CAP[t] else WEIGHT[t] / math.log2(1 + n)),
        ("export-address-0.4", dict(type_weights=[pb.TypeWeight(type=ADDRESS, weight=0.4)]),
         lambda t, n, c: rule_weight(t, n, c, weights={**WEIGHT, ADDRESS: 0.4})),
    ]:
        job, seen = run_job(dm.stub, name=name, flagged_labels=["counterfeit"], **spec)
        assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
        sid = seen[-1].snapshot_id
        top = dm.stub.ListClusters(pb.ListClustersRequest(
            snapshot_id=sid, order=pb.CLUSTER_ORDER_RISK, min_size=3, limit=1),
            timeout=T()).clusters[0]
        out = tmp_path / (name + ".graphml")
        ctl("export", "cluster", top.id, "--snapshot", sid, "-o", out)
        g = read_graphml(out)
        assert g["snapshot_id"] == sid
        ents = entities_of(g)
        differs = 0
        for eid, v in ents.items():
            e = dm.stub.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(id=eid)),
                                  timeout=T()).entity
            n = e.seller_count
            c = e.corroboration if spec.get("evidence") != pb.EVIDENCE_RULE_RARITY else 0.0
            w = weight(e.type, n, c)
            assert v["evidence_weight"] == pytest.approx(w, rel=1e-12, abs=0), (name, e)
            assert v["corroboration"] == pytest.approx(c, rel=1e-12, abs=0), (name, e)
            assert v["evidence_context"] == (n >= 2 and n <= CAP[e.type] and w == 0), (name, e)
            differs += not math.isclose(w, e.evidence_weight)
        assert differs, "%s: every weight is the default rule's" % name
