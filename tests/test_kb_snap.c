/*
 * test_kb_snap.c - the snapshot format of pathmap (pm_snap.h), against a sorted-array oracle.
 *
 * Randomized: builds images from random key sets (binary keys, NUL bytes, the empty key,
 * shared prefixes, long keys, wide fan-outs), then checks get, count_prefix, seek/next and
 * verify against the oracle; checks that the bytes depend only on the content (maps built in
 * different orders, through clones and joins); flips, truncates and extends images and checks
 * every reader refuses or answers without crashing; injects allocation failures.
 * Seed: PM_TEST_SEED (printed on failure).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "pathmap.h"
#include "pm_snap.h"

static uint64_t seed = 0x5eed2024u;
static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct kv {
	uint8_t *k;   /* key bytes */
	size_t len;   /* key length */
	uint64_t val; /* value */
};

struct set {
	struct kv *kv; /* sorted, unique */
	size_t n;      /* entries */
};

static int kv_cmp(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;
	size_t m = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->k, y->k, m);

	if (c)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t m = al < bl ? al : bl;
	int c = m ? memcmp(a, b, m) : 0;

	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

/* Random key: drawn from a small alphabet sometimes, to make shared prefixes and fan-outs. */
static void rand_key(uint8_t *k, size_t *len, int shape)
{
	size_t i, n;

	switch (shape) {
	case 0: /* short, tiny alphabet: deep sharing */
		n = rnd() % 6;
		for (i = 0; i < n; i++)
			k[i] = (uint8_t)("ab\0c"[rnd() % 4]);
		break;
	case 1: /* random binary 16 bytes: wide fan-out near the root */
		n = 16;
		for (i = 0; i < n; i++)
			k[i] = (uint8_t)rnd();
		break;
	case 2: /* long common prefix, then a spread byte */
		n = 40 + rnd() % 60;
		for (i = 0; i < n; i++)
			k[i] = (uint8_t)(i < 30 ? 'x' : rnd() % 256);
		break;
	case 4: /* one first byte takes 99% of the keys: a part bigger than the output buffer */
		n = 17;
		for (i = 0; i < n; i++)
			k[i] = (uint8_t)rnd();
		if (rnd() % 100)
			k[0] = 'a';
		break;
	default: /* mixed */
		n = rnd() % 12;
		for (i = 0; i < n; i++)
			k[i] = (uint8_t)(rnd() % 3 ? rnd() % 64 : rnd() % 256);
		break;
	}
	*len = n;
}

static void set_free(struct set *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->kv[i].k);
	free(s->kv);
	s->kv = NULL;
	s->n = 0;
}

static void set_make(struct set *s, size_t n, int shape)
{
	size_t i, j;
	uint8_t k[128];

	s->kv = calloc(n ? n : 1, sizeof(*s->kv));
	for (i = 0; i < n; i++) {
		rand_key(k, &s->kv[i].len, shape < 0 ? (int)(rnd() % 4) : shape);
		s->kv[i].k = malloc(s->kv[i].len + 1);
		memcpy(s->kv[i].k, k, s->kv[i].len);
		switch (rnd() % 4) {
		case 0:
			s->kv[i].val = rnd() % 256;
			break;
		case 1:
			s->kv[i].val = rnd() % 70000;
			break;
		case 2:
			s->kv[i].val = rnd() % (1ull << 32);
			break;
		default:
			s->kv[i].val = rnd();
		}
	}
	qsort(s->kv, n, sizeof(*s->kv), kv_cmp);
	for (i = 0, j = 0; i < n; i++) {
		if (j && kv_cmp(&s->kv[j - 1], &s->kv[i]) == 0) {
			free(s->kv[i].k);
			continue;
		}
		s->kv[j++] = s->kv[i];
	}
	s->n = j;
}

struct buf {
	uint8_t *p;  /* bytes */
	size_t len;  /* used */
	size_t cap;  /* allocated */
	size_t fail; /* sink fails when len would exceed this (0: never) */
};

