/*
 * check.c - the whole-structure checker and shape statistics.
 */
#include <stdarg.h>
#include <stdio.h>

#include "pm_internal.h"

struct chk {
	char *msg;     /* where to describe the first failure */
	size_t msglen; /* its size */
	size_t values; /* values seen */
	bool bad;      /* a failure was found */
};

static bool fail(struct chk *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(struct chk *k, const char *fmt, ...)
{
	va_list ap;

	k->bad = true;
	if (k->msg && k->msglen) {
		va_start(ap, fmt);
		vsnprintf(k->msg, k->msglen, fmt, ap);
		va_end(ap);
	}
	return false;
}

static bool check_node(struct chk *k, pm_node *n, size_t depth)
{
	unsigned i, kids = 0;
	size_t plen;

	if (node_is_tag(n)) { /* a leaf: its prefix length and, for one byte, no second byte */
		uintptr_t w = (uintptr_t)n;

		if (tag_plen(n) > PM_TAG_PLEN || (tag_plen(n) == 1 && ((w >> 3) & 0xff)))
			return fail(k, "value tag at depth %zu is malformed (0x%llx)", depth,
				    (unsigned long long)w);
		k->values++;
		return true;
	}
	if (atomic_load(&n->refs) < 1)
		return fail(k, "node at depth %zu has reference count 0", depth);
	if (n->kind > PM_DENSE)
		return fail(k, "node at depth %zu has unknown kind %u", depth, n->kind);
	if (n->flags & ~(PM_F_VAL | PM_F_LONGP | PM_F_INL | PM_F_PK))
		return fail(k, "node at depth %zu has unknown flags 0x%x", depth, n->flags);
	if (node_is_pk(n)) { /* a leaf whose prefix length and value fit the 10 bytes */
		if (n->kind != PM_LEAF || !(n->flags & PM_F_VAL) ||
		    (n->flags & (PM_F_LONGP | PM_F_INL)) || !node_pk_fits(pk_plen(n), node_val(n)))
			return fail(k, "packed leaf at depth %zu is malformed (flags 0x%x)", depth,
				    n->flags);
		k->values++;
		return true;
	}
	plen = node_plen(n);
	if (((n->flags & PM_F_LONGP) != 0) != (plen > PM_PLEN_SHORT) ||
	    ((n->flags & PM_F_IN1) != 0) != (plen == 1) ||
	    ((n->flags & PM_F_IN2) != 0) != (plen == 2))
		return fail(k, "node at depth %zu: prefix length %zu in the wrong encoding", depth,
			    plen);
	if (n->kind == PM_SMALL) {
		struct pm_small *s = node_small(n);

		if (s->cap > PM_SMALL_MAX || s->n > s->cap)
			return fail(k, "small node at depth %zu: n %u cap %u", depth, s->n, s->cap);
		for (i = 0; i < s->n; i++) {
			if (i && s->key[i - 1] >= s->key[i])
				return fail(k, "small node at depth %zu: keys out of order", depth);
			if (!s->child[i])
				return fail(k, "small node at depth %zu: NULL child", depth);
		}
		kids = s->n;
	} else if (n->kind == PM_DENSE) {
		struct pm_dense *d = node_dense(n);
		unsigned pc = 0;

		for (i = 0; i < 4; i++)
			pc += (unsigned)__builtin_popcountll(d->mask[i]);
		if (pc != d->n || d->n > d->cap || d->cap > 256)
			return fail(k, "dense node at depth %zu: mask %u n %u cap %u", depth, pc,
				    d->n, d->cap);
		for (i = 0; i < d->n; i++)
			if (!d->child[i])
				return fail(k, "dense node at depth %zu: NULL child", depth);
		kids = d->n;
	}
	if (!node_has_val(n) && kids < 2)
		return fail(k, "node at depth %zu has no value and %u children", depth, kids);
	k->values += node_has_val(n);
	for (i = 0; i < kids; i++) {
		uint8_t b;

		if (!check_node(k, node_child_at(n, i, &b), depth + plen + 1))
			return false;
	}
	return true;
}

int pm_map_check(const pm_map *m, char *msg, size_t msglen)
{
	struct chk k = {msg, msglen, 0, false};

	if (m->root && !check_node(&k, m->root, 0))
		return PM_EINVAL;
	if (k.values != m->count) {
		fail(&k, "map counts %zu values, the trie holds %zu", m->count, k.values);
		return PM_EINVAL;
	}
	return 0;
}

static void stats_node(pm_node *n, size_t depth, pm_stats *st)
{
	unsigned i, kids = node_nchild(n);
	size_t plen = node_plen(n), end = depth + plen;

	st->nodes++;
	st->node_bytes += node_size(n);
	st->prefix_bytes += plen;
	st->values += node_has_val(n);
	st->value_tags += node_is_tag(n);
	st->packed_leaves += !node_is_tag(n) && node_is_pk(n);
	if (node_kind(n) == PM_LEAF)
		st->leaf_nodes++;
	else if (n->kind == PM_SMALL)
		st->small_nodes++;
	else
		st->dense_nodes++;
	if (kids == 0 && end > st->max_depth)
		st->max_depth = end;
	for (i = 0; i < kids; i++) {
		uint8_t b;

		stats_node(node_child_at(n, i, &b), end + 1, st);
	}
}

void pm_map_stats(const pm_map *m, pm_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (m->root)
		stats_node(m->root, 0, st);
}
