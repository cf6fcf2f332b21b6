/*
 * status.c - the document `sluicectl status` shows: a view (stats.h) as
 * one JSON object, with the key names docs/operations.md lists. Keys are
 * stable: new ones may appear, none changes its meaning or goes away.
 *
 * The daemon builds it (the control thread, on "status"); sluicectl
 * prints it as it is (--json) or as a table, so both show the same data.
 */
#include "status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../deliver/mta_sts.h"
#include "../lib/version.h"
#include "gen.h"

/* RFC 3339 UTC with milliseconds, like the delivery log's times. */
static json_t *
time_text(uint64_t us)
{
	char out[96];
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;

	if (us == 0 || gmtime_r(&t, &tm) == NULL)
		return json_null();
	snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (unsigned)(us / 1000u % 1000u));
	return json_string(out);
}

static json_t *
u64(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static double
age_s(uint64_t now_us, uint64_t then_us)
{
	return now_us > then_us ? (double)(now_us - then_us) / 1e6 : 0;
}

static json_t *
listeners(const struct config *cfg)
{
	json_t *a = json_array();

	for (size_t i = 0; a != NULL && i < cfg->nlisten; i++) {
		const struct listen_cfg *l = &cfg->listen[i];

		json_array_append_new(a, json_pack("{s:s, s:s, s:b, s:s}",
		    "address", l->address, "tls", l->tls ? l->tls : "none",
		    "proxy_protocol", l->proxy_protocol != 0,
		    "auth", l->auth ? l->auth : "none"));
	}
	return a;
}

static json_t *
queue_obj(const struct stats_view *v)
{
	const struct stats_queue *q = &v->queue;
	json_t *o = json_object();

	json_object_set_new(o, "read", json_boolean(q->read));
	json_object_set_new(o, "messages", u64(q->messages));
	json_object_set_new(o, "queued", u64(q->queued));
	json_object_set_new(o, "deferred", u64(q->deferred));
	json_object_set_new(o, "held", u64(q->held));
	json_object_set_new(o, "complete", json_boolean(q->complete));
	json_object_set_new(o, "quarantined", u64(q->quarantined));
	json_object_set_new(o, "parked_recipients", u64(q->parked));
	json_object_set_new(o, "active_items", u64(v->g_items));
	json_object_set_new(o, "active_recipients", u64(v->g_rcpts));
	json_object_set_new(o, "deferred_items", u64(v->g_deferred));
	if (q->oldest_qid != 0) {
		char id[QUEUE_ID_LEN + 1];

		queue_id_format(q->oldest_qid, id);
		json_object_set_new(o, "oldest", json_pack("{s:s, s:o, s:f}",
		    "id", id, "arrival", time_text(q->oldest_arrival_us),
		    "age_s", age_s(v->now_us, q->oldest_arrival_us)));
	} else {
		json_object_set_new(o, "oldest", json_null());
	}
	return o;
}

static const char *const ring_names[STATS_R_VALS] = {
	"accepted", "delivered", "deferred", "bounced", "expired", "discarded",
};

static json_t *
minute(const uint64_t delta[STATS_R_VALS], uint64_t window_ms)
{
	json_t *o = json_object(), *r = json_object();

	json_object_set_new(o, "window_s", json_real((double)window_ms / 1e3));
	for (unsigned i = 0; i < STATS_R_VALS; i++) {
		json_object_set_new(o, ring_names[i], u64(delta[i]));
		json_object_set_new(r, ring_names[i], json_real(window_ms ?
		    (double)delta[i] * 1e3 / (double)window_ms : 0));
	}
	json_object_set_new(o, "per_second", r);
	return o;
}

static json_t *
totals(const struct stats_view *v)
{
	uint64_t r4 = 0, r5 = 0;

	for (unsigned j = 0; j < STATS_SUBJECTS; j++) {
		r4 += v->replies[2][j];
		r5 += v->replies[3][j];
	}
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
	    "s:o, s:o, s:o, s:o, s:o, s:o}",
	    "accepted", u64(v->messages_in),
	    "recipients", u64(v->rcpts_in),
	    "bytes", u64(v->bytes_in),
	    "delivered", u64(v->outcomes[STATS_DELIVERED]),
	    "deferred", u64(v->outcomes[STATS_DEFERRED]),
	    "bounced", u64(v->outcomes[STATS_BOUNCED]),
	    "expired", u64(v->outcomes[STATS_EXPIRED]),
	    "discarded", u64(v->outcomes[STATS_DISCARDED]),
	    "connections_in", u64(v->conns_in),
	    "connections_refused", u64(v->conns_in_refused),
	    "connections_out", u64(v->conns_out),
	    "replies_4xx", u64(r4),
	    "replies_5xx", u64(r5),
	    "delivered_from_memory", u64(v->read_mem),
	    "read_back", u64(v->read_back));
}

