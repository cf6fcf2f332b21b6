/*
 * queue_check.h - helpers the queue's unit tests share: reading a
 * segment's log position and reading or writing the index's format
 * version behind the queue code's back. Needs QUEUE_INTERNAL and check.h
 * first.
 */
#ifndef SLUICE_QUEUE_CHECK_H
#define SLUICE_QUEUE_CHECK_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../queue/queue.h"

/* Segment seg's log position, 0 when it has none. */
static inline uint64_t
check_log_pos(struct queue_index *qi, uint64_t seg)
{
	MDB_txn *txn;
	uint64_t end = 0;

	CHECK_FATAL(queue_txn_begin(qi, MDB_RDONLY, &txn) == 0);
	CHECK(queue_log_get(qi, txn, seg, &end) == 0);
	mdb_txn_abort(txn);
	return end;
}

/*
 * The "meta" version of the index under spool, written (set) or read,
 * through LMDB directly; the index must not be open in this process.
 */
static inline uint32_t
check_index_version(const char *spool, bool set, uint32_t version)
{
	char path[256];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 7, "version" }, v = { sizeof(version), &version };

	snprintf(path, sizeof(path), "%s/index", spool);
	CHECK_FATAL(mdb_env_create(&env) == 0);
	CHECK_FATAL(mdb_env_set_maxdbs(env, 8) == 0);
	CHECK_FATAL(mdb_env_open(env, path, 0, 0600) == 0);
	CHECK_FATAL(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK_FATAL(mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
	if (set) {
		CHECK_FATAL(mdb_put(txn, dbi, &k, &v, 0) == 0);
	} else {
		CHECK_FATAL(mdb_get(txn, dbi, &k, &v) == 0 &&
		    v.mv_size == sizeof(version));
		memcpy(&version, v.mv_data, sizeof(version));
	}
	CHECK_FATAL(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	return version;
}

#endif
