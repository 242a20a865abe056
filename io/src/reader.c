/*
 * reader.c - opening a job of HDF5 inputs and reading it in chunk-aligned batches.
 *
 * Every input is opened once by pio_reader_open() to check it and learn its types, then
 * closed; pio_reader_next() reopens the input being read and keeps only that one open, so a
 * job of many files holds few HDF5 handles. A read goes: hyperslab of whole chunks ->
 * read buffer (native memory types, a two-field compound for the compound layout, so HDF5
 * converts nothing when the file is already native) -> decoded into the flat batch. The
 * references of variable-length strings are checked before anything follows them, and the
 * strings read from the heap collections the check parses (heapcheck.c), unless the options
 * ask for HDF5's conversion.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pio_internal.h"

#define DEFAULT_BUDGET ((size_t)256 << 20)
#define MAX_ALIGN ((uint64_t)1 << 24)	      /* largest lcm of two chunk sizes we align to */
#define MAX_BATCH_RECORDS ((uint64_t)1 << 18) /* default cap of budget-sized batches */

/* One input of the job, as checked at open. */
struct source {
	char *file;		 /* file path (owned copy) */
	char *kpath;		 /* compound dataset, or keys dataset (owned) */
	char *vpath;		 /* values dataset (pair), or NULL (owned) */
	char *kname;		 /* compound key field name (owned) */
	char *vname;		 /* compound value field name (owned) */
	struct pio_type kt, vt;	 /* declared key and value types */
	struct field kf, vf;	 /* decoders (offsets into the read buffer records) */
	size_t kstride, vstride; /* bytes per record in the key/value read buffers */
	uint64_t nrec;		 /* records in the dataset */
	uint64_t start, count;	 /* range read */
	uint64_t chunk;		 /* alignment: records per chunk (1: contiguous) */
	uint64_t batch;		 /* records per batch, a multiple of chunk */
	size_t kchunk_bytes;	 /* bytes of one chunk of the key (or compound) dataset */
	size_t vchunk_bytes;	 /* same for the values dataset */
	bool checked;		 /* its storage was checked (pio_check_storage) when the job
				    opened it: not again when it is opened to be read */
};

/*
 * Where HDF5 puts the variable-length strings of one read: a bump arena (the transfer
 * properties name it as the VL memory manager) instead of one malloc and one free per
 * string. Reset before each read, freed with the handles.
 */
struct varena {
	uint8_t **chunk; /* n chunks */
	size_t *size;	 /* their sizes */
	size_t n, cap;	 /* chunks, slots */
	size_t cur;	 /* chunk in use */
	size_t used;	 /* bytes of it given out */
};

#define VARENA_CHUNK ((size_t)4 << 20) /* bytes of an arena chunk (more for a longer string) */

static void *varena_alloc(size_t len, void *info)
{
	struct varena *a = info;
	size_t need = (len + 15) & ~(size_t)15;
	void *p;

	if (need < len)
		return NULL;
	while (a->cur < a->n && a->size[a->cur] - a->used < need) {
		a->cur++;
		a->used = 0;
	}
	if (a->cur == a->n) {
		size_t sz = need > VARENA_CHUNK ? need : VARENA_CHUNK;

		if (a->n == a->cap) {
			size_t nc = a->cap ? 2 * a->cap : 16;
			uint8_t **c = realloc(a->chunk, nc * sizeof(*c));
			size_t *z;

			if (!c)
				return NULL;
			a->chunk = c;
			z = realloc(a->size, nc * sizeof(*z));
			if (!z)
				return NULL;
			a->size = z;
			a->cap = nc;
		}
		a->chunk[a->n] = malloc(sz);
		if (!a->chunk[a->n])
			return NULL;
		a->size[a->n++] = sz;
		a->used = 0;
	}
	p = a->chunk[a->cur] + a->used;
	a->used += need;
	return p;
}

/* Strings go with the whole arena (varena_reset). */
static void varena_free(void *mem, void *info)
{
	(void)mem;
	(void)info;
}

static void varena_reset(struct varena *a)
{
	a->cur = 0;
	a->used = 0;
}

static void varena_release(struct varena *a)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		free(a->chunk[i]);
	free(a->chunk);
	free(a->size);
	memset(a, 0, sizeof(*a));
}

/* HDF5 handles of the input being read. */
struct handles {
	hid_t file;		/* the file */
	hid_t dk;		/* compound dataset, or keys dataset */
	hid_t dv;		/* values dataset, or H5I_INVALID_HID (compound) */
	hid_t memk;		/* memory type to read dk with */
	hid_t memv;		/* memory type to read dv with */
	hid_t dxpl;		/* transfer properties (type conversion buffer size) */
	int krank;		/* rank of dk (1, or 2 for rows) */
	int vrank;		/* rank of dv */
	struct varena va;	/* the variable-length strings of a read */
	struct pio_vlcheck *vc; /* checks string references (NULL: no string field to check) */
	bool refk, refv;	/* vc checks the key's, the value's references */
	bool direct;		/* and reads their strings itself (memk, memv leave them out) */
	hid_t rawk;		/* type reading dk's references to check raw, or H5I_INVALID_HID */
	hid_t rawv;		/* same for dv */
	size_t rstride;		/* bytes of a record read with rawk */
	size_t xsize;		/* direct, a compound with one string field: the other field's */
	size_t xraw, xoff;	/* bytes, read with rawk at xraw, go to xoff of kbuf's records */
};

struct pio_reader {
	struct source *src;	     /* nsrc inputs */
	size_t nsrc;		     /* number of inputs */
	uint64_t total;		     /* sum of the counts */
	struct pio_type kmerged;     /* merged key type */
	struct pio_type vmerged;     /* merged value type */
	struct pio_reader_opts opts; /* as given, defaults filled in */
	size_t cur;		     /* input being read */
	uint64_t pos;		     /* next record of input cur */
	bool open;		     /* h holds input cur open */
	struct handles h;	     /* handles of input cur */
	uint8_t *kbuf, *vbuf;	     /* read buffers */
	size_t kbuf_cap, vbuf_cap;   /* their sizes in bytes */
	uint8_t *rbuf;		     /* string references read raw (heapcheck.c) */
	size_t rbuf_cap;	     /* its size in bytes */
};

