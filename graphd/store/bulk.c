/*
 * Bulk load: an empty graph written in one transaction by sorted appends.
 *
 * Online upserts pay for a B-tree search per key and copy a page per row
 * they touch; at a million sellers the rows of one batch land on as many
 * different pages, so the cost per link grows with the store. A first
 * load needs none of that. gd_bulk_add interns every (type, key) into a
 * dense index (tid, in order of first appearance: entity id = next_id +
 * tid) and keeps links as tid pairs; gd_store_bulk_apply then writes
 *
 *   adj     by src tid: a counting sort puts each entity's half-edges
 *           together, a small sort orders them by (neighbour type, id),
 *           repeats merge into one row; MDB_APPEND / MDB_APPENDDUP;
 *   entity  in tid order (ids ascend with tids), degree and seller count
 *           from the adjacency pass, attributes and labels merged from the
 *           entity items in arrival order as ent_modify would;
 *   ekey    sorted by the encoded key: an LSD radix sort on a 12-byte
 *           prefix, runs of equal prefixes finished with memcmp;
 *   label, request  sorted, appended.
 *
 * Every table is empty when it starts (checked), so every put is an
 * append and every page is written once. Totals are those the upserts
 * would have reported one by one into the empty store: a link or entity
 * is created by the message it first appears in.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/sort.h"
#include "store/store_int.h"

typedef struct blink {
  uint32_t a, b, msg, pad;
  int64_t seen; /* 0 = the commit time */
} blink;

/* An entity item: its attributes and labels are in sbuf at off, as
 * (u16 name len, u16 value len, name, value)... then (u16 len, label)... */
typedef struct bitem {
  uint32_t tid, msg;
  int64_t seen;
  size_t off;
  uint16_t nattrs, nlabels;
} bitem;

typedef struct bent {
  uint64_t koff : 40; /* in kbuf */
  uint64_t type : 8;
  uint64_t klen : 16;
} bent;

typedef struct bmsg {
  size_t rid_off; /* in sbuf */
  uint32_t rid_len;
  bool dup;
  uint64_t nlinks;
} bmsg;

struct gd_bulk {
  size_t max_bytes;
  /* Interned entities, by tid: where the key is, and its type and length
   * in one record, so that a probe touches one line before the key. */
  char *kbuf;
  size_t klen, kcap;
  bent *ents;
  uint32_t *first_msg;
  size_t n, ncap;
  /* Open addressing, a power of two: (low 32 bits of the hash << 32) |
   * (tid + 1). The stored bits place an entry when the table grows (for
   * up to 2^32 slots), and filter probes before any key is read. */
  uint64_t *slots;
  size_t scap;
  blink *links;
  size_t nlinks, lcap;
  bitem *items;
  size_t nitems, icap;
  char *sbuf;
  size_t slen, sbcap;
  bmsg *msgs;
  size_t nmsgs, mcap;
  uint64_t *rslots; /* request ids, as slots: (low 32 bits of the hash << 32) | (msg + 1) */
  size_t rscap, nrids;
  uint64_t duplicates;
};

/* ---- memory ----------------------------------------------------------------- */

/*
 * The load's arrays are large (hundreds of MB at a million sellers),
 * touched at random (the key table) or written once in order, and many
 * grow while the stream comes in. Each is a mapping of its own:
 *
 * - grown with mremap: the kernel moves page tables instead of realloc
 *   copying hundreds of MB into freshly faulted pages (a fifth of the
 *   time the stream took at a million sellers);
 * - from 4 MiB on, advised as a whole to use transparent huge pages
 *   (MADV_HUGEPAGE; a no-op where they are off): with 4 KiB pages every
 *   first touch is a page fault and every probe a TLB miss, both dear on
 *   a virtual machine. As a whole: advising part of a mapping splits it
 *   in two of different kinds, and mremap then fails;
 * - apart from the heap, so that no advice outlives the load in memory
 *   malloc hands out later (LMDB's dirty pages).
 *
 * New pages read as zero. vm_free releases one, given its size.
 */
#define BIG_HUGE ((size_t)2 << 20)

static size_t vm_round(size_t n) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  return n ? (n + pg - 1) / pg * pg : pg;
}

