/*
 * route.c - routing a batch: every key to its partition (in parallel), a stable counting
 * sort of record indices by partition, and a stable sort of each partition's records by key.
 *
 * Stability is what makes the result deterministic: inside a partition the records keep
 * their input order (the counting sort scatters each thread's contiguous chunk in order, and
 * chunks are laid out in thread order), and the key sort breaks ties by record index, so
 * duplicates of a key are filled in input order whatever the thread count.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_internal.h"

uint64_t pme_dprefix(const uint8_t *key, unsigned depth)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < depth; i++)
		v = v << 8 | key[i];
	return v;
}

uint32_t pme_prefix_partition(const struct pme_router *r, uint64_t dprefix)
{
	uint32_t lo = 0, hi = r->nparts; /* answer in [lo, hi): last split <= dprefix */

	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (r->splits[mid] <= dprefix)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Slices of a batch for the routing passes: several a thread, taken dynamically, so that a
 * thread that loses its core for a while (to the reader thread, or another job) does not
 * hold the others at the end of a pass, as a static split would; the slices' histograms and
 * cursors (nbuckets each) stay within ROUTE_HIST_MAX entries. Records keep their order
 * across slices, so the sort stays stable whatever thread takes which slice.
 */
#define ROUTE_CHUNKS_PER_THREAD 8
#define ROUTE_HIST_MAX ((size_t)1 << 20)

#define RADIX_MIN 64   /* slices this long are split by their first key bits before the sort */
#define RADIX_BUCKET 2 /* ... into about this many records a bucket */
#define RADIX_BITS 14  /* ... on at most this many bits */
#define RADIX_CNT                                                                                  \
	((1u << RADIX_BITS) + 1) /* counters of a split (64 KiB: off the stack,                    \
				    which OMP_STACKSIZE may make small) */

static size_t route_chunks(int nthreads, uint32_t nbuckets)
{
	size_t c = nthreads > 1 ? (size_t)nthreads * ROUTE_CHUNKS_PER_THREAD : 1;

	while (c > (size_t)nthreads && c * nbuckets > ROUTE_HIST_MAX)
		c /= 2;
	return c < (size_t)nthreads ? (size_t)nthreads : c;
}

void pme_router_free(struct pme_router *r)
{
	free(r->splits);
	free(r->stem);
	free(r->pid);
	free(r->pre);
	free(r->idx);
	free(r->kp);
	free(r->tmp);
	free(r->start);
	free(r->hist);
	free(r->cnt);
	memset(r, 0, sizeof(*r));
}

int pme_router_init(struct pme_router *r, enum pme_scheme scheme, uint32_t nparts, int nthreads,
		    const uint8_t *stem, size_t stem_len, unsigned depth, const uint64_t *splits)
{
	memset(r, 0, sizeof(*r));
	r->scheme = scheme;
	r->nparts = nparts;
	r->nbuckets = scheme == PME_SCHEME_PREFIX ? nparts + 1 : nparts;
	r->nthreads = nthreads < 1 ? 1 : nthreads;
	r->nchunks = route_chunks(r->nthreads, r->nbuckets);
	r->depth = depth;
	if (stem_len > PME_STEM_MAX)
		return PM_EINVAL;
	r->start = calloc((size_t)r->nbuckets + 1, sizeof(*r->start));
	r->hist = calloc((size_t)r->nbuckets * r->nchunks, sizeof(*r->hist));
	r->cnt = malloc((size_t)r->nthreads * RADIX_CNT * sizeof(*r->cnt));
	if (!r->start || !r->hist || !r->cnt)
		goto out_nomem;
	if (scheme == PME_SCHEME_PREFIX) {
		r->splits = malloc((size_t)nparts * sizeof(*r->splits));
		r->stem = malloc(stem_len + 1);
		if (!r->splits || !r->stem)
			goto out_nomem;
		memcpy(r->splits, splits, (size_t)nparts * sizeof(*r->splits));
		if (stem_len)
			memcpy(r->stem, stem, stem_len);
		r->stem_len = stem_len;
	}
	return 0;
out_nomem:
	pme_router_free(r);
	return PM_ENOMEM;
}

