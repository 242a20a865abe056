/*
 * pm_snap.h - canonical, checksummed, query-in-place snapshots of a pathmap.
 *
 * A snapshot image is a byte string that holds the logical content of a map (its keys and
 * value words) as a prefix-compressed trie laid out for reading in place: a reader maps the
 * bytes (mmap or memory) and answers get, count and ordered scans by walking them, without
 * building anything. The bytes are a function of the content only: the same keys and values
 * give the same image whatever the map's history (insert order, clones, joins, node shapes).
 * The format is specified in pathmap/FORMAT.md.
 *
 * Writing goes through a builder fed with keys in strictly increasing byte order; it emits
 * the image through a caller's sink in one forward pass (nodes in post-order, so no seek and
 * no buffering of the whole image), memory O(longest key + widest fan-out along one path).
 *
 * Reading trusts nothing: every offset is bounds-checked before use, so any byte string
 * (truncated, corrupted, foreign) either opens and answers, or is refused with a code, and
 * never makes a reader touch memory outside [data, data + len). pm_snap_open() checks the
 * footer in O(1) (and the whole-image checksum when asked); pm_snap_verify() checks the
 * checksum and every structural invariant, including the canonical layout.
 *
 * Errors: negative codes, the PM_E* codes of pathmap.h and the PM_SNAP_E* codes below;
 * pm_snap_strerror() names either kind.
 *
 * Threads: no global state. A pm_snap is read-only after pm_snap_open(): any number of
 * threads may query one pm_snap at the same time, each with its own iterators. A builder or
 * an iterator is used by one thread at a time.
 */
#ifndef PM_SNAP_H
#define PM_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pathmap.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes of this module (besides PM_ENOMEM, PM_EINVAL, PM_ENOTFOUND, PM_EOVERFLOW). */
enum {
	PM_SNAP_ECORRUPT = -1101,  /* the image breaks a structural rule (damaged) */
	PM_SNAP_EFOREIGN = -1102,  /* not a snapshot image: wrong magic */
	PM_SNAP_EVERSION = -1103,  /* a snapshot of a newer format version or unknown flags */
	PM_SNAP_ETRUNC = -1104,	   /* the image is shorter than its footer says */
	PM_SNAP_ECHECKSUM = -1105, /* a checksum does not match the bytes */
	PM_SNAP_EORDER = -1106,	   /* builder: a key is not greater than the previous one */
	PM_SNAP_ESINK = -1107,	   /* builder: the sink returned an error (see builder_finish) */
};

/* Returns a static description of a PM_SNAP_E* or PM_E* code. Never NULL. */
const char *pm_snap_strerror(int rc);

#define PM_SNAP_VERSION 1      /* format version this library writes and reads */
#define PM_SNAP_FOOTER_SIZE 64 /* bytes of the footer that ends every image */

/* ------------------------------------------------------------------------------------------ */
/* Writing */

/*
 * Sink: receives the image in order, len > 0 bytes at a time (buf valid only during the
 * call). Returns 0, or a negative code that aborts the build: the builder then returns
 * PM_SNAP_ESINK from the call that was writing and the sink's own code is available from
 * pm_snap_builder_sink_error().
 */
typedef int (*pm_snap_sink_fn)(void *ud, const void *buf, size_t len);

typedef struct pm_snap_builder pm_snap_builder;

/*
 * Creates a builder writing to sink. alloc == NULL selects pm_default_alloc. Returns 0 and
 * *out, or PM_ENOMEM. Release with pm_snap_builder_destroy().
 */
int pm_snap_builder_create(pm_alloc_fn alloc, void *ud, pm_snap_sink_fn sink, void *sink_ud,
			   pm_snap_builder **out);

/*
 * Adds key -> val. Keys must come in strictly increasing byte order (a proper prefix before
 * its extensions). Returns 0, PM_SNAP_EORDER (the builder is unchanged; the call may be
 * skipped), PM_EINVAL (key == NULL with len > 0), PM_ENOMEM or PM_SNAP_ESINK. After
 * PM_ENOMEM or PM_SNAP_ESINK the builder can only be destroyed.
 */
int pm_snap_builder_add(pm_snap_builder *b, const uint8_t *key, size_t len, uint64_t val);

/*
 * Writes the rest of the image (the open nodes and the footer). *image_len (if non-NULL)
 * receives the total bytes written. Returns 0, PM_ENOMEM or PM_SNAP_ESINK. The builder can
 * then only be destroyed.
 */
