/* The job spec parser (format in worker.h) and the exit-code table. */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/entity.h"
#include "core/util.h"
#include "worker/worker.h"

int gd_worker_exit_code(int code) {
  switch (code) {
  case GD_OK:
    return GD_WORKER_EXIT_OK;
  case GD_ECANCELLED:
    return GD_WORKER_EXIT_CANCELLED;
  case GD_EINVALID:
  case GD_ERANGE:
    return GD_WORKER_EXIT_INVALID;
  case GD_ENOTFOUND:
    return GD_WORKER_EXIT_NOTFOUND;
  case GD_ERESOURCE:
  case GD_ENOMEM:
  case GD_EMAPFULL:
  case GD_ETXNFULL:
    return GD_WORKER_EXIT_RESOURCE;
  case GD_EPRECONDITION:
    return GD_WORKER_EXIT_PRECONDITION;
  default:
    return GD_WORKER_EXIT_FAILED;
  }
}

int gd_worker_exit_status(int exit_code) {
  switch (exit_code) {
  case GD_WORKER_EXIT_OK:
    return GD_OK;
  case GD_WORKER_EXIT_INVALID:
    return GD_EINVALID;
  case GD_WORKER_EXIT_NOTFOUND:
    return GD_ENOTFOUND;
  case GD_WORKER_EXIT_RESOURCE:
    return GD_ERESOURCE;
  case GD_WORKER_EXIT_CANCELLED:
    return GD_ECANCELLED;
  case GD_WORKER_EXIT_PRECONDITION:
  case 127: /* a shell's "could not exec" (valgrind's posix_spawn reports it so) */
    return GD_EPRECONDITION;
  default:
    return GD_EINTERNAL;
  }
}

static const char *const algo_names[GD_COMM__COUNT] = {
    [GD_COMM_LEIDEN_CPM] = "leiden_cpm",
    [GD_COMM_LEIDEN_MODULARITY] = "leiden_modularity",
    [GD_COMM_LOUVAIN] = "louvain",
    [GD_COMM_LABEL_PROPAGATION] = "label_propagation",
    [GD_COMM_COMPONENTS] = "components",
    [GD_COMM_INFOMAP] = "infomap",
};

static const char *const warm_names[] = {[GD_WARM_AUTO] = "auto", [GD_WARM_ON] = "on",
                                         [GD_WARM_OFF] = "off"};

const char *gd_worker_warm_name(gd_worker_warm w) {
  return (unsigned)w <= GD_WARM_OFF ? warm_names[w] : "unknown";
}

const char *gd_worker_algo_name(gd_comm_algo a) {
  return a >= 0 && a < GD_COMM__COUNT ? algo_names[a] : "unknown";
}

void gd_worker_spec_free(gd_worker_spec *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->n_flagged; i++)
    free(s->flagged[i]);
  free(s->flagged);
  free(s->name);
  free(s->import_path);
  free(s->engine);
  memset(s, 0, sizeof *s);
}

/* ---- values ------------------------------------------------------------ */

typedef struct pctx {
  int line;
  const char *key; /* NUL-terminated copy */
  gd_err *err;
} pctx;

static int bad(pctx *c, const char *val, const char *why) {
  return gd_err_set(c->err, GD_EINVALID, "spec line %d: %s: '%.64s' %s", c->line, c->key, val,
                    why);
}

static int parse_double(pctx *c, const char *v, double *ret) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (!*v || *end || errno == ERANGE || !isfinite(d))
    return bad(c, v, "is not a finite number");
  *ret = d;
  return GD_OK;
}

static int parse_i64(pctx *c, const char *v, int64_t *ret) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (!*v || *end || errno == ERANGE)
    return bad(c, v, "is not a 64-bit integer");
  *ret = x;
  return GD_OK;
}

static int parse_u64(pctx *c, const char *v, uint64_t *ret) {
  char *end;
  errno = 0;
  if (*v == '-' || *v == '+')
    return bad(c, v, "is not an unsigned integer");
  unsigned long long x = strtoull(v, &end, 10);
  if (!*v || *end || errno == ERANGE)
    return bad(c, v, "is not an unsigned 64-bit integer");
  *ret = x;
  return GD_OK;
}

