/*
 * model.h - a trivially correct reference map for the pathmap tests: a sorted array of
 * (key, value) pairs with binary search. Every operation is the obvious one.
 */
#ifndef TEST_MODEL_H
#define TEST_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pathmap.h"

struct mentry {
	uint8_t *key; /* owned copy */
	size_t len;   /* key bytes */
	uint64_t val; /* value */
};

struct model {
	struct mentry *e; /* sorted by key */
	size_t n;	  /* entries */
	size_t cap;	  /* allocated */
};

int model_cmp(const uint8_t *a, size_t la, const uint8_t *b, size_t lb);
void model_init(struct model *m);
void model_free(struct model *m);
void model_copy(struct model *dst, const struct model *src);
/* Returns 1 inserted, 0 replaced (old value in *old). */
int model_set(struct model *m, const uint8_t *k, size_t len, uint64_t v, uint64_t *old);
bool model_get(const struct model *m, const uint8_t *k, size_t len, uint64_t *v);
bool model_remove(struct model *m, const uint8_t *k, size_t len, uint64_t *old);
/* Index of the first entry >= key. */
size_t model_lower(const struct model *m, const uint8_t *k, size_t len);
size_t model_count_prefix(const struct model *m, const uint8_t *p, size_t len);
/* Removes every key starting with p into *taken (keys with p stripped) when non-NULL. */
void model_take(struct model *m, const uint8_t *p, size_t len, struct model *taken);
/* Adds every key k of src as p ++ k (after model_take of p). */
void model_graft(struct model *m, const uint8_t *p, size_t len, const struct model *src);
void model_join(struct model *out, const struct model *a, const struct model *b, int sum);
void model_meet(struct model *out, const struct model *a, const struct model *b);
void model_subtract(struct model *out, const struct model *a, const struct model *b);
void model_restrict(struct model *out, const struct model *a, const struct model *b);
/* True when the map holds exactly the model's content (in order, via pm_map_foreach). */
bool model_matches(const struct model *m, const pm_map *map);
/* Builds a map with the model's content. */
pm_map *model_to_map(const struct model *m, pm_alloc_fn alloc, void *ud);

#endif
