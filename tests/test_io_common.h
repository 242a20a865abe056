/*
 * test_io_common.h - helpers shared by the io/ test suites (fixtures, record formatting).
 */
#ifndef TEST_IO_COMMON_H
#define TEST_IO_COMMON_H

#include <stdio.h>

#include "pio.h"

/* One line of cases.txt or bad.txt (see tests/fixtures/make_io_fixtures.py). */
struct tcase {
	char name[64];	   /* case name */
	char file[512];	   /* fixture path (directory prepended) */
	char dataset[256]; /* compound dataset or "" */
	char kf[64];	   /* key field or "" */
	char vf[64];	   /* value field or "" */
	char keys[256];	   /* keys dataset or "" */
	char values[256];  /* values dataset or "" */
	uint64_t start;	   /* range start */
	uint64_t count;	   /* range count or PIO_TO_END */
	char code[32];	   /* bad.txt: expected code name */
	char msg[256];	   /* bad.txt: expected piece of the message */
};

/* The fixture directory: $PIO_FIXTURES, else ".". */
const char *fx_dir(void);

/* Reads the lines of fixture file name (in fx_dir) into tcase records; returns how many,
 * *out malloc'd. Returns -1 if the file cannot be read. */
int fx_cases(const char *name, struct tcase **out);

/* The pio_input for a case (pointers into c). */
struct pio_input fx_input(const struct tcase *c);

/* Formats record i of b as the expectation files do: "HEXKEY\tVALUE". */
void fx_record(const struct pio_batch *b, size_t i, const struct pio_type *vt, char *out,
	       size_t size);

/* Reads the whole job with reader r into a malloc'd text, one formatted record per line,
 * prefixed by "KEYTYPE\tVALUETYPE\n"; NULL on a read error (message printed). */
char *fx_read_all(struct pio_reader *r, size_t *nbatches);

/* The contents of a file, malloc'd and NUL-terminated, or NULL. */
char *fx_slurp(const char *path);

/* PIO_E* value of a code name such as "PIO_ETYPE", or 1 if unknown. */
int fx_code(const char *name);

#endif /* TEST_IO_COMMON_H */
