/*
 * gen.c - the synthetic dataset generator behind `pmingest gen`.
 *
 * Record j gets either a new distinct key (number d = distinct keys so far) or, with
 * probability dup_ratio, a repeat of an earlier distinct key chosen uniformly or by a Zipf
 * law. Distinct key number d is a pure function of (options, seed, d): U64, PATH and WORDS
 * keys come from a bijection of d, so they never collide; RANDOM keys are hashed from d
 * (collisions are possible only for very short keys).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pio_internal.h"

#define GEN_SLICE 65536 /* records per writer call */
#define MAX_KEY 512	/* longest generated key */

static const char *const builtin_words[] = {
    "alpha",  "amber",	 "anchor", "apple",  "arrow",	"atlas",   "basin",  "beacon", "birch",
    "blade",  "bloom",	 "bridge", "canyon", "carbon",	"cedar",   "cinder", "cloud",  "comet",
    "coral",  "crane",	 "delta",  "dune",   "echo",	"ember",   "falcon", "fern",   "fjord",
    "flint",  "forest",	 "frost",  "garnet", "glacier", "granite", "harbor", "hazel",  "helix",
    "heron",  "indigo",	 "iris",   "island", "jade",	"juniper", "kelp",   "lagoon", "lantern",
    "lichen", "lotus",	 "lumen",  "maple",  "meadow",	"meteor",  "nebula", "nectar", "oasis",
    "onyx",   "orbit",	 "pebble", "pine",   "prism",	"quartz",  "raven",  "reef",   "ridge",
    "river",  "saffron", "sierra", "solar",  "spruce",	"summit",  "tundra", "umber",  "valley",
    "vertex", "willow",	 "zenith", "zephyr",
};

static const char *const path_projects[] = {"proj", "climate", "genome", "fusion"};
static const char *const path_attrs[] = {
    "attr",  "temperature", "pressure", "density", "mask",   "velocity", "energy", "flux",
    "label", "charge",	    "spin",	"phase",   "weight", "count",	 "error",  "time"};

struct words {
	char **list; /* words, pointing into text or into builtin_words */
	size_t n;    /* how many */
	char *text;  /* file contents, or NULL for the built-in list */
};

static uint64_t mix64(uint64_t x)
{
	/* splitmix64's finaliser: a bijection of 64-bit words. */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t rng_next(uint64_t *s)
{
	*s += 0x9e3779b97f4a7c15ULL;
	return mix64(*s);
}

static double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* A bijection of [0, 2^bits), keyed by seed: xorshifts and odd multipliers mod 2^bits. */
static uint64_t permute(uint64_t x, unsigned bits, uint64_t seed)
{
	uint64_t mask = bits >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << bits) - 1;
	unsigned sh = bits / 2 + 1;

	for (int r = 0; r < 3; r++) {
		x ^= mix64(seed + (uint64_t)r) & mask;
		x ^= x >> sh;
		x = (x * (0x9e3779b97f4a7c15ULL | 1)) & mask;
	}
	return x;
}

static void words_free(struct words *w)
{
	free(w->list);
	free(w->text);
}

static int words_load(const char *file, struct words *w, struct pio_err *err)
{
	const char *path = file ? file : "/usr/share/dict/words";
	FILE *f = fopen(path, "rb");
	size_t len = 0, cap = 0, n = 0;
	char *p;

	memset(w, 0, sizeof(*w));
	if (!f) {
		if (file)
			return pio_seterr(err, PIO_EINVAL, file, NULL,
					  "cannot open the word list: %s", strerror(errno));
		w->list = malloc(sizeof(builtin_words));
		if (!w->list)
			return pio_seterr(err, PIO_ENOMEM, "gen", NULL, "out of memory");
		w->n = sizeof(builtin_words) / sizeof(builtin_words[0]);
		for (size_t i = 0; i < w->n; i++)
			w->list[i] = (char *)builtin_words[i];
		return 0;
	}
	for (;;) {
		size_t got;

		if (len + 4096 + 1 > cap) {
			char *t = realloc(w->text, cap = (cap + 4096) * 2);

			if (!t) {
				fclose(f);
				words_free(w);
				return pio_seterr(err, PIO_ENOMEM, path, NULL, "out of memory");
			}
			w->text = t;
		}
		got = fread(w->text + len, 1, 4096, f);
		len += got;
		if (got < 4096)
			break;
	}
	fclose(f);
	w->text[len] = 0;
	for (size_t i = 0; i < len; i++)
		if (w->text[i] == '\n')
			n++;
	w->list = malloc((n + 1) * sizeof(*w->list));
	if (!w->list) {
		words_free(w);
		return pio_seterr(err, PIO_ENOMEM, path, NULL, "out of memory");
	}
	p = w->text;
	while (*p) {
		char *e = strchr(p, '\n');
		bool ok = true;

		if (e)
			*e = 0;
		for (char *c = p; *c; c++)
			if ((unsigned char)*c <= ' ' || *c == '-')
				ok = false;
		if (ok && *p && strlen(p) < 64)
			w->list[w->n++] = p;
		if (!e)
			break;
		p = e + 1;
	}
	if (w->n == 0) {
		words_free(w);
		return pio_seterr(err, PIO_EINVAL, path, NULL, "the word list holds no words");
	}
	return 0;
}

