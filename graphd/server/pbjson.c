/*
 * Protobuf <-> proto3 JSON (pbjson.h).
 *
 * Reading builds the message the way protobuf_c_message_unpack would (every
 * string, byte array, list and sub-message malloc'd, the rest in place at
 * the descriptor's offsets), so protobuf_c_message_free_unpacked frees it,
 * then packs it: handlers see the same bytes a gRPC client sends. Writing
 * unpacks the bytes and walks the message. The JSON side is json-c's tree.
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/pbjson.h"

/* A field's path for messages: "links[3].a.type". */
typedef struct path {
  char s[256];
  size_t n;
} path;

/* Appends ".name" (or "name" at the start), or "[idx]" when name is NULL;
 * returns the length to go back to. */
static size_t path_push(path *p, const char *name, size_t idx) {
  size_t old = p->n;
  int w = name ? snprintf(p->s + p->n, sizeof p->s - p->n, "%s%s", p->n ? "." : "", name)
               : snprintf(p->s + p->n, sizeof p->s - p->n, "[%zu]", idx);
  if (w > 0)
    p->n = p->n + (size_t)w < sizeof p->s ? p->n + (size_t)w : sizeof p->s - 1;
  return old;
}

static void path_pop(path *p, size_t old) {
  p->n = old;
  p->s[old] = 0;
}

/* "seller_count" -> "sellerCount", into buf. */
static const char *json_name(const char *name, char *buf, size_t size) {
  size_t o = 0;
  bool up = false;
  for (const char *c = name; *c && o + 1 < size; c++) {
    if (*c == '_') {
      up = true;
      continue;
    }
    buf[o++] = up && *c >= 'a' && *c <= 'z' ? (char)(*c - 'a' + 'A') : *c;
    up = false;
  }
  buf[o] = 0;
  return buf;
}

/* ---- reading ------------------------------------------------------------- */

typedef struct reader {
  gd_err *err;
  path p;
} reader;

static int bad(reader *rd, const char *fmt, const char *what) {
  return gd_err_set(rd->err, GD_EINVALID, "%s: %s%s", rd->p.n ? rd->p.s : "(request)", fmt,
                    what ? what : "");
}

static int nomem(reader *rd) { return gd_err_set(rd->err, GD_ENOMEM, "out of memory"); }

static bool is_int_text(const char *s, bool sign) {
  if (sign && *s == '-')
    s++;
  if (!*s)
    return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9')
      return false;
  return true;
}

/* A JSON value as a signed 64-bit integer, or as an unsigned one. */
static int read_i64(reader *rd, json_object *v, int64_t *ret) {
  if (json_object_is_type(v, json_type_int)) {
    errno = 0;
    *ret = json_object_get_int64(v);
    if (errno || (*ret == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX))
      return bad(rd, "out of range for a signed 64-bit integer", NULL);
    return GD_OK;
  }
  if (json_object_is_type(v, json_type_double)) {
    double d = json_object_get_double(v);
    if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
      return bad(rd, "not an integer", NULL);
    *ret = (int64_t)d;
    return GD_OK;
  }
  if (json_object_is_type(v, json_type_string)) {
    const char *s = json_object_get_string(v);
    if (!is_int_text(s, true))
      return bad(rd, "not an integer", NULL);
    errno = 0;
    long long x = strtoll(s, NULL, 10);
    if (errno)
      return bad(rd, "out of range for a signed 64-bit integer", NULL);
    *ret = x;
    return GD_OK;
  }
  return bad(rd, "expected an integer (a number or a decimal string)", NULL);
}

static int read_u64(reader *rd, json_object *v, uint64_t *ret) {
  if (json_object_is_type(v, json_type_int)) {
    if (json_object_get_int64(v) < 0)
      return bad(rd, "negative value for an unsigned integer", NULL);
    *ret = json_object_get_uint64(v);
    return GD_OK;
  }
  if (json_object_is_type(v, json_type_double)) {
    double d = json_object_get_double(v);
    if (d != floor(d) || d < 0 || d >= 18446744073709551616.0)
      return bad(rd, d < 0 ? "negative value for an unsigned integer" : "not an integer", NULL);
    *ret = (uint64_t)d;
    return GD_OK;
  }
  if (json_object_is_type(v, json_type_string)) {
    const char *s = json_object_get_string(v);
    if (!is_int_text(s, false))
      return bad(rd, "not an unsigned integer", NULL);
    errno = 0;
    unsigned long long x = strtoull(s, NULL, 10);
    if (errno)
      return bad(rd, "out of range for an unsigned 64-bit integer", NULL);
    *ret = x;
    return GD_OK;
  }
  return bad(rd, "expected an unsigned integer (a number or a decimal string)", NULL);
}

