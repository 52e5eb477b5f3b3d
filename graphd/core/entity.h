/*
 * Entity types, limits and key normalisation: what an entity's identity
 * is. Shared by the daemon and by its tools (graphctl checks input files
 * with the very same functions), so the two cannot disagree.
 */
#ifndef GD_CORE_ENTITY_H
#define GD_CORE_ENTITY_H

#include <stddef.h>

#include "core/error.h"
#include "core/util.h"

/* Entity types; numbers match graphd.v1.EntityType. */
typedef enum {
  GD_TYPE_SELLER = 1,
  GD_TYPE_ADDRESS = 2,
  GD_TYPE_PAYMENT_ACCOUNT = 3,
  GD_TYPE_DEVICE = 4,
  GD_TYPE_PHONE = 5,
  GD_TYPE_EMAIL = 6,
  GD_TYPE_IP = 7,
} gd_etype;

#define GD_TYPE_MIN 1
#define GD_TYPE_MAX 7
#define GD_TYPE_VALID(t) ((t) >= GD_TYPE_MIN && (t) <= GD_TYPE_MAX)

/* Lower-case name of a type ("payment_account"), or "unknown". */
const char *gd_type_name(int type);
/* Parses a lower-case or upper-case type name; returns 0 if unknown. */
int gd_type_parse(const char *name, size_t n);

/* Limits on what the store accepts. */
#define GD_KEY_MAX 4096        /* bytes of a key before normalisation */
#define GD_ATTR_NAME_MAX 128   /* bytes of an attribute name */
#define GD_ATTR_VALUE_MAX 4096 /* bytes of an attribute value */
#define GD_LABEL_MAX 128       /* bytes of a label */
#define GD_ATTRS_MAX 64        /* attributes per entity */
#define GD_LABELS_MAX 64       /* labels per entity */
#define GD_REQUEST_ID_MAX 128  /* bytes of a request id */

/*
 * Normalises `key` for `type` into `out` (capacity at least key.n bytes;
 * normalisation never lengthens a key): ASCII white space trimmed and inner
 * runs folded to one space, ASCII letters lower-cased; PHONE keeps only
 * digits and one leading '+'. Sets *ret_n to the new length.
 * Errors: GD_EINVALID if the key is empty (before or after normalisation),
 * longer than GD_KEY_MAX, or not valid UTF-8. Messages name no field: the
 * caller prefixes the field path.
 */
int gd_key_normalize(int type, gd_str key, char *out, size_t *ret_n, gd_err *err);

#endif
