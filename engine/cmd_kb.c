/*
 * cmd_kb.c - the KB subcommands: get, scan, count, stats, export, merge, intersect,
 * subtract, verify, and kb-build (tests and demos).
 *
 * Users speak user keys: the KB stores them in user-key order whatever the partition scheme,
 * so queries walk one trie. Output text formats (documented in `pmingest scan --help`):
 *
 *   tsv    KEY<TAB>VALUE per line. Escaping, which round-trips any byte: backslash -> \\,
 *          TAB -> \t, LF -> \n, CR -> \r, other bytes below 0x20 and 0x7f -> \xHH; every
 *          other byte (UTF-8 included) as is. kb-build reads the same escaping.
 *   csv    RFC 4180: a field holding a comma, a double quote, CR or LF is quoted, with
 *          double quotes doubled; other bytes as is.
 *   jsonl  {"key_hex": ..., "key": ..., "value": ...} per line (see scan --help).
 *
 * Integer keys print as decimal numbers; opaque values as lowercase hex; floats in the
 * shortest form that reads back to the same value of their width.
 */
#define _POSIX_C_SOURCE 200809L /* getline, ssize_t */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ingest.h"
#include "kb.h"
#include "pio.h"
#include "pme_cmd.h"

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

/* Exit status of a pkb code. */
static int exit_of(int rc)
{
	if (rc == 0)
		return PME_EXIT_OK;
	if (pkb_is_input_error(rc))
		return PME_EXIT_INPUT;
	switch (rc) {
	case PKB_ENOMEM:
		return PME_EXIT_NOMEM;
	case PKB_ECANCELED:
		return PME_EXIT_INTERRUPTED;
	case PKB_ETYPE: /* as ingest: inputs of different types cannot be read as one */
		return PME_EXIT_INPUT;
	case PKB_EDUP:
	case PKB_EVALUE:
	case PKB_ESUM:
		return PME_EXIT_DATA;
	case PKB_EINVAL:
		return PME_EXIT_USAGE;
	default: /* -errno from writing (ENOENT included: a missing output directory) */
		return PME_EXIT_OUTPUT;
	}
}

/* Opens a KB for a query; prints the error and returns the exit status on failure. */
static int open_kb(const char *cmd, const char *path, unsigned flags, struct pkb **kb)
{
	struct pkb_err err;
	int rc = pkb_open(path, flags, kb, &err);

	if (!rc)
		return 0;
	fprintf(stderr, "pmingest %s: %s\n", cmd, err.msg);
	return rc == PKB_ENOMEM ? PME_EXIT_NOMEM : PME_EXIT_INPUT;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes hex text into a new buffer. Returns false on bad hex. */
static bool unhex(const char *s, uint8_t **out, size_t *len)
{
	size_t n = strlen(s), i;
	uint8_t *b;

	if (n % 2)
		return false;
	b = malloc(n / 2 + 1);
	if (!b)
		return false;
	for (i = 0; i < n / 2; i++) {
		int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);

		if (h < 0 || l < 0) {
			free(b);
			return false;
		}
		b[i] = (uint8_t)(h << 4 | l);
	}
	*out = b;
	*len = n / 2;
	return true;
}

static void put_hex(FILE *f, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		putc(digits[p[i] >> 4], f);
		putc(digits[p[i] & 15], f);
	}
}

static bool is_int_key(const struct pio_type *t)
{
	return t->cls == PIO_V_INT || t->cls == PIO_V_UINT;
}

/* A PREFIX argument of scan and count is the keys' first bytes as typed: of integer keys,
 * their big-endian bytes, which "5" is not (it counted the keys starting with byte 0x35,
 * silently). Returns 0, or PME_EXIT_USAGE with a message. */
static int text_prefix_ok(const char *cmd, const struct pkb *kb, const char *prefix)
{
	const struct pio_type *t = &pkb_info(kb)->key_type;
	char name[64];

	if (!prefix || !is_int_key(t))
		return 0;
	fprintf(stderr,
		"pmingest %s: %s has integer keys (%s): a PREFIX is their first big-endian "
		"bytes, give it with --prefix-hex\n",
		cmd, pkb_path(kb), pio_type_name(t, name, sizeof(name)));
	return PME_EXIT_USAGE;
}

/* Parses --prefix-hex HEX into *prefix (malloc'd) and *plen; 0, or PME_EXIT_USAGE with a
 * message. */
static int prefix_hex(const char *cmd, const char *hex, uint8_t **prefix, size_t *plen)
{
	if (unhex(hex, prefix, plen))
		return 0;
	fprintf(stderr, "pmingest %s: --prefix-hex '%s' is not hex (two digits a byte)\n", cmd,
		hex);
	return PME_EXIT_USAGE;
}

/* Encodes a decimal integer key of type t (big-endian, sign bit flipped for signed). */
static bool encode_int_key(const struct pio_type *t, const char *s, uint8_t *out)
{
	unsigned w = t->width, i;
	uint64_t u;

	if (t->cls == PIO_V_INT) {
		int64_t v, lo = w == 8 ? INT64_MIN : -((int64_t)1 << (8 * w - 1));
		int64_t hi = w == 8 ? INT64_MAX : ((int64_t)1 << (8 * w - 1)) - 1;

		if (pme_parse_int(s, &v) || v < lo || v > hi)
			return false;
		u = (uint64_t)v ^ ((uint64_t)1 << (8 * w - 1));
	} else {
		if (pme_parse_count(s, &u) || (w < 8 && u >> (8 * w)))
			return false;
	}
	for (i = 0; i < w; i++)
		out[i] = (uint8_t)(u >> (8 * (w - 1 - i)));
	return true;
}

/* Prints an integer key from its encoding (len == width, else as hex). */
static void print_int_key(FILE *f, const struct pio_type *t, const uint8_t *k, size_t len)
{
	uint64_t u = 0;
	size_t i;

	if (len != t->width || len == 0 || len > 8) {
		put_hex(f, k, len);
		return;
	}
	for (i = 0; i < len; i++)
		u = u << 8 | k[i];
	if (t->cls == PIO_V_INT) {
		u ^= (uint64_t)1 << (8 * len - 1);
		if (len < 8 && (u >> (8 * len - 1)) & 1)
			u |= ~(uint64_t)0 << (8 * len); /* sign-extend */
		fprintf(f, "%" PRId64, (int64_t)u);
	} else {
		fprintf(f, "%" PRIu64, u);
	}
}

/* Parses a user key argument. hex: hex bytes; integer key types: decimal; else raw bytes.
 * Returns a malloc'ed buffer or NULL (message printed). */
static uint8_t *parse_key(const char *cmd, const struct pio_type *t, const char *s, bool hex,
			  size_t *len)
{
	uint8_t *b;

	if (hex) {
		if (!unhex(s, &b, len)) {
			fprintf(stderr, "pmingest %s: '%s' is not hex\n", cmd, s);
			return NULL;
		}
		return b;
	}
	if (is_int_key(t)) {
		b = malloc(8);
		if (!b || !encode_int_key(t, s, b)) {
			fprintf(stderr, "pmingest %s: '%s' is not a %s%u integer key\n", cmd, s,
				t->cls == PIO_V_INT ? "int" : "uint", 8 * t->width);
			free(b);
			return NULL;
		}
		*len = t->width;
		return b;
	}
	*len = strlen(s);
	b = malloc(*len + 1);
	if (b)
		memcpy(b, s, *len + 1);
	return b;
}

/* TSV escaping (see the top of the file). */
static void put_tsv(FILE *f, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (c == '\\')
			fputs("\\\\", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			putc(c, f);
	}
}

static void put_csv(FILE *f, const uint8_t *p, size_t n)
{
	size_t i;
	bool q = false;

	for (i = 0; i < n && !q; i++)
		q = p[i] == ',' || p[i] == '"' || p[i] == '\r' || p[i] == '\n';
	if (!q) {
		fwrite(p, 1, n, f);
		return;
	}
	putc('"', f);
	for (i = 0; i < n; i++) {
		if (p[i] == '"')
			putc('"', f);
		putc(p[i], f);
	}
	putc('"', f);
}

/* d rounded to the nearest float16 (ties to even), as a double: what a float16 holds for it.
 * A float16 has 11 significant bits and normal exponents down to -14; below 2^-14 its steps
 * are 2^-24; from 65520 on it is infinite. */
static double half_round(double d)
{
	double a = fabs(d), q;
	int e;

	if (isnan(d))
		return d;
	if (a >= 65520.0)
		return copysign(INFINITY, d);
	(void)frexp(a, &e); /* a in [2^(e-1), 2^e) */
	q = ldexp(1.0, (e - 1 > -14 ? e - 1 : -14) - 10);
	return copysign(nearbyint(a / q) * q, d);
}

/* Shortest text that reads back to the same value of the given float width. */
static void format_float(char *buf, size_t size, double d, unsigned width)
{
	int prec;

	if (isnan(d)) {
		snprintf(buf, size, "nan");
		return;
	}
	if (isinf(d)) {
		snprintf(buf, size, d < 0 ? "-inf" : "inf");
		return;
	}
	for (prec = 1; prec <= 17; prec++) {
		snprintf(buf, size, "%.*g", prec, d);
		if (width == 2 && half_round(strtod(buf, NULL)) == d)
			return;
		if (width == 4 && strtof(buf, NULL) == (float)d)
			return;
		if (width != 2 && width != 4 && strtod(buf, NULL) == d)
			return;
	}
}

static double word_double(uint64_t w)
{
	double d;

	memcpy(&d, &w, sizeof(d));
	return d;
}

enum fmt { FMT_TSV, FMT_CSV, FMT_JSONL };