static int grow(struct pme_router *r, size_t n)
{
	uint32_t *pid, *idx;
	uint64_t *pre;
	struct pme_kp *kp;

	if (n <= r->cap)
		return 0;
	if (n > UINT32_MAX)
		return PM_EOVERFLOW;
	pid = realloc(r->pid, n * sizeof(*pid));
	if (pid)
		r->pid = pid;
	pre = NULL; /* key heads: the prefix scheme's only */
	if (r->scheme == PME_SCHEME_PREFIX) {
		pre = realloc(r->pre, n * sizeof(*pre));
		if (pre)
			r->pre = pre;
	}
	idx = realloc(r->idx, n * sizeof(*idx));
	if (idx)
		r->idx = idx;
	kp = realloc(r->kp, n * sizeof(*kp));
	if (kp)
		r->kp = kp;
	if (!pid || (r->scheme == PME_SCHEME_PREFIX && !pre) || !idx || !kp)
		return PM_ENOMEM;
	r->cap = n;
	return 0;
}

/* Key order of records a and b of batch bt, whose keys all share their first l bytes; ties
 * by record index (so any sort is stable). Only keys that agree on 16 bytes after the common
 * prefix and are both longer than that are read from the batch. */
static inline bool rec_less(const struct pme_rbatch *bt, size_t l, const struct pme_kp *a,
			    const struct pme_kp *b)
{
	size_t la, lb, m;
	int c;

	if (a->k0 != b->k0)
		return a->k0 < b->k0;
	if (a->k1 != b->k1)
		return a->k1 < b->k1;
	if (a->len > PME_KP_SHORT && b->len > PME_KP_SHORT) {
		la = bt->key_off[a->rec + 1] - bt->key_off[a->rec] - l;
		lb = bt->key_off[b->rec + 1] - bt->key_off[b->rec] - l;
		m = la < lb ? la : lb;
		c = memcmp(bt->keys + bt->key_off[a->rec] + l + 16,
			   bt->keys + bt->key_off[b->rec] + l + 16, m - 16);
		if (c)
			return c < 0;
		if (la != lb)
			return la < lb;
	} else if (a->len != b->len) {
		return a->len < b->len; /* exact for the shorter key, so the order holds */
	}
	return a->rec < b->rec;
}

