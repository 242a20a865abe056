/*
 * pathmap.h - a byte-trie map from byte strings to 64-bit value words.
 *
 * This header is the whole contract of the pathmap library. Anything not declared here is
 * private and may change.
 *
 * Model
 *   A pm_map holds a set of (key, value) pairs. A key is any byte string: the empty key, keys
 *   containing NUL bytes and keys of any length are all valid. A value is one uint64_t word
 *   whose meaning belongs to the caller. Keys are ordered byte-lexicographically (a proper
 *   prefix sorts before its extensions).
 *
 *   The map is a trie with prefix compression. Nodes are reference counted, so pm_map_clone()
 *   is O(1): both maps share every node, and the first write through a shared node copies that
 *   node only (copy-on-write). A clone never sees another map's writes.
 *
 * Errors
 *   Functions that act return an int: 0 on success or a negative PM_E* code; pm_strerror()
 *   names it. Predicates return bool. Results come back through out-parameters, which are
 *   written only on success. A failed call leaves every map it touched valid, holding the
 *   same content as before the call, and leaks nothing.
 *
 * Memory
 *   All memory comes from one realloc-shaped hook given at creation (pm_alloc_fn). A map,
 *   its clones, and maps produced from it by algebra or take share that hook.
 *
 * Threads
 *   The library starts no threads and holds no global mutable state. A map and everything
 *   derived from it (zippers, clones) may be used by one thread at a time, with these
 *   exceptions:
 *   - read-only calls (pm_map_get, pm_map_count, read zippers, iterators) on one map may run
 *     concurrently with each other;
 *   - maps that share nodes through clone may be used from different threads at the same
 *     time without any lock: reference counts are atomic;
 *   - write zippers handed out by one pm_head at disjoint paths may be used from different
 *     threads at the same time, with no lock (see pm_head below).
 */
#ifndef PATHMAP_H
#define PATHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. All are negative; 0 is success. */
enum {
	PM_OK = 0,
	PM_ENOMEM = -12,    /* an allocation failed (errno ENOMEM) */
	PM_EINVAL = -22,    /* an argument is invalid (errno EINVAL) */
	PM_ENOTFOUND = -2,  /* no value at the key or path (errno ENOENT) */
	PM_ECONFLICT = -16, /* zipper path overlaps a live zipper of the head (errno EBUSY) */
	PM_EOVERFLOW = -75, /* a size computation would overflow (errno EOVERFLOW) */
	PM_EMERGE = -1000,  /* a merge callback refused to combine two values */
};

/* Returns a static, human-readable description of an error code. Never NULL. */
const char *pm_strerror(int rc);

/*
 * Allocation hook, shaped like realloc with the old size:
 *   ptr == NULL, nsize > 0: allocate nsize bytes;
 *   ptr != NULL, nsize > 0: resize a block of osize bytes to nsize bytes;
 *   ptr != NULL, nsize == 0: free a block of osize bytes; return value ignored.
 * Returns NULL when it cannot allocate (the old block, if any, stays valid). Blocks are used
 * for objects with 8-byte alignment. The hook may be called from any thread that uses a map;
 * it must be thread-safe if maps sharing it are used concurrently.
 */
