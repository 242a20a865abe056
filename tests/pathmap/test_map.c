/*
 * test_map.c - unit tests of the pathmap API: maps, iteration, zippers, algebra, clones.
 */
#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "pathmap.h"

#define K(s) (const uint8_t *)(s), (sizeof(s) - 1)

static void assert_valid(const pm_map *m)
{
	char msg[256] = "";
	int rc = pm_map_check(m, msg, sizeof(msg));

	if (rc)
		fprintf(stderr, "pm_map_check: %s\n", msg);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
}

static pm_map *new_map(void)
{
	pm_map *m = NULL;

	CU_ASSERT_EQUAL_FATAL(pm_map_create(&m, NULL, NULL), 0);
	return m;
}

static void test_basic_set_get(void)
{
	pm_map *m = new_map();
	uint64_t v = 0, old = 0;

	CU_ASSERT_EQUAL(pm_map_count(m), 0);
	CU_ASSERT_FALSE(pm_map_get(m, K("a"), &v));
	CU_ASSERT_EQUAL(pm_map_set(m, K("abc"), 1, NULL), 1);
	CU_ASSERT_EQUAL(pm_map_set(m, K("abd"), 2, NULL), 1);
	CU_ASSERT_EQUAL(pm_map_set(m, K("ab"), 3, NULL), 1);
	CU_ASSERT_EQUAL(pm_map_set(m, K("abc"), 4, &old), 0);
	CU_ASSERT_EQUAL(old, 1);
	CU_ASSERT_EQUAL(pm_map_count(m), 3);
	CU_ASSERT_TRUE(pm_map_get(m, K("abc"), &v));
	CU_ASSERT_EQUAL(v, 4);
	CU_ASSERT_TRUE(pm_map_get(m, K("ab"), &v));
	CU_ASSERT_EQUAL(v, 3);
	CU_ASSERT_FALSE(pm_map_contains(m, K("a")));
	CU_ASSERT_FALSE(pm_map_contains(m, K("abcd")));
	CU_ASSERT_FALSE(pm_map_contains(m, K("abe")));
	CU_ASSERT_EQUAL(pm_map_count_prefix(m, K("ab")), 3);
	CU_ASSERT_EQUAL(pm_map_count_prefix(m, K("abc")), 1);
	CU_ASSERT_EQUAL(pm_map_count_prefix(m, K("x")), 0);
	assert_valid(m);
	CU_ASSERT_EQUAL(pm_map_remove(m, K("ab"), &old), 0);
	CU_ASSERT_EQUAL(old, 3);
	CU_ASSERT_EQUAL(pm_map_remove(m, K("ab"), NULL), PM_ENOTFOUND);
	CU_ASSERT_EQUAL(pm_map_remove(m, K("zz"), NULL), PM_ENOTFOUND);
	assert_valid(m);
	CU_ASSERT_EQUAL(pm_map_remove(m, K("abc"), NULL), 0);
	CU_ASSERT_EQUAL(pm_map_remove(m, K("abd"), NULL), 0);
	CU_ASSERT_EQUAL(pm_map_count(m), 0);
	assert_valid(m);
	pm_map_destroy(m);
	pm_map_destroy(NULL);
}

static int rule_count(bool exists, uint64_t old, uint64_t *val, void *arg)
{
	(void)arg;
	*val = exists ? old + 1 : 1;
	return PM_UPDATE_STORE;
}

static int rule_refuse_new(bool exists, uint64_t old, uint64_t *val, void *arg)
{
	(void)old;
	(void)val;
	(void)arg;
	return exists ? PM_UPDATE_KEEP : -77;
}

