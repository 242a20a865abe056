/*
 * storage.c - where a dataset's records are stored, checked before any is read.
 *
 * HDF5 reads some unreadable records without an error: a virtual dataset reads its fill
 * value wherever a source file or dataset is missing, shorter than its mapping says, or
 * where no mapping covers a record; a dataset stored in external raw files reads zeros past
 * the end of a short file; a chunked dataset reads it wherever no chunk was ever written
 * (a writer that stopped early). A job would then ingest made-up keys and values. Each such
 * case is refused at open, naming the file and the records. A filter that this process cannot
 * load (a compression plugin that is not installed) is refused at open too, naming the
 * filter and where to get it, instead of failing at the first read with HDF5's last words.
 *
 * Files are looked up as HDF5 1.10 looks them up (H5F_prefix_open_file for virtual
 * sources, H5D__efl_read for external files), so that a check never refuses a file HDF5
 * finds. The LZF filter of h5py's format (filter 32000) is ours, built on Debian's liblzf:
 * h5py writes it for compression="lzf", and Debian 12's plugin for it cannot load
 * (liblzf_filter.so is not linked with liblzf).
 */
#define _GNU_SOURCE /* strchrnul */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lzf.h>

#include "pio_internal.h"

#define FILTER_LZF 32000
#define VIRTUAL_DEPTH_MAX 8		 /* a virtual source that is itself virtual, and so on */
#define MAPPED_BLOCKS_MAX (1u << 20)	 /* past this, mapping coverage is not checked */
#define STRING_PIECE ((uint64_t)1 << 16) /* records a read of a virtual source's strings */

/* ---- LZF ---- */

/* One chunk through LZF. Decoding: h5py stores the chunk's size in the third parameter (a
 * chunk that decodes to another size is damaged); without it the output grows until the
 * chunk fits. Encoding (tests write with it) keeps a
 * chunk only if it shrinks: 0 otherwise, and HDF5 stores the chunk as it is when the filter
 * is optional, as h5py's is. */
static size_t lzf_filter(unsigned flags, size_t nparams, const unsigned params[], size_t nbytes,
			 size_t *buf_size, void **buf)
{
	size_t cap = nparams >= 3 && params[2] ? params[2] : 4 * nbytes + 64;
	unsigned got;
	void *out;

	if (nbytes > UINT_MAX || nbytes < 2)
		return 0;
	if (!(flags & H5Z_FLAG_REVERSE)) {
		out = H5allocate_memory(nbytes, false);
		got = out ? lzf_compress(*buf, (unsigned)nbytes, out, (unsigned)nbytes - 1) : 0;
		if (!got) {
			H5free_memory(out);
			return 0;
		}
		cap = nbytes;
	} else {
		for (;;) {
			if (cap > UINT_MAX)
				return 0;
			out = H5allocate_memory(cap, false);
			if (!out)
				return 0;
			got = lzf_decompress(*buf, (unsigned)nbytes, out, (unsigned)cap);
			if (got)
				break;
			H5free_memory(out);
			if (errno != E2BIG)
				return 0;
			cap *= 2;
		}
		if (nparams >= 3 && params[2] && got != params[2]) {
			H5free_memory(out); /* damaged: it decodes short (the rest read as zeros) */
			return 0;
		}
	}
	H5free_memory(*buf);
	*buf = out;
	*buf_size = cap;
	return got;
}

static const H5Z_class2_t lzf_class = {
    .version = H5Z_CLASS_T_VERS,
    .id = FILTER_LZF,
    .encoder_present = 1,
    .decoder_present = 1,
    .name = "lzf (pathmap-ingest, liblzf)",
    .filter = lzf_filter,
};

static void register_once(void)
{
	(void)H5Zregister(&lzf_class);
	H5Eclear2(H5E_DEFAULT);
}

void pio_register_filters(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, register_once);
}

/* ---- filters ---- */

/* The Debian package that brings a filter HDF5 does not have built in, or NULL. */
static const char *filter_package(H5Z_filter_t id)
{
	switch (id) {
	case 307:   /* bzip2 */
	case 32004: /* lz4 */
		return "hdf5-filter-plugin";
	case 32001:
		return "hdf5-filter-plugin-blosc-serial";
	case 32013:
		return "hdf5-filter-plugin-zfp-serial";
	default:
		return NULL;
	}
}

