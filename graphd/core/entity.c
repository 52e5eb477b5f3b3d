/*
 * Entity types and key normalisation.
 *
 * A key names an entity together with its type. Two spellings of the same
 * thing must find the same entity, so keys are normalised before any
 * lookup: white space trimmed and folded, ASCII case folded, and phone
 * numbers reduced to digits with an optional leading '+'. Only ASCII is
 * folded: Unicode case folding depends on locale tables we do not want in
 * the store's identity function, and bytes that differ in ways we do not
 * fold stay distinct (the safe direction for evidence).
 */
#include "core/entity.h"

#include <strings.h>

static const char *const gd__type_names[GD_TYPE_MAX + 1] = {
    "unknown", "seller", "address", "payment_account", "device", "phone", "email", "ip",
};

const char *gd_type_name(int type) {
  return GD_TYPE_VALID(type) ? gd__type_names[type] : "unknown";
}

int gd_type_parse(const char *name, size_t n) {
  static const char prefix[] = "ENTITY_TYPE_";
  if (n > sizeof prefix - 1 && strncasecmp(name, prefix, sizeof prefix - 1) == 0) {
    name += sizeof prefix - 1;
    n -= sizeof prefix - 1;
  }
  for (int t = GD_TYPE_MIN; t <= GD_TYPE_MAX; t++)
    if (strlen(gd__type_names[t]) == n && strncasecmp(gd__type_names[t], name, n) == 0)
      return t;
  return 0;
}

static inline int gd__is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int gd_key_normalize(int type, gd_str key, char *out, size_t *ret_n, gd_err *err) {
  size_t n = 0;

  if (key.n == 0)
    return gd_err_set(err, GD_EINVALID, "empty key");
  if (key.n > GD_KEY_MAX)
    return gd_err_set(err, GD_EINVALID, "key of %zu bytes is over the limit of %d bytes",
                      key.n, GD_KEY_MAX);
  if (!gd_utf8_valid(key.p, key.n))
    return gd_err_set(err, GD_EINVALID, "key is not valid UTF-8");

  if (type == GD_TYPE_PHONE) {
    for (size_t i = 0; i < key.n; i++) {
      unsigned char c = (unsigned char)key.p[i];
      if (c >= '0' && c <= '9')
        out[n++] = (char)c;
      else if (c == '+' && n == 0)
        out[n++] = '+';
    }
    if (n == 0 || (n == 1 && out[0] == '+'))
      return gd_err_set(err, GD_EINVALID, "phone key has no digits");
    *ret_n = n;
    return GD_OK;
  }

  int pending_space = 0;
  for (size_t i = 0; i < key.n; i++) {
    unsigned char c = (unsigned char)key.p[i];
    if (gd__is_space(c)) {
      pending_space = n > 0;
      continue;
    }
    if (pending_space) {
      out[n++] = ' ';
      pending_space = 0;
    }
    out[n++] = (char)((c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c);
  }
  if (n == 0)
    return gd_err_set(err, GD_EINVALID, "key is only white space");
  *ret_n = n;
  return GD_OK;
}