static void *vm_resize(void *p, size_t old_bytes, size_t bytes) {
  void *q = p ? mremap(p, vm_round(old_bytes), vm_round(bytes), MREMAP_MAYMOVE)
              : mmap(NULL, vm_round(bytes), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
  if (q == MAP_FAILED)
    return NULL;
  /* The whole mapping: advising part of it would split it in two
   * mappings of different kinds, and mremap moves only one mapping. */
  if (vm_round(bytes) >= 2 * BIG_HUGE)
    (void)madvise(q, vm_round(bytes), MADV_HUGEPAGE);
  return q;
}

static void vm_free(void *p, size_t bytes) {
  if (p)
    munmap(p, vm_round(bytes));
}

size_t gd_bulk_bytes(const gd_bulk *b) {
  return b->kcap + b->ncap * (sizeof(bent) + 4) + b->scap * 8 + b->lcap * sizeof(blink) +
         b->icap * sizeof(bitem) + b->sbcap + b->mcap * sizeof(bmsg) + b->rscap * 8;
}

int gd_bulk_new(size_t max_bytes, gd_bulk **ret, gd_err *err) {
  gd_bulk *b = calloc(1, sizeof *b);
  if (!b)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  b->max_bytes = max_bytes;
  *ret = b;
  return GD_OK;
}

void gd_bulk_free(gd_bulk *b) {
  if (!b)
    return;
  vm_free(b->kbuf, b->kcap);
  vm_free(b->ents, b->ncap * sizeof *b->ents);
  vm_free(b->first_msg, b->ncap * sizeof *b->first_msg);
  vm_free(b->slots, b->scap * 8);
  vm_free(b->links, b->lcap * sizeof *b->links);
  vm_free(b->items, b->icap * sizeof *b->items);
  vm_free(b->sbuf, b->sbcap);
  vm_free(b->msgs, b->mcap * sizeof *b->msgs);
  vm_free(b->rslots, b->rscap * 8);
  free(b);
}

/* ---- growth ----------------------------------------------------------------- */

static int over(const gd_bulk *b, size_t more, gd_err *err) {
  size_t have = gd_bulk_bytes(b);
  if (b->max_bytes && have + more > b->max_bytes)
    return gd_err_set(err, GD_ERESOURCE,
                      "the load would hold over %zu bytes of memory (%zu entities, %zu links "
                      "so far; the bulk load limit)",
                      b->max_bytes, b->n, b->nlinks);
  return GD_OK;
}

/* Grows *p (element size sz, capacity *cap) to hold `need` elements. */
static int grow(const gd_bulk *b, void **p, size_t *cap, size_t need, size_t sz, gd_err *err) {
  if (need <= *cap)
    return GD_OK;
  size_t ncap = *cap ? *cap : 1024;
  while (ncap < need)
    ncap *= 2;
  int rc = over(b, (ncap - *cap) * sz, err);
  if (rc)
    return rc;
  void *q = vm_resize(*p, *cap * sz, ncap * sz);
  if (!q)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  *p = q;
  *cap = ncap;
  return GD_OK;
}

static int sbuf_put(gd_bulk *b, const void *p, size_t n, gd_err *err) {
  int rc = grow(b, (void **)&b->sbuf, &b->sbcap, b->slen + n, 1, err);
  if (rc)
    return rc;
  if (n)
    memcpy(b->sbuf + b->slen, p, n);
  b->slen += n;
  return GD_OK;
}

static int sbuf_str(gd_bulk *b, gd_str s, gd_err *err) {
  uint16_t n = (uint16_t)s.n;
  int rc = sbuf_put(b, &n, 2, err);
  return rc ? rc : sbuf_put(b, s.p, s.n, err);
}

static gd_str sbuf_get(const gd_bulk *b, size_t *off) {
  uint16_t n;
  memcpy(&n, b->sbuf + *off, 2);
  gd_str s = {b->sbuf + *off + 2, n};
  *off += 2 + (size_t)n;
  return s;
}

/* ---- interning ------------------------------------------------------------- */

static inline gd_str tkey(const gd_bulk *b, size_t tid) {
  return (gd_str){b->kbuf + b->ents[tid].koff, b->ents[tid].klen};
}

static inline int ttype(const gd_bulk *b, size_t tid) { return (int)b->ents[tid].type; }

/*
 * Doubles an open-addressing table (a power of two, first `first` slots)
 * whose entries are (low 32 bits of the key's hash << 32) | (value + 1):
 * each entry lands where its stored hash bits say, so no key is read.
 * Tables of up to 2^32 slots.
 */
static int table_grow(const gd_bulk *b, uint64_t **slots, size_t *cap, size_t first,
                      gd_err *err) {
  size_t ncap = *cap ? *cap * 2 : first;
  if (ncap > (UINT64_C(1) << 32))
    return gd_err_set(err, GD_ERESOURCE, "a bulk load takes at most 2^31 entities or messages");
  int rc = over(b, (ncap - *cap) * 8, err);
  if (rc)
    return rc;
  uint64_t *ns = vm_resize(NULL, 0, ncap * 8);
  if (!ns)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  for (size_t i = 0; i < *cap; i++) {
    uint64_t v = (*slots)[i];
    if (!v)
      continue;
    size_t j = (v >> 32) & (ncap - 1);
    while (ns[j])
      j = (j + 1) & (ncap - 1);
    ns[j] = v;
  }
  vm_free(*slots, *cap * 8);
  *slots = ns;
  *cap = ncap;
  return GD_OK;
}

/* The tid of (type, key), whose gd__key_hash is h, interned on first
 * sight in message msg. */
static int intern_h(gd_bulk *b, int type, gd_str key, uint64_t h, uint32_t msg, uint32_t *ret,
                    gd_err *err) {
  int rc;
  if (key.n > UINT16_MAX)
    return gd_err_set(err, GD_EINVALID, "key too long (%zu bytes, at most %u)", key.n,
                      (unsigned)UINT16_MAX);
  if ((b->n + 1) * 2 > b->scap && (rc = table_grow(b, &b->slots, &b->scap, 4096, err)))
    return rc;
  uint64_t tag = (h & UINT64_C(0xffffffff)) << 32;
  size_t j = h & (b->scap - 1);
  for (;; j = (j + 1) & (b->scap - 1)) {
    uint64_t v = b->slots[j];
    if (!v)
      break;
    if ((v & ~UINT64_C(0xffffffff)) != tag)
      continue;
    size_t tid = (uint32_t)v - 1;
    if (ttype(b, tid) == type && gd_str_eq(tkey(b, tid), key)) {
      *ret = (uint32_t)tid;
      return GD_OK;
    }
  }
  if (b->n >= (UINT64_C(1) << 31))
    return gd_err_set(err, GD_ERESOURCE, "a bulk load takes at most 2^31 entities");
  if (b->klen + key.n >= (UINT64_C(1) << 40))
    return gd_err_set(err, GD_ERESOURCE, "a bulk load takes at most 2^40 bytes of keys");
  if (b->n == b->ncap) {
    size_t ncap = b->ncap ? b->ncap * 2 : 4096;
    if ((rc = over(b, (ncap - b->ncap) * (sizeof(bent) + 4), err)))
      return rc;
    bent *ne = vm_resize(b->ents, b->ncap * sizeof *ne, ncap * sizeof *ne);
    if (ne)
      b->ents = ne;
    uint32_t *fm = vm_resize(b->first_msg, b->ncap * sizeof *fm, ncap * sizeof *fm);
    if (fm)
      b->first_msg = fm;
    if (!ne || !fm)
      return gd_err_set(err, GD_ENOMEM, "out of memory");
    b->ncap = ncap;
  }
  if ((rc = grow(b, (void **)&b->kbuf, &b->kcap, b->klen + key.n + 1, 1, err)))
    return rc;
  memcpy(b->kbuf + b->klen, key.p, key.n);
  size_t tid = b->n++;
  b->ents[tid] = (bent){.koff = b->klen, .type = (uint64_t)type, .klen = key.n};
  b->first_msg[tid] = msg;
  b->klen += key.n;
  b->slots[j] = tag | (tid + 1);
  *ret = (uint32_t)tid;
  return GD_OK;
}

static int intern(gd_bulk *b, int type, gd_str key, uint32_t msg, uint32_t *ret, gd_err *err) {
  return intern_h(b, type, key, gd__key_hash(type, key), msg, ret, err);
}

/* True when request id rid (of message msg) came before; else records it. */
static int request_seen(gd_bulk *b, gd_str rid, uint32_t msg, bool *ret, gd_err *err) {
  int rc;
  if ((b->nrids + 1) * 2 > b->rscap && (rc = table_grow(b, &b->rslots, &b->rscap, 1024, err)))
    return rc;
  uint64_t h = gd__key_hash(0, rid), tag = (h & UINT64_C(0xffffffff)) << 32;
  size_t j = h & (b->rscap - 1);
  for (;; j = (j + 1) & (b->rscap - 1)) {
    uint64_t v = b->rslots[j];
    if (!v)
      break;
    const bmsg *m = &b->msgs[(uint32_t)v - 1];
    if ((v & ~UINT64_C(0xffffffff)) == tag &&
        gd_str_eq((gd_str){b->sbuf + m->rid_off, m->rid_len}, rid)) {
      *ret = true;
      return GD_OK;
    }
  }
  b->rslots[j] = tag | ((uint64_t)msg + 1);
  b->nrids++;
  *ret = false;
  return GD_OK;
}

int gd_bulk_add(gd_bulk *b, const gd_upsert *u, bool *ret_duplicate, gd_err *err) {
  int rc;
  *ret_duplicate = false;
  if (b->nmsgs >= UINT32_MAX - 1)
    return gd_err_set(err, GD_ERESOURCE, "a bulk load takes at most %u messages",
                      (unsigned)(UINT32_MAX - 1));
  if ((rc = grow(b, (void **)&b->msgs, &b->mcap, b->nmsgs + 1, sizeof *b->msgs, err)))
    return rc;
  uint32_t msg = (uint32_t)b->nmsgs;
  bmsg *m = &b->msgs[msg];
  memset(m, 0, sizeof *m);
  if (u->request_id.n) {
    if (u->request_id.n > UINT32_MAX)
      return gd_err_set(err, GD_EINVALID, "request_id too long");
    m->rid_off = b->slen;
    m->rid_len = (uint32_t)u->request_id.n;
    if ((rc = sbuf_put(b, u->request_id.p, u->request_id.n, err)))
      return rc;
    b->nmsgs++; /* request_seen reads the message */
    bool dup = false;
    if ((rc = request_seen(b, u->request_id, msg, &dup, err)))
      return rc;
    if (dup) {
      b->slen = b->msgs[msg].rid_off; /* keep no copy */
      b->msgs[msg].rid_len = 0;
      b->msgs[msg].dup = true;
      b->duplicates++;
      *ret_duplicate = true;
      return GD_OK;
    }
  } else {
    b->nmsgs++;
  }

  if ((rc = grow(b, (void **)&b->items, &b->icap, b->nitems + u->nentities, sizeof *b->items,
                 err)))
    return rc;
  for (size_t i = 0; i < u->nentities; i++) {
    const gd_entity_in *in = &u->entities[i];
    bitem it = {.msg = msg, .seen = in->seen, .off = b->slen};
    if (in->nattrs > UINT16_MAX || in->nlabels > UINT16_MAX)
      return gd_err_set(err, GD_EINVALID, "entities[%zu]: too many attributes or labels", i);
    if ((rc = intern(b, in->type, in->key, msg, &it.tid, err))) {
      gd_err_prefix(err, "entities[%zu]", i);
      return rc;
    }
    it.nattrs = (uint16_t)in->nattrs;
    it.nlabels = (uint16_t)in->nlabels;
    for (size_t k = 0; k < in->nattrs; k++)
      if ((in->attrs[k].name.n > UINT16_MAX || in->attrs[k].value.n > UINT16_MAX) ||
          (rc = sbuf_str(b, in->attrs[k].name, err)) ||
          (rc = sbuf_str(b, in->attrs[k].value, err)))
        return rc ? rc
                  : gd_err_set(err, GD_EINVALID, "entities[%zu].attributes[%zu]: too long", i,
                               k);
    for (size_t k = 0; k < in->nlabels; k++)
      if ((rc = sbuf_str(b, in->labels[k], err)))
        return rc;
    b->items[b->nitems++] = it;
  }

  if ((rc = grow(b, (void **)&b->links, &b->lcap, b->nlinks + u->nlinks, sizeof *b->links,
                 err)))
    return rc;
  /* The b side is mostly a new or rarely seen key: its probe is a cache
   * miss. Hashes are computed and their slots prefetched PREFETCH links
   * ahead, so the misses overlap. */
  enum { PREFETCH = 16 };
  uint64_t hb[PREFETCH];
  for (size_t i = 0; i < u->nlinks && i < PREFETCH; i++) {
    hb[i] = gd__key_hash(u->links[i].b.type, u->links[i].b.key);
    if (b->scap)
      __builtin_prefetch(&b->slots[hb[i] & (b->scap - 1)]);
  }
  for (size_t i = 0; i < u->nlinks; i++) {
    const gd_link_in *l = &u->links[i];
    blink bl = {.msg = msg, .seen = l->seen};
    uint64_t h = hb[i % PREFETCH];
    if (i + PREFETCH < u->nlinks) {
      const gd_link_in *ahead = &u->links[i + PREFETCH];
      hb[i % PREFETCH] = gd__key_hash(ahead->b.type, ahead->b.key);
      if (b->scap)
        __builtin_prefetch(&b->slots[hb[i % PREFETCH] & (b->scap - 1)]);
    }
    if (l->a.id || l->b.id)
      return gd_err_set(err, GD_EINVALID,
                        "links[%zu].%c: a bulk load takes entities by (type, key), not by id", i,
                        l->a.id ? 'a' : 'b');
    /* Links come grouped by seller: the previous link's a is often this one's. */
    if (i > 0 && l->a.type == u->links[i - 1].a.type &&
        gd_str_eq(l->a.key, u->links[i - 1].a.key)) {
      bl.a = b->links[b->nlinks - 1].a;
    } else if ((rc = intern(b, l->a.type, l->a.key, msg, &bl.a, err))) {
      gd_err_prefix(err, "links[%zu].a", i);
      return rc;
    }
    if ((rc = intern_h(b, l->b.type, l->b.key, h, msg, &bl.b, err))) {
      gd_err_prefix(err, "links[%zu].b", i);
      return rc;
    }
    if (bl.a == bl.b)
      return gd_err_set(err, GD_EINVALID,
                        "links[%zu]: a link's endpoints are the same entity (%s '%.*s')", i,
                        gd_type_name(l->a.type), (int)(l->a.key.n > 64 ? 64 : l->a.key.n),
                        l->a.key.p);
    b->links[b->nlinks++] = bl;
  }
  b->msgs[msg].nlinks = u->nlinks;
  return GD_OK;
}

/* ---- apply ------------------------------------------------------------------- */

typedef struct half {
  uint64_t key; /* (neighbour type << 32) | neighbour tid: (type, id) order */
  int64_t seen;
  uint32_t msg, pad;
} half;

static int cmp_half(const void *x, const void *y) {
  const half *a = x, *b = y;
  if (a->key != b->key)
    return a->key < b->key ? -1 : 1;
  return (a->msg > b->msg) - (a->msg < b->msg);
}

static void sort_halves(half *h, size_t n) {
  if (n > 24) {
    qsort(h, n, sizeof *h, cmp_half);
    return;
  }
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && cmp_half(&h[j - 1], &h[j]) > 0; j--) {
      half t = h[j];
      h[j] = h[j - 1];
      h[j - 1] = t;
    }
}

