/*
 * Description: engine/resolver on a real io_uring ring against an
 * in-process DNS responder on loopback (answers built with ldns): callbacks
 * are never made from inside resolver_lookup, lookups of the same name are
 * coalesced into one query, answers are cached (and delivered from the
 * cache without waiting for a tick) until their TTL runs out, NXDOMAIN is
 * cached, more queries than slots wait their turn, AD is reported only when
 * every answer had it, a failing AAAA alone does not fail a host but a
 * failing A does, too many lookups are refused, an answer that ends in a
 * CNAME without the records asked for is chased to the target (which
 * decides: SERVFAIL or no answer there is a temporary failure, a chain of
 * more than 8 CNAMEs or a loop too, NXDOMAIN a bounce naming the target),
 * and destroying the
 * resolver with UDP and TCP requests in flight (or still unsubmitted) calls
 * nobody back and leaves nothing behind (ASan/LSan). Also the nameserver
 * syntax of resolver_cfg_server() and resolv.conf. DNSSEC (trust-ad): a
 * host is secure only when its MX and address answers carried AD, bogus
 * when one was SERVFAIL; TLSA records are asked for secure hosts only
 * (_25._tcp.HOST), kept when authenticated, "none" for an authenticated
 * NXDOMAIN, "fail" (with why) for a SERVFAIL; with DNSSEC off none are.
 * A one-off lookup (resolver_lookup_sync()) ends by its caller's deadline
 * when one is given, long before its own bound.
 * timeout: 120
 */
#include "check.h"
#include "../../deliver/resolver.h"
#include "../../lib/uring.h"
#include "../../proto/dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OP		7	/* the user_data op the resolver is given */
#define NDOMAINS	600	/* more than the resolver's query slots */
#define NCOUNT		8192

/* ---------------------------------------------------------------- the responder */

struct count {
	char name[DNS_NAME_MAX + 2];
	uint16_t type;
	unsigned udp, tcp;
};

static struct {
	int udp, tcp;
	uint16_t port;
	pthread_t thread;
	atomic_int stop;
	pthread_mutex_t mu;
	struct count counts[NCOUNT];
	unsigned ncounts;
	int held[16];		/* TCP connections kept open unanswered */
	unsigned nheld;
} srv;

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
count_query(const char *name, uint16_t type, bool tcp)
{
	unsigned i;

	pthread_mutex_lock(&srv.mu);
	for (i = 0; i < srv.ncounts; i++)
		if (srv.counts[i].type == type &&
		    strcmp(srv.counts[i].name, name) == 0)
			break;
	if (i == srv.ncounts && i < NCOUNT) {
		snprintf(srv.counts[i].name, sizeof(srv.counts[i].name), "%s",
		    name);
		srv.counts[i].type = type;
		srv.ncounts++;
	}
	if (i < NCOUNT) {
		if (tcp)
			srv.counts[i].tcp++;
		else
			srv.counts[i].udp++;
	}
	pthread_mutex_unlock(&srv.mu);
}

/* Queries seen for (name with trailing dot, type); tcp: over TCP. */
static unsigned
seen(const char *name, uint16_t type, bool tcp)
{
	unsigned n = 0;

	pthread_mutex_lock(&srv.mu);
	for (unsigned i = 0; i < srv.ncounts; i++)
		if (srv.counts[i].type == type &&
		    strcmp(srv.counts[i].name, name) == 0)
			n = tcp ? srv.counts[i].tcp : srv.counts[i].udp;
	pthread_mutex_unlock(&srv.mu);
	return n;
}

static void __attribute__((format(printf, 3, 4)))
add(ldns_pkt *p, ldns_pkt_section sec, const char *fmt, ...)
{
	char line[512];
	ldns_rr *rr = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	CHECK_FATAL(ldns_rr_new_frm_str(&rr, line, 0, NULL, NULL) ==
	    LDNS_STATUS_OK);
	ldns_pkt_push_rr(p, sec, rr);
}

static void
soa(ldns_pkt *p)
{
	add(p, LDNS_SECTION_AUTHORITY,
	    "test. 300 IN SOA ns.test. h.test. 1 2 3 4 300");
}

static bool
starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/*
 * Answers that hold a CNAME and nothing else, as an authoritative server
 * gives for a target outside its zones: the resolver asks for the target.
 */
static const char *
cname_of(const char *owner)
{
	static const struct {
		const char *from, *to;
	} t[] = {
		{ "cnsf.test.", "x.sfail.test." },	/* SERVFAIL there */
		{ "cnto.test.", "silentcn.test." },	/* never answered */
		{ "cnloop.test.", "cnloop2.test." },	/* a loop */
		{ "cnloop2.test.", "cnloop.test." },
		{ "cnok.test.", "d7.test." },		/* MX 10 mx.d7.test */
		{ "hcn.test.", "mx.d8.test." },		/* A 127.0.0.1 */
		{ "cnnx.test.", "nothere.test." },	/* NXDOMAIN */
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(owner, t[i].from) == 0)
			return t[i].to;
	return NULL;
}

