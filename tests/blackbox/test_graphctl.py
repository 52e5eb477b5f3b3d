"""graphctl against the real daemon (skipped when GRAPHCTL_BIN is unset)."""

import csv
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time

import pytest

from bbutil import (ADDRESS, DEVICE, PAYMENT, SELLER, T, get, link, pb, stats, type_counts,
                    upsert, ALL_TYPES)

EXIT_OK, EXIT_RPC, EXIT_USAGE, EXIT_DATAERR, EXIT_UNAVAILABLE = 0, 1, 2, 65, 69

TYPE_NAMES = {"seller": 1, "address": 2, "payment_account": 3, "device": 4, "phone": 5,
              "email": 6, "ip": 7}


def run(graphctl_bin, addr, *args, json_out=True, timeout=None, check=None):
    cmd = [graphctl_bin, "--addr", addr] + (["--json"] if json_out else []) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or T(60))
    if check is not None:
        assert p.returncode == check, "%s -> exit %d (want %d)\nstdout: %s\nstderr: %s" % (
            " ".join(cmd), p.returncode, check, p.stdout[-2000:], p.stderr[-2000:])
    return p


def js(p):
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        raise AssertionError("not JSON (%s): %r" % (e, p.stdout[:500]))


@pytest.fixture
def ctl(graphctl_bin, daemon):
    def call(*args, **kw):
        return run(graphctl_bin, daemon.addr, *args, **kw)
    return call


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


LINKS_CSV = """a_type,a_key,b_type,b_key,seen
seller,S1,device,d1,100
seller,s2,device,D1,200
seller,s1,email,a@x.example,300
seller,s3,device,d1,
seller,s1,device,d1,50
"""

ENTITIES_CSV = """type,key,labels
seller,s1,counterfeit;watch
seller,s9,cleared
"""


def test_help(graphctl_bin):
    p = subprocess.run([graphctl_bin, "--help"], capture_output=True, text=True, timeout=T())
    assert p.returncode == 0
    for sub in ("ingest", "get", "neighbors", "label", "delete", "stats", "health"):
        assert sub in p.stdout + p.stderr


def test_ingest_summary_text(ctl, tmp_path):
    """The text summary says what its numbers count: records read, links
    new and seen again, entities new as link endpoints, updated."""
    lp = write(tmp_path / "links.csv", LINKS_CSV)
    out = ctl("ingest", lp, json_out=False, check=EXIT_OK).stdout
    assert "ingested 5 link records and 0 entity records" in out, out
    assert "links: 4 new, 1 seen again" in out, out
    assert "entities: 5 new (the links' endpoints are created on demand), 0 updated" in out, out


def test_ingest_and_queries(ctl, daemon, tmp_path):
    lp = write(tmp_path / "links.csv", LINKS_CSV)
    ep = write(tmp_path / "entities.csv", ENTITIES_CSV)
    r = js(ctl("ingest", lp, check=EXIT_OK))
    assert r["links"] == 5 and r["entities"] == 0
    assert r["messages"] >= 1 and r["duplicates"] == 0
    assert r["entities_created"] == 5
    assert r["links_created"] == 4
    r = js(ctl("ingest", ep, check=EXIT_OK))
    assert r["entities"] == 2
    assert r["entities_created"] == 1      # s9
    assert r["entities_updated"] == 1      # s1

    s = daemon.stub
    st = stats(s)
    assert type_counts(st)[SELLER] == 4 and st.links == 4 and st.labels == 3

    e = js(ctl("get", "seller", "  S1 ", check=EXIT_OK))
    ent = get(s, SELLER, "s1")
    assert e["key"] == "s1" and e["type"] == "seller" and e["id"] == ent.id
    assert e["degree"] == 2 and e["seller_count"] == 0
    assert e["labels"] == ["counterfeit", "watch"]
    assert e["first_seen"] == 50
    assert js(ctl("get", "--id", ent.id, check=EXIT_OK)) == e

    n = js(ctl("neighbors", "device", "d1", check=EXIT_OK))
    assert [x["entity"]["key"] for x in n["neighbors"]] == ["s1", "s2", "s3"]
    assert "next_page_token" not in n or not n["next_page_token"]
    s1 = n["neighbors"][0]
    assert (s1["link"]["count"], s1["link"]["first_seen"], s1["link"]["last_seen"]) == (2, 50, 100)
    n = js(ctl("neighbors", "seller", "s1", "--type", "email", check=EXIT_OK))
    assert [x["entity"]["key"] for x in n["neighbors"]] == ["a@x.example"]
    n = js(ctl("neighbors", "device", "d1", "--limit", "2", check=EXIT_OK))
    assert len(n["neighbors"]) == 2 and n["next_page_token"]
    n = js(ctl("neighbors", "device", "d1", "--since", "150", "--until", "250", check=EXIT_OK))
    assert [x["entity"]["key"] for x in n["neighbors"]] == ["s2"]

    r = js(ctl("label", "seller", "s2", "+suspect", "+b", check=EXIT_OK))
    assert r["labels"] == ["b", "suspect"]
    r = js(ctl("label", "seller", "s2", "-b", check=EXIT_OK))
    assert r["labels"] == ["suspect"]
    assert list(get(s, SELLER, "s2").labels) == ["suspect"]

    st_j = js(ctl("stats", check=EXIT_OK))
    assert st_j["entities"] == {"seller": 4, "address": 0, "payment_account": 0, "device": 1,
                                "phone": 0, "email": 1, "ip": 0}
    assert st_j["entities_total"] == 6 and st_j["links"] == 4 and st_j["labels"] == 4
    assert st_j["schema_version"] >= 1 and st_j["lmdb_size_bytes"] > 0
    assert js(ctl("health", check=EXIT_OK)) == {"status": "SERVING"}

    r = js(ctl("delete", "device", "d1", check=EXIT_OK))
    assert r == {"deleted": True, "links_removed": 3}
    assert stats(s).links == 1
    p = ctl("get", "device", "d1", check=EXIT_RPC)
    assert "NOT_FOUND" in p.stderr


