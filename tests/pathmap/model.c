/*
 * model.c - the reference map used by the pathmap tests.
 */
#include <stdlib.h>
#include <string.h>

#include "model.h"

int model_cmp(const uint8_t *a, size_t la, const uint8_t *b, size_t lb)
{
	size_t lim = la < lb ? la : lb;
	int c = lim ? memcmp(a, b, lim) : 0;

	if (c)
		return c;
	return la < lb ? -1 : la > lb;
}

void model_init(struct model *m)
{
	memset(m, 0, sizeof(*m));
}

void model_free(struct model *m)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		free(m->e[i].key);
	free(m->e);
	model_init(m);
}

static void push(struct model *m, const uint8_t *k, size_t len, uint64_t v)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->e = realloc(m->e, m->cap * sizeof(*m->e));
		if (!m->e)
			abort();
	}
	m->e[m->n].key = malloc(len + 1);
	if (!m->e[m->n].key)
		abort();
	if (len)
		memcpy(m->e[m->n].key, k, len);
	m->e[m->n].len = len;
	m->e[m->n].val = v;
	m->n++;
}

void model_copy(struct model *dst, const struct model *src)
{
	size_t i;

	model_init(dst);
	for (i = 0; i < src->n; i++)
		push(dst, src->e[i].key, src->e[i].len, src->e[i].val);
}

size_t model_lower(const struct model *m, const uint8_t *k, size_t len)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (model_cmp(m->e[mid].key, m->e[mid].len, k, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int model_set(struct model *m, const uint8_t *k, size_t len, uint64_t v, uint64_t *old)
{
	size_t i = model_lower(m, k, len);
	struct mentry e;

	if (i < m->n && !model_cmp(m->e[i].key, m->e[i].len, k, len)) {
		if (old)
			*old = m->e[i].val;
		m->e[i].val = v;
		return 0;
	}
	push(m, k, len, v);
	e = m->e[m->n - 1];
	memmove(&m->e[i + 1], &m->e[i], (m->n - 1 - i) * sizeof(e));
	m->e[i] = e;
	return 1;
}

bool model_get(const struct model *m, const uint8_t *k, size_t len, uint64_t *v)
{
	size_t i = model_lower(m, k, len);

	if (i < m->n && !model_cmp(m->e[i].key, m->e[i].len, k, len)) {
		if (v)
			*v = m->e[i].val;
		return true;
	}
	return false;
}

bool model_remove(struct model *m, const uint8_t *k, size_t len, uint64_t *old)
{
	size_t i = model_lower(m, k, len);

	if (i >= m->n || model_cmp(m->e[i].key, m->e[i].len, k, len))
		return false;
	if (old)
		*old = m->e[i].val;
	free(m->e[i].key);
	memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof(m->e[0]));
	m->n--;
	return true;
}

static bool has_prefix(const struct mentry *e, const uint8_t *p, size_t len)
{
	return e->len >= len && (len == 0 || !memcmp(e->key, p, len));
}

size_t model_count_prefix(const struct model *m, const uint8_t *p, size_t len)
{
	size_t i = model_lower(m, p, len), c = 0;

	while (i < m->n && has_prefix(&m->e[i], p, len)) {
		i++;
		c++;
	}
	return c;
}

void model_take(struct model *m, const uint8_t *p, size_t len, struct model *taken)
{
	size_t i = model_lower(m, p, len), j = i;

	if (taken)
		model_init(taken);
	while (j < m->n && has_prefix(&m->e[j], p, len)) {
		if (taken)
			push(taken, m->e[j].key + len, m->e[j].len - len, m->e[j].val);
		free(m->e[j].key);
		j++;
	}
	if (j < m->n)
		memmove(&m->e[i], &m->e[j], (m->n - j) * sizeof(m->e[0]));
	m->n -= j - i;
}

void model_graft(struct model *m, const uint8_t *p, size_t len, const struct model *src)
{
	uint8_t *buf;
	size_t i;

	model_take(m, p, len, NULL);
	for (i = 0; i < src->n; i++) {
		buf = malloc(len + src->e[i].len + 1);
		if (!buf)
			abort();
		if (len)
			memcpy(buf, p, len);
		if (src->e[i].len)
			memcpy(buf + len, src->e[i].key, src->e[i].len);
		model_set(m, buf, len + src->e[i].len, src->e[i].val, NULL);
		free(buf);
	}
}

void model_join(struct model *out, const struct model *a, const struct model *b, int sum)
{
	size_t i;
	uint64_t v;

	model_copy(out, a);
	for (i = 0; i < b->n; i++) {
		if (model_get(out, b->e[i].key, b->e[i].len, &v)) {
			if (sum)
				model_set(out, b->e[i].key, b->e[i].len, v + b->e[i].val, NULL);
		} else {
			model_set(out, b->e[i].key, b->e[i].len, b->e[i].val, NULL);
		}
	}
}

void model_meet(struct model *out, const struct model *a, const struct model *b)
{
	size_t i;

	model_init(out);
	for (i = 0; i < a->n; i++)
		if (model_get(b, a->e[i].key, a->e[i].len, NULL))
			push(out, a->e[i].key, a->e[i].len, a->e[i].val);
}

void model_subtract(struct model *out, const struct model *a, const struct model *b)
{
	size_t i;

	model_init(out);
	for (i = 0; i < a->n; i++)
		if (!model_get(b, a->e[i].key, a->e[i].len, NULL))
			push(out, a->e[i].key, a->e[i].len, a->e[i].val);
}

void model_restrict(struct model *out, const struct model *a, const struct model *b)
{
	size_t i, j;

	model_init(out);
	for (i = 0; i < a->n; i++)
		for (j = 0; j < b->n; j++)
			if (has_prefix(&a->e[i], b->e[j].key, b->e[j].len)) {
				push(out, a->e[i].key, a->e[i].len, a->e[i].val);
				break;
			}
}

struct walk {
	const struct model *m; /* expected content */
	size_t i;	       /* next expected entry */
	bool ok;	       /* all matched so far */
};

static int walk_fn(const uint8_t *k, size_t len, uint64_t v, void *arg)
{
	struct walk *w = arg;

	if (w->i >= w->m->n || model_cmp(k, len, w->m->e[w->i].key, w->m->e[w->i].len) ||
	    v != w->m->e[w->i].val) {
		w->ok = false;
		return 1;
	}
	w->i++;
	return 0;
}

bool model_matches(const struct model *m, const pm_map *map)
{
	struct walk w = {m, 0, true};

	if (pm_map_count(map) != m->n)
		return false;
	if (pm_map_foreach(map, NULL, 0, NULL, 0, walk_fn, &w) < 0)
		return false;
	return w.ok && w.i == m->n;
}

pm_map *model_to_map(const struct model *m, pm_alloc_fn alloc, void *ud)
{
	pm_map *map;
	size_t i;

	if (pm_map_create(&map, alloc, ud))
		return NULL;
	for (i = 0; i < m->n; i++)
		if (pm_map_set(map, m->e[i].key, m->e[i].len, m->e[i].val, NULL) < 0) {
			pm_map_destroy(map);
			return NULL;
		}
	return map;
}
