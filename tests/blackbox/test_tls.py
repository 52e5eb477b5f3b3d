"""TLS and mTLS (graphd --tls-cert/--tls-key/--tls-client-ca), with
certificates made here by openssl: a CA, a server certificate for
localhost, a client certificate it signed, and one from a stranger CA."""

import os
import shutil
import subprocess

import grpc
import pytest

from bbutil import SELLER, T, expect_status, pb, ref
from graphd.v1 import graphd_pb2_grpc

OPENSSL = shutil.which("openssl")


def sh(*args, cwd):
    subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    sh(OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
       "-subj", "/CN=%s" % name, "-keyout", name + ".key", "-out", name + ".pem", cwd=d)


def make_cert(d, ca, name, san=None):
    sh(OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name,
       "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
    ext = d / (name + ".ext")
    ext.write_text("subjectAltName=%s\n" % san if san else "basicConstraints=CA:FALSE\n")
    sh(OPENSSL, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
       "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", name + ".pem", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not OPENSSL:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    make_ca(d, "stranger-ca")
    make_cert(d, "ca", "server", san="DNS:localhost,IP:127.0.0.1")
    make_cert(d, "ca", "analyst-1")
    make_cert(d, "ca", "nobody")
    make_cert(d, "stranger-ca", "rogue")
    return d


def rd(p):
    with open(p, "rb") as f:
        return f.read()


def secure_stub(dm, certs, client=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=rd(certs / "ca.pem"),
        private_key=rd(certs / (client + ".key")) if client else None,
        certificate_chain=rd(certs / (client + ".pem")) if client else None)
    ch = grpc.secure_channel("localhost:%d" % dm.port, creds)
    return graphd_pb2_grpc.SellerGraphStub(ch), ch


def tls_args(certs, mtls=False):
    a = ["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key")]
    if mtls:
        a += ["--tls-client-ca", str(certs / "ca.pem")]
    return a


def test_tls(daemon_factory, certs):
    dm = daemon_factory(*tls_args(certs))
    stub, ch = secure_stub(dm, certs)
    try:
        assert stub.Stats(pb.StatsRequest(), timeout=T()).schema_version >= 1
        stub.Upsert(pb.UpsertRequest(entities=[pb.EntityInput(type=SELLER, key="s1")]),
                    timeout=T())
        assert stub.GetEntity(pb.GetEntityRequest(ref=ref(SELLER, "s1")), timeout=T()).entity.id
    finally:
        ch.close()
    # A plaintext client cannot talk to the TLS port.
    expect_status(grpc.StatusCode.UNAVAILABLE, dm.stub.Stats, pb.StatsRequest(), timeout=T(5))


def test_mtls_certificate_identity(daemon_factory, certs, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("x509:analyst-1 reader analyst-one\n"
                      "tttttttttttttttt-investigator investigator inv\n")
    dm = daemon_factory(*tls_args(certs, mtls=True), "--tokens", str(tokens))
    # A certificate our CA signed, with an x509: line: reader, no token needed.
    stub, ch = secure_stub(dm, certs, "analyst-1")
    try:
        assert stub.Stats(pb.StatsRequest(), timeout=T()).schema_version >= 1
        expect_status(grpc.StatusCode.PERMISSION_DENIED, stub.SetLabels,
                      pb.SetLabelsRequest(ref=ref(SELLER, "s1"), add=["x"]), timeout=T(),
                      fields=["analyst-one", "has role reader"])
        # A bearer token over the same connection takes precedence.
        md = [("authorization", "Bearer tttttttttttttttt-investigator")]
        try:
            stub.SetLabels(pb.SetLabelsRequest(ref=ref(SELLER, "s1"), add=["x"]), metadata=md,
                           timeout=T())
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e  # authorised; s1 is not there
        # "x509:..." is never accepted as a bearer token.
        expect_status(grpc.StatusCode.UNAUTHENTICATED, stub.Stats, pb.StatsRequest(),
                      metadata=[("authorization", "Bearer x509:analyst-1")], timeout=T())
    finally:
        ch.close()
    # Verified, but no line for its CN: unauthenticated.
    stub, ch = secure_stub(dm, certs, "nobody")
    try:
        expect_status(grpc.StatusCode.UNAUTHENTICATED, stub.Stats, pb.StatsRequest(),
                      timeout=T())
    finally:
        ch.close()
    # No client certificate, or one from another CA: the handshake fails.
    for client in (None, "rogue"):
        if client == "rogue":
            creds = grpc.ssl_channel_credentials(
                root_certificates=rd(certs / "ca.pem"),
                private_key=rd(certs / "rogue.key"),
                certificate_chain=rd(certs / "rogue.pem"))
            ch = grpc.secure_channel("localhost:%d" % dm.port, creds)
            stub = graphd_pb2_grpc.SellerGraphStub(ch)
        else:
            stub, ch = secure_stub(dm, certs)
        try:
            expect_status(grpc.StatusCode.UNAVAILABLE, stub.Stats, pb.StatsRequest(),
                          timeout=T(5))
        finally:
            ch.close()


def test_graphctl_tls(daemon_factory, certs, graphctl_bin, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("x509:analyst-1 admin analyst-one\n")
    dm = daemon_factory(*tls_args(certs, mtls=True), "--tokens", str(tokens))
    # By IP (the certificate has IP:127.0.0.1): no DNS lookup, whose c-ares
    # allocation LeakSanitizer reports in the sanitizer pass.
    base = [graphctl_bin, "--addr", "127.0.0.1:%d" % dm.port, "--tls-ca", str(certs / "ca.pem")]
    env = dict(os.environ)
    env.pop("GRAPHD_TOKEN", None)
    r = subprocess.run(base + ["--tls-cert", str(certs / "analyst-1.pem"), "--tls-key",
                               str(certs / "analyst-1.key"), "--json", "stats"],
                       capture_output=True, text=True, env=env, timeout=T(30))
    assert r.returncode == 0, r.stderr
    r = subprocess.run(base + ["stats"], capture_output=True, text=True, env=env, timeout=T(30))
    assert r.returncode == 69, (r.returncode, r.stderr)  # no client certificate: unreachable


def test_tls_flag_errors(tmp_path, certs):
    from conftest import _graphd_bin
    g = _graphd_bin()
    r = subprocess.run([g, "--data", str(tmp_path / "d"), "--tls-cert", str(certs / "server.pem")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--tls-cert and --tls-key go together" in r.stderr
    r = subprocess.run([g, "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                        "--tls-cert", str(certs / "server.pem"), "--tls-key",
                        str(tmp_path / "missing.key")], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "missing.key" in r.stderr