static void handles_init(struct handles *h)
{
	h->file = h->dk = h->dv = h->memk = h->memv = h->dxpl = H5I_INVALID_HID;
	h->rawk = h->rawv = H5I_INVALID_HID;
	h->refk = h->refv = h->direct = false;
	h->rstride = h->xsize = h->xraw = h->xoff = 0;
	h->krank = h->vrank = 1;
	memset(&h->va, 0, sizeof(h->va));
	h->vc = NULL;
}

static void handles_close(struct handles *h)
{
	if (h->dxpl >= 0)
		H5Pclose(h->dxpl);
	if (h->memk >= 0)
		H5Tclose(h->memk);
	if (h->memv >= 0)
		H5Tclose(h->memv);
	if (h->rawk >= 0)
		H5Tclose(h->rawk);
	if (h->rawv >= 0)
		H5Tclose(h->rawv);
	pio_vlcheck_close(h->vc);
	if (h->dk >= 0)
		H5Dclose(h->dk);
	if (h->dv >= 0)
		H5Dclose(h->dv);
	if (h->file >= 0)
		H5Fclose(h->file);
	varena_release(&h->va);
	handles_init(h);
}

static int open_file(const char *file, const char *dset, hid_t *out, struct pio_err *err)
{
	struct stat st;
	htri_t is;
	hid_t f;

	if (stat(file, &st) != 0)
		return pio_seterr(err, PIO_ENOENT, file, dset, "cannot open: %s", strerror(errno));
	if (S_ISDIR(st.st_mode))
		return pio_seterr(err, PIO_ENOENT, file, dset, "cannot open: is a directory");
	if (!S_ISREG(st.st_mode)) /* a FIFO or a device: HDF5 would block or read forever */
		return pio_seterr(err, PIO_ENOTHDF5, file, dset,
				  "not an HDF5 file (not a regular file)");
	if (access(file, R_OK) != 0)
		return pio_seterr(err, PIO_ENOENT, file, dset, "cannot open: %s", strerror(errno));
	is = H5Fis_hdf5(file);
	if (is == 0)
		return pio_seterr(err, PIO_ENOTHDF5, file, dset,
				  "not an HDF5 file (no HDF5 signature found)");
	f = is > 0 ? H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT) : H5I_INVALID_HID;
	/* Two refusals of a sound file, common on shared file systems: a writer holds it open
	 * (HDF5's file lock), or a writer died before closing it (a flag in the superblock). */
	if (f < 0 && pio_hdf5_says("unable to lock file"))
		return pio_seterr(err, PIO_ENOENT, file, dset,
				  "cannot open: another process has it open for writing (HDF5 "
				  "file lock); if none has, or the file system has no locks, set "
				  "HDF5_USE_FILE_LOCKING=FALSE");
	if (f < 0 && pio_hdf5_says("already open for write"))
		return pio_seterr(
		    err, PIO_ENOENT, file, dset,
		    "cannot open: marked as open for writing by a writer that did "
		    "not close it; if no writer runs, 'h5clear -s %s' clears the mark",
		    file);
	if (f < 0)
		return pio_seterr(err, PIO_ECORRUPT, file, dset,
				  "HDF5 cannot open the file: truncated or damaged");
	*out = f;
	return 0;
}

/* Opens dataset path of f with a chunk cache that holds two of its chunks, so that each chunk
 * is decoded once even where a batch boundary cuts one (range ends); check: first checks
 * where its records are stored (pio_check_storage). */
static int open_dataset(hid_t f, const char *file, const char *path, bool check, hid_t *out,
			size_t *chunk_bytes, uint64_t *chunk_records, struct pio_err *err)
{
	H5O_info_t oi;
	hsize_t cdims[H5S_MAX_RANK];
	hid_t d, dcpl, t, dapl;
	size_t cb = 0;
	uint64_t cr = 1;
	int rank, rc;

	if (!path || !path[0])
		return pio_seterr(err, PIO_EINVAL, file, NULL, "empty dataset path");
	if (H5Lexists(f, path, H5P_DEFAULT) <= 0 ||
	    H5Oget_info_by_name2(f, path, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
		return pio_seterr(err, PIO_ENODATASET, file, path, "not found");
	if (oi.type != H5O_TYPE_DATASET)
		return pio_seterr(err, PIO_ENODATASET, file, path, "is a %s, not a dataset",
				  oi.type == H5O_TYPE_GROUP ? "group" : "named datatype");
	d = H5Dopen2(f, path, H5P_DEFAULT);
	if (d < 0)
		return pio_seterr(err, PIO_ECORRUPT, file, path, "cannot open the dataset");
	dcpl = H5Dget_create_plist(d);
	if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) {
		rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, cdims);
		t = H5Dget_type(d);
		if (rank >= 1 && t >= 0) {
			cb = H5Tget_size(t);
			for (int i = 0; i < rank; i++)
				cb *= cdims[i];
			cr = cdims[0] ? cdims[0] : 1;
		}
		if (t >= 0)
			H5Tclose(t);
	}
	if (dcpl >= 0)
		H5Pclose(dcpl);
	if (cb > 0) {
		/* Reopen with a chunk cache fitted to the chunk size. */
		size_t bytes = cb * 2 > ((size_t)1 << 20) ? cb * 2 : (size_t)1 << 20;

		dapl = H5Pcreate(H5P_DATASET_ACCESS);
		if (dapl >= 0 && H5Pset_chunk_cache(dapl, 1021, bytes, 1.0) >= 0) {
			H5Dclose(d);
			d = H5Dopen2(f, path, dapl);
		}
		if (dapl >= 0)
			H5Pclose(dapl);
		if (d < 0)
			return pio_seterr(err, PIO_ECORRUPT, file, path, "cannot open the dataset");
	}
	rc = check ? pio_check_storage(f, d, file, path, err) : 0;
	if (rc) {
		H5Dclose(d);
		return rc;
	}
	*out = d;
	*chunk_bytes = cb;
	*chunk_records = cr;
	return 0;
}

