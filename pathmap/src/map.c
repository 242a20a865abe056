/*
 * map.c - keyed operations on a trie addressed by its root slot, and the pm_map API.
 *
 * Writers walk down from the root slot and copy every shared node they pass (COW), so the
 * nodes they change are private to this trie. Each operation does its allocations before it
 * links anything in, so a failed allocation leaves the content unchanged.
 */
#include "pm_internal.h"

const char *pm_strerror(int rc)
{
	switch (rc) {
	case PM_OK:
		return "success";
	case PM_ENOMEM:
		return "out of memory";
	case PM_EINVAL:
		return "invalid argument";
	case PM_ENOTFOUND:
		return "not found";
	case PM_ECONFLICT:
		return "path overlaps a live zipper";
	case PM_EOVERFLOW:
		return "size overflow";
	case PM_EMERGE:
		return "merge rule refused two values";
	default:
		return "unknown error";
	}
}

/*
 * Splits private node n (in *slot) at prefix offset m < plen: a new node keeps prefix[0..m)
 * and gets the rest of n as a child; val/leaf (the new key's tail) is added beside it.
 * tail == NULL puts the value on the new node itself.
 */
static int split(const pm_ctx *c, pm_node **slot, size_t m, pm_node *tail, uint8_t tb, bool has_val,
		 uint64_t val)
{
	pm_node *n = *slot, *s, *rest;
	uint8_t *p = node_prefix(n), nb = p[m];

	s = node_build(c, p, m, has_val, val, tail ? 2 : 1);
	if (!s)
		return PM_ENOMEM;
	rest = node_reprefix(c, n, NULL, 0, NULL, 0, m + 1);
	if (!rest) {
		node_free_block(c, s);
		return PM_ENOMEM;
	}
	rest = node_pack(c, rest); /* a leaf left with a short prefix */
	if (tail && tb < nb)
		node_build_push(s, tb, tail);
	node_build_push(s, nb, rest);
	if (tail && tb > nb)
		node_build_push(s, tb, tail);
	*slot = s;
	return 0;
}

/* The value a new key gets: val, or what the update rule says (PM_UPDATE_KEEP: none). */
static int new_value(pm_update_fn fn, void *arg, uint64_t *val)
{
	return fn ? fn(false, 0, val, arg) : PM_UPDATE_STORE;
}

/* ---- sorted runs (tr_set_sorted) ---- */

/*
 * A run of keys in ascending order is set by building the nodes it adds whole, bottom up,
 * each allocated once at its final size, and by merging where the trie has nodes already:
 * a node on the run's way takes all its new children in one resize. A node whose prefix the
 * run leaves somewhere inside, and a run nested deeper than SORTED_DEPTH branch points, fall
 * back to one tr_set a key (the same result, and a bounded recursion).
 */
#define SORTED_DEPTH 48
#define SORTED_AHEAD 8 /* groups whose child a merge prefetches ahead */

/* a's and b's common prefix length, knowing that it is at least d. */
static inline size_t kv_lcp(const pm_kv *a, const pm_kv *b, size_t d)
{
	return d + common_len(PM_KEY(a->key) + d, a->len - d, PM_KEY(b->key) + d, b->len - d);
}

/* End of the group of kv[s..hi) that has byte kv[s].key[at] at offset at. */
static inline size_t kv_group(const pm_kv *kv, size_t s, size_t hi, size_t at)
{
	uint8_t b = kv[s].key[at];

	while (++s < hi && kv[s].key[at] == b)
		;
	return s;
}

/* Sets kv[lo..hi) one by one under *slot (their first d bytes lead to it). */
static int sorted_each(const pm_ctx *c, pm_node **slot, const pm_kv *kv, size_t lo, size_t hi,
		       size_t d, size_t *added)
{
	size_t i;
	int rc;

	for (i = lo; i < hi; i++) {
		rc = tr_set(c, slot, PM_KEY(kv[i].key) + d, kv[i].len - d, kv[i].val, NULL);
		if (rc < 0)
			return rc;
		*added += (size_t)rc;
	}
	return 0;
}

/* The trie of kv[lo..hi) (lo < hi) without their first d bytes, shared by all; *keys grows by
 * its number of keys. NULL when out of memory (*rc set, nothing counted). */
