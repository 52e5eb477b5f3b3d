"""Crash safety (kill -9 during writes), SIGTERM drain, map growth, and readers
killed while holding a transaction."""

import os
import random
import shutil
import signal
import threading
import time
import warnings

import grpc
import pytest
from graphd.v1 import graphd_pb2_grpc

from bbutil import (DEVICE, EMAIL, IP, PHONE, SELLER, T, assert_healthy, ent, exists,
                    expect_status, get, link, neighbors_all, pb, ref, stats, type_counts,
                    upsert)

KILL_ROUNDS = int(os.environ.get("GRAPHD_KILL_ROUNDS", "3"))


def _req(rnd, t, i):
    s = "s-%d-%d-%d" % (rnd, t, i)
    links = [link(SELLER, s, DEVICE, "dev-%d" % (i % 7), seen=1000 + i),
             link(SELLER, s, EMAIL, "%s@mail" % s, seen=2000 + i)]
    if i > 0:
        links.append(link(SELLER, s, SELLER, "s-%d-%d-%d" % (rnd, t, i - 1), seen=3000 + i))
    return pb.UpsertRequest(request_id="rid-%d-%d-%d" % (rnd, t, i), links=links)


def _ingest_msg(rnd, k):
    s = "ing-%d-%d" % (rnd, k)
    return pb.UpsertRequest(links=[link(SELLER, s, PHONE, "+1%07d" % (k % 50), seen=5000 + k),
                                   link(SELLER, s, IP, "10.%d.%d.%d" % (rnd, k // 256 % 256, k % 256),
                                        seen=5000 + k),
                                   link(SELLER, s, DEVICE, "dev-%d" % (k % 7), seen=5000 + k)])


def _all_entities(s):
    """Every entity, by walking ids 1.. until entities_total were found."""
    st = stats(s)
    total = st.entities_total
    assert sum(type_counts(st).values()) == total, "per-type counts do not add up to entities_total"
    found = {}
    i, misses = 0, 0
    while len(found) < total:
        i += 1
        try:
            found[i] = get(s, id=i)
            misses = 0
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
            misses += 1
            assert misses < 100000, "could not find %d entities (found %d)" % (total, len(found))
    return found, st


def check_invariants(s, full_limit=4000, sample=300, rng=None):
    """Adjacency symmetric; degree/seller_count match the lists; link count
    in Stats = half the sum of degrees. Returns the entity map."""
    rng = rng or random.Random(1)
    ents, st = _all_entities(s)
    assert sum(e.degree for e in ents.values()) == 2 * st.links, \
        "sum of degrees %d != 2 * Stats.links %d" % (sum(e.degree for e in ents.values()), st.links)
    ids = sorted(ents)
    if len(ids) > full_limit:
        ids = rng.sample(ids, sample)
    adj_cache = {}

    def adj(eid):
        if eid not in adj_cache:
            ns = neighbors_all(s, pb.EntityRef(id=eid), limit=1000)
            adj_cache[eid] = {n.entity.id: n for n in ns}
        return adj_cache[eid]

    for eid in ids:
        e = ents[eid]
        mine = adj(eid)
        assert len(mine) == e.degree, "entity %d (%s) degree %d but %d neighbours" % (
            eid, e.key, e.degree, len(mine))
        assert sum(1 for n in mine.values() if n.entity.type == SELLER) == e.seller_count, \
            "entity %d seller_count mismatch" % eid
        for nid, n in mine.items():
            assert nid != eid
            back = adj(nid).get(eid)
            assert back is not None, "asymmetric: %d lists %d, not the reverse" % (eid, nid)
            assert (back.link.first_seen, back.link.last_seen, back.link.count) == \
                (n.link.first_seen, n.link.last_seen, n.link.count), "link %d-%d differs by side" % (eid, nid)
            assert back.entity.key == e.key and back.entity.type == e.type
            assert n.link.count >= 1 and n.link.first_seen <= n.link.last_seen
            assert e.first_seen <= n.link.first_seen and n.link.last_seen <= e.last_seen
    return ents


def test_kill9_during_writes(daemon, capsys):
    rng = random.Random(int(os.environ.get("GRAPHD_KILL_SEED", "12345")))
    all_acked = []
    total_acked = 0
    for rnd in range(KILL_ROUNDS):
        s = daemon.stub
        stop = threading.Event()
        acked = []
        lock = threading.Lock()
        ingest_sent = [0]
        errors = []
        proc = daemon.proc

        def writer(t):
            i = 0
            while not stop.is_set():
                req = _req(rnd, t, i)
                try:
                    rep = s.Upsert(req, timeout=T(10))
                except grpc.RpcError as e:
                    # Only the kill may fail a write.
                    time.sleep(0.5)
                    if proc.poll() is None:
                        errors.append("upsert %s failed while graphd was alive: %s %s"
                                      % (req.request_id, e.code(), e.details()))
                    return
                if rep.duplicate:
                    errors.append("fresh request %s answered duplicate" % req.request_id)
                with lock:
                    acked.append((req, rep))
                i += 1

        def ingester():
            def gen():
                k = 0
                while not stop.is_set():
                    yield _ingest_msg(rnd, k)
                    ingest_sent[0] = k + 1
                    k += 1
                    time.sleep(0.004)
            try:
                s.Ingest(gen(), timeout=T(60))
            except grpc.RpcError:
                pass

        ths = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        ths.append(threading.Thread(target=ingester))
        for th in ths:
            th.start()
        # Kill at a random moment once some writes were acknowledged.
        t0 = time.monotonic()
        while len(acked) < 5 and time.monotonic() - t0 < T(20):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.1, 1.2))
        n_before_kill = len(acked)
        daemon.kill9()
        stop.set()
        for th in ths:
            th.join(T(30))
        assert not errors, errors[:5]
        assert n_before_kill >= 5, "too few acknowledged writes before the kill"
        total_acked += len(acked)
        all_acked.extend(acked)
        print("round %d: %d acknowledged upserts, %d ingest messages sent before kill -9"
              % (rnd, len(acked), ingest_sent[0]))

        daemon.start()
        s = daemon.stub
        # 1. Every acknowledged write is present: all of this round's, and of
        #    earlier rounds all of them in the first rounds and the last, a
        #    random 500 in between (a long run stays linear in its rounds).
        earlier = all_acked[:-len(acked)] if acked else all_acked
        if rnd < 3 or rnd == KILL_ROUNDS - 1 or len(earlier) <= 500:
            check = all_acked
        else:
            check = rng.sample(earlier, 500) + acked
        for req, rep in check:
            a_key = req.links[0].a.key
            assert exists(s, SELLER, a_key), "acknowledged request %s lost" % req.request_id
            ns = {(n.entity.type, n.entity.key): n for n in neighbors_all(s, ref(SELLER, a_key))}
            for ln in req.links:
                n = ns.get((ln.b.type, ln.b.key))
                assert n is not None, "acknowledged link %s -> %s lost (request %s)" % (
                    ln.a.key, ln.b.key, req.request_id)
                assert n.link.first_seen <= ln.seen <= n.link.last_seen
        # 2. Retrying acknowledged requests answers duplicate (the request log is durable too).
        for req, rep in rng.sample(all_acked, min(40, len(all_acked))):
            r2 = s.Upsert(req, timeout=T())
            assert r2.duplicate is True, "acknowledged request %s applied twice" % req.request_id
            assert r2.committed_at == rep.committed_at
        # 3. Ingest messages are atomic and applied in order: a prefix survived.
        present = []
        for k in range(ingest_sent[0] + 2):
            sk = "ing-%d-%d" % (rnd, k)
            if exists(s, SELLER, sk):
                e = get(s, SELLER, sk)
                assert e.degree == 3, "ingest message %d half applied (degree %d)" % (k, e.degree)
                present.append(k)
        assert present == list(range(len(present))), "ingest survivors are not a prefix: %s" % present[:20]
        # 4. Structural invariants over the whole graph (for long runs, every
        #    25th round and the last: the graph keeps growing, and the walk
        #    reads every entity).
        if rnd < 3 or rnd % 25 == 24 or rnd == KILL_ROUNDS - 1:
            check_invariants(s, rng=rng)
        # 5. New ids do not collide with surviving ones.
        ents_max = stats(s).entities_total
        upsert(s, entities=[ent(SELLER, "post-crash-%d" % rnd)])
        e = get(s, SELLER, "post-crash-%d" % rnd)
        assert get(s, id=e.id).key == "post-crash-%d" % rnd
        assert stats(s).entities_total == ents_max + 1
    with capsys.disabled():  # into the meson log even when the test passes
        print("\nkill -9 rounds: %d, acknowledged writes: %d, lost: 0" % (KILL_ROUNDS, total_acked),
              flush=True)
    assert_healthy(daemon)


