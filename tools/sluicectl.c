/*
 * sluicectl.c - the operator tool: configuration check and queue inspection.
 *
 * Usage: sluicectl [-c FILE] [-o key=value]... COMMAND
 *   check                     load the configuration, print "configuration OK"
 *   status [--json]           what the running daemon is doing (ctl_status.c)
 *   queue count               number of queued messages
 *   queue list [--json]       every message, like Postfix mailq
 *   queue show ID [--json]    one message's envelope and verified headers
 *   queue flush               retry deferred mail now (running daemon)
 *   queue delete|hold|release|bounce ID   act on one message (running daemon)
 *   resolve [...] NAME        MX/A/AAAA as delivery sees them (exit 75: temp)
 *   hash-password             a crypt(3) hash for users / users_file
 *   dkim-keygen ...           a DKIM key and its DNS record (sluicectl_dkim.c)
 *   dkim-check [...]          the published DKIM keys against the configured
 *
 * The commands that change the queue talk to the running sluiced through
 * SPOOL/control.sock (engine/control.h): it owns the schedule and the
 * index writes, so nothing here writes to the spool itself.
 *
 * Contract: the configuration is loaded exactly as sluiced loads it
 * (config_load() with the same file, -o overrides and environment), so the
 * tool looks at the spool the daemon uses. The queue index is opened
 * read-only and read in short transactions, which is safe while sluiced
 * runs; nothing here writes to the spool. With --json, stdout carries the
 * JSON document and nothing else.
 *
 * Diagnostics: errors go to stderr as "sluicectl: ..." (a damaged record:
 * "error: QID: record damaged: REASON"). Exit 0 on success, 1 on an
 * operational error (index unreadable, unknown id, damaged record, write
 * error), 2 on a usage or configuration error.
 */
#include "../engine/config.h"
#include "../deliver/resolver.h"
#include "../queue/queue.h"
#include "../lib/clock.h"
#include "../lib/version.h"
#include "../engine/control_parse.h"
#include "../queue/queue_filter.h"
#include "ctl_status.h"
#include "hash_password.h"
#include "sluicectl_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define EXIT_OPERATIONAL 1
#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: sluicectl [-c FILE] [-o key=value]... COMMAND\n"
    "\n"
    "options:\n"
    "  -c FILE         configuration file (default: the embedded one)\n"
    "  -o key=value    override a configuration key (repeatable)\n"
    "  -h, --help      show this help\n"
    "  --version       print the version and exit\n"
    "\n"
    "commands:\n"
    "  check                   check the configuration\n"
    "  status [--json]         what the running sluiced is doing: queue,\n"
    "                          connections, rates, destinations\n"
    "  reload                  have the running sluiced read its\n"
    "                          configuration again (as SIGHUP does)\n"
    "  queue count             print the number of queued messages\n"
    "  queue list [FILTER...] [--json]\n"
    "                          list queued messages\n"
    "  queue show ID [--json]  show one message's envelope and headers\n"
    "  queue cat ID            write the stored message, byte for byte\n"
    "  queue flush [ID...|FILTER...]\n"
    "                          retry deferred mail now (all, or these)\n"
    "  queue delete ID...|FILTER...|--all\n"
    "                          remove messages (no DSN)\n"
    "  queue hold ID...|FILTER...|--all\n"
    "                          stop delivering messages\n"
    "  queue release ID...|FILTER...|--all\n"
    "                          deliver held messages again\n"
    "  queue bounce ID...|FILTER...|--all\n"
    "                          return messages to their senders now (DSN)\n"
    "  flush --domain DOMAIN   retry one destination's mail now\n"
    "  resolve [--resolver HOST:PORT] [--mx|--host] [--port N] [--json] NAME\n"
    "                          the hosts mail for NAME goes to (DNS)\n"
    "  hash-password           read a password (twice, without echo, from\n"
    "                          a terminal; else one line of stdin) and\n"
    "                          print its hash for users/users_file\n"
    "  dkim-keygen --domain D --selector S [--algorithm rsa|ed25519]\n"
    "              [--bits N] [--out FILE]\n"
    "                          a new DKIM key (mode 0600) and its TXT record\n"
    "  dkim-check [--resolver HOST:PORT] [--domain D] [--selector S]\n"
    "                          do the published DKIM keys match ours?\n"
    "\n"
    "filters (all must match; recipients count while not delivered):\n"
    "  --from ADDR|@DOMAIN|'<>'   the sender\n"
    "  --to ADDR|@DOMAIN          a recipient\n"
    "  --domain DOMAIN            a recipient's domain\n"
    "  --status queued|deferred|held\n"
    "  --older-than AGE           arrived more than AGE ago (30m, 2h, 3d)\n"
    "  --code N                   a recipient's last reply: 421, or 4/5\n"
    "  --reason TEXT              a recipient's last 4xx/5xx reply contains\n"
    "                             TEXT (any case): greylist, 'mailbox full'\n"
    "  --yes                      act on more than "
    "100 messages\n";

static void __attribute__((format(printf, 1, 0)))
ctl_verr(const char *fmt, va_list ap)
{
	fputs("sluicectl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static void __attribute__((format(printf, 1, 2)))
ctl_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ctl_verr(fmt, ap);
	va_end(ap);
}

/* ---- formatting ------------------------------------------------------- */

/* Text from the network goes to a terminal: neutralise control bytes. */
static void
put_safe(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r')
			continue;	/* CRLF shows as a line end */
		if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
			c = '?';
		putchar(c);
	}
}

