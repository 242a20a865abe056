/*
 * test_io_read.c - the HDF5 reader against fixtures written by h5py.
 *
 * Every case of cases.txt is read and compared, record by record, with what the h5py script
 * says it wrote (expect/NAME.txt); every case of bad.txt must fail with its code and a one-line
 * message naming the file, the dataset and the problem, with nothing printed by HDF5.
 * PIO_FIXTURES names the fixture directory.
 */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/Basic.h>
#include <hdf5.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_io_common.h"

/* Reads case c with the given options and compares with its expectation file. */
static bool check_case(const struct tcase *c, const struct pio_reader_opts *opts)
{
	struct pio_input in = fx_input(c);
	struct pio_reader *r = NULL;
	struct pio_err err = {{0}};
	char path[1024];
	char *got, *want;
	size_t nb;
	bool ok;
	int rc;

	rc = pio_reader_open(&in, 1, opts, &r, &err);
	if (rc) {
		fprintf(stderr, "case %s: open failed %d: %s\n", c->name, rc, err.msg);
		return false;
	}
	got = fx_read_all(r, &nb);
	pio_reader_close(r);
	snprintf(path, sizeof(path), "%s/expect/%s.txt", fx_dir(), c->name);
	want = fx_slurp(path);
	ok = got && want && !strcmp(got, want);
	if (!ok && got && want) {
		size_t i = 0, line = 1, ls = 0;

		while (got[i] && got[i] == want[i]) {
			if (got[i] == '\n') {
				line++;
				ls = i + 1;
			}
			i++;
		}
		fprintf(stderr, "case %s: differs at line %zu:\n got: %.80s\nwant: %.80s\n",
			c->name, line, got + ls, want + ls);
	}
	free(got);
	free(want);
	return ok;
}

static void test_good_cases(void)
{
	struct pio_reader_opts small = {.batch_records = 1};
	struct pio_reader_opts tiny_budget = {.mem_budget = 4096};
	struct pio_reader_opts via_hdf5 = {.hdf5_strings = true};
	struct pio_reader_opts via_hdf5_small = {.batch_records = 1, .hdf5_strings = true};
	struct tcase *cs;
	int n = fx_cases("cases.txt", &cs);

	CU_ASSERT_FATAL(n >= 30);
	for (int i = 0; i < n; i++) {
		/* Default budget (one batch per input here), one chunk per batch, and a
		 * budget smaller than a chunk. */
		CU_ASSERT(check_case(&cs[i], NULL));
		CU_ASSERT(check_case(&cs[i], &small));
		CU_ASSERT(check_case(&cs[i], &tiny_budget));
		/* Variable-length strings read from the heap by io/ (above) and by HDF5. */
		CU_ASSERT(check_case(&cs[i], &via_hdf5));
		CU_ASSERT(check_case(&cs[i], &via_hdf5_small));
	}
	free(cs);
}

