"""Warm start of clustering jobs (ClusteringSpec.warm_start,
SnapshotManifest.warm_started; graphd/worker/worker.h, warm_start).

Data: a sellergen network (SELLERGEN_BIN; skipped without it), 2000
sellers, seed 11. Its link records are split by their seen time: the
oldest 99% are loaded, a first job clusters them (snapshot A), then the
newest 1% are loaded, so the jobs after it run on a changed graph. Each
of those jobs deletes its snapshot at the end, so that A stays the latest:
every job's previous snapshot (the one ids are matched against, and the
one a warm start starts from) is A.
"""

import os

import grpc
import pytest

from bbutil import T, expect_status, pb
from test_analytics import generate, loaded_daemon, run_job
from test_investigate import ingest

GEN_ARGS = ["--sellers", "2000", "--seed", "11"]
HELD_BACK = 0.01


@pytest.fixture(scope="module")
def net(sellergen_bin, tmp_path_factory):
    return generate(sellergen_bin, tmp_path_factory, "sellergen-warm", GEN_ARGS)


@pytest.fixture(scope="module")
def warm(net, tmp_path_factory):
    """A daemon holding net, clustered once before its newest 1% of links
    were loaded: (daemon, snapshot A's manifest)."""
    rows = sorted(net.link_rows, key=lambda r: r[2])  # by seen; stable
    cut = len(rows) - max(1, int(len(rows) * HELD_BACK))

    def load(dm):
        ingest(dm.stub, rows[:cut], net.entity_rows)
        job, seen = run_job(dm.stub, name="A")
        assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
        a = dm.stub.GetSnapshot(pb.SnapshotRequest(snapshot_id=seen[-1].snapshot_id),
                                timeout=T())
        ingest(dm.stub, rows[cut:], [])
        return dm, a

    yield from loaded_daemon(net, tmp_path_factory, "warm", load)


def assignments(stub, snapshot_id):
    got = {}
    for b in stub.StreamAssignments(pb.StreamAssignmentsRequest(snapshot_id=snapshot_id),
                                    timeout=T()):
        got.update(zip(b.seller_ids, b.cluster_ids))
    return got


def job_against_a(dm, a, **spec):
    """A job whose previous snapshot is A (the latest); its snapshot is
    deleted afterwards so that A stays the latest. Returns (job as
    StartClustering answered it, the snapshot's manifest, the share of A's
    sellers whose cluster id it kept)."""
    job, seen = run_job(dm.stub, **spec)
    last = seen[-1]
    assert last.state == pb.JOB_STATE_SUCCEEDED, last.reason
    m = dm.stub.GetSnapshot(pb.SnapshotRequest(snapshot_id=last.snapshot_id), timeout=T())
    listed = [s for s in dm.stub.ListSnapshots(pb.ListSnapshotsRequest(), timeout=T()).snapshots
              if s.id == m.id]
    assert len(listed) == 1 and listed[0].warm_started == m.warm_started
    before, after = assignments(dm.stub, a.id), assignments(dm.stub, m.id)
    assert len(before) == a.sellers and len(after) == m.sellers >= a.sellers
    stayed = sum(1 for s, c in before.items() if after.get(s) == c) / len(before)
    dm.stub.DeleteSnapshot(pb.SnapshotRequest(snapshot_id=m.id), timeout=T())
    assert m.previous_snapshot_id == a.id
    assert m.input_checksum != a.input_checksum  # the graph changed in between
    return job, m, stayed


def test_first_job_is_cold(warm):
    _, a = warm
    assert a.previous_snapshot_id == 0
    assert a.warm_started is False
    assert a.spec.warm_start == pb.WARM_START_AUTO


def test_auto_same_spec_is_warm(warm):
    dm, a = warm
    # Name and seed differ from A's spec: still "the same spec".
    job, m, stayed = job_against_a(dm, a, name="B", seed=9)
    assert m.warm_started is True
    assert job.spec.warm_start == pb.WARM_START_AUTO
    assert m.spec.warm_start == pb.WARM_START_AUTO
    assert m.spec.name == "B" and m.seed == 9
    # Started from A's membership, nearly every seller of A keeps its
    # cluster id.
    assert stayed >= 0.97, stayed


