/* The server's Ed25519 key (signer.h). */
#include "rpc/signer.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct gd_signer {
  EVP_PKEY *key;
  char key_id[GD_KEY_ID_HEX];
  char *pub_pem;
};

/* Writes text to path through path.tmp (mode), fsynced and renamed. */
static int write_file(const char *path, const char *text, size_t n, mode_t mode, gd_err *err) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return gd_err_set(err, GD_EINVALID, "signing key path too long: %s", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return gd_err_set(err, GD_EIO, "%s: %s", tmp, strerror(errno));
  bool ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
  int e = errno;
  if (close(fd) != 0 && ok) {
    ok = false;
    e = errno;
  }
  if (!ok || rename(tmp, path) != 0) {
    if (ok)
      e = errno;
    unlink(tmp);
    return gd_err_set(err, GD_EIO, "%s: %s", path, strerror(e));
  }
  return GD_OK;
}

/* PEM text of the key's private (priv) or public part; malloc'd. */
static char *pem_of(EVP_PKEY *k, bool priv, size_t *ret_n) {
  BIO *b = BIO_new(BIO_s_mem());
  char *out = NULL;
  if (!b)
    return NULL;
  int ok = priv ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                : PEM_write_bio_PUBKEY(b, k);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  if (ok && n > 0 && (out = malloc((size_t)n + 1))) {
    memcpy(out, p, (size_t)n);
    out[n] = 0;
    *ret_n = (size_t)n;
  }
  BIO_free(b);
  return out;
}

static int create_key(const char *path, gd_err *err) {
  EVP_PKEY *k = NULL;
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
  if (!c || EVP_PKEY_keygen_init(c) <= 0 || EVP_PKEY_keygen(c, &k) <= 0) {
    EVP_PKEY_CTX_free(c);
    return gd_err_set(err, GD_EINTERNAL, "cannot make an Ed25519 key");
  }
  EVP_PKEY_CTX_free(c);
  size_t n = 0, pn = 0;
  char *priv = pem_of(k, true, &n), *pub = pem_of(k, false, &pn);
  int rc = GD_OK;
  char pubpath[4096];
  if (!priv || !pub)
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
  else if (snprintf(pubpath, sizeof pubpath, "%s.pub", path) >= (int)sizeof pubpath)
    rc = gd_err_set(err, GD_EINVALID, "signing key path too long: %s", path);
  else if (!(rc = write_file(path, priv, n, 0600, err)))
    rc = write_file(pubpath, pub, pn, 0644, err);
  if (priv) {
    memset(priv, 0, n);
    free(priv);
  }
  free(pub);
  EVP_PKEY_free(k);
  return rc;
}

int gd_signer_open(const char *path, bool create, gd_signer **ret, gd_err *err) {
  FILE *f = fopen(path, "r");
  if (!f && errno == ENOENT && create) {
    int rc = create_key(path, err);
    if (rc)
      return rc;
    f = fopen(path, "r");
  }
  if (!f)
    return gd_err_set(err, errno == ENOENT ? GD_ENOTFOUND : GD_EIO, "signing key %s: %s", path,
                      strerror(errno));
  EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  if (!k || EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(k);
    return gd_err_set(err, GD_EINVALID, "signing key %s: not an Ed25519 private key in PEM",
                      path);
  }
  gd_signer *s = calloc(1, sizeof *s);
  uint8_t raw[32], d[SHA256_DIGEST_LENGTH];
  size_t rl = sizeof raw, pn = 0;
  if (!s || !(s->pub_pem = pem_of(k, false, &pn)) ||
      EVP_PKEY_get_raw_public_key(k, raw, &rl) != 1 || rl != 32) {
    if (s)
      free(s->pub_pem);
    free(s);
    EVP_PKEY_free(k);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  SHA256(raw, sizeof raw, d);
  for (int i = 0; i < 16; i++)
    snprintf(s->key_id + 2 * i, 3, "%02x", d[i]);
  s->key = k;
  *ret = s;
  return GD_OK;
}

int gd_signer_sign(gd_signer *s, const void *msg, size_t len, uint8_t sig[GD_SIG_BYTES],
                   gd_err *err) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  size_t n = GD_SIG_BYTES;
  int ok = c && EVP_DigestSignInit(c, NULL, NULL, NULL, s->key) == 1 &&
           EVP_DigestSign(c, sig, &n, msg, len) == 1 && n == GD_SIG_BYTES;
  EVP_MD_CTX_free(c);
  return ok ? GD_OK : gd_err_set(err, GD_EINTERNAL, "Ed25519 signing failed");
}

const char *gd_signer_key_id(const gd_signer *s) { return s->key_id; }
const char *gd_signer_public_pem(const gd_signer *s) { return s->pub_pem; }

void gd_signer_free(gd_signer *s) {
  if (!s)
    return;
  EVP_PKEY_free(s->key);
  free(s->pub_pem);
  free(s);
}
