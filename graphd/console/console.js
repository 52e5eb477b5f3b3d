/*
 * graphd console: the investigator's page.
 *
 * The investigation view keeps a graph of what has been drawn:
 *   nodes   every entity seen (id -> {id, type, key, entity, skip})
 *   edges   every link seen (key -> {kind, source, target, ...}):
 *           tie   seller-seller evidence step (shared entities, weights)
 *           share a seller's use of a shared entity
 *           skip  a hub met (and not followed) while expanding a seller
 *           link  a stored link (Neighbors, FindPaths)
 *   roots   entities put on the drawing by hand
 *   exps    expansions: what each expanded node (or drawn path / suspect)
 *           brought in. A node is on screen while it is a root or some
 *           live expansion brought it; collapsing a node drops its
 *           expansion and, in turn, the expansions of nodes that only it
 *           had brought in.
 * Server text only ever reaches the page through textContent / d3 .text().
 */
'use strict';
(function () {
  const GD = window.GD;
  const api = GD.api;
  const $ = GD.$;
  const el = GD.el;
  const num = GD.num;
  const str = GD.str;
  const arr = GD.arr;
  const FLAG_LABEL = 'counterfeit';

  /* ======================================================================
   * State
   * ==================================================================== */
  const S = {
    nodes: new Map(),
    edges: new Map(),
    roots: new Set(),
    exps: new Map(),
    shown: { nodes: new Set(), edges: new Set() },
    selNode: null,
    selEdge: null,
    card: null, /* the entity on the card */
    window: { since: 0, until: 0 },
    domain: [0, 0],
    listActive: null,
    linkActive: null,
    pseudo: 0,
    clusterRisk: new Map(),
    snap: '', /* snapshot shown in the snapshot view */
    clusterPage: '',
    auditPage: '',
    job: null,
    jobAbort: null,
    cluster: null,
    caseOpen: null, /* the case open in Cases (its last Case message) */
    /* WatchAlerts: gen counts starts and stops (a loop whose gen is no
     * longer current ends); lastSeq is the last event seen (a decimal
     * string), where a reconnection resumes. */
    alerts: { gen: 0, running: false, abort: null, wake: null, lastSeq: '', received: 0,
      unseen: 0, backoff: 1, reconnects: 0 },
  };

  /* ======================================================================
   * Status, errors, role
   * ==================================================================== */
  function status(msg) {
    $('status').textContent = msg || '';
  }

  function showError(e) {
    const box = $('errors');
    $('error-status').textContent = e.status || 'ERROR';
    $('error-message').textContent = e.detail !== undefined ? e.detail : str(e.message);
    $('error-method').textContent = e.method ? '(' + e.method + ')' : '';
    box.hidden = false;
    box.dataset.status = e.status || '';
  }
  function clearError() {
    $('errors').hidden = true;
    $('errors').dataset.status = '';
  }
  api.on('error', (e) => {
    showError(e);
    /* A refusal: whatever was enabled by hand goes back to the role's state. */
    if (e.status === 'PERMISSION_DENIED' || e.status === 'UNAUTHENTICATED') refreshGates();
  });
  api.on('busy', (n) => { $('busy').hidden = n === 0; });

  /* Reports a failure that is not an ApiError (those report themselves). */
  function fail(e) {
    if (e instanceof GD.ApiError) return;
    showError({ status: 'ERROR', detail: str(e && e.message ? e.message : e), method: '' });
    if (window.console) console.error(e);
  }

  function renderRole() {
    const r = $('role');
    r.className = 'role role-' + api.role;
    let t = 'role: ' + api.role;
    if (api.principal) t += ' (' + api.principal + ')';
    r.textContent = t;
    refreshGates();
  }
  api.on('role', () => { renderRole(); if (S.card) renderCard(); });

  /* Buttons with data-min-role are enabled only for that role or above
   * (and when their context allows: data-ctx-off="1"). */
  function refreshGates() {
    for (const b of document.querySelectorAll('[data-min-role]')) {
      const roleOk = api.roleAtLeast(b.dataset.minRole);
      b.disabled = !roleOk || b.dataset.ctxOff === '1';
      b.classList.toggle('role-locked', !roleOk);
      if (!roleOk) b.title = 'needs role ' + b.dataset.minRole + ' (you: ' + api.role + ')';
      else if (b.title && b.title.indexOf('needs role') === 0) b.title = '';
    }
  }
  function setCtx(b, on) {
    b.dataset.ctxOff = on ? '0' : '1';
    refreshGates();
  }

  /* ======================================================================
   * Small builders
   * ==================================================================== */
  function typeTag(t) {
    return el('span', { className: 'type-tag t-' + t, title: GD.TYPE_NAME[t] }, GD.TYPE_SHORT[t]);
  }
  function keyText(k) {
    return el('span', { className: 'key', title: str(k) }, str(k));
  }
  function btn(text, onClick, props) {
    const b = el('button', Object.assign({ type: 'button' }, props || {}), text);
    b.addEventListener('click', onClick);
    return b;
  }
  /* A button naming an entity; opens its card. */
  function entityButton(e, extra) {
    const id = GD.id(e.id);
    const t = GD.shortType(e.type);
    const b = el('button', { type: 'button', className: 'entity-link', title: GD.TYPE_NAME[t] + ' ' + str(e.key) },
      typeTag(t), keyText(e.key || ('#' + id)));
    if (id) b.dataset.id = id;
    b.addEventListener('click', () => {
      if (extra && extra.before) extra.before();
      showCard(id ? { id: id } : { type: t, key: e.key });
    });
    return b;
  }
  function table(headers, rows, cls) {
    const t = el('table', { className: 'data' + (cls ? ' ' + cls : '') });
    const tr = el('tr');
    for (const h of headers) tr.appendChild(el('th', { scope: 'col' }, h));
    t.appendChild(el('thead', null, tr));
    const tb = el('tbody');
    for (const r of rows) {
      const row = el('tr');
      for (const c of r) row.appendChild(c instanceof Node ? el('td', null, c) : el('td', null, c === undefined ? '' : String(c)));
      tb.appendChild(row);
    }
    t.appendChild(tb);
    return t;
  }
  function dl(pairs) {
    const d = el('dl', { className: 'facts' });
    for (const [k, v] of pairs) {
      if (v === null || v === undefined) continue;
      d.appendChild(el('dt', null, k));
      d.appendChild(v instanceof Node ? el('dd', null, v) : el('dd', null, String(v)));
    }
    return d;
  }
  function typeOptions(sel, withAll) {
    if (withAll) sel.appendChild(el('option', { value: '' }, 'all'));
    for (const t of GD.TYPES) sel.appendChild(el('option', { value: t }, GD.TYPE_NAME[t]));
  }
  function intVal(id, dflt, lo, hi) {
    let v = parseInt($(id).value, 10);
    if (!Number.isFinite(v)) v = dflt;
    if (lo !== undefined) v = Math.max(lo, v);
    if (hi !== undefined) v = Math.min(hi, v);
    return v;
  }
  function windowMsg(w) {
    const o = {};
    if (w.since) o.since = String(w.since);
    if (w.until) o.until = String(w.until);
    return Object.keys(o).length ? o : undefined;
  }

  /* ======================================================================
   * The graph model
   * ==================================================================== */
  function putEntity(e, extra) {
    const id = GD.id(e && e.id);
    if (!id) return null;
    let n = S.nodes.get(id);
    if (!n) {
      n = { id: id, type: GD.shortType(e.type), key: str(e.key), entity: {}, skip: null, placeholder: false };
      S.nodes.set(id, n);
    }
    /* Keep what a fuller record said (attributes, evidence fields). */
    const merged = Object.assign({}, n.entity, e);
    if (!e.attributes && n.entity.attributes) merged.attributes = n.entity.attributes;
    n.entity = merged;
    if (e.type) n.type = GD.shortType(e.type);
    if (e.key !== undefined && e.key !== '') { n.key = str(e.key); n.placeholder = false; }
    if (extra && extra.skip) n.skip = extra.skip;
    return n;
  }
  function placeholder(id) {
    if (!S.nodes.has(id)) S.nodes.set(id, { id: id, type: 'SELLER', key: '#' + id, entity: { id: id }, skip: null, placeholder: true });
    return S.nodes.get(id);
  }
  function pairKey(prefix, a, b) {
    return a < b ? prefix + a + '|' + b : prefix + b + '|' + a;
  }
  function putEdge(key, data) {
    const old = S.edges.get(key);
    S.edges.set(key, Object.assign(old || {}, data, { key: key }));
    return S.edges.get(key);
  }
  function widen(edge, first, last) {
    first = num(first); last = num(last);
    if (first && (!edge.first || first < edge.first)) edge.first = first;
    if (last && (!edge.last || last > edge.last)) edge.last = last;
  }

  /* One evidence step into an expansion (add: {nodes, edges}). */
  function addStep(step, add) {
    const a = GD.id(step.fromSellerId), b = GD.id(step.toSellerId);
    if (!a || !b) return;
    for (const id of [a, b]) { if (!S.nodes.has(id)) placeholder(id); add.nodes.add(id); }
    const shared = [];
    let direct = false;
    for (const se of arr(step.shared)) {
      const ent = se.entity || {};
      const eid = GD.id(ent.id);
      const t = GD.shortType(ent.type);
      shared.push({
        id: eid, type: t, key: str(ent.key), sellerCount: num(ent.sellerCount),
        weight: num(se.weight), corroboration: num(se.corroboration),
        first: num(se.firstSeen), last: num(se.lastSeen),
      });
      if (t === 'SELLER') { direct = true; continue; }
      if (!eid) continue;
      putEntity(ent);
      add.nodes.add(eid);
      for (const s of [a, b]) {
        const k = 's:' + s + '|' + eid;
        const e = putEdge(k, { kind: 'share', source: s, target: eid });
        widen(e, se.firstSeen, se.lastSeen);
        add.edges.add(k);
      }
    }
    const k = pairKey('t:', a, b);
    putEdge(k, { kind: 'tie', source: a, target: b, tie: num(step.tie), shared: shared, direct: direct });
    add.edges.add(k);
  }

  function addSkipped(owner, hub, add) {
    const ent = hub.entity || {};
    const n = putEntity(ent, {
      skip: {
        sellerCount: num(hub.sellerCount) || num(ent.sellerCount), hubCap: num(hub.hubCap),
        reason: str(hub.reason).replace(/^SKIP_REASON_/, '') || 'UNSPECIFIED',
        corroboration: num(hub.corroboration),
      },
    });
    if (!n) return;
    add.nodes.add(n.id);
    if (owner) {
      const k = 'k:' + owner + '|' + n.id;
      putEdge(k, { kind: 'skip', source: owner, target: n.id });
      add.edges.add(k);
    }
  }

  function newAdd() { return { nodes: new Set(), edges: new Set() }; }

  function setExpansion(key, owner, add, what) {
    if (owner) add.nodes.delete(owner);
    S.exps.delete(key); /* re-insert: keeps expansion order */
    S.exps.set(key, { owner: owner, nodes: add.nodes, edges: add.edges, what: what });
  }

  /* Which nodes and edges are on screen; drops dead expansions. */
  function recompute() {
    let changed = true;
    let R;
    while (changed) {
      changed = false;
      R = new Set(S.roots);
      for (const x of S.exps.values())
        for (const n of x.nodes) if (n !== x.owner) R.add(n);
      for (const [k, x] of S.exps) {
        if (x.owner && !R.has(x.owner)) { S.exps.delete(k); changed = true; }
      }
    }
    const E = new Set();
    for (const x of S.exps.values())
      for (const k of x.edges) {
        const e = S.edges.get(k);
        if (e && R.has(e.source) && R.has(e.target)) E.add(k);
      }
    S.shown = { nodes: R, edges: E };
    if (S.selNode && !R.has(S.selNode)) S.selNode = null;
    if (S.selEdge && !E.has(S.selEdge)) { S.selEdge = null; renderEvidence(); }
  }

  /* Fetches the records of placeholder nodes (ids met only inside steps). */
  async function fillPlaceholders() {
    const ids = [];
    for (const id of S.shown.nodes) { const n = S.nodes.get(id); if (n && n.placeholder) ids.push(id); }
    if (!ids.length) return;
    try {
      await api.stream('GetEntities', { ids: ids }, (batch) => {
        for (const e of arr(batch.entities)) putEntity(e);
      }, { quiet: true });
    } catch (e) { /* they stay as #id */ }
  }

  /* ======================================================================
   * Expanding and collapsing
   * ==================================================================== */
  function controls() {
    const via = [];
    for (const c of document.querySelectorAll('#ctl-via input[type=checkbox]'))
      if (c.checked) via.push(GD.fullType(c.value));
    const all = via.length === GD.TYPES.length;
    let score = parseFloat($('ctl-score').value);
    if (!Number.isFinite(score) || score < 0) score = 0;
    return {
      hops: intVal('ctl-hops', 2, 1, 3), minScore: score, limit: intVal('ctl-limit', 60, 1, 10000),
      via: all ? [] : via, window: Object.assign({}, S.window),
    };
  }

  async function expand(id, opts) {
    opts = opts || {};
    const n = S.nodes.get(id);
    if (!n) return;
    const c = controls();
    const add = newAdd();
    let what;
    if (n.type === 'SELLER') {
      const req = { seller: { id: id }, maxHops: c.hops, limit: c.limit };
      if (c.via.length) req.viaTypes = c.via;
      if (c.minScore) req.minScore = c.minScore;
      const w = windowMsg(c.window);
      if (w) req.window = w;
      status('LinkedSellers ' + n.key + ' …');
      const r = await api.call('LinkedSellers', req);
      for (const ls of arr(r.sellers)) {
        const s = putEntity(ls.seller || {});
        if (s) add.nodes.add(s.id);
        for (const st of arr(ls.evidence)) addStep(st, add);
      }
      for (const h of arr(r.skippedHubs)) addSkipped(id, h, add);
      what = arr(r.sellers).length + ' linked sellers, ' + arr(r.skippedHubs).length + ' skipped hubs' +
        (r.truncated ? ' (truncated' + (r.serverWorkBound ? ' by the server work bound' : '') + ')' : '');
    } else {
      const req = { ref: { id: id }, limit: Math.min(c.limit, 100) };
      const w = windowMsg(c.window);
      if (w) req.window = w;
      status('Neighbors ' + n.key + ' …');
      const r = await api.call('Neighbors', req);
      for (const nb of arr(r.neighbors)) {
        const m = putEntity(nb.entity || {});
        if (!m) continue;
        add.nodes.add(m.id);
        const link = nb.link || {};
        const k = pairKey('l:', id, m.id);
        putEdge(k, { kind: 'link', source: id, target: m.id, first: num(link.firstSeen), last: num(link.lastSeen), count: num(link.count) });
        add.edges.add(k);
      }
      what = arr(r.neighbors).length + ' neighbours' + (r.nextPageToken ? ' (first ' + arr(r.neighbors).length + ' of ' + num(n.entity.degree) + ')' : '');
    }
    if (opts.root) S.roots.add(id);
    setExpansion(id, id, add, what);
    recompute();
    await fillPlaceholders();
    render({ anchorOwner: id });
    status(n.key + ': ' + what);
    if (S.card && S.card.id === id) renderCard();
  }

  function collapse(id) {
    if (!S.exps.has(id)) return;
    const before = S.shown.nodes.size;
    S.exps.delete(id);
    recompute();
    render({});
    const n = S.nodes.get(id);
    status('collapsed ' + (n ? n.key : id) + ': ' + (before - S.shown.nodes.size) + ' nodes removed');
    if (S.card && S.card.id === id) renderCard();
  }

  function addRoot(id) {
    S.roots.add(id);
    recompute();
    render({});
  }
  function removeRoot(id) {
    S.roots.delete(id);
    recompute();
    render({});
    if (S.card && S.card.id === id) renderCard();
  }
  function clearAll() {
    S.roots.clear();
    S.exps.clear();
    S.selNode = null;
    S.selEdge = null;
    S.window = { since: 0, until: 0 };
    recompute();
    render({ fit: true });
    renderEvidence();
    status('drawing cleared');
  }

  async function refreshAll() {
    const keys = Array.from(S.exps.entries()).filter(([, x]) => x.owner).map(([k]) => k);
    for (const k of keys) {
      if (!S.exps.has(k)) continue;
      try { await expand(k); } catch (e) { fail(e); return; }
    }
    status('re-ran ' + keys.length + ' expansions');
  }

  /* ======================================================================
   * Rendering the investigation view
   * ==================================================================== */
  let view = null;
  let timeline = null;

  function isFlagged(e) { return arr(e.labels).indexOf(FLAG_LABEL) >= 0; }

  function skipText(sk) {
    return sk.sellerCount + ' sellers · ' + (sk.reason === 'OVER_CAP' ? 'over cap ' + sk.hubCap : sk.reason.toLowerCase());
  }

  function viewNode(n) {
    const e = n.entity || {};
    const expanded = S.exps.has(n.id);
    const cls = [];
    if (isFlagged(e)) cls.push('flagged');
    else if (arr(e.labels).length) cls.push('labelled');
    if (S.roots.has(n.id)) cls.push('root');
    if (expanded) cls.push('expanded');
    if (n.skip) cls.push('skipped');
    else if (e.overHubCap) cls.push('hub');
    if (n.placeholder) cls.push('placeholder');
    let title = GD.TYPE_NAME[n.type] + ' ' + n.key + '\nid ' + n.id + ', degree ' + num(e.degree);
    if (num(e.sellerCount)) title += ', ' + num(e.sellerCount) + ' sellers';
    if (arr(e.labels).length) title += '\nlabels: ' + arr(e.labels).join(', ');
    if (n.skip) title += '\nskipped hub: ' + skipText(n.skip);
    return {
      id: n.id, type: n.type, key: n.key, r: n.type === 'SELLER' ? 11 : 8,
      shape: n.skip ? 'square' : 'circle', classes: cls.join(' '),
      badge: expanded ? null : num(e.degree), sub: n.skip ? skipText(n.skip) : null, title: title,
    };
  }

  function edgeLabel(e) {
    const a = S.nodes.get(e.source), b = S.nodes.get(e.target);
    return (a ? a.key : e.source) + ' — ' + (b ? b.key : e.target);
  }

  function viewEdge(e) {
    const v = { key: e.key, source: e.source, target: e.target, kind: e.kind, width: 1.2, classes: '' };
    if (e.kind === 'tie') {
      v.width = 1.2 + Math.min(e.tie, 4) * 0.9;
      v.classes = e.direct ? 'direct' : '';
      v.title = edgeLabel(e) + ': tie ' + GD.fmtNum(e.tie, 2) + ' (' + e.shared.length + ' shared)';
    } else if (e.kind === 'share') {
      v.width = 1;
      v.title = edgeLabel(e);
    } else if (e.kind === 'skip') {
      v.title = edgeLabel(e) + ': hub met, not followed';
    } else {
      v.width = 1.4;
      v.title = edgeLabel(e) + ' (' + GD.fmtDate(e.first) + ' – ' + GD.fmtDate(e.last) + ')';
    }
    return v;
  }

  /* The link observations on screen, for the timeline and the window. */
  function observations() {
    const out = [];
    for (const k of S.shown.edges) {
      const e = S.edges.get(k);
      if (e.kind === 'tie') {
        for (const s of e.shared) {
          if (!s.first && !s.last) continue;
          out.push({ id: k + '#' + (s.id || s.key), type: s.type, first: s.first, last: s.last, edgeKey: k,
            title: edgeLabel(e) + ' via ' + GD.TYPE_NAME[s.type] + ' ' + s.key + ': ' + GD.fmtDate(s.first) + ' – ' + GD.fmtDate(s.last) });
        }
      } else if (e.kind === 'link' && (e.first || e.last)) {
        const a = S.nodes.get(e.source), b = S.nodes.get(e.target);
        const t = a && a.type !== 'SELLER' ? a.type : (b ? b.type : 'SELLER');
        out.push({ id: k, type: t, first: e.first, last: e.last, edgeKey: k,
          title: edgeLabel(e) + ': ' + GD.fmtDate(e.first) + ' – ' + GD.fmtDate(e.last) });
      }
    }
    return out;
  }

  function edgeIn(k) {
    const e = S.edges.get(k);
    if (!e) return true;
    const w = S.window;
    if (!w.since && !w.until) return true;
    if (e.kind === 'tie') {
      const timed = e.shared.filter((s) => s.first || s.last);
      return !timed.length || timed.some((s) => GD.overlaps(s.first, s.last, w));
    }
    if (e.kind === 'skip') return true;
    return GD.overlaps(e.first, e.last, w);
  }

  function nodeOut(id, outEdges) {
    if (S.roots.has(id) || S.exps.has(id)) return false;
    let any = false;
    for (const k of S.shown.edges) {
      const e = S.edges.get(k);
      if (e.source !== id && e.target !== id) continue;
      if (e.kind === 'skip') return false;
      any = true;
      if (!outEdges.has(k)) return false;
    }
    return any;
  }

  function render(opts) {
    opts = opts || {};
    const nodes = [];
    for (const id of S.shown.nodes) nodes.push(viewNode(S.nodes.get(id)));
    const edges = [];
    for (const k of S.shown.edges) edges.push(viewEdge(S.edges.get(k)));
    const owner = opts.anchorOwner;
    view.update(nodes, edges, {
      fit: opts.fit,
      anchor: (n) => {
        if (owner && S.exps.has(owner) && S.exps.get(owner).nodes.has(n.id)) return owner;
        return null;
      },
    });
    $('drawing-empty').hidden = nodes.length > 0;
    updateDomain();
    renderList();
    renderLinks();
    timeline.update(observations(), S.domain, S.window);
    applyWindow();
    applySelection();
  }

  /* ---- the time window ---------------------------------------------------- */
  const DAY = 86400;
  function updateDomain() {
    let d0 = 0, d1 = 0;
    const take = (f, l) => {
      f = num(f); l = num(l);
      if (f && (!d0 || f < d0)) d0 = f;
      if (l && l > d1) d1 = l;
      if (!f && l && (!d0 || l < d0)) d0 = l;
    };
    const obs = observations();
    for (const o of obs) take(o.first, o.last);
    if (!obs.length)
      for (const id of S.shown.nodes) { const e = S.nodes.get(id).entity; take(e.firstSeen, e.lastSeen); }
    S.domain = [d0, d1];
    const from = $('ctl-from'), to = $('ctl-to');
    const has = d0 && d1;
    from.disabled = to.disabled = !has;
    if (!has) return;
    const lo = Math.floor(d0 / DAY), hi = Math.max(lo + 1, Math.ceil(d1 / DAY));
    for (const s of [from, to]) { s.min = String(lo); s.max = String(hi); }
    from.value = String(S.window.since ? Math.max(lo, Math.min(hi, Math.floor(S.window.since / DAY))) : lo);
    to.value = String(S.window.until ? Math.max(lo, Math.min(hi, Math.floor(S.window.until / DAY))) : hi);
  }

  function windowTexts() {
    $('ctl-from-text').textContent = S.window.since ? GD.fmtDate(S.window.since) : (S.domain[0] ? 'open (' + GD.fmtDate(S.domain[0]) + ')' : '—');
    $('ctl-to-text').textContent = S.window.until ? GD.fmtDate(S.window.until) : (S.domain[1] ? 'open (' + GD.fmtDate(S.domain[1]) + ')' : '—');
  }

  /* The sliders moved: the window follows (extremes = open sides). */
  function windowFromSliders(which) {
    const from = $('ctl-from'), to = $('ctl-to');
    let a = parseInt(from.value, 10), b = parseInt(to.value, 10);
    if (a > b) {
      if (which === 'from') { b = a; to.value = String(b); } else { a = b; from.value = String(a); }
    }
    S.window = {
      since: a <= parseInt(from.min, 10) ? 0 : a * DAY,
      until: b >= parseInt(to.max, 10) ? 0 : b * DAY + DAY - 1,
    };
    applyWindow();
  }

  function setWindow(since, until) {
    const lo = Math.floor(S.domain[0] / DAY) * DAY, hi = Math.ceil(S.domain[1] / DAY) * DAY;
    since = since && since > lo ? Math.floor(since / DAY) * DAY : 0;
    until = until && until < hi ? Math.floor(until / DAY) * DAY + DAY - 1 : 0;
    S.window = { since: since, until: until };
    updateDomain();
    applyWindow();
  }

  function applyWindow() {
    const outEdges = new Set();
    for (const k of S.shown.edges) if (!edgeIn(k)) outEdges.add(k);
    const outNodes = new Set();
    for (const id of S.shown.nodes) if (nodeOut(id, outEdges)) outNodes.add(id);
    view.setClass('out', (id) => outNodes.has(id), (k) => outEdges.has(k));
    timeline.setWindow(S.window);
    for (const li of $('entity-list').children) li.classList.toggle('out', outNodes.has(li.dataset.id));
    for (const li of $('link-list').children) li.classList.toggle('out', outEdges.has(li.dataset.key));
    windowTexts();
    const w = S.window;
    $('timeline').dataset.since = String(w.since);
    $('timeline').dataset.until = String(w.until);
    $('drawing').dataset.outEdges = String(outEdges.size);
  }

  /* ---- the entity list and the links list ---------------------------------- */
  const TYPE_ORDER = {};
  GD.TYPES.forEach((t, i) => { TYPE_ORDER[t] = i; });

  function renderList() {
    const ul = $('entity-list');
    const filter = $('list-type').value;
    const ids = Array.from(S.shown.nodes).map((id) => S.nodes.get(id))
      .filter((n) => !filter || n.type === filter)
      .sort((a, b) => (TYPE_ORDER[a.type] - TYPE_ORDER[b.type]) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    GD.clear(ul);
    for (const n of ids) {
      const e = n.entity || {};
      const meta = n.skip ? 'skipped · ' + n.skip.sellerCount + ' sellers'
        : S.exps.has(n.id) ? 'expanded' : num(e.degree) + ' nbrs';
      const li = el('li', {
        id: 'li-' + n.id, className: 'item' + (isFlagged(e) ? ' flagged' : '') + (n.skip ? ' skipped' : ''),
        title: GD.TYPE_NAME[n.type] + ' ' + n.key,
        attrs: { role: 'option', 'aria-selected': 'false' },
        dataset: { id: n.id },
      }, typeTag(n.type), keyText(n.key), el('span', { className: 'meta' }, meta));
      ul.appendChild(li);
    }
    $('list-count').textContent = '(' + ids.length + (filter ? ' of ' + S.shown.nodes.size : '') + ')';
    if (S.listActive && !S.shown.nodes.has(S.listActive)) S.listActive = null;
    markActive(ul, S.listActive ? 'li-' + S.listActive : null);
  }

  function renderLinks() {
    const ul = $('link-list');
    GD.clear(ul);
    const keys = Array.from(S.shown.edges).filter((k) => S.edges.get(k).kind !== 'share');
    keys.sort((x, y) => {
      const a = S.edges.get(x), b = S.edges.get(y);
      return (num(b.tie) - num(a.tie)) || (x < y ? -1 : 1);
    });
    keys.forEach((k, i) => {
      const e = S.edges.get(k);
      const meta = e.kind === 'tie' ? 'tie ' + GD.fmtNum(e.tie, 2) : e.kind === 'skip' ? 'skipped hub' : e.kind;
      ul.appendChild(el('li', {
        id: 'lk-' + i, className: 'item k-' + e.kind, title: edgeLabel(e),
        attrs: { role: 'option', 'aria-selected': 'false' }, dataset: { key: k },
      }, el('span', { className: 'key' }, edgeLabel(e)), el('span', { className: 'meta' }, meta)));
    });
    $('link-count').textContent = '(' + keys.length + ')';
    const act = S.linkActive && Array.from(ul.children).find((li) => li.dataset.key === S.linkActive);
    markActive(ul, act ? act.id : null);
  }

  function markActive(ul, liId) {
    for (const li of ul.children) li.classList.toggle('active', li.id === liId);
    if (liId) ul.setAttribute('aria-activedescendant', liId);
    else ul.removeAttribute('aria-activedescendant');
  }

  /* Keyboard for a listbox: arrows move, Enter / Space select. */
  function listKeys(ul, onPick, getActive, setActive) {
    ul.addEventListener('keydown', (ev) => {
      const items = Array.from(ul.children);
      if (!items.length) return;
      let i = items.findIndex((li) => li.classList.contains('active'));
      const go = (j) => {
        j = Math.max(0, Math.min(items.length - 1, j));
        setActive(items[j]);
        markActive(ul, items[j].id);
        items[j].scrollIntoView({ block: 'nearest' });
      };
      switch (ev.key) {
        case 'ArrowDown': go(i < 0 ? 0 : i + 1); break;
        case 'ArrowUp': go(i < 0 ? 0 : i - 1); break;
        case 'Home': go(0); break;
        case 'End': go(items.length - 1); break;
        case 'PageDown': go(i + 10); break;
        case 'PageUp': go(i - 10); break;
        case 'Enter': case ' ':
          if (i < 0) { go(0); i = 0; }
          onPick(items[i]);
          break;
        default: return;
      }
      ev.preventDefault();
    });
    ul.addEventListener('focus', () => {
      if (!getActive() && ul.children.length) {
        const sel = Array.from(ul.children).find((li) => li.getAttribute('aria-selected') === 'true') || ul.children[0];
        setActive(sel);
        markActive(ul, sel.id);
      }
    });
    ul.addEventListener('click', (ev) => {
      const li = ev.target.closest('li');
      if (!li || li.parentNode !== ul) return;
      setActive(li);
      markActive(ul, li.id);
      onPick(li);
    });
  }

  /* ---- selection ----------------------------------------------------------- */
  function applySelection() {
    view.setSelection(S.selNode, S.selEdge);
    timeline.setSelected(S.selEdge);
    for (const li of $('entity-list').children) {
      const on = li.dataset.id === S.selNode;
      li.setAttribute('aria-selected', on ? 'true' : 'false');
      li.classList.toggle('selected', on);
    }
    for (const li of $('link-list').children) {
      const on = li.dataset.key === S.selEdge;
      li.setAttribute('aria-selected', on ? 'true' : 'false');
      li.classList.toggle('selected', on);
    }
  }

  function selectNode(id, opts) {
    opts = opts || {};
    S.selNode = id;
    if (id) S.listActive = id;
    applySelection();
    const li = id && document.getElementById('li-' + id);
    if (li) {
      markActive($('entity-list'), li.id);
      if (!opts.noScroll) li.scrollIntoView({ block: 'nearest' });
    }
    if (id && !opts.noCard) showCard({ id: id }, { quiet: true });
  }

  function selectEdge(key) {
    S.selEdge = key;
    S.linkActive = key;
    applySelection();
    const li = Array.from($('link-list').children).find((x) => x.dataset.key === key);
    if (li) { markActive($('link-list'), li.id); li.scrollIntoView({ block: 'nearest' }); }
    renderEvidence();
    if (key) $('evidence-panel').scrollIntoView({ block: 'nearest' });
  }

  function onNodeClick(id, ev) {
    const n = S.nodes.get(id);
    selectNode(id);
    const auto = $('ctl-click-expands').checked && !(ev && (ev.shiftKey || ev.altKey || ev.ctrlKey || ev.metaKey));
    if (auto && n && !n.skip && !n.placeholder && !S.exps.has(id)) expand(id).catch(fail);
  }

  /* ---- the evidence panel -------------------------------------------------- */
  function renderEvidence() {
    const box = GD.clear($('evidence'));
    const e = S.selEdge && S.edges.get(S.selEdge);
    box.dataset.edge = S.selEdge || '';
    if (!e) { box.appendChild(el('p', { className: 'muted' }, 'Click a link for the entities it rests on.')); return; }
    const a = S.nodes.get(e.source), b = S.nodes.get(e.target);
    const head = el('p', { className: 'ev-head' },
      a ? entityButton(a.entity.id ? a.entity : { id: a.id, type: a.type, key: a.key }) : e.source,
      el('span', { className: 'dash' }, ' — '),
      b ? entityButton(b.entity.id ? b.entity : { id: b.id, type: b.type, key: b.key }) : e.target);
    box.appendChild(head);
    if (e.kind === 'tie') {
      box.appendChild(dl([
        ['tie', GD.fmtNum(e.tie, 3)],
        ['direct link', e.direct ? 'yes' : 'no'],
        ['shared', String(e.shared.filter((s) => s.type !== 'SELLER').length)],
      ]));
      const ul = el('ul', { className: 'shared-list', id: 'evidence-shared', attrs: { 'aria-label': 'Shared entities, strongest first' } });
      for (const s of e.shared) {
        const head = s.type === 'SELLER'
          ? el('span', { className: 'direct' }, typeTag('SELLER'), ' direct seller-seller link')
          : entityButton({ id: s.id, type: s.type, key: s.key });
        ul.appendChild(el('li', { className: 'shared t-' + s.type, dataset: { id: s.id || '', type: s.type } },
          head,
          el('div', { className: 'shared-facts' },
            el('span', { className: 'sh-weight', title: 'weight under the evidence rule' }, 'weight ' + GD.fmtNum(s.weight, 3)),
            s.type === 'SELLER' ? null : el('span', { className: 'sh-sellers' }, s.sellerCount + ' sellers'),
            el('span', { className: 'sh-corr', title: 'corroboration' }, 'corr. ' + GD.fmtNum(s.corroboration, 2))),
          el('div', { className: 'shared-facts' },
            el('span', { className: 'sh-first' }, 'first ' + GD.fmtDate(s.first)),
            el('span', { className: 'sh-last' }, 'last ' + GD.fmtDate(s.last)))));
      }
      box.appendChild(ul);
      box.appendChild(el('p', { className: 'muted small' },
        'Hubs and crowd entities are never evidence: they show as skipped in the drawing.'));
    } else if (e.kind === 'share') {
      const ent = b ? b.entity : {};
      const pairs = [];
      for (const k of S.shown.edges) {
        const t = S.edges.get(k);
        if (t.kind !== 'tie' || (t.source !== e.source && t.target !== e.source)) continue;
        for (const s of t.shared) if (s.id === e.target) pairs.push([edgeLabel(t), GD.fmtNum(s.weight, 3), GD.fmtDate(s.first), GD.fmtDate(s.last)]);
      }
      box.appendChild(dl([
        ['sellers sharing it', String(num(ent.sellerCount))],
        ['first seen', GD.fmtDate(e.first)], ['last seen', GD.fmtDate(e.last)],
      ]));
      if (pairs.length) box.appendChild(table(['step', 'weight', 'first seen', 'last seen'], pairs, 'evidence-table'));
    } else if (e.kind === 'skip') {
      const sk = b && b.skip;
      box.appendChild(dl([
        ['skipped', sk ? (sk.reason === 'OVER_CAP' ? 'over the hub cap' : 'crowd: shared by sellers who share nothing else') : 'yes'],
        ['sellers', sk ? String(sk.sellerCount) : '—'],
        ['hub cap', sk ? String(sk.hubCap) : '—'],
        ['corroboration', sk ? GD.fmtNum(sk.corroboration, 3) : '—'],
      ]));
      box.appendChild(el('p', { className: 'muted small' }, 'A hub is not followed and weighs nothing as evidence.'));
    } else {
      box.appendChild(dl([
        ['first seen', GD.fmtTime(e.first)], ['last seen', GD.fmtTime(e.last)],
        ['observations', e.count ? String(e.count) : '—'],
      ]));
    }
  }

  /* ======================================================================
   * The entity card
   * ==================================================================== */
  async function showCard(ref, opts) {
    opts = opts || {};
    const req = { ref: ref.id ? { id: String(ref.id) } : { type: GD.fullType(ref.type), key: str(ref.key) } };
    const seq = (S.cardSeq = (S.cardSeq || 0) + 1);
    let r;
    try {
      r = await api.call('GetEntity', req, { quiet: !!opts.quiet });
    } catch (e) {
      if (seq !== S.cardSeq) return null;
      if (opts.quiet) {
        const n = ref.id && S.nodes.get(String(ref.id));
        if (n) { S.card = { id: n.id, entity: n.entity }; renderCard(); }
      }
      return null;
    }
    const ent = r.entity || {};
    const id = GD.id(ent.id);
    if (seq !== S.cardSeq) return ent; /* a later card was asked for meanwhile */
    const node = S.nodes.get(id);
    const before = node && S.shown.nodes.has(id) ? JSON.stringify(viewNode(node)) : null;
    if (node) putEntity(ent);
    S.card = { id: id, entity: ent };
    renderCard();
    if (before !== null && JSON.stringify(viewNode(S.nodes.get(id))) !== before) render({});
    loadRisk(ent);
    return ent;
  }

  async function loadRisk(ent) {
    const cid = GD.id(ent.clusterId), sid = GD.id(ent.clusterSnapshotId);
    if (!cid || !sid) return;
    const k = sid + ':' + cid;
    if (!S.clusterRisk.has(k)) {
      try {
        const r = await api.call('GetCluster', { snapshotId: sid, clusterId: cid, maxMembers: 1, maxTies: 1 }, { quiet: true });
        S.clusterRisk.set(k, r.cluster || {});
      } catch (e) { S.clusterRisk.set(k, null); }
    }
    if (S.card && S.card.id === GD.id(ent.id)) renderCard();
  }

  /* Where a seller sits since the snapshot was read (Entity.provisional):
   * "cluster 7 (button) risk 0.812 · 41 sellers · since … · against snapshot 3". */
  function provisionalText(p, id) {
    const cid = GD.id(p.clusterId), sid = GD.id(p.snapshotId);
    const box = el('span', { id: id, className: 'provisional' }, el('span', { className: 'prov-tag' }, 'provisional'), ' ');
    if (cid) {
      box.appendChild(btn('cluster ' + cid, () => { switchTab('snapshots'); openCluster(sid, cid); }, { className: 'linkish', id: id + '-cluster' }));
      box.appendChild(el('span', { className: num(p.clusterRisk) >= 0.1 ? 'risk-high' : '' }, ' risk ' + GD.fmtNum(p.clusterRisk, 3)));
      box.appendChild(document.createTextNode(' · ' + num(p.clusterSize) + ' sellers'));
    } else box.appendChild(document.createTextNode('on its own (no cluster)'));
    box.appendChild(document.createTextNode(' · since ' + GD.fmtMs(p.placedAt) + ' · against snapshot ' + sid +
      (GD.id(p.previousClusterId) ? ' · before: cluster ' + GD.id(p.previousClusterId) : '')));
    return box;
  }

  function renderCard() {
    /* Keep what the user was doing on the card: focus and a half-typed label. */
    const focused = document.activeElement && $('card').contains(document.activeElement) ? document.activeElement.id : '';
    const li = $('label-input');
    const typed = li && S.card && li.dataset.for === S.card.id ? li.value : '';
    renderCardInner();
    const ni = $('label-input');
    if (ni && typed) ni.value = typed;
    if (focused && $(focused) && !$(focused).disabled) $(focused).focus();
  }

  function renderCardInner() {
    const box = GD.clear($('card'));
    if (!S.card) { box.appendChild(el('p', { className: 'muted' }, 'Search an entity, or select one in the drawing.')); return; }
    const e = S.card.entity;
    const id = S.card.id;
    const t = GD.shortType(e.type);
    box.dataset.id = id;
    box.appendChild(el('h3', { className: 'card-title' }, typeTag(t), el('span', { className: 'key', id: 'card-key' }, str(e.key))));
    const n = S.nodes.get(id);
    const facts = [
      ['id', id], ['type', GD.TYPE_NAME[t]], ['degree', String(num(e.degree)) + ' neighbours'],
      ['sellers', String(num(e.sellerCount)) + (t === 'SELLER' ? ' directly linked' : ' sharing it')],
      ['hub', e.overHubCap ? 'yes: over its type\u2019s hub cap' : (n && n.skip ? 'skipped (' + skipText(n.skip) + ')' : 'no')],
    ];
    if (t !== 'SELLER') {
      facts.push(['evidence weight', GD.fmtNum(e.evidenceWeight, 3) + (e.evidenceContext ? ' (context, not evidence)' : '')]);
      facts.push(['corroboration', GD.fmtNum(e.corroboration, 3)]);
    }
    facts.push(['first seen', GD.fmtTime(e.firstSeen)], ['last seen', GD.fmtTime(e.lastSeen)]);
    const cid = GD.id(e.clusterId), sid = GD.id(e.clusterSnapshotId);
    if (t === 'SELLER') {
      if (cid) {
        facts.push(['cluster', el('span', null, btn('cluster ' + cid, () => { switchTab('snapshots'); openCluster(sid, cid); }, { className: 'linkish', id: 'card-cluster' }), ' in snapshot ' + sid)]);
        const c = S.clusterRisk.get(sid + ':' + cid);
        facts.push(['risk', c === undefined ? '…' : c === null ? '—' :
          el('span', { id: 'card-risk', className: num(c.risk) >= 0.1 ? 'risk-high' : '' },
            GD.fmtNum(c.risk, 3) + ' (' + num(c.flagged) + ' of ' + num(c.size) + ' flagged, cohesion ' + GD.fmtNum(c.cohesion, 2) + ')')]);
      } else facts.push(['cluster', 'none (no snapshot holds it)']);
      if (e.provisional) facts.push(['provisional', provisionalText(e.provisional, 'card-provisional')]);
    }
    box.appendChild(dl(facts));

    /* labels */
    const labels = arr(e.labels);
    const lab = el('div', { className: 'labels', id: 'card-labels' });
    if (!labels.length) lab.appendChild(el('span', { className: 'muted' }, 'no labels'));
    for (const l of labels) {
      const chip = el('span', { className: 'chip' + (l === FLAG_LABEL ? ' flag' : '') }, el('span', { className: 'chip-text' }, l));
      const rm = btn('×', () => setLabels(id, [], [l]).catch(fail), {
        className: 'chip-remove', title: 'Remove label ' + l, attrs: { 'aria-label': 'Remove label ' + l, 'data-min-role': 'investigator' },
      });
      chip.appendChild(rm);
      lab.appendChild(chip);
    }
    box.appendChild(el('h4', null, 'Labels'));
    box.appendChild(lab);
    const form = el('form', { className: 'label-form', id: 'label-form' });
    const inp = el('input', { type: 'text', id: 'label-input', maxLength: 128, placeholder: 'label, e.g. counterfeit', spellcheck: false, attrs: { 'aria-label': 'New label' }, dataset: { for: id } });
    const add = el('button', { type: 'submit', id: 'label-add', attrs: { 'data-min-role': 'investigator' } }, 'Add label');
    form.appendChild(inp);
    form.appendChild(add);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = inp.value.trim();
      if (!v) return;
      setLabels(id, [v], []).then(() => { inp.value = ''; }).catch(fail);
    });
    box.appendChild(form);
    if (!api.roleAtLeast('investigator'))
      box.appendChild(el('p', { className: 'muted small locked-note' },
        'Labelling needs role investigator, writer or admin (you: ' + api.role + ').'));
    if (t === 'SELLER' && labels.indexOf(FLAG_LABEL) < 0)
      box.appendChild(btn('Flag as ' + FLAG_LABEL, () => setLabels(id, [FLAG_LABEL], []).catch(fail), { id: 'label-flag', className: 'small', attrs: { 'data-min-role': 'investigator' } }));

    /* attributes */
    const attrs = arr(e.attributes);
    if (attrs.length) {
      box.appendChild(el('h4', null, 'Attributes'));
      box.appendChild(table(['name', 'value'], attrs.map((a) => [str(a.name), str(a.value)]), 'attrs'));
    }

    /* actions */
    const acts = el('div', { className: 'card-actions' });
    const shown = S.shown.nodes.has(id);
    acts.appendChild(btn(S.exps.has(id) ? 'Expand again' : 'Expand', () => {
      putEntity(e);
      expand(id, { root: !shown }).catch(fail);
    }, { id: 'card-expand', title: t === 'SELLER' ? 'Linked sellers with the controls above the drawing' : 'Direct neighbours' }));
    const col = btn('Collapse', () => collapse(id), { id: 'card-collapse' });
    col.disabled = !S.exps.has(id);
    acts.appendChild(col);
    if (!shown) acts.appendChild(btn('Add to drawing', () => { putEntity(e); addRoot(id); selectNode(id, { noCard: true }); }, { id: 'card-add' }));
    else if (S.roots.has(id)) acts.appendChild(btn('Remove', () => removeRoot(id), { id: 'card-remove', title: 'Take this hand-placed entity off the drawing' }));
    acts.appendChild(btn('Path from', () => setPathEnd('from', t, e.key), { className: 'small' }));
    acts.appendChild(btn('Path to', () => setPathEnd('to', t, e.key), { className: 'small' }));
    box.appendChild(acts);
    refreshGates();
  }

  /* Adds and removes labels; the page's one write path for labels. */
  async function setLabels(id, add, remove) {
    const req = { ref: { id: String(id) } };
    if (add && add.length) req.add = add;
    if (remove && remove.length) req.remove = remove;
    const r = await api.call('SetLabels', req);
    const labels = arr(r.labels);
    const n = S.nodes.get(String(id));
    if (n) n.entity = Object.assign({}, n.entity, { labels: labels });
    if (S.card && S.card.id === String(id)) {
      S.card.entity = Object.assign({}, S.card.entity, { labels: labels });
      renderCard();
    }
    if (n && S.shown.nodes.has(n.id)) render({});
    const name = n ? n.key : S.card && S.card.id === String(id) ? str(S.card.entity.key) : '#' + id;
    status('labels of ' + name + ': ' + (labels.length ? labels.join(', ') : 'none'));
    return labels;
  }

  /* ======================================================================
   * Search, paths, suspects
   * ==================================================================== */
  function onSearch(ev) {
    ev.preventDefault();
    const idv = $('search-id').value.trim();
    const key = $('search-key').value;
    if (idv) {
      if (!/^[0-9]+$/.test(idv)) { showError({ status: 'INVALID_ARGUMENT', detail: 'id: digits only', method: '' }); return; }
      showCard({ id: idv });
    } else if (key.trim()) showCard({ type: $('search-type').value, key: key });
    else showError({ status: 'INVALID_ARGUMENT', detail: 'type a key or an id', method: '' });
  }

  function setPathEnd(which, t, key) {
    $('path-' + which + '-type').value = t;
    $('path-' + which + '-key').value = str(key);
    $('paths-panel').open = true;
    status('path ' + which + ': ' + GD.TYPE_NAME[t] + ' ' + str(key));
  }

  function drawPath(p) {
    const add = newAdd();
    const ents = arr(p.entities), links = arr(p.links);
    const ids = [];
    for (const e of ents) { const n = putEntity(e); if (n) { add.nodes.add(n.id); ids.push(n.id); } }
    for (let i = 0; i + 1 < ids.length; i++) {
      const l = links[i] || {};
      const k = pairKey('l:', ids[i], ids[i + 1]);
      putEdge(k, { kind: 'link', source: ids[i], target: ids[i + 1], first: num(l.firstSeen), last: num(l.lastSeen), count: num(l.count) });
      add.edges.add(k);
    }
    setExpansion('path:' + (++S.pseudo), null, add, 'path');
    recompute();
    render({ fit: true });
    status('path drawn: ' + ids.length + ' entities');
  }

  async function onPaths(ev) {
    ev.preventDefault();
    const box = GD.clear($('paths-result'));
    const req = {
      from: { type: GD.fullType($('path-from-type').value), key: $('path-from-key').value },
      to: { type: GD.fullType($('path-to-type').value), key: $('path-to-key').value },
      k: intVal('path-k', 3, 1, 20), maxHops: intVal('path-hops', 4, 1, 8),
    };
    const w = windowMsg(S.window);
    if (w) req.window = w;
    let r;
    try { r = await api.call('FindPaths', req); } catch (e) { return; }
    const paths = arr(r.paths);
    if (!paths.length) box.appendChild(el('p', { className: 'muted' }, 'No path within ' + req.maxHops + ' links.'));
    paths.forEach((p, i) => {
      const ol = el('ol', { className: 'path' });
      for (const e of arr(p.entities)) ol.appendChild(el('li', null, entityButton(e)));
      const item = el('div', { className: 'path-item' },
        el('div', { className: 'path-head' }, 'Path ' + (i + 1) + ' · ' + arr(p.links).length + ' links ',
          btn('Draw', () => drawPath(p), { className: 'small', dataset: { path: String(i) } })), ol);
      box.appendChild(item);
    });
    if (paths.length > 1) box.appendChild(btn('Draw all', () => paths.forEach(drawPath), { className: 'small' }));
    if (arr(r.skippedHubs).length)
      box.appendChild(el('p', { className: 'muted small' }, 'Hubs avoided: ' + arr(r.skippedHubs).map((h) => str((h.entity || {}).key) + ' (' + num(h.sellerCount) + ')').join(', ')));
  }

  function drawSuspect(s) {
    const add = newAdd();
    const me = putEntity(s.seller || {});
    if (!me) return;
    add.nodes.add(me.id);
    for (const nl of arr(s.nearestLabelled)) {
      const o = putEntity(nl.seller || {});
      if (o) add.nodes.add(o.id);
      for (const st of arr(nl.evidence)) addStep(st, add);
    }
    setExpansion('suspect:' + me.id, null, add, 'suspect');
    recompute();
    render({ fit: true });
    selectNode(me.id);
  }

  async function onSuspects(ev) {
    ev.preventDefault();
    const box = GD.clear($('suspects-result'));
    const labels = $('suspect-labels').value.split(',').map((x) => x.trim()).filter(Boolean);
    const req = { limit: intVal('suspect-limit', 20, 1, 10000) };
    if (labels.length) req.seedLabels = labels;
    const w = windowMsg(S.window);
    if (w) req.window = w;
    let r;
    try { r = await api.call('RankSuspects', req); } catch (e) { return; }
    const rows = arr(r.suspects).map((s, i) => [
      String(i + 1), entityButton(s.seller || {}),
      s.groupClusterId ? 'cluster ' + GD.id(s.groupClusterId) + ' (' + num(s.groupSize) + ')' : GD.fmtNum(s.score, 4),
      arr(s.nearestLabelled).map((n) => str((n.seller || {}).key)).join(', '),
      btn('Draw', () => drawSuspect(s), { className: 'small' }),
    ]);
    box.appendChild(el('p', { className: 'muted small' }, num(r.seeds) + ' seed sellers' + (r.truncated ? ', truncated' : '')));
    box.appendChild(table(['#', 'seller', 'score', 'nearest labelled', ''], rows, 'suspects'));
  }

  /* ======================================================================
   * Exports
   * ==================================================================== */
  function exportRows() {
    const snap = view.snapshot();
    const nodes = snap.nodes.map((v) => {
      const n = S.nodes.get(v.id);
      const e = n.entity || {};
      return {
        id: n.id, type: n.type, key: n.key, labels: arr(e.labels), degree: num(e.degree),
        seller_count: num(e.sellerCount), over_hub_cap: !!e.overHubCap,
        skipped: n.skip ? n.skip.reason : '', expanded: S.exps.has(n.id),
        first_seen: num(e.firstSeen), last_seen: num(e.lastSeen), cluster_id: GD.id(e.clusterId),
        x: Math.round(v.x * 10) / 10, y: Math.round(v.y * 10) / 10,
      };
    });
    const edges = snap.edges.map((v) => {
      const e = S.edges.get(v.key);
      let first = num(e.first), last = num(e.last);
      if (e.kind === 'tie') for (const s of e.shared) {
        if (s.first && (!first || s.first < first)) first = s.first;
        if (s.last && s.last > last) last = s.last;
      }
      return {
        kind: e.kind, source: e.source, target: e.target,
        source_key: (S.nodes.get(e.source) || {}).key, target_key: (S.nodes.get(e.target) || {}).key,
        tie: e.kind === 'tie' ? e.tie : '', first_seen: first, last_seen: last, count: num(e.count),
        shared: e.kind === 'tie' ? e.shared.map((s) => s.type === 'SELLER' ? 'direct' : s.key + '=' + GD.fmtNum(s.weight, 3)).join(';') : '',
        in_window: edgeIn(v.key),
      };
    });
    return { nodes: nodes, edges: edges };
  }
  function stamp() { return new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-'); }

  function exportGraphML() {
    const x = GD.download('graphd-view-' + stamp() + '.graphml', new Blob([GD.toGraphML(exportRows())], { type: 'application/graphml+xml' }));
    status('exported ' + x.name);
  }
  function exportNodes() {
    const rows = exportRows().nodes.map((n) => Object.assign({}, n, { labels: n.labels.join(';') }));
    const x = GD.download('graphd-nodes-' + stamp() + '.csv', new Blob([GD.toCSV(
      ['id', 'type', 'key', 'labels', 'degree', 'seller_count', 'over_hub_cap', 'skipped', 'expanded', 'first_seen', 'last_seen', 'cluster_id'], rows)], { type: 'text/csv' }));
    status('exported ' + x.name + ' (' + rows.length + ' nodes)');
  }
  function exportEdges() {
    const rows = exportRows().edges;
    const x = GD.download('graphd-edges-' + stamp() + '.csv', new Blob([GD.toCSV(
      ['kind', 'source', 'target', 'source_key', 'target_key', 'tie', 'first_seen', 'last_seen', 'count', 'shared', 'in_window'], rows)], { type: 'text/csv' }));
    status('exported ' + x.name + ' (' + rows.length + ' edges)');
  }
  async function exportPNG() {
    try {
      const b = await GD.svgToPNG($('drawing'), 1);
      const x = GD.download('graphd-view-' + stamp() + '.png', b);
      status('exported ' + x.name);
    } catch (e) { fail(e); }
  }

  /* ======================================================================
   * Snapshots, clusters, diff, jobs
   * ==================================================================== */
  const TERMINAL = { JOB_STATE_SUCCEEDED: 1, JOB_STATE_FAILED: 1, JOB_STATE_CANCELLED: 1 };

  function renderJob(j) {
    S.job = j;
    const box = GD.clear($('job-status'));
    if (!j) return;
    const state = str(j.state).replace(/^JOB_STATE_/, '') || 'UNSPECIFIED';
    box.dataset.state = state;
    box.dataset.job = GD.id(j.id);
    const prog = el('progress', { max: 1, value: state === 'SUCCEEDED' ? 1 : num(j.progress) });
    box.appendChild(dl([
      ['job', GD.id(j.id) + (j.spec && j.spec.name ? ' · ' + j.spec.name : '')],
      ['state', el('span', { className: 'state state-' + state, id: 'job-state' }, state)],
      ['stage', str(j.stage) || '—'],
      ['progress', prog],
      ['reason', j.reason ? str(j.reason) : null],
      ['snapshot', GD.id(j.snapshotId) || null],
    ]));
    setCtx($('job-cancel'), !TERMINAL[j.state]);
  }

  async function followJob(jobId) {
    if (S.jobAbort) S.jobAbort.abort();
    const ac = new AbortController();
    S.jobAbort = ac;
    let last = null;
    try {
      await api.stream('WatchJob', { jobId: String(jobId) }, (j) => { last = j; renderJob(j); }, { signal: ac.signal, quiet: true });
    } catch (e) {
      if (e.status === 'CANCELLED' && ac.signal.aborted) return;
      /* The stream broke: poll instead. */
      for (;;) {
        if (ac.signal.aborted) return;
        try { last = await api.call('GetJob', { jobId: String(jobId) }, { quiet: true }); renderJob(last); } catch (e2) { showError(e2); return; }
        if (TERMINAL[last.state]) break;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    if (S.jobAbort === ac) S.jobAbort = null;
    if (last && last.state === 'JOB_STATE_SUCCEEDED') {
      status('job ' + GD.id(last.id) + ' succeeded: snapshot ' + GD.id(last.snapshotId));
      await loadSnapshots(GD.id(last.snapshotId));
    } else if (last) status('job ' + GD.id(last.id) + ' ended ' + str(last.state).replace(/^JOB_STATE_/, ''));
  }

  async function startClustering(spec) {
    const j = await api.call('StartClustering', { spec: spec });
    renderJob(j);
    status('job ' + GD.id(j.id) + ' queued');
    followJob(GD.id(j.id)).catch(fail);
    return j;
  }

  function onStartJob(ev) {
    ev.preventDefault();
    const spec = { name: $('job-name').value.trim(), algorithm: $('job-algorithm').value };
    const res = parseFloat($('job-resolution').value);
    if (Number.isFinite(res) && res >= 0) spec.resolution = res;
    startClustering(spec).catch(fail);
  }

  async function cancelJob() {
    if (!S.job) return;
    try { renderJob(await api.call('CancelJob', { jobId: GD.id(S.job.id) })); } catch (e) { /* shown */ }
  }

  let snapshots = [];
  async function loadSnapshots(select) {
    let r;
    try { r = await api.call('ListSnapshots', { limit: 50 }); } catch (e) { return; }
    snapshots = arr(r.snapshots);
    const box = GD.clear($('snap-list'));
    if (!snapshots.length) box.appendChild(el('p', { className: 'muted' }, 'No snapshot yet: start a clustering job.'));
    else {
      const rows = snapshots.map((s) => {
        const id = GD.id(s.id);
        const spec = s.spec || {};
        return [
          btn('#' + id, () => selectSnapshot(id), { className: 'linkish snap-open', dataset: { snap: id },
            title: str(spec.algorithm).replace(/^ALGORITHM_/, '').toLowerCase() + ', ' + num(s.sellers) + ' sellers, ' +
              num(s.ties) + ' ties, ' + num(s.flaggedSellers) + ' flagged' }),
          el('span', { className: 'ellipsis' }, str(spec.name)), GD.fmtTime(s.createdAt), String(num(s.clusters)),
        ];
      });
      box.appendChild(table(['id', 'name', 'created', 'clusters'], rows, 'snap-table'));
    }
    for (const selId of ['diff-from', 'diff-to']) {
      const sel = GD.clear($(selId));
      for (const s of snapshots) sel.appendChild(el('option', { value: GD.id(s.id) }, '#' + GD.id(s.id) + ' ' + str((s.spec || {}).name)));
    }
    if (snapshots.length > 1) { $('diff-from').value = GD.id(snapshots[1].id); $('diff-to').value = GD.id(snapshots[0].id); }
    const want = select || S.snap || (snapshots[0] && GD.id(snapshots[0].id));
    if (want && snapshots.some((s) => GD.id(s.id) === want)) await selectSnapshot(want);
  }

  async function selectSnapshot(id) {
    S.snap = id;
    for (const b of document.querySelectorAll('#snap-list .snap-open')) b.classList.toggle('current', b.dataset.snap === id);
    S.clusterPage = '';
    await loadClusters(false);
  }

  async function loadClusters(more) {
    if (!S.snap) return;
    const req = {
      snapshotId: S.snap, order: $('clusters-order').value, minSize: String(intVal('clusters-min', 2, 0)),
      limit: intVal('clusters-limit', 25, 1, 10000),
    };
    if (more && S.clusterPage) req.pageToken = S.clusterPage;
    let r;
    try { r = await api.call('ListClusters', req); } catch (e) { return; }
    $('clusters-snap').textContent = 'snapshot ' + S.snap + ' · by ' + ($('clusters-order').value === 'CLUSTER_ORDER_SIZE' ? 'size' : 'risk');
    const box = $('clusters-list');
    if (!more) GD.clear(box);
    const rows = arr(r.clusters).map((c) => {
      const id = GD.id(c.id);
      return [
        btn('#' + id, () => openCluster(S.snap, id), { className: 'linkish cluster-open', dataset: { cluster: id } }),
        String(num(c.size)), String(num(c.flagged)), GD.fmtNum(c.risk, 3), GD.fmtNum(c.cohesion, 2),
        el('span', { className: 'ellipsis' }, arr(c.topShared).map((s) => str((s.entity || {}).key)).join(', ')),
      ];
    });
    if (!rows.length && !more) box.appendChild(el('p', { className: 'muted' }, 'No cluster of that size.'));
    else box.appendChild(table(['cluster', 'size', 'flagged', 'risk', 'cohesion', 'top shared'], rows, 'clusters'));
    S.clusterPage = str(r.nextPageToken);
    $('clusters-more').disabled = !S.clusterPage;
  }

  let clusterView = null;

  async function openCluster(snap, cid) {
    const req = { snapshotId: String(snap), clusterId: String(cid), maxMembers: 500, maxTies: 100, links: true, live: true };
    let r;
    try { r = await api.call('GetCluster', req); } catch (e) { return; }
    S.cluster = { snap: String(snap), id: String(cid), reply: r };
    const c = r.cluster || {};
    $('cluster-title').textContent = '#' + cid + ' · snapshot ' + snap;
    const sum = GD.clear($('cluster-summary'));
    sum.appendChild(dl([
      ['size', String(num(c.size))], ['flagged', String(num(c.flagged))], ['risk', GD.fmtNum(c.risk, 3)],
      ['cohesion', GD.fmtNum(c.cohesion, 3)], ['ties stored', String(num(r.tiesStored))],
      ['links kept', r.linksKept ? 'yes' : 'no (drawing from ties)'],
    ]));
    const det = GD.clear($('cluster-detail'));
    /* supply sources */
    det.appendChild(el('h3', null, 'Supply sources'));
    const ss = arr(c.topShared);
    if (!ss.length) det.appendChild(el('p', { className: 'muted' }, 'None: no evidence entity used by two or more members.'));
    else det.appendChild(table(['entity', 'in cluster', 'all sellers', 'score'], ss.map((s) => [
      entityButton(s.entity || {}, { before: () => switchTab('investigate') }), String(num(s.clusterSellers)), String(num(s.totalSellers)), GD.fmtNum(s.score, 2),
    ]), 'supply'));
    /* members */
    const flagged = new Set(arr(r.flaggedMembers).map(GD.id));
    const live = new Map(arr(r.liveMembers).map((m) => [GD.id(m.id), m]));
    det.appendChild(el('h3', null, 'Members (' + arr(r.members).length + (r.moreMembers ? ', more not shown' : '') + ')'));
    det.appendChild(table(['seller', 'labels (then)', 'labels (now)', 'flagged', 'first seen', 'last seen'], arr(r.members).map((m) => {
      const lm = live.get(GD.id(m.id));
      return [
        entityButton(m, { before: () => switchTab('investigate') }),
        arr(m.labels).join(', '), lm ? arr(lm.labels).join(', ') : '(deleted)',
        flagged.has(GD.id(m.id)) ? '✔' : '', GD.fmtDate(m.firstSeen), GD.fmtDate(m.lastSeen),
      ];
    }), 'members'));
    /* sellers placed in the cluster since the snapshot was written (latest snapshot only) */
    const prov = arr(r.provisionalMembers);
    if (prov.length) {
      det.appendChild(el('h3', null, 'Provisional members (' + prov.length + (r.moreProvisional ? ', more not shown' : '') + ')'));
      det.appendChild(el('p', { className: 'muted small' }, 'Placed in this cluster since the snapshot was written; not members of the snapshot.'));
      det.appendChild(table(['seller', '', 'since', 'tie', 'before'], prov.map((m) => {
        const pl = m.provisional || {};
        return [
          entityButton(Object.assign({ type: 'ENTITY_TYPE_SELLER' }, m), { before: () => switchTab('investigate') }),
          el('span', { className: 'prov-tag' }, 'provisional'),
          GD.fmtMs(pl.placedAt), GD.fmtNum(pl.tie, 3),
          GD.id(pl.previousClusterId) ? 'cluster ' + GD.id(pl.previousClusterId) : 'new',
        ];
      }), 'provisional-members'));
    }
    /* ties */
    const ties = arr(r.ties);
    if (ties.length) {
      det.appendChild(el('h3', null, 'Strongest ties'));
      det.appendChild(table(['seller', 'seller', 'weight'], ties.slice(0, 30).map((t) => [
        str(t.keyA) || GD.id(t.sellerA), str(t.keyB) || GD.id(t.sellerB), GD.fmtNum(t.weight, 2)]), 'ties'));
    }
    drawCluster(r);
    $('cluster-pick').textContent = 'Click a node for its name; members and sources open in Investigate.';
  }

  function drawCluster(r) {
    const members = arr(r.members);
    const memberIds = new Set(members.map((m) => GD.id(m.id)));
    const flagged = new Set(arr(r.flaggedMembers).map(GD.id));
    const linked = new Map(arr(r.linked).map((e) => [GD.id(e.id), e]));
    const nodes = [];
    const edges = [];
    const info = new Map();
    for (const m of members) {
      const id = GD.id(m.id);
      info.set(id, m);
      nodes.push({
        id: id, type: 'SELLER', key: str(m.key), r: 10,
        classes: (flagged.has(id) || isFlagged(m) ? 'flagged' : '') + ' member', badge: null,
        title: 'seller ' + str(m.key) + (arr(m.labels).length ? '\nlabels: ' + arr(m.labels).join(', ') : ''),
      });
    }
    if (r.linksKept) {
      const uses = new Map();
      for (const l of arr(r.links)) {
        const eid = GD.id(l.entityId);
        if (!uses.has(eid)) uses.set(eid, new Set());
        uses.get(eid).add(GD.id(l.sellerId));
      }
      const keep = new Set();
      for (const [eid, who] of uses) {
        const e = linked.get(eid);
        if (memberIds.has(eid)) keep.add(eid);
        else if (who.size >= 2 && e) keep.add(eid);
      }
      for (const eid of keep) {
        if (memberIds.has(eid)) continue;
        const e = linked.get(eid);
        const t = GD.shortType(e.type);
        info.set(eid, e);
        nodes.push({
          id: eid, type: t, key: str(e.key), r: 7, shape: e.overHubCap ? 'square' : 'circle',
          classes: e.overHubCap ? 'skipped' : '', badge: null,
          sub: e.overHubCap ? num(e.sellerCount) + ' sellers · hub' : null,
          title: GD.TYPE_NAME[t] + ' ' + str(e.key) + '\n' + num(e.sellerCount) + ' sellers, ' + uses.get(eid).size + ' of them members',
        });
      }
      for (const l of arr(r.links)) {
        const s = GD.id(l.sellerId), eid = GD.id(l.entityId);
        if (!keep.has(eid) || !memberIds.has(s)) continue;
        edges.push({ key: 'm:' + s + '|' + eid, source: s, target: eid, kind: 'member', width: 1,
          title: str((info.get(s) || {}).key) + ' — ' + str((info.get(eid) || {}).key) + ': ' + GD.fmtDate(l.firstSeen) + ' – ' + GD.fmtDate(l.lastSeen) });
      }
    } else {
      for (const t of arr(r.ties)) {
        const a = GD.id(t.sellerA), b = GD.id(t.sellerB);
        edges.push({ key: pairKey('t:', a, b), source: a, target: b, kind: 'tie', width: 1 + Math.min(num(t.weight), 4) * 0.8,
          title: str(t.keyA) + ' — ' + str(t.keyB) + ': ' + GD.fmtNum(t.weight, 2) });
      }
    }
    clusterView.update(nodes, edges, { fit: true });
    clusterView.info = info;
    $('cluster-drawing').dataset.nodes = String(nodes.length);
  }

  function onClusterNode(id) {
    const e = clusterView.info && clusterView.info.get(id);
    clusterView.setSelection(id, null);
    const box = GD.clear($('cluster-pick'));
    if (!e) return;
    box.appendChild(entityButton(Object.assign({ type: 'ENTITY_TYPE_SELLER' }, e), { before: () => switchTab('investigate') }));
    if (arr(e.labels).length) box.appendChild(el('span', { className: 'muted' }, ' labels: ' + arr(e.labels).join(', ')));
  }

  async function onDiff(ev) {
    ev.preventDefault();
    const from = $('diff-from').value, to = $('diff-to').value;
    const box = GD.clear($('diff-result'));
    if (!from) { box.appendChild(el('p', { className: 'muted' }, 'Two snapshots are needed.')); return; }
    const req = { fromSnapshotId: from, toSnapshotId: to || '0', keys: $('diff-keys').checked };
    const mp = parseInt($('diff-min').value, 10);
    if (Number.isFinite(mp) && mp > 0) req.minPartSize = mp;
    const MAX_ROWS = 1000;
    let summary = null;
    const byKind = {};
    const kinds = {};
    let total = 0;
    const clusterBtn = (snap, ids) => {
      const span = el('span');
      ids.forEach((c, i) => {
        if (i) span.appendChild(document.createTextNode(' '));
        span.appendChild(btn('#' + c, () => openCluster(snap, c), { className: 'linkish small' }));
      });
      return span;
    };
    try {
      await api.stream('DiffSnapshots', req, (m) => {
        const kind = str(m.kind).replace(/^KIND_/, '') || 'UNSPECIFIED';
        if (kind === 'SUMMARY') { summary = m; return; }
        total++;
        kinds[kind] = (kinds[kind] || 0) + 1;
        const list = byKind[kind] || (byKind[kind] = []);
        if (list.length < MAX_ROWS) {
          const f = arr(m.fromClusters).map(GD.id), t = arr(m.toClusters).map(GD.id);
          list.push([kind.toLowerCase(), clusterBtn(from, f), clusterBtn(to || from, t),
            GD.id(m.sellerId) ? (str(m.sellerKey) || '#' + GD.id(m.sellerId)) : '']);
        }
      });
    } catch (e) { box.appendChild(el('p', { className: 'muted' }, 'The diff failed: ' + (e.status || '') + ' ' + (e.detail || e.message))); return; }
    if (summary) {
      const c = summary.counts || {};
      box.appendChild(el('p', { className: 'diff-summary', id: 'diff-summary' }, str(summary.summary)));
      box.appendChild(dl([
        ['sellers', String(num(c.sellers))], ['stayed', String(num(c.sellersStayed))], ['moved', String(num(c.sellersMoved))],
        ['added', String(num(c.sellersAdded))], ['removed', String(num(c.sellersRemoved))],
        ['clusters', num(c.clustersFrom) + ' → ' + num(c.clustersTo)],
        ['continued / merged / split', num(c.continued) + ' / ' + num(c.merged) + ' / ' + num(c.split)],
        ['born / dissolved', num(c.born) + ' / ' + num(c.dissolved)],
      ]));
    }
    /* The changes first, what stayed the same last. */
    const rows = [];
    for (const k of ['MERGED', 'SPLIT', 'BORN', 'DISSOLVED', 'MOVED', 'CONTINUED'].concat(Object.keys(byKind)))
      if (byKind[k]) { for (const r of byKind[k]) if (rows.length < MAX_ROWS) rows.push(r); delete byKind[k]; }
    box.appendChild(el('p', { className: 'muted small' }, total + ' events' + (total > rows.length ? ' (first ' + rows.length + ' listed)' : '') +
      ': ' + Object.keys(kinds).map((k) => k.toLowerCase() + ' ' + kinds[k]).join(', ')));
    if (rows.length) box.appendChild(table(['event', 'from clusters', 'to clusters', 'seller'], rows, 'diff'));
    box.parentNode.scrollIntoView({ block: 'start' });
  }

  /* ======================================================================
   * Audit
   * ==================================================================== */
  async function loadAudit(more) {
    const req = { limit: intVal('audit-limit', 100, 1, 10000) };
    for (const [k, id] of [['caseId', 'audit-case'], ['principal', 'audit-principal'], ['method', 'audit-method']]) {
      const v = $(id).value.trim();
      if (v) req[k] = v;
    }
    if (more && S.auditPage) req.pageToken = S.auditPage;
    let r;
    try { r = await api.call('ListAudit', req); } catch (e) { return; }
    const box = $('audit-result');
    if (!more) GD.clear(box);
    const rows = arr(r.records).map((a) => [
      String(num(a.seq)), GD.fmtMs(a.time), str(a.principal), str(a.role), str(a.caseId), str(a.method).replace(/^\/graphd\.v1\.SellerGraph\//, ''),
      el('span', { className: 'ellipsis' }, str(a.target)), String(num(a.status)),
    ]);
    if (!rows.length && !more) box.appendChild(el('p', { className: 'muted' }, 'No records.'));
    else box.appendChild(table(['seq', 'time', 'principal', 'role', 'case', 'method', 'target', 'status'], rows, 'audit'));
    S.auditPage = str(r.nextPageToken);
    $('audit-more').dataset.ctxOff = S.auditPage ? '0' : '1';
    refreshGates();
  }
  async function verifyAudit() {
    try {
      const r = await api.call('VerifyAudit', {});
      status(r.ok ? 'audit chain verified: ' + num(r.records) + ' records' : 'audit chain broken at ' + num(r.firstBadSeq) + ': ' + str(r.problem));
    } catch (e) { /* shown */ }
  }

  /* ======================================================================
   * Alerts: WatchAlerts, followed until stopped
   * ==================================================================== */
  const ALERT_ROWS = 500; /* rows kept on the page, newest first */
  const ALERT_WATCH_MS = 600000; /* one stream's deadline; then it is opened again */
  /* Statuses that asking again the same way would only repeat. */
  const ALERT_FATAL = {
    INVALID_ARGUMENT: 1, NOT_FOUND: 1, PERMISSION_DENIED: 1, UNAUTHENTICATED: 1,
    UNIMPLEMENTED: 1, FAILED_PRECONDITION: 1, OUT_OF_RANGE: 1,
  };

  function alertsRequest() {
    const A = S.alerts;
    const req = {};
    const mr = $('alerts-min-risk').value.trim();
    if (mr !== '') req.minRisk = Number(mr); /* its range is the server's to check */
    const label = $('alerts-label').value.trim();
    if (label) req.label = label;
    if (A.lastSeq) req.afterSeq = A.lastSeq;
    else if ($('alerts-from-now').checked) req.fromNow = true;
    return req;
  }

  function alertsState(state, text) {
    const s = $('alerts-state');
    s.dataset.state = state;
    s.className = 'alerts-state st-' + state;
    s.textContent = text || state;
    const A = S.alerts;
    $('alerts-last').textContent = A.lastSeq
      ? 'last seq ' + A.lastSeq + ' · ' + A.received + ' received' + (A.reconnects ? ' · ' + A.reconnects + (A.reconnects === 1 ? ' reconnection' : ' reconnections') : '')
      : '';
    $('alerts-start').dataset.ctxOff = A.running ? '1' : '0';
    $('alerts-stop').disabled = !A.running;
    refreshGates();
  }

  function renderAlertsBadge() {
    const b = $('alerts-unseen');
    b.hidden = !S.alerts.unseen;
    b.textContent = S.alerts.unseen ? String(S.alerts.unseen) : '';
  }

  function alertsBody() {
    let t = document.querySelector('#alerts-list table.alerts');
    if (!t) {
      const box = GD.clear($('alerts-list'));
      t = table(['seq', 'time', 'seller', 'cluster', 'risk', 'size', 'before', 'evidence', 'cluster labels', 'why'], [], 'alerts');
      box.appendChild(t);
    }
    return t.tBodies[0];
  }

  /* One AlertEvent: a row at the top of the list. */
  function onAlert(ev) {
    const A = S.alerts;
    const seq = GD.id(ev.seq);
    if (!seq) return;
    if (A.lastSeq && BigInt(seq) <= BigInt(A.lastSeq)) return; /* a resumed stream never repeats one; be sure */
    A.lastSeq = seq;
    A.received++;
    A.backoff = 1;
    const sid = GD.id(ev.snapshotId), cid = GD.id(ev.clusterId), prev = GD.id(ev.previousClusterId);
    const clusterBtn = (c, cls) => btn('#' + c, () => { switchTab('snapshots'); openCluster(sid, c); },
      { className: 'linkish ' + cls, dataset: { cluster: c, snap: sid }, title: 'cluster ' + c + ' of snapshot ' + sid });
    const seen = new Set();
    const evid = el('span', { className: 'alert-evidence' });
    for (const x of arr(ev.evidence)) {
      for (const sh of arr(x.shared)) {
        const e = sh.entity || {};
        const id = GD.id(e.id);
        if (!id || seen.has(id) || seen.size >= 3) continue;
        seen.add(id);
        if (GD.shortType(e.type) === 'SELLER') evid.appendChild(el('span', { className: 'direct' }, 'direct link '));
        else evid.appendChild(entityButton(e, { before: () => switchTab('investigate') }));
      }
    }
    const risk = num(ev.clusterRisk);
    const row = el('tr', { className: 'alert-row', dataset: { seq: seq, seller: GD.id(ev.sellerId), cluster: cid } },
      el('td', null, seq),
      el('td', null, GD.fmtMs(ev.time)),
      el('td', null, entityButton({ id: ev.sellerId, type: 'ENTITY_TYPE_SELLER', key: ev.sellerKey }, { before: () => switchTab('investigate') })),
      el('td', null, cid ? clusterBtn(cid, 'alert-cluster') : 'none'),
      el('td', { className: risk >= 0.5 ? 'risk-high' : '' }, GD.fmtNum(risk, 3)),
      el('td', null, String(num(ev.clusterSize))),
      el('td', null, prev ? clusterBtn(prev, 'alert-prev') : 'none'),
      el('td', null, evid),
      el('td', null, el('span', { className: 'ellipsis' }, arr(ev.clusterLabels).join(', '))),
      el('td', null, arr(ev.reasons).join(', ')));
    const tb = alertsBody();
    tb.insertBefore(row, tb.firstChild);
    while (tb.rows.length > ALERT_ROWS) tb.deleteRow(tb.rows.length - 1);
    if ($('tab-alerts').getAttribute('aria-selected') !== 'true') { A.unseen++; renderAlertsBadge(); }
    alertsState('following', 'following');
  }

  function alertsSleep(ms) {
    return new Promise((r) => {
      const t = setTimeout(r, ms);
      S.alerts.wake = () => { clearTimeout(t); r(); };
    });
  }

  /* Follows WatchAlerts until stopped: a stream that ends (the server's
   * deadline, a dropped connection, a restarting daemon) is opened again
   * after the last event seen, at once after a deadline, else after 1, 2,
   * 4 .. 30 s. A refusal (bad filter, role) stops and is shown. */
  async function alertsLoop(gen) {
    const A = S.alerts;
    while (A.gen === gen) {
      const ac = new AbortController();
      A.abort = ac;
      const t0 = Date.now();
      const resumed = !!A.lastSeq;
      let err = null;
      alertsState('following', 'following' + (resumed ? ' (after seq ' + A.lastSeq + ')' : ''));
      try {
        await api.stream('WatchAlerts', alertsRequest(), onAlert,
          { signal: ac.signal, quiet: true, background: true, deadlineMs: ALERT_WATCH_MS });
      } catch (e) { err = e; }
      if (A.gen !== gen) return; /* stopped meanwhile */
      if (err && !(err instanceof GD.ApiError)) { stopAlerts(); fail(err); return; }
      if (err && err.status === 'OUT_OF_RANGE' && resumed) {
        /* The resume point is no longer kept: go on from the oldest kept. */
        status('alerts: ' + err.detail + '; going on from the oldest alert kept');
        A.lastSeq = '';
        continue;
      }
      if (err && ALERT_FATAL[err.status]) {
        A.running = false;
        A.gen++;
        alertsState('stopped', 'stopped: ' + err.status + ': ' + err.detail);
        showError(err);
        return;
      }
      let wait = 0;
      if (!err || err.status !== 'DEADLINE_EXCEEDED') {
        wait = A.backoff;
        A.backoff = Math.min(30, A.backoff * 2);
      }
      if (Date.now() - t0 < 1000) wait = Math.max(wait, 1);
      A.reconnects++;
      if (wait) {
        alertsState('reconnecting', 'reconnecting in ' + wait + ' s (' + (err ? err.status + ': ' + err.detail : 'the stream ended') + ')');
        await alertsSleep(wait * 1000);
      }
    }
  }

  function startAlerts() {
    const A = S.alerts;
    if (A.running) return;
    A.running = true;
    A.backoff = 1;
    const gen = ++A.gen;
    alertsLoop(gen).catch(fail);
  }

  function stopAlerts() {
    const A = S.alerts;
    if (!A.running) return;
    A.running = false;
    A.gen++;
    if (A.abort) A.abort.abort();
    if (A.wake) A.wake();
    alertsState('stopped', 'stopped' + (A.lastSeq ? ' (starting again resumes after seq ' + A.lastSeq + ')' : ''));
  }

  function clearAlerts() {
    GD.clear($('alerts-list')).appendChild(el('p', { className: 'muted', id: 'alerts-empty' }, 'List cleared.'));
    S.alerts.unseen = 0;
    renderAlertsBadge();
  }

  /* ======================================================================
   * Tabs
   * ==================================================================== */
  const TABS = ['investigate', 'snapshots', 'alerts', 'cases', 'audit'];
  let snapshotsLoaded = false;
  function switchTab(name) {
    for (const t of TABS) {
      const on = t === name;
      const tab = $('tab-' + t);
      tab.setAttribute('aria-selected', on ? 'true' : 'false');
      $('view-' + t).hidden = !on;
    }
    if (name === 'investigate') {
      if (view.needFit) view.fit();
      timeline.render();
    }
    if (name === 'snapshots') {
      if (clusterView.needFit) clusterView.fit();
      if (!snapshotsLoaded) { snapshotsLoaded = true; loadSnapshots().catch(fail); }
    }
    if (name === 'alerts') { S.alerts.unseen = 0; renderAlertsBadge(); }
    if (name === 'cases' && !casesLoaded && api.roleAtLeast('case-read')) { casesLoaded = true; loadCases().catch(fail); }
  }
  let casesLoaded = false;


  /* ======================================================================
   * Cases: list, open, add what is on screen, notes, status, the pack
   * ==================================================================== */
  const CASE_STATUS = { CASE_STATUS_OPEN: 'open', CASE_STATUS_REFERRED: 'referred', CASE_STATUS_CLOSED: 'closed' };

  function caseGates() {
    const open = !!S.caseOpen;
    setCtx($('case-add-screen'), open);
    setCtx($('case-export'), open);
    setCtx($('case-note-go'), open);
    setCtx($('case-status-go'), open);
  }

  async function loadCases() {
    const req = { limit: 200 };
    const b = $('case-list-brand').value.trim();
    const st = $('case-list-status').value;
    if (b) req.brand = b;
    if (st) req.status = st;
    let r;
    try { r = await api.call('ListCases', req); } catch (e) { return; }
    const list = GD.clear($('case-list'));
    const cases = arr(r.cases);
    if (!cases.length) { list.appendChild(el('p', { className: 'muted' }, 'No case.')); return; }
    list.appendChild(table(['case', 'title', 'brand', 'status', 'assignee', 'items', 'queries'], cases.map((c) => [
      btn(GD.id(c.caseId), () => openCase(GD.id(c.caseId)).catch(fail), { className: 'link case-open', title: 'open case ' + GD.id(c.caseId) }),
      str(c.title), str(c.brand), CASE_STATUS[c.status] || str(c.status), str(c.assignee),
      String(arr(c.sellers).length + arr(c.entities).length + arr(c.clusters).length), String(num(c.queryCount)),
    ]), 'cases'));
  }

  function renderCase(c) {
    S.caseOpen = c;
    $('case-title').textContent = 'Case ' + GD.id(c.caseId) + ': ' + str(c.title);
    const d = GD.clear($('case-detail'));
    d.appendChild(dl([
      ['brand', str(c.brand)], ['status', CASE_STATUS[c.status] || str(c.status)],
      ['assignee', str(c.assignee) || '—'], ['revision', String(num(c.revision))],
      ['opened', GD.fmtMs(c.created) + ' by ' + str(c.createdBy)],
      ['changed', GD.fmtMs(c.updated) + ' by ' + str(c.updatedBy)],
      ['saved queries', String(num(c.queryCount))],
    ]));
    if (arr(c.notes).length) {
      d.appendChild(el('h3', null, 'Notes'));
      d.appendChild(el('ul', { className: 'case-notes' }, ...arr(c.notes).map((n) =>
        el('li', null, el('span', { className: 'muted' }, GD.fmtMs(n.time) + ', ' + str(n.author) + ': '), str(n.text)))));
    }
    const items = arr(c.sellers).concat(arr(c.entities));
    d.appendChild(el('h3', null, 'Holds (' + items.length + ' entities, ' + arr(c.clusters).length + ' clusters)'));
    if (items.length) {
      d.appendChild(table(['entity', 'id'], items.map((e) => [
        entityButton(e, { before: () => switchTab('investigate') }), GD.id(e.id)]), 'case-items'));
    }
    if (arr(c.clusters).length) {
      d.appendChild(el('ul', { className: 'case-clusters' }, ...arr(c.clusters).map((k) =>
        el('li', null, 'cluster ' + GD.id(k.clusterId) + ' of snapshot ' + GD.id(k.snapshotId)))));
    }
    const sel = $('case-status');
    sel.value = c.status || 'CASE_STATUS_OPEN';
    caseGates();
  }

  async function openCase(id) {
    let c;
    try { c = await api.call('GetCase', { caseId: String(id), maxQueries: 1 }); } catch (e) { return; }
    renderCase(c);
    status('case ' + id + ' open');
  }

  async function updateCase(body) {
    if (!S.caseOpen) return null;
    body.caseId = GD.id(S.caseOpen.caseId);
    body.expectRevision = String(num(S.caseOpen.revision));
    let c;
    try { c = await api.call('UpdateCase', body); } catch (e) { return null; }
    renderCase(c);
    if ($('case-list').firstChild) loadCases().catch(fail); /* its counts changed */
    return c;
  }

  async function newCase(ev) {
    if (ev) ev.preventDefault();
    const body = { title: $('case-new-title').value.trim(), brand: $('case-new-brand').value.trim() };
    const note = $('case-new-note').value.trim();
    if (note) body.note = note;
    let c;
    try { c = await api.call('CreateCase', body); } catch (e) { return null; }
    renderCase(c);
    status('opened case ' + GD.id(c.caseId));
    loadCases().catch(fail);
    return c;
  }

  /* The sellers and entities of the Investigate drawing (placeholders
   * left out), and the cluster open in Snapshots. */
  function onScreen() {
    const sellers = [], entities = [];
    for (const id of S.shown.nodes) {
      const n = S.nodes.get(id);
      if (!n || n.placeholder || !/^[0-9]+$/.test(String(id))) continue;
      (n.type === 'SELLER' ? sellers : entities).push({ id: String(id) });
    }
    const clusters = S.cluster ? [{ snapshotId: S.cluster.snap, clusterId: S.cluster.id }] : [];
    return { sellers: sellers.slice(0, 4000), entities: entities.slice(0, 4000 - Math.min(sellers.length, 4000)), clusters: clusters };
  }

  async function addOnScreen() {
    const o = onScreen();
    if (!o.sellers.length && !o.entities.length && !o.clusters.length) {
      status('nothing on screen to add: draw something in Investigate, or open a cluster');
      return null;
    }
    const c = await updateCase({ addSellers: o.sellers, addEntities: o.entities, addClusters: o.clusters });
    if (c) status('added ' + o.sellers.length + ' sellers, ' + o.entities.length + ' entities, ' + o.clusters.length + ' clusters to case ' + GD.id(c.caseId));
    return c;
  }

  async function addNote(ev) {
    if (ev) ev.preventDefault();
    const t = $('case-note').value.trim();
    if (!t) return;
    if (await updateCase({ note: t })) $('case-note').value = '';
  }

  async function setStatus(ev) {
    if (ev) ev.preventDefault();
    const body = { status: $('case-status').value };
    if ($('case-reopen').checked) body.reopen = true;
    if (await updateCase(body)) $('case-reopen').checked = false;
  }

  /* ExportCase: the zip's bytes come base64 in JSON lines; one download. */
  async function exportPack() {
    if (!S.caseOpen) return null;
    const id = GD.id(S.caseOpen.caseId);
    const parts = [];
    let name = 'case-' + id + '.zip';
    try {
      await api.stream('ExportCase', { caseId: id }, (m) => {
        if (m.fileName) name = m.fileName;
        const b = atob(str(m.data));
        const u = new Uint8Array(b.length);
        for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);
        parts.push(u);
      }, { deadlineMs: 300000 });
    } catch (e) { return null; }
    const blob = new Blob(parts, { type: 'application/zip' });
    status('evidence pack ' + name + ' (' + blob.size + ' bytes): check it with graphctl verify-pack');
    return GD.download(name, blob);
  }

  /* ======================================================================
   * Wiring
   * ==================================================================== */
  function init() {
    typeOptions($('search-type'));
    typeOptions($('path-from-type'));
    typeOptions($('path-to-type'));
    for (const t of GD.TYPES) $('list-type').appendChild(el('option', { value: t }, GD.TYPE_NAME[t]));
    const via = $('ctl-via');
    for (const t of GD.TYPES) {
      via.appendChild(el('label', { className: 'check', title: t === 'SELLER' ? 'direct seller-seller links' : 'shared ' + GD.TYPE_NAME[t] },
        el('input', { type: 'checkbox', value: t, checked: true, id: 'via-' + t }), GD.TYPE_SHORT[t]));
    }
    const ce = el('label', { className: 'check click-expands', title: 'Clicking a node in the drawing expands it (shift-click only selects)' },
      el('input', { type: 'checkbox', id: 'ctl-click-expands', checked: true }), 'click expands');
    $('expand-form').querySelector('.actions').insertBefore(ce, $('btn-refresh'));

    view = new GD.GraphView($('drawing'), {
      onNodeClick: onNodeClick,
      onEdgeClick: (k) => selectEdge(k),
    });
    timeline = new GD.Timeline($('timeline'), {
      onWindow: (a, b) => setWindow(a, b),
      onSelect: (o) => selectEdge(o.edgeKey),
    });
    clusterView = new GD.GraphView($('cluster-drawing'), { onNodeClick: onClusterNode });

    /* top bar */
    $('token').value = api.token;
    $('case-id').value = api.caseId;
    $('auth-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      api.setToken($('token').value);
      api.setCaseId($('case-id').value);
      clearError();
      api.probeRole().catch(fail);
    });
    $('token').addEventListener('change', () => { api.setToken($('token').value); api.probeRole().catch(fail); });
    $('case-id').addEventListener('input', () => api.setCaseId($('case-id').value));
    $('error-close').addEventListener('click', clearError);

    /* tabs */
    for (const t of TABS) $('tab-' + t).addEventListener('click', () => switchTab(t));
    document.querySelector('.tabs').addEventListener('keydown', (ev) => {
      const i = TABS.findIndex((t) => $('tab-' + t).getAttribute('aria-selected') === 'true');
      let j = -1;
      if (ev.key === 'ArrowRight') j = (i + 1) % TABS.length;
      else if (ev.key === 'ArrowLeft') j = (i + TABS.length - 1) % TABS.length;
      if (j < 0) return;
      ev.preventDefault();
      switchTab(TABS[j]);
      $('tab-' + TABS[j]).focus();
    });

    /* investigate */
    $('search-form').addEventListener('submit', onSearch);
    $('paths-form').addEventListener('submit', (ev) => onPaths(ev).catch(fail));
    $('suspects-form').addEventListener('submit', (ev) => onSuspects(ev).catch(fail));
    $('expand-form').addEventListener('submit', (ev) => ev.preventDefault());
    $('btn-refresh').addEventListener('click', () => refreshAll().catch(fail));
    $('btn-fit').addEventListener('click', () => view.fit());
    $('btn-zoom-in').addEventListener('click', () => view.zoomBy(1.3));
    $('btn-zoom-out').addEventListener('click', () => view.zoomBy(1 / 1.3));
    $('btn-clear').addEventListener('click', clearAll);
    $('btn-export-graphml').addEventListener('click', exportGraphML);
    $('btn-export-nodes').addEventListener('click', exportNodes);
    $('btn-export-edges').addEventListener('click', exportEdges);
    $('btn-export-png').addEventListener('click', () => exportPNG());
    $('ctl-from').addEventListener('input', () => windowFromSliders('from'));
    $('ctl-to').addEventListener('input', () => windowFromSliders('to'));
    $('ctl-window-reset').addEventListener('click', () => setWindow(0, 0));
    $('list-type').addEventListener('change', () => { renderList(); applyWindow(); applySelection(); });
    listKeys($('entity-list'), (li) => selectNode(li.dataset.id, { noScroll: false }),
      () => S.listActive, (li) => { S.listActive = li.dataset.id; });
    listKeys($('link-list'), (li) => selectEdge(li.dataset.key),
      () => S.linkActive, (li) => { S.linkActive = li.dataset.key; });

    /* snapshots */
    $('job-form').addEventListener('submit', onStartJob);
    $('job-cancel').addEventListener('click', () => cancelJob().catch(fail));
    setCtx($('job-cancel'), false);
    $('snap-refresh').addEventListener('click', () => loadSnapshots().catch(fail));
    $('clusters-form').addEventListener('submit', (ev) => { ev.preventDefault(); S.clusterPage = ''; loadClusters(false).catch(fail); });
    $('clusters-more').addEventListener('click', () => loadClusters(true).catch(fail));
    $('diff-form').addEventListener('submit', (ev) => onDiff(ev).catch(fail));

    /* alerts */
    $('alerts-form').addEventListener('submit', (ev) => { ev.preventDefault(); startAlerts(); });
    $('alerts-stop').addEventListener('click', stopAlerts);
    $('alerts-clear').addEventListener('click', clearAlerts);
    alertsState('stopped');

    /* cases */
    $('case-new-form').addEventListener('submit', (ev) => newCase(ev).catch(fail));
    $('case-list-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadCases().catch(fail); });
    $('case-add-screen').addEventListener('click', () => addOnScreen().catch(fail));
    $('case-export').addEventListener('click', () => exportPack().catch(fail));
    $('case-note-form').addEventListener('submit', (ev) => addNote(ev).catch(fail));
    $('case-status-form').addEventListener('submit', (ev) => setStatus(ev).catch(fail));
    caseGates();

    /* audit */
    $('audit-form').addEventListener('submit', (ev) => { ev.preventDefault(); S.auditPage = ''; loadAudit(false).catch(fail); });
    $('audit-more').addEventListener('click', () => loadAudit(true).catch(fail));
    setCtx($('audit-more'), false);
    $('audit-verify').addEventListener('click', () => verifyAudit().catch(fail));

    window.addEventListener('resize', () => { timeline.render(); });
    /* Enter activates checkboxes too (Space does natively). */
    document.addEventListener('keydown', (ev) => {
      const t = ev.target;
      if (ev.key === 'Enter' && t instanceof HTMLInputElement && t.type === 'checkbox') {
        ev.preventDefault();
        t.click();
      }
    });

    recompute();
    render({ fit: true });
    renderRole();
    api.probeRole().catch(fail);
  }

  /* For scripting the page (and its tests): the same functions the controls use. */
  window.graphdConsole = {
    api: api, state: S,
    get view() { return view; }, get timeline() { return timeline; }, get clusterView() { return clusterView; },
    showCard: showCard, expand: expand, collapse: collapse, selectNode: selectNode, selectEdge: selectEdge,
    setLabels: setLabels, startClustering: startClustering, followJob: followJob, openCluster: openCluster,
    loadSnapshots: loadSnapshots, setWindow: setWindow, switchTab: switchTab, clear: clearAll,
    startAlerts: startAlerts, stopAlerts: stopAlerts,
    loadCases: loadCases, openCase: openCase, newCase: newCase, addOnScreen: addOnScreen,
    exportPack: exportPack,
    settle: () => { view.settle(); clusterView.settle(); },
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
