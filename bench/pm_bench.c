/*
 * pm_bench.c - the pathmap core against JudySL and JudyHS, side by side in one run.
 *
 * For each workload every structure gets the same keys in the same insert order, the same
 * lookup order and the same absent keys; the value of key i is i. Per structure:
 *   insert  - set every key into an empty structure (M keys/s);
 *   lookup  - get every key, in one shuffled order shared by all structures (M lookups/s);
 *   miss    - get as many keys known to be absent (M lookups/s);
 *   iter    - visit every key in order (pm_map_foreach, JudySLFirst/Next; JudyHS has none);
 *   memory  - bytes per distinct key, two ways: the structure's own count (PathMap: the sum
 *             of live sizes seen by a counting pm_alloc_fn; Judy: the byte count returned by
 *             JudySLFreeArray / JudyHSFreeArray), and the delta of jemalloc's
 *             stats.allocated (size-class rounded, what the process really pays).
 * Keys are generated and checked against an oracle (a sorted index of the keys) before any
 * timing; every run is then verified key by key, in order, and by count. Any mismatch prints
 * FAIL and the program exits with status 1.
 *
 * Fairness:
 *   - JudySL takes NUL-terminated strings only. Binary workloads therefore run JudyHS (keys
 *     with a length, no order) on the raw keys, and JudySL on a NUL-free copy of the keys
 *     (each byte b becomes 1 + b % 255, lengths unchanged). PathMap runs on both key sets,
 *     and each ratio compares two structures holding the very same keys.
 *   - Before each structure is built, freed memory is given back to the system (jemalloc
 *     purge, or malloc_trim), so no structure reuses pages another one faulted in; with -r
 *     the structures also take turns going first.
 *   - Timed loops do the same bookkeeping for every structure (one key address, one length,
 *     a found count and a value sum); the exact checks run outside the timed loops.
 *   - The counting hook adds one addition per allocation to PathMap's insert time.
 *   - The PathMap-many rows build and query the same trie through the batch calls
 *     (pm_map_set_many, pm_map_get_many), 256 keys a call, filling the call's key array
 *     inside the timed loop. Judy has no batch calls: its rows are key by key, so a -many
 *     ratio compares what a caller of each library's own API gets for a bulk job; the plain
 *     PathMap rows compare key-by-key calls with key-by-key calls.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <Judy.h>
#ifdef PM_BENCH_JEMALLOC
#include <jemalloc/jemalloc.h>
#else
#include <malloc.h>
#endif

#include "pathmap.h"

#ifdef PM_BENCH_JEMALLOC
static const bool have_jemalloc = true;
#else
static const bool have_jemalloc = false;
#endif

#define STR_(x) #x
#define STR(x) STR_(x)

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

static void die(const char *what)
{
	fprintf(stderr, "pm_bench: %s\n", what);
	exit(2);
}

/* malloc of count * size bytes, overflow-checked; exits when out of memory. */
static void *xmalloc_array(size_t count, size_t size)
{
	void *p;

	if (size != 0 && count > SIZE_MAX / size)
		die("allocation size overflows");
	p = malloc(count * size > 0 ? count * size : 1);
	if (!p)
		die("out of memory");
	return p;
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Millions of operations per second; 0 when nothing was timed. */
static double mrate(size_t ops, double secs)
{
	return secs > 0 ? (double)ops / secs / 1e6 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Random numbers: splitmix64 to seed, xoshiro256** for streams. */

struct rng {
	uint64_t s[4]; /* xoshiro256** state, never all zero */
};

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++) {
		seed += 0x9e3779b97f4a7c15ull;
		r->s[i] = mix64(seed);
	}
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* Uniform in [0, bound), bound < 2^32 (multiply-shift; bias below 2^-32). */
static uint32_t rng_below(struct rng *r, uint32_t bound)
{
	return (uint32_t)(((rng_next(r) >> 32) * bound) >> 32);
}

/* A stable 64-bit tag of a name, to give each workload its own streams. */
static uint64_t name_tag(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

/* ------------------------------------------------------------------------------------------ */
/* Key sets */

struct keyset {
	uint8_t *buf;  /* keys back to back, each followed by a NUL (JudySL reads up to it) */
	size_t *off;   /* off[i]: offset of key i in buf */
	uint32_t *len; /* len[i]: length of key i, the NUL not counted */
	size_t n;      /* number of keys */
	size_t ncap;   /* room in off[] and len[] */
	size_t used;   /* bytes of buf in use */
	size_t cap;    /* bytes of buf allocated */
	size_t maxlen; /* longest key */
};

static void keyset_init(struct keyset *k, size_t ncap, size_t bytes)
{
	memset(k, 0, sizeof(*k));
	k->ncap = ncap;
	k->cap = bytes ? bytes : 64;
	k->buf = xmalloc_array(k->cap, 1);
	k->off = xmalloc_array(ncap ? ncap : 1, sizeof(*k->off));
	k->len = xmalloc_array(ncap ? ncap : 1, sizeof(*k->len));
}

static void keyset_free(struct keyset *k)
{
	free(k->buf);
	free(k->off);
	free(k->len);
	memset(k, 0, sizeof(*k));
}

static void keyset_add(struct keyset *k, const uint8_t *key, size_t len)
{
	if (k->n == k->ncap || len > UINT32_MAX)
		die("key set full");
	if (k->cap - k->used < len + 1) {
		size_t ncap = k->cap;
		uint8_t *nb;

		while (ncap - k->used < len + 1) {
			if (ncap > SIZE_MAX / 2)
				die("key set too large");
			ncap *= 2;
		}
		nb = realloc(k->buf, ncap);
		if (!nb)
			die("out of memory");
		k->buf = nb;
		k->cap = ncap;
	}
	memcpy(k->buf + k->used, key, len);
	k->buf[k->used + len] = 0;
	k->off[k->n] = k->used;
	k->len[k->n] = (uint32_t)len;
	k->used += len + 1;
	k->n++;
	if (len > k->maxlen)
		k->maxlen = len;
}

static const uint8_t *key_at(const struct keyset *k, size_t i)
{
	return k->buf + k->off[i];
}

/* dst[i] = src[perm[i]] for i < n, keys stored in the new order. */
static void keyset_permute(const struct keyset *src, const uint32_t *perm, size_t n,
			   struct keyset *dst)
{
	keyset_init(dst, n, src->used + 1);
	for (size_t i = 0; i < n; i++)
		keyset_add(dst, key_at(src, perm[i]), src->len[perm[i]]);
}

/* A NUL-free copy of src: byte b becomes 1 + b % 255 (0 and 255 both become 1). */
static void keyset_nul_free(const struct keyset *src, struct keyset *dst)
{
	keyset_init(dst, src->n, src->used + 1);
	memcpy(dst->buf, src->buf, src->used);
	memcpy(dst->off, src->off, src->n * sizeof(*src->off));
	memcpy(dst->len, src->len, src->n * sizeof(*src->len));
	dst->n = src->n;
	dst->used = src->used;
	dst->maxlen = src->maxlen;
	for (size_t i = 0; i < dst->n; i++) {
		uint8_t *p = dst->buf + dst->off[i];

		for (size_t j = 0; j < dst->len[i]; j++)
			p[j] = (uint8_t)(1 + p[j] % 255);
	}
}

/* Byte-lexicographic order, a proper prefix first: the order of pathmap and JudySL. */
static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t m = alen < blen ? alen : blen;
	int c = m ? memcmp(a, b, m) : 0;

	if (c)
		return c;
	return (alen > blen) - (alen < blen);
}

/* The first 8 bytes of a key, big-endian, zero padded: if prefix(a) < prefix(b) then a < b. */
static uint64_t key_prefix(const uint8_t *key, size_t len)
{
	uint64_t p = 0;

	for (size_t i = 0; i < 8; i++)
		p = (p << 8) | (i < len ? key[i] : 0);
	return p;
}

/* ------------------------------------------------------------------------------------------ */
/* Oracle: the expected content of a structure after inserting a key set in order. */

struct sortent {
	uint64_t pfx; /* key_prefix of the key */
	uint32_t idx; /* key index */
};

/* The expected content of a structure after the keys are inserted in order, key i with value
 * i: equal keys hold the last index. */
struct oracle {
	uint32_t *sorted;  /* key indices in key order; equal keys by index */
	uint64_t *spfx;	   /* spfx[r]: key_prefix of key sorted[r] */
	uint32_t *final;   /* final[i]: value of key i after all inserts */
	size_t n;	   /* number of keys inserted */
	size_t distinct;   /* number of distinct keys */
	uint64_t get_sum;  /* sum of final[i] over every i: a lookup pass of every key */
	uint64_t iter_sum; /* sum of the values of the distinct keys: a full iteration */
};

static bool ent_less(const struct keyset *k, const struct sortent *a, const struct sortent *b)
{
	int c;

	if (a->pfx != b->pfx)
		return a->pfx < b->pfx;
	c = key_cmp(key_at(k, a->idx), k->len[a->idx], key_at(k, b->idx), k->len[b->idx]);
	if (c)
		return c < 0;
	return a->idx < b->idx;
}

/* Merge sort (insertion-sorted runs, then bottom-up merges). */
static void sort_entries(const struct keyset *k, struct sortent *a, size_t n)
{
	const size_t run = 32;
	struct sortent *tmp = xmalloc_array(n ? n : 1, sizeof(*tmp));
	struct sortent *src = a, *dst = tmp, *swap;

	for (size_t lo = 0; lo < n; lo += run) {
		size_t hi = lo + run < n ? lo + run : n;

		for (size_t i = lo + 1; i < hi; i++) {
			struct sortent e = a[i];
			size_t j = i;

			while (j > lo && ent_less(k, &e, &a[j - 1])) {
				a[j] = a[j - 1];
				j--;
			}
			a[j] = e;
		}
	}
	for (size_t w = run; w < n; w *= 2) {
		for (size_t lo = 0; lo < n; lo += 2 * w) {
			size_t mid = lo + w < n ? lo + w : n;
			size_t hi = lo + 2 * w < n ? lo + 2 * w : n;
			size_t i = lo, j = mid, o = lo;

			while (i < mid && j < hi)
				dst[o++] = ent_less(k, &src[j], &src[i]) ? src[j++] : src[i++];
			while (i < mid)
				dst[o++] = src[i++];
			while (j < hi)
				dst[o++] = src[j++];
		}
		swap = src;
		src = dst;
		dst = swap;
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
	free(tmp);
}

static bool sorted_equal(const struct keyset *k, const struct oracle *o, size_t r, size_t q)
{
	uint32_t a = o->sorted[r], b = o->sorted[q];

	return o->spfx[r] == o->spfx[q] &&
	       key_cmp(key_at(k, a), k->len[a], key_at(k, b), k->len[b]) == 0;
}

static void oracle_build(struct oracle *o, const struct keyset *k)
{
	size_t n = k->n;
	struct sortent *ents = xmalloc_array(n ? n : 1, sizeof(*ents));

	memset(o, 0, sizeof(*o));
	o->n = n;
	o->sorted = xmalloc_array(n ? n : 1, sizeof(*o->sorted));
	o->spfx = xmalloc_array(n ? n : 1, sizeof(*o->spfx));
	o->final = xmalloc_array(n ? n : 1, sizeof(*o->final));
	for (size_t i = 0; i < n; i++) {
		ents[i].pfx = key_prefix(key_at(k, i), k->len[i]);
		ents[i].idx = (uint32_t)i;
	}
	sort_entries(k, ents, n);
	for (size_t r = 0; r < n; r++) {
		o->sorted[r] = ents[r].idx;
		o->spfx[r] = ents[r].pfx;
	}
	free(ents);
	for (size_t r = 0; r < n;) {
		size_t e = r;
		uint32_t last;

		while (e + 1 < n && sorted_equal(k, o, e + 1, r))
			e++;
		last = o->sorted[e];
		for (size_t q = r; q <= e; q++)
			o->final[o->sorted[q]] = last;
		o->iter_sum += last;
		o->distinct++;
		r = e + 1;
	}
	for (size_t i = 0; i < n; i++)
		o->get_sum += o->final[i];
}

static void oracle_free(struct oracle *o)
{
	free(o->sorted);
	free(o->spfx);
	free(o->final);
	memset(o, 0, sizeof(*o));
}

static bool oracle_contains(const struct oracle *o, const struct keyset *k, const uint8_t *key,
			    size_t len)
{
	uint64_t p = key_prefix(key, len);
	size_t lo = 0, hi = o->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t m = o->sorted[mid];
		int c;

		if (o->spfx[mid] != p)
			c = o->spfx[mid] < p ? -1 : 1;
		else
			c = key_cmp(key_at(k, m), k->len[m], key, len);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < o->n && o->spfx[lo] == p &&
	       key_cmp(key_at(k, o->sorted[lo]), k->len[o->sorted[lo]], key, len) == 0;
}

/* out = the candidates absent from k, in their order. */
static void keyset_absent(const struct keyset *cand, const struct keyset *k, const struct oracle *o,
			  struct keyset *out)
{
	keyset_init(out, cand->n, cand->used + 1);
	for (size_t i = 0; i < cand->n; i++)
		if (!oracle_contains(o, k, key_at(cand, i), cand->len[i]))
			keyset_add(out, key_at(cand, i), cand->len[i]);
}

/* Reorders k into key order (equal keys by index); o is rebuilt for the new order. */
static void keyset_sort(struct keyset *k, struct oracle *o)
{
	struct keyset sorted;

	oracle_build(o, k);
	keyset_permute(k, o->sorted, k->n, &sorted);
	oracle_free(o);
	keyset_free(k);
	*k = sorted;
	oracle_build(o, k);
}

/* A random permutation of 0..n-1 (Fisher-Yates). */
static uint32_t *random_order(size_t n, struct rng *r)
{
	uint32_t *p = xmalloc_array(n ? n : 1, sizeof(*p));

	for (size_t i = 0; i < n; i++)
		p[i] = (uint32_t)i;
	for (size_t i = n; i > 1; i--) {
		size_t j = rng_below(r, (uint32_t)i);
		uint32_t t = p[i - 1];

		p[i - 1] = p[j];
		p[j] = t;
	}
	return p;
}

/* Reorders k by a random permutation. */
static void keyset_shuffle(struct keyset *k, struct rng *r)
{
	struct keyset out;
	uint32_t *perm = random_order(k->n, r);

	keyset_permute(k, perm, k->n, &out);
	free(perm);
	keyset_free(k);
	*k = out;
}

/* ------------------------------------------------------------------------------------------ */
/* Key generators */

static void put_be64(uint8_t *p, uint64_t x)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)x;
		x >>= 8;
	}
}