void
ctl_put_str(const char *s)
{
	put_safe(s, strlen(s));
}

/* A JSON string; bytes that are not UTF-8 become '?', not an error. */
static json_t *
json_bytes(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	char *copy;

	if (j != NULL)
		return j;
	copy = malloc(n + 1);
	if (copy == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
	copy[n] = '\0';
	j = json_stringn(copy, n);
	free(copy);
	return j;
}

json_t *
ctl_json_str(const char *s)
{
	return json_bytes(s, strlen(s));
}

/* "2024-05-01 12:34:56 UTC" or RFC 3339 "2024-05-01T12:34:56Z". */
static void
fmt_time(uint64_t us, int rfc3339, char *out, size_t outlen)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, outlen, rfc3339 ? "%Y-%m-%dT%H:%M:%SZ" :
	    "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(out, outlen, "?");
}

static const char *
msg_state_name(uint32_t state)
{
	switch (state) {
	case MSG_QUEUED:
		return "queued";
	case MSG_HOLD:
		return "hold";
	default:
		return "unknown";
	}
}

static const char *
rcpt_state_name(uint8_t state)
{
	switch (state) {
	case RCPT_PENDING:
		return "pending";
	case RCPT_DELIVERED:
		return "delivered";
	case RCPT_BOUNCED:
		return "bounced";
	default:
		return "unknown";
	}
}

static const char *
body_name(uint8_t body)
{
	switch (body) {
	case QUEUE_BODY_7BIT:
		return "7BIT";
	case QUEUE_BODY_8BITMIME:
		return "8BITMIME";
	case QUEUE_BODY_BINARYMIME:
		return "BINARYMIME";
	default:
		return "unknown";
	}
}

static json_t *
json_recipients(const struct queue_msg *m, int detail)
{
	json_t *a = json_array();

	for (unsigned i = 0; a != NULL && i < m->env.nrcpt; i++) {
		const struct rcpt_meta *r = &m->rcpt[i];
		json_t *o = json_pack("{s:o, s:s, s:I}",
		    "address", ctl_json_str(m->env.rcpt[i]),
		    "state", rcpt_state_name(r->state),
		    "attempts", (json_int_t)r->attempts);

		if (o != NULL && detail) {
			json_object_set_new(o, "last_code",
			    json_integer(r->last_code));
			if (m->reply != NULL && m->reply[i] != NULL &&
			    r->last_code >= 400)
				json_object_set_new(o, "last_reply",
				    ctl_json_str(m->reply[i]));
			if (r->next_try_us != 0) {
				char t[40];

				fmt_time(r->next_try_us, 1, t, sizeof(t));
				json_object_set_new(o, "next_try",
				    json_string(t));
			}
		}
		if (o == NULL || json_array_append_new(a, o) < 0) {
			json_decref(a);
			a = NULL;
		}
	}
	return a;
}

/* The fields "queue list --json" and "queue show --json" share. */
static json_t *
json_message(const struct queue_msg *m, int detail)
{
	char id[QUEUE_ID_LEN + 1], at[40];

	queue_id_format(m->qid, id);
	fmt_time(m->env.arrival_us, 1, at, sizeof(at));
	return json_pack("{s:s, s:I, s:s, s:s, s:o, s:o, s:o, s:o}",
	    "id", id,
	    "size", (json_int_t)m->meta.msg_len,
	    "arrival", at,
	    "state", msg_state_name(m->meta.state),
	    "sender", ctl_json_str(m->env.sender),
	    "client_address", ctl_json_str(m->env.client_addr),
	    "helo", ctl_json_str(m->env.helo),
	    "recipients", json_recipients(m, detail));
}

/* ---- commands --------------------------------------------------------- */

static int
open_index(const struct config *cfg, struct queue_index **qi)
{
	int err = queue_index_open(qi, cfg->spool, cfg->queue.index_size, 1);

	if (err != 0) {
		ctl_err("cannot open the queue index in %s/index: %s",
		    cfg->spool, queue_strerror(err));
		return EXIT_OPERATIONAL;
	}
	return 0;
}

static int
finish_output(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		ctl_err("write error: %s", strerror(errno));
		return EXIT_OPERATIONAL;
	}
	return 0;
}

static int
cmd_queue_count(const struct config *cfg)
{
	struct queue_index *qi;
	uint64_t n = 0;
	int rc, err;

	rc = open_index(cfg, &qi);
	if (rc != 0)
		return rc;
	err = queue_index_count(qi, &n);
	queue_index_close(qi);
	if (err != 0) {
		ctl_err("cannot count the queue: %s", queue_strerror(err));
		return EXIT_OPERATIONAL;
	}
	printf("%" PRIu64 "\n", n);
	return finish_output();
}

/*
 * A copy of m with its recipients' last reply texts (m->reply) loaded
 * from the index, for showing them and for --reason; release with
 * free(copy->reply). Without them (memory, an older index) the copy
 * has none and --reason matches nothing.
 */
static void
msg_with_replies(struct queue_index *qi, const struct queue_msg *m,
    struct queue_msg *copy)
{
	*copy = *m;
	copy->reply = NULL;
	if (queue_index_replies(qi, copy) != 0)
		copy->reply = NULL;
}

