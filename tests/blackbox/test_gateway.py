"""The HTTP/JSON gateway (graphd --http-listen): every graphd.v1 rpc as
POST /v1/<Method> with proto3 JSON, driven here with Python's own
http.client (an independent client) and compared with gRPC.

- every rpc answers over HTTP what it answers over gRPC for the same
  request: two daemons take the same script of calls, one over gRPC and
  one over HTTP, and each reply (or status) must be equal;
- errors: the HTTP status of the gRPC status, with the code and message in
  the body and in X-Grpc-Status;
- bad JSON, an over-size body, an unknown field, a wrong Content-Type, a
  missing or unknown token and a role too low are each refused precisely;
- the audit trail records HTTP calls with their case id, principal and
  status, as it does gRPC calls;
- X-Deadline-Ms ends a call at its deadline; a stream that fails after its
  first message ends with an {"error": ...} line;
- TLS: with --tls-cert the gateway speaks HTTPS only.
"""

import http.client
import json
import os
import shutil
import ssl
import subprocess

import grpc
import pytest
from google.protobuf import json_format

from bbutil import T, rpc_timeout
from graphd.v1 import graphd_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["SellerGraph"]
TOKENS = {
    "reader": "rrrrrrrrrrrrrrrr-reader-token",
    "writer": "wwwwwwwwwwwwwwww-writer-token",
    "admin": "aaaaaaaaaaaaaaaa-admin-token",
}


