"""Evidence packs (ExportCase, graphctl case export, graphctl verify-pack):
the pack's round trip, one byte changed in each part, the signature, a
wrong key, the audit chain (with the manifest re-signed by the server's
own key, so only the chain check can catch it), brand scope, the key
across a restart, and the HTML page in a real browser."""

import hashlib
import io
import json
import os
import subprocess
import zipfile

import grpc
import pytest

from bbutil import DEVICE, PHONE, SELLER, T, expect_status, link, pb, ref
from test_cases import TOKENS, md, write_tokens
from test_console import browser, browser_missing, shot_dir  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def packd(tmp_path_factory):
    """One daemon and one case for the module (a daemon start and a
    clustering job cost seconds under valgrind); the tests read it, and
    what they add (another brand's case, exports) changes nothing another
    test looks at."""
    from conftest import Daemon, _graphd_bin
    base = tmp_path_factory.mktemp("pack")
    os.makedirs(base / "data")
    os.makedirs(base / "logs")
    d = Daemon(_graphd_bin(), base / "data", base / "logs",
               ("--tokens", write_tokens(base / "tokens")), os.environ.get("GRAPHD_WRAPPER"))
    d.start()
    try:
        setup_case(d)
        yield d
    finally:
        rc = d.terminate() if d.running() else d.exit_codes[-1:]
    assert rc == 0, "graphd exit code %r on SIGTERM at teardown (want 0)\n%s" % (rc, d.log_tail())


def setup_case(d):
    s = d.stub
    s.Upsert(pb.UpsertRequest(links=[
        link(SELLER, "ring1", DEVICE, "dev-a"), link(SELLER, "ring2", DEVICE, "dev-a"),
        link(SELLER, "ring2", PHONE, "555"), link(SELLER, "ring3", PHONE, "555"),
    ]), metadata=md("writer"), timeout=T())
    s.SetLabels(pb.SetLabelsRequest(ref=ref(SELLER, "ring1"), add=["counterfeit"]),
                metadata=md("investigator"), timeout=T())
    job = s.StartClustering(pb.StartClusteringRequest(), metadata=md("writer"), timeout=T())
    for j in s.WatchJob(pb.JobRequest(job_id=job.id), metadata=md("reader"), timeout=T(120)):
        last = j
    assert last.state == pb.JOB_STATE_SUCCEEDED, last
    c = s.CreateCase(pb.CreateCaseRequest(title="Ring <dev-a> & co", brand="acme",
                                          note="opened on brand report 7"),
                     metadata=md("investigator"), timeout=T())
    snap = s.ListSnapshots(pb.ListSnapshotsRequest(), metadata=md("reader"),
                           timeout=T()).snapshots[0].id
    asg = next(iter(s.StreamAssignments(pb.StreamAssignmentsRequest(), metadata=md("reader"),
                                        timeout=T())))
    s.UpdateCase(pb.UpdateCaseRequest(
        case_id=c.case_id, add_sellers=[ref(SELLER, "ring1"), ref(SELLER, "ring2")],
        add_entities=[ref(DEVICE, "dev-a")],
        add_clusters=[pb.CaseCluster(snapshot_id=snap, cluster_id=asg.cluster_ids[0])]),
        metadata=md("investigator"), timeout=T())
    s.UpdateCase(pb.UpdateCaseRequest(
        case_id=c.case_id, save_comment="the ring",
        save_linked_sellers=pb.LinkedSellersRequest(seller=ref(SELLER, "ring1"), max_hops=2)),
        metadata=md("investigator"), timeout=T())
    s.UpdateCase(pb.UpdateCaseRequest(
        case_id=c.case_id, save_find_paths=pb.FindPathsRequest(
            to=ref(SELLER, "ring3"), **{"from": ref(SELLER, "ring1")})),
        metadata=md("investigator"), timeout=T())
    s.UpdateCase(pb.UpdateCaseRequest(case_id=c.case_id,
                                      save_rank_suspects=pb.RankSuspectsRequest()),
                 metadata=md("investigator"), timeout=T())
    s.UpdateCase(pb.UpdateCaseRequest(case_id=c.case_id, note="referred to the regulator",
                                      status=pb.CASE_STATUS_REFERRED),
                 metadata=md("acme"), timeout=T())
    d.case_id = c.case_id
    d.pubkey = os.path.join(d.data_dir, "signing-key.pem.pub")
    d.privkey = os.path.join(d.data_dir, "signing-key.pem")


