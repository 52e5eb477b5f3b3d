"""The investigator console (graphd/console) in a real browser.

Debian's chromium, driven headless by chromium-driver through
python3-selenium, loads the console from graphd's HTTP gateway
(--http-listen, --console-dir graphd/console) at a 1280x800 viewport and
works it the way an investigator would: search, expand, evidence, labels,
tokens, hostile keys, collapse, timeline, exports, snapshots and diffs,
alerts.
Without those packages every test fails, naming the package to install
(tools/deps.sh --test).

Each test keeps a screenshot in $GRAPHD_SCREENSHOT_DIR (default: a
pytest temporary directory); docs/console/ holds a copy of the set.

Data: a sellergen marketplace (SELLERGEN_BIN, 2000 sellers, seed 1: one
counterfeit ring of 40 with its warehouse address, three hub addresses and
a carrier-grade NAT IP) loaded with graphctl (GRAPHCTL_BIN); the hostile
key and alerts tests write their own small graphs over gRPC.
"""

import csv
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from bbutil import ADDRESS, DEVICE, PAYMENT, SELLER, T, ent, get, link, pb, upsert
from conftest import REPO

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException, WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
    SELENIUM_ERROR = None
except ImportError as e:  # pragma: no cover - reported by the browser fixture
    SELENIUM_ERROR = e

CONSOLE_DIR = os.path.join(REPO, "graphd", "console")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
GEN_ARGS = ["--sellers", "2000", "--seed", "1"]
WAIT = 20.0 * (4 if os.environ.get("ASAN_OPTIONS") else 1)

TOKENS = {
    "admin": ("admin-token-7f3a9c1e5b", "root"),
    "writer": ("writer-token-2d8e4b6a0c", "alice"),
    "reader": ("reader-token-9b1f7d3e5a", "bob"),
}


# ---------------------------------------------------------------------------
# The daemon, with its HTTP gateway
# ---------------------------------------------------------------------------

def worker_args():
    w = os.environ.get("GRAPHD_WORKER_BIN")
    return ["--worker", w] if w else []


@pytest.fixture
def console_daemon(daemon_factory):
    """console_daemon(*args) -> a daemon serving the console over HTTP."""
    def make(*args):
        dm = daemon_factory("--http-listen", "127.0.0.1:0", "--console-dir", CONSOLE_DIR,
                            *(worker_args() + list(args)))
        assert dm.http_port, "graphd printed no 'http listening on' line"
        dm.url = "http://127.0.0.1:%d/" % dm.http_port
        return dm
    return make


def write_tokens(tmp_path):
    p = tmp_path / "tokens"
    p.write_text("# console tests\n" + "".join(
        "%s %s %s\n" % (tok, role, name) for role, (tok, name) in TOKENS.items()))
    return str(p)


def admin_md():
    return [("authorization", "Bearer " + TOKENS["admin"][0])]


def http_call(dm, method, body, token=None, case_id=None):
    """POST /v1/<method>; returns (http status, parsed JSON)."""
    req = urllib.request.Request(dm.url + "v1/" + method, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if case_id:
        req.add_header("X-Case-Id", case_id)
    try:
        with urllib.request.urlopen(req, timeout=T()) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def entity_id(dm, key, type_="ENTITY_TYPE_SELLER", token=None):
    st, r = http_call(dm, "GetEntity", {"ref": {"type": type_, "key": key}}, token=token)
    assert st == 200, (st, r)
    return r["entity"]["id"]


# ---------------------------------------------------------------------------
# The demo marketplace
# ---------------------------------------------------------------------------

class Demo:
    """A sellergen output directory, with what its files say."""

    def __init__(self, out):
        self.out = out
        def rd(name):
            with open(os.path.join(out, name), newline="") as f:
                return list(csv.DictReader(f))
        rings = rd("rings.csv")
        assert rings, "sellergen wrote no ring"
        self.warehouse = rings[0]["warehouse_key"]
        self.ring = {r["seller_key"] for r in rd("truth.csv") if r["ring"] == rings[0]["ring"]}
        self.labelled = {r["seller_key"] for r in rd("truth.csv") if r["labelled"] == "1"}
        self.hubs = {r["key"]: int(r["sellers"]) for r in rd("hubs.csv")}
        self.warehouse_users = {r["a_key"] for r in rd("links.csv") if r["b_key"] == self.warehouse}
        # a flagged ring seller that uses the warehouse
        cands = sorted(self.ring & self.labelled & self.warehouse_users, key=lambda k: int(k[1:]))
        assert cands, "no labelled ring seller uses the warehouse"
        self.flagged = cands[0]
        self.unlabelled_member = sorted(self.ring - self.labelled, key=lambda k: int(k[1:]))[0]

    def load(self, dm, token=None):
        gctl = os.environ.get("GRAPHCTL_BIN")
        env = dict(os.environ)
        if token:
            env["GRAPHD_TOKEN"] = token
        r = subprocess.run([gctl, "--addr", dm.addr, "ingest", os.path.join(self.out, "entities.csv"),
                            os.path.join(self.out, "links.csv")], capture_output=True, text=True,
                           env=env, timeout=T(60))
        assert r.returncode == 0, "graphctl ingest failed: %s%s" % (r.stdout, r.stderr)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, sellergen_bin, graphctl_bin):
    out = tmp_path_factory.mktemp("demo")
    subprocess.run([sellergen_bin] + GEN_ARGS + ["--out", str(out)], check=True,
                   capture_output=True, timeout=T(60))
    return Demo(str(out))


# ---------------------------------------------------------------------------
# The browser
# ---------------------------------------------------------------------------

