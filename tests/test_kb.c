/*
 * test_kb.c - KB files (engine/kb.h): writer, reader, verifier, loader, algebra.
 *
 * Randomized against a sorted-array oracle, fixed seed (PM_TEST_SEED overrides, printed on
 * failure). Files go to PKB_TEST_DIR (default: the current directory).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "kb.h"

static uint64_t seed = 0x6b62u;
static uint64_t rng_state;
static char dir[512] = ".";

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static char *tpath(const char *name)
{
	static char buf[4][700];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

/* The oracle: sorted unique keys with values (numbers, or strings in a side array). */
struct ent {
	uint8_t k[24]; /* key bytes */
	size_t len;    /* key length */
	uint64_t val;  /* number, or index into strs */
};

struct oracle {
	struct ent *e; /* sorted */
	size_t n;      /* entries */
};

static int ent_cmp(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;
	size_t m = x->len < y->len ? x->len : y->len;
	int c = m ? memcmp(x->k, y->k, m) : 0;

	if (c)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

/*
 * n random keys; with a non-empty common, every key starts with it (and, as a key of its own,
 * it is there or not at random): the KB's root then has that prefix.
 */
static void make_oracle_with(struct oracle *o, size_t n, const char *common)
{
	size_t i, j, cl = strlen(common);

	o->e = calloc(n ? n : 1, sizeof(*o->e));
	for (i = 0; i < n; i++) {
		size_t l = rnd() % 10, b;

		memcpy(o->e[i].k, common, cl);
		for (b = 0; b < l; b++)
			o->e[i].k[cl + b] = (uint8_t)(rnd() % 3 ? 'a' + rnd() % 4 : rnd() % 256);
		o->e[i].len = cl + (i == 0 && cl && rnd() % 2 ? 0 : l);
		o->e[i].val = rnd() % 1000;
	}
	qsort(o->e, n, sizeof(*o->e), ent_cmp);
	for (i = 0, j = 0; i < n; i++)
		if (!j || ent_cmp(&o->e[j - 1], &o->e[i]))
			o->e[j++] = o->e[i];
	o->n = j;
}

static void make_oracle(struct oracle *o, size_t n)
{
	make_oracle_with(o, n, "");
}

/* String value of entry i: "v<val>" repeated val % 5 times (the empty string included). */
static size_t str_of(uint64_t val, char *buf)
{
	size_t n = 0, r;

	for (r = 0; r < val % 5; r++)
		n += (size_t)sprintf(buf + n, "v%llu", (unsigned long long)val);
	return n;
}

static int blob_of(void *ud, uint64_t w, const uint8_t **data, size_t *len)
{
	static char tmp[256];

	(void)ud;
	*len = str_of(w, tmp);
	*data = (const uint8_t *)tmp;
	return 0;
}

static void meta_for(struct pkb_meta *m, enum pme_scheme sc, uint32_t p, bool strings,
		     const struct pkb_input *in)
{
	memset(m, 0, sizeof(*m));
	m->scheme = sc;
	m->partitions = p;
	m->key_type.cls = PIO_V_STRING;
	m->key_type.vlen = true;
	if (strings) {
		m->value_type.cls = PIO_V_STRING;
		m->value_type.vlen = true;
	} else {
		m->value_type.cls = PIO_V_INT;
		m->value_type.width = 8;
	}
	m->inputs = in;
	m->n_inputs = in ? 1 : 0;
}

/* A map with internal paths for the scheme. */
static pm_map *map_for(const struct oracle *o, enum pme_scheme sc, uint32_t p, bool shuffled)
{
	pm_map *m;
	size_t i;

	CU_ASSERT_FATAL(pm_map_create(&m, NULL, NULL) == 0);
	for (i = 0; i < o->n; i++) {
		size_t j = shuffled ? (i * 7919) % o->n : i; /* 7919 prime: a permutation */
		const struct ent *e = &o->e[j];
		uint8_t path[32];
		size_t pl = e->len;

		if (sc == PME_SCHEME_HASH) {
			pme_partition_path(pme_hash_partition(e->k, e->len, p), path);
			memcpy(path + 2, e->k, e->len);
			pl += 2;
		} else {
			memcpy(path, e->k, e->len);
		}
		CU_ASSERT(pm_map_set(m, path, pl, e->val, NULL) >= 0);
	}
	return m;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc((size_t)n + 1);
	if (fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void check_kb(const char *path, const struct oracle *o, bool strings)
{
	struct pkb *kb;
	struct pkb_err err;
	pm_snap_iter *it;
	const uint8_t *k;
	size_t len, i;
	uint64_t w;

	CU_ASSERT_EQUAL_FATAL(pkb_open(path, PKB_OPEN_CHECKSUM, &kb, &err), 0);
	CU_ASSERT_EQUAL(pkb_verify(kb, NULL, NULL, &err), 0);
	CU_ASSERT_EQUAL(pkb_info(kb)->count, o->n);
	CU_ASSERT_EQUAL_FATAL(pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it), 0);
	for (i = 0; pm_snap_iter_next(it, &k, &len, &w) == 1; i++) {
		CU_ASSERT_FATAL(i < o->n);
		CU_ASSERT(len == o->e[i].len && !memcmp(k, o->e[i].k, len));
		if (strings) {
			char want[256];
			const uint8_t *d;
			size_t dl, wl = str_of(o->e[i].val, want);

			CU_ASSERT_EQUAL(pkb_blob(kb, w, &d, &dl), 0);
			CU_ASSERT(dl == wl && !memcmp(d, want, dl));
		} else {
			CU_ASSERT_EQUAL(w, o->e[i].val);
		}
		CU_ASSERT_EQUAL(pkb_get(kb, o->e[i].k, o->e[i].len, &w), 0);
	}
	CU_ASSERT_EQUAL(i, o->n);
	pm_snap_iter_destroy(it);
	pkb_close(kb);
}

/* Same content, same bytes: schemes' files differ only by their header; insert order and
 * partition count never change the content sections. */
static void write_read(size_t nkeys, const char *common);

static void test_write_read(void)
{
	/* key sets: random; sharing a prefix (the root's); one key; none; every key starting
	 * with eight 0xff bytes (a long common prefix C over every partition) */
	static const struct {
		size_t n;
		const char *common;
	} sets[] = {{3000, ""}, {3000, "shared/prefix/"},
		    {1, ""},	{1, "only"},
		    {0, ""},	{3000, "\xff\xff\xff\xff\xff\xff\xff\xff"}};
	unsigned si;

	for (si = 0; si < sizeof(sets) / sizeof(sets[0]); si++)
		write_read(sets[si].n, sets[si].common);
}

/* Writes map with meta in (up to) nparts ranges on th threads, and checks that the file is
 * want[0..wlen). With 7 ranges the writer flushes the file every 16 KiB of trie as it goes
 * (its syncer thread at work), which must not change a byte either. */
static void parts_same(const pm_map *map, const struct pkb_meta *meta, size_t nparts, unsigned th,
		       const uint8_t *want, size_t wlen)
{
	struct pkb_write_opts wo = {
	    .threads = th, .parts = nparts, .sync_step = nparts == 7 ? 16384 : 0};
	struct pkb_err err;
	uint8_t *fr;
	size_t lr;
	int wrc = pkb_write(tpath("r.kb"), map, meta, blob_of, NULL, &wo, &err);

	CU_ASSERT_EQUAL(wrc, 0);
	if (wrc)
		printf("parts %zu: %s\n", nparts, err.msg);
	fr = slurp(tpath("r.kb"), &lr);
	CU_ASSERT(fr && wlen == lr && !memcmp(want, fr, wlen));
	free(fr);
}

static void write_read(size_t nkeys, const char *common)
{
	struct oracle o;
	struct pkb_input in = {"test-input", 1234, 99};
	int strings;

	make_oracle_with(&o, nkeys, common);
	for (strings = 0; strings < 2; strings++) {
		struct pkb_meta m;
		struct pkb_err err;
		pm_map *a = map_for(&o, PME_SCHEME_HASH, 64, false);
		pm_map *b = map_for(&o, PME_SCHEME_HASH, 64, true);
		pm_map *c = map_for(&o, PME_SCHEME_PREFIX, 1, true);
		uint8_t *fa, *fb, *fc;
		size_t la, lb, lc;

		meta_for(&m, PME_SCHEME_HASH, 64, strings, &in);
		CU_ASSERT_EQUAL(pkb_write(tpath("a.kb"), a, &m, blob_of, NULL, NULL, &err), 0);
		CU_ASSERT_EQUAL(pkb_write(tpath("b.kb"), b, &m, blob_of, NULL, NULL, &err), 0);
		meta_for(&m, PME_SCHEME_PREFIX, 1, strings, &in);
		CU_ASSERT_EQUAL(pkb_write(tpath("c.kb"), c, &m, blob_of, NULL, NULL, &err), 0);
		check_kb(tpath("a.kb"), &o, strings);
		check_kb(tpath("c.kb"), &o, strings);
		fa = slurp(tpath("a.kb"), &la);
		fb = slurp(tpath("b.kb"), &lb);
		fc = slurp(tpath("c.kb"), &lc);
		CU_ASSERT(la == lb && !memcmp(fa, fb, la));
		/* Either scheme's walk, serial or in parts over up to 2, 3, 7 or 256 ranges of
		 * branch bytes (string values: always serial), on 1 or 2 threads, writes the same
		 * bytes as the defaults. */
		{
			size_t nparts[] = {1, 2, 3, 7, 256};
			unsigned q, th, sc;

			for (sc = 0; sc < 2; sc++) {
				if (sc == 0)
					meta_for(&m, PME_SCHEME_HASH, 64, strings, &in);
				else
					meta_for(&m, PME_SCHEME_PREFIX, 1, strings, &in);
				for (q = 0; q < sizeof(nparts) / sizeof(nparts[0]); q++)
					for (th = 1; th <= 2; th++)
						parts_same(sc ? c : b, &m, nparts[q], th,
							   sc ? fc : fa, sc ? lc : la);
			}
		}
		CU_ASSERT(la == lc && !memcmp(fa + PKB_HEADER_SIZE, fc + PKB_HEADER_SIZE,
					      la - PKB_HEADER_SIZE));
		/* Load back into the engine's layout: the same map. */
		{
			struct pkb *kb;
			pm_map *l;

			CU_ASSERT_EQUAL_FATAL(pkb_open(tpath("a.kb"), 0, &kb, &err), 0);
			CU_ASSERT_EQUAL_FATAL(pm_map_create(&l, NULL, NULL), 0);
			CU_ASSERT_EQUAL(pkb_load(kb, l, NULL, NULL, &err), 0);
			if (!strings)
				CU_ASSERT(pm_map_equal(l, a));
			CU_ASSERT_EQUAL(pm_map_count(l), o.n);
			pm_map_destroy(l);
			pkb_close(kb);
		}
		free(fa);
		free(fb);
		free(fc);
		pm_map_destroy(a);
		pm_map_destroy(b);
		pm_map_destroy(c);
	}
	free(o.e);
}

/* A map whose paths are not where the scheme puts them is refused, and nothing is written. */
static void test_route_refused(void)
{
	struct oracle o;
	struct pkb_meta m;
	struct pkb_err err;
	pm_map *a;
	struct stat st;

	make_oracle(&o, 100);
	a = map_for(&o, PME_SCHEME_HASH, 64, false);
	meta_for(&m, PME_SCHEME_HASH, 128, false, NULL); /* wrong P */
	unlink(tpath("r.kb"));
	CU_ASSERT_EQUAL(pkb_write(tpath("r.kb"), a, &m, NULL, NULL, NULL, &err), PKB_EROUTE);
	CU_ASSERT(stat(tpath("r.kb"), &st) != 0);
	pm_map_destroy(a);
	free(o.e);
}

/*
 * trust_routes skips the writer's per-key hash check, and nothing else: a map routed by the
 * hash gives the same bytes with and without it, serially and in parts; a map routed for
 * another P is refused when checked, and when trusted is written with its content intact or
 * refused, never written wrong; a key held by two partitions, or a path outside the
 * partition paths, still fails.
 */
static void test_trust_routes(void)
{
	static const size_t nparts[] = {1, 5};
	int rc;
	struct oracle o;
	struct pkb_meta m;
	struct pkb_err err;
	struct pkb *kb;
	pm_map *a, *b, *l;
	uint8_t *fa, *fb, path[32];
	size_t la, lb, i;
	struct stat st;

	make_oracle(&o, 2000);
	a = map_for(&o, PME_SCHEME_HASH, 64, false);
	meta_for(&m, PME_SCHEME_HASH, 64, false, NULL);
	for (i = 0; i < sizeof(nparts) / sizeof(nparts[0]); i++) {
		struct pkb_write_opts wo = {.threads = 2, .parts = nparts[i]};

		CU_ASSERT_EQUAL(pkb_write(tpath("c.kb"), a, &m, NULL, NULL, &wo, &err), 0);
		wo.trust_routes = true;
		CU_ASSERT_EQUAL(pkb_write(tpath("t.kb"), a, &m, NULL, NULL, &wo, &err), 0);
		fa = slurp(tpath("c.kb"), &la);
		fb = slurp(tpath("t.kb"), &lb);
		CU_ASSERT(fa && fb && la == lb && !memcmp(fa, fb, la));
		free(fa);
		free(fb);
	}
	/* routed for P = 64, described as P = 128 */
	meta_for(&m, PME_SCHEME_HASH, 128, false, NULL);
	for (i = 0; i < sizeof(nparts) / sizeof(nparts[0]); i++) {
		struct pkb_write_opts wo = {.threads = 2, .parts = nparts[i]};

		unlink(tpath("t.kb"));
		CU_ASSERT_EQUAL(pkb_write(tpath("t.kb"), a, &m, NULL, NULL, &wo, &err), PKB_EROUTE);
		CU_ASSERT(stat(tpath("t.kb"), &st) != 0);
		wo.trust_routes = true;
		rc = pkb_write(tpath("t.kb"), a, &m, NULL, NULL, &wo, &err);
		/* in parts, the root's key C is looked up under its hash's partition: a misrouted
		 * C is then missing from the count, and refused */
		CU_ASSERT(rc == 0 || (nparts[i] > 1 && rc == PKB_EROUTE));
		if (rc) {
			CU_ASSERT(stat(tpath("t.kb"), &st) != 0);
			continue;
		}
		CU_ASSERT_EQUAL_FATAL(pkb_open(tpath("t.kb"), 0, &kb, &err), 0);
		CU_ASSERT_EQUAL_FATAL(pm_map_create(&l, NULL, NULL), 0);
		CU_ASSERT_EQUAL(pkb_load(kb, l, NULL, NULL, &err), 0);
		b = map_for(&o, PME_SCHEME_HASH, 128, false); /* the content, laid out for 128 */
		CU_ASSERT(pm_map_equal(l, b));
		pm_map_destroy(b);
		pm_map_destroy(l);
		pkb_close(kb);
	}
	/* the first key once more, under another partition; then a path outside them */
	meta_for(&m, PME_SCHEME_HASH, 64, false, NULL);
	pme_partition_path((pme_hash_partition(o.e[0].k, o.e[0].len, 64) + 1) % 64, path);
	memcpy(path + 2, o.e[0].k, o.e[0].len);
	CU_ASSERT_EQUAL(pm_map_set(a, path, o.e[0].len + 2, 1, NULL), 1);
	for (i = 0; i < 2; i++) {
		struct pkb_write_opts wo = {.threads = 2, .parts = nparts[i], .trust_routes = true};

		unlink(tpath("t.kb"));
		CU_ASSERT_EQUAL(pkb_write(tpath("t.kb"), a, &m, NULL, NULL, &wo, &err), PKB_EROUTE);
		CU_ASSERT(stat(tpath("t.kb"), &st) != 0);
	}
	CU_ASSERT_EQUAL(pm_map_remove(a, path, o.e[0].len + 2, NULL), 0);
	CU_ASSERT_EQUAL(pm_map_set(a, (const uint8_t *)"\xff\xff\xff", 3, 1, NULL), 1);
	for (i = 0; i < 2; i++) {
		struct pkb_write_opts wo = {.threads = 2, .parts = nparts[i], .trust_routes = true};

		unlink(tpath("t.kb"));
		CU_ASSERT_EQUAL(pkb_write(tpath("t.kb"), a, &m, NULL, NULL, &wo, &err), PKB_EROUTE);
		CU_ASSERT(stat(tpath("t.kb"), &st) != 0);
	}
	pm_map_destroy(a);
	free(o.e);
}

/* A string accessor that fails at the value word *ud names. */
static int blob_fail_at(void *ud, uint64_t w, const uint8_t **data, size_t *len)
{
	if (w == *(const uint64_t *)ud)
		return -5; /* -EIO */
	return blob_of(NULL, w, data, len);
}

/* A string value that cannot be read stops the write with the accessor's code and a message
 * that says so (both schemes); nothing is written. */
static void test_blob_refused(void)
{
	struct oracle o;
	struct pkb_meta m;
	struct pkb_err err;
	struct stat st;
	int sc;

	make_oracle(&o, 300);
	for (sc = 0; sc < 2; sc++) {
		enum pme_scheme scheme = sc ? PME_SCHEME_PREFIX : PME_SCHEME_HASH;
		pm_map *a = map_for(&o, scheme, sc ? 1 : 64, true);
		uint64_t bad = o.e[o.n / 2].val;

		meta_for(&m, scheme, sc ? 1 : 64, true, NULL);
		unlink(tpath("s.kb"));
		memset(&err, 0, sizeof(err));
		CU_ASSERT_EQUAL(pkb_write(tpath("s.kb"), a, &m, blob_fail_at, &bad, NULL, &err),
				-5);
		CU_ASSERT(strstr(err.msg, "cannot be read") != NULL);
		CU_ASSERT(stat(tpath("s.kb"), &st) != 0);
		pm_map_destroy(a);
	}
	free(o.e);
}

/* Writes fail cleanly: unwritable place, cancel flag; the old file stays intact. */
static void test_safe_write(void)
{
	struct oracle o;
	struct pkb_meta m;
	struct pkb_err err;
	pm_map *a;
	volatile sig_atomic_t cancel = 1;
	struct pkb_write_opts wo = {.cancel = &cancel};
	uint8_t *before, *after;
	size_t lb, la;
	int rc;

	make_oracle(&o, 500);
	a = map_for(&o, PME_SCHEME_HASH, 16, false);
	meta_for(&m, PME_SCHEME_HASH, 16, false, NULL);
	CU_ASSERT_EQUAL(pkb_write(tpath("s.kb"), a, &m, NULL, NULL, NULL, &err), 0);
	before = slurp(tpath("s.kb"), &lb);
	/* cancelled: ECANCELED, file unchanged */
	o.n = 0;
	pm_map_clear(a);
	CU_ASSERT_EQUAL(pkb_write(tpath("s.kb"), a, &m, NULL, NULL, &wo, &err), PKB_ECANCELED);
	after = slurp(tpath("s.kb"), &la);
	CU_ASSERT(la == lb && !memcmp(before, after, la));
	free(after);
	/* a directory that does not exist: the OS error is reported */
	rc = pkb_write(tpath("no/such/dir/x.kb"), a, &m, NULL, NULL, NULL, &err);
	CU_ASSERT_EQUAL(rc, -ENOENT);
	CU_ASSERT(strstr(err.msg, "x.kb") != NULL);
	/* no temporary file left behind in dir */
	{
		char cmd[800];

		snprintf(cmd, sizeof(cmd), "ls -a '%s' | grep -q '\\.tmp\\.'", dir);
		CU_ASSERT(system(cmd) != 0);
	}
	free(before);
	pm_map_destroy(a);
	free(o.e);
}

/*
 * A write that fails half-way (a file-size limit, as a full disk would) in parts and serially:
 * the OS error is reported with the file's name, the old file stays intact, and the writer
 * thread of a write in parts stops the building threads (the call returns). A cancelled
 * write, the same.
 */
static void test_write_fails(void)
{
	static const size_t nparts[] = {1, 4, 16};
	volatile sig_atomic_t cancel = 1;
	struct oracle o;
	struct pkb_meta m;
	struct pkb_err err;
	struct rlimit old, lim;
	struct stat st;
	uint8_t *before, *after;
	size_t lb, la, i;
	pm_map *a;

	make_oracle(&o, 20000);
	a = map_for(&o, PME_SCHEME_HASH, 64, false);
	meta_for(&m, PME_SCHEME_HASH, 64, false, NULL);
	CU_ASSERT_EQUAL_FATAL(pkb_write(tpath("f.kb"), a, &m, NULL, NULL, NULL, &err), 0);
	before = slurp(tpath("f.kb"), &lb);
	CU_ASSERT_FATAL(before != NULL && stat(tpath("f.kb"), &st) == 0);
	CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_IGN);
	for (i = 0; i < sizeof(nparts) / sizeof(nparts[0]); i++) {
		/* flushes every 4 KiB: the syncer thread runs when the write fails */
		struct pkb_write_opts wo = {.threads = 2, .parts = nparts[i], .sync_step = 4096};
		int rc;

		lim = old;
		lim.rlim_cur = (rlim_t)st.st_size / 2;
		CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
		rc = pkb_write(tpath("f.kb"), a, &m, NULL, NULL, &wo, &err);
		CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &old), 0);
		CU_ASSERT_EQUAL(rc, -EFBIG);
		CU_ASSERT(strstr(err.msg, "f.kb") != NULL);
		after = slurp(tpath("f.kb"), &la);
		CU_ASSERT(after && la == lb && !memcmp(before, after, la));
		free(after);
		/* cancelled: the walk looks at the flag before its first key */
		wo.cancel = &cancel;
		CU_ASSERT_EQUAL(pkb_write(tpath("f.kb"), a, &m, NULL, NULL, &wo, &err),
				PKB_ECANCELED);
		CU_ASSERT(strstr(err.msg, "f.kb") != NULL);
		after = slurp(tpath("f.kb"), &la);
		CU_ASSERT(after && la == lb && !memcmp(before, after, la));
		free(after);
	}
	signal(SIGXFSZ, SIG_DFL);
	free(before);
	pm_map_destroy(a);
	free(o.e);
}

