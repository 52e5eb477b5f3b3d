/*
 * server/pbjson: proto3 JSON <-> graphd's protobuf-c messages, exact
 * golden texts both ways, and every refusal naming its field.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graphd.pb-c.h"
#include "server/pbjson.h"
#include "tap.h"

/* JSON -> message of type d (NULL on error; *code gets the error). */
static ProtobufCMessage *parse(const ProtobufCMessageDescriptor *d, const char *json, int *code,
                               char *msg, size_t msgsize) {
  uint8_t *pb;
  size_t n;
  gd_err err = {0};
  *code = gd_pbjson_to_pb(d, json, strlen(json), &pb, &n, &err);
  if (msg)
    snprintf(msg, msgsize, "%s", err.msg);
  if (*code) {
    free(pb);
    return NULL;
  }
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, pb);
  free(pb);
  return m;
}

/* message -> JSON text (static buffer). */
static const char *text(const ProtobufCMessage *m) {
  static char buf[4096];
  char *s;
  size_t n;
  gd_err err = {0};
  if (gd_pbjson_from_msg(m, &s, &n, &err))
    return "(error)";
  snprintf(buf, sizeof buf, "%s", s);
  free(s);
  return buf;
}

static void test_read(void) {
  int code;
  /* JSON names and proto names, integers as numbers and as strings, enums
   * by name and by number. */
  Graphd__V1__LinkedSellersRequest *q = (Graphd__V1__LinkedSellersRequest *)parse(
      &graphd__v1__linked_sellers_request__descriptor,
      "{\"seller\": {\"type\": \"ENTITY_TYPE_SELLER\", \"key\": \"s<1>\"}, \"max_hops\": 2,"
      " \"maxTouched\": \"18446744073709551615\", \"viaTypes\": [2, \"ENTITY_TYPE_DEVICE\"],"
      " \"hubCaps\": [{\"type\": \"ENTITY_TYPE_ADDRESS\", \"maxSellers\": 9500}],"
      " \"minScore\": 0.25}",
      &code, NULL, 0);
  CHECK(q != NULL);
  if (q) {
    CHECK(q->seller && q->seller->type == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER);
    CHECK_STR(q->seller->key, "s<1>");
    CHECK_EQ_U(q->max_hops, 2);
    CHECK(q->max_touched == UINT64_MAX);
    CHECK(q->n_via_types == 2 && q->via_types[0] == 2 &&
          q->via_types[1] == GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_DEVICE);
    CHECK(q->n_hub_caps == 1 && q->hub_caps[0]->max_sellers == 9500);
    CHECK(q->min_score == 0.25);
    protobuf_c_message_free_unpacked(&q->base, NULL);
  }
  /* Empty text, blank text and {} are the empty message; null is the
   * default. */
  const char *empties[] = {"", "  \n", "{}", "{\"ref\": null}"};
  for (size_t i = 0; i < 4; i++) {
    Graphd__V1__GetEntityRequest *g = (Graphd__V1__GetEntityRequest *)parse(
        &graphd__v1__get_entity_request__descriptor, empties[i], &code, NULL, 0);
    CHECK(g && !g->ref);
    if (g)
      protobuf_c_message_free_unpacked(&g->base, NULL);
  }
  /* Bytes: URL-safe, unpadded base64 reads too. */
  Graphd__V1__AuditRecord *a = (Graphd__V1__AuditRecord *)parse(
      &graphd__v1__audit_record__descriptor, "{\"hash\": \"-_8\", \"prevHash\": \"AAEC\"}",
      &code, NULL, 0);
  CHECK(a && a->hash.len == 2 && a->hash.data[0] == 0xfb && a->hash.data[1] == 0xff);
  CHECK(a && a->prev_hash.len == 3 && a->prev_hash.data[2] == 2);
  if (a)
    protobuf_c_message_free_unpacked(&a->base, NULL);
  /* "NaN" and friends. */
  Graphd__V1__Entity *e = (Graphd__V1__Entity *)parse(
      &graphd__v1__entity__descriptor, "{\"evidenceWeight\": \"NaN\", \"corroboration\": \"-Infinity\"}",
      &code, NULL, 0);
  CHECK(e && isnan(e->evidence_weight) && isinf(e->corroboration) && e->corroboration < 0);
  if (e)
    protobuf_c_message_free_unpacked(&e->base, NULL);
}

