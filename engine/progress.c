/*
 * progress.c - progress on stderr: a live bar with the rate and ETA on a terminal, a plain
 * line every 10 seconds otherwise (batch job logs); one after the other for a command's
 * phases (ingest's read: records read, routed and filled; fill: records held back, built
 * into the map; write: keys written to the KB; one phase for merge, export, gen).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, isatty */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ingest.h"

struct pme_progress {
	const char *cmd;  /* command: "ingest", "merge", ... */
	const char *name; /* phase: "read", "fill", "write" */
	const char *unit; /* what it counts: "records", "keys" */
	uint64_t total;	  /* units expected (0: unknown) */
	bool tty;	  /* draw a bar (else log lines) */
	double t0;	  /* start of the phase, seconds */
	double last;	  /* last print, seconds */
	uint64_t done;	  /* units done at the last update */
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct pme_progress *pme_progress_start(const char *cmd, const char *name, const char *unit,
					uint64_t total, bool quiet, bool force_tty)
{
	struct pme_progress *p;

	if (quiet)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->cmd = cmd;
	p->name = name;
	p->unit = unit;
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
		if (final)
			fprintf(stderr, "\r%-5s [%s] %5.1f%% %llu %s, %.2f M/s, took %.1fs   \n",
				p->name, bar, frac * 100, (unsigned long long)done, p->unit,
				rate / 1e6, el);
		else
			fprintf(stderr, "\r%-5s [%s] %5.1f%% %llu %s, %.2f M/s, ETA %.0fs   ",
				p->name, bar, frac * 100, (unsigned long long)done, p->unit,
				rate / 1e6, eta);
	} else {
		fprintf(stderr,
			"pmingest %s: %s %llu/%llu %s (%.1f%%), %.2f M/s, elapsed %.0fs, "
			"ETA %.0fs\n",
			p->cmd, p->name, (unsigned long long)done, (unsigned long long)p->total,
			p->unit, frac * 100, rate / 1e6, el, eta);
	}
	fflush(stderr);
}

void pme_progress_update(struct pme_progress *p, uint64_t done)
{
	double t;

	if (!p)
		return;
	p->done = done;
	t = now();
	if (t - p->last < (p->tty ? 0.2 : 10.0))
		return;
	p->last = t;
	print(p, done, t, false);
}

void pme_progress_hook(void *arg, uint64_t done)
{
	pme_progress_update(arg, done);
}

/* The phase's last line: on a terminal always (the bar stays, finished, on its line); in a
 * log when the phase printed lines of its own (it took 10 s or more). */
static void phase_end(struct pme_progress *p)
{
	if (p->tty || p->last > p->t0)
		print(p, p->done, now(), true);
}

void pme_progress_phase(struct pme_progress *p, const char *name, const char *unit, uint64_t total)
{
	if (!p)
		return;
	phase_end(p);
	p->name = name;
	p->unit = unit;
	p->total = total;
	p->done = 0;
	p->t0 = now();
	p->last = p->t0;
}

void pme_progress_end(struct pme_progress *p)
{
	if (!p)
		return;
	phase_end(p);
	free(p);
}
