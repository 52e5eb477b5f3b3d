#include "match.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- a small open-addressing map from int64 >= 0 to int64 --------------- */

typedef struct {
  int64_t *keys; /* -1 = empty */
  int64_t *vals;
  uint64_t mask;
} i64map;

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static int map_init(i64map *m, int64_t expect) {
  uint64_t cap = 16;
  while (cap < (uint64_t)expect * 2 + 2)
    cap <<= 1;
  m->keys = malloc(cap * sizeof *m->keys);
  m->vals = malloc(cap * sizeof *m->vals);
  m->mask = cap - 1;
  if (!m->keys || !m->vals)
    return -1;
  memset(m->keys, 0xff, cap * sizeof *m->keys); /* all -1 */
  return 0;
}

static void map_free(i64map *m) {
  free(m->keys);
  free(m->vals);
}

/* The slot of key (inserted if absent; *created tells which). */
static int64_t *map_slot(i64map *m, int64_t key, int *created) {
  uint64_t i = mix64((uint64_t)key) & m->mask;
  while (m->keys[i] != -1 && m->keys[i] != key)
    i = (i + 1) & m->mask;
  *created = m->keys[i] == -1;
  if (*created)
    m->keys[i] = key;
  return &m->vals[i];
}

/* The value of key, or NULL. */
static int64_t *map_find(const i64map *m, int64_t key) {
  uint64_t i = mix64((uint64_t)key) & m->mask;
  while (m->keys[i] != -1) {
    if (m->keys[i] == key)
      return &m->vals[i];
    i = (i + 1) & m->mask;
  }
  return NULL;
}

/* ---- sorting helpers ----------------------------------------------------- */

typedef struct {
  int64_t old, neu, inter; /* old rank, new index, |A & B| */
} pair_t;

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Writes to out the parts (parts = true) or the ids of groups[0..n);
 * returns how many. */
static int64_t group_ids(const gd_match_group *g, int64_t n, bool parts, int64_t *out) {
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!parts)
      out[k++] = g[i].id;
    for (int64_t j = 0; parts && j < g[i].n_parts; j++)
      out[k++] = g[i].parts[j];
  }
  return k;
}

/* Removes from ids[0..*n) (order kept) every id in drop[0..nd), which it
 * sorts. */
static void drop_listed(int64_t *ids, int64_t *n, int64_t *drop, int64_t nd) {
  qsort(drop, (size_t)nd, sizeof *drop, cmp_i64);
  int64_t keep = 0;
  for (int64_t i = 0; i < *n; i++)
    if (!bsearch(&ids[i], drop, (size_t)nd, sizeof *drop, cmp_i64))
      ids[keep++] = ids[i];
  *n = keep;
}

static int cmp_by_new(const void *a, const void *b) {
  const pair_t *x = a, *y = b;
  if (x->neu != y->neu)
    return x->neu < y->neu ? -1 : 1;
  return (x->old > y->old) - (x->old < y->old);
}

static int cmp_by_old(const void *a, const void *b) {
  const pair_t *x = a, *y = b;
  if (x->old != y->old)
    return x->old < y->old ? -1 : 1;
  return (x->neu > y->neu) - (x->neu < y->neu);
}

typedef struct {
  int64_t old, neu, inter, uni;
} cand_t;

/* Strongest first: larger J = inter / uni (exact: both factors < 2^31),
 * then smaller old rank (= smaller old id), then smaller new index. */
static int cmp_cand(const void *a, const void *b) {
  const cand_t *x = a, *y = b;
  int64_t l = x->inter * y->uni, r = y->inter * x->uni;
  if (l != r)
    return l > r ? -1 : 1;
  if (x->old != y->old)
    return x->old < y->old ? -1 : 1;
  return (x->neu > y->neu) - (x->neu < y->neu);
}

static int cmp_group(const void *a, const void *b) {
  const gd_match_group *x = a, *y = b;
  return (x->id > y->id) - (x->id < y->id);
}

static int cmp_continued(const void *a, const void *b) {
  const gd_match_continued *x = a, *y = b;
  return (x->id > y->id) - (x->id < y->id);
}

void gd_match_result_free(gd_match_result *r) {
  if (!r)
    return;
  free(r->new_id);
  free(r->moves);
  free(r->continued);
  free(r->merges);
  free(r->splits);
  free(r->born);
  free(r->dissolved);
  free(r->parts_pool);
  memset(r, 0, sizeof *r);
}

static void *alloc_n(int64_t count, size_t size) {
  if (count < 0 || (uint64_t)count > SIZE_MAX / size)
    return NULL;
  return malloc((size_t)(count ? count : 1) * size);
}