struct list_state {
	struct queue_index *qi;
	const struct queue_filter *f;
	int json;
	int oom;
	uint64_t messages;
	uint64_t bytes;
};

static int
list_print(struct list_state *ls, const struct queue_msg *m)
{
	char id[QUEUE_ID_LEN + 1], at[40];

	if (!queue_filter_match(ls->f, m))
		return 0;
	if (ls->json) {
		json_t *o = json_message(m, 1);

		if (o == NULL) {
			ls->oom = 1;
			return 1;
		}
		if (ls->messages > 0)
			fputs(",\n", stdout);
		json_dumpf(o, stdout, JSON_COMPACT);
		json_decref(o);
	} else {
		queue_id_format(m->qid, id);
		fmt_time(m->env.arrival_us, 0, at, sizeof(at));
		printf("%s  %8" PRIu32 "  %s  %-6s  ", id, m->meta.msg_len, at,
		    msg_state_name(m->meta.state));
		if (m->env.sender[0] == '\0')
			fputs("<>", stdout);
		else
			ctl_put_str(m->env.sender);
		putchar('\n');
		for (unsigned i = 0; i < m->env.nrcpt; i++) {
			const struct rcpt_meta *r = &m->rcpt[i];

			fputs("    ", stdout);
			ctl_put_str(m->env.rcpt[i]);
			printf(" (%s", rcpt_state_name(r->state));
			if (r->attempts > 0)
				printf(", %u attempt%s", (unsigned)r->attempts,
				    r->attempts == 1 ? "" : "s");
			if (r->last_code != 0)
				printf(", last %u", (unsigned)r->last_code);
			if (r->state == RCPT_PENDING && r->next_try_us != 0) {
				fmt_time(r->next_try_us, 0, at, sizeof(at));
				printf(", next %s", at);
			}
			puts(")");
			/* The reason, as Postfix's mailq gives it. */
			if (m->reply != NULL && m->reply[i] != NULL &&
			    r->last_code >= 400) {
				fputs("        (", stdout);
				ctl_put_str(m->reply[i]);
				puts(")");
			}
		}
	}
	ls->messages++;
	ls->bytes += m->meta.msg_len;
	/* A closed pipe: stop reading the index. */
	return ferror(stdout) ? 1 : 0;
}

static int
list_one(void *arg, const struct queue_msg *orig)
{
	struct list_state *ls = arg;
	struct queue_msg copy;
	const struct queue_msg *m = &copy;
	int rc;

	assert(orig->env.nrcpt == orig->meta.nrcpt);
	/* Replies are read for the messages listed, not for every one the
	 * filter drops (a --reason filter needs them to decide). */
	if (ls->f->reason == NULL && !queue_filter_match(ls->f, orig))
		return 0;
	msg_with_replies(ls->qi, orig, &copy);
	rc = list_print(ls, m);
	free(copy.reply);
	return rc;
}

static int
cmd_queue_list(const struct config *cfg, int json,
    const struct queue_filter *f)
{
	struct list_state ls = { .json = json, .f = f };
	struct queue_index *qi;
	int rc, err;

	rc = open_index(cfg, &qi);
	if (rc != 0)
		return rc;
	ls.qi = qi;
	if (json)
		fputs("[\n", stdout);
	err = queue_index_foreach(qi, list_one, &ls);
	queue_index_close(qi);
	if (ls.oom) {
		ctl_err("out of memory");
		return EXIT_OPERATIONAL;
	}
	if (err < 0) {
		ctl_err("cannot read the queue: %s", queue_strerror(err));
		return EXIT_OPERATIONAL;
	}
	if (json)
		fputs(ls.messages > 0 ? "\n]\n" : "]\n", stdout);
	else
		printf("-- %" PRIu64 " messages, %" PRIu64 " bytes\n",
		    ls.messages, ls.bytes);
	return finish_output();
}

/* Length of the header section: up to (not including) the empty line. */
static size_t
header_len(const uint8_t *msg, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (msg[i] != '\n')
			continue;
		if (i + 1 < len && msg[i + 1] == '\n')
			return i + 1;
		if (i + 2 < len && msg[i + 1] == '\r' && msg[i + 2] == '\n')
			return i + 1;
	}
	/* A message that starts with the empty line has no headers. */
	if (len >= 2 && msg[0] == '\r' && msg[1] == '\n')
		return 0;
	return len;
}

static void
show_text(const struct queue_msg *m, const char *seg, const uint8_t *msg,
    size_t hlen)
{
	char id[QUEUE_ID_LEN + 1], at[40];

	queue_id_format(m->qid, id);
	fmt_time(m->env.arrival_us, 0, at, sizeof(at));
	printf("%-16s%s\n", "id:", id);
	printf("%-16s%s\n", "state:", msg_state_name(m->meta.state));
	printf("%-16s%s\n", "arrival:", at);
	printf("%-16s%" PRIu32 "\n", "size:", m->meta.msg_len);
	printf("%-16s<", "sender:");
	ctl_put_str(m->env.sender);
	printf(">\nrecipients:\n");
	for (unsigned i = 0; i < m->env.nrcpt; i++) {
		fputs("    ", stdout);
		ctl_put_str(m->env.rcpt[i]);
		printf(" (%s, %u attempts", rcpt_state_name(m->rcpt[i].state),
		    m->rcpt[i].attempts);
		if (m->rcpt[i].last_code != 0)
			printf(", last reply %" PRIu32, m->rcpt[i].last_code);
		fputs(")\n", stdout);
		if (m->reply != NULL && m->reply[i] != NULL &&
		    m->rcpt[i].last_code >= 400) {
			fputs("        (", stdout);
			ctl_put_str(m->reply[i]);
			fputs(")\n", stdout);
		}
	}
	printf("%-16s", "client address:");
	ctl_put_str(m->env.client_addr);
	printf("\n%-16s", "helo:");
	ctl_put_str(m->env.helo);
	printf("\n%-16s", "protocol:");
	ctl_put_str(m->env.protocol);
	printf("\n%-16s%s\n", "body type:", body_name(m->env.body));
	printf("%-16s%s\n", "smtputf8:", m->env.smtputf8 ? "yes" : "no");
	printf("%-16s%s offset %" PRIu64 "\n", "segment:", seg,
	    m->meta.offset);
	fputs("Headers:\n", stdout);
	put_safe((const char *)msg, hlen);
	if (hlen > 0 && msg[hlen - 1] != '\n')
		putchar('\n');
}

