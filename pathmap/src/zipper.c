/*
 * zipper.c - read zippers, write zippers and the ZipperHead.
 *
 * A zipper addresses a trie through a root slot and a path: the first `base` bytes of the path
 * are the zipper's root, the rest is its focus. A stack of frames (node, offset in the path
 * where the node's prefix starts) follows the path as far as it lies in the trie (`exist`
 * bytes), so small moves touch only the frames that change. Writes go through the keyed trie
 * operations of map.c on the whole path and mark the frames stale; the next read rebuilds
 * them from the root.
 */
#include "pm_internal.h"

struct zframe {
	pm_node *n;   /* node on the path */
	size_t start; /* path offset where n's prefix starts */
};

struct zcore {
	pm_ctx ctx;	   /* allocator */
	pm_node **rootp;   /* root slot of the trie the zipper walks */
	pm_node *own;	   /* a root owned by the zipper (reader snapshot, detached subtrie) */
	uint8_t *path;	   /* base ++ focus */
	size_t len;	   /* bytes in path */
	size_t cap;	   /* bytes allocated for path */
	size_t base;	   /* bytes of the zipper's root path */
	struct zframe *fr; /* frames for path[0..exist) */
	size_t depth;	   /* frames in use */
	size_t fcap;	   /* frames allocated */
	size_t exist;	   /* path[0..exist) lies in the trie */
	bool stale;	   /* frames must be rebuilt before use */
};

struct pm_rz {
	struct zcore z; /* the cursor; z.rootp == &z.own */
	pm_head *head;	/* head that made it, or NULL */
	pm_rz *next;	/* head's list of live readers */
	pm_rz *prev;	/* ... */
};

struct pm_wz {
	struct zcore z;	  /* the cursor */
	pm_map *map;	  /* the map written (direct zipper: its count follows each write) */
	pm_head *head;	  /* head that made it, or NULL */
	bool checked;	  /* its path is recorded in the head's tracker */
	int64_t delta;	  /* values added minus values removed */
	uint8_t *scratch; /* path ++ suffix for the *_at calls */
	size_t scap;	  /* bytes allocated for scratch */
	uint8_t *hpath;	  /* head zipper: its root path in the head's map */
	size_t hlen;	  /* bytes of hpath */
	pm_wz *next;	  /* head's list of live writers */
	pm_wz *prev;	  /* ... */
};

struct pm_head {
	pm_map *m;	 /* the map the head owns while it lives */
	pm_node *wpaths; /* paths of live checked write zippers (trie, value 1) */
	pm_node *rpaths; /* paths of live read zippers (value: how many) */
	pm_wz *writers;	 /* live write zippers */
	pm_rz *readers;	 /* live read zippers */
	size_t live;	 /* how many */
};

/* ---- the cursor ---- */

static int zc_reserve(struct zcore *z, size_t extra)
{
	if (extra > SIZE_MAX - z->len)
		return PM_EOVERFLOW;
	return pm_grow(&z->ctx, (void **)&z->path, &z->cap, z->len + extra, 1);
}

static int zc_push(struct zcore *z, pm_node *n, size_t start)
{
	int rc = pm_grow(&z->ctx, (void **)&z->fr, &z->fcap, z->depth + 1, sizeof(struct zframe));

	if (rc)
		return rc;
	z->fr[z->depth].n = n;
	z->fr[z->depth].start = start;
	z->depth++;
	return 0;
}

/* Follows path[exist..len) into the trie as far as it goes. */
static int zc_extend(struct zcore *z)
{
	while (z->exist < z->len) {
		struct zframe *t = &z->fr[z->depth - 1];
		size_t off = z->exist - t->start;
		pm_node **cs;
		int rc;

		if (off < node_plen(t->n)) {
			if (node_prefix(t->n)[off] != z->path[z->exist])
				return 0;
			z->exist++;
			continue;
		}
		cs = node_child(t->n, z->path[z->exist]);
		if (!cs)
			return 0;
		rc = zc_push(z, *cs, z->exist + 1);
		if (rc)
			return rc;
		z->exist++;
	}
	return 0;
}

static int zc_rebuild(struct zcore *z)
{
	int rc;

	z->depth = 0;
	z->exist = 0;
	z->stale = false;
	if (!*z->rootp)
		return 0;
	rc = zc_push(z, *z->rootp, 0);
	if (!rc)
		rc = zc_extend(z);
	if (rc)
		z->stale = true;
	return rc;
}