/* The encoded ekey of tid (buf holds GD__EKEY_MAX). */
static size_t tid_ekey(const gd_bulk *b, size_t tid, uint8_t *buf) {
  return gd__ekey_encode(ttype(b, tid), tkey(b, tid), buf);
}

/* ekey sort records: 12 bytes of the encoded key, big endian, and the tid. */
typedef struct eksort {
  uint64_t p0;
  uint32_t p1;
  uint32_t tid;
} eksort;

static _Thread_local const gd_bulk *ek_ctx;

static int cmp_ekey_full(const void *x, const void *y) {
  uint8_t ba[GD__EKEY_MAX], bb[GD__EKEY_MAX];
  size_t na = tid_ekey(ek_ctx, ((const eksort *)x)->tid, ba);
  size_t nb = tid_ekey(ek_ctx, ((const eksort *)y)->tid, bb);
  int r = memcmp(ba, bb, na < nb ? na : nb);
  return r ? r : (na > nb) - (na < nb);
}

static inline unsigned ek_byte(const eksort *e, int i) {
  return i < 8 ? (unsigned)(e->p0 >> (56 - 8 * i)) & 0xff
               : (unsigned)(e->p1 >> (24 - 8 * (i - 8))) & 0xff;
}

/* Sorts the tids by encoded key into *ret (b->n entries, at least one;
 * vm_free it). */
