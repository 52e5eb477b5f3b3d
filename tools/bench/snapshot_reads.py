#!/usr/bin/python3
"""Reading a big snapshot: ListClusters pages and the bulk id lookup, each
against a reference measured in the same run.

One daemon (graphd --data TMP --listen 127.0.0.1:0 --no-audit) holds a
sellergen network of --sellers sellers (default 200000: about 185,000
clusters, most of them singletons), loaded with graphctl ingest and
clustered once with the default spec. Then, --repeats times:

  ListClusters  (by risk, 100 a page) the first page and the last page,
                each asked --calls times (median); the last page's token
                comes from a full paging done before. Reference: the
                first page. A ratio near 1 means a page costs the same
                wherever it is. And the full paging at 100 a page (wall).
  GetEntities   every seller id of the snapshot (streamed, 1024 a message)
                against GetEntity one id at a time on one connection
                (--lookups ids, sequential): ids per second, and the ratio.

Reported: medians over the repeats. Run from the source tree:

  PYTHONPATH=build/proto /usr/bin/python3 tools/bench/snapshot_reads.py \\
      --graphd build/graphd/graphd --graphctl build/tools/graphctl/graphctl \\
      --sellergen build/tools/gen/sellergen

Needs Debian's python3-grpcio and python3-protobuf.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from detection import start_graphd


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--graphd", required=True)
    ap.add_argument("--graphctl", required=True)
    ap.add_argument("--sellergen", required=True)
    ap.add_argument("--sellers", type=int, default=200000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--lookups", type=int, default=5000)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()

    import grpc
    from graphd.v1 import graphd_pb2 as pb
    from graphd.v1 import graphd_pb2_grpc as pbg

    tmp = tempfile.mkdtemp(prefix="graphd-snapbench.", dir=a.workdir)
    proc = None
    try:
        gen = os.path.join(tmp, "gen")
        subprocess.run([a.sellergen, "--sellers", str(a.sellers), "--seed", str(a.seed),
                        "--out", gen], check=True, capture_output=True)
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        proc, addr = start_graphd(a.graphd, data)
        subprocess.run([a.graphctl, "--addr", addr, "ingest", os.path.join(gen, "links.csv"),
                        os.path.join(gen, "entities.csv")], check=True, capture_output=True)
        ch = grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 64 << 20)])
        st = pbg.SellerGraphStub(ch)
        job = st.StartClustering(pb.StartClusteringRequest(), timeout=60)
        last = None
        for last in st.WatchJob(pb.JobRequest(job_id=job.id), timeout=3600):
            pass
        if last is None or last.state != pb.JOB_STATE_SUCCEEDED:
            raise RuntimeError("clustering failed: %s" % (last,))
        sid = last.snapshot_id
        clusters = st.GetSnapshot(pb.SnapshotRequest(snapshot_id=sid), timeout=60).clusters

        def page(tok=""):
            return st.ListClusters(pb.ListClustersRequest(snapshot_id=sid, limit=100,
                                                          page_token=tok), timeout=60)

        def timed(fn, n):
            ts = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return statistics.median(ts)

        ids = []
        for b in st.StreamAssignments(pb.StreamAssignmentsRequest(snapshot_id=sid), timeout=600):
            ids.extend(b.seller_ids)
        rows = []
        for rep in range(a.repeats):
            # full paging, remembering the last page's token
            t0 = time.perf_counter()
            tok, prev, pages = "", "", 0
            while True:
                r = page(tok)
                pages += 1
                prev, tok = tok, r.next_page_token
                if not tok:
                    break
            full = time.perf_counter() - t0
            first = timed(lambda: page(), a.calls)
            lastp = timed(lambda: page(prev), a.calls)
            # bulk lookup against one at a time
            t0 = time.perf_counter()
            got = sum(len(b.entities) for b in st.GetEntities(pb.GetEntitiesRequest(ids=ids),
                                                               timeout=600))
            bulk = len(ids) / (time.perf_counter() - t0)
            assert got == len(ids), (got, len(ids))
            sample = ids[:a.lookups]
            t0 = time.perf_counter()
            for i in sample:
                st.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(id=i)), timeout=60)
            single = len(sample) / (time.perf_counter() - t0)
            rows.append(dict(full_s=full, pages=pages, first_ms=first * 1e3, last_ms=lastp * 1e3,
                             last_over_first=lastp / first, bulk_ids_s=bulk,
                             single_ids_s=single, bulk_over_single=bulk / single))
            print("repeat %d: %s" % (rep + 1, json.dumps({k: round(v, 4) for k, v in
                                                          rows[-1].items()})), file=sys.stderr)
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print("snapshot %d: %d sellers, %d clusters; medians of %d repeats" % (
            sid, len(ids), clusters, a.repeats))
        print("| what | figure |")
        print("|---|---|")
        print("| ListClusters first page (100, by risk) | %.2f ms |" % med["first_ms"])
        print("| ListClusters last page | %.2f ms (x%.2f the first) |" % (
            med["last_ms"], med["last_over_first"]))
        print("| full paging, 100 a page | %.2f s for %d pages |" % (med["full_s"], med["pages"]))
        print("| GetEntities, every seller | %.0f ids/s |" % med["bulk_ids_s"])
        print("| GetEntity one at a time | %.0f ids/s |" % med["single_ids_s"])
        print("| bulk / one at a time | x%.1f |" % med["bulk_over_single"])
        print(json.dumps({"bench": "snapshot_reads", "sellers": len(ids), "clusters": clusters,
                          "medians": med, "repeats": rows}))
        ch.close()
    finally:
        if proc:
            proc.terminate()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