/* Runs f with stderr sent to a temporary file; returns what was printed (malloc'd). */
static char *capture_stderr(int (*f)(void *), void *arg, int *rc)
{
	char tmpl[] = "/tmp/pio_stderr_XXXXXX";
	int fd = mkstemp(tmpl), saved;
	char *text;

	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	*rc = f(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	text = fx_slurp(tmpl);
	unlink(tmpl);
	return text;
}

struct open_arg {
	const struct tcase *c;
	struct pio_err *err;
};

static int open_case(void *p)
{
	struct open_arg *a = p;
	struct pio_input in = fx_input(a->c);
	struct pio_reader *r = (struct pio_reader *)&in; /* must stay untouched on failure */
	int rc = pio_reader_open(&in, 1, NULL, &r, a->err);

	if (rc == 0)
		pio_reader_close(r);
	else if (r != (struct pio_reader *)&in)
		return 12345; /* out-parameter written on failure */
	return rc;
}

static void test_bad_cases(void)
{
	struct tcase *cs;
	int n = fx_cases("bad.txt", &cs);

	CU_ASSERT_FATAL(n >= 19);
	for (int i = 0; i < n; i++) {
		const struct tcase *c = &cs[i];
		const char *dset = c->dataset[0] ? c->dataset : c->keys;
		struct pio_err err = {{0}};
		struct open_arg a = {c, &err};
		char *printed;
		int rc;
		bool ok;

		printed = capture_stderr(open_case, &a, &rc);
		ok = rc == fx_code(c->code) && strstr(err.msg, c->msg) &&
		     !strncmp(err.msg, c->file, strlen(c->file)) && !strchr(err.msg, '\n') &&
		     printed && printed[0] == 0;
		/* The dataset is named: the compound one or the one at fault. */
		ok = ok && (strstr(err.msg, dset) || strstr(err.msg, c->values));
		if (!ok)
			fprintf(stderr, "bad case %s: rc %d (want %s), message '%s', stderr '%s'\n",
				c->name, rc, c->code, err.msg, printed ? printed : "?");
		CU_ASSERT(ok);
		CU_ASSERT(pio_error_class(rc) == PIO_CLASS_INPUT);
		free(printed);
	}
	free(cs);
}

static void test_truncated_folds_hdf5_message(void)
{
	char file[1024];
	struct pio_input in = {.file = file, .dataset = "/data", .count = PIO_TO_END};
	struct pio_reader *r;
	struct pio_err err = {{0}};

	snprintf(file, sizeof(file), "%s/truncated.h5", fx_dir());
	CU_ASSERT(pio_reader_open(&in, 1, NULL, &r, &err) == PIO_ECORRUPT);
	CU_ASSERT(strstr(err.msg, "(HDF5: ") != NULL);
	CU_ASSERT(strstr(err.msg, "dataset /data") != NULL);
}

static void test_damaged_chunk(void)
{
	char file[1024];
	struct pio_input in = {.file = file, .dataset = "/data", .count = PIO_TO_END};
	struct pio_reader_opts o = {.batch_records = 128};
	struct pio_reader *r;
	struct pio_batch b;
	struct pio_err err = {{0}};
	uint64_t seen = 0;
	int rc;

	snprintf(file, sizeof(file), "%s/corrupt_chunk.h5", fx_dir());
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r, &err) == 0);
	pio_batch_init(&b);
	while ((rc = pio_reader_next(r, &b, &err)) == 1)
		seen += b.n;
	/* Chunks 0..4 read fine, chunk 5 (records 640..767) is damaged. */
	CU_ASSERT(rc == PIO_EREAD);
	CU_ASSERT(seen == 640);
	CU_ASSERT(strstr(err.msg, "cannot read records 640..767") != NULL);
	CU_ASSERT(strstr(err.msg, "dataset /data") != NULL);
	CU_ASSERT(strstr(err.msg, "(HDF5: ") != NULL);
	pio_batch_free(&b);
	pio_reader_close(r);
}

