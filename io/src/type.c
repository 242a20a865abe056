/*
 * type.c - mapping HDF5 types to struct pio_type, decoders and memory types, and back.
 */
#include <stdio.h>
#include <string.h>

#include "pio_internal.h"

static const char *const pad_names[] = {"nullterm", "nullpad", "spacepad"};

char *pio_type_name(const struct pio_type *t, char *buf, size_t size)
{
	const char *be = t->big_endian ? "be" : "";

	switch (t->cls) {
	case PIO_V_INT:
		snprintf(buf, size, "int%u%s", t->width * 8, be);
		break;
	case PIO_V_UINT:
		snprintf(buf, size, "uint%u%s", t->width * 8, be);
		break;
	case PIO_V_FLOAT:
		snprintf(buf, size, "float%u%s", t->width * 8, be);
		break;
	case PIO_V_STRING:
		if (t->vlen)
			snprintf(buf, size, "string vlen %s",
				 t->cset == PIO_CSET_UTF8 ? "utf8" : "ascii");
		else
			snprintf(buf, size, "string[%u] %s %s", t->width, pad_names[t->pad],
				 t->cset == PIO_CSET_UTF8 ? "utf8" : "ascii");
		break;
	case PIO_V_OPAQUE:
		if (t->u8rows)
			snprintf(buf, size, "%s[%u]", t->u8signed ? "int8" : "uint8", t->width);
		else if (!t->width) /* a KB's only (kb-build --value-type opaque): no HDF5 type */
			snprintf(buf, size, "opaque vlen");
		else if (t->tag[0])
			snprintf(buf, size, "opaque[%u] tag=%s", t->width, t->tag);
		else
			snprintf(buf, size, "opaque[%u]", t->width);
		break;
	default:
		snprintf(buf, size, "?");
	}
	return buf;
}

void pio_h5type_desc(hid_t t, char *buf, size_t size)
{
	size_t w = H5Tget_size(t);

	switch (H5Tget_class(t)) {
	case H5T_INTEGER:
		snprintf(buf, size, "%s%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "uint" : "int",
			 w * 8);
		break;
	case H5T_FLOAT:
		snprintf(buf, size, "float%zu", w * 8);
		break;
	case H5T_STRING:
		if (H5Tis_variable_str(t) > 0)
			snprintf(buf, size, "variable-length string");
		else
			snprintf(buf, size, "fixed string of %zu bytes", w);
		break;
	case H5T_OPAQUE:
		snprintf(buf, size, "opaque of %zu bytes", w);
		break;
	case H5T_COMPOUND:
		snprintf(buf, size, "compound of %d fields", H5Tget_nmembers(t));
		break;
	case H5T_ENUM:
		snprintf(buf, size, "enum (h5py bool or enum) of %zu bytes", w);
		break;
	case H5T_ARRAY: {
		hid_t base = H5Tget_super(t);
		char b[64];
		int rank = H5Tget_array_ndims(t);

		pio_h5type_desc(base, b, sizeof(b));
		H5Tclose(base);
		snprintf(buf, size, "%d-D array of %s", rank, b);
		break;
	}
	case H5T_VLEN:
		snprintf(buf, size, "variable-length sequence");
		break;
	case H5T_BITFIELD:
		snprintf(buf, size, "bitfield of %zu bytes", w);
		break;
	case H5T_REFERENCE:
		snprintf(buf, size, "object or region reference");
		break;
	case H5T_TIME:
		snprintf(buf, size, "time");
		break;
	default:
		snprintf(buf, size, "unknown type class");
	}
}

static const char supported[] =
    "supported: int8..int64, uint8..uint64, float16/32/64 (values only), fixed or "
    "variable-length strings, opaque, uint8/int8 arrays or 2-D rows";

static int refuse(hid_t t, char *why, size_t whysize, const char *extra)
{
	char d[128];

	pio_h5type_desc(t, d, sizeof(d));
	snprintf(why, whysize, "type %s%s is not supported (%s)", d, extra, supported);
	return PIO_ETYPE;
}

/* Whether float type t of w bytes (2, 4 or 8) has IEEE 754's layout, the one its memory type
 * and the KB's float16/32/64 hold: a float of other fields (bfloat16, a 4-byte float with an
 * 11-bit exponent) would be converted to one that cannot hold its values (inf, 0). */
static bool ieee_float(hid_t t, size_t w)
{
	static const struct {
		size_t spos, epos, esize, mpos, msize, ebias;
	} ieee[3] = {{15, 10, 5, 0, 10, 15}, {31, 23, 8, 0, 23, 127}, {63, 52, 11, 0, 52, 1023}};
	const int i = w == 2 ? 0 : w == 4 ? 1 : 2;
	size_t spos, epos, esize, mpos, msize;

	if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0) {
		H5Eclear2(H5E_DEFAULT);
		return false;
	}
	return spos == ieee[i].spos && epos == ieee[i].epos && esize == ieee[i].esize &&
	       mpos == ieee[i].mpos && msize == ieee[i].msize && H5Tget_ebias(t) == ieee[i].ebias &&
	       H5Tget_norm(t) == H5T_NORM_IMPLIED && H5Tget_offset(t) == 0 &&
	       H5Tget_precision(t) == 8 * w;
}

