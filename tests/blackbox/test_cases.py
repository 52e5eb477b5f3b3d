"""Cases (CreateCase, GetCase, ListCases, UpdateCase) and brand-scoped
partners: the case lifecycle and its status rules, items resolved against
the store, saved queries frozen with their replies, limits, the audit
trail under the case's id, restarts, and brand isolation (a partner never
sees another brand's case in a listing, a message or a count)."""

import grpc
import pytest

from bbutil import DEVICE, PHONE, SELLER, T, expect_status, link, pb, ref

TOKENS = {
    "reader": ("rrrrrrrrrrrrrrrr-case-reader", "reader", "rita", ""),
    "investigator": ("iiiiiiiiiiiiiiii-case-invest", "investigator", "ivan", ""),
    "writer": ("wwwwwwwwwwwwwwww-case-writer", "writer", "wanda", ""),
    "admin": ("aaaaaaaaaaaaaaaa-case-admin", "admin", "ada", ""),
    "acme": ("pppppppppppppppp-acme-partner", "partner", "acme-analyst", "acme"),
    "globex": ("gggggggggggggggg-globex-partner", "partner", "globex-analyst", "globex"),
}

OPEN, REFERRED, CLOSED = (pb.CASE_STATUS_OPEN, pb.CASE_STATUS_REFERRED, pb.CASE_STATUS_CLOSED)


def write_tokens(path):
    with open(path, "w") as f:
        for tok, role, name, brand in TOKENS.values():
            f.write("%s %s %s%s\n" % (tok, role, name, " brand=" + brand if brand else ""))
    return str(path)


def md(who, case_header=None):
    m = [("authorization", "Bearer " + TOKENS[who][0])]
    if case_header:
        m.append(("x-case-id", case_header))
    return m


@pytest.fixture
def cased(daemon_factory, tmp_path):
    d = daemon_factory("--tokens", write_tokens(tmp_path / "tokens"))
    s = d.stub
    s.Upsert(pb.UpsertRequest(links=[
        link(SELLER, "ring1", DEVICE, "dev-a"), link(SELLER, "ring2", DEVICE, "dev-a"),
        link(SELLER, "ring2", PHONE, "555"), link(SELLER, "ring3", PHONE, "555"),
    ]), metadata=md("writer"), timeout=T())
    return d


def create(d, who="investigator", **kw):
    return d.stub.CreateCase(pb.CreateCaseRequest(**kw), metadata=md(who), timeout=T())


def update(d, who="investigator", **kw):
    return d.stub.UpdateCase(pb.UpdateCaseRequest(**kw), metadata=md(who), timeout=T())


def get_case(d, who, case_id, **kw):
    return d.stub.GetCase(pb.GetCaseRequest(case_id=case_id, **kw), metadata=md(who), timeout=T())


def list_all(d, who, **kw):
    out, after = [], 0
    while True:
        rep = d.stub.ListCases(pb.ListCasesRequest(after_case_id=after, **kw), metadata=md(who),
                               timeout=T())
        out += rep.cases
        if not rep.next_after_case_id:
            return out
        after = rep.next_after_case_id


