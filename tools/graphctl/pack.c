/*
 * graphctl case export (ExportCase into a file) and graphctl verify-pack:
 * an evidence pack checked offline, trusting nothing but the public key
 * given. Checks, in order, each failure naming the part:
 *   1. MANIFEST.json and MANIFEST.sig are there, and the signature is the
 *      given key's Ed25519 signature of MANIFEST.json (the key ids named);
 *   2. every part MANIFEST.json lists is there with its size and SHA-256,
 *      and the zip holds nothing it does not list;
 *   3. audit.jsonl: each record's hash is the SHA-256 of its fields in the
 *      trail's record layout (graphd/store/audit.h), records ascend, a
 *      record right after another (seq + 1) names that one's hash as prev,
 *      every record is the case's, their count is the manifest's, and a
 *      record at the manifest's audit tip has the tip's hash.
 */
#include "graphctl.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define M_EXPORT_CASE SVC "ExportCase"
#define PARTS_MAX 128
#define PACK_READ_MAX ((size_t)1 << 30)

const optspec verify_pack_opts[] = {{"pubkey", true, O_PUBKEY}, {NULL, false, 0}};

const char verify_pack_help[] =
    "usage: graphctl verify-pack FILE --pubkey KEY\n"
    "\n"
    "Checks an evidence pack (graphctl case export, ExportCase) offline,\n"
    "trusting only KEY, the server's public key in PEM (DATA/signing-key.pem.pub\n"
    "on the server, or one kept from before a rotation):\n"
    "  - MANIFEST.sig is KEY's Ed25519 signature of MANIFEST.json;\n"
    "  - every part MANIFEST.json lists is in the pack with its size and\n"
    "    SHA-256, and the pack holds nothing else;\n"
    "  - audit.jsonl: each record's hash matches its contents, records\n"
    "    ascend, consecutive records chain (prev = the previous hash), all\n"
    "    belong to the case, and their number and the trail's tip are the\n"
    "    manifest's.\n"
    "Prints what it checked. Exit 0 when the pack holds; 65 when it does not,\n"
    "with the failing part named (\"case.html: SHA-256 does not match\n"
    "MANIFEST.json\"); 66 when FILE or KEY cannot be read.\n";

typedef struct vpart {
  char *name;
  uint8_t *data;
  size_t n;
  bool listed;
} vpart;

static void vparts_free(vpart *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].name);
    free(v[i].data);
  }
}

static vpart *find_part(vpart *v, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i].name, name) == 0)
      return &v[i];
  return NULL;
}

static int fail(const char *part, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *part, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "graphctl: verify-pack: %s: ", part);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return EXIT_DATAERR;
}

static void tohex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++)
    snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static int fromhex(const char *s, uint8_t *out, size_t n) {
  if (!s || strlen(s) != 2 * n)
    return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1)
      return -1;
    out[i] = (uint8_t)v;
  }
  return 0;
}

/* Reads the zip at path into parts. */
static int read_pack(const char *path, vpart *v, size_t *ret_n) {
  struct archive *ar = archive_read_new();
  struct archive_entry *e;
  size_t n = 0;
  int rc = 0;
  FILE *probe = fopen(path, "rb");
  if (!probe) {
    fprintf(stderr, "graphctl: verify-pack: %s: %s\n", path, strerror(errno));
    archive_read_free(ar);
    return EXIT_NOINPUT;
  }
  fclose(probe);
  archive_read_support_format_zip(ar);
  if (archive_read_open_filename(ar, path, 1 << 16) != ARCHIVE_OK) {
    fprintf(stderr, "graphctl: verify-pack: %s: %s\n", path, archive_error_string(ar));
    archive_read_free(ar);
    return EXIT_DATAERR;
  }
  int r;
  while ((r = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
    if (n == PARTS_MAX) {
      rc = fail(path, "more than %d parts", PARTS_MAX);
      break;
    }
    la_int64_t size = archive_entry_size(e);
    if (size < 0 || (size_t)size > PACK_READ_MAX) {
      rc = fail(archive_entry_pathname(e), "size out of range");
      break;
    }
    v[n].name = xstrdup(archive_entry_pathname(e));
    v[n].data = xcalloc((size_t)size + 1, 1);
    v[n].n = (size_t)size;
    if (archive_read_data(ar, v[n].data, (size_t)size) != (la_ssize_t)size) {
      rc = fail(v[n].name, "cannot be read from the zip: %s", archive_error_string(ar));
      n++;
      break;
    }
    if (find_part(v, n, v[n].name)) {
      rc = fail(v[n].name, "twice in the pack");
      n++;
      break;
    }
    n++;
  }
  if (!rc && r != ARCHIVE_EOF)
    rc = fail(path, "not a readable zip: %s", archive_error_string(ar));
  archive_read_free(ar);
  *ret_n = n;
  return rc;
}

static EVP_PKEY *read_pubkey(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "graphctl: verify-pack: --pubkey %s: %s\n", path, strerror(errno));
    return NULL;
  }
  EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
  fclose(f);
  if (!k || EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
    fprintf(stderr, "graphctl: verify-pack: --pubkey %s: not an Ed25519 public key in PEM\n",
            path);
    EVP_PKEY_free(k);
    return NULL;
  }
  return k;
}

