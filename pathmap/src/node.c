/*
 * node.c - allocation, reference counting and reshaping of trie nodes.
 *
 * Every function here that allocates either succeeds or leaves its inputs exactly as they
 * were, so callers can order their steps to keep a map valid after any allocation failure.
 */
#include <stdlib.h>

#include "pm_internal.h"

/* pm_pairs[2 * (b0 << 8 | b1)] = b0, b1: for every pair of bytes (the prefixes of tags). */
/* clang-format off */
#define PM_ROW(h) \
	h, 0, h, 1, h, 2, h, 3, h, 4, h, 5, h, 6, h, 7, h, 8, h, 9, h, 10, h, 11, h, 12, h, 13, h, \
	14, h, 15, h, 16, h, 17, h, 18, h, 19, h, 20, h, 21, h, 22, h, 23, h, 24, h, 25, h, 26, h, \
	27, h, 28, h, 29, h, 30, h, 31, h, 32, h, 33, h, 34, h, 35, h, 36, h, 37, h, 38, h, 39, h, \
	40, h, 41, h, 42, h, 43, h, 44, h, 45, h, 46, h, 47, h, 48, h, 49, h, 50, h, 51, h, 52, h, \
	53, h, 54, h, 55, h, 56, h, 57, h, 58, h, 59, h, 60, h, 61, h, 62, h, 63, h, 64, h, 65, h, \
	66, h, 67, h, 68, h, 69, h, 70, h, 71, h, 72, h, 73, h, 74, h, 75, h, 76, h, 77, h, 78, h, \
	79, h, 80, h, 81, h, 82, h, 83, h, 84, h, 85, h, 86, h, 87, h, 88, h, 89, h, 90, h, 91, h, \
	92, h, 93, h, 94, h, 95, h, 96, h, 97, h, 98, h, 99, h, 100, h, 101, h, 102, h, 103, h, 104, \
	h, 105, h, 106, h, 107, h, 108, h, 109, h, 110, h, 111, h, 112, h, 113, h, 114, h, 115, h, \
	116, h, 117, h, 118, h, 119, h, 120, h, 121, h, 122, h, 123, h, 124, h, 125, h, 126, h, 127, \
	h, 128, h, 129, h, 130, h, 131, h, 132, h, 133, h, 134, h, 135, h, 136, h, 137, h, 138, h, \
	139, h, 140, h, 141, h, 142, h, 143, h, 144, h, 145, h, 146, h, 147, h, 148, h, 149, h, 150, \
	h, 151, h, 152, h, 153, h, 154, h, 155, h, 156, h, 157, h, 158, h, 159, h, 160, h, 161, h, \
	162, h, 163, h, 164, h, 165, h, 166, h, 167, h, 168, h, 169, h, 170, h, 171, h, 172, h, 173, \
	h, 174, h, 175, h, 176, h, 177, h, 178, h, 179, h, 180, h, 181, h, 182, h, 183, h, 184, h, \
	185, h, 186, h, 187, h, 188, h, 189, h, 190, h, 191, h, 192, h, 193, h, 194, h, 195, h, 196, \
	h, 197, h, 198, h, 199, h, 200, h, 201, h, 202, h, 203, h, 204, h, 205, h, 206, h, 207, h, \
	208, h, 209, h, 210, h, 211, h, 212, h, 213, h, 214, h, 215, h, 216, h, 217, h, 218, h, 219, \
	h, 220, h, 221, h, 222, h, 223, h, 224, h, 225, h, 226, h, 227, h, 228, h, 229, h, 230, h, \
	231, h, 232, h, 233, h, 234, h, 235, h, 236, h, 237, h, 238, h, 239, h, 240, h, 241, h, 242, \
	h, 243, h, 244, h, 245, h, 246, h, 247, h, 248, h, 249, h, 250, h, 251, h, 252, h, 253, h, \
	254, h, 255
