"""Analytics rpcs: clustering jobs (StartClustering, GetJob, WatchJob,
CancelJob) and snapshot reads (ListSnapshots, GetSnapshot, DeleteSnapshot,
ListClusters, GetCluster, StreamAssignments, GetEntity's cluster).

The daemon finds graphd-worker next to its own binary (GRAPHD_BIN's
directory); GRAPHD_WORKER_BIN, when set, is passed as --worker.

Data: a sellergen network (SELLERGEN_BIN; skipped without it), 3000
sellers, seed 5, loaded through Ingest into one module-scoped daemon.
"""

import json
import os
import re
import subprocess
import time

import grpc
import pytest

from bbutil import SELLER, T, expect_status, pb, ref
from conftest import Daemon, _graphd_bin
from test_investigate import Net, ingest

GEN_ARGS = ["--sellers", "3000", "--seed", "5"]
FINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)


def worker_args():
    w = os.environ.get("GRAPHD_WORKER_BIN")
    return ["--worker", w] if w else []


def start_daemon(tmp_path_factory, name):
    base = tmp_path_factory.mktemp(name)
    os.makedirs(base / "data")
    os.makedirs(base / "logs")
    return Daemon(_graphd_bin(), base / "data", base / "logs", worker_args(),
                  os.environ.get("GRAPHD_WRAPPER")).start()


def watch(stub, job_id, timeout=None):
    """WatchJob to the end: the list of Job messages."""
    return list(stub.WatchJob(pb.JobRequest(job_id=job_id), timeout=timeout or T(120)))


def run_job(stub, **spec):
    job = stub.StartClustering(pb.StartClusteringRequest(spec=pb.ClusteringSpec(**spec)),
                               timeout=T())
    seen = watch(stub, job.id)
    assert seen, "WatchJob sent nothing"
    return job, seen


def generate(sellergen_bin, tmp_path_factory, name, args):
    """A sellergen network made with args, read back as a Net."""
    out = tmp_path_factory.mktemp(name)
    subprocess.run([sellergen_bin] + args + ["--out", str(out)], check=True,
                   capture_output=True, timeout=T(60))
    return Net(str(out))


def loaded_daemon(net, tmp_path_factory, name, load=None):
    """A daemon holding net, or whatever load(daemon) puts in it (a fixture
    body: yields the daemon, or load's result; checks exit 0)."""
    dm = start_daemon(tmp_path_factory, name)
    try:
        if load is None:
            ingest(dm.stub, net.link_rows, net.entity_rows)
            yield dm
        else:
            yield load(dm)
    except BaseException:
        print("graphd stderr tail:\n" + dm.log_tail())
        raise
    finally:
        rc = dm.terminate()
        assert rc == 0, "graphd exit code %r\n%s" % (rc, dm.log_tail())


@pytest.fixture(scope="module")
def net(sellergen_bin, tmp_path_factory):
    return generate(sellergen_bin, tmp_path_factory, "sellergen", GEN_ARGS)


@pytest.fixture(scope="module")
def an(net, tmp_path_factory):
    yield from loaded_daemon(net, tmp_path_factory, "analytics")


def n_sellers(stub):
    st = stub.Stats(pb.StatsRequest(), timeout=T())
    return {tc.type: tc.count for tc in st.entities}[SELLER]


@pytest.fixture(scope="module")
def snap(an):
    """One successful clustering run: (job, watched messages)."""
    job, seen = run_job(an.stub, name="first", algorithm=pb.ALGORITHM_LEIDEN_CPM,
                        flagged_labels=["counterfeit"])
    return job, seen


# ------------------------------------------------------------ before any snapshot


def test_no_snapshot_yet(daemon):
    s = daemon.stub
    FP = grpc.StatusCode.FAILED_PRECONDITION
    expect_status(FP, s.GetSnapshot, pb.SnapshotRequest(), timeout=T())
    expect_status(FP, s.ListClusters, pb.ListClustersRequest(), timeout=T())
    expect_status(FP, s.GetCluster, pb.GetClusterRequest(cluster_id=1), timeout=T())
    expect_status(FP, s.StreamAssignments, pb.StreamAssignmentsRequest(), timeout=T())
    assert list(s.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T()).snapshots) == []


def test_unknown_ids_not_found(daemon):
    s = daemon.stub
    NF = grpc.StatusCode.NOT_FOUND
    for fn in (s.GetJob, s.CancelJob, s.WatchJob):
        expect_status(NF, fn, pb.JobRequest(job_id=12345), timeout=T(), fields=["job_id"])
    expect_status(NF, s.GetSnapshot, pb.SnapshotRequest(snapshot_id=77), timeout=T())
    expect_status(NF, s.DeleteSnapshot, pb.SnapshotRequest(snapshot_id=77), timeout=T())


