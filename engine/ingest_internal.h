/*
 * ingest_internal.h - private parts of the ingest engine shared by ingest.c, route.c and
 * fill.c. Not API: tests include it to check routing and policies directly.
 */
#ifndef PME_INGEST_INTERNAL_H
#define PME_INGEST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest.h"
#include "pathmap.h"
#include "pio.h"
#include "pme_partition.h"

/* A batch of records as the engine sees it: a pio_batch, or records loaded from --into. */
struct pme_rbatch {
	size_t n;	       /* records */
	const uint8_t *keys;   /* key arena */
	const size_t *key_off; /* n+1 offsets */
	const uint64_t *vals;  /* value words (blob values: offsets into heap) */
	const uint8_t *heap;   /* value heap: [u32 LE length][bytes] entries */
	size_t heap_len;       /* bytes of heap */
	uint64_t ordinal;      /* job-wide index of record 0 (KB records come first) */
	bool preagg;	       /* values are already combined (records of an --into KB) */
};

/* Writes the message into err (if non-NULL); returns rc. */
__attribute__((format(printf, 3, 4))) int pme_seterr(struct pme_err *err, int rc, const char *fmt,
						     ...);

/* A record as the bucket sort moves it: 16 key bytes next to its index, so that most
 * comparisons read nothing but the contiguous slice being sorted. The bytes start after the
 * batch's common prefix (every key of a batch of paths may share its first 8 bytes). The
 * record's value word comes along, so that the fill reads its partition's records in order
 * and never the batch's value array at random (a TLB miss per record on big batches). */
struct pme_kp {
	uint64_t k0;  /* key bytes [L, L+8), big-endian, zero-padded (L: the batch's common
			 prefix length) */
	uint64_t k1;  /* key bytes [L+8, L+16), the same way */
	uint32_t rec; /* record index in the batch */
	uint32_t len; /* key length minus L, UINT32_MAX when longer than that */
	uint64_t val; /* the record's value word (vals[rec]) */
};

/* A key at most this long after the batch's common prefix is whole in its pme_kp: the fill
 * rebuilds it from there instead of reading the batch at random. */
#define PME_KP_SHORT 16

/* The prefix scheme's stem (the sample's common prefix) is cut to this many bytes. */
#define PME_STEM_MAX 1024

/*
 * Rebuilds the key of record e at buf, whose first lcp bytes hold the batch's common prefix
 * already (buf has room for lcp + PME_KP_SHORT bytes). Returns the key's length, or
 * SIZE_MAX when the key is longer than what e holds (read it from the batch).
 */
static inline size_t pme_kp_key(const struct pme_kp *e, size_t lcp, uint8_t *buf)
{
	if (e->len > PME_KP_SHORT)
		return SIZE_MAX;
	pme_put8(buf + lcp, e->k0);
	pme_put8(buf + lcp + 8, e->k1);
	return lcp + e->len;
}

/*
 * Router: per-run scratch arrays, grown to the largest batch, and the partition layout.
 *
 *   pid[i]     bucket of record i (hash: partition; prefix: partition, or P for keys
 *              that do not start with the stem or end before stem + depth)
 *   pre[i]     prefix scheme: the 8 key bytes after the stem, big-endian, zero-padded (its
 *              top d bytes name the zipper)
 *   idx[]      record indices grouped by bucket, in input order inside a bucket (then by
 *              key if sorted); bucket b is idx[start[b] .. start[b+1])
 *   kp[]       when sorted: the records of idx[] in the same order, with their first key
 *              bytes after the common prefix and their value words (the fill reads short
 *              keys and all values from here)
 */
struct pme_router {
	enum pme_scheme scheme; /* hash or prefix */
	uint32_t nparts;	/* P */
	uint32_t nbuckets;	/* hash: P; prefix: P + 1 (bucket P: short keys) */
	int nthreads;		/* threads that route */
	size_t nchunks;		/* slices of a batch routed as one task each */
	unsigned depth;		/* prefix: split depth d in bytes (1..8) */
	uint8_t *stem;		/* prefix: the bytes every partitioned key starts with */
	size_t stem_len;	/* ... their number (0..PME_STEM_MAX) */
	uint64_t *splits;	/* prefix: P lower bounds of d-byte prefixes; splits[0] == 0 */
	uint32_t *pid;		/* n bucket ids */
	uint64_t *pre;		/* n: prefix scheme only, key bytes after the stem */
	uint32_t *idx;		/* n record indices by bucket */
	struct pme_kp *kp;	/* n: key bytes, record and value of idx[] (what the sorts move) */
	struct pme_kp *tmp;	/* sort scratch: the largest bucket's size a thread, or n */
	size_t tmp_cap;		/* records tmp holds */
	size_t *start;		/* nbuckets + 1 bucket starts in idx */
	size_t *hist;		/* nchunks * nbuckets histogram / scatter cursors */
	uint32_t *cnt;		/* the key sorts' counters, a block a thread (not on its stack) */
	size_t lcp;		/* common prefix length of the batch's keys (sort) */
	const uint8_t *lcp_key; /* those lcp bytes (in the routed batch) */
	bool sorted;		/* kp[] follows idx[] (the batch was sorted) */
	size_t cap;		/* records the arrays hold */
};

