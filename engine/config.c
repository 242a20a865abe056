/*
 * config.c - the ingest configuration: one table of options shared by the INI reader
 * (libinih), the command line and --help, so that every config key has a flag of the same
 * name and the help lists them all with their defaults.
 */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest_internal.h"

enum kind {
	K_LIST,	  /* repeatable string (input) */
	K_STR,	  /* string */
	K_INT,	  /* non-negative int */
	K_U32,	  /* uint32 */
	K_U64,	  /* uint64 */
	K_SIZE,	  /* uint64 with K/M/G/T suffix */
	K_SCHEME, /* hash | prefix */
	K_POLICY, /* duplicate policy */
	K_BOOL,	  /* true/false; a flag without value on the command line */
};

struct option {
	const char *name; /* config key and flag name (without "--") */
	enum kind kind;	  /* how the value is parsed */
	size_t off;	  /* offset of the field in struct pme_config */
	const char *dflt; /* default, as shown by --help */
	const char *help; /* one line */
};

#define OFF(f) offsetof(struct pme_config, f)

static const struct option options[] = {
    {"input", K_LIST, OFF(inputs), "(required)",
     "FILE[:/dataset] to read; repeatable; a glob is expanded unless a file of that very "
     "name exists (dataset default /data)"},
    {"key-field", K_STR, OFF(key_field), "key", "compound layout: name of the key field"},
    {"value-field", K_STR, OFF(value_field), "value", "compound layout: name of the value field"},
    {"keys", K_STR, OFF(keys), "(none)", "two-dataset layout: path of the keys dataset"},
    {"values", K_STR, OFF(values), "(none)", "two-dataset layout: path of the values dataset"},
    {"output", K_STR, OFF(output), "(required)", "KB file to write (replaced atomically)"},
    {"into", K_STR, OFF(into), "(none)",
     "existing KB to add the input to (its records come first, their values taken as "
     "results of --on-duplicate: with the policy the KB was made with, the result of one "
     "run over all inputs); when it is the --output too, jobs adding to it at the same "
     "time take turns (a lock on it: the others wait, and say so)"},
    {"threads", K_INT, OFF(threads), "OMP_NUM_THREADS, else all cores", "OpenMP threads"},
    {"scheme", K_SCHEME, OFF(scheme), "hash",
     "partition scheme: hash | prefix (key ranges after the input's common prefix)"},
    {"partitions", K_U32, OFF(partitions), "power of two >= 8 x threads (min 256)",
     "partition count P (hash: a power of two <= 65536; prefix: 1..65536)"},
    {"batch-records", K_U64, OFF(batch_records), "from --memory (at most 2097152)",
     "records per batch (rounded to whole HDF5 chunks); given, it wins over --memory"},
    {"memory", K_SIZE, OFF(memory),
     "a quarter of physical memory, or of the cgroup's limit or ulimit -v if lower",
     "memory for the batches in flight (hash scheme, last value: 3/4 of it, and 1/4 "
     "for sorted runs held back before they go into the map), and for the KB image when "
     "it is built in parallel (above it, the KB is written serially): bytes, or with K, "
     "M, G or T (powers of 1024; also as KB, KiB, ...), e.g. 512M, 4G; the map itself "
     "is not counted"},
    {"on-duplicate", K_POLICY, OFF(on_duplicate), "last",
     "last | first | error | sum | min | max | count"},
    {"sort", K_BOOL, OFF(sort), "true", "sort each partition's batch by key before filling"},
    {"report", K_STR, OFF(report), "(none)",
     "write a JSON report of the run to this file (a new name or a regular file is "
     "replaced whole; /dev/stdout, /dev/stderr or a FIFO is written in place, after what "
     "the stream holds)"},
    {"allocator", K_STR, OFF(allocator), "(the linked one)",
     "jemalloc | glibc: refuse to run unless this allocator serves malloc"},
    {"quiet", K_BOOL, OFF(quiet), "false", "no progress and no summary on stderr/stdout"},
    {"dry-run", K_BOOL, OFF(dry_run), "false",
     "check the job (config, inputs and their types, --into, outputs) and print its plan "
     "on stdout; read no record (but the string references of a virtual dataset's "
     "sources, which are checked), write nothing"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

int pme_seterr(struct pme_err *err, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		pio_vmsgf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

void pme_config_init(struct pme_config *c)
{
	memset(c, 0, sizeof(*c));
	c->scheme = PME_SCHEME_HASH;
	c->on_duplicate = PME_DUP_LAST;
	c->sort = true;
}

void pme_config_free(struct pme_config *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n_inputs; i++)
		free(c->inputs[i]);
	free(c->inputs);
	free(c->key_field);
	free(c->value_field);
	free(c->keys);
	free(c->values);
	free(c->output);
	free(c->into);
	free(c->report);
	free(c->allocator);
	pme_config_init(c);
}

static const char *const policy_names[] = {"last", "first", "error", "sum", "min", "max", "count"};

int pme_policy_parse(const char *s, enum pme_policy *out)
{
	size_t i;

	for (i = 0; i < sizeof(policy_names) / sizeof(policy_names[0]); i++) {
		if (!strcmp(s, policy_names[i])) {
			*out = (enum pme_policy)i;
			return 0;
		}
	}
	return PME_EUSAGE;
}

const char *pme_policy_name(enum pme_policy p)
{
	return (unsigned)p < sizeof(policy_names) / sizeof(policy_names[0]) ? policy_names[p] : "?";
}

int pme_parse_count(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return PME_EUSAGE;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return PME_EUSAGE;
	*out = v;
	return 0;
}

int pme_parse_int(const char *s, int64_t *out)
{
	long long v;
	char *end;

	if (!s || !isdigit((unsigned char)s[*s == '-']))
		return PME_EUSAGE;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return PME_EUSAGE;
	*out = v;
	return 0;
}

int pme_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return PME_EUSAGE;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return PME_EUSAGE;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return PME_EUSAGE;
	}
	if (*end && end[1] && strcmp(end + 1, "B") && strcmp(end + 1, "iB"))
		return PME_EUSAGE;
	if (shift && v > (UINT64_MAX >> shift))
		return PME_EUSAGE;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!s || !strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "1") || !strcmp(s, "on"))
		*out = true;
	else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "0") || !strcmp(s, "off"))
		*out = false;
	else
		return PME_EUSAGE;
	return 0;
}

