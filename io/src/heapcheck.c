/*
 * heapcheck.c - checking the heap references of variable-length strings before HDF5 follows
 * them.
 *
 * A dataset stores a variable-length string as a reference into the file's global heap:
 *
 *   +-----------+---------------------------+-----------+
 *   | length: 4 | collection address: sa    | index: 4  |   sa: the file's size of addresses
 *   +-----------+---------------------------+-----------+
 *
 * and the string's bytes are object <index> of the heap collection at that address:
 *
 *   collection: "GCOL" | version 1 | 3 reserved | size: ss | objects ... | free space
 *   object:     index: 2 | references: 2 | reserved: 4 | size: ss | data, padded to 8
 *
 * HDF5 1.10 follows a reference without checking it against the collection: an index that
 * names no object makes it copy from memory that is not the file's (wrong strings with no
 * error) or crash, and an object longer than the length overruns the string's buffer; a
 * damaged object size can make its parse of the collection loop forever. So, before a batch
 * of strings is read, the batch's references are read raw (a conversion registered with HDF5,
 * from a variable-length string to an opaque type tagged VLREF_TAG, hands them over as stored)
 * and each is checked against its collection, parsed here from the file: signature, version,
 * size within the file, every object within the collection, no index twice, the object present
 * and of the reference's length. Parsed collections are kept in a small cache: the strings of
 * consecutive records lie in consecutive collections.
 *
 * Holding the collections, the reader also takes the strings from them (pio_vlcheck_strings)
 * instead of through HDF5's conversion, which looks each string's collection up in its
 * metadata cache: a read of strings takes about a third of the time. A collection of up to
 * KEEP bytes is kept whole; the strings of a larger one (a string of more than ~256 KiB) are
 * read one by one.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* le64toh */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pio_internal.h"

#define VLREF_TAG "pathmap-ingest variable-length reference"
#define HC_SLOTS 64		     /* collections kept parsed */
#define HC_ABSENT UINT64_MAX	     /* no object of that index */
#define WINDOW ((uint64_t)1 << 16)   /* bytes of the file read ahead */
#define KEEP ((uint64_t)1 << 18)     /* larger collections are not kept: read string by string */
#define GCOL_MAX ((uint64_t)1 << 32) /* larger collections are refused (HDF5 makes ~4 KiB) */

struct gobj {
	uint64_t size; /* bytes of the object, HC_ABSENT where there is none */
	uint64_t at;   /* offset of its bytes in the collection */
};

struct gcol {
	uint64_t addr;	  /* its address (0: the slot is empty) */
	uint64_t off;	  /* its offset in the file */
	uint32_t nidx;	  /* entries of obj in use */
	uint32_t cap;	  /* entries of obj */
	struct gobj *obj; /* its objects by index */
	uint8_t *bytes;	  /* a copy of it, where kept (the slot's buffer, reused) */
	size_t bcap;	  /* bytes of bytes */
	bool kept;	  /* bytes holds it (KEEP bytes at most); else its strings are read one by
			     one: bytes may hold an earlier collection of the slot */
};

struct pio_vlcheck {
	int fd;			    /* the file, read with pread */
	char *file;		    /* its path, for messages (owned) */
	uint64_t base;		    /* file offset of address 0 (the user block's size) */
	uint64_t eof;		    /* the file's size in bytes */
	unsigned sa, ss;	    /* the file's sizes of addresses and of lengths */
	struct gcol slot[HC_SLOTS]; /* parsed collections, by hash of their address */
	struct gcol *last;	    /* the collection of the last reference checked, or NULL */
	uint8_t *buf;		    /* the file's bytes [woff, woff + wlen) */
	uint64_t woff, wlen;	    /* the window of the file that buf holds */
	size_t cap;		    /* bytes of buf */
};

/* ---- the raw conversion ---- */

/* Hands the references over unchanged: the stored form is the result. */
static herr_t conv_vlref(hid_t src, hid_t dst, H5T_cdata_t *cdata, size_t nelmts, size_t buf_stride,
			 size_t bkg_stride, void *buf, void *bkg, hid_t dxpl)
{
	char *tag;
	bool ours;

	(void)nelmts, (void)buf_stride, (void)bkg_stride, (void)buf, (void)bkg, (void)dxpl;
	if (cdata->command != H5T_CONV_INIT)
		return 0; /* H5T_CONV_CONV: same size, in place; H5T_CONV_FREE: nothing */
	if (H5Tget_class(dst) != H5T_OPAQUE || H5Tis_variable_str(src) <= 0 ||
	    H5Tget_size(src) != H5Tget_size(dst))
		return -1;
	tag = H5Tget_tag(dst);
	ours = tag && !strcmp(tag, VLREF_TAG);
	if (tag)
		H5free_memory(tag);
	if (!ours)
		return -1; /* HDF5 then tries its other conversions */
	cdata->need_bkg = H5T_BKG_NO;
	return 0;
}