static int
show_json(const struct queue_msg *m, const char *seg, const uint8_t *msg,
    size_t hlen)
{
	json_t *o = json_message(m, 1);

	if (o == NULL ||
	    json_object_set_new(o, "protocol", ctl_json_str(m->env.protocol)) < 0 ||
	    json_object_set_new(o, "body_type",
	    json_string(body_name(m->env.body))) < 0 ||
	    json_object_set_new(o, "smtputf8",
	    json_boolean(m->env.smtputf8)) < 0 ||
	    json_object_set_new(o, "segment", json_string(seg)) < 0 ||
	    json_object_set_new(o, "offset",
	    json_integer((json_int_t)m->meta.offset)) < 0 ||
	    json_object_set_new(o, "headers",
	    json_bytes((const char *)msg, hlen)) < 0) {
		json_decref(o);
		ctl_err("out of memory");
		return EXIT_OPERATIONAL;
	}
	json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	putchar('\n');
	json_decref(o);
	return 0;
}

/*
 * Look a message up and read its record, verified. On success *m and *msg
 * belong to the caller (queue_msg_release, free); otherwise an exit code
 * is returned and the error has been printed.
 */
static int
load_verified(const struct config *cfg, const char *idtext,
    struct queue_msg *m, uint8_t **msg, size_t *len)
{
	struct queue_index *qi;
	char id[QUEUE_ID_LEN + 1];
	const char *reason = NULL;
	uint64_t qid;
	int rc, err;

	if (queue_id_parse(idtext, &qid) != 0)
		return ctl_usage_error("not a queue id: '%s'", idtext);
	rc = open_index(cfg, &qi);
	if (rc != 0)
		return rc;
	queue_id_format(qid, id);
	err = queue_index_get(qi, qid, m);
	if (err == 0)
		(void)queue_index_replies(qi, m);	/* shown when there */
	queue_index_close(qi);
	if (err == QUEUE_ENOTFOUND) {
		ctl_err("queue id %s not found", id);
		return EXIT_OPERATIONAL;
	}
	if (err != 0) {
		ctl_err("%s: cannot read the index entry: %s", id,
		    queue_strerror(err));
		return EXIT_OPERATIONAL;
	}
	/* Verify before printing anything, so output is all or nothing. */
	*msg = NULL;
	err = queue_read_verify(cfg->spool, m, msg, len, &reason);
	if (err == QUEUE_ECORRUPT || err == -ENOENT) {
		fprintf(stderr, "error: %s: record damaged: %s\n", id, reason);
		rc = EXIT_OPERATIONAL;
	} else if (err != 0) {
		ctl_err("%s: cannot read the record: %s", id,
		    queue_strerror(err));
		rc = EXIT_OPERATIONAL;
	}
	if (rc != 0) {
		free(*msg);
		*msg = NULL;
		queue_msg_release(m);
	}
	return rc;
}

static int
cmd_queue_show(const struct config *cfg, const char *idtext, int json)
{
	struct queue_msg m;
	char seg[SEG_PATH_MAX];
	uint8_t *msg;
	size_t len = 0;
	int rc;

	if ((rc = load_verified(cfg, idtext, &m, &msg, &len)) != 0)
		return rc;
	seg_path(m.meta.seg, seg, sizeof(seg));
	if (json)
		rc = show_json(&m, seg, msg, header_len(msg, len));
	else
		show_text(&m, seg, msg, header_len(msg, len));
	if (rc == 0)
		rc = finish_output();
	free(msg);
	queue_msg_release(&m);
	return rc;
}

/* The stored message, byte for byte, like postcat -b -h without labels. */
static int
cmd_queue_cat(const struct config *cfg, const char *idtext)
{
	struct queue_msg m;
	uint8_t *msg;
	size_t len = 0;
	int rc;

	if ((rc = load_verified(cfg, idtext, &m, &msg, &len)) != 0)
		return rc;
	if (len > 0 && fwrite(msg, 1, len, stdout) != len)
		rc = EXIT_OPERATIONAL;
	if (rc == 0)
		rc = finish_output();
	free(msg);
	queue_msg_release(&m);
	return rc;
}

/* ---- queue commands through the daemon ------------------------------ */

