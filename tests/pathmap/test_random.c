/*
 * test_random.c - randomized differential test: a million mixed operations on a few maps
 * (set, set many, get many, remove, clone, zipper moves, graft, take, join, meet, subtract,
 * restrict, zipper algebra), each compared with the sorted-array model, pm_map_check() after
 * every change.
 *
 * PM_TEST_SEED and PM_TEST_OPS override the seed and the operation count; the seed is
 * printed, and a failure names the operation number to replay.
 */
#include <CUnit/Basic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "pathmap.h"

#define NMAPS 4
#define MAX_KEYS 300

static uint64_t rng_state;
static uint64_t op_no;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static unsigned below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

/* Keys from a small alphabet so that they share prefixes, with NUL and 0xff, sometimes long. */
static size_t rand_key(uint8_t *k, size_t max)
{
	static const uint8_t alpha[] = {0x00, 0x01, 'a', 'b', 'c', 0x7f, 0xfe, 0xff};
	size_t len = below(7), i;

	if (below(50) == 0)
		len = 20 + below(60);
	if (len > max)
		len = max;
	for (i = 0; i < len; i++)
		k[i] = below(16) ? alpha[below(4) + (i & 1) * below(5)] : (uint8_t)rnd();
	return len;
}

struct slot {
	pm_map *m;	/* map under test */
	struct model r; /* its reference */
};

static struct slot S[NMAPS];
static int failures_reported;

