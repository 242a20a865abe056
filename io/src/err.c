/*
 * err.c - error codes, messages, and folding HDF5's error stack into them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pio_internal.h"

const char *pio_strerror(int rc)
{
	switch (rc) {
	case 0:
		return "success";
	case PIO_ENOMEM:
		return "out of memory";
	case PIO_EINVAL:
		return "invalid argument";
	case PIO_ENOENT:
		return "file not found or not readable";
	case PIO_ENOTHDF5:
		return "not an HDF5 file";
	case PIO_ECORRUPT:
		return "HDF5 file truncated or damaged";
	case PIO_ENODATASET:
		return "dataset not found";
	case PIO_ENOFIELD:
		return "compound field not found";
	case PIO_ETYPE:
		return "unsupported key or value type";
	case PIO_ESHAPE:
		return "dataset has the wrong number of dimensions";
	case PIO_ELENGTH:
		return "keys and values datasets differ in length";
	case PIO_ERANGE:
		return "record range past the end of the dataset";
	case PIO_EMIXED:
		return "inputs of the job have different key or value types";
	case PIO_EREAD:
		return "HDF5 read error";
	case PIO_EWRITE:
		return "output cannot be written";
	case PIO_EVALUE:
		return "key or value does not fit the output type";
	case PIO_ETHREAD:
		return "cannot start the I/O thread";
	case PIO_ECANCELED:
		return "interrupted";
	default:
		return "unknown pio error";
	}
}

enum pio_errclass pio_error_class(int rc)
{
	switch (rc) {
	case 0:
		return PIO_CLASS_OK;
	case PIO_EINVAL:
		return PIO_CLASS_USAGE;
	case PIO_ENOENT:
	case PIO_ENOTHDF5:
	case PIO_ECORRUPT:
	case PIO_ENODATASET:
	case PIO_ENOFIELD:
	case PIO_ETYPE:
	case PIO_ESHAPE:
	case PIO_ELENGTH:
	case PIO_ERANGE:
	case PIO_EMIXED:
	case PIO_EREAD:
		return PIO_CLASS_INPUT;
	case PIO_EWRITE:
	case PIO_EVALUE:
		return PIO_CLASS_OUTPUT;
	case PIO_ENOMEM:
	case PIO_ETHREAD: /* a thread's stack or a thread: the process's resources */
		return PIO_CLASS_NOMEM;
	default:
		return PIO_CLASS_OTHER;
	}
}

void pio_silence_hdf5(void)
{
	/* No H5close() at exit: when closing a file fails (its last metadata cannot be written
	 * on a full disk), HDF5 1.10 frees the file but keeps its ID, and the close it retries
	 * at exit crashes. Every file is closed (or abandoned and unlinked) before exit; the
	 * first call, before any other, keeps the library from registering its handler. */
	(void)H5dont_atexit();
	H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

struct walk {
	char desc[256]; /* the innermost description seen */
	bool found;	/* desc holds something */
	bool nomem;	/* an entry says HDF5 could not allocate memory */
};

/*
 * Copies HDF5's description of an error to buf. The file driver's own, "file write failed:
 * time = ..., filename = ..., file descriptor = 3, errno = 28, error message = 'No space left
 * on device', buf = ..., ...", becomes "file write failed: No space left on device": the
 * reason would otherwise be cut off at the end of the line.
 */
static void os_error_desc(const char *desc, char *buf, size_t size)
{
	static const char tag[] = "error message = '";
	const char *time = strstr(desc, ": time = "), *m = strstr(desc, tag), *end = NULL;

	if (time && m > time) {
		m += sizeof(tag) - 1;
		end = strchr(m, '\'');
	}
	if (end)
		snprintf(buf, size, "%.*s: %.*s", (int)(time - desc), desc, (int)(end - m), m);
	else
		snprintf(buf, size, "%s", desc);
}

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
	struct walk *w = data;

	(void)n;
	if (e->maj_num == H5E_RESOURCE &&
	    (e->min_num == H5E_CANTALLOC || e->min_num == H5E_NOSPACE))
		w->nomem = true;
	/* Walking upward, the first entry is the innermost one: the place the error arose. */
	if (!w->found && e->desc && e->desc[0]) {
		os_error_desc(e->desc, w->desc, sizeof(w->desc));
		w->found = true;
	}
	return 0;
}

struct says {
	const char *needle; /* text looked for */
	bool found;	    /* some description holds it */
};

static herr_t says_cb(unsigned n, const H5E_error2_t *e, void *data)
{
	struct says *s = data;

	(void)n;
	if (e->desc && strstr(e->desc, s->needle))
		s->found = true;
	return 0;
}

bool pio_hdf5_says(const char *text)
{
	struct says s = {text, false};

	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, says_cb, &s);
	return s.found;
}

int pio_seterr(struct pio_err *err, int rc, const char *file, const char *dset, const char *fmt,
	       ...)
{
	struct walk w = {.found = false, .nomem = false};
	char text[512], *all = NULL;
	va_list ap;
	size_t len;
	int n;

	H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &w);
	H5Eclear2(H5E_DEFAULT);
	/* a read or write that failed for want of memory is out of memory, not damage or an
	 * output error (HDF5: "memory allocation failed for chunk") */
	if (w.nomem && (rc == PIO_EREAD || rc == PIO_EWRITE || rc == PIO_ECORRUPT))
		rc = PIO_ENOMEM;
	if (!err)
		return rc;
	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(text) && (all = malloc((size_t)n + 1))) { /* names a file too */
		va_start(ap, fmt);
		vsnprintf(all, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	if (dset)
		pio_msgf(err->msg, sizeof(err->msg), "%s: dataset %s: %s", file ? file : "?", dset,
			 all ? all : text);
	else
		pio_msgf(err->msg, sizeof(err->msg), "%s: %s", file ? file : "?", all ? all : text);
	free(all);
	len = strlen(err->msg);
	if (w.found && len + 16 < sizeof(err->msg)) /* one line, whatever HDF5 said */
		pio_msgf(err->msg + len, sizeof(err->msg) - len, " (HDF5: %s)", w.desc);
	return rc;
}