def export(d, who="reader", case_id=None):
    chunks = list(d.stub.ExportCase(pb.ExportCaseRequest(case_id=case_id or d.case_id),
                                    metadata=md(who), timeout=T(60)))
    data = b"".join(c.data for c in chunks)
    assert chunks[0].total_bytes == len(data)
    assert chunks[0].file_name == "case-%d.zip" % (case_id or d.case_id)
    return data


def verify(graphctl_bin, path, pubkey):
    return subprocess.run([graphctl_bin, "verify-pack", str(path), "--pubkey", str(pubkey)],
                          capture_output=True, text=True, timeout=T(30))


def parts_of(data):
    z = zipfile.ZipFile(io.BytesIO(data))
    return {i.filename: z.read(i.filename) for i in z.infolist()}


def zip_of(parts):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, body in parts.items():
            z.writestr(name, body)
    return out.getvalue()


def test_round_trip(packd, graphctl_bin, tmp_path):
    data = export(packd)
    p = tmp_path / "pack.zip"
    p.write_bytes(data)
    r = verify(graphctl_bin, p, packd.pubkey)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "case %d" % packd.case_id in r.stdout
    parts = parts_of(data)
    assert set(parts) >= {"case.html", "case.json", "audit.jsonl", "MANIFEST.json",
                          "MANIFEST.sig", "signing-key.pub.pem"}
    man = json.loads(parts["MANIFEST.json"])
    assert man["format"] == "graphd-evidence-pack/1" and man["case_id"] == packd.case_id
    assert man["brand"] == "acme" and man["exported_by"] == "rita"
    listed = {x["name"]: x for x in man["parts"]}
    assert set(listed) == set(parts) - {"MANIFEST.json", "MANIFEST.sig"}
    for name, x in listed.items():
        assert hashlib.sha256(parts[name]).hexdigest() == x["sha256"]
        assert len(parts[name]) == x["bytes"]
    # The signature, checked by an independent implementation too.
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    load_pem_public_key(open(packd.pubkey, "rb").read()).verify(parts["MANIFEST.sig"],
                                                                parts["MANIFEST.json"])
    assert parts["signing-key.pub.pem"] == open(packd.pubkey, "rb").read()
    # case.json is the case with every saved query, as GetCase gives it.
    from google.protobuf import json_format
    case = json_format.Parse(parts["case.json"], pb.Case())
    live = packd.stub.GetCase(pb.GetCaseRequest(case_id=packd.case_id), metadata=md("reader"),
                              timeout=T())
    assert case == live
    assert [q.WhichOneof("reply") for q in case.queries] == [
        "linked_sellers_reply", "find_paths_reply", "rank_suspects_reply"]
    # Every snapshot the case names has its manifest.
    snap = case.clusters[0].snapshot_id
    assert json.loads(parts["snapshots/snapshot-%d.json" % snap])
    # The audit excerpt: the case's records, in order, every change there.
    recs = [json.loads(l) for l in parts["audit.jsonl"].decode().splitlines()]
    assert all(r["case_id"] == str(packd.case_id) for r in recs)
    methods = [r["method"].rsplit("/", 1)[1] for r in recs]
    assert methods[0] == "CreateCase" and methods.count("UpdateCase") == 5
    assert [r["seq"] for r in recs] == sorted(r["seq"] for r in recs)
    assert man["audit_records"] == len(recs)
    # The page for people names the sellers, the evidence and draws them.
    html = parts["case.html"].decode()
    assert "Ring &lt;dev-a&gt; &amp; co" in html and "<svg" in html
    assert "ring2" in html and "dev-a" in html and "referred" in html
    assert "opened on brand report 7" in html and man["key_id"] in html
    # graphctl writes the same kind of pack, and it verifies.
    g = tmp_path / "g.zip"
    tf = tmp_path / "tok"
    tf.write_text(TOKENS["reader"][0] + "\n")
    r = subprocess.run([graphctl_bin, "--addr", packd.addr, "--token-file", str(tf), "case",
                        "export", str(packd.case_id), "-o", str(g)], capture_output=True,
                       text=True, timeout=T(60))
    assert r.returncode == 0, r.stderr
    assert verify(graphctl_bin, g, packd.pubkey).returncode == 0