def call(port, method, body, headers=None, raw=None, conn=None, timeout=None):
    """POST /v1/method; returns (http status, headers, body bytes)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout or rpc_timeout(30))
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = raw if raw is not None else json.dumps(body).encode()
    try:
        c.request("POST", "/v1/" + method, body=data, headers=h)
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        if conn is None:
            c.close()


def http_reply(port, method, req, headers=None):
    """One rpc over HTTP: ("ok", [messages]) or ("error", code, message)."""
    m = SERVICE.methods_by_name[method]
    if m.client_streaming:
        raw = b"".join(json.dumps(r).encode() + b"\n" for r in req)
        st, hd, body = call(port, method, None, raw=raw,
                            headers=dict({"Content-Type": "application/x-ndjson"}, **(headers or {})))
    else:
        st, hd, body = call(port, method, req, headers=headers)
    if st != 200:
        e = json.loads(body)
        assert int(hd["x-grpc-status"]) == e["code"]
        return ("error", e["code"], e["message"])
    assert hd["x-grpc-status"] == "0"
    if m.server_streaming:
        assert hd["content-type"].startswith("application/x-ndjson")
        out = []
        for line in body.decode().splitlines():
            d = json.loads(line)
            if "error" in d and len(d) == 1:
                return ("error", d["error"]["code"], d["error"]["message"])
            out.append(json_format.ParseDict(d, m.output_type._concrete_class()))
        return ("ok", out)
    assert hd["content-type"].startswith("application/json")
    return ("ok", [json_format.Parse(body, m.output_type._concrete_class())])


def grpc_reply(dm, method, req):
    m = SERVICE.methods_by_name[method]
    fn = getattr(dm.stub, method)
    parse = lambda d: json_format.ParseDict(d, m.input_type._concrete_class())
    try:
        if m.client_streaming:
            return ("ok", [fn(iter([parse(r) for r in req]), timeout=T())])
        if m.server_streaming:
            return ("ok", list(fn(parse(req), timeout=T())))
        return ("ok", [fn(parse(req), timeout=T())])
    except grpc.RpcError as e:
        return ("error", e.code().value[0], e.details())


# Fields that differ between two daemons doing the same thing: wall-clock
# times, the peer, the audit chain's hashes (over the times), file paths,
# sizes and counters of the store itself.
VOLATILE = {"committed_at", "created_at", "started_at", "ended_at", "time", "peer", "hash",
            "prev_hash", "lmdb_size_bytes", "readers_active", "readers_used", "refused",
            "commits", "committed_requests", "peak_rss_bytes", "timings", "bytes",
            "progress", "stage", "case_id", "created", "updated", "saved_at"}


def scrub(msg):
    for f, v in list(msg.ListFields()):
        if f.name in VOLATILE:
            msg.ClearField(f.name)
        elif f.type == f.TYPE_MESSAGE:
            for x in (v if f.label == f.LABEL_REPEATED else [v]):
                scrub(x)
    return msg


def same(a, b):
    if a[0] != b[0]:
        return False
    if a[0] == "error":
        return a[1:] == b[1:]
    return len(a[1]) == len(b[1]) and all(scrub(x) == scrub(y) for x, y in zip(a[1], b[1]))


S = "ENTITY_TYPE_SELLER"
A = "ENTITY_TYPE_ADDRESS"
P = "ENTITY_TYPE_PAYMENT_ACCOUNT"
D = "ENTITY_TYPE_DEVICE"


def seller(k):
    return {"type": S, "key": k}


def lnk(at, ak, bt, bk, seen):
    return {"a": {"type": at, "key": ak}, "b": {"type": bt, "key": bk}, "seen": str(seen)}


def ring_upsert():
    """Two rings of four sellers on a shared warehouse and card each, a
    crowd on one parcel locker, and a stranger."""
    links, ents = [], []
    t = 1700000000
    for r in range(2):
        for i in range(4):
            s = "r%d-s%d" % (r, i)
            ents.append({"type": S, "key": s, "labels": ["counterfeit"] if i == 0 else []})
            links.append(lnk(S, s, A, "warehouse-%d" % r, t + i))
            links.append(lnk(S, s, P, "card-%d" % r, t + 10 + i))
            links.append(lnk(S, s, D, "dev-%d-%d" % (r, i % 2), t + 20 + i))
    for i in range(30):
        links.append(lnk(S, "crowd-%d" % i, A, "locker", t + 100 + i))
    ents.append({"type": S, "key": "stranger",
                 "attributes": [{"name": "country", "value": "NL"}]})
    return {"entities": ents, "links": links}


def script():
    """(method, request) in order; the requests are JSON, read by the gRPC
    side through json_format (so both sides get the very same message)."""
    t = 1700000000
    win = {"since": str(t), "until": str(t + 1000)}
    return [
        # A first load into the empty graph, then (below) one refused.
        ("BulkLoad", [{"links": [lnk(S, "bulk-%d" % i, A, "bulk-dock", t + i)]} for i in range(3)]),
        ("Upsert", ring_upsert()),
        ("Ingest", [{"links": [lnk(S, "late-%d" % i, A, "warehouse-1", t + 50 + i)]}
                    for i in range(3)]),
        ("BulkLoad", [{"links": [lnk(S, "bulk-late", A, "bulk-dock", t + 9)]}]),
        ("GetEntity", {"ref": seller("r0-s0")}),
        ("GetEntity", {"ref": seller("nobody")}),
        ("GetEntity", {"ref": {"id": "3"}}),
        ("Neighbors", {"ref": seller("r0-s1"), "types": [A, P], "window": win, "limit": 2}),
        ("SetLabels", {"ref": seller("r1-s2"), "add": ["review", "counterfeit"]}),
        ("SetLabels", {"ref": seller("r1-s2"), "remove": ["review"]}),
        ("Stats", {}),
        ("LinkedSellers", {"seller": seller("r0-s0"), "maxHops": 2}),
        ("LinkedSellers", {"seller": seller("crowd-0")}),
        ("LinkedSellers", {"seller": {"type": A, "key": "locker"}}),
        ("FindPaths", {"from": seller("r0-s0"), "to": seller("r0-s3"), "k": 3}),
        ("RankSuspects", {"seedLabels": ["counterfeit"], "limit": 5}),
        ("GetEntities", {"ids": ["1", "2", "999"], "attributes": True}),
        ("StartClustering", {"spec": {"seed": "7"}}),
        ("WatchJob", {"jobId": "1"}),
        ("GetJob", {"jobId": "1"}),
        ("CancelJob", {"jobId": "1"}),
        ("ListSnapshots", {}),
        ("GetSnapshot", {"snapshotId": "1"}),
        ("ListClusters", {"snapshotId": "1"}),
        ("GetCluster", {"snapshotId": "1", "clusterId": "1", "links": True}),
        ("StreamAssignments", {"snapshotId": "1", "keys": True}),
        ("DeleteEntity", {"ref": seller("r1-s3")}),
        ("StartClustering", {"spec": {"seed": "7"}}),
        ("WatchJob", {"jobId": "2"}),
        ("DiffSnapshots", {"fromSnapshotId": "1", "toSnapshotId": "2", "keys": True}),
        ("DeleteSnapshot", {"snapshotId": "1"}),
        ("GetSnapshot", {"snapshotId": "1"}),
        ("ExportTies", {"spec": {"minTieWeight": 0.1}}),
        # ids 1 and 3 are the first BulkLoad's sellers, 2 its address
        ("ImportSnapshot", [{"header": {"rows": "2", "engine": "gw"}, "sellerIds": ["1", "3"],
                             "clusters": ["5", "5"]}]),
        ("ImportSnapshot", [{"header": {"rows": "2"}, "sellerIds": ["1", "2"],
                             "clusters": ["5", "5"]}]),
        ("Backup", {"path": "relative/path"}),
        ("Backup", {"path": "@BACKUP@"}),
        ("ListAudit", {"method": "/graphd.v1.SellerGraph/SetLabels"}),
        ("VerifyAudit", {}),
        ("WhoAmI", {}),
        # Cases: @CASE@ is each daemon's own id from the CreateCase before
        # (ids are random).
        ("CreateCase", {"title": "ring r0", "brand": "acme", "note": "from the gateway"}),
        ("UpdateCase", {"caseId": "@CASE@", "addSellers": [seller("r0-s0")],
                        "saveLinkedSellers": {"seller": seller("r0-s0")}, "saveComment": "c"}),
        ("GetCase", {"caseId": "@CASE@"}),
        ("ListCases", {"brand": "acme"}),
        ("UpdateCase", {"caseId": "@CASE@", "status": "CASE_STATUS_CLOSED"}),
        ("UpdateCase", {"caseId": "@CASE@", "status": "CASE_STATUS_REFERRED"}),
        ("GetCase", {"caseId": "12345"}),
        # A pack differs from daemon to daemon (times, keys): its refusal
        # does not (test_pack.py checks packs).
        ("ExportCase", {"caseId": "12345"}),
        # An alert stream runs until its deadline; its refusals end at once
        # (the events themselves: test_fresh.py compares both transports).
        ("WatchAlerts", {"minRisk": 2}),
        ("WatchAlerts", {"clusterId": "99999"}),
        ("WatchAlerts", {"afterSeq": "999999"}),
        ("Upsert", {"links": [{"a": seller("x"), "b": seller("x")}]}),
    ]


def test_every_rpc_replies_as_over_grpc(daemon_factory, tmp_path):
    steps = script()
    covered = {m for m, _ in steps}
    assert covered == set(SERVICE.methods_by_name), \
        "rpcs without a gateway check: %s" % sorted(set(SERVICE.methods_by_name) - covered)
    worker = os.environ.get("GRAPHD_WORKER_BIN")
    extra = ["--worker", worker] if worker else []
    g = daemon_factory("--http-listen", "127.0.0.1:0", *extra)
    h = daemon_factory("--http-listen", "127.0.0.1:0", *extra)
    assert h.http_port and g.http_port
    cases = {}  # side -> its CreateCase's id
    for i, (method, req) in enumerate(steps):
        if "@CASE@" in json.dumps(req):
            rg = grpc_reply(g, method, json.loads(json.dumps(req).replace("@CASE@", cases["g"])))
            rh = http_reply(h.http_port, method,
                            json.loads(json.dumps(req).replace("@CASE@", cases["h"])))
        elif req == {"path": "@BACKUP@"}:
            os.makedirs(tmp_path / "bk-grpc")
            os.makedirs(tmp_path / "bk-http")
            rg = grpc_reply(g, method, {"path": str(tmp_path / "bk-grpc")})
            rh = http_reply(h.http_port, method, {"path": str(tmp_path / "bk-http")})
        else:
            rg = grpc_reply(g, method, req)
            rh = http_reply(h.http_port, method, req)
        if method == "CreateCase":
            cases = {"g": str(rg[1][0].case_id), "h": str(rh[1][0].case_id)}
        if method == "WatchJob" and rg[0] == rh[0] == "ok":
            # how many progress messages a watch sees depends on timing; the
            # last (the job's end) does not
            rg, rh = ("ok", rg[1][-1:]), ("ok", rh[1][-1:])
        assert same(rg, rh), "step %d %s %s:\n grpc: %s\n http: %s" % (
            i, method, json.dumps(req)[:200], str(rg)[:1500], str(rh)[:1500])


@pytest.fixture
def authd(daemon_factory, tmp_path):
    path = tmp_path / "tokens"
    path.write_text("".join("%s %s %s-user\n" % (tok, role, role) for role, tok in TOKENS.items()))
    return daemon_factory("--tokens", str(path), "--http-listen", "127.0.0.1:0",
                          "--max-message-bytes", "65536")


def bearer(role):
    return {"Authorization": "Bearer " + TOKENS[role]}


def err(resp):
    st, hd, body = resp
    e = json.loads(body)
    assert set(e) == {"code", "status", "message"}, e
    assert int(hd["x-grpc-status"]) == e["code"]
    return st, e["code"], e["status"], e["message"]


def test_statuses_map_to_http(authd):
    p = authd.http_port
    st, code, name, msg = err(call(p, "GetEntity", {"ref": seller("ghost")}, bearer("reader")))
    assert (st, code, name) == (404, 5, "NOT_FOUND") and "ghost" in msg
    st, code, name, msg = err(call(p, "GetEntity", {"ref": {"type": S}}, bearer("reader")))
    assert (st, code, name) == (400, 3, "INVALID_ARGUMENT") and "ref" in msg
    st, code, name, msg = err(call(p, "Frobnicate", {}, bearer("reader")))
    assert (st, code, name) == (501, 12, "UNIMPLEMENTED") and "Frobnicate" in msg
    st, code, name, msg = err(call(p, "GetSnapshot", {"snapshotId": "9"}, bearer("reader")))
    assert (st, code) == (404, 5)
    st, code, name, msg = err(call(p, "Upsert", {"entities": [seller("a")]}, bearer("reader")))
    assert (st, code, name) == (403, 7, "PERMISSION_DENIED")
    assert "Upsert" in msg and "writer" in msg and "reader" in msg
    st, hd, body = call(p, "Upsert", {"entities": [seller("a")]}, bearer("writer"))
    assert st == 200 and hd["x-grpc-status"] == "0"
    assert json.loads(body)["totals"]["entitiesCreated"] == "1"


def test_bad_requests_are_refused_precisely(authd):
    p = authd.http_port
    r = bearer("reader")
    # missing and unknown token; the token is checked when the headers
    # come, before a body is read (an over-size one too)
    st, code, _, msg = err(call(p, "Stats", {}))
    assert (st, code) == (401, 16) and "authorization" in msg
    st, code, _, msg = err(call(p, "GetEntity", {"ref": {"type": S, "key": "k" * 200000}}))
    assert (st, code) == (401, 16), msg
    st, code, _, msg = err(call(p, "Stats", {}, {"Authorization": "Bearer nope"}))
    assert (st, code) == (401, 16) and "unknown token" in msg
    # bad JSON, named by where it broke
    st, code, _, msg = err(call(p, "GetEntity", None, r, raw=b'{"ref": {"key": "a",}'))
    assert (st, code) == (400, 3) and "invalid JSON" in msg and "byte" in msg
    st, code, _, msg = err(call(p, "GetEntity", None, r, raw=b'{"ref": {}} trailing'))
    assert (st, code) == (400, 3)
    # unknown field, named with its path
    st, code, _, msg = err(call(p, "GetEntity", {"ref": {"type": S, "kee": "a"}}, r))
    assert (st, code) == (400, 3) and '"kee"' in msg and "ref" in msg
    # a value of the wrong type, named
    st, code, _, msg = err(call(p, "Neighbors", {"ref": seller("a"), "limit": "many"}, r))
    assert (st, code) == (400, 3) and "limit" in msg
    # over-size body: 413, naming the limit
    big = {"ref": {"type": S, "key": "k" * 70000}}
    st, code, name, msg = err(call(p, "GetEntity", big, r))
    assert (st, code, name) == (413, 8, "RESOURCE_EXHAUSTED") and "--max-message-bytes" in msg
    # wrong content type (a cross-site form could send text/plain)
    st, code, _, msg = err(call(p, "Stats", {}, dict(r, **{"Content-Type": "text/plain"})))
    assert (st, code) == (400, 3) and "Content-Type" in msg
    # a deadline that is not one
    st, code, _, msg = err(call(p, "Stats", {}, dict(r, **{"X-Deadline-Ms": "soon"})))
    assert (st, code) == (400, 3) and "X-Deadline-Ms" in msg
    # wrong verb on the API, unknown file
    c = http.client.HTTPConnection("127.0.0.1", p, timeout=T())
    c.request("GET", "/v1/Stats")
    resp = c.getresponse()
    assert resp.status == 405 and resp.getheader("Allow") == "POST"
    resp.read()
    c.request("GET", "/no-such-file.js")
    resp = c.getresponse()
    assert resp.status == 404
    resp.read()
    c.close()
    # the daemon is fine and nothing was written
    st, hd, body = call(p, "Stats", {}, r)
    assert st == 200 and "entitiesTotal" not in json.loads(body)


def test_audit_records_http_calls_with_case_id(authd):
    p = authd.http_port
    case = {"X-Case-Id": "CASE-2026-0042"}
    assert call(p, "Upsert", {"entities": [seller("audited")]}, dict(bearer("writer"), **case))[0] == 200
    assert call(p, "SetLabels", {"ref": seller("audited"), "add": ["x"]},
                dict(bearer("reader"), **case))[0] == 403
    assert call(p, "Stats", {}, case)[0] == 401
    st, _, body = call(p, "ListAudit", {"caseId": "CASE-2026-0042"}, bearer("admin"))
    assert st == 200, body
    recs = [(r["method"].rsplit("/", 1)[1], r.get("status", 0), r.get("principal", ""),
             r.get("role", "")) for r in json.loads(body)["records"]]
    assert recs == [("Upsert", 0, "writer-user", "writer"),
                    ("SetLabels", 7, "reader-user", "reader"),
                    ("Stats", 16, "", "none")], recs


def test_audit_trail_same_for_both_transports(daemon_factory):
    dm = daemon_factory("--http-listen", "127.0.0.1:0")
    p = dm.http_port
    case = {"X-Case-Id": "CASE-<b>7</b>"}
    assert call(p, "Upsert", {"entities": [seller("s")]}, case)[0] == 200
    assert call(p, "GetEntity", {"ref": seller("missing")}, case)[0] == 404
    st, _, body = call(p, "ListAudit", {"caseId": "CASE-<b>7</b>"})
    assert st == 200
    recs = json.loads(body)["records"]
    assert [(r["method"], r.get("status", 0)) for r in recs] == [
        ("/graphd.v1.SellerGraph/Upsert", 0), ("/graphd.v1.SellerGraph/GetEntity", 5)]
    assert all(r["caseId"] == "CASE-<b>7</b>" and r["principal"] == "local" for r in recs)
    assert all(r["peer"].startswith("ipv4:127.0.0.1:") for r in recs)
    # the same trail as gRPC calls write: one chain, verified
    grpc_recs = dm.stub.ListAudit(pb.ListAuditRequest(case_id="CASE-<b>7</b>"), timeout=T())
    assert [r.method for r in grpc_recs.records] == [r["method"] for r in recs]
    st, _, body = call(p, "VerifyAudit", {})
    assert st == 200 and json.loads(body)["ok"] is True


def test_case_id_must_be_text(daemon_factory):
    dm = daemon_factory("--http-listen", "127.0.0.1:0")
    p = dm.http_port
    body = {"ref": seller("s")}
    for bad, why in [(b"case-\xff\xfe", "not valid UTF-8"), (b"c" * 129, "longer than 128"),
                     (b"case\x01", "control characters")]:
        st, code, _, msg = err(call(p, "GetEntity", body, {"X-Case-Id": bad}))
        assert (st, code) == (400, 3) and "X-Case-Id" in msg and why in msg, msg
    st, _, _ = call(p, "GetEntity", body, {"X-Case-Id": "CASE-ü-42".encode()})
    assert st == 404
    # the trail stays text: both transports read it back
    st, _, body = call(p, "ListAudit", {})
    assert st == 200
    cases = [r.get("caseId", "") for r in json.loads(body)["records"]][:4]
    assert cases == ["", "", "", "CASE-ü-42"], cases
    recs = dm.stub.ListAudit(pb.ListAuditRequest(), timeout=T()).records
    assert [r.case_id for r in recs][:4] == cases


def test_console_files(daemon_factory):
    dm = daemon_factory("--http-listen", "127.0.0.1:0")
    c = http.client.HTTPConnection("127.0.0.1", dm.http_port, timeout=T())
    c.request("GET", "/")
    r = c.getresponse()
    page = r.read()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html")
    csp = r.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert b"<script" in page
    c.request("GET", "/console.js")
    r = c.getresponse()
    js = r.read()
    assert r.status == 200 and len(js) > 1000
    c.request("HEAD", "/console.js")
    r = c.getresponse()
    r.read()
    assert r.status == 200 and int(r.getheader("Content-Length")) == len(js)
    for bad in ["/../main.c", "/.hidden", "/a//b", "/%2e%2e/x"]:
        c.request("GET", bad)
        r = c.getresponse()
        r.read()
        assert r.status == 404, bad
    c.close()


def test_deadline_and_stream_errors(daemon_factory, tmp_path):
    # a clustering worker that takes its time, so a watch outlives its deadline
    slow = tmp_path / "slow-worker"
    slow.write_text("#!/bin/sh\nsleep 3\nexit 1\n")
    slow.chmod(0o755)
    dm = daemon_factory("--http-listen", "127.0.0.1:0", "--worker", str(slow))
    p = dm.http_port
    assert call(p, "Upsert", ring_upsert())[0] == 200
    # a stream of many messages arrives as JSON Lines
    st, hd, body = call(p, "GetEntities", {"ids": [str(i) for i in range(1, 60)]})
    assert st == 200 and hd["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in body.decode().splitlines()]
    assert lines and all("entities" in x or "notFound" in x for x in lines)
    # a stream that fails at once is a plain error
    st, code, _, msg = err(call(p, "StreamAssignments", {"snapshotId": "42"}))
    assert (st, code) == (404, 5)
    # a watch past its X-Deadline-Ms: the job's state line, then the error line
    job = json.loads(call(p, "StartClustering", {})[2])
    st, hd, body = call(p, "WatchJob", {"jobId": job["id"]}, {"X-Deadline-Ms": "400"})
    assert st == 200, body
    lines = [json.loads(x) for x in body.decode().splitlines()]
    assert lines[0]["id"] == job["id"] and "error" not in lines[0]
    assert lines[-1] == {"error": {"code": 4, "status": "DEADLINE_EXCEEDED",
                                   "message": "deadline exceeded"}}, lines[-1]
    # the daemon goes on serving
    st, hd, body = call(p, "GetJob", {"jobId": job["id"]})
    assert st == 200 and json.loads(body)["id"] == job["id"]


OPENSSL = shutil.which("openssl")


def test_https_with_tls_cert(daemon_factory, tmp_path):
    assert OPENSSL, "openssl is needed for this test (Debian package openssl)"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", "k.pem", "-out", "c.pem"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=60)
    dm = daemon_factory("--http-listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "c.pem"),
                        "--tls-key", str(tmp_path / "k.pem"))
    ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    c = http.client.HTTPSConnection("127.0.0.1", dm.http_port, context=ctx, timeout=T())
    st, hd, body = call(dm.http_port, "Stats", {}, conn=c)
    assert st == 200 and json.loads(body)["schemaVersion"] == 1
    c.close()
    # plain HTTP gets no HTTP answer at all on that port
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        call(dm.http_port, "Stats", {}, timeout=5)