def test_case_lifecycle(cased):
    c = create(cased, title="Ring around dev-a", brand="acme", assignee="ivan",
               note="flagged by brand report 7")
    assert c.case_id and 0 < c.case_id < 2 ** 53
    assert (c.title, c.brand, c.status, c.assignee, c.revision) == (
        "Ring around dev-a", "acme", OPEN, "ivan", 1)
    assert c.created_by == "ivan" and c.notes[0].author == "ivan"
    assert c.notes[0].text == "flagged by brand report 7" and c.notes[0].time > 0
    # Items resolve against the store: ids and stored keys come back.
    u = update(cased, case_id=c.case_id, add_sellers=[ref(SELLER, "ring1"), ref(SELLER, "RING2")],
               add_entities=[ref(DEVICE, "dev-a")], note="two sellers on one device")
    assert u.revision == 2 and [s.key for s in u.sellers] == ["ring1", "ring2"]
    assert all(s.id for s in u.sellers) and u.entities[0].type == DEVICE
    assert [n.text for n in u.notes] == ["flagged by brand report 7", "two sellers on one device"]
    # Adding what it holds is no change: the revision stays.
    u = update(cased, case_id=c.case_id, add_sellers=[ref(SELLER, "ring1")])
    assert u.revision == 2
    u = update(cased, case_id=c.case_id, remove_sellers=[ref(SELLER, "ring1")])
    assert [s.key for s in u.sellers] == ["ring2"] and u.revision == 3
    # Status moves.
    u = update(cased, case_id=c.case_id, status=REFERRED)
    assert u.status == REFERRED
    u = update(cased, case_id=c.case_id, status=CLOSED)
    assert u.status == CLOSED
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, update, cased, case_id=c.case_id,
                  status=OPEN, fields=["status", "reopen", "closed -> open"])
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, update, cased, case_id=c.case_id,
                  status=REFERRED, fields=["closed -> referred", "reopen"])
    u = update(cased, case_id=c.case_id, status=OPEN, reopen=True, note="new evidence")
    assert u.status == OPEN
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, update, cased, case_id=c.case_id,
                  status=OPEN, reopen=True, fields=["reopen", "only a closed case"])
    # Optimistic concurrency.
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, update, cased, case_id=c.case_id,
                  expect_revision=1, title="x", fields=["expect_revision", "revision"])
    g = get_case(cased, "reader", c.case_id)
    assert g.revision == u.revision and g.status == OPEN and g.updated_by == "ivan"


def test_closed_case_is_frozen_until_reopened(cased):
    """A closed case keeps its title, assignee, items and saved queries as
    they were when it closed: a change is FAILED_PRECONDITION naming the
    field, and writes nothing. A note may still be added; reopening (in
    the same request or before) makes it changeable again."""
    c = create(cased, title="closed ring", brand="acme")
    update(cased, case_id=c.case_id, add_sellers=[ref(SELLER, "ring1")])
    closed = update(cased, case_id=c.case_id, status=CLOSED)
    for kw, field in (
            (dict(add_sellers=[ref(SELLER, "ring2")]), "add_sellers"),
            (dict(remove_sellers=[ref(SELLER, "ring1")]), "remove_sellers"),
            (dict(add_entities=[ref(DEVICE, "dev-a")]), "add_entities"),
            (dict(title="renamed"), "title"),
            (dict(assignee="bob"), "assignee"),
            (dict(clear_assignee=True), "clear_assignee"),
            (dict(save_linked_sellers=pb.LinkedSellersRequest(seller=ref(SELLER, "ring1"))),
             "save_linked_sellers")):
        expect_status(grpc.StatusCode.FAILED_PRECONDITION, update, cased, case_id=c.case_id,
                      fields=[field, "closed", "reopen"], **kw)
    g = get_case(cased, "reader", c.case_id)
    assert g.revision == closed.revision and [s.key for s in g.sellers] == ["ring1"]
    n = update(cased, case_id=c.case_id, note="referred to brand legal")
    assert n.status == CLOSED and n.revision == closed.revision + 1
    u = update(cased, case_id=c.case_id, status=OPEN, reopen=True,
               add_sellers=[ref(SELLER, "ring2")])
    assert u.status == OPEN and [s.key for s in u.sellers] == ["ring1", "ring2"]


def test_refused_save_runs_no_query(cased):
    """An update with a saved query that the case refuses (closed, stale
    expect_revision, no such case) is refused before the query runs: the
    status is the case's, not the query's. The query here names a seller
    that does not exist, which the query would report as NOT_FOUND."""
    ghost = pb.LinkedSellersRequest(seller=ref(SELLER, "ghost"))
    c = create(cased, title="refused saves", brand="acme")
    closed = update(cased, case_id=c.case_id, status=CLOSED)
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, update, cased, case_id=c.case_id,
                  save_linked_sellers=ghost, fields=["save_linked_sellers", "closed", "reopen"])
    o = update(cased, case_id=c.case_id, status=OPEN, reopen=True)
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, update, cased, case_id=c.case_id,
                  expect_revision=closed.revision, save_linked_sellers=ghost,
                  fields=["expect_revision", str(o.revision)])
    expect_status(grpc.StatusCode.NOT_FOUND, update, cased, case_id=98765,
                  save_linked_sellers=ghost, fields=["case_id", "98765"])
    # The case accepts it: now the query runs and names the missing seller.
    expect_status(grpc.StatusCode.NOT_FOUND, update, cased, case_id=c.case_id,
                  save_linked_sellers=ghost, fields=["save_linked_sellers", "seller"])
    assert get_case(cased, "reader", c.case_id).revision == o.revision