static void test_update(void)
{
	pm_map *m = new_map();
	uint64_t v = 0;
	int i;

	for (i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(pm_map_update(m, K("k"), rule_count, NULL), i == 0);
	CU_ASSERT_TRUE(pm_map_get(m, K("k"), &v));
	CU_ASSERT_EQUAL(v, 3);
	CU_ASSERT_EQUAL(pm_map_update(m, K("k"), rule_refuse_new, NULL), 0);
	CU_ASSERT_EQUAL(pm_map_update(m, K("kk"), rule_refuse_new, NULL), -77);
	CU_ASSERT_EQUAL(pm_map_update(m, K("x"), rule_refuse_new, NULL), -77);
	CU_ASSERT_EQUAL(pm_map_update(m, K(""), rule_refuse_new, NULL), -77);
	CU_ASSERT_EQUAL(pm_map_count(m), 1);
	CU_ASSERT_EQUAL(pm_map_update(m, K("k"), NULL, NULL), PM_EINVAL);
	assert_valid(m);
	pm_map_destroy(m);
}

static void test_empty_and_nul_keys(void)
{
	pm_map *m = new_map();
	const uint8_t nul1[] = {0}, nul2[] = {0, 0}, mix[] = {'a', 0, 'b'};
	uint64_t v;

	CU_ASSERT_EQUAL(pm_map_set(m, NULL, 0, 7, NULL), 1);
	CU_ASSERT_EQUAL(pm_map_set(m, nul1, 1, 8, NULL), 1);
	CU_ASSERT_EQUAL(pm_map_set(m, nul2, 2, 9, NULL), 1);
	CU_ASSERT_EQUAL(pm_map_set(m, mix, 3, 10, NULL), 1);
	CU_ASSERT_TRUE(pm_map_get(m, NULL, 0, &v));
	CU_ASSERT_EQUAL(v, 7);
	CU_ASSERT_TRUE(pm_map_get(m, nul2, 2, &v));
	CU_ASSERT_EQUAL(v, 9);
	CU_ASSERT_TRUE(pm_map_get(m, mix, 3, &v));
	CU_ASSERT_EQUAL(v, 10);
	CU_ASSERT_FALSE(pm_map_contains(m, mix, 2));
	CU_ASSERT_EQUAL(pm_map_count(m), 4);
	assert_valid(m);
	CU_ASSERT_EQUAL(pm_map_remove(m, NULL, 0, NULL), 0);
	CU_ASSERT_FALSE(pm_map_contains(m, NULL, 0));
	CU_ASSERT_TRUE(pm_map_contains(m, nul1, 1));
	CU_ASSERT_EQUAL(pm_map_set(m, NULL, 1, 0, NULL), PM_EINVAL);
	assert_valid(m);
	pm_map_destroy(m);
}

static void test_long_keys(void)
{
	size_t lens[] = {65535, 65536, 70000, 200000}, i, j;
	pm_map *m = new_map();
	uint8_t *k = malloc(200001);
	uint64_t v;

	CU_ASSERT_PTR_NOT_NULL_FATAL(k);
	for (j = 0; j < 200001; j++)
		k[j] = (uint8_t)(j * 7);
	for (i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(pm_map_set(m, k, lens[i], lens[i], NULL), 1);
	k[100000] ^= 1;
	CU_ASSERT_EQUAL(pm_map_set(m, k, 150000, 1, NULL), 1);
	k[100000] ^= 1;
	assert_valid(m);
	for (i = 0; i < 4; i++) {
		CU_ASSERT_TRUE(pm_map_get(m, k, lens[i], &v));
		CU_ASSERT_EQUAL(v, lens[i]);
	}
	CU_ASSERT_FALSE(pm_map_contains(m, k, 150000));
	CU_ASSERT_FALSE(pm_map_contains(m, k, 65534));
	CU_ASSERT_EQUAL(pm_map_count_prefix(m, k, 65536), 4);
	CU_ASSERT_EQUAL(pm_map_remove(m, k, 65536, NULL), 0);
	CU_ASSERT_EQUAL(pm_map_remove(m, k, 70000, NULL), 0);
	assert_valid(m);
	CU_ASSERT_TRUE(pm_map_get(m, k, 200000, &v));
	CU_ASSERT_EQUAL(v, 200000);
	pm_map_destroy(m);
	free(k);
}

struct collect {
	struct model got;  /* keys seen, in order of the calls */
	size_t stop_after; /* stop after this many (0: never) */
};

static int collect_fn(const uint8_t *k, size_t len, uint64_t v, void *arg)
{
	struct collect *c = arg;

	if (c->got.n &&
	    model_cmp(c->got.e[c->got.n - 1].key, c->got.e[c->got.n - 1].len, k, len) >= 0)
		return -100; /* out of order */
	model_set(&c->got, k, len, v, NULL);
	return c->stop_after && c->got.n == c->stop_after ? 42 : 0;
}

static void test_foreach_order_prefix_from(void)
{
	const char *keys[] = {"", "a", "ab", "abc", "abd", "b", "ba", "c\xff", "c\x00z", "cc"};
	size_t lens[] = {0, 1, 2, 3, 3, 1, 2, 2, 3, 2}, i;
	pm_map *m = new_map();
	struct model ref;
	struct collect c;

	model_init(&ref);
	for (i = 0; i < 10; i++) {
		pm_map_set(m, (const uint8_t *)keys[i], lens[i], i, NULL);
		model_set(&ref, (const uint8_t *)keys[i], lens[i], i, NULL);
	}
	CU_ASSERT_TRUE(model_matches(&ref, m));
	/* prefix "ab", from "abc" */
	model_init(&c.got);
	c.stop_after = 0;
	CU_ASSERT_EQUAL(pm_map_foreach(m, K("ab"), K("abc"), collect_fn, &c), 0);
	CU_ASSERT_EQUAL(c.got.n, 2);
	CU_ASSERT_TRUE(c.got.n == 2 && c.got.e[0].len == 3 && !memcmp(c.got.e[0].key, "abc", 3));
	model_free(&c.got);
	/* from below the prefix: all of it; from above: nothing */
	model_init(&c.got);
	CU_ASSERT_EQUAL(pm_map_foreach(m, K("b"), K("a"), collect_fn, &c), 0);
	CU_ASSERT_EQUAL(c.got.n, 2);
	model_free(&c.got);
	model_init(&c.got);
	CU_ASSERT_EQUAL(pm_map_foreach(m, K("b"), K("bb"), collect_fn, &c), 0);
	CU_ASSERT_EQUAL(c.got.n, 0);
	model_free(&c.got);
	/* from a key that is absent lands on the next one */
	model_init(&c.got);
	CU_ASSERT_EQUAL(pm_map_foreach(m, NULL, 0, K("abcc"), collect_fn, &c), 0);
	CU_ASSERT_EQUAL(c.got.n, 6);
	CU_ASSERT_TRUE(c.got.n && c.got.e[0].len == 3 && !memcmp(c.got.e[0].key, "abd", 3));
	model_free(&c.got);
	/* stop early: the callback's value comes back */
	model_init(&c.got);
	c.stop_after = 3;
	CU_ASSERT_EQUAL(pm_map_foreach(m, NULL, 0, NULL, 0, collect_fn, &c), 42);
	CU_ASSERT_EQUAL(c.got.n, 3);
	model_free(&c.got);
	model_free(&ref);
	pm_map_destroy(m);
}

static void test_read_zipper(void)
{
	pm_map *m = new_map();
	pm_rz *z, *f;
	uint8_t bytes[256];
	const uint8_t *p;
	size_t len;
	uint64_t v;

	pm_map_set(m, K("hello"), 1, NULL);
	pm_map_set(m, K("help"), 2, NULL);
	pm_map_set(m, K("he"), 3, NULL);
	pm_map_set(m, K("world"), 4, NULL);
	CU_ASSERT_EQUAL_FATAL(pm_rz_create(m, &z), 0);
	CU_ASSERT_TRUE(pm_rz_exists(z));
	CU_ASSERT_EQUAL(pm_rz_child_bytes(z, bytes), 2);
	CU_ASSERT_EQUAL(bytes[0], 'h');
	CU_ASSERT_EQUAL(bytes[1], 'w');
	CU_ASSERT_EQUAL(pm_rz_descend_byte(z, 'h'), 0);
	CU_ASSERT_EQUAL(pm_rz_child_count(z), 1);
	CU_ASSERT_FALSE(pm_rz_value(z, &v));
	pm_rz_descend_byte(z, 'e');
	CU_ASSERT_TRUE(pm_rz_value(z, &v));
	CU_ASSERT_EQUAL(v, 3);
	CU_ASSERT_EQUAL(pm_rz_count(z), 3);
	pm_rz_descend(z, K("lx"));
	CU_ASSERT_FALSE(pm_rz_exists(z));
	CU_ASSERT_EQUAL(pm_rz_child_count(z), 0);
	CU_ASSERT_EQUAL(pm_rz_ascend(z, 1), 1);
	CU_ASSERT_TRUE(pm_rz_exists(z));
	CU_ASSERT_EQUAL(pm_rz_child_bytes(z, bytes), 2);
	CU_ASSERT_EQUAL(bytes[0], 'l');
	CU_ASSERT_EQUAL(bytes[1], 'p');
	p = pm_rz_path(z, &len);
	CU_ASSERT_TRUE(len == 3 && !memcmp(p, "hel", 3));
	/* next/prev walk the values in order */
	pm_rz_reset(z);
	CU_ASSERT_EQUAL(pm_rz_next_value(z), 1);
	p = pm_rz_path(z, &len);
	CU_ASSERT_TRUE(len == 2 && !memcmp(p, "he", 2));
	CU_ASSERT_EQUAL(pm_rz_next_value(z), 1);
	p = pm_rz_path(z, &len);
	CU_ASSERT_TRUE(len == 5 && !memcmp(p, "hello", 5));
	CU_ASSERT_EQUAL(pm_rz_next_value(z), 1);
	CU_ASSERT_EQUAL(pm_rz_next_value(z), 1);
	p = pm_rz_path(z, &len);
	CU_ASSERT_TRUE(len == 5 && !memcmp(p, "world", 5));
	CU_ASSERT_EQUAL(pm_rz_next_value(z), 0);
	p = pm_rz_path(z, &len);
	CU_ASSERT_TRUE(len == 5 && !memcmp(p, "world", 5));
	CU_ASSERT_EQUAL(pm_rz_prev_value(z), 1);
	p = pm_rz_path(z, &len);
	CU_ASSERT_TRUE(len == 4 && !memcmp(p, "help", 4));
	CU_ASSERT_EQUAL(pm_rz_prev_value(z), 1);
	CU_ASSERT_EQUAL(pm_rz_prev_value(z), 1);
	CU_ASSERT_EQUAL(pm_rz_prev_value(z), 0);
	/* seek */
	CU_ASSERT_EQUAL(pm_rz_seek(z, K("hellp")), 1);
	p = pm_rz_path(z, &len);
	CU_ASSERT_TRUE(len == 4 && !memcmp(p, "help", 4));
	CU_ASSERT_EQUAL(pm_rz_seek(z, K("x")), 0);
	/* a NULL path of nonzero length is refused, the focus stays (it read from NULL) */
	pm_rz_descend(z, K("he"));
	CU_ASSERT_EQUAL(pm_rz_descend(z, NULL, 3), PM_EINVAL);
	CU_ASSERT_EQUAL(pm_rz_seek(z, NULL, 3), PM_EINVAL);
	p = pm_rz_path(z, &len);
	CU_ASSERT_TRUE(len == 2 && !memcmp(p, "he", 2));
	/* fork: a zipper rooted at the focus */
	pm_rz_reset(z);
	pm_rz_descend(z, K("hel"));
	CU_ASSERT_EQUAL_FATAL(pm_rz_fork(z, &f), 0);
	CU_ASSERT_EQUAL(pm_rz_count(f), 2);
	CU_ASSERT_EQUAL(pm_rz_next_value(f), 1);
	p = pm_rz_path(f, &len);
	CU_ASSERT_TRUE(len == 2 && !memcmp(p, "lo", 2));
	CU_ASSERT_EQUAL(pm_rz_ascend(f, 10), 2);
	/* a reader sees a snapshot: later writes do not show */
	pm_map_set(m, K("help"), 99, NULL);
	pm_map_remove(m, K("hello"), NULL);
	pm_rz_descend(f, K("lo"));
	CU_ASSERT_TRUE(pm_rz_value(f, &v));
	CU_ASSERT_EQUAL(v, 1);
	pm_rz_destroy(f);
	pm_rz_destroy(z);
	pm_map_destroy(m);
}

static void test_write_zipper(void)
{
	pm_map *m = new_map(), *src = new_map(), *taken = NULL;
	pm_wz *w;
	uint64_t v;

	pm_map_set(m, K("a/x"), 1, NULL);
	pm_map_set(m, K("a/y"), 2, NULL);
	pm_map_set(m, K("b"), 3, NULL);
	pm_map_set(src, K(""), 10, NULL);
	pm_map_set(src, K("1"), 11, NULL);
	pm_map_set(src, K("2"), 12, NULL);
	CU_ASSERT_EQUAL_FATAL(pm_wz_create(m, K("a"), &w), 0);
	CU_ASSERT_EQUAL(pm_wz_count(w), 2);
	CU_ASSERT_EQUAL(pm_wz_set_at(w, K("/z"), 5, NULL), 1);
	CU_ASSERT_TRUE(pm_map_get(m, K("a/z"), &v));
	CU_ASSERT_EQUAL(v, 5);
	CU_ASSERT_TRUE(pm_wz_get_at(w, K("/x"), &v));
	CU_ASSERT_EQUAL(v, 1);
	pm_wz_descend(w, K("/q"));
	CU_ASSERT_EQUAL(pm_wz_descend(w, NULL, 2), PM_EINVAL);
	CU_ASSERT_FALSE(pm_wz_exists(w));
	CU_ASSERT_EQUAL(pm_wz_set_value(w, 6, NULL), 1);
	CU_ASSERT_TRUE(pm_wz_exists(w));
	CU_ASSERT_TRUE(pm_wz_value(w, &v));
	CU_ASSERT_EQUAL(v, 6);
	CU_ASSERT_EQUAL(pm_map_count(m), 5);
	assert_valid(m);
	CU_ASSERT_EQUAL(pm_wz_graft(w, src), 0);
	CU_ASSERT_TRUE(pm_map_get(m, K("a/q"), &v));
	CU_ASSERT_EQUAL(v, 10);
	CU_ASSERT_TRUE(pm_map_get(m, K("a/q2"), &v));
	CU_ASSERT_EQUAL(v, 12);
	CU_ASSERT_EQUAL(pm_map_count(m), 7);
	assert_valid(m);
	CU_ASSERT_EQUAL(pm_wz_remove_branches(w), 0);
	CU_ASSERT_FALSE(pm_map_contains(m, K("a/q1")));
	CU_ASSERT_TRUE(pm_map_contains(m, K("a/q")));
	CU_ASSERT_EQUAL(pm_wz_remove_value(w, &v), 0);
	CU_ASSERT_EQUAL(v, 10);
	CU_ASSERT_EQUAL(pm_wz_remove_value(w, NULL), PM_ENOTFOUND);
	CU_ASSERT_EQUAL(pm_map_count(m), 4);
	assert_valid(m);
	pm_wz_ascend(w, 2);
	CU_ASSERT_EQUAL(pm_wz_take(w, &taken), 0);
	CU_ASSERT_EQUAL(pm_map_count(taken), 3);
	CU_ASSERT_TRUE(pm_map_get(taken, K("/y"), &v));
	CU_ASSERT_EQUAL(v, 2);
	CU_ASSERT_EQUAL(pm_map_count(m), 1);
	CU_ASSERT_EQUAL(pm_wz_count_delta(w), -2);
	assert_valid(m);
	assert_valid(taken);
	/* join / meet / subtract at the focus */
	CU_ASSERT_EQUAL(pm_wz_join(w, src, NULL, NULL), 0);
	CU_ASSERT_EQUAL(pm_map_count(m), 4);
	CU_ASSERT_TRUE(pm_map_get(m, K("a1"), &v));
	pm_map_set(src, K("3"), 13, NULL);
	pm_map_remove(src, K("1"), NULL);
	CU_ASSERT_EQUAL(pm_wz_meet(w, src), 0);
	CU_ASSERT_FALSE(pm_map_contains(m, K("a1")));
	CU_ASSERT_TRUE(pm_map_contains(m, K("a2")));
	CU_ASSERT_EQUAL(pm_wz_subtract(w, src), 0);
	CU_ASSERT_EQUAL(pm_map_count(m), 1);
	CU_ASSERT_TRUE(pm_map_contains(m, K("b")));
	assert_valid(m);
	pm_wz_destroy(w);
	pm_map_destroy(taken);
	pm_map_destroy(src);
	pm_map_destroy(m);
}

static int add_values(uint64_t a, uint64_t b, uint64_t *out, void *arg)
{
	(void)arg;
	*out = a + b;
	return 0;
}

static int refuse(uint64_t a, uint64_t b, uint64_t *out, void *arg)
{
	(void)a;
	(void)b;
	(void)out;
	(void)arg;
	return 1;
}

static void test_algebra(void)
{
	pm_map *a = new_map(), *b = new_map(), *p = new_map(), *r = NULL;
	uint64_t v;

	pm_map_set(a, K("apple"), 1, NULL);
	pm_map_set(a, K("apply"), 2, NULL);
	pm_map_set(a, K("banana"), 3, NULL);
	pm_map_set(b, K("apply"), 20, NULL);
	pm_map_set(b, K("cherry"), 30, NULL);
	pm_map_set(b, K("app"), 40, NULL);
	CU_ASSERT_EQUAL_FATAL(pm_map_join(a, b, NULL, NULL, &r), 0);
	CU_ASSERT_EQUAL(pm_map_count(r), 5);
	CU_ASSERT_TRUE(pm_map_get(r, K("apply"), &v));
	CU_ASSERT_EQUAL(v, 2);
	assert_valid(r);
	pm_map_destroy(r);
	CU_ASSERT_EQUAL_FATAL(pm_map_join(a, b, add_values, NULL, &r), 0);
	CU_ASSERT_TRUE(pm_map_get(r, K("apply"), &v));
	CU_ASSERT_EQUAL(v, 22);
	pm_map_destroy(r);
	r = NULL;
	CU_ASSERT_EQUAL(pm_map_join(a, b, refuse, NULL, &r), PM_EMERGE);
	CU_ASSERT_PTR_NULL(r);
	CU_ASSERT_EQUAL_FATAL(pm_map_meet(a, b, &r), 0);
	CU_ASSERT_EQUAL(pm_map_count(r), 1);
	CU_ASSERT_TRUE(pm_map_get(r, K("apply"), &v));
	CU_ASSERT_EQUAL(v, 2);
	assert_valid(r);
	pm_map_destroy(r);
	CU_ASSERT_EQUAL_FATAL(pm_map_subtract(a, b, &r), 0);
	CU_ASSERT_EQUAL(pm_map_count(r), 2);
	CU_ASSERT_FALSE(pm_map_contains(r, K("apply")));
	assert_valid(r);
	pm_map_destroy(r);
	pm_map_set(p, K("ap"), 0, NULL);
	pm_map_set(p, K("cherry!"), 0, NULL);
	CU_ASSERT_EQUAL_FATAL(pm_map_restrict(a, p, &r), 0);
	CU_ASSERT_EQUAL(pm_map_count(r), 2);
	assert_valid(r);
	pm_map_destroy(r);
	/* operands unchanged */
	CU_ASSERT_EQUAL(pm_map_count(a), 3);
	CU_ASSERT_EQUAL(pm_map_count(b), 3);
	assert_valid(a);
	assert_valid(b);
	/* join with self: shared nodes taken whole */
	CU_ASSERT_EQUAL_FATAL(pm_map_join(a, a, NULL, NULL, &r), 0);
	CU_ASSERT_TRUE(pm_map_equal(r, a));
	pm_map_destroy(r);
	CU_ASSERT_EQUAL_FATAL(pm_map_subtract(a, a, &r), 0);
	CU_ASSERT_EQUAL(pm_map_count(r), 0);
	pm_map_destroy(r);
	pm_map_destroy(a);
	pm_map_destroy(b);
	pm_map_destroy(p);
}

static void test_clone_isolation(void)
{
	pm_map *a = new_map(), *b = NULL, *c = NULL;
	char key[32];
	size_t i;
	uint64_t v;

	for (i = 0; i < 2000; i++) {
		int n = snprintf(key, sizeof(key), "k/%zu/%zu", i % 37, i);

		pm_map_set(a, (const uint8_t *)key, (size_t)n, i, NULL);
	}
	CU_ASSERT_EQUAL_FATAL(pm_map_clone(a, &b), 0);
	CU_ASSERT_TRUE(pm_map_equal(a, b));
	CU_ASSERT_EQUAL_FATAL(pm_map_clone(b, &c), 0);
	for (i = 0; i < 2000; i += 3) {
		int n = snprintf(key, sizeof(key), "k/%zu/%zu", i % 37, i);

		pm_map_set(b, (const uint8_t *)key, (size_t)n, 1000000 + i, NULL);
		pm_map_remove(c, (const uint8_t *)key, (size_t)n, NULL);
	}
	pm_map_set(b, K("k/new"), 1, NULL);
	for (i = 0; i < 2000; i++) {
		int n = snprintf(key, sizeof(key), "k/%zu/%zu", i % 37, i);

		CU_ASSERT_TRUE(pm_map_get(a, (const uint8_t *)key, (size_t)n, &v));
		CU_ASSERT_EQUAL(v, i);
		CU_ASSERT_TRUE(pm_map_get(b, (const uint8_t *)key, (size_t)n, &v));
		CU_ASSERT_EQUAL(v, i % 3 ? i : 1000000 + i);
		CU_ASSERT_EQUAL(pm_map_contains(c, (const uint8_t *)key, (size_t)n), i % 3 != 0);
	}
	CU_ASSERT_FALSE(pm_map_contains(a, K("k/new")));
	CU_ASSERT_EQUAL(pm_map_count(a), 2000);
	CU_ASSERT_FALSE(pm_map_equal(a, b));
	assert_valid(a);
	assert_valid(b);
	assert_valid(c);
	pm_map_destroy(b);
	assert_valid(a);
	pm_map_destroy(a);
	assert_valid(c);
	CU_ASSERT_EQUAL(pm_map_count(c), 2000 - 667);
	pm_map_destroy(c);
}

/* ---- value tags ---- */

/* Sets d/0 .. d/9 (values base + i) into a new map: ten keys that end at their branch byte. */
static pm_map *digits_map(uint64_t base)
{
	pm_map *m = new_map();
	char key[8];
	uint64_t i;

	for (i = 0; i < 10; i++) {
		key[0] = 'd';
		key[1] = '/';
		key[2] = (char)('0' + i);
		CU_ASSERT_EQUAL(pm_map_set(m, (const uint8_t *)key, 3, base + i, NULL), 1);
	}
	return m;
}

static int collect(const uint8_t *key, size_t len, uint64_t val, void *arg)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 256 - n, "%.*s=%llu ", (int)len, (const char *)key,
		 (unsigned long long)val);
	return 0;
}