static json_t *
dest_row(const struct stats_view *v, const struct deliver_dest_stat *r)
{
	json_t *o = json_object();

	json_object_set_new(o, "destination", json_string(r->key));
	json_object_set_new(o, "queued", u64(r->queued));
	json_object_set_new(o, "ready", u64(r->ready));
	json_object_set_new(o, "connections", u64(r->conns));
	json_object_set_new(o, "connection_limit", u64(r->conn_limit));
	json_object_set_new(o, "max_connections", u64(r->max_conns));
	json_object_set_new(o, "rate_per_min", json_real(r->rate));
	json_object_set_new(o, "state", json_string(r->state));
	json_object_set_new(o, "hold_s", json_real((double)r->hold_ms / 1e3));
	json_object_set_new(o, "failures", u64(r->failures));
	json_object_set_new(o, "recent_attempts", u64(r->recent));
	json_object_set_new(o, "recent_failed", u64(r->recent_failed));
	json_object_set_new(o, "delivered", u64(r->delivered));
	json_object_set_new(o, "deferred", u64(r->deferred));
	json_object_set_new(o, "bounced", u64(r->bounced));
	if (r->last_error_us != 0) {
		/* Text from the network: jansson refuses bad UTF-8. */
		json_t *e = json_string(r->last_error);

		json_object_set_new(o, "last_error", e != NULL ? e :
		    json_string("(not UTF-8)"));
		json_object_set_new(o, "last_error_at",
		    time_text(r->last_error_us));
		json_object_set_new(o, "last_error_age_s",
		    json_real(age_s(v->now_us, r->last_error_us)));
	} else {
		json_object_set_new(o, "last_error", json_null());
		json_object_set_new(o, "last_error_at", json_null());
		json_object_set_new(o, "last_error_age_s", json_null());
	}
	return o;
}

static json_t *
dest_sum(const struct stats_dests_sum *s)
{
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:f}",
	    "count", u64(s->count), "queued", u64(s->queued),
	    "ready", u64(s->ready), "connections", u64(s->conns),
	    "delivered", u64(s->delivered), "deferred", u64(s->deferred),
	    "bounced", u64(s->bounced), "rate_per_min", s->rate);
}

char *
status_json(const struct config *cfg, uint64_t generation,
    const struct stats_view *v, const uint64_t delta[STATS_R_VALS],
    uint64_t window_ms)
{
	json_t *o = json_object(), *ds = json_array();
	char *text;

	if (o == NULL || ds == NULL) {
		json_decref(o);
		json_decref(ds);
		return NULL;
	}
	json_object_set_new(o, "version", json_string(SLUICE_VERSION));
	json_object_set_new(o, "hostname", json_string(cfg->hostname));
	json_object_set_new(o, "pid", json_integer(getpid()));
	json_object_set_new(o, "started", time_text(v->started_us));
	json_object_set_new(o, "uptime_s",
	    json_real(age_s(v->now_us, v->started_us)));
	json_object_set_new(o, "shards", json_integer(v->shards));
	json_object_set_new(o, "config_generation", u64(generation));
	json_object_set_new(o, "config_generations_kept",
	    json_integer(gen_live()));
	json_object_set_new(o, "listeners", listeners(cfg));
	json_object_set_new(o, "metrics", cfg->metrics.listen != NULL ?
	    json_string(cfg->metrics.listen) : json_null());
	json_object_set_new(o, "connections", json_pack("{s:o, s:I, s:o, "
	    "s:I}", "inbound", u64(v->conns_in >= v->conns_in_closed ?
	    v->conns_in - v->conns_in_closed : 0),
	    "inbound_max", (json_int_t)cfg->limits.connections,
	    "outbound", u64(v->g_conns_out),
	    "outbound_max", (json_int_t)cfg->delivery.connections));
	json_object_set_new(o, "queue", queue_obj(v));
	json_object_set_new(o, "totals", totals(v));
	json_object_set_new(o, "last_minute", minute(delta, window_ms));
	for (unsigned i = 0; i < v->ntop; i++)
		json_array_append_new(ds, dest_row(v, &v->top[i]));
	json_object_set_new(o, "destinations", ds);
	json_object_set_new(o, "destinations_all", dest_sum(&v->dests_all));
	json_object_set_new(o, "destinations_other", dest_sum(&v->dests_other));
	json_object_set_new(o, "shards_answered",
	    json_integer(v->dests_answered));
	/* TLS-RPT counts per MTA-STS policy domain (docs/tls.md). */
	json_object_set_new(o, "mta_sts", mta_sts_status());
	text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return text;
}
