"""Malformed, oversized and hostile input. Every test ends by checking that
the daemon still answers a valid write and read and that Health is SERVING."""

import threading
import time

import grpc
import pytest

from bbutil import (DEVICE, EMAIL, SELLER, T, assert_healthy, ent, exists, expect_status, get,
                    link, link_ids, neighbors_all, patch_bytes, pb, raw_unary, ref, stats,
                    type_counts, upsert)

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def d(shared_daemon):
    """The module's one daemon (tests here use keys of their own and check
    counts as differences), checked healthy after each test."""
    yield shared_daemon
    assert_healthy(shared_daemon)


# ------------------------------------------------------------ raw payloads


@pytest.mark.parametrize("method", ["Upsert", "GetEntity", "Neighbors", "SetLabels", "DeleteEntity"])
@pytest.mark.parametrize("payload", [b"\x0a\xff\xff\xff", b"\xff" * 16, b"\x0a\x05ab",
                                     b"\x12\x80\x80\x80\x80\x10"],
                         ids=["trunc-len", "ff16", "short-body", "huge-len"])
def test_garbage_bytes(d, method, payload):
    expect_status(INVALID, raw_unary, d, method, payload)


@pytest.mark.parametrize("method", ["Upsert", "GetEntity", "Neighbors", "SetLabels",
                                    "DeleteEntity", "Stats"])
def test_zero_messages_on_unary_call(d, method):
    call = d.channel.stream_unary("/graphd.v1.SellerGraph/" + method)
    expect_status(INVALID, call, iter(()), timeout=T())


def test_garbage_in_ingest_stream(d):
    ing = d.channel.stream_unary("/graphd.v1.SellerGraph/Ingest")
    good = pb.UpsertRequest(links=[link(SELLER, "g0", DEVICE, "gd", seen=1)]).SerializeToString()
    details = expect_status(INVALID, ing, iter([good, b"\x0a\xff\xff\xff"]), timeout=T(),
                            fields=["message 1"])
    assert exists(d.stub, SELLER, "g0"), "message 0 (before the bad one) was lost; status %r" % details


def test_empty_request_is_valid_for_stats(d):
    # An empty *message* (zero bytes) is a valid StatsRequest.
    rep = raw_unary(d, "Stats", b"")
    st = pb.StatsReply.FromString(rep)
    assert st.schema_version >= 1


# ------------------------------------------------------------------ enums


def test_unknown_enum_in_link(d):
    r = pb.UpsertRequest(links=[pb.LinkInput(a=pb.EntityRef(type=99, key="k"),
                                             b=pb.EntityRef(type=DEVICE, key="d"), seen=1)])
    expect_status(INVALID, d.stub.Upsert, r, timeout=T(), fields=["links[0].a.type"])
    r = pb.UpsertRequest(links=[link(SELLER, "s", DEVICE, "d", seen=1),
                                pb.LinkInput(a=pb.EntityRef(type=SELLER, key="k"),
                                             b=pb.EntityRef(type=8, key="d"), seen=1)])
    expect_status(INVALID, d.stub.Upsert, r, timeout=T(), fields=["links[1].b.type"])
    assert not exists(d.stub, SELLER, "s")


def test_unspecified_type_in_link(d):
    r = pb.UpsertRequest(links=[pb.LinkInput(a=pb.EntityRef(key="k"),
                                             b=pb.EntityRef(type=DEVICE, key="d"), seen=1)])
    expect_status(INVALID, d.stub.Upsert, r, timeout=T(), fields=["links[0].a.type"])


def test_unknown_enum_in_entity(d):
    expect_status(INVALID, upsert, d.stub, entities=[ent(SELLER, "ok"), ent(99, "x")],
                  fields=["entities[1].type"])
    expect_status(INVALID, upsert, d.stub, entities=[ent(0, "x")], fields=["entities[0].type"])
    assert not exists(d.stub, SELLER, "ok")


def test_unknown_enum_in_get_entity(d):
    expect_status(INVALID, get, d.stub, 99, "x", fields=["ref.type"])
    expect_status(INVALID, get, d.stub, -1, "x", fields=["ref.type"])


def test_empty_ref(d):
    expect_status(INVALID, get, d.stub, 0, "", fields=["ref"])


# ------------------------------------------------------------------- keys