/* What pkb_write's progress callback was told (it runs on one thread at a time). */
struct seen {
	uint64_t v[4096];
	size_t n;
	bool overflow;
};

static void note_progress(void *arg, uint64_t keys)
{
	struct seen *s = arg;

	if (s->n < sizeof(s->v) / sizeof(s->v[0]))
		s->v[s->n++] = keys;
	else
		s->overflow = true;
}

/* The progress callback: never more keys than the map holds, never back, at least once every
 * 65536 keys of a walk, and last with the count, serially and in parts on 1 or 2 threads. */
static void test_progress(void)
{
	static const size_t nparts[] = {1, 7, 64};
	struct oracle o;
	struct pkb_meta m;
	struct pkb_err err;
	size_t i, j;
	pm_map *a;

	make_oracle(&o, 300000);
	a = map_for(&o, PME_SCHEME_HASH, 64, false);
	meta_for(&m, PME_SCHEME_HASH, 64, false, NULL);
	for (i = 0; i < sizeof(nparts) / sizeof(nparts[0]); i++) {
		unsigned th;

		for (th = 1; th <= 2; th++) {
			static struct seen s;
			struct pkb_write_opts wo = {.threads = th,
						    .parts = nparts[i],
						    .progress = note_progress,
						    .progress_arg = &s,
						    .no_sync = true};

			memset(&s, 0, sizeof(s));
			CU_ASSERT_EQUAL_FATAL(
			    pkb_write(tpath("p.kb"), a, &m, NULL, NULL, &wo, &err), 0);
			CU_ASSERT(!s.overflow);
			CU_ASSERT_FATAL(s.n > 0);
			for (j = 1; j < s.n; j++)
				CU_ASSERT(s.v[j] >= s.v[j - 1]);
			CU_ASSERT(s.v[s.n - 1] <= o.n);
			CU_ASSERT(s.n >= o.n / 65536);
			CU_ASSERT_EQUAL(s.v[s.n - 1], o.n);
		}
	}
	pm_map_destroy(a);
	free(o.e);
}

