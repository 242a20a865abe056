/*
 * fresh_memory.c - how long the first touch of fresh memory takes on this machine.
 *
 *   fresh_memory [MIB] [PAUSE_S]
 *
 * Maps MIB (default 2048) MiB of anonymous memory and writes one byte per 4 KiB page, three
 * times back to back, then three times each after a pause of PAUSE_S seconds (default 20).
 * A fill builds its nodes on fresh memory, so it inherits what a first touch costs and how
 * much that varies. On a virtual machine the host may have to back each fresh page too (and,
 * when the balloon reports free pages, again for pages the guest freed a while ago): here,
 * 2 GiB took 0.85 s to 2.6 s from one round to the next. Run it before comparing fill times
 * taken at different moments.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds to touch every page of a fresh mapping of n bytes, or -1. */
static double touch(size_t n)
{
	volatile char *p;
	double t0, t;
	size_t i;

	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	t0 = now();
	for (i = 0; i < n; i += 4096)
		p[i] = 1;
	t = now() - t0;
	munmap((void *)p, n);
	return t;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 2048;
	unsigned pause = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 20;
	size_t n = mib << 20;
	int r;

	if (!mib || mib > ((size_t)1 << 24)) {
		fprintf(stderr, "usage: fresh_memory [MIB (1..16777216)] [PAUSE_S]\n");
		return 2;
	}
	for (r = 0; r < 6; r++) {
		double t;

		if (r >= 3)
			sleep(pause);
		t = touch(n);
		if (t < 0) {
			fprintf(stderr, "fresh_memory: cannot map %zu MiB\n", mib);
			return 1;
		}
		printf("%s %zu MiB: %.3f s, %.2f us/page\n",
		       r < 3 ? "back to back" : "after pause ", mib, t,
		       t / (double)(n / 4096) * 1e6);
		fflush(stdout);
	}
	return 0;
}