def test_sigterm_drains_inflight_ingest(daemon):
    s = daemon.stub
    n_msgs = 80
    sent = [0]
    result = {}
    started = threading.Event()

    def gen():
        for k in range(n_msgs):
            yield pb.UpsertRequest(links=[link(SELLER, "drain-%d" % k, DEVICE, "drain-d", seen=k + 1)])
            sent[0] = k + 1
            if k == 10:
                started.set()
            time.sleep(0.01)  # ~0.8 s of streaming

    def run():
        try:
            result["reply"] = s.Ingest(gen(), timeout=T(60))
        except grpc.RpcError as e:
            result["error"] = e

    th = threading.Thread(target=run)
    th.start()
    assert started.wait(T(20))
    daemon.proc.send_signal(signal.SIGTERM)
    # New calls are refused once the drain has begun: UNAVAILABLE (also
    # once the daemon has exited), or CANCELLED when caught by the server's
    # final cancel of what is left (a new connection racing the shutdown).
    # The drain begins after the signal is noticed and the jobs stopped, so
    # ask until refused (slow under valgrind); until then calls are served.
    ch = daemon.new_channel()
    try:
        stub2 = graphd_pb2_grpc.SellerGraphStub(ch)
        deadline = time.monotonic() + T(10)
        for fn, req in ((stub2.Stats, pb.StatsRequest()),
                        (s.GetEntity, pb.GetEntityRequest(ref=ref(SELLER, "drain-0")))):
            while True:
                try:
                    fn(req, timeout=T(5))
                except grpc.RpcError as e:
                    assert e.code() in (grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.CANCELLED), e
                    break
                assert time.monotonic() < deadline, "calls still served long after SIGTERM"
                time.sleep(0.05)
    finally:
        ch.close()
    th.join(T(60))
    assert not th.is_alive()
    assert "error" not in result, "in-flight Ingest failed during drain: %s %s" % (
        result["error"].code(), result["error"].details())
    assert result["reply"].messages == n_msgs
    assert result["reply"].totals.links_created == n_msgs
    rc = daemon.proc.wait(timeout=T(15))
    assert rc == 0, "exit code %d after SIGTERM\n%s" % (rc, daemon.log_tail())
    daemon._close_channel()
    # After exit: UNAVAILABLE too.
    ch = daemon.new_channel()
    try:
        expect_status(grpc.StatusCode.UNAVAILABLE, graphd_pb2_grpc.SellerGraphStub(ch).Stats,
                      pb.StatsRequest(), timeout=T(3))
    finally:
        ch.close()
    daemon.start()
    assert get(daemon.stub, DEVICE, "drain-d").degree == n_msgs
    check_invariants(daemon.stub)


