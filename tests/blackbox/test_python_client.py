"""The Python client (tools/python/graphd_client) and its example job
(tools/python/examples/weekly_clusters.py) against the real daemon.

Suite `tools`: this is client code, the daemon's side is covered by the
blackbox suite. The module and its stubs are found through
GRAPHD_CLIENT_PYTHONPATH (meson sets it to tools/python and build/proto,
where the build generates graphd/v1/graphd_pb2*.py); the example job runs
with that PYTHONPATH. In this process the client uses the graphd.v1
modules conftest generated (same names, same proto).

Data: a sellergen network (3000 sellers, seed 5) in one daemon; the job
runs twice, with two rings joined and five new sellers ingested in
between, so the second run's diff has a merge, a birth and moved sellers.
Smaller daemons check job failure and cancellation, tokens and TLS.
"""

import collections
import json
import io
import os
import subprocess
import sys
import time

import grpc
import numpy as np
import pandas as pd
import pytest

from bbutil import DEVICE, SELLER, T, get, link, pb
from conftest import REPO
from test_analytics import fake_worker, generate, loaded_daemon, worker_args
from test_auth import TOKENS, write_tokens
from test_tls import certs, tls_args  # noqa: F401 (certs is a fixture)

CLIENT_PATH = os.environ.get("GRAPHD_CLIENT_PYTHONPATH") or os.pathsep.join(
    [os.path.join(REPO, "tools", "python"), os.path.join(REPO, "build", "proto")])
for _p in CLIENT_PATH.split(os.pathsep):
    if _p not in sys.path:
        sys.path.append(_p)

import graphd_client as gc  # noqa: E402

EXAMPLE = os.path.join(REPO, "tools", "python", "examples", "weekly_clusters.py")
GEN_ARGS = ["--sellers", "3000", "--seed", "5"]
TOP = 10
NOW = 1_800_000_000
NF = grpc.StatusCode.NOT_FOUND


def weekly(addr, out, *args, token=None, check=0):
    """Runs the example job; asserts its exit code; returns the process."""
    env = dict(os.environ, PYTHONPATH=CLIENT_PATH, PYTHONDONTWRITEBYTECODE="1")
    env.pop("GRAPHD_TOKEN", None)
    env.pop("GRAPHD_CASE_ID", None)
    if token:
        env["GRAPHD_TOKEN"] = token
    cmd = [sys.executable, EXAMPLE, "--target", addr, "--out", str(out),
           "--timeout", str(T())] + [str(a) for a in args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=T(120))
    assert p.returncode == check, "exit %d (want %d): %s\nstdout: %s\nstderr: %s" % (
        p.returncode, check, " ".join(cmd), p.stdout, p.stderr)
    return p


def read_json(path):
    with open(path) as f:
        return json.load(f)


def client(addr, **kw):
    return gc.Client(addr, timeout=T(), **kw)


@pytest.fixture(scope="module")
def net(sellergen_bin, tmp_path_factory):
    return generate(sellergen_bin, tmp_path_factory, "sellergen-py", GEN_ARGS)


@pytest.fixture(scope="module")
def pyd(net, tmp_path_factory):
    yield from loaded_daemon(net, tmp_path_factory, "pyclient")


@pytest.fixture(scope="module")
def runs(pyd, net, tmp_path_factory):
    """The example job twice; in between the two smallest rings get three
    shared devices and five new sellers share one. -> {1: out, 2: out}"""
    base = tmp_path_factory.mktemp("weekly")
    out = {1: base / "run1", 2: base / "run2"}
    p1 = weekly(pyd.addr, out[1], "--top", TOP, "--name", "py-first")
    rings = collections.defaultdict(list)
    for key, (ring, _) in net.truth.items():
        if ring:
            rings[ring].append(key)
    joined = sorted(rings)[:2]
    links = [link(SELLER, k, DEVICE, "py-join-%d" % j, seen=NOW)
             for r in joined for k in sorted(rings[r]) for j in range(3)]
    links += [link(SELLER, "py-new-%d" % i, DEVICE, "py-new-device", seen=NOW) for i in range(5)]
    pyd.stub.Upsert(pb.UpsertRequest(links=links), timeout=T())
    p2 = weekly(pyd.addr, out[2], "--top", TOP, "--name", "py-second")
    return {"out": out, "proc": {1: p1, 2: p2},
            "sid": {i: read_json(out[i] / "snapshot.json")["snapshot_id"] for i in (1, 2)}}


