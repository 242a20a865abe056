/*
 * batch.c - many keys in one call: pm_map_get_many and pm_map_set_many.
 *
 * A lookup in a trie much larger than the cache is a chain of dependent reads: each node's
 * address comes from its parent, and each read misses (a TLB miss as well, on a large map).
 * Looked up one at a time, the keys leave the memory system idle while each read waits; a
 * core can have ten or more reads in flight. So the keys of a batch walk down together, in
 * PM_LANES lanes taking turns: a lane's step reads one node that it prefetched at its last
 * step, finds the address of the next node (or of the child slot, when that lies on another
 * cache line than the node's start, as in a dense node), prefetches it and hands the turn on.
 * When the lane's turn comes round again, its line has (mostly) arrived.
 *
 * pm_map_set_many walks each group of PM_SET_GROUP keys that way first, results unused: the
 * walk only brings the nodes on their paths into cache. It then sets the group's keys one by
 * one with tr_set, in order, so the map ends exactly as pm_map_set calls leave it; the writes
 * of one key may move nodes that a later key of the group prefetched, which costs that key a
 * miss, never a wrong answer (the walk's results are never used).
 */
#include "pm_internal.h"

#define PM_LANES 16	/* lookups in flight at a time */
#define PM_SET_GROUP 32 /* keys pm_map_set_many walks before it sets them */

/* One lookup in flight. */
struct lane {
	pm_node *n;	    /* the node to read at the lane's next step */
	pm_node **slot;	    /* non-NULL: read this child slot first, then its node */
	const uint8_t *key; /* the key looked up (never NULL) */
	size_t len;	    /* its length */
	size_t i;	    /* key bytes consumed above n */
	size_t k;	    /* the key's index in the batch */
};

static inline void prefetch(const void *p)
{
	__builtin_prefetch(p, 0, 3);
}

static inline bool same_line(const void *a, const void *b)
{
	return (uintptr_t)a >> 6 == (uintptr_t)b >> 6;
}

/*
 * A set is about to add a child under byte b to node n: prefetches the part of a dense
 * node's child array that the insertion shifts (a packed array: the children after b move
 * up one slot), which lies on lines of its own.
 */
static void warm_insert(pm_node *n, uint8_t b)
{
	struct pm_dense *d;
	const char *p, *e;

	if (node_is_tag(n) || n->kind != PM_DENSE)
		return;
	d = node_dense(n);
	p = (const char *)&d->child[dense_index(d, b)];
	e = (const char *)&d->child[d->n];
	for (; p < e; p += 64)
		__builtin_prefetch(p, 1, 3);
	__builtin_prefetch(e, 1, 3);
}

/*
 * One step of lane l: reads what its last step prefetched, walks on while the next node
 * needs no memory read (a value tag) and stops at the next read, prefetching it. Returns
 * false while the lookup goes on, true when it is over: *found and *val (when found) then
 * hold its answer.
 */
static bool lane_step(struct lane *l, bool warm, bool *found, uint64_t *val)
{
	pm_node *n, **cs = NULL;
	enum pm_step st;

	if (l->slot) {
		n = *l->slot;
		l->slot = NULL;
		if (!node_is_tag(n)) {
			l->n = n;
			prefetch(n);
			return false;
		}
	} else {
		n = l->n;
	}
	for (;;) {
		st = node_step(n, l->key, l->len, &l->i, &cs);
		if (st != PM_STEP_DOWN) {
			*found = st == PM_STEP_END && node_has_val(n);
			if (*found)
				*val = node_val(n);
			if (warm && st == PM_STEP_NOCHILD)
				warm_insert(n, l->key[l->i]);
			return true;
		}
		if (!same_line(cs, n)) {
			l->slot = cs;
			prefetch(cs);
			return false;
		}
		n = *cs;
		if (!node_is_tag(n)) {
			l->n = n;
			prefetch(n);
			return false;
		}
	}
}

/* Starts lane l on key k of kv, at root. */
static inline void lane_start(struct lane *l, pm_node *root, const pm_kv *kv, size_t k)
{
	*l = (struct lane){root, NULL, PM_KEY(kv[k].key), kv[k].len, 0, k};
}

/*
 * Looks up kv[0..n) in the trie at root, PM_LANES at a time. With out non-NULL, a key found
 * gets its value in out[k].val and found[k] = true, a key not found found[k] = false; with
 * out NULL the walk only warms the cache. Keys must be valid (no NULL key with len > 0).
 * Returns the number of keys found.
 */
static size_t walk_many(pm_node *root, const pm_kv *kv, size_t n, pm_kv *out, bool *found)
{
	struct lane lane[PM_LANES];
	size_t next = 0, nfound = 0;
	unsigned live = 0, j;
	bool f;
	uint64_t v = 0;

	if (!root) {
		if (out)
			for (size_t k = 0; k < n; k++)
				found[k] = false;
		return 0;
	}
	for (; live < PM_LANES && next < n; live++, next++)
		lane_start(&lane[live], root, kv, next);
	while (live) {
		for (j = 0; j < live;) {
			struct lane *l = &lane[j];

			if (!lane_step(l, !out, &f, &v)) {
				j++;
				continue;
			}
			nfound += f;
			if (out) {
				found[l->k] = f;
				if (f)
					out[l->k].val = v;
			}
			if (next < n) {
				lane_start(l, root, kv, next++);
				j++;
			} else {
				*l = lane[--live];
			}
		}
	}
	return nfound;
}

size_t pm_map_get_many(const pm_map *m, pm_kv *kv, size_t n, bool *found)
{
	size_t nfound = 0, k, s, e;
	bool fbuf[256];

	/* a NULL key with a length is invalid: not found, and walked in runs around it */
	for (s = 0; s < n; s = e + 1) {
		for (e = s; e < n && (kv[e].key || !kv[e].len); e++)
			;
		for (k = s; k < e; k += 256) {
			size_t c = e - k < 256 ? e - k : 256;

			nfound += walk_many(m->root, kv + k, c, kv + k, found ? found + k : fbuf);
		}
		if (e < n && found)
			found[e] = false;
	}
	return nfound;
}

/* Keys in the group of pm_map_set_many that starts at key g of n. */
static inline size_t group_len(size_t g, size_t n)
{
	return n - g < PM_SET_GROUP ? n - g : PM_SET_GROUP;
}

int pm_map_set_many(pm_map *m, const pm_kv *kv, size_t n, size_t *added)
{
	size_t got = 0, g, e, k;
	int rc = 0;

	if (!m || (!kv && n))
		return PM_EINVAL;
	for (k = 0; k < n; k++)
		if (!kv[k].key && kv[k].len)
			return PM_EINVAL;
	/* the walk of a group runs one group ahead of its sets, so that what it prefetched
	 * has had the next group's walk to arrive */
	walk_many(m->root, kv, group_len(0, n), NULL, NULL);
	for (g = 0; g < n && rc >= 0; g = e) {
		e = g + group_len(g, n);
		if (e < n)
			walk_many(m->root, kv + e, group_len(e, n), NULL, NULL);
		for (k = g; k < e; k++) {
			rc = tr_set(&m->ctx, &m->root, kv[k].key, kv[k].len, kv[k].val, NULL);
			if (rc < 0)
				break;
			got += (size_t)rc;
		}
	}
	m->count += got;
	if (added)
		*added = got;
	return rc < 0 ? rc : 0;
}
