/*
 * mta_sts_fetch.c - what an MTA-STS fetch thread does (mta_sts.h): the
 * _mta-sts TXT record from the configured resolver, then the policy
 * over HTTPS from mta-sts.DOMAIN, its certificate verified (PKIX, the
 * name checked) against mta_sts.ca_file or the system's store.
 *
 * Blocking calls are fine here, and only here: this is a thread of its
 * own, never a shard's. Every step is bounded by one deadline per fetch
 * (mta_sts.fetch_timeout): sockets get it as send and receive timeouts
 * and every loop checks it.
 *
 * Interrupted calls are made again (within the deadline): this thread's
 * io_uring (resolver_lookup_sync()) may leave task work that interrupts
 * a blocking socket call, which a receive timeout turns into EINTR.
 *
 * DNS: the TXT query is built and its answer parsed by proto/dns.c
 * (ldns), sent over UDP to the resolver delivery uses; the address of
 * mta-sts.DOMAIN comes from resolver_lookup_sync() on the same resolver,
 * so tests that point delivery at their own DNS server serve both.
 * A truncated TXT answer (TC) is not asked again over TCP: an STS record
 * is short, and a failed lookup only means no policy this time.
 */
#include "mta_sts.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../lib/clock.h"
#include "../lib/net.h"
#include "../lib/tls.h"
#include "../proto/dns.h"
#include "resolver.h"

#define STS_PORT 443
#define STS_UA "sluice"

struct mta_sts_fetcher {
	SSL_CTX *ctx;
	struct resolver_cfg rc;
	uint32_t timeout_ms;
	/* delivery.denied_networks, copied: never dialled for a policy
	 * either (DNS must not steer a fetch to loopback or the like). */
	struct cidr *deny;
	size_t ndeny;
};

