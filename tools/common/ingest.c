/*
 * Streaming parser for graphd ingest files (see ingest.h for the formats).
 *
 * How it works: gc_ingest_parser_feed() cuts the input into physical lines
 * (a partial last line waits in p->line for the next feed). Each line goes
 * to process_line(), which skips blank lines, decides the format on the
 * first non-blank one, and then either parses the line as one JSON object
 * or runs the CSV state machine over it. The CSV machine keeps its state
 * across lines so that a quoted field may contain line breaks; it copies
 * field bytes (unquoted) into p->fields, each field NUL-terminated, and
 * when a record is complete the first one becomes the header and later
 * ones are turned into gc_ingest_record views over p->fields.
 *
 * Everything a record points to lives in the parser (or in the json-c
 * object of the line) until the callback returns; nothing is allocated per
 * record once the buffers have grown.
 */
#include "ingest.h"

#include "core/entity.h"

#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static bool is_blank_char(char c) { return c == ' ' || c == '\t'; }

static bool is_space_char(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
         c == '\f';
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Trims spaces and tabs in place: writes a NUL after the last non-blank
 * character and returns a pointer to the first one. */
static char *trim_inplace(char *s) {
  while (is_blank_char(*s))
    s++;
  size_t n = strlen(s);
  while (n > 0 && is_blank_char(s[n - 1]))
    n--;
  s[n] = '\0';
  return s;
}

/* Writes 'value' (at most 48 bytes of it, non-printable bytes as \xNN) into
 * out, quoted with single quotes. Returns out. */
static const char *quote_value(char *out, size_t size, const char *s,
                               size_t len) {
  size_t o = 0;
  out[o++] = '\'';
  for (size_t i = 0; i < len && o + 8 < size; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == 48) {
      memcpy(out + o, "...", 3);
      o += 3;
      break;
    }
    if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
      o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o++] = '\'';
  out[o] = '\0';
  return out;
}

bool gc_utf8_valid(const char *str, size_t len) { return gd_utf8_valid(str, len); }

/* True when s contains a control character: C0, DEL, or C1 (U+0080..U+009F,
 * encoded C2 80..C2 9F). s must be valid UTF-8. */
static bool has_control_char(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < 0x20 || s[i] == 0x7f)
      return true;
    if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
      return true;
  }
  return false;
}

/* ------------------------------------------------------------------ */
/* Entity types, keys, times                                            */

/* Types and keys are the server's own definitions (core/entity.h): the
 * parser must accept and reject exactly what graphd does. */

int gc_type_parse(const char *s, gd_etype *ret_type) {
  int t = s ? gd_type_parse(s, strlen(s)) : 0;
  if (t == 0)
    return -1;
  *ret_type = (gd_etype)t;
  return 0;
}


size_t gc_key_normalize(gd_etype type, const char *key, size_t len, char *buf) {
  size_t n = 0;
  if (gd_key_normalize((int)type, (gd_str){key, len}, buf, &n, NULL) != GD_OK)
    n = 0;
  buf[n] = '\0';
  return n;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (y, m 1..12, d). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;                             /* [0, 399] */
  int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;     /* [0, 146096] */
  return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m) {
  static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
    return 29;
  return dm[m - 1];
}

/* Reads exactly n digits at *sp; returns the value or -1. */
static int read_digits(const char **sp, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!is_digit((*sp)[i]))
      return -1;
    v = v * 10 + ((*sp)[i] - '0');
  }
  *sp += n;
  return v;
}

int gc_time_parse(const char *s, int64_t *ret_time) {
  if (!s || !*s)
    return -1;
  size_t nd = 0;
  while (is_digit(s[nd]))
    nd++;
  if (s[nd] == '\0') {
    /* Unix seconds. GC_TIME_MAX has 12 digits. */
    if (nd > 12)
      return -1;
    int64_t v = 0;
    for (size_t i = 0; i < nd; i++)
      v = v * 10 + (s[i] - '0');
    if (v > GC_TIME_MAX)
      return -1;
    *ret_time = v;
    return 0;
  }
  const char *p = s;
  int y = read_digits(&p, 4);
  if (y < 0 || *p++ != '-')
    return -1;
  int mo = read_digits(&p, 2);
  if (mo < 1 || mo > 12 || *p++ != '-')
    return -1;
  int d = read_digits(&p, 2);
  if (d < 1 || d > days_in_month(y, mo))
    return -1;
  int h = 0, mi = 0, sec = 0;
  int64_t offset = 0;
  if (*p == 'T' || *p == 't' || *p == ' ') {
    p++;
    h = read_digits(&p, 2);
    if (h < 0 || h > 23 || *p++ != ':')
      return -1;
    mi = read_digits(&p, 2);
    if (mi < 0 || mi > 59)
      return -1;
    if (*p == ':') {
      p++;
      sec = read_digits(&p, 2);
      if (sec < 0 || sec > 60)
        return -1;
      if (*p == '.' || *p == ',') {
        p++;
        if (!is_digit(*p))
          return -1;
        while (is_digit(*p))
          p++;
      }
    }
    if (*p == 'Z' || *p == 'z') {
      p++;
    } else if (*p == '+' || *p == '-') {
      int sign = *p++ == '-' ? -1 : 1;
      int oh = read_digits(&p, 2), om = 0;
      if (oh < 0 || oh > 23)
        return -1;
      if (*p == ':')
        p++;
      if (is_digit(*p)) {
        om = read_digits(&p, 2);
        if (om < 0 || om > 59)
          return -1;
      }
      offset = sign * (int64_t)(oh * 3600 + om * 60);
    }
  }
  if (*p != '\0')
    return -1;
  int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
              offset;
  if (t < 0 || t > GC_TIME_MAX)
    return -1;
  *ret_time = t;
  return 0;
}

