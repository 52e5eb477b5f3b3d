/*
 * Unit tests for the rpc layer's conversions (graphd/rpc/convert.h):
 * gd_pb_prepack. A parent that carries a pre-packed sub-message as an
 * unknown field must decode as the same message as the parent with the
 * field set the ordinary way, whatever the length prefix's size, and a
 * repeated field's elements must keep their order.
 */
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "graphd.pb-c.h"
#include "rpc/convert.h"
#include "tap.h"

static uint8_t *pack(const ProtobufCMessage *m, size_t *n) {
  *n = protobuf_c_message_get_packed_size(m);
  uint8_t *b = malloc(*n ? *n : 1);
  CHECK_EQ_U(protobuf_c_message_pack(m, b), *n);
  return b;
}

/* Whether a and b decode (as desc) to messages that pack alike. */
static bool same_message(const ProtobufCMessageDescriptor *desc, const uint8_t *a, size_t an,
                         const uint8_t *b, size_t bn) {
  ProtobufCMessage *ma = protobuf_c_message_unpack(desc, NULL, an, a);
  ProtobufCMessage *mb = protobuf_c_message_unpack(desc, NULL, bn, b);
  bool same = false;
  if (ma && mb && ma->n_unknown_fields == 0 && mb->n_unknown_fields == 0) {
    size_t n1, n2;
    uint8_t *p1 = pack(ma, &n1), *p2 = pack(mb, &n2);
    same = n1 == n2 && memcmp(p1, p2, n1) == 0;
    free(p1);
    free(p2);
  }
  if (ma)
    protobuf_c_message_free_unpacked(ma, NULL);
  if (mb)
    protobuf_c_message_free_unpacked(mb, NULL);
  return same;
}

/* An entity whose packed size is about key_len bytes. */
static void entity(Graphd__V1__Entity *e, uint64_t id, char *key, size_t key_len) {
  graphd__v1__entity__init(e);
  memset(key, 'k', key_len);
  key[key_len] = '\0';
  e->id = id;
  e->type = GRAPHD__V1__ENTITY_TYPE__ENTITY_TYPE_ADDRESS;
  e->key = key;
  e->degree = 7;
  e->seller_count = 5;
  e->first_seen = -3;
  e->last_seen = 1767215721;
}

/* A singular field (SharedEntity.entity, field 1), with 1-, 2- and 3-byte
 * length prefixes. */
static void test_singular(void) {
  static const size_t lens[] = {0, 5, 100, 126, 127, 128, 300, 16383, 16384, 70000};
  static char key[70001];
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    gd_arena *a = NULL;
    Graphd__V1__Entity e;
    entity(&e, 1000 + i, key, lens[i]);
    Graphd__V1__SharedEntity plain = GRAPHD__V1__SHARED_ENTITY__INIT, pre = plain;
    plain.entity = &e;
    plain.weight = pre.weight = 0.8;
    plain.first_seen = pre.first_seen = 42;
    ProtobufCMessageUnknownField f;
    CHECK_EQ_U(gd_pb_prepack(&e.base, 1, &a, &f), GD_OK);
    pre.base.unknown_fields = &f;
    pre.base.n_unknown_fields = 1;
    size_t n1, n2;
    uint8_t *b1 = pack(&plain.base, &n1), *b2 = pack(&pre.base, &n2);
    CHECK_EQ_U(n1, n2);
    CHECK(same_message(&graphd__v1__shared_entity__descriptor, b1, n1, b2, n2));
    free(b1);
    free(b2);
    gd_arena_free(a);
  }
}

/* A repeated field (Path.entities, field 1): one unknown field an
 * element, in order. */
static void test_repeated(void) {
  static char keys[3][200];
  static const size_t lens[3] = {3, 150, 20};
  gd_arena *a = NULL;
  Graphd__V1__Entity e[3], *ep[3];
  ProtobufCMessageUnknownField f[3];
  for (int i = 0; i < 3; i++) {
    entity(&e[i], 10 - i, keys[i], lens[i]);
    ep[i] = &e[i];
    CHECK_EQ_U(gd_pb_prepack(&e[i].base, 1, &a, &f[i]), GD_OK);
  }
  Graphd__V1__Path plain = GRAPHD__V1__PATH__INIT, pre = plain;
  plain.entities = ep;
  plain.n_entities = 3;
  pre.base.unknown_fields = f;
  pre.base.n_unknown_fields = 3;
  size_t n1, n2;
  uint8_t *b1 = pack(&plain.base, &n1), *b2 = pack(&pre.base, &n2);
  CHECK(same_message(&graphd__v1__path__descriptor, b1, n1, b2, n2));
  Graphd__V1__Path *back = graphd__v1__path__unpack(NULL, n2, b2);
  CHECK(back && back->n_entities == 3);
  for (size_t i = 0; back && i < back->n_entities; i++) {
    CHECK_EQ_U(back->entities[i]->id, 10 - i);
    CHECK_EQ_U(strlen(back->entities[i]->key), lens[i]);
  }
  if (back)
    graphd__v1__path__free_unpacked(back, NULL);
  free(b1);
  free(b2);
  gd_arena_free(a);
}

TAP_MAIN(T(test_singular), T(test_repeated))