static pm_node *sorted_build(const pm_ctx *c, const pm_kv *kv, size_t lo, size_t hi, size_t d,
			     unsigned level, size_t *keys, int *rc)
{
	const pm_kv *a = &kv[lo], *z = &kv[hi - 1];
	size_t l = kv_lcp(a, z, d), j = lo, s, e, got = 0;
	unsigned groups = 0;
	pm_node *n, *t;

	if (l == a->len && l == z->len) { /* one key (maybe repeated): the last value wins */
		n = node_leaf(c, PM_KEY(a->key) + d, l - d, z->val);
		if (!n)
			*rc = PM_ENOMEM;
		else
			(*keys)++;
		return n;
	}
	if (level >= SORTED_DEPTH) {
		n = NULL;
		*rc = sorted_each(c, &n, kv, lo, hi, d, &got);
		if (*rc) {
			node_unref(c, n);
			return NULL;
		}
		*keys += got;
		return n;
	}
	/* the key equal to the common prefix (a prefix of the others) sorts first */
	while (j < hi && kv[j].len == l)
		j++;
	for (s = j; s < hi; s = kv_group(kv, s, hi, l))
		groups++;
	n = node_build(c, PM_KEY(a->key) + d, l - d, j > lo, j > lo ? kv[j - 1].val : 0, groups);
	if (!n) {
		*rc = PM_ENOMEM;
		return NULL;
	}
	got = j > lo;
	for (s = j; s < hi; s = e) {
		e = kv_group(kv, s, hi, l);
		t = sorted_build(c, kv, s, e, l + 1, level + 1, &got, rc);
		if (!t) {
			node_unref(c, n);
			return NULL;
		}
		node_build_push(n, kv[s].key[l], t);
	}
	*keys += got;
	return n;
}

/* Sets kv[lo..hi) (lo < hi) under *slot, which their first d bytes lead to. */
static int sorted_merge(const pm_ctx *c, pm_node **slot, const pm_kv *kv, size_t lo, size_t hi,
			size_t d, unsigned level, size_t *added)
{
	pm_node *n = *slot, *t, **cs;
	size_t plen, at, j, s, e, got, pf;
	unsigned fresh = 0, room, k;
	bool reserved = false;
	int rc = 0;

	if (!n) {
		got = 0;
		t = sorted_build(c, kv, lo, hi, d, level, &got, &rc);
		if (!t)
			return rc;
		*slot = t;
		*added += got;
		return 0;
	}
	if (hi - lo == 1 || level >= SORTED_DEPTH)
		return sorted_each(c, slot, kv, lo, hi, d, added);
	plen = node_plen(n);
	at = d + plen;
	/* every key of the run goes through n's whole prefix when the first and the last do */
	if (kv_lcp(&kv[lo], &kv[hi - 1], d) < at ||
	    common_len(node_prefix(n), plen, PM_KEY(kv[lo].key) + d, kv[lo].len - d) < plen)
		return sorted_each(c, slot, kv, lo, hi, d, added);
	if (node_shared(n)) {
		n = node_cow(c, slot);
		if (!n)
			return PM_ENOMEM;
	}
	for (j = lo; j < hi && kv[j].len == at; j++)
		;
	if (j > lo) {
		*added += !node_has_val(n);
		n->flags |= PM_F_VAL;
		n->val = kv[j - 1].val;
	}
	for (s = j; s < hi; s = kv_group(kv, s, hi, at))
		fresh += node_child(n, kv[s].key[at]) == NULL;
	room = node_nchild(n) + fresh;
	/* the children the run goes into are scattered over the heap: ask for them a few
	 * groups ahead, so their loads overlap */
	for (pf = j, k = 0; pf < hi && k < SORTED_AHEAD; pf = kv_group(kv, pf, hi, at), k++)
		if ((cs = node_child(n, kv[pf].key[at])))
			__builtin_prefetch(*cs);
	for (s = j; s < hi && !rc; s = e) {
		e = kv_group(kv, s, hi, at);
		if (pf < hi) {
			if ((cs = node_child(n, kv[pf].key[at])))
				__builtin_prefetch(*cs);
			pf = kv_group(kv, pf, hi, at);
		}
		cs = node_child(n, kv[s].key[at]);
		if (cs) {
			rc = sorted_merge(c, cs, kv, s, e, at + 1, level + 1, added);
			continue;
		}
		got = 0;
		t = sorted_build(c, kv, s, e, at + 1, level + 1, &got, &rc);
		if (!t)
			break;
		if (!reserved) { /* every new child in one resize */
			pm_node *m = node_reserve(c, n, room);

			if (!m) {
				node_unref(c, t);
				rc = PM_ENOMEM;
				break;
			}
			*slot = n = m;
			reserved = true;
		}
		node_add_child(c, n, kv[s].key[at], t);
		*added += got;
	}
	return rc;
}