/* Frames are valid after this, unless the rebuild ran out of memory: readers then see the
 * focus as absent, and the next call tries again. */
static void zc_sync(const struct zcore *zc)
{
	struct zcore *z = (struct zcore *)zc;

	if (z->stale)
		zc_rebuild(z);
}

static int zc_init(struct zcore *z, const pm_ctx *c, pm_node **rootp, const uint8_t *path,
		   size_t len)
{
	int rc;

	memset(z, 0, sizeof(*z));
	z->ctx = *c;
	z->rootp = rootp;
	z->stale = true;
	rc = zc_reserve(z, len + 1);
	if (rc)
		return rc;
	if (len)
		memcpy(z->path, path, len);
	z->len = z->base = len;
	return 0;
}

static void zc_fini(struct zcore *z)
{
	pm_xalloc(&z->ctx, z->path, z->cap, 0);
	pm_xalloc(&z->ctx, z->fr, z->fcap * sizeof(struct zframe), 0);
	node_unref(&z->ctx, z->own);
}

static int zc_descend(struct zcore *z, const uint8_t *p, size_t n)
{
	bool at_end = !z->stale && z->depth && z->exist == z->len;
	int rc;

	if (!p && n)
		return PM_EINVAL;
	rc = zc_reserve(z, n);
	if (rc)
		return rc;
	if (n)
		memcpy(z->path + z->len, p, n);
	z->len += n;
	if (at_end) {
		rc = zc_extend(z);
		if (rc)
			z->stale = true;
	}
	return 0;
}

/* Truncates the path to len bytes (len >= base), popping frames past it. */
static void zc_truncate(struct zcore *z, size_t len)
{
	z->len = len;
	if (z->exist > len)
		z->exist = len;
	while (z->depth > 1 && z->fr[z->depth - 1].start > z->exist)
		z->depth--;
}

static size_t zc_ascend(struct zcore *z, size_t n)
{
	size_t up = z->len - z->base;

	if (n < up)
		up = n;
	zc_truncate(z, z->len - up);
	return up;
}

static bool zc_exists(const struct zcore *z)
{
	zc_sync(z);
	return !z->stale && z->depth && z->exist == z->len;
}

static struct zframe *zc_top(const struct zcore *z)
{
	return &z->fr[z->depth - 1];
}

static bool zc_value(const struct zcore *z, uint64_t *val)
{
	struct zframe *t;

	if (!zc_exists(z))
		return false;
	t = zc_top(z);
	if (z->len - t->start != node_plen(t->n) || !node_has_val(t->n))
		return false;
	if (val)
		*val = node_val(t->n);
	return true;
}

static unsigned zc_child_bytes(const struct zcore *z, uint8_t *bytes)
{
	struct zframe *t;
	size_t off;
	unsigned i, k;

	if (!zc_exists(z))
		return 0;
	t = zc_top(z);
	off = z->len - t->start;
	if (off < node_plen(t->n)) {
		if (bytes)
			bytes[0] = node_prefix(t->n)[off];
		return 1;
	}
	k = node_nchild(t->n);
	if (bytes)
		for (i = 0; i < k; i++)
			node_child_at(t->n, i, &bytes[i]);
	return k;
}

static size_t zc_count(const struct zcore *z)
{
	return zc_exists(z) ? node_count(zc_top(z)->n) : 0;
}

/* Appends the rest of the top node's prefix to the path. */
static int zc_finish_prefix(struct zcore *z)
{
	struct zframe *t = zc_top(z);
	size_t off = z->len - t->start, plen = node_plen(t->n);
	int rc;

	if (off == plen)
		return 0;
	rc = zc_reserve(z, plen - off);
	if (rc)
		return rc;
	memcpy(z->path + z->len, node_prefix(t->n) + off, plen - off);
	z->len += plen - off;
	z->exist = z->len;
	return 0;
}

static int zc_enter(struct zcore *z, pm_node *ch, uint8_t b)
{
	int rc = zc_reserve(z, 1);

	if (rc)
		return rc;
	z->path[z->len++] = b;
	z->exist = z->len;
	return zc_push(z, ch, z->len);
}