def n_sellers(stub):
    st = stub.Stats(pb.StatsRequest(), timeout=T())
    return {tc.type: tc.count for tc in st.entities}[SELLER]


def streamed(stub, sid):
    s, c = [], []
    for b in stub.StreamAssignments(pb.StreamAssignmentsRequest(snapshot_id=sid), timeout=T()):
        s.extend(b.seller_ids)
        c.extend(b.cluster_ids)
    return s, c


# ------------------------------------------------------------ the example job


def test_runs_report(pyd, runs):
    sid1, sid2 = runs["sid"][1], runs["sid"][2]
    assert 0 < sid1 < sid2
    p1, p2 = runs["proc"][1], runs["proc"][2]
    # Progress on stderr (a line per change WatchJob reports when not a
    # terminal; changes that come while a message is on its way are folded
    # into the next, so a short stage may not get a line of its own).
    assert "SUCCEEDED" in p1.stderr
    stages = {"start", "open", "read", "project", "cluster", "match", "summarize", "write"}
    seen = [ln.split()[3] for ln in p1.stderr.splitlines() if " RUNNING " in ln]
    assert seen and set(seen) <= stages, p1.stderr
    assert "no previous snapshot" in p1.stdout
    assert ("since snapshot %d:" % sid1) in p2.stdout
    d1 = read_json(runs["out"][1] / "diff_summary.json")
    assert d1["from_snapshot_id"] is None and d1["to_snapshot_id"] == sid1
    assert not (runs["out"][1] / "moved_sellers.csv").exists()
    m = read_json(runs["out"][2] / "snapshot.json")
    assert m["name"] == "py-second" and m["previous_snapshot_id"] == sid1
    assert m["sellers"] == n_sellers(pyd.stub)
    assert not [f for f in os.listdir(runs["out"][2]) if f.endswith(".tmp")]


@pytest.mark.parametrize("run", [1, 2])
def test_top_clusters_csv(pyd, runs, run):
    """Read back with pandas: the riskiest clusters of 2+ sellers, in
    ListClusters' risk order, with its numbers and supply sources."""
    sid = runs["sid"][run]
    top = pd.read_csv(runs["out"][run] / "top_clusters.csv")
    ref = list(pyd.stub.ListClusters(pb.ListClustersRequest(
        snapshot_id=sid, order=pb.CLUSTER_ORDER_RISK, min_size=2, limit=TOP),
        timeout=T()).clusters)
    assert len(top) == len(ref) == TOP
    assert list(top["rank"]) == list(range(1, TOP + 1))
    assert (top["snapshot_id"] == sid).all()
    keys = list(zip(-top["risk"], -top["size"]))
    assert keys == sorted(keys), "not sorted by risk, then size"
    assert list(top["cluster_id"]) == [c.id for c in ref]
    assert list(top["size"]) == [c.size for c in ref]
    assert list(top["flagged"]) == [c.flagged for c in ref]
    assert np.allclose(top["risk"], [c.risk for c in ref], rtol=1e-12)
    assert np.allclose(top["cohesion"], [c.cohesion for c in ref], rtol=1e-12)
    assert (top["members_assigned"] == top["size"]).all()
    assert list(top["top_source_key"]) == [c.top_shared[0].entity.key for c in ref]
    assert list(top["top_source_cluster_sellers"]) == [c.top_shared[0].cluster_sellers
                                                       for c in ref]
    assert top["flagged"].iloc[0] > 0
    if run == 1:
        assert top["change"].isna().all() and (top["moved_in"] == 0).all()
    else:
        assert top["change"].notna().any()


