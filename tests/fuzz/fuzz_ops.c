/*
 * fuzz_ops.c - libFuzzer target: the input bytes are decoded into a sequence of pathmap
 * operations on two maps, each mirrored on the sorted-array model; any difference, failed
 * pm_map_check or sanitizer report is a finding. Built with replay_main.c it runs a corpus
 * as an ordinary test.
 *
 * Encoding, repeated until the input ends: one opcode byte, then for keys a length byte
 * (taken mod 24) and that many key bytes, and for values one byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "pathmap.h"

struct in {
	const uint8_t *p; /* next byte */
	size_t left;	  /* bytes left */
};

static uint8_t byte(struct in *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static size_t key(struct in *in, uint8_t *k)
{
	size_t len = byte(in) % 24, i;

	for (i = 0; i < len; i++)
		k[i] = byte(in);
	return len;
}

static void must(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_ops: %s\n", what);
		abort();
	}
}

static void valid(const pm_map *m, const struct model *r)
{
	char msg[200];

	if (pm_map_check(m, msg, sizeof(msg))) {
		fprintf(stderr, "fuzz_ops: check: %s\n", msg);
		abort();
	}
	must(pm_map_count(m) == r->n, "count differs from the model");
}

static int rule_sum(bool exists, uint64_t old, uint64_t *val, void *arg)
{
	*val = (exists ? old : 0) + *(const uint64_t *)arg;
	return PM_UPDATE_STORE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size};
	pm_map *m[2], *t;
	struct model r[2], tr;
	uint8_t k[24];
	int i;

	for (i = 0; i < 2; i++) {
		must(pm_map_create(&m[i], NULL, NULL) == 0, "create");
		model_init(&r[i]);
	}
	while (in.left) {
		uint8_t op = byte(&in);
		int a = op & 1, b = !a;
		size_t len = key(&in, k);
		uint64_t v = byte(&in), got = 0, want = 0;
		pm_wz *w;
		pm_rz *z;
		int rc;

		/* grafts, joins and clones can double a map: keep the maps small */
		if (r[a].n + r[b].n > 4000 && ((op >> 1) % 10 == 4 || (op >> 1) % 10 == 5))
			continue;
		switch ((op >> 1) % 10) {
		case 0:
			must(pm_map_set(m[a], k, len, v, NULL) == model_set(&r[a], k, len, v, NULL),
			     "set");
			break;
		case 1:
			rc = pm_map_remove(m[a], k, len, NULL);
			must((rc == 0) == model_remove(&r[a], k, len, NULL), "remove");
			break;
		case 2:
			must(pm_map_get(m[a], k, len, &got) == model_get(&r[a], k, len, &want) &&
				 got == want,
			     "get");
			must(pm_map_count_prefix(m[a], k, len) == model_count_prefix(&r[a], k, len),
			     "count_prefix");
			break;
		case 3:
			must(pm_map_clone(m[a], &t) == 0, "clone");
			pm_map_destroy(m[b]);
			m[b] = t;
			model_free(&r[b]);
			model_copy(&r[b], &r[a]);
			break;
		case 4:
			rc = (v & 3) == 0   ? pm_map_join(m[a], m[b], NULL, NULL, &t)
			     : (v & 3) == 1 ? pm_map_meet(m[a], m[b], &t)
			     : (v & 3) == 2 ? pm_map_subtract(m[a], m[b], &t)
					    : pm_map_restrict(m[a], m[b], &t);
			must(rc == 0, "algebra");
			if ((v & 3) == 0)
				model_join(&tr, &r[a], &r[b], 0);
			else if ((v & 3) == 1)
				model_meet(&tr, &r[a], &r[b]);
			else if ((v & 3) == 2)
				model_subtract(&tr, &r[a], &r[b]);
			else
				model_restrict(&tr, &r[a], &r[b]);
			pm_map_destroy(m[a]);
			m[a] = t;
			model_free(&r[a]);
			r[a] = tr;
			break;
		case 5:
			must(pm_wz_create(m[a], k, len, &w) == 0, "wz");
			must(pm_wz_graft(w, m[b]) == 0, "graft");
			pm_wz_destroy(w);
			model_copy(&tr, &r[b]);
			model_graft(&r[a], k, len, &tr);
			model_free(&tr);
			break;
		case 6:
			must(pm_wz_create(m[a], k, len, &w) == 0, "wz");
			must(pm_wz_take(w, &t) == 0, "take");
			pm_wz_destroy(w);
			pm_map_destroy(m[b]);
			m[b] = t;
			model_free(&r[b]);
			model_take(&r[a], k, len, &r[b]);
			break;
		case 7:
			must(pm_rz_create(m[a], &z) == 0, "rz");
			rc = pm_rz_seek(z, k, len);
			{
				size_t idx = model_lower(&r[a], k, len), pl;
				const uint8_t *p;

				must(rc == (idx < r[a].n), "seek");
				while (rc == 1) {
					p = pm_rz_path(z, &pl);
					must(!model_cmp(p, pl, r[a].e[idx].key, r[a].e[idx].len),
					     "seek/next order");
					idx++;
					rc = pm_rz_next_value(z);
				}
				must(rc == 0 && idx == r[a].n, "next to the end");
			}
			pm_rz_destroy(z);
			break;
		case 8:
			rc = pm_map_update(m[a], k, len, rule_sum, &v);
			must(rc == (model_get(&r[a], k, len, &want) ? 0 : 1), "update");
			model_set(&r[a], k, len, want + v, NULL);
			break;
		default:
			must(pm_wz_create(m[a], k, len / 2, &w) == 0, "wz");
			rc = pm_wz_remove_branches(w);
			must(rc == 0, "remove_branches");
			pm_wz_destroy(w);
			{
				size_t pl = len / 2;
				bool had = model_get(&r[a], k, pl, &want);

				model_take(&r[a], k, pl, NULL);
				if (had)
					model_set(&r[a], k, pl, want, NULL);
			}
		}
		valid(m[a], &r[a]);
		valid(m[b], &r[b]);
	}
	for (i = 0; i < 2; i++) {
		must(model_matches(&r[i], m[i]), "content differs from the model");
		pm_map_destroy(m[i]);
		model_free(&r[i]);
	}
	return 0;
}