static void key_id(EVP_PKEY *k, char out[33]) {
  uint8_t raw[32], d[32];
  size_t rl = sizeof raw;
  out[0] = 0;
  if (EVP_PKEY_get_raw_public_key(k, raw, &rl) != 1 || rl != 32)
    return;
  SHA256(raw, rl, d);
  tohex(d, 16, out);
}

static const char *jget_str(json_object *o, const char *k) {
  json_object *f;
  return json_object_object_get_ex(o, k, &f) && json_object_is_type(f, json_type_string)
             ? json_object_get_string(f)
             : NULL;
}

static bool jget_u64(json_object *o, const char *k, uint64_t *ret) {
  json_object *f;
  if (!json_object_object_get_ex(o, k, &f) || !json_object_is_type(f, json_type_int))
    return false;
  *ret = json_object_get_uint64(f);
  return true;
}

/* The SHA-256 of an audit record's fields in the trail's layout
 * (graphd/store/audit.h): u64 seq, i64 time, i32 status, u8 role, 7 zero
 * bytes, five u16 lengths, the five strings, prev[32]. */
static int record_hash(json_object *o, const uint8_t prev[32], uint8_t out[32]) {
  static const char *names[5] = {"principal", "peer", "case_id", "method", "target"};
  uint64_t seq, time, st, role;
  json_object *f;
  if (!jget_u64(o, "seq", &seq) || !json_object_object_get_ex(o, "time_ms", &f))
    return -1;
  time = (uint64_t)json_object_get_int64(f);
  if (!json_object_object_get_ex(o, "status", &f))
    return -1;
  st = (uint64_t)(uint32_t)json_object_get_int(f);
  if (!jget_u64(o, "role", &role))
    return -1;
  uint8_t hdr[28 + 10] = {0};
  for (int i = 0; i < 8; i++) {
    hdr[i] = (uint8_t)(seq >> (8 * i));
    hdr[8 + i] = (uint8_t)(time >> (8 * i));
  }
  for (int i = 0; i < 4; i++)
    hdr[16 + i] = (uint8_t)(st >> (8 * i));
  hdr[20] = (uint8_t)role;
  const char *s[5];
  size_t l[5];
  for (int i = 0; i < 5; i++) {
    if (!json_object_object_get_ex(o, names[i], &f) || !json_object_is_type(f, json_type_string))
      return -1;
    s[i] = json_object_get_string(f);
    l[i] = (size_t)json_object_get_string_len(f);
    if (l[i] > 0xffff)
      return -1;
    hdr[28 + 2 * i] = (uint8_t)l[i];
    hdr[28 + 2 * i + 1] = (uint8_t)(l[i] >> 8);
  }
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned outl = 0;
  int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
           EVP_DigestUpdate(c, hdr, sizeof hdr) == 1;
  for (int i = 0; i < 5 && ok; i++)
    ok = EVP_DigestUpdate(c, s[i], l[i]) == 1;
  ok = ok && EVP_DigestUpdate(c, prev, 32) == 1 && EVP_DigestFinal_ex(c, out, &outl) == 1 &&
       outl == 32;
  EVP_MD_CTX_free(c);
  return ok ? 0 : -1;
}

