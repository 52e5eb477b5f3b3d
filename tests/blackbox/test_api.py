"""The implemented rpcs against the contract in proto/graphd/v1/graphd.proto."""

import threading
import time

import grpc
import pytest

from bbutil import (ADDRESS, ALL_TYPES, DEVICE, EMAIL, IP, PAYMENT, PHONE, SELLER, T,
                    ent, exists, expect_status, get, health_status, link, link_ids,
                    neighbors_all, pb, ref, stats, type_counts, upsert)
from grpc.health.v1 import health_pb2

IMPLEMENTED = ["Upsert", "Ingest", "GetEntity", "Neighbors", "SetLabels", "DeleteEntity", "Stats",
               "LinkedSellers", "FindPaths", "RankSuspects", "StartClustering", "GetJob",
               "WatchJob", "CancelJob", "ListSnapshots", "GetSnapshot", "DeleteSnapshot",
               "ListClusters", "GetCluster", "StreamAssignments", "DiffSnapshots", "ListAudit",
               "VerifyAudit", "Backup", "GetEntities", "WhoAmI", "WatchAlerts", "BulkLoad",
               "ExportTies", "ImportSnapshot", "CreateCase", "GetCase", "ListCases", "UpdateCase",
               "ExportCase"]
UNIMPLEMENTED = []

# ---------------------------------------------------------------- health


def test_health_serving(daemon):
    assert health_status(daemon, "") == health_pb2.HealthCheckResponse.SERVING
    assert health_status(daemon, "graphd.v1.SellerGraph") == health_pb2.HealthCheckResponse.SERVING


def test_health_unknown_service_not_found(daemon):
    expect_status(grpc.StatusCode.NOT_FOUND, daemon.health.Check,
                  health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=T())


def test_health_watch_unimplemented(daemon):
    # Must answer UNIMPLEMENTED promptly, not hang until the deadline.
    t0 = time.monotonic()
    expect_status(grpc.StatusCode.UNIMPLEMENTED, daemon.health.Watch,
                  health_pb2.HealthCheckRequest(service=""), timeout=T(5))
    assert time.monotonic() - t0 < T(4)


# ---------------------------------------------------------- method table


def test_service_descriptor_matches_contract():
    svc = pb.DESCRIPTOR.services_by_name["SellerGraph"]
    assert sorted(m.name for m in svc.methods) == sorted(IMPLEMENTED + UNIMPLEMENTED)


@pytest.mark.parametrize("method", UNIMPLEMENTED)
def test_unimplemented_rpcs(daemon, method):
    m = pb.DESCRIPTOR.services_by_name["SellerGraph"].methods_by_name[method]
    req = getattr(pb, m.input_type.name)()
    t0 = time.monotonic()
    expect_status(grpc.StatusCode.UNIMPLEMENTED, getattr(daemon.stub, method), req, timeout=T(5))
    assert time.monotonic() - t0 < T(4), "UNIMPLEMENTED took too long (hang until deadline?)"
    # The daemon keeps serving.
    assert stats(daemon.stub).schema_version >= 1


# ---------------------------------------------------------------- upsert


def test_upsert_link_creates_endpoints_and_get(daemon):
    s = daemon.stub
    rep = upsert(s, [link(SELLER, "Acme Shop", DEVICE, "dev-1", seen=1000)])
    assert rep.duplicate is False
    assert rep.totals.entities_created == 2
    assert rep.totals.entities_updated == 0
    assert rep.totals.links_created == 1
    assert rep.totals.links_updated == 0
    assert rep.committed_at > 1500000000

    e = get(s, SELLER, "  Acme   Shop ")
    assert e.key == "acme shop"
    assert e.type == SELLER
    assert e.degree == 1
    assert e.seller_count == 0
    assert e.first_seen == 1000 and e.last_seen == 1000
    d = get(s, DEVICE, "DEV-1")
    assert d.key == "dev-1"
    assert d.degree == 1
    assert d.seller_count == 1
    # Ids start at 1 on a fresh store.
    assert sorted([e.id, d.id]) == [1, 2]


def test_get_by_id_ignores_type_and_key(daemon):
    s = daemon.stub
    upsert(s, [link(SELLER, "s1", EMAIL, "a@b.c", seen=10)])
    e = get(s, SELLER, "s1")
    by_id = get(s, id=e.id)
    assert by_id == e
    # id != 0: type and key are ignored
    by_id2 = get(s, EMAIL, "something else", id=e.id)
    assert by_id2.key == "s1" and by_id2.id == e.id
    expect_status(grpc.StatusCode.NOT_FOUND, get, s, id=999999)
    expect_status(grpc.StatusCode.NOT_FOUND, get, s, SELLER, "nobody")