/* m's keys and values in order, as collect writes them, are want; m checks valid. */
static void expect_keys(const pm_map *m, const char *want)
{
	char got[256] = "";

	pm_map_foreach(m, NULL, 0, NULL, 0, collect, got);
	CU_ASSERT_STRING_EQUAL(got, want);
	assert_valid(m);
}

/* Through write zippers: leaf a (value old_a) gets value nv and a key below it (a + "!",
 * value nv + 1), leaf b (value old_b) loses its value; m then checks valid and reads so. */
static void zip_leaf_writes(pm_map *m, const char *a, uint64_t old_a, uint64_t nv, const char *b,
			    uint64_t old_b)
{
	size_t la = strlen(a), lb = strlen(b);
	char below[64];
	uint64_t v;
	pm_wz *w;

	CU_ASSERT_EQUAL_FATAL(pm_wz_create(m, (const uint8_t *)a, la, &w), 0);
	CU_ASSERT_EQUAL(pm_wz_set_value(w, nv, &v), 0);
	CU_ASSERT_EQUAL(v, old_a);
	CU_ASSERT_EQUAL(pm_wz_set_at(w, K("!"), nv + 1, NULL), 1);
	pm_wz_destroy(w);
	CU_ASSERT_EQUAL_FATAL(pm_wz_create(m, (const uint8_t *)b, lb, &w), 0);
	CU_ASSERT_EQUAL(pm_wz_remove_value(w, &v), 0);
	CU_ASSERT_EQUAL(v, old_b);
	pm_wz_destroy(w);
	assert_valid(m);
	snprintf(below, sizeof(below), "%s!", a);
	CU_ASSERT(pm_map_get(m, (const uint8_t *)a, la, &v) && v == nv);
	CU_ASSERT(pm_map_get(m, (const uint8_t *)below, la + 1, &v) && v == nv + 1);
	CU_ASSERT_FALSE(pm_map_contains(m, (const uint8_t *)b, lb));
}

