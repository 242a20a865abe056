/*
 * pio.h - the HDF5 input/output layer: reads key/value datasets into flat record batches,
 * writes them back (exporter), and writes synthetic datasets (generator).
 *
 * This header is the whole contract of io/. It is the only module of the program that calls
 * HDF5, and no hid_t crosses this interface.
 *
 * Model
 *   A job reads one or more inputs, in the order given. An input is one dataset holding
 *   records in one of two layouts:
 *     compound  a 1-D compound dataset with a key field and a value field
 *               (names configurable, defaults "key" and "value");
 *     pair      two 1-D datasets of equal length, one of keys and one of values (a 2-D
 *               dataset of 1-byte integers is also accepted: each row is one key or value).
 *   An input may take a slice (start, count) of its records. Datasets may sit in nested
 *   groups, be contiguous or chunked, with deflate (gzip) and shuffle filters, and may hold
 *   0 records.
 *
 *   Each record becomes a key (a byte string) and a 64-bit value word:
 *     keys    fixed-length strings with their padding stripped as HDF5 defines it (NULLTERM:
 *             up to the first NUL; NULLPAD: trailing NULs removed; SPACEPAD: trailing spaces
 *             removed); variable-length strings (their bytes, without the terminating NUL);
 *             opaque values and rows of 1-byte integers (raw bytes, NUL included); integers
 *             of 1, 2, 4 or 8 bytes, encoded big-endian in their declared width with the sign
 *             bit flipped for signed types, so that byte order equals numeric order. Keys may
 *             be empty and may contain any byte.
 *     values  integers: the value sign-extended (signed) or zero-extended (unsigned) to 64
 *             bits; floats (2, 4 or 8 bytes): converted exactly to double, the word is the
 *             double's bits; strings, opaque values and 1-byte integer rows: the byte offset,
 *             in the batch's value heap, of an entry made of a 4-byte little-endian length
 *             followed by that many bytes (strings with their padding stripped as for keys,
 *             opaque bytes as stored).
 *   The declared type of keys and values is kept in a struct pio_type, so that they can be
 *   printed and written back faithfully.
 *
 * Errors
 *   Functions that act return an int: 0 on success (some return 1 for "produced something",
 *   said where they do) or a negative PIO_E* code; pio_strerror() names a code. Functions that
 *   can fail on a file take a struct pio_err *, which may be NULL; on failure it receives one
 *   line naming the file, the dataset and the problem, with the innermost message of HDF5's
 *   own error stack folded in where HDF5 gave one. HDF5's automatic error printing is turned
 *   off by this layer (per thread, as HDF5 keeps it). Out-parameters are written only on
 *   success. pio_error_class() tells which exit status a code maps to.
 *
 * Memory
 *   io/ allocates with malloc/free (HDF5 does too). Who owns what is said per function.
 *
 * Threads
 *   HDF5 serialises all calls through one global lock; io/ calls it from one thread at a time.
 *   A reader or writer handle may be used by one thread at a time. Different handles may be
 *   used from different threads, but gain nothing from it. The prefetcher (pio_prefetch_*)
 *   runs one I/O thread of its own, which is then the only thread that uses the reader.
 *   There is no global mutable state in io/ besides HDF5's own.
 */
#ifndef PIO_H
#define PIO_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes. All are negative; 0 is success. Errno-compatible where one fits. */
enum {
	PIO_ENOMEM = -12,	 /* out of memory (-ENOMEM) */
	PIO_EINVAL = -22,	 /* invalid argument: NULL handle, empty job, bad option */
	PIO_ENOENT = -2,	 /* an input file does not exist or cannot be opened (-ENOENT) */
	PIO_ENOTHDF5 = -31001,	 /* the file exists but is not an HDF5 file */
	PIO_ECORRUPT = -31002,	 /* HDF5 refused to open the file: truncated or damaged */
	PIO_ENODATASET = -31003, /* the dataset does not exist, or the path is not a dataset */
	PIO_ENOFIELD = -31004,	 /* a compound field is missing, or the dataset is not compound */
	PIO_ETYPE = -31005,	 /* a key or value type that io/ does not support */
	PIO_ESHAPE = -31006,	 /* wrong rank: e.g. a 2-D dataset where 1-D is needed */
	PIO_ELENGTH = -31007,	 /* the keys and values datasets have different lengths */
	PIO_ERANGE = -31008,	 /* a record range ends past the end of its dataset */
	PIO_EMIXED = -31009,	 /* inputs of one job have key or value types that differ */
	PIO_EREAD = -31010,	 /* HDF5 failed while reading records (damaged data) */
	PIO_EWRITE = -31011,	 /* an output cannot be created or written, or rename failed */
	PIO_EVALUE = -31012,	 /* a key or value cannot be written in the output's type
				    (too long for a fixed string, NUL in a vlen string,
				    integer out of range) */
	PIO_ETHREAD = -31013,	 /* the prefetch thread could not be started */
	PIO_ECANCELED = -31014,	 /* the cancel flag was raised: nothing was written */
};

