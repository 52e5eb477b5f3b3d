/*
 * server/pbjson: one generic transcoder between protobuf-c messages and
 * the proto3 JSON mapping, driven by the messages' descriptors (no code per
 * message or per rpc). The HTTP/JSON transport uses it to turn a JSON body
 * into the bytes a method's on_request takes, and a reply's bytes into
 * JSON; anything else may too. Depends on protobuf-c, json-c and OpenSSL
 * (base64) only.
 *
 * The mapping (https://protobuf.dev/programming-guides/proto3/#json), as
 * far as graphd's messages use it:
 * - a message is an object; its keys are the fields' lowerCamelCase JSON
 *   names (written), or either those or the proto field names (read);
 * - written: only fields with a non-default value (proto3: 0, false, "",
 *   empty bytes, enum 0, an empty list and an unset message are left out);
 * - 64-bit integers are written as decimal strings, 32-bit ones as
 *   numbers; either form is read;
 * - double and float are numbers, "NaN", "Infinity" and "-Infinity" are
 *   strings; doubles are written in the shortest form that reads back
 *   exactly;
 * - enums are written by value name, read by name or number;
 * - bytes are standard base64 with padding (read: standard or URL-safe,
 *   padding optional);
 * - repeated fields are arrays; null reads as the default.
 * Oneofs and proto3 `optional` fields are written when set. Maps and the
 * well-known types are not special-cased (graphd's protos use neither).
 *
 * Reading is strict: invalid JSON, trailing text, nesting deeper than
 * GD_PBJSON_MAX_DEPTH, an unknown field, a value of the wrong JSON type,
 * an integer out of its field's range, a string that is not UTF-8 (json-c
 * checks it) or bad base64 each fail with GD_EINVALID and a message that
 * names the field by its path ("ref.id: ...", "links[3].a.type: ...").
 * (json-c's strict mode, which does the parsing, still takes two things
 * JSON does not: single-quoted object keys, and bare NaN / Infinity for a
 * number; both read as their quoted forms would.)
 */
#ifndef GD_SERVER_PBJSON_H
#define GD_SERVER_PBJSON_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define GD_PBJSON_MAX_DEPTH 64

/*
 * JSON text json[0..len) (an object; an empty or all-blank text is the
 * empty message) to the packed protobuf bytes of a message of type d:
 * *ret is malloc'd (free() it; may be non-NULL with *ret_len 0).
 * Errors: GD_EINVALID (the field and the fault named), GD_ENOMEM.
 */
int gd_pbjson_to_pb(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                    uint8_t **ret, size_t *ret_len, gd_err *err);

/*
 * Packed bytes pb[0..len) of a message of type d to JSON text, one line
 * without a newline: *ret is malloc'd and NUL-terminated (free() it).
 * Errors: GD_EINVALID (bytes that do not unpack as d), GD_ENOMEM.
 */
int gd_pbjson_from_pb(const ProtobufCMessageDescriptor *d, const uint8_t *pb, size_t len,
                      char **ret, size_t *ret_len, gd_err *err);

/* The same from an unpacked message. */
int gd_pbjson_from_msg(const ProtobufCMessage *m, char **ret, size_t *ret_len, gd_err *err);

#endif