@pytest.mark.parametrize("etype,given,want", [
    (SELLER, "  Acme \t  Shop  ", "acme shop"),
    (SELLER, "MiXeD", "mixed"),
    (ADDRESS, " 12  Main   ST,  Springfield ", "12 main st, springfield"),
    (PAYMENT, "DE89 3704  0044", "de89 3704 0044"),
    (DEVICE, "\tABC-123\n", "abc-123"),
    (PHONE, "+44 (20) 7946-0000", "+442079460000"),
    (PHONE, " (555) 010.9999 ", "5550109999"),
    (EMAIL, " Bob.Smith@Example.COM ", "bob.smith@example.com"),
    (IP, " 2001:DB8::1 ", "2001:db8::1"),
    # only ASCII letters are folded
    (SELLER, " \u00c4PFEL   Stra\u00dfe GMBH", "\u00c4pfel stra\u00dfe gmbh"),
])
def test_key_normalisation(daemon, etype, given, want):
    s = daemon.stub
    rep = upsert(s, entities=[ent(etype, given)])
    assert rep.totals.entities_created == 1
    e = get(s, etype, want)
    assert e.key == want
    assert get(s, etype, given).id == e.id
    # Upserting the normalised form again updates, never creates.
    rep = upsert(s, entities=[ent(etype, want)])
    assert rep.totals.entities_created == 0 and rep.totals.entities_updated == 1
    assert type_counts(stats(s))[etype] == 1


def test_same_key_different_types_are_distinct(daemon):
    s = daemon.stub
    rep = upsert(s, [link(SELLER, "x1", DEVICE, "x1", seen=1)])
    assert rep.totals.entities_created == 2 and rep.totals.links_created == 1
    assert get(s, SELLER, "x1").id != get(s, DEVICE, "x1").id


def test_entity_attributes_and_labels_merge(daemon):
    s = daemon.stub
    rep = upsert(s, entities=[ent(SELLER, "S-9", attrs=[("name", "Xavier"), ("country", "DE")],
                                  labels=["zeta", "alpha"], seen=500)])
    assert rep.totals.entities_created == 1
    e = get(s, SELLER, "s-9")
    assert [(a.name, a.value) for a in e.attributes] == [("country", "DE"), ("name", "Xavier")]
    assert list(e.labels) == ["alpha", "zeta"]
    assert e.first_seen == 500 and e.last_seen == 500
    assert e.degree == 0

    rep = upsert(s, entities=[ent(SELLER, "s-9", attrs=[("name", "Yves"), ("city", "Berlin")],
                                  labels=["beta", "alpha"], seen=700)])
    assert rep.totals.entities_created == 0 and rep.totals.entities_updated == 1
    e = get(s, SELLER, "s-9")
    assert [(a.name, a.value) for a in e.attributes] == [
        ("city", "Berlin"), ("country", "DE"), ("name", "Yves")]
    assert list(e.labels) == ["alpha", "beta", "zeta"]
    assert e.first_seen == 500 and e.last_seen == 700
    assert stats(s).labels == 3


def test_entity_seen_and_link_seen_combine(daemon):
    s = daemon.stub
    upsert(s, entities=[ent(SELLER, "s", seen=500)])
    upsert(s, [link(SELLER, "s", IP, "10.0.0.1", seen=100)])
    upsert(s, [link(SELLER, "s", IP, "10.0.0.2", seen=300)])
    e = get(s, SELLER, "s")
    assert (e.first_seen, e.last_seen) == (100, 500)
    ip = get(s, IP, "10.0.0.2")
    assert (ip.first_seen, ip.last_seen) == (300, 300)


def test_labels_alone_are_no_observation(daemon):
    """A seller whose links are all from 2025 keeps last_seen in 2025 when it
    is labelled later (through Upsert without `seen`, or SetLabels); an
    entity upsert with a time is an observation; an entity created by a
    label alone has never been observed (0) until its first link, labelled
    before or after it."""
    s = daemon.stub
    t2025 = 1740000000
    upsert(s, [link(SELLER, "old-s", DEVICE, "old-d", seen=t2025)])
    upsert(s, entities=[ent(SELLER, "old-s", labels=["counterfeit"], attrs=[("note", "x")])])
    s.SetLabels(pb.SetLabelsRequest(ref=ref(SELLER, "old-s"), add=["complaint:acme"]),
                timeout=T())
    e = get(s, SELLER, "old-s")
    assert list(e.labels) == ["complaint:acme", "counterfeit"]
    assert (e.first_seen, e.last_seen) == (t2025, t2025)
    upsert(s, entities=[ent(SELLER, "old-s", seen=t2025 + 50)])
    assert get(s, SELLER, "old-s").last_seen == t2025 + 50
    upsert(s, entities=[ent(SELLER, "label-only", labels=["counterfeit"])])
    e = get(s, SELLER, "label-only")
    assert (e.first_seen, e.last_seen) == (0, 0)
    upsert(s, [link(SELLER, "label-only", DEVICE, "lo-d", seen=t2025)])
    assert (get(s, SELLER, "label-only").first_seen, get(s, SELLER, "label-only").last_seen) == \
        (t2025, t2025)


