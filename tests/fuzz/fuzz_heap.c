/*
 * fuzz_heap.c - libFuzzer target over the check of variable-length string references
 * (io/src/heapcheck.c), which parses heap collections out of untrusted files: any bytes and
 * references must be accepted or refused without a read outside the file's bytes, a loop or
 * a leak.
 *
 * Input: byte 0 picks the file's sizes of addresses (bits 0-1: 2, 4, 8 or 8 bytes) and of
 * lengths (bits 2-3, the same), two fields a record (bit 4) and a user block of 512 bytes
 * (bit 5), the strings read out too (bit 6); byte 1 the number of references (at most 32,
 * even for two fields); then the references, 4 + sa + 4 bytes each; the rest is the file (in
 * a memfd).
 *
 * Build with clang -fsanitize=fuzzer,address (tests/fuzz/run_fuzz_heap.sh), or link with
 * replay_main.c to run a corpus as an ordinary test.
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pio_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The strings' memory: every block is freed after the run. */
struct blocks {
	void *p[64]; /* at most 32 references, two fields */
	size_t n;
};

static void *block_alloc(size_t len, void *arg)
{
	struct blocks *b = arg;

	if (b->n == sizeof(b->p) / sizeof(b->p[0]))
		abort();
	return b->p[b->n++] = malloc(len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t sizes[4] = {2, 4, 8, 8};
	const char *what[2] = {"key", NULL};
	struct pio_vlcheck *c;
	struct pio_err err;
	struct blocks b = {.n = 0};
	const size_t offs[2] = {0, sizeof(char *)};
	char *out[64];
	size_t sa, ss, n, rs, off;
	int fd;

	if (size < 2)
		return 0;
	sa = sizes[data[0] & 3];
	ss = sizes[(data[0] >> 2) & 3];
	if (data[0] & 16)
		what[1] = "value";
	n = data[1] % 33;
	if (what[1])
		n &= ~(size_t)1;
	rs = 8 + sa;
	off = 2 + n * rs;
	if (size < off)
		return 0;
	fd = memfd_create("fuzz_heap", MFD_CLOEXEC);
	if (fd < 0)
		abort();
	for (size_t done = off; done < size;) {
		ssize_t w = write(fd, data + done, size - done);

		if (w <= 0)
			abort();
		done += (size_t)w;
	}
	if (pio_vlcheck_open_fd(fd, "fuzz.h5", data[0] & 32 ? 512 : 0, sa, ss, &c, &err))
		return 0;
	if (data[0] & 64) {
		(void)pio_vlcheck_strings(c, data + 2, what[1] ? n / 2 : n, (what[1] ? 2 : 1) * rs,
					  0, "/data", what, (uint8_t *)out, 2 * sizeof(char *),
					  offs, block_alloc, &b, &err);
		for (size_t i = 0; i < b.n; i++)
			free(b.p[i]);
	} else
		(void)pio_vlcheck_refs(c, data + 2, what[1] ? n / 2 : n, (what[1] ? 2 : 1) * rs, 0,
				       "/data", what, &err);
	pio_vlcheck_close(c);
	return 0;
}