static void test_batches_aligned(void)
{
	char file[1024];
	struct pio_input in = {.file = file, .dataset = "/data", .start = 100, .count = 1000};
	struct pio_reader_opts o = {.batch_records = 300};
	struct pio_source_info info;
	struct pio_reader *r;
	struct pio_batch b;
	struct pio_err err = {{0}};
	static const uint64_t firsts[] = {100, 256, 512, 768, 1024};
	static const size_t sizes[] = {156, 256, 256, 256, 76};
	size_t k = 0;

	snprintf(file, sizeof(file), "%s/big.h5", fx_dir());
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r, &err) == 0);
	CU_ASSERT(pio_reader_source_info(r, 0, &info) == 0);
	CU_ASSERT(info.chunk_records == 128);
	CU_ASSERT(info.batch_records == 256);
	CU_ASSERT(info.dataset_records == 10000);
	CU_ASSERT(pio_reader_total(r) == 1000);
	CU_ASSERT(pio_reader_source_info(r, 1, &info) == PIO_EINVAL);
	pio_batch_init(&b);
	while (pio_reader_next(r, &b, &err) == 1) {
		CU_ASSERT_FATAL(k < 5);
		CU_ASSERT(b.first_record == firsts[k]);
		CU_ASSERT(b.n == sizes[k]);
		CU_ASSERT(b.source == 0);
		k++;
	}
	CU_ASSERT(k == 5);
	pio_reader_close(r);

	/* Pair layout: chunks of 100 keys and 64 values: batches are multiples of 1600. */
	in.dataset = NULL;
	in.keys = "/keys";
	in.values = "/vals";
	in.start = 0;
	in.count = PIO_TO_END;
	o.batch_records = 2000;
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r, &err) == 0);
	CU_ASSERT(pio_reader_source_info(r, 0, &info) == 0);
	CU_ASSERT(info.chunk_records == 1600);
	CU_ASSERT(info.batch_records == 1600);
	while (pio_reader_next(r, &b, &err) == 1)
		CU_ASSERT(b.first_record % 1600 == 0);
	pio_reader_close(r);

	/* A memory budget: batches shrink to fit, whole chunks still. */
	in.dataset = "/data";
	o.batch_records = 0;
	o.mem_budget = 64 * 1024;
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r, &err) == 0);
	CU_ASSERT(pio_reader_source_info(r, 0, &info) == 0);
	CU_ASSERT(info.batch_records % 128 == 0);
	CU_ASSERT(info.batch_records >= 128 && info.batch_records <= 1024);
	pio_reader_close(r);

	/* A large budget: batches stop at the cap (whole chunks), the default one or the
	 * caller's. */
	o.mem_budget = (size_t)1 << 30;
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r, &err) == 0);
	CU_ASSERT(pio_reader_source_info(r, 0, &info) == 0);
	CU_ASSERT(info.batch_records == 262144); /* 2048 chunks */
	pio_reader_close(r);
	o.batch_cap = 1000;
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r, &err) == 0);
	CU_ASSERT(pio_reader_source_info(r, 0, &info) == 0);
	CU_ASSERT(info.batch_records == 896); /* 7 chunks of 128 */
	pio_reader_close(r);
	o.batch_cap = 0;
	pio_batch_free(&b);
}

static void test_multi_input(void)
{
	char good[1024], multi[1024], kn[96], vn[96];
	struct pio_input in[3] = {
	    {.file = good, .dataset = "/c/fixed_nullpad", .start = 0, .count = 10},
	    {.file = multi, .dataset = "/g/data", .count = PIO_TO_END},
	    {.file = good, .dataset = "/empty/compound", .count = PIO_TO_END},
	};
	struct pio_type kt, vt;
	struct pio_reader *r;
	struct pio_batch b;
	struct pio_err err = {{0}};
	uint64_t per_source[3] = {0, 0, 0};
	int last_source = 0, rc;

	snprintf(good, sizeof(good), "%s/good.h5", fx_dir());
	snprintf(multi, sizeof(multi), "%s/multi2.h5", fx_dir());
	CU_ASSERT_FATAL(pio_reader_open(in, 3, NULL, &r, &err) == 0);
	CU_ASSERT(pio_reader_sources(r) == 3);
	CU_ASSERT(pio_reader_total(r) == 35);
	pio_reader_types(r, &kt, &vt);
	CU_ASSERT_STRING_EQUAL(pio_type_name(&kt, kn, sizeof(kn)), "string[12] nullpad ascii");
	CU_ASSERT_STRING_EQUAL(pio_type_name(&vt, vn, sizeof(vn)), "int64");
	pio_batch_init(&b);
	while ((rc = pio_reader_next(r, &b, &err)) == 1) {
		CU_ASSERT(b.source >= last_source);
		last_source = b.source;
		per_source[b.source] += b.n;
		if (b.source == 1) {
			/* multi2.h5 keys are "m2-<i>", int32 values 1000 + i. */
			char want[16];
			int l = snprintf(want, sizeof(want), "m2-%llu",
					 (unsigned long long)b.first_record);

			CU_ASSERT(b.key_off[1] == (size_t)l);
			CU_ASSERT(!memcmp(b.keys, want, (size_t)l));
			CU_ASSERT(b.vals[0] == 1000 + b.first_record);
		}
	}
	CU_ASSERT(rc == 0);
	CU_ASSERT(per_source[0] == 10 && per_source[1] == 25 && per_source[2] == 0);
	/* After the end, the reader keeps saying so. */
	CU_ASSERT(pio_reader_next(r, &b, &err) == 0);
	CU_ASSERT(b.n == 0);
	pio_reader_close(r);
	pio_batch_free(&b);

	/* Keys of different classes in one job are refused, naming the second input. */
	in[1].dataset = NULL;
	in[1].keys = "/ints";
	in[1].values = "/ints_v";
	CU_ASSERT(pio_reader_open(in, 2, NULL, &r, &err) == PIO_EMIXED);
	CU_ASSERT(strstr(err.msg, "multi2.h5: dataset /ints: key type uint32 differs") != NULL);
}

