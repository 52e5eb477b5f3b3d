/*
 * Unit tests for the reflection index (graphd/rpc/reflection.h): the
 * embedded descriptor set (every served method is described), symbol
 * scoping (nested messages, enums, enum values, fields, oneofs), the
 * dependency closure, and sets the index refuses.
 */
#include <stdlib.h>
#include <string.h>

#include "descriptor.pb-c.h"
#include "graphd.pb-c.h"
#include "rpc/reflection.h"
#include "rpc/rpc.h"
#include "tap.h"

static bool sym_is(const gd_refl_index *ix, const char *name, const char *file, gd_refl_kind kind) {
  size_t f;
  gd_refl_kind k;
  return gd_refl_find_symbol(ix, name, &f, &k) && k == kind &&
         strcmp(gd_refl_file_name(ix, f), file) == 0;
}

static void test_embedded_set(void) {
  gd_refl_index *ix = NULL;
  gd_err err;
  size_t f, n;
  CHECK_EQ_U(gd_refl_index_build(gd_descriptor_set, gd_descriptor_set_len, &ix, &err), GD_OK);
  if (!ix)
    return;
  const char *g = "graphd/v1/graphd.proto", *h = "grpc/health/v1/health.proto",
             *r = "grpc/reflection/v1alpha/reflection.proto",
             *r1 = "grpc/reflection/v1/reflection.proto";
  CHECK_EQ_U(gd_refl_nfiles(ix), 4);
  CHECK(gd_refl_find_file(ix, r1, &f));
  CHECK(sym_is(ix, "grpc.reflection.v1.ServerReflection", r1, GD_REFL_SERVICE));
  CHECK(gd_refl_find_file(ix, g, &f) && strcmp(gd_refl_file_name(ix, f), g) == 0);
  CHECK(gd_refl_find_file(ix, h, &f));
  CHECK(gd_refl_find_file(ix, r, &f));
  CHECK(!gd_refl_find_file(ix, "graphd.proto", &f));
  CHECK(!gd_refl_find_file(ix, "", &f));

  CHECK(sym_is(ix, "graphd.v1.SellerGraph", g, GD_REFL_SERVICE));
  CHECK(sym_is(ix, "graphd.v1.SellerGraph.GetEntity", g, GD_REFL_METHOD));
  CHECK(sym_is(ix, "graphd.v1.GetEntityRequest", g, GD_REFL_MESSAGE));
  CHECK(sym_is(ix, "graphd.v1.EntityRef.key", g, GD_REFL_FIELD));
  CHECK(sym_is(ix, "graphd.v1.EntityType", g, GD_REFL_ENUM));
  CHECK(sym_is(ix, "graphd.v1.ENTITY_TYPE_SELLER", g, GD_REFL_ENUM_VALUE));
  CHECK(sym_is(ix, "graphd.v1.DiffEvent.Kind", g, GD_REFL_ENUM));
  CHECK(sym_is(ix, "graphd.v1.DiffEvent.KIND_MOVED", g, GD_REFL_ENUM_VALUE));
  CHECK(sym_is(ix, "grpc.health.v1.HealthCheckResponse.ServingStatus", h, GD_REFL_ENUM));
  CHECK(sym_is(ix, "grpc.reflection.v1alpha.ServerReflectionRequest.message_request", r,
               GD_REFL_FIELD)); /* a oneof */
  CHECK(!gd_refl_find_symbol(ix, "graphd.v1", &f, NULL));
  CHECK(!gd_refl_find_symbol(ix, "graphd.v1.SellerGraph.Nope", &f, NULL));
  CHECK(!gd_refl_find_symbol(ix, ".graphd.v1.SellerGraph", &f, NULL));
  CHECK(!gd_refl_find_symbol(ix, "", &f, NULL));

  n = gd_refl_nservices(ix);
  CHECK_EQ_U(n, 4);
  if (n == 4) {
    CHECK_STR(gd_refl_service(ix, 0), "graphd.v1.SellerGraph");
    CHECK_STR(gd_refl_service(ix, 1), "grpc.health.v1.Health");
    CHECK_STR(gd_refl_service(ix, 2), "grpc.reflection.v1alpha.ServerReflection");
    CHECK_STR(gd_refl_service(ix, 3), "grpc.reflection.v1.ServerReflection");
  }

  /* Every row of the method table is described: "/pkg.Svc/M" -> pkg.Svc.M. */
  const gd_method *m = gd_rpc_method_table(&n);
  for (size_t i = 0; i < n; i++) {
    char name[256];
    snprintf(name, sizeof name, "%s", m[i].path + 1);
    *strchr(name, '/') = '.';
    gd_refl_kind k = GD_REFL_SERVICE;
    bool found = gd_refl_find_symbol(ix, name, &f, &k);
    if (!found)
      fprintf(stderr, "method %s is not in the descriptor set\n", name);
    CHECK(found && k == GD_REFL_METHOD);
  }

  /* A file's bytes are its FileDescriptorProto. */
  CHECK(gd_refl_find_file(ix, g, &f));
  const uint8_t *b = gd_refl_file_bytes(ix, f, &n);
  Google__Protobuf__FileDescriptorProto *fd =
      google__protobuf__file_descriptor_proto__unpack(NULL, n, b);
  CHECK(fd && strcmp(fd->name, g) == 0 && strcmp(fd->package, "graphd.v1") == 0);
  CHECK(fd && fd->n_service == 1);
  if (fd)
    google__protobuf__file_descriptor_proto__free_unpacked(fd, NULL);
  gd_refl_index_free(ix);
}

