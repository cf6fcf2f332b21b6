/*
 * thread.h - names for sluiced's threads, so that top -H, ps -L, perf
 * and /proc/PID/task/TID/comm say which is a shard, the committer or a
 * signer instead of "sluiced" for all of them.
 */
#ifndef SLUICE_THREAD_H
#define SLUICE_THREAD_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>

/*
 * Name the calling thread "sl-<role><n>" (n < 0: no number). The kernel
 * keeps 15 bytes; a longer name is cut, never refused.
 */
static inline void
thread_name(const char *role, int n)
{
	char name[32];

	if (n < 0)
		snprintf(name, sizeof(name), "sl-%s", role);
	else
		snprintf(name, sizeof(name), "sl-%s%d", role, n);
	name[15] = '\0';
	(void)pthread_setname_np(pthread_self(), name);
}

#endif