def test_seen_zero_is_commit_time(daemon):
    s = daemon.stub
    before = int(time.time())
    rep = upsert(s, [link(SELLER, "now-s", DEVICE, "now-d")])
    after = int(time.time())
    assert before - 1 <= rep.committed_at <= after + 1
    (n,) = neighbors_all(s, ref(SELLER, "now-s"))
    assert before - 1 <= n.link.first_seen <= after + 1
    assert n.link.first_seen == n.link.last_seen
    assert abs(n.link.first_seen - rep.committed_at) <= 1


def test_links_by_id(daemon):
    s = daemon.stub
    upsert(s, entities=[ent(SELLER, "a"), ent(PHONE, "+15550001")])
    a, p = get(s, SELLER, "a"), get(s, PHONE, "+15550001")
    rep = upsert(s, [link_ids(a.id, p.id, seen=42)])
    assert rep.totals.links_created == 1 and rep.totals.entities_created == 0
    (n,) = neighbors_all(s, ref(SELLER, "a"))
    assert n.entity.id == p.id and n.link.first_seen == 42 and n.link.count == 1
    # Mixed: one endpoint by id, one by (type, key) created on demand.
    rep = upsert(s, [pb.LinkInput(a=pb.EntityRef(id=a.id), b=pb.EntityRef(type=EMAIL, key="a@x.y"),
                                  seen=43)])
    assert rep.totals.entities_created == 1 and rep.totals.links_created == 1
    assert get(s, SELLER, "a").degree == 2
    # id != 0: type and key are ignored, even when they would be invalid.
    rep = upsert(s, [pb.LinkInput(a=pb.EntityRef(id=a.id, type=99, key=""),
                                  b=pb.EntityRef(type=IP, key="9.9.9.9"), seen=44)])
    assert rep.totals.links_created == 1
    assert get(s, 99, "", id=a.id).key == "a"


def test_link_by_missing_id_not_found_writes_nothing(daemon):
    s = daemon.stub
    upsert(s, entities=[ent(SELLER, "a")])
    a = get(s, SELLER, "a")
    before = stats(s)
    expect_status(grpc.StatusCode.NOT_FOUND, upsert, s,
                  [link(SELLER, "new-1", DEVICE, "new-d1", seen=1),
                   link_ids(a.id, 987654, seen=2)],
                  entities=[ent(EMAIL, "new@e.mail")])
    after = stats(s)
    assert type_counts(after) == type_counts(before)
    assert after.links == before.links
    assert not exists(s, SELLER, "new-1")
    assert not exists(s, DEVICE, "new-d1")
    assert not exists(s, EMAIL, "new@e.mail")


def test_request_id_retry_is_duplicate(daemon):
    s = daemon.stub
    req = dict(links=[link(SELLER, "r-s", DEVICE, "r-d", seen=10)],
               entities=[ent(SELLER, "r-s2", labels=["x"])], request_id="req-0001")
    first = upsert(s, **req)
    assert first.duplicate is False
    assert first.totals.entities_created == 3 and first.totals.links_created == 1
    st1 = stats(s)
    second = upsert(s, **req)
    assert second.duplicate is True
    assert second.totals == pb.WriteTotals()
    assert second.committed_at == first.committed_at
    st2 = stats(s)
    assert type_counts(st2) == type_counts(st1) and st2.links == st1.links
    (n,) = neighbors_all(s, ref(SELLER, "r-s"))
    assert n.link.count == 1
    # Same request_id with different content: still a duplicate, nothing written.
    third = upsert(s, [link(SELLER, "r-other", DEVICE, "r-d", seen=11)], request_id="req-0001")
    assert third.duplicate is True and third.totals == pb.WriteTotals()
    assert not exists(s, SELLER, "r-other")
    # A different request_id is applied.
    fourth = upsert(s, **dict(req, request_id="req-0002"))
    assert fourth.duplicate is False
    assert fourth.totals.links_updated == 1 and fourth.totals.links_created == 0


