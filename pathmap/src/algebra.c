/*
 * algebra.c - join, meet, subtract, restrict and equality over trie positions.
 *
 * Each operation walks both operands together from a pair of positions and builds new nodes
 * only where the result differs from both operands; a subtrie present on one side only (or
 * identical on both) is shared whole by reference, never walked. Bytes that both operands hold
 * inside their compressed prefixes are consumed in one run, so the recursion depth is the
 * number of branch points, not the key length. Operands are never modified.
 */
#include "pm_internal.h"

static bool pos_val(pm_pos p, uint64_t *v)
{
	if (!p.n || p.off != node_plen(p.n) || !node_has_val(p.n))
		return false;
	*v = node_val(p.n);
	return true;
}

static bool pos_inside(pm_pos p)
{
	return p.off < node_plen(p.n);
}

/* The first child of position p with byte > after: 1 and *b, *cp; 0 when none. */
static int pos_next_child(pm_pos p, int after, uint8_t *b, pm_pos *cp)
{
	pm_node *ch;

	if (!p.n)
		return 0;
	if (pos_inside(p)) {
		uint8_t x = node_prefix(p.n)[p.off];

		if ((int)x <= after)
			return 0;
		*b = x;
		cp->n = p.n;
		cp->off = p.off + 1;
		return 1;
	}
	ch = node_child_after(p.n, after, b);
	if (!ch)
		return 0;
	cp->n = ch;
	cp->off = 0;
	return 1;
}

/* Advances a and b over the bytes both hold inside their prefixes. Returns the run's start
 * offset in a's node (the run is node_prefix(a->n)[start .. a->off)). */
static size_t common_run(pm_pos *a, pm_pos *b)
{
	size_t start = a->off, pa = node_plen(a->n), pb = node_plen(b->n);
	uint8_t *xa = node_prefix(a->n), *xb = node_prefix(b->n);

	while (a->off < pa && b->off < pb && xa[a->off] == xb[b->off]) {
		a->off++;
		b->off++;
	}
	return start;
}

enum { OP_JOIN, OP_MEET, OP_SUBTRACT, OP_RESTRICT };

struct alg {
	const pm_ctx *c;   /* allocator of the result */
	int op;		   /* OP_* */
	pm_merge_fn merge; /* join's value rule */
	void *arg;	   /* its argument */
};

/* Whether the result may hold a child under this byte, given which operands have one. */
static bool keeps_child(int op, bool in_a, bool in_b)
{
	switch (op) {
	case OP_JOIN:
		return in_a || in_b;
	case OP_SUBTRACT:
		return in_a;
	default:
		return in_a && in_b;
	}
}

static int run_op(const struct alg *g, pm_pos a, pm_pos b, pm_node **out);

static int build(const struct alg *g, pm_pos a, pm_pos b, const uint8_t *run, size_t rlen, bool hv,
		 uint64_t v, pm_node **out)
{
	pm_pos ca, cb;
	pm_node *r, *ch;
	int after, rc = 0;
	unsigned k = 0;
	uint8_t x, y;
	bool ha, hb;

	/* count candidate children, in byte order over both positions */
	for (after = -1;;) {
		ha = pos_next_child(a, after, &x, &ca);
		hb = pos_next_child(b, after, &y, &cb);
		if (!ha && !hb)
			break;
		if (ha && hb && x != y) {
			if (x < y)
				hb = false;
			else
				ha = false;
		}
		if (keeps_child(g->op, ha, hb))
			k++;
		after = ha ? x : y;
	}
	r = node_build(g->c, run, rlen, hv, v, k);
	if (!r)
		return PM_ENOMEM;
	for (after = -1;;) {
		ha = pos_next_child(a, after, &x, &ca);
		hb = pos_next_child(b, after, &y, &cb);
		if (!ha && !hb)
			break;
		if (ha && hb && x != y) {
			if (x < y)
				hb = false;
			else
				ha = false;
		}
		if (!ha) {
			ca.n = NULL;
			x = y;
		}
		if (!hb)
			cb.n = NULL;
		after = x;
		if (!keeps_child(g->op, ha, hb))
			continue;
		rc = run_op(g, ca, cb, &ch);
		if (rc) {
			node_unref(g->c, r);
			return rc;
		}
		if (ch)
			node_build_push(r, x, ch);
	}
	*out = node_build_finish(g->c, r, &rc);
	return rc;
}