/*
 * The zone, by name:
 *   dN.test, ad.test, halfad.test, short.test, v6fail.test, v4fail.test,
 *   tc.test: MX 10 mx.NAME; mx.NAME A 127.0.0.1 (AAAA NODATA)
 *   short.test and its host: TTL 1; ad.test: AD on everything;
 *   halfad.test: AD on the MX only; v6fail: AAAA of its host SERVFAIL;
 *   v4fail: A of its host SERVFAIL, AAAA ::1
 *   tc*.test: TC over UDP (tcsilent: and no answer over TCP either)
 *   nx.test: NXDOMAIN; silent*: never answered; the names of cname_of():
 *   a CNAME only; x.sfail.test: SERVFAIL.
 * Returns the reply's length, 0 for none.
 */
/*
 * ZONE.dnssec.test, as a validating resolver would answer: MX 10
 * mx.ZONE (AD); mx.ZONE A 127.0.0.1 (AD, except insecaddr), AAAA none
 * (AD; SERVFAIL for bogusaddr); _25._tcp.mx.ZONE TLSA 3 1 1 and 1 1 1
 * (sec), NXDOMAIN (notlsa), SERVFAIL (tlsafail). Returns the AD bit.
 */
static bool
dnssec_answer(ldns_pkt *rp, const char *owner, uint16_t type)
{
	static const char dig[] = "0123456789abcdef0123456789abcdef"
	    "0123456789abcdef0123456789abcdef";
	bool tlsa = starts(owner, "_25._tcp.mx.");
	bool mx = !tlsa && starts(owner, "mx.");
	const char *zone = tlsa ? owner + 12 : mx ? owner + 3 : owner;

	if (tlsa && type == DNS_T_TLSA) {
		if (starts(zone, "tlsafail.")) {
			ldns_pkt_set_rcode(rp, LDNS_RCODE_SERVFAIL);
			return false;
		}
		if (starts(zone, "notlsa.")) {
			ldns_pkt_set_rcode(rp, LDNS_RCODE_NXDOMAIN);
			soa(rp);
			return true;
		}
		add(rp, LDNS_SECTION_ANSWER, "%s 300 IN TLSA 3 1 1 %s", owner,
		    dig);
		add(rp, LDNS_SECTION_ANSWER, "%s 300 IN TLSA 1 1 1 %s", owner,
		    dig);
		return true;
	}
	if (!tlsa && !mx && type == DNS_T_MX) {
		add(rp, LDNS_SECTION_ANSWER, "%s 300 IN MX 10 mx.%s", owner,
		    owner);
		return true;
	}
	if (mx && type == DNS_T_A) {
		add(rp, LDNS_SECTION_ANSWER, "%s 300 IN A 127.0.0.1", owner);
		return !starts(zone, "insecaddr.");
	}
	if (mx && type == DNS_T_AAAA && starts(zone, "bogusaddr.")) {
		ldns_pkt_set_rcode(rp, LDNS_RCODE_SERVFAIL);
		return false;
	}
	soa(rp);
	return true;
}

