/*
 * sink_session.c - the server side of one SMTP (or LMTP) session in
 * `sluice-bench sink`: the command table, DATA through the DATA scanner
 * (proto/data_scan.c), BDAT chunks (RFC 3030), the reply mix and delays
 * at each stage, and counting each message that arrives (latency from its
 * X-Sluice-Bench header, --log and --store).
 *
 * Everything here only appends replies to c->out and changes c's state;
 * sink_conn.c sends. A protocol error is answered and counted, never
 * fatal; docs/sluice-bench-sink.md lists every reply.
 */
#include "sink_int.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/clock.h"
#include "../lib/log.h"
#include "bench_common.h"

/* ---- replies ---------------------------------------------------------- */

void
sink_reply(struct sink *s, struct sink_conn *c, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
	if (rc < 0)
		sink_conn_close(s, c);
}

void
sink_reply_str(struct sink *s, struct sink_conn *c, const char *text)
{
	if (buf_puts(&c->out, text) < 0)
		sink_conn_close(s, c);
}

/* ---- the SMTP session ------------------------------------------------- */

void
sink_txn_reset(struct sink_conn *c)
{
	c->mail = false;
	c->nrcpt = 0;
	c->drop = false;
	c->bdat_started = false;
	c->bdat_bad = false;
	c->bdat_last = false;
	buf_reset(&c->env);
}

/* Start collecting a message (DATA, or the first BDAT chunk). */
static void
msg_begin(struct sink *s, struct sink_conn *c)
{
	buf_reset(&c->msg);
	c->hashed = 0;
	c->msg_size = 0;
	c->msg_too_big = false;
	c->msg_nomem = false;
	if (s->log_fd >= 0) {
		if (c->sha == NULL && (c->sha = EVP_MD_CTX_new()) == NULL)
			c->msg_nomem = true;
		else if (EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL) != 1)
			c->msg_nomem = true;
	}
	c->drop = s->o->drop_ppm > 0 && sink_rng_draw(c) < s->o->drop_ppm;
}

/*
 * Bytes were added to c->msg: hash them for --log, and unless the whole
 * message is to be stored keep only its head.
 */
static void
msg_absorb(struct sink *s, struct sink_conn *c)
{
	if (c->sha != NULL && s->log_fd >= 0 && c->msg.len > c->hashed &&
	    !c->msg_nomem) {
		if (EVP_DigestUpdate(c->sha, c->msg.data + c->hashed,
		    c->msg.len - c->hashed) != 1)
			c->msg_nomem = true;
		c->hashed = c->msg.len;
	}
	if (s->store_dirfd < 0 && c->msg.len > SINK_HEAD_KEEP) {
		c->msg.len = SINK_HEAD_KEEP;
		c->hashed = SINK_HEAD_KEEP;
	}
}

/* Raw message bytes (BDAT). */
static void
msg_append(struct sink *s, struct sink_conn *c, const char *p, size_t n)
{
	size_t keep = n;

	c->msg_size += n;
	if (c->msg_size > SINK_MSG_MAX)
		c->msg_too_big = true;
	if (c->msg_too_big || c->msg_nomem)
		return;
	if (s->store_dirfd < 0 && s->log_fd < 0) {
		/* Nothing but the head is ever looked at. */
		keep = c->msg.len >= SINK_HEAD_KEEP ? 0 :
		    SINK_HEAD_KEEP - c->msg.len;
		if (keep > n)
			keep = n;
	}
	if (keep > 0 && buf_append(&c->msg, p, keep) < 0)
		c->msg_nomem = true;
	msg_absorb(s, c);
}

static void
count_refused(struct sink *s, enum sink_stage st, unsigned code)
{
	assert(st < SINK_MIX_STAGES);
	assert(code >= 400 && code <= 599);
	s->refused[st][code - 400]++;
	s->refused_total++;
}