static void gen_rand16(struct keyset *k, size_t n, struct rng *r)
{
	uint8_t key[16];

	keyset_init(k, n, n * 17 + 1);
	for (size_t i = 0; i < n; i++) {
		put_be64(key, rng_next(r));
		put_be64(key + 8, rng_next(r));
		keyset_add(k, key, sizeof(key));
	}
}

static void gen_u64be(struct keyset *k, size_t n, struct rng *r)
{
	uint8_t key[8];

	keyset_init(k, n, n * 9 + 1);
	for (size_t i = 0; i < n; i++) {
		put_be64(key, rng_next(r));
		keyset_add(k, key, sizeof(key));
	}
}

/*
 * Paths: /data/experiment_EEE/run_RRRR/NAME_DD/event_VVVVVVVV, 52 to 56 bytes. Key i (in
 * generation order) lies in slot i / PATH_EVENTS (a detector of a run of an experiment); its
 * event number is (i % PATH_EVENTS) * PATH_SPACING + a hashed digit below PATH_SPACING, so keys
 * are distinct and event numbers are not contiguous.
 */
enum {
	PATH_EVENTS = 500,   /* events per detector slot */
	PATH_DETECTORS = 24, /* detector slots per run */
	PATH_RUNS = 64,	     /* runs per experiment */
	PATH_SPACING = 10,   /* event number spacing */
};

