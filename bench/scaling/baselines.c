/*
 * baselines.c - scal_baselines: the side-by-side baselines of the scaling study (issue 6).
 *
 * Reads an HDF5 key/value dataset through io/ (the same reader as `pmingest ingest`) into one
 * flat in-memory record array, then times building an in-memory structure from it, at a given
 * OpenMP thread count, with one of these methods:
 *
 *   single      one pm_map, pm_map_set of every record in input order, one thread, no
 *               partitions (the thread count is ignored and reported as 1);
 *   clone_merge each of T threads fills its own pm_map from a contiguous share of the records
 *               (fill), then the T maps are joined pairwise in a tree, ceil(log2 T) levels,
 *               the pairs of a level in parallel (merge); the right operand holds the later
 *               records, so its value wins, as "last" does in the engine;
 *   mutex       one pm_map behind one lock, `omp parallel for` over the records, the lock
 *               taken around every pm_map_set (values of duplicate keys then depend on timing);
 *   judy256     256 JudySL arrays: route (XXH3 of each key, in parallel; stable counting sort
 *               of record indices by hash % 256, the engine's hash), then fill (`omp parallel
 *               for schedule(dynamic)` over the 256 arrays, each written by one thread).
 *
 * JudySL takes NUL-terminated strings. When any key of the input holds a NUL byte (binary
 * keys, e.g. big-endian u64), every key given to JudySL is mapped byte by byte b -> 1 + b % 255
 * (so NUL-free, same length; bytes 0 and 255 then collide, which can merge a few distinct
 * keys). The copy (with terminators) is made before any timing, for every input, so the
 * timed loops are the same whether mapping was needed or not; "nul_mapped" tells.
 *
 * Output: one JSON object per line and measurement on stdout:
 *   {"tool": "scal_baselines", "baseline": ..., "threads": T, "rep": r, "records": N,
 *    "distinct": D, "t_read": s, "t_route": s, "t_fill": s, "t_merge": s, "t_build": s,
 *    "records_per_s": N / t_build, "allocator": "jemalloc"|"glibc", "nul_mapped": bool,
 *    "peak_rss": bytes, "input": "FILE:/dataset"}
 * t_build = t_route + t_fill + t_merge: the in-memory build, from records in memory to the
 * finished structure; reading (t_read, done once per process) and freeing are not included.
 *
 * Checks (untimed, after each measurement): the count of distinct keys of every PathMap
 * baseline equals that of "single" (computed once per process); "clone_merge" must equal it
 * key for key and value for value (pm_map_equal); judy256 must hold as many keys as a single
 * JudySL built from the same (mapped) keys. A failed check prints FAIL on stderr and exits 1.
 *
 * Exit status: 0 success, 1 a check failed, 2 bad command line, 3 input cannot be read,
 * 6 out of memory.
 */
#define _GNU_SOURCE /* dlsym(RTLD_DEFAULT) to tell which malloc serves the process */

#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <Judy.h>
#include <omp.h>
#include <xxhash.h>

#include "pathmap.h"
#include "pio.h"
#include "pme_malloc.h"

const char *malloc_conf = PME_MALLOC_CONF; /* as pmingest: see pme_malloc.h */

enum {
	EXIT_CHECK = 1,
	EXIT_USAGE = 2,
	EXIT_INPUT = 3,
	EXIT_NOMEM = 6,
};

#define NPARTS 256 /* JudySL arrays of the judy256 baseline */

/* All records of the input, flat, as io/ delivers them (keys in one arena). */
struct recs {
	uint8_t *keys;	 /* key arena */
	size_t *off;	 /* n + 1 offsets: key i is keys[off[i] .. off[i+1]) */
	uint64_t *vals;	 /* value words */
	size_t n;	 /* records */
	size_t cap_n;	 /* room in off (minus one) and vals */
	size_t cap_k;	 /* room in keys */
	uint8_t *jkeys;	 /* JudySL copy: key i at jkeys + off[i] + i, NUL-terminated */
	bool nul_mapped; /* jkeys were mapped b -> 1 + b % 255 (some key held a NUL) */
};

