/*
 * cmd_signal.c - how every subcommand of pmingest stops on SIGINT and SIGTERM: the signal
 * raises pme_stop, and the long loops (reading, generating, writing) poll it and end cleanly
 * with nothing left behind (exit 130). A second signal kills the process.
 */
#define _POSIX_C_SOURCE 200809L /* sigaction */
#include <signal.h>
#include <string.h>

#include "pme_cmd.h"

volatile sig_atomic_t pme_stop;

static struct sigaction old_int, old_term; /* the actions pme_catch_signals replaced */

/* The first signal asks for a clean stop; a second one, for a run that has not stopped,
 * ends the process at once by the signal itself (signal and raise are async-signal-safe). */
static void on_signal(int sig)
{
	if (pme_stop) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	pme_stop = 1;
}

void pme_catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
}

void pme_restore_signals(void)
{
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
}
