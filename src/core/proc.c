/*
 * proc.c — descriptor limit and signal set-up (see proc.h).
 */
#include "proc.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>

#include "util.h"

int proc_raise_nofile(size_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    rlim_t need = (rlim_t)want;
    if (rl.rlim_cur < need) {
        rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
        /* A refusal leaves the old limit, which getrlimit reports again. */
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
            return 1024;
    }
    return rl.rlim_cur > PROC_NOFILE_CAP ? PROC_NOFILE_CAP : (int)rl.rlim_cur;
}

int proc_signalfd(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return RP_ERR;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return RP_ERR;
    signal(SIGPIPE, SIG_IGN);
    return fd;
}