def test_sigterm_idle_exits_zero(daemon):
    upsert(daemon.stub, [link(SELLER, "a", DEVICE, "b", seen=1)])
    rc = daemon.terminate()
    assert rc == 0, daemon.log_tail()
    daemon.start()
    assert exists(daemon.stub, SELLER, "a")


@pytest.mark.daemon_args("--map-size-mb", "1")
def test_map_grows(daemon):
    s = daemon.stub
    st0 = stats(s)
    # ~6 MB of entities with attributes through a 1 MiB initial map.
    total = 0
    for b in range(30):
        ents_ = [ent(SELLER, "m-%d-%d" % (b, i), attrs=[("blob", ("%d-%d-" % (b, i)) * 200)])
                 for i in range(100)]
        r = upsert(s, entities=ents_, links=[link(SELLER, "m-%d-%d" % (b, i), DEVICE, "md-%d" % i, seen=1)
                                              for i in range(100)], timeout=T(60))
        total += r.totals.entities_created
    st = stats(s)
    assert st.map_size_bytes > st0.map_size_bytes, "map did not grow (%d)" % st.map_size_bytes
    assert st.map_size_bytes >= st.lmdb_size_bytes
    assert st.entities_total == 3000 + 100 and st.links == 3000
    assert get(s, SELLER, "m-29-99").attributes[0].value.startswith("29-99-")
    daemon.restart()
    s = daemon.stub
    assert stats(s).entities_total == 3100
    assert get(s, SELLER, "m-0-0").degree == 1
    check_invariants(s)
    assert_healthy(daemon)


