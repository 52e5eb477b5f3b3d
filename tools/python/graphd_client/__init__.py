"""graphd_client: graphd's analytics rpcs from Python, as pandas DataFrames.

A small layer over the grpcio stubs generated from
proto/graphd/v1/graphd.proto (the reference for every field and status):
run a clustering job and follow it, then read the snapshot it wrote --
manifests, every seller's cluster, cluster summaries, one cluster's
members and evidence, and the diff between two snapshots.

    from graphd_client import Client, GraphdError

    with Client("127.0.0.1:7419", token=None, case_id="case-1234") as c:
        job = c.run_clustering(name="weekly", progress=print)   # start + wait
        a = c.assignments(job.snapshot_id)      # DataFrame seller_id, cluster_id
        cl = c.clusters(job.snapshot_id)        # every cluster, riskiest first
        d = c.diff(c.snapshot(job.snapshot_id)["previous_snapshot_id"], job.snapshot_id)

Stubs. The module imports `graphd.v1.graphd_pb2` and `graphd_pb2_grpc`,
looked for in this order: the `stubs_dir` argument of Client (or of
load_stubs), the directory in $GRAPHD_STUBS, then sys.path as it is
(PYTHONPATH; `meson install` puts them next to this module). A meson
build generates them into build/proto (graphd/v1/graphd_pb2.py ...):

    PYTHONPATH=tools/python:build/proto python3 my_job.py

Errors. Every failed rpc raises GraphdError, whose `code` is the
grpc.StatusCode the server (or grpc itself: UNAVAILABLE when nothing
listens at the target) answered and `details` its message, e.g.
NOT_FOUND "snapshot 99: not found". A clustering job that ends FAILED or
CANCELLED raises JobError (a GraphdError: code ABORTED or CANCELLED, the
job's reason as details, the final Job in `job`). Bad arguments caught
before any call (an unknown algorithm or entity type name, a TLS key
without its certificate) raise ValueError; unreadable files OSError.

Ids and counts are int64 columns (the API's uint64 ids come from a
counter and stay far below 2^63, and signed columns subtract and mix with
other integers without surprises); 0 means "not set", and snapshot_id 0 means
"the latest" (resolved to a concrete id once per method, so paged reads
never mix two snapshots). Times are pandas Timestamps and datetime64
columns in UTC (NaT for "never"); the write methods take Unix seconds or
timestamps.

A Client holds one grpc channel; it may be shared between threads.
"""

import contextlib
import dataclasses
import datetime
import os
import sys
import time

import grpc
import numpy as np
import pandas as pd

__all__ = ["Client", "GraphdError", "JobError", "Job", "ClusterDetail", "SnapshotDiff",
           "load_stubs", "read_token_file", "ALGORITHMS", "ENTITY_TYPES"]

STUBS_ENV = "GRAPHD_STUBS"

# The names graphctl uses (graphctl cluster --algorithm).
ALGORITHMS = {
    "leiden-cpm": "ALGORITHM_LEIDEN_CPM",
    "leiden-modularity": "ALGORITHM_LEIDEN_MODULARITY",
    "louvain": "ALGORITHM_LOUVAIN",
    "label-propagation": "ALGORITHM_LABEL_PROPAGATION",
    "components": "ALGORITHM_CONNECTED_COMPONENTS",
    "infomap": "ALGORITHM_INFOMAP",
}
ENTITY_TYPES = ("seller", "address", "payment_account", "device", "phone", "email", "ip")

_pb = None
_pb_grpc = None


def load_stubs(stubs_dir=None):
    """Import the graphd.v1 stubs once and return (graphd_pb2, graphd_pb2_grpc).

    stubs_dir, else $GRAPHD_STUBS, is put first on sys.path when given; it
    must hold graphd/v1/graphd_pb2.py. Later calls return the modules
    already imported. Raises ImportError saying where it looked."""
    global _pb, _pb_grpc
    if _pb is not None:
        return _pb, _pb_grpc
    d = stubs_dir or os.environ.get(STUBS_ENV)
    if d:
        d = os.path.abspath(d)
        if not os.path.isfile(os.path.join(d, "graphd", "v1", "graphd_pb2.py")):
            raise ImportError("graphd_client: no graphd/v1/graphd_pb2.py under %s (%s)"
                              % (d, "stubs_dir" if stubs_dir else "$" + STUBS_ENV))
        if d not in sys.path:
            sys.path.insert(0, d)
    try:
        from graphd.v1 import graphd_pb2, graphd_pb2_grpc
    except ImportError as e:
        raise ImportError(
            "graphd_client: the graphd.v1 Python stubs are not importable (%s). Build them "
            "(ninja -C build makes build/proto/graphd/v1/graphd_pb2.py) and add build/proto "
            "to PYTHONPATH, set $%s, or pass stubs_dir" % (e, STUBS_ENV)) from e
    _pb, _pb_grpc = graphd_pb2, graphd_pb2_grpc
    return _pb, _pb_grpc


def read_token_file(path):
    """The bearer token in path: its first line, white space stripped (what
    graphctl --token-file reads). Raises OSError, or ValueError when empty."""
    with open(path, encoding="utf-8") as f:
        tok = f.readline().strip()
    if not tok:
        raise ValueError("%s: no token on the first line" % path)
    return tok


# ---------------------------------------------------------------- errors


class GraphdError(Exception):
    """A failed rpc (or job). code: grpc.StatusCode; details: the message;
    method: the rpc name ("ListClusters")."""

    def __init__(self, code, details, method=None):
        self.code = code
        self.details = details or ""
        self.method = method
        super().__init__(str(self))

    def __str__(self):
        name = self.code.name if isinstance(self.code, grpc.StatusCode) else str(self.code)
        s = "%s: %s" % (name, self.details or "(no message)")
        return s + (" (%s)" % self.method if self.method else "")

    @classmethod
    def _from_rpc(cls, e, method):
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        details = e.details() if hasattr(e, "details") else str(e)
        return cls(code or grpc.StatusCode.UNKNOWN, details, method)