def browser_missing():
    """What keeps the browser from running, naming the Debian package; or None."""
    if SELENIUM_ERROR is not None:
        return ("selenium cannot be imported (%s): install Debian's python3-selenium "
                "(tools/deps.sh --test)" % SELENIUM_ERROR)
    if not os.path.exists(CHROMEDRIVER):
        return ("%s is missing: install Debian's chromium-driver (tools/deps.sh --test)"
                % CHROMEDRIVER)
    if not os.path.exists(CHROMIUM):
        return "%s is missing: install Debian's chromium (tools/deps.sh --test)" % CHROMIUM
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless chromium at a 1280x800 viewport, downloads allowed; or, when
    it cannot run, the reason (each test then fails with it: never a skip)."""
    missing = browser_missing()
    if missing:
        yield missing
        return
    dl = str(tmp_path_factory.mktemp("downloads"))
    profile = str(tmp_path_factory.mktemp("chromium-profile"))
    o = Options()
    o.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,800", "--hide-scrollbars", "--user-data-dir=" + profile,
              "--no-first-run", "--disable-extensions", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--lang=en-US"):
        o.add_argument(a)
    o.add_experimental_option("prefs", {"download.default_directory": dl,
                                        "download.prompt_for_download": False})
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
    except WebDriverException as e:
        yield ("chromium-driver could not start chromium (Debian packages chromium, "
               "chromium-driver): %s" % e.msg)
        return
    try:
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                          {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": dl})
        # Counts Content-Security-Policy violations (CDP scripts are exempt from the policy).
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source":
            "window.__cspViolations = []; document.addEventListener('securitypolicyviolation', "
            "e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"})
        d.set_script_timeout(30)
        d.download_dir = dl
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="module")
def shot_dir(tmp_path_factory):
    d = os.environ.get("GRAPHD_SCREENSHOT_DIR")
    if d:
        os.makedirs(d, exist_ok=True)
        return d
    return str(tmp_path_factory.mktemp("screenshots"))


FIND_EDGE_POINT = """
const g = arguments[0];
const line = g.querySelector('line.line');
const m = line.getScreenCTM();
const x1 = +line.getAttribute('x1'), y1 = +line.getAttribute('y1');
const x2 = +line.getAttribute('x2'), y2 = +line.getAttribute('y2');
const mine = (x, y) => { const e = document.elementFromPoint(x, y); return e && e.closest('g.edge') === g; };
for (let i = 0; i <= 40; i++) {
  const t = 0.5 + (i % 2 ? 1 : -1) * Math.ceil(i / 2) * 0.02;
  const p = new DOMPoint(x1 + (x2 - x1) * t, y1 + (y2 - y1) * t).matrixTransform(m);
  const x = Math.round(p.x), y = Math.round(p.y);
  let ok = true;  /* the point and its neighbours: a click there is the edge's */
  for (const [dx, dy] of [[0, 0], [-2, 0], [2, 0], [0, -2], [0, 2]]) ok = ok && mine(x + dx, y + dy);
  if (ok) return [x, y];
}
return null;
"""


class Page:
    """The console in the browser, for one daemon."""

    def __init__(self, d, dm, shot_dir):
        self.d, self.dm, self.shot_dir = d, dm, shot_dir

    def open(self):
        self.d.get(self.dm.url)
        self.wait(lambda: self.js("return !!window.graphdConsole"), "the console to start")
        self.wait(lambda: self.text("role") != "role: unknown", "the role probe")
        self.idle()
        self.d.get_log("browser")  # start each test with an empty log

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def wait(self, fn, what, timeout=WAIT):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            try:
                last = fn()
                if last:
                    return last
            except WebDriverException as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s (last: %r)\nstatus: %s\nerrors: %s"
                             % (what, last, self.text("status"), self.error_text()))

    def idle(self):
        self.wait(lambda: self.js("return window.graphdConsole.api.inflight === 0"), "calls to finish")

    def el(self, id_):
        return self.d.find_element(By.ID, id_)

    def css(self, sel):
        return self.d.find_elements(By.CSS_SELECTOR, sel)

    def text(self, id_):
        return self.d.find_element(By.ID, id_).text

    def error_text(self):
        return self.js("const e = document.getElementById('errors'); return e.hidden ? '' : e.textContent")

    def click(self, id_):
        self.el(id_).click()

    def fill(self, id_, value):
        e = self.el(id_)
        e.clear()
        e.send_keys(value)

    def connect(self, token="", case_id=""):
        self.fill("token", token)
        self.fill("case-id", case_id)
        before = self.js("return window.graphdConsole.api.role + '|' + window.graphdConsole.api.principal")
        self.click("connect")
        self.idle()
        return before

    def search(self, key, type_="SELLER"):
        Select(self.el("search-type")).select_by_value(type_)
        self.fill("search-id", "")
        self.fill("search-key", key)
        self.el("search-key").send_keys(Keys.ENTER)
        self.idle()
        self.wait(lambda: self.js("const k = document.getElementById('card-key'); return k && k.textContent")
                  == key, "the card of %r" % key)

    def node_ids(self):
        return set(self.js("return [...document.querySelectorAll('#drawing g.node')].map(g => g.dataset.id)"))

    def node_keys(self):
        return self.js("const o = {}; for (const g of document.querySelectorAll('#drawing g.node')) "
                       "o[g.dataset.id] = g.dataset.key; return o")

    def settle(self):
        self.js("window.graphdConsole.settle()")

    def click_edge(self, key):
        """A real click on a visible point of the edge; False if none is free."""
        self.settle()
        g = self.d.find_element(By.CSS_SELECTOR, '#drawing g.edge[data-key="%s"]' % key)
        p = self.js(FIND_EDGE_POINT, g)
        if p is None:
            return False
        ab = ActionBuilder(self.d)
        ab.pointer_action.move_to_location(int(p[0]), int(p[1]))
        ab.pointer_action.click()
        ab.perform()
        return True

    def click_node(self, id_, shift=False):
        self.settle()
        g = self.d.find_element(By.CSS_SELECTOR, '#drawing g.node[data-id="%s"] .shape' % id_)
        a = ActionChains(self.d)
        if shift:
            a = a.key_down(Keys.SHIFT).click(g).key_up(Keys.SHIFT)
        else:
            a = a.click(g)
        a.perform()
        self.idle()

    def shot(self, name):
        path = os.path.join(self.shot_dir, name + ".png")
        self.d.save_screenshot(path)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", "screenshot %s is no PNG" % path
        return path

    def severe_logs(self):
        return [l for l in self.d.get_log("browser") if l["level"] == "SEVERE"]

    def csp_violations(self):
        return self.js("return window.__cspViolations")


@pytest.fixture
def page(browser, shot_dir):
    def make(dm):
        if isinstance(browser, str):
            pytest.fail(browser)
        p = Page(browser, dm, shot_dir)
        p.open()
        return p
    return make


def expansion_nodes(reply, owner):
    """What one LinkedSellers reply brings onto the drawing (the page's rule):
    the sellers, every step's sellers and shared non-seller entities, and
    the skipped hubs; never the expanded seller itself."""
    ids = set()
    for s in reply.get("sellers", []):
        ids.add(s["seller"]["id"])
        for st in s.get("evidence", []):
            ids.add(st["fromSellerId"])
            ids.add(st["toSellerId"])
            for se in st.get("shared", []):
                if se["entity"].get("type") != "ENTITY_TYPE_SELLER":
                    ids.add(se["entity"]["id"])
    for h in reply.get("skippedHubs", []):
        ids.add(h["entity"]["id"])
    ids.discard(owner)
    return ids


# ---------------------------------------------------------------------------
# 1. Search a flagged seller, two hops, the evidence of a link into the ring
# ---------------------------------------------------------------------------

def test_evidence_of_a_link_into_the_ring(console_daemon, page, demo):
    dm = console_daemon()
    demo.load(dm)
    p = page(dm)
    p.search(demo.flagged)
    card = p.text("card")
    assert "counterfeit" in card and "cluster" in card, card

    Select(p.el("ctl-hops")).select_by_value("2")
    p.click("card-expand")
    p.idle()
    keys = p.node_keys()
    assert len(keys) > 20, keys
    me = entity_id(dm, demo.flagged)
    assert me in keys and keys[me] == demo.flagged

    # Hubs are on the drawing only as skipped hubs, with their seller counts.
    skipped = p.js("return [...document.querySelectorAll('#drawing g.node.skipped')]"
                   ".map(g => [g.dataset.key, g.querySelector('text.sub').textContent])")
    assert skipped, "no skipped hub drawn"
    for key, sub in skipped:
        assert key in demo.hubs, "skipped %r is not one of sellergen's hubs %r" % (key, demo.hubs)
        assert "%d sellers" % demo.hubs[key] in sub, (key, sub)
    shown_plain = {k for i, k in keys.items()} - {k for k, _ in skipped}
    assert not (shown_plain & set(demo.hubs)), "a hub is drawn as a plain entity"
    assert demo.warehouse in keys.values(), "the ring's warehouse is not drawn"

    # A tie from the flagged seller to a ring member that uses the warehouse.
    ties = p.js("return [...document.querySelectorAll('#drawing g.edge.k-tie')]"
                ".map(g => [g.dataset.key, g.dataset.source, g.dataset.target])")
    target = None
    for k, a, b in ties:
        other = b if a == me else a if b == me else None
        if other and keys.get(other) in (demo.ring & demo.warehouse_users):
            target = (k, keys[other])
            break
    assert target, "no tie from %s into the ring: %r" % (demo.flagged, ties)
    if not p.click_edge(target[0]):
        # every point of the edge is covered: the links list is the other way in
        li = p.d.find_element(By.CSS_SELECTOR, "#link-list li[data-key='%s']" % target[0])
        li.click()
    p.wait(lambda: p.el("evidence").get_attribute("data-edge") == target[0], "the evidence panel")
    ev = p.text("evidence")
    assert demo.flagged in ev and target[1] in ev, ev
    shared = p.js("return [...document.querySelectorAll('#evidence-shared li')]"
                  ".map(li => [li.dataset.type, li.textContent])")
    assert any(t == "ADDRESS" and demo.warehouse in txt for t, txt in shared), shared
    for hub in demo.hubs:
        assert hub not in ev, "hub %s listed as evidence:\n%s" % (hub, ev)
    assert re.search(r"weight \d\.\d{3}", ev) and "first 20" in ev and "last 20" in ev, ev
    # the selected edge is marked in the drawing and on the timeline
    assert p.css('#drawing g.edge.selected[data-key="%s"]' % target[0])
    assert p.css('#timeline rect.obs.sel')
    p.shot("console-1-evidence")

    # paths between two flagged ring sellers: listed, drawable, clickable into the card
    other = sorted((demo.ring & demo.labelled) - {demo.flagged}, key=lambda k: int(k[1:]))[-1]
    p.d.find_element(By.CSS_SELECTOR, "#paths-panel summary").click()
    Select(p.el("path-from-type")).select_by_value("SELLER")
    p.fill("path-from-key", demo.flagged)
    Select(p.el("path-to-type")).select_by_value("SELLER")
    p.fill("path-to-key", other)
    p.click("paths-go")
    p.idle()
    paths = p.css("#paths-result .path-item")
    assert paths, p.text("paths-result")
    for item in paths:
        steps = [k.text for k in item.find_elements(By.CSS_SELECTOR, "button.entity-link .key")]
        assert steps[0] == demo.flagged and steps[-1] == other, steps
        assert not set(steps) & set(demo.hubs)
    n_links = len(p.css("#drawing g.edge.k-link"))
    paths[0].find_element(By.CSS_SELECTOR, "button[data-path='0']").click()
    p.idle()
    assert len(p.css("#drawing g.edge.k-link")) > n_links
    paths[0].find_elements(By.CSS_SELECTOR, "button.entity-link")[-1].click()
    p.idle()
    p.wait(lambda: p.text("card-key") == other, "the card of the path's end")

    # suspects from the counterfeit label: listed, clickable, drawable
    p.d.find_element(By.CSS_SELECTOR, "#suspects-panel summary").click()
    p.click("suspects-go")
    p.idle()
    rows = p.css("#suspects-result table.suspects tbody tr")
    assert rows, p.text("suspects-result")
    top = rows[0].find_element(By.CSS_SELECTOR, "button.entity-link .key").text
    assert top not in demo.labelled
    rows[0].find_element(By.CSS_SELECTOR, "button.entity-link").click()
    p.idle()
    p.wait(lambda: p.text("card-key") == top, "the suspect's card")
    rows[0].find_elements(By.TAG_NAME, "button")[-1].click()
    p.idle()
    assert top in p.node_keys().values()
    assert not p.severe_logs()
    assert p.csp_violations() == []


# ---------------------------------------------------------------------------
# 2. Tokens: a writer labels from the page; a reader is refused
# ---------------------------------------------------------------------------

def labels_of(dm, key):
    return list(dm.stub.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(type=SELLER, key=key)),
                                  metadata=admin_md(), timeout=T()).entity.labels)


def test_writer_labels_reader_is_refused(console_daemon, page, demo, tmp_path):
    dm = console_daemon("--tokens", write_tokens(tmp_path))
    demo.load(dm, token=TOKENS["admin"][0])
    p = page(dm)
    # no token: unauthenticated, writes locked
    assert p.text("role") == "role: unauthenticated"
    assert "UNAUTHENTICATED" in p.error_text()

    p.connect(TOKENS["writer"][0], "CASE-LABEL-1")
    p.wait(lambda: p.text("role") == "role: writer (alice)", "the writer role")
    assert p.js("return sessionStorage.getItem('graphd.console.token')") == TOKENS["writer"][0]
    assert p.js("return localStorage.length") == 0
    seller = demo.unlabelled_member
    p.search(seller)
    assert p.el("label-add").is_enabled()
    for label in ("ring-1", "tmp-note"):
        p.fill("label-input", label)
        p.click("label-add")
        p.idle()
        p.wait(lambda: label in p.text("card-labels"), "label %s on the card" % label)
    assert set(labels_of(dm, seller)) >= {"ring-1", "tmp-note"}
    # unlabel
    p.d.find_element(By.CSS_SELECTOR, "#card-labels button[aria-label='Remove label tmp-note']").click()
    p.idle()
    p.wait(lambda: "tmp-note" not in p.text("card-labels"), "tmp-note to go")
    assert "ring-1" in labels_of(dm, seller) and "tmp-note" not in labels_of(dm, seller)
    assert p.js("return document.getElementById('job-start').disabled") is False

    # a reader: every write control is disabled
    p.connect(TOKENS["reader"][0], "CASE-LABEL-1")
    p.wait(lambda: p.text("role") == "role: reader (bob)", "the reader role")
    p.search(seller)
    assert not p.el("label-add").is_enabled()
    assert not p.el("label-flag").is_enabled()
    for b in p.css("#card-labels button.chip-remove"):
        assert not b.is_enabled()
    assert not p.js("return document.getElementById('job-start').disabled === false")
    assert not p.js("return document.getElementById('job-cancel').disabled === false")
    # forcing the write anyway: the server refuses and the page says so
    p.fill("label-input", "forced")
    p.js("const b = document.getElementById('label-add'); b.disabled = false; b.click();")
    p.idle()
    p.wait(lambda: "PERMISSION_DENIED" in p.error_text(), "PERMISSION_DENIED on the page")
    assert p.el("errors").is_displayed()
    assert p.text("error-status") == "PERMISSION_DENIED"
    assert "SetLabels" in p.text("error-message") and "reader" in p.text("error-message")
    assert "forced" not in labels_of(dm, seller)
    # and through the page's own function
    p.click("error-close")
    p.js("window.graphdConsole.setLabels(arguments[0], [], ['ring-1']).catch(() => {})",
         entity_id(dm, seller, token=TOKENS["admin"][0]))
    p.idle()
    p.wait(lambda: "PERMISSION_DENIED" in p.error_text(), "PERMISSION_DENIED again")
    assert "ring-1" in labels_of(dm, seller)
    p.shot("console-2-reader-refused")


# ---------------------------------------------------------------------------
# 3. The audit trail holds the label call with the page's case id
# ---------------------------------------------------------------------------

def test_audit_holds_case_id(console_daemon, page, demo, tmp_path):
    dm = console_daemon("--tokens", write_tokens(tmp_path), "--audit-reads", "sync")
    demo.load(dm, token=TOKENS["admin"][0])
    p = page(dm)
    case = "CASE-2026-0042 <b>&\"'"
    p.connect(TOKENS["writer"][0], case)
    p.wait(lambda: p.text("role") == "role: writer (alice)", "the writer role")
    p.search(demo.flagged)
    p.fill("label-input", "reviewed")
    p.click("label-add")
    p.idle()
    p.wait(lambda: "reviewed" in p.text("card-labels"), "the label on the card")

    rep = dm.stub.ListAudit(pb.ListAuditRequest(case_id=case, limit=1000), metadata=admin_md(),
                            timeout=T())
    methods = [(r.method, r.principal, r.role, r.status) for r in rep.records]
    assert ("/graphd.v1.SellerGraph/SetLabels", "alice", "writer", 0) in methods, methods
    # every call of the page carried the case id, reads included
    assert "/graphd.v1.SellerGraph/GetEntity" in {m for m, _, _, _ in methods}
    setl = [r for r in rep.records if r.method.endswith("/SetLabels")]
    assert all(r.case_id == case for r in setl)

    # the admin sees it in the page's audit view
    p.connect(TOKENS["admin"][0], "")
    p.wait(lambda: p.text("role").startswith("role: admin"), "the admin role")
    p.js("window.graphdConsole.switchTab('audit')")
    p.fill("audit-case", case)
    p.fill("audit-method", "/graphd.v1.SellerGraph/SetLabels")
    p.click("audit-go")
    p.idle()
    p.wait(lambda: "SetLabels" in p.text("audit-result"), "the audit table")
    txt = p.text("audit-result")
    assert "alice" in txt and case in txt, txt
    assert not p.css("#audit-result b")
    p.shot("console-3-audit")


# ---------------------------------------------------------------------------
# 4. Hostile keys are text, everywhere
# ---------------------------------------------------------------------------

HOSTILE = [
    "<script>window.__pwned = 1</script>",
    "<img src=x onerror=\"window.__pwned = 2\">",
    "\"quoted' & <b>bold</b> key",
    "<svg onload=window.__pwned=3>" + "l" * 3000,
]


def test_hostile_keys_are_text(console_daemon, page):
    dm = console_daemon()
    links = [link(SELLER, "victim-seller", DEVICE, "<iframe src=javascript:window.__pwned=4>", seen=1700000000)]
    for i, k in enumerate(HOSTILE):
        links.append(link(SELLER, k, DEVICE, "<iframe src=javascript:window.__pwned=4>", seen=1700000000 + i))
        links.append(link(SELLER, k, SELLER, "victim-seller", seen=1700000100 + i))
    upsert(dm.stub, links, entities=[
        ent(SELLER, "victim-seller", attrs=[("note", "<img src=x onerror=window.__pwned=5>")],
            labels=["<b>label</b>", "counterfeit"]),
        ent(SELLER, HOSTILE[1], labels=["<script>x</script>"]),
    ])
    stored = {}
    for k in HOSTILE:
        e = dm.stub.GetEntity(pb.GetEntityRequest(ref=pb.EntityRef(type=SELLER, key=k)), timeout=T()).entity
        stored[e.id] = e.key
    p = page(dm)
    p.js("window.__pwned = undefined")
    p.search("victim-seller")
    assert "<img src=x onerror=window.__pwned=5>" in p.text("card")
    assert "<b>label</b>" in p.text("card-labels")
    Select(p.el("ctl-hops")).select_by_value("1")
    p.click("card-expand")
    p.idle()
    keys = p.node_keys()
    for id_, k in stored.items():
        assert keys.get(str(id_)) == k, "node %s: %r" % (id_, keys.get(str(id_)))
        # the drawing: label (shortened) and tooltip are text
        label = p.js("return document.querySelector('#drawing g.node[data-id=\"%s\"] text.label').textContent" % id_)
        assert label == (k if len(k) <= 22 else k[:21] + "\u2026"), label
        title = p.js("return document.querySelector('#drawing g.node[data-id=\"%s\"] title').textContent" % id_)
        assert k in title
        # the list
        li = p.js("return document.getElementById('li-%s').querySelector('.key').textContent" % id_)
        assert li == k
        # the card, through the list
        p.js("document.getElementById('li-%s').click()" % id_)
        p.idle()
        p.wait(lambda: p.js("return document.getElementById('card-key').textContent") == k, "card of %r" % k[:30])
    # the device key and the hostile label, on the card of its seller
    p.js("document.getElementById('li-%s').click()" % [i for i, k in stored.items() if k == HOSTILE[1]][0])
    p.idle()
    p.wait(lambda: "<script>x</script>" in p.text("card-labels"), "the hostile label")
    dev = p.js("return [...document.querySelectorAll('#drawing g.node[data-type=DEVICE]')].map(g => g.dataset.key)")
    assert dev == ["<iframe src=javascript:window.__pwned=4>"], dev
    # nothing was injected and nothing ran
    assert p.js("return window.__pwned") is None
    injected = p.js("return document.querySelectorAll('img, iframe, svg svg, b, [onerror], [onload], script:not([src])').length")
    assert injected == 0
    scripts = p.js("return [...document.scripts].map(s => s.getAttribute('src'))")
    assert scripts == ["d3.min.js", "api.js", "graphview.js", "export.js", "console.js"], scripts
    with pytest.raises(NoAlertPresentException):
        p.d.switch_to.alert.text
    logs = p.severe_logs()
    assert not [l for l in logs if "Content Security Policy" in l["message"]], logs
    assert p.csp_violations() == []
    p.shot("console-4-hostile-keys")


# ---------------------------------------------------------------------------
# 5. Collapse, badges, selection, timeline, exports, same-origin loads
# ---------------------------------------------------------------------------

def wait_files(dirname, before, n, timeout=WAIT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        new = [f for f in os.listdir(dirname) if f not in before and not f.endswith(".crdownload")]
        if len(new) >= n:
            time.sleep(0.2)
            return sorted(new)
        time.sleep(0.1)
    raise AssertionError("no download in %s" % dirname)


def test_collapse_badges_selection_timeline_exports(console_daemon, page, demo):
    dm = console_daemon()
    demo.load(dm)
    p = page(dm)
    # keyboard: every control takes focus, Tab moves on, the focus is visible
    untabbable = p.js("return [...document.querySelectorAll('#view-investigate button, #view-investigate input, "
                      "#view-investigate select, #view-investigate summary, .topbar input, .topbar button')]"
                      ".filter(e => e.tabIndex < 0 || e.getClientRects().length === 0 && !e.closest('details:not([open])'))"
                      ".map(e => e.id || e.outerHTML.slice(0, 60))")
    assert not untabbable, untabbable
    p.el("search-key").click()
    p.el("search-key").send_keys(demo.flagged, Keys.TAB)
    assert p.js("return document.activeElement.id") == "search-id"
    p.d.switch_to.active_element.send_keys(Keys.TAB)
    assert p.js("return document.activeElement.id") == "search-go"
    assert p.js("return getComputedStyle(document.activeElement).outlineStyle") == "solid"
    p.d.switch_to.active_element.send_keys(Keys.ENTER)
    p.idle()
    p.wait(lambda: p.text("card-key") == demo.flagged, "the card, by keyboard")
    Select(p.el("ctl-hops")).select_by_value("1")
    p.fill("ctl-limit", "60")
    p.click("card-expand")
    p.idle()
    root = entity_id(dm, demo.flagged)
    s0 = p.node_ids() - {root}
    keys = p.node_keys()

    def linked(id_):
        st, r = http_call(dm, "LinkedSellers", {"seller": {"id": id_}, "maxHops": 1, "limit": 60})
        assert st == 200, r
        return expansion_nodes(r, id_)

    sellers = sorted(i for i in s0 if p.js("return document.querySelector('#drawing g.node[data-id=\"%s\"]').dataset.type" % i) == "SELLER")
    contrib = {i: linked(i) for i in sellers[:12]}
    x = next(i for i in sellers[:12] if contrib[i] - s0 - {root})
    y = next(i for i in sellers[:12] if i != x)

    # the badge of an unexpanded node is its degree
    st, ex = http_call(dm, "GetEntity", {"ref": {"id": x}})
    badge = p.js("const b = document.querySelector('#drawing g.node[data-id=\"%s\"] .badge text'); return b && b.textContent" % x)
    assert badge == str(ex["entity"]["degree"]), (badge, ex)
    assert not p.css('#drawing g.node[data-id="%s"] .badge' % root), "an expanded node keeps its badge"

    # click x, then y: each click expands
    p.click_node(x)
    s1 = p.node_ids()
    assert s1 >= s0 | contrib[x], "expanding %s drew %r" % (x, (s0 | contrib[x]) - s1)
    assert not p.css('#drawing g.node[data-id="%s"] .badge' % x)
    p.click_node(y)
    s2 = p.node_ids()
    assert s2 >= s1 | contrib[y]
    assert list(p.js("return [...window.graphdConsole.state.exps.keys()]")) == [root, x, y]

    # collapse x, which is not the last expansion
    p.js("window.graphdConsole.selectNode(arguments[0])", x)
    p.idle()
    p.wait(lambda: p.js("return document.getElementById('card-key').textContent") == keys[x], "x's card")
    p.click("card-collapse")
    p.idle()
    s3 = p.node_ids()
    want = s0 | contrib[y] | {root}
    assert s3 == want, "after collapsing %s: extra %r, missing %r" % (x, s3 - want, want - s3)
    assert (contrib[x] - want) and not (s3 & (contrib[x] - want))
    assert p.css('#drawing g.node[data-id="%s"] .badge' % x), "a collapsed node shows its badge again"
    assert p.css('#drawing g.node[data-id="%s"].expanded' % y)

    # selection: list -> drawing
    p.el("ctl-click-expands").click()  # clicks only select from here on
    li = p.d.find_element(By.ID, "li-" + y)
    li.click()
    p.idle()
    assert p.css('#drawing g.node.selected[data-id="%s"]' % y)
    assert p.el("li-" + y).get_attribute("aria-selected") == "true"
    # drawing -> list
    p.click_node(x)
    assert p.css('#drawing g.node.selected[data-id="%s"]' % x)
    assert p.el("li-" + x).get_attribute("aria-selected") == "true"
    assert p.el("li-" + y).get_attribute("aria-selected") == "false"
    assert p.js("return document.getElementById('card-key').textContent") == keys[x]
    # keyboard: the list is one tab stop, arrows move, Enter selects
    lst = p.el("entity-list")
    lst.send_keys(Keys.END)
    lst.send_keys(Keys.ENTER)
    p.idle()
    last = p.js("const l = document.getElementById('entity-list'); return l.lastElementChild.dataset.id")
    assert p.css('#drawing g.node.selected[data-id="%s"]' % last)
    lst.send_keys(Keys.HOME, Keys.ARROW_DOWN, Keys.ENTER)
    p.idle()
    second = p.js("return document.getElementById('entity-list').children[1].dataset.id")
    assert p.css('#drawing g.node.selected[data-id="%s"]' % second)
    # the type filter keeps the selection
    Select(p.el("list-type")).select_by_value("SELLER")
    assert all(t == "SELLER" for t in p.js("return [...document.querySelectorAll('#entity-list li')].map(li => document.querySelector('#drawing g.node[data-id=\"' + li.dataset.id + '\"]').dataset.type)"))
    Select(p.el("list-type")).select_by_value("")

    # the timeline follows the slider
    n_obs = len(p.css("#timeline rect.obs"))
    assert n_obs > 0
    assert not p.css("#timeline rect.obs.out") and not p.css("#drawing g.edge.out")
    assert p.js("return document.querySelector('#timeline .brush .selection').getAttribute('display')") == "none" or \
        not p.js("return document.querySelector('#timeline .brush .selection').getAttribute('width')")
    fr = p.el("ctl-from")
    fr.send_keys(Keys.HOME)
    for _ in range(6):
        fr.send_keys(Keys.PAGE_UP)
    since = int(p.el("timeline").get_attribute("data-since"))
    assert since > 0
    sel = p.js("const r = document.querySelector('#timeline .brush .selection');"
               "return [+r.getAttribute('x'), +r.getAttribute('width'), r.getAttribute('display')]")
    x_since = p.js("return window.graphdConsole.timeline.x(new Date(arguments[0] * 1000))", since)
    assert sel[2] != "none" and abs(sel[0] - x_since) < 1.5, (sel, x_since)
    out_obs = len(p.css("#timeline rect.obs.out"))
    assert 0 < out_obs < n_obs
    assert p.css("#drawing g.edge.out"), "the drawing did not follow the window"
    assert p.text("ctl-from-text").startswith("20")
    fr.send_keys(Keys.PAGE_UP)
    assert len(p.css("#timeline rect.obs.out")) >= out_obs
    p.shot("console-5-collapse-timeline")
    p.click("ctl-window-reset")
    assert not p.css("#timeline rect.obs.out")
    assert int(p.el("timeline").get_attribute("data-since")) == 0
    # and the slider follows the timeline: brush a window on it
    overlay = p.d.find_element(By.CSS_SELECTOR, "#timeline .brush .overlay")
    w = overlay.size["width"]
    ActionChains(p.d).move_to_element_with_offset(overlay, int(-w * 0.25), 0).click_and_hold() \
        .move_by_offset(int(w * 0.4), 0).release().perform()
    p.wait(lambda: int(p.el("timeline").get_attribute("data-since")) > 0, "the brushed window")
    assert int(p.el("timeline").get_attribute("data-until")) > 0
    assert int(p.el("ctl-from").get_attribute("value")) > int(p.el("ctl-from").get_attribute("min"))
    assert int(p.el("ctl-to").get_attribute("value")) < int(p.el("ctl-to").get_attribute("max"))
    assert p.css("#timeline rect.obs.out") and p.css("#drawing g.edge.out")
    p.click("ctl-window-reset")
    # a click on a mark of the timeline selects its link
    mark = p.css("#timeline rect.obs")[len(p.css("#timeline rect.obs")) // 2]
    ActionChains(p.d).move_to_element(mark).click().perform()
    p.idle()
    under = p.js("const r = arguments[0].getBoundingClientRect();"
                 "return document.elementsFromPoint(r.x + r.width / 2, r.y + r.height / 2)"
                 ".filter(e => e.classList.contains('obs')).map(e => e.dataset.edge)", mark)
    p.wait(lambda: p.el("evidence").get_attribute("data-edge") in under, "the mark's link")
    assert p.css('#drawing g.edge.selected[data-key="%s"]' % p.el("evidence").get_attribute("data-edge"))
    assert int(p.el("timeline").get_attribute("data-since")) == 0

    # exports
    dl = p.d.download_dir
    before = set(os.listdir(dl))
    p.settle()
    node_ids = p.node_ids()
    n_edges = len(p.css("#drawing g.edge"))
    p.click("btn-export-graphml")
    gm = wait_files(dl, before, 1)
    before |= set(gm)
    root_el = ET.parse(os.path.join(dl, gm[0])).getroot()
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    g_nodes = {n.get("id")[1:] for n in root_el.findall("g:graph/g:node", ns)}
    assert g_nodes == node_ids
    assert len(root_el.findall("g:graph/g:edge", ns)) == n_edges
    p.click("btn-export-nodes")
    f = wait_files(dl, before, 1)
    before |= set(f)
    with open(os.path.join(dl, f[0]), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["id"] for r in rows} == node_ids and len(rows) == len(node_ids)
    assert {r["key"] for r in rows} >= {demo.flagged}
    p.click("btn-export-edges")
    f = wait_files(dl, before, 1)
    before |= set(f)
    with open(os.path.join(dl, f[0]), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_edges and {r["kind"] for r in rows} >= {"tie", "share"}
    p.click("btn-export-png")
    f = wait_files(dl, before, 1)
    with open(os.path.join(dl, f[0]), "rb") as fh:
        data = fh.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000

    # everything the page loaded came from graphd itself
    urls = p.js("return performance.getEntriesByType('resource').map(e => e.name)")
    origin = p.js("return location.origin")
    assert urls and all(u.startswith(origin + "/") or u.startswith(("blob:", "data:")) for u in urls), urls
    assert not p.severe_logs()
    assert p.csp_violations() == []


# ---------------------------------------------------------------------------
# 6. Snapshots: a clustering job, clusters, one cluster, a diff
# ---------------------------------------------------------------------------

def test_snapshots_clusters_and_diff(console_daemon, page, demo):
    dm = console_daemon()
    demo.load(dm)
    p = page(dm)
    p.click("tab-snapshots")
    p.idle()
    assert "No snapshot" in p.text("snap-list")

    def run_job(name, algorithm):
        p.fill("job-name", name)
        Select(p.el("job-algorithm")).select_by_value(algorithm)
        p.click("job-start")
        p.wait(lambda: p.js("const s = document.getElementById('job-state'); return s && s.textContent") == "SUCCEEDED",
               "job %s to succeed" % name, timeout=WAIT * 3)
        p.idle()

    run_job("first", "ALGORITHM_LEIDEN_CPM")
    p.wait(lambda: p.css("#clusters-list button.cluster-open"), "the cluster list")
    # the ring is the riskiest cluster
    first = p.css("#clusters-list tbody tr")[0].text.split()
    assert int(first[1]) >= len(demo.ring) * 0.8 and int(first[2]) >= 1, first
    ring_cluster = first[0].lstrip("#")
    Select(p.el("clusters-order")).select_by_value("CLUSTER_ORDER_SIZE")
    p.click("clusters-go")
    p.idle()
    sizes = [int(r.text.split()[1]) for r in p.css("#clusters-list tbody tr")]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] >= int(first[1])

    p.d.find_element(By.CSS_SELECTOR, "#clusters-list button.cluster-open[data-cluster='%s']" % ring_cluster).click()
    p.idle()
    p.wait(lambda: "Members" in p.text("cluster-detail"), "the cluster's members")
    det = p.text("cluster-detail")
    members = set(p.js("return [...document.querySelectorAll('#cluster-detail table.members button .key')].map(k => k.textContent)"))
    assert len(members & demo.ring) >= 0.8 * len(demo.ring), members
    assert "counterfeit" in det
    supply = p.text("cluster-detail").split("Members")[0]
    assert demo.warehouse in supply, supply
    drawn = int(p.el("cluster-drawing").get_attribute("data-nodes"))
    assert drawn >= len(members)
    assert len(p.css("#cluster-drawing g.node.t-SELLER")) == len(members)
    assert p.css("#cluster-drawing g.node.t-ADDRESS[data-key='%s']" % demo.warehouse)
    assert p.css("#cluster-drawing g.node.flagged")

    run_job("second", "ALGORITHM_CONNECTED_COMPONENTS")
    p.wait(lambda: len(p.css("#snap-list button.snap-open")) == 2, "two snapshots")
    Select(p.el("diff-from")).select_by_value("1")
    Select(p.el("diff-to")).select_by_value("2")
    p.click("diff-go")
    p.idle()
    p.wait(lambda: p.css("#diff-summary"), "the diff summary")
    summary = p.text("diff-summary")
    assert summary.startswith("snapshot 1 -> 2"), summary
    rows = p.css("#diff-result table.diff tbody tr")
    assert rows, p.text("diff-result")
    kinds = {r.text.split()[0] for r in rows}
    assert kinds & {"merged", "moved", "continued", "split", "born", "dissolved"}, kinds
    p.shot("console-6-snapshots")
    assert not p.severe_logs()
    assert p.csp_violations() == []


# ---------------------------------------------------------------------------
# 7. Alerts: follow WatchAlerts, reconnect after a drop, open what they name
# ---------------------------------------------------------------------------

ALERT_RING = ["r%d" % i for i in range(1, 7)]
ALERT_HOSTILE = '<img src=x onerror="window.__pwned=7">'

# Wraps fetch to record the WatchAlerts requests the page sends (a CDP
# script: the page's policy does not apply to it).
RECORD_WATCH = """
window.__watch = [];
const f = window.fetch;
window.fetch = function (url, opts) {
  if (String(url).endsWith('/v1/WatchAlerts')) window.__watch.push(JSON.parse(opts.body));
  return f.apply(this, arguments);
};
"""


def alert_rows(p):
    return p.js("return [...document.querySelectorAll('#alerts-list tr.alert-row')].map(r => "
                "[r.dataset.seq, r.querySelector('button.entity-link .key').textContent, "
                "r.dataset.cluster, r.textContent])")


def test_alerts_panel(console_daemon, page):
    dm = console_daemon()
    # A ring of six sellers (four flagged) sharing a device, a warehouse and
    # a payment account, and four sellers on their own; clustered once.
    links = []
    for r in ALERT_RING:
        links += [link(SELLER, r, DEVICE, "ring-dev", seen=100), link(SELLER, r, ADDRESS, "ring-wh", seen=100),
                  link(SELLER, r, PAYMENT, "ring-pay", seen=100)]
    links += [link(SELLER, "o%d" % i, DEVICE, "own-dev-%d" % i, seen=100) for i in range(1, 5)]
    upsert(dm.stub, links, [ent(SELLER, r, labels=["counterfeit"]) for r in ALERT_RING[:4]])
    job = dm.stub.StartClustering(pb.StartClusteringRequest(spec=pb.ClusteringSpec(
        flagged_labels=["counterfeit"])), timeout=T())
    last = list(dm.stub.WatchJob(pb.JobRequest(job_id=job.id), timeout=T(120)))[-1]
    assert last.state == pb.JOB_STATE_SUCCEEDED, last
    snap = last.snapshot_id
    ring = get(dm.stub, SELLER, "r1").cluster_id
    cl = dm.stub.GetCluster(pb.GetClusterRequest(cluster_id=ring), timeout=T()).cluster
    assert cl.size == len(ALERT_RING) and cl.risk >= 0.5, cl

    p = page(dm)
    p.js(RECORD_WATCH)
    p.click("tab-alerts")
    assert p.el("alerts-min-risk").get_attribute("value") == "0.5"
    assert p.el("alerts-stop").get_attribute("disabled")
    p.fill("alerts-label", "counterfeit")
    p.click("alerts-start")
    p.wait(lambda: p.el("alerts-state").get_attribute("data-state") == "following", "following")
    p.idle()  # a followed stream is not a call in flight
    assert not p.el("alerts-start").is_enabled() and p.el("alerts-stop").is_enabled()

    # A new seller (with a hostile key) sharing the ring's device and warehouse.
    upsert(dm.stub, [link(SELLER, ALERT_HOSTILE, DEVICE, "ring-dev", seen=200),
                     link(SELLER, ALERT_HOSTILE, ADDRESS, "ring-wh", seen=200)])
    p.wait(lambda: len(alert_rows(p)) == 1, "the first alert")
    seq, key, cid, text = alert_rows(p)[0]
    assert (seq, key, cid) == ("1", ALERT_HOSTILE, str(ring)), (seq, key, cid)
    assert "%.3f" % cl.risk in text and "ring-dev" in text and "counterfeit" in text, text
    assert p.js("return window.__pwned") is None
    assert p.js("return document.querySelectorAll('#alerts-list img, #alerts-list [onerror]').length") == 0

    # A dropped connection: the page reconnects by itself, after the last seq.
    p.js("window.graphdConsole.state.alerts.abort.abort()")
    p.wait(lambda: len(p.js("return window.__watch")) >= 2 and
           p.el("alerts-state").get_attribute("data-state") == "following", "the reconnection")
    reqs = p.js("return window.__watch")
    assert reqs[0] == {"minRisk": 0.5, "label": "counterfeit"}, reqs
    assert reqs[1] == {"minRisk": 0.5, "label": "counterfeit", "afterSeq": "1"}, reqs
    upsert(dm.stub, [link(SELLER, "newbie2", PAYMENT, "ring-pay", seen=300),
                     link(SELLER, "newbie2", DEVICE, "ring-dev", seen=300)])
    p.wait(lambda: len(alert_rows(p)) == 2, "the second alert")
    rows = alert_rows(p)
    assert [(r[0], r[1]) for r in rows] == [("2", "newbie2"), ("1", ALERT_HOSTILE)], rows  # newest first
    assert "1 reconnection" in p.text("alerts-last") and "last seq 2" in p.text("alerts-last")
    p.shot("console-7-alerts")

    # The seller opens like a search does, with its provisional placement.
    p.d.find_element(By.CSS_SELECTOR, '#alerts-list tr[data-seq="1"] button.entity-link').click()
    p.idle()
    p.wait(lambda: p.js("const k = document.getElementById('card-key'); return k && k.textContent") == ALERT_HOSTILE,
           "the alert's seller on the card")
    assert p.el("tab-investigate").get_attribute("aria-selected") == "true"
    prov = p.text("card-provisional")
    assert prov.startswith("provisional cluster %d risk %.3f" % (ring, cl.risk)), prov
    assert "against snapshot %d" % snap in prov, prov
    # Alerts that come while another tab is shown are counted on the tab.
    upsert(dm.stub, [link(SELLER, "newbie3", DEVICE, "ring-dev", seen=400),
                     link(SELLER, "newbie3", ADDRESS, "ring-wh", seen=400)])
    p.wait(lambda: p.text("alerts-unseen") == "1", "the count of unseen alerts")
    p.click("tab-alerts")
    assert not p.el("alerts-unseen").is_displayed()

    # The cluster opens the cluster view, which marks the placed sellers.
    p.d.find_element(By.CSS_SELECTOR, '#alerts-list tr[data-seq="1"] button.alert-cluster').click()
    p.idle()
    p.wait(lambda: p.css("#cluster-detail table.provisional-members"), "the provisional members")
    assert p.text("cluster-title") == "#%d · snapshot %d" % (ring, snap)
    prov = p.js("return [...document.querySelectorAll('#cluster-detail table.provisional-members tbody tr')]"
                ".map(r => [r.querySelector('.key').textContent, r.querySelector('.prov-tag').textContent])")
    assert sorted(prov) == sorted([[ALERT_HOSTILE, "provisional"], ["newbie2", "provisional"],
                                   ["newbie3", "provisional"]]), prov
    members = p.js("return [...document.querySelectorAll('#cluster-detail table.members .key')].map(k => k.textContent)")
    assert sorted(members) == sorted(ALERT_RING), members

    # Stop. A risk over 1 is refused by the form itself; a filter the
    # server refuses (a label over its limit) is shown, and stops.
    p.click("tab-alerts")
    p.click("alerts-stop")
    p.wait(lambda: p.el("alerts-state").get_attribute("data-state") == "stopped", "stopped")
    assert "resumes after seq 3" in p.text("alerts-state")
    p.click("alerts-clear")
    assert not alert_rows(p)
    n_req = len(p.js("return window.__watch"))
    p.fill("alerts-min-risk", "2")
    p.click("alerts-start")
    assert p.js("return document.getElementById('alerts-min-risk').checkValidity()") is False
    assert p.el("alerts-state").get_attribute("data-state") == "stopped"
    assert len(p.js("return window.__watch")) == n_req
    p.fill("alerts-min-risk", "0.5")
    p.fill("alerts-label", "x" * 300)
    p.click("alerts-start")
    p.wait(lambda: p.error_text(), "the refusal")
    assert "INVALID_ARGUMENT" in p.error_text() and "label" in p.error_text(), p.error_text()
    p.wait(lambda: p.el("alerts-state").get_attribute("data-state") == "stopped", "stopped after the refusal")
    assert "INVALID_ARGUMENT" in p.text("alerts-state")
    assert p.el("alerts-start").is_enabled() and not p.el("alerts-stop").is_enabled()
    assert p.js("return window.__pwned") is None
    assert not [l for l in p.severe_logs() if "WatchAlerts" not in l["message"]], p.severe_logs()
    assert p.csp_violations() == []


# ---------------------------------------------------------------------------
# 8. Cases: open one, add what is on screen, notes, status, the pack; a
#    partner sees its brand's cases only and none of the graph.
# ---------------------------------------------------------------------------

PARTNER = ("partner-token-5c2e8a1f0d", "acme-analyst", "acme")


def test_case_panel(console_daemon, page, demo, tmp_path, graphctl_bin):
    tf = tmp_path / "tokens"
    tf.write_text(open(write_tokens(tmp_path)).read() +
                  "%s partner %s brand=%s\n" % PARTNER)
    dm = console_daemon("--tokens", str(tf))
    demo.load(dm, token=TOKENS["admin"][0])
    p = page(dm)
    p.connect(TOKENS["writer"][0])
    p.wait(lambda: p.text("role") == "role: writer (alice)", "the writer role")
    # Something on screen: the flagged seller expanded.
    p.search(demo.flagged)
    p.click("card-expand")
    p.idle()
    on_screen = p.node_keys()
    assert len(on_screen) > 3, on_screen
    p.click("tab-cases")
    p.fill("case-new-title", "Ring around " + demo.flagged)
    p.fill("case-new-brand", "acme")
    p.fill("case-new-note", "seen in the console")
    p.click("case-new-go")
    p.idle()
    title = lambda: p.js("return document.getElementById('case-title').textContent")
    p.wait(lambda: title().startswith("Case "), "the new case")
    case_id = int(title().split()[1].rstrip(":"))
    p.click("case-add-screen")
    p.idle()
    md = [("authorization", "Bearer " + TOKENS["reader"][0])]
    c = dm.stub.GetCase(pb.GetCaseRequest(case_id=case_id), metadata=md, timeout=T())
    held = {str(e.id) for e in list(c.sellers) + list(c.entities)}
    placeholders = set(p.js("return [...window.graphdConsole.state.nodes.values()]"
                            ".filter(n => n.placeholder).map(n => n.id)"))
    assert held == set(on_screen) - placeholders, (held, on_screen)
    assert demo.flagged in {e.key for e in c.sellers}
    detail = p.js("return document.getElementById('case-detail').textContent")
    assert "seen in the console" in detail and demo.flagged in detail
    p.fill("case-note", "two test buys")
    p.click("case-note-go")
    p.idle()
    Select(p.el("case-status")).select_by_value("CASE_STATUS_REFERRED")
    p.click("case-status-go")
    p.idle()
    c = dm.stub.GetCase(pb.GetCaseRequest(case_id=case_id), metadata=md, timeout=T())
    assert c.status == pb.CASE_STATUS_REFERRED and c.notes[-1].text == "two test buys"
    assert c.notes[-1].author == "alice"
    # The pack, downloaded by the page, verifies.
    got = p.js("return window.graphdConsole.exportPack()")
    assert got and got["name"] == "case-%d.zip" % case_id, got
    path = os.path.join(p.d.download_dir, got["name"])
    p.wait(lambda: os.path.exists(path) and os.path.getsize(path) == got["size"], "the download")
    r = subprocess.run([graphctl_bin, "verify-pack", path, "--pubkey",
                        os.path.join(dm.data_dir, "signing-key.pem.pub")],
                       capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 0, r.stderr
    p.shot("console-8-case")

    # The partner: its brand's case, no graph.
    dm.stub.CreateCase(pb.CreateCaseRequest(title="other brand", brand="globex"),
                       metadata=[("authorization", "Bearer " + TOKENS["writer"][0])], timeout=T())
    p.connect(PARTNER[0])
    p.wait(lambda: p.text("role") == "role: partner (acme-analyst)", "the partner role")
    p.click("tab-cases")
    p.click("case-list-go")
    p.idle()
    rows = p.text("case-list")
    assert "Ring around" in rows and "other brand" not in rows, rows
    assert p.el("case-add-screen").get_attribute("disabled") is not None
    p.js("window.graphdConsole.openCase(arguments[0])", str(case_id))
    p.idle()
    p.wait(lambda: title().startswith("Case %d" % case_id), "the case, as partner")
    assert not p.el("case-note-go").get_attribute("disabled")
    p.shot("console-8-case-partner")
