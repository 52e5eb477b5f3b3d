/*
 * gRPC server reflection: grpc.reflection.v1alpha.ServerReflection/
 * ServerReflectionInfo, so generic tools (grpcurl, grpcio's reflection
 * client) can list and call graphd's services without the .proto files.
 * grpc.reflection.v1 is the same protocol under its released name, with
 * messages identical on the wire: both method paths use this code and the
 * v1alpha message types.
 *
 * The schema is a FileDescriptorSet embedded at build time (proto/
 * meson.build), indexed once per context (gd_refl_index, rpc/reflection.h;
 * rpc->refl, loaded by gd_rpc_new).
 * The method is a bidirectional stream served one request at a time: read a
 * request, write its answer, read the next; the client's half-close ends
 * the call OK. Questions the schema cannot answer get an ErrorResponse in
 * the stream (NOT_FOUND for an unknown file, symbol or type,
 * INVALID_ARGUMENT for an empty one); a request that does not parse, or
 * names over GD_REFL_NAME_MAX bytes or not UTF-8, ends the call with
 * INVALID_ARGUMENT. Every answer is a lookup in the index (O(log n)) plus
 * packing at most the set's few files, so a request's work is bounded.
 */
#include <protobuf-c/protobuf-c.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/util.h"
#include "descriptor.pb-c.h"
#include "reflection.pb-c.h"
#include "rpc/reflection.h"
#include "rpc/rpc_int.h"

/* Longest host, file or symbol name a request may carry. */
#define GD_REFL_NAME_MAX 1024

/* ---- the index -------------------------------------------------------------- */

typedef struct refl_sym {
  const char *name;
  size_t file;
  gd_refl_kind kind;
} refl_sym;

typedef struct refl_file {
  const char *name;
  const uint8_t *bytes; /* the serialised FileDescriptorProto */
  size_t len;
  size_t *deps;
  size_t ndeps;
} refl_file;

struct gd_refl_index {
  gd_arena *arena; /* names, bytes, dependency lists */
  refl_file *files;
  size_t nfiles;
  refl_sym *by_name; /* the files in name order (kind unused) */
  refl_sym *syms;    /* in name order */
  size_t nsyms, cap;
  const char **services;
  size_t nservices;
};

static const char *kind_name(gd_refl_kind k) {
  static const char *const names[] = {"service", "method", "message",
                                      "field",   "enum",   "enum value"};
  return names[k];
}

/* Adds scope.name (or name at the top of an unnamed package); *ret_full
 * (may be NULL) gets the full name. */
static int add_sym(gd_refl_index *ix, const char *scope, const char *name, size_t file,
                   gd_refl_kind kind, const char **ret_full, gd_err *err) {
  if (!name || !name[0])
    return gd_err_set(err, GD_EINVALID, "%s: a %s without a name in '%s'", ix->files[file].name,
                      kind_name(kind), scope);
  size_t ls = strlen(scope), ln = strlen(name);
  char *full = gd_arena_alloc(&ix->arena, ls + 1 + ln + 1);
  if (!full)
    return gd_err_set(err, GD_ENOMEM, "reflection index: out of memory");
  if (ls) {
    memcpy(full, scope, ls);
    full[ls] = '.';
    memcpy(full + ls + 1, name, ln + 1);
  } else {
    memcpy(full, name, ln + 1);
  }
  if (ix->nsyms == ix->cap) {
    size_t cap = ix->cap ? ix->cap * 2 : 256;
    refl_sym *s = realloc(ix->syms, cap * sizeof *s);
    if (!s)
      return gd_err_set(err, GD_ENOMEM, "reflection index: out of memory");
    ix->syms = s;
    ix->cap = cap;
  }
  ix->syms[ix->nsyms++] = (refl_sym){full, file, kind};
  if (ret_full)
    *ret_full = full;
  return GD_OK;
}

static int add_enum(gd_refl_index *ix, const char *scope,
                    const Google__Protobuf__EnumDescriptorProto *e, size_t file, gd_err *err) {
  int rc = add_sym(ix, scope, e->name, file, GD_REFL_ENUM, NULL, err);
  /* Enum values are scoped like siblings of their enum (C++ rules). */
  for (size_t i = 0; !rc && i < e->n_value; i++)
    rc = add_sym(ix, scope, e->value[i]->name, file, GD_REFL_ENUM_VALUE, NULL, err);
  return rc;
}