static void test_prefetch(void)
{
	char file[1024];
	struct pio_input in = {.file = file, .dataset = "/data", .count = PIO_TO_END};
	struct pio_reader_opts o = {.batch_records = 128};
	struct pio_reader *r1, *r2;
	struct pio_prefetch *p;
	struct pio_batch direct, *pb;
	struct pio_err err = {{0}};
	size_t batches = 0;
	int rc;

	snprintf(file, sizeof(file), "%s/big.h5", fx_dir());
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r1, &err) == 0);
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r2, &err) == 0);
	CU_ASSERT_FATAL(pio_prefetch_start(r2, 3, &p, &err) == 0);
	pio_batch_init(&direct);
	/* The prefetched stream equals the direct one, batch by batch. */
	while ((rc = pio_prefetch_next(p, &pb, &err)) == 1) {
		CU_ASSERT_FATAL(pio_reader_next(r1, &direct, &err) == 1);
		CU_ASSERT(pb->n == direct.n && pb->first_record == direct.first_record);
		CU_ASSERT(!memcmp(pb->key_off, direct.key_off, (direct.n + 1) * sizeof(size_t)));
		CU_ASSERT(!memcmp(pb->keys, direct.keys, direct.key_off[direct.n]));
		CU_ASSERT(!memcmp(pb->vals, direct.vals, direct.n * 8));
		batches++;
	}
	CU_ASSERT(rc == 0 && pb == NULL);
	CU_ASSERT(batches == (10000 + 127) / 128);
	CU_ASSERT(pio_reader_next(r1, &direct, &err) == 0);
	pio_prefetch_stop(p);
	pio_reader_close(r2);

	/* Stopping early, while the thread is reading ahead, is clean. */
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r2, &err) == 0);
	CU_ASSERT_FATAL(pio_prefetch_start(r2, 0, &p, &err) == 0);
	CU_ASSERT(pio_prefetch_next(p, &pb, &err) == 1);
	CU_ASSERT(pio_prefetch_next(p, &pb, &err) == 1);
	pio_prefetch_stop(p);
	pio_reader_close(r2);

	/* An error in the I/O thread reaches the consumer in order, with its message. */
	snprintf(file, sizeof(file), "%s/corrupt_chunk.h5", fx_dir());
	CU_ASSERT_FATAL(pio_reader_open(&in, 1, &o, &r2, &err) == 0);
	CU_ASSERT_FATAL(pio_prefetch_start(r2, 2, &p, &err) == 0);
	batches = 0;
	while ((rc = pio_prefetch_next(p, &pb, &err)) == 1)
		batches++;
	CU_ASSERT(rc == PIO_EREAD && batches == 5);
	CU_ASSERT(strstr(err.msg, "corrupt_chunk.h5: dataset /data") != NULL);
	pio_prefetch_stop(p);
	pio_reader_close(r2);
	pio_reader_close(r1);
	pio_batch_free(&direct);
}

