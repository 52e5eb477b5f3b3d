"""Bearer tokens and roles (graphd --tokens): each role against each rpc
class, missing and wrong tokens, open health, SIGHUP reload, the loopback
rule without tokens, graphctl's --token-file and $GRAPHD_TOKEN."""

import os
import signal
import subprocess
import time

import grpc
import pytest

from bbutil import DEVICE, SELLER, T, ent, expect_status, link, pb, ref
from conftest import _graphd_bin
from grpc.health.v1 import health_pb2

TOKENS = {
    "reader": "rrrrrrrrrrrrrrrr-reader-token",
    "investigator": "iiiiiiiiiiiiiiii-investigator",
    "writer": "wwwwwwwwwwwwwwww-writer-token",
    "admin": "aaaaaaaaaaaaaaaa-admin-token",
}
ROLES = ["reader", "investigator", "writer", "admin"]


def write_tokens(path, tokens):
    with open(path, "w") as f:
        f.write("# token role name\n\n")
        for role, tok in tokens.items():
            f.write("%s %s %s-user\n" % (tok, role, role))
    return str(path)


def md(role):
    return [("authorization", "Bearer " + TOKENS[role])]


# One call per rpc class, with the least role it needs. Each call is valid
# enough that an authorised caller gets past the check (its own status is
# OK, NOT_FOUND, FAILED_PRECONDITION ... never UNAUTHENTICATED or
# PERMISSION_DENIED).
def calls(stub):
    return [
        ("reader", "GetEntity", lambda m: stub.GetEntity(
            pb.GetEntityRequest(ref=ref(SELLER, "s1")), metadata=m, timeout=T())),
        ("reader", "Stats", lambda m: stub.Stats(pb.StatsRequest(), metadata=m, timeout=T())),
        ("reader", "WhoAmI", lambda m: stub.WhoAmI(pb.WhoAmIRequest(), metadata=m, timeout=T())),
        ("reader", "LinkedSellers", lambda m: stub.LinkedSellers(
            pb.LinkedSellersRequest(seller=ref(SELLER, "s1")), metadata=m, timeout=T())),
        ("reader", "ListSnapshots", lambda m: stub.ListSnapshots(
            pb.ListSnapshotsRequest(), metadata=m, timeout=T())),
        ("reader", "StreamAssignments", lambda m: list(stub.StreamAssignments(
            pb.StreamAssignmentsRequest(), metadata=m, timeout=T()))),
        ("investigator", "SetLabels", lambda m: stub.SetLabels(
            pb.SetLabelsRequest(ref=ref(SELLER, "s1"), add=["x"]), metadata=m, timeout=T())),
        ("writer", "Upsert", lambda m: stub.Upsert(
            pb.UpsertRequest(links=[link(SELLER, "s1", DEVICE, "d1")]), metadata=m,
            timeout=T())),
        ("writer", "Ingest", lambda m: stub.Ingest(iter([pb.UpsertRequest(
            entities=[ent(SELLER, "s2")])]), metadata=m, timeout=T())),
        ("writer", "CancelJob", lambda m: stub.CancelJob(
            pb.JobRequest(job_id=999), metadata=m, timeout=T())),
        ("admin", "DeleteSnapshot", lambda m: stub.DeleteSnapshot(
            pb.SnapshotRequest(snapshot_id=999), metadata=m, timeout=T())),
    ]


def test_whoami_names_principal_and_role(authd):
    for role in ROLES:
        rep = authd.stub.WhoAmI(pb.WhoAmIRequest(), metadata=md(role), timeout=T())
        assert (rep.principal, rep.role) == (role + "-user", role)
    with pytest.raises(grpc.RpcError) as e:
        authd.stub.WhoAmI(pb.WhoAmIRequest(), timeout=T())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def code_of(fn, m):
    try:
        fn(m)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


@pytest.fixture
def authd(daemon_factory, tmp_path):
    path = write_tokens(tmp_path / "tokens", TOKENS)
    d = daemon_factory("--tokens", path)
    d.tokens_path = path
    return d


def test_roles_against_rpc_classes(authd):
    stub = authd.stub
    # Data for the calls to find (the writer puts it in).
    stub.Upsert(pb.UpsertRequest(links=[link(SELLER, "s1", DEVICE, "d1")]), metadata=md("writer"),
                timeout=T())
    denied = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
    for need, name, fn in calls(stub):
        for role in ROLES:
            got = code_of(fn, md(role))
            if ROLES.index(role) >= ROLES.index(need):
                assert got not in denied, (role, name, got)
            else:
                assert got == grpc.StatusCode.PERMISSION_DENIED, (role, name, got)
        assert code_of(fn, None) == grpc.StatusCode.UNAUTHENTICATED, name