/* Moves to the first value at or below the focus (strictly below when skip). */
static int zc_descend_min(struct zcore *z, bool skip)
{
	for (;;) {
		struct zframe *t = zc_top(z);
		size_t off = z->len - t->start;
		pm_node *ch;
		uint8_t b;
		int rc;

		if (off < node_plen(t->n)) {
			rc = zc_finish_prefix(z);
			if (rc)
				return rc;
			skip = false;
		}
		if (node_has_val(t->n) && !skip)
			return 1;
		ch = node_child_after(t->n, -1, &b);
		if (!ch)
			return 0;
		rc = zc_enter(z, ch, b);
		if (rc)
			return rc;
		skip = false;
	}
}

/* Moves to the last value at or below the focus. */
static int zc_descend_max(struct zcore *z)
{
	for (;;) {
		struct zframe *t = zc_top(z);
		pm_node *ch;
		uint8_t b;
		int rc = zc_finish_prefix(z);

		if (rc)
			return rc;
		ch = node_child_before(t->n, 256, &b);
		if (!ch)
			return 1;
		rc = zc_enter(z, ch, b);
		if (rc)
			return rc;
	}
}

/* From a focus whose subtrie is done, moves to the next value after it in key order. */
static int zc_climb_next(struct zcore *z)
{
	while (z->depth > 1) {
		struct zframe *t = zc_top(z), *p = t - 1;
		pm_node *ch;
		uint8_t b;

		if (t->start <= z->base)
			return 0;
		ch = node_child_after(p->n, z->path[t->start - 1], &b);
		zc_truncate(z, t->start - 1); /* pops t */
		if (ch) {
			int rc = zc_enter(z, ch, b);

			return rc ? rc : zc_descend_min(z, false);
		}
	}
	return 0;
}

/* Moves to the previous value before the focus (its ancestors and left siblings). */
static int zc_climb_prev(struct zcore *z)
{
	while (z->depth > 1) {
		struct zframe *t = zc_top(z), *p = t - 1;
		pm_node *ch;
		uint8_t b;

		if (t->start <= z->base)
			return 0;
		ch = node_child_before(p->n, z->path[t->start - 1], &b);
		zc_truncate(z, t->start - 1); /* pops t */
		if (ch) {
			int rc = zc_enter(z, ch, b);

			return rc ? rc : zc_descend_max(z);
		}
		if (node_has_val(p->n))
			return 1;
	}
	return 0;
}

/*
 * Moves to the next (dir > 0) or previous (dir < 0) value, strictly after or before the
 * current path, within the zipper's subtrie. On 0 (none) or an error the focus is restored.
 */
static int zc_step(struct zcore *z, int dir)
{
	size_t olen = z->len;
	uint8_t *save = NULL;
	int rc;

	zc_sync(z);
	if (z->stale)
		return PM_ENOMEM;
	if (!z->depth)
		return 0;
	save = pm_xalloc(&z->ctx, NULL, 0, olen + 1);
	if (!save)
		return PM_ENOMEM;
	memcpy(save, z->path, olen);
	if (z->exist == z->len) {
		rc = dir > 0 ? (zc_child_bytes(z, NULL) ? zc_descend_min(z, true) : 0) : 0;
		if (rc == 0)
			rc = dir > 0 ? zc_climb_next(z) : zc_climb_prev(z);
	} else if (z->exist < z->base) {
		rc = 0;
	} else {
		/* The path leaves the trie at exist: compare the trie's next byte with the path's.
		 */
		struct zframe *t = zc_top(z);
		size_t off = z->exist - t->start;
		uint8_t want = z->path[z->exist], b;
		pm_node *ch;

		zc_truncate(z, z->exist);
		if (off < node_plen(t->n)) {
			bool above = node_prefix(t->n)[off] > want;

			if (dir > 0)
				rc = above ? zc_descend_min(z, false) : zc_climb_next(z);
			else
				rc = above ? zc_climb_prev(z) : zc_descend_max(z);
		} else if (dir > 0) {
			ch = node_child_after(t->n, want, &b);
			rc = ch ? zc_enter(z, ch, b) : 0;
			if (!rc && ch)
				rc = zc_descend_min(z, false);
			else if (!ch)
				rc = zc_climb_next(z);
		} else {
			ch = node_child_before(t->n, want, &b);
			if (ch) {
				rc = zc_enter(z, ch, b);
				if (!rc)
					rc = zc_descend_max(z);
			} else if (node_has_val(t->n)) {
				rc = 1;
			} else {
				rc = zc_climb_prev(z);
			}
		}
	}
	if (rc != 1) {
		memcpy(z->path, save, olen);
		z->len = olen;
		z->stale = true;
	}
	pm_xalloc(&z->ctx, save, olen + 1, 0);
	return rc;
}

