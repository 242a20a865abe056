/*
 * fill.c - writing a partition's records through its write zipper, under the duplicate
 * policy. Runs inside the parallel region: everything written here (the zipper's subtrie,
 * the partition's heap and counters) belongs to one partition, so there is no lock and no
 * atomic.
 */
#include <stdlib.h>
#include <string.h>

#include "ingest_internal.h"
#include "kb.h"

#define FETCH_FAR 16 /* records ahead whose offsets the fill loop prefetches */
#define FETCH_NEAR 8 /* records ahead whose key and value it prefetches */

/* What the update rule needs for one record. */
struct rec_arg {
	const struct pme_fill_ctx *fc; /* policy and value class */
	const struct pme_rbatch *b;    /* the record's batch */
	uint32_t rec;		       /* its index in b */
	uint64_t val;		       /* its value word (b->vals[rec]) */
	uint32_t hid;		       /* heap id of the partition */
	struct pme_part *part;	       /* partition state (heap) */
	bool existed;		       /* out: the key had a value */
};

/* Makes room for need more bytes after the first used of *buf (*cap allocated, doubled from
 * 4096): 0, PM_ENOMEM or PM_EOVERFLOW. */
static int buf_room(uint8_t **buf, size_t *cap, size_t used, size_t need)
{
	size_t ncap = *cap ? *cap : 4096;
	uint8_t *nb;

	if (*cap - used >= need)
		return 0;
	while (ncap - used < need) {
		if (ncap > SIZE_MAX / 2)
			return PM_EOVERFLOW;
		ncap *= 2;
	}
	nb = realloc(*buf, ncap);
	if (!nb)
		return PM_ENOMEM;
	*buf = nb;
	*cap = ncap;
	return 0;
}

/* Copies the blob of value word w of batch b into heap h; *out gets its map word. */
static int heap_put(struct pme_heap *h, uint32_t hid, const struct pme_rbatch *b, uint64_t w,
		    uint64_t *out)
{
	uint32_t len;
	size_t need;
	int rc;

	if (w > b->heap_len || b->heap_len - w < 4)
		return PME_EINTERNAL;
	len = (uint32_t)b->heap[w] | (uint32_t)b->heap[w + 1] << 8 |
	      (uint32_t)b->heap[w + 2] << 16 | (uint32_t)b->heap[w + 3] << 24;
	if (b->heap_len - w - 4 < len)
		return PME_EINTERNAL;
	need = 4 + (size_t)len;
	rc = buf_room(&h->buf, &h->cap, h->len, need);
	if (rc)
		return rc;
	if (h->len >= ((uint64_t)1 << PME_HEAP_SHIFT))
		return PM_EOVERFLOW;
	memcpy(h->buf + h->len, b->heap + w, need);
	*out = PME_WORD(hid, h->len);
	h->len += need;
	return 0;
}

/* The new value a record brings (its own, before combining). */
static int new_value(struct rec_arg *a, uint64_t *out)
{
	uint64_t w = a->val;

	if (a->fc->policy == PME_DUP_COUNT) {
		*out = a->b->preagg ? w : 1;
		return 0;
	}
	if (a->fc->blob)
		return heap_put(&a->part->heap, a->hid, a->b, w, out);
	*out = w;
	return 0;
}

static int rule(bool exists, uint64_t old, uint64_t *val, void *arg)
{
	struct rec_arg *a = arg;
	uint64_t v = a->val;
	bool less;

	a->existed = exists;
	if (!exists)
		return new_value(a, val) ? PM_ENOMEM : PM_UPDATE_STORE;
	switch (a->fc->policy) {
	case PME_DUP_LAST:
		return new_value(a, val) ? PM_ENOMEM : PM_UPDATE_STORE;
	case PME_DUP_FIRST:
		return PM_UPDATE_KEEP;
	case PME_DUP_ERROR:
		return PME_EDUP;
	case PME_DUP_COUNT:
		*val = old + (a->b->preagg ? v : 1);
		return PM_UPDATE_STORE;
	case PME_DUP_SUM:
		return pkb_num_add(a->fc->vclass, old, v, val) ? PM_UPDATE_STORE : PME_ESUM;
	case PME_DUP_MIN:
	case PME_DUP_MAX:
		/* the new value wins when it is below (min) or above (max) the old one */
		less = a->fc->policy == PME_DUP_MAX ? pkb_num_less(a->fc->vclass, old, v)
						    : pkb_num_less(a->fc->vclass, v, old);
		if (!less)
			return PM_UPDATE_KEEP;
		*val = v;
		return PM_UPDATE_STORE;
	}
	return PME_EINTERNAL;
}