@pytest.mark.parametrize("spec,field", [
    (dict(algorithm=99), "spec.algorithm"),
    (dict(resolution=-1.0), "spec.resolution"),
    (dict(resolution=float("nan")), "spec.resolution"),
    (dict(iterations=2000000), "spec.iterations"),
    (dict(min_tie_weight=-0.5), "spec.min_tie_weight"),
    (dict(window=pb.TimeWindow(since=200, until=100)), "spec.window"),
    (dict(flagged_labels=[""]), "spec.flagged_labels[0]"),
    (dict(flagged_labels=["a,b"]), "spec.flagged_labels[0]"),
    (dict(hub_caps=[pb.HubCap(type=SELLER, max_sellers=5)]), "spec.hub_caps[0].type"),
    (dict(hub_caps=[pb.HubCap(type=pb.ENTITY_TYPE_ADDRESS, max_sellers=0)]),
     "spec.hub_caps[0].max_sellers"),
    (dict(type_weights=[pb.TypeWeight(type=pb.ENTITY_TYPE_DEVICE, weight=-1)]),
     "spec.type_weights[0].weight"),
    (dict(type_weights=[pb.TypeWeight(type=0, weight=1)]), "spec.type_weights[0].type"),
    (dict(type_weights=[pb.TypeWeight(type=pb.ENTITY_TYPE_ADDRESS, weight=float("inf"))]),
     "spec.type_weights[0].weight"),
    (dict(type_weights=[pb.TypeWeight(type=pb.ENTITY_TYPE_IP, weight=float("nan"))]),
     "spec.type_weights[0].weight"),
    (dict(type_weights=[pb.TypeWeight(type=t, weight=0) for t in range(1, 8)]),
     "spec.type_weights"),
    (dict(resolution=float("inf")), "spec.resolution"),
    (dict(min_tie_weight=float("nan")), "spec.min_tie_weight"),
    (dict(evidence=7), "spec.evidence"),
    (dict(name="x" * 200), "spec.name"),
    (dict(name="a\nalgorithm=louvain"), "spec.name"),
])
def test_bad_spec_invalid_argument(daemon, spec, field):
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, daemon.stub.StartClustering,
                  pb.StartClusteringRequest(spec=pb.ClusteringSpec(**spec)), timeout=T(),
                  fields=[field])


# ------------------------------------------------------------ a full run


def test_job_succeeds(an, snap):
    job, seen = snap
    assert job.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
    assert job.spec.name == "first"
    last = seen[-1]
    assert last.state == pb.JOB_STATE_SUCCEEDED, last.reason
    assert last.snapshot_id > 0 and last.progress == 1.0
    assert last.ended_at >= last.started_at >= last.created_at > 0
    assert all(m.id == job.id for m in seen)
    # states only move forward
    states = [m.state for m in seen]
    assert states == sorted(states)
    got = an.stub.GetJob(pb.JobRequest(job_id=job.id), timeout=T())
    assert got.state == pb.JOB_STATE_SUCCEEDED and got.snapshot_id == last.snapshot_id
    # WatchJob of a finished job: one message, then OK
    again = watch(an.stub, job.id)
    assert len(again) == 1 and again[0].state == pb.JOB_STATE_SUCCEEDED


def test_snapshot_manifest(an, snap):
    sid = snap[1][-1].snapshot_id
    m = an.stub.GetSnapshot(pb.SnapshotRequest(), timeout=T())
    assert m.id == sid
    assert m.sellers == n_sellers(an.stub)
    assert m.clusters > 0
    assert m.spec.name == "first" and m.spec.algorithm == pb.ALGORITHM_LEIDEN_CPM
    assert list(m.spec.flagged_labels) == ["counterfeit"]
    assert len(m.input_checksum) == 64
    assert m.created_at > 0
    assert any(t.stage == "cluster" for t in m.timings)
    assert an.stub.GetSnapshot(pb.SnapshotRequest(snapshot_id=sid), timeout=T()).id == sid
    ls = an.stub.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T())
    assert sid in [x.id for x in ls.snapshots]


def test_list_clusters_by_risk(an, snap):
    s = an.stub
    rep = s.ListClusters(pb.ListClustersRequest(order=pb.CLUSTER_ORDER_RISK, min_size=2,
                                                limit=50), timeout=T())
    cl = list(rep.clusters)
    assert cl and all(c.size >= 2 for c in cl)
    keys = [(-c.risk, -c.size, c.id) for c in cl]
    assert keys == sorted(keys)
    top = cl[0]
    assert top.flagged > 0
    m = s.GetSnapshot(pb.SnapshotRequest(), timeout=T())
    assert m.flagged_sellers > 0
    assert abs(m.risk_base_rate - m.flagged_sellers / m.sellers) < 1e-12
    p = m.risk_base_rate
    assert abs(top.risk - (top.flagged + 5 * p) / (top.size + 5)) < 1e-9
    # Without a size floor, flagged clusters still come before every
    # unflagged one, singletons included.
    allc = s.ListClusters(pb.ListClustersRequest(order=pb.CLUSTER_ORDER_RISK, limit=200),
                          timeout=T()).clusters
    seen_unflagged = False
    for c in allc:
        seen_unflagged |= c.flagged == 0
        assert not (seen_unflagged and c.flagged > 0 and c.size > 1), "unflagged ranked first"
    assert top.top_shared and top.top_shared[0].entity.id > 0
    assert top.top_shared[0].cluster_sellers >= 2
    # paging covers every cluster once
    ids, tok = [], ""
    while True:
        r = s.ListClusters(pb.ListClustersRequest(order=pb.CLUSTER_ORDER_SIZE, limit=100,
                                                  page_token=tok), timeout=T())
        ids += [c.id for c in r.clusters]
        tok = r.next_page_token
        if not tok:
            break
    snapm = s.GetSnapshot(pb.SnapshotRequest(), timeout=T())
    assert len(ids) == len(set(ids)) == snapm.clusters
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.ListClusters,
                  pb.ListClustersRequest(page_token="junk"), timeout=T(), fields=["page_token"])