static int sort_ekeys(const gd_bulk *b, eksort **ret, gd_err *err) {
  size_t n = b->n;
  eksort *a = vm_resize(NULL, 0, (n ? n : 1) * sizeof *a),
         *t = vm_resize(NULL, 0, (n ? n : 1) * sizeof *t);
  if (!a || !t) {
    vm_free(a, (n ? n : 1) * sizeof *a);
    vm_free(t, (n ? n : 1) * sizeof *t);
    return gd_err_set(err, GD_ENOMEM, "out of memory sorting %zu keys", n);
  }
  for (size_t i = 0; i < n; i++) {
    uint8_t buf[GD__EKEY_MAX], pad[12] = {0};
    size_t len = tid_ekey(b, i, buf);
    memcpy(pad, buf, len < 12 ? len : 12);
    a[i].p0 = gd_be64_get(pad);
    a[i].p1 = (uint32_t)pad[8] << 24 | (uint32_t)pad[9] << 16 | (uint32_t)pad[10] << 8 | pad[11];
    a[i].tid = (uint32_t)i;
  }
  /* LSD radix sort, one byte per pass, least significant first; a byte
   * that is the same everywhere costs one counting pass and no move. */
  for (int byte = 11; byte >= 0; byte--) {
    size_t cnt[256] = {0};
    for (size_t i = 0; i < n; i++)
      cnt[ek_byte(&a[i], byte)]++;
    if (!gd_radix_offsets(cnt, n))
      continue;
    for (size_t i = 0; i < n; i++)
      t[cnt[ek_byte(&a[i], byte)]++] = a[i];
    eksort *s = a;
    a = t;
    t = s;
  }
  vm_free(t, (n ? n : 1) * sizeof *t);
  /* Equal prefixes: finish with the whole key. */
  ek_ctx = b;
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && a[j].p0 == a[i].p0 && a[j].p1 == a[i].p1)
      j++;
    if (j - i > 1)
      qsort(a + i, j - i, sizeof *a, cmp_ekey_full);
    i = j;
  }
  *ret = a;
  return GD_OK;
}