static bool printable_utf8(const char *p, size_t n) {
  if (!gd_utf8_valid(p, n))
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
      return false;
  return true;
}

static int parse_labels(pctx *c, const char *v, gd_worker_spec *s) {
  const char *p = v;
  while (*p) {
    const char *comma = strchr(p, ',');
    const char *end = comma ? comma : p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && (*a == ' ' || *a == '\t'))
      a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
      b--;
    size_t n = (size_t)(b - a);
    if (n == 0)
      return bad(c, v, "has an empty label");
    if (n > GD_LABEL_MAX)
      return gd_err_set(c->err, GD_EINVALID, "spec line %d: %s: a label is over %d bytes",
                        c->line, c->key, GD_LABEL_MAX);
    if (!printable_utf8(a, n))
      return gd_err_set(c->err, GD_EINVALID,
                        "spec line %d: %s: a label is not printable UTF-8", c->line, c->key);
    bool dup = false;
    for (size_t i = 0; i < s->n_flagged && !dup; i++)
      dup = strlen(s->flagged[i]) == n && memcmp(s->flagged[i], a, n) == 0;
    if (!dup) {
      if (s->n_flagged == GD_WORKER_FLAGGED_MAX)
        return gd_err_set(c->err, GD_EINVALID, "spec line %d: %s: more than %d labels", c->line,
                          c->key, GD_WORKER_FLAGGED_MAX);
      char **nl = realloc(s->flagged, (s->n_flagged + 1) * sizeof *nl);
      if (!nl)
        return gd_err_set(c->err, GD_ENOMEM, "spec: out of memory");
      s->flagged = nl;
      if (!(s->flagged[s->n_flagged] = strndup(a, n)))
        return gd_err_set(c->err, GD_ENOMEM, "spec: out of memory");
      s->n_flagged++;
    }
    p = comma ? comma + 1 : end;
    if (comma && !*p)
      return bad(c, v, "ends with a comma");
  }
  return GD_OK;
}

/* ---- keys ------------------------------------------------------------- */

enum {
  K_ALGORITHM, K_RESOLUTION, K_BETA, K_ITERATIONS, K_THRESHOLD, K_SEED, K_MIN_TIE,
  K_SINCE, K_UNTIL, K_FLAGGED, K_NAME, K_PREVIOUS, K_EVIDENCE, K_WARM, K_IMPORT, K_ENGINE,
  K_HUB_CAP,
  K_WEIGHT = K_HUB_CAP + GD_EV_TYPES,
  K__COUNT = K_WEIGHT + GD_EV_TYPES
};

static const char *const key_names[K_HUB_CAP] = {
    "algorithm", "resolution", "beta",  "iterations", "threshold", "seed",
    "min_tie_weight", "since", "until", "flagged_labels", "name", "previous", "evidence",
    "warm_start", "import", "engine",
};

/* Key index of name, or -1. */
static int key_index(const char *name) {
  for (int i = 0; i < K_HUB_CAP; i++)
    if (strcmp(name, key_names[i]) == 0)
      return i;
  const char *dot = strchr(name, '.');
  if (!dot)
    return -1;
  int t = gd_type_parse(dot + 1, strlen(dot + 1));
  if (!GD_TYPE_VALID(t) || t >= GD_EV_TYPES)
    return -1;
  size_t n = (size_t)(dot - name);
  if (n == 7 && memcmp(name, "hub_cap", 7) == 0)
    return t == GD_TYPE_SELLER ? -2 : K_HUB_CAP + t;
  if (n == 6 && memcmp(name, "weight", 6) == 0)
    return K_WEIGHT + t;
  return -1;
}

typedef struct raw_spec {
  bool set[K__COUNT];
  double resolution, beta, threshold;
  int64_t iterations;
} raw_spec;