def test_get_cluster_riskiest(an, snap):
    s = an.stub
    top = s.ListClusters(pb.ListClustersRequest(order=pb.CLUSTER_ORDER_RISK, min_size=2,
                                                limit=1), timeout=T()).clusters[0]
    rep = s.GetCluster(pb.GetClusterRequest(cluster_id=top.id), timeout=T())
    assert rep.cluster.id == top.id and rep.cluster.size == top.size
    assert len(rep.members) == min(top.size, 100)
    sid = snap[1][-1].snapshot_id
    for m in rep.members:
        assert m.type == SELLER
        e = s.GetEntity(pb.GetEntityRequest(ref=ref(0, id=m.id)), timeout=T()).entity
        assert e.cluster_id == top.id and e.cluster_snapshot_id == sid
    expect_status(grpc.StatusCode.NOT_FOUND, s.GetCluster,
                  pb.GetClusterRequest(cluster_id=1 << 60), timeout=T())
    # Ties: a spanning forest of the cluster (Leiden clusters are
    # connected): size - 1 ties between members, strongest first.
    members = {m.id for m in rep.members}
    assert rep.ties_stored == top.size - 1 and len(rep.ties) == min(top.size - 1, 100)
    w = [t.weight for t in rep.ties]
    assert w == sorted(w, reverse=True) and w[-1] > 0
    assert all(t.seller_a < t.seller_b and {t.seller_a, t.seller_b} <= members for t in rep.ties)
    # Members page by after_seller.
    ids = sorted(members)
    p1 = s.GetCluster(pb.GetClusterRequest(cluster_id=top.id, max_members=1, max_ties=1),
                      timeout=T())
    assert [m.id for m in p1.members] == ids[:1] and p1.more_members and len(p1.ties) == 1
    p2 = s.GetCluster(pb.GetClusterRequest(cluster_id=top.id, after_seller=ids[0]), timeout=T())
    assert [m.id for m in p2.members] == ids[1:] and not p2.more_members
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.GetCluster,
                  pb.GetClusterRequest(cluster_id=top.id, max_ties=1 << 30), timeout=T(),
                  fields=["max_ties"])


def test_stream_assignments(an, snap):
    total, sellers = 0, set()
    batches = 0
    for b in an.stub.StreamAssignments(pb.StreamAssignmentsRequest(), timeout=T(60)):
        assert len(b.seller_ids) == len(b.cluster_ids)
        total += len(b.seller_ids)
        sellers.update(b.seller_ids)
        assert all(c > 0 for c in b.cluster_ids)
        batches += 1
    assert total == len(sellers) == n_sellers(an.stub)
    assert batches >= 1


def test_get_entity_shows_cluster(an, snap, net):
    key = sorted(net.truth)[0]
    e = an.stub.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, key)), timeout=T()).entity
    assert e.cluster_id > 0 and e.cluster_snapshot_id == snap[1][-1].snapshot_id


def test_cancel_queued_and_running(an, snap):
    s = an.stub
    before = {x.id for x in s.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T()).snapshots}
    slow = pb.ClusteringSpec(name="slow", algorithm=pb.ALGORITHM_INFOMAP, iterations=100000)
    j1 = s.StartClustering(pb.StartClusteringRequest(spec=slow), timeout=T())
    j2 = s.StartClustering(pb.StartClusteringRequest(spec=slow), timeout=T())
    # j2 waits behind j1: cancelled at once
    c2 = s.CancelJob(pb.JobRequest(job_id=j2.id), timeout=T())
    assert c2.state == pb.JOB_STATE_CANCELLED
    # j1: wait until the worker is clustering, then cancel
    deadline = time.monotonic() + T(30)
    while True:
        g = s.GetJob(pb.JobRequest(job_id=j1.id), timeout=T())
        assert g.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING), (g.state, g.reason)
        if g.stage == "cluster":
            assert g.state == pb.JOB_STATE_RUNNING and 0 < g.progress < 1
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    s.CancelJob(pb.JobRequest(job_id=j1.id), timeout=T())
    last = watch(s, j1.id, timeout=T(30))[-1]
    assert last.state == pb.JOB_STATE_CANCELLED, (last.state, last.reason)
    assert time.monotonic() - t0 < T(5), "cancel took too long"
    assert last.snapshot_id == 0
    after = {x.id for x in s.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T()).snapshots}
    assert after == before
    # cancel of a finished job is a no-op
    assert s.CancelJob(pb.JobRequest(job_id=j1.id), timeout=T()).state == pb.JOB_STATE_CANCELLED


def test_second_run_and_delete(an, snap):
    s = an.stub
    first = snap[1][-1].snapshot_id
    job, seen = run_job(s, name="second", algorithm=pb.ALGORITHM_CONNECTED_COMPONENTS)
    sid = seen[-1].snapshot_id
    assert seen[-1].state == pb.JOB_STATE_SUCCEEDED and sid > first
    m = s.GetSnapshot(pb.SnapshotRequest(), timeout=T())
    assert m.id == sid and m.previous_snapshot_id == first
    ls = s.ListSnapshots(pb.ListSnapshotsRequest(limit=1), timeout=T())
    assert [x.id for x in ls.snapshots] == [sid] and ls.next_page_token
    s.DeleteSnapshot(pb.SnapshotRequest(snapshot_id=sid), timeout=T())
    expect_status(grpc.StatusCode.NOT_FOUND, s.GetSnapshot, pb.SnapshotRequest(snapshot_id=sid),
                  timeout=T())
    assert s.GetSnapshot(pb.SnapshotRequest(), timeout=T()).id == first
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.DeleteSnapshot, pb.SnapshotRequest(),
                  timeout=T(), fields=["snapshot_id"])


# ------------------------------------------------------------ bigger graph, restart


