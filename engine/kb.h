/*
 * kb.h - knowledge-base (KB) files: a PathMap snapshot with its metadata and value heap,
 * written safely, queried in place, combined, loaded back.
 *
 * A KB file holds the logical content of an ingest: user keys (never internal partition
 * paths) and their values, as one canonical pm_snap trie in user-key order, so get, prefix
 * count and ordered scans go straight to the bytes whatever the partition scheme; the scheme
 * and partition count are recorded so that the engine can load the KB back into its own
 * layout. Layout and rules: pathmap/FORMAT.md ("KB files").
 *
 *   +--------------------------+ 0
 *   | header, 256 bytes        |  magic, version, scheme, P, counts, section offsets,
 *   |                          |  lengths and XXH3-64 checksums, header checksum
 *   +--------------------------+ 256
 *   | meta                     |  key and value types, inputs (name, bytes, records)
 *   +--------------------------+ 8-aligned
 *   | trie (pm_snap image)     |  user key -> value word (numbers) or heap offset
 *   +--------------------------+ 8-aligned
 *   | heap                     |  string/opaque values: [u32 LE length][bytes], key order
 *   +--------------------------+ 8-aligned: end of file
 *
 * Canonical: the bytes are a function of (content, scheme, P, types, inputs) only; no time,
 * host, thread count or insert order inside.
 *
 * Writing is safe: the file is built under a temporary name in the KB's directory (an
 * anonymous O_TMPFILE where the file system has it, else ".NAME.tmp.PID"), flushed with
 * fsync, and renamed over the final name only when complete; on any failure (or a cancel
 * flag raised by a signal handler) the temporary file is removed and the final name is left
 * as it was. A kill -9 can leave at most a ".NAME.tmp.PID" file, never a partial KB.
 *
 * Errors: 0 or a negative code: -errno for an operating-system error, or a PKB_E* code;
 * pkb_strerror() names both. Calls that touch a file take a struct pkb_err * (may be NULL)
 * that receives one line naming the file and the problem.
 *
 * Threads: an open struct pkb is read-only: any number of threads may query it at once (each
 * with its own pm_snap iterators). A writer is used by one thread. The one global state is
 * the guard of the mappings (pkb_lost).
 */
#ifndef PKB_H
#define PKB_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pathmap.h"
#include "pio.h"
#include "pm_snap.h"
#include "pme_partition.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
	PKB_ENOTFOUND = -2,    /* no such key (-ENOENT) */
	PKB_ENOMEM = -12,      /* out of memory (-ENOMEM) */
	PKB_EINVAL = -22,      /* invalid argument or option (-EINVAL) */
	PKB_ECORRUPT = -2001,  /* the file breaks a rule of the format: damaged */
	PKB_EFOREIGN = -2002,  /* not a KB file */
	PKB_EVERSION = -2003,  /* a KB of a newer format version */
	PKB_ETRUNC = -2004,    /* the file is shorter than its header says */
	PKB_ECHECKSUM = -2005, /* a checksum does not match: damaged */
	PKB_ETYPE = -2006,     /* KBs with different key or value types cannot be combined */
	PKB_EDUP = -2007,      /* a duplicate key under the "error" policy */
	PKB_EVALUE = -2008,    /* values that the policy cannot combine (sum of strings) */
	PKB_ECANCELED = -2009, /* the cancel flag was raised: nothing was written */
	PKB_EORDER = -2010,    /* writer: keys not strictly increasing */
	PKB_EROUTE = -2011,    /* pkb_write: the map holds a path outside its partition layout */
	PKB_ESUM = -2012,      /* an integer sum leaves the 64-bit range of its class */
	PKB_ENOLOCK = -2013,   /* pkb_lock_update: the file system cannot lock the file */
	PKB_ELOST = -2014,     /* a mapped KB shrank or failed to read while in use (SIGBUS) */
};

/* A KB file that another program truncates in place while it is mapped (or that the file
 * system fails to read) raises SIGBUS on the next access past its end. pkb_open installs a
 * handler that maps zeros in place of the missing pages, so the access reads damaged bytes
 * instead of killing the process, and marks the KB lost; pkb_close and pkb_lost also mark
 * lost a KB whose file is shorter, or was modified, since it was mapped (a cut inside the
 * last page raises no SIGBUS). Then pkb_writer_commit fails with PKB_ELOST (nothing is put
 * in place), and a command must not report success.
 * pkb_lost: the path of the first KB lost, or NULL. pkb_lost_report: false when none is;
 * else prints "pmingest CMD: PATH: what happened" to stderr unless a writer's error has
 * already said it, and returns true (the program's input exit status). */