static int read_double(reader *rd, json_object *v, double *ret) {
  if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
    *ret = json_object_get_double(v);
    if (isnan(*ret))
      *ret = NAN; /* json-c's bare -NaN: the one NaN there is in JSON */
    return GD_OK;
  }
  if (json_object_is_type(v, json_type_string)) {
    const char *s = json_object_get_string(v);
    if (strcmp(s, "NaN") == 0)
      *ret = NAN;
    else if (strcmp(s, "Infinity") == 0)
      *ret = INFINITY;
    else if (strcmp(s, "-Infinity") == 0)
      *ret = -INFINITY;
    else {
      /* A decimal number only: strtod also takes "nan", "inf", "-NaN",
       * hexadecimal and leading blanks, which the mapping does not. */
      char *end;
      errno = 0;
      *ret = strtod(s, &end);
      if (!*s || *end || errno || strspn(s, "0123456789+-.eE") != strlen(s) || !isfinite(*ret))
        return bad(rd, "not a number", NULL);
    }
    return GD_OK;
  }
  return bad(rd, "expected a number", NULL);
}

/* Base64 (standard or URL-safe, padding optional) to bytes. */
static int read_bytes(reader *rd, json_object *v, ProtobufCBinaryData *ret) {
  if (!json_object_is_type(v, json_type_string))
    return bad(rd, "expected a base64 string", NULL);
  const char *s = json_object_get_string(v);
  size_t n = (size_t)json_object_get_string_len(v);
  size_t padded = (n + 3) / 4 * 4;
  unsigned char *in = malloc(padded + 1), *out = malloc(padded / 4 * 3 + 1);
  if (!in || !out) {
    free(in);
    free(out);
    return nomem(rd);
  }
  size_t pad = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    in[i] = (unsigned char)c;
  }
  while (n > 0 && in[n - 1] == '=') {
    n--;
    pad++;
  }
  if (pad > 2 || n % 4 == 1) {
    free(in);
    free(out);
    return bad(rd, "not base64", NULL);
  }
  pad = (4 - n % 4) % 4;
  for (size_t i = 0; i < pad; i++)
    in[n + i] = '=';
  int w = n + pad ? EVP_DecodeBlock(out, in, (int)(n + pad)) : 0;
  free(in);
  if (w < 0) {
    free(out);
    return bad(rd, "not base64", NULL);
  }
  ret->len = (size_t)w - pad; /* EVP_DecodeBlock counts the padding's zero bytes */
  ret->data = out;
  return GD_OK;
}

static int read_message(reader *rd, const ProtobufCMessageDescriptor *d, json_object *obj,
                        ProtobufCMessage **ret, int depth);

/* One value of field f into the storage at dst (an element of a list or the
 * field itself). */
