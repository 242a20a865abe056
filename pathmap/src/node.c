/*
 * node.c - allocation, reference counting and reshaping of trie nodes.
 *
 * Every function here that allocates either succeeds or leaves its inputs exactly as they
 * were, so callers can order their steps to keep a map valid after any allocation failure.
 */
#include <stdlib.h>

#include "pm_internal.h"

uint8_t pm_no_prefix[1];

void *pm_default_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	(void)osize;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	/* most calls make a new node: malloc's path is the shorter one (jemalloc's realloc of
	 * NULL goes through more checks before reaching it) */
	return ptr ? realloc(ptr, nsize) : malloc(nsize);
}

void *pm_xalloc(const pm_ctx *c, void *p, size_t osize, size_t nsize)
{
	return c->alloc(c->ud, p, osize, nsize);
}

int pm_grow(const pm_ctx *c, void **buf, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 16;
	void *p;

	if (need <= *cap)
		return 0;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2 / elem)
			return PM_EOVERFLOW;
		ncap *= 2;
	}
	p = pm_xalloc(c, *buf, *cap * elem, ncap * elem);
	if (!p)
		return PM_ENOMEM;
	*buf = p;
	*cap = ncap;
	return 0;
}

/* Bytes of a node of this shape, or 0 when the size would overflow. */
static size_t shape_size(int kind, size_t plen, unsigned cap)
{
	size_t hdr = sizeof(pm_node) + (plen > PM_PLEN_SHORT ? 4 : 0);

	if (plen > UINT32_MAX || plen > SIZE_MAX - hdr - 8 - sizeof(struct pm_dense) - 256 * 8)
		return 0;
	if (kind == PM_LEAF)
		return hdr + plen;
	if (kind == PM_SMALL)
		return pm_align8(hdr + plen) + sizeof(struct pm_small) + (size_t)cap * 8;
	return pm_align8(hdr + plen) + sizeof(struct pm_dense) + (size_t)cap * 8;
}

static unsigned node_cap(pm_node *n)
{
	if (node_is_tag(n))
		return 0;
	if (n->kind == PM_SMALL)
		return node_small(n)->cap;
	if (n->kind == PM_DENSE)
		return node_dense(n)->cap;
	return 0;
}

size_t node_size(pm_node *n)
{
	if (node_is_tag(n))
		return 0;
	return shape_size(n->kind, node_plen(n), node_cap(n));
}

void node_free_block(const pm_ctx *c, pm_node *n)
{
	if (!node_is_tag(n))
		pm_xalloc(c, n, node_size(n), 0);
}

pm_node *node_new(const pm_ctx *c, int kind, size_t plen, unsigned cap)
{
	size_t sz = shape_size(kind, plen, cap);
	pm_node *n;

	if (!sz)
		return NULL;
	n = pm_xalloc(c, NULL, 0, sz);
	if (!n)
		return NULL;
	atomic_init(&n->refs, 1);
	n->kind = (uint8_t)kind;
	n->val = 0;
	if (plen > PM_PLEN_SHORT) {
		uint32_t l = (uint32_t)plen;

		n->flags = PM_F_LONGP;
		n->plen = 0;
		memcpy(n + 1, &l, sizeof(l));
	} else {
		n->flags = 0;
		n->plen = (uint16_t)plen;
	}
	if (kind == PM_SMALL) {
		struct pm_small *s = node_small(n);

		s->n = 0;
		s->cap = (uint8_t)cap;
	} else if (kind == PM_DENSE) {
		struct pm_dense *d = node_dense(n);

		d->n = 0;
		d->cap = (uint16_t)cap;
		d->pad = 0;
		memset(d->mask, 0, sizeof(d->mask));
	}
	return n;
}

pm_node *node_make_leaf(const pm_ctx *c, const uint8_t *key, size_t len, uint64_t val)
{
	pm_node *n = node_new(c, PM_LEAF, len, 0);

	if (!n)
		return NULL;
	if (len)
		memcpy(node_prefix(n), key, len);
	n->flags |= PM_F_VAL;
	n->val = val;
	return n;
}

pm_node *node_leaf(const pm_ctx *c, const uint8_t *key, size_t len, uint64_t val)
{
	if (len == 0 && val < PM_TAG_MAX)
		return node_tag(val);
	return node_make_leaf(c, key, len, val);
}

pm_node *node_pack(const pm_ctx *c, pm_node *n)
{
	pm_node *t;

	if (!n || node_is_tag(n) || n->kind != PM_LEAF || !(n->flags & PM_F_VAL) ||
	    node_block_plen(n) || n->val >= PM_TAG_MAX ||
	    atomic_load_explicit(&n->refs, memory_order_acquire) != 1)
		return n;
	t = node_tag(n->val);
	node_free_block(c, n);
	return t;
}

