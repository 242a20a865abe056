/*
 * fuzz_kb.c - libFuzzer target over the KB reader (engine/kb.h) and the snapshot reader
 * (pathmap/pm_snap.h): any bytes must be refused or read without leaving the buffer.
 *
 * Build with clang -fsanitize=fuzzer,address (tests/fuzz/run_fuzz_kb.sh), or link with
 * replay_main.c to run a corpus as an ordinary test.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* pm_snap_iter_run() visitor: touches the key, stops (1) once *arg keys went by. */
static int stop_after(const uint8_t *key, size_t len, uint64_t val, void *arg)
{
	size_t *left = arg;
	volatile uint8_t sink = len ? key[len - 1] : 0;

	(void)sink;
	(void)val;
	return --*left ? 0 : 1;
}

/* Walks everything an opened snapshot offers. */
static void exercise_snap(const pm_snap *s, const struct pkb *kb)
{
	pm_snap_iter *it;
	const uint8_t *k, *d;
	size_t len, dl, n = 0;
	uint64_t v, c;
	uint8_t first[16];
	size_t flen = 0;

	(void)pm_snap_verify(s, false, NULL, NULL, NULL, NULL, 0);
	(void)pm_snap_verify(s, true, NULL, NULL, NULL, NULL, 0);
	if (pm_snap_iter_create(s, NULL, NULL, &it))
		return;
	while (n < 100000 && pm_snap_iter_next(it, &k, &len, &v) == 1) {
		if (kb)
			(void)pkb_blob(kb, v, &d, &dl);
		if (n == 0) {
			flen = len < sizeof(first) ? len : sizeof(first);
			memcpy(first, k, flen);
		}
		n++;
	}
	(void)pm_snap_get(s, first, flen, &v);
	(void)pm_snap_count_prefix(s, first, flen ? flen - 1 : 0, &c);
	(void)pm_snap_iter_seek(it, first, flen ? 1 : 0, first, flen);
	while (pm_snap_iter_next(it, &k, &len, &v) == 1 && n++ < 200000)
		;
	/* The visitor walk, stopped after a few keys, stepped once, then run to the end. */
	if (pm_snap_iter_seek(it, NULL, 0, NULL, 0) == 0) {
		size_t left = 3;

		if (pm_snap_iter_run(it, stop_after, &left) == 1 &&
		    pm_snap_iter_next(it, &k, &len, &v) == 1) {
			left = 200000;
			(void)pm_snap_iter_run(it, stop_after, &left);
		}
	}
	pm_snap_iter_destroy(it);
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8); /* little-endian hosts */
	return v;
}

static void wr64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/* Makes the checksums of a snapshot image at p[0..n) right again, so that mutated nodes get
 * past the checksum and reach the node decoder. */
static void fix_snap(uint8_t *p, size_t n)
{
	if (n < 64)
		return;
	wr64(p + n - 16, XXH3_64bits(p, n - 64));
	wr64(p + n - 8, XXH3_64bits(p + n - 64, 56));
}

/* Same for a KB: the embedded image, the section checksums, the header checksum. */
static void fix_kb(uint8_t *p, size_t n)
{
	uint64_t mo, ml, to, tl, ho, hl;

	if (n < 256)
		return;
	mo = rd64(p + 56);
	ml = rd64(p + 64);
	to = rd64(p + 72);
	tl = rd64(p + 80);
	ho = rd64(p + 88);
	hl = rd64(p + 96);
	if (to <= n && tl <= n - to) {
		fix_snap(p + to, (size_t)tl);
		wr64(p + 112, XXH3_64bits(p + to, (size_t)tl));
	}
	if (mo <= n && ml <= n - mo && (ml + 7) / 8 * 8 <= n - mo)
		wr64(p + 104, XXH3_64bits(p + mo, (size_t)((ml + 7) / 8 * 8)));
	if (ho <= n && hl <= n - ho && (hl + 7) / 8 * 8 <= n - ho)
		wr64(p + 120, XXH3_64bits(p + ho, (size_t)((hl + 7) / 8 * 8)));
	wr64(p + 248, XXH3_64bits(p, 248));
}

static void one_kb(const uint8_t *data, size_t size)
{
	struct pkb *kb;
	struct pkb_err err;

	if (pkb_open_mem(data, size, "fuzz", 0, &kb, &err) == 0) {
		pm_map *m;

		exercise_snap(pkb_snap(kb), kb);
		(void)pkb_verify(kb, NULL, NULL, &err);
		if (pkb_info(kb)->count < 50000 && pm_map_create(&m, NULL, NULL) == 0) {
			(void)pkb_load(kb, m, NULL, NULL, &err);
			pm_map_destroy(m);
		}
		pkb_close(kb);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	pm_snap s;

	if (!copy)
		return 0;
	/* As given: checksums must refuse almost every mutation. */
	memcpy(copy, data, size);
	if (pm_snap_open(&s, copy, size, 0) == 0)
		exercise_snap(&s, NULL);
	one_kb(copy, size);
	/* With checksums made right, so that the structure checks are what stands guard. */
	memcpy(copy, data, size);
	fix_snap(copy, size);
	if (pm_snap_open(&s, copy, size, 0) == 0)
		exercise_snap(&s, NULL);
	memcpy(copy, data, size);
	fix_kb(copy, size);
	one_kb(copy, size);
	free(copy);
	return 0;
}
