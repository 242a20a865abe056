/*
 * cmd_gen.c - `pmingest gen`: write a synthetic key/value HDF5 dataset (see pio_generate()).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "kb.h"
#include "pio.h"
#include "pme_cmd.h"

static void gen_usage(FILE *f)
{
	fprintf(f,
		"usage: pmingest gen --output FILE.h5 --records N [options]\n"
		"\n"
		"Writes N synthetic key/value records to an HDF5 file, deterministically: the\n"
		"same options and seed give a byte-identical file. The file is written under a\n"
		"temporary name and renamed when complete.\n"
		"\n"
		"options:\n"
		"  --output FILE       file to write (required; replaced if it exists)\n"
		"  --records N         number of records (required)\n"
		"  --key-kind K        random: random alphanumeric fixed-length strings\n"
		"                      u64: random unsigned 64-bit integers\n"
		"                      path: hierarchical paths like /proj/run042/cell/00017/attr\n"
		"                      words: words joined by '-', from /usr/share/dict/words if\n"
		"                      present, else a built-in list (default: random)\n"
		"  --key-len L         random: key length in bytes (default 16); path, words:\n"
		"                      0 = variable-length strings (default), else fixed-length\n"
		"                      strings of L bytes (longer keys cut); ignored for u64\n"
		"  --words FILE        word list for --key-kind words, one word a line\n"
		"  --dup-ratio R       share of records, 0..1, that repeat an earlier key\n"
		"                      (default 0)\n"
		"  --zipf S            repeated keys follow a Zipf law of exponent S (the first\n"
		"                      keys are the most frequent); 0 = uniform (default 0)\n"
		"  --value-type T      int64: record index i (default); float64: i/4;\n"
		"                      string: \"v<i>\" as variable-length strings\n"
		"  --layout L          compound: one dataset with fields key and value (default)\n"
		"                      pair: a keys dataset and a values dataset\n"
		"  --dataset NAME      compound: the dataset path (default /data); pair: the\n"
		"                      datasets are NAME/keys and NAME/values (default /keys and\n"
		"                      /values)\n"
		"  --chunk N           records per chunk (default 65536, at most 64 MiB of them;\n"
		"                      at most --records)\n"
		"  --gzip LEVEL        deflate level 1..9, 0 = none (default 0)\n"
		"  --shuffle           add the shuffle filter\n"
		"  --seed S            random seed (default 1)\n"
		"  --quiet             no progress (records written: a bar on a terminal, a\n"
		"                      line every 10 s otherwise, on stderr)\n"
		"  --help              this text\n"
		"\n"
		"exit status: 0 success, 2 bad command line, 4 output cannot be written,\n"
		"6 out of memory, 130 interrupted by SIGINT, SIGTERM or SIGHUP (no output left\n"
		"behind)\n");
}

int pme_out_dataset(const char *cmd, const char *path, struct pio_writer_opts *o, char *kpath,
		    char *vpath)
{
	size_t len = strlen(path);

	if (path[0] != '/' || len > 1000) { /* PATH/values fits PME_DSET_MAX */
		fprintf(stderr,
			"pmingest %s: --dataset must be an absolute path like /group/data\n", cmd);
		return PME_EXIT_USAGE;
	}
	if (o->layout == PIO_LAYOUT_PAIR) {
		snprintf(kpath, PME_DSET_MAX, "%s/keys", path);
		snprintf(vpath, PME_DSET_MAX, "%s/values", path);
		o->keys = kpath;
		o->values = vpath;
	} else if (path[len - 1] == '/') { /* "/", "/g/": a group */
		fprintf(stderr, "pmingest %s: --dataset %s names a group, not a dataset\n", cmd,
			path);
		return PME_EXIT_USAGE;
	} else {
		o->dataset = path;
	}
	return 0;
}

static int parse_u64(const char *opt, const char *s, uint64_t *out)
{
	if (!pme_parse_count(s, out))
		return 0;
	fprintf(stderr, "pmingest gen: %s needs a non-negative integer, not '%s'\n", opt,
		s ? s : "");
	return -1;
}

static int parse_double(const char *opt, const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	if (!s || !*s)
		goto bad;
	v = strtod(s, &end);
	if (errno || *end)
		goto bad;
	*out = v;
	return 0;
bad:
	fprintf(stderr, "pmingest gen: %s needs a number, not '%s'\n", opt, s ? s : "");
	return -1;
}

