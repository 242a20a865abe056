/*
 * typemerge.c - the type a job's records take when its inputs' types differ within a class.
 *
 * Kept apart from type.c, which maps HDF5 types: this rule needs no HDF5, and the KB code
 * (engine/kb.c) uses it too, also where it is built without the io layer (the fuzz target).
 */
#include "pio.h"

int pio_type_merge(struct pio_type *m, const struct pio_type *t, bool key)
{
	bool num = m->cls == PIO_V_INT || m->cls == PIO_V_UINT;

	/* an opaque record is its bytes: one of another size would not fit, nor pad */
	if (m->cls != t->cls || (key && num && m->width != t->width) ||
	    (m->cls == PIO_V_OPAQUE && m->width != t->width))
		return PIO_EMIXED;
	if (m->cls == PIO_V_STRING) {
		m->vlen = m->vlen || t->vlen;
		if (t->cset == PIO_CSET_UTF8)
			m->cset = PIO_CSET_UTF8;
	}
	if (m->vlen)
		m->width = 0;
	else if (t->width > m->width)
		m->width = t->width;
	return 0;
}