/* Label rows: (label, entity id). */
typedef struct lrow {
  gd_str label;
  uint64_t id;
} lrow;

static int cmp_lrow(const void *x, const void *y) {
  const lrow *a = x, *b = y;
  size_t n = a->label.n < b->label.n ? a->label.n : b->label.n;
  int r = memcmp(a->label.p, b->label.p, n);
  if (r)
    return r;
  if (a->label.n != b->label.n)
    return a->label.n < b->label.n ? -1 : 1;
  return (a->id > b->id) - (a->id < b->id);
}

static int cmp_str_p(const void *x, const void *y) {
  const gd_str *a = x, *b = y;
  size_t n = a->n < b->n ? a->n : b->n;
  int r = memcmp(a->p, b->p, n);
  return r ? r : (a->n > b->n) - (a->n < b->n);
}

static int cmp_item(const void *x, const void *y) {
  const bitem *a = *(const bitem *const *)x, *b = *(const bitem *const *)y;
  if (a->tid != b->tid)
    return a->tid < b->tid ? -1 : 1;
  return (a > b) - (a < b); /* arrival order */
}

typedef struct req_sort {
  gd_str rid;
  uint32_t msg;
} req_sort;

static int cmp_req(const void *x, const void *y) {
  return cmp_str_p(&((const req_sort *)x)->rid, &((const req_sort *)y)->rid);
}

/* Counters of the tables that must be empty. */
static int check_empty(gd_wtxn *t, gd_err *err) {
  static const char *names[] = {"entities", "key index rows", "adjacency rows", "label rows",
                                "request ids"};
  MDB_dbi dbis[] = {t->s->entity, t->s->ekey, t->s->adj, t->s->label, t->s->request};
  for (size_t i = 0; i < sizeof dbis / sizeof dbis[0]; i++) {
    MDB_stat st;
    int rc = mdb_stat(t->txn, dbis[i], &st);
    if (rc)
      return gd__mdb_err(rc, err, "stat");
    if (st.ms_entries)
      return gd_err_set(err, GD_EPRECONDITION,
                        "a bulk load needs an empty graph, and this one holds %zu %s; load "
                        "into it with Ingest",
                        st.ms_entries, names[i]);
  }
  return GD_OK;
}

/* About how many bytes of map the load will take. */
static uint64_t estimate_bytes(const gd_bulk *b) {
  uint64_t bytes = (uint64_t)b->klen * 2 + (uint64_t)b->n * (8 + 16 + GD__REC_HDR + 16 + 8 + 16) +
                   (uint64_t)b->nlinks * 2 * (GD__ADJ_ROW + 2) + b->slen * 2 +
                   (uint64_t)b->nmsgs * 64;
  return bytes + bytes / 2 + (UINT64_C(1) << 20);
}

static int check_map(gd_wtxn *t, const gd_bulk *b, gd_err *err) {
  uint64_t used, size;
  int rc = gd__store_map_use(t->s, &used, &size);
  if (rc)
    return gd__mdb_err(rc, err, "environment info");
  uint64_t need = estimate_bytes(b);
  if (used + need > size)
    return gd_err_set(err, GD_EMAPFULL, "the bulk load needs about %llu MiB of map, %llu free",
                      (unsigned long long)(need >> 20),
                      (unsigned long long)((size - used) >> 20));
  return GD_OK;
}

typedef struct apply_state {
  int64_t *first, *last;
  uint64_t *degree, *sellers;
  uint64_t *ent_created, *ent_updated, *links_created; /* per message */
  uint32_t *start;
  half *halves;
  bitem **items;
  lrow *labels;
  req_sort *reqs;
  size_t n, nh; /* entities and half-edges (at least 1): the mappings' sizes */
} apply_state;

static void apply_state_free(apply_state *a) {
  vm_free(a->first, a->n * sizeof *a->first);
  vm_free(a->last, a->n * sizeof *a->last);
  vm_free(a->degree, a->n * sizeof *a->degree);
  vm_free(a->sellers, a->n * sizeof *a->sellers);
  vm_free(a->start, (a->n + 1) * sizeof *a->start);
  vm_free(a->halves, a->nh * sizeof *a->halves);
  free(a->ent_created);
  free(a->ent_updated);
  free(a->links_created);
  free(a->items);
  free(a->labels);
  free(a->reqs);
}

static inline void seen_at(apply_state *a, uint32_t tid, int64_t s) {
  if (a->first[tid] == 0 || s < a->first[tid])
    a->first[tid] = s;
  if (s > a->last[tid])
    a->last[tid] = s;
}

/* Adjacency: counting sort by source, merge, append. Fills degree and
 * seller counts and the links each message created. */