static int run_op(const struct alg *g, pm_pos a, pm_pos b, pm_node **out)
{
	uint64_t va = 0, vb = 0, v = 0;
	bool ha, hb, hv;
	size_t start;

	*out = NULL;
	if (!a.n) {
		if (g->op == OP_JOIN)
			return tr_subtrie(g->c, b, out);
		return 0;
	}
	if (!b.n) {
		if (g->op == OP_JOIN || g->op == OP_SUBTRACT)
			return tr_subtrie(g->c, a, out);
		return 0;
	}
	if (a.n == b.n && a.off == b.off) {
		if (g->op == OP_SUBTRACT)
			return 0;
		if (g->op != OP_JOIN || !g->merge)
			return tr_subtrie(g->c, a, out);
	}
	start = common_run(&a, &b);
	ha = pos_val(a, &va);
	hb = pos_val(b, &vb);
	switch (g->op) {
	case OP_JOIN:
		hv = ha || hb;
		v = ha ? va : vb;
		if (ha && hb && g->merge && g->merge(va, vb, &v, g->arg))
			return PM_EMERGE;
		break;
	case OP_MEET:
		if (pos_inside(a) && pos_inside(b))
			return 0;
		hv = ha && hb;
		v = va;
		break;
	case OP_SUBTRACT:
		hv = ha && !hb;
		v = va;
		break;
	default:
		if (hb) {
			pm_pos whole = {a.n, start};

			return tr_subtrie(g->c, whole, out);
		}
		if (pos_inside(a) && pos_inside(b))
			return 0;
		hv = false;
	}
	return build(g, a, b, node_prefix(a.n) + start, a.off - start, hv, v, out);
}

int alg_join(const pm_ctx *c, pm_pos a, pm_pos b, pm_merge_fn merge, void *arg, pm_node **out)
{
	struct alg g = {c, OP_JOIN, merge, arg};

	return run_op(&g, a, b, out);
}

int alg_meet(const pm_ctx *c, pm_pos a, pm_pos b, pm_node **out)
{
	struct alg g = {c, OP_MEET, NULL, NULL};

	return run_op(&g, a, b, out);
}

int alg_subtract(const pm_ctx *c, pm_pos a, pm_pos b, pm_node **out)
{
	struct alg g = {c, OP_SUBTRACT, NULL, NULL};

	return run_op(&g, a, b, out);
}

int alg_restrict(const pm_ctx *c, pm_pos a, pm_pos b, pm_node **out)
{
	struct alg g = {c, OP_RESTRICT, NULL, NULL};

	return run_op(&g, a, b, out);
}

bool alg_equal(pm_pos a, pm_pos b)
{
	uint64_t va = 0, vb = 0;
	pm_pos ca, cb;
	uint8_t x, y;
	int after;
	bool ha, hb;

	if (!a.n || !b.n)
		return a.n == b.n;
	if (a.n == b.n && a.off == b.off)
		return true;
	common_run(&a, &b);
	ha = pos_val(a, &va);
	hb = pos_val(b, &vb);
	if (ha != hb || (ha && va != vb))
		return false;
	for (after = -1;;) {
		ha = pos_next_child(a, after, &x, &ca);
		hb = pos_next_child(b, after, &y, &cb);
		if (ha != hb || (ha && x != y))
			return false;
		if (!ha)
			return true;
		if (!alg_equal(ca, cb))
			return false;
		after = x;
	}
}
