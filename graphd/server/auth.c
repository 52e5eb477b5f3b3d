/* Bearer tokens and roles (auth.h). */
#include "server/auth.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_MIN 16
#define TOKEN_MAX 256
#define NAME_MAX_LEN (GD_PRINCIPAL_MAX - 1)

typedef struct entry {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  gd_role role;
  char name[GD_PRINCIPAL_MAX];
  char brand[GD_BRAND_MAX];
} entry;

typedef struct table {
  entry *v;
  size_t n;
} table;

struct gd_auth {
  char *path;
  pthread_rwlock_t lock;
  table t;
};

const char *gd_role_name(gd_role r) {
  switch (r) {
  case GD_ROLE_READER:
    return "reader";
  case GD_ROLE_INVESTIGATOR:
    return "investigator";
  case GD_ROLE_WRITER:
    return "writer";
  case GD_ROLE_ADMIN:
    return "admin";
  case GD_ROLE_PARTNER:
    return "partner";
  default:
    return "none";
  }
}

int gd_role_parse(const char *s, gd_role *ret) {
  for (int r = GD_ROLE_READER; r <= GD_ROLE_PARTNER; r++)
    if (strcmp(s, gd_role_name((gd_role)r)) == 0) {
      *ret = (gd_role)r;
      return 0;
    }
  return -1;
}

int gd_brand_valid(const char *s, size_t n) {
  if (n < 1 || n > GD_BRAND_MAX - 1)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '.' || ch == '_' || ch == '-'))
      return 0;
  }
  return 1;
}

static bool printable_word(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
      return false;
  return true;
}

/* Parses path into *ret. */
static int load_table(const char *path, table *ret, gd_err *err) {
  FILE *f = fopen(path, "r");
  if (!f)
    return gd_err_set(err, errno == ENOENT ? GD_ENOTFOUND : GD_EIO, "tokens file %s: %s", path,
                      strerror(errno));
  table t = {0};
  size_t cap = 0, lineno = 0;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  int rc = GD_OK;
  while (!rc && (len = getline(&line, &lcap, f)) >= 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    char *p = line;
    while (*p == ' ' || *p == '\t')
      p++;
    if (!*p || *p == '#')
      continue;
    char *save = NULL, *tok = strtok_r(p, " \t", &save), *role = strtok_r(NULL, " \t", &save),
         *name = strtok_r(NULL, " \t", &save), *attr = strtok_r(NULL, " \t", &save),
         *extra = strtok_r(NULL, " \t", &save);
    gd_role r = GD_ROLE_NONE;
    size_t tl = tok ? strlen(tok) : 0;
    const char *brand = attr && strncmp(attr, "brand=", 6) == 0 ? attr + 6 : NULL;
    bool known = role && gd_role_parse(role, &r) == 0;
    if (!tok || !role || !name || extra || (attr && !brand)) {
      rc = gd_err_set(err, GD_EINVALID, "%s:%zu: expected 'TOKEN ROLE NAME [brand=BRAND]'", path,
                      lineno);
    } else if (strncmp(tok, "x509:", 5) != 0 &&
               (tl < TOKEN_MIN || tl > TOKEN_MAX || !printable_word(tok, tl))) {
      rc = gd_err_set(err, GD_EINVALID,
                      "%s:%zu: token must be %d..%d printable characters (got %zu)", path,
                      lineno, TOKEN_MIN, TOKEN_MAX, tl);
    } else if (!known) {
      rc = gd_err_set(err, GD_EINVALID,
                      "%s:%zu: unknown role '%.32s' (reader, investigator, writer, admin, partner)",
                      path, lineno, role);
    } else if (r == GD_ROLE_PARTNER && !brand) {
      rc = gd_err_set(err, GD_EINVALID, "%s:%zu: a partner needs brand=BRAND", path, lineno);
    } else if (r != GD_ROLE_PARTNER && brand) {
      rc = gd_err_set(err, GD_EINVALID, "%s:%zu: brand= is for role partner only", path, lineno);
    } else if (brand && !gd_brand_valid(brand, strlen(brand))) {
      rc = gd_err_set(err, GD_EINVALID, "%s:%zu: brand must be 1..%d of [A-Za-z0-9._-]", path,
                      lineno, GD_BRAND_MAX - 1);
    } else if (strlen(name) > NAME_MAX_LEN || !printable_word(name, strlen(name))) {
      rc = gd_err_set(err, GD_EINVALID, "%s:%zu: name must be 1..%d printable bytes", path,
                      lineno, NAME_MAX_LEN);
    } else {
      entry e = {.role = r};
      SHA256((const unsigned char *)tok, tl, e.digest);
      snprintf(e.name, sizeof e.name, "%s", name);
      snprintf(e.brand, sizeof e.brand, "%s", brand ? brand : "");
      for (size_t i = 0; i < t.n && !rc; i++)
        if (memcmp(t.v[i].digest, e.digest, sizeof e.digest) == 0)
          rc = gd_err_set(err, GD_EINVALID, "%s:%zu: duplicate token (also for '%s')", path,
                          lineno, t.v[i].name);
      if (!rc && t.n == cap) {
        size_t nc = cap ? cap * 2 : 16;
        entry *nv = realloc(t.v, nc * sizeof *nv);
        if (!nv)
          rc = gd_err_set(err, GD_ENOMEM, "out of memory");
        else
          t.v = nv, cap = nc;
      }
      if (!rc)
        t.v[t.n++] = e;
    }
    /* Wipe the line: it held a secret. */
    OPENSSL_cleanse(line, lcap);
  }
  if (!rc && ferror(f))
    rc = gd_err_set(err, GD_EIO, "tokens file %s: read error", path);
  free(line);
  fclose(f);
  if (rc) {
    free(t.v);
    return rc;
  }
  *ret = t;
  return GD_OK;
}