static const char *const detector_names[8] = {"ecal",  "hcal",	   "tracker", "muon",
					      "pixel", "calo_fwd", "trigger", "lumi"};

static void path_add(struct keyset *k, size_t slot, unsigned event)
{
	char buf[128];
	unsigned det = (unsigned)(slot % PATH_DETECTORS);
	unsigned run = (unsigned)(slot / PATH_DETECTORS % PATH_RUNS);
	unsigned exp = (unsigned)(slot / PATH_DETECTORS / PATH_RUNS);
	int len = snprintf(buf, sizeof(buf), "/data/experiment_%03u/run_%04u/%s_%02u/event_%08u",
			   exp, run, detector_names[det % 8], det / 8, event);

	if (len < 0 || (size_t)len >= sizeof(buf))
		die("path too long");
	keyset_add(k, (const uint8_t *)buf, (size_t)len);
}

static unsigned path_digit(uint64_t salt, size_t i)
{
	return (unsigned)(mix64(salt ^ i) % PATH_SPACING);
}

static void gen_paths(struct keyset *k, size_t n, uint64_t salt)
{
	keyset_init(k, n, n * 57 + 1);
	for (size_t i = 0; i < n; i++)
		path_add(k, i / PATH_EVENTS,
			 (unsigned)(i % PATH_EVENTS) * PATH_SPACING + path_digit(salt, i));
}

/* Absent paths: 3 in 4 differ from a present key in the last digit of the event number only;
 * 1 in 4 lie in an experiment past the present ones. */
static void gen_paths_miss(struct keyset *k, size_t n, size_t npresent, uint64_t salt,
			   struct rng *r)
{
	size_t slots = npresent / PATH_EVENTS + 1;

