/*
 * fuzz_resolver.c - libFuzzer target: arbitrary DNS answers to a real
 * resolver (deliver/resolver.c, resolver_wire.c, proto/dns.c) on a real
 * io_uring ring, through its CNAME, MX, address, TC-to-TCP, retry and
 * cache logic.
 *
 * Description: the harness is the resolver's nameserver, on a loopback
 * UDP socket and a TCP listener on the same port, and drives the ring
 * itself: it submits and reaps (resolver_complete()), answers every query
 * the resolver sends with the next chunk of the input, and when nothing
 * moves it calls resolver_tick() with a clock pushed past the timeout, so
 * that an unanswered query times out at once instead of after a second.
 *
 * Input: byte 0 - attempts (bits 0-1, 1..3), cache on (bit 2), destroy
 * the resolver part-way (bit 3; byte 1 says after how many steps); bits
 * 4-5: how many lookups (1..4); bit 6: DNSSEC (trust-ad) on; bit 7:
 * DNSSEC validate, with a trust anchor for example.test (the answers'
 * signatures, DS and DNSKEY sets are then the input's). One input
 * byte each from byte 2: the name (from a small list that includes a
 * mixed-case duplicate with a trailing dot and an invalid name), MX or
 * address lookup, whether its callback starts the same lookup again (so
 * that the cache answers it), and (bit 5) whether TLSA records are asked
 * for the secure hosts.
 * The rest, split at 0xFE bytes, is one chunk per query, in the order the
 * queries arrive; its first byte says what to do with it:
 *   bits 0-1  0: answer - the query's id and question, then the chunk:
 *               flags (2 bytes), AN/NS/AR counts (6 bytes), records (a
 *               name at offset 12 is the question: 0xC00C);
 *             1: the chunk as the whole message, only the id patched;
 *             2: no answer (the query times out, or a TCP connection is
 *               held open or closed, by bit 5; over UDP, with bit 7 the
 *               port closes until the next timeout, so that the
 *               resolver's next tries draw ICMP port unreachable);
 *             3: a stray message with another id first, then as 0;
 *   bit 2     set TC (over UDP: the resolver retries over TCP);
 *   bit 3     leave QR and the opcode as the chunk says (else a response
 *             to a QUERY);
 *   bit 4     send the answer twice;
 *   bit 6     TCP: a length prefix that does not match, then close.
 * Queries beyond the input are not answered.
 *
 * Properties checked beyond "no crash" (ASan, UBSan, LeakSanitizer):
 * - every lookup's callback runs exactly once (or, after an early
 *   resolver_destroy(), at most once before it and never after), never
 *   from inside resolver_lookup(), and every lookup finishes within a
 *   bounded number of steps and timeouts;
 * - statuses are in range; "why" is a bounded string, empty exactly for
 *   RESOLVE_OK; authenticated only with RESOLVE_OK; an invalid name is
 *   RESOLVE_NXDOMAIN; with no answer sent at all every valid lookup is
 *   RESOLVE_TEMPFAIL;
 * - RESOLVE_OK has 1..RESOLVE_MX_MAX targets, others none; each target is
 *   a lower-case host name without a trailing dot, unique in the list,
 *   in preference order, with 1..RESOLVE_ADDR_MAX addresses, IPv4 before
 *   IPv6, port 0, and each address occurs in some answer the harness
 *   sent (nothing made up); an address lookup has one target, the name
 *   itself, preference 0;
 * - DNSSEC: each target's status and TLSA state are in range; with DNSSEC
 *   off every host is insecure and no TLSA is asked; TLSA records only
 *   for secure hosts of lookups that asked, at most RESOLVE_TLSA_MAX; a
 *   failed TLSA lookup says why.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../deliver/resolver.h"
#include "../../lib/clock.h"
#include "../../lib/uring.h"
#include "../../proto/dns.h"

#define OP		9		/* the resolver's user_data op */
#define TIMEOUT_MS	1000
#define LOOKUPS_MAX	8		/* 4 from the input, 4 started again */
#define TCP_CONNS_MAX	16
#define SENT_MAX	(256 * 1024)	/* answer bytes remembered */
#define STEPS_MAX	4000
#define TICKS_MAX	200