char *gc_time_format(int64_t t, char *buf, size_t size) {
  if (t == 0) {
    snprintf(buf, size, "-");
    return buf;
  }
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(buf, size, "%lld", (long long)t);
  return buf;
}

gc_ingest_format gc_ingest_format_for_path(const char *path) {
  if (!path)
    return GC_INGEST_AUTO;
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (!dot || (slash && dot < slash))
    return GC_INGEST_AUTO;
  if (strcasecmp(dot, ".csv") == 0)
    return GC_INGEST_CSV;
  if (strcasecmp(dot, ".jsonl") == 0 || strcasecmp(dot, ".ndjson") == 0 ||
      strcasecmp(dot, ".json") == 0)
    return GC_INGEST_JSONL;
  return GC_INGEST_AUTO;
}

int gc_ingest_format_parse(const char *s, gc_ingest_format *ret_format) {
  if (!s)
    return -1;
  if (strcasecmp(s, "csv") == 0)
    *ret_format = GC_INGEST_CSV;
  else if (strcasecmp(s, "jsonl") == 0 || strcasecmp(s, "ndjson") == 0 ||
           strcasecmp(s, "json") == 0)
    *ret_format = GC_INGEST_JSONL;
  else if (strcasecmp(s, "auto") == 0)
    *ret_format = GC_INGEST_AUTO;
  else
    return -1;
  return 0;
}

/* ------------------------------------------------------------------ */
/* The parser                                                           */

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

static int buf_reserve(buf *b, size_t extra) {
  if (b->cap - b->len >= extra)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra)
    cap *= 2;
  char *np = realloc(b->p, cap);
  if (!np)
    return -1;
  b->p = np;
  b->cap = cap;
  return 0;
}