def workers_of(data_dir):
    """pids of graphd-worker processes running on data_dir."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if argv[0].endswith(b"graphd-worker") and data_dir.encode() in argv:
            out.append(int(pid))
    return out


def test_many_batches_shutdown_and_restart(sellergen_bin, tmp_path_factory):
    """10000 sellers: StreamAssignments sends several batches. The job queue
    is journalled: SIGTERM with one job running and one queued cancels the
    running one ("daemon shutting down") and exits 0; after the restart the
    queued one runs, ids continue, and the snapshot is kept. kill -9 with a
    job running: after the restart that job is FAILED ("interrupted") and
    no snapshot was written."""
    out = tmp_path_factory.mktemp("sellergen10k")
    subprocess.run([sellergen_bin, "--sellers", "10000", "--seed", "7", "--out", str(out)],
                   check=True, capture_output=True, timeout=T(60))
    net10 = Net(str(out))
    dm = start_daemon(tmp_path_factory, "analytics10k")

    def wait_running(s, job_id):
        deadline = time.monotonic() + T(30)
        while s.GetJob(pb.JobRequest(job_id=job_id), timeout=T()).state != pb.JOB_STATE_RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    try:
        s = dm.stub
        ingest(s, net10.link_rows, net10.entity_rows)
        job, seen = run_job(s, algorithm=pb.ALGORITHM_CONNECTED_COMPONENTS)
        assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
        sid = seen[-1].snapshot_id
        batches = list(s.StreamAssignments(pb.StreamAssignmentsRequest(snapshot_id=sid),
                                           timeout=T(60)))
        assert len(batches) >= 2
        ids = [x for b in batches for x in b.seller_ids]
        assert len(ids) == n_sellers(s) and ids == sorted(ids)
        # a watcher that goes away early does not disturb the daemon
        slow = pb.ClusteringSpec(algorithm=pb.ALGORITHM_INFOMAP, iterations=100000)
        j = s.StartClustering(pb.StartClusteringRequest(spec=slow), timeout=T())
        it = s.WatchJob(pb.JobRequest(job_id=j.id), timeout=T(60))
        next(it)
        it.cancel()
        quick = pb.ClusteringSpec(name="queued", algorithm=pb.ALGORITHM_CONNECTED_COMPONENTS)
        q = s.StartClustering(pb.StartClusteringRequest(spec=quick), timeout=T())
        wait_running(s, j.id)
        assert s.GetJob(pb.JobRequest(job_id=q.id), timeout=T()).state == pb.JOB_STATE_QUEUED
        t0 = time.monotonic()
        rc = dm.terminate()
        assert rc == 0, dm.log_tail()
        assert time.monotonic() - t0 < T(10)

        dm.start()
        s = dm.stub
        g = s.GetJob(pb.JobRequest(job_id=j.id), timeout=T())
        assert g.state == pb.JOB_STATE_CANCELLED and g.reason == "daemon shutting down"
        assert g.spec.algorithm == pb.ALGORITHM_INFOMAP
        done = watch(s, q.id)[-1]
        assert done.state == pb.JOB_STATE_SUCCEEDED and done.spec.name == "queued", done.reason
        assert done.snapshot_id > sid
        assert s.GetSnapshot(pb.SnapshotRequest(snapshot_id=sid), timeout=T()).id == sid
        n = s.StartClustering(pb.StartClusteringRequest(spec=slow), timeout=T())
        assert n.id > q.id
        wait_running(s, n.id)
        before = {x.id for x in s.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T()).snapshots}
        dm.kill9()
        dm.start()
        s = dm.stub
        g = s.GetJob(pb.JobRequest(job_id=n.id), timeout=T())
        assert g.state == pb.JOB_STATE_FAILED and "interrupted" in g.reason, g
        # The orphaned worker got SIGTERM with its parent (PR_SET_PDEATHSIG):
        # it cancels instead of committing later.
        deadline = time.monotonic() + T(15)
        while workers_of(dm.data_dir):
            assert time.monotonic() < deadline, "orphaned worker still running"
            time.sleep(0.1)
        after = {x.id for x in s.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T()).snapshots}
        assert after == before
    finally:
        if dm.running():
            dm.terminate()


# ------------------------------------------------------------ worker outcomes (fake workers)


def fake_worker(tmp_path, body):
    p = tmp_path / "fake-worker.sh"
    p.write_text("#!/bin/sh\ncat >/dev/null\n" + body + "\n")
    p.chmod(0o755)
    return str(p)


@pytest.mark.parametrize("body,state,reason", [
    ("kill -9 $$", pb.JOB_STATE_FAILED, "worker killed by signal 9"),
    ("echo 'stage read 0.1' >&3; echo 'error invalid argument: spec line 2: x' >&3; exit 2",
     pb.JOB_STATE_FAILED, "invalid argument: spec line 2: x"),
    ("exit 1", pb.JOB_STATE_FAILED, "worker exited with code 1"),
    ("echo cancelled >&3; exit 5", pb.JOB_STATE_CANCELLED, "cancelled"),
])
def test_worker_outcomes(daemon_factory, tmp_path, body, state, reason):
    dm = daemon_factory("--worker", fake_worker(tmp_path, body))
    job, seen = run_job(dm.stub, name="fake")
    last = seen[-1]
    assert last.state == state and reason in last.reason, (last.state, last.reason)
    assert last.snapshot_id == 0


def test_worker_runs_with_huge_pages(daemon_factory, tmp_path, monkeypatch):
    """The daemon adds glibc.malloc.hugetlb=1 to the worker's
    GLIBC_TUNABLES (jobs.c, worker_env), after what the daemon's own
    environment has there."""
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    out = tmp_path / "tunables.txt"
    dm = daemon_factory("--worker", fake_worker(
        tmp_path, f'printf "%s" "$GLIBC_TUNABLES" > {out}; exit 1'))
    run_job(dm.stub, name="env")
    assert out.read_text() == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


def test_graphctl_watches_past_the_server_deadline(daemon_factory, tmp_path, graphctl_bin):
    """graphctl sends no deadline on WatchJob; the server cuts such calls
    (here after 1 s) while the job runs on (2 s). graphctl watches again and
    reports the job's real end, not DEADLINE_EXCEEDED."""
    import subprocess
    dm = daemon_factory("--worker", fake_worker(tmp_path, "sleep 2; exit 1"),
                        "--default-deadline-ms", "1000")
    r = subprocess.run([graphctl_bin, "--addr", dm.addr, "cluster", "--name", "slow", "--no-progress"],
                       capture_output=True, text=True, timeout=T(60))
    assert "DEADLINE_EXCEEDED" not in r.stderr, r.stderr
    assert r.returncode != 0 and "FAILED" in r.stderr and "worker exited with code 1" in r.stderr, \
        (r.returncode, r.stderr)


