/*
 * proc.h — process set-up shared by the gateway and the tools (llmsim,
 * loadgen): the descriptor limit and termination signals delivered through
 * the event loop.
 *
 * Each of these programs sizes its event loop's fd-indexed table from the
 * descriptor limit it obtains at start-up, so the limit is raised once,
 * before the loop is created, and the figure returned is what the table is
 * built for.
 */
#ifndef RP_PROC_H
#define RP_PROC_H

#include <stddef.h>

/* The most descriptors proc_raise_nofile() reports, whatever the hard
 * limit: it bounds the memory of an fd-indexed table. */
#define PROC_NOFILE_CAP 1048576

/* Raise the soft RLIMIT_NOFILE to want (at most the hard limit) when it is
 * below; a soft limit already at or above want is left alone.  Returns the
 * soft limit in force afterwards, capped at PROC_NOFILE_CAP, or 1024 when
 * the limit cannot be read.  Failing to raise is not an error: the caller
 * runs with what it got. */
int proc_raise_nofile(size_t want);

/* Block SIGTERM and SIGINT and return a non-blocking, close-on-exec
 * signalfd that reports them (read a struct signalfd_siginfo per signal),
 * so that shutdown is one more event of the loop rather than an
 * asynchronous handler.  Also ignores SIGPIPE: a peer that leaves shows up
 * as EPIPE from send().  RP_ERR (errno set) on failure. */
int proc_signalfd(void);

#endif