@pytest.mark.parametrize("key", ["", "   ", "\t\n"], ids=["empty", "spaces", "ws"])
def test_empty_key(d, key):
    expect_status(INVALID, upsert, d.stub, [link(SELLER, "s", DEVICE, key, seen=1)],
                  fields=["links[0].b.key"])
    expect_status(INVALID, upsert, d.stub, entities=[ent(EMAIL, key)], fields=["entities[0].key"])
    expect_status(INVALID, get, d.stub, SELLER, key, fields=["ref.key"])
    assert not exists(d.stub, SELLER, "s")


def test_phone_empty_after_normalisation(d):
    expect_status(INVALID, upsert, d.stub, entities=[ent(pb.ENTITY_TYPE_PHONE, "(---)")],
                  fields=["entities[0].key"])


def test_key_too_long(d):
    expect_status(INVALID, upsert, d.stub, [link(SELLER, "s", DEVICE, "k" * 4097, seen=1)],
                  fields=["links[0].b.key"])
    expect_status(INVALID, upsert, d.stub, entities=[ent(SELLER, "k" * 4097)],
                  fields=["entities[0].key"])
    expect_status(INVALID, get, d.stub, SELLER, "k" * 4097, fields=["ref.key"])
    # 4096 bytes (multi-byte UTF-8 counted in bytes) is the limit.
    upsert(d.stub, entities=[ent(SELLER, "k" * 4096)])
    assert get(d.stub, SELLER, "k" * 4096).key == "k" * 4096
    expect_status(INVALID, upsert, d.stub, entities=[ent(SELLER, "\u00e9" * 2049)],  # 4098 bytes
                  fields=["entities[0].key"])


def test_long_keys_beyond_lmdb_limit(d):
    s = d.stub
    k1 = "x" * 599 + "1"
    k2 = "x" * 599 + "2"  # same first 599 bytes: must still be distinct entities
    rep = upsert(s, [link(SELLER, k1, DEVICE, k2, seen=1), link(SELLER, k2, DEVICE, k1, seen=2)])
    assert rep.totals.entities_created == 4 and rep.totals.links_created == 2
    e1, e2 = get(s, SELLER, k1), get(s, SELLER, k2)
    assert e1.key == k1 and e2.key == k2 and e1.id != e2.id
    assert get(s, SELLER, "  " + k1.upper() + " ").id == e1.id
    assert get(s, id=e1.id).key == k1
    (n,) = neighbors_all(s, ref(SELLER, k1))
    assert n.entity.key == k2 and n.entity.type == DEVICE
    rep = upsert(s, [link(SELLER, k1, DEVICE, k2, seen=3)])
    assert rep.totals.links_updated == 1 and rep.totals.entities_created == 0
    big = "y" * 4096
    upsert(s, entities=[ent(EMAIL, big)])
    assert get(s, EMAIL, big).key == big
    d.restart()
    assert get(d.stub, SELLER, k2).id == e2.id


# -------------------------------------------------------------- bad UTF-8


def _bad_utf8_variants():
    return [b"\xff\xfe\xfd\xfc", b"ab\xc3\x28", b"\xed\xa0\x80x", b"\xc0\xafzz"]


@pytest.mark.parametrize("bad", _bad_utf8_variants(), ids=["ff", "trunc2", "surrogate", "overlong"])
def test_invalid_utf8_key_in_link(d, bad):
    msg = pb.UpsertRequest(links=[link(SELLER, "ok-seller", DEVICE, "QQQQ", seen=1)]).SerializeToString()
    expect_status(INVALID, raw_unary, d, "Upsert", patch_bytes(msg, b"QQQQ", bad),
                  fields=["links[0].b.key"])
    assert not exists(d.stub, SELLER, "ok-seller")


def test_invalid_utf8_other_fields(d):
    s = d.stub
    cases = [
        (pb.UpsertRequest(entities=[ent(SELLER, "QQQQ")]), "entities[0].key"),
        (pb.UpsertRequest(request_id="QQQQ", entities=[ent(SELLER, "s")]), "request_id"),
        (pb.UpsertRequest(entities=[ent(SELLER, "s", labels=["QQQQ"])]), "entities[0].labels[0]"),
        (pb.UpsertRequest(entities=[ent(SELLER, "s", attrs=[("QQQQ", "v")])]),
         "entities[0].attributes[0].name"),
        (pb.UpsertRequest(entities=[ent(SELLER, "s", attrs=[("n", "QQQQ")])]),
         "entities[0].attributes[0].value"),
    ]
    for msg, field in cases:
        raw = patch_bytes(msg.SerializeToString(), b"QQQQ", b"\xff\xfe\xfd\xfc")
        expect_status(INVALID, raw_unary, d, "Upsert", raw, fields=[field])
    raw = patch_bytes(pb.GetEntityRequest(ref=ref(SELLER, "QQQQ")).SerializeToString(),
                      b"QQQQ", b"a\xffbc")
    expect_status(INVALID, raw_unary, d, "GetEntity", raw, fields=["ref.key"])
    upsert(s, entities=[ent(SELLER, "lab")])
    raw = patch_bytes(pb.SetLabelsRequest(ref=ref(SELLER, "lab"), add=["QQQQ"]).SerializeToString(),
                      b"QQQQ", b"\xc3\x28zz")
    expect_status(INVALID, raw_unary, d, "SetLabels", raw, fields=["add[0]"])
    assert not exists(s, SELLER, "s")
    assert list(get(s, SELLER, "lab").labels) == []


