"""Fresh clusters: provisional placement of sellers whose ties changed since
the latest snapshot, and the WatchAlerts stream (README "Fresh clusters").

Data: a sellergen network with the heavy profile (heavy-tailed shared
addresses and IPs, franchise chains, big rings: real-shaped, not the
convenient classic one), 3000 sellers, seed 11. The newest 1% of its link
rows (by observation time) are held back; the rest is loaded, clustered
once, and the tests then write on top of that snapshot.
"""

import http.client
import json
import os
import queue
import random
import re
import threading
import time

import grpc
import pytest
from google.protobuf import json_format

from bbutil import ADDRESS, DEVICE, SELLER, T, expect_status, pb, ref
from test_analytics import generate, loaded_daemon, run_job
from test_investigate import ingest

GEN_ARGS = ["--sellers", "3000", "--seed", "11", "--profile", "heavy"]
HELD_BACK = 0.01


@pytest.fixture(scope="module")
def net(sellergen_bin, tmp_path_factory):
    return generate(sellergen_bin, tmp_path_factory, "fresh-net", GEN_ARGS)


def split(net):
    """(loaded, held back): every link of a random sample of sellers is held
    back, until the held-back rows are 1% of all: those sellers arrive
    later as new sellers, with their ties to sellers already known."""
    rng = random.Random(7)
    ring = sorted(k for k, (r, _) in net.truth.items() if r)
    honest = sorted(k for k, (r, _) in net.truth.items() if not r)
    rng.shuffle(ring)
    rng.shuffle(honest)
    # Half ring members, half honest sellers: rings are 2% of the sellers,
    # and a sample of 1% of the links would otherwise hold only a handful
    # of them, too few to tell placement from doing nothing.
    sellers = [x for pair in zip(ring, honest) for x in pair]
    by_seller = {}
    for r in net.link_rows:
        for e in (r[0], r[1]):
            if e[0] == SELLER:
                by_seller.setdefault(e[1], []).append(r)
    held, rows = set(), set()
    want = max(1, int(len(net.link_rows) * HELD_BACK))
    for k in sellers:
        if len(rows) >= want:
            break
        held.add(k)
        rows.update(id(r) for r in by_seller.get(k, ()))
    loaded = [r for r in net.link_rows if id(r) not in rows]
    back = [r for r in net.link_rows if id(r) in rows]
    return loaded, back


@pytest.fixture(scope="module")
def fresh(net, tmp_path_factory):
    """A daemon holding the older 99% of net's links, clustered once."""
    def load(dm):
        old, _ = split(net)
        ingest(dm.stub, old, net.entity_rows)
        job, seen = run_job(dm.stub, name="base", flagged_labels=["counterfeit"])
        assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
        wait_placed(dm.stub)
        return dm

    yield from loaded_daemon(net, tmp_path_factory, "fresh", load)


def wait_placed(stub, timeout=30.0):
    """Until the placement queue is empty (the placer also requeues after a
    new snapshot, so wait for a second empty reading)."""
    end = time.monotonic() + timeout
    empty = 0
    while time.monotonic() < end:
        st = stub.Stats(pb.StatsRequest(), timeout=T())
        empty = empty + 1 if st.placement_queued == 0 else 0
        if empty >= 3:
            return st
        time.sleep(0.1)
    raise AssertionError("the placement queue did not drain: %d queued" % st.placement_queued)


class Follower:
    """A WatchAlerts stream read on a thread; events with their arrival
    time (time.monotonic())."""

    def __init__(self, stub, **req):
        self.q = queue.Queue()
        self.call = stub.WatchAlerts(pb.WatchAlertsRequest(**req), timeout=T(300))
        self.error = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for ev in self.call:
                self.q.put((time.monotonic(), ev))
        except grpc.RpcError as e:
            self.error = e

    def next(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None, None

    def drain(self, wait=0.0):
        out = []
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            try:
                out.append(self.q.get(timeout=max(left, 0.01)))
            except queue.Empty:
                if time.monotonic() >= end:
                    return out

    def close(self):
        self.call.cancel()
        self.t.join(5)


def seller_cluster(stub, key):
    return stub.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, key)), timeout=T()).entity


