"""The audit trail: every call recorded (refused ones too) with principal,
role, peer, case id, method, target and status; ListAudit filters; the hash
chain verifies, and a record altered on disk (mdb_dump / mdb_load) is
found; writes carry their record in the same commit; a trail that cannot
be written fails calls closed; graphctl audit."""

import os
import shutil
import signal
import subprocess

import grpc
import pytest

from bbutil import DEVICE, SELLER, T, expect_status, link, pb, ref

TOK = {"reader": "rrrrrrrrrrrrrrrr-audit-reader", "writer": "wwwwwwwwwwwwwwww-audit-writer",
       "admin": "aaaaaaaaaaaaaaaa-audit-admin"}


def md(role, case=None):
    m = [("authorization", "Bearer " + TOK[role])]
    if case:
        m.append(("x-case-id", case))
    return m


@pytest.fixture
def aud(daemon_factory, tmp_path):
    p = tmp_path / "tokens"
    p.write_text("".join("%s %s %s-1\n" % (t, r, r) for r, t in TOK.items()))
    # Reads wait for their records here, so a listing right after a call
    # sees it (the default, async, is tested on its own below).
    return daemon_factory("--tokens", str(p), "--audit-reads", "sync")


def records(stub, **kw):
    out, tok = [], ""
    while True:
        rep = stub.ListAudit(pb.ListAuditRequest(page_token=tok, limit=50, **kw),
                             metadata=md("admin"), timeout=T())
        out.extend(rep.records)
        tok = rep.next_page_token
        if not tok:
            return out


def test_every_call_recorded(aud):
    s = aud.stub
    s.Upsert(pb.UpsertRequest(links=[link(SELLER, "s1", DEVICE, "d1")]), metadata=md("writer"),
             timeout=T())
    s.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, "s1")), metadata=md("reader", "case-42"),
                timeout=T())
    expect_status(grpc.StatusCode.NOT_FOUND, s.GetEntity,
                  pb.GetEntityRequest(ref=ref(SELLER, "nope")), metadata=md("reader", "case-42"),
                  timeout=T())
    expect_status(grpc.StatusCode.PERMISSION_DENIED, s.SetLabels,
                  pb.SetLabelsRequest(ref=ref(SELLER, "s1"), add=["x"]),
                  metadata=md("reader", "case-42"), timeout=T())
    expect_status(grpc.StatusCode.UNAUTHENTICATED, s.Stats, pb.StatsRequest(), timeout=T())
    recs = records(s)
    by = [(r.principal, r.method.rsplit("/", 1)[-1], r.status) for r in recs]
    assert ("writer-1", "Upsert", 0) in by
    assert ("reader-1", "GetEntity", 0) in by
    assert ("reader-1", "GetEntity", grpc.StatusCode.NOT_FOUND.value[0]) in by
    assert ("reader-1", "SetLabels", grpc.StatusCode.PERMISSION_DENIED.value[0]) in by
    assert ("", "Stats", grpc.StatusCode.UNAUTHENTICATED.value[0]) in by
    ge = [r for r in recs if r.method.endswith("GetEntity")][0]
    assert ge.case_id == "case-42" and ge.role == "reader" and ge.peer.startswith("ipv")
    assert "ref=type1:s1" in ge.target and ge.time > 0 and len(ge.hash) == 32
    up = [r for r in recs if r.method.endswith("Upsert")][0]
    assert "links=1 items" in up.target
    seqs = [r.seq for r in recs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for a, b in zip(recs, recs[1:]):
        if b.seq == a.seq + 1:
            assert b.prev_hash == a.hash
    # Filters.
    assert {r.case_id for r in records(s, case_id="case-42")} == {"case-42"}
    assert {r.principal for r in records(s, principal="writer-1")} == {"writer-1"}
    m = records(s, method="/graphd.v1.SellerGraph/SetLabels")
    assert len(m) == 1 and m[0].status == grpc.StatusCode.PERMISSION_DENIED.value[0]
    t0 = ge.time
    assert all(r.time >= t0 for r in records(s, since=t0))
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, s.ListAudit,
                  pb.ListAuditRequest(since=10, until=5), metadata=md("admin"), timeout=T(),
                  fields=["since"])
    # Admin only.
    expect_status(grpc.StatusCode.PERMISSION_DENIED, s.ListAudit, pb.ListAuditRequest(),
                  metadata=md("reader"), timeout=T())
    v = s.VerifyAudit(pb.VerifyAuditRequest(), metadata=md("admin"), timeout=T())
    assert v.ok and v.records >= len(recs) and v.first_bad_seq == 0