static void test_api_edges(void)
{
	struct pio_reader *r = NULL;
	struct pio_err err = {{0}};
	struct pio_batch b;
	const uint8_t *d;
	uint32_t l;
	static const int codes[] = {PIO_ENOMEM,	  PIO_EINVAL,	  PIO_ENOENT,	PIO_ENOTHDF5,
				    PIO_ECORRUPT, PIO_ENODATASET, PIO_ENOFIELD, PIO_ETYPE,
				    PIO_ESHAPE,	  PIO_ELENGTH,	  PIO_ERANGE,	PIO_EMIXED,
				    PIO_EREAD,	  PIO_EWRITE,	  PIO_EVALUE,	PIO_ETHREAD};

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		CU_ASSERT(strcmp(pio_strerror(codes[i]), "unknown pio error") != 0);
		CU_ASSERT(pio_error_class(codes[i]) != PIO_CLASS_OK);
	}
	CU_ASSERT_STRING_EQUAL(pio_strerror(-1), "unknown pio error");
	CU_ASSERT(pio_error_class(PIO_EWRITE) == PIO_CLASS_OUTPUT);
	CU_ASSERT(pio_error_class(PIO_ENOMEM) == PIO_CLASS_NOMEM);
	CU_ASSERT(pio_error_class(PIO_EINVAL) == PIO_CLASS_USAGE);
	CU_ASSERT(pio_reader_open(NULL, 0, NULL, &r, &err) == PIO_EINVAL);
	CU_ASSERT(r == NULL);
	CU_ASSERT(pio_reader_open(NULL, 0, NULL, &r, NULL) == PIO_EINVAL);
	pio_reader_close(NULL);
	pio_prefetch_stop(NULL);
	pio_writer_abort(NULL);
	pio_batch_free(NULL);
	pio_batch_init(&b);
	CU_ASSERT(pio_batch_blob(&b, 0, &d, &l) == PIO_EINVAL);
	CU_ASSERT(pio_reader_next(NULL, &b, &err) == PIO_EINVAL);
}

/* Whether s is well-formed UTF-8 (the shortest forms are not checked: a cut cannot make
 * them). */
static bool utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		int n; /* continuation bytes */

		if (*p < 0x80)
			n = 0;
		else if ((*p & 0xE0) == 0xC0)
			n = 1;
		else if ((*p & 0xF0) == 0xE0)
			n = 2;
		else if ((*p & 0xF8) == 0xF0)
			n = 3;
		else
			return false;
		for (p++; n > 0; n--, p++)
			if ((*p & 0xC0) != 0x80)
				return false;
	}
	return true;
}

static bool ends_with(const char *s, const char *end)
{
	size_t a = strlen(s), b = strlen(end);

	return a >= b && strcmp(s + a - b, end) == 0;
}

/* pio_msgf as snprintf for what fits; a longer message keeps its head and its end (the
 * reason), joined by "...", cut between characters; pio_seterr's messages too. */