int tr_kv_check(const pm_kv *kv, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (!kv[i].key && kv[i].len)
			return PM_EINVAL;
		if (i) {
			const uint8_t *a = PM_KEY(kv[i - 1].key), *b = PM_KEY(kv[i].key);
			size_t la = kv[i - 1].len, lb = kv[i].len, m = common_len(a, la, b, lb);

			if (m < la && (m == lb || a[m] > b[m]))
				return PM_EINVAL; /* not in ascending order */
		}
	}
	return 0;
}

int tr_set_sorted(const pm_ctx *c, pm_node **rootp, const pm_kv *kv, size_t n, size_t *added)
{
	return n ? sorted_merge(c, rootp, kv, 0, n, 0, 0, added) : 0;
}

int tr_upsert(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, uint64_t val,
	      pm_update_fn fn, void *arg, uint64_t *old)
{
	pm_node **slot = rootp, *n, *t, **cs;
	size_t i = 0, plen, m;
	int rc;

	key = PM_KEY(key);
	for (;;) {
		n = *slot;
		if (!n) {
			rc = new_value(fn, arg, &val);
			if (rc != PM_UPDATE_STORE)
				return rc < 0 ? rc : 0;
			t = node_leaf(c, key + i, len - i, val);
			if (!t)
				return PM_ENOMEM;
			*slot = t;
			return 1;
		}
		if ((node_is_tag(n) || node_pk_private(n)) && node_plen(n) == len - i &&
		    common_len(node_prefix(n), len - i, key + i, len - i) == len - i) {
			/* the key's own tag or private packed leaf: a new value in place (a new
			 * tag, or the packed word rewritten) when it fits, else a block; nothing is
			 * copied on the way */
			uint64_t cur = node_val(n);
			const uint8_t *p = node_prefix(n);

			if (fn) {
				rc = fn(true, cur, &val, arg);
				if (rc != PM_UPDATE_STORE)
					return rc < 0 ? rc : 0;
			}
			if (!node_is_tag(n) && node_pk_fits(len - i, val)) {
				n->val = pk_word(p, len - i, val);
			} else {
				t = node_tag_fits(len - i, val)
					? node_tag(p, len - i, val)
					: node_make_leaf(c, p, len - i, val);
				if (!t)
					return PM_ENOMEM;
				node_free_block(c, n); /* a tag: nothing to free */
				*slot = t;
			}
			if (old)
				*old = cur;
			return 0;
		}
		/* a private packed leaf that is not the key's own is not written in place below
		 * (a split or a new child replace it with a new block): it needs no copy */
		if (node_shared(n) && !node_pk_private(n)) {
			n = node_cow(c, slot);
			if (!n)
				return PM_ENOMEM;
		}
		plen = node_plen(n);
		m = common_len(node_prefix(n), plen, key + i, len - i);
		if (m < plen) {
			rc = new_value(fn, arg, &val);
			if (rc != PM_UPDATE_STORE)
				return rc < 0 ? rc : 0;
			if (i + m == len) {
				rc = split(c, slot, m, NULL, 0, true, val);
				return rc ? rc : 1;
			}
			t = node_leaf(c, key + i + m + 1, len - i - m - 1, val);
			if (!t)
				return PM_ENOMEM;
			rc = split(c, slot, m, t, key[i + m], false, 0);
			if (rc) {
				node_free_block(c, t);
				return rc;
			}
			return 1;
		}
		i += plen;
		if (i == len) {
			if (node_has_val(n)) {
				if (fn) {
					rc = fn(true, node_val(n), &val, arg);
					if (rc != PM_UPDATE_STORE)
						return rc < 0 ? rc : 0;
				}
				if (old)
					*old = node_val(n);
				n->val = val;
				*slot = node_pack(c, n);
				return 0;
			}
			rc = new_value(fn, arg, &val);
			if (rc != PM_UPDATE_STORE)
				return rc < 0 ? rc : 0;
			n->flags |= PM_F_VAL;
			n->val = val;
			return 1;
		}
		cs = node_child(n, key[i]);
		if (cs) {
			slot = cs;
			i++;
			continue;
		}
		rc = new_value(fn, arg, &val);
		if (rc != PM_UPDATE_STORE)
			return rc < 0 ? rc : 0;
		t = node_leaf(c, key + i + 1, len - i - 1, val);
		if (!t)
			return PM_ENOMEM;
		n = node_add_child(c, n, key[i], t);
		if (!n) {
			node_free_block(c, t);
			return PM_ENOMEM;
		}
		*slot = n;
		return 1;
	}
}

