/*
 * source_session.c - the SMTP (or LMTP) client of `sluice-bench source`:
 * one state machine per connection with a send side (src_conn_send) and a
 * receive side (src_replies_parse -> reply_done), the transactions they
 * carry, and the open loop's queue of idle connections. The design is the
 * block comment above enum src_state in source_int.h.
 *
 * Handlers here never send: they compose into the connection's output and
 * mark it dirty (src_conn_kick); the loop flushes once per batch. A reply
 * that makes no sense in its state is a protocol error that ends the
 * connection (src_conn_fail), never the run.
 */
#include "source_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const src_state_names[SRC_S_COUNT] = {
	[SRC_S_GREETING] = "greeting", [SRC_S_EHLO] = "EHLO",
	[SRC_S_HELO] = "HELO", [SRC_S_STARTTLS] = "STARTTLS",
	[SRC_S_TLS] = "TLS handshake", [SRC_S_AUTH] = "AUTH",
	[SRC_S_AUTH_USER] = "AUTH LOGIN user",
	[SRC_S_AUTH_PASS] = "AUTH LOGIN password", [SRC_S_MAIL] = "MAIL",
	[SRC_S_RCPT] = "RCPT", [SRC_S_DATA] = "DATA",
	[SRC_S_DOT] = "end of data", [SRC_S_RSET] = "RSET",
	[SRC_S_QUIT] = "QUIT", [SRC_S_WAIT] = "wait",
};

const char *const src_stage_names[SRC_STAGE_COUNT] = {
	[SRC_STAGE_NONE] = "none", [SRC_STAGE_MAIL] = "mail",
	[SRC_STAGE_RCPT] = "rcpt", [SRC_STAGE_DATA] = "data",
	[SRC_STAGE_DOT] = "end_of_data",
};

const char *
src_strstate(enum src_state st)
{
	return (unsigned)st < SRC_S_COUNT ? src_state_names[st] : "?";
}

/* ---- the idle queue (open loop) ---------------------------------------- */

/*
 * The idle queue holds each connection at most once (c->queued), so it
 * never holds more than --connections entries; an entry whose connection
 * stopped waiting (c->idle cleared on close) is skipped when popped.
 */
void
src_idle_push(struct src *s, struct src_conn *c)
{
	uint32_t n = s->o->connections;

	c->idle = true;
	if (c->queued)
		return;
	assert(s->idle_count < n);
	s->idleq[(s->idle_head + s->idle_count) % n] = src_conn_idx(s, c);
	s->idle_count++;
	c->queued = true;
}

/* The next connection still idle, or NULL. */
struct src_conn *
src_idle_pop(struct src *s)
{
	struct src_conn *c;

	while (s->idle_count > 0) {
		c = &s->conns[s->idleq[s->idle_head]];
		s->idle_head = (s->idle_head + 1) % s->o->connections;
		s->idle_count--;
		c->queued = false;
		if (c->idle) {
			c->idle = false;
			return c;
		}
	}
	return NULL;
}

void
src_expect_push(struct src *s, struct src_conn *c, enum src_state kind,
    uint32_t txn, uint32_t count)
{
	struct src_expect *e;

	if (c->ecount == 0)
		c->deadline_us = s->now + s->o->timeout_us;
	if (c->ecount > 0) {
		e = &c->expect[(c->ehead + c->ecount - 1) % SRC_EXPECT_MAX];
		if (e->kind == kind && e->txn == txn &&
		    e->count + count <= UINT16_MAX) {
			e->count = (uint16_t)(e->count + count);
			return;
		}
	}
	if (c->ecount == SRC_EXPECT_MAX)
		log_panic("expect queue overflow in state %s",
		    src_strstate(kind));
	e = &c->expect[(c->ehead + c->ecount) % SRC_EXPECT_MAX];
	e->kind = (uint8_t)kind;
	e->txn = (uint8_t)txn;
	e->count = (uint16_t)count;
	c->ecount++;
}

/* ---- transactions ----------------------------------------------------- */

void
src_stop(struct src *s)
{
	struct src_conn *c;

	if (s->stopping)
		return;
	s->stopping = true;
	while ((c = src_idle_pop(s)) != NULL)
		src_conn_kick(s, c);
}

