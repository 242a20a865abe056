/*
 * cmd_demo.c - `pmingest demo`: generates a demo HDF5 dataset, ingests it with all cores
 * (the real engine, as `pmingest ingest` runs it), then shows stats and a sample query.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest.h"
#include "kb.h"
#include "pio.h"
#include "pme_cmd.h"

static int show_key(const struct pkb *kb, const char *key)
{
	uint64_t w;
	int rc = pkb_get(kb, (const uint8_t *)key, strlen(key), &w);

	if (rc == 0)
		printf("  get %s -> %lld\n", key, (long long)w);
	else
		printf("  get %s -> (missing)\n", key);
	return rc;
}

int pme_cmd_demo(int argc, char **argv)
{
	char tmpl[] = "/tmp/pmingest-demo.XXXXXX", h5[4096], kbp[4096], input[4200];
	const char *dir = NULL;
	uint64_t n = 2000000, count = 0;
	struct pio_gen_opts g;
	struct pio_err pe;
	struct pme_config c;
	struct pme_report rep;
	struct pme_err err;
	struct pkb_err ke;
	struct pkb *kb = NULL;
	pm_snap_iter *it = NULL;
	const uint8_t *k;
	size_t len;
	uint64_t w;
	int i, rc, shown = 0, status = PME_EXIT_OK;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--records") && i + 1 < argc) {
			n = strtoull(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--help")) {
			printf(
			    "usage: pmingest demo [--records N] [--dir DIR]\n"
			    "Writes N generated hierarchical path keys with int64 values (10%% "
			    "repeated)\nto DIR/demo.h5 (default N = 2000000, DIR a new temporary "
			    "directory),\nruns `pmingest ingest` on it with all cores into "
			    "DIR/demo.kb, then prints\nthe run's statistics and a sample "
			    "query (a prefix count and an ordered scan).\n"
			    "exit status: 0 success, 2 bad command line, 4 cannot write, 6 out of "
			    "memory\n");
			return PME_EXIT_OK;
		} else {
			fprintf(stderr, "pmingest demo: unknown argument '%s'\n", argv[i]);
			return PME_EXIT_USAGE;
		}
	}
	if (!dir) {
		dir = mkdtemp(tmpl);
		if (!dir) {
			perror("pmingest demo: mkdtemp");
			return PME_EXIT_OUTPUT;
		}
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
	printf("generating %llu records into %s ...\n", (unsigned long long)n, h5);
	fflush(stdout);
	if (pio_generate(&g, &pe)) {
		fprintf(stderr, "pmingest demo: %s\n", pe.msg);
		return PME_EXIT_OUTPUT;
	}

	pme_config_init(&c);
	if (pme_config_set(&c, "input", input, &err) || pme_config_set(&c, "output", kbp, &err)) {
		fprintf(stderr, "pmingest demo: %s\n", err.msg);
		pme_config_free(&c);
		return PME_EXIT_NOMEM;
	}
	printf("pmingest ingest --input %s --output %s\n", input, kbp);
	fflush(stdout);
	rc = pme_ingest_run(&c, &rep, &err);
	if (rc) {
		fprintf(stderr, "pmingest demo: %s\n", err.msg);
		pme_config_free(&c);
		return pme_exit_status(rc);
	}
	pme_report_print(stdout, &c, &rep);
	pme_config_free(&c);

	rc = pkb_open(kbp, 0, &kb, &ke);
	if (rc) {
		fprintf(stderr, "pmingest demo: %s\n", ke.msg);
		return pme_exit_status(rc);
	}
	printf("sample query on %s:\n", kbp);
	pm_snap_count_prefix(pkb_snap(kb), (const uint8_t *)"/proj", 5, &count);
	printf("  keys under \"/proj\": %llu of %llu\n", (unsigned long long)count,
	       (unsigned long long)pkb_info(kb)->count);
	printf("  first keys in order:\n");
	if (pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it) == 0) {
		while (shown < 5 && pm_snap_iter_next(it, &k, &len, &w) == 1) {
			printf("    %.*s  %lld\n", (int)len, (const char *)k, (long long)w);
			if (shown++ == 0 && len < 4096) {
				char first[4096];

				memcpy(first, k, len);
				first[len] = '\0';
				pm_snap_iter_destroy(it);
				it = NULL;
				show_key(kb, first);
				if (pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it) ||
				    pm_snap_iter_next(it, &k, &len, &w) != 1)
					break;
			}
		}
	}
	pm_snap_iter_destroy(it);
	printf("try: pmingest scan %s /proj --limit 10; pmingest stats %s\n", kbp, kbp);
	pkb_close(kb);
	return status;
}