static int zc_seek(struct zcore *z, const uint8_t *p, size_t n)
{
	int rc;

	if (!p && n)
		return PM_EINVAL;
	zc_truncate(z, z->base);
	rc = zc_descend(z, p, n);
	if (rc)
		return rc;
	if (zc_value(z, NULL))
		return 1;
	if (z->stale) { /* out of memory rebuilding the cursor: not "no value here" */
		zc_truncate(z, z->base);
		return PM_ENOMEM;
	}
	rc = zc_step(z, 1);
	if (rc != 1)
		zc_truncate(z, z->base);
	return rc;
}

/* ---- read zippers ---- */

static int rz_make(const pm_ctx *c, pm_node *root, const uint8_t *path, size_t len, pm_rz **out)
{
	pm_rz *r = pm_xalloc(c, NULL, 0, sizeof(*r));
	int rc;

	if (!r)
		return PM_ENOMEM;
	rc = zc_init(&r->z, c, &r->z.own, path, len);
	if (rc) {
		pm_xalloc(c, r, sizeof(*r), 0);
		return rc;
	}
	r->z.rootp = &r->z.own;
	r->z.own = node_ref(root);
	r->head = NULL;
	r->next = r->prev = NULL;
	*out = r;
	return 0;
}

int pm_rz_create(const pm_map *m, pm_rz **out)
{
	return rz_make(&m->ctx, m->root, NULL, 0, out);
}

int pm_rz_create_at(const pm_map *m, const uint8_t *path, size_t len, pm_rz **out)
{
	if (!path && len)
		return PM_EINVAL;
	return rz_make(&m->ctx, m->root, path, len, out);
}

int pm_rz_fork(const pm_rz *z, pm_rz **out)
{
	return rz_make(&z->z.ctx, z->z.own, z->z.path, z->z.len, out);
}

void pm_rz_destroy(pm_rz *z)
{
	pm_ctx c;

	if (!z)
		return;
	c = z->z.ctx;
	zc_fini(&z->z);
	pm_xalloc(&c, z, sizeof(*z), 0);
}

int pm_rz_descend_byte(pm_rz *z, uint8_t b)
{
	return zc_descend(&z->z, &b, 1);
}

int pm_rz_descend(pm_rz *z, const uint8_t *path, size_t len)
{
	return zc_descend(&z->z, path, len);
}

size_t pm_rz_ascend(pm_rz *z, size_t n)
{
	return zc_ascend(&z->z, n);
}

void pm_rz_reset(pm_rz *z)
{
	zc_truncate(&z->z, z->z.base);
}

const uint8_t *pm_rz_path(const pm_rz *z, size_t *len)
{
	*len = z->z.len - z->z.base;
	return z->z.path + z->z.base;
}

bool pm_rz_exists(const pm_rz *z)
{
	return zc_exists(&z->z);
}

bool pm_rz_value(const pm_rz *z, uint64_t *val)
{
	return zc_value(&z->z, val);
}

unsigned pm_rz_child_count(const pm_rz *z)
{
	return zc_child_bytes(&z->z, NULL);
}

unsigned pm_rz_child_bytes(const pm_rz *z, uint8_t bytes[256])
{
	return zc_child_bytes(&z->z, bytes);
}

size_t pm_rz_count(const pm_rz *z)
{
	return zc_count(&z->z);
}

int pm_rz_next_value(pm_rz *z)
{
	return zc_step(&z->z, 1);
}

int pm_rz_prev_value(pm_rz *z)
{
	return zc_step(&z->z, -1);
}

int pm_rz_seek(pm_rz *z, const uint8_t *path, size_t len)
{
	return zc_seek(&z->z, path, len);
}

/* ---- ordered iteration ---- */

/* ---- write zippers ---- */