/*
 * A transaction for c, or false: none left (stopping) or, in open loop,
 * none due yet (the connection then waits in the idle queue).
 */
static bool
txn_take(struct src *s, struct src_conn *c)
{
	const struct bench_source_opts *o = s->o;
	struct src_txn *t;
	uint64_t start;
	uint32_t slot;

	if (s->stopping)
		return false;
	if (o->messages && s->next_seq >= o->messages) {
		src_stop(s);
		return false;
	}
	if (o->rate > 0) {
		start = src_sched_at(s, s->next_seq);
		if (o->duration_us && start >= s->t0 + o->duration_us) {
			src_stop(s);
			return false;
		}
		if (start > s->now)
			return false;
	} else {
		if (o->duration_us && s->now >= s->t0 + o->duration_us) {
			src_stop(s);
			return false;
		}
		start = s->now;
	}
	slot = c->txn[0].live ? 1 : 0;
	t = &c->txn[slot];
	assert(!t->live);
	memset(t, 0, sizeof(*t));
	t->live = true;
	t->seq = s->next_seq++;
	if (c->reserved > 0) {
		c->reserved--;
		s->reserved--;
	}
	t->start_us = start;
	t->rcpt_first = s->rcpt_counter;
	s->rcpt_counter += o->recipients;
	c->tsend = slot;
	c->msgs++;
	s->live++;
	s->st.sent++;
	return true;
}

static void
txn_refuse(struct src *s, struct src_txn *t, enum src_stage stage, int code,
    const char *line)
{
	if (t->fail_stage != SRC_STAGE_NONE)
		return;
	t->fail_stage = (uint8_t)stage;
	t->fail_class = code >= 500 ? 5 : 4;
	if (s->first_refusal[0] == '\0')
		snprintf(s->first_refusal, sizeof(s->first_refusal),
		    "%s: %.200s", src_stage_names[stage], line);
}

/* The transaction's outcome is settled: count it. */
static void
txn_finish(struct src *s, struct src_txn *t)
{
	assert(t->live);
	t->live = false;
	assert(s->live > 0);
	s->live--;
	s->st.completed++;
	if (t->fail_stage == SRC_STAGE_NONE) {
		s->st.accepted++;
		hist_add(&s->st.lat_txn, s->now - t->start_us);
	} else if (t->fail_class == 4) {
		s->st.temp[t->fail_stage]++;
	} else {
		s->st.perm[t->fail_stage]++;
	}
	s->end_us = s->now;
}

/* ---- the send side ---------------------------------------------------- */

/* Nothing may be sent before every reply due has come (no PIPELINING). */
static inline bool
must_wait(const struct src_conn *c)
{
	return !c->pipelining && c->ecount > 0;
}

/*
 * Compose every command the session may send now, starting from
 * c->send_state; see the block comment above enum src_state.
 */