def test_denials_name_method_and_roles(authd):
    expect_status(grpc.StatusCode.PERMISSION_DENIED, authd.stub.Upsert, pb.UpsertRequest(),
                  metadata=md("reader"), timeout=T(),
                  fields=["Upsert", "needs role writer", "reader-user", "has role reader"])
    expect_status(grpc.StatusCode.UNAUTHENTICATED, authd.stub.Stats, pb.StatsRequest(),
                  timeout=T(), fields=["missing"])
    for bad in ["Bearer nosuchtokennosuchtoken", "Basic " + TOKENS["admin"], TOKENS["admin"],
                "Bearer " + TOKENS["admin"] + "x", "Bearer " + TOKENS["admin"][:-1]]:
        expect_status(grpc.StatusCode.UNAUTHENTICATED, authd.stub.Stats, pb.StatsRequest(),
                      metadata=[("authorization", bad)], timeout=T())


def test_health_needs_no_token(authd):
    r = authd.health.Check(health_pb2.HealthCheckRequest(), timeout=T())
    assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_sighup_reloads_tokens(authd, tmp_path):
    new = dict(TOKENS)
    new["reader"] = "nnnnnnnnnnnnnnnn-new-reader"
    write_tokens(authd.tokens_path, new)
    authd.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + T(10)
    while code_of(lambda m: authd.stub.Stats(pb.StatsRequest(), metadata=m, timeout=T()),
                  [("authorization", "Bearer " + new["reader"])]) != grpc.StatusCode.OK:
        assert time.monotonic() < deadline, "new token not accepted after SIGHUP"
        time.sleep(0.05)
    assert code_of(lambda m: authd.stub.Stats(pb.StatsRequest(), metadata=m, timeout=T()),
                   md("reader")) == grpc.StatusCode.UNAUTHENTICATED
    # A broken file on reload: the old table stays in force.
    with open(authd.tokens_path, "w") as f:
        f.write("short reader x\n")
    authd.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert code_of(lambda m: authd.stub.Stats(pb.StatsRequest(), metadata=m, timeout=T()),
                   [("authorization", "Bearer " + new["reader"])]) == grpc.StatusCode.OK
    assert authd.running()


def run_graphd(args, timeout=20):
    return subprocess.run([_graphd_bin()] + args, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("body,msg", [
    ("tok reader x\n", ":1: token must be 16..256"),
    ("aaaaaaaaaaaaaaaaaaaa boss x\n", ":1: unknown role 'boss'"),
    ("aaaaaaaaaaaaaaaaaaaa reader\n", ":1: expected 'TOKEN ROLE NAME [brand=BRAND]'"),
    ("# c\naaaaaaaaaaaaaaaaaaaa reader x\naaaaaaaaaaaaaaaaaaaa admin y\n", ":3: duplicate token"),
])
def test_bad_tokens_file_refuses_to_start(tmp_path, body, msg):
    p = tmp_path / "tokens"
    p.write_text(body)
    r = run_graphd(["--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--tokens", str(p)])
    assert r.returncode == 1 and msg in r.stderr, r.stderr


def test_no_tokens_means_loopback_only(tmp_path):
    r = run_graphd(["--data", str(tmp_path / "d"), "--listen", "0.0.0.0:0"])
    assert r.returncode == 1 and "refusing to listen on 0.0.0.0:0 without --tokens" in r.stderr
    # Explicitly told: it serves.
    p = subprocess.Popen([_graphd_bin(), "--data", str(tmp_path / "d2"), "--listen", "0.0.0.0:0",
                          "--insecure-no-auth"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("listening on 0.0.0.0:"), line
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=T(30)) == 0


def test_graphctl_token(authd, graphctl_bin, tmp_path):
    base = [graphctl_bin, "--addr", authd.addr]
    env = dict(os.environ)
    env.pop("GRAPHD_TOKEN", None)
    r = subprocess.run(base + ["stats"], capture_output=True, text=True, env=env, timeout=T(30))
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr
    tf = tmp_path / "tok"
    tf.write_text(TOKENS["reader"] + "\n")
    r = subprocess.run(base + ["--token-file", str(tf), "stats"], capture_output=True,
                       text=True, env=env, timeout=T(30))
    assert r.returncode == 0, r.stderr
    r = subprocess.run(base + ["--token-file", str(tf), "label", "seller", "s9", "+x"],
                       capture_output=True, text=True, env=env, timeout=T(30))
    assert r.returncode == 1 and "PERMISSION_DENIED" in r.stderr
    env["GRAPHD_TOKEN"] = TOKENS["writer"]
    w = tmp_path / "links.csv"
    w.write_text("a_type,a_key,b_type,b_key\nseller,s7,device,d7\n")
    r = subprocess.run(base + ["ingest", "--no-progress", str(w)], capture_output=True, text=True,
                       env=env, timeout=T(30))
    assert r.returncode == 0, r.stderr
