/*
 * pm_internal.h - node layout and internal primitives of the pathmap library.
 *
 * Not part of the API: only pathmap/src/ includes this file.
 *
 * A trie node stands for a path position and everything below it. Its compressed path
 * ("prefix") is consumed first; its value, if any, sits at the end of the prefix; its children
 * continue from there, one per next byte. Every node is one block from the allocator hook:
 *
 *   +-------+------+-------+------+---------+   header, 16 bytes
 *   | refs  | kind | flags | plen | val     |
 *   |  u32  |  u8  |  u8   | u16  | u64     |
 *   +-------+------+-------+------+---------+
 *   | [u32 long plen] prefix bytes ...      |   plen bytes (the u32 only with PM_F_LONGP;
 *   +---------------------------------------+    none with PM_F_IN1/PM_F_IN2, see below)
 *   | pad to 8 | body (by kind)             |   LEAF: no padding, no body
 *   +---------------------------------------+
 *
 *   SMALL body: | n u8 | cap u8 | key[6] u8 | child[cap] ptr |     sorted child bytes
 *   DENSE body: | n u16 | cap u16 | pad u32 | mask[4] u64 | child[cap] ptr |
 *               children packed in byte order; index of byte b = popcount(mask below b)
 *
 *   A LEAF holds a unique key suffix and its value in one block: 16 + plen bytes, which is
 *   what keeps long unique suffixes cheap (a 16-byte random key costs about 32 bytes of leaf).
 *
 *   A prefix of 1 or 2 bytes lives in the header's plen field itself (PM_F_IN1, PM_F_IN2
 *   give its length): such a leaf is a 16-byte block, not 17 or 18 (an allocator's next size
 *   class up is 24 or 32 bytes), and a SMALL or DENSE node's body starts at 16, not 24.
 *
 *   A PACKED LEAF is a leaf block of 16 bytes whose prefix of 3 to 7 bytes and value share
 *   the 10 bytes after kind and flags (flags bits 5-7 give the prefix length; none of
 *   LONGP, IN1, IN2 is set). The prefix starts where plen would be; the value fills the
 *   bytes after it, so it must fit in 10 - plen bytes (below 2^56 to 2^24):
 *
 *     | refs u32 | kind | flags | prefix (plen bytes) | value (10 - plen bytes, LE) |
 *
 *   A key that ends 4 to 8 bytes after its branch byte (the last bytes of a random 64-bit
 *   integer, say) then costs one 16-byte block instead of 19 to 23 bytes, which an
 *   allocator rounds up to 24 or 32. The value is the val word shifted right by plen - 2
 *   bytes, so packing needs a little-endian machine (elsewhere no leaf is packed). Like a
 *   tag, a packed leaf counts as shared: a writer's copy-on-write turns it into an ordinary
 *   block (node_copy unpacks) and node_pack packs it back.
 *
 *   A VALUE TAG stands for a leaf with a prefix of at most 2 bytes and a small value (a key
 *   that ends at most two bytes after its branch byte: the last characters of a path, the
 *   last digits of a number), and costs no block at all: the pointer word itself holds it.
 *   Blocks are 8-byte aligned, so bit 0 tells the two apart:
 *
 *     empty prefix:     | val (61 bits)        | 0 0 | 1 |     val < 2^61
 *     1 or 2 bytes:     | val (45 bits) | b0 b1 | len | 1 |     val < 2^45 (b1 = 0 for 1 byte)
 *
 *   The prefix of a tag is read through a pointer into pm_pairs, a table of every pair of
 *   bytes (pm_pairs + 2 * (b0 << 8 | b1) holds b0, b1). A tag is read through the accessors
 *   below like any leaf; it has no reference count and counts as shared, so a writer's
 *   copy-on-write (node_cow) turns it into a block before writing (it is immutable).
 *
 * Invariants (checked by pm_map_check):
 *   - a node has a value or at least one child; a node without a value has at least two
 *     children (so every single-branch run of bytes is a prefix, never a chain of nodes);
 *   - SMALL: n <= cap <= PM_SMALL_MAX, keys strictly ascending; DENSE: popcount(mask) == n,
 *     n <= cap <= 256; children are never NULL;
 *   - refs >= 1. A node reachable from a shared node (refs > 1) is never written in place:
 *     writers copy each node on their path whose count is above one, top down (COW).
 */
