"""graphctl report: one self-contained HTML page, checked as text (well
formed, nothing external, the daemon's data in it, every daemon string
escaped) and as a picture: Debian's headless Chromium renders it to a PNG
(kept under GRAPHD_ARTEFACT_DIR, else the test's temp dir; the path is
printed), which is decoded here with zlib + struct and checked for plots
and drawings that are really drawn.

Chromium must be /usr/bin/chromium (tools/deps.sh --test installs it): a
missing browser fails the test, it is not skipped. It runs as root in CI,
hence --no-sandbox, with no network, and under a timeout (its whole
process group is killed when it hangs).

Data: a sellergen network (3000 sellers, seed 5), plus a device and a label
whose text is hostile HTML, clustered once. Suite `tools`.
"""

import html
import html.parser
import os
import re
import shutil
import signal
import struct
import subprocess
import zlib

import pytest

from bbutil import DEVICE, SELLER, T, pb
from test_analytics import generate, loaded_daemon, run_job

GEN_ARGS = ["--sellers", "3000", "--seed", "5"]
TOP = 6
CHROMIUM = "/usr/bin/chromium"
# Hostile text from the daemon: a device key and a label (keys are case
# folded by the server, so lower case).
NASTY_KEY = "<b>dev&amp\"x'</b> <script>q</script>"
NASTY_LABEL = "<i>case&\"7'"
# Frame colours report.c gives its plots and first drawings.
FRAMES = {"plot-size": "3d0a5c", "plot-risk": "5c0a3d", "drawing-1": "0a5c3d",
          "drawing-2": "0a3d5c"}


@pytest.fixture(scope="module")
def net(sellergen_bin, tmp_path_factory):
    return generate(sellergen_bin, tmp_path_factory, "reportgen", GEN_ARGS)


@pytest.fixture(scope="module")
def dm(net, tmp_path_factory):
    for d in loaded_daemon(net, tmp_path_factory, "report"):
        # three sellers of the first ring share a device with a hostile key,
        # one of them carries a hostile label
        ring = sorted(k for k, (r, _) in net.truth.items() if r == 1)[:3]
        d.stub.Upsert(pb.UpsertRequest(links=[
            pb.LinkInput(a=pb.EntityRef(type=SELLER, key=k),
                         b=pb.EntityRef(type=DEVICE, key=NASTY_KEY), seen=1750000000)
            for k in ring]), timeout=T())
        d.stub.SetLabels(pb.SetLabelsRequest(ref=pb.EntityRef(type=SELLER, key=ring[0]),
                                             add=[NASTY_LABEL]), timeout=T())
        job, seen = run_job(d.stub, name="weekly <report> & \"co\"",
                            flagged_labels=["counterfeit"])
        assert seen[-1].state == pb.JOB_STATE_SUCCEEDED, seen[-1].reason
        yield d


@pytest.fixture(scope="module")
def report(dm, graphctl_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    r = subprocess.run([graphctl_bin, "--addr", dm.addr, "report", "--top", str(TOP),
                        "-o", str(out)], capture_output=True, text=True, timeout=T(120))
    assert r.returncode == 0, r.stderr
    assert "%d clusters drawn" % TOP in r.stderr
    return out


class Checker(html.parser.HTMLParser):
    """Balanced tags, and every src/href internal."""
    VOID = {"meta", "br", "img", "hr", "input", "link", "wbr"}
    # SVG elements written self-closing
    SELF = {"line", "rect", "circle", "path", "polyline", "polygon"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.refs, self.text = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "action", "data"):
                self.refs.append(v or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href"):
                self.refs.append(v or "")

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes <%s> at %s" % (
                tag, self.stack[-1] if self.stack else "nothing", self.getpos()))
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(path):
    c = Checker()
    c.feed(path.read_text(encoding="utf-8"))
    c.close()
    return c


def test_report_well_formed_and_self_contained(report):
    src = report.read_text(encoding="utf-8")
    assert src.startswith("<!DOCTYPE html>")
    c = parse(report)
    assert not c.errors, c.errors[:5]
    assert c.stack == [], "unclosed: %r" % c.stack
    assert "script" not in c.tags and "link" not in c.tags and "img" not in c.tags
    assert all(r.startswith("#") for r in c.refs), c.refs
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", src, re.I)
    assert "url(" not in src and "@import" not in src
    assert c.tags.count("svg") == 2 + TOP


def all_clusters(stub, order=pb.CLUSTER_ORDER_RISK, min_size=2):
    out, token = [], ""
    while True:
        r = stub.ListClusters(pb.ListClustersRequest(order=order, min_size=min_size, limit=1000,
                                                     page_token=token), timeout=T())
        out.extend(r.clusters)
        token = r.next_page_token
        if not token:
            return out


def flagged_top(stub, n):
    """The n riskiest clusters of 2+ sellers that hold a flagged seller."""
    return [x for x in all_clusters(stub) if x.flagged > 0][:n]


