/*
 * ingest.c - one ingest run: plan, the read/route/fill loop, finalize (see ingest.h).
 */
#define _GNU_SOURCE /* RTLD_DEFAULT, glob */
#include <dlfcn.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ingest_internal.h"
#include "kb.h"
#include "pme_cmd.h"

/*
 * Debug builds take every zipper through the checked pm_head call and abort on a conflict:
 * a run-time confirmation of the static disjointness argument in pme_partition.h; and the KB
 * writer hashes every key again to check that it sits under its own partition. Release
 * builds trust the argument and the router: they take the unchecked call, and the writer
 * skips the hashing (4% of a 2-thread ingest of 10 M random keys; a key held by two
 * partitions, the one way a routing fault could change the KB's content, still fails).
 */
#ifdef NDEBUG
static const bool checked_zippers = false;
#else
static const bool checked_zippers = true;
#endif

#define SAMPLE_SLICES 16      /* prefix scheme: slices of the input sampled */
#define SAMPLE_PER_SLICE 4096 /* records read per slice */
/* Cap of budget-sized batches: the bigger a batch, the more records each partition takes from
 * it in key order, and the shorter the zipper's moves between them (10 M random keys, P = 256:
 * the fill is 1.3-1.4x faster with 2^21-record batches than with 2^18). */
#define BATCH_CAP ((size_t)1 << 21)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *pme_allocator_name(void)
{
	return dlsym(RTLD_DEFAULT, "mallctl") ? "jemalloc" : "glibc";
}

const char *pme_allocator_thp(void)
{
	int (*ctl)(const char *, void *, size_t *, void *, size_t);
	const char *v = NULL;
	size_t sz = sizeof(v);

	*(void **)&ctl = dlsym(RTLD_DEFAULT, "mallctl");
	if (!ctl || ctl("opt.thp", &v, &sz, NULL, 0) || !v)
		return "n/a";
	return v;
}

uint64_t pme_peak_rss(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (uint64_t)ru.ru_maxrss * 1024;
}

const char *pme_strerror(int rc)
{
	switch (rc) {
	case 0:
		return "success";
	case PME_EUSAGE:
		return "invalid option or configuration";
	case PME_EDUP:
		return "duplicate key under --on-duplicate error";
	case PME_ESUM:
		return "a sum leaves the 64-bit integer range under --on-duplicate sum";
	case PME_EPOLICY:
		return "numeric duplicate policy on string/opaque values";
	case PME_ETYPE:
		return "key or value types differ";
	case PME_ECANCELED:
		return "interrupted";
	case PME_EINTERNAL:
		return "internal error";
	case PME_EINPUT:
		return "an input cannot be read";
	case PME_EOUTPUT:
		return "an output cannot be written";
	}
	return pkb_strerror(rc);
}

int pme_exit_status(int rc)
{
	switch (rc) {
	case 0:
		return PME_EXIT_OK;
	case PME_EUSAGE:
		return PME_EXIT_USAGE;
	case PME_EDUP:
	case PME_ESUM:
	case PME_EPOLICY:
		return PME_EXIT_DATA;
	case PME_ETYPE:
	case PME_EINPUT:
		return PME_EXIT_INPUT;
	case PME_EOUTPUT:
		return PME_EXIT_OUTPUT;
	case PME_ECANCELED:
	case PKB_ECANCELED:
		return PME_EXIT_INTERRUPTED;
	case PM_ENOMEM:
		return PME_EXIT_NOMEM;
	case PME_EINTERNAL:
		return PME_EXIT_DATA;
	}
	if (pkb_is_input_error(rc))
		return PME_EXIT_INPUT;
	if (rc == PM_EOVERFLOW)
		return PME_EXIT_NOMEM;
	return PME_EXIT_OUTPUT; /* -errno from the KB writer */
}

/* The inode of the directory holding path, and where its last component starts. */
static int parent_dir(const char *path, struct stat *st, const char **base)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int rc;

	*base = slash ? slash + 1 : path;
	if (!slash)
		return stat(".", st);
	dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
	if (!dir)
		return -1;
	rc = stat(dir, st);
	free(dir);
	return rc;
}

bool pme_same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	const char *ba, *bb;
	int ea = stat(a, &sa), eb = stat(b, &sb);

	if (!ea && !eb)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	if (!ea || !eb)
		return false;
	if (parent_dir(a, &sa, &ba) || parent_dir(b, &sb, &bb))
		return false;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino && !strcmp(ba, bb);
}

