/*
 * pme_malloc.h - the jemalloc options the project's programs start with.
 *
 * jemalloc reads the string the program's global malloc_conf points to when it starts, then
 * MALLOC_CONF from the environment (whose options win). A program that wants these defaults
 * defines, in the file that holds its main():
 *
 *	const char *malloc_conf = PME_MALLOC_CONF;
 *
 * With glibc's malloc the variable is never read.
 *
 * metadata_thp:always puts jemalloc's own metadata on transparent huge pages. jemalloc
 * reads each new page of its metadata before it writes it: the read maps the shared zero
 * page, and the write that follows replaces it, which flushes the TLB of every CPU that runs
 * the process (an inter-processor interrupt each, slow in a virtual machine). A 2-thread
 * ingest of 10 M random keys spent about 1.5% of its CPU time there; with the option the
 * flushes are gone (the benchmarks run the same way, so that they compare like with like).
 */
#ifndef PME_MALLOC_H
#define PME_MALLOC_H

#define PME_MALLOC_CONF "metadata_thp:always"

extern const char *malloc_conf;

#endif
