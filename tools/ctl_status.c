/*
 * ctl_status.c - `sluicectl status [--json]`: what the running daemon is
 * doing, as the daemon itself reports it on its control socket
 * ("status", engine/control.h). The daemon builds the document
 * (engine/status.c, keys in docs/operations.md); --json prints it as it
 * came, indented, and without it the same data is shown as a few lines
 * and a table of destinations.
 *
 * Diagnostics: without a running daemon (no socket, or nobody listening)
 * "sluicectl: status: sluiced is not running ..." and exit 1; an answer
 * that is not the document: exit 1 with what it said.
 */
#include "ctl_status.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define STATUS_REPLY_MAX (4u << 20)
#define STATUS_WAIT_MS 15000

int
ctl_ask(const struct config *cfg, const char *cmd, unsigned wait_ms,
    char **out, char *why, size_t whylen)
{
	size_t len = strlen(cmd);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = 0, cap = 65536;
	char *buf = NULL;
	struct timespec t0;
	int fd;

	*out = NULL;
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path),
	    "%s/control.sock", cfg->spool) >= sizeof(sa.sun_path)) {
		snprintf(why, whylen, "spool path too long for the control "
		    "socket");
		return 1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		snprintf(why, whylen, "sluiced is not running (%s: %s)",
		    sa.sun_path, strerror(e));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	if (write(fd, cmd, len) != (ssize_t)len) {
		snprintf(why, whylen, "control socket: %s", strerror(errno));
		close(fd);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		struct timespec t;
		long ms;
		ssize_t r;

		clock_gettime(CLOCK_MONOTONIC, &t);
		ms = (long)wait_ms - ((t.tv_sec - t0.tv_sec) * 1000 +
		    (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (ms <= 0 || poll(&p, 1, (int)ms) <= 0) {
			snprintf(why, whylen, "no answer from sluiced within "
			    "%u s", wait_ms / 1000);
			goto fail;
		}
		if (buf == NULL || n + 1 >= cap) {
			char *nb;

			if (n + 1 >= STATUS_REPLY_MAX) {
				snprintf(why, whylen, "answer too long");
				goto fail;
			}
			cap = buf == NULL ? cap : cap * 2;
			if ((nb = realloc(buf, cap)) == NULL) {
				snprintf(why, whylen, "out of memory");
				goto fail;
			}
			buf = nb;
		}
		r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(why, whylen, "control socket: %s",
			    strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return 1;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
fail:
	free(buf);
	close(fd);
	return 1;
}

/* ---- the text form ------------------------------------------------------ */

static json_int_t
num(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static double
real(const json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

static const char *
str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

/* A duration as an operator reads it: 45s, 12m 3s, 3h 12m, 2d 4h. */
static void
duration(double s, char *out, size_t n)
{
	unsigned long v = s > 0 ? (unsigned long)s : 0;

	if (v < 60)
		snprintf(out, n, "%lus", v);
	else if (v < 3600)
		snprintf(out, n, "%lum %lus", v / 60, v % 60);
	else if (v < 86400)
		snprintf(out, n, "%luh %lum", v / 3600, v / 60 % 60);
	else
		snprintf(out, n, "%lud %luh", v / 86400, v / 3600 % 24);
}

/* Text from the network goes to a terminal: control bytes as '?'. */
static void
put_safe(const char *s, int width)
{
	int n = 0;

	for (; *s != '\0' && (width <= 0 || n < width); s++, n++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
	for (; n < width; n++)
		putchar(' ');
}

static void
print_queue(const json_t *q)
{
	const json_t *old = json_object_get(q, "oldest");
	char age[32];

	if (!json_is_true(json_object_get(q, "read"))) {
		puts("queue        (the index could not be read)");
		return;
	}
	printf("queue        %lld message(s): %lld queued, %lld deferred, "
	    "%lld held%s", (long long)num(q, "messages"),
	    (long long)num(q, "queued"), (long long)num(q, "deferred"),
	    (long long)num(q, "held"),
	    json_is_true(json_object_get(q, "complete")) ? "" :
	    " (of those read in time)");
	if (json_is_object(old)) {
		duration(real(old, "age_s"), age, sizeof(age));
		printf("; oldest %s (%s)", age, str(old, "id"));
	}
	printf("\n             in memory %lld item(s), %lld recipient(s) "
	    "(%lld waiting to retry); %lld recipient(s) parked in the index; "
	    "%lld quarantined\n", (long long)num(q, "active_items"),
	    (long long)num(q, "active_recipients"),
	    (long long)num(q, "deferred_items"),
	    (long long)num(q, "parked_recipients"),
	    (long long)num(q, "quarantined"));
}

static void
print_counts(const json_t *doc)
{
	static const char *const keys[] = {
		"accepted", "delivered", "deferred", "bounced", "expired",
		"discarded",
	};
	const json_t *m = json_object_get(doc, "last_minute");
	const json_t *t = json_object_get(doc, "totals");
	const json_t *ps = json_object_get(m, "per_second");
	size_t i;

	printf("\n%-12s", "");
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		printf(" %10s", keys[i]);
	printf("\n%-12s", "last minute");
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		printf(" %10lld", (long long)num(m, keys[i]));
	printf("\n%-12s", "per second");
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		printf(" %10.1f", real(ps, keys[i]));
	printf("\n%-12s", "total");
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		printf(" %10lld", (long long)num(t, keys[i]));
	putchar('\n');
}

static void
print_dests(const json_t *doc)
{
	const json_t *ds = json_object_get(doc, "destinations");
	const json_t *o = json_object_get(doc, "destinations_other");
	size_t i;
	json_t *d;

	if (json_array_size(ds) == 0) {
		puts("\nno destination in memory");
		return;
	}
	printf("\n%-32s %7s %6s %6s %8s %-10s %s\n", "destination", "queued",
	    "conns", "limit", "rate/min", "state", "last error");
	json_array_foreach(ds, i, d) {
		char lim[24], st[32];
		const char *err = str(d, "last_error");

		snprintf(lim, sizeof(lim), "%lld/%lld",
		    (long long)num(d, "connection_limit"),
		    (long long)num(d, "max_connections"));
		if (real(d, "hold_s") > 0)
			snprintf(st, sizeof(st), "%s %.0fs", str(d, "state"),
			    real(d, "hold_s") + 0.5);
		else
			snprintf(st, sizeof(st), "%s", str(d, "state"));
		put_safe(str(d, "destination"), 32);
		printf(" %7lld %6lld %6s %8.1f %-10s ",
		    (long long)num(d, "queued"),
		    (long long)num(d, "connections"), lim,
		    real(d, "rate_per_min"), st);
		put_safe(err[0] != '\0' ? err : "-", 0);
		putchar('\n');
	}
	if (num(o, "count") > 0)
		printf("(%lld more destination(s): %lld queued, %lld "
		    "connection(s))\n", (long long)num(o, "count"),
		    (long long)num(o, "queued"),
		    (long long)num(o, "connections"));
}

/* MTA-STS policy domains and their TLS-RPT counts (RFC 8460). */
static void
print_sts(const json_t *doc)
{
	const json_t *a = json_object_get(doc, "mta_sts"), *d, *v;
	const char *k;
	size_t i;

	if (json_array_size(a) == 0)
		return;
	printf("\n%-32s %-8s %8s %8s %s\n", "MTA-STS domain", "mode", "tls ok",
	    "failed", "failures");
	json_array_foreach(a, i, d) {
		const json_t *f = json_object_get(d, "failures");
		bool first = true;

		put_safe(str(d, "domain"), 32);
		printf(" %-8s %8lld %8lld ", str(d, "mode"),
		    (long long)num(d, "successful_sessions"),
		    (long long)num(d, "failed_sessions"));
		json_object_foreach((json_t *)f, k, v) {
			printf("%s%s=%lld", first ? "" : ", ", k,
			    (long long)json_integer_value(v));
			first = false;
		}
		if (first)
			putchar('-');
		putchar('\n');
	}
}

static void
print_text(const json_t *doc)
{
	const json_t *c = json_object_get(doc, "connections");
	const json_t *ls = json_object_get(doc, "listeners"), *l;
	const json_t *metrics = json_object_get(doc, "metrics");
	char up[32];
	size_t i;

	duration(real(doc, "uptime_s"), up, sizeof(up));
	printf("sluiced %s on %s, up %s (pid %lld), %lld shard(s)\n",
	    str(doc, "version"), str(doc, "hostname"), up,
	    (long long)num(doc, "pid"), (long long)num(doc, "shards"));
	json_array_foreach(ls, i, l)
		printf("%-12s %s (tls %s%s, auth %s)\n", i == 0 ? "listening" :
		    "", str(l, "address"), str(l, "tls"),
		    json_is_true(json_object_get(l, "proxy_protocol")) ?
		    ", PROXY protocol" : "", str(l, "auth"));
	if (json_is_string(metrics))
		printf("%-12s http://%s/metrics\n", "metrics",
		    json_string_value(metrics));
	printf("%-12s inbound %lld of %lld, outbound %lld of %lld\n",
	    "connections", (long long)num(c, "inbound"),
	    (long long)num(c, "inbound_max"), (long long)num(c, "outbound"),
	    (long long)num(c, "outbound_max"));
	print_queue(json_object_get(doc, "queue"));
	print_counts(doc);
	print_dests(doc);
	print_sts(doc);
	if (num(doc, "shards_answered") < num(doc, "shards"))
		printf("(%lld of %lld shard(s) answered in time: the table "
		    "is partial)\n", (long long)num(doc, "shards_answered"),
		    (long long)num(doc, "shards"));
}

int
ctl_status(const struct config *cfg, int argc, char **argv)
{
	char *reply, why[600];
	json_error_t jerr;
	json_t *doc;
	int json = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = 1;
			continue;
		}
		fprintf(stderr, "sluicectl: status: unexpected argument '%s' "
		    "(usage: sluicectl status [--json])\n", argv[i]);
		return 2;
	}
	if (ctl_ask(cfg, "status\n", STATUS_WAIT_MS, &reply, why,
	    sizeof(why)) != 0) {
		fprintf(stderr, "sluicectl: status: %s\n", why);
		return 1;
	}
	if (strncmp(reply, "ok ", 3) != 0) {
		char *nl = strchr(reply, '\n');

		if (nl != NULL)
			*nl = '\0';
		fprintf(stderr, "sluicectl: status: %s\n",
		    strncmp(reply, "error ", 6) == 0 ? reply + 6 :
		    reply[0] != '\0' ? reply : "no answer from sluiced");
		free(reply);
		return 1;
	}
	doc = json_loads(reply + 3, 0, &jerr);
	free(reply);
	if (!json_is_object(doc)) {
		fprintf(stderr, "sluicectl: status: the answer is not a JSON "
		    "object: %s\n", jerr.text);
		json_decref(doc);
		return 1;
	}
	if (json) {
		json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
	} else {
		print_text(doc);
	}
	json_decref(doc);
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