static int add_message(gd_refl_index *ix, const char *scope,
                       const Google__Protobuf__DescriptorProto *m, size_t file, int depth,
                       gd_err *err) {
  const char *full;
  if (depth > 64)
    return gd_err_set(err, GD_EINVALID, "%s: messages nested deeper than 64 in '%s'",
                      ix->files[file].name, scope);
  int rc = add_sym(ix, scope, m->name, file, GD_REFL_MESSAGE, &full, err);
  for (size_t i = 0; !rc && i < m->n_field; i++)
    rc = add_sym(ix, full, m->field[i]->name, file, GD_REFL_FIELD, NULL, err);
  for (size_t i = 0; !rc && i < m->n_extension; i++)
    rc = add_sym(ix, full, m->extension[i]->name, file, GD_REFL_FIELD, NULL, err);
  for (size_t i = 0; !rc && i < m->n_oneof_decl; i++)
    rc = add_sym(ix, full, m->oneof_decl[i]->name, file, GD_REFL_FIELD, NULL, err);
  for (size_t i = 0; !rc && i < m->n_enum_type; i++)
    rc = add_enum(ix, full, m->enum_type[i], file, err);
  for (size_t i = 0; !rc && i < m->n_nested_type; i++)
    rc = add_message(ix, full, m->nested_type[i], file, depth + 1, err);
  return rc;
}

static int add_file(gd_refl_index *ix, const Google__Protobuf__FileDescriptorProto *f, size_t file,
                    gd_err *err) {
  const char *pkg = f->package ? f->package : "";
  int rc = GD_OK;
  for (size_t i = 0; !rc && i < f->n_message_type; i++)
    rc = add_message(ix, pkg, f->message_type[i], file, 0, err);
  for (size_t i = 0; !rc && i < f->n_enum_type; i++)
    rc = add_enum(ix, pkg, f->enum_type[i], file, err);
  for (size_t i = 0; !rc && i < f->n_extension; i++)
    rc = add_sym(ix, pkg, f->extension[i]->name, file, GD_REFL_FIELD, NULL, err);
  for (size_t i = 0; !rc && i < f->n_service; i++) {
    const Google__Protobuf__ServiceDescriptorProto *s = f->service[i];
    const char *full;
    const char **sv;
    rc = add_sym(ix, pkg, s->name, file, GD_REFL_SERVICE, &full, err);
    if (rc)
      break;
    if (!(sv = realloc(ix->services, (ix->nservices + 1) * sizeof *sv)))
      return gd_err_set(err, GD_ENOMEM, "reflection index: out of memory");
    ix->services = sv;
    ix->services[ix->nservices++] = full;
    for (size_t k = 0; !rc && k < s->n_method; k++)
      rc = add_sym(ix, full, s->method[k]->name, file, GD_REFL_METHOD, NULL, err);
  }
  return rc;
}

static int sym_cmp(const void *a, const void *b) {
  return strcmp(((const refl_sym *)a)->name, ((const refl_sym *)b)->name);
}

static char *arena_strdup(gd_arena **a, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = gd_arena_alloc(a, n);
  if (d)
    memcpy(d, s, n);
  return d;
}

