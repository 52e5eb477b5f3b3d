#include "core/limits.h"
#include "rpc/convert.h"

#include <pthread.h>

#include "evidence.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- validation -------------------------------------------------------- */

int gd_pb_check_str(const char *s, size_t max, bool required, gd_err *err, const char *field) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 && required)
    return gd_err_set(err, GD_EINVALID, "%s: empty", field);
  if (n > max)
    return gd_err_set(err, GD_EINVALID, "%s: %zu bytes is over the limit of %zu bytes", field, n,
                      max);
  if (!gd_utf8_valid(s, n))
    return gd_err_set(err, GD_EINVALID, "%s: not valid UTF-8", field);
  return GD_OK;
}

int gd_pb_check_label(const char *s, gd_err *err, const char *field) {
  int rc = gd_pb_check_str(s, GD_LABEL_MAX, true, err, field);
  if (rc)
    return rc;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return gd_err_set(err, GD_EINVALID, "%s: control character in label", field);
  return GD_OK;
}

static int check_type(int type, gd_err *err, const char *field) {
  if (!GD_TYPE_VALID(type))
    return gd_err_set(err, GD_EINVALID, "%s: unknown entity type %d", field, type);
  return GD_OK;
}

static int norm_key(int type, const char *key, gd_arena **a, gd_str *ret, gd_err *err,
                    const char *field) {
  size_t n = key ? strlen(key) : 0, out_n;
  char *buf;
  if (n > GD_KEY_MAX)
    return gd_err_set(err, GD_EINVALID, "%s: key of %zu bytes is over the limit of %d bytes",
                      field, n, GD_KEY_MAX);
  if (!(buf = gd_arena_alloc(a, n ? n : 1)))
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  if (gd_key_normalize(type, (gd_str){key, n}, buf, &out_n, err))
    return gd_err_prefix(err, "%s", field);
  *ret = (gd_str){buf, out_n};
  return GD_OK;
}

int gd_pb_ref(const Graphd__V1__EntityRef *in, gd_arena **a, gd_ref *ret, gd_err *err,
              const char *field) {
  char f[96];
  if (!in)
    return gd_err_set(err, GD_EINVALID, "%s: missing", field);
  if (in->id) {
    *ret = (gd_ref){in->id, 0, GD_STR_NULL};
    return GD_OK;
  }
  snprintf(f, sizeof f, "%s.type", field);
  if (check_type((int)in->type, err, f))
    return GD_EINVALID;
  snprintf(f, sizeof f, "%s.key", field);
  ret->id = 0;
  ret->type = (int)in->type;
  return norm_key(ret->type, in->key, a, &ret->key, err, f);
}

/* gd_pb_ref without composing field names, for the hot path of writes: GD_OK
 * with *ret filled, or not GD_OK when anything is wrong (the caller then
 * converts again through gd_pb_ref, whose message names the field). */
static int ref_quick(const Graphd__V1__EntityRef *in, gd_arena **a, gd_ref *ret) {
  gd_err scratch;
  if (!in)
    return GD_EINVALID;
  if (in->id) {
    *ret = (gd_ref){in->id, 0, GD_STR_NULL};
    return GD_OK;
  }
  if (!GD_TYPE_VALID((int)in->type))
    return GD_EINVALID;
  ret->id = 0;
  ret->type = (int)in->type;
  return norm_key(ret->type, in->key, a, &ret->key, &scratch, "");
}

int gd_pb_window(const Graphd__V1__TimeWindow *w, int64_t *since, int64_t *until, gd_err *err,
                 const char *field) {
  *since = *until = 0;
  if (!w)
    return GD_OK;
  if (w->since < 0 || w->until < 0)
    return gd_err_set(err, GD_EINVALID, "%s: negative time", field);
  if (w->since && w->until && w->since > w->until)
    return gd_err_set(err, GD_EINVALID, "%s: since (%lld) is after until (%lld)", field,
                      (long long)w->since, (long long)w->until);
  *since = w->since;
  *until = w->until;
  return GD_OK;
}