static pm_node **node_children(pm_node *n)
{
	if (node_is_tag(n))
		return NULL;
	if (n->kind == PM_SMALL)
		return node_small(n)->child;
	if (n->kind == PM_DENSE)
		return node_dense(n)->child;
	return NULL;
}

static void ref_children(pm_node *n)
{
	pm_node **ch = node_children(n);
	unsigned i, k = node_nchild(n);

	for (i = 0; i < k; i++)
		node_ref(ch[i]);
}

/*
 * Drops one reference. Freeing is iterative: a dying node's val field links it into a list of
 * nodes whose children are still to be released, so no recursion and no allocation happen,
 * whatever the depth of the trie.
 */
void node_unref(const pm_ctx *c, pm_node *n)
{
	pm_node *list;

	if (!n || node_is_tag(n))
		return;
	if (atomic_load_explicit(&n->refs, memory_order_acquire) != 1 &&
	    atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1)
		return;
	n->val = 0;
	list = n;
	while (list) {
		pm_node *x = list, **ch = node_children(x);
		unsigned i, k = node_nchild(x);

		list = (pm_node *)(uintptr_t)x->val;
		for (i = 0; i < k; i++) {
			pm_node *y = ch[i];

			if (node_is_tag(y))
				continue;
			if (atomic_load_explicit(&y->refs, memory_order_acquire) != 1 &&
			    atomic_fetch_sub_explicit(&y->refs, 1, memory_order_acq_rel) != 1)
				continue;
			y->val = (uint64_t)(uintptr_t)list;
			list = y;
		}
		node_free_block(c, x);
	}
}

pm_node *node_copy(const pm_ctx *c, pm_node *n)
{
	size_t sz;
	pm_node *m;

	if (node_is_tag(n)) /* the block it stands for */
		return node_make_leaf(c, NULL, 0, node_val(n));
	sz = node_size(n);
	m = pm_xalloc(c, NULL, 0, sz);

	if (!m)
		return NULL;
	memcpy(m, n, sz);
	atomic_init(&m->refs, 1);
	ref_children(m);
	return m;
}

pm_node *node_cow(const pm_ctx *c, pm_node **slot)
{
	pm_node *n = *slot, *m;

	if (!node_shared(n))
		return n;
	m = node_copy(c, n);
	if (!m)
		return NULL;
	*slot = m;
	node_unref(c, n);
	return m;
}

pm_node *node_child_at(pm_node *n, unsigned i, uint8_t *b)
{
	if (node_is_tag(n))
		return NULL;
	if (n->kind == PM_SMALL) {
		struct pm_small *s = node_small(n);

		*b = s->key[i];
		return s->child[i];
	}
	if (n->kind == PM_DENSE) {
		struct pm_dense *d = node_dense(n);
		unsigned w, left = i;

		for (w = 0; w < 4; w++) {
			unsigned pc = (unsigned)__builtin_popcountll(d->mask[w]);
			uint64_t m = d->mask[w];

			if (left >= pc) {
				left -= pc;
				continue;
			}
			while (left--)
				m &= m - 1;
			*b = (uint8_t)(w * 64 + (unsigned)__builtin_ctzll(m));
			return d->child[i];
		}
	}
	return NULL;
}

pm_node *node_child_after(pm_node *n, int after, uint8_t *b)
{
	if (node_is_tag(n))
		return NULL;
	if (n->kind == PM_SMALL) {
		struct pm_small *s = node_small(n);
		unsigned i;

		for (i = 0; i < s->n; i++)
			if ((int)s->key[i] > after) {
				*b = s->key[i];
				return s->child[i];
			}
		return NULL;
	}
	if (n->kind == PM_DENSE) {
		struct pm_dense *d = node_dense(n);
		int start = after + 1;
		unsigned w;

		for (w = (unsigned)start >> 6; start < 256 && w < 4; w++) {
			uint64_t m = d->mask[w];

			if ((unsigned)start > w * 64)
				m &= ~UINT64_C(0) << ((unsigned)start & 63);
			if (m) {
				unsigned byte = w * 64 + (unsigned)__builtin_ctzll(m);

				*b = (uint8_t)byte;
				return d->child[dense_index(d, byte)];
			}
		}
	}
	return NULL;
}