class JobError(GraphdError):
    """A clustering job that ended FAILED (code ABORTED) or CANCELLED
    (code CANCELLED); job: the final Job."""

    def __init__(self, job):
        self.job = job
        code = grpc.StatusCode.CANCELLED if job.state == "CANCELLED" else grpc.StatusCode.ABORTED
        super().__init__(code, "job %d %s: %s" % (job.id, job.state, job.reason or "(no reason)"),
                         "WatchJob")


# ---------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class Job:
    """A clustering job. state: QUEUED, RUNNING, SUCCEEDED, FAILED or
    CANCELLED; stage: "queued", "start", then the worker's stages (open,
    read, project, cluster, match, summarize, write); progress 0..1;
    snapshot_id: the snapshot a SUCCEEDED job wrote; spec: the spec as
    submitted (see Client.start_clustering)."""
    id: int
    state: str
    stage: str
    progress: float
    reason: str
    snapshot_id: int
    created_at: pd.Timestamp
    started_at: pd.Timestamp
    ended_at: pd.Timestamp
    spec: dict

    @property
    def done(self):
        return self.state in ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclasses.dataclass
class ClusterDetail:
    """One cluster of a snapshot (Client.cluster). summary: as a row of
    Client.clusters (a dict); members: DataFrame seller_id, key, flagged
    (as the snapshot recorded them), present_today, labels_today,
    degree_today, seller_count_today, first_seen_today, last_seen_today,
    attributes_today (today's records; all members, ascending seller id);
    ties: DataFrame seller_a, seller_b, weight (the strongest stored
    evidence ties); ties_stored: how many the snapshot holds (size - 1 for
    a connected cluster)."""
    snapshot_id: int
    summary: dict
    members: pd.DataFrame
    ties: pd.DataFrame
    ties_stored: int


@dataclasses.dataclass
class SnapshotDiff:
    """What changed between two snapshots (Client.diff). summary: the
    DiffSummary counts (from_snapshot_id, to_snapshot_id, sellers,
    sellers_stayed, sellers_moved, sellers_added, sellers_removed,
    clusters_from, clusters_to, continued, merged, split, born, dissolved)
    and text (the server's one-line summary); clusters: a long DataFrame,
    one row per (event, old cluster, new cluster), in the server's order:
    event (the event's number), kind (a category: "continued", "merged",
    "split", "born", "dissolved"), from_cluster, to_cluster (int64; 0 where
    the event has none: a birth has no old cluster, a dissolution no new
    one). A merge of three clusters is three rows with one to_cluster, a
    split into two is two rows with one from_cluster: no list columns, so
    it filters, groups and writes to CSV as it is. moves: DataFrame
    seller_id, from_cluster, to_cluster (and key with keys=True; empty when
    moves=False)."""
    summary: dict
    clusters: pd.DataFrame
    moves: pd.DataFrame

    def counts(self, kind):
        """Events of one kind ("merged" ...) in the clusters table."""
        return int(self.clusters.loc[self.clusters["kind"] == kind, "event"].nunique())


# ---------------------------------------------------------------- conversions


def _etype_name(pb, t):
    name = pb.EntityType.Name(t) if t in pb.EntityType.values() else "ENTITY_TYPE_%d" % t
    return name[len("ENTITY_TYPE_"):].lower()


def _etype_value(pb, name, what):
    n = str(name).strip().lower()
    if n not in ENTITY_TYPES:
        raise ValueError("%s: unknown entity type %r (expected one of %s)"
                         % (what, name, ", ".join(ENTITY_TYPES)))
    return pb.EntityType.Value("ENTITY_TYPE_" + n.upper())


def _algo_name(pb, a):
    if a == 0:
        return "leiden-cpm"
    for k, v in ALGORITHMS.items():
        if pb.Algorithm.Value(v) == a:
            return k
    return "algorithm-%d" % a


def _unix(x, what):
    """int seconds, datetime/date/Timestamp (naive = UTC) or ISO 8601 text
    -> int; None and pandas' missing values (NaN, NaT) -> 0."""
    if x is None or x is pd.NaT or (isinstance(x, (float, np.floating)) and x != x):
        return 0
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return int(x)
    if isinstance(x, str):
        try:
            x = datetime.datetime.fromisoformat(x)
        except ValueError:
            raise ValueError("%s: expected Unix seconds or an ISO date, got %r" % (what, x))
    if isinstance(x, datetime.date) and not isinstance(x, datetime.datetime):
        x = datetime.datetime(x.year, x.month, x.day)
    if isinstance(x, datetime.datetime):
        if x.tzinfo is None:
            x = x.replace(tzinfo=datetime.timezone.utc)
        return int(x.timestamp())
    raise ValueError("%s: expected Unix seconds, a date or an ISO date, got %r" % (what, x))


def _spec_dict(pb, s):
    return {
        "name": s.name,
        "algorithm": _algo_name(pb, s.algorithm),
        "resolution": s.resolution,
        "iterations": s.iterations,
        "seed": s.seed,
        "type_weights": {_etype_name(pb, w.type): w.weight for w in s.type_weights},
        "hub_caps": {_etype_name(pb, c.type): c.max_sellers for c in s.hub_caps},
        "min_tie_weight": s.min_tie_weight,
        "since": s.window.since,
        "until": s.window.until,
        "flagged_labels": list(s.flagged_labels),
    }