/* Answer with the mix's code; a 421 closes after the reply. */
void
sink_inject(struct sink *s, struct sink_conn *c, enum sink_stage st,
    unsigned code)
{
	count_refused(s, st, code);
	if (code == 421) {
		sink_reply(s, c, "421 4.0.0 %s sluice-bench: injected %s reply, "
		    "closing\r\n", s->o->hostname, sink_stage_name(st));
		c->close_after_flush = true;
		return;
	}
	sink_reply(s, c, "%u %u.0.0 sluice-bench: injected %s reply\r\n", code,
	    code / 100, sink_stage_name(st));
}

static void
proto_error(struct sink *s, struct sink_conn *c, const char *text)
{
	s->errors++;
	sink_reply_str(s, c, text);
}

/* Per-second arrival counts, from the first connection on. */
static void
count_second(struct sink *s)
{
	size_t sec = (size_t)((s->now_us - s->first_us) / 1000000u);
	size_t cap;
	uint32_t *p;

	if (sec >= SINK_SECONDS_MAX) {
		s->sec_full = true;
		return;
	}
	if (sec >= s->sec_cap) {
		cap = s->sec_cap ? s->sec_cap : 64;
		while (cap <= sec)
			cap *= 2;
		p = realloc(s->per_sec, cap * sizeof(*p));
		if (p == NULL) {
			s->sec_full = true;
			return;
		}
		memset(p + s->sec_cap, 0, (cap - s->sec_cap) * sizeof(*p));
		s->per_sec = p;
		s->sec_cap = cap;
	}
	s->per_sec[sec]++;
	if (sec + 1 > s->nsec)
		s->nsec = sec + 1;
}

/* A message was accepted (for at least one recipient). */
static void
message_accepted(struct sink *s, struct sink_conn *c, const char *id,
    uint64_t wall_us, size_t mark)
{
	char bench_id[SINK_BENCH_ID_MAX];
	uint64_t sent_us, lat = 0;
	bool have;

	s->messages++;
	s->lst[c->listener].messages++;
	c->messages++;
	s->last_msg_us = s->now_us;
	count_second(s);
	have = bench_header_parse(c->msg.data, c->msg.len, &sent_us, bench_id,
	    sizeof(bench_id));
	if (have) {
		lat = wall_us > sent_us ? wall_us - sent_us : 0;
		hist_add(s->lat, lat);
	} else {
		s->no_header++;
	}
	if (s->log_fd >= 0)
		sink_log_message(s, c, id, have ? bench_id : NULL, lat,
		    wall_us);
	if (s->store_dirfd >= 0)
		sink_store_message(s, c, id, mark);
	if (s->o->expect > 0 && s->messages >= s->o->expect)
		s->stop_pending = true;
}

/*
 * The end of a message (DATA's final dot, or BDAT LAST): reply for it, per
 * recipient in LMTP mode (RFC 2033 section 4.2), and count it.
 */
static void
message_end(struct sink *s, struct sink_conn *c, enum sink_stage st)
{
	char id[SINK_ID_LEN + 1];
	size_t mark = c->out.len;	/* where the replies to the end start */
	uint64_t wall_us;
	unsigned code;
	uint32_t i, ok = 0;

	if (s->o->delay_us[st] > 0)
		sink_hold_begin(s, c, s->o->delay_us[st]);
	if (c->msg_too_big || c->msg_nomem) {
		if (c->msg_too_big) {
			s->too_big++;
			proto_error(s, c, "552 5.3.4 message too big\r\n");
		} else {
			proto_error(s, c, "451 4.3.0 local error: out of "
			    "memory\r\n");
		}
		if (s->o->lmtp)
			for (i = 1; i < c->nrcpt; i++)
				sink_reply_str(s, c, c->msg_too_big ?
				    "552 5.3.4 message too big\r\n" :
				    "451 4.3.0 local error: out of memory\r\n");
		sink_txn_reset(c);
		return;
	}
	if (c->ds.bare_cr && st == SINK_STAGE_DATA)
		s->bare_cr++;
	if (c->ds.bare_lf && st == SINK_STAGE_DATA)
		s->bare_lf++;
	wall_us = clock_real_us();
	snprintf(id, sizeof(id), "%016llX",
	    (unsigned long long)(s->id_prefix | ++s->seq));
	if (s->o->lmtp) {
		for (i = 0; i < c->nrcpt; i++) {
			s->rcpt_ok[i] = false;
			if (c->close_after_flush)
				continue;	/* a 421 ended the session */
			code = sink_mix(s, c, st);
			if (code != 0) {
				sink_inject(s, c, st, code);
				continue;
			}
			sink_reply(s, c, "250 2.0.0 Ok: queued as %s\r\n", id);
			s->rcpt_ok[i] = true;
			ok++;
		}
	} else {
		code = sink_mix(s, c, st);
		if (code != 0) {
			sink_inject(s, c, st, code);
		} else {
			sink_reply(s, c, "250 2.0.0 Ok: queued as %s\r\n", id);
			ok = 1;
		}
	}
	if (ok > 0)
		message_accepted(s, c, id, wall_us, mark);
	sink_txn_reset(c);
}