/*
 * Chunks looked up one by one at most. HDF5 1.10's lookup of one chunk
 * (H5Dget_chunk_info_by_coord) walks the dataset's chunk index, so a walk over every chunk
 * grows with the square of their number: 10,000 chunks took 12 s, 40,000 over 3 minutes
 * (and a damaged extent of 10^14 records, forever). Past this many, the checks that need
 * one chunk at a time give their verdict without the walk.
 */
#define CHUNK_WALK_MAX 1024

/* The chunk grid of a chunked dataset, walked in row-major order. */
struct chunk_grid {
	int rank;
	hsize_t dims[H5S_MAX_RANK];  /* the dataset's extent */
	hsize_t cdims[H5S_MAX_RANK]; /* a chunk's */
	hsize_t grid[H5S_MAX_RANK];  /* chunks along each dimension */
	hsize_t total;		     /* chunks in all */
};

/* Fills *g for chunked dataset d; false (HDF5's errors cleared) when it cannot. */
static bool chunk_grid_init(hid_t d, hid_t dcpl, struct chunk_grid *g)
{
	hid_t sp = H5Dget_space(d);

	g->rank = sp >= 0 ? H5Sget_simple_extent_dims(sp, g->dims, NULL) : -1;
	if (sp >= 0)
		H5Sclose(sp);
	if (g->rank < 1 || H5Pget_chunk(dcpl, g->rank, g->cdims) != g->rank) {
		H5Eclear2(H5E_DEFAULT);
		return false;
	}
	g->total = 1;
	for (int k = 0; k < g->rank; k++) {
		g->grid[k] = g->cdims[k] ? (g->dims[k] + g->cdims[k] - 1) / g->cdims[k] : 0;
		g->total *= g->grid[k];
	}
	return true;
}

/* The offset of chunk i (row-major) in off; whether it has storage, and its filter mask in
 * *mask (a chunk HDF5 cannot tell about counts as stored, mask 0: it is not refused). */
static bool chunk_at(hid_t d, const struct chunk_grid *g, hsize_t i, hsize_t *off, unsigned *mask)
{
	haddr_t addr = HADDR_UNDEF;
	hsize_t size = 0;

	for (int k = g->rank - 1; k >= 0; k--) {
		off[k] = i % g->grid[k] * g->cdims[k];
		i /= g->grid[k];
	}
	if (H5Dget_chunk_info_by_coord(d, off, mask, &addr, &size) < 0) {
		H5Eclear2(H5E_DEFAULT);
		*mask = 0;
		return true;
	}
	return addr != HADDR_UNDEF;
}

/* Whether some stored chunk of d went through filter idx of its pipeline (true when that
 * cannot be told). An optional filter is skipped for a chunk it fails on (its bit set in the
 * chunk's filter mask): a filter that cannot be loaded is harmless only when every chunk
 * skipped it. */
static bool filter_used(hid_t d, hid_t dcpl, int idx)
{
	hsize_t off[H5S_MAX_RANK];
	struct chunk_grid g;
	unsigned mask;

	if (!chunk_grid_init(d, dcpl, &g) || g.total > CHUNK_WALK_MAX)
		return true; /* too many chunks to tell: the filter counts as needed */
	for (hsize_t i = 0; i < g.total; i++)
		if (chunk_at(d, &g, i, off, &mask) && !(mask & (1u << idx)))
			return true;
	return false;
}

static int check_filters(hid_t d, hid_t dcpl, const char *file, const char *path,
			 struct pio_err *err)
{
	int n = H5Pget_nfilters(dcpl);