static int buf_append(buf *b, const char *s, size_t n) {
  if (buf_reserve(b, n + 1))
    return -1;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

/* Column roles. */
enum {
  R_A_TYPE,
  R_A_KEY,
  R_B_TYPE,
  R_B_KEY,
  R_SEEN,
  R_TYPE,
  R_KEY,
  R_LABELS,
  R_ATTR,
  R__COUNT
};

static const char *const role_names[R__COUNT] = {
    "a_type", "a_key", "b_type", "b_key", "seen",
    "type",   "key",   "labels", "(attribute)"};

enum { CSV_UNKNOWN, CSV_LINKS, CSV_ENTITIES };
enum { CS_FIELD_START, CS_UNQUOTED, CS_QUOTED, CS_QUOTE_SEEN };

struct gc_ingest_parser {
  char *name;
  gc_ingest_format format;
  gc_ingest_record_cb cb;
  void *userdata;
  int rc;
  bool finished;
  unsigned long lineno;  /* physical lines completed */
  unsigned long records; /* records delivered */
  buf line;              /* partial physical line */

  /* CSV header */
  int csv_kind;
  size_t ncols;
  char **cols; /* trimmed header names */
  int *roles;
  long role_col[R__COUNT]; /* column of each role but R_ATTR, or -1 */

  /* CSV record being assembled */
  bool in_record;
  unsigned long rec_line;
  int cstate;
  buf fields;    /* field bytes, each NUL-terminated */
  size_t fstart; /* offset where the current field starts */
  size_t *foff;  /* offsets of completed fields */
  size_t nf, fcap;

  /* Per-record scratch */
  const char **labels;
  size_t labels_cap;
  gc_ingest_attr *attrs;
  size_t attrs_cap;
  char norm_a[GD_KEY_MAX + 1];
  char norm_b[GD_KEY_MAX + 1];

  json_tokener *tok;

  /* Last error */
  unsigned long err_line;
  char err_field[192];
  char err_text[512];
  char err_full[1024];
};

static int perr(gc_ingest_parser *p, unsigned long line, const char *field,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int perr(gc_ingest_parser *p, unsigned long line, const char *field,
                const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err_text, sizeof p->err_text, fmt, ap);
  va_end(ap);
  snprintf(p->err_field, sizeof p->err_field, "%s", field ? field : "");
  p->err_line = line;
  if (p->err_field[0])
    snprintf(p->err_full, sizeof p->err_full, "%s:%lu: %s: %s", p->name, line,
             p->err_field, p->err_text);
  else
    snprintf(p->err_full, sizeof p->err_full, "%s:%lu: %s", p->name, line,
             p->err_text);
  p->rc = GC_INGEST_EDATA;
  return p->rc;
}

static int nomem(gc_ingest_parser *p) {
  snprintf(p->err_text, sizeof p->err_text, "out of memory");
  snprintf(p->err_full, sizeof p->err_full, "%s: out of memory", p->name);
  p->err_field[0] = '\0';
  p->err_line = 0;
  p->rc = GC_INGEST_ENOMEM;
  return p->rc;
}

gc_ingest_parser *gc_ingest_parser_new(const char *name,
                                       gc_ingest_format format,
                                       gc_ingest_record_cb cb, void *userdata) {
  if (!cb)
    return NULL;
  gc_ingest_parser *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->name = strdup((!name || strcmp(name, "-") == 0) ? "<stdin>" : name);
  p->tok = json_tokener_new();
  if (!p->name || !p->tok) {
    gc_ingest_parser_free(p);
    return NULL;
  }
  json_tokener_set_flags(p->tok,
                         JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
  p->format = format;
  p->cb = cb;
  p->userdata = userdata;
  for (int r = 0; r < R__COUNT; r++)
    p->role_col[r] = -1;
  return p;
}

void gc_ingest_parser_free(gc_ingest_parser *p) {
  if (!p)
    return;
  free(p->name);
  for (size_t i = 0; i < p->ncols; i++)
    free(p->cols[i]);
  free(p->cols);
  free(p->roles);
  free(p->line.p);
  free(p->fields.p);
  free(p->foff);
  free(p->labels);
  free(p->attrs);
  if (p->tok)
    json_tokener_free(p->tok);
  free(p);
}

const char *gc_ingest_parser_error(const gc_ingest_parser *p) {
  return p->err_full;
}
unsigned long gc_ingest_parser_error_line(const gc_ingest_parser *p) {
  return p->err_line;
}
const char *gc_ingest_parser_error_field(const gc_ingest_parser *p) {
  return p->err_field;
}
const char *gc_ingest_parser_error_text(const gc_ingest_parser *p) {
  return p->err_text;
}
gc_ingest_format gc_ingest_parser_format(const gc_ingest_parser *p) {
  return p->format;
}
unsigned long gc_ingest_parser_lines(const gc_ingest_parser *p) {
  return p->lineno;
}
unsigned long gc_ingest_parser_records(const gc_ingest_parser *p) {
  return p->records;
}

static int deliver(gc_ingest_parser *p, const gc_ingest_record *r) {
  p->records++;
  if (p->cb(p->userdata, r) != 0)
    p->rc = GC_INGEST_ESTOPPED;
  return p->rc;
}

static int push_label(gc_ingest_parser *p, size_t *n, const char *s) {
  if (*n == p->labels_cap) {
    size_t cap = p->labels_cap ? p->labels_cap * 2 : 16;
    const char **nl = realloc(p->labels, cap * sizeof *nl);
    if (!nl)
      return nomem(p);
    p->labels = nl;
    p->labels_cap = cap;
  }
  p->labels[(*n)++] = s;
  return 0;
}

static int push_attr(gc_ingest_parser *p, size_t *n, const char *name,
                     const char *value) {
  if (*n == p->attrs_cap) {
    size_t cap = p->attrs_cap ? p->attrs_cap * 2 : 16;
    gc_ingest_attr *na = realloc(p->attrs, cap * sizeof *na);
    if (!na)
      return nomem(p);
    p->attrs = na;
    p->attrs_cap = cap;
  }
  p->attrs[*n].name = name;
  p->attrs[*n].value = value;
  (*n)++;
  return 0;
}

/* ---- value checks shared by CSV and JSON (field names the column) ---- */

static int check_type(gc_ingest_parser *p, unsigned long line,
                      const char *field, const char *s, gd_etype *ret) {
  char q[160];
  if (!*s)
    return perr(p, line, field, "missing entity type");
  if (gc_type_parse(s, ret) != 0)
    return perr(p, line, field,
                "unknown entity type %s (expected seller, address, "
                "payment_account, device, phone, email or ip)",
                quote_value(q, sizeof q, s, strlen(s)));
  return 0;
}

/* Checks a key; writes its normalised form to norm (GD_KEY_MAX + 1). */
static int check_key(gc_ingest_parser *p, unsigned long line,
                     const char *field, gd_etype type, const char *s,
                     size_t len, char *norm) {
  if (len > GD_KEY_MAX)
    return perr(p, line, field, "key longer than %d bytes (%zu)", GD_KEY_MAX,
                len);
  if (!gc_utf8_valid(s, len))
    return perr(p, line, field, "key is not valid UTF-8");
  if (gc_key_normalize(type, s, len, norm) == 0) {
    char q[160];
    if (type == GD_TYPE_PHONE && len > 0)
      return perr(p, line, field, "phone key %s has no digits",
                  quote_value(q, sizeof q, s, len));
    return perr(p, line, field, "empty key");
  }
  return 0;
}

static int check_label(gc_ingest_parser *p, unsigned long line,
                       const char *field, const char *s, size_t len) {
  if (len == 0)
    return perr(p, line, field, "empty label");
  if (len > GD_LABEL_MAX)
    return perr(p, line, field, "label longer than %d bytes (%zu)",
                GD_LABEL_MAX, len);
  if (!gc_utf8_valid(s, len))
    return perr(p, line, field, "label is not valid UTF-8");
  if (has_control_char(s, len))
    return perr(p, line, field, "label contains a control character");
  return 0;
}

static int check_attr_value(gc_ingest_parser *p, unsigned long line,
                            const char *field, const char *s, size_t len) {
  if (len > GD_ATTR_VALUE_MAX)
    return perr(p, line, field, "attribute value longer than %d bytes (%zu)",
                GD_ATTR_VALUE_MAX, len);
  if (!gc_utf8_valid(s, len))
    return perr(p, line, field, "attribute value is not valid UTF-8");
  return 0;
}

static int check_attr_name(gc_ingest_parser *p, unsigned long line,
                           const char *field, const char *s, size_t len) {
  if (len == 0)
    return perr(p, line, field, "empty attribute name");
  if (len > GD_ATTR_NAME_MAX)
    return perr(p, line, field, "attribute name longer than %d bytes (%zu)",
                GD_ATTR_NAME_MAX, len);
  if (!gc_utf8_valid(s, len))
    return perr(p, line, field, "attribute name is not valid UTF-8");
  if (has_control_char(s, len))
    return perr(p, line, field, "attribute name contains a control character");
  return 0;
}

static int check_time_string(gc_ingest_parser *p, unsigned long line,
                             const char *field, const char *s, int64_t *ret) {
  char q[160];
  if (gc_time_parse(s, ret) != 0)
    return perr(p, line, field,
                "bad time %s (expected unix seconds or an ISO-8601 date such "
                "as 2025-03-01T12:00:00Z)",
                quote_value(q, sizeof q, s, strlen(s)));
  return 0;
}

static int check_self_link(gc_ingest_parser *p, const gc_ingest_record *r) {
  if (r->link.a_type == r->link.b_type &&
      strcmp(p->norm_a, p->norm_b) == 0) {
    char q[160];
    return perr(p, r->line, NULL, "link joins %s %s to itself",
                gd_type_name(r->link.a_type),
                quote_value(q, sizeof q, r->link.a_key, strlen(r->link.a_key)));
  }
  return 0;
}

/* ---- CSV ---- */

/* Name of column i for messages: the header name, or "column N". */
static const char *col_name(gc_ingest_parser *p, size_t i, char *tmp,
                            size_t size) {
  if (p->csv_kind != CSV_UNKNOWN && i < p->ncols && p->cols[i][0])
    return p->cols[i];
  snprintf(tmp, size, "column %zu", i + 1);
  return tmp;
}

static char *field_at(gc_ingest_parser *p, size_t i) {
  return p->fields.p + p->foff[i];
}

static int csv_header(gc_ingest_parser *p) {
  unsigned long line = p->rec_line;
  int kind = CSV_UNKNOWN;
  for (size_t i = 0; i < p->nf; i++) {
    char *s = trim_inplace(field_at(p, i));
    if (!strcasecmp(s, "a_type") || !strcasecmp(s, "a_key") ||
        !strcasecmp(s, "b_type") || !strcasecmp(s, "b_key"))
      kind = CSV_LINKS;
    else if (kind == CSV_UNKNOWN &&
             (!strcasecmp(s, "type") || !strcasecmp(s, "key")))
      kind = CSV_ENTITIES;
  }
  if (kind == CSV_UNKNOWN)
    return perr(p, line, NULL,
                "not a CSV header: expected the columns "
                "a_type,a_key,b_type,b_key[,seen] (links) or "
                "type,key[,labels][,seen][,attribute...] (entities)");

  p->cols = calloc(p->nf, sizeof *p->cols);
  p->roles = calloc(p->nf, sizeof *p->roles);
  if (!p->cols || !p->roles)
    return nomem(p);
  p->ncols = p->nf;
  for (size_t i = 0; i < p->nf; i++) {
    p->cols[i] = strdup(trim_inplace(field_at(p, i)));
    if (!p->cols[i])
      return nomem(p);
  }

  char tmp[32];
  p->csv_kind = kind; /* col_name() now uses the header names */
  int first = kind == CSV_LINKS ? R_A_TYPE : R_SEEN;
  int last = kind == CSV_LINKS ? R_SEEN : R_LABELS;
  for (size_t i = 0; i < p->ncols; i++) {
    const char *s = p->cols[i];
    int role = -1;
    for (int r = first; r <= last; r++)
      if (strcasecmp(s, role_names[r]) == 0)
        role = r;
    if (role < 0) {
      if (kind == CSV_LINKS)
        return perr(p, line, col_name(p, i, tmp, sizeof tmp),
                    "unknown column in a links header (expected a_type, "
                    "a_key, b_type, b_key and optionally seen)");
      if (check_attr_name(p, line, col_name(p, i, tmp, sizeof tmp), s,
                          strlen(s)))
        return p->rc;
      for (size_t j = 0; j < i; j++)
        if (p->roles[j] == R_ATTR && strcmp(p->cols[j], s) == 0)
          return perr(p, line, s, "duplicate column");
      p->roles[i] = R_ATTR;
      continue;
    }
    if (p->role_col[role] >= 0)
      return perr(p, line, s, "duplicate column");
    p->role_col[role] = (long)i;
    p->roles[i] = role;
  }
  static const int link_req[] = {R_A_TYPE, R_A_KEY, R_B_TYPE, R_B_KEY};
  static const int ent_req[] = {R_TYPE, R_KEY};
  const int *req = kind == CSV_LINKS ? link_req : ent_req;
  size_t nreq = kind == CSV_LINKS ? 4 : 2;
  for (size_t k = 0; k < nreq; k++)
    if (p->role_col[req[k]] < 0)
      return perr(p, line, role_names[req[k]], "missing column in the header");
  return 0;
}

static int csv_seen(gc_ingest_parser *p, int64_t *ret) {
  *ret = 0;
  if (p->role_col[R_SEEN] < 0)
    return 0;
  size_t c = (size_t)p->role_col[R_SEEN];
  char *s = trim_inplace(field_at(p, c));
  if (!*s)
    return 0;
  return check_time_string(p, p->rec_line, p->cols[c], s, ret);
}

static int csv_link(gc_ingest_parser *p) {
  gc_ingest_record r;
  memset(&r, 0, sizeof r);
  r.kind = GC_INGEST_LINK;
  r.line = p->rec_line;
  size_t cat = (size_t)p->role_col[R_A_TYPE], cak = (size_t)p->role_col[R_A_KEY];
  size_t cbt = (size_t)p->role_col[R_B_TYPE], cbk = (size_t)p->role_col[R_B_KEY];
  if (check_type(p, r.line, p->cols[cat], trim_inplace(field_at(p, cat)),
                 &r.link.a_type))
    return p->rc;
  r.link.a_key = field_at(p, cak);
  if (check_key(p, r.line, p->cols[cak], r.link.a_type, r.link.a_key,
                strlen(r.link.a_key), p->norm_a))
    return p->rc;
  if (check_type(p, r.line, p->cols[cbt], trim_inplace(field_at(p, cbt)),
                 &r.link.b_type))
    return p->rc;
  r.link.b_key = field_at(p, cbk);
  if (check_key(p, r.line, p->cols[cbk], r.link.b_type, r.link.b_key,
                strlen(r.link.b_key), p->norm_b))
    return p->rc;
  if (csv_seen(p, &r.link.seen))
    return p->rc;
  if (check_self_link(p, &r))
    return p->rc;
  return deliver(p, &r);
}

static int csv_entity(gc_ingest_parser *p) {
  gc_ingest_record r;
  memset(&r, 0, sizeof r);
  r.kind = GC_INGEST_ENTITY;
  r.line = p->rec_line;
  size_t ct = (size_t)p->role_col[R_TYPE], ck = (size_t)p->role_col[R_KEY];
  if (check_type(p, r.line, p->cols[ct], trim_inplace(field_at(p, ct)),
                 &r.entity.type))
    return p->rc;
  r.entity.key = field_at(p, ck);
  if (check_key(p, r.line, p->cols[ck], r.entity.type, r.entity.key,
                strlen(r.entity.key), p->norm_a))
    return p->rc;
  size_t nl = 0, na = 0;
  if (p->role_col[R_LABELS] >= 0) {
    size_t cl = (size_t)p->role_col[R_LABELS];
    char *s = field_at(p, cl);
    while (s) {
      char *semi = strchr(s, ';');
      if (semi)
        *semi = '\0';
      char *l = trim_inplace(s);
      if (*l) {
        if (check_label(p, r.line, p->cols[cl], l, strlen(l)) ||
            push_label(p, &nl, l))
          return p->rc;
      }
      s = semi ? semi + 1 : NULL;
    }
  }
  for (size_t i = 0; i < p->ncols; i++) {
    if (p->roles[i] != R_ATTR)
      continue;
    const char *v = field_at(p, i);
    if (!*v)
      continue;
    if (check_attr_value(p, r.line, p->cols[i], v, strlen(v)) ||
        push_attr(p, &na, p->cols[i], v))
      return p->rc;
  }
  if (csv_seen(p, &r.entity.seen))
    return p->rc;
  r.entity.labels = p->labels;
  r.entity.n_labels = nl;
  r.entity.attrs = p->attrs;
  r.entity.n_attrs = na;
  return deliver(p, &r);
}

static int csv_record(gc_ingest_parser *p) {
  if (p->csv_kind == CSV_UNKNOWN)
    return csv_header(p);
  if (p->nf != p->ncols)
    return perr(p, p->rec_line, NULL,
                "expected %zu fields as in the header, found %zu", p->ncols,
                p->nf);
  return p->csv_kind == CSV_LINKS ? csv_link(p) : csv_entity(p);
}

static int end_field(gc_ingest_parser *p) {
  if (buf_reserve(&p->fields, 1))
    return nomem(p);
  p->fields.p[p->fields.len++] = '\0';
  if (p->nf == p->fcap) {
    size_t cap = p->fcap ? p->fcap * 2 : 16;
    size_t *nf = realloc(p->foff, cap * sizeof *nf);
    if (!nf)
      return nomem(p);
    p->foff = nf;
    p->fcap = cap;
  }
  p->foff[p->nf++] = p->fstart;
  p->fstart = p->fields.len;
  return 0;
}

/* Runs the CSV state machine over one physical line (without its line
 * break). Delivers the record when it ends on this line. */
static int csv_line(gc_ingest_parser *p, const char *s, size_t n) {
  /* Each input byte yields at most one output byte (a comma yields the
   * field's NUL), plus the last field's NUL and a possible '\n': so the
   * writes below need no further checks. */
  if (buf_reserve(&p->fields, n + 2))
    return nomem(p);
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    switch (p->cstate) {
    case CS_FIELD_START:
      if (c == '"') {
        p->cstate = CS_QUOTED;
      } else if (c == ',') {
        if (end_field(p))
          return p->rc;
      } else {
        p->fields.p[p->fields.len++] = c;
        p->cstate = CS_UNQUOTED;
      }
      break;
    case CS_UNQUOTED:
      if (c == ',') {
        if (end_field(p))
          return p->rc;
        p->cstate = CS_FIELD_START;
      } else {
        p->fields.p[p->fields.len++] = c;
      }
      break;
    case CS_QUOTED:
      if (c == '"')
        p->cstate = CS_QUOTE_SEEN;
      else
        p->fields.p[p->fields.len++] = c;
      break;
    case CS_QUOTE_SEEN:
      if (c == '"') {
        p->fields.p[p->fields.len++] = '"';
        p->cstate = CS_QUOTED;
      } else if (c == ',') {
        if (end_field(p))
          return p->rc;
        p->cstate = CS_FIELD_START;
      } else {
        char tmp[32];
        return perr(p, p->rec_line, col_name(p, p->nf, tmp, sizeof tmp),
                    "text after the closing quote of a quoted field (a quote "
                    "inside a quoted field must be doubled: \"\")");
      }
      break;
    }
  }
  if (p->cstate == CS_QUOTED) {
    /* A line break inside a quoted field: keep it, go on next line. */
    if (buf_reserve(&p->fields, 1))
      return nomem(p);
    p->fields.p[p->fields.len++] = '\n';
    return 0;
  }
  if (end_field(p))
    return p->rc;
  p->in_record = false;
  return csv_record(p);
}

/* ---- JSON Lines ---- */

static bool is_link_member(const char *k) {
  return !strcmp(k, "a_type") || !strcmp(k, "a_key") ||
         !strcmp(k, "b_type") || !strcmp(k, "b_key");
}

static bool is_entity_member(const char *k) {
  return !strcmp(k, "type") || !strcmp(k, "key") || !strcmp(k, "labels") ||
         !strcmp(k, "attributes");
}

/* Gets a string member (or an integer when allow_int) as a view. */
static int json_string(gc_ingest_parser *p, unsigned long line,
                       const char *field, json_object *v, bool allow_int,
                       const char **ret, size_t *ret_len) {
  enum json_type t = json_object_get_type(v);
  if (t == json_type_string || (allow_int && t == json_type_int)) {
    const char *s = json_object_get_string(v);
    size_t len = t == json_type_string ? (size_t)json_object_get_string_len(v)
                                       : strlen(s);
    if (strlen(s) != len)
      return perr(p, line, field, "contains a NUL character");
    *ret = s;
    *ret_len = len;
    return 0;
  }
  return perr(p, line, field, "expected a string%s, found %s",
              allow_int ? " or an integer" : "",
              t == json_type_null ? "null" : json_type_to_name(t));
}

static int json_type_member(gc_ingest_parser *p, unsigned long line,
                            const char *field, json_object *v,
                            gd_etype *ret) {
  const char *s = "";
  size_t len = 0;
  if (json_string(p, line, field, v, false, &s, &len))
    return p->rc;
  char tmp[64];
  if (len >= sizeof tmp) {
    char q[160];
    return perr(p, line, field, "unknown entity type %s",
                quote_value(q, sizeof q, s, len));
  }
  memcpy(tmp, s, len + 1);
  return check_type(p, line, field, trim_inplace(tmp), ret);
}

static int json_seen(gc_ingest_parser *p, unsigned long line, json_object *v,
                     int64_t *ret) {
  *ret = 0;
  switch (json_object_get_type(v)) {
  case json_type_null:
    return 0;
  case json_type_int: {
    int64_t t = json_object_get_int64(v); /* clamps to INT64_MIN/MAX */
    if (t < 0 || t > GC_TIME_MAX)
      return perr(p, line, "seen", "time %s out of range",
                  json_object_get_string(v));
    *ret = t;
    return 0;
  }
  case json_type_double: {
    double d = json_object_get_double(v);
    if (!(d >= 0 && d <= (double)GC_TIME_MAX) || d != (double)(int64_t)d)
      return perr(p, line, "seen",
                  "expected whole unix seconds or a time string, found %s",
                  json_object_get_string(v));
    *ret = (int64_t)d;
    return 0;
  }
  case json_type_string: {
    const char *s;
    size_t len;
    if (json_string(p, line, "seen", v, false, &s, &len))
      return p->rc;
    char tmp[64];
    if (len >= sizeof tmp) {
      char q[160];
      return perr(p, line, "seen", "bad time %s", quote_value(q, sizeof q, s, len));
    }
    memcpy(tmp, s, len + 1);
    char *t = trim_inplace(tmp);
    if (!*t)
      return 0;
    return check_time_string(p, line, "seen", t, ret);
  }
  default:
    return perr(p, line, "seen",
                "expected unix seconds or a time string, found %s",
                json_type_to_name(json_object_get_type(v)));
  }
}

static int json_link(gc_ingest_parser *p, unsigned long line, json_object *o) {
  gc_ingest_record r;
  memset(&r, 0, sizeof r);
  r.kind = GC_INGEST_LINK;
  r.line = line;
  json_object *v[4];
  static const char *const req[4] = {"a_type", "a_key", "b_type", "b_key"};
  for (int i = 0; i < 4; i++)
    if (!json_object_object_get_ex(o, req[i], &v[i]) || !v[i])
      return perr(p, line, req[i], "missing");
  size_t alen, blen;
  if (json_type_member(p, line, "a_type", v[0], &r.link.a_type) ||
      json_string(p, line, "a_key", v[1], true, &r.link.a_key, &alen) ||
      check_key(p, line, "a_key", r.link.a_type, r.link.a_key, alen,
                p->norm_a) ||
      json_type_member(p, line, "b_type", v[2], &r.link.b_type) ||
      json_string(p, line, "b_key", v[3], true, &r.link.b_key, &blen) ||
      check_key(p, line, "b_key", r.link.b_type, r.link.b_key, blen,
                p->norm_b))
    return p->rc;
  json_object *sv;
  if (json_object_object_get_ex(o, "seen", &sv) &&
      json_seen(p, line, sv, &r.link.seen))
    return p->rc;
  if (check_self_link(p, &r))
    return p->rc;
  return deliver(p, &r);
}

static int json_entity(gc_ingest_parser *p, unsigned long line,
                       json_object *o) {
  gc_ingest_record r;
  memset(&r, 0, sizeof r);
  r.kind = GC_INGEST_ENTITY;
  r.line = line;
  json_object *tv, *kv, *v;
  if (!json_object_object_get_ex(o, "type", &tv) || !tv)
    return perr(p, line, "type", "missing");
  if (!json_object_object_get_ex(o, "key", &kv) || !kv)
    return perr(p, line, "key", "missing");
  size_t klen;
  if (json_type_member(p, line, "type", tv, &r.entity.type) ||
      json_string(p, line, "key", kv, true, &r.entity.key, &klen) ||
      check_key(p, line, "key", r.entity.type, r.entity.key, klen, p->norm_a))
    return p->rc;

  char field[192];
  size_t nl = 0, na = 0;
  if (json_object_object_get_ex(o, "labels", &v) && v) {
    if (!json_object_is_type(v, json_type_array))
      return perr(p, line, "labels", "expected an array of strings, found %s",
                  json_type_to_name(json_object_get_type(v)));
    size_t n = json_object_array_length(v);
    for (size_t i = 0; i < n; i++) {
      const char *s;
      size_t len;
      snprintf(field, sizeof field, "labels[%zu]", i);
      if (json_string(p, line, field, json_object_array_get_idx(v, i), false,
                      &s, &len) ||
          check_label(p, line, field, s, len) || push_label(p, &nl, s))
        return p->rc;
    }
  }
  if (json_object_object_get_ex(o, "attributes", &v) && v) {
    if (!json_object_is_type(v, json_type_object))
      return perr(p, line, "attributes",
                  "expected an object of string values, found %s",
                  json_type_to_name(json_object_get_type(v)));
    struct json_object_iterator it = json_object_iter_begin(v);
    struct json_object_iterator end = json_object_iter_end(v);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
      const char *name = json_object_iter_peek_name(&it);
      json_object *av = json_object_iter_peek_value(&it);
      snprintf(field, sizeof field, "attributes.%s", name);
      if (check_attr_name(p, line, field, name, strlen(name)))
        return p->rc;
      enum json_type t = json_object_get_type(av);
      if (t == json_type_null)
        continue;
      if (t != json_type_string && t != json_type_int &&
          t != json_type_double && t != json_type_boolean)
        return perr(p, line, field, "expected a string, found %s",
                    json_type_to_name(t));
      const char *s = json_object_get_string(av);
      size_t len = t == json_type_string
                       ? (size_t)json_object_get_string_len(av)
                       : strlen(s);
      if (strlen(s) != len)
        return perr(p, line, field, "contains a NUL character");
      if (check_attr_value(p, line, field, s, len) ||
          push_attr(p, &na, name, s))
        return p->rc;
    }
  }
  if (json_object_object_get_ex(o, "seen", &v) &&
      json_seen(p, line, v, &r.entity.seen))
    return p->rc;
  r.entity.labels = p->labels;
  r.entity.n_labels = nl;
  r.entity.attrs = p->attrs;
  r.entity.n_attrs = na;
  return deliver(p, &r);
}