static int read_value(reader *rd, const ProtobufCFieldDescriptor *f, json_object *v, void *dst,
                      int depth) {
  int64_t i;
  uint64_t u;
  double x;
  int rc;
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    if ((rc = read_i64(rd, v, &i)))
      return rc;
    if (i < INT32_MIN || i > INT32_MAX)
      return bad(rd, "out of range for a 32-bit integer", NULL);
    *(int32_t *)dst = (int32_t)i;
    return GD_OK;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    if ((rc = read_u64(rd, v, &u)))
      return rc;
    if (u > UINT32_MAX)
      return bad(rd, "out of range for an unsigned 32-bit integer", NULL);
    *(uint32_t *)dst = (uint32_t)u;
    return GD_OK;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    if ((rc = read_i64(rd, v, &i)))
      return rc;
    *(int64_t *)dst = i;
    return GD_OK;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    if ((rc = read_u64(rd, v, &u)))
      return rc;
    *(uint64_t *)dst = u;
    return GD_OK;
  case PROTOBUF_C_TYPE_FLOAT:
    if ((rc = read_double(rd, v, &x)))
      return rc;
    if (isfinite(x) && fabs(x) > 3.4028234663852886e38)
      return bad(rd, "out of range for a float", NULL);
    *(float *)dst = (float)x;
    return GD_OK;
  case PROTOBUF_C_TYPE_DOUBLE:
    if ((rc = read_double(rd, v, &x)))
      return rc;
    *(double *)dst = x;
    return GD_OK;
  case PROTOBUF_C_TYPE_BOOL:
    if (!json_object_is_type(v, json_type_boolean))
      return bad(rd, "expected true or false", NULL);
    *(protobuf_c_boolean *)dst = json_object_get_boolean(v);
    return GD_OK;
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    if (json_object_is_type(v, json_type_string)) {
      const ProtobufCEnumValue *ev =
          protobuf_c_enum_descriptor_get_value_by_name(ed, json_object_get_string(v));
      if (!ev)
        return bad(rd, "unknown value of enum ", ed->name);
      *(int *)dst = ev->value;
      return GD_OK;
    }
    if ((rc = read_i64(rd, v, &i)))
      return rc;
    if (i < INT32_MIN || i > INT32_MAX)
      return bad(rd, "out of range for an enum", NULL);
    *(int *)dst = (int)i;
    return GD_OK;
  }
  case PROTOBUF_C_TYPE_STRING: {
    if (!json_object_is_type(v, json_type_string))
      return bad(rd, "expected a string", NULL);
    size_t n = (size_t)json_object_get_string_len(v);
    const char *s = json_object_get_string(v);
    if (memchr(s, 0, n))
      return bad(rd, "a string with a NUL character", NULL);
    char *c = malloc(n + 1);
    if (!c)
      return nomem(rd);
    memcpy(c, s, n + 1);
    *(char **)dst = c;
    return GD_OK;
  }
  case PROTOBUF_C_TYPE_BYTES:
    return read_bytes(rd, v, dst);
  case PROTOBUF_C_TYPE_MESSAGE:
    return read_message(rd, f->descriptor, v, dst, depth + 1);
  }
  return bad(rd, "unsupported field type", NULL);
}

static size_t value_size(const ProtobufCFieldDescriptor *f) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    return 4;
  case PROTOBUF_C_TYPE_FLOAT:
    return sizeof(float);
  case PROTOBUF_C_TYPE_BOOL:
    return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_ENUM:
    return sizeof(int);
  case PROTOBUF_C_TYPE_STRING:
    return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES:
    return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(ProtobufCMessage *);
  default:
    return 8;
  }
}

static const ProtobufCFieldDescriptor *field_by_key(const ProtobufCMessageDescriptor *d,
                                                    const char *key) {
  char jn[128];
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (strcmp(f->name, key) == 0 || strcmp(json_name(f->name, jn, sizeof jn), key) == 0)
      return f;
  }
  return NULL;
}