	for (int i = 0; i < n; i++) {
		char name[80] = "";
		unsigned flags, conf = 0, cfg = 0;
		size_t nparams = 0;
		H5Z_filter_t id;
		const char *pkg;

		id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nparams, NULL, sizeof(name), name,
				    &conf);
		if (id < 0)
			return pio_seterr(err, PIO_ECORRUPT, file, path,
					  "cannot read its filter pipeline");
		if (H5Zfilter_avail(id) > 0 && H5Zget_filter_info(id, &cfg) >= 0 &&
		    (cfg & H5Z_FILTER_CONFIG_DECODE_ENABLED)) {
			H5Eclear2(H5E_DEFAULT);
			continue;
		}
		H5Eclear2(H5E_DEFAULT); /* the failed plugin search says nothing useful */
		if ((flags & H5Z_FLAG_OPTIONAL) && !filter_used(d, dcpl, i))
			continue;
		pkg = filter_package(id);
		return pio_seterr(err, PIO_EREAD, file, path,
				  "its records pass through HDF5 filter %d ('%s'), which this "
				  "process cannot load%s%s%s; HDF5 looks for plugins in "
				  "HDF5_PLUGIN_PATH, else in %s",
				  (int)id, name[0] ? name : "unnamed",
				  pkg ? " (Debian package " : "", pkg ? pkg : "", pkg ? ")" : "",
				  H5_DEFAULT_PLUGINDIR);
	}
	return 0;
}

/* ---- file lookup ---- */

static char *join(const char *dir, size_t dlen, const char *name)
{
	size_t n = strlen(name);
	char *p = malloc(dlen + n + 2);

	if (!p)
		return NULL;
	memcpy(p, dir, dlen);
	p[dlen] = '/';
	memcpy(p + dlen + 1, name, n + 1);
	return p;
}

/* Length of the directory part of path ("." when it has none: *dir is set to it). */
static size_t dir_of(const char *path, const char **dir)
{
	const char *s = strrchr(path, '/');

	if (!s) {
		*dir = ".";
		return 1;
	}
	*dir = path;
	return s == path ? 1 : (size_t)(s - path);
}

/* A prefix with "${ORIGIN}" at its start in the directory of file (HDF5's expansion). */
static char *expand_origin(const char *prefix, size_t len, const char *file)
{
	static const char origin[] = "${ORIGIN}";
	const char *dir;
	size_t dl, ol = sizeof(origin) - 1;
	char *p;

	if (len < ol || memcmp(prefix, origin, ol)) {
		p = malloc(len + 1);
		if (p) {
			memcpy(p, prefix, len);
			p[len] = 0;
		}
		return p;
	}
	dl = dir_of(file, &dir);
	p = malloc(dl + len - ol + 1);
	if (p) {
		memcpy(p, dir, dl);
		memcpy(p + dl, prefix + ol, len - ol);
		p[dl + len - ol] = 0;
	}
	return p;
}

/* Opens name as HDF5 opens a virtual dataset's source file for the virtual dataset in file,
 * trying in HDF5's order: the name itself when absolute, then its last part under each
 * HDF5_VDS_PREFIX entry, under the directory of file, as it stands (the working
 * directory), and under the directory of file's real path. */
static hid_t open_source_file(const char *file, const char *name)
{
	const char *base = name, *env = getenv("HDF5_VDS_PREFIX"), *dir;
	char *real, *cand[3];
	hid_t f = H5I_INVALID_HID;
	size_t dl;

	if (name[0] == '/') {
		f = H5Fopen(name, H5F_ACC_RDONLY, H5P_DEFAULT);
		base = strrchr(name, '/') + 1;
	}
	for (const char *p = env; p && *p && f < 0;) {
		const char *e = strchrnul(p, ':');
		char *pre = e > p ? expand_origin(p, (size_t)(e - p), file) : NULL;
		char *full = pre ? join(pre, strlen(pre), base) : NULL;

		if (full)
			f = H5Fopen(full, H5F_ACC_RDONLY, H5P_DEFAULT);
		free(full);
		free(pre);
		p = *e ? e + 1 : e;
	}
	if (f >= 0) {
		H5Eclear2(H5E_DEFAULT); /* of the names tried before */
		return f;
	}
	dl = dir_of(file, &dir);
	cand[0] = join(dir, dl, base);
	cand[1] = strdup(base);
	cand[2] = NULL;
	real = realpath(file, NULL);
	if (real) {
		dl = dir_of(real, &dir);
		cand[2] = join(dir, dl, base);
	}
	for (int i = 0; i < 3; i++) {
		if (f < 0 && cand[i])
			f = H5Fopen(cand[i], H5F_ACC_RDONLY, H5P_DEFAULT);
		free(cand[i]);
	}
	free(real);
	H5Eclear2(H5E_DEFAULT);
	return f;
}

