/*
 * kb_bench.c - KB snapshot files against LMDB holding the same keys and values.
 *
 * usage: kb_bench [-n KEYS] [-k KEYLEN] [-g GETS] [-d DIR] [-s SEED] [--from-map P] [--keep]
 *
 * N random keys of KEYLEN bytes (default 10 M x 16, as in DESIGN.md section 8) with int64
 * values. Measured, for both stores: write (sorted bulk load, flushed to disk: fsync /
 * mdb_env_sync), size on disk, open time, random get latency (p50, p99, mean; existing keys
 * in random order, one clock read per get), and a full ordered scan (keys/s). --from-map P
 * also times pkb_write from a pm_map in the engine's hash layout with P partitions (the
 * P-way merge included). --keep leaves kb_bench.kb and kb_bench.lmdb in DIR. Every get and the scan
 * are checked against the generated data.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "kb.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Scan visitor: the same work per key as the iterator loop and the LMDB cursor loop. */
struct scan_acc {
	uint64_t sum, n;
};

static int scan_visit(const uint8_t *k, size_t len, uint64_t w, void *arg)
{
	struct scan_acc *a = arg;

	a->sum += w + k[len - 1];
	a->n++;
	return 0;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static size_t klen = 16;

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, klen);
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "kb_bench: %s: %d (%s)\n", what, rc,
		rc < 0 ? pkb_strerror(rc) : mdb_strerror(rc));
	exit(1);
}

static uint64_t disk_bytes(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		return 0;
	return (uint64_t)st.st_blocks * 512;
}

static void report_lat(const char *name, double *lat, size_t n)
{
	double sum = 0;
	size_t i;

	for (i = 0; i < n; i++)
		sum += lat[i];
	qsort(lat, n, sizeof(*lat), dbl_cmp);
	printf("%-6s get: p50 %.0f ns, p99 %.0f ns, mean %.0f ns (%zu random gets)\n", name,
	       lat[n / 2] * 1e9, lat[n * 99 / 100] * 1e9, sum / (double)n * 1e9, n);
}