def cluster_or_0(stub, key):
    """The seller's snapshot cluster; 0 for a seller not loaded (held back)."""
    try:
        return seller_cluster(stub, key).cluster_id
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return 0


def ring_device(net, stub):
    """A ring with a labelled member: (the ring's cluster, a device of the
    ring used by members of that cluster)."""
    for ring, ents in sorted(net.rings.items()):
        members = [s for s, (r, _) in net.truth.items() if r == ring]
        if not any(net.truth[s][1] for s in members):
            continue
        clusters = {}
        for s in members:
            c = cluster_or_0(stub, s)
            clusters[c] = clusters.get(c, 0) + 1
        cid, n = max(clusters.items(), key=lambda x: x[1])
        if n < 4 or not cid:
            continue
        for t, key in sorted(ents):
            if t != DEVICE:
                continue
            users = [s for (st, s) in net.adj[(DEVICE, key)] if st == SELLER]
            if sum(1 for s in users if cluster_or_0(stub, s) == cid) >= 3:
                return cid, key
    pytest.fail("no ring with a labelled member and a shared device in the snapshot")


def test_new_seller_on_a_ring_device_alerts_within_a_second(fresh, net):
    s = fresh.stub
    cid, device = ring_device(net, s)
    f = Follower(s, from_now=True, min_risk=0.0)
    try:
        time.sleep(0.3)  # the stream is registered
        s.Upsert(pb.UpsertRequest(links=[pb.LinkInput(a=ref(SELLER, "fresh-ring-seller"),
                                                      b=ref(DEVICE, device))]), timeout=T())
        replied = time.monotonic()
        at, ev = f.next(timeout=T(5))
        assert ev is not None, "no alert within %.0f s" % T(5)
        assert ev.seller_key == "fresh-ring-seller"
        assert ev.cluster_id == cid
        assert at - replied <= 1.0, "the alert came %.3f s after the Upsert reply" % (at - replied)
        assert ev.seq >= 1 and ev.snapshot_id >= 1
        assert ev.cluster_risk > 0 and ev.cluster_size >= 4
        assert ev.previous_cluster_id == 0  # new: in no cluster before
        assert ev.gain > 0 and ev.tie > 0
        assert "counterfeit" in ev.cluster_labels and ev.labelled_members >= 1
        assert "labelled" in ev.reasons
        # The evidence: the device, shared with members of the cluster.
        assert ev.evidence, "no evidence"
        keys = {sh.entity.key for e in ev.evidence for sh in e.shared}
        assert device in keys
        for e in ev.evidence:
            assert seller_cluster(s, e.member_key).cluster_id == cid
            assert e.tie > 0
        # GetEntity: the placement next to the snapshot's cluster (none).
        e = seller_cluster(s, "fresh-ring-seller")
        assert e.cluster_id == 0
        assert e.HasField("provisional")
        assert e.provisional.cluster_id == cid
        assert e.provisional.cluster_risk == pytest.approx(ev.cluster_risk)
        assert e.provisional.snapshot_id == ev.snapshot_id
        # GetCluster lists it as a provisional member, not as a member.
        cl = s.GetCluster(pb.GetClusterRequest(cluster_id=cid, max_members=1000), timeout=T())
        assert "fresh-ring-seller" not in {m.key for m in cl.members}
        prov = {m.key: m for m in cl.provisional_members}
        assert "fresh-ring-seller" in prov
        assert prov["fresh-ring-seller"].provisional.cluster_id == cid
        # A member's GetEntity carries its cluster's risk.
        m = seller_cluster(s, ev.evidence[0].member_key)
        assert m.cluster_risk == pytest.approx(ev.cluster_risk)
        # A second write to the same seller, same cluster: no second alert.
        s.Upsert(pb.UpsertRequest(links=[pb.LinkInput(a=ref(SELLER, "fresh-ring-seller"),
                                                      b=ref(ADDRESS, "fresh-ring-seller-home"))]),
                 timeout=T())
        wait_placed(s)
        assert [e for _, e in f.drain(0.5) if e.seller_key == "fresh-ring-seller"] == []
    finally:
        f.close()