def _job(pb, j):
    return Job(id=j.id, state=pb.JobState.Name(j.state)[len("JOB_STATE_"):], stage=j.stage,
               progress=j.progress, reason=j.reason, snapshot_id=j.snapshot_id,
               created_at=_ts1(j.created_at), started_at=_ts1(j.started_at),
               ended_at=_ts1(j.ended_at),
               spec=_spec_dict(pb, j.spec))


MANIFEST_COLUMNS = ["snapshot_id", "created_at", "name", "algorithm", "seed", "sellers", "ties",
                    "hubs_skipped", "clusters", "flagged_sellers", "risk_base_rate", "objective",
                    "modularity", "peak_rss_bytes", "previous_snapshot_id", "input_checksum",
                    "timings", "spec"]


def _alert(pb, ev):
    return {
        "seq": ev.seq, "time": pd.Timestamp(ev.time, unit="ms", tz="UTC"),
        "seller_id": ev.seller_id, "seller_key": ev.seller_key,
        "snapshot_id": ev.snapshot_id, "cluster_id": ev.cluster_id,
        "cluster_risk": ev.cluster_risk, "cluster_size": ev.cluster_size,
        "previous_cluster_id": ev.previous_cluster_id, "gain": ev.gain, "tie": ev.tie,
        "cluster_labels": list(ev.cluster_labels), "labelled_members": ev.labelled_members,
        "reasons": list(ev.reasons),
        "evidence": [{"member_id": e.member_id, "member_key": e.member_key, "tie": e.tie,
                      "shared": [{"type": _etype_name(pb, x.entity.type), "key": x.entity.key,
                                  "sellers": x.entity.seller_count, "weight": x.weight,
                                  "corroboration": x.corroboration} for x in e.shared]}
                     for e in ev.evidence],
    }


def _manifest(pb, m):
    return {
        "snapshot_id": m.id, "created_at": _ts1(m.created_at), "name": m.spec.name,
        "algorithm": _algo_name(pb, m.spec.algorithm), "seed": m.seed, "sellers": m.sellers,
        "ties": m.ties, "hubs_skipped": m.hubs_skipped, "clusters": m.clusters,
        "flagged_sellers": m.flagged_sellers, "risk_base_rate": m.risk_base_rate,
        "objective": m.objective, "modularity": m.modularity,
        "peak_rss_bytes": m.peak_rss_bytes, "previous_snapshot_id": m.previous_snapshot_id,
        "input_checksum": m.input_checksum,
        "timings": {t.stage: t.seconds for t in m.timings},
        "spec": _spec_dict(pb, m.spec),
    }


def _source(pb, s):
    return {"entity_id": s.entity.id, "type": _etype_name(pb, s.entity.type),
            "key": s.entity.key, "cluster_sellers": s.cluster_sellers,
            "total_sellers": s.total_sellers, "score": s.score}


CLUSTER_COLUMNS = ["cluster_id", "size", "flagged", "risk", "cohesion", "top_source",
                   "top_source_type", "top_source_key", "top_source_cluster_sellers",
                   "top_source_total_sellers", "top_source_score"]


def _summary(pb, c):
    top = [_source(pb, s) for s in c.top_shared]
    return {"cluster_id": c.id, "size": c.size, "flagged": c.flagged, "risk": c.risk,
            "cohesion": c.cohesion, "top_shared": top,
            "top_source": "%s:%s" % (top[0]["type"], top[0]["key"]) if top else ""}


def _too_big(e, field):
    """Whether GraphdError e refused a page size: over the daemon's
    --result-cap (INVALID_ARGUMENT "limit: at most N"), or a reply over a
    maximum message size (RESOURCE_EXHAUSTED, the server's or grpc's)."""
    if e.code == grpc.StatusCode.INVALID_ARGUMENT:
        return e.details.startswith(field + ":")
    return e.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message" in e.details


def _ts(values):
    """Unix seconds (0 = never) as datetime64 in UTC (NaT for 0)."""
    a = np.asarray(values, dtype=np.int64)
    return pd.to_datetime(pd.Series(a).where(a != 0), unit="s", utc=True)


def _ts1(v):
    """One Unix-seconds value as a UTC Timestamp (NaT for 0)."""
    return pd.Timestamp(int(v), unit="s", tz="UTC") if v else pd.NaT


def _i64(values):
    """An int64 array of a list or a repeated field (through the buffer /
    sequence protocol in C; np.fromiter is several times slower)."""
    return np.asarray(values, dtype=np.int64)


# ---------------------------------------------------------------- the client