#ifndef PM_INTERNAL_H
#define PM_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pathmap.h"

#define PM_SMALL_MAX 6	      /* children a SMALL node holds before it becomes DENSE */
#define PM_PLEN_SHORT 0xffffu /* prefixes up to this length live in the header's plen */
#define PM_PLEN_INLINE 2      /* prefixes up to this length live in the plen field itself */
#define PM_DEPTH_INLINE 64    /* path stack entries kept inline in a walker */

enum { PM_LEAF = 0, PM_SMALL = 1, PM_DENSE = 2 };

enum {
	PM_F_VAL = 1,	/* the node has a value at the end of its prefix */
	PM_F_LONGP = 2, /* prefix length is the u32 before the prefix bytes */
	PM_F_IN1 = 4,	/* a 1-byte prefix, held in the plen field */
	PM_F_IN2 = 8,	/* a 2-byte prefix, held in the plen field */
};

#define PM_F_INL (PM_F_IN1 | PM_F_IN2)
#define PM_F_PK 0xe0u /* flags bits 5-7: a packed leaf's prefix length (3 to 7) */
#define PM_PK_SHIFT 5 /* ... from this bit */
#define PM_PK_MIN 3   /* shortest prefix a packed leaf holds (shorter ones are inline) */
#define PM_PK_MAX 7   /* longest (the value keeps 3 bytes at least) */
#define PM_PK_ROOM 10 /* bytes for prefix and value together */

typedef struct pm_node {
	_Atomic uint32_t refs; /* owners of this node (parents, map roots, zippers) */
	uint8_t kind;	       /* PM_LEAF, PM_SMALL or PM_DENSE */
	uint8_t flags;	       /* PM_F_* */
	uint16_t plen;	       /* prefix length, when not PM_F_LONGP; PM_F_INL: the prefix;
				  PM_F_PK: the prefix's first two bytes */
	uint64_t val;	       /* value word when PM_F_VAL (PM_F_PK: the rest of the prefix,
				  then the value); free list link while being freed */
} pm_node;

struct pm_small {
	uint8_t n;		   /* children in use */
	uint8_t cap;		   /* child slots allocated, <= PM_SMALL_MAX */
	uint8_t key[PM_SMALL_MAX]; /* child bytes, ascending */
	pm_node *child[];	   /* child[i] follows key[i] */
};

struct pm_dense {
	uint16_t n;	  /* children in use */
	uint16_t cap;	  /* child slots allocated */
	uint32_t pad;	  /* keeps mask 8-byte aligned */
	uint64_t mask[4]; /* bit b set when byte b has a child */
	pm_node *child[]; /* packed in byte order */
};

/* The allocator a map and everything derived from it use. */
typedef struct pm_ctx {
	pm_alloc_fn alloc; /* realloc-shaped hook */
	void *ud;	   /* its argument */
} pm_ctx;

struct pm_map {
	pm_ctx ctx;    /* allocator */
	pm_node *root; /* NULL when empty; one counted reference */
	size_t count;  /* number of values */
};

/* A position in a trie: inside node n, off bytes into its prefix (off <= plen). n == NULL is
 * the empty trie. */
typedef struct pm_pos {
	pm_node *n;
	size_t off;
} pm_pos;

/* A key pointer that is never NULL: the empty key may come as (NULL, 0). */
#define PM_KEY(k) ((k) ? (k) : (const uint8_t *)"")

/* ---- value tags ---- */

_Static_assert(sizeof(uintptr_t) == 8, "value tags need 64-bit pointers");

#define PM_TAG_PLEN 2 /* longest prefix a tag holds */

static inline bool node_is_tag(const pm_node *n)
{
	return (uintptr_t)n & 1;
}

/* Whether a leaf with prefix length plen and value val can be a tag. */
static inline bool node_tag_fits(size_t plen, uint64_t val)
{
	return plen == 0 ? val < (UINT64_C(1) << 61)
			 : plen <= PM_TAG_PLEN && val < (UINT64_C(1) << 45);
}

/* The tag of a leaf (node_tag_fits(plen, val)). */
static inline pm_node *node_tag(const uint8_t *prefix, size_t plen, uint64_t val)
{
	uint64_t w;

	if (plen == 0)
		w = val << 3;
	else
		w = val << 19 | (uint64_t)prefix[0] << 11 |
		    (uint64_t)(plen == 2 ? prefix[1] : 0) << 3 | (uint64_t)plen << 1;
	return (pm_node *)(uintptr_t)(w | 1);
}