def test_tampering_detected(aud):
    if not shutil.which("mdb_dump") or not shutil.which("mdb_load"):
        pytest.skip("lmdb-utils not installed")
    s = aud.stub
    for i in range(5):
        s.Stats(pb.StatsRequest(), metadata=md("reader", "c%d" % i), timeout=T())
    assert s.VerifyAudit(pb.VerifyAuditRequest(), metadata=md("admin"), timeout=T()).ok
    assert aud.terminate() == 0
    d = aud.data_dir
    dump = subprocess.run(["mdb_dump", "-s", "audit", d], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    # Body lines come in key/value pairs after HEADER=END; change record 3.
    start = dump.index("HEADER=END") + 1
    key3 = " " + "%016x" % 3
    i = dump.index(key3, start)
    val = dump[i + 1]
    flip = val[:-3] + ("0" if val[-3] != "0" else "1") + val[-2:]  # a byte of its hash
    dump[i + 1] = flip
    subprocess.run(["mdb_load", "-s", "audit", d], input="\n".join(dump) + "\n", text=True,
                   check=True, capture_output=True)
    aud.start()
    v = aud.stub.VerifyAudit(pb.VerifyAuditRequest(), metadata=md("admin"), timeout=T())
    assert not v.ok and v.first_bad_seq == 3 and v.records == 2
    assert "audit record 3" in v.problem


def test_fail_closed_when_the_trail_cannot_be_written(daemon_factory):
    """A map that cannot grow: once a record cannot be written, the call
    that needed it and every call after it get UNAVAILABLE."""
    d = daemon_factory("--map-size-mb", "1", "--map-size-max-mb", "1")
    s = d.stub
    codes = []
    # Big batches until writes no longer fit, then single links until not
    # even the record of a refused write fits.
    for i in range(20000):
        n = 50 if not codes else 1
        links = [link(SELLER, "s%d-%d" % (i, k), DEVICE, "d%d-%d" % (i, k)) for k in range(n)]
        try:
            s.Upsert(pb.UpsertRequest(links=links), timeout=T())
        except grpc.RpcError as e:
            codes.append(e.code())
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                assert "audit trail cannot be written" in e.details()
                break
    assert codes and codes[0] == grpc.StatusCode.RESOURCE_EXHAUSTED, codes[:3]
    assert codes[-1] == grpc.StatusCode.UNAVAILABLE, "the trail never filled"
    for _ in range(3):
        expect_status(grpc.StatusCode.UNAVAILABLE, s.Stats, pb.StatsRequest(), timeout=T(),
                      fields=["audit trail cannot be written"])
    assert d.running()


def test_graphctl_audit(aud, graphctl_bin, tmp_path):
    env = dict(os.environ)
    env["GRAPHD_TOKEN"] = TOK["admin"]
    base = [graphctl_bin, "--addr", aud.addr]
    r = subprocess.run(base + ["--case-id", "case-7", "stats"], capture_output=True, text=True,
                       env=env, timeout=T(30))
    assert r.returncode == 0, r.stderr
    r = subprocess.run(base + ["audit", "--case", "case-7"], capture_output=True, text=True,
                       env=env, timeout=T(30))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "SEQ", "PRINCIPAL", "ROLE"]
    assert len(lines) == 2 and "Stats" in lines[1] and "admin-1" in lines[1] and "OK" in lines[1]
    r = subprocess.run(base + ["--json", "audit", "--method", "Stats"], capture_output=True,
                       text=True, env=env, timeout=T(30))
    assert r.returncode == 0 and '"case_id":"case-7"' in r.stdout
    r = subprocess.run(base + ["audit", "--verify"], capture_output=True, text=True, env=env,
                       timeout=T(30))
    assert r.returncode == 0 and "audit chain verified" in r.stdout


def test_async_reads_recorded_shortly(daemon):
    """The default: a successful read replies without waiting for its record,
    which commits with the next group; health is not recorded."""
    import time
    from grpc.health.v1 import health_pb2
    s = daemon.stub
    s.Upsert(pb.UpsertRequest(links=[link(SELLER, "s1", DEVICE, "d1")]), timeout=T())
    for _ in range(3):
        daemon.health.Check(health_pb2.HealthCheckRequest(), timeout=T())
    s.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, "s1")),
                metadata=[("x-case-id", "async-1")], timeout=T())
    deadline = time.monotonic() + T(5)
    while True:
        recs = list(s.ListAudit(pb.ListAuditRequest(case_id="async-1"), timeout=T()).records)
        if recs:
            break
        assert time.monotonic() < deadline, "the read's record never appeared"
        time.sleep(0.02)
    assert recs[0].method.endswith("GetEntity") and recs[0].principal == "local"
    allr = s.ListAudit(pb.ListAuditRequest(limit=1000), timeout=T()).records
    assert not [r for r in allr if "Health" in r.method], "health checks were recorded"
    assert s.VerifyAudit(pb.VerifyAuditRequest(), timeout=T()).ok
