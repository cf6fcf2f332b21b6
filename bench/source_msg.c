/*
 * source_msg.c - what `sluice-bench source` sends as message content: the
 * generated body (built once, sent by reference), the --corpus files
 * (loaded and converted to wire form once), and the per-message header
 * composed for each transaction (X-Sluice-Bench first, bench_common.h).
 *
 * Set-up errors come back as a line in why; nothing here runs per message
 * but src_out_header(), which neither allocates nor fails.
 */
#include "source_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/clock.h"
#include "bench_common.h"

/*
 * A body of len bytes: lines of at most 76 printable characters and CRLF.
 * No line starts with a dot, so it needs no stuffing. A remainder too short
 * for a line is avoided by shortening the line before it.
 */
static char *
body_make(size_t len, size_t *outlen)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	const size_t na = sizeof(alphabet) - 1;
	size_t left = len, w, rem, i, line = 0;
	char *b, *p;

	b = malloc(len + 1);
	if (b == NULL)
		return NULL;
	p = b;
	while (left >= 3) {
		w = left - 2 > 76 ? 76 : left - 2;
		rem = left - (w + 2);
		if (rem == 1 || rem == 2)
			w -= 3 - rem;
		for (i = 0; i < w; i++)
			p[i] = alphabet[(line + i) % na];
		p[w] = '\r';
		p[w + 1] = '\n';
		p += w + 2;
		left -= w + 2;
		line++;
	}
	if (left == 2) {
		memcpy(p, "\r\n", 2);
		p += 2;
	}
	*outlen = (size_t)(p - b);
	return b;
}

/*
 * One corpus file as it goes on the wire: bare LF becomes CRLF, a line
 * starting with a dot gets another (RFC 5321 4.5.2), and the last line
 * ends with CRLF. Other bytes go as they are.
 */