/* Every flipped byte is caught by the checksums; truncations, extensions, foreign files
 * and newer versions are refused; readers without checksums stay in bounds. */
static void test_damage(void)
{
	struct oracle o;
	struct pkb_meta m;
	struct pkb_err err;
	pm_map *a;
	uint8_t *f;
	size_t len, i;

	make_oracle(&o, 200);
	a = map_for(&o, PME_SCHEME_HASH, 4, false);
	meta_for(&m, PME_SCHEME_HASH, 4, true, NULL);
	CU_ASSERT_EQUAL_FATAL(pkb_write(tpath("d.kb"), a, &m, blob_of, NULL, NULL, &err), 0);
	f = slurp(tpath("d.kb"), &len);
	for (i = 0; i < len; i++) {
		uint8_t *c = malloc(len);
		struct pkb *kb;
		int rc;

		memcpy(c, f, len);
		c[i] ^= (uint8_t)(1u << (rnd() % 8));
		rc = pkb_open_mem(c, len, "flip", PKB_OPEN_CHECKSUM, &kb, &err);
		if (rc == 0) {
			CU_ASSERT_NOT_EQUAL(pkb_verify(kb, NULL, NULL, &err), 0);
			pkb_close(kb);
		} else {
			CU_ASSERT(pkb_is_input_error(rc));
		}
		if (pkb_open_mem(c, len, "flip", 0, &kb, &err) == 0) {
			pm_snap_iter *it;
			const uint8_t *k, *d;
			size_t kl, dl;
			uint64_t w;

			if (pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it) == 0) {
				while (pm_snap_iter_next(it, &k, &kl, &w) == 1)
					(void)pkb_blob(kb, w, &d, &dl);
				pm_snap_iter_destroy(it);
			}
			pkb_close(kb);
		}
		free(c);
	}
	for (i = 0; i < len; i += 3) {
		struct pkb *kb;

		CU_ASSERT(pkb_is_input_error(pkb_open_mem(f, i, "trunc", 0, &kb, &err)));
	}
	{
		struct pkb *kb;
		uint8_t *c = calloc(1, len + 8);

		memcpy(c, f, len);
		CU_ASSERT_EQUAL(pkb_open_mem(c, len + 8, "ext", 0, &kb, &err), PKB_ECORRUPT);
		CU_ASSERT_EQUAL(pkb_open_mem("\x89HDF\r\n\x1a\n....", 12, "h5", 0, &kb, &err),
				PKB_EFOREIGN);
		/* A newer version: refused as such, even with a valid header checksum. */
		memcpy(c, f, len);
		c[8] = 2;
		CU_ASSERT_EQUAL(pkb_open_mem(c, len, "v2", 0, &kb, &err), PKB_EVERSION);
		CU_ASSERT(strstr(err.msg, "newer") != NULL);
		free(c);
	}
	free(f);
	pm_map_destroy(a);
	free(o.e);
}

