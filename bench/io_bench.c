/*
 * io_bench.c - read throughput of the io/ reader against a bare H5Dread of the whole dataset.
 *
 * usage: io_bench [RECORDS [DIR]]   (default 2000000 records, files in /tmp)
 *
 * Writes four datasets with the generator (compound {key, value int64}, chunks of 65536):
 *   fixed      16-byte random string keys (string[16] nullpad)
 *   fixed+gz   the same with gzip level 1 and shuffle
 *   vlen       variable-length path keys
 *   vlen+gz    the same with gzip level 1 and shuffle
 * then, for each, times (best of 3, warm page cache):
 *   floor      H5Dread of the whole dataset into one buffer in its native type
 *   reader     pio_reader_next() over the job, default memory budget
 *   prefetch   the same through pio_prefetch_next() (an I/O thread, consumer idle)
 * and checks the reader's result: N records whose values sum to N(N-1)/2 (values are 0..N-1).
 * MB/s counts the decoded payload: key bytes plus 8 bytes of value per record.
 */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pio.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double floor_read(const char *file)
{
	hid_t f, d, ft, mt, sp;
	hsize_t n;
	double t0, t;
	void *buf;

	t0 = now();
	f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
	d = H5Dopen2(f, "/data", H5P_DEFAULT);
	ft = H5Dget_type(d);
	mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
	sp = H5Dget_space(d);
	H5Sget_simple_extent_dims(sp, &n, NULL);
	buf = malloc(n * H5Tget_size(mt) + 1);
	if (!buf || H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
		fprintf(stderr, "floor read of %s failed\n", file);
		exit(1);
	}
	t = now() - t0;
	H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf); /* not timed: freeing only */
	free(buf);
	H5Sclose(sp);
	H5Tclose(mt);
	H5Tclose(ft);
	H5Dclose(d);
	H5Fclose(f);
	return t;
}

/* Reads the whole file with the reader; returns seconds, and the payload bytes in *bytes. */
static double reader_read(const char *file, bool prefetch, uint64_t n, double *bytes)
{
	struct pio_input in = {.file = file, .dataset = "/data", .count = PIO_TO_END};
	struct pio_reader *r;
	struct pio_prefetch *p = NULL;
	struct pio_batch own, *b = &own;
	struct pio_err err = {{0}};
	uint64_t count = 0, sum = 0, keybytes = 0;
	double t0, t;
	int rc;

	pio_batch_init(&own);
	t0 = now();
	if (pio_reader_open(&in, 1, NULL, &r, &err) ||
	    (prefetch && pio_prefetch_start(r, 2, &p, &err))) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
	for (;;) {
		rc = prefetch ? pio_prefetch_next(p, &b, &err) : pio_reader_next(r, &own, &err);
		if (rc != 1)
			break;
		count += b->n;
		keybytes += b->key_off[b->n];
		for (size_t i = 0; i < b->n; i++)
			sum += b->vals[i];
	}
	t = now() - t0;
	if (rc) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
	pio_prefetch_stop(p);
	pio_reader_close(r);
	pio_batch_free(&own);
	if (count != n || sum != n * (n - 1) / 2) {
		fprintf(stderr, "%s: read %llu records, value sum %llu: wrong\n", file,
			(unsigned long long)count, (unsigned long long)sum);
		exit(1);
	}
	*bytes = (double)keybytes + 8.0 * (double)n;
	return t;
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
	const char *dir = argc > 2 ? argv[2] : "/tmp";
	static const struct {
		const char *name;
		enum pio_gen_keys kind;
		int gzip;
	} sets[] = {
	    {"fixed", PIO_GEN_RANDOM, 0},
	    {"fixed+gz", PIO_GEN_RANDOM, 1},
	    {"vlen", PIO_GEN_PATH, 0},
	    {"vlen+gz", PIO_GEN_PATH, 1},
	};

	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
	printf("%-9s %10s | %-9s %8s %9s %8s | %s\n", "dataset", "records", "method", "seconds",
	       "Mrec/s", "MB/s", "x floor");
	for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
		struct pio_gen_opts o = {0};
		struct pio_err err = {{0}};
		char file[1024];
		double tf = 1e30, tr = 1e30, tp = 1e30, bytes = 0;

		snprintf(file, sizeof(file), "%s/io_bench_%ld_%zu.h5", dir, (long)getpid(), s);
		o.out.file = file;
		o.out.chunk_records = 65536;
		o.out.gzip = sets[s].gzip;
		o.out.shuffle = sets[s].gzip > 0;
		o.records = n;
		o.key_kind = sets[s].kind;
		o.value_kind = PIO_GEN_INT64;
		o.seed = 42;
		if (pio_generate(&o, &err)) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		for (int rep = 0; rep < 3; rep++) {
			double t;

			t = floor_read(file);
			tf = t < tf ? t : tf;
			t = reader_read(file, false, n, &bytes);
			tr = t < tr ? t : tr;
			t = reader_read(file, true, n, &bytes);
			tp = t < tp ? t : tp;
		}
		printf("%-9s %10llu | %-9s %8.3f %9.2f %8.1f | %s\n", sets[s].name,
		       (unsigned long long)n, "floor", tf, (double)n / tf / 1e6, bytes / tf / 1e6,
		       "1.00");
		printf("%-9s %10s | %-9s %8.3f %9.2f %8.1f | %.2f\n", "", "", "reader", tr,
		       (double)n / tr / 1e6, bytes / tr / 1e6, tr / tf);
		printf("%-9s %10s | %-9s %8.3f %9.2f %8.1f | %.2f\n", "", "", "prefetch", tp,
		       (double)n / tp / 1e6, bytes / tp / 1e6, tp / tf);
		fflush(stdout);
		unlink(file);
	}
	return 0;
}
