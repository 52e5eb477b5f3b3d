"""Fixtures for the graphd black-box suite.

The suite starts the real daemon (env GRAPHD_BIN) on a temporary data
directory and a free port, and drives it with Python grpcio stubs generated
from the project's .proto at session start (protoc + grpc_python_plugin; no
.proto file is copied).

Environment:
  GRAPHD_BIN         daemon binary (required; tests are skipped without it)
  GRAPHCTL_BIN       graphctl binary (optional; graphctl tests skip without it)
  SELLERGEN_BIN      sellergen binary (optional)
  GRAPHD_WORKER_BIN  graphd-worker binary; test_analytics passes it as
                     --worker (optional: graphd looks next to itself)
  PROTO_ROOT         proto root (default: <repo>/proto)
  HEALTH_PROTO_ROOT  root holding grpc/health/v1/health.proto and
                     grpc/reflection/v1alpha/reflection.proto
                     (default: /usr/share/grpc-proto)
  GRAPHD_PY_STUBS    directory to generate stubs into (default: a temp dir)
  GRAPHD_WRAPPER     command prefix for the daemon, e.g.
                     "valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9"
                     (timeouts are multiplied when set)
  GRAPHD_KILL_ROUNDS kill -9 rounds in test_durability (default 3)
"""

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

_stub_tmp = None


def _generate_stubs():
    """Generate graphd, health and reflection stubs and make them importable.

    Runs from pytest_configure so test modules can import the stubs at module
    level (`from graphd.v1 import graphd_pb2`)."""
    global _stub_tmp
    proto_root = os.environ.get("PROTO_ROOT") or os.path.join(REPO, "proto")
    health_root = os.environ.get("HEALTH_PROTO_ROOT") or "/usr/share/grpc-proto"
    out = os.environ.get("GRAPHD_PY_STUBS")
    if out:
        os.makedirs(out, exist_ok=True)
    else:
        _stub_tmp = tempfile.mkdtemp(prefix="graphd-pystubs-")
        out = _stub_tmp
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    plugin = "/usr/bin/grpc_python_plugin"
    base = [protoc, "--python_out=" + out, "--grpc_python_out=" + out,
            "--plugin=protoc-gen-grpc_python=" + plugin]
    for args in ([ "-I" + proto_root, "graphd/v1/graphd.proto"],
                 [ "-I" + health_root, "grpc/health/v1/health.proto"],
                 [ "-I" + health_root, "grpc/reflection/v1alpha/reflection.proto"]):
        r = subprocess.run(base + args, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("protoc failed (%s): %s" % (" ".join(base + args), r.stderr))
    if out not in sys.path:
        sys.path.insert(0, out)
    # The health stubs live in package grpc.health.v1, but `grpc` is the
    # installed grpcio package (a regular package), so extend its search path.
    import grpc  # noqa: E402
    gdir = os.path.join(out, "grpc")
    if gdir not in grpc.__path__:
        grpc.__path__.append(gdir)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "daemon_args(*args): extra command-line arguments for the daemon fixture")
    _generate_stubs()


def pytest_unconfigure(config):
    if _stub_tmp:
        shutil.rmtree(_stub_tmp, ignore_errors=True)


import grpc  # noqa: E402


CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.enable_retries", 0),
]

LISTEN_RE = re.compile(rb"^listening on (127\.0\.0\.1):(\d+)\s*$")
HTTP_LISTEN_RE = re.compile(rb"^http listening on (127\.0\.0\.1):(\d+)\s*$")