class Client:
    """A connection to graphd.

    target: "HOST:PORT" (or any grpc target, "unix:/path").
    token: sent as `authorization: Bearer TOKEN` (see read_token_file);
      None sends none (a daemon without --tokens).
    case_id: sent as `x-case-id` with every call (the audit trail records it).
    TLS: when tls is True, or any of tls_ca / tls_cert / tls_key is given,
      the channel uses TLS: tls_ca a PEM file of the CAs to trust (default:
      the system's), tls_cert + tls_key the client certificate chain and
      key for mTLS (both or neither); tls_server_name overrides the name
      the server's certificate is checked against.
    timeout: seconds per unary rpc; stream_timeout: seconds per streamed
      read (StreamAssignments, DiffSnapshots; the server clamps every call
      to its --max-deadline-ms); watch_chunk: seconds per WatchJob call in
      wait() (it watches again after each, so waits are not bounded by the
      server's deadlines).
    stubs_dir: where the graphd.v1 stubs are (see load_stubs).
    options: extra grpc channel options [(name, value)].

    Nothing is sent until the first call: a wrong target shows as
    GraphdError UNAVAILABLE then."""

    def __init__(self, target, token=None, case_id=None, tls_ca=None, tls_cert=None,
                 tls_key=None, tls=None, tls_server_name=None, timeout=30.0,
                 stream_timeout=3600.0, watch_chunk=300.0, stubs_dir=None, options=()):
        self._pb, pb_grpc = load_stubs(stubs_dir)
        if not target:
            raise ValueError("target: empty (expected HOST:PORT)")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together (the client certificate "
                             "chain and its key)")
        self.target = target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.watch_chunk = watch_chunk
        md = []
        if token:
            md.append(("authorization", "Bearer " + token.strip()))
        if case_id:
            md.append(("x-case-id", str(case_id)))
        self._md = tuple(md)
        opts = [("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20)]
        if tls_server_name:
            opts.append(("grpc.ssl_target_name_override", tls_server_name))
        opts += list(options)
        if tls or tls_ca or tls_cert:
            def rd(p):
                with open(p, "rb") as f:
                    return f.read()
            creds = grpc.ssl_channel_credentials(
                root_certificates=rd(tls_ca) if tls_ca else None,
                private_key=rd(tls_key) if tls_key else None,
                certificate_chain=rd(tls_cert) if tls_cert else None)
            self._channel = grpc.secure_channel(target, creds, options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self._stub = pb_grpc.SellerGraphStub(self._channel)

    # -- plumbing ----------------------------------------------------------

    def close(self):
        """Closes the channel (calls in flight are cancelled)."""
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, req, timeout=None):
        try:
            return getattr(self._stub, method)(req, timeout=timeout or self.timeout,
                                               metadata=self._md)
        except grpc.RpcError as e:
            raise GraphdError._from_rpc(e, method) from None

    def _stream(self, method, req, timeout=None):
        """Yields a server stream's messages; GraphdError on failure; the
        call is cancelled when the caller stops early."""
        call = getattr(self._stub, method)(req, timeout=timeout or self.stream_timeout,
                                           metadata=self._md)
        try:
            for m in call:
                yield m
        except grpc.RpcError as e:
            raise GraphdError._from_rpc(e, method) from None
        finally:
            call.cancel()

    def _paged(self, method, make_req, field, page_size):
        """Every item of a paged list rpc. The page size is halved when the
        server refuses it (over its --result-cap: INVALID_ARGUMENT naming
        limit; a reply over its message size: RESOURCE_EXHAUSTED)."""
        out, token = [], ""
        while True:
            try:
                rep = self._call(method, make_req(page_size, token))
            except GraphdError as e:
                if _too_big(e, "limit") and page_size > 1:
                    page_size //= 2
                    continue
                raise
            out.extend(getattr(rep, field))
            token = rep.next_page_token
            if not token:
                return out

    def _resolve(self, snapshot_id):
        """snapshot_id, or the latest snapshot's id for 0."""
        if snapshot_id:
            return int(snapshot_id)
        return self._call("GetSnapshot", self._pb.SnapshotRequest(snapshot_id=0)).id

    # -- jobs ---------------------------------------------------------------

    def _spec(self, name, algorithm, resolution, iterations, seed, type_weights, hub_caps,
              min_tie_weight, since, until, flagged_labels, warm_start=None):
        pb = self._pb
        s = pb.ClusteringSpec(name=name or "")
        if algorithm:
            key = str(algorithm).strip().lower()
            if key not in ALGORITHMS:
                raise ValueError("algorithm: unknown %r (expected one of %s)"
                                 % (algorithm, ", ".join(ALGORITHMS)))
            s.algorithm = pb.Algorithm.Value(ALGORITHMS[key])
        s.resolution = float(resolution or 0)
        s.iterations = int(iterations or 0)
        s.seed = int(seed or 0)
        for t, w in (type_weights or {}).items():
            s.type_weights.add(type=_etype_value(pb, t, "type_weights"), weight=float(w))
        for t, n in (hub_caps or {}).items():
            s.hub_caps.add(type=_etype_value(pb, t, "hub_caps"), max_sellers=int(n))
        s.min_tie_weight = float(min_tie_weight or 0)
        s.window.since = _unix(since, "since")
        s.window.until = _unix(until, "until")
        s.flagged_labels.extend(list(flagged_labels or []))
        if warm_start is not None:
            key = str(warm_start).strip().lower()
            if key not in ("auto", "on", "off"):
                raise ValueError("warm_start: %r is not auto, on or off" % (warm_start,))
            s.warm_start = pb.WarmStart.Value("WARM_START_" + key.upper())
        return s

    def start_clustering(self, name=None, algorithm=None, resolution=None, iterations=None,
                         seed=None, type_weights=None, hub_caps=None, min_tie_weight=None,
                         since=None, until=None, flagged_labels=None, warm_start=None):
        """Queues a clustering job (StartClustering) and returns it (a Job,
        QUEUED or already RUNNING). Unset arguments take the server's
        defaults: algorithm "leiden-cpm" (or "leiden-modularity", "louvain",
        "label-propagation", "components", "infomap"); resolution 0.1 for
        CPM, 1 otherwise; Leiden until stable; seed 1; the investigators'
        type weights and hub caps (type_weights {"ip": 0.2}, hub_caps
        {"address": 300}, by entity type name); no min_tie_weight; an open
        window (since / until: Unix seconds, a date or an ISO date, UTC);
        flagged_labels ["counterfeit"]; warm_start "auto" (Leiden starts
        from the previous snapshot's membership when that snapshot was made
        with the same spec), "on" or "off".

        GraphdError: INVALID_ARGUMENT naming the spec field;
        RESOURCE_EXHAUSTED over the daemon's --cluster-max-sellers;
        PERMISSION_DENIED below the writer role."""
        spec = self._spec(name, algorithm, resolution, iterations, seed, type_weights, hub_caps,
                          min_tie_weight, since, until, flagged_labels, warm_start)
        return _job(self._pb, self._call("StartClustering",
                                         self._pb.StartClusteringRequest(spec=spec)))

    def job(self, job_id):
        """The job now (GetJob). GraphdError NOT_FOUND for an unknown id."""
        return _job(self._pb, self._call("GetJob", self._pb.JobRequest(job_id=job_id)))

    def cancel(self, job_id):
        """Cancels a job (CancelJob): a queued one at once, a running one
        about a second later (the Job returned may still say RUNNING; wait()
        then raises JobError CANCELLED). A finished job is left as it is."""
        return _job(self._pb, self._call("CancelJob", self._pb.JobRequest(job_id=job_id)))

    def wait(self, job_id, progress=None, timeout=None):
        """Follows a job to its end (WatchJob: the server sends every change
        of state, stage and progress) and returns the final Job when it
        SUCCEEDED. progress(job) is called with each Job received.
        timeout: seconds, None = as long as it takes.

        JobError: the job ended FAILED (code ABORTED) or CANCELLED.
        GraphdError: DEADLINE_EXCEEDED after timeout (the job goes on:
        cancel() stops it), NOT_FOUND for an unknown job, or the rpc's
        failure (UNAVAILABLE when the daemon goes away)."""
        end = None if timeout is None else time.monotonic() + timeout
        req = self._pb.JobRequest(job_id=job_id)
        last = None
        while last is None or not last.done:
            chunk = self.watch_chunk
            if end is not None:
                chunk = min(chunk, end - time.monotonic())
                if chunk <= 0:
                    raise GraphdError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                      "job %d still %s (%s) after %.0f s; it goes on"
                                      % (job_id, last.state if last else "unknown",
                                         last.stage if last else "-", timeout), "WatchJob")
            got = False
            try:
                with contextlib.closing(self._stream("WatchJob", req, timeout=chunk)) as st:
                    for m in st:
                        got = True
                        last = _job(self._pb, m)
                        if progress is not None:
                            progress(last)
                        if last.done:
                            break
            except GraphdError as e:
                if e.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
                continue  # watch again (or give up above)
            if not got or (last is not None and not last.done):
                raise GraphdError(grpc.StatusCode.UNKNOWN,
                                  "WatchJob for job %d ended before the job did" % job_id,
                                  "WatchJob")
        if last.state != "SUCCEEDED":
            raise JobError(last)
        return last

    def run_clustering(self, progress=None, timeout=None, **spec):
        """start_clustering(**spec), then wait(job.id, progress, timeout)."""
        job = self.start_clustering(**spec)
        return self.wait(job.id, progress=progress, timeout=timeout)

    # -- snapshots ------------------------------------------------------------

    def snapshots(self, page_size=100):
        """Every snapshot's manifest, newest first (ListSnapshots, paged):
        a DataFrame with columns MANIFEST_COLUMNS (snapshot_id, created_at,
        name, algorithm, seed, sellers, ties, hubs_skipped, clusters,
        flagged_sellers, risk_base_rate, objective, modularity,
        peak_rss_bytes, previous_snapshot_id, input_checksum, timings (dict
        stage -> seconds), spec (dict)). Empty when there is none."""
        pb = self._pb
        rows = self._paged("ListSnapshots",
                           lambda n, tok: pb.ListSnapshotsRequest(limit=n, page_token=tok),
                           "snapshots", page_size)
        return pd.DataFrame([_manifest(pb, m) for m in rows], columns=MANIFEST_COLUMNS)

    def snapshot(self, snapshot_id=0):
        """One manifest as a dict (keys as in snapshots()); 0 = the latest.
        GraphdError: NOT_FOUND, or FAILED_PRECONDITION when there is no
        snapshot yet."""
        return _manifest(self._pb, self._call("GetSnapshot",
                                              self._pb.SnapshotRequest(snapshot_id=snapshot_id)))

    def assignments(self, snapshot_id=0, keys=False):
        """Every seller's cluster (StreamAssignments): a DataFrame with
        int64 columns seller_id, cluster_id, ascending seller id, one row
        per seller of the snapshot (0 = the latest); attrs["snapshot_id"]
        names it. keys=True adds a column key: each seller's key as the
        snapshot recorded it. Built from the packed batches (4096 pairs
        each) with numpy, never row by row. GraphdError: NOT_FOUND,
        FAILED_PRECONDITION (no snapshot)."""
        sid = self._resolve(snapshot_id)
        sellers, clusters, names = [], [], []
        for b in self._stream("StreamAssignments",
                              self._pb.StreamAssignmentsRequest(snapshot_id=sid, keys=keys)):
            sellers.append(_i64(b.seller_ids))
            clusters.append(_i64(b.cluster_ids))
            if keys:
                names.extend(b.seller_keys)
        empty = np.empty(0, dtype=np.int64)
        cols = {"seller_id": np.concatenate(sellers) if sellers else empty,
                "cluster_id": np.concatenate(clusters) if clusters else empty}
        if keys:
            cols["key"] = pd.Series(names, dtype=object)
        df = pd.DataFrame(cols)
        df.attrs["snapshot_id"] = sid
        return df

    # -- alerts -------------------------------------------------------------

    def alerts(self, min_risk=0.0, label=None, cluster_id=0, after_seq=0, from_now=False,
               reconnect=True):
        """Follows WatchAlerts: yields one dict per alert (seq, time as a
        UTC Timestamp, seller_id, seller_key, snapshot_id, cluster_id,
        cluster_risk, cluster_size, previous_cluster_id, gain, tie,
        cluster_labels, labelled_members, reasons, evidence: a list of
        {member_id, member_key, tie, shared: [{type, key, sellers, weight,
        corroboration}]}) until the caller stops. Starts after after_seq (0:
        the oldest alert the daemon keeps) or, with from_now, at the alerts
        written from now on. When a stream ends at its deadline, or the
        daemon is unavailable and reconnect is set, it is reopened after
        the last seq yielded, so nothing is lost or repeated. GraphdError:
        INVALID_ARGUMENT (min_risk outside [0, 1], a bad label), NOT_FOUND
        (cluster_id not in the latest snapshot), OUT_OF_RANGE (after_seq
        older than the oldest kept: the message names it),
        FAILED_PRECONDITION (placement off), PERMISSION_DENIED below the
        investigator role."""
        pb = self._pb
        last = int(after_seq)
        first = True
        while True:
            req = pb.WatchAlertsRequest(min_risk=float(min_risk), label=label or "",
                                        cluster_id=int(cluster_id), after_seq=last,
                                        from_now=bool(from_now and first and not last))
            try:
                for ev in self._stream("WatchAlerts", req):
                    first = False
                    last = ev.seq
                    yield _alert(pb, ev)
                return  # the server ended the stream: only at shutdown
            except GraphdError as e:
                sc = grpc.StatusCode
                retry = e.code == sc.DEADLINE_EXCEEDED or (
                    reconnect and e.code in (sc.UNAVAILABLE, sc.CANCELLED))
                if not retry:
                    raise
                if e.code != sc.DEADLINE_EXCEEDED:
                    time.sleep(1)
            first = False

    def entities(self, ids, attributes=False, chunk=100000):
        """The entities with these ids (GetEntities, streamed; chunk ids a
        call): a DataFrame in the order of ids with columns id, type (a
        category), key, labels (a list), degree, seller_count, first_seen,
        last_seen (datetime64, UTC; NaT when never observed), cluster_id,
        cluster_snapshot_id (a seller's cluster in the latest snapshot)
        and, with attributes=True,
        attributes (a dict). Unknown ids are left out and listed, in order,
        in attrs["not_found"]; they fail nothing. GraphdError:
        INVALID_ARGUMENT (a chunk over the server's 1,000,000)."""
        pb = self._pb
        ids = [int(x) for x in ids]
        rows, missing = [], []
        for at in range(0, len(ids), chunk):
            req = pb.GetEntitiesRequest(ids=ids[at:at + chunk], attributes=attributes)
            for b in self._stream("GetEntities", req):
                rows.extend(b.entities)
                missing.extend(b.not_found)
        types = [_etype_name(pb, t) for t in range(1, 8)]
        cols = {
            "id": _i64([e.id for e in rows]),
            "type": pd.Categorical([_etype_name(pb, e.type) for e in rows], categories=types),
            "key": pd.Series([e.key for e in rows], dtype=object),
            "labels": pd.Series([list(e.labels) for e in rows], dtype=object),
            "degree": _i64([e.degree for e in rows]),
            "seller_count": _i64([e.seller_count for e in rows]),
            "first_seen": _ts([e.first_seen for e in rows]),
            "last_seen": _ts([e.last_seen for e in rows]),
            "cluster_id": _i64([e.cluster_id for e in rows]),
            "cluster_snapshot_id": _i64([e.cluster_snapshot_id for e in rows]),
        }
        if attributes:
            cols["attributes"] = pd.Series([{a.name: a.value for a in e.attributes}
                                            for e in rows], dtype=object)
        df = pd.DataFrame(cols)
        df.attrs["not_found"] = [int(x) for x in missing]
        return df

    def supply_sources(self, snapshot_id=0, min_size=2, page_size=10000):
        """Every cluster's supply sources as a long table (ListClusters, all
        pages, riskiest cluster first): one row per (cluster, source) with
        columns cluster_id, rank (1 = the strongest), type (a category),
        key, entity_id, cluster_sellers, total_sellers, score. Clusters
        smaller than min_size are left out. Writes to CSV as it is."""
        pb = self._pb
        sid = self._resolve(snapshot_id)
        rows = self._paged("ListClusters", lambda n, tok: pb.ListClustersRequest(
            snapshot_id=sid, order=pb.CLUSTER_ORDER_RISK, min_size=min_size, limit=n,
            page_token=tok), "clusters", page_size)
        cid, rank, typ, key, eid, cs, ts, score = [], [], [], [], [], [], [], []
        for c in rows:
            for i, x in enumerate(c.top_shared):
                cid.append(c.id)
                rank.append(i + 1)
                typ.append(_etype_name(pb, x.entity.type))
                key.append(x.entity.key)
                eid.append(x.entity.id)
                cs.append(x.cluster_sellers)
                ts.append(x.total_sellers)
                score.append(x.score)
        df = pd.DataFrame({
            "cluster_id": _i64(cid), "rank": _i64(rank),
            "type": pd.Categorical(typ, categories=[_etype_name(pb, t) for t in range(2, 8)]),
            "key": pd.Series(key, dtype=object), "entity_id": _i64(eid),
            "cluster_sellers": _i64(cs), "total_sellers": _i64(ts),
            "score": np.asarray(score, dtype=np.float64)})
        df.attrs["snapshot_id"] = sid
        return df

    def clusters(self, snapshot_id=0, order="risk", min_size=0, page_size=10000):
        """Every cluster summary of a snapshot (ListClusters, all pages):
        a DataFrame with columns cluster_id, size, flagged, risk, cohesion,
        top_source ("type:key" of the strongest supply source, "" without)
        and that source's top_source_type (a category), top_source_key,
        top_source_cluster_sellers, top_source_total_sellers and
        top_source_score (0 without); every source, up to 5 a cluster, is
        in supply_sources(). No list columns: it writes to CSV as it is.
        order "risk" (risk, then size, descending) or "size"; clusters
        smaller than min_size are left out. attrs["snapshot_id"] names the
        snapshot. GraphdError: NOT_FOUND, FAILED_PRECONDITION (no
        snapshot)."""
        pb = self._pb
        orders = {"risk": pb.CLUSTER_ORDER_RISK, "size": pb.CLUSTER_ORDER_SIZE}
        if order not in orders:
            raise ValueError("order: expected 'risk' or 'size', got %r" % (order,))
        sid = self._resolve(snapshot_id)
        rows = self._paged("ListClusters", lambda n, tok: pb.ListClustersRequest(
            snapshot_id=sid, order=orders[order], min_size=min_size, limit=n, page_token=tok),
            "clusters", page_size)
        n = len(rows)
        ids, size, flagged, tcs, tts = (np.zeros(n, dtype=np.int64) for _ in range(5))
        risk, cohesion, tscore = np.empty(n), np.empty(n), np.zeros(n)
        first, ttype, tkey = [""] * n, [None] * n, [""] * n
        for i, c in enumerate(rows):
            ids[i], size[i], flagged[i] = c.id, c.size, c.flagged
            risk[i], cohesion[i] = c.risk, c.cohesion
            if c.top_shared:
                t = c.top_shared[0]
                ttype[i] = _etype_name(pb, t.entity.type)
                tkey[i] = t.entity.key
                first[i] = "%s:%s" % (ttype[i], tkey[i])
                tcs[i], tts[i], tscore[i] = t.cluster_sellers, t.total_sellers, t.score
        df = pd.DataFrame({
            "cluster_id": ids, "size": size, "flagged": flagged, "risk": risk,
            "cohesion": cohesion, "top_source": pd.Series(first, dtype=object),
            "top_source_type": pd.Categorical(
                ttype, categories=[_etype_name(pb, t) for t in range(2, 8)]),
            "top_source_key": pd.Series(tkey, dtype=object),
            "top_source_cluster_sellers": tcs, "top_source_total_sellers": tts,
            "top_source_score": tscore}, columns=CLUSTER_COLUMNS)
        df.attrs["snapshot_id"] = sid
        return df

    def cluster(self, snapshot_id, cluster_id, max_ties=100, page_size=10000):
        """One cluster (GetCluster) with all its members (paged by seller
        id) and its strongest max_ties evidence ties: a ClusterDetail.
        snapshot_id 0 = the latest. GraphdError: NOT_FOUND (no such
        snapshot or cluster), INVALID_ARGUMENT (cluster_id 0, max_ties over
        the daemon's --result-cap)."""
        pb = self._pb
        sid = self._resolve(snapshot_id)
        members, after, first, flagged, today = [], 0, None, set(), {}
        while True:
            try:
                rep = self._call("GetCluster", pb.GetClusterRequest(
                    snapshot_id=sid, cluster_id=cluster_id, max_members=page_size,
                    max_ties=max_ties if first is None else 1, after_seller=after, live=True))
            except GraphdError as e:
                if _too_big(e, "max_members") and page_size > 1:
                    page_size //= 2
                    continue
                raise
            if first is None:
                first = rep
            members.extend(rep.members)
            flagged.update(rep.flagged_members)
            today.update((e.id, e) for e in rep.live_members)
            if not rep.more_members or not rep.members:
                break
            after = rep.members[-1].id
        # seller_id, key and flagged are the snapshot's own record; the
        # *_today columns are today's records (present_today False: deleted
        # since), which change as the live graph does.
        now = [today.get(e.id) for e in members]
        empty = pb.Entity()
        live = [x if x is not None else empty for x in now]
        m = pd.DataFrame({
            "seller_id": _i64([e.id for e in members]),
            "key": pd.Series([e.key for e in members], dtype=object),
            "flagged": np.array([e.id in flagged for e in members], dtype=bool),
            "present_today": np.array([x is not None for x in now], dtype=bool),
            "labels_today": pd.Series([list(e.labels) for e in live], dtype=object),
            "degree_today": _i64([e.degree for e in live]),
            "seller_count_today": _i64([e.seller_count for e in live]),
            "first_seen_today": _ts([e.first_seen for e in live]),
            "last_seen_today": _ts([e.last_seen for e in live]),
            "attributes_today": pd.Series([{a.name: a.value for a in e.attributes}
                                           for e in live], dtype=object),
        })
        ties = pd.DataFrame({
            "seller_a": _i64([t.seller_a for t in first.ties]),
            "seller_b": _i64([t.seller_b for t in first.ties]),
            "weight": np.array([t.weight for t in first.ties], dtype=np.float64),
        })
        return ClusterDetail(snapshot_id=sid, summary=_summary(pb, first.cluster), members=m,
                             ties=ties, ties_stored=first.ties_stored)

    # ------------------------------------------------------------ writes

    def _link_msgs(self, links):
        pb = self._pb
        need = {"a_type", "a_key", "b_type", "b_key"}
        if not need <= set(links.columns):
            raise ValueError("links: columns a_type, a_key, b_type, b_key (and seen) needed, "
                             "got %s" % list(links.columns))
        seen = links["seen"] if "seen" in links.columns else [0] * len(links)
        return [pb.LinkInput(a=pb.EntityRef(type=_etype_value(pb, at, "a_type"), key=str(ak)),
                             b=pb.EntityRef(type=_etype_value(pb, bt, "b_type"), key=str(bk)),
                             seen=_unix(sn, "links.seen"))
                for at, ak, bt, bk, sn in zip(links["a_type"], links["a_key"], links["b_type"],
                                              links["b_key"], seen)]

    def _entity_msgs(self, entities):
        pb = self._pb
        if not {"type", "key"} <= set(entities.columns):
            raise ValueError("entities: columns type, key (and labels, attributes, seen) "
                             "needed, got %s" % list(entities.columns))
        out = []
        for row in entities.to_dict("records"):
            labels = row.get("labels")
            if isinstance(labels, str):
                labels = [x for x in labels.split(";") if x]
            attrs = row.get("attributes") or {}
            out.append(pb.EntityInput(
                type=_etype_value(pb, row["type"], "type"), key=str(row["key"]),
                labels=list(labels) if labels is not None and not isinstance(labels, float)
                else [],
                attributes=[pb.Attribute(name=str(k), value=str(v)) for k, v in attrs.items()],
                seen=_unix(row.get("seen"), "entities.seen")))
        return out

    @staticmethod
    def _totals(t):
        return {f.name: getattr(t, f.name) for f in t.DESCRIPTOR.fields}

    def upsert(self, links=None, entities=None, request_id=""):
        """Writes links (a DataFrame a_type, a_key, b_type, b_key and
        optionally seen: Unix seconds or timestamps) and entities (type,
        key and optionally labels: a list or ";"-joined, attributes: a
        dict, seen) in one Upsert: atomic and durable when it returns.
        Types are names ("seller", "address" ...). Returns the totals
        (entities_created, entities_updated, links_created, links_updated)
        and duplicate. GraphdError: INVALID_ARGUMENT naming the field,
        RESOURCE_EXHAUSTED over the daemon's limits (use ingest() for big
        frames)."""
        pb = self._pb
        req = pb.UpsertRequest(
            request_id=request_id,
            links=self._link_msgs(links) if links is not None else [],
            entities=self._entity_msgs(entities) if entities is not None else [])
        rep = self._call("Upsert", req)
        out = self._totals(rep.totals)
        out["duplicate"] = rep.duplicate
        return out

    def ingest(self, links=None, entities=None, batch=10000):
        """Streams links and then entities (DataFrames as for upsert) through
        one Ingest call, batch records a message; each message is committed
        atomically and durably. Returns the totals and messages."""
        pb = self._pb
        msgs = []
        if links is not None:
            lm = self._link_msgs(links)
            msgs += [pb.UpsertRequest(links=lm[i:i + batch]) for i in range(0, len(lm), batch)]
        if entities is not None:
            em = self._entity_msgs(entities)
            msgs += [pb.UpsertRequest(entities=em[i:i + batch])
                     for i in range(0, len(em), batch)]
        try:
            rep = self._stub.Ingest(iter(msgs), timeout=self.stream_timeout, metadata=self._md)
        except grpc.RpcError as e:
            raise GraphdError._from_rpc(e, "Ingest") from None
        out = self._totals(rep.totals)
        out["messages"] = rep.messages
        return out

    def label(self, entity_type, key, add=(), remove=()):
        """Adds and removes labels of one entity (SetLabels; entity_type a name,
        key its key): its labels afterwards, sorted. GraphdError: NOT_FOUND,
        INVALID_ARGUMENT naming the bad label."""
        pb = self._pb
        rep = self._call("SetLabels", pb.SetLabelsRequest(
            ref=pb.EntityRef(type=_etype_value(pb, entity_type, "entity_type"), key=str(key)),
            add=list(add), remove=list(remove)))
        return list(rep.labels)

    def diff(self, from_id, to_id=0, min_part_size=0, moves=True, keys=False):
        """What changed from snapshot from_id to to_id (DiffSnapshots; to_id
        0 = the latest): a SnapshotDiff. min_part_size (0 = the server's 2):
        smaller clusters take no part in cluster events. moves=False stops
        reading at the first moved seller (the counts still hold them);
        keys=True adds the moved sellers' keys (column key, as the "to"
        snapshot recorded them).
        GraphdError: NOT_FOUND naming the missing snapshot, INVALID_ARGUMENT
        (from_id 0), FAILED_PRECONDITION (to_id 0 and no snapshot)."""
        pb = self._pb
        K = pb.DiffEvent
        kinds = {K.KIND_CONTINUED: "continued", K.KIND_MERGED: "merged", K.KIND_SPLIT: "split",
                 K.KIND_BORN: "born", K.KIND_DISSOLVED: "dissolved"}
        summary = None
        ev_num, ev_kind, ev_from, ev_to, n_events = [], [], [], [], 0
        mv_s, mv_f, mv_t, mv_k = [], [], [], []
        req = pb.DiffSnapshotsRequest(from_snapshot_id=from_id, to_snapshot_id=to_id,
                                      min_part_size=min_part_size, keys=keys)
        with contextlib.closing(self._stream("DiffSnapshots", req)) as st:
            for e in st:
                if e.kind == K.KIND_SUMMARY:
                    c = e.counts
                    summary = {f.name: getattr(c, f.name) for f in c.DESCRIPTOR.fields}
                    summary["text"] = e.summary
                elif e.kind == K.KIND_MOVED:
                    if not moves:
                        break
                    mv_s.append(e.seller_id)
                    mv_f.append(e.from_clusters[0] if e.from_clusters else 0)
                    mv_t.append(e.to_clusters[0] if e.to_clusters else 0)
                    mv_k.append(e.seller_key)
                elif e.kind in kinds:
                    frm, to = list(e.from_clusters) or [0], list(e.to_clusters) or [0]
                    for f in frm:
                        for t in to:
                            ev_num.append(n_events)
                            ev_kind.append(kinds[e.kind])
                            ev_from.append(f)
                            ev_to.append(t)
                    n_events += 1
        if summary is None:
            raise GraphdError(grpc.StatusCode.UNKNOWN, "DiffSnapshots sent no summary",
                              "DiffSnapshots")
        clusters = pd.DataFrame({
            "event": _i64(ev_num),
            "kind": pd.Categorical(ev_kind, categories=list(kinds.values())),
            "from_cluster": _i64(ev_from), "to_cluster": _i64(ev_to)})
        mv = pd.DataFrame({"seller_id": _i64(mv_s), "from_cluster": _i64(mv_f),
                           "to_cluster": _i64(mv_t)})
        if keys:
            mv["key"] = pd.Series(mv_k, dtype=object)
        return SnapshotDiff(summary=summary, clusters=clusters, moves=mv)
