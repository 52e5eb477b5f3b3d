"""Every graphctl example of the README, and every command the demo's
banner suggests, runs against the demo network (tools/demo.sh's: sellergen
--sellers 5000 --seed 1, its entities and links ingested with graphctl,
clustered once): the keys, clusters, snapshots and jobs they name exist
there, in README order.

Left out, by rule: commands that need what a test cannot give (TLS files
and tokens, a remote host, a server-side directory, a stream that follows
alerts until interrupted: `graphctl alerts` is driven in
test_graphctl.py); a `| tool` or `> file` tail is dropped and the
command's own exit code checked.
"""

import os
import re
import shlex
import subprocess

from bbutil import T
from conftest import REPO
from test_investigate import start_daemon, stop_daemon

# ingest --bulk needs an empty graph (test_bulk.py runs it); import m.txt
# the python-igraph step before it (test_exchange.py runs that).
# verify-pack needs the server's public key file (test_pack.py runs it).
SKIP = ("--tls", "--token", "graphd.internal", "graphctl backup /", " alerts", "ingest --bulk",
        "import m.txt", "verify-pack")
# The case id the README's case examples show; the test's own case gets
# a random one, put in its place.
EXAMPLE_CASE = "4373549346565546"


def readme_commands():
    """graphctl lines of the README's sh blocks, in order."""
    out, inside = [], False
    with open(os.path.join(REPO, "README.md")) as f:
        for line in f:
            if line.startswith("```"):
                inside = line.strip() == "```sh" and not inside
                continue
            if inside and line.startswith("graphctl "):
                out.append(line.strip())
    return out


def demo_commands():
    """The commands tools/demo.sh's banner suggests."""
    with open(os.path.join(REPO, "tools", "demo.sh")) as f:
        text = f.read()
    banner = text[text.index("cat <<MSG"):text.index("\nMSG\n")]
    return ["graphctl" + m.group(1) for m in
            re.finditer(r"^  \$graphctl --addr \$listen(.*)$", banner, re.M)]


def runnable(cmd):
    """The argument list of a README line, or None if it is left out."""
    if any(s in cmd for s in SKIP):
        return None
    cmd = re.sub(r"\s+#.*$", "", cmd)   # a trailing comment
    cmd = cmd.split(" | ")[0]           # a pipe's consumer
    cmd = re.sub(r"\s+>\s*\S+$", "", cmd)  # a redirection
    return shlex.split(cmd)[1:]


def test_readme_and_demo_examples(tmp_path_factory, sellergen_bin, graphctl_bin):
    cmds = readme_commands()
    assert len(cmds) >= 30, "README lost its graphctl examples? %d found" % len(cmds)
    banner = demo_commands()
    assert len(banner) >= 5, banner
    work = tmp_path_factory.mktemp("readme")
    subprocess.run([sellergen_bin, "--sellers", "5000", "--seed", "1", "--out", str(work)],
                   check=True, capture_output=True, timeout=T(60))
    dm = start_daemon(tmp_path_factory, "readme")
    try:
        def ctl(args):
            return subprocess.run([graphctl_bin, "--addr", dm.addr] + args, cwd=work,
                                  capture_output=True, text=True, timeout=T(120))
        # tools/demo.sh's loading, in its order.
        for args in (["ingest", "entities.csv", "links.csv"],
                     ["cluster", "--name", "demo", "--no-progress"]):
            r = ctl(args)
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        ran = 0
        case_id = None
        for line in banner + cmds:
            args = runnable(line)
            if args is None:
                continue
            if case_id:
                args = [a.replace(EXAMPLE_CASE, case_id) for a in args]
            r = ctl(args)
            if args[:2] == ["case", "new"] and r.returncode == 0:
                case_id = r.stdout.split()[1]
            assert r.returncode == 0, "%s\n-> exit %d\nstdout: %s\nstderr: %s" % (
                line, r.returncode, r.stdout[-1500:], r.stderr[-1500:])
            ran += 1
        assert ran >= len(banner) + len(cmds) - 8, ran  # SKIP leaves out 8 lines
        # The keys the README's "For investigators" names are what it says.
        r = ctl(["--json", "get", "seller", "s86"])
        assert '"counterfeit"' in r.stdout and '"cluster_id": 62' in r.stdout.replace(
            '"cluster_id":62', '"cluster_id": 62'), r.stdout
    finally:
        stop_daemon(dm)