def test_diff_agrees_with_server(pyd, runs):
    sid1, sid2 = runs["sid"][1], runs["sid"][2]
    events = list(pyd.stub.DiffSnapshots(pb.DiffSnapshotsRequest(
        from_snapshot_id=sid1, to_snapshot_id=sid2), timeout=T()))
    assert events[0].kind == pb.DiffEvent.KIND_SUMMARY
    c = events[0].counts
    want = {f.name: getattr(c, f.name) for f in c.DESCRIPTOR.fields}
    js = read_json(runs["out"][2] / "diff_summary.json")
    for k, v in want.items():
        assert js[k] == v, k
    assert js["summary"] == events[0].summary
    csv_row = pd.read_csv(runs["out"][2] / "diff_summary.csv").iloc[0]
    for k, v in want.items():
        assert csv_row[k] == v, k
    by = collections.defaultdict(list)
    for e in events[1:]:
        by[e.kind].append(e)
    K = pb.DiffEvent
    assert [m["to"] for m in js["merged_clusters"]] == [e.to_clusters[0] for e in by[K.KIND_MERGED]]
    assert js["born_clusters"] == [e.to_clusters[0] for e in by[K.KIND_BORN]]
    assert js["dissolved_clusters"] == [e.from_clusters[0] for e in by[K.KIND_DISSOLVED]]
    moved = pd.read_csv(runs["out"][2] / "moved_sellers.csv")
    assert list(moved.columns) == ["seller_id", "from_cluster", "to_cluster"]
    assert [tuple(r) for r in moved.itertuples(index=False)] == [
        (e.seller_id, e.from_clusters[0], e.to_clusters[0]) for e in by[K.KIND_MOVED]]
    # What was planted shows: the joined rings merged, the new sellers
    # formed a cluster, some sellers moved.
    assert js["merged"] >= 1 and js["born"] >= 1 and js["sellers_added"] == 5
    assert js["sellers_moved"] == len(moved) > 0
    # The client's own diff says the same.
    d = client(pyd.addr).diff(sid1, sid2)
    assert {k: d.summary[k] for k in want} == want
    assert d.counts("merged") == want["merged"] and d.counts("born") == want["born"]
    assert d.moves.equals(moved.astype("int64"))
    # Keys of the moved sellers, as the "to" snapshot recorded them.
    dk = client(pyd.addr).diff(sid1, sid2, keys=True)
    want_keys = client(pyd.addr).assignments(sid2, keys=True).set_index("seller_id")["key"]
    assert list(dk.moves["key"]) == [want_keys[x] for x in dk.moves["seller_id"]]
    assert len(client(pyd.addr).diff(sid1, sid2, moves=False).moves) == 0
    # Long tables without list columns: they filter, group and round-trip
    # through CSV and JSON as they are.
    ev = d.clusters
    assert list(ev.columns) == ["event", "kind", "from_cluster", "to_cluster"]
    assert str(ev["kind"].dtype) == "category" and ev["event"].dtype == np.int64
    assert all(ev[c].dtype == np.int64 for c in ("from_cluster", "to_cluster"))
    merged = ev[ev["kind"] == "merged"].groupby("event")["from_cluster"].apply(list).tolist()
    assert merged == [list(e.from_clusters) for e in by[K.KIND_MERGED]]
    for frame in (ev, dk.moves):
        back = pd.read_csv(io.StringIO(frame.to_csv(index=False)), dtype={"key": str})
        assert back.astype(str).equals(frame.astype(str))
        back = pd.read_json(io.StringIO(frame.to_json(orient="records")), orient="records",
                            dtype={"key": str})
        assert back.astype(str).equals(frame.astype(str))


# ------------------------------------------------------------ the client's reads