def test_ingest_request_id_prefix_rerun(ctl, daemon, tmp_path):
    rows = "".join("seller,r%d,device,rd%d,%d\n" % (i, i % 10, 1000 + i) for i in range(300))
    lp = write(tmp_path / "links.csv", "a_type,a_key,b_type,b_key,seen\n" + rows)
    r1 = js(ctl("ingest", "--batch", "50", "--request-id-prefix", "load1", lp, check=EXIT_OK))
    assert r1["messages"] == 6 and r1["duplicates"] == 0 and r1["links_created"] == 300
    r2 = js(ctl("ingest", "--batch", "50", "--request-id-prefix", "load1", lp, check=EXIT_OK))
    assert r2["messages"] == 6 and r2["duplicates"] == 6
    assert r2["links_created"] == 0 and r2["links_updated"] == 0 and r2["entities_created"] == 0
    st = stats(daemon.stub)
    assert st.links == 300 and st.entities_total == 310


def test_ingest_jsonl(ctl, daemon, tmp_path):
    p = write(tmp_path / "x.jsonl",
              '{"a_type":"seller","a_key":"j1","b_type":"ip","b_key":"10.0.0.1","seen":5}\n'
              '{"type":"seller","key":"j1","labels":["x"],"attributes":{"country":"DE"}}\n')
    r = js(ctl("ingest", p, check=EXIT_OK))
    assert r["links_created"] == 1 and r["entities_created"] == 2
    e = get(daemon.stub, SELLER, "j1")
    assert list(e.labels) == ["x"] and [(a.name, a.value) for a in e.attributes] == [("country", "DE")]


def test_neighbors_all_pages(ctl, daemon):
    upsert(daemon.stub, [link(SELLER, "big", DEVICE, "d%03d" % i, seen=1) for i in range(250)])
    n = js(ctl("neighbors", "seller", "big", "--all", "--limit", "40", check=EXIT_OK))
    keys = [x["entity"]["key"] for x in n["neighbors"]]
    assert sorted(keys) == ["d%03d" % i for i in range(250)]
    ids = [x["entity"]["id"] for x in n["neighbors"]]
    assert ids == sorted(ids) and len(set(ids)) == 250
    assert not n.get("next_page_token")


def test_not_found_exit_1(ctl):
    p = ctl("get", "seller", "nobody", check=EXIT_RPC)
    assert "NOT_FOUND" in p.stderr
    p = ctl("neighbors", "seller", "nobody", check=EXIT_RPC)
    assert "NOT_FOUND" in p.stderr
    p = ctl("label", "seller", "nobody", "+x", check=EXIT_RPC)
    assert "NOT_FOUND" in p.stderr
    p = ctl("delete", "seller", "nobody", check=EXIT_RPC)
    assert "NOT_FOUND" in p.stderr
    p = ctl("health", "--service", "no.such.Service", check=EXIT_RPC)


def test_missing_file_exit_66(ctl, tmp_path):
    ctl("ingest", str(tmp_path / "does-not-exist.csv"), check=66)