static void register_once(void)
{
	hid_t s = H5Tcopy(H5T_C_S1), o = H5Tcreate(H5T_OPAQUE, 16);

	if (s >= 0 && o >= 0 && H5Tset_size(s, H5T_VARIABLE) >= 0 && H5Tset_tag(o, VLREF_TAG) >= 0)
		(void)H5Tregister(H5T_PERS_SOFT, "pio_vlref", s, o, conv_vlref);
	if (s >= 0)
		H5Tclose(s);
	if (o >= 0)
		H5Tclose(o);
	H5Eclear2(H5E_DEFAULT);
}

size_t pio_vlcheck_refsize(const struct pio_vlcheck *c)
{
	return 4 + (size_t)c->sa + 4;
}

hid_t pio_vlcheck_type(const struct pio_vlcheck *c, const char *m1, const char *m2)
{
	size_t rs = pio_vlcheck_refsize(c);
	hid_t o, t;

	o = H5Tcreate(H5T_OPAQUE, rs);
	if (o >= 0 && H5Tset_tag(o, VLREF_TAG) < 0) {
		H5Tclose(o);
		o = H5I_INVALID_HID;
	}
	if (o < 0 || (!m1 && !m2))
		return o;
	t = H5Tcreate(H5T_COMPOUND, (m1 && m2 ? 2 : 1) * rs);
	if (t >= 0 &&
	    ((m1 && H5Tinsert(t, m1, 0, o) < 0) || (m2 && H5Tinsert(t, m2, m1 ? rs : 0, o) < 0))) {
		H5Tclose(t);
		t = H5I_INVALID_HID;
	}
	H5Tclose(o);
	return t;
}

/* ---- open and close ---- */

int pio_vlcheck_open(hid_t f, const char *file, struct pio_vlcheck **out, struct pio_err *err)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	hsize_t ub = 0;
	size_t sa = 0, ss = 0;
	hid_t fcpl;
	int fd;

	pthread_once(&once, register_once);
	fcpl = H5Fget_create_plist(f);
	if (fcpl < 0 || H5Pget_sizes(fcpl, &sa, &ss) < 0 || H5Pget_userblock(fcpl, &ub) < 0) {
		if (fcpl >= 0)
			H5Pclose(fcpl);
		return pio_seterr(err, PIO_ECORRUPT, file, NULL,
				  "cannot read the file's creation properties");
	}
	H5Pclose(fcpl);
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pio_seterr(err, PIO_ENOENT, file, NULL, "cannot open: %s", strerror(errno));
	return pio_vlcheck_open_fd(fd, file, ub, sa, ss, out, err);
}

int pio_vlcheck_open_fd(int fd, const char *file, uint64_t base, size_t sa, size_t ss,
			struct pio_vlcheck **out, struct pio_err *err)
{
	struct pio_vlcheck *c;
	struct stat st;

	if (sa < 2 || sa > 8 || ss < 2 || ss > 8) {
		close(fd);
		return pio_seterr(err, PIO_ECORRUPT, file, NULL,
				  "addresses of %zu bytes and lengths of %zu bytes are not "
				  "supported",
				  sa, ss);
	}
	if (fstat(fd, &st) != 0) {
		int e = errno;

		close(fd);
		return pio_seterr(err, PIO_ENOENT, file, NULL, "cannot open: %s", strerror(e));
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->file = strdup(file))) {
		free(c);
		close(fd);
		return pio_seterr(err, PIO_ENOMEM, file, NULL, "out of memory");
	}
	c->fd = fd;
	c->eof = (uint64_t)st.st_size;
	c->base = base;
	c->sa = (unsigned)sa;
	c->ss = (unsigned)ss;
	*out = c;
	return 0;
}

void pio_vlcheck_close(struct pio_vlcheck *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	for (int i = 0; i < HC_SLOTS; i++) {
		free(c->slot[i].obj);
		free(c->slot[i].bytes);
	}
	free(c->buf);
	free(c->file);
	free(c);
}

/* ---- collections ---- */

