/*
 * sellergen: deterministic synthetic seller network for graphd.
 *
 * Writes a graph of marketplace sellers and the entities they share, with
 * known counterfeit rings hidden inside, so that ingest, traversal and
 * clustering can be tested and benchmarked against ground truth. The same
 * seed and options always give byte-identical files, on any platform: all
 * randomness comes from our own splitmix64/xoshiro256** generators, each
 * seller draws from a stream seeded by (seed, seller index) alone, and
 * planning draws from streams seeded by (seed, planning step).
 *
 * Model (--profile classic, the default; the files it writes never change)
 *   Sellers s1..sN. Every seller has own entities that nobody else uses:
 *   1-2 devices, a payment account, an address, a phone, an e-mail and
 *   sometimes an IP.
 *   Families (about 8% of honest sellers): one owner running 2-5 shops;
 *     members share a phone, e-mail and/or payment account (a non-empty
 *     subset) and some have a direct seller-seller link to the first shop.
 *     Not counterfeit: a false-positive trap for naive "shares X" rules.
 *   Hub addresses: logistics parks and fulfilment centres. 2+sqrt(N)/40 of
 *     them, used by ~20% of honest sellers (x --hub-scale), so each is
 *     shared by hundreds (N=2k) to thousands (N=200k+) of sellers.
 *   Hub IPs: carrier-grade NAT addresses, N/2000 of them, used by ~25% of
 *     sellers (x --hub-scale): hundreds of sellers each.
 *   Rings (--ring-fraction of sellers, default 2%): groups of 5-100 sellers
 *     (skewed towards small) that onboard within a few weeks of each other
 *     and share a pool of 1-8 devices (every member uses one, some two),
 *     1-6 mule payment accounts (each used by a subset) and one warehouse
 *     address used by 85-95% of the members. Members still have some own
 *     entities, sometimes use a hub, and ~10% share an own entity of (or
 *     link directly to) a random honest seller as camouflage.
 *   Labels: each ring member is labelled "counterfeit" with probability
 *     --label-fraction (some also get "complaint:<brand>"); honest sellers
 *     get "complaint:<brand>" with probability --noise-fraction as noise.
 *   Times: each seller onboards at some moment in [--since, --until); its
 *     link observations are spread between then and --until. ~4% of links
 *     are observed a second time (the store merges repeated pairs).
 *
 * --profile heavy: real marketplaces' heavy tails (classic plus):
 *   Shared addresses (--shared-tail on) instead of the few hubs: a pool
 *     whose sizes follow a discrete power law p(k) ~ k^-2 on [2, Smax],
 *     Smax = max(400, N/25); ~30% of honest sellers and ~10% of ring
 *     members use one (x --hub-scale). Sizes are drawn by stratified
 *     inverse-CDF sampling, so every part of the range is present (many of
 *     2-10, tens of 20-400, some in the thousands from N=100k), then the
 *     users, shuffled, are dealt into them: each seller uses at most one.
 *   Shared IPs likewise: p(k) ~ k^-1.8 on [2, max(1000, N/10)], ~40% of
 *     all sellers; the others sometimes have an own IP.
 *   Franchise chains (--chain-fraction, default 3% of honest sellers):
 *     chains of 10-40 shops sharing a corporate identity, a subset of at
 *     least two of {phone, e-mail, payment account} (uniform over the four
 *     such subsets) used by every shop; each shop keeps its own devices and
 *     address and uses shared addresses/IPs like any honest seller. At
 *     least two, because a chain tied by one entity alone would look
 *     exactly like the crowd on one shared address or IP, which must never
 *     form a cluster by itself: the chain is an honest group that a
 *     clusterer may find but must not call a ring.
 *   Big rings (--big-rings K, default max(1, N/20000)): rings of 100-300
 *     members (uniform), planned first inside --ring-fraction's total,
 *     with one warehouse (85-95% of members), ~12 members a device and
 *     1 + size/20 mules. Device pools are capped at 32 and mule pools at
 *     16 (classic: 8 and 6) for all rings of this profile.
 *   Families, camouflage and labels as in classic.
 * --profile adversarial: heavy plus
 *   Device rotation (--rotate-devices on): each ring replaces its device
 *     pool A by a disjoint pool B of the same size at a random moment in
 *     the middle half of its life (its start to --until). Links to pool A
 *     are observed before that moment, links to pool B after it. Members
 *     onboarded before it use pool A and, with probability 1/2, pool B
 *     afterwards; the first members (one per device) always do, so that
 *     every device of both pools is used; members onboarded after it use
 *     pool B only. Ring members onboard over a quarter of the period
 *     (classic: at most 45 days) so that both kinds exist.
 *   Camouflage (--camouflage 0.3, --camouflage-ties 3): 30% of ring
 *     members, each with 1-3 ties to random honest sellers.
 *   Labels: ring members are labelled with probability 0.15, and
 *     --false-label-fraction (default 0.1) of all counterfeit labels are on
 *     honest sellers (chosen uniformly among non-ring sellers).
 * Every phenomenon is its own option; the profile only sets the defaults.
 *
 * Keys are lower-case (graphd case-folds keys, so truth.csv must match what
 * the store holds) and are scrambled with a seed-keyed bijection, so they
 * are unique but reveal nothing about an entity's role:
 *   seller s17   address addr-3fa9c21b   payment_account pa-0c7d1e55
 *   device d-9f2a03bc   phone +4915123456789   email u1b2c3d4e@mail.example
 *   ip 83.12.200.7
 *
 * Output files (in --out, created if missing):
 *   links.csv     a_type,a_key,b_type,b_key,seen   one link observation a
 *                 line; a is always a seller; never a link to itself.
 *   entities.csv  type,key,labels   labelled sellers only; labels sorted,
 *                 ';'-separated.
 *   (--format jsonl writes links.jsonl and entities.jsonl instead, one
 *    object a line with the same field names; labels is an array.)
 *   truth.csv     seller_key,ring,warehouse_key,labelled,kind,group   every
 *                 seller; ring 0 = not in a ring, rings numbered from 1;
 *                 labelled 1 = carries "counterfeit" (false labels too);
 *                 kind honest, ring, family or chain; group numbers rings
 *                 1..R (= ring), then families, then chains; 0 = none.
 *   rings.csv     ring,size,warehouse_key,devices,mule_accounts   the last
 *                 two ';'-separated; with rotation, pool A then pool B.
 *   hubs.csv      type,key,sellers   every shared address and IP that is
 *                 not a group's (hubs, or the heavy-tailed pool) with the
 *                 number of distinct sellers linked to it.
 *   chains.csv    chain,size,phone_key,email_key,payment_key   chain = its
 *                 group in truth.csv; a key is empty when not shared.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Keys pack a class in the top 4 bits of a 28-bit counter (see make_key),
 * and own phones are numbered by seller index below 10^8; both cap N. */
#define MAX_SELLERS 100000000ULL
#define DAY 86400LL
#define RING_MIN 5
#define RING_MAX 100
#define RING_MAX_DEVICES 8
#define RING_MAX_MULES 6
/* heavy and adversarial profiles */
#define BIG_RING_MIN 100
#define BIG_RING_MAX 300
#define WIDE_MAX_DEVICES 32 /* 300 members: ~12 a device */
#define WIDE_MAX_MULES 16
#define CHAIN_MIN 10
#define CHAIN_MAX 40
#define MAX_BIG_RINGS 1000000
#define MAX_CAMO_TIES 8

/* Behaviour probabilities: chosen to give a realistic-looking mix, not
 * fitted to any real data. */
static const double FAMILY_FRACTION = 0.08;
static const double P_SECOND_DEVICE = 0.3;
static const double P_HUB_ADDR_HONEST = 0.20;
static const double P_HUB_ADDR_RING = 0.10;
static const double P_NAT_IP = 0.25;
static const double P_OWN_IP = 0.20;
static const double P_FAMILY_DIRECT = 0.3;
static const double P_DUPLICATE = 0.04;
static const double P_RING_SECOND_DEVICE = 0.4;
static const double P_RING_MULE = 0.7;
static const double P_RING_OWN_DEVICE = 0.5;
static const double P_RING_OWN_PAYMENT = 0.5;
static const double P_RING_OWN_ADDRESS = 0.3;
static const double P_LABELLED_COMPLAINT = 0.25;
/* heavy tails (--shared-tail) and rotation (--rotate-devices) */
static const double P_SHARED_ADDR_HONEST = 0.30;
static const double P_SHARED_ADDR_RING = 0.10;
static const double P_SHARED_IP = 0.40;
static const double SHARED_ADDR_EXPONENT = 2.0;
static const double SHARED_IP_EXPONENT = 1.8;
static const double P_ROTATE_CARRY = 0.5;