const char *pkb_lost(void);
bool pkb_lost_report(const char *cmd);

/* Static description of a code (PKB_E*, -errno, PM_E*). Never NULL. */
const char *pkb_strerror(int rc);

/* True when rc says the KB being read is unusable (corrupt, foreign, newer, truncated,
 * checksum): the program's "input" exit status. */
bool pkb_is_input_error(int rc);

#define PKB_VERSION 1	    /* format version written and read */
#define PKB_HEADER_SIZE 256 /* bytes of the header */

/* The one-line message of a failed call: "FILE: problem". */
struct pkb_err {
	char msg[640]; /* NUL-terminated after a failure */
};

/* One input of the ingest that produced a KB. */
struct pkb_input {
	const char *name; /* e.g. "data.h5:/records" (no NUL inside; borrowed) */
	uint64_t bytes;	  /* size of the input file, bytes */
	uint64_t records; /* records read from it */
};

/* What a KB records besides its content. Strings borrowed for the call. */
struct pkb_meta {
	enum pme_scheme scheme;		/* partition scheme of the ingest */
	uint32_t partitions;		/* P: hash: a power of two in [1, 65536]; prefix:
					   [1, 65536] */
	struct pio_type key_type;	/* declared type of the keys */
	struct pio_type value_type;	/* declared type of the values */
	const struct pkb_input *inputs; /* inputs, in job order */
	size_t n_inputs;		/* their number */
};

/* True when the value type's words are offsets of heap entries (strings, opaque). */
bool pkb_type_is_blob(const struct pio_type *t);

typedef int (*pkb_commit_fn)(void *arg, struct pkb_err *err); /* see before_commit */

struct pkb_write_opts {
	volatile sig_atomic_t *cancel; /* if non-NULL: abort with PKB_ECANCELED once *cancel
					  is non-zero (set it from a signal handler) */
	bool no_sync;		       /* skip fsync (benchmarks of the format only) */
	uint64_t sync_step;	       /* trie bytes between two flushes to the device while
					  writing, by a thread of the writer's (0: 32 MiB) */
	unsigned threads;	       /* pkb_write: OpenMP threads (0: omp_get_max_threads) */
	uint64_t memory;	       /* pkb_write: bytes it may hold for the image built in
					  parts (0: 1 GiB); above, it builds serially */
	uint64_t image_hint;	       /* pkb_write: expected image bytes, e.g. key bytes + 24
					  per key (0: 48 per key) */
	size_t parts; /* pkb_write, number values: 1 builds serially, n > 1 in up to n ranges
			 of parts (fewer when fewer branch bytes have keys; 0: chosen from
			 threads, P, memory) */
	void (*progress)(void *arg, uint64_t keys); /* pkb_write: if non-NULL, called now
						       and then (about every 65536 keys)
						       with the keys written so far, by
						       one of its threads at a time; last
						       with all of them (pkb_combine: the
						       keys read, see there) */
	void *progress_arg;			    /* ... its first argument */
	bool trust_routes; /* pkb_write, hash scheme: skip hashing every key to check that it
			      sits under its own partition (a caller that routed the keys by
			      pme_hash_partition itself). The KB's content does not depend on
			      it: a key held by two partitions, or outside the partition
			      paths, still fails */
	/* if non-NULL: called once the file is complete and flushed, just before it is put in
	 * place; a nonzero return (a negative code, message in err) abandons the write:
	 * nothing is put in place, and the call returns that code (a job's other outputs are
	 * made ready here, so that none fails after the KB is in place) */
	pkb_commit_fn before_commit;
	void *commit_arg; /* ... its first argument */
};

/* ------------------------------------------------------------------------------------------ */
/* Writing */

/*
 * Value accessor of pkb_write() for blob value types: returns in *data and *len the bytes of
 * the value whose word in the map is w (for the engine: the entry at offset w of its value
 * heap). Returns 0 or a negative code, which aborts the write.
 */
typedef int (*pkb_blob_fn)(void *ud, uint64_t w, const uint8_t **data, size_t *len);

/*
 * Writes map as the KB file path. map holds internal paths: with PME_SCHEME_HASH, every key
 * K at path (pme_partition_path(pme_hash_partition(K)) ++ K); with PME_SCHEME_PREFIX, K at
 * path K. The partitions' subtries are walked together in user-key order (one walk over
 * their nodes, no key spelled out). For blob value types, blob(ud, w)
 * gives each value's bytes (required then; ignored otherwise). opts may be NULL.
 * Returns 0; PKB_EINVAL (bad meta); PKB_EROUTE (a path that is not where its scheme puts
 * it); PKB_ENOMEM; PKB_ECANCELED; -errno (cannot write: the message names the file and the
 * OS error); the accessor's code. On failure nothing is left under path's name that was not
 * there before. The map must not change during the call.
 */
