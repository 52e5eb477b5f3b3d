/*
 * graphd console: a force-directed drawing of entities and links in SVG
 * (d3-force, d3-zoom, d3-drag, d3-selection; d3 v5 event API).
 *
 * update(nodes, edges, opts) takes plain descriptions:
 *   node {id, type, key, r, classes, badge (null = none), sub, title}
 *   edge {key, source, target, kind, width, classes, title}
 * and keeps each node's position across updates, so expanding a node adds
 * to the picture instead of redrawing it. All text goes in with .text().
 */
'use strict';
(function () {
  const GD = (window.GD = window.GD || {});

  const DIST = { tie: 150, share: 60, skip: 90, link: 75, path: 75, member: 65 };
  const STRENGTH = { tie: 0.04, share: 0.5, skip: 0.4, link: 0.6, path: 0.6, member: 0.5 };

  class GraphView {
    constructor(svgNode, opts) {
      this.opts = opts || {};
      this.svg = d3.select(svgNode).classed('graph', true);
      this.vp = this.svg.append('g').attr('class', 'viewport');
      this.gE = this.vp.append('g').attr('class', 'edges');
      this.gN = this.vp.append('g').attr('class', 'nodes');
      this.zoom = d3.zoom().scaleExtent([0.05, 6])
        .on('zoom', () => {
          this.vp.attr('transform', d3.event.transform);
          this.svg.classed('far', d3.event.transform.k < 0.8);
        });
      this.svg.call(this.zoom).on('dblclick.zoom', null);
      this.simNodes = new Map();
      this.links = [];
      this.selNode = null;
      this.selEdge = null;
      this.needFit = false;
      this.sim = d3.forceSimulation([])
        .force('link', d3.forceLink([]).id((d) => d.id)
          .distance((l) => DIST[l.data.kind] || 70).strength((l) => STRENGTH[l.data.kind] || 0.5))
        .force('charge', d3.forceManyBody().strength(-320).distanceMax(700))
        .force('collide', d3.forceCollide().radius((d) => d.r + 16))
        .force('x', d3.forceX(0).strength(0.035))
        .force('y', d3.forceY(0).strength(0.05))
        .on('tick', () => this._positions());
      this.sim.stop();
      const self = this;
      this.drag = d3.drag()
        .on('start', function (d) { d._moved = false; })
        .on('drag', function (d) {
          if (!d._moved) {
            d._moved = true;
            self.sim.alphaTarget(0.12).restart();
          }
          d.fx = d3.event.x;
          d.fy = d3.event.y;
        })
        .on('end', function (d) {
          if (d._moved) self.sim.alphaTarget(0);
        });
    }

    /* Nodes and edges to show. opts.anchor(node) -> id of a shown node to
     * place a new node near; opts.fit: fit the view after laying out. */
    update(nodes, edges, opts) {
      opts = opts || {};
      const old = this.simNodes;
      const next = new Map();
      let added = 0;
      for (const n of nodes) {
        let s = old.get(n.id);
        if (!s) {
          const aid = opts.anchor ? opts.anchor(n) : null;
          const a = (aid && (old.get(aid) || next.get(aid))) || null;
          const ang = Math.random() * 2 * Math.PI, rad = a ? 40 + Math.random() * 40 : Math.random() * 120;
          s = { id: n.id, x: (a ? a.x : 0) + rad * Math.cos(ang), y: (a ? a.y : 0) + rad * Math.sin(ang) };
          added++;
        }
        s.data = n;
        s.r = n.r || 9;
        next.set(n.id, s);
      }
      this.simNodes = next;
      this.links = [];
      /* Ties last: drawn on top, where they can be clicked. */
      const order = (e) => (e.kind === 'tie' ? 2 : e.kind === 'share' || e.kind === 'member' ? 0 : 1);
      edges = edges.slice().sort((x, y) => order(x) - order(y));
      for (const e of edges) {
        const a = next.get(e.source), b = next.get(e.target);
        if (a && b && a !== b) this.links.push({ key: e.key, source: a, target: b, data: e });
      }
      this._render();
      this.sim.nodes(Array.from(next.values()));
      this.sim.force('link').links(this.links);
      if (added) {
        this.sim.alpha(old.size ? 0.7 : 1);
        const ticks = Math.min(320, 120 + next.size * 2);
        for (let i = 0; i < ticks; i++) this.sim.tick();
        this.sim.stop();
      }
      this._positions();
      if (added || opts.fit) this.fit();
      this.setSelection(this.selNode, this.selEdge);
    }

    _render() {
      const self = this;
      const es = this.gE.selectAll('g.edge').data(this.links, (d) => d.key);
      es.exit().remove();
      const ee = es.enter().append('g');
      ee.append('line').attr('class', 'hit');
      ee.append('line').attr('class', 'line');
      ee.append('title');
      ee.on('click', function (d) {
        d3.event.stopPropagation();
        if (self.opts.onEdgeClick) self.opts.onEdgeClick(d.key, d3.event);
      });
      const eall = ee.merge(es).order();
      eall.attr('class', (d) => 'edge k-' + d.data.kind + (d.data.classes ? ' ' + d.data.classes : ''))
        .attr('data-key', (d) => d.key)
        .attr('data-source', (d) => d.data.source)
        .attr('data-target', (d) => d.data.target);
      eall.select('line.line').attr('stroke-width', (d) => d.data.width || 1.2);
      eall.select('title').text((d) => d.data.title || '');

      const ns = this.gN.selectAll('g.node').data(Array.from(this.simNodes.values()), (d) => d.id);
      ns.exit().remove();
      const ne = ns.enter().append('g');
      ne.on('click', function (d) {
        d3.event.stopPropagation();
        if (self.opts.onNodeClick) self.opts.onNodeClick(d.id, d3.event);
      }).on('dblclick', function (d) {
        d3.event.stopPropagation();
        if (self.opts.onNodeDblClick) self.opts.onNodeDblClick(d.id, d3.event);
      }).call(this.drag);
      ne.merge(ns).each(function (d) { self._drawNode(d3.select(this), d); });
    }

    _drawNode(g, d) {
      const n = d.data, r = d.r;
      g.selectAll('*').remove();
      g.attr('class', 'node t-' + n.type + (n.classes ? ' ' + n.classes : ''))
        .attr('data-id', d.id)
        .attr('data-type', n.type)
        .attr('data-key', n.key);
      if (n.shape === 'square') {
        g.append('rect').attr('class', 'shape')
          .attr('x', -r).attr('y', -r).attr('width', 2 * r).attr('height', 2 * r);
      } else {
        g.append('circle').attr('class', 'shape').attr('r', r);
      }
      g.append('text').attr('class', 'label').attr('y', r + 12).text(GD.shorten(n.key, 22));
      if (n.sub) g.append('text').attr('class', 'sub').attr('y', r + 23).text(n.sub);
      if (n.badge !== null && n.badge !== undefined) {
        const txt = String(n.badge);
        const w = 8 + 6 * txt.length;
        const b = g.append('g').attr('class', 'badge')
          .attr('transform', 'translate(' + (r * 0.7) + ',' + (-r - 4) + ')');
        b.append('rect').attr('x', 0).attr('y', -7).attr('width', w).attr('height', 14)
          .attr('rx', 7).attr('ry', 7);
        b.append('text').attr('x', w / 2).attr('y', 0).attr('dy', '0.35em').text(txt);
      }
      g.append('title').text(n.title || n.key);
    }

    _positions() {
      this.gN.selectAll('g.node')
        .attr('transform', (d) => 'translate(' + d.x.toFixed(1) + ',' + d.y.toFixed(1) + ')');
      this.gE.selectAll('g.edge').selectAll('line')
        .attr('x1', function () { return this.parentNode.__data__.source.x; })
        .attr('y1', function () { return this.parentNode.__data__.source.y; })
        .attr('x2', function () { return this.parentNode.__data__.target.x; })
        .attr('y2', function () { return this.parentNode.__data__.target.y; });
    }

    setSelection(nodeId, edgeKey) {
      this.selNode = nodeId || null;
      this.selEdge = edgeKey || null;
      this.gN.selectAll('g.node').classed('selected', (d) => d.id === this.selNode);
      this.gE.selectAll('g.edge').classed('selected', (d) => d.key === this.selEdge)
        .classed('incident', (d) => !!this.selNode &&
          (d.source.id === this.selNode || d.target.id === this.selNode));
    }

    /* Marks nodes and edges: fnNode(id) / fnEdge(key) -> bool. */
    setClass(cls, fnNode, fnEdge) {
      if (fnNode) this.gN.selectAll('g.node').classed(cls, (d) => !!fnNode(d.id));
      if (fnEdge) this.gE.selectAll('g.edge').classed(cls, (d) => !!fnEdge(d.key));
    }

    fit() {
      const el = this.svg.node();
      const w = el.clientWidth, h = el.clientHeight;
      const ns = Array.from(this.simNodes.values());
      if (w < 50 || h < 50) { this.needFit = true; return; }
      this.needFit = false;
      if (!ns.length) { this.svg.call(this.zoom.transform, d3.zoomIdentity.translate(w / 2, h / 2)); return; }
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      for (const n of ns) {
        x0 = Math.min(x0, n.x - 60); x1 = Math.max(x1, n.x + 60);
        y0 = Math.min(y0, n.y - 30); y1 = Math.max(y1, n.y + 40);
      }
      const k = Math.max(0.05, Math.min(1.6, Math.min(w / (x1 - x0), h / (y1 - y0))));
      const t = d3.zoomIdentity.translate(w / 2, h / 2).scale(k).translate(-(x0 + x1) / 2, -(y0 + y1) / 2);
      this.svg.call(this.zoom.transform, t);
    }

    zoomBy(f) { this.svg.call(this.zoom.scaleBy, f); }

    /* Stops any running layout (positions stay). */
    settle() {
      this.sim.alphaTarget(0);
      this.sim.stop();
      this._positions();
    }

    /* The shown graph, for exports: [{id, data, x, y}], [{key, data}]. */
    snapshot() {
      return {
        nodes: Array.from(this.simNodes.values()).map((n) => ({ id: n.id, data: n.data, x: n.x, y: n.y })),
        edges: this.links.map((l) => ({ key: l.key, data: l.data })),
      };
    }
  }
  GD.GraphView = GraphView;

  /*
   * The timeline: one lane per entity type, a mark per link observation
   * (first..last seen), and a brush that is the time window.
   *   update(obs, domain [t0, t1], window {since, until})
   *   obs: {id, type, first, last, edgeKey, title}
   */
  class Timeline {
    constructor(svgNode, opts) {
      this.opts = opts || {};
      this.svg = d3.select(svgNode).classed('timeline', true);
      this.gLanes = this.svg.append('g').attr('class', 'lanes');
      this.gObs = this.svg.append('g').attr('class', 'observations');
      /* The brush on top: a drag sets the window, a click picks the mark under it. */
      this.gBrush = this.svg.append('g').attr('class', 'brush');
      this.gAxis = this.svg.append('g').attr('class', 'axis');
      this.obs = [];
      this.domain = [0, 0];
      this.win = { since: 0, until: 0 };
      this.sel = null;
      this.m = { l: 92, r: 14, t: 6, b: 22 };
      this.brush = d3.brushX()
        .on('start', () => {
          if (!d3.event.sourceEvent || this._moving) return;
          const ev = d3.event.sourceEvent;
          this._down = { x: ev.clientX, y: ev.clientY, win: Object.assign({}, this.win) };
        })
        .on('end', () => this._brushed());
      /* The brush covers the marks: its tooltip names the mark under the pointer. */
      this.gBrush.on('mousemove.tip', () => {
        const ev = d3.event;
        const hit = document.elementsFromPoint(ev.clientX, ev.clientY)
          .find((e) => e.classList && e.classList.contains('obs'));
        this.svg.classed('over-obs', !!hit);
        let t = this.gBrush.select('title.tip');
        if (t.empty()) t = this.gBrush.append('title').attr('class', 'tip');
        t.text(hit ? d3.select(hit).datum().title || '' : 'drag to set the time window');
      });
    }

    update(obs, domain, win) {
      this.obs = obs;
      this.domain = domain;
      this.win = win;
      this.render();
    }

    _scale(w) {
      let d0 = this.domain[0], d1 = this.domain[1];
      if (!d0 || !d1) { d1 = Math.floor(Date.now() / 1000); d0 = d1 - 365 * 86400; }
      if (d1 <= d0) { d0 -= 86400; d1 += 86400; }
      return d3.scaleUtc().domain([new Date(d0 * 1000), new Date(d1 * 1000)])
        .range([this.m.l, w - this.m.r]);
    }

    render() {
      const el = this.svg.node();
      const w = el.clientWidth, h = el.clientHeight;
      if (w < 100 || h < 40) return;
      const m = this.m;
      const x = (this.x = this._scale(w));
      const types = GD.TYPES.filter((t) => this.obs.some((o) => o.type === t));
      const y = d3.scaleBand().domain(types).range([m.t, h - m.b]).paddingInner(0.15);
      const lanes = this.gLanes.selectAll('g.lane').data(types, (t) => t);
      lanes.exit().remove();
      const le = lanes.enter().append('g').attr('class', 'lane');
      le.append('rect').attr('class', 'lane-bg');
      le.append('text').attr('class', 'lane-label');
      le.merge(lanes).each(function (t) {
        const g = d3.select(this);
        g.select('rect').attr('x', m.l).attr('y', y(t)).attr('width', Math.max(0, w - m.l - m.r))
          .attr('height', y.bandwidth());
        g.select('text').attr('x', m.l - 6).attr('y', y(t) + y.bandwidth() / 2).attr('dy', '0.35em')
          .text(GD.TYPE_SHORT[t] === 'PAY' ? 'payment' : GD.TYPE_NAME[t]);
      });
      const bh = Math.max(3, Math.min(12, y.bandwidth() * 0.6));
      const os = this.gObs.selectAll('rect.obs').data(this.obs, (o) => o.id);
      os.exit().remove();
      const oe = os.enter().append('rect');
      oe.append('title');
      oe.merge(os)
        .attr('class', (o) => 'obs t-' + o.type)
        .attr('data-edge', (o) => o.edgeKey)
        .attr('x', (o) => x(new Date((o.first || o.last) * 1000)) - 1.5)
        .attr('width', (o) => Math.max(3, x(new Date(o.last * 1000)) - x(new Date((o.first || o.last) * 1000)) + 3))
        .attr('y', (o) => y(o.type) + (y.bandwidth() - bh) / 2)
        .attr('height', bh)
        .select('title').text((o) => o.title || '');
      this.gAxis.attr('transform', 'translate(0,' + (h - m.b) + ')')
        .call(d3.axisBottom(x).ticks(Math.max(2, Math.floor(w / 110))).tickSizeOuter(0));
      this.brush.extent([[m.l, m.t], [w - m.r, h - m.b]]);
      this.gBrush.call(this.brush);
      this.setWindow(this.win);
      this.setSelected(this.sel);
    }

    /* Moves the brush to the window (no callback) and marks what is out. */
    setWindow(win) {
      this.win = win;
      if (!this.x) return;
      const r = this.x.range();
      this._moving = true; /* brush.move inside a gesture would look like the user's */
      try {
        if (!win.since && !win.until) {
          this.gBrush.call(this.brush.move, null);
        } else {
          const a = win.since ? this.x(new Date(win.since * 1000)) : r[0];
          const b = win.until ? this.x(new Date(win.until * 1000)) : r[1];
          this.gBrush.call(this.brush.move, [Math.max(r[0], Math.min(a, r[1])), Math.max(r[0], Math.min(b, r[1]))]);
        }
      } finally {
        this._moving = false;
      }
      this.gObs.selectAll('rect.obs').classed('out', (o) => !GD.overlaps(o.first, o.last, win));
    }

    setSelected(edgeKey) {
      this.sel = edgeKey || null;
      this.gObs.selectAll('rect.obs').classed('sel', (o) => !!this.sel && o.edgeKey === this.sel);
      if (this.sel) this.gObs.selectAll('rect.obs.sel').raise();
    }

    _brushed() {
      if (!d3.event.sourceEvent || this._moving || !this.x) return; /* our own move */
      const s = d3.event.selection;
      const ev = d3.event.sourceEvent, down = this._down;
      this._down = null;
      if (!s && down && Math.abs(ev.clientX - down.x) < 3 && Math.abs(ev.clientY - down.y) < 3) {
        /* A click: the mark under the pointer, if any; the window stays. */
        const hit = document.elementsFromPoint(ev.clientX, ev.clientY)
          .find((e) => e.classList && e.classList.contains('obs') && this.gObs.node().contains(e));
        if (hit) {
          this.setWindow(down.win);
          if (this.opts.onSelect) this.opts.onSelect(d3.select(hit).datum(), ev);
          return;
        }
      }
      if (!this.opts.onWindow) return;
      if (!s) this.opts.onWindow(0, 0);
      else this.opts.onWindow(Math.floor(this.x.invert(s[0]).getTime() / 1000),
                              Math.ceil(this.x.invert(s[1]).getTime() / 1000));
    }
  }
  GD.Timeline = Timeline;

  /* Does [first, last] overlap the window? 0 leaves a side open. */
  GD.overlaps = function (first, last, win) {
    first = first || last;
    last = last || first;
    if (!first) return true;
    if (win.until && first > win.until) return false;
    if (win.since && last < win.since) return false;
    return true;
  };
})();
