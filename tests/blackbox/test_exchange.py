"""Exchange with engines outside graphd: ExportTies and ImportSnapshot
(docs/SCALING.md, "Clustering on a distributed engine"), with
python-igraph standing in for the outside engine.

Data: a sellergen network (SELLERGEN_BIN), 2000 sellers, seed 13, loaded
through Ingest; snapshot A is the worker's own run with the default spec.
"""

import json
import math
import os
import signal
import subprocess
import threading
import time

import grpc
import igraph
import pytest

from bbutil import DEVICE, SELLER, T, get, pb
from test_analytics import fake_worker, generate, loaded_daemon, run_job
from test_warm_start import assignments

GEN_ARGS = ["--sellers", "2000", "--seed", "13"]


@pytest.fixture(scope="module")
def net(sellergen_bin, tmp_path_factory):
    return generate(sellergen_bin, tmp_path_factory, "sellergen-exchange", GEN_ARGS)


@pytest.fixture(scope="module")
def ex(net, tmp_path_factory):
    """(daemon, snapshot A's manifest): A is the worker's run."""

    def load(dm):
        from test_investigate import ingest
        ingest(dm.stub, net.link_rows, net.entity_rows)
        _, seen = run_job(dm.stub, name="A")
        assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
        a = dm.stub.GetSnapshot(pb.SnapshotRequest(snapshot_id=seen[-1].snapshot_id),
                                timeout=T())
        return dm, a

    yield from loaded_daemon(net, tmp_path_factory, "exchange", load)


def export_ties(stub, spec=None):
    a, b, w = [], [], []
    for batch in stub.ExportTies(pb.ExportTiesRequest(spec=spec), timeout=T(120)):
        assert len(batch.seller_a) == len(batch.seller_b) == len(batch.weight) <= 8192
        a += batch.seller_a
        b += batch.seller_b
        w += batch.weight
    return a, b, w


def import_rows(stub, rows, spec=None, engine="test", declared=None, per_msg=1000,
                header_every=False):
    """ImportSnapshot of rows [(seller, label)], per_msg rows a message."""

    def msgs():
        n = declared if declared is not None else len(rows)
        first = True
        for i in range(0, max(len(rows), 1), per_msg):
            part = rows[i:i + per_msg]
            m = pb.ImportSnapshotRequest(seller_ids=[s for s, _ in part],
                                         clusters=[c for _, c in part])
            if first or header_every:
                m.header.CopyFrom(pb.ImportHeader(spec=spec, engine=engine, rows=n))
            first = False
            yield m

    return stub.ImportSnapshot(msgs(), timeout=T(120))


def ties_graph(a, b, w):
    """The exported ties as a python-igraph graph; vertex names are seller
    ids."""
    ids = sorted(set(a) | set(b))
    index = {s: i for i, s in enumerate(ids)}
    g = igraph.Graph(n=len(ids), edges=[(index[x], index[y]) for x, y in zip(a, b)])
    g.es["weight"] = w
    return g, ids, index


def partition(assign):
    """A membership as a set of frozensets of sellers."""
    by = {}
    for s, c in assign.items():
        by.setdefault(c, set()).add(s)
    return {frozenset(v) for v in by.values()}


def snapshot_count(stub):
    return len(stub.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T()).snapshots)


def test_export_ties_are_the_jobs_projection(ex):
    dm, a = ex
    ta, tb, tw = export_ties(dm.stub)
    assert len(ta) == a.ties > 0
    pairs = list(zip(ta, tb))
    assert all(x < y for x, y in pairs)
    assert pairs == sorted(pairs) and len(set(pairs)) == len(pairs)
    assert all(w > 0 and math.isfinite(w) for w in tw)
    # python-igraph, given the exported ties, scores the worker's own
    # membership exactly as the worker did: the export is the projection
    # the job clustered.
    g, ids, index = ties_graph(ta, tb, tw)
    assign = assignments(dm.stub, a.id)
    membership = [assign[s] for s in ids]
    q = g.modularity(membership, weights="weight")
    assert abs(q - a.modularity) < 1e-9, (q, a.modularity)


def test_export_ties_spec_changes_ties(ex):
    dm, _ = ex
    base = export_ties(dm.stub)
    heavy = export_ties(dm.stub, pb.ClusteringSpec(min_tie_weight=0.5))
    assert 0 < len(heavy[0]) < len(base[0])
    assert min(heavy[2]) >= 0.5