static int classify_int(hid_t t, struct pio_type *pt, struct field *f, hid_t *mem)
{
	size_t w = H5Tget_size(t);
	bool sign = H5Tget_sign(t) != H5T_SGN_NONE;
	hid_t m;

	if (w != 1 && w != 2 && w != 4 && w != 8)
		return PIO_ETYPE;
	switch (w) {
	case 1:
		m = sign ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8;
		break;
	case 2:
		m = sign ? H5T_NATIVE_INT16 : H5T_NATIVE_UINT16;
		break;
	case 4:
		m = sign ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT32;
		break;
	default:
		m = sign ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64;
	}
	pt->cls = sign ? PIO_V_INT : PIO_V_UINT;
	pt->width = (uint32_t)w;
	pt->big_endian = H5Tget_order(t) == H5T_ORDER_BE;
	f->kind = sign ? FK_INT : FK_UINT;
	f->size = w;
	f->width = (uint32_t)w;
	*mem = H5Tcopy(m);
	return *mem < 0 ? PIO_ENOMEM : 0;
}

int pio_classify(hid_t t, hsize_t rows, struct pio_type *pt, struct field *f, hid_t *mem, char *why,
		 size_t whysize)
{
	H5T_class_t cls = H5Tget_class(t);
	size_t w = H5Tget_size(t);
	int rc;

	memset(pt, 0, sizeof(*pt));
	memset(f, 0, sizeof(*f));
	*mem = H5I_INVALID_HID;
	if (rows > 0) {
		/* A 2-D dataset: each row of 1-byte integers is one raw key or value. */
		if (cls != H5T_INTEGER || w != 1)
			return refuse(t, why, whysize,
				      " in a 2-D dataset (2-D needs 1-byte "
				      "integer rows)");
		if (rows > UINT32_MAX)
			return refuse(t, why, whysize, " with rows too long");
		pt->cls = PIO_V_OPAQUE;
		pt->u8rows = true;
		pt->u8signed = H5Tget_sign(t) != H5T_SGN_NONE;
		pt->width = (uint32_t)rows;
		f->kind = FK_RAW;
		f->size = (size_t)rows;
		*mem = H5Tcopy(pt->u8signed ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8);
		return *mem < 0 ? PIO_ENOMEM : 0;
	}
	switch (cls) {
	case H5T_INTEGER:
		rc = classify_int(t, pt, f, mem);
		if (rc == PIO_ETYPE)
			return refuse(t, why, whysize, "");
		return rc;
	case H5T_FLOAT:
		if (w != 2 && w != 4 && w != 8)
			return refuse(t, why, whysize, "");
		if (!ieee_float(t, w))
			return refuse(t, why, whysize,
				      " of a layout other than IEEE 754's (sign, exponent and "
				      "mantissa bits, bias)");
		pt->cls = PIO_V_FLOAT;
		pt->width = (uint32_t)w;
		pt->big_endian = H5Tget_order(t) == H5T_ORDER_BE;
		f->kind = FK_FLOAT;
		f->size = w == 8 ? 8 : 4;
		f->width = (uint32_t)w;
		*mem = H5Tcopy(w == 8 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT);
		return *mem < 0 ? PIO_ENOMEM : 0;
	case H5T_STRING: {
		H5T_cset_t cs = H5Tget_cset(t);

		pt->cls = PIO_V_STRING;
		pt->cset = cs == H5T_CSET_UTF8 ? PIO_CSET_UTF8 : PIO_CSET_ASCII;
		if (H5Tis_variable_str(t) > 0) {
			pt->vlen = true;
			f->kind = FK_VSTR;
			f->size = sizeof(char *);
			*mem = H5Tcopy(H5T_C_S1);
			if (*mem < 0)
				return PIO_ENOMEM;
			H5Tset_size(*mem, H5T_VARIABLE);
			H5Tset_cset(*mem, cs);
			return 0;
		}
		if (w > UINT32_MAX)
			return refuse(t, why, whysize, " (too long)");
		switch (H5Tget_strpad(t)) {
		case H5T_STR_NULLTERM:
			pt->pad = PIO_PAD_NULLTERM;
			break;
		case H5T_STR_NULLPAD:
			pt->pad = PIO_PAD_NULLPAD;
			break;
		case H5T_STR_SPACEPAD:
			pt->pad = PIO_PAD_SPACEPAD;
			break;
		default:
			return refuse(t, why, whysize, " with an unknown padding");
		}
		pt->width = (uint32_t)w;
		f->kind = FK_FSTR;
		f->size = w;
		f->pad = pt->pad;
		*mem = H5Tcopy(t);
		return *mem < 0 ? PIO_ENOMEM : 0;
	}
	case H5T_OPAQUE: {
		char *tag = H5Tget_tag(t);

		if (w > UINT32_MAX)
			return refuse(t, why, whysize, " (too long)");
		pt->cls = PIO_V_OPAQUE;
		pt->width = (uint32_t)w;
		if (tag) {
			snprintf(pt->tag, sizeof(pt->tag), "%s", tag);
			H5free_memory(tag);
		}
		f->kind = FK_RAW;
		f->size = w;
		*mem = H5Tcopy(t);
		return *mem < 0 ? PIO_ENOMEM : 0;
	}
	case H5T_ARRAY: {
		hid_t base = H5Tget_super(t);
		hsize_t dims[H5S_MAX_RANK];
		int rank = H5Tget_array_ndims(t);
		bool ok = base >= 0 && H5Tget_class(base) == H5T_INTEGER &&
			  H5Tget_size(base) == 1 && rank == 1;
		bool sign = ok && H5Tget_sign(base) != H5T_SGN_NONE;

		if (base >= 0)
			H5Tclose(base);
		if (!ok)
			return refuse(t, why, whysize, "");
		H5Tget_array_dims2(t, dims);
		if (dims[0] > UINT32_MAX)
			return refuse(t, why, whysize, " (too long)");
		pt->cls = PIO_V_OPAQUE;
		pt->u8rows = true;
		pt->u8signed = sign;
		pt->width = (uint32_t)dims[0];
		f->kind = FK_RAW;
		f->size = (size_t)dims[0];
		*mem = H5Tarray_create2(sign ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8, 1, dims);
		return *mem < 0 ? PIO_ENOMEM : 0;
	}
	default:
		return refuse(t, why, whysize, "");
	}
}