static int apply(pctx *c, int k, const char *v, gd_worker_spec *s, raw_spec *rs) {
  int rc = GD_OK;
  switch (k) {
  case K_ALGORITHM: {
    char name[32];
    size_t n = strlen(v);
    if (n == 0 || n >= sizeof name)
      return bad(c, v, "is not an algorithm (leiden_cpm, leiden_modularity, louvain, "
                       "label_propagation, components, infomap)");
    for (size_t i = 0; i <= n; i++)
      name[i] = v[i] == '_' ? '-' : v[i];
    if (gd_comm_algo_from_name(name, &s->comm.algo) != 0)
      return bad(c, v, "is not an algorithm (leiden_cpm, leiden_modularity, louvain, "
                       "label_propagation, components, infomap)");
    return GD_OK;
  }
  case K_RESOLUTION:
    if ((rc = parse_double(c, v, &rs->resolution)))
      return rc;
    return rs->resolution < 0 ? bad(c, v, "must be >= 0") : GD_OK;
  case K_BETA:
    if ((rc = parse_double(c, v, &rs->beta)))
      return rc;
    return rs->beta <= 0 ? bad(c, v, "must be > 0") : GD_OK;
  case K_ITERATIONS:
    if ((rc = parse_i64(c, v, &rs->iterations)))
      return rc;
    return rs->iterations == 0 || rs->iterations < -1
               ? bad(c, v, "must be > 0, or -1 for until stable")
               : GD_OK;
  case K_THRESHOLD:
    if ((rc = parse_double(c, v, &rs->threshold)))
      return rc;
    return rs->threshold < 0 ? bad(c, v, "must be >= 0") : GD_OK;
  case K_SEED:
    return parse_u64(c, v, &s->seed);
  case K_MIN_TIE:
    if ((rc = parse_double(c, v, &s->min_tie_weight)))
      return rc;
    return s->min_tie_weight < 0 ? bad(c, v, "must be >= 0") : GD_OK;
  case K_SINCE:
  case K_UNTIL: {
    int64_t *t = k == K_SINCE ? &s->since : &s->until;
    if ((rc = parse_i64(c, v, t)))
      return rc;
    return *t < 0 ? bad(c, v, "must be >= 0 (unix seconds; 0 = open)") : GD_OK;
  }
  case K_FLAGGED:
    for (size_t i = 0; i < s->n_flagged; i++)
      free(s->flagged[i]);
    s->n_flagged = 0;
    return parse_labels(c, v, s);
  case K_NAME:
  case K_ENGINE: {
    const char *key = k == K_NAME ? "name" : "engine";
    size_t n = strlen(v);
    if (n > GD_WORKER_NAME_MAX)
      return gd_err_set(c->err, GD_EINVALID, "spec line %d: %s: over %d bytes", c->line, key,
                        GD_WORKER_NAME_MAX);
    if (!printable_utf8(v, n))
      return gd_err_set(c->err, GD_EINVALID, "spec line %d: %s: not printable UTF-8", c->line,
                        key);
    char *nm = strdup(v);
    if (!nm)
      return gd_err_set(c->err, GD_ENOMEM, "spec: out of memory");
    char **dst = k == K_NAME ? &s->name : &s->engine;
    free(*dst);
    *dst = nm;
    return GD_OK;
  }
  case K_IMPORT: {
    if (v[0] != '/')
      return bad(c, v, "must be an absolute path");
    char *p = strdup(v);
    if (!p)
      return gd_err_set(c->err, GD_ENOMEM, "spec: out of memory");
    free(s->import_path);
    s->import_path = p;
    return GD_OK;
  }
  case K_EVIDENCE:
    return gd_evidence_rule_parse(v, &s->ev.rule) == 0
               ? GD_OK
               : bad(c, v, "is not an evidence rule (corroborated, rarity)");
  case K_WARM:
    for (int w = GD_WARM_AUTO; w <= GD_WARM_OFF; w++)
      if (strcmp(v, warm_names[w]) == 0) {
        s->warm_start = (gd_worker_warm)w;
        return GD_OK;
      }
    return bad(c, v, "is not auto, on or off");
  case K_PREVIOUS:
    if ((rc = parse_i64(c, v, &s->previous)))
      return rc;
    return s->previous < -1 ? bad(c, v, "must be a snapshot id, 0 (latest) or -1 (none)")
                            : GD_OK;
  default:
    if (k >= K_HUB_CAP && k < K_WEIGHT)
      return parse_u64(c, v, &s->ev.hub_cap[k - K_HUB_CAP]);
    if ((rc = parse_double(c, v, &s->ev.type_weight[k - K_WEIGHT])))
      return rc;
    return s->ev.type_weight[k - K_WEIGHT] < 0 ? bad(c, v, "must be >= 0") : GD_OK;
  }
}