/* Close mid-message without a reply (--drop-data). */
static void
drop_now(struct sink *s, struct sink_conn *c)
{
	s->dropped++;
	sink_txn_reset(c);
	sink_conn_close(s, c);
}

/* DATA content: returns the bytes consumed. */
static size_t
data_input(struct sink *s, struct sink_conn *c, const char *p, size_t n)
{
	size_t k;

	if (c->drop) {
		drop_now(s, c);
		return n;
	}
	k = data_scan(&c->ds, p, n, &c->msg);
	c->msg_size = c->ds.size;
	if (c->ds.nomem)
		c->msg_nomem = true;
	if (c->ds.size > SINK_MSG_MAX ||
	    (c->ds.too_big && s->store_dirfd >= 0))
		c->msg_too_big = true;
	msg_absorb(s, c);
	if (c->ds.state == DS_DONE) {
		c->state = SINK_CS_CMD;
		message_end(s, c, SINK_STAGE_DATA);
	}
	return k;
}

static void
bdat_chunk_done(struct sink *s, struct sink_conn *c)
{
	c->state = SINK_CS_CMD;
	if (c->bdat_bad) {
		proto_error(s, c, "503 5.5.1 BDAT without a valid "
		    "transaction\r\n");
		if (c->bdat_last)
			sink_txn_reset(c);
		return;
	}
	if (c->bdat_last) {
		message_end(s, c, SINK_STAGE_BDAT);
		return;
	}
	sink_reply(s, c, "250 2.0.0 Ok: %llu octets received\r\n",
	    (unsigned long long)c->msg_size);
}

/* BDAT chunk octets (RFC 3030): returns the bytes consumed. */
static size_t
bdat_input(struct sink *s, struct sink_conn *c, const char *p, size_t n)
{
	size_t k = n;

	if (c->drop) {
		drop_now(s, c);
		return n;
	}
	if (k > c->bdat_left)
		k = (size_t)c->bdat_left;
	if (!c->bdat_bad)
		msg_append(s, c, p, k);
	c->bdat_left -= k;
	if (c->bdat_left == 0)
		bdat_chunk_done(s, c);
	return k;
}

/*
 * The path of "FROM:<path> params" or "TO:<path> params" (key given with
 * its colon). Accepts any bracketed path, quoted parts included, and any
 * parameters; false when there is no such path.
 */
static bool
path_parse(const char *a, size_t n, const char *key, const char **path,
    size_t *plen)
{
	size_t k = strlen(key), i;
	bool quoted = false;

	if (n < k || strncasecmp(a, key, k) != 0)
		return false;
	for (i = k; i < n && a[i] == ' '; i++)
		;
	if (i == n || a[i] != '<')
		return false;
	*path = a + i + 1;
	for (i++; i < n; i++) {
		if (quoted && a[i] == '\\' && i + 1 < n) {
			i++;
			continue;
		}
		if (a[i] == '"')
			quoted = !quoted;
		else if (a[i] == '>' && !quoted)
			break;
	}
	if (i == n || (i + 1 < n && a[i + 1] != ' '))
		return false;
	*plen = (size_t)(a + i - *path);
	return true;
}

