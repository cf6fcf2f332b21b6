/*
 * source_report.c - what `sluice-bench source` prints: the progress line
 * (stderr, a terminal only, four times a second) and the report at the
 * end on stdout, as text or as one JSON object (--json). The formats are
 * documented in docs/sluice-bench-source.md and read by tests and
 * bench/compare: change them only together.
 */
#include "source_int.h"

#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

/* ---- progress --------------------------------------------------------- */

void
src_progress_show(struct src *s)
{
	const struct bench_source_opts *o = s->o;
	/* The slot about to be overwritten holds the sample of 1 s ago. */
	unsigned oldest = s->prog_i % SRC_PROGRESS_SAMPLES;
	uint64_t refused = s->st.completed - s->st.accepted, left;
	double rate = 0, dt, elapsed, eta = -1;
	char line[256], etas[32];
	int n;

	dt = (double)(s->now - s->prog_t[oldest]) / 1e6;
	if (dt > 0)
		rate = (double)(s->st.accepted - s->prog_acc[oldest]) / dt;
	s->prog_t[oldest] = s->now;
	s->prog_acc[oldest] = s->st.accepted;
	s->prog_i++;
	elapsed = (double)(s->now - s->t0) / 1e6;
	if (o->messages) {
		left = o->messages - (s->st.completed + s->st.lost);
		if (rate > 0)
			eta = (double)left / rate;
	} else if (s->now < s->t0 + o->duration_us) {
		eta = (double)(s->t0 + o->duration_us - s->now) / 1e6;
	}
	if (eta >= 0)
		snprintf(etas, sizeof(etas), ", ETA %.0fs", eta);
	else
		etas[0] = '\0';
	n = snprintf(line, sizeof(line), "\r%.0f msg/s | %llu sent, %llu "
	    "accepted, %llu refused, %llu lost, %llu conn errors | %.1fs%s"
	    "\033[K", rate, (unsigned long long)s->st.sent,
	    (unsigned long long)s->st.accepted, (unsigned long long)refused,
	    (unsigned long long)s->st.lost,
	    (unsigned long long)s->st.errors, elapsed, etas);
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) > 0)
		s->progress_shown = true;
}

void
src_progress_erase(struct src *s)
{
	static const char erase[] = "\r\033[K";

	if (s->progress_shown &&
	    write(STDERR_FILENO, erase, sizeof(erase) - 1) < 0)
		return;
	s->progress_shown = false;
}

/* ---- the report ------------------------------------------------------- */

static double
src_elapsed(const struct src *s)
{
	return (double)(s->end_us - s->t0) / 1e6;
}

static uint64_t
sum_stages(const uint64_t *v)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < SRC_STAGE_COUNT; i++)
		n += v[i];
	return n;
}

static void
text_stages(const char *label, const uint64_t *v)
{
	unsigned i;
	const char *sep = "";

	if (sum_stages(v) == 0)
		return;
	printf("%-20s ", label);
	for (i = SRC_STAGE_MAIL; i < SRC_STAGE_COUNT; i++) {
		printf("%s%s %llu", sep, src_stage_names[i],
		    (unsigned long long)v[i]);
		sep = ", ";
	}
	printf("\n");
}

static void
text_latency(const char *label, const struct hist *h)
{
	printf("  %-18s %9.3f %9.3f %9.3f %9.3f %9.3f %9llu\n", label,
	    hist_percentile(h, 50) / 1e3, hist_percentile(h, 90) / 1e3,
	    hist_percentile(h, 99) / 1e3, hist_percentile(h, 99.9) / 1e3,
	    h->count ? (double)h->max / 1e3 : 0.0,
	    (unsigned long long)h->count);
}

