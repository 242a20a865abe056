/*
 * ingest.h - the parallel ingest engine: HDF5 key/value records into one PathMap, written as a
 * KB file (engine/kb.h). This header is the contract of engine/ingest*.c, route.c, fill.c,
 * config.c and progress.c; `pmingest ingest` (cmd_ingest.c) and `pmingest demo` use it.
 *
 * A run (pme_ingest_run)
 *   plan      scheme, partition count P, batch size from the memory budget; serially, one
 *             exclusive write zipper per partition from the map's pm_head (hash scheme: at
 *             pme_partition_path(p); prefix scheme: one per stem ++ d-byte key prefix met, each
 *             prefix owned by exactly one partition)
 *   loop      the I/O thread (pio_prefetch_*) reads batch k+1 while this thread routes and
 *             fills batch k:
 *     route   hash (or binary-search) every key in parallel, stable counting sort of record
 *             indices by partition (per-thread histograms, prefix sums, scatter), then a
 *             stable sort of each partition's slice by key (duplicate order is kept)
 *     fill    one `omp parallel` region over partitions, dynamically balanced with a home
 *             thread per partition (the same every batch; idle threads take the largest
 *             partitions left from the others); partition p writes only through its own
 *             zippers and its own value heap: no lock, no atomic, no shared allocation on
 *             the hot path (one atomic step per partition to claim it); under the last-value
 *             policy on numbers a partition's sorted slice goes in one pm_wz_set_sorted call
 *             (the nodes it adds are built whole), else record by record
 *   finalize  release the zippers (serial), write the prefix scheme's keys outside its
 *             partitions (serial), pkb_write the KB (temporary file, fsync, rename), report
 *
 * Determinism: records keep input order inside their partition and duplicates of a key
 * always meet in the same partition, so the map's content, and thus the canonical KB, is the
 * same for any thread count and batch size; its logical content (keys, values, in order) is
 * the same for every scheme and P.
 *
 * Errors: functions return 0 or a negative code, with one line in struct pme_err; the code
 * maps to an exit status with pme_exit_status(). Engine codes are PME_E* below; codes of
 * io/ (PIO_E*), pathmap (PM_E*) and kb (PKB_E*) pass through.
 *
 * Threads: pme_ingest_run uses OpenMP with cfg->threads threads and one I/O thread; call it
 * from one thread. There is no global mutable state except the cancel flag that the caller
 * owns (set from a signal handler).
 */
#ifndef PME_INGEST_H
#define PME_INGEST_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pme_partition.h"

#define PME_MAX_THREADS 4096 /* --threads and OMP_NUM_THREADS (libgomp fails far above) */

