/*
 * shard_proxy.c - the first step of a connection on a listener with
 * proxy_protocol: its PROXY header (proto/proxy.c), read before the SMTP
 * session exists, so nothing is sent to anyone until the header says
 * whom the connection is from (the specification: the receiver must not
 * start before a complete and valid header).
 *
 * The shard has already refused a connection from outside proxy_trusted
 * at accept. Here the header is gathered from the recv buffers (kept in
 * c->proxy_hdr only when it arrives split over reads) and judged; the
 * client's bytes behind it (its first SMTP line, or a TLS ClientHello)
 * are handed back to the shard for the session. A malformed, oversized,
 * truncated or slow header closes the connection without a greeting and
 * one log line says why, at most SHARD_REFUSAL_LOG_PER_SEC lines a second
 * per shard: a flood of bad connections must not flood the log too.
 */
#include <stdarg.h>

#include "shard_int.h"

/* Refusals before a greeting, this one's and shard.c's: see shard_int.h. */
bool
shard_refusal_log_ok(struct shard *sh)
{
	shard_refusal_log_tick(sh);
	if (sh->refusal_log_n >= SHARD_REFUSAL_LOG_PER_SEC) {
		sh->refusal_log_dropped++;
		return false;
	}
	sh->refusal_log_n++;
	return true;
}

void
shard_refusal_log_tick(struct shard *sh)
{
	uint64_t sec = sh->now_ms / 1000u;

	if (sec == sh->refusal_log_sec)
		return;
	if (sh->refusal_log_dropped > 0)
		log_warn("shard %u: %u more connection(s) refused before the "
		    "greeting (not logged one by one)", sh->id,
		    sh->refusal_log_dropped);
	sh->refusal_log_sec = sec;
	sh->refusal_log_n = 0;
	sh->refusal_log_dropped = 0;
}


/* The header, and what may follow it in the read that completes it. */
#define SHARD_PROXY_BUF_MAX	(PROXY_HDR_MAX + SHARD_RECV_BUF_SIZE)

/* The address as logs show it (lib/net.h). */
static const char *
addr_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	return net_addr_text((const struct sockaddr *)ss, out, cap);
}


static void
refused_line(const struct listen_cfg *lc,
    const struct sockaddr_storage *from, const char *why)
{
	char a[INET6_ADDRSTRLEN];

	log_warn("listener %s: connection from %s closed without a greeting: "
	    "%s", lc->address,
	    addr_text(from, a, sizeof(a)), why);
}

void
shard_proxy_refused(struct shard *sh, unsigned listener,
    const struct sockaddr_storage *from, const char *why)
{
	if (shard_refusal_log_ok(sh))
		refused_line(&sh->cfg->listen[listener], from, why);
}

/* The same for a connection that holds a slot: its peer is asked again. */
static void
conn_refused(struct shard *sh, struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
conn_refused(struct shard *sh, struct conn *c, const char *fmt, ...)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl = sizeof(ss);
	char why[160];
	va_list ap;

	if (!shard_refusal_log_ok(sh))
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) < 0)
		ss.ss_family = AF_UNSPEC;
	refused_line(conn_listen(c), &ss, why);
}

enum proxy_status
shard_proxy_input(struct shard *sh, struct conn *c, const char *data,
    size_t n, struct sockaddr_storage *peer, const char **rest, size_t *nrest)
{
	struct buf *b = &c->proxy_hdr;
	struct proxy_header h;
	enum proxy_status st;
	const char *p = data;
	size_t len = n;
	socklen_t sl;

	assert(c->proxy_wait);
	b->max = SHARD_PROXY_BUF_MAX;
	/* A header begun in an earlier read: this read goes behind it. */
	if (b->len > 0) {
		/* Below PROXY_HDR_MAX (proxy.h), plus one read: it fits. */
		assert(b->len < PROXY_HDR_MAX && n <= SHARD_RECV_BUF_SIZE);
		if (buf_append(b, data, n) < 0) {
			conn_refused(sh, c, "out of memory for a PROXY header");
			return PROXY_BAD;
		}
		p = b->data;
		len = b->len;
	}
	st = proxy_parse(p, len, &h);
	switch (st) {
	case PROXY_MORE:
		if (p == data && buf_append(b, data, n) < 0) {
			conn_refused(sh, c, "out of memory for a PROXY header");
			return PROXY_BAD;
		}
		return PROXY_MORE;
	case PROXY_BAD:
		conn_refused(sh, c, "%s", h.why);
		return PROXY_BAD;
	case PROXY_DONE:
		break;
	default:
		log_panic("bad proxy_parse() result %d", (int)st);
	}
	if (h.kind == PROXY_KIND_ADDR) {
		memcpy(peer, &h.src, h.srclen);
	} else {
		/* LOCAL or UNKNOWN: the connection's own addresses (spec). */
		sl = sizeof(*peer);
		if (getpeername(c->fd, (struct sockaddr *)peer, &sl) < 0) {
			conn_refused(sh, c, "getpeername: %s", strerror(errno));
			return PROXY_BAD;
		}
	}
	*rest = p + h.len;
	*nrest = len - h.len;
	if (log_min_level <= LOG_DEBUG) {
		char a[INET6_ADDRSTRLEN];

		log_debug("listener %s: PROXY %s: client %s",
		    conn_listen(c)->address, proxy_describe(&h),
		    addr_text(peer, a, sizeof(a)));
	}
	return PROXY_DONE;
}

void
shard_proxy_end(struct conn *c)
{
	c->proxy_wait = false;
	buf_free(&c->proxy_hdr);
}

void
shard_proxy_expired(struct shard *sh, struct conn *c)
{
	assert(c->proxy_wait);
	conn_refused(sh, c, "no complete PROXY header within %u ms (%zu "
	    "byte(s))", conn_listen(c)->proxy_timeout_ms,
	    c->proxy_hdr.len);
}

/*
 * The peer closed first. Without a byte it is a load balancer's plain
 * TCP health check: not worth a warning each time.
 */
void
shard_proxy_eof(struct shard *sh, struct conn *c, int res)
{
	assert(c->proxy_wait);
	if (c->proxy_hdr.len == 0 && res == 0) {
		log_debug("listener %s: connection closed before any byte",
		    conn_listen(c)->address);
		return;
	}
	if (res < 0)
		conn_refused(sh, c, "recv: %s (%zu byte(s) of a PROXY header)",
		    strerror(-res), c->proxy_hdr.len);
	else
		conn_refused(sh, c, "closed by the peer after %zu byte(s) of "
		    "a PROXY header", c->proxy_hdr.len);
}