/* merge / intersect / subtract against the oracle, across schemes and P. */
static void test_algebra(void)
{
	struct oracle o1, o2;
	struct pkb_meta m;
	struct pkb_err err;
	pm_map *a, *b;
	struct pkb *kbs[2];
	size_t i, j;

	make_oracle(&o1, 1500);
	make_oracle(&o2, 1500);
	a = map_for(&o1, PME_SCHEME_HASH, 32, false);
	b = map_for(&o2, PME_SCHEME_PREFIX, 1, false);
	meta_for(&m, PME_SCHEME_HASH, 32, false, NULL);
	CU_ASSERT_EQUAL_FATAL(pkb_write(tpath("x.kb"), a, &m, NULL, NULL, NULL, &err), 0);
	meta_for(&m, PME_SCHEME_PREFIX, 1, false, NULL);
	CU_ASSERT_EQUAL_FATAL(pkb_write(tpath("y.kb"), b, &m, NULL, NULL, NULL, &err), 0);
	CU_ASSERT_EQUAL_FATAL(pkb_open(tpath("x.kb"), 0, &kbs[0], &err), 0);
	CU_ASSERT_EQUAL_FATAL(pkb_open(tpath("y.kb"), 0, &kbs[1], &err), 0);
	CU_ASSERT_EQUAL(pkb_combine(PKB_OP_MERGE, kbs, 2, PKB_DUP_SUM, PME_SCHEME_HASH, 32,
				    tpath("u.kb"), NULL, &err),
			0);
	CU_ASSERT_EQUAL(pkb_combine(PKB_OP_INTERSECT, kbs, 2, PKB_DUP_FIRST, PME_SCHEME_HASH, 32,
				    tpath("i.kb"), NULL, &err),
			0);
	CU_ASSERT_EQUAL(pkb_combine(PKB_OP_SUBTRACT, kbs, 2, PKB_DUP_LAST, PME_SCHEME_HASH, 32,
				    tpath("s.kb"), NULL, &err),
			0);
	{
		struct oracle u, in, su;

		u.e = calloc(o1.n + o2.n, sizeof(*u.e));
		in.e = calloc(o1.n, sizeof(*in.e));
		su.e = calloc(o1.n, sizeof(*su.e));
		u.n = in.n = su.n = 0;
		for (i = 0, j = 0; i < o1.n || j < o2.n;) {
			int c = i == o1.n ? 1 : j == o2.n ? -1 : ent_cmp(&o1.e[i], &o2.e[j]);

			if (c < 0) {
				u.e[u.n++] = o1.e[i];
				su.e[su.n++] = o1.e[i++];
			} else if (c > 0) {
				u.e[u.n++] = o2.e[j++];
			} else {
				u.e[u.n] = o1.e[i];
				u.e[u.n++].val += o2.e[j].val;
				in.e[in.n++] = o1.e[i];
				i++;
				j++;
			}
		}
		check_kb(tpath("u.kb"), &u, false);
		check_kb(tpath("i.kb"), &in, false);
		check_kb(tpath("s.kb"), &su, false);
		/* merge equals a KB written from the union directly */
		{
			pm_map *um = map_for(&u, PME_SCHEME_HASH, 32, true);
			uint8_t *f1, *f2;
			size_t l1, l2;

			meta_for(&m, PME_SCHEME_HASH, 32, false, NULL);
			CU_ASSERT_EQUAL(pkb_write(tpath("u2.kb"), um, &m, NULL, NULL, NULL, &err),
					0);
			f1 = slurp(tpath("u.kb"), &l1);
			f2 = slurp(tpath("u2.kb"), &l2);
			CU_ASSERT(l1 == l2 && !memcmp(f1, f2, l1));
			free(f1);
			free(f2);
			pm_map_destroy(um);
		}
		free(u.e);
		free(in.e);
		free(su.e);
	}
	CU_ASSERT_EQUAL(pkb_combine(PKB_OP_MERGE, kbs, 2, PKB_DUP_ERROR, PME_SCHEME_HASH, 32,
				    tpath("e.kb"), NULL, &err),
			PKB_EDUP);
	pkb_close(kbs[0]);
	pkb_close(kbs[1]);
	pm_map_destroy(a);
	pm_map_destroy(b);
	free(o1.e);
	free(o2.e);
}