static int write_adj(gd_wtxn *t, const gd_bulk *b, apply_state *a, uint64_t base,
                     uint64_t *ret_links, gd_err *err) {
  size_t n = b->n, nh = 2 * b->nlinks;
  a->start = vm_resize(NULL, 0, (a->n + 1) * sizeof *a->start);
  a->halves = vm_resize(NULL, 0, a->nh * sizeof *a->halves);
  if (!a->start || !a->halves)
    return gd_err_set(err, GD_ENOMEM, "out of memory for %zu half-edges", nh);
  if (nh > UINT32_MAX)
    return gd_err_set(err, GD_ERESOURCE, "a bulk load takes at most %u links",
                      (unsigned)(UINT32_MAX / 2));
  for (size_t i = 0; i < b->nlinks; i++) {
    a->start[b->links[i].a + 1]++;
    a->start[b->links[i].b + 1]++;
  }
  for (size_t i = 0; i < n; i++)
    a->start[i + 1] += a->start[i];
  uint32_t *fill = vm_resize(NULL, 0, a->n * sizeof *fill);
  if (!fill)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  memcpy(fill, a->start, n * sizeof *fill);
  for (size_t i = 0; i < b->nlinks; i++) {
    const blink *l = &b->links[i];
    int64_t s = l->seen ? l->seen : t->now;
    seen_at(a, l->a, s);
    seen_at(a, l->b, s);
    a->halves[fill[l->a]++] = (half){(uint64_t)ttype(b, l->b) << 32 | l->b, s, l->msg, 0};
    a->halves[fill[l->b]++] = (half){(uint64_t)ttype(b, l->a) << 32 | l->a, s, l->msg, 0};
  }
  vm_free(fill, a->n * sizeof *fill);

  size_t maxm = 0;
  for (size_t src = 0; src < n; src++)
    if (a->start[src + 1] - a->start[src] > maxm)
      maxm = a->start[src + 1] - a->start[src];
  gd__adj_row *rows = malloc((maxm ? maxm : 1) * sizeof *rows);
  if (!rows)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->s->adj, &cur);
  if (rc) {
    free(rows);
    return gd__mdb_err(rc, err, "adjacency cursor");
  }
  uint64_t links = 0;
  for (size_t src = 0; src < n && !rc; src++) {
    half *h = a->halves + a->start[src];
    size_t m = a->start[src + 1] - a->start[src], nr = 0;
    if (!m)
      continue;
    sort_halves(h, m);
    for (size_t i = 0; i < m;) {
      gd__adj_row *row = &rows[nr++];
      uint32_t dst = (uint32_t)h[i].key, msg = h[i].msg;
      int type = (int)(h[i].key >> 32);
      memset(row, 0, sizeof *row);
      row->first_seen = row->last_seen = h[i].seen;
      size_t j = i;
      for (; j < m && h[j].key == h[i].key; j++) {
        row->count++;
        if (h[j].seen < row->first_seen)
          row->first_seen = h[j].seen;
        if (h[j].seen > row->last_seen)
          row->last_seen = h[j].seen;
      }
      i = j;
      gd_be64_put(row->prefix, GD_ADJ_POS(type, base + dst));
      a->degree[src]++;
      if (type == GD_TYPE_SELLER)
        a->sellers[src]++;
      if (src < dst) { /* each undirected link once, to its first message */
        links++;
        a->links_created[msg]++;
      }
    }
    /* All rows of the key in one put (the table is dupfixed). */
    uint8_t kb[8];
    MDB_val k, v[2] = {{sizeof *rows, rows}, {nr, NULL}};
    gd__id_key(base + src, kb, &k);
    if ((rc = mdb_cursor_put(cur, &k, v, MDB_APPEND | MDB_MULTIPLE)))
      rc = gd__mdb_err(rc, err, "adjacency");
    else if (v[1].mv_size != nr)
      rc = gd_err_set(err, GD_EINTERNAL, "adjacency: %zu of %zu rows written", v[1].mv_size, nr);
  }
  free(rows);
  mdb_cursor_close(cur);
  *ret_links = links;
  return rc;
}

/* Attributes and labels of one entity, merged from its items as ent_modify
 * merges them one upsert after another. Fills names/values/labels (arrays
 * sized for the items' totals) and appends its label rows. */
static int merge_items(const gd_bulk *b, bitem **items, size_t nitems, uint64_t id, gd_str *names,
                       gd_str *values, size_t *ret_na, gd_str *labels, size_t *ret_nl,
                       lrow *lrows, size_t *nlrows, gd_err *err) {
  size_t na = 0, nl = 0;
  for (size_t i = 0; i < nitems; i++) {
    const bitem *it = items[i];
    size_t off = it->off;
    for (size_t k = 0; k < it->nattrs; k++) {
      gd_str name = sbuf_get(b, &off), value = sbuf_get(b, &off);
      size_t j;
      for (j = 0; j < na && !gd_str_eq(names[j], name); j++)
        ;
      names[j] = name;
      values[j] = value;
      if (j == na)
        na++;
    }
    for (size_t k = 0; k < it->nlabels; k++) {
      gd_str l = sbuf_get(b, &off);
      size_t j;
      for (j = 0; j < nl && !gd_str_eq(labels[j], l); j++)
        ;
      if (j == nl)
        labels[nl++] = l;
    }
  }
  gd_str key = tkey(b, items[0]->tid);
  if (na > GD_ATTRS_MAX || nl > GD_LABELS_MAX)
    return gd_err_set(err, GD_EINVALID,
                      "%s '%.*s' would have %zu attributes and %zu labels, over the limit of %d "
                      "and %d",
                      gd_type_name(ttype(b, items[0]->tid)), (int)(key.n > 64 ? 64 : key.n),
                      key.p, na, nl, GD_ATTRS_MAX, GD_LABELS_MAX);
  /* Attributes by name (a stable order for readers), labels sorted. */
  for (size_t i = 1; i < na; i++)
    for (size_t j = i; j > 0 && cmp_str_p(&names[j - 1], &names[j]) > 0; j--) {
      gd_str tn = names[j], tv = values[j];
      names[j] = names[j - 1];
      values[j] = values[j - 1];
      names[j - 1] = tn;
      values[j - 1] = tv;
    }
  if (nl > 1)
    qsort(labels, nl, sizeof *labels, cmp_str_p);
  for (size_t i = 0; i < nl; i++)
    lrows[(*nlrows)++] = (lrow){labels[i], id};
  *ret_na = na;
  *ret_nl = nl;
  return GD_OK;
}