/* Prints a value in the given format. Returns 0 or PKB_ECORRUPT (bad heap reference). */
static int print_value(FILE *f, const struct pkb *kb, uint64_t w, enum fmt fmt)
{
	const struct pio_type *t = &pkb_info(kb)->value_type;
	const uint8_t *d;
	size_t n;
	char num[64];

	switch (t->cls) {
	case PIO_V_INT:
		fprintf(f, "%" PRId64, (int64_t)w);
		return 0;
	case PIO_V_UINT:
		fprintf(f, "%" PRIu64, w);
		return 0;
	case PIO_V_FLOAT:
		format_float(num, sizeof(num), word_double(w), t->width);
		/* JSON has no NaN or infinity (strings, then) and reads -0 as the integer 0 */
		if (fmt == FMT_JSONL && !isfinite(word_double(w)))
			fprintf(f, "\"%s\"", num);
		else if (fmt == FMT_JSONL && !strcmp(num, "-0"))
			fputs("-0.0", f);
		else
			fputs(num, f);
		return 0;
	case PIO_V_STRING:
		if (pkb_blob(kb, w, &d, &n))
			return PKB_ECORRUPT;
		if (fmt == FMT_TSV)
			put_tsv(f, d, n);
		else if (fmt == FMT_CSV)
			put_csv(f, d, n);
		else if (pme_valid_utf8(d, n))
			pme_json_str(f, d, n);
		else {
			fputs("null, \"value_hex\": \"", f);
			put_hex(f, d, n);
			putc('"', f);
		}
		return 0;
	case PIO_V_OPAQUE:
		if (pkb_blob(kb, w, &d, &n))
			return PKB_ECORRUPT;
		if (fmt == FMT_JSONL)
			putc('"', f);
		put_hex(f, d, n);
		if (fmt == FMT_JSONL)
			putc('"', f);
		return 0;
	}
	return 0;
}

static void print_key(FILE *f, const struct pkb *kb, const uint8_t *k, size_t len, enum fmt fmt)
{
	const struct pio_type *t = &pkb_info(kb)->key_type;

	if (fmt == FMT_JSONL) {
		fputs("{\"key_hex\": \"", f);
		put_hex(f, k, len);
		putc('"', f);
		if (is_int_key(t)) {
			fputs(", \"key\": ", f);
			print_int_key(f, t, k, len);
		} else if (pme_valid_utf8(k, len)) {
			fputs(", \"key\": ", f);
			pme_json_str(f, k, len);
		}
		fputs(", \"value\": ", f);
		return;
	}
	if (is_int_key(t))
		print_int_key(f, t, k, len);
	else if (t->cls == PIO_V_OPAQUE)
		put_hex(f, k, len);
	else if (fmt == FMT_TSV)
		put_tsv(f, k, len);
	else
		put_csv(f, k, len);
	putc(fmt == FMT_TSV ? '\t' : ',', f);
}

/* Minimal option parser: --name VALUE, --name=VALUE, flags; positionals collected. */
struct opt {
	const char *name; /* without the dashes */
	bool has_arg;	  /* takes a value */
	const char *val;  /* value given, or "" for a flag given, or NULL */
};

static int parse_opts(const char *cmd, int argc, char **argv, struct opt *opts, size_t nopt,
		      char **pos, int *npos)
{
	int i;
	bool dashdash = false;

	*npos = 0;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		size_t j, l;
		const char *eq;

		if (dashdash || a[0] != '-' || a[1] != '-' || !a[2]) {
			if (!dashdash && !strcmp(a, "--")) {
				dashdash = true;
				continue;
			}
			if (a[0] == '-' && a[1] && a[1] != '-' && !(a[1] >= '0' && a[1] <= '9') &&
			    !dashdash && strcmp(a, "-h")) {
				fprintf(stderr, "pmingest %s: unknown option '%s'\n", cmd, a);
				return PME_EXIT_USAGE;
			}
			if (!strcmp(a, "-h")) {
				a = "--help";
			} else {
				pos[(*npos)++] = argv[i];
				continue;
			}
		}
		a += 2;
		eq = strchr(a, '=');
		l = eq ? (size_t)(eq - a) : strlen(a);
		for (j = 0; j < nopt; j++)
			if (strlen(opts[j].name) == l && !strncmp(opts[j].name, a, l))
				break;
		if (j == nopt) {
			fprintf(stderr,
				"pmingest %s: unknown option '--%.*s' (see pmingest %s --help)\n",
				cmd, (int)l, a, cmd);
			return PME_EXIT_USAGE;
		}
		if (!opts[j].has_arg) {
			if (eq) {
				fprintf(stderr, "pmingest %s: --%s takes no value\n", cmd,
					opts[j].name);
				return PME_EXIT_USAGE;
			}
			opts[j].val = "";
		} else if (eq) {
			opts[j].val = eq + 1;
		} else if (i + 1 < argc) {
			opts[j].val = argv[++i];
		} else {
			fprintf(stderr, "pmingest %s: --%s needs a value\n", cmd, opts[j].name);
			return PME_EXIT_USAGE;
		}
		if (!strcmp(opts[j].name, "output") && !*opts[j].val) {
			fprintf(stderr, "pmingest %s: --output needs a file name\n", cmd);
			return PME_EXIT_USAGE;
		}
	}
	return 0;
}

static const char *optval(const struct opt *o, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(o[i].name, name))
			return o[i].val;
	return NULL;
}

#define NOPT(a) (sizeof(a) / sizeof((a)[0]))

static const char open_note[] =
    "Opening a KB checks its header, header checksum and section bounds in O(1) (the file\n"
    "is mapped, not read); --check also verifies every checksum first (reads the whole\n"
    "file). `pmingest verify` checks everything.\n";

/* Finishes stdout; reports a write error (disk full, closed pipe). */
static int finish_stdout(const char *cmd)
{
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "pmingest %s: cannot write the output: %s\n", cmd, strerror(errno));
		return PME_EXIT_OUTPUT;
	}
	return PME_EXIT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* get */

int pme_cmd_get(int argc, char **argv)
{
	struct opt o[] = {{"key-hex", false, NULL}, {"check", false, NULL}, {"help", false, NULL}};
	char **pos = calloc((size_t)argc + 1, sizeof(char *));
	struct pkb *kb = NULL;
	int npos, i, status, missing = 0;

	if (!pos)
		return PME_EXIT_NOMEM;
	status = parse_opts("get", argc, argv, o, NOPT(o), pos, &npos);
	if (status)
		goto out;
	if (optval(o, NOPT(o), "help")) {
		printf(
		    "usage: pmingest get KB KEY... [--key-hex] [--check]\n\n"
		    "Prints the value of each KEY, one per line, in the order given (strings\n"
		    "TSV-escaped, opaque values as hex). A missing key prints nothing on stdout,\n"
		    "a message on stderr, and makes the exit status 1 (like grep).\n"
		    "Integer keys are given in decimal (negative ones too); --key-hex takes every "
		    "KEY\n"
		    "as hex bytes (the stored encoding: big-endian, sign bit flipped for signed "
		    "integers).\n\n%s",
		    open_note);
		goto out;
	}
	if (npos < 2) {
		fprintf(stderr,
			"usage: pmingest get KB KEY... [--key-hex] [--check] (see --help)\n");
		status = PME_EXIT_USAGE;
		goto out;
	}
	status = open_kb("get", pos[0], optval(o, NOPT(o), "check") ? PKB_OPEN_CHECKSUM : 0, &kb);
	if (status)
		goto out;
	for (i = 1; i < npos; i++) {
		size_t len;
		uint64_t w;
		uint8_t *k = parse_key("get", &pkb_info(kb)->key_type, pos[i],
				       optval(o, NOPT(o), "key-hex") != NULL, &len);
		int rc;

		if (!k) {
			status = PME_EXIT_USAGE;
			goto out;
		}
		rc = pkb_get(kb, k, len, &w);
		free(k);
		if (rc == PKB_ENOTFOUND) {
			fprintf(stderr, "pmingest get: key '%s' not found in %s\n", pos[i], pos[0]);
			missing = 1;
			continue;
		}
		if (!rc)
			rc = print_value(stdout, kb, w, FMT_TSV);
		if (rc) {
			fprintf(stderr, "pmingest get: %s: corrupt KB (damaged trie or heap)\n",
				pos[0]);
			status = PME_EXIT_INPUT;
			goto out;
		}
		putchar('\n');
	}
	status = finish_stdout("get");
	if (!status && missing)
		status = PME_EXIT_NOTFOUND;
out:
	pkb_close(kb);
	free(pos);
	return status;
}

/* ------------------------------------------------------------------------------------------ */
/* scan and count */

static const char scan_help[] =
    "usage: pmingest scan KB [PREFIX] [--prefix-hex HEX] [--from KEY] [--key-hex]\n"
    "                        [--limit N] [--format tsv|csv|jsonl] [--check]\n\n"
    "Lists keys and values in byte order of the user key, whatever the partition scheme.\n"
    "PREFIX keeps keys starting with those bytes (--prefix-hex: given as hex; for integer\n"
    "keys, a prefix of the big-endian encoding). --from KEY starts at the first key >= KEY\n"
    "(integer keys in decimal; --key-hex: KEY as hex). --limit N stops after N records.\n\n"
    "Formats (every one round-trips any byte):\n"
    "  tsv    KEY<TAB>VALUE; escaping: backslash -> \\\\, TAB -> \\t, LF -> \\n, CR -> \\r,\n"
    "         other bytes < 0x20 and 0x7f -> \\xHH, all other bytes as they are\n"
    "  csv    KEY,VALUE (RFC 4180): fields holding , \" CR or LF are double-quoted, with\n"
    "         quotes doubled; other bytes as they are\n"
    "  jsonl  {\"key_hex\": HEX, \"key\": STRING, \"value\": VALUE} per line: key_hex always\n"
    "         (lowercase hex of the key bytes); key only when the key is valid UTF-8 (a\n"
    "         number for integer keys); value: a number for integers and floats (\"nan\",\n"
    "         \"inf\", \"-inf\" as strings; -0.0 as -0.0), a string for text (null plus\n"
    "         \"value_hex\" when the text is not valid UTF-8), lowercase hex for opaque\n"
    "         values\n"
    "Integer keys print in decimal, opaque keys and values in hex, floats in the shortest\n"
    "form that reads back to the same value.\n\n";