static const struct option *find_option(const char *name)
{
	size_t i;

	for (i = 0; i < NOPTIONS; i++)
		if (!strcmp(options[i].name, name))
			return &options[i];
	return NULL;
}

bool pme_config_is_flag(const char *name, bool *known)
{
	const struct option *o = find_option(name);

	*known = o != NULL;
	return o && o->kind == K_BOOL;
}

static int set_string(char **field, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

static int append_input(struct pme_config *c, const char *value)
{
	char **n = realloc(c->inputs, (c->n_inputs + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	c->inputs = n;
	c->inputs[c->n_inputs] = strdup(value);
	if (!c->inputs[c->n_inputs])
		return -ENOMEM;
	c->n_inputs++;
	return 0;
}

int pme_config_set(struct pme_config *c, const char *name, const char *value, struct pme_err *err)
{
	const struct option *o = find_option(name);
	char *field;
	uint64_t u;
	int rc = 0;

	if (!o)
		return pme_seterr(err, PME_EUSAGE, "unknown option '%s'", name);
	if (!value && o->kind != K_BOOL)
		return pme_seterr(err, PME_EUSAGE, "option '%s' needs a value", name);
	field = (char *)c + o->off;
	switch (o->kind) {
	case K_LIST:
		if (!*value)
			return pme_seterr(err, PME_EUSAGE, "option '%s' needs a non-empty value",
					  name);
		rc = append_input(c, value);
		break;
	case K_STR:
		if (!*value)
			return pme_seterr(err, PME_EUSAGE, "option '%s' needs a non-empty value",
					  name);
		rc = set_string((char **)(void *)field, value);
		break;
	case K_INT:
		rc = pme_parse_count(value, &u);
		if (rc || u > PME_MAX_THREADS) /* threads: the only K_INT */
			goto bad;
		*(int *)(void *)field = (int)u;
		break;
	case K_U32:
		rc = pme_parse_count(value, &u);
		if (rc || u > UINT32_MAX)
			goto bad;
		*(uint32_t *)(void *)field = (uint32_t)u;
		break;
	case K_U64:
		rc = pme_parse_count(value, &u);
		if (rc)
			goto bad;
		*(uint64_t *)(void *)field = u;
		break;
	case K_SIZE:
		rc = pme_parse_size(value, &u);
		if (rc)
			goto bad;
		*(uint64_t *)(void *)field = u;
		break;
	case K_SCHEME:
		if (!strcmp(value, "hash"))
			c->scheme = PME_SCHEME_HASH;
		else if (!strcmp(value, "prefix"))
			c->scheme = PME_SCHEME_PREFIX;
		else
			goto bad;
		break;
	case K_POLICY:
		if (pme_policy_parse(value, &c->on_duplicate))
			goto bad;
		break;
	case K_BOOL:
		if (parse_bool(value, (bool *)(void *)field))
			goto bad;
		break;
	}
	if (rc)
		return pme_seterr(err, rc, "out of memory");
	return 0;
bad:
	return pme_seterr(err, PME_EUSAGE, "invalid value '%s' for %s (default: %s; %s)", value,
			  name, o->dflt, o->help);
}

struct ini_ctx {
	struct pme_config *c; /* target */
	struct pme_err *err;  /* first error */
	const char *path;     /* for messages */
	int rc;		      /* first error code */
	FILE *f;	      /* the file, read by read_line */
	int line;	      /* number of the line last read */
	int seen[NOPTIONS];   /* line that set each key, 0 if none yet */
};

/*
 * libinih's line reader. inih reads into a buffer of num bytes (200 as Debian builds it) and
 * would take the rest of a longer line as the next line, or silently cut a value: such a line
 * is refused here, by number. A line's indentation is dropped (inih would join an indented
 * line to the value above it: an indented "threads = 1" became part of that value, an
 * indented file name a second input), and " #" starts a comment as " ;" does in inih.
 */
static char *read_line(char *str, int num, void *user)
{
	struct ini_ctx *x = user;
	size_t len;
	char *p, q;
	int ch;

	if (x->rc)
		return NULL;
	if (!fgets(str, num, x->f)) {
		if (ferror(x->f)) /* a directory, an I/O error */
			x->rc = pme_seterr(x->err, PME_EUSAGE, "%s: cannot read config file (%s)",
					   x->path, strerror(errno));
		return NULL;
	}
	x->line++;
	len = strlen(str);
	if (len == (size_t)num - 1 && str[len - 1] != '\n') {
		ch = getc(x->f); /* the buffer is full: the line fits if it ends here */
		if (ch == '\r')
			ch = getc(x->f);
		if (ch != '\n' && ch != EOF) {
			x->rc = pme_seterr(x->err, PME_EUSAGE,
					   "%s:%d: line longer than %d bytes (give longer values "
					   "on the command line)",
					   x->path, x->line, num - 1);
			return NULL;
		}
	}
	p = str + strspn(str, " \t");
	if (p > str)
		memmove(str, p, strlen(p) + 1);
	for (p = str + 1, q = 0; *str && *p; p++) {
		bool after_space = p[-1] == ' ' || p[-1] == '\t' || p[-1] == '=';

		if (!q && (*p == '"' || *p == '\'') && after_space) {
			q = *p; /* a quoted value: "run #3.kb" keeps its '#' */
		} else if (q && *p == q) {
			q = 0;
		} else if (!q && *p == '#' && after_space && p[-1] != '=') {
			p[0] = '\n';
			p[1] = '\0';
			break;
		}
	}
	return str;
}

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *x = user;
	const struct option *o;
	struct pme_err e;
	char *unquoted = NULL;
	size_t len;
	int rc;

	if (x->rc)
		return 0;
	if (*section && strcmp(section, "ingest")) {
		x->rc = pme_seterr(x->err, PME_EUSAGE, "%s:%d: unknown section [%s] (use [ingest])",
				   x->path, x->line, section);
		return 0;
	}
	o = find_option(name);
	if (!o) {
		x->rc = pme_seterr(x->err, PME_EUSAGE,
				   "%s:%d: unknown key '%s' (see pmingest ingest --help)", x->path,
				   x->line, name);
		return 0;
	}
	if (o->kind != K_LIST && x->seen[o - options]) {
		x->rc = pme_seterr(x->err, PME_EUSAGE, "%s:%d: '%s' is already set on line %d",
				   x->path, x->line, name, x->seen[o - options]);
		return 0;
	}
	x->seen[o - options] = x->line;
	len = strlen(value);
	if ((value[0] == '"' || value[0] == '\'') && (len < 2 || value[len - 1] != value[0])) {
		x->rc =
		    pme_seterr(x->err, PME_EUSAGE,
			       "%s:%d: the value of '%s' has no closing quote (as libinih reads "
			       "the file, ' ;' starts a comment even within quotes)",
			       x->path, x->line, name);
		return 0;
	}
	if (len >= 2 && (value[0] == '"' || value[0] == '\'') && value[len - 1] == value[0]) {
		/* "a value" or 'a value': a value */
		unquoted = strndup(value + 1, len - 2);
		if (!unquoted) {
			x->rc = pme_seterr(x->err, -ENOMEM, "out of memory");
			return 0;
		}
	}
	rc = pme_config_set(x->c, name, unquoted ? unquoted : value, &e);
	free(unquoted);
	if (rc) {
		x->rc = pme_seterr(x->err, rc, "%s:%d: %s", x->path, x->line, e.msg);
		return 0;
	}
	return 1;
}

int pme_config_load(struct pme_config *c, const char *path, struct pme_err *err)
{
	struct ini_ctx x = {.c = c, .err = err, .path = path};
	int line;

	x.f = fopen(path, "r");
	if (!x.f)
		return pme_seterr(err, PME_EUSAGE, "%s: cannot open config file (%s)", path,
				  strerror(errno));
	line = ini_parse_stream(read_line, &x, on_ini_line, &x);
	fclose(x.f);
	if (x.rc)
		return x.rc;
	if (line)
		return pme_seterr(
		    err, PME_EUSAGE,
		    "%s:%d: syntax error (lines are KEY = VALUE, [ingest] or comments)", path,
		    line);
	return 0;
}

void pme_config_help(FILE *f)
{
	size_t i;

	for (i = 0; i < NOPTIONS; i++) {
		const struct option *o = &options[i];
		char flag[64];

		snprintf(flag, sizeof(flag), "--%s%s", o->name,
			 o->kind == K_BOOL ? "[=BOOL]" : " V");
		fprintf(f, "  %-22s %s\n  %-22s   default: %s\n", flag, o->help, "", o->dflt);
	}
}
