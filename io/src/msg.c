/*
 * msg.c - one-line messages that keep their end when a long file name fills them.
 *
 * Kept apart from err.c, which folds HDF5's error stack: this needs no HDF5, and the KB code
 * (engine/kb.c) uses it too, also where it is built without the io layer (the fuzz target).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pio.h"

/* Cuts src (len bytes) into dst[size] as pio_vmsgf describes. */
static void fit(char *dst, size_t size, const char *src, size_t len)
{
	size_t head = (size - 4) / 3, tail = size - 4 - head;
	size_t from = len - tail;

	while (head && ((unsigned char)src[head] & 0xC0) == 0x80)
		head--; /* src[head], the first byte left out, begins a character */
	while (from < len && ((unsigned char)src[from] & 0xC0) == 0x80)
		from++;
	memcpy(dst, src, head);
	memcpy(dst + head, "...", 3);
	memcpy(dst + head + 3, src + from, len - from + 1);
}

void pio_vmsgf(char *dst, size_t size, const char *fmt, va_list ap)
{
	va_list aq;
	char *p;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(dst, size, fmt, ap);
	if (n < 0) {
		dst[0] = 0;
	} else if ((size_t)n >= size && size > 16) {
		char *all = malloc((size_t)n + 1); /* without it, the truncated message stays */

		if (all) {
			vsnprintf(all, (size_t)n + 1, fmt, aq);
			fit(dst, size, all, (size_t)n);
			free(all);
		}
	}
	va_end(aq);
	for (p = dst; *p; p++) /* one line, whatever a file's name holds */
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

void pio_msgf(char *dst, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pio_vmsgf(dst, size, fmt, ap);
	va_end(ap);
}