/* Evaluates cond once (it may have side effects), records it, reports the first failures. */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		bool ok_ = (cond);                                                                 \
		CU_assertImplementation(ok_, __LINE__, #cond, __FILE__, "", CU_FALSE);             \
		if (!ok_ && failures_reported++ < 5)                                               \
			fprintf(stderr, "seed %" PRIu64 " op %" PRIu64 ": %s (line %d)\n", seed0,  \
				op_no, #cond, __LINE__);                                           \
	} while (0)

static uint64_t seed0;

static uint64_t tags_seen;   /* value tags met by check_map (the run must make some) */
static uint64_t packed_seen; /* packed leaves met by check_map (likewise) */

static void check_map(int i)
{
	char msg[256] = "";
	int rc = pm_map_check(S[i].m, msg, sizeof(msg));
	pm_stats st;

	if (op_no % 64 == 0) {
		pm_map_stats(S[i].m, &st);
		tags_seen += st.value_tags;
		packed_seen += st.packed_leaves;
	}

	if (rc)
		fprintf(stderr, "seed %" PRIu64 " op %" PRIu64 ": map %d: %s\n", seed0, op_no, i,
			msg);
	CHECK(rc == 0);
}

static void replace(int i, pm_map *m, struct model *r)
{
	pm_map_destroy(S[i].m);
	model_free(&S[i].r);
	S[i].m = m;
	S[i].r = *r;
}

/* Expected exists / children / count at a path, from the model. */
static void expect_at(const struct model *r, const uint8_t *p, size_t len, bool *exists,
		      unsigned *nchild, uint8_t *bytes, size_t *count)
{
	size_t i = model_lower(r, p, len);
	int last = -1;

	*exists = false;
	*nchild = 0;
	*count = 0;
	for (; i < r->n && r->e[i].len >= len && !memcmp(r->e[i].key, p, len); i++) {
		*exists = true;
		(*count)++;
		if (r->e[i].len > len && (int)r->e[i].key[len] != last) {
			last = r->e[i].key[len];
			bytes[(*nchild)++] = (uint8_t)last;
		}
	}
}

static void zipper_walk(int i)
{
	struct model *r = &S[i].r;
	pm_rz *z;
	uint8_t bytes[256], want[256];
	unsigned steps = 1 + below(12), s, nc;
	bool ex;
	size_t cnt, len, idx;
	const uint8_t *p;
	uint64_t v, mv;

	if (pm_rz_create(S[i].m, &z))
		return;
	for (s = 0; s < steps; s++) {
		unsigned what = below(10);

		if (what < 4) {
			nc = pm_rz_child_bytes(z, bytes);
			pm_rz_descend_byte(z, nc && below(4) ? bytes[below(nc)] : (uint8_t)rnd());
		} else if (what < 5) {
			pm_rz_ascend(z, below(3));
		} else if (what < 6) {
			uint8_t k[8];

			pm_rz_reset(z);
			pm_rz_descend(z, k, rand_key(k, sizeof(k)));
		} else if (what < 8) {
			int rc;

			p = pm_rz_path(z, &len);
			idx = model_lower(r, p, len);
			if (idx < r->n && !model_cmp(r->e[idx].key, r->e[idx].len, p, len))
				idx++;
			rc = pm_rz_next_value(z);
			CHECK(rc == (idx < r->n));
			if (rc == 1) {
				p = pm_rz_path(z, &len);
				CHECK(!model_cmp(r->e[idx].key, r->e[idx].len, p, len));
			}
		} else if (what < 9) {
			int rc;

			p = pm_rz_path(z, &len);
			idx = model_lower(r, p, len);
			rc = pm_rz_prev_value(z);
			CHECK(rc == (idx > 0));
			if (rc == 1) {
				p = pm_rz_path(z, &len);
				CHECK(!model_cmp(r->e[idx - 1].key, r->e[idx - 1].len, p, len));
			}
		} else {
			uint8_t k[8];
			size_t kl = rand_key(k, sizeof(k));
			int rc = pm_rz_seek(z, k, kl);

			idx = model_lower(r, k, kl);
			CHECK(rc == (idx < r->n));
			if (rc == 1) {
				p = pm_rz_path(z, &len);
				CHECK(!model_cmp(r->e[idx].key, r->e[idx].len, p, len));
			}
		}
		p = pm_rz_path(z, &len);
		expect_at(r, p, len, &ex, &nc, want, &cnt);
		CHECK(pm_rz_exists(z) == ex);
		CHECK(pm_rz_child_bytes(z, bytes) == nc);
		CHECK(!memcmp(bytes, want, nc));
		CHECK(pm_rz_count(z) == cnt);
		CHECK(pm_rz_value(z, &v) == model_get(r, p, len, &mv));
		if (model_get(r, p, len, &mv) && pm_rz_value(z, &v))
			CHECK(v == mv);
	}
	pm_rz_destroy(z);
}

static int sum_rule(uint64_t a, uint64_t b, uint64_t *out, void *arg)
{
	(void)arg;
	*out = a + b;
	return 0;
}

static int rule_sum(bool exists, uint64_t old, uint64_t *val, void *arg)
{
	*val = (exists ? old : 0) + *(const uint64_t *)arg;
	return PM_UPDATE_STORE;
}

static int rule_first(bool exists, uint64_t old, uint64_t *val, void *arg)
{
	(void)old;
	if (exists)
		return PM_UPDATE_KEEP;
	*val = *(const uint64_t *)arg;
	return PM_UPDATE_STORE;
}

/* What foreach_walk saw: it compares each visit with the model as it goes. */
struct fe_check {
	const struct model *r; /* the reference */
	size_t next;	       /* model index the next visit must equal */
	size_t stop;	       /* visits after which the callback stops the walk (0: never) */
	size_t seen;	       /* visits so far */
	bool bad;	       /* a visit differed from the model */
};

static int fe_fn(const uint8_t *key, size_t len, uint64_t val, void *arg)
{
	struct fe_check *c = arg;
	const struct mentry *e = c->next < c->r->n ? &c->r->e[c->next] : NULL;

	if (!e || model_cmp(key, len, e->key, e->len) != 0 || val != e->val)
		c->bad = true;
	c->next++;
	c->seen++;
	return c->stop && c->seen == c->stop ? 7 : 0;
}

/*
 * pm_map_foreach with a random prefix and start key, against the model: the visits must be
 * exactly the model's keys that start with the prefix and are >= from, in order; a callback
 * that stops the walk stops it at once.
 */
static void foreach_walk(int i)
{
	const struct model *r = &S[i].r;
	uint8_t pre[96], from[104];
	size_t pl = 0, fl = 0, k, want = 0;
	bool use_from = below(2);
	struct fe_check c = {r, 0, 0, 0, false};
	int rc;

	if (r->n && below(2)) {
		/* a prefix of a key the map holds, so that the walk has something to do */
		const struct mentry *e = &r->e[below((unsigned)r->n)];

		pl = below((unsigned)(e->len < sizeof(pre) ? e->len : sizeof(pre)) + 1);
		memcpy(pre, e->key, pl);
	} else {
		pl = rand_key(pre, 3);
	}
	if (use_from) {
		if (r->n && below(2)) {
			const struct mentry *e = &r->e[below((unsigned)r->n)];

			fl = e->len < sizeof(from) ? e->len : sizeof(from);
			memcpy(from, e->key, fl);
			if (below(2) && fl)
				from[fl - 1] ^= (uint8_t)(1 + below(255));
		} else {
			memcpy(from, pre, pl);
			fl = pl + rand_key(from + pl, 6);
		}
	}
	/* the model's answer: from index `first`, the run of keys with the prefix and >= from */
	k = use_from ? model_lower(r, from, fl) : 0;
	while (k < r->n && (r->e[k].len < pl || memcmp(r->e[k].key, pre, pl) != 0) &&
	       model_cmp(r->e[k].key, r->e[k].len, pre, pl) < 0)
		k++;
	c.next = k;
	while (k + want < r->n && r->e[k + want].len >= pl &&
	       memcmp(r->e[k + want].key, pre, pl) == 0)
		want++;
	if (want && below(4) == 0)
		c.stop = 1 + below((unsigned)want);
	rc = pm_map_foreach(S[i].m, pl ? pre : NULL, pl, use_from ? from : NULL, fl, fe_fn, &c);
	CHECK(!c.bad);
	CHECK(rc == (c.stop ? 7 : 0));
	CHECK(c.seen == (c.stop ? c.stop : want));
}

static void one_op(void)
{
	int i = (int)below(NMAPS), j = (int)below(NMAPS), k = (int)below(NMAPS);
	unsigned what = below(100);
	uint8_t key[96];
	size_t len = rand_key(key, sizeof(key));
	/* small values half the time: leaves then fit value tags, with prefixes of 0 to 2 bytes,
	 * or packed leaves, with 3 to 7; now and then one at the edge of what a packed leaf
	 * holds (2^24 to 2^56, or one less) */
	uint64_t v = below(2) ? rnd() : rnd() % 100000, old = 0, mold = 0, got;
	struct model nr;
	pm_map *nm = NULL;
	int rc, mrc;

	if (below(8) == 0)
		v = (UINT64_C(1) << (8 * (3 + below(5)))) - below(2);
	if (what < 10) {
		/* update rules: sum into the old value, or first value wins */
		bool sum = below(2), present = model_get(&S[i].r, key, len, &mold);
		uint64_t want = present ? (sum ? mold + v : mold) : v;

		rc = pm_map_update(S[i].m, key, len, sum ? rule_sum : rule_first, &v);
		CHECK(rc == (present ? 0 : 1));
		model_set(&S[i].r, key, len, want, NULL);
		CHECK(pm_map_get(S[i].m, key, len, &got) && got == want);
	} else if (what < 33 && below(3) == 0) {
		/* a few keys at once, unsorted, some of them equal */
		uint8_t kb[8][96];
		pm_kv kv[8];
		size_t nk = 1 + below(8), q, added = 0, was = S[i].r.n;

		for (q = 0; q < nk; q++) {
			if (q && below(4) == 0)
				kv[q] = kv[below((unsigned)q)];
			else
				kv[q] = (pm_kv){kb[q], rand_key(kb[q], sizeof(kb[q])), 0};
			kv[q].val = below(2) ? rnd() : rnd() % 100000;
			model_set(&S[i].r, kv[q].key, kv[q].len, kv[q].val, NULL);
		}
		CHECK(pm_map_set_many(S[i].m, kv, nk, &added) == 0);
		CHECK(added == S[i].r.n - was);
	} else if (what < 35) {
		rc = pm_map_set(S[i].m, key, len, v, &old);
		mrc = model_set(&S[i].r, key, len, v, &mold);
		CHECK(rc == mrc);
		if (rc == 0)
			CHECK(old == mold);
	} else if (what < 50) {
		bool present = model_remove(&S[i].r, key, len, &mold);

		rc = pm_map_remove(S[i].m, key, len, &old);
		CHECK(rc == (present ? 0 : PM_ENOTFOUND));
		if (present && rc == 0)
			CHECK(old == mold);
	} else if (what < 52) {
		/* lookups in a batch: keys of the map and others */
		uint8_t kb[24][96];
		pm_kv kv[24];
		bool found[24];
		size_t nk = 1 + below(24), q, nfound = 0, nget;

		for (q = 0; q < nk; q++) {
			if (S[i].r.n && below(2)) {
				const struct mentry *e = &S[i].r.e[below((unsigned)S[i].r.n)];

				kv[q] = (pm_kv){e->key, e->len, 0};
			} else {
				kv[q] = (pm_kv){kb[q], rand_key(kb[q], sizeof(kb[q])), 0};
			}
			kv[q].val = UINT64_MAX - q;
		}
		nget = pm_map_get_many(S[i].m, kv, nk, found);
		for (q = 0; q < nk; q++) {
			bool present = model_get(&S[i].r, kv[q].key, kv[q].len, &mold);

			CHECK(found[q] == present);
			CHECK(kv[q].val == (present ? mold : UINT64_MAX - q));
			nfound += present;
		}
		CHECK(nget == nfound);
		CHECK(pm_map_get_many(S[i].m, kv, nk, NULL) == nfound);
		return;
	} else if (what < 58) {
		bool present = model_get(&S[i].r, key, len, &mold);

		CHECK(pm_map_get(S[i].m, key, len, &got) == present);
		if (present)
			CHECK(got == mold);
		CHECK(pm_map_count_prefix(S[i].m, key, len) ==
		      model_count_prefix(&S[i].r, key, len));
		return;
	} else if (what < 60) {
		if (i == j)
			return;
		CHECK(pm_map_clone(S[i].m, &nm) == 0);
		model_copy(&nr, &S[i].r);
		replace(j, nm, &nr);
		i = j;
	} else if (what < 68) {
		zipper_walk(i);
		return;
	} else if (what < 72) {
		pm_wz *w;

		if (pm_wz_create(S[i].m, key, len, &w))
			return;
		CHECK(pm_wz_graft(w, S[j].m) == 0);
		model_copy(&nr, &S[j].r);
		model_graft(&S[i].r, key, len, &nr);
		CHECK(pm_wz_count(w) == nr.n);
		model_free(&nr);
		pm_wz_destroy(w);
		check_map(j);
	} else if (what < 76) {
		pm_wz *w;

		if (i == j || pm_wz_create(S[i].m, key, len, &w))
			return;
		CHECK(pm_wz_take(w, &nm) == 0);
		pm_wz_destroy(w);
		model_take(&S[i].r, key, len, &nr);
		replace(j, nm, &nr);
		check_map(j);
	} else if (what < 86) {
		unsigned op = below(5);

		if (op == 0)
			rc = pm_map_join(S[i].m, S[j].m, NULL, NULL, &nm);
		else if (op == 1)
			rc = pm_map_join(S[i].m, S[j].m, sum_rule, NULL, &nm);
		else if (op == 2)
			rc = pm_map_meet(S[i].m, S[j].m, &nm);
		else if (op == 3)
			rc = pm_map_subtract(S[i].m, S[j].m, &nm);
		else
			rc = pm_map_restrict(S[i].m, S[j].m, &nm);
		CHECK(rc == 0);
		if (rc)
			return;
		if (op <= 1)
			model_join(&nr, &S[i].r, &S[j].r, op == 1);
		else if (op == 2)
			model_meet(&nr, &S[i].r, &S[j].r);
		else if (op == 3)
			model_subtract(&nr, &S[i].r, &S[j].r);
		else
			model_restrict(&nr, &S[i].r, &S[j].r);
		check_map(i);
		check_map(j);
		CHECK(model_matches(&S[i].r, S[i].m));
		CHECK(model_matches(&S[j].r, S[j].m));
		replace(k, nm, &nr);
		i = k;
	} else if (what < 92) {
		pm_wz *w;
		struct model sub, res;
		unsigned op = below(3);

		if (i == j || pm_wz_create(S[i].m, key, len, &w))
			return;
		if (op == 0)
			rc = pm_wz_join(w, S[j].m, sum_rule, NULL);
		else if (op == 1)
			rc = pm_wz_meet(w, S[j].m);
		else
			rc = pm_wz_subtract(w, S[j].m);
		CHECK(rc == 0);
		pm_wz_destroy(w);
		model_take(&S[i].r, key, len, &sub);
		if (op == 0)
			model_join(&res, &sub, &S[j].r, 1);
		else if (op == 1)
			model_meet(&res, &sub, &S[j].r);
		else
			model_subtract(&res, &sub, &S[j].r);
		model_graft(&S[i].r, key, len, &res);
		model_free(&sub);
		model_free(&res);
	} else {
		pm_wz *w;
		uint8_t suf[8];
		size_t sl = rand_key(suf, sizeof(suf));
		uint8_t full[104];
		bool present;

		if (pm_wz_create(S[i].m, key, len, &w))
			return;
		memcpy(full, key, len);
		memcpy(full + len, suf, sl);
		if (below(2)) {
			rc = pm_wz_set_at(w, suf, sl, v, NULL);
			CHECK(rc == model_set(&S[i].r, full, len + sl, v, NULL));
		} else {
			pm_wz_descend(w, suf, sl);
			present = model_remove(&S[i].r, full, len + sl, NULL);
			CHECK(pm_wz_remove_value(w, NULL) == (present ? 0 : PM_ENOTFOUND));
			CHECK(!pm_wz_value(w, NULL));
		}
		pm_wz_destroy(w);
	}
	check_map(i);
	if (S[i].r.n > MAX_KEYS) {
		/* keep maps small: cut a random first byte's subtrie out */
		uint8_t b = S[i].r.e[below((unsigned)S[i].r.n)].key[0];
		pm_wz *w;

		if (pm_wz_create(S[i].m, &b, 1, &w) == 0) {
			CHECK(pm_wz_remove_branches(w) == 0);
			CHECK(pm_wz_remove_value(w, NULL) != PM_ENOMEM);
			pm_wz_destroy(w);
			model_take(&S[i].r, &b, 1, NULL);
			check_map(i);
		}
	}
	if ((op_no & 63) == 0)
		CHECK(model_matches(&S[i].r, S[i].m));
	if ((op_no & 7) == 0)
		foreach_walk(i);
}

static void test_random_ops(void)
{
	const char *es = getenv("PM_TEST_SEED"), *eo = getenv("PM_TEST_OPS");
	uint64_t nops = eo ? strtoull(eo, NULL, 10) : 1000000;
	int i;

	seed0 = es ? strtoull(es, NULL, 10) : 20261126;
	rng_state = seed0;
	printf("\n  seed %" PRIu64 ", %" PRIu64 " operations\n", seed0, nops);
	for (i = 0; i < NMAPS; i++) {
		CU_ASSERT_EQUAL_FATAL(pm_map_create(&S[i].m, NULL, NULL), 0);
		model_init(&S[i].r);
	}
	for (op_no = 1; op_no <= nops && failures_reported < 5; op_no++)
		one_op();
	for (i = 0; i < NMAPS; i++) {
		check_map(i);
		CHECK(model_matches(&S[i].r, S[i].m));
		pm_map_destroy(S[i].m);
		model_free(&S[i].r);
	}
	printf("  value tags seen in sampled checks: %" PRIu64 "\n", tags_seen);
	CU_ASSERT(tags_seen > 0);
	printf("  packed leaves seen in sampled checks: %" PRIu64 "\n", packed_seen);
	CU_ASSERT(packed_seen > 0);
}

int main(void)
{
	CU_pSuite s;
	int failed;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("pathmap randomized differential", NULL, NULL);
	CU_add_test(s, "mixed operations against the model", test_random_ops);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() != 0;
	CU_cleanup_registry();
	return failed;
}