static const char *const BRANDS[] = {
	"aurelia", "bluepeak", "corvane", "deltora", "evershine",
	"fjordline", "granton", "helixa", "ironvale", "junipro",
};
#define NBRANDS (sizeof BRANDS / sizeof BRANDS[0])

enum etype { T_SELLER, T_ADDRESS, T_PAYMENT, T_DEVICE, T_PHONE, T_EMAIL,
	     T_IP, T_COUNT };

static const char *const TYPE_NAME[T_COUNT] = {
	"seller", "address", "payment_account", "device", "phone", "email",
	"ip",
};

/* Key classes: disjoint counter ranges per type, so that own, family, hub
 * and ring entities can never collide after scrambling. */
enum { C_OWN = 0, C_FAMILY = 1, C_HUB = 2, C_RING = 3, C_CHAIN = 4 };

/* Bits of family.share, chain.share and of the own-entity mask. */
enum { E_PHONE = 1, E_EMAIL = 2, E_PAYMENT = 4 };

/* A chain's corporate identity: one of the subsets of at least two. */
static const uint8_t CHAIN_SHARES[] = {
	E_PHONE | E_EMAIL, E_PHONE | E_PAYMENT, E_EMAIL | E_PAYMENT,
	E_PHONE | E_EMAIL | E_PAYMENT,
};
#define NCHAIN_SHARES (sizeof CHAIN_SHARES / sizeof CHAIN_SHARES[0])

/* Stream domains of rng_seed. */
enum { D_PLAN = 1, D_SELLER = 2, D_SHARED_ADDR = 3, D_SHARED_IP = 4,
	D_FALSE_LABEL = 5 };

enum kind { K_HONEST, K_RING, K_FAMILY, K_CHAIN };

static const char *const KIND_NAME[] = {
	"honest", "ring", "family", "chain",
};

enum { PROF_CLASSIC, PROF_HEAVY, PROF_ADVERSARIAL };

/* What each --profile sets by default. */
static const struct profile {
	const char *name;
	bool shared_tail;
	double chain_fraction;
	bool big_rings;      /* max(1, N/20000) big rings, else none */
	bool rotate;
	double camouflage;   /* share of ring members with camouflage ties */
	unsigned camo_ties;  /* at most this many ties each */
	double false_label;
	double label_fraction;
} PROFILES[] = {
	{ "classic", false, 0, false, false, 0.10, 1, 0, 0.3 },
	{ "heavy", true, 0.03, true, false, 0.10, 1, 0, 0.3 },
	{ "adversarial", true, 0.03, true, true, 0.30, 3, 0.10, 0.15 },
};
#define NPROFILES (sizeof PROFILES / sizeof PROFILES[0])

struct opts {
	uint64_t sellers;
	uint64_t seed;
	const char *out;
	bool jsonl;
	double ring_fraction;
	double label_fraction;
	double noise_fraction;
	double hub_scale;
	int64_t since;
	int64_t until;
	unsigned profile;      /* index into PROFILES */
	/* Per-phenomenon options (and label_fraction): negative until given,
	 * then the profile's default (see apply_profile). */
	int shared_tail;
	double chain_fraction;
	int64_t big_rings;
	int rotate;
	double camouflage;
	int64_t camo_ties;
	double false_label;
};

typedef struct {
	uint64_t s[4];
} rng_t;

struct ring {
	uint32_t size;
	uint32_t wh_count; /* members with pos < wh_count use the warehouse */
	uint32_t ndev;
	uint32_t nmule;
	int64_t start;     /* onboarding burst start */
	int64_t rot;       /* --rotate-devices: pool B from this time on */
	uint64_t dbase;    /* key counter of device 0 (pool A, then pool B) */
	uint64_t mbase;    /* key counter of mule account 0 */
};

struct family {
	uint32_t head; /* seller index of the first shop */
	uint8_t size;
	uint8_t share; /* E_* bits shared by all members */
};

struct chain {
	uint8_t size;
	uint8_t share; /* E_* bits shared by all shops, at least two */
};

/* Classic hubs are picked with fixed random weights so that sizes vary
 * ~1:5. Heavy-tailed shared entities are dealt to sellers at planning
 * time instead: then `of` is set and `cum` unused. */
struct hubset {
	uint32_t n;
	double *cum;
	uint64_t *sellers;
	uint32_t *of;      /* per seller: 1 + its shared entity, 0 none */
};

struct ekey {
	enum etype type;
	char s[40];
};

struct gen {
	struct opts o;
	uint64_t keyseed[T_COUNT];
	uint32_t *grp; /* 0 honest, 1..nrings ring, then families, chains */
	uint16_t *pos; /* position inside the ring, family or chain */
	uint8_t *flabel; /* honest sellers with a false counterfeit label */
	bool wide;     /* non-classic profile: bigger pools, other key layout */
	struct ring *rings;
	uint32_t nrings;
	uint32_t nbig;
	struct family *fams;
	uint32_t nfams;
	struct chain *chains;
	uint32_t nchains;
	struct hubset hub_addr;
	struct hubset hub_ip;
	FILE *links;
	FILE *ents;
	FILE *truth;
	uint64_t nlinks;
	uint64_t nents;
	uint64_t nring_sellers;
	uint64_t nlabelled;
	uint64_t nfalse;
};

/* ---- randomness ------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t splitmix64(uint64_t *x)
{
	*x += 0x9e3779b97f4a7c15ULL;
	return mix64(*x);
}

/* Independent stream per (seed, domain, index): a seller's draws do not
 * depend on how many numbers earlier sellers consumed. */
