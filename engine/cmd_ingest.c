/*
 * cmd_ingest.c - `pmingest ingest`: HDF5 key/value datasets into a KB file, in parallel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "pme_cmd.h"

static void ingest_usage(FILE *f)
{
	fprintf(
	    f, "usage: pmingest ingest [-c CONFIG.ini] --input FILE.h5[:/dataset] ... --output KB\n"
	       "                       [options]\n"
	       "\n"
	       "Reads key/value records from HDF5 datasets (a compound dataset with a key and a\n"
	       "value field, or two datasets --keys/--values), fills one PathMap with all cores\n"
	       "(one exclusive write zipper per partition, no locks) and writes it as a KB file\n"
	       "(temporary file, fsync, rename: never a partial KB under the final name).\n"
	       "The result is byte-identical for any thread count and batch size at one\n"
	       "--partitions (the default grows with threads above 32: the header differs).\n"
	       "\n"
	       "options (every one is also a config key of the same name; flags win over the\n"
	       "config file; --input on the command line replaces the config's inputs):\n"
	       "  -c, --config FILE      INI file (one): keys in the global section or in\n"
	       "                         [ingest]; an unknown key is an error, and so is a\n"
	       "                         key set twice (but input, which repeats); a value\n"
	       "                         in double or single quotes is read without them;\n"
	       "                         '#' after a space starts a comment outside quotes,\n"
	       "                         ';' after a space even within them; lines of at\n"
	       "                         most 199 bytes (give longer values, or ones holding\n"
	       "                         \" ;\", on the command line); relative paths are\n"
	       "                         relative to the working directory, not to the file\n");
	pme_config_help(f);
	fprintf(
	    f,
	    "\n"
	    "Duplicate keys: last/first keep the last/first record's value (input order);\n"
	    "error stops with the key and its record positions; sum/min/max combine numbers\n"
	    "in input order (floats add as doubles; under sum the KB's values become int64,\n"
	    "uint64 or float64, and an integer sum that leaves that range stops the run\n"
	    "with the key and its records, exit 5: integers do not wrap); count stores the\n"
	    "number of records of each key (the KB's values become uint64). min/max replace\n"
	    "a value only by a smaller/larger one, and no comparison with a NaN holds: a NaN\n"
	    "is kept only when it comes first.\n"
	    "0 for --threads, --partitions, --batch-records or --memory means its default.\n"
	    "Progress goes to stderr, phase by phase (read: records read, routed and filled;\n"
	    "fill: records held back, built into the map; write: keys written to the KB): a\n"
	    "bar on a terminal, a line every 10 s otherwise.\n"
	    "Allocator: jemalloc is linked in by default; build with -DPM_JEMALLOC=OFF for glibc\n"
	    "malloc (or LD_PRELOAD=libjemalloc.so.2 into such a build); the report names the one\n"
	    "that ran. MALLOC_CONF=thp:always makes jemalloc back the map with transparent huge\n"
	    "pages (fewer page faults and TLB misses on big maps; the report's huge_pages says\n"
	    "which setting ran).\n"
	    "\n"
	    "exit status: 0 success, 2 bad command line or configuration, 3 an input cannot be\n"
	    "read (or --into KB is damaged or of other types), 4 the output cannot be written,\n"
	    "5 the input's content is refused (duplicate under error, sum/min/max of strings,\n"
	    "an integer sum past 64 bits), 6 out of memory, 130 interrupted by SIGINT, SIGTERM\n"
	    "or SIGHUP (no output left behind)\n");
}

/* Splits "--name=value" / "--name value" at argv[*i]. Returns 0 or -1 (message printed). */
static int take_option(int argc, char **argv, int *i, char *name, size_t size, const char **value)
{
	const char *a = argv[*i] + 2, *eq = strchr(a, '=');
	bool known, flag;
	size_t n = eq ? (size_t)(eq - a) : strlen(a);

	if (n >= size) {
		fprintf(stderr, "pmingest ingest: unknown option '%s'\n", argv[*i]);
		return -1;
	}
	memcpy(name, a, n);
	name[n] = '\0';
	flag = pme_config_is_flag(name, &known);
	if (!known) {
		fprintf(stderr, "pmingest ingest: unknown option '%s' (see --help)\n", argv[*i]);
		return -1;
	}
	if (eq) {
		*value = eq + 1;
	} else if (flag) {
		*value = NULL;
	} else if (*i + 1 < argc) {
		*value = argv[++*i];
	} else {
		fprintf(stderr, "pmingest ingest: option '--%s' needs a value\n", name);
		return -1;
	}
	return 0;
}