static int conv_entity(const Graphd__V1__EntityInput *in, size_t i, gd_arena **a,
                       gd_entity_in *out, gd_err *err) {
  char f[96];
  if (!in)
    return gd_err_set(err, GD_EINVALID, "entities[%zu]: missing", i);
  snprintf(f, sizeof f, "entities[%zu].type", i);
  if (check_type((int)in->type, err, f))
    return GD_EINVALID;
  out->type = (int)in->type;
  snprintf(f, sizeof f, "entities[%zu].key", i);
  if (norm_key(out->type, in->key, a, &out->key, err, f))
    return err->code;
  if (in->seen < 0)
    return gd_err_set(err, GD_EINVALID, "entities[%zu].seen: negative time", i);
  out->seen = in->seen;
  if (in->n_attributes > GD_ATTRS_MAX)
    return gd_err_set(err, GD_EINVALID, "entities[%zu].attributes: %zu is over the limit of %d",
                      i, in->n_attributes, GD_ATTRS_MAX);
  if (in->n_labels > GD_LABELS_MAX)
    return gd_err_set(err, GD_EINVALID, "entities[%zu].labels: %zu is over the limit of %d", i,
                      in->n_labels, GD_LABELS_MAX);
  gd_attr_in *attrs = gd_arena_alloc(a, (in->n_attributes + 1) * sizeof *attrs);
  gd_str *labels = gd_arena_alloc(a, (in->n_labels + 1) * sizeof *labels);
  if (!attrs || !labels)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  for (size_t k = 0; k < in->n_attributes; k++) {
    const Graphd__V1__Attribute *at = in->attributes[k];
    snprintf(f, sizeof f, "entities[%zu].attributes[%zu].name", i, k);
    if (!at)
      return gd_err_set(err, GD_EINVALID, "%s: missing", f);
    if (gd_pb_check_str(at->name, GD_ATTR_NAME_MAX, true, err, f))
      return GD_EINVALID;
    snprintf(f, sizeof f, "entities[%zu].attributes[%zu].value", i, k);
    if (gd_pb_check_str(at->value, GD_ATTR_VALUE_MAX, false, err, f))
      return GD_EINVALID;
    attrs[k] = (gd_attr_in){gd_str_c(at->name), gd_str_c(at->value)};
  }
  for (size_t k = 0; k < in->n_labels; k++) {
    snprintf(f, sizeof f, "entities[%zu].labels[%zu]", i, k);
    if (gd_pb_check_label(in->labels[k], err, f))
      return GD_EINVALID;
    labels[k] = gd_str_c(in->labels[k]);
  }
  out->attrs = attrs;
  out->nattrs = in->n_attributes;
  out->labels = labels;
  out->nlabels = in->n_labels;
  return GD_OK;
}

int gd_pb_upsert(const Graphd__V1__UpsertRequest *in, size_t max_items, gd_arena **a,
                 gd_upsert *ret, gd_err *err) {
  char f[64];
  size_t items = in->n_entities + in->n_links;
  memset(ret, 0, sizeof *ret);
  if (items > max_items) {
    gd_limit_hit(GD_LIMIT_BATCH_ITEMS);
    return gd_err_set(err, GD_ERESOURCE,
                      "request has %zu entities plus links, over the limit of %zu per request "
                      "(--max-batch-items)",
                      items, max_items);
  }
  if (gd_pb_check_str(in->request_id, GD_REQUEST_ID_MAX, false, err, "request_id"))
    return GD_EINVALID;
  ret->request_id = gd_str_c(in->request_id);

  gd_entity_in *ents = gd_arena_alloc(a, (in->n_entities + 1) * sizeof *ents);
  gd_link_in *links = gd_arena_alloc(a, (in->n_links + 1) * sizeof *links);
  if (!ents || !links)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  for (size_t i = 0; i < in->n_entities; i++) {
    memset(&ents[i], 0, sizeof ents[i]);
    if (conv_entity(in->entities[i], i, a, &ents[i], err))
      return err->code;
  }
  for (size_t i = 0; i < in->n_links; i++) {
    const Graphd__V1__LinkInput *l = in->links[i];
    if (!l)
      return gd_err_set(err, GD_EINVALID, "links[%zu]: missing", i);
    if (ref_quick(l->a, a, &links[i].a) || ref_quick(l->b, a, &links[i].b)) {
      snprintf(f, sizeof f, "links[%zu].a", i);
      if (gd_pb_ref(l->a, a, &links[i].a, err, f))
        return err->code;
      snprintf(f, sizeof f, "links[%zu].b", i);
      if (gd_pb_ref(l->b, a, &links[i].b, err, f))
        return err->code;
    }
    const gd_ref *x = &links[i].a, *y = &links[i].b;
    if ((x->id && x->id == y->id) ||
        (!x->id && !y->id && x->type == y->type && gd_str_eq(x->key, y->key)))
      return gd_err_set(err, GD_EINVALID, "links[%zu]: a link's endpoints are the same entity",
                        i);
    if (l->seen < 0)
      return gd_err_set(err, GD_EINVALID, "links[%zu].seen: negative time", i);
    links[i].seen = l->seen;
  }
  ret->entities = ents;
  ret->nentities = in->n_entities;
  ret->links = links;
  ret->nlinks = in->n_links;
  return GD_OK;
}

