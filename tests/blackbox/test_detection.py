"""Detection quality gates with default settings only, through the daemon.

A matrix of sellergen profiles (classic: the original model; heavy: heavy-
tailed shared addresses and IPs with no gap between a ring's warehouse and
a small logistics park, franchise chains, big rings; adversarial: heavy plus
device pools rotated mid-life, camouflage ties to honest sellers, few and
false labels) x seeds x sizes. Each cell is ingested into a fresh daemon,
clustered with an empty spec (every default), and scored against the
ground truth by tools/bench/detection.py (its docstring defines every
measure). Gates, each cell:

  ring recovery >= 0.95; pair F1 >= 0.90 (pairs in one ring, family or
  chain); honest sellers <= 1% of the rings' best clusters; every ring's
  warehouse among its best cluster's top 3 supply sources; RankSuspects
  AUC >= 0.98; LinkedSellers cites no entity that the rule treats as a hub
  or as context.

Sizes: GRAPHD_DETECTION_SIZES (default 10000; the slow suite runs 50000),
seeds GRAPHD_DETECTION_SEEDS (default 1,2,3). The sellergen ring fraction
is 6% (at the default 2% the new profiles hold little but their big ring).
The previous rule's figures are printed beside each cell for comparison.
"""

import os
import subprocess
import sys
import time

import pytest

from bbutil import ADDRESS, DEVICE, PHONE, SELLER, T, ent, link, pb, upsert
from conftest import REPO
from test_investigate import report, start_daemon, stop_daemon

sys.path.insert(0, os.path.join(REPO, "tools", "bench"))
import detection  # noqa: E402

PROFILES = ("classic", "heavy", "adversarial")
SIZES = os.environ.get("GRAPHD_DETECTION_SIZES", "10000").split(",")
SEEDS = os.environ.get("GRAPHD_DETECTION_SEEDS", "1,2,3").split(",")
CELLS = [(p, n, s) for n in SIZES for p in PROFILES for s in SEEDS]


@pytest.mark.parametrize("profile,size,seed", CELLS,
                         ids=["%s-%s-%s" % c for c in CELLS])
def test_detection_defaults(profile, size, seed, sellergen_bin, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("det-%s-%s-%s" % (profile, size, seed))
    subprocess.run([sellergen_bin, "--profile", profile, "--sellers", size, "--seed", seed,
                    "--ring-fraction", "0.06", "--out", str(out)],
                   check=True, capture_output=True, timeout=T(120))
    truth = detection.Truth(str(out))
    dm = start_daemon(tmp_path_factory, "det")
    try:
        cell = detection.Cell(dm.stub, pb, truth, timeout=T(600))
        cell.ingest()
        s = cell.measure()
    finally:
        stop_daemon(dm)
    old = s["old"]
    report(capsys, "detection %s %s seed %s: ring recovery %.4f, pair F1 %.4f (P %.4f R %.4f), "
           "honest in ring clusters %d (%.4f), warehouse top 3 %d/%d, AUC %.4f, evidence %d "
           "cited, %d hub/context, %d crowds | previous rule: recovery %.4f, F1 %.4f, "
           "honest %.4f"
           % (profile, size, seed, s["recovery"], s["f1"], s["precision"], s["recall"],
              s["honest_in_rings"], s["honest_share"], s["warehouse_hit"], s["warehouse_rings"],
              s["auc"], s["cited"], s["cited_bad"], s["cited_crowds"],
              old["recovery"], old["f1"], old["honest_share"]))
    assert s["rings"] >= 10
    assert s["recovery"] >= 0.95
    assert s["f1"] >= 0.90
    assert s["honest_share"] <= 0.01
    assert s["warehouse_hit"] == s["warehouse_rings"], \
        "warehouse not in the top 3 supply sources of rings %s" % s["warehouse_misses"]
    assert s["auc"] >= 0.98
    assert s["cited"] > 0 and s["cited_bad"] == 0


def test_suspects_rank_unreached_groups(tmp_path_factory):
    """A ring with no labelled member and no evidence shared with labelled
    sellers gets no PageRank mass. After the sellers the walk reaches,
    RankSuspects lists the members of the latest snapshot's multi-seller
    clusters it did not reach (score 0, group_size set), larger first;
    sellers in no group are not listed. Without a snapshot: only the walk."""
    dm = start_daemon(tmp_path_factory, "det-groups")
    try:
        links = []
        for i in range(4):   # ring A: a labelled member, a device and a warehouse
            links += [link(SELLER, "a%d" % i, DEVICE, "da"),
                      link(SELLER, "a%d" % i, ADDRESS, "wa")]
        for i in range(5):   # ring B: nobody labelled, nothing shared with A
            links += [link(SELLER, "b%d" % i, DEVICE, "db"), link(SELLER, "b%d" % i, ADDRESS, "wb")]
        for i in range(3):   # a family: one phone
            links.append(link(SELLER, "f%d" % i, PHONE, "+49301"))
        for i in range(20):  # loners
            links.append(link(SELLER, "l%d" % i, DEVICE, "dl%d" % i))
        upsert(dm.stub, links=links, entities=[ent(SELLER, "a0", labels=["counterfeit"])])

        def ranked():
            rep = dm.stub.RankSuspects(pb.RankSuspectsRequest(limit=100), timeout=T())
            return [(s.seller.key, s.score, s.group_size) for s in rep.suspects]

        before = ranked()
        assert sorted(k for k, _, _ in before) == ["a1", "a2", "a3"]
        assert all(sc > 0 and g == 0 for _, sc, g in before)

        job = dm.stub.StartClustering(pb.StartClusteringRequest(), timeout=T())
        for _ in range(600):
            j = dm.stub.GetJob(pb.JobRequest(job_id=job.id), timeout=T())
            if j.state == pb.JOB_STATE_SUCCEEDED:
                break
            assert j.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING), j.reason
            time.sleep(0.05)
        after = ranked()
        keys = [k for k, _, _ in after]
        assert keys[:3] == [k for k, _, _ in before]          # the walk's order first
        assert keys[3:8] == ["b%d" % i for i in range(5)]     # the bigger group
        assert keys[8:] == ["f%d" % i for i in range(3)]      # then the family
        assert all(sc == 0 and g == 5 for _, sc, g in after[3:8])
        assert all(sc == 0 and g == 3 for _, sc, g in after[8:])
        assert not any(k.startswith("l") for k in keys)       # loners: in no group
        # The limit cuts the list where it is.
        rep = dm.stub.RankSuspects(pb.RankSuspectsRequest(limit=5), timeout=T())
        assert [s.seller.key for s in rep.suspects] == keys[:5]
    finally:
        stop_daemon(dm)