int pme_cmd_ingest(int argc, char **argv)
{
	struct pme_config c;
	struct pme_report rep;
	struct pme_err err;
	bool cli_inputs = false;
	const char *config = NULL;
	int i, rc, status;

	pme_config_init(&c);
	for (i = 1; i < argc; i++) {
		const char *f = NULL;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			ingest_usage(stdout);
			return PME_EXIT_OK;
		}
		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "pmingest ingest: %s needs a file\n", argv[i]);
				return PME_EXIT_USAGE;
			}
			f = argv[++i];
		} else if (!strncmp(argv[i], "--config=", 9)) {
			f = argv[i] + 9;
		}
		if (f && config) { /* one would be ignored: say so rather than pick one */
			fprintf(stderr, "pmingest ingest: one config file only (%s and %s given)\n",
				config, f);
			return PME_EXIT_USAGE;
		}
		if (f)
			config = f;
	}
	if (config && pme_config_load(&c, config, &err)) {
		fprintf(stderr, "pmingest ingest: %s\n", err.msg);
		status = PME_EXIT_USAGE;
		goto out;
	}
	for (i = 1; i < argc; i++) {
		char name[64];
		const char *value;

		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			i++;
			continue;
		}
		if (!strncmp(argv[i], "--config=", 9))
			continue;
		if (strncmp(argv[i], "--", 2)) {
			bool known, yes_no = i > 1 && !strncmp(argv[i - 1], "--", 2) &&
					     !strchr(argv[i - 1], '=') &&
					     pme_config_is_flag(argv[i - 1] + 2, &known);

			fprintf(stderr, "pmingest ingest: unexpected argument '%s' (%s)\n", argv[i],
				yes_no ? "a yes/no flag takes a value as --flag=VALUE"
				       : "see --help");
			status = PME_EXIT_USAGE;
			goto out;
		}
		if (take_option(argc, argv, &i, name, sizeof(name), &value)) {
			status = PME_EXIT_USAGE;
			goto out;
		}
		if (!strcmp(name, "input") && !cli_inputs) {
			size_t k;

			for (k = 0; k < c.n_inputs; k++)
				free(c.inputs[k]);
			c.n_inputs = 0;
			cli_inputs = true;
		}
		if (pme_config_set(&c, name, value, &err)) {
			fprintf(stderr, "pmingest ingest: %s\n", err.msg);
			status = PME_EXIT_USAGE;
			goto out;
		}
	}
	if (!c.output || !c.n_inputs) {
		fprintf(stderr, "pmingest ingest: --output and at least one --input are required "
				"(see --help)\n");
		status = PME_EXIT_USAGE;
		goto out;
	}
	for (i = 0; config && i < 2; i++) { /* an output over the config file read */
		const char *o = i ? c.report : c.output;

		if (o && pme_same_file(o, config)) {
			fprintf(
			    stderr,
			    "pmingest ingest: --%s %s is the config file: it would be replaced\n",
			    i ? "report" : "output", o);
			status = PME_EXIT_USAGE;
			goto out;
		}
	}
	pme_catch_signals(); /* before the report's check makes a file; read between batches */
	if (c.report && pme_report_check(c.report, &err)) {
		fprintf(stderr, "pmingest ingest: %s\n", err.msg);
		status = PME_EXIT_OUTPUT;
		goto out;
	}
	c.cancel = &pme_stop;
	c.leave_map = true; /* the process ends after the run */
	rc = pme_ingest_run(&c, &rep, &err);
	if (rc) {
		fprintf(stderr, "pmingest ingest: %s\n", err.msg);
		status = pme_exit_status(rc);
		goto out;
	}
	status = PME_EXIT_OK;
	if (c.dry_run) /* the plan is printed; nothing else is */
		goto out;
	if (!c.quiet)
		pme_report_print(stdout, &c, &rep);
	if (c.report && pme_report_in_place(c.report) &&
	    pme_report_write(c.report, &c, &rep, &err)) {
		fprintf(stderr, "pmingest ingest: %s\n", err.msg);
		status = PME_EXIT_OUTPUT;
	}
out:
	/* the plan of --dry-run, or the summary, lost (stdout closed, full): main says so */
	pme_config_free(&c);
	return status;
}