static void test_messages(void)
{
	char buf[64], name[2101], *path;
	struct pio_reader *r = NULL;
	struct pio_input in;
	struct pio_err err;
	size_t i, size;

	pio_msgf(buf, sizeof(buf), "%s: %d", "short", 7);
	CU_ASSERT_STRING_EQUAL(buf, "short: 7");
	pio_msgf(buf, sizeof(buf), "a\nb\rc");
	CU_ASSERT_STRING_EQUAL(buf, "a b c");
	pio_msgf(buf, 8, "%s", "abcdefghij"); /* too small to cut: truncated */
	CU_ASSERT_STRING_EQUAL(buf, "abcdefg");

	memset(name, 'n', 200);
	name[0] = '/';
	name[199] = 'Z';
	name[200] = 0;
	pio_msgf(buf, sizeof(buf), "%s: cannot open: No such file", name);
	CU_ASSERT(strlen(buf) == sizeof(buf) - 1);
	CU_ASSERT(strncmp(buf, "/nnn", 4) == 0);
	CU_ASSERT(strstr(buf, "n...n") != NULL);
	CU_ASSERT(ends_with(buf, "nZ: cannot open: No such file"));

	for (i = 0; i < 100; i++) { /* "é" a hundred times */
		name[2 * i] = (char)0xC3;
		name[2 * i + 1] = (char)0xA9;
	}
	name[200] = 0;
	for (size = 17; size <= sizeof(buf); size++) {
		pio_msgf(buf, size, "%s: x", name);
		CU_ASSERT(utf8_ok(buf));
		CU_ASSERT(strlen(buf) < size && strlen(buf) + 4 >= size);
		CU_ASSERT(strstr(buf, "...") != NULL);
		CU_ASSERT(ends_with(buf, "\xC3\xA9: x"));
	}

	/* the reader's message of a missing file of 2100 bytes' name */
	memset(name, 'd', sizeof(name) - 1);
	for (i = 0; i + 1 < sizeof(name); i += 100)
		name[i] = '/';
	memcpy(name + sizeof(name) - 8, "miss.h5", 8);
	path = name;
	memset(&in, 0, sizeof(in));
	in.file = path;
	in.dataset = "/data";
	in.count = PIO_TO_END;
	err.msg[0] = 0;
	CU_ASSERT(pio_reader_open(&in, 1, NULL, &r, &err) == PIO_ENOENT);
	CU_ASSERT(r == NULL);
	CU_ASSERT(strncmp(err.msg, "/ddd", 4) == 0);
	CU_ASSERT(strstr(err.msg, "...") != NULL);
	CU_ASSERT(strstr(err.msg, "dmiss.h5: dataset /data: ") != NULL);
	CU_ASSERT(ends_with(err.msg, "No such file or directory"));
}