/* What a code means for the program's exit status (see pio_error_class()). */
enum pio_errclass {
	PIO_CLASS_OK,	  /* 0: success */
	PIO_CLASS_USAGE,  /* bad argument or option: PIO_EINVAL */
	PIO_CLASS_INPUT,  /* an input cannot be read: PIO_ENOENT .. PIO_EREAD */
	PIO_CLASS_OUTPUT, /* an output cannot be written: PIO_EWRITE, PIO_EVALUE */
	PIO_CLASS_NOMEM,  /* PIO_ENOMEM, PIO_ETHREAD (out of the process's resources) */
	PIO_CLASS_OTHER,  /* PIO_ECANCELED and unknown codes */
};

/* Returns a static, constant, one-line English name of an error code ("unknown pio error"
 * for a code that is not one of the above). Thread-safe. */
const char *pio_strerror(int rc);

/* Returns the class of a code, so a program maps all codes to exit statuses in one place.
 * Thread-safe. */
enum pio_errclass pio_error_class(int rc);

/* The one-line message of a failed call. Callers declare one on the stack and pass its
 * address; msg is always NUL-terminated after a failure (empty before any). */
struct pio_err {
	char msg[768]; /* "FILE: dataset DSET: problem (HDF5: innermost message)" */
};

/*
 * Formats a one-line message into dst[size] (size > 0), as vsnprintf does, except that a
 * message too long for dst (one naming a file of thousands of bytes) keeps about its first
 * third and its last two thirds, joined by "..." and cut between UTF-8 characters, so the
 * reason at its end survives (vsnprintf's plain truncation when size is 16 or less, or
 * when memory for the whole message is lacking). Line breaks become spaces. The engine's
 * and the KB layer's messages are made by it too. Thread-safe.
 */