def test_assignments_dataframe(pyd, runs):
    sid = runs["sid"][2]
    c = client(pyd.addr)
    a = c.assignments(sid)
    assert list(a.columns) == ["seller_id", "cluster_id"]
    assert a["seller_id"].dtype == np.int64 and a["cluster_id"].dtype == np.int64
    assert len(a) == n_sellers(pyd.stub) and a.attrs["snapshot_id"] == sid
    s, cl = streamed(pyd.stub, sid)
    assert np.array_equal(a["seller_id"].to_numpy(), np.array(s, dtype=np.int64))
    assert np.array_equal(a["cluster_id"].to_numpy(), np.array(cl, dtype=np.int64))
    # Keys on request, as the snapshot recorded them; the same through the
    # bulk lookup (today's records: nothing was deleted here).
    ak = c.assignments(sid, keys=True)
    assert list(ak.columns) == ["seller_id", "cluster_id", "key"]
    assert ak[["seller_id", "cluster_id"]].equals(a) and ak["key"].str.len().min() > 0
    e = c.entities(list(ak["seller_id"]) + [1 << 60, 0])
    assert list(e["id"]) == list(ak["seller_id"]) and list(e["key"]) == list(ak["key"])
    assert e.attrs["not_found"] == [1 << 60, 0]
    assert str(e["type"].dtype) == "category" and set(e["type"]) == {"seller"}
    latest = c.snapshot()["snapshot_id"]
    assert (e["cluster_snapshot_id"] == latest).all()
    if latest == sid:
        assert e["cluster_id"].tolist() == ak["cluster_id"].tolist()
    # Differences of counts stay signed.
    cl = c.clusters(sid)
    assert cl["size"].dtype == np.int64 and (cl["size"] - cl["size"] - 1 == -1).all()
    # Supply sources as a long table, straight to CSV and back.
    src = c.supply_sources(sid)
    assert list(src.columns) == ["cluster_id", "rank", "type", "key", "entity_id",
                                 "cluster_sellers", "total_sellers", "score"]
    multi = cl[cl["size"] >= 2]
    firsts = src[src["rank"] == 1].set_index("cluster_id")
    with_src = multi[multi["top_source_key"] != ""]
    assert len(firsts) == len(with_src) and src.groupby("cluster_id").size().max() <= 5
    assert list(firsts.loc[with_src["cluster_id"], "key"]) == list(with_src["top_source_key"])
    back = pd.read_csv(io.StringIO(src.to_csv(index=False)), dtype={"key": str})
    assert back["cluster_id"].tolist() == src["cluster_id"].tolist()
    assert back["key"].tolist() == src["key"].tolist()
    latest = c.assignments()
    assert latest.attrs["snapshot_id"] == sid and latest.equals(a)
    first = c.assignments(runs["sid"][1])
    assert len(first) == len(a) - 5


def test_clusters_dataframe_pages(pyd, runs):
    sid = runs["sid"][2]
    c = client(pyd.addr)
    m = c.snapshot(sid)
    small = c.clusters(sid, page_size=500)
    # Over the daemon's result cap (10000): the client halves its pages.
    big = c.clusters(sid, page_size=40000)
    assert list(small.columns) == gc.CLUSTER_COLUMNS
    assert len(small) == m["clusters"] and small["cluster_id"].is_unique
    assert small.equals(big)
    assert not [col for col in small.columns if small[col].map(type).eq(list).any()]
    assert small.attrs["snapshot_id"] == sid
    keys = list(zip(-small["risk"], -small["size"].astype(np.int64)))
    assert keys == sorted(keys)
    a = c.assignments(sid)
    sizes = a["cluster_id"].value_counts()
    assert (small.set_index("cluster_id")["size"] == sizes.reindex(small["cluster_id"])).all()
    by_size = c.clusters(sid, order="size", min_size=2)
    assert (by_size["size"] >= 2).all() and by_size["size"].is_monotonic_decreasing
    snaps = c.snapshots(page_size=1)
    assert list(snaps["snapshot_id"]) == [runs["sid"][2], runs["sid"][1]]
    assert snaps.iloc[0]["clusters"] == m["clusters"] and snaps.iloc[0]["name"] == "py-second"