def test_repeated_observation_updates_link(daemon):
    s = daemon.stub
    r1 = upsert(s, [link(SELLER, "s", DEVICE, "d", seen=100)])
    assert r1.totals.links_created == 1
    r2 = upsert(s, [link(DEVICE, "d", SELLER, "s", seen=50)])  # reversed endpoints
    assert r2.totals.links_created == 0 and r2.totals.links_updated == 1
    assert r2.totals.entities_created == 0
    r3 = upsert(s, [link(SELLER, "S", DEVICE, " D ", seen=200)])  # normalised keys
    assert r3.totals.links_created == 0 and r3.totals.links_updated == 1
    assert stats(s).links == 1
    (n,) = neighbors_all(s, ref(SELLER, "s"))
    assert (n.link.first_seen, n.link.last_seen, n.link.count) == (50, 200, 3)
    (m,) = neighbors_all(s, ref(DEVICE, "d"))
    assert (m.link.first_seen, m.link.last_seen, m.link.count) == (50, 200, 3)
    e = get(s, SELLER, "s")
    assert e.degree == 1 and (e.first_seen, e.last_seen) == (50, 200)


def test_same_link_twice_in_one_batch(daemon):
    s = daemon.stub
    rep = upsert(s, [link(SELLER, "s", DEVICE, "d", seen=10), link(SELLER, "s", DEVICE, "d", seen=20)])
    # Whether the second observation counts in links_updated is not
    # specified for a single batch; the stored link must reflect both.
    assert rep.totals.links_created == 1
    assert rep.totals.entities_created == 2
    assert stats(s).links == 1
    (n,) = neighbors_all(s, ref(SELLER, "s"))
    assert (n.link.first_seen, n.link.last_seen, n.link.count) == (10, 20, 2)


def test_degree_and_seller_count(daemon):
    s = daemon.stub
    upsert(s, [link(SELLER, "s1", DEVICE, "d", seen=1), link(SELLER, "s2", DEVICE, "d", seen=2),
               link(SELLER, "s3", DEVICE, "d", seen=3), link(SELLER, "s1", SELLER, "s2", seen=4),
               link(SELLER, "s1", EMAIL, "e@x", seen=5)])
    upsert(s, [link(SELLER, "s1", DEVICE, "d", seen=6)])  # repeat: no new degree
    d = get(s, DEVICE, "d")
    assert (d.degree, d.seller_count) == (3, 3)
    s1 = get(s, SELLER, "s1")
    assert (s1.degree, s1.seller_count) == (3, 1)
    s3 = get(s, SELLER, "s3")
    assert (s3.degree, s3.seller_count) == (1, 0)
    e = get(s, EMAIL, "e@x")
    assert (e.degree, e.seller_count) == (1, 1)
    assert stats(s).links == 5


# ------------------------------------------------------------- neighbours


def _mk_star(s):
    # Neighbours of seller "hub" of several types, created in an order that
    # differs from (type, id) order.
    upsert(s, [link(SELLER, "hub", IP, "1.1.1.1", seen=10),
               link(SELLER, "hub", DEVICE, "dev-b", seen=11),
               link(SELLER, "hub", SELLER, "peer-1", seen=12),
               link(SELLER, "hub", EMAIL, "m@x", seen=13)])
    upsert(s, [link(SELLER, "hub", DEVICE, "dev-a", seen=14),
               link(SELLER, "hub", ADDRESS, "1 road", seen=15),
               link(SELLER, "hub", SELLER, "peer-0", seen=16),
               link(SELLER, "hub", IP, "2.2.2.2", seen=17)])


def test_neighbors_order_by_type_then_id(daemon):
    s = daemon.stub
    _mk_star(s)
    ns = neighbors_all(s, ref(SELLER, "hub"))
    assert len(ns) == 8
    keys = [(n.entity.type, n.entity.id) for n in ns]
    assert keys == sorted(keys)
    assert [n.entity.key for n in ns] == ["peer-1", "peer-0", "1 road", "dev-b", "dev-a", "m@x",
                                          "1.1.1.1", "2.2.2.2"]
    for n in ns:
        assert n.link.count == 1 and n.link.first_seen == n.link.last_seen
        assert n.entity.degree >= 1


def test_neighbors_entity_fields(daemon):
    s = daemon.stub
    upsert(s, [link(SELLER, "a", DEVICE, "d", seen=5), link(SELLER, "b", DEVICE, "d", seen=9)],
           entities=[ent(DEVICE, "d", attrs=[("model", "x")], labels=["farm"])])
    (n,) = neighbors_all(s, ref(SELLER, "a"))
    assert n.entity.key == "d" and n.entity.type == DEVICE
    assert list(n.entity.labels) == ["farm"]
    assert n.entity.degree == 2 and n.entity.seller_count == 2
    assert len(n.entity.attributes) == 0, "Neighbor.entity must omit attributes"
    assert (n.link.first_seen, n.link.last_seen, n.link.count) == (5, 5, 1)
    assert n.entity.id == get(s, DEVICE, "d").id


def test_neighbors_type_filter(daemon):
    s = daemon.stub
    _mk_star(s)
    ns = neighbors_all(s, ref(SELLER, "hub"), types=[IP, DEVICE])
    assert [n.entity.key for n in ns] == ["dev-b", "dev-a", "1.1.1.1", "2.2.2.2"]
    ns = neighbors_all(s, ref(SELLER, "hub"), types=[PAYMENT])
    assert ns == []