static inline size_t tag_plen(const pm_node *n)
{
	return ((uintptr_t)n >> 1) & 3;
}

extern const uint8_t pm_pairs[2 * 65536]; /* every pair of bytes, for the prefixes of tags */

static inline int node_kind(const pm_node *n) /* tag: PM_LEAF */
{
	return node_is_tag(n) ? PM_LEAF : n->kind;
}

/* ---- packed leaves ---- */

static inline bool node_is_pk(const pm_node *n) /* a packed leaf block (not a tag) */
{
	return n->flags & PM_F_PK;
}

static inline unsigned pk_plen(const pm_node *n) /* a packed leaf's prefix length */
{
	return (unsigned)n->flags >> PM_PK_SHIFT;
}

/* Whether a leaf with prefix length plen and value val can be a packed leaf. */
static inline bool node_pk_fits(size_t plen, uint64_t val)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return plen >= PM_PK_MIN && plen <= PM_PK_MAX &&
	       (val >> (8 * (PM_PK_ROOM - plen) - 1) >> 1) == 0;
#else
	(void)plen;
	(void)val;
	return false;
#endif
}

/* The val word of a packed leaf with prefix length plen, prefix p and value val
 * (node_pk_fits): the prefix's bytes from the third on in its low bytes, val above. */
static inline uint64_t pk_word(const uint8_t *p, size_t plen, uint64_t val)
{
	uint64_t w = val << (8 * (plen - 2));

	memcpy(&w, p + 2, plen - 2);
	return w;
}

/* ---- node accessors (tags included, where it says so) ---- */

static inline uint64_t node_val(const pm_node *n) /* tag: its value */
{
	unsigned pk;

	if (node_is_tag(n))
		return (uint64_t)(uintptr_t)n >> (tag_plen(n) ? 19 : 3);
	pk = pk_plen(n); /* 0 unless packed: then the value sits 8 * (pk - 2) bits up */
	return n->val >> ((8 * pk - 16) & (0u - (pk != 0)));
}

static inline size_t node_block_plen(const pm_node *n) /* a block's (not a tag's) */
{
	uint32_t l;

	if (!(n->flags & (PM_F_LONGP | PM_F_INL | PM_F_PK)))
		return n->plen;
	if (n->flags & PM_F_INL)
		return (n->flags & PM_F_IN1) ? 1 : 2;
	if (n->flags & PM_F_PK)
		return pk_plen(n);
	memcpy(&l, n + 1, sizeof(l));
	return l;
}

static inline size_t node_plen(const pm_node *n) /* tag: 0 to 2 */
{
	return node_is_tag(n) ? tag_plen(n) : node_block_plen(n);
}

static inline uint8_t *node_prefix(pm_node *n) /* tag: in pm_pairs (not to be written) */
{
	if (node_is_tag(n))
		return (uint8_t *)(uintptr_t)(pm_pairs + (((uintptr_t)n >> 2) & 0x1fffe));
	if (n->flags & (PM_F_INL | PM_F_PK)) /* inline or packed: from plen's first byte on */
		return (uint8_t *)&n->plen;
	return (uint8_t *)(n + 1) + ((n->flags & PM_F_LONGP) ? 4 : 0);
}

static inline size_t pm_align8(size_t x)
{
	return (x + 7) & ~(size_t)7;
}

/* Offset of the body from the node's start (a block's). */
static inline size_t node_body_off(const pm_node *n)
{
	if (n->flags & PM_F_INL)
		return sizeof(pm_node);
	return pm_align8(sizeof(pm_node) + ((n->flags & PM_F_LONGP) ? 4 : 0) + node_block_plen(n));
}

static inline struct pm_small *node_small(pm_node *n)
{
	return (struct pm_small *)((uint8_t *)n + node_body_off(n));
}

static inline struct pm_dense *node_dense(pm_node *n)
{
	return (struct pm_dense *)((uint8_t *)n + node_body_off(n));
}

static inline bool node_has_val(const pm_node *n) /* tag: true */
{
	return node_is_tag(n) || (n->flags & PM_F_VAL);
}

static inline unsigned node_nchild(pm_node *n) /* tag: 0 */
{
	int k = node_kind(n);

	if (k == PM_SMALL)
		return node_small(n)->n;
	if (k == PM_DENSE)
		return node_dense(n)->n;
	return 0;
}

