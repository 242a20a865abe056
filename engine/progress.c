/*
 * progress.c - progress on stderr: a live bar with records/s and ETA on a terminal, a plain
 * line every 10 seconds otherwise (batch job logs).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ingest.h"

struct pme_progress {
	uint64_t total; /* records expected (0: unknown) */
	bool tty;	/* draw a bar (else log lines) */
	double t0;	/* start, seconds */
	double last;	/* last print, seconds */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct pme_progress *pme_progress_start(uint64_t total, bool quiet, bool force_tty)
{
	struct pme_progress *p;

	if (quiet)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->total = total;
	p->tty = force_tty || isatty(STDERR_FILENO);
	p->t0 = now();
	p->last = p->t0;
	return p;
}

static void print(struct pme_progress *p, uint64_t done, double t, bool final)
{
	double el = t - p->t0, rate = el > 0 ? (double)done / el : 0;
	double frac = p->total ? (double)done / (double)p->total : 0, eta;
	char bar[31];
	int i, fill;

	if (frac > 1)
		frac = 1;
	eta = rate > 0 && p->total > done ? (double)(p->total - done) / rate : 0;
	if (p->tty) {
		fill = (int)(frac * 30);
		for (i = 0; i < 30; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[30] = '\0';
		fprintf(stderr, "\r[%s] %5.1f%% %llu records, %.2f M rec/s, ETA %.0fs   %s", bar,
			frac * 100, (unsigned long long)done, rate / 1e6, eta, final ? "\n" : "");
	} else {
		fprintf(stderr,
			"pmingest ingest: %llu/%llu records (%.1f%%), %.2f M rec/s, elapsed %.0fs, "
			"ETA %.0fs\n",
			(unsigned long long)done, (unsigned long long)p->total, frac * 100,
			rate / 1e6, el, eta);
	}
	fflush(stderr);
}

void pme_progress_update(struct pme_progress *p, uint64_t done)
{
	double t;

	if (!p)
		return;
	t = now();
	if (t - p->last < (p->tty ? 0.2 : 10.0))
		return;
	p->last = t;
	print(p, done, t, false);
}

void pme_progress_end(struct pme_progress *p, uint64_t done)
{
	if (!p)
		return;
	if (p->tty)
		print(p, done, now(), true);
	free(p);
}