int gd_refl_index_build(const uint8_t *set, size_t len, gd_refl_index **ret, gd_err *err) {
  Google__Protobuf__FileDescriptorSet *fs =
      google__protobuf__file_descriptor_set__unpack(NULL, len, set);
  gd_refl_index *ix = calloc(1, sizeof *ix);
  int rc = GD_OK;
  if (!fs || !ix) {
    rc = !ix ? gd_err_set(err, GD_ENOMEM, "reflection index: out of memory")
             : gd_err_set(err, GD_EINVALID,
                          "descriptor set: not a google.protobuf.FileDescriptorSet");
    goto fail;
  }
  ix->nfiles = fs->n_file;
  ix->files = gd_arena_alloc(&ix->arena, (fs->n_file + 1) * sizeof *ix->files);
  ix->by_name = gd_arena_alloc(&ix->arena, (fs->n_file + 1) * sizeof *ix->by_name);
  if (!ix->files || !ix->by_name) {
    rc = gd_err_set(err, GD_ENOMEM, "reflection index: out of memory");
    goto fail;
  }
  memset(ix->files, 0, (fs->n_file + 1) * sizeof *ix->files);
  /* Files: name, bytes, and a copy of every string the index keeps, so the
   * unpacked set can go. */
  for (size_t i = 0; i < fs->n_file; i++) {
    const Google__Protobuf__FileDescriptorProto *f = fs->file[i];
    refl_file *rf = &ix->files[i];
    if (!f->name || !f->name[0]) {
      rc = gd_err_set(err, GD_EINVALID, "descriptor set: file %zu has no name", i);
      goto fail;
    }
    uint8_t *b =
        gd_arena_alloc(&ix->arena, (rf->len = protobuf_c_message_get_packed_size(&f->base)) + 1);
    rf->name = arena_strdup(&ix->arena, f->name);
    rf->deps = gd_arena_alloc(&ix->arena, (f->n_dependency + 1) * sizeof *rf->deps);
    if (!b || !rf->name || !rf->deps) {
      rc = gd_err_set(err, GD_ENOMEM, "reflection index: out of memory");
      goto fail;
    }
    protobuf_c_message_pack(&f->base, b);
    rf->bytes = b;
    ix->by_name[i] = (refl_sym){rf->name, i, GD_REFL_SERVICE};
  }
  qsort(ix->by_name, ix->nfiles, sizeof *ix->by_name, sym_cmp);
  for (size_t i = 1; i < ix->nfiles; i++)
    if (strcmp(ix->by_name[i - 1].name, ix->by_name[i].name) == 0) {
      rc = gd_err_set(err, GD_EINVALID, "descriptor set: file '%.200s' appears twice",
                      ix->by_name[i].name);
      goto fail;
    }
  for (size_t i = 0; i < fs->n_file; i++) {
    const Google__Protobuf__FileDescriptorProto *f = fs->file[i];
    for (size_t k = 0; k < f->n_dependency; k++) {
      size_t d;
      if (!gd_refl_find_file(ix, f->dependency[k], &d)) {
        rc = gd_err_set(err, GD_EINVALID,
                        "descriptor set: %.100s imports '%.100s', which is not in the set", f->name,
                        f->dependency[k]);
        goto fail;
      }
      ix->files[i].deps[ix->files[i].ndeps++] = d;
    }
    if ((rc = add_file(ix, f, i, err)))
      goto fail;
  }
  if (ix->nsyms)
    qsort(ix->syms, ix->nsyms, sizeof *ix->syms, sym_cmp);
  for (size_t i = 1; i < ix->nsyms; i++)
    if (strcmp(ix->syms[i - 1].name, ix->syms[i].name) == 0) {
      rc = gd_err_set(
          err, GD_EINVALID, "descriptor set: symbol '%.150s' defined twice (%.40s, %.40s)",
          ix->syms[i].name, ix->files[ix->syms[i - 1].file].name, ix->files[ix->syms[i].file].name);
      goto fail;
    }
  google__protobuf__file_descriptor_set__free_unpacked(fs, NULL);
  *ret = ix;
  return GD_OK;
fail:
  if (fs)
    google__protobuf__file_descriptor_set__free_unpacked(fs, NULL);
  gd_refl_index_free(ix);
  return rc;
}

void gd_refl_index_free(gd_refl_index *ix) {
  if (!ix)
    return;
  free(ix->syms);
  free(ix->services);
  gd_arena_free(ix->arena);
  free(ix);
}

size_t gd_refl_nfiles(const gd_refl_index *ix) { return ix->nfiles; }

const char *gd_refl_file_name(const gd_refl_index *ix, size_t file) { return ix->files[file].name; }

const uint8_t *gd_refl_file_bytes(const gd_refl_index *ix, size_t file, size_t *ret_len) {
  *ret_len = ix->files[file].len;
  return ix->files[file].bytes;
}

