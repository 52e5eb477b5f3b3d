"""BulkLoad: the first load of an empty graph, all or nothing, through the
real daemon; compared with the same messages through Ingest."""

import json
import random
import subprocess
import threading
import time

import grpc
import pytest

from bbutil import (ADDRESS, DEVICE, EMAIL, PAYMENT, PHONE, SELLER, T, ent, expect_status, get,
                    link, link_ids, neighbors_all, pb, stats, type_counts, upsert)

TYPES = [ADDRESS, PAYMENT, DEVICE, PHONE, EMAIL]


def messages(n_msgs=30, per_msg=80, seed=7, sellers=400, others=300):
    """A mixed load: sellers sharing entities (a hub device among them),
    pairs repeated within and across messages, entities with attributes and
    labels given twice, keys that normalise alike (case), request ids."""
    rnd = random.Random(seed)
    out = []
    for m in range(n_msgs):
        links = []
        for _ in range(per_msg):
            s = "s%d" % rnd.randrange(sellers)
            if rnd.random() < 0.02:
                # A shared device, under 64 sellers: corroboration samples
                # the 64 lowest-id sellers of an entity, and a bulk load
                # numbers ids otherwise than Ingest, so beyond 64 sellers
                # the two may weigh a hub slightly differently.
                t, k = DEVICE, "hub"
            else:
                t = rnd.choice(TYPES)
                k = "e%d" % rnd.randrange(others)
                if t == EMAIL:
                    k += "@Example.COM" if rnd.random() < 0.5 else "@example.com"
            links.append(link(SELLER, s.upper() if rnd.random() < 0.2 else s, t, k,
                              seen=1700000000 + rnd.randrange(10 ** 6)))
        ents = []
        for _ in range(3):
            s = "s%d" % rnd.randrange(sellers + sellers // 20)  # some only here
            ents.append(ent(SELLER, s, attrs=[("name", "n%d" % m), ("tier", s)],
                            labels=["flagged"] if rnd.random() < 0.5 else ["vip", "flagged"],
                            seen=1600000000 + m))
        out.append(pb.UpsertRequest(request_id="r-%d" % m, links=links, entities=ents))
    return out


def entity_view(stub, t, key):
    e = get(stub, t, key)
    return (e.type, e.key, e.degree, e.seller_count, e.first_seen, e.last_seen,
            sorted(e.labels), sorted((a.name, a.value) for a in e.attributes))


def links_by_key(stub, t, key):
    """The entity's links as (neighbour type, neighbour key, count, first, last)."""
    out = []
    for n in neighbors_all(stub, pb.EntityRef(type=t, key=key)):
        out.append((n.entity.type, n.entity.key, n.link.count, n.link.first_seen,
                    n.link.last_seen))
    return sorted(out)


def test_bulk_load_equals_ingest(daemon_factory):
    msgs = messages(n_msgs=16, per_msg=60, sellers=160, others=120)
    a = daemon_factory()
    b = daemon_factory()
    ra = a.stub.Ingest(iter(msgs), timeout=T(60))
    rb = b.stub.BulkLoad(iter(msgs), timeout=T(60))
    assert rb.messages == ra.messages == len(msgs)
    assert rb.duplicates == ra.duplicates == 0
    assert rb.totals == ra.totals
    sa, sb = stats(a.stub), stats(b.stub)
    assert type_counts(sb) == type_counts(sa)
    assert (sb.links, sb.labels, sb.entities_total) == (sa.links, sa.labels, sa.entities_total)
    keys = set()
    for m in msgs:
        for l in m.links:
            keys.add((l.a.type, l.a.key.lower()))
            keys.add((l.b.type, l.b.key.lower()))
        for e in m.entities:
            keys.add((e.type, e.key))
    for t, k in sorted(keys):
        assert entity_view(b.stub, t, k) == entity_view(a.stub, t, k), (t, k)
    for t, k in sorted(keys)[::7]:
        assert links_by_key(b.stub, t, k) == links_by_key(a.stub, t, k), (t, k)
    # The request ids were recorded: a retry of one is a duplicate.
    r = b.stub.Upsert(msgs[3], timeout=T())
    assert r.duplicate
    # And investigator reads agree (a 2-hop walk from a seller on the hub).
    la = a.stub.LinkedSellers(pb.LinkedSellersRequest(seller=pb.EntityRef(type=SELLER, key="s1"),
                                                      max_hops=2), timeout=T())
    lb = b.stub.LinkedSellers(pb.LinkedSellersRequest(seller=pb.EntityRef(type=SELLER, key="s1"),
                                                      max_hops=2), timeout=T())
    assert sorted((x.seller.key, round(x.score, 9)) for x in lb.sellers) == \
        sorted((x.seller.key, round(x.score, 9)) for x in la.sellers)


def test_bulk_load_durable_across_kill(daemon_factory):
    d = daemon_factory()
    msgs = messages(n_msgs=5, per_msg=40, seed=3)
    r = d.stub.BulkLoad(iter(msgs), timeout=T(60))
    before = stats(d.stub)
    assert before.links == r.totals.links_created > 0
    d.kill9()  # the reply meant durable
    d.start()
    after = stats(d.stub)
    assert (after.links, after.entities_total) == (before.links, before.entities_total)


def test_bulk_load_refuses_a_graph_that_is_not_empty(daemon):
    s = daemon.stub
    upsert(s, links=[link(SELLER, "x", DEVICE, "y", seen=5)])
    details = expect_status(grpc.StatusCode.FAILED_PRECONDITION, s.BulkLoad,
                            iter(messages(n_msgs=2)), timeout=T(),
                            fields=["empty graph", "Ingest"])
    assert "2 entities" in details, details
    st = stats(s)
    assert (st.entities_total, st.links) == (2, 1)


def test_bulk_load_bad_message_writes_nothing(daemon):
    s = daemon.stub
    good = messages(n_msgs=4, per_msg=20)
    cases = [
        (pb.UpsertRequest(links=[link_ids(1, 2)]), grpc.StatusCode.INVALID_ARGUMENT,
         ["message 2", "links[0].a", "by (type, key), not by id"]),
        (pb.UpsertRequest(links=[link(SELLER, "q", SELLER, "Q", seen=1)]),
         grpc.StatusCode.INVALID_ARGUMENT, ["message 2", "links[0]", "same entity"]),
        (pb.UpsertRequest(links=[link(SELLER, "q", DEVICE, "", seen=1)]),
         grpc.StatusCode.INVALID_ARGUMENT, ["message 2", "links[0].b.key"]),
    ]
    for bad, code, fields in cases:
        msgs = good[:2] + [bad] + good[2:]
        details = expect_status(code, s.BulkLoad, iter(msgs), timeout=T(), fields=fields)
        assert "nothing was written" in details, details
        st = stats(s)
        assert (st.entities_total, st.links, st.labels) == (0, 0, 0), details
    # Wire bytes that are no UpsertRequest (decoded with BulkLoad's own allocator).
    raw = daemon.channel.stream_unary("/graphd.v1.SellerGraph/BulkLoad")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT,
                  lambda: raw(iter([good[0].SerializeToString(), b"\xff\xff\xff"]), timeout=T()),
                  fields=["message 1", "not a valid graphd.v1.UpsertRequest"])
    assert stats(s).entities_total == 0
    # Over a message: 65 attributes given in two messages to one entity.
    a1 = pb.UpsertRequest(entities=[ent(SELLER, "many", attrs=[("a%d" % i, "v") for i in range(40)])])
    a2 = pb.UpsertRequest(entities=[ent(SELLER, "many", attrs=[("b%d" % i, "v") for i in range(25)])])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.BulkLoad, iter([a1, a2]), timeout=T(),
                  fields=["seller 'many'", "65 attributes"])
    assert stats(s).entities_total == 0
    # A client that goes away mid-stream: nothing is written.
    def slow():
        yield good[0]
        time.sleep(T(0.5))
        yield good[1]
    fut = s.BulkLoad.future(slow(), timeout=T(30))
    time.sleep(0.2)
    fut.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        fut.result()
    time.sleep(T(0.3))  # a wrong write would take milliseconds
    assert stats(s).entities_total == 0
    # After all that, a good load goes in.
    r = s.BulkLoad(iter(good), timeout=T(60))
    assert r.messages == 4 and stats(s).links == r.totals.links_created > 0


