/*
 * kb.c - KB files: safe writer, mmap reader, verifier, loader, and the algebra over KBs.
 *
 * The header (256 bytes, little-endian) is drawn in kb.h and specified in
 * pathmap/FORMAT.md. Offsets of its fields:
 *
 *     0 magic[8]      8 version u32   12 header_size u32   16 flags u32   20 scheme u32
 *    24 partitions    28 reserved u32 32 count u64         40 key_bytes   48 file_len
 *    56 meta_off      64 meta_len     72 trie_off          80 trie_len    88 heap_off
 *    96 heap_len     104 meta_sum    112 trie_sum         120 heap_sum   128..248 zero
 *   248 header_sum (XXH3-64 of bytes 0..248)
 *
 * Section checksums cover the sections with their zero padding, and the header checksum
 * covers the header: every byte of the file is under a checksum.
 */
#define _GNU_SOURCE /* O_TMPFILE, copy_file_range */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>
#include <xxhash.h>

#include "kb.h"

static const uint8_t kb_magic[8] = {0x89, 'P', 'M', 'K', 'B', '\r', '\n', 0x1a};

enum {
	H_VERSION = 8,
	H_HSIZE = 12,
	H_FLAGS = 16,
	H_SCHEME = 20,
	H_PARTS = 24,
	H_COUNT = 32,
	H_KEYBYTES = 40,
	H_FILELEN = 48,
	H_META_OFF = 56,
	H_META_LEN = 64,
	H_TRIE_OFF = 72,
	H_TRIE_LEN = 80,
	H_HEAP_OFF = 88,
	H_HEAP_LEN = 96,
	H_META_SUM = 104,
	H_TRIE_SUM = 112,
	H_HEAP_SUM = 120,
	H_RESERVED = 128,
	H_SUM = 248,
};

#define TYPE_BYTES 80			     /* encoded struct pio_type in the meta section */
#define HEAP_BUF (1u << 20)		     /* writer's heap buffer */
#define CANCEL_EVERY 4096		     /* keys between two looks at the cancel flag */
#define PKB_PROGRESS_STEP 65536		     /* pkb_combine: keys read between two progress calls */
#define WRITEBACK_BYTES ((uint64_t)16 << 20) /* trie bytes between two write-back starts */
#define DATASYNC_BYTES ((uint64_t)32 << 20)  /* default trie bytes between two flushes */

const char *pkb_strerror(int rc)
{
	switch (rc) {
	case 0:
		return "success";
	case PKB_ECORRUPT:
		return "KB file is corrupt";
	case PKB_EFOREIGN:
		return "not a KB file";
	case PKB_EVERSION:
		return "KB file of a newer format version";
	case PKB_ETRUNC:
		return "KB file is truncated";
	case PKB_ECHECKSUM:
		return "KB checksum mismatch (file corrupt)";
	case PKB_ETYPE:
		return "KBs have different key or value types";
	case PKB_EDUP:
		return "duplicate key with different values";
	case PKB_EVALUE:
		return "values cannot be combined by this policy";
	case PKB_ECANCELED:
		return "interrupted";
	case PKB_EORDER:
		return "keys not in increasing order";
	case PKB_EROUTE:
		return "map holds a path outside its partition layout";
	case PKB_ESUM:
		return "a sum leaves the 64-bit integer range";
	case PKB_ENOLOCK:
		return "the file system cannot lock the file";
	case PKB_ELOST:
		return "changed or unreadable while being read (truncated or rewritten in place by "
		       "another program, or a read error); no result of this run is valid";
	default:
		if (rc < 0 && rc > -4096)
			return strerror(-rc);
		return pm_snap_strerror(rc);
	}
}