int gd_auth_load(const char *path, gd_auth **ret, gd_err *err) {
  gd_auth *a = calloc(1, sizeof *a);
  if (!a || !(a->path = strdup(path))) {
    free(a);
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  }
  int rc = load_table(path, &a->t, err);
  if (rc) {
    free(a->path);
    free(a);
    return rc;
  }
  pthread_rwlock_init(&a->lock, NULL);
  *ret = a;
  return GD_OK;
}

int gd_auth_reload(gd_auth *a, size_t *ret_n, gd_err *err) {
  table t;
  int rc = load_table(a->path, &t, err);
  if (rc)
    return rc;
  pthread_rwlock_wrlock(&a->lock);
  table old = a->t;
  a->t = t;
  pthread_rwlock_unlock(&a->lock);
  free(old.v);
  if (ret_n)
    *ret_n = t.n;
  return GD_OK;
}

size_t gd_auth_count(gd_auth *a) {
  pthread_rwlock_rdlock(&a->lock);
  size_t n = a->t.n;
  pthread_rwlock_unlock(&a->lock);
  return n;
}

static int check_digest(gd_auth *a, const unsigned char *d, gd_role *ret_role,
                        char name[GD_PRINCIPAL_MAX], char brand[GD_BRAND_MAX]);

int gd_auth_check(gd_auth *a, const char *token, size_t len, gd_role *ret_role,
                  char name[GD_PRINCIPAL_MAX], char brand[GD_BRAND_MAX]) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)token, len, d);
  if (len >= 5 && memcmp(token, "x509:", 5) == 0) { /* never a bearer token */
    *ret_role = GD_ROLE_NONE;
    name[0] = brand[0] = 0;
    return GD_EUNAUTHENTICATED;
  }
  return check_digest(a, d, ret_role, name, brand);
}

int gd_auth_check_cert(gd_auth *a, const char *cn, size_t len, gd_role *ret_role,
                       char name[GD_PRINCIPAL_MAX], char brand[GD_BRAND_MAX]) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  char buf[5 + 256];
  if (len > sizeof buf - 5) {
    *ret_role = GD_ROLE_NONE;
    name[0] = brand[0] = 0;
    return GD_EUNAUTHENTICATED;
  }
  memcpy(buf, "x509:", 5);
  memcpy(buf + 5, cn, len);
  SHA256((const unsigned char *)buf, 5 + len, d);
  return check_digest(a, d, ret_role, name, brand);
}

static int check_digest(gd_auth *a, const unsigned char *d, gd_role *ret_role,
                        char name[GD_PRINCIPAL_MAX], char brand[GD_BRAND_MAX]) {
  size_t hit = (size_t)-1;
  pthread_rwlock_rdlock(&a->lock);
  for (size_t i = 0; i < a->t.n; i++) {
    /* Every entry is compared; the branch-free select keeps the index. */
    size_t eq = (size_t)(CRYPTO_memcmp(a->t.v[i].digest, d, SHA256_DIGEST_LENGTH) == 0);
    hit = (hit & (eq - 1)) | (i & (0 - eq));
  }
  int rc = GD_EUNAUTHENTICATED;
  *ret_role = GD_ROLE_NONE;
  name[0] = brand[0] = 0;
  if (hit != (size_t)-1) {
    *ret_role = a->t.v[hit].role;
    memcpy(name, a->t.v[hit].name, GD_PRINCIPAL_MAX);
    memcpy(brand, a->t.v[hit].brand, GD_BRAND_MAX);
    rc = GD_OK;
  }
  pthread_rwlock_unlock(&a->lock);
  return rc;
}

void gd_auth_free(gd_auth *a) {
  if (!a)
    return;
  if (a->t.v)
    OPENSSL_cleanse(a->t.v, a->t.n * sizeof *a->t.v);
  free(a->t.v);
  free(a->path);
  pthread_rwlock_destroy(&a->lock);
  free(a);
}
