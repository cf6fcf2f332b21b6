/*
 * stats_prom.c - a view as Prometheus text (exposition format 0.0.4):
 * every family with its # HELP and # TYPE lines, histograms as
 * cumulative _bucket series ending at le="+Inf" with _sum and _count,
 * label values escaped. docs/operations.md lists every name.
 *
 * Per-destination series are bounded: the top STATS_TOP destinations by
 * queued items get a series each, everything else one more,
 * destination="_other" (the name cannot be a domain or a next hop).
 */
#include "stats.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../lib/version.h"

static const char *const outcome_names[STATS_OUTCOMES] = {
	"delivered", "deferred", "bounced", "expired", "discarded",
};
static const char *const out_class[STATS_CLASSES] = {
	"2xx", "none", "4xx", "5xx",
};

struct w {
	struct buf *out;
	int err;
};

static void __attribute__((format(printf, 2, 3)))
put(struct w *w, const char *fmt, ...)
{
	va_list ap;

	if (w->err != 0)
		return;
	va_start(ap, fmt);
	w->err = buf_vprintf(w->out, fmt, ap);
	va_end(ap);
}

static void
family(struct w *w, const char *name, const char *type, const char *help)
{
	put(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metric(struct w *w, const char *name, const char *help, const char *type,
    uint64_t v)
{
	family(w, name, type, help);
	put(w, "%s %llu\n", name, (unsigned long long)v);
}

/* A label value: \, " and newline escaped, as the format wants. */
static void
label_value(struct w *w, const char *s)
{
	for (; *s != '\0' && w->err == 0; s++) {
		if (*s == '\\')
			put(w, "\\\\");
		else if (*s == '"')
			put(w, "\\\"");
		else if (*s == '\n')
			put(w, "\\n");
		else
			put(w, "%c", *s);
	}
}

/* unit_us: the histogram counts microseconds, shown as seconds. */
static void
histogram(struct w *w, const char *name, const char *help,
    enum stats_hist_kind kind, const struct stats_hist_copy *h, bool unit_us)
{
	unsigned n;
	const uint64_t *b = stats_bounds(kind, &n);
	uint64_t cum = 0;

	family(w, name, "histogram", help);
	for (unsigned i = 0; i < n; i++) {
		cum += h->bucket[i];
		if (unit_us)
			put(w, "%s_bucket{le=\"%.6g\"} %llu\n", name,
			    (double)b[i] / 1e6, (unsigned long long)cum);
		else
			put(w, "%s_bucket{le=\"%llu\"} %llu\n", name,
			    (unsigned long long)b[i], (unsigned long long)cum);
	}
	cum += h->bucket[n];
	put(w, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	if (unit_us)
		put(w, "%s_sum %.6f\n", name, (double)h->sum / 1e6);
	else
		put(w, "%s_sum %llu\n", name, (unsigned long long)h->sum);
	put(w, "%s_count %llu\n", name, (unsigned long long)cum);
}

static void
replies(struct w *w, const struct stats_view *v)
{
	family(w, "sluice_smtp_replies_total", "counter", "Replies sent to "
	    "SMTP clients, by class and enhanced status code class.subject "
	    "(none: no enhanced code).");
	for (unsigned c = 0; c < STATS_CLASSES; c++) {
		bool any = false;

		for (unsigned j = 0; j < STATS_SUBJECTS; j++) {
			char enh[8];

			/* Every class shows, with its codes seen so far. */
			if (v->replies[c][j] == 0 &&
			    (j != STATS_SUBJECTS - 1 || any))
				continue;
			any = true;
			if (j == STATS_SUBJECTS - 1)
				snprintf(enh, sizeof(enh), "none");
			else
				snprintf(enh, sizeof(enh), "%u.%u", c + 2, j);
			put(w, "sluice_smtp_replies_total{class=\"%uxx\","
			    "enhanced=\"%s\"} %llu\n", c + 2, enh,
			    (unsigned long long)v->replies[c][j]);
		}
	}
}

static void
dest_series(struct w *w, const char *name, const char *help,
    const struct stats_view *v, size_t off, bool is_double, double other)
{
	family(w, name, "gauge", help);
	for (unsigned i = 0; i < v->ntop; i++) {
		const char *p = (const char *)&v->top[i] + off;

		put(w, "%s{destination=\"", name);
		label_value(w, v->top[i].key);
		if (is_double)
			put(w, "\"} %.3f\n", *(const double *)(const void *)p);
		else
			put(w, "\"} %llu\n",
			    (unsigned long long)*(const uint32_t *)(const void *)p);
	}
	put(w, "%s{destination=\"_other\"} %.*f\n", name, is_double ? 3 : 0,
	    other);
}

static void
destinations(struct w *w, const struct stats_view *v)
{
	const struct stats_dests_sum *o = &v->dests_other;

	metric(w, "sluice_destinations", "Destinations in the shards' "
	    "memory (those that answered).", "gauge", v->dests_all.count);
	metric(w, "sluice_stats_shards_answered", "Shards that gave their "
	    "destinations in time for this scrape.", "gauge",
	    v->dests_answered);
	dest_series(w, "sluice_destination_queued", "Items (a message's "
	    "recipients at one destination) in memory, top destinations by "
	    "this value; the rest summed as _other.", v,
	    offsetof(struct deliver_dest_stat, queued), false,
	    (double)o->queued);
	dest_series(w, "sluice_destination_connections", "Open outbound "
	    "connections of the destination.", v,
	    offsetof(struct deliver_dest_stat, conns), false,
	    (double)o->conns);
	dest_series(w, "sluice_destination_delivered_per_minute", "Recipients "
	    "delivered to the destination over the last minute.", v,
	    offsetof(struct deliver_dest_stat, rate), true, o->rate);
	family(w, "sluice_destination_backoff_seconds", "gauge", "How much "
	    "longer the destination is held off (0: it is not).");
	for (unsigned i = 0; i < v->ntop; i++) {
		put(w, "sluice_destination_backoff_seconds{destination=\"");
		label_value(w, v->top[i].key);
		put(w, "\"} %.3f\n", (double)v->top[i].hold_ms / 1000);
	}
}

int
stats_prom_write(struct buf *out, const struct stats_view *v)
{
	struct w w = { out, 0 };
	const struct stats_queue *q = &v->queue;
	uint64_t in_open = v->conns_in >= v->conns_in_closed ?
	    v->conns_in - v->conns_in_closed : 0;

	family(&w, "sluice_build_info", "gauge", "The version running.");
	put(&w, "sluice_build_info{version=\"%s\"} 1\n", SLUICE_VERSION);
	family(&w, "sluice_start_time_seconds", "gauge", "When the daemon "
	    "became ready, Unix time.");
	put(&w, "sluice_start_time_seconds %.3f\n",
	    (double)v->started_us / 1e6);
	metric(&w, "sluice_shards", "Shard threads.", "gauge", v->shards);

	/* Inbound. */
	family(&w, "sluice_connections", "gauge", "Open connections.");
	put(&w, "sluice_connections{direction=\"inbound\"} %llu\n",
	    (unsigned long long)in_open);
	put(&w, "sluice_connections{direction=\"outbound\"} %llu\n",
	    (unsigned long long)v->g_conns_out);
	family(&w, "sluice_connections_opened_total", "counter", "Connections "
	    "accepted (inbound) or opened (outbound).");
	put(&w, "sluice_connections_opened_total{direction=\"inbound\"} "
	    "%llu\n", (unsigned long long)v->conns_in);
	put(&w, "sluice_connections_opened_total{direction=\"outbound\"} "
	    "%llu\n", (unsigned long long)v->conns_out);
	metric(&w, "sluice_connections_refused_total", "Inbound connections "
	    "refused with 421 (connection limits, shutting down).", "counter",
	    v->conns_in_refused);
	family(&w, "sluice_tls_handshakes_total", "counter", "TLS handshakes, "
	    "by direction and result.");
	put(&w, "sluice_tls_handshakes_total{direction=\"inbound\","
	    "result=\"ok\"} %llu\n", (unsigned long long)v->tls_in);
	put(&w, "sluice_tls_handshakes_total{direction=\"inbound\","
	    "result=\"failed\"} %llu\n", (unsigned long long)v->tls_in_failed);
	put(&w, "sluice_tls_handshakes_total{direction=\"outbound\","
	    "result=\"ok\"} %llu\n", (unsigned long long)v->tls_out);
	put(&w, "sluice_tls_handshakes_total{direction=\"outbound\","
	    "result=\"failed\"} %llu\n",
	    (unsigned long long)v->tls_out_failed);
	metric(&w, "sluice_messages_accepted_total", "Messages acknowledged "
	    "with 250 (durable in the spool).", "counter", v->messages_in);
	metric(&w, "sluice_recipients_accepted_total", "Recipients of the "
	    "messages acknowledged.", "counter", v->rcpts_in);
	metric(&w, "sluice_accepted_bytes_total", "Bytes of the messages "
	    "acknowledged, as stored.", "counter", v->bytes_in);
	replies(&w, v);

	/* Delivery. */
	family(&w, "sluice_recipients_total", "counter", "Delivery attempts' "
	    "results per recipient, one per delivery log line, by status.");
	for (unsigned o = 0; o < STATS_OUTCOMES; o++)
		put(&w, "sluice_recipients_total{outcome=\"%s\"} %llu\n",
		    outcome_names[o], (unsigned long long)v->outcomes[o]);
	family(&w, "sluice_delivery_replies_total", "counter", "The reply "
	    "behind each delivery log line, by class (none: no reply, e.g. "
	    "connection refused or DNS).");
	for (unsigned c = 0; c < STATS_CLASSES; c++)
		put(&w, "sluice_delivery_replies_total{class=\"%s\"} %llu\n",
		    out_class[c], (unsigned long long)v->reply_out[c]);
	metric(&w, "sluice_recipients_parked_total", "Recipients moved out of "
	    "the active set into the index.", "counter", v->parked);
	family(&w, "sluice_delivery_records_total", "counter", "Records "
	    "delivery took for an attempt, by where from: memory (kept since "
	    "acceptance) or spool (read back).");
	put(&w, "sluice_delivery_records_total{from=\"memory\"} %llu\n",
	    (unsigned long long)v->read_mem);
	put(&w, "sluice_delivery_records_total{from=\"spool\"} %llu\n",
	    (unsigned long long)v->read_back);

	/* The queue. */
	family(&w, "sluice_queue_messages", "gauge", "Messages in the queue "
	    "index by state, as sluicectl queue list --status counts them.");
	put(&w, "sluice_queue_messages{state=\"queued\"} %llu\n",
	    (unsigned long long)q->queued);
	put(&w, "sluice_queue_messages{state=\"deferred\"} %llu\n",
	    (unsigned long long)q->deferred);
	put(&w, "sluice_queue_messages{state=\"held\"} %llu\n",
	    (unsigned long long)q->held);
	metric(&w, "sluice_queue_size_messages", "Messages in the queue "
	    "index, quarantined ones not counted.", "gauge", q->messages);
	metric(&w, "sluice_queue_scan_complete", "1 when the state counts "
	    "cover the whole index (the scan is bounded in time).", "gauge",
	    q->complete ? 1 : 0);
	metric(&w, "sluice_queue_quarantined_messages", "Damaged records "
	    "kept aside.", "gauge", q->quarantined);
	metric(&w, "sluice_queue_parked_recipients", "Recipients waiting in "
	    "the index, out of the active set.", "gauge", q->parked);
	family(&w, "sluice_queue_oldest_message_age_seconds", "gauge", "Age of "
	    "the oldest message in the queue (0 when empty).");
	put(&w, "sluice_queue_oldest_message_age_seconds %.3f\n",
	    q->oldest_qid != 0 && v->now_us > q->oldest_arrival_us ?
	    (double)(v->now_us - q->oldest_arrival_us) / 1e6 : 0.0);
	metric(&w, "sluice_active_items", "Items in the shards' memory "
	    "(the active set).", "gauge", v->g_items);
	metric(&w, "sluice_active_recipients", "Recipients in the active "
	    "set.", "gauge", v->g_rcpts);
	metric(&w, "sluice_deferred_items", "Items of the active set waiting "
	    "for their retry time.", "gauge", v->g_deferred);

	/* Histograms. */
	histogram(&w, "sluice_accept_latency_seconds", "From the start of "
	    "a message's data to its 250.", STATS_H_ACCEPT_US, &v->accept,
	    true);
	histogram(&w, "sluice_delivery_delay_seconds", "From a message's "
	    "arrival to the delivery of a recipient.", STATS_H_DELAY_US,
	    &v->delay, true);
	histogram(&w, "sluice_commit_batch_records", "Records (messages, "
	    "marks, updates) written and synced per group commit.",
	    STATS_H_BATCH, &v->batch, false);
	histogram(&w, "sluice_commit_sync_seconds", "A group commit's "
	    "writes and fdatasync.", STATS_H_SYNC_US, &v->sync, true);
	histogram(&w, "sluice_dkim_sign_seconds", "From the end of a "
	    "message's data to its DKIM signature back on its shard (the "
	    "wait for a signer and the signing).", STATS_H_SIGN_US, &v->sign,
	    true);

	destinations(&w, v);
	return w.err;
}