static size_t
respond(const uint8_t *q, size_t qlen, bool tcp, uint8_t *out, size_t cap)
{
	ldns_pkt *qp = NULL, *rp;
	ldns_rr *qrr, *copy;
	char *owner;
	uint16_t type;
	uint8_t *w = NULL;
	size_t n = 0;
	const char *base;
	char host[300];
	bool ad = false;

	if (ldns_wire2pkt(&qp, q, qlen) != LDNS_STATUS_OK)
		return 0;
	if (ldns_pkt_qdcount(qp) != 1) {
		ldns_pkt_free(qp);
		return 0;
	}
	qrr = ldns_rr_list_rr(ldns_pkt_question(qp), 0);
	owner = ldns_rdf2str(ldns_rr_owner(qrr));
	type = (uint16_t)ldns_rr_get_type(qrr);
	for (char *c = owner; *c; c++)
		*c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
	count_query(owner, type, tcp);
	if (starts(owner, "silent") || (tcp && starts(owner, "tcsilent"))) {
		free(owner);
		ldns_pkt_free(qp);
		return 0;
	}
	rp = ldns_pkt_new();
	ldns_pkt_set_id(rp, ldns_pkt_id(qp));
	ldns_pkt_set_qr(rp, true);
	ldns_pkt_set_rd(rp, true);
	ldns_pkt_set_ra(rp, true);
	copy = ldns_rr_clone(qrr);
	ldns_rr_set_question(copy, true);
	ldns_pkt_push_rr(rp, LDNS_SECTION_QUESTION, copy);
	base = starts(owner, "mx.") ? owner + 3 : owner;
	snprintf(host, sizeof(host), "mx.%s", base);
	if (strstr(owner, ".dnssec.test.") != NULL) {
		ad = dnssec_answer(rp, owner, type);
	} else if (cname_of(owner) != NULL) {
		add(rp, LDNS_SECTION_ANSWER, "%s 300 IN CNAME %s", owner,
		    cname_of(owner));
	} else if (strcmp(owner, "x.sfail.test.") == 0) {
		ldns_pkt_set_rcode(rp, LDNS_RCODE_SERVFAIL);
	} else if (!tcp && starts(base, "tc")) {
		ldns_pkt_set_tc(rp, true);
	} else if (strcmp(base, "nx.test.") == 0) {
		ldns_pkt_set_rcode(rp, LDNS_RCODE_NXDOMAIN);
		soa(rp);
	} else if (starts(base, "ad.test") ||
	    (starts(base, "halfad.test") && type == DNS_T_MX) ||
	    starts(base, "d") || starts(base, "short.test") ||
	    starts(base, "halfad.test") || starts(base, "v6fail.test") ||
	    starts(base, "v4fail.test") || starts(base, "tc")) {
		unsigned ttl = starts(base, "short.test") ? 1 : 300;

		ad = starts(base, "ad.test") ||
		    (starts(base, "halfad.test") && type == DNS_T_MX);
		if (owner == base && type == DNS_T_MX)
			add(rp, LDNS_SECTION_ANSWER, "%s %u IN MX 10 %s", owner,
			    ttl, host);
		else if (owner != base && type == DNS_T_A &&
		    starts(base, "v4fail"))
			ldns_pkt_set_rcode(rp, LDNS_RCODE_SERVFAIL);
		else if (owner != base && type == DNS_T_AAAA &&
		    starts(base, "v6fail"))
			ldns_pkt_set_rcode(rp, LDNS_RCODE_SERVFAIL);
		else if (owner != base && type == DNS_T_A)
			add(rp, LDNS_SECTION_ANSWER, "%s %u IN A 127.0.0.1",
			    owner, ttl);
		else if (owner != base && type == DNS_T_AAAA &&
		    starts(base, "v4fail"))
			add(rp, LDNS_SECTION_ANSWER, "%s %u IN AAAA ::1", owner,
			    ttl);
		else
			soa(rp);
	} else {
		ldns_pkt_set_rcode(rp, LDNS_RCODE_NXDOMAIN);
		soa(rp);
	}
	ldns_pkt_set_ad(rp, ad);
	if (ldns_pkt2wire(&w, rp, &n) != LDNS_STATUS_OK || n > cap)
		n = 0;
	else
		memcpy(out, w, n);
	free(w);
	free(owner);
	ldns_pkt_free(rp);
	ldns_pkt_free(qp);
	return n;
}

static void
serve_tcp(int fd)
{
	uint8_t in[2 + 1024], out[2 + 4096];
	size_t got = 0, need = 2, n;
	struct timeval tv = { 2, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < need) {
		ssize_t k = recv(fd, in + got, sizeof(in) - got, 0);

		if (k <= 0) {
			close(fd);
			return;
		}
		got += (size_t)k;
		if (got >= 2)
			need = 2 + ((size_t)in[0] << 8 | in[1]);
		if (need > sizeof(in)) {
			close(fd);
			return;
		}
	}
	n = respond(in + 2, need - 2, true, out + 2, sizeof(out) - 2);
	if (n == 0) {
		if (srv.nheld < 16) {
			srv.held[srv.nheld++] = fd;	/* hold it, silent */
			return;
		}
		close(fd);
		return;
	}
	out[0] = (uint8_t)(n >> 8);
	out[1] = (uint8_t)n;
	if (send(fd, out, n + 2, MSG_NOSIGNAL) < 0)
		(void)0;
	close(fd);
}

static void *
serve(void *arg)
{
	(void)arg;
	while (!atomic_load(&srv.stop)) {
		struct pollfd pf[2] = { { srv.udp, POLLIN, 0 },
			{ srv.tcp, POLLIN, 0 } };

		if (poll(pf, 2, 50) <= 0)
			continue;
		if (pf[0].revents & POLLIN) {
			uint8_t in[2048], out[4096];
			struct sockaddr_storage peer;
			socklen_t plen = sizeof(peer);
			ssize_t k = recvfrom(srv.udp, in, sizeof(in), 0,
			    (struct sockaddr *)&peer, &plen);
			size_t n;

			if (k > 0 && (n = respond(in, (size_t)k, false, out,
			    sizeof(out))) > 0)
				sendto(srv.udp, out, n, 0,
				    (struct sockaddr *)&peer, plen);
		}
		if (pf[1].revents & POLLIN) {
			int fd = accept(srv.tcp, NULL, NULL);

			if (fd >= 0)
				serve_tcp(fd);
		}
	}
	return NULL;
}

