/*
 * cmd_demo.c - `pmingest demo`: generates a demo HDF5 dataset, ingests it with all cores
 * (the real engine, as `pmingest ingest` runs it), then shows stats and a sample query.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest.h"
#include "kb.h"
#include "pio.h"
#include "pme_cmd.h"

/*
 * Copies the KB's middle key (in key order) to mid, and its prefixes up to the 3rd and the
 * 5th '/' (the run and the cell of a generated path key) to run and cell.
 */
static int pick_keys(const char *kbp, char *mid, char *run, char *cell, size_t cap)
{
	struct pkb_err ke;
	struct pkb *kb;
	pm_snap_iter *it = NULL;
	const uint8_t *k = NULL;
	size_t len = 0, i, slashes = 0;
	uint64_t w, n, half;

	if (pkb_open(kbp, 0, &kb, &ke)) {
		fprintf(stderr, "pmingest demo: %s\n", ke.msg);
		return -1;
	}
	half = pkb_info(kb)->count / 2;
	if (pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it) == 0)
		for (n = 0; n <= half && pm_snap_iter_next(it, &k, &len, &w) == 1; n++)
			;
	if (!k || len >= cap)
		len = 0;
	memcpy(mid, k ? (const char *)k : "", len);
	mid[len] = '\0';
	strcpy(run, mid);
	strcpy(cell, mid);
	for (i = 0; i < len; i++)
		if (mid[i] == '/') {
			slashes++;
			if (slashes == 3)
				run[i + 1] = '\0';
			if (slashes == 5)
				cell[i + 1] = '\0';
		}
	pm_snap_iter_destroy(it);
	pkb_close(kb);
	return 0;
}