static const refl_sym *find(const refl_sym *v, size_t n, const char *name) {
  refl_sym key = {name, 0, GD_REFL_SERVICE};
  return n ? bsearch(&key, v, n, sizeof *v, sym_cmp) : NULL;
}

bool gd_refl_find_file(const gd_refl_index *ix, const char *name, size_t *ret_file) {
  const refl_sym *s = find(ix->by_name, ix->nfiles, name);
  if (!s)
    return false;
  *ret_file = s->file;
  return true;
}

bool gd_refl_find_symbol(const gd_refl_index *ix, const char *name, size_t *ret_file,
                         gd_refl_kind *ret_kind) {
  const refl_sym *s = find(ix->syms, ix->nsyms, name);
  if (!s)
    return false;
  *ret_file = s->file;
  if (ret_kind)
    *ret_kind = s->kind;
  return true;
}

/* Breadth first, ret_files doubling as the queue; "seen" is a scan of what
 * is queued, O(n^2) in the set's file count (a handful). */
size_t gd_refl_file_closure(const gd_refl_index *ix, size_t file, size_t *ret_files) {
  size_t n = 0;
  ret_files[n++] = file;
  for (size_t q = 0; q < n; q++) {
    const refl_file *f = &ix->files[ret_files[q]];
    for (size_t k = 0; k < f->ndeps; k++) {
      size_t d = f->deps[k], j = 0;
      while (j < n && ret_files[j] != d)
        j++;
      if (j == n)
        ret_files[n++] = d;
    }
  }
  return n;
}

size_t gd_refl_nservices(const gd_refl_index *ix) { return ix->nservices; }

const char *gd_refl_service(const gd_refl_index *ix, size_t i) { return ix->services[i]; }

/* ---- the method ----------------------------------------------------------------- */

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest refl_req;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse refl_rep;
/* The oneof cases of request and response. */
#define REQ_(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_##x
#define REP_(x) GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_##x

/* Checks one name of request `index`: length cap and UTF-8. */
static int check_name(const char *s, const char *field, uint64_t index, gd_err *err) {
  size_t n = strlen(s);
  if (n > GD_REFL_NAME_MAX)
    return gd_err_set(err, GD_EINVALID, "request %llu: %s: %zu bytes, over the limit of %d",
                      (unsigned long long)index, field, n, GD_REFL_NAME_MAX);
  if (!gd_utf8_valid(s, n))
    return gd_err_set(err, GD_EINVALID, "request %llu: %s: not valid UTF-8",
                      (unsigned long long)index, field);
  return GD_OK;
}

static int check_request(const refl_req *q, uint64_t index, gd_err *err) {
  int rc = check_name(q->host, "host", index, err);
  if (rc)
    return rc;
  switch (q->message_request_case) {
  case REQ_(FILE_BY_FILENAME):
    return check_name(q->file_by_filename, "file_by_filename", index, err);
  case REQ_(FILE_CONTAINING_SYMBOL):
    return check_name(q->file_containing_symbol, "file_containing_symbol", index, err);
  case REQ_(FILE_CONTAINING_EXTENSION):
    return check_name(q->file_containing_extension->containing_type,
                      "file_containing_extension.containing_type", index, err);
  case REQ_(ALL_EXTENSION_NUMBERS_OF_TYPE):
    return check_name(q->all_extension_numbers_of_type, "all_extension_numbers_of_type", index,
                      err);
  case REQ_(LIST_SERVICES):
    return check_name(q->list_services, "list_services", index, err);
  default:
    return GD_OK;
  }
}

/* The answer's payload: one of these, set by answer(). */
typedef struct refl_out {
  Grpc__Reflection__V1alpha__FileDescriptorResponse files;
  Grpc__Reflection__V1alpha__ExtensionNumberResponse ext;
  Grpc__Reflection__V1alpha__ListServiceResponse list;
  Grpc__Reflection__V1alpha__ErrorResponse error;
  char msg[GD_REFL_NAME_MAX + 200];
} refl_out;