static void rng_seed(rng_t *r, uint64_t seed, uint64_t domain, uint64_t idx)
{
	uint64_t x = mix64(seed ^ mix64(domain * 0x9e3779b97f4a7c15ULL + idx));

	for (int k = 0; k < 4; k++)
		r->s[k] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng_t *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

static double rng_unit(rng_t *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n); the modulo bias is < n / 2^64, far below noticeable. */
static uint64_t rng_below(rng_t *r, uint64_t n)
{
	return n ? rng_next(r) % n : 0;
}

static bool rng_chance(rng_t *r, double p)
{
	return rng_unit(r) < p;
}

/* ---- keys ------------------------------------------------------------- */

/* Balanced Feistel network on 2*half bits: a keyed bijection, so distinct
 * counters give distinct, random-looking keys. */
static uint32_t feistel(uint32_t x, unsigned half, uint64_t key)
{
	uint32_t mask = (1u << half) - 1;
	uint32_t l = x >> half, r = x & mask;

	for (uint64_t round = 0; round < 4; round++) {
		uint32_t f = (uint32_t)mix64(key + round * 0x632be59bd9b4e019ULL +
					     r) & mask;
		uint32_t t = r;
		r = l ^ f;
		l = t;
	}
	return (l << half) | r;
}

/* Bijection on [0, 10^9) by cycle walking a 30-bit Feistel permutation. */
static uint32_t scramble_dec9(uint32_t x, uint64_t key)
{
	do
		x = feistel(x, 15, key);
	while (x >= 1000000000u);
	return x;
}

/* Key of the n-th entity of class cls (n-th seller for T_SELLER). The
 * class goes above a 28-bit counter (below 10^8 for phones): MAX_SELLERS
 * and the ring-fraction cap keep every counter in range. */
static void make_key(struct ekey *k, const struct gen *g, enum etype t,
		     unsigned cls, uint64_t n)
{
	uint64_t key = g->keyseed[t];
	uint32_t v = 0;

	k->type = t;
	if (t == T_SELLER) {
		snprintf(k->s, sizeof k->s, "s%" PRIu64, n + 1);
		return;
	}
	if (t != T_PHONE)
		v = feistel((uint32_t)((uint64_t)cls << 28 | n), 16, key);
	switch (t) {
	case T_ADDRESS:
		snprintf(k->s, sizeof k->s, "addr-%08" PRIx32, v);
		break;
	case T_PAYMENT:
		snprintf(k->s, sizeof k->s, "pa-%08" PRIx32, v);
		break;
	case T_DEVICE:
		snprintf(k->s, sizeof k->s, "d-%08" PRIx32, v);
		break;
	case T_PHONE:
		v = scramble_dec9((uint32_t)(cls * 100000000u + n), key);
		snprintf(k->s, sizeof k->s, "+4915%09" PRIu32, v);
		break;
	case T_EMAIL:
		snprintf(k->s, sizeof k->s, "u%08" PRIx32 "@mail.example", v);
		break;
	case T_IP:
		snprintf(k->s, sizeof k->s, "%u.%u.%u.%u", v >> 24,
			 (v >> 16) & 255, (v >> 8) & 255, v & 255);
		break;
	case T_SELLER:
	case T_COUNT:
		break;
	}
}

/* ---- output ----------------------------------------------------------- */

static void write_link(struct gen *g, const struct ekey *a,
		       const struct ekey *b, int64_t seen)
{
	if (g->o.jsonl)
		fprintf(g->links,
			"{\"a_type\":\"%s\",\"a_key\":\"%s\",\"b_type\":\"%s\","
			"\"b_key\":\"%s\",\"seen\":%" PRId64 "}\n",
			TYPE_NAME[a->type], a->s, TYPE_NAME[b->type], b->s,
			seen);
	else
		fprintf(g->links, "%s,%s,%s,%s,%" PRId64 "\n",
			TYPE_NAME[a->type], a->s, TYPE_NAME[b->type], b->s,
			seen);
	g->nlinks++;
}

/* An observation time in [t0, t1): t0 is the seller's onboarding, t1 is
 * --until except for rotated ring devices. */
static int64_t seen_between(rng_t *r, int64_t t0, int64_t t1)
{
	return t0 + (int64_t)rng_below(r, (uint64_t)(t1 - t0));
}

/* One link, sometimes observed twice, as real event streams repeat. */
static void add_link(struct gen *g, rng_t *r, int64_t t0, int64_t t1,
		     const struct ekey *a, const struct ekey *b)
{
	if (a->type == b->type && strcmp(a->s, b->s) == 0)
		return; /* never a self-link */
	write_link(g, a, b, seen_between(r, t0, t1));
	if (rng_chance(r, P_DUPLICATE))
		write_link(g, a, b, seen_between(r, t0, t1));
}

/* Link seller s to entity (t, cls, n), observed within [t0, t1). */
static void link_span(struct gen *g, rng_t *r, int64_t t0, int64_t t1,
		      const struct ekey *s, enum etype t, unsigned cls,
		      uint64_t n)
{
	struct ekey e;

	make_key(&e, g, t, cls, n);
	add_link(g, r, t0, t1, s, &e);
}

/* Link seller s to entity (t, cls, n), observed within [t0, --until). */
static void link_to(struct gen *g, rng_t *r, int64_t t0, const struct ekey *s,
		    enum etype t, unsigned cls, uint64_t n)
{
	link_span(g, r, t0, g->o.until, s, t, cls, n);
}

static void write_labels(struct gen *g, const struct ekey *s, bool cf,
			 int brand)
{
	if (!cf && brand < 0)
		return;
	if (g->o.jsonl) {
		fprintf(g->ents, "{\"type\":\"seller\",\"key\":\"%s\",\"labels\":[",
			s->s);
		if (brand >= 0)
			fprintf(g->ents, "\"complaint:%s\"%s", BRANDS[brand],
				cf ? "," : "");
		fprintf(g->ents, "%s]}\n", cf ? "\"counterfeit\"" : "");
	} else {
		fprintf(g->ents, "seller,%s,", s->s);
		/* sorted: "complaint:" < "counterfeit" */
		if (brand >= 0)
			fprintf(g->ents, "complaint:%s%s", BRANDS[brand],
				cf ? ";" : "");
		fprintf(g->ents, "%s\n", cf ? "counterfeit" : "");
	}
}

static enum kind seller_kind(const struct gen *g, uint64_t i)
{
	uint32_t grp = g->grp[i];

	if (!grp)
		return K_HONEST;
	if (grp <= g->nrings)
		return K_RING;
	return grp <= g->nrings + g->nfams ? K_FAMILY : K_CHAIN;
}

static void write_truth(struct gen *g, const struct ekey *s, uint64_t i,
			bool labelled)
{
	struct ekey wh = { .s = "" };
	enum kind kind = seller_kind(g, i);
	uint32_t ring = kind == K_RING ? g->grp[i] : 0;

	if (ring)
		make_key(&wh, g, T_ADDRESS, C_RING, ring);
	fprintf(g->truth, "%s,%" PRIu32 ",%s,%d,%s,%" PRIu32 "\n", s->s, ring,
		wh.s, labelled ? 1 : 0, KIND_NAME[kind], g->grp[i]);
}

/* ---- planning ---------------------------------------------------------- */

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p) {
		fprintf(stderr, "sellergen: out of memory\n");
		exit(1);
	}
	return p;
}

static void hubset_init(struct hubset *h, uint32_t n, rng_t *r)
{
	double sum = 0;

	h->n = n;
	h->cum = xcalloc(n, sizeof *h->cum);
	h->sellers = xcalloc(n, sizeof *h->sellers);
	for (uint32_t k = 0; k < n; k++) {
		sum += 1.0 + 4.0 * rng_unit(r);
		h->cum[k] = sum;
	}
	for (uint32_t k = 0; k < n; k++)
		h->cum[k] /= sum;
}