static void note_error(struct pme_part *part, const struct pme_rbatch *b, uint32_t rec, int rc)
{
	uint64_t ord = b->ordinal + rec;

	if (!part->rc || ord < part->err_ord) {
		part->rc = rc;
		part->err_ord = ord;
	}
}

/* Record i of the routed batch: its index into b, its value word in *v and its key (after
 * skip bytes) in *k and *len. kbuf holds the batch's common prefix when kp is set (then the
 * value comes from the pme_kp, and the key of a short record is rebuilt there from it:
 * nothing of such a record is read from the batch). */
static inline uint32_t rec_at(const struct pme_rbatch *b, const struct pme_router *r,
			      const struct pme_kp *kp, size_t i, size_t skip, uint8_t *kbuf,
			      uint64_t *v, const uint8_t **k, size_t *len)
{
	uint32_t q;
	size_t l;

	if (kp) {
		q = kp[i].rec;
		*v = kp[i].val;
		l = pme_kp_key(&kp[i], r->lcp, kbuf);
		if (l != SIZE_MAX) {
			*k = kbuf + skip;
			*len = l - skip;
			return q;
		}
	} else {
		q = r->idx[i];
		*v = b->vals[q];
	}
	*k = b->keys + b->key_off[q] + skip;
	*len = b->key_off[q + 1] - b->key_off[q] - skip;
	return q;
}

void pme_fill_buf_free(struct pme_fill_buf *fb)
{
	free(fb->kv);
	free(fb->keys);
	memset(fb, 0, sizeof(*fb));
}

/*
 * The last-value policy on numbers over a sorted run: the run's keys are laid out one after
 * the other in fb->keys (short ones rebuilt from their pme_kp, long ones copied from the
 * batch, which is read at random: prefetched ahead) and go to the zipper in key order in one
 * call, which builds the nodes they add whole. Equal keys are next to each other in input
 * order, so the last one wins, as record by record. Returns false when fb cannot grow (the
 * caller then goes record by record).
 */
static bool fill_sorted(const struct pme_rbatch *b, const struct pme_router *r, size_t from,
			size_t to, pm_wz *wz, size_t skip, struct pme_part *part,
			struct pme_fill_buf *fb)
{
	const struct pme_kp *kp = r->kp + from;
	const size_t n = to - from;
	size_t i, used = 0, added = 0;
	int rc;