static void set_error(refl_rep *r, refl_out *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(refl_rep *r, refl_out *o, int code, const char *fmt, ...) {
  va_list ap;
  grpc__reflection__v1alpha__error_response__init(&o->error);
  o->error.error_code = gd_err_grpc_status(code); /* the one mapping */
  va_start(ap, fmt);
  vsnprintf(o->msg, sizeof o->msg, fmt, ap);
  va_end(ap);
  o->error.error_message = o->msg;
  r->message_response_case = REP_(ERROR_RESPONSE);
  r->error_response = &o->error;
}

/* file (found) and its dependencies, file first. */
static int set_files(const gd_refl_index *refl, refl_rep *r, refl_out *o, size_t file,
                     gd_arena **a) {
  size_t nf = gd_refl_nfiles(refl);
  size_t *ids = gd_arena_alloc(a, nf * sizeof *ids);
  ProtobufCBinaryData *bd = gd_arena_alloc(a, nf * sizeof *bd);
  if (!ids || !bd)
    return GD_ENOMEM;
  size_t n = gd_refl_file_closure(refl, file, ids);
  for (size_t i = 0; i < n; i++)
    bd[i].data = (uint8_t *)gd_refl_file_bytes(refl, ids[i], &bd[i].len);
  grpc__reflection__v1alpha__file_descriptor_response__init(&o->files);
  o->files.n_file_descriptor_proto = n;
  o->files.file_descriptor_proto = bd;
  r->message_response_case = REP_(FILE_DESCRIPTOR_RESPONSE);
  r->file_descriptor_response = &o->files;
  return GD_OK;
}

/* Fills r with the answer to q (a checked request) from refl. Errors:
 * GD_ENOMEM. */
static int answer(const gd_refl_index *refl, const refl_req *q, refl_rep *r, refl_out *o,
                  gd_arena **a) {
  size_t file;
  gd_refl_kind kind;
  const char *name;
  switch (q->message_request_case) {
  case REQ_(FILE_BY_FILENAME):
    name = q->file_by_filename;
    if (!name[0])
      set_error(r, o, GD_EINVALID, "file_by_filename: empty file name");
    else if (!gd_refl_find_file(refl, name, &file))
      set_error(r, o, GD_ENOTFOUND, "file not found: '%s'", name);
    else
      return set_files(refl, r, o, file, a);
    return GD_OK;
  case REQ_(FILE_CONTAINING_SYMBOL):
    name = q->file_containing_symbol;
    if (!name[0])
      set_error(r, o, GD_EINVALID, "file_containing_symbol: empty symbol name");
    else if (!gd_refl_find_symbol(refl, name, &file, NULL))
      set_error(r, o, GD_ENOTFOUND, "symbol not found: '%s'", name);
    else
      return set_files(refl, r, o, file, a);
    return GD_OK;
  case REQ_(FILE_CONTAINING_EXTENSION):
    name = q->file_containing_extension->containing_type;
    if (!name[0])
      set_error(r, o, GD_EINVALID, "file_containing_extension.containing_type: empty type name");
    else
      set_error(r, o, GD_ENOTFOUND, "no extension of '%s' is known (graphd declares none)", name);
    return GD_OK;
  case REQ_(ALL_EXTENSION_NUMBERS_OF_TYPE):
    name = q->all_extension_numbers_of_type;
    if (!name[0]) {
      set_error(r, o, GD_EINVALID, "all_extension_numbers_of_type: empty type name");
    } else if (!gd_refl_find_symbol(refl, name, &file, &kind) || kind != GD_REFL_MESSAGE) {
      set_error(r, o, GD_ENOTFOUND, "message type not found: '%s'", name);
    } else {
      grpc__reflection__v1alpha__extension_number_response__init(&o->ext);
      o->ext.base_type_name = (char *)name; /* no extensions: an empty list */
      r->message_response_case = REP_(ALL_EXTENSION_NUMBERS_RESPONSE);
      r->all_extension_numbers_response = &o->ext;
    }
    return GD_OK;
  case REQ_(LIST_SERVICES): {
    size_t n = gd_refl_nservices(refl);
    Grpc__Reflection__V1alpha__ServiceResponse *sr = gd_arena_alloc(a, (n + 1) * sizeof *sr);
    Grpc__Reflection__V1alpha__ServiceResponse **sp = gd_arena_alloc(a, (n + 1) * sizeof *sp);
    if (!sr || !sp)
      return GD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
      grpc__reflection__v1alpha__service_response__init(&sr[i]);
      sr[i].name = (char *)gd_refl_service(refl, i);
      sp[i] = &sr[i];
    }
    grpc__reflection__v1alpha__list_service_response__init(&o->list);
    o->list.n_service = n;
    o->list.service = sp;
    r->message_response_case = REP_(LIST_SERVICES_RESPONSE);
    r->list_services_response = &o->list;
    return GD_OK;
  }
  default:
    set_error(r, o, GD_EINVALID,
              "empty request: set one of file_by_filename, file_containing_symbol, "
              "file_containing_extension, all_extension_numbers_of_type, list_services");
    return GD_OK;
  }
}