/* pio_type_merge against the rule spelled out field by field. */
static void test_type_merge(void)
{
	struct pio_type m, t, was;
	char n[96];

	/* a fixed ASCII string widened by a variable-length UTF-8 one: vlen, UTF-8, m's pad */
	memset(&m, 0, sizeof(m));
	m.cls = PIO_V_STRING;
	m.width = 5;
	m.pad = PIO_PAD_SPACEPAD;
	t = m;
	t.vlen = true;
	t.width = 0;
	t.pad = PIO_PAD_NULLTERM;
	t.cset = PIO_CSET_UTF8;
	CU_ASSERT(pio_type_merge(&m, &t, false) == 0);
	CU_ASSERT_STRING_EQUAL(pio_type_name(&m, n, sizeof(n)), "string vlen utf8");
	CU_ASSERT(m.vlen && m.width == 0 && m.pad == PIO_PAD_SPACEPAD);
	/* a vlen string stays vlen whatever follows */
	t = m;
	t.vlen = false;
	t.width = 40;
	CU_ASSERT(pio_type_merge(&m, &t, true) == 0 && m.vlen && m.width == 0);
	/* fixed strings: the larger width, ASCII while both are */
	memset(&m, 0, sizeof(m));
	m.cls = PIO_V_STRING;
	m.width = 16;
	t = m;
	t.width = 8;
	CU_ASSERT(pio_type_merge(&m, &t, true) == 0 && m.width == 16 && m.cset == PIO_CSET_ASCII);
	t.width = 20;
	CU_ASSERT(pio_type_merge(&m, &t, true) == 0 && m.width == 20);
	/* integer values widen and keep m's byte order; keys of two widths do not merge */
	memset(&m, 0, sizeof(m));
	m.cls = PIO_V_INT;
	m.width = 2;
	m.big_endian = true;
	t = m;
	t.width = 8;
	t.big_endian = false;
	was = m;
	CU_ASSERT(pio_type_merge(&m, &t, true) == PIO_EMIXED);
	CU_ASSERT(memcmp(&m, &was, sizeof(m)) == 0);
	CU_ASSERT(pio_type_merge(&m, &t, false) == 0);
	CU_ASSERT_STRING_EQUAL(pio_type_name(&m, n, sizeof(n)), "int64be");
	t.width = 1;
	CU_ASSERT(pio_type_merge(&m, &t, false) == 0 && m.width == 8);
	/* opaque: one size (keys and values: a record of another size would not fit, and the
	 * wider type made KBs that verify refused), m's tag */
	memset(&m, 0, sizeof(m));
	m.cls = PIO_V_OPAQUE;
	m.width = 4;
	strcpy(m.tag, "first");
	t = m;
	t.width = 12;
	strcpy(t.tag, "second");
	was = m;
	CU_ASSERT(pio_type_merge(&m, &t, true) == PIO_EMIXED);
	CU_ASSERT(pio_type_merge(&m, &t, false) == PIO_EMIXED);
	CU_ASSERT(memcmp(&m, &was, sizeof(m)) == 0);
	t.width = 4;
	CU_ASSERT(pio_type_merge(&m, &t, true) == 0);
	CU_ASSERT_STRING_EQUAL(pio_type_name(&m, n, sizeof(n)), "opaque[4] tag=first");
	/* classes differ: an error, m untouched (int and uint, number and string) */
	t.cls = PIO_V_STRING;
	was = m;
	CU_ASSERT(pio_type_merge(&m, &t, false) == PIO_EMIXED);
	CU_ASSERT(memcmp(&m, &was, sizeof(m)) == 0);
	memset(&m, 0, sizeof(m));
	m.cls = PIO_V_INT;
	m.width = 4;
	t = m;
	t.cls = PIO_V_UINT;
	CU_ASSERT(pio_type_merge(&m, &t, false) == PIO_EMIXED && m.cls == PIO_V_INT);
}

/*
 * h5py's LZF (filter 32000), on liblzf: one dataset with h5py's parameters (the chunk's size
 * in the third), one with none (the decoder grows its buffer until a chunk fits), each with
 * a chunk stored unfiltered (its filter mask says so, as HDF5 stores a chunk LZF cannot
 * shrink). The chunks' stored sizes show that the others did go through LZF.
 */
#define LZF_N 3000
#define LZF_CHUNK 1000

struct lzf_rec {
	char key[8];
	int64_t value;
};

static void write_lzf(hid_t f, const char *name, size_t ncd)
{
	static struct lzf_rec rec[LZF_N];
	unsigned cd[3] = {4, 0x0105, (unsigned)(LZF_CHUNK * sizeof(*rec))};
	hsize_t dims = LZF_N, chunk = LZF_CHUNK, off = 2 * LZF_CHUNK, size = 0;
	hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(*rec)), s8 = H5Tcopy(H5T_C_S1);
	hid_t sp = H5Screate_simple(1, &dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), d;
	haddr_t addr;
	unsigned mask;

	H5Tset_size(s8, 8);
	H5Tset_strpad(s8, H5T_STR_NULLPAD);
	H5Tinsert(t, "key", offsetof(struct lzf_rec, key), s8);
	H5Tinsert(t, "value", offsetof(struct lzf_rec, value), H5T_STD_I64LE);
	H5Tclose(s8);
	H5Pset_chunk(dcpl, 1, &chunk);
	CU_ASSERT(H5Pset_filter(dcpl, 32000, H5Z_FLAG_OPTIONAL, ncd, cd) >= 0);
	d = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	CU_ASSERT_FATAL(d >= 0);
	memset(rec, 0, sizeof(rec));
	for (size_t i = 0; i < LZF_N; i++) {
		snprintf(rec[i].key, sizeof(rec[i].key), "k%06zu", i);
		rec[i].value = (int64_t)i * 3 - 7;
	}
	CU_ASSERT(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, rec) >= 0);
	CU_ASSERT(H5Dwrite_chunk(d, H5P_DEFAULT, 1u, &off, LZF_CHUNK * sizeof(*rec), rec + off) >=
		  0);
	for (off = 0; off < LZF_N; off += LZF_CHUNK) {
		CU_ASSERT(H5Dget_chunk_info_by_coord(d, &off, &mask, &addr, &size) >= 0);
		CU_ASSERT(off < 2 * LZF_CHUNK ? size < LZF_CHUNK * sizeof(*rec) / 2 && mask == 0
					      : size == LZF_CHUNK * sizeof(*rec) && mask == 1);
	}
	H5Dclose(d);
	H5Pclose(dcpl);
	H5Sclose(sp);
	H5Tclose(t);
}