static int wz_make(pm_map *m, pm_node **rootp, const uint8_t *path, size_t len, pm_wz **out)
{
	pm_wz *w = pm_xalloc(&m->ctx, NULL, 0, sizeof(*w));
	int rc;

	if (!w)
		return PM_ENOMEM;
	memset(w, 0, sizeof(*w));
	rc = zc_init(&w->z, &m->ctx, rootp, path, len);
	if (rc) {
		pm_xalloc(&m->ctx, w, sizeof(*w), 0);
		return rc;
	}
	w->map = m;
	*out = w;
	return 0;
}

int pm_wz_create(pm_map *m, const uint8_t *path, size_t len, pm_wz **out)
{
	if (!path && len)
		return PM_EINVAL;
	return wz_make(m, &m->root, path, len, out);
}

static void wz_free(pm_wz *w)
{
	pm_ctx c = w->z.ctx;

	pm_xalloc(&c, w->scratch, w->scap, 0);
	if (w->hpath)
		pm_xalloc(&c, w->hpath, w->hlen + 1, 0);
	zc_fini(&w->z);
	pm_xalloc(&c, w, sizeof(*w), 0);
}

void pm_wz_destroy(pm_wz *w)
{
	if (!w || w->head)
		return;
	wz_free(w);
}

static void wz_account(pm_wz *w, int64_t d)
{
	w->delta += d;
	if (!w->head)
		w->map->count = (size_t)((int64_t)w->map->count + d);
}

int pm_wz_descend_byte(pm_wz *z, uint8_t b)
{
	return zc_descend(&z->z, &b, 1);
}

int pm_wz_descend(pm_wz *z, const uint8_t *path, size_t len)
{
	return zc_descend(&z->z, path, len);
}

size_t pm_wz_ascend(pm_wz *z, size_t n)
{
	return zc_ascend(&z->z, n);
}

void pm_wz_reset(pm_wz *z)
{
	zc_truncate(&z->z, z->z.base);
}

const uint8_t *pm_wz_path(const pm_wz *z, size_t *len)
{
	*len = z->z.len - z->z.base;
	return z->z.path + z->z.base;
}

bool pm_wz_exists(const pm_wz *z)
{
	return zc_exists(&z->z);
}

bool pm_wz_value(const pm_wz *z, uint64_t *val)
{
	return zc_value(&z->z, val);
}

unsigned pm_wz_child_count(const pm_wz *z)
{
	return zc_child_bytes(&z->z, NULL);
}

unsigned pm_wz_child_bytes(const pm_wz *z, uint8_t bytes[256])
{
	return zc_child_bytes(&z->z, bytes);
}

size_t pm_wz_count(const pm_wz *z)
{
	return zc_count(&z->z);
}

int pm_wz_next_value(pm_wz *z)
{
	return zc_step(&z->z, 1);
}

int pm_wz_prev_value(pm_wz *z)
{
	return zc_step(&z->z, -1);
}

int pm_wz_fork_reader(const pm_wz *z, pm_rz **out)
{
	return rz_make(&z->z.ctx, *z->z.rootp, z->z.path, z->z.len, out);
}

/* The whole path of focus ++ suffix: the focus path itself when suffix is empty. */
static const uint8_t *wz_full(pm_wz *w, const uint8_t *suffix, size_t len, size_t *out_len, int *rc)
{
	struct zcore *z = &w->z;

	*rc = 0;
	if (len == 0) {
		*out_len = z->len;
		return z->path;
	}
	if (z->len == 0) {
		*out_len = len;
		return suffix;
	}
	if (len > SIZE_MAX - z->len) {
		*rc = PM_EOVERFLOW;
		return NULL;
	}
	*rc = pm_grow(&z->ctx, (void **)&w->scratch, &w->scap, z->len + len, 1);
	if (*rc)
		return NULL;
	memcpy(w->scratch, z->path, z->len);
	memcpy(w->scratch + z->len, suffix, len);
	*out_len = z->len + len;
	return w->scratch;
}

int pm_wz_set_at(pm_wz *w, const uint8_t *suffix, size_t len, uint64_t val, uint64_t *old)
{
	const uint8_t *k;
	size_t kl;
	int rc;

	if (!suffix && len)
		return PM_EINVAL;
	k = wz_full(w, suffix, len, &kl, &rc);
	if (!k && rc)
		return rc;
	rc = tr_set(&w->z.ctx, w->z.rootp, k, kl, val, old);
	w->z.stale = true;
	if (rc == 1)
		wz_account(w, 1);
	return rc;
}