static void
srv_start(void)
{
	struct sockaddr_in sa;
	socklen_t len;
	int one = 1;

	pthread_mutex_init(&srv.mu, NULL);
	/* A UDP port from the kernel, then the same port over TCP; if that
	 * one is taken, another pair (bounded). */
	for (int tries = 0; tries < 50; tries++) {
		srv.udp = socket(AF_INET, SOCK_DGRAM, 0);
		srv.tcp = socket(AF_INET, SOCK_STREAM, 0);
		CHECK_FATAL(srv.udp >= 0 && srv.tcp >= 0);
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(sa);
		CHECK_FATAL(bind(srv.udp, (struct sockaddr *)&sa,
		    sizeof(sa)) == 0);
		CHECK_FATAL(getsockname(srv.udp, (struct sockaddr *)&sa,
		    &len) == 0);
		setsockopt(srv.tcp, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one));
		if (bind(srv.tcp, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		close(srv.udp);
		close(srv.tcp);
		srv.udp = srv.tcp = -1;
	}
	CHECK_FATAL(srv.tcp >= 0);
	srv.port = ntohs(sa.sin_port);
	CHECK_FATAL(listen(srv.tcp, 16) == 0);
	CHECK_FATAL(pthread_create(&srv.thread, NULL, serve, NULL) == 0);
}

static void
srv_stop(void)
{
	atomic_store(&srv.stop, 1);
	pthread_join(srv.thread, NULL);
	close(srv.udp);
	close(srv.tcp);
	for (unsigned i = 0; i < srv.nheld; i++)
		close(srv.held[i]);
	pthread_mutex_destroy(&srv.mu);
}

/* ---------------------------------------------------------------- the client */

struct got {
	int calls;
	enum resolve_status status;
	bool authenticated;
	unsigned ntargets;
	char host[256];
	unsigned naddr;
	char why[160];
	uint8_t mx_sec, sec, tlsa;	/* DNSSEC: of the first target */
	unsigned ntlsa;
	struct dns_tlsa tlsa_rr[RESOLVE_TLSA_MAX];
	char tlsa_why[128];
};

static bool in_lookup;
static int total_calls;

static void
got_cb(void *arg, const struct resolve_result *res)
{
	struct got *g = arg;

	CHECK(!in_lookup);
	g->calls++;
	total_calls++;
	g->status = res->status;
	g->authenticated = res->authenticated;
	g->ntargets = res->ntargets;
	snprintf(g->why, sizeof(g->why), "%s", res->why);
	g->mx_sec = res->mx_sec;
	if (res->ntargets > 0) {
		const struct resolve_target *t = &res->targets[0];

		snprintf(g->host, sizeof(g->host), "%s", t->host);
		g->naddr = t->naddr;
		g->sec = t->sec;
		g->tlsa = t->tlsa;
		g->ntlsa = t->ntlsa;
		memcpy(g->tlsa_rr, t->tlsa_rr, sizeof(g->tlsa_rr));
		snprintf(g->tlsa_why, sizeof(g->tlsa_why), "%s", t->tlsa_why);
	}
}

static void
lookup(struct resolver *r, const char *name, bool mx, struct got *g)
{
	memset(g, 0, sizeof(*g));
	in_lookup = true;
	resolver_lookup(r, name, mx, got_cb, g);
	in_lookup = false;
	CHECK(g->calls == 0);
}

/*
 * Runs the ring until total_calls reaches want or max_ms pass; ticks only
 * when tick is set (and then every loop, well within 250 ms).
 */
static void
pump(struct io_uring *ring, struct resolver *r, int want, unsigned max_ms,
    bool tick)
{
	uint64_t deadline = mono_ms() + max_ms;

	while (total_calls < want && mono_ms() < deadline) {
		struct __kernel_timespec ts = { 0, 20 * 1000 * 1000 };
		struct io_uring_cqe *cqe;
		struct { uint64_t ud; int res; uint32_t flags; } c[128];
		unsigned n = 0, head;

		io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
		io_uring_for_each_cqe(ring, head, cqe) {
			if (n == 128)
				break;
			c[n].ud = cqe->user_data;
			c[n].res = cqe->res;
			c[n].flags = cqe->flags;
			n++;
		}
		io_uring_cq_advance(ring, n);
		for (unsigned i = 0; i < n; i++) {
			CHECK(URING_UD_OP(c[i].ud) == OP);
			if (r != NULL)
				resolver_complete(r, c[i].ud, c[i].res,
				    c[i].flags);
		}
		if (tick && r != NULL)
			resolver_tick(r, mono_ms());
	}
}

static void
server_cfg(struct resolver_cfg *cfg, uint32_t timeout_ms)
{
	char spec[32];
	char err[128];

	resolver_cfg_defaults(cfg);
	cfg->timeout_ms = timeout_ms;
	snprintf(spec, sizeof(spec), "127.0.0.1:%u", srv.port);
	CHECK_FATAL(resolver_cfg_server(cfg, spec, NULL, err,
	    sizeof(err)) == 0);
}

/* ---------------------------------------------------------------- tests */

static void
test_coalesce_and_cache(struct io_uring *ring, struct resolver *r)
{
	static struct got g[50];
	struct got again;
	int base = total_calls;

	puts("RUN coalesce_and_cache");
	for (int i = 0; i < 50; i++)
		lookup(r, i % 2 ? "D1.test" : "d1.test.", true, &g[i]);
	pump(ring, r, base + 50, 5000, true);
	for (int i = 0; i < 50; i++) {
		CHECK(g[i].calls == 1);
		CHECK(g[i].status == RESOLVE_OK);
		CHECK(strcmp(g[i].host, "mx.d1.test") == 0);
		CHECK(g[i].naddr == 1);
		CHECK(!g[i].authenticated);
	}
	CHECK(seen("d1.test.", DNS_T_MX, false) == 1);
	CHECK(seen("mx.d1.test.", DNS_T_A, false) == 1);
	CHECK(seen("mx.d1.test.", DNS_T_AAAA, false) == 1);
	/* From the cache: delivered through the ring's NOP, no tick. */
	lookup(r, "d1.test", true, &again);
	pump(ring, r, base + 51, 2000, false);
	CHECK(again.calls == 1 && again.status == RESOLVE_OK);
	CHECK(seen("d1.test.", DNS_T_MX, false) == 1);
	CHECK(seen("mx.d1.test.", DNS_T_A, false) == 1);
	/* A host lookup of the MX host reuses its cached A/AAAA. */
	lookup(r, "mx.d1.test", false, &again);
	pump(ring, r, base + 52, 2000, false);
	CHECK(again.calls == 1 && again.status == RESOLVE_OK);
	CHECK(seen("mx.d1.test.", DNS_T_A, false) == 1);
	puts("PASS coalesce_and_cache");
}

static void
test_ttl(struct io_uring *ring, struct resolver *r)
{
	struct got g;
	int base = total_calls;

	puts("RUN ttl");
	lookup(r, "short.test", true, &g);
	pump(ring, r, base + 1, 5000, true);
	CHECK(g.status == RESOLVE_OK);
	CHECK(seen("short.test.", DNS_T_MX, false) == 1);
	/* TTL 1 s: after it, asked again. */
	usleep(1200 * 1000);
	lookup(r, "short.test", true, &g);
	pump(ring, r, base + 2, 5000, true);
	CHECK(g.status == RESOLVE_OK);
	CHECK(seen("short.test.", DNS_T_MX, false) == 2);
	CHECK(seen("mx.short.test.", DNS_T_A, false) == 2);
	/* NXDOMAIN is cached too (SOA MINIMUM 300). */
	lookup(r, "nx.test", true, &g);
	pump(ring, r, base + 3, 5000, true);
	CHECK(g.status == RESOLVE_NXDOMAIN);
	CHECK(strcmp(g.why, "domain nx.test does not exist (NXDOMAIN)") == 0);
	lookup(r, "nx.test", true, &g);
	pump(ring, r, base + 4, 5000, true);
	CHECK(g.status == RESOLVE_NXDOMAIN);
	CHECK(seen("nx.test.", DNS_T_MX, false) == 1);
	puts("PASS ttl");
}

static void
test_many(struct io_uring *ring, struct resolver *r)
{
	static struct got g[NDOMAINS];
	char name[32];
	int base = total_calls, ok = 0;

	puts("RUN many");
	for (int i = 0; i < NDOMAINS; i++) {
		snprintf(name, sizeof(name), "d%d.test", 1000 + i);
		lookup(r, name, true, &g[i]);
	}
	pump(ring, r, base + NDOMAINS, 20000, true);
	for (int i = 0; i < NDOMAINS; i++)
		ok += g[i].calls == 1 && g[i].status == RESOLVE_OK &&
		    g[i].naddr == 1;
	printf("  %d of %d resolved\n", ok, NDOMAINS);
	CHECK(ok == NDOMAINS);
	puts("PASS many");
}

static void
test_flags(struct io_uring *ring, struct resolver *r)
{
	struct got ad, half, v6, v4, tc;
	int base = total_calls;

	puts("RUN flags");
	lookup(r, "ad.test", true, &ad);
	lookup(r, "halfad.test", true, &half);
	lookup(r, "v6fail.test", true, &v6);
	lookup(r, "v4fail.test", true, &v4);
	lookup(r, "tc.test", true, &tc);
	pump(ring, r, base + 5, 10000, true);
	CHECK(ad.status == RESOLVE_OK && ad.authenticated);
	CHECK(half.status == RESOLVE_OK && !half.authenticated);
	/* AAAA failing alone does not fail the host... */
	CHECK(v6.status == RESOLVE_OK && v6.naddr == 1);
	/* ...A failing does, even with an AAAA. */
	CHECK(v4.status == RESOLVE_TEMPFAIL);
	CHECK(strstr(v4.why, "SERVFAIL") != NULL);
	/* Truncated over UDP: every query of tc.test went to TCP. */
	CHECK(tc.status == RESOLVE_OK && tc.naddr == 1);
	CHECK(seen("tc.test.", DNS_T_MX, false) == 1);
	CHECK(seen("tc.test.", DNS_T_MX, true) == 1);
	CHECK(seen("mx.tc.test.", DNS_T_A, true) == 1);
	puts("PASS flags");
}

static void
lookup_tlsa(struct resolver *r, const char *name, struct got *g)
{
	memset(g, 0, sizeof(*g));
	in_lookup = true;
	resolver_lookup_tlsa(r, name, true, 25, got_cb, g);
	in_lookup = false;
	CHECK(g->calls == 0);
}

/* DNSSEC: each host's status, and TLSA for the secure ones only. */
static void
test_dnssec(struct io_uring *ring, bool on)
{
	struct resolver_cfg cfg;
	struct resolver *r;
	struct got sec, notlsa, fail, insec, bogus;
	int base = total_calls, failures = check_failures;

	printf("RUN dnssec/%s\n", on ? "trust-ad" : "off");
	server_cfg(&cfg, 1000);
	cfg.dnssec = on ? RESOLVE_DNSSEC_TRUST_AD : RESOLVE_DNSSEC_OFF;
	CHECK_FATAL(resolver_create(&r, ring, OP, &cfg) == 0);
	lookup_tlsa(r, on ? "sec.dnssec.test" : "sec2.dnssec.test", &sec);
	lookup_tlsa(r, "notlsa.dnssec.test", &notlsa);
	lookup_tlsa(r, "tlsafail.dnssec.test", &fail);
	lookup_tlsa(r, "insecaddr.dnssec.test", &insec);
	lookup_tlsa(r, "bogusaddr.dnssec.test", &bogus);
	pump(ring, r, base + 5, 10000, true);
	CHECK(sec.status == RESOLVE_OK && notlsa.status == RESOLVE_OK &&
	    fail.status == RESOLVE_OK && insec.status == RESOLVE_OK &&
	    bogus.status == RESOLVE_OK);
	if (!on) {
		CHECK(sec.sec == RESOLVE_SEC_INSECURE);
		CHECK(sec.tlsa == RESOLVE_TLSA_UNASKED && sec.ntlsa == 0);
		CHECK(bogus.sec == RESOLVE_SEC_INSECURE);
		CHECK(seen("_25._tcp.mx.sec2.dnssec.test.", DNS_T_TLSA,
		    false) == 0);
		goto out;
	}
	CHECK(sec.mx_sec == RESOLVE_SEC_SECURE);
	CHECK(sec.sec == RESOLVE_SEC_SECURE);
	CHECK(sec.tlsa == RESOLVE_TLSA_FOUND && sec.ntlsa == 2);
	CHECK(sec.tlsa_rr[0].usage == 3 && sec.tlsa_rr[0].selector == 1 &&
	    sec.tlsa_rr[0].mtype == 1 && sec.tlsa_rr[0].len == 32);
	CHECK(sec.tlsa_rr[1].usage == 1);
	CHECK(notlsa.sec == RESOLVE_SEC_SECURE);
	CHECK(notlsa.tlsa == RESOLVE_TLSA_NONE && notlsa.ntlsa == 0);
	CHECK(fail.sec == RESOLVE_SEC_SECURE && fail.tlsa == RESOLVE_TLSA_FAIL);
	CHECK(strstr(fail.tlsa_why, "SERVFAIL") != NULL);
	CHECK(strstr(fail.tlsa_why, "mx.tlsafail.dnssec.test") != NULL);
	/* Not secure: no TLSA query at all (RFC 7672 section 2.2). */
	CHECK(insec.sec == RESOLVE_SEC_INSECURE);
	CHECK(insec.tlsa == RESOLVE_TLSA_UNASKED);
	CHECK(seen("_25._tcp.mx.insecaddr.dnssec.test.", DNS_T_TLSA,
	    false) == 0);
	CHECK(bogus.sec == RESOLVE_SEC_BOGUS);
	CHECK(bogus.tlsa == RESOLVE_TLSA_UNASKED);
	CHECK(seen("_25._tcp.mx.sec.dnssec.test.", DNS_T_TLSA, false) == 1);
out:
	resolver_destroy(r);
	pump(ring, NULL, total_calls + 1, 200, false);
	printf("%s dnssec/%s\n", check_failures == failures ? "PASS" : "FAIL",
	    on ? "trust-ad" : "off");
}

/* Answers that end in a CNAME: chased; failures there defer, not bounce. */
static void
test_cname(struct io_uring *ring, struct resolver *r)
{
	struct got sf, to, loop, ok, host, nx;
	int base = total_calls;

	puts("RUN cname");
	lookup(r, "cnsf.test", true, &sf);
	lookup(r, "cnto.test", true, &to);
	lookup(r, "cnloop.test", true, &loop);
	lookup(r, "cnok.test", true, &ok);
	lookup(r, "hcn.test", false, &host);
	lookup(r, "cnnx.test", true, &nx);
	pump(ring, r, base + 6, 15000, true);
	CHECK(sf.calls == 1 && sf.status == RESOLVE_TEMPFAIL);
	CHECK(strstr(sf.why, "x.sfail.test") && strstr(sf.why, "SERVFAIL"));
	CHECK(seen("x.sfail.test.", DNS_T_MX, false) >= 1);
	CHECK(to.calls == 1 && to.status == RESOLVE_TEMPFAIL);
	CHECK(seen("silentcn.test.", DNS_T_MX, false) >= 1);
	CHECK(loop.calls == 1 && loop.status == RESOLVE_TEMPFAIL);
	CHECK(strstr(loop.why, "CNAME chain longer than 8") != NULL);
	CHECK(ok.calls == 1 && ok.status == RESOLVE_OK);
	CHECK(strcmp(ok.host, "mx.d7.test") == 0 && ok.naddr == 1);
	CHECK(host.calls == 1 && host.status == RESOLVE_OK && host.naddr == 1);
	CHECK(nx.calls == 1 && nx.status == RESOLVE_NXDOMAIN);
	CHECK(strcmp(nx.why, "domain cnnx.test: its CNAME target nothere.test "
	    "does not exist (NXDOMAIN)") == 0);
	printf("  %s\n  %s\n  %s\n", sf.why, loop.why, nx.why);
	puts("PASS cname");
}

static void
test_overload(struct io_uring *ring, struct resolver *r)
{
	enum { N = 1100 };
	static struct got g[N];
	int base = total_calls, busy = 0;

	puts("RUN overload");
	for (int i = 0; i < N; i++)
		lookup(r, "silent1.test", true, &g[i]);
	/* The lookups beyond the limit are refused at once. */
	pump(ring, r, base + 1, 2000, false);
	pump(ring, r, base + N, 200, false);
	for (int i = 0; i < N; i++)
		busy += g[i].calls == 1 && g[i].status == RESOLVE_TEMPFAIL &&
		    strstr(g[i].why, "too many") != NULL;
	printf("  %d of %d refused\n", busy, N);
	CHECK(busy > 0 && busy < N);
	CHECK(seen("silent1.test.", DNS_T_MX, false) == 1);
	puts("PASS overload");
}

/* Destroy with everything in flight; then drain and drop the CQEs. */
static void
test_destroy(struct io_uring *ring)
{
	struct resolver_cfg cfg;
	struct resolver *r;
	struct got g[4];
	int base;

	puts("RUN destroy");
	server_cfg(&cfg, 2000);
	/* Unsubmitted SQEs only. */
	CHECK_FATAL(resolver_create(&r, ring, OP, &cfg) == 0);
	lookup(r, "silent2.test", true, &g[0]);
	resolver_destroy(r);
	/* UDP queries and a TCP connection in flight. */
	CHECK_FATAL(resolver_create(&r, ring, OP, &cfg) == 0);
	lookup(r, "silent3.test", true, &g[1]);
	lookup(r, "tcsilent.test", true, &g[2]);
	lookup(r, "d1.test", true, &g[3]);
	base = total_calls;
	for (int i = 0; i < 100 && seen("tcsilent.test.", DNS_T_MX, true) == 0;
	    i++)
		pump(ring, r, base + 1, 20, true);
	CHECK(seen("tcsilent.test.", DNS_T_MX, true) == 1);
	resolver_destroy(r);
	base = total_calls;
	pump(ring, NULL, base + 1, 300, false);	/* drop what is left */
	CHECK(total_calls == base);
	CHECK(g[1].calls == 0 && g[2].calls == 0);
	puts("PASS destroy");
}

static void
test_cfg(void)
{
	static const struct {
		const char *spec;
		int family;
		unsigned port;
	} good[] = {
		{ "127.0.0.1:53", AF_INET, 53 },
		{ "192.0.2.1", AF_INET, 53 },
		{ "[::1]:5353", AF_INET6, 5353 },
		{ "[::1]", AF_INET6, 53 },
		{ "2001:db8::53", AF_INET6, 53 },
	};
	static const char *const bad[] = {
		"localhost", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
		"[::1", "[::1]x", "1.2.3.4:53x", "300.1.1.1",
	};
	struct resolver_cfg cfg;
	char err[160], path[] = "/tmp/sluice-t-resolver-XXXXXX";
	FILE *f;
	int fd;

	puts("RUN cfg");
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(&cfg, 0, sizeof(cfg));
		CHECK(resolver_cfg_server(&cfg, good[i].spec, NULL, err,
		    sizeof(err)) == 0);
		CHECK(cfg.server.ss_family == good[i].family);
		CHECK(ntohs(((struct sockaddr_in *)&cfg.server)->sin_port) ==
		    good[i].port);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK(resolver_cfg_server(&cfg, bad[i], NULL, err,
		    sizeof(err)) == -1);
		CHECK(err[0] != '\0');
	}
	fd = mkstemp(path);
	CHECK_FATAL(fd >= 0);
	f = fdopen(fd, "w");
	fputs("# comment\nsearch example.test\noptions ndots:1\n"
	    "  nameserver 10.53.0.1\nnameserver 10.53.0.2\n", f);
	fclose(f);
	CHECK(resolver_cfg_server(&cfg, NULL, path, err, sizeof(err)) == 0);
	CHECK(cfg.server.ss_family == AF_INET);
	CHECK(((struct sockaddr_in *)&cfg.server)->sin_addr.s_addr ==
	    htonl(0x0a350001));
	CHECK(ntohs(((struct sockaddr_in *)&cfg.server)->sin_port) == 53);
	f = fopen(path, "w");
	fputs("search example.test\n", f);
	fclose(f);
	CHECK(resolver_cfg_server(&cfg, "", path, err, sizeof(err)) == -1);
	CHECK(strstr(err, "no nameserver") != NULL);
	unlink(path);
	CHECK(resolver_cfg_server(&cfg, NULL, path, err, sizeof(err)) == -1);
	/* resolver_create refuses a config without a server. */
	resolver_cfg_defaults(&cfg);
	{
		struct io_uring ring;
		struct resolver *r = NULL;

		CHECK_FATAL(uring_init(&ring, 8, 0) == 0);
		CHECK(resolver_create(&r, &ring, OP, &cfg) == -EINVAL);
		CHECK(r == NULL);
		io_uring_queue_exit(&ring);
	}
	puts("PASS cfg");
}