def test_case_bad_input(cased):
    c = create(cased, title="t", brand="acme")
    expect_status(grpc.StatusCode.NOT_FOUND, get_case, cased, "reader", 12345,
                  fields=["case_id", "12345"])
    expect_status(grpc.StatusCode.NOT_FOUND, update, cased, case_id=12345, note="x",
                  fields=["case_id"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, update, cased, note="x", fields=["case_id"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, create, cased, title="", brand="acme",
                  fields=["title"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, create, cased, title="t", brand="",
                  fields=["brand"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, create, cased, title="t", brand="a b",
                  fields=["brand"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, create, cased, title="a\x01", brand="acme",
                  fields=["title", "control"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, create, cased, title="x" * 257, brand="acme",
                  fields=["title", "256"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, update, cased, case_id=c.case_id,
                  note="n" * 4097, fields=["note", "4096"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, update, cased, case_id=c.case_id,
                  status=9, fields=["status"])
    expect_status(grpc.StatusCode.NOT_FOUND, update, cased, case_id=c.case_id,
                  add_sellers=[ref(SELLER, "ring1"), ref(SELLER, "nobody")],
                  fields=["add_sellers[1]"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, update, cased, case_id=c.case_id,
                  add_sellers=[ref(DEVICE, "dev-a")], fields=["add_sellers[0]", "not a seller"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, update, cased, case_id=c.case_id,
                  add_clusters=[pb.CaseCluster(cluster_id=1)],
                  fields=["add_clusters[0].snapshot_id"])
    expect_status(grpc.StatusCode.NOT_FOUND, update, cased, case_id=c.case_id,
                  add_clusters=[pb.CaseCluster(snapshot_id=77, cluster_id=1)],
                  fields=["add_clusters[0]"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, cased.stub.ListCases,
                  pb.ListCasesRequest(limit=1001), metadata=md("reader"), timeout=T(),
                  fields=["limit", "1000"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, get_case, cased, "reader", c.case_id,
                  max_queries=101, fields=["max_queries", "100"])
    # Nothing above changed the case.
    assert get_case(cased, "reader", c.case_id).revision == 1


def test_note_limit(cased):
    c = create(cased, title="t", brand="acme")
    for i in range(200):
        update(cased, case_id=c.case_id, note="n%d" % i)
    expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, update, cased, case_id=c.case_id,
                  note="one more", fields=["note", "200"])
    assert len(get_case(cased, "reader", c.case_id).notes) == 200


def test_saved_queries_are_frozen(cased):
    c = create(cased, title="t", brand="acme")
    q = pb.LinkedSellersRequest(seller=ref(SELLER, "ring1"), max_hops=2)
    u = update(cased, case_id=c.case_id, save_linked_sellers=q, save_comment="before the phone")
    assert u.query_count == 1 and not u.queries
    live = cased.stub.LinkedSellers(q, metadata=md("reader"), timeout=T())
    assert {s.seller.key for s in live.sellers} == {"ring2", "ring3"}
    # The graph changes; the saved reply does not.
    cased.stub.Upsert(pb.UpsertRequest(links=[link(SELLER, "ring4", DEVICE, "dev-a")]),
                      metadata=md("writer"), timeout=T())
    fp = pb.FindPathsRequest(to=ref(SELLER, "ring3"), **{"from": ref(SELLER, "ring1")})
    update(cased, case_id=c.case_id, save_find_paths=fp)
    cased.stub.SetLabels(pb.SetLabelsRequest(ref=ref(SELLER, "ring1"), add=["counterfeit"]),
                         metadata=md("investigator"), timeout=T())
    update(cased, case_id=c.case_id, save_rank_suspects=pb.RankSuspectsRequest())
    g = get_case(cased, "reader", c.case_id)
    assert g.query_count == 3 and [x.seq for x in g.queries] == [1, 2, 3]
    s1 = g.queries[0]
    assert s1.WhichOneof("request") == "linked_sellers" and s1.linked_sellers == q
    assert s1.comment == "before the phone" and s1.saved_by == "ivan" and s1.saved_at > 0
    assert {s.seller.key for s in s1.linked_sellers_reply.sellers} == {"ring2", "ring3"}
    assert s1.linked_sellers_reply.sellers[0].evidence  # the evidence is kept too
    assert g.queries[1].WhichOneof("reply") == "find_paths_reply"
    assert g.queries[1].find_paths_reply.paths
    assert g.queries[2].WhichOneof("reply") == "rank_suspects_reply"
    # Paging the saved queries.
    p = get_case(cased, "reader", c.case_id, queries_after=1, max_queries=1)
    assert [x.seq for x in p.queries] == [2] and p.queries_more
    # A query that fails saves nothing.
    expect_status(grpc.StatusCode.NOT_FOUND, update, cased, case_id=c.case_id,
                  save_linked_sellers=pb.LinkedSellersRequest(seller=ref(SELLER, "ghost")),
                  fields=["save_linked_sellers", "seller"])
    expect_status(grpc.StatusCode.INVALID_ARGUMENT, update, cased, case_id=c.case_id,
                  save_linked_sellers=pb.LinkedSellersRequest(seller=ref(SELLER, "ring1"),
                                                              max_hops=9),
                  fields=["save_linked_sellers", "max_hops"])
    assert get_case(cased, "reader", c.case_id).query_count == 3


def test_changes_are_audited_under_the_case_id(cased):
    c = create(cased, title="t", brand="acme")
    update(cased, case_id=c.case_id, note="x")
    # The x-case-id header does not override the case's own id.
    cased.stub.UpdateCase(pb.UpdateCaseRequest(case_id=c.case_id, note="y"),
                          metadata=md("investigator", "other"), timeout=T())
    get_case(cased, "acme", c.case_id)
    expect_status(grpc.StatusCode.PERMISSION_DENIED, update, cased, "acme", case_id=c.case_id,
                  add_sellers=[ref(SELLER, "ring1")], fields=["add_sellers", "partner"])
    recs = cased.stub.ListAudit(pb.ListAuditRequest(limit=1000), metadata=md("admin"),
                                timeout=T()).records
    mine = [(r.method.rsplit("/", 1)[1], r.principal, r.status) for r in recs
            if r.case_id == str(c.case_id)]
    assert mine == [("CreateCase", "ivan", 0), ("UpdateCase", "ivan", 0),
                    ("UpdateCase", "ivan", 0), ("GetCase", "acme-analyst", 0),
                    ("UpdateCase", "acme-analyst", 7)], mine
    assert cased.stub.VerifyAudit(pb.VerifyAuditRequest(), metadata=md("admin"),
                                  timeout=T()).ok


def test_cases_survive_restart(cased):
    c = create(cased, title="kept", brand="acme")
    update(cased, case_id=c.case_id, add_sellers=[ref(SELLER, "ring3")],
           save_linked_sellers=pb.LinkedSellersRequest(seller=ref(SELLER, "ring3")))
    cased.restart()
    g = get_case(cased, "reader", c.case_id)
    assert g.title == "kept" and [s.key for s in g.sellers] == ["ring3"] and g.query_count == 1
    assert g.queries[0].linked_sellers_reply.sellers


def test_partner_sees_only_its_brand(cased):
    a1 = create(cased, "acme", title="acme case 1")
    assert a1.brand == "acme" and a1.created_by == "acme-analyst"
    a2 = create(cased, title="acme case 2", brand="acme")
    g1 = create(cased, title="globex secret", brand="globex")
    create(cased, "globex", title="globex own", brand="globex")
    ids_acme = {a1.case_id, a2.case_id}
    assert {c.case_id for c in list_all(cased, "acme")} == ids_acme
    assert {c.brand for c in list_all(cased, "globex")} == {"globex"}
    assert len(list_all(cased, "reader")) == 4
    assert {c.case_id for c in list_all(cased, "reader", brand="acme")} == ids_acme
    # Paging one by one shows the same set, and no page hints at more.
    seen, after = [], 0
    while True:
        rep = cased.stub.ListCases(pb.ListCasesRequest(after_case_id=after, limit=1),
                                   metadata=md("acme"), timeout=T())
        seen += [c.case_id for c in rep.cases]
        if not rep.next_after_case_id:
            break
        after = rep.next_after_case_id
    assert set(seen) == ids_acme and len(seen) == 2
    # Another brand's case is NOT_FOUND, word for word as a missing one.
    missing = 9007199254740990
    e1 = expect_status(grpc.StatusCode.NOT_FOUND, get_case, cased, "acme", g1.case_id)
    e2 = expect_status(grpc.StatusCode.NOT_FOUND, get_case, cased, "acme", missing)
    assert e1.replace(str(g1.case_id), "N") == e2.replace(str(missing), "N")
    assert "globex" not in e1
    e3 = expect_status(grpc.StatusCode.NOT_FOUND, update, cased, "acme", case_id=g1.case_id,
                       note="sneaky")
    assert "globex" not in e3
    expect_status(grpc.StatusCode.PERMISSION_DENIED, cased.stub.ListCases,
                  pb.ListCasesRequest(brand="globex"), metadata=md("acme"), timeout=T(),
                  fields=["brand", "own brand"])
    expect_status(grpc.StatusCode.PERMISSION_DENIED, create, cased, "acme", title="x",
                  brand="globex", fields=["brand", "own brand"])
    # A partner works its own case: notes, status, assignee, title.
    u = update(cased, "acme", case_id=a1.case_id, note="our test buy", status=REFERRED,
               assignee="acme-legal", title="acme case 1 (referred)")
    assert u.status == REFERRED and u.notes[-1].author == "acme-analyst"
    for field, val in [("add_sellers", [ref(SELLER, "ring1")]),
                       ("remove_entities", [ref(DEVICE, "dev-a")]),
                       ("add_clusters", [pb.CaseCluster(snapshot_id=1, cluster_id=1)]),
                       ("save_linked_sellers", pb.LinkedSellersRequest(seller=ref(SELLER, "x")))]:
        expect_status(grpc.StatusCode.PERMISSION_DENIED, update, cased, "acme",
                      case_id=a1.case_id, fields=[field], **{field: val})
    # The graph is closed to it.
    for fn, req in [(cased.stub.GetEntity, pb.GetEntityRequest(ref=ref(SELLER, "ring1"))),
                    (cased.stub.LinkedSellers, pb.LinkedSellersRequest(seller=ref(SELLER, "ring1"))),
                    (cased.stub.Stats, pb.StatsRequest()),
                    (cased.stub.ListSnapshots, pb.ListSnapshotsRequest())]:
        expect_status(grpc.StatusCode.PERMISSION_DENIED, fn, req, metadata=md("acme"),
                      timeout=T(), fields=["not open to partners", "acme-analyst"])
    w = cased.stub.WhoAmI(pb.WhoAmIRequest(), metadata=md("acme"), timeout=T())
    assert (w.principal, w.role, w.brand) == ("acme-analyst", "partner", "acme")
    # A reader reads every brand but changes none.
    assert get_case(cased, "reader", g1.case_id).brand == "globex"
    expect_status(grpc.StatusCode.PERMISSION_DENIED, update, cased, "reader", case_id=g1.case_id,
                  note="x")


@pytest.mark.parametrize("line,msg", [
    ("pppppppppppppppppppp partner p\n", ":1: a partner needs brand=BRAND"),
    ("pppppppppppppppppppp reader p brand=acme\n", ":1: brand= is for role partner only"),
    ("pppppppppppppppppppp partner p brand=a/b\n", ":1: brand must be"),
    ("pppppppppppppppppppp partner p color=red\n", ":1: expected 'TOKEN ROLE NAME [brand=BRAND]'"),
])
def test_bad_partner_lines_refuse_to_start(tmp_path, line, msg):
    import subprocess
    from conftest import _graphd_bin
    p = tmp_path / "tokens"
    p.write_text(line)
    r = subprocess.run([_graphd_bin(), "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                        "--tokens", str(p)], capture_output=True, text=True, timeout=T(20))
    assert r.returncode == 1 and msg in r.stderr, r.stderr


def test_graphctl_case_commands(cased, graphctl_bin, tmp_path):
    import json
    import subprocess

    def ctl(who, *args, ok=True):
        tf = tmp_path / ("tok-" + who)
        tf.write_text(TOKENS[who][0] + "\n")
        r = subprocess.run([graphctl_bin, "--addr", cased.addr, "--token-file", str(tf)] +
                           list(args), capture_output=True, text=True, timeout=T(30))
        assert (r.returncode == 0) == ok, (args, r.returncode, r.stderr)
        return r

    c = json.loads(ctl("investigator", "--json", "case", "new", "--brand", "acme", "--title",
                       "Ring on dev-a", "--note", "opened from graphctl").stdout)
    cid = str(c["case_id"])
    assert c["status"] == "open" and c["notes"][0]["text"] == "opened from graphctl"
    u = json.loads(ctl("investigator", "--json", "case", "update", cid, "--add", "seller:ring1",
                       "--add", "seller:ring2", "--add", "device:dev-a", "--assignee",
                       "ivan").stdout)
    assert [s["key"] for s in u["sellers"]] == ["ring1", "ring2"]
    assert u["entities"][0]["type"] == "device" and u["assignee"] == "ivan"
    ctl("investigator", "case", "save", cid, "linked", "ring1", "--hops", "2", "--comment",
        "the ring")
    ctl("investigator", "case", "save", cid, "paths", "ring1", "ring3")
    out = ctl("reader", "case", "show", cid).stdout
    assert "case " + cid in out and "seller ring1" in out and "device dev-a" in out
    assert "query 1 linked, 2 results" in out and "the ring" in out and "query 2 paths" in out
    r = ctl("investigator", "case", "update", cid, "--status", "closed")
    assert "[closed]" in r.stdout
    r = ctl("investigator", "case", "update", cid, "--status", "open", ok=False)
    assert "FAILED_PRECONDITION" in r.stderr and "reopen" in r.stderr
    ctl("investigator", "case", "update", cid, "--status", "open", "--reopen")
    # The partner: its brand only, no graph changes.
    ctl("investigator", "case", "new", "--brand", "globex", "--title", "other brand")
    rows = ctl("acme", "case", "list").stdout.strip().splitlines()
    assert len(rows) == 1 and rows[0].startswith(cid + "\t") and "\tacme\t" in rows[0]
    r = ctl("acme", "case", "update", cid, "--add", "seller:ring3", ok=False)
    assert "PERMISSION_DENIED" in r.stderr and "add_sellers" in r.stderr
    ctl("acme", "case", "update", cid, "--note", "test buy confirmed fake")
    listed = json.loads(ctl("reader", "--json", "case", "list", "--brand", "acme").stdout)
    assert [str(x["case_id"]) for x in listed] == [cid]
    r = ctl("reader", "case", "show", "123", ok=False)
    assert "NOT_FOUND" in r.stderr
    r = ctl("reader", "case", "update", cid, "--add", "nonsense", ok=False)
    assert r.returncode == 2 and "TYPE:KEY" in r.stderr


def test_change_whose_reply_is_too_big_writes_nothing(daemon_factory, tmp_path):
    d = daemon_factory("--tokens", write_tokens(tmp_path / "tokens"), "--max-message-bytes",
                       "65536")
    c = create(d, title="t", brand="acme")
    rev = c.revision
    for i in range(40):
        try:
            rev = update(d, case_id=c.case_id, note=("n%d " % i) + "x" * 4000).revision
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
            assert "--max-message-bytes" in e.details() and "nothing was changed" in e.details()
            break
    else:
        pytest.fail("no change was refused for its reply's size")
    g = get_case(d, "reader", c.case_id)
    assert g.revision == rev and len(g.notes) == rev - 1