/* Picks a hub by weight and counts the seller on it. */
static uint32_t hubset_pick(struct hubset *h, rng_t *r)
{
	double u = rng_unit(r);
	uint32_t lo = 0, hi = h->n - 1;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (h->cum[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	h->sellers[lo]++;
	return lo;
}

/* Skewed towards small rings: most rings are 5-30, a few near 100. */
static uint32_t ring_size(rng_t *r)
{
	double u = rng_unit(r);

	return RING_MIN + (uint32_t)((RING_MAX - RING_MIN + 1) * u * u * u);
}

/* Splits `total` sellers into rings, --big-rings of 100-300 first (as many
 * as fit); returns the ring count. */
static uint32_t plan_ring_sizes(struct gen *g, rng_t *r, uint64_t total)
{
	uint64_t left = total;
	uint32_t n = 0;

	g->rings = xcalloc(total / RING_MIN + 1, sizeof *g->rings);
	for (int64_t b = 0; b < g->o.big_rings && left >= BIG_RING_MIN; b++) {
		uint64_t k = BIG_RING_MIN +
			     rng_below(r, BIG_RING_MAX - BIG_RING_MIN + 1);
		if (k > left)
			k = left;
		if (left - k < RING_MIN && left <= BIG_RING_MAX)
			k = left; /* absorb a too-small tail */
		g->rings[n++].size = (uint32_t)k;
		left -= k;
	}
	g->nbig = n;
	while (left >= RING_MIN) {
		uint64_t k = ring_size(r);
		if (k > left)
			k = left;
		if (left - k < RING_MIN && left <= RING_MAX)
			k = left; /* absorb a too-small tail */
		g->rings[n++].size = (uint32_t)k;
		left -= k;
	}
	return n;
}

/* Ring members onboard within this window after the ring's start: a
 * burst of new accounts is itself a ring signal. With device rotation the
 * window is a quarter of the period, so that members onboard both before
 * and after the rotation. */
static int64_t ring_window(const struct gen *g)
{
	int64_t len = g->o.until - g->o.since;

	if (g->o.rotate)
		return len / 4;
	return len / 4 < 45 * DAY ? len / 4 : 45 * DAY;
}

static void plan_ring(struct gen *g, struct ring *rg, rng_t *r)
{
	int64_t len = g->o.until - g->o.since;
	int64_t window = ring_window(g);
	uint32_t maxdev = g->wide ? WIDE_MAX_DEVICES : RING_MAX_DEVICES;
	uint32_t maxmule = g->wide ? WIDE_MAX_MULES : RING_MAX_MULES;

	rg->wh_count = (uint32_t)ceil(rg->size * (0.85 + 0.10 * rng_unit(r)));
	rg->ndev = 1 + rg->size / 12;
	if (rg->ndev > maxdev)
		rg->ndev = maxdev;
	rg->nmule = 1 + rg->size / 20;
	if (rg->nmule > maxmule)
		rg->nmule = maxmule;
	rg->start = g->o.since + (int64_t)rng_below(r, (uint64_t)(len - window));
	if (g->o.rotate) {
		/* the middle half of [start, --until); life > window >= 1 */
		int64_t life = g->o.until - rg->start;
		rg->rot = rg->start + life / 4 +
			  (int64_t)rng_below(r, (uint64_t)(life / 2));
	}
}

/* Key counters of ring devices and mules. Classic: ring * 16 + k (pools of
 * at most 8 devices, so two rotated pools fit, and 6 mules). Wider pools
 * get consecutive ranges instead, which stay far below 2^28. */
static void plan_ring_keys(struct gen *g)
{
	uint64_t dnext = 0, mnext = 0;
	unsigned pools = g->o.rotate ? 2 : 1;

	for (uint32_t k = 0; k < g->nrings; k++) {
		struct ring *rg = &g->rings[k];
		if (!g->wide) {
			rg->dbase = (k + 1) * 16ULL;
			rg->mbase = (k + 1) * 16ULL;
			continue;
		}
		rg->dbase = dnext;
		rg->mbase = mnext;
		dnext += (uint64_t)rg->ndev * pools;
		mnext += rg->nmule;
	}
}

/* Partial Fisher-Yates: the first m entries of perm become a uniform random
 * sample of sellers, in random order. */
static uint32_t *sample_sellers(uint64_t n, uint64_t m, rng_t *r)
{
	uint32_t *perm = xcalloc(n, sizeof *perm);

	for (uint64_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (uint64_t i = 0; i < m; i++) {
		uint64_t j = i + rng_below(r, n - i);
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	return perm;
}

static uint32_t plan_families(struct gen *g, rng_t *r, uint64_t honest)
{
	uint64_t left = (uint64_t)(honest * FAMILY_FRACTION);
	uint32_t n = 0;

	g->fams = xcalloc(left / 2 + 1, sizeof *g->fams);
	while (left >= 2) {
		uint64_t k = 2 + rng_below(r, 4);
		if (k > left)
			k = left;
		g->fams[n].size = (uint8_t)k;
		g->fams[n].share = (uint8_t)(1 + rng_below(r, 7));
		n++;
		left -= k;
	}
	return n;
}

/* Franchise chains: --chain-fraction of the honest sellers in chains of
 * 10-40 shops, each with a corporate identity of at least two entities. */
static uint32_t plan_chains(struct gen *g, rng_t *r, uint64_t honest)
{
	uint64_t left = (uint64_t)(honest * g->o.chain_fraction);
	uint32_t n = 0;

	g->chains = xcalloc(left / CHAIN_MIN + 1, sizeof *g->chains);
	while (left >= CHAIN_MIN) {
		uint64_t k = CHAIN_MIN +
			     rng_below(r, CHAIN_MAX - CHAIN_MIN + 1);
		if (k > left)
			k = left;
		g->chains[n].size = (uint8_t)k;
		g->chains[n].share = CHAIN_SHARES[rng_below(r, NCHAIN_SHARES)];
		n++;
		left -= k;
	}
	return n;
}

/* Places rings, then families, then chains, on a random sample of
 * sellers. */
static void assign_groups(struct gen *g, const uint32_t *perm)
{
	uint64_t p = 0;

	for (uint32_t k = 0; k < g->nrings; k++)
		for (uint32_t m = 0; m < g->rings[k].size; m++, p++) {
			g->grp[perm[p]] = k + 1;
			g->pos[perm[p]] = (uint16_t)m;
		}
	for (uint32_t f = 0; f < g->nfams; f++) {
		g->fams[f].head = perm[p];
		for (uint32_t m = 0; m < g->fams[f].size; m++, p++) {
			g->grp[perm[p]] = g->nrings + 1 + f;
			g->pos[perm[p]] = (uint16_t)m;
		}
	}
	for (uint32_t c = 0; c < g->nchains; c++)
		for (uint32_t m = 0; m < g->chains[c].size; m++, p++) {
			g->grp[perm[p]] = g->nrings + g->nfams + 1 + c;
			g->pos[perm[p]] = (uint16_t)m;
		}
}

static bool is_ring(const struct gen *g, uint64_t i)
{
	return g->grp[i] >= 1 && g->grp[i] <= g->nrings;
}

/* x^e for 0 <= e < 1 from square roots and products only, which IEEE 754
 * rounds exactly (unlike pow()), so the result is the same everywhere. */
static double root_pow(double x, double e)
{
	double y = 1;

	for (int b = 0; b < 40 && e > 0; b++) {
		x = sqrt(x);
		e *= 2;
		if (e >= 1) {
			y *= x;
			e -= 1;
		}
	}
	return y;
}

/* Discrete power law p(k) ~ k^-alpha on [2, smax]: returns the CDF,
 * cum[k - 2] = P(size <= k), and its mean in *mean. */
static double *powerlaw_init(uint32_t smax, double alpha, double *mean)
{
	uint32_t m = smax - 1;
	double *cum = xcalloc(m, sizeof *cum);
	int ia = (int)ceil(alpha);
	double sum = 0, ksum = 0;

	for (uint32_t k = 2; k <= smax; k++) {
		double p = root_pow(k, ia - alpha);
		for (int e = 0; e < ia; e++)
			p /= k;
		sum += p;
		ksum += k * p;
		cum[k - 2] = sum;
	}
	for (uint32_t j = 0; j < m; j++)
		cum[j] /= sum;
	cum[m - 1] = 1.0;
	*mean = ksum / sum;
	return cum;
}

/* Inverse CDF: the size k whose CDF step contains u in [0, 1). */
static uint64_t powerlaw_size(const double *cum, uint32_t smax, double u)
{
	uint32_t lo = 0, hi = smax - 2;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (cum[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo + 2;
}

/* Heavy-tailed shared entities (--shared-tail): each seller uses one with
 * probability p_honest (p_ring for ring members). Sizes are drawn by
 * stratified inverse-CDF sampling, one draw per 1/strata slice of the CDF
 * from the top down, so the whole range is present without gaps and the
 * biggest come first. Their sum is the expected number of users give or
 * take the spread of the top slices, so the users are then topped up by
 * further passes of the same draws (or the last ones left out) to fit the
 * sizes exactly, shuffled, and dealt into them: every entity gets its
 * size (at least two sellers), each seller at most one entity. All from
 * the stream (seed, domain). */
static void plan_shared(struct gen *g, struct hubset *h, uint64_t domain,
			double alpha, uint64_t smax, double p_honest,
			double p_ring)
{
	uint64_t n = g->o.sellers;
	uint32_t *users = xcalloc(n, sizeof *users);
	uint8_t *chosen = xcalloc(n, sizeof *chosen);
	uint64_t nu = 0, next = 0, total = 0, strata, added;
	double mean, *cum;
	rng_t r;

	h->of = xcalloc(n, sizeof *h->of);
	rng_seed(&r, g->o.seed, domain, 0);
	do {
		added = 0;
		for (uint64_t i = 0; i < n && (!total || nu < total); i++) {
			if (chosen[i] ||
			    !rng_chance(&r, is_ring(g, i) ? p_ring : p_honest))
				continue;
			chosen[i] = 1;
			users[nu++] = (uint32_t)i;
			added++;
		}
		if (!total) { /* first pass: plan the sizes */
			if (nu < 2)
				break;
			cum = powerlaw_init((uint32_t)smax, alpha, &mean);
			strata = (uint64_t)(nu / mean + 0.5);
			if (!strata)
				strata = 1;
			h->sellers = xcalloc(strata, sizeof *h->sellers);
			for (uint64_t j = strata; j-- > 0;) {
				double u = ((double)j + rng_unit(&r)) /
					   (double)strata;
				h->sellers[h->n] = powerlaw_size(cum,
								 (uint32_t)smax,
								 u);
				total += h->sellers[h->n++];
			}
			free(cum);
		}
	} while (nu < total && added);
	for (uint64_t i = 0; i + 1 < nu; i++) {
		uint64_t k = i + rng_below(&r, nu - i);
		uint32_t t = users[i];
		users[i] = users[k];
		users[k] = t;
	}
	/* Deal, biggest first; only when the users ran out (everyone is
	 * already in) are the last, smallest entities cut or left out. */
	for (uint32_t e = 0; e < h->n; e++) {
		uint64_t k = h->sellers[e];
		if (k > nu - next)
			k = nu - next;
		if (k < 2) {
			h->n = e;
			break;
		}
		for (uint64_t m = 0; m < k; m++)
			h->of[users[next++]] = e + 1;
		h->sellers[e] = k;
	}
	free(chosen);
	free(users);
}

/* False labels: enough honest (non-ring) sellers labelled counterfeit that
 * they carry --false-label-fraction of the expected counterfeit labels,
 * chosen uniformly from the stream (seed, D_FALSE_LABEL). */
static void plan_false_labels(struct gen *g)
{
	uint64_t n = g->o.sellers, honest = n - g->nring_sellers, want, m = 0;
	double f = g->o.false_label;
	uint32_t *cand;
	rng_t r;

	if (f <= 0)
		return;
	want = (uint64_t)(g->o.label_fraction * (double)g->nring_sellers *
			  f / (1 - f) + 0.5);
	if (want > honest)
		want = honest;
	if (!want)
		return;
	cand = xcalloc(honest, sizeof *cand);
	for (uint64_t i = 0; i < n; i++)
		if (!is_ring(g, i))
			cand[m++] = (uint32_t)i;
	g->flabel = xcalloc(n, sizeof *g->flabel);
	rng_seed(&r, g->o.seed, D_FALSE_LABEL, 0);
	for (uint64_t i = 0; i < want; i++) {
		uint64_t k = i + rng_below(&r, m - i);
		uint32_t t = cand[i];
		cand[i] = cand[k];
		cand[k] = t;
		g->flabel[t] = 1;
	}
	free(cand);
}

/* Everything shared is planned up front; sellers are then written one by
 * one from their own streams. The classic plan draws only from the stream
 * (seed, D_PLAN) in this order; the other phenomena draw nothing from it
 * when off, so that classic output never changes. */
static void plan(struct gen *g)
{
	uint64_t n = g->o.sellers;
	uint64_t ring_target = (uint64_t)(n * g->o.ring_fraction + 0.5);
	uint64_t grouped = 0;
	rng_t r;

	g->wide = g->o.profile != PROF_CLASSIC;
	rng_seed(&r, g->o.seed, D_PLAN, 0);
	for (int t = 0; t < T_COUNT; t++)
		g->keyseed[t] = rng_next(&r);
	g->nrings = plan_ring_sizes(g, &r, ring_target);
	for (uint32_t k = 0; k < g->nrings; k++) {
		plan_ring(g, &g->rings[k], &r);
		g->nring_sellers += g->rings[k].size;
	}
	plan_ring_keys(g);
	g->nfams = plan_families(g, &r, n - g->nring_sellers);
	g->nchains = plan_chains(g, &r, n - g->nring_sellers);
	for (uint32_t f = 0; f < g->nfams; f++)
		grouped += g->fams[f].size;
	for (uint32_t c = 0; c < g->nchains; c++)
		grouped += g->chains[c].size;

	g->grp = xcalloc(n, sizeof *g->grp);
	g->pos = xcalloc(n, sizeof *g->pos);
	uint32_t *perm = sample_sellers(n, g->nring_sellers + grouped, &r);
	assign_groups(g, perm);
	free(perm);

	if (g->o.shared_tail) {
		double s = g->o.hub_scale;
		plan_shared(g, &g->hub_addr, D_SHARED_ADDR,
			    SHARED_ADDR_EXPONENT, n / 25 > 400 ? n / 25 : 400,
			    P_SHARED_ADDR_HONEST * s, P_SHARED_ADDR_RING * s);
		plan_shared(g, &g->hub_ip, D_SHARED_IP, SHARED_IP_EXPONENT,
			    n / 10 > 1000 ? n / 10 : 1000, P_SHARED_IP * s,
			    P_SHARED_IP * s);
	} else {
		hubset_init(&g->hub_addr, 2 + (uint32_t)(sqrt((double)n) / 40),
			    &r);
		hubset_init(&g->hub_ip, n / 2000 ? (uint32_t)(n / 2000) : 1,
			    &r);
	}
	plan_false_labels(g);
}

/* ---- sellers ----------------------------------------------------------- */

/* Own, unshared entities; `skip` names E_* kinds the seller shares instead.
 * Device slot 0 and the address always exist (camouflage relies on it). */
static void own_entities(struct gen *g, rng_t *r, uint64_t i, int64_t t0,
			 const struct ekey *s, unsigned skip)
{
	link_to(g, r, t0, s, T_DEVICE, C_OWN, 2 * i);
	g->nents += 2; /* device 0, address */
	if (rng_chance(r, P_SECOND_DEVICE)) {
		link_to(g, r, t0, s, T_DEVICE, C_OWN, 2 * i + 1);
		g->nents++;
	}
	link_to(g, r, t0, s, T_ADDRESS, C_OWN, i);
	if (!(skip & E_PAYMENT)) {
		link_to(g, r, t0, s, T_PAYMENT, C_OWN, i);
		g->nents++;
	}
	if (!(skip & E_PHONE)) {
		link_to(g, r, t0, s, T_PHONE, C_OWN, i);
		g->nents++;
	}
	if (!(skip & E_EMAIL)) {
		link_to(g, r, t0, s, T_EMAIL, C_OWN, i);
		g->nents++;
	}
}

/* Either a carrier NAT address shared by hundreds (or the seller's shared
 * IP from the heavy tail), or (less often) an own IP, or none. */
static void maybe_ip(struct gen *g, rng_t *r, uint64_t i, int64_t t0,
		     const struct ekey *s)
{
	if (g->hub_ip.of) {
		if (g->hub_ip.of[i])
			link_to(g, r, t0, s, T_IP, C_HUB, g->hub_ip.of[i] - 1);
		else if (rng_chance(r, P_OWN_IP)) {
			link_to(g, r, t0, s, T_IP, C_OWN, i);
			g->nents++;
		}
		return;
	}
	if (rng_chance(r, P_NAT_IP * g->o.hub_scale)) {
		link_to(g, r, t0, s, T_IP, C_HUB, hubset_pick(&g->hub_ip, r));
	} else if (rng_chance(r, P_OWN_IP)) {
		link_to(g, r, t0, s, T_IP, C_OWN, i);
		g->nents++;
	}
}

/* A hub address with probability p, or the seller's shared address from
 * the heavy tail (planned), if any. */
static void maybe_hub_address(struct gen *g, rng_t *r, uint64_t i, int64_t t0,
			      const struct ekey *s, double p)
{
	if (g->hub_addr.of) {
		if (g->hub_addr.of[i])
			link_to(g, r, t0, s, T_ADDRESS, C_HUB,
				g->hub_addr.of[i] - 1);
		return;
	}
	if (rng_chance(r, p * g->o.hub_scale))
		link_to(g, r, t0, s, T_ADDRESS, C_HUB,
			hubset_pick(&g->hub_addr, r));
}

static int maybe_complaint(rng_t *r, double p)
{
	return rng_chance(r, p) ? (int)rng_below(r, NBRANDS) : -1;
}

/* Links seller s to the shared identity n of class cls: the phone,
 * e-mail and payment account named by the E_* bits of share. */
static void link_identity(struct gen *g, rng_t *r, int64_t t0,
			  const struct ekey *s, unsigned share, unsigned cls,
			  uint64_t n)
{
	if (share & E_PHONE)
		link_to(g, r, t0, s, T_PHONE, cls, n);
	if (share & E_EMAIL)
		link_to(g, r, t0, s, T_EMAIL, cls, n);
	if (share & E_PAYMENT)
		link_to(g, r, t0, s, T_PAYMENT, cls, n);
}

static void gen_family_member(struct gen *g, rng_t *r, uint64_t i,
			      int64_t t0, const struct ekey *s, uint32_t f)
{
	const struct family *fam = &g->fams[f];

	own_entities(g, r, i, t0, s, fam->share);
	link_identity(g, r, t0, s, fam->share, C_FAMILY, f);
	if (g->pos[i] > 0 && rng_chance(r, P_FAMILY_DIRECT))
		link_to(g, r, t0, s, T_SELLER, 0, fam->head);
}

/* A chain shop: own devices and address, the chain's shared identity. */
static void gen_chain_member(struct gen *g, rng_t *r, uint64_t i,
			     int64_t t0, const struct ekey *s, uint32_t c)
{
	const struct chain *ch = &g->chains[c];

	own_entities(g, r, i, t0, s, ch->share);
	link_identity(g, r, t0, s, ch->share, C_CHAIN, c);
}

static void gen_honest(struct gen *g, rng_t *r, uint64_t i,
		       const struct ekey *s)
{
	int64_t t0 = g->o.since +
		     (int64_t)rng_below(r, (uint64_t)(g->o.until - g->o.since));
	uint32_t grp = g->grp[i];
	bool cf = g->flabel && g->flabel[i];

	if (grp > g->nrings + g->nfams)
		gen_chain_member(g, r, i, t0, s,
				 grp - g->nrings - g->nfams - 1);
	else if (grp)
		gen_family_member(g, r, i, t0, s, grp - g->nrings - 1);
	else
		own_entities(g, r, i, t0, s, 0);
	maybe_hub_address(g, r, i, t0, s, P_HUB_ADDR_HONEST);
	maybe_ip(g, r, i, t0, s);
	write_labels(g, s, cf, maybe_complaint(r, g->o.noise_fraction));
	write_truth(g, s, i, cf);
	g->nfalse += cf;
}

/* Ties a ring member to a random honest seller: shares that seller's
 * address or device, or links to the seller directly. */
static void camouflage(struct gen *g, rng_t *r, uint64_t i, int64_t t0,
		       const struct ekey *s)
{
	uint64_t j = i;

	for (int tries = 0; tries < 16 && (j == i || g->grp[j] != 0); tries++)
		j = rng_below(r, g->o.sellers);
	if (j == i || g->grp[j] != 0)
		return; /* almost everyone is honest; give up quietly */
	double u = rng_unit(r);
	if (u < 0.4)
		link_to(g, r, t0, s, T_ADDRESS, C_OWN, j);
	else if (u < 0.7)
		link_to(g, r, t0, s, T_DEVICE, C_OWN, 2 * j);
	else
		link_to(g, r, t0, s, T_SELLER, 0, j);
}

/* The member's device of one pool (counters from base), sometimes a
 * second one, observed within [t0, t1). pos % n guarantees every pool
 * device has a user. */
static void ring_devices(struct gen *g, rng_t *r, const struct ring *rg,
			 uint64_t base, unsigned pos, int64_t t0, int64_t t1,
			 const struct ekey *s)
{
	uint32_t dev = pos % rg->ndev;

	link_span(g, r, t0, t1, s, T_DEVICE, C_RING, base + dev);
	if (rg->ndev > 1 && rng_chance(r, P_RING_SECOND_DEVICE))
		link_span(g, r, t0, t1, s, T_DEVICE, C_RING,
			  base + (dev + 1 + rng_below(r, rg->ndev - 1)) %
					 rg->ndev);
}

static void ring_shared(struct gen *g, rng_t *r, uint32_t ring, unsigned pos,
			int64_t t0, const struct ekey *s)
{
	const struct ring *rg = &g->rings[ring - 1];
	uint64_t pool_b = rg->dbase + rg->ndev;

	if (!g->o.rotate) {
		ring_devices(g, r, rg, rg->dbase, pos, t0, g->o.until, s);
	} else if (t0 < rg->rot) {
		/* the first ndev members always carry on, so that every
		 * pool B device has a user too */
		ring_devices(g, r, rg, rg->dbase, pos, t0, rg->rot, s);
		if (pos < rg->ndev || rng_chance(r, P_ROTATE_CARRY))
			ring_devices(g, r, rg, pool_b, pos, rg->rot,
				     g->o.until, s);
	} else {
		ring_devices(g, r, rg, pool_b, pos, t0, g->o.until, s);
	}
	/* pos % n guarantees every mule has a user */
	if (pos < rg->nmule)
		link_to(g, r, t0, s, T_PAYMENT, C_RING, rg->mbase + pos);
	else if (rng_chance(r, P_RING_MULE))
		link_to(g, r, t0, s, T_PAYMENT, C_RING,
			rg->mbase + rng_below(r, rg->nmule));
	if (pos < rg->wh_count)
		link_to(g, r, t0, s, T_ADDRESS, C_RING, ring);
}

static void ring_own(struct gen *g, rng_t *r, uint64_t i, int64_t t0,
		     const struct ekey *s)
{
	link_to(g, r, t0, s, T_PHONE, C_OWN, i);
	link_to(g, r, t0, s, T_EMAIL, C_OWN, i);
	g->nents += 2;
	if (rng_chance(r, P_RING_OWN_DEVICE)) {
		link_to(g, r, t0, s, T_DEVICE, C_OWN, 2 * i);
		g->nents++;
	}
	if (rng_chance(r, P_RING_OWN_PAYMENT)) {
		link_to(g, r, t0, s, T_PAYMENT, C_OWN, i);
		g->nents++;
	}
	if (rng_chance(r, P_RING_OWN_ADDRESS)) {
		link_to(g, r, t0, s, T_ADDRESS, C_OWN, i);
		g->nents++;
	}
}

static void gen_ring_member(struct gen *g, rng_t *r, uint64_t i,
			    const struct ekey *s)
{
	uint32_t ring = g->grp[i];
	const struct ring *rg = &g->rings[ring - 1];
	int64_t window = ring_window(g);

	/* with rotation, the first ndev members onboard before it */
	if (g->o.rotate && g->pos[i] < rg->ndev && rg->rot - rg->start < window)
		window = rg->rot - rg->start;
	int64_t t0 = rg->start + (int64_t)rng_below(r, (uint64_t)window);
	ring_shared(g, r, ring, g->pos[i], t0, s);
	ring_own(g, r, i, t0, s);
	maybe_hub_address(g, r, i, t0, s, P_HUB_ADDR_RING);
	maybe_ip(g, r, i, t0, s);
	if (rng_chance(r, g->o.camouflage)) {
		uint64_t ties = 1;
		if (g->o.camo_ties > 1)
			ties += rng_below(r, (uint64_t)g->o.camo_ties);
		for (uint64_t k = 0; k < ties; k++)
			camouflage(g, r, i, t0, s);
	}

	bool cf = rng_chance(r, g->o.label_fraction);
	int brand = cf ? maybe_complaint(r, P_LABELLED_COMPLAINT) : -1;
	write_labels(g, s, cf, brand);
	write_truth(g, s, i, cf);
	g->nlabelled += cf;
}

static void gen_sellers(struct gen *g)
{
	for (uint64_t i = 0; i < g->o.sellers; i++) {
		struct ekey s;
		rng_t r;

		rng_seed(&r, g->o.seed, D_SELLER, i);
		make_key(&s, g, T_SELLER, 0, i);
		if (g->grp[i] >= 1 && g->grp[i] <= g->nrings)
			gen_ring_member(g, &r, i, &s);
		else
			gen_honest(g, &r, i, &s);
	}
}

/* ---- files ------------------------------------------------------------- */

static FILE *open_out(const struct gen *g, const char *name)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", g->o.out, name);
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "sellergen: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	return f;
}

static void close_out(FILE *f, const char *name)
{
	if (ferror(f) | fclose(f)) {
		fprintf(stderr, "sellergen: writing %s failed: %s\n", name,
			strerror(errno));
		exit(1);
	}
}

/* mkdir -p */
static void make_dirs(const char *dir)
{
	char path[4096];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof path) {
		fprintf(stderr, "sellergen: bad --out directory\n");
		exit(2);
	}
	memcpy(path, dir, len + 1);
	for (size_t k = 1; k <= len; k++) {
		if (path[k] != '/' && path[k] != '\0')
			continue;
		char c = path[k];
		path[k] = '\0';
		if (mkdir(path, 0777) != 0 && errno != EEXIST) {
			fprintf(stderr, "sellergen: mkdir %s: %s\n", path,
				strerror(errno));
			exit(1);
		}
		path[k] = c;
	}
}

static void write_rings(struct gen *g)
{
	FILE *f = open_out(g, "rings.csv");
	struct ekey k;

	fprintf(f, "ring,size,warehouse_key,devices,mule_accounts\n");
	for (uint32_t ring = 1; ring <= g->nrings; ring++) {
		const struct ring *rg = &g->rings[ring - 1];
		uint32_t ndev = rg->ndev * (g->o.rotate ? 2 : 1);
		make_key(&k, g, T_ADDRESS, C_RING, ring);
		fprintf(f, "%" PRIu32 ",%" PRIu32 ",%s,", ring, rg->size, k.s);
		for (uint32_t d = 0; d < ndev; d++) {
			make_key(&k, g, T_DEVICE, C_RING, rg->dbase + d);
			fprintf(f, "%s%s", d ? ";" : "", k.s);
		}
		fputc(',', f);
		for (uint32_t m = 0; m < rg->nmule; m++) {
			make_key(&k, g, T_PAYMENT, C_RING, rg->mbase + m);
			fprintf(f, "%s%s", m ? ";" : "", k.s);
		}
		fputc('\n', f);
		g->nents += 1 + ndev + rg->nmule;
	}
	close_out(f, "rings.csv");
}

static uint32_t write_hubset(struct gen *g, FILE *f, struct hubset *h,
			     enum etype t)
{
	struct ekey k;
	uint32_t used = 0;

	for (uint32_t n = 0; n < h->n; n++) {
		if (!h->sellers[n])
			continue; /* never linked, so not in the graph */
		make_key(&k, g, t, C_HUB, n);
		fprintf(f, "%s,%s,%" PRIu64 "\n", TYPE_NAME[t], k.s,
			h->sellers[n]);
		used++;
	}
	g->nents += used;
	return used;
}

static void write_hubs(struct gen *g, uint32_t *naddr, uint32_t *nip)
{
	FILE *f = open_out(g, "hubs.csv");

	fprintf(f, "type,key,sellers\n");
	*naddr = write_hubset(g, f, &g->hub_addr, T_ADDRESS);
	*nip = write_hubset(g, f, &g->hub_ip, T_IP);
	close_out(f, "hubs.csv");
}

static unsigned popcount3(unsigned x)
{
	return (x & 1) + ((x >> 1) & 1) + ((x >> 2) & 1);
}

static void write_chains(struct gen *g)
{
	static const struct {
		unsigned bit;
		enum etype type;
	} shared[] = {
		{ E_PHONE, T_PHONE }, { E_EMAIL, T_EMAIL },
		{ E_PAYMENT, T_PAYMENT },
	};
	FILE *f = open_out(g, "chains.csv");
	struct ekey k;

	fprintf(f, "chain,size,phone_key,email_key,payment_key\n");
	for (uint32_t c = 0; c < g->nchains; c++) {
		const struct chain *ch = &g->chains[c];
		fprintf(f, "%" PRIu32 ",%u", g->nrings + g->nfams + 1 + c,
			(unsigned)ch->size);
		for (size_t e = 0; e < sizeof shared / sizeof shared[0]; e++) {
			k.s[0] = '\0';
			if (ch->share & shared[e].bit)
				make_key(&k, g, shared[e].type, C_CHAIN, c);
			fprintf(f, ",%s", k.s);
		}
		fputc('\n', f);
		g->nents += popcount3(ch->share);
	}
	close_out(f, "chains.csv");
}

static void run(struct gen *g)
{
	const char *ext = g->o.jsonl ? "jsonl" : "csv";
	char lname[32], ename[32];
	uint32_t naddr, nip;

	plan(g);
	make_dirs(g->o.out);
	snprintf(lname, sizeof lname, "links.%s", ext);
	snprintf(ename, sizeof ename, "entities.%s", ext);
	g->links = open_out(g, lname);
	g->ents = open_out(g, ename);
	g->truth = open_out(g, "truth.csv");
	if (!g->o.jsonl) {
		fprintf(g->links, "a_type,a_key,b_type,b_key,seen\n");
		fprintf(g->ents, "type,key,labels\n");
	}
	fprintf(g->truth, "seller_key,ring,warehouse_key,labelled,kind,group\n");
	gen_sellers(g);
	close_out(g->links, lname);
	close_out(g->ents, ename);
	close_out(g->truth, "truth.csv");
	write_rings(g);
	write_hubs(g, &naddr, &nip);
	write_chains(g);

	g->nents += g->o.sellers;
	for (uint32_t f = 0; f < g->nfams; f++)
		g->nents += popcount3(g->fams[f].share);
	fprintf(stderr,
		"sellergen: %s: %" PRIu64 " sellers, %" PRIu64 " entities, %"
		PRIu64 " links, %" PRIu32 " rings (%" PRIu32 " big, %" PRIu64
		" ring sellers, %" PRIu64 " labelled), %" PRIu64
		" false labels, %" PRIu32 " families, %" PRIu32 " chains, %"
		PRIu32 " %s addresses, %" PRIu32 " %s ips -> %s\n",
		PROFILES[g->o.profile].name, g->o.sellers, g->nents, g->nlinks,
		g->nrings, g->nbig, g->nring_sellers, g->nlabelled, g->nfalse,
		g->nfams, g->nchains, naddr,
		g->o.shared_tail ? "shared" : "hub", nip,
		g->o.shared_tail ? "shared" : "hub", g->o.out);
}

/* ---- options ----------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: sellergen [OPTION]...\n"
"Write a deterministic synthetic seller network with hidden counterfeit\n"
"rings: links, labels, ground truth, rings and hubs (see below).\n"
"\n"
"  -n, --sellers N         number of sellers, 1..100000000 (default 1000)\n"
"  -s, --seed S            random seed, unsigned 64-bit (default 1)\n"
"  -o, --out DIR           output directory, created if missing\n"
"                          (default sellergen-out)\n"
"  -f, --format FMT        csv or jsonl for links and entities (default csv)\n"
"  -p, --profile P         classic, heavy or adversarial (default classic);\n"
"                          sets the defaults of the options below\n"
"      --ring-fraction F   fraction of sellers in rings, 0..0.5 (default 0.02)\n"
"      --label-fraction F  fraction of ring sellers labelled counterfeit,\n"
"                          0..1 (default 0.3; adversarial 0.15)\n"
"      --noise-fraction F  fraction of honest sellers with a complaint:<brand>\n"
"                          label, 0..1 (default 0.002)\n"
"      --hub-scale F       multiplies the share of sellers using hub (or\n"
"                          shared) addresses and IPs, 0..4 (default 1)\n"
"      --since T           first observation time, unix seconds\n"
"                          (default 1735689600 = 2025-01-01T00:00:00Z)\n"
"      --until T           end of observations, exclusive\n"
"                          (default 1767225600 = 2026-01-01T00:00:00Z)\n"
"  -h, --help              show this help and exit\n"
"\n"
"Phenomena (defaults: classic / heavy / adversarial):\n"
"      --shared-tail on|off    heavy-tailed shared addresses (sizes ~ k^-2 on\n"
"                              [2, max(400, N/25)], ~30%% of honest sellers)\n"
"                              and IPs (~ k^-1.8 on [2, max(1000, N/10)], ~40%%)\n"
"                              instead of a few big hubs (off / on / on)\n"
"      --chain-fraction F      honest sellers in franchise chains of 10-40 shops\n"
"                              sharing 2-3 of phone, e-mail, payment account,\n"
"                              0..0.3 (0 / 0.03 / 0.03)\n"
"      --big-rings K           rings of 100-300 members, inside --ring-fraction,\n"
"                              0..1000000 (0 / max(1,N/20000) / max(1,N/20000))\n"
"      --rotate-devices on|off each ring swaps its device pool for a new one\n"
"                              midway; members onboard over a quarter of the\n"
"                              period (off / off / on)\n"
"      --camouflage F          ring members with camouflage ties to honest\n"
"                              sellers, 0..1 (0.1 / 0.1 / 0.3)\n"
"      --camouflage-ties K     at most K ties each, 1..8 (1 / 1 / 3)\n"
"      --false-label-fraction F  share of counterfeit labels put on honest\n"
"                              sellers, 0..0.5 (0 / 0 / 0.1)\n"
"\n"
"Files in DIR: links.csv (a_type,a_key,b_type,b_key,seen), entities.csv\n"
"(type,key,labels; ';'-separated labels), or links.jsonl/entities.jsonl with\n"
"--format jsonl; always truth.csv (seller_key,ring,warehouse_key,labelled,\n"
"kind,group), rings.csv (ring,size,warehouse_key,devices,mule_accounts),\n"
"hubs.csv (type,key,sellers) and chains.csv (chain,size,phone_key,email_key,\n"
"payment_key). Same seed and options give byte-identical files; --profile\n"
"classic always gives the same files as before profiles existed (truth.csv\n"
"gained the kind and group columns).\n");
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (*s == '-' || *s == '\0')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

static bool parse_i64(const char *s, int64_t *v)
{
	char *end;

	errno = 0;
	*v = strtoll(s, &end, 10);
	return errno == 0 && *s != '\0' && *end == '\0';
}

static bool parse_frac(const char *s, double lo, double hi, double *v)
{
	char *end;

	errno = 0;
	*v = strtod(s, &end);
	return errno == 0 && *s != '\0' && *end == '\0' && *v >= lo &&
	       *v <= hi;
}

static bool parse_onoff(const char *s, int *v)
{
	if (strcmp(s, "on") == 0)
		*v = 1;
	else if (strcmp(s, "off") == 0)
		*v = 0;
	else
		return false;
	return true;
}

static bool parse_range(const char *s, uint64_t lo, uint64_t hi, int64_t *v)
{
	uint64_t u;

	if (!parse_u64(s, &u) || u < lo || u > hi)
		return false;
	*v = (int64_t)u;
	return true;
}

static void die_usage(const char *opt, const char *arg)
{
	fprintf(stderr, "sellergen: bad value for --%s: '%s'\n"
			"Try 'sellergen --help'.\n", opt, arg);
	exit(2);
}

enum { O_RING = 256, O_LABEL, O_NOISE, O_HUB, O_SINCE, O_UNTIL,
	O_SHARED_TAIL, O_CHAIN, O_BIG_RINGS, O_ROTATE, O_CAMO, O_CAMO_TIES,
	O_FALSE_LABEL };

static const struct option LONGOPTS[] = {
	{ "sellers", required_argument, NULL, 'n' },
	{ "seed", required_argument, NULL, 's' },
	{ "out", required_argument, NULL, 'o' },
	{ "format", required_argument, NULL, 'f' },
	{ "ring-fraction", required_argument, NULL, O_RING },
	{ "label-fraction", required_argument, NULL, O_LABEL },
	{ "noise-fraction", required_argument, NULL, O_NOISE },
	{ "hub-scale", required_argument, NULL, O_HUB },
	{ "since", required_argument, NULL, O_SINCE },
	{ "until", required_argument, NULL, O_UNTIL },
	{ "profile", required_argument, NULL, 'p' },
	{ "shared-tail", required_argument, NULL, O_SHARED_TAIL },
	{ "chain-fraction", required_argument, NULL, O_CHAIN },
	{ "big-rings", required_argument, NULL, O_BIG_RINGS },
	{ "rotate-devices", required_argument, NULL, O_ROTATE },
	{ "camouflage", required_argument, NULL, O_CAMO },
	{ "camouflage-ties", required_argument, NULL, O_CAMO_TIES },
	{ "false-label-fraction", required_argument, NULL, O_FALSE_LABEL },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Returns the long name of option code c, for error messages. */
static const char *opt_name(int c)
{
	for (const struct option *o = LONGOPTS; o->name; o++)
		if (o->val == c)
			return o->name;
	return "?";
}

static bool parse_one(struct opts *o, int c, const char *arg)
{
	switch (c) {
	case 'n':
		return parse_u64(arg, &o->sellers) && o->sellers >= 1 &&
		       o->sellers <= MAX_SELLERS;
	case 's':
		return parse_u64(arg, &o->seed);
	case 'o':
		o->out = arg;
		return *arg != '\0';
	case 'f':
		o->jsonl = strcmp(arg, "jsonl") == 0;
		return o->jsonl || strcmp(arg, "csv") == 0;
	case O_RING:
		return parse_frac(arg, 0, 0.5, &o->ring_fraction);
	case O_LABEL:
		return parse_frac(arg, 0, 1, &o->label_fraction);
	case O_NOISE:
		return parse_frac(arg, 0, 1, &o->noise_fraction);
	case O_HUB:
		return parse_frac(arg, 0, 4, &o->hub_scale);
	case O_SINCE:
		return parse_i64(arg, &o->since);
	case O_UNTIL:
		return parse_i64(arg, &o->until);
	case 'p':
		for (unsigned k = 0; k < NPROFILES; k++)
			if (strcmp(arg, PROFILES[k].name) == 0) {
				o->profile = k;
				return true;
			}
		return false;
	case O_SHARED_TAIL:
		return parse_onoff(arg, &o->shared_tail);
	case O_CHAIN:
		return parse_frac(arg, 0, 0.3, &o->chain_fraction);
	case O_BIG_RINGS:
		return parse_range(arg, 0, MAX_BIG_RINGS, &o->big_rings);
	case O_ROTATE:
		return parse_onoff(arg, &o->rotate);
	case O_CAMO:
		return parse_frac(arg, 0, 1, &o->camouflage);
	case O_CAMO_TIES:
		return parse_range(arg, 1, MAX_CAMO_TIES, &o->camo_ties);
	case O_FALSE_LABEL:
		return parse_frac(arg, 0, 0.5, &o->false_label);
	}
	return false;
}

/* Options not given take the profile's defaults. */
static void apply_profile(struct opts *o)
{
	const struct profile *p = &PROFILES[o->profile];
	int64_t big = (int64_t)(o->sellers / 20000);

	if (o->label_fraction < 0)
		o->label_fraction = p->label_fraction;
	if (o->shared_tail < 0)
		o->shared_tail = p->shared_tail;
	if (o->chain_fraction < 0)
		o->chain_fraction = p->chain_fraction;
	if (o->big_rings < 0)
		o->big_rings = p->big_rings ? (big > 1 ? big : 1) : 0;
	if (o->rotate < 0)
		o->rotate = p->rotate;
	if (o->camouflage < 0)
		o->camouflage = p->camouflage;
	if (o->camo_ties < 0)
		o->camo_ties = p->camo_ties;
	if (o->false_label < 0)
		o->false_label = p->false_label;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	int c;

	*o = (struct opts){
		.sellers = 1000, .seed = 1, .out = "sellergen-out",
		.ring_fraction = 0.02, .label_fraction = -1,
		.noise_fraction = 0.002, .hub_scale = 1.0,
		.since = 1735689600, .until = 1767225600,
		.profile = PROF_CLASSIC, .shared_tail = -1,
		.chain_fraction = -1, .big_rings = -1, .rotate = -1,
		.camouflage = -1, .camo_ties = -1, .false_label = -1,
	};
	while ((c = getopt_long(argc, argv, "n:s:o:f:p:h", LONGOPTS, NULL)) !=
	       -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (c == '?') {
			fprintf(stderr, "Try 'sellergen --help'.\n");
			exit(2);
		}
		if (!parse_one(o, c, optarg))
			die_usage(opt_name(c), optarg);
	}
	if (optind < argc) {
		fprintf(stderr, "sellergen: unexpected argument '%s'\n",
			argv[optind]);
		exit(2);
	}
	apply_profile(o);
	/* a period shorter than a day leaves no room for a ring's burst */
	if (o->until - o->since < DAY) {
		fprintf(stderr, "sellergen: --until must be at least a day "
				"after --since\n");
		exit(2);
	}
}

static void gen_free(struct gen *g)
{
	free(g->grp);
	free(g->pos);
	free(g->flabel);
	free(g->rings);
	free(g->fams);
	free(g->chains);
	free(g->hub_addr.cum);
	free(g->hub_addr.sellers);
	free(g->hub_addr.of);
	free(g->hub_ip.cum);
	free(g->hub_ip.sellers);
	free(g->hub_ip.of);
}

int main(int argc, char **argv)
{
	struct gen g = { 0 };

	parse_args(argc, argv, &g.o);
	run(&g);
	gen_free(&g);
	return 0;
}
