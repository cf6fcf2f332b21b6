/*
 * Description: the counters and the exposition (lib/stats.c,
 * engine/stats.c, engine/stats_prom.c). A reply is counted by its class
 * and enhanced subject ("250 2.1.5" is 2xx/2.1; a 421 without a code is
 * 4xx/none; "354" is 3xx; "hello" and "6xx" are not counted); a value
 * falls in the first bucket whose bound is not below it, +Inf past the
 * last; the minute's ring gives what the totals grew by since the oldest
 * sample within 60 s. The Prometheus text of a view with known numbers
 * passes a strict reader of format 0.0.4 (HELP and TYPE once per family,
 * before its samples, which are contiguous; names and labels well formed;
 * label values escaped; histogram buckets rising to le="+Inf" equal to
 * _count) and carries those numbers: counters, queue gauges, histogram
 * sums in seconds, the top destinations and the rest as "_other".
 */
#include "check.h"
#include "../../engine/stats.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- a strict reader of the text format -------------------------------- */

#define FAMS_MAX 128

struct fam {
	char name[128];
	char type[16];
	bool help, samples_done;
};

static struct fam fams[FAMS_MAX];
static unsigned nfams;
static int cur = -1;		/* the family whose samples come now */

static struct fam *
fam_get(const char *name, size_t n)
{
	for (unsigned i = 0; i < nfams; i++)
		if (strlen(fams[i].name) == n &&
		    memcmp(fams[i].name, name, n) == 0)
			return &fams[i];
	CHECK_FATAL(nfams < FAMS_MAX && n < sizeof(fams[0].name));
	memcpy(fams[nfams].name, name, n);
	return &fams[nfams++];
}

static size_t
name_len(const char *p, bool label)
{
	size_t n = 0;

	if (!(isalpha((unsigned char)p[0]) || p[0] == '_' ||
	    (!label && p[0] == ':')))
		return 0;
	while (isalnum((unsigned char)p[n]) || p[n] == '_' ||
	    (!label && p[n] == ':'))
		n++;
	return n;
}

/* The family a sample name belongs to (histogram suffixes cut). */
static struct fam *
sample_family(const char *name, size_t n)
{
	static const char *const sfx[] = { "_bucket", "_sum", "_count" };

	for (size_t i = 0; i < 3; i++) {
		size_t k = strlen(sfx[i]);

		if (n > k && memcmp(name + n - k, sfx[i], k) == 0) {
			for (unsigned f = 0; f < nfams; f++)
				if (strlen(fams[f].name) == n - k &&
				    memcmp(fams[f].name, name, n - k) == 0 &&
				    strcmp(fams[f].type, "histogram") == 0)
					return &fams[f];
		}
	}
	return fam_get(name, n);
}

/* Histogram state while reading one family's buckets. */
static double last_le;
static double last_bucket;
static double inf_bucket;

static void
read_line(const char *line)
{
	if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
		const char *p = line + 7;
		size_t n = name_len(p, false);
		struct fam *f;

		CHECK_FATAL(n > 0 && p[n] == ' ');
		f = fam_get(p, n);
		CHECK(!f->samples_done);
		if (line[2] == 'H') {
			CHECK(!f->help);	/* once */
			f->help = true;
			CHECK(p[n + 1] != '\0');
		} else {
			CHECK(f->type[0] == '\0');
			snprintf(f->type, sizeof(f->type), "%s", p + n + 1);
			CHECK(strcmp(f->type, "counter") == 0 ||
			    strcmp(f->type, "gauge") == 0 ||
			    strcmp(f->type, "histogram") == 0);
			last_le = -1;
			last_bucket = 0;
			inf_bucket = -1;
		}
		return;
	}
	CHECK_FATAL(line[0] != '#' && line[0] != '\0');
	{
		size_t n = name_len(line, false);
		const char *p = line + n, *le = NULL;
		struct fam *f;
		char *end;
		double v;

		CHECK_FATAL(n > 0);
		f = sample_family(line, n);
		CHECK(f->type[0] != '\0');	/* TYPE came first */
		if (cur >= 0 && &fams[cur] != f)
			fams[cur].samples_done = true;
		CHECK(!f->samples_done);	/* contiguous */
		cur = (int)(f - fams);
		if (*p == '{') {
			p++;
			while (*p != '}') {
				size_t ln = name_len(p, true);

				CHECK_FATAL(ln > 0 && p[ln] == '=' &&
				    p[ln + 1] == '"');
				if (ln == 2 && memcmp(p, "le", 2) == 0)
					le = p + 4;
				p += ln + 2;
				while (*p != '"') {
					CHECK_FATAL(*p != '\0' && *p != '\n');
					if (*p == '\\') {
						CHECK(p[1] == '\\' ||
						    p[1] == '"' || p[1] == 'n');
						p++;
					}
					p++;
				}
				p++;
				if (*p == ',')
					p++;
				else
					CHECK_FATAL(*p == '}');
			}
			p++;
		}
		CHECK_FATAL(*p == ' ');
		v = strtod(p + 1, &end);
		CHECK(end != p + 1 && *end == '\0');
		CHECK(!isnan(v));
		if (strcmp(f->type, "counter") == 0)
			CHECK(v >= 0);
		if (le != NULL) {
			double bound = strncmp(le, "+Inf\"", 5) == 0 ? INFINITY :
			    strtod(le, NULL);

			CHECK(bound > last_le);
			CHECK(v >= last_bucket);
			last_le = bound;
			last_bucket = v;
			if (isinf(bound))
				inf_bucket = v;
		} else if (strcmp(f->type, "histogram") == 0 &&
		    n > 6 && memcmp(line + n - 6, "_count", 6) == 0) {
			CHECK(inf_bucket == v);
		}
	}
}