typedef void cmd_fn(struct sink *s, struct sink_conn *c, const char *arg,
    size_t n);

/*
 * EHLO, HELO and LHLO differ only in which protocol allows them and what
 * they answer; wrong_proto is the reply when the protocol does not.
 */
static void
greeting_cmd(struct sink *s, struct sink_conn *c, size_t n, bool lmtp_verb,
    const char *needs_domain, const char *wrong_proto, const char *reply)
{
	unsigned code;

	if (s->o->lmtp != lmtp_verb) {
		proto_error(s, c, wrong_proto);
		return;
	}
	if (n == 0) {
		proto_error(s, c, needs_domain);
		return;
	}
	if ((code = sink_mix(s, c, SINK_STAGE_HELO)) != 0) {
		sink_inject(s, c, SINK_STAGE_HELO, code);
		return;
	}
	sink_txn_reset(c);
	c->helo = true;
	sink_reply_str(s, c, reply);
}

static void
cmd_ehlo(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	(void)arg;
	greeting_cmd(s, c, n, false, "501 5.5.4 EHLO needs a domain\r\n",
	    "500 5.5.1 this is LMTP: use LHLO\r\n", s->ehlo);
}

static void
cmd_helo(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	(void)arg;
	greeting_cmd(s, c, n, false, "501 5.5.4 HELO needs a domain\r\n",
	    "500 5.5.1 this is LMTP: use LHLO\r\n", s->helo);
}

static void
cmd_lhlo(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	(void)arg;
	greeting_cmd(s, c, n, true, "501 5.5.4 LHLO needs a domain\r\n",
	    "502 5.5.1 command not supported\r\n", s->ehlo);
}

static void
cmd_mail(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	const char *path;
	size_t plen;
	unsigned code;

	if (!c->helo) {
		proto_error(s, c, s->o->lmtp ? "503 5.5.1 send LHLO first\r\n" :
		    "503 5.5.1 send EHLO or HELO first\r\n");
		return;
	}
	if (c->mail) {
		proto_error(s, c, "503 5.5.1 nested MAIL command\r\n");
		return;
	}
	if (!path_parse(arg, n, "FROM:", &path, &plen)) {
		proto_error(s, c, "501 5.5.4 syntax: MAIL FROM:<address>\r\n");
		return;
	}
	if ((code = sink_mix(s, c, SINK_STAGE_MAIL)) != 0) {
		sink_inject(s, c, SINK_STAGE_MAIL, code);
		return;
	}
	sink_txn_reset(c);
	c->mail = true;
	sink_env_add(s, c, path, plen);
	sink_reply_str(s, c, "250 2.1.0 Ok\r\n");
}

static void
cmd_rcpt(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	const char *path;
	size_t plen;
	unsigned code;

	if (!c->mail) {
		proto_error(s, c, "503 5.5.1 need MAIL before RCPT\r\n");
		return;
	}
	if (!path_parse(arg, n, "TO:", &path, &plen) || plen == 0) {
		proto_error(s, c, "501 5.5.4 syntax: RCPT TO:<address>\r\n");
		return;
	}
	if (c->nrcpt >= SINK_RCPT_MAX) {
		proto_error(s, c, "452 4.5.3 too many recipients\r\n");
		return;
	}
	if ((code = sink_mix(s, c, SINK_STAGE_RCPT)) != 0) {
		sink_inject(s, c, SINK_STAGE_RCPT, code);
		return;
	}
	c->nrcpt++;
	sink_env_add(s, c, path, plen);
	sink_reply_str(s, c, "250 2.1.5 Ok\r\n");
}