const uint8_t pm_pairs[2 * 65536] = {
	PM_ROW(0), PM_ROW(1), PM_ROW(2), PM_ROW(3), PM_ROW(4), PM_ROW(5), PM_ROW(6), PM_ROW(7),
	PM_ROW(8), PM_ROW(9), PM_ROW(10), PM_ROW(11), PM_ROW(12), PM_ROW(13), PM_ROW(14),
	PM_ROW(15), PM_ROW(16), PM_ROW(17), PM_ROW(18), PM_ROW(19), PM_ROW(20), PM_ROW(21),
	PM_ROW(22), PM_ROW(23), PM_ROW(24), PM_ROW(25), PM_ROW(26), PM_ROW(27), PM_ROW(28),
	PM_ROW(29), PM_ROW(30), PM_ROW(31), PM_ROW(32), PM_ROW(33), PM_ROW(34), PM_ROW(35),
	PM_ROW(36), PM_ROW(37), PM_ROW(38), PM_ROW(39), PM_ROW(40), PM_ROW(41), PM_ROW(42),
	PM_ROW(43), PM_ROW(44), PM_ROW(45), PM_ROW(46), PM_ROW(47), PM_ROW(48), PM_ROW(49),
	PM_ROW(50), PM_ROW(51), PM_ROW(52), PM_ROW(53), PM_ROW(54), PM_ROW(55), PM_ROW(56),
	PM_ROW(57), PM_ROW(58), PM_ROW(59), PM_ROW(60), PM_ROW(61), PM_ROW(62), PM_ROW(63),
	PM_ROW(64), PM_ROW(65), PM_ROW(66), PM_ROW(67), PM_ROW(68), PM_ROW(69), PM_ROW(70),
	PM_ROW(71), PM_ROW(72), PM_ROW(73), PM_ROW(74), PM_ROW(75), PM_ROW(76), PM_ROW(77),
	PM_ROW(78), PM_ROW(79), PM_ROW(80), PM_ROW(81), PM_ROW(82), PM_ROW(83), PM_ROW(84),
	PM_ROW(85), PM_ROW(86), PM_ROW(87), PM_ROW(88), PM_ROW(89), PM_ROW(90), PM_ROW(91),
	PM_ROW(92), PM_ROW(93), PM_ROW(94), PM_ROW(95), PM_ROW(96), PM_ROW(97), PM_ROW(98),
	PM_ROW(99), PM_ROW(100), PM_ROW(101), PM_ROW(102), PM_ROW(103), PM_ROW(104), PM_ROW(105),
	PM_ROW(106), PM_ROW(107), PM_ROW(108), PM_ROW(109), PM_ROW(110), PM_ROW(111), PM_ROW(112),
	PM_ROW(113), PM_ROW(114), PM_ROW(115), PM_ROW(116), PM_ROW(117), PM_ROW(118), PM_ROW(119),
	PM_ROW(120), PM_ROW(121), PM_ROW(122), PM_ROW(123), PM_ROW(124), PM_ROW(125), PM_ROW(126),
	PM_ROW(127), PM_ROW(128), PM_ROW(129), PM_ROW(130), PM_ROW(131), PM_ROW(132), PM_ROW(133),
	PM_ROW(134), PM_ROW(135), PM_ROW(136), PM_ROW(137), PM_ROW(138), PM_ROW(139), PM_ROW(140),
	PM_ROW(141), PM_ROW(142), PM_ROW(143), PM_ROW(144), PM_ROW(145), PM_ROW(146), PM_ROW(147),
	PM_ROW(148), PM_ROW(149), PM_ROW(150), PM_ROW(151), PM_ROW(152), PM_ROW(153), PM_ROW(154),
	PM_ROW(155), PM_ROW(156), PM_ROW(157), PM_ROW(158), PM_ROW(159), PM_ROW(160), PM_ROW(161),
	PM_ROW(162), PM_ROW(163), PM_ROW(164), PM_ROW(165), PM_ROW(166), PM_ROW(167), PM_ROW(168),
	PM_ROW(169), PM_ROW(170), PM_ROW(171), PM_ROW(172), PM_ROW(173), PM_ROW(174), PM_ROW(175),
	PM_ROW(176), PM_ROW(177), PM_ROW(178), PM_ROW(179), PM_ROW(180), PM_ROW(181), PM_ROW(182),
	PM_ROW(183), PM_ROW(184), PM_ROW(185), PM_ROW(186), PM_ROW(187), PM_ROW(188), PM_ROW(189),
	PM_ROW(190), PM_ROW(191), PM_ROW(192), PM_ROW(193), PM_ROW(194), PM_ROW(195), PM_ROW(196),
	PM_ROW(197), PM_ROW(198), PM_ROW(199), PM_ROW(200), PM_ROW(201), PM_ROW(202), PM_ROW(203),
	PM_ROW(204), PM_ROW(205), PM_ROW(206), PM_ROW(207), PM_ROW(208), PM_ROW(209), PM_ROW(210),
	PM_ROW(211), PM_ROW(212), PM_ROW(213), PM_ROW(214), PM_ROW(215), PM_ROW(216), PM_ROW(217),
	PM_ROW(218), PM_ROW(219), PM_ROW(220), PM_ROW(221), PM_ROW(222), PM_ROW(223), PM_ROW(224),
	PM_ROW(225), PM_ROW(226), PM_ROW(227), PM_ROW(228), PM_ROW(229), PM_ROW(230), PM_ROW(231),
	PM_ROW(232), PM_ROW(233), PM_ROW(234), PM_ROW(235), PM_ROW(236), PM_ROW(237), PM_ROW(238),
	PM_ROW(239), PM_ROW(240), PM_ROW(241), PM_ROW(242), PM_ROW(243), PM_ROW(244), PM_ROW(245),
	PM_ROW(246), PM_ROW(247), PM_ROW(248), PM_ROW(249), PM_ROW(250), PM_ROW(251), PM_ROW(252),
	PM_ROW(253), PM_ROW(254), PM_ROW(255)
};
#undef PM_ROW
/* clang-format on */

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
	size_t hdr = sizeof(pm_node) + (plen > PM_PLEN_SHORT ? 4 : 0), own;

	if (plen > UINT32_MAX || plen > SIZE_MAX - hdr - 8 - sizeof(struct pm_dense) - 256 * 8)
		return 0;
	own = plen > PM_PLEN_INLINE ? plen : 0; /* bytes after the header */
	if (kind == PM_LEAF)
		return hdr + own;
	if (kind == PM_SMALL)
		return pm_align8(hdr + own) + sizeof(struct pm_small) + (size_t)cap * 8;
	return pm_align8(hdr + own) + sizeof(struct pm_dense) + (size_t)cap * 8;
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
	if (node_is_pk(n))
		return sizeof(pm_node);
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
	n->plen = 0;
	if (plen > PM_PLEN_SHORT) {
		uint32_t l = (uint32_t)plen;

		n->flags = PM_F_LONGP;
		memcpy(n + 1, &l, sizeof(l));
	} else if (plen && plen <= PM_PLEN_INLINE) {
		n->flags = plen == 1 ? PM_F_IN1 : PM_F_IN2;
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

/* A packed leaf (node_pk_fits(len, val)), or NULL when out of memory. */
static pm_node *node_make_pk(const pm_ctx *c, const uint8_t *key, size_t len, uint64_t val)
{
	pm_node *n = pm_xalloc(c, NULL, 0, sizeof(pm_node));

	if (!n)
		return NULL;
	atomic_init(&n->refs, 1);
	n->kind = PM_LEAF;
	n->flags = (uint8_t)(PM_F_VAL | len << PM_PK_SHIFT);
	n->val = pk_word(key, len, val);
	memcpy(&n->plen, key, 2);
	return n;
}

pm_node *node_leaf(const pm_ctx *c, const uint8_t *key, size_t len, uint64_t val)
{
	if (node_tag_fits(len, val))
		return node_tag(key, len, val);
	if (node_pk_fits(len, val))
		return node_make_pk(c, key, len, val);
	return node_make_leaf(c, key, len, val);
}

pm_node *node_pack(const pm_ctx *c, pm_node *n)
{
	size_t plen;
	pm_node *t;

	if (!n || node_is_tag(n) || n->kind != PM_LEAF || !(n->flags & PM_F_VAL) || node_is_pk(n) ||
	    atomic_load_explicit(&n->refs, memory_order_acquire) != 1)
		return n;
	plen = node_block_plen(n);
	if (node_tag_fits(plen, n->val)) {
		t = node_tag(node_prefix(n), plen, n->val);
	} else if (node_pk_fits(plen, n->val)) {
		/* a new 16-byte block (when that fails, n stays as it is: valid too) */
		t = node_make_pk(c, node_prefix(n), plen, n->val);
		if (!t)
			return n;
	} else {
		return n;
	}
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

	if (node_is_tag(n) || node_is_pk(n)) /* the ordinary block it stands for */
		return node_make_leaf(c, node_prefix(n), node_plen(n), node_val(n));
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