/* Sets up r for P partitions of the scheme (prefix: with depth and P splits, copied).
 * Returns 0 or PM_ENOMEM. */
int pme_router_init(struct pme_router *r, enum pme_scheme scheme, uint32_t nparts, int nthreads,
		    const uint8_t *stem, size_t stem_len, unsigned depth, const uint64_t *splits);
/* Frees r's arrays. */
void pme_router_free(struct pme_router *r);
/* Routes b: fills pid, pre, idx and start (parallel, stable); sorts every bucket by key
 * (stable) when sort is true. Returns 0 or PM_ENOMEM. */
int pme_route(struct pme_router *r, const struct pme_rbatch *b, bool sort);
/* The prefix-scheme partition of a d-byte prefix value (binary search in splits). */
uint32_t pme_prefix_partition(const struct pme_router *r, uint64_t dprefix);
/* The d-byte prefix of key (len >= depth), as a number. */
uint64_t pme_dprefix(const uint8_t *key, unsigned depth);

/* sysmem.c. The lowest memory limit on the cgroup path of the process whose
 * /proc/PID/cgroup is self_cgroup, with the cgroup file systems mounted at root (cgroup v2's
 * memory.max there, v1's memory.limit_in_bytes under root/memory): UINT64_MAX when none. */
uint64_t pme_cgroup_limit(const char *root, const char *self_cgroup);

/* Physical memory, or the cgroup's limit when that is lower (/sys/fs/cgroup). */
uint64_t pme_memory_limit(void);
/* qsort comparator of uint64_t values, ascending. */
int pme_u64_cmp(const void *a, const void *b);

/*
 * Chooses the prefix scheme's stem, split depth and P lower bounds from a sample of keys
 * (sample[i] is keys[off[i] .. off[i+1])): the stem is the longest prefix that all but the
 * outer 1% of the sample (in key order) share, at most PME_STEM_MAX bytes; then, on the
 * bytes after the stem of the keys that have it, the smallest depth d (1..8) at which they
 * have at least P distinct d-byte prefixes (else 8), and P quantiles of those d-prefixes.
 * Writes stem[0..*stem_len), *depth and splits[0..P). Returns 0 or PM_ENOMEM.
 */
int pme_prefix_plan(const uint8_t *keys, const size_t *off, size_t n, uint32_t nparts,
		    uint8_t *stem, size_t *stem_len, unsigned *depth, uint64_t *splits);

/* A growable byte heap of one partition: [u32 LE length][bytes] entries. */
struct pme_heap {
	uint8_t *buf; /* entries */
	size_t len;   /* bytes used */
	size_t cap;   /* bytes allocated */
};

/* Map value word of a blob stored in heap hid at offset off. */
#define PME_HEAP_SHIFT 44
#define PME_WORD(hid, off) (((uint64_t)(hid) << PME_HEAP_SHIFT) | (uint64_t)(off))

/*
 * Sorted runs a partition holds back (see pme_fill_run), record after record in chunks that
 * never move (growing one buffer by realloc copied every record held so far into fresh pages
 * at each doubling: a quarter of a 10 M-key ingest's page faults). A record is the key's
 * length (u32), the value word (u64) and the key; a record that does not fit its chunk's
 * rest goes to the next chunk, and a mark (length UINT32_MAX, then the next chunk's address)
 * ends the one before.
 * fill.c reads and writes them.
 */
struct pme_held_run {
	const uint8_t *first; /* the run's first record (NULL while it has none) */
	size_t n;	      /* its records */
};