pm_node *node_child_before(pm_node *n, int before, uint8_t *b)
{
	if (node_is_tag(n))
		return NULL;
	if (n->kind == PM_SMALL) {
		struct pm_small *s = node_small(n);
		unsigned i;

		for (i = s->n; i-- > 0;)
			if ((int)s->key[i] < before) {
				*b = s->key[i];
				return s->child[i];
			}
		return NULL;
	}
	if (n->kind == PM_DENSE) {
		struct pm_dense *d = node_dense(n);
		int last = before - 1;
		int w;

		for (w = last >> 6; last >= 0 && w >= 0; w--) {
			uint64_t m = d->mask[w];

			if (last < w * 64 + 63)
				m &= (UINT64_C(2) << (last & 63)) - 1;
			if (m) {
				unsigned byte =
				    (unsigned)w * 64 + 63 - (unsigned)__builtin_clzll(m);

				*b = (uint8_t)byte;
				return d->child[dense_index(d, byte)];
			}
		}
	}
	return NULL;
}

/* Resizes a private node to a new child capacity of the same kind. NULL when that fails. */
static pm_node *node_resize(const pm_ctx *c, pm_node *n, unsigned cap)
{
	size_t osz = node_size(n), nsz = shape_size(n->kind, node_plen(n), cap);
	pm_node *m = pm_xalloc(c, n, osz, nsz);

	if (!m)
		return NULL;
	if (m->kind == PM_SMALL)
		node_small(m)->cap = (uint8_t)cap;
	else
		node_dense(m)->cap = (uint16_t)cap;
	return m;
}

/* A copy of private node n reshaped to kind with cap slots, children moved. n is freed. */
static pm_node *node_rekind(const pm_ctx *c, pm_node *n, int kind, unsigned cap)
{
	size_t plen = node_plen(n);
	pm_node *m = node_new(c, kind, plen, cap);
	unsigned i, k = node_nchild(n);

	if (!m)
		return NULL;
	if (plen)
		memcpy(node_prefix(m), node_prefix(n), plen);
	if (node_has_val(n))
		m->flags |= PM_F_VAL;
	m->val = node_val(n);
	for (i = 0; i < k; i++) {
		uint8_t b = 0;
		pm_node *ch = node_child_at(n, i, &b);

		node_build_push(m, b, ch);
	}
	node_free_block(c, n);
	return m;
}

pm_node *node_add_child(const pm_ctx *c, pm_node *n, uint8_t b, pm_node *child)
{
	if (node_kind(n) == PM_LEAF) {
		n = node_rekind(c, n, PM_SMALL, 2);
		if (!n)
			return NULL;
	}
	if (n->kind == PM_SMALL) {
		struct pm_small *s = node_small(n);
		unsigned i;

		if (s->n == s->cap) {
			pm_node *m;

			if (s->cap < PM_SMALL_MAX)
				m = node_resize(
				    c, n, s->cap + 2 > PM_SMALL_MAX ? PM_SMALL_MAX : s->cap + 2u);
			else
				m = node_rekind(c, n, PM_DENSE, 12);
			if (!m)
				return NULL;
			n = m;
			if (n->kind == PM_DENSE)
				goto dense;
			s = node_small(n);
		}
		for (i = s->n; i > 0 && s->key[i - 1] > b; i--) {
			s->key[i] = s->key[i - 1];
			s->child[i] = s->child[i - 1];
		}
		s->key[i] = b;
		s->child[i] = child;
		s->n++;
		return n;
	}
dense : {
	struct pm_dense *d = node_dense(n);
	unsigned idx;

	if (d->n == d->cap) {
		unsigned cap = d->cap < 32 ? d->cap + 8u : d->cap + d->cap / 4u;
		pm_node *m;

		cap = (cap + 3) & ~3u;
		if (cap > 256)
			cap = 256;
		m = node_resize(c, n, cap);
		if (!m)
			return NULL;
		n = m;
		d = node_dense(n);
	}
	idx = dense_index(d, b);
	memmove(&d->child[idx + 1], &d->child[idx], (d->n - idx) * sizeof(pm_node *));
	d->child[idx] = child;
	d->mask[b >> 6] |= UINT64_C(1) << (b & 63);
	d->n++;
	return n;
}
}

pm_node *node_reserve(const pm_ctx *c, pm_node *n, unsigned total)
{
	if (total <= node_cap(n))
		return n;
	if (node_kind(n) == PM_DENSE || (node_kind(n) == PM_SMALL && total <= PM_SMALL_MAX))
		return node_resize(c, n, total);
	return node_rekind(c, n, total <= PM_SMALL_MAX ? PM_SMALL : PM_DENSE, total);
}