static int exit_status(int rc)
{
	if (rc == PIO_ECANCELED)
		return PME_EXIT_INTERRUPTED;
	switch (pio_error_class(rc)) {
	case PIO_CLASS_OK:
		return PME_EXIT_OK;
	case PIO_CLASS_USAGE:
		return PME_EXIT_USAGE;
	case PIO_CLASS_INPUT:
		return PME_EXIT_INPUT;
	case PIO_CLASS_NOMEM:
		return PME_EXIT_NOMEM;
	default:
		return PME_EXIT_OUTPUT;
	}
}

/* Whether a is one of gen's options that take a value (so that an unknown option last on the
 * line is called unknown, not one that lacks its value). */
static bool takes_value(const char *a)
{
	static const char *const opts[] = {"--output", "--records",   "--key-kind", "--key-len",
					   "--words",  "--dup-ratio", "--zipf",	    "--value-type",
					   "--layout", "--dataset",   "--chunk",    "--gzip",
					   "--seed"};

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (!strcmp(a, opts[i]))
			return true;
	return false;
}

int pme_cmd_gen(int argc, char **argv)
{
	struct pio_gen_opts o;
	struct pio_err err = {{0}};
	struct pkb_err kerr;
	const char *dataset = NULL;
	char kpath[PME_DSET_MAX], vpath[PME_DSET_MAX];
	bool have_records = false, quiet = false;
	char *target;
	struct pme_progress *prog;
	uint64_t u;
	int rc;

	memset(&o, 0, sizeof(o));
	o.seed = 1;
	o.out.layout = PIO_LAYOUT_COMPOUND;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq = strchr(a, '=');
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true; /* a takes the next argument as its value */
		char name[32];

		if (!strncmp(a, "--", 2) && eq && (size_t)(eq - a) < sizeof(name)) { /* --opt=V */
			memcpy(name, a, (size_t)(eq - a));
			name[eq - a] = '\0';
			if (takes_value(name)) {
				a = name;
				v = eq + 1;
				takes = false;
			}
		}

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			gen_usage(stdout);
			return PME_EXIT_OK;
		} else if (!strcmp(a, "--shuffle")) {
			o.out.shuffle = true;
			takes = false;
		} else if (!strcmp(a, "--quiet")) {
			quiet = true;
			takes = false;
		} else if (!takes_value(a)) {
			fprintf(stderr, "pmingest gen: unknown option '%s' (see --help)\n", a);
			return PME_EXIT_USAGE;
		} else if (!v) {
			fprintf(stderr, "pmingest gen: %s needs a value (see --help)\n", a);
			return PME_EXIT_USAGE;
		} else if (!strcmp(a, "--output")) {
			if (!*v) {
				fprintf(stderr, "pmingest gen: --output needs a file name\n");
				return PME_EXIT_USAGE;
			}
			o.out.file = v;
		} else if (!strcmp(a, "--records")) {
			if (parse_u64(a, v, &o.records))
				return PME_EXIT_USAGE;
			have_records = true;
		} else if (!strcmp(a, "--key-kind")) {
			if (!strcmp(v, "random"))
				o.key_kind = PIO_GEN_RANDOM;
			else if (!strcmp(v, "u64"))
				o.key_kind = PIO_GEN_U64;
			else if (!strcmp(v, "path"))
				o.key_kind = PIO_GEN_PATH;
			else if (!strcmp(v, "words"))
				o.key_kind = PIO_GEN_WORDS;
			else {
				fprintf(stderr,
					"pmingest gen: --key-kind must be random, u64, path "
					"or words, not '%s'\n",
					v);
				return PME_EXIT_USAGE;
			}
		} else if (!strcmp(a, "--key-len")) {
			if (parse_u64(a, v, &u))
				return PME_EXIT_USAGE;
			if (u > 512) {
				fprintf(stderr, "pmingest gen: --key-len is at most 512\n");
				return PME_EXIT_USAGE;
			}
			o.key_len = (uint32_t)u;
		} else if (!strcmp(a, "--words")) {
			o.words_file = v;
		} else if (!strcmp(a, "--dup-ratio")) {
			if (parse_double(a, v, &o.dup_ratio))
				return PME_EXIT_USAGE;
			if (!(o.dup_ratio >= 0 && o.dup_ratio <= 1)) {
				fprintf(stderr, "pmingest gen: --dup-ratio must be in 0..1\n");
				return PME_EXIT_USAGE;
			}
		} else if (!strcmp(a, "--zipf")) {
			if (parse_double(a, v, &o.zipf))
				return PME_EXIT_USAGE;
			if (!(o.zipf >= 0 && o.zipf <= 100)) {
				fprintf(stderr, "pmingest gen: --zipf must be in 0..100\n");
				return PME_EXIT_USAGE;
			}
		} else if (!strcmp(a, "--value-type")) {
			if (!strcmp(v, "int64"))
				o.value_kind = PIO_GEN_INT64;
			else if (!strcmp(v, "float64"))
				o.value_kind = PIO_GEN_FLOAT64;
			else if (!strcmp(v, "string"))
				o.value_kind = PIO_GEN_STRING;
			else {
				fprintf(stderr,
					"pmingest gen: --value-type must be int64, float64 or "
					"string, not '%s'\n",
					v);
				return PME_EXIT_USAGE;
			}
		} else if (!strcmp(a, "--layout")) {
			if (!strcmp(v, "compound"))
				o.out.layout = PIO_LAYOUT_COMPOUND;
			else if (!strcmp(v, "pair"))
				o.out.layout = PIO_LAYOUT_PAIR;
			else {
				fprintf(stderr,
					"pmingest gen: --layout must be compound or pair, not "
					"'%s'\n",
					v);
				return PME_EXIT_USAGE;
			}
		} else if (!strcmp(a, "--dataset")) {
			dataset = v;
		} else if (!strcmp(a, "--chunk")) {
			if (parse_u64(a, v, &o.out.chunk_records))
				return PME_EXIT_USAGE;
			if (o.out.chunk_records == 0) {
				fprintf(stderr, "pmingest gen: --chunk must be at least 1\n");
				return PME_EXIT_USAGE;
			}
		} else if (!strcmp(a, "--gzip")) {
			if (parse_u64(a, v, &u))
				return PME_EXIT_USAGE;
			if (u > 9) {
				fprintf(stderr, "pmingest gen: --gzip level must be 0..9\n");
				return PME_EXIT_USAGE;
			}
			o.out.gzip = (int)u;
		} else if (!strcmp(a, "--seed")) {
			if (parse_u64(a, v, &o.seed))
				return PME_EXIT_USAGE;
		} else {
			fprintf(stderr, "pmingest gen: unknown option '%s' (see --help)\n", a);
			return PME_EXIT_USAGE;
		}
		if (takes)
			i++;
	}
	if (!o.out.file || !have_records) {
		fprintf(stderr, "pmingest gen: --output and --records are required (see "
				"--help)\n");
		return PME_EXIT_USAGE;
	}
	if (dataset && pme_out_dataset("gen", dataset, &o.out, kpath, vpath))
		return PME_EXIT_USAGE;
	o.out.chunk_default = !o.out.chunk_records;
	if (!o.out.chunk_records)
		o.out.chunk_records = PIO_CHUNK_DEFAULT;
	if (o.out.chunk_records > o.records) /* a chunk past the data: space written for nothing */
		o.out.chunk_records = o.records ? o.records : 1;
	if (o.words_file && pme_same_file(o.out.file, o.words_file)) {
		fprintf(stderr,
			"pmingest gen: --output %s is the --words file: it would be "
			"replaced\n",
			o.out.file);
		return PME_EXIT_USAGE;
	}
	target = pkb_out_target(o.out.file); /* a symbolic link's file, replaced in place */
	if (!target) {
		fprintf(stderr, "pmingest gen: out of memory\n");
		return PME_EXIT_NOMEM;
	}
	o.out.file = target;
	pme_catch_signals(); /* before the check makes a file; read between slices */
	rc = pkb_check_output(o.out.file, &kerr); /* now, not after writing the whole file */
	if (rc) {
		fprintf(stderr, "pmingest gen: %s\n", kerr.msg);
		free(target);
		return rc == PKB_ENOMEM ? PME_EXIT_NOMEM : PME_EXIT_OUTPUT;
	}
	o.cancel = &pme_stop;
	prog = pme_progress_start("gen", "gen", "records", o.records, quiet, false);
	o.progress = prog ? pme_progress_hook : NULL;
	o.progress_arg = prog;
	rc = pio_generate(&o, &err);
	pme_progress_end(prog);
	free(target);
	if (rc) {
		fprintf(stderr, "pmingest gen: %s\n", err.msg);
		return exit_status(rc);
	}
	return PME_EXIT_OK;
}