@pytest.mark.daemon_args("--bulk-load-max-bytes", "300000")
def test_bulk_load_memory_limit(daemon):
    s = daemon.stub
    details = expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, s.BulkLoad,
                            iter(messages(n_msgs=40, per_msg=200)), timeout=T(60),
                            fields=["--bulk-load-max-bytes", "300000 bytes"])
    assert "nothing was written" in details
    assert stats(s).entities_total == 0
    # A load within the limit.
    r = s.BulkLoad(iter(messages(n_msgs=2, per_msg=20)), timeout=T(60))
    assert r.messages == 2


def test_bulk_load_one_at_a_time(daemon):
    s = daemon.stub
    gate = threading.Event()

    def held():
        yield messages(n_msgs=1)[0]
        gate.wait(T(20))
    fut = s.BulkLoad.future(held(), timeout=T(60))
    time.sleep(T(0.5))  # its first message is in: the load has begun
    try:
        expect_status(grpc.StatusCode.FAILED_PRECONDITION, s.BulkLoad,
                      iter(messages(n_msgs=1)), timeout=T(), fields=["another BulkLoad"])
    finally:
        gate.set()
    assert fut.result().messages == 1
    # Once it is done, the graph is no longer empty.
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, s.BulkLoad, iter(messages(n_msgs=1)),
                  timeout=T(), fields=["empty graph"])