int pm_wz_set_sorted(pm_wz *w, const pm_kv *kv, size_t n, size_t *added)
{
	size_t got = 0, i;
	int rc;

	if (!kv && n)
		return PM_EINVAL;
	rc = tr_kv_check(kv, n);
	if (rc)
		return rc;
	if (w->z.len == 0) { /* at the root: the keys are the trie's own */
		rc = tr_set_sorted(&w->z.ctx, w->z.rootp, kv, n, &got);
	} else {
		for (i = 0; i < n; i++) {
			rc = pm_wz_set_at(w, kv[i].key, kv[i].len, kv[i].val, NULL);
			if (rc < 0)
				break;
			got += (size_t)rc;
			rc = 0;
		}
		if (added)
			*added = got;
		return rc;
	}
	w->z.stale = true;
	wz_account(w, (int64_t)got);
	if (added)
		*added = got;
	return rc;
}

int pm_wz_update_at(pm_wz *w, const uint8_t *suffix, size_t len, pm_update_fn fn, void *arg)
{
	const uint8_t *k;
	size_t kl;
	int rc;

	if ((!suffix && len) || !fn)
		return PM_EINVAL;
	k = wz_full(w, suffix, len, &kl, &rc);
	if (!k && rc)
		return rc;
	rc = tr_upsert(&w->z.ctx, w->z.rootp, k, kl, 0, fn, arg, NULL);
	w->z.stale = true;
	if (rc == 1)
		wz_account(w, 1);
	return rc;
}

bool pm_wz_get_at(const pm_wz *z, const uint8_t *suffix, size_t len, uint64_t *val)
{
	pm_wz *w = (pm_wz *)z;
	const uint8_t *k;
	size_t kl;
	int rc;

	k = wz_full(w, suffix, len, &kl, &rc);
	if (!k && rc)
		return false;
	return tr_get(*w->z.rootp, k, kl, val);
}

int pm_wz_set_value(pm_wz *z, uint64_t val, uint64_t *old)
{
	return pm_wz_set_at(z, NULL, 0, val, old);
}

int pm_wz_remove_value(pm_wz *w, uint64_t *old)
{
	int rc = tr_remove(&w->z.ctx, w->z.rootp, w->z.path, w->z.len, old);

	w->z.stale = true;
	if (rc == 0)
		wz_account(w, -1);
	return rc;
}

/* Values in the subtrie at the focus. */
static size_t wz_focus_count(pm_wz *w)
{
	pm_pos p;

	if (!tr_find(*w->z.rootp, w->z.path, w->z.len, &p))
		return 0;
	return node_count(p.n);
}

/* Replaces the subtrie at the focus with sub (consumed), keeping the count right. */
static int wz_replace(pm_wz *w, pm_node *sub)
{
	size_t before = wz_focus_count(w), after = node_count(sub);
	int rc = tr_graft(&w->z.ctx, w->z.rootp, w->z.path, w->z.len, sub);

	w->z.stale = true;
	if (rc) {
		node_unref(&w->z.ctx, sub);
		return rc;
	}
	wz_account(w, (int64_t)after - (int64_t)before);
	return 0;
}

int pm_wz_remove_branches(pm_wz *w)
{
	pm_node *leaf = NULL;
	uint64_t v;

	/* the trie itself, not the cursor: a cursor that fails to rebuild reads "absent" */
	if (tr_get(*w->z.rootp, w->z.path, w->z.len, &v)) {
		leaf = node_make_leaf(&w->z.ctx, NULL, 0, v);
		if (!leaf)
			return PM_ENOMEM;
	}
	return wz_replace(w, leaf);
}

int pm_wz_graft(pm_wz *w, const pm_map *src)
{
	return wz_replace(w, node_ref(src->root));
}

int pm_wz_take(pm_wz *w, pm_map **out)
{
	size_t n = wz_focus_count(w);
	pm_node *sub;
	pm_map *m;
	int rc;

	rc = pm_map_wrap(&w->z.ctx, NULL, 0, &m);
	if (rc)
		return rc;
	rc = tr_take(&w->z.ctx, w->z.rootp, w->z.path, w->z.len, &sub);
	w->z.stale = true;
	if (rc) {
		pm_map_destroy(m);
		return rc;
	}
	m->root = sub;
	m->count = n;
	wz_account(w, -(int64_t)n);
	*out = m;
	return 0;
}