/* Rank and dimensions of dataset d. */
static int dataset_shape(hid_t d, hsize_t dims[2])
{
	hsize_t all[H5S_MAX_RANK];
	hid_t sp = H5Dget_space(d);
	int rank;

	if (sp < 0)
		return -1;
	rank = H5Sget_simple_extent_ndims(sp);
	if (rank >= 0)
		H5Sget_simple_extent_dims(sp, all, NULL);
	H5Sclose(sp);
	dims[0] = rank >= 1 ? all[0] : 1;
	dims[1] = rank >= 2 ? all[1] : 0;
	return rank;
}

static void shape_text(int rank, hid_t d, char *buf, size_t size)
{
	hsize_t all[H5S_MAX_RANK];
	hid_t sp = H5Dget_space(d);
	size_t len = 0;

	buf[0] = 0;
	if (sp < 0)
		return;
	H5Sget_simple_extent_dims(sp, all, NULL);
	H5Sclose(sp);
	if (rank == 0)
		snprintf(buf, size, "scalar");
	for (int i = 0; i < rank && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%llu", i ? " x " : "",
					(unsigned long long)all[i]);
}

static int check_key_type(const struct source *s, const char *dset, const char *what,
			  struct pio_err *err)
{
	char name[96];

	if (s->kt.cls == PIO_V_FLOAT)
		return pio_seterr(err, PIO_ETYPE, s->file, dset,
				  "%s has type %s, which is not supported for keys (supported "
				  "keys: int8..int64, uint8..uint64, fixed or variable-length "
				  "strings, opaque, uint8/int8 arrays or 2-D rows)",
				  what, pio_type_name(&s->kt, name, sizeof(name)));
	return 0;
}

/* Opens one dataset of the pair layout and classifies it (1-D, or 2-D 1-byte rows). */
static int open_pair_part(struct source *s, hid_t f, const char *path, const char *what, hid_t *d,
			  hid_t *mem, int *rank_out, uint64_t *nrec, struct pio_type *pt,
			  struct field *fd, size_t *cbytes, uint64_t *crec, struct pio_err *err)
{
	hsize_t dims[2];
	char why[400], shape[96];
	hid_t t;
	int rank, rc;

	rc = open_dataset(f, s->file, path, !s->checked, d, cbytes, crec, err);
	if (rc)
		return rc;
	rank = dataset_shape(*d, dims);
	t = H5Dget_type(*d);
	if (rank < 0 || t < 0) {
		if (t >= 0)
			H5Tclose(t);
		return pio_seterr(err, PIO_ECORRUPT, s->file, path,
				  "cannot read the dataset's shape or type");
	}
	if (rank != 1 && !(rank == 2 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1)) {
		H5Tclose(t);
		shape_text(rank, *d, shape, sizeof(shape));
		return pio_seterr(err, PIO_ESHAPE, s->file, path,
				  "is %d-D (%s); %s need a 1-D dataset (or 2-D rows of "
				  "1-byte integers)",
				  rank, shape, what);
	}
	rc = pio_classify(t, rank == 2 ? dims[1] : 0, pt, fd, mem, why, sizeof(why));
	H5Tclose(t);
	if (rc)
		return pio_seterr(err, rc, s->file, path, "%s: %s", what, why);
	*rank_out = rank;
	*nrec = dims[0];
	return 0;
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* Builds the memory compound {key, value} for the compound layout. When the file type holds
 * exactly these two fields with native member types, the memory type copies its layout, so
 * that HDF5 finds the types equal and converts nothing. */
static int build_memcompound(hid_t ft, int ki, int vi, const char *kname, const char *vname,
			     hid_t km, hid_t vm, struct source *s, hid_t *out)
{
	size_t ks = H5Tget_size(km), vs = H5Tget_size(vm), koff, voff, size;
	bool same = false;
	hid_t c;

	if (H5Tget_nmembers(ft) == 2) {
		hid_t fk = H5Tget_member_type(ft, (unsigned)ki);
		hid_t fv = H5Tget_member_type(ft, (unsigned)vi);

		same = fk >= 0 && fv >= 0 && H5Tequal(fk, km) > 0 && H5Tequal(fv, vm) > 0;
		if (fk >= 0)
			H5Tclose(fk);
		if (fv >= 0)
			H5Tclose(fv);
	}
	if (same) {
		koff = H5Tget_member_offset(ft, (unsigned)ki);
		voff = H5Tget_member_offset(ft, (unsigned)vi);
		size = H5Tget_size(ft);
	} else {
		koff = 0;
		voff = (ks + 7) & ~(size_t)7;
		size = (voff + vs + 7) & ~(size_t)7;
	}
	c = H5Tcreate(H5T_COMPOUND, size);
	if (c < 0)
		return PIO_ENOMEM;
	if (H5Tinsert(c, kname, koff, km) < 0 || H5Tinsert(c, vname, voff, vm) < 0) {
		H5Tclose(c);
		return PIO_ENOMEM;
	}
	s->kf.off = koff;
	s->vf.off = voff;
	s->kstride = size;
	s->vstride = 0;
	*out = c;
	return 0;
}

static void field_list(hid_t ft, char *buf, size_t size)
{
	int n = H5Tget_nmembers(ft);
	size_t len = 0;

	buf[0] = 0;
	for (int i = 0; i < n && len + 1 < size; i++) {
		char *name = H5Tget_member_name(ft, (unsigned)i);

		len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "",
					name ? name : "?");
		if (name)
			H5free_memory(name);
	}
	if (len >= size && size > 4)
		memcpy(buf + size - 4, "...", 4);
}

