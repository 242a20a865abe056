/*
 * pmingest.c - the command-line program: dispatches to one subcommand.
 */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ingest.h"
#include "kb.h"
#include "pme_cmd.h"
#include "pme_malloc.h"

const char *malloc_conf = PME_MALLOC_CONF; /* see pme_malloc.h */

struct command {
	const char *name;    /* as typed after pmingest */
	pme_cmd_fn fn;	     /* runs it */
	const char *summary; /* one line for --help */
};

static const struct command commands[] = {
    {"ingest", pme_cmd_ingest, "fill a KB from HDF5 key/value datasets, in parallel"},
    {"demo", pme_cmd_demo, "generate a dataset, ingest it with all cores, show stats and a query"},
    {"gen", pme_cmd_gen, "write a synthetic key/value HDF5 dataset (seeded, deterministic)"},
    {"get", pme_cmd_get, "print the values of keys of a KB (exit 1 if one is missing)"},
    {"scan", pme_cmd_scan, "list a KB's keys and values in key order (tsv, csv, jsonl)"},
    {"count", pme_cmd_count, "count the keys of a KB, or those under a prefix"},
    {"stats", pme_cmd_stats, "verify a KB and show its counts, node kinds, partitions, checksum"},
    {"export", pme_cmd_export, "write a KB's keys and values back as HDF5, in key order"},
    {"merge", pme_cmd_merge, "write the union of KBs (join), --on-duplicate decides values"},
    {"intersect", pme_cmd_intersect, "write the keys present in every KB (meet)"},
    {"subtract", pme_cmd_subtract, "write the keys of the first KB absent from the others"},
    {"verify", pme_cmd_verify, "check a KB's header, checksums and every structural invariant"},
    {"kb-build", pme_cmd_kb_build, "build a KB from a TSV file (for tests and demos; see ingest)"},
};

static void usage(FILE *f)
{
	size_t i;

	fprintf(f,
		"usage: pmingest COMMAND [ARGS...]   (pmingest COMMAND --help for its options)\n\n"
		"commands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nexit status:\n"
		   "  0  success\n"
		   "  1  a query found nothing (get of a missing key)\n"
		   "  2  bad command line or configuration\n"
		   "  3  an input cannot be read (missing, not HDF5, wrong dataset/field/type, "
		   "corrupt KB;\n"
		   "     inputs whose keys or values are of different classes; an HDF5 file\n"
		   "     that a writer holds open; a KB cut or rewritten in place while read)\n"
		   "  4  an output cannot be written (permission, disk full, I/O error)\n"
		   "  5  the input's content is refused (duplicate key under --on-duplicate error, "
		   "...)\n"
		   "  6  out of memory\n"
		   "  130 interrupted by SIGINT, SIGTERM or SIGHUP (no partial output is left)\n");
}

/*
 * Standard streams that the caller closed (`2>&-`) are opened on /dev/full (stdout, stderr)
 * and /dev/null (stdin) before anything else: else the first file the program opens gets
 * their number, and it would write progress lines into its own output file, and take
 * /dev/stdout (a link to its descriptor 1) for a name it may replace. Writes to them fail
 * as to a full stream: commands that print report it.
 */
static void hold_std_streams(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		if (fd == 0 || open("/dev/full", O_WRONLY) != fd)
			(void)open("/dev/null", fd ? O_WRONLY : O_RDONLY);
	}
}

/*
 * Under an address-space limit (ulimit -v, RLIMIT_AS), jemalloc 5.3 with its default
 * retain:true (address space kept for reuse, never unmapped) deadlocked or crashed in some
 * runs with two threads once its mmap failed (a hung job that ignores SIGTERM); with
 * retain:false the same runs fail cleanly (exit 6) or fit. jemalloc reads its options before
 * main runs, so under a finite limit the program starts itself again with retain:false put
 * before MALLOC_CONF's own options (which win). RESTARTED marks the second start.
 */
#define RESTARTED "PMINGEST_RETAIN_SET"

static void restart_without_retain(char **argv)
{
	const char *mc = getenv("MALLOC_CONF");
	struct rlimit rl;
	char *conf;

	if (getenv(RESTARTED)) {
		unsetenv(RESTARTED);
		return;
	}
	/* AT_BASE 0: no interpreter loaded us, the dynamic loader is the program itself
	 * (ld.so ./pmingest ...) and /proc/self/exe is the loader: no restart */
	if (strcmp(pme_allocator_name(), "jemalloc") || getrlimit(RLIMIT_AS, &rl) ||
	    rl.rlim_cur == RLIM_INFINITY || !getauxval(AT_BASE))
		return;
	if (asprintf(&conf, "retain:false%s%s", mc && *mc ? "," : "", mc ? mc : "") < 0)
		return;
	if (!setenv("MALLOC_CONF", conf, 1) && !setenv(RESTARTED, "1", 1))
		execv("/proc/self/exe", argv);
	unsetenv(RESTARTED); /* no restart: go on as started */
	free(conf);
}

/* Success, unless what a command printed was lost (stdout closed or full): exit 4. */
static int stdout_status(const char *cmd)
{
	if (fflush(stdout) == 0 && !ferror(stdout))
		return PME_EXIT_OK;
	fprintf(stderr, "pmingest%s%s: cannot write the standard output: %s\n", cmd ? " " : "",
		cmd ? cmd : "", strerror(errno));
	return PME_EXIT_OUTPUT;
}

int main(int argc, char **argv)
{
	size_t i;
	int status;

	hold_std_streams();
	restart_without_retain(argv);
	pme_early_signals();
	signal(SIGXFSZ, SIG_IGN); /* past a file-size limit writes fail (EFBIG), reported */
	if (argc < 2) {
		usage(stderr);
		return PME_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help") && argc > 2) { /* pmingest help COMMAND */
		for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
			char *args[] = {argv[2], "--help", NULL};

			if (!strcmp(argv[2], commands[i].name))
				return commands[i].fn(2, args) ? PME_EXIT_USAGE
							       : stdout_status(argv[2]);
		}
		fprintf(stderr, "pmingest: unknown command '%s' (see pmingest --help)\n", argv[2]);
		return PME_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return stdout_status(NULL);
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name))
			continue;
		status = commands[i].fn(argc - 1, argv + 1);
		/* a KB changed under the command (pkb_lost): whatever it printed is void */
		if (pkb_lost_report(argv[1]))
			return PME_EXIT_INPUT;
		return status ? status : stdout_status(argv[1]);
	}
	fprintf(stderr, "pmingest: unknown command '%s' (see pmingest --help)\n", argv[1]);
	return PME_EXIT_USAGE;
}
