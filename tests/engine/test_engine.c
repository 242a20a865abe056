/*
 * test_engine.c - unit tests of the ingest engine: partition paths (exhaustive
 * prefix-freeness for every accepted P), routing (stable, thread-count independent), the
 * prefix planner, and whole runs (byte-identical KBs for any thread count and batch size,
 * identical content across schemes). Seed: PME_TEST_SEED.
 */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/Basic.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest_internal.h"
#include "kb.h"

static uint64_t seed = 20241127;
static char dir[1024] = "engine_unit";

static uint64_t rnd(void)
{
	uint64_t z = (seed += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Every accepted P: all partition paths have the same length and are pairwise distinct, so
 * none is a prefix of another (checked literally pairwise for P <= 1024). */
static void test_partition_paths_prefix_free(void)
{
	static uint8_t seen[65536];
	uint32_t P, a, b;

	for (P = 1; P <= PME_MAX_PARTITIONS; P *= 2) {
		memset(seen, 0, sizeof(seen));
		for (a = 0; a < P; a++) {
			uint8_t pa[PME_PART_PATH_LEN];
			unsigned v;

			pme_partition_path(a, pa);
			v = (unsigned)pa[0] << 8 | pa[1];
			CU_ASSERT_FATAL(!seen[v]);
			seen[v] = 1;
		}
		for (a = 0; P <= 1024 && a < P; a++) {
			for (b = 0; b < P; b++) {
				uint8_t pa[PME_PART_PATH_LEN], pb[PME_PART_PATH_LEN];

				if (a == b)
					continue;
				pme_partition_path(a, pa);
				pme_partition_path(b, pb);
				/* same length: one is a prefix of the other only if equal */
				CU_ASSERT_FATAL(memcmp(pa, pb, PME_PART_PATH_LEN) != 0);
			}
		}
		if (P > 1 && (P == 2 || P == 256 || P == 4096 || P == 65536)) {
			/* the checked head agrees: P zippers, no conflict; an ancestor conflicts */
			pm_map *m;
			pm_head *h;
			pm_wz *z;

			CU_ASSERT_FATAL(pm_map_create(&m, NULL, NULL) == 0);
			CU_ASSERT_FATAL(pm_head_create(m, &h) == 0);
			for (a = 0; a < P; a++) {
				uint8_t pa[PME_PART_PATH_LEN];

				pme_partition_path(a, pa);
				CU_ASSERT_FATAL(pm_head_write_zipper(h, pa, sizeof(pa), &z) == 0);
			}
			CU_ASSERT(pm_head_write_zipper(h, (const uint8_t *)"", 1, &z) ==
				  PM_ECONFLICT);
			pm_head_destroy(h);
			pm_map_destroy(m);
		}
	}
}

/* A batch of n random keys from a small pool (duplicates, the empty key, NUL bytes). */
struct tbatch {
	struct pme_rbatch b; /* view */
	uint8_t *keys;	     /* arena */
	size_t *off;	     /* offsets */
	uint64_t *vals;	     /* values */
};

/* Room for n records of up to kmax key bytes each. */
static void batch_alloc(struct tbatch *t, size_t n, size_t kmax)
{
	t->keys = malloc(n * kmax + 1);
	t->off = malloc((n + 1) * sizeof(size_t));
	t->vals = malloc(n * sizeof(uint64_t));
	t->off[0] = 0;
}

/* Points t->b at the n records written to t's arrays. */
static void batch_wrap(struct tbatch *t, size_t n)
{
	memset(&t->b, 0, sizeof(t->b));
	t->b.n = n;
	t->b.keys = t->keys;
	t->b.key_off = t->off;
	t->b.vals = t->vals;
}

static void make_batch(struct tbatch *t, size_t n)
{
	size_t i, o = 0;

	batch_alloc(t, n, 12);
	for (i = 0; i < n; i++) {
		uint64_t r = rnd() % 700;
		size_t len = (size_t)(r % 12), j;

		for (j = 0; j < len; j++)
			t->keys[o + j] = (uint8_t)("ab\0c"[(r >> j) & 3]);
		o += len;
		t->off[i + 1] = o;
		t->vals[i] = rnd(); /* not the index: a value taken for a record index shows */
	}
	batch_wrap(t, n);
}

static void free_batch(struct tbatch *t)
{
	free(t->keys);
	free(t->off);
	free(t->vals);
}

static const uint8_t *tkey(const struct tbatch *t, uint32_t i, size_t *len)
{
	*len = t->off[i + 1] - t->off[i];
	return t->keys + t->off[i];
}

/* Checks r's routing of t: buckets, order, and (sorted) the records' pme_kp copies, from
 * which every short key must come back whole, and every value word. Returns how many keys
 * came back that way. */
static size_t check_routing(const struct tbatch *t, const struct pme_router *r, bool sorted)
{
	uint8_t kbuf[64 + PME_KP_SHORT];
	size_t i, rebuilt = 0;
	uint32_t bk;

	CU_ASSERT_EQUAL_FATAL(r->start[r->nbuckets], t->b.n);
	CU_ASSERT_EQUAL_FATAL(r->sorted, sorted);
	CU_ASSERT_FATAL(r->lcp <= 64);
	if (t->b.n)
		memcpy(kbuf, t->keys + t->off[0], r->lcp);
	for (bk = 0; bk < r->nbuckets; bk++) {
		for (i = r->start[bk]; i < r->start[bk + 1]; i++) {
			size_t la, lb;
			const uint8_t *ka = tkey(t, r->idx[i], &la), *kb;

			CU_ASSERT_FATAL(la >= r->lcp && memcmp(ka, kbuf, r->lcp) == 0);
			if (sorted) {
				size_t l = pme_kp_key(&r->kp[i], r->lcp, kbuf);

				CU_ASSERT_EQUAL_FATAL(r->kp[i].rec, r->idx[i]);
				CU_ASSERT_EQUAL_FATAL(r->kp[i].val, t->b.vals[r->idx[i]]);
				CU_ASSERT_EQUAL_FATAL(l == SIZE_MAX, la - r->lcp > PME_KP_SHORT);
				if (l != SIZE_MAX) {
					CU_ASSERT_EQUAL_FATAL(l, la);
					CU_ASSERT_FATAL(memcmp(kbuf, ka, la) == 0);
					rebuilt++;
				}
			}
			CU_ASSERT_EQUAL_FATAL(r->pid[r->idx[i]], bk);
			if (r->scheme == PME_SCHEME_HASH) {
				CU_ASSERT_EQUAL_FATAL(pme_hash_partition(ka, la, r->nparts), bk);
			} else if (la < r->stem_len + r->depth ||
				   memcmp(ka, r->stem, r->stem_len) != 0) {
				CU_ASSERT_EQUAL_FATAL(bk, r->nparts);
			} else {
				uint64_t dp = pme_dprefix(ka + r->stem_len, r->depth);

				CU_ASSERT_EQUAL_FATAL(bk, pme_prefix_partition(r, dp));
			}
			if (i == r->start[bk])
				continue;
			kb = tkey(t, r->idx[i - 1], &lb);
			if (!sorted) {
				CU_ASSERT_FATAL(r->idx[i - 1] < r->idx[i]);
			} else {
				int c = pme_key_cmp(kb, lb, ka, la);

				CU_ASSERT_FATAL(c < 0 || (c == 0 && r->idx[i - 1] < r->idx[i]));
			}
		}
	}
	return rebuilt;
}

/* Routing is stable and the same for 1 and 2 threads, sorted or not, both schemes. */
static void test_route_stable(void)
{
	struct tbatch t;
	uint64_t splits[7];
	unsigned depth;
	size_t stem;
	uint8_t sb[PME_STEM_MAX];
	int s, th;

	make_batch(&t, 20000);
	CU_ASSERT_FATAL(pme_prefix_plan(t.keys, t.off, t.b.n, 7, sb, &stem, &depth, splits) == 0);
	CU_ASSERT(depth >= 1 && depth <= 8);
	CU_ASSERT_EQUAL(stem, 0); /* the batch has empty keys */
	for (s = 0; s < 4; s++) {
		uint32_t *first = NULL;

		for (th = 1; th <= 2; th++) {
			struct pme_router r;
			bool sorted = s & 1;

			if (s < 2) {
				CU_ASSERT_FATAL(pme_router_init(&r, PME_SCHEME_HASH, 16, th, NULL,
								0, 0, NULL) == 0);
			} else {
				CU_ASSERT_FATAL(pme_router_init(&r, PME_SCHEME_PREFIX, 7, th, NULL,
								0, depth, splits) == 0);
			}
			CU_ASSERT_FATAL(pme_route(&r, &t.b, sorted) == 0);
			/* keys are 0-11 bytes: all of them are short */
			CU_ASSERT_EQUAL(check_routing(&t, &r, sorted), sorted ? t.b.n : 0);
			if (!first) {
				first = malloc(t.b.n * sizeof(*first));
				memcpy(first, r.idx, t.b.n * sizeof(*first));
			} else {
				CU_ASSERT(memcmp(first, r.idx, t.b.n * sizeof(*first)) == 0);
			}
			pme_router_free(&r);
		}
		free(first);
	}
	free_batch(&t);
}

/* The key sort on slices long enough to be split by their first differing key bits: random
 * keys of any byte and length 0-19 over 2 partitions (about 20000 records each: an 11-bit
 * split), 1 and 2 threads; then the same with every key of length 1-20 starting with byte
 * 0x40 or 0x41 (the batch has no common prefix, but its keys share their top 7 bits, which
 * the split must skip); then alphanumeric keys of 16 and 20 bytes (62 values a byte: the
 * split's buckets are uneven, many of them long). */
enum { SORT_ANY, SORT_SHARED, SORT_ALNUM };

static void route_sort_long(int mode);

static void test_route_sort_long(void)
{
	route_sort_long(SORT_ANY);
	route_sort_long(SORT_SHARED);
	route_sort_long(SORT_ALNUM);
}

static void route_sort_long(int mode)
{
	static const char alnum[] =
	    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	const size_t shared = mode == SORT_SHARED;
	struct tbatch t;
	size_t n = 40000, i, o = 0, rebuilt;
	int th;

	batch_alloc(&t, n, 21);
	for (i = 0; i < n; i++) {
		size_t len = mode == SORT_ALNUM ? (i % 5 ? 16 : 20) : (size_t)(rnd() % 20), j;

		if (shared)
			t.keys[o++] = (uint8_t)(0x40 | (rnd() & 1));

		if (i >= 3 && i % 11 == 0) { /* an exact duplicate of an earlier key */
			o -= shared;
			len = t.off[i - 2] - t.off[i - 3];
			memcpy(t.keys + o, t.keys + t.off[i - 3], len);
		} else {
			for (j = 0; j < len; j++)
				t.keys[o + j] = mode == SORT_ALNUM
						    ? (uint8_t)alnum[rnd() % 62]
						    : (uint8_t)(i % 7 == 0 && j < 3 ? 'k' : rnd());
		}
		o += len;
		t.off[i + 1] = o;
		t.vals[i] = rnd();
	}
	batch_wrap(&t, n);
	for (th = 1; th <= 2; th++) {
		struct pme_router r;

		CU_ASSERT_FATAL(pme_router_init(&r, PME_SCHEME_HASH, 2, th, NULL, 0, 0, NULL) == 0);
		CU_ASSERT_FATAL(pme_route(&r, &t.b, true) == 0);
		rebuilt = check_routing(&t, &r, true);
		/* short keys come back whole from their copies, longer ones are read from the
		 * batch: lengths 0-19, about 17 in 20 short; alphanumeric, 4 in 5 */
		CU_ASSERT(rebuilt > n / 2 && rebuilt < n);
		pme_router_free(&r);
	}
	free_batch(&t);
}

/* pme_head8 (the sort's key head) against the definition, byte by byte, for every
 * length 0-12 and bytes drawn mostly from {0, 1, 0xfe, 0xff} (padding ties); and its order:
 * unequal heads order two keys as the full byte compare does. */
static void test_head8(void)
{
	static const uint8_t pick[] = {0, 1, 0xfe, 0xff};
	uint8_t a[12], b[12];
	int it;

	for (it = 0; it < 20000; it++) {
		size_t la = (size_t)(rnd() % 13), lb = (size_t)(rnd() % 13), j;
		uint64_t ref = 0, ha, hb;
		int c;

		for (j = 0; j < 12; j++) {
			a[j] = rnd() % 4 ? pick[rnd() % 4] : (uint8_t)rnd();
			b[j] = it % 3 ? a[j] : pick[rnd() % 4]; /* often a shared head */
		}
		for (j = 0; j < 8; j++)
			ref = ref << 8 | (j < la ? a[j] : 0);
		ha = pme_head8(a, la);
		hb = pme_head8(b, lb);
		CU_ASSERT_EQUAL(ha, ref);
		c = pme_key_cmp(a, la, b, lb);
		if (ha != hb)
			CU_ASSERT((ha < hb) == (c < 0));
	}
}

/* The planner: splits start at 0, never decrease; prefix ranges are disjoint. */
static void test_prefix_plan(void)
{
	static const char *keys[] = {"", "a", "ab", "abc", "b", "bb", "zzz", "zz\0z", "m", "mm"};
	uint8_t arena[64];
	size_t off[11], i, o = 0;
	uint64_t splits[4];
	unsigned depth;
	size_t stem;
	uint8_t sb[PME_STEM_MAX];

	off[0] = 0;
	for (i = 0; i < 10; i++) {
		size_t l = i == 7 ? 4 : strlen(keys[i]);

		memcpy(arena + o, keys[i], l);
		o += l;
		off[i + 1] = o;
	}
	CU_ASSERT_FATAL(pme_prefix_plan(arena, off, 10, 4, sb, &stem, &depth, splits) == 0);
	CU_ASSERT_EQUAL(stem, 0);
	CU_ASSERT_EQUAL(depth, 1);
	CU_ASSERT_EQUAL(splits[0], 0);
	for (i = 1; i < 4; i++)
		CU_ASSERT(splits[i] >= splits[i - 1]);
	/* a common prefix is the stem; the split looks at the bytes after it */
	memcpy(arena, "run1run2run3run44", 17);
	for (i = 0; i < 4; i++)
		off[i + 1] = 4 * (i + 1) + (i == 3);
	CU_ASSERT_FATAL(pme_prefix_plan(arena, off, 4, 4, sb, &stem, &depth, splits) == 0);
	CU_ASSERT_EQUAL(stem, 3);
	CU_ASSERT_EQUAL(depth, 1);
	CU_ASSERT_EQUAL(splits[1], '2');
	CU_ASSERT_EQUAL(splits[2], '3');
	CU_ASSERT_EQUAL(splits[3], '4');
	/* a stray key (the empty one) among 300 does not take the stem away */
	{
		uint8_t big[300 * 8];
		size_t boff[302], b = 0;

		boff[0] = 0;
		for (i = 0; i < 300; i++) {
			memcpy(big + b, "run", 3);
			big[b + 3] = (uint8_t)('0' + i % 10);
			big[b + 4] = (uint8_t)('0' + i / 10 % 10);
			b += 5;
			boff[i + 1] = b;
		}
		boff[301] = b; /* the empty key */
		CU_ASSERT_FATAL(pme_prefix_plan(big, boff, 301, 4, sb, &stem, &depth, splits) == 0);
		CU_ASSERT_EQUAL(stem, 3);
		CU_ASSERT(memcmp(sb, "run", 3) == 0);
		CU_ASSERT_EQUAL(depth, 1);
	}
}

/* Keys under a long common prefix (paths of one project): the prefix scheme's partitions
 * split them after it, evenly; keys that do not start with the sample's stem, or end inside
 * stem + depth, go to the short bucket; routing is checked record by record. */
static void test_route_stem(void)
{
	const size_t n = 40000, ns = 20000, np = 16;
	struct tbatch t;
	struct pme_router r;
	uint64_t splits[16];
	unsigned depth;
	size_t stem, i, o = 0, max = 0;
	uint8_t sb[PME_STEM_MAX];
	uint32_t bk;

	batch_alloc(&t, n, 32);
	for (i = 0; i < n; i++) {
		int l;

		if (i == 5) /* a stray key in the sample: it does not take the stem away */
			l = snprintf((char *)t.keys + o, 32, "/zzz");
		else if (i >= ns && i % 97 == 0)
			l = snprintf((char *)t.keys + o, 32, "/other/%05u",
				     (unsigned)(rnd() % 100000));
		else if (i >= ns && i % 89 == 0)
			l = snprintf((char *)t.keys + o, 32, "/proj/run");
		else
			l = snprintf((char *)t.keys + o, 32, "/proj/run%05u/attr",
				     (unsigned)(rnd() % 100000));
		o += (size_t)l;
		t.off[i + 1] = o;
		t.vals[i] = rnd();
	}
	batch_wrap(&t, n);
	/* the sample: the first half, all under /proj/run */
	CU_ASSERT_FATAL(pme_prefix_plan(t.keys, t.off, ns, np, sb, &stem, &depth, splits) == 0);
	CU_ASSERT_EQUAL_FATAL(stem, 9);
	CU_ASSERT(memcmp(sb, "/proj/run", 9) == 0);
	CU_ASSERT(depth >= 1 && depth <= 3);
	CU_ASSERT_FATAL(pme_router_init(&r, PME_SCHEME_PREFIX, np, 2, sb, stem, depth, splits) ==
			0);
	CU_ASSERT_FATAL(pme_route(&r, &t.b, true) == 0);
	check_routing(&t, &r, true);
	for (bk = 0; bk < np; bk++)
		if (r.start[bk + 1] - r.start[bk] > max)
			max = r.start[bk + 1] - r.start[bk];
	/* about 2500 a partition; before the stem, all of them went to one */
	CU_ASSERT(max < 2 * (n / np));
	CU_ASSERT(r.start[np + 1] - r.start[np] > 200); /* the short bucket: /other, /proj/run */
	pme_router_free(&r);
	free_batch(&t);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	*len = 0;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	*len = fread(buf, 1, (size_t)n, f);
	fclose(f);
	return buf;
}

static int run_one(const char *in, const char *out, int threads, uint64_t batch,
		   enum pme_scheme scheme, uint32_t parts, bool sort, uint64_t memory,
		   const char *policy, struct pme_report *rep)
{
	struct pme_config c;
	struct pme_err err;
	char num[32];
	int rc;

	pme_config_init(&c);
	pme_config_set(&c, "input", in, &err);
	pme_config_set(&c, "output", out, &err);
	pme_config_set(&c, "quiet", NULL, &err);
	pme_config_set(&c, "on-duplicate", policy, &err);
	c.threads = threads;
	c.batch_records = batch;
	c.scheme = scheme;
	c.sort = sort;
	c.memory = memory;
	snprintf(num, sizeof(num), "%u", parts);
	pme_config_set(&c, "partitions", num, &err);
	rc = pme_ingest_run(&c, rep, &err);
	if (rc)
		fprintf(stderr, "run: %s\n", err.msg);
	pme_config_free(&c);
	return rc;
}

/* A test key of the held-merge test: bytes from {0, 'a', 'b'} so that heads and keys
 * repeat across runs; 0 to 11 bytes, so some differ only after their first 8. */
struct hkey {
	uint8_t k[12];
	uint32_t len;
	uint64_t val;
};

static int hkey_cmp(const void *a, const void *b)
{
	const struct hkey *x = a, *y = b;
	int c = memcmp(x->k, y->k, x->len < y->len ? x->len : y->len);

	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* pme_fill_flush merges held runs stably (equal keys: the later run's value wins, as in
 * input order) and counts duplicates, against a model that applies the runs in order; the
 * runs are held in chunks of the default size, or so small that records cross from chunk to
 * chunk every one or two records and some records get chunks of their own. */
static void test_held_merge(void)
{
	static const uint8_t alpha[3] = {0, 'a', 'b'};
	uint64_t rng = seed * 2654435761u + 7;
	int round;

	for (round = 0; round < 200; round++) {
		size_t nruns = 1 + (size_t)(rng % 12), total = 0, distinct = 0, i, j;
		struct hkey *all, *model;
		struct pme_part part;
		struct pme_fill_buf fb;
		char msg[200];
		pm_map *m;
		pm_head *hd;
		pm_wz *wz;

		memset(&part, 0, sizeof(part));
		memset(&fb, 0, sizeof(fb));
		all = calloc(64 * 12, sizeof(*all));
		CU_ASSERT_FATAL(all != NULL);
		part.held.chunk_max = round % 3 == 0 ? 0 : round % 3 == 1 ? 40 : 64;
		for (i = 0; i < nruns; i++) {
			size_t n =
			    (size_t)((rng = rng * 6364136223846793005u + 1442695040888963407u) >>
				     58); /* 0..63 records */
			struct hkey *run = all + total;

			for (j = 0; j < n; j++) {
				rng = rng * 6364136223846793005u + 1442695040888963407u;
				run[j].len = (uint32_t)((rng >> 40) % 12);
				for (uint32_t b = 0; b < run[j].len; b++)
					run[j].k[b] = alpha[(rng >> (2 * b)) % 3];
				run[j].val = total + j + 1;
			}
			qsort(run, n, sizeof(*run), hkey_cmp);
			CU_ASSERT_FATAL(pme_held_begin(&part.held));
			for (j = 0; j < n; j++)
				CU_ASSERT_FATAL(
				    pme_held_add(&part.held, run[j].k, run[j].len, run[j].val));
			total += n;
		}
		CU_ASSERT_EQUAL(part.held.nrec, total);
		CU_ASSERT(part.held.chunk_max != 40 || total < 2 || part.held.nchunks > total / 2);
		/* model: the records in run order, the last value of a key kept */
		model = calloc(total + 1, sizeof(*model));
		CU_ASSERT_FATAL(model != NULL);
		for (i = 0; i < total; i++) {
			for (j = 0; j < distinct; j++)
				if (!hkey_cmp(&model[j], &all[i]))
					break;
			model[j] = all[i];
			distinct += j == distinct;
		}
		CU_ASSERT_FATAL(pm_map_create(&m, NULL, NULL) == 0);
		CU_ASSERT_FATAL(pm_head_create(m, &hd) == 0);
		CU_ASSERT_FATAL(pm_head_write_zipper(hd, NULL, 0, &wz) == 0);
		pme_fill_flush(wz, &part, &fb);
		CU_ASSERT_EQUAL(part.rc, 0);
		CU_ASSERT_EQUAL(part.dups, total - distinct);
		CU_ASSERT(part.held.chunk == NULL && part.held.nrec == 0 && part.held.nruns == 0);
		CU_ASSERT_FATAL(pm_head_release(hd, wz) == 0);
		pm_head_destroy(hd);
		CU_ASSERT_EQUAL(pm_map_count(m), distinct);
		for (j = 0; j < distinct; j++) {
			uint64_t v = 0;

			CU_ASSERT(pm_map_get(m, model[j].k, model[j].len, &v) && v == model[j].val);
		}
		CU_ASSERT(pm_map_check(m, msg, sizeof(msg)) == 0);
		pm_map_destroy(m);
		pme_fill_buf_free(&fb);
		free(model);
		free(all);
	}
}

/* Whole runs: the KB is byte-identical for 1 and 2 threads, any batch size, and with or
 * without the key sort before the fill; hash and prefix KBs hold the same keys and values.
 * The hash scheme's held-back runs: all of them at the end (the default budget; batches of
 * 30000 hold two runs, the fewest that are held), a flush every 64 runs (batches of 500),
 * and flushes by size (a 256 KiB budget: 1 KiB a partition). */
static void test_determinism(void)
{
	static const char *policies[] = {"last", "sum", "first"};
	char in[1200], h5[1100], out[1100], ref[1100];
	struct pio_gen_opts g;
	struct pio_err pe;
	struct pme_report rep;
	size_t p;

	snprintf(h5, sizeof(h5), "%s/det.h5", dir);
	snprintf(in, sizeof(in), "%s:/data", h5);
	memset(&g, 0, sizeof(g));
	g.out.file = h5;
	g.out.chunk_records = 1000;
	g.records = 60000;
	g.key_kind = PIO_GEN_WORDS;
	g.dup_ratio = 0.5;
	g.zipf = 1.1;
	g.seed = seed;
	CU_ASSERT_FATAL(pio_generate(&g, &pe) == 0);
	for (p = 0; p < 3; p++) {
		/* base: the KB the next ones (same) must equal byte for byte */
		static const struct {
			int threads;
			uint64_t batch;
			enum pme_scheme scheme;
			uint32_t parts;
			bool sort, base, same;
			uint64_t memory;
		} cfg[] = {{1, 0, PME_SCHEME_HASH, 64, true, true, false, 0},
			   {2, 1000, PME_SCHEME_HASH, 64, true, false, true, 0},
			   {2, 7000, PME_SCHEME_HASH, 64, true, false, true, 0},
			   {2, 30000, PME_SCHEME_HASH, 64, true, false, true, 0},
			   {2, 1000, PME_SCHEME_HASH, 64, false, false, true, 0},
			   {2, 500, PME_SCHEME_HASH, 64, true, false, true, 0},
			   {1, 1000, PME_SCHEME_HASH, 64, true, false, true, 256 << 10},
			   {1, 1000, PME_SCHEME_PREFIX, 13, true, true, false, 0},
			   {2, 0, PME_SCHEME_PREFIX, 13, true, false, true, 0},
			   {2, 3000, PME_SCHEME_PREFIX, 13, false, false, true, 0},
			   {2, 3000, PME_SCHEME_HASH, 1, true, false, false, 0},
			   {2, 3000, PME_SCHEME_PREFIX, 1, true, false, false, 0}};
		char *a = NULL, *b;
		size_t la = 0, lb, i;
		struct pkb *ka, *kb2;

		for (i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++) {
			snprintf(out, sizeof(out), "%s/det_%zu.kb", dir, i);
			CU_ASSERT_FATAL(run_one(in, out, cfg[i].threads, cfg[i].batch,
						cfg[i].scheme, cfg[i].parts, cfg[i].sort,
						cfg[i].memory, policies[p], &rep) == 0);
			CU_ASSERT_EQUAL(rep.records, 60000);
			b = slurp(out, &lb);
			CU_ASSERT_FATAL(b != NULL);
			if (cfg[i].base) {
				free(a);
				a = b;
				la = lb;
				strcpy(ref, out);
			} else if (cfg[i].same) {
				CU_ASSERT(la == lb && memcmp(a, b, la) == 0);
				free(b);
			} else {
				free(b);
			}
		}
		free(a);
		/* content across schemes and P: compare every key and value */
		for (i = 1; i < sizeof(cfg) / sizeof(cfg[0]); i++) {
			pm_snap_iter *ia, *ib;
			const uint8_t *k1, *k2;
			size_t l1, l2;
			uint64_t v1, v2;
			int r1, r2;

			snprintf(out, sizeof(out), "%s/det_%zu.kb", dir, i);
			snprintf(ref, sizeof(ref), "%s/det_0.kb", dir);
			CU_ASSERT_FATAL(pkb_open(ref, 0, &ka, NULL) == 0);
			CU_ASSERT_FATAL(pkb_open(out, 0, &kb2, NULL) == 0);
			CU_ASSERT_FATAL(pm_snap_iter_create(pkb_snap(ka), NULL, NULL, &ia) == 0);
			CU_ASSERT_FATAL(pm_snap_iter_create(pkb_snap(kb2), NULL, NULL, &ib) == 0);
			do {
				r1 = pm_snap_iter_next(ia, &k1, &l1, &v1);
				r2 = pm_snap_iter_next(ib, &k2, &l2, &v2);
				CU_ASSERT_FATAL(r1 == r2);
				if (r1 == 1) {
					CU_ASSERT_FATAL(l1 == l2 && !memcmp(k1, k2, l1) &&
							v1 == v2);
				}
			} while (r1 == 1);
			pm_snap_iter_destroy(ia);
			pm_snap_iter_destroy(ib);
			pkb_close(ka);
			pkb_close(kb2);
		}
	}
}

/* Writes text to dir/rel, making the directories on the way. */
static void put_file(const char *rel, const char *text)
{
	char p[1200];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	for (char *q = p + strlen(dir) + 1; (q = strchr(q, '/')); q++) {
		*q = 0;
		mkdir(p, 0777);
		*q = '/';
	}
	f = fopen(p, "w");
	CU_ASSERT_FATAL(f != NULL);
	fputs(text, f);
	fclose(f);
}

/* pme_cgroup_limit on made-up cgroup trees: the lowest limit on the path, v1 and v2. */
static void test_cgroup_limit(void)
{
	char root[1100], self[1100];

	snprintf(root, sizeof(root), "%s/cg", dir);
	snprintf(self, sizeof(self), "%s/cg/self", dir);
	/* v1: the job's limit binds its step, which shows none of its own */
	put_file("cg/memory/memory.limit_in_bytes", "9223372036854771712\n");
	put_file("cg/memory/slurm/job_7/memory.limit_in_bytes", "8589934592\n");
	put_file("cg/memory/slurm/job_7/step_0/memory.limit_in_bytes", "9223372036854771712\n");
	put_file("cg/self", "12:pids:/slurm/job_7/step_0\n"
			    "4:cpuacct,memory:/slurm/job_7/step_0\n"
			    "1:name=systemd:/x\n");
	CU_ASSERT(pme_cgroup_limit(root, self) == UINT64_C(8589934592));
	/* no memory controller line: no limit */
	put_file("cg/self", "12:pids:/slurm/job_7/step_0\n");
	CU_ASSERT(pme_cgroup_limit(root, self) == UINT64_MAX);
	/* v2: "max" above, a number below; the lower wins wherever it is */
	put_file("cg/user.slice/memory.max", "max\n");
	put_file("cg/user.slice/job/memory.max", "1073741824\n");
	put_file("cg/user.slice/job/task/memory.max", "2147483648\n");
	put_file("cg/self", "0::/user.slice/job/task\n");
	CU_ASSERT(pme_cgroup_limit(root, self) == UINT64_C(1073741824));
	/* a container's own root ("0::/"): its memory.max at the mount point */
	put_file("cg/memory.max", "536870912\n");
	put_file("cg/self", "0::/\n");
	CU_ASSERT(pme_cgroup_limit(root, self) == UINT64_C(536870912));
	/* both hierarchies (hybrid): the lower of the two */
	put_file("cg/self", "4:memory:/slurm/job_7/step_0\n0::/user.slice/job/task\n");
	CU_ASSERT(pme_cgroup_limit(root, self) == UINT64_C(536870912));
	/* garbage, an empty file, a missing file, no /proc file at all: no limit */
	put_file("cg/memory.max", "lots\n");
	put_file("cg/user.slice/job/memory.max", "");
	put_file("cg/self", "0::/user.slice/gone\n");
	CU_ASSERT(pme_cgroup_limit(root, self) == UINT64_MAX);
	put_file("cg/self", "0::/user.slice/job/task\n");
	CU_ASSERT(pme_cgroup_limit(root, self) == UINT64_C(2147483648));
	snprintf(self, sizeof(self), "%s/cg/none", dir);
	CU_ASSERT(pme_cgroup_limit(root, self) == UINT64_MAX);
	/* this process: never above physical memory, never zero */
	CU_ASSERT(pme_memory_limit() > 0);
	CU_ASSERT(pme_memory_limit() <=
		  (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGE_SIZE));
}

int main(void)
{
	CU_pSuite s;
	const char *e = getenv("PME_TEST_SEED"), *d = getenv("PME_TEST_DIR");
	unsigned fails;

	if (e)
		seed = strtoull(e, NULL, 10);
	if (d)
		snprintf(dir, sizeof(dir), "%s", d);
	mkdir(dir, 0777);
	printf("seed %llu (PME_TEST_SEED), dir %s\n", (unsigned long long)seed, dir);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	s = CU_add_suite("engine", NULL, NULL);
	CU_add_test(s, "partition paths are prefix-free for every P",
		    test_partition_paths_prefix_free);
	CU_add_test(s, "routing is stable and thread-count independent", test_route_stable);
	CU_add_test(s, "key sort of long slices (split on their first differing bits)",
		    test_route_sort_long);
	CU_add_test(s, "key heads (first 8 bytes) order keys", test_head8);
	CU_add_test(s, "prefix planner", test_prefix_plan);
	CU_add_test(s, "prefix scheme: keys under a common stem", test_route_stem);
	CU_add_test(s, "held runs merge stably (last value wins)", test_held_merge);
	CU_add_test(s, "KBs are byte-identical for any threads/batch size", test_determinism);
	CU_add_test(s, "memory limit: the lowest on the cgroup path", test_cgroup_limit);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures();
	if (fails)
		printf("seed %llu\n", (unsigned long long)seed);
	CU_cleanup_registry();
	return fails != 0;
}
