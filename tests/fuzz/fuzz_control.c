/*
 * fuzz_control.c - libFuzzer target: arbitrary bytes as a control socket
 * request for engine/control_parse.c.
 *
 * Description: the whole input is the request, as the control thread's
 * read returns it (up to CONTROL_LINE_MAX bytes, any bytes). Properties
 * checked beyond "no crash":
 * - the result is all-or-nothing: 0 with a known verb and an argument
 *   exactly when the verb takes one, or -EINVAL with cmd all-zero;
 * - the reason of a refusal is one line of printable ASCII, never empty,
 *   within the caller's buffer even when that buffer is tiny;
 * - an accepted request means what it says: written back in canonical
 *   form ("verb ID\n", the id through queue_id_format()) it parses to the
 *   same command, and the id as written parses to the same number;
 * - bytes after the first LF never change the outcome.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../engine/control_parse.h"

static void
check_why(const char *why, size_t cap)
{
	size_t n = strnlen(why, cap);

	assert(n < cap);
	assert(n > 0 || cap == 1);
	for (size_t i = 0; i < n; i++)
		assert((unsigned char)why[i] >= 0x20 &&
		    (unsigned char)why[i] <= 0x7e);
}

static void
check_same(const struct control_cmd *a, const struct control_cmd *b)
{
	assert(a->verb == b->verb);
	assert(a->nqid == b->nqid);
	assert(memcmp(a->qid, b->qid, a->nqid * sizeof(a->qid[0])) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	static struct control_cmd cmd, again;
	static char canon[CONTROL_LINE_MAX];
	char why[128], tiny[1 + (size & 7)];
	const char *lf;
	int rc, n;

	if (size > CONTROL_LINE_MAX)
		size = CONTROL_LINE_MAX;
	rc = control_parse(line, size, &cmd, why, sizeof(why));
	assert(rc == 0 || rc == -EINVAL);
	/* The same verdict and a bounded reason with a small buffer. */
	assert(control_parse(line, size, &again, tiny, sizeof(tiny)) == rc);
	if (rc != 0) {
		assert(cmd.verb == 0 && cmd.nqid == 0 && cmd.arg[0] == '\0');
		check_why(why, sizeof(why));
		check_why(tiny, sizeof(tiny));
	} else {
		assert(control_verb_name(cmd.verb) != NULL);
		check_same(&cmd, &again);
		assert(cmd.nqid <= CONTROL_IDS_MAX);
		assert(!control_verb_takes_id(cmd.verb) || cmd.nqid > 0);
		n = snprintf(canon, sizeof(canon), "%s",
		    control_verb_name(cmd.verb));
		if (cmd.nqid > 0) {
			uint64_t qid;

			assert(strlen(cmd.arg) == QUEUE_ID_LEN);
			assert(queue_id_parse(cmd.arg, &qid) == 0);
			assert(qid == cmd.qid[0]);
		} else {
			assert(cmd.arg[0] == '\0');
		}
		for (unsigned i = 0; i < cmd.nqid; i++) {
			char id[QUEUE_ID_LEN + 1];

			queue_id_format(cmd.qid[i], id);
			n += snprintf(canon + n, sizeof(canon) - (size_t)n,
			    " %s", id);
		}
		n += snprintf(canon + n, sizeof(canon) - (size_t)n, "\n");
		assert(n > 0 && (size_t)n < sizeof(canon));
		assert(control_parse(canon, (size_t)n, &again, why,
		    sizeof(why)) == 0);
		check_same(&cmd, &again);
	}
	/* What follows the first LF does not count. */
	if ((lf = memchr(line, '\n', size)) != NULL) {
		size_t head = (size_t)(lf - line) + 1;

		assert(control_parse(line, head, &again, why,
		    sizeof(why)) == rc);
		if (rc == 0)
			check_same(&cmd, &again);
	}
	return 0;
}