int pm_snap_builder_finish(pm_snap_builder *b, uint64_t *image_len);

/*
 * Building in parts (parallel writers). Take a key set whose longest common prefix is C. Its
 * image is, byte for byte: the image of each group of keys C ++ c ++ s (one group per byte
 * c, in byte order) built from the stripped keys s alone, the root node (prefix C, the value
 * of key C if present, the groups as children), then the footer. So a group can be built by
 * any thread: a builder given the stripped keys of one group and closed with
 * pm_snap_builder_finish_part() writes only that group's nodes (no padding, no footer) and
 * describes them in a pm_snap_part; pm_snap_builder_join() then writes, through a builder that
 * has been given no key, the parts' bytes, the root node and the footer.
 */
struct pm_snap_part {
	const void *nodes; /* the part's node bytes, as its sink received them */
	uint64_t len;	   /* their number */
	uint64_t root;	   /* offset of the part's root node in nodes */
	uint64_t count;	   /* keys in the part (at least 1) */
	uint64_t max_key;  /* length of its longest (stripped) key */
	uint8_t byte;	   /* the branch byte c after the common prefix */
};

/*
 * Marks a fresh builder (no key, nothing written) as one that will be closed with
 * pm_snap_builder_finish_part(): it skips hashing its output, which only a whole image needs
 * (the joining builder hashes the part's bytes as it writes them). finish and join then
 * return PM_EINVAL. Returns 0 or PM_EINVAL (not fresh).
 */
int pm_snap_builder_for_part(pm_snap_builder *b);

/*
 * Writes the open nodes of a builder that has been given at least one key, and fills *part
 * (all but nodes and byte). Returns 0, PM_EINVAL (no key), PM_ENOMEM or PM_SNAP_ESINK. The
 * builder can then only be destroyed.
 */
int pm_snap_builder_finish_part(pm_snap_builder *b, struct pm_snap_part *part);

/*
 * Writes the whole image of the key set described above through a builder that has been
 * given no key: parts[0..n) in strictly increasing byte order, prefix[0..plen) = C, and the
 * value of key C when has_val. C must be the longest common prefix: n >= 2, or n == 1 with
 * has_val, or n == 0 (has_val: the image of the one key C; else the empty image). Returns 0,
 * PM_EINVAL (a rule above broken), PM_ENOMEM or PM_SNAP_ESINK; *image_len as
 * pm_snap_builder_finish(). The builder can then only be destroyed.
 */
int pm_snap_builder_join(pm_snap_builder *b, const uint8_t *prefix, size_t plen, bool has_val,
			 uint64_t val, const struct pm_snap_part *parts, size_t n,
			 uint64_t *image_len);

/* Told of each key of a union (see below), in order: src is the index of the subtrie it
 * comes from, *val its value, which the callback may replace (the image then holds the new
 * one). Non-zero stops the walk, which then returns that code. */
typedef int (*pm_snap_union_fn)(void *arg, size_t src, const uint8_t *key, size_t len,
				uint64_t *val);

/* Called by pm_snap_builder_add_union() as the walk begins and then about every 65536 keys
 * (keys: how many it has met so far): non-zero stops the walk, which then returns that code.
 * A way to cancel a long walk without a callback for every key. */
typedef int (*pm_snap_tick_fn)(void *arg, uint64_t keys);

/* Sets (fn non-NULL) or clears the builder's tick. */
void pm_snap_builder_set_tick(pm_snap_builder *b, pm_snap_tick_fn fn, void *arg);

/*
 * Adds the keys of the union of n subtries of m to a builder that has been given no key: the
 * keys k such that paths[i] ++ k is a key of m, for some i (paths[i] has lens[i] bytes; a
 * path with no key under it adds nothing), each with its value in m. The subtries' key sets
 * must be disjoint. The result is byte for byte what adding the union's keys in order would
 * give, but the walk follows the subtries' nodes instead of spelling out every key, so it
 * costs about one step per node. check (if non-NULL) is told of every key, in order, before
 * it is written. Afterwards the builder takes only finish, finish_part or destroy.
 * *key_bytes (if non-NULL) receives the sum of the keys' lengths. m must not change during
 * the call. Returns 0 (no key: the builder is as before), PM_EINVAL (the builder has keys, or
 * one key is in two subtries), check's or the tick's code, PM_ENOMEM, PM_EOVERFLOW or
 * PM_SNAP_ESINK. After an error the builder can only be destroyed, unless no node was written
 * yet.
 */