def test_import_own_membership_round_trip(ex):
    """Importing the worker's own membership gives the worker's snapshot:
    the same partition, and after id matching the same cluster ids and
    summaries."""
    dm, a = ex
    assign = assignments(dm.stub, a.id)
    rows = sorted(assign.items())
    job = import_rows(dm.stub, rows, engine="graphd-worker")
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.reason
    b = dm.stub.GetSnapshot(pb.SnapshotRequest(snapshot_id=job.snapshot_id), timeout=T())
    try:
        assert b.previous_snapshot_id == a.id
        assert b.imported.engine == "graphd-worker"
        assert b.imported.rows == len(rows) and b.imported.sellers_unassigned == 0
        assert (b.sellers, b.ties, b.clusters) == (a.sellers, a.ties, a.clusters)
        assert b.input_checksum == a.input_checksum
        assert abs(b.modularity - a.modularity) < 1e-9
        got = assignments(dm.stub, b.id)
        assert partition(got) == partition(assign)
        # Stable ids: every cluster of two or more keeps its id.
        sizes = {}
        for c in assign.values():
            sizes[c] = sizes.get(c, 0) + 1
        for s, c in assign.items():
            if sizes[c] >= 2:
                assert got[s] == c
        # The summaries of the clusters, risk order included.
        def summaries(snap):
            r = dm.stub.ListClusters(pb.ListClustersRequest(snapshot_id=snap, limit=200),
                                     timeout=T())
            return [(c.id, c.size, c.flagged, round(c.risk, 12), round(c.cohesion, 12),
                     [(t.entity.id, t.cluster_sellers, round(t.score, 12)) for t in c.top_shared])
                    for c in r.clusters]
        assert summaries(b.id) == summaries(a.id)
    finally:
        dm.stub.DeleteSnapshot(pb.SnapshotRequest(snapshot_id=job.snapshot_id), timeout=T())


def test_import_python_igraph_leiden(ex):
    """An outside run (python-igraph's Leiden on the exported ties) becomes
    a snapshot; sellers it never saw (no tie) are singletons."""
    dm, a = ex
    ta, tb, tw = export_ties(dm.stub)
    g, ids, _ = ties_graph(ta, tb, tw)
    part = g.community_leiden(objective_function="CPM", weights="weight", resolution_parameter=0.2,
                              n_iterations=-1)
    rows = [(ids[v], part.membership[v] * 7 - 100) for v in range(len(ids))]  # any labels
    before = snapshot_count(dm.stub)
    job = import_rows(dm.stub, rows, engine="python-igraph leiden",
                      spec=pb.ClusteringSpec(name="outside", algorithm=pb.ALGORITHM_LEIDEN_CPM,
                                             resolution=0.2))
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.reason
    assert job.spec.name == "outside"
    try:
        assert snapshot_count(dm.stub) == before + 1
        b = dm.stub.GetSnapshot(pb.SnapshotRequest(snapshot_id=job.snapshot_id), timeout=T())
        assert b.imported.rows == len(rows)
        assert b.imported.sellers_unassigned == a.sellers - len(rows)
        q = g.modularity(part.membership, weights="weight")
        assert abs(b.modularity - q) < 1e-9
        got = assignments(dm.stub, b.id)
        want = {}
        for v, s in enumerate(ids):
            want.setdefault(part.membership[v], set()).add(s)
        parts = partition(got)
        for members in want.values():
            assert frozenset(members) in parts
        # A diff against the worker's snapshot works as for any snapshot.
        events = list(dm.stub.DiffSnapshots(
            pb.DiffSnapshotsRequest(from_snapshot_id=a.id, to_snapshot_id=b.id), timeout=T()))
        assert events
    finally:
        dm.stub.DeleteSnapshot(pb.SnapshotRequest(snapshot_id=job.snapshot_id), timeout=T())


def expect_invalid(dm, fn, *needles, code=grpc.StatusCode.INVALID_ARGUMENT):
    before = snapshot_count(dm.stub)
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    assert ei.value.code() == code, ei.value.details()
    for n in needles:
        assert n in ei.value.details(), (n, ei.value.details())
    assert "nothing was written" in ei.value.details()
    assert snapshot_count(dm.stub) == before
    imports = os.path.join(dm.data_dir, "imports")
    assert not os.path.isdir(imports) or os.listdir(imports) == []


