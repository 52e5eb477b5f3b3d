/*
 * graphd console: exports of a drawing as GraphML, CSV (nodes, edges) and
 * PNG (the SVG, its computed styles copied onto a clone as presentation
 * attributes, drawn on a canvas). Files go out as blob: downloads.
 */
'use strict';
(function () {
  const GD = (window.GD = window.GD || {});

  GD.download = function (name, blob) {
    const url = URL.createObjectURL(blob);
    const a = GD.el('a', { href: url, download: name, className: 'offscreen' });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
    GD.lastExport = { name: name, size: blob.size, type: blob.type };
    return GD.lastExport;
  };

  /* Characters XML 1.0 cannot hold. */
  function xmlSafe(s) {
    return GD.str(s).replace(/[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]/g, '\uFFFD');
  }

  const NODE_KEYS = [
    ['type', 'string'], ['key', 'string'], ['labels', 'string'], ['degree', 'long'],
    ['seller_count', 'long'], ['over_hub_cap', 'boolean'], ['skipped', 'string'],
    ['expanded', 'boolean'], ['first_seen', 'long'], ['last_seen', 'long'], ['cluster_id', 'long'],
    ['x', 'double'], ['y', 'double'],
  ];
  const EDGE_KEYS = [
    ['kind', 'string'], ['tie', 'double'], ['first_seen', 'long'], ['last_seen', 'long'],
    ['count', 'long'], ['shared', 'string'],
  ];

  /* rows: {nodes: [{id, type, key, labels[], degree, seller_count, over_hub_cap,
   * skipped, expanded, first_seen, last_seen, cluster_id, x, y}],
   * edges: [{kind, source, target, tie, first_seen, last_seen, count, shared}]} */
  GD.toGraphML = function (rows) {
    const NS = 'http://graphml.graphdrawing.org/xmlns';
    const doc = document.implementation.createDocument(NS, 'graphml', null);
    const root = doc.documentElement;
    const add = (parent, name, attrs, text) => {
      const e = doc.createElementNS(NS, name);
      for (const k of Object.keys(attrs || {})) e.setAttribute(k, xmlSafe(attrs[k]));
      if (text !== undefined) e.appendChild(doc.createTextNode(xmlSafe(text)));
      parent.appendChild(e);
      return e;
    };
    for (const [k, t] of NODE_KEYS) add(root, 'key', { id: 'n_' + k, for: 'node', 'attr.name': k, 'attr.type': t });
    for (const [k, t] of EDGE_KEYS) add(root, 'key', { id: 'e_' + k, for: 'edge', 'attr.name': k, 'attr.type': t });
    const g = add(root, 'graph', { id: 'graphd', edgedefault: 'undirected' });
    for (const n of rows.nodes) {
      const ne = add(g, 'node', { id: 'n' + n.id });
      for (const [k] of NODE_KEYS) {
        let v = n[k];
        if (k === 'labels') v = GD.arr(v).join(';');
        if (v === undefined || v === null || v === '') continue;
        add(ne, 'data', { key: 'n_' + k }, typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : String(v));
      }
    }
    rows.edges.forEach((e, i) => {
      const ee = add(g, 'edge', { id: 'e' + i, source: 'n' + e.source, target: 'n' + e.target });
      for (const [k] of EDGE_KEYS) {
        const v = e[k];
        if (v === undefined || v === null || v === '' || (k !== 'kind' && v === 0)) continue;
        add(ee, 'data', { key: 'e_' + k }, String(v));
      }
    });
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(doc) + '\n';
  };

  /* One CSV cell: quoted when needed; a text cell a spreadsheet would take
   * for a formula gets a leading apostrophe. */
  function cell(v) {
    if (v === undefined || v === null) return '';
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    let s = String(v);
    if (/^[=@\t\r]/.test(s) || (/^[+-]/.test(s) && !/^[+-]?[0-9][0-9 .]*$/.test(s))) s = "'" + s;
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  GD.toCSV = function (header, rows) {
    const out = [header.map(cell).join(',')];
    for (const r of rows) out.push(header.map((h) => cell(r[h])).join(','));
    return out.join('\r\n') + '\r\n';
  };

  const STYLE_PROPS = [
    'fill', 'fill-opacity', 'stroke', 'stroke-width', 'stroke-opacity', 'stroke-dasharray',
    'opacity', 'font-family', 'font-size', 'font-weight', 'text-anchor', 'dominant-baseline',
    'visibility', 'display', 'paint-order', 'font-style',
  ];

  /* The SVG as a PNG blob (white background), at its on-screen size. */
  GD.svgToPNG = function (svgNode, scale) {
    scale = scale || 1;
    const w = svgNode.clientWidth || 800, h = svgNode.clientHeight || 600;
    const clone = svgNode.cloneNode(true);
    const src = svgNode.querySelectorAll('*');
    const dst = clone.querySelectorAll('*');
    for (let i = 0; i < src.length; i++) {
      const cs = window.getComputedStyle(src[i]);
      for (const p of STYLE_PROPS) {
        const v = cs.getPropertyValue(p);
        if (v) dst[i].setAttribute(p, v);
      }
      dst[i].removeAttribute('class');
    }
    clone.removeAttribute('class');
    clone.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
    clone.setAttribute('width', String(w));
    clone.setAttribute('height', String(h));
    clone.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    for (const t of clone.querySelectorAll('title')) t.remove();
    const bg = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    bg.setAttribute('width', '100%');
    bg.setAttribute('height', '100%');
    bg.setAttribute('fill', '#ffffff');
    clone.insertBefore(bg, clone.firstChild);
    const text = new XMLSerializer().serializeToString(clone);
    const url = URL.createObjectURL(new Blob([text], { type: 'image/svg+xml' }));
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        try {
          const c = document.createElement('canvas');
          c.width = Math.round(w * scale);
          c.height = Math.round(h * scale);
          const ctx = c.getContext('2d');
          ctx.setTransform(scale, 0, 0, scale, 0, 0);
          ctx.drawImage(img, 0, 0, w, h);
          URL.revokeObjectURL(url);
          c.toBlob((b) => (b ? resolve(b) : reject(new Error('canvas gave no PNG'))), 'image/png');
        } catch (e) {
          URL.revokeObjectURL(url);
          reject(e);
        }
      };
      img.onerror = () => {
        URL.revokeObjectURL(url);
        reject(new Error('the drawing could not be rendered as an image'));
      };
      img.src = url;
    });
  };
})();