int pkb_write(const char *path, const pm_map *map, const struct pkb_meta *meta, pkb_blob_fn blob,
	      void *blob_ud, const struct pkb_write_opts *opts, struct pkb_err *err);

/* The file an output path names: where a symbolic link (or a chain of them) points, else
 * path; malloc'd, NULL when out of memory. Writers replace that file and leave the link (a
 * KB kept on scratch space, linked from a project directory); the file of a dangling link
 * is made, as a shell's redirection makes it. */
char *pkb_out_target(const char *path);

/* Checks, before the work that leads to a write, that path can be written as pkb_write and
 * pkb_writer_open write it: not a directory, and a temporary file can be made beside it
 * (made and removed). Returns 0, PKB_ENOMEM or -errno (the message names path and the OS
 * error). */
int pkb_check_output(const char *path, struct pkb_err *err);
/* The part of pkb_check_output that needs no temporary file: path, if it exists, can be
 * replaced by a rename (a regular file, not another user's in a sticky directory). */
int pkb_check_replace(const char *path, struct pkb_err *err);

/* A streaming writer: keys in strictly increasing user-key order. */
struct pkb_writer;

/* Creates the temporary file and writes the metadata. Returns 0, PKB_EINVAL, PKB_ENOMEM or
 * -errno. */
int pkb_writer_open(const char *path, const struct pkb_meta *meta,
		    const struct pkb_write_opts *opts, struct pkb_writer **out,
		    struct pkb_err *err);

/*
 * Adds user key -> value: for numeric value types w is the value word (blob ignored); for
 * blob types the value is blob[0..blob_len) (w ignored). Returns 0, PKB_EORDER (skipped:
 * the writer stays usable), PKB_ENOMEM, PKB_ECANCELED or -errno; after the latter three
 * only pkb_writer_abort().
 */
int pkb_writer_add(struct pkb_writer *w, const uint8_t *key, size_t len, uint64_t word,
		   const uint8_t *blob, size_t blob_len, struct pkb_err *err);

/*
 * Writes the trie from image parts built elsewhere (pm_snap.h, "Building in parts"), on a
 * writer that has been given no key, for numeric values only: pkb_writer_join_parts() writes
 * parts[0..n) (and may be called again with the next parts; key_bytes: the sum of the
 * lengths of their full keys), pkb_writer_join_finish() the root (prefix C and the value of
 * key C when has_val). Then only pkb_writer_commit() or pkb_writer_abort().
 */
int pkb_writer_join_parts(struct pkb_writer *w, const struct pm_snap_part *parts, size_t n,
			  uint64_t key_bytes, struct pkb_err *err);
int pkb_writer_join_finish(struct pkb_writer *w, const uint8_t *prefix, size_t plen, bool has_val,
			   uint64_t val, struct pkb_err *err);

/*
 * Appends a value-heap entry (u32 little-endian length, then the bytes), the layout of a KB's
 * heap and of a record batch's, to the growable buffer *heap of *len bytes used and *cap
 * allocated; *off gets the entry's offset. Returns 0 or PKB_ENOMEM (the buffer unchanged).
 */
int pkb_heap_append(uint8_t **heap, size_t *len, size_t *cap, const uint8_t *data, size_t dlen,
		    uint64_t *off);

/* Number of keys added so far. */
uint64_t pkb_writer_count(const struct pkb_writer *w);

/* Finishes the file, flushes it and renames it to its final name. Frees w whatever the
 * outcome (on failure the temporary file is removed). Returns 0, PKB_ENOMEM,
 * PKB_ECANCELED or -errno. */
int pkb_writer_commit(struct pkb_writer *w, struct pkb_err *err);

/* Removes the temporary file and frees w. NULL is a no-op. */
void pkb_writer_abort(struct pkb_writer *w);

/* ------------------------------------------------------------------------------------------ */
/* Reading */

struct pkb;

enum {
	PKB_OPEN_CHECKSUM = 1, /* pkb_open: also check every section checksum (O(file size));
				  without it opening is O(1) in the file size: the header, its
				  checksum and every section bound are still checked */
};

