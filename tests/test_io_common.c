/*
 * test_io_common.c - helpers shared by the io/ test suites.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "test_io_common.h"

const char *fx_dir(void)
{
	const char *d = getenv("PIO_FIXTURES");

	return d && *d ? d : ".";
}

char *fx_slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	size_t len = 0, cap = 4096;
	char *buf;

	if (!f)
		return NULL;
	buf = malloc(cap);
	while (buf) {
		size_t got = fread(buf + len, 1, cap - len - 1, f);

		len += got;
		if (len + 1 < cap)
			break;
		cap *= 2;
		buf = realloc(buf, cap);
	}
	fclose(f);
	if (buf)
		buf[len] = 0;
	return buf;
}

static void field(char **p, char *dst, size_t size, bool path)
{
	char *tab = strchr(*p, '\t');
	size_t len = tab ? (size_t)(tab - *p) : strlen(*p);
	size_t off = 0;

	if (len == 1 && **p == '-')
		len = 0;
	if (path && len) {
		off = (size_t)snprintf(dst, size, "%s/", fx_dir());
	}
	if (off + len >= size)
		len = size - off - 1;
	memcpy(dst + off, *p, len);
	dst[off + len] = 0;
	*p = tab ? tab + 1 : *p + strlen(*p);
}

int fx_cases(const char *name, struct tcase **out)
{
	char path[1024], num[32];
	char *text, *line, *save = NULL;
	struct tcase *cs = NULL;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", fx_dir(), name);
	text = fx_slurp(path);
	if (!text)
		return -1;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct tcase *c;
		char *p = line;

		cs = realloc(cs, (size_t)(n + 1) * sizeof(*cs));
		c = &cs[n++];
		memset(c, 0, sizeof(*c));
		field(&p, c->name, sizeof(c->name), false);
		field(&p, c->file, sizeof(c->file), true);
		field(&p, c->dataset, sizeof(c->dataset), false);
		field(&p, c->kf, sizeof(c->kf), false);
		field(&p, c->vf, sizeof(c->vf), false);
		field(&p, c->keys, sizeof(c->keys), false);
		field(&p, c->values, sizeof(c->values), false);
		field(&p, num, sizeof(num), false);
		c->start = strtoull(num, NULL, 10);
		field(&p, num, sizeof(num), false);
		c->count = num[0] ? strtoull(num, NULL, 10) : PIO_TO_END;
		field(&p, c->code, sizeof(c->code), false);
		field(&p, c->msg, sizeof(c->msg), false);
	}
	free(text);
	*out = cs;
	return n;
}

struct pio_input fx_input(const struct tcase *c)
{
	struct pio_input in = {
	    .file = c->file,
	    .dataset = c->dataset[0] ? c->dataset : NULL,
	    .key_field = c->kf[0] ? c->kf : NULL,
	    .value_field = c->vf[0] ? c->vf : NULL,
	    .keys = c->keys[0] ? c->keys : NULL,
	    .values = c->values[0] ? c->values : NULL,
	    .start = c->start,
	    .count = c->count,
	};
	return in;
}

static size_t hex(const uint8_t *p, size_t n, char *out, size_t size)
{
	static const char d[] = "0123456789abcdef";
	size_t o = 0;

	if (n == 0 && size > 1) {
		out[o++] = '-';
	}
	for (size_t i = 0; i < n && o + 2 < size; i++) {
		out[o++] = d[p[i] >> 4];
		out[o++] = d[p[i] & 15];
	}
	out[o] = 0;
	return o;
}

void fx_record(const struct pio_batch *b, size_t i, const struct pio_type *vt, char *out,
	       size_t size)
{
	size_t o = hex(b->keys + b->key_off[i], b->key_off[i + 1] - b->key_off[i], out, size);
	uint64_t w = b->vals[i];
	const uint8_t *data;
	uint32_t len;

	if (o + 2 >= size)
		return;
	out[o++] = '\t';
	switch (vt->cls) {
	case PIO_V_INT:
		snprintf(out + o, size - o, "%lld", (long long)w);
		break;
	case PIO_V_UINT:
		snprintf(out + o, size - o, "%llu", (unsigned long long)w);
		break;
	case PIO_V_FLOAT:
		snprintf(out + o, size - o, "%016llx", (unsigned long long)w);
		break;
	default:
		if (pio_batch_blob(b, w, &data, &len))
			snprintf(out + o, size - o, "BADHEAP");
		else
			hex(data, len, out + o, size - o);
	}
}

char *fx_read_all(struct pio_reader *r, size_t *nbatches)
{
	struct pio_type kt, vt;
	struct pio_batch b;
	struct pio_err err = {{0}};
	char *line = NULL, kn[96], vn[96];
	size_t len, cap = 1 << 16, lcap = 0;
	char *text = malloc(cap);
	int rc;

	pio_reader_types(r, &kt, &vt);
	len = (size_t)snprintf(text, cap, "%s\t%s\n", pio_type_name(&kt, kn, sizeof(kn)),
			       pio_type_name(&vt, vn, sizeof(vn)));
	pio_batch_init(&b);
	*nbatches = 0;
	while ((rc = pio_reader_next(r, &b, &err)) == 1) {
		(*nbatches)++;
		for (size_t i = 0; i < b.n; i++) {
			bool num =
			    vt.cls == PIO_V_INT || vt.cls == PIO_V_UINT || vt.cls == PIO_V_FLOAT;
			const uint8_t *data;
			uint32_t dl = 0;
			size_t l, need;

			if (!num && pio_batch_blob(&b, b.vals[i], &data, &dl))
				dl = 0;
			need = 2 * (b.key_off[i + 1] - b.key_off[i]) + 2 * (size_t)dl + 64;
			if (need > lcap) { /* the whole record, however long its strings */
				free(line);
				lcap = need;
				line = malloc(lcap);
			}
			fx_record(&b, i, &vt, line, lcap);
			l = strlen(line);
			if (len + l + 2 > cap) {
				cap = (cap + l) * 2;
				text = realloc(text, cap);
			}
			memcpy(text + len, line, l);
			len += l;
			text[len++] = '\n';
		}
	}
	text[len] = 0;
	free(line);
	pio_batch_free(&b);
	if (rc) {
		fprintf(stderr, "read error %d: %s\n", rc, err.msg);
		free(text);
		return NULL;
	}
	return text;
}

int fx_code(const char *name)
{
	static const struct {
		const char *name;
		int code;
	} codes[] = {
	    {"PIO_ENOMEM", PIO_ENOMEM},	    {"PIO_EINVAL", PIO_EINVAL},
	    {"PIO_ENOENT", PIO_ENOENT},	    {"PIO_ENOTHDF5", PIO_ENOTHDF5},
	    {"PIO_ECORRUPT", PIO_ECORRUPT}, {"PIO_ENODATASET", PIO_ENODATASET},
	    {"PIO_ENOFIELD", PIO_ENOFIELD}, {"PIO_ETYPE", PIO_ETYPE},
	    {"PIO_ESHAPE", PIO_ESHAPE},	    {"PIO_ELENGTH", PIO_ELENGTH},
	    {"PIO_ERANGE", PIO_ERANGE},	    {"PIO_EMIXED", PIO_EMIXED},
	    {"PIO_EREAD", PIO_EREAD},	    {"PIO_EWRITE", PIO_EWRITE},
	    {"PIO_EVALUE", PIO_EVALUE},
	};

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (!strcmp(codes[i].name, name))
			return codes[i].code;
	return 1;
}