/* A one-off lookup, bounded by its caller's deadline or by its own. */
static void
test_sync(void)
{
	struct resolver_cfg cfg;
	struct got g;
	uint64_t t0;

	puts("RUN sync lookup answered");
	server_cfg(&cfg, 1000);
	memset(&g, 0, sizeof(g));
	CHECK(resolver_lookup_sync(&cfg, "d1.test", true, 0, 0, got_cb,
	    &g) == 0);
	CHECK(g.calls == 1 && g.status == RESOLVE_OK);

	puts("RUN sync lookup of a silent name ends at the caller's deadline");
	memset(&g, 0, sizeof(g));
	t0 = mono_ms();
	CHECK(resolver_lookup_sync(&cfg, "silent9.test", true, 0, t0 + 300,
	    got_cb, &g) == 0);
	printf("  returned after %llu ms\n",
	    (unsigned long long)(mono_ms() - t0));
	/* Its own bound: 4 x (attempts + 1) x 1 s + 1 s, 13 s and more. */
	CHECK(mono_ms() - t0 < 2500);
	CHECK(g.calls == 1 && g.status == RESOLVE_TEMPFAIL);
	CHECK(strstr(g.why, "did not finish in time") != NULL);
	puts("PASS sync");
}

int
main(void)
{
	struct io_uring ring;
	struct resolver_cfg cfg;
	struct resolver *r;

	test_cfg();
	srv_start();
	CHECK_FATAL(uring_init(&ring, 256, 0) == 0);
	server_cfg(&cfg, 1000);
	CHECK_FATAL(resolver_create(&r, &ring, OP, &cfg) == 0);
	test_coalesce_and_cache(&ring, r);
	test_ttl(&ring, r);
	test_many(&ring, r);
	test_flags(&ring, r);
	test_cname(&ring, r);
	test_overload(&ring, r);
	resolver_destroy(r);
	pump(&ring, NULL, total_calls + 1, 200, false);
	test_dnssec(&ring, true);
	test_dnssec(&ring, false);
	test_destroy(&ring);
	test_sync();
	io_uring_queue_exit(&ring);
	srv_stop();
	return check_done();
}