def test_import_bad_rows_write_nothing(ex, net):
    dm, a = ex
    assign = sorted(assignments(dm.stub, a.id).items())
    device = get(dm.stub, DEVICE, net.link_rows[0][1][1] if net.link_rows[0][1][0] == DEVICE
                 else next(r[1][1] for r in net.link_rows if r[1][0] == DEVICE)).id
    # Unknown id, in the second message.
    rows = assign[:1500] + [(10 ** 15, 1)] + assign[1500:1600]
    expect_invalid(dm, lambda: import_rows(dm.stub, rows), "row 1500", "no entity has id")
    # An entity that is not a seller.
    rows = assign[:10] + [(device, 1)] + assign[10:20]
    expect_invalid(dm, lambda: import_rows(dm.stub, rows), "row 10", "not a seller")
    # A seller given twice: the second row is the bad one, named before a
    # later unknown id.
    rows = assign[:50] + [(assign[3][0], 9)] + assign[50:60] + [(10 ** 15, 1)]
    expect_invalid(dm, lambda: import_rows(dm.stub, rows), "row 50", "given twice",
                   "first in row 3")
    # A stream that ends early.
    expect_invalid(dm, lambda: import_rows(dm.stub, assign[:100], declared=101),
                   "after 100 of the 101 rows")
    # More rows than declared.
    expect_invalid(dm, lambda: import_rows(dm.stub, assign[:100], declared=99, per_msg=60),
                   "message 1", "more than the 99 declared")
    # Header missing, repeated, malformed.
    def no_header():
        return dm.stub.ImportSnapshot(iter([pb.ImportSnapshotRequest(seller_ids=[1],
                                                                     clusters=[1])]),
                                      timeout=T())
    expect_invalid(dm, no_header, "message 0: header: missing")
    expect_invalid(dm, lambda: import_rows(dm.stub, assign[:100], per_msg=50,
                                           header_every=True),
                   "message 1: header: only the first")
    expect_invalid(dm, lambda: import_rows(dm.stub, assign[:5], declared=0),
                   "header.rows: must be >= 1")
    expect_invalid(dm, lambda: import_rows(dm.stub, assign[:5], engine="a\nb"),
                   "header.engine")
    expect_invalid(dm, lambda: import_rows(dm.stub, assign[:5],
                                           spec=pb.ClusteringSpec(resolution=-1)),
                   "header: spec.resolution")
    def unequal():
        m = pb.ImportSnapshotRequest(header=pb.ImportHeader(rows=2), seller_ids=[1, 2],
                                     clusters=[1])
        return dm.stub.ImportSnapshot(iter([m]), timeout=T())
    expect_invalid(dm, unequal, "seller_ids has 2 values and clusters 1")
    expect_invalid(dm, lambda: dm.stub.ImportSnapshot(iter([]), timeout=T()),
                   "before its first message")


def test_import_limit_and_cancel(daemon_factory):
    dm = daemon_factory("--import-max-rows", "10")
    r = dm.stub.Upsert(pb.UpsertRequest(links=[pb.LinkInput(
        a=pb.EntityRef(type=SELLER, key="s1"), b=pb.EntityRef(type=SELLER, key="s2"))]),
        timeout=T())
    assert r is not None
    ids = [get(dm.stub, SELLER, k).id for k in ("s1", "s2")]
    with pytest.raises(grpc.RpcError) as ei:
        import_rows(dm.stub, [(ids[0], 1)] * 11)
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--import-max-rows" in ei.value.details()
    # A client that breaks off mid-stream writes nothing.
    gate = threading.Event()

    def slow():
        yield pb.ImportSnapshotRequest(header=pb.ImportHeader(rows=2), seller_ids=[ids[0]],
                                       clusters=[1])
        gate.wait(T(10))

    fut = dm.stub.ImportSnapshot.future(slow(), timeout=T(30))
    time.sleep(0.3)
    fut.cancel()
    gate.set()
    with pytest.raises(grpc.FutureCancelledError):
        fut.result()
    # The upload slot is free again, and a good import works.
    deadline = time.time() + T(10)
    while True:
        try:
            job = import_rows(dm.stub, [(ids[0], 5), (ids[1], 5)])
            break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.FAILED_PRECONDITION or time.time() > deadline:
                raise
            time.sleep(0.05)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.reason
    got = assignments(dm.stub, job.snapshot_id)
    assert got[ids[0]] == got[ids[1]]
    assert snapshot_count(dm.stub) == 1


