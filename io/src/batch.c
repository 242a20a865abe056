/*
 * batch.c - the flat record batch (growth, heap access) and the growth of a byte buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "pio_internal.h"

void pio_batch_init(struct pio_batch *b)
{
	memset(b, 0, sizeof(*b));
}

void pio_batch_free(struct pio_batch *b)
{
	if (!b)
		return;
	free(b->keys);
	free(b->key_off);
	free(b->vals);
	free(b->heap);
	pio_batch_init(b);
}

/* Capacity to grow to: at least need, at least 1.5x the old one. */
static size_t grown(size_t cap, size_t need)
{
	size_t c = cap + cap / 2;

	return c > need ? c : need;
}

int pio_grow_buf(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *p;

	if (need <= *cap)
		return 0;
	p = realloc(*buf, need);
	if (!p)
		return PIO_ENOMEM;
	*buf = p;
	*cap = need;
	return 0;
}

int pio_batch_reserve(struct pio_batch *b, size_t n, size_t keys, size_t heap)
{
	if (n > b->cap_n) {
		size_t c = grown(b->cap_n, n);
		size_t *off;
		uint64_t *vals;

		if (c >= SIZE_MAX / sizeof(size_t) - 1)
			return PIO_ENOMEM;
		off = realloc(b->key_off, (c + 1) * sizeof(*off));
		if (!off)
			return PIO_ENOMEM;
		b->key_off = off;
		vals = realloc(b->vals, c * sizeof(*vals));
		if (!vals)
			return PIO_ENOMEM;
		b->vals = vals;
		b->cap_n = c;
	}
	if (!b->key_off) {
		b->key_off = malloc(sizeof(*b->key_off));
		if (!b->key_off)
			return PIO_ENOMEM;
	}
	if (keys > b->cap_keys || !b->keys) {
		size_t c = grown(b->cap_keys, keys ? keys : 1);
		uint8_t *k = realloc(b->keys, c);

		if (!k)
			return PIO_ENOMEM;
		b->keys = k;
		b->cap_keys = c;
	}
	if (heap > b->cap_heap) {
		size_t c = grown(b->cap_heap, heap);
		uint8_t *h = realloc(b->heap, c);

		if (!h)
			return PIO_ENOMEM;
		b->heap = h;
		b->cap_heap = c;
	}
	return 0;
}

int pio_batch_blob(const struct pio_batch *b, uint64_t w, const uint8_t **data, uint32_t *len)
{
	uint32_t l;

	if (!b || !data || !len || w > b->heap_len || b->heap_len - w < 4)
		return PIO_EINVAL;
	l = (uint32_t)b->heap[w] | (uint32_t)b->heap[w + 1] << 8 | (uint32_t)b->heap[w + 2] << 16 |
	    (uint32_t)b->heap[w + 3] << 24;
	if (b->heap_len - w - 4 < l)
		return PIO_EINVAL;
	*data = b->heap + w + 4;
	*len = l;
	return 0;
}