struct pme_held {
	uint8_t **chunk;	  /* the chunks, in the order they were filled */
	size_t nchunks;		  /* chunks in use */
	size_t chunk_cap;	  /* entries of chunk allocated */
	uint8_t *pos;		  /* where the next record goes, in the last chunk */
	uint8_t *lim;		  /* the last chunk's end, less the room of a mark */
	size_t chunk_max;	  /* largest chunk (0: PME_HELD_CHUNK; tests set it small) */
	struct pme_held_run *run; /* the runs, in input order */
	size_t nruns;		  /* runs held */
	size_t run_cap;		  /* entries of run allocated */
	size_t len;		  /* bytes of records held */
	uint64_t nrec;		  /* records held */
	uint64_t ord;		  /* job-wide index of the first one's batch record (errors) */
};

/* Chunks start at 16 KiB and double up to this size (a record longer than a chunk gets a
 * chunk of its own size). */
#define PME_HELD_CHUNK ((size_t)256 << 10)

/* Starts a new run in h. Returns false when h cannot grow (nothing changed). */
bool pme_held_begin(struct pme_held *h);
/* Appends a record (key k of len bytes, value v) to h's last run, which must be sorted in
 * key order (equal keys in input order). Returns false when h cannot grow (nothing added). */
bool pme_held_add(struct pme_held *h, const uint8_t *k, size_t len, uint64_t v);

/* Per-partition fill state, one cache line at least, written only by the thread that fills
 * the partition. */
struct pme_part {
	struct pme_heap heap; /* blob values of the partition */
	struct pme_held held; /* runs not yet in the trie */
	uint64_t records;     /* records filled */
	uint64_t dups;	      /* records whose key was already present */
	uint64_t err_ord;     /* error: job-wide index of the first failing record */
	int rc;		      /* first error (0: none) */
	char pad[64];	      /* keeps neighbours off this cache line */
};

/* What a fill needs to know about values. */
struct pme_fill_ctx {
	enum pme_policy policy; /* duplicate policy */
	enum pio_vtype vclass;	/* value class (INT, UINT, FLOAT: numbers; else blobs) */
	bool blob;		/* values are heap entries (copied into the partition heap) */
	struct pme_part *parts; /* partition states, indexed by heap id */
	uint32_t nparts;	/* their number (router's nbuckets) */
	size_t hold;		/* bytes of runs a partition may hold back (0: none) */
};

/* A filling thread's scratch for a sorted run's keys (grown as needed, kept across runs). */
struct pme_fill_buf {
	pm_kv *kv;     /* the run's keys and values */
	size_t kv_cap; /* entries allocated */
	uint8_t *keys; /* short keys rebuilt from their pme_kp */
	size_t keys_cap;
};

void pme_fill_buf_free(struct pme_fill_buf *fb);

/* Fills records r->idx[from..to) of batch b, as r routed it, through write zipper wz (keys
 * relative to the zipper root after skipping skip bytes), into partition state part (heap
 * id hid). Never fails for duplicates except under the error policy: errors are kept in
 * part. With the last-value policy on numbers and a sorted batch, the run goes to the zipper
 * in one pm_wz_set_sorted call, its keys gathered in fb; when fc->hold is set, the run is
 * held back instead (copied into part->held) until the partition holds fc->hold bytes or
 * 64 runs, or the input ends (pme_fill_flush): the runs then go in merged, as one. Building
 * new nodes whole costs about half of what merging a run into grown nodes does (10 M random
 * keys in 2 M-record batches: the first batch fills in 0.16 s, the fourth in 0.32 s). */
void pme_fill_run(const struct pme_fill_ctx *fc, const struct pme_rbatch *b,
		  const struct pme_router *r, size_t from, size_t to, pm_wz *wz, size_t skip,
		  uint32_t hid, struct pme_part *part, struct pme_fill_buf *fb);
/* Puts the runs partition part holds back into the trie through wz (one pm_wz_set_sorted
 * call over their merge) and frees them; errors are kept in part. */
void pme_fill_flush(pm_wz *wz, struct pme_part *part, struct pme_fill_buf *fb);
/* Frees what part holds back, unfilled. */
void pme_held_free(struct pme_held *h);
/* The same into a plain map (prefix scheme's short keys, written by one thread). */
void pme_fill_map(const struct pme_fill_ctx *fc, const struct pme_rbatch *b, const uint32_t *idx,
		  size_t from, size_t to, pm_map *m, uint32_t hid, struct pme_part *part);
/* pkb_blob_fn over the engine's heaps (ud: struct pme_fill_ctx *). */
int pme_blob_get(void *ud, uint64_t w, const uint8_t **data, size_t *len);

#endif /* PME_INGEST_INTERNAL_H */
