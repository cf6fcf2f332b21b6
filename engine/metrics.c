/*
 * metrics.c - the Prometheus endpoint; see metrics.h.
 *
 * One thread, blocking I/O, one client at a time: a scraper asks every
 * few seconds, and each request is bounded (METRICS_IO_MS to send its
 * head, HTTP_HEAD_MAX bytes of it, METRICS_IO_MS to take the answer), so
 * a client that stalls holds the endpoint a few seconds at most and
 * never anything a shard waits for.
 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/buf.h"
#include "../lib/clock.h"
#include "../lib/log.h"
#include "../lib/thread.h"
#include "../proto/http.h"
#include "stats.h"

#define METRICS_IO_MS 5000
#define METRICS_BODY_MAX (4u << 20)
#define METRICS_LINGER_MS 200		/* reading what a client still sends */
#define METRICS_LINGER_BYTES 65536

static struct {
	const struct config *cfg;
	struct queue_index *qi;
	int fd;
	int stop_pipe[2];
	pthread_t thread;
	bool running;
	struct stats_queue queue;	/* the last scan of the index */
	uint64_t queue_ms;		/* when (monotonic), 0: never */
} mx = { .fd = -1, .stop_pipe = { -1, -1 } };

int
metrics_bind(const struct config *cfg)
{
	const struct metrics_cfg *m = &cfg->metrics;
	int one = 1, fd;

	if (m->listen == NULL)
		return 0;
	fd = socket(m->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&m->sa, m->salen) < 0 ||
	    listen(fd, 16) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	mx.fd = fd;
	return 0;
}

/* Write all of p within the deadline; false if the client did not take it. */
static bool
write_all(int fd, const char *p, size_t n, uint64_t deadline)
{
	while (n > 0) {
		struct pollfd pf = { .fd = fd, .events = POLLOUT };
		uint64_t now = clock_mono_ms();
		ssize_t w;

		if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) <= 0)
			return false;
		w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static void
respond(int fd, int status, const char *extra, const char *body,
    size_t len, bool head_only, uint64_t deadline)
{
	char head[512];
	int n;

	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\nContent-Length: %zu\r\n%s"
	    "Connection: close\r\n\r\n", status, http_reason(status),
	    status == 200 ? "text/plain; version=0.0.4; charset=utf-8" :
	    "text/plain; charset=utf-8", len, extra != NULL ? extra : "");
	if (n <= 0 || (size_t)n >= sizeof(head))
		return;
	if (write_all(fd, head, (size_t)n, deadline) && !head_only)
		write_all(fd, body, len, deadline);
}

static void
respond_error(int fd, int status, const char *extra, const char *text,
    uint64_t deadline)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "%d %s: %s\n", status,
	    http_reason(status), text);

	respond(fd, status, extra, body, n > 0 ? (size_t)n : 0, false,
	    deadline);
}

/*
 * The view for one scrape. The index is read again only when the last
 * read is older than ten times what it cost, so that a queue of millions
 * is not walked on every scrape.
 */
static void
view(struct stats_view *v)
{
	uint64_t now = clock_mono_ms();

	stats_sum(v, mx.cfg->shards);
	if (mx.queue_ms == 0 || !mx.queue.read ||
	    now - mx.queue_ms >= mx.queue.scan_us / 100u) {
		if (stats_queue_scan(mx.qi, &mx.queue, STATS_SCAN_MS) < 0)
			log_warn("metrics: the queue index cannot be read");
		mx.queue_ms = now;
	}
	v->queue = mx.queue;
	stats_dests(v, STATS_DEST_WAIT_MS);
}

