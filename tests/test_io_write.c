/*
 * test_io_write.c - the exporter and the generator.
 *
 * Every fixture case is read, written back by the exporter in both layouts, and read again:
 * the records and the declared types must come back identical (the h5py check script then
 * compares the written files with the originals from Python). PIO_FIXTURES names the fixture
 * directory; PIO_OUT the directory to write into.
 */
#define _POSIX_C_SOURCE 200809L
#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_io_common.h"

static const char *out_dir(void)
{
	const char *d = getenv("PIO_OUT");

	return d && *d ? d : ".";
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/* Reads a whole single-input job into one batch; returns the reader's merged types. */
static int read_one(const struct pio_input *in, struct pio_batch *b, struct pio_type *kt,
		    struct pio_type *vt)
{
	struct pio_reader_opts o = {.batch_records = 1 << 20};
	struct pio_reader *r;
	struct pio_err err = {{0}};
	int rc = pio_reader_open(in, 1, &o, &r, &err);

	if (rc) {
		fprintf(stderr, "%s\n", err.msg);
		return rc;
	}
	pio_reader_types(r, kt, vt);
	rc = pio_reader_next(r, b, &err);
	if (rc < 0)
		fprintf(stderr, "%s\n", err.msg);
	pio_reader_close(r);
	return rc < 0 ? rc : 0;
}

static char *read_text(const struct pio_input *in)
{
	struct pio_reader *r;
	struct pio_err err = {{0}};
	size_t nb;
	char *t;

	if (pio_reader_open(in, 1, NULL, &r, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return NULL;
	}
	t = fx_read_all(r, &nb);
	pio_reader_close(r);
	return t;
}

static void test_roundtrip_every_case(void)
{
	struct tcase *cs;
	int n = fx_cases("cases.txt", &cs);

	CU_ASSERT_FATAL(n >= 30);
	for (int i = 0; i < n; i++) {
		for (int layout = 0; layout < 2; layout++) {
			struct pio_input in = fx_input(&cs[i]), back = {0};
			struct pio_writer_opts wo = {0};
			struct pio_type kt, vt;
			struct pio_writer *w;
			struct pio_batch b;
			struct pio_err err = {{0}};
			char file[1024], want_path[1024];
			char *got, *want;
			bool ok;

			snprintf(file, sizeof(file), "%s/rt_%s_%s.h5", out_dir(), cs[i].name,
				 layout ? "pair" : "compound");
			wo.file = file;
			wo.layout = layout ? PIO_LAYOUT_PAIR : PIO_LAYOUT_COMPOUND;
			wo.chunk_records = 7;
			wo.gzip = layout ? 0 : 4;
			wo.shuffle = !layout;
			wo.dataset = "/out/records";
			pio_batch_init(&b);
			CU_ASSERT_FATAL(read_one(&in, &b, &kt, &vt) == 0);
			CU_ASSERT_FATAL(pio_writer_open(&wo, &kt, &vt, &w, &err) == 0);
			ok = pio_writer_append_batch(w, &b, &err) == 0;
			if (!ok)
				fprintf(stderr, "case %s: %s\n", cs[i].name, err.msg);
			CU_ASSERT(ok);
			CU_ASSERT(pio_writer_commit(w, &err) == 0);
			pio_batch_free(&b);

			back.file = file;
			back.count = PIO_TO_END;
			if (layout) {
				back.keys = "/keys";
				back.values = "/values";
			} else {
				back.dataset = "/out/records";
			}
			got = read_text(&back);
			snprintf(want_path, sizeof(want_path), "%s/expect/%s.txt", fx_dir(),
				 cs[i].name);
			want = fx_slurp(want_path);
			ok = got && want && !strcmp(got, want);
			if (!ok)
				fprintf(stderr,
					"case %s (%s): round trip differs\n got: %.200s\n"
					"want: %.200s\n",
					cs[i].name, layout ? "pair" : "compound",
					got ? got : "NULL", want ? want : "NULL");
			CU_ASSERT(ok);
			free(got);
			free(want);
		}
	}
	free(cs);
}

static int write_records(const char *file, const struct pio_type *kt, const struct pio_type *vt,
			 size_t n, const uint8_t *keys, const size_t *off, const uint64_t *vals,
			 const uint8_t *heap, size_t heap_len, struct pio_err *err)
{
	struct pio_writer_opts wo = {.file = file, .layout = PIO_LAYOUT_COMPOUND};
	struct pio_writer *w;
	int rc = pio_writer_open(&wo, kt, vt, &w, err);

	if (rc)
		return rc;
	rc = pio_writer_append(w, n, keys, off, vals, heap, heap_len, err);
	if (rc) {
		pio_writer_abort(w);
		return rc;
	}
	return pio_writer_commit(w, err);
}

static void test_refused_values(void)
{
	struct pio_type s4 = {.cls = PIO_V_STRING, .width = 4, .pad = PIO_PAD_NULLPAD};
	struct pio_type vs = {.cls = PIO_V_STRING, .vlen = true};
	struct pio_type i8 = {.cls = PIO_V_INT, .width = 1};
	struct pio_type i64 = {.cls = PIO_V_INT, .width = 8};
	const uint8_t keys[] = "abcdefgh\0z";
	size_t off_long[] = {0, 2, 7};	/* "ab", "cdefg": too long for string[4] */
	size_t off_nul[] = {0, 1, 3};	/* "a", "b"... */
	size_t off_vnul[] = {0, 8, 10}; /* "abcdefgh", "\0z": NUL in a vlen string */
	uint64_t vals[] = {1, 2};
	uint64_t big[] = {1, 300};
	char file[1024];
	struct pio_err err = {{0}};

	snprintf(file, sizeof(file), "%s/refused.h5", out_dir());
	unlink(file);
	CU_ASSERT(write_records(file, &s4, &i64, 2, keys, off_long, vals, NULL, 0, &err) ==
		  PIO_EVALUE);
	CU_ASSERT(strstr(err.msg, "record 1: key of 5 bytes: longer than the fixed string "
				  "length") != NULL);
	CU_ASSERT(strstr(err.msg, "refused.h5: dataset /data") != NULL);
	CU_ASSERT(!exists(file));
	CU_ASSERT(write_records(file, &vs, &i64, 2, keys, off_vnul, vals, NULL, 0, &err) ==
		  PIO_EVALUE);
	CU_ASSERT(strstr(err.msg, "NUL byte in a variable-length string") != NULL);
	CU_ASSERT(write_records(file, &s4, &i8, 2, keys, off_nul, big, NULL, 0, &err) ==
		  PIO_EVALUE);
	CU_ASSERT(strstr(err.msg, "record 1: value: integer out of range") != NULL);
	CU_ASSERT(write_records(file, &s4, &vs, 2, keys, off_nul, vals, NULL, 0, &err) ==
		  PIO_EVALUE);
	CU_ASSERT(strstr(err.msg, "outside the value heap") != NULL);
	CU_ASSERT(!exists(file));
	/* Nothing is left behind: no final file, no temporary file. */
	snprintf(file, sizeof(file), "%s/refused.h5.tmp.%ld", out_dir(), (long)getpid());
	CU_ASSERT(!exists(file));
}

static void test_abort_and_bad_output(void)
{
	struct pio_type s4 = {.cls = PIO_V_STRING, .width = 4, .pad = PIO_PAD_NULLPAD};
	struct pio_type f32 = {.cls = PIO_V_FLOAT, .width = 4};
	struct pio_type f12 = {.cls = PIO_V_FLOAT, .width = 12};
	struct pio_writer_opts wo = {.layout = PIO_LAYOUT_PAIR};
	struct pio_writer *w = NULL;
	struct pio_err err = {{0}};
	char file[1024], tmp[1100];

	snprintf(file, sizeof(file), "%s/aborted.h5", out_dir());
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", file, (long)getpid());
	wo.file = file;
	CU_ASSERT_FATAL(pio_writer_open(&wo, &s4, &f32, &w, &err) == 0);
	CU_ASSERT(exists(tmp) && !exists(file));
	pio_writer_abort(w);
	CU_ASSERT(!exists(tmp) && !exists(file));

	wo.file = "/nonexistent-dir/out.h5";
	w = NULL;
	CU_ASSERT(pio_writer_open(&wo, &s4, &f32, &w, &err) == PIO_EWRITE);
	CU_ASSERT(w == NULL);
	CU_ASSERT(strstr(err.msg, "/nonexistent-dir/out.h5: cannot create the temporary file") !=
		  NULL);
	CU_ASSERT(pio_error_class(PIO_EWRITE) == PIO_CLASS_OUTPUT);
	wo.file = file;
	/* types HDF5 cannot hold here: the content is refused, not the call */
	CU_ASSERT(pio_writer_open(&wo, &f32, &f32, &w, &err) == PIO_EVALUE);
	CU_ASSERT(pio_writer_open(&wo, &s4, &f12, &w, &err) == PIO_EVALUE);
	wo.gzip = 10;
	CU_ASSERT(pio_writer_open(&wo, &s4, &f32, &w, &err) == PIO_EINVAL);
}

static char *gen_file(const char *name, enum pio_gen_keys kind, enum pio_gen_values vk, double dup,
		      double zipf, uint64_t seed, uint64_t records)
{
	static char file[1024];
	struct pio_gen_opts o = {0};
	struct pio_err err = {{0}};
	int rc;

	snprintf(file, sizeof(file), "%s/%s", out_dir(), name);
	o.out.file = file;
	o.out.layout = PIO_LAYOUT_COMPOUND;
	o.out.chunk_records = 1000;
	o.out.gzip = 1;
	o.records = records;
	o.key_kind = kind;
	o.value_kind = vk;
	o.dup_ratio = dup;
	o.zipf = zipf;
	o.seed = seed;
	rc = pio_generate(&o, &err);
	if (rc)
		fprintf(stderr, "gen: %s\n", err.msg);
	return rc ? NULL : file;
}

struct keyref {
	const uint8_t *p; /* key bytes */
	size_t n;	  /* key length */
};

static int cmp_ref(const void *a, const void *b)
{
	const struct keyref *x = a, *y = b;
	size_t m = x->n < y->n ? x->n : y->n;
	int c = memcmp(x->p, y->p, m);

	return c ? c : (x->n > y->n) - (x->n < y->n);
}

static size_t distinct_keys(const struct pio_batch *b)
{
	struct keyref *refs = malloc(b->n * sizeof(*refs));
	size_t d = 0;

	for (size_t i = 0; i < b->n; i++) {
		refs[i].p = b->keys + b->key_off[i];
		refs[i].n = b->key_off[i + 1] - b->key_off[i];
	}
	qsort(refs, b->n, sizeof(*refs), cmp_ref);
	for (size_t i = 0; i < b->n; i++)
		if (i == 0 || cmp_ref(&refs[i], &refs[i - 1]))
			d++;
	free(refs);
	return d;
}

static void test_generator(void)
{
	static const enum pio_gen_keys kinds[] = {PIO_GEN_RANDOM, PIO_GEN_U64, PIO_GEN_PATH,
						  PIO_GEN_WORDS};
	char a_path[1024];
	char *a, *b;
	struct pio_input in = {.dataset = "/data", .count = PIO_TO_END};
	struct pio_batch batch;
	struct pio_type kt, vt;
	char kn[96];

	/* Same options, same bytes; another seed, other bytes. */
	for (size_t k = 0; k < 4; k++) {
		char *t1, *t2;

		a = gen_file("gen_a.h5", kinds[k], PIO_GEN_STRING, 0.3, 1.2, 7, 5000);
		CU_ASSERT_FATAL(a != NULL);
		snprintf(a_path, sizeof(a_path), "%s", a);
		b = gen_file("gen_b.h5", kinds[k], PIO_GEN_STRING, 0.3, 1.2, 7, 5000);
		CU_ASSERT_FATAL(b != NULL);
		t1 = fx_slurp(a_path);
		t2 = fx_slurp(b);
		CU_ASSERT(t1 && t2);
		{
			struct stat s1, s2;

			stat(a_path, &s1);
			stat(b, &s2);
			CU_ASSERT(s1.st_size == s2.st_size);
			if (t1 && t2 && s1.st_size == s2.st_size)
				CU_ASSERT(!memcmp(t1, t2, (size_t)s1.st_size));
		}
		free(t1);
		free(t2);
		b = gen_file("gen_b.h5", kinds[k], PIO_GEN_STRING, 0.3, 1.2, 8, 5000);
		CU_ASSERT_FATAL(b != NULL);
		{
			struct stat s1, s2;

			stat(a_path, &s1);
			stat(b, &s2);
			t1 = fx_slurp(a_path);
			t2 = fx_slurp(b);
			CU_ASSERT(s1.st_size != s2.st_size ||
				  memcmp(t1, t2, (size_t)s1.st_size) != 0);
			free(t1);
			free(t2);
		}
	}

	/* No duplicates asked: every key distinct (U64, PATH and WORDS are bijections). */
	for (size_t k = 0; k < 4; k++) {
		a = gen_file("gen_c.h5", kinds[k], PIO_GEN_INT64, 0, 0, 3, 20000);
		CU_ASSERT_FATAL(a != NULL);
		in.file = a;
		pio_batch_init(&batch);
		CU_ASSERT_FATAL(read_one(&in, &batch, &kt, &vt) == 0);
		CU_ASSERT(batch.n == 20000);
		CU_ASSERT(distinct_keys(&batch) == 20000);
		for (size_t i = 0; i < batch.n; i++)
			if (batch.vals[i] != i) {
				CU_FAIL("value of record i is not i");
				break;
			}
		if (kinds[k] == PIO_GEN_RANDOM)
			CU_ASSERT_STRING_EQUAL(pio_type_name(&kt, kn, sizeof(kn)),
					       "string[16] nullpad ascii");
		if (kinds[k] == PIO_GEN_U64)
			CU_ASSERT_STRING_EQUAL(pio_type_name(&kt, kn, sizeof(kn)), "uint64");
		if (kinds[k] == PIO_GEN_PATH) {
			CU_ASSERT_STRING_EQUAL(pio_type_name(&kt, kn, sizeof(kn)),
					       "string vlen ascii");
			CU_ASSERT(!memcmp(batch.keys, "/", 1));
		}
		pio_batch_free(&batch);
	}

	/* A duplicate ratio of 0.4 leaves about 60% distinct keys (uniform repeats). */
	a = gen_file("gen_d.h5", PIO_GEN_U64, PIO_GEN_FLOAT64, 0.4, 0, 11, 20000);
	CU_ASSERT_FATAL(a != NULL);
	in.file = a;
	pio_batch_init(&batch);
	CU_ASSERT_FATAL(read_one(&in, &batch, &kt, &vt) == 0);
	{
		size_t d = distinct_keys(&batch);
		double v;

		CU_ASSERT(d > 11500 && d < 12500);
		memcpy(&v, &batch.vals[10], 8);
		CU_ASSERT(v == 2.5);
		CU_ASSERT(vt.cls == PIO_V_FLOAT && vt.width == 8);
	}
	pio_batch_free(&batch);

	/* Zipf: the first key is by far the most repeated. */
	a = gen_file("gen_e.h5", PIO_GEN_U64, PIO_GEN_INT64, 0.5, 1.5, 5, 20000);
	CU_ASSERT_FATAL(a != NULL);
	in.file = a;
	pio_batch_init(&batch);
	CU_ASSERT_FATAL(read_one(&in, &batch, &kt, &vt) == 0);
	{
		size_t first = 0, second = 0;

		for (size_t i = 0; i < batch.n; i++) {
			if (!memcmp(batch.keys + batch.key_off[i], batch.keys, 8))
				first++;
			if (!memcmp(batch.keys + batch.key_off[i], batch.keys + batch.key_off[1],
				    8))
				second++;
		}
		CU_ASSERT(first > 2000);
		CU_ASSERT(first > second);
	}
	pio_batch_free(&batch);
}

int main(void)
{
	CU_pSuite s;
	int failed;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite("io_write", NULL, NULL);
	CU_add_test(s, "export round trip of every fixture case, both layouts",
		    test_roundtrip_every_case);
	CU_add_test(s, "keys and values that do not fit are refused", test_refused_values);
	CU_add_test(s, "abort and unwritable outputs leave nothing", test_abort_and_bad_output);
	CU_add_test(s, "generator: deterministic, distinct, dup ratio, zipf", test_generator);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() != 0;
	CU_cleanup_registry();
	return failed;
}