def sleepers(tag):
    """Pids of the fake worker's 'sleep TAG' (from /proc: no procps)."""
    pids = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", tag.encode()]:
                    pids.append(int(d))
        except (OSError, ValueError):
            pass
    return pids


def test_export_one_at_a_time_and_cancel(daemon_factory, tmp_path):
    """A worker that computes for long: a second export is refused while it
    runs, a cancel stops it, and the slot is free again."""
    tag = "31.%d" % (os.getpid() % 1000)
    dm = daemon_factory("--worker", fake_worker(tmp_path, "exec sleep " + tag))
    first = dm.stub.ExportTies(pb.ExportTiesRequest(), timeout=T(120))
    deadline = time.time() + T(10)
    while not sleepers(tag):
        assert time.time() < deadline, "the export's worker never started"
        time.sleep(0.05)
    with pytest.raises(grpc.RpcError) as ei:
        list(dm.stub.ExportTies(pb.ExportTiesRequest(), timeout=T(60)))
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "one at a time" in ei.value.details()
    first.cancel()
    while sleepers(tag):
        assert time.time() < deadline, "a cancelled export left its worker running"
        time.sleep(0.05)
    while True:  # the slot frees once the worker is reaped
        with pytest.raises(grpc.RpcError) as ei:
            list(dm.stub.ExportTies(pb.ExportTiesRequest(), timeout=1))
        if ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            break  # it ran (and its worker sleeps): the slot was free
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.time() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize("body,code,text", [
    ("echo 'error invalid argument: spec line 2: x' >&3; exit 2",
     grpc.StatusCode.INVALID_ARGUMENT, "invalid argument: spec line 2: x"),
    ("echo 'error resource exhausted: 9 ties exceed the limit' >&3; exit 4",
     grpc.StatusCode.RESOURCE_EXHAUSTED, "9 ties exceed the limit"),
    ("kill -9 $$", grpc.StatusCode.INTERNAL, "worker killed by signal 9"),
    ("echo 'done 5' >&3", grpc.StatusCode.INTERNAL, "sent 0 ties but reported another count"),
])
def test_export_worker_outcomes(daemon_factory, tmp_path, body, code, text):
    dm = daemon_factory("--worker", fake_worker(tmp_path, body))
    with pytest.raises(grpc.RpcError) as ei:
        list(dm.stub.ExportTies(pb.ExportTiesRequest(), timeout=T(30)))
    assert ei.value.code() == code and text in ei.value.details(), ei.value.details()


def test_export_bad_spec(ex):
    dm, _ = ex
    with pytest.raises(grpc.RpcError) as ei:
        list(dm.stub.ExportTies(pb.ExportTiesRequest(spec=pb.ClusteringSpec(
            min_tie_weight=-1)), timeout=T()))
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.min_tie_weight" in ei.value.details()