static int write_entities(gd_wtxn *t, const gd_bulk *b, apply_state *a, uint64_t base,
                          size_t *ret_nlabels, gd_err *err) {
  size_t maxa = 0, maxl = 0, nlab = 0;
  a->items = malloc((b->nitems ? b->nitems : 1) * sizeof *a->items);
  if (!a->items)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  for (size_t i = 0; i < b->nitems; i++) {
    a->items[i] = &b->items[i];
    nlab += b->items[i].nlabels;
    /* Items' seen, and who created or updated whom. */
    const bitem *it = &b->items[i];
    if (it->seen)
      seen_at(a, it->tid, it->seen);
    if (b->first_msg[it->tid] != it->msg)
      a->ent_updated[it->msg]++;
  }
  if (b->nitems > 1)
    qsort(a->items, b->nitems, sizeof *a->items, cmp_item);
  for (size_t i = 0; i < b->nitems;) {
    size_t j = i, sa = 0, sl = 0;
    for (; j < b->nitems && a->items[j]->tid == a->items[i]->tid; j++) {
      sa += a->items[j]->nattrs;
      sl += a->items[j]->nlabels;
    }
    if (sa > maxa)
      maxa = sa;
    if (sl > maxl)
      maxl = sl;
    i = j;
  }
  a->labels = malloc((nlab ? nlab : 1) * sizeof *a->labels);
  gd_str *names = malloc((maxa + 1) * sizeof *names), *values = malloc((maxa + 1) * sizeof *values),
         *labels = malloc((maxl + 1) * sizeof *labels);
  MDB_cursor *cur = NULL;
  int rc = GD_OK;
  size_t nlrows = 0;
  if (!a->labels || !names || !values || !labels) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory");
    goto out;
  }
  if ((rc = mdb_cursor_open(t->txn, t->s->entity, &cur))) {
    rc = gd__mdb_err(rc, err, "entity cursor");
    goto out;
  }
  size_t ii = 0; /* next item, in tid order */
  for (size_t tid = 0; tid < b->n; tid++) {
    gd_entity_view v = {.id = base + tid, .type = ttype(b, tid), .key = tkey(b, tid),
                        .first_seen = a->first[tid], .last_seen = a->last[tid],
                        .degree = a->degree[tid], .seller_count = a->sellers[tid]};
    size_t j = ii;
    while (j < b->nitems && a->items[j]->tid == tid)
      j++;
    if (j > ii && (rc = merge_items(b, a->items + ii, j - ii, v.id, names, values, &v.nattrs,
                                    labels, &v.nlabels, a->labels, &nlrows, err)))
      goto out;
    ii = j;
    size_t len;
    uint8_t *rec = gd__rec_encode(&v, names, values, labels, NULL, &len);
    if (!rec) {
      rc = gd_err_set(err, GD_ENOMEM, "out of memory");
      goto out;
    }
    uint8_t kb[8];
    MDB_val k, val = {len, rec};
    gd__id_key(v.id, kb, &k);
    rc = mdb_cursor_put(cur, &k, &val, MDB_APPEND);
    free(rec);
    if (rc) {
      rc = gd__mdb_err(rc, err, "entity");
      goto out;
    }
    t->c.entities[v.type]++;
    a->ent_created[b->first_msg[tid]]++;
  }
  *ret_nlabels = nlrows;
out:
  if (cur)
    mdb_cursor_close(cur);
  free(names);
  free(values);
  free(labels);
  return rc;
}

/* The key sort runs on a thread of its own while the writer thread writes
 * the adjacency and entity tables: it reads only b. */
typedef struct ek_job {
  const gd_bulk *b;
  uint64_t base;
  eksort *ek;
  /* The rows in key order, ready to append: (u16 key length, key, id
   * big endian)... so that the writer reads them in one pass. */
  uint8_t *rows;
  size_t len, cap;
  double seconds;
  int rc;
  gd_err err;
} ek_job;

static void *ek_main(void *arg) {
  ek_job *j = arg;
  pthread_setname_np(pthread_self(), "gd-bulk-keys"); /* top -H, perf --sort comm */
  const gd_bulk *b = j->b;
  int64_t t0 = gd_now_ns();
  if ((j->rc = sort_ekeys(b, &j->ek, &j->err)))
    return NULL;
  size_t cap = b->n * (2 + 8) + b->klen + (size_t)b->n * 1 + 1;
  for (size_t i = 0; i < b->n; i++)
    if (tkey(b, i).n > GD__EKEY_INLINE_MAX)
      cap += 1 + 32; /* hashed: never longer than the key, but be exact */
  j->rows = vm_resize(NULL, 0, cap);
  j->cap = cap;
  if (!j->rows) {
    j->rc = gd_err_set(&j->err, GD_ENOMEM, "out of memory for the key index");
    return NULL;
  }
  uint8_t *p = j->rows;
  for (size_t i = 0; i < b->n; i++) {
    uint32_t tid = j->ek[i].tid;
    size_t kl = tid_ekey(b, tid, p + 2);
    uint16_t k16 = (uint16_t)kl;
    memcpy(p, &k16, 2);
    gd_be64_put(p + 2 + kl, j->base + tid);
    p += 2 + kl + 8;
  }
  j->len = (size_t)(p - j->rows);
  j->seconds = (double)(gd_now_ns() - t0) / 1e9;
  return NULL;
}

/* Writes the key index from the job's rows. */
static int write_ekeys(gd_wtxn *t, const gd_bulk *b, const ek_job *j, gd_err *err) {
  int rc;
  MDB_cursor *cur;
  if ((rc = mdb_cursor_open(t->txn, t->s->ekey, &cur)))
    return gd__mdb_err(rc, err, "key index cursor");
  const uint8_t *p = j->rows;
  for (size_t i = 0; i < b->n; i++) {
    uint16_t kl;
    memcpy(&kl, p, 2);
    MDB_val k = {kl, (void *)(p + 2)}, v = {8, (void *)(p + 2 + kl)};
    p += 2 + (size_t)kl + 8;
    if ((rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND))) {
      /* Two keys longer than the inline limit with one SHA-256: refuse. */
      rc = rc == MDB_KEYEXIST
               ? gd_err_set(err, GD_EINTERNAL, "key hash collision on a %s key",
                            gd_type_name(ttype(b, j->ek[i].tid)))
               : gd__mdb_err(rc, err, "key index");
      break;
    }
  }
  mdb_cursor_close(cur);
  return rc;
}