	if (n > fb->kv_cap) {
		pm_kv *kv = realloc(fb->kv, n * sizeof(*kv));

		if (!kv)
			return false;
		fb->kv = kv;
		fb->kv_cap = n;
	}
	for (i = 0; i < n; i++) {
		const struct pme_kp *e = &kp[i];
		size_t l, sz;

		if (i + FETCH_FAR < n && kp[i + FETCH_FAR].len > PME_KP_SHORT)
			__builtin_prefetch(&b->key_off[kp[i + FETCH_FAR].rec]);
		if (i + FETCH_NEAR < n && kp[i + FETCH_NEAR].len > PME_KP_SHORT)
			__builtin_prefetch(b->keys + b->key_off[kp[i + FETCH_NEAR].rec]);
		if (e->len <= PME_KP_SHORT) {
			sz = r->lcp + PME_KP_SHORT; /* pme_kp_key writes all 16 bytes */
			if (buf_room(&fb->keys, &fb->keys_cap, used, sz))
				return false;
			if (r->lcp)
				memcpy(fb->keys + used, r->lcp_key, r->lcp);
			l = pme_kp_key(e, r->lcp, fb->keys + used);
		} else {
			sz = l = b->key_off[e->rec + 1] - b->key_off[e->rec];
			if (buf_room(&fb->keys, &fb->keys_cap, used, sz))
				return false;
			memcpy(fb->keys + used, b->keys + b->key_off[e->rec], l);
		}
		/* an offset until the arena stops moving */
		fb->kv[i].key = (const uint8_t *)(uintptr_t)(used + skip);
		fb->kv[i].len = l - skip;
		fb->kv[i].val = e->val;
		used += sz;
	}
	for (i = 0; i < n; i++)
		fb->kv[i].key = fb->keys + (uintptr_t)fb->kv[i].key;
	rc = pm_wz_set_sorted(wz, fb->kv, n, &added);
	part->records += n;
	part->dups += n - added;
	if (rc < 0)
		note_error(part, b, kp[0].rec, rc);
	return true;
}

#define HOLD_RUNS_MAX 64 /* runs a partition holds back before it fills them */

void pme_held_free(struct pme_held *h)
{
	size_t max = h->chunk_max, i;

	for (i = 0; i < h->nchunks; i++)
		free(h->chunk[i]);
	free(h->chunk);
	free(h->run);
	memset(h, 0, sizeof(*h));
	h->chunk_max = max;
}

/*
 * A held record: | len u32 | value u64 | key (len bytes) |. A mark | UINT32_MAX | next
 * chunk's address | ends a chunk. The merge compares keys by their first 8 bytes as a number
 * (pme_head8, computed as a run's cursor reaches the record: storing it cost 8 more bytes of
 * fresh memory a record, 22% of a 16-byte key's record).
 */
#define HELD_HDR 12		   /* len and value */
#define HELD_MARK 12		   /* a mark's bytes */
#define HELD_FIRST ((size_t)16384) /* a partition's first chunk */

static inline uint32_t held_len(const uint8_t *p)
{
	uint32_t l;

	memcpy(&l, p, 4);
	return l;
}

static inline const uint8_t *held_key(const uint8_t *p)
{
	return p + HELD_HDR;
}

static inline uint64_t held_head(const uint8_t *p)
{
	return pme_head8(held_key(p), held_len(p));
}

/* The record after p, a run's record that is not its last (so a mark is followed). */
static inline const uint8_t *held_next(const uint8_t *p)
{
	p += HELD_HDR + held_len(p);
	if (held_len(p) == UINT32_MAX)
		memcpy(&p, p + 4, sizeof(p));
	return p;
}

/* Byte order of held records a and b whose heads are equal (a prefix first). */
static int held_cmp_tail(const uint8_t *a, const uint8_t *b)
{
	uint32_t la = held_len(a), lb = held_len(b);
	int c = memcmp(held_key(a), held_key(b), la < lb ? la : lb);

	return c ? c : (la > lb) - (la < lb);
}

bool pme_held_begin(struct pme_held *h)
{
	if (h->nruns == h->run_cap) {
		size_t nc = h->run_cap ? 2 * h->run_cap : 8;
		struct pme_held_run *nr = realloc(h->run, nc * sizeof(*nr));

		if (!nr)
			return false;
		h->run = nr;
		h->run_cap = nc;
	}
	h->run[h->nruns++] = (struct pme_held_run){NULL, 0};
	return true;
}

/* Makes h->pos the start of a new chunk with room for a record of sz bytes and a mark, and
 * marks the end of the chunk before. */