/* One measurement. */
struct meas {
	double t_route;	 /* seconds routing (judy256) */
	double t_fill;	 /* seconds filling */
	double t_merge;	 /* seconds joining (clone_merge) */
	size_t distinct; /* keys in the result */
};

static void die(int status, const char *what)
{
	fprintf(stderr, "scal_baselines: %s\n", what);
	exit(status);
}

static void *xmalloc(size_t count, size_t size)
{
	void *p;

	if (size != 0 && count > SIZE_MAX / size)
		die(EXIT_NOMEM, "allocation size overflows");
	p = malloc(count && size ? count * size : 1);
	if (!p)
		die(EXIT_NOMEM, "out of memory");
	return p;
}

static void *xrealloc(void *p, size_t count, size_t size)
{
	if (size != 0 && count > SIZE_MAX / size)
		die(EXIT_NOMEM, "allocation size overflows");
	p = realloc(p, count && size ? count * size : 1);
	if (!p)
		die(EXIT_NOMEM, "out of memory");
	return p;
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "jemalloc" when jemalloc serves malloc in this process (linked or LD_PRELOADed). */
static const char *allocator_name(void)
{
	return dlsym(RTLD_DEFAULT, "mallctl") ? "jemalloc" : "glibc";
}

static unsigned long long peak_rss(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (unsigned long long)ru.ru_maxrss * 1024ull;
}

/* ------------------------------------------------------------------------------------------ */
/* Input */

/* Splits "FILE[:/dataset]" (the dataset defaults to /data, as `pmingest gen` writes). */
static void parse_input(char *spec, struct pio_input *in)
{
	char *colon = strrchr(spec, ':');

	memset(in, 0, sizeof(*in));
	in->dataset = "/data";
	in->count = PIO_TO_END;
	if (colon && colon[1] == '/') {
		*colon = '\0';
		in->dataset = colon + 1;
	}
	in->file = spec;
}

static void recs_append(struct recs *r, const struct pio_batch *b)
{
	size_t bytes = b->key_off[b->n];

	if (r->n + b->n > r->cap_n) {
		size_t cap = r->cap_n ? r->cap_n : 65536;

		while (cap < r->n + b->n)
			cap *= 2;
		r->off = xrealloc(r->off, cap + 1, sizeof(*r->off));
		r->vals = xrealloc(r->vals, cap, sizeof(*r->vals));
		r->cap_n = cap;
	}
	if (r->off[r->n] + bytes > r->cap_k) {
		size_t cap = r->cap_k ? r->cap_k : 1u << 20;

		while (cap < r->off[r->n] + bytes)
			cap *= 2;
		r->keys = xrealloc(r->keys, cap, 1);
		r->cap_k = cap;
	}
	memcpy(r->keys + r->off[r->n], b->keys, bytes);
	for (size_t i = 0; i < b->n; i++) {
		r->off[r->n + i + 1] = r->off[r->n] + b->key_off[i + 1];
		r->vals[r->n + i] = b->vals[i];
	}
	r->n += b->n;
}

/* Reads the whole input into r. Returns the seconds spent. */
static double recs_read(struct recs *r, char *spec)
{
	struct pio_input in;
	struct pio_reader *rd;
	struct pio_batch b;
	struct pio_err err = {{0}};
	double t0 = now_sec();
	int rc;

	parse_input(spec, &in);
	memset(r, 0, sizeof(*r));
	r->off = xmalloc(1, sizeof(*r->off));
	r->off[0] = 0;
	rc = pio_reader_open(&in, 1, NULL, &rd, &err);
	if (rc) {
		fprintf(stderr, "scal_baselines: %s\n", err.msg[0] ? err.msg : pio_strerror(rc));
		exit(rc == PIO_ENOMEM ? EXIT_NOMEM : EXIT_INPUT);
	}
	pio_batch_init(&b);
	while ((rc = pio_reader_next(rd, &b, &err)) == 1)
		recs_append(r, &b);
	pio_batch_free(&b);
	pio_reader_close(rd);
	if (rc < 0) {
		fprintf(stderr, "scal_baselines: %s\n", err.msg[0] ? err.msg : pio_strerror(rc));
		exit(rc == PIO_ENOMEM ? EXIT_NOMEM : EXIT_INPUT);
	}
	return now_sec() - t0;
}

/* Makes the NUL-terminated (and, if any key holds a NUL, NUL-free mapped) copy for JudySL. */
static void recs_judy_copy(struct recs *r)
{
	size_t bytes = r->off[r->n];

	r->nul_mapped = memchr(r->keys, 0, bytes) != NULL;
	r->jkeys = xmalloc(bytes + r->n, 1);
	for (size_t i = 0; i < r->n; i++) {
		uint8_t *dst = r->jkeys + r->off[i] + i;
		size_t len = r->off[i + 1] - r->off[i];

		for (size_t j = 0; j < len; j++) {
			uint8_t c = r->keys[r->off[i] + j];

			dst[j] = r->nul_mapped ? (uint8_t)(1 + c % 255) : c;
		}
		dst[len] = 0;
	}
}

static void recs_free(struct recs *r)
{
	free(r->keys);
	free(r->off);
	free(r->vals);
	free(r->jkeys);
	memset(r, 0, sizeof(*r));
}

static const uint8_t *key_at(const struct recs *r, size_t i, size_t *len)
{
	*len = r->off[i + 1] - r->off[i];
	return r->keys + r->off[i];
}

/* ------------------------------------------------------------------------------------------ */
/* Baselines */

static void check_set(int rc)
{
	if (rc < 0)
		die(rc == PM_ENOMEM ? EXIT_NOMEM : EXIT_CHECK, pm_strerror(rc));
}

/* single: one map, input order. *out receives the map (the caller destroys it). */
static void run_single(const struct recs *r, struct meas *m, pm_map **out)
{
	pm_map *map;
	double t0;

	check_set(pm_map_create(&map, NULL, NULL));
	t0 = now_sec();
	for (size_t i = 0; i < r->n; i++) {
		size_t len;
		const uint8_t *k = key_at(r, i, &len);

		check_set(pm_map_set(map, k, len, r->vals[i], NULL));
	}
	m->t_fill = now_sec() - t0;
	m->distinct = pm_map_count(map);
	*out = map;
}

static int keep_right(uint64_t a, uint64_t b, uint64_t *out, void *arg)
{
	(void)a;
	(void)arg;
	*out = b;
	return 0;
}

/* clone_merge: T private maps over contiguous shares, then a join tree. */
static void run_clone_merge(const struct recs *r, int threads, struct meas *m, pm_map **out)
{
	pm_map **maps = xmalloc((size_t)threads, sizeof(*maps));
	int failed = 0;
	double t0, t1;

	for (int t = 0; t < threads; t++)
		check_set(pm_map_create(&maps[t], NULL, NULL));
	t0 = now_sec();
#pragma omp parallel num_threads(threads) reduction(| : failed)
	{
		int t = omp_get_thread_num();
		int nt = omp_get_num_threads();
		size_t lo = r->n * (size_t)t / (size_t)nt;
		size_t hi = r->n * (size_t)(t + 1) / (size_t)nt;

		for (size_t i = lo; i < hi && !failed; i++) {
			size_t len;
			const uint8_t *k = key_at(r, i, &len);

			failed |= pm_map_set(maps[t], k, len, r->vals[i], NULL) < 0;
		}
	}
	t1 = now_sec();
	if (failed)
		die(EXIT_NOMEM, "clone_merge: pm_map_set failed");
	for (int step = 1; step < threads; step *= 2) {
#pragma omp parallel for num_threads(threads) schedule(dynamic) reduction(| : failed)
		for (int i = 0; i < threads - step; i += 2 * step) {
			pm_map *j;

			if (pm_map_join(maps[i], maps[i + step], keep_right, NULL, &j)) {
				failed = 1;
				continue;
			}
			pm_map_destroy(maps[i]);
			pm_map_destroy(maps[i + step]);
			maps[i] = j;
			maps[i + step] = NULL;
		}
		if (failed)
			die(EXIT_NOMEM, "clone_merge: pm_map_join failed");
	}
	m->t_fill = t1 - t0;
	m->t_merge = now_sec() - t1;
	m->distinct = pm_map_count(maps[0]);
	*out = maps[0];
	free(maps);
}

/* mutex: one map, one lock around every set. */
static void run_mutex(const struct recs *r, int threads, struct meas *m, pm_map **out)
{
	pm_map *map;
	omp_lock_t lock;
	int failed = 0;
	double t0;

	check_set(pm_map_create(&map, NULL, NULL));
	omp_init_lock(&lock);
	t0 = now_sec();
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
	for (size_t i = 0; i < r->n; i++) {
		size_t len;
		const uint8_t *k = key_at(r, i, &len);

		omp_set_lock(&lock);
		failed |= pm_map_set(map, k, len, r->vals[i], NULL) < 0;
		omp_unset_lock(&lock);
	}
	m->t_fill = now_sec() - t0;
	omp_destroy_lock(&lock);
	if (failed)
		die(EXIT_NOMEM, "mutex: pm_map_set failed");
	m->distinct = pm_map_count(map);
	*out = map;
}

/* Number of keys of a JudySL array (untimed walk). */
static size_t judy_count(Pvoid_t arr, size_t maxlen)
{
	uint8_t *idx = xmalloc(maxlen + 1, 1);
	size_t n = 0;
	PWord_t pv;

	idx[0] = 0;
	pv = (PWord_t)JudySLFirst(arr, idx, PJE0);
	while (pv) {
		n++;
		pv = (PWord_t)JudySLNext(arr, idx, PJE0);
	}
	free(idx);
	return n;
}

static size_t max_key_len(const struct recs *r)
{
	size_t mx = 0;

	for (size_t i = 0; i < r->n; i++)
		if (r->off[i + 1] - r->off[i] > mx)
			mx = r->off[i + 1] - r->off[i];
	return mx;
}

/* judy256: hash route into 256 partitions, then one JudySL per partition in parallel. */
static void run_judy256(const struct recs *r, int threads, struct meas *m, size_t maxlen)
{
	Pvoid_t arr[NPARTS] = {0};
	uint8_t *part = xmalloc(r->n, 1);
	size_t *idx = xmalloc(r->n, sizeof(*idx));
	size_t *hist = xmalloc((size_t)threads * NPARTS, sizeof(*hist));
	size_t start[NPARTS + 1];
	int failed = 0;
	double t0, t1;

	t0 = now_sec();
	memset(hist, 0, (size_t)threads * NPARTS * sizeof(*hist));
#pragma omp parallel num_threads(threads)
	{
		int t = omp_get_thread_num();
		int nt = omp_get_num_threads();
		size_t lo = r->n * (size_t)t / (size_t)nt;
		size_t hi = r->n * (size_t)(t + 1) / (size_t)nt;
		size_t *h = hist + (size_t)t * NPARTS;

		for (size_t i = lo; i < hi; i++) {
			size_t len;
			const uint8_t *k = key_at(r, i, &len);

			part[i] = (uint8_t)(XXH3_64bits(k, len) & (NPARTS - 1));
			h[part[i]]++;
		}
#pragma omp barrier
#pragma omp single
		{
			size_t sum = 0;

			for (int p = 0; p < NPARTS; p++) {
				start[p] = sum;
				for (int u = 0; u < nt; u++) {
					size_t c = hist[(size_t)u * NPARTS + (size_t)p];

					hist[(size_t)u * NPARTS + (size_t)p] = sum;
					sum += c;
				}
			}
			start[NPARTS] = sum;
		}
		for (size_t i = lo; i < hi; i++)
			idx[h[part[i]]++] = i;
	}
	t1 = now_sec();
#pragma omp parallel for num_threads(threads) schedule(dynamic) reduction(| : failed)
	for (int p = 0; p < NPARTS; p++) {
		for (size_t j = start[p]; j < start[p + 1]; j++) {
			size_t i = idx[j];
			PWord_t pv;

			pv = (PWord_t)JudySLIns(&arr[p], r->jkeys + r->off[i] + i, PJE0);
			if (pv == PJERR) {
				failed = 1;
				break;
			}
			*pv = r->vals[i];
		}
	}
	m->t_route = t1 - t0;
	m->t_fill = now_sec() - t1;
	if (failed)
		die(EXIT_NOMEM, "judy256: JudySLIns failed");
	m->distinct = 0;
	for (int p = 0; p < NPARTS; p++) {
		m->distinct += judy_count(arr[p], maxlen);
		JudySLFreeArray(&arr[p], PJE0);
	}
	free(part);
	free(idx);
	free(hist);
}

/* Distinct keys of the JudySL copy, by one plain JudySL (the judy256 check). */
static size_t judy_reference(const struct recs *r, size_t maxlen)
{
	Pvoid_t arr = NULL;
	size_t n;

	for (size_t i = 0; i < r->n; i++) {
		PWord_t pv;

		pv = (PWord_t)JudySLIns(&arr, r->jkeys + r->off[i] + i, PJE0);
		if (pv == PJERR)
			die(EXIT_NOMEM, "JudySLIns failed");
		*pv = r->vals[i];
	}
	n = judy_count(arr, maxlen);
	JudySLFreeArray(&arr, PJE0);
	return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Driver */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: scal_baselines --input FILE.h5[:/dataset] [--threads T] [--repeat R]\n"
		"                      [--baseline single|clone_merge|mutex|judy256|all]...\n"
		"\n"
		"Reads the dataset (default /data) into memory through io/, then times each\n"
		"baseline R times (default 1) at T OpenMP threads (default: omp_get_max_threads)\n"
		"and prints one JSON line per measurement. See the comment at the top of\n"
		"bench/scaling/baselines.c for what each baseline does and what is checked.\n"
		"exit status: 0 ok, 1 a check failed, 2 usage, 3 input unreadable, 6 no memory\n");
}

