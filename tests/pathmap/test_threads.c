/*
 * test_threads.c - many write zippers from one ZipperHead, at disjoint two-byte partition
 * paths, filled at the same time by OpenMP threads (the library itself uses no threads).
 * The result must equal the map built serially, stay valid, and leave a map that shares
 * nodes with it (a clone taken before the fill) unchanged.
 */
#include <CUnit/Basic.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pathmap.h"

#define NREC 200000
#define NPART 256
#define KEYMAX 24

static uint8_t keys[NREC][KEYMAX];
static size_t klen[NREC];
static uint32_t part_of[NREC];

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void make_records(void)
{
	size_t i, j;

	for (i = 0; i < NREC; i++) {
		uint64_t r = mix(i * 7919 + 1);

		/* duplicates on purpose: about one key in eight repeats an earlier one */
		if (i > 8 && (r & 7) == 0)
			r = mix(((r >> 8) % i) * 7919 + 1);
		klen[i] = 4 + (size_t)(r % (KEYMAX - 4));
		for (j = 0; j < klen[i]; j++)
			keys[i][j] = (uint8_t)("abcdefgh/0123\x00\xff"[(r >> (j * 2 % 60)) % 15]);
		part_of[i] = (uint32_t)(mix(r) % NPART);
	}
}

static void part_path(uint32_t p, uint8_t out[2])
{
	out[0] = (uint8_t)(p >> 8);
	out[1] = (uint8_t)p;
}

static pm_map *serial_build(const pm_map *start)
{
	uint8_t full[KEYMAX + 2];
	pm_map *m;
	size_t i;

	CU_ASSERT_EQUAL_FATAL(pm_map_clone(start, &m), 0);
	for (i = 0; i < NREC; i++) {
		part_path(part_of[i], full);
		memcpy(full + 2, keys[i], klen[i]);
		CU_ASSERT_FATAL(pm_map_set(m, full, klen[i] + 2, i, NULL) >= 0);
	}
	return m;
}

/* Fills m through one head; checked selects the checked zipper call. */
static void parallel_fill(pm_map *m, bool checked, int threads)
{
	static size_t order[NREC], start[NPART + 1];
	pm_wz *wz[NPART];
	pm_head *h;
	size_t i, fill[NPART];
	uint32_t p;
	int errors = 0;

	memset(start, 0, sizeof(start));
	for (i = 0; i < NREC; i++)
		start[part_of[i] + 1]++;
	for (p = 0; p < NPART; p++)
		start[p + 1] += start[p];
	memcpy(fill, start, sizeof(fill));
	for (i = 0; i < NREC; i++)
		order[fill[part_of[i]]++] = i;
	CU_ASSERT_EQUAL_FATAL(pm_head_create(m, &h), 0);
	for (p = 0; p < NPART; p++) {
		uint8_t path[2];

		part_path(p, path);
		int rc = checked ? pm_head_write_zipper(h, path, 2, &wz[p])
				 : pm_head_write_zipper_unchecked(h, path, 2, &wz[p]);

		CU_ASSERT_EQUAL_FATAL(rc, 0);
	}
#pragma omp parallel for schedule(dynamic) num_threads(threads) reduction(+ : errors)
	for (p = 0; p < NPART; p++) {
		size_t k;

		for (k = start[p]; k < start[p + 1]; k++) {
			size_t r = order[k];

			if (pm_wz_set_at(wz[p], keys[r], klen[r], r, NULL) < 0)
				errors++;
		}
	}
	CU_ASSERT_EQUAL(errors, 0);
	for (p = 0; p < NPART; p++)
		CU_ASSERT_EQUAL(pm_head_release(h, wz[p]), 0);
	CU_ASSERT_EQUAL(pm_head_live(h), 0);
	pm_head_destroy(h);
}

static void assert_valid(const pm_map *m)
{
	char msg[256] = "";
	int rc = pm_map_check(m, msg, sizeof(msg));

	if (rc)
		fprintf(stderr, "check: %s\n", msg);
	CU_ASSERT_EQUAL(rc, 0);
}

static void run(bool checked, bool shared_start, int threads)
{
	pm_map *base, *expect, *m, *base_copy;
	size_t i;

	CU_ASSERT_EQUAL_FATAL(pm_map_create(&base, NULL, NULL), 0);
	if (shared_start) {
		/* a base whose nodes the parallel writers must copy, never change */
		uint8_t full[KEYMAX + 2];

		for (i = 0; i < NREC; i += 5) {
			part_path(part_of[i], full);
			memcpy(full + 2, keys[i], klen[i]);
			pm_map_set(base, full, klen[i] + 2, 1000000 + i, NULL);
		}
	}
	expect = serial_build(base);
	CU_ASSERT_EQUAL_FATAL(pm_map_clone(base, &m), 0);
	CU_ASSERT_EQUAL_FATAL(pm_map_clone(base, &base_copy), 0);
	parallel_fill(m, checked, threads);
	assert_valid(m);
	assert_valid(base);
	CU_ASSERT_EQUAL(pm_map_count(m), pm_map_count(expect));
	CU_ASSERT_TRUE(pm_map_equal(m, expect));
	CU_ASSERT_TRUE(pm_map_equal(base, base_copy));
	pm_map_destroy(base_copy);
	pm_map_destroy(m);
	pm_map_destroy(expect);
	pm_map_destroy(base);
}

static void test_unchecked_2threads(void)
{
	run(false, false, 2);
}

static void test_checked_4threads(void)
{
	run(true, false, 4);
}

static void test_shared_start(void)
{
	run(false, true, 4);
}

int main(void)
{
	CU_pSuite s;
	int failed;

	make_records();
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("pathmap concurrent write zippers", NULL, NULL);
	CU_add_test(s, "unchecked zippers, 2 threads", test_unchecked_2threads);
	CU_add_test(s, "checked zippers, 4 threads", test_checked_4threads);
	CU_add_test(s, "fill over a shared (cloned) map", test_shared_start);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() != 0;
	CU_cleanup_registry();
	return failed;
}