/* ---- synthetic sets ---- */

typedef Google__Protobuf__FileDescriptorProto file_pb;
typedef Google__Protobuf__DescriptorProto msg_pb;

/* Packs files into a FileDescriptorSet (caller frees). */
static uint8_t *pack_set(file_pb **files, size_t n, size_t *ret_len) {
  Google__Protobuf__FileDescriptorSet s = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
  s.file = files;
  s.n_file = n;
  *ret_len = google__protobuf__file_descriptor_set__get_packed_size(&s);
  uint8_t *b = malloc(*ret_len + 1);
  google__protobuf__file_descriptor_set__pack(&s, b);
  return b;
}

static void test_synthetic(void) {
  /* a.proto: package p; message Outer { message Inner { enum E { X = 0; } }
   *          int32 f = 1; oneof choice {...} }
   * b.proto: package p; import "a.proto"; message B {}
   * c.proto: (no package) import "b.proto", "a.proto"; message C {}
   *          service S { rpc M(...) } */
  Google__Protobuf__EnumValueDescriptorProto x =
      GOOGLE__PROTOBUF__ENUM_VALUE_DESCRIPTOR_PROTO__INIT;
  Google__Protobuf__EnumValueDescriptorProto *xs[] = {&x};
  Google__Protobuf__EnumDescriptorProto e = GOOGLE__PROTOBUF__ENUM_DESCRIPTOR_PROTO__INIT;
  Google__Protobuf__EnumDescriptorProto *es[] = {&e};
  msg_pb inner = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT,
         outer = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
  msg_pb *inners[] = {&inner}, *outers[] = {&outer};
  Google__Protobuf__FieldDescriptorProto fld = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
  Google__Protobuf__FieldDescriptorProto *flds[] = {&fld};
  Google__Protobuf__OneofDescriptorProto oo = GOOGLE__PROTOBUF__ONEOF_DESCRIPTOR_PROTO__INIT;
  Google__Protobuf__OneofDescriptorProto *oos[] = {&oo};
  msg_pb mb = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT,
         mc = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
  msg_pb *mbs[] = {&mb}, *mcs[] = {&mc};
  Google__Protobuf__MethodDescriptorProto meth = GOOGLE__PROTOBUF__METHOD_DESCRIPTOR_PROTO__INIT;
  Google__Protobuf__MethodDescriptorProto *meths[] = {&meth};
  Google__Protobuf__ServiceDescriptorProto svc = GOOGLE__PROTOBUF__SERVICE_DESCRIPTOR_PROTO__INIT;
  Google__Protobuf__ServiceDescriptorProto *svcs[] = {&svc};
  file_pb a = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT, b = a, c = a;
  char *bdeps[] = {"a.proto"}, *cdeps[] = {"b.proto", "a.proto"};

  x.name = "X";
  e.name = "E", e.value = xs, e.n_value = 1;
  inner.name = "Inner", inner.enum_type = es, inner.n_enum_type = 1;
  fld.name = "f";
  oo.name = "choice";
  outer.name = "Outer", outer.nested_type = inners, outer.n_nested_type = 1;
  outer.field = flds, outer.n_field = 1, outer.oneof_decl = oos, outer.n_oneof_decl = 1;
  a.name = "a.proto", a.package = "p", a.message_type = outers, a.n_message_type = 1;
  mb.name = "B";
  b.name = "b.proto", b.package = "p", b.message_type = mbs, b.n_message_type = 1;
  b.dependency = bdeps, b.n_dependency = 1;
  mc.name = "C";
  meth.name = "M", meth.input_type = ".C", meth.output_type = ".C";
  svc.name = "S", svc.method = meths, svc.n_method = 1;
  c.name = "c.proto", c.message_type = mcs, c.n_message_type = 1;
  c.service = svcs, c.n_service = 1, c.dependency = cdeps, c.n_dependency = 2;

  file_pb *files[] = {&a, &b, &c};
  size_t len, fi, ids[3], n;
  uint8_t *set = pack_set(files, 3, &len);
  gd_refl_index *ix = NULL;
  gd_err err;
  CHECK_EQ_U(gd_refl_index_build(set, len, &ix, &err), GD_OK);
  free(set); /* the index keeps its own copy */
  if (!ix)
    return;
  CHECK(sym_is(ix, "p.Outer", "a.proto", GD_REFL_MESSAGE));
  CHECK(sym_is(ix, "p.Outer.Inner", "a.proto", GD_REFL_MESSAGE));
  CHECK(sym_is(ix, "p.Outer.Inner.E", "a.proto", GD_REFL_ENUM));
  CHECK(sym_is(ix, "p.Outer.Inner.X", "a.proto", GD_REFL_ENUM_VALUE));
  CHECK(sym_is(ix, "p.Outer.f", "a.proto", GD_REFL_FIELD));
  CHECK(sym_is(ix, "p.Outer.choice", "a.proto", GD_REFL_FIELD));
  CHECK(sym_is(ix, "p.B", "b.proto", GD_REFL_MESSAGE));
  CHECK(sym_is(ix, "C", "c.proto", GD_REFL_MESSAGE));
  CHECK(sym_is(ix, "S", "c.proto", GD_REFL_SERVICE));
  CHECK(sym_is(ix, "S.M", "c.proto", GD_REFL_METHOD));
  CHECK(!gd_refl_find_symbol(ix, "p.Inner", &fi, NULL));
  CHECK(!gd_refl_find_symbol(ix, "p.Outer.E", &fi, NULL));
  CHECK_EQ_U(gd_refl_nservices(ix), 1);

  /* Closure: the file first, each dependency once (a is reached twice). */
  CHECK(gd_refl_find_file(ix, "c.proto", &fi));
  n = gd_refl_file_closure(ix, fi, ids);
  CHECK_EQ_U(n, 3);
  CHECK_STR(gd_refl_file_name(ix, ids[0]), "c.proto");
  CHECK(n == 3 && ids[1] != ids[2] && ids[1] != ids[0] && ids[2] != ids[0]);
  CHECK(gd_refl_find_file(ix, "a.proto", &fi));
  CHECK_EQ_U(gd_refl_file_closure(ix, fi, ids), 1);
  gd_refl_index_free(ix);

  /* Refused: a dependency not in the set. */
  file_pb *bc[] = {&b, &c};
  set = pack_set(bc, 2, &len);
  ix = NULL;
  CHECK_EQ_U(gd_refl_index_build(set, len, &ix, &err), GD_EINVALID);
  CHECK(strstr(err.msg, "a.proto") != NULL);
  CHECK(ix == NULL);
  free(set);

  /* Refused: the same symbol in two files. */
  file_pb a2 = a;
  a2.name = "a2.proto";
  file_pb *dup[] = {&a, &a2};
  set = pack_set(dup, 2, &len);
  CHECK_EQ_U(gd_refl_index_build(set, len, &ix, &err), GD_EINVALID);
  CHECK(strstr(err.msg, "p.Outer") != NULL && strstr(err.msg, "twice") != NULL);
  free(set);

  /* Refused: the same file twice; a file without a name. */
  file_pb *twice[] = {&a, &a};
  set = pack_set(twice, 2, &len);
  CHECK_EQ_U(gd_refl_index_build(set, len, &ix, &err), GD_EINVALID);
  CHECK(strstr(err.msg, "a.proto") != NULL);
  free(set);
  file_pb anon = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
  file_pb *anons[] = {&anon};
  set = pack_set(anons, 1, &len);
  CHECK_EQ_U(gd_refl_index_build(set, len, &ix, &err), GD_EINVALID);
  CHECK(strstr(err.msg, "no name") != NULL);
  free(set);

  /* Not a FileDescriptorSet at all (field 1 cut short). */
  static const uint8_t junk[] = {0x0a, 0x05, 'a', 'b'};
  CHECK_EQ_U(gd_refl_index_build(junk, sizeof junk, &ix, &err), GD_EINVALID);
  /* An empty set is a valid, empty index. */
  CHECK_EQ_U(gd_refl_index_build((const uint8_t *)"", 0, &ix, &err), GD_OK);
  if (ix) {
    CHECK_EQ_U(gd_refl_nfiles(ix), 0);
    CHECK(!gd_refl_find_symbol(ix, "p.Outer", &fi, NULL));
    CHECK(!gd_refl_find_file(ix, "a.proto", &fi));
    gd_refl_index_free(ix);
  }
}