def test_graphctl_ingest_bulk(graphctl_bin, daemon_factory, tmp_path):
    d = daemon_factory()
    p = tmp_path / "links.csv"
    p.write_text("a_type,a_key,b_type,b_key,seen\n"
                 "seller,s1,device,d1,100\nseller,s2,device,D1,200\n"
                 "seller,s1,email,a@x.example,300\nseller,s1,device,d1,50\n")
    e = tmp_path / "entities.csv"
    e.write_text("type,key,labels\nseller,s1,counterfeit;watch\n")

    def run(addr, *files, json_out=True):
        cmd = [graphctl_bin, "--addr", addr] + (["--json"] if json_out else []) + \
            ["ingest", "--bulk"] + [str(f) for f in files]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=T(60))
    r = run(d.addr, p, e)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["links_created"] == 3 and out["links_updated"] == 1
    assert list(get(d.stub, SELLER, "s1").labels) == ["counterfeit", "watch"]
    assert get(d.stub, DEVICE, "d1").degree == 2
    # Again: refused, nothing loaded, exit 1 with the server's reason.
    r = run(d.addr, p, json_out=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "FAILED_PRECONDITION" in r.stderr and "nothing was loaded" in r.stderr
    assert stats(d.stub).links == 3
    # A bad record in the second file: exit 65, and what was sent before it
    # is not loaded either.
    bad = tmp_path / "bad.csv"
    bad.write_text("a_type,a_key,b_type,b_key\nseller,z1,device,z2\nseller,z3,planet,z4\n")
    d2 = daemon_factory()
    r = run(d2.addr, p, bad, json_out=False)
    assert r.returncode == 65, (r.stdout, r.stderr)
    assert "planet" in r.stderr and "nothing was loaded" in r.stderr
    time.sleep(T(0.5))
    assert stats(d2.stub).entities_total == 0


def test_bulk_load_empty_stream(daemon):
    r = daemon.stub.BulkLoad(iter(()), timeout=T())
    assert r.messages == 0 and r.duplicates == 0 and r.totals == pb.WriteTotals()
    # Still empty: a real load may follow.
    r = daemon.stub.BulkLoad(iter(messages(n_msgs=1, per_msg=5)), timeout=T())
    assert r.messages == 1 and stats(daemon.stub).links == r.totals.links_created