def test_neighbors_time_window(daemon):
    s = daemon.stub
    upsert(s, [link(SELLER, "w", DEVICE, "L1", seen=100), link(SELLER, "w", DEVICE, "L1", seen=200),
               link(SELLER, "w", DEVICE, "L2", seen=300),
               link(SELLER, "w", DEVICE, "L3", seen=50), link(SELLER, "w", DEVICE, "L3", seen=400),
               link(SELLER, "w", DEVICE, "L4", seen=500), link(SELLER, "w", DEVICE, "L4", seen=600)])

    def keys(win):
        return sorted(n.entity.key for n in neighbors_all(s, ref(SELLER, "w"), window=win))

    assert keys((0, 0)) == ["l1", "l2", "l3", "l4"]
    assert keys((250, 350)) == ["l2", "l3"]
    assert keys((0, 99)) == ["l3"]
    assert keys((601, 0)) == []
    assert keys((600, 0)) == ["l4"]          # inclusive
    assert keys((200, 200)) == ["l1", "l3"]  # inclusive on both ends
    assert keys((401, 499)) == []
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, neighbors_all, s, ref(SELLER, "w"),
                  window=(300, 200), fields=["window"])


def test_neighbors_paging(daemon):
    s = daemon.stub
    n_total = 250
    upsert(s, [link(SELLER, "big", DEVICE, "d%03d" % i, seen=i + 1) for i in range(n_total)])
    # limit 0 = 100
    r = s.Neighbors(pb.NeighborsRequest(ref=ref(SELLER, "big")), timeout=T())
    assert len(r.neighbors) == 100 and r.next_page_token != ""
    full = neighbors_all(s, ref(SELLER, "big"))
    assert len(full) == n_total
    ids = [n.entity.id for n in full]
    assert ids == sorted(ids) and len(set(ids)) == n_total
    for lim in (1, 7, 249, 250, 251, 10000):
        got = neighbors_all(s, ref(SELLER, "big"), limit=lim)
        assert [n.entity.id for n in got] == ids, "paging with limit %d" % lim
    # Page sizes honour the limit, and the last page has an empty token.
    r = s.Neighbors(pb.NeighborsRequest(ref=ref(SELLER, "big"), limit=250), timeout=T())
    assert len(r.neighbors) == 250
    r1 = s.Neighbors(pb.NeighborsRequest(ref=ref(SELLER, "big"), limit=240), timeout=T())
    r2 = s.Neighbors(pb.NeighborsRequest(ref=ref(SELLER, "big"), limit=240,
                                         page_token=r1.next_page_token), timeout=T())
    assert len(r2.neighbors) == 10 and r2.next_page_token == ""
    # Paging combined with a type filter.
    upsert(s, [link(SELLER, "big", EMAIL, "e%d@x" % i, seen=1) for i in range(5)])
    got = neighbors_all(s, ref(SELLER, "big"), types=[EMAIL], limit=2)
    assert sorted(n.entity.key for n in got) == ["e%d@x" % i for i in range(5)]


def test_neighbors_limit_over_cap(daemon):
    s = daemon.stub
    upsert(s, [link(SELLER, "a", DEVICE, "d", seen=1)])
    s.Neighbors(pb.NeighborsRequest(ref=ref(SELLER, "a"), limit=10000), timeout=T())
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Neighbors,
                  pb.NeighborsRequest(ref=ref(SELLER, "a"), limit=10001), timeout=T(),
                  fields=["limit"])


@pytest.mark.daemon_args("--result-cap", "50")
def test_neighbors_configured_result_cap(daemon):
    s = daemon.stub
    upsert(s, [link(SELLER, "a", DEVICE, "d%d" % i, seen=1) for i in range(120)])
    r = s.Neighbors(pb.NeighborsRequest(ref=ref(SELLER, "a"), limit=50), timeout=T())
    assert len(r.neighbors) == 50
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Neighbors,
                  pb.NeighborsRequest(ref=ref(SELLER, "a"), limit=51), timeout=T(),
                  fields=["limit"])
    assert len(neighbors_all(s, ref(SELLER, "a"), limit=50)) == 120


@pytest.mark.parametrize("token", ["garbage", "AAAA", "\u00e9t\u00e9", "0" * 300])
def test_neighbors_bad_page_token(daemon, token):
    s = daemon.stub
    upsert(s, [link(SELLER, "a", DEVICE, "d%d" % i, seen=1) for i in range(3)])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Neighbors,
                  pb.NeighborsRequest(ref=ref(SELLER, "a"), limit=1, page_token=token), timeout=T(),
                  fields=["page_token"])