def test_graphctl_export_ties_and_import(ex, graphctl_bin, tmp_path):
    """The round trip through graphctl, python-igraph in between: export
    ties (ncol), Graph.Read_Ncol, Leiden, graphctl import; and graphctl's
    own assignments file imported as is."""
    from test_graphctl import run
    dm, a = ex
    ties = tmp_path / "ties.ncol"
    r = run(graphctl_bin, dm.addr, "export", "ties", "-o", ties, json_out=False)
    assert r.returncode == 0, r.stderr
    assert ("%d ties" % a.ties) in r.stderr
    ta, tb, tw = export_ties(dm.stub)
    lines = ties.read_text().splitlines()
    assert lines == ["%d %d %.17g" % x for x in zip(ta, tb, tw)]
    g = igraph.Graph.Read_Ncol(str(ties), weights=True, directed=False)
    assert (g.vcount(), g.ecount()) == (len(set(ta) | set(tb)), a.ties)
    assert abs(sum(g.es["weight"]) - sum(tw)) < 1e-6
    csv = tmp_path / "ties.csv"
    r = run(graphctl_bin, dm.addr, "export", "ties", "--format", "csv", "--min-tie", "0.5",
            "-o", csv, json_out=False)
    assert r.returncode == 0, r.stderr
    rows = csv.read_text().splitlines()
    assert rows[0] == "src,dst,weight" and all(float(x.split(",")[2]) >= 0.5 for x in rows[1:])

    part = g.community_leiden(objective_function="CPM", weights="weight",
                              resolution_parameter=0.2, n_iterations=-1)
    mem = tmp_path / "membership.txt"
    mem.write_text("# python-igraph leiden\nseller cluster\n" + "".join(
        "%s\t%d\n" % (g.vs[v]["name"], part.membership[v]) for v in range(g.vcount())))
    r = run(graphctl_bin, dm.addr, "import", mem, "--engine", "python-igraph", "--name", "py")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["state"] == "SUCCEEDED" and job["name"] == "py"
    dm.stub.DeleteSnapshot(pb.SnapshotRequest(snapshot_id=job["snapshot_id"]), timeout=T())

    assign = tmp_path / "a.csv"
    r = run(graphctl_bin, dm.addr, "assignments", "--snapshot", a.id, "-o", assign,
            json_out=False)
    assert r.returncode == 0, r.stderr
    r = run(graphctl_bin, dm.addr, "import", assign, "--engine", "graphd")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert partition(assignments(dm.stub, job["snapshot_id"])) == \
        partition(assignments(dm.stub, a.id))
    dm.stub.DeleteSnapshot(pb.SnapshotRequest(snapshot_id=job["snapshot_id"]), timeout=T())

    # Bad rows: a malformed line (graphctl's own check), a seller twice
    # (the daemon's), nothing written.
    before = snapshot_count(dm.stub)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n3 x\n")
    r = run(graphctl_bin, dm.addr, "import", bad, json_out=False)
    assert r.returncode == 65 and "bad.txt:2" in r.stderr, r.stderr
    first = sorted(assignments(dm.stub, a.id))[:3]
    bad.write_text("%d 1\n%d 1\n%d 2\n" % (first[0], first[1], first[0]))
    r = run(graphctl_bin, dm.addr, "import", bad, json_out=False)
    assert r.returncode == 1 and "row 2" in r.stderr and "given twice" in r.stderr, r.stderr
    assert snapshot_count(dm.stub) == before


def test_import_interrupted_by_restart(daemon_factory, tmp_path):
    """An import whose job a restart interrupts is never answered, and its
    job fails saying why; the rows' file does not outlive the restart."""
    tag = "32.%d" % (os.getpid() % 1000)
    dm = daemon_factory("--worker", fake_worker(tmp_path, "exec sleep " + tag))
    dm.stub.Upsert(pb.UpsertRequest(links=[pb.LinkInput(
        a=pb.EntityRef(type=SELLER, key="s1"), b=pb.EntityRef(type=SELLER, key="s2"))]),
        timeout=T())
    ids = [get(dm.stub, SELLER, k).id for k in ("s1", "s2")]
    first = dm.stub.StartClustering(pb.StartClusteringRequest(), timeout=T())  # runs, sleeps
    fut = dm.stub.ImportSnapshot.future(iter([pb.ImportSnapshotRequest(
        header=pb.ImportHeader(rows=2, engine="e"), seller_ids=ids, clusters=[1, 1])]),
        timeout=T(60))
    imports = os.path.join(dm.data_dir, "imports")
    deadline = time.time() + T(10)
    queued = first.id + 1
    while True:  # the rows' file is written just before the job is queued
        try:
            job = dm.stub.GetJob(pb.JobRequest(job_id=queued), timeout=T())
            break
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e.details()
            assert time.time() < deadline, "the import never queued its job"
            time.sleep(0.05)
    assert job.state == pb.JOB_STATE_QUEUED
    assert len(os.listdir(imports)) == 1
    dm.kill9()
    with pytest.raises(grpc.RpcError):
        fut.result()
    assert len(os.listdir(imports)) == 1
    for pid in sleepers(tag):  # a real worker dies with its daemon
        os.kill(pid, signal.SIGKILL)
    again = daemon_factory(data_dir=dm.data_dir)  # the real worker
    assert os.listdir(imports) == []
    deadline = time.time() + T(30)
    while True:
        job = again.stub.GetJob(pb.JobRequest(job_id=queued), timeout=T())
        if job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
            break
        assert time.time() < deadline
        time.sleep(0.1)
    assert job.state == pb.JOB_STATE_FAILED
    assert "restarted before the import ran" in job.reason, job.reason
    assert again.stub.GetJob(pb.JobRequest(job_id=first.id), timeout=T()).state == \
        pb.JOB_STATE_FAILED
    assert snapshot_count(again.stub) == 0