def test_cluster_detail(pyd, runs):
    sid = runs["sid"][2]
    c = client(pyd.addr)
    top = c.clusters(sid, min_size=2).iloc[0]
    d = c.cluster(0, int(top["cluster_id"]), page_size=3)  # several member pages
    assert d.snapshot_id == sid and d.summary["cluster_id"] == top["cluster_id"]
    assert d.summary["size"] == top["size"] == len(d.members)
    assert d.members["seller_id"].is_monotonic_increasing
    a = c.assignments(sid)
    want = a.loc[a["cluster_id"] == top["cluster_id"], "seller_id"]
    assert list(d.members["seller_id"]) == list(want)
    assert d.ties_stored == top["size"] - 1 == len(d.ties)
    assert set(d.ties["seller_a"]) | set(d.ties["seller_b"]) <= set(want)
    assert d.members["flagged"].sum() == d.summary["flagged"] > 0
    assert d.members["present_today"].all()
    assert any("counterfeit" in x for x in d.members["labels_today"])


# ------------------------------------------------------------ errors


def test_errors_carry_the_status(pyd, runs, tmp_path):
    bad = client("127.0.0.1:1")
    with pytest.raises(gc.GraphdError) as ei:
        bad.snapshots()
    assert ei.value.code == grpc.StatusCode.UNAVAILABLE and ei.value.method == "ListSnapshots"
    c = client(pyd.addr)
    for fn in (lambda: c.clusters(999999), lambda: c.assignments(999999),
               lambda: c.snapshot(999999), lambda: c.cluster(999999, 1),
               lambda: c.cluster(0, 1 << 60), lambda: c.diff(999999, 0),
               lambda: c.diff(runs["sid"][1], 999999), lambda: c.job(999999),
               lambda: c.wait(999999)):
        with pytest.raises(gc.GraphdError) as ei:
            fn()
        assert ei.value.code == NF, ei.value
        assert str(ei.value).startswith("NOT_FOUND: ")
    with pytest.raises(gc.GraphdError) as ei:
        c.diff(0)
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT and "from_snapshot_id" in str(ei.value)
    with pytest.raises(gc.GraphdError) as ei:
        c.start_clustering(resolution=-1)
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT and "spec.resolution" in ei.value.details
    with pytest.raises(ValueError):
        c.start_clustering(algorithm="nope")
    with pytest.raises(ValueError):
        c.start_clustering(hub_caps={"colour": 3})
    # The example job: one line naming the status, its exit code, no files.
    p = weekly("127.0.0.1:1", tmp_path / "a", check=69)
    assert p.stderr.startswith("weekly_clusters: UNAVAILABLE: ")
    p = weekly(pyd.addr, tmp_path / "b", "--previous", 999999, check=1)
    assert p.stderr.strip() == "weekly_clusters: NOT_FOUND: no snapshot 999999 (GetSnapshot)"
    assert os.listdir(tmp_path / "b") == []


def test_job_failed_and_cancelled(daemon_factory, tmp_path):
    """A worker that fails after 2 s: wait() raises JobError ABORTED with
    the reason; a job cancelled while queued: JobError CANCELLED. The
    daemon cuts every call at 1 s (--max-deadline-ms): wait() watches
    again instead of giving up."""
    dm = daemon_factory("--worker", fake_worker(tmp_path, "sleep 2; exit 1"),
                        "--max-deadline-ms", "1000")
    c = client(dm.addr)
    with pytest.raises(gc.GraphdError) as ei:
        c.clusters()
    assert ei.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert c.snapshots().empty and list(c.snapshots().columns) == gc.MANIFEST_COLUMNS
    j1 = c.start_clustering(name="fails")
    j2 = c.start_clustering(name="queued")
    assert c.cancel(j2.id).state == "CANCELLED"
    with pytest.raises(gc.JobError) as ei:
        c.wait(j2.id)
    assert ei.value.code == grpc.StatusCode.CANCELLED and ei.value.job.id == j2.id
    seen = []
    with pytest.raises(gc.JobError) as ei:
        c.wait(j1.id, progress=seen.append)
    e = ei.value
    assert isinstance(e, gc.GraphdError) and e.code == grpc.StatusCode.ABORTED
    assert e.job.state == "FAILED" and "worker exited with code 1" in e.details
    assert seen and seen[-1] == e.job and e.job.spec["name"] == "fails"
    # Each watch starts with the job as it is: RUNNING came at least twice.
    assert sum(j.state == "RUNNING" for j in seen) >= 2, seen
    p = weekly(dm.addr, tmp_path / "out", check=1)
    assert "ABORTED: job" in p.stderr and "FAILED: worker exited with code 1" in p.stderr