def test_neighbors_not_found_and_bad_ref(daemon):
    s = daemon.stub
    expect_status(grpc.StatusCode.NOT_FOUND, s.Neighbors,
                  pb.NeighborsRequest(ref=ref(SELLER, "ghost")), timeout=T())
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Neighbors,
                  pb.NeighborsRequest(ref=ref(SELLER, "")), timeout=T(), fields=["ref"])
    upsert(s, [link(SELLER, "a", DEVICE, "d", seen=1)])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Neighbors,
                  pb.NeighborsRequest(ref=ref(SELLER, "a"), types=[DEVICE, 99]), timeout=T(),
                  fields=["types[1]"])


# ------------------------------------------------------------------ labels


def test_set_labels(daemon):
    s = daemon.stub
    upsert(s, entities=[ent(SELLER, "lab", labels=["m"])])
    r = s.SetLabels(pb.SetLabelsRequest(ref=ref(SELLER, " LAB "), add=["c", "a", "b", "a"],
                                        remove=["zz"]), timeout=T())
    assert list(r.labels) == ["a", "b", "c", "m"]
    r = s.SetLabels(pb.SetLabelsRequest(ref=ref(SELLER, "lab"), remove=["b", "m"]), timeout=T())
    assert list(r.labels) == ["a", "c"]
    e = get(s, SELLER, "lab")
    assert list(e.labels) == ["a", "c"]
    assert stats(s).labels == 2
    r = s.SetLabels(pb.SetLabelsRequest(ref=pb.EntityRef(id=e.id), add=["counterfeit"]), timeout=T())
    assert list(r.labels) == ["a", "c", "counterfeit"]
    # Labels are visible through Neighbors too.
    upsert(s, [link(SELLER, "lab", DEVICE, "dd", seen=1)])
    (n,) = neighbors_all(s, ref(DEVICE, "dd"))
    assert list(n.entity.labels) == ["a", "c", "counterfeit"]


def test_set_labels_errors(daemon):
    s = daemon.stub
    expect_status(grpc.StatusCode.NOT_FOUND, s.SetLabels,
                  pb.SetLabelsRequest(ref=ref(SELLER, "ghost"), add=["x"]), timeout=T())
    upsert(s, entities=[ent(SELLER, "l")])
    for bad, field in [("", "add[0]"), ("x" * 129, "add[0]"), ("bad\nlabel", "add[0]"),
                       ("tab\there", "add[0]")]:
        expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.SetLabels,
                      pb.SetLabelsRequest(ref=ref(SELLER, "l"), add=[bad]), timeout=T(),
                      fields=[field])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.SetLabels,
                  pb.SetLabelsRequest(ref=ref(SELLER, "l"), add=["ok"], remove=["", "x"]),
                  timeout=T(), fields=["remove[0]"])
    # 128 bytes is fine; nothing from the failed calls was written.
    r = s.SetLabels(pb.SetLabelsRequest(ref=ref(SELLER, "l"), add=["y" * 128]), timeout=T())
    assert list(r.labels) == ["y" * 128]


# ------------------------------------------------------------------ delete


def test_delete_entity(daemon):
    s = daemon.stub
    upsert(s, [link(SELLER, "s1", DEVICE, "d", seen=1), link(SELLER, "s2", DEVICE, "d", seen=2),
               link(SELLER, "s1", SELLER, "s2", seen=3)],
           entities=[ent(DEVICE, "d", labels=["farm", "x"])])
    assert stats(s).labels == 2
    r = s.DeleteEntity(pb.DeleteEntityRequest(ref=ref(DEVICE, "D")), timeout=T())
    assert r.links_removed == 2
    expect_status(grpc.StatusCode.NOT_FOUND, get, s, DEVICE, "d")
    s1 = get(s, SELLER, "s1")
    assert (s1.degree, s1.seller_count) == (1, 1)
    assert [n.entity.key for n in neighbors_all(s, ref(SELLER, "s1"))] == ["s2"]
    st = stats(s)
    assert st.links == 1 and st.entities_total == 2 and type_counts(st)[DEVICE] == 0
    assert st.labels == 0
    # delete a seller: the other seller's seller_count drops
    r = s.DeleteEntity(pb.DeleteEntityRequest(ref=pb.EntityRef(id=s1.id)), timeout=T())
    assert r.links_removed == 1
    s2 = get(s, SELLER, "s2")
    assert (s2.degree, s2.seller_count) == (0, 0)
    assert neighbors_all(s, ref(SELLER, "s2")) == []
    expect_status(grpc.StatusCode.NOT_FOUND, s.DeleteEntity,
                  pb.DeleteEntityRequest(ref=ref(DEVICE, "d")), timeout=T())
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.DeleteEntity,
                  pb.DeleteEntityRequest(ref=ref(DEVICE, "  ")), timeout=T(), fields=["ref"])
    assert stats(s).links == 0
    # Re-creating a deleted key gives a fresh entity with no links.
    upsert(s, entities=[ent(DEVICE, "d")])
    d = get(s, DEVICE, "d")
    assert d.degree == 0 and list(d.labels) == []