bool pkb_is_input_error(int rc)
{
	return rc == PKB_ECORRUPT || rc == PKB_EFOREIGN || rc == PKB_EVERSION || rc == PKB_ETRUNC ||
	       rc == PKB_ECHECKSUM || rc == PKB_ELOST;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
seterr(struct pkb_err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	pio_vmsgf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

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

static uint64_t align8(uint64_t v)
{
	return (v + 7) & ~(uint64_t)7;
}

bool pkb_type_is_blob(const struct pio_type *t)
{
	return t->cls == PIO_V_STRING || t->cls == PIO_V_OPAQUE;
}

static bool partitions_ok(enum pme_scheme scheme, uint32_t p)
{
	if (p < 1 || p > PME_MAX_PARTITIONS)
		return false;
	return scheme == PME_SCHEME_PREFIX || (scheme == PME_SCHEME_HASH && (p & (p - 1)) == 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Types and metadata encoding */

static void type_put(uint8_t *p, const struct pio_type *t)
{
	size_t n = strnlen(t->tag, sizeof(t->tag) - 1);

	memset(p, 0, TYPE_BYTES);
	p[0] = (uint8_t)t->cls;
	p[1] = t->vlen;
	p[2] = t->big_endian;
	p[3] = t->u8rows;
	p[4] = t->u8signed;
	p[5] = (uint8_t)t->pad;
	p[6] = (uint8_t)t->cset;
	put_le(p + 8, t->width, 4);
	memcpy(p + 16, t->tag, n);
}

static bool type_get(const uint8_t *p, struct pio_type *t)
{
	size_t i, n;

	if (p[0] > PIO_V_OPAQUE || p[1] > 1 || p[2] > 1 || p[3] > 1 || p[4] > 1 ||
	    p[5] > PIO_PAD_SPACEPAD || p[6] > PIO_CSET_UTF8 || p[7] || get_le(p + 12, 4))
		return false;
	memset(t, 0, sizeof(*t));
	t->cls = (enum pio_vtype)p[0];
	t->vlen = p[1];
	t->big_endian = p[2];
	t->u8rows = p[3];
	t->u8signed = p[4];
	t->pad = (enum pio_strpad)p[5];
	t->cset = (enum pio_cset)p[6];
	t->width = (uint32_t)get_le(p + 8, 4);
	n = strnlen((const char *)p + 16, 64);
	if (n >= 64)
		return false;
	for (i = n; i < 64; i++)
		if (p[16 + i])
			return false;
	memcpy(t->tag, p + 16, n);
	return true;
}

/* Key types a KB accepts: integers (1/2/4/8), strings, opaque. */
static bool key_type_ok(const struct pio_type *t)
{
	if (t->cls == PIO_V_INT || t->cls == PIO_V_UINT)
		return t->width == 1 || t->width == 2 || t->width == 4 || t->width == 8;
	return t->cls == PIO_V_STRING || t->cls == PIO_V_OPAQUE;
}

static bool value_type_ok(const struct pio_type *t)
{
	if (t->cls == PIO_V_INT || t->cls == PIO_V_UINT)
		return t->width == 1 || t->width == 2 || t->width == 4 || t->width == 8;
	if (t->cls == PIO_V_FLOAT)
		return t->width == 2 || t->width == 4 || t->width == 8;
	return t->cls == PIO_V_STRING || t->cls == PIO_V_OPAQUE;
}

/* Encodes the meta section into a new buffer (*len bytes, unpadded). */
static int meta_encode(const struct pkb_meta *m, uint8_t **out, size_t *len)
{
	size_t n = 2 * TYPE_BYTES + 8, i, p;
	uint8_t *b;

	for (i = 0; i < m->n_inputs; i++) {
		size_t l = strlen(m->inputs[i].name);

		if (l > UINT32_MAX || n > SIZE_MAX - 64 - l)
			return PKB_EINVAL;
		n += 20 + l;
	}
	b = calloc(1, align8(n));
	if (!b)
		return PKB_ENOMEM;
	type_put(b, &m->key_type);
	type_put(b + TYPE_BYTES, &m->value_type);
	put_le(b + 2 * TYPE_BYTES, m->n_inputs, 8);
	p = 2 * TYPE_BYTES + 8;
	for (i = 0; i < m->n_inputs; i++) {
		size_t l = strlen(m->inputs[i].name);

		put_le(b + p, m->inputs[i].bytes, 8);
		put_le(b + p + 8, m->inputs[i].records, 8);
		put_le(b + p + 16, l, 4);
		memcpy(b + p + 20, m->inputs[i].name, l);
		p += 20 + l;
	}
	*out = b;
	*len = n;
	return 0;
}

static int meta_check(const struct pkb_meta *m, const char *path, struct pkb_err *err)
{
	size_t i;

	if (!partitions_ok(m->scheme, m->partitions)) {
		seterr(err, "%s: invalid partition count %u for the %s scheme", path, m->partitions,
		       m->scheme == PME_SCHEME_HASH ? "hash" : "prefix");
		return PKB_EINVAL;
	}
	if (!key_type_ok(&m->key_type) || !value_type_ok(&m->value_type)) {
		seterr(err, "%s: unsupported key or value type", path);
		return PKB_EINVAL;
	}
	for (i = 0; i < m->n_inputs; i++)
		if (!m->inputs[i].name) {
			seterr(err, "%s: input %zu has no name", path, i);
			return PKB_EINVAL;
		}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Guard of the mapped KBs
 *
 * A KB is read through a shared mapping of its file. When another program truncates the file
 * in place (cp or a shell redirection over it, truncate), or the file system cannot read a
 * page (network file systems), the next access to a page past the end raises SIGBUS, which
 * would kill the process with no word of which file. The handler below looks for the
 * address in the table of mapped KBs. There, it maps zeros over the rest of that KB's
 * mapping, so that the access completes and reads damaged bytes (which the readers' checks
 * refuse or, at worst, take as data), and marks the KB lost. A cut inside the file's last
 * page raises no SIGBUS (the page reads zeros past the new end), and a file rewritten in
 * place may raise none: so pkb_close and pkb_writer_commit also look at the file itself
 * (same file, shorter or modified since it was mapped: lost). A lost KB voids every result
 * of the process: pkb_writer_commit refuses to put its file in place, and the commands ask
 * pkb_lost() before they succeed. An address outside the table, or a SIGBUS another process
 * sent, is not ours: the handler restores the action it replaced and raises it again.
 *
 * The table is written by pkb_open and pkb_close (any thread) under map_lock, and read by
 * the handler without it: a slot's fields are published by the release store of its base.
 */
#define MAP_SLOTS 4096 /* KBs mapped at once that the guard covers (more go unguarded) */

static struct {
	const uint8_t *_Atomic base; /* NULL: a free slot */
	size_t len;
	char *path;	       /* a copy */
	dev_t dev;	       /* the file mapped */
	ino_t ino;	       /* ... */
	struct timespec mtime; /* ... when it was mapped */
} map_slot[MAP_SLOTS];
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction map_old; /* the action the guard replaced */
static bool map_guarded;
static uintptr_t map_page; /* the page size, read before the handler may need it */
static char lost_path[PATH_MAX];
static atomic_int lost_claim; /* the first KB lost claims lost_path */
static volatile sig_atomic_t lost, lost_told;

/* Records path as the KB lost, unless one is already (async-signal-safe). */
static void mark_lost(const char *path)
{
	size_t n;

	if (atomic_exchange(&lost_claim, 1))
		return;
	for (n = 0; path[n] && n < sizeof(lost_path) - 1; n++)
		lost_path[n] = path[n];
	lost_path[n] = 0;
	lost = 1;
}

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	const uint8_t *a = si->si_addr;
	uintptr_t pg = map_page;
	int i;

	(void)ctx;
	for (i = 0; si->si_code > 0 && i < MAP_SLOTS; i++) { /* si_code <= 0: sent, not a fault */
		const uint8_t *b = atomic_load_explicit(&map_slot[i].base, memory_order_acquire);
		uintptr_t from, to;

		if (!b || a < b || a >= b + map_slot[i].len)
			continue;
		from = (uintptr_t)a & ~(pg - 1);
		to = ((uintptr_t)b + map_slot[i].len + pg - 1) & ~(pg - 1);
		if (mmap((void *)from, to - from, PROT_READ,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
			break;
		mark_lost(map_slot[i].path);
		return;
	}
	sigaction(sig, &map_old, NULL);
	if (si->si_code <= 0)
		raise(sig);
}

/* Marks slot i's KB lost when its file is still at its path and is shorter, or was
 * modified, since it was mapped. A file replaced by a rename, or removed, leaves the
 * mapping whole. Under map_lock. */
static void check_slot(int i)
{
	struct stat st;

	if (!atomic_load_explicit(&map_slot[i].base, memory_order_relaxed) ||
	    stat(map_slot[i].path, &st) || st.st_dev != map_slot[i].dev ||
	    st.st_ino != map_slot[i].ino)
		return;
	if ((uint64_t)st.st_size < map_slot[i].len ||
	    st.st_mtim.tv_sec != map_slot[i].mtime.tv_sec ||
	    st.st_mtim.tv_nsec != map_slot[i].mtime.tv_nsec)
		mark_lost(map_slot[i].path);
}

static void guard_map(const uint8_t *base, const struct stat *st, const char *path)
{
	struct sigaction sa;
	int i;

	pthread_mutex_lock(&map_lock);
	if (!map_guarded) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = on_sigbus;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		map_page = (uintptr_t)sysconf(_SC_PAGESIZE);
		map_guarded = !sigaction(SIGBUS, &sa, &map_old);
	}
	for (i = 0; i < MAP_SLOTS; i++)
		if (!atomic_load_explicit(&map_slot[i].base, memory_order_relaxed)) {
			map_slot[i].len = (size_t)st->st_size;
			map_slot[i].dev = st->st_dev;
			map_slot[i].ino = st->st_ino;
			map_slot[i].mtime = st->st_mtim;
			map_slot[i].path = strdup(path);
			if (!map_slot[i].path)
				break; /* unguarded */
			atomic_store_explicit(&map_slot[i].base, base, memory_order_release);
			break;
		}
	pthread_mutex_unlock(&map_lock);
}

static void unguard_map(const uint8_t *base)
{
	int i;

	pthread_mutex_lock(&map_lock);
	for (i = 0; i < MAP_SLOTS; i++)
		if (atomic_load_explicit(&map_slot[i].base, memory_order_relaxed) == base) {
			check_slot(i);
			atomic_store_explicit(&map_slot[i].base, NULL, memory_order_release);
			free(map_slot[i].path);
			map_slot[i].path = NULL;
		}
	pthread_mutex_unlock(&map_lock);
}

/* Looks at the files of every KB mapped now (check_slot). */
static void check_maps(void)
{
	int i;

	pthread_mutex_lock(&map_lock);
	for (i = 0; i < MAP_SLOTS; i++)
		check_slot(i);
	pthread_mutex_unlock(&map_lock);
}

const char *pkb_lost(void)
{
	check_maps();
	return lost ? lost_path : NULL;
}

bool pkb_lost_report(const char *cmd)
{
	if (!pkb_lost())
		return false;
	if (!lost_told)
		fprintf(stderr, "pmingest %s: %s: %s\n", cmd, lost_path, pkb_strerror(PKB_ELOST));
	lost_told = 1;
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Writer */

struct pkb_writer {
	char *path;		       /* final name */
	char *tmp;		       /* named temporary file, or NULL (O_TMPFILE) */
	int fd;			       /* the file being written */
	int hfd;		       /* heap spill file (unlinked), -1 without blobs */
	bool blob;		       /* value type is string/opaque */
	bool no_sync;		       /* skip fsync */
	volatile sig_atomic_t *cancel; /* abort flag, or NULL */
	pkb_commit_fn before_commit;   /* pkb_write_opts' */
	void *commit_arg;	       /* ... */
	enum pme_scheme scheme;	       /* header fields */
	uint32_t partitions;	       /* ... */
	uint8_t *meta;		       /* encoded meta section, padded */
	size_t meta_len;	       /* its unpadded length */
	uint64_t trie_off;	       /* file offset of the trie section */
	uint64_t trie_pos;	       /* bytes of the trie written */
	uint64_t trie_wb;	       /* ... of which write-back was started */
	uint64_t trie_ds;	       /* ... of which a flush was asked for */
	uint64_t sync_step;	       /* trie bytes between two flushes */
	struct syncer *sync;	       /* flushes the file (NULL: not yet, or inline) */
	bool sync_inline;	       /* the syncer could not start: flush here */
	XXH3_state_t *trie_xs;	       /* hash of the trie section */
	XXH3_state_t *heap_xs;	       /* hash of the heap section */
	pm_snap_builder *b;	       /* trie builder */
	uint8_t *hbuf;		       /* heap buffer (HEAP_BUF bytes) */
	size_t hlen;		       /* bytes waiting in hbuf */
	uint64_t heap_pos;	       /* heap bytes produced */
	uint64_t key_bytes;	       /* sum of key lengths */
	uint64_t count;		       /* keys added */
	int io_errno;		       /* errno of a failed write */
	bool joined;		       /* the trie was written by pkb_writer_join_finish */
	bool joining;		       /* pkb_writer_join_parts wrote parts */
	uint64_t trie_len;	       /* ... its length */
};

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t k = pwrite(fd, p, len, (off_t)off);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return -EIO;
		p += k;
		len -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t k = write(fd, p, len);

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return -EIO;
		p += k;
		len -= (size_t)k;
	}
	return 0;
}

/*
 * The syncer, a thread that flushes the file to the device (fdatasync) while the trie is
 * still being built and written. Write-back alone (sync_file_range) leaves the device's own
 * cache to the commit's fsync, whose flush then takes about as long as the file is big
 * (216 MB on the virtio disk it was measured on: 0.2-0.3 s, every core idle). Flushed in steps
 * of sync_step bytes (DATASYNC_BYTES) as the trie goes out, the commit's fsync is left with
 * the last step (0.01-0.03 s). A thread of its own, because each step waits on the device
 * (about 0.05 s per 32 MB here) while the writer must go on writing.
 */
struct syncer {
	pthread_t th;
	pthread_mutex_t mu; /* guards the rest */
	pthread_cond_t cv;  /* a flush asked for, or stop */
	int fd;		    /* the file */
	uint64_t asked;	    /* flushes asked for */
	uint64_t done;	    /* ... of which the syncer has started the last one */
	bool stop;	    /* exit now */
	int rc;		    /* first failure (-errno), or 0 */
};

/* fdatasync(fd): 0, or -errno (a file that cannot be synced, EINVAL, is not a failure). */
static int flush_data(int fd)
{
	return fdatasync(fd) && errno != EINVAL ? -errno : 0;
}

static void *syncer_main(void *arg)
{
	struct syncer *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		uint64_t n;
		int rc;

		while (!s->stop && s->done == s->asked)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop)
			break; /* the commit's fsync flushes what is left */
		n = s->asked;
		pthread_mutex_unlock(&s->mu);
		rc = flush_data(s->fd);
		pthread_mutex_lock(&s->mu);
		if (rc && !s->rc)
			s->rc = rc;
		s->done = n;
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Asks for a flush of what is written so far. Returns an earlier flush's failure, or 0. */
static int datasync(struct pkb_writer *w)
{
	struct syncer *s = w->sync;
	int rc;

	if (!s && !w->sync_inline) {
		s = calloc(1, sizeof(*s));
		if (s) {
			pthread_mutex_init(&s->mu, NULL);
			pthread_cond_init(&s->cv, NULL);
			s->fd = w->fd;
			if (pthread_create(&s->th, NULL, syncer_main, s)) {
				pthread_cond_destroy(&s->cv);
				pthread_mutex_destroy(&s->mu);
				free(s);
				s = NULL;
			}
		}
		w->sync = s;
		w->sync_inline = !s;
	}
	if (!s)
		return flush_data(w->fd);
	pthread_mutex_lock(&s->mu);
	rc = s->rc;
	s->asked++;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Stops the syncer, if it runs. Returns the first failure of its flushes, or 0. */
static int syncer_stop(struct pkb_writer *w)
{
	struct syncer *s = w->sync;
	int rc;

	if (!s)
		return 0;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->th, NULL);
	rc = s->rc;
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
	w->sync = NULL;
	return rc;
}

static int trie_sink(void *ud, const void *buf, size_t len)
{
	struct pkb_writer *w = ud;
	int rc = pwrite_all(w->fd, buf, len, w->trie_off + w->trie_pos);

	if (rc)
		return rc;
	XXH3_64bits_update(w->trie_xs, buf, len);
	w->trie_pos += len;
	if (!w->no_sync && w->trie_pos - w->trie_wb >= WRITEBACK_BYTES) {
		/* let the disk start on what is written while the rest is built: the commit's
		 * fsync then waits for little. A hint: if it fails, the fsync does it all. */
		(void)sync_file_range(w->fd, (off_t)(w->trie_off + w->trie_wb),
				      (off_t)(w->trie_pos - w->trie_wb), SYNC_FILE_RANGE_WRITE);
		w->trie_wb = w->trie_pos;
	}
	if (!w->no_sync && w->trie_pos - w->trie_ds >= w->sync_step) {
		/* a failed flush fails the write: a later fsync need not report it again */
		rc = datasync(w);
		if (rc)
			return rc;
		w->trie_ds = w->trie_pos;
	}
	return 0;
}

static int heap_flush(struct pkb_writer *w)
{
	int rc;

	if (!w->hlen)
		return 0;
	rc = write_all(w->hfd, w->hbuf, w->hlen);
	w->hlen = 0;
	return rc;
}

static int heap_put(struct pkb_writer *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	int rc;

	XXH3_64bits_update(w->heap_xs, data, len);
	w->heap_pos += len;
	while (len) {
		size_t k = HEAP_BUF - w->hlen;

		if (k > len)
			k = len;
		memcpy(w->hbuf + w->hlen, p, k);
		w->hlen += k;
		p += k;
		len -= k;
		if (w->hlen == HEAP_BUF) {
			rc = heap_flush(w);
			if (rc)
				return rc;
		}
	}
	return 0;
}

char *pkb_out_target(const char *path)
{
	char *p = strdup(path), *n, buf[PATH_MAX];
	struct stat st;
	int hops;
	ssize_t k;

	/* by hand, not realpath: the last link's file may not exist yet (it is then made) */
	for (hops = 0; p && hops < 40 && !lstat(p, &st) && S_ISLNK(st.st_mode); hops++) {
		const char *slash = strrchr(p, '/');
		size_t dl;

		k = readlink(p, buf, sizeof(buf) - 1);
		if (k <= 0 || k == (ssize_t)sizeof(buf) - 1)
			break;
		buf[k] = 0;
		dl = buf[0] == '/' || !slash ? 0 : (size_t)(slash + 1 - p);
		n = malloc(dl + (size_t)k + 1);
		if (n) { /* a relative target is relative to the link's directory */
			memcpy(n, p, dl);
			memcpy(n + dl, buf, (size_t)k + 1);
		}
		free(p);
		p = n;
	}
	return p;
}

/* Splits path into a directory (for the temporary files) and a base name. */
static char *dir_of(const char *path)
{
	const char *s = strrchr(path, '/');
	char *d;

	if (!s)
		return strdup(".");
	if (s == path)
		return strdup("/");
	d = strndup(path, (size_t)(s - path));
	return d;
}

/* Opens a new file in dir: anonymous (O_TMPFILE) when possible, else a named temporary
 * ".BASE.tmp.PID[.N]" (*tmp gets its name, to rename or unlink). */
static int open_temp(const char *dir, const char *path, char **tmp)
{
	int fd, i;

	*tmp = NULL;
#ifdef O_TMPFILE
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT)
		return -errno;
#endif
	for (i = 0; i < 100; i++) {
		size_t n = strlen(path) + 48;
		char *t = malloc(n);

		if (!t)
			return PKB_ENOMEM;
		pio_tmp_name(t, n, path, true, (long)getpid(), i);
		fd = open(t, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0666);
		if (fd >= 0) {
			*tmp = t;
			return fd;
		}
		free(t);
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

/*
 * Whether path may be replaced by a file renamed over it: not a directory, and not a device,
 * FIFO or socket (renaming over /dev/null, run as root, would replace the system's). Returns
 * 0 or -errno (message in err).
 */
static int replaceable(const char *path, struct pkb_err *err)
{
	struct stat st, d;
	char *dir;

	if (stat(path, &st)) { /* nothing there yet, or a loop of links */
		if (errno != ELOOP)
			return 0;
		seterr(err, "cannot write %s: %s", path, strerror(ELOOP));
		return -ELOOP;
	}
	if (S_ISREG(st.st_mode)) {
		/* in a sticky directory (/tmp) only the file's owner, the directory's or root may
		 * replace it: else the rename fails, after all the work */
		dir = dir_of(path);
		if (dir && !stat(dir, &d) && (d.st_mode & S_ISVTX) && geteuid() != 0 &&
		    st.st_uid != geteuid() && d.st_uid != geteuid()) {
			seterr(err,
			       "cannot replace %s: another user's file in a sticky directory (%s)",
			       path, dir);
			free(dir);
			return -EPERM;
		}
		free(dir);
		return 0;
	}
	if (S_ISDIR(st.st_mode)) {
		seterr(err, "cannot write %s: %s", path, strerror(EISDIR));
		return -EISDIR;
	}
	seterr(err,
	       "cannot write %s: it exists and is not a regular file (a device, FIFO or "
	       "socket is not replaced)",
	       path);
	return -EEXIST;
}

int pkb_check_replace(const char *path, struct pkb_err *err)
{
	return replaceable(path, err);
}

int pkb_check_output(const char *out, struct pkb_err *err)
{
	char *path = pkb_out_target(out), *dir, *tmp;
	int rc;

	if (!path) {
		seterr(err, "%s: out of memory", out);
		return PKB_ENOMEM;
	}
	rc = replaceable(path, err);
	if (rc) {
		free(path);
		return rc;
	}
	dir = dir_of(path);
	if (!dir) {
		free(path);
		seterr(err, "%s: out of memory", out);
		return PKB_ENOMEM;
	}
	rc = open_temp(dir, path, &tmp);
	if (rc < 0) {
		seterr(err, "%s: cannot create a temporary file in %s: %s", path, dir,
		       pkb_strerror(rc));
	} else {
		close(rc);
		if (tmp)
			unlink(tmp);
		free(tmp);
		rc = 0;
	}
	free(dir);
	free(path);
	return rc;
}

void pkb_writer_abort(struct pkb_writer *w)
{
	if (!w)
		return;
	(void)syncer_stop(w); /* before the file it flushes is closed */
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp)
		unlink(w->tmp);
	if (w->hfd >= 0)
		close(w->hfd);
	pm_snap_builder_destroy(w->b);
	if (w->trie_xs)
		XXH3_freeState(w->trie_xs);
	if (w->heap_xs)
		XXH3_freeState(w->heap_xs);
	free(w->hbuf);
	free(w->meta);
	free(w->tmp);
	free(w->path);
	free(w);
}

int pkb_writer_open(const char *path, const struct pkb_meta *meta,
		    const struct pkb_write_opts *opts, struct pkb_writer **out, struct pkb_err *err)
{
	struct pkb_writer *w = NULL;
	char *dir = NULL, *htmp = NULL, *target;
	int rc;

	if (!path || !meta || !out) {
		seterr(err, "pkb_writer_open: invalid argument");
		return PKB_EINVAL;
	}
	rc = meta_check(meta, path, err);
	if (rc)
		return rc;
	target = pkb_out_target(path); /* the file a link names is replaced, in its directory */
	if (!target)
		goto out_nomem;
	rc = replaceable(target, err);
	if (rc) {
		free(target);
		return rc;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		free(target);
		goto out_nomem;
	}
	w->fd = -1;
	w->hfd = -1;
	w->scheme = meta->scheme;
	w->partitions = meta->partitions;
	w->blob = pkb_type_is_blob(&meta->value_type);
	w->sync_step = DATASYNC_BYTES;
	if (opts) {
		w->cancel = opts->cancel;
		w->no_sync = opts->no_sync;
		w->before_commit = opts->before_commit;
		w->commit_arg = opts->commit_arg;
		if (opts->sync_step)
			w->sync_step = opts->sync_step;
	}
	w->path = target;
	dir = dir_of(w->path);
	w->trie_xs = XXH3_createState();
	w->heap_xs = XXH3_createState();
	if (!dir || !w->trie_xs || !w->heap_xs)
		goto out_nomem;
	XXH3_64bits_reset(w->trie_xs);
	XXH3_64bits_reset(w->heap_xs);
	rc = meta_encode(meta, &w->meta, &w->meta_len);
	if (rc) {
		seterr(err, "%s: %s", path,
		       rc == PKB_ENOMEM ? "out of memory" : "input name too long");
		goto out_abort;
	}
	rc = pm_snap_builder_create(NULL, NULL, trie_sink, w, &w->b);
	if (rc)
		goto out_nomem;
	rc = open_temp(dir, w->path, &w->tmp);
	if (rc < 0) {
		seterr(err, "%s: cannot create a temporary file in %s: %s", path, dir,
		       pkb_strerror(rc));
		goto out_abort;
	}
	w->fd = rc;
	if (w->blob) {
		w->hbuf = malloc(HEAP_BUF);
		if (!w->hbuf)
			goto out_nomem;
		rc = open_temp(dir, w->path, &htmp);
		if (rc < 0) {
			seterr(err, "%s: cannot create a temporary file in %s: %s", path, dir,
			       pkb_strerror(rc));
			goto out_abort;
		}
		w->hfd = rc;
		if (htmp) { /* named: unlink now, the descriptor keeps it */
			unlink(htmp);
			free(htmp);
		}
	}
	w->trie_off = PKB_HEADER_SIZE + align8(w->meta_len);
	rc = pwrite_all(w->fd, w->meta, (size_t)align8(w->meta_len), PKB_HEADER_SIZE);
	if (rc) {
		seterr(err, "cannot write %s: %s", path, pkb_strerror(rc));
		goto out_abort;
	}
	free(dir);
	*out = w;
	return 0;
out_nomem:
	rc = PKB_ENOMEM;
	seterr(err, "%s: out of memory", path);
out_abort:
	free(dir);
	pkb_writer_abort(w);
	return rc;
}

int pkb_heap_append(uint8_t **heap, size_t *len, size_t *cap, const uint8_t *data, size_t dlen,
		    uint64_t *off)
{
	size_t need;

	if (dlen > UINT32_MAX || dlen > SIZE_MAX - 4 - *len)
		return PKB_ENOMEM;
	need = *len + 4 + dlen;
	if (need > *cap) {
		size_t nc = need * 2 + 4096;
		uint8_t *nh = realloc(*heap, nc);

		if (!nh)
			return PKB_ENOMEM;
		*heap = nh;
		*cap = nc;
	}
	put_le(*heap + *len, dlen, 4);
	if (dlen)
		memcpy(*heap + *len + 4, data, dlen);
	*off = *len;
	*len = need;
	return 0;
}

uint64_t pkb_writer_count(const struct pkb_writer *w)
{
	return w->count;
}

/* Appends a string value to w's heap ([u32 length][bytes]); *word gets its offset. Returns
 * 0 or an error (message in err). */
static int writer_blob(struct pkb_writer *w, const uint8_t *blob, size_t len, uint64_t *word,
		       struct pkb_err *err)
{
	uint8_t l4[4];
	int rc;

	if (len > UINT32_MAX) {
		seterr(err, "%s: a value is longer than 4 GiB", w->path);
		return PKB_EINVAL;
	}
	*word = w->heap_pos;
	put_le(l4, len, 4);
	rc = heap_put(w, l4, 4);
	if (!rc && len)
		rc = heap_put(w, blob, len);
	if (rc)
		seterr(err, "cannot write %s: %s", w->path, pkb_strerror(rc));
	return rc;
}

int pkb_writer_add(struct pkb_writer *w, const uint8_t *key, size_t len, uint64_t word,
		   const uint8_t *blob, size_t blob_len, struct pkb_err *err)
{
	int rc;

	if (w->cancel && w->count % CANCEL_EVERY == 0 && *w->cancel) {
		seterr(err, "%s: interrupted, nothing written", w->path);
		return PKB_ECANCELED;
	}
	if (w->blob) {
		if (blob_len > UINT32_MAX) {
			seterr(err, "%s: a value is longer than 4 GiB", w->path);
			return PKB_EINVAL;
		}
		word = w->heap_pos;
	}
	rc = pm_snap_builder_add(w->b, key, len, word);
	if (rc == PM_SNAP_EORDER) {
		seterr(err, "%s: keys given out of order", w->path);
		return PKB_EORDER;
	}
	if (rc == PM_SNAP_ESINK) {
		rc = pm_snap_builder_sink_error(w->b);
		seterr(err, "cannot write %s: %s", w->path, pkb_strerror(rc));
		return rc;
	}
	if (rc) {
		seterr(err, "%s: %s", w->path, pm_snap_strerror(rc));
		return rc == PM_EOVERFLOW ? PKB_ENOMEM : rc;
	}
	if (w->blob && (rc = writer_blob(w, blob, blob_len, &word, err)))
		return rc;
	w->count++;
	w->key_bytes += len;
	return 0;
}

/* Appends the heap spill file to the KB at off. */
static int copy_heap(struct pkb_writer *w, uint64_t off)
{
	uint64_t done = 0;
	uint8_t *buf = w->hbuf;

	while (done < w->heap_pos) {
		loff_t in = (loff_t)done, o = (loff_t)(off + done);
		ssize_t k =
		    copy_file_range(w->hfd, &in, w->fd, &o, (size_t)(w->heap_pos - done), 0);

		if (k > 0) {
			done += (uint64_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP &&
		    errno != EINVAL)
			return -errno;
		break; /* not supported here: copy by hand */
	}
	while (done < w->heap_pos) {
		size_t want =
		    w->heap_pos - done < HEAP_BUF ? (size_t)(w->heap_pos - done) : HEAP_BUF;
		ssize_t k = pread(w->hfd, buf, want, (off_t)done);
		int rc;

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		rc = pwrite_all(w->fd, buf, (size_t)k, off + done);
		if (rc)
			return rc;
		done += (uint64_t)k;
	}
	return 0;
}

static int fsync_dir(const char *path)
{
	char *dir = dir_of(path);
	int fd, rc = 0;

	if (!dir)
		return PKB_ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		free(dir);
		return 0; /* cannot open the directory: the rename stands, nothing to sync */
	}
	if (fsync(fd) && errno != EINVAL)
		rc = -errno;
	close(fd);
	free(dir);
	return rc;
}

/* The message and code of a failed join call. */
static int join_error(struct pkb_writer *w, int rc, struct pkb_err *err)
{
	if (rc == PM_SNAP_ESINK) {
		rc = pm_snap_builder_sink_error(w->b);
		seterr(err, "cannot write %s: %s", w->path, pkb_strerror(rc));
		return rc;
	}
	seterr(err, "%s: %s", w->path, rc == PM_ENOMEM ? "out of memory" : pm_snap_strerror(rc));
	return rc == PM_ENOMEM ? PKB_ENOMEM : PKB_EINVAL;
}

/* Whether w may take (more) parts: a writer of numbers given no key but parts, not joined. */
static int join_ready(struct pkb_writer *w, const char *call, struct pkb_err *err)
{
	if (w->blob || (w->count && !w->joining) || w->joined) {
		seterr(err, "%s: %s: the writer is not fresh or takes string values", w->path,
		       call);
		return PKB_EINVAL;
	}
	return 0;
}

int pkb_writer_join_parts(struct pkb_writer *w, const struct pm_snap_part *parts, size_t n,
			  uint64_t key_bytes, struct pkb_err *err)
{
	size_t i;
	int rc = join_ready(w, "pkb_writer_join_parts", err);

	if (rc)
		return rc;
	rc = pm_snap_builder_join_parts(w->b, parts, n);
	if (rc)
		return join_error(w, rc, err);
	w->joining = true;
	for (i = 0; i < n; i++)
		w->count += parts[i].count;
	w->key_bytes += key_bytes;
	return 0;
}

int pkb_writer_join_finish(struct pkb_writer *w, const uint8_t *prefix, size_t plen, bool has_val,
			   uint64_t val, struct pkb_err *err)
{
	int rc = join_ready(w, "pkb_writer_join_finish", err);

	if (rc)
		return rc;
	rc = pm_snap_builder_join_finish(w->b, prefix, plen, has_val, val, &w->trie_len);
	if (rc)
		return join_error(w, rc, err);
	w->joined = true;
	if (has_val) {
		w->count++;
		w->key_bytes += plen;
	}
	return 0;
}

int pkb_writer_commit(struct pkb_writer *w, struct pkb_err *err)
{
	uint8_t h[PKB_HEADER_SIZE], pad[8] = {0};
	struct stat st;
	uint64_t trie_len, heap_off, file_len, pad_len;
	int rc;

	if (w->cancel && *w->cancel) {
		rc = PKB_ECANCELED;
		seterr(err, "%s: interrupted, nothing written", w->path);
		goto out_abort;
	}
	if (w->joined) {
		trie_len = w->trie_len;
		rc = 0;
	} else {
		rc = pm_snap_builder_finish(w->b, &trie_len);
	}
	if (rc == PM_SNAP_ESINK) {
		rc = pm_snap_builder_sink_error(w->b);
		goto out_io;
	}
	if (rc) {
		rc = PKB_ENOMEM;
		seterr(err, "%s: out of memory", w->path);
		goto out_abort;
	}
	heap_off = w->trie_off + trie_len;
	pad_len = align8(w->heap_pos) - w->heap_pos;
	if (w->blob) {
		if (pad_len)
			XXH3_64bits_update(w->heap_xs, pad, (size_t)pad_len);
		rc = heap_flush(w);
		if (!rc)
			rc = copy_heap(w, heap_off);
		if (rc)
			goto out_io;
	}
	file_len = heap_off + align8(w->heap_pos);
	if (pad_len) {
		rc = pwrite_all(w->fd, pad, (size_t)pad_len, heap_off + w->heap_pos);
		if (rc)
			goto out_io;
	}
	memset(h, 0, sizeof(h));
	memcpy(h, kb_magic, 8);
	put_le(h + H_VERSION, PKB_VERSION, 4);
	put_le(h + H_HSIZE, PKB_HEADER_SIZE, 4);
	put_le(h + H_SCHEME, (uint64_t)w->scheme, 4);
	put_le(h + H_PARTS, w->partitions, 4);
	put_le(h + H_COUNT, w->count, 8);
	put_le(h + H_KEYBYTES, w->key_bytes, 8);
	put_le(h + H_FILELEN, file_len, 8);
	put_le(h + H_META_OFF, PKB_HEADER_SIZE, 8);
	put_le(h + H_META_LEN, w->meta_len, 8);
	put_le(h + H_TRIE_OFF, w->trie_off, 8);
	put_le(h + H_TRIE_LEN, trie_len, 8);
	put_le(h + H_HEAP_OFF, heap_off, 8);
	put_le(h + H_HEAP_LEN, w->heap_pos, 8);
	put_le(h + H_META_SUM, XXH3_64bits(w->meta, (size_t)align8(w->meta_len)), 8);
	put_le(h + H_TRIE_SUM, XXH3_64bits_digest(w->trie_xs), 8);
	put_le(h + H_HEAP_SUM, XXH3_64bits_digest(w->heap_xs), 8);
	put_le(h + H_SUM, XXH3_64bits(h, H_SUM), 8);
	rc = pwrite_all(w->fd, h, sizeof(h), 0);
	if (rc)
		goto out_io;
	rc = syncer_stop(w);
	if (rc)
		goto out_io;
	/* a file replaced keeps its permissions (a KB shared with a group stays shared) */
	if (!stat(w->path, &st) && S_ISREG(st.st_mode) && fchmod(w->fd, st.st_mode & 0777)) {
		rc = -errno;
		goto out_io;
	}
	if (!w->no_sync && fsync(w->fd)) {
		rc = -errno;
		goto out_io;
	}
	if (w->cancel && *w->cancel) {
		rc = PKB_ECANCELED;
		seterr(err, "%s: interrupted, nothing written", w->path);
		goto out_abort;
	}
	if (pkb_lost()) { /* a KB read for this result changed under it */
		rc = PKB_ELOST;
		seterr(err, "%s: %s", lost_path, pkb_strerror(rc));
		lost_told = 1;
		goto out_abort;
	}
	if (w->before_commit) {
		rc = w->before_commit(w->commit_arg, err);
		if (rc)
			goto out_abort;
	}
	if (!w->tmp) {
		/* Anonymous file: give it a temporary name, then rename it into place (linkat
		 * cannot replace an existing name). */
		char proc[64];
		size_t n = strlen(w->path) + 48;

		w->tmp = malloc(n);
		if (!w->tmp) {
			rc = PKB_ENOMEM;
			goto out_io;
		}
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", w->fd);
		for (int i = 0;; i++) { /* a new name: never one found there (another file's) */
			pio_tmp_name(w->tmp, n, w->path, true, (long)getpid(), i);
			if (!linkat(AT_FDCWD, proc, AT_FDCWD, w->tmp, AT_SYMLINK_FOLLOW))
				break;
			if (errno != EEXIST || i == 99) {
				rc = -errno;
				free(w->tmp);
				w->tmp = NULL;
				goto out_io;
			}
		}
	}
	if (rename(w->tmp, w->path)) {
		rc = -errno;
		goto out_io;
	}
	free(w->tmp);
	w->tmp = NULL;
	if (!w->no_sync) {
		rc = fsync_dir(w->path);
		if (rc) {
			seterr(err, "cannot sync the directory of %s: %s", w->path,
			       pkb_strerror(rc));
			pkb_writer_abort(w);
			return rc;
		}
	}
	pkb_writer_abort(w); /* frees; nothing left to remove */
	return 0;
out_io:
	seterr(err, "cannot write %s: %s", w->path, pkb_strerror(rc));
out_abort:
	pkb_writer_abort(w);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* pkb_write: a map with internal paths */

/*
 * The hash scheme's partitions hold disjoint sets of user keys, each in key order under its
 * partition path; the KB wants them in one key order. One walk over the partitions' nodes
 * together (pm_snap_builder_add_union) emits the image directly, and checks on the way that
 * each key sits in the partition its hash names. Two ways (pkb_write picks one):
 *   - serial: one walk over everything, streamed through the writer; string values are
 *     copied to the KB's heap as the walk meets them (their offsets follow key order);
 *   - in parts (number values): with C the longest common prefix of all user keys, the keys
 *     C ++ c ++ s are cut into ranges of the branch byte c, of about equal weight (the
 *     bytes' key counts, estimated: range_weights); each range (a task of a parallel
 *     loop) walks, for each c, the subtries at the partition paths ++ C ++ c and builds the
 *     image of the stripped keys s in memory (pm_snap_builder_finish_part); finished ranges
 *     are streamed to the writer in byte order as soon as every range before them is (so
 *     the file is written while later ranges are built, and each part's buffer goes back to
 *     a pool for later parts as soon as it is written), and the root joins them
 *     (pm_snap_builder_join_parts / _finish):
 *     the same bytes as the serial way, as FORMAT.md's layout makes every subtree's
 *     encoding independent of where it lies. This needs the image in memory.
 * The prefix scheme's map holds the user keys themselves: one subtrie, the whole map, written
 * the same two ways (with nothing to check).
 */
#define WRITE_RANGES_PER_THREAD 8u     /* in parts: key ranges per thread */
#define WRITE_SAMPLE_SUBTRIES 4u       /* in parts: partitions counted to weigh the ranges */
#define WRITE_SAMPLE_MIN 64u	       /* ... when there are at least this many */
#define WRITE_IMAGE_BYTES_PER_KEY 48.0 /* in parts: image bytes per key, a generous guess */
#define WRITE_IMAGE_DEFAULT_MEMORY ((uint64_t)1 << 30) /* ... allowed without opts->memory */

static int grow_to(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 64;
	void *np;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	np = realloc(*p, ncap * elem);
	if (!np)
		return PKB_ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

/* ---- in parts ---- */

/* One branch byte's image, built in memory. */
struct wpart {
	struct pm_snap_part part; /* what the join needs */
	uint8_t *buf;		  /* the node bytes */
	size_t len;		  /* used */
	size_t cap;		  /* allocated */
	uint64_t key_bytes;	  /* sum of its full keys' lengths */
};

/* A range of branch bytes [lo, hi) after C: one task. */
struct wrange {
	unsigned lo, hi;     /* the range */
	struct wpart *parts; /* one per byte with keys, in byte order */
	size_t nparts;	     /* parts in use */
	size_t pcap;	     /* parts allocated */
	pm_snap_builder *b;  /* builder of the last part, while open */
	size_t clen;	     /* bytes of C */
	struct pkb_err err;  /* message of rc */
	int rc;		     /* the task's error */
	bool done;	     /* built or skipped (set under the stream's mutex) */
	bool skipped;	     /* not built: the stream had stopped */
};

/*
 * Part buffers written out go back to a pool that later parts take from: a part grows to
 * about a megabyte, and memory the process has touched is reused instead of fresh pages
 * (a first touch costs microseconds a page in a virtual machine). Taken by the building
 * threads and given back by the writer thread, under the pool's mutex.
 */
#define WPOOL_MAX 64 /* buffers kept */

struct wpool {
	pthread_mutex_t mu; /* guards the rest */
	struct {
		uint8_t *buf;
		size_t cap;
	} b[WPOOL_MAX];
	size_t n; /* buffers kept */
};

/* A kept buffer (the last given back) for part p, if any. */
static void pool_take(struct wpool *pool, struct wpart *p)
{
	pthread_mutex_lock(&pool->mu);
	if (pool->n) {
		pool->n--;
		p->buf = pool->b[pool->n].buf;
		p->cap = pool->b[pool->n].cap;
	}
	pthread_mutex_unlock(&pool->mu);
}

/* Gives part p's buffer back (freed when the pool is full). */
static void pool_put(struct wpool *pool, struct wpart *p)
{
	bool kept = false;

	pthread_mutex_lock(&pool->mu);
	if (p->buf && pool->n < WPOOL_MAX) {
		pool->b[pool->n].buf = p->buf;
		pool->b[pool->n].cap = p->cap;
		pool->n++;
		kept = true;
	}
	pthread_mutex_unlock(&pool->mu);
	if (!kept)
		free(p->buf);
	p->buf = NULL;
	p->cap = 0;
}

static void pool_free(struct wpool *pool)
{
	while (pool->n)
		free(pool->b[--pool->n].buf);
}

static int part_sink(void *ud, const void *data, size_t len)
{
	struct wpart *p = ud;

	if (grow_to((void **)&p->buf, &p->cap, p->len + len, 1))
		return PKB_ENOMEM;
	memcpy(p->buf + p->len, data, len);
	p->len += len;
	return 0;
}

static int part_close(struct wrange *r)
{
	struct wpart *p = &r->parts[r->nparts - 1];
	int rc;

	rc = pm_snap_builder_finish_part(r->b, &p->part);
	pm_snap_builder_destroy(r->b);
	r->b = NULL;
	return rc ? (rc == PM_SNAP_ESINK ? PKB_ENOMEM : rc) : 0;
}

static void wrange_free(struct wrange *r)
{
	size_t i;

	pm_snap_builder_destroy(r->b);
	for (i = 0; i < r->nparts; i++)
		free(r->parts[i].buf);
	free(r->parts);
}

/*
 * What the union walk does at every key, when there is something to do: checks that it sits
 * in the partition its hash names (the walk never spells out keys otherwise, so this is where
 * routing is verified) and copies a string value to the heap (its word becomes the heap
 * offset). Without either, no callback runs for each key: the builder's tick (write_tick)
 * looks at the cancel flag and tells the progress now and then.
 */
struct walk_check {
	struct pkb_writer *w; /* string values: the writer whose heap takes them */
	pkb_blob_fn blob;     /* ... their accessor */
	void *blob_ud;	      /* ... its argument */
	struct pkb_err err;   /* the message of a failure met here */
	uint8_t *key;	      /* the user key: C ++ byte ++ the walk's key */
	size_t head;	      /* bytes of C ++ byte */
	size_t cap;	      /* bytes allocated */
	uint32_t parts;	      /* P (0: the prefix scheme, nothing to check) */
	uint32_t src, hash;   /* the misrouted key's partition and its hash's */
};

static int walk_check(void *arg, size_t src, const uint8_t *key, size_t len, uint64_t *val)
{
	struct walk_check *c = arg;
	uint32_t h;
	int rc;

	if (c->parts) {
		if (c->head + len > c->cap && grow_to((void **)&c->key, &c->cap, c->head + len, 1))
			return PKB_ENOMEM;
		if (len)
			memcpy(c->key + c->head, key, len);
		h = pme_hash_partition(c->key, c->head + len, c->parts);
		if (h != src) {
			c->src = (uint32_t)src;
			c->hash = h;
			return PKB_EROUTE;
		}
	}
	if (c->w) {
		const uint8_t *data = NULL;
		size_t dlen = 0;

		rc = c->blob(c->blob_ud, *val, &data, &dlen);
		if (rc) {
			seterr(&c->err, "%s: the value of a key cannot be read (%s)", c->w->path,
			       pkb_strerror(rc));
			return rc;
		}
		return writer_blob(c->w, data, dlen, val, &c->err);
	}
	return 0;
}

/* What the builders' ticks look at during pkb_write: the cancel flag, and the progress. */
struct wprog {
	volatile sig_atomic_t *cancel;	      /* abort flag, or NULL */
	void (*fn)(void *arg, uint64_t keys); /* progress, or NULL */
	void *arg;			      /* ... its first argument */
	_Atomic uint64_t keys;		      /* keys the walks have met */
	atomic_flag busy;		      /* a thread is in fn */
};

/* One walk's tick state. */
struct wtick {
	struct wprog *wp; /* the write's */
	uint64_t last;	  /* keys this walk had met at its last tick */
};

/* Adds the keys t's walk has met since its last report to the write's count, and tells the
 * progress (one thread at a time: a thread that finds another there goes on; the count
 * read inside only grows, so the progress never goes back). */
static void progress_add(struct wtick *t, uint64_t keys)
{
	struct wprog *wp = t->wp;

	if (!wp->fn)
		return;
	atomic_fetch_add_explicit(&wp->keys, keys - t->last, memory_order_relaxed);
	t->last = keys;
	if (!atomic_flag_test_and_set_explicit(&wp->busy, memory_order_acquire)) {
		wp->fn(wp->arg, atomic_load_explicit(&wp->keys, memory_order_relaxed));
		atomic_flag_clear_explicit(&wp->busy, memory_order_release);
	}
}

/* The builder's tick during a union walk: stops it once the cancel flag is up; progress. */
static int write_tick(void *arg, uint64_t keys)
{
	struct wtick *t = arg;

	if (t->wp->cancel && *t->wp->cancel)
		return PKB_ECANCELED;
	progress_add(t, keys);
	return 0;
}

/* Sets b's tick to t's walk, if there is anything for it to do. */
static void set_tick(pm_snap_builder *b, struct wtick *t, struct wprog *wp)
{
	t->wp = wp;
	t->last = 0;
	if (wp->cancel || wp->fn)
		pm_snap_builder_set_tick(b, write_tick, t);
}

/* The per-key callback of a union walk with ck set up, or NULL when it has nothing to do. */
static pm_snap_union_fn walk_fn(const struct walk_check *ck)
{
	return ck->parts || ck->w ? walk_check : NULL;
}

/* The error message of a failed union walk; returns its PKB code. */
static int union_error(int rc, const struct walk_check *c, const char *path, struct pkb_err *err)
{
	if (c->err.msg[0]) { /* a string value's failure, already told */
		*err = c->err;
		return rc;
	}
	switch (rc) {
	case PKB_EROUTE:
		seterr(err, "%s: a key sits in partition %u, its hash says %u", path, c->src,
		       c->hash);
		return rc;
	case PM_EINVAL:
		seterr(err, "%s: a key is held by two partitions", path);
		return PKB_EROUTE;
	case PKB_ECANCELED:
		seterr(err, "%s: interrupted, nothing written", path);
		return rc;
	case PM_ENOMEM: /* PKB_ENOMEM too */
	case PM_EOVERFLOW:
		seterr(err, "%s: out of memory", path);
		return PKB_ENOMEM;
	}
	return rc;
}

/* Where a map's user keys live: the hash scheme's P subtries under the partition paths, or
 * the prefix scheme's one subtrie, the whole map. */
struct wlayout {
	uint32_t nsub;	/* subtries: P, or 1 */
	size_t ppl;	/* bytes of path before a subtrie's user keys: PME_PART_PATH_LEN, or 0 */
	uint32_t hash;	/* P: the hash scheme, else 0 */
	uint32_t check; /* P when every key is checked against its hash, else 0 */
};

static void layout_of(const struct pkb_meta *meta, const struct pkb_write_opts *opts,
		      struct wlayout *l)
{
	bool hash = meta->scheme == PME_SCHEME_HASH;

	l->nsub = hash ? meta->partitions : 1;
	l->ppl = hash ? PME_PART_PATH_LEN : 0;
	l->hash = hash ? meta->partitions : 0;
	l->check = opts && opts->trust_routes ? 0 : l->hash;
}

/* Writes subtrie p's path to user prefix C (clen bytes) at q. */
static void sub_path(const struct wlayout *l, uint32_t p, const uint8_t *cp, size_t clen,
		     uint8_t *q)
{
	if (l->ppl)
		pme_partition_path(p, q);
	if (clen)
		memcpy(q + l->ppl, cp, clen);
}

/* Sets up the subtries' paths of a walk under user prefix C ++ byte (the byte is put in by
 * the caller at path[plen - 1]); *paths, *lens and *buf are malloc'd. 0 or PKB_ENOMEM. */
static int walk_paths(const struct wlayout *l, const uint8_t *cp, size_t clen, size_t extra,
		      uint8_t **buf, const uint8_t ***paths, size_t **lens)
{
	size_t pl = l->ppl + clen + extra;
	uint32_t p;

	*buf = malloc((size_t)l->nsub * pl + 1);
	*paths = malloc((size_t)l->nsub * sizeof(**paths));
	*lens = malloc((size_t)l->nsub * sizeof(**lens));
	if (!*buf || !*paths || !*lens)
		return PKB_ENOMEM;
	for (p = 0; p < l->nsub; p++) {
		uint8_t *q = *buf + (size_t)p * pl;

		sub_path(l, p, cp, clen, q);
		(*paths)[p] = q;
		(*lens)[p] = pl;
	}
	return 0;
}

/* The key range's images, one part per branch byte: one task of write_parts. */
static void write_range(const pm_map *map, const struct wlayout *l, const uint8_t *cp,
			struct wrange *r, struct wpool *pool, const char *path, struct wprog *wp)
{
	const uint32_t np = l->nsub;
	const size_t pl = l->ppl + r->clen + 1;
	struct walk_check ck;
	const uint8_t **paths = NULL;
	uint8_t *pbuf = NULL;
	size_t *lens = NULL;
	unsigned c;
	uint32_t p;
	int rc;

	memset(&ck, 0, sizeof(ck));
	ck.parts = l->check;
	ck.head = r->clen + 1;
	rc = walk_paths(l, cp, r->clen, 1, &pbuf, &paths, &lens);
	if (!rc && grow_to((void **)&ck.key, &ck.cap, ck.head + 64, 1))
		rc = PKB_ENOMEM;
	if (!rc && r->clen)
		memcpy(ck.key, cp, r->clen);
	for (c = r->lo; !rc && c < r->hi; c++) {
		struct wtick tick;
		struct wpart *w;
		uint64_t kb = 0, n;

		for (p = 0; p < np; p++)
			pbuf[(size_t)p * pl + pl - 1] = (uint8_t)c;
		ck.key[r->clen] = (uint8_t)c;
		if (r->nparts == r->pcap) {
			size_t nc = r->pcap ? 2 * r->pcap : 8;
			struct wpart *npp = realloc(r->parts, nc * sizeof(*npp));

			if (!npp) {
				rc = PKB_ENOMEM;
				break;
			}
			r->parts = npp;
			r->pcap = nc;
		}
		w = &r->parts[r->nparts];
		memset(w, 0, sizeof(*w));
		w->part.byte = (uint8_t)c;
		pool_take(pool, w);
		if (pm_snap_builder_create(NULL, NULL, part_sink, w, &r->b) ||
		    pm_snap_builder_for_part(r->b)) {
			rc = PKB_ENOMEM;
			break;
		}
		set_tick(r->b, &tick, wp); /* it runs as each part's walk begins, and inside */
		rc = pm_snap_builder_add_union(r->b, map, paths, lens, np, walk_fn(&ck), &ck, &kb);
		n = rc ? 0 : pm_snap_builder_count(r->b);
		if (rc == PM_SNAP_ESINK)
			rc = PKB_ENOMEM; /* the part sink fails only for memory */
		if (n) {
			progress_add(&tick, n); /* the keys met since the walk's last tick */
			r->nparts++;
			w->key_bytes = kb + n * (r->clen + 1);
			rc = part_close(r);
		} else {
			pm_snap_builder_destroy(r->b);
			r->b = NULL;
			pool_put(pool, w);
		}
	}
	if (rc)
		r->rc = union_error(rc, &ck, path, &r->err);
	free(ck.key);
	free(pbuf);
	free(paths);
	free(lens);
}

/*
 * The first (last: dir > 0) user key of subtrie pid into *key (malloc'd) and *len; returns 1
 * found, 0 empty, or PKB_ENOMEM.
 */
static int part_edge(const pm_map *map, const struct wlayout *l, uint32_t pid, bool last,
		     uint8_t **key, size_t *len)
{
	uint8_t pp[PME_PART_PATH_LEN], bytes[256];
	const uint8_t *k;
	size_t kl;
	unsigned nb;
	pm_rz *z;

	sub_path(l, pid, NULL, 0, pp);
	if (pm_rz_create_at(map, pp, l->ppl, &z))
		return PKB_ENOMEM;
	if (!pm_rz_exists(z)) {
		pm_rz_destroy(z);
		return 0;
	}
	for (;;) {
		if (!last && pm_rz_value(z, NULL))
			break; /* the first key: no key under it is smaller */
		nb = pm_rz_child_bytes(z, bytes);
		if (!nb)
			break; /* a leaf: the last key */
		if (pm_rz_descend_byte(z, last ? bytes[nb - 1] : bytes[0])) {
			pm_rz_destroy(z);
			return PKB_ENOMEM;
		}
	}
	k = pm_rz_path(z, &kl);
	*key = malloc(kl ? kl : 1);
	if (!*key) {
		pm_rz_destroy(z);
		return PKB_ENOMEM;
	}
	memcpy(*key, k, kl);
	*len = kl;
	pm_rz_destroy(z);
	return 1;
}

/*
 * The longest common prefix C of all user keys: that of the smallest and the largest.
 * *cp (malloc'd) and *clen; returns 1, 0 (no key) or PKB_ENOMEM.
 */
static int common_prefix(const pm_map *map, const struct wlayout *l, uint8_t **cp, size_t *clen)
{
	uint8_t *lo = NULL, *hi = NULL, *k;
	size_t lol = 0, hil = 0, kl, c = 0;
	uint32_t p;
	int rc = 0;

	for (p = 0; p < l->nsub; p++) {
		for (int dir = 0; dir < 2; dir++) {
			rc = part_edge(map, l, p, dir, &k, &kl);
			if (rc < 0)
				goto out;
			if (rc == 0)
				break;
			if (dir == 0 && (!lo || pme_key_cmp(k, kl, lo, lol) < 0)) {
				free(lo);
				lo = k;
				lol = kl;
			} else if (dir == 1 && (!hi || pme_key_cmp(k, kl, hi, hil) > 0)) {
				free(hi);
				hi = k;
				hil = kl;
			} else {
				free(k);
			}
		}
	}
	rc = lo ? 1 : 0;
	if (lo)
		while (c < lol && c < hil && lo[c] == hi[c])
			c++;
	*cp = lo;
	*clen = c;
	lo = NULL;
out:
	free(lo);
	free(hi);
	return rc;
}

/*
 * The writer's side of write_parts: a thread of its own that writes the ranges in byte order
 * as they are finished, while the building threads go on with the next ones. Writing to the
 * file can block for a while (the kernel throttles a writer when too much of the page cache
 * waits for the disk); a building thread that did the writing would stop building meanwhile.
 * The ranges' done flags and the stop flag are guarded by mu; a building thread sets a
 * range's other fields before it marks the range done, and the writer reads them after it
 * saw the mark.
 */
struct wstream {
	struct pkb_writer *w; /* the writer */
	struct wrange *r;     /* the ranges */
	struct wpool *pool;   /* written parts' buffers go back here */
	size_t nranges;	      /* their number */
	size_t next;	      /* the first range not written yet (the writer's) */
	pthread_mutex_t mu;   /* guards the ranges' done and skipped flags, and stop */
	pthread_cond_t cv;    /* signalled when a range is done */
	bool stop;	      /* a range or the writer failed: ranges not begun are skipped */
	struct pkb_err err;   /* message of rc */
	int rc;		      /* the first write error (the writer's) */
};

/* Marks range t done (skipped: not built, as the stream had stopped); a failed range stops
 * the stream. The building threads'. */
static void stream_done(struct wstream *s, size_t t, bool skipped)
{
	pthread_mutex_lock(&s->mu);
	s->r[t].done = true;
	s->r[t].skipped = skipped;
	if (s->r[t].rc)
		s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Whether the stream has stopped: a range not begun yet is then skipped. */
static bool stream_stopped(struct wstream *s)
{
	bool stopped;

	pthread_mutex_lock(&s->mu);
	stopped = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stopped;
}

/*
 * The writer thread: writes each range, in order, once it is done, and gives its buffers
 * back to the pool. Stops at a range that failed or was skipped (write_parts reports the
 * error) or at a write error of its own (s->rc, which stops the building too).
 */
static void *stream_main(void *arg)
{
	struct wstream *s = arg;

	while (s->next < s->nranges) {
		struct wrange *r = &s->r[s->next];
		size_t j;

		pthread_mutex_lock(&s->mu);
		while (!r->done)
			pthread_cond_wait(&s->cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
		if (r->rc || r->skipped)
			break;
		for (j = 0; j < r->nparts && !s->rc; j++) {
			struct wpart *p = &r->parts[j];

			p->part.nodes = p->buf;
			s->rc = pkb_writer_join_parts(s->w, &p->part, 1, p->key_bytes, &s->err);
			pool_put(s->pool, p);
		}
		if (s->rc) {
			pthread_mutex_lock(&s->mu);
			s->stop = true;
			pthread_mutex_unlock(&s->mu);
			break;
		}
		s->next++;
	}
	return NULL;
}

/*
 * Weight of the keys under user prefix C ++ c, for every branch byte c, into w[256] (0: no
 * key): the number of subtries with keys there, plus, with many subtries (the hash scheme's
 * P >= WRITE_SAMPLE_MIN), the keys that the first WRITE_SAMPLE_SUBTRIES of them hold there,
 * scaled to all P (a hash partition holds a uniform sample of the keys, so a few tell the
 * spread for a small fraction of a walk), else the number of nodes in the two levels below
 * (the prefix scheme's one subtrie cannot be sampled that way; the levels are cheap to count
 * and follow the fan-out). Returns 0 or PKB_ENOMEM.
 */
static int range_weights(const pm_map *map, const struct wlayout *l, const uint8_t *cp, size_t clen,
			 uint64_t w[256])
{
	const bool sample = l->nsub >= WRITE_SAMPLE_MIN;
	uint8_t *path = malloc(l->ppl + clen + 1), bytes[256], gb[256];
	unsigned nb, i, j, ng;
	uint32_t p;
	pm_rz *z;

	if (!path)
		return PKB_ENOMEM;
	memset(w, 0, 256 * sizeof(*w));
	for (p = 0; p < l->nsub; p++) {
		sub_path(l, p, cp, clen, path);
		if (pm_rz_create_at(map, path, l->ppl + clen, &z)) {
			free(path);
			return PKB_ENOMEM;
		}
		nb = pm_rz_child_bytes(z, bytes);
		for (i = 0; i < nb; i++) {
			uint64_t x = 1;

			if (!sample || p < WRITE_SAMPLE_SUBTRIES) {
				if (pm_rz_descend_byte(z, bytes[i])) {
					pm_rz_destroy(z);
					free(path);
					return PKB_ENOMEM;
				}
				if (sample) {
					x += pm_rz_count(z) * (l->nsub / WRITE_SAMPLE_SUBTRIES);
				} else {
					ng = pm_rz_child_count(z);
					x += ng;
					ng = pm_rz_child_bytes(z, gb);
					for (j = 0; j < ng; j++) {
						if (pm_rz_descend_byte(z, gb[j])) {
							pm_rz_destroy(z);
							free(path);
							return PKB_ENOMEM;
						}
						x += pm_rz_child_count(z);
						pm_rz_ascend(z, 1);
					}
				}
				pm_rz_ascend(z, 1);
			}
			w[bytes[i]] += x;
		}
		pm_rz_destroy(z);
	}
	free(path);
	return 0;
}

/*
 * Cuts the branch bytes after C into at most nwant ranges of about equal weight (each with
 * at least one byte that has keys): r[0..*nr) get lo and hi. Returns 0 or PKB_ENOMEM.
 */
static int plan_ranges(const pm_map *map, const struct wlayout *l, const uint8_t *cp, size_t clen,
		       size_t nwant, struct wrange *r, size_t *nr)
{
	uint64_t w[256], total = 0, acc = 0;
	size_t present = 0, seen = 0, n, i = 0;
	unsigned c;
	int rc = range_weights(map, l, cp, clen, w);

	if (rc)
		return rc;
	for (c = 0; c < 256; c++) {
		total += w[c];
		present += w[c] != 0;
	}
	n = nwant < present ? nwant : present;
	*nr = n;
	if (n < 2)
		return 0;
	r[0].lo = 0;
	for (c = 0; c < 256 && i + 1 < n; c++) {
		if (!w[c])
			continue;
		acc += w[c];
		seen++;
		/* close range i at c once it holds its share, or when the bytes left are just
		 * enough for one per range left */
		if ((double)acc * (double)n >= (double)total * (double)(i + 1) ||
		    present - seen == n - 1 - i) {
			r[i].hi = c + 1;
			r[++i].lo = c + 1;
		}
	}
	r[n - 1].hi = 256;
	for (i = 0; i < n; i++)
		r[i].clen = clen;
	return 0;
}

/* Initialises the pool's mutex and the stream's mutex and condition; 0, or -1 with none
 * left initialised. */
static int sync_init(pthread_mutex_t *pmu, pthread_mutex_t *smu, pthread_cond_t *cv)
{
	if (pthread_mutex_init(pmu, NULL))
		return -1;
	if (pthread_mutex_init(smu, NULL)) {
		pthread_mutex_destroy(pmu);
		return -1;
	}
	if (pthread_cond_init(cv, NULL)) {
		pthread_mutex_destroy(smu);
		pthread_mutex_destroy(pmu);
		return -1;
	}
	return 0;
}

/*
 * Writes the keys in parts (see above), in about nwant ranges. Returns 0, an error (message
 * in err), or 1 when the map does not suit (fewer than 2 ranges): the caller then writes
 * serially.
 */
static int write_parts(struct pkb_writer *w, const pm_map *map, const struct wlayout *l,
		       size_t nwant, unsigned threads, struct wprog *wp, struct pkb_err *err)
{
	uint8_t *cp = NULL, *root = NULL;
	size_t clen = 0, i, nranges = 0;
	struct wrange *r = NULL;
	struct wstream st;
	struct wpool pool;
	uint64_t val = 0;
	bool has_val, writer;
	pthread_t wt;
	long t;
	int rc;

	memset(&st, 0, sizeof(st));
	pool.n = 0;
	if (sync_init(&pool.mu, &st.mu, &st.cv))
		return 1; /* no threads to be had: the serial way */
	rc = common_prefix(map, l, &cp, &clen);
	if (rc <= 0) {
		if (rc < 0)
			seterr(err, "%s: out of memory", w->path);
		rc = rc < 0 ? rc : 1;
		goto out;
	}
	/* the root's value: key C, in the subtrie that holds it */
	root = malloc(l->ppl + clen + 1);
	r = calloc(nwant, sizeof(*r));
	if (!root || !r || plan_ranges(map, l, cp, clen, nwant, r, &nranges)) {
		rc = PKB_ENOMEM;
		seterr(err, "%s: out of memory", w->path);
		goto out;
	}
	if (nranges < 2) {
		rc = 1;
		goto out;
	}
	sub_path(l, l->hash ? pme_hash_partition(cp, clen, l->hash) : 0, cp, clen, root);
	has_val = pm_map_get(map, root, l->ppl + clen, &val);
	st.w = w;
	st.r = r;
	st.pool = &pool;
	st.nranges = nranges;
	/* without a thread of its own, the writer runs after the building */
	writer = !pthread_create(&wt, NULL, stream_main, &st);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
	for (t = 0; t < (long)nranges; t++) {
		bool skip = stream_stopped(&st);

		if (!skip)
			write_range(map, l, cp, &r[t], &pool, w->path, wp);
		stream_done(&st, (size_t)t, skip);
	}
	if (writer)
		pthread_join(wt, NULL);
	else
		(void)stream_main(&st);
	for (i = 0; i < nranges; i++) {
		if (r[i].rc) {
			rc = r[i].rc;
			*err = r[i].err;
			goto out;
		}
	}
	if (st.rc) {
		rc = st.rc;
		*err = st.err;
		goto out;
	}
	rc = pkb_writer_join_finish(w, cp, clen, has_val, val, err);
out:
	if (r)
		for (i = 0; i < nranges; i++)
			wrange_free(&r[i]);
	pool_free(&pool);
	pthread_cond_destroy(&st.cv);
	pthread_mutex_destroy(&st.mu);
	pthread_mutex_destroy(&pool.mu);
	free(r);
	free(root);
	free(cp);
	return rc;
}

/* Writes the trie in one piece, streamed through w's builder: the union of the hash scheme's
 * partitions, or the prefix scheme's map (its keys are the user keys); string values go to
 * the heap on the way. Returns 0 or an error (message in err). */
static int write_union(struct pkb_writer *w, const pm_map *map, const struct wlayout *l,
		       pkb_blob_fn blob, void *blob_ud, struct wprog *wp, struct pkb_err *err)
{
	struct wtick tick;
	struct walk_check ck;
	const uint8_t **paths = NULL;
	uint8_t *pbuf = NULL;
	size_t *lens = NULL;
	uint64_t kb = 0;
	int rc;

	memset(&ck, 0, sizeof(ck));
	if (w->blob) {
		ck.w = w;
		ck.blob = blob;
		ck.blob_ud = blob_ud;
	}
	ck.parts = l->check;
	rc = walk_paths(l, NULL, 0, 0, &pbuf, &paths, &lens);
	set_tick(w->b, &tick, wp);
	if (!rc)
		rc = pm_snap_builder_add_union(w->b, map, paths, lens, l->nsub, walk_fn(&ck), &ck,
					       &kb);
	pm_snap_builder_set_tick(w->b, NULL, NULL); /* tick is this call's */
	if (rc == PM_SNAP_ESINK) {
		rc = pm_snap_builder_sink_error(w->b);
		seterr(err, "cannot write %s: %s", w->path, pkb_strerror(rc));
	} else if (rc) {
		rc = union_error(rc, &ck, w->path, err);
	} else {
		w->count = pm_snap_builder_count(w->b);
		w->key_bytes = kb;
		progress_add(&tick, w->count);
	}
	free(ck.key);
	free(pbuf);
	free(paths);
	free(lens);
	return rc;
}

int pkb_write(const char *path, const pm_map *map, const struct pkb_meta *meta, pkb_blob_fn blob,
	      void *blob_ud, const struct pkb_write_opts *opts, struct pkb_err *err)
{
	struct wprog wp = {opts ? opts->cancel : NULL, opts ? opts->progress : NULL,
			   opts ? opts->progress_arg : NULL, 0, ATOMIC_FLAG_INIT};
	struct pkb_writer *w;
	struct wlayout l;
	size_t nranges;
	unsigned threads = opts && opts->threads ? opts->threads : (unsigned)omp_get_max_threads();
	int rc;

	if (!map || !meta) {
		seterr(err, "pkb_write: invalid argument");
		return PKB_EINVAL;
	}
	if (pkb_type_is_blob(&meta->value_type) && !blob) {
		seterr(err, "%s: string/opaque values need a value accessor", path);
		return PKB_EINVAL;
	}
	rc = pkb_writer_open(path, meta, opts, &w, err);
	if (rc)
		return rc;
	/* In parts when the values are numbers and the image fits the memory budget, on one
	 * thread too (the writer thread then writes a range to the file while the next is
	 * built); ranges: up to 8 per thread for balance (each range walks every subtrie, so
	 * more cost more), at most 256 and a budget of subtries x ranges seeks; write_parts
	 * cuts them by weight. */
	layout_of(meta, opts, &l);
	nranges = opts && opts->parts ? opts->parts : WRITE_RANGES_PER_THREAD * (size_t)threads;
	if (!(opts && opts->parts) && nranges > ((size_t)1 << 20) / l.nsub)
		nranges = ((size_t)1 << 20) / l.nsub;
	if (nranges > 256)
		nranges = 256;
	if (!(opts && opts->parts) &&
	    (opts && opts->image_hint ? (double)opts->image_hint
				      : (double)pm_map_count(map) * WRITE_IMAGE_BYTES_PER_KEY) >
		(double)(opts && opts->memory ? opts->memory : WRITE_IMAGE_DEFAULT_MEMORY))
		nranges = 1;
	if (w->blob)
		nranges = 1;
	rc = 1;
	if (nranges > 1)
		rc = write_parts(w, map, &l, nranges, threads, &wp, err);
	if (rc > 0)
		rc = write_union(w, map, &l, blob, blob_ud, &wp, err);
	if (!rc && wp.fn) /* the count at last (the walks' ticks may have missed a few) */
		wp.fn(wp.arg, pkb_writer_count(w));
	if (!rc && pkb_writer_count(w) != pm_map_count(map)) {
		rc = PKB_EROUTE;
		seterr(err, "%s: the map holds %zu paths, %llu of them under partition paths", path,
		       pm_map_count(map), (unsigned long long)pkb_writer_count(w));
	}
	if (rc) {
		pkb_writer_abort(w);
		return rc;
	}
	return pkb_writer_commit(w, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Reader */

struct pkb {
	char *path;		  /* as given */
	const uint8_t *base;	  /* the file's bytes */
	size_t len;		  /* their number */
	bool mapped;		  /* base is an mmap of len bytes */
	struct pkb_info info;	  /* header and meta */
	struct pkb_input *inputs; /* info.inputs */
	char *names;		  /* their names, NUL-separated */
	pm_snap snap;		  /* the trie section */
	uint64_t meta_off;	  /* section offsets */
	uint64_t trie_off;	  /* ... */
	uint64_t heap_off;	  /* ... */
};

void pkb_close(struct pkb *kb)
{
	if (!kb)
		return;
	if (kb->mapped) {
		unguard_map(kb->base);
		munmap((void *)kb->base, kb->len);
	}
	free(kb->inputs);
	free(kb->names);
	free(kb->path);
	free(kb);
}

const struct pkb_info *pkb_info(const struct pkb *kb)
{
	return &kb->info;
}

const pm_snap *pkb_snap(const struct pkb *kb)
{
	return &kb->snap;
}

void pkb_prefetch(const struct pkb *kb)
{
	if (kb->mapped && kb->len)
		(void)madvise((void *)kb->base, kb->len, MADV_SEQUENTIAL);
}

const char *pkb_path(const struct pkb *kb)
{
	return kb->path;
}

static int parse_meta(struct pkb *kb, struct pkb_err *err)
{
	const uint8_t *m = kb->base + kb->meta_off;
	uint64_t len = kb->info.meta_len, n, p, i, names = 0;
	char *np;

	if (len < 2 * TYPE_BYTES + 8 || !type_get(m, &kb->info.key_type) ||
	    !type_get(m + TYPE_BYTES, &kb->info.value_type) || !key_type_ok(&kb->info.key_type) ||
	    !value_type_ok(&kb->info.value_type))
		goto out_corrupt;
	n = get_le(m + 2 * TYPE_BYTES, 8);
	p = 2 * TYPE_BYTES + 8;
	if (n > (len - p) / 20)
		goto out_corrupt;
	/* First pass: bounds and name bytes. */
	for (i = 0; i < n; i++) {
		uint64_t l;

		if (len - p < 20)
			goto out_corrupt;
		l = get_le(m + p + 16, 4);
		if (l > len - p - 20 || memchr(m + p + 20, 0, (size_t)l))
			goto out_corrupt;
		names += l + 1;
		p += 20 + l;
	}
	if (p != len)
		goto out_corrupt;
	kb->inputs = calloc(n ? n : 1, sizeof(*kb->inputs));
	kb->names = malloc(names ? names : 1);
	if (!kb->inputs || !kb->names) {
		seterr(err, "%s: out of memory", kb->path);
		return PKB_ENOMEM;
	}
	np = kb->names;
	for (i = 0, p = 2 * TYPE_BYTES + 8; i < n; i++) {
		uint64_t l = get_le(m + p + 16, 4);

		kb->inputs[i].bytes = get_le(m + p, 8);
		kb->inputs[i].records = get_le(m + p + 8, 8);
		memcpy(np, m + p + 20, (size_t)l);
		np[l] = 0;
		kb->inputs[i].name = np;
		np += l + 1;
		p += 20 + l;
	}
	kb->info.n_inputs = (size_t)n;
	kb->info.inputs = kb->inputs;
	return 0;
out_corrupt:
	seterr(err, "%s: corrupt KB (bad metadata section)", kb->path);
	return PKB_ECORRUPT;
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

#define VERIFY_HASH_STEP ((size_t)64 << 20) /* bytes checksummed between progress calls */

/* XXH3-64 of p[0..len) (in pieces when progress is asked for: the same hash); *done, the
 * bytes of the pass so far, goes to pg as it grows. */
static uint64_t hash_progress(const uint8_t *p, size_t len, const struct pkb_progress *pg,
			      uint64_t *done)
{
	XXH3_state_t *st = pg && len > VERIFY_HASH_STEP ? XXH3_createState() : NULL;
	uint64_t h;

	if (!st || XXH3_64bits_reset(st) != XXH_OK) {
		h = XXH3_64bits(p, len);
		*done += len;
		if (pg)
			pg->step(pg->arg, *done);
		XXH3_freeState(st);
		return h;
	}
	for (size_t o = 0; o < len; o += VERIFY_HASH_STEP) {
		size_t n = len - o < VERIFY_HASH_STEP ? len - o : VERIFY_HASH_STEP;

		(void)XXH3_64bits_update(st, p + o, n);
		*done += n;
		pg->step(pg->arg, *done);
	}
	h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return h;
}

/* The three section checksums (each with its padding), reported to pg (NULL: none) as one
 * pass over their bytes. Returns 0 or PKB_ECHECKSUM naming the section in *err. */
static int check_sums(const struct pkb *kb, const struct pkb_progress *pg, struct pkb_err *err)
{
	const struct pkb_info *in = &kb->info;
	const struct {
		const char *name;
		uint64_t off, len, sum;
	} sec[] = {{"meta", kb->meta_off, align8(in->meta_len), in->meta_sum},
		   {"trie", kb->trie_off, in->trie_len, in->trie_sum},
		   {"heap", kb->heap_off, align8(in->heap_len), in->heap_sum}};
	uint64_t done = 0;

	if (pg)
		pg->phase(pg->arg, "sums", "bytes", sec[0].len + sec[1].len + sec[2].len);
	for (size_t i = 0; i < sizeof(sec) / sizeof(sec[0]); i++) {
		if (hash_progress(kb->base + sec[i].off, (size_t)sec[i].len, pg, &done) !=
		    sec[i].sum) {
			seterr(err, "%s: corrupt KB (%s section checksum mismatch)", kb->path,
			       sec[i].name);
			return PKB_ECHECKSUM;
		}
	}
	return 0;
}

/* Checks the header and the section layout, parses the meta section, opens the trie. */
static int parse(struct pkb *kb, unsigned flags, struct pkb_err *err)
{
	const uint8_t *h = kb->base;
	const char *path = kb->path;
	struct pkb_info *in = &kb->info;
	uint64_t version, hsize, fflags, meta_off, trie_off, heap_off, len = kb->len;
	int rc;

	if (len < 8 || memcmp(h, kb_magic, 8)) {
		if (len < 8 && !memcmp(h, kb_magic, (size_t)len)) {
			seterr(err, "%s: truncated KB file (%llu bytes)", path,
			       (unsigned long long)len);
			return PKB_ETRUNC;
		}
		seterr(err, "%s: not a KB file (no KB magic number)", path);
		return PKB_EFOREIGN;
	}
	if (len < PKB_HEADER_SIZE) {
		seterr(err, "%s: truncated KB file (%llu bytes, header needs %d)", path,
		       (unsigned long long)len, PKB_HEADER_SIZE);
		return PKB_ETRUNC;
	}
	version = get_le(h + H_VERSION, 4);
	if (XXH3_64bits(h, H_SUM) != get_le(h + H_SUM, 8)) {
		if (version > PKB_VERSION) {
			seterr(err, "%s: KB format version %llu is newer than this program's (%d)",
			       path, (unsigned long long)version, PKB_VERSION);
			return PKB_EVERSION;
		}
		seterr(err, "%s: corrupt KB (header checksum mismatch)", path);
		return PKB_ECHECKSUM;
	}
	hsize = get_le(h + H_HSIZE, 4);
	fflags = get_le(h + H_FLAGS, 4);
	if (version > PKB_VERSION || fflags) {
		seterr(err,
		       "%s: KB format version %llu (flags %#llx) is newer than this program's (%d)",
		       path, (unsigned long long)version, (unsigned long long)fflags, PKB_VERSION);
		return PKB_EVERSION;
	}
	if (version == 0 || hsize != PKB_HEADER_SIZE || get_le(h + 28, 4) ||
	    !all_zero(h + H_RESERVED, H_SUM - H_RESERVED))
		goto out_corrupt;
	in->version = (uint32_t)version;
	in->checksum = get_le(h + H_SUM, 8);
	in->scheme = (enum pme_scheme)get_le(h + H_SCHEME, 4);
	in->partitions = (uint32_t)get_le(h + H_PARTS, 4);
	in->count = get_le(h + H_COUNT, 8);
	in->key_bytes = get_le(h + H_KEYBYTES, 8);
	in->file_len = get_le(h + H_FILELEN, 8);
	in->meta_len = get_le(h + H_META_LEN, 8);
	in->trie_len = get_le(h + H_TRIE_LEN, 8);
	in->heap_len = get_le(h + H_HEAP_LEN, 8);
	in->meta_sum = get_le(h + H_META_SUM, 8);
	in->trie_sum = get_le(h + H_TRIE_SUM, 8);
	in->heap_sum = get_le(h + H_HEAP_SUM, 8);
	meta_off = get_le(h + H_META_OFF, 8);
	trie_off = get_le(h + H_TRIE_OFF, 8);
	heap_off = get_le(h + H_HEAP_OFF, 8);
	if (get_le(h + H_SCHEME, 4) > PME_SCHEME_PREFIX || get_le(h + H_PARTS, 4) > UINT32_MAX ||
	    !partitions_ok(in->scheme, in->partitions))
		goto out_corrupt;
	if (in->file_len > len) {
		seterr(err, "%s: truncated KB file (%llu of %llu bytes)", path,
		       (unsigned long long)len, (unsigned long long)in->file_len);
		return PKB_ETRUNC;
	}
	if (in->file_len < len) {
		seterr(err, "%s: corrupt KB (%llu bytes after its end)", path,
		       (unsigned long long)(len - in->file_len));
		return PKB_ECORRUPT;
	}
	/* The layout is fixed: every section where the previous one ends, 8-aligned. */
	if (meta_off != PKB_HEADER_SIZE || in->meta_len > len || in->trie_len > len ||
	    in->heap_len > len || trie_off != meta_off + align8(in->meta_len) || in->trie_len % 8 ||
	    heap_off != trie_off + in->trie_len || in->file_len != heap_off + align8(in->heap_len))
		goto out_corrupt;
	kb->meta_off = meta_off;
	kb->trie_off = trie_off;
	kb->heap_off = heap_off;
	rc = parse_meta(kb, err);
	if (rc)
		return rc;
	if (!pkb_type_is_blob(&in->value_type) ? in->heap_len != 0 : in->heap_len / 4 < in->count)
		goto out_corrupt;
	if (flags & PKB_OPEN_CHECKSUM) {
		rc = check_sums(kb, NULL, err);
		if (rc)
			return rc;
	}
	rc = pm_snap_open(&kb->snap, h + trie_off, (size_t)in->trie_len, 0);
	if (rc) {
		seterr(err, "%s: corrupt KB (trie section: %s)", path, pm_snap_strerror(rc));
		return rc == PM_SNAP_EVERSION ? PKB_EVERSION : PKB_ECORRUPT;
	}
	if (kb->snap.count != in->count || kb->snap.max_key > in->key_bytes)
		goto out_corrupt;
	return 0;
out_corrupt:
	seterr(err, "%s: corrupt KB (inconsistent header or metadata)", path);
	return PKB_ECORRUPT;
}

int pkb_open_mem(const void *data, size_t len, const char *name, unsigned flags, struct pkb **out,
		 struct pkb_err *err)
{
	struct pkb *kb;
	int rc;

	if ((!data && len) || !out)
		return PKB_EINVAL;
	kb = calloc(1, sizeof(*kb));
	if (!kb || !(kb->path = strdup(name ? name : "(memory)"))) {
		free(kb);
		seterr(err, "%s: out of memory", name ? name : "(memory)");
		return PKB_ENOMEM;
	}
	kb->base = data ? data : (const uint8_t *)"";
	kb->len = len;
	rc = parse(kb, flags, err);
	if (rc) {
		pkb_close(kb);
		return rc;
	}
	*out = kb;
	return 0;
}

int pkb_open(const char *path, unsigned flags, struct pkb **out, struct pkb_err *err)
{
	struct pkb *kb = NULL;
	struct stat st;
	void *p = NULL;
	int fd, rc;

	/* O_NONBLOCK: a FIFO would block the open itself (refused as not regular below) */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		seterr(err, "%s: cannot open: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st)) {
		rc = -errno;
		seterr(err, "%s: cannot stat: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		seterr(err, "%s: not a KB file (not a regular file)", path);
		close(fd);
		return PKB_EFOREIGN;
	}
	if (st.st_size > 0) {
		p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			rc = -errno;
			seterr(err, "%s: cannot map: %s", path, strerror(errno));
			close(fd);
			return rc;
		}
	}
	close(fd);
	if (p) /* from now: pkb_open_mem may read the whole file (checksums) */
		guard_map(p, &st, path);
	rc = pkb_open_mem(p, (size_t)st.st_size, path, flags, &kb, err);
	if (rc) {
		if (p) {
			unguard_map(p);
			munmap(p, (size_t)st.st_size);
		}
		return rc;
	}
	kb->mapped = p != NULL;
	*out = kb;
	return 0;
}

int pkb_get(const struct pkb *kb, const uint8_t *key, size_t len, uint64_t *word)
{
	int rc = pm_snap_get(&kb->snap, key, len, word);

	if (rc == PM_ENOTFOUND)
		return PKB_ENOTFOUND;
	return rc ? PKB_ECORRUPT : 0;
}

int pkb_blob(const struct pkb *kb, uint64_t word, const uint8_t **data, size_t *len)
{
	const uint8_t *heap = kb->base + kb->heap_off;
	uint64_t hl = kb->info.heap_len, l;

	if (hl < 4 || word > hl - 4)
		return PKB_ECORRUPT;
	l = get_le(heap + word, 4);
	if (l > hl - 4 - word)
		return PKB_ECORRUPT;
	*data = heap + word + 4;
	*len = (size_t)l;
	return 0;
}

/* Is a key of this length possible for the key type? */
static bool key_fits(const struct pio_type *t, size_t len)
{
	if (t->cls == PIO_V_INT || t->cls == PIO_V_UINT)
		return len == t->width;
	if (t->cls == PIO_V_STRING && !t->vlen)
		return len <= t->width;
	if (t->cls == PIO_V_OPAQUE)
		return len == t->width;
	return true;
}

int pkb_verify(const struct pkb *kb, pm_snap_stats *st, const struct pkb_progress *pg,
	       struct pkb_err *err)
{
	const struct pkb_info *in = &kb->info;
	const uint8_t *h = kb->base;
	pm_snap_stats s;
	pm_snap_iter *it = NULL;
	char msg[256] = "";
	const uint8_t *k;
	size_t len;
	uint64_t v, expect = 0, nkeys = 0;
	bool blob = pkb_type_is_blob(&in->value_type);
	int rc;

	rc = check_sums(kb, pg, err);
	if (rc)
		return rc;
	if (!all_zero(h + kb->meta_off + in->meta_len, align8(in->meta_len) - in->meta_len) ||
	    !all_zero(h + kb->heap_off + in->heap_len, align8(in->heap_len) - in->heap_len)) {
		seterr(err, "%s: corrupt KB (non-zero padding)", kb->path);
		return PKB_ECORRUPT;
	}
	if (pg)
		pg->phase(pg->arg, "trie", "keys", in->count);
	rc = pm_snap_verify_progress(&kb->snap, false, NULL, NULL, pg ? pg->step : NULL,
				     pg ? pg->arg : NULL, &s, msg, sizeof(msg));
	if (rc) {
		seterr(err, "%s: corrupt KB (trie: %s)", kb->path,
		       rc == PM_ENOMEM ? "out of memory" : msg);
		return rc == PM_ENOMEM		 ? PKB_ENOMEM
		       : rc == PM_SNAP_ECHECKSUM ? PKB_ECHECKSUM
						 : PKB_ECORRUPT;
	}
	if (s.key_bytes != in->key_bytes) {
		seterr(err, "%s: corrupt KB (key bytes %llu, header says %llu)", kb->path,
		       (unsigned long long)s.key_bytes, (unsigned long long)in->key_bytes);
		return PKB_ECORRUPT;
	}
	if (pg) {
		pg->step(pg->arg, s.values);
		pg->phase(pg->arg, "keys", "keys", in->count);
	}
	rc = pm_snap_iter_create(&kb->snap, NULL, NULL, &it);
	if (rc) {
		seterr(err, "%s: out of memory", kb->path);
		return PKB_ENOMEM;
	}
	while ((rc = pm_snap_iter_next(it, &k, &len, &v)) == 1) {
		if (pg && ++nkeys % PM_SNAP_PROGRESS_STEP == 0)
			pg->step(pg->arg, nkeys);
		if (!key_fits(&in->key_type, len)) {
			seterr(err, "%s: corrupt KB (a key of %zu bytes does not fit the key type)",
			       kb->path, len);
			rc = PKB_ECORRUPT;
			break;
		}
		if (blob) {
			const uint8_t *d;
			size_t dl;

			if (v != expect || pkb_blob(kb, v, &d, &dl)) {
				seterr(err,
				       "%s: corrupt KB (heap entry at %llu out of order or out of "
				       "bounds)",
				       kb->path, (unsigned long long)v);
				rc = PKB_ECORRUPT;
				break;
			}
			expect += 4 + dl;
		}
	}
	pm_snap_iter_destroy(it);
	if (rc < 0) {
		if (rc != PKB_ECORRUPT)
			seterr(err, "%s: corrupt KB (trie walk failed)", kb->path);
		return rc == PM_ENOMEM ? PKB_ENOMEM : PKB_ECORRUPT;
	}
	if (expect != in->heap_len) {
		seterr(err, "%s: corrupt KB (heap holds %llu bytes, values use %llu)", kb->path,
		       (unsigned long long)in->heap_len, (unsigned long long)expect);
		return PKB_ECORRUPT;
	}
	if (pg)
		pg->step(pg->arg, in->count);
	if (st)
		*st = s;
	return 0;
}

int pkb_load(const struct pkb *kb, pm_map *map, pkb_store_fn store, void *ud, struct pkb_err *err)
{
	const struct pkb_info *in = &kb->info;
	pm_snap_iter *it = NULL;
	uint8_t *path = NULL;
	size_t cap = 0;
	const uint8_t *k;
	size_t len;
	uint64_t v;
	bool hash = in->scheme == PME_SCHEME_HASH, blob = pkb_type_is_blob(&in->value_type);
	int rc;

	rc = pm_snap_iter_create(&kb->snap, NULL, NULL, &it);
	if (rc)
		goto out_nomem;
	while ((rc = pm_snap_iter_next(it, &k, &len, &v)) == 1) {
		const uint8_t *p = k;
		size_t plen = len;

		if (blob && store) {
			const uint8_t *d;
			size_t dl;

			rc = pkb_blob(kb, v, &d, &dl);
			if (rc) {
				seterr(err, "%s: corrupt KB (value out of the heap)", kb->path);
				break;
			}
			rc = store(ud, d, dl, &v);
			if (rc) {
				seterr(err, "%s: cannot store a value (%s)", kb->path,
				       pkb_strerror(rc));
				break;
			}
		}
		if (hash) {
			if (len + PME_PART_PATH_LEN > cap) {
				uint8_t *np = realloc(path, len + PME_PART_PATH_LEN + 64);

				if (!np) {
					rc = PKB_ENOMEM;
					break;
				}
				path = np;
				cap = len + PME_PART_PATH_LEN + 64;
			}
			pme_partition_path(pme_hash_partition(k, len, in->partitions), path);
			memcpy(path + PME_PART_PATH_LEN, k, len);
			p = path;
			plen = len + PME_PART_PATH_LEN;
		}
		rc = pm_map_set(map, p, plen, v, NULL);
		if (rc < 0) {
			rc = PKB_ENOMEM;
			break;
		}
	}
	pm_snap_iter_destroy(it);
	free(path);
	if (rc == PKB_ENOMEM || rc == PM_ENOMEM)
		goto out_nomem;
	if (rc == PM_SNAP_ECORRUPT) {
		seterr(err, "%s: corrupt KB (damaged trie)", kb->path);
		return PKB_ECORRUPT;
	}
	return rc;
out_nomem:
	seterr(err, "%s: out of memory", kb->path);
	return PKB_ENOMEM;
}

/* ------------------------------------------------------------------------------------------ */
/* Algebra */

int pkb_dup_parse(const char *s, enum pkb_dup *out)
{
	static const char *const names[] = {"last", "first", "error", "sum", "min", "max"};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i])) {
			*out = (enum pkb_dup)i;
			return 0;
		}
	return PKB_EINVAL;
}

struct cur {
	pm_snap_iter *it;   /* over one input */
	const uint8_t *key; /* current key, NULL at the end */
	size_t len;	    /* its length */
	uint64_t val;	    /* its value word */
};

static int cur_next(struct cur *c)
{
	int rc = pm_snap_iter_next(c->it, &c->key, &c->len, &c->val);

	if (rc == 0)
		c->key = NULL;
	return rc < 0 ? rc : 0;
}

static double as_double(uint64_t w)
{
	double d;

	memcpy(&d, &w, sizeof(d));
	return d;
}

static uint64_t from_double(double d)
{
	uint64_t w;

	memcpy(&w, &d, sizeof(w));
	return w;
}

/* Escapes a key for a message: printable ASCII as is, else \xHH. */
void pkb_key_text(const uint8_t *k, size_t len, char *buf, size_t size)
{
	size_t i, o = 0;

	for (i = 0; i < len && o + 5 < size; i++) {
		if (k[i] >= 32 && k[i] < 127 && k[i] != '\\' && k[i] != '"')
			buf[o++] = (char)k[i];
		else
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", k[i]);
	}
	if (i < len && o + 4 < size)
		o += (size_t)snprintf(buf + o, size - o, "...");
	buf[o] = '\0';
}

bool pkb_num_add(enum pio_vtype cls, uint64_t a, uint64_t b, uint64_t *sum)
{
	int64_t s;

	if (cls == PIO_V_FLOAT) {
		*sum = from_double(as_double(a) + as_double(b));
		return true;
	}
	if (cls == PIO_V_UINT)
		return !__builtin_add_overflow(a, b, sum);
	if (__builtin_add_overflow((int64_t)a, (int64_t)b, &s)) {
		*sum = a + b;
		return false;
	}
	*sum = (uint64_t)s;
	return true;
}

bool pkb_num_less(enum pio_vtype cls, uint64_t a, uint64_t b)
{
	if (cls == PIO_V_FLOAT)
		return as_double(a) < as_double(b);
	if (cls == PIO_V_INT)
		return (int64_t)a < (int64_t)b;
	return a < b;
}

/* Combines b into *acc (acc from an earlier input than b) under the policy. */
static int combine_num(enum pkb_dup dup, const struct pio_type *t, uint64_t *acc, uint64_t b)
{
	switch (dup) {
	case PKB_DUP_LAST:
		*acc = b;
		return 0;
	case PKB_DUP_FIRST:
		return 0;
	case PKB_DUP_ERROR:
		return *acc == b ? 0 : PKB_EDUP;
	case PKB_DUP_SUM:
		return pkb_num_add(t->cls, *acc, b, acc) ? 0 : PKB_ESUM;
	case PKB_DUP_MIN:
	case PKB_DUP_MAX:
		/* b wins only when below (min) or above (max) acc, as in the ingest: no
		 * comparison with a NaN holds, and -0.0 and 0.0 are equal */
		if (dup == PKB_DUP_MIN ? pkb_num_less(t->cls, b, *acc)
				       : pkb_num_less(t->cls, *acc, b))
			*acc = b;
		return 0;
	}
	return PKB_EINVAL;
}

int pkb_combine(enum pkb_op op, struct pkb *const *kbs, size_t n, enum pkb_dup dup,
		enum pme_scheme scheme, uint32_t partitions, const char *path,
		const struct pkb_write_opts *opts, struct pkb_err *err)
{
	struct pkb_meta meta;
	struct pkb_input *inputs = NULL;
	struct cur *c = NULL;
	struct pkb_writer *w = NULL;
	struct pio_type wide, wkey;
	const struct pio_type *vt;
	uint64_t read = 0, next_tick = PKB_PROGRESS_STEP; /* keys read from the inputs */
	size_t i, j, ni = 0;
	bool blob;
	int rc = 0;

	if (!n || !kbs || !path) {
		seterr(err, "pkb_combine: invalid argument");
		return PKB_EINVAL;
	}
	/* Types of one class each, widened as one ingest over the inputs of all would
	 * (pio_type_merge: the first input's, made wide enough for every other's). A
	 * subtraction keeps A's keys and values, and their types: the others' keys need only
	 * be comparable, their values do not matter. */
	wide = kbs[0]->info.value_type;
	wkey = kbs[0]->info.key_type;
	for (i = 1; i < n; i++) {
		struct pio_type k = wkey;

		if (pio_type_merge(op == PKB_OP_SUBTRACT ? &k : &wkey, &kbs[i]->info.key_type,
				   true) ||
		    (op != PKB_OP_SUBTRACT &&
		     pio_type_merge(&wide, &kbs[i]->info.value_type, false))) {
			seterr(err, "%s and %s have different key or value types", kbs[0]->path,
			       kbs[i]->path);
			return PKB_ETYPE;
		}
	}
	vt = &wide;
	blob = pkb_type_is_blob(vt);
	if (blob && dup >= PKB_DUP_SUM) {
		seterr(err, "%s: string and opaque values cannot be combined by sum, min or max",
		       kbs[0]->path);
		return PKB_EVALUE;
	}
	for (i = 0; i < n; i++)
		ni += kbs[i]->info.n_inputs;
	inputs = calloc(ni ? ni : 1, sizeof(*inputs));
	c = calloc(n, sizeof(*c));
	if (!inputs || !c) {
		rc = PKB_ENOMEM;
		seterr(err, "%s: out of memory", path);
		goto out_free;
	}
	for (i = 0, ni = 0; i < n; i++)
		for (j = 0; j < kbs[i]->info.n_inputs; j++)
			inputs[ni++] = kbs[i]->info.inputs[j];
	meta.scheme = scheme;
	meta.partitions = partitions;
	meta.key_type = wkey;
	meta.value_type = *vt;
	if (dup == PKB_DUP_SUM && op != PKB_OP_SUBTRACT)
		meta.value_type.width = 8; /* sums are 64-bit: they need not fit a narrower type */
	meta.inputs = inputs;
	meta.n_inputs = ni;
	for (i = 0; i < n; i++) {
		rc = pm_snap_iter_create(&kbs[i]->snap, NULL, NULL, &c[i].it);
		if (!rc)
			rc = cur_next(&c[i]);
		if (rc)
			goto out_input;
	}
	rc = pkb_writer_open(path, &meta, opts, &w, err);
	if (rc)
		goto out_free;
	for (;;) {
		const uint8_t *mk = NULL, *blob_data = NULL;
		size_t ml = 0, holders = 0, first = n, blob_len = 0, own = 0;
		uint64_t acc = 0;
		bool skip; /* the values of the key are not combined */

		for (i = 0; i < n; i++) {
			int cmp;

			if (!c[i].key)
				continue;
			cmp = mk ? pme_key_cmp(c[i].key, c[i].len, mk, ml) : -1;
			if (cmp < 0) {
				mk = c[i].key;
				ml = c[i].len;
				own = i;
			}
		}
		if (!mk)
			break;
		/* An intersection combines the values of a key only when every input holds it
		 * (a key it drops cannot fail --on-duplicate error). */
		skip = op == PKB_OP_SUBTRACT;
		for (i = 0; i < n && op == PKB_OP_INTERSECT && !skip; i++)
			skip = !c[i].key || pme_key_cmp(c[i].key, c[i].len, mk, ml);
		/* Inputs holding the smallest key, in input order. */
		for (i = 0; i < n; i++) {
			const uint8_t *d = NULL;
			size_t dl = 0;

			if (!c[i].key || pme_key_cmp(c[i].key, c[i].len, mk, ml))
				continue;
			if (blob && (op != PKB_OP_SUBTRACT || i == 0)) {
				rc = pkb_blob(kbs[i], c[i].val, &d, &dl);
				if (rc) {
					seterr(err, "%s: corrupt KB (value out of the heap)",
					       kbs[i]->path);
					goto out_free;
				}
			}
			if (!holders++) {
				first = i;
				acc = c[i].val;
				blob_data = d;
				blob_len = dl;
				continue;
			}
			if (skip)
				continue;
			if (blob) {
				if (dup == PKB_DUP_LAST) {
					blob_data = d;
					blob_len = dl;
				} else if (dup == PKB_DUP_ERROR &&
					   (dl != blob_len || (dl && memcmp(d, blob_data, dl)))) {
					rc = PKB_EDUP;
				}
			} else {
				rc = combine_num(dup, vt, &acc, c[i].val);
			}
			if (rc) {
				char kt[256];

				pkb_key_text(mk, ml, kt, sizeof(kt));
				if (rc == PKB_ESUM)
					seterr(err,
					       "%s: the sum of key \"%s\" leaves the %s range when "
					       "%s adds its value (--on-duplicate sum: integers do "
					       "not wrap)",
					       path, kt, vt->cls == PIO_V_INT ? "int64" : "uint64",
					       kbs[i]->path);
				else
					seterr(err,
					       "%s: key \"%s\" (%zu bytes) is in %s and %s with "
					       "different values (--on-duplicate error)",
					       path, kt, ml, kbs[first]->path, kbs[i]->path);
				goto out_free;
			}
		}
		read += holders;
		if (opts && opts->progress && read >= next_tick) {
			next_tick = read + PKB_PROGRESS_STEP;
			opts->progress(opts->progress_arg, read);
		}
		if (op == PKB_OP_MERGE || (op == PKB_OP_INTERSECT && holders == n) ||
		    (op == PKB_OP_SUBTRACT && first == 0 && holders == 1)) {
			/* mk points into an iterator's buffer: add before moving any. */
			rc = pkb_writer_add(w, mk, ml, acc, blob_data, blob_len, err);
			if (rc)
				goto out_free;
		}
		/* mk points into the buffer of input own: move the others first. */
		for (i = 0; i < n; i++) {
			if (i == own || !c[i].key || pme_key_cmp(c[i].key, c[i].len, mk, ml))
				continue;
			rc = cur_next(&c[i]);
			if (rc)
				goto out_input_i;
		}
		i = own;
		rc = cur_next(&c[i]);
		if (rc)
			goto out_input_i;
		continue;
	out_input_i:
		seterr(err, "%s: corrupt KB (damaged trie)", kbs[i]->path);
		rc = rc == PM_ENOMEM ? PKB_ENOMEM : PKB_ECORRUPT;
		goto out_free;
	}
	if (opts && opts->progress)
		opts->progress(opts->progress_arg, read);
	rc = pkb_writer_commit(w, err);
	w = NULL;
	goto out_free;
out_input:
	seterr(err, "%s: %s", kbs[i]->path,
	       rc == PM_ENOMEM ? "out of memory" : "corrupt KB (damaged trie)");
	rc = rc == PM_ENOMEM ? PKB_ENOMEM : PKB_ECORRUPT;
out_free:
	pkb_writer_abort(w);
	if (c)
		for (i = 0; i < n; i++)
			pm_snap_iter_destroy(c[i].it);
	free(c);
	free(inputs);
	return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Update lock */

/*
 * The lock is flock(2) on the KB file itself, not on a lock file beside it: nothing is left
 * behind, and the kernel releases it when its holder dies (a lock file of a job killed by
 * SLURM would stay and need removing by hand). The holder replaces the file by a rename, so
 * the lock a waiter obtains may be on a file the path no longer names: the waiter then
 * checks the path and locks the file it names now. Waiting polls (LOCK_NB), so that a cancel
 * (SIGINT, SIGTERM from a job's time limit) ends it. On NFS, Linux emulates flock by a
 * whole-file fcntl lock, released only with the descriptor that took it (as flock), but an
 * exclusive one needs the file open for writing: the file is opened so where permitted.
 */
#define LOCK_POLL_NS 100000000L /* 0.1 s */

struct pkb_lock {
	int fd;
};

int pkb_lock_update(const char *path, volatile sig_atomic_t *cancel,
		    void (*waiting)(void *arg, const char *path), void *arg, struct pkb_lock **out,
		    struct pkb_err *err)
{
	bool told = false;
	struct stat a, b;
	int fd, e;

	*out = NULL;
	for (;;) {
		/* for writing where allowed: NFS clients lock by fcntl, which wants a writable
		 * descriptor for an exclusive lock (EBADF, no lock, from a read-only one) */
		fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM))
			fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			return 0; /* nothing to lock: the open that follows says why */
		if (fstat(fd, &a) || !S_ISREG(a.st_mode)) {
			close(fd);
			return 0;
		}
		while (flock(fd, LOCK_EX | LOCK_NB)) {
			e = errno;
			if (e == EINTR)
				continue;
			if (e != EWOULDBLOCK) {
				close(fd);
				seterr(err, "%s: cannot lock (%s)", path, strerror(e));
				return PKB_ENOLOCK;
			}
			if (!told && waiting)
				waiting(arg, path);
			told = true;
			if (cancel && *cancel) {
				close(fd);
				seterr(err, "%s: interrupted while waiting for its lock", path);
				return PKB_ECANCELED;
			}
			nanosleep(&(struct timespec){0, LOCK_POLL_NS}, NULL);
		}
		/* locked: is it still the file at path? (a holder before replaced it) */
		if (!stat(path, &b) && b.st_dev == a.st_dev && b.st_ino == a.st_ino)
			break;
		close(fd);
	}
	*out = malloc(sizeof(**out));
	if (!*out) {
		close(fd);
		seterr(err, "%s: out of memory", path);
		return PKB_ENOMEM;
	}
	(*out)->fd = fd;
	return 0;
}

void pkb_unlock(struct pkb_lock *l)
{
	if (!l)
		return;
	close(l->fd);
	free(l);
}
