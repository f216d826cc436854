#ifndef TUPP_RUNTIME_H
#define TUPP_RUNTIME_H

#include <stdint.h>
#include <sys/types.h>

/// pidfd_send_signal(2) with a queued integer (si_code SI_QUEUE, si_value.sival_int).
/// C because Swift imports siginfo_t's unions awkwardly. TuppRuntime uses it to hand
/// tupp-shim the stop grace period (ms) together with SIGTERM. Returns 0 or -1/errno.
int tupp_pidfd_send_signal_value(int pidfd, int sig, int value);

/// The exit status helpers from <sys/wait.h> are macros Swift cannot see.
/// Exit code when the child exited normally, else -1.
int tupp_wait_exit_code(int status);
/// Terminating signal when the child was killed, else 0.
int tupp_wait_term_signal(int status);

#endif