/* Requests answered so far live in the call's user pointer (no state to
 * free). */
static uint64_t nrequests(gd_call *c) { return (uint64_t)(uintptr_t)gd_call_user(c); }

/* Ends the call; its audit target says how many requests it answered. */
static void refl_finish(gd_call *c, int code, const char *msg) {
  char tgt[48];
  snprintf(tgt, sizeof tgt, "requests=%llu", (unsigned long long)nrequests(c));
  gd_call_set_target(c, tgt);
  if (code)
    rpc_fail_code(c, code, msg);
  else
    gd_call_finish(c, GD_OK, NULL, NULL, 0);
}

void rpc_reflection_read(gd_call *c, gd_read_result rr, const uint8_t *msg, size_t len) {
  if (rr == GD_READ_END) {
    refl_finish(c, GD_OK, NULL);
    return;
  }
  if (rr == GD_READ_FAILED) {
    refl_finish(c, GD_ECANCELLED, "the stream broke while reading");
    return;
  }
  uint64_t index = nrequests(c);
  gd_rpc *R = rpc_ctx(c);
  gd_err err;
  refl_req *q = (refl_req *)rpc_decode(
      R, &grpc__reflection__v1alpha__server_reflection_request__descriptor, msg, len, &err);
  if (!q) {
    char why[GD_ERR_MSG_MAX];
    snprintf(why, sizeof why, "request %llu: %.200s", (unsigned long long)index, err.msg);
    refl_finish(c, err.code, why);
    return;
  }
  if (check_request(q, index, &err)) {
    grpc__reflection__v1alpha__server_reflection_request__free_unpacked(q, NULL);
    refl_finish(c, err.code, err.msg);
    return;
  }
  refl_rep r = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
  refl_out *o = malloc(sizeof *o);
  gd_arena *a = NULL;
  uint8_t *buf = NULL;
  size_t n = 0;
  int rc = o ? answer(R->refl, q, &r, o, &a) : GD_ENOMEM;
  if (!rc) {
    r.valid_host = q->host; /* echoed, as the protocol asks */
    r.original_request = q;
    n = protobuf_c_message_get_packed_size(&r.base);
    if (n > R->lim.max_reply_bytes) {
      gd_limit_hit(GD_LIMIT_REPLY_BYTES);
      snprintf(err.msg, sizeof err.msg,
               "request %llu: answer of %zu bytes is over the server's maximum message size of "
               "%zu bytes (--max-message-bytes)",
               (unsigned long long)index, n, R->lim.max_reply_bytes);
      rc = GD_ERESOURCE;
    } else if (!(buf = malloc(n ? n : 1))) {
      rc = GD_ENOMEM;
    } else {
      protobuf_c_message_pack(&r.base, buf);
    }
  }
  grpc__reflection__v1alpha__server_reflection_request__free_unpacked(q, NULL);
  gd_arena_free(a);
  free(o);
  if (rc) {
    free(buf);
    refl_finish(c, rc, rc == GD_ERESOURCE ? err.msg : "out of memory");
    return;
  }
  gd_call_set_user(c, (void *)(uintptr_t)(index + 1));
  /* No buffer hint: the client waits for this answer before it asks again. */
  gd_call_write(c, buf, n, false);
  free(buf);
}

void rpc_reflection_written(gd_call *c, bool ok) {
  if (!ok)
    refl_finish(c, GD_ECANCELLED, "the stream broke while writing");
  else
    gd_call_read_next(c);
}