/*
 * Send "CMD [ID]" to the running daemon; its one-line answer goes to
 * reply. 0 when it answered (reply holds it); when no daemon listens
 * (*why says so), 1 if there is no socket at all (it stopped cleanly, or
 * never ran on this spool) and 2 if one was left behind (it was killed);
 * -1 on another error (*why).
 */
static int
control_ask(const struct config *cfg, const char *cmd, const char *id,
    char *reply, size_t replylen, char *why, size_t whylen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *line;
	size_t n = 0, len;
	ssize_t r;
	int fd, e;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path),
	    "%s/control.sock", cfg->spool) >= sizeof(sa.sun_path)) {
		snprintf(why, whylen, "spool path too long for the control "
		    "socket");
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		snprintf(why, whylen, "cannot reach sluiced at %s: %s (is it "
		    "running?)", sa.sun_path, strerror(e));
		if (fd >= 0)
			close(fd);
		return e == ENOENT ? 1 : e == ECONNREFUSED ? 2 : -1;
	}
	/* id may be many ids, up to CONTROL_IDS_MAX of them. */
	len = strlen(cmd) + (id ? 1 + strlen(id) : 0) + 1;
	if ((line = malloc(len + 1)) == NULL) {
		snprintf(why, whylen, "out of memory");
		close(fd);
		return -1;
	}
	snprintf(line, len + 1, "%s%s%s\n", cmd, id ? " " : "",
	    id ? id : "");
	for (size_t off = 0; off < len; off += (size_t)r) {
		if ((r = write(fd, line + off, len - off)) < 0) {
			snprintf(why, whylen, "control socket: %s",
			    strerror(errno));
			free(line);
			close(fd);
			return -1;
		}
	}
	free(line);
	while (n < replylen - 1 &&
	    (r = read(fd, reply + n, replylen - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	reply[n] = '\0';
	return 0;
}

/* Send "CMD [ID]" to the running daemon and print its one-line answer. */
static int
cmd_queue_control(const struct config *cfg, const char *cmd, const char *id)
{
	char line[512], why[512];
	size_t n;

	if (control_ask(cfg, cmd, id, line, sizeof(line), why,
	    sizeof(why)) != 0) {
		ctl_err("%s", why);
		return EXIT_OPERATIONAL;
	}
	n = strlen(line);
	if (strncmp(line, "ok ", 3) == 0) {
		fputs(line + 3, stdout);
		return finish_output();
	}
	ctl_err("%s", n > 6 && strncmp(line, "error ", 6) == 0 ?
	    strtok(line + 6, "\n") : "no answer from sluiced");
	return EXIT_OPERATIONAL;
}

/*
 * Before reading the index: when the daemon runs, have it index what it
 * has acknowledged (the index follows the segments by a few
 * milliseconds), so that the read sees every message that got its 250
 * before the command. Without a daemon the index is complete already.
 */
static void
index_sync(const struct config *cfg)
{
	char line[512], why[512];
	int rc = control_ask(cfg, "sync", NULL, line, sizeof(line), why,
	    sizeof(why));

	if (rc == 0 && strncmp(line, "ok ", 3) == 0)
		return;
	/* No socket: the index is complete. One left behind: the daemon
	 * was killed, and its last moments' messages are indexed when its
	 * next start replays them. */
	if (rc == 1)
		return;
	if (rc == 2) {
		fprintf(stderr, "sluicectl: warning: sluiced is not running "
		    "but did not stop cleanly: messages acknowledged in its "
		    "last moments are listed after its next start\n");
		return;
	}
	if (rc == 0)
		snprintf(why, sizeof(why), "%s", strncmp(line, "error ", 6) ==
		    0 ? strtok(line + 6, "\n") : "no answer from sluiced");
	fprintf(stderr, "sluicectl: warning: %s; the newest messages may be "
	    "missing\n", why);
}

/* ---- for the other files (sluicectl_int.h) ---------------------------- */

void
ctl_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ctl_verr(fmt, ap);
	va_end(ap);
}

int
ctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ctl_verr(fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

int
ctl_finish_output(void)
{
	return finish_output();
}

/* ---- main ------------------------------------------------------------- */

static int
load_config(struct config *cfg, const char *path, char **ov, size_t nov)
{
	fflush(stdout);
	if (config_load_report(cfg, path, ov, nov, environ, stderr) == 0)
		return 0;
	return EXIT_USAGE;
}

/* ---- bulk queue commands -------------------------------------------- */

/* A queue command's arguments: ids, filters and flags. */
struct qargs {
	const char *verb;	/* "list", "delete", ... */
	char **ids;
	size_t nids;
	struct queue_filter f;
	int json, yes, all;
};


/* More messages than this need --yes: a filter may say more than meant. */
#define BULK_CONFIRM 100

struct select_state {
	struct queue_index *qi;
	const struct queue_filter *f;
	const char *verb;
	uint64_t *qid;
	size_t n, cap;
	int oom;
};

static int
select_one(void *arg, const struct queue_msg *m)
{
	struct select_state *ss = arg;
	bool held = m->meta.state == MSG_HOLD, match;

	if (ss->f->reason != NULL) {
		struct queue_msg copy;

		msg_with_replies(ss->qi, m, &copy);
		match = queue_filter_match(ss->f, &copy);
		free(copy.reply);
	} else {
		match = queue_filter_match(ss->f, m);
	}
	if (!match)
		return 0;
	/* Only what the verb can act on: held ones are released, the
	 * others flushed or bounced. */
	if (strcmp(ss->verb, "release") == 0 ? !held :
	    (strcmp(ss->verb, "flush") == 0 ||
	    strcmp(ss->verb, "bounce") == 0) && held)
		return 0;
	if (ss->n == ss->cap) {
		size_t cap = ss->cap ? ss->cap * 2 : 1024;
		uint64_t *q = realloc(ss->qid, cap * sizeof(*q));

		if (q == NULL) {
			ss->oom = 1;
			return 1;
		}
		ss->qid = q;
		ss->cap = cap;
	}
	ss->qid[ss->n++] = m->qid;
	return 0;
}

/* "deleted", "held", ...: what the summary line says was done. */
static const char *
verb_done(const char *verb)
{
	static const char *const done[][2] = {
		{ "delete", "deleted" }, { "hold", "held" },
		{ "release", "released" }, { "bounce", "bounced" },
		{ "flush", "flushed" },
	};

	for (size_t i = 0; i < sizeof(done) / sizeof(done[0]); i++)
		if (strcmp(verb, done[i][0]) == 0)
			return done[i][1];
	return verb;
}

/*
 * The verb on many messages: those named, or those the filters select
 * (read after the daemon indexed what it acknowledged), sent to the daemon
 * CONTROL_IDS_MAX at a time. Prints one summary line.
 */
static int
cmd_queue_bulk(const struct config *cfg, const struct qargs *q)
{
	struct select_state ss = { .f = &q->f, .verb = q->verb };
	unsigned long long done = 0, gone = 0, refused = 0, late = 0;
	static char line[CONTROL_LINE_MAX];
	char reply[512], why[512];
	int rc = 0;

	if (q->nids > 0) {
		ss.qid = calloc(q->nids, sizeof(*ss.qid));
		if (ss.qid == NULL) {
			ctl_err("out of memory");
			return EXIT_OPERATIONAL;
		}
		for (size_t i = 0; i < q->nids; i++)
			(void)queue_id_parse(q->ids[i], &ss.qid[ss.n++]);
	} else {
		struct queue_index *qi;

		index_sync(cfg);
		if ((rc = open_index(cfg, &qi)) != 0)
			return rc;
		ss.qi = qi;
		rc = queue_index_foreach(qi, select_one, &ss);
		queue_index_close(qi);
		if (ss.oom || rc < 0) {
			ctl_err("%s", ss.oom ? "out of memory" :
			    queue_strerror(rc));
			free(ss.qid);
			return EXIT_OPERATIONAL;
		}
	}
	if (ss.n > BULK_CONFIRM && !q->yes) {
		ctl_err("%zu messages match: add --yes to %s them", ss.n,
		    q->verb);
		free(ss.qid);
		return EXIT_OPERATIONAL;
	}
	for (size_t at = 0; at < ss.n && rc == 0; at += CONTROL_IDS_MAX) {
		size_t end = ss.n - at < CONTROL_IDS_MAX ? ss.n : at +
		    CONTROL_IDS_MAX, len = 0;
		unsigned long long d, g, r, l;
		char verb[16];

		for (size_t i = at; i < end; i++) {
			char id[QUEUE_ID_LEN + 1];

			queue_id_format(ss.qid[i], id);
			len += (size_t)snprintf(line + len, sizeof(line) - len,
			    "%s%s", i > at ? " " : "", id);
		}
		if (control_ask(cfg, q->verb, line, reply, sizeof(reply), why,
		    sizeof(why)) != 0) {
			ctl_err("%s", why);
			rc = EXIT_OPERATIONAL;
			break;
		}
		if (end - at == 1) {
			/* One id: the daemon's answer names it. */
			if (strncmp(reply, "ok ", 3) == 0) {
				done++;
			} else if (strstr(reply,
			    queue_strerror(QUEUE_ENOTFOUND)) != NULL) {
				gone++;
			} else if (strstr(reply, CONTROL_NOT_HELD) != NULL ||
			    strstr(reply, CONTROL_HELD) != NULL) {
				refused++;
			} else {
				ctl_err("%s", strtok(reply, "\n"));
				late++;
			}
			continue;
		}
		if (sscanf(reply, "%*s %15s %llu %llu %llu %llu", verb, &d, &g,
		    &r, &l) != 5 || strcmp(verb, q->verb) != 0) {
			ctl_err("%s", strncmp(reply, "error ", 6) == 0 ?
			    strtok(reply + 6, "\n") : "no answer from sluiced");
			rc = EXIT_OPERATIONAL;
			break;
		}
		done += d;
		gone += g;
		refused += r;
		late += l;
	}
	free(ss.qid);
	if (rc != 0)
		return rc;
	printf("%s %llu message(s)", verb_done(q->verb), done);
	if (gone > 0)
		printf(", %llu no longer queued", gone);
	if (refused > 0)
		printf(", %llu refused (%s)", refused,
		    strcmp(q->verb, "release") == 0 ? "not on hold" :
		    "on hold: release them first");
	if (late > 0)
		printf(", %llu not done in time", late);
	putchar('\n');
	rc = finish_output();
	return rc != 0 ? rc : late > 0 ? EXIT_OPERATIONAL : 0;
}

/* Which command; checked before the config loads so usage errors win. */
enum ctl_cmd {
	CMD_CHECK,
	CMD_QUEUE_COUNT,
	CMD_QUEUE_LIST,
	CMD_QUEUE_SHOW,
	CMD_QUEUE_CAT,
	CMD_QUEUE_CONTROL,	/* flush, delete, hold, release, bounce */
};

/* "90", "30s", "15m", "2h", "3d", "1w": seconds in *out; 0 or -1. */
static int
parse_age(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long n;
	uint64_t mult = 1;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	if (strcmp(end, "m") == 0)
		mult = 60;
	else if (strcmp(end, "h") == 0)
		mult = 3600;
	else if (strcmp(end, "d") == 0)
		mult = 86400;
	else if (strcmp(end, "w") == 0)
		mult = 7 * 86400;
	else if (end[0] != '\0' && strcmp(end, "s") != 0)
		return -1;
	if (n > UINT64_MAX / mult / 1000000)
		return -1;
	*out = n * mult;
	return 0;
}

/* A usage error in a filter option: reported; -1. */
static int __attribute__((format(printf, 1, 2)))
bad_filter(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ctl_verr(fmt, ap);
	va_end(ap);
	fputs(usage_text, stderr);
	return -1;
}

/*
 * The filter option at argv[*i] and its value: 1 when taken, 0 when
 * argv[*i] is not a filter, -1 on a usage error (reported).
 */
static int
parse_filter(int argc, char **argv, int *i, struct qargs *q)
{
	const char *opt = argv[*i], *val;
	uint64_t age;
	char *end;

	if (strcmp(opt, "--from") != 0 && strcmp(opt, "--to") != 0 &&
	    strcmp(opt, "--domain") != 0 && strcmp(opt, "--status") != 0 &&
	    strcmp(opt, "--older-than") != 0 && strcmp(opt, "--code") != 0 &&
	    strcmp(opt, "--reason") != 0)
		return 0;
	if (*i + 1 >= argc)
		return bad_filter("%s needs a value", opt);
	val = argv[++*i];
	if (strcmp(opt, "--from") == 0) {
		q->f.from = val;
	} else if (strcmp(opt, "--to") == 0) {
		q->f.to = val;
	} else if (strcmp(opt, "--domain") == 0) {
		if (val[0] == '\0' || strchr(val + (val[0] == '@'), '@'))
			return bad_filter("--domain: not a domain '%s'", val);
		q->f.domain = val;
	} else if (strcmp(opt, "--reason") == 0) {
		if (val[0] == '\0')
			return bad_filter("--reason: some text of the reply, "
			    "like greylist");
		q->f.reason = val;
	} else if (strcmp(opt, "--status") == 0) {
		if (queue_filter_status_parse(val, &q->f.status) != 0)
			return bad_filter("--status: queued, deferred or "
			    "held, not '%s'", val);
	} else if (strcmp(opt, "--older-than") == 0) {
		if (parse_age(val, &age) != 0)
			return bad_filter("--older-than: an age like 30m, "
			    "2h or 3d, not '%s'", val);
		q->f.before_us = clock_real_us() - age * 1000000;
		if (q->f.before_us == 0)
			q->f.before_us = 1;
	} else {
		unsigned long c = strtoul(val, &end, 10);

		if (*end != '\0' || !((c >= 4 && c <= 5) ||
		    (c >= 200 && c <= 599)))
			return bad_filter("--code: a reply code (421) or "
			    "class (4, 5), not '%s'", val);
		q->f.code = (unsigned)c;
	}
	return 1;
}

static int
parse_command(int argc, char **argv, enum ctl_cmd *cmd, struct qargs *q)
{
	int rc;

	memset(q, 0, sizeof(*q));
	q->ids = calloc((size_t)argc + 1, sizeof(*q->ids));
	if (q->ids == NULL) {
		ctl_err("out of memory");
		return EXIT_OPERATIONAL;
	}
	if (strcmp(argv[0], "check") == 0) {
		if (argc != 1)
			return ctl_usage_error("check takes no arguments");
		*cmd = CMD_CHECK;
		return 0;
	}
	/* "flush --domain D": Postfix's postqueue -s, one destination. */
	if (strcmp(argv[0], "flush") == 0) {
		argv--;
		argc++;
	} else if (strcmp(argv[0], "queue") != 0) {
		return ctl_usage_error("unknown command '%s'", argv[0]);
	}
	if (argc < 2)
		return ctl_usage_error("queue needs a subcommand");
	q->verb = argv[1];
	for (int i = 2; i < argc; i++) {
		if ((rc = parse_filter(argc, argv, &i, q)) < 0)
			return EXIT_USAGE;
		if (rc > 0)
			continue;
		if (strcmp(argv[i], "--json") == 0)
			q->json = 1;
		else if (strcmp(argv[i], "--yes") == 0)
			q->yes = 1;
		else if (strcmp(argv[i], "--all") == 0)
			q->all = 1;
		else if (argv[i][0] != '-')
			q->ids[q->nids++] = argv[i];
		else
			return ctl_usage_error("unexpected argument '%s'",
			    argv[i]);
	}
	bool filtered = !queue_filter_empty(&q->f) || q->all;
	bool one = q->nids == 1 && !filtered && !q->yes;

	if (strcmp(q->verb, "count") == 0 && q->nids == 0 && !filtered &&
	    !q->json)
		*cmd = CMD_QUEUE_COUNT;
	else if (strcmp(q->verb, "list") == 0 && q->nids == 0 && !q->all)
		*cmd = CMD_QUEUE_LIST;
	else if (strcmp(q->verb, "show") == 0 && one)
		*cmd = CMD_QUEUE_SHOW;
	else if (strcmp(q->verb, "cat") == 0 && one && !q->json)
		*cmd = CMD_QUEUE_CAT;
	else if ((strcmp(q->verb, "flush") == 0 ||
	    strcmp(q->verb, "delete") == 0 || strcmp(q->verb, "hold") == 0 ||
	    strcmp(q->verb, "release") == 0 ||
	    strcmp(q->verb, "bounce") == 0) && !q->json) {
		if (q->nids > 0 && filtered)
			return ctl_usage_error("queue %s: give queue ids or "
			    "filters, not both", q->verb);
		if (q->nids == 0 && !filtered &&
		    strcmp(q->verb, "flush") != 0)
			return ctl_usage_error("queue %s: which messages? give "
			    "queue ids, filters, or --all", q->verb);
		*cmd = CMD_QUEUE_CONTROL;
	} else {
		return ctl_usage_error("bad queue command '%s'", q->verb);
	}
	for (size_t i = 0; i < q->nids; i++) {
		uint64_t qid;

		if (queue_id_parse(q->ids[i], &qid) != 0 && *cmd !=
		    CMD_QUEUE_SHOW && *cmd != CMD_QUEUE_CAT &&
		    !(one && *cmd == CMD_QUEUE_CONTROL))
			return ctl_usage_error("not a queue id: '%s'", q->ids[i]);
	}
	return 0;
}

/*
 * Commands that parse their own arguments: with a configuration (run),
 * or without one (bare).
 */
static const struct {
	const char *name;
	int (*run)(const struct config *cfg, int argc, char **argv);
	int (*bare)(int argc, char **argv);
} own_args[] = {
	{ "hash-password", NULL, ctl_hash_password },
	{ "dkim-keygen", NULL, ctl_dkim_keygen },
	{ "status", ctl_status, NULL },
	{ "reload", ctl_reload, NULL },
	{ "resolve", ctl_resolve, NULL },
	{ "dkim-check", ctl_dkim_check, NULL },
};

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct config cfg;
	const char *path = NULL;
	struct qargs q = { 0 };
	char **ov;
	size_t nov = 0;
	enum ctl_cmd cmd = CMD_CHECK;
	int c, rc;

	ov = calloc((size_t)argc + 1, sizeof(*ov));
	if (ov == NULL) {
		ctl_err("out of memory");
		return EXIT_OPERATIONAL;
	}
	opterr = 0;
	/* "+": options end at the command, whose own flags come after it. */
	while ((c = getopt_long(argc, argv, "+c:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'o':
			ov[nov++] = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			free(ov);
			return finish_output();
		case 'V':
			printf("sluicectl %s\n", SLUICE_VERSION);
			free(ov);
			return finish_output();
		case '?':
			free(ov);
			if (optopt == 'c' || optopt == 'o')
				return ctl_usage_error("option -%c needs an "
				    "argument", optopt);
			if (optopt != 0)
				return ctl_usage_error("unknown option -%c",
				    optopt);
			return ctl_usage_error("unknown option %s",
			    argv[optind - 1]);
		default:
			assert(!"getopt returned an undeclared option");
			abort();
		}
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		free(ov);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(own_args) / sizeof(own_args[0]); i++) {
		if (strcmp(argv[optind], own_args[i].name) != 0)
			continue;
		/* Those without a configuration run anywhere, even without
		 * one. */
		if (own_args[i].bare != NULL) {
			free(ov);
			return own_args[i].bare(argc - optind, argv + optind);
		}
		rc = load_config(&cfg, path, ov, nov);
		free(ov);
		if (rc != 0)
			return rc;
		rc = own_args[i].run(&cfg, argc - optind, argv + optind);
		config_free(&cfg);
		return rc;
	}
	rc = parse_command(argc - optind, argv + optind, &cmd, &q);
	if (rc == 0)
		rc = load_config(&cfg, path, ov, nov);
	free(ov);
	if (rc != 0) {
		free(q.ids);
		return rc;
	}
	switch (cmd) {
	case CMD_CHECK:
		puts("configuration OK");
		rc = finish_output();
		break;
	case CMD_QUEUE_COUNT:
		index_sync(&cfg);
		rc = cmd_queue_count(&cfg);
		break;
	case CMD_QUEUE_LIST:
		index_sync(&cfg);
		rc = cmd_queue_list(&cfg, q.json, &q.f);
		break;
	case CMD_QUEUE_SHOW:
		index_sync(&cfg);
		rc = cmd_queue_show(&cfg, q.ids[0], q.json);
		break;
	case CMD_QUEUE_CAT:
		index_sync(&cfg);
		rc = cmd_queue_cat(&cfg, q.ids[0]);
		break;
	case CMD_QUEUE_CONTROL:
		/* One id, or flush of everything: the daemon's own answer. */
		if ((q.nids == 1 && queue_filter_empty(&q.f) && !q.all &&
		    !q.yes) || (q.nids == 0 && queue_filter_empty(&q.f) &&
		    !q.all))
			rc = cmd_queue_control(&cfg, q.verb,
			    q.nids ? q.ids[0] : NULL);
		else
			rc = cmd_queue_bulk(&cfg, &q);
		break;
	default:
		ctl_err("bad command %d", (int)cmd);
		abort();
	}
	config_free(&cfg);
	free(q.ids);
	return rc;
}

