/*
 * cmd_signal.c - how every subcommand of pmingest stops on SIGINT, SIGTERM and SIGHUP: from
 * the start of main until a command that writes takes them over, the signal ends the process
 * at once with exit 130 (nothing is written yet: the commands that only read keep it so);
 * once taken over, the signal raises pme_stop, and the long loops (reading, generating,
 * writing) poll it and end cleanly with nothing left behind (exit 130). A second signal, a
 * second or more later, kills the process. A signal ignored when pmingest started stays
 * ignored (SIGHUP under nohup, SIGINT of a background job in a script).
 */
#define _POSIX_C_SOURCE 200809L /* sigaction */
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pme_cmd.h"

volatile sig_atomic_t pme_stop;

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
static bool ignored[sizeof(stop_signals) / sizeof(stop_signals[0])]; /* at the start */

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
		__atomic_store_n(&pme_stop, 1, __ATOMIC_RELEASE); /* after first_signal */
		return;
	}
	ns = (now.tv_sec - first_signal.tv_sec) * 1000000000LL + now.tv_nsec - first_signal.tv_nsec;
	if (ns >= REPEAT_NS) {
		signal(sig, SIG_DFL);
		raise(sig);
	}
}

static void on_early_signal(int sig)
{
	(void)sig;
	_exit(PME_EXIT_INTERRUPTED);
}

static void set_handlers(void (*fn)(int))
{
	struct sigaction sa;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask); /* one handler at a time: first_signal is set before pme_stop */
	for (i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaddset(&sa.sa_mask, stop_signals[i]);
	for (i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		if (!ignored[i])
			sigaction(stop_signals[i], &sa, NULL);
}

void pme_early_signals(void)
{
	struct sigaction old;
	size_t i;

	for (i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		ignored[i] =
		    sigaction(stop_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN;
	set_handlers(on_early_signal);
}

void pme_catch_signals(void)
{
	set_handlers(on_signal);
}
