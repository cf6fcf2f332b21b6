/*
 * control_parse.c - the control socket's request line; see
 * control_parse.h.
 *
 * The line is split into words in place of strtok() on a copy: the input
 * is a byte range that may hold NUL, and a word is only ever a pointer
 * and a length into it, so nothing here can read past len.
 */
#include "control_parse.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CONTROL_WORDS_MAX	(CONTROL_IDS_MAX + 2)	/* one too many */

static const struct {
	const char *name;
	enum control_verb verb;
	unsigned min_ids, max_ids;
} verbs[] = {
	{ "sync", CONTROL_SYNC, 0, 0 },
	{ "flush", CONTROL_FLUSH, 0, CONTROL_IDS_MAX },
	{ "delete", CONTROL_DELETE, 1, CONTROL_IDS_MAX },
	{ "hold", CONTROL_HOLD, 1, CONTROL_IDS_MAX },
	{ "release", CONTROL_RELEASE, 1, CONTROL_IDS_MAX },
	{ "bounce", CONTROL_BOUNCE, 1, CONTROL_IDS_MAX },
	{ "status", CONTROL_STATUS, 0, 0 },
	{ "reload", CONTROL_RELOAD, 0, 0 },
};

#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

const char *
control_verb_name(enum control_verb verb)
{
	for (size_t i = 0; i < NVERBS; i++)
		if (verbs[i].verb == verb)
			return verbs[i].name;
	return NULL;
}

bool
control_verb_takes_id(enum control_verb verb)
{
	for (size_t i = 0; i < NVERBS; i++)
		if (verbs[i].verb == verb)
			return verbs[i].min_ids > 0;
	return false;
}

static void __attribute__((format(printf, 3, 4)))
set_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Safe to quote back on the reply line: short, printable ASCII. */
static bool
echoable(const char *s, size_t n)
{
	if (n == 0 || n > CONTROL_ECHO_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e ||
		    s[i] == '\'')
			return false;
	return true;
}

static void
usage(char *why, size_t whylen)
{
	set_why(why, whylen, "usage: sync | status | flush [QUEUE-ID...] | "
	    "delete|hold|release|bounce QUEUE-ID...");
}

int
control_parse(const char *line, size_t len, struct control_cmd *cmd,
    char *why, size_t whylen)
{
	const char *word[CONTROL_WORDS_MAX];
	size_t wlen[CONTROL_WORDS_MAX], nword = 0, i = 0, v;
	const char *lf;
	char id[QUEUE_ID_LEN + 1];

	assert(cmd != NULL);
	assert(line != NULL || len == 0);
	memset(cmd, 0, sizeof(*cmd));
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (len > 0 && (lf = memchr(line, '\n', len)) != NULL)
		len = (size_t)(lf - line);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > 0 && memchr(line, '\0', len) != NULL) {
		set_why(why, whylen, "NUL byte in the command");
		return -EINVAL;
	}
	while (i < len) {
		size_t start;

		while (i < len && is_blank(line[i]))
			i++;
		if (i == len)
			break;
		if (nword == CONTROL_WORDS_MAX) {
			nword++;	/* too many: counted, not kept */
			break;
		}
		start = i;
		while (i < len && !is_blank(line[i]))
			i++;
		word[nword] = line + start;
		wlen[nword++] = i - start;
	}
	if (nword == 0) {
		set_why(why, whylen, "empty command");
		return -EINVAL;
	}
	for (v = 0; v < NVERBS; v++)
		if (strlen(verbs[v].name) == wlen[0] &&
		    memcmp(verbs[v].name, word[0], wlen[0]) == 0)
			break;
	if (v == NVERBS) {
		if (echoable(word[0], wlen[0]))
			set_why(why, whylen, "unknown command '%.*s'",
			    (int)wlen[0], word[0]);
		else
			set_why(why, whylen, "unknown command");
		return -EINVAL;
	}
	if (nword - 1 < verbs[v].min_ids || nword - 1 > verbs[v].max_ids) {
		usage(why, whylen);
		return -EINVAL;
	}
	for (size_t w = 1; w < nword; w++) {
		if (wlen[w] != QUEUE_ID_LEN) {
			memset(cmd, 0, sizeof(*cmd));
			usage(why, whylen);
			return -EINVAL;
		}
		memcpy(id, word[w], QUEUE_ID_LEN);
		id[QUEUE_ID_LEN] = '\0';
		if (queue_id_parse(id, &cmd->qid[cmd->nqid]) != 0) {
			memset(cmd, 0, sizeof(*cmd));
			usage(why, whylen);
			return -EINVAL;
		}
		if (cmd->nqid++ == 0)
			memcpy(cmd->arg, id, sizeof(id));
	}
	cmd->verb = verbs[v].verb;
	return 0;
}