static hid_t half_type(void)
{
	hid_t t = H5Tcopy(H5T_IEEE_F32LE);

	/* IEEE binary16, as numpy's float16 is stored by h5py. */
	if (t < 0)
		return t;
	if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 ||
	    H5Tset_ebias(t, 15) < 0) {
		H5Tclose(t);
		return H5I_INVALID_HID;
	}
	return t;
}

hid_t pio_filetype(const struct pio_type *t)
{
	hid_t r = H5I_INVALID_HID;
	hid_t base;

	switch (t->cls) {
	case PIO_V_INT:
	case PIO_V_UINT:
		switch (t->width) {
		case 1:
			base = t->cls == PIO_V_INT ? H5T_STD_I8LE : H5T_STD_U8LE;
			break;
		case 2:
			base = t->cls == PIO_V_INT ? H5T_STD_I16LE : H5T_STD_U16LE;
			break;
		case 4:
			base = t->cls == PIO_V_INT ? H5T_STD_I32LE : H5T_STD_U32LE;
			break;
		case 8:
			base = t->cls == PIO_V_INT ? H5T_STD_I64LE : H5T_STD_U64LE;
			break;
		default:
			return H5I_INVALID_HID;
		}
		r = H5Tcopy(base);
		break;
	case PIO_V_FLOAT:
		if (t->width == 2)
			r = half_type();
		else if (t->width == 4)
			r = H5Tcopy(H5T_IEEE_F32LE);
		else if (t->width == 8)
			r = H5Tcopy(H5T_IEEE_F64LE);
		else
			return H5I_INVALID_HID;
		break;
	case PIO_V_STRING:
		r = H5Tcopy(H5T_C_S1);
		if (r < 0)
			return r;
		if (t->vlen) {
			H5Tset_size(r, H5T_VARIABLE);
		} else {
			if (t->width == 0 || H5Tset_size(r, t->width) < 0) {
				H5Tclose(r);
				return H5I_INVALID_HID;
			}
			H5Tset_strpad(r, t->pad == PIO_PAD_NULLTERM  ? H5T_STR_NULLTERM
					 : t->pad == PIO_PAD_NULLPAD ? H5T_STR_NULLPAD
								     : H5T_STR_SPACEPAD);
		}
		H5Tset_cset(r, t->cset == PIO_CSET_UTF8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII);
		return r;
	case PIO_V_OPAQUE:
		if (t->width == 0)
			return H5I_INVALID_HID;
		if (t->u8rows) {
			hsize_t d = t->width;

			return H5Tarray_create2(t->u8signed ? H5T_STD_I8LE : H5T_STD_U8LE, 1, &d);
		}
		r = H5Tcreate(H5T_OPAQUE, t->width);
		if (r >= 0 && t->tag[0])
			H5Tset_tag(r, t->tag);
		return r;
	default:
		return H5I_INVALID_HID;
	}
	if (r >= 0 && t->big_endian && t->width > 1)
		H5Tset_order(r, H5T_ORDER_BE);
	return r;
}