def test_malformed_file_exit_65(ctl, daemon, tmp_path):
    bad = write(tmp_path / "bad.csv", "a_type,a_key,b_type,b_key,seen\nseller,s1,spaceship,x,1\n")
    p = ctl("ingest", bad, check=EXIT_DATAERR)
    assert "bad.csv:2" in p.stderr and "b_type" in p.stderr
    selfl = write(tmp_path / "self.csv", "a_type,a_key,b_type,b_key,seen\nseller,s1,seller, S1 ,1\n")
    ctl("ingest", selfl, check=EXIT_DATAERR)
    hdr = write(tmp_path / "hdr.csv", "a_type,a_key,b_type,b_kex\nseller,s1,device,d\n")
    ctl("ingest", hdr, check=EXIT_DATAERR)
    assert stats(daemon.stub).entities_total == 0
    # records before the bad line's message are committed (one message per record here)
    part = write(tmp_path / "part.csv", "a_type,a_key,b_type,b_key\nseller,p1,device,pd\n"
                 "seller,p2,device,pd\nseller,p3,bogus,pd\n")
    p = ctl("ingest", "--batch", "1", part, check=EXIT_DATAERR)
    assert "part.csv:4" in p.stderr
    assert get(daemon.stub, DEVICE, "pd").degree == 2


def _dead_addr():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "127.0.0.1:%d" % port


def test_unavailable_exit_69(graphctl_bin, tmp_path):
    run(graphctl_bin, _dead_addr(), "stats", check=EXIT_UNAVAILABLE)
    lp = write(tmp_path / "links.csv", LINKS_CSV)
    run(graphctl_bin, _dead_addr(), "ingest", lp, check=EXIT_UNAVAILABLE)


def test_usage_errors(graphctl_bin, daemon):
    for args in (["get"], ["get", "planet", "x"], ["neighbors", "seller", "x", "--limit", "abc"],
                 ["bogus-command"]):
        p = run(graphctl_bin, daemon.addr, *args)
        assert p.returncode == EXIT_USAGE, (args, p.returncode, p.stderr)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sellergen_ingest_counts(ctl, daemon, sellergen_bin, tmp_path):
    out = tmp_path / "gen"
    subprocess.run([sellergen_bin, "--sellers", "1000", "--seed", "7", "--out", str(out)],
                   check=True, capture_output=True, timeout=T(60))
    links = _read_csv(out / "links.csv")
    ents = _read_csv(out / "entities.csv")
    truth = _read_csv(out / "truth.csv")
    norm = lambda t, k: (TYPE_NAMES[t.strip().lower()], k.strip().lower())  # noqa: E731
    entities = set()
    pairs = set()
    for r in links:
        a, b = norm(r["a_type"], r["a_key"]), norm(r["b_type"], r["b_key"])
        entities.update((a, b))
        pairs.add(frozenset((a, b)))
    n_labels = 0
    for r in ents:
        entities.add(norm(r["type"], r["key"]))
        n_labels += len({x.strip() for x in r["labels"].split(";") if x.strip()})
    assert len(truth) == 1000
    ctl("ingest", str(out / "links.csv"), check=EXIT_OK, timeout=T(300))
    ctl("ingest", str(out / "entities.csv"), check=EXIT_OK, timeout=T(60))
    st = stats(daemon.stub)
    assert st.entities_total == len(entities)
    assert st.links == len(pairs)
    assert st.labels == n_labels
    tc = type_counts(st)
    for t in ALL_TYPES:
        assert tc[t] == sum(1 for e in entities if e[0] == t), "type %d" % t
    assert tc[SELLER] == 1000


# ---------------------------------------------------------------------------
# alerts: following WatchAlerts
# ---------------------------------------------------------------------------

# A ring of six sellers sharing a device, a warehouse address and a payment
# account, four of them flagged, and four sellers on their own: clustering
# puts the ring in one cluster of risk (4 + 5 * 0.4) / (6 + 5) = 0.545.
RING = ["r%d" % i for i in range(1, 7)]
ALERT_LINKS = "a_type,a_key,b_type,b_key,seen\n" + "".join(
    "seller,%s,device,ring-dev,100\nseller,%s,address,ring-wh,100\n"
    "seller,%s,payment_account,ring-pay,100\n" % (r, r, r) for r in RING) + "".join(
    "seller,o%d,device,own-dev-%d,100\n" % (i, i) for i in range(1, 5))
ALERT_ENTITIES = "type,key,labels\n" + "".join("seller,%s,counterfeit\n" % r for r in RING[:4])