def test_report_holds_the_daemons_data(dm, report):
    c = parse(report)
    text = " ".join(c.text)
    m = dm.stub.GetSnapshot(pb.SnapshotRequest(), timeout=T())
    assert m.input_checksum in text
    assert "graphd snapshot %d" % m.id in text
    assert "%d clusters" % m.clusters in text
    # the source is the snapshot and its data, never the address graphctl
    # happened to read it from
    assert dm.addr not in text and dm.addr.split(":")[-1] not in text
    assert ("from snapshot %d of the graph with input checksum %s"
            % (m.id, m.input_checksum[:12])) in text
    top = flagged_top(dm.stub, TOP)
    assert len(top) == TOP
    src = report.read_text(encoding="utf-8")
    table = src[src.index('<table id="top-table"'):]
    table = table[:table.index("</table>")]
    assert re.findall(r'href="#c(\d+)"', table) == [str(x.id) for x in top]
    for x in top:
        # the supply sources, the warehouse address of a ring first
        for s in x.top_shared:
            assert s.entity.key in html.unescape(table)
        assert 'id="draw-%d"' % x.id in src
    assert top[0].top_shared[0].entity.type == pb.ENTITY_TYPE_ADDRESS
    # each drawing: its sellers as circles, flagged ones marked and
    # labelled (in a drawing of any size), and its member list below it
    for x in top:
        svg = src[src.index('id="draw-%d"' % x.id):]
        svg = svg[:svg.index("</svg>")]
        assert svg.count("<circle") - 2 == x.size  # 2 legend circles
        assert svg.count('class="flagged"') == x.flagged
        rep = dm.stub.GetCluster(pb.GetClusterRequest(cluster_id=x.id, max_members=1000),
                                 timeout=T())
        members = rep.members
        para = src[src.index('id="members-%d"' % x.id):]
        para = html.unescape(para[:para.index("</p>")])
        flagged = [mb.key for mb in members if mb.id in set(rep.flagged_members)]
        assert len(flagged) == x.flagged
        labelled = set(html.unescape(t) for t in re.findall(
            r'<text [^>]*class="fl"[^>]*>([^<]*)</text>', svg))
        for mb in members:
            assert mb.key in para, (x.id, mb.key)
        for k in flagged:
            assert '<span class="fl">%s</span>' % k in para, (x.id, k)
            assert k in labelled, (x.id, k, x.size)
    # a big drawing (only flagged sellers and supply sources labelled) was
    # among them
    assert 'class="drawing big"' in src


def test_report_lists_only_flagged_clusters_and_evidence(dm, graphctl_bin, tmp_path):
    """A cluster without a flagged seller is never padded into the riskiest
    list (the page says how many there are instead), and no hub is ever
    a supply source."""
    clusters = all_clusters(dm.stub)
    n_flagged = sum(1 for x in clusters if x.flagged > 0)
    assert TOP <= n_flagged < len(clusters)  # the list could be padded
    for x in clusters:
        for s in x.top_shared:
            assert not s.entity.over_hub_cap, (x.id, s.entity.key, s.total_sellers)
    out = tmp_path / "all.html"
    want = n_flagged + 5
    r = subprocess.run([graphctl_bin, "--addr", dm.addr, "report", "--top", str(want),
                        "-o", str(out)], capture_output=True, text=True, timeout=T(300))
    assert r.returncode == 0, r.stderr
    assert "%d clusters drawn" % n_flagged in r.stderr
    src = out.read_text(encoding="utf-8")
    table = src[src.index('<table id="top-table"'):]
    table = table[:table.index("</table>")]
    ids = [int(i) for i in re.findall(r'href="#c(\d+)"', table)]
    assert ids == [x.id for x in clusters if x.flagged > 0]
    note = src[src.index('id="top-note"'):]
    assert "Only %d clusters of 2 or more sellers hold a flagged seller" % n_flagged in note
    assert "(hub)" not in table


def test_report_escapes_daemon_text(report):
    src = report.read_text(encoding="utf-8")
    for raw in ("<b>dev", "<script>q", "<i>case", "<report>"):
        assert raw not in src, raw
    c = parse(report)
    text = "".join(c.text)
    # the parser unescapes: the original strings come back as text
    assert NASTY_KEY in text
    assert NASTY_LABEL in text
    assert 'weekly <report> & "co"' in text


