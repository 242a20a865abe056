/*
 * snapshot.c - canonical snapshot images of a pathmap: builder, in-place reader, verifier.
 *
 * The format is specified in pathmap/FORMAT.md; in short, an image is
 *
 *   +----------------------------------------+ 0
 *   | nodes, post-order (children first)     |
 *   +----------------------------------------+ node_bytes
 *   | zero padding to a multiple of 8        |
 *   +----------------------------------------+ len - 64
 *   | footer: magic, version, flags, root,   |
 *   | count, node_bytes, max_key, checksums  |
 *   +----------------------------------------+ len
 *
 * and one node is
 *
 *   | tag u8 | plen varint | prefix | value 0/1/2/4/8 LE |            leaf (no children)
 *   | ... as above ...  | count varint | n-1 u8 | n bytes | refs |    list (1..32 children)
 *   | ... as above ...  | count varint | mask 32 bytes    | refs |    dense (33..256 children)
 *
 *   tag: bits 0-1 kind (0 leaf, 1 list, 2 dense), bits 2-4 value width code (0 none, 1, 2, 3,
 *   4 for 1, 2, 4, 8 bytes), bits 5-7 ref width - 1. refs: n little-endian distances (node
 *   offset - child offset), each ref-width bytes, in child-byte order.
 *
 * Every read of the reader goes through decode(), which checks each field against the node
 * area before touching it; child offsets must be strictly below their parent's, so any walk
 * ends. The builder keeps the path of the last key as a stack of open frames and emits a node
 * when the next key leaves it, so it needs no memory beyond one path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t's size, to allocate it through the hook */
#include <xxhash.h>

#include "pm_internal.h"
#include "pm_snap.h"

#if defined(__GNUC__)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define UNLIKELY(x) (x)
#endif

#define LIST_MAX 32	  /* most children of a list node; more make a dense node */
#define OUTBUF (1u << 16) /* builder's output buffer */
#define STAGE_PREFIX 64	  /* emit: prefixes up to this long are staged with their node */
#define EMIT_SLACK 80	  /* emit: room for a node's fields beyond its prefix and children */
#define FOOTER_SUM_AT 56  /* footer bytes covered by the footer checksum */

static const uint8_t snap_magic[8] = {'P', 'M', 'S', 'N', 'A', 'P', 0x1a, '\n'};

enum { K_LEAF = 0, K_LIST = 1, K_DENSE = 2 };

/* Value bytes by value width code; codes 5-7 are invalid (0 here, like "no value"). */
static const unsigned vwidth[8] = {0, 1, 2, 4, 8, 0, 0, 0};

/* leaf_vw[tag]: the value width of a valid leaf tag (kind 0, ref width bits 0, a value),
 * 0 for any other tag. One lookup tells the iterator's hot path "leaf, and how wide". */
#define LVW(c) ((c) == 1 ? 1 : (c) == 2 ? 2 : (c) == 3 ? 4 : (c) == 4 ? 8 : 0)
#define LV(t) (((t)&0xe3) == 0 ? LVW(((t) >> 2) & 7) : 0)
#define LV4(t) LV(t), LV((t) + 1), LV((t) + 2), LV((t) + 3)
#define LV16(t) LV4(t), LV4((t) + 4), LV4((t) + 8), LV4((t) + 12)
#define LV64(t) LV16(t), LV16((t) + 16), LV16((t) + 32), LV16((t) + 48)
static const uint8_t leaf_vw[256] = {LV64(0), LV64(64), LV64(128), LV64(192)};
#undef LV64
#undef LV16
#undef LV4
#undef LV
#undef LVW