static int check_audit(vpart *a, json_object *manifest, uint64_t case_id, size_t *ret_n,
                       size_t *ret_links) {
  char idtext[24];
  snprintf(idtext, sizeof idtext, "%" PRIu64, case_id);
  uint64_t want = 0, tip_seq = 0, last_seq = 0;
  uint8_t last_hash[32] = {0}, tip_hash[32];
  json_object *tip;
  jget_u64(manifest, "audit_records", &want);
  bool have_tip = json_object_object_get_ex(manifest, "audit_tip", &tip) &&
                  jget_u64(tip, "seq", &tip_seq) && tip_seq &&
                  fromhex(jget_str(tip, "hash"), tip_hash, 32) == 0;
  size_t n = 0, links = 0;
  char *text = (char *)a->data, *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    json_object *o = json_tokener_parse(line);
    uint8_t prev[32], hash[32], calc[32];
    uint64_t seq = 0;
    const char *cid;
    int bad = 0;
    if (!o || !jget_u64(o, "seq", &seq) || fromhex(jget_str(o, "prev"), prev, 32) ||
        fromhex(jget_str(o, "hash"), hash, 32) || record_hash(o, prev, calc))
      bad = fail("audit.jsonl", "line %zu: not an audit record", n + 1);
    else if (memcmp(calc, hash, 32) != 0)
      bad = fail("audit.jsonl", "record seq %" PRIu64 ": its hash does not match its contents",
                 seq);
    else if (n && seq <= last_seq)
      bad = fail("audit.jsonl", "record seq %" PRIu64 ": out of order after %" PRIu64, seq,
                 last_seq);
    else if (n && seq == last_seq + 1 && memcmp(prev, last_hash, 32) != 0)
      bad = fail("audit.jsonl",
                 "record seq %" PRIu64 ": prev is not the hash of record %" PRIu64
                 " (the chain is broken)",
                 seq, last_seq);
    else if (!(cid = jget_str(o, "case_id")) || strcmp(cid, idtext) != 0)
      bad = fail("audit.jsonl", "record seq %" PRIu64 ": not a record of case %s", seq, idtext);
    else if (have_tip && seq > tip_seq)
      bad = fail("audit.jsonl", "record seq %" PRIu64 ": after the manifest's audit tip %" PRIu64,
                 seq, tip_seq);
    else if (have_tip && seq == tip_seq && memcmp(hash, tip_hash, 32) != 0)
      bad = fail("audit.jsonl", "record seq %" PRIu64 ": not the manifest's audit tip", seq);
    if (o)
      json_object_put(o);
    if (bad)
      return bad;
    if (n && seq == last_seq + 1)
      links++;
    last_seq = seq;
    memcpy(last_hash, hash, 32);
    n++;
  }
  if (n != want)
    return fail("audit.jsonl", "%zu records, MANIFEST.json says %" PRIu64, n, want);
  *ret_n = n;
  *ret_links = links;
  return 0;
}