/*
 * The match and the diff. fixed == NULL: new clusters inherit ids by the
 * matching rule and fresh ids come from *next_id (gd_match_snapshots).
 * fixed != NULL: new cluster b already has id fixed[b] (ascending in b,
 * distinct); b "continues" the old cluster with that id if they share a
 * seller, and next_id is untouched (gd_match_diff).
 */
static gd_alg_status match_core(int64_t n, const int64_t *prev_id, const int64_t *cur,
                                const int64_t *fixed, int64_t min_part_size, int64_t *next_id,
                                gd_match_result *ret, gd_alg_error *err) {
  if (n < 0 || n > INT32_MAX || (n > 0 && !cur) || !next_id || !ret || min_part_size < 1)
    return gd_alg_error_set(err, GD_ALG_INVALID, "match: bad arguments (n = %lld)", (long long)n);
  int64_t k = 0;
  for (int64_t s = 0; s < n; s++) {
    if (cur[s] >= n)
      return gd_alg_error_set(err, GD_ALG_INVALID, "match: cur[%lld] = %lld outside [0, %lld)",
                              (long long)s, (long long)cur[s], (long long)n);
    if (cur[s] >= k)
      k = cur[s] + 1;
  }

  gd_alg_status rc = GD_ALG_OK;
  gd_match_result r;
  memset(&r, 0, sizeof r);
  i64map oldmap = {0}, pairmap = {0};
  int64_t *old_ids = NULL, *old_size = NULL, *new_size = NULL, *seller_rank = NULL;
  pair_t *pairs = NULL;
  cand_t *cands = NULL;
  char *old_taken = NULL;

  /* Old ids -> ranks (ascending id), and sizes on both sides. */
  new_size = calloc((size_t)(k ? k : 1), sizeof *new_size);
  seller_rank = alloc_n(n, sizeof *seller_rank);
  old_ids = alloc_n(n, sizeof *old_ids);
  if (!new_size || !seller_rank || !old_ids || map_init(&oldmap, n) != 0)
    goto nomem;
  int64_t c = 0, max_old = -1;
  for (int64_t s = 0; s < n; s++) {
    if (cur[s] >= 0)
      new_size[cur[s]]++;
    int64_t a = prev_id ? prev_id[s] : -1;
    if (a < 0)
      continue;
    int created;
    map_slot(&oldmap, a, &created);
    if (created)
      old_ids[c++] = a;
    if (a > max_old)
      max_old = a;
  }
  qsort(old_ids, (size_t)c, sizeof *old_ids, cmp_i64);
  for (int64_t i = 0; i < c; i++) {
    int created;
    *map_slot(&oldmap, old_ids[i], &created) = i;
  }
  old_size = calloc((size_t)(c ? c : 1), sizeof *old_size);
  if (!old_size)
    goto nomem;
  for (int64_t s = 0; s < n; s++) {
    int64_t a = prev_id ? prev_id[s] : -1;
    seller_rank[s] = -1;
    if (a < 0)
      continue;
    int created;
    seller_rank[s] = *map_slot(&oldmap, a, &created);
    old_size[seller_rank[s]]++;
  }

  /* Overlap counts |A & B| for every (old rank, new index) that meets. */
  pairs = alloc_n(n, sizeof *pairs);
  if (!pairs || map_init(&pairmap, n) != 0)
    goto nomem;
  int64_t np = 0;
  for (int64_t s = 0; s < n; s++) {
    if (seller_rank[s] < 0 || cur[s] < 0)
      continue;
    int created;
    int64_t *slot = map_slot(&pairmap, seller_rank[s] * k + cur[s], &created);
    if (created) {
      *slot = np;
      pairs[np++] = (pair_t){seller_rank[s], cur[s], 0};
    }
    pairs[*slot].inter++;
  }
  map_free(&pairmap);
  pairmap = (i64map){0};

  /* Matching: candidates with J >= 1/2, strongest first. */
  cands = alloc_n(np, sizeof *cands);
  old_taken = calloc((size_t)(c ? c : 1), 1);
  r.new_id = alloc_n(k, sizeof *r.new_id);
  r.continued = alloc_n(np, sizeof *r.continued);
  if (!cands || !old_taken || !r.new_id || !r.continued)
    goto nomem;
  int64_t nc = 0;
  for (int64_t i = 0; i < np; i++) {
    int64_t a = pairs[i].old, b = pairs[i].neu, in = pairs[i].inter;
    int64_t uni = old_size[a] + new_size[b] - in;
    if (2 * in >= uni)
      cands[nc++] = (cand_t){a, b, in, uni};
  }
  qsort(cands, (size_t)nc, sizeof *cands, cmp_cand);
  for (int64_t b = 0; b < k; b++)
    r.new_id[b] = -1;
  if (fixed) {
    /* Ids are given: a pair continues when both sides carry the same id. */
    for (int64_t i = 0; i < np; i++) {
      int64_t a = pairs[i].old, b = pairs[i].neu;
      if (old_ids[a] != fixed[b])
        continue;
      old_taken[a] = 1;
      if (old_size[a] >= min_part_size || new_size[b] >= min_part_size)
        r.continued[r.n_continued++] =
            (gd_match_continued){old_ids[a], old_size[a], new_size[b], pairs[i].inter};
    }
    for (int64_t b = 0; b < k; b++)
      r.new_id[b] = fixed[b];
  }
  for (int64_t i = 0; i < nc && !fixed; i++) {
    int64_t a = cands[i].old, b = cands[i].neu;
    if (old_taken[a] || r.new_id[b] >= 0)
      continue;
    old_taken[a] = 1;
    r.new_id[b] = old_ids[a];
    r.summary.ids_inherited++;
    if (old_size[a] >= min_part_size || new_size[b] >= min_part_size)
      r.continued[r.n_continued++] =
          (gd_match_continued){old_ids[a], old_size[a], new_size[b], cands[i].inter};
  }
  qsort(r.continued, (size_t)r.n_continued, sizeof *r.continued, cmp_continued);

  /* Fresh ids, in new-index order. */
  int64_t fresh0 = *next_id > max_old + 1 ? *next_id : max_old + 1, fresh = fresh0;
  r.born = alloc_n(k, sizeof *r.born);
  if (!r.born)
    goto nomem;
  for (int64_t b = 0; b < k; b++) {
    if (new_size[b] == 0)
      continue;
    if (fixed) { /* born: no old cluster carries its id */
      if (map_find(&oldmap, fixed[b])) {
        r.summary.ids_inherited++;
      } else {
        r.summary.ids_fresh++;
        if (new_size[b] >= min_part_size)
          r.born[r.n_born++] = r.new_id[b];
      }
      continue;
    }
    if (r.new_id[b] >= 0)
      continue;
    r.new_id[b] = fresh++;
    r.summary.ids_fresh++;
    if (new_size[b] >= min_part_size)
      r.born[r.n_born++] = r.new_id[b];
  }

  /* Dissolved: old ids nobody inherited. */
  r.dissolved = alloc_n(c, sizeof *r.dissolved);
  if (!r.dissolved)
    goto nomem;
  for (int64_t a = 0; a < c; a++)
    if (!old_taken[a] && old_size[a] >= min_part_size)
      r.dissolved[r.n_dissolved++] = old_ids[a];

  /* Merges (grouped by new cluster) and splits (grouped by old cluster).
   * Every pair is a part of at most one merge and one split. */
  r.parts_pool = alloc_n(2 * np, sizeof *r.parts_pool);
  r.merges = alloc_n(k, sizeof *r.merges);
  r.splits = alloc_n(c, sizeof *r.splits);
  if (!r.parts_pool || !r.merges || !r.splits)
    goto nomem;
  int64_t pool = 0;
  qsort(pairs, (size_t)np, sizeof *pairs, cmp_by_new);
  for (int64_t i = 0; i < np;) {
    int64_t b = pairs[i].neu, start = pool;
    for (; i < np && pairs[i].neu == b; i++) {
      int64_t a = pairs[i].old;
      if (old_size[a] >= min_part_size && 2 * pairs[i].inter >= old_size[a])
        r.parts_pool[pool++] = old_ids[a]; /* ascending: ranks ascend */
    }
    if (pool - start >= 2)
      r.merges[r.n_merges++] = (gd_match_group){r.new_id[b], new_size[b], pool - start,
                                                r.parts_pool + start};
    else
      pool = start;
  }
  qsort(r.merges, (size_t)r.n_merges, sizeof *r.merges, cmp_group);
  qsort(pairs, (size_t)np, sizeof *pairs, cmp_by_old);
  for (int64_t i = 0; i < np;) {
    int64_t a = pairs[i].old, start = pool;
    for (; i < np && pairs[i].old == a; i++) {
      int64_t b = pairs[i].neu;
      if (new_size[b] >= min_part_size && 2 * pairs[i].inter >= new_size[b])
        r.parts_pool[pool++] = r.new_id[b];
    }
    if (pool - start >= 2) {
      qsort(r.parts_pool + start, (size_t)(pool - start), sizeof *r.parts_pool, cmp_i64);
      r.splits[r.n_splits++] =
          (gd_match_group){old_ids[a], old_size[a], pool - start, r.parts_pool + start};
    } else {
      pool = start;
    }
  }
  /* splits are in old-rank order, i.e. ascending old id already */

  /* Each cluster in one event: an old id that went into a merge or was
   * split is not also dissolved; a new id that a merge made or a split
   * gave is not also born. */
  int64_t *mp = alloc_n(pool + r.n_merges + r.n_splits, sizeof *mp);
  if (!mp)
    goto nomem;
  int64_t nmp = group_ids(r.merges, r.n_merges, true, mp);
  nmp += group_ids(r.splits, r.n_splits, false, mp + nmp);
  drop_listed(r.dissolved, &r.n_dissolved, mp, nmp);
  int64_t nsp = group_ids(r.splits, r.n_splits, true, mp);
  nsp += group_ids(r.merges, r.n_merges, false, mp + nsp);
  drop_listed(r.born, &r.n_born, mp, nsp);
  free(mp);

  /* Sellers. */
  int64_t n_moves = 0;
  for (int64_t s = 0; s < n; s++)
    if (seller_rank[s] >= 0 && cur[s] >= 0 && old_ids[seller_rank[s]] != r.new_id[cur[s]])
      n_moves++;
  r.moves = alloc_n(n_moves, sizeof *r.moves);
  if (!r.moves)
    goto nomem;
  for (int64_t s = 0; s < n; s++) {
    int64_t a = seller_rank[s], b = cur[s];
    if (a < 0 && b < 0)
      continue;
    if (a < 0) {
      r.summary.sellers_added++;
    } else if (b < 0) {
      r.summary.sellers_removed++;
    } else if (old_ids[a] != r.new_id[b]) {
      r.moves[r.n_moves++] = (gd_match_move){s, old_ids[a], r.new_id[b]};
    } else {
      r.summary.sellers_stayed++;
    }
  }

  r.n_new = k;
  r.summary.sellers = n;
  r.summary.sellers_moved = r.n_moves;
  r.summary.clusters_old = c;
  for (int64_t b = 0; b < k; b++)
    r.summary.clusters_new += new_size[b] > 0;
  r.summary.continued = r.n_continued;
  r.summary.merged = r.n_merges;
  r.summary.split = r.n_splits;
  r.summary.born = r.n_born;
  r.summary.dissolved = r.n_dissolved;
  if (!fixed)
    *next_id = fresh;
  *ret = r;
  memset(&r, 0, sizeof r);
  goto done;

nomem:
  rc = gd_alg_error_set(err, GD_ALG_NOMEM, "match: out of memory (%lld sellers)", (long long)n);
done:
  gd_match_result_free(&r);
  map_free(&oldmap);
  map_free(&pairmap);
  free(old_ids), free(old_size), free(new_size), free(seller_rank), free(pairs), free(cands),
      free(old_taken);
  return rc;
}

