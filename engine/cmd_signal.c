/*
 * cmd_signal.c - how every subcommand of pmingest stops on SIGINT and SIGTERM: the signal
 * raises pme_stop, and the long loops (reading, generating, writing) poll it and end cleanly
 * with nothing left behind (exit 130). A second signal, a second or more later, kills the
 * process.
 */
#define _POSIX_C_SOURCE 200809L /* sigaction */
#include <signal.h>
#include <string.h>
#include <time.h>

#include "pme_cmd.h"

volatile sig_atomic_t pme_stop;

static struct sigaction old_int, old_term; /* the actions pme_catch_signals replaced */

/* The first signal asks for a clean stop; a second one, for a run that has not stopped,
 * ends the process at once by the signal itself. One stop request can arrive as two
 * signals at once (GNU timeout sends SIGTERM to the process and then to its group; a batch
 * system may signal both a step and its tasks), so a repeat counts only from REPEAT_NS
 * after the first. clock_gettime, signal and raise are async-signal-safe. */
#define REPEAT_NS 1000000000LL

static struct timespec first_signal;

static void on_signal(int sig)
{
	struct timespec now;
	long long ns;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!pme_stop) {
		first_signal = now;
		pme_stop = 1;
		return;
	}
	ns = (now.tv_sec - first_signal.tv_sec) * 1000000000LL + now.tv_nsec - first_signal.tv_nsec;
	if (ns >= REPEAT_NS) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
}

void pme_catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask); /* one handler at a time: first_signal is set before pme_stop */
	sigaddset(&sa.sa_mask, SIGINT);
	sigaddset(&sa.sa_mask, SIGTERM);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
}

void pme_restore_signals(void)
{
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
}