static const char *const names[] = {"single", "clone_merge", "mutex", "judy256"};
#define NBASE (sizeof(names) / sizeof(names[0]))

static int parse_int(const char *opt, const char *s, int lo, int hi)
{
	char *end;
	long v;

	errno = 0;
	v = s ? strtol(s, &end, 10) : 0;
	if (!s || !*s || errno || *end || v < lo || v > hi) {
		fprintf(stderr, "scal_baselines: %s needs an integer in [%d, %d], not '%s'\n", opt,
			lo, hi, s ? s : "");
		exit(EXIT_USAGE);
	}
	return (int)v;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void print_meas(const char *name, int threads, int rep, const struct recs *r, double t_read,
		       const struct meas *m, const char *input)
{
	double t_build = m->t_route + m->t_fill + m->t_merge;

	printf("{\"tool\": \"scal_baselines\", \"baseline\": \"%s\", \"threads\": %d, "
	       "\"rep\": %d, \"records\": %zu, \"distinct\": %zu, \"t_read\": %.6f, "
	       "\"t_route\": %.6f, \"t_fill\": %.6f, \"t_merge\": %.6f, \"t_build\": %.6f, "
	       "\"records_per_s\": %.1f, \"allocator\": \"%s\", \"nul_mapped\": %s, "
	       "\"peak_rss\": %llu, \"input\": ",
	       name, threads, rep, r->n, m->distinct, t_read, m->t_route, m->t_fill, m->t_merge,
	       t_build, t_build > 0 ? (double)r->n / t_build : 0.0, allocator_name(),
	       r->nul_mapped ? "true" : "false", peak_rss());
	json_str(input);
	printf("}\n");
	fflush(stdout);
}

static void fail(const char *name, const char *what, size_t got, size_t want)
{
	fprintf(stderr, "scal_baselines: FAIL %s: %s (got %zu, want %zu)\n", name, what, got, want);
	exit(EXIT_CHECK);
}

int main(int argc, char **argv)
{
	char *input = NULL;
	char input_name[1100];
	int threads = omp_get_max_threads();
	int repeat = 1;
	bool want[NBASE] = {false};
	bool any = false;
	struct recs r;
	double t_read;
	size_t ref_distinct = 0, judy_ref = 0, maxlen;
	pm_map *ref = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			fprintf(stderr, "scal_baselines: %s needs a value (see --help)\n", a);
			return EXIT_USAGE;
		}
		i++;
		if (!strcmp(a, "--input")) {
			input = v;
		} else if (!strcmp(a, "--threads")) {
			threads = parse_int(a, v, 1, 4096);
		} else if (!strcmp(a, "--repeat")) {
			repeat = parse_int(a, v, 1, 1000);
		} else if (!strcmp(a, "--baseline")) {
			bool found = false;

			for (size_t b = 0; b < NBASE; b++) {
				if (!strcmp(v, "all") || !strcmp(v, names[b])) {
					want[b] = true;
					found = true;
				}
			}
			if (!found) {
				fprintf(stderr, "scal_baselines: unknown baseline '%s'\n", v);
				return EXIT_USAGE;
			}
			any = true;
		} else {
			fprintf(stderr, "scal_baselines: unknown option '%s' (see --help)\n", a);
			return EXIT_USAGE;
		}
	}
	if (!input) {
		fprintf(stderr, "scal_baselines: --input FILE.h5[:/dataset] is required\n");
		return EXIT_USAGE;
	}
	if (!any)
		for (size_t b = 0; b < NBASE; b++)
			want[b] = true;
	snprintf(input_name, sizeof(input_name), "%s", input);

	t_read = recs_read(&r, input);
	recs_judy_copy(&r);
	maxlen = max_key_len(&r);
	/* The oracle for every PathMap baseline: one single-threaded map, untimed. */
	{
		struct meas m = {0};

		run_single(&r, &m, &ref);
		ref_distinct = m.distinct;
	}
	if (want[3])
		judy_ref = judy_reference(&r, maxlen);

	for (int rep = 0; rep < repeat; rep++) {
		for (size_t b = 0; b < NBASE; b++) {
			struct meas m = {0};
			pm_map *map = NULL;
			int t = threads;

			if (!want[b])
				continue;
			switch (b) {
			case 0:
				t = 1;
				run_single(&r, &m, &map);
				if (!pm_map_equal(map, ref))
					fail(names[b], "map differs from the reference", m.distinct,
					     ref_distinct);
				break;
			case 1:
				run_clone_merge(&r, threads, &m, &map);
				if (!pm_map_equal(map, ref))
					fail(names[b], "joined map differs from the single map",
					     m.distinct, ref_distinct);
				break;
			case 2:
				run_mutex(&r, threads, &m, &map);
				if (m.distinct != ref_distinct)
					fail(names[b], "distinct keys", m.distinct, ref_distinct);
				break;
			default:
				run_judy256(&r, threads, &m, maxlen);
				if (m.distinct != judy_ref)
					fail(names[b], "distinct keys", m.distinct, judy_ref);
				break;
			}
			pm_map_destroy(map);
			print_meas(names[b], t, rep, &r, t_read, &m, input_name);
		}
	}
	pm_map_destroy(ref);
	recs_free(&r);
	return 0;
}