/*
 * A key that ends right after its branch byte, with a value below 2^61, is held in its
 * parent's child slot (a value tag, no block): it reads, iterates, clones, zips and combines
 * like any leaf, turns into a block where a write needs one, and stays a tag when only its
 * value changes.
 */
static void test_value_tags(void)
{
	const uint64_t big = UINT64_C(1) << 63;
	pm_map *a = digits_map(0), *g = digits_map(big), *b = NULL, *c = NULL;
	char got[256] = "";
	pm_stats st, sg;
	pm_rz *z;
	uint64_t v;

	pm_map_stats(a, &st);
	pm_map_stats(g, &sg);
	CU_ASSERT_EQUAL(st.value_tags, 10);
	CU_ASSERT_EQUAL(sg.value_tags, 0); /* values from 2^61 on need a block */
	CU_ASSERT_EQUAL(sg.node_bytes - st.node_bytes, 10 * 16);
	CU_ASSERT(pm_map_get(a, K("d/7"), &v) && v == 7);
	CU_ASSERT(pm_map_get(g, K("d/7"), &v) && v == big + 7);
	CU_ASSERT_FALSE(pm_map_contains(a, K("d/")));
	CU_ASSERT_FALSE(pm_map_contains(a, K("d/77")));
	assert_valid(a);
	assert_valid(g);
	/* a new value in place: still a tag */
	CU_ASSERT_EQUAL(pm_map_set(a, K("d/0"), 100, &v), 0);
	CU_ASSERT_EQUAL(v, 0);
	pm_map_stats(a, &st);
	CU_ASSERT_EQUAL(st.value_tags, 10);
	/* writes to a clone: a big value, a removal, a key below a tag, a new tag */
	CU_ASSERT_EQUAL_FATAL(pm_map_clone(a, &b), 0);
	CU_ASSERT_EQUAL(pm_map_set(b, K("d/3"), 33, NULL), 0);
	CU_ASSERT_EQUAL(pm_map_set(b, K("d/4"), big, NULL), 0);
	CU_ASSERT_EQUAL(pm_map_remove(b, K("d/5"), &v), 0);
	CU_ASSERT_EQUAL(v, 5);
	CU_ASSERT_EQUAL(pm_map_set(b, K("d/6x"), 61, NULL), 1);
	CU_ASSERT_EQUAL(pm_map_set(b, K("e"), 5, NULL), 1);
	expect_keys(a, "d/0=100 d/1=1 d/2=2 d/3=3 d/4=4 d/5=5 d/6=6 d/7=7 d/8=8 d/9=9 ");
	expect_keys(b, "d/0=100 d/1=1 d/2=2 d/3=33 d/4=9223372036854775808 d/6=6 d/6x=61 d/7=7 "
		       "d/8=8 d/9=9 e=5 ");
	pm_map_foreach(b, K("d/6"), K("d/6a"), collect, got);
	CU_ASSERT_STRING_EQUAL(got, "d/6x=61 ");
	/* read zipper on a tag */
	CU_ASSERT_EQUAL_FATAL(pm_rz_create_at(a, K("d/"), &z), 0);
	CU_ASSERT_EQUAL(pm_rz_descend_byte(z, '7'), 0);
	CU_ASSERT(pm_rz_exists(z) && pm_rz_value(z, &v) && v == 7);
	CU_ASSERT_EQUAL(pm_rz_child_count(z), 0);
	CU_ASSERT_EQUAL(pm_rz_count(z), 1);
	CU_ASSERT_EQUAL(pm_rz_descend_byte(z, 'x'), 0);
	CU_ASSERT_FALSE(pm_rz_exists(z));
	pm_rz_ascend(z, 1);
	CU_ASSERT_EQUAL(pm_rz_next_value(z), 1);
	CU_ASSERT(pm_rz_value(z, &v) && v == 8);
	CU_ASSERT_EQUAL(pm_rz_prev_value(z), 1);
	CU_ASSERT(pm_rz_value(z, &v) && v == 7);
	pm_rz_destroy(z);
	zip_leaf_writes(a, "d/8", 8, 80, "d/9", 9);	  /* write zippers on tags */
	CU_ASSERT(pm_map_get(b, K("d/9"), &v) && v == 9); /* the clone kept it */
	/* algebra over tags on both sides */
	CU_ASSERT_EQUAL_FATAL(pm_map_meet(a, b, &c), 0);
	expect_keys(c, "d/0=100 d/1=1 d/2=2 d/3=3 d/4=4 d/6=6 d/7=7 d/8=80 ");
	pm_map_destroy(c);
	CU_ASSERT_EQUAL_FATAL(pm_map_subtract(b, a, &c), 0);
	expect_keys(c, "d/6x=61 d/9=9 e=5 ");
	pm_map_destroy(c);
	CU_ASSERT_EQUAL_FATAL(pm_map_join(a, g, NULL, NULL, &c), 0);
	CU_ASSERT_EQUAL(pm_map_count(c), 11);
	CU_ASSERT(pm_map_get(c, K("d/9"), &v) && v == big + 9);
	CU_ASSERT(pm_map_get(c, K("d/1"), &v) && v == 1);
	assert_valid(c);
	pm_map_destroy(c);
	pm_map_destroy(a);
	pm_map_destroy(g);
	assert_valid(b);
	pm_map_destroy(b);
	/* the empty key alone: the root itself is a tag */
	a = new_map();
	CU_ASSERT_EQUAL(pm_map_set(a, NULL, 0, 42, NULL), 1);
	pm_map_stats(a, &st);
	CU_ASSERT_EQUAL(st.value_tags, 1);
	CU_ASSERT_EQUAL(st.node_bytes, 0);
	CU_ASSERT(pm_map_get(a, NULL, 0, &v) && v == 42);
	CU_ASSERT_EQUAL_FATAL(pm_map_clone(a, &b), 0);
	CU_ASSERT_EQUAL(pm_map_set(b, K("k"), 1, NULL), 1);
	CU_ASSERT_EQUAL(pm_map_remove(a, NULL, 0, NULL), 0);
	CU_ASSERT_EQUAL(pm_map_count(a), 0);
	CU_ASSERT(pm_map_get(b, NULL, 0, &v) && v == 42);
	assert_valid(a);
	assert_valid(b);
	pm_map_destroy(a);
	pm_map_destroy(b);
}