static unsigned bits_for(uint64_t n)
{
	unsigned b = 1;

	while (b < 64 && ((uint64_t)1 << b) < n)
		b++;
	return b;
}

/* Distinct key number d, in batch encoding, into buf; returns its length. */
static size_t make_key(const struct pio_gen_opts *o, const struct words *w, unsigned bits,
		       uint32_t klen, uint64_t d, uint8_t *buf)
{
	static const char alnum[] =
	    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	char tmp[MAX_KEY + 64];
	size_t len = 0;
	uint64_t x;

	switch (o->key_kind) {
	case PIO_GEN_RANDOM: {
		uint64_t h = mix64(o->seed ^ mix64(d + 1));

		for (uint32_t i = 0; i < klen; i++) {
			if (i % 10 == 0 && i)
				h = mix64(h + i);
			buf[i] = (uint8_t)alnum[h % 62];
			h /= 62;
		}
		return klen;
	}
	case PIO_GEN_U64:
		x = mix64(d + mix64(o->seed));
		for (int i = 0; i < 8; i++)
			buf[i] = (uint8_t)(x >> (56 - 8 * i));
		return 8;
	case PIO_GEN_PATH: {
		unsigned attr, cell, run, proj;
		uint64_t rest;

		x = permute(d, bits, o->seed);
		attr = (unsigned)(x % 16);
		x /= 16;
		cell = (unsigned)(x % 100000);
		x /= 100000;
		run = (unsigned)(x % 1000);
		x /= 1000;
		proj = (unsigned)(x % 4);
		rest = x / 4;
		if (rest)
			len = (size_t)snprintf(tmp, sizeof(tmp), "/%s%llu/run%03u/cell/%05u/%s",
					       path_projects[proj], (unsigned long long)rest, run,
					       cell, path_attrs[attr]);
		else
			len = (size_t)snprintf(tmp, sizeof(tmp), "/%s/run%03u/cell/%05u/%s",
					       path_projects[proj], run, cell, path_attrs[attr]);
		break;
	}
	default:
		/* Mixed-radix digits of x in base nwords, one word per digit. */
		x = permute(d, bits, o->seed);
		do {
			const char *word = w->list[x % w->n];
			size_t wl = strlen(word);

			if (len + wl + 1 >= MAX_KEY)
				break;
			if (len)
				tmp[len++] = '-';
			memcpy(tmp + len, word, wl);
			len += wl;
			x /= w->n;
		} while (x);
	}
	if (len > MAX_KEY)
		len = MAX_KEY;
	if (klen && len > klen)
		len = klen;
	memcpy(buf, tmp, len);
	return len;
}

/* Rank (0-based) of the repeated key among n distinct keys. */
static uint64_t pick_repeat(double zipf, uint64_t n, uint64_t *rng)
{
	double v, r;

	if (zipf <= 0)
		return rng_next(rng) % n;
	/* Inverse CDF of a continuous power law on [1, n+1): rank 0 is the most frequent. */
	v = rng_unit(rng);
	if (fabs(zipf - 1.0) < 1e-9)
		r = exp(v * log((double)n + 1.0));
	else
		r = pow((pow((double)n + 1.0, 1.0 - zipf) - 1.0) * v + 1.0, 1.0 / (1.0 - zipf));
	if (r < 1)
		r = 1;
	return (uint64_t)r - 1 < n ? (uint64_t)r - 1 : n - 1;
}