/* pm_snap_iter_run() visitor of `scan`: prints one key and value; 1 once `left` reaches 0. */
struct scan_out {
	const struct pkb *kb;
	enum fmt fmt;
	unsigned long long left;
};

static int scan_visit(const uint8_t *k, size_t len, uint64_t w, void *arg)
{
	struct scan_out *so = arg;
	int rc;

	print_key(stdout, so->kb, k, len, so->fmt);
	rc = print_value(stdout, so->kb, w, so->fmt);
	if (rc)
		return rc;
	fputs(so->fmt == FMT_JSONL ? "}\n" : "\n", stdout);
	if (ferror(stdout)) /* a reader gone (SIGPIPE ignored), a full disk: stop now */
		return 1;
	return --so->left ? 0 : 1;
}

int pme_cmd_scan(int argc, char **argv)
{
	struct opt o[] = {{"prefix-hex", true, NULL}, {"from", true, NULL},
			  {"key-hex", false, NULL},   {"limit", true, NULL},
			  {"format", true, NULL},     {"check", false, NULL},
			  {"help", false, NULL}};
	char **pos = calloc((size_t)argc + 1, sizeof(char *));
	struct pkb *kb = NULL;
	pm_snap_iter *it = NULL;
	uint8_t *prefix = NULL, *from = NULL;
	size_t plen = 0, flen = 0;
	uint64_t limit = UINT64_MAX;
	enum fmt fmt = FMT_TSV;
	const char *v;
	int npos, status, rc;

	if (!pos)
		return PME_EXIT_NOMEM;
	status = parse_opts("scan", argc, argv, o, NOPT(o), pos, &npos);
	if (status)
		goto out;
	if (optval(o, NOPT(o), "help")) {
		printf("%s%s", scan_help, open_note);
		goto out;
	}
	if (npos < 1 || npos > 2 || (npos == 2 && optval(o, NOPT(o), "prefix-hex"))) {
		fprintf(stderr,
			"usage: pmingest scan KB [PREFIX | --prefix-hex HEX] [--from KEY] "
			"[--limit N]\n"
			"       [--format tsv|csv|jsonl] [--check] [--key-hex] (see --help)\n");
		status = PME_EXIT_USAGE;
		goto out;
	}
	v = optval(o, NOPT(o), "format");
	if (v) {
		if (!strcmp(v, "tsv"))
			fmt = FMT_TSV;
		else if (!strcmp(v, "csv"))
			fmt = FMT_CSV;
		else if (!strcmp(v, "jsonl"))
			fmt = FMT_JSONL;
		else {
			fprintf(stderr, "pmingest scan: unknown format '%s' (tsv, csv, jsonl)\n",
				v);
			status = PME_EXIT_USAGE;
			goto out;
		}
	}
	v = optval(o, NOPT(o), "limit");
	if (v) {
		if (pme_parse_count(v, &limit)) {
			fprintf(stderr, "pmingest scan: bad --limit '%s'\n", v);
			status = PME_EXIT_USAGE;
			goto out;
		}
	}
	v = optval(o, NOPT(o), "prefix-hex");
	if (v && (status = prefix_hex("scan", v, &prefix, &plen)))
		goto out;
	if (npos == 2) {
		plen = strlen(pos[1]);
		prefix = malloc(plen + 1);
		if (!prefix) {
			status = PME_EXIT_NOMEM;
			goto out;
		}
		memcpy(prefix, pos[1], plen + 1);
	}
	status = open_kb("scan", pos[0], optval(o, NOPT(o), "check") ? PKB_OPEN_CHECKSUM : 0, &kb);
	if (!status)
		status = text_prefix_ok("scan", kb, npos == 2 ? pos[1] : NULL);
	if (status)
		goto out;
	v = optval(o, NOPT(o), "from");
	if (v) {
		from = parse_key("scan", &pkb_info(kb)->key_type, v,
				 optval(o, NOPT(o), "key-hex") != NULL, &flen);
		if (!from) {
			status = PME_EXIT_USAGE;
			goto out;
		}
	}
	if (plen == 0 && limit == UINT64_MAX)
		pkb_prefetch(kb); /* a full scan: read-ahead */
	rc = pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it);
	if (!rc)
		rc = pm_snap_iter_seek(it, prefix, plen, from, flen);
	if (!rc && limit) {
		struct scan_out so = {kb, fmt, limit};

		rc = pm_snap_iter_run(it, scan_visit, &so);
	}
	if (rc < 0) {
		fprintf(stderr, "pmingest scan: %s: %s\n", pos[0],
			rc == PM_ENOMEM ? "out of memory" : "corrupt KB (damaged trie or heap)");
		status = rc == PM_ENOMEM ? PME_EXIT_NOMEM : PME_EXIT_INPUT;
		goto out;
	}
	status = finish_stdout("scan");
out:
	pm_snap_iter_destroy(it);
	pkb_close(kb);
	free(prefix);
	free(from);
	free(pos);
	return status;
}

int pme_cmd_count(int argc, char **argv)
{
	struct opt o[] = {
	    {"prefix-hex", true, NULL}, {"check", false, NULL}, {"help", false, NULL}};
	char **pos = calloc((size_t)argc + 1, sizeof(char *));
	struct pkb *kb = NULL;
	uint8_t *prefix = NULL;
	size_t plen = 0;
	uint64_t c;
	const char *v;
	int npos, status;

	if (!pos)
		return PME_EXIT_NOMEM;
	status = parse_opts("count", argc, argv, o, NOPT(o), pos, &npos);
	if (status)
		goto out;
	if (optval(o, NOPT(o), "help")) {
		printf(
		    "usage: pmingest count KB [PREFIX | --prefix-hex HEX] [--check]\n\n"
		    "Prints the number of keys starting with PREFIX (all keys without one), in\n"
		    "time proportional to the prefix length: trie nodes record their counts.\n\n%s",
		    open_note);
		goto out;
	}
	v = optval(o, NOPT(o), "prefix-hex");
	if (npos < 1 || npos > 2 || (npos == 2 && v)) {
		fprintf(stderr,
			"usage: pmingest count KB [PREFIX | --prefix-hex HEX] (see --help)\n");
		status = PME_EXIT_USAGE;
		goto out;
	}
	if (v && (status = prefix_hex("count", v, &prefix, &plen)))
		goto out;
	status = open_kb("count", pos[0], optval(o, NOPT(o), "check") ? PKB_OPEN_CHECKSUM : 0, &kb);
	if (!status)
		status = text_prefix_ok("count", kb, npos == 2 ? pos[1] : NULL);
	if (status)
		goto out;
	if (pm_snap_count_prefix(pkb_snap(kb), npos == 2 ? (const uint8_t *)pos[1] : prefix,
				 npos == 2 ? strlen(pos[1]) : plen, &c)) {
		fprintf(stderr, "pmingest count: %s: corrupt KB (damaged trie)\n", pos[0]);
		status = PME_EXIT_INPUT;
		goto out;
	}
	printf("%" PRIu64 "\n", c);
	status = finish_stdout("count");
out:
	pkb_close(kb);
	free(prefix);
	free(pos);
	return status;
}

/* ------------------------------------------------------------------------------------------ */
/* stats and verify */

static const char *scheme_name(enum pme_scheme s)
{
	return s == PME_SCHEME_HASH ? "hash" : "prefix";
}

static void json_plain_str(FILE *f, const char *s)
{
	pme_json_str(f, (const uint8_t *)s, strlen(s));
}

/* Progress of pkb_verify's passes (and of stats' partition count after them): the bar starts
 * with the first pass. */
struct vprog {
	const char *cmd;	  /* "verify" or "stats" */
	bool quiet;		  /* no progress */
	struct pme_progress *p;	  /* NULL until the first pass */
	struct pkb_progress hook; /* what pkb_verify calls */
};

static void vprog_phase(void *arg, const char *name, const char *unit, uint64_t total)
{
	struct vprog *v = arg;

	if (!v->p)
		v->p = pme_progress_start(v->cmd, name, unit, total, v->quiet, false);
	else
		pme_progress_phase(v->p, name, unit, total);
}

static void vprog_step(void *arg, uint64_t done)
{
	pme_progress_update(((struct vprog *)arg)->p, done);
}

static void vprog_init(struct vprog *v, const char *cmd, bool quiet)
{
	*v = (struct vprog){cmd, quiet, NULL, {vprog_phase, vprog_step, v}};
}

/* Ends the bar (before the command prints its result or error). */
static void vprog_end(struct vprog *v)
{
	pme_progress_end(v->p);
	v->p = NULL;
}