/* ---- short prefixes ---- */

static size_t sized_new; /* blocks sized_alloc has made */

/* An allocator hook that counts live blocks of each size up to 63 bytes. */
static void *sized_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	size_t *live = ud;

	sized_new += !ptr && nsize;

	if (ptr && osize < 64)
		live[osize]--;
	if (nsize && nsize < 64)
		live[nsize]++;
	if (!nsize) {
		free(ptr);
		return NULL;
	}
	return realloc(ptr, nsize);
}

/*
 * A leaf's prefix of 1 or 2 bytes is held in the node header (a 16-byte block, 17 or 18
 * otherwise), or with a small value the leaf is a value tag (no block); a 3-byte prefix with
 * a value below 2^56 makes a packed leaf (16 bytes), with a bigger one it follows the header. The
 * keys read back and the map checks valid after splits, removals and merges that move prefixes
 * between lengths.
 */
static void test_short_prefixes(void)
{
	static const char *const tail[] = {"", "1", "12", "123"};
	/* a tag's value; too big for a tag with a prefix; too big for a packed leaf too */
	const uint64_t bases[3] = {1000, UINT64_C(1) << 50, UINT64_C(1) << 60};
	size_t live[64], t, i, bi;
	char key[16];
	uint64_t v, base;
	pm_map *m;

	for (t = 0; t < 4; t++) {
		for (bi = 0; bi < 3; bi++) {
			base = bases[bi];
			memset(live, 0, sizeof(live));
			CU_ASSERT_EQUAL_FATAL(pm_map_create(&m, sized_alloc, live), 0);
			for (i = 0; i < 8; i++) { /* x/a.. to x/h..: 8 leaves of tail's length */
				int n =
				    snprintf(key, sizeof(key), "x/%c%s", (char)('a' + i), tail[t]);

				CU_ASSERT_EQUAL(
				    pm_map_set(m, (const uint8_t *)key, (size_t)n, base + i, NULL),
				    1);
			}
			assert_valid(m);
			if (t == 0 || (t < 3 && bi == 0)) { /* value tags: no leaf block */
				CU_ASSERT(live[16] == 0 && live[17] == 0 && live[18] == 0);
			} else if (t < 3 || bi < 2) { /* in the header, or packed */
				CU_ASSERT(live[16] == 8 && live[16 + t] == 0);
			} else {
				CU_ASSERT(live[16] == 0 && live[19] == 8);
			}
			for (i = 0; i < 8; i++) {
				int n =
				    snprintf(key, sizeof(key), "x/%c%s", (char)('a' + i), tail[t]);

				CU_ASSERT(pm_map_get(m, (const uint8_t *)key, (size_t)n, &v) &&
					  v == base + i);
			}
			/* grow a suffix past the header (a split), shrink it back (a merge) */
			CU_ASSERT_EQUAL(pm_map_set(m, K("x/a1234"), 7, NULL), 1);
			CU_ASSERT_EQUAL(pm_map_set(m, K("x/a1299"), 8, NULL), 1);
			assert_valid(m);
			CU_ASSERT_EQUAL(pm_map_remove(m, K("x/a1234"), NULL), 0);
			assert_valid(m);
			CU_ASSERT(pm_map_get(m, K("x/a1299"), &v) && v == 8);
			CU_ASSERT_EQUAL(pm_map_remove(m, K("x/a1299"), NULL), 0);
			for (i = 0; i < 8; i++) {
				int n =
				    snprintf(key, sizeof(key), "x/%c%s", (char)('a' + i), tail[t]);

				CU_ASSERT(pm_map_get(m, (const uint8_t *)key, (size_t)n, &v) &&
					  v == base + i);
				if (i % 2)
					CU_ASSERT_EQUAL(
					    pm_map_remove(m, (const uint8_t *)key, (size_t)n, NULL),
					    0);
			}
			assert_valid(m);
			CU_ASSERT_EQUAL(pm_map_count(m), 4);
			pm_map_destroy(m);
			for (i = 0; i < 64; i++)
				CU_ASSERT_EQUAL(live[i], 0); /* nothing left behind */
		}
	}
}

static int add_arg(bool exists, uint64_t old, uint64_t *val, void *arg)
{
	*val = (exists ? old : 0) + *(const uint64_t *)arg;
	return PM_UPDATE_STORE;
}

/* A new value for a tag's own key is written in place (no block made), through set and
 * update, and removing it makes no block either; a value too big for a tag makes a block, a
 * small one again a tag. */
static void test_tag_update(void)
{
	const uint64_t inc = 5, big = UINT64_C(1) << 50;
	size_t live[64], made, i;
	uint64_t v, old = 0;
	pm_stats st;
	pm_map *m;

	memset(live, 0, sizeof(live));
	CU_ASSERT_EQUAL_FATAL(pm_map_create(&m, sized_alloc, live), 0);
	for (i = 0; i < 8; i++) {
		char key[8] = {'x', '/', (char)('a' + i), '1'};

		CU_ASSERT_EQUAL(pm_map_set(m, (const uint8_t *)key, 4, i, NULL), 1);
	}
	pm_map_stats(m, &st);
	CU_ASSERT_EQUAL(st.value_tags, 8);
	made = sized_new;
	for (i = 0; i < 100; i++) {
		CU_ASSERT_EQUAL(pm_map_update(m, K("x/c1"), add_arg, (void *)&inc), 0);
		CU_ASSERT_EQUAL(pm_map_set(m, K("x/d1"), 1000 + i, &old), 0);
		CU_ASSERT_EQUAL(old, i ? 1000 + i - 1 : 3);
	}
	CU_ASSERT_EQUAL(pm_map_remove(m, K("x/h1"), &old), 0); /* unlinked, not copied */
	CU_ASSERT_EQUAL(old, 7);
	CU_ASSERT_EQUAL(sized_new, made);
	CU_ASSERT_EQUAL(pm_map_set(m, K("x/h1"), 7, NULL), 1);
	CU_ASSERT(pm_map_get(m, K("x/c1"), &v) && v == 2 + 100 * inc);
	CU_ASSERT(pm_map_get(m, K("x/d1"), &v) && v == 1099);
	CU_ASSERT_EQUAL(pm_map_set(m, K("x/e1"), big, &old), 0);
	CU_ASSERT_EQUAL(old, 4);
	pm_map_stats(m, &st);
	CU_ASSERT(st.value_tags == 7 && live[16] == 1);
	CU_ASSERT(pm_map_get(m, K("x/e1"), &v) && v == big);
	assert_valid(m);
	CU_ASSERT_EQUAL(pm_map_update(m, K("x/e1"), add_arg, (void *)&inc), 0);
	CU_ASSERT(pm_map_get(m, K("x/e1"), &v) && v == big + inc);
	CU_ASSERT_EQUAL(pm_map_set(m, K("x/e1"), 3, &old), 0);
	CU_ASSERT_EQUAL(old, big + inc);
	pm_map_stats(m, &st);
	CU_ASSERT(st.value_tags == 8 && live[16] == 0);
	assert_valid(m);
	pm_map_destroy(m);
	for (i = 0; i < 64; i++)
		CU_ASSERT_EQUAL(live[i], 0);
}

/*
 * A leaf whose key suffix is 3 to 7 bytes long and whose value fits the 10 - length bytes
 * left is one 16-byte block (a packed leaf): at each length the largest value that fits
 * packs and the next one does not. Packed leaves read, iterate, clone and zip like any
 * leaf; their own key's new value is written in place and a removal unlinks them (no block
 * made), a value too big unpacks one and a small one packs it again; a clone's writes
 * leave the original's leaves alone.
 */