def test_warm_reads_from_the_previous_image(warm):
    """A warm job reads A's export image patched with the 1% loaded
    since, not the whole graph; what it read is what a cold job's whole
    read gives (the same input checksum). A cold job reads the whole
    graph."""
    dm, a = warm
    _, w, _ = job_against_a(dm, a, name="img-warm", warm_start=pb.WARM_START_ON)
    _, c, _ = job_against_a(dm, a, name="img-cold", warm_start=pb.WARM_START_OFF)
    assert a.read_from_image == 0 and a.patched_ids == 0
    assert w.read_from_image == a.id, w
    assert 0 < w.patched_ids < a.sellers, w.patched_ids
    assert c.read_from_image == 0 and c.patched_ids == 0
    assert w.input_checksum == c.input_checksum
    assert w.sellers == c.sellers and w.ties == c.ties


def test_delete_snapshot_removes_its_image(warm):
    """A job keeps its export image as images/<snapshot id>.img under the
    data directory (with its previous snapshot's); DeleteSnapshot removes
    the snapshot's image with it, since no job can load it any more, and
    leaves the others."""
    dm, a = warm

    def img(sid):
        return os.path.join(dm.data_dir, "images", "%d.img" % sid)

    _, seen = run_job(dm.stub, name="img-del")
    m = seen[-1]
    assert m.state == pb.JOB_STATE_SUCCEEDED, m.reason
    assert os.path.exists(img(m.snapshot_id)) and os.path.exists(img(a.id))
    dm.stub.DeleteSnapshot(pb.SnapshotRequest(snapshot_id=m.snapshot_id), timeout=T())
    assert not os.path.exists(img(m.snapshot_id))
    assert os.path.exists(img(a.id))


def test_auto_other_resolution_is_cold(warm):
    dm, a = warm
    res = a.spec.resolution * 1.5
    job, m, _ = job_against_a(dm, a, name="C", resolution=res)
    assert m.warm_started is False
    assert m.spec.resolution == pytest.approx(res)
    assert job.spec.warm_start == pb.WARM_START_AUTO


def test_off_is_cold(warm):
    dm, a = warm
    job, m, _ = job_against_a(dm, a, name="D", warm_start=pb.WARM_START_OFF)
    assert m.warm_started is False
    assert job.spec.warm_start == pb.WARM_START_OFF
    assert m.spec.warm_start == pb.WARM_START_OFF
    got = dm.stub.GetJob(pb.JobRequest(job_id=job.id), timeout=T())
    assert got.spec.warm_start == pb.WARM_START_OFF


def test_on_is_warm_whatever_the_spec(warm):
    dm, a = warm
    job, m, _ = job_against_a(dm, a, name="E", warm_start=pb.WARM_START_ON,
                           resolution=a.spec.resolution * 1.5)
    assert m.warm_started is True
    assert job.spec.warm_start == pb.WARM_START_ON
    assert m.spec.warm_start == pb.WARM_START_ON


def test_other_algorithms_ignore_it(warm):
    dm, a = warm
    _, m, _ = job_against_a(dm, a, name="F", warm_start=pb.WARM_START_ON,
                         algorithm=pb.ALGORITHM_CONNECTED_COMPONENTS)
    assert m.warm_started is False
    assert m.spec.warm_start == pb.WARM_START_ON


def test_on_without_previous_snapshot_is_cold(daemon):
    from bbutil import DEVICE, SELLER, link, upsert
    upsert(daemon.stub, [link(SELLER, "s%d" % i, DEVICE, "d%d" % (i // 3), seen=10)
                         for i in range(30)])
    job, seen = run_job(daemon.stub, warm_start=pb.WARM_START_ON)
    assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
    m = daemon.stub.GetSnapshot(pb.SnapshotRequest(), timeout=T())
    assert m.warm_started is False and m.previous_snapshot_id == 0
    assert m.spec.warm_start == pb.WARM_START_ON


def test_bad_warm_start_invalid_argument(daemon):
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, daemon.stub.StartClustering,
                  pb.StartClusteringRequest(spec=pb.ClusteringSpec(warm_start=7)),
                  timeout=T(), fields=["spec.warm_start"])
