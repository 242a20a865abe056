/*
 * prefetch.c - double buffering: one I/O thread fills batches ahead of the consumer.
 *
 *   I/O thread:  take a free batch -> pio_reader_next() -> append to the ready queue
 *   consumer:    give back the batch it held -> take the oldest ready batch
 *
 * The I/O thread is the only thread that calls HDF5 while the prefetcher runs.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pio_internal.h"

struct pio_prefetch {
	struct pio_reader *r;	/* the reader, used only by the I/O thread */
	pthread_t thread;	/* the I/O thread */
	pthread_mutex_t mu;	/* guards everything below */
	pthread_cond_t cv;	/* signalled on every state change */
	unsigned nbuf;		/* batches */
	struct pio_batch *bufs; /* nbuf batches */
	unsigned *ready;	/* ring of filled batch indices, in read order */
	unsigned ready_head;	/* ring position of the oldest ready batch */
	unsigned ready_n;	/* ready batches */
	unsigned *free_list;	/* stack of empty batch indices */
	unsigned free_n;	/* empty batches */
	int held;		/* batch held by the consumer, or -1 */
	bool done;		/* the I/O thread has finished (end or error) */
	bool stop;		/* the consumer asks the thread to finish */
	int rc;			/* 0 at the end, or the error that stopped the thread */
	struct pio_err err;	/* message of that error */
};

static void *io_thread(void *arg)
{
	struct pio_prefetch *p = arg;

	pio_silence_hdf5();
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct pio_err e;
		unsigned idx;
		int rc;

		while (!p->stop && p->free_n == 0)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		idx = p->free_list[--p->free_n];
		pthread_mutex_unlock(&p->mu);
		e.msg[0] = 0;
		rc = pio_reader_next(p->r, &p->bufs[idx], &e);
		pthread_mutex_lock(&p->mu);
		if (rc == 1) {
			p->ready[(p->ready_head + p->ready_n) % p->nbuf] = idx;
			p->ready_n++;
		} else {
			p->free_list[p->free_n++] = idx;
			p->rc = rc;
			p->err = e;
			break;
		}
		pthread_cond_broadcast(&p->cv);
	}
	p->done = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void prefetch_free(struct pio_prefetch *p)
{
	if (p->bufs)
		for (unsigned i = 0; i < p->nbuf; i++)
			pio_batch_free(&p->bufs[i]);
	free(p->bufs);
	free(p->ready);
	free(p->free_list);
	free(p);
}

int pio_prefetch_start(struct pio_reader *r, unsigned nbuf, struct pio_prefetch **out,
		       struct pio_err *err)
{
	struct pio_prefetch *p;
	int rc;

	if (!r || !out)
		return pio_seterr(err, PIO_EINVAL, "pio", NULL, "NULL reader");
	if (nbuf == 0)
		nbuf = 2;
	p = calloc(1, sizeof(*p));
	if (!p)
		return pio_seterr(err, PIO_ENOMEM, "pio", NULL, "out of memory");
	p->r = r;
	p->nbuf = nbuf;
	p->held = -1;
	p->bufs = calloc(nbuf, sizeof(*p->bufs));
	p->ready = calloc(nbuf, sizeof(*p->ready));
	p->free_list = calloc(nbuf, sizeof(*p->free_list));
	if (!p->bufs || !p->ready || !p->free_list) {
		prefetch_free(p);
		return pio_seterr(err, PIO_ENOMEM, "pio", NULL, "out of memory");
	}
	for (unsigned i = 0; i < nbuf; i++) {
		pio_batch_init(&p->bufs[i]);
		p->free_list[p->free_n++] = nbuf - 1 - i;
	}
	if (pthread_mutex_init(&p->mu, NULL)) {
		prefetch_free(p);
		return pio_seterr(err, PIO_ETHREAD, "pio", NULL, "cannot create a mutex");
	}
	if (pthread_cond_init(&p->cv, NULL)) {
		pthread_mutex_destroy(&p->mu);
		prefetch_free(p);
		return pio_seterr(err, PIO_ETHREAD, "pio", NULL, "cannot create a condition");
	}
	rc = pthread_create(&p->thread, NULL, io_thread, p);
	if (rc) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		prefetch_free(p);
		return pio_seterr(err, PIO_ETHREAD, "pio", NULL, "cannot start the I/O thread: %s",
				  strerror(rc));
	}
	*out = p;
	return 0;
}

int pio_prefetch_next(struct pio_prefetch *p, struct pio_batch **b, struct pio_err *err)
{
	int rc;

	if (!p || !b)
		return pio_seterr(err, PIO_EINVAL, "pio", NULL, "NULL prefetcher");
	pthread_mutex_lock(&p->mu);
	if (p->held >= 0) {
		p->free_list[p->free_n++] = (unsigned)p->held;
		p->held = -1;
		pthread_cond_broadcast(&p->cv);
	}
	while (p->ready_n == 0 && !p->done)
		pthread_cond_wait(&p->cv, &p->mu);
	if (p->ready_n > 0) {
		p->held = (int)p->ready[p->ready_head];
		p->ready_head = (p->ready_head + 1) % p->nbuf;
		p->ready_n--;
		*b = &p->bufs[p->held];
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		return 1;
	}
	rc = p->rc;
	if (rc && err)
		*err = p->err;
	*b = NULL;
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void pio_prefetch_stop(struct pio_prefetch *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	prefetch_free(p);
}