static void test_refusals(void) {
  static const struct {
    const ProtobufCMessageDescriptor *d;
    const char *json, *msg;
  } cases[] = {
      {&graphd__v1__get_entity_request__descriptor, "{\"bogus\": 1}",
       "unknown field \"bogus\" in graphd.v1.GetEntityRequest"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {\"idd\": 1}}",
       "ref: unknown field \"idd\" in graphd.v1.EntityRef"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {\"id\": \"x\"}}",
       "ref.id: not an unsigned integer"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {\"id\": -1}}",
       "ref.id: negative value for an unsigned integer"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {\"id\": 1.5}}",
       "ref.id: not an integer"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {\"type\": \"ENTITY_TYPE_CAT\"}}",
       "ref.type: unknown value of enum graphd.v1.EntityType"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {\"key\": 5}}",
       "ref.key: expected a string"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {\"key\": \"a\\u0000b\"}}",
       "ref.key: a string with a NUL character"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": 3}",
       "ref: expected an object: graphd.v1.EntityRef"},
      {&graphd__v1__get_entity_request__descriptor, "[1]",
       "(request): expected an object: graphd.v1.GetEntityRequest"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {}} x",
       "invalid JSON at byte 12"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {", "invalid JSON at byte"},
      {&graphd__v1__get_entity_request__descriptor, "{ref: {}}", "invalid JSON at byte"},
      {&graphd__v1__get_entity_request__descriptor, "{\"ref\": {},}", "invalid JSON at byte"},
      {&graphd__v1__upsert_request__descriptor,
       "{\"links\": [{\"a\": {\"key\": \"s1\"}}, {\"a\": {\"type\": true}}]}",
       "links[1].a.type: expected an integer"},
      {&graphd__v1__upsert_request__descriptor, "{\"links\": {}}",
       "links: expected an array"},
      {&graphd__v1__upsert_request__descriptor, "{\"links\": [null]}",
       "links[0]: null in a list"},
      {&graphd__v1__rank_suspects_request__descriptor, "{\"alpha\": \"-NaN\"}",
       "alpha: not a number"},
      {&graphd__v1__rank_suspects_request__descriptor, "{\"alpha\": \"inf\"}",
       "alpha: not a number"},
      {&graphd__v1__rank_suspects_request__descriptor, "{\"alpha\": \"0x1p3\"}",
       "alpha: not a number"},
      {&graphd__v1__rank_suspects_request__descriptor, "{\"alpha\": \" 1\"}",
       "alpha: not a number"},
      {&graphd__v1__linked_sellers_request__descriptor, "{\"maxHops\": 4294967296}",
       "maxHops: out of range for an unsigned 32-bit integer"},
      {&graphd__v1__linked_sellers_request__descriptor, "{\"maxHops\": 1, \"max_hops\": 2}",
       "given twice"},
      {&graphd__v1__get_cluster_request__descriptor, "{\"live\": 1}",
       "live: expected true or false"},
      {&graphd__v1__audit_record__descriptor, "{\"hash\": \"a\"}", "hash: not base64"},
      {&graphd__v1__audit_record__descriptor, "{\"hash\": \"@@@@\"}", "hash: not base64"},
      {&graphd__v1__audit_record__descriptor, "{\"seq\": \"99999999999999999999\"}",
       "seq: out of range for an unsigned 64-bit integer"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int code;
    char msg[GD_ERR_MSG_MAX];
    ProtobufCMessage *m = parse(cases[i].d, cases[i].json, &code, msg, sizeof msg);
    CHECK(m == NULL && code == GD_EINVALID);
    if (!strstr(msg, cases[i].msg)) {
      fprintf(stderr, "case %zu (%s): got \"%s\", want \"%s\"\n", i, cases[i].json, msg,
              cases[i].msg);
      CHECK(0);
    }
    if (m)
      protobuf_c_message_free_unpacked(m, NULL);
  }
  /* Nesting past the bound. */
  char deep[4 * GD_PBJSON_MAX_DEPTH + 64];
  size_t n = 0;
  for (int i = 0; i < GD_PBJSON_MAX_DEPTH + 2; i++)
    n += (size_t)snprintf(deep + n, sizeof deep - n, "[");
  int code;
  CHECK(parse(&graphd__v1__get_entity_request__descriptor, deep, &code, NULL, 0) == NULL &&
        code == GD_EINVALID);
}

static void test_write(void) {
  Graphd__V1__Entity e = GRAPHD__V1__ENTITY__INIT;
  char *labels[] = {"counterfeit", "a\"b/c"};
  e.id = 7;
  e.type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
  e.key = "<script>";
  e.labels = labels;
  e.n_labels = 2;
  e.first_seen = -5;
  e.evidence_weight = 0.1;
  e.corroboration = 1.0;
  e.over_hub_cap = 1;
  /* Defaults (degree 0, seller_count 0, evidence_context false) are left
   * out; 64-bit integers are strings; the shortest doubles. */
  CHECK_STR(text(&e.base), "{\"id\":\"7\",\"type\":\"ENTITY_TYPE_SELLER\",\"key\":\"<script>\","
                           "\"labels\":[\"counterfeit\",\"a\\\"b/c\"],\"firstSeen\":\"-5\","
                           "\"overHubCap\":true,\"evidenceWeight\":0.1,\"corroboration\":1}");
  e.evidence_weight = NAN;
  e.corroboration = -INFINITY;
  e.labels = NULL;
  e.n_labels = 0;
  e.key = "";
  CHECK_STR(text(&e.base), "{\"id\":\"7\",\"type\":\"ENTITY_TYPE_SELLER\",\"firstSeen\":\"-5\","
                           "\"overHubCap\":true,\"evidenceWeight\":\"NaN\","
                           "\"corroboration\":\"-Infinity\"}");
  Graphd__V1__AuditRecord a = GRAPHD__V1__AUDIT_RECORD__INIT;
  uint8_t h[] = {0xfb, 0xff, 0x00};
  a.hash = (ProtobufCBinaryData){3, h};
  a.status = -1;
  CHECK_STR(text(&a.base), "{\"status\":-1,\"hash\":\"+/8A\"}");
  Graphd__V1__GetEntityRequest empty = GRAPHD__V1__GET_ENTITY_REQUEST__INIT;
  CHECK_STR(text(&empty.base), "{}");
}

/* Pack -> JSON -> pack gives the same bytes. */
static void test_round_trip(void) {
  Graphd__V1__UpsertRequest u = GRAPHD__V1__UPSERT_REQUEST__INIT;
  Graphd__V1__EntityRef ra = GRAPHD__V1__ENTITY_REF__INIT, rb = GRAPHD__V1__ENTITY_REF__INIT;
  ra.type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_SELLER;
  ra.key = "s1";
  rb.id = UINT64_MAX;
  Graphd__V1__LinkInput l = GRAPHD__V1__LINK_INPUT__INIT, *lp[2] = {&l, &l};
  l.a = &ra;
  l.b = &rb;
  l.seen = INT64_MIN;
  u.links = lp;
  u.n_links = 2;
  u.request_id = "r-1";
  size_t n = protobuf_c_message_get_packed_size(&u.base);
  uint8_t *pb = malloc(n), *back = NULL;
  protobuf_c_message_pack(&u.base, pb);
  char *js = NULL;
  size_t jn, bn;
  gd_err err = {0};
  CHECK_EQ_U(gd_pbjson_from_pb(&graphd__v1__upsert_request__descriptor, pb, n, &js, &jn, &err),
             GD_OK);
  CHECK_EQ_U(gd_pbjson_to_pb(&graphd__v1__upsert_request__descriptor, js, jn, &back, &bn, &err),
             GD_OK);
  CHECK(bn == n && back && memcmp(pb, back, n) == 0);
  CHECK(js && strstr(js, "\"seen\":\"-9223372036854775808\"") != NULL);
  /* Bytes that are no such message. */
  free(js);
  static const uint8_t junk[] = {0x1a, 0x05, 0x01};
  CHECK_EQ_U(gd_pbjson_from_pb(&graphd__v1__upsert_request__descriptor, junk, sizeof junk, &js,
                               &jn, &err),
             GD_EINVALID);
  free(pb);
  free(back);
}

TAP_MAIN(T(test_read), T(test_refusals), T(test_write), T(test_round_trip))
