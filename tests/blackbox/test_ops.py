"""Operations: the configuration file (flags take precedence), --check-config,
structured (JSON Lines) logs with levels."""

import json
import os
import subprocess
import time

import grpc

from bbutil import ADDRESS, SELLER, T, expect_status, health_status, link, upsert
from conftest import _graphd_bin
from graphd.v1 import graphd_pb2 as pb


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _check(tmp_path, *args):
    r = subprocess.run([_graphd_bin(), "--data", str(tmp_path / "d")] + list(args),
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def _log_lines(dm):
    """The daemon's stderr lines, without valgrind's own (==PID==)."""
    out = []
    for p in dm.log_paths:
        with open(p, "rb") as f:
            for raw in f.read().decode("utf-8", "replace").splitlines():
                if raw and not raw.startswith("=="):
                    out.append(raw)
    return out


def test_config_file_flags_win_and_json_logs(tmp_path, daemon_factory):
    conf = _write(tmp_path / "graphd.conf",
                  "# comment\n\n"
                  "listen = 10.255.255.1:1\n"   # the harness's --listen wins
                  "result-cap = 5\n"            # overridden below
                  "max-batch-items = 3\n"       # kept
                  "log-format = json\n"
                  "log-level = info\n")
    dm = daemon_factory("--config", conf, "--result-cap", "7")
    # The command line's result cap (7) won over the file's (5).
    seller = pb.EntityRef(type=SELLER, key="s-1")
    upsert(dm.stub, [link(SELLER, "s-1", ADDRESS, "a-%d" % i) for i in range(3)])
    rep = dm.stub.Neighbors(pb.NeighborsRequest(ref=seller, limit=7), timeout=T())
    assert len(rep.neighbors) == 3
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, dm.stub.Neighbors,
                  pb.NeighborsRequest(ref=seller, limit=8), timeout=T(), fields=("limit",))
    # The file's max-batch-items (3) holds.
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, upsert, dm.stub,
                  [link(SELLER, "s-2", ADDRESS, "b-%d" % i) for i in range(4)],
                  fields=("--max-batch-items",))
    assert dm.terminate() == 0
    lines = _log_lines(dm)
    assert lines, "no log lines"
    for line in lines:
        rec = json.loads(line)  # every line is one JSON object
        assert set(rec) == {"ts", "level", "msg"}, rec
        assert rec["level"] in ("debug", "info", "warn", "error")
        assert rec["ts"].endswith("Z") and "T" in rec["ts"]
    msgs = [json.loads(l)["msg"] for l in lines]
    assert any(m.startswith("serving ") for m in msgs), msgs
    assert any(m == "stopped" for m in msgs), msgs


def test_log_level_drops_lower_levels(tmp_path, daemon_factory):
    dm = daemon_factory("--log-level", "warn")
    assert dm.terminate() == 0
    assert not [l for l in _log_lines(dm) if " info graphd:" in l or " debug graphd:" in l]


def test_log_json_escapes_messages(tmp_path, daemon_factory):
    # A path with a quote and a backslash shows up in the "serving" line.
    d = tmp_path / 'we"ird\\dir'
    dm = daemon_factory("--log-format", "json", data_dir=d)
    assert dm.terminate() == 0
    msgs = [json.loads(l)["msg"] for l in _log_lines(dm)]
    assert any(str(d) in m for m in msgs), msgs


def test_check_config_valid(tmp_path):
    tokens = _write(tmp_path / "tokens", "t0ken-abcdefghijklmnop admin ops\n")
    conf = _write(tmp_path / "graphd.conf",
                  "listen = 0.0.0.0:7419\ntokens = %s\nno-audit = false\n"
                  "audit-reads = sync\n" % tokens)
    rc, out, err = _check(tmp_path, "--config", conf, "--check-config", "--max-calls", "50")
    assert rc == 0, err
    assert "# configuration OK" in out
    assert "listen = 0.0.0.0:7419" in out and "max-calls = 50" in out
    assert "audit-reads = sync" in out and "# 1 token(s)" in out
    assert not os.path.exists(tmp_path / "d"), "--check-config must not create the store"