def test_honest_sellers_on_a_hub_get_no_alert(fresh, net):
    s = fresh.stub
    hub = max(net.hub_rows, key=lambda h: h[1])[0]
    f = Follower(s, from_now=True)
    try:
        time.sleep(0.3)
        keys = ["fresh-honest-%d" % i for i in range(8)]
        s.Upsert(pb.UpsertRequest(links=[pb.LinkInput(a=ref(SELLER, k), b=ref(hub[0], hub[1]))
                                         for k in keys]), timeout=T())
        wait_placed(s)
        got = [e for _, e in f.drain(1.0) if e.seller_key in keys]
        assert got == [], "alerts for hub-only sellers: %r" % [e.seller_key for e in got]
        for k in keys:
            e = seller_cluster(s, k)
            assert e.HasField("provisional"), k  # placed ...
            assert e.provisional.cluster_id == 0  # ... on its own
    finally:
        f.close()


def test_bad_watch_requests(fresh):
    s = fresh.stub

    def first(**req):
        return next(iter(s.WatchAlerts(pb.WatchAlertsRequest(**req), timeout=T())))

    for bad in (1.5, -0.1, float("nan")):
        expect_status(grpc.StatusCode.INVALID_ARGUMENT, first, min_risk=bad,
                      fields=["min_risk"])
    expect_status(grpc.StatusCode.NOT_FOUND, first, cluster_id=987654321, fields=["cluster_id"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, first, label="bad label\n",
                  fields=["label"])
    st = s.Stats(pb.StatsRequest(), timeout=T())
    expect_status(grpc.StatusCode.OUT_OF_RANGE, first, after_seq=st.alerts + 10**6,
                  fields=["after_seq", "last event"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, first, after_seq=1, from_now=True,
                  fields=["from_now"])


def test_placements_agree_with_the_next_full_run(fresh, net):
    """+1% of links (every link of a sample of sellers, half of them ring
    members): the placement of every seller that got a new link agrees with
    the next full clustering run, and it corrects what the old snapshot
    alone gets wrong."""
    s = fresh.stub
    old, new = split(net)
    have = {frozenset((a, b)) for a, b, _ in old}
    changed = set()
    for a, b, _ in new:
        if frozenset((a, b)) in have:
            continue
        for e in (a, b):
            if e[0] == SELLER:
                changed.add(e[1])
    assert len(changed) >= 20, "too few changed sellers to measure: %d" % len(changed)
    before = {k: seller_cluster(s, k).cluster_id for k in sorted(changed)
              if k not in held_sellers(net)}
    ingest(s, new, [])
    wait_placed(s)
    placed = {}
    for k in sorted(changed):
        e = seller_cluster(s, k)
        placed[k] = e.provisional.cluster_id if e.HasField("provisional") else e.cluster_id
    first = s.GetSnapshot(pb.SnapshotRequest(), timeout=T()).id
    job, seen = run_job(s, name="next", flagged_labels=["counterfeit"])
    assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
    members = {}

    def cluster(snap, cid):
        if (snap, cid) not in members:
            r = s.GetCluster(pb.GetClusterRequest(snapshot_id=snap, cluster_id=cid,
                                                  max_members=1000), timeout=T())
            members[(snap, cid)] = (r.cluster.size, {m.key for m in r.members})
        return members[(snap, cid)]

    def same(k, guess, now, strict):
        size, mem = cluster(job.snapshot_id, now) if now else (1, set())
        if guess == now or (guess == 0 and size == 1):
            return True
        if strict or not guess:
            return False
        # The next run split the cluster placement chose: the seller still
        # sits with members placement put it with (the part that got a
        # fresh id), so its placement was right; the split is about the
        # cluster, not about the seller.
        return bool((cluster(first, guess)[1] - {k}) & mem)

    job = s.GetJob(pb.JobRequest(job_id=job.id), timeout=T())
    strict = agree = base = moved = moved_agree = 0
    for k in sorted(changed):
        now = seller_cluster(s, k).cluster_id
        a, b = same(k, placed[k], now, False), same(k, before.get(k, 0), now, False)
        strict += same(k, placed[k], now, True)
        if not a:
            print("disagree: %s placed in %d, next run %d, snapshot %d"
                  % (k, placed[k], now, before.get(k, 0)))
        agree += a
        base += b
        if not b:  # the snapshot alone would have been wrong
            moved += 1
            moved_agree += a
    n = len(changed)
    print("placement agreement: %d of %d changed sellers (%.1f%%; same cluster id: %d, %.1f%%); "
          "without placement (the old snapshot's cluster, new sellers alone): %d (%.1f%%); of "
          "the %d sellers the old snapshot got wrong, placement got %d right"
          % (agree, n, 100 * agree / n, strict, 100 * strict / n, base, 100 * base / n, moved,
             moved_agree))
    # The sample is hard on purpose (half ring members, arriving together):
    # the next run also restructures some of the clusters they join, which
    # no placement against the old snapshot can foresee. 90% here; the
    # benchmark measures the same on 200,000 sellers (README).
    assert agree >= 0.90 * n, "only %d of %d changed sellers agree" % (agree, n)
    assert moved >= 10, "the change moved too few sellers to test placement: %d" % moved
    assert moved_agree >= 0.9 * moved, "placement got %d of the %d sellers the snapshot alone " \
        "gets wrong" % (moved_agree, moved)


def held_sellers(net):
    _, back = split(net)
    loaded = {e[1] for a, b, _ in split(net)[0] for e in (a, b) if e[0] == SELLER}
    return {e[1] for a, b, _ in back for e in (a, b) if e[0] == SELLER} - loaded


def read_all(stub, after_seq=0, until_seq=None, timeout=5.0):
    """Events after after_seq, up to until_seq (or until none comes for a
    second)."""
    f = Follower(stub, after_seq=after_seq)
    out = []
    try:
        while True:
            _, ev = f.next(timeout=1.0 if until_seq is None else timeout)
            if ev is None:
                break
            out.append(ev)
            if until_seq is not None and ev.seq >= until_seq:
                break
    finally:
        f.close()
    return out


def test_resume_after_disconnect_and_restart(fresh, net):
    s = fresh.stub
    _, device = ring_device(net, s)
    s.Upsert(pb.UpsertRequest(links=[pb.LinkInput(a=ref(SELLER, "fresh-resume-%d" % i),
                                                  b=ref(DEVICE, device)) for i in range(3)]),
             timeout=T())
    wait_placed(s)
    every = read_all(s)
    assert len(every) >= 3, "need a few alerts to resume through"
    seqs = [e.seq for e in every]
    assert seqs == sorted(set(seqs)), "events out of order or repeated"
    last = seqs[-1]
    # Disconnect after the first event, resume from it.
    part = read_all(s, until_seq=seqs[0])
    assert [e.seq for e in part] == seqs[:1]
    rest = read_all(s, after_seq=part[-1].seq, until_seq=last)
    assert [e.seq for e in rest] == seqs[1:]
    assert [e.SerializeToString() for e in part + rest] == \
        [e.SerializeToString() for e in every]
    # Restart the daemon: the history and the numbering survive.
    mid = seqs[len(seqs) // 2]
    fresh.restart()
    s = fresh.stub
    after = read_all(s, after_seq=mid, until_seq=last)
    assert [e.seq for e in after] == [q for q in seqs if q > mid]
    assert [e.SerializeToString() for e in after] == \
        [e.SerializeToString() for e in every if e.seq > mid]
    # New events continue the numbering.
    s.Upsert(pb.UpsertRequest(links=[pb.LinkInput(a=ref(SELLER, "fresh-after-restart"),
                                                  b=ref(SELLER, every[0].seller_key)),
                                     pb.LinkInput(a=ref(SELLER, "fresh-after-restart"),
                                                  b=ref(DEVICE, every[0].evidence[0].shared[0]
                                                        .entity.key))]), timeout=T())
    wait_placed(s)
    newer = read_all(s, after_seq=last)
    assert newer and newer[0].seq == last + 1


def test_history_bound_is_out_of_range(daemon_factory, net):
    """With --alert-history 2, resuming from before the oldest kept event is
    OUT_OF_RANGE and the message names the oldest kept."""
    dm = daemon_factory("--alert-history", "2", "--http-listen", "127.0.0.1:0",
                        "--metrics-listen", "127.0.0.1:0")
    s = dm.stub
    def shares(k):  # a device and a phone, as a ring's members do
        return [pb.LinkInput(a=ref(SELLER, k), b=ref(DEVICE, "hd")),
                pb.LinkInput(a=ref(SELLER, k), b=ref(pb.ENTITY_TYPE_PHONE, "+15550001"))]

    # Background: sellers with addresses of their own, so that a group
    # sharing a device and a phone is more than chance (evidence.h).
    s.Upsert(pb.UpsertRequest(links=[pb.LinkInput(a=ref(SELLER, "bg%d" % i),
                                                  b=ref(ADDRESS, "bg-home-%d" % i))
                                     for i in range(300)]), timeout=T())
    s.Upsert(pb.UpsertRequest(links=[x for i in range(4) for x in shares("h%d" % i)]),
             timeout=T())
    job, seen = run_job(s, name="h")
    assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
    wait_placed(s)
    for i in range(4):
        s.Upsert(pb.UpsertRequest(links=shares("hn%d" % i)), timeout=T())
        wait_placed(s)
    st = s.Stats(pb.StatsRequest(), timeout=T())
    assert st.alerts == 4, st
    kept = read_all(s)
    assert [e.seq for e in kept] == [3, 4]
    # The same counts in the metrics, and a latency for each placement.
    from test_metrics import Scrape
    port = int(re.search(r"metrics on 127\.0\.0\.1:(\d+)", dm.log_tail(200)).group(1))
    sc = Scrape(port)
    assert sc.get("graphd_alerts_total") == 4
    assert sc.get("graphd_placements_total") == st.placements >= 4
    assert sc.get("graphd_placement_latency_seconds_count") == st.placements
    assert sc.get("graphd_placement_queue") == 0
    assert sc.get("graphd_placement_shed_total") == 0
    err = expect_status(grpc.StatusCode.OUT_OF_RANGE,
                        lambda: next(iter(s.WatchAlerts(pb.WatchAlertsRequest(after_seq=1),
                                                        timeout=T()))),
                        fields=["after_seq", "oldest kept is 3", "--alert-history"])
    # Resuming right before the oldest kept is fine.
    assert [e.seq for e in read_all(s, after_seq=2)] == [3, 4]
    # Over HTTP: the same events as JSON Lines, then the deadline's error line.
    c = http.client.HTTPConnection("127.0.0.1", dm.http_port, timeout=T(10))
    c.request("POST", "/v1/WatchAlerts", body=json.dumps({"afterSeq": "2"}),
              headers={"Content-Type": "application/json", "X-Deadline-Ms": "1500"})
    r = c.getresponse()
    assert r.status == 200
    lines = [json.loads(x) for x in r.read().decode().splitlines()]
    assert lines[-1]["error"]["status"] == "DEADLINE_EXCEEDED", lines[-1]
    got = [json_format.ParseDict(d, pb.AlertEvent()) for d in lines[:-1]]
    assert [e.SerializeToString() for e in got] == [e.SerializeToString() for e in kept]
    c.close()


def test_placement_off(daemon_factory):
    dm = daemon_factory("--placement-queue", "0")
    expect_status(grpc.StatusCode.FAILED_PRECONDITION,
                  lambda: next(iter(dm.stub.WatchAlerts(pb.WatchAlertsRequest(), timeout=T()))),
                  fields=["--placement-queue"])


def test_full_queue_sheds_and_never_blocks(daemon_factory):
    """--placement-queue 2: one write that changes five sellers queues two,
    sheds and counts three, and succeeds."""
    dm = daemon_factory("--placement-queue", "2")
    s = dm.stub
    rep = s.Upsert(pb.UpsertRequest(links=[pb.LinkInput(a=ref(SELLER, "q%d" % i),
                                                        b=ref(DEVICE, "qd"))
                                           for i in range(5)]), timeout=T())
    assert rep.totals.links_created == 5
    st = wait_placed(s)
    assert st.placement_shed == 3