@pytest.mark.parametrize("script", [
    # watch 1 cut before any message, watch 2 gives the final job
    ["cut", "final"],
    # the final job, then the server's deadline cuts the close
    ["running+cut", "final+cut"],
    # a few cuts of each kind, then the end
    ["running+cut", "cut", "cut", "running+cut", "final+cut"],
])
def test_graphctl_watch_races_the_server_deadline(graphctl_bin, script):
    """graphctl against a scripted SellerGraph: each WatchJob call plays
    the next step of the script. A watch the server's deadline cuts before
    any message is opened again; a final Job followed by DEADLINE_EXCEEDED
    is the job's end. graphctl reports the job, never DEADLINE_EXCEEDED
    (the race an ASan run once lost against the real daemon)."""
    from concurrent import futures
    steps = list(script)
    calls = []

    def job(state):
        return pb.Job(id=7, state=state, stage="cluster", reason="worker exited with code 1")

    def start(req, ctx):
        return job(pb.JOB_STATE_QUEUED)

    def watch(req, ctx):
        step = steps.pop(0) if steps else "final"
        calls.append(step)
        if step.startswith("running"):
            yield job(pb.JOB_STATE_RUNNING)
        if step.startswith("final"):
            yield job(pb.JOB_STATE_FAILED)
        if step.endswith("cut"):
            ctx.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded (server deadline clamp)")

    handler = grpc.method_handlers_generic_handler("graphd.v1.SellerGraph", {
        "StartClustering": grpc.unary_unary_rpc_method_handler(
            start, request_deserializer=pb.StartClusteringRequest.FromString,
            response_serializer=pb.Job.SerializeToString),
        "WatchJob": grpc.unary_stream_rpc_method_handler(
            watch, request_deserializer=pb.JobRequest.FromString,
            response_serializer=pb.Job.SerializeToString),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        r = subprocess.run([graphctl_bin, "--addr", "127.0.0.1:%d" % port, "cluster",
                            "--no-progress"], capture_output=True, text=True, timeout=T(60))
    finally:
        server.stop(0)
    assert "DEADLINE_EXCEEDED" not in r.stderr, (calls, r.stderr)
    assert r.returncode != 0 and "job 7 FAILED" in r.stderr, (calls, r.returncode, r.stderr)
    assert calls == script, calls


def test_graphctl_job_cancel(daemon_factory, tmp_path, graphctl_bin):
    """graphctl job ID --cancel waits for a running job to end and says it
    was cancelled (exit 0); on a job that already ended it says there was
    nothing to cancel (exit 0), and the job stays as it was."""
    dm = daemon_factory("--worker", fake_worker(tmp_path, "exec sleep 30"))

    def ctl(*args):
        return subprocess.run([graphctl_bin, "--addr", dm.addr] + list(args),
                              capture_output=True, text=True, timeout=T(60))

    job = dm.stub.StartClustering(pb.StartClusteringRequest(), timeout=T())
    for _ in range(200):
        if dm.stub.GetJob(pb.JobRequest(job_id=job.id), timeout=T()).state == \
                pb.JOB_STATE_RUNNING:
            break
        time.sleep(0.05)
    t0 = time.monotonic()
    r = ctl("job", str(job.id), "--cancel")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "cancel requested" in r.stderr and "CANCELLED" in r.stdout, (r.stdout, r.stderr)
    assert time.monotonic() - t0 < T(20)
    assert dm.stub.GetJob(pb.JobRequest(job_id=job.id), timeout=T()).state == \
        pb.JOB_STATE_CANCELLED
    r = ctl("job", str(job.id), "--cancel")
    assert r.returncode == 0 and "already ended CANCELLED: nothing to cancel" in r.stderr, \
        (r.returncode, r.stderr)
    assert "CANCELLED" in r.stdout


def test_missing_worker_fails_job(daemon_factory, tmp_path):
    dm = daemon_factory("--worker", str(tmp_path / "no-such-worker"))
    job, seen = run_job(dm.stub)
    assert seen[-1].state == pb.JOB_STATE_FAILED and "no-such-worker" in seen[-1].reason
    # the queue goes on: the next job is handled too
    job2, seen2 = run_job(dm.stub)
    assert seen2[-1].state == pb.JOB_STATE_FAILED and job2.id == job.id + 1


# ------------------------------------------------------------ graphctl


def test_graphctl_analytics(an, snap, graphctl_bin, tmp_path):
    """cluster (job to the end), job, snapshots, clusters, cluster ID,
    assignments (CSV and JSON Lines, to a file), diff A B."""
    from test_graphctl import js, run

    def ctl(*args, **kw):
        return run(graphctl_bin, an.addr, *args, **kw)

    p = ctl("cluster", "--algorithm", "louvain", "--name", "from-graphctl", "--seed", "3",
            "--label", "counterfeit", check=0)
    job = js(p)
    assert job["state"] == "SUCCEEDED" and job["algorithm"] == "louvain"
    sid = job["snapshot_id"]
    assert sid > 0
    text = ctl("cluster", "--name", "text", json_out=False, check=0).stdout
    assert "SUCCEEDED" in text and "snapshot" in text
    assert js(ctl("job", job["id"], check=0))["snapshot_id"] == sid

    snaps = js(ctl("snapshots", check=0))["snapshots"]
    assert sid in [x["id"] for x in snaps]
    assert any(x["name"] == "from-graphctl" for x in snaps)
    table = ctl("snapshots", json_out=False, check=0).stdout
    assert table.startswith("ID") and "from-graphctl" in table

    cl = js(ctl("clusters", "--snapshot", sid, "--min-size", "2", "--limit", "5", check=0))
    assert 0 < len(cl["clusters"]) <= 5 and cl["next_page_token"]
    risks = [c["risk"] for c in cl["clusters"]]
    assert risks == sorted(risks, reverse=True)
    table = ctl("clusters", "--snapshot", sid, "--limit", "3", json_out=False, check=0).stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "SIZE", "FLAGGED", "RISK"]

    top = cl["clusters"][0]
    one = js(ctl("cluster", top["id"], "--snapshot", sid, "--max-members", "3", check=0))
    assert one["cluster"]["id"] == top["id"] and 0 < len(one["members"]) <= 3
    text = ctl("cluster", top["id"], "--snapshot", sid, json_out=False, check=0).stdout
    assert "top shared entities" in text
    # The ties name their sellers by key, also those past the members shown.
    few = ctl("cluster", top["id"], "--snapshot", sid, "--max-members", "1", json_out=False,
              check=0).stdout
    ties = few.split("ties holding it together")[1].splitlines()[1:]
    assert ties and all(re.match(r"^  s\d+ - s\d+  \d+\.\d{3}$", t) for t in ties), ties

    out = tmp_path / "a.csv"
    p = ctl("assignments", "--snapshot", sid, "--out", out, json_out=False, check=0)
    rows = out.read_text().splitlines()
    assert rows[0] == "seller_id,cluster_id" and len(rows) == n_sellers(an.stub) + 1
    assert "assignments" in p.stderr
    streamed = []
    for b in an.stub.StreamAssignments(pb.StreamAssignmentsRequest(snapshot_id=sid), timeout=T()):
        streamed.extend(zip(b.seller_ids, b.cluster_ids))
    assert [tuple(map(int, r.split(","))) for r in rows[1:]] == streamed
    jl = ctl("assignments", "--snapshot", sid, "--format", "jsonl", json_out=False,
             check=0).stdout.splitlines()
    assert json.loads(jl[0]) == {"seller_id": streamed[0][0], "cluster_id": streamed[0][1]}

    first = snap[1][-1].snapshot_id
    d = js(ctl("diff", first, sid, check=0))
    assert d["summary"]["from_snapshot_id"] == first and d["summary"]["to_snapshot_id"] == sid
    moved = [e for e in d["events"] if e["kind"] == "moved"]
    assert len(moved) == d["summary"]["sellers_moved"]
    nm = js(ctl("diff", first, "latest", "--no-moves", check=0))
    assert not [e for e in nm["events"] if e["kind"] == "moved"]
    text = ctl("diff", first, sid, json_out=False, check=0).stdout
    assert text.startswith("snapshot %d -> %d:" % (first, sid))
    # Changes first: continued clusters are counted, listed on request.
    cont = [e for e in d["events"] if e["kind"] == "continued"]
    lines = text.splitlines()
    assert not [ln for ln in lines if ln.startswith("continued")]
    if cont:
        assert lines[-1] == "(%d cluster%s continued; --continued lists them)" % (
            len(cont), "" if len(cont) == 1 else "s"), lines[-1]
    full = ctl("diff", first, sid, "--continued", json_out=False, check=0).stdout.splitlines()
    assert len([ln for ln in full if ln.startswith("continued")]) == len(cont)

    # Errors: exit 1 with the server's status, 2 for usage.
    p = ctl("diff", first, 999999, check=1)
    assert "NOT_FOUND" in p.stderr and "to_snapshot_id" in p.stderr
    ctl("diff", first, check=2)
    ctl("cluster", "--algorithm", "nope", check=2)
    p = ctl("cluster", "999999999", "--snapshot", sid, check=1)
    assert "NOT_FOUND" in p.stderr
    p = ctl("job", "999999", check=1)
    assert "NOT_FOUND" in p.stderr
    p = ctl("assignments", "--snapshot", "999999", "--out", tmp_path / "x.csv", check=1)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.tmp").exists()


def test_graph_over_the_caps(daemon_factory):
    """--cluster-max-sellers: StartClustering answers RESOURCE_EXHAUSTED at
    once; --cluster-max-ties: the job fails before igraph is called, its
    reason names the limit."""
    from bbutil import DEVICE, link, upsert
    links = [link(SELLER, "s%d" % i, DEVICE, "d%d" % (i // 3)) for i in range(12)]
    dm = daemon_factory(*worker_args(), "--cluster-max-sellers", "5")
    upsert(dm.stub, links=links)
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, dm.stub.StartClustering,
                  pb.StartClusteringRequest(), timeout=T(), fields=["--cluster-max-sellers"])
    dm2 = daemon_factory(*worker_args(), "--cluster-max-ties", "3")
    upsert(dm2.stub, links=links)
    _, seen = run_job(dm2.stub)
    assert seen[-1].state == pb.JOB_STATE_FAILED
    assert "resource exhausted" in seen[-1].reason and "12 ties" in seen[-1].reason
    assert "--cluster-max-ties" in seen[-1].reason
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, dm2.stub.GetSnapshot,
                  pb.SnapshotRequest(), timeout=T())


# ------------------------------------------------------------ snapshots stay true


@pytest.fixture(scope="module")
def imm(net, tmp_path_factory):
    yield from loaded_daemon(net, tmp_path_factory, "immutable")


def snapshot_reads(stub, graphctl_bin, addr, s1, s2, cids):
    """Every read of snapshot s1 (and of the diff s1 -> s2), serialized."""
    out = {}
    for order in (pb.CLUSTER_ORDER_RISK, pb.CLUSTER_ORDER_SIZE):
        tok, pages = "", []
        while True:
            rep = stub.ListClusters(pb.ListClustersRequest(snapshot_id=s1, order=order, limit=500,
                                                           page_token=tok), timeout=T())
            pages.append(rep.SerializeToString())
            tok = rep.next_page_token
            if not tok:
                break
        out["list-%d" % order] = pages
    for cid in cids:
        out["cluster-%d" % cid] = stub.GetCluster(
            pb.GetClusterRequest(snapshot_id=s1, cluster_id=cid, max_members=10000),
            timeout=T()).SerializeToString()
        # The drawing's data, paged as graphctl pages it.
        after, pages = 0, []
        while True:
            rep = stub.GetCluster(pb.GetClusterRequest(snapshot_id=s1, cluster_id=cid,
                                                       max_members=7, links=True,
                                                       after_seller=after), timeout=T())
            pages.append(rep.SerializeToString())
            if not rep.more_members:
                break
            after = rep.members[-1].id
        out["links-%d" % cid] = pages
    out["assign"] = [b.SerializeToString() for b in stub.StreamAssignments(
        pb.StreamAssignmentsRequest(snapshot_id=s1), timeout=T(60))]
    out["diff"] = [e.SerializeToString() for e in stub.DiffSnapshots(
        pb.DiffSnapshotsRequest(from_snapshot_id=s1, to_snapshot_id=s2), timeout=T(60))]
    for args in (["clusters", "--snapshot", str(s1), "--limit", "50"],
                 ["--json", "cluster", str(cids[0]), "--snapshot", str(s1)],
                 ["report", "--snapshot", str(s1), "--top", "5", "-o", "-"]):
        p = subprocess.run([graphctl_bin, "--addr", addr] + args, capture_output=True, text=True,
                           timeout=T(60))
        assert p.returncode == 0, p.stderr
        if "--json" in args:  # today's records ride along, apart: not the snapshot's
            j = json.loads(p.stdout)
            assert "live_members" in j
            del j["live_members"]
            out[" ".join(args)] = j
        else:
            out[" ".join(args)] = p.stdout
    return out


def test_snapshot_reads_never_change(imm, graphctl_bin):
    """Take snapshots, then label, delete and upsert around the riskiest
    cluster: every read of the snapshot (ListClusters pages in both orders,
    GetCluster members and supply sources, StreamAssignments, DiffSnapshots,
    graphctl) answers byte for byte as before; today's records are offered
    only in GetCluster.live_members."""
    s = imm.stub
    _, seen1 = run_job(s, name="imm", flagged_labels=["counterfeit"])
    _, seen2 = run_job(s, name="imm", flagged_labels=["counterfeit"])
    s1, s2 = seen1[-1].snapshot_id, seen2[-1].snapshot_id
    assert s1 and s2
    top = s.ListClusters(pb.ListClustersRequest(snapshot_id=s1, order=pb.CLUSTER_ORDER_RISK,
                                                min_size=4, limit=3), timeout=T()).clusters
    cids = [c.id for c in top]
    c0 = s.GetCluster(pb.GetClusterRequest(snapshot_id=s1, cluster_id=cids[0], max_members=10000),
                      timeout=T())
    flagged = set(c0.flagged_members)
    assert len(flagged) == c0.cluster.flagged > 0
    keys = {m.id: m.key for m in c0.members}
    assert c0.ties and all(t.key_a == keys[t.seller_a] and t.key_b == keys[t.seller_b]
                           for t in c0.ties)
    drawn = s.GetCluster(pb.GetClusterRequest(snapshot_id=s1, cluster_id=cids[0],
                                              max_members=10000, links=True), timeout=T())
    assert drawn.links_kept and drawn.links
    linked = {e.id: e for e in drawn.linked}
    assert c0.cluster.top_shared[0].entity.id in linked
    members = {m.id for m in drawn.members}
    assert all(l.seller_id in members and l.entity_id in linked for l in drawn.links)
    assert any("counterfeit" in m.labels for m in drawn.members)
    before = snapshot_reads(s, graphctl_bin, imm.addr, s1, s2, cids)
    assert "links as of today" not in before["report --snapshot %d --top 5 -o -" % s1]

    unflagged = [m for m in c0.members if m.id not in flagged]
    relabel = unflagged[:2]
    for m in relabel:
        s.SetLabels(pb.SetLabelsRequest(ref=ref(0, id=m.id), add=["counterfeit"]), timeout=T())
    gone = [m for m in c0.members if m.id in flagged][0]
    s.DeleteEntity(pb.DeleteEntityRequest(ref=ref(0, id=gone.id)), timeout=T())
    source = c0.cluster.top_shared[0].entity
    s.DeleteEntity(pb.DeleteEntityRequest(ref=ref(0, id=source.id)), timeout=T())
    keep = c0.cluster.top_shared[1].entity
    s.Upsert(pb.UpsertRequest(links=[pb.LinkInput(a=ref(SELLER, "imm-new"),
                                                  b=ref(keep.type, keep.key))]), timeout=T())

    after = snapshot_reads(s, graphctl_bin, imm.addr, s1, s2, cids)
    for k in before:
        assert after[k] == before[k], "%s changed after labels, deletes and an upsert" % k
    # Today's records are there, apart, when asked for.
    now = s.GetCluster(pb.GetClusterRequest(snapshot_id=s1, cluster_id=cids[0],
                                            max_members=10000, live=True), timeout=T())
    assert [m.id for m in now.members] == [m.id for m in c0.members]
    live = {e.id: e for e in now.live_members}
    assert gone.id not in live and len(live) == len(c0.members) - 1
    assert all("counterfeit" in live[m.id].labels for m in relabel)
    assert set(now.flagged_members) == flagged


def test_list_clusters_stored_order(imm):
    """ListClusters pages through the orders stored with the snapshot: the
    pages, concatenated, are exactly the snapshot's clusters sorted by the
    documented keys (for several page sizes and size floors), and a token
    only continues the listing it came from."""
    s = imm.stub
    _, seen1 = run_job(s, name="order", flagged_labels=["counterfeit"])
    _, seen2 = run_job(s, name="order", flagged_labels=["counterfeit"])
    s1, s2 = seen1[-1].snapshot_id, seen2[-1].snapshot_id

    def pages(sid, order, min_size, limit):
        out, tok, n = [], "", 0
        while True:
            rep = s.ListClusters(pb.ListClustersRequest(snapshot_id=sid, order=order,
                                                        min_size=min_size, limit=limit,
                                                        page_token=tok), timeout=T())
            assert len(rep.clusters) <= limit
            out += list(rep.clusters)
            tok, n = rep.next_page_token, n + 1
            if not tok:
                return out, n

    every, _ = pages(s1, pb.CLUSTER_ORDER_SIZE, 0, 1000)
    assert len(every) == s.GetSnapshot(pb.SnapshotRequest(snapshot_id=s1), timeout=T()).clusters
    by_risk = sorted(every, key=lambda c: (-c.risk, -c.size, c.id))
    by_size = sorted(every, key=lambda c: (-c.size, -c.risk, c.id))
    for order, want in ((pb.CLUSTER_ORDER_RISK, by_risk), (pb.CLUSTER_ORDER_SIZE, by_size)):
        for min_size in (0, 2, 3):
            for limit in (1, 37):
                got, n = pages(s1, order, min_size, limit)
                ids = [c.id for c in want if c.size >= max(min_size, 1)]
                assert [c.id for c in got] == ids, (order, min_size, limit)
                if limit == 1 and ids:
                    assert n == len(ids)
    # Tokens continue only their own listing.
    first = s.ListClusters(pb.ListClustersRequest(snapshot_id=s1, min_size=2, limit=5),
                           timeout=T())
    tok = first.next_page_token
    assert tok
    for other in (pb.ListClustersRequest(snapshot_id=s2, min_size=2, limit=5, page_token=tok),
                  pb.ListClustersRequest(snapshot_id=s1, order=pb.CLUSTER_ORDER_SIZE,
                                         min_size=2, limit=5, page_token=tok),
                  pb.ListClustersRequest(snapshot_id=s1, min_size=3, limit=5, page_token=tok)):
        expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.ListClusters, other, timeout=T(),
                      fields=["page_token"])
    again = s.ListClusters(pb.ListClustersRequest(snapshot_id=s1, min_size=2, limit=5,
                                                  page_token=tok), timeout=T())
    assert again.clusters and again.clusters[0].id not in {c.id for c in first.clusters}


def test_job_spec_is_the_spec_used(imm):
    """Job.spec reports the spec the job runs with, every default resolved,
    exactly as the snapshot's manifest records it: from StartClustering's
    reply on, not only once the job has ended."""
    s = imm.stub
    job, seen = run_job(s)  # an empty spec: every default
    spec = job.spec
    assert spec.algorithm == pb.ALGORITHM_LEIDEN_CPM
    assert spec.evidence == pb.EVIDENCE_RULE_CORROBORATED
    assert spec.resolution == pytest.approx(0.2) and spec.seed > 0
    assert list(spec.flagged_labels) == ["counterfeit"]
    assert {w.type for w in spec.type_weights} == set(range(1, 8))
    assert {h.type for h in spec.hub_caps} == set(range(2, 8))
    m = s.GetSnapshot(pb.SnapshotRequest(snapshot_id=seen[-1].snapshot_id), timeout=T())
    assert m.spec == spec
    assert s.GetJob(pb.JobRequest(job_id=job.id), timeout=T()).spec == spec
    # What was given stays what was given; the rest is filled in.
    job2, seen2 = run_job(s, resolution=0.05, seed=42,
                          hub_caps=[pb.HubCap(type=pb.ENTITY_TYPE_ADDRESS, max_sellers=300)])
    assert job2.spec.resolution == 0.05 and job2.spec.seed == 42
    assert {h.type: h.max_sellers for h in job2.spec.hub_caps}[pb.ENTITY_TYPE_ADDRESS] == 300
    m2 = s.GetSnapshot(pb.SnapshotRequest(snapshot_id=seen2[-1].snapshot_id), timeout=T())
    assert m2.spec == job2.spec