static int read_message(reader *rd, const ProtobufCMessageDescriptor *d, json_object *obj,
                        ProtobufCMessage **ret, int depth) {
  *ret = NULL;
  if (depth > GD_PBJSON_MAX_DEPTH)
    return bad(rd, "nested too deeply", NULL);
  if (!json_object_is_type(obj, json_type_object))
    return bad(rd, "expected an object: ", d->name);
  ProtobufCMessage *m = malloc(d->sizeof_message);
  unsigned char *seen = calloc(d->n_fields ? d->n_fields : 1, 1);
  if (!m || !seen) {
    free(m);
    free(seen);
    return nomem(rd);
  }
  d->message_init(m);
  *ret = m; /* freed by the caller (free_unpacked) on error too */
  int rc = GD_OK;
  json_object_object_foreach(obj, key, v) {
    const ProtobufCFieldDescriptor *f = field_by_key(d, key);
    size_t mark = path_push(&rd->p, key, 0);
    if (!f) {
      path_pop(&rd->p, mark);
      rc = gd_err_set(rd->err, GD_EINVALID, "%s%sunknown field \"%s\" in %s", rd->p.s,
                      rd->p.n ? ": " : "", key, d->name);
      break;
    }
    if (seen[f - d->fields]++) {
      rc = bad(rd, "given twice (by its proto and its JSON name)", NULL);
      break;
    }
    if (v == NULL || json_object_is_type(v, json_type_null)) {
      path_pop(&rd->p, mark);
      continue;
    }
    char *base = (char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      if (!json_object_is_type(v, json_type_array)) {
        rc = bad(rd, "expected an array", NULL);
        break;
      }
      size_t n = json_object_array_length(v), es = value_size(f);
      size_t *np = (size_t *)(base + f->quantifier_offset);
      void **arr = (void **)(base + f->offset);
      if (n) {
        if (!(*arr = calloc(n, es))) {
          rc = nomem(rd);
          break;
        }
        for (size_t i = 0; i < n && !rc; i++) {
          size_t im = path_push(&rd->p, NULL, i);
          json_object *e = json_object_array_get_idx(v, i);
          if (!e || json_object_is_type(e, json_type_null))
            rc = bad(rd, "null in a list", NULL);
          else
            rc = read_value(rd, f, e, (char *)*arr + i * es, depth);
          (*np)++; /* counted as soon as it may hold something to free */
          if (!rc)
            path_pop(&rd->p, im);
        }
        if (rc)
          break;
      }
    } else {
      if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *cs = (uint32_t *)(base + f->quantifier_offset);
        if (*cs) {
          rc = bad(rd, "more than one field of a oneof set", NULL);
          break;
        }
        *cs = f->id;
      } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset) {
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
      }
      if ((rc = read_value(rd, f, v, base + f->offset, depth)))
        break;
    }
    path_pop(&rd->p, mark);
  }
  free(seen);
  return rc;
}

int gd_pbjson_to_pb(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                    uint8_t **ret, size_t *ret_len, gd_err *err) {
  *ret = NULL;
  *ret_len = 0;
  reader rd = {.err = err};
  size_t b = 0;
  while (b < len && (json[b] == ' ' || json[b] == '\t' || json[b] == '\r' || json[b] == '\n'))
    b++;
  json_object *obj = NULL;
  if (b < len) {
    json_tokener *tok = json_tokener_new_ex(GD_PBJSON_MAX_DEPTH + 1);
    if (!tok)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    obj = json_tokener_parse_ex(tok, json + b, (int)(len - b));
    enum json_tokener_error je = json_tokener_get_error(tok);
    size_t used = b + json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (je == json_tokener_continue)
      je = json_tokener_error_parse_eof;
    if (je != json_tokener_success) {
      json_object_put(obj);
      return gd_err_set(err, GD_EINVALID, "invalid JSON at byte %zu: %s", used,
                        json_tokener_error_desc(je));
    }
    while (used < len &&
           (json[used] == ' ' || json[used] == '\t' || json[used] == '\r' || json[used] == '\n'))
      used++;
    if (used < len) {
      json_object_put(obj);
      return gd_err_set(err, GD_EINVALID, "invalid JSON: text after the value at byte %zu",
                        used);
    }
  } else if (!(obj = json_object_new_object())) {
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  ProtobufCMessage *m = NULL;
  int rc = read_message(&rd, d, obj, &m, 0);
  json_object_put(obj);
  if (!rc) {
    size_t n = protobuf_c_message_get_packed_size(m);
    if (!(*ret = malloc(n ? n : 1)))
      rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    else
      *ret_len = protobuf_c_message_pack(m, *ret);
  }
  if (m)
    protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

/* ---- writing ------------------------------------------------------------- */

/* The shortest decimal form of d that reads back as d. */
static json_object *new_double(double d, bool is_float) {
  if (isnan(d))
    return json_object_new_string("NaN");
  if (isinf(d))
    return json_object_new_string(d > 0 ? "Infinity" : "-Infinity");
  char buf[40];
  for (int prec = is_float ? 6 : 15; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, d);
    if (is_float ? (float)strtod(buf, NULL) == (float)d : strtod(buf, NULL) == d)
      break;
  }
  return json_object_new_double_s(d, buf);
}

static json_object *write_message(const ProtobufCMessage *m);

static json_object *write_value(const ProtobufCFieldDescriptor *f, const void *p) {
  char buf[32];
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    return json_object_new_int(*(const int32_t *)p);
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    return json_object_new_int64(*(const uint32_t *)p);
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    snprintf(buf, sizeof buf, "%lld", (long long)*(const int64_t *)p);
    return json_object_new_string(buf);
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)p);
    return json_object_new_string(buf);
  case PROTOBUF_C_TYPE_FLOAT:
    return new_double(*(const float *)p, true);
  case PROTOBUF_C_TYPE_DOUBLE:
    return new_double(*(const double *)p, false);
  case PROTOBUF_C_TYPE_BOOL:
    return json_object_new_boolean(*(const protobuf_c_boolean *)p);
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
    return ev ? json_object_new_string(ev->name) : json_object_new_int(*(const int *)p);
  }
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return json_object_new_string(s ? s : "");
  }
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *b = p;
    char *out = malloc(4 * ((b->len + 2) / 3) + 1);
    if (!out)
      return NULL;
    int w = EVP_EncodeBlock((unsigned char *)out, b->data, (int)b->len);
    json_object *o = w >= 0 ? json_object_new_string_len(out, w) : NULL;
    free(out);
    return o;
  }
  case PROTOBUF_C_TYPE_MESSAGE:
    return write_message(*(ProtobufCMessage *const *)p);
  }
  return NULL;
}