/* Every graphd.v1 row and the health check carry their request and reply
 * types, taken from the service descriptors. */
static void test_method_types(void) {
  size_t n = 0, graphd = 0;
  const gd_method *m = gd_rpc_method_table(&n);
  CHECK(n > 20);
  for (size_t i = 0; i < n; i++) {
    if (strncmp(m[i].path, "/graphd.v1.SellerGraph/", 23) == 0) {
      graphd++;
      CHECK(m[i].request != NULL && m[i].reply != NULL);
    }
    const char *req = m[i].request ? m[i].request->name : "-";
    const char *rep = m[i].reply ? m[i].reply->name : "-";
    if (strcmp(m[i].path, "/graphd.v1.SellerGraph/GetEntity") == 0) {
      CHECK_STR(req, "graphd.v1.GetEntityRequest");
      CHECK_STR(rep, "graphd.v1.GetEntityReply");
    } else if (strcmp(m[i].path, "/graphd.v1.SellerGraph/WatchJob") == 0) {
      CHECK_STR(req, "graphd.v1.JobRequest");
      CHECK_STR(rep, "graphd.v1.Job");
    } else if (strcmp(m[i].path, "/graphd.v1.SellerGraph/Ingest") == 0) {
      CHECK_STR(req, "graphd.v1.UpsertRequest");
      CHECK_STR(rep, "graphd.v1.IngestReply");
    } else if (strcmp(m[i].path, "/grpc.health.v1.Health/Check") == 0) {
      CHECK_STR(req, "grpc.health.v1.HealthCheckRequest");
      CHECK_STR(rep, "grpc.health.v1.HealthCheckResponse");
    } else if (strstr(m[i].path, "ServerReflection")) {
      CHECK(m[i].request == NULL && m[i].reply == NULL);
    }
  }
  CHECK_EQ_U(graphd, graphd__v1__seller_graph__descriptor.n_methods);
}

TAP_MAIN({"embedded set", test_embedded_set}, {"synthetic sets", test_synthetic},
         {"method types", test_method_types})