static void test_packed_leaves(void)
{
	char key[16], exp[1024] = "", got[1024] = "";
	size_t live[64], len, made, i;
	uint64_t v, top, old = 0;
	pm_map *m, *b = NULL;
	pm_stats st;

	memset(live, 0, sizeof(live));
	CU_ASSERT_EQUAL_FATAL(pm_map_create(&m, sized_alloc, live), 0);
	/* "p" + a length digit + a branch byte + a suffix of 3 to 8 bytes; two values each */
	for (len = 3; len <= 8; len++) {
		top = len <= 7 ? (UINT64_C(1) << (8 * (10 - len))) - 1 : 0;
		for (i = 0; i < 2; i++) {
			int n = snprintf(key, sizeof(key), "p%zu%c%.*s", len, (char)('a' + i),
					 (int)len, "abcdefgh");

			CU_ASSERT_EQUAL(
			    pm_map_set(m, (const uint8_t *)key, (size_t)n, top + i, NULL), 1);
			snprintf(exp + strlen(exp), sizeof(exp) - strlen(exp), "%s=%llu ", key,
				 (unsigned long long)(top + i));
		}
	}
	assert_valid(m);
	pm_map_stats(m, &st);
	CU_ASSERT_EQUAL(st.packed_leaves, 5); /* lengths 3 to 7, the value that fits */
	CU_ASSERT_EQUAL(live[16], 5);
	for (len = 3; len <= 8; len++) /* the rest: header + suffix */
		CU_ASSERT_EQUAL(live[16 + len], len <= 7 ? 1 : 2);
	pm_map_foreach(m, NULL, 0, NULL, 0, collect, got);
	CU_ASSERT_STRING_EQUAL(got, exp);
	/* a clone's writes: a new value, a value too big, a removal, a key below one */
	CU_ASSERT_EQUAL_FATAL(pm_map_clone(m, &b), 0);
	CU_ASSERT_EQUAL(pm_map_set(b, K("p5aabcde"), 7, &old), 0);
	CU_ASSERT_EQUAL(old, (UINT64_C(1) << 40) - 1);
	CU_ASSERT_EQUAL(pm_map_set(b, K("p4aabcd"), UINT64_MAX, NULL), 0);
	CU_ASSERT_EQUAL(pm_map_remove(b, K("p3aabc"), &old), 0);
	CU_ASSERT_EQUAL(old, (UINT64_C(1) << 56) - 1);
	CU_ASSERT_EQUAL(pm_map_set(b, K("p6aabcdefz"), 1, NULL), 1);
	got[0] = 0;
	pm_map_foreach(m, NULL, 0, NULL, 0, collect, got);
	CU_ASSERT_STRING_EQUAL(got, exp); /* the original is untouched */
	CU_ASSERT(pm_map_get(b, K("p5aabcde"), &v) && v == 7);
	CU_ASSERT(pm_map_get(b, K("p4aabcd"), &v) && v == UINT64_MAX);
	CU_ASSERT_FALSE(pm_map_contains(b, K("p3aabc")));
	CU_ASSERT(pm_map_get(b, K("p6aabcdef"), &v) && v == (UINT64_C(1) << 32) - 1);
	CU_ASSERT(pm_map_get(b, K("p6aabcdefz"), &v) && v == 1);
	assert_valid(b);
	pm_map_destroy(b);
	/* the original alone again: writes in place, no block made */
	CU_ASSERT_EQUAL(pm_map_set(m, K("p5cabcde"), 9, NULL), 1); /* a third child */
	made = sized_new;
	CU_ASSERT_EQUAL(pm_map_set(m, K("p5aabcde"), 1000, &old), 0);
	CU_ASSERT_EQUAL(old, (UINT64_C(1) << 40) - 1);
	for (i = 0; i < 50; i++) {
		uint64_t inc = 3;

		CU_ASSERT_EQUAL(pm_map_update(m, K("p5aabcde"), add_arg, &inc), 0);
		CU_ASSERT_EQUAL(pm_map_set(m, K("p7aabcdefg"), i, &old), 0);
	}
	CU_ASSERT_EQUAL(pm_map_remove(m, K("p5cabcde"), &old), 0);
	CU_ASSERT_EQUAL(old, 9);
	CU_ASSERT_EQUAL(sized_new, made);
	CU_ASSERT(pm_map_get(m, K("p5aabcde"), &v) && v == 1150);
	CU_ASSERT(pm_map_get(m, K("p7aabcdefg"), &v) && v == 49);
	/* too big: an ordinary block; small again: packed again */
	CU_ASSERT_EQUAL(pm_map_set(m, K("p5aabcde"), UINT64_C(1) << 40, NULL), 0);
	pm_map_stats(m, &st);
	CU_ASSERT(st.packed_leaves == 4 && live[21] == 2);
	assert_valid(m);
	CU_ASSERT_EQUAL(pm_map_set(m, K("p5aabcde"), 5, NULL), 0);
	pm_map_stats(m, &st);
	CU_ASSERT(st.packed_leaves == 5 && live[21] == 1);
	/* write zippers at packed leaves */
	zip_leaf_writes(m, "p6aabcdef", (UINT64_C(1) << 32) - 1, 60, "p7aabcdefg", 49);
	CU_ASSERT_EQUAL(pm_map_count(m), 12);
	pm_map_destroy(m);
	for (i = 0; i < 64; i++)
		CU_ASSERT_EQUAL(live[i], 0);
}

/* ---- sorted runs ---- */

static uint64_t srnd_state = 12345;

static uint64_t srnd(void)
{
	srnd_state ^= srnd_state << 13;
	srnd_state ^= srnd_state >> 7;
	srnd_state ^= srnd_state << 17;
	return srnd_state;
}

/* A random key over a 4-letter alphabet (NUL included) of 0..maxlen bytes: many prefixes of
 * one another, shared runs, and collisions. */
static size_t rand_key(uint8_t *k, size_t maxlen)
{
	static const uint8_t abc[4] = {0, 'a', 'b', 0xff};
	size_t len = (size_t)(srnd() % (maxlen + 1)), i;

	for (i = 0; i < len; i++)
		k[i] = abc[srnd() % 4];
	return len;
}

static int kv_order(const void *a, const void *b)
{
	const pm_kv *x = a, *y = b;
	int c = model_cmp(x->key, x->len, y->key, y->len);

	/* ties by value, which the test makes increase with input order: a stable sort */
	return c ? c : (x->val > y->val) - (x->val < y->val);
}

/*
 * After a bulk set: map holds exactly model m, the call reported want keys added, and clone
 * (when non-NULL), taken before the call, still holds model before.
 */
static void check_bulk(const pm_map *map, const struct model *m, const pm_map *clone,
		       const struct model *before, size_t added, size_t want)
{
	CU_ASSERT_EQUAL(added, want);
	CU_ASSERT_EQUAL(pm_map_count(map), m->n);
	CU_ASSERT_TRUE(model_matches(m, map));
	assert_valid(map);
	if (clone) {
		CU_ASSERT_TRUE(model_matches(before, clone));
		assert_valid(clone);
	}
}

/* Sets a random sorted run into a random map (a clone of it stays as it was) and compares
 * with record-by-record sets on the reference model. */
static void test_set_sorted_random(void)
{
	enum { ROUNDS = 400, MAXRUN = 300, MAXLEN = 9 };
	uint8_t *arena = malloc((size_t)MAXRUN * MAXLEN + 1);
	pm_kv *kv = malloc(MAXRUN * sizeof(*kv));
	size_t round;

	CU_ASSERT_FATAL(arena && kv);
	for (round = 0; round < ROUNDS; round++) {
		struct model m, before;
		pm_map *map = new_map(), *clone = NULL;
		size_t nbase = (size_t)(srnd() % 200), nrun = (size_t)(srnd() % MAXRUN), i;
		size_t added = 99999, was;
		uint8_t k[MAXLEN];

		model_init(&m);
		for (i = 0; i < nbase; i++) {
			size_t len = rand_key(k, round % 2 ? MAXLEN : 3);

			model_set(&m, k, len, srnd(), NULL);
			pm_map_set(map, k, len, m.e[model_lower(&m, k, len)].val, NULL);
		}
		model_copy(&before, &m);
		if (round % 3 == 0)
			CU_ASSERT_EQUAL_FATAL(pm_map_clone(map, &clone), 0);
		for (i = 0; i < nrun; i++) {
			kv[i].len = rand_key(arena + i * MAXLEN, MAXLEN);
			kv[i].key = arena + i * MAXLEN;
			kv[i].val = 1000000 + i;
		}
		qsort(kv, nrun, sizeof(*kv), kv_order);
		was = m.n;
		for (i = 0; i < nrun; i++)
			model_set(&m, kv[i].key, kv[i].len, kv[i].val, NULL);
		CU_ASSERT_EQUAL(pm_map_set_sorted(map, kv, nrun, &added), 0);
		check_bulk(map, &m, clone, &before, added, m.n - was);
		pm_map_destroy(clone);
		pm_map_destroy(map);
		model_free(&m);
		model_free(&before);
	}
	free(arena);
	free(kv);
}