# -------------------------------------------------------------- self links


@pytest.mark.parametrize("a,b", [("S1", "S1"), ("S1", " s1 "), ("acme  shop", "ACME SHOP")])
def test_self_link(d, a, b):
    expect_status(INVALID, upsert, d.stub, [link(SELLER, "fine", DEVICE, "fine", seen=1),
                                            link(SELLER, a, SELLER, b, seen=1)],
                  fields=["links[1]"])
    assert not exists(d.stub, SELLER, "fine")
    assert not exists(d.stub, SELLER, a)


def test_self_link_by_id(d):
    upsert(d.stub, entities=[ent(SELLER, "me")])
    me = get(d.stub, SELLER, "me")
    expect_status(INVALID, upsert, d.stub, [link_ids(me.id, me.id, seen=1)], fields=["links[0]"])
    # by id on one side, by key on the other
    expect_status(INVALID, upsert, d.stub,
                  [pb.LinkInput(a=pb.EntityRef(id=me.id), b=pb.EntityRef(type=SELLER, key=" ME "),
                                seen=1)], fields=["links[0]"])
    assert get(d.stub, SELLER, "me").degree == 0


def test_same_key_other_type_is_not_self_link(d):
    rep = upsert(d.stub, [link(SELLER, "same", EMAIL, "same", seen=1)])
    assert rep.totals.links_created == 1


# --------------------------------------------------------- other fields


def test_field_limits(d):
    s = d.stub
    cases = [
        (dict(request_id="r" * 129, entities=[ent(SELLER, "s")]), "request_id"),
        (dict(entities=[ent(SELLER, "s", attrs=[("", "v")])]), "entities[0].attributes[0].name"),
        (dict(entities=[ent(SELLER, "s", attrs=[("n" * 129, "v")])]), "entities[0].attributes[0].name"),
        (dict(entities=[ent(SELLER, "s", attrs=[("n", "v" * 4097)])]), "entities[0].attributes[0].value"),
        (dict(entities=[ent(SELLER, "s", labels=["ok", ""])]), "entities[0].labels[1]"),
        (dict(entities=[ent(SELLER, "s", labels=["l" * 129])]), "entities[0].labels[0]"),
        (dict(entities=[ent(SELLER, "s", labels=["a\x01b"])]), "entities[0].labels[0]"),
    ]
    for kw, field in cases:
        expect_status(INVALID, upsert, s, fields=[field], **kw)
    assert not exists(s, SELLER, "s")
    # the boundaries are accepted
    upsert(s, request_id="r" * 128, entities=[ent(SELLER, "s", attrs=[("n" * 128, "v" * 4096)],
                                                  labels=["l" * 128])])
    e = get(s, SELLER, "s")
    assert e.attributes[0].value == "v" * 4096 and list(e.labels) == ["l" * 128]


def test_failed_request_id_can_be_retried(d):
    s = d.stub
    expect_status(INVALID, upsert, s, [link(SELLER, "a", DEVICE, "b", seen=1),
                                       link(SELLER, "x", SELLER, "x", seen=1)], request_id="retry-me")
    rep = upsert(s, [link(SELLER, "a", DEVICE, "b", seen=1)], request_id="retry-me")
    assert rep.duplicate is False and rep.totals.links_created == 1


# ------------------------------------------------------------- size limits


def test_too_many_items(d):
    items = 100001
    ents = [ent(SELLER, "s%d" % i) for i in range(60000)]
    lnks = [link(SELLER, "s%d" % i, DEVICE, "d", seen=1) for i in range(items - 60000)]
    req = pb.UpsertRequest(entities=ents, links=lnks)
    assert req.ByteSize() < 4 << 20, "test request must fit in the 4 MiB message limit"
    before = stats(d.stub)
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, d.stub.Upsert, req, timeout=T(60),
                  fields=["100000"])
    st = stats(d.stub)
    assert st.entities_total == before.entities_total and st.links == before.links