# ------------------------------------------------------------------- stats


def test_stats(daemon):
    s = daemon.stub
    st = stats(s)
    assert [tc.type for tc in st.entities] == ALL_TYPES
    assert all(tc.count == 0 for tc in st.entities)
    assert st.entities_total == 0 and st.links == 0 and st.labels == 0
    assert st.lmdb_size_bytes > 0 and st.map_size_bytes > 0
    assert st.schema_version >= 1
    upsert(s, [link(SELLER, "s1", DEVICE, "d1", seen=1), link(SELLER, "s2", DEVICE, "d1", seen=1),
               link(SELLER, "s1", PHONE, "123", seen=1), link(SELLER, "s1", IP, "1.2.3.4", seen=1)],
           entities=[ent(EMAIL, "e@x", labels=["a", "b"]), ent(PAYMENT, "iban1", labels=["c"])])
    st = stats(s)
    assert [tc.type for tc in st.entities] == ALL_TYPES
    assert type_counts(st) == {SELLER: 2, ADDRESS: 0, PAYMENT: 1, DEVICE: 1, PHONE: 1, EMAIL: 1, IP: 1}
    assert st.entities_total == 7
    assert st.links == 4
    assert st.labels == 3
    assert st.commits >= 1 and st.committed_requests >= 1
    assert st.commits <= st.committed_requests


# ------------------------------------------------------------------ ingest


def test_ingest_stream(daemon):
    s = daemon.stub
    msgs = [pb.UpsertRequest(links=[link(SELLER, "is%d" % i, DEVICE, "id%d" % (i % 3), seen=i + 1)])
            for i in range(20)]
    msgs.append(pb.UpsertRequest(request_id="ing-1", entities=[ent(EMAIL, "x@y")]))
    msgs.append(pb.UpsertRequest(request_id="ing-1", entities=[ent(EMAIL, "x@y")]))
    r = s.Ingest(iter(msgs), timeout=T(30))
    assert r.messages == 22
    assert r.duplicates == 1
    assert r.totals.entities_created == 20 + 3 + 1
    assert r.totals.links_created == 20
    st = stats(s)
    assert st.entities_total == 24 and st.links == 20
    assert get(s, DEVICE, "id0").degree == 7


def test_ingest_empty_stream(daemon):
    r = daemon.stub.Ingest(iter(()), timeout=T())
    assert r.messages == 0 and r.duplicates == 0 and r.totals == pb.WriteTotals()


def test_ingest_bad_message_reports_index(daemon):
    s = daemon.stub
    # Several rounds: the earlier messages may still be queued for the writer
    # when the bad one arrives, and they must be committed all the same.
    for r in range(5):
        msgs = [pb.UpsertRequest(links=[link(SELLER, "ok%d-%d" % (r, i), DEVICE, "dv", seen=1)])
                for i in range(5)]
        msgs.append(pb.UpsertRequest(links=[link(SELLER, "bad", DEVICE, "", seen=1)]))
        msgs.append(pb.UpsertRequest(links=[link(SELLER, "after%d" % r, DEVICE, "dv", seen=1)]))
        details = expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Ingest, iter(msgs), timeout=T(),
                                fields=["message 5", "links[0].b.key"])
        assert "message 6" not in details
        missing = [i for i in range(5) if not exists(s, SELLER, "ok%d-%d" % (r, i))]
        assert not missing, "round %d: messages %s before the bad one were lost (status: %r)" % (
            r, missing, details)
        assert not exists(s, SELLER, "bad")
        assert not exists(s, SELLER, "after%d" % r)
    assert get(s, DEVICE, "dv").degree == 25


def test_ingest_not_found_message(daemon):
    s = daemon.stub
    msgs = [pb.UpsertRequest(links=[link(SELLER, "a", DEVICE, "b", seen=1)]),
            pb.UpsertRequest(links=[link_ids(1, 424242)])]
    expect_status(grpc.StatusCode.NOT_FOUND, s.Ingest, iter(msgs), timeout=T(), fields=["message 1"])
    assert exists(s, SELLER, "a")


# ---------------------------------------------------------- restart, load