	keyset_init(k, n, n * 57 + 1);
	for (size_t q = 0; q < n; q++) {
		if (rng_below(r, 4) == 0 || npresent == 0) {
			size_t slot = slots + slots + rng_below(r, PATH_DETECTORS * PATH_RUNS * 8);

			path_add(k, slot, rng_below(r, PATH_EVENTS * PATH_SPACING));
		} else {
			size_t i = rng_below(r, (uint32_t)npresent);
			unsigned d = path_digit(salt, i);
			unsigned e = (d + 1 + rng_below(r, PATH_SPACING - 1)) % PATH_SPACING;

			path_add(k, i / PATH_EVENTS,
				 (unsigned)(i % PATH_EVENTS) * PATH_SPACING + e);
		}
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Memory accounting */

/* Exact bytes allocated by the process per jemalloc (thread cache flushed first, so cached
 * free blocks do not count). Returns false without jemalloc. */
static bool mem_allocated(size_t *out)
{
#ifdef PM_BENCH_JEMALLOC
	uint64_t epoch = 1;
	size_t sz = sizeof(epoch), allocated = 0;

	mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	if (mallctl("epoch", &epoch, &sz, &epoch, sz))
		return false;
	sz = sizeof(allocated);
	if (mallctl("stats.allocated", &allocated, &sz, NULL, 0))
		return false;
	*out = allocated;
	return true;
#else
	(void)out;
	return false;
#endif
}

/* Gives freed pages back to the system, so the next structure faults its pages in afresh. */
static void mem_release(void)
{
#ifdef PM_BENCH_JEMALLOC
	mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	mallctl("arena." STR(MALLCTL_ARENAS_ALL) ".purge", NULL, NULL, NULL, 0);
#else
	malloc_trim(0);
#endif
}

/* The counting pm_alloc_fn: malloc/realloc/free, keeping the sum of live requested sizes. */
struct counter {
	size_t live;  /* bytes requested and not freed */
	size_t peak;  /* highest live */
	size_t calls; /* hook calls */
	size_t bad;   /* frees or resizes claiming more bytes than are live */
	size_t *hist; /* with -v: hist[s] live blocks of s bytes (s < HIST_SIZES; the last
		       * entry counts every larger block); NULL: not kept */
};

enum { HIST_SIZES = 513 };

/* Keeps the live-block histogram; apart in its own function so that runs without -v pay
 * nothing for it. */
static void hist_move(size_t *hist, size_t osize, size_t nsize)
{
	if (osize)
		hist[osize < HIST_SIZES ? osize : HIST_SIZES - 1]--;
	if (nsize)
		hist[nsize < HIST_SIZES ? nsize : HIST_SIZES - 1]++;
}

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct counter *c = ud;
	size_t old = ptr ? osize : 0;
	void *p;

	c->calls++;
	if (old > c->live) {
		c->bad++;
		old = c->live;
	}
	if (nsize == 0) {
		free(ptr);
		c->live -= old;
		if (c->hist)
			hist_move(c->hist, old, 0);
		return NULL;
	}
	p = ptr ? realloc(ptr, nsize) : malloc(nsize);
	if (!p)
		return NULL;
	c->live = c->live - old + nsize;
	if (c->hist)
		hist_move(c->hist, old, nsize);
	if (c->live > c->peak)
		c->peak = c->live;
	return p;
}

/* ------------------------------------------------------------------------------------------ */
/* Runs */

enum kind { K_PATHMAP, K_PATHMAP_MANY, K_JUDYSL, K_JUDYHS };

struct input {
	const struct keyset *keys; /* keys in insert order; key i gets value i */
	const struct oracle *orc;  /* expected content after the inserts */
	const struct keyset *miss; /* keys known to be absent */
	const uint32_t *order;	   /* lookup order: a permutation of 0..keys->n-1 */
};

struct row {
	const char *name;	/* structure label */
	enum kind kind;		/* which structure */
	const struct input *in; /* its keys */
	int runs;		/* runs done */
	double ins, get, miss;	/* best rates, M/s */
	double iter;		/* best iteration rate, M/s; < 0: not available */
	double own_bpk;		/* bytes per key by the structure's own count */
	double je_bpk;		/* bytes per key by jemalloc stats.allocated; < 0: n/a */
	bool failed;		/* a run could not build the structure */
	bool has_stats;		/* st is filled */
	pm_stats st;		/* PathMap's shape */
};

struct bench {
	const char *workload; /* the workload running, for messages */
	int fails;	      /* FAIL lines printed */
	bool verbose;	      /* -v: print PathMap's live blocks by size */
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
fail(struct bench *b, const struct row *r, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL [%s %s]: ", b->workload, r->name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	b->fails++;
}

/* One run's measurements. */
struct meas {
	double ins, get, miss, iter; /* rates, M/s; iter < 0: not available */
	size_t own_bytes;	     /* the structure's own byte count */
	bool je_ok;		     /* je_bytes is valid */
	size_t je_bytes;	     /* jemalloc stats.allocated delta over the build */
	bool failed;		     /* the build failed: nothing else is meaningful */
};

/* Walks the expected distinct keys in order, against what an iteration yields. */
struct walk {
	const struct keyset *k; /* the keys */
	const struct oracle *o; /* their order */
	size_t pos;		/* next position in o->sorted: the start of a run of equal keys */
	size_t seen;		/* keys matched */
	bool bad;		/* a key or value did not match */
};

static bool walk_step(struct walk *w, const uint8_t *key, size_t len, uint64_t val)
{
	const struct keyset *k = w->k;
	size_t e = w->pos;
	uint32_t first;

	if (w->pos >= w->o->n)
		return false;
	first = w->o->sorted[w->pos];
	if (key_cmp(key, len, key_at(k, first), k->len[first]) != 0)
		return false;
	while (e + 1 < w->o->n && sorted_equal(k, w->o, e + 1, w->pos))
		e++;
	if (val != w->o->sorted[e])
		return false;
	w->pos = e + 1;
	w->seen++;
	return true;
}

struct tally {
	size_t count; /* keys visited */
	uint64_t sum; /* sum of their values */
};

static int visit_tally(const uint8_t *key, size_t len, uint64_t val, void *arg)
{
	struct tally *t = arg;

	(void)key;
	(void)len;
	t->count++;
	t->sum += val;
	return 0;
}

static int visit_walk(const uint8_t *key, size_t len, uint64_t val, void *arg)
{
	struct walk *w = arg;

	if (!walk_step(w, key, len, val)) {
		w->bad = true;
		return 1;
	}
	return 0;
}

/* Checks the results every structure shares: lookup and miss passes and the iteration. */
static void check_passes(struct bench *b, const struct row *r, size_t found, uint64_t sum,
			 size_t miss_found, const struct tally *it)
{
	const struct oracle *o = r->in->orc;

	if (found != o->n || sum != o->get_sum)
		fail(b, r,
		     "lookup pass: %zu of %zu keys found, value sum %" PRIu64 " (expected %" PRIu64
		     ")",
		     found, o->n, sum, o->get_sum);
	if (miss_found)
		fail(b, r, "miss pass: %zu absent keys found", miss_found);
	if (it && (it->count != o->distinct || it->sum != o->iter_sum))
		fail(b, r, "iteration: %zu keys, value sum %" PRIu64 " (expected %zu, %" PRIu64 ")",
		     it->count, it->sum, o->distinct, o->iter_sum);
}

/* The size class jemalloc serves a request of n bytes from (n itself without jemalloc). */
static size_t alloc_class(size_t n)
{
#ifdef PM_BENCH_JEMALLOC
	return nallocx(n, 0);
#else
	return n;
#endif
}

/* Prints the most common live block sizes of a PathMap, with their size-class waste. */
static void print_hist(const struct row *r, const size_t *hist, size_t keys)
{
	size_t total = 0, waste = 0;
	bool shown[HIST_SIZES] = {false};

	for (size_t s = 1; s < HIST_SIZES - 1; s++) {
		total += hist[s];
		waste += hist[s] * (alloc_class(s) - s);
	}
	total += hist[HIST_SIZES - 1];
	printf("%s live blocks: %zu (%.3f/key); size-class rounding %.1f B/key (blocks over %d B "
	       "not counted); most common sizes:",
	       r->name, total, keys ? (double)total / (double)keys : 0.0,
	       keys ? (double)waste / (double)keys : 0.0, HIST_SIZES - 2);
	for (int top = 0; top < 8; top++) {
		size_t best = 0;

		for (size_t s = 1; s < HIST_SIZES; s++)
			if (!shown[s] && (best == 0 || hist[s] > hist[best]))
				best = s;
		if (best == 0 || hist[best] == 0)
			break;
		shown[best] = true;
		if (best == HIST_SIZES - 1)
			printf(" >%d B x%zu", HIST_SIZES - 2, hist[best]);
		else
			printf(" %zu B (class %zu) x%zu", best, alloc_class(best), hist[best]);
	}
	printf("\n");
}

/* Keys a PathMap-many row hands to one pm_map_set_many / pm_map_get_many call. */
enum { BATCH = 256 };

/* A PathMap row: pm_map_set / pm_map_get key by key, or (K_PATHMAP_MANY) the batch calls. */
static void run_pathmap(struct bench *b, struct row *r, struct meas *ms)
{
	const struct input *in = r->in;
	const struct keyset *k = in->keys, *mk = in->miss;
	const struct oracle *o = in->orc;
	struct counter cnt = {0};
	size_t *hist = NULL;
	struct tally it = {0};
	struct walk w = {k, o, 0, 0, false};
	bool many = r->kind == K_PATHMAP_MANY;
	pm_kv kv[BATCH];
	bool fnd[BATCH];
	pm_map *m = NULL;
	size_t je0 = 0, je1 = 0, inserted = 0, found = 0, miss_found = 0, bad = 0;
	uint64_t sum = 0;
	double t0;
	char msg[256];
	int rc = 0;

	if (b->verbose) {
		hist = xmalloc_array(HIST_SIZES, sizeof(*hist));
		memset(hist, 0, HIST_SIZES * sizeof(*hist));
		cnt.hist = hist;
	}
	ms->je_ok = mem_allocated(&je0);
	t0 = now_sec();
	rc = pm_map_create(&m, count_alloc, &cnt);
	if (many) {
		/* the batch calls, fed BATCH keys at a time from a buffer filled in the loop */
		for (size_t i = 0; rc == 0 && i < k->n; i += BATCH) {
			size_t c = k->n - i < BATCH ? k->n - i : BATCH, added = 0;

			for (size_t j = 0; j < c; j++)
				kv[j] = (pm_kv){key_at(k, i + j), k->len[i + j], i + j};
			rc = pm_map_set_many(m, kv, c, &added);
			inserted += added;
		}
	} else {
		for (size_t i = 0; rc == 0 && i < k->n; i++) {
			rc = pm_map_set(m, key_at(k, i), k->len[i], i, NULL);
			if (rc > 0) {
				inserted++;
				rc = 0;
			}
		}
	}
	ms->ins = mrate(k->n, now_sec() - t0);
	ms->je_ok = ms->je_ok && mem_allocated(&je1);
	ms->je_bytes = je1 - je0;
	ms->own_bytes = cnt.live;
	if (rc) {
		fail(b, r, "pm_map_create/pm_map_set: %s", pm_strerror(rc));
		ms->failed = true;
		goto out_destroy;
	}

	t0 = now_sec();
	if (many) {
		for (size_t j = 0; j < k->n; j += BATCH) {
			size_t c = k->n - j < BATCH ? k->n - j : BATCH;

			for (size_t q = 0; q < c; q++) {
				uint32_t i = in->order[j + q];

				kv[q] = (pm_kv){key_at(k, i), k->len[i], 0};
			}
			found += pm_map_get_many(m, kv, c, fnd);
			for (size_t q = 0; q < c; q++)
				sum += fnd[q] ? kv[q].val : 0;
		}
	} else {
		for (size_t j = 0; j < k->n; j++) {
			uint32_t i = in->order[j];
			uint64_t v;

			if (pm_map_get(m, key_at(k, i), k->len[i], &v)) {
				found++;
				sum += v;
			}
		}
	}
	ms->get = mrate(k->n, now_sec() - t0);

	t0 = now_sec();
	if (many) {
		for (size_t i = 0; i < mk->n; i += BATCH) {
			size_t c = mk->n - i < BATCH ? mk->n - i : BATCH;

			for (size_t q = 0; q < c; q++)
				kv[q] = (pm_kv){key_at(mk, i + q), mk->len[i + q], 0};
			miss_found += pm_map_get_many(m, kv, c, fnd);
		}
	} else {
		for (size_t i = 0; i < mk->n; i++) {
			uint64_t v;

			if (pm_map_get(m, key_at(mk, i), mk->len[i], &v))
				miss_found++;
		}
	}
	ms->miss = mrate(mk->n, now_sec() - t0);

	t0 = now_sec();
	rc = pm_map_foreach(m, NULL, 0, NULL, 0, visit_tally, &it);
	ms->iter = mrate(o->distinct, now_sec() - t0);
	if (rc)
		fail(b, r, "pm_map_foreach: %d (%s)", rc, pm_strerror(rc));

	/* Exact checks, untimed. */
	check_passes(b, r, found, sum, miss_found, &it);
	if (inserted != o->distinct)
		fail(b, r, "pm_map_set reported %zu insertions, %zu distinct keys", inserted,
		     o->distinct);
	if (pm_map_count(m) != o->distinct)
		fail(b, r, "pm_map_count %zu, %zu distinct keys", pm_map_count(m), o->distinct);
	for (size_t i = 0; i < k->n; i++) {
		uint64_t v = 0;

		if (!pm_map_get(m, key_at(k, i), k->len[i], &v) || v != o->final[i]) {
			if (bad++ == 0)
				fail(b, r, "key %zu (len %u): got %" PRIu64 ", expected %" PRIu32,
				     i, k->len[i], v, o->final[i]);
		}
	}
	if (bad > 1)
		fail(b, r, "%zu keys wrong in all", bad);
	rc = pm_map_foreach(m, NULL, 0, NULL, 0, visit_walk, &w);
	if (rc < 0 || w.bad || w.seen != o->distinct || w.pos != o->n)
		fail(b, r, "ordered iteration diverges at distinct key %zu of %zu (rc %d)", w.seen,
		     o->distinct, rc);
	rc = pm_map_check(m, msg, sizeof(msg));
	if (rc)
		fail(b, r, "pm_map_check: %s", msg);
	pm_map_stats(m, &r->st);
	if (r->st.values != o->distinct)
		fail(b, r, "pm_map_stats: %zu values, %zu distinct keys", r->st.values,
		     o->distinct);
	if (cnt.bad)
		fail(b, r, "allocation hook: %zu calls gave an old size above the live bytes",
		     cnt.bad);
	if (hist)
		print_hist(r, hist, o->distinct);

out_destroy:
	pm_map_destroy(m);
	if (cnt.live != 0)
		fail(b, r, "%zu bytes still allocated after pm_map_destroy", cnt.live);
	free(hist);
}

static void run_judysl(struct bench *b, const struct row *r, struct meas *ms)
{
	const struct input *in = r->in;
	const struct keyset *k = in->keys, *mk = in->miss;
	const struct oracle *o = in->orc;
	struct tally it = {0};
	struct walk w = {k, o, 0, 0, false};
	Pvoid_t arr = NULL;
	PPvoid_t pv;
	size_t je0 = 0, je1 = 0, found = 0, miss_found = 0, bad = 0;
	uint64_t sum = 0;
	uint8_t *buf = xmalloc_array(k->maxlen + 1, 1);
	bool err = false;
	double t0;

	ms->je_ok = mem_allocated(&je0);
	t0 = now_sec();
	for (size_t i = 0; i < k->n; i++) {
		pv = JudySLIns(&arr, key_at(k, i), PJE0);
		if (pv == PPJERR) {
			err = true;
			break;
		}
		*(PWord_t)pv = i;
	}
	ms->ins = mrate(k->n, now_sec() - t0);
	ms->je_ok = ms->je_ok && mem_allocated(&je1);
	ms->je_bytes = je1 - je0;
	if (err) {
		fail(b, r, "JudySLIns failed");
		ms->failed = true;
		goto out_free;
	}

	t0 = now_sec();
	for (size_t j = 0; j < k->n; j++) {
		uint32_t i = in->order[j];

		pv = JudySLGet(arr, key_at(k, i), PJE0);
		if (pv) {
			found++;
			sum += *(PWord_t)pv;
		}
	}
	ms->get = mrate(k->n, now_sec() - t0);

	t0 = now_sec();
	for (size_t i = 0; i < mk->n; i++)
		if (JudySLGet(arr, key_at(mk, i), PJE0))
			miss_found++;
	ms->miss = mrate(mk->n, now_sec() - t0);

	t0 = now_sec();
	buf[0] = 0;
	for (pv = JudySLFirst(arr, buf, PJE0); pv; pv = JudySLNext(arr, buf, PJE0)) {
		it.count++;
		it.sum += *(PWord_t)pv;
	}
	ms->iter = mrate(o->distinct, now_sec() - t0);

	check_passes(b, r, found, sum, miss_found, &it);
	for (size_t i = 0; i < k->n; i++) {
		pv = JudySLGet(arr, key_at(k, i), PJE0);
		if (!pv || *(PWord_t)pv != o->final[i]) {
			if (bad++ == 0)
				fail(b, r, "key %zu: missing or wrong value", i);
		}
	}
	if (bad > 1)
		fail(b, r, "%zu keys wrong in all", bad);
	buf[0] = 0;
	for (pv = JudySLFirst(arr, buf, PJE0); pv; pv = JudySLNext(arr, buf, PJE0)) {
		if (!walk_step(&w, buf, strlen((const char *)buf), *(PWord_t)pv)) {
			w.bad = true;
			break;
		}
	}
	if (w.bad || w.seen != o->distinct || w.pos != o->n)
		fail(b, r, "ordered iteration diverges at distinct key %zu of %zu", w.seen,
		     o->distinct);

out_free:
	ms->own_bytes = (size_t)JudySLFreeArray(&arr, PJE0);
	free(buf);
}

static void run_judyhs(struct bench *b, const struct row *r, struct meas *ms)
{
	const struct input *in = r->in;
	const struct keyset *k = in->keys, *mk = in->miss;
	const struct oracle *o = in->orc;
	Pvoid_t arr = NULL;
	PPvoid_t pv;
	size_t je0 = 0, je1 = 0, found = 0, miss_found = 0, bad = 0;
	uint64_t sum = 0;
	bool err = false;
	double t0;

	ms->je_ok = mem_allocated(&je0);
	t0 = now_sec();
	for (size_t i = 0; i < k->n; i++) {
		pv = JudyHSIns(&arr, (void *)key_at(k, i), k->len[i], PJE0);
		if (pv == PPJERR) {
			err = true;
			break;
		}
		*(PWord_t)pv = i;
	}
	ms->ins = mrate(k->n, now_sec() - t0);
	ms->je_ok = ms->je_ok && mem_allocated(&je1);
	ms->je_bytes = je1 - je0;
	ms->iter = -1;
	if (err) {
		fail(b, r, "JudyHSIns failed");
		ms->failed = true;
		goto out_free;
	}

	t0 = now_sec();
	for (size_t j = 0; j < k->n; j++) {
		uint32_t i = in->order[j];

		pv = JudyHSGet(arr, (void *)key_at(k, i), k->len[i]);
		if (pv) {
			found++;
			sum += *(PWord_t)pv;
		}
	}
	ms->get = mrate(k->n, now_sec() - t0);

	t0 = now_sec();
	for (size_t i = 0; i < mk->n; i++)
		if (JudyHSGet(arr, (void *)key_at(mk, i), mk->len[i]))
			miss_found++;
	ms->miss = mrate(mk->n, now_sec() - t0);

	check_passes(b, r, found, sum, miss_found, NULL);
	for (size_t i = 0; i < k->n; i++) {
		pv = JudyHSGet(arr, (void *)key_at(k, i), k->len[i]);
		if (!pv || *(PWord_t)pv != o->final[i]) {
			if (bad++ == 0)
				fail(b, r, "key %zu: missing or wrong value", i);
		}
	}
	if (bad > 1)
		fail(b, r, "%zu keys wrong in all", bad);

out_free:
	ms->own_bytes = (size_t)JudyHSFreeArray(&arr, PJE0);
}

/* Runs one structure once and folds the results into its row (best rates, last memory). */
static void run_row(struct bench *b, struct row *r)
{
	struct meas ms = {0};
	double keys = r->in->orc->distinct ? (double)r->in->orc->distinct : 1;

	mem_release();
	switch (r->kind) {
	case K_PATHMAP:
	case K_PATHMAP_MANY:
		run_pathmap(b, r, &ms);
		r->has_stats = true;
		break;
	case K_JUDYSL:
		run_judysl(b, r, &ms);
		break;
	case K_JUDYHS:
		run_judyhs(b, r, &ms);
		break;
	}
	mem_release();
	r->runs++;
	if (ms.failed) {
		r->failed = true;
		return;
	}
	if (r->runs == 1 || ms.ins > r->ins)
		r->ins = ms.ins;
	if (r->runs == 1 || ms.get > r->get)
		r->get = ms.get;
	if (r->runs == 1 || ms.miss > r->miss)
		r->miss = ms.miss;
	if (r->runs == 1 || ms.iter > r->iter)
		r->iter = ms.iter;
	r->own_bpk = (double)ms.own_bytes / keys;
	r->je_bpk = ms.je_ok ? (double)ms.je_bytes / keys : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Reporting */

static void print_rows(const struct row *rows, size_t nrows)
{
	printf("%-20s %10s %10s %10s %10s %10s %12s %14s\n", "structure", "keys", "insert M/s",
	       "lookup M/s", "miss M/s", "iter M/s", "B/key alloc", "B/key jemalloc");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		char iter[32], je[32];

		if (r->failed) {
			printf("%-20s %10zu   (a run failed: see FAIL above)\n", r->name,
			       r->in->orc->distinct);
			continue;
		}

		if (r->iter >= 0)
			snprintf(iter, sizeof(iter), "%.2f", r->iter);
		else
			snprintf(iter, sizeof(iter), "-");
		if (r->je_bpk >= 0)
			snprintf(je, sizeof(je), "%.1f", r->je_bpk);
		else
			snprintf(je, sizeof(je), "-");
		printf("%-20s %10zu %10.2f %10.2f %10.2f %10s %12.1f %14s\n", r->name,
		       r->in->orc->distinct, r->ins, r->get, r->miss, iter, r->own_bpk, je);
	}
}

static double ratio(double a, double b)
{
	return b > 0 ? a / b : 0;
}

static void print_ratio(const struct row *a, const struct row *b, const char *keys)
{
	if (a->failed || b->failed)
		return;
	printf("ratio %s/%s (%s): insert %.2fx  lookup %.2fx  miss %.2fx", a->name, b->name, keys,
	       ratio(a->ins, b->ins), ratio(a->get, b->get), ratio(a->miss, b->miss));
	if (a->iter >= 0 && b->iter >= 0)
		printf("  iter %.2fx", ratio(a->iter, b->iter));
	printf("  memory alloc %.2fx", ratio(a->own_bpk, b->own_bpk));
	if (a->je_bpk >= 0 && b->je_bpk >= 0)
		printf("  memory jemalloc %.2fx", ratio(a->je_bpk, b->je_bpk));
	printf("\n");
}

static void print_stats(const struct row *r)
{
	const pm_stats *s = &r->st;
	double v = s->values ? (double)s->values : 1;

	if (r->failed || !r->has_stats)
		return;

	printf("%s shape: %zu nodes (%.3f/key: %zu leaf of which %zu value tags, %zu small, %zu "
	       "dense), node bytes %.1f/key, prefix bytes %.1f/key, max depth %zu\n",
	       r->name, s->nodes, (double)s->nodes / v, s->leaf_nodes, s->value_tags,
	       s->small_nodes, s->dense_nodes, (double)s->node_bytes / v,
	       (double)s->prefix_bytes / v, s->max_depth);
}

static void print_load(void)
{
	double l1 = 0, l5 = 0;
	FILE *f = fopen("/proc/loadavg", "r");

	if (!f)
		return;
	if (fscanf(f, "%lf %lf", &l1, &l5) == 2)
		printf("load average: %.2f (1 min), %.2f (5 min)\n", l1, l5);
	fclose(f);
}

/* ------------------------------------------------------------------------------------------ */
/* Workloads */

struct options {
	size_t n;	     /* keys per workload */
	uint64_t seed;	     /* base seed */
	int reps;	     /* runs per structure; the best rate is kept */
	const char *only[8]; /* workloads to run (-w); none: all */
	int nonly;	     /* entries in only[] */
};

static const char *const workloads[] = {"rand16", "u64be", "paths", "rand16-sorted"};

static bool wanted(const struct options *opt, const char *name)
{
	if (opt->nonly == 0)
		return true;
	for (int i = 0; i < opt->nonly; i++)
		if (strcmp(opt->only[i], name) == 0)
			return true;
	return false;
}

/* Runs every row reps times; each repetition starts from the next row, so none always
 * goes first. */
static void run_rows(struct bench *b, const struct options *opt, struct row *rows, size_t nrows)
{
	for (int rep = 0; rep < opt->reps; rep++)
		for (size_t i = 0; i < nrows; i++)
			run_row(b, &rows[(i + (size_t)rep) % nrows]);
}

static void run_binary(struct bench *b, const struct options *opt, const char *name)
{
	bool sorted = strcmp(name, "rand16-sorted") == 0;
	bool u64 = strcmp(name, "u64be") == 0;
	struct rng rng;
	struct keyset raw, nf, cand, nfcand, raw_miss, nf_miss;
	struct oracle raw_o, nf_o;
	struct input raw_in, nf_in;
	uint32_t *order;
	double t0 = now_sec();

	/* rand16 and rand16-sorted hold the same keys. */
	rng_seed(&rng, opt->seed ^ name_tag(u64 ? "u64be" : "rand16"));
	if (u64) {
		gen_u64be(&raw, opt->n, &rng);
		gen_u64be(&cand, opt->n, &rng);
	} else {
		gen_rand16(&raw, opt->n, &rng);
		gen_rand16(&cand, opt->n, &rng);
	}
	keyset_nul_free(&raw, &nf);
	keyset_nul_free(&cand, &nfcand);
	if (sorted) {
		keyset_sort(&raw, &raw_o);
		keyset_sort(&nf, &nf_o);
	} else {
		oracle_build(&raw_o, &raw);
		oracle_build(&nf_o, &nf);
	}
	keyset_absent(&cand, &raw, &raw_o, &raw_miss);
	keyset_absent(&nfcand, &nf, &nf_o, &nf_miss);
	keyset_free(&cand);
	keyset_free(&nfcand);
	order = random_order(opt->n, &rng);

	printf("\n== %s: %zu random %s keys, %s insert order, seed %" PRIu64 " ==\n", name, opt->n,
	       u64 ? "64-bit integers as 8-byte big-endian" : "16-byte binary",
	       sorted ? "sorted" : "random", opt->seed);
	printf("raw keys: %zu distinct, %zu absent for misses; NUL-free keys: %zu distinct, %zu "
	       "absent (keys made in %.1f s, untimed)\n",
	       raw_o.distinct, raw_miss.n, nf_o.distinct, nf_miss.n, now_sec() - t0);
	fflush(stdout);

	raw_in = (struct input){&raw, &raw_o, &raw_miss, order};
	nf_in = (struct input){&nf, &nf_o, &nf_miss, order};
	{
		struct row rows[6] = {
		    {.name = "PathMap", .kind = K_PATHMAP, .in = &raw_in},
		    {.name = "JudyHS", .kind = K_JUDYHS, .in = &raw_in},
		    {.name = "PathMap-nulfree", .kind = K_PATHMAP, .in = &nf_in},
		    {.name = "JudySL-nulfree", .kind = K_JUDYSL, .in = &nf_in},
		    {.name = "PathMap-many", .kind = K_PATHMAP_MANY, .in = &raw_in},
		    {.name = "PathMap-nulfree-many", .kind = K_PATHMAP_MANY, .in = &nf_in},
		};

		run_rows(b, opt, rows, 6);
		print_rows(rows, 6);
		print_ratio(&rows[2], &rows[3], "same NUL-free keys");
		print_ratio(&rows[0], &rows[1], "same raw binary keys");
		print_ratio(&rows[5], &rows[3], "same NUL-free keys, batch calls");
		print_ratio(&rows[4], &rows[1], "same raw binary keys, batch calls");
		print_stats(&rows[0]);
		printf(
		    "nulfree: each key byte b stored as 1 + b %% 255 (same lengths) so JudySL, "
		    "which takes NUL-terminated strings, can hold the keys; JudyHS takes the raw "
		    "keys with their length but keeps no order (no iteration).\n");
	}
	print_load();

	free(order);
	keyset_free(&raw_miss);
	keyset_free(&nf_miss);
	oracle_free(&raw_o);
	oracle_free(&nf_o);
	keyset_free(&raw);
	keyset_free(&nf);
}

static void run_paths(struct bench *b, const struct options *opt)
{
	uint64_t salt = opt->seed ^ name_tag("paths");
	struct rng rng;
	struct keyset keys, cand, miss;
	struct oracle o;
	struct input in;
	uint32_t *order;
	double t0 = now_sec();

	rng_seed(&rng, salt);
	gen_paths(&keys, opt->n, salt);
	keyset_shuffle(&keys, &rng);
	oracle_build(&o, &keys);
	gen_paths_miss(&cand, opt->n, opt->n, salt, &rng);
	keyset_absent(&cand, &keys, &o, &miss);
	keyset_free(&cand);
	order = random_order(opt->n, &rng);

	printf("\n== paths: %zu hierarchical keys /data/experiment_EEE/run_RRRR/DETECTOR_DD/"
	       "event_VVVVVVVV (%.1f bytes average), random insert order, seed %" PRIu64 " ==\n",
	       opt->n, keys.n ? (double)(keys.used - keys.n) / (double)keys.n : 0.0, opt->seed);
	printf("%zu distinct keys, %zu absent for misses (3/4 differ in the last event digit "
	       "only) (keys made in %.1f s, untimed)\n",
	       o.distinct, miss.n, now_sec() - t0);
	fflush(stdout);

	in = (struct input){&keys, &o, &miss, order};
	{
		struct row rows[4] = {
		    {.name = "PathMap", .kind = K_PATHMAP, .in = &in},
		    {.name = "JudySL", .kind = K_JUDYSL, .in = &in},
		    {.name = "JudyHS", .kind = K_JUDYHS, .in = &in},
		    {.name = "PathMap-many", .kind = K_PATHMAP_MANY, .in = &in},
		};

		run_rows(b, opt, rows, 4);
		print_rows(rows, 4);
		print_ratio(&rows[0], &rows[1], "same keys");
		print_ratio(&rows[0], &rows[2], "same keys");
		print_ratio(&rows[3], &rows[1], "same keys, batch calls");
		print_stats(&rows[0]);
	}
	print_load();

	free(order);
	keyset_free(&miss);
	oracle_free(&o);
	keyset_free(&keys);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: pm_bench [-n N] [-s SEED] [-r REPS] [-v] [-w WORKLOAD]...\n"
		   "  -n N         keys per workload (default 10000000)\n"
		   "  -s SEED      base seed (default 1)\n"
		   "  -r REPS      runs per structure, structures taking turns; best rate kept "
		   "(default 1)\n"
		   "  -w WORKLOAD  run only this workload (repeatable): rand16, u64be, paths, "
		   "rand16-sorted\n"
		   "  -v           also print PathMap's live blocks by size (adds a histogram "
		   "update to each PathMap allocation)\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || *s == '-')
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	struct options opt = {.n = 10000000, .seed = 1, .reps = 1};
	struct bench b = {"", 0, false};
	uint64_t v;
	int c;

	while ((c = getopt(argc, argv, "n:s:r:w:vh")) != -1) {
		switch (c) {
		case 'v':
			b.verbose = true;
			break;
		case 'n':
			if (!parse_u64(optarg, &v) || v >= UINT32_MAX)
				die("-n takes a count below 2^32 - 1");
			opt.n = (size_t)v;
			break;
		case 's':
			if (!parse_u64(optarg, &v))
				die("-s takes an unsigned integer");
			opt.seed = v;
			break;
		case 'r':
			if (!parse_u64(optarg, &v) || v < 1 || v > 100)
				die("-r takes 1 to 100");
			opt.reps = (int)v;
			break;
		case 'w': {
			bool known = false;

			for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
				known = known || strcmp(optarg, workloads[i]) == 0;
			if (!known || opt.nonly == 8) {
				usage(stderr);
				return 2;
			}
			opt.only[opt.nonly++] = optarg;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	printf("pm_bench: N=%zu seed=%" PRIu64 " reps=%d; allocator: %s; %s build\n", opt.n,
	       opt.seed, opt.reps, have_jemalloc ? "jemalloc" : "libc malloc (no jemalloc column)",
#ifdef __OPTIMIZE__
	       "optimized"
#else
	       "UNOPTIMIZED (numbers not meaningful)"
#endif
	);
	printf("rates: M operations/s, wall clock (CLOCK_MONOTONIC), best of %d; B/key: bytes per "
	       "distinct key, 'alloc' = PathMap's counting pm_alloc_fn (live requested bytes) or "
	       "Judy*FreeArray's byte count, 'jemalloc' = stats.allocated delta over the build\n",
	       opt.reps);
	print_load();
	fflush(stdout);

	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++) {
		if (!wanted(&opt, workloads[i]))
			continue;
		b.workload = workloads[i];
		if (strcmp(workloads[i], "paths") == 0)
			run_paths(&b, &opt);
		else
			run_binary(&b, &opt, workloads[i]);
		fflush(stdout);
	}
	if (b.fails) {
		printf("\nFAIL: %d check(s) failed\n", b.fails);
		return 1;
	}
	printf("\nall checks passed\n");
	return 0;
}