def test_check_config_reports_each_problem(tmp_path):
    rc, _, err = _check(tmp_path, "--config", _write(tmp_path / "a.conf", "listen = 127.0.0.1:1\nbogus-key = 1\n"),
                        "--check-config")
    assert rc == 2 and "a.conf:2" in err and "bogus-key" in err, err

    rc, _, err = _check(tmp_path, "--config", _write(tmp_path / "b.conf", "\n\nresult-cap = lots\n"),
                        "--check-config")
    assert rc == 2 and "b.conf:3" in err and "result-cap" in err and "lots" in err, err

    rc, _, err = _check(tmp_path, "--config", _write(tmp_path / "c.conf", "no-audit = maybe\n"),
                        "--check-config")
    assert rc == 2 and "c.conf:1" in err and "true or false" in err, err

    rc, _, err = _check(tmp_path, "--config", _write(tmp_path / "d.conf", "just words\n"),
                        "--check-config")
    assert rc == 2 and "d.conf:1" in err and "key = value" in err, err

    rc, _, err = _check(tmp_path, "--config", str(tmp_path / "missing.conf"), "--check-config")
    assert rc == 2 and "missing.conf" in err, err

    # Valid syntax, but the tokens file and a TLS key are missing, and a
    # public address without tokens would be refused.
    rc, _, err = _check(tmp_path, "--tokens", str(tmp_path / "no-tokens"),
                        "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path / "no.key"),
                        "--check-config")
    assert rc == 1 and "no-tokens" in err and "no.crt" in err and "3 problem(s)" in err, err
    rc, _, err = _check(tmp_path, "--listen", "0.0.0.0:7419", "--check-config")
    assert rc == 1 and "without --tokens" in err, err
    rc, _, err = _check(tmp_path, "--listen", "nohostport", "--check-config")
    assert rc == 1 and "HOST:PORT" in err, err
    rc, _, err = _check(tmp_path, "--worker", "/nonexistent/graphd-worker", "--check-config")
    assert rc == 1 and "/nonexistent/graphd-worker" in err, err


def _threads(pid):
    """(name, /proc path) of each of pid's threads; one that ends while
    this reads is left out."""
    task = "/proc/%d/task" % pid
    out = []
    for tid in os.listdir(task):
        try:
            with open(os.path.join(task, tid, "comm")) as f:
                out.append((f.read().strip(), os.path.join(task, tid)))
        except FileNotFoundError:
            pass
    return out


def test_threads_named(daemon_factory):
    """Each long-lived thread says what it does, so `top -H` and `perf
    --sort comm` tell the gRPC handlers, the query threads, the writer and
    the rest apart. A thread names itself when it starts, which under a
    sanitizer can come after the daemon says it is listening: poll."""
    dm = daemon_factory("--threads", "2", "--query-threads", "3")
    want = (("gd-handler", 2), ("gd-query", 3), ("gd-writer", 1), ("gd-reaper", 1),
            ("gd-budget", 1))
    deadline = time.monotonic() + 30
    while True:
        got = [name for name, _ in _threads(dm.proc.pid)]
        missing = [(n, k) for n, k in want if got.count(n) < k]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not missing, (missing, sorted(got))


def test_idle_threads_stay_asleep_between_calls(daemon_factory):
    """One call at a time must not wake the deadline reaper per call: it
    sleeps on its 50 ms tick, and only shutdown waits for the last call to
    end. (A wake per call is a context switch that, on a 2-core VM, costs
    more than Health/Check itself.) Counted, not timed: the reaper's
    context switches over N sequential calls stay near its ticks."""
    dm = daemon_factory()

    def reaper_switches():
        for name, path in _threads(dm.proc.pid):
            if name != "gd-reaper":
                continue
            with open(os.path.join(path, "status")) as f:
                st = dict(l.split(":", 1) for l in f if ":" in l)
            return int(st["voluntary_ctxt_switches"]) + int(st["nonvoluntary_ctxt_switches"])
        return None

    deadline = time.monotonic() + 30  # a sanitizer's daemon names it late
    while reaper_switches() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    calls = 600
    before, t0 = reaper_switches(), time.monotonic()
    assert before is not None, "no gd-reaper thread"
    for _ in range(calls):
        health_status(dm)
    woke, secs = reaper_switches() - before, time.monotonic() - t0
    ticks = secs / 0.05
    assert woke <= 2 * ticks + 50, (
        "the reaper woke %d times over %d sequential calls in %.2f s (%d ticks)"
        % (woke, calls, secs, ticks))
