/*
 * status.h - the JSON document of `sluicectl status` (docs/operations.md
 * lists its keys), built by the daemon from a view (stats.h).
 */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "stats.h"

/*
 * The document on one line (no newline in it): malloc'd text, or NULL
 * when out of memory. delta and window_ms: stats_ring_minute()'s.
 */
char *status_json(const struct config *cfg, uint64_t generation,
    const struct stats_view *v, const uint64_t delta[STATS_R_VALS],
    uint64_t window_ms);

#endif
