"""Configured limits: each violation gets a clear status and is counted in
Stats.refused (result cap, batch items, reply size, calls in flight,
deadline clamp / default / expiry, auth refusals, the decode budget)."""

import threading
import time

import grpc

from bbutil import DEVICE, SELLER, T, expect_status, link, pb, ref


def refused(stub):
    return {r.limit: r.count for r in stub.Stats(pb.StatsRequest(), timeout=T()).refused}


def test_limits_counted(daemon_factory):
    d = daemon_factory("--result-cap", "5", "--max-batch-items", "10", "--max-calls", "3",
                       "--max-deadline-ms", "1800000", "--default-deadline-ms", "800",
                       "--keepalive-time-ms", "3600000", "--keepalive-timeout-ms", "5000",
                       "--min-ping-interval-ms", "5000")
    s = d.stub
    r0 = refused(s)
    assert set(r0) >= {"result_cap", "batch_items", "reply_bytes", "max_calls",
                       "deadline_clamped", "deadline_defaulted", "deadline_expired",
                       "unauthenticated", "permission", "audit", "alloc_budget"}
    s.Upsert(pb.UpsertRequest(links=[link(SELLER, "s1", DEVICE, "d1")]), timeout=T())
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Neighbors,
                  pb.NeighborsRequest(ref=ref(SELLER, "s1"), limit=6), timeout=T(),
                  fields=["--result-cap"])
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, s.Upsert, pb.UpsertRequest(
        links=[link(SELLER, "s%d" % i, DEVICE, "d1") for i in range(11)]), timeout=T(),
        fields=["--max-batch-items"])
    # A client deadline beyond --max-deadline-ms is cut (and counted).
    s.Stats(pb.StatsRequest(), timeout=3600)
    # No deadline: the default applies; an Ingest left open past it is
    # cancelled by the server.
    hold = threading.Event()

    def idle():
        hold.wait(30)
        return
        yield  # a generator that sends nothing until released

    t0 = time.monotonic()
    try:
        s.Ingest(idle())
        assert False, "an idle Ingest without a deadline was not cut"
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
    finally:
        hold.set()
    assert time.monotonic() - t0 < T(10)
    # Calls in flight: three idle Ingest streams, then a fourth call. The
    # streams stay open (held, and within their deadline) longer than the
    # loop below asks, so the fourth call must meet all three.
    holds = [threading.Event() for _ in range(3)]
    futs = []
    for h in holds:
        def gen(h=h):
            h.wait(T(60))
            return
            yield
        futs.append(s.Ingest.future(gen(), timeout=T(90)))
    try:
        # The three streams reach the server in their own time (slowly
        # under valgrind): ask until the fourth call is refused.
        deadline = time.monotonic() + T(30)
        while True:
            # A stream that arrived while a probe held the third slot was
            # refused (--max-calls): open another in its place.
            for i, f in enumerate(futs):
                if f.done():
                    def gen(h=holds[i]):
                        h.wait(T(60))
                        return
                        yield
                    futs[i] = s.Ingest.future(gen(), timeout=T(90))
            try:
                s.Stats(pb.StatsRequest(), timeout=T())
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                assert "--max-calls" in e.details()
                break
            if time.monotonic() > deadline:
                ends = [f.exception() if f.done() else "open" for f in futs]
                assert False, "a fourth call was never refused; the three streams: %r" % ends
            time.sleep(0.05)
    finally:
        for h in holds:
            h.set()
        for f in futs:
            try:
                f.result()
            except grpc.RpcError:
                pass
    r1 = refused(s)
    for k in ("result_cap", "batch_items", "max_calls", "deadline_clamped", "deadline_defaulted",
              "deadline_expired"):
        assert r1[k] > r0.get(k, 0), (k, r0, r1)


def test_request_decode_budget(daemon_factory):
    """A small message that decodes into a large tree (here 300,000 empty
    LinkInputs: 0.6 MB on the wire, tens of MB as structs) is refused
    before it is built; a normal request still passes, on the same stream
    too."""
    d = daemon_factory("--max-request-alloc-bytes", str(4 << 20))
    s = d.stub
    r0 = refused(s)
    empty = pb.UpsertRequest()
    empty.links.extend([pb.LinkInput()] * 300000)
    assert empty.ByteSize() < 1 << 20
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, s.Upsert, empty, timeout=T(),
                  fields=["--max-request-alloc-bytes", "graphd.v1.UpsertRequest"])
    # The same through Ingest: the stream ends with the same status.
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, s.Ingest, iter([empty]), timeout=T(),
                  fields=["--max-request-alloc-bytes"])
    s.Upsert(pb.UpsertRequest(links=[link(SELLER, "s%d" % i, DEVICE, "d1") for i in range(1000)]),
             timeout=T())
    assert s.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, "s999")), timeout=T()).entity.degree == 1
    r1 = refused(s)
    assert r1["alloc_budget"] == r0.get("alloc_budget", 0) + 2, (r0, r1)
