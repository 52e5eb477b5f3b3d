"""The access table: every rpc against every caller (no token, each role,
a brand partner), as README.md documents it between <!-- access-table -->
markers. Each cell is one call through the daemon: a "-" cell must be
refused (PERMISSION_DENIED; UNAUTHENTICATED without a token) before the
method runs, any other cell must get past the check (its own status may be
anything but those two). The table must name every rpc the daemon
serves."""

import os
import re

import grpc
import pytest

from bbutil import DEVICE, SELLER, T, link, pb
from graphd.v1 import graphd_pb2

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")

TOKENS = {
    "reader": ("rrrrrrrrrrrrrrrr-acc-reader", "reader", "r", ""),
    "investigator": ("iiiiiiiiiiiiiiii-acc-invest", "investigator", "i", ""),
    "writer": ("wwwwwwwwwwwwwwww-acc-writer", "writer", "w", ""),
    "admin": ("aaaaaaaaaaaaaaaa-acc-admin", "admin", "a", ""),
    "partner": ("pppppppppppppppp-acc-partner", "partner", "p", "acme"),
}
COLUMNS = ["no token", "reader", "investigator", "writer", "admin", "partner"]
DENIED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def read_table():
    text = open(README).read()
    m = re.search(r"<!-- access-table -->\n(.*?)<!-- /access-table -->", text, re.S)
    assert m, "README.md has no access table"
    lines = [l for l in m.group(1).strip().splitlines()]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head == ["rpc"] + COLUMNS, head
    table = {}
    for l in lines[2:]:
        cells = [c.strip() for c in l.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        assert len(cells) == 7 and all(c in ("yes", "-", "own brand") for c in cells[1:]), l
        table[name] = dict(zip(COLUMNS, cells[1:]))
    return table


def served_methods():
    """name -> (path, client_streaming, server_streaming)."""
    out = {}
    svc = graphd_pb2.DESCRIPTOR.services_by_name["SellerGraph"]
    for m in svc.methods:
        out[m.name] = ("/graphd.v1.SellerGraph/" + m.name, m.client_streaming,
                       m.server_streaming)
    out["grpc.health.v1.Health/Check"] = ("/grpc.health.v1.Health/Check", False, False)
    for v in ("v1alpha", "v1"):
        name = "grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % v
        out[name] = ("/" + name, True, True)
    return out


@pytest.fixture
def accessd(daemon_factory, tmp_path):
    path = tmp_path / "tokens"
    path.write_text("".join("%s %s %s%s\n" % (tok, role, name, " brand=" + b if b else "")
                            for tok, role, name, b in TOKENS.values()))
    d = daemon_factory("--tokens", str(path))
    d.stub.Upsert(pb.UpsertRequest(links=[link(SELLER, "s1", DEVICE, "d1"),
                                          link(SELLER, "s2", DEVICE, "d1")]),
                  metadata=[("authorization", "Bearer " + TOKENS["writer"][0])], timeout=T())
    return d


def call(channel, path, cstream, sstream, md):
    """One call with an empty request (no messages for a client stream).
    Returns the status code."""
    ident = lambda b: b
    # A stream that follows a source (WatchAlerts) runs to its deadline
    # once past the check: a short one will do, also under valgrind (a
    # refusal comes before the method runs, in milliseconds).
    timeout = 3 if sstream else T()
    try:
        if cstream and sstream:
            list(channel.stream_stream(path, ident, ident)(iter([]), metadata=md, timeout=timeout))
        elif cstream:
            channel.stream_unary(path, ident, ident)(iter([]), metadata=md, timeout=timeout)
        elif sstream:
            list(channel.unary_stream(path, ident, ident)(b"", metadata=md, timeout=timeout))
        else:
            channel.unary_unary(path, ident, ident)(b"", metadata=md, timeout=timeout)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def test_table_names_every_rpc():
    assert set(read_table()) == set(served_methods())


def test_every_cell(accessd):
    table = read_table()
    methods = served_methods()
    wrong = []
    for name, (path, cs, ss) in sorted(methods.items()):
        for col in COLUMNS:
            md = None if col == "no token" else [("authorization",
                                                 "Bearer " + TOKENS[col][0])]
            got = call(accessd.channel, path, cs, ss, md)
            want = table[name][col]
            if want == "-":
                expect = (grpc.StatusCode.UNAUTHENTICATED if col == "no token"
                          else grpc.StatusCode.PERMISSION_DENIED)
                if got != expect:
                    wrong.append("%s as %s: %s, the table says refused (%s)"
                                 % (name, col, got, expect))
            elif got in DENIED:
                wrong.append("%s as %s: %s, the table says %s" % (name, col, got, want))
    assert not wrong, "\n".join(wrong)
    assert accessd.running()
