/*
 * pme_partition.h - partition schemes: which partition a user key belongs to, and the path
 * prefix that partition owns in the shared PathMap.
 *
 * hash scheme: partition(key) = XXH3_64bits(key, len) % P, P a power of two in [1, 65536].
 *   partition_path(id) = the two bytes (id >> 8, id & 0xff): a fixed-width big-endian id.
 *   Internal path of a record = partition_path(partition(key)) ++ key.
 *
 *   Disjointness proof: every partition path has exactly two bytes. A string can only be a
 *   prefix of another string of the same length by being equal to it, and the encoding is
 *   injective on [0, 65536) (it is the base-256 representation of id, zero-padded to two
 *   digits). So for ids a != b, neither path is a prefix of the other, and neither are the
 *   subtries below them: exclusive write zippers at these paths touch disjoint memory.
 *
 * prefix scheme: internal path = the user key itself (no added bytes); partitions are P
 *   disjoint key ranges chosen from a sample (see the engine's planner): ranges of the d
 *   bytes that follow the sample's common prefix (the stem), so that keys sharing a long
 *   prefix (paths under one project) still spread. Each d-byte value met gets a write
 *   zipper at stem ++ those d bytes: every such path has the same length, so two distinct
 *   ones are never prefixes of one another. Keys that do not start with the stem or end
 *   before stem + d bytes go to no partition: one thread writes them apart.
 */
#ifndef PME_PARTITION_H
#define PME_PARTITION_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <xxhash.h>

#define PME_PART_PATH_LEN 2 /* bytes of partition_path() in the hash scheme */
#define PME_MAX_PARTITIONS 65536u

enum pme_scheme {
	PME_SCHEME_HASH = 0,   /* hash(key) % P, two-byte partition prefix */
	PME_SCHEME_PREFIX = 1, /* natural key paths cut into P key ranges */
};

/* The partition of key in the hash scheme. nparts is a power of two. */
static inline uint32_t pme_hash_partition(const void *key, size_t len, uint32_t nparts)
{
	return (uint32_t)(XXH3_64bits(key, len) & (uint64_t)(nparts - 1));
}

/* Compares keys in byte order (a proper prefix first): < 0, 0, > 0. */
static inline int pme_key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	size_t m = al < bl ? al : bl;
	int c = m ? memcmp(a, b, m) : 0;

	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

/* The first 8 bytes of a key as a big-endian number, zero-padded: these numbers order keys
 * as their first 8 bytes do (a shorter key pads with zeros; ties need the full compare).
 * Routing sorts a partition's records by it (then by the bytes after it). */
static inline uint64_t pme_head8(const uint8_t *k, size_t len)
{
	uint64_t v = 0;
	size_t i;

	if (len >= 8) {
		memcpy(&v, k, 8); /* one load and a byte swap (the loop form stays a loop) */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		v = __builtin_bswap64(v);
#endif
		return v;
	}
	for (i = 0; i < len; i++)
		v |= (uint64_t)k[i] << (56 - 8 * i);
	return v;
}

/* Writes v as 8 big-endian bytes at p: pme_head8 backwards. */
static inline void pme_put8(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

/* Writes partition_path(id) (PME_PART_PATH_LEN bytes) to out. id < PME_MAX_PARTITIONS. */
static inline void pme_partition_path(uint32_t id, uint8_t out[PME_PART_PATH_LEN])
{
	out[0] = (uint8_t)(id >> 8);
	out[1] = (uint8_t)id;
}

#endif /* PME_PARTITION_H */
