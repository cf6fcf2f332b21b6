/*
 * sink_report.c - the report `sluice-bench sink` prints when it stops, as
 * text or as one JSON object (--json), both from the same facts. The
 * formats are documented in docs/sluice-bench-sink.md and read by tests
 * and bench/compare: change them only together.
 */
#include "sink_int.h"

#include <jansson.h>
#include <string.h>

/* The facts both report formats print. */
struct sink_facts {
	double elapsed_s;	/* first connection to last message */
	double runtime_s;	/* start to stop */
	double rate;		/* messages / elapsed_s */
	double p50, p90, p99, p999, max;	/* milliseconds */
};

static void
facts(const struct sink *s, struct sink_facts *f)
{
	memset(f, 0, sizeof(*f));
	if (s->messages > 0 && s->last_msg_us > s->first_us)
		f->elapsed_s = (double)(s->last_msg_us - s->first_us) / 1e6;
	f->runtime_s = (double)(s->stop_us - s->start_us) / 1e6;
	if (f->elapsed_s > 0)
		f->rate = (double)s->messages / f->elapsed_s;
	if (s->lat->count > 0) {
		f->p50 = (double)hist_percentile(s->lat, 50) / 1e3;
		f->p90 = (double)hist_percentile(s->lat, 90) / 1e3;
		f->p99 = (double)hist_percentile(s->lat, 99) / 1e3;
		f->p999 = (double)hist_percentile(s->lat, 99.9) / 1e3;
		f->max = (double)s->lat->max / 1e3;
	}
}

void
sink_report_text(const struct sink *s, FILE *fp)
{
	struct sink_facts f;
	const char *sep = "";
	unsigned st, code, i;
	size_t j, k;

	facts(s, &f);
	fprintf(fp, "sluice-bench sink report (%s)\n",
	    s->o->lmtp ? "LMTP" : "SMTP");
	fprintf(fp, "messages:     %llu accepted, %llu refused by the reply "
	    "mix, %llu dropped mid-DATA, %llu too big\n",
	    (unsigned long long)s->messages,
	    (unsigned long long)s->refused_total,
	    (unsigned long long)s->dropped, (unsigned long long)s->too_big);
	fprintf(fp, "rate:         %.1f msg/s over %.3f s (first connection "
	    "to last message); ran %.3f s\n", f.rate, f.elapsed_s,
	    f.runtime_s);
	fprintf(fp, "per second:  ");
	/* Runs of equal counts as COUNT*N, to keep the line short. */
	for (j = 0; j < s->nsec; j = k) {
		for (k = j + 1; k < s->nsec && s->per_sec[k] == s->per_sec[j];
		    k++)
			;
		if (k - j > 1)
			fprintf(fp, " %u*%zu", s->per_sec[j], k - j);
		else
			fprintf(fp, " %u", s->per_sec[j]);
	}
	fprintf(fp, "%s\n", s->nsec == 0 ? " none" : s->sec_full ?
	    " (cut at a week)" : "");
	if (s->refused_total > 0) {
		fprintf(fp, "refused:      ");
		for (st = 0; st < SINK_MIX_STAGES; st++)
			for (code = 0; code < 200; code++)
				if (s->refused[st][code] > 0) {
					fprintf(fp, "%s%s:%u %llu", sep,
					    sink_stage_name((enum sink_stage)st),
					    code + 400, (unsigned long long)
					    s->refused[st][code]);
					sep = ", ";
				}
		fprintf(fp, "\n");
	}
	fprintf(fp, "connections:  %llu accepted, %llu refused at connect, "
	    "%llu refused over the cap, %llu at most at once\n",
	    (unsigned long long)s->conn_accepted,
	    (unsigned long long)s->conn_refused_connect,
	    (unsigned long long)s->conn_refused_cap,
	    (unsigned long long)s->conn_max);
	fprintf(fp, "bytes:        %llu received\n",
	    (unsigned long long)s->bytes);
	if (s->lat->count > 0)
		fprintf(fp, "latency ms:   p50 %.3f  p90 %.3f  p99 %.3f  "
		    "p99.9 %.3f  max %.3f  (%llu with X-Sluice-Bench, %llu "
		    "without)\n", f.p50, f.p90, f.p99, f.p999, f.max,
		    (unsigned long long)s->lat->count,
		    (unsigned long long)s->no_header);
	else
		fprintf(fp, "latency ms:   none (%llu messages without "
		    "X-Sluice-Bench)\n", (unsigned long long)s->no_header);
	for (i = 0; i < s->nlisten; i++)
		fprintf(fp, "listener:     %s: %llu connections, %llu refused "
		    "over the cap, %llu messages, %llu bytes\n",
		    s->lst[i].addr, (unsigned long long)s->lst[i].conns,
		    (unsigned long long)s->lst[i].refused_cap,
		    (unsigned long long)s->lst[i].messages,
		    (unsigned long long)s->lst[i].bytes);
	fprintf(fp, "protocol:     %llu errors answered, %llu messages with "
	    "bare CR, %llu with bare LF\n", (unsigned long long)s->errors,
	    (unsigned long long)s->bare_cr, (unsigned long long)s->bare_lf);
	if (s->store_dirfd >= 0)
		fprintf(fp, "store:        %llu written, %llu errors\n",
		    (unsigned long long)s->stored,
		    (unsigned long long)s->store_errors);
	if (s->log_fd >= 0)
		fprintf(fp, "log:          %llu errors\n",
		    (unsigned long long)s->log_errors);
}

