"""Prometheus metrics (--metrics-listen HOST:PORT): GET /metrics in the
text format 0.0.4, parsed with prometheus_client's own parser; calls by
method and status code, latency histograms, calls in flight, group
commits, LMDB gauges, refusals, clustering jobs; 404 / 405; bad flag
values refused at start."""

import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bbutil import (DEVICE, SELLER, SERVICE, T, ent, expect_status, get, link, pb, raw_unary,
                    ref, stats, upsert)
from grpc.health.v1 import health_pb2

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port, path="/metrics", method="GET"):
    """(status, content type, body) of an HTTP request to the metrics port."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=T()) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode("utf-8")


class Scrape:
    """One parsed scrape: families by name, and sample values."""

    def __init__(self, port):
        status, ctype, body = fetch(port)
        assert status == 200, (status, body)
        assert ctype == CONTENT_TYPE, ctype
        self.text = body
        self.families = {f.name: f for f in text_string_to_metric_families(body)}
        self.values = {}
        for f in self.families.values():
            for s in f.samples:
                self.values[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def get(self, name, **labels):
        return self.values.get((name, tuple(sorted(labels.items()))), 0.0)

    def calls(self):
        """{(method, code): count} of graphd_calls_total."""
        out = {}
        for (name, labels), v in self.values.items():
            if name == "graphd_calls_total":
                d = dict(labels)
                out[(d["method"], d["code"])] = v
        return out

    def histograms(self, family):
        """{label tuple without le: (sorted [(le, count)], sum, count)}."""
        f = self.families[family]
        assert f.type == "histogram", f.type
        out = {}
        for s in f.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            b, sm, cnt = out.setdefault(key, ([], [None], [None]))
            if s.name.endswith("_bucket"):
                b.append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_sum"):
                sm[0] = s.value
            elif s.name.endswith("_count"):
                cnt[0] = s.value
        return {k: (sorted(b), sm[0], cnt[0]) for k, (b, sm, cnt) in out.items()}


def check_histograms(sc, family):
    """Buckets cumulative (monotone in le), +Inf == _count, _sum >= 0."""
    hs = sc.histograms(family)
    for key, (buckets, total, count) in hs.items():
        assert buckets and buckets[-1][0] == float("inf"), (family, key, buckets)
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), (family, key, buckets)
        assert buckets[-1][1] == count, (family, key, buckets, count)
        assert total is not None and total >= 0, (family, key, total)
    return hs


def wait_for(pred, what, timeout=None):
    deadline = time.monotonic() + (timeout or T(10))
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def test_metrics_scrape(daemon_factory):
    port = free_port()
    d = daemon_factory("--metrics-listen", "127.0.0.1:%d" % port, "--result-cap", "5",
                       "--max-batch-items", "10", "--map-size-mb", "64")
    s = d.stub
    s0 = Scrape(port)
    assert s0.get("graphd_build_info", version=s0.families["graphd_build_info"]
                  .samples[0].labels["version"]) == 1
    assert 0 < s0.get("graphd_start_time_seconds") <= time.time()
    assert s0.get("graphd_calls_in_flight") == 0
    assert set(s0.families) >= {"graphd_calls", "graphd_call_duration_seconds",
                                "graphd_refused", "graphd_writer_batch_ops",
                                "graphd_writer_commit_duration_seconds", "graphd_lmdb_map_bytes",
                                "graphd_jobs", "graphd_job_stage_duration_seconds"}

    # A held Ingest stream is in flight until it ends.
    release = threading.Event()

    def held():
        release.wait(T(30))
        yield pb.UpsertRequest(links=[link(SELLER, "m-s9", DEVICE, "m-d9")])

    fut = s.Ingest.future(held(), timeout=T(30))
    try:
        wait_for(lambda: Scrape(port).get("graphd_calls_in_flight") >= 1, "an Ingest in flight")
    finally:
        release.set()
    fut.result()

    # OK and failing calls, each counted under its method and code.
    upsert(s, [link(SELLER, "m-s%d" % i, DEVICE, "m-d1") for i in range(4)])
    for i in range(3):
        get(s, SELLER, "m-s%d" % i)
    for k in ("nobody-1", "nobody-2"):
        expect_status(grpc.StatusCode.NOT_FOUND, get, s, SELLER, k)
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, get, s, SELLER, "")
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.Neighbors,
                  pb.NeighborsRequest(ref=ref(SELLER, "m-s1"), limit=6), timeout=T(),
                  fields=["--result-cap"])
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, s.Upsert, pb.UpsertRequest(
        links=[link(SELLER, "m-x%d" % i, DEVICE, "m-d2") for i in range(11)]), timeout=T(),
        fields=["--max-batch-items"])
    d.health.Check(health_pb2.HealthCheckRequest(), timeout=T())
    with pytest.raises(grpc.RpcError) as ei:
        raw_unary(d, "/graphd.v1.SellerGraph/NoSuchMethod", b"")
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED

    want = {
        (SERVICE + "Ingest", "OK"): 1,
        (SERVICE + "Upsert", "OK"): 1,
        (SERVICE + "Upsert", "RESOURCE_EXHAUSTED"): 1,
        (SERVICE + "GetEntity", "OK"): 3,
        (SERVICE + "GetEntity", "NOT_FOUND"): 2,
        (SERVICE + "GetEntity", "INVALID_ARGUMENT"): 1,
        (SERVICE + "Neighbors", "INVALID_ARGUMENT"): 1,
        ("/grpc.health.v1.Health/Check", "OK"): 1,
        ("unknown", "UNIMPLEMENTED"): 1,
    }
    # Read replies go out before their audit records commit: wait until the
    # writer's figures settle (every op committed, histograms in step).
    def settled():
        sc = Scrape(port)
        if (sc.get("graphd_writer_queued_ops") == 0 and
                sc.get("graphd_writer_batch_ops_count") == sc.get("graphd_writer_commits_total") and
                sc.get("graphd_writer_batch_ops_sum") == sc.get("graphd_writer_ops_total")):
            return sc
        return None
    s1 = wait_for(settled, "the writer's metrics to settle")
    c0, c1 = s0.calls(), s1.calls()
    got = {k: v - c0.get(k, 0) for k, v in c1.items() if v - c0.get(k, 0)}
    assert got == want, got
    assert s1.get("graphd_calls_in_flight") == 0

    # Latency histograms: consistent, one observation per call.
    hs = check_histograms(s1, "graphd_call_duration_seconds")
    per_method = {}
    for (m, _), v in c1.items():
        per_method[m] = per_method.get(m, 0) + v
    for m, n in per_method.items():
        assert hs[(("method", m),)][2] == n, (m, n, hs[(("method", m),)])
    assert s1.get("graphd_call_duration_seconds_sum", method=SERVICE + "GetEntity") > 0

    # Group commits: the Upsert, the Ingest message and the audit records.
    check_histograms(s1, "graphd_writer_batch_ops")
    check_histograms(s1, "graphd_writer_commit_duration_seconds")
    assert s1.get("graphd_writer_commits_total") >= 2
    assert s1.get("graphd_writer_ops_total") >= 2 + len(want)
    assert (s1.get("graphd_writer_commit_duration_seconds_count") ==
            s1.get("graphd_writer_batch_ops_count"))
    assert s1.get("graphd_writer_commit_duration_seconds_sum") > 0

    # LMDB gauges.
    assert s1.get("graphd_lmdb_up") == 1
    assert s1.get("graphd_lmdb_map_bytes") == 64 << 20
    assert 0 < s1.get("graphd_lmdb_file_bytes") <= s1.get("graphd_lmdb_map_bytes")
    assert 1 <= s1.get("graphd_lmdb_readers_used") <= s1.get("graphd_lmdb_readers_max")
    assert s1.get("graphd_lmdb_last_txn_id") >= s0.get("graphd_lmdb_last_txn_id") + 2
    assert s1.get("graphd_entities", type="seller") == 5
    assert s1.get("graphd_entities", type="device") == 2
    assert s1.get("graphd_links") == 5

    # Refusals, from the limit counters Stats reports.
    for reason in ("result_cap", "batch_items"):
        assert (s1.get("graphd_refused_total", reason=reason) -
                s0.get("graphd_refused_total", reason=reason)) == 1, reason
    refused = {r.limit: r.count for r in s.Stats(pb.StatsRequest(), timeout=T()).refused}
    s2 = Scrape(port)
    for k, v in refused.items():
        assert s2.get("graphd_refused_total", reason=k) == v, k

    # Other paths and methods.
    status, _, body = fetch(port, "/other")
    assert status == 404, (status, body)
    status, _, _ = fetch(port, "/metrics", method="POST")
    assert status == 405


def test_metrics_port0_and_jobs(daemon_factory):
    """Port 0: the bound port is logged. A clustering job shows in the jobs
    gauge and the stage durations."""
    w = os.environ.get("GRAPHD_WORKER_BIN")
    d = daemon_factory("--metrics-listen", "127.0.0.1:0", *(["--worker", w] if w else []))
    m = wait_for(lambda: re.search(r"metrics on 127\.0\.0\.1:(\d+)", d.log_tail(200)),
                 "the 'metrics on' log line")
    port = int(m.group(1))
    assert port > 0
    upsert(d.stub, [link(SELLER, "j-s%d" % i, DEVICE, "j-d%d" % (i // 3)) for i in range(9)])
    job = d.stub.StartClustering(pb.StartClusteringRequest(spec=pb.ClusteringSpec()),
                                 timeout=T())
    final = list(d.stub.WatchJob(pb.JobRequest(job_id=job.id), timeout=T(120)))[-1]
    assert final.state == pb.JOB_STATE_SUCCEEDED, final
    sc = wait_for(lambda: (lambda x: x if x.get("graphd_jobs", state="succeeded") == 1 else None)(
        Scrape(port)), "the job in the jobs gauge")
    assert sc.get("graphd_jobs", state="queued") == 0
    assert sc.get("graphd_jobs", state="running") == 0
    hs = check_histograms(sc, "graphd_job_stage_duration_seconds")
    stages = {dict(k)["stage"] for k, (_, _, n) in hs.items() if n >= 1}
    assert "start" in stages and len(stages) >= 3, stages
    assert sc.get("graphd_calls_total", method=SERVICE + "WatchJob", code="OK") == 1


def test_map_grows_ahead_of_groups(daemon_factory):
    """The writer doubles the map before a group while less than half of it
    is free, so small writes never fill it: no group is applied twice. One
    upsert larger than the free half still fills it, and is applied again
    after the map grew (group_retries)."""
    d = daemon_factory("--metrics-listen", "127.0.0.1:0", "--map-size-mb", "1")
    m = wait_for(lambda: re.search(r"metrics on 127\.0\.0\.1:(\d+)", d.log_tail(200)),
                 "the 'metrics on' log line")
    port = int(m.group(1))
    s = d.stub
    # About 2 MB of attributes into an empty 1 MiB map: one group.
    big = [ent(SELLER, "big-%d" % i, attrs=[("blob", ("%d-" % i) * 500)]) for i in range(1000)]
    upsert(s, entities=big, timeout=T(60))
    sc = Scrape(port)
    assert sc.get("graphd_writer_group_retries_total") >= 1, sc.text
    retries = sc.get("graphd_writer_group_retries_total")
    grows = sc.get("graphd_writer_map_grows_total")
    # Then about 5 MB in 30 small groups: the map grows ahead of them.
    for b in range(30):
        upsert(s, entities=[ent(SELLER, "m-%d-%d" % (b, i), attrs=[("blob", ("%d-%d-" % (b, i)) * 200)])
                            for i in range(100)], timeout=T(60))
    sc = Scrape(port)
    assert sc.get("graphd_writer_map_grows_total") > grows, sc.text
    assert sc.get("graphd_writer_group_retries_total") == retries, sc.text
    st = stats(s)
    assert st.entities_total == 1000 + 3000


def test_write_budget_metrics(daemon_factory):
    """The write budget's gauges: its size (the flag) and the decoded bytes
    in flight, above 0 during a load and back to 0 after it; and the trims
    that hand the freed memory back to the system once 64 MiB of writes are
    done: an Ingest stream of about 120 MiB decoded is followed by one at
    least. (How many depends on how the frees fall in time: a trim takes
    all that was given back since the last.)"""
    budget = 1 << 30
    d = daemon_factory("--metrics-listen", "127.0.0.1:0", "--write-budget-bytes", str(budget))
    m = wait_for(lambda: re.search(r"metrics on 127\.0\.0\.1:(\d+)", d.log_tail(200)),
                 "the 'metrics on' log line")
    port = int(m.group(1))
    sc = Scrape(port)
    assert sc.get("graphd_write_budget_bytes") == budget, sc.text
    assert sc.get("graphd_write_budget_in_use_bytes") == 0, sc.text
    assert sc.get("graphd_memory_trims_total") == 0, sc.text
    # One message of 10,000 links sent 40 times: the same links observed
    # again, cheap to apply and as large to decode.
    one = pb.UpsertRequest(links=[link(SELLER, "s-%d" % i, DEVICE, "d-%d" % (i // 2))
                                  for i in range(10000)])
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], Scrape(port).get("graphd_write_budget_in_use_bytes"))
            except Exception:
                pass
            time.sleep(0.05)
    w = threading.Thread(target=watch)
    w.start()
    try:
        r = d.stub.Ingest(iter([one] * 40), timeout=T(120))
    finally:
        done.set()
        w.join()
    assert r.messages == 40
    assert r.totals.links_created == 10000 and r.totals.links_updated == 390000
    assert 0 < peak[0] <= budget, peak
    sc = wait_for(lambda: (lambda x: x if x.get("graphd_memory_trims_total") >= 1 else None)(
        Scrape(port)), "a trim")
    assert sc.get("graphd_write_budget_in_use_bytes") == 0, sc.text
    assert sc.families["graphd_memory_trims"].type == "counter", sc.text


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.1:", "127.0.0.1:70000", ":9464",
                                   "127.0.0.1:-1", "::1:9464", "127.0.0.1:9x"])
def test_metrics_listen_bad_value(tmp_path, value):
    """A malformed --metrics-listen is a usage error (exit 2) naming the flag."""
    r = subprocess.run([os.environ["GRAPHD_BIN"], "--data", str(tmp_path / "d"),
                        "--listen", "127.0.0.1:0", "--metrics-listen", value],
                       capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--metrics-listen" in r.stderr and value in r.stderr, r.stderr
    assert r.stdout == ""


def test_metrics_listen_cannot_bind(tmp_path):
    """A port in use: exit 1 with the reason, before serving (and, under
    valgrind, without leaks)."""
    wrapper = os.environ.get("GRAPHD_WRAPPER", "").split()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        value = "127.0.0.1:%d" % busy.getsockname()[1]
        r = subprocess.run(wrapper + [os.environ["GRAPHD_BIN"], "--data", str(tmp_path / "d"),
                                      "--listen", "127.0.0.1:0", "--metrics-listen", value],
                           capture_output=True, text=True, timeout=T(60))
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "--metrics-listen " + value + ": cannot listen" in r.stderr, r.stderr[-2000:]
    assert "listening on" not in r.stdout
