/*
 * wback.h - early, small writeback of the daemon's own append-only logs.
 *
 * Purpose: the delivery log and a main log on a file grow by megabytes a
 * second under load, and the kernel writes dirty pages back late and in
 * bulk (tens of MB at once, after dirty_expire_centisecs). On a disk the
 * spool shares, such a burst queues ahead of the spool's fdatasync and
 * LMDB's commit and stretches the acceptance tail. Starting writeback
 * every WBACK_CHUNK bytes keeps each burst small and spreads it out.
 *
 * Contract: wback_add() registers the file behind a descriptor (a regular
 * file only; each inode once; it keeps its own duplicate, so the caller
 * may close its descriptor at any time) and starts, at the first call,
 * one background thread. wback_wrote() is what writers call after each
 * write: an atomic add, and once per WBACK_CHUNK bytes over all the files
 * an eventfd write that wakes the thread; it never blocks, so shard
 * threads call it. The thread, not the writer, calls
 * sync_file_range(SYNC_FILE_RANGE_WRITE) on what each file grew by
 * (which can wait for the disk's request queue), and drops from the page
 * cache what an earlier round already wrote back
 * (posix_fadvise(POSIX_FADV_DONTNEED)): nobody reads these files back.
 * A file that shrank (copytruncate) starts over from its new size.
 *
 * Errors: none returned. A file that cannot be registered (not regular,
 * table full, no memory for the thread) just keeps the kernel's default
 * writeback; the logs never depend on this.
 */
#ifndef SLUICE_WBACK_H
#define SLUICE_WBACK_H

#include <stddef.h>

/* Writeback is started after this many bytes appended over all files. */
#define WBACK_CHUNK	(1u << 20)
/* Files watched at most: the delivery log, the main log, spares. */
#define WBACK_FILES	8

void wback_add(int fd);
void wback_wrote(size_t n);

#endif