int tr_set(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, uint64_t val,
	   uint64_t *old)
{
	return tr_upsert(c, rootp, key, len, val, NULL, NULL, old);
}

bool tr_get(pm_node *n, const uint8_t *key, size_t len, uint64_t *val)
{
	size_t i = 0;
	pm_node **cs = NULL;
	enum pm_step st;

	key = PM_KEY(key);
	if (!n)
		return false;
	while ((st = node_step(n, key, len, &i, &cs)) == PM_STEP_DOWN)
		n = *cs;
	if (st != PM_STEP_END || !node_has_val(n))
		return false;
	if (val)
		*val = node_val(n);
	return true;
}

bool tr_find(pm_node *n, const uint8_t *key, size_t len, pm_pos *out)
{
	size_t i = 0, plen, m;
	pm_node **cs;

	key = PM_KEY(key);
	while (n) {
		plen = node_plen(n);
		m = common_len(node_prefix(n), plen, key + i, len - i);
		if (i + m == len) {
			out->n = n;
			out->off = m;
			return true;
		}
		if (m < plen)
			return false;
		i += plen;
		cs = node_child(n, key[i++]);
		n = cs ? *cs : NULL;
	}
	return false;
}

int tr_subtrie(const pm_ctx *c, pm_pos p, pm_node **out)
{
	pm_node *r;

	if (!p.n || p.off == 0) {
		*out = node_ref(p.n);
		return 0;
	}
	node_ref(p.n);
	r = node_reprefix(c, p.n, NULL, 0, NULL, 0, p.off);
	if (!r) {
		node_unref(c, p.n);
		return PM_ENOMEM;
	}
	*out = r;
	return 0;
}

/*
 * Removes the child under byte b from private node p in *pslot, keeping p compressed: a node
 * left without a value and with one child is merged into that child (one allocation, done
 * first). The removed child's reference is the caller's to drop. Returns 0 or PM_ENOMEM (p
 * unchanged).
 */
static int unlink_child(const pm_ctx *c, pm_node **pslot, uint8_t b)
{
	pm_node *p = *pslot, *m, *o;
	uint8_t ob;

	if (!node_has_val(p) && node_nchild(p) == 2) {
		o = node_child_at(p, 0, &ob);
		if (ob == b)
			o = node_child_at(p, 1, &ob);
		m = node_reprefix(c, o, node_prefix(p), node_plen(p), &ob, 1, 0);
		if (!m)
			return PM_ENOMEM;
		node_free_block(c, p);
		*pslot = node_pack(c, m); /* a leaf now: a tag or packed, where it fits */
		return 0;
	}
	node_del_child(p, b);
	*pslot = node_shrink(c, p);
	return 0;
}

int tr_remove(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, uint64_t *old)
{
	pm_node **slot = rootp, **pslot = NULL, *n, *ch, *m;
	size_t i = 0;
	uint64_t v;
	uint8_t pb = 0, b;
	int rc;

	key = PM_KEY(key);
	if (!tr_get(*rootp, key, len, &v))
		return PM_ENOTFOUND;
	for (;;) {
		/* a tag or a private packed leaf is the key's own leaf (it has no children):
		 * unlinked, not copied */
		n = node_is_tag(*slot) || node_pk_private(*slot) ? *slot : node_cow(c, slot);
		if (!n)
			return PM_ENOMEM;
		i += node_plen(n);
		if (i == len)
			break;
		pslot = slot;
		pb = key[i];
		slot = node_child(n, key[i++]);
	}
	switch (node_nchild(n)) {
	case 0:
		if (!pslot) {
			*rootp = NULL;
		} else {
			rc = unlink_child(c, pslot, pb);
			if (rc)
				return rc;
		}
		node_free_block(c, n);
		break;
	case 1:
		ch = node_child_at(n, 0, &b);
		m = node_reprefix(c, ch, node_prefix(n), node_plen(n), &b, 1, 0);
		if (!m)
			return PM_ENOMEM;
		node_free_block(c, n);
		*slot = node_pack(c, m);
		break;
	default:
		n->flags &= (uint8_t)~PM_F_VAL;
		n->val = 0;
	}
	if (old)
		*old = v;
	return 0;
}