@pytest.mark.daemon_args("--max-batch-items", "10")
def test_configured_batch_limit(daemon):
    s = daemon.stub
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, upsert, s,
                  [link(SELLER, "s%d" % i, DEVICE, "d", seen=1) for i in range(6)],
                  entities=[ent(EMAIL, "e%d" % i) for i in range(5)], fields=["10"])
    rep = upsert(s, [link(SELLER, "s%d" % i, DEVICE, "d", seen=1) for i in range(5)],
                 entities=[ent(EMAIL, "e%d" % i) for i in range(5)])
    assert rep.totals.links_created == 5
    # Ingest applies the same limit per message.
    big = pb.UpsertRequest(entities=[ent(EMAIL, "f%d" % i) for i in range(11)])
    details = expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, s.Ingest,
                            iter([pb.UpsertRequest(entities=[ent(EMAIL, "g")]), big]), timeout=T(),
                            fields=["message 1"])
    assert not exists(s, EMAIL, "f0")
    assert exists(s, EMAIL, "g"), "message 0 (before the bad one) was lost; status %r" % details
    assert_healthy(daemon)


def _oversize_request(nbytes):
    # Many entities with one big attribute each (the daemon caps attributes
    # per entity, so don't put them all on one).
    n = nbytes // 4020 + 1
    return pb.UpsertRequest(entities=[ent(SELLER, "big%05d" % i, attrs=[("a", "v" * 4000)])
                                      for i in range(n)])


def test_message_over_4mib(d):
    req = _oversize_request(4 << 20)
    assert req.ByteSize() > 4 << 20
    before = stats(d.stub).entities_total
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, d.stub.Upsert, req, timeout=T(30))
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, d.stub.Ingest, iter([req]), timeout=T(30))
    assert not exists(d.stub, SELLER, "big00000")
    assert stats(d.stub).entities_total == before
    # just under the limit is fine
    ok = _oversize_request((4 << 20) - 50000)
    assert (4 << 20) - 60000 < ok.ByteSize() < (4 << 20)
    rep = upsert(d.stub, entities=ok.entities, timeout=T(30))
    assert rep.totals.entities_created == len(ok.entities)
    assert get(d.stub, SELLER, "big00000").attributes[0].value == "v" * 4000


@pytest.mark.daemon_args("--max-message-bytes", "20000")
def test_configured_message_limit(daemon):
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, daemon.stub.Upsert,
                  _oversize_request(30000), timeout=T())
    upsert(daemon.stub, entities=_oversize_request(10000).entities)
    assert_healthy(daemon)


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize("path", ["/graphd.v1.SellerGraph/NoSuchMethod", "/no.such.Service/Get",
                                  "/grpc.health.v1.Health/Nope"])
def test_unknown_method(d, path):
    expect_status(grpc.StatusCode.UNIMPLEMENTED, raw_unary, d, path, b"", timeout=T(5))
    call = d.channel.stream_stream(path)
    expect_status(grpc.StatusCode.UNIMPLEMENTED, lambda: list(call(iter([b"", b"x"]), timeout=T(5))))


def test_call_without_deadline(d):
    upsert(d.stub, [link(SELLER, "nd", DEVICE, "nd-d", seen=1)])
    # Deliberately no timeout: the server clamps it and answers normally.
    r = d.stub.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, "nd")))
    assert r.entity.key == "nd"
    r = d.stub.Upsert(pb.UpsertRequest(links=[link(SELLER, "nd2", DEVICE, "nd-d", seen=1)]))
    assert r.totals.links_created == 1


def test_expired_deadline(d):
    # A new channel: the deadline passes while it connects (on a warm one a
    # local call can beat even a microsecond, and once in a while a new one
    # does too, before the client's deadline timer fires: so a few tries).
    # Whatever ends a call must be DEADLINE_EXCEEDED.
    from graphd.v1 import graphd_pb2_grpc
    codes = []
    for _ in range(5):
        with grpc.insecure_channel(d.addr) as ch:
            try:
                graphd_pb2_grpc.SellerGraphStub(ch).Stats(pb.StatsRequest(), timeout=0.000001)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
                break
    assert codes[-1] == grpc.StatusCode.DEADLINE_EXCEEDED, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}, codes


