"""gRPC server reflection (grpc.reflection.v1alpha.ServerReflection): list
the services, fetch their files, and call graphd through classes built from
the returned descriptors alone (no project .proto or stubs), as generic
tools do; errors in the stream; malformed and over-long requests; the
stream's end under cancel, deadline, a vanished peer, --max-calls and the
shutdown drain; tokens. Two daemons in all (one shared by the protocol
tests), so the file stays short under valgrind."""

import os
import queue
import time

import grpc
import pytest

from bbutil import T, expect_status, pb
from conftest import Daemon, _graphd_bin
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc.reflection.v1alpha import reflection_pb2 as rpb
from grpc.reflection.v1alpha import reflection_pb2_grpc as rgrpc


REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
SERVICES = {"graphd.v1.SellerGraph", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
READER = [("authorization", "Bearer rrrrrrrrrrrrrrrr-reflection-reader")]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


class Feed:
    """A request iterator fed one request at a time (None ends it), so a
    test can read each answer before it asks the next question."""

    def __init__(self):
        self.q = queue.Queue()

    def __iter__(self):
        return self

    def __next__(self):
        item = self.q.get()
        if item is None:
            raise StopIteration
        return item


def open_stream(channel, metadata=None, timeout=None):
    feed = Feed()
    call = rgrpc.ServerReflectionStub(channel).ServerReflectionInfo(
        feed, metadata=metadata, timeout=timeout or T())
    return feed, call


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon for the protocol tests (they leave nothing open)."""
    base = tmp_path_factory.mktemp("reflection")
    os.makedirs(base / "data")
    os.makedirs(base / "logs")
    d = Daemon(_graphd_bin(), base / "data", base / "logs", (), os.environ.get("GRAPHD_WRAPPER"))
    d.start()
    yield d
    rc = d.terminate()
    assert rc == 0, "graphd exit code %r on SIGTERM (want 0)\n%s" % (rc, d.log_tail())


def ask(feed, call, req):
    feed.q.put(req)
    return next(call)


def ask_all(channel, reqs, metadata=None):
    """Several requests on one stream; the answers, in order."""
    return list(rgrpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter(reqs), metadata=metadata, timeout=T()))


def file_names(rep):
    assert rep.WhichOneof("message_response") == "file_descriptor_response", rep
    out = []
    for raw in rep.file_descriptor_response.file_descriptor_proto:
        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        out.append(fd.name)
    return out


def test_protocol_on_one_stream(daemon):
    reqs = [
        rpb.ServerReflectionRequest(host="h1", list_services=""),
        rpb.ServerReflectionRequest(file_containing_symbol="graphd.v1.SellerGraph"),
        rpb.ServerReflectionRequest(file_containing_symbol="graphd.v1.SellerGraph.GetEntity"),
        rpb.ServerReflectionRequest(file_containing_symbol="graphd.v1.DiffEvent.KIND_MOVED"),
        rpb.ServerReflectionRequest(
            file_containing_symbol="grpc.health.v1.HealthCheckResponse.ServingStatus"),
        rpb.ServerReflectionRequest(file_by_filename="grpc/reflection/v1alpha/reflection.proto"),
        rpb.ServerReflectionRequest(host="h2", file_containing_symbol="graphd.v1.NoSuchThing"),
        rpb.ServerReflectionRequest(file_by_filename="graphd/v1/nope.proto"),
        rpb.ServerReflectionRequest(file_containing_symbol=""),
        rpb.ServerReflectionRequest(),
        rpb.ServerReflectionRequest(file_containing_extension=rpb.ExtensionRequest(
            containing_type="graphd.v1.Entity", extension_number=100)),
        rpb.ServerReflectionRequest(all_extension_numbers_of_type="graphd.v1.Entity"),
        rpb.ServerReflectionRequest(all_extension_numbers_of_type="graphd.v1.Nope"),
    ]
    reps = ask_all(daemon.channel, reqs)
    assert len(reps) == len(reqs)
    for q, r in zip(reqs, reps):
        assert r.original_request == q
        assert r.valid_host == q.host
    ls = reps[0].list_services_response
    assert {s.name for s in ls.service} == SERVICES
    assert file_names(reps[1]) == ["graphd/v1/graphd.proto"]
    assert file_names(reps[2]) == ["graphd/v1/graphd.proto"]
    assert file_names(reps[3]) == ["graphd/v1/graphd.proto"]
    assert file_names(reps[4]) == ["grpc/health/v1/health.proto"]
    assert file_names(reps[5]) == ["grpc/reflection/v1alpha/reflection.proto"]
    for i, code, word in [(6, NOT_FOUND, "graphd.v1.NoSuchThing"),
                          (7, NOT_FOUND, "graphd/v1/nope.proto"),
                          (8, INVALID_ARGUMENT, "file_containing_symbol"),
                          (9, INVALID_ARGUMENT, "list_services"),
                          (10, NOT_FOUND, "graphd.v1.Entity"),
                          (12, NOT_FOUND, "graphd.v1.Nope")]:
        er = reps[i].error_response
        assert reps[i].WhichOneof("message_response") == "error_response", (i, reps[i])
        assert er.error_code == code and word in er.error_message, (i, er)
    ext = reps[11].all_extension_numbers_response
    assert ext.base_type_name == "graphd.v1.Entity" and list(ext.extension_number) == []
    # The stream is one call in the audit trail (its record commits a moment
    # after the reply: --audit-reads async).
    deadline = time.monotonic() + T()
    while True:
        recs = [r for r in daemon.stub.ListAudit(pb.ListAuditRequest(limit=100),
                                                 timeout=T()).records if r.method == REFLECTION]
        if recs or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ("requests=%d" % len(reqs), 0) in [(r.target, r.status) for r in recs], recs


def test_call_through_descriptors_only(daemon):
    """A client that knows nothing of graphd but the reflection protocol."""
    feed, call = open_stream(daemon.channel)
    names = [s.name for s in ask(feed, call, rpb.ServerReflectionRequest(
        list_services="*")).list_services_response.service]
    assert "graphd.v1.SellerGraph" in names
    rep = ask(feed, call, rpb.ServerReflectionRequest(
        file_containing_symbol="graphd.v1.SellerGraph"))
    feed.q.put(None)
    assert list(call) == [] and call.code() == grpc.StatusCode.OK

    pool = descriptor_pool.DescriptorPool()
    for raw in rep.file_descriptor_response.file_descriptor_proto:
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(raw))
    svc = pool.FindServiceByName("graphd.v1.SellerGraph")
    get_class = getattr(message_factory, "GetMessageClass", None) or \
        message_factory.MessageFactory(pool).GetPrototype

    def method(name):
        m = svc.methods_by_name[name]
        req_cls, rep_cls = get_class(m.input_type), get_class(m.output_type)
        fn = daemon.channel.unary_unary("/%s/%s" % (svc.full_name, m.name),
                                        request_serializer=req_cls.SerializeToString,
                                        response_deserializer=rep_cls.FromString)
        return req_cls, fn

    stats_req, stats = method("Stats")
    st = stats(stats_req(), timeout=T())
    assert st.entities_total == 0 and len(st.entities) > 0

    seller = pool.FindEnumTypeByName("graphd.v1.EntityType").values_by_name[
        "ENTITY_TYPE_SELLER"].number
    device = pool.FindEnumTypeByName("graphd.v1.EntityType").values_by_name[
        "ENTITY_TYPE_DEVICE"].number
    up_req, upsert = method("Upsert")
    q = up_req()
    lk = q.links.add()
    lk.a.type, lk.a.key, lk.b.type, lk.b.key, lk.seen = seller, "refl-s1", device, "refl-d1", 7
    assert upsert(q, timeout=T()).totals.links_created == 1

    get_req, get = method("GetEntity")
    q = get_req()
    q.ref.type, q.ref.key = seller, "refl-s1"
    e = get(q, timeout=T()).entity
    assert e.key == "refl-s1" and e.type == seller and e.degree == 1


def raw_stream(channel, msgs, metadata=None, timeout=None):
    fn = channel.stream_stream(REFLECTION)  # bytes in, bytes out
    return list(fn(iter(msgs), metadata=metadata, timeout=timeout or T()))


def test_bad_requests_end_the_call(daemon):
    ok = rpb.ServerReflectionRequest(list_services="").SerializeToString()
    # Garbage (a truncated field) after one good request.
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, raw_stream, daemon.channel,
                  [ok, b"\x22\x05ab"], fields=("request 1", "ServerReflectionRequest"))
    # Names have a length cap.
    long = rpb.ServerReflectionRequest(file_containing_symbol="a." * 600).SerializeToString()
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, raw_stream, daemon.channel, [long],
                  fields=("file_containing_symbol", "1024"))
    longhost = rpb.ServerReflectionRequest(host="h" * 2000, list_services="").SerializeToString()
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, raw_stream, daemon.channel, [longhost],
                  fields=("host", "1024"))
    # A string field that is not UTF-8 (field 4, file_containing_symbol).
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, raw_stream, daemon.channel,
                  [b"\x22\x02\xff\xfe"], fields=("file_containing_symbol", "UTF-8"))
    # An empty stream ends OK with no answers.
    assert raw_stream(daemon.channel, []) == []


def test_stream_end_cancel_deadline_peer_gone(daemon):
    # Cancelled by the client while the server waits for the next request.
    feed, call = open_stream(daemon.channel)
    assert ask(feed, call, rpb.ServerReflectionRequest(list_services="")).list_services_response
    call.cancel()
    with pytest.raises(grpc.RpcError) as ei:
        next(call)
    assert ei.value.code() == grpc.StatusCode.CANCELLED
    feed.q.put(None)
    # Deadline while the server waits.
    feed, call = open_stream(daemon.channel, timeout=0.3)
    with pytest.raises(grpc.RpcError) as ei:
        next(call)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    feed.q.put(None)
    # The peer goes away mid-stream.
    ch = daemon.new_channel()
    feed, call = open_stream(ch)
    assert ask(feed, call, rpb.ServerReflectionRequest(list_services="")).list_services_response
    ch.close()
    feed.q.put(None)
    # Still serving, every stream on the server side finished.
    reps = ask_all(daemon.channel, [rpb.ServerReflectionRequest(list_services="")])
    assert len(reps[0].list_services_response.service) == len(SERVICES)


def test_tokens_max_calls_drain(daemon_factory, tmp_path):
    (tmp_path / "tokens").write_text("rrrrrrrrrrrrrrrr-reflection-reader reader alice\n")
    d = daemon_factory("--tokens", str(tmp_path / "tokens"), "--max-calls", "1",
                       "--grace-ms", "300")
    req = rpb.ServerReflectionRequest(list_services="")
    expect_status(grpc.StatusCode.UNAUTHENTICATED, ask_all, d.channel, [req])

    def open_when_free():
        """A call is freed a moment after its status: retry while the
        previous one still counts against --max-calls 1."""
        deadline = time.monotonic() + T()
        while True:
            feed, call = open_stream(d.channel, metadata=READER)
            try:
                return feed, call, ask(feed, call, req)
            except grpc.RpcError as e:
                feed.q.put(None)
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                assert time.monotonic() < deadline, e
                time.sleep(0.02)

    # A reader may read the schema.
    feed, call, rep = open_when_free()
    assert len(rep.list_services_response.service) == len(SERVICES)
    # With that stream open, a second call is over --max-calls 1.
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, ask_all, d.channel, [req],
                  metadata=READER, fields=("--max-calls",))
    feed.q.put(None)
    assert list(call) == []
    # The drain: a client keeps its stream open; it is cancelled after the
    # grace period and the daemon exits cleanly.
    feed, call, rep = open_when_free()
    assert d.terminate(close_channel_first=False) == 0, d.log_tail()
    with pytest.raises(grpc.RpcError):
        next(call)
    feed.q.put(None)


def test_v1_name_serves_the_same_protocol(daemon):
    """grpc.reflection.v1 (asked first by current clients) answers like
    v1alpha: its messages are the same on the wire."""
    v1 = daemon.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=rpb.ServerReflectionRequest.SerializeToString,
        response_deserializer=rpb.ServerReflectionResponse.FromString)
    reps = list(v1(iter([rpb.ServerReflectionRequest(list_services=""),
                         rpb.ServerReflectionRequest(
                             file_containing_symbol="grpc.reflection.v1.ServerReflection")]),
                   timeout=T()))
    assert {s.name for s in reps[0].list_services_response.service} == SERVICES
    assert file_names(reps[1]) == ["grpc/reflection/v1/reflection.proto"]