static void test_lzf(void)
{
	const char *names[] = {"/sized", "/unsized"};
	char file[1024];
	hid_t f;

	pio_register_filters();
	snprintf(file, sizeof(file), "%s/lzf_chunks.h5", fx_dir());
	f = H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
	CU_ASSERT_FATAL(f >= 0);
	write_lzf(f, names[0], 3);
	write_lzf(f, names[1], 0);
	H5Fclose(f);
	for (int k = 0; k < 2; k++) {
		struct pio_input in = {.file = file, .dataset = names[k], .count = PIO_TO_END};
		struct pio_reader_opts opts = {.batch_records = 700};
		struct pio_reader *r = NULL;
		struct pio_err err = {{0}};
		struct pio_batch b;
		size_t seen = 0, bad = 0;
		int rc;

		rc = pio_reader_open(&in, 1, &opts, &r, &err);
		CU_ASSERT_EQUAL_FATAL(rc, 0);
		pio_batch_init(&b);
		while ((rc = pio_reader_next(r, &b, &err)) == 1) {
			for (size_t i = 0; i < b.n; i++, seen++) {
				char want[16];
				size_t len = b.key_off[i + 1] - b.key_off[i];

				snprintf(want, sizeof(want), "k%06zu", seen);
				bad += len != strlen(want) ||
				       memcmp(b.keys + b.key_off[i], want, len) ||
				       (int64_t)b.vals[i] != (int64_t)seen * 3 - 7;
			}
		}
		CU_ASSERT_EQUAL(rc, 0);
		if (rc)
			fprintf(stderr, "%s: %s\n", names[k], err.msg);
		CU_ASSERT_EQUAL(seen, LZF_N);
		CU_ASSERT_EQUAL(bad, 0);
		pio_batch_free(&b);
		pio_reader_close(r);
	}
}

int main(void)
{
	CU_pSuite s;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("io_read", NULL, NULL);
	CU_add_test(s, "every type, padding and layout (h5py fixtures)", test_good_cases);
	CU_add_test(s, "bad inputs: code, one-line message, HDF5 silent", test_bad_cases);
	CU_add_test(s, "truncated file folds HDF5's message", test_truncated_folds_hdf5_message);
	CU_add_test(s, "damaged chunk: read error at the right batch", test_damaged_chunk);
	CU_add_test(s, "batches aligned to chunks and sized by budget", test_batches_aligned);
	CU_add_test(s, "several inputs and files in one job", test_multi_input);
	CU_add_test(s, "prefetch (double buffering) equals direct reads", test_prefetch);
	CU_add_test(s, "API edges: codes, NULLs", test_api_edges);
	CU_add_test(s, "long messages keep their reason", test_messages);
	CU_add_test(s, "type widening of a job's inputs (pio_type_merge)", test_type_merge);
	CU_add_test(s, "h5py's LZF chunks, with and without their size", test_lzf);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	{
		int failed = CU_get_number_of_failures() != 0;

		CU_cleanup_registry();
		return failed;
	}
}