struct mta_sts_fetcher *
mta_sts_fetcher_new(const struct deliver_cfg *cfg, char *why, size_t whylen)
{
	struct mta_sts_fetcher *f = calloc(1, sizeof(*f));
	const char *ca = cfg->mta_sts->ca_file != NULL ?
	    cfg->mta_sts->ca_file : tls_default_ca_file();

	if (f == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	f->timeout_ms = cfg->mta_sts->fetch_timeout_ms;
	f->ndeny = cfg->delivery->ndenied_networks;
	if (f->ndeny > 0) {
		if ((f->deny = calloc(f->ndeny, sizeof(*f->deny))) == NULL) {
			snprintf(why, whylen, "out of memory");
			goto fail;
		}
		memcpy(f->deny, cfg->delivery->denied_networks,
		    f->ndeny * sizeof(*f->deny));
	}
	resolver_cfg_defaults(&f->rc);
	f->rc.timeout_ms = cfg->dns->timeout_ms;
	f->rc.attempts = cfg->dns->attempts;
	f->rc.cache_max = 0;
	if (resolver_cfg_server(&f->rc, cfg->dns->resolver, "/etc/resolv.conf",
	    why, whylen) != 0)
		goto fail;
	if ((f->ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(f->ctx, TLS1_2_VERSION) != 1) {
		snprintf(why, whylen, "mta_sts: cannot make a TLS context");
		goto fail;
	}
	SSL_CTX_set_verify(f->ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_load_verify_locations(f->ctx, ca, NULL) != 1) {
		snprintf(why, whylen, "mta_sts: cannot load CA file %s", ca);
		goto fail;
	}
	return f;
fail:
	ERR_clear_error();
	mta_sts_fetcher_free(f);
	return NULL;
}

void
mta_sts_fetcher_free(struct mta_sts_fetcher *f)
{
	if (f == NULL)
		return;
	SSL_CTX_free(f->ctx);
	free(f->deny);
	free(f);
}

static int
left_ms(uint64_t deadline)
{
	uint64_t now = clock_mono_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

static void
set_timeouts(int fd, uint64_t deadline)
{
	int ms = left_ms(deadline);
	struct timeval tv = { .tv_sec = ms / 1000,
	    .tv_usec = (ms % 1000) * 1000 };

	if (ms == 0)
		tv.tv_usec = 1000;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* ---- the TXT record --------------------------------------------------- */

/* One UDP exchange: 0 with *ans, -1 on timeout or error (why). */
static int
txt_query(struct mta_sts_fetcher *f, const char *qname, uint64_t deadline,
    struct dns_answer *ans, char *why, size_t whylen)
{
	uint8_t q[DNS_QUERY_MAX], *r = NULL;
	size_t qlen;
	uint16_t id;
	int fd, rc = -1;

	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (uint16_t)clock_mono_ms();
	if (dns_query_build(q, sizeof(q), id, qname, DNS_T_TXT, &qlen) != 0) {
		snprintf(why, whylen, "bad name %s", qname);
		return -1;
	}
	if ((r = malloc(DNS_MSG_MAX)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	fd = socket(f->rc.server.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&f->rc.server,
	    f->rc.server_len) < 0) {
		snprintf(why, whylen, "DNS socket: %s", strerror(errno));
		goto out;
	}
	for (unsigned t = 0; t < f->rc.attempts && left_ms(deadline) > 0; t++) {
		uint64_t until = clock_mono_ms() + f->rc.timeout_ms;

		if (until > deadline)
			until = deadline;
		if (send(fd, q, qlen, 0) < 0)
			break;
		/* Stray datagrams are read and dropped, up to the try's end. */
		while (left_ms(until) > 0) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			ssize_t n;
			int pr = poll(&pfd, 1, left_ms(until));

			if (pr < 0 && errno == EINTR)
				continue;
			if (pr <= 0)
				break;
			if ((n = recv(fd, r, DNS_MSG_MAX, 0)) <= 0)
				break;
			if (dns_answer_parse(r, (size_t)n, id, qname, DNS_T_TXT,
			    ans) == 0) {
				rc = 0;
				goto out;
			}
		}
	}
	snprintf(why, whylen, "no answer to TXT %s", qname);
out:
	if (fd >= 0)
		close(fd);
	free(r);
	return rc;
}

/* out->txt and out->id from the TXT records of _mta-sts.domain. */
static void
fetch_txt(struct mta_sts_fetcher *f, const char *domain, uint64_t deadline,
    struct mta_sts_fetched *out)
{
	char qname[DNS_NAME_MAX + 1];
	struct dns_answer *ans = malloc(sizeof(*ans));
	const char *why = NULL;
	unsigned nsts = 0, at = 0;

	out->txt = -1;
	if (ans == NULL) {
		snprintf(out->why, sizeof(out->why), "out of memory");
		return;
	}
	if ((size_t)snprintf(qname, sizeof(qname), "_mta-sts.%s", domain) >=
	    sizeof(qname)) {
		out->txt = 0;
		goto done;
	}
	if (txt_query(f, qname, deadline, ans, out->why,
	    sizeof(out->why)) < 0)
		goto done;
	if (ans->kind == DNS_KIND_NXDOMAIN || ans->kind == DNS_KIND_NODATA) {
		out->txt = 0;
		goto done;
	}
	if (ans->kind != DNS_KIND_DATA || ans->tc) {
		snprintf(out->why, sizeof(out->why), "TXT %s: %s", qname,
		    ans->tc ? "truncated" : dns_rcode_name(ans->rcode));
		goto done;
	}
	/* Records not starting with v=STSv1 are not ours; of ours there
	 * must be exactly one (RFC 8461 section 3.1). */
	for (unsigned i = 0; i < ans->n; i++)
		if (mta_sts_txt_is_sts(ans->rr.txt[i].text,
		    ans->rr.txt[i].len)) {
			nsts++;
			at = i;
		}
	out->txt = 0;
	if (nsts == 1 && mta_sts_txt_parse(ans->rr.txt[at].text,
	    ans->rr.txt[at].len, out->id, &why) == 0)
		out->txt = 1;
	else if (nsts > 1)
		snprintf(out->why, sizeof(out->why), "%u STS TXT records", nsts);
	else if (nsts == 1)
		snprintf(out->why, sizeof(out->why), "%s", why);
done:
	free(ans);
}

/* ---- the policy -------------------------------------------------------- */

struct addrs {
	bool done;
	unsigned n;
	struct sockaddr_storage sa[RESOLVE_ADDR_MAX];
	char why[160];
};

static void
addrs_done(void *arg, const struct resolve_result *r)
{
	struct addrs *a = arg;

	a->done = true;
	if (r->status != RESOLVE_OK || r->ntargets == 0) {
		snprintf(a->why, sizeof(a->why), "%s", r->why[0] != '\0' ?
		    r->why : resolve_status_name(r->status));
		return;
	}
	a->n = r->targets[0].naddr;
	memcpy(a->sa, r->targets[0].addr, sizeof(a->sa[0]) * a->n);
}

/* A connected TCP socket to sa within the deadline, or -1. */
static int
dial(const struct sockaddr_storage *sa, uint64_t deadline)
{
	socklen_t len = sa->ss_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	struct sockaddr_storage to = *sa;
	int fd, err = 0;
	socklen_t elen = sizeof(err);
	struct pollfd pfd;

	if (to.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&to)->sin6_port = htons(STS_PORT);
	else
		((struct sockaddr_in *)&to)->sin_port = htons(STS_PORT);
	fd = socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&to, len) < 0 &&
	    errno != EINPROGRESS)
		goto fail;
	pfd.fd = fd;
	pfd.events = POLLOUT;
	while ((err = poll(&pfd, 1, left_ms(deadline))) < 0 && errno == EINTR)
		;
	if (err <= 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0)
		goto fail;
	if (fcntl(fd, F_SETFL, 0) < 0)
		goto fail;
	set_timeouts(fd, deadline);
	return fd;
fail:
	close(fd);
	return -1;
}

/* Was an SSL call only interrupted, with time left to make it again? */
static bool
again(SSL *s, int ret, uint64_t deadline)
{
	int e = SSL_get_error(s, ret);

	return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
	    (e == SSL_ERROR_SYSCALL && errno == EINTR)) &&
	    errno == EINTR && left_ms(deadline) > 0;
}

/* GET the policy of domain over fd; the body parsed into out. */
static void
get_policy(struct mta_sts_fetcher *f, int fd, const char *host,
    uint64_t deadline, struct mta_sts_fetched *out)
{
	size_t cap = MTA_STS_HEAD_MAX + MTA_STS_POLICY_MAX + 1, n = 0;
	char req[600], *buf = malloc(cap);
	const char *body = NULL, *why = NULL;
	size_t blen = 0;
	SSL *s = NULL;
	long v;
	int k, rc = 1;

	out->fail = MTA_STS_R_FETCH_ERROR;
	if (buf == NULL || (s = SSL_new(f->ctx)) == NULL ||
	    SSL_set_fd(s, fd) != 1 ||
	    SSL_set_tlsext_host_name(s, host) != 1 ||
	    SSL_set1_host(s, host) != 1) {
		snprintf(out->why, sizeof(out->why), "out of memory");
		goto out;
	}
	SSL_set_hostflags(s, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	while ((k = SSL_connect(s)) != 1 && again(s, k, deadline))
		;
	if (k != 1) {
		v = SSL_get_verify_result(s);
		if (v != X509_V_OK) {
			out->fail = MTA_STS_R_WEBPKI_INVALID;
			snprintf(out->why, sizeof(out->why), "https://%s: "
			    "certificate: %s", host,
			    X509_verify_cert_error_string(v));
		} else {
			snprintf(out->why, sizeof(out->why), "https://%s: TLS "
			    "handshake failed", host);
		}
		goto out;
	}
	k = snprintf(req, sizeof(req), "GET /.well-known/mta-sts.txt HTTP/1.0"
	    "\r\nHost: %s\r\nUser-Agent: " STS_UA "\r\nAccept: text/plain\r\n"
	    "Connection: close\r\n\r\n", host);
	while ((rc = SSL_write(s, req, k)) <= 0 && again(s, rc, deadline))
		;
	if (rc != k) {
		snprintf(out->why, sizeof(out->why), "https://%s: write "
		    "failed", host);
		goto out;
	}
	rc = 1;
	while (left_ms(deadline) > 0 && n < cap) {
		int got = SSL_read(s, buf + n, (int)(cap - n));

		if (got <= 0 && again(s, got, deadline))
			continue;
		if (got <= 0) {
			int e = SSL_get_error(s, got);

			rc = mta_sts_http_response(buf, n, e ==
			    SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL,
			    &body, &blen, &why);
			break;
		}
		n += (size_t)got;
		if ((rc = mta_sts_http_response(buf, n, false, &body, &blen,
		    &why)) <= 0)
			break;
	}
	if (rc != 0) {
		snprintf(out->why, sizeof(out->why), "https://%s: %s", host,
		    rc < 0 ? why : n >= cap ? "policy too large" :
		    "timed out");
		goto out;
	}
	if (mta_sts_policy_parse(body, blen, &out->pol, &why) < 0) {
		out->fail = MTA_STS_R_POLICY_INVALID;
		snprintf(out->why, sizeof(out->why), "https://%s: %s", host,
		    why);
		goto out;
	}
	out->have_policy = true;
	memcpy(out->raw, body, blen);
	out->raw_len = blen;
	out->why[0] = '\0';
out:
	if (s != NULL) {
		(void)SSL_shutdown(s);
		SSL_free(s);
	}
	ERR_clear_error();
	free(buf);
}

static void
fetch_policy(struct mta_sts_fetcher *f, const char *domain, uint64_t deadline,
    struct mta_sts_fetched *out)
{
	char host[DNS_NAME_MAX + 1];
	struct addrs a = { .done = false };
	unsigned denied = 0;
	int fd = -1;

	out->fail = MTA_STS_R_FETCH_ERROR;
	if ((size_t)snprintf(host, sizeof(host), "mta-sts.%s", domain) >=
	    sizeof(host)) {
		snprintf(out->why, sizeof(out->why), "name too long");
		return;
	}
	if (resolver_lookup_sync(&f->rc, host, false, 0, deadline, addrs_done,
	    &a) != 0 || a.n == 0) {
		snprintf(out->why, sizeof(out->why), "%s: %s", host,
		    a.why[0] != '\0' ? a.why : "cannot resolve");
		return;
	}
	for (unsigned i = 0; i < a.n && fd < 0 && left_ms(deadline) > 0;
	    i++) {
		if (cidr_match(f->deny, f->ndeny,
		    (const struct sockaddr *)&a.sa[i])) {
			denied++;
			continue;
		}
		fd = dial(&a.sa[i], deadline);
	}
	if (fd < 0) {
		snprintf(out->why, sizeof(out->why), "https://%s: %s", host,
		    denied == a.n ? "every address is in "
		    "delivery.denied_networks" : "cannot connect");
		return;
	}
	get_policy(f, fd, host, deadline, out);
	close(fd);
}

void
mta_sts_fetch(struct mta_sts_fetcher *f, const char *domain,
    bool (*want_policy)(const char *id, void *arg), void *arg,
    struct mta_sts_fetched *out)
{
	uint64_t deadline = clock_mono_ms() + f->timeout_ms;

	memset(out, 0, sizeof(*out));
	fetch_txt(f, domain, deadline, out);
	if (out->txt != 1 || !want_policy(out->id, arg))
		return;
	out->asked = true;
	fetch_policy(f, domain, deadline, out);
}
