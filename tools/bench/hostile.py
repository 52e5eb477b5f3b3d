#!/usr/bin/python3
"""A control client's latency while one caller attacks graphd, against the
same daemon unloaded, in the same run.

One daemon (graphd --data TMP --listen 127.0.0.1:0 --threads 2 --no-audit,
plus every --graphd-arg) holds a marketplace of 30000 sellers with private
devices and a crowd of 9000 sellers sharing two addresses (each
corroborates the other, so both are evidence). The control client, on a
connection of its own, makes --calls sequential calls of each of
Health/Check and GetEntity (a seller of the crowd: its evidence reads are
the most expensive GetEntity here) and records every latency. It does so
unloaded and under each attack, the order rotating every repeat:

  A  two callers repeat a 2-hop LinkedSellers from a crowd member with the
     address hub cap raised to 10000 (the largest graphd allows by
     default): every frontier seller walks the crowd's cached lists
  B  eight Ingest streams, each sending UpsertRequests of 100000 links
     (about 3 MB on the wire, 35-40 MB decoded) as fast as graphd takes
     them
  C  2000 Ingest streams that send nothing (1-hour deadlines), on eight
     connections of 250

Then, on the same data with --max-query-work 0 (so only the deadline stops
it), attack A's query with a 500 ms deadline, --deadline-runs times: the
daemon's CPU in the second after the client got DEADLINE_EXCEEDED.

Reported per scenario: medians over the repeats of p50 and p99 of each rpc,
and the p99 ratio to unloaded (median of the per-repeat ratios); what the
attack achieved (calls done, refused); the daemon's peak anonymous memory
during it, and what of it is still there 2 s after the attack ended
(anon_after_mb). The target is a control p99 of at most 50 ms under every
attack.

  PYTHONPATH=build/proto /usr/bin/python3 tools/bench/hostile.py \\
      --graphd build/graphd/graphd --repeats 3

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
import threading
import time

from detection import start_graphd

CROWD = 9000
OTHERS = 30000


def start(graphd, data, extra):
    return start_graphd(graphd, data, ["--threads", "2"] + extra)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def anon_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


class Bench:
    def __init__(self, grpc, pb, pbg, addr, pid, calls):
        self.grpc, self.pb, self.pbg, self.addr, self.pid, self.calls = grpc, pb, pbg, addr, pid, calls

    def channel(self):
        return self.grpc.insecure_channel(self.addr, options=[
            ("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", 8 << 20)])

    def link(self, a, at, b, bt):
        pb = self.pb
        return pb.LinkInput(a=pb.EntityRef(type=at, key=a), b=pb.EntityRef(type=bt, key=b),
                            seen=1700000000)

    def load(self):
        pb = self.pb
        ch = self.channel()
        st = self.pbg.SellerGraphStub(ch)
        S, D, A = pb.ENTITY_TYPE_SELLER, pb.ENTITY_TYPE_DEVICE, pb.ENTITY_TYPE_ADDRESS
        for b in range(0, OTHERS, 10000):
            st.Upsert(pb.UpsertRequest(links=[self.link("g%d" % i, S, "gd%d" % i, D)
                                              for i in range(b, b + 10000)]), timeout=300)
        for addr in ("hubaddr", "hubaddr2"):
            for b in range(0, CROWD, 5000):
                st.Upsert(pb.UpsertRequest(links=[self.link("h%d" % i, S, addr, A)
                                                  for i in range(b, min(CROWD, b + 5000))]),
                          timeout=300)
        ch.close()

    def control(self):
        """Latencies (s) of Health/Check and GetEntity, sequential."""
        ch = self.channel()
        st = self.pbg.SellerGraphStub(ch)
        health = ch.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=lambda x: x, response_deserializer=lambda x: x)
        pb = self.pb
        hl, gl = [], []
        for i in range(self.calls):
            t0 = time.perf_counter()
            health(b"", timeout=30)
            t1 = time.perf_counter()
            st.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(type=pb.ENTITY_TYPE_SELLER,
                                                              key="h%d" % (i % CROWD))),
                         timeout=30)
            t2 = time.perf_counter()
            hl.append(t1 - t0)
            gl.append(t2 - t1)
        ch.close()
        return hl, gl

    # Each attack: start() -> stop() returns a dict of what it achieved.
    def attack_a(self):
        pb = self.pb
        stop, done, errs = threading.Event(), [], []
        req = pb.LinkedSellersRequest(
            seller=pb.EntityRef(type=pb.ENTITY_TYPE_SELLER, key="h0"), max_hops=2, limit=3,
            max_touched=10000000,
            hub_caps=[pb.HubCap(type=pb.ENTITY_TYPE_ADDRESS, max_sellers=10000)])

        def run():
            ch = self.channel()
            st = self.pbg.SellerGraphStub(ch)
            while not stop.is_set():
                try:
                    r = st.LinkedSellers(req, timeout=60)
                    done.append(r.server_work_bound)
                except self.grpc.RpcError as e:
                    errs.append(e.code().name)
            ch.close()

        ts = [threading.Thread(target=run) for _ in range(2)]
        return ts, stop, lambda: {"calls": len(done), "cut_by_work_bound": sum(done),
                                  "errors": len(errs)}

    def attack_b(self):
        pb = self.pb
        stop, msgs, errs = threading.Event(), [0], []
        S, D = pb.ENTITY_TYPE_SELLER, pb.ENTITY_TYPE_DEVICE

        # Built before the attack starts (Python takes seconds per message).
        reqs = [pb.UpsertRequest(links=[self.link("b%d-%d" % (k, i), S, "bd%d" % (i % 1000), D)
                                        for i in range(100000)]).SerializeToString()
                for k in range(8)]

        def run(k):
            ch = self.channel()
            # Pre-serialized: the client sends as fast as graphd takes it.
            ingest = ch.stream_unary("/graphd.v1.SellerGraph/Ingest",
                                     request_serializer=lambda x: x,
                                     response_deserializer=lambda x: x)

            def gen():
                while not stop.is_set():
                    msgs[0] += 1
                    yield reqs[k]
            try:
                ingest(gen(), timeout=600)
            except self.grpc.RpcError as e:
                errs.append(e.code().name)
            ch.close()

        ts = [threading.Thread(target=run, args=(k,)) for k in range(8)]
        return ts, stop, lambda: {"messages_sent": msgs[0], "errors": len(errs)}

    def attack_c(self):
        stop = threading.Event()
        futs, chans = [], []

        def idle():
            stop.wait(3600)
            return
            yield

        for _ in range(8):
            ch = self.channel()
            chans.append(ch)
            st = self.pbg.SellerGraphStub(ch)
            for _ in range(250):
                futs.append(st.Ingest.future(idle(), timeout=3600))

        def result():
            refused = sum(1 for f in futs if f.done() and f.exception() is not None)
            for ch in chans:
                ch.close()
            return {"streams": len(futs), "refused_or_ended": refused}
        return [], stop, result

    def attack(self, name):
        """Runs one attack in this process until SIGTERM, then prints what it
        achieved (JSON) on stdout."""
        import signal
        ts, stop, result = getattr(self, "attack_" + name.lower())()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        for t in ts:
            t.start()
        print("started", flush=True)
        while not stop.wait(0.1):
            pass
        for t in ts:
            t.join()
        print(json.dumps(result()), flush=True)

    def after_deadline(self, runs):
        """Attack A's query with a 500 ms deadline (run on a daemon with
        --max-query-work 0, so only the deadline stops it): per run, the
        daemon's CPU (ms) in the second after the client's DEADLINE_EXCEEDED,
        sampled every 10 ms."""
        pb = self.pb
        ch = self.channel()
        st = self.pbg.SellerGraphStub(ch)
        req = pb.LinkedSellersRequest(
            seller=pb.EntityRef(type=pb.ENTITY_TYPE_SELLER, key="h0"), max_hops=2, limit=3,
            max_touched=10000000,
            hub_caps=[pb.HubCap(type=pb.ENTITY_TYPE_ADDRESS, max_sellers=10000)])
        hz = os.sysconf("SC_CLK_TCK")
        out = []
        for _ in range(runs):
            time.sleep(0.5)
            try:
                st.LinkedSellers(req, timeout=0.5)
                out.append(None)  # finished within the deadline: nothing to measure
                continue
            except self.grpc.RpcError as e:
                if e.code() != self.grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
            t0 = cpu_ticks(self.pid)
            for _ in range(100):
                time.sleep(0.01)
            out.append((cpu_ticks(self.pid) - t0) * 1000 / hz)
        ch.close()
        return out

    def scenario(self, name, script):
        if name == "unloaded":
            a0 = anon_kib(self.pid)
            hl, gl = self.control()
            return hl, gl, {}, anon_kib(self.pid) - a0
        # The attacker is a process of its own: its threads must not share
        # the control client's interpreter lock.
        child = subprocess.Popen([sys.executable, script, "--attack", name, "--addr", self.addr],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "started"
        a0 = anon_kib(self.pid)
        peak = [a0]
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak[0] = max(peak[0], anon_kib(self.pid))
                time.sleep(0.02)
        sm = threading.Thread(target=sample)
        sm.start()
        time.sleep(2.0)  # the attack takes hold
        hl, gl = self.control()
        child.terminate()
        out, _ = child.communicate(timeout=600)
        info = json.loads(out.strip().splitlines()[-1])
        sampling.set()
        sm.join()
        time.sleep(2.0)  # the writer drains, the budget thread trims
        info["anon_after_mb"] = round((anon_kib(self.pid) - a0) / 1024)
        return hl, gl, info, peak[0] - a0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graphd")
    ap.add_argument("--attack", help=argparse.SUPPRESS)  # the attacker process
    ap.add_argument("--addr", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--graphd-arg", action="append", default=[])
    ap.add_argument("--deadline-runs", type=int, default=5,
                    help="runs of the after-deadline measurement (0 = none)")
    ap.add_argument("--json", help="write the raw figures here")
    a = ap.parse_args()

    import grpc
    from graphd.v1 import graphd_pb2 as pb, graphd_pb2_grpc as pbg

    if a.attack:
        Bench(grpc, pb, pbg, a.addr, 0, 0).attack(a.attack)
        return
    if not a.graphd:
        ap.error("--graphd is required")
    tmp = tempfile.mkdtemp(prefix="graphd-hostile-")
    proc = None
    names = ["unloaded", "A", "B", "C"]
    runs = {n: [] for n in names}
    try:
        proc, addr = start(a.graphd, os.path.join(tmp, "data"), a.graphd_arg)
        b = Bench(grpc, pb, pbg, addr, proc.pid, a.calls)
        b.load()
        b.control()  # warm-up
        for r in range(a.repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                hl, gl, info, anon = b.scenario(n, os.path.abspath(__file__))
                runs[n].append({"health": hl, "get": gl, "info": info, "anon_kib": anon})
                print("# repeat %d %s: health p99 %.2f ms, GetEntity p99 %.2f ms %s"
                      % (r + 1, n, pct(hl, .99) * 1e3, pct(gl, .99) * 1e3, info),
                      file=sys.stderr, flush=True)
        proc.terminate()
        proc.wait(timeout=120)
        proc = None
        after = []
        if a.deadline_runs:
            # The same data, no work bound: only the deadline stops A's query.
            proc, addr = start(a.graphd, os.path.join(tmp, "data"),
                               a.graphd_arg + ["--max-query-work", "0"])
            after = Bench(grpc, pb, pbg, addr, proc.pid, 0).after_deadline(a.deadline_runs)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)

    med = statistics.median
    print("| scenario | Health p50 | Health p99 | x unloaded | GetEntity p50 | GetEntity p99 "
          "| x unloaded | peak anon growth | attack |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        rs = runs[n]
        hr = med([pct(x["health"], .99) / pct(u["health"], .99)
                  for x, u in zip(rs, runs["unloaded"])])
        gr = med([pct(x["get"], .99) / pct(u["get"], .99) for x, u in zip(rs, runs["unloaded"])])
        print("| %s | %.2f ms | %.2f ms | %.2f | %.2f ms | %.2f ms | %.2f | %.0f MB | %s |" % (
            n, med([pct(x["health"], .5) for x in rs]) * 1e3,
            med([pct(x["health"], .99) for x in rs]) * 1e3, hr,
            med([pct(x["get"], .5) for x in rs]) * 1e3,
            med([pct(x["get"], .99) for x in rs]) * 1e3, gr,
            med([x["anon_kib"] for x in rs]) / 1024, rs[-1]["info"]))
    if after:
        print("\nafter a 500 ms deadline (A's query, --max-query-work 0): daemon CPU in the "
              "next second, ms, per run: %s (None: the query finished in time)" % after)
    if a.json:
        runs["after_deadline_cpu_ms"] = after
        with open(a.json, "w") as f:
            json.dump(runs, f)


if __name__ == "__main__":
    main()