static const char *const names[8] = {
	"example.test", "mx.example.test", "a.test", "EXAMPLE.Test.",
	"x.y.z.test", "bad..name", "b.test", "c-1.test",
};

struct lk {
	bool used;
	bool valid;			/* a valid name */
	bool mx;
	bool again;			/* the callback starts it again */
	bool tlsa;			/* TLSA for the secure hosts */
	char norm[DNS_NAME_MAX + 1];	/* lower case, no trailing dot */
	const char *name;
	unsigned calls;
};

struct tconn {
	int fd;
	uint8_t buf[2 + 1024];
	size_t len;
	bool answered;
};

static struct {
	bool ring_ok;
	bool refused;			/* the UDP port is closed for now */
	struct io_uring ring;
	struct uring_loop loop;
	int udp, tcp;			/* -1: closed */
	struct sockaddr_in addr;
	char anchor[64];		/* validate's trust anchor file */
} h;

static struct {
	struct resolver *r;
	const uint8_t *data;
	size_t size, off;		/* the chunks */
	struct lk lk[LOOKUPS_MAX];
	unsigned nlk;
	bool in_lookup;			/* inside resolver_lookup() */
	bool dnssec;			/* trust-ad or validate */
	bool destroyed;
	unsigned answers;		/* messages sent that could answer */
	uint8_t *sent;			/* every answer sent, concatenated */
	size_t nsent;
	bool sent_full;			/* some did not fit: not checked */
	struct tconn tc[TCP_CONNS_MAX];
} s;

/* ---------------------------------------------------------------- set-up */

/* The ring once; the nameserver's sockets whenever they are missing. */
static void
anchor_unlink(void)
{
	unlink(h.anchor);
}

static void
setup(void)
{
	socklen_t len;
	int one = 1;

	if (!h.ring_ok) {
		FILE *f;

		assert(uring_init(&h.ring, 256, 1024) == 0);
		/* validate's trust anchor: a DS for example.test. */
		snprintf(h.anchor, sizeof(h.anchor), "/tmp/fuzz_resolver.%d.ds",
		    (int)getpid());
		f = fopen(h.anchor, "w");
		assert(f != NULL);
		fputs("example.test. 3600 IN DS 2371 13 2 "
		    "0123456789abcdef0123456789abcdef"
		    "0123456789abcdef0123456789abcdef\n", f);
		fclose(f);
		atexit(anchor_unlink);
		s.sent = malloc(SENT_MAX);
		assert(s.sent != NULL);
		for (int i = 0; i < TCP_CONNS_MAX; i++)
			s.tc[i].fd = -1;
		h.udp = h.tcp = -1;
		h.ring_ok = true;
	}
	if (h.udp >= 0 && h.tcp >= 0)
		return;
	if (h.udp >= 0)
		close(h.udp);
	if (h.tcp >= 0)
		close(h.tcp);
	h.udp = h.tcp = -1;
	h.refused = false;
	/* A UDP port from the kernel, then the same port over TCP. */
	for (int tries = 0; tries < 50 && h.udp < 0; tries++) {
		int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
		int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

		assert(u >= 0 && t >= 0);
		memset(&h.addr, 0, sizeof(h.addr));
		h.addr.sin_family = AF_INET;
		h.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(h.addr);
		assert(bind(u, (struct sockaddr *)&h.addr,
		    sizeof(h.addr)) == 0);
		assert(getsockname(u, (struct sockaddr *)&h.addr, &len) == 0);
		setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(t, (struct sockaddr *)&h.addr, sizeof(h.addr)) == 0 &&
		    listen(t, 64) == 0) {
			h.udp = u;
			h.tcp = t;
			break;
		}
		close(u);
		close(t);
	}
	assert(h.udp >= 0);
}

/*
 * The nameserver's UDP port closed for a while: the resolver's next
 * datagrams draw ICMP port unreachable (ECONNREFUSED on its socket).
 * Reopened on the same port; false if another socket took it meanwhile
 * (then setup() starts over on a new port for the next input).
 */
