/*
 * rpc/signer: the server's Ed25519 key, which signs evidence packs
 * (rpc/pack.c; docs/ARCHITECTURE.md, "Evidence packs"). OpenSSL.
 *
 * The key is a PEM file (PKCS#8, "PRIVATE KEY"). gd_signer_open with
 * create makes one when the file does not exist (mode 0600, written to a
 * temporary file, fsynced and renamed) and writes its public key beside it
 * as PATH.pub (PEM, "PUBLIC KEY"), which is what a pack's reader needs.
 * The key id is the hex of the first 16 bytes of SHA-256 over the raw
 * 32-byte public key: packs name it, so a reader holding several public
 * keys (after a rotation) knows which one to use.
 *
 * Threads: gd_signer_sign may run on any number of threads at once.
 */
#ifndef GD_RPC_SIGNER_H
#define GD_RPC_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define GD_SIG_BYTES 64
#define GD_KEY_ID_HEX 33 /* 32 hex digits and a NUL */

typedef struct gd_signer gd_signer;

/* Errors: GD_ENOTFOUND (no file, create false), GD_EINVALID (the file is
 * not an Ed25519 private key: named), GD_EIO (cannot read or write, with
 * the reason), GD_ENOMEM. */
int gd_signer_open(const char *path, bool create, gd_signer **ret, gd_err *err);

/* sig gets the 64-byte Ed25519 signature of msg. Errors: GD_EINTERNAL. */
int gd_signer_sign(gd_signer *s, const void *msg, size_t len, uint8_t sig[GD_SIG_BYTES],
                   gd_err *err);

/* The key id (see above), and the public key as PEM text; both live as
 * long as s. */
const char *gd_signer_key_id(const gd_signer *s);
const char *gd_signer_public_pem(const gd_signer *s);

void gd_signer_free(gd_signer *s);

#endif
