/*
 * config_metrics.c - the "metrics" map: where the Prometheus endpoint
 * listens (engine/metrics.c). Off unless metrics.listen is set.
 */
#include "config_int.h"

#include <stddef.h>

#include "../lib/net.h"

static int
check_metrics_listen(const char *s, void *obj, char *why, size_t whylen)
{
	struct metrics_cfg *m = obj;

	if (address_parse(s, &m->sa, &m->salen) < 0) {
		snprintf(why, whylen, "invalid address '%.*s' (expected "
		    "IPv4:port or [IPv6]:port, numeric)", CONFIG_QUOTE_MAX, s);
		return -1;
	}
	return 0;
}

const struct cfg_key config_metrics_keys[] = {
	{ .name = "listen", .type = CFG_STRING,
	  .offset = offsetof(struct metrics_cfg, listen),
	  .size = sizeof(char *), .check = check_metrics_listen },
	{ .name = NULL },
};