static inline unsigned dense_index(const struct pm_dense *d, unsigned b)
{
	unsigned w = b >> 6, i, idx = 0;

	for (i = 0; i < w; i++)
		idx += (unsigned)__builtin_popcountll(d->mask[i]);
	return idx + (unsigned)__builtin_popcountll(d->mask[w] & ((UINT64_C(1) << (b & 63)) - 1));
}

static inline bool dense_has(const struct pm_dense *d, unsigned b)
{
	return (d->mask[b >> 6] >> (b & 63)) & 1;
}

/* The slot of the child under byte b, or NULL (tag: NULL). */
static inline pm_node **node_child(pm_node *n, uint8_t b)
{
	if (node_is_tag(n))
		return NULL;
	if (n->kind == PM_SMALL) {
		struct pm_small *s = node_small(n);
		unsigned i;

		for (i = 0; i < s->n; i++)
			if (s->key[i] == b)
				return &s->child[i];
		return NULL;
	}
	if (n->kind == PM_DENSE) {
		struct pm_dense *d = node_dense(n);

		if (!dense_has(d, b))
			return NULL;
		return &d->child[dense_index(d, b)];
	}
	return NULL;
}

/* The i-th child (i < nchild) in byte order; its byte goes to *b. */
pm_node *node_child_at(pm_node *n, unsigned i, uint8_t *b);
/* The first child with byte > b (after == -1: the first child), or NULL. */
pm_node *node_child_after(pm_node *n, int after, uint8_t *b);
/* The last child with byte < b (before == 256: the last child), or NULL. */
pm_node *node_child_before(pm_node *n, int before, uint8_t *b);

static inline pm_node *node_ref(pm_node *n) /* tag: nothing to count */
{
	if (n && !node_is_tag(n))
		atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
	return n;
}

static inline bool node_shared(pm_node *n) /* tag, packed leaf: true (copy it to write) */
{
	return node_is_tag(n) || node_is_pk(n) ||
	       atomic_load_explicit(&n->refs, memory_order_acquire) > 1;
}

/* A packed leaf that only its slot owns (its value may be rewritten in place). */
static inline bool node_pk_private(pm_node *n)
{
	return !node_is_tag(n) && node_is_pk(n) &&
	       atomic_load_explicit(&n->refs, memory_order_acquire) == 1;
}

/* Length of the common prefix of a[0..la) and b[0..lb). */
static inline size_t common_len(const uint8_t *a, size_t la, const uint8_t *b, size_t lb)
{
	size_t lim = la < lb ? la : lb, m = 0;

	/* eight bytes at a time: the first differing byte is the lowest set byte of x ^ y on a
	 * little-endian machine, the highest on a big-endian one */
	for (; m + 8 <= lim; m += 8) {
		uint64_t x, y;

		memcpy(&x, a + m, 8);
		memcpy(&y, b + m, 8);
		if (x != y) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return m + ((unsigned)__builtin_ctzll(x ^ y) >> 3);
#else
			return m + ((unsigned)__builtin_clzll(x ^ y) >> 3);
#endif
		}
	}
	while (m < lim && a[m] == b[m])
		m++;
	return m;
}

/* How a lookup leaves a node (node_step). */
enum pm_step { PM_STEP_DOWN, PM_STEP_END, PM_STEP_OFF, PM_STEP_NOCHILD };

/*
 * One node of a lookup of key[0..len), *i bytes of it consumed above n: matches n's prefix
 * and, past it, finds the child under the next byte. Returns PM_STEP_DOWN with *slot the
 * child's slot and *i past its byte; PM_STEP_END when the key ends in n (*i == len: found iff
 * node_has_val(n)); PM_STEP_OFF when the key leaves n's prefix (not found); PM_STEP_NOCHILD
 * when n has no child under key[*i] (not found; *i past the prefix). The one definition of a
 * lookup's step: tr_get and the batch lanes use it.
 */
static inline enum pm_step node_step(pm_node *n, const uint8_t *key, size_t len, size_t *i,
				     pm_node ***slot)
{
	size_t plen = node_plen(n);

	if (len - *i < plen || common_len(node_prefix(n), plen, key + *i, plen) != plen)
		return PM_STEP_OFF;
	*i += plen;
	if (*i == len)
		return PM_STEP_END;
	*slot = node_child(n, key[*i]);
	if (!*slot)
		return PM_STEP_NOCHILD;
	++*i;
	return PM_STEP_DOWN;
}

