/*
 * pio_internal.h - declarations shared by the files of io/src. Not API.
 */
#ifndef PIO_INTERNAL_H
#define PIO_INTERNAL_H

#include <hdf5.h>

#include "pio.h"

/* How one field of a read buffer record is decoded. */
enum fkind {
	FK_INT,	  /* native signed integer of size bytes */
	FK_UINT,  /* native unsigned integer of size bytes */
	FK_FLOAT, /* native float (size 4) or double (size 8) */
	FK_FSTR,  /* fixed-length string of size bytes, padding per pad */
	FK_VSTR,  /* char * to a NUL-terminated string (may be NULL) */
	FK_RAW,	  /* size raw bytes (opaque, 1-byte integer rows) */
};

struct field {
	enum fkind kind;     /* decoder */
	size_t off;	     /* offset of the field in a buffer record */
	size_t size;	     /* bytes of the field in memory (FK_VSTR: sizeof(char *)) */
	uint32_t width;	     /* declared width: integer keys are encoded in this many bytes */
	enum pio_strpad pad; /* FK_FSTR only */
};

/* Sets err to "FILE: dataset DSET: <formatted text>" (the dataset part left out when dset is
 * NULL), with " (HDF5: innermost message)" appended when HDF5's error stack holds one, which
 * is then cleared. Returns rc so callers write `return seterr(...)`, or PIO_ENOMEM in place of
 * PIO_EREAD, PIO_EWRITE or PIO_ECORRUPT when the stack says HDF5 ran out of memory. */
int pio_seterr(struct pio_err *err, int rc, const char *file, const char *dset, const char *fmt,
	       ...) __attribute__((format(printf, 5, 6)));

/* Turns off HDF5's automatic error printing for the calling thread. */
void pio_silence_hdf5(void);

/* Checks, before any record is read, that HDF5 can read dataset d (path in f, named file)
 * as stored: its filters can be loaded, a virtual dataset's sources exist, hold what their
 * mappings take and cover every record, external raw files exist and are long enough. */
int pio_check_storage(hid_t f, hid_t d, const char *file, const char *path, struct pio_err *err);

/* Whether a description on HDF5's current error stack contains text (the stack is kept). */
bool pio_hdf5_says(const char *text);

/* Describes an HDF5 type in words ("int32", "compound", "variable-length sequence", ...). */
void pio_h5type_desc(hid_t t, char *buf, size_t size);

/* Classifies HDF5 type t (a dataset's type or a compound member's) into *pt and the decoder
 * *f (offset left 0), and creates the native memory type to read it with in *mem (the caller
 * closes it). rows > 0 means the dataset is 2-D with rows of that many elements (only 1-byte
 * integers are accepted then). Returns 0 or PIO_ETYPE with the reason in why. */
int pio_classify(hid_t t, hsize_t rows, struct pio_type *pt, struct field *f, hid_t *mem, char *why,
		 size_t whysize);

/* The HDF5 file type for *t (caller closes), or H5I_INVALID_HID. For u8rows opaque types it
 * is the array type uint8[width] (compound member use). */
hid_t pio_filetype(const struct pio_type *t);

/* Makes *buf (*cap bytes) hold at least need bytes. Returns 0 or PIO_ENOMEM (*buf unchanged). */
int pio_grow_buf(uint8_t **buf, size_t *cap, size_t need);

/* Reads records [pos, pos+n) of dataset d (rank 1, or 2 with rows of rowlen elements) into
 * buf with memory type mem and transfer properties dxpl. Returns 0, or -1 with HDF5's error
 * stack kept for pio_seterr. */
int pio_read_part(hid_t d, hid_t mem, hid_t dxpl, int rank, uint64_t rowlen, uint64_t pos,
		  uint64_t n, void *buf);

/* Grows a batch's arrays to hold n records, keys bytes of keys and heap bytes of heap.
 * Returns 0 or PIO_ENOMEM (b unchanged). */
int pio_batch_reserve(struct pio_batch *b, size_t n, size_t keys, size_t heap);

/*
 * The check of variable-length string references (heapcheck.c says why HDF5 1.10 needs it):
 * open one for HDF5 file f (path file) once it is open; read a batch's references raw with
 * the type pio_vlcheck_type() gives: a compound of the string fields m1 and m2 (one may be
 * NULL), each pio_vlcheck_refsize() bytes, in that order, or, both NULL, the references of a
 * dataset of strings (the caller closes it; it may grow the compound and add fields after
 * the references, to read them in the same pass); hand them to pio_vlcheck_refs(), stride
 * bytes from one record's references to the next, with the names of the fields read (what[1]
 * NULL for one), which returns 0, or PIO_EREAD with the record, the field and the damage in
 * err, or PIO_ENOMEM. One thread at a time a check.
 */
struct pio_vlcheck;
int pio_vlcheck_open(hid_t f, const char *file, struct pio_vlcheck **out, struct pio_err *err);
/* What pio_vlcheck_open does once it knows the file: a check over descriptor fd (owned from
 * then on, closed even on failure), whose address 0 is at byte base, with addresses of sa and
 * lengths of ss bytes (2..8). The fuzz target's way in. */
int pio_vlcheck_open_fd(int fd, const char *file, uint64_t base, size_t sa, size_t ss,
			struct pio_vlcheck **out, struct pio_err *err);
void pio_vlcheck_close(struct pio_vlcheck *c);
size_t pio_vlcheck_refsize(const struct pio_vlcheck *c);
hid_t pio_vlcheck_type(const struct pio_vlcheck *c, const char *m1, const char *m2);
int pio_vlcheck_refs(struct pio_vlcheck *c, const uint8_t *refs, size_t n, size_t stride,
		     uint64_t first, const char *dset, const char *const what[2],
		     struct pio_err *err);
/* Checks as pio_vlcheck_refs does (references rstride bytes apart) and reads the strings from
 * the collections, in place of HDF5's conversion: for record i and field f, the string as
 * HDF5 gives it (its bytes and a NUL, in memory from alloc(bytes, arg); NULL for a null
 * reference) goes as a char * to out + i * stride + off[f]. */
int pio_vlcheck_strings(struct pio_vlcheck *c, const uint8_t *refs, size_t n, size_t rstride,
			uint64_t first, const char *dset, const char *const what[2], uint8_t *out,
			size_t stride, const size_t off[2], void *(*alloc)(size_t, void *),
			void *arg, struct pio_err *err);

#endif /* PIO_INTERNAL_H */
