/*
 * cmd_demo.c - `pmingest demo`: builds a PathMap from generated keys and shows what it holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pathmap.h"
#include "pme_cmd.h"

struct counting {
	size_t bytes; /* bytes currently allocated through the hook */
};

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct counting *c = ud;
	void *p = pm_default_alloc(NULL, ptr, osize, nsize);

	if (nsize == 0 || p) {
		c->bytes -= ptr ? osize : 0;
		c->bytes += nsize;
	}
	return p;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int print_key(const uint8_t *key, size_t len, uint64_t val, void *arg)
{
	size_t *left = arg, i;

	printf("  ");
	for (i = 0; i < len; i++)
		printf("%c", key[i] >= 32 && key[i] < 127 ? key[i] : '.');
	printf("  %llu\n", (unsigned long long)val);
	return --*left == 0;
}

int pme_cmd_demo(int argc, char **argv)
{
	size_t n = 1000000, i, shown = 5;
	struct counting cnt = {0};
	pm_map *m = NULL;
	pm_stats st;
	uint64_t seed = 42, v;
	char key[64], msg[256];
	double t0, t1;
	int rc;

	for (i = 1; i < (size_t)argc; i++) {
		if (!strcmp(argv[i], "--records") && i + 1 < (size_t)argc) {
			n = strtoull(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--help")) {
			printf(
			    "usage: pmingest demo [--records N]   (default 1000000)\n"
			    "Builds a PathMap from N generated hierarchical keys, then checks it\n"
			    "and prints its size, speed and a few keys in order.\n");
			return PME_EXIT_OK;
		} else {
			fprintf(stderr, "pmingest demo: unknown argument '%s'\n", argv[i]);
			return PME_EXIT_USAGE;
		}
	}
	if (pm_map_create(&m, count_alloc, &cnt))
		return PME_EXIT_NOMEM;
	t0 = now();
	for (i = 0; i < n; i++) {
		uint64_t r = splitmix(&seed);
		int len =
		    snprintf(key, sizeof(key), "/run%02u/cell%05u/attr%03u", (unsigned)(r % 16),
			     (unsigned)((r >> 8) % 50000), (unsigned)((r >> 32) % 1000));

		rc = pm_map_set(m, (const uint8_t *)key, (size_t)len, i, NULL);
		if (rc < 0) {
			fprintf(stderr, "pmingest demo: %s\n", pm_strerror(rc));
			pm_map_destroy(m);
			return PME_EXIT_NOMEM;
		}
	}
	t1 = now();
	rc = pm_map_check(m, msg, sizeof(msg));
	pm_map_stats(m, &st);
	printf("records %zu, distinct keys %zu, %.2f M inserts/s\n", n, pm_map_count(m),
	       (double)n / (t1 - t0) / 1e6);
	printf("memory %.1f bytes/key (%zu nodes: %zu leaf, %zu small, %zu dense)\n",
	       (double)cnt.bytes / (double)(pm_map_count(m) ? pm_map_count(m) : 1), st.nodes,
	       st.leaf_nodes, st.small_nodes, st.dense_nodes);
	printf("keys under /run03/: %zu\n", pm_map_count_prefix(m, (const uint8_t *)"/run03/", 7));
	if (pm_map_get(m, (const uint8_t *)key, strlen(key), &v))
		printf("get %s -> %llu\n", key, (unsigned long long)v);
	printf("first keys in order:\n");
	pm_map_foreach(m, NULL, 0, NULL, 0, print_key, &shown);
	printf("structure check: %s\n", rc ? msg : "ok");
	pm_map_destroy(m);
	return rc ? PME_EXIT_DATA : PME_EXIT_OK;
}