int pme_cmd_stats(int argc, char **argv)
{
	struct opt o[] = {{"json", false, NULL}, {"quiet", false, NULL}, {"help", false, NULL}};
	char **pos = calloc((size_t)argc + 1, sizeof(char *));
	struct pkb *kb = NULL;
	struct pkb_err err;
	struct vprog vp;
	pm_snap_stats st;
	const struct pkb_info *in;
	uint64_t *part = NULL, pmin = 0, pmax = 0;
	char kt[128], vt[128];
	double mean = 0, bpk;
	bool json;
	size_t i;
	int npos, status, rc;

	if (!pos)
		return PME_EXIT_NOMEM;
	status = parse_opts("stats", argc, argv, o, NOPT(o), pos, &npos);
	if (status)
		goto out;
	if (optval(o, NOPT(o), "help")) {
		printf(
		    "usage: pmingest stats KB [--json] [--quiet]\n\n"
		    "Verifies the KB (as `pmingest verify`) and prints what it holds: counts, key\n"
		    "and value types, trie node kinds, bytes per key, depth, partition sizes and\n"
		    "imbalance (largest / mean; hash scheme: recomputed from the keys; prefix\n"
		    "scheme: ranges are a plan of the ingest, not recorded), checksums, inputs.\n"
		    "Progress goes to stderr pass by pass (sums: bytes checksummed; trie: keys\n"
		    "whose nodes are verified; keys: keys checked; parts: keys counted by\n"
		    "partition); --quiet silences it.\n");
		goto out;
	}
	if (npos != 1) {
		fprintf(stderr, "usage: pmingest stats KB [--json] [--quiet] (see --help)\n");
		status = PME_EXIT_USAGE;
		goto out;
	}
	json = optval(o, NOPT(o), "json") != NULL;
	status = open_kb("stats", pos[0], 0, &kb);
	if (status)
		goto out;
	vprog_init(&vp, "stats", optval(o, NOPT(o), "quiet") != NULL);
	rc = pkb_verify(kb, &st, &vp.hook, &err);
	if (rc) {
		vprog_end(&vp);
		fprintf(stderr, "pmingest stats: %s\n", err.msg);
		status = exit_of(rc);
		goto out;
	}
	in = pkb_info(kb);
	if (in->scheme == PME_SCHEME_HASH) {
		pm_snap_iter *it;
		const uint8_t *k;
		size_t len;
		uint64_t w, n = 0;

		part = calloc(in->partitions, sizeof(*part));
		if (!part || pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it)) {
			vprog_end(&vp);
			status = PME_EXIT_NOMEM;
			goto out;
		}
		vprog_phase(&vp, "parts", "keys", in->count);
		while (pm_snap_iter_next(it, &k, &len, &w) == 1) {
			part[pme_hash_partition(k, len, in->partitions)]++;
			if (++n % PM_SNAP_PROGRESS_STEP == 0)
				vprog_step(&vp, n);
		}
		vprog_step(&vp, n);
		pm_snap_iter_destroy(it);
		pmin = UINT64_MAX;
		for (i = 0; i < in->partitions; i++) {
			pmin = part[i] < pmin ? part[i] : pmin;
			pmax = part[i] > pmax ? part[i] : pmax;
		}
		mean = (double)in->count / in->partitions;
	}
	vprog_end(&vp);
	pio_type_name(&in->key_type, kt, sizeof(kt));
	pio_type_name(&in->value_type, vt, sizeof(vt));
	bpk = in->count ? (double)in->file_len / (double)in->count : 0;
	if (json) {
		printf("{\"file\": ");
		json_plain_str(stdout, pos[0]);
		printf(", \"format_version\": %u, \"scheme\": \"%s\", \"partitions\": %u, "
		       "\"key_type\": ",
		       in->version, scheme_name(in->scheme), in->partitions);
		json_plain_str(stdout, kt);
		printf(", \"value_type\": ");
		json_plain_str(stdout, vt);
		printf(", \"keys\": %" PRIu64 ", \"key_bytes\": %" PRIu64
		       ", \"file_bytes\": %" PRIu64 ", \"trie_bytes\": %" PRIu64
		       ", \"heap_bytes\": %" PRIu64 ", \"bytes_per_key\": %.3f, \"nodes\": %" PRIu64
		       ", \"leaf_nodes\": %" PRIu64 ", \"list_nodes\": %" PRIu64
		       ", \"dense_nodes\": %" PRIu64 ", \"prefix_bytes\": %" PRIu64
		       ", \"max_key_len\": %" PRIu64 ", \"max_depth\": %" PRIu64,
		       in->count, in->key_bytes, in->file_len, in->trie_len, in->heap_len, bpk,
		       st.nodes, st.leaf_nodes, st.list_nodes, st.dense_nodes, st.prefix_bytes,
		       st.max_key, st.max_depth);
		if (part)
			printf(", \"partition_min\": %" PRIu64 ", \"partition_max\": %" PRIu64
			       ", \"partition_mean\": %.3f, \"imbalance\": %.4f",
			       pmin, pmax, mean, mean > 0 ? (double)pmax / mean : 0.0);
		printf(", \"checksum\": \"%016" PRIx64 "\", \"trie_checksum\": \"%016" PRIx64
		       "\", \"heap_checksum\": \"%016" PRIx64 "\", \"inputs\": [",
		       in->checksum, in->trie_sum, in->heap_sum);
		for (i = 0; i < in->n_inputs; i++) {
			printf("%s{\"name\": ", i ? ", " : "");
			json_plain_str(stdout, in->inputs[i].name);
			printf(", \"bytes\": %" PRIu64 ", \"records\": %" PRIu64 "}",
			       in->inputs[i].bytes, in->inputs[i].records);
		}
		printf("]}\n");
	} else {
		printf("file            %s\n"
		       "format version  %u\n"
		       "scheme          %s, %u partitions\n"
		       "key type        %s\n"
		       "value type      %s\n"
		       "keys            %" PRIu64 "\n"
		       "key bytes       %" PRIu64 " (mean %.2f, longest %" PRIu64 ")\n"
		       "file bytes      %" PRIu64 " (%.2f per key; trie %" PRIu64 ", heap %" PRIu64
		       ")\n"
		       "nodes           %" PRIu64 " (leaf %" PRIu64 ", list %" PRIu64
		       ", dense %" PRIu64 "), prefix bytes %" PRIu64 ", depth %" PRIu64 "\n",
		       pos[0], in->version, scheme_name(in->scheme), in->partitions, kt, vt,
		       in->count, in->key_bytes,
		       in->count ? (double)in->key_bytes / (double)in->count : 0.0, st.max_key,
		       in->file_len, bpk, in->trie_len, in->heap_len, st.nodes, st.leaf_nodes,
		       st.list_nodes, st.dense_nodes, st.prefix_bytes, st.max_depth);
		if (part)
			printf("partitions      min %" PRIu64 ", max %" PRIu64
			       ", mean %.1f, imbalance (max/mean) %.4f\n",
			       pmin, pmax, mean, mean > 0 ? (double)pmax / mean : 0.0);
		else
			printf("partitions      key ranges of the ingest plan (not recorded)\n");
		printf("checksum        %016" PRIx64 " (trie %016" PRIx64 ", heap %016" PRIx64
		       ")\n",
		       in->checksum, in->trie_sum, in->heap_sum);
		for (i = 0; i < in->n_inputs; i++)
			printf("input           %s (%" PRIu64 " bytes, %" PRIu64 " records)\n",
			       in->inputs[i].name, in->inputs[i].bytes, in->inputs[i].records);
	}
	status = finish_stdout("stats");
out:
	free(part);
	pkb_close(kb);
	free(pos);
	return status;
}

int pme_cmd_verify(int argc, char **argv)
{
	struct opt o[] = {{"quiet", false, NULL}, {"help", false, NULL}};
	char **pos = calloc((size_t)argc + 1, sizeof(char *));
	struct pkb *kb = NULL;
	struct pkb_err err;
	struct vprog vp;
	int npos, status, rc, i;

	if (!pos)
		return PME_EXIT_NOMEM;
	status = parse_opts("verify", argc, argv, o, NOPT(o), pos, &npos);
	if (status)
		goto out;
	if (optval(o, NOPT(o), "help")) {
		printf(
		    "usage: pmingest verify KB... [--quiet]\n\n"
		    "Checks each KB completely: header, every section checksum (XXH3-64), every\n"
		    "structural invariant of the trie (node encodings, order, counts, layout),\n"
		    "the value heap, the totals. Prints \"KB: ok\" or the problem; exit status 3\n"
		    "when a KB is damaged, foreign, truncated or of a newer version. Progress\n"
		    "goes to stderr pass by pass (sums: bytes checksummed; trie: keys whose\n"
		    "nodes are verified; keys: keys checked); --quiet silences it and the \"ok\"\n"
		    "lines.\n");
		goto out;
	}
	if (npos < 1) {
		fprintf(stderr, "usage: pmingest verify KB... [--quiet] (see --help)\n");
		status = PME_EXIT_USAGE;
		goto out;
	}
	for (i = 0; i < npos; i++) {
		/* opened in O(1): pkb_verify checksums every section first, with progress */
		int s = open_kb("verify", pos[i], 0, &kb);

		if (s) {
			status = s;
			continue;
		}
		vprog_init(&vp, "verify", optval(o, NOPT(o), "quiet") != NULL);
		rc = pkb_verify(kb, NULL, &vp.hook, &err);
		vprog_end(&vp);
		if (rc) {
			fprintf(stderr, "pmingest verify: %s\n", err.msg);
			status = exit_of(rc);
		} else if (!optval(o, NOPT(o), "quiet")) {
			printf("%s: ok (%" PRIu64 " keys, checksum %016" PRIx64 ")\n", pos[i],
			       pkb_info(kb)->count, pkb_info(kb)->checksum);
		}
		pkb_close(kb);
		kb = NULL;
	}
	if (!status)
		status = finish_stdout("verify");
out:
	free(pos);
	return status;
}

/* ------------------------------------------------------------------------------------------ */
/* merge, intersect, subtract */

static bool parse_scheme(const char *s, enum pme_scheme *out)
{
	if (!strcmp(s, "hash"))
		*out = PME_SCHEME_HASH;
	else if (!strcmp(s, "prefix"))
		*out = PME_SCHEME_PREFIX;
	else
		return false;
	return true;
}