static uint64_t load_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	if (n == 8) { /* the usual size of addresses and lengths */
		memcpy(&v, p, 8);
		return le64toh(v);
	}
	for (unsigned i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static uint64_t align8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

/* pio_grow_buf for a size read from the file. */
static int grow(uint8_t **buf, size_t *cap, uint64_t need)
{
	return need > SIZE_MAX ? PIO_ENOMEM : pio_grow_buf(buf, cap, (size_t)need);
}

/* Points *out to bytes [off, off+len) of the file (within its size), read ahead in a window
 * of WINDOW bytes: the collections a batch's strings lie in mostly follow one another.
 * PIO_EREAD (why says what failed) or PIO_ENOMEM. */
static int file_bytes(struct pio_vlcheck *c, uint64_t off, uint64_t len, const uint8_t **out,
		      char *why, size_t whysize)
{
	uint64_t want = len > WINDOW ? len : WINDOW;
	ssize_t got;

	if (off >= c->woff && off - c->woff <= c->wlen && len <= c->wlen - (off - c->woff)) {
		*out = c->buf + (off - c->woff);
		return 0;
	}
	if (want > c->eof - off)
		want = c->eof - off;
	if (grow(&c->buf, &c->cap, want))
		return PIO_ENOMEM;
	c->wlen = 0;
	got = pread(c->fd, c->buf, want, (off_t)off);
	if (got < 0 || (uint64_t)got < len) {
		snprintf(why, whysize, "cannot be read (%s)", got < 0 ? strerror(errno) : "short");
		return PIO_EREAD;
	}
	c->woff = off;
	c->wlen = (uint64_t)got;
	*out = c->buf;
	return 0;
}

/*
 * Parses the collection at addr into g, walking its objects as HDF5 does: PIO_EREAD with
 * what is wrong with it in why, or PIO_ENOMEM.
 */
static int parse_gcol(struct pio_vlcheck *c, uint64_t addr, struct gcol *g, char *why,
		      size_t whysize)
{
	uint64_t off, size, hdr = align8(8 + c->ss), ohdr = align8(8 + c->ss), p;
	const uint8_t *head, *col;
	uint32_t maxidx = 0;
	int rc;

	g->addr = 0;
	g->kept = false;
	if (addr > UINT64_MAX - c->base || (off = c->base + addr) > c->eof || c->eof - off < hdr) {
		snprintf(why, whysize, "lies past the end of the file (%llu bytes)",
			 (unsigned long long)c->eof);
		return PIO_EREAD;
	}
	if ((rc = file_bytes(c, off, 8 + c->ss, &head, why, whysize)))
		return rc;
	if (memcmp(head, "GCOL", 4) || head[4] != 1) {
		snprintf(why, whysize, "is not a heap collection (no GCOL signature of version 1)");
		return PIO_EREAD;
	}
	size = load_le(head + 8, c->ss);
	if (size < hdr || size > GCOL_MAX || size > c->eof - off) {
		snprintf(why, whysize, "has a size (%llu bytes) that does not fit the file",
			 (unsigned long long)size);
		return PIO_EREAD;
	}
	if ((rc = file_bytes(c, off, size, &col, why, whysize)))
		return rc;
	/* First pass: bounds and the largest index; second: the sizes. */
	for (int pass = 0; pass < 2; pass++) {
		for (p = hdr; p < size;) {
			const uint8_t *o = col + p;
			uint32_t idx;
			uint64_t osize, need;

			if (size - p < ohdr)
				break; /* a tail too small for an object: free space */
			idx = (uint32_t)load_le(o, 2);
			osize = load_le(o + 8, c->ss);
			need = idx ? (osize > size ? size : ohdr + align8(osize)) : osize;
			if (need < ohdr || need > size - p) {
				snprintf(why, whysize,
					 "has an object (number %u, at byte %llu) of %llu bytes "
					 "that does not fit in it",
					 idx, (unsigned long long)p, (unsigned long long)osize);
				return PIO_EREAD;
			}
			if (pass == 0 && idx > maxidx)
				maxidx = idx;
			if (pass == 1 && idx) {
				if (g->obj[idx].size != HC_ABSENT) {
					snprintf(why, whysize, "has two objects numbered %u", idx);
					return PIO_EREAD;
				}
				g->obj[idx].size = osize;
				g->obj[idx].at = p + ohdr;
			}
			p += need;
		}
		if (pass == 0) {
			if (maxidx + 1 > g->cap) {
				struct gobj *o = realloc(g->obj, (maxidx + 1) * sizeof(*o));

				if (!o)
					return PIO_ENOMEM;
				g->obj = o;
				g->cap = maxidx + 1;
			}
			g->nidx = maxidx + 1;
			for (uint32_t i = 0; i < g->nidx; i++)
				g->obj[i].size = HC_ABSENT;
		}
	}
	if (size <= KEEP) { /* kept for the strings' bytes (pio_vlcheck_strings) */
		if (grow(&g->bytes, &g->bcap, size))
			return PIO_ENOMEM;
		memcpy(g->bytes, col, size);
		g->kept = true;
	}
	g->off = off;
	g->addr = addr;
	return 0;
}

static struct gcol *find_gcol(struct pio_vlcheck *c, uint64_t addr, int *rc, char *why,
			      size_t whysize)
{
	struct gcol *g = &c->slot[(addr * 0x9e3779b97f4a7c15ull) >> 58]; /* 64 slots */

	if (g->addr != addr) {
		*rc = parse_gcol(c, addr, g, why, whysize);
		if (*rc)
			return NULL;
	}
	c->last = g;
	return g;
}

/* Where the check puts the strings (pio_vlcheck_strings), or NULL to check only. */
struct strings_out {
	uint8_t *out;	   /* record i's char * of field f at out + i*stride + off[f] */
	size_t stride;	   /* bytes from a record to the next */
	const size_t *off; /* offsets of the fields' pointers in a record */
	void *(*alloc)(size_t, void *); /* memory for a string */
	void *arg;			/* alloc's argument */
};

/* Record by record, both fields: their strings mostly share a collection. */
static int check(struct pio_vlcheck *c, const uint8_t *refs, size_t n, size_t stride,
		 uint64_t first, const char *dset, const char *const what[2],
		 const struct strings_out *so, struct pio_err *err)
{
	size_t rs = pio_vlcheck_refsize(c), nf = what[1] ? 2 : 1;
	char why[200];

	for (size_t i = 0; i < n; i++) {
		for (size_t f = 0; f < nf; f++) {
			const uint8_t *r = refs + i * stride + f * rs;
			uint64_t len = load_le(r, 4), addr = load_le(r + 4, c->sa);
			uint32_t idx = (uint32_t)load_le(r + 4 + c->sa, 4);
			unsigned long long rec = (unsigned long long)(first + i);
			const char *field = what[f];
			struct gcol *g;
			char *str = NULL;
			int rc = 0;

			if (addr == 0) /* no string (HDF5 gives NULL): not in the heap */
				goto out;
			g = c->last && c->last->addr == addr
				? c->last
				: find_gcol(c, addr, &rc, why, sizeof(why));
			if (!g && rc == PIO_ENOMEM)
				return pio_seterr(
				    err, rc, c->file, dset,
				    "out of memory for the heap collection at address %llu",
				    (unsigned long long)addr);
			if (!g)
				return pio_seterr(
				    err, rc, c->file, dset,
				    "record %llu: the %s is a variable-length string whose "
				    "heap collection (at address %llu) %s: the file is damaged",
				    rec, field, (unsigned long long)addr, why);
			if (idx == 0 || idx >= g->nidx || g->obj[idx].size == HC_ABSENT)
				return pio_seterr(
				    err, PIO_EREAD, c->file, dset,
				    "record %llu: the %s is a variable-length string stored "
				    "as object %u of the heap collection at address %llu, "
				    "which holds no such object: the file is damaged (HDF5 "
				    "would read memory that is not the file's)",
				    rec, field, idx, (unsigned long long)addr);
			if (g->obj[idx].size != len)
				return pio_seterr(
				    err, PIO_EREAD, c->file, dset,
				    "record %llu: the %s is a variable-length string of %llu "
				    "bytes stored as object %u of the heap collection at "
				    "address %llu, which holds %llu bytes: the file is damaged",
				    rec, field, (unsigned long long)len, idx,
				    (unsigned long long)addr, (unsigned long long)g->obj[idx].size);
			if (!so)
				continue;
			/* As HDF5 makes it: the bytes, then a NUL (len < 2^32: no overflow). */
			str = so->alloc(len + 1, so->arg);
			if (!str)
				return pio_seterr(err, PIO_ENOMEM, c->file, dset,
						  "out of memory for the strings of records %llu..",
						  (unsigned long long)first);
			if (g->kept)
				memcpy(str, g->bytes + g->obj[idx].at, len);
			else if (len && pread(c->fd, str, len, (off_t)(g->off + g->obj[idx].at)) !=
					    (ssize_t)len)
				return pio_seterr(
				    err, PIO_EREAD, c->file, dset,
				    "record %llu: the %s's string cannot be read (%s)", rec, field,
				    strerror(errno));
			str[len] = 0;
		out:
			if (so)
				memcpy(so->out + i * so->stride + so->off[f], &str, sizeof(str));
		}
	}
	return 0;
}

int pio_vlcheck_refs(struct pio_vlcheck *c, const uint8_t *refs, size_t n, size_t stride,
		     uint64_t first, const char *dset, const char *const what[2],
		     struct pio_err *err)
{
	return check(c, refs, n, stride, first, dset, what, NULL, err);
}

int pio_vlcheck_strings(struct pio_vlcheck *c, const uint8_t *refs, size_t n, size_t rstride,
			uint64_t first, const char *dset, const char *const what[2], uint8_t *out,
			size_t stride, const size_t off[2], void *(*alloc)(size_t, void *),
			void *arg, struct pio_err *err)
{
	struct strings_out so = {out, stride, off, alloc, arg};

	return check(c, refs, n, rstride, first, dset, what, &so, err);
}
