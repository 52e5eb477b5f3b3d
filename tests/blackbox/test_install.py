"""`meson install` puts the daemon, its worker, graphctl, the .proto, the
systemd unit, the example configuration and the man pages in place, and the
installed programs run."""

import os
import shutil
import subprocess

import pytest


def _install(tmp_path):
    build = os.environ.get("GRAPHD_BUILD_ROOT")
    if not build:
        pytest.fail("GRAPHD_BUILD_ROOT is not set (run through meson test)")
    dest = tmp_path / "dest"
    r = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", str(dest)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = subprocess.run(["meson", "introspect", build, "--buildoptions"],
                            capture_output=True, text=True, timeout=60).stdout
    import json
    opts = {o["name"]: o["value"] for o in json.loads(prefix)}
    return dest, opts


def test_meson_install_layout_and_programs(tmp_path):
    dest, opts = _install(tmp_path)
    root = str(dest) + opts["prefix"]
    files = {
        "bin/graphd", "bin/graphctl", "bin/sellergen",
        opts["libexecdir"] + "/graphd/graphd-worker",
        "share/graphd/proto/graphd/v1/graphd.proto",
        "share/graphd/graphd.conf.example",
        "share/doc/graphd/OPERATIONS.md", "share/doc/graphd/SCALING.md",
        "share/doc/graphd/scaling/cost-curve.svg",
        "lib/systemd/system/graphd.service",
        "share/man/man8/graphd.8", "share/man/man1/graphctl.1",
        # the console (d3.min.js: Debian's node-d3, linked or copied)
        "share/graphd/console/index.html", "share/graphd/console/console.js",
        "share/graphd/console/d3.min.js",
    }
    for f in sorted(files):
        assert os.path.isfile(os.path.join(root, f)), "not installed: " + f

    # The Python client and its stubs, side by side, importable from there.
    import glob
    pkg = glob.glob(os.path.join(root, "lib", "python3*", "dist-packages"))
    assert pkg, "the Python client was not installed (dist-packages missing)"
    if pkg:
        assert os.path.isfile(os.path.join(pkg[0], "graphd_client", "__init__.py"))
        assert os.path.isfile(os.path.join(pkg[0], "graphd", "v1", "graphd_pb2_grpc.py"))
        r = subprocess.run(["/usr/bin/python3", "-c",
                            "import graphd_client, graphd.v1.graphd_pb2 as pb; print(pb.DESCRIPTOR.package)"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PYTHONPATH=pkg[0]))
        assert r.returncode == 0 and r.stdout.strip() == "graphd.v1", r.stderr

    # Every installed program answers --help.
    for prog in ["bin/graphd", "bin/graphctl", "bin/sellergen",
                 opts["libexecdir"] + "/graphd/graphd-worker"]:
        r = subprocess.run([os.path.join(root, prog), "--help"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and "usage" in (r.stdout + r.stderr).lower(), prog

    # The man page documents the options.
    with open(os.path.join(root, "share/man/man8/graphd.8")) as f:
        man = f.read()
    assert "\\-\\-check\\-config" in man and "\\-\\-tokens" in man
    assert "\\-\\-http\\-listen" in man

    # The installed graphd looks for its worker under libexecdir (the
    # destdir copy is not there, so --check-config names that path), and
    # validates the example configuration: its tokens file is missing.
    r = subprocess.run([os.path.join(root, "bin/graphd"),
                        "--config", os.path.join(root, "share/graphd/graphd.conf.example"),
                        "--data", str(tmp_path / "data"), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    want_worker = os.path.join(opts["prefix"], opts["libexecdir"], "graphd", "graphd-worker")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "/etc/graphd/tokens" in r.stderr
    if not os.path.exists(want_worker):
        assert want_worker in r.stderr, r.stderr
    assert "listen = 0.0.0.0:7419" in r.stdout


def test_systemd_unit_verifies(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    dest, opts = _install(tmp_path)
    root = str(dest) + opts["prefix"]
    with open(os.path.join(root, "lib/systemd/system/graphd.service")) as f:
        unit = f.read()
    assert "ExecStart=%s/bin/graphd " % opts["prefix"] in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "--check-config" in unit
    # Verify a copy whose paths point into the destdir (systemd-analyze
    # checks the executables and the man page exist).
    local = tmp_path / "graphd.service"
    local.write_text(unit.replace(opts["prefix"] + "/", root + "/"))
    env = dict(os.environ, MANPATH=os.path.join(root, "share/man"))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True,
                       env=env, timeout=60)
    # A missing 'graphd' user is expected on a build machine; anything else
    # is a unit error.
    problems = [l for l in (r.stdout + r.stderr).splitlines()
                if l.strip() and "graphd.service" in l and "User" not in l]
    assert not problems, r.stdout + r.stderr