/* Sorts v[0..n) by key (stable), using t[0..n) as scratch; the result ends in v. */
static void sort_slice(const struct pme_rbatch *bt, size_t l, struct pme_kp *v, struct pme_kp *t,
		       size_t n)
{
	size_t i, j, w;
	struct pme_kp *src = v, *dst = t;

	/* insertion sort runs of 16, then bottom-up merges */
	for (i = 0; i < n; i += 16) {
		size_t end = i + 16 < n ? i + 16 : n;

		for (j = i + 1; j < end; j++) {
			struct pme_kp x = v[j];
			size_t k = j;

			while (k > i && rec_less(bt, l, &x, &v[k - 1])) {
				v[k] = v[k - 1];
				k--;
			}
			v[k] = x;
		}
	}
	for (w = 16; w < n; w *= 2) {
		for (i = 0; i < n; i += 2 * w) {
			size_t mid = i + w < n ? i + w : n, end = i + 2 * w < n ? i + 2 * w : n;
			size_t a = i, b = mid, o = i;

			/* branch-free steps: which run gives the next record is a coin toss on
			 * random keys */
			while (a < mid && b < end) {
				size_t c = rec_less(bt, l, &src[b], &src[a]);
				const struct pme_kp *p = c ? &src[b] : &src[a];

				dst[o++] = *p;
				b += c;
				a += c ^ 1;
			}
			while (a < mid)
				dst[o++] = src[a++];
			while (b < end)
				dst[o++] = src[b++];
		}
		struct pme_kp *x = src;

		src = dst;
		dst = x;
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
}

/*
 * Sorts a partition's slice v[0..n) by key (in place) and writes its record indices, in that
 * order, to idx[0..n); t[0..n) and cnt[0..RADIX_CNT) are scratch. rec_less is a total order
 * (ties by record index), so the result is the one sort_slice gives: long slices are first
 * scattered by the first bits of k0 that differ in the slice (one counting pass; 8 to RADIX_BITS
 * bits, so that random keys leave about RADIX_BUCKET records a bucket), which leaves sort_slice
 * short buckets, cheaper than merging the whole slice.
 */
static void sort_part(const struct pme_rbatch *bt, size_t l, struct pme_kp *v, struct pme_kp *t,
		      size_t n, uint32_t *idx, uint32_t *cnt)
{
	unsigned bits = 8, c, nb, skip;
	uint64_t diff;
	size_t i;

	/* the bits every k0 of the slice shares (a prefix partition's keys share their first
	 * bytes) split nothing: the split starts after them; short slices, or ones whose k0
	 * are all equal, go to sort_slice whole */
	for (i = 1, diff = 0; n >= RADIX_MIN && i < n; i++)
		diff |= v[i].k0 ^ v[0].k0;
	if (!diff) {
		sort_slice(bt, l, v, t, n);
		for (i = 0; i < n; i++)
			idx[i] = v[i].rec;
		return;
	}
	skip = (unsigned)__builtin_clzll(diff);
	while (bits < RADIX_BITS && ((size_t)RADIX_BUCKET << (bits + 1)) <= n)
		bits++;
	nb = 1u << bits;
	memset(cnt, 0, (nb + 1) * sizeof(*cnt));
	for (i = 0; i < n; i++)
		cnt[(v[i].k0 << skip >> (64 - bits)) + 1]++;
	for (c = 1; c <= nb; c++)
		cnt[c] += cnt[c - 1];
	for (i = 0; i < n; i++)
		t[cnt[v[i].k0 << skip >> (64 - bits)]++] = v[i];
	/* cnt[c] is now where bucket c ends; sort each bucket in t, with v as scratch */
	for (c = 0, i = 0; c < nb; c++) {
		size_t e = cnt[c];

		if (e - i > 1)
			sort_slice(bt, l, t + i, v + i, e - i);
		i = e;
	}
	memcpy(v, t, n * sizeof(*v));
	for (i = 0; i < n; i++)
		idx[i] = v[i].rec;
}

/* Length of the prefix that every key of b shares (0 for an empty batch). One pass over the
 * key arena in record order, comparing no more than the prefix found so far. */
static size_t batch_lcp(const struct pme_rbatch *b)
{
	const uint8_t *k0 = b->keys + (b->n ? b->key_off[0] : 0);
	size_t l = b->n ? b->key_off[1] - b->key_off[0] : 0, i, j;

	for (i = 1; i < b->n && l; i++) {
		const uint8_t *k = b->keys + b->key_off[i];
		size_t len = b->key_off[i + 1] - b->key_off[i];

		if (len < l)
			l = len;
		for (j = 0; j < l && k[j] == k0[j]; j++)
			;
		l = j;
	}
	return l;
}

/*
 * Sorts every bucket of the routed batch b by key. Each thread's merge sort scratch holds
 * as many records as the largest bucket, not as many as the batch: with hundreds of buckets
 * that is a small block that stays in the thread's cache, and far fewer fresh pages to
 * fault in. When the threads' blocks would add up to more than the batch (one bucket holds
 * most of it), the scratch is the batch's size and each bucket uses its own range of it.
 */
static int sort_buckets(struct pme_router *r, const struct pme_rbatch *b)
{
	const size_t nb = r->nbuckets, nt = (size_t)r->nthreads;
	size_t bk, most = 0, need;
	bool shared;

	for (bk = 0; bk < nb; bk++)
		if (r->start[bk + 1] - r->start[bk] > most)
			most = r->start[bk + 1] - r->start[bk];
	shared = most > b->n / nt;
	need = shared ? b->n : most * nt;
	if (need > r->tmp_cap) {
		struct pme_kp *t = realloc(r->tmp, need * sizeof(*t));

		if (!t)
			return PM_ENOMEM;
		r->tmp = t;
		r->tmp_cap = need;
	}
#pragma omp parallel for schedule(dynamic) num_threads(r->nthreads)
	for (bk = 0; bk < nb; bk++) {
		size_t s = r->start[bk], e = r->start[bk + 1];
		struct pme_kp *t =
		    shared ? r->tmp + s : r->tmp + most * (size_t)omp_get_thread_num();

		if (e - s > 1)
			sort_part(b, r->lcp, r->kp + s, t, e - s, r->idx + s,
				  r->cnt + (size_t)omp_get_thread_num() * RADIX_CNT);
	}
	return 0;
}

int pme_route(struct pme_router *r, const struct pme_rbatch *b, bool sort)
{
	const size_t nb = r->nbuckets;
	size_t n = b->n;
	int rc = grow(r, n);

	if (rc)
		return rc;
	r->lcp = sort ? batch_lcp(b) : 0;
	r->lcp_key = n ? b->keys + b->key_off[0] : NULL;
	r->sorted = sort;
#pragma omp parallel num_threads(r->nthreads)
	{
		const size_t nc = r->nchunks;
		long c;

#pragma omp for schedule(dynamic, 1)
		for (c = 0; c < (long)nc; c++) {
			size_t lo = n * (size_t)c / nc, hi = n * ((size_t)c + 1) / nc, i;
			size_t *h = r->hist + (size_t)c * nb;

			memset(h, 0, nb * sizeof(*h));
			for (i = lo; i < hi; i++) {
				const uint8_t *k = b->keys + b->key_off[i];
				size_t len = b->key_off[i + 1] - b->key_off[i];
				uint32_t p;

				if (r->scheme == PME_SCHEME_HASH) {
					p = pme_hash_partition(k, len, r->nparts);
				} else if (len < r->stem_len + r->depth ||
					   (r->stem_len && memcmp(k, r->stem, r->stem_len))) {
					p = r->nparts;
				} else {
					r->pre[i] = pme_head8(k + r->stem_len, len - r->stem_len);
					p = pme_prefix_partition(r,
								 r->pre[i] >> (64 - 8 * r->depth));
				}
				r->pid[i] = p;
				h[p]++;
			}
		}
#pragma omp single
		{
			size_t run = 0, bk, cc;

			for (bk = 0; bk < nb; bk++) {
				r->start[bk] = run;
				for (cc = 0; cc < nc; cc++) {
					size_t cnt = r->hist[cc * nb + bk];

					r->hist[cc * nb + bk] = run;
					run += cnt;
				}
			}
			r->start[nb] = run;
		}
#pragma omp for schedule(dynamic, 1)
		for (c = 0; c < (long)nc; c++) {
			size_t lo = n * (size_t)c / nc, hi = n * ((size_t)c + 1) / nc, i;
			size_t *h = r->hist + (size_t)c * nb;

			for (i = lo; i < hi; i++) {
				size_t at = h[r->pid[i]]++;

				r->idx[at] = (uint32_t)i;
				if (sort) {
					const uint8_t *k = b->keys + b->key_off[i] + r->lcp;
					size_t len = b->key_off[i + 1] - b->key_off[i] - r->lcp;

					r->kp[at].k0 = pme_head8(k, len);
					r->kp[at].k1 = len > 8 ? pme_head8(k + 8, len - 8) : 0;
					r->kp[at].rec = (uint32_t)i;
					r->kp[at].len =
					    len < UINT32_MAX ? (uint32_t)len : UINT32_MAX;
					r->kp[at].val = b->vals[i];
				}
			}
		}
	}
	if (!sort)
		return 0;
	return sort_buckets(r, b);
}

int pme_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A sample key, for sorting the sample. */
struct kref {
	const uint8_t *p;
	size_t len;
};

static int kref_cmp(const void *a, const void *b)
{
	const struct kref *x = a, *y = b;

	return pme_key_cmp(x->p, x->len, y->p, y->len);
}

int pme_prefix_plan(const uint8_t *keys, const size_t *off, size_t n, uint32_t nparts,
		    uint8_t *stem, size_t *stem_len, unsigned *depth, uint64_t *splits)
{
	uint64_t *v = malloc((n ? n : 1) * sizeof(*v));
	struct kref *r = malloc((n ? n : 1) * sizeof(*r));
	unsigned d;
	size_t m = 0, i, distinct = 0, s = 0;
	uint32_t p;

	if (!v || !r) {
		free(v);
		free(r);
		return PM_ENOMEM;
	}
	/* the stem: the prefix that all but the outer 1% of the sample share, that of its keys
	 * of rank n/100 and n-1-n/100 in key order (every key between two keys shares their
	 * common prefix). Keys that share their first bytes (paths under one project, say) are
	 * told apart by the bytes after them; a stray key does not take the stem away (it is
	 * written apart, as every key outside the stem). */
	if (n) {
		const struct kref *lo, *hi;

		for (i = 0; i < n; i++) {
			r[i].p = keys + off[i];
			r[i].len = off[i + 1] - off[i];
		}
		qsort(r, n, sizeof(*r), kref_cmp);
		lo = &r[n / 100];
		hi = &r[n - 1 - n / 100];
		while (s < lo->len && s < hi->len && s < PME_STEM_MAX && lo->p[s] == hi->p[s])
			s++;
		if (s)
			memcpy(stem, lo->p, s);
	}
	free(r);
	for (d = 1; d <= 8; d++) {
		m = 0;
		for (i = 0; i < n; i++)
			if (off[i + 1] - off[i] >= s + d && (!s || !memcmp(keys + off[i], stem, s)))
				v[m++] = pme_dprefix(keys + off[i] + s, d);
		qsort(v, m, sizeof(*v), pme_u64_cmp);
		for (i = 0, distinct = 0; i < m; i++)
			distinct += i == 0 || v[i] != v[i - 1];
		if (distinct >= nparts)
			break;
	}
	if (d > 8)
		d = 8;
	/* quantiles; equal neighbours leave some partitions empty, which is harmless */
	splits[0] = 0;
	for (p = 1; p < nparts; p++) {
		uint64_t q = m ? v[(size_t)((uint64_t)m * p / nparts)] : 0;

		splits[p] = q > splits[p - 1] ? q : splits[p - 1];
	}
	free(v);
	*stem_len = s;
	*depth = d;
	return 0;
}