static int wz_alg(pm_wz *w, const pm_map *src, int op, pm_merge_fn merge, void *arg)
{
	pm_pos a = {NULL, 0}, b = {src->root, 0};
	pm_node *r;
	int rc;

	tr_find(*w->z.rootp, w->z.path, w->z.len, &a);
	if (op == 0)
		rc = alg_join(&w->z.ctx, a, b, merge, arg, &r);
	else if (op == 1)
		rc = alg_meet(&w->z.ctx, a, b, &r);
	else
		rc = alg_subtract(&w->z.ctx, a, b, &r);
	if (rc)
		return rc;
	return wz_replace(w, r);
}

int pm_wz_join(pm_wz *z, const pm_map *src, pm_merge_fn merge, void *arg)
{
	return wz_alg(z, src, 0, merge, arg);
}

int pm_wz_meet(pm_wz *z, const pm_map *src)
{
	return wz_alg(z, src, 1, NULL, NULL);
}

int pm_wz_subtract(pm_wz *z, const pm_map *src)
{
	return wz_alg(z, src, 2, NULL, NULL);
}

int64_t pm_wz_count_delta(const pm_wz *z)
{
	return z->delta;
}

/* ---- ZipperHead ---- */

int pm_head_create(pm_map *m, pm_head **out)
{
	pm_head *h = pm_xalloc(&m->ctx, NULL, 0, sizeof(*h));

	if (!h)
		return PM_ENOMEM;
	memset(h, 0, sizeof(*h));
	h->m = m;
	*out = h;
	return 0;
}

/*
 * Whether a path recorded in trie t overlaps key: a recorded path is a prefix of key (a value
 * on the way down, key itself included), or key is a prefix of a recorded path (the walk ends
 * inside the trie).
 */
static bool overlaps(pm_node *n, const uint8_t *key, size_t len)
{
	size_t i = 0, plen, m;
	pm_node **cs;

	key = PM_KEY(key);
	while (n) {
		plen = node_plen(n);
		for (m = 0; m < plen && i + m < len && node_prefix(n)[m] == key[i + m]; m++)
			;
		if (i + m == len)
			return true;
		if (m < plen)
			return false;
		i += plen;
		if (node_has_val(n))
			return true;
		cs = node_child(n, key[i++]);
		n = cs ? *cs : NULL;
	}
	return false;
}

/* Whether two paths overlap: one is a prefix of the other (or they are equal). */
static bool related(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t n = al < bl ? al : bl;

	return !n || !memcmp(a, b, n);
}

/*
 * Whether path overlaps the path of a live checked writer (or of a live reader, with
 * readers). The tries wpaths and rpaths answer first: they hold every live path, but a
 * release that ran out of memory taking its path out of them (track() may allocate) leaves
 * it there; so an overlap they report is confirmed here, on the zippers themselves. That
 * costs O(live zippers), on the refusal path only.
 */
static bool live_overlap(const pm_head *h, const uint8_t *path, size_t len, bool readers)
{
	const pm_wz *w;
	const pm_rz *r;

	for (w = h->writers; w; w = w->next)
		if (w->checked && related(w->hpath, w->hlen, path, len))
			return true;
	if (readers)
		for (r = h->readers; r; r = r->next)
			if (related(r->z.path, r->z.base, path, len))
				return true;
	return false;
}

static int track(pm_head *h, pm_node **t, const uint8_t *path, size_t len, int64_t d)
{
	uint64_t v = 0;

	tr_get(*t, path, len, &v);
	if ((int64_t)v + d == 0)
		return tr_remove(&h->m->ctx, t, path, len, NULL);
	return tr_set(&h->m->ctx, t, path, len, (uint64_t)((int64_t)v + d), NULL) < 0 ? PM_ENOMEM
										      : 0;
}

