/*
 * libFuzzer target: the proto3 JSON transcoder (graphd/server/pbjson.h)
 * that the HTTP/JSON gateway runs on every request body, on arbitrary
 * bytes. The first byte picks the request type of one graphd.v1 rpc; the
 * rest is the JSON. What it reads must either fail with GD_EINVALID and a
 * message (or GD_ENOMEM), or give protobuf bytes that unpack as that type
 * and that come back unchanged through JSON and back again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graphd.pb-c.h"
#include "server/pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const ProtobufCServiceDescriptor *sd = &graphd__v1__seller_graph__descriptor;
  const ProtobufCMessageDescriptor *d = sd->methods[data[0] % sd->n_methods].input;
  uint8_t *pb = NULL, *pb2 = NULL;
  size_t n = 0, n2 = 0, jn = 0;
  char *json = NULL;
  gd_err err = {0};
  int rc = gd_pbjson_to_pb(d, (const char *)data + 1, size - 1, &pb, &n, &err);
  if (rc != GD_OK) {
    if ((rc != GD_EINVALID && rc != GD_ENOMEM) || !err.msg[0])
      abort(); /* every refusal names its fault */
    free(pb);
    return 0;
  }
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, pb);
  if (!m)
    abort(); /* accepted JSON must give bytes of its type */
  protobuf_c_message_free_unpacked(m, NULL);
  if (gd_pbjson_from_pb(d, pb, n, &json, &jn, &err) == GD_OK) {
    if (gd_pbjson_to_pb(d, json, jn, &pb2, &n2, &err) != GD_OK)
      abort(); /* what it writes, it reads */
    if (n2 != n || memcmp(pb, pb2, n) != 0)
      abort(); /* and the round trip changes nothing */
  }
  free(pb);
  free(pb2);
  free(json);
  return 0;
}