static int parse_lines(const char *text, size_t len, gd_worker_spec *s, raw_spec *rs,
                       gd_err *err) {
  const char *p = text, *end = text + len;
  char buf[GD_WORKER_SPEC_MAX + 1];
  int line = 0;

  if (len > GD_WORKER_SPEC_MAX)
    return gd_err_set(err, GD_EINVALID, "spec: over %d bytes", GD_WORKER_SPEC_MAX);
  if (memchr(text, '\0', len))
    return gd_err_set(err, GD_EINVALID, "spec: contains a NUL byte");
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    line++;
    /* Trim: the line, then key and value around '='. */
    const char *a = p, *b = le;
    p = nl ? nl + 1 : end;
    while (a < b && (*a == ' ' || *a == '\t'))
      a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
      b--;
    if (a == b || *a == '#')
      continue;
    const char *eq = memchr(a, '=', (size_t)(b - a));
    if (!eq)
      return gd_err_set(err, GD_EINVALID, "spec line %d: expected key=value", line);
    const char *ke = eq, *vs = eq + 1;
    while (ke > a && (ke[-1] == ' ' || ke[-1] == '\t'))
      ke--;
    while (vs < b && (*vs == ' ' || *vs == '\t'))
      vs++;
    size_t kn = (size_t)(ke - a), vn = (size_t)(b - vs);
    memcpy(buf, a, kn);
    buf[kn] = '\0';
    char *key = buf, *val = buf + kn + 1;
    memcpy(val, vs, vn);
    val[vn] = '\0';
    if (kn == 0)
      return gd_err_set(err, GD_EINVALID, "spec line %d: missing key before '='", line);
    int k = key_index(key);
    if (k == -2)
      return gd_err_set(err, GD_EINVALID,
                        "spec line %d: hub_cap.seller: hub caps apply to shared entity types "
                        "(address, payment_account, device, phone, email, ip)",
                        line);
    if (k < 0)
      return gd_err_set(err, GD_EINVALID, "spec line %d: unknown key '%.64s'", line, key);
    if (rs->set[k])
      return gd_err_set(err, GD_EINVALID, "spec line %d: key '%s' given twice", line, key);
    rs->set[k] = true;
    pctx c = {line, key, err};
    int rc = apply(&c, k, val, s, rs);
    if (rc)
      return rc;
  }
  return GD_OK;
}

int gd_worker_spec_parse(const char *text, size_t len, gd_worker_spec *ret, gd_err *err) {
  gd_worker_spec s;
  raw_spec rs;
  memset(&s, 0, sizeof s);
  memset(&rs, 0, sizeof rs);
  s.comm.algo = GD_COMM_LEIDEN_CPM;
  s.seed = 1;
  s.previous = 0;
  gd_evidence_defaults(&s.ev);

  int rc = parse_lines(text, len, &s, &rs, err);
  if (rc)
    goto fail;
  if (s.since && s.until && s.since > s.until) {
    rc = gd_err_set(err, GD_EINVALID, "spec: since (%lld) is after until (%lld)",
                    (long long)s.since, (long long)s.until);
    goto fail;
  }
  if (!rs.set[K_FLAGGED]) {
    s.flagged = malloc(sizeof *s.flagged);
    if (!s.flagged || !(s.flagged[0] = strdup("counterfeit"))) {
      rc = gd_err_set(err, GD_ENOMEM, "spec: out of memory");
      goto fail;
    }
    s.n_flagged = 1;
  }
  if (!s.name && !(s.name = strdup(""))) {
    rc = gd_err_set(err, GD_ENOMEM, "spec: out of memory");
    goto fail;
  }

  bool any_weight = false;
  for (int t = GD_TYPE_MIN; t < GD_EV_TYPES; t++)
    any_weight |= s.ev.type_weight[t] > 0;
  if (!any_weight) {
    rc = gd_err_set(err, GD_EINVALID, "spec: weight.*: every type weight is 0, so nothing is "
                                      "evidence");
    goto fail;
  }

  /* Algorithm defaults first, then the evidence rule's resolution for
   * CPM (evidence.h: it follows from the weights), then the spec. */
  gd_comm_algo algo = s.comm.algo;
  gd_comm_defaults(algo, &s.comm);
  s.comm.algo = algo;
  if (algo == GD_COMM_LEIDEN_CPM)
    s.comm.resolution = gd_evidence_resolution(&s.ev);
  if (rs.set[K_RESOLUTION])
    s.comm.resolution = rs.resolution;
  if (rs.set[K_BETA])
    s.comm.beta = rs.beta;
  if (rs.set[K_THRESHOLD])
    s.comm.threshold = rs.threshold;
  if (rs.set[K_ITERATIONS]) {
    if (algo == GD_COMM_INFOMAP && rs.iterations < 1) {
      rc = gd_err_set(err, GD_EINVALID, "spec: iterations: infomap needs a number of trials > 0");
      goto fail;
    }
    s.comm.iterations = rs.iterations;
  }
  s.comm.initial = NULL;
  *ret = s;
  return GD_OK;
fail:
  gd_worker_spec_free(&s);
  return rc;
}