# -------------------------------------------------------------- atomicity


def _many_links(prefix, n=1000):
    return [link(SELLER, "%s-s%d" % (prefix, i), DEVICE, "%s-d%d" % (prefix, i % 37), seen=i + 1)
            for i in range(n)]


def test_atomic_batch_self_link_at_end(d):
    s = d.stub
    upsert(s, [link(SELLER, "pre", DEVICE, "pre-d", seen=1)])
    before = stats(s)
    expect_status(INVALID, upsert, s, _many_links("atom") + [link(SELLER, "z", SELLER, " Z", seen=1)],
                  fields=["links[1000]"])
    after = stats(s)
    assert type_counts(after) == type_counts(before) and after.links == before.links
    assert after.labels == before.labels
    for i in (0, 1, 500, 999):
        assert not exists(s, SELLER, "atom-s%d" % i)
    assert not exists(s, DEVICE, "atom-d0")


def test_atomic_batch_missing_id_at_end(d):
    s = d.stub
    upsert(s, entities=[ent(SELLER, "atom2-pre")])
    pre = get(s, SELLER, "atom2-pre")
    before = stats(s)
    expect_status(grpc.StatusCode.NOT_FOUND, upsert, s,
                  _many_links("atom2") + [link_ids(pre.id, 10 ** 12, seen=1)],
                  entities=[ent(SELLER, "atom2-pre", labels=["mustnotappear"])])
    after = stats(s)
    assert type_counts(after) == type_counts(before) and after.links == before.links
    assert after.labels == before.labels
    for i in (0, 999):
        assert not exists(s, SELLER, "atom2-s%d" % i)
    assert get(s, SELLER, "atom2-pre").degree == 0
    # The same batch without the bad link goes through whole.
    rep = upsert(s, _many_links("atom2"))
    assert rep.totals.links_created == 1000 and rep.totals.entities_created == 1037


# ---------------------------------------------------------- deadline clamp


def _slow_ingest(stub, stop, timeout=None):
    def gen():
        yield pb.UpsertRequest(links=[link(SELLER, "slow", DEVICE, "slow-d", seen=1)])
        for _ in range(100):  # up to 10 s of silence
            if stop.is_set():
                return
            time.sleep(0.1)
    t0 = time.monotonic()
    kw = {} if timeout is None else {"timeout": timeout}
    try:
        # Deliberately without a client deadline when timeout is None.
        stub.Ingest(gen(), **kw)
        code = grpc.StatusCode.OK
    except grpc.RpcError as e:
        code = e.code()
    finally:
        stop.set()
    return code, time.monotonic() - t0


@pytest.mark.daemon_args("--default-deadline-ms", "700")
def test_default_deadline_clamps_calls_without_deadline(daemon):
    code, took = _slow_ingest(daemon.stub, threading.Event())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, code
    assert 0.5 < took < T(5), "ended after %.2f s (default deadline 0.7 s)" % took
    exists(daemon.stub, SELLER, "slow")  # committed or not: either is fine, but no error
    assert_healthy(daemon)


@pytest.mark.daemon_args("--max-deadline-ms", "700")
def test_max_deadline_clamps_long_deadlines(daemon):
    code, took = _slow_ingest(daemon.stub, threading.Event(), timeout=T(30))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, code
    assert 0.5 < took < T(5), "ended after %.2f s (max deadline 0.7 s)" % took
    # A short client deadline is kept as it is.
    code, took = _slow_ingest(daemon.stub, threading.Event(), timeout=0.3)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and took < 0.65
    assert_healthy(daemon)


def test_many_idle_streams_do_not_block_others(daemon):
    """Hostile load: many open Ingest streams that send nothing; a control
    client still gets quick answers and Health stays SERVING."""
    stop = threading.Event()
    ths = [threading.Thread(target=_slow_ingest, args=(daemon.stub, stop, T(30))) for _ in range(50)]
    for th in ths:
        th.start()
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        for i in range(20):
            upsert(daemon.stub, [link(SELLER, "ctl%d" % i, DEVICE, "ctl-d", seen=1)], timeout=T(5))
            get(daemon.stub, SELLER, "ctl%d" % i, timeout=T(5))
        took = time.monotonic() - t0
        assert took < T(5), "20 write+read pairs took %.2f s beside 50 idle streams" % took
        assert_healthy(daemon)
    finally:
        stop.set()
        for th in ths:
            th.join(T(30))
    assert get(daemon.stub, DEVICE, "ctl-d").degree == 20