int tr_take(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, pm_node **out)
{
	pm_node **slot = rootp, **pslot = NULL, *n, *sub, **cs;
	size_t i = 0, plen, m;
	uint8_t pb = 0;
	int rc;

	key = PM_KEY(key);
	*out = NULL;
	for (;;) {
		n = *slot;
		if (!n)
			return 0;
		plen = node_plen(n);
		m = common_len(node_prefix(n), plen, key + i, len - i);
		if (i + m == len)
			break;
		if (m < plen)
			return 0;
		i += plen;
		if (!node_child(n, key[i]))
			return 0;
		n = node_cow(c, slot);
		if (!n)
			return PM_ENOMEM;
		pslot = slot;
		pb = key[i];
		cs = node_child(n, key[i++]);
		slot = cs;
	}
	/* Everything in n lies at or below key: n leaves the trie whole. */
	if (m == 0) {
		sub = n;
	} else {
		node_ref(n);
		sub = node_reprefix(c, n, NULL, 0, NULL, 0, m);
		if (!sub) {
			node_unref(c, n);
			return PM_ENOMEM;
		}
	}
	if (!pslot) {
		*rootp = NULL;
	} else {
		rc = unlink_child(c, pslot, pb);
		if (rc) {
			if (sub != n)
				node_unref(c, sub);
			return rc;
		}
	}
	if (sub != n)
		node_unref(c, n);
	*out = sub;
	return 0;
}

/* sub with a[0..la) ++ b[0..lb) put before its prefix; the caller keeps its own reference
 * on sub. NULL on ENOMEM. */
static pm_node *borrow_reprefix(const pm_ctx *c, pm_node *sub, const uint8_t *a, size_t la,
				const uint8_t *b, size_t lb)
{
	pm_node *t;

	node_ref(sub);
	t = node_reprefix(c, sub, a, la, b, lb, 0);
	if (!t)
		node_unref(c, sub);
	return t;
}

int tr_graft(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, pm_node *sub)
{
	pm_node **slot = rootp, *n, *t, **cs;
	size_t i = 0, plen, m;
	int rc;

	key = PM_KEY(key);
	if (!sub) {
		rc = tr_take(c, rootp, key, len, &t);
		if (!rc)
			node_unref(c, t);
		return rc;
	}
	for (;;) {
		n = *slot;
		if (!n) {
			t = borrow_reprefix(c, sub, key + i, len - i, NULL, 0);
			if (!t)
				return PM_ENOMEM;
			*slot = t;
			break;
		}
		plen = node_plen(n);
		m = common_len(node_prefix(n), plen, key + i, len - i);
		if (i + m == len) {
			/* key ends inside or at the end of n's prefix: sub replaces n. */
			t = borrow_reprefix(c, sub, key + i, m, NULL, 0);
			if (!t)
				return PM_ENOMEM;
			*slot = t;
			node_unref(c, n);
			break;
		}
		n = node_cow(c, slot);
		if (!n)
			return PM_ENOMEM;
		if (m < plen) {
			t = borrow_reprefix(c, sub, key + i + m + 1, len - i - m - 1, NULL, 0);
			if (!t)
				return PM_ENOMEM;
			rc = split(c, slot, m, t, key[i + m], false, 0);
			if (rc) {
				node_unref(c, t);
				return rc;
			}
			break;
		}
		i += plen;
		cs = node_child(n, key[i]);
		if (cs) {
			slot = cs;
			i++;
			continue;
		}
		t = borrow_reprefix(c, sub, key + i + 1, len - i - 1, NULL, 0);
		if (!t)
			return PM_ENOMEM;
		n = node_add_child(c, n, key[i], t);
		if (!n) {
			node_unref(c, t);
			return PM_ENOMEM;
		}
		*slot = n;
		break;
	}
	node_unref(c, sub);
	return 0;
}

/* ---- pm_map ---- */

int pm_map_wrap(const pm_ctx *c, pm_node *root, size_t count, pm_map **out)
{
	pm_map *m = pm_xalloc(c, NULL, 0, sizeof(*m));

	if (!m)
		return PM_ENOMEM;
	m->ctx = *c;
	m->root = root;
	m->count = count;
	*out = m;
	return 0;
}

int pm_map_create(pm_map **out, pm_alloc_fn alloc, void *ud)
{
	pm_ctx c = {alloc ? alloc : pm_default_alloc, ud};

	if (!out)
		return PM_EINVAL;
	return pm_map_wrap(&c, NULL, 0, out);
}