/* ---- the spec as the manifest records it -------------------------------- */

static void jadd(json_object *o, const char *k, json_object *v) { json_object_object_add(o, k, v); }
static json_object *jnum(double d) { return isfinite(d) ? json_object_new_double(d) : NULL; }
static json_object *jint(int64_t v) { return json_object_new_int64(v); }

json_object *gd_worker_spec_json(const gd_worker_spec *s) {
  json_object *o = json_object_new_object(), *fl = json_object_new_array();
  json_object *caps = json_object_new_object(), *w = json_object_new_object();
  jadd(o, "algorithm", json_object_new_string(gd_worker_algo_name(s->comm.algo)));
  jadd(o, "evidence", json_object_new_string(gd_evidence_rule_name(s->ev.rule)));
  jadd(o, "resolution", jnum(s->comm.resolution));
  jadd(o, "beta", jnum(s->comm.beta));
  jadd(o, "iterations", jint(s->comm.iterations));
  jadd(o, "threshold", jnum(s->comm.threshold));
  jadd(o, "seed", json_object_new_uint64(s->seed));
  jadd(o, "min_tie_weight", jnum(s->min_tie_weight));
  jadd(o, "since", jint(s->since));
  jadd(o, "until", jint(s->until));
  for (size_t i = 0; i < s->n_flagged; i++)
    json_object_array_add(fl, json_object_new_string(s->flagged[i]));
  jadd(o, "flagged_labels", fl);
  for (int t = GD_TYPE_MIN; t <= GD_TYPE_MAX && t < GD_EV_TYPES; t++) {
    if (t != GD_TYPE_SELLER)
      jadd(caps, gd_type_name(t), json_object_new_uint64(s->ev.hub_cap[t]));
    jadd(w, gd_type_name(t), jnum(s->ev.type_weight[t]));
  }
  jadd(o, "hub_caps", caps);
  jadd(o, "type_weights", w);
  jadd(o, "name", json_object_new_string(s->name));
  jadd(o, "previous", jint(s->previous));
  jadd(o, "warm_start", json_object_new_string(gd_worker_warm_name(s->warm_start)));
  return o;
}

/* o as the manifest's text has it: serialised and parsed back. */
static json_object *reparsed(json_object *o) {
  const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
  return t ? json_tokener_parse(t) : NULL;
}

bool gd_worker_spec_same_for_warm(json_object *a, json_object *b) {
  static const char *const ignored[] = {"name", "seed", "previous", "warm_start"};
  if (!a || !b || !json_object_is_type(a, json_type_object) ||
      !json_object_is_type(b, json_type_object))
    return false;
  json_object *x = reparsed(a), *y = reparsed(b);
  bool same = false;
  if (x && y) {
    for (size_t i = 0; i < sizeof ignored / sizeof *ignored; i++) {
      json_object_object_del(x, ignored[i]);
      json_object_object_del(y, ignored[i]);
    }
    same = json_object_equal(x, y) != 0;
  }
  json_object_put(x);
  json_object_put(y);
  return same;
}
