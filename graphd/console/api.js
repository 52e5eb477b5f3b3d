/*
 * graphd console: the HTTP/JSON client, the caller's role, formatting helpers.
 *
 * Every call is POST /v1/<Method> with a proto3 JSON body; the bearer token
 * (sessionStorage only) and the case id (X-Case-Id) go with every call.
 * 64-bit integers arrive as JSON strings and default-valued fields are left
 * out of replies, so readers below treat a missing field as 0 / "" / [].
 */
'use strict';
(function () {
  const GD = (window.GD = window.GD || {});

  /* ---- entity types ------------------------------------------------------ */
  const TYPES = ['SELLER', 'ADDRESS', 'PAYMENT_ACCOUNT', 'DEVICE', 'PHONE', 'EMAIL', 'IP'];
  const TYPE_NAME = {
    SELLER: 'seller', ADDRESS: 'address', PAYMENT_ACCOUNT: 'payment account',
    DEVICE: 'device', PHONE: 'phone', EMAIL: 'e-mail', IP: 'IP', UNSPECIFIED: 'unknown',
  };
  const TYPE_SHORT = {
    SELLER: 'SEL', ADDRESS: 'ADR', PAYMENT_ACCOUNT: 'PAY', DEVICE: 'DEV', PHONE: 'TEL',
    EMAIL: 'EML', IP: 'IP', UNSPECIFIED: '?',
  };
  GD.TYPES = TYPES;
  GD.TYPE_NAME = TYPE_NAME;
  GD.TYPE_SHORT = TYPE_SHORT;
  /* 'ENTITY_TYPE_SELLER' -> 'SELLER'; missing -> 'UNSPECIFIED'. */
  GD.shortType = function (t) {
    if (!t) return 'UNSPECIFIED';
    const s = String(t).replace(/^ENTITY_TYPE_/, '');
    return TYPES.indexOf(s) >= 0 ? s : 'UNSPECIFIED';
  };
  GD.fullType = function (s) { return 'ENTITY_TYPE_' + s; };

  /* ---- reading replies ----------------------------------------------------- */
  GD.num = function (v) {
    if (v === undefined || v === null || v === '') return 0;
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
  };
  GD.str = function (v) { return v === undefined || v === null ? '' : String(v); };
  GD.arr = function (v) { return Array.isArray(v) ? v : []; };
  /* An id as a canonical decimal string ("" for 0 / missing). */
  GD.id = function (v) {
    const s = GD.str(v).trim();
    return s === '' || s === '0' ? '' : s;
  };

  GD.fmtDate = function (t) {
    t = GD.num(t);
    if (!t) return '—';
    const d = new Date(t * 1000);
    return isNaN(d.getTime()) ? '—' : d.toISOString().slice(0, 10);
  };
  GD.fmtTime = function (t) {
    t = GD.num(t);
    if (!t) return '—';
    const d = new Date(t * 1000);
    return isNaN(d.getTime()) ? '—' : d.toISOString().slice(0, 16).replace('T', ' ');
  };
  GD.fmtMs = function (t) {
    t = GD.num(t);
    if (!t) return '—';
    const d = new Date(t);
    return isNaN(d.getTime()) ? '—' : d.toISOString().slice(0, 19).replace('T', ' ');
  };
  GD.fmtNum = function (v, digits) {
    const n = GD.num(v);
    if (Number.isInteger(n) && digits === undefined) return String(n);
    return n.toFixed(digits === undefined ? 3 : digits);
  };
  /* Text for a drawing: at most max characters. */
  GD.shorten = function (s, max) {
    s = GD.str(s);
    max = max || 24;
    return s.length > max ? s.slice(0, max - 1) + '…' : s;
  };

  /* ---- DOM helpers (text only: never HTML) --------------------------------- */
  /* el('td', {className: 'x'}, 'text', childNode, ...) */
  GD.el = function (tag, props) {
    const e = document.createElement(tag);
    if (props) {
      for (const k of Object.keys(props)) {
        const v = props[k];
        if (v === undefined || v === null) continue;
        if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k === 'attrs') for (const a of Object.keys(v)) e.setAttribute(a, v[a]);
        else if (k === 'on') for (const ev of Object.keys(v)) e.addEventListener(ev, v[ev]);
        else e[k] = v;
      }
    }
    for (let i = 2; i < arguments.length; i++) {
      const c = arguments[i];
      if (c === undefined || c === null || c === false) continue;
      e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  };
  GD.clear = function (e) {
    while (e.firstChild) e.removeChild(e.firstChild);
    return e;
  };
  GD.$ = function (id) { return document.getElementById(id); };

  /* ---- errors -------------------------------------------------------------- */
  class ApiError extends Error {
    constructor(method, code, status, message, http) {
      super(status + ': ' + message);
      this.method = method;
      this.code = code;
      this.status = status;
      this.detail = message;
      this.http = http;
    }
  }
  GD.ApiError = ApiError;

  const HTTP_STATUS = {
    400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND',
    409: 'ABORTED', 412: 'FAILED_PRECONDITION', 413: 'RESOURCE_EXHAUSTED',
    429: 'RESOURCE_EXHAUSTED', 499: 'CANCELLED', 500: 'INTERNAL', 501: 'UNIMPLEMENTED',
    503: 'UNAVAILABLE', 504: 'DEADLINE_EXCEEDED',
  };

  function errorFrom(method, http, text) {
    let j = null;
    try { j = JSON.parse(text); } catch (e) { j = null; }
    if (j && j.error && typeof j.error === 'object') j = j.error;
    if (j && typeof j === 'object' && (j.status || j.code !== undefined)) {
      return new ApiError(method, GD.num(j.code), GD.str(j.status) || HTTP_STATUS[http] || 'UNKNOWN',
                          GD.str(j.message), http);
    }
    return new ApiError(method, 2, HTTP_STATUS[http] || 'UNKNOWN',
                        'HTTP ' + http + (text ? ': ' + String(text).slice(0, 200) : ''), http);
  }

  /* ---- roles --------------------------------------------------------------- */
  /* partner (a brand's analyst) is outside the order: it ranks with
   * unknown, and reaches the case gates only (roleAtLeast). */
  const ROLE_RANK = { unauthenticated: -1, unknown: 0, partner: 0, reader: 1, investigator: 2, writer: 3, admin: 4 };
  GD.ROLE_RANK = ROLE_RANK;

  /* ---- the client ---------------------------------------------------------- */
  const TOKEN_KEY = 'graphd.console.token';
  const CASE_KEY = 'graphd.console.caseId';

  function storageGet(k) {
    try { return window.sessionStorage.getItem(k) || ''; } catch (e) { return ''; }
  }
  function storageSet(k, v) {
    try {
      if (v) window.sessionStorage.setItem(k, v);
      else window.sessionStorage.removeItem(k);
    } catch (e) { /* storage refused: keep it in memory only */ }
  }

  const api = {
    token: storageGet(TOKEN_KEY),
    caseId: storageGet(CASE_KEY),
    role: 'unknown',
    principal: '',
    inflight: 0,
    _listeners: { error: [], role: [], busy: [] },

    on(kind, fn) { this._listeners[kind].push(fn); },
    _emit(kind, arg) { for (const fn of this._listeners[kind]) fn(arg); },

    setToken(t) {
      this.token = String(t || '').trim();
      storageSet(TOKEN_KEY, this.token);
    },
    setCaseId(c) {
      this.caseId = String(c || '').trim();
      storageSet(CASE_KEY, this.caseId);
    },
    /* r: a role, or a case gate: 'case-read' (reader and up, or a
     * partner), 'case-write' (investigator and up, or a partner). */
    roleAtLeast(r) {
      if (r === 'case-read') return this.role === 'partner' || this.roleAtLeast('reader');
      if (r === 'case-write') return this.role === 'partner' || this.roleAtLeast('investigator');
      return (ROLE_RANK[this.role] || 0) >= ROLE_RANK[r];
    },

    setRole(role, principal, brand) {
      this.role = role;
      this.principal = principal || '';
      this.brand = brand || '';
      this._emit('role', this);
    },

    headers(accept) {
      const h = { 'Content-Type': 'application/json', Accept: accept };
      if (this.token) h.Authorization = 'Bearer ' + this.token;
      if (this.caseId) {
        /* Header values must be Latin-1; the server keeps up to 128 bytes. */
        if (!/^[\x20-\x7e]*$/.test(this.caseId))
          throw new ApiError('', 3, 'INVALID_ARGUMENT',
                             'case id: use printable ASCII characters only', 0);
        h['X-Case-Id'] = this.caseId;
      }
      return h;
    },

    _busy(d) {
      this.inflight += d;
      this._emit('busy', this.inflight);
    },

    /* What a failed call teaches about the caller. */
    _learn(err) {
      if (err.status === 'UNAUTHENTICATED') this.setRole('unauthenticated', '');
      else if (err.status === 'PERMISSION_DENIED') {
        const m = /'([^']*)' has role ([a-z]+)/.exec(err.detail);
        if (m && ROLE_RANK[m[2]] !== undefined && m[2] !== this.role) this.setRole(m[2], m[1]);
      }
    },

    /* Runs fn (one call) with the busy indicator on (off for
     * opts.background: a stream followed for as long as the page wants,
     * such as WatchAlerts); an ApiError it throws teaches the role, is
     * shown unless opts.quiet, and is thrown on. */
    async _run(method, opts, fn) {
      const busy = !opts.background;
      if (busy) this._busy(1);
      try {
        return await fn();
      } catch (e) {
        if (e instanceof ApiError) {
          if (!e.method) e.method = method;
          this._learn(e);
          if (!opts.quiet) this._emit('error', e);
        }
        throw e;
      } finally {
        if (busy) this._busy(-1);
      }
    },

    /* POST /v1/<method>; a network failure or an abort as an ApiError.
     * opts.deadlineMs: the call's deadline (X-Deadline-Ms; else the
     * server's default, which ends a long stream after a minute). */
    async _post(method, body, type, opts) {
      const headers = this.headers(type);
      if (opts.deadlineMs) headers['X-Deadline-Ms'] = String(opts.deadlineMs);
      try {
        return await fetch('/v1/' + method, {
          method: 'POST', headers: headers,
          body: JSON.stringify(body || {}), cache: 'no-store', credentials: 'same-origin',
          signal: opts.signal,
        });
      } catch (e) {
        if (e instanceof ApiError) throw e;
        if (e && e.name === 'AbortError') throw new ApiError(method, 1, 'CANCELLED', 'cancelled', 0);
        throw new ApiError(method, 14, 'UNAVAILABLE', 'the server cannot be reached (' + e.message + ')', 0);
      }
    },

    /* One unary call. opts.quiet: do not report the error on the page. */
    async call(method, body, opts) {
      opts = opts || {};
      return this._run(method, opts, async () => {
        const res = await this._post(method, body, 'application/json', opts);
        const text = await res.text();
        if (!res.ok) throw errorFrom(method, res.status, text);
        try { return text ? JSON.parse(text) : {}; } catch (e) {
          throw new ApiError(method, 13, 'INTERNAL', 'reply is not JSON', res.status);
        }
      });
    },

    /* A server stream (JSON Lines): onMessage(obj) per message, as they come.
     * A last line {"error": {...}} ends it with that error. opts.signal
     * aborts it (CANCELLED); opts.background keeps it off the busy count;
     * opts.deadlineMs as for _post. */
    async stream(method, body, onMessage, opts) {
      opts = opts || {};
      return this._run(method, opts, async () => {
        const res = await this._post(method, body, 'application/x-ndjson', opts);
        if (!res.ok) throw errorFrom(method, res.status, await res.text());
        const handle = (line) => {
          if (!line.trim()) return;
          let obj;
          try { obj = JSON.parse(line); } catch (e) {
            throw new ApiError(method, 13, 'INTERNAL', 'a stream line is not JSON', res.status);
          }
          if (obj && obj.error && typeof obj.error === 'object' && Object.keys(obj).length === 1)
            throw errorFrom(method, res.status, JSON.stringify(obj.error));
          onMessage(obj);
        };
        let n = 0;
        if (res.body && res.body.getReader) {
          const reader = res.body.getReader();
          const dec = new TextDecoder();
          let buf = '';
          for (;;) {
            let r;
            try { r = await reader.read(); } catch (e) {
              if (e && e.name === 'AbortError') throw new ApiError(method, 1, 'CANCELLED', 'cancelled', 0);
              throw new ApiError(method, 14, 'UNAVAILABLE', 'the stream broke (' + e.message + ')', 0);
            }
            if (r.done) break;
            buf += dec.decode(r.value, { stream: true });
            let i;
            while ((i = buf.indexOf('\n')) >= 0) {
              handle(buf.slice(0, i));
              buf = buf.slice(i + 1);
              n++;
            }
          }
          buf += dec.decode();
          if (buf) { handle(buf); n++; }
        } else {
          for (const line of (await res.text()).split('\n')) { handle(line); n++; }
        }
        return n;
      });
    },

    /* The caller's principal and role, as the server sees the token
     * (WhoAmI, any role). */
    async probeRole() {
      try {
        const r = await this.call('WhoAmI', {}, { quiet: true });
        this.setRole(ROLE_RANK[r.role] !== undefined ? r.role : 'unknown', r.principal || '',
                     r.brand || '');
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        this.setRole(e.status === 'UNAUTHENTICATED' ? 'unauthenticated' : 'unknown', '');
        this._emit('error', e);
      }
      return this.role;
    },
  };
  GD.api = api;
})();