def read_png(path):
    """(width, height, bytes per pixel, [row bytes]) of an 8-bit RGB(A)
    non-interlaced PNG, with the standard library only."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
        elif typ == b"IDAT":
            idat.append(body)
        elif typ == b"IEND":
            break
    bpp = 4 if ctype == 6 else 3
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    assert len(raw) == h * (stride + 1)
    rows, prev = [], bytearray(stride)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ft == 1:
            for i in range(bpp, stride):
                cur[i] = (cur[i] + cur[i - bpp]) & 0xFF
        elif ft == 2:
            cur = bytearray((a + b) & 0xFF for a, b in zip(cur, prev))
        elif ft == 3:
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ft == 4:
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb_, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb_ and pa <= pc else b if pb_ <= pc else c)) & 0xFF
        else:
            assert ft == 0, "bad PNG filter %d" % ft
        rows.append(bytes(cur))
        prev = cur
    return w, h, bpp, rows


def find_frame(rows, bpp, colour):
    """Bounding box (x0, y0, x1, y1) of the pixels of exactly this colour."""
    pat = bytes.fromhex(colour)
    box = None
    for y, r in enumerate(rows):
        i = r.find(pat)
        while i != -1 and i % bpp:
            i = r.find(pat, i + 1)
        if i == -1:
            continue
        j = r.rfind(pat)
        while j != -1 and j % bpp:
            j = r.rfind(pat, 0, j + len(pat) - 1)
        x0, x1 = i // bpp, j // bpp
        box = (x0, y, x1, y) if box is None else (
            min(box[0], x0), box[1], max(box[2], x1), y)
    return box


def region_stats(rows, bpp, box, inset=8):
    x0, y0, x1, y1 = box
    nonwhite, colours, total = 0, set(), 0
    for y in range(y0 + inset, y1 - inset, 2):
        r = rows[y]
        for x in range(x0 + inset, x1 - inset, 2):
            px = r[x * bpp:x * bpp + 3]
            total += 1
            if px != b"\xff\xff\xff":
                nonwhite += 1
                colours.add(px)
    return nonwhite / max(total, 1), len(colours)


def screenshot(html_path, png_path, tmp_path):
    assert os.path.exists(CHROMIUM), (
        "%s is missing: install Debian's chromium (tools/deps.sh --test)" % CHROMIUM)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--no-default-browser-check", "--disable-extensions",
           "--hide-scrollbars", "--user-data-dir=%s" % (tmp_path / "chromium-profile"),
           "--screenshot=%s" % png_path, "--window-size=1200,3000",
           "file://%s" % html_path]
    env = dict(os.environ, HOME=str(tmp_path))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True, env=env)
    try:
        out, _ = p.communicate(timeout=T(90))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("chromium did not finish within %.0f s: %s" % (T(90), " ".join(cmd)))
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # helpers it may have left behind
        except ProcessLookupError:
            pass
    assert p.returncode == 0 and os.path.exists(png_path), (
        "chromium exit %s:\n%s" % (p.returncode, out.decode(errors="replace")[-2000:]))


def test_report_renders_in_chromium(report, tmp_path):
    art = os.environ.get("GRAPHD_ARTEFACT_DIR") or str(tmp_path)
    os.makedirs(art, exist_ok=True)
    png = os.path.join(art, "graphctl-report.png")
    if os.path.exists(png):
        os.unlink(png)
    screenshot(report, png, tmp_path)
    shutil.copy(str(report), os.path.join(art, "graphctl-report.html"))
    print("screenshot: %s" % png)
    w, h, bpp, rows = read_png(png)
    assert (w, h) == (1200, 3000)
    boxes = {}
    for name, colour in FRAMES.items():
        box = find_frame(rows, bpp, colour)
        assert box, "%s (frame #%s) is not in the screenshot %s" % (name, colour, png)
        boxes[name] = box
    # fixed sizes: plots 560 x 320, drawings 560 x 470 (frame drawn 2 px in)
    for name, (x0, y0, x1, y1) in boxes.items():
        want = (556, 316) if name.startswith("plot") else (556, 466)
        assert abs((x1 - x0 + 1) - want[0]) <= 4 and abs((y1 - y0 + 1) - want[1]) <= 4, (
            name, boxes[name])
    for name, box in boxes.items():
        ink, colours = region_stats(rows, bpp, box)
        # bars, axes and labels; nodes of several types, edges, legend
        assert ink > 0.03, "%s looks blank: %.3f of its pixels are not white" % (name, ink)
        assert colours >= 6, "%s has only %d colours" % (name, colours)
    # the page as a whole is not blank either
    top = region_stats(rows, bpp, (0, 0, w - 1, 400), inset=0)
    assert top[0] > 0.01
    # flagged sellers are drawn in the colour the text names: red
    src = report.read_text(encoding="utf-8")
    assert "flagged sellers in red" in src
    fills = set(re.findall(r'fill="#([0-9a-f]{6})" stroke="#000" stroke-width="2.5" '
                           r'class="flagged"', src))
    assert len(fills) == 1, fills
    fill = fills.pop()
    r, g, b = bytes.fromhex(fill)
    assert r >= 0xc0 and g <= 0x40 and b <= 0x40, "flagged colour #%s is not red" % fill
    x0, y0, x1, y1 = boxes["drawing-1"]
    pat = bytes.fromhex(fill)
    hits = sum(1 for y in range(y0, y1 + 1)
               for x in range(x0, x1 + 1) if rows[y][x * bpp:x * bpp + 3] == pat)
    assert hits > 50, "no red flagged seller in drawing 1 of %s" % png