/* The numeric arithmetic the duplicate policies of ingest and merge share. */
static void test_num(void)
{
	double x = 1.5, y = -2.25, z, nan = NAN;
	uint64_t wx, wy, wz, wn, m1 = (uint64_t)-1;

	memcpy(&wx, &x, 8);
	memcpy(&wy, &y, 8);
	memcpy(&wn, &nan, 8);
	CU_ASSERT(pkb_num_add(PIO_V_FLOAT, wx, wy, &wz));
	memcpy(&z, &wz, 8);
	CU_ASSERT(z == -0.75);
	x = DBL_MAX;
	memcpy(&wx, &x, 8);
	CU_ASSERT(pkb_num_add(PIO_V_FLOAT, wx, wx, &wz)); /* a float sum may reach infinity */
	memcpy(&z, &wz, 8);
	CU_ASSERT(isinf(z) && z > 0);
	memcpy(&wx, &(double){1.5}, 8);
	/* integers: exact inside the class's range, refused (false) outside it */
	CU_ASSERT(pkb_num_add(PIO_V_INT, m1, 5, &wz) && wz == 4); /* -1 + 5 */
	CU_ASSERT(pkb_num_add(PIO_V_INT, (uint64_t)INT64_MAX, m1, &wz) &&
		  wz == (uint64_t)INT64_MAX - 1);
	CU_ASSERT(pkb_num_add(PIO_V_INT, (uint64_t)INT64_MIN, 0, &wz) && wz == (uint64_t)INT64_MIN);
	CU_ASSERT(!pkb_num_add(PIO_V_INT, (uint64_t)INT64_MAX, 1, &wz));
	CU_ASSERT(!pkb_num_add(PIO_V_INT, (uint64_t)INT64_MIN, m1, &wz)); /* MIN - 1 */
	CU_ASSERT(!pkb_num_add(PIO_V_INT, UINT64_C(1) << 62, UINT64_C(1) << 62, &wz));
	CU_ASSERT(pkb_num_add(PIO_V_UINT, m1 - 1, 1, &wz) && wz == m1);
	CU_ASSERT(!pkb_num_add(PIO_V_UINT, m1, 1, &wz));
	CU_ASSERT(!pkb_num_add(PIO_V_UINT, UINT64_C(1) << 63, UINT64_C(1) << 63, &wz));
	CU_ASSERT(pkb_num_less(PIO_V_INT, m1, 0));   /* -1 < 0 */
	CU_ASSERT(!pkb_num_less(PIO_V_UINT, m1, 0)); /* 2^64 - 1 > 0 */
	CU_ASSERT(pkb_num_less(PIO_V_FLOAT, wy, wx));
	CU_ASSERT(!pkb_num_less(PIO_V_FLOAT, wx, wy));
	CU_ASSERT(!pkb_num_less(PIO_V_FLOAT, wn, wx) && !pkb_num_less(PIO_V_FLOAT, wx, wn));
}