def test_restart_keeps_everything(daemon):
    s = daemon.stub
    upsert(s, [link(SELLER, "p1", DEVICE, "pd", seen=7), link(SELLER, "p2", DEVICE, "pd", seen=9)],
           entities=[ent(SELLER, "p1", attrs=[("name", "P")], labels=["l1"])], request_id="persist-1")
    before = {k: get(s, t, k) for t, k in [(SELLER, "p1"), (SELLER, "p2"), (DEVICE, "pd")]}
    st = stats(s)
    daemon.restart()
    s = daemon.stub
    for (k, e) in before.items():
        assert get(s, e.type, k) == e
    st2 = stats(s)
    assert type_counts(st2) == type_counts(st) and st2.links == st.links and st2.labels == st.labels
    r = upsert(s, [link(SELLER, "zz", DEVICE, "pd", seen=1)], request_id="persist-1")
    assert r.duplicate is True
    # ids are not reused after a restart
    upsert(s, entities=[ent(SELLER, "fresh")])
    assert get(s, SELLER, "fresh").id > max(e.id for e in before.values())


@pytest.mark.parametrize("threads", [None, 1])
def test_concurrent_upserts_group_commit(daemon_factory, threads):
    daemon = daemon_factory(*(["--threads", str(threads)] if threads else []))
    s = daemon.stub
    n_threads, per_thread = 16, 8
    errors = []
    base = stats(s)

    def worker(t):
        try:
            for i in range(per_thread):
                r = upsert(s, [link(SELLER, "c%d-%d" % (t, i), DEVICE, "shared", seen=i + 1),
                               link(SELLER, "c%d-%d" % (t, i), EMAIL, "c%d-%d@x" % (t, i), seen=i + 1)],
                           request_id="c-%d-%d" % (t, i), timeout=T(30))
                assert r.duplicate is False and r.totals.links_created == 2
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ths = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(T(120))
    assert not errors, errors[:3]
    n_req = n_threads * per_thread
    st = stats(s)
    commits = st.commits - base.commits
    carried = st.committed_requests - base.committed_requests
    print("group commit: %d requests in %d commits (%.2f requests/commit)"
          % (n_req, commits, n_req / max(commits, 1)))
    assert carried >= n_req
    assert 1 <= commits <= n_req
    assert get(s, DEVICE, "shared").degree == n_req
    assert st.links == 2 * n_req
    assert st.entities_total == 2 * n_req + 1


def test_concurrent_reads_during_writes(daemon):
    s = daemon.stub
    upsert(s, [link(SELLER, "rw-hub", DEVICE, "rw-d%d" % i, seen=1) for i in range(50)])
    stop = threading.Event()
    errors = []
    reads = [0]

    def reader():
        try:
            while not stop.is_set():
                ns = neighbors_all(s, ref(SELLER, "rw-hub"), limit=1000)
                keys = [n.entity.key for n in ns]
                assert len(keys) == len(set(keys)) >= 50
                ids = [(n.entity.type, n.entity.id) for n in ns]
                assert ids == sorted(ids)
                reads[0] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    def writer(t):
        try:
            for i in range(15):
                upsert(s, [link(SELLER, "rw-hub", EMAIL, "rw%d-%d@x" % (t, i), seen=2)])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    rs = [threading.Thread(target=reader) for _ in range(6)]
    ws = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in rs + ws:
        th.start()
    for th in ws:
        th.join(T(60))
    stop.set()
    for th in rs:
        th.join(T(60))
    assert not errors, errors[:3]
    assert reads[0] > 0
    assert get(s, SELLER, "rw-hub").degree == 50 + 60


# ---------------------------------------------------------------- bulk lookup


def test_get_entities_bulk(daemon):
    """GetEntities streams the entities of many ids in request order, 1024 a
    message; unknown ids are listed as not found, one by one, and fail
    nothing; over the limit is INVALID_ARGUMENT naming it."""
    s = daemon.stub
    upsert(s, links=[link(SELLER, "bulk-s%d" % i, DEVICE, "bulk-d%d" % (i // 2))
                     for i in range(3000)])
    ids = [get(s, SELLER, "bulk-s%d" % i).id for i in range(3000)]
    want = ids[:1500] + [1 << 61] + ids[1500:] + [0]
    batches = list(s.GetEntities(pb.GetEntitiesRequest(ids=want, attributes=True), timeout=T()))
    assert [len(b.entities) + len(b.not_found) for b in batches] == [1024, 1024, 954]
    got = [e for b in batches for e in b.entities]
    assert [e.id for e in got] == ids
    assert [e.key for e in got] == ["bulk-s%d" % i for i in range(3000)]
    assert all(e.degree == 1 and e.type == SELLER for e in got)
    assert [x for b in batches for x in b.not_found] == [1 << 61, 0]
    assert list(s.GetEntities(pb.GetEntitiesRequest(), timeout=T())) == []
    expect_status(grpc.StatusCode.INVALID_ARGUMENT,
                  lambda r, timeout: list(s.GetEntities(r, timeout=timeout)),
                  pb.GetEntitiesRequest(ids=[1] * 1000001), timeout=T(), fields=["1000000"])