def worker_args():
    w = os.environ.get("GRAPHD_WORKER_BIN")
    return ["--worker", w] if w else []


class Follower:
    """A graphctl process whose stdout lines are read as they come."""

    def __init__(self, graphctl_bin, addr, *args):
        self.cmd = [graphctl_bin, "--addr", addr] + [str(a) for a in args]
        self.p = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, stdin=subprocess.DEVNULL)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout):
        """The next stdout line (None at the end), or AssertionError."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("%s: no line within %.0f s" % (" ".join(self.cmd), timeout))

    def wait(self, timeout):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s: still running after %.0f s" % (" ".join(self.cmd), timeout))
        return rc, self.p.stderr.read()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def _wait_for(pred, what, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def alert_daemon(daemon_factory, graphctl_bin, tmp_path):
    """A daemon holding the ring graph, clustered once (by graphctl):
    (daemon, the ring's cluster id, snapshot id)."""
    dm = daemon_factory(*worker_args())
    lp = write(tmp_path / "ring-links.csv", ALERT_LINKS)
    ep = write(tmp_path / "ring-entities.csv", ALERT_ENTITIES)
    run(graphctl_bin, dm.addr, "ingest", lp, ep, check=EXIT_OK)
    job = js(run(graphctl_bin, dm.addr, "cluster", "--label", "counterfeit", check=EXIT_OK,
                 timeout=T(120)))
    assert job["state"] == "SUCCEEDED", job
    r1 = get(dm.stub, SELLER, "r1")
    assert r1.cluster_id and r1.cluster_snapshot_id == job["snapshot_id"]
    return dm, r1.cluster_id, job["snapshot_id"]


def test_alerts_follow_json_count_and_interrupt(alert_daemon, graphctl_bin):
    dm, ring, snap = alert_daemon
    cl = dm.stub.GetCluster(pb.GetClusterRequest(cluster_id=ring), timeout=T()).cluster
    assert cl.size == len(RING) and cl.risk > 0.5, cl
    followers = []

    def follow(*args):
        f = Follower(graphctl_bin, dm.addr, "alerts", *args)
        followers.append(f)
        return f

    try:
        # Followed before anything happens: a line once a new seller that
        # shares the ring's device and warehouse has been placed.
        f = follow("--min-risk", "0.5")
        time.sleep(0.5)
        upsert(dm.stub, [link(SELLER, "newbie", DEVICE, "ring-dev", seen=200),
                         link(SELLER, "newbie", ADDRESS, "ring-wh", seen=200)])
        line = f.line(T(10))
        assert line is not None, f.wait(T())
        assert line.startswith("seq 1  "), line
        for want in ("newbie -> cluster %d" % ring, "risk %.3f (%d sellers)" % (cl.risk, cl.size),
                     "previous -", "device ring-dev", "address ring-wh", "labels: counterfeit"):
            assert want in line, (want, line)
        # Ctrl-C: exit 0, and where to resume on stderr.
        f.p.send_signal(signal.SIGINT)
        rc, err = f.wait(T(10))
        assert rc == EXIT_OK, (rc, err)
        assert "interrupted after 1 event; resume with --after-seq 1" in err, err

        # --json: one object per line; --count ends it.
        f = follow("--json", "--count", "1")
        line = f.line(T(10))
        assert line is not None, f.wait(T())
        ev = json.loads(line)
        assert ev["seq"] == 1 and ev["seller_key"] == "newbie", ev
        assert ev["cluster_id"] == ring and ev["snapshot_id"] == snap, ev
        assert ev["seller_id"] == get(dm.stub, SELLER, "newbie").id
        assert abs(ev["cluster_risk"] - cl.risk) < 1e-9 and ev["cluster_size"] == cl.size
        assert ev["previous_cluster_id"] == 0 and ev["gain"] > 0 and ev["tie"] > 0
        assert ev["cluster_labels"] == ["counterfeit"] and ev["labelled_members"] == 4
        assert ev["time_ms"] > 0 and "labelled" in ev["reasons"]
        members = {x["member_key"] for x in ev["evidence"]}
        assert members and members <= set(RING), ev["evidence"]
        keys = {s["entity"]["key"] for x in ev["evidence"] for s in x["shared"]}
        assert {"ring-dev", "ring-wh"} <= keys, keys
        assert f.line(T(10)) is None
        rc, err = f.wait(T(10))
        assert rc == EXIT_OK, (rc, err)

        # Resumed after seq 1, waiting for the next one: only newer events.
        f = follow("--json", "--count", "1", "--after-seq", "1")
        time.sleep(0.5)
        upsert(dm.stub, [link(SELLER, "newbie2", PAYMENT, "ring-pay", seen=300),
                         link(SELLER, "newbie2", DEVICE, "ring-dev", seen=300)])
        line = f.line(T(10))
        assert line is not None, f.wait(T())
        ev = json.loads(line)
        assert (ev["seq"], ev["seller_key"], ev["cluster_id"]) == (2, "newbie2", ring), ev
        rc, err = f.wait(T(10))
        assert rc == EXIT_OK, (rc, err)

        # A filter nothing passes, interrupted before any event (the call
        # has sent nothing yet: graphctl cancels it).
        f = follow("--min-risk", "0.99", "--label", "counterfeit")
        time.sleep(1.0)
        f.p.send_signal(signal.SIGTERM)
        rc, err = f.wait(T(10))
        assert rc == EXIT_OK and f.line(T()) is None, (rc, err)
        assert "interrupted after 0 events; resume with --after-seq 0" in err, err
    finally:
        for f in followers:
            f.kill()

    # The placement shows in get and in the cluster's members.
    out = run(graphctl_bin, dm.addr, "get", "seller", "newbie", json_out=False, check=EXIT_OK).stdout
    assert "provisional  cluster %d (risk %.3f, %d sellers) since " % (ring, cl.risk, cl.size) in out, out
    assert ", against snapshot %d" % snap in out, out
    e = js(run(graphctl_bin, dm.addr, "get", "seller", "newbie", check=EXIT_OK))
    assert e["provisional"]["cluster_id"] == ring and e["provisional"]["snapshot_id"] == snap, e
    assert e["provisional"]["previous_cluster_id"] == 0 and e["provisional"]["placed_at_ms"] > 0
    out = run(graphctl_bin, dm.addr, "get", "seller", "r1", json_out=False, check=EXIT_OK).stdout
    assert "cluster      %d (snapshot %d, risk %.3f)" % (ring, snap, cl.risk) in out, out
    assert "provisional" not in out, out
    out = run(graphctl_bin, dm.addr, "cluster", ring, json_out=False, check=EXIT_OK).stdout
    prov = out.split("provisional members", 1)[1].split("ties holding", 1)[0]
    assert "newbie  provisional since" in prov and "newbie2  provisional since" in prov, out
    c = js(run(graphctl_bin, dm.addr, "cluster", ring, check=EXIT_OK))
    assert sorted(m["key"] for m in c["provisional_members"]) == ["newbie", "newbie2"], c
    assert all(m["provisional"]["cluster_id"] == ring for m in c["provisional_members"])
    assert "newbie" not in {m["key"] for m in c["members"]}


def test_alerts_errors(daemon_factory, graphctl_bin):
    dm = daemon_factory(*worker_args())
    # The range of min_risk is the server's to check: its status, exit 1.
    p = run(graphctl_bin, dm.addr, "alerts", "--min-risk", "2", json_out=False, check=EXIT_RPC)
    assert "graphctl: INVALID_ARGUMENT: " in p.stderr and "min_risk" in p.stderr, p.stderr
    assert p.stdout == "" and "resume" not in p.stderr, p.stderr
    p = run(graphctl_bin, dm.addr, "alerts", "--cluster", "99", json_out=False, check=EXIT_RPC)
    assert "NOT_FOUND" in p.stderr and "cluster_id" in p.stderr, p.stderr
    p = run(graphctl_bin, dm.addr, "alerts", "--after-seq", "5", json_out=False, check=EXIT_RPC)
    assert "OUT_OF_RANGE" in p.stderr and "after_seq" in p.stderr, p.stderr
    for args in (["--after-seq", "3", "--from-now"], ["--min-risk", "x"], ["--count", "0"],
                 ["--label", "a", "--label", "b"], ["extra"]):
        p = run(graphctl_bin, dm.addr, "alerts", *args, json_out=False)
        assert p.returncode == EXIT_USAGE, (args, p.returncode, p.stderr)
    # Nobody there: exit 69, and where to resume.
    p = run(graphctl_bin, _dead_addr(), "alerts", "--after-seq", "7", json_out=False,
            check=EXIT_UNAVAILABLE)
    assert "UNAVAILABLE" in p.stderr and "resume with --after-seq 7" in p.stderr, p.stderr
    p = subprocess.run([graphctl_bin, "alerts", "--help"], capture_output=True, text=True,
                       timeout=T())
    assert p.returncode == 0 and "--after-seq" in p.stdout and "--from-now" in p.stdout
