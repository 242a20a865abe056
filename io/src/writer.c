/*
 * writer.c - the exporter: records in batch encoding -> HDF5 datasets of the declared types,
 * written under a temporary name and renamed on commit.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pio_internal.h"

#define SLICE_RECORDS ((size_t)1 << 18) /* records converted and written per H5Dwrite */
#define SLICE_BYTES ((size_t)64 << 20)	/* ... fewer when they would take more than this */

struct pio_writer {
	char *final;		 /* final file name */
	char *tmp;		 /* temporary file name, same directory */
	char *kpath, *vpath;	 /* dataset paths (vpath NULL for compound) */
	char *kname, *vname;	 /* compound field names */
	enum pio_layout layout;	 /* compound or pair */
	struct pio_type kt, vt;	 /* declared types */
	hid_t file;		 /* the temporary file */
	hid_t dk, dv;		 /* compound (or keys) dataset; values dataset or invalid */
	hid_t memk, memv;	 /* memory types of a key and a value */
	hid_t memrec;		 /* compound: memory record type {key, value} */
	size_t ksize, vsize;	 /* bytes of a key and a value in memory */
	size_t voff;		 /* compound: value offset in a memory record (key at 0) */
	size_t kstride, vstride; /* bytes per record of the key and value buffers */
	size_t krow, vrow;	 /* pair: row length of a 2-D uint8 dataset, else 0 */
	uint64_t n;		 /* records written */
	uint8_t *kbuf, *vbuf;	 /* conversion buffers of slice records */
	size_t slice;		 /* records a slice: SLICE_RECORDS, or fewer of long records */
	uint64_t chunk;		 /* records a chunk (of the last dataset made) */
	char *sarena;		 /* NUL-terminated copies of the vlen strings of a slice */
	size_t sarena_cap;	 /* its size */
};

static char *dupstr(const char *s)
{
	size_t n = strlen(s) + 1;
	char *c = malloc(n);

	if (c)
		memcpy(c, s, n);
	return c;
}