static int json_line(gc_ingest_parser *p, const char *s, size_t n) {
  unsigned long line = p->lineno;
  while (n > 0 && is_space_char(s[n - 1]))
    n--;
  size_t lead = 0;
  while (lead < n && is_space_char(s[lead]))
    lead++;
  if (lead >= n || s[lead] != '{')
    return perr(p, line, NULL, "expected a JSON object ('{' ...)");
  json_tokener_reset(p->tok);
  json_object *o = json_tokener_parse_ex(p->tok, s + lead, (int)(n - lead));
  if (!o) {
    enum json_tokener_error e = json_tokener_get_error(p->tok);
    if (e == json_tokener_continue)
      return perr(p, line, NULL,
                  "bad JSON: the object does not end on this line");
    return perr(p, line, NULL, "bad JSON: %s (at byte %zu)",
                json_tokener_error_desc(e),
                lead + json_tokener_get_parse_end(p->tok) + 1);
  }
  if (lead + json_tokener_get_parse_end(p->tok) < n) {
    json_object_put(o);
    return perr(p, line, NULL, "bad JSON: text after the object (at byte %zu)",
                lead + json_tokener_get_parse_end(p->tok) + 1);
  }

  bool link = false, entity = false;
  const char *unknown = NULL;
  struct json_object_iterator it = json_object_iter_begin(o);
  struct json_object_iterator end = json_object_iter_end(o);
  for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
    const char *k = json_object_iter_peek_name(&it);
    if (is_link_member(k))
      link = true;
    else if (is_entity_member(k))
      entity = true;
    else if (strcmp(k, "seen") != 0 && !unknown)
      unknown = k;
  }
  int rc;
  if (link && entity)
    rc = perr(p, line, NULL,
              "mixes link members (a_type, a_key, b_type, b_key) with entity "
              "members (type, key, labels, attributes)");
  else if (!link && !entity)
    rc = perr(p, line, NULL,
              "neither a link (a_type, a_key, b_type, b_key) nor an entity "
              "(type, key)");
  else if (unknown)
    rc = perr(p, line, unknown, "unknown member (expected %s)",
              link ? "a_type, a_key, b_type, b_key, seen"
                   : "type, key, labels, attributes, seen");
  else
    rc = link ? json_link(p, line, o) : json_entity(p, line, o);
  json_object_put(o);
  return rc;
}

