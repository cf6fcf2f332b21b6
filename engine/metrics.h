/*
 * metrics.h - the Prometheus endpoint: `metrics.listen` (off by
 * default), HTTP/1.1, GET or HEAD /metrics only, text exposition format
 * 0.0.4 (engine/stats_prom.c). Other paths get 404, other methods on
 * /metrics 405, malformed requests the status proto/http.h names; every
 * answer closes the connection.
 *
 * A thread of its own with blocking I/O, which reads the counters every
 * shard keeps (lib/stats.h), the queue index, and asks the shards for
 * their destinations with a bounded wait: serving it never blocks a
 * shard.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include "../queue/queue.h"
#include "config.h"

/*
 * Bind metrics.listen (before privileges are dropped, like the SMTP
 * listeners). 0 (also when metrics are off), or -errno.
 */
int metrics_bind(const struct config *cfg);
/* Start serving what metrics_bind() bound. 0 or -errno. */
int metrics_start(const struct config *cfg, struct queue_index *qi);
/* Stop the thread (before the shards stop) and close the socket. */
void metrics_stop(void);

#endif