void node_del_child(pm_node *n, uint8_t b)
{
	if (n->kind == PM_SMALL) {
		struct pm_small *s = node_small(n);
		unsigned i;

		for (i = 0; i < s->n && s->key[i] != b; i++)
			;
		for (; i + 1 < s->n; i++) {
			s->key[i] = s->key[i + 1];
			s->child[i] = s->child[i + 1];
		}
		s->n--;
	} else if (n->kind == PM_DENSE) {
		struct pm_dense *d = node_dense(n);
		unsigned idx = dense_index(d, b);

		memmove(&d->child[idx], &d->child[idx + 1], (d->n - idx - 1) * sizeof(pm_node *));
		d->mask[b >> 6] &= ~(UINT64_C(1) << (b & 63));
		d->n--;
	}
}

pm_node *node_reprefix(const pm_ctx *c, pm_node *n, const uint8_t *a, size_t la, const uint8_t *b,
		       size_t lb, size_t cut)
{
	size_t plen = node_plen(n), nl, boff;
	pm_node *m;
	uint8_t *p;

	if (la == 0 && lb == 0 && cut == 0)
		return n;
	if (la > UINT32_MAX || lb > UINT32_MAX || la + lb > UINT32_MAX - (plen - cut))
		return NULL;
	nl = la + lb + plen - cut;
	m = node_new(c, node_kind(n), nl, node_cap(n));
	if (!m)
		return NULL;
	if (node_has_val(n))
		m->flags |= PM_F_VAL;
	m->val = node_val(n);
	p = node_prefix(m);
	if (la)
		memcpy(p, a, la);
	if (lb)
		memcpy(p + la, b, lb);
	if (plen > cut)
		memcpy(p + la + lb, node_prefix(n) + cut, plen - cut);
	if (node_kind(n) != PM_LEAF) {
		boff = node_body_off(n);
		memcpy((uint8_t *)m + node_body_off(m), (uint8_t *)n + boff, node_size(n) - boff);
	}
	if (node_shared(n)) {
		ref_children(m);
		node_unref(c, n);
	} else {
		node_free_block(c, n);
	}
	return m;
}

pm_node *node_build(const pm_ctx *c, const uint8_t *pre, size_t plen, bool has_val, uint64_t val,
		    unsigned nchild)
{
	int kind = nchild == 0 ? PM_LEAF : nchild <= PM_SMALL_MAX ? PM_SMALL : PM_DENSE;
	pm_node *n = node_new(c, kind, plen, nchild);

	if (!n)
		return NULL;
	if (plen)
		memcpy(node_prefix(n), pre, plen);
	if (has_val) {
		n->flags |= PM_F_VAL;
		n->val = val;
	}
	return n;
}

void node_build_push(pm_node *n, uint8_t b, pm_node *child)
{
	if (n->kind == PM_SMALL) {
		struct pm_small *s = node_small(n);

		s->key[s->n] = b;
		s->child[s->n++] = child;
	} else {
		struct pm_dense *d = node_dense(n);

		d->mask[b >> 6] |= UINT64_C(1) << (b & 63);
		d->child[d->n++] = child;
	}
}

pm_node *node_build_finish(const pm_ctx *c, pm_node *n, int *rc)
{
	unsigned k = node_nchild(n);
	pm_node *m;
	uint8_t b;

	if (!node_has_val(n) && k == 0) {
		node_free_block(c, n);
		return NULL;
	}
	if (!node_has_val(n) && k == 1) {
		pm_node *ch = node_child_at(n, 0, &b);

		m = node_reprefix(c, ch, node_prefix(n), node_plen(n), &b, 1, 0);
		if (!m) {
			*rc = PM_ENOMEM;
			node_unref(c, n);
			return NULL;
		}
		node_free_block(c, n);
		return m;
	}
	if (n->kind == PM_DENSE && k <= PM_SMALL_MAX) {
		m = node_rekind(c, n, PM_SMALL, k);
		return m ? m : n;
	}
	return n;
}

size_t node_count(pm_node *n)
{
	size_t total;
	pm_node **ch;
	unsigned i, k;

	if (!n)
		return 0;
	total = node_has_val(n);
	k = node_nchild(n);
	ch = node_children(n);
	for (i = 0; i < k; i++)
		total += node_count(ch[i]);
	return total;
}

pm_node *node_shrink(const pm_ctx *c, pm_node *n)
{
	unsigned k = node_nchild(n);
	pm_node *m = NULL;

	if (k == 0 && node_kind(n) != PM_LEAF)
		m = node_rekind(c, n, PM_LEAF, 0);
	else if (node_kind(n) == PM_DENSE && k <= PM_SMALL_MAX / 2)
		m = node_rekind(c, n, PM_SMALL, k);
	return m ? m : n;
}