static int open_compound(struct source *s, struct handles *h, uint64_t *crec, struct pio_err *err)
{
	hsize_t dims[2];
	char why[400], shape[96], desc[128], fields[256];
	hid_t ft, mt;
	int rank, ki, vi, rc;

	rc = open_dataset(h->file, s->file, s->kpath, !s->checked, &h->dk, &s->kchunk_bytes, crec,
			  err);
	if (rc)
		return rc;
	rank = dataset_shape(h->dk, dims);
	if (rank != 1) {
		shape_text(rank, h->dk, shape, sizeof(shape));
		return pio_seterr(err, PIO_ESHAPE, s->file, s->kpath,
				  "is %d-D (%s); a 1-D compound dataset is needed", rank, shape);
	}
	ft = H5Dget_type(h->dk);
	if (ft < 0)
		return pio_seterr(err, PIO_ECORRUPT, s->file, s->kpath, "cannot read its type");
	if (H5Tget_class(ft) != H5T_COMPOUND) {
		pio_h5type_desc(ft, desc, sizeof(desc));
		H5Tclose(ft);
		return pio_seterr(err, PIO_ENOFIELD, s->file, s->kpath,
				  "is not a compound dataset (it holds %s); name a compound "
				  "dataset with fields '%s' and '%s', or a keys and a values "
				  "dataset",
				  desc, s->kname, s->vname);
	}
	ki = H5Tget_member_index(ft, s->kname);
	vi = H5Tget_member_index(ft, s->vname);
	if (ki < 0 || vi < 0) {
		field_list(ft, fields, sizeof(fields));
		H5Tclose(ft);
		return pio_seterr(err, PIO_ENOFIELD, s->file, s->kpath,
				  "has no field '%s' (its fields: %s)",
				  ki < 0 ? s->kname : s->vname, fields);
	}
	if (ki == vi) {
		H5Tclose(ft);
		return pio_seterr(err, PIO_EINVAL, s->file, s->kpath,
				  "the key field and the value field are both '%s'", s->kname);
	}
	rc = 0;
	{
		hid_t fk = H5Tget_member_type(ft, (unsigned)ki);

		rc = pio_classify(fk, 0, &s->kt, &s->kf, &h->memk, why, sizeof(why));
		H5Tclose(fk);
		if (rc) {
			H5Tclose(ft);
			return pio_seterr(err, rc, s->file, s->kpath, "key field '%s': %s",
					  s->kname, why);
		}
	}
	{
		hid_t fv = H5Tget_member_type(ft, (unsigned)vi);

		rc = pio_classify(fv, 0, &s->vt, &s->vf, &h->memv, why, sizeof(why));
		H5Tclose(fv);
		if (rc) {
			H5Tclose(ft);
			return pio_seterr(err, rc, s->file, s->kpath, "value field '%s': %s",
					  s->vname, why);
		}
	}
	rc = check_key_type(s, s->kpath, "key field", err);
	if (!rc)
		rc = build_memcompound(ft, ki, vi, s->kname, s->vname, h->memk, h->memv, s, &mt);
	H5Tclose(ft);
	if (rc)
		return rc == PIO_ENOMEM
			   ? pio_seterr(err, rc, s->file, s->kpath, "out of memory building types")
			   : rc;
	H5Tclose(h->memk);
	H5Tclose(h->memv);
	h->memk = mt;
	h->memv = H5I_INVALID_HID;
	s->nrec = dims[0];
	return 0;
}

static int open_pair(struct source *s, struct handles *h, uint64_t *crec, struct pio_err *err)
{
	uint64_t nk, nv, ck, cv, l;
	int rc;

	rc = open_pair_part(s, h->file, s->kpath, "keys", &h->dk, &h->memk, &h->krank, &nk, &s->kt,
			    &s->kf, &s->kchunk_bytes, &ck, err);
	if (rc)
		return rc;
	rc = check_key_type(s, s->kpath, "the keys dataset", err);
	if (rc)
		return rc;
	rc = open_pair_part(s, h->file, s->vpath, "values", &h->dv, &h->memv, &h->vrank, &nv,
			    &s->vt, &s->vf, &s->vchunk_bytes, &cv, err);
	if (rc)
		return rc;
	if (nk != nv)
		return pio_seterr(err, PIO_ELENGTH, s->file, s->kpath,
				  "holds %llu keys but values dataset %s holds %llu values; "
				  "keys and values must have the same length",
				  (unsigned long long)nk, s->vpath, (unsigned long long)nv);
	s->kstride = H5Tget_size(h->memk) * (h->krank == 2 ? s->kf.size : 1);
	s->vstride = H5Tget_size(h->memv) * (h->vrank == 2 ? s->vf.size : 1);
	s->kf.off = 0;
	s->vf.off = 0;
	s->nrec = nk;
	/* Align to both chunkings where that stays reasonable, else to the keys'. */
	l = ck / gcd64(ck, cv) * cv;
	*crec = l <= MAX_ALIGN ? l : ck;
	return 0;
}

/* Opens input s into h (h initialised by the caller, closed by the caller on failure). */
static int source_open(struct source *s, struct handles *h, uint64_t *crec, struct pio_err *err)
{
	size_t tconv;
	int rc;

	rc = open_file(s->file, s->kpath, &h->file, err);
	if (rc)
		return rc;
	rc = s->vpath ? open_pair(s, h, crec, err) : open_compound(s, h, crec, err);
	if (rc)
		return rc;
	/* A type conversion buffer that holds a chunk of records avoids strip-mining. */
	h->dxpl = H5Pcreate(H5P_DATASET_XFER);
	if (h->dxpl < 0)
		return pio_seterr(err, PIO_ENOMEM, s->file, s->kpath, "out of memory");
	tconv = (size_t)(*crec < 65536 ? 65536 : *crec) * (s->kstride + s->vstride);
	if (tconv < ((size_t)1 << 20))
		tconv = (size_t)1 << 20;
	if (tconv > ((size_t)64 << 20))
		tconv = (size_t)64 << 20;
	H5Pset_buffer(h->dxpl, tconv, NULL, NULL);
	if (H5Pset_vlen_mem_manager(h->dxpl, varena_alloc, &h->va, varena_free, &h->va) < 0)
		return pio_seterr(err, PIO_ENOMEM, s->file, s->kpath, "out of memory");
	return 0;
}

static bool is_virtual(hid_t d)
{
	hid_t dcpl = H5Dget_create_plist(d);
	bool v = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_VIRTUAL;

	if (dcpl >= 0)
		H5Pclose(dcpl);
	return v;
}

/* Prepares the check of the references of input s's variable-length strings (heapcheck.c)
 * in h, which holds it open; direct: the reader reads the strings too. A virtual dataset's
 * strings lie in its sources' heaps: storage.c checks them when the job opens the input, and
 * HDF5 reads them. */