static bool held_chunk(struct pme_held *h, size_t sz)
{
	size_t max = h->chunk_max ? h->chunk_max : PME_HELD_CHUNK, csz;
	uint8_t *c;

	csz = max; /* 16, 32, 64, 128 KiB, then max */
	if (h->nchunks < 4 && (HELD_FIRST << h->nchunks) < max)
		csz = HELD_FIRST << h->nchunks;
	if (sz > SIZE_MAX - HELD_MARK)
		return false;
	if (csz < sz + HELD_MARK)
		csz = sz + HELD_MARK;
	if (h->nchunks == h->chunk_cap) {
		size_t nc = h->chunk_cap ? 2 * h->chunk_cap : 8;
		uint8_t **na = realloc(h->chunk, nc * sizeof(*na));

		if (!na)
			return false;
		h->chunk = na;
		h->chunk_cap = nc;
	}
	c = malloc(csz);
	if (!c)
		return false;
	h->chunk[h->nchunks++] = c;
	if (h->pos) { /* the mark: the rest of the old chunk has HELD_MARK bytes at least */
		uint32_t m = UINT32_MAX;

		memcpy(h->pos, &m, 4);
		memcpy(h->pos + 4, &c, sizeof(c));
	}
	h->pos = c;
	h->lim = c + csz - HELD_MARK;
	return true;
}

static inline bool held_add(struct pme_held *h, const uint8_t *k, size_t len, uint64_t v)
{
	struct pme_held_run *run = &h->run[h->nruns - 1];
	size_t sz = HELD_HDR + len;
	uint32_t l = (uint32_t)len;
	uint8_t *o;

	if (len >= UINT32_MAX) /* UINT32_MAX is a mark's */
		return false;
	if ((size_t)(h->lim - h->pos) < sz && !held_chunk(h, sz))
		return false;
	o = h->pos;
	memcpy(o, &l, 4);
	memcpy(o + 4, &v, 8);
	memcpy(o + HELD_HDR, k, len);
	h->pos = o + sz;
	if (!run->n++)
		run->first = o;
	h->len += sz;
	h->nrec++;
	return true;
}

bool pme_held_add(struct pme_held *h, const uint8_t *k, size_t len, uint64_t v)
{
	return h->nruns && held_add(h, k, len, v);
}

/*
 * Appends the sorted run kp[from..to) (keys after skip bytes) to what part holds back.
 * Returns false when the buffers cannot grow: the records held of the run stay held, a run
 * of their own, and part->records counts them; the caller fills the rest.
 */
static size_t hold_run(const struct pme_rbatch *b, const struct pme_router *r, size_t from,
		       size_t to, size_t skip, struct pme_part *part)
{
	struct pme_held *h = &part->held;
	const struct pme_kp *kp = r->kp;
	uint64_t nrec = h->nrec;
	uint8_t kbuf[256];
	size_t i;

	if (r->lcp + PME_KP_SHORT > sizeof(kbuf) || !pme_held_begin(h))
		return from;
	if (r->lcp) /* lcp_key may be NULL then */
		memcpy(kbuf, r->lcp_key, r->lcp);
	for (i = from; i < to; i++) {
		const uint8_t *k;
		uint64_t v;
		size_t kl;

		if (i + FETCH_FAR < to && kp[i + FETCH_FAR].len > PME_KP_SHORT)
			__builtin_prefetch(&b->key_off[kp[i + FETCH_FAR].rec]);
		if (i + FETCH_NEAR < to && kp[i + FETCH_NEAR].len > PME_KP_SHORT)
			__builtin_prefetch(b->keys + b->key_off[kp[i + FETCH_NEAR].rec]);
		(void)rec_at(b, r, kp, i, skip, kbuf, &v, &k, &kl);
		if (!held_add(h, k, kl, v))
			break;
	}
	if (i > from && !nrec)
		h->ord = b->ordinal + kp[from].rec;
	part->records += i - from;
	return i;
}

/*
 * The merge: a tournament of losers over the runs. Run q's next record is cur[q] (head
 * hd[q]), with rem[q] records left from it; node j (1 <= j < n) of the tree, whose children
 * are 2j and 2j + 1 and whose leaves n + q are the runs, keeps the run that lost there. One
 * comparison a level for each record out.
 */