/* ---- virtual datasets ---- */

struct span {
	hsize_t lo, hi; /* records lo..hi, both included */
};

static int span_cmp(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/*
 * Appends the records (rows of dimension 0) that selection sp covers to *v. Returns 1 when
 * the selection's blocks cannot be listed (unlimited, too many, or, with rank 2, a block
 * narrower than a row): coverage is then not checked.
 */
static int add_spans(hid_t sp, int rank, const hsize_t *dims, struct span **v, size_t *n,
		     size_t *cap)
{
	H5S_sel_type t = H5Sget_select_type(sp);
	hssize_t nb;
	hsize_t *bl;

	if (t == H5S_SEL_NONE)
		return 0;
	if (t == H5S_SEL_ALL) {
		nb = 1;
		bl = malloc(2 * (size_t)rank * sizeof(*bl));
		if (!bl)
			return -1;
		for (int d = 0; d < rank; d++) {
			bl[d] = 0;
			bl[rank + d] = dims[d] ? dims[d] - 1 : 0;
		}
		if (!dims[0])
			nb = 0;
	} else if (t == H5S_SEL_HYPERSLABS) {
		nb = H5Sget_select_hyper_nblocks(sp);
		if (nb < 0 || (size_t)nb > MAPPED_BLOCKS_MAX)
			return 1;
		bl = malloc((size_t)(nb ? nb : 1) * 2 * (size_t)rank * sizeof(*bl));
		if (!bl)
			return -1;
		if (nb && H5Sget_select_hyper_blocklist(sp, 0, (hsize_t)nb, bl) < 0) {
			free(bl);
			return 1;
		}
	} else {
		return 1;
	}
	for (hssize_t i = 0; i < nb; i++) {
		const hsize_t *s = bl + 2 * (size_t)i * rank, *e = s + rank;

		if (rank == 2 && (s[1] != 0 || e[1] + 1 != dims[1])) {
			free(bl);
			return 1; /* a row from several sources */
		}
		if (*n == *cap) {
			size_t c = *cap ? 2 * *cap : 64;
			struct span *w = realloc(*v, c * sizeof(*w));

			if (!w) {
				free(bl);
				return -1;
			}
			*v = w;
			*cap = c;
		}
		(*v)[(*n)++] = (struct span){s[0], e[0]};
	}
	free(bl);
	return 0;
}

static int check_dataset(hid_t f, hid_t d, const char *file, const char *path, int depth,
			 struct pio_err *err);

/* Whether mapping i of a virtual dataset reads a source that exists and holds every record
 * the mapping takes from it. */
/* Checks the references of the variable-length strings in field member of dataset d (the
 * dataset's own strings when member is NULL), nrec records, with c. */
static int check_field_strings(struct pio_vlcheck *c, hid_t d, const char *file, const char *dset,
			       const char *member, uint64_t nrec, uint8_t *buf, struct pio_err *err)
{
	char what[96];
	const char *w[2] = {what, NULL};
	hid_t raw = pio_vlcheck_type(c, member, NULL);
	int rc = 0;

	snprintf(what, sizeof(what), member ? "field '%s'" : "string", member);
	if (raw < 0)
		return pio_seterr(err, PIO_ENOMEM, file, dset, "out of memory");
	for (uint64_t pos = 0; pos < nrec && !rc; pos += STRING_PIECE) {
		uint64_t count = nrec - pos < STRING_PIECE ? nrec - pos : STRING_PIECE;

		if (pio_read_part(d, raw, H5P_DEFAULT, 1, 1, pos, count, buf))
			rc = pio_seterr(err, PIO_EREAD, file, dset,
					"cannot read records %llu..%llu", (unsigned long long)pos,
					(unsigned long long)(pos + count - 1));
		else
			rc = pio_vlcheck_refs(c, buf, count, pio_vlcheck_refsize(c), pos, dset, w,
					      err);
	}
	H5Tclose(raw);
	return rc;
}

/*
 * A virtual dataset's variable-length strings lie in its sources' heaps, where the reader's
 * check (heapcheck.c) does not look: here, at open, the references of every string field of
 * a source that is not itself virtual (those are checked through their own sources) are
 * checked against the source file's heap, in pieces of STRING_PIECE records.
 */
static int check_strings(hid_t sf, hid_t sd, const char *dset, struct pio_err *err)
{
	hid_t t = H5Dget_type(sd), dcpl = H5Dget_create_plist(sd), sp = H5Dget_space(sd);
	struct pio_vlcheck *c = NULL;
	uint8_t *buf = NULL;
	char name[PATH_MAX];
	hsize_t dims[H5S_MAX_RANK];
	int rc = 0, n = 0;

	if (t < 0 || dcpl < 0 || sp < 0 || H5Pget_layout(dcpl) == H5D_VIRTUAL ||
	    H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0)
		goto out;
	if (H5Tget_class(t) == H5T_COMPOUND)
		n = H5Tget_nmembers(t);
	else if (H5Tis_variable_str(t) <= 0)
		goto out;
	if (H5Fget_name(sf, name, sizeof(name)) <= 0)
		goto out;
	for (int i = 0; i < (n ? n : 1) && !rc; i++) {
		hid_t mt = n ? H5Tget_member_type(t, (unsigned)i) : H5I_INVALID_HID;
		char *member = n ? H5Tget_member_name(t, (unsigned)i) : NULL;

		if (!n || (mt >= 0 && member && H5Tis_variable_str(mt) > 0)) {
			if (!c && !(rc = pio_vlcheck_open(sf, name, &c, err)) &&
			    !(buf = malloc(STRING_PIECE * pio_vlcheck_refsize(c))))
				rc = pio_seterr(err, PIO_ENOMEM, name, dset, "out of memory");
			if (!rc)
				rc = check_field_strings(c, sd, name, dset, member, dims[0], buf,
							 err);
		}
		if (mt >= 0)
			H5Tclose(mt);
		if (member)
			H5free_memory(member);
	}
out:
	free(buf);
	pio_vlcheck_close(c);
	if (sp >= 0)
		H5Sclose(sp);
	if (dcpl >= 0)
		H5Pclose(dcpl);
	if (t >= 0)
		H5Tclose(t);
	H5Eclear2(H5E_DEFAULT);
	return rc;
}

static int check_source(hid_t f, hid_t dcpl, size_t i, const char *file, const char *path,
			int depth, struct pio_err *err)
{
	ssize_t fl = H5Pget_virtual_filename(dcpl, i, NULL, 0);
	ssize_t dl = H5Pget_virtual_dsetname(dcpl, i, NULL, 0);
	char *sfile = fl >= 0 ? malloc((size_t)fl + 1) : NULL;
	char *sdset = dl >= 0 ? malloc((size_t)dl + 1) : NULL;
	hid_t sf = H5I_INVALID_HID, sd = H5I_INVALID_HID, ss = H5I_INVALID_HID;
	hid_t vs = H5I_INVALID_HID, sp = H5I_INVALID_HID;
	hsize_t vlo[H5S_MAX_RANK], vhi[H5S_MAX_RANK], slo[H5S_MAX_RANK], shi[H5S_MAX_RANK];
	hsize_t sdims[H5S_MAX_RANK];
	int rc = 0, rank;

	if (!sfile || !sdset) {
		rc = pio_seterr(err, PIO_ENOMEM, file, path, "out of memory");
		goto out;
	}
	if (H5Pget_virtual_filename(dcpl, i, sfile, (size_t)fl + 1) < 0 ||
	    H5Pget_virtual_dsetname(dcpl, i, sdset, (size_t)dl + 1) < 0) {
		rc = pio_seterr(err, PIO_ECORRUPT, file, path, "cannot read its virtual mapping");
		goto out;
	}
	/* printf-style names (a mapping of unlimited size) name files that HDF5 looks for as
	 * the dataset grows; their absence is how it ends */
	if (strchr(sfile, '%') || strchr(sdset, '%'))
		goto out;
	vs = H5Pget_virtual_vspace(dcpl, i);
	if (vs < 0 || H5Sget_select_npoints(vs) <= 0)
		goto out;
	if (H5Sget_select_bounds(vs, vlo, vhi) < 0) {
		H5Eclear2(H5E_DEFAULT);
		goto out;
	}
	sf = strcmp(sfile, ".") ? open_source_file(file, sfile) : f;
	if (sf < 0) {
		rc = pio_seterr(err, PIO_ENOENT, file, path,
				"records %llu..%llu come from '%s':%s, and that file cannot be "
				"opened, next to this one, in HDF5_VDS_PREFIX or in the working "
				"directory (HDF5 would read fill values in their place)",
				(unsigned long long)vlo[0], (unsigned long long)vhi[0], sfile,
				sdset);
		goto out;
	}
	if (H5Lexists(sf, sdset, H5P_DEFAULT) <= 0 || (sd = H5Dopen2(sf, sdset, H5P_DEFAULT)) < 0) {
		rc = pio_seterr(err, PIO_ENODATASET, file, path,
				"records %llu..%llu come from '%s':%s, and that file has no such "
				"dataset (HDF5 would read fill values in their place)",
				(unsigned long long)vlo[0], (unsigned long long)vhi[0], sfile,
				sdset);
		goto out;
	}
	/* a source of another size than the mapping says: its whole ("all" selection, whose
	 * extent the mapping does not keep) holds as many elements as the virtual selection,
	 * and a hyperslab of it ends inside it */
	ss = H5Pget_virtual_srcspace(dcpl, i);
	sp = H5Dget_space(sd);
	rank = sp >= 0 ? H5Sget_simple_extent_dims(sp, sdims, NULL) : -1;
	if (ss >= 0 && rank > 0) {
		hssize_t want = H5Sget_select_npoints(vs), have = H5Sget_simple_extent_npoints(sp);
		hsize_t row = have > 0 && sdims[0] ? (hsize_t)have / sdims[0] : 1;
		bool bad = false;

		if (H5Sget_select_type(ss) == H5S_SEL_ALL) {
			bad = have != want;
		} else if (H5Sget_simple_extent_ndims(ss) == rank &&
			   H5Sget_select_bounds(ss, slo, shi) >= 0) {
			for (int k = 0; k < rank; k++)
				bad = bad || shi[k] >= sdims[k];
		}
		if (bad) {
			rc = pio_seterr(err, PIO_ECORRUPT, file, path,
					"records %llu..%llu come from '%s':%s, which has %llu "
					"records where the mapping takes %llu (HDF5 would read "
					"fill values, or fail)",
					(unsigned long long)vlo[0], (unsigned long long)vhi[0],
					sfile, sdset, (unsigned long long)sdims[0],
					(unsigned long long)((hsize_t)want / (row ? row : 1)));
			goto out;
		}
	}
	H5Eclear2(H5E_DEFAULT);
	rc = check_dataset(sf, sd, sf == f ? file : sfile, sdset, depth + 1, err);
	if (!rc)
		rc = check_strings(sf, sd, sdset, err);
out:
	if (sp >= 0)
		H5Sclose(sp);
	if (ss >= 0)
		H5Sclose(ss);
	if (vs >= 0)
		H5Sclose(vs);
	if (sd >= 0)
		H5Dclose(sd);
	if (sf >= 0 && sf != f)
		H5Fclose(sf);
	free(sfile);
	free(sdset);
	H5Eclear2(H5E_DEFAULT);
	return rc;
}

static int check_virtual(hid_t f, hid_t d, hid_t dcpl, const char *file, const char *path,
			 int depth, struct pio_err *err)
{
	hsize_t dims[H5S_MAX_RANK], next = 0;
	struct span *v = NULL;
	size_t n = 0, nv = 0, cap = 0, i;
	bool spans = true;
	hid_t sp;
	int rank, rc = 0;

	if (depth >= VIRTUAL_DEPTH_MAX)
		return pio_seterr(err, PIO_ECORRUPT, file, path,
				  "virtual datasets nested more than %d deep", VIRTUAL_DEPTH_MAX);
	sp = H5Dget_space(d);
	rank = sp >= 0 ? H5Sget_simple_extent_dims(sp, dims, NULL) : -1;
	if (sp >= 0)
		H5Sclose(sp);
	if (H5Pget_virtual_count(dcpl, &n) < 0 || rank < 1)
		return pio_seterr(err, PIO_ECORRUPT, file, path, "cannot read its virtual mapping");
	for (i = 0; i < n && !rc; i++) {
		hid_t vs;

		rc = check_source(f, dcpl, i, file, path, depth, err);
		if (rc || !spans)
			continue;
		vs = H5Pget_virtual_vspace(dcpl, i);
		if (vs < 0 || rank > 2) {
			spans = false;
		} else {
			int r = add_spans(vs, rank, dims, &v, &nv, &cap);

			if (r < 0)
				rc = pio_seterr(err, PIO_ENOMEM, file, path, "out of memory");
			spans = r == 0;
		}
		if (vs >= 0)
			H5Sclose(vs);
		H5Eclear2(H5E_DEFAULT);
	}
	if (!rc && spans && dims[0]) {
		qsort(v, nv, sizeof(*v), span_cmp);
		for (i = 0; i < nv && v[i].lo <= next; i++)
			if (v[i].hi + 1 > next)
				next = v[i].hi + 1;
		if (next < dims[0])
			rc = pio_seterr(err, PIO_ECORRUPT, file, path,
					"records %llu..%llu of this virtual dataset come from no "
					"source (HDF5 would read fill values there)",
					(unsigned long long)next,
					(unsigned long long)(i < nv ? v[i].lo - 1 : dims[0] - 1));
	}
	free(v);
	return rc;
}

/* ---- external raw data files ---- */

static int check_external(hid_t d, hid_t dcpl, const char *file, const char *path,
			  struct pio_err *err)
{
	int n = H5Pget_external_count(dcpl);
	const char *env = getenv("HDF5_EXTFILE_PREFIX");
	hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
	hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
	size_t ts = t >= 0 ? H5Tget_size(t) : 0;
	uint64_t need = np > 0 && ts ? (uint64_t)np * ts : 0;
	char *prefix = env && *env ? expand_origin(env, strlen(env), file) : NULL;
	int rc = 0;

	if (t >= 0)
		H5Tclose(t);
	if (sp >= 0)
		H5Sclose(sp);
	for (int i = 0; i < n && need && !rc; i++) {
		char name[4096];
		off_t off;
		hsize_t size;
		uint64_t take;
		struct stat st;
		char *full;

		if (H5Pget_external(dcpl, (unsigned)i, sizeof(name), name, &off, &size) < 0) {
			rc = pio_seterr(err, PIO_ECORRUPT, file, path,
					"cannot read its list of external files");
			break;
		}
		name[sizeof(name) - 1] = 0;
		take = size == H5F_UNLIMITED || size > need ? need : size;
		full = prefix && name[0] != '/' ? join(prefix, strlen(prefix), name) : strdup(name);
		if (!full) {
			rc = pio_seterr(err, PIO_ENOMEM, file, path, "out of memory");
			break;
		}
		if (stat(full, &st) != 0 || access(full, R_OK) != 0)
			rc = pio_seterr(err, PIO_ENOENT, file, path,
					"its records are stored in the external file '%s', which "
					"cannot be opened: %s (relative names are taken from the "
					"working directory, or HDF5_EXTFILE_PREFIX)",
					full, strerror(errno));
		else if ((uint64_t)st.st_size < (uint64_t)off + take)
			rc = pio_seterr(
			    err, PIO_ECORRUPT, file, path,
			    "its records are stored in the external file '%s', which "
			    "has %llu bytes where %llu are needed (HDF5 would read zeros "
			    "past its end)",
			    full, (unsigned long long)st.st_size,
			    (unsigned long long)((uint64_t)off + take));
		free(full);
		need -= take;
	}
	free(prefix);
	H5Eclear2(H5E_DEFAULT);
	return rc;
}

/* ---- records never written ---- */

/*
 * A chunked dataset reads its fill value wherever no chunk was ever stored: a writer that
 * made the dataset at its full size (or grew it) and stopped early, killed or out of time,
 * leaves such a file, sound to HDF5. Refused, naming the first run of records with no
 * chunk. A contiguous dataset whose storage was never allocated had no record written.
 */
static int check_written(hid_t d, hid_t dcpl, const char *file, const char *path,
			 struct pio_err *err)
{
	hsize_t off[H5S_MAX_RANK], nch = 0, i, lo, hi;
	H5D_space_status_t st;
	H5D_layout_t lay = H5Pget_layout(dcpl);
	struct chunk_grid g;
	unsigned mask;
	hid_t sp;
	herr_t got;

	if (lay == H5D_CONTIGUOUS) {
		hsize_t dims[H5S_MAX_RANK];
		hssize_t np = 0;

		sp = H5Dget_space(d);
		if (sp >= 0 && H5Sget_simple_extent_dims(sp, dims, NULL) > 0)
			np = H5Sget_simple_extent_npoints(sp);
		if (sp >= 0)
			H5Sclose(sp);
		if (np > 0 && H5Pget_external_count(dcpl) == 0 &&
		    H5Dget_space_status(d, &st) >= 0 && st == H5D_SPACE_STATUS_NOT_ALLOCATED)
			return pio_seterr(err, PIO_ECORRUPT, file, path,
					  "none of its %llu records was ever written (it has no "
					  "storage; HDF5 would read fill values)",
					  (unsigned long long)dims[0]);
		H5Eclear2(H5E_DEFAULT);
		return 0;
	}
	if (lay != H5D_CHUNKED || !chunk_grid_init(d, dcpl, &g) || !g.total)
		return 0; /* no records, or no grid to tell */
	sp = H5Dget_space(d);
	got = sp >= 0 ? H5Dget_num_chunks(d, sp, &nch) : -1;
	if (sp >= 0)
		H5Sclose(sp);
	if (got < 0 || nch >= g.total) {
		H5Eclear2(H5E_DEFAULT);
		return 0;
	}
	if (g.total > CHUNK_WALK_MAX) /* too many to find the first missing one */
		return pio_seterr(err, PIO_ECORRUPT, file, path,
				  "%llu of its %llu chunks are missing: records were never written "
				  "(a writer that stopped early?), and HDF5 would read fill values "
				  "there",
				  (unsigned long long)(g.total - nch), (unsigned long long)g.total);
	/* the first chunk without storage, in row-major order */
	for (i = 0; i < g.total && chunk_at(d, &g, i, off, &mask); i++)
		;
	if (i == g.total)
		return 0;
	/* and the chunks after it along the records, as long as they have none either */
	lo = off[0];
	for (i += g.total / g.grid[0]; i < g.total && !chunk_at(d, &g, i, off, &mask);
	     i += g.total / g.grid[0])
		;
	hi = (i < g.total ? off[0] : g.dims[0]) - 1;
	return pio_seterr(err, PIO_ECORRUPT, file, path,
			  "records %llu..%llu were never written: no chunk holds them (%llu of "
			  "its %llu chunks are missing; a writer that stopped early?), and HDF5 "
			  "would read fill values there",
			  (unsigned long long)lo, (unsigned long long)hi,
			  (unsigned long long)(g.total - nch), (unsigned long long)g.total);
}

static int check_dataset(hid_t f, hid_t d, const char *file, const char *path, int depth,
			 struct pio_err *err)
{
	hid_t dcpl = H5Dget_create_plist(d);
	int rc;

	if (dcpl < 0)
		return pio_seterr(err, PIO_ECORRUPT, file, path, "cannot read its storage layout");
	rc = check_filters(d, dcpl, file, path, err);
	if (!rc)
		rc = check_written(d, dcpl, file, path, err);
	if (!rc && H5Pget_layout(dcpl) == H5D_VIRTUAL)
		rc = check_virtual(f, d, dcpl, file, path, depth, err);
	if (!rc && H5Pget_external_count(dcpl) > 0)
		rc = check_external(d, dcpl, file, path, err);
	H5Pclose(dcpl);
	H5Eclear2(H5E_DEFAULT);
	return rc;
}

int pio_check_storage(hid_t f, hid_t d, const char *file, const char *path, struct pio_err *err)
{
	return check_dataset(f, d, file, path, 0, err);
}
