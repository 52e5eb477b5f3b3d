/*
 * The `ekey` table encoding (normalisation itself is core/entity.c).
 *
 * ekey rows are keyed by one type byte followed by the normalised key.
 * LMDB keys stop at 511 bytes, so a normalised key longer than
 * GD__EKEY_INLINE_MAX bytes is stored as (type | 0x80) followed by its
 * SHA-256; the full text stays in the entity record and is compared on
 * lookup.
 */
#include <openssl/sha.h>

#include "store/store_int.h"

size_t gd__ekey_encode(int type, gd_str key, uint8_t *buf) {
  if (key.n <= GD__EKEY_INLINE_MAX) {
    buf[0] = (uint8_t)type;
    memcpy(buf + 1, key.p, key.n);
    return 1 + key.n;
  }
  buf[0] = (uint8_t)(type | 0x80);
  SHA256((const unsigned char *)key.p, key.n, buf + 1);
  return 1 + SHA256_DIGEST_LENGTH;
}