struct held_merge {
	const uint8_t *cur[HOLD_RUNS_MAX];
	size_t rem[HOLD_RUNS_MAX];
	uint64_t hd[HOLD_RUNS_MAX];
	uint32_t loser[HOLD_RUNS_MAX];
	uint32_t n; /* runs */
};

/* Whether run a's next record goes before run b's: smaller key, or equal and earlier run
 * (equal keys keep input order); a finished run goes after every other. */
static inline bool held_before(const struct held_merge *m, uint32_t a, uint32_t b)
{
	int c;

	if (!m->rem[a])
		return false;
	if (!m->rem[b])
		return true;
	if (m->hd[a] != m->hd[b])
		return m->hd[a] < m->hd[b];
	c = held_cmp_tail(m->cur[a], m->cur[b]);
	return c < 0 || (c == 0 && a < b);
}

/* Puts held record p in kv. */
static inline void held_emit(const uint8_t *p, pm_kv *kv)
{
	uint32_t l = held_len(p);

	kv->key = held_key(p);
	kv->len = l;
	memcpy(&kv->val, p + 4, 8);
}

void pme_fill_flush(pm_wz *wz, struct pme_part *part, struct pme_fill_buf *fb)
{
	struct pme_held *h = &part->held;
	struct held_merge m;
	uint32_t win[2 * HOLD_RUNS_MAX], w;
	size_t n = 0, i, added = 0;
	int rc = 0;

	if (!h->nrec)
		goto out;
	if (h->nrec > fb->kv_cap) {
		pm_kv *kv = realloc(fb->kv, h->nrec * sizeof(*kv));

		if (!kv) {
			rc = PM_ENOMEM;
			goto out;
		}
		fb->kv = kv;
		fb->kv_cap = h->nrec;
	}
	m.n = (uint32_t)h->nruns;
	for (i = 0; i < m.n; i++) {
		m.cur[i] = h->run[i].first;
		m.rem[i] = h->run[i].n;
		m.hd[i] = m.rem[i] ? held_head(m.cur[i]) : 0;
	}
	/* play the tournament bottom up: win[] holds each node's winner */
	for (i = 0; i < m.n; i++)
		win[m.n + i] = (uint32_t)i;
	for (i = m.n; i-- > 1;) {
		uint32_t a = win[2 * i], b = win[2 * i + 1];
		bool ab = held_before(&m, a, b);

		win[i] = ab ? a : b;
		m.loser[i] = ab ? b : a;
	}
	w = m.n > 1 ? win[1] : 0;
	while (m.rem[w]) {
		held_emit(m.cur[w], &fb->kv[n++]);
		if (--m.rem[w]) {
			m.cur[w] = held_next(m.cur[w]);
			m.hd[w] = held_head(m.cur[w]);
		}
		for (i = (m.n + w) / 2; i >= 1; i /= 2) { /* replay w's way to the root */
			if (held_before(&m, m.loser[i], w)) {
				uint32_t t = m.loser[i];

				m.loser[i] = w;
				w = t;
			}
		}
	}
	rc = pm_wz_set_sorted(wz, fb->kv, n, &added);
	part->dups += n - added;
out:
	if (rc < 0 && (!part->rc || h->ord < part->err_ord)) {
		part->rc = rc;
		part->err_ord = h->ord;
	}
	pme_held_free(h);
}