int main(int argc, char **argv)
{
	size_t n = 10000000, gets = 1000000, i, from_map = 0;
	uint64_t seed = 42, s, vsum = 0, got_sum;
	const char *dir = ".";
	uint8_t *keys;
	uint64_t *vals;
	size_t *order;
	char kbpath[512], lmpath[512], cmd[1100];
	double t0, t1, best, *lat;
	int rc, keep = 0;

	for (i = 1; i < (size_t)argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < (size_t)argc)
			n = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-k") && i + 1 < (size_t)argc)
			klen = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-g") && i + 1 < (size_t)argc)
			gets = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-d") && i + 1 < (size_t)argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "-s") && i + 1 < (size_t)argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--keep"))
			keep = 1;
		else if (!strcmp(argv[i], "--from-map") && i + 1 < (size_t)argc)
			from_map = strtoull(argv[++i], NULL, 0);
		else {
			fprintf(stderr, "usage: kb_bench [-n KEYS] [-k KEYLEN] [-g GETS] [-d DIR] "
					"[-s SEED] [--from-map P] [--keep]\n");
			return 2;
		}
	}
	if (klen < 8 || n == 0 || gets == 0) {
		fprintf(stderr, "kb_bench: need -k >= 8, -n >= 1, -g >= 1\n");
		return 2;
	}
	snprintf(kbpath, sizeof(kbpath), "%s/kb_bench.kb", dir);
	snprintf(lmpath, sizeof(lmpath), "%s/kb_bench.lmdb", dir);
	printf("kb_bench: %zu keys of %zu random bytes, int64 values, seed %" PRIu64 "\n", n, klen,
	       seed);

	/* Data: random keys, sorted and made unique (values follow their keys). */
	keys = malloc(n * (klen + 8));
	vals = malloc(n * sizeof(*vals));
	order = malloc(gets * sizeof(*order));
	lat = malloc(gets * sizeof(*lat));
	if (!keys || !vals || !order || !lat)
		die("malloc", -12);
	s = seed;
	for (i = 0; i < n * klen; i += 8) {
		uint64_t r = splitmix(&s);

		memcpy(keys + i, &r, n * klen - i < 8 ? n * klen - i : 8);
	}
	qsort(keys, n, klen, key_cmp);
	{
		size_t j = 0;

		for (i = 0; i < n; i++)
			if (!j || memcmp(keys + (j - 1) * klen, keys + i * klen, klen))
				memmove(keys + j++ * klen, keys + i * klen, klen);
		n = j;
	}
	for (i = 0; i < n; i++) {
		vals[i] = splitmix(&s) >> (i % 4 * 16); /* values of every width */
		vsum += vals[i];
	}
	for (i = 0; i < gets; i++)
		order[i] = (size_t)(splitmix(&s) % n);

	/* ---- KB write: streaming writer over sorted keys, fsync, rename ---- */
	{
		struct pkb_meta meta;
		struct pkb_writer *w;
		struct pkb_err err;

		memset(&meta, 0, sizeof(meta));
		meta.scheme = PME_SCHEME_HASH;
		meta.partitions = 256;
		meta.key_type.cls = PIO_V_OPAQUE;
		meta.key_type.width = (uint32_t)klen;
		meta.value_type.cls = PIO_V_INT;
		meta.value_type.width = 8;
		unlink(kbpath);
		t0 = now();
		rc = pkb_writer_open(kbpath, &meta, NULL, &w, &err);
		if (rc)
			die(err.msg, rc);
		for (i = 0; i < n; i++) {
			rc = pkb_writer_add(w, keys + i * klen, klen, vals[i], NULL, 0, &err);
			if (rc)
				die(err.msg, rc);
		}
		rc = pkb_writer_commit(w, &err);
		if (rc)
			die(err.msg, rc);
		t1 = now();
		printf("KB     write: %.2f s, %.1f MB/s of file, %.2f M keys/s (fsync included)\n",
		       t1 - t0, (double)disk_bytes(kbpath) / 1e6 / (t1 - t0),
		       (double)n / 1e6 / (t1 - t0));
	}
	if (from_map) {
		struct pkb_meta meta;
		struct pkb_err err;
		pm_map *m;
		uint8_t *path = malloc(klen + 2);

		memset(&meta, 0, sizeof(meta));
		meta.scheme = PME_SCHEME_HASH;
		meta.partitions = (uint32_t)from_map;
		meta.key_type.cls = PIO_V_OPAQUE;
		meta.key_type.width = (uint32_t)klen;
		meta.value_type.cls = PIO_V_INT;
		meta.value_type.width = 8;
		if (pm_map_create(&m, NULL, NULL))
			die("pm_map_create", -12);
		t0 = now();
		for (i = 0; i < n; i++) {
			pme_partition_path(
			    pme_hash_partition(keys + i * klen, klen, meta.partitions), path);
			memcpy(path + 2, keys + i * klen, klen);
			if (pm_map_set(m, path, klen + 2, vals[i], NULL) < 0)
				die("pm_map_set", -12);
		}
		t1 = now();
		printf("map    fill (hash layout, P=%zu, serial, for reference): %.2f s\n",
		       from_map, t1 - t0);
		snprintf(kbpath + strlen(kbpath), sizeof(kbpath) - strlen(kbpath), ".map");
		t0 = now();
		rc = pkb_write(kbpath, m, &meta, NULL, NULL, NULL, &err);
		if (rc)
			die(err.msg, rc);
		t1 = now();
		printf("KB     write from pm_map (P-way merge of partitions, fsync): %.2f s, %.1f "
		       "MB/s, "
		       "%.2f M keys/s\n",
		       t1 - t0, (double)disk_bytes(kbpath) / 1e6 / (t1 - t0),
		       (double)n / 1e6 / (t1 - t0));
		unlink(kbpath);
		kbpath[strlen(kbpath) - 4] = 0;
		pm_map_destroy(m);
		free(path);
	}

	/* ---- LMDB write: one transaction, MDB_APPEND (sorted), env sync ---- */
	{
		MDB_env *env;
		MDB_txn *txn;
		MDB_dbi dbi;

		snprintf(cmd, sizeof(cmd), "%s-lock", lmpath);
		unlink(lmpath);
		unlink(cmd);
		t0 = now();
		if ((rc = mdb_env_create(&env)) ||
		    (rc = mdb_env_set_mapsize(env, (size_t)n * (klen + 8) * 4 + (1u << 26))) ||
		    (rc = mdb_env_open(env, lmpath, MDB_NOSUBDIR, 0644)) ||
		    (rc = mdb_txn_begin(env, NULL, 0, &txn)) ||
		    (rc = mdb_dbi_open(txn, NULL, 0, &dbi)))
			die("lmdb open", rc);
		for (i = 0; i < n; i++) {
			MDB_val k = {klen, keys + i * klen}, v = {8, &vals[i]};

			rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
			if (rc)
				die("mdb_put", rc);
		}
		if ((rc = mdb_txn_commit(txn)) || (rc = mdb_env_sync(env, 1)))
			die("lmdb commit", rc);
		mdb_env_close(env);
		t1 = now();
		printf(
		    "LMDB   write: %.2f s, %.1f MB/s of file, %.2f M keys/s (MDB_APPEND, sync)\n",
		    t1 - t0, (double)disk_bytes(lmpath) / 1e6 / (t1 - t0),
		    (double)n / 1e6 / (t1 - t0));
	}
	printf(
	    "size on disk: KB %.1f MB (%.1f B/key), LMDB %.1f MB (%.1f B/key); raw data %.1f MB\n",
	    (double)disk_bytes(kbpath) / 1e6, (double)disk_bytes(kbpath) / (double)n,
	    (double)disk_bytes(lmpath) / 1e6, (double)disk_bytes(lmpath) / (double)n,
	    (double)n * (double)(klen + 8) / 1e6);

	/* ---- Reads. Both files are in the page cache now (just written): warm reads. ---- */
	{
		struct pkb *kb;
		struct pkb_err err;
		pm_snap_iter *it;
		const uint8_t *k;
		size_t len;
		uint64_t w;
		int reps = 200;

		t0 = now();
		for (i = 0; i < (size_t)reps; i++) {
			rc = pkb_open(kbpath, 0, &kb, &err);
			if (rc)
				die(err.msg, rc);
			pkb_close(kb);
		}
		t1 = now();
		printf("KB     open: %.1f us (mmap + header, meta and footer checks)\n",
		       (t1 - t0) / reps * 1e6);
		/* First full scan on a fresh mapping, as `pmingest scan` runs it (read-ahead
		 * advice, the visitor inside the walk). */
		rc = pkb_open(kbpath, 0, &kb, &err);
		if (rc)
			die(err.msg, rc);
		rc = pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it);
		if (rc)
			die("iter", rc);
		{
			struct scan_acc acc = {0, 0};

			t0 = now();
			pkb_prefetch(kb);
			rc = pm_snap_iter_run(it, scan_visit, &acc);
			t1 = now();
			if (rc || acc.n != n)
				die("KB scan returned wrong data", -1);
		}
		printf("KB     first scan (fresh mapping): %.3f s, %.1f M keys/s\n", t1 - t0,
		       (double)n / 1e6 / (t1 - t0));
		pm_snap_iter_destroy(it);
		pkb_close(kb);
		rc = pkb_open(kbpath, 0, &kb, &err);
		if (rc)
			die(err.msg, rc);
		for (i = 0; i < gets; i++) {
			const uint8_t *key = keys + order[i] * klen;

			t0 = now();
			rc = pkb_get(kb, key, klen, &w);
			t1 = now();
			if (rc || w != vals[order[i]])
				die("KB get returned a wrong value", rc);
			lat[i] = t1 - t0;
		}
		report_lat("KB", lat, gets);
		rc = pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it);
		if (rc)
			die("iter", rc);
		best = 1e30;
		for (int rep = 0; rep < 3; rep++) {
			rc = pm_snap_iter_seek(it, NULL, 0, NULL, 0);
			if (rc)
				die("seek", rc);
			got_sum = 0;
			i = 0;
			t0 = now();
			while (pm_snap_iter_next(it, &k, &len, &w) == 1) {
				got_sum += w + k[len - 1];
				i++;
			}
			t1 = now();
			for (size_t j = 0; j < n; j++)
				got_sum -= keys[j * klen + klen - 1];
			if (i != n || got_sum != vsum)
				die("KB scan returned wrong data", -1);
			best = t1 - t0 < best ? t1 - t0 : best;
		}
		printf("KB     scan (pm_snap_iter_next): %.3f s, %.1f M keys/s (best of 3)\n", best,
		       (double)n / 1e6 / best);
		/* The same scan with the visitor inside the walk, as `pmingest scan` runs it. */
		best = 1e30;
		for (int rep = 0; rep < 3; rep++) {
			struct scan_acc acc = {0, 0};

			rc = pm_snap_iter_seek(it, NULL, 0, NULL, 0);
			if (rc)
				die("seek", rc);
			t0 = now();
			rc = pm_snap_iter_run(it, scan_visit, &acc);
			t1 = now();
			for (size_t j = 0; j < n; j++)
				acc.sum -= keys[j * klen + klen - 1];
			if (rc || acc.n != n || acc.sum != vsum)
				die("KB scan returned wrong data", -1);
			best = t1 - t0 < best ? t1 - t0 : best;
		}
		printf("KB     scan (pm_snap_iter_run): %.3f s, %.1f M keys/s (best of 3)\n", best,
		       (double)n / 1e6 / best);
		pm_snap_iter_destroy(it);
		pkb_close(kb);
	}
	{
		MDB_env *env;
		MDB_txn *txn;
		MDB_dbi dbi;
		MDB_cursor *cur;
		MDB_val k, v;
		int reps = 200;

		t0 = now();
		for (i = 0; i < (size_t)reps; i++) {
			if ((rc = mdb_env_create(&env)) ||
			    (rc = mdb_env_set_mapsize(env,
						      (size_t)n * (klen + 8) * 4 + (1u << 26))) ||
			    (rc = mdb_env_open(env, lmpath, MDB_NOSUBDIR | MDB_RDONLY, 0644)) ||
			    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) ||
			    (rc = mdb_dbi_open(txn, NULL, 0, &dbi)))
				die("lmdb open", rc);
			mdb_txn_abort(txn);
			mdb_env_close(env);
		}
		t1 = now();
		printf("LMDB   open: %.1f us (env open + read txn + dbi)\n",
		       (t1 - t0) / reps * 1e6);
		if ((rc = mdb_env_create(&env)) ||
		    (rc = mdb_env_set_mapsize(env, (size_t)n * (klen + 8) * 4 + (1u << 26))) ||
		    (rc = mdb_env_open(env, lmpath, MDB_NOSUBDIR | MDB_RDONLY, 0644)) ||
		    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) ||
		    (rc = mdb_dbi_open(txn, NULL, 0, &dbi)))
			die("lmdb open", rc);
		/* First full scan on a fresh mapping. */
		if ((rc = mdb_cursor_open(txn, dbi, &cur)))
			die("cursor", rc);
		i = 0;
		t0 = now();
		while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
			i++;
		t1 = now();
		if (i != n)
			die("LMDB scan returned wrong data", -1);
		printf("LMDB   first scan (fresh mapping): %.3f s, %.1f M keys/s\n", t1 - t0,
		       (double)n / 1e6 / (t1 - t0));
		mdb_cursor_close(cur);
		for (i = 0; i < gets; i++) {
			uint64_t w;

			k.mv_size = klen;
			k.mv_data = keys + order[i] * klen;
			t0 = now();
			rc = mdb_get(txn, dbi, &k, &v);
			t1 = now();
			memcpy(&w, v.mv_data, 8);
			if (rc || w != vals[order[i]])
				die("LMDB get returned a wrong value", rc);
			lat[i] = t1 - t0;
		}
		report_lat("LMDB", lat, gets);
		if ((rc = mdb_cursor_open(txn, dbi, &cur)))
			die("cursor", rc);

		best = 1e30;
		for (int rep = 0; rep < 3; rep++) {
			MDB_cursor_op op = MDB_FIRST;

			got_sum = 0;
			i = 0;
			t0 = now();
			while (mdb_cursor_get(cur, &k, &v, op) == 0) {
				uint64_t w;

				op = MDB_NEXT;
				memcpy(&w, v.mv_data, 8);
				got_sum += w + ((const uint8_t *)k.mv_data)[k.mv_size - 1];
				i++;
			}
			t1 = now();
			for (size_t j = 0; j < n; j++)
				got_sum -= keys[j * klen + klen - 1];
			if (i != n || got_sum != vsum)
				die("LMDB scan returned wrong data", -1);
			best = t1 - t0 < best ? t1 - t0 : best;
		}
		printf("LMDB   scan: %.3f s, %.1f M keys/s (best of 3)\n", best,
		       (double)n / 1e6 / best);
		mdb_cursor_close(cur);
		mdb_txn_abort(txn);
		mdb_env_close(env);
	}
	if (!keep) {
		unlink(kbpath);
		unlink(lmpath);
		snprintf(cmd, sizeof(cmd), "%s-lock", lmpath);
		unlink(cmd);
	}
	free(keys);
	free(vals);
	free(order);
	free(lat);
	return 0;
}