static int buf_sink(void *ud, const void *data, size_t len)
{
	struct buf *b = ud;

	if (b->fail && b->len + len > b->fail)
		return -28;
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

static int build(const struct set *s, struct buf *out)
{
	pm_snap_builder *b;
	uint64_t ilen;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = pm_snap_builder_create(NULL, NULL, buf_sink, out, &b);
	if (rc)
		return rc;
	for (i = 0; i < s->n && !rc; i++)
		rc = pm_snap_builder_add(b, s->kv[i].k, s->kv[i].len, s->kv[i].val);
	if (!rc)
		rc = pm_snap_builder_finish(b, &ilen);
	if (!rc && ilen != out->len)
		rc = -1;
	pm_snap_builder_destroy(b);
	return rc;
}

/* Visitor of pm_snap_iter_run() checking keys against the model from kv[at] on; stops (returns
 * 7) once `stop` keys went by, when stop is not 0. */
struct run_check {
	const struct set *s;
	size_t at, seen, stop, bad;
	const uint8_t *pfx;
	size_t plen;
};

static int run_visit(const uint8_t *key, size_t len, uint64_t val, void *arg)
{
	struct run_check *r = arg;
	const struct kv *e = r->at < r->s->n ? &r->s->kv[r->at] : NULL;

	if (!e || bytes_cmp(key, len, e->k, e->len) || val != e->val || e->len < r->plen ||
	    (r->plen && memcmp(e->k, r->pfx, r->plen)))
		r->bad++;
	r->at++;
	r->seen++;
	return r->stop && r->seen == r->stop ? 7 : 0;
}

/* Checks every query of the image against the set. */
static void check_image(const struct set *s, const struct buf *img)
{
	pm_snap sn;
	pm_snap_iter *it;
	pm_snap_stats st;
	char msg[200] = "";
	const uint8_t *k;
	size_t len, i, j, trial;
	uint64_t v, c;
	int rc;

	CU_ASSERT_EQUAL_FATAL(pm_snap_open(&sn, img->p, img->len, PM_SNAP_OPEN_CHECKSUM), 0);
	CU_ASSERT_EQUAL(sn.count, s->n);
	rc = pm_snap_verify(&sn, false, NULL, NULL, &st, msg, sizeof(msg));
	if (rc)
		fprintf(stderr, "verify: %s (seed %llu)\n", msg, (unsigned long long)seed);
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_EQUAL(st.values, s->n);
	for (i = 0; i < s->n; i++) {
		CU_ASSERT_EQUAL(pm_snap_get(&sn, s->kv[i].k, s->kv[i].len, &v), 0);
		CU_ASSERT_EQUAL(v, s->kv[i].val);
	}
	CU_ASSERT_EQUAL_FATAL(pm_snap_iter_create(&sn, NULL, NULL, &it), 0);
	for (i = 0; (rc = pm_snap_iter_next(it, &k, &len, &v)) == 1; i++) {
		CU_ASSERT_FATAL(i < s->n);
		CU_ASSERT_EQUAL(bytes_cmp(k, len, s->kv[i].k, s->kv[i].len), 0);
		CU_ASSERT_EQUAL(v, s->kv[i].val);
	}
	CU_ASSERT_EQUAL(rc, 0);
	CU_ASSERT_EQUAL(i, s->n);
	{
		struct run_check r = {s, 0, 0, 0, 0, NULL, 0};

		CU_ASSERT_EQUAL_FATAL(pm_snap_iter_seek(it, NULL, 0, NULL, 0), 0);
		CU_ASSERT_EQUAL(pm_snap_iter_run(it, run_visit, &r), 0);
		CU_ASSERT_EQUAL(r.seen, s->n);
		CU_ASSERT_EQUAL(r.bad, 0);
	}
	/* Random probes: absent keys, prefixes, seeks. */
	for (trial = 0; trial < 300; trial++) {
		uint8_t p[128], f[128];
		size_t plen, flen, first, expect;
		bool use_from = rnd() % 2;

		if (s->n && rnd() % 2) {
			const struct kv *e = &s->kv[rnd() % s->n];

			plen = e->len ? rnd() % (e->len + 1) : 0;
			memcpy(p, e->k, plen);
		} else {
			rand_key(p, &plen, (int)(rnd() % 4));
		}
		if (s->n && rnd() % 2) {
			const struct kv *e = &s->kv[rnd() % s->n];

			flen = e->len;
			memcpy(f, e->k, flen);
			if (flen && rnd() % 2)
				f[flen - 1]++;
		} else {
			rand_key(f, &flen, (int)(rnd() % 4));
		}
		/* get of p */
		for (j = 0; j < s->n && bytes_cmp(s->kv[j].k, s->kv[j].len, p, plen) < 0; j++)
			;
		rc = pm_snap_get(&sn, p, plen, &v);
		if (j < s->n && bytes_cmp(s->kv[j].k, s->kv[j].len, p, plen) == 0) {
			CU_ASSERT(rc == 0 && v == s->kv[j].val);
		} else {
			CU_ASSERT_EQUAL(rc, PM_ENOTFOUND);
		}
		/* count of p */
		expect = 0;
		for (j = 0; j < s->n; j++)
			if (s->kv[j].len >= plen && !memcmp(s->kv[j].k, p, plen))
				expect++;
		CU_ASSERT_EQUAL(pm_snap_count_prefix(&sn, p, plen, &c), 0);
		CU_ASSERT_EQUAL(c, expect);
		/* seek prefix p, from f */
		CU_ASSERT_EQUAL_FATAL(
		    pm_snap_iter_seek(it, p, plen, use_from ? f : NULL, use_from ? flen : 0), 0);
		for (first = 0; first < s->n; first++) {
			const struct kv *e = &s->kv[first];

			if (e->len >= plen && !memcmp(e->k, p, plen) &&
			    (!use_from || bytes_cmp(e->k, e->len, f, flen) >= 0))
				break;
		}
		for (j = first; j < s->n; j++) {
			const struct kv *e = &s->kv[j];

			if (e->len < plen || memcmp(e->k, p, plen))
				break;
			rc = pm_snap_iter_next(it, &k, &len, &v);
			CU_ASSERT_EQUAL_FATAL(rc, 1);
			CU_ASSERT_EQUAL(bytes_cmp(k, len, e->k, e->len), 0);
			CU_ASSERT_EQUAL(v, e->val);
		}
		CU_ASSERT_EQUAL(pm_snap_iter_next(it, &k, &len, &v), 0);
		/* The same walk by pm_snap_iter_run(): stopped by the visitor at a random key,
		 * one step of pm_snap_iter_next(), then runs to the end. */
		{
			struct run_check r = {s, first, 0, 0, 0, p, plen};
			size_t expect_n = j - first, stop = expect_n ? 1 + rnd() % expect_n : 0;

			CU_ASSERT_EQUAL_FATAL(pm_snap_iter_seek(it, p, plen, use_from ? f : NULL,
								use_from ? flen : 0),
					      0);
			r.stop = stop;
			rc = pm_snap_iter_run(it, run_visit, &r);
			CU_ASSERT_EQUAL(rc, stop ? 7 : 0);
			CU_ASSERT_EQUAL(r.seen, stop);
			if (stop < expect_n) {
				rc = pm_snap_iter_next(it, &k, &len, &v);
				CU_ASSERT_EQUAL_FATAL(rc, 1);
				CU_ASSERT_EQUAL(bytes_cmp(k, len, s->kv[r.at].k, s->kv[r.at].len),
						0);
				CU_ASSERT_EQUAL(v, s->kv[r.at].val);
				r.at++;
				r.seen++;
			}
			r.stop = 0;
			CU_ASSERT_EQUAL(pm_snap_iter_run(it, run_visit, &r), 0);
			CU_ASSERT_EQUAL(r.seen, expect_n);
			CU_ASSERT_EQUAL(r.bad, 0);
			CU_ASSERT_EQUAL(pm_snap_iter_next(it, &k, &len, &v), 0);
		}
	}
	pm_snap_iter_destroy(it);
}

static void test_roundtrip(void)
{
	int shape, round;

	for (round = 0; round < 12; round++) {
		for (shape = -1; shape < 4; shape++) {
			struct set s;
			struct buf img;
			size_t n = round < 2 ? (size_t)round : (size_t)(rnd() % 3000);

			set_make(&s, n, shape);
			CU_ASSERT_EQUAL_FATAL(build(&s, &img), 0);
			check_image(&s, &img);
			free(img.p);
			set_free(&s);
		}
	}
}

/* The image built from parts (one builder per branch byte after the longest common prefix,
 * then a join) equals the image of one builder, byte for byte, for every shape of set. */
static void test_parts(void)
{
	int shape, round;
	size_t big = 0;

	for (round = 0; round < 30; round++) {
		for (shape = -1; shape < 5; shape++) {
			struct set s;
			struct buf img, joined, *pb;
			struct pm_snap_part *parts;
			pm_snap_builder *b;
			size_t n = round < 3 ? (size_t)round : (size_t)(rnd() % 2000), i, np = 0, c;

			if (shape == 4 && round >= 3)
				n = 4000 + (size_t)(rnd() % 8000);
			bool has_val = false;
			uint64_t val = 0, ilen = 0;

			set_make(&s, n, shape);
			CU_ASSERT_EQUAL_FATAL(build(&s, &img), 0);
			/* C: the common prefix of the first and the last key */
			c = 0;
			if (s.n)
				while (c < s.kv[0].len && c < s.kv[s.n - 1].len &&
				       s.kv[0].k[c] == s.kv[s.n - 1].k[c])
					c++;
			parts = calloc(s.n + 1, sizeof(*parts));
			pb = calloc(s.n + 1, sizeof(*pb));
			for (i = 0; i < s.n;) {
				const uint8_t *k = s.kv[i].k;

				if (s.kv[i].len == c) { /* key C itself: the root's value */
					has_val = true;
					val = s.kv[i].val;
					i++;
					continue;
				}
				CU_ASSERT_EQUAL_FATAL(
				    pm_snap_builder_create(NULL, NULL, buf_sink, &pb[np], &b), 0);
				/* every other part skips the image hash: the same bytes either way
				 */
				if (np % 2)
					CU_ASSERT_EQUAL(pm_snap_builder_for_part(b), 0);
				parts[np].byte = k[c];
				while (i < s.n && s.kv[i].len > c &&
				       s.kv[i].k[c] == parts[np].byte) {
					CU_ASSERT_EQUAL(pm_snap_builder_add(b, s.kv[i].k + c + 1,
									    s.kv[i].len - c - 1,
									    s.kv[i].val),
							0);
					i++;
				}
				if (np %
				    2) { /* a part builder makes no whole image, and stays one */
					CU_ASSERT_EQUAL(pm_snap_builder_finish(b, NULL), PM_EINVAL);
					CU_ASSERT_EQUAL(
					    pm_snap_builder_join_finish(b, NULL, 0, true, 1, NULL),
					    PM_EINVAL);
				} else { /* it has keys */
					CU_ASSERT_EQUAL(pm_snap_builder_for_part(b), PM_EINVAL);
				}
				CU_ASSERT_EQUAL(pm_snap_builder_finish_part(b, &parts[np]), 0);
				pm_snap_builder_destroy(b);
				parts[np].nodes = pb[np].p;
				CU_ASSERT_EQUAL(parts[np].len, pb[np].len);
				big += parts[np].len > 65536; /* joined past the output buffer */
				np++;
			}
			memset(&joined, 0, sizeof(joined));
			CU_ASSERT_EQUAL_FATAL(
			    pm_snap_builder_create(NULL, NULL, buf_sink, &joined, &b), 0);
			CU_ASSERT_EQUAL(pm_snap_builder_join(b, s.n ? s.kv[0].k : NULL, c, has_val,
							     val, parts, np, &ilen),
					0);
			pm_snap_builder_destroy(b);
			CU_ASSERT(ilen == joined.len && joined.len == img.len &&
				  !memcmp(joined.p, img.p, img.len));
			/* the same join piece by piece: one part per call, then the root */
			free(joined.p);
			memset(&joined, 0, sizeof(joined));
			CU_ASSERT_EQUAL_FATAL(
			    pm_snap_builder_create(NULL, NULL, buf_sink, &joined, &b), 0);
			for (i = 0; i < np; i++)
				CU_ASSERT_EQUAL(pm_snap_builder_join_parts(b, &parts[i], 1), 0);
			if (np >= 2) /* bytes must increase across the calls too */
				CU_ASSERT_EQUAL(pm_snap_builder_join_parts(b, &parts[0], 1),
						PM_EINVAL);
			CU_ASSERT_EQUAL(pm_snap_builder_add(b, (const uint8_t *)"k", 1, 1),
					np ? PM_EINVAL : 0);
			if (np) {
				CU_ASSERT_EQUAL(pm_snap_builder_join_finish(b, s.kv[0].k, c,
									    has_val, val, &ilen),
						np == 1 && !has_val ? PM_EINVAL : 0);
				if (np > 1 || has_val)
					CU_ASSERT(ilen == joined.len && joined.len == img.len &&
						  !memcmp(joined.p, img.p, img.len));
			}
			pm_snap_builder_destroy(b);
			free(joined.p);
			memset(&joined, 0, sizeof(joined));
			/* a single part without the root's value means C was not the longest */
			if (np >= 1) {
				CU_ASSERT_EQUAL_FATAL(
				    pm_snap_builder_create(NULL, NULL, buf_sink, &joined, &b), 0);
				CU_ASSERT_EQUAL(
				    pm_snap_builder_join(b, s.kv[0].k, c, false, 0, parts, 1, NULL),
				    PM_EINVAL);
				pm_snap_builder_destroy(b);
			}
			for (i = 0; i < np; i++)
				free(pb[i].p);
			free(pb);
			free(parts);
			free(joined.p);
			free(img.p);
			set_free(&s);
		}
	}
	CU_ASSERT(big > 0);
}

/* Checks each key a union walk reports against the sorted set, the subtrie it was put in and
 * its value (then adds add to the value); stops the walk (with -77) at key number stop,
 * when stop is not 0. */
struct union_check {
	const struct set *s;
	const size_t *src; /* subtrie of each key of s */
	size_t at, bad, stop;
	uint64_t add;
};

static int union_visit(void *arg, size_t src, const uint8_t *key, size_t len, uint64_t *val)
{
	struct union_check *c = arg;
	const struct kv *e = c->at < c->s->n ? &c->s->kv[c->at] : NULL;

	if (!e || bytes_cmp(key, len, e->k, e->len) || src != c->src[c->at] || *val != e->val)
		c->bad++;
	*val += c->add;
	if (++c->at == c->stop)
		return -77;
	return 0;
}

/* Walks the union of m's subtries paths[0..n) into a new builder writing to *out, checked by
 * c (a fresh check from c->s and c->src, adding add to every value; NULL: no check), and
 * finishes the image when the walk succeeds. Returns the walk's code. */
static int union_image(const pm_map *m, const uint8_t *const *paths, const size_t *lens, size_t n,
		       struct union_check *c, uint64_t add, struct buf *out)
{
	pm_snap_builder *b;
	int rc;

	if (c) {
		c->at = c->bad = 0;
		c->add = add;
	}
	memset(out, 0, sizeof(*out));
	CU_ASSERT_EQUAL_FATAL(pm_snap_builder_create(NULL, NULL, buf_sink, out, &b), 0);
	rc = pm_snap_builder_add_union(b, m, paths, lens, n, c ? union_visit : NULL, c, NULL);
	if (!rc)
		CU_ASSERT_EQUAL(pm_snap_builder_finish(b, NULL), 0);
	pm_snap_builder_destroy(b);
	return rc;
}

/* A tick that records the key counts it is given and returns stop_code at call stop_at. */
struct tick_log {
	uint64_t keys[64];
	size_t n, stop_at;
	int stop_code;
};

static int tick_log(void *arg, uint64_t keys)
{
	struct tick_log *t = arg;

	if (t->n < 64)
		t->keys[t->n] = keys;
	if (++t->n == t->stop_at)
		return t->stop_code;
	return 0;
}

/* A new builder writing to *out (emptied), with tick_log on t (emptied; stop_code at call
 * stop_at, 0: never). */
static pm_snap_builder *tick_builder(struct tick_log *t, size_t stop_at, int stop_code,
				     struct buf *out)
{
	pm_snap_builder *b;

	memset(t, 0, sizeof(*t));
	t->stop_at = stop_at;
	t->stop_code = stop_code;
	memset(out, 0, sizeof(*out));
	CU_ASSERT_EQUAL_FATAL(pm_snap_builder_create(NULL, NULL, buf_sink, out, &b), 0);
	pm_snap_builder_set_tick(b, tick_log, t);
	return b;
}

/*
 * The builder's tick during a union walk: told as the walk begins (0 keys) and then at least
 * 65536 keys apart, never more than about 65536 + one node's keys late; the image is the
 * same with it; its code stops the walk; refused at the start, the builder stays usable.
 */
static void test_union_tick(void)
{
	static const uint8_t pb[4] = {1, 2, 3, 4};
	const uint8_t *paths[4] = {pb, pb + 1, pb + 2, pb + 3};
	const size_t lens[4] = {1, 1, 1, 1}, n = 300000;
	struct buf plain, ticked;
	struct tick_log t;
	pm_snap_builder *b;
	uint8_t key[13];
	size_t i;
	pm_map *m;

	CU_ASSERT_EQUAL_FATAL(pm_map_create(&m, NULL, NULL), 0);
	for (i = 0; i < n; i++) {
		size_t k;

		key[0] = (uint8_t)(1 + i % 4);
		for (k = 1; k < sizeof(key); k++)
			key[k] = (uint8_t)rnd();
		CU_ASSERT_FATAL(pm_map_set(m, key, sizeof(key), i, NULL) >= 0);
	}
	CU_ASSERT_EQUAL_FATAL(union_image(m, paths, lens, 4, NULL, 0, &plain), 0);
	/* told all along, same image */
	b = tick_builder(&t, 0, 0, &ticked);
	CU_ASSERT_EQUAL(pm_snap_builder_add_union(b, m, paths, lens, 4, NULL, NULL, NULL), 0);
	CU_ASSERT_EQUAL(pm_snap_builder_finish(b, NULL), 0);
	pm_snap_builder_destroy(b);
	CU_ASSERT(ticked.len == plain.len && !memcmp(ticked.p, plain.p, plain.len));
	CU_ASSERT_EQUAL(t.n, 1 + pm_map_count(m) / 65536);
	CU_ASSERT_EQUAL(t.keys[0], 0);
	for (i = 1; i < t.n && i < 64; i++)
		CU_ASSERT(t.keys[i] >= 65536 * i && t.keys[i] < 65536 * i + 300);
	free(ticked.p);
	/* its code stops the walk */
	b = tick_builder(&t, 3, -78, &ticked);
	CU_ASSERT_EQUAL(pm_snap_builder_add_union(b, m, paths, lens, 4, NULL, NULL, NULL), -78);
	CU_ASSERT_EQUAL(t.n, 3);
	pm_snap_builder_destroy(b);
	free(ticked.p);
	/* refused at the start: nothing written, the builder takes the walk again */
	b = tick_builder(&t, 1, -79, &ticked);
	CU_ASSERT_EQUAL(pm_snap_builder_add_union(b, m, paths, lens, 4, NULL, NULL, NULL), -79);
	pm_snap_builder_set_tick(b, NULL, NULL);
	CU_ASSERT_EQUAL(pm_snap_builder_add_union(b, m, paths, lens, 4, NULL, NULL, NULL), 0);
	CU_ASSERT_EQUAL(pm_snap_builder_finish(b, NULL), 0);
	pm_snap_builder_destroy(b);
	CU_ASSERT(ticked.len == plain.len && !memcmp(ticked.p, plain.p, plain.len));
	free(ticked.p);
	free(plain.p);
	pm_map_destroy(m);
}

/*
 * pm_snap_builder_add_union against the builder fed key by key: random key sets spread over
 * up to 5 subtries of one map (under prefix-free paths of 1-3 bytes, plus a path with no
 * key under it and a key outside every path), or the whole map as one subtrie (the empty
 * path); a key in two subtries is refused.
 */
static void test_union(void)
{
	static const uint8_t pathbytes[6][3] = {{7, 1, 0}, {7, 2, 0}, {9, 0, 0},
						{7, 3, 5}, {7, 3, 6}, {8, 0, 0}};
	static const size_t pathlens[6] = {2, 2, 1, 3, 3, 1}; /* path 5 stays empty */
	int shape, round;

	for (round = 0; round < 40; round++) {
		for (shape = -1; shape < 4; shape++) {
			const uint8_t *paths[6];
			struct set s;
			struct buf img, un;
			pm_snap_builder *b;
			pm_map *m;
			size_t n = round < 3 ? (size_t)round : (size_t)(rnd() % 3000), i, k;
			size_t np = round == 0 ? 1 : 1 + (size_t)(rnd() % 5);
			uint64_t kb = 0, ilen = 0, want_kb = 0;
			bool whole = round % 7 == 3; /* one subtrie: the empty path */
			size_t lens[6], *srcof;
			struct union_check uc;
			uint8_t key[160];

			set_make(&s, n, shape);
			CU_ASSERT_EQUAL_FATAL(build(&s, &img), 0);
			CU_ASSERT_EQUAL_FATAL(pm_map_create(&m, NULL, NULL), 0);
			for (k = 0; k < 6; k++)
				paths[k] = pathbytes[k];
			if (whole)
				np = 1;
			for (k = 0; k < 6; k++)
				lens[k] = whole ? 0 : pathlens[k];
			srcof = calloc(s.n + 1, sizeof(*srcof));
			for (i = 0; i < s.n; i++) {
				size_t j = (size_t)(rnd() % np), pl = lens[j];

				srcof[i] = j;
				memcpy(key, paths[j], pl);
				memcpy(key + pl, s.kv[i].k, s.kv[i].len);
				CU_ASSERT_EQUAL_FATAL(
				    pm_map_set(m, key, pl + s.kv[i].len, s.kv[i].val, NULL), 1);
				want_kb += s.kv[i].len;
			}
			if (!whole) /* a key outside every path */
				CU_ASSERT_EQUAL_FATAL(
				    pm_map_set(m, (const uint8_t *)"\x07\x09zz", 4, 5, NULL), 1);
			{
				memset(&un, 0, sizeof(un));
				CU_ASSERT_EQUAL_FATAL(
				    pm_snap_builder_create(NULL, NULL, buf_sink, &un, &b), 0);
				/* every path, the empty one (5) included, once */
				memset(&uc, 0, sizeof(uc));
				uc.s = &s;
				uc.src = srcof;
				CU_ASSERT_EQUAL(pm_snap_builder_add_union(b, m, paths, lens,
									  whole ? 1 : 6,
									  union_visit, &uc, &kb),
						0);
				CU_ASSERT(uc.at == s.n && uc.bad == 0);
				CU_ASSERT_EQUAL(kb, want_kb);
				CU_ASSERT_EQUAL(pm_snap_builder_count(b), s.n);
				if (s.n) /* done: no key can follow */
					CU_ASSERT_EQUAL(
					    pm_snap_builder_add(b, (const uint8_t *)"q", 1, 1),
					    PM_EINVAL);
				CU_ASSERT_EQUAL(pm_snap_builder_finish(b, &ilen), 0);
				pm_snap_builder_destroy(b);
				CU_ASSERT(ilen == img.len && un.len == img.len &&
					  !memcmp(un.p, img.p, img.len));
				free(un.p);
				/* the callback rewrites values: the image of the set with v + 3 */
				if (s.n) {
					struct buf img3;

					CU_ASSERT_EQUAL(
					    union_image(m, paths, lens, whole ? 1 : 6, &uc, 3, &un),
					    0);
					for (i = 0; i < s.n; i++)
						s.kv[i].val += 3;
					CU_ASSERT_EQUAL_FATAL(build(&s, &img3), 0);
					for (i = 0; i < s.n; i++)
						s.kv[i].val -= 3;
					CU_ASSERT(uc.bad == 0 && un.len == img3.len &&
						  !memcmp(un.p, img3.p, img3.len));
					free(img3.p);
					free(un.p);
				}
				/* the check stops the walk with its own code */
				if (s.n > 1) {
					uc.stop = 1 + (size_t)(rnd() % s.n);
					CU_ASSERT_EQUAL(
					    union_image(m, paths, lens, whole ? 1 : 6, &uc, 0, &un),
					    -77);
					CU_ASSERT_EQUAL(uc.at, uc.stop);
					uc.stop = 0;
					free(un.p);
				}
				/* a key in two subtries: refused */
				if (s.n && np > 1) {
					for (k = 0; k < 2; k++) {
						memcpy(key, paths[k], pathlens[k]);
						memcpy(key + pathlens[k], s.kv[0].k, s.kv[0].len);
						CU_ASSERT_FATAL(
						    pm_map_set(m, key, pathlens[k] + s.kv[0].len, k,
							       NULL) >= 0);
					}
					CU_ASSERT_EQUAL(
					    union_image(m, paths, lens, 2, NULL, 0, &un),
					    PM_EINVAL);
					free(un.p);
				}
			}
			free(srcof);
			pm_map_destroy(m);
			free(img.p);
			set_free(&s);
		}
	}
}

static void test_order_refused(void)
{
	pm_snap_builder *b;
	struct buf img;

	memset(&img, 0, sizeof(img));
	CU_ASSERT_EQUAL_FATAL(pm_snap_builder_create(NULL, NULL, buf_sink, &img, &b), 0);
	CU_ASSERT_EQUAL(pm_snap_builder_add(b, (const uint8_t *)"b", 1, 1), 0);
	CU_ASSERT_EQUAL(pm_snap_builder_add(b, (const uint8_t *)"a", 1, 1), PM_SNAP_EORDER);
	CU_ASSERT_EQUAL(pm_snap_builder_add(b, (const uint8_t *)"b", 1, 1), PM_SNAP_EORDER);
	CU_ASSERT_EQUAL(pm_snap_builder_add(b, NULL, 0, 1), PM_SNAP_EORDER);
	CU_ASSERT_EQUAL(pm_snap_builder_add(b, (const uint8_t *)"ba", 2, 1), 0);
	CU_ASSERT_EQUAL(pm_snap_builder_finish(b, NULL), 0);
	pm_snap_builder_destroy(b);
	free(img.p);
}

/* Flips every byte (or a sample of them in large images), truncates, extends: every reader
 * must either refuse or answer without touching memory outside the image (ASan checks). */
static void test_damage(void)
{
	struct set s;
	struct buf img;
	size_t i, step;

	set_make(&s, 400, -1);
	CU_ASSERT_EQUAL_FATAL(build(&s, &img), 0);
	step = img.len > 4000 ? img.len / 4000 : 1;
	for (i = 0; i < img.len; i += step) {
		uint8_t *copy = malloc(img.len);
		pm_snap sn;
		int rc;

		memcpy(copy, img.p, img.len);
		copy[i] ^= (uint8_t)(1u << (rnd() % 8));
		rc = pm_snap_open(&sn, copy, img.len, 0);
		if (rc == 0) {
			pm_snap_iter *it;
			const uint8_t *k;
			size_t len, j;
			uint64_t v;

			/* The full check must notice every flip. */
			CU_ASSERT_NOT_EQUAL(pm_snap_verify(&sn, false, NULL, NULL, NULL, NULL, 0),
					    0);
			/* Readers must stay in bounds whatever they answer. */
			if (pm_snap_iter_create(&sn, NULL, NULL, &it) == 0) {
				while (pm_snap_iter_next(it, &k, &len, &v) == 1)
					;
				if (pm_snap_iter_seek(it, NULL, 0, NULL, 0) == 0) {
					struct run_check r = {&s, 0, 0, 0, 0, NULL, 0};

					(void)pm_snap_iter_run(it, run_visit, &r);
				}
				pm_snap_iter_destroy(it);
			}
			for (j = 0; j < s.n; j += 7)
				(void)pm_snap_get(&sn, s.kv[j].k, s.kv[j].len, &v);
			(void)pm_snap_count_prefix(&sn, (const uint8_t *)"a", 1, &v);
		} else {
			CU_ASSERT(rc == PM_SNAP_ECHECKSUM || rc == PM_SNAP_EFOREIGN ||
				  rc == PM_SNAP_EVERSION || rc == PM_SNAP_ECORRUPT ||
				  rc == PM_SNAP_ETRUNC);
		}
		free(copy);
	}
	for (i = 0; i < img.len; i += step) {
		uint8_t *copy = malloc(i ? i : 1);
		pm_snap sn;

		memcpy(copy, img.p, i);
		CU_ASSERT_NOT_EQUAL(pm_snap_open(&sn, copy, i, 0), 0);
		free(copy);
	}
	{
		uint8_t *copy = calloc(1, img.len + 8);
		pm_snap sn;

		memcpy(copy, img.p, img.len);
		CU_ASSERT_NOT_EQUAL(pm_snap_open(&sn, copy, img.len + 8, 0), 0);
		free(copy);
	}
	free(img.p);
	set_free(&s);
}

/* Canonical bytes: maps with the same content, whatever their history. */
static void test_canonical_maps(void)
{
	struct set s;
	struct buf a, b, c, d;
	pm_map *m1, *m2, *h1, *h2, *j, *cl;
	size_t i, *perm;
	int sink_rc = 0;

	set_make(&s, 5000, -1);
	perm = malloc(s.n * sizeof(*perm));
	for (i = 0; i < s.n; i++)
		perm[i] = i;
	for (i = s.n; i > 1; i--) {
		size_t r = rnd() % i, t = perm[i - 1];

		perm[i - 1] = perm[r];
		perm[r] = t;
	}
	CU_ASSERT_EQUAL_FATAL(pm_map_create(&m1, NULL, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(pm_map_create(&m2, NULL, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(pm_map_create(&h1, NULL, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(pm_map_create(&h2, NULL, NULL), 0);
	for (i = 0; i < s.n; i++) {
		const struct kv *e = &s.kv[i], *f = &s.kv[perm[i]];

		CU_ASSERT(pm_map_set(m1, e->k, e->len, e->val, NULL) >= 0);
		CU_ASSERT(pm_map_set(m2, f->k, f->len, f->val ^ 1, NULL) >= 0);
		CU_ASSERT(pm_map_set(perm[i] % 2 ? h1 : h2, f->k, f->len, f->val, NULL) >= 0);
	}
	/* m2 had wrong values first; fix them in yet another order, plus removes/re-adds. */
	for (i = s.n; i-- > 0;) {
		const struct kv *e = &s.kv[perm[i]];

		if (i % 3 == 0)
			CU_ASSERT_EQUAL(pm_map_remove(m2, e->k, e->len, NULL), 0);
		CU_ASSERT(pm_map_set(m2, e->k, e->len, e->val, NULL) >= 0);
	}
	CU_ASSERT_EQUAL_FATAL(pm_map_join(h1, h2, NULL, NULL, &j), 0);
	CU_ASSERT_EQUAL_FATAL(pm_map_clone(m1, &cl), 0);
	CU_ASSERT(pm_map_set(cl, (const uint8_t *)"zz-extra", 8, 7, NULL) >= 0);
	CU_ASSERT_EQUAL(pm_map_remove(cl, (const uint8_t *)"zz-extra", 8, NULL), 0);
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	memset(&c, 0, sizeof(c));
	memset(&d, 0, sizeof(d));
	CU_ASSERT_EQUAL(pm_snap_write_map(m1, buf_sink, &a, NULL, &sink_rc), 0);
	CU_ASSERT_EQUAL(pm_snap_write_map(m2, buf_sink, &b, NULL, &sink_rc), 0);
	CU_ASSERT_EQUAL(pm_snap_write_map(j, buf_sink, &c, NULL, &sink_rc), 0);
	CU_ASSERT_EQUAL(pm_snap_write_map(cl, buf_sink, &d, NULL, &sink_rc), 0);
	CU_ASSERT_EQUAL(a.len, b.len);
	CU_ASSERT_EQUAL(a.len, c.len);
	CU_ASSERT_EQUAL(a.len, d.len);
	CU_ASSERT(a.len == b.len && !memcmp(a.p, b.p, a.len));
	CU_ASSERT(a.len == c.len && !memcmp(a.p, c.p, a.len));
	CU_ASSERT(a.len == d.len && !memcmp(a.p, d.p, a.len));
	check_image(&s, &a);
	/* the map's image is the builder's on the same keys */
	{
		struct buf ref;

		CU_ASSERT_EQUAL_FATAL(build(&s, &ref), 0);
		CU_ASSERT(a.len == ref.len && !memcmp(a.p, ref.p, a.len));
		free(ref.p);
	}
	/* Load back: the map equals the original. */
	{
		pm_snap sn;
		pm_map *l;

		CU_ASSERT_EQUAL_FATAL(pm_snap_open(&sn, a.p, a.len, 0), 0);
		CU_ASSERT_EQUAL_FATAL(pm_map_create(&l, NULL, NULL), 0);
		CU_ASSERT_EQUAL(pm_snap_load(&sn, l), 0);
		CU_ASSERT(pm_map_equal(l, m1));
		pm_map_destroy(l);
	}
	/* A failing sink is reported with its own code. */
	{
		struct buf e;

		memset(&e, 0, sizeof(e));
		e.fail = a.len / 2;
		sink_rc = 0;
		CU_ASSERT_EQUAL(pm_snap_write_map(m1, buf_sink, &e, NULL, &sink_rc), PM_SNAP_ESINK);
		CU_ASSERT_EQUAL(sink_rc, -28);
		free(e.p);
	}
	pm_map_destroy(m1);
	pm_map_destroy(m2);
	pm_map_destroy(h1);
	pm_map_destroy(h2);
	pm_map_destroy(j);
	pm_map_destroy(cl);
	free(a.p);
	free(b.p);
	free(c.p);
	free(d.p);
	free(perm);
	set_free(&s);
}

/* Allocation failures: a failing hook at every allocation index of a build, an iteration and
 * a verify; each call fails cleanly (no leak under ASan) and injection really happened. */
struct failing {
	long left;     /* allocations before the first failure (-1: never fail) */
	long injected; /* failures returned */
};

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct failing *f = ud;

	(void)osize;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	if (f->left == 0) {
		f->injected++;
		return NULL;
	}
	if (f->left > 0)
		f->left--;
	return realloc(ptr, nsize);
}

static void test_alloc_failures(void)
{
	struct set s;
	struct buf img;
	struct failing f;
	long k;
	int ok = 0;

	set_make(&s, 300, -1);
	for (k = 0; !ok && k < 1000; k++) {
		pm_snap_builder *b = NULL;
		size_t i;
		int rc;

		memset(&img, 0, sizeof(img));
		f.left = k;
		f.injected = 0;
		rc = pm_snap_builder_create(failing_alloc, &f, buf_sink, &img, &b);
		for (i = 0; !rc && i < s.n; i++)
			rc = pm_snap_builder_add(b, s.kv[i].k, s.kv[i].len, s.kv[i].val);
		if (!rc)
			rc = pm_snap_builder_finish(b, NULL);
		pm_snap_builder_destroy(b);
		if (rc) {
			CU_ASSERT(rc == PM_ENOMEM);
			CU_ASSERT(f.injected > 0);
		} else {
			ok = 1;
			check_image(&s, &img);
		}
		free(img.p);
	}
	CU_ASSERT(ok);
	CU_ASSERT_EQUAL_FATAL(build(&s, &img), 0);
	for (k = 0, ok = 0; !ok && k < 100; k++) {
		pm_snap sn;
		pm_snap_iter *it = NULL;
		const uint8_t *key;
		size_t len;
		uint64_t v, n = 0;
		int rc;

		f.left = k;
		f.injected = 0;
		CU_ASSERT_EQUAL_FATAL(pm_snap_open(&sn, img.p, img.len, 0), 0);
		rc = pm_snap_iter_create(&sn, failing_alloc, &f, &it);
		if (!rc) {
			while ((rc = pm_snap_iter_next(it, &key, &len, &v)) == 1)
				n++;
		}
		pm_snap_iter_destroy(it);
		if (!rc)
			rc = pm_snap_verify(&sn, false, failing_alloc, &f, NULL, NULL, 0);
		if (rc) {
			CU_ASSERT(rc == PM_ENOMEM && f.injected > 0);
		} else {
			ok = n == s.n;
		}
	}
	CU_ASSERT(ok);
	free(img.p);
	set_free(&s);
}

int main(void)
{
	CU_pSuite su;
	const char *e = getenv("PM_TEST_SEED");
	unsigned fails;

	if (e)
		seed = strtoull(e, NULL, 0);
	rng_state = seed;
	printf("test_kb_snap: seed %llu (set PM_TEST_SEED to replay)\n", (unsigned long long)seed);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	su = CU_add_suite("pm_snap", NULL, NULL);
	CU_add_test(su, "build/open/get/count/seek against an oracle", test_roundtrip);
	CU_add_test(su, "builder refuses keys out of order", test_order_refused);
	CU_add_test(su, "images built in parts equal one builder's", test_parts);
	CU_add_test(su, "union of subtries equals the builder fed key by key", test_union);
	CU_add_test(su, "the builder's tick during a union walk", test_union_tick);
	CU_add_test(su, "damaged images refused or read in bounds", test_damage);
	CU_add_test(su, "same content, same bytes (orders, clones, joins)", test_canonical_maps);
	CU_add_test(su, "allocation failures", test_alloc_failures);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures();
	if (fails)
		printf("test_kb_snap: FAILED with seed %llu\n", (unsigned long long)seed);
	CU_cleanup_registry();
	return fails != 0;
}