# ------------------------------------------------------------ tokens, TLS


def test_tokens_and_case_id(daemon_factory, tmp_path):
    dm = daemon_factory("--tokens", write_tokens(tmp_path / "tokens", TOKENS), *worker_args())
    md = [("authorization", "Bearer " + TOKENS["writer"])]
    dm.stub.Upsert(pb.UpsertRequest(links=[link(SELLER, "t%d" % i, DEVICE, "td%d" % (i // 3))
                                           for i in range(9)]), metadata=md, timeout=T())
    tf = tmp_path / "writer-token"
    tf.write_text(TOKENS["writer"] + "\n")
    out = tmp_path / "out"
    weekly(dm.addr, out, "--token-file", tf, "--case-id", "case-py-7")
    assert read_json(out / "snapshot.json")["sellers"] == 9
    # $GRAPHD_TOKEN when there is no --token-file.
    p = weekly(dm.addr, tmp_path / "o2", token=TOKENS["reader"], check=1)
    assert "PERMISSION_DENIED" in p.stderr and "StartClustering" in p.stderr
    assert len(client(dm.addr, token=TOKENS["reader"]).snapshots()) == 1
    with pytest.raises(gc.GraphdError) as ei:
        client(dm.addr).snapshots()
    assert ei.value.code == grpc.StatusCode.UNAUTHENTICATED
    # The case id reached the audit trail with each call of the job.
    rep = dm.stub.ListAudit(pb.ListAuditRequest(case_id="case-py-7"), timeout=T(),
                            metadata=[("authorization", "Bearer " + TOKENS["admin"])])
    methods = {r.method.rsplit("/", 1)[-1] for r in rep.records}
    assert {"StartClustering", "WatchJob", "StreamAssignments", "ListClusters"} <= methods
    assert {r.principal for r in rep.records} == {"writer-user"}


def test_tls(daemon_factory, certs):  # noqa: F811
    dm = daemon_factory(*tls_args(certs), *worker_args())
    target = "localhost:%d" % dm.port
    c = client(target, tls_ca=str(certs / "ca.pem"))
    assert c.snapshots().empty
    with pytest.raises(gc.GraphdError) as ei:
        client(target).snapshots()  # plaintext to a TLS port
    assert ei.value.code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ValueError):
        client(target, tls_cert=str(certs / "analyst-1.pem"))
    # An empty graph gives an empty snapshot; the report says so.
    out = certs / "weekly-out"
    p = weekly(target, out, "--tls-ca", certs / "ca.pem")
    assert "0 sellers, 0 clusters, 0 of them" in p.stdout
    assert pd.read_csv(out / "top_clusters.csv").empty


def test_writes_from_dataframes(daemon_factory):
    """upsert, ingest and label from pandas: what the daemon then holds."""
    dm = daemon_factory(*worker_args())
    c = client(dm.addr)
    links = pd.DataFrame({"a_type": ["seller"] * 3, "a_key": ["w1", "w2", "w3"],
                          "b_type": ["device", "device", "address"],
                          "b_key": ["dv", "dv", "ad"],
                          "seen": [pd.Timestamp("2026-01-02", tz="UTC"), 1767312000, None]})
    ents = pd.DataFrame({"type": ["seller", "seller"], "key": ["w1", "w2"],
                         "labels": [["counterfeit"], "watch;b"],
                         "attributes": [{"country": "DE"}, None]})
    t = c.upsert(links, ents)
    assert t["links_created"] == 3 and not t["duplicate"]
    e = get(dm.stub, SELLER, "w1")
    assert list(e.labels) == ["counterfeit"] and e.first_seen == 1767312000
    assert {a.name: a.value for a in e.attributes} == {"country": "DE"}
    assert sorted(get(dm.stub, SELLER, "w2").labels) == ["b", "watch"]
    assert get(dm.stub, SELLER, "w3").first_seen > 1767312000  # no seen: the commit time
    big = pd.DataFrame({"a_type": "seller", "a_key": ["i%d" % i for i in range(2500)],
                        "b_type": "phone", "b_key": ["p%d" % (i // 2) for i in range(2500)]})
    t = c.ingest(big, batch=1000)
    assert t["messages"] == 3 and t["links_created"] == 2500
    assert dm.stub.Stats(pb.StatsRequest(), timeout=T()).links == 2503
    assert c.label("seller", "i7", add=["counterfeit", "x"], remove=["x"]) == ["counterfeit"]
    with pytest.raises(ValueError):
        c.upsert(pd.DataFrame({"a_key": ["x"]}))
    with pytest.raises(gc.GraphdError) as ei:
        c.label("seller", "nobody", add=["a"])
    assert ei.value.code == grpc.StatusCode.NOT_FOUND


def test_alerts_follow_and_resume(daemon_factory):
    """Client.alerts: the alerts in order, resumed after a seq, reopened
    when a stream reaches its deadline, errors with their status; warm_start
    reaches the spec."""
    dm = daemon_factory(*worker_args())
    c = gc.Client("127.0.0.1:%d" % dm.port, timeout=T(), stream_timeout=1.5)

    def shares(k):
        return [pb.LinkInput(a=pb.EntityRef(type=pb.ENTITY_TYPE_SELLER, key=k),
                             b=pb.EntityRef(type=pb.ENTITY_TYPE_DEVICE, key="py-dev")),
                pb.LinkInput(a=pb.EntityRef(type=pb.ENTITY_TYPE_SELLER, key=k),
                             b=pb.EntityRef(type=pb.ENTITY_TYPE_PHONE, key="+15550002"))]

    s = dm.stub
    s.Upsert(pb.UpsertRequest(links=[
        pb.LinkInput(a=pb.EntityRef(type=pb.ENTITY_TYPE_SELLER, key="bg%d" % i),
                     b=pb.EntityRef(type=pb.ENTITY_TYPE_ADDRESS, key="home-%d" % i))
        for i in range(300)] + [x for i in range(4) for x in shares("ring%d" % i)]), timeout=T())
    c.run_clustering(name="py-alerts", warm_start="off", timeout=T(120))
    it = c.alerts()
    for i in range(3):
        s.Upsert(pb.UpsertRequest(links=shares("new%d" % i)), timeout=T())
    got = [next(it) for _ in range(3)]
    time.sleep(2)  # past the stream's 1.5 s deadline: the next alert comes on a new stream
    s.Upsert(pb.UpsertRequest(links=shares("new3")), timeout=T())
    got.append(next(it))
    it.close()
    assert [a["seq"] for a in got] == [1, 2, 3, 4]
    assert [a["seller_key"] for a in got] == ["new0", "new1", "new2", "new3"]
    assert got[0]["cluster_id"] > 0 and got[0]["evidence"]
    assert {x["key"] for e in got[0]["evidence"] for x in e["shared"]} >= {"py-dev"}
    rest = c.alerts(after_seq=1)
    assert [next(rest)["seq"] for _ in range(3)] == [2, 3, 4]
    rest.close()
    with pytest.raises(gc.GraphdError) as ei:
        next(c.alerts(min_risk=2))
    assert ei.value.code == grpc.StatusCode.INVALID_ARGUMENT and "min_risk" in str(ei.value)
    with pytest.raises(ValueError):
        c.start_clustering(warm_start="sometimes")