class Daemon:
    """A running graphd process on a private data directory."""

    _seq = 0

    def __init__(self, bin_path, data_dir, log_dir, extra_args=(), wrapper=None):
        self.bin = bin_path
        self.data_dir = str(data_dir)
        self.log_dir = str(log_dir)
        self.extra_args = list(extra_args)
        self.wrapper = shlex.split(wrapper) if wrapper else []
        self.proc = None
        self.port = None
        self.addr = None
        self.http_port = None  # with --http-listen
        self.channel = None
        self.stub = None
        self.health = None
        self.log_paths = []
        self.stdout_extra = []
        self.exit_codes = []

    # -- process control -------------------------------------------------
    def command(self):
        return self.wrapper + [self.bin, "--data", self.data_dir,
                               "--listen", "127.0.0.1:0"] + self.extra_args

    def start(self, timeout=None):
        from graphd.v1 import graphd_pb2_grpc
        from grpc.health.v1 import health_pb2_grpc
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        timeout = timeout or 20.0 * (3 if self.wrapper else 1)
        Daemon._seq += 1
        log_path = os.path.join(self.log_dir, "graphd-%d.stderr.log" % Daemon._seq)
        self.log_paths.append(log_path)
        logf = open(log_path, "wb")
        try:
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                         stderr=logf, stdin=subprocess.DEVNULL)
        finally:
            logf.close()
        lines = queue.Queue()
        proc = self.proc
        extra = self.stdout_extra

        def reader():
            found = False
            for line in proc.stdout:
                if not found:
                    lines.put(line)
                    if LISTEN_RE.match(line):
                        found = True
                else:
                    extra.append(line)
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail_start("no 'listening on' line within %.0f s" % timeout, seen)
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=5)
                self._fail_start("daemon exited (code %s) before listening"
                                 % self.proc.returncode, seen)
            seen.append(line)
            h = HTTP_LISTEN_RE.match(line)
            if h:
                self.http_port = int(h.group(2))
            m = LISTEN_RE.match(line)
            if m:
                self.port = int(m.group(2))
                self.addr = "127.0.0.1:%d" % self.port
                break
        assert self.port > 0, "daemon reported port 0"
        self.channel = grpc.insecure_channel(self.addr, options=CHANNEL_OPTIONS)
        self.stub = graphd_pb2_grpc.SellerGraphStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        return self

    def _fail_start(self, why, seen):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        pytest.fail("graphd did not start: %s\ncommand: %s\nstdout: %r\nstderr:\n%s"
                    % (why, " ".join(self.command()), b"".join(seen), self.log_tail(200)))

    def new_channel(self, **kw):
        opts = list(CHANNEL_OPTIONS) + list(kw.get("options", []))
        return grpc.insecure_channel(self.addr, options=opts)

    def _close_channel(self):
        if self.channel is not None:
            self.channel.close()
        self.channel = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout=None, close_channel_first=True):
        """SIGTERM and wait; returns the exit code (None if it did not exit).

        By default our channel is closed first: gRPC core's shutdown waits
        for idle client connections to go away (about 5 s with an open
        Python channel), which would add seconds to every test. The drain
        tests in test_durability.py keep their connections open."""
        timeout = timeout or 15.0 * (4 if self.wrapper else 1)
        if self.proc is None:
            return None
        if close_channel_first:
            self._close_channel()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self._close_channel()
        self.exit_codes.append(rc)
        return rc

    def stop(self, **kw):
        """SIGTERM; assert a clean exit (code 0) within the drain timeout."""
        rc = self.terminate(**kw)
        assert rc == 0, ("graphd did not exit cleanly on SIGTERM (exit code %r; None = "
                         "still running after the timeout, killed)\nstderr tail:\n%s"
                         % (rc, self.log_tail()))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close_channel()
        self.exit_codes.append(self.proc.returncode)

    def restart(self):
        if self.running():
            self.stop()
        return self.start()

    def log_tail(self, n=60):
        out = []
        for p in self.log_paths[-2:]:
            try:
                with open(p, "rb") as f:
                    data = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            out.append("== %s ==" % p)
            out.extend(data[-n:])
        return "\n".join(out)


def _graphd_bin():
    b = os.environ.get("GRAPHD_BIN")
    if not b:
        cand = os.path.join(REPO, "build-bb", "graphd", "graphd")
        if os.path.exists(cand):
            b = cand
    if not b or not os.path.exists(b):
        pytest.skip("GRAPHD_BIN not set or missing (%r)" % b)
    return b


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def daemon_factory(tmp_path, request):
    """Start daemons with custom args: daemon_factory(*args) -> Daemon."""
    made = []

    def make(*extra_args, data_dir=None):
        n = len(made)
        d = data_dir or (tmp_path / ("data%d" % n))
        os.makedirs(d, exist_ok=True)
        logs = tmp_path / "logs"
        os.makedirs(logs, exist_ok=True)
        dm = Daemon(_graphd_bin(), d, logs, extra_args, os.environ.get("GRAPHD_WRAPPER"))
        made.append(dm)
        dm.start()
        return dm

    yield make
    errors = []
    for dm in made:
        if dm.running():
            rc = dm.terminate()
            if rc != 0:
                errors.append("graphd exit code %r on SIGTERM at teardown (want 0)\n%s"
                              % (rc, dm.log_tail()))
        if dm.stdout_extra:
            errors.append("graphd wrote more than the one 'listening on' line to stdout: %r"
                          % b"".join(dm.stdout_extra)[:500])
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print("graphd stderr tail:\n" + dm.log_tail())
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory):
    """One daemon for a whole test module, for tests that need only a
    healthy daemon and assume nothing about what other tests wrote (a
    daemon start costs seconds under valgrind)."""
    base = tmp_path_factory.mktemp("shared")
    d, logs = base / "data", base / "logs"
    os.makedirs(d)
    os.makedirs(logs)
    dm = Daemon(_graphd_bin(), d, logs, (), os.environ.get("GRAPHD_WRAPPER"))
    dm.start()
    yield dm
    rc = dm.terminate() if dm.running() else dm.exit_codes[-1:]
    assert rc == 0, "graphd exit code %r on SIGTERM at teardown (want 0)\n%s" % (rc, dm.log_tail())
    assert not dm.stdout_extra, dm.stdout_extra


@pytest.fixture
def daemon(daemon_factory, request):
    """A fresh daemon on an empty data directory.

    Extra args: @pytest.mark.daemon_args("--result-cap", "50")."""
    m = request.node.get_closest_marker("daemon_args")
    args = [str(a) for a in m.args] if m else []
    return daemon_factory(*args)


@pytest.fixture(scope="session")
def stubs():
    from graphd.v1 import graphd_pb2, graphd_pb2_grpc
    from grpc.health.v1 import health_pb2, health_pb2_grpc

    class S:
        pass
    s = S()
    s.graphd_pb2, s.graphd_pb2_grpc = graphd_pb2, graphd_pb2_grpc
    s.health_pb2, s.health_pb2_grpc = health_pb2, health_pb2_grpc
    return s


@pytest.fixture(scope="session")
def graphctl_bin():
    b = os.environ.get("GRAPHCTL_BIN")
    if not b or not os.path.exists(b):
        pytest.skip("GRAPHCTL_BIN not set or missing")
    return b


@pytest.fixture(scope="session")
def sellergen_bin():
    b = os.environ.get("SELLERGEN_BIN")
    if not b or not os.path.exists(b):
        pytest.skip("SELLERGEN_BIN not set or missing")
    return b
