#!/usr/bin/python3
"""weekly_clusters: the weekly analytics job, as an example of graphd_client.

Clusters the whole seller graph (StartClustering, followed to the end with
a progress line on stderr), loads the new snapshot's assignments and
cluster summaries into pandas, compares the snapshot with the previous one
(the snapshot's previous_snapshot_id, or --previous ID) and writes to
--out DIR:

  top_clusters.csv   the --top N riskiest clusters of at least --min-size
                     sellers (risk, then size, descending): rank,
                     snapshot_id, cluster_id, size, flagged, risk, cohesion,
                     change (continued / merged / split / born since the
                     previous snapshot, ';'-joined), moved_in, moved_out
                     (sellers that changed cluster into / out of it), the
                     top supply source (type, key, sellers of the cluster
                     using it, sellers in all using it) and all of them
                     (top_shared: "type:key cluster/total" ';'-joined)
  diff_summary.json  the diff's counts (merged, split, born, dissolved,
                     continued, sellers moved / stayed / added / removed
                     ...), its one-line summary, and the cluster events;
                     from_snapshot_id null when there is no previous one
  diff_summary.csv   the same counts as one CSV row (when there is a diff)
  moved_sellers.csv  seller_id, from_cluster, to_cluster (when there is a diff)
  snapshot.json      the new snapshot's manifest

Each file is written whole (to NAME.tmp, then renamed).

  PYTHONPATH=tools/python:build/proto /usr/bin/python3 \\
      tools/python/examples/weekly_clusters.py --out reports/week48 --top 20

Exit status: 0 done; 1 graphd answered an error, or the job failed or was
cancelled (the message names the status); 2 usage; 69 graphd cannot be
reached; 73 the output cannot be written.
"""

import argparse
import datetime
import json
import os
import sys
import time

EXIT_RPC, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_CANTCREAT = 1, 2, 69, 73


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="weekly_clusters",
        description="Cluster graphd's seller graph, report the riskiest clusters and what "
                    "changed since the previous snapshot.",
        epilog="Exit status: 0 done, 1 graphd error or the job failed/was cancelled, 2 usage, "
               "69 graphd unreachable, 73 output not writable.")
    c = p.add_argument_group("connection")
    c.add_argument("--target", default=os.environ.get("GRAPHD_ADDR") or "127.0.0.1:7419",
                   help="graphd HOST:PORT (default $GRAPHD_ADDR, else 127.0.0.1:7419)")
    c.add_argument("--token-file", help="bearer token: the file's first line "
                   "(default $GRAPHD_TOKEN, else none)")
    c.add_argument("--case-id", default=os.environ.get("GRAPHD_CASE_ID"),
                   help="x-case-id for the audit trail (default $GRAPHD_CASE_ID)")
    c.add_argument("--tls-ca", help="TLS: PEM file of the CAs to trust")
    c.add_argument("--tls-cert", help="mTLS: client certificate chain (PEM)")
    c.add_argument("--tls-key", help="mTLS: client key (PEM)")
    c.add_argument("--tls-server-name", help="TLS: name to check the server certificate for")
    c.add_argument("--timeout", type=float, default=60.0, help="seconds per rpc (default 60)")
    c.add_argument("--wait-timeout", type=float, default=None,
                   help="seconds to wait for the job (default: until it ends)")
    s = p.add_argument_group("clustering spec (server defaults when left out)")
    s.add_argument("--name", help="name of the run (default weekly-YYYY-Www)")
    s.add_argument("--algorithm", help="leiden-cpm (default), leiden-modularity, louvain, "
                   "label-propagation, components, infomap")
    s.add_argument("--resolution", type=float)
    s.add_argument("--iterations", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--weight", action="append", default=[], metavar="TYPE=W",
                   help="evidence weight of an entity type (repeat)")
    s.add_argument("--cap", action="append", default=[], metavar="TYPE=N",
                   help="hub cap of an entity type (repeat)")
    s.add_argument("--min-tie", type=float, help="drop seller-seller ties lighter than this")
    s.add_argument("--since", help="only links seen from this date (YYYY-MM-DD or Unix seconds)")
    s.add_argument("--until", help="only links seen until this date")
    s.add_argument("--label", action="append", default=[],
                   help="labels that count as flagged (repeat; default counterfeit)")
    o = p.add_argument_group("report")
    o.add_argument("--out", required=True, help="directory for the report files")
    o.add_argument("--top", type=int, default=20, help="riskiest clusters to report (default 20)")
    o.add_argument("--min-size", type=int, default=2,
                   help="smallest cluster to report (default 2)")
    o.add_argument("--previous", type=int, default=None,
                   help="snapshot to diff against (default: the one before the new snapshot)")
    o.add_argument("--no-progress", action="store_true", help="no progress output")
    a = p.parse_args(argv)
    if a.top < 1:
        p.error("--top: expected 1 or more, got %d" % a.top)
    if a.min_size < 1:
        p.error("--min-size: expected 1 or more, got %d" % a.min_size)
    a.weights = pairs(p, "--weight", a.weight, float)
    a.caps = pairs(p, "--cap", a.cap, int)
    a.since = when(p, "--since", a.since)
    a.until = when(p, "--until", a.until)
    return a


