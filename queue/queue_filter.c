/*
 * queue_filter.c - operators' selections of queued messages; see
 * queue_filter.h.
 */
#include <string.h>
#include <strings.h>

#include "queue_filter.h"

int
queue_filter_status_parse(const char *s, enum queue_filter_status *out)
{
	static const struct {
		const char *name;
		enum queue_filter_status st;
	} names[] = {
		{ "queued", QUEUE_FILTER_QUEUED },
		{ "active", QUEUE_FILTER_QUEUED },
		{ "deferred", QUEUE_FILTER_DEFERRED },
		{ "held", QUEUE_FILTER_HELD },
		{ "hold", QUEUE_FILTER_HELD },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0) {
			*out = names[i].st;
			return 0;
		}
	return -1;
}

bool
queue_filter_empty(const struct queue_filter *f)
{
	return f->from == NULL && f->to == NULL && f->domain == NULL &&
	    f->status == QUEUE_FILTER_ANY && f->before_us == 0 &&
	    f->code == 0 && f->reason == NULL;
}

/*
 * addr against a pattern: "@domain" matches every address in the domain
 * (the part after the last '@'), anything else the whole address.
 */
static bool
addr_match(const char *pat, const char *addr)
{
	if (pat[0] == '@') {
		const char *at = strrchr(addr, '@');

		return at != NULL && strcasecmp(at, pat) == 0;
	}
	return strcasecmp(pat, addr) == 0;
}

static bool
domain_match(const char *domain, const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (domain[0] == '@')
		domain++;
	return at != NULL && strcasecmp(at + 1, domain) == 0;
}

static bool
code_match(unsigned want, uint32_t got)
{
	if (got == 0)
		return false;
	return want < 10 ? got / 100 == want : got == want;
}

/* Does hay contain needle, ASCII letters without regard to case? */
static bool
contains_nocase(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	if (n == 0)
		return true;
	for (; *hay != '\0'; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return true;
	return false;
}

static bool
reason_match(const char *want, const struct queue_msg *m)
{
	if (m->reply == NULL)
		return false;
	for (unsigned i = 0; i < m->meta.nrcpt; i++)
		if (m->rcpt[i].last_code >= 400 && m->reply[i] != NULL &&
		    contains_nocase(m->reply[i], want))
			return true;
	return false;
}

bool
queue_filter_match(const struct queue_filter *f, const struct queue_msg *m)
{
	bool held = m->meta.state == MSG_HOLD, tried = false;
	bool to_ok = f->to == NULL, dom_ok = f->domain == NULL;
	bool code_ok = f->code == 0;

	if (f->from != NULL) {
		if (strcmp(f->from, "<>") == 0 ? m->env.sender[0] != '\0' :
		    !addr_match(f->from, m->env.sender))
			return false;
	}
	if (f->before_us != 0 && m->env.arrival_us >= f->before_us)
		return false;
	for (unsigned i = 0; i < m->env.nrcpt && i < m->meta.nrcpt; i++) {
		const struct rcpt_meta *r = &m->rcpt[i];

		if (r->state != RCPT_PENDING)
			continue;
		tried = tried || r->attempts > 0;
		to_ok = to_ok || addr_match(f->to, m->env.rcpt[i]);
		dom_ok = dom_ok || domain_match(f->domain, m->env.rcpt[i]);
		code_ok = code_ok || code_match(f->code, r->last_code);
	}
	if (!to_ok || !dom_ok || !code_ok)
		return false;
	if (f->reason != NULL && !reason_match(f->reason, m))
		return false;
	switch (f->status) {
	case QUEUE_FILTER_ANY:
		return true;
	case QUEUE_FILTER_HELD:
		return held;
	case QUEUE_FILTER_DEFERRED:
		return !held && tried;
	case QUEUE_FILTER_QUEUED:
		return !held && !tried;
	}
	return false;
}