typedef void *(*pm_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/* The default hook: malloc/realloc/free of the C library (jemalloc when linked). */
void *pm_default_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

typedef struct pm_map pm_map;	/* a map; owns its root */
typedef struct pm_rz pm_rz;	/* a read zipper (cursor) */
typedef struct pm_wz pm_wz;	/* a write zipper */
typedef struct pm_head pm_head; /* a ZipperHead handing out zippers inside one map */

/* ------------------------------------------------------------------------------------------ */
/* Maps */

/*
 * Creates an empty map. alloc == NULL selects pm_default_alloc; ud is passed to the hook.
 * Returns 0 and *out, or PM_ENOMEM. Release with pm_map_destroy().
 */
int pm_map_create(pm_map **out, pm_alloc_fn alloc, void *ud);

/* Destroys a map and drops its references to shared nodes. NULL is a no-op. */
void pm_map_destroy(pm_map *m);

/* Creates *out sharing every node of m, in O(1). Returns 0 or PM_ENOMEM. */
int pm_map_clone(const pm_map *m, pm_map **out);

/*
 * Sets the value of key to val, inserting the key if absent. If old is non-NULL, *old gets
 * the previous value when there was one. Returns 1 if the key was inserted, 0 if an existing
 * value was replaced, or PM_ENOMEM / PM_EINVAL (key == NULL with len > 0).
 */
int pm_map_set(pm_map *m, const uint8_t *key, size_t len, uint64_t val, uint64_t *old);

/* A key and its value, for the calls that set a sorted run. */
typedef struct pm_kv {
	const uint8_t *key; /* len bytes; NULL only when len is 0 */
	size_t len;
	uint64_t val;
} pm_kv;

/*
 * Sets kv[0..n), whose keys are in ascending byte order (equal keys next to each other, the
 * last of them wins): the map ends as n pm_map_set calls in that order leave it, but the
 * nodes the run adds are built whole, each allocated once. *added (if non-NULL) gets how many
 * keys were inserted. Returns 0, PM_EINVAL (keys out of order, or a NULL key with len > 0;
 * nothing set) or PM_ENOMEM (some keys set, *added counts them; the map stays valid).
 */
int pm_map_set_sorted(pm_map *m, const pm_kv *kv, size_t n, size_t *added);

/*
 * Update rule for pm_map_update / pm_wz_update_at: called once, with exists telling whether
 * the key has a value (then in old). It writes the value to store into *val and returns
 * PM_UPDATE_STORE, returns PM_UPDATE_KEEP to leave the key as it is (absent stays absent), or
 * returns a negative number to stop: the update call then returns that number, map unchanged.
 */
enum { PM_UPDATE_STORE = 0, PM_UPDATE_KEEP = 1 };
typedef int (*pm_update_fn)(bool exists, uint64_t old, uint64_t *val, void *arg);

/*
 * Reads and writes key's value in one descent, as fn decides. Returns 1 if a value was
 * inserted, 0 if one was replaced or the rule kept the key as it was, fn's negative number,
 * PM_ENOMEM or PM_EINVAL.
 */
int pm_map_update(pm_map *m, const uint8_t *key, size_t len, pm_update_fn fn, void *arg);

/* Returns true and *val (if val is non-NULL) when key has a value. */
bool pm_map_get(const pm_map *m, const uint8_t *key, size_t len, uint64_t *val);

/* Returns true when key has a value. */
bool pm_map_contains(const pm_map *m, const uint8_t *key, size_t len);

/*
 * Looks up the keys kv[0..n) (kv[i].key, kv[i].len) at once: for each i, found[i] (when found
 * is non-NULL) tells whether the key has a value, and kv[i].val gets the value when it has
 * one (it is left as it was when not). Returns how many keys have a value. The answers are
 * those of n pm_map_get calls; on a map larger than the cache this is faster, since the
 * lookups are interleaved so that the memory reads of several keys are in flight together.
 * A NULL key with len > 0 is not found. Same threading rule as pm_map_get.
 */
size_t pm_map_get_many(const pm_map *m, pm_kv *kv, size_t n, bool *found);

/*
 * Sets kv[0..n), keys in any order: the map ends as n pm_map_set calls in that order leave
 * it (of equal keys the last wins). On a map larger than the cache this is faster: each
 * small group of keys is first looked up interleaved (see pm_map_get_many), which brings
 * their paths into cache, and then set. *added (if non-NULL) gets how many keys were
 * inserted. Returns 0, PM_EINVAL (a NULL key with len > 0 anywhere in kv; nothing set) or
 * PM_ENOMEM (the keys up to some point of kv are set, *added counts those inserted; the map
 * stays valid).
 */
int pm_map_set_many(pm_map *m, const pm_kv *kv, size_t n, size_t *added);

/*
 * Removes key. Returns 0 (and *old when non-NULL), PM_ENOTFOUND if the key has no value, or
 * PM_ENOMEM (removing from a node shared with a clone may need a copy).
 */
int pm_map_remove(pm_map *m, const uint8_t *key, size_t len, uint64_t *old);

/* Number of values in the map, O(1). */
size_t pm_map_count(const pm_map *m);

/* Number of keys that start with prefix (the prefix itself included when it has a value). */
size_t pm_map_count_prefix(const pm_map *m, const uint8_t *prefix, size_t len);

/* Removes every key. Never fails. */
void pm_map_clear(pm_map *m);

/* True when both maps hold exactly the same keys and values. Shared subtries compare in O(1). */
bool pm_map_equal(const pm_map *a, const pm_map *b);

/*
 * Verifies every structural invariant of the map (node kinds and sizes, child order,
 * prefix compression, reference counts at least 1, the value count). Returns 0 or
 * PM_EINVAL; when msg is non-NULL and the check fails, writes a description into
 * msg[0..msglen).
 */
int pm_map_check(const pm_map *m, char *msg, size_t msglen);

/* Memory and shape statistics, from a walk of the map. Shared nodes are counted once each
 * time they are reached (a map and its clone each count the shared nodes). */
typedef struct pm_stats {
	size_t values;	      /* number of values */
	size_t nodes;	      /* all nodes (value tags included) */
	size_t leaf_nodes;    /* nodes without children (value tags included) */
	size_t value_tags;    /* leaves held in their parent's child slot, no block: a key
				 ending at most 2 bytes after its branch byte, with a value
				 below 2^61 (below 2^45 when it ends past the branch byte) */
	size_t packed_leaves; /* leaf blocks of 16 bytes holding a 3-7 byte key suffix and a
				 value that fits the bytes left (below 2^56 to 2^24) */
	size_t small_nodes;   /* nodes with a sorted child list (up to 6 children) */
	size_t dense_nodes;   /* nodes with a 256-bit child mask */
	size_t node_bytes;    /* bytes requested from the allocator for nodes */
	size_t max_depth;     /* longest key, in bytes */
	size_t prefix_bytes;  /* bytes of compressed path stored in nodes */
} pm_stats;

/* Fills *st from a walk of the map. */
void pm_map_stats(const pm_map *m, pm_stats *st);

/* ------------------------------------------------------------------------------------------ */
/* Ordered iteration */

/*
 * Calls fn(key, len, val, arg) for every key that starts with prefix and is >= from (all such
 * keys when from == NULL), in byte-lexicographic order. key points to a buffer valid only
 * during the call. fn returns 0 to continue, anything else to stop; pm_map_foreach returns
 * that value, 0 when all keys were visited, or PM_ENOMEM. The map must not change during
 * the walk.
 */
typedef int (*pm_visit_fn)(const uint8_t *key, size_t len, uint64_t val, void *arg);
int pm_map_foreach(const pm_map *m, const uint8_t *prefix, size_t plen, const uint8_t *from,
		   size_t flen, pm_visit_fn fn, void *arg);

/* ------------------------------------------------------------------------------------------ */
/* Map algebra. Operands are never changed; the result is a new map in *out, sharing nodes
 * with the operands where it can. */

/*
 * Merge rule for join: combines a (from the left map) and b (from the right map) into *out.
 * Returns 0, or non-zero to abort the join (it then returns PM_EMERGE).
 * A NULL rule keeps the left value.
 */
typedef int (*pm_merge_fn)(uint64_t a, uint64_t b, uint64_t *out, void *arg);

/* *out = a ∪ b; values present in both are combined by merge (NULL: keep a's). */
int pm_map_join(const pm_map *a, const pm_map *b, pm_merge_fn merge, void *arg, pm_map **out);

/* *out = keys present in both, with a's values. */
int pm_map_meet(const pm_map *a, const pm_map *b, pm_map **out);

/* *out = keys of a that are not in b, with a's values. */
int pm_map_subtract(const pm_map *a, const pm_map *b, pm_map **out);

/* *out = keys of a that start with some key of prefixes (values of prefixes are ignored). */
int pm_map_restrict(const pm_map *a, const pm_map *prefixes, pm_map **out);

/* ------------------------------------------------------------------------------------------ */
/* Read zippers
 *
 * A read zipper is a cursor with a focus: a path relative to the zipper's root. The focus may
 * be any path, present in the map or not; pm_rz_exists() tells. A zipper keeps the stack of
 * nodes from its root to its focus, so moving between nearby paths costs only the bytes that
 * differ. A read zipper holds a reference on the nodes it reads: later writes to the map do
 * not change what it sees (it reads a snapshot taken at creation).
 */

/* Creates a read zipper whose root is the map's root. Returns 0 or PM_ENOMEM. */
int pm_rz_create(const pm_map *m, pm_rz **out);
/* Creates a read zipper whose root is the given path of the map. */
int pm_rz_create_at(const pm_map *m, const uint8_t *path, size_t len, pm_rz **out);
/* Creates a new read zipper whose root is z's focus. */
int pm_rz_fork(const pm_rz *z, pm_rz **out);
/* Destroys a read zipper. NULL is a no-op. */
void pm_rz_destroy(pm_rz *z);

/* Moves the focus down by one byte / by a path. Returns 0, PM_ENOMEM, or PM_EINVAL (a NULL
 * path of nonzero length). */
int pm_rz_descend_byte(pm_rz *z, uint8_t b);
int pm_rz_descend(pm_rz *z, const uint8_t *path, size_t len);
/* Moves the focus up by n bytes (at most to the root). Returns the number of bytes moved. */
size_t pm_rz_ascend(pm_rz *z, size_t n);
/* Moves the focus to the zipper's root. */
void pm_rz_reset(pm_rz *z);

/* The focus path relative to the zipper's root; valid until the zipper next moves. */
const uint8_t *pm_rz_path(const pm_rz *z, size_t *len);
/* True when the focus path lies in the map (a value at it, or below it). This and the other
 * questions about the focus (value, children, count) rebuild the zipper's node stack after
 * a move: when that runs out of memory they answer "absent" (false, 0), and the next call
 * tries again. */
bool pm_rz_exists(const pm_rz *z);
/* True and *val when the focus has a value. */
bool pm_rz_value(const pm_rz *z, uint64_t *val);
/* Number of distinct next bytes below the focus (0 to 256). */
unsigned pm_rz_child_count(const pm_rz *z);
/* Writes the distinct next bytes below the focus, ascending, into bytes[0..256); returns
 * their number. */
unsigned pm_rz_child_bytes(const pm_rz *z, uint8_t bytes[256]);
/* Number of values at or below the focus. */
size_t pm_rz_count(const pm_rz *z);

/*
 * Moves the focus to the next (or previous) path holding a value, in key order, among the
 * paths under the zipper's root. Returns 1 when moved, 0 when there is none (the focus then
 * stays where it was), or PM_ENOMEM.
 */
int pm_rz_next_value(pm_rz *z);
int pm_rz_prev_value(pm_rz *z);
/*
 * Moves the focus to the first path holding a value that is >= path (in key order, paths
 * relative to the zipper's root). Returns 1, 0 (none: focus at the root), PM_ENOMEM or
 * PM_EINVAL (a NULL path of nonzero length).
 */
int pm_rz_seek(pm_rz *z, const uint8_t *path, size_t len);

/* ------------------------------------------------------------------------------------------ */
/* Write zippers
 *
 * A write zipper is a read zipper that may also change the map below its root. One made by
 * pm_wz_create() writes straight into the map; no other access to that map is allowed while it
 * lives. One made by a pm_head writes into the head's map (see below).
 */

/* Creates a write zipper whose root is the given path of m. Returns 0 or PM_ENOMEM. */
int pm_wz_create(pm_map *m, const uint8_t *path, size_t len, pm_wz **out);
/* Destroys a write zipper made by pm_wz_create(). NULL is a no-op. Zippers from a head are
 * released with pm_head_release(). */
void pm_wz_destroy(pm_wz *z);

/* Movement and reading, as for read zippers. */
int pm_wz_descend_byte(pm_wz *z, uint8_t b);
int pm_wz_descend(pm_wz *z, const uint8_t *path, size_t len);
size_t pm_wz_ascend(pm_wz *z, size_t n);
void pm_wz_reset(pm_wz *z);
const uint8_t *pm_wz_path(const pm_wz *z, size_t *len);
bool pm_wz_exists(const pm_wz *z);
bool pm_wz_value(const pm_wz *z, uint64_t *val);
unsigned pm_wz_child_count(const pm_wz *z);
unsigned pm_wz_child_bytes(const pm_wz *z, uint8_t bytes[256]);
size_t pm_wz_count(const pm_wz *z);
int pm_wz_next_value(pm_wz *z);
int pm_wz_prev_value(pm_wz *z);
/* Creates a read zipper whose root is the write zipper's focus (a snapshot of it). */
int pm_wz_fork_reader(const pm_wz *z, pm_rz **out);

/* Sets the value at the focus. Returns 1 (inserted), 0 (replaced, *old set if non-NULL) or
 * PM_ENOMEM. */
int pm_wz_set_value(pm_wz *z, uint64_t val, uint64_t *old);
/* Sets the value at focus ++ suffix without moving the focus; same returns. This is the fast
 * path for filling a zipper's subtrie. */
int pm_wz_set_at(pm_wz *z, const uint8_t *suffix, size_t len, uint64_t val, uint64_t *old);
/* Sets the sorted run kv[0..n) at focus ++ each key, as pm_map_set_sorted does. */
int pm_wz_set_sorted(pm_wz *z, const pm_kv *kv, size_t n, size_t *added);
/* Updates the value at focus ++ suffix by rule fn (see pm_map_update); same returns. */
int pm_wz_update_at(pm_wz *z, const uint8_t *suffix, size_t len, pm_update_fn fn, void *arg);
/* Looks up the value at focus ++ suffix without moving the focus. */
bool pm_wz_get_at(const pm_wz *z, const uint8_t *suffix, size_t len, uint64_t *val);
/* Removes the value at the focus. Returns 0 (and *old), PM_ENOTFOUND or PM_ENOMEM. */
int pm_wz_remove_value(pm_wz *z, uint64_t *old);
/* Removes everything strictly below the focus (the focus value stays). Returns 0 or
 * PM_ENOMEM. */
int pm_wz_remove_branches(pm_wz *z);
/*
 * Replaces the subtrie at the focus (its value and everything below) with the content of src:
 * src's key k lands at focus ++ k. src is unchanged (its nodes are shared). Returns 0 or
 * PM_ENOMEM.
 */
int pm_wz_graft(pm_wz *z, const pm_map *src);
/*
 * Cuts the subtrie at the focus (its value and everything below) out of the map into a new
 * map *out, whose key k was focus ++ k. Returns 0 or PM_ENOMEM.
 */
int pm_wz_take(pm_wz *z, pm_map **out);
/* Replaces the subtrie at the focus S with S ∪ src, S ∩ src or S \ src, keys of src taken
 * relative to the focus. Same rules as pm_map_join/meet/subtract. */
int pm_wz_join(pm_wz *z, const pm_map *src, pm_merge_fn merge, void *arg);
int pm_wz_meet(pm_wz *z, const pm_map *src);
int pm_wz_subtract(pm_wz *z, const pm_map *src);
/* Number of values the zipper added (positive) or removed (negative) since it was made. */
int64_t pm_wz_count_delta(const pm_wz *z);

/* ------------------------------------------------------------------------------------------ */
/* ZipperHead
 *
 * A head owns a map while it lives and hands out zippers rooted at paths of that map, several
 * alive at once. An exclusive write zipper at path P takes the subtrie at P out of the map
 * (O(depth of P)) and works on it alone; releasing it puts the subtrie back. Two write
 * zippers at disjoint paths (neither path a prefix of the other) thus touch disjoint memory
 * and may be used from different threads at the same time with no lock.
 *
 * Threading rule: pm_head_* calls (creating and releasing zippers) are serial: make them from
 * one thread, outside the parallel region. Between them, each live zipper may be used by one
 * thread; zippers from the same head at disjoint paths run concurrently. The map must not be
 * used directly until pm_head_destroy(); its value count is brought up to date on release.
 */

/* Creates a head over m. m must outlive the head. Returns 0 or PM_ENOMEM. */
int pm_head_create(pm_map *m, pm_head **out);
/* Releases every live zipper (putting their subtries back) and destroys the head. Returns 0,
 * or PM_ENOMEM when a write zipper's subtrie could not be put back: its content is then
 * missing from m (which stays valid, its count true). Release the write zippers first with
 * pm_head_release(), which can be retried, to lose nothing. */
int pm_head_destroy(pm_head *h);

/*
 * Checked: creates an exclusive write zipper at path. Returns 0, PM_ECONFLICT when path is
 * equal to, a prefix of, or an extension of the path of a live zipper of this head (read or
 * write), or PM_ENOMEM. Cost O(len), no lock.
 */
int pm_head_write_zipper(pm_head *h, const uint8_t *path, size_t len, pm_wz **out);
/*
 * Unchecked: as above without the overlap check or record. The caller guarantees that path
 * is disjoint from every other live zipper's path of this head; overlapping paths give
 * undefined results.
 */
int pm_head_write_zipper_unchecked(pm_head *h, const uint8_t *path, size_t len, pm_wz **out);
/* Checked: creates a read zipper at path (refused with PM_ECONFLICT when it overlaps a live
 * write zipper's path; read zippers may overlap each other). */
int pm_head_read_zipper(pm_head *h, const uint8_t *path, size_t len, pm_rz **out);
/* Releases a write zipper of this head: puts its subtrie back. Returns 0 or PM_ENOMEM (the
 * zipper then stays live and may be released again). */
int pm_head_release(pm_head *h, pm_wz *z);
/* Releases a read zipper of this head. */
void pm_head_release_reader(pm_head *h, pm_rz *z);
/* Number of live zippers. */
size_t pm_head_live(const pm_head *h);

#ifdef __cplusplus
}
#endif
#endif /* PATHMAP_H */