static void
udp_refuse(void)
{
	close(h.udp);
	h.udp = -1;
	h.refused = true;
}

static bool
udp_reopen(void)
{
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	assert(u >= 0);
	h.refused = false;
	if (bind(u, (struct sockaddr *)&h.addr, sizeof(h.addr)) != 0) {
		close(u);
		return false;
	}
	h.udp = u;
	return true;
}

static void
dispatch(void *ctx, uint64_t ud, int res, uint32_t flags)
{
	(void)ctx;
	assert(URING_UD_OP(ud) == OP);
	/* After resolver_destroy(): its cancelled requests, dropped. */
	if (s.r != NULL)
		resolver_complete(s.r, ud, res, flags);
}

/* ---------------------------------------------------------------- checks */

static bool
lower_host(const char *h_)
{
	size_t n = strnlen(h_, RESOLVE_HOST_MAX + 1);

	if (n == 0 || n > DNS_NAME_MAX || h_[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (h_[i] >= 'A' && h_[i] <= 'Z')
			return false;
	return dns_name_check(h_) == 0;
}

static bool
was_sent(const void *p, size_t n)
{
	return s.sent_full ||
	    (s.nsent > 0 && memmem(s.sent, s.nsent, p, n) != NULL);
}

static void lookup_start(unsigned i);

static void
lookup_done(void *arg, const struct resolve_result *res)
{
	struct lk *l = arg;
	size_t wl = strnlen(res->why, sizeof(res->why));

	assert(!s.in_lookup);
	assert(!s.destroyed);
	assert(l->used && l->calls == 0);
	l->calls++;

	assert(res->status >= RESOLVE_OK && res->status <= RESOLVE_TEMPFAIL);
	assert(strcmp(resolve_status_name(res->status), "?") != 0);
	assert(wl < sizeof(res->why));
	assert((wl == 0) == (res->status == RESOLVE_OK));
	assert(!res->authenticated || res->status == RESOLVE_OK);
	if (!l->valid)
		assert(res->status == RESOLVE_NXDOMAIN);
	if (l->valid && s.answers == 0)
		assert(res->status == RESOLVE_TEMPFAIL);
	if (res->status != RESOLVE_OK) {
		assert(res->ntargets == 0);
	} else {
		assert(res->ntargets >= 1 && res->ntargets <= RESOLVE_MX_MAX);
		assert(res->targets != NULL);
	}
	if (!l->mx && res->status == RESOLVE_OK)
		assert(res->ntargets == 1);
	assert(res->mx_sec <= RESOLVE_SEC_BOGUS);
	for (unsigned i = 0; i < res->ntargets; i++) {
		const struct resolve_target *t = &res->targets[i];
		bool v6 = false;

		assert(t->sec <= RESOLVE_SEC_BOGUS);
		assert(t->tlsa <= RESOLVE_TLSA_FAIL);
		assert(t->ntlsa <= RESOLVE_TLSA_MAX);
		if (!s.dnssec)
			assert(t->sec == RESOLVE_SEC_INSECURE);
		if (!s.dnssec || !l->tlsa)
			assert(t->tlsa == RESOLVE_TLSA_UNASKED);
		if (t->tlsa != RESOLVE_TLSA_UNASKED)
			assert(t->sec == RESOLVE_SEC_SECURE);
		if (t->tlsa != RESOLVE_TLSA_FOUND)
			assert(t->ntlsa == 0);
		if (t->tlsa == RESOLVE_TLSA_FAIL)
			assert(t->tlsa_why[0] != '\0' &&
			    strnlen(t->tlsa_why, sizeof(t->tlsa_why)) <
			    sizeof(t->tlsa_why));

		assert(lower_host(t->host));
		if (!l->mx)
			assert(strcmp(t->host, l->norm) == 0 && t->pref == 0);
		if (i > 0)
			assert(t->pref >= res->targets[i - 1].pref);
		for (unsigned j = 0; j < i; j++)
			assert(strcmp(t->host, res->targets[j].host) != 0);
		assert(t->naddr >= 1 && t->naddr <= RESOLVE_ADDR_MAX);
		for (unsigned k = 0; k < t->naddr; k++) {
			const struct sockaddr_storage *a = &t->addr[k];

			if (a->ss_family == AF_INET) {
				const struct sockaddr_in *sin =
				    (const struct sockaddr_in *)a;

				assert(!v6);
				assert(sin->sin_port == 0);
				assert(was_sent(&sin->sin_addr, 4));
			} else {
				const struct sockaddr_in6 *sin6 =
				    (const struct sockaddr_in6 *)a;

				assert(a->ss_family == AF_INET6);
				v6 = true;
				assert(sin6->sin6_port == 0);
				assert(was_sent(&sin6->sin6_addr, 16));
			}
		}
	}
	/* Callbacks may start lookups: the same again, from the cache. */
	if (l->again && s.nlk < LOOKUPS_MAX) {
		struct lk *n = &s.lk[s.nlk];

		*n = *l;
		n->again = false;
		n->calls = 0;
		lookup_start(s.nlk++);
	}
}

static void
lookup_start(unsigned i)
{
	struct lk *l = &s.lk[i];

	s.in_lookup = true;
	resolver_lookup_tlsa(s.r, l->name, l->mx, l->tlsa ? 25 : 0,
	    lookup_done, l);
	s.in_lookup = false;
}

static bool
all_done(void)
{
	for (unsigned i = 0; i < s.nlk; i++)
		if (s.lk[i].calls == 0)
			return false;
	return true;
}

/* ---------------------------------------------------------------- the nameserver */

/* The next chunk of the input; false when there is none. */
static bool
next_chunk(const uint8_t **p, size_t *n)
{
	const uint8_t *cut;

	if (s.off >= s.size)
		return false;
	cut = memchr(s.data + s.off, 0xfe, s.size - s.off);
	*p = s.data + s.off;
	*n = cut ? (size_t)(cut - *p) : s.size - s.off;
	s.off += *n + (cut != NULL);
	return true;
}

static void
remember(const uint8_t *m, size_t n)
{
	s.answers++;
	if (n > SENT_MAX - s.nsent) {
		s.sent_full = true;	/* (inputs far above -max_len=8192) */
		return;
	}
	memcpy(s.sent + s.nsent, m, n);
	s.nsent += n;
}

/* The question of query q (id at 0, question at 12): its end, or 0. */
static size_t
question_end(const uint8_t *q, size_t n)
{
	size_t i = 12;

	while (i < n && q[i] != 0) {
		if (q[i] > 63)
			return 0;
		i += 1 + q[i];
	}
	return i + 5 <= n ? i + 5 : 0;
}

/*
 * The answer chunk c (first byte: action) makes for query q, into out;
 * its length. 0: no answer.
 */
static size_t
build(const uint8_t *q, size_t qn, const uint8_t *c, size_t cn, uint8_t *out,
    size_t cap)
{
	uint8_t act = cn > 0 ? c[0] : 0;
	size_t qend = question_end(q, qn), n;

	c++;
	cn = cn > 0 ? cn - 1 : 0;
	if ((act & 3) == 2 || qend == 0)
		return 0;
	if ((act & 3) == 1) {
		n = cn < cap ? cn : cap;
		memcpy(out, c, n);
		if (n >= 2)
			memcpy(out, q, 2);
	} else {
		uint8_t hdr[8] = { 0 };

		memcpy(hdr, c, cn < 8 ? cn : 8);
		memcpy(out, q, 2);			/* id */
		memcpy(out + 2, hdr, 2);		/* flags */
		out[4] = 0;
		out[5] = 1;				/* QDCOUNT */
		memcpy(out + 6, hdr + 2, 6);		/* AN, NS, AR */
		memcpy(out + 12, q + 12, qend - 12);
		n = qend;
		if (cn > 8) {
			size_t k = cn - 8 < cap - n ? cn - 8 : cap - n;

			memcpy(out + n, c + 8, k);
			n += k;
		}
	}
	if (n >= 4) {
		if (!(act & 8)) {
			out[2] |= 0x80;			/* QR */
			out[2] &= (uint8_t)~0x78;	/* opcode QUERY */
		}
		if (act & 4)
			out[2] |= 0x02;			/* TC */
	}
	return n;
}

static unsigned
serve_udp(void)
{
	uint8_t q[2048], out[8192 + 512];
	struct sockaddr_in peer;
	unsigned n = 0;

	while (h.udp >= 0) {
		socklen_t plen = sizeof(peer);
		ssize_t k = recvfrom(h.udp, q, sizeof(q), 0,
		    (struct sockaddr *)&peer, &plen);
		const uint8_t *c;
		size_t cn, m;

		if (k < 0)
			break;
		n++;
		assert(k >= 12 && question_end(q, (size_t)k) != 0);
		if (s.destroyed || !next_chunk(&c, &cn))
			continue;
		m = build(q, (size_t)k, c, cn, out, sizeof(out));
		if (m == 0) {
			if (cn > 0 && (c[0] & 0x80))
				udp_refuse();
			continue;
		}
		if ((c[0] & 3) == 3) {
			uint8_t stray[sizeof(out)];

			memcpy(stray, out, m);
			stray[1] ^= 0x5a;
			sendto(h.udp, stray, m, 0, (struct sockaddr *)&peer,
			    plen);
		}
		remember(out, m);
		sendto(h.udp, out, m, 0, (struct sockaddr *)&peer, plen);
		if (c[0] & 16)
			sendto(h.udp, out, m, 0, (struct sockaddr *)&peer,
			    plen);
	}
	return n;
}

static void
tcp_close(struct tconn *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	t->len = 0;
	t->answered = false;
}

static void
tcp_answer(struct tconn *t)
{
	uint8_t out[2 + 8192 + 512];
	const uint8_t *c;
	size_t cn, m, need = 2 + ((size_t)t->buf[0] << 8 | t->buf[1]);

	t->answered = true;
	assert(question_end(t->buf + 2, need - 2) != 0);
	if (s.destroyed || !next_chunk(&c, &cn))
		return;			/* held open, unanswered */
	m = build(t->buf + 2, need - 2, c, cn, out + 2, sizeof(out) - 2);
	if (m == 0) {
		if (cn > 0 && (c[0] & 32))
			tcp_close(t);	/* else held open */
		return;
	}
	remember(out + 2, m);
	out[0] = (uint8_t)(m >> 8);
	out[1] = (uint8_t)m;
	if (c[0] & 64) {
		out[1] ^= 0x21;		/* a prefix that does not match */
		(void)!send(t->fd, out, 2 + m / 2, MSG_NOSIGNAL);
		tcp_close(t);
		return;
	}
	(void)!send(t->fd, out, 2 + m, MSG_NOSIGNAL);
}

static unsigned
serve_tcp(void)
{
	unsigned n = 0;
	int fd;

	while ((fd = accept4(h.tcp, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		int i;

		n++;
		for (i = 0; i < TCP_CONNS_MAX && s.tc[i].fd >= 0; i++)
			;
		if (i == TCP_CONNS_MAX) {
			close(fd);
			continue;
		}
		s.tc[i].fd = fd;
		s.tc[i].len = 0;
		s.tc[i].answered = false;
	}
	for (int i = 0; i < TCP_CONNS_MAX; i++) {
		struct tconn *t = &s.tc[i];
		ssize_t k;

		if (t->fd < 0)
			continue;
		k = recv(t->fd, t->buf + t->len, sizeof(t->buf) - t->len, 0);
		if (k == 0 || (k < 0 && errno != EAGAIN)) {
			tcp_close(t);	/* the resolver closed it */
			n++;
			continue;
		}
		if (k < 0)
			continue;
		n++;
		t->len += (size_t)k;
		if (!t->answered && t->len >= 2 &&
		    t->len >= 2 + ((size_t)t->buf[0] << 8 | t->buf[1]))
			tcp_answer(t);
	}
	return n;
}

/* ---------------------------------------------------------------- the run */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct resolver_cfg cfg;
	uint64_t fake_ms;
	unsigned nlook, steps = 0, ticks = 0, destroy_at = 0;
	uint32_t refused_tick = UINT32_MAX;
	size_t off;

	if (size < 2)
		return 0;
	setup();
	resolver_cfg_defaults(&cfg);
	memcpy(&cfg.server, &h.addr, sizeof(h.addr));
	cfg.server_len = sizeof(h.addr);
	cfg.timeout_ms = TIMEOUT_MS;
	cfg.attempts = 1 + (data[0] & 3) % 3;
	cfg.cache_max = data[0] & 4 ? 16 : 0;
	s.dnssec = data[0] & (64 | 128);
	cfg.dnssec = data[0] & 128 ? RESOLVE_DNSSEC_VALIDATE : s.dnssec ?
	    RESOLVE_DNSSEC_TRUST_AD : RESOLVE_DNSSEC_OFF;
	cfg.trust_anchor = h.anchor;
	if (data[0] & 8)
		destroy_at = 1 + data[1] % 16;
	nlook = 1 + ((data[0] >> 4) & 3);
	if (size < 2 + nlook)
		return 0;

	memset(s.lk, 0, sizeof(s.lk));
	s.nlk = 0;
	s.destroyed = false;
	s.answers = 0;
	s.nsent = 0;
	s.sent_full = false;
	s.data = data;
	s.size = size;
	s.off = off = 2 + nlook;
	assert(resolver_create(&s.r, &h.ring, OP, &cfg) == 0);
	assert(uring_loop_init(&h.loop, &h.ring, 64, dispatch, NULL,
	    "fuzz_resolver") == 0);
	for (unsigned i = 0; i < nlook; i++) {
		uint8_t b = data[2 + i];
		struct lk *l = &s.lk[s.nlk++];
		size_t n;

		l->used = true;
		l->name = names[b & 7];
		l->mx = b & 8;
		l->again = b & 16;
		l->tlsa = b & 32;
		l->valid = dns_name_check(l->name) == 0;
		if (l->valid) {
			n = strlen(l->name);
			n -= l->name[n - 1] == '.';
			for (size_t k = 0; k < n; k++)
				l->norm[k] = (char)(l->name[k] >= 'A' &&
				    l->name[k] <= 'Z' ? l->name[k] + 32 :
				    l->name[k]);
			l->norm[n] = '\0';
		}
		lookup_start(i);
	}

	fake_ms = clock_mono_ms();
	while (!all_done() && !s.destroyed) {
		unsigned progress = 0;

		assert(++steps < STEPS_MAX);
		progress += uring_loop_step(&h.loop, 0);
		progress += serve_udp();
		progress += serve_tcp();
		if (destroy_at != 0 && steps >= destroy_at) {
			resolver_destroy(s.r);
			s.r = NULL;
			s.destroyed = true;
			break;
		}
		if (progress > 0)
			continue;
		if (h.refused && ticks > refused_tick) {
			if (!udp_reopen())
				break;		/* port lost: give up the input */
			refused_tick = UINT32_MAX;
			continue;
		}
		if (h.refused && refused_tick == UINT32_MAX)
			refused_tick = ticks;
		/* Nothing moves: the clock jumps past every deadline. */
		assert(++ticks < TICKS_MAX);
		fake_ms = (fake_ms > clock_mono_ms() ? fake_ms :
		    clock_mono_ms()) + TIMEOUT_MS + 1;
		resolver_tick(s.r, fake_ms);
	}
	if (!s.destroyed) {
		assert(all_done() || h.udp < 0);
		resolver_destroy(s.r);
		s.r = NULL;
	}
	for (unsigned i = 0; i < s.nlk; i++)
		assert(s.lk[i].calls <= 1);
	/* What is left: completions of the cancelled, queries, connections. */
	uring_loop_step(&h.loop, 0);
	s.destroyed = true;
	serve_udp();
	serve_tcp();
	for (int i = 0; i < TCP_CONNS_MAX; i++)
		tcp_close(&s.tc[i]);
	uring_loop_free(&h.loop);
	(void)off;
	return 0;
}