/* Runs nested deeper than the bulk path recurses, refusals, and the zipper forms. */
static void test_set_sorted_edges(void)
{
	enum { DEEP = 150 };
	const pm_kv backwards[] = {{K("b"), 0}, {K("a"), 0}};
	const pm_kv longer_first[] = {{K("a"), 0}, {K(""), 0}};
	const pm_kv null_key[] = {{K(""), 0}, {NULL, 3, 0}};
	const pm_kv at_root[] = {{K(""), 1}, {K("x\0y"), 2}, {K("x\0z"), 3}};
	const pm_kv below[] = {{K("\0y"), 7}, {K("q"), 8}};
	uint8_t deep[DEEP];
	pm_kv kv[DEEP];
	pm_map *map = new_map();
	struct model m;
	pm_head *h;
	pm_wz *w;
	size_t i, added = 0;
	uint64_t v;

	/* a, aa, aaa, ... (each a prefix of the next), into an empty map, then again over it
	 * with new values (merged into the nodes that exist now) */
	memset(deep, 'a', sizeof(deep));
	model_init(&m);
	for (i = 0; i < DEEP; i++) {
		kv[i].key = deep;
		kv[i].len = i + 1;
		kv[i].val = i;
		model_set(&m, deep, i + 1, i, NULL);
	}
	CU_ASSERT_EQUAL(pm_map_set_sorted(map, kv, DEEP, &added), 0);
	CU_ASSERT_EQUAL(added, DEEP);
	CU_ASSERT_TRUE(model_matches(&m, map));
	assert_valid(map);
	for (i = 0; i < DEEP; i++)
		kv[i].val = 500 + i;
	for (i = 0; i < DEEP; i++)
		model_set(&m, deep, i + 1, 500 + i, NULL);
	CU_ASSERT_EQUAL(pm_map_set_sorted(map, kv, DEEP, &added), 0);
	CU_ASSERT_EQUAL(added, 0);
	CU_ASSERT_TRUE(model_matches(&m, map));
	assert_valid(map);

	/* out of order, or a NULL key with bytes: refused, nothing set */
	CU_ASSERT_EQUAL(pm_map_set_sorted(map, backwards, 2, NULL), PM_EINVAL);
	CU_ASSERT_EQUAL(pm_map_set_sorted(map, longer_first, 2, NULL), PM_EINVAL);
	CU_ASSERT_EQUAL(pm_map_set_sorted(map, null_key, 2, NULL), PM_EINVAL);
	CU_ASSERT_TRUE(model_matches(&m, map));
	CU_ASSERT_EQUAL(pm_map_set_sorted(map, NULL, 0, &added), 0);
	CU_ASSERT_EQUAL(added, 0);

	/* a head's zipper at its root, and a direct zipper with its focus below the root (the
	 * keys then follow the focus) */
	CU_ASSERT_EQUAL_FATAL(pm_head_create(map, &h), 0);
	CU_ASSERT_EQUAL_FATAL(pm_head_write_zipper_unchecked(h, K("p/"), &w), 0);
	CU_ASSERT_EQUAL(pm_wz_set_sorted(w, at_root, 3, &added), 0);
	CU_ASSERT_EQUAL(added, 3);
	CU_ASSERT_EQUAL(pm_head_release(h, w), 0);
	pm_head_destroy(h);
	model_set(&m, K("p/"), 1, NULL);
	model_set(&m, (const uint8_t *)"p/x\0y", 5, 2, NULL);
	model_set(&m, (const uint8_t *)"p/x\0z", 5, 3, NULL);
	CU_ASSERT_TRUE(model_matches(&m, map));
	CU_ASSERT_EQUAL_FATAL(pm_wz_create(map, K("p"), &w), 0);
	CU_ASSERT_EQUAL(pm_wz_descend(w, K("/x")), 0);
	CU_ASSERT_EQUAL(pm_wz_set_sorted(w, below, 2, &added), 0);
	CU_ASSERT_EQUAL(added, 1);
	CU_ASSERT_EQUAL(pm_wz_set_sorted(w, below + 1, 1, NULL), 0);
	pm_wz_destroy(w);
	model_set(&m, (const uint8_t *)"p/x\0y", 5, 7, NULL);
	model_set(&m, K("p/xq"), 8, NULL);
	CU_ASSERT_TRUE(model_matches(&m, map));
	CU_ASSERT_TRUE(pm_map_get(map, K("p/xq"), &v));
	CU_ASSERT_EQUAL(v, 8);
	assert_valid(map);
	pm_map_destroy(map);
	model_free(&m);
}

/* ---- many keys at once ---- */

/* A key for the batch tests: a short one over the 4-letter alphabet, a random binary one
 * (dense nodes, whose child slots lie cache lines away from their start), or a long one
 * sharing a 100-byte start (prefixes across cache lines). */
static size_t many_key(uint8_t *k)
{
	size_t len, i;

	switch (srnd() % 4) {
	case 0:
	case 1:
		return rand_key(k, 9);
	case 2:
		len = 1 + (size_t)(srnd() % 4);
		for (i = 0; i < len; i++)
			k[i] = (uint8_t)srnd();
		return len;
	default:
		memset(k, 'L', 100);
		len = 100 + (size_t)(srnd() % 60);
		for (i = 100; i < len; i++)
			k[i] = (uint8_t)('a' + srnd() % 3);
		return len;
	}
}

/* pm_map_set_many of unsorted runs (duplicates in them) against sets on the model, and
 * pm_map_get_many of present, absent and invalid keys against the model and pm_map_get. */
static void test_many_random(void)
{
	enum { ROUNDS = 300, MAXRUN = 700, MAXLEN = 160 };
	uint8_t *arena = malloc((size_t)MAXRUN * MAXLEN);
	pm_kv *kv = malloc(MAXRUN * sizeof(*kv));
	bool *found = malloc(MAXRUN * sizeof(*found));
	size_t round;

	CU_ASSERT_FATAL(arena && kv && found);
	for (round = 0; round < ROUNDS; round++) {
		struct model m, before;
		pm_map *map = new_map(), *clone = NULL;
		size_t nbase = (size_t)(srnd() % 400), nrun = (size_t)(srnd() % MAXRUN), i;
		size_t added = 99999, was, want_found = 0, got;
		uint8_t k[MAXLEN];

		model_init(&m);
		for (i = 0; i < nbase; i++) {
			size_t len = many_key(k);
			uint64_t v = srnd() % 3 ? srnd() % 1000 : srnd();

			model_set(&m, k, len, v, NULL);
			CU_ASSERT(pm_map_set(map, k, len, v, NULL) >= 0);
		}
		model_copy(&before, &m);
		if (round % 3 == 0)
			CU_ASSERT_EQUAL_FATAL(pm_map_clone(map, &clone), 0);
		/* the run: new keys, and keys of the map or of the run itself again */
		for (i = 0; i < nrun; i++) {
			uint8_t *dst = arena + i * MAXLEN;

			if (i > 0 && srnd() % 5 == 0) {
				const pm_kv *o = &kv[srnd() % i];

				memcpy(dst, o->key, o->len);
				kv[i].len = o->len;
			} else if (m.n && srnd() % 5 == 0) {
				const struct mentry *e = &m.e[srnd() % m.n];

				memcpy(dst, e->key, e->len);
				kv[i].len = e->len;
			} else {
				kv[i].len = many_key(dst);
			}
			kv[i].key = dst;
			kv[i].val = srnd() % 2 ? 1000000 + i : srnd();
		}
		was = m.n;
		for (i = 0; i < nrun; i++)
			model_set(&m, kv[i].key, kv[i].len, kv[i].val, NULL);
		CU_ASSERT_EQUAL(pm_map_set_many(map, kv, nrun, &added), 0);
		check_bulk(map, &m, clone, &before, added, m.n - was);

		/* queries: the run's keys over again, fresh keys, and now and then a NULL key
		 * with a length (invalid: not found); absent keys keep the val they came with */
		for (i = 0; i < nrun; i++) {
			if (srnd() % 3 == 0)
				kv[i].len = many_key(arena + i * MAXLEN);
			kv[i].key = srnd() % 50 || !kv[i].len ? arena + i * MAXLEN : NULL;
			kv[i].val = UINT64_C(0xdeadbeef) + i;
			found[i] = i % 2;
		}
		got = pm_map_get_many(map, kv, nrun, found);
		for (i = 0; i < nrun; i++) {
			uint64_t mv = 0, gv = 0;
			bool in = kv[i].key && model_get(&m, kv[i].key, kv[i].len, &mv);

			CU_ASSERT_EQUAL(found[i], in);
			CU_ASSERT_EQUAL(kv[i].val, in ? mv : UINT64_C(0xdeadbeef) + i);
			if (kv[i].key) {
				CU_ASSERT_EQUAL(pm_map_get(map, kv[i].key, kv[i].len, &gv), in);
				if (in)
					CU_ASSERT_EQUAL(gv, mv);
			}
			want_found += in;
		}
		CU_ASSERT_EQUAL(got, want_found);
		/* without found[]: the same count and values */
		for (i = 0; i < nrun; i++)
			kv[i].val = 7;
		CU_ASSERT_EQUAL(pm_map_get_many(map, kv, nrun, NULL), want_found);
		for (i = 0; i < nrun; i++) {
			uint64_t mv = 7;

			if (kv[i].key)
				model_get(&m, kv[i].key, kv[i].len, &mv);
			CU_ASSERT_EQUAL(kv[i].val, mv);
		}
		CU_ASSERT_EQUAL(pm_map_get_many(map, kv, 0, found), 0);
		if (clone) {
			size_t in_before = 0;

			got = pm_map_get_many(clone, kv, nrun, found);
			for (i = 0; i < nrun; i++) {
				bool in =
				    kv[i].key && model_get(&before, kv[i].key, kv[i].len, NULL);

				CU_ASSERT_EQUAL(found[i], in);
				in_before += in;
			}
			CU_ASSERT_EQUAL(got, in_before);
		}
		pm_map_destroy(clone);
		pm_map_destroy(map);
		model_free(&m);
		model_free(&before);
	}
	free(arena);
	free(kv);
	free(found);
}