def pairs(p, opt, values, conv):
    out = {}
    for v in values:
        t, sep, x = v.partition("=")
        try:
            if not sep or not t:
                raise ValueError
            out[t.strip().lower()] = conv(x)
        except ValueError:
            p.error("%s: expected TYPE=VALUE (e.g. address=0.5), got %r" % (opt, v))
    return out


def when(p, opt, v):
    if v is None:
        return None
    if v.isdigit():
        return int(v)
    try:
        datetime.date.fromisoformat(v)
    except ValueError:
        p.error("%s: expected YYYY-MM-DD or Unix seconds, got %r" % (opt, v))
    return v


class Progress:
    """One status line on stderr: redrawn in place on a terminal, one line
    per stage otherwise (logs)."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = None

    def __call__(self, job):
        if not self.enabled:
            return
        line = "job %d %s %-9s %3.0f%% %6.1fs" % (job.id, job.state, job.stage,
                                                  100 * job.progress, time.monotonic() - self.t0)
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
            if job.done:
                sys.stderr.write("\n")
        elif (job.state, job.stage) != self.last:
            sys.stderr.write(line + "\n")
        self.last = (job.state, job.stage)
        sys.stderr.flush()


def write_atomic(path, write):
    tmp = path + ".tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_value(v):
    """Times (pandas Timestamps) as ISO 8601 in UTC, NaT as null."""
    if v is None or v != v:  # NaT
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    raise TypeError("not JSON: %r" % (v,))


def write_json(path, obj):
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_value)
            f.write("\n")
    write_atomic(path, w)


def write_csv(path, df):
    write_atomic(path, lambda tmp: df.to_csv(tmp, index=False))


def top_clusters(pd, clusters, assignments, diff, sid, top, min_size, sources=None):
    """The report table: the top riskiest clusters with their change since
    the previous snapshot and their supply sources."""
    cand = clusters[clusters["size"] >= min_size]  # (asked for already)
    # The server's risk order: risk, then size, descending; id breaks ties.
    cand = cand.sort_values(["risk", "size", "cluster_id"], ascending=[False, False, True],
                            kind="mergesort").head(top).reset_index(drop=True)
    t = pd.DataFrame({
        "rank": range(1, len(cand) + 1),
        "snapshot_id": sid,
        "cluster_id": cand["cluster_id"],
        "size": cand["size"],
        "flagged": cand["flagged"],
        "risk": cand["risk"],
        "cohesion": cand["cohesion"],
    })
    # Members as assigned (a consistency check of the two reads).
    counts = assignments["cluster_id"].value_counts()
    t["members_assigned"] = t["cluster_id"].map(counts).fillna(0).astype("int64")
    change = {}
    moved_in = moved_out = None
    if diff is not None:
        # One row per (event, old, new) pair: the new clusters of every
        # event but a dissolution, once per event.
        ev = diff.clusters[diff.clusters["kind"] != "dissolved"]
        for kind, cid in ev[["kind", "to_cluster"]].drop_duplicates().itertuples(index=False):
            change.setdefault(int(cid), []).append(kind)
        moved_in = diff.moves["to_cluster"].value_counts()
        moved_out = diff.moves["from_cluster"].value_counts()
    t["change"] = [";".join(change.get(int(c), [])) for c in t["cluster_id"]]
    for col, vc in (("moved_in", moved_in), ("moved_out", moved_out)):
        t[col] = (t["cluster_id"].map(vc).fillna(0).astype("int64") if vc is not None else 0)

    for col in ("top_source_type", "top_source_key", "top_source_cluster_sellers",
                "top_source_total_sellers"):
        t[col] = [None if not k else v for k, v in zip(cand["top_source_key"], cand[col])]
    joined = {} if sources is None else {
        cid: ";".join("%s:%s %d/%d" % (r.type, r.key, r.cluster_sellers, r.total_sellers)
                      for r in g.itertuples(index=False))
        for cid, g in sources.groupby("cluster_id", sort=False)}
    t["top_shared"] = [joined.get(int(c), "") for c in cand["cluster_id"]]
    return t


def diff_report(diff):
    """diff_summary.json's content."""
    s = {k: v for k, v in diff.summary.items() if k != "text"}
    s["summary"] = diff.summary["text"]
    ev = diff.clusters

    def events(kind):
        return [g for _, g in ev[ev["kind"] == kind].groupby("event", sort=True)]
    s["merged_clusters"] = [{"to": int(g["to_cluster"].iloc[0]),
                             "from": [int(x) for x in g["from_cluster"]]}
                            for g in events("merged")]
    s["split_clusters"] = [{"from": int(g["from_cluster"].iloc[0]),
                            "to": [int(x) for x in g["to_cluster"]]} for g in events("split")]
    s["born_clusters"] = [int(x) for x in ev.loc[ev["kind"] == "born", "to_cluster"]]
    s["dissolved_clusters"] = [int(x) for x in ev.loc[ev["kind"] == "dissolved", "from_cluster"]]
    return s


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import pandas as pd
        import grpc
        import graphd_client as gc
    except ImportError as e:
        print("weekly_clusters: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    try:
        token = os.environ.get("GRAPHD_TOKEN") or None
        if a.token_file:
            token = gc.read_token_file(a.token_file)
    except (OSError, ValueError) as e:
        print("weekly_clusters: --token-file: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    try:
        client = gc.Client(a.target, token=token, case_id=a.case_id, tls_ca=a.tls_ca,
                           tls_cert=a.tls_cert, tls_key=a.tls_key,
                           tls_server_name=a.tls_server_name, timeout=a.timeout)
    except (OSError, ValueError) as e:
        print("weekly_clusters: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    try:
        os.makedirs(a.out, exist_ok=True)
    except OSError as e:
        print("weekly_clusters: --out %s: %s" % (a.out, e), file=sys.stderr)
        return EXIT_CANTCREAT

    name = a.name
    if not name:
        y, w, _ = datetime.date.today().isocalendar()
        name = "weekly-%d-W%02d" % (y, w)
    with client:
        try:
            if a.previous is not None:
                client.snapshot(a.previous)  # exists, before any work is done
            job = client.start_clustering(
                name=name, algorithm=a.algorithm, resolution=a.resolution,
                iterations=a.iterations, seed=a.seed, type_weights=a.weights, hub_caps=a.caps,
                min_tie_weight=a.min_tie, since=a.since, until=a.until,
                flagged_labels=a.label)
            job = client.wait(job.id, progress=Progress(not a.no_progress),
                              timeout=a.wait_timeout)
            sid = job.snapshot_id
            manifest = client.snapshot(sid)
            assignments = client.assignments(sid)
            # Only the clusters the report can use: singletons are most
            # of a snapshot's clusters and none of its risk.
            clusters = client.clusters(sid, min_size=a.min_size)
            sources = client.supply_sources(sid, min_size=max(a.min_size, 2))
            prev = a.previous if a.previous is not None else manifest["previous_snapshot_id"]
            diff = None
            if prev:
                try:
                    diff = client.diff(prev, sid)
                except gc.GraphdError as e:
                    # The snapshot before this one may have been deleted
                    # since; one named with --previous must exist.
                    if a.previous is not None or e.code != grpc.StatusCode.NOT_FOUND:
                        raise
                    print("weekly_clusters: previous snapshot %d is gone (%s); no diff"
                          % (prev, e), file=sys.stderr)
        except ValueError as e:
            print("weekly_clusters: %s" % e, file=sys.stderr)
            return EXIT_USAGE
        except gc.GraphdError as e:
            print("weekly_clusters: %s" % e, file=sys.stderr)
            return EXIT_UNAVAILABLE if e.code == grpc.StatusCode.UNAVAILABLE else EXIT_RPC

    top = top_clusters(pd, clusters, assignments, diff, sid, a.top, a.min_size, sources)
    paths = {k: os.path.join(a.out, k) for k in
             ("top_clusters.csv", "diff_summary.json", "diff_summary.csv",
              "moved_sellers.csv", "snapshot.json")}
    try:
        write_csv(paths["top_clusters.csv"], top)
        write_json(paths["snapshot.json"], manifest)
        if diff is not None:
            rep = diff_report(diff)
            write_json(paths["diff_summary.json"], rep)
            write_csv(paths["diff_summary.csv"], pd.DataFrame(
                [{k: v for k, v in rep.items() if not isinstance(v, list)}]))
            write_csv(paths["moved_sellers.csv"], diff.moves)
        else:
            write_json(paths["diff_summary.json"], {
                "from_snapshot_id": None, "to_snapshot_id": sid,
                "summary": "no previous snapshot"})
    except OSError as e:
        print("weekly_clusters: %s" % e, file=sys.stderr)
        return EXIT_CANTCREAT

    print("snapshot %d (job %d, %s): %d sellers, %d clusters, %d of them with %d+ sellers"
          % (sid, job.id, name, len(assignments), manifest["clusters"], len(clusters),
             a.min_size))
    print("top %d clusters by risk -> %s" % (len(top), paths["top_clusters.csv"]))
    if diff is not None:
        s = diff.summary
        print("since snapshot %d: %d merged, %d split, %d born, %d dissolved, %d sellers moved "
              "-> %s" % (s["from_snapshot_id"], s["merged"], s["split"], s["born"],
                         s["dissolved"], s["sellers_moved"], paths["diff_summary.json"]))
    else:
        print("no previous snapshot to compare with")
    return 0


if __name__ == "__main__":
    sys.exit(main())