/* json_object_set_new, failing the report rather than the process. */
static int
jset(json_t *obj, const char *key, json_t *v)
{
	return v == NULL ? -1 : json_object_set_new(obj, key, v);
}

static json_t *
jint(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *
jms(const struct sink *s, double v)
{
	return s->lat->count > 0 ? json_real(v) : json_null();
}

int
sink_report_json(const struct sink *s, FILE *fp)
{
	json_t *root, *o, *a;
	struct sink_facts f;
	char key[32];
	unsigned st, code, i;
	size_t j;
	int rc = 0;

	facts(s, &f);
	if ((root = json_object()) == NULL)
		return -1;
	rc |= jset(root, "protocol", json_string(s->o->lmtp ? "lmtp" :
	    "smtp"));
	rc |= jset(root, "messages", jint(s->messages));
	o = json_object();
	for (st = 0; o != NULL && st < SINK_MIX_STAGES; st++)
		for (code = 0; code < 200; code++)
			if (s->refused[st][code] > 0) {
				snprintf(key, sizeof(key), "%s:%u",
				    sink_stage_name((enum sink_stage)st),
				    code + 400);
				rc |= jset(o, key, jint(s->refused[st][code]));
			}
	rc |= jset(root, "refused", o);
	rc |= jset(root, "refused_total", jint(s->refused_total));
	rc |= jset(root, "dropped", jint(s->dropped));
	rc |= jset(root, "too_big", jint(s->too_big));
	if ((o = json_object()) != NULL) {
		rc |= jset(o, "accepted", jint(s->conn_accepted));
		rc |= jset(o, "refused_connect", jint(s->conn_refused_connect));
		rc |= jset(o, "refused_cap", jint(s->conn_refused_cap));
		rc |= jset(o, "max_concurrent", jint(s->conn_max));
	}
	rc |= jset(root, "connections", o);
	rc |= jset(root, "bytes", jint(s->bytes));
	rc |= jset(root, "elapsed_s", json_real(f.elapsed_s));
	rc |= jset(root, "runtime_s", json_real(f.runtime_s));
	/* CLOCK_MONOTONIC is one clock for every process on the machine:
	 * a harness can measure end to end up to the last message without
	 * counting the sink's wait for idle connections to close. */
	rc |= jset(root, "last_message_mono_s",
	    json_real((double)s->last_msg_us / 1e6));
	rc |= jset(root, "rate", json_real(f.rate));
	a = json_array();
	for (j = 0; a != NULL && j < s->nsec; j++)
		rc |= json_array_append_new(a, jint(s->per_sec[j]));
	rc |= jset(root, "per_second", a);
	if ((o = json_object()) != NULL) {
		rc |= jset(o, "p50", jms(s, f.p50));
		rc |= jset(o, "p90", jms(s, f.p90));
		rc |= jset(o, "p99", jms(s, f.p99));
		rc |= jset(o, "p99.9", jms(s, f.p999));
		rc |= jset(o, "max", jms(s, f.max));
		rc |= jset(o, "count", jint(s->lat->count));
	}
	rc |= jset(root, "latency_ms", o);
	rc |= jset(root, "without_header", jint(s->no_header));
	a = json_array();
	for (i = 0; a != NULL && i < s->nlisten; i++) {
		if ((o = json_object()) == NULL) {
			rc = -1;
			break;
		}
		rc |= jset(o, "address", json_string(s->lst[i].addr));
		rc |= jset(o, "connections", jint(s->lst[i].conns));
		rc |= jset(o, "refused_cap", jint(s->lst[i].refused_cap));
		rc |= jset(o, "messages", jint(s->lst[i].messages));
		rc |= jset(o, "bytes", jint(s->lst[i].bytes));
		rc |= json_array_append_new(a, o);
	}
	rc |= jset(root, "listeners", a);
	rc |= jset(root, "protocol_errors", jint(s->errors));
	rc |= jset(root, "bare_cr", jint(s->bare_cr));
	rc |= jset(root, "bare_lf", jint(s->bare_lf));
	if (s->store_dirfd >= 0 && (o = json_object()) != NULL) {
		rc |= jset(o, "written", jint(s->stored));
		rc |= jset(o, "errors", jint(s->store_errors));
		rc |= jset(root, "store", o);
	}
	if (s->log_fd >= 0)
		rc |= jset(root, "log_errors", jint(s->log_errors));
	if (rc == 0)
		rc = json_dumpf(root, fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
		    JSON_REAL_PRECISION(12));
	if (rc == 0)
		fputc('\n', fp);
	json_decref(root);
	return rc == 0 ? 0 : -1;
}