void
src_report_text(const struct src *s)
{
	const struct bench_source_opts *o = s->o;
	const struct src_stats *st = &s->st;
	double el = src_elapsed(s);
	const char *sep = "";
	unsigned i;

	printf("sluice-bench source: %s, %s%s%s, %u connection%s, %s loop",
	    o->to_text, o->lmtp ? "LMTP" : "SMTP",
	    o->starttls ? " STARTTLS" : o->tls ? " over TLS" : "",
	    o->auth ? " AUTH" : "",
	    o->connections, o->connections == 1 ? "" : "s",
	    o->rate > 0 ? "open" : "closed");
	if (o->rate > 0)
		printf(" at %g msg/s", o->rate);
	if (s->corpus != NULL)
		printf(", corpus of %zu\n", s->ncorpus);
	else
		printf(", %llu-byte messages\n", (unsigned long long)o->size);
	if (o->domains)
		printf("%-20s %u per message, %s, over %u domain%s in turn\n",
		    "recipients", o->recipients, o->rcpt, o->domains,
		    o->domains == 1 ? "" : "s");
	printf("%-20s %.3f s\n", "elapsed", el);
	printf("%-20s %llu sent, %llu accepted, %llu tempfail, %llu "
	    "permfail, %llu lost to connection errors\n", "transactions",
	    (unsigned long long)st->sent, (unsigned long long)st->accepted,
	    (unsigned long long)sum_stages(st->temp),
	    (unsigned long long)sum_stages(st->perm),
	    (unsigned long long)st->lost);
	if (s->live > 0)
		printf("%-20s %llu (the run stopped with them in flight)\n",
		    "unfinished", (unsigned long long)s->live);
	printf("%-20s %.1f msg/s accepted\n", "throughput",
	    el > 0 ? (double)st->accepted / el : 0.0);
	text_stages("tempfail by stage", st->temp);
	text_stages("permfail by stage", st->perm);
	if (st->rcpt_4xx || st->rcpt_5xx)
		printf("%-20s %llu 4xx, %llu 5xx (at RCPT)\n",
		    "recipients refused", (unsigned long long)st->rcpt_4xx,
		    (unsigned long long)st->rcpt_5xx);
	if (o->lmtp)
		printf("%-20s %llu accepted, %llu tempfail, %llu permfail "
		    "(after the data)\n", "LMTP recipients",
		    (unsigned long long)st->lmtp_ok,
		    (unsigned long long)st->lmtp_4xx,
		    (unsigned long long)st->lmtp_5xx);
	printf("%-20s %9s %9s %9s %9s %9s %9s\n", "latency (ms)", "p50",
	    "p90", "p99", "p99.9", "max", "count");
	text_latency("transaction", &st->lat_txn);
	text_latency("connect to 220", &st->lat_greet);
	if (o->starttls || o->tls)
		text_latency("TLS handshake", &st->lat_tls);
	printf("%-20s %llu opened, %llu sessions, %llu errors",
	    "connections", (unsigned long long)st->connects,
	    (unsigned long long)st->sessions,
	    (unsigned long long)st->errors);
	if (st->errors) {
		printf(" (");
		for (i = 0; i < SRC_E_COUNT; i++) {
			if (st->err[i] == 0)
				continue;
			printf("%s%s %llu", sep, src_err_names[i],
			    (unsigned long long)st->err[i]);
			sep = ", ";
		}
		printf(")");
	}
	printf("\n");
	if (s->srv_known)
		printf("%-20s PIPELINING %s%s%s%s\n", "server offers",
		    s->srv_pipelining ? "yes" : "no",
		    s->srv_starttls ? ", STARTTLS" : "",
		    s->srv_plain ? ", AUTH PLAIN" : "",
		    s->srv_login ? ", AUTH LOGIN" : "");
	if (s->tls_version[0])
		printf("%-20s %s %s\n", "tls", s->tls_version, s->tls_cipher);
	if (o->starttls || o->tls)
		printf("%-20s %llu full, %llu resumed (session resumption "
		    "%s)\n", "tls handshakes",
		    (unsigned long long)st->tls_full,
		    (unsigned long long)st->tls_resumed,
		    o->tls_resume ? "offered" : "off");
	if (s->first_refusal[0])
		printf("%-20s %s\n", "first refusal", s->first_refusal);
	if (s->first_conn_error[0])
		printf("%-20s %s\n", "first conn error", s->first_conn_error);
	if (s->error[0])
		printf("%-20s %s\n", "run failed", s->error);
}