/* An io/ code as an engine code: its class decides (PIO_ENOENT is -2, like other -ENOENT). */
static int from_pio(int rc)
{
	switch (pio_error_class(rc)) {
	case PIO_CLASS_OK:
		return 0;
	case PIO_CLASS_INPUT:
		return PME_EINPUT;
	case PIO_CLASS_OUTPUT:
		return PME_EOUTPUT;
	case PIO_CLASS_NOMEM:
		return PM_ENOMEM;
	case PIO_CLASS_USAGE:
		return PME_EUSAGE;
	default:
		return PME_EINTERNAL;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Inputs */

struct inputs {
	struct pio_input *in; /* for pio_reader_open */
	char **file;	      /* owned: expanded file names */
	char **name;	      /* owned: "FILE:DATASET" for the KB's metadata */
	size_t n;	      /* number */
};

static void inputs_free(struct inputs *x)
{
	size_t i;

	for (i = 0; i < x->n; i++) {
		free(x->file[i]);
		free(x->name[i]);
	}
	free(x->in);
	free(x->file);
	free(x->name);
	memset(x, 0, sizeof(*x));
}

static int inputs_add(struct inputs *x, const struct pme_config *c, const char *file,
		      const char *dset)
{
	struct pio_input *in = realloc(x->in, (x->n + 1) * sizeof(*in));
	char **f, **nm;
	size_t need;

	if (!in)
		return PM_ENOMEM;
	x->in = in;
	f = realloc(x->file, (x->n + 1) * sizeof(*f));
	if (!f)
		return PM_ENOMEM;
	x->file = f;
	nm = realloc(x->name, (x->n + 1) * sizeof(*nm));
	if (!nm)
		return PM_ENOMEM;
	x->name = nm;
	x->file[x->n] = strdup(file);
	need = strlen(file) + (c->keys ? strlen(c->keys) + strlen(c->values) : strlen(dset)) + 4;
	x->name[x->n] = malloc(need);
	if (!x->file[x->n] || !x->name[x->n]) {
		free(x->file[x->n]);
		free(x->name[x->n]);
		return PM_ENOMEM;
	}
	if (c->keys)
		snprintf(x->name[x->n], need, "%s:%s,%s", file, c->keys, c->values);
	else
		snprintf(x->name[x->n], need, "%s:%s", file, dset);
	memset(&x->in[x->n], 0, sizeof(x->in[x->n]));
	x->in[x->n].file = x->file[x->n];
	if (c->keys) {
		x->in[x->n].keys = c->keys;
		x->in[x->n].values = c->values;
	} else {
		x->in[x->n].key_field = c->key_field;
		x->in[x->n].value_field = c->value_field;
	}
	x->in[x->n].count = PIO_TO_END;
	x->n++;
	return 0;
}

/* Expands "FILE[:/dataset]" specs (FILE may be a glob) into x. The dataset part starts at
 * the last ":/" of the spec. A FILE that exists as written is that file, not a pattern: a
 * name holding '[', '*', '?' or a backslash (a shell expanded it already) would else match others.
 */
static int inputs_expand(struct inputs *x, const struct pme_config *c, struct pme_err *err)
{
	size_t i, j;
	int rc = 0;

	for (i = 0; i < c->n_inputs; i++) {
		char *spec = strdup(c->inputs[i]), *colon;
		const char *dset = "/data";
		glob_t g;

		if (!spec)
			return pme_seterr(err, PM_ENOMEM, "out of memory");
		colon = strstr(spec, ":/");
		while (colon && strstr(colon + 1, ":/"))
			colon = strstr(colon + 1, ":/");
		if (colon) {
			*colon = '\0';
			dset = colon + 1;
		}
		if (colon && c->keys) { /* it would be ignored */
			rc = pme_seterr(err, PME_EUSAGE,
					"--input %s names a dataset, but --keys and --values name "
					"the datasets of every input",
					c->inputs[i]);
			free(spec);
			return rc;
		}
		if (!access(spec, F_OK) || !strpbrk(spec, "[*?\\")) {
			rc = inputs_add(x, c, spec, dset);
		} else {
			if (glob(spec, GLOB_NOCHECK, NULL, &g) != 0) {
				free(spec);
				return pme_seterr(err, PM_ENOMEM, "out of memory");
			}
			for (j = 0; j < g.gl_pathc && !rc; j++)
				rc = inputs_add(x, c, g.gl_pathv[j], dset);
			globfree(&g);
		}
		free(spec);
		if (rc)
			return pme_seterr(err, rc, "out of memory");
	}
	/* datasets are borrowed by pio_reader_open from x->name (after the ':') */
	for (i = 0; i < x->n && !c->keys; i++)
		x->in[i].dataset = x->name[i] + strlen(x->file[i]) + 1;
	return 0;
}

/* Refuses an output that is also an input (--output or --report over an HDF5 input or the
 * --into KB, or --report over the KB): the run would replace what it reads or writes. */
static int check_outputs(const struct inputs *inp, const struct pme_config *c, struct pme_err *err)
{
	size_t i;

	for (i = 0; i < inp->n; i++) {
		if (pme_same_file(c->output, inp->file[i]))
			return pme_seterr(err, PME_EUSAGE,
					  "--output %s is the input %s: it would be replaced",
					  c->output, inp->file[i]);
		if (c->report && pme_same_file(c->report, inp->file[i]))
			return pme_seterr(err, PME_EUSAGE,
					  "--report %s is the input %s: it would be replaced",
					  c->report, inp->file[i]);
	}
	if (c->report && pme_same_file(c->report, c->output))
		return pme_seterr(err, PME_EUSAGE,
				  "--report %s is the --output KB: the report would replace it",
				  c->report);
	if (c->report && c->into && pme_same_file(c->report, c->into))
		return pme_seterr(err, PME_EUSAGE,
				  "--report %s is the --into KB: the report would replace it",
				  c->report);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Zipper table (prefix scheme): d-byte prefix -> its write zipper */

struct ztable {
	uint64_t *key; /* prefixes */
	pm_wz **wz;    /* zippers (NULL: empty slot) */
	size_t cap;    /* slots, a power of two */
	size_t n;      /* used */
};

static size_t zslot(const struct ztable *t, uint64_t k)
{
	size_t i = (size_t)(XXH3_64bits(&k, sizeof(k)) & (t->cap - 1));

	while (t->wz[i] && t->key[i] != k)
		i = (i + 1) & (t->cap - 1);
	return i;
}

static pm_wz *zfind(const struct ztable *t, uint64_t k)
{
	return t->cap ? t->wz[zslot(t, k)] : NULL;
}

static int zinsert(struct ztable *t, uint64_t k, pm_wz *z)
{
	size_t i;

	if ((t->n + 1) * 2 > t->cap) {
		struct ztable nt = {0};
		size_t j;

		nt.cap = t->cap ? t->cap * 2 : 1024;
		nt.key = malloc(nt.cap * sizeof(*nt.key));
		nt.wz = calloc(nt.cap, sizeof(*nt.wz));
		if (!nt.key || !nt.wz) {
			free(nt.key);
			free(nt.wz);
			return PM_ENOMEM;
		}
		for (j = 0; j < t->cap; j++) {
			if (t->wz[j]) {
				i = zslot(&nt, t->key[j]);
				nt.key[i] = t->key[j];
				nt.wz[i] = t->wz[j];
			}
		}
		nt.n = t->n;
		free(t->key);
		free(t->wz);
		*t = nt;
	}
	i = zslot(t, k);
	t->key[i] = k;
	t->wz[i] = z;
	t->n++;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The run */

/* A report written but not yet in place (report_stage): its temporary file and the name it
 * takes; tmp NULL: nothing staged (written in place, or none). */
struct staged_report {
	char *tmp;
	char *final;
};

static int report_stage(const char *path, const struct pme_config *c, const struct pme_report *r,
			struct staged_report *s, struct pme_err *err);
static int report_commit(const char *path, struct staged_report *s, struct pme_err *err);
static void report_discard(struct staged_report *s);

struct run {
	const struct pme_config *c;  /* configuration */
	struct pme_err *err;	     /* message */
	int nthreads;		     /* OpenMP threads */
	uint32_t nparts;	     /* P */
	pm_map *map;		     /* the result, internal paths */
	pm_map *short_map;	     /* prefix scheme: keys shorter than the depth */
	pm_head *head;		     /* hands out the zippers */
	pm_wz **wz;		     /* hash: P zippers */
	struct ztable zt;	     /* prefix: zippers by d-prefix */
	struct pme_router r;	     /* routing scratch */
	struct pme_part *parts;	     /* nbuckets partition states */
	uint64_t *order;	     /* fill order of the buckets, largest first */
	uint32_t *home;		     /* fill: nbuckets + nthreads + 1 (home lists, their starts) */
	_Atomic uint32_t *home_cur;  /* fill: nthreads cursors into the home lists */
	struct pme_fill_buf *fbuf;   /* fill: each thread's scratch */
	struct pme_fill_ctx fc;	     /* policy, value class */
	struct pme_report rep;	     /* measurements */
	struct inputs inp;	     /* expanded inputs */
	struct pkb *into;	     /* --into KB */
	struct pkb_lock *lock;	     /* its update lock, when it is the output too */
	uint64_t ordinal;	     /* job-wide index of the next record */
	uint64_t key_bytes;	     /* key bytes of all records (duplicates included) */
	uint32_t zippers;	     /* zippers made */
	struct pme_progress *prog;   /* progress, or NULL */
	_Atomic uint64_t flushed;    /* fill of the held runs: records done */
	double t_start;		     /* when the run started */
	double t_write;		     /* when its write phase started */
	struct staged_report report; /* --report, written before the KB is put in place */
};

static int take_zipper(struct run *x, const uint8_t *path, size_t len, pm_wz **out)
{
	int rc;

	if (checked_zippers) {
		rc = pm_head_write_zipper(x->head, path, len, out);
		if (rc == PM_ECONFLICT) {
			fprintf(stderr, "pmingest: zipper paths overlap (partition scheme bug)\n");
			abort();
		}
	} else {
		rc = pm_head_write_zipper_unchecked(x->head, path, len, out);
	}
	if (!rc)
		x->zippers++;
	return rc;
}

/* The d-prefix (prefix scheme) of the record at routed position i. */
static inline uint64_t pos_dp(const struct pme_router *r, size_t i)
{
	return r->pre[r->idx[i]] >> (64 - 8 * r->depth);
}

/*
 * The end of the run of routed positions from s (< e) that share s's d-prefix. A sorted
 * batch has its prefix-scheme records in key order, so their d-prefixes ascend and the run's
 * end is found by galloping, a few reads of pre[] (at random) a run instead of one a record;
 * an unsorted one is walked.
 */
static size_t dp_run_end(const struct pme_router *r, size_t s, size_t e)
{
	const uint64_t dp = pos_dp(r, s);
	size_t lo = s, hi = s + 1, step = 1; /* lo in the run; its end in (lo, hi] */

	if (!r->sorted) {
		while (hi < e && pos_dp(r, hi) == dp)
			hi++;
		return hi;
	}
	while (hi < e && pos_dp(r, hi) == dp) {
		lo = hi;
		step *= 2;
		hi = e - lo > step ? lo + step : e;
	}
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (pos_dp(r, mid) == dp)
			lo = mid;
		else
			hi = mid;
	}
	return hi;
}

/* Makes the zippers the batch's d-prefixes need (prefix scheme), serially: at stem ++ the
 * d bytes, so every zipper path has the same length, and distinct paths of one length are
 * never prefixes of one another (the disjointness the fill relies on). */
static int prefix_zippers(struct run *x)
{
	const struct pme_router *r = &x->r;
	unsigned d = r->depth;
	size_t sl = r->stem_len;
	uint8_t path[PME_STEM_MAX + 8];
	size_t i;
	int rc;

	if (sl)
		memcpy(path, r->stem, sl);
	for (i = 0; i < r->start[x->nparts]; i = dp_run_end(r, i, r->start[x->nparts])) {
		uint64_t dp = pos_dp(r, i);
		pm_wz *z;
		unsigned j;

		if (zfind(&x->zt, dp))
			continue;
		for (j = 0; j < d; j++)
			path[sl + j] = (uint8_t)(dp >> (8 * (d - 1 - j)));
		rc = take_zipper(x, path, sl + d, &z);
		if (rc)
			return rc;
		rc = zinsert(&x->zt, dp, z);
		if (rc) {
			pm_head_release(x->head, z);
			return rc;
		}
	}
	return 0;
}

static void fill_prefix_part(struct run *x, const struct pme_rbatch *b, uint32_t p,
			     struct pme_fill_buf *fb)
{
	const struct pme_router *r = &x->r;
	size_t s = r->start[p], e = r->start[p + 1];

	while (s < e) {
		size_t k = dp_run_end(r, s, e);

		pme_fill_run(&x->fc, b, r, s, k, zfind(&x->zt, pos_dp(r, s)),
			     r->stem_len + r->depth, p, &x->parts[p], fb);
		s = k;
	}
}

/*
 * x->order: the buckets with work, largest first (ties in bucket order), each as
 * (UINT32_MAX - records) << 32 | bucket: the routed batch's buckets, or (held) the partitions
 * that hold runs back. Handing the big ones out first keeps a skewed batch (a Zipf-hot key
 * fills one partition) from ending on one thread while the others wait. Returns how many.
 */
static uint32_t fill_order(struct run *x, bool held)
{
	const struct pme_router *r = &x->r;
	uint32_t q, n = 0;

	for (q = 0; q < (held ? x->nparts : r->nbuckets); q++) {
		uint64_t c = held ? x->parts[q].held.nrec : r->start[q + 1] - r->start[q];

		if (c)
			x->order[n++] =
			    (uint64_t)(UINT32_MAX - (c < UINT32_MAX ? c : UINT32_MAX)) << 32 | q;
	}
	qsort(x->order, n, sizeof(*x->order), pme_u64_cmp);
	return n;
}

/* Fills bucket q of the routed batch b (one task of the fill). */
static void fill_bucket(struct run *x, const struct pme_rbatch *b, uint32_t q,
			struct pme_fill_buf *fb)
{
	const struct pme_router *r = &x->r;

	if (x->c->scheme == PME_SCHEME_HASH)
		pme_fill_run(&x->fc, b, r, r->start[q], r->start[q + 1], x->wz[q], 0, q,
			     &x->parts[q], fb);
	else if (q == x->nparts)
		pme_fill_map(&x->fc, b, r->idx, r->start[q], r->start[q + 1], x->short_map, q,
			     &x->parts[q]);
	else
		fill_prefix_part(x, b, q, fb);
}

/* Read by the fill's threads while a signal handler may set it: an atomic load. */
static bool cancelled(const struct pme_config *c)
{
	return c->cancel && __atomic_load_n(c->cancel, __ATOMIC_RELAXED);
}

/*
 * The fill's schedule, over the nfill buckets of x->order: those of batch b, or with b NULL
 * the partitions' held runs (flushed). Bucket q has a home thread, q mod T, the same in every
 * batch, so a partition's nodes are grown and freed by the thread that allocated them (with
 * glibc malloc, a free from another thread takes the owner arena's lock: 2-thread fill 1.1x
 * -> 1.3x-1.65x on 4 M random keys, measured). Each thread takes its own buckets largest
 * first, then helps the others, taking their largest left (a skewed batch, one hot
 * partition, or a thread that lost its core for a while, still ends together). One atomic
 * step per bucket, none per record.
 */
static void fill_batch(struct run *x, const struct pme_rbatch *b, uint32_t nfill)
{
	const int nt = x->nthreads;
	uint32_t *list = x->home, *cnt = x->home + nfill;
	_Atomic uint32_t *cur = x->home_cur;
	uint32_t i;
	int t;

	/* home lists, each largest first (x->order is), one after the other in list[] */
	for (t = 0; t < nt; t++)
		cnt[t] = 0;
	for (i = 0; i < nfill; i++)
		cnt[(uint32_t)x->order[i] % (uint32_t)nt]++;
	for (t = 0, i = 0; t < nt; t++) {
		uint32_t c = cnt[t];

		cnt[t] = i; /* start of list t */
		i += c;
	}
	cnt[nt] = nfill;
	for (t = 0; t < nt; t++)
		atomic_store_explicit(&cur[t], cnt[t], memory_order_relaxed);
	for (i = 0; i < nfill; i++) {
		uint32_t q = (uint32_t)x->order[i];
		uint32_t h = q % (uint32_t)nt;

		list[atomic_fetch_add_explicit(&cur[h], 1, memory_order_relaxed)] = q;
	}
	for (t = 0; t < nt; t++)
		atomic_store_explicit(&cur[t], cnt[t], memory_order_relaxed);
#pragma omp parallel num_threads(nt)
	{
		int me = omp_get_thread_num(), k;

		/* its own list, then the others' (those of threads the runtime did not give
		 * too) */
		for (k = 0; k < nt; k++) {
			int v = (me + k) % nt;

			for (;;) {
				uint32_t j =
				    atomic_fetch_add_explicit(&cur[v], 1, memory_order_relaxed);

				/* a stopped run leaves the rest: it writes nothing */
				if (j >= cnt[v + 1] || cancelled(x->c))
					break;
				if (b) {
					fill_bucket(x, b, list[j], &x->fbuf[me]);
				} else {
					struct pme_part *pt = &x->parts[list[j]];
					uint64_t n = pt->held.nrec, all;

					pme_fill_flush(x->wz[list[j]], pt, &x->fbuf[me]);
					all = atomic_fetch_add_explicit(&x->flushed, n,
									memory_order_relaxed) +
					      n;
					if (me == 0) /* progress is one thread's */
						pme_progress_update(x->prog, all);
				}
			}
		}
	}
}

/* The first error of the fill in input order, whatever partition met it (0: none); *ord
 * gets the failing record's job-wide index. */
static int first_error(const struct run *x, uint64_t *ord)
{
	uint32_t p;
	int rc = 0;

	*ord = UINT64_MAX;
	for (p = 0; p < x->r.nbuckets; p++) {
		if (x->parts[p].rc && x->parts[p].err_ord < *ord) {
			*ord = x->parts[p].err_ord;
			rc = x->parts[p].rc;
		}
	}
	return rc;
}

/* Whether OMP_NUM_THREADS asks for more than PME_MAX_THREADS at its first level (libgomp
 * reads a number past int as 1); a value libgomp cannot read is left to its warning. */
static bool omp_env_too_big(void)
{
	const char *s = getenv("OMP_NUM_THREADS");
	unsigned long long v;

	if (!s)
		return false;
	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoull(s, NULL, 10);
	return errno == ERANGE || v > PME_MAX_THREADS;
}

/*
 * Whether holding sorted runs back pays: from two batches on (building the trie once from
 * the merged runs costs less than merging the second batch into grown nodes; 4 M keys in
 * two 2 M-record batches, medians of 6 at 2 threads: fill random 0.285 -> 0.228 s, u64 0.208
 * -> 0.176, words 0.545 -> 0.344, path 0.490 -> 0.439; at 1 thread random 0.572 -> 0.386).
 * With one batch there is nothing to merge: holding would only copy it.
 */
static bool holds_pay(struct pio_reader *rd)
{
	struct pio_source_info si;
	uint64_t batch;

	if (pio_reader_source_info(rd, 0, &si))
		return false;
	batch = si.batch_records ? si.batch_records : 1;
	return pio_reader_total(rd) > batch;
}

/*
 * Fills what the partitions still hold back (after the last batch), on the fill's schedule.
 * Returns the first error in input order, or 0.
 */
static int flush_held(struct run *x)
{
	uint64_t ord, held = 0;
	uint32_t p;

	if (!x->fc.hold)
		return 0;
	for (p = 0; p < x->nparts; p++)
		held += x->parts[p].held.nrec;
	pme_progress_phase(x->prog, "fill", "records", held);
	fill_batch(x, NULL, fill_order(x, true));
	pme_progress_update(x->prog, atomic_load_explicit(&x->flushed, memory_order_relaxed));
	return first_error(x, &ord);
}

/* Routes and fills one batch. */
static int do_batch(struct run *x, const struct pme_rbatch *b)
{
	double t0 = now(), t1;
	uint64_t ord;
	uint32_t nfill;
	int rc;

	rc = pme_route(&x->r, b, x->c->sort);
	if (rc)
		return pme_seterr(x->err, rc, "out of memory routing a batch");
	x->key_bytes += b->n ? b->key_off[b->n] - b->key_off[0] : 0;
	if (x->c->scheme == PME_SCHEME_PREFIX) {
		rc = prefix_zippers(x);
		if (rc)
			return pme_seterr(x->err, rc, "cannot make a write zipper (%s)",
					  pm_strerror(rc));
	}
	nfill = fill_order(x, false);
	t1 = now();
	x->rep.t_route += t1 - t0;
	if (cancelled(x->c))
		return 0; /* the caller stops */
	fill_batch(x, b, nfill);
	x->rep.t_fill += now() - t1;
	rc = first_error(x, &ord);
	if (rc)
		x->ordinal = ord; /* reported by the caller */
	return rc;
}

/* The message of a duplicate key under the error policy (rc PME_EDUP) or of a sum that leaves
 * its range (PME_ESUM): the key and the records holding it up to the offending one, which is
 * always shown (found by reading the inputs again, serially: this only runs when the job
 * fails). */
static void dup_message(struct run *x, const uint8_t *key, size_t len, uint64_t upto, int rc)
{
	struct pio_reader *rd = NULL;
	struct pio_batch b;
	char kt[256], *pos = NULL;
	size_t plen = 0, shown = 0, i;
	uint64_t ord = x->rep.kb_records, lord = 0;
	const char *lname = NULL;
	FILE *m = open_memstream(&pos, &plen); /* without it, no positions */

	pkb_key_text(key, len, kt, sizeof(kt));
	if (m && x->into && pkb_get(x->into, key, len, &(uint64_t){0}) == 0)
		fprintf(m, " %s (the --into KB),", x->c->into);
	pio_batch_init(&b);
	if (m && pio_reader_open(x->inp.in, x->inp.n, NULL, &rd, NULL) == 0) {
		while (ord <= upto && pio_reader_next(rd, &b, NULL) == 1) {
			for (i = 0; i < b.n && ord <= upto; i++, ord++) {
				size_t l = b.key_off[i + 1] - b.key_off[i];

				if (l != len || memcmp(b.keys + b.key_off[i], key, len))
					continue;
				lname = x->inp.name[b.source];
				lord = b.first_record + i;
				if (shown++ < 8)
					fprintf(m, " %s#%llu,", lname, (unsigned long long)lord);
			}
		}
	}
	pio_batch_free(&b);
	pio_reader_close(rd);
	if (m && shown > 8)
		fprintf(m, " ... %s#%llu,", lname, (unsigned long long)lord);
	if (m && fclose(m)) {
		free(pos);
		pos = NULL;
	}
	if (pos && plen)
		pos[plen - 1] = '\0'; /* the last comma */
	/* a long message keeps its end, the offending record, when pme_seterr cuts it */
	if (rc == PME_ESUM)
		pme_seterr(x->err, PME_ESUM,
			   "the sum of key \"%s\" (%zu bytes) leaves the %s range under "
			   "--on-duplicate sum (integers do not wrap); its records up to the one "
			   "that overflows:%s",
			   kt, len, x->fc.vclass == PIO_V_INT ? "int64" : "uint64", pos ? pos : "");
	else
		pme_seterr(x->err, PME_EDUP,
			   "duplicate key \"%s\" (%zu bytes) under --on-duplicate error, at%s", kt,
			   len, pos ? pos : "");
	free(pos);
}

static int batch_error(struct run *x, const struct pme_rbatch *b, int rc)
{
	if (rc == PME_EDUP || rc == PME_ESUM) {
		uint32_t rec = (uint32_t)(x->ordinal - b->ordinal);

		dup_message(x, b->keys + b->key_off[rec], b->key_off[rec + 1] - b->key_off[rec],
			    x->ordinal, rc);
		return rc;
	}
	if (rc == PM_ENOMEM || rc == PM_EOVERFLOW)
		return pme_seterr(x->err, PM_ENOMEM, "out of memory filling the map");
	return pme_seterr(x->err, rc, "filling the map failed (%s)", pme_strerror(rc));
}

/* Sampling for the prefix scheme: SAMPLE_SLICES slices spread over every input. */
static int prefix_sample(struct run *x, struct pio_reader *rd, uint8_t *stem, size_t *stem_len,
			 unsigned *depth, uint64_t *splits)
{
	uint8_t *keys = NULL;
	size_t *off = NULL, n = 0, kcap = 0, ncap = 0, s, i;
	struct pio_batch b;
	int rc = 0;

	pio_batch_init(&b);
	off = malloc(sizeof(*off));
	if (!off)
		return PM_ENOMEM;
	off[0] = 0;
	for (s = 0; s < x->inp.n && !rc; s++) {
		struct pio_source_info si;
		unsigned sl;

		pio_reader_source_info(rd, s, &si);
		for (sl = 0; sl < SAMPLE_SLICES && !rc; sl++) {
			struct pio_input in = x->inp.in[s];
			struct pio_reader *sr = NULL;
			struct pio_reader_opts o = {.batch_records = SAMPLE_PER_SLICE};

			in.start = si.count * sl / SAMPLE_SLICES;
			in.count = si.count / SAMPLE_SLICES < SAMPLE_PER_SLICE
				       ? si.count / SAMPLE_SLICES
				       : SAMPLE_PER_SLICE;
			if (sl == 0 && in.count == 0)
				in.count =
				    si.count < SAMPLE_PER_SLICE ? si.count : SAMPLE_PER_SLICE;
			if (in.count == 0)
				continue;
			rc = pio_reader_open(&in, 1, &o, &sr, NULL);
			if (rc)
				break;
			while ((rc = pio_reader_next(sr, &b, NULL)) == 1) {
				size_t kl = b.key_off[b.n];

				if (n + b.n + 1 > ncap) {
					size_t nc = (n + b.n + 1) * 2;
					size_t *no = realloc(off, nc * sizeof(*no));

					if (!no) {
						rc = PM_ENOMEM;
						break;
					}
					off = no;
					ncap = nc;
				}
				if (off[n] + kl > kcap) {
					size_t kc = (off[n] + kl) * 2;
					uint8_t *nk = realloc(keys, kc);

					if (!nk) {
						rc = PM_ENOMEM;
						break;
					}
					keys = nk;
					kcap = kc;
				}
				if (kl)
					memcpy(keys + off[n], b.keys, kl);
				for (i = 0; i < b.n; i++)
					off[n + i + 1] = off[n] + b.key_off[i + 1];
				n += b.n;
			}
			pio_reader_close(sr);
		}
	}
	pio_batch_free(&b);
	if (!rc)
		rc = pme_prefix_plan(keys ? keys : (const uint8_t *)"", off, n, x->nparts, stem,
				     stem_len, depth, splits);
	free(keys);
	free(off);
	return rc;
}

/* Feeds the records of the --into KB, in key order, before the inputs. */
static int load_into(struct run *x, size_t batch)
{
	const pm_snap *snap = pkb_snap(x->into);
	bool blob = pkb_type_is_blob(&pkb_info(x->into)->value_type);
	pm_snap_iter *it = NULL;
	uint8_t *keys = NULL, *heap = NULL;
	size_t *off = NULL, kcap = 0, hcap = 0, n = 0;
	uint64_t *vals = NULL;
	int rc, more = 1;

	off = malloc((batch + 1) * sizeof(*off));
	vals = malloc(batch * sizeof(*vals));
	rc = pm_snap_iter_create(snap, NULL, NULL, &it);
	if (!off || !vals || rc) {
		rc = PM_ENOMEM;
		goto out;
	}
	while (more) {
		const uint8_t *k;
		size_t len;
		uint64_t w;

		more = pm_snap_iter_next(it, &k, &len, &w);
		if (more < 0) {
			rc = PKB_ECORRUPT;
			pme_seterr(x->err, rc, "%s: damaged KB", x->c->into);
			goto out;
		}
		if (more) {
			size_t ko = n ? off[n] : 0;

			if (n == 0)
				off[0] = 0;
			if (ko + len > kcap) {
				size_t nc = (ko + len) * 2 + 64;
				uint8_t *nk = realloc(keys, nc);

				if (!nk) {
					rc = PM_ENOMEM;
					goto out;
				}
				keys = nk;
				kcap = nc;
			}
			if (len)
				memcpy(keys + ko, k, len);
			off[n + 1] = ko + len;
			vals[n] = w;
			n++;
		}
		if (n == batch || (!more && n)) {
			struct pme_rbatch rb = {n, keys, off, vals, NULL, 0, x->ordinal, true};

			if (cancelled(x->c)) { /* between batches, as for the inputs */
				rc = pme_seterr(x->err, PME_ECANCELED, "interrupted");
				goto out;
			}
			if (blob) {
				/* copy the blobs into a batch heap: [u32 LE len][bytes] */
				size_t i, hl = 0;

				for (i = 0; i < n; i++) {
					const uint8_t *d;
					size_t dl;

					rc = pkb_blob(x->into, vals[i], &d, &dl);
					if (rc) {
						pme_seterr(x->err, rc,
							   "%s: damaged KB (value heap)",
							   x->c->into);
						goto out;
					}
					if (pkb_heap_append(&heap, &hl, &hcap, d, dl, &vals[i])) {
						rc = PM_ENOMEM;
						goto out;
					}
				}
				rb.heap = heap;
				rb.heap_len = hl;
			}
			rc = do_batch(x, &rb);
			if (rc) {
				rc = batch_error(x, &rb, rc);
				goto out;
			}
			x->ordinal += n;
			x->rep.kb_records += n;
			n = 0;
		}
	}
	rc = 0;
out:
	if (rc == PM_ENOMEM)
		pme_seterr(x->err, rc, "out of memory loading %s", x->c->into);
	pm_snap_iter_destroy(it);
	free(keys);
	free(heap);
	free(off);
	free(vals);
	return rc;
}

static uint32_t default_partitions(int nthreads)
{
	uint32_t p = 256; /* small per-partition tries; measured best on 10 M keys */

	while (p < 8u * (uint32_t)nthreads && p < PME_MAX_PARTITIONS)
		p *= 2;
	return p;
}

/* --dry-run: the job as planned, once every check that needs no record has passed. */
static void plan_print(FILE *f, const struct pme_config *c, const struct run *x,
		       const struct pio_reader *rd, const struct pio_type *kt,
		       const struct pio_type *vt, uint64_t memory)
{
	struct pio_source_info si;
	uint64_t batch = 0;
	char a[128], b[128];
	size_t i;

	for (i = 0; i < pio_reader_sources(rd); i++) {
		uint64_t n;

		if (pio_reader_source_info(rd, i, &si))
			continue;
		n = si.batch_records < si.count ? si.batch_records : si.count;
		if (n > batch)
			batch = n;
	}
	fprintf(f, "pmingest ingest --dry-run: the job checked; no record read, nothing written\n");
	fprintf(f, "  inputs     %zu, %llu records\n", x->inp.n,
		(unsigned long long)pio_reader_total(rd));
	for (i = 0; i < x->inp.n; i++)
		fprintf(f, "    %s\n", x->inp.name[i]);
	if (x->into)
		fprintf(f, "  into       %s, %llu keys (they come first)\n", c->into,
			(unsigned long long)pkb_info(x->into)->count);
	fprintf(f, "  types      keys %s, values %s\n", pio_type_name(kt, a, sizeof(a)),
		pio_type_name(vt, b, sizeof(b)));
	fprintf(f, "  output     %s\n", c->output);
	if (c->report)
		fprintf(f, "  report     %s\n", c->report);
	fprintf(f, "  threads    %d\n  scheme     %s, %u partitions%s\n", x->nthreads,
		c->scheme == PME_SCHEME_HASH ? "hash" : "prefix", x->nparts,
		c->scheme == PME_SCHEME_HASH ? "" : " (split points sampled at run time)");
	fprintf(f, "  policy     %s%s\n", pme_policy_name(c->on_duplicate),
		c->sort ? "" : ", unsorted batches");
	fprintf(f, "  memory     %.1f MiB for batches in flight (%s)\n", (double)memory / 1048576.0,
		c->memory ? "--memory"
			  : "a quarter of physical memory or of the cgroup's limit or ulimit -v");
	fprintf(f, "  batches    up to %llu records\n", (unsigned long long)batch);
}

/* The map of a run with leave_map, still reachable (leak checkers see a live pointer) until
 * the process exits; a later such run frees the one before. */
static pm_map *left_map;

static void run_free(struct run *x)
{
	uint32_t p;

	if (x->head)
		pm_head_destroy(x->head); /* releases any live zipper */
	x->head = NULL;
	free(x->wz);
	free(x->zt.key);
	free(x->zt.wz);
	if (x->parts)
		for (p = 0; p < x->r.nbuckets; p++) {
			free(x->parts[p].heap.buf);
			pme_held_free(&x->parts[p].held);
		}
	free(x->parts);
	free(x->order);
	free(x->home);
	free((void *)x->home_cur);
	if (x->fbuf)
		for (p = 0; p < (uint32_t)x->nthreads; p++)
			pme_fill_buf_free(&x->fbuf[p]);
	free(x->fbuf);
	pme_router_free(&x->r);
	pm_map_destroy(x->short_map);
	if (x->c && x->c->leave_map && x->map) {
		pm_map_destroy(left_map);
		left_map = x->map;
		x->map = NULL;
	}
	pm_map_destroy(x->map);
	inputs_free(&x->inp);
	pkb_close(x->into);
	pkb_unlock(x->lock); /* after the output is in place (or not written) */
}

static int copy_short(const uint8_t *key, size_t len, uint64_t val, void *arg)
{
	return pm_map_set(arg, key, len, val, NULL) < 0 ? PM_ENOMEM : 0;
}

/* Releases every zipper (serially), then puts the short keys in (prefix scheme). */
static int release_all(struct run *x)
{
	size_t i;
	int rc;

	if (x->wz)
		for (i = 0; i < x->nparts; i++)
			if (x->wz[i] && (rc = pm_head_release(x->head, x->wz[i])) != 0)
				return rc;
	for (i = 0; i < x->zt.cap; i++)
		if (x->zt.wz[i] && (rc = pm_head_release(x->head, x->zt.wz[i])) != 0)
			return rc;
	pm_head_destroy(x->head);
	x->head = NULL;
	if (x->short_map) {
		rc = pm_map_foreach(x->short_map, NULL, 0, NULL, 0, copy_short, x->map);
		if (rc)
			return PM_ENOMEM;
	}
	return 0;
}

void pme_lock_waiting(void *cmd, const char *path)
{
	fprintf(stderr, "pmingest %s: waiting for %s: another job is replacing it\n",
		(const char *)cmd, path);
}

static void *probe_wait(void *arg)
{
	char c;

	while (read(*(int *)arg, &c, 1) < 0 && errno == EINTR) /* until the pipe is closed */
		;
	return NULL;
}

/* How many of n more threads the process can run at once (RLIMIT_NPROC, a cgroup's pids
 * limit, RLIMIT_AS for their stacks): libgomp ends the process with exit 1 when it cannot
 * make its threads. The probe threads have the default stack, as libgomp's (unless
 * OMP_STACKSIZE says otherwise), wait together, so that they count together, and end. */
static int probe_threads(int n)
{
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	int fd[2], k = 0, i;

	if (!t || pipe2(fd, O_CLOEXEC)) {
		free(t);
		return n;
	}
	while (k < n && !pthread_create(&t[k], NULL, probe_wait, &fd[0]))
		k++;
	close(fd[1]);
	for (i = 0; i < k; i++)
		pthread_join(t[i], NULL);
	close(fd[0]);
	free(t);
	return k;
}

/* The report's fields known once the map is complete; imbalance: the largest bucket (the
 * prefix scheme's keys outside its partitions included: one thread writes them) against the
 * mean partition. */
static void report_fields(struct run *x, uint64_t memory, unsigned depth, size_t stem_len)
{
	uint64_t most = 0, sum = 0, dups = 0;
	uint32_t p;

	for (p = 0; p < x->r.nbuckets; p++) {
		sum += x->parts[p].records;
		dups += x->parts[p].dups;
		if (x->parts[p].records > most)
			most = x->parts[p].records;
	}
	x->rep.duplicates = dups;
	x->rep.imbalance = sum ? (double)most / ((double)sum / x->nparts) : 1.0;
	x->rep.distinct = pm_map_count(x->map);
	x->rep.threads = x->nthreads;
	x->rep.partitions = x->nparts;
	x->rep.prefix_depth = depth;
	x->rep.prefix_stem = (uint32_t)stem_len;
	x->rep.zippers = x->zippers;
	x->rep.scheme = x->c->scheme;
	x->rep.allocator = pme_allocator_name();
	x->rep.huge_pages = pme_allocator_thp();
	x->rep.memory = memory;
}

/* The report's times and peak memory, at the end of the write phase. */
static void report_times(struct run *x)
{
	double t = now();

	x->rep.t_write = t - x->t_write;
	x->rep.t_total = t - x->t_start;
	x->rep.peak_rss = pme_peak_rss();
}

/* pkb_write's before_commit: the KB is complete and flushed; the report is written beside
 * its final name now, so that a report that cannot be written (disk full, permissions)
 * fails the run before the KB replaces anything. The times end here (the KB's rename and
 * the report's follow). */
static int stage_report(void *arg, struct pkb_err *ke)
{
	struct run *x = arg;
	struct pme_err pe;
	int rc;

	report_times(x);
	rc = report_stage(x->c->report, x->c, &x->rep, &x->report, &pe);
	if (rc)
		pio_msgf(ke->msg, sizeof(ke->msg), "%s", pe.msg);
	return rc;
}

int pme_ingest_run(const struct pme_config *c, struct pme_report *rep, struct pme_err *err)
{
	struct run x;
	struct pio_reader *rd = NULL;
	struct pio_prefetch *pf = NULL;
	struct pio_reader_opts ro = {0};
	struct pio_type ktype, vtype;
	struct pkb_input *kin = NULL;
	struct pkb_meta meta;
	struct pkb_write_opts wo = {0};
	struct pkb_err ke;
	struct pio_err pe;
	uint64_t *splits = NULL, total, memory, held_budget;
	uint8_t stem[PME_STEM_MAX];
	size_t stem_len = 0;
	unsigned depth = 0;
	double t;
	uint32_t p;
	size_t i;
	int rc;

	memset(&x, 0, sizeof(x));
	x.t_start = now();
	x.c = c;
	x.err = err;
	pe.msg[0] = '\0';
	if (!c->output || (!c->n_inputs && !c->into))
		return pme_seterr(err, PME_EUSAGE,
				  "--output and at least one --input are required");
	if (!c->n_inputs)
		return pme_seterr(err, PME_EUSAGE, "at least one --input is required");
	if ((c->keys == NULL) != (c->values == NULL))
		return pme_seterr(err, PME_EUSAGE, "--keys and --values go together");
	if (c->keys && (c->key_field || c->value_field))
		return pme_seterr(err, PME_EUSAGE,
				  "--%s names a field of a compound dataset: not with --keys and "
				  "--values",
				  c->key_field ? "key-field" : "value-field");
	if (c->allocator && strcmp(c->allocator, "jemalloc") && strcmp(c->allocator, "glibc"))
		return pme_seterr(err, PME_EUSAGE, "--allocator %s: jemalloc or glibc",
				  c->allocator);
	if (c->allocator && strcmp(c->allocator, pme_allocator_name()))
		return pme_seterr(err, PME_EUSAGE,
				  "--allocator %s: this process runs %s; build with "
				  "-DPM_JEMALLOC=%s (or LD_PRELOAD=libjemalloc.so.2 for jemalloc)",
				  c->allocator, pme_allocator_name(),
				  strcmp(c->allocator, "glibc") ? "ON" : "OFF");

	/* plan: threads, P, batch size */
	x.nthreads = c->threads > 0 ? c->threads
				    : (getenv("OMP_NUM_THREADS") ? omp_get_max_threads()
								 : omp_get_num_procs());
	if (x.nthreads < 1)
		x.nthreads = 1;
	if (!c->threads && omp_env_too_big())
		return pme_seterr(err, PME_EUSAGE, "OMP_NUM_THREADS=%s: at most %d threads",
				  getenv("OMP_NUM_THREADS"), PME_MAX_THREADS);
	if (x.nthreads > omp_get_thread_limit()) { /* OMP_THREAD_LIMIT */
		if (c->threads > 0)
			fprintf(stderr,
				"pmingest ingest: warning: --threads %d, but OMP_THREAD_LIMIT=%d: "
				"%d threads\n",
				c->threads, omp_get_thread_limit(), omp_get_thread_limit());
		x.nthreads = omp_get_thread_limit();
	}
	if (x.nthreads > PME_MAX_THREADS)
		return pme_seterr(err, PME_EUSAGE,
				  "OMP_NUM_THREADS asks for %d threads: at most %d", x.nthreads,
				  PME_MAX_THREADS);
	x.nparts = c->partitions ? c->partitions : default_partitions(x.nthreads);
	if (x.nparts < 1 || x.nparts > PME_MAX_PARTITIONS ||
	    (c->scheme == PME_SCHEME_HASH && (x.nparts & (x.nparts - 1))))
		return pme_seterr(err, PME_EUSAGE, "--partitions %u: the %s scheme takes %s",
				  x.nparts, c->scheme == PME_SCHEME_HASH ? "hash" : "prefix",
				  c->scheme == PME_SCHEME_HASH ? "a power of two from 1 to 65536"
							       : "1 to 65536");
	if (x.nthreads > 1) {
		/* OpenMP's nthreads - 1, the reader's and the KB writer's flusher; after P is
		 * chosen, so that the KB's header does not depend on the threads free now */
		int more = probe_threads(x.nthreads + 1);

		if (more < x.nthreads + 1) {
			fprintf(stderr,
				"pmingest ingest: warning: %d threads asked for, but only %d more "
				"can start now (ulimit -u or -v, the cgroup's pids limit): running "
				"with %d\n",
				x.nthreads, more, more > 2 ? more - 1 : 1);
			x.nthreads = more > 2 ? more - 1 : 1;
		}
	}
	memory = c->memory ? c->memory : pme_memory_limit() / 4;
	/* the hash scheme's fast path (last value, sorted batches) holds sorted runs back in a
	 * quarter of the budget; the batches have the rest (values that turn out to be strings
	 * leave that quarter unused) */
	held_budget = c->scheme == PME_SCHEME_HASH && c->on_duplicate == PME_DUP_LAST && c->sort
			  ? memory / 4
			  : 0;
	ro.mem_budget = (size_t)(memory - held_budget);
	ro.batch_records = (size_t)c->batch_records;
	ro.batch_cap = BATCH_CAP;

	rc = inputs_expand(&x.inp, c, err);
	if (!rc)
		rc = check_outputs(&x.inp, c, err);
	if (rc)
		goto out;
	rc = pkb_check_output(c->output, &ke); /* now, not after reading the inputs */
	if (rc) {
		pme_seterr(err, rc, "%s", ke.msg);
		goto out;
	}
	rc = from_pio(pio_reader_open(x.inp.in, x.inp.n, &ro, &rd, &pe));
	if (rc) {
		pme_seterr(err, rc, "%s", pe.msg);
		goto out;
	}
	pio_reader_types(rd, &ktype, &vtype);
	if (c->on_duplicate == PME_DUP_SUM || c->on_duplicate == PME_DUP_MIN ||
	    c->on_duplicate == PME_DUP_MAX) {
		if (pkb_type_is_blob(&vtype)) {
			rc = pme_seterr(err, PME_EPOLICY,
					"--on-duplicate %s needs numeric values; the values are %s",
					pme_policy_name(c->on_duplicate),
					pio_type_name(&vtype, pe.msg, 128));
			goto out;
		}
	}
	x.fc.policy = c->on_duplicate;
	x.fc.vclass = vtype.cls;
	x.fc.blob = pkb_type_is_blob(&vtype) && c->on_duplicate != PME_DUP_COUNT;
	if (c->on_duplicate == PME_DUP_COUNT) {
		memset(&vtype, 0, sizeof(vtype));
		vtype.cls = PIO_V_UINT;
		vtype.width = 8;
	}
	if (c->on_duplicate == PME_DUP_SUM)
		vtype.width = 8; /* sums are 64-bit: they need not fit a narrower type */
	if (c->into) {
		const struct pkb_info *ki;
		struct pio_type kt, vt;

		if (!c->dry_run && pme_same_file(c->output, c->into)) {
			rc = pkb_lock_update(c->into, c->cancel, pme_lock_waiting, "ingest",
					     &x.lock, &ke);
			if (rc == PKB_ECANCELED) {
				rc = pme_seterr(err, PME_ECANCELED, "interrupted");
				goto out;
			} else if (rc == PKB_ENOLOCK) {
				fprintf(
				    stderr,
				    "pmingest ingest: warning: %s; a job that adds to it at the "
				    "same time would lose records\n",
				    ke.msg);
			} else if (rc) {
				rc = pme_seterr(err, PM_ENOMEM, "%s", ke.msg);
				goto out;
			}
		}
		rc = pkb_open(c->into, PKB_OPEN_CHECKSUM, &x.into, &ke);
		if (rc) { /* an input that cannot be read, whatever the reason (missing too) */
			rc = pme_seterr(err, rc == PKB_ENOMEM ? PM_ENOMEM : PME_EINPUT, "%s",
					ke.msg);
			goto out;
		}
		/* The KB's records come first: its types are the job's first input's. */
		ki = pkb_info(x.into);
		kt = ki->key_type;
		vt = ki->value_type;
		if (pio_type_merge(&kt, &ktype, true) || pio_type_merge(&vt, &vtype, false)) {
			char a[128], b[128];

			rc = pme_seterr(err, PME_ETYPE,
					"%s holds %s keys / %s values, the input does not match",
					c->into, pio_type_name(&ki->key_type, a, sizeof(a)),
					pio_type_name(&ki->value_type, b, sizeof(b)));
			goto out;
		}
		ktype = kt;
		vtype = vt;
	}

	if (c->dry_run) {
		plan_print(stdout, c, &x, rd, &ktype, &vtype, memory);
		rc = 0;
		goto out;
	}

	/* plan: the partition layout */
	if (c->scheme == PME_SCHEME_PREFIX) {
		splits = malloc((size_t)x.nparts * sizeof(*splits));
		if (!splits) {
			rc = pme_seterr(err, PM_ENOMEM, "out of memory");
			goto out;
		}
		rc = prefix_sample(&x, rd, stem, &stem_len, &depth, splits);
		if (rc && rc != PM_ENOMEM)
			rc = from_pio(rc);
		if (rc) {
			pme_seterr(err, rc, "cannot sample the input (%s)", pme_strerror(rc));
			goto out;
		}
	}
	rc = pme_router_init(&x.r, c->scheme, x.nparts, x.nthreads, stem, stem_len, depth, splits);
	if (rc)
		goto out_nomem;
	x.parts = calloc(x.r.nbuckets, sizeof(*x.parts));
	x.order = calloc(x.r.nbuckets, sizeof(*x.order));
	x.home = calloc((size_t)x.r.nbuckets + (size_t)x.nthreads + 1, sizeof(*x.home));
	x.home_cur = calloc((size_t)x.nthreads, sizeof(*x.home_cur));
	x.fbuf = calloc((size_t)x.nthreads, sizeof(*x.fbuf));
	if (!x.parts || !x.order || !x.home || !x.home_cur || !x.fbuf)
		goto out_nomem;
	x.fc.parts = x.parts;
	x.fc.nparts = x.r.nbuckets;
	if (held_budget && !x.fc.blob && holds_pay(rd)) /* see pme_fill_run */
		x.fc.hold = (size_t)(held_budget / x.nparts) + 1;
	if (pm_map_create(&x.map, NULL, NULL))
		goto out_nomem;
	if (c->scheme == PME_SCHEME_PREFIX && pm_map_create(&x.short_map, NULL, NULL))
		goto out_nomem;
	if (pm_head_create(x.map, &x.head))
		goto out_nomem;
	if (c->scheme == PME_SCHEME_HASH) {
		/* one exclusive zipper per partition, serially, before any parallel region */
		x.wz = calloc(x.nparts, sizeof(*x.wz));
		if (!x.wz)
			goto out_nomem;
		for (p = 0; p < x.nparts; p++) {
			uint8_t pp[PME_PART_PATH_LEN];

			pme_partition_path(p, pp);
			rc = take_zipper(&x, pp, sizeof(pp), &x.wz[p]);
			if (rc)
				goto out_nomem;
		}
	}

	/* loop: the --into KB's records first, then the inputs (read ahead by the I/O thread) */
	total = pio_reader_total(rd);
	x.prog = pme_progress_start("ingest", "read", "records", total, c->quiet, c->progress_tty);
	if (x.into) {
		rc = load_into(&x, c->batch_records ? (size_t)c->batch_records : 65536);
		if (rc)
			goto out;
	}
	rc = from_pio(pio_prefetch_start(rd, 2, &pf, &pe));
	if (rc) {
		pme_seterr(err, rc, "%s", pe.msg);
		goto out;
	}
	for (;;) {
		struct pio_batch *b;
		struct pme_rbatch rb;

		if (cancelled(c)) {
			rc = pme_seterr(err, PME_ECANCELED, "interrupted");
			goto out;
		}
		t = now();
		rc = pio_prefetch_next(pf, &b, &pe);
		x.rep.t_read += now() - t;
		if (rc < 0) {
			rc = pme_seterr(err, from_pio(rc), "%s", pe.msg);
			goto out;
		}
		if (rc == 0)
			break;
		rb = (struct pme_rbatch){b->n,	  b->keys,     b->key_off, b->vals,
					 b->heap, b->heap_len, x.ordinal,  false};
		rc = do_batch(&x, &rb);
		if (rc) {
			rc = batch_error(&x, &rb, rc);
			goto out;
		}
		x.ordinal += b->n;
		x.rep.records += b->n;
		x.rep.batches++;
		if (b->n > x.rep.batch_records)
			x.rep.batch_records = b->n;
		pme_progress_update(x.prog, x.rep.records);
	}
	pio_prefetch_stop(pf);
	pf = NULL;
	t = now();
	rc = flush_held(&x);
	x.rep.t_fill += now() - t;
	if (rc) {
		pme_seterr(err, rc, "out of memory filling the partitions");
		goto out;
	}

	/* finalize */
	x.t_write = now();
	rc = release_all(&x);
	if (rc)
		goto out_nomem;
	kin = calloc(x.inp.n + (x.into ? pkb_info(x.into)->n_inputs : 0) + 1, sizeof(*kin));
	if (!kin)
		goto out_nomem;
	i = 0;
	if (x.into) {
		const struct pkb_info *ki = pkb_info(x.into);

		for (; i < ki->n_inputs; i++)
			kin[i] = ki->inputs[i];
	}
	for (size_t s = 0; s < x.inp.n; s++, i++) {
		struct pio_source_info si;
		struct stat st;

		pio_reader_source_info(rd, s, &si);
		kin[i].name = x.inp.name[s];
		kin[i].bytes = stat(x.inp.file[s], &st) == 0 ? (uint64_t)st.st_size : 0;
		kin[i].records = si.count;
	}
	memset(&meta, 0, sizeof(meta));
	meta.scheme = c->scheme;
	meta.partitions = x.nparts;
	meta.key_type = ktype;
	meta.value_type = vtype;
	meta.inputs = kin;
	meta.n_inputs = i;
	wo.cancel = c->cancel;
	wo.threads = (unsigned)x.nthreads;
	wo.memory = memory; /* the batches are freed by now: their budget holds the image */
	wo.image_hint = x.key_bytes + 24 * (uint64_t)pm_map_count(x.map);
	wo.trust_routes = !checked_zippers;
	wo.progress = x.prog ? pme_progress_hook : NULL;
	wo.progress_arg = x.prog;
	pme_progress_phase(x.prog, "write", "keys", pm_map_count(x.map));
	if (cancelled(c)) {
		rc = pme_seterr(err, PME_ECANCELED, "interrupted");
		goto out;
	}
	report_fields(&x, memory, depth, stem_len);
	if (c->report && !c->dry_run && !pme_report_in_place(c->report)) {
		wo.before_commit = stage_report; /* the report ready before the KB is in place */
		wo.commit_arg = &x;
	}
	rc = pkb_write(c->output, x.map, &meta, x.fc.blob ? pme_blob_get : NULL, &x.fc, &wo, &ke);
	if (rc) {
		if (rc == PKB_ECANCELED)
			rc = PME_ECANCELED;
		pme_seterr(err, rc, "%s", ke.msg);
		goto out;
	}
	if (!wo.before_commit)
		report_times(&x);
	rc = report_commit(c->report, &x.report, err);
	if (rc) { /* rare: the rename of a file made in the same directory a moment before */
		pme_seterr(err, rc,
			   "%s: the KB %s is in place, but its report could not be put "
			   "in place",
			   c->report, c->output);
		goto out;
	}
	if (rep)
		*rep = x.rep;
	rc = 0;
	goto out;
out_nomem:
	rc = pme_seterr(err, PM_ENOMEM, "out of memory");
out:
	report_discard(&x.report);
	pme_progress_end(x.prog);
	pio_prefetch_stop(pf);
	pio_reader_close(rd);
	free(kin);
	free(splits);
	run_free(&x);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Report */

/* The length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no
 * surrogates, at most U+10FFFF), 0 when the bytes there are not one. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
	uint8_t c = p[0];
	uint32_t cp;
	size_t k, j;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		k = 1;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		k = 2;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		k = 3;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n <= k)
		return 0;
	for (j = 1; j <= k; j++) {
		if ((p[j] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[j] & 0x3f);
	}
	if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k + 1;
}

bool pme_valid_utf8(const void *s, size_t n)
{
	const uint8_t *p = s;
	size_t i = 0, k;

	for (; i < n; i += k)
		if (!(k = utf8_seq(p + i, n - i)))
			return false;
	return true;
}

void pme_json_str(FILE *f, const void *s, size_t n)
{
	const uint8_t *p = s;
	size_t i = 0, k;

	putc('"', f);
	for (; i < n; i += k) {
		uint8_t c = p[i];

		k = 1;
		if (c == '"' || c == '\\') {
			putc('\\', f);
			putc(c, f);
		} else if (c == '\n') {
			fputs("\\n", f);
		} else if (c == '\r') {
			fputs("\\r", f);
		} else if (c == '\t') {
			fputs("\\t", f);
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
		} else if (c < 0x80) {
			putc(c, f);
		} else if ((k = utf8_seq(p + i, n - i)) != 0) {
			fwrite(p + i, 1, k, f);
		} else {
			fputs("\\ufffd", f); /* not UTF-8: JSON cannot hold the byte */
			k = 1;
		}
	}
	putc('"', f);
}

/* The standard stream (1 or 2) whose file path names, or -1: /dev/stdout, /proc/self/fd/2,
 * or the file the stream was sent to (a batch job's log). The report is written through the
 * stream there, where it stands: reopening the file would truncate the log, and renaming a
 * file over /dev/stdout (a link) would replace the system's link. */
static int report_stream(const char *path)
{
	struct stat a, b;
	int fd;

	if (stat(path, &a))
		return -1;
	for (fd = 1; fd <= 2; fd++)
		if (!fstat(fd, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			return fd;
	return -1;
}

/* Whether the report goes to path in place: a terminal, a FIFO (nothing there to replace;
 * renaming over such a file would remove it), or a standard stream. */
bool pme_report_in_place(const char *path)
{
	struct stat st;

	return report_stream(path) >= 0 ||
	       (!stat(path, &st) && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode));
}

static void report_discard(struct staged_report *s)
{
	if (s->tmp)
		unlink(s->tmp);
	free(s->tmp);
	free(s->final);
	s->tmp = s->final = NULL;
}

/* Opens the report for writing: a standard stream's duplicate or path itself (s->tmp NULL)
 * when pme_report_in_place, else a temporary file beside the file path names (a symbolic
 * link's target; s->tmp its name, s->final that file's). Returns 0 or -errno (message in
 * err; nothing staged). */
static int report_open(const char *path, struct staged_report *s, FILE **f, struct pme_err *err)
{
	int rc, fd = report_stream(path);
	size_t tl;

	s->tmp = s->final = NULL;
	if (fd >= 0) {
		fflush(fd == 1 ? stdout : stderr); /* what the stream holds goes first */
		fd = dup(fd);
		*f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (*f)
			return 0;
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return pme_seterr(err, rc, "%s: cannot write the report (%s)", path, strerror(-rc));
	}
	if (pme_report_in_place(path)) {
		*f = fopen(path, "w");
		if (*f)
			return 0;
		rc = -errno;
		return pme_seterr(err, rc, "%s: cannot write the report (%s)", path,
				  strerror(errno));
	}
	s->final = pkb_out_target(path);
	tl = s->final ? strlen(s->final) + 48 : 0;
	s->tmp = s->final ? malloc(tl) : NULL;
	if (!s->tmp) {
		report_discard(s);
		return pme_seterr(err, -ENOMEM, "out of memory");
	}
	/* a new file, never one found at the name (a link planted in a shared directory would
	 * have its target truncated; another output's temporary file would be lost) */
	for (int i = 0; i < 100; i++) {
		pio_tmp_name(s->tmp, tl, s->final, false, (long)getpid(), i);
		fd = open(s->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	*f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (*f)
		return 0;
	rc = -errno;
	pme_seterr(err, rc, "%s: cannot write the report (%s)", path, strerror(-rc));
	if (fd >= 0) {
		close(fd);
	} else { /* nothing made: nothing for report_discard to remove */
		free(s->tmp);
		s->tmp = NULL;
	}
	report_discard(s);
	return rc;
}

int pme_report_check(const char *path, struct pme_err *err)
{
	struct staged_report s;
	struct stat st;
	FILE *f;
	int rc;

	if (report_stream(path) >= 0)
		return 0;
	if (!stat(path, &st) && !S_ISREG(st.st_mode)) {
		if (S_ISDIR(st.st_mode))
			return pme_seterr(err, -EISDIR, "%s: cannot write the report (%s)", path,
					  strerror(EISDIR));
		/* written in place (pme_report_in_place): not opened now, a FIFO would wait for
		 * its reader */
		if (access(path, W_OK))
			return pme_seterr(err, -errno, "%s: cannot write the report (%s)", path,
					  strerror(errno));
		return 0;
	}
	rc = report_open(path, &s, &f, err);
	if (!rc) {
		struct pkb_err ke;

		fclose(f);
		rc = pkb_check_replace(s.final, &ke);
		if (rc)
			pme_seterr(err, rc, "%s", ke.msg);
		report_discard(&s);
	}
	return rc;
}

/* Writes the report: in place (pme_report_in_place; s->tmp NULL), or to a temporary file beside
 * the file path names, complete and flushed, that report_commit puts in place (s->tmp, and
 * s->final its final name). Returns 0 or -errno (message in err; nothing left). */
static int report_stage(const char *path, const struct pme_config *c, const struct pme_report *r,
			struct staged_report *s, struct pme_err *err)
{
	double rate = r->t_total > 0 ? (double)r->records / r->t_total : 0;
	struct stat st;
	bool bad;
	size_t i;
	FILE *f;
	int rc = report_open(path, s, &f, err);

	if (rc)
		return rc;
	fprintf(f, "{\n  \"output\": ");
	pme_json_str(f, c->output, strlen(c->output));
	fprintf(f, ",\n  \"inputs\": [");
	for (i = 0; i < c->n_inputs; i++) {
		fprintf(f, "%s", i ? ", " : "");
		pme_json_str(f, c->inputs[i], strlen(c->inputs[i]));
	}
	fprintf(
	    f,
	    "],\n"
	    "  \"seconds\": {\"read\": %.6f, \"route\": %.6f, \"fill\": %.6f, \"write\": %.6f, "
	    "\"total\": %.6f},\n"
	    "  \"records\": %llu,\n  \"kb_records\": %llu,\n  \"records_per_s\": %.1f,\n"
	    "  \"fill_records_per_s\": %.1f,\n"
	    "  \"distinct_keys\": %llu,\n  \"duplicates\": %llu,\n  \"batches\": %llu,\n"
	    "  \"batch_records\": %llu,\n  \"imbalance\": %.4f,\n  \"peak_memory_bytes\": %llu,\n"
	    "  \"memory_budget_bytes\": %llu,\n"
	    "  \"threads\": %d,\n  \"partitions\": %u,\n  \"scheme\": \"%s\",\n"
	    "  \"prefix_stem\": %u,\n  \"prefix_depth\": %u,\n  \"zippers\": %u,\n  "
	    "\"on_duplicate\": \"%s\",\n"
	    "  \"sort\": %s,\n  \"allocator\": \"%s\",\n  \"huge_pages\": \"%s\"\n}\n",
	    r->t_read, r->t_route, r->t_fill, r->t_write, r->t_total,
	    (unsigned long long)r->records, (unsigned long long)r->kb_records, rate,
	    r->t_fill > 0 ? (double)(r->records + r->kb_records) / r->t_fill : 0,
	    (unsigned long long)r->distinct, (unsigned long long)r->duplicates,
	    (unsigned long long)r->batches, (unsigned long long)r->batch_records, r->imbalance,
	    (unsigned long long)r->peak_rss, (unsigned long long)r->memory, r->threads,
	    r->partitions, r->scheme == PME_SCHEME_HASH ? "hash" : "prefix", r->prefix_stem,
	    r->prefix_depth, r->zippers, pme_policy_name(c->on_duplicate),
	    c->sort ? "true" : "false", r->allocator, r->huge_pages);
	if (s->tmp && !stat(s->final, &st) && S_ISREG(st.st_mode)) /* keep its permissions */
		(void)fchmod(fileno(f), st.st_mode & 0777);
	bad = ferror(f) || fflush(f) || (s->tmp && fsync(fileno(f)));
	if (fclose(f) || bad) {
		rc = -EIO;
		pme_seterr(err, rc, "%s: cannot write the report (disk full or I/O error)", path);
		report_discard(s);
	}
	return rc;
}

/* Puts a staged report in place. Returns 0 or -errno (message in err). */
static int report_commit(const char *path, struct staged_report *s, struct pme_err *err)
{
	int rc = 0;

	if (s->tmp && rename(s->tmp, s->final)) {
		rc = -errno;
		pme_seterr(err, rc, "%s: cannot write the report (%s)", path, strerror(errno));
	} else {
		free(s->tmp); /* in place now */
		s->tmp = NULL;
	}
	report_discard(s);
	return rc;
}

int pme_report_write(const char *path, const struct pme_config *c, const struct pme_report *r,
		     struct pme_err *err)
{
	struct staged_report s;
	int rc = report_stage(path, c, r, &s, err);

	return rc ? rc : report_commit(path, &s, err);
}

void pme_report_print(FILE *f, const struct pme_config *c, const struct pme_report *r)
{
	fprintf(
	    f,
	    "ingested %llu records (%llu from --into) into %s: %llu distinct keys, %llu "
	    "duplicates\n"
	    "  %.3f s total, %.2f M records/s; read wait %.3f s, route %.3f s, fill %.3f s, "
	    "write %.3f s\n"
	    "  %d threads, %s scheme, %u partitions (imbalance %.2f), %s (huge pages: %s), peak "
	    "memory %.1f MiB\n",
	    (unsigned long long)(r->records + r->kb_records), (unsigned long long)r->kb_records,
	    c->output, (unsigned long long)r->distinct, (unsigned long long)r->duplicates,
	    r->t_total, r->t_total > 0 ? (double)r->records / r->t_total / 1e6 : 0, r->t_read,
	    r->t_route, r->t_fill, r->t_write, r->threads,
	    r->scheme == PME_SCHEME_HASH ? "hash" : "prefix", r->partitions, r->imbalance,
	    r->allocator, r->huge_pages, (double)r->peak_rss / 1048576.0);
	if (r->scheme == PME_SCHEME_PREFIX)
		fprintf(f,
			"  prefix split: after the %u-byte common prefix, on the next %u bytes\n",
			r->prefix_stem, r->prefix_depth);
}