static void
serve(int fd)
{
	uint64_t deadline = clock_mono_ms() + METRICS_IO_MS;
	char in[HTTP_HEAD_MAX + 1];
	size_t n = 0;
	struct http_req r;
	enum http_result res = HTTP_MORE;
	struct buf body = { .max = METRICS_BODY_MAX };
	struct stats_view *v;
	bool head;

	while (res == HTTP_MORE && n < sizeof(in)) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		uint64_t now = clock_mono_ms();
		ssize_t got;

		if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) <= 0) {
			respond_error(fd, 408, NULL, "request not complete in "
			    "time", deadline + METRICS_IO_MS);
			return;
		}
		got = recv(fd, in + n, sizeof(in) - n, MSG_DONTWAIT);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (got <= 0)
			return;		/* gone, or a half request: no one to tell */
		n += (size_t)got;
		res = http_parse(in, n, &r);
	}
	deadline = clock_mono_ms() + METRICS_IO_MS;
	if (res != HTTP_DONE) {
		if (res == HTTP_MORE)	/* full buffer, still no end */
			respond_error(fd, 431, NULL, "request head too large",
			    deadline);
		else
			respond_error(fd, r.status, NULL, r.why, deadline);
		log_debug("metrics: bad request: %s", res == HTTP_MORE ?
		    "head too large" : r.why);
		return;
	}
	if (strcmp(r.path, "/metrics") != 0) {
		respond_error(fd, 404, NULL, "the metrics are at /metrics",
		    deadline);
		return;
	}
	head = strcmp(r.method, "HEAD") == 0;
	if (strcmp(r.method, "GET") != 0 && !head) {
		respond_error(fd, 405, "Allow: GET, HEAD\r\n", "use GET",
		    deadline);
		return;
	}
	if ((v = calloc(1, sizeof(*v))) == NULL) {
		respond_error(fd, 503, NULL, "out of memory", deadline);
		return;
	}
	view(v);
	if (stats_prom_write(&body, v) != 0) {
		respond_error(fd, 500, NULL, "the metrics do not fit", deadline);
	} else {
		/* Built while the client waited: give it its own time. */
		respond(fd, 200, NULL, body.data, body.len, head,
		    clock_mono_ms() + METRICS_IO_MS);
	}
	buf_free(&body);
	free(v);
}

/*
 * Close after the answer. Input left unread (a refused head, a body)
 * would make the close a reset that can overtake the answer on its way
 * to the client, so what comes is read and dropped for a moment first
 * (bounded in bytes and time), as web servers do.
 */
static void
linger_close(int fd)
{
	uint64_t deadline = clock_mono_ms() + METRICS_LINGER_MS;
	size_t left = METRICS_LINGER_BYTES;
	char sink[4096];

	shutdown(fd, SHUT_WR);
	while (left > 0) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		uint64_t now = clock_mono_ms();
		ssize_t r;

		if (now >= deadline || poll(&pf, 1, (int)(deadline - now)) <= 0)
			break;
		r = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			break;
		left -= (size_t)r < left ? (size_t)r : left;
	}
	close(fd);
}

static void *
metrics_main(void *arg)
{
	struct pollfd p[2] = {
		{ .fd = mx.fd, .events = POLLIN },
		{ .fd = mx.stop_pipe[0], .events = POLLIN },
	};

	(void)arg;
	thread_name("metrics", -1);
	for (;;) {
		int c;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_warn("metrics: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		c = accept4(mx.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c < 0)
			continue;
		serve(c);
		linger_close(c);
	}
	return NULL;
}

int
metrics_start(const struct config *cfg, struct queue_index *qi)
{
	int rc;

	if (mx.fd < 0)
		return 0;
	mx.cfg = cfg;
	mx.qi = qi;
	(void)stats_started_us();
	if (pipe2(mx.stop_pipe, O_CLOEXEC) < 0)
		return -errno;
	if ((rc = pthread_create(&mx.thread, NULL, metrics_main, NULL)) != 0) {
		close(mx.stop_pipe[0]);
		close(mx.stop_pipe[1]);
		return -rc;
	}
	mx.running = true;
	log_info("metrics: serving /metrics on %s", cfg->metrics.listen);
	return 0;
}

void
metrics_stop(void)
{
	if (mx.running) {
		if (write(mx.stop_pipe[1], "x", 1) < 0)
			log_warn("metrics: stop: %s", strerror(errno));
		pthread_join(mx.thread, NULL);
		close(mx.stop_pipe[0]);
		close(mx.stop_pipe[1]);
		mx.running = false;
	}
	if (mx.fd >= 0)
		close(mx.fd);
	mx.fd = -1;
}