static int open_vlcheck(struct source *s, struct handles *h, bool direct, struct pio_err *err)
{
	bool k = s->kf.kind == FK_VSTR && !is_virtual(h->dk);
	bool v = s->vf.kind == FK_VSTR && !is_virtual(s->vpath ? h->dv : h->dk);
	int rc;

	if (!k && !v)
		return 0;
	rc = pio_vlcheck_open(h->file, s->file, &h->vc, err);
	if (rc)
		return rc;
	h->refk = k;
	h->refv = v;
	if (!s->vpath) /* one read of the compound's references for both fields */
		h->rawk = pio_vlcheck_type(h->vc, k ? s->kname : NULL, v ? s->vname : NULL);
	else if (k)
		h->rawk = pio_vlcheck_type(h->vc, NULL, NULL);
	if (s->vpath && v)
		h->rawv = pio_vlcheck_type(h->vc, NULL, NULL);
	if (((k || !s->vpath) && h->rawk < 0) || (s->vpath && v && h->rawv < 0))
		return pio_seterr(err, PIO_ENOMEM, s->file, s->kpath, "out of memory");
	h->direct = direct;
	h->rstride = (!s->vpath && k && v ? 2 : 1) * pio_vlcheck_refsize(h->vc);
	if (direct && !s->vpath && !(k && v)) {
		/* HDF5 reads the compound's other field in the same pass as the references
		 * (one pass over the chunks, inflated once): after them, 8-byte aligned */
		const char *name = k ? s->vname : s->kname;
		int i = H5Tget_member_index(h->memk, name);
		hid_t mt = i >= 0 ? H5Tget_member_type(h->memk, (unsigned)i) : H5I_INVALID_HID;
		size_t xs = mt >= 0 ? H5Tget_size(mt) : 0, xraw = (h->rstride + 7) & ~(size_t)7;

		if (!xs || H5Tset_size(h->rawk, (xraw + xs + 7) & ~(size_t)7) < 0 ||
		    H5Tinsert(h->rawk, name, xraw, mt) < 0)
			xs = 0;
		if (mt >= 0)
			H5Tclose(mt);
		if (!xs)
			return pio_seterr(err, PIO_ENOMEM, s->file, s->kpath, "out of memory");
		h->rstride = H5Tget_size(h->rawk);
		h->xsize = xs;
		h->xraw = xraw;
		h->xoff = k ? s->vf.off : s->kf.off;
		H5Tclose(h->memk);
		h->memk = H5I_INVALID_HID;
	} else if (direct) { /* nothing left for HDF5 to read in dk, dv */
		if (k || !s->vpath) {
			H5Tclose(h->memk);
			h->memk = H5I_INVALID_HID;
		}
		if (s->vpath && v) {
			H5Tclose(h->memv);
			h->memv = H5I_INVALID_HID;
		}
	}
	return 0;
}

/* Estimated bytes one record costs in a batch (a variable-length string: its pointer, its
 * bytes and its reference read raw to be checked; in a compound, the other field is read raw
 * with it). */
static size_t batch_bytes_per_record(const struct source *s)
{
	size_t k, v = 0;

	k = s->kf.kind == FK_VSTR			    ? 48
	    : s->kf.kind == FK_INT || s->kf.kind == FK_UINT ? s->kf.width
							    : s->kf.size;
	if (s->vf.kind == FK_VSTR)
		v = 52;
	else if (s->vf.kind == FK_FSTR || s->vf.kind == FK_RAW)
		v = s->vf.size + 4;
	if (!s->vpath && (s->kf.kind == FK_VSTR) != (s->vf.kind == FK_VSTR))
		v += s->kf.kind == FK_VSTR ? s->vf.size : s->kf.size; /* read raw too */
	return k + v + sizeof(size_t) + sizeof(uint64_t);
}

static uint64_t batch_records(const struct source *s, const struct pio_reader_opts *o)
{
	uint64_t b;

	if (o->batch_records) {
		b = o->batch_records;
	} else {
		size_t per = s->kstride + s->vstride + 3 * batch_bytes_per_record(s);
		/* Beyond a few MiB per batch a plain read gains nothing, and buffers that stay
		 * warm in cache and are reused batch after batch read faster than huge fresh
		 * ones. */
		uint64_t cap = o->batch_cap ? o->batch_cap : MAX_BATCH_RECORDS;

		b = o->mem_budget / (per ? per : 1);
		if (b > cap)
			b = cap;
	}
	b = b / s->chunk * s->chunk;
	return b ? b : s->chunk;
}

static void source_free(struct source *s)
{
	free(s->file);
	free(s->kpath);
	free(s->vpath);
	free(s->kname);
	free(s->vname);
}

static char *dup_or(const char *s, const char *dflt)
{
	const char *v = s ? s : dflt;
	size_t n = strlen(v) + 1;
	char *c = malloc(n);

	if (c)
		memcpy(c, v, n);
	return c;
}

static int source_init(struct source *s, const struct pio_input *in, struct pio_err *err)
{
	memset(s, 0, sizeof(*s));
	if (!in->file)
		return pio_seterr(err, PIO_EINVAL, "?", NULL, "input without a file name");
	if (!in->dataset && (!in->keys || !in->values))
		return pio_seterr(err, PIO_EINVAL, in->file, NULL,
				  "name a compound dataset, or both a keys and a values "
				  "dataset");
	s->file = dup_or(in->file, "");
	s->kpath = dup_or(in->dataset ? in->dataset : in->keys, "");
	s->vpath = in->dataset ? NULL : dup_or(in->values, "");
	s->kname = dup_or(in->key_field, "key");
	s->vname = dup_or(in->value_field, "value");
	if (!s->file || !s->kpath || (!in->dataset && !s->vpath) || !s->kname || !s->vname)
		return pio_seterr(err, PIO_ENOMEM, in->file, NULL, "out of memory");
	s->start = in->start;
	s->count = in->count;
	return 0;
}

int pio_reader_open(const struct pio_input *inputs, size_t n, const struct pio_reader_opts *opts,
		    struct pio_reader **out, struct pio_err *err)
{
	struct pio_reader *r;
	char a[96], b[96];
	int rc = 0;