/* Whether a singular proto3 field holds its default (and is left out). */
static bool is_default(const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    return *(const uint32_t *)p == 0;
  case PROTOBUF_C_TYPE_FLOAT: {
    float x = *(const float *)p;
    return x == 0 && !signbit(x);
  }
  case PROTOBUF_C_TYPE_DOUBLE: {
    double x = *(const double *)p;
    return x == 0 && !signbit(x);
  }
  case PROTOBUF_C_TYPE_BOOL:
    return !*(const protobuf_c_boolean *)p;
  case PROTOBUF_C_TYPE_ENUM:
    return *(const int *)p == 0;
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return !s || !*s;
  }
  case PROTOBUF_C_TYPE_BYTES:
    return ((const ProtobufCBinaryData *)p)->len == 0;
  case PROTOBUF_C_TYPE_MESSAGE:
    return *(ProtobufCMessage *const *)p == NULL;
  default:
    return *(const uint64_t *)p == 0;
  }
}

static json_object *write_message(const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  json_object *obj = json_object_new_object();
  if (!obj)
    return NULL;
  const char *base = (const char *)m;
  char jn[128];
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const void *p = base + f->offset;
    json_object *v = NULL;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset);
      if (!n)
        continue;
      if (!(v = json_object_new_array_ext((int)n)))
        goto nomem;
      const char *arr = *(char *const *)p;
      size_t es = value_size(f);
      for (size_t k = 0; k < n; k++) {
        json_object *e = write_value(f, arr + k * es);
        if (!e || json_object_array_add(v, e)) {
          json_object_put(e);
          json_object_put(v);
          goto nomem;
        }
      }
    } else {
      if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
          continue;
      } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset) {
        if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
          continue;
      } else if (is_default(f, p)) {
        continue;
      }
      if (!(v = write_value(f, p)))
        goto nomem;
    }
    if (json_object_object_add(obj, json_name(f->name, jn, sizeof jn), v)) {
      json_object_put(v);
      goto nomem;
    }
  }
  return obj;
nomem:
  json_object_put(obj);
  return NULL;
}

int gd_pbjson_from_msg(const ProtobufCMessage *m, char **ret, size_t *ret_len, gd_err *err) {
  *ret = NULL;
  *ret_len = 0;
  json_object *obj = write_message(m);
  if (!obj)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  size_t n = 0;
  const char *s = json_object_to_json_string_length(
      obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
  char *out = s ? malloc(n + 1) : NULL;
  if (out) {
    memcpy(out, s, n + 1);
    *ret = out;
    *ret_len = n;
  }
  json_object_put(obj);
  return out ? GD_OK : gd_err_set(err, GD_ENOMEM, "out of memory");
}

int gd_pbjson_from_pb(const ProtobufCMessageDescriptor *d, const uint8_t *pb, size_t len,
                      char **ret, size_t *ret_len, gd_err *err) {
  *ret = NULL;
  *ret_len = 0;
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, pb);
  if (!m)
    return gd_err_set(err, GD_EINVALID, "not a valid %s", d->name);
  int rc = gd_pbjson_from_msg(m, ret, ret_len, err);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}