/* The edges of the batch calls: an empty map, the empty key, refusals. */
static void test_many_edges(void)
{
	pm_kv q[] = {{K(""), 1}, {K("a"), 2}, {NULL, 0, 3}, {NULL, 4, 4}};
	const pm_kv bad[] = {{K("x"), 1}, {NULL, 2, 2}};
	bool found[4] = {true, true, true, true};
	pm_map *m = new_map();
	size_t added = 9;

	CU_ASSERT_EQUAL(pm_map_get_many(m, q, 4, found), 0);
	CU_ASSERT(!found[0] && !found[1] && !found[2] && !found[3]);
	CU_ASSERT_EQUAL(q[0].val, 1);
	CU_ASSERT_EQUAL(pm_map_set_many(m, bad, 2, &added), PM_EINVAL);
	CU_ASSERT_EQUAL(added, 9);
	CU_ASSERT_EQUAL(pm_map_count(m), 0);
	CU_ASSERT_EQUAL(pm_map_set_many(m, q, 3, &added), 0); /* "" = 1, then "" = 3 */
	CU_ASSERT_EQUAL(added, 2);
	CU_ASSERT_EQUAL(pm_map_get_many(m, q, 4, found), 3);
	CU_ASSERT(found[0] && found[1] && found[2] && !found[3]);
	CU_ASSERT_EQUAL(q[0].val, 3);
	CU_ASSERT_EQUAL(q[1].val, 2);
	CU_ASSERT_EQUAL(q[2].val, 3);
	CU_ASSERT_EQUAL(q[3].val, 4);
	CU_ASSERT_EQUAL(pm_map_set_many(m, NULL, 0, NULL), 0);
	assert_valid(m);
	pm_map_destroy(m);
}

static void test_head_conflicts(void)
{
	pm_map *m = new_map();
	pm_head *h;
	pm_wz *w1, *w2, *w3;
	pm_rz *r;
	uint64_t v;

	pm_map_set(m, K("p1/a"), 1, NULL);
	pm_map_set(m, K("p2/b"), 2, NULL);
	pm_map_set(m, K("q"), 3, NULL);
	CU_ASSERT_EQUAL_FATAL(pm_head_create(m, &h), 0);
	CU_ASSERT_EQUAL_FATAL(pm_head_write_zipper(h, K("p1/"), &w1), 0);
	CU_ASSERT_EQUAL(pm_head_write_zipper(h, K("p1/"), &w2), PM_ECONFLICT);
	CU_ASSERT_EQUAL(pm_head_write_zipper(h, K("p1"), &w2), PM_ECONFLICT);
	CU_ASSERT_EQUAL(pm_head_write_zipper(h, K("p1/a"), &w2), PM_ECONFLICT);
	CU_ASSERT_EQUAL(pm_head_write_zipper(h, K(""), &w2), PM_ECONFLICT);
	CU_ASSERT_EQUAL(pm_head_read_zipper(h, K("p1/a"), &r), PM_ECONFLICT);
	CU_ASSERT_EQUAL_FATAL(pm_head_write_zipper(h, K("p2/"), &w2), 0);
	CU_ASSERT_EQUAL_FATAL(pm_head_read_zipper(h, K("q"), &r), 0);
	CU_ASSERT_EQUAL(pm_head_write_zipper(h, K("q"), &w3), PM_ECONFLICT);
	CU_ASSERT_EQUAL(pm_head_live(h), 3);
	CU_ASSERT_TRUE(pm_rz_value(r, &v));
	CU_ASSERT_EQUAL(v, 3);
	CU_ASSERT_EQUAL(pm_wz_count(w1), 1);
	CU_ASSERT_EQUAL(pm_wz_set_at(w1, K("z"), 10, NULL), 1);
	CU_ASSERT_EQUAL(pm_wz_set_at(w2, K("z"), 20, NULL), 1);
	CU_ASSERT_EQUAL(pm_head_release(h, w1), 0);
	CU_ASSERT_EQUAL_FATAL(pm_head_write_zipper(h, K("p1/a"), &w3), 0);
	CU_ASSERT_EQUAL(pm_wz_remove_value(w3, &v), 0);
	CU_ASSERT_EQUAL(v, 1);
	pm_head_release_reader(h, r);
	pm_head_destroy(h);
	CU_ASSERT_EQUAL(pm_map_count(m), 4);
	CU_ASSERT_TRUE(pm_map_get(m, K("p1/z"), &v));
	CU_ASSERT_EQUAL(v, 10);
	CU_ASSERT_TRUE(pm_map_get(m, K("p2/z"), &v));
	CU_ASSERT_EQUAL(v, 20);
	CU_ASSERT_FALSE(pm_map_contains(m, K("p1/a")));
	assert_valid(m);
	pm_map_destroy(m);
}

static void test_strerror(void)
{
	int codes[] = {PM_OK,	     PM_ENOMEM,	   PM_EINVAL, PM_ENOTFOUND,
		       PM_ECONFLICT, PM_EOVERFLOW, PM_EMERGE};
	size_t i, j;

	for (i = 0; i < 7; i++)
		for (j = 0; j < i; j++)
			CU_ASSERT_STRING_NOT_EQUAL(pm_strerror(codes[i]), pm_strerror(codes[j]));
	CU_ASSERT_STRING_EQUAL(pm_strerror(12345), "unknown error");
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("pathmap", NULL, NULL);
	CU_add_test(s, "set/get/remove", test_basic_set_get);
	CU_add_test(s, "update rules", test_update);
	CU_add_test(s, "empty and NUL keys", test_empty_and_nul_keys);
	CU_add_test(s, "keys of 64 KiB and more", test_long_keys);
	CU_add_test(s, "ordered iteration with prefix and from", test_foreach_order_prefix_from);
	CU_add_test(s, "read zipper", test_read_zipper);
	CU_add_test(s, "write zipper", test_write_zipper);
	CU_add_test(s, "algebra", test_algebra);
	CU_add_test(s, "clone isolation", test_clone_isolation);
	CU_add_test(s, "value tags", test_value_tags);
	CU_add_test(s, "packed leaves", test_packed_leaves);
	CU_add_test(s, "leaf prefixes of 1 and 2 bytes: header or tag", test_short_prefixes);
	CU_add_test(s, "a tag's value replaced in place", test_tag_update);
	CU_add_test(s, "sorted runs against record-by-record sets", test_set_sorted_random);
	CU_add_test(s, "sorted runs: deep nesting, refusals, zippers", test_set_sorted_edges);
	CU_add_test(s, "many keys at once against the model", test_many_random);
	CU_add_test(s, "many keys at once: edges", test_many_edges);
	CU_add_test(s, "zipper head conflicts", test_head_conflicts);
	CU_add_test(s, "strerror", test_strerror);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	{
		int failed = CU_get_number_of_failures() != 0;

		CU_cleanup_registry();
		return failed;
	}
}