def test_one_byte_changed_in_any_part_fails(packd, graphctl_bin, tmp_path):
    parts = parts_of(export(packd))
    for name in parts:
        bad = dict(parts)
        body = bytearray(bad[name])
        body[len(body) // 2] ^= 0x01
        bad[name] = bytes(body)
        p = tmp_path / ("bad-" + name.replace("/", "_") + ".zip")
        p.write_bytes(zip_of(bad))
        r = verify(graphctl_bin, p, packd.pubkey)
        assert r.returncode == 65, (name, r.stdout, r.stderr)
        assert name in r.stderr, (name, r.stderr)
    # A part taken out, a part slipped in.
    for name in ["case.html", "audit.jsonl"]:
        bad = {k: v for k, v in parts.items() if k != name}
        p = tmp_path / "missing.zip"
        p.write_bytes(zip_of(bad))
        r = verify(graphctl_bin, p, packd.pubkey)
        assert r.returncode == 65 and name in r.stderr and "not in the pack" in r.stderr
    bad = dict(parts, **{"extra.txt": b"trust me"})
    p = tmp_path / "extra.zip"
    p.write_bytes(zip_of(bad))
    r = verify(graphctl_bin, p, packd.pubkey)
    assert r.returncode == 65 and "extra.txt" in r.stderr and "not listed" in r.stderr


def test_wrong_key_fails(packd, graphctl_bin, tmp_path):
    p = tmp_path / "pack.zip"
    p.write_bytes(export(packd))
    key = tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    pub = tmp_path / "other.pub"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    r = verify(graphctl_bin, p, pub)
    assert r.returncode == 65 and "MANIFEST.sig" in r.stderr and "key id" in r.stderr
    man = json.loads(parts_of(p.read_bytes())["MANIFEST.json"])
    assert man["key_id"] in r.stderr
    r = verify(graphctl_bin, p, tmp_path / "nope.pub")
    assert r.returncode == 66
    r = verify(graphctl_bin, tmp_path / "nope.zip", pub)
    assert r.returncode == 66 and "nope.zip" in r.stderr
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    r = verify(graphctl_bin, junk, pub)
    assert r.returncode == 65 and "junk.zip" in r.stderr


def resign(parts, privkey, name, body):
    """Replaces part name and re-signs the manifest with the server's key:
    what only someone holding that key could do."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    parts = dict(parts)
    parts[name] = body
    man = json.loads(parts["MANIFEST.json"])
    for x in man["parts"]:
        if x["name"] == name:
            x["sha256"] = hashlib.sha256(body).hexdigest()
            x["bytes"] = len(body)
    parts["MANIFEST.json"] = json.dumps(man, indent=2).encode()
    key = load_pem_private_key(open(privkey, "rb").read(), None)
    parts["MANIFEST.sig"] = key.sign(parts["MANIFEST.json"])
    return parts


def record_hash(r, prev):
    import struct
    strs = [r[k].encode() for k in ("principal", "peer", "case_id", "method", "target")]
    hdr = struct.pack("<QqiB7x", r["seq"], r["time_ms"], r["status"], r["role"])
    hdr += struct.pack("<5H", *[len(s) for s in strs])
    return hashlib.sha256(hdr + b"".join(strs) + prev).hexdigest()


def test_audit_chain_is_checked(packd, graphctl_bin, tmp_path):
    parts = parts_of(export(packd))
    recs = [json.loads(l) for l in parts["audit.jsonl"].decode().splitlines()]
    # The pack's records hash as the trail's layout says.
    for r in recs:
        assert record_hash(r, bytes.fromhex(r["prev"])) == r["hash"]
    # Pick a record whose successor in the pack is its successor in the trail.
    i = next(k for k in range(len(recs) - 1) if recs[k + 1]["seq"] == recs[k]["seq"] + 1)

    def check(new, what):
        body = "".join(json.dumps(r) + "\n" for r in new).encode()
        p = tmp_path / "chain.zip"
        p.write_bytes(zip_of(resign(parts, packd.privkey, "audit.jsonl", body)))
        r = verify(graphctl_bin, p, packd.pubkey)
        assert r.returncode == 65 and "audit.jsonl" in r.stderr and what in r.stderr, r.stderr

    # Another principal, the hash left: the record does not hash.
    new = [dict(r) for r in recs]
    new[i]["principal"] = "someone-else"
    check(new, "its hash does not match")
    # ... and with its hash recomputed: the next record's prev gives it away.
    new[i]["hash"] = record_hash(new[i], bytes.fromhex(new[i]["prev"]))
    check(new, "chain is broken")
    # A record dropped, or two swapped.
    check(recs[:i] + recs[i + 1:], "records, MANIFEST.json says")
    swapped = list(recs)
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    check(swapped, "out of order")
    # The re-signed pack itself (nothing changed) verifies: the checks above
    # are the chain's, not the signature's.
    p = tmp_path / "same.zip"
    p.write_bytes(zip_of(resign(parts, packd.privkey, "audit.jsonl", parts["audit.jsonl"])))
    assert verify(graphctl_bin, p, packd.pubkey).returncode == 0


def test_brand_scope_and_errors(packd):
    assert export(packd, "acme")
    g = packd.stub.CreateCase(pb.CreateCaseRequest(title="g", brand="globex"),
                              metadata=md("globex"), timeout=T())
    e1 = expect_status(grpc.StatusCode.NOT_FOUND, lambda: list(packd.stub.ExportCase(
        pb.ExportCaseRequest(case_id=g.case_id), metadata=md("acme"), timeout=T())))
    e2 = expect_status(grpc.StatusCode.NOT_FOUND, lambda: list(packd.stub.ExportCase(
        pb.ExportCaseRequest(case_id=123), metadata=md("acme"), timeout=T())),
        fields=["case_id", "123"])
    assert e1.replace(str(g.case_id), "N") == e2.replace("123", "N")
    recs = packd.stub.ListAudit(pb.ListAuditRequest(limit=1000), metadata=md("admin"),
                                timeout=T()).records
    assert any(r.method.endswith("/ExportCase") and r.case_id == str(packd.case_id) and
               r.principal == "acme-analyst" for r in recs)


def test_key_kept_across_restart_and_bad_key_refused(packd, graphctl_bin, tmp_path):
    before = json.loads(parts_of(export(packd))["MANIFEST.json"])["key_id"]
    packd.restart()
    p = tmp_path / "after.zip"
    p.write_bytes(export(packd))
    assert json.loads(parts_of(p.read_bytes())["MANIFEST.json"])["key_id"] == before
    assert verify(graphctl_bin, p, packd.pubkey).returncode == 0
    from conftest import _graphd_bin
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    r = subprocess.run([_graphd_bin(), "--data", str(tmp_path / "d2"), "--listen", "127.0.0.1:0",
                        "--signing-key", str(bad)], capture_output=True, text=True, timeout=T(20))
    assert r.returncode == 1 and "not an Ed25519 private key" in r.stderr, r.stderr


def test_pack_page_in_browser(packd, browser, shot_dir, tmp_path):  # noqa: F811
    assert not isinstance(browser, str), browser
    page = tmp_path / "case.html"
    page.write_bytes(parts_of(export(packd))["case.html"])
    browser.get("file://" + str(page))
    assert browser.title.startswith("Case %d" % packd.case_id)
    h1 = browser.find_element("tag name", "h1").text
    assert "Ring <dev-a> & co" in h1
    svg = browser.find_element("css selector", "svg.draw")
    assert svg.size["width"] > 300 and svg.size["height"] > 300
    assert len(browser.find_elements("css selector", "svg.draw circle")) >= 3
    tables = browser.find_elements("tag name", "table")
    assert len(tables) >= 3  # linked sellers, suspects, the audit trail
    browser.save_screenshot(os.path.join(shot_dir, "evidence-pack.png"))
    browser.execute_script("arguments[0].scrollIntoView()", svg)
    browser.save_screenshot(os.path.join(shot_dir, "evidence-pack-drawing.png"))


def test_docs_example_verifies(graphctl_bin):
    """The pack under docs/examples still verifies with today's graphctl."""
    from conftest import REPO
    ex = os.path.join(REPO, "docs", "examples")
    pack = [f for f in os.listdir(ex) if f.startswith("case-") and f.endswith(".zip")]
    assert len(pack) == 1, pack
    r = verify(graphctl_bin, os.path.join(ex, pack[0]),
               os.path.join(ex, "example-signing-key.pub.pem"))
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