void pme_fill_run(const struct pme_fill_ctx *fc, const struct pme_rbatch *b,
		  const struct pme_router *r, size_t from, size_t to, pm_wz *wz, size_t skip,
		  uint32_t hid, struct pme_part *part, struct pme_fill_buf *fb)
{
	struct rec_arg a = {fc, b, 0, 0, hid, part, false};
	bool fast = fc->policy == PME_DUP_LAST && !fc->blob;
	const uint32_t *idx = r->idx;
	const struct pme_kp *kp = NULL;
	uint8_t kbuf[256];
	size_t i;
	int rc;

	if (fast && fb && r->sorted && fc->hold) {
		size_t held = hold_run(b, r, from, to, skip, part);

		if (held == to) {
			if (part->held.len >= fc->hold || part->held.nruns == HOLD_RUNS_MAX)
				pme_fill_flush(wz, part, fb);
			return;
		}
		pme_fill_flush(wz, part, fb); /* then the rest of this run on its own */
		from = held;
	}
	if (fast && fb && r->sorted && fill_sorted(b, r, from, to, wz, skip, part, fb))
		return;
	/* sorted records carry their first key bytes: short keys need no batch read */
	if (r->sorted && r->lcp + PME_KP_SHORT <= sizeof(kbuf)) {
		kp = r->kp;
		if (r->lcp) /* lcp_key may be NULL then */
			memcpy(kbuf, r->lcp_key, r->lcp);
	}
	for (i = from; i < to; i++) {
		const uint8_t *k;
		size_t len;
		uint64_t v;
		uint32_t q;

		/* idx follows key order, so the batch is read at random: fetch a record's offsets
		 * FETCH_FAR records ahead, its key (and without kp its value) FETCH_NEAR ahead
		 * (the offsets are in cache by then); a short key in kp needs nothing */
		if (i + FETCH_FAR < to && (!kp || kp[i + FETCH_FAR].len > PME_KP_SHORT))
			__builtin_prefetch(&b->key_off[idx[i + FETCH_FAR]]);
		if (i + FETCH_NEAR < to && (!kp || kp[i + FETCH_NEAR].len > PME_KP_SHORT)) {
			q = kp ? kp[i + FETCH_NEAR].rec : idx[i + FETCH_NEAR];
			__builtin_prefetch(b->keys + b->key_off[q]);
			if (!kp)
				__builtin_prefetch(&b->vals[q]);
		}
		q = rec_at(b, r, kp, i, skip, kbuf, &v, &k, &len);
		if (fast) {
			rc = pm_wz_set_at(wz, k, len, v, NULL);
		} else {
			a.rec = q;
			a.val = v;
			a.existed = false;
			rc = pm_wz_update_at(wz, k, len, rule, &a);
		}
		part->records++;
		if (rc == 0)
			part->dups++;
		else if (rc < 0)
			note_error(part, b, q, rc);
	}
}

void pme_fill_map(const struct pme_fill_ctx *fc, const struct pme_rbatch *b, const uint32_t *idx,
		  size_t from, size_t to, pm_map *m, uint32_t hid, struct pme_part *part)
{
	struct rec_arg a = {fc, b, 0, 0, hid, part, false};
	size_t i;
	int rc;

	for (i = from; i < to; i++) {
		uint32_t r = idx[i];

		a.rec = r;
		a.val = b->vals[r];
		a.existed = false;
		rc = pm_map_update(m, b->keys + b->key_off[r], b->key_off[r + 1] - b->key_off[r],
				   rule, &a);
		part->records++;
		if (rc == 0 && a.existed)
			part->dups++;
		else if (rc < 0)
			note_error(part, b, r, rc);
	}
}

int pme_blob_get(void *ud, uint64_t w, const uint8_t **data, size_t *len)
{
	const struct pme_fill_ctx *fc = ud;
	uint64_t hid = w >> PME_HEAP_SHIFT, off = w & (((uint64_t)1 << PME_HEAP_SHIFT) - 1);
	const struct pme_heap *h;
	uint32_t l;

	if (hid >= fc->nparts)
		return PME_EINTERNAL;
	h = &fc->parts[hid].heap;
	if (off > h->len || h->len - off < 4)
		return PME_EINTERNAL;
	l = (uint32_t)h->buf[off] | (uint32_t)h->buf[off + 1] << 8 |
	    (uint32_t)h->buf[off + 2] << 16 | (uint32_t)h->buf[off + 3] << 24;
	if (h->len - off - 4 < l)
		return PME_EINTERNAL;
	*data = h->buf + off + 4;
	*len = l;
	return 0;
}