static void
read_text(const char *orig)
{
	char *text = strdup(orig), *line, *save = NULL;

	CHECK_FATAL(text != NULL);

	memset(fams, 0, sizeof(fams));
	nfams = 0;
	cur = -1;
	CHECK(text[strlen(text) - 1] == '\n');
	for (line = strtok_r(text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		read_line(line);
	for (unsigned i = 0; i < nfams; i++) {
		CHECK(fams[i].help);
		CHECK(fams[i].type[0] != '\0');
	}
	free(text);
}

/* ---- the cases ----------------------------------------------------------- */

static void
replies(void)
{
	struct stats_shard *s = calloc(1, sizeof(*s));

	CHECK_FATAL(s != NULL);
	stats_reply(s, "250 2.1.5 Ok", 12);
	stats_reply(s, "250-2.1.5 x", 11);
	stats_reply(s, "421 mx Error: too many connections", 34);
	stats_reply(s, "354 End data with <CR><LF>.<CR><LF>", 35);
	stats_reply(s, "550 5.7.1 relay", 15);
	stats_reply(s, "550 4.7.1 mixed", 15);	/* code and class disagree */
	stats_reply(s, "451 4.9.9 odd", 13);	/* subject past 7 */
	stats_reply(s, "hello", 5);
	stats_reply(s, "650 6.0.0 no", 12);
	stats_reply(s, "25", 2);
	CHECK(stats_get(&s->replies[0][1]) == 2);
	CHECK(stats_get(&s->replies[2][STATS_SUBJECTS - 1]) == 2);
	CHECK(stats_get(&s->replies[1][STATS_SUBJECTS - 1]) == 1);
	CHECK(stats_get(&s->replies[3][7]) == 1);
	CHECK(stats_get(&s->replies[3][STATS_SUBJECTS - 1]) == 1);
	free(s);
}

static void
accepted(void)
{
	struct stats_shard *s = calloc(1, sizeof(*s));
	struct stats_hist_copy c;
	struct timespec ts;
	uint64_t now;

	CHECK_FATAL(s != NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	stats_accepted(s, 3, 1000, now - 2000000);	/* 2 s ago: 2.5 s bucket */
	stats_accepted(s, 1, 500, 0);			/* start unknown */
	CHECK(stats_get(&s->messages_in) == 2);
	CHECK(stats_get(&s->rcpts_in) == 4);
	CHECK(stats_get(&s->bytes_in) == 1500);
	stats_hist_read(&s->accept, &c);
	CHECK(c.count == 1);
	CHECK(c.bucket[12] == 1);			/* (1 s, 2.5 s] */
	CHECK(c.sum >= 2000000 && c.sum < 2500000);
	free(s);
}

static void
buckets(void)
{
	struct stats_hist *h = calloc(1, sizeof(*h));
	struct stats_hist_copy c;
	unsigned n;
	const uint64_t *b = stats_bounds(STATS_H_BATCH, &n);

	CHECK_FATAL(h != NULL && n > 2 && b[0] == 1 && b[1] == 2);
	stats_observe(h, STATS_H_BATCH, 0);		/* bucket 0 */
	stats_observe(h, STATS_H_BATCH, 1);		/* bucket 0 */
	stats_observe(h, STATS_H_BATCH, 2);		/* bucket 1 */
	stats_observe(h, STATS_H_BATCH, 3);		/* bucket 2 */
	stats_observe(h, STATS_H_BATCH, b[n - 1] + 1);	/* +Inf */
	stats_hist_read(h, &c);
	CHECK(c.bucket[0] == 2 && c.bucket[1] == 1 && c.bucket[2] == 1);
	CHECK(c.bucket[n] == 1);
	CHECK(c.count == 5);
	CHECK(c.sum == 6 + b[n - 1] + 1);
	for (int k = 0; k < STATS_H_KINDS; k++) {
		b = stats_bounds((enum stats_hist_kind)k, &n);
		CHECK(n > 0 && n <= STATS_BUCKETS_MAX);
		for (unsigned i = 1; i < n; i++)
			CHECK(b[i] > b[i - 1]);
	}
	free(h);
}

static void
ring(void)
{
	static struct stats_ring r;
	uint64_t v[STATS_R_VALS] = { 0 }, d[STATS_R_VALS], w;

	stats_ring_minute(&r, 1000, v, d, &w);
	CHECK(w == 0 && d[0] == 0);
	/* A sample a second for 100 s, accepted growing by 2 a second. */
	for (uint64_t t = 0; t <= 100; t++) {
		v[STATS_R_ACCEPTED] = 2 * t;
		stats_ring_add(&r, 10000 + t * 1000, v);
	}
	v[STATS_R_ACCEPTED] = 2 * 100 + 1;
	stats_ring_minute(&r, 10000 + 100 * 1000 + 500, v, d, &w);
	CHECK(w == 59500);		/* the sample at 41 s, 59.5 s ago */
	CHECK(d[STATS_R_ACCEPTED] == 201 - 82);
	/* Right after a start: the window is what there is. */
	memset(&r, 0, sizeof(r));
	v[STATS_R_ACCEPTED] = 0;
	stats_ring_add(&r, 5000, v);
	v[STATS_R_ACCEPTED] = 7;
	stats_ring_minute(&r, 8000, v, d, &w);
	CHECK(w == 3000 && d[STATS_R_ACCEPTED] == 7);
}

static char *
expose(const struct stats_view *v)
{
	struct buf b = { 0 };

	CHECK_FATAL(stats_prom_write(&b, v) == 0);
	CHECK_FATAL(buf_append(&b, "", 1) == 0);
	return b.data;
}

static bool
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	fprintf(stderr, "missing line: %s\n", line);
	return false;
}

static void
exposition(void)
{
	struct stats_view *v = calloc(1, sizeof(*v));
	char *text;

	CHECK_FATAL(v != NULL);
	/* An empty view is valid too. */
	text = expose(v);
	read_text(text);
	free(text);

	v->now_us = 1700000100000000ull;
	v->started_us = 1700000000000000ull;
	v->shards = 2;
	v->conns_in = 10;
	v->conns_in_closed = 7;
	v->messages_in = 42;
	v->replies[0][0] = 42;
	v->replies[3][7] = 3;
	v->outcomes[STATS_DELIVERED] = 40;
	v->outcomes[STATS_DEFERRED] = 5;
	v->outcomes[STATS_BOUNCED] = 1;
	v->g_conns_out = 4;
	v->queue.read = v->queue.complete = true;
	v->queue.messages = 9;
	v->queue.queued = 2;
	v->queue.deferred = 6;
	v->queue.held = 1;
	v->queue.oldest_qid = 1;
	v->queue.oldest_arrival_us = v->now_us - 90000000;
	v->accept.bucket[3] = 2;	/* 1 ms < x <= 2.5 ms */
	v->accept.count = 2;
	v->accept.sum = 3000;
	v->batch.bucket[0] = 5;
	v->batch.count = 5;
	v->batch.sum = 5;
	v->dests_answered = 2;
	v->ntop = 2;
	snprintf(v->top[0].key, sizeof(v->top[0].key), "b.example");
	v->top[0].queued = 7;
	v->top[0].conns = 3;
	v->top[0].rate = 12.5;
	v->top[0].hold_ms = 1500;
	snprintf(v->top[1].key, sizeof(v->top[1].key), "[q\"x\\]:25");
	v->top[1].queued = 1;
	v->dests_all.count = 5;
	v->dests_other.count = 3;
	v->dests_other.queued = 4;
	v->dests_other.conns = 1;
	v->dests_other.rate = 0.5;
	text = expose(v);
	read_text(text);
	CHECK(has_line(text, "sluice_messages_accepted_total 42"));
	CHECK(has_line(text, "sluice_connections{direction=\"inbound\"} 3"));
	CHECK(has_line(text, "sluice_connections{direction=\"outbound\"} 4"));
	CHECK(has_line(text, "sluice_smtp_replies_total{class=\"2xx\","
	    "enhanced=\"2.0\"} 42"));
	CHECK(has_line(text, "sluice_smtp_replies_total{class=\"5xx\","
	    "enhanced=\"5.7\"} 3"));
	/* Every class shows, even with nothing counted. */
	CHECK(has_line(text, "sluice_smtp_replies_total{class=\"4xx\","
	    "enhanced=\"none\"} 0"));
	CHECK(has_line(text, "sluice_recipients_total{outcome=\"delivered\"} "
	    "40"));
	CHECK(has_line(text, "sluice_recipients_total{outcome=\"deferred\"} 5"));
	CHECK(has_line(text, "sluice_recipients_total{outcome=\"bounced\"} 1"));
	CHECK(has_line(text, "sluice_queue_messages{state=\"deferred\"} 6"));
	CHECK(has_line(text, "sluice_queue_messages{state=\"held\"} 1"));
	CHECK(has_line(text, "sluice_queue_size_messages 9"));
	CHECK(has_line(text, "sluice_queue_oldest_message_age_seconds 90.000"));
	CHECK(has_line(text, "sluice_accept_latency_seconds_bucket{le=\"0.001\"}"
	    " 0"));
	CHECK(has_line(text, "sluice_accept_latency_seconds_bucket{le="
	    "\"0.0025\"} 2"));
	CHECK(has_line(text, "sluice_accept_latency_seconds_bucket{le=\"+Inf\"}"
	    " 2"));
	CHECK(has_line(text, "sluice_accept_latency_seconds_sum 0.003000"));
	CHECK(has_line(text, "sluice_commit_batch_records_bucket{le=\"1\"} 5"));
	CHECK(has_line(text, "sluice_destination_queued{destination="
	    "\"b.example\"} 7"));
	CHECK(has_line(text, "sluice_destination_queued{destination="
	    "\"[q\\\"x\\\\]:25\"} 1"));
	CHECK(has_line(text, "sluice_destination_queued{destination="
	    "\"_other\"} 4"));
	CHECK(has_line(text, "sluice_destination_connections{destination="
	    "\"_other\"} 1"));
	CHECK(has_line(text, "sluice_destination_delivered_per_minute{"
	    "destination=\"b.example\"} 12.500"));
	CHECK(has_line(text, "sluice_destination_backoff_seconds{destination="
	    "\"b.example\"} 1.500"));
	CHECK(has_line(text, "sluice_destinations 5"));
	free(text);

	/* Out of room: an error, not a cut text passed off as whole. */
	{
		struct buf b = { .max = 200 };

		CHECK(stats_prom_write(&b, v) != 0);
		buf_free(&b);
	}
	free(v);
}

/* The reader is strict: each of these must fail it. */
static void
reader_strict(void)
{
	static const char *const bad[] = {
		/* a sample before its TYPE */
		"# HELP a x\na 1\n# TYPE a gauge\n",
		/* a family's samples split */
		"# HELP a x\n# TYPE a gauge\na{l=\"1\"} 1\n# HELP b x\n"
		"# TYPE b gauge\nb 1\na{l=\"2\"} 1\n",
		/* buckets falling */
		"# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 5\n"
		"h_bucket{le=\"+Inf\"} 4\nh_sum 1\nh_count 4\n",
		/* _count not the +Inf bucket */
		"# HELP h x\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 4\n"
		"h_sum 1\nh_count 5\n",
		/* a negative counter, a bad escape */
		"# HELP c x\n# TYPE c counter\nc -1\n",
		"# HELP g x\n# TYPE g gauge\ng{l=\"\\q\"} 1\n",
	};
	int before = check_failures;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int at = check_failures;

		read_text(bad[i]);
		if (check_failures == at) {
			fprintf(stderr, "the reader took bad text %zu\n", i);
			before--;	/* one failure that stays */
		}
	}
	check_failures = before;
}

int
main(void)
{
	reader_strict();
	replies();
	accepted();
	buckets();
	ring();
	exposition();
	return check_done();
}