static json_t *
json_u64(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *
json_stages(const uint64_t *v)
{
	json_t *j = json_object();
	unsigned i;

	json_object_set_new(j, "total", json_u64(sum_stages(v)));
	for (i = SRC_STAGE_MAIL; i < SRC_STAGE_COUNT; i++)
		json_object_set_new(j, src_stage_names[i], json_u64(v[i]));
	return j;
}

static json_t *
json_hist(const struct hist *h)
{
	json_t *j = json_object();

	json_object_set_new(j, "count", json_u64(h->count));
	json_object_set_new(j, "p50", json_u64(hist_percentile(h, 50)));
	json_object_set_new(j, "p90", json_u64(hist_percentile(h, 90)));
	json_object_set_new(j, "p99", json_u64(hist_percentile(h, 99)));
	json_object_set_new(j, "p99.9", json_u64(hist_percentile(h, 99.9)));
	json_object_set_new(j, "max", json_u64(h->count ? h->max : 0));
	json_object_set_new(j, "mean", json_real(hist_mean(h)));
	return j;
}

static json_t *
json_str_or_null(const char *p)
{
	return p[0] ? json_string(p) : json_null();
}

void
src_report_json(const struct src *s, int status)
{
	const struct bench_source_opts *o = s->o;
	const struct src_stats *st = &s->st;
	json_t *j = json_object(), *x;
	double el = src_elapsed(s);
	unsigned i;

	json_object_set_new(j, "to", json_string(o->to_text));
	json_object_set_new(j, "protocol", json_string(o->lmtp ? "lmtp" :
	    "smtp"));
	json_object_set_new(j, "connections", json_u64(o->connections));
	if (o->messages)
		json_object_set_new(j, "messages", json_u64(o->messages));
	else
		json_object_set_new(j, "duration_s",
		    json_real((double)o->duration_us / 1e6));
	if (s->corpus != NULL)
		json_object_set_new(j, "corpus_files", json_u64(s->ncorpus));
	else
		json_object_set_new(j, "size", json_u64(o->size));
	json_object_set_new(j, "recipients", json_u64(o->recipients));
	if (o->domains)
		json_object_set_new(j, "domains", json_u64(o->domains));
	json_object_set_new(j, "per_connection", json_u64(o->per_connection));
	json_object_set_new(j, "pipelining", json_boolean(o->pipelining));
	json_object_set_new(j, "starttls", json_boolean(o->starttls));
	json_object_set_new(j, "implicit_tls", json_boolean(o->tls));
	json_object_set_new(j, "tls_resume", json_boolean(o->tls_resume));
	json_object_set_new(j, "auth", json_boolean(o->auth));
	json_object_set_new(j, "loop", json_string(o->rate > 0 ? "open" :
	    "closed"));
	json_object_set_new(j, "rate", o->rate > 0 ? json_real(o->rate) :
	    json_null());
	json_object_set_new(j, "elapsed_s", json_real(el));
	json_object_set_new(j, "sent", json_u64(st->sent));
	json_object_set_new(j, "accepted", json_u64(st->accepted));
	json_object_set_new(j, "tempfail", json_stages(st->temp));
	json_object_set_new(j, "permfail", json_stages(st->perm));
	json_object_set_new(j, "lost", json_u64(st->lost));
	json_object_set_new(j, "unfinished", json_u64(s->live));
	json_object_set_new(j, "messages_per_s",
	    json_real(el > 0 ? (double)st->accepted / el : 0.0));
	x = json_object();
	json_object_set_new(x, "refused_4xx", json_u64(st->rcpt_4xx));
	json_object_set_new(x, "refused_5xx", json_u64(st->rcpt_5xx));
	if (o->lmtp) {
		json_object_set_new(x, "lmtp_accepted", json_u64(st->lmtp_ok));
		json_object_set_new(x, "lmtp_tempfail",
		    json_u64(st->lmtp_4xx));
		json_object_set_new(x, "lmtp_permfail",
		    json_u64(st->lmtp_5xx));
	}
	json_object_set_new(j, "recipients_detail", x);
	x = json_object();
	json_object_set_new(x, "transaction", json_hist(&st->lat_txn));
	json_object_set_new(x, "connect_greeting", json_hist(&st->lat_greet));
	if (o->starttls || o->tls)
		json_object_set_new(x, "tls_handshake",
		    json_hist(&st->lat_tls));
	json_object_set_new(j, "latency_us", x);
	x = json_object();
	json_object_set_new(x, "opened", json_u64(st->connects));
	json_object_set_new(x, "sessions", json_u64(st->sessions));
	json_object_set_new(x, "errors", json_u64(st->errors));
	for (i = 0; i < SRC_E_COUNT; i++)
		json_object_set_new(x, src_err_names[i], json_u64(st->err[i]));
	json_object_set_new(j, "connections_detail", x);
	if (s->srv_known) {
		x = json_object();
		json_object_set_new(x, "pipelining",
		    json_boolean(s->srv_pipelining));
		json_object_set_new(x, "starttls",
		    json_boolean(s->srv_starttls));
		json_object_set_new(x, "auth_plain",
		    json_boolean(s->srv_plain));
		json_object_set_new(x, "auth_login",
		    json_boolean(s->srv_login));
		json_object_set_new(j, "server", x);
	}
	if (s->tls_version[0]) {
		x = json_object();
		json_object_set_new(x, "version", json_string(s->tls_version));
		json_object_set_new(x, "cipher", json_string(s->tls_cipher));
		json_object_set_new(j, "tls", x);
	}
	if (o->starttls || o->tls) {
		x = json_object();
		json_object_set_new(x, "full", json_u64(st->tls_full));
		json_object_set_new(x, "resumed", json_u64(st->tls_resumed));
		json_object_set_new(j, "tls_handshakes", x);
	}
	json_object_set_new(j, "first_refusal",
	    json_str_or_null(s->first_refusal));
	json_object_set_new(j, "first_connection_error",
	    json_str_or_null(s->first_conn_error));
	json_object_set_new(j, "error", json_str_or_null(s->error));
	json_object_set_new(j, "exit", json_integer(status));
	if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
	    JSON_REAL_PRECISION(10)) == 0)
		fputc('\n', stdout);
	json_decref(j);
}
