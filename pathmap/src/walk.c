/*
 * walk.c - pm_map_foreach: an ordered depth-first walk straight over the nodes.
 *
 * A read zipper can do the same walk (tests/pathmap compare the two), but it keeps a general
 * cursor: frames that can ascend by any number of bytes, a path it re-derives after writes,
 * a child search by byte at every step. Exporting a map (a snapshot, a KB) visits every value
 * once, in order, and nothing else, so this walk keeps only what that needs: per node on the
 * stack, the next child to take. The nodes of a large map sit far apart in memory and most
 * of the walk's time is spent waiting for them; so when it takes a child it asks the CPU to
 * fetch the next few siblings too (__builtin_prefetch), which turns one miss after another
 * into several misses in flight.
 */
#include "pm_internal.h"

#define AHEAD 8 /* siblings fetched ahead of the child being entered */

struct wframe {
	pm_node *n;   /* a node with children */
	unsigned i;   /* index of the next child to take */
	unsigned nch; /* children of n */
	size_t len;   /* path length at the end of n's prefix */
};

struct walk {
	pm_ctx ctx;	   /* allocator for the buffers below */
	uint8_t *path;	   /* the key of the node being visited */
	size_t cap;	   /* bytes allocated for path */
	struct wframe *st; /* the stack */
	size_t depth;	   /* frames in use */
	size_t scap;	   /* frames allocated */
};

/* The i-th child of n and its byte; i < node_nchild(n). */
static inline pm_node *child_at(pm_node *n, unsigned i, uint8_t *b)
{
	if (n->kind == PM_SMALL) {
		struct pm_small *s = node_small(n);

		*b = s->key[i];
		return s->child[i];
	}
	return node_child_at(n, i, b);
}

static inline void fetch_child(pm_node *n, unsigned i)
{
	if (n->kind == PM_SMALL)
		__builtin_prefetch(node_small(n)->child[i]);
	else
		__builtin_prefetch(node_dense(n)->child[i]);
}

/*
 * Appends n's prefix from byte `skip` on to the path (which holds `len` bytes), and pushes a
 * frame for n when it has children, its next child being `first`. *end gets the path length
 * after the prefix.
 */
static int walk_enter(struct walk *w, pm_node *n, size_t len, size_t skip, unsigned first,
		      size_t *end)
{
	size_t plen = node_plen(n) - skip;
	unsigned nch = node_nchild(n), i;
	int rc;

	if (plen > SIZE_MAX - len - 1)
		return PM_EOVERFLOW;
	rc = pm_grow(&w->ctx, (void **)&w->path, &w->cap, len + plen + 1, 1);
	if (rc)
		return rc;
	memcpy(w->path + len, node_prefix(n) + skip, plen);
	*end = len + plen;
	if (first >= nch)
		return 0;
	rc = pm_grow(&w->ctx, (void **)&w->st, &w->scap, w->depth + 1, sizeof(*w->st));
	if (rc)
		return rc;
	w->st[w->depth++] = (struct wframe){n, first, nch, len + plen};
	for (i = first; i < nch && i < first + AHEAD; i++)
		fetch_child(n, i);
	return 0;
}

/* Index of the first child of n with byte >= b (node_nchild(n) when none). */
static unsigned child_index_from(pm_node *n, unsigned b)
{
	unsigned i, nch = node_nchild(n);
	uint8_t cb;

	for (i = 0; i < nch; i++) {
		child_at(n, i, &cb);
		if (cb >= b)
			break;
	}
	return i;
}

/*
 * Positions the walk at the first key >= from below node n (whose path so far is `len`
 * bytes, `skip` bytes of its prefix already on it): pushes the frames of the nodes whose
 * remaining children come after from; *vnode gets the node whose value is the first key to
 * visit (before any frame's children), or NULL. Returns 0 or an error.
 */