/* ---- node.c ---- */
void *pm_xalloc(const pm_ctx *c, void *p, size_t osize, size_t nsize);
/* Grows the array *buf of *cap elements of elem bytes (doubling) to hold need; 0, PM_ENOMEM
 * or PM_EOVERFLOW. */
int pm_grow(const pm_ctx *c, void **buf, size_t *cap, size_t need, size_t elem);
size_t node_size(pm_node *n);
void node_free_block(const pm_ctx *c, pm_node *n);
void node_unref(const pm_ctx *c, pm_node *n);
pm_node *node_new(const pm_ctx *c, int kind, size_t plen, unsigned cap);
pm_node *node_make_leaf(const pm_ctx *c, const uint8_t *key, size_t len, uint64_t val);
/* A leaf to store in a slot as it is: a tag when one fits, else a packed leaf when one fits,
 * else a block from node_make_leaf (NULL when out of memory). */
pm_node *node_leaf(const pm_ctx *c, const uint8_t *key, size_t len, uint64_t val);
/* n itself, or the tag or packed leaf standing for it when n is a private, unpacked leaf
 * block that one can stand for (node_tag_fits, node_pk_fits): the block is then freed (n
 * stays when the packed leaf's block cannot be had). */
pm_node *node_pack(const pm_ctx *c, pm_node *n);
pm_node *node_copy(const pm_ctx *c, pm_node *n);
pm_node *node_cow(const pm_ctx *c, pm_node **slot);
pm_node *node_add_child(const pm_ctx *c, pm_node *n, uint8_t b, pm_node *child);
/* n (private) with room for total children (a leaf becomes a SMALL or DENSE node), or NULL
 * when out of memory (n unchanged). */
pm_node *node_reserve(const pm_ctx *c, pm_node *n, unsigned total);
void node_del_child(pm_node *n, uint8_t b);
pm_node *node_reprefix(const pm_ctx *c, pm_node *n, const uint8_t *a, size_t la, const uint8_t *b,
		       size_t lb, size_t cut);
pm_node *node_build(const pm_ctx *c, const uint8_t *pre, size_t plen, bool has_val, uint64_t val,
		    unsigned nchild);
void node_build_push(pm_node *n, uint8_t b, pm_node *child);
pm_node *node_build_finish(const pm_ctx *c, pm_node *n, int *rc);
size_t node_count(pm_node *n);
pm_node *node_shrink(const pm_ctx *c, pm_node *n);

/* ---- map.c: tries addressed by root slots ---- */
int tr_set(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, uint64_t val,
	   uint64_t *old);
int tr_upsert(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, uint64_t val,
	      pm_update_fn fn, void *arg, uint64_t *old);
bool tr_get(pm_node *root, const uint8_t *key, size_t len, uint64_t *val);
/* 0 when kv[0..n) is a run pm_map_set_sorted takes, else PM_EINVAL. */
int tr_kv_check(const pm_kv *kv, size_t n);
/* pm_map_set_sorted on a trie, kv checked: *added grows by the keys inserted. */
int tr_set_sorted(const pm_ctx *c, pm_node **rootp, const pm_kv *kv, size_t n, size_t *added);
int tr_remove(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, uint64_t *old);
int tr_take(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, pm_node **out);
int tr_graft(const pm_ctx *c, pm_node **rootp, const uint8_t *key, size_t len, pm_node *sub);
bool tr_find(pm_node *root, const uint8_t *key, size_t len, pm_pos *out);
int tr_subtrie(const pm_ctx *c, pm_pos p, pm_node **out);
int pm_map_wrap(const pm_ctx *c, pm_node *root, size_t count, pm_map **out);

/* ---- algebra.c ---- */
int alg_join(const pm_ctx *c, pm_pos a, pm_pos b, pm_merge_fn merge, void *arg, pm_node **out);
int alg_meet(const pm_ctx *c, pm_pos a, pm_pos b, pm_node **out);
int alg_subtract(const pm_ctx *c, pm_pos a, pm_pos b, pm_node **out);
int alg_restrict(const pm_ctx *c, pm_pos a, pm_pos b, pm_node **out);
bool alg_equal(pm_pos a, pm_pos b);

#endif /* PM_INTERNAL_H */
