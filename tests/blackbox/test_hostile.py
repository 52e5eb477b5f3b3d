"""Hostile load: many idle streams that send nothing and carry no deadline,
slow readers that never read a server stream, while a control client's
GetEntity latency is measured against its latency unloaded, in the same
run. The daemon must keep answering, cut what it should, and stay healthy.

GRAPHD_HOSTILE_STREAMS (default 300; the slow suite uses 3000) sets the
number of idle streams, spread over connections of 250 streams each."""

import os
import threading
import time

import grpc
import pytest

from bbutil import DEVICE, SELLER, T, link, pb, ref
from graphd.v1 import graphd_pb2_grpc
from test_investigate import report

STREAMS = int(os.environ.get("GRAPHD_HOSTILE_STREAMS", "300"))
SLOW_READERS = int(os.environ.get("GRAPHD_HOSTILE_READERS", "20"))
SELLERS = 30000


def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))]


def control(stub, n=300):
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        stub.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, "s%d" % (i % 50))), timeout=T(30))
        lat.append(time.perf_counter() - t0)
    return lat


def test_control_latency_under_hostile_load(daemon_factory, capsys):
    d = daemon_factory("--default-deadline-ms", "600000", "--max-calls", "100000",
                       "--max-streams", "1000", *os.environ.get("GRAPHD_HOSTILE_ARGS", "").split())
    s = d.stub
    # 30000 sellers: their assignments are several 64 KiB messages, more
    # than an HTTP/2 window, so an unread stream really stalls the server.
    for b in range(3):
        s.Upsert(pb.UpsertRequest(links=[link(SELLER, "s%d" % i, DEVICE, "d%d" % (i % 7))
                                         for i in range(b * 10000, b * 10000 + 10000)]),
                 timeout=T())
    job = s.StartClustering(pb.StartClusteringRequest(spec=pb.ClusteringSpec(
        algorithm=pb.ALGORITHM_CONNECTED_COMPONENTS)), timeout=T())
    last = list(s.WatchJob(pb.JobRequest(job_id=job.id), timeout=T(60)))[-1]
    assert last.state == pb.JOB_STATE_SUCCEEDED, last.reason
    base = control(s)

    release = threading.Event()
    channels, futs, readers = [], [], []

    def idle():
        release.wait(600)
        return
        yield

    try:
        per = 250
        for k in range(0, STREAMS, per):
            # A connection of its own (grpc shares one between channels to
            # the same target otherwise, and 1000 streams is the server's
            # per-connection limit: the control calls would queue behind).
            ch = d.new_channel(options=[("grpc.use_local_subchannel_pool", 1)])
            channels.append(ch)
            st = graphd_pb2_grpc.SellerGraphStub(ch)
            for _ in range(min(per, STREAMS - k)):
                futs.append(st.Ingest.future(idle()))  # no deadline, sends nothing
        # Slow readers: server streams nobody reads (flow control holds them).
        ch = d.new_channel(options=[("grpc.use_local_subchannel_pool", 1)])
        channels.append(ch)
        st = graphd_pb2_grpc.SellerGraphStub(ch)
        for _ in range(SLOW_READERS):
            readers.append(st.StreamAssignments(pb.StreamAssignmentsRequest()))
        time.sleep(1.0)
        loaded = control(s)
        health = s.Stats(pb.StatsRequest(), timeout=T())
        assert health.schema_version >= 1
    finally:
        release.set()
        for r in readers:
            r.cancel()
        for f in futs:
            try:
                f.result(timeout=T(60))
            except grpc.RpcError:
                pass
            except grpc.FutureTimeoutError:
                f.cancel()
        for ch in channels:
            ch.close()
    b, l = p99(base), p99(loaded)
    report(capsys, "hostile load (%d idle streams without deadline, %d slow readers): control "
           "GetEntity p99 %.2f ms loaded vs %.2f ms unloaded (x%.1f); medians %.2f / %.2f ms"
           % (STREAMS, SLOW_READERS, l * 1e3, b * 1e3, l / b, sorted(loaded)[len(loaded) // 2] * 1e3,
              sorted(base)[len(base) // 2] * 1e3))
    assert l < max(20 * b, 0.25), "control p99 %.1f ms under load" % (l * 1e3)
    # Everything was released; the daemon is whole.
    assert s.Stats(pb.StatsRequest(), timeout=T()).links == 30000
    assert d.running()