#ifdef __cplusplus
extern "C" {
#endif

enum {
	PME_EUSAGE = -41001,	/* bad option or configuration value */
	PME_EDUP = -41002,	/* a duplicate key under --on-duplicate error */
	PME_EPOLICY = -41003,	/* a numeric policy (sum/min/max) on string/opaque values */
	PME_ETYPE = -41004,	/* --into: the KB's key or value type differs from the input's */
	PME_ECANCELED = -41005, /* the cancel flag was raised */
	PME_EINTERNAL = -41006, /* a zipper conflict or broken invariant (a bug) */
	PME_EINPUT = -41007,	/* an input cannot be read (io/ error of the input class) */
	PME_EOUTPUT = -41008,	/* an output cannot be written */
	PME_ESUM = -41009,	/* an integer sum leaves the 64-bit range (--on-duplicate sum) */
};

/* Duplicate-key policies: what a key seen again does to its value. */
enum pme_policy {
	PME_DUP_LAST,  /* the last record wins (default) */
	PME_DUP_FIRST, /* the first record wins */
	PME_DUP_ERROR, /* a repeated key stops the run (PME_EDUP) */
	PME_DUP_SUM,   /* numbers: add in input order (an integer sum that leaves 64 bits stops
			  the run: PME_ESUM; floats: double; the KB's value type becomes 64 bits
			  wide) */
	PME_DUP_MIN,   /* numbers: the smallest */
	PME_DUP_MAX,   /* numbers: the largest */
	PME_DUP_COUNT, /* the number of records with the key (any value type; the KB's value
			  type becomes uint64) */
};

/* The configuration of one run. Strings and arrays are owned by the struct (freed by
 * pme_config_free). Every field has a config key and a command-line flag of the same name. */
struct pme_config {
	char **inputs;		       /* "FILE[:/dataset]" as given (globs expanded at run) */
	size_t n_inputs;	       /* their number */
	char *key_field;	       /* compound layout: key field (NULL: "key") */
	char *value_field;	       /* compound layout: value field (NULL: "value") */
	char *keys;		       /* pair layout: keys dataset (with values) */
	char *values;		       /* pair layout: values dataset */
	char *output;		       /* KB to write (required) */
	char *into;		       /* existing KB to add the input to (NULL: none) */
	char *report;		       /* JSON report path (NULL: none) */
	char *allocator;	       /* "jemalloc", "glibc" or NULL (whatever runs) */
	int threads;		       /* 0: OMP_NUM_THREADS, else all cores */
	enum pme_scheme scheme;	       /* hash (default) or prefix */
	uint32_t partitions;	       /* P; 0: auto (power of two >= 8 x threads) */
	uint64_t batch_records;	       /* records per batch; 0: from the memory budget */
	uint64_t memory;	       /* bytes for batches in flight; 0: a quarter of physical
					  memory or of the cgroup's limit, whichever is lower */
	enum pme_policy on_duplicate;  /* duplicate-key policy */
	bool sort;		       /* sort each partition's slice by key before filling */
	bool quiet;		       /* no progress, no summary */
	bool dry_run;		       /* check the job and print its plan; read no record,
					  write nothing */
	bool progress_tty;	       /* force the terminal bar (tests); else isatty(stderr) */
	bool leave_map;		       /* the process exits after the run: leave the map's
					  memory to the OS rather than free it node by node
					  (about 0.4 s a 10 M-key map); not a flag */
	volatile sig_atomic_t *cancel; /* if non-NULL: stop with PME_ECANCELED when non-zero */
};

/* One-line message of a failed call. */
struct pme_err {
	char msg[1024]; /* NUL-terminated after a failure */
};

/* What a run measured (also written as the JSON report). */
struct pme_report {
	double t_read;		/* seconds waiting for batches (reading not overlapped) */
	double t_route;		/* seconds routing (hash, counting sort, key sort) */
	double t_fill;		/* seconds in the parallel fill */
	double t_write;		/* seconds finalizing: zippers released, KB written */
	double t_total;		/* wall seconds of the whole run */
	uint64_t records;	/* records read from the inputs */
	uint64_t kb_records;	/* records loaded from --into */
	uint64_t distinct;	/* keys in the result */
	uint64_t duplicates;	/* records whose key was already present */
	uint64_t batches;	/* batches read */
	uint64_t batch_records; /* records per batch (largest batch) */
	double imbalance;	/* largest bucket / mean records per partition (prefix: the
				   keys outside the partitions count as one bucket) */
	uint64_t peak_rss;	/* peak resident memory, bytes */
	uint64_t memory;	/* --memory, or its default: a quarter of the memory limit */
	int threads;		/* OpenMP threads */
	uint32_t partitions;	/* P */
	uint32_t prefix_stem;	/* prefix scheme: bytes of the stem before the split; hash: 0 */
	uint32_t prefix_depth;	/* prefix scheme: split depth d; hash: 0 */
	uint32_t zippers;	/* write zippers made */
	enum pme_scheme scheme; /* scheme */
	const char *allocator;	/* "jemalloc" or "glibc" (static string) */
	const char *huge_pages; /* jemalloc's opt.thp ("always", ...) or "n/a" (static) */
};

/* Config */

/* Sets every field to its default. Never fails. */
void pme_config_init(struct pme_config *c);
/* Frees what c owns and re-initialises it. NULL is a no-op. */
void pme_config_free(struct pme_config *c);
/* Reads an INI file into c: keys in the global section or in [ingest], names as the flags.
 * Unknown sections or keys and bad values are errors. Returns 0, PME_EUSAGE or -errno. */
int pme_config_load(struct pme_config *c, const char *path, struct pme_err *err);
/* Sets option name (a config key / flag name without "--") to value (NULL for a bool flag
 * given without value). "input" appends. Returns 0 or PME_EUSAGE. */
int pme_config_set(struct pme_config *c, const char *name, const char *value, struct pme_err *err);
/* True when name is a bool option (a flag that takes no value). Sets *known. */
bool pme_config_is_flag(const char *name, bool *known);
/* Prints one line per option with its default, for --help. */
void pme_config_help(FILE *f);
/* Parses "last", "first", "error", "sum", "min", "max", "count". Returns 0 or PME_EUSAGE. */
int pme_policy_parse(const char *s, enum pme_policy *out);
/* The name of a policy. */
const char *pme_policy_name(enum pme_policy p);
/* Parses "123", "64K", "512M", "2G", "1T" (powers of 1024). Returns 0 or PME_EUSAGE. */
int pme_parse_size(const char *s, uint64_t *out);
/* Parses a decimal count: digits only (no sign, space or suffix), at most UINT64_MAX.
 * Returns 0 or PME_EUSAGE. Every command's count options go through it: strtoull alone
 * skips spaces and takes " -1" for 2^64 - 1. */
int pme_parse_count(const char *s, uint64_t *out);
/* Parses a decimal integer: an optional '-', then digits. Returns 0 or PME_EUSAGE. */
int pme_parse_int(const char *s, int64_t *out);

/* Run */

/* Runs an ingest as c says. Fills *rep (if non-NULL) on success. Returns 0 or a code. */
int pme_ingest_run(const struct pme_config *c, struct pme_report *rep, struct pme_err *err);
/* Checks that a report can be written to path (creates and removes its temporary file), so
 * that a run is not made only to fail there. Returns 0 or -errno. */
int pme_report_check(const char *path, struct pme_err *err);
/* Whether a report to path is written in place (a standard stream, a FIFO, a terminal): the
 * run cannot make it ready before the KB is in place, so the caller writes it after the run
 * (pme_report_write). Any other report is written by pme_ingest_run before it puts the KB in
 * place, and a report that cannot be written fails the run with the KB untouched. */
bool pme_report_in_place(const char *path);
/* Writes rep as JSON to path (temporary file + rename). Returns 0 or -errno. */
int pme_report_write(const char *path, const struct pme_config *c, const struct pme_report *rep,
		     struct pme_err *err);
/* Prints a short human summary of rep to f. */
void pme_report_print(FILE *f, const struct pme_config *c, const struct pme_report *rep);
/* Whether paths a and b name one file: the same inode when both exist, else (neither exists
 * yet: outputs) the same name in the same directory. */
bool pme_same_file(const char *a, const char *b);

/* JSON text (the report, stats --json, scan --format jsonl). pme_valid_utf8: whether the n
 * bytes at s are well-formed UTF-8. pme_json_str: writes them as a JSON string, escaped; a
 * byte that is not part of a UTF-8 sequence becomes U+FFFD (JSON holds only Unicode text:
 * callers that must keep such bytes add them in hex, as scan does). */
bool pme_valid_utf8(const void *s, size_t n);
void pme_json_str(FILE *f, const void *s, size_t n);
/* pkb_lock_update's waiting callback for command cmd (a const char *): one line on stderr. */
void pme_lock_waiting(void *cmd, const char *path);
/* Maps a code returned by the engine to a PME_EXIT_* status. */
int pme_exit_status(int rc);
/* Static description of an engine code (or any code that passes through). */
const char *pme_strerror(int rc);
/* "jemalloc" when jemalloc serves malloc in this process (linked or LD_PRELOADed), else
 * "glibc". */
const char *pme_allocator_name(void);
/* jemalloc's transparent huge page setting (opt.thp: "default", or "always"/"never" as set
 * by MALLOC_CONF=thp:...), or "n/a" when jemalloc does not serve malloc. */
const char *pme_allocator_thp(void);
/* Peak resident set size of the process, bytes. */
uint64_t pme_peak_rss(void);

/* Progress (stderr): a live bar on a terminal, a line every 10 s otherwise, phase by
 * phase. */
struct pme_progress;
/* Starts progress for command cmd ("ingest": its log lines begin "pmingest ingest: "), in
 * phase name, counting total units of unit (0: unknown). Returns NULL when quiet or out of
 * memory (all calls accept NULL). The strings must outlive p. */
struct pme_progress *pme_progress_start(const char *cmd, const char *name, const char *unit,
					uint64_t total, bool quiet, bool force_tty);
/* Reports that done units of the phase are finished. Cheap: prints at most a few times a
 * second. Not for two threads at once. */
void pme_progress_update(struct pme_progress *p, uint64_t done);
/* The same, in the shape of the progress hooks of pkb_write_opts and pio_gen_opts (arg: the
 * struct pme_progress). */
void pme_progress_hook(void *arg, uint64_t done);
/* Ends the phase (on a terminal its bar stays, finished, on its line; in a log, a last line
 * if the phase printed any) and starts phase name, counting total units of unit. */
void pme_progress_phase(struct pme_progress *p, const char *name, const char *unit, uint64_t total);
/* Ends the phase at the units last reported done, and frees p. */
void pme_progress_end(struct pme_progress *p);

#ifdef __cplusplus
}
#endif
#endif /* PME_INGEST_H */