int pio_generate(const struct pio_gen_opts *o, struct pio_err *err)
{
	struct pio_type kt = {0}, vt = {0};
	struct pio_writer *wr = NULL;
	struct words words = {0};
	struct pio_batch b;
	uint64_t rng, distinct = 0;
	uint32_t klen;
	unsigned bits;
	int rc;

	if (!o || !o->out.file)
		return pio_seterr(err, PIO_EINVAL, "gen", NULL, "no output file");
	if (!(o->dup_ratio >= 0 && o->dup_ratio <= 1) || !(o->zipf >= 0))
		return pio_seterr(err, PIO_EINVAL, o->out.file, NULL,
				  "dup ratio must be in [0,1] and zipf >= 0");
	klen = o->key_len;
	if (o->key_kind == PIO_GEN_RANDOM && klen == 0)
		klen = 16;
	if (klen > MAX_KEY)
		return pio_seterr(err, PIO_EINVAL, o->out.file, NULL,
				  "key length %u is over the maximum %d", klen, MAX_KEY);
	switch (o->key_kind) {
	case PIO_GEN_U64:
		kt.cls = PIO_V_UINT;
		kt.width = 8;
		break;
	case PIO_GEN_RANDOM:
	case PIO_GEN_PATH:
	case PIO_GEN_WORDS:
		kt.cls = PIO_V_STRING;
		kt.vlen = klen == 0;
		kt.width = klen;
		kt.pad = PIO_PAD_NULLPAD;
		kt.cset = o->key_kind == PIO_GEN_WORDS ? PIO_CSET_UTF8 : PIO_CSET_ASCII;
		break;
	default:
		return pio_seterr(err, PIO_EINVAL, o->out.file, NULL, "unknown key kind");
	}
	switch (o->value_kind) {
	case PIO_GEN_INT64:
		vt.cls = PIO_V_INT;
		vt.width = 8;
		break;
	case PIO_GEN_FLOAT64:
		vt.cls = PIO_V_FLOAT;
		vt.width = 8;
		break;
	case PIO_GEN_STRING:
		vt.cls = PIO_V_STRING;
		vt.vlen = true;
		vt.cset = PIO_CSET_UTF8;
		break;
	default:
		return pio_seterr(err, PIO_EINVAL, o->out.file, NULL, "unknown value kind");
	}
	if (o->key_kind == PIO_GEN_WORDS) {
		rc = words_load(o->words_file, &words, err);
		if (rc)
			return rc;
	}
	pio_batch_init(&b);
	rc = pio_batch_reserve(&b, GEN_SLICE, (size_t)GEN_SLICE * MAX_KEY,
			       o->value_kind == PIO_GEN_STRING ? (size_t)GEN_SLICE * 28 : 0);
	if (rc) {
		rc = pio_seterr(err, rc, o->out.file, NULL, "out of memory");
		goto out_words;
	}
	rc = pio_writer_open(&o->out, &kt, &vt, &wr, err);
	if (rc)
		goto out_batch;
	bits = bits_for(o->records);
	rng = mix64(o->seed ^ 0x5eed5eed5eedULL);
	for (uint64_t j = 0; j < o->records;) {
		size_t n = o->records - j < GEN_SLICE ? (size_t)(o->records - j) : GEN_SLICE;
		size_t kpos = 0, hpos = 0;

		b.key_off[0] = 0;
		for (size_t i = 0; i < n; i++, j++) {
			uint64_t d;

			if (distinct > 0 && o->dup_ratio > 0 && rng_unit(&rng) < o->dup_ratio)
				d = pick_repeat(o->zipf, distinct, &rng);
			else
				d = distinct++;
			kpos += make_key(o, &words, bits, klen, d, b.keys + kpos);
			b.key_off[i + 1] = kpos;
			if (o->value_kind == PIO_GEN_INT64) {
				b.vals[i] = j;
			} else if (o->value_kind == PIO_GEN_FLOAT64) {
				double v = (double)j / 4.0;

				memcpy(&b.vals[i], &v, 8);
			} else {
				char s[24];
				int l = snprintf(s, sizeof(s), "v%llu", (unsigned long long)j);

				b.vals[i] = hpos;
				b.heap[hpos] = (uint8_t)l;
				b.heap[hpos + 1] = b.heap[hpos + 2] = b.heap[hpos + 3] = 0;
				memcpy(b.heap + hpos + 4, s, (size_t)l);
				hpos += 4 + (size_t)l;
			}
		}
		rc = pio_writer_append(wr, n, b.keys, b.key_off, b.vals, b.heap, hpos, err);
		if (!rc && o->progress)
			o->progress(o->progress_arg, j);
		if (!rc && o->cancel && *o->cancel)
			rc = pio_seterr(err, PIO_ECANCELED, o->out.file, NULL,
					"interrupted, nothing written");
		if (rc) {
			pio_writer_abort(wr);
			goto out_batch;
		}
	}
	rc = pio_writer_commit(wr, err);
out_batch:
	pio_batch_free(&b);
out_words:
	words_free(&words);
	return rc;
}