static void
cmd_data(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	(void)arg;
	if (n != 0) {
		proto_error(s, c, "501 5.5.4 DATA takes no argument\r\n");
		return;
	}
	if (!c->mail || c->bdat_started) {
		proto_error(s, c, "503 5.5.1 need MAIL and RCPT before "
		    "DATA\r\n");
		return;
	}
	if (c->nrcpt == 0) {
		/* RFC 5321 section 3.3: no valid recipients. */
		proto_error(s, c, "554 5.5.1 no valid recipients\r\n");
		return;
	}
	msg_begin(s, c);
	/* Without --store only the head is kept; the scanner counts on. */
	data_scan_init(&c->ds, s->store_dirfd >= 0 ? SINK_MSG_MAX :
	    s->log_fd >= 0 ? UINT64_MAX : SINK_HEAD_KEEP);
	c->state = SINK_CS_DATA;
	sink_reply_str(s, c, "354 End data with <CR><LF>.<CR><LF>\r\n");
}

static void
cmd_bdat(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	uint64_t size = 0;
	size_t i = 0;
	bool last = false;

	while (i < n && arg[i] >= '0' && arg[i] <= '9' &&
	    size <= SINK_MSG_MAX) {
		size = size * 10 + (uint64_t)(arg[i] - '0');
		i++;
	}
	if (i < n && arg[i] == ' ') {
		while (i < n && arg[i] == ' ')
			i++;
		if (n - i == 4 && strncasecmp(arg + i, "LAST", 4) == 0) {
			last = true;
			i = n;
		}
	}
	if (i == 0 || i != n || size > SINK_MSG_MAX) {
		/* The chunk's length is unknown: the stream cannot go on. */
		proto_error(s, c, "501 5.5.4 syntax: BDAT size [LAST]; "
		    "closing\r\n");
		c->close_after_flush = true;
		return;
	}
	if (!c->bdat_started) {
		c->bdat_bad = !c->mail || c->nrcpt == 0;
		c->bdat_started = true;
		msg_begin(s, c);
		/* A chunk of nothing cannot be dropped "in the middle". */
		if (size == 0)
			c->drop = false;
	}
	c->bdat_last = last;
	c->bdat_left = size;
	c->ds.bare_cr = c->ds.bare_lf = false;
	c->state = SINK_CS_BDAT;
	if (size == 0)
		bdat_chunk_done(s, c);
}

static void
cmd_rset(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	(void)arg;
	(void)n;
	sink_txn_reset(c);
	sink_reply_str(s, c, "250 2.0.0 Ok\r\n");
}

static void
cmd_noop(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	(void)arg;
	(void)n;
	sink_reply_str(s, c, "250 2.0.0 Ok\r\n");
}

static void
cmd_quit(struct sink *s, struct sink_conn *c, const char *arg, size_t n)
{
	(void)arg;
	(void)n;
	sink_reply(s, c, "221 2.0.0 %s closing connection\r\n", s->o->hostname);
	c->close_after_flush = true;
}

/*
 * The command table. `delay` says whether the stage's delay applies to
 * the command's reply; DATA and BDAT delay the reply that ends the
 * message instead, not the 354 or a chunk's acknowledgement.
 */
static const struct sink_cmd {
	const char *verb;
	enum sink_stage stage;
	bool delay;
	cmd_fn *fn;
} sink_cmds[] = {
	{ "EHLO", SINK_STAGE_HELO, true, cmd_ehlo },
	{ "HELO", SINK_STAGE_HELO, true, cmd_helo },
	{ "LHLO", SINK_STAGE_HELO, true, cmd_lhlo },
	{ "MAIL", SINK_STAGE_MAIL, true, cmd_mail },
	{ "RCPT", SINK_STAGE_RCPT, true, cmd_rcpt },
	{ "DATA", SINK_STAGE_DATA, false, cmd_data },
	{ "BDAT", SINK_STAGE_BDAT, false, cmd_bdat },
	{ "RSET", SINK_STAGE_RSET, true, cmd_rset },
	{ "NOOP", SINK_STAGE_NOOP, true, cmd_noop },
	{ "QUIT", SINK_STAGE_QUIT, true, cmd_quit },
};