void pio_vmsgf(char *dst, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void pio_msgf(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------------------------------
 * Types
 */

enum pio_vtype {
	PIO_V_INT,    /* signed integer, width 1, 2, 4 or 8 */
	PIO_V_UINT,   /* unsigned integer, width 1, 2, 4 or 8 */
	PIO_V_FLOAT,  /* IEEE float, width 2, 4 or 8 */
	PIO_V_STRING, /* string: fixed length (width bytes) or variable (vlen) */
	PIO_V_OPAQUE, /* fixed-size raw bytes: HDF5 opaque, or rows of 1-byte integers */
};

enum pio_strpad {
	PIO_PAD_NULLTERM, /* H5T_STR_NULLTERM: the string ends at the first NUL */
	PIO_PAD_NULLPAD,  /* H5T_STR_NULLPAD: padded with NULs (numpy's 'S' dtype) */
	PIO_PAD_SPACEPAD, /* H5T_STR_SPACEPAD: padded with spaces (Fortran) */
};

enum pio_cset {
	PIO_CSET_ASCII, /* H5T_CSET_ASCII */
	PIO_CSET_UTF8,	/* H5T_CSET_UTF8 */
};

/* The declared type of the keys or the values of a dataset. Plain data: copy freely. */
struct pio_type {
	enum pio_vtype cls;  /* class */
	uint32_t width;	     /* bytes: numbers 1/2/4/8 (floats 2/4/8); fixed strings and
				opaque: the fixed size; 0 for variable-length strings */
	bool vlen;	     /* PIO_V_STRING only: variable-length string */
	bool big_endian;     /* numbers only: stored big-endian in the file */
	bool u8rows;	     /* PIO_V_OPAQUE only: stored as 1-byte integers (an array
				field uint8[width] or a 2-D dataset), not as HDF5 opaque */
	bool u8signed;	     /* with u8rows: the 1-byte integers are signed (int8) */
	enum pio_strpad pad; /* PIO_V_STRING, fixed length only */
	enum pio_cset cset;  /* PIO_V_STRING only */
	char tag[64];	     /* PIO_V_OPAQUE, not u8rows: the opaque tag ("" if none) */
};

/* Writes a short name of t into buf (at most size bytes, NUL-terminated) and returns buf:
 * "int32", "uint8", "float16", "float64be", "string[16] nullpad ascii", "string vlen utf8",
 * "opaque[8]", "opaque[8] tag=TAG", "opaque vlen", "uint8[16]", "int8[16]". Thread-safe. */
char *pio_type_name(const struct pio_type *t, char *buf, size_t size);

/*
 * Widens m by t, as a job reads an input of type m and then one of type t: the type the
 * job's records take (pio_reader_types). The classes must agree, and for a key (key true)
 * an integer's width too, and an opaque type's size for keys and values; else returns
 * PIO_EMIXED and leaves m as it was. A variable-length
 * string wins over a fixed one, the larger width wins, UTF-8 wins over ASCII; everything
 * else (padding, byte order, opaque tag) stays m's, the first input's. Ingest --into and the
 * KB combinations (merge, intersect, subtract) widen by the same rule, so that their result
 * is the file one run over all the inputs writes.
 */
int pio_type_merge(struct pio_type *m, const struct pio_type *t, bool key);

/* ---------------------------------------------------------------------------------------
 * Batches
 *
 * A batch holds consecutive records of one input, flat:
 *
 *   keys     [k0 bytes][k1 bytes]...[k(n-1) bytes]      one arena, no separators
 *   key_off  [0][end k0][end k1]...[end k(n-1)]         n+1 offsets: key i is
 *                                                       keys[key_off[i] .. key_off[i+1])
 *   vals     [w0][w1]...[w(n-1)]                        one 64-bit value word per record
 *   heap     [len32 LE][bytes][len32 LE][bytes]...      string/opaque values only;
 *                                                       vals[i] is the offset of an entry
 */
struct pio_batch {
	size_t n;	       /* records in the batch */
	uint8_t *keys;	       /* key arena */
	size_t *key_off;       /* n+1 offsets into keys; key_off[0] == 0 */
	uint64_t *vals;	       /* n value words */
	uint8_t *heap;	       /* value heap (NULL or unused for numeric values) */
	size_t heap_len;       /* bytes used in heap */
	uint64_t first_record; /* index of record 0 of the batch in its dataset */
	int source;	       /* index of its input in the job, from 0 */
	/* Private: capacities, managed by io/. */
	size_t cap_n;	 /* records vals/key_off can hold */
	size_t cap_keys; /* bytes keys can hold */
	size_t cap_heap; /* bytes heap can hold */
};

/* Initialises b to an empty batch that owns nothing. Never fails. */
void pio_batch_init(struct pio_batch *b);

/* Frees what b owns and leaves it as pio_batch_init() does. b may be NULL. */
void pio_batch_free(struct pio_batch *b);

/* Reads the heap entry of value word w of batch b: *data points into b->heap (valid until b
 * is next filled or freed) and *len receives its length. Returns 0, or PIO_EINVAL when w does
 * not address a whole entry. */
int pio_batch_blob(const struct pio_batch *b, uint64_t w, const uint8_t **data, uint32_t *len);

/* ---------------------------------------------------------------------------------------
 * Reader
 */

#define PIO_TO_END UINT64_MAX /* count of a range that runs to the end of the dataset */

/* One input of a job. Strings are borrowed for the duration of pio_reader_open(). */
struct pio_input {
	const char *file;	 /* HDF5 file path */
	const char *dataset;	 /* compound layout: path of the compound dataset; or NULL */
	const char *key_field;	 /* compound layout: key field name; NULL means "key" */
	const char *value_field; /* compound layout: value field name; NULL means "value" */
	const char *keys;	 /* pair layout (dataset == NULL): path of the keys dataset */
	const char *values;	 /* pair layout: path of the values dataset */
	uint64_t start;		 /* first record to read (0 = from the beginning) */
	uint64_t count;		 /* records to read: PIO_TO_END for all after start */
};

struct pio_reader_opts {
	size_t mem_budget;    /* bytes the reader may use for its read buffer and for the
				 batches in flight (assumed: 3, for double buffering);
				 0 means 256 MiB. Budget-sized batches are capped at
				 batch_cap records (rounded to whole chunks) */
	size_t batch_records; /* if non-zero, use this many records per batch (rounded to
				 whole chunks where the dataset is chunked) instead of the
				 budget: for tests */
	size_t batch_cap;     /* the cap of budget-sized batches; 0 means 262144: for a
				 plain read, bigger batches only cost cache misses (a
				 consumer that gains from big batches raises it) */
	bool hdf5_strings;    /* variable-length strings through HDF5's conversion, after
				 their references are checked, instead of read by io/ from
				 the heap collections the check parses: the reference the
				 fast path is tested against */
};

/* What the reader knows about one input after opening it. */
struct pio_source_info {
	struct pio_type key_type;   /* declared key type */
	struct pio_type value_type; /* declared value type */
	uint64_t dataset_records;   /* records in the dataset */
	uint64_t start;		    /* first record read */
	uint64_t count;		    /* records read */
	uint64_t chunk_records;	    /* records per chunk along dimension 0 (1: contiguous) */
	uint64_t batch_records;	    /* records per batch (a multiple of chunk_records) */
};

struct pio_reader;

/* Registers with HDF5 the filters io/ brings (h5py's LZF, filter 32000, on Debian's liblzf);
 * pio_reader_open calls it. Once a process: later calls do nothing. */
void pio_register_filters(void);

/* Opens a job of n inputs (n >= 1), read in the order given. Every input is checked now:
 * the file opens, the datasets exist with a supported rank and type, pair datasets have equal
 * lengths, the range fits. All inputs must have keys of the same class (integers: the same
 * class and width) and values of the same class; see pio_reader_types().
 * opts may be NULL for defaults. On success *out receives a reader the caller must close with
 * pio_reader_close(). Returns 0, PIO_EINVAL (also for a compound input whose key and value
 * fields are one field), PIO_ENOMEM, or an input error: PIO_ENOENT,
 * PIO_ENOTHDF5, PIO_ECORRUPT, PIO_ENODATASET, PIO_ENOFIELD, PIO_ETYPE, PIO_ESHAPE,
 * PIO_ELENGTH, PIO_ERANGE, PIO_EMIXED. */
int pio_reader_open(const struct pio_input *inputs, size_t n, const struct pio_reader_opts *opts,
		    struct pio_reader **out, struct pio_err *err);

/* Closes r and everything it opened. r may be NULL. Must not be called while a prefetcher
 * started on r is running. */
void pio_reader_close(struct pio_reader *r);

/* Number of inputs, and total records the job will produce (sum of the ranges). */
size_t pio_reader_sources(const struct pio_reader *r);
uint64_t pio_reader_total(const struct pio_reader *r);

/* Copies what is known about input i into *info. Returns 0, or PIO_EINVAL if i is out of
 * range. */
int pio_reader_source_info(const struct pio_reader *r, size_t i, struct pio_source_info *info);

/* The job's key and value types, merged over its inputs: the type of input 0, widened where
 * inputs differ (widest integer or float; strings: variable-length if any input is, else the
 * longest fixed length; opaque: the largest size). This is the type an export of the whole
 * job should use. Either pointer may be NULL. */
void pio_reader_types(const struct pio_reader *r, struct pio_type *key, struct pio_type *value);

/* Fills b (caller-owned, reused across calls: its arrays grow as needed) with the next batch
 * of the job. A batch holds records of one input only, ends at a chunk boundary of its dataset
 * (or at the end of its range) and holds at most the batch size of that input; inputs with no
 * records produce no batch. Returns 1 when b holds a batch (b->n >= 1), 0 when the job is done
 * (b->n == 0), or PIO_ENOMEM, PIO_EREAD, PIO_EINVAL; after an error the reader should only
 * be closed. Not to be called while a prefetcher runs on r. */
int pio_reader_next(struct pio_reader *r, struct pio_batch *b, struct pio_err *err);

/* ---------------------------------------------------------------------------------------
 * Prefetch (double buffering)
 *
 * A prefetcher owns nbuf batches and one I/O thread that fills them in order with
 * pio_reader_next(), while the caller works on the batch handed out last.
 */
struct pio_prefetch;

/* Starts a prefetcher of nbuf batches (0 means 2) on reader r, which must not be used by the
 * caller until pio_prefetch_stop(). Returns 0, PIO_EINVAL, PIO_ENOMEM or PIO_ETHREAD. */
int pio_prefetch_start(struct pio_reader *r, unsigned nbuf, struct pio_prefetch **out,
		       struct pio_err *err);

/* Hands out the next filled batch in *b, and takes back the one handed out by the previous
 * call (which the caller must not use any more). The batch stays owned by the prefetcher and
 * valid until the next call or pio_prefetch_stop(). Blocks until the batch is read.
 * Returns 1 with a batch, 0 at the end of the job (*b set to NULL), or the error the I/O
 * thread met (its message in *err); after 0 or an error, call pio_prefetch_stop(). */
int pio_prefetch_next(struct pio_prefetch *p, struct pio_batch **b, struct pio_err *err);

/* Stops the I/O thread (it finishes the batch it is reading, at most), joins it and frees the
 * batches. The reader may then be used or closed. p may be NULL. */
void pio_prefetch_stop(struct pio_prefetch *p);

/* ---------------------------------------------------------------------------------------
 * Writer (exporter)
 */

enum pio_layout {
	PIO_LAYOUT_COMPOUND, /* one 1-D compound dataset {key, value} */
	PIO_LAYOUT_PAIR,     /* two datasets: keys and values (1-D; 2-D for uint8 rows) */
};

#define PIO_CHUNK_DEFAULT 65536 /* records per chunk of a written dataset */

/* The name of an output's temporary file beside it: DIR/[.]BASE.tmp.PID[.N] (hidden: the
 * leading dot; N when not 0), BASE cut to PIO_TMP_BASE bytes so that the name stays within
 * NAME_MAX (255) for any valid output name. size: at least strlen(path) + 48. */
#define PIO_TMP_BASE 200
static inline void pio_tmp_name(char *buf, size_t size, const char *path, bool hidden, long pid,
				int n)
{
	const char *base = strrchr(path, '/');
	int dl = base ? (int)(base + 1 - path) : 0, bl;

	base = base ? base + 1 : path;
	bl = strlen(base) > PIO_TMP_BASE ? PIO_TMP_BASE : (int)strlen(base);
	if (n)
		snprintf(buf, size, "%.*s%s%.*s.tmp.%ld.%d", dl, path, hidden ? "." : "", bl, base,
			 pid, n);
	else
		snprintf(buf, size, "%.*s%s%.*s.tmp.%ld", dl, path, hidden ? "." : "", bl, base,
			 pid);
}

struct pio_writer_opts {
	const char *file;	 /* final path of the file to write (replaced on commit) */
	enum pio_layout layout;	 /* compound or pair */
	const char *dataset;	 /* compound: dataset path; NULL means "/data" */
	const char *key_field;	 /* compound: NULL means "key" */
	const char *value_field; /* compound: NULL means "value" */
	const char *keys;	 /* pair: keys dataset path; NULL means "/keys" */
	const char *values;	 /* pair: values dataset path; NULL means "/values" */
	uint64_t chunk_records;	 /* records per chunk; 0 means PIO_CHUNK_DEFAULT */
	bool chunk_default;	 /* chunk_records is a default (the records' count, say): a
				    chunk of long records is cut to 64 MiB */
	int gzip;		 /* deflate level 0..9; 0 means no compression */
	bool shuffle;		 /* add the shuffle filter (before deflate) */
};

struct pio_writer;

/* Creates a writer: the file is created under a temporary name in the same directory
 * (FILE.tmp.PID) with chunked, extendible datasets of the given key and value types (a
 * compound dataset or two datasets; intermediate groups are created). Keys and values come in
 * the batch encoding described at the top: keys as bytes (integer keys big-endian with the
 * sign bit flipped, of the key type's width), value words (integers, float bits as double,
 * or heap offsets). Nothing appears under the final name before pio_writer_commit().
 * Strings in opts are copied. Returns 0, PIO_EINVAL (bad option or unsupported type),
 * PIO_ENOMEM, or PIO_EWRITE. */
int pio_writer_open(const struct pio_writer_opts *opts, const struct pio_type *key_type,
		    const struct pio_type *value_type, struct pio_writer **out,
		    struct pio_err *err);

/* Appends n records: key i is keys[key_off[i] .. key_off[i+1]), its value word vals[i];
 * string/opaque value words are offsets of entries in heap (heap_len bytes). All borrowed for
 * the call. Returns 0, PIO_EVALUE (a key or value does not fit the type: the message names
 * the record), PIO_ENOMEM, or PIO_EWRITE. After an error, only pio_writer_abort(). */
int pio_writer_append(struct pio_writer *w, size_t n, const uint8_t *keys, const size_t *key_off,
		      const uint64_t *vals, const uint8_t *heap, size_t heap_len,
		      struct pio_err *err);

/* Appends the records of a batch (a shorthand for pio_writer_append()). */
int pio_writer_append_batch(struct pio_writer *w, const struct pio_batch *b, struct pio_err *err);

/* Flushes and closes the file, then renames it to its final name. Frees w whatever the
 * outcome; on failure the temporary file is removed. Returns 0 or PIO_EWRITE. */
int pio_writer_commit(struct pio_writer *w, struct pio_err *err);

/* Closes and removes the temporary file and frees w. w may be NULL. */
void pio_writer_abort(struct pio_writer *w);

/* ---------------------------------------------------------------------------------------
 * Generator
 */

enum pio_gen_keys {
	PIO_GEN_RANDOM, /* random alphanumeric keys of key_len bytes, fixed strings */
	PIO_GEN_U64,	/* random uint64 keys (unsigned 64-bit integer dataset) */
	PIO_GEN_PATH,	/* hierarchical paths "/proj/run042/cell/00017/attr" */
	PIO_GEN_WORDS,	/* words from a word list, joined by '-' */
};

enum pio_gen_values {
	PIO_GEN_INT64,	 /* value of record i: i */
	PIO_GEN_FLOAT64, /* value of record i: i / 4.0 */
	PIO_GEN_STRING,	 /* value of record i: "v<i>" (variable-length string) */
};

struct pio_gen_opts {
	struct pio_writer_opts out; /* file, layout, dataset names, chunk, gzip */
	uint64_t records;	    /* records to write */
	enum pio_gen_keys key_kind; /* how keys are made */
	uint32_t key_len;	    /* RANDOM: bytes per key (0 means 16); PATH, WORDS: 0 for
				       variable-length strings, else fixed strings of key_len
				       bytes (longer keys are cut) */
	double dup_ratio;	    /* 0..1: share of records that repeat an earlier key */
	double zipf;		    /* 0: repeated keys chosen uniformly among earlier keys;
				       s > 0: by a Zipf law of exponent s (the first keys are
				       the most frequent) */
	enum pio_gen_values value_kind;
	uint64_t seed;		       /* same seed and options, same file content */
	const char *words_file;	       /* WORDS: word list; NULL means /usr/share/dict/words
					  when present, else a built-in list */
	volatile sig_atomic_t *cancel; /* if non-NULL: stop with PIO_ECANCELED once *cancel
					  is set (a signal handler's flag), checked between
					  slices of records */
	void (*progress)(void *arg, uint64_t records); /* if non-NULL: called after each
							  slice with the records
							  written so far */
	void *progress_arg;			       /* ... its first argument */
};

/* Writes a synthetic dataset as opts describes, through a pio_writer (temporary file, then
 * rename). Deterministic: the same options give a byte-identical file. Returns 0, PIO_EINVAL,
 * PIO_ENOMEM, PIO_EWRITE, PIO_ECANCELED (the temporary file removed, nothing written). */
int pio_generate(const struct pio_gen_opts *opts, struct pio_err *err);

#ifdef __cplusplus
}
#endif

#endif /* PIO_H */