static int
corpus_convert(const char *in, size_t n, struct src_corpus_msg *m)
{
	size_t i, len = 0;
	bool bol = true;
	char *out;

	/* Worst case: every byte a "\n" or a leading ".", doubled. */
	out = malloc(2 * n + 3);
	if (out == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (bol && in[i] == '.')
			out[len++] = '.';
		bol = false;
		if (in[i] == '\n') {
			if (len == 0 || out[len - 1] != '\r')
				out[len++] = '\r';
			bol = true;
		}
		out[len++] = in[i];
	}
	if (len > 0 && !bol) {
		out[len++] = '\r';
		out[len++] = '\n';
	}
	m->data = out;
	m->len = len;
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Load every regular file in dir, in name order. 0, or -1 with why. */
int
src_corpus_load(struct src *s, const char *dir, char *why, size_t whylen)
{
	char **names = NULL, path[4096];
	size_t nnames = 0, cap = 0, total = 0, i;
	struct dirent *de;
	struct stat sb;
	DIR *d = NULL;
	char *data = NULL;
	int fd = -1, rc = -1;
	ssize_t r;

	d = opendir(dir);
	if (d == NULL) {
		snprintf(why, whylen, "--corpus %s: %s", dir, strerror(errno));
		goto fail;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' && (de->d_name[1] == '\0' ||
		    (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
			continue;
		if (nnames == SRC_CORPUS_FILES_MAX) {
			snprintf(why, whylen, "--corpus %s: more than %d "
			    "files", dir, SRC_CORPUS_FILES_MAX);
			goto fail;
		}
		if (nnames == cap) {
			char **nn;

			cap = cap ? cap * 2 : 64;
			nn = realloc(names, cap * sizeof(*names));
			if (nn == NULL)
				goto nomem;
			names = nn;
		}
		if ((names[nnames] = strdup(de->d_name)) == NULL)
			goto nomem;
		nnames++;
	}
	if (nnames == 0) {
		snprintf(why, whylen, "--corpus %s: no regular file in it",
		    dir);
		goto fail;
	}
	qsort(names, nnames, sizeof(*names), name_cmp);
	s->corpus = calloc(nnames, sizeof(*s->corpus));
	if (s->corpus == NULL)
		goto nomem;
	for (i = 0; i < nnames; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &sb) < 0) {
			snprintf(why, whylen, "%.200s: %s", path,
			    strerror(errno));
			goto fail;
		}
		if ((uint64_t)sb.st_size > SRC_CORPUS_BYTES_MAX - total) {
			snprintf(why, whylen, "--corpus %s: more than 1 GiB",
			    dir);
			goto fail;
		}
		data = malloc((size_t)sb.st_size + 1);
		if (data == NULL)
			goto nomem;
		r = read(fd, data, (size_t)sb.st_size);
		if (r != (ssize_t)sb.st_size) {
			snprintf(why, whylen, "%.200s: short read", path);
			goto fail;
		}
		close(fd);
		fd = -1;
		if (corpus_convert(data, (size_t)r, &s->corpus[i]) < 0)
			goto nomem;
		free(data);
		data = NULL;
		s->ncorpus++;
		total += s->corpus[i].len;
	}
	rc = 0;
	goto done;
nomem:
	snprintf(why, whylen, "--corpus %s: out of memory", dir);
fail:
	rc = -1;
done:
	if (fd >= 0)
		close(fd);
	free(data);
	for (i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	if (d != NULL)
		closedir(d);
	return rc;
}

/* The Date: value for this second (RFC 5322 3.3), cached per second. */
static const char *
date_now(struct src *s, uint64_t real_us)
{
	time_t sec = (time_t)(real_us / 1000000u);
	struct tm tm;

	if ((uint64_t)sec != s->date_sec) {
		gmtime_r(&sec, &tm);
		strftime(s->date, sizeof(s->date),
		    "%a, %d %b %Y %H:%M:%S +0000", &tm);
		s->date_sec = (uint64_t)sec;
	}
	return s->date;
}

/* "<run>SEP<conn>SEP<seq>": the message's identity, as both headers show it. */
static void
out_ident(struct src_out *o, const struct src *s, const struct src_conn *c,
    const struct src_txn *t, const char *sep)
{
	src_out_bytes(o, s->run_id, 8);
	src_out_str(o, sep);
	src_out_u64(o, c->serial);
	src_out_str(o, sep);
	src_out_u64(o, t->seq);
}

/*
 * The per-message header: X-Sluice-Bench first (bench_common.h), then, for
 * generated messages, Date, From, To, Subject, Message-ID and the empty
 * line. A corpus file brings its own header section.
 */
void
src_out_header(struct src *s, struct src_conn *c, const struct src_txn *t,
    struct src_out *o)
{
	uint64_t sent_real = (uint64_t)((int64_t)t->start_us + s->real_off);
	char *p;
	size_t n;

	SRC_OUT_LIT(o, BENCH_HEADER ": id=");
	out_ident(o, s, c, t, "-");
	SRC_OUT_LIT(o, "; sent=");
	src_out_u64(o, sent_real);
	SRC_OUT_LIT(o, "\r\n");
	if (s->corpus != NULL)
		return;
	SRC_OUT_LIT(o, "Date: ");
	src_out_str(o, date_now(s, sent_real));
	SRC_OUT_LIT(o, "\r\n");
	src_out_str(o, s->from_hdr);
	SRC_OUT_LIT(o, "To: ");
	p = src_out_room(o, SRC_ADDR_MAX + 1);
	n = bench_source_rcpt(s->o, t->rcpt_first, p, SRC_ADDR_MAX + 1);
	src_out_commit(o, n);
	SRC_OUT_LIT(o, "\r\nSubject: sluice-bench message ");
	src_out_u64(o, t->seq);
	SRC_OUT_LIT(o, "\r\nMessage-ID: <");
	out_ident(o, s, c, t, ".");
	SRC_OUT_LIT(o, "@sluice-bench.invalid>\r\n\r\n");
}

/*
 * The generated body: --size less the header of a typical message, so
 * that messages come out at --size bytes give or take the few digits by
 * which counters grow.
 */
int
src_body_setup(struct src *s, char *why, size_t whylen)
{
	struct src_conn c;
	struct src_txn t;
	struct src_out o;
	char head[SRC_HEAD_BASE + 2 * SRC_ADDR_MAX];
	size_t body;

	memset(&c, 0, sizeof(c));
	memset(&t, 0, sizeof(t));
	memset(&o, 0, sizeof(o));
	o.head = head;
	o.cap = sizeof(head);
	c.serial = s->o->connections;
	t.seq = s->o->messages ? s->o->messages / 2 : 100000;
	t.start_us = clock_mono_us();
	src_out_header(s, &c, &t, &o);
	body = s->o->size > o.len ? (size_t)(s->o->size - o.len) : 0;
	s->body = body_make(body, &s->body_len);
	if (s->body == NULL) {
		snprintf(why, whylen, "out of memory for a %zu-byte body",
		    body);
		return -1;
	}
	return 0;
}