static int write_labels(gd_wtxn *t, apply_state *a, size_t n, gd_err *err) {
  if (!n)
    return GD_OK;
  qsort(a->labels, n, sizeof *a->labels, cmp_lrow);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->s->label, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "label cursor");
  for (size_t i = 0; i < n; i++) {
    uint8_t ib[8];
    MDB_val k = {a->labels[i].label.n, (void *)a->labels[i].label.p}, v;
    gd__id_key(a->labels[i].id, ib, &v);
    bool same = i > 0 && gd_str_eq(a->labels[i - 1].label, a->labels[i].label);
    if ((rc = mdb_cursor_put(cur, &k, &v, same ? MDB_APPENDDUP : MDB_APPEND))) {
      rc = gd__mdb_err(rc, err, "label index");
      break;
    }
  }
  mdb_cursor_close(cur);
  t->c.labels += n;
  return rc;
}

static int write_requests(gd_wtxn *t, const gd_bulk *b, apply_state *a, gd_err *err) {
  size_t n = 0;
  a->reqs = malloc((b->nmsgs ? b->nmsgs : 1) * sizeof *a->reqs);
  if (!a->reqs)
    return gd_err_set(err, GD_ENOMEM, "out of memory");
  for (size_t i = 0; i < b->nmsgs; i++)
    if (b->msgs[i].rid_len)
      a->reqs[n++] = (req_sort){{b->sbuf + b->msgs[i].rid_off, b->msgs[i].rid_len}, (uint32_t)i};
  if (!n)
    return GD_OK;
  qsort(a->reqs, n, sizeof *a->reqs, cmp_req);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, t->s->request, &cur);
  if (rc)
    return gd__mdb_err(rc, err, "request cursor");
  for (size_t i = 0; i < n; i++) {
    uint32_t m = a->reqs[i].msg;
    gd__req_rec r = {t->now,
                     {a->ent_created[m], a->ent_updated[m], a->links_created[m],
                      b->msgs[m].nlinks - a->links_created[m]}};
    MDB_val k = {a->reqs[i].rid.n, (void *)a->reqs[i].rid.p}, v = {sizeof r, &r};
    if ((rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND))) {
      rc = gd__mdb_err(rc, err, "request index");
      break;
    }
  }
  mdb_cursor_close(cur);
  return rc;
}

int gd_store_bulk_apply(gd_wtxn *t, const gd_bulk *b, gd_bulk_result *ret, gd_err *err) {
  apply_state a = {.n = b->n ? b->n : 1, .nh = b->nlinks ? 2 * b->nlinks : 1};
  size_t n = a.n, nm = b->nmsgs ? b->nmsgs : 1;
  uint64_t base = t->c.next_id, links = 0;
  ek_job ej = {.b = b, .base = base};
  size_t nlabels = 0;
  int rc;

  memset(ret, 0, sizeof *ret);
  if ((rc = check_empty(t, err)) || (rc = check_map(t, b, err)))
    return rc;
  gd__ver_mark_all(t); /* every entity is new: no reader's cache holds one */
  a.first = vm_resize(NULL, 0, n * sizeof *a.first);
  a.last = vm_resize(NULL, 0, n * sizeof *a.last);
  a.degree = vm_resize(NULL, 0, n * sizeof *a.degree);
  a.sellers = vm_resize(NULL, 0, n * sizeof *a.sellers);
  a.ent_created = calloc(nm, sizeof *a.ent_created);
  a.ent_updated = calloc(nm, sizeof *a.ent_updated);
  a.links_created = calloc(nm, sizeof *a.links_created);
  if (!a.first || !a.last || !a.degree || !a.sellers || !a.ent_created || !a.ent_updated ||
      !a.links_created) {
    rc = gd_err_set(err, GD_ENOMEM, "out of memory for %zu entities", b->n);
    goto out;
  }
  pthread_t th;
  bool threaded = pthread_create(&th, NULL, ek_main, &ej) == 0;
  if (!threaded)
    ek_main(&ej);
  int64_t t0 = gd_now_ns();
  rc = write_adj(t, b, &a, base, &links, err);
  int64_t t1 = gd_now_ns();
  if (!rc)
    rc = write_entities(t, b, &a, base, &nlabels, err);
  int64_t t2 = gd_now_ns();
  if (threaded)
    pthread_join(th, NULL);
  if (!rc && ej.rc) {
    rc = ej.rc;
    *err = ej.err;
  }
  if (rc)
    goto out;
  if ((rc = write_ekeys(t, b, &ej, err)))
    goto out;
  ret->adj_s = (double)(t1 - t0) / 1e9;
  ret->entities_s = (double)(t2 - t1) / 1e9;
  ret->keys_s = (double)(gd_now_ns() - t2) / 1e9;
  ret->key_sort_s = ej.seconds;
  if ((rc = write_labels(t, &a, nlabels, err)) ||
      (rc = write_requests(t, b, &a, err)))
    goto out;
  t->c.next_id = base + b->n;
  t->c.links += links;
  ret->messages = b->nmsgs;
  ret->duplicates = b->duplicates;
  ret->totals.entities_created = b->n;
  for (size_t i = 0; i < b->nmsgs; i++)
    ret->totals.entities_updated += a.ent_updated[i];
  ret->totals.links_created = links;
  ret->totals.links_updated = b->nlinks - links;
  ret->committed_at = t->now;
out:
  vm_free(ej.ek, (b->n ? b->n : 1) * sizeof *ej.ek);
  vm_free(ej.rows, ej.cap);
  apply_state_free(&a);
  return rc;
}