	pio_silence_hdf5();
	pio_register_filters();
	if (!inputs || n == 0 || !out)
		return pio_seterr(err, PIO_EINVAL, "pio", NULL, "empty job");
	r = calloc(1, sizeof(*r));
	if (!r)
		return pio_seterr(err, PIO_ENOMEM, inputs[0].file, NULL, "out of memory");
	handles_init(&r->h);
	if (opts)
		r->opts = *opts;
	if (!r->opts.mem_budget)
		r->opts.mem_budget = DEFAULT_BUDGET;
	r->src = calloc(n, sizeof(*r->src));
	if (!r->src) {
		rc = pio_seterr(err, PIO_ENOMEM, inputs[0].file, NULL, "out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < n; i++) {
		struct source *s = &r->src[i];
		struct handles h;
		uint64_t crec = 1;

		r->nsrc = i + 1;
		rc = source_init(s, &inputs[i], err);
		if (rc)
			goto out_free;
		handles_init(&h);
		rc = source_open(s, &h, &crec, err);
		handles_close(&h);
		if (rc)
			goto out_free;
		s->checked = true;
		s->chunk = crec;
		if (s->start > s->nrec ||
		    (s->count != PIO_TO_END && s->count > s->nrec - s->start)) {
			rc = pio_seterr(err, PIO_ERANGE, s->file, s->kpath,
					"range start %llu count %llu ends past the end of the "
					"dataset (%llu records)",
					(unsigned long long)s->start, (unsigned long long)s->count,
					(unsigned long long)s->nrec);
			goto out_free;
		}
		if (s->count == PIO_TO_END)
			s->count = s->nrec - s->start;
		s->batch = batch_records(s, &r->opts);
		r->total += s->count;
		if (i == 0) {
			r->kmerged = s->kt;
			r->vmerged = s->vt;
			continue;
		}
		if (pio_type_merge(&r->kmerged, &s->kt, true)) {
			rc = pio_seterr(err, PIO_EMIXED, s->file, s->kpath,
					"key type %s differs from %s of the job's first input "
					"(%s); all inputs of a job need the same key type",
					pio_type_name(&s->kt, a, sizeof(a)),
					pio_type_name(&r->src[0].kt, b, sizeof(b)), r->src[0].file);
			goto out_free;
		}
		if (pio_type_merge(&r->vmerged, &s->vt, false)) {
			rc = pio_seterr(err, PIO_EMIXED, s->file, s->vpath ? s->vpath : s->kpath,
					"value type %s differs from %s of the job's first "
					"input (%s); all inputs of a job need the same value "
					"class",
					pio_type_name(&s->vt, a, sizeof(a)),
					pio_type_name(&r->src[0].vt, b, sizeof(b)), r->src[0].file);
			goto out_free;
		}
	}
	*out = r;
	return 0;

out_free:
	pio_reader_close(r);
	return rc;
}

void pio_reader_close(struct pio_reader *r)
{
	if (!r)
		return;
	handles_close(&r->h);
	for (size_t i = 0; i < r->nsrc; i++)
		source_free(&r->src[i]);
	free(r->src);
	free(r->kbuf);
	free(r->vbuf);
	free(r->rbuf);
	free(r);
}

size_t pio_reader_sources(const struct pio_reader *r)
{
	return r ? r->nsrc : 0;
}

uint64_t pio_reader_total(const struct pio_reader *r)
{
	return r ? r->total : 0;
}

int pio_reader_source_info(const struct pio_reader *r, size_t i, struct pio_source_info *info)
{
	const struct source *s;

	if (!r || !info || i >= r->nsrc)
		return PIO_EINVAL;
	s = &r->src[i];
	info->key_type = s->kt;
	info->value_type = s->vt;
	info->dataset_records = s->nrec;
	info->start = s->start;
	info->count = s->count;
	info->chunk_records = s->chunk;
	info->batch_records = s->batch;
	return 0;
}

void pio_reader_types(const struct pio_reader *r, struct pio_type *key, struct pio_type *value)
{
	if (key)
		*key = r->kmerged;
	if (value)
		*value = r->vmerged;
}

int pio_read_part(hid_t d, hid_t mem, hid_t dxpl, int rank, uint64_t rowlen, uint64_t pos,
		  uint64_t n, void *buf)
{
	hsize_t start[2] = {pos, 0}, count[2] = {n, rowlen};
	hid_t fs, ms, saved;
	herr_t st = -1;

	fs = H5Dget_space(d);
	if (fs < 0)
		return -1;
	ms = H5Screate_simple(rank, count, NULL);
	if (ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
		st = H5Dread(d, mem, ms, fs, dxpl, buf);
	/* Keep the error stack of a failed read: the closes below would clear it. */
	saved = st < 0 ? H5Eget_current_stack() : H5I_INVALID_HID;
	if (ms >= 0)
		H5Sclose(ms);
	H5Sclose(fs);
	if (saved >= 0)
		H5Eset_current_stack(saved);
	return st < 0 ? -1 : 0;
}

static size_t fstr_len(const uint8_t *p, size_t size, enum pio_strpad pad)
{
	const uint8_t *z;
	size_t len = size;

	switch (pad) {
	case PIO_PAD_NULLTERM:
		z = memchr(p, 0, size);
		return z ? (size_t)(z - p) : size;
	case PIO_PAD_NULLPAD:
		while (len && p[len - 1] == 0)
			len--;
		return len;
	default:
		while (len && p[len - 1] == ' ')
			len--;
		return len;
	}
}

static uint64_t load_uint(const uint8_t *p, size_t size)
{
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;

	switch (size) {
	case 1:
		memcpy(&u8, p, 1);
		return u8;
	case 2:
		memcpy(&u16, p, 2);
		return u16;
	case 4:
		memcpy(&u32, p, 4);
		return u32;
	default:
		memcpy(&u64, p, 8);
		return u64;
	}
}

static uint64_t load_int(const uint8_t *p, size_t size)
{
	int8_t i8;
	int16_t i16;
	int32_t i32;
	int64_t i64;

	switch (size) {
	case 1:
		memcpy(&i8, p, 1);
		return (uint64_t)(int64_t)i8;
	case 2:
		memcpy(&i16, p, 2);
		return (uint64_t)(int64_t)i16;
	case 4:
		memcpy(&i32, p, 4);
		return (uint64_t)(int64_t)i32;
	default:
		memcpy(&i64, p, 8);
		return (uint64_t)i64;
	}
}

/* Bytes a field of n records takes once decoded (keys: the key bytes; values: heap bytes). */
static int decoded_size(const struct field *f, const uint8_t *buf, size_t stride, size_t n,
			bool heap, size_t *out)
{
	size_t per, total = 0;

	switch (f->kind) {
	case FK_INT:
	case FK_UINT:
	case FK_FLOAT:
		*out = heap ? 0 : n * f->width;
		return 0;
	case FK_FSTR:
	case FK_RAW:
		per = f->size + (heap ? 4 : 0);
		if (n && per > SIZE_MAX / n)
			return PIO_ENOMEM;
		*out = n * per;
		return 0;
	default:
		for (size_t i = 0; i < n; i++) {
			const char *s;

			memcpy(&s, buf + i * stride + f->off, sizeof(s));
			total += (s ? strlen(s) : 0) + (heap ? 4 : 0);
		}
		*out = total;
		return 0;
	}
}

/* Bytes of one blob field (string or raw) of the record at p. */
static const uint8_t *blob(const struct field *f, const uint8_t *p, size_t *len)
{
	const char *s;

	switch (f->kind) {
	case FK_FSTR:
		*len = fstr_len(p, f->size, f->pad);
		return p;
	case FK_RAW:
		*len = f->size;
		return p;
	default:
		memcpy(&s, p, sizeof(s));
		*len = s ? strlen(s) : 0;
		return (const uint8_t *)s;
	}
}

#define KEY_SLACK 16 /* bytes decode_keys may write past the last key */

static void decode_keys(const struct field *f, const uint8_t *buf, size_t stride, size_t n,
			struct pio_batch *b)
{
	uint8_t *k = b->keys;
	size_t *off = b->key_off;
	size_t pos = 0;

	off[0] = 0;
	if (f->kind == FK_INT || f->kind == FK_UINT) {
		unsigned w = f->width;
		uint64_t flip = f->kind == FK_INT ? (uint64_t)1 << (8 * w - 1) : 0;

		for (size_t i = 0; i < n; i++) {
			const uint8_t *p = buf + i * stride + f->off;
			uint64_t v =
			    f->kind == FK_INT ? load_int(p, f->size) : load_uint(p, f->size);

			/* Big-endian in w bytes, sign flipped: byte order = numeric order. */
			v ^= flip;
			for (unsigned j = 0; j < w; j++)
				k[pos + j] = (uint8_t)(v >> (8 * (w - 1 - j)));
			pos += w;
			off[i + 1] = pos;
		}
		return;
	}
	if (f->kind == FK_FSTR && f->pad == PIO_PAD_NULLPAD) {
		/* The common case (numpy 'S' dtype from h5py): a tight loop. Each key's whole
		 * field is copied (the arena has that much room past the keys: KEY_SLACK), the
		 * next key overwrites its padding; 8 and 16 bytes, the usual widths, are copied as
		 * constants, not by a call. */
		size_t size = f->size;

		for (size_t i = 0; i < n; i++) {
			const uint8_t *p = buf + i * stride + f->off;
			size_t len = size;

			while (len && p[len - 1] == 0)
				len--;
			if (size == 16)
				memcpy(k + pos, p, 16);
			else if (size == 8)
				memcpy(k + pos, p, 8);
			else
				memcpy(k + pos, p, len);
			pos += len;
			off[i + 1] = pos;
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len;
		const uint8_t *p = blob(f, buf + i * stride + f->off, &len);

		if (len)
			memcpy(k + pos, p, len);
		pos += len;
		off[i + 1] = pos;
	}
}

static void decode_values(const struct field *f, const uint8_t *buf, size_t stride, size_t n,
			  struct pio_batch *b)
{
	uint64_t *v = b->vals;
	size_t hp = 0;

	switch (f->kind) {
	case FK_INT:
		for (size_t i = 0; i < n; i++)
			v[i] = load_int(buf + i * stride + f->off, f->size);
		break;
	case FK_UINT:
		for (size_t i = 0; i < n; i++)
			v[i] = load_uint(buf + i * stride + f->off, f->size);
		break;
	case FK_FLOAT:
		for (size_t i = 0; i < n; i++) {
			const uint8_t *p = buf + i * stride + f->off;
			double d;

			if (f->size == 4) {
				float x;

				memcpy(&x, p, 4);
				d = x;
			} else {
				memcpy(&d, p, 8);
			}
			memcpy(&v[i], &d, 8);
		}
		break;
	default:
		for (size_t i = 0; i < n; i++) {
			size_t len;
			const uint8_t *p = blob(f, buf + i * stride + f->off, &len);
			uint8_t *h = b->heap + hp;

			h[0] = (uint8_t)len;
			h[1] = (uint8_t)(len >> 8);
			h[2] = (uint8_t)(len >> 16);
			h[3] = (uint8_t)(len >> 24);
			if (len)
				memcpy(h + 4, p, len);
			v[i] = hp;
			hp += 4 + len;
		}
	}
	b->heap_len = hp;
}

/* Checks the string references of records [pos, pos+n) of dataset d (path dset) before HDF5
 * follows them, read raw with type raw: the key's (first, where key), the value's (where
 * value). */
static int check_refs(struct pio_reader *r, const struct source *s, hid_t d, hid_t raw,
		      const char *dset, bool key, bool value, uint64_t pos, size_t n,
		      struct pio_err *err)
{
	struct handles *h = &r->h;
	size_t stride = s->vpath ? pio_vlcheck_refsize(h->vc) : h->rstride;
	const char *what[2] = {key ? "key" : "value", key && value ? "value" : NULL};

	if (n > SIZE_MAX / stride || pio_grow_buf(&r->rbuf, &r->rbuf_cap, n * stride))
		return pio_seterr(err, PIO_ENOMEM, s->file, dset,
				  "out of memory for the string references of %zu records", n);
	if (pio_read_part(d, raw, h->dxpl, 1, 1, pos, n, r->rbuf))
		return pio_seterr(err, PIO_EREAD, s->file, dset, "cannot read records %llu..%llu",
				  (unsigned long long)pos, (unsigned long long)(pos + n - 1));
	if (!h->direct)
		return pio_vlcheck_refs(h->vc, r->rbuf, n, stride, pos, dset, what, err);
	if (s->vpath) { /* a dataset of strings: pointers one after another */
		const size_t off[2] = {0, 0};

		return pio_vlcheck_strings(h->vc, r->rbuf, n, stride, pos, dset, what,
					   key ? r->kbuf : r->vbuf, key ? s->kstride : s->vstride,
					   off, varena_alloc, &h->va, err);
	} else {
		const size_t off[2] = {key ? s->kf.off : s->vf.off, s->vf.off};

		for (size_t i = 0; h->xsize && i < n; i++) /* the field read in the same pass */
			memcpy(r->kbuf + i * s->kstride + h->xoff, r->rbuf + i * stride + h->xraw,
			       h->xsize);
		return pio_vlcheck_strings(h->vc, r->rbuf, n, stride, pos, dset, what, r->kbuf,
					   s->kstride, off, varena_alloc, &h->va, err);
	}
}

/* Checks the string references of the batch's records (check_refs), for each dataset. */
static int check_batch(struct pio_reader *r, const struct source *s, uint64_t pos, size_t n,
		       struct pio_err *err)
{
	struct handles *h = &r->h;
	int rc = 0;

	if (!s->vpath)
		return check_refs(r, s, h->dk, h->rawk, s->kpath, h->refk, h->refv, pos, n, err);
	if (h->refk)
		rc = check_refs(r, s, h->dk, h->rawk, s->kpath, true, false, pos, n, err);
	if (!rc && h->refv)
		rc = check_refs(r, s, h->dv, h->rawv, s->vpath, false, true, pos, n, err);
	return rc;
}

/* Reads records [pos, pos+n) of the current input into b. */
static int read_batch(struct pio_reader *r, struct source *s, uint64_t pos, size_t n,
		      struct pio_batch *b, struct pio_err *err)
{
	struct handles *h = &r->h;
	const uint8_t *vbuf;
	size_t kbytes, hbytes, vstride;
	int rc;

	if ((s->kstride && n > SIZE_MAX / s->kstride) || (s->vstride && n > SIZE_MAX / s->vstride))
		return pio_seterr(err, PIO_ENOMEM, s->file, s->kpath, "batch too large");
	varena_reset(&h->va); /* the strings of the last read are decoded */
	if (pio_grow_buf(&r->kbuf, &r->kbuf_cap, n * s->kstride) ||
	    pio_grow_buf(&r->vbuf, &r->vbuf_cap, n * s->vstride))
		return pio_seterr(err, PIO_ENOMEM, s->file, s->kpath,
				  "out of memory for a read buffer of %zu records", n);
	/* HDF5 follows string references only once they are checked; where the reader reads
	 * the strings itself (h->direct), HDF5 reads the other fields first (a compound's
	 * other field comes with the references, in check_batch). */
	if (h->vc && !h->direct && (rc = check_batch(r, s, pos, n, err)))
		return rc;
	if (h->memk >= 0 &&
	    pio_read_part(h->dk, h->memk, h->dxpl, h->krank, s->kf.size, pos, n, r->kbuf))
		return pio_seterr(err, PIO_EREAD, s->file, s->kpath,
				  "cannot read records %llu..%llu", (unsigned long long)pos,
				  (unsigned long long)(pos + n - 1));
	if (s->vpath && h->memv >= 0 &&
	    pio_read_part(h->dv, h->memv, h->dxpl, h->vrank, s->vf.size, pos, n, r->vbuf)) {
		rc = pio_seterr(err, PIO_EREAD, s->file, s->vpath, "cannot read records %llu..%llu",
				(unsigned long long)pos, (unsigned long long)(pos + n - 1));
		goto out;
	}
	if (h->vc && h->direct && (rc = check_batch(r, s, pos, n, err)))
		return rc;
	vbuf = s->vpath ? r->vbuf : r->kbuf;
	vstride = s->vpath ? s->vstride : s->kstride;
	rc = decoded_size(&s->kf, r->kbuf, s->kstride, n, false, &kbytes);
	if (!rc)
		rc = decoded_size(&s->vf, vbuf, vstride, n, true, &hbytes);
	if (!rc)
		rc = pio_batch_reserve(b, n, kbytes + KEY_SLACK, hbytes);
	if (rc) {
		rc = pio_seterr(err, rc, s->file, s->kpath,
				"out of memory for a batch of %zu records", n);
		goto out;
	}
	decode_keys(&s->kf, r->kbuf, s->kstride, n, b);
	decode_values(&s->vf, vbuf, vstride, n, b);
	b->n = n;
	b->first_record = pos;
	b->source = (int)r->cur;

out: /* the strings stay in h->va until the next read */
	return rc;
}

int pio_reader_next(struct pio_reader *r, struct pio_batch *b, struct pio_err *err)
{
	pio_silence_hdf5();
	if (!r || !b)
		return pio_seterr(err, PIO_EINVAL, "pio", NULL, "NULL reader or batch");
	b->n = 0;
	b->heap_len = 0;
	for (;;) {
		struct source *s;
		uint64_t end, next;
		int rc;

		if (r->cur >= r->nsrc)
			return 0;
		s = &r->src[r->cur];
		end = s->start + s->count;
		if (!r->open && s->count > 0) {
			uint64_t crec = 1;

			rc = source_open(s, &r->h, &crec, err);
			if (!rc)
				rc = open_vlcheck(s, &r->h, !r->opts.hdf5_strings, err);
			if (rc) {
				handles_close(&r->h);
				return rc;
			}
			r->open = true;
			r->pos = s->start;
		}
		if (!r->open || r->pos >= end) {
			handles_close(&r->h);
			r->open = false;
			r->cur++;
			continue;
		}
		next = (r->pos / s->batch + 1) * s->batch;
		if (next > end)
			next = end;
		rc = read_batch(r, s, r->pos, (size_t)(next - r->pos), b, err);
		if (rc)
			return rc;
		r->pos = next;
		return 1;
	}
}