static int head_writer(pm_head *h, const uint8_t *path, size_t len, bool checked, pm_wz **out)
{
	pm_wz *w;
	int rc;

	if (!path && len)
		return PM_EINVAL;
	if (checked && (overlaps(h->wpaths, path, len) || overlaps(h->rpaths, path, len)) &&
	    live_overlap(h, path, len, true))
		return PM_ECONFLICT;
	rc = wz_make(h->m, NULL, NULL, 0, &w);
	if (rc)
		return rc;
	w->z.rootp = &w->z.own;
	w->hpath = pm_xalloc(&w->z.ctx, NULL, 0, len + 1);
	if (!w->hpath) {
		rc = PM_ENOMEM;
		goto out_free;
	}
	if (len)
		memcpy(w->hpath, path, len);
	w->hlen = len;
	if (checked) {
		rc = track(h, &h->wpaths, path, len, 1);
		if (rc)
			goto out_free;
	}
	rc = tr_take(&h->m->ctx, &h->m->root, path, len, &w->z.own);
	if (rc)
		goto out_untrack;
	w->head = h;
	w->checked = checked;
	w->prev = NULL;
	w->next = h->writers;
	if (h->writers)
		h->writers->prev = w;
	h->writers = w;
	h->live++;
	*out = w;
	return 0;
out_untrack:
	if (checked)
		track(h, &h->wpaths, path, len, -1);
out_free:
	wz_free(w);
	return rc;
}

int pm_head_write_zipper(pm_head *h, const uint8_t *path, size_t len, pm_wz **out)
{
	return head_writer(h, path, len, true, out);
}

int pm_head_write_zipper_unchecked(pm_head *h, const uint8_t *path, size_t len, pm_wz **out)
{
	return head_writer(h, path, len, false, out);
}

int pm_head_read_zipper(pm_head *h, const uint8_t *path, size_t len, pm_rz **out)
{
	pm_rz *r;
	int rc;

	if (!path && len)
		return PM_EINVAL;
	if (overlaps(h->wpaths, path, len) && live_overlap(h, path, len, false))
		return PM_ECONFLICT;
	rc = pm_rz_create_at(h->m, path, len, &r);
	if (rc)
		return rc;
	rc = track(h, &h->rpaths, path, len, 1);
	if (rc) {
		pm_rz_destroy(r);
		return rc;
	}
	r->head = h;
	r->prev = NULL;
	r->next = h->readers;
	if (h->readers)
		h->readers->prev = r;
	h->readers = r;
	h->live++;
	*out = r;
	return 0;
}

/* Takes w off the head's list of live writers and frees it. */
static void head_drop_writer(pm_head *h, pm_wz *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		h->writers = w->next;
	if (w->next)
		w->next->prev = w->prev;
	h->live--;
	wz_free(w);
}

int pm_head_release(pm_head *h, pm_wz *w)
{
	int rc;

	if (!w || w->head != h)
		return PM_EINVAL;
	rc = tr_graft(&h->m->ctx, &h->m->root, w->hpath, w->hlen, w->z.own);
	if (rc)
		return rc;
	w->z.own = NULL;
	h->m->count = (size_t)((int64_t)h->m->count + w->delta);
	if (w->checked) /* out of memory: the path stays recorded (see live_overlap) */
		track(h, &h->wpaths, w->hpath, w->hlen, -1);
	head_drop_writer(h, w);
	return 0;
}

void pm_head_release_reader(pm_head *h, pm_rz *r)
{
	size_t len;

	if (!r || r->head != h)
		return;
	len = r->z.base;
	track(h, &h->rpaths, r->z.path, len, -1); /* may fail: see live_overlap */
	if (r->prev)
		r->prev->next = r->next;
	else
		h->readers = r->next;
	if (r->next)
		r->next->prev = r->prev;
	h->live--;
	pm_rz_destroy(r);
}

size_t pm_head_live(const pm_head *h)
{
	return h->live;
}

int pm_head_destroy(pm_head *h)
{
	pm_ctx c;
	int rc = 0;

	if (!h)
		return 0;
	c = h->m->ctx;
	while (h->writers) {
		pm_wz *w = h->writers;

		if (pm_head_release(h, w)) {
			/* Out of memory putting a subtrie back: its content is lost, the map stays
			 * valid, and the caller is told. Keep the count true to the map. */
			h->m->count = node_count(h->m->root);
			head_drop_writer(h, w);
			rc = PM_ENOMEM;
		}
	}
	while (h->readers)
		pm_head_release_reader(h, h->readers);
	node_unref(&c, h->wpaths);
	node_unref(&c, h->rpaths);
	pm_xalloc(&c, h, sizeof(*h), 0);
	return rc;
}