/* What the header and metadata say. */
struct pkb_info {
	uint32_t version;		/* format version of the file */
	enum pme_scheme scheme;		/* partition scheme */
	uint32_t partitions;		/* P */
	struct pio_type key_type;	/* key type */
	struct pio_type value_type;	/* value type */
	uint64_t count;			/* keys */
	uint64_t key_bytes;		/* sum of key lengths */
	uint64_t file_len;		/* bytes of the file */
	uint64_t meta_len;		/* bytes of the meta section */
	uint64_t trie_len;		/* bytes of the trie section */
	uint64_t heap_len;		/* bytes of the heap section */
	uint64_t checksum;		/* XXH3-64 of the header (which holds every section's) */
	uint64_t trie_sum;		/* XXH3-64 of the trie section */
	uint64_t heap_sum;		/* XXH3-64 of the heap section */
	uint64_t meta_sum;		/* XXH3-64 of the meta section */
	size_t n_inputs;		/* inputs recorded */
	const struct pkb_input *inputs; /* n_inputs inputs (names NUL-terminated, owned by the
					   pkb, valid until pkb_close) */
};

/*
 * Opens a KB file read-only (mmap). Returns 0 and *out; -errno (cannot open or map);
 * PKB_EFOREIGN, PKB_EVERSION, PKB_ETRUNC, PKB_ECORRUPT, PKB_ECHECKSUM; PKB_ENOMEM.
 */
int pkb_open(const char *path, unsigned flags, struct pkb **out, struct pkb_err *err);

/* Same, over bytes in memory (borrowed until pkb_close; used by the fuzzer). name is used
 * in messages. */
int pkb_open_mem(const void *data, size_t len, const char *name, unsigned flags, struct pkb **out,
		 struct pkb_err *err);

/* Unmaps and frees. NULL is a no-op. */
void pkb_close(struct pkb *kb);

/* The header and metadata, valid until pkb_close(). */
const struct pkb_info *pkb_info(const struct pkb *kb);

/*
 * Hints that the whole KB is about to be read in order (full scans, export, merge): asks the
 * kernel for aggressive read-ahead on the mapping (MADV_SEQUENTIAL), which matters when the
 * file is not in the page cache. Returns at once; never fails (a hint).
 */
void pkb_prefetch(const struct pkb *kb);

/* The trie of user keys, for pm_snap_* queries and iterators; valid until pkb_close(). */
const pm_snap *pkb_snap(const struct pkb *kb);

/* Path given to pkb_open (or the name given to pkb_open_mem). */
const char *pkb_path(const struct pkb *kb);

/*
 * Looks up a user key: 0 with *word (numbers: the value word; blobs: a heap offset to give
 * to pkb_blob), PKB_ENOTFOUND, or PKB_ECORRUPT.
 */
int pkb_get(const struct pkb *kb, const uint8_t *key, size_t len, uint64_t *word);

/* The bytes of the heap entry at offset word (blob value types): 0 with *data (valid until
 * pkb_close) and *len, or PKB_ECORRUPT when the entry does not lie inside the heap. */
int pkb_blob(const struct pkb *kb, uint64_t word, const uint8_t **data, size_t *len);

/* Progress of a long call made of passes: phase() as each pass starts (its name, what it
 * counts, how many it expects), step() now and then with how many it has done. */
struct pkb_progress {
	void (*phase)(void *arg, const char *name, const char *unit, uint64_t total);
	void (*step)(void *arg, uint64_t done);
	void *arg;
};

/*
 * Checks everything: section checksums, the trie (pm_snap_verify: every structural
 * invariant), the heap (entries tile it exactly in key order, each referenced once), the
 * totals of the header. Fills *st (if non-NULL). Returns 0, PKB_ECHECKSUM, PKB_ECORRUPT or
 * PKB_ENOMEM, with the reason in *err. pg (NULL: none) hears of three passes: "sums"
 * (bytes checksummed), "trie" (keys whose nodes are verified), "keys" (keys checked
 * against the key type and the heap).
 */
int pkb_verify(const struct pkb *kb, pm_snap_stats *st, const struct pkb_progress *pg,
	       struct pkb_err *err);

/*
 * Loads every record into map at its internal path for the KB's scheme (see pkb_write). For
 * blob value types, store(ud, data, len, &w) is called with each value's bytes and returns
 * the word to store (e.g. an offset in the engine's heap); store == NULL keeps the KB's heap
 * offsets (valid for pkb_blob while the KB is open). Existing keys are replaced. Returns 0,
 * PKB_ENOMEM, PKB_ECORRUPT or store's code.
 */
typedef int (*pkb_store_fn)(void *ud, const uint8_t *data, size_t len, uint64_t *w);
int pkb_load(const struct pkb *kb, pm_map *map, pkb_store_fn store, void *ud, struct pkb_err *err);