const char *pm_snap_strerror(int rc)
{
	switch (rc) {
	case PM_SNAP_ECORRUPT:
		return "snapshot is corrupt (a structural rule is broken)";
	case PM_SNAP_EFOREIGN:
		return "not a pathmap snapshot (wrong magic: foreign or truncated data)";
	case PM_SNAP_EVERSION:
		return "snapshot of a newer format version (or unknown flags)";
	case PM_SNAP_ETRUNC:
		return "snapshot is truncated";
	case PM_SNAP_ECHECKSUM:
		return "snapshot checksum mismatch (corrupt)";
	case PM_SNAP_EORDER:
		return "keys given to the snapshot builder are not strictly increasing";
	case PM_SNAP_ESINK:
		return "the snapshot output failed";
	default:
		return pm_strerror(rc);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Little-endian helpers */

static uint64_t get_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes v as 8 little-endian bytes at p. */
static inline void put_le8(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

static inline uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

/* le_mask[n]: the low n bytes of a word. */
static const uint64_t le_mask[9] = {0,
				    0xff,
				    0xffff,
				    0xffffff,
				    0xffffffff,
				    0xffffffffffull,
				    0xffffffffffffull,
				    0xffffffffffffffull,
				    0xffffffffffffffffull};

/*
 * Reads an n-byte (1..8) little-endian field at p with one 8-byte load. Only for fields in
 * the node area of an image: the 64-byte footer always follows that area, so the 8 bytes
 * lie inside the image even when the field ends at its last node byte.
 */
static inline uint64_t load_le(const uint8_t *p, unsigned n)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v & le_mask[n];
}

/* Bytes needed to hold v (at least 1). */
static unsigned width_of(uint64_t v)
{
	unsigned n = 1;

	while (n < 8 && (v >> (8 * n)) != 0)
		n++;
	return n;
}

static unsigned vcode_of(uint64_t v)
{
	unsigned w = width_of(v);

	return w == 1 ? 1 : w == 2 ? 2 : w <= 4 ? 3 : 4;
}

static unsigned varint_put(uint8_t *p, uint64_t v)
{
	unsigned n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static unsigned varint_len(uint64_t v)
{
	unsigned n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Reads a varint at *p, below lim. Returns false when it runs past lim or overflows 64 bits. */
static inline bool varint_get(const uint8_t *b, uint64_t *p, uint64_t lim, uint64_t *out)
{
	uint64_t v = 0;
	unsigned shift = 0;

	if (*p < lim && b[*p] < 0x80) { /* one byte: the common case */
		*out = b[(*p)++];
		return true;
	}
	while (*p < lim) {
		uint8_t c = b[(*p)++];

		if (shift == 63 && c > 1)
			return false;
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*out = v;
			return true;
		}
		shift += 7;
		if (shift > 63)
			return false;
	}
	return false;
}

static unsigned popcount8(uint8_t x)
{
	return (unsigned)__builtin_popcount(x);
}

/* ------------------------------------------------------------------------------------------ */
/* Node decoding: the only code that reads node bytes. */

struct nd {
	uint64_t off;	       /* first byte of the node */
	uint64_t end;	       /* one past its last byte */
	const uint8_t *prefix; /* compressed path, plen bytes */
	uint64_t plen;	       /* prefix length */
	uint64_t val;	       /* value word, when has_val */
	uint64_t count;	       /* values in the subtree, the node's own included */
	const uint8_t *keys;   /* list: n child bytes, ascending */
	const uint8_t *mask;   /* dense: 32-byte child mask, bit b = byte b>>3, bit b&7 */
	const uint8_t *refs;   /* n distances of rw bytes */
	unsigned n;	       /* children */
	unsigned rw;	       /* bytes per distance */
	unsigned kind;	       /* K_LEAF, K_LIST or K_DENSE */
	unsigned vcode;	       /* value width code */
	bool has_val;	       /* the node has a value */
};

/* Decodes the node at off. Returns 0 or PM_SNAP_ECORRUPT; never reads outside the node
 * area. Also refuses nodes that carry nothing (no value and fewer than two children). */
static inline int decode(const pm_snap *s, uint64_t off, struct nd *d)
{
	const uint8_t *b = s->base;
	uint64_t lim = s->node_bytes, p = off;
	unsigned tag, i;

	if (p >= lim)
		return PM_SNAP_ECORRUPT;
	tag = b[p++];
	d->off = off;
	d->kind = tag & 3;
	d->vcode = (tag >> 2) & 7;
	d->rw = (tag >> 5) + 1;
	if (d->kind > K_DENSE || d->vcode > 4 || (d->kind == K_LEAF && d->rw != 1))
		return PM_SNAP_ECORRUPT;
	if (!varint_get(b, &p, lim, &d->plen) || d->plen > lim - p)
		return PM_SNAP_ECORRUPT;
	d->prefix = b + p;
	p += d->plen;
	if (vwidth[d->vcode] > lim - p)
		return PM_SNAP_ECORRUPT;
	d->has_val = d->vcode != 0;
	d->val = d->vcode ? load_le(b + p, vwidth[d->vcode]) : 0;
	p += vwidth[d->vcode];
	d->keys = NULL;
	d->mask = NULL;
	if (d->kind == K_LEAF) {
		if (!d->has_val)
			return PM_SNAP_ECORRUPT;
		d->n = 0;
		d->count = 1;
		d->refs = b + p;
		d->end = p;
		return 0;
	}
	if (!varint_get(b, &p, lim, &d->count))
		return PM_SNAP_ECORRUPT;
	if (d->kind == K_LIST) {
		if (p >= lim)
			return PM_SNAP_ECORRUPT;
		d->n = (unsigned)b[p++] + 1;
		if (d->n > LIST_MAX || d->n > lim - p)
			return PM_SNAP_ECORRUPT;
		d->keys = b + p;
		p += d->n;
	} else {
		if (32 > lim - p)
			return PM_SNAP_ECORRUPT;
		d->mask = b + p;
		d->n = 0;
		for (i = 0; i < 4; i++)
			d->n += (unsigned)__builtin_popcountll(get64(d->mask + 8 * i));
		p += 32;
		if (d->n <= LIST_MAX)
			return PM_SNAP_ECORRUPT;
	}
	if (!d->has_val && d->n < 2)
		return PM_SNAP_ECORRUPT;
	if ((uint64_t)d->n * d->rw > lim - p)
		return PM_SNAP_ECORRUPT;
	d->refs = b + p;
	d->end = p + (uint64_t)d->n * d->rw;
	return 0;
}

/*
 * decode() for the most common interior node, a list node (iteration pushes one per
 * branching point near the leaves): the same checks, fewer branches. Returns 1 (and
 * touches nothing) when the node at off is not a list node.
 */
static inline int decode_list(const pm_snap *s, uint64_t off, struct nd *d)
{
	const uint8_t *b = s->base;
	const uint64_t lim = s->node_bytes;
	uint64_t p = off + 1, plen, count;
	unsigned tag = b[off], vw, n, rw; /* off < node_bytes: checked by the caller's ref */

	if ((tag & 3) != K_LIST)
		return 1;
	vw = vwidth[(tag >> 2) & 7];
	rw = (tag >> 5) + 1;
	if (((tag >> 2) & 7) > 4)
		return PM_SNAP_ECORRUPT;
	if (p < lim && b[p] < 0x80)
		plen = b[p++];
	else if (!varint_get(b, &p, lim, &plen))
		return PM_SNAP_ECORRUPT;
	if (plen > lim - p || vw > lim - p - plen)
		return PM_SNAP_ECORRUPT;
	d->prefix = b + p;
	p += plen;
	d->val = vw ? load_le(b + p, vw) : 0;
	p += vw;
	if (p < lim && b[p] < 0x80)
		count = b[p++];
	else if (!varint_get(b, &p, lim, &count))
		return PM_SNAP_ECORRUPT;
	if (p >= lim)
		return PM_SNAP_ECORRUPT;
	n = (unsigned)b[p++] + 1;
	if (n > LIST_MAX || n > lim - p || (!vw && n < 2) || (uint64_t)n * rw > lim - p - n)
		return PM_SNAP_ECORRUPT;
	d->off = off;
	d->plen = plen;
	d->count = count;
	d->keys = b + p;
	d->mask = NULL;
	d->refs = b + p + n;
	d->end = p + n + (uint64_t)n * rw;
	d->n = n;
	d->rw = rw;
	d->kind = K_LIST;
	d->vcode = (tag >> 2) & 7;
	d->has_val = vw != 0;
	return 0;
}

/* Offset of child i of d; PM_SNAP_ECORRUPT unless it lies strictly below d. */
static int child_off(const struct nd *d, unsigned i, uint64_t *off)
{
	uint64_t dist = load_le(d->refs + (size_t)i * d->rw, d->rw);

	if (dist - 1 >= d->off) /* dist == 0 wraps around: refused too */
		return PM_SNAP_ECORRUPT;
	*off = d->off - dist;
	return 0;
}

static bool mask_has(const uint8_t *mask, unsigned b)
{
	return (mask[b >> 3] >> (b & 7)) & 1;
}

/* Number of set bits below bit b. */
static unsigned mask_rank(const uint8_t *mask, unsigned b)
{
	unsigned r = 0, i;

	for (i = 0; i < (b >> 3); i++)
		r += popcount8(mask[i]);
	return r + popcount8((uint8_t)(mask[b >> 3] & ((1u << (b & 7)) - 1)));
}

/* Index of the first child whose byte is >= c (d->n when none); *exact tells equality. */
static unsigned child_lower(const struct nd *d, unsigned c, bool *exact)
{
	unsigned i;

	if (d->kind == K_LIST) {
		for (i = 0; i < d->n && d->keys[i] < c; i++)
			;
		*exact = i < d->n && d->keys[i] == c;
		return i;
	}
	*exact = mask_has(d->mask, c);
	return mask_rank(d->mask, c);
}

#define ITER_AHEAD 4

/* ------------------------------------------------------------------------------------------ */
/* Builder */

struct frame {
	uint64_t start;	   /* depth (in the last key) of the node's first prefix byte */
	uint64_t end;	   /* depth of its branch point: prefix = last[start..end) */
	uint64_t val;	   /* value at depth end, when has_val */
	size_t child_base; /* its finished children are ch[child_base..nch) */
	bool has_val;	   /* last[0..end) has a value */
};

struct child {
	uint64_t off;	/* node offset of the finished child */
	uint64_t count; /* values in its subtree */
	uint8_t byte;	/* branch byte leading to it */
};

struct pm_snap_builder {
	pm_alloc_fn alloc;    /* allocation hook */
	void *ud;	      /* its argument */
	pm_snap_sink_fn sink; /* output */
	void *sink_ud;	      /* its argument */
	int sink_rc;	      /* the sink's error, once it failed */
	int broken;	      /* a failed call left the builder unusable */
	uint8_t *last;	      /* the last key added */
	size_t last_len;      /* its length */
	size_t last_cap;      /* bytes allocated for last */
	struct frame *fr;     /* open frames, root first */
	size_t nfr;	      /* frames in use */
	size_t cap_fr;	      /* frames allocated */
	struct child *ch;     /* finished children of the open frames */
	size_t nch;	      /* children in use */
	size_t cap_ch;	      /* children allocated */
	uint64_t pos;	      /* bytes emitted so far */
	uint64_t count;	      /* keys added */
	uint64_t max_key;     /* longest key added */
	uint64_t done_root;   /* root offset, when done */
	bool done;	      /* pm_snap_builder_add_union emitted every node, root included */
	bool joining;	      /* pm_snap_builder_join_parts wrote parts: the root's children */
	bool part;	      /* pm_snap_builder_for_part: no image hash, no footer */
	pm_snap_tick_fn tick; /* told now and then during a union walk, or NULL */
	void *tick_arg;	      /* its argument */
	void *xs_raw;	      /* block holding the hash state */
	XXH3_state_t *xs;     /* hash of the bytes emitted, 64-byte aligned inside xs_raw */
	size_t blen;	      /* bytes waiting in buf */
	uint8_t buf[OUTBUF];  /* output buffer */
};

static int grow_slow(pm_alloc_fn alloc, void *ud, void **p, size_t *cap, size_t need, size_t elt)
{
	size_t ncap = *cap ? *cap : 16;
	void *np;

	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return PM_EOVERFLOW;
		ncap *= 2;
	}
	if (ncap > SIZE_MAX / elt)
		return PM_EOVERFLOW;
	np = alloc(ud, *p, *p ? *cap * elt : 0, ncap * elt);
	if (!np)
		return PM_ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

/* Makes room for need elements of elt bytes in *p (*cap of them now). 0 or an error. */
static inline int grow(pm_alloc_fn alloc, void *ud, void **p, size_t *cap, size_t need, size_t elt)
{
	if (need <= *cap)
		return 0;
	return grow_slow(alloc, ud, p, cap, need, elt);
}

/* Hashes (unless the builder makes a part) and sinks len bytes of output. */
static int put_out(pm_snap_builder *b, const void *data, size_t len)
{
	int rc;

	if (!b->part)
		XXH3_64bits_update(b->xs, data, len);
	rc = b->sink(b->sink_ud, data, len);
	if (rc) {
		b->sink_rc = rc;
		return PM_SNAP_ESINK;
	}
	return 0;
}

static int flush(pm_snap_builder *b)
{
	int rc;

	if (!b->blen)
		return 0;
	rc = put_out(b, b->buf, b->blen);
	b->blen = 0;
	return rc;
}

/* Writes data to the builder's output: small pieces gather in buf, a buffer's worth or more
 * (a part being joined) goes to the sink straight from data once buf is flushed. */
static int out(pm_snap_builder *b, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t k;
	int rc;

	b->pos += len;
	if (b->blen && b->blen + len >= OUTBUF) {
		k = OUTBUF - b->blen;
		memcpy(b->buf + b->blen, p, k);
		b->blen = OUTBUF;
		p += k;
		len -= k;
		rc = flush(b);
		if (rc)
			return rc;
	}
	if (len >= OUTBUF) {
		k = len - len % OUTBUF;
		rc = put_out(b, p, k);
		if (rc)
			return rc;
		p += k;
		len -= k;
	}
	if (len) {
		memcpy(b->buf + b->blen, p, len);
		b->blen += len;
	}
	return 0;
}

int pm_snap_builder_create(pm_alloc_fn alloc, void *ud, pm_snap_sink_fn sink, void *sink_ud,
			   pm_snap_builder **out_b)
{
	pm_snap_builder *b;
	uintptr_t a;

	if (!sink || !out_b)
		return PM_EINVAL;
	if (!alloc)
		alloc = pm_default_alloc;
	b = alloc(ud, NULL, 0, sizeof(*b));
	if (!b)
		return PM_ENOMEM;
	memset(b, 0, offsetof(pm_snap_builder, buf));
	b->alloc = alloc;
	b->ud = ud;
	b->sink = sink;
	b->sink_ud = sink_ud;
	b->xs_raw = alloc(ud, NULL, 0, sizeof(XXH3_state_t) + 64);
	if (!b->xs_raw) {
		alloc(ud, b, sizeof(*b), 0);
		return PM_ENOMEM;
	}
	a = ((uintptr_t)b->xs_raw + 63) & ~(uintptr_t)63;
	b->xs = (XXH3_state_t *)a;
	XXH3_64bits_reset(b->xs);
	*out_b = b;
	return 0;
}

int pm_snap_builder_for_part(pm_snap_builder *b)
{
	if (!b || b->broken || b->count || b->pos || b->joining)
		return PM_EINVAL;
	b->part = true;
	return 0;
}

void pm_snap_builder_destroy(pm_snap_builder *b)
{
	if (!b)
		return;
	if (b->last)
		b->alloc(b->ud, b->last, b->last_cap, 0);
	if (b->fr)
		b->alloc(b->ud, b->fr, b->cap_fr * sizeof(struct frame), 0);
	if (b->ch)
		b->alloc(b->ud, b->ch, b->cap_ch * sizeof(struct child), 0);
	b->alloc(b->ud, b->xs_raw, sizeof(XXH3_state_t) + 64, 0);
	b->alloc(b->ud, b, sizeof(*b), 0);
}

void pm_snap_builder_set_tick(pm_snap_builder *b, pm_snap_tick_fn fn, void *arg)
{
	b->tick = fn;
	b->tick_arg = fn ? arg : NULL;
}

int pm_snap_builder_sink_error(const pm_snap_builder *b)
{
	return b->sink_rc;
}

uint64_t pm_snap_builder_count(const pm_snap_builder *b)
{
	return b->count;
}

/* Whether a leaf with a prefix of plen bytes goes into the output buffer in place. */
static inline bool leaf_fits(const pm_snap_builder *b, uint64_t plen)
{
	return plen <= STAGE_PREFIX && b->blen + plen + 10 <= OUTBUF;
}

/*
 * Writes a leaf (leaf_fits) into the output buffer in place, as most nodes are leaves: tag,
 * plen in one varint byte, prefix, value (written 8 bytes wide: leaf_fits keeps them free).
 * The node's offset is b->pos before the call.
 */
static inline void leaf_put(pm_snap_builder *b, const uint8_t *prefix, uint64_t plen, bool has_val,
			    uint64_t val)
{
	uint8_t *q = b->buf + b->blen;
	unsigned vcode = has_val ? vcode_of(val) : 0;
	size_t h = 2 + (size_t)plen;

	q[0] = (uint8_t)(K_LEAF | vcode << 2);
	q[1] = (uint8_t)plen;
	memcpy(q + 2, prefix, (size_t)plen);
	put_le8(q + h, val);
	h += vwidth[vcode];
	b->blen += h;
	b->pos += h;
}

/*
 * Emits the node of frame f, whose prefix is prefix[0..plen) and whose children are
 * ch[f->child_base..nch); pops those children. *off and *count receive the node's offset and
 * subtree count.
 */
static int emit(pm_snap_builder *b, const struct frame *f, const uint8_t *prefix, uint64_t plen,
		uint64_t *off, uint64_t *count)
{
	/* the node is written into the output buffer in place when it has room (EMIT_SLACK
	 * covers the fields around the prefix, 9 bytes a child its byte or mask bit and its
	 * ref, and the 8 bytes that put_le8 writes for the last ref); otherwise the node up to
	 * its refs is staged in st and goes out in one piece, a longer prefix on its own */
	uint8_t st[STAGE_PREFIX + 96];
	uint8_t refs[8 * 64];
	size_t n = b->nch - f->child_base, i, k, h = 0;
	const struct child *c = b->ch + f->child_base;
	unsigned kind, vcode = 0, rw = 1;
	uint64_t cnt = f->has_val ? 1 : 0;
	bool direct;
	uint8_t *q;
	int rc = 0;

	*off = b->pos;
	if (!n && leaf_fits(b, plen)) {
		leaf_put(b, prefix, plen, f->has_val, f->val);
		*count = cnt;
		return 0;
	}
	direct = plen <= STAGE_PREFIX && b->blen + EMIT_SLACK + plen + 9 * n <= OUTBUF;
	q = direct ? b->buf + b->blen : st;
	kind = n == 0 ? K_LEAF : n <= LIST_MAX ? K_LIST : K_DENSE;
	if (f->has_val)
		vcode = vcode_of(f->val);
	if (n)
		rw = width_of(*off - c[0].off);
	for (i = 0; i < n; i++)
		cnt += c[i].count;
	q[h++] = (uint8_t)(kind | vcode << 2 | (rw - 1) << 5);
	h += varint_put(q + h, plen);
	if (plen <= STAGE_PREFIX) {
		memcpy(q + h, prefix, (size_t)plen);
		h += (size_t)plen;
	} else {
		rc = out(b, st, h);
		if (!rc)
			rc = out(b, prefix, (size_t)plen);
		h = 0;
	}
	if (vcode) {
		put_le(q + h, f->val, vwidth[vcode]);
		h += vwidth[vcode];
	}
	if (n) {
		h += varint_put(q + h, cnt);
		if (kind == K_LIST)
			q[h++] = (uint8_t)(n - 1);
	}
	if (kind == K_LIST) {
		for (i = 0; i < n; i++)
			q[h + i] = c[i].byte;
		h += n;
	} else if (kind == K_DENSE) {
		memset(q + h, 0, 32);
		for (i = 0; i < n; i++)
			q[h + (c[i].byte >> 3)] |= (uint8_t)(1u << (c[i].byte & 7));
		h += 32;
	}
	if (direct) {
		for (i = 0; i < n; i++, h += rw)
			put_le8(q + h, *off - c[i].off);
		b->blen += h;
		b->pos += h;
		n = 0; /* no refs left to write */
	} else if (!rc && h) {
		rc = out(b, st, h);
	}
	for (i = 0; !rc && i < n; i += k) {
		size_t j;

		k = n - i < 64 ? n - i : 64;
		for (j = 0; j < k; j++)
			put_le(refs + j * rw, *off - c[i + j].off, rw);
		rc = out(b, refs, k * rw);
	}
	if (rc)
		return rc;
	b->nch = f->child_base;
	*count = cnt;
	return 0;
}

/* Records a finished node (offset off, count values) as the next child, by byte, of the
 * node being built above it; the child array has room. */
static inline void put_child(pm_snap_builder *b, uint64_t off, uint64_t count, uint8_t byte)
{
	b->ch[b->nch].off = off;
	b->ch[b->nch].count = count;
	b->ch[b->nch].byte = byte;
	b->nch++;
}

/* Emits the top frame and records it as a child of the frame below. */
static int pop_frame(pm_snap_builder *b)
{
	struct frame *f = &b->fr[b->nfr - 1];
	uint64_t off, cnt;
	uint8_t byte = b->last[f->start - 1];
	int rc;

	rc = emit(b, f, b->last + f->start, f->end - f->start, &off, &cnt);
	if (rc)
		return rc;
	b->nfr--;
	/* emit() freed at least f's own slot range; the child array has room. */
	put_child(b, off, cnt, byte);
	return 0;
}

static int push_frame(pm_snap_builder *b, uint64_t start, uint64_t end, uint64_t val)
{
	int rc =
	    grow(b->alloc, b->ud, (void **)&b->fr, &b->cap_fr, b->nfr + 1, sizeof(struct frame));

	if (rc)
		return rc;
	b->fr[b->nfr].start = start;
	b->fr[b->nfr].end = end;
	b->fr[b->nfr].val = val;
	b->fr[b->nfr].has_val = true;
	b->fr[b->nfr].child_base = b->nch;
	b->nfr++;
	return 0;
}

int pm_snap_builder_add(pm_snap_builder *b, const uint8_t *key, size_t len, uint64_t val)
{
	size_t l = 0, m;
	struct frame *t;
	int rc;

	if (!b || (!key && len))
		return PM_EINVAL;
	if (b->broken)
		return b->broken;
	if (b->done || b->joining)
		return PM_EINVAL;
	if (b->count) {
		m = len < b->last_len ? len : b->last_len;
		while (l < m && key[l] == b->last[l])
			l++;
		if (l == len || (l < b->last_len && key[l] < b->last[l]))
			return PM_SNAP_EORDER;
	}
	/* Room first, so that nothing below fails half-way for want of memory: one more frame,
	 * and a child slot for every frame that may be popped plus the split. */
	rc = grow(b->alloc, b->ud, (void **)&b->last, &b->last_cap, len ? len : 1, 1);
	if (!rc)
		rc = grow(b->alloc, b->ud, (void **)&b->ch, &b->cap_ch, b->nch + b->nfr + 2,
			  sizeof(struct child));
	if (!rc)
		rc = grow(b->alloc, b->ud, (void **)&b->fr, &b->cap_fr, b->nfr + 2,
			  sizeof(struct frame));
	if (rc)
		return rc;
	if (!b->count) {
		if (len)
			memcpy(b->last, key, len);
		b->last_len = len;
		rc = push_frame(b, 0, len, val);
		goto out_added;
	}
	while (b->fr[b->nfr - 1].start > l) {
		rc = pop_frame(b);
		if (rc)
			goto out_broken;
	}
	t = &b->fr[b->nfr - 1];
	if (l < t->end) {
		/* The new key leaves t inside its prefix: t becomes the child (byte last[l]) of a
		 * new valueless node covering last[t->start..l). */
		struct frame tail = *t;
		uint64_t off, cnt;

		tail.start = l + 1;
		rc = emit(b, &tail, b->last + l + 1, t->end - l - 1, &off, &cnt);
		if (rc)
			goto out_broken;
		t->end = l;
		t->has_val = false;
		t->val = 0;
		put_child(b, off, cnt, b->last[l]);
	}
	if (len > l)
		memcpy(b->last + l, key + l, len - l);
	b->last_len = len;
	rc = push_frame(b, l + 1, len, val);
out_added:
	if (rc)
		goto out_broken;
	b->count++;
	if (len > b->max_key)
		b->max_key = len;
	return 0;
out_broken:
	b->broken = rc;
	return rc;
}

/* Pads the node bytes to a multiple of 8 and writes the footer, root being the root's offset. */
static int finish_image(pm_snap_builder *b, uint64_t root, uint64_t *image_len)
{
	uint8_t foot[PM_SNAP_FOOTER_SIZE], pad[8] = {0};
	uint64_t node_bytes = b->pos;
	int rc = 0;

	if (node_bytes % 8)
		rc = out(b, pad, 8 - node_bytes % 8);
	if (!rc)
		rc = flush(b);
	if (rc)
		return rc;
	memset(foot, 0, sizeof(foot));
	memcpy(foot, snap_magic, 8);
	put_le(foot + 8, PM_SNAP_VERSION, 4);
	put_le(foot + 12, 0, 4);
	put_le(foot + 16, root, 8);
	put_le(foot + 24, b->count, 8);
	put_le(foot + 32, node_bytes, 8);
	put_le(foot + 40, b->max_key, 8);
	put_le(foot + 48, XXH3_64bits_digest(b->xs), 8);
	put_le(foot + FOOTER_SUM_AT, XXH3_64bits(foot, FOOTER_SUM_AT), 8);
	b->pos += sizeof(foot);
	rc = b->sink(b->sink_ud, foot, sizeof(foot));
	if (rc) {
		b->sink_rc = rc;
		return PM_SNAP_ESINK;
	}
	if (image_len)
		*image_len = b->pos;
	b->broken = PM_EINVAL; /* finished: only destroy is left */
	return 0;
}

/* Emits every open frame, the root last; *root gets the root's offset. */
static int close_frames(pm_snap_builder *b, uint64_t *root)
{
	uint64_t cnt;
	int rc;

	if (b->done) {
		*root = b->done_root;
		return 0;
	}
	rc = grow(b->alloc, b->ud, (void **)&b->ch, &b->cap_ch, b->nch + 1, sizeof(struct child));
	while (!rc && b->nfr > 1)
		rc = pop_frame(b);
	if (!rc)
		rc = emit(b, &b->fr[0], b->last, b->fr[0].end, root, &cnt);
	if (!rc)
		b->nfr = 0;
	return rc;
}

int pm_snap_builder_finish(pm_snap_builder *b, uint64_t *image_len)
{
	uint64_t root = 0;
	int rc = 0;

	if (!b)
		return PM_EINVAL;
	if (b->part)
		return PM_EINVAL; /* a part builder's bytes are not hashed */
	if (b->broken)
		return b->broken;
	if (b->count)
		rc = close_frames(b, &root);
	if (!rc)
		rc = finish_image(b, root, image_len);
	if (rc)
		b->broken = rc;
	return rc;
}

int pm_snap_builder_finish_part(pm_snap_builder *b, struct pm_snap_part *part)
{
	uint64_t root = 0;
	int rc;

	if (!b || !part)
		return PM_EINVAL;
	if (b->broken)
		return b->broken;
	if (!b->count)
		return PM_EINVAL;
	rc = close_frames(b, &root);
	if (!rc)
		rc = flush(b);
	if (rc) {
		b->broken = rc;
		return rc;
	}
	part->len = b->pos;
	part->root = root;
	part->count = b->count;
	part->max_key = b->max_key;
	b->broken = PM_EINVAL; /* finished: only destroy is left */
	return 0;
}

int pm_snap_builder_join_parts(pm_snap_builder *b, const struct pm_snap_part *parts, size_t n)
{
	size_t i;
	int rc;

	if (!b || (!parts && n))
		return PM_EINVAL;
	if (b->part)
		return PM_EINVAL; /* a part builder's bytes are not hashed */
	if (b->broken)
		return b->broken;
	if (b->done || (!b->joining && (b->count || b->pos)))
		return PM_EINVAL;
	for (i = 0; i < n; i++)
		if (!parts[i].count || parts[i].root >= parts[i].len ||
		    parts[i].max_key == UINT64_MAX ||
		    (i ? parts[i].byte <= parts[i - 1].byte
		       : b->nch && parts[i].byte <= b->ch[b->nch - 1].byte))
			return PM_EINVAL;
	rc = grow(b->alloc, b->ud, (void **)&b->ch, &b->cap_ch, b->nch + n + 1,
		  sizeof(struct child));
	if (rc)
		return rc;
	b->joining = true;
	for (i = 0; i < n; i++) {
		put_child(b, b->pos + parts[i].root, parts[i].count, parts[i].byte);
		b->count += parts[i].count;
		if (parts[i].max_key >= b->max_key)
			b->max_key =
			    parts[i].max_key + 1; /* the branch byte, then the part's key */
		rc = out(b, parts[i].nodes, (size_t)parts[i].len);
		if (rc) {
			b->broken = rc;
			return rc;
		}
	}
	return 0;
}

int pm_snap_builder_join_finish(pm_snap_builder *b, const uint8_t *prefix, size_t plen,
				bool has_val, uint64_t val, uint64_t *image_len)
{
	struct frame root = {0, plen, val, 0, has_val};
	uint64_t off = 0, cnt;
	int rc;

	if (!b || (!prefix && plen))
		return PM_EINVAL;
	if (b->broken)
		return b->broken;
	if (b->part || b->done || (!b->joining && (b->count || b->pos)) ||
	    (b->nch == 1 && !has_val) || (b->nch && b->max_key > UINT64_MAX - plen))
		return PM_EINVAL;
	/* b->max_key holds 1 + the longest part key (0: no part) */
	b->max_key = b->nch ? plen + b->max_key : 0;
	if (has_val) {
		b->count++;
		if (plen > b->max_key)
			b->max_key = plen;
	}
	rc = 0;
	if (b->nch || has_val)
		rc = emit(b, &root, prefix, plen, &off, &cnt);
	if (!rc)
		rc = finish_image(b, off, image_len);
	if (rc)
		b->broken = rc;
	return rc;
}

int pm_snap_builder_join(pm_snap_builder *b, const uint8_t *prefix, size_t plen, bool has_val,
			 uint64_t val, const struct pm_snap_part *parts, size_t n,
			 uint64_t *image_len)
{
	size_t i;
	int rc;

	if (!b || (!prefix && plen) || (!parts && n))
		return PM_EINVAL;
	if (b->broken)
		return b->broken;
	if (b->part || b->count || b->pos || b->joining || (n == 1 && !has_val))
		return PM_EINVAL;
	for (i = 0; i < n; i++)
		if (parts[i].max_key > UINT64_MAX - plen - 1)
			return PM_EINVAL;
	rc = pm_snap_builder_join_parts(b, parts, n);
	if (!rc)
		rc = pm_snap_builder_join_finish(b, prefix, plen, has_val, val, image_len);
	return rc;
}

/* ---- the union of subtries of a map (pm_snap_builder_add_union) ---- */

/*
 * The walk goes down the union of the source subtries in key order and emits a node where the
 * union branches or holds a value, as the builder would on the same keys: a node's prefix is
 * the run of bytes that every source continues with. Where one source is left, its own nodes
 * are the union's (a pathmap is a compressed trie: a node has a value or two children), so
 * the walk copies them without looking at the other sources again.
 */

/* A position in one source: inside node n, off bytes into its prefix. */
struct upos {
	pm_node *n;
	size_t off;
	uint32_t src; /* index of its subtrie */
	uint8_t byte; /* in a parent's child list: the branch byte that leads here */
};

/* An open node of the union. */
struct uframe {
	struct frame f; /* for emit(): prefix last[f.start .. f.end), value, children */
	pm_node *one;	/* the only source, at its branch point; NULL: several */
	uint32_t src;	/* one: its subtrie */
	size_t pbase;	/* several: children at pos[pbase .. pend), grouped by byte */
	size_t pend;	/* ... */
	size_t next;	/* next child: index into pos (several) or child index (one) */
	int lastb;	/* one: byte of the last child visited (-1: none yet) */
};

struct ustate {
	pm_snap_builder *b;
	struct uframe *fr; /* open nodes, root first */
	size_t nfr, cap_fr;
	struct upos *pos; /* children of the open nodes with several sources, and one slot */
	size_t npos, cap_pos;
	struct upos *tmp; /* gathering scratch */
	size_t cap_tmp;
	uint64_t count, max_key, key_bytes;
	pm_snap_union_fn check; /* told of every key, or NULL */
	void *arg;		/* its argument */
};

static int u_grow(struct ustate *u, void **p, size_t *cap, size_t need, size_t elt)
{
	return grow(u->b->alloc, u->b->ud, p, cap, need, elt);
}

/* Counts a key of end bytes that the walk met. */
static inline void u_count_key(struct ustate *u, size_t end)
{
	u->count++;
	u->key_bytes += end;
	if (end > u->max_key)
		u->max_key = end;
}

static int u_push(struct ustate *u, size_t start, size_t end, bool has_val, uint64_t val,
		  uint32_t src, pm_node *one, size_t pbase, size_t pend)
{
	pm_snap_builder *b = u->b;
	struct uframe *F;
	int rc = u_grow(u, (void **)&u->fr, &u->cap_fr, u->nfr + 1, sizeof(*u->fr));

	if (!rc) /* the branch byte of a child goes to last[end] */
		rc = grow(b->alloc, b->ud, (void **)&b->last, &b->last_cap, end + 1, 1);
	if (rc)
		return rc;
	if (has_val && u->check && (rc = u->check(u->arg, src, b->last, end, &val)))
		return rc;
	F = &u->fr[u->nfr++];
	F->f.start = start;
	F->f.end = end;
	F->f.val = val;
	F->f.has_val = has_val;
	F->f.child_base = b->nch;
	F->one = one;
	F->src = src;
	F->pbase = pbase;
	F->pend = pend;
	F->next = one ? 0 : pbase;
	F->lastb = -1;
	if (has_val)
		u_count_key(u, end);
	return 0;
}

/* Asks for the headers of n's children, which the walk reads next: it is bound by the
 * latency of reading nodes scattered over the heap. */
static inline void u_prefetch_children(pm_node *n)
{
	pm_node **c;
	unsigned i, k;

	if (node_kind(n) == PM_LEAF)
		return;
	if (n->kind == PM_SMALL) {
		c = node_small(n)->child;
		k = node_small(n)->n;
	} else {
		c = node_dense(n)->child;
		k = node_dense(n)->n;
	}
	for (i = 0; i < k; i++)
		__builtin_prefetch(c[i]);
}

#define U_TICK_KEYS 65536 /* keys between two calls of the builder's tick */
#define U_SORT_SHORT 32	  /* children of a union node sorted by insertion (<= 256) */

/* Writes the positions that follow p, one per next byte, to t (in byte order); returns how
 * many. */
static size_t u_gather(const struct upos *p, struct upos *t)
{
	pm_node *n = p->n;
	size_t k = 0;

	if (p->off < node_plen(n)) {
		t->n = n;
		t->off = p->off + 1;
		t->src = p->src;
		t->byte = node_prefix(n)[p->off];
		return 1;
	}
	if (node_kind(n) == PM_SMALL) {
		struct pm_small *sm = node_small(n);

		for (k = 0; k < sm->n; k++) {
			__builtin_prefetch(sm->child[k]);
			t[k].n = sm->child[k];
			t[k].off = 0;
			t[k].src = p->src;
			t[k].byte = sm->key[k];
		}
	} else if (node_kind(n) == PM_DENSE) {
		struct pm_dense *dn = node_dense(n);

		for (unsigned w = 0; w < 4; w++)
			for (uint64_t m = dn->mask[w]; m; m &= m - 1) {
				__builtin_prefetch(dn->child[k]);
				t[k].n = dn->child[k];
				t[k].off = 0;
				t[k].src = p->src;
				t[k].byte = (uint8_t)(w * 64 + (unsigned)__builtin_ctzll(m));
				k++;
			}
	}
	return k;
}

/* Writes t[0..n) to out in byte order, stably. */
static void u_sort(const struct upos *t, size_t n, struct upos *out)
{
	size_t i;

	if (n <= U_SORT_SHORT) { /* few: an insertion sort of (byte, index) pairs */
		uint16_t key[U_SORT_SHORT];

		for (i = 0; i < n; i++) {
			uint16_t x = (uint16_t)(t[i].byte << 8 | i);
			size_t j = i;

			for (; j && key[j - 1] > x; j--)
				key[j] = key[j - 1];
			key[j] = x;
		}
		for (i = 0; i < n; i++)
			out[i] = t[key[i] & 0xff];
	} else if (n < 256) { /* some: a counting sort over the bytes present only */
		uint8_t at[256];
		uint64_t seen[4] = {0, 0, 0, 0};
		unsigned w, k, sum = 0;

		memset(at, 0, sizeof(at));
		for (i = 0; i < n; i++) {
			at[t[i].byte]++;
			seen[t[i].byte >> 6] |= UINT64_C(1) << (t[i].byte & 63);
		}
		for (w = 0; w < 4; w++)
			for (uint64_t m = seen[w]; m; m &= m - 1) {
				unsigned c = w * 64 + (unsigned)__builtin_ctzll(m);

				k = at[c];
				at[c] = (uint8_t)sum;
				sum += k;
			}
		for (i = 0; i < n; i++)
			out[at[t[i].byte]++] = t[i];
	} else { /* many: a counting sort */
		size_t cnt[257];

		memset(cnt, 0, sizeof(cnt));
		for (i = 0; i < n; i++)
			cnt[t[i].byte + 1]++;
		for (i = 1; i <= 256; i++)
			cnt[i] += cnt[i - 1];
		for (i = 0; i < n; i++)
			out[cnt[t[i].byte]++] = t[i];
	}
}

/*
 * The union node of one source p at a leaf, below an open node (the first d bytes of its
 * key are in last, the branch byte last[d - 1] the last of them): emitted at once as that
 * node's child, without a frame of its own. Most nodes of a snapshot are such leaves.
 */
static int u_leaf(struct ustate *u, const struct upos *p, size_t d)
{
	pm_snap_builder *b = u->b;
	const uint8_t *pre = node_prefix(p->n) + p->off;
	size_t pl = node_plen(p->n) - p->off, end = d + pl;
	struct frame f = {d, end, node_val(p->n), b->nch, true};
	uint64_t off, cnt;
	int rc;

	if (u->check) { /* it reads the key */
		rc = grow(b->alloc, b->ud, (void **)&b->last, &b->last_cap, end + 1, 1);
		if (rc)
			return rc;
		if (pl)
			memcpy(b->last + d, pre, pl);
		rc = u->check(u->arg, p->src, b->last, end, &f.val);
		if (rc)
			return rc;
	}
	rc = grow(b->alloc, b->ud, (void **)&b->ch, &b->cap_ch, b->nch + 1, sizeof(struct child));
	if (rc)
		return rc;
	if (leaf_fits(b, pl)) {
		off = b->pos;
		cnt = 1;
		leaf_put(b, pre, pl, true, f.val);
	} else if ((rc = emit(b, &f, pre, pl, &off, &cnt))) {
		return rc;
	}
	put_child(b, off, cnt, b->last[d - 1]);
	u_count_key(u, end);
	return 0;
}

/*
 * Opens the union node of the sources pos[s .. e) (their positions after the branch byte
 * last[d - 1]; adjusted in place), whose prefix starts at depth d.
 */
static int u_enter(struct ustate *u, size_t s, size_t e, size_t d)
{
	pm_snap_builder *b = u->b;
	size_t start = d, i, total, pb;
	uint32_t vsrc = 0;
	uint64_t val = 0;
	bool has_val;
	int rc;

	for (;;) {
		bool run;

		if (e - s == 1) {
			struct upos *p = &u->pos[s];
			size_t pl = node_plen(p->n) - p->off;

			rc = grow(b->alloc, b->ud, (void **)&b->last, &b->last_cap, d + pl + 1, 1);
			if (rc)
				return rc;
			if (pl)
				memcpy(b->last + d, node_prefix(p->n) + p->off, pl);
			u_prefetch_children(p->n);
			return u_push(u, start, d + pl, node_has_val(p->n), node_val(p->n), p->src,
				      p->n, 0, 0);
		}
		/* the sources' next positions, one for each byte that follows in each, to tmp;
		 * and the value of the key that ends here (in one source at most) */
		has_val = false;
		for (i = s, total = 0; i < e; i++) {
			struct upos *p = &u->pos[i];

			rc = u_grow(u, (void **)&u->tmp, &u->cap_tmp, total + 256, sizeof(*u->tmp));
			if (rc)
				return rc;
			if (p->off == node_plen(p->n) && node_has_val(p->n)) {
				if (has_val)
					return PM_EINVAL; /* one key in two sources */
				has_val = true;
				val = node_val(p->n);
				vsrc = p->src;
			}
			total += u_gather(p, u->tmp + total);
		}
		/* a run: every source goes on with one byte, the same, and no key ends here
		 * (a source with no next byte ends a key), so the byte belongs to the prefix */
		run = !has_val && total == e - s;
		for (i = 1; run && i < total; i++)
			run = u->tmp[i].byte == u->tmp[0].byte;
		if (!run)
			break;
		rc = grow(b->alloc, b->ud, (void **)&b->last, &b->last_cap, d + 2, 1);
		if (rc)
			return rc;
		b->last[d++] = u->tmp[0].byte;
		memcpy(u->pos + s, u->tmp, total * sizeof(*u->tmp));
	}
	/* a branch point: the positions, grouped by byte (stably: sources in order) */
	rc = u_grow(u, (void **)&u->pos, &u->cap_pos, u->npos + total + 1, sizeof(*u->pos));
	if (rc)
		return rc;
	pb = u->npos;
	u_sort(u->tmp, total, u->pos + pb);
	u->npos = pb + total;
	return u_push(u, start, d, has_val, val, vsrc, NULL, pb, pb + total);
}

/* Emits the top node and makes it a child of the one below (or the root). */
static int u_close(struct ustate *u, uint64_t *root)
{
	pm_snap_builder *b = u->b;
	struct uframe *F = &u->fr[u->nfr - 1];
	uint64_t off, cnt;
	int rc;

	rc = emit(b, &F->f, b->last + F->f.start, F->f.end - F->f.start, &off, &cnt);
	if (rc)
		return rc;
	if (!F->one)
		u->npos = F->pbase;
	u->nfr--;
	if (!u->nfr) {
		*root = off;
		return 0;
	}
	rc = grow(b->alloc, b->ud, (void **)&b->ch, &b->cap_ch, b->nch + 1, sizeof(struct child));
	if (rc)
		return rc;
	put_child(b, off, cnt, b->last[F->f.start - 1]);
	return 0;
}

/* The next child of single-source node n after the one at index i - 1 (byte *lastb). */
static pm_node *u_child(pm_node *n, size_t i, int *lastb)
{
	uint8_t cb;

	if (n->kind == PM_DENSE) {
		struct pm_dense *dn = node_dense(n);
		unsigned b = (unsigned)(*lastb + 1), w = b >> 6;
		uint64_t m = b < 256 ? dn->mask[w] & (~UINT64_C(0) << (b & 63)) : 0;

		while (!m && ++w < 4)
			m = dn->mask[w];
		*lastb = (int)(w * 64 + (unsigned)__builtin_ctzll(m));
		return dn->child[i];
	}
	n = node_child_at(n, (unsigned)i, &cb);
	*lastb = cb;
	return n;
}

int pm_snap_builder_add_union(pm_snap_builder *b, const pm_map *m, const uint8_t *const *paths,
			      const size_t *lens, size_t n, pm_snap_union_fn check, void *arg,
			      uint64_t *key_bytes)
{
	struct ustate u;
	uint64_t root = 0, next_tick = U_TICK_KEYS;
	size_t i;
	int rc = 0;

	if (!b || !m || (n && (!paths || !lens)))
		return PM_EINVAL;
	if (b->broken)
		return b->broken;
	if (b->count || b->pos || b->done || b->joining)
		return PM_EINVAL;
	if (n > UINT32_MAX)
		return PM_EOVERFLOW;
	memset(&u, 0, sizeof(u));
	u.b = b;
	u.check = check;
	u.arg = arg;
	rc = u_grow(&u, (void **)&u.pos, &u.cap_pos, n + 1, sizeof(*u.pos));
	for (i = 0; !rc && i < n; i++) {
		pm_pos at;

		if (!paths[i] && lens[i])
			rc = PM_EINVAL;
		else if (tr_find(m->root, paths[i], lens[i], &at)) {
			u.pos[u.npos].n = at.n;
			u.pos[u.npos].off = at.off;
			u.pos[u.npos].src = (uint32_t)i;
			u.npos++;
		}
	}
	if (!rc && b->tick)
		rc = b->tick(b->tick_arg, 0);
	if (!rc && u.npos) /* the roots stay in pos[0 .. npos), below the walk's slots */
		rc = u_enter(&u, 0, u.npos, 0);
	while (!rc && u.nfr) {
		struct uframe *F = &u.fr[u.nfr - 1];
		size_t end = F->f.end, gs, ge;

		if (b->tick && u.count >= next_tick) {
			next_tick = u.count + U_TICK_KEYS;
			rc = b->tick(b->tick_arg, u.count);
			if (rc)
				break;
		}

		if (F->one && F->next < node_nchild(F->one)) {
			pm_node *c = u_child(F->one, F->next, &F->lastb);

			F->next++;
			b->last[end] = (uint8_t)F->lastb;
			rc = u_grow(&u, (void **)&u.pos, &u.cap_pos, u.npos + 1, sizeof(*u.pos));
			if (rc)
				break;
			u.pos[u.npos].n = c;
			u.pos[u.npos].off = 0;
			u.pos[u.npos].src = F->src;
			gs = u.npos;
			ge = gs + 1;
		} else if (!F->one && F->next < F->pend) {
			size_t g = F->next, h = g + 1;
			uint8_t byte = u.pos[g].byte;

			while (h < F->pend && u.pos[h].byte == byte)
				h++;
			F->next = h;
			b->last[end] = byte;
			gs = g;
			ge = h;
		} else {
			rc = u_close(&u, &root);
			continue;
		}
		/* a leaf alone (most keys): emitted here, without a frame */
		if (ge == gs + 1 && node_kind(u.pos[gs].n) == PM_LEAF)
			rc = u_leaf(&u, &u.pos[gs], end + 1);
		else
			rc = u_enter(&u, gs, ge, end + 1);
	}
	if (u.fr)
		b->alloc(b->ud, u.fr, u.cap_fr * sizeof(*u.fr), 0);
	if (u.pos)
		b->alloc(b->ud, u.pos, u.cap_pos * sizeof(*u.pos), 0);
	if (u.tmp)
		b->alloc(b->ud, u.tmp, u.cap_tmp * sizeof(*u.tmp), 0);
	if (rc) {
		if (b->pos || b->nch) /* nodes went out: the builder is spent */
			b->broken = rc;
		return rc;
	}
	if (u.count) {
		b->done = true;
		b->done_root = root;
		b->count = u.count;
		b->max_key = u.max_key;
	}
	if (key_bytes)
		*key_bytes = u.key_bytes;
	return 0;
}

int pm_snap_write_map(const pm_map *m, pm_snap_sink_fn sink, void *sink_ud, uint64_t *image_len,
		      int *sink_rc)
{
	static const uint8_t *const whole[1] = {NULL};
	static const size_t zero[1] = {0};
	pm_snap_builder *b;
	int rc;

	rc = pm_snap_builder_create(NULL, NULL, sink, sink_ud, &b);
	if (rc)
		return rc;
	rc = pm_snap_builder_add_union(b, m, whole, zero, 1, NULL, NULL, NULL);
	if (!rc)
		rc = pm_snap_builder_finish(b, image_len);
	if (rc == PM_SNAP_ESINK && sink_rc)
		*sink_rc = pm_snap_builder_sink_error(b);
	pm_snap_builder_destroy(b);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Opening and point queries */

int pm_snap_open(pm_snap *s, const void *data, size_t len, unsigned flags)
{
	const uint8_t *f;
	uint64_t version, fflags, node_bytes, body;
	pm_snap t;
	uint64_t i;

	if (!s || (!data && len))
		return PM_EINVAL;
	if (len < PM_SNAP_FOOTER_SIZE)
		return len == 0 ? PM_SNAP_ETRUNC : PM_SNAP_EFOREIGN;
	f = (const uint8_t *)data + len - PM_SNAP_FOOTER_SIZE;
	if (memcmp(f, snap_magic, 8))
		return PM_SNAP_EFOREIGN;
	version = get_le(f + 8, 4);
	fflags = get_le(f + 12, 4);
	if (XXH3_64bits(f, FOOTER_SUM_AT) != get64(f + FOOTER_SUM_AT))
		return version > PM_SNAP_VERSION ? PM_SNAP_EVERSION : PM_SNAP_ECHECKSUM;
	if (version != PM_SNAP_VERSION || fflags != 0)
		return PM_SNAP_EVERSION;
	t.base = data;
	t.len = len;
	t.root = get64(f + 16);
	t.count = get64(f + 24);
	node_bytes = get64(f + 32);
	t.max_key = get64(f + 40);
	t.checksum = get64(f + 48);
	body = len - PM_SNAP_FOOTER_SIZE;
	if (node_bytes > body)
		return PM_SNAP_ETRUNC;
	if ((node_bytes + 7) / 8 * 8 != body)
		return PM_SNAP_ECORRUPT;
	for (i = node_bytes; i < body; i++)
		if (t.base[i])
			return PM_SNAP_ECORRUPT;
	t.node_bytes = node_bytes;
	if (t.count == 0 ? (node_bytes != 0 || t.root != 0 || t.max_key != 0)
			 : (t.root >= node_bytes || t.count > node_bytes || t.max_key > node_bytes))
		return PM_SNAP_ECORRUPT;
	if ((flags & PM_SNAP_OPEN_CHECKSUM) && XXH3_64bits(data, body) != t.checksum)
		return PM_SNAP_ECHECKSUM;
	*s = t;
	return 0;
}

/* Descends along key[0..len). Returns 0 with *d the node where the key ends and *inside the
 * bytes of d's prefix it covers when it ends inside the prefix (else UINT64_MAX: it ends at
 * d's branch point); PM_ENOTFOUND when the path leaves the trie; PM_SNAP_ECORRUPT. */
static int descend(const pm_snap *s, const uint8_t *key, size_t len, struct nd *d, uint64_t *inside)
{
	uint64_t off = s->root, pos = 0, depth = 0;
	int rc;

	if (s->count == 0)
		return PM_ENOTFOUND;
	for (;;) {
		bool exact;
		unsigned i;

		rc = decode(s, off, d);
		if (rc)
			return rc;
		if (len - pos <= d->plen) {
			if (len > pos && memcmp(d->prefix, key + pos, len - pos))
				return PM_ENOTFOUND;
			*inside = len - pos < d->plen ? len - pos : UINT64_MAX;
			return 0;
		}
		if (d->plen && memcmp(d->prefix, key + pos, (size_t)d->plen))
			return PM_ENOTFOUND;
		pos += d->plen;
		if (d->kind == K_LEAF)
			return PM_ENOTFOUND;
		i = child_lower(d, key[pos], &exact);
		if (!exact)
			return PM_ENOTFOUND;
		pos++;
		rc = child_off(d, i, &off);
		if (rc)
			return rc;
		if (++depth > s->node_bytes)
			return PM_SNAP_ECORRUPT;
	}
}

int pm_snap_get(const pm_snap *s, const uint8_t *key, size_t len, uint64_t *val)
{
	struct nd d;
	uint64_t inside;
	int rc;

	if (!s || (!key && len))
		return PM_EINVAL;
	rc = descend(s, key, len, &d, &inside);
	if (rc)
		return rc;
	if (inside != UINT64_MAX || !d.has_val)
		return PM_ENOTFOUND;
	if (val)
		*val = d.val;
	return 0;
}

int pm_snap_count_prefix(const pm_snap *s, const uint8_t *prefix, size_t len, uint64_t *count)
{
	struct nd d;
	uint64_t inside;
	int rc;

	if (!s || (!prefix && len) || !count)
		return PM_EINVAL;
	rc = descend(s, prefix, len, &d, &inside);
	if (rc == PM_ENOTFOUND) {
		*count = 0;
		return 0;
	}
	if (rc)
		return rc;
	*count = d.count;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Iteration */

struct it_frame {
	struct nd d;	 /* the node */
	uint64_t keyend; /* key length at the node's branch point */
	unsigned idx;	 /* next child to visit */
	uint64_t bits;	 /* dense: children not yet visited in mask word wi */
	unsigned wi;	 /* dense: the mask word of the next child */
	bool val_done;	 /* the node's own value was returned or skipped */
};

struct pm_snap_iter {
	const pm_snap *s;    /* the image */
	pm_alloc_fn alloc;   /* hook */
	void *ud;	     /* its argument */
	uint8_t *key;	     /* current key, max_key bytes (at least 1) */
	size_t key_cap;	     /* bytes allocated for key */
	uint8_t *pfx;	     /* prefix constraint of the last seek */
	size_t pfx_len;	     /* its length */
	size_t pfx_cap;	     /* bytes allocated for pfx */
	struct it_frame *fr; /* path from the root, root first */
	size_t nfr;	     /* frames in use */
	size_t cap_fr;	     /* frames allocated */
	uint64_t budget;     /* frames and node values the walk may still visit: bounds
				the work on damaged images that share subtrees (leaves need
				no budget: at most 256 per frame) */
};

int pm_snap_iter_create(const pm_snap *s, pm_alloc_fn alloc, void *ud, pm_snap_iter **out_it)
{
	pm_snap_iter *it;
	int rc;

	if (!s || !out_it)
		return PM_EINVAL;
	if (!alloc)
		alloc = pm_default_alloc;
	it = alloc(ud, NULL, 0, sizeof(*it));
	if (!it)
		return PM_ENOMEM;
	memset(it, 0, sizeof(*it));
	it->s = s;
	it->alloc = alloc;
	it->ud = ud;
	if (s->max_key > SIZE_MAX - 17) {
		rc = PM_EOVERFLOW;
		goto out_free;
	}
	/* 16 spare bytes: leaf prefixes are copied 16 bytes at a time. */
	rc = grow(alloc, ud, (void **)&it->key, &it->key_cap, (size_t)s->max_key + 17, 1);
	if (rc)
		goto out_free;
	rc = pm_snap_iter_seek(it, NULL, 0, NULL, 0);
	if (rc)
		goto out_free;
	*out_it = it;
	return 0;
out_free:
	pm_snap_iter_destroy(it);
	return rc;
}

void pm_snap_iter_destroy(pm_snap_iter *it)
{
	if (!it)
		return;
	if (it->key)
		it->alloc(it->ud, it->key, it->key_cap, 0);
	if (it->pfx)
		it->alloc(it->ud, it->pfx, it->pfx_cap, 0);
	if (it->fr)
		it->alloc(it->ud, it->fr, it->cap_fr * sizeof(struct it_frame), 0);
	it->alloc(it->ud, it, sizeof(*it), 0);
}

/* Dense frame f: the next child is the first with a byte >= c. */
static void it_dense_from(struct it_frame *f, unsigned c)
{
	f->wi = c >> 6;
	f->bits = get64(f->d.mask + 8 * f->wi) & (~UINT64_C(0) << (c & 63));
}

/*
 * Copies n key bytes from the image to the iterator's key buffer. Short runs move as one fixed
 * 16-byte copy: the key buffer has 16 spare bytes and the image holds 64 footer bytes after
 * its node area, so the over-read and over-write stay inside both.
 */
static inline void key_put(uint8_t *dst, const uint8_t *src, uint64_t n)
{
	if (n <= 16)
		memcpy(dst, src, 16);
	else
		memcpy(dst, src, (size_t)n);
}

/*
 * Pushes the node at off, reached by byte `byte` from the top frame (or the root when the
 * stack is empty), decoding it straight into its frame. Kept out of line: the iterator's hot
 * path (a leaf under the top frame) then needs fewer registers.
 */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static int
it_push(pm_snap_iter *it, uint64_t off, int byte)
{
	struct it_frame *f;
	uint64_t keyend = 0;
	int rc;

	if (it->budget == 0)
		return PM_SNAP_ECORRUPT;
	it->budget--;
	if (it->nfr == it->cap_fr) {
		rc = grow(it->alloc, it->ud, (void **)&it->fr, &it->cap_fr, it->nfr + 1,
			  sizeof(struct it_frame));
		if (rc)
			return rc;
	}
	f = &it->fr[it->nfr];
	rc = decode_list(it->s, off, &f->d);
	if (rc > 0) /* not a list node: the general decoder */
		rc = decode(it->s, off, &f->d);
	if (rc)
		return rc;
	if (it->nfr) {
		keyend = it->fr[it->nfr - 1].keyend;
		if (keyend >= it->s->max_key)
			return PM_SNAP_ECORRUPT;
		it->key[keyend++] = (uint8_t)byte;
	}
	if (f->d.plen > it->s->max_key - keyend)
		return PM_SNAP_ECORRUPT;
	key_put(it->key + keyend, f->d.prefix, f->d.plen);
	f->keyend = keyend + f->d.plen;
	f->idx = 0;
	if (f->d.kind == K_DENSE)
		it_dense_from(f, 0);
	f->val_done = !f->d.has_val; /* nothing to return before the children */
	it->nfr++;
	return 0;
}

/* Byte of child f->idx, advancing the dense cursor. */
static inline unsigned it_child_byte(struct it_frame *f)
{
	unsigned c;

	if (f->d.kind == K_LIST)
		return f->d.keys[f->idx];
	/* idx < n: a set bit remains; the bound on wi only guards a broken invariant */
	while (!f->bits && f->wi < 3)
		f->bits = get64(f->d.mask + 8 * ++f->wi);
	c = f->wi * 64 + (f->bits ? (unsigned)__builtin_ctzll(f->bits) : 0);
	f->bits &= f->bits - 1;
	return c;
}

int pm_snap_iter_seek(pm_snap_iter *it, const uint8_t *prefix, size_t plen, const uint8_t *from,
		      size_t flen)
{
	const uint8_t *t;
	size_t tlen, pos = 0;
	int rc;

	if (!it || (!prefix && plen) || (!from && flen))
		return PM_EINVAL;
	rc = grow(it->alloc, it->ud, (void **)&it->pfx, &it->pfx_cap, plen ? plen : 1, 1);
	if (rc)
		return rc;
	if (plen)
		memcpy(it->pfx, prefix, plen);
	it->pfx_len = plen;
	it->nfr = 0;
	it->budget = 3 * it->s->count + 3; /* nodes (< 2 count) and values */
	if (it->s->count == 0)
		return 0;
	/* Target: the larger of prefix and from. */
	t = it->pfx;
	tlen = plen;
	if (from) {
		size_t m = flen < plen ? flen : plen;
		int c = memcmp(from, it->pfx, m);

		if (c > 0 || (c == 0 && flen > plen)) {
			t = from;
			tlen = flen;
		}
	}
	rc = it_push(it, it->s->root, 0);
	while (!rc) {
		struct it_frame *f = &it->fr[it->nfr - 1];
		size_t m = tlen - pos < f->d.plen ? tlen - pos : (size_t)f->d.plen;
		int c = memcmp(f->d.prefix, t + pos, m);
		unsigned i;
		bool exact;

		if (c < 0) { /* the whole subtree sorts before t */
			it->nfr--;
			return 0;
		}
		if (c > 0 || tlen - pos <= f->d.plen) /* the whole subtree is >= t */
			return 0;
		pos += f->d.plen;
		f->val_done = true; /* its key is a proper prefix of t */
		if (f->d.kind == K_LEAF) {
			it->nfr--;
			return 0;
		}
		i = child_lower(&f->d, t[pos], &exact);
		f->idx = i;
		if (f->d.kind == K_DENSE)
			it_dense_from(f, t[pos]);
		if (!exact)
			return 0;
		{
			uint64_t off;
			unsigned byte = it_child_byte(f);

			rc = child_off(&f->d, f->idx, &off);
			if (rc)
				break;
			f->idx++;
			pos++;
			rc = it_push(it, off, (int)byte);
		}
	}
	it->nfr = 0;
	return rc;
}

/*
 * Returns the leaf at off (vw: its value width, from its tag), reached by byte from a frame whose
 * key ends at keyend: 1 with
 * the key, 0 when the key leaves the seek prefix (the walk ends), or PM_SNAP_ECORRUPT. Decoded here
 * with the checks of decode(), without a frame.
 */
static inline int it_leaf(pm_snap_iter *it, uint64_t keyend, uint64_t off, unsigned vw,
			  unsigned byte, const uint8_t **key, size_t *len, uint64_t *val)
{
	/* Locals first: stores to the key buffer may alias anything. */
	const uint8_t *b = it->s->base;
	const uint64_t lim = it->s->node_bytes, maxk = it->s->max_key;
	const uint64_t ke = keyend, pl = it->pfx_len;
	uint8_t *kb = it->key;
	uint64_t p = off + 1, plen, end;
	/* vw: value bytes, from leaf_vw[tag] (non-zero: a valid leaf tag) */

	if (p < lim && b[p] < 0x80) {
		plen = b[p++];
	} else if (!varint_get(b, &p, lim, &plen) || plen > lim - p || plen > maxk) {
		return PM_SNAP_ECORRUPT;
	}
	/* plen is now below lim - p and maxk (both <= the image size): no sum overflows */
	/* No budget here: leaves visited are at most 256 per frame pushed, and pushes are
	 * budgeted, so the walk stays linear in the image size. */
	if (UNLIKELY(plen + vw > lim - p || ke + 1 + plen > maxk))
		return PM_SNAP_ECORRUPT;
	kb[ke] = (uint8_t)byte;
	key_put(kb + ke + 1, b + p, plen);
	end = ke + 1 + plen;
	if (UNLIKELY(pl && (end < pl || memcmp(kb, it->pfx, pl)))) {
		it->nfr = 0;
		return 0;
	}
	*key = kb;
	*len = (size_t)end;
	*val = load_le(b + p + plen, vw);
	return 1;
}

/* Offset of the next child of f (advancing f); PM_SNAP_ECORRUPT if it is not below f. */
static inline int it_next_child(struct it_frame *f, const uint8_t *base, unsigned *byte,
				uint64_t *off)
{
	uint64_t dist;

	*byte = it_child_byte(f);
	dist = load_le(f->d.refs + (size_t)f->idx * f->d.rw, f->d.rw);
	if (UNLIKELY(dist - 1 >= f->d.off)) /* distance 0 or past the start */
		return PM_SNAP_ECORRUPT;
	*off = f->d.off - dist;
	/* The children lie one after another, each subtree before its parent; the walk comes
	 * back to this frame for the next ones after their siblings' subtrees: fetch a few
	 * children ahead, whose distances are at hand. */
	if (f->idx + ITER_AHEAD < f->d.n) {
		uint64_t d2 = load_le(f->d.refs + (size_t)(f->idx + ITER_AHEAD) * f->d.rw, f->d.rw);

		if (d2 - 1 < f->d.off)
			__builtin_prefetch(base + f->d.off - d2);
	}
	f->idx++;
	return 0;
}

int pm_snap_iter_next(pm_snap_iter *it, const uint8_t **key, size_t *len, uint64_t *val)
{
	int rc;

	while (it->nfr) {
		struct it_frame *f = &it->fr[it->nfr - 1];

		if (!f->val_done) {
			f->val_done = true;
			if (f->d.has_val) {
				if (it->budget == 0)
					return PM_SNAP_ECORRUPT;
				it->budget--;
				if (it->pfx_len && (f->keyend < it->pfx_len ||
						    memcmp(it->key, it->pfx, it->pfx_len))) {
					it->nfr = 0;
					return 0;
				}
				*key = it->key;
				*len = (size_t)f->keyend;
				*val = f->d.val;
				return 1;
			}
		}
		if (f->idx < f->d.n) {
			uint64_t off;
			unsigned byte, tag;

			rc = it_next_child(f, it->s->base, &byte, &off);
			if (rc)
				return rc;
			tag = it->s->base[off]; /* off < f->d.off < node_bytes */
			if (leaf_vw[tag])
				return it_leaf(it, f->keyend, off, leaf_vw[tag], byte, key, len,
					       val);
			rc = it_push(it, off, (int)byte);
			if (rc)
				return rc;
			continue;
		}
		it->nfr--;
	}
	return 0;
}

/*
 * A valueless list node whose children are leaves (the bottom of most tries) is walked by
 * pm_snap_iter_run() in place, without a frame. Returns 0 when all its leaves went to fn;
 * otherwise the node is pushed as a frame standing after the leaves visited (a child that
 * is not a leaf, fn's non-zero return, which is then returned, or an error).
 */
static int it_group(pm_snap_iter *it, const struct it_frame *f, uint64_t off, unsigned byte,
		    pm_snap_visit_fn fn, void *arg)
{
	const uint8_t *b = it->s->base;
	const uint8_t *k;
	struct nd d;
	uint64_t ke = f->keyend, val;
	size_t len;
	unsigned i = 0;
	int prc, rc = decode_list(it->s, off, &d);

	if (rc || d.has_val || it->budget == 0 || ke >= it->s->max_key ||
	    d.plen >= it->s->max_key - ke) {
		rc = 0;
		goto push; /* a frame for its value first; it_push() refuses the damaged */
	}
	it->budget--;
	it->key[ke] = (uint8_t)byte;
	key_put(it->key + ke + 1, d.prefix, d.plen);
	ke += 1 + d.plen;
	for (i = 0; i < d.n; i++) {
		uint64_t dist = load_le(d.refs + (size_t)i * d.rw, d.rw), c;
		unsigned vw;

		if (UNLIKELY(dist - 1 >= d.off))
			return PM_SNAP_ECORRUPT;
		c = d.off - dist;
		vw = leaf_vw[b[c]];
		if (!vw)
			break;
		rc = it_leaf(it, ke, c, vw, d.keys[i], &k, &len, &val);
		if (rc <= 0)
			return rc; /* damaged, or the walk left the seek prefix */
		rc = fn(k, len, val, arg);
		if (rc) {
			i++;
			break;
		}
	}
	if (i == d.n && !rc)
		return 0;
	it->budget++; /* it_push() counts the node */
push:
	prc = it_push(it, off, (int)byte);
	if (prc)
		return prc;
	it->fr[it->nfr - 1].idx = i; /* its value, if any, is still to come */
	return rc;
}

/*
 * The loop of pm_snap_iter_next() with the visitor inside: the top frame stays in registers
 * while its leaves go by, and no call returns per key.
 */
int pm_snap_iter_run(pm_snap_iter *it, pm_snap_visit_fn fn, void *arg)
{
	const uint8_t *k;
	size_t len;
	uint64_t val;
	bool down;
	int rc;

	if (!it || !fn)
		return PM_EINVAL;
	while (it->nfr) {
		struct it_frame *f = &it->fr[it->nfr - 1];

		if (!f->val_done) {
			rc = pm_snap_iter_next(it, &k, &len, &val); /* the node's own value */
			if (rc <= 0)
				return rc;
			rc = fn(k, len, val, arg);
			if (rc)
				return rc;
			continue;
		}
		down = false;
		while (f->idx < f->d.n) {
			uint64_t off;
			unsigned byte, tag;

			rc = it_next_child(f, it->s->base, &byte, &off);
			if (rc)
				return rc;
			tag = it->s->base[off];
			if (leaf_vw[tag]) {
				rc =
				    it_leaf(it, f->keyend, off, leaf_vw[tag], byte, &k, &len, &val);
				if (rc <= 0)
					return rc;
				rc = fn(k, len, val, arg);
			} else if ((tag & 3) == K_LIST) {
				size_t top = it->nfr;

				rc = it_group(it, f, off, byte, fn, arg);
				down = it->nfr != top; /* a frame pushed, or the walk ended */
			} else {
				rc = it_push(it, off, (int)byte);
				down = true;
			}
			if (rc)
				return rc;
			if (down)
				break; /* f may have moved: the stack grew */
		}
		if (!down)
			it->nfr--;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Verification */

struct v_frame {
	struct nd d;	 /* the node */
	uint64_t keyend; /* key length at its branch point */
	uint64_t cur;	 /* where the next child's subtree must start */
	uint64_t sum;	 /* counts of the children verified so far */
	unsigned idx;	 /* next child */
	unsigned nextb;	 /* dense: smallest byte of the next child */
};

static void fail_msg(char *msg, size_t msglen, const char *what, uint64_t off)
{
	if (msg && msglen)
		snprintf(msg, msglen, "%s (node at byte %llu of the trie)", what,
			 (unsigned long long)off);
}

/* Canonical encoded size of d, or 0 when its tag is not canonical. */
static uint64_t canonical_size(const struct nd *d, uint64_t maxdist)
{
	unsigned kind = d->n == 0 ? K_LEAF : d->n <= LIST_MAX ? K_LIST : K_DENSE;
	uint64_t sz;

	if (kind != d->kind || (d->has_val && d->vcode != vcode_of(d->val)))
		return 0;
	if (d->n && d->rw != width_of(maxdist))
		return 0;
	sz = 1 + varint_len(d->plen) + d->plen + vwidth[d->vcode];
	if (d->n)
		sz += varint_len(d->count) + (kind == K_LIST ? 1 + d->n : 32) +
		      (uint64_t)d->n * d->rw;
	return sz;
}

int pm_snap_verify(const pm_snap *s, bool skip_checksum, pm_alloc_fn alloc, void *ud,
		   pm_snap_stats *st, char *msg, size_t msglen)
{
	return pm_snap_verify_progress(s, skip_checksum, alloc, ud, NULL, NULL, st, msg, msglen);
}

int pm_snap_verify_progress(const pm_snap *s, bool skip_checksum, pm_alloc_fn alloc, void *ud,
			    pm_snap_progress_fn fn, void *arg, pm_snap_stats *st, char *msg,
			    size_t msglen)
{
	struct v_frame *fr = NULL;
	size_t nfr = 0, cap = 0;
	pm_snap_stats sum;
	uint64_t done_end = 0, done_count = 0;
	int rc = 0;

	if (!s)
		return PM_EINVAL;
	if (!alloc)
		alloc = pm_default_alloc;
	memset(&sum, 0, sizeof(sum));
	sum.node_bytes = s->node_bytes;
	if (!skip_checksum && XXH3_64bits(s->base, s->len - PM_SNAP_FOOTER_SIZE) != s->checksum) {
		if (msg && msglen)
			snprintf(msg, msglen, "trie checksum mismatch");
		return PM_SNAP_ECHECKSUM;
	}
	if (s->count == 0)
		goto out_ok;
	/* Push the root; its subtree must start at 0. */
	rc = grow(alloc, ud, (void **)&fr, &cap, 1, sizeof(*fr));
	if (rc)
		goto out_free;
	rc = decode(s, s->root, &fr[0].d);
	if (rc) {
		fail_msg(msg, msglen, "undecodable root node", s->root);
		goto out_free;
	}
	if (fr[0].d.plen > s->max_key) {
		rc = PM_SNAP_ECORRUPT;
		fail_msg(msg, msglen, "key longer than the recorded maximum", s->root);
		goto out_free;
	}
	fr[0].keyend = fr[0].d.plen;
	fr[0].cur = 0;
	fr[0].sum = 0;
	fr[0].idx = 0;
	fr[0].nextb = 0;
	nfr = 1;
	for (;;) {
		struct v_frame *f = &fr[nfr - 1];
		uint64_t maxdist, off;
		unsigned byte;

		if (f->idx < f->d.n) {
			struct v_frame *c;

			byte = f->d.kind == K_LIST ? f->d.keys[f->idx] : 0;
			if (f->d.kind == K_LIST && f->idx > 0 && f->d.keys[f->idx - 1] >= byte) {
				rc = PM_SNAP_ECORRUPT;
				fail_msg(msg, msglen, "child bytes not ascending", f->d.off);
				goto out_free;
			}
			if (f->d.kind == K_DENSE) {
				for (byte = f->nextb; !mask_has(f->d.mask, byte); byte++)
					;
				f->nextb = byte + 1;
			}
			/* Each child's subtree must start where the previous one ended (cur);
			 * the child node itself ends its subtree, checked when it completes. */
			rc = child_off(&f->d, f->idx, &off);
			if (rc) {
				fail_msg(msg, msglen, "child reference out of range", f->d.off);
				goto out_free;
			}
			f->idx++;
			rc = grow(alloc, ud, (void **)&fr, &cap, nfr + 1, sizeof(*fr));
			if (rc)
				goto out_free;
			f = &fr[nfr - 1];
			c = &fr[nfr];
			rc = decode(s, off, &c->d);
			if (rc) {
				fail_msg(msg, msglen, "undecodable node", off);
				goto out_free;
			}
			if (c->d.plen > s->max_key || f->keyend + 1 > s->max_key - c->d.plen) {
				rc = PM_SNAP_ECORRUPT;
				fail_msg(msg, msglen, "key longer than the recorded maximum", off);
				goto out_free;
			}
			if (c->d.off < f->cur) {
				rc = PM_SNAP_ECORRUPT;
				fail_msg(msg, msglen, "subtrees overlap", off);
				goto out_free;
			}
			c->keyend = f->keyend + 1 + c->d.plen;
			c->cur = f->cur;
			c->sum = 0;
			c->idx = 0;
			c->nextb = 0;
			nfr++;
			continue;
		}
		/* All children verified: check the node itself. */
		maxdist = 0;
		if (f->d.n) {
			rc = child_off(&f->d, 0, &off);
			if (rc)
				goto out_free;
			maxdist = f->d.off - off;
		}
		if (f->cur != f->d.off) {
			rc = PM_SNAP_ECORRUPT;
			fail_msg(msg, msglen, "node is not right after its subtree", f->d.off);
			goto out_free;
		}
		if (canonical_size(&f->d, maxdist) != f->d.end - f->d.off) {
			rc = PM_SNAP_ECORRUPT;
			fail_msg(msg, msglen, "node encoding is not canonical", f->d.off);
			goto out_free;
		}
		if (f->d.count != f->sum + (f->d.has_val ? 1 : 0)) {
			rc = PM_SNAP_ECORRUPT;
			fail_msg(msg, msglen, "subtree count does not match", f->d.off);
			goto out_free;
		}
		sum.nodes++;
		sum.prefix_bytes += f->d.plen;
		if (f->d.kind == K_LEAF)
			sum.leaf_nodes++;
		else if (f->d.kind == K_LIST)
			sum.list_nodes++;
		else
			sum.dense_nodes++;
		if (f->d.has_val) {
			sum.values++;
			if (fn && sum.values % PM_SNAP_PROGRESS_STEP == 0)
				fn(arg, sum.values);
			sum.key_bytes += f->keyend;
			if (f->keyend > sum.max_key)
				sum.max_key = f->keyend;
		}
		if (nfr > sum.max_depth)
			sum.max_depth = nfr;
		done_end = f->d.end;
		done_count = f->d.count;
		nfr--;
		if (!nfr)
			break;
		fr[nfr - 1].cur = done_end;
		if (fr[nfr - 1].sum > UINT64_MAX - done_count) {
			rc = PM_SNAP_ECORRUPT;
			fail_msg(msg, msglen, "subtree count overflows", fr[nfr - 1].d.off);
			goto out_free;
		}
		fr[nfr - 1].sum += done_count;
	}
	if (done_end != s->node_bytes || done_count != s->count || sum.values != s->count ||
	    sum.max_key != s->max_key) {
		rc = PM_SNAP_ECORRUPT;
		fail_msg(msg, msglen,
			 "root does not end the node area or totals differ from the "
			 "footer",
			 s->root);
		goto out_free;
	}
out_ok:
	if (st)
		*st = sum;
out_free:
	if (fr)
		alloc(ud, fr, cap * sizeof(*fr), 0);
	return rc;
}

int pm_snap_load(const pm_snap *s, pm_map *m)
{
	pm_snap_iter *it;
	const uint8_t *k;
	size_t len;
	uint64_t v;
	int rc;

	rc = pm_snap_iter_create(s, NULL, NULL, &it);
	if (rc)
		return rc;
	while ((rc = pm_snap_iter_next(it, &k, &len, &v)) == 1) {
		rc = pm_map_set(m, k, len, v, NULL);
		if (rc < 0)
			break;
	}
	pm_snap_iter_destroy(it);
	return rc;
}