/* Creates the groups on the way to path, with object times off (deterministic bytes). */
static int make_parents(hid_t f, const char *path)
{
	char buf[1024];
	hid_t gcpl;
	int rc = 0;

	if (strlen(path) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", path);
	gcpl = H5Pcreate(H5P_GROUP_CREATE);
	if (gcpl < 0)
		return -1;
	H5Pset_obj_track_times(gcpl, 0);
	for (char *p = buf + 1; *p && !rc; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (H5Lexists(f, buf, H5P_DEFAULT) <= 0) {
			hid_t g = H5Gcreate2(f, buf, H5P_DEFAULT, gcpl, H5P_DEFAULT);

			if (g < 0)
				rc = -1;
			else
				H5Gclose(g);
		}
		*p = '/';
	}
	H5Pclose(gcpl);
	return rc;
}

/* Native memory type of one field, and its size. */
static hid_t mem_type(const struct pio_type *t, bool rows2d, size_t *size)
{
	hid_t m;

	switch (t->cls) {
	case PIO_V_INT:
	case PIO_V_UINT: {
		bool sg = t->cls == PIO_V_INT;

		*size = t->width;
		switch (t->width) {
		case 1:
			return H5Tcopy(sg ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8);
		case 2:
			return H5Tcopy(sg ? H5T_NATIVE_INT16 : H5T_NATIVE_UINT16);
		case 4:
			return H5Tcopy(sg ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT32);
		default:
			return H5Tcopy(sg ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64);
		}
	}
	case PIO_V_FLOAT:
		*size = t->width == 8 ? 8 : 4;
		return H5Tcopy(t->width == 8 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT);
	case PIO_V_STRING:
		m = pio_filetype(t);
		*size = t->vlen ? sizeof(char *) : t->width;
		return m;
	default:
		if (t->u8rows && rows2d) {
			*size = t->width;
			return H5Tcopy(t->u8signed ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8);
		}
		*size = t->width;
		return pio_filetype(t);
	}
}

static bool type_ok(const struct pio_type *t)
{
	switch (t->cls) {
	case PIO_V_INT:
	case PIO_V_UINT:
		return t->width == 1 || t->width == 2 || t->width == 4 || t->width == 8;
	case PIO_V_FLOAT:
		return t->width == 2 || t->width == 4 || t->width == 8;
	case PIO_V_STRING:
		return t->vlen || t->width > 0;
	case PIO_V_OPAQUE:
		return t->width > 0;
	default:
		return false;
	}
}

/* Records of w converted and written at once: SLICE_RECORDS, or as many as SLICE_BYTES
 * hold (at least one). A default chunk holds no more, so that slices write whole chunks:
 * a chunk written in parts is read back, and with a filter decoded and encoded again, for
 * each part (17 times slower with gzip). */
static size_t slice_records(const struct pio_writer *w)
{
	size_t n = SLICE_BYTES / (w->ksize + w->vsize + 1);

	return n < 1 ? 1 : n > SLICE_RECORDS ? SLICE_RECORDS : n;
}

/* Creates one extendible chunked dataset of file type ft (rank 2 for u8 rows). */
static hid_t create_dataset(struct pio_writer *w, const char *path, hid_t ft, size_t rowlen,
			    size_t recsize, const struct pio_writer_opts *o)
{
	hsize_t dims[2] = {0, rowlen}, maxd[2] = {H5S_UNLIMITED, rowlen}, chunk[2];
	uint64_t c = o->chunk_records ? o->chunk_records : PIO_CHUNK_DEFAULT;
	int rank = rowlen ? 2 : 1;
	hid_t sp, dcpl, d = H5I_INVALID_HID;

	/* HDF5 chunks must stay under 4 GiB. */
	if (recsize && c > ((uint64_t)1 << 31) / recsize)
		c = ((uint64_t)1 << 31) / recsize;
	if ((!o->chunk_records || o->chunk_default) && c > slice_records(w))
		c = slice_records(w);
	if (c == 0)
		c = 1;
	w->chunk = c;
	chunk[0] = c;
	chunk[1] = rowlen;
	if (make_parents(w->file, path))
		return H5I_INVALID_HID;
	sp = H5Screate_simple(rank, dims, maxd);
	dcpl = H5Pcreate(H5P_DATASET_CREATE);
	if (sp >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0 &&
	    H5Pset_obj_track_times(dcpl, 0) >= 0 && (!o->shuffle || H5Pset_shuffle(dcpl) >= 0) &&
	    (o->gzip <= 0 || H5Pset_deflate(dcpl, (unsigned)o->gzip) >= 0))
		d = H5Dcreate2(w->file, path, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
	if (dcpl >= 0)
		H5Pclose(dcpl);
	if (sp >= 0)
		H5Sclose(sp);
	return d;
}

static void writer_free(struct pio_writer *w)
{
	if (w->dk >= 0)
		H5Dclose(w->dk);
	if (w->dv >= 0)
		H5Dclose(w->dv);
	if (w->memk >= 0)
		H5Tclose(w->memk);
	if (w->memv >= 0)
		H5Tclose(w->memv);
	if (w->memrec >= 0)
		H5Tclose(w->memrec);
	if (w->file >= 0)
		H5Fclose(w->file);
	free(w->final);
	free(w->tmp);
	free(w->kpath);
	free(w->vpath);
	free(w->kname);
	free(w->vname);
	free(w->kbuf);
	free(w->vbuf);
	free(w->sarena);
	free(w);
}

static int setup_compound(struct pio_writer *w, const struct pio_writer_opts *o,
			  struct pio_err *err)
{
	hid_t fk, fv, fc = H5I_INVALID_HID;
	size_t fks, fvs;
	int rc = 0;

	fk = pio_filetype(&w->kt);
	fv = pio_filetype(&w->vt);
	if (fk < 0 || fv < 0) {
		rc = pio_seterr(err, PIO_EINVAL, w->final, w->kpath, "cannot build the types");
		goto out;
	}
	w->voff = (w->ksize + 7) & ~(size_t)7;
	w->kstride = (w->voff + w->vsize + 7) & ~(size_t)7;
	w->memrec = H5Tcreate(H5T_COMPOUND, w->kstride);
	fks = H5Tget_size(fk);
	fvs = H5Tget_size(fv);
	/* The file record is packed, as numpy's (and so h5py's) compound dtypes are. */
	fc = H5Tcreate(H5T_COMPOUND, fks + fvs);
	if (w->memrec < 0 || fc < 0 || H5Tinsert(w->memrec, w->kname, 0, w->memk) < 0 ||
	    H5Tinsert(w->memrec, w->vname, w->voff, w->memv) < 0 ||
	    H5Tinsert(fc, w->kname, 0, fk) < 0 || H5Tinsert(fc, w->vname, fks, fv) < 0) {
		rc = pio_seterr(err, PIO_EINVAL, w->final, w->kpath,
				"cannot build the compound type (fields '%s', '%s')", w->kname,
				w->vname);
		goto out;
	}
	w->dk = create_dataset(w, w->kpath, fc, 0, fks + fvs, o);
	if (w->dk < 0)
		rc = pio_seterr(err, PIO_EWRITE, w->final, w->kpath, "cannot create the dataset");
out:
	if (fk >= 0)
		H5Tclose(fk);
	if (fv >= 0)
		H5Tclose(fv);
	if (fc >= 0)
		H5Tclose(fc);
	return rc;
}

static int setup_pair_part(struct pio_writer *w, const struct pio_type *t, const char *path,
			   const struct pio_writer_opts *o, size_t *row, hid_t *d,
			   struct pio_err *err)
{
	hid_t ft;

	*row = t->cls == PIO_V_OPAQUE && t->u8rows ? t->width : 0;
	ft = *row ? H5Tcopy(t->u8signed ? H5T_STD_I8LE : H5T_STD_U8LE) : pio_filetype(t);
	if (ft < 0)
		return pio_seterr(err, PIO_EINVAL, w->final, path, "cannot build the type");
	*d = create_dataset(w, path, ft, *row, H5Tget_size(ft) * (*row ? *row : 1), o);
	H5Tclose(ft);
	if (*d < 0)
		return pio_seterr(err, PIO_EWRITE, w->final, path, "cannot create the dataset");
	return 0;
}

int pio_writer_open(const struct pio_writer_opts *opts, const struct pio_type *key_type,
		    const struct pio_type *value_type, struct pio_writer **out, struct pio_err *err)
{
	const struct pio_writer_opts *o = opts;
	struct pio_writer *w;
	char name[96];
	struct stat st;
	size_t len;
	hid_t fcpl;
	int rc, i;

	pio_silence_hdf5();
	if (!o || !o->file || !o->file[0] || !key_type || !value_type || !out)
		return pio_seterr(err, PIO_EINVAL, "pio", NULL, "writer: missing argument");
	if (o->gzip < 0 || o->gzip > 9)
		return pio_seterr(err, PIO_EINVAL, o->file, NULL, "gzip level %d is not in 0..9",
				  o->gzip);
	if (!stat(o->file, &st) && !S_ISREG(st.st_mode)) /* renamed over: /dev/null would go */
		return pio_seterr(err, PIO_EWRITE, o->file, NULL,
				  "exists and is not a regular file (a directory, device, FIFO or "
				  "socket is not replaced)");
	if (!type_ok(key_type) || key_type->cls == PIO_V_FLOAT)
		return pio_seterr(err, PIO_EVALUE, o->file, NULL, "cannot write keys of type %s",
				  pio_type_name(key_type, name, sizeof(name)));
	if (!type_ok(value_type))
		return pio_seterr(err, PIO_EVALUE, o->file, NULL, "cannot write values of type %s",
				  pio_type_name(value_type, name, sizeof(name)));
	w = calloc(1, sizeof(*w));
	if (!w)
		return pio_seterr(err, PIO_ENOMEM, o->file, NULL, "out of memory");
	w->file = w->dk = w->dv = w->memk = w->memv = w->memrec = H5I_INVALID_HID;
	w->layout = o->layout;
	w->kt = *key_type;
	w->vt = *value_type;
	len = strlen(o->file) + 48;
	w->final = dupstr(o->file);
	w->tmp = malloc(len);
	if (o->layout == PIO_LAYOUT_COMPOUND) {
		w->kpath = dupstr(o->dataset ? o->dataset : "/data");
	} else {
		w->kpath = dupstr(o->keys ? o->keys : "/keys");
		w->vpath = dupstr(o->values ? o->values : "/values");
	}
	w->kname = dupstr(o->key_field ? o->key_field : "key");
	w->vname = dupstr(o->value_field ? o->value_field : "value");
	if (!w->final || !w->tmp || !w->kpath || !w->kname || !w->vname ||
	    (o->layout != PIO_LAYOUT_COMPOUND && !w->vpath)) {
		rc = pio_seterr(err, PIO_ENOMEM, o->file, NULL, "out of memory");
		goto out_free;
	}
	/* a new file (EXCL), never one found at the name: a link planted there in a shared
	 * directory would have its target truncated, another output's temporary file lost */
	for (i = 0; i < 100; i++) {
		struct stat ls;

		pio_tmp_name(w->tmp, len, o->file, false, (long)getpid(), i);
		if (lstat(w->tmp, &ls))
			break;
	}
	w->memk = mem_type(&w->kt, o->layout == PIO_LAYOUT_PAIR, &w->ksize);
	w->memv = mem_type(&w->vt, o->layout == PIO_LAYOUT_PAIR, &w->vsize);
	if (w->memk < 0 || w->memv < 0) {
		rc = pio_seterr(err, PIO_EINVAL, o->file, NULL, "cannot build the types");
		goto out_free;
	}
	fcpl = H5Pcreate(H5P_FILE_CREATE);
	if (fcpl >= 0)
		H5Pset_obj_track_times(fcpl, 0);
	w->file = H5Fcreate(w->tmp, H5F_ACC_EXCL, fcpl >= 0 ? fcpl : H5P_DEFAULT, H5P_DEFAULT);
	if (fcpl >= 0)
		H5Pclose(fcpl);
	if (w->file < 0) {
		rc = pio_seterr(err, PIO_EWRITE, o->file, NULL,
				"cannot create the temporary file %s: %s", w->tmp, strerror(errno));
		goto out_free;
	}
	if (o->layout == PIO_LAYOUT_COMPOUND) {
		rc = setup_compound(w, o, err);
	} else {
		rc = setup_pair_part(w, &w->kt, w->kpath, o, &w->krow, &w->dk, err);
		if (!rc)
			rc = setup_pair_part(w, &w->vt, w->vpath, o, &w->vrow, &w->dv, err);
		w->kstride = w->ksize;
		w->vstride = w->vsize;
	}
	if (rc)
		goto out_remove;
	w->slice = slice_records(w); /* 7 records of 100 KiB strings asked for 52 GB */
	if (w->chunk && w->slice >= w->chunk)
		w->slice -= w->slice % w->chunk; /* whole chunks */
	w->kbuf = malloc(w->slice * w->kstride);
	w->vbuf = w->vstride ? malloc(w->slice * w->vstride) : NULL;
	if (!w->kbuf || (w->vstride && !w->vbuf)) {
		rc = pio_seterr(err, PIO_ENOMEM, o->file, NULL, "out of memory");
		goto out_remove;
	}
	*out = w;
	return 0;

out_remove:
	pio_writer_abort(w);
	return rc;
out_free:
	writer_free(w);
	return rc;
}

/* Bytes of heap entry word of a string/opaque value, or NULL if it lies outside the heap. */
static const uint8_t *heap_entry(const uint8_t *heap, size_t heap_len, uint64_t word, size_t *len)
{
	uint32_t l;

	if (!heap || word > heap_len || heap_len - word < 4)
		return NULL;
	l = (uint32_t)heap[word] | (uint32_t)heap[word + 1] << 8 | (uint32_t)heap[word + 2] << 16 |
	    (uint32_t)heap[word + 3] << 24;
	if (heap_len - word - 4 < l)
		return NULL;
	*len = l;
	return heap + word + 4;
}

/* Stores an integer v (sign-extended or zero-extended word) in width bytes at dst; refuses a
 * value that does not fit. */
static bool put_int(const struct pio_type *t, uint64_t v, uint8_t *dst)
{
	unsigned w = t->width;

	if (w < 8) {
		if (t->cls == PIO_V_INT) {
			int64_t s = (int64_t)v, lim = (int64_t)1 << (8 * w - 1);

			if (s < -lim || s >= lim)
				return false;
		} else if (v >> (8 * w)) {
			return false;
		}
	}
	switch (w) {
	case 1: {
		uint8_t x = (uint8_t)v;

		memcpy(dst, &x, 1);
		break;
	}
	case 2: {
		uint16_t x = (uint16_t)v;

		memcpy(dst, &x, 2);
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)v;

		memcpy(dst, &x, 4);
		break;
	}
	default:
		memcpy(dst, &v, 8);
	}
	return true;
}

/* Stores bytes p[0..len) as a string/opaque field of type t at dst. Strings of variable
 * length are copied NUL-terminated to *sa. Returns NULL or why the bytes do not fit. */
static const char *put_bytes(const struct pio_type *t, const uint8_t *p, size_t len, uint8_t *dst,
			     char **sa)
{
	if (t->cls == PIO_V_OPAQUE) {
		if (len != t->width)
			return "wrong length for the fixed size";
		memcpy(dst, p, len);
		return NULL;
	}
	if (t->vlen) {
		char *s = *sa;

		if (len && memchr(p, 0, len))
			return "NUL byte in a variable-length string";
		if (len)
			memcpy(s, p, len);
		s[len] = 0;
		memcpy(dst, &s, sizeof(s));
		*sa = s + len + 1;
		return NULL;
	}
	if (len > t->width)
		return "longer than the fixed string length";
	/* Only strings that read back identically under the padding rule are written. */
	if (t->pad == PIO_PAD_NULLTERM && len && memchr(p, 0, len))
		return "NUL byte in a NUL-terminated string";
	if (t->pad == PIO_PAD_NULLPAD && len && p[len - 1] == 0)
		return "trailing NUL byte in a NUL-padded string";
	if (t->pad == PIO_PAD_SPACEPAD && len && p[len - 1] == ' ')
		return "trailing space in a space-padded string";
	if (len)
		memcpy(dst, p, len);
	memset(dst + len, t->pad == PIO_PAD_SPACEPAD ? ' ' : 0, t->width - len);
	return NULL;
}

static const char *put_key(const struct pio_type *t, const uint8_t *k, size_t len, uint8_t *dst,
			   char **sa)
{
	uint64_t v = 0;

	if (t->cls != PIO_V_INT && t->cls != PIO_V_UINT)
		return put_bytes(t, k, len, dst, sa);
	if (len != t->width)
		return "integer key of the wrong length";
	for (size_t i = 0; i < len; i++)
		v = v << 8 | k[i];
	if (t->cls == PIO_V_INT) {
		unsigned bits = 8 * t->width;

		v ^= (uint64_t)1 << (bits - 1);
		if (bits < 64 && (v >> (bits - 1)) & 1)
			v |= ~(uint64_t)0 << bits; /* sign-extend */
	}
	put_int(t, v, dst);
	return NULL;
}

static const char *put_value(const struct pio_type *t, uint64_t word, const uint8_t *heap,
			     size_t heap_len, uint8_t *dst, char **sa)
{
	const uint8_t *p;
	size_t len;

	switch (t->cls) {
	case PIO_V_INT:
	case PIO_V_UINT:
		return put_int(t, word, dst) ? NULL : "integer out of range for the type";
	case PIO_V_FLOAT: {
		double d;

		memcpy(&d, &word, 8);
		if (t->width == 8) {
			memcpy(dst, &d, 8);
		} else {
			float f = (float)d;

			memcpy(dst, &f, 4);
		}
		return NULL;
	}
	default:
		p = heap_entry(heap, heap_len, word, &len);
		if (!p)
			return "value word outside the value heap";
		return put_bytes(t, p, len, dst, sa);
	}
}

static int write_part(hid_t d, hid_t mem, uint64_t pos, size_t n, size_t row, const void *buf)
{
	hsize_t size[2] = {pos + n, row}, start[2] = {pos, 0}, count[2] = {n, row};
	int rank = row ? 2 : 1;
	hid_t fs, ms, saved;
	herr_t st = -1;

	if (H5Dset_extent(d, size) < 0)
		return -1;
	fs = H5Dget_space(d);
	if (fs < 0)
		return -1;
	ms = H5Screate_simple(rank, count, NULL);
	if (ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
		st = H5Dwrite(d, mem, ms, fs, H5P_DEFAULT, buf);
	/* Keep the error stack of a failed write: the closes below would clear it. */
	saved = st < 0 ? H5Eget_current_stack() : H5I_INVALID_HID;
	if (ms >= 0)
		H5Sclose(ms);
	H5Sclose(fs);
	if (saved >= 0)
		H5Eset_current_stack(saved);
	return st < 0 ? -1 : 0;
}

static int write_slice(struct pio_writer *w, size_t n, const uint8_t *keys, const size_t *key_off,
		       const uint64_t *vals, const uint8_t *heap, size_t heap_len, uint64_t first,
		       struct pio_err *err)
{
	size_t need = 0;
	char *sa;

	/* Room for NUL-terminated copies of variable-length strings. */
	if (w->kt.cls == PIO_V_STRING && w->kt.vlen)
		need += key_off[n] - key_off[0] + n;
	if (w->vt.cls == PIO_V_STRING && w->vt.vlen)
		for (size_t i = 0; i < n; i++) {
			size_t len;

			if (heap_entry(heap, heap_len, vals[i], &len))
				need += len + 1;
		}
	if (need > w->sarena_cap) {
		char *p = realloc(w->sarena, need);

		if (!p)
			return pio_seterr(err, PIO_ENOMEM, w->final, w->kpath, "out of memory");
		w->sarena = p;
		w->sarena_cap = need;
	}
	sa = w->sarena;
	for (size_t i = 0; i < n; i++) {
		uint8_t *kd = w->kbuf + i * w->kstride;
		uint8_t *vd =
		    w->layout == PIO_LAYOUT_COMPOUND ? kd + w->voff : w->vbuf + i * w->vstride;
		const char *why;

		why = put_key(&w->kt, keys + key_off[i], key_off[i + 1] - key_off[i], kd, &sa);
		if (why)
			return pio_seterr(err, PIO_EVALUE, w->final, w->kpath,
					  "record %llu: key of %zu bytes: %s",
					  (unsigned long long)(first + i),
					  key_off[i + 1] - key_off[i], why);
		why = put_value(&w->vt, vals[i], heap, heap_len, vd, &sa);
		if (why)
			return pio_seterr(err, PIO_EVALUE, w->final, w->vpath ? w->vpath : w->kpath,
					  "record %llu: value: %s", (unsigned long long)(first + i),
					  why);
	}
	if (w->layout == PIO_LAYOUT_COMPOUND) {
		if (write_part(w->dk, w->memrec, first, n, 0, w->kbuf))
			return pio_seterr(err, PIO_EWRITE, w->final, w->kpath,
					  "cannot write records");
		return 0;
	}
	if (write_part(w->dk, w->memk, first, n, w->krow, w->kbuf))
		return pio_seterr(err, PIO_EWRITE, w->final, w->kpath, "cannot write keys");
	if (write_part(w->dv, w->memv, first, n, w->vrow, w->vbuf))
		return pio_seterr(err, PIO_EWRITE, w->final, w->vpath, "cannot write values");
	return 0;
}

int pio_writer_append(struct pio_writer *w, size_t n, const uint8_t *keys, const size_t *key_off,
		      const uint64_t *vals, const uint8_t *heap, size_t heap_len,
		      struct pio_err *err)
{
	pio_silence_hdf5();
	if (!w || (n && (!key_off || !vals)))
		return pio_seterr(err, PIO_EINVAL, "pio", NULL, "writer: missing argument");
	for (size_t done = 0; done < n;) {
		size_t m = n - done < w->slice ? n - done : w->slice;
		int rc =
		    write_slice(w, m, keys, key_off + done, vals + done, heap, heap_len, w->n, err);

		if (rc)
			return rc;
		w->n += m;
		done += m;
	}
	return 0;
}

int pio_writer_append_batch(struct pio_writer *w, const struct pio_batch *b, struct pio_err *err)
{
	if (!b)
		return pio_seterr(err, PIO_EINVAL, "pio", NULL, "writer: NULL batch");
	return pio_writer_append(w, b->n, b->keys, b->key_off, b->vals, b->heap, b->heap_len, err);
}

static int sync_file(const char *path)
{
	int fd = open(path, O_RDONLY);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

int pio_writer_commit(struct pio_writer *w, struct pio_err *err)
{
	struct stat st;
	bool ok = true;
	int rc = 0;

	pio_silence_hdf5();
	if (!w)
		return pio_seterr(err, PIO_EINVAL, "pio", NULL, "writer: NULL");
	if (w->dk >= 0 && H5Dclose(w->dk) < 0)
		ok = false;
	w->dk = H5I_INVALID_HID;
	if (w->dv >= 0 && H5Dclose(w->dv) < 0)
		ok = false;
	w->dv = H5I_INVALID_HID;
	if (w->file >= 0 && H5Fclose(w->file) < 0)
		ok = false;
	w->file = H5I_INVALID_HID;
	if (!ok)
		rc = pio_seterr(err, PIO_EWRITE, w->final, NULL,
				"cannot write the file (disk full or I/O error)");
	else if (!stat(w->final, &st) && S_ISREG(st.st_mode) && chmod(w->tmp, st.st_mode & 0777))
		/* a file replaced keeps its permissions (a private file stays private) */
		rc = pio_seterr(err, PIO_EWRITE, w->final, NULL, "cannot set the mode of %s: %s",
				w->tmp, strerror(errno));
	else if (sync_file(w->tmp) != 0)
		rc = pio_seterr(err, PIO_EWRITE, w->final, NULL, "cannot flush %s: %s", w->tmp,
				strerror(errno));
	else if (rename(w->tmp, w->final) != 0)
		rc = pio_seterr(err, PIO_EWRITE, w->final, NULL, "cannot rename %s to it: %s",
				w->tmp, strerror(errno));
	if (rc)
		unlink(w->tmp);
	writer_free(w);
	return rc;
}

void pio_writer_abort(struct pio_writer *w)
{
	if (!w)
		return;
	pio_silence_hdf5();
	if (w->dk >= 0)
		H5Dclose(w->dk);
	w->dk = H5I_INVALID_HID;
	if (w->dv >= 0)
		H5Dclose(w->dv);
	w->dv = H5I_INVALID_HID;
	if (w->file >= 0) {
		H5Fclose(w->file);
		w->file = H5I_INVALID_HID;
	}
	unlink(w->tmp);
	writer_free(w);
}