/* One command line, with its line end. */
static void
handle_command(struct sink *s, struct sink_conn *c, const char *line,
    size_t n)
{
	const struct sink_cmd *cmd = NULL;
	size_t vlen, i;
	const char *arg;

	if (n > 0 && line[n - 1] == '\n')
		n--;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	for (vlen = 0; vlen < n && line[vlen] != ' '; vlen++)
		;
	for (i = 0; i < sizeof(sink_cmds) / sizeof(sink_cmds[0]); i++)
		if (vlen == 4 && strncasecmp(line, sink_cmds[i].verb, 4) == 0)
			cmd = &sink_cmds[i];
	arg = line + vlen;
	while (arg < line + n && *arg == ' ')
		arg++;
	n -= (size_t)(arg - line);
	while (n > 0 && arg[n - 1] == ' ')
		n--;
	if (cmd == NULL) {
		proto_error(s, c, "502 5.5.1 command not supported\r\n");
		return;
	}
	if (cmd->fn != cmd_quit && c->no_service) {
		/* RFC 5321 section 3.1: after a refusing greeting. */
		proto_error(s, c, "503 5.5.1 no service here; QUIT\r\n");
		return;
	}
	if (cmd->fn != cmd_quit && s->stopping && !c->mail) {
		sink_reply(s, c, "421 4.3.2 %s service shutting down\r\n",
		    s->o->hostname);
		c->close_after_flush = true;
		return;
	}
	if (cmd->delay && s->o->delay_us[cmd->stage] > 0)
		sink_hold_begin(s, c, s->o->delay_us[cmd->stage]);
	cmd->fn(s, c, arg, n);
}

/*
 * Process input at p[0..n): commands, DATA content, BDAT octets. Stops at
 * a held reply, a close, or a partial command line, and returns the bytes
 * consumed; the caller keeps the rest for later.
 */
size_t
sink_conn_input(struct sink *s, struct sink_conn *c, const char *p,
    size_t n)
{
	const char *lf;
	size_t off = 0, k;

	while (off < n && !c->hold && !c->close_after_flush && !c->closing) {
		switch (c->state) {
		case SINK_CS_CMD:
			lf = memchr(p + off, '\n', n - off);
			k = lf ? (size_t)(lf - (p + off)) + 1 : n - off;
			if (k > SINK_LINE_MAX) {
				proto_error(s, c, "500 5.5.2 line too long; "
				    "closing\r\n");
				c->close_after_flush = true;
				return n;
			}
			if (lf == NULL)
				return off;	/* a partial line */
			handle_command(s, c, p + off, k);
			off += k;
			break;
		case SINK_CS_DATA:
			off += data_input(s, c, p + off, n - off);
			break;
		case SINK_CS_BDAT:
			off += bdat_input(s, c, p + off, n - off);
			break;
		default:
			log_panic("sink: bad connection state %d",
			    (int)c->state);
		}
	}
	return off;
}

/* Bytes received on c: process them, keeping what cannot be yet. */
void
sink_conn_feed(struct sink *s, struct sink_conn *c, const char *p,
    size_t n)
{
	size_t used;

	if (c->in.len > 0) {
		/* Bounded: a partial line, or what a hold left over. */
		if (buf_append(&c->in, p, n) < 0) {
			sink_conn_close(s, c);
			return;
		}
		used = sink_conn_input(s, c, c->in.data, c->in.len);
		if (c->closing || c->close_after_flush)
			buf_reset(&c->in);
		else
			buf_consume(&c->in, used);
		return;
	}
	used = sink_conn_input(s, c, p, n);
	if (used < n && !c->closing && !c->close_after_flush &&
	    buf_append(&c->in, p + used, n - used) < 0)
		sink_conn_close(s, c);
}
