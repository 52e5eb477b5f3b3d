"""Helpers shared by the black-box tests (imported after conftest generated
the stubs)."""

import os

import grpc
import pytest

from graphd.v1 import graphd_pb2 as pb
from grpc.health.v1 import health_pb2



def rpc_timeout(base=10.0):
    """Timeout (seconds) for rpcs; longer under GRAPHD_WRAPPER (valgrind)
    and in the sanitizer build (ASAN_OPTIONS set by tools/test.sh)."""
    if os.environ.get("GRAPHD_WRAPPER"):
        return base * 10.0
    return base * (4.0 if os.environ.get("ASAN_OPTIONS") else 1.0)


SELLER = pb.ENTITY_TYPE_SELLER
ADDRESS = pb.ENTITY_TYPE_ADDRESS
PAYMENT = pb.ENTITY_TYPE_PAYMENT_ACCOUNT
DEVICE = pb.ENTITY_TYPE_DEVICE
PHONE = pb.ENTITY_TYPE_PHONE
EMAIL = pb.ENTITY_TYPE_EMAIL
IP = pb.ENTITY_TYPE_IP
ALL_TYPES = [SELLER, ADDRESS, PAYMENT, DEVICE, PHONE, EMAIL, IP]

SERVICE = "/graphd.v1.SellerGraph/"
T = rpc_timeout  # T() -> seconds for `timeout=`


def ref(t, key=None, id=0):
    if key is None and id:
        return pb.EntityRef(id=id)
    return pb.EntityRef(type=t, key=key or "", id=id)


def link(at, ak, bt, bk, seen=0):
    return pb.LinkInput(a=pb.EntityRef(type=at, key=ak), b=pb.EntityRef(type=bt, key=bk), seen=seen)


def link_ids(a, b, seen=0):
    return pb.LinkInput(a=pb.EntityRef(id=a), b=pb.EntityRef(id=b), seen=seen)


def ent(t, key, attrs=(), labels=(), seen=0):
    return pb.EntityInput(type=t, key=key, labels=list(labels), seen=seen,
                          attributes=[pb.Attribute(name=n, value=v) for n, v in attrs])


def upsert(stub, links=(), entities=(), request_id="", timeout=None):
    return stub.Upsert(pb.UpsertRequest(request_id=request_id, links=list(links),
                                        entities=list(entities)), timeout=timeout or T())


def get(stub, t=0, key="", id=0, timeout=None):
    return stub.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(type=t, key=key, id=id)),
                          timeout=timeout or T()).entity


def rpc_error(fn, *args, **kw):
    """Call fn, expect grpc.RpcError, return it."""
    with pytest.raises(grpc.RpcError) as ei:
        r = fn(*args, **kw)
        # server-streaming calls: the error comes while iterating
        if hasattr(r, "__iter__") and not isinstance(r, (bytes, str)) and not hasattr(r, "ListFields"):
            list(r)
    return ei.value


def expect_status(code, fn, *args, fields=(), **kw):
    """Call fn expecting the status `code` and, for each string in `fields`,
    that string in the status details. Returns the details."""
    e = rpc_error(fn, *args, **kw)
    details = e.details() or ""
    assert e.code() == code, "want %s, got %s: %r" % (code, e.code(), details)
    for f in fields:
        assert f in details, "status details %r do not name %r" % (details, f)
    return details


def not_found(stub, t=0, key="", id=0):
    e = rpc_error(get, stub, t, key, id)
    return e.code() == grpc.StatusCode.NOT_FOUND


def exists(stub, t=0, key="", id=0):
    try:
        get(stub, t, key, id)
        return True
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, "GetEntity: %s %r" % (e.code(), e.details())
        return False


def neighbors_all(stub, r, types=(), window=None, limit=0, max_pages=100000):
    """All neighbours of ref r, following next_page_token."""
    out = []
    token = ""
    for _ in range(max_pages):
        req = pb.NeighborsRequest(ref=r, types=list(types), limit=limit, page_token=token)
        if window:
            req.window.since, req.window.until = window
        rep = stub.Neighbors(req, timeout=T())
        out.extend(rep.neighbors)
        token = rep.next_page_token
        if not token:
            return out
    raise AssertionError("paging did not end after %d pages" % max_pages)


def stats(stub):
    return stub.Stats(pb.StatsRequest(), timeout=T())


def type_counts(st):
    return {tc.type: tc.count for tc in st.entities}


def health_status(daemon, service=""):
    return daemon.health.Check(health_pb2.HealthCheckRequest(service=service),
                               timeout=T()).status


def assert_healthy(daemon):
    """The daemon still answers a valid write and read, and Health is SERVING."""
    assert daemon.running(), "graphd died:\n" + daemon.log_tail()
    assert health_status(daemon) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(daemon, "graphd.v1.SellerGraph") == health_pb2.HealthCheckResponse.SERVING
    rep = upsert(daemon.stub, [link(SELLER, "healthy-probe", DEVICE, "healthy-probe-dev", seen=5)])
    assert rep.duplicate is False
    e = get(daemon.stub, SELLER, "healthy-probe")
    assert e.key == "healthy-probe" and e.degree == 1


def raw_unary(daemon, method, payload, timeout=None, channel=None):
    """Send raw bytes to a unary method; returns the raw reply bytes."""
    ch = channel or daemon.channel
    return ch.unary_unary(SERVICE + method if not method.startswith("/") else method)(
        payload, timeout=timeout or T())


def patch_bytes(msg_bytes, placeholder, replacement):
    """Replace a placeholder in serialised protobuf bytes with bytes of the
    same length (so no length prefix changes)."""
    assert len(placeholder) == len(replacement)
    assert msg_bytes.count(placeholder) == 1, "placeholder must occur once"
    return msg_bytes.replace(placeholder, replacement)
