#define _GNU_SOURCE
#include "tupp_runtime.h"

#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int tupp_pidfd_send_signal_value(int pidfd, int sig, int value) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    info.si_signo = sig;
    info.si_code = SI_QUEUE;  // the kernel refuses si_code >= 0 from user space
    info.si_pid = getpid();
    info.si_uid = getuid();
    info.si_value.sival_int = value;
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, &info, 0);
}

int tupp_wait_exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

int tupp_wait_term_signal(int status) { return WIFSIGNALED(status) ? WTERMSIG(status) : 0; }