void
src_conn_send(struct src *s, struct src_conn *c)
{
	const struct bench_source_opts *o = s->o;
	struct src_out *o_;
	struct src_txn *t;
	size_t n;
	char *p;

	for (;;) {
		if (c->closing || c->fd < 0 || c->connecting)
			return;
		o_ = &c->out[c->fill];
		switch (c->send_state) {
		case SRC_S_GREETING:
		case SRC_S_TLS:
		case SRC_S_WAIT:
			return;
		case SRC_S_EHLO:
			if (o->lmtp)
				SRC_OUT_LIT(o_, "LHLO ");
			else
				SRC_OUT_LIT(o_, "EHLO ");
			src_out_str(o_, o->helo);
			SRC_OUT_LIT(o_, "\r\n");
			src_expect_push(s, c, SRC_S_EHLO, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_HELO:
			SRC_OUT_LIT(o_, "HELO ");
			src_out_str(o_, o->helo);
			SRC_OUT_LIT(o_, "\r\n");
			src_expect_push(s, c, SRC_S_HELO, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_STARTTLS:
			SRC_OUT_LIT(o_, "STARTTLS\r\n");
			src_expect_push(s, c, SRC_S_STARTTLS, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_AUTH:
			if (c->auth_login)
				SRC_OUT_LIT(o_, "AUTH LOGIN\r\n");
			else
				src_out_str(o_, s->auth_plain);
			src_expect_push(s, c, SRC_S_AUTH, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_AUTH_USER:
			src_out_str(o_, s->auth_user64);
			src_expect_push(s, c, SRC_S_AUTH_USER, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_AUTH_PASS:
			src_out_str(o_, s->auth_pass64);
			src_expect_push(s, c, SRC_S_AUTH_PASS, 0, 1);
			c->send_state = SRC_S_WAIT;
			break;
		case SRC_S_MAIL:
			if (must_wait(c))
				return;
			if (o->per_connection && c->msgs >= o->per_connection) {
				c->send_state = SRC_S_QUIT;
				continue;
			}
			if (!txn_take(s, c)) {
				if (!s->stopping) {
					/* Open loop: nothing due yet. */
					src_idle_push(s, c);
					return;
				}
				c->send_state = SRC_S_QUIT;
				continue;
			}
			src_out_bytes(o_, s->mail_cmd, s->mail_cmd_len);
			src_expect_push(s, c, SRC_S_MAIL, c->tsend, 1);
			c->rcpt_next = 0;
			c->send_state = SRC_S_RCPT;
			break;
		case SRC_S_RCPT:
			if (must_wait(c))
				return;
			t = &c->txn[c->tsend];
			SRC_OUT_LIT(o_, "RCPT TO:<");
			p = src_out_room(o_, SRC_ADDR_MAX + 1);
			n = bench_source_rcpt(o, t->rcpt_first + c->rcpt_next,
			    p, SRC_ADDR_MAX + 1);
			assert(n > 0);	/* the parser tried the longest */
			src_out_commit(o_, n);
			SRC_OUT_LIT(o_, ">\r\n");
			src_expect_push(s, c, SRC_S_RCPT, c->tsend, 1);
			if (++c->rcpt_next == o->recipients)
				c->send_state = SRC_S_DATA;
			break;
		case SRC_S_DATA:
			if (must_wait(c))
				return;
			SRC_OUT_LIT(o_, "DATA\r\n");
			src_expect_push(s, c, SRC_S_DATA, c->tsend, 1);
			c->send_state = SRC_S_DOT;
			break;
		case SRC_S_DOT:
			t = &c->txn[c->tsend];
			switch (t->data) {
			case SRC_DATA_WAIT:
				return;
			case SRC_DATA_REFUSED:
				/* The server may still hold the MAIL. */
				c->send_state = t->mail_ok ? SRC_S_RSET :
				    SRC_S_MAIL;
				continue;
			case SRC_DATA_EMPTY:
				/* RFC 2920 3.1: 354 with no recipient. */
				SRC_OUT_LIT(o_, ".\r\n");
				src_expect_push(s, c, SRC_S_DOT, c->tsend, 1);
				break;
			case SRC_DATA_GO:
				src_out_header(s, c, t, o_);
				if (s->corpus != NULL)
					src_out_ref(o_, s->corpus[t->seq %
					    s->ncorpus].data,
					    s->corpus[t->seq % s->ncorpus].len);
				else
					src_out_ref(o_, s->body, s->body_len);
				SRC_OUT_LIT(o_, ".\r\n");
				src_expect_push(s, c, SRC_S_DOT, c->tsend,
				    o->lmtp ? t->rcpt_ok : 1);
				break;
			default:
				log_panic("bad data state %d", (int)t->data);
			}
			c->send_state = SRC_S_MAIL;
			break;
		case SRC_S_RSET:
			if (must_wait(c))
				return;
			SRC_OUT_LIT(o_, "RSET\r\n");
			src_expect_push(s, c, SRC_S_RSET, c->tsend, 1);
			c->send_state = SRC_S_MAIL;
			break;
		case SRC_S_QUIT:
			if (must_wait(c))
				return;
			SRC_OUT_LIT(o_, "QUIT\r\n");
			src_expect_push(s, c, SRC_S_QUIT, 0, 1);
			c->quit_sent = true;
			c->send_state = SRC_S_WAIT;
			break;
		default:
			log_panic("bad send state %d", (int)c->send_state);
		}
	}
}

/* ---- the receive side ------------------------------------------------- */

/* A set-up step was refused (code) or impossible (code 0). */
__attribute__((format(printf, 4, 5)))
static void
setup_refused(struct src *s, struct src_conn *c, int code,
    const char *fmt, ...)
{
	char text[SRC_WHY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/*
	 * A permanent refusal before any session worked is a configuration
	 * mismatch (no STARTTLS, wrong password): retrying cannot help.
	 */
	src_conn_fail(s, c, SRC_E_SETUP, code == 0 || code >= 500, "%s", text);
}

static void
session_ready(struct src *s, struct src_conn *c)
{
	const struct bench_source_opts *o = s->o;

	c->backoff_n = 0;
	s->st.sessions++;
	if (!s->srv_known) {
		s->srv_known = true;
		s->srv_pipelining = c->cap_pipelining;
		s->srv_starttls = c->cap_starttls ||
		    (c->tls_on && o->starttls);
		s->srv_plain = c->cap_plain;
		s->srv_login = c->cap_login;
	}
	c->send_state = SRC_S_MAIL;
}

/* EHLO or HELO accepted: STARTTLS, AUTH, or the first MAIL. */
static void
after_hello(struct src *s, struct src_conn *c)
{
	const struct bench_source_opts *o = s->o;

	c->pipelining = o->pipelining && c->cap_pipelining;
	if (o->starttls && !c->tls_on) {
		if (!c->cap_starttls) {
			setup_refused(s, c, 0, "the server does not offer "
			    "STARTTLS");
			return;
		}
		c->send_state = SRC_S_STARTTLS;
		return;
	}
	if (o->auth && !c->authed) {
		bool plain = c->cap_plain && o->auth_mech != SRC_AUTH_LOGIN;
		bool login = c->cap_login && o->auth_mech != SRC_AUTH_PLAIN;

		if (!plain && !login) {
			setup_refused(s, c, 0, "the server offers %s",
			    o->auth_mech == SRC_AUTH_PLAIN ? "no AUTH PLAIN" :
			    o->auth_mech == SRC_AUTH_LOGIN ? "no AUTH LOGIN" :
			    "neither AUTH PLAIN nor AUTH LOGIN");
			return;
		}
		c->auth_login = !plain;
		c->send_state = SRC_S_AUTH;
		return;
	}
	session_ready(s, c);
}

/* A line of the EHLO reply past the first: one service extension. */
static void
ehlo_keyword(struct src_conn *c, const char *p, size_t n)
{
	const char *end = p + n, *w;
	size_t wl;

	if (n >= 10 && strncasecmp(p, "PIPELINING", 10) == 0 &&
	    (n == 10 || p[10] == ' '))
		c->cap_pipelining = true;
	else if (n >= 8 && strncasecmp(p, "STARTTLS", 8) == 0 &&
	    (n == 8 || p[8] == ' '))
		c->cap_starttls = true;
	else if (n > 5 && strncasecmp(p, "AUTH ", 5) == 0) {
		for (w = p + 5; w < end; w += wl) {
			while (w < end && *w == ' ')
				w++;
			for (wl = 0; w + wl < end && w[wl] != ' '; wl++)
				;
			if (wl == 5 && strncasecmp(w, "PLAIN", 5) == 0)
				c->cap_plain = true;
			if (wl == 5 && strncasecmp(w, "LOGIN", 5) == 0)
				c->cap_login = true;
		}
	}
}

/* A complete reply: code, and its last line (NUL-terminated, no CRLF). */
static void
reply_done(struct src *s, struct src_conn *c, int code, const char *line)
{
	struct src_expect *e = &c->expect[c->ehead];
	enum src_state kind = (enum src_state)e->kind;
	struct src_txn *t = &c->txn[e->txn];
	bool last;

	assert(c->ecount > 0);
	last = --e->count == 0;
	if (last) {
		c->ehead = (c->ehead + 1) % SRC_EXPECT_MAX;
		c->ecount--;
	}
	c->deadline_us = c->ecount ? s->now + s->o->timeout_us : 0;
	if (code == 421 && kind != SRC_S_QUIT) {
		src_conn_fail(s, c, SRC_E_421, false, "%s: %s",
		    src_strstate(kind), line);
		return;
	}
	switch (kind) {
	case SRC_S_GREETING:
		if (code != 220) {
			setup_refused(s, c, code, "greeting: %s", line);
			return;
		}
		hist_add(&s->st.lat_greet, s->now - c->connect_us);
		c->send_state = SRC_S_EHLO;
		break;
	case SRC_S_EHLO:
		if (code / 100 == 2) {
			after_hello(s, c);
		} else if (code / 100 == 5 && !s->o->lmtp &&
		    !c->ehlo_refused && !(c->tls_on && s->o->starttls)) {
			c->ehlo_refused = true;
			c->send_state = SRC_S_HELO;
		} else {
			setup_refused(s, c, code, "%s: %s", s->o->lmtp ?
			    "LHLO" : "EHLO", line);
		}
		break;
	case SRC_S_HELO:
		if (code / 100 != 2)
			setup_refused(s, c, code, "HELO: %s", line);
		else
			after_hello(s, c);
		break;
	case SRC_S_STARTTLS:
		if (code != 220) {
			setup_refused(s, c, code, "STARTTLS: %s", line);
			return;
		}
		/* The handshake starts once this input is consumed. */
		c->tls_pending = true;
		c->send_state = SRC_S_TLS;
		c->deadline_us = s->now + s->o->timeout_us;
		break;
	case SRC_S_AUTH:
		if (code == 235) {
			c->authed = true;
			session_ready(s, c);
		} else if (code == 334 && c->auth_login) {
			c->send_state = SRC_S_AUTH_USER;
		} else {
			setup_refused(s, c, code, "AUTH: %s", line);
		}
		break;
	case SRC_S_AUTH_USER:
		if (code != 334)
			setup_refused(s, c, code, "AUTH LOGIN: %s", line);
		else
			c->send_state = SRC_S_AUTH_PASS;
		break;
	case SRC_S_AUTH_PASS:
		if (code != 235) {
			setup_refused(s, c, code, "AUTH LOGIN: %s", line);
			return;
		}
		c->authed = true;
		session_ready(s, c);
		break;
	case SRC_S_MAIL:
		assert(t->live);
		if (code / 100 == 2)
			t->mail_ok = true;
		else if (code / 100 == 4 || code / 100 == 5)
			txn_refuse(s, t, SRC_STAGE_MAIL, code, line);
		else
			goto unexpected;
		break;
	case SRC_S_RCPT:
		assert(t->live);
		/* After a refused MAIL, RCPT refusals say nothing. */
		if (!t->mail_ok)
			break;
		if (code / 100 == 2) {
			t->rcpt_ok++;
		} else if (code / 100 == 4) {
			t->rcpt_4xx++;
			s->st.rcpt_4xx++;
		} else if (code / 100 == 5) {
			t->rcpt_5xx++;
			s->st.rcpt_5xx++;
		} else {
			goto unexpected;
		}
		if (code / 100 != 2 && s->first_refusal[0] == '\0')
			snprintf(s->first_refusal, sizeof(s->first_refusal),
			    "rcpt: %.200s", line);
		break;
	case SRC_S_DATA:
		assert(t->live);
		if (t->mail_ok && t->rcpt_ok == 0)
			txn_refuse(s, t, SRC_STAGE_RCPT, t->rcpt_4xx ? 400 :
			    500, "every recipient refused");
		if (code == 354) {
			if (t->fail_stage == SRC_STAGE_NONE) {
				t->data = SRC_DATA_GO;
			} else if (s->o->lmtp) {
				/* RFC 2033 4.2: DATA needs a recipient. */
				goto unexpected;
			} else {
				t->data = SRC_DATA_EMPTY;
			}
		} else if (code / 100 == 4 || code / 100 == 5) {
			txn_refuse(s, t, SRC_STAGE_DATA, code, line);
			t->data = SRC_DATA_REFUSED;
			txn_finish(s, t);
		} else {
			goto unexpected;
		}
		break;
	case SRC_S_DOT:
		assert(t->live);
		if (t->data == SRC_DATA_EMPTY) {
			txn_finish(s, t);
			break;
		}
		if (code / 100 != 2 && code / 100 != 4 && code / 100 != 5)
			goto unexpected;
		if (!s->o->lmtp) {
			if (code / 100 != 2)
				txn_refuse(s, t, SRC_STAGE_DOT, code, line);
			txn_finish(s, t);
			break;
		}
		/* LMTP (RFC 2033 4.2): one reply per accepted recipient. */
		if (code / 100 == 2) {
			t->lmtp_ok++;
			s->st.lmtp_ok++;
		} else if (code / 100 == 4) {
			t->lmtp_4xx++;
			s->st.lmtp_4xx++;
		} else {
			t->lmtp_5xx++;
			s->st.lmtp_5xx++;
		}
		if (code / 100 != 2 && s->first_refusal[0] == '\0')
			snprintf(s->first_refusal, sizeof(s->first_refusal),
			    "end_of_data: %.200s", line);
		if (last) {
			if (t->lmtp_ok == 0)
				txn_refuse(s, t, SRC_STAGE_DOT,
				    t->lmtp_4xx ? 400 : 500, line);
			txn_finish(s, t);
		}
		break;
	case SRC_S_RSET:
		break;
	case SRC_S_QUIT:
		src_conn_close(s, c, SRC_AFTER_RECONNECT);
		break;
	default:
		log_panic("bad receive state %d", (int)kind);
	}
	src_conn_kick(s, c);
	return;
unexpected:
	src_conn_fail(s, c, SRC_E_PROTOCOL, false, "unexpected reply to %s: %s",
	    src_strstate(kind), line);
}

/* One reply line, CRLF or LF included (n >= 1, p[n - 1] == '\n'). */
static void
reply_line(struct src *s, struct src_conn *c, char *p, size_t n)
{
	int code;

	n--;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	p[n] = '\0';
	if (n < 3 || !isdigit((unsigned char)p[0]) ||
	    !isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) ||
	    (n > 3 && p[3] != ' ' && p[3] != '-')) {
		src_conn_fail(s, c, SRC_E_PROTOCOL, false,
		    "malformed reply line '%.80s'", p);
		return;
	}
	code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	if (c->ecount == 0) {
		/* Unsolicited: a server closing an idle session says 421. */
		src_conn_fail(s, c, code == 421 ? SRC_E_421 : SRC_E_PROTOCOL,
		    false, "unsolicited reply '%.80s'", p);
		return;
	}
	if (++c->reply_lines > SRC_REPLY_LINES_MAX) {
		src_conn_fail(s, c, SRC_E_PROTOCOL, false, "reply of more than "
		    "%d lines", SRC_REPLY_LINES_MAX);
		return;
	}
	/* EHLO: every line after the first names an extension. */
	if (c->expect[c->ehead].kind == SRC_S_EHLO && c->reply_lines > 1 &&
	    n > 4)
		ehlo_keyword(c, p + 4, n - 4);
	if (n > 3 && p[3] == '-')
		return;
	c->reply_lines = 0;
	reply_done(s, c, code, p);
}

/* Plaintext from the server: split it into reply lines. */
void
src_replies_parse(struct src *s, struct src_conn *c, char *p, size_t n)
{
	size_t chunk, len;
	char *nl, *line;

	while (n > 0 && !c->closing) {
		nl = memchr(p, '\n', n);
		if (nl == NULL) {
			/* Keep the start of a line for the next read. */
			if (c->line_len + n > SRC_LINE_MAX - 1) {
				src_conn_fail(s, c, SRC_E_PROTOCOL, false,
				    "reply line longer than %d bytes",
				    SRC_LINE_MAX);
				return;
			}
			memcpy(c->line + c->line_len, p, n);
			c->line_len += n;
			return;
		}
		chunk = (size_t)(nl - p) + 1;
		if (c->line_len > 0) {
			if (c->line_len + chunk > SRC_LINE_MAX) {
				src_conn_fail(s, c, SRC_E_PROTOCOL, false,
				    "reply line longer than %d bytes",
				    SRC_LINE_MAX);
				return;
			}
			memcpy(c->line + c->line_len, p, chunk);
			line = c->line;
			len = c->line_len + chunk;
			c->line_len = 0;
		} else {
			line = p;
			len = chunk;
		}
		p += chunk;
		n -= chunk;
		reply_line(s, c, line, len);
		if (c->tls_pending && n > 0 && !c->closing) {
			/* RFC 3207 5: nothing may follow the 220 in clear. */
			src_conn_fail(s, c, SRC_E_PROTOCOL, false, "plaintext "
			    "after the reply to STARTTLS");
			return;
		}
	}
}