int pm_snap_builder_add_union(pm_snap_builder *b, const pm_map *m, const uint8_t *const *paths,
			      const size_t *lens, size_t n, pm_snap_union_fn check, void *arg,
			      uint64_t *key_bytes);

/*
 * pm_snap_builder_join() piece by piece, so that parts can be written as they are finished
 * (and freed): pm_snap_builder_join_parts() writes parts[0..n) through a builder that has been
 * given no key, and may be called again with the next parts (bytes strictly increasing across
 * the calls); the nodes of a part may be freed once the call returns.
 * pm_snap_builder_join_finish() then writes the root (prefix C, the value of key C when
 * has_val) and the footer, under the rules of pm_snap_builder_join(). Both return 0,
 * PM_EINVAL (a rule broken: nothing written by that call), PM_ENOMEM or PM_SNAP_ESINK; after
 * the latter two the builder can only be destroyed, as after join_finish.
 */
int pm_snap_builder_join_parts(pm_snap_builder *b, const struct pm_snap_part *parts, size_t n);
int pm_snap_builder_join_finish(pm_snap_builder *b, const uint8_t *prefix, size_t plen,
				bool has_val, uint64_t val, uint64_t *image_len);

/* The code the sink returned when a call failed with PM_SNAP_ESINK, else 0. */
int pm_snap_builder_sink_error(const pm_snap_builder *b);

/* Number of keys added so far. */
uint64_t pm_snap_builder_count(const pm_snap_builder *b);

/* Destroys a builder. NULL is a no-op. */
void pm_snap_builder_destroy(pm_snap_builder *b);

/* Writes the image of every key of m (pm_snap_builder_add_union over the whole map). m must
 * not change during the call. Returns 0, PM_ENOMEM or PM_SNAP_ESINK (sink's code in
 * *sink_rc). */
int pm_snap_write_map(const pm_map *m, pm_snap_sink_fn sink, void *sink_ud, uint64_t *image_len,
		      int *sink_rc);

/* ------------------------------------------------------------------------------------------ */
/* Reading */

/* An open image: plain data, filled by pm_snap_open(), read-only afterwards. The bytes stay
 * owned by the caller and must outlive every use of the pm_snap and of its iterators. */
typedef struct pm_snap {
	const uint8_t *base; /* first byte of the image */
	uint64_t len;	     /* bytes of the image, footer included */
	uint64_t node_bytes; /* bytes of the node area [0, node_bytes) */
	uint64_t root;	     /* offset of the root node (meaningful when count > 0) */
	uint64_t count;	     /* number of keys */
	uint64_t max_key;    /* length of the longest key */
	uint64_t checksum;   /* XXH3-64 of the bytes before the footer, as recorded */
} pm_snap;

enum {
	PM_SNAP_OPEN_CHECKSUM = 1, /* pm_snap_open: also hash the whole image (O(len)) */
};

/*
 * Opens the image data[0..len) into *s. Checks the footer (magic, version, flags, its own
 * checksum, every size and offset it gives against len) in O(1); with PM_SNAP_OPEN_CHECKSUM
 * also the checksum of the whole image. Nodes are checked as they are read. Returns 0,
 * PM_SNAP_EFOREIGN, PM_SNAP_EVERSION, PM_SNAP_ETRUNC, PM_SNAP_ECORRUPT or PM_SNAP_ECHECKSUM.
 * Nothing to close.
 */
int pm_snap_open(pm_snap *s, const void *data, size_t len, unsigned flags);

/*
 * Looks key up. Returns 0 and *val (if non-NULL), PM_ENOTFOUND, or PM_SNAP_ECORRUPT when a
 * node on the way is damaged.
 */
int pm_snap_get(const pm_snap *s, const uint8_t *key, size_t len, uint64_t *val);

/* Number of keys starting with prefix, in O(len of prefix) (nodes record their counts).
 * Returns 0 and *count, or PM_SNAP_ECORRUPT. */
int pm_snap_count_prefix(const pm_snap *s, const uint8_t *prefix, size_t len, uint64_t *count);

/* An ordered cursor over the keys of an image. */
typedef struct pm_snap_iter pm_snap_iter;