/* mkdir -p: makes dir and its missing parents. Returns 0, or -1 with errno set. */
static int make_dirs(const char *dir)
{
	char *p = strdup(dir), *s;
	int rc = 0;

	if (!p)
		return -1;
	if (!*p) {
		free(p);
		errno = ENOENT;
		return -1;
	}
	for (s = p + 1; rc == 0; s++) {
		if (*s && *s != '/')
			continue;
		char c = *s;

		*s = 0;
		if (mkdir(p, 0777) && errno != EEXIST)
			rc = -1;
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return rc;
}

/* A run that failed or was stopped before its KB was complete removes the temporary
 * directory it made, and what it wrote there (a DIR given by the user stays as it is). */
static void drop_tmp(bool made, const char *dir, const char *h5, const char *kb)
{
	if (!made)
		return;
	unlink(h5);
	unlink(kb);
	rmdir(dir);
}

int pme_cmd_demo(int argc, char **argv)
{
	char tmpl[4096], h5[4096], kbp[4096], input[4200];
	char mid[256], run[256], cell[256];
	const char *dir = NULL;
	uint64_t n = 2000000;
	struct pio_gen_opts g;
	struct pio_err pe;
	struct pme_config c;
	struct pme_report rep;
	struct pme_err err;
	int i, rc, status = PME_EXIT_OK;
	bool made = false; /* dir is the temporary directory made here */

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--records") && i + 1 < argc) {
			const char *v = argv[++i];

			if (pme_parse_count(v, &n)) {
				fprintf(stderr,
					"pmingest demo: --records needs a non-negative integer, "
					"not '%s'\n",
					v);
				return PME_EXIT_USAGE;
			}
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf(
			    "usage: pmingest demo [--records N] [--dir DIR]\n"
			    "Writes N generated hierarchical path keys with int64 values (10%% "
			    "repeated)\nto DIR/demo.h5 (default N = 2000000, DIR a new temporary "
			    "directory\nin $TMPDIR or /tmp;\na DIR that does not exist is made, "
			    "with its "
			    "parents),\nruns `pmingest "
			    "ingest` on it with all cores into "
			    "DIR/demo.kb, then prints\nthe run's summary and runs `pmingest "
			    "stats`, "
			    "`count`, `scan` and `get` on the KB\n(the get asks for one missing "
			    "key "
			    "on purpose).\n"
			    "exit status: 0 success, 2 bad command line, 3 cannot read back, 4 "
			    "cannot write,\n6 out of memory, 130 interrupted by SIGINT, "
			    "SIGTERM or SIGHUP\n(before the queries, the temporary directory is "
			    "removed; a --dir stays)\n");
			return PME_EXIT_OK;
		} else if (!strcmp(argv[i], "--records") || !strcmp(argv[i], "--dir")) {
			fprintf(stderr, "pmingest demo: %s needs a value (see --help)\n", argv[i]);
			return PME_EXIT_USAGE;
		} else {
			fprintf(stderr, "pmingest demo: unknown argument '%s' (see --help)\n",
				argv[i]);
			return PME_EXIT_USAGE;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0); /* keep the commands' stdout and stderr in order */
	/* before a directory is made */
	pme_catch_signals();
	if (!dir) {
		const char *td = getenv("TMPDIR");

		made = true;
		if (snprintf(tmpl, sizeof(tmpl), "%s/pmingest-demo.XXXXXX",
			     td && *td ? td : "/tmp") >= (int)sizeof(tmpl)) {
			fprintf(stderr, "pmingest demo: TMPDIR is too long\n");
			return PME_EXIT_USAGE;
		}
		dir = mkdtemp(tmpl);
		if (!dir) {
			perror("pmingest demo: mkdtemp");
			return PME_EXIT_OUTPUT;
		}
	} else if (make_dirs(dir)) { /* a new DIR is made, and its parents */
		fprintf(stderr, "pmingest demo: cannot create the directory %s: %s\n", dir,
			strerror(errno));
		return PME_EXIT_OUTPUT;
	}
	snprintf(h5, sizeof(h5), "%s/demo.h5", dir);
	snprintf(kbp, sizeof(kbp), "%s/demo.kb", dir);
	snprintf(input, sizeof(input), "%s:/data", h5);

	memset(&g, 0, sizeof(g));
	g.out.file = h5;
	g.out.layout = PIO_LAYOUT_COMPOUND;
	g.records = n;
	g.key_kind = PIO_GEN_PATH;
	g.dup_ratio = 0.1;
	g.value_kind = PIO_GEN_INT64;
	g.seed = 42;
	g.cancel = &pme_stop;
	printf("generating %llu records into %s ...\n", (unsigned long long)n, h5);
	fflush(stdout);
	rc = pio_generate(&g, &pe);
	if (rc) {
		fprintf(stderr, "pmingest demo: %s\n", pe.msg);
		drop_tmp(made, dir, h5, kbp);
		return rc == PIO_ECANCELED ? PME_EXIT_INTERRUPTED : PME_EXIT_OUTPUT;
	}

	pme_config_init(&c);
	if (pme_config_set(&c, "input", input, &err) || pme_config_set(&c, "output", kbp, &err)) {
		fprintf(stderr, "pmingest demo: %s\n", err.msg);
		pme_config_free(&c);
		drop_tmp(made, dir, h5, kbp);
		return PME_EXIT_NOMEM;
	}
	printf("pmingest ingest --input %s --output %s\n", input, kbp);
	fflush(stdout);
	c.cancel = &pme_stop;
	rc = pme_ingest_run(&c, &rep, &err);
	if (rc) {
		fprintf(stderr, "pmingest demo: %s\n", err.msg);
		pme_config_free(&c);
		drop_tmp(made, dir, h5, kbp);
		return pme_exit_status(rc);
	}
	pme_report_print(stdout, &c, &rep);
	pme_config_free(&c);

	/* The queries a user would type next, run by the same code as the commands, on keys
	 * taken from the KB: the middle key, its run's prefix and its cell's prefix. */
	if (pick_keys(kbp, mid, run, cell, sizeof(mid)))
		return PME_EXIT_INPUT;
	{
		char *stats_argv[] = {"stats", kbp, NULL};
		char *count_argv[] = {"count", kbp, run, NULL};
		char *scan_argv[] = {"scan", kbp, cell, "--limit", "5", NULL};
		char *get_argv[] = {"get", kbp, mid, "/proj/no/such/key", NULL};
		struct {
			int (*fn)(int, char **);
			char **argv;
			int argc;
		} q[] = {
		    {pme_cmd_stats, stats_argv, 2},
		    {pme_cmd_count, count_argv, 3},
		    {pme_cmd_scan, scan_argv, 5},
		    {pme_cmd_get, get_argv, 4},
		};
		size_t j;

		for (j = 0; j < sizeof(q) / sizeof(q[0]); j++) {
			int a, st;

			if (pme_stop) { /* the files are complete: they stay, and are named */
				status = PME_EXIT_INTERRUPTED;
				break;
			}
			printf("\n$ pmingest");
			for (a = 0; a < q[j].argc; a++)
				printf(" %s", q[j].argv[a]);
			printf("\n");
			fflush(stdout);
			st = q[j].fn(q[j].argc, q[j].argv);
			fflush(stdout);
			fflush(stderr);
			/* get exits 1 for the missing key, as documented; anything else fails */
			if (st && !(q[j].fn == pme_cmd_get && st == PME_EXIT_NOTFOUND))
				status = st;
			if (q[j].fn == pme_cmd_get)
				printf("(exit status %d: a key was missing)\n", st);
		}
	}
	printf("\nfiles: %s (input), %s (KB); try pmingest --help\n", h5, kbp);
	return status;
}