int run_verify_pack(ctl *c, const command *cmd, args *a) {
  (void)c;
  int rc;
  if (a->npos < 1)
    return usage_error(cmd, "verify-pack needs FILE");
  if ((rc = no_more_args(cmd, a, 1)))
    return rc;
  if (!a->pubkey)
    return usage_error(cmd, "verify-pack needs --pubkey KEY");
  EVP_PKEY *key = read_pubkey(a->pubkey);
  if (!key)
    return EXIT_NOINPUT;
  vpart *v = xcalloc(PARTS_MAX, sizeof *v);
  size_t n = 0;
  json_object *manifest = NULL;
  char kid[33];
  key_id(key, kid);
  if ((rc = read_pack(a->pos[0], v, &n)))
    goto out;
  vpart *mf = find_part(v, n, "MANIFEST.json"), *sig = find_part(v, n, "MANIFEST.sig");
  if (!mf) {
    rc = fail("MANIFEST.json", "missing");
    goto out;
  }
  if (!sig) {
    rc = fail("MANIFEST.sig", "missing");
    goto out;
  }
  mf->listed = sig->listed = true;
  manifest = json_tokener_parse((const char *)mf->data);
  const char *named = manifest ? jget_str(manifest, "key_id") : NULL;
  EVP_MD_CTX *mc = EVP_MD_CTX_new();
  bool ok = mc && sig->n == 64 && EVP_DigestVerifyInit(mc, NULL, NULL, NULL, key) == 1 &&
            EVP_DigestVerify(mc, sig->data, sig->n, mf->data, mf->n) == 1;
  EVP_MD_CTX_free(mc);
  if (!ok) {
    rc = fail("MANIFEST.sig",
              "not a signature of MANIFEST.json by the given key (key id %s; the pack names "
              "%s)",
              kid, named ? named : "none");
    goto out;
  }
  uint64_t case_id = 0;
  json_object *parts;
  if (!manifest || !json_object_object_get_ex(manifest, "parts", &parts) ||
      !json_object_is_type(parts, json_type_array) || !jget_u64(manifest, "case_id", &case_id)) {
    rc = fail("MANIFEST.json", "not a pack manifest");
    goto out;
  }
  size_t np = json_object_array_length(parts);
  for (size_t i = 0; i < np; i++) {
    json_object *p = json_object_array_get_idx(parts, i);
    const char *name = jget_str(p, "name"), *sha = jget_str(p, "sha256");
    uint64_t bytes = 0;
    uint8_t want[32], got[32];
    if (!name || fromhex(sha, want, 32) || !jget_u64(p, "bytes", &bytes)) {
      rc = fail("MANIFEST.json", "parts[%zu]: malformed", i);
      goto out;
    }
    vpart *x = find_part(v, n, name);
    if (!x) {
      rc = fail(name, "listed in MANIFEST.json but not in the pack");
      goto out;
    }
    x->listed = true;
    SHA256(x->data, x->n, got);
    if (x->n != bytes) {
      rc = fail(name, "%zu bytes, MANIFEST.json says %" PRIu64, x->n, bytes);
      goto out;
    }
    if (memcmp(got, want, 32) != 0) {
      rc = fail(name, "SHA-256 does not match MANIFEST.json");
      goto out;
    }
  }
  for (size_t i = 0; i < n; i++)
    if (!v[i].listed) {
      rc = fail(v[i].name, "in the pack but not listed in MANIFEST.json");
      goto out;
    }
  size_t nrec = 0, links = 0;
  vpart *au = find_part(v, n, "audit.jsonl");
  if (!au) {
    rc = fail("audit.jsonl", "missing");
    goto out;
  }
  if ((rc = check_audit(au, manifest, case_id, &nrec, &links)))
    goto out;
  printf("%s: OK: case %" PRIu64 ", %zu parts, each SHA-256 as MANIFEST.json lists; "
         "signature by key %s; %zu audit records of the case, hashes checked, %zu consecutive "
         "pairs chained\n",
         a->pos[0], case_id, np, kid, nrec, links);
out:
  if (manifest)
    json_object_put(manifest);
  vparts_free(v, n);
  free(v);
  EVP_PKEY_free(key);
  return rc;
}

int case_export(ctl *c, const command *cmd, args *a, uint64_t id) {
  if (!a->out)
    return usage_error(cmd, "export: -o FILE is required");
  Graphd__V1__ExportCaseRequest req = GRAPHD__V1__EXPORT_CASE_REQUEST__INIT;
  req.case_id = id;
  gc_status st;
  gc_sstream *s = NULL;
  if (gc_sstream_open(c->client, M_EXPORT_CASE, &req.base, c->timeout_ms, &s, &st) != 0)
    return report_status(c, &st);
  outfile of;
  int rc = outfile_open(&of, a->out);
  if (rc) {
    gc_sstream_free(s);
    return rc;
  }
  uint64_t total = 0, got = 0;
  char name[128] = "";
  for (;;) {
    ProtobufCMessage *m = NULL;
    if (gc_sstream_next(s, &graphd__v1__pack_chunk__descriptor, &m, &st) != 0) {
      rc = report_status(c, &st);
      break;
    }
    if (!m)
      break;
    const Graphd__V1__PackChunk *ch = (const Graphd__V1__PackChunk *)m;
    if (ch->file_name[0]) {
      snprintf(name, sizeof name, "%s", ch->file_name);
      total = ch->total_bytes;
    }
    if (ch->data.len && fwrite(ch->data.data, 1, ch->data.len, of.f) != ch->data.len)
      rc = EX_IOERR;
    got += ch->data.len;
    protobuf_c_message_free_unpacked(m, NULL);
    if (rc)
      break;
  }
  gc_sstream_free(s);
  if (!rc && got != total) {
    fprintf(stderr, "graphctl: the pack ended at %" PRIu64 " of %" PRIu64 " bytes\n", got, total);
    rc = EXIT_RPC;
  }
  rc = outfile_close(&of, rc);
  if (!rc)
    fprintf(stderr, "graphctl: %s, %" PRIu64 " bytes, to %s\n", name, got, a->out);
  return rc;
}