static int walk_seek(struct walk *w, pm_node *n, size_t len, size_t skip, const uint8_t *from,
		     size_t flen, pm_node **vnode, size_t *vlen)
{
	*vnode = NULL;
	for (;;) {
		size_t plen = node_plen(n) - skip, m = plen < flen ? plen : flen, end;
		const uint8_t *p = node_prefix(n) + skip;
		int c = m ? memcmp(p, from, m) : 0;
		unsigned first;
		pm_node *ch;
		uint8_t b;
		int rc;

		if (c < 0)
			return 0; /* all of n's keys are below from */
		if (c > 0 || flen <= plen) {
			/* all of n's keys are >= from: visit it whole */
			rc = walk_enter(w, n, len, skip, 0, &end);
			*vnode = node_has_val(n) ? n : NULL;
			*vlen = end;
			return rc;
		}
		/* from goes on past n's prefix: n's value is below it; so are the children
		 * before from's next byte */
		first = child_index_from(n, from[plen]);
		rc = walk_enter(w, n, len, skip, first, &end);
		if (rc || first >= node_nchild(n))
			return rc;
		ch = child_at(n, first, &b);
		if (b != from[plen])
			return 0; /* the frame's next child is already above from */
		w->st[w->depth - 1].i++;
		w->path[end] = b;
		len = end + 1;
		from += plen + 1;
		flen -= plen + 1;
		n = ch;
		skip = 0;
	}
}

int pm_map_foreach(const pm_map *m, const uint8_t *prefix, size_t plen, const uint8_t *from,
		   size_t flen, pm_visit_fn fn, void *arg)
{
	struct walk w = {m->ctx, NULL, 0, NULL, 0, 0};
	pm_node *vnode = NULL;
	size_t vlen = 0;
	pm_pos at;
	int rc;

	if ((!prefix && plen) || (!from && flen))
		return PM_EINVAL;
	if (!tr_find(m->root, prefix, plen, &at))
		return 0;
	/* The walk starts inside node at.n, at.off bytes into its prefix, with the path holding
	 * the prefix; from, when given, is compared with what follows the prefix. */
	rc = pm_grow(&w.ctx, (void **)&w.path, &w.cap, plen + 1, 1);
	if (rc)
		goto out;
	if (plen)
		memcpy(w.path, prefix, plen);
	if (from) {
		size_t lim = flen < plen ? flen : plen;
		int cmp = lim ? memcmp(from, prefix, lim) : 0;

		if (cmp > 0)
			goto out;
		if (cmp < 0 || flen <= plen)
			from = NULL; /* every key under the prefix is >= from */
	}
	if (from)
		rc = walk_seek(&w, at.n, plen, at.off, from + plen, flen - plen, &vnode, &vlen);
	else {
		rc = walk_enter(&w, at.n, plen, at.off, 0, &vlen);
		vnode = node_has_val(at.n) ? at.n : NULL;
	}
	if (rc)
		goto out;
	if (vnode) {
		rc = fn(w.path, vlen, node_val(vnode), arg);
		if (rc)
			goto out;
	}
	while (w.depth) {
		struct wframe *t = &w.st[w.depth - 1];
		pm_node *ch;
		size_t end;
		uint8_t b;

		if (t->i >= t->nch) {
			w.depth--;
			continue;
		}
		if (t->i + AHEAD < t->nch)
			fetch_child(t->n, t->i + AHEAD);
		ch = child_at(t->n, t->i++, &b);
		w.path[t->len] = b;
		rc = walk_enter(&w, ch, t->len + 1, 0, 0, &end);
		if (rc)
			goto out;
		if (node_has_val(ch)) {
			rc = fn(w.path, end, node_val(ch), arg);
			if (rc)
				goto out;
		}
	}
out:
	if (w.path)
		pm_xalloc(&w.ctx, w.path, w.cap, 0);
	if (w.st)
		pm_xalloc(&w.ctx, w.st, w.scap * sizeof(*w.st), 0);
	return rc;
}
