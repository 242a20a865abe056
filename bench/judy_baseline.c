/*
 * judy_baseline.c - the hand-written baseline of the ingest benchmark: 256 hash-partitioned
 * JudySL arrays filled by `omp parallel for`, reading the HDF5 file with the same io/ reader
 * (and the same prefetch thread) as pmingest.
 *
 *   judy_baseline FILE.h5[:/dataset] [THREADS]
 *
 * Per batch: XXH3 of every key (parallel), a counting sort of record indices by partition,
 * then `omp parallel for schedule(dynamic)` over the 256 arrays; the last value of a key
 * wins. Prints one JSON line: seconds (read wait, fill, total), records/s, distinct keys.
 * Keys must not contain NUL (JudySL keys are C strings).
 */
#define _POSIX_C_SOURCE 200809L
#include <Judy.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "pio.h"
#include "pme_malloc.h"

const char *malloc_conf = PME_MALLOC_CONF; /* as pmingest: see pme_malloc.h */

#define NPART 256

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	static Pvoid_t arr[NPART];
	struct pio_input in;
	struct pio_reader *rd;
	struct pio_prefetch *pf;
	struct pio_batch *b;
	struct pio_err pe;
	char file[4096], *colon;
	uint8_t *pid = NULL;
	uint32_t *idx = NULL;
	size_t cap = 0, start[NPART + 1], total = 0, distinct = 0;
	double t0 = now(), t_read = 0, t_fill = 0, t;
	int threads, rc, p;

	if (argc < 2) {
		fprintf(stderr, "usage: judy_baseline FILE.h5[:/dataset] [THREADS]\n");
		return 2;
	}
	threads = argc > 2 ? atoi(argv[2]) : omp_get_max_threads();
	snprintf(file, sizeof(file), "%s", argv[1]);
	memset(&in, 0, sizeof(in));
	colon = strstr(file, ":/");
	in.dataset = "/data";
	if (colon) {
		*colon = '\0';
		in.dataset = colon + 1;
	}
	in.file = file;
	in.count = PIO_TO_END;
	if (pio_reader_open(&in, 1, NULL, &rd, &pe) || pio_prefetch_start(rd, 2, &pf, &pe)) {
		fprintf(stderr, "judy_baseline: %s\n", pe.msg);
		return 3;
	}
	for (;;) {
		size_t n, i, run;

		t = now();
		rc = pio_prefetch_next(pf, &b, &pe);
		t_read += now() - t;
		if (rc <= 0)
			break;
		t = now();
		n = b->n;
		if (n > cap) {
			pid = realloc(pid, n);
			idx = realloc(idx, n * sizeof(*idx));
			cap = n;
		}
#pragma omp parallel for num_threads(threads)
		for (size_t r = 0; r < n; r++)
			pid[r] = (uint8_t)XXH3_64bits(b->keys + b->key_off[r],
						      b->key_off[r + 1] - b->key_off[r]);
		memset(start, 0, sizeof(start));
		for (i = 0; i < n; i++)
			start[pid[i] + 1]++;
		for (p = 0, run = 0; p <= NPART; p++) {
			run += start[p];
			start[p] = run;
		}
		{
			size_t cur[NPART];

			memcpy(cur, start, sizeof(cur));
			for (i = 0; i < n; i++)
				idx[cur[pid[i]]++] = (uint32_t)i;
		}
#pragma omp parallel for schedule(dynamic) num_threads(threads)
		for (int q = 0; q < NPART; q++) {
			uint8_t key[1024];

			for (size_t j = start[q]; j < start[q + 1]; j++) {
				uint32_t r = idx[j];
				size_t len = b->key_off[r + 1] - b->key_off[r];
				PWord_t v;

				if (len >= sizeof(key))
					len = sizeof(key) - 1;
				memcpy(key, b->keys + b->key_off[r], len);
				key[len] = '\0';
				JSLI(v, arr[q], key);
				*v = b->vals[r];
			}
		}
		t_fill += now() - t;
		total += n;
	}
	pio_prefetch_stop(pf);
	pio_reader_close(rd);
	if (rc < 0) {
		fprintf(stderr, "judy_baseline: %s\n", pe.msg);
		return 3;
	}
	t = now() - t0;
	for (p = 0; p < NPART; p++) {
		uint8_t key[1024] = "";
		PWord_t v;

		JSLF(v, arr[p], key);
		while (v) {
			distinct++;
			JSLN(v, arr[p], key);
		}
	}
	printf("{\"program\": \"judy_baseline\", \"threads\": %d, \"records\": %zu, "
	       "\"distinct_keys\": %zu, \"seconds\": {\"read\": %.6f, \"fill\": %.6f, "
	       "\"total\": %.6f}, \"records_per_s\": %.1f}\n",
	       threads, total, distinct, t_read, t_fill, t, (double)total / t);
	for (p = 0; p < NPART; p++) {
		Word_t bytes;

		JSLFA(bytes, arr[p]);
		(void)bytes;
	}
	free(pid);
	free(idx);
	return 0;
}