gd_alg_status gd_match_snapshots(int64_t n, const int64_t *prev_id, const int64_t *cur,
                                 int64_t min_part_size, int64_t *next_id, gd_match_result *ret,
                                 gd_alg_error *err) {
  return match_core(n, prev_id, cur, NULL, min_part_size, next_id, ret, err);
}

gd_alg_status gd_match_diff(int64_t n, const int64_t *old_id, const int64_t *new_id,
                            int64_t min_part_size, gd_match_result *ret, gd_alg_error *err) {
  if (n < 0 || n > INT32_MAX || (n > 0 && (!old_id || !new_id)) || !ret)
    return gd_alg_error_set(err, GD_ALG_INVALID, "diff: bad arguments (n = %lld)", (long long)n);
  /* New ids -> dense indices in ascending id order. */
  int64_t *ids = alloc_n(n, sizeof *ids), *cur = alloc_n(n, sizeof *cur), k = 0;
  i64map m = {0};
  gd_alg_status rc = GD_ALG_OK;
  if (!ids || !cur || map_init(&m, n) != 0) {
    rc = gd_alg_error_set(err, GD_ALG_NOMEM, "diff: out of memory (%lld sellers)", (long long)n);
    goto out;
  }
  for (int64_t s = 0; s < n; s++) {
    int created;
    if (new_id[s] >= 0) {
      map_slot(&m, new_id[s], &created);
      if (created)
        ids[k++] = new_id[s];
    }
  }
  qsort(ids, (size_t)k, sizeof *ids, cmp_i64);
  for (int64_t i = 0; i < k; i++) {
    int created;
    *map_slot(&m, ids[i], &created) = i;
  }
  for (int64_t s = 0; s < n; s++) {
    int created;
    cur[s] = new_id[s] >= 0 ? *map_slot(&m, new_id[s], &created) : -1;
  }
  int64_t unused = 0;
  rc = match_core(n, old_id, cur, ids, min_part_size, &unused, ret, err);
out:
  map_free(&m);
  free(ids);
  free(cur);
  return rc;
}