/* Creates an iterator positioned before the first key. Returns 0 or PM_ENOMEM. */
int pm_snap_iter_create(const pm_snap *s, pm_alloc_fn alloc, void *ud, pm_snap_iter **out);

/*
 * Positions the iterator before the first key that starts with prefix and is >= from (from
 * may be NULL: no lower bound); pm_snap_iter_next() then returns the keys that start with
 * prefix, in order. Returns 0, PM_ENOMEM or PM_SNAP_ECORRUPT.
 */
int pm_snap_iter_seek(pm_snap_iter *it, const uint8_t *prefix, size_t plen, const uint8_t *from,
		      size_t flen);

/*
 * Steps to the next key: returns 1 with *key and *len (valid until the iterator next moves) and
 * *val, 0 at the end, or PM_ENOMEM / PM_SNAP_ECORRUPT (then only destroy it).
 */
int pm_snap_iter_next(pm_snap_iter *it, const uint8_t **key, size_t *len, uint64_t *val);

/* Visitor of pm_snap_iter_run(): non-zero stops the run and is returned. */
typedef int (*pm_snap_visit_fn)(const uint8_t *key, size_t len, uint64_t val, void *arg);

/*
 * Calls fn for every key pm_snap_iter_next() would return from here, in order (faster than a
 * loop of pm_snap_iter_next()). Returns 0 at the end, fn's non-zero return (the iterator then
 * stands after that key: pm_snap_iter_next() or another run goes on from there), or
 * PM_ENOMEM / PM_SNAP_ECORRUPT (then only destroy it). fn must not move the iterator.
 */
int pm_snap_iter_run(pm_snap_iter *it, pm_snap_visit_fn fn, void *arg);

/* Destroys an iterator. NULL is a no-op. */
void pm_snap_iter_destroy(pm_snap_iter *it);

/* Shape of an image, from a walk of every node. */
typedef struct pm_snap_stats {
	uint64_t values;       /* keys */
	uint64_t nodes;	       /* all nodes */
	uint64_t leaf_nodes;   /* nodes without children */
	uint64_t list_nodes;   /* nodes with a sorted list of child bytes (up to 32 children) */
	uint64_t dense_nodes;  /* nodes with a 256-bit child mask */
	uint64_t node_bytes;   /* bytes of the node area */
	uint64_t prefix_bytes; /* compressed path bytes stored in nodes */
	uint64_t key_bytes;    /* sum of the lengths of all keys */
	uint64_t max_key;      /* longest key, bytes */
	uint64_t max_depth;    /* most nodes on one root-to-leaf path */
} pm_snap_stats;

/*
 * Checks the image completely: the checksum (unless skip_checksum) and every structural
 * invariant (node encodings minimal and canonical, child bytes ascending, counts, the
 * post-order layout covering the node area exactly, footer totals). Fills *st (if non-NULL)
 * on success. Returns 0, PM_ENOMEM, PM_SNAP_ECHECKSUM or PM_SNAP_ECORRUPT; on failure writes
 * a one-line reason into msg[0..msglen) when msg is non-NULL. Memory O(depth).
 */
int pm_snap_verify(const pm_snap *s, bool skip_checksum, pm_alloc_fn alloc, void *ud,
		   pm_snap_stats *st, char *msg, size_t msglen);

/* Progress of a long call: done is how far it got (values verified, for pm_snap_verify). */
typedef void (*pm_snap_progress_fn)(void *arg, uint64_t done);
#define PM_SNAP_PROGRESS_STEP 65536 /* values between two calls of a progress hook */

/* pm_snap_verify, calling fn(arg, values verified so far) (if fn is non-NULL) every
 * PM_SNAP_PROGRESS_STEP values of the structural walk. */
int pm_snap_verify_progress(const pm_snap *s, bool skip_checksum, pm_alloc_fn alloc, void *ud,
			    pm_snap_progress_fn fn, void *arg, pm_snap_stats *st, char *msg,
			    size_t msglen);

/*
 * Sets every key of the image in m (existing keys get the image's value). Returns 0,
 * PM_ENOMEM or PM_SNAP_ECORRUPT (m then holds the keys set so far).
 */
int pm_snap_load(const pm_snap *s, pm_map *m);

#ifdef __cplusplus
}
#endif
#endif /* PM_SNAP_H */
