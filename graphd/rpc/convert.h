/*
 * Conversions between protobuf-c messages and store types, with
 * validation. Every error message starts with the field path.
 */
#ifndef GD_RPC_CONVERT_H
#define GD_RPC_CONVERT_H

#include "core/arena.h"
#include "graphd.pb-c.h"
#include "store/store.h"


/*
 * Validates a ProtobufC string field (protobuf-c 1.4 checks no UTF-8):
 * at most max bytes, valid UTF-8, and non-empty when required.
 */
int gd_pb_check_str(const char *s, size_t max, bool required, gd_err *err, const char *field);

/* Converts an EntityRef: id, or (type, key) with the key normalised into
 * arena memory. Errors: GD_EINVALID naming `field`. */
int gd_pb_ref(const Graphd__V1__EntityRef *in, gd_arena **a, gd_ref *ret, gd_err *err,
              const char *field);

/* Validates a label (1..GD_LABEL_MAX bytes, UTF-8, no control chars). */
int gd_pb_check_label(const char *s, gd_err *err, const char *field);

/* Validates a TimeWindow (may be NULL). */
int gd_pb_window(const Graphd__V1__TimeWindow *w, int64_t *since, int64_t *until, gd_err *err,
                 const char *field);

/*
 * Converts an UpsertRequest into *ret (arrays and keys in arena memory,
 * strings pointing into `in`, which must outlive *ret).
 * Errors: GD_EINVALID (field named), GD_ERESOURCE (over max_items).
 */
int gd_pb_upsert(const Graphd__V1__UpsertRequest *in, size_t max_items, gd_arena **a,
                 gd_upsert *ret, gd_err *err);

/* Fills *out from an entity view; with_attrs = include attributes. Strings
 * point into the view (pack before the read transaction ends); arrays come
 * from the arena. */
int gd_pb_entity(const gd_entity_view *v, bool with_attrs, gd_arena **a,
                 Graphd__V1__Entity *out);

/*
 * A sub-message packed once, to be named by many parents. protobuf-c packs
 * a message reached through several pointers once per pointer, walking its
 * descriptor each time (twice: size, then bytes); a reply that names the
 * same entity on every step of its evidence pays that for each mention.
 *
 * Packs m, with its length prefix, into arena memory and describes it in
 * *out as a length-delimited field number `field` (wire type 2). A parent
 * whose field `field` is a message field of m's type, left NULL (or, when
 * repeated, empty), takes it as its unknown_fields (n_unknown_fields 1,
 * or an array of them, in order, for a repeated field): protobuf-c copies
 * unknown fields verbatim after the known ones, so the parent's bytes are
 * a valid encoding of the same message with the field set (parsers accept
 * fields in any order). Only for messages that are packed, never read
 * back as structs. Errors: GD_ENOMEM.
 */
int gd_pb_prepack(const ProtobufCMessage *m, uint32_t field, gd_arena **a,
                  ProtobufCMessageUnknownField *out);

#endif