/* ---- replies ------------------------------------------------------------- */

/* The default hub caps, for Entity.over_hub_cap. */
static gd_evidence_params default_ev;
static pthread_once_t default_ev_once = PTHREAD_ONCE_INIT;
static void default_ev_init(void) { gd_evidence_defaults(&default_ev); }

/* Copies a view into arena memory as a C string (protobuf-c wants NUL). */
static char *cstr(gd_arena **a, gd_str s) {
  char *p = gd_arena_alloc(a, s.n + 1);
  if (p) {
    memcpy(p, s.p, s.n);
    p[s.n] = '\0';
  }
  return p;
}

int gd_pb_entity(const gd_entity_view *v, bool with_attrs, gd_arena **a,
                 Graphd__V1__Entity *out) {
  pthread_once(&default_ev_once, default_ev_init);
  graphd__v1__entity__init(out);
  out->id = v->id;
  out->type = (Graphd__V1__EntityType)v->type;
  out->key = cstr(a, v->key);
  out->degree = v->degree;
  out->first_seen = v->first_seen;
  out->last_seen = v->last_seen;
  out->seller_count = v->seller_count;
  out->over_hub_cap = v->type != GD_TYPE_SELLER && gd_is_hub(&default_ev, v->type, v->seller_count);
  if (!out->key)
    return GD_ENOMEM;
  if (v->nlabels) {
    out->labels = gd_arena_alloc(a, v->nlabels * sizeof *out->labels);
    if (!out->labels)
      return GD_ENOMEM;
    for (size_t i = 0; i < v->nlabels; i++)
      if (!(out->labels[i] = cstr(a, gd_entity_label(v, i))))
        return GD_ENOMEM;
    out->n_labels = v->nlabels;
  }
  if (with_attrs && v->nattrs) {
    out->attributes = gd_arena_alloc(a, v->nattrs * sizeof *out->attributes);
    Graphd__V1__Attribute *at = gd_arena_alloc(a, v->nattrs * sizeof *at);
    if (!out->attributes || !at)
      return GD_ENOMEM;
    for (size_t i = 0; i < v->nattrs; i++) {
      gd_str n, val;
      gd_entity_attr(v, i, &n, &val);
      graphd__v1__attribute__init(&at[i]);
      at[i].name = cstr(a, n);
      at[i].value = cstr(a, val);
      if (!at[i].name || !at[i].value)
        return GD_ENOMEM;
      out->attributes[i] = &at[i];
    }
    out->n_attributes = v->nattrs;
  }
  return GD_OK;
}

int gd_pb_prepack(const ProtobufCMessage *m, uint32_t field, gd_arena **a,
                  ProtobufCMessageUnknownField *out) {
  size_t n = protobuf_c_message_get_packed_size(m), h = 0;
  uint8_t *p = gd_arena_alloc(a, n + 10);
  if (!p)
    return GD_ENOMEM;
  for (uint64_t v = n; h == 0 || v; v >>= 7) /* the length prefix: a base-128 varint */
    p[h++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
  protobuf_c_message_pack(m, p + h);
  out->tag = field;
  out->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
  out->len = h + n;
  out->data = p;
  return GD_OK;
}