/* ------------------------------------------------------------------------------------------ */
/* Algebra over KB files */

enum pkb_op {
	PKB_OP_MERGE,	  /* keys of any input (join) */
	PKB_OP_INTERSECT, /* keys of every input (meet); values combined by the policy */
	PKB_OP_SUBTRACT,  /* keys of the first input that no other input has */
};

enum pkb_dup {
	PKB_DUP_LAST,  /* the value of the last input holding the key wins (default) */
	PKB_DUP_FIRST, /* the first input's value wins */
	PKB_DUP_ERROR, /* a key in two inputs with different values fails with PKB_EDUP */
	PKB_DUP_SUM,   /* numbers: add (int, uint: PKB_ESUM past 64 bits; float: double); the
			  output's value type becomes 64 bits wide (int64, uint64, float64) */
	PKB_DUP_MIN,   /* numbers: the smallest */
	PKB_DUP_MAX,   /* numbers: the largest */
};

/*
 * Arithmetic on value words of a numeric class (PIO_V_INT, PIO_V_UINT: the integer; PIO_V_FLOAT:
 * the bits of a double), shared by the ingest's duplicate policies and by merge:
 * pkb_num_add() sets *sum to a + b and returns false when an integer sum leaves the 64-bit
 * range of its class (*sum is then the sum modulo 2^64; a float sum may reach an infinity,
 * as IEEE 754 adds); pkb_num_less() is a < b in the class's order (floats compared as
 * doubles).
 */
bool pkb_num_add(enum pio_vtype cls, uint64_t a, uint64_t b, uint64_t *sum);
bool pkb_num_less(enum pio_vtype cls, uint64_t a, uint64_t b);

/* Writes key k for a message to buf (NUL-terminated, cut with "..." to fit size): printable
 * ASCII as is, other bytes (and \ and ") as \xHH. */
void pkb_key_text(const uint8_t *k, size_t len, char *buf, size_t size);

/* Parses "last", "first", "error", "sum", "min", "max". Returns 0 or PKB_EINVAL. */
int pkb_dup_parse(const char *s, enum pkb_dup *out);

/*
 * Writes op(kbs[0], ..., kbs[n-1]) as the KB file path, in one streaming pass over the
 * inputs in user-key order (memory independent of their size). Keys must be of one class,
 * and values too (but for PKB_OP_SUBTRACT), else PKB_ETYPE; the output's types are widened
 * as pio_type_merge widens them (PKB_OP_SUBTRACT: kbs[0]'s). The output takes scheme and
 * partitions (records are re-routed: the content does not depend on either), and the
 * concatenation of the inputs' input lists. opts->progress, if set, is called now and then
 * with the keys read from the inputs so far, last with all of them.
 * Returns 0 or a code as pkb_writer_*; PKB_EDUP / PKB_EVALUE for the policy; PKB_ECORRUPT
 * when an input turns out damaged.
 */
int pkb_combine(enum pkb_op op, struct pkb *const *kbs, size_t n, enum pkb_dup dup,
		enum pme_scheme scheme, uint32_t partitions, const char *path,
		const struct pkb_write_opts *opts, struct pkb_err *err);

/* ------------------------------------------------------------------------------------------ */
/* Update lock */

/*
 * A job that reads a KB and replaces it with its result (ingest --into KB --output KB; merge
 * A B --output A) holds the KB's update lock from before it reads the KB until its result is
 * in place. Two such jobs then take turns, the second reading the first one's result, where
 * each would otherwise replace the KB with its own and one job's records would be lost with
 * exit 0.
 *
 * pkb_lock_update waits for the lock of the KB at path: 0 and *out (NULL when there is no
 * regular file at path: nothing to lock, and the caller's open reports it); PKB_ECANCELED
 * when *cancel is raised while it waits; PKB_ENOLOCK (*out NULL, err says why) when the file
 * system cannot lock (a parallel file system mounted without flock, say): the caller goes on
 * without the lock, after a warning. waiting(arg, path), if given, is called once, when another
 * job holds the lock. The lock is released by pkb_unlock (NULL is a no-op), or by the kernel
 * when the process ends, however it ends.
 */
struct pkb_lock;
int pkb_lock_update(const char *path, volatile sig_atomic_t *cancel,
		    void (*waiting)(void *arg, const char *path), void *arg, struct pkb_lock **out,
		    struct pkb_err *err);
void pkb_unlock(struct pkb_lock *l);

#ifdef __cplusplus
}
#endif
#endif /* PKB_H */