void pm_map_destroy(pm_map *m)
{
	pm_ctx c;

	if (!m)
		return;
	c = m->ctx;
	node_unref(&c, m->root);
	pm_xalloc(&c, m, sizeof(*m), 0);
}

int pm_map_clone(const pm_map *m, pm_map **out)
{
	int rc = pm_map_wrap(&m->ctx, m->root, m->count, out);

	if (!rc)
		node_ref(m->root);
	return rc;
}

int pm_map_set(pm_map *m, const uint8_t *key, size_t len, uint64_t val, uint64_t *old)
{
	int rc;

	if (!key && len)
		return PM_EINVAL;
	rc = tr_set(&m->ctx, &m->root, key, len, val, old);
	if (rc == 1)
		m->count++;
	return rc;
}

int pm_map_set_sorted(pm_map *m, const pm_kv *kv, size_t n, size_t *added)
{
	size_t got = 0;
	int rc;

	if (!m || (!kv && n))
		return PM_EINVAL;
	rc = tr_kv_check(kv, n);
	if (!rc)
		rc = tr_set_sorted(&m->ctx, &m->root, kv, n, &got);
	m->count += got;
	if (added)
		*added = got;
	return rc;
}

int pm_map_update(pm_map *m, const uint8_t *key, size_t len, pm_update_fn fn, void *arg)
{
	int rc;

	if ((!key && len) || !fn)
		return PM_EINVAL;
	rc = tr_upsert(&m->ctx, &m->root, key, len, 0, fn, arg, NULL);
	if (rc == 1)
		m->count++;
	return rc;
}

bool pm_map_get(const pm_map *m, const uint8_t *key, size_t len, uint64_t *val)
{
	if (!key && len)
		return false;
	return tr_get(m->root, key, len, val);
}

bool pm_map_contains(const pm_map *m, const uint8_t *key, size_t len)
{
	return pm_map_get(m, key, len, NULL);
}

int pm_map_remove(pm_map *m, const uint8_t *key, size_t len, uint64_t *old)
{
	int rc;

	if (!key && len)
		return PM_EINVAL;
	rc = tr_remove(&m->ctx, &m->root, key, len, old);
	if (rc == 0)
		m->count--;
	return rc;
}

size_t pm_map_count(const pm_map *m)
{
	return m->count;
}

size_t pm_map_count_prefix(const pm_map *m, const uint8_t *prefix, size_t len)
{
	pm_pos p;

	if (len == 0)
		return m->count;
	if (!tr_find(m->root, prefix, len, &p))
		return 0;
	return node_count(p.n);
}

void pm_map_clear(pm_map *m)
{
	node_unref(&m->ctx, m->root);
	m->root = NULL;
	m->count = 0;
}

bool pm_map_equal(const pm_map *a, const pm_map *b)
{
	pm_pos pa = {a->root, 0}, pb = {b->root, 0};

	if (a->count != b->count)
		return false;
	return alg_equal(pa, pb);
}

typedef int (*alg2_fn)(const pm_ctx *c, pm_pos a, pm_pos b, pm_node **out);

static int map_alg(const pm_map *a, const pm_map *b, alg2_fn fn, pm_map **out)
{
	pm_pos pa = {a->root, 0}, pb = {b->root, 0};
	pm_node *r;
	int rc;

	rc = fn(&a->ctx, pa, pb, &r);
	if (rc)
		return rc;
	rc = pm_map_wrap(&a->ctx, r, node_count(r), out);
	if (rc)
		node_unref(&a->ctx, r);
	return rc;
}

int pm_map_join(const pm_map *a, const pm_map *b, pm_merge_fn merge, void *arg, pm_map **out)
{
	pm_pos pa = {a->root, 0}, pb = {b->root, 0};
	pm_node *r;
	int rc;

	rc = alg_join(&a->ctx, pa, pb, merge, arg, &r);
	if (rc)
		return rc;
	rc = pm_map_wrap(&a->ctx, r, node_count(r), out);
	if (rc)
		node_unref(&a->ctx, r);
	return rc;
}

int pm_map_meet(const pm_map *a, const pm_map *b, pm_map **out)
{
	return map_alg(a, b, alg_meet, out);
}

int pm_map_subtract(const pm_map *a, const pm_map *b, pm_map **out)
{
	return map_alg(a, b, alg_subtract, out);
}

int pm_map_restrict(const pm_map *a, const pm_map *prefixes, pm_map **out)
{
	return map_alg(a, prefixes, alg_restrict, out);
}