/* ---- lines ---- */

static bool is_blank_line(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!is_blank_char(s[i]))
      return false;
  return true;
}

static int process_line(gc_ingest_parser *p, const char *s, size_t n) {
  p->lineno++;
  if (memchr(s, '\0', n))
    return perr(p, p->lineno, NULL, "NUL byte in the input (not a text file?)");
  if (n > 0 && s[n - 1] == '\r')
    n--;
  if (p->lineno == 1 && n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
    s += 3;
    n -= 3;
  }
  if (p->in_record)
    return csv_line(p, s, n);
  if (is_blank_line(s, n))
    return 0;
  if (p->format == GC_INGEST_AUTO) {
    size_t i = 0;
    while (i < n && is_blank_char(s[i]))
      i++;
    p->format = s[i] == '{' ? GC_INGEST_JSONL : GC_INGEST_CSV;
  }
  if (p->format == GC_INGEST_JSONL)
    return json_line(p, s, n);
  p->in_record = true;
  p->rec_line = p->lineno;
  p->cstate = CS_FIELD_START;
  p->nf = 0;
  p->fields.len = 0;
  p->fstart = 0;
  return csv_line(p, s, n);
}

int gc_ingest_parser_feed(gc_ingest_parser *p, const void *data, size_t len) {
  if (p->rc)
    return p->rc;
  const char *s = data;
  while (len > 0) {
    const char *nl = memchr(s, '\n', len);
    size_t n = nl ? (size_t)(nl - s) : len;
    if (p->line.len + n > GC_INGEST_MAX_LINE)
      return perr(p, p->lineno + 1, NULL, "line longer than %u bytes",
                  GC_INGEST_MAX_LINE);
    if (!nl) {
      if (buf_append(&p->line, s, n))
        return nomem(p);
      return 0;
    }
    int rc;
    if (p->line.len) {
      if (buf_append(&p->line, s, n))
        return nomem(p);
      rc = process_line(p, p->line.p, p->line.len);
      p->line.len = 0;
    } else {
      rc = process_line(p, s, n);
    }
    if (rc)
      return rc;
    s += n + 1;
    len -= n + 1;
  }
  return 0;
}

int gc_ingest_parser_finish(gc_ingest_parser *p) {
  if (p->rc || p->finished)
    return p->rc;
  p->finished = true;
  if (p->line.len) {
    int rc = process_line(p, p->line.p, p->line.len);
    p->line.len = 0;
    if (rc)
      return rc;
  }
  if (p->in_record) {
    char tmp[32];
    return perr(p, p->rec_line, col_name(p, p->nf, tmp, sizeof tmp),
                "unterminated quoted field");
  }
  return 0;
}
