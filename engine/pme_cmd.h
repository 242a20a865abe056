/*
 * pme_cmd.h - the subcommands of the pmingest program and its exit statuses.
 *
 * Each subcommand is a function taking its own argv (argv[0] is the subcommand name) and
 * returning one of the PME_EXIT_* statuses below, which pmingest passes to exit(). They are
 * documented in `pmingest --help` and in the README; keep the three in step.
 */
#ifndef PME_CMD_H
#define PME_CMD_H

#include <signal.h>

enum {
	PME_EXIT_OK = 0,       /* success */
	PME_EXIT_NOTFOUND = 1, /* a query found nothing (like grep): get of a missing key */
	PME_EXIT_USAGE = 2,    /* bad command line or configuration */
	PME_EXIT_INPUT = 3,    /* an input cannot be read: missing, not HDF5, wrong dataset, field
				  or type, corrupt or foreign KB file, inputs of different key or
				  value types */
	PME_EXIT_OUTPUT = 4,   /* an output cannot be written: permission, disk full, I/O error */
	PME_EXIT_DATA = 5,     /* the input was read but its content is refused (duplicate key
				  under --on-duplicate error, numeric policy on text values) */
	PME_EXIT_NOMEM = 6,    /* out of memory */
	PME_EXIT_INTERRUPTED = 130, /* SIGINT, SIGTERM or SIGHUP: no partial output left */
};

typedef int (*pme_cmd_fn)(int argc, char **argv);

struct pio_writer_opts;

/* --dataset PATH of an HDF5 output (gen, export) into o: the compound dataset, or with the
 * pair layout PATH/keys and PATH/values (written to kpath and vpath, PME_DSET_MAX bytes
 * each). Returns 0, or PME_EXIT_USAGE (message printed, cmd naming the command) for a path
 * that is not absolute, is too long, or names a group for the compound layout (cmd_gen.c). */
#define PME_DSET_MAX 1024
int pme_out_dataset(const char *cmd, const char *path, struct pio_writer_opts *o, char *kpath,
		    char *vpath);

/* Raised by SIGINT, SIGTERM and SIGHUP once pme_catch_signals() has run (cmd_signal.c). */
extern volatile sig_atomic_t pme_stop;
/* Makes SIGINT, SIGTERM and SIGHUP end the process at once with PME_EXIT_INTERRUPTED
 * (main, before any command runs; an ignored SIGHUP stays ignored). */
void pme_early_signals(void);
/* Makes them raise pme_stop instead: a command that writes, before it writes anything. */
void pme_catch_signals(void);

int pme_cmd_gen(int argc, char **argv);
int pme_cmd_demo(int argc, char **argv);
int pme_cmd_ingest(int argc, char **argv); /* cmd_ingest.c */

/* KB files (cmd_kb.c) */
int pme_cmd_get(int argc, char **argv);
int pme_cmd_scan(int argc, char **argv);
int pme_cmd_count(int argc, char **argv);
int pme_cmd_stats(int argc, char **argv);
int pme_cmd_export(int argc, char **argv);
int pme_cmd_merge(int argc, char **argv);
int pme_cmd_intersect(int argc, char **argv);
int pme_cmd_subtract(int argc, char **argv);
int pme_cmd_verify(int argc, char **argv);
int pme_cmd_kb_build(int argc, char **argv);

#endif /* PME_CMD_H */