static bool parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;

	if (pme_parse_count(s, &v) || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static int algebra(const char *cmd, enum pkb_op op, int argc, char **argv)
{
	struct opt o[] = {{"output", true, NULL},   {"on-duplicate", true, NULL},
			  {"scheme", true, NULL},   {"partitions", true, NULL},
			  {"no-sync", false, NULL}, {"quiet", false, NULL},
			  {"help", false, NULL}};
	struct pme_progress *prog;
	uint64_t total = 0;
	char **pos = calloc((size_t)argc + 1, sizeof(char *));
	struct pkb **kbs = NULL;
	struct pkb_lock *lock = NULL;
	struct pkb_err err;
	struct pkb_write_opts wo = {.cancel = &pme_stop};
	enum pkb_dup dup = op == PKB_OP_MERGE ? PKB_DUP_LAST : PKB_DUP_FIRST;
	enum pme_scheme scheme;
	uint32_t parts;
	const char *out, *v;
	int npos, status, rc, i;

	if (!pos)
		return PME_EXIT_NOMEM;
	status = parse_opts(cmd, argc, argv, o, NOPT(o), pos, &npos);
	if (status)
		goto out;
	pme_catch_signals();
	if (optval(o, NOPT(o), "help")) {
		printf("usage: pmingest %s %s --output C [--on-duplicate POLICY]\n"
		       "                [--scheme hash|prefix] [--partitions P] [--no-sync] "
		       "[--quiet]\n\n",
		       cmd, op == PKB_OP_MERGE ? "A [B...]" : "A B...");
		if (op == PKB_OP_MERGE)
			printf(
			    "Writes C holding every key of any input (join; of one input: its "
			    "copy,\n"
			    "re-routed by --scheme/--partitions). A key held by several\n"
			    "inputs takes a value by POLICY: last (default: the last input's "
			    "value),\n"
			    "first, error (exit 5 if the values differ), sum, min, max "
			    "(numbers;\n"
			    "sum makes C's values int64, uint64 or float64: sums are 64-bit, and\n"
			    "one that leaves the integer range fails, exit 5; KBs of counts, from\n"
			    "ingest --on-duplicate count, add up by sum). sum, min and max "
			    "combine\n"
			    "the values the KBs hold (each its own result), not their records: "
			    "the\n"
			    "README says where that differs from one ingest over all the "
			    "inputs.\n");
		else if (op == PKB_OP_INTERSECT)
			printf(
			    "Writes C holding the keys present in every input (meet), valued by\n"
			    "POLICY over the inputs (default first: A's value; see merge).\n");
		else
			printf(
			    "Writes C holding the keys of A that no other input has, with A's\n"
			    "values and A's value type (the others' values may be of any type).\n");
		if (op == PKB_OP_SUBTRACT)
			printf("Inputs must have keys of one class (integer keys of one width; "
			       "exit 3\n"
			       "otherwise). C keeps A's key type.\n");
		else
			printf(
			    "Inputs must have keys of one class (integer keys of one width) and\n"
			    "values of one class, opaque keys and values of one size (exit 3\n"
			    "otherwise). C's types are widened as one ingest over all their "
			    "inputs\n"
			    "(and ingest --into) widen them: the larger width, a vlen string over "
			    "a\n"
			    "fixed one, UTF-8 over ASCII, A's byte order.\n");
		printf("Their schemes and partition counts may differ (records are re-routed).\n"
		       "C takes the scheme and P of A unless --scheme/--partitions say otherwise,\n"
		       "and lists the inputs of all.\n"
		       "Streams the inputs in key order: memory does not grow with their size.\n"
		       "Every input's checksums are verified first. C is written to a temporary\n"
		       "file, flushed and renamed: an interrupted run leaves C as it was.\n"
		       "--no-sync skips the flush (faster, for scratch KBs: after a crash of the\n"
		       "system, not of the program, C may be empty or damaged).\n"
		       "When C is also an input, jobs replacing C at the same time take turns\n"
		       "(a lock on C: the others wait, and say so).\n"
		       "Progress (keys read from the inputs) goes to stderr: a bar on a terminal,\n"
		       "a line every 10 s otherwise; --quiet silences it.\n");
		goto out;
	}
	out = optval(o, NOPT(o), "output");
	if (npos < (op == PKB_OP_MERGE ? 1 : 2) || !out) {
		fprintf(stderr, "usage: pmingest %s A B... --output C (see pmingest %s --help)\n",
			cmd, cmd);
		status = PME_EXIT_USAGE;
		goto out;
	}
	v = optval(o, NOPT(o), "on-duplicate");
	if (v && pkb_dup_parse(v, &dup)) {
		fprintf(stderr,
			"pmingest %s: unknown --on-duplicate '%s' (last, first, error, sum, "
			"min, max)\n",
			cmd, v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	kbs = calloc((size_t)npos, sizeof(*kbs));
	if (!kbs) {
		status = PME_EXIT_NOMEM;
		goto out;
	}
	for (i = 0; i < npos && !pme_same_file(out, pos[i]); i++)
		;
	if (i < npos) { /* C is an input: C's update lock, held until C is replaced */
		rc = pkb_lock_update(out, &pme_stop, pme_lock_waiting, (void *)cmd, &lock, &err);
		if (rc == PKB_ENOLOCK) {
			fprintf(stderr,
				"pmingest %s: warning: %s; a job that replaces it at the same time "
				"would lose records\n",
				cmd, err.msg);
		} else if (rc) {
			fprintf(stderr, "pmingest %s: %s\n", cmd, err.msg);
			status = exit_of(rc);
			goto out;
		}
	}
	for (i = 0; i < npos; i++) {
		status = open_kb(cmd, pos[i], PKB_OPEN_CHECKSUM, &kbs[i]);
		if (status)
			goto out;
		pkb_prefetch(kbs[i]);
	}
	scheme = pkb_info(kbs[0])->scheme;
	parts = pkb_info(kbs[0])->partitions;
	v = optval(o, NOPT(o), "scheme");
	if (v && !parse_scheme(v, &scheme)) {
		fprintf(stderr, "pmingest %s: unknown --scheme '%s' (hash, prefix)\n", cmd, v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	v = optval(o, NOPT(o), "partitions");
	if (v && !parse_u32(v, &parts)) {
		fprintf(stderr, "pmingest %s: bad --partitions '%s'\n", cmd, v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	wo.no_sync = optval(o, NOPT(o), "no-sync") != NULL;
	rc = pkb_check_output(out, &err);
	if (!rc) {
		for (i = 0; i < npos; i++)
			total += pkb_info(kbs[i])->count;
		prog =
		    pme_progress_start(cmd, cmd, "keys", total, optval(o, NOPT(o), "quiet"), false);
		wo.progress = prog ? pme_progress_hook : NULL;
		wo.progress_arg = prog;
		rc = pkb_combine(op, kbs, (size_t)npos, dup, scheme, parts, out, &wo, &err);
		pme_progress_end(prog);
	}
	if (rc) {
		fprintf(stderr, "pmingest %s: %s\n", cmd, err.msg);
		status = exit_of(rc);
	}
out:
	if (kbs)
		for (i = 0; i < npos; i++)
			pkb_close(kbs[i]);
	pkb_unlock(lock);
	free(kbs);
	free(pos);
	return status;
}

int pme_cmd_merge(int argc, char **argv)
{
	return algebra("merge", PKB_OP_MERGE, argc, argv);
}

int pme_cmd_intersect(int argc, char **argv)
{
	return algebra("intersect", PKB_OP_INTERSECT, argc, argv);
}

int pme_cmd_subtract(int argc, char **argv)
{
	return algebra("subtract", PKB_OP_SUBTRACT, argc, argv);
}

/* ------------------------------------------------------------------------------------------ */
/* export */

#define EXPORT_BATCH 65536

/* The exit status of an HDF5 writer's failure: content its types cannot hold is refused
 * (5), not an output that cannot be written (4). */
static int export_exit(int rc)
{
	switch (rc) {
	case PIO_ENOMEM:
		return PME_EXIT_NOMEM;
	case PIO_EINVAL:
		return PME_EXIT_USAGE;
	case PIO_EVALUE:
		return PME_EXIT_DATA;
	case PIO_ECANCELED:
		return PME_EXIT_INTERRUPTED;
	default:
		return PME_EXIT_OUTPUT;
	}
}

int pme_cmd_export(int argc, char **argv)
{
	struct opt o[] = {{"output", true, NULL}, {"layout", true, NULL}, {"dataset", true, NULL},
			  {"chunk", true, NULL},  {"gzip", true, NULL},	  {"shuffle", false, NULL},
			  {"check", false, NULL}, {"quiet", false, NULL}, {"help", false, NULL}};
	uint32_t u;
	struct pme_progress *prog = NULL;
	char msg[1200] = ""; /* the error, printed once the progress line is finished */
	uint64_t written = 0;
	char **pos = calloc((size_t)argc + 1, sizeof(char *)), *target = NULL;
	struct pkb *kb = NULL;
	struct pio_writer *w = NULL;
	struct pio_writer_opts wo;
	struct pio_err perr;
	struct pkb_err kerr;
	char kpath[PME_DSET_MAX], vpath[PME_DSET_MAX];
	pm_snap_iter *it = NULL;
	uint8_t *keys = NULL, *heap = NULL;
	size_t *key_off = NULL, kcap = 0, hcap = 0, hlen = 0, n = 0;
	uint64_t *vals = NULL;
	const struct pkb_info *in;
	const uint8_t *k;
	size_t len;
	uint64_t word;
	const char *v;
	bool blob;
	int npos, status, rc, got; /* got: the key iterator's result */

	if (!pos)
		return PME_EXIT_NOMEM;
	status = parse_opts("export", argc, argv, o, NOPT(o), pos, &npos);
	if (status)
		goto out;
	if (optval(o, NOPT(o), "help")) {
		printf(
		    "usage: pmingest export KB --output OUT.h5 [--layout compound|pair]\n"
		    "                         [--dataset PATH] [--chunk N] [--gzip LEVEL]\n"
		    "                         [--shuffle] [--check] [--quiet]\n\n"
		    "Writes the keys and values back as HDF5, in key order, with the KB's key and\n"
		    "value types (as the inputs declared them): one compound dataset {key, value}\n"
		    "(default \"/data\") or two datasets \"/keys\" and \"/values\" (--layout "
		    "pair;\n"
		    "--dataset PATH: PATH/keys and PATH/values, as pmingest gen writes them).\n"
		    "Datasets are chunked by --chunk records (default 65536, and at most 64 MiB\n"
		    "of records, and the KB's count), deflated with\n"
		    "--gzip LEVEL (1..9; default 0, none), after the shuffle filter with\n"
		    "--shuffle.\n"
		    "A key or value that the KB's type cannot hold in HDF5 stops it, naming\n"
		    "the record (exit 5): a NUL byte in a variable-length string (a KB that\n"
		    "joined fixed strings holding NUL with variable-length ones, or built from\n"
		    "TSV), a trailing pad byte under a fixed string's padding; so do values\n"
		    "of kb-build's variable-length opaque type (\"opaque vlen\"), which HDF5\n"
		    "has no type for here.\n"
		    "Checksums are verified first (--check, which get, scan and count take,\n"
		    "asks for nothing more here). The file is written under a temporary name\n"
		    "and renamed when complete. Progress (keys written) goes to stderr: a bar on\n"
		    "a terminal, a line every 10 s otherwise; --quiet silences it.\n");
		goto out;
	}
	if (npos != 1 || !optval(o, NOPT(o), "output")) {
		fprintf(stderr, "usage: pmingest export KB --output OUT.h5 (see --help)\n");
		status = PME_EXIT_USAGE;
		goto out;
	}
	memset(&wo, 0, sizeof(wo));
	wo.file = optval(o, NOPT(o), "output");
	wo.layout = PIO_LAYOUT_COMPOUND;
	v = optval(o, NOPT(o), "layout");
	if (v && !strcmp(v, "pair")) {
		wo.layout = PIO_LAYOUT_PAIR;
	} else if (v && strcmp(v, "compound")) {
		fprintf(stderr, "pmingest export: unknown --layout '%s' (compound, pair)\n", v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	v = optval(o, NOPT(o), "chunk");
	if (v && (!parse_u32(v, &u) || u == 0)) {
		fprintf(stderr,
			"pmingest export: --chunk needs a record count of at least 1, not "
			"'%s'\n",
			v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	wo.chunk_records = v ? u : 0;
	v = optval(o, NOPT(o), "gzip");
	if (v && (!parse_u32(v, &u) || u > 9)) {
		fprintf(stderr, "pmingest export: --gzip needs a level 0..9, not '%s'\n", v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	wo.gzip = v ? (int)u : 0;
	wo.shuffle = optval(o, NOPT(o), "shuffle") != NULL;
	v = optval(o, NOPT(o), "dataset");
	if (v && pme_out_dataset("export", v, &wo, kpath, vpath)) {
		status = PME_EXIT_USAGE;
		goto out;
	}
	if (pme_same_file(wo.file, pos[0])) {
		fprintf(stderr, "pmingest export: --output %s is the KB %s: it would be replaced\n",
			wo.file, pos[0]);
		status = PME_EXIT_USAGE;
		goto out;
	}
	status = open_kb("export", pos[0], PKB_OPEN_CHECKSUM, &kb);
	if (status)
		goto out;
	target = pkb_out_target(wo.file); /* a symbolic link's file, replaced in place */
	if (!target)
		goto out_nomem;
	wo.file = target;
	/* before the check makes a file */
	pme_catch_signals();
	rc = pkb_check_output(wo.file, &kerr); /* now, not after writing the whole file */
	if (rc) {
		fprintf(stderr, "pmingest export: %s\n", kerr.msg);
		status = exit_of(rc);
		goto out;
	}
	in = pkb_info(kb);
	wo.chunk_default = !wo.chunk_records;
	if (!wo.chunk_records)
		wo.chunk_records = PIO_CHUNK_DEFAULT;
	if (wo.chunk_records > in->count) /* a chunk past the data is space written for nothing */
		wo.chunk_records = in->count ? in->count : 1;
	pkb_prefetch(kb);
	blob = pkb_type_is_blob(&in->value_type);
	key_off = malloc((EXPORT_BATCH + 1) * sizeof(*key_off));
	vals = malloc(EXPORT_BATCH * sizeof(*vals));
	if (!key_off || !vals || pm_snap_iter_create(pkb_snap(kb), NULL, NULL, &it)) {
		goto out_nomem;
	}
	rc = pio_writer_open(&wo, &in->key_type, &in->value_type, &w, &perr);
	if (rc) {
		fprintf(stderr, "pmingest export: %s\n", perr.msg);
		status = export_exit(rc);
		goto out;
	}
	prog = pme_progress_start("export", "export", "keys", in->count,
				  optval(o, NOPT(o), "quiet"), false);
	key_off[0] = 0;
	for (;;) {
		got = pm_snap_iter_next(it, &k, &len, &word);
		if (got < 0) {
			pio_msgf(msg, sizeof(msg), "%s: corrupt KB (damaged trie)", pos[0]);
			status = PME_EXIT_INPUT;
			goto out;
		}
		if (got == 1) {
			if (key_off[n] + len > kcap) {
				size_t nc = (key_off[n] + len) * 2 + 4096;
				uint8_t *nk = realloc(keys, nc);

				if (!nk) {
					goto out_nomem;
				}
				keys = nk;
				kcap = nc;
			}
			if (len)
				memcpy(keys + key_off[n], k, len);
			key_off[n + 1] = key_off[n] + len;
			if (blob) {
				const uint8_t *d;
				size_t dl;

				if (pkb_blob(kb, word, &d, &dl)) {
					pio_msgf(msg, sizeof(msg), "%s: corrupt KB (heap)", pos[0]);
					status = PME_EXIT_INPUT;
					goto out;
				}
				if (pkb_heap_append(&heap, &hlen, &hcap, d, dl, &word)) {
					goto out_nomem;
				}
			}
			vals[n++] = word;
		}
		if (n && (n == EXPORT_BATCH || got == 0)) {
			if (pme_stop) {
				status = PME_EXIT_INTERRUPTED;
				snprintf(msg, sizeof(msg), "interrupted, nothing written");
				goto out;
			}
			rc = pio_writer_append(w, n, keys, key_off, vals, heap, hlen, &perr);
			if (rc) {
				snprintf(msg, sizeof(msg), "%s", perr.msg);
				status = export_exit(rc);
				goto out;
			}
			written += n;
			pme_progress_update(prog, written);
			n = 0;
			hlen = 0;
		}
		if (got == 0)
			break;
	}
	if (pme_stop) {
		status = PME_EXIT_INTERRUPTED;
		snprintf(msg, sizeof(msg), "interrupted, nothing written");
		goto out;
	}
	if (pkb_lost()) { /* the KB changed under the export (main says so): nothing in place */
		status = PME_EXIT_INPUT;
		goto out;
	}
	rc = pio_writer_commit(w, &perr);
	w = NULL;
	if (rc) {
		snprintf(msg, sizeof(msg), "%s", perr.msg);
		status = export_exit(rc);
	}
	goto out;
out_nomem:
	pio_msgf(msg, sizeof(msg), "%s: out of memory", wo.file);
	status = PME_EXIT_NOMEM;
out:
	pme_progress_end(prog);
	if (msg[0])
		fprintf(stderr, "pmingest export: %s\n", msg);
	pio_writer_abort(w);
	pm_snap_iter_destroy(it);
	pkb_close(kb);
	free(keys);
	free(key_off);
	free(vals);
	free(heap);
	free(pos);
	free(target);
	return status;
}

/* ------------------------------------------------------------------------------------------ */
/* kb-build (tests and demos) */

struct rec {
	uint8_t *key;  /* user key */
	size_t len;    /* its length */
	uint64_t word; /* value word, or heap offset */
	size_t line;   /* input line */
	size_t file;   /* input file, from 0 */
};

struct vheap {
	uint8_t *p; /* [u32 LE len][bytes] entries */
	size_t len; /* bytes used */
	size_t cap; /* bytes allocated */
};

static int heap_blob(void *ud, uint64_t w, const uint8_t **data, size_t *len)
{
	const struct vheap *h = ud;
	uint32_t l;

	if (w + 4 > h->len)
		return PKB_EINVAL;
	l = (uint32_t)h->p[w] | (uint32_t)h->p[w + 1] << 8 | (uint32_t)h->p[w + 2] << 16 |
	    (uint32_t)h->p[w + 3] << 24;
	if (l > h->len - w - 4)
		return PKB_EINVAL;
	*data = h->p + w + 4;
	*len = l;
	return 0;
}

static bool heap_add(struct vheap *h, const uint8_t *d, size_t n, uint64_t *w)
{
	if (h->len + 4 + n > h->cap) {
		size_t nc = (h->len + 4 + n) * 2 + 4096;
		uint8_t *p = realloc(h->p, nc);

		if (!p)
			return false;
		h->p = p;
		h->cap = nc;
	}
	*w = h->len;
	h->p[h->len] = (uint8_t)n;
	h->p[h->len + 1] = (uint8_t)(n >> 8);
	h->p[h->len + 2] = (uint8_t)(n >> 16);
	h->p[h->len + 3] = (uint8_t)(n >> 24);
	if (n)
		memcpy(h->p + h->len + 4, d, n);
	h->len += 4 + n;
	return true;
}

/* Undoes TSV escaping in place; returns the new length or (size_t)-1 on a bad escape. */
static size_t untsv(uint8_t *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (s[i] != '\\') {
			s[o++] = s[i];
			continue;
		}
		if (++i >= n)
			return (size_t)-1;
		switch (s[i]) {
		case '\\':
			s[o++] = '\\';
			break;
		case 't':
			s[o++] = '\t';
			break;
		case 'n':
			s[o++] = '\n';
			break;
		case 'r':
			s[o++] = '\r';
			break;
		case 'x':
			if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
				return (size_t)-1;
			s[o++] = (uint8_t)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
			i += 2;
			break;
		default:
			return (size_t)-1;
		}
	}
	return o;
}

/* Parses a value type name: int8..int64, uint8..uint64, float16/32/64, string, opaque. */
static bool parse_vtype(const char *s, struct pio_type *t, bool key)
{
	unsigned w;

	memset(t, 0, sizeof(*t));
	if (!strcmp(s, "string")) {
		t->cls = PIO_V_STRING;
		t->vlen = true;
		t->cset = PIO_CSET_UTF8;
		return true;
	}
	if (!strncmp(s, "opaque", 6)) {
		t->cls = PIO_V_OPAQUE;
		if (s[6] == ':')
			return sscanf(s + 7, "%u", &t->width) == 1 && t->width > 0;
		return !key && s[6] == 0;
	}
	if (sscanf(s, "int%u", &w) == 1 && !strncmp(s, "int", 3))
		t->cls = PIO_V_INT;
	else if (sscanf(s, "uint%u", &w) == 1)
		t->cls = PIO_V_UINT;
	else if (!key && sscanf(s, "float%u", &w) == 1)
		t->cls = PIO_V_FLOAT;
	else
		return false;
	if (w != 8 && w != 16 && w != 32 && w != 64)
		return false;
	if (t->cls == PIO_V_FLOAT && w == 8)
		return false;
	t->width = w / 8;
	return true;
}

/* Parses a numeric value of type t into a word. */
static bool parse_num(const struct pio_type *t, const char *s, uint64_t *w)
{
	char *end;

	errno = 0;
	if (t->cls == PIO_V_INT) {
		int64_t v;

		if (pme_parse_int(s, &v))
			return false;
		if (t->width < 8 &&
		    (v < -(1LL << (8 * t->width - 1)) || v >= (1LL << (8 * t->width - 1))))
			return false;
		*w = (uint64_t)v;
	} else if (t->cls == PIO_V_UINT) {
		if (pme_parse_count(s, w) || (t->width < 8 && *w >> (8 * t->width)))
			return false;
	} else {
		double d = strtod(s, &end);

		if (!*s || *end)
			return false;
		if (t->width == 4) /* the value the type holds, as ingest stores it */
			d = (float)d;
		else if (t->width == 2)
			d = half_round(d);
		memcpy(w, &d, sizeof(d));
	}
	return true;
}

static uint64_t rnd64(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Internal path of a user key for the scheme. */
static uint8_t *internal_path(enum pme_scheme sc, uint32_t parts, const uint8_t *k, size_t len,
			      uint8_t *buf, size_t *plen)
{
	if (sc == PME_SCHEME_PREFIX) {
		*plen = len;
		return (uint8_t *)k;
	}
	pme_partition_path(pme_hash_partition(k, len, parts), buf);
	if (len)
		memcpy(buf + PME_PART_PATH_LEN, k, len);
	*plen = len + PME_PART_PATH_LEN;
	return buf;
}

static const char build_help[] =
    "usage: pmingest kb-build [--input] FILE.tsv... --output KB [--scheme hash|prefix]\n"
    "           [--partitions P] [--key-type T] [--value-type T] [--on-duplicate POLICY]\n"
    "           [--order input|reverse|shuffle] [--seed N] [--split-join] [--input-name NAME]\n"
    "           [--no-sync]\n\n"
    "For tests and demos: builds a KB from a text file. The ingest engine is\n"
    "`pmingest ingest` (HDF5 inputs, parallel); this command is serial and simple.\n\n"
    "Inputs are read in order (later records win under --on-duplicate last, as for\n"
    "ingest and merge). One record per line, KEY<TAB>VALUE, with the TSV escaping of\n"
    "`pmingest scan` (so scan output reads back). Integer keys and numeric values in\n"
    "decimal, floats as C reads them, opaque keys and values in hex, strings escaped.\n"
    "  --key-type    string (default), opaque:N, int8..int64, uint8..uint64\n"
    "  --value-type  int64 (default), int8..int64, uint8..uint64, float16, float32, float64,\n"
    "                string, opaque\n"
    "  --on-duplicate last (default) | first | error (exit 5) | sum: for keys repeated in\n"
    "                the input, decided in input order (sum: 64-bit values, as ingest)\n"
    "  --scheme, --partitions   as for ingest (default hash, 256)\n"
    "  --order, --seed, --split-join   insert the records into the map in another order\n"
    "                (reverse, or shuffled by seed), or build two maps from alternate\n"
    "                records and join them: the KB bytes must not change (canonical test)\n"
    "  --input-name  with one input: the name the KB records for it (default: its path)\n"
    "  --no-sync     no flush before the KB is renamed into place (faster; after a crash\n"
    "                of the system, not of the program, the KB may be empty or damaged)\n";

int pme_cmd_kb_build(int argc, char **argv)
{
	struct opt o[] = {
	    {"input", true, NULL},	  {"output", true, NULL},     {"scheme", true, NULL},
	    {"partitions", true, NULL},	  {"key-type", true, NULL},   {"value-type", true, NULL},
	    {"on-duplicate", true, NULL}, {"order", true, NULL},      {"seed", true, NULL},
	    {"split-join", false, NULL},  {"input-name", true, NULL}, {"no-sync", false, NULL},
	    {"help", false, NULL}};
	char **pos = calloc((size_t)argc + 1, sizeof(char *));
	const char *inpath = NULL, *outpath, *v;
	const char **ins = NULL;
	struct pkb_meta meta;
	struct pkb_input *inputs = NULL;
	size_t nin = 0, fi;
	struct pkb_err err;
	struct pkb_write_opts wo = {.cancel = &pme_stop};
	enum pkb_dup dup = PKB_DUP_LAST;
	struct rec *recs = NULL;
	size_t nrec = 0, caprec = 0, i, lineno = 0, pcap = 64;
	struct vheap heap = {NULL, 0, 0};
	pm_map *m = NULL, *m2 = NULL, *ha = NULL, *hb = NULL;
	uint8_t *path = NULL;
	char *line = NULL;
	size_t linecap = 0;
	ssize_t got;
	FILE *f = NULL;
	struct stat st;
	uint64_t seed = 1;
	int npos, status, rc;
	bool blob;

	if (!pos)
		return PME_EXIT_NOMEM;
	status = parse_opts("kb-build", argc, argv, o, NOPT(o), pos, &npos);
	if (status)
		goto out;
	pme_catch_signals();
	if (optval(o, NOPT(o), "help")) {
		fputs(build_help, stdout);
		goto out;
	}
	outpath = optval(o, NOPT(o), "output");
	ins = calloc((size_t)npos + 1, sizeof(*ins));
	inputs = calloc((size_t)npos + 1, sizeof(*inputs));
	if (!ins || !inputs) {
		status = PME_EXIT_NOMEM;
		goto out;
	}
	if (optval(o, NOPT(o), "input"))
		ins[nin++] = optval(o, NOPT(o), "input");
	for (i = 0; i < (size_t)npos; i++)
		ins[nin++] = pos[i];
	if (!nin || !outpath || (nin > 1 && optval(o, NOPT(o), "input-name"))) {
		fprintf(stderr,
			"usage: pmingest kb-build --input FILE.tsv [FILE.tsv...] --output KB "
			"(see pmingest kb-build --help)\n");
		status = PME_EXIT_USAGE;
		goto out;
	}
	for (fi = 0; fi < nin; fi++) {
		if (pme_same_file(outpath, ins[fi])) {
			fprintf(stderr,
				"pmingest kb-build: --output %s is the input %s: it would be "
				"replaced\n",
				outpath, ins[fi]);
			status = PME_EXIT_USAGE;
			goto out;
		}
	}
	memset(&meta, 0, sizeof(meta));
	meta.scheme = PME_SCHEME_HASH;
	meta.partitions = 256;
	meta.key_type.cls = PIO_V_STRING;
	meta.key_type.vlen = true;
	meta.key_type.cset = PIO_CSET_UTF8;
	meta.value_type.cls = PIO_V_INT;
	meta.value_type.width = 8;
	if ((v = optval(o, NOPT(o), "scheme")) && !parse_scheme(v, &meta.scheme)) {
		fprintf(stderr, "pmingest kb-build: unknown --scheme '%s'\n", v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	if ((v = optval(o, NOPT(o), "partitions")) && !parse_u32(v, &meta.partitions)) {
		fprintf(stderr, "pmingest kb-build: bad --partitions '%s'\n", v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	if ((v = optval(o, NOPT(o), "key-type")) && !parse_vtype(v, &meta.key_type, true)) {
		fprintf(stderr, "pmingest kb-build: bad --key-type '%s'\n", v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	if ((v = optval(o, NOPT(o), "value-type")) && !parse_vtype(v, &meta.value_type, false)) {
		fprintf(stderr, "pmingest kb-build: bad --value-type '%s'\n", v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	if ((v = optval(o, NOPT(o), "on-duplicate")) &&
	    (pkb_dup_parse(v, &dup) || dup == PKB_DUP_MIN || dup == PKB_DUP_MAX)) {
		fprintf(stderr,
			"pmingest kb-build: bad --on-duplicate '%s' (last, first, error, "
			"sum)\n",
			v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	if ((v = optval(o, NOPT(o), "seed")) && pme_parse_count(v, &seed)) {
		fprintf(stderr, "pmingest kb-build: bad --seed '%s' (a non-negative integer)\n", v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	v = optval(o, NOPT(o), "order");
	if (v && strcmp(v, "input") && strcmp(v, "reverse") && strcmp(v, "shuffle")) {
		fprintf(stderr, "pmingest kb-build: bad --order '%s'\n", v);
		status = PME_EXIT_USAGE;
		goto out;
	}
	blob = pkb_type_is_blob(&meta.value_type);
	if (blob && dup == PKB_DUP_SUM) {
		fprintf(stderr, "pmingest kb-build: --on-duplicate sum needs numeric values\n");
		status = PME_EXIT_USAGE;
		goto out;
	}
	/* Read and decode every record of every input, in order. */
	for (fi = 0; fi < nin; fi++) {
		size_t first = nrec;

		inpath = ins[fi];
		lineno = 0;
		f = fopen(inpath, "rb");
		if (!f || fstat(fileno(f), &st)) {
			fprintf(stderr, "pmingest kb-build: cannot open %s: %s\n", inpath,
				strerror(errno));
			status = PME_EXIT_INPUT;
			goto out;
		}
		while ((got = getline(&line, &linecap, f)) >= 0) {
			size_t n = (size_t)got, kl, vl;
			char *tab;
			struct rec *r;

			if (pme_stop) {
				fprintf(stderr,
					"pmingest kb-build: interrupted, nothing written\n");
				status = PME_EXIT_INTERRUPTED;
				goto out;
			}
			lineno++;
			if (n && line[n - 1] == '\n')
				n--;
			tab = memchr(line, '\t', n);
			if (!tab) {
				fprintf(stderr,
					"pmingest kb-build: %s:%zu: no TAB between key and value\n",
					inpath, lineno);
				status = PME_EXIT_INPUT;
				goto out;
			}
			kl = untsv((uint8_t *)line, (size_t)(tab - line));
			vl = untsv((uint8_t *)tab + 1, n - (size_t)(tab - line) - 1);
			if (kl == (size_t)-1 || vl == (size_t)-1) {
				fprintf(stderr, "pmingest kb-build: %s:%zu: bad escape\n", inpath,
					lineno);
				status = PME_EXIT_INPUT;
				goto out;
			}
			if (nrec == caprec) {
				struct rec *nr;

				caprec = caprec ? 2 * caprec : 1024;
				nr = realloc(recs, caprec * sizeof(*recs));
				if (!nr) {
					status = PME_EXIT_NOMEM;
					goto out;
				}
				recs = nr;
			}
			r = &recs[nrec];
			r->line = lineno;
			r->file = fi;
			if (is_int_key(&meta.key_type)) {
				line[kl] = 0;
				r->key = malloc(8);
				r->len = meta.key_type.width;
				if (!r->key || !encode_int_key(&meta.key_type, line, r->key)) {
					fprintf(stderr,
						"pmingest kb-build: %s:%zu: bad integer key\n",
						inpath, lineno);
					free(r->key);
					status = PME_EXIT_INPUT;
					goto out;
				}
			} else {
				if (meta.key_type.cls == PIO_V_OPAQUE) {
					uint8_t *hx;
					size_t hl;

					line[kl] = 0;
					if (!unhex(line, &hx, &hl) || hl != meta.key_type.width) {
						fprintf(
						    stderr,
						    "pmingest kb-build: %s:%zu: bad opaque key\n",
						    inpath, lineno);
						status = PME_EXIT_INPUT;
						goto out;
					}
					r->key = hx;
					r->len = hl;
				} else {
					r->key = malloc(kl + 1);
					if (!r->key) {
						status = PME_EXIT_NOMEM;
						goto out;
					}
					memcpy(r->key, line, kl);
					r->len = kl;
				}
			}
			nrec++;
			tab[1 + vl] = 0;
			if (meta.value_type.cls == PIO_V_OPAQUE) {
				uint8_t *hx;
				size_t hl;

				if (!unhex(tab + 1, &hx, &hl) ||
				    !heap_add(&heap, hx, hl, &r->word)) {
					fprintf(stderr,
						"pmingest kb-build: %s:%zu: bad opaque value\n",
						inpath, lineno);
					status = PME_EXIT_INPUT;
					goto out;
				}
				free(hx);
			} else if (blob) {
				if (!heap_add(&heap, (uint8_t *)tab + 1, vl, &r->word)) {
					status = PME_EXIT_NOMEM;
					goto out;
				}
			} else if (!parse_num(&meta.value_type, tab + 1, &r->word)) {
				fprintf(stderr, "pmingest kb-build: %s:%zu: bad %s value '%s'\n",
					inpath, lineno,
					meta.value_type.cls == PIO_V_FLOAT ? "float" : "integer",
					tab + 1);
				status = PME_EXIT_INPUT;
				goto out;
			}
		}
		if (ferror(f)) { /* a directory, an I/O error: not the end of the file */
			fprintf(stderr, "pmingest kb-build: cannot read %s: %s\n", inpath,
				strerror(errno));
			status = PME_EXIT_INPUT;
			goto out;
		}
		fclose(f);
		f = NULL;
		inputs[fi].name = nin == 1 && optval(o, NOPT(o), "input-name")
				      ? optval(o, NOPT(o), "input-name")
				      : inpath;
		inputs[fi].bytes = (uint64_t)st.st_size;
		inputs[fi].records = nrec - first;
	}
	if (dup == PKB_DUP_SUM)
		meta.value_type.width = 8; /* sums are 64-bit, as for ingest and merge */
	/* The map in input order decides duplicates. */
	path = malloc(pcap);
	if (!path || pm_map_create(&m, NULL, NULL)) {
		status = PME_EXIT_NOMEM;
		goto out;
	}
	for (i = 0; i < nrec; i++) {
		uint8_t *p;
		size_t plen;
		uint64_t old;

		if (pme_stop) {
			fprintf(stderr, "pmingest kb-build: interrupted, nothing written\n");
			status = PME_EXIT_INTERRUPTED;
			goto out;
		}
		if (recs[i].len + PME_PART_PATH_LEN > pcap) {
			uint8_t *np;

			pcap = recs[i].len + PME_PART_PATH_LEN + 64;
			np = realloc(path, pcap);
			if (!np) {
				status = PME_EXIT_NOMEM;
				goto out;
			}
			path = np;
		}
		p = internal_path(meta.scheme, meta.partitions, recs[i].key, recs[i].len, path,
				  &plen);
		if (pm_map_get(m, p, plen, &old)) {
			uint64_t nw = recs[i].word;

			if (dup == PKB_DUP_FIRST)
				continue;
			if (dup == PKB_DUP_ERROR) {
				const uint8_t *a, *b;
				size_t al, bl;
				bool same = old == nw;

				if (blob && !heap_blob(&heap, old, &a, &al) &&
				    !heap_blob(&heap, nw, &b, &bl))
					same = al == bl && !memcmp(a, b, al);
				if (!same) {
					fprintf(stderr,
						"pmingest kb-build: %s:%zu: duplicate key with "
						"another value (--on-duplicate error)\n",
						ins[recs[i].file], recs[i].line);
					status = PME_EXIT_DATA;
					goto out;
				}
				continue;
			}
			if (dup == PKB_DUP_SUM) {
				if (meta.value_type.cls == PIO_V_FLOAT) {
					double d = word_double(old) + word_double(recs[i].word);

					memcpy(&nw, &d, sizeof(nw));
				} else {
					nw = old + recs[i].word;
				}
			}
			recs[i].word = nw;
		}
		if (pm_map_set(m, p, plen, recs[i].word, NULL) < 0) {
			status = PME_EXIT_NOMEM;
			goto out;
		}
	}
	/* Other histories for the same content (canonical-bytes tests). */
	v = optval(o, NOPT(o), "order");
	if ((v && strcmp(v, "input")) || optval(o, NOPT(o), "split-join")) {
		size_t *perm = malloc((nrec ? nrec : 1) * sizeof(*perm));
		bool split = optval(o, NOPT(o), "split-join") != NULL;

		if (!perm || pm_map_create(&ha, NULL, NULL) || pm_map_create(&hb, NULL, NULL)) {
			free(perm);
			status = PME_EXIT_NOMEM;
			goto out;
		}
		for (i = 0; i < nrec; i++)
			perm[i] = v && !strcmp(v, "reverse") ? nrec - 1 - i : i;
		if (v && !strcmp(v, "shuffle"))
			for (i = nrec; i > 1; i--) {
				size_t r = (size_t)(rnd64(&seed) % i), t = perm[i - 1];

				perm[i - 1] = perm[r];
				perm[r] = t;
			}
		for (i = 0; i < nrec; i++) {
			const struct rec *r = &recs[perm[i]];
			uint8_t *p;
			size_t plen;
			uint64_t w;

			if (r->len + PME_PART_PATH_LEN > pcap) {
				uint8_t *np;

				pcap = r->len + PME_PART_PATH_LEN + 64;
				np = realloc(path, pcap);
				if (!np) {
					free(perm);
					status = PME_EXIT_NOMEM;
					goto out;
				}
				path = np;
			}
			p = internal_path(meta.scheme, meta.partitions, r->key, r->len, path,
					  &plen);
			pm_map_get(m, p, plen, &w);
			if (pm_map_set(split && i % 2 ? hb : ha, p, plen, w, NULL) < 0) {
				free(perm);
				status = PME_EXIT_NOMEM;
				goto out;
			}
		}
		free(perm);
		if (split) {
			if (pm_map_join(ha, hb, NULL, NULL, &m2)) {
				status = PME_EXIT_NOMEM;
				goto out;
			}
		} else {
			m2 = ha;
			ha = NULL;
		}
		if (!pm_map_equal(m, m2)) {
			fprintf(stderr,
				"pmingest kb-build: internal error: maps built in two orders "
				"differ\n");
			status = PME_EXIT_DATA;
			goto out;
		}
	}
	meta.inputs = inputs;
	meta.n_inputs = nin;
	wo.no_sync = optval(o, NOPT(o), "no-sync") != NULL;
	rc = pkb_write(outpath, m2 ? m2 : m, &meta, heap_blob, &heap, &wo, &err);
	if (rc) {
		fprintf(stderr, "pmingest kb-build: %s\n", err.msg);
		status = exit_of(rc);
	}
out:
	if (f)
		fclose(f);
	free(line);
	for (i = 0; i < nrec; i++)
		free(recs[i].key);
	free(recs);
	free(heap.p);
	free(path);
	pm_map_destroy(m);
	pm_map_destroy(m2);
	pm_map_destroy(ha);
	pm_map_destroy(hb);
	free(ins);
	free(inputs);
	free(pos);
	return status;
}