int main(void)
{
	CU_pSuite su;
	const char *e = getenv("PM_TEST_SEED");
	unsigned fails;

	if (e)
		seed = strtoull(e, NULL, 0);
	if ((e = getenv("PKB_TEST_DIR")))
		snprintf(dir, sizeof(dir), "%s", e);
	mkdir(dir, 0777);
	rng_state = seed;
	printf("test_kb: seed %llu (set PM_TEST_SEED to replay), files in %s\n",
	       (unsigned long long)seed, dir);
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	su = CU_add_suite("pkb", NULL, NULL);
	CU_add_test(su, "write, read, load back; canonical bytes", test_write_read);
	CU_add_test(su, "numeric arithmetic of the duplicate policies", test_num);
	CU_add_test(su, "maps outside the partition layout are refused", test_route_refused);
	CU_add_test(su, "trust_routes skips the hash check only", test_trust_routes);
	CU_add_test(su, "an unreadable string value stops the write", test_blob_refused);
	CU_add_test(su, "failed or cancelled writes leave the old file", test_safe_write);
	CU_add_test(su, "a write that fails or is cancelled, in parts and serially",
		    test_write_fails);
	CU_add_test(su, "the write's progress: monotone, bounded, complete", test_progress);
	CU_add_test(su, "damaged, truncated, foreign, newer files refused", test_damage);
	CU_add_test(su, "merge, intersect, subtract against an oracle", test_algebra);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures();
	if (fails)
		printf("test_kb: FAILED with seed %llu\n", (unsigned long long)seed);
	CU_cleanup_registry();
	return fails != 0;
}