def test_sigterm_with_idle_connected_clients(daemon):
    """Clients that stay connected but idle must not keep the daemon from
    exiting: exit 0 within the 15 s drain limit (the time is printed)."""
    chans = [daemon.new_channel(options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(3)]
    try:
        for ch in chans:
            graphd_pb2_grpc.SellerGraphStub(ch).Stats(pb.StatsRequest(), timeout=T())
        t0 = time.monotonic()
        rc = daemon.terminate(close_channel_first=False)
        took = time.monotonic() - t0
    finally:
        for ch in chans:
            ch.close()
    print("SIGTERM with 4 idle connected channels: exit %r after %.2f s" % (rc, took))
    assert rc == 0, "exit code %r (None = still running after 15 s)\n%s" % (rc, daemon.log_tail())
    assert took < 15 * (4 if daemon.wrapper else 1)
    if took > 3:
        warnings.warn("graphd needed %.1f s to exit on SIGTERM with no call in flight, only idle "
                      "client connections (waits for its grace period)" % took)


def _readers(data_dir):
    """PIDs in the LMDB reader table (mdb_stat -r lists it, clears nothing)."""
    import subprocess
    out = subprocess.run(["mdb_stat", "-r", data_dir], capture_output=True, text=True,
                         timeout=60).stdout
    pids = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[0] != "0":
            pids.append(int(parts[0]))
    return pids


def _churn(stub, rounds):
    """Rewrites the same rows: every commit frees as many pages as it takes,
    so the file stays put unless a reader pins the old ones."""
    for r in range(rounds):
        upsert(stub, [link(SELLER, "churn-%d" % i, DEVICE, "churn-dev-%d" % (i % 50),
                           seen=1000 + r) for i in range(400)])


def test_reader_killed_holding_a_transaction(daemon):
    """A process killed while it holds a read transaction leaves its reader
    slot behind; the pages its snapshot pinned cannot be reused and the
    file grows under rewrites. graphd clears such slots (every minute and on
    SIGHUP): afterwards the same rewrites reuse pages and the file stops
    growing, and no data is lost."""
    import subprocess
    if not shutil.which("mdb_dump"):
        pytest.fail("mdb_dump / mdb_stat missing (Debian lmdb-utils)")
    _churn(daemon.stub, 2)
    data_file = os.path.join(daemon.data_dir, "data.mdb")
    # mdb_dump holds one read transaction while it writes the dump; nobody
    # reads its pipe, so it blocks inside the transaction.
    dumper = subprocess.Popen(["mdb_dump", "-a", daemon.data_dir], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while dumper.pid not in _readers(daemon.data_dir):
        assert time.monotonic() < deadline, "mdb_dump never appeared in the reader table"
        time.sleep(0.05)
    dumper.kill()
    dumper.wait()
    dumper.stdout.close()
    assert dumper.pid in _readers(daemon.data_dir), "the dead reader's slot should be stale"
    # Stats counts it among the slots holding a snapshot (with the Stats
    # call's own).
    pinned_active = stats(daemon.stub).readers_active
    assert pinned_active >= 2, pinned_active

    size0 = os.path.getsize(data_file)
    _churn(daemon.stub, 30)
    grown_pinned = os.path.getsize(data_file) - size0

    os.kill(daemon.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + T(10)
    while dumper.pid in _readers(daemon.data_dir):
        assert time.monotonic() < deadline, "graphd did not clear the dead reader's slot on SIGHUP"
        time.sleep(0.05)
    assert stats(daemon.stub).readers_active == pinned_active - 1
    _churn(daemon.stub, 2)  # let the freed pages come back into use
    size1 = os.path.getsize(data_file)
    _churn(daemon.stub, 30)
    grown_cleared = os.path.getsize(data_file) - size1
    print("file growth over 30 rewrite rounds: %d bytes with the dead reader, %d after clearing"
          % (grown_pinned, grown_cleared))
    assert grown_pinned > 0, "rewrites did not grow the file while a dead reader pinned pages"
    assert grown_cleared < grown_pinned / 4, (grown_pinned, grown_cleared)
    # Nothing lost; the log names what was cleared.
    st = stats(daemon.stub)
    assert st.links >= 400
    assert exists(daemon.stub, SELLER, "churn-399")
    assert "cleared 1 stale reader slot" in daemon.log_tail(400)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (the disk fills long before LMDB's map does)."""
    import subprocess
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): %s" % r.stderr.strip())
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full(small_disk, daemon_factory):
    """The disk fills (ENOSPC) while the map has room: the write that does
    not fit fails with a clear status and nothing of it is kept, every
    acknowledged write stays readable, reads go on, the daemon drains and
    exits 0, and after space is freed a restart serves everything."""
    d = daemon_factory("--map-size-mb", "64", "--no-audit", data_dir=small_disk / "d")
    s = d.stub
    acked, failure = [], None
    for i in range(5000):
        keys = ["s%d-%d" % (i, k) for k in range(200)]
        try:
            upsert(s, [link(SELLER, k, DEVICE, "d-" + k) for k in keys])
            acked.append(keys)
        except grpc.RpcError as e:
            failure = (i, e.code(), e.details())
            break
    assert failure, "the disk never filled"
    print("disk full after %d acknowledged batches: %s %r" % (len(acked), failure[1], failure[2]))
    assert failure[1] == grpc.StatusCode.RESOURCE_EXHAUSTED, failure
    assert "space" in failure[2].lower(), failure
    assert len(acked) > 10
    # Reads go on; acknowledged writes are all there; the failed one left nothing.
    assert stats(s).links == 200 * len(acked)
    for keys in acked[:: max(1, len(acked) // 20)] + [acked[-1]]:
        assert exists(s, SELLER, keys[0]) and exists(s, SELLER, keys[-1])
    assert not exists(s, SELLER, "s%d-0" % failure[0])
    assert d.terminate() == 0
    # More space (remount bigger), restart: everything acknowledged is served.
    import subprocess
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    d.start()
    assert stats(d.stub).links == 200 * len(acked)
    upsert(d.stub, [link(SELLER, "after", DEVICE, "after-dev")])
    assert exists(d.stub, SELLER, "after")
