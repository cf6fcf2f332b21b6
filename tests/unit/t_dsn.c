/*
 * Description: delivery status notifications. Each case builds a DSN with
 * fixed times and ids and compares it with tests/golden/dsn/NAME.ref (the
 * message with CRLF written as LF; SLUICE_GOLDEN_UPDATE=1 rewrites the
 * .ref files). Every DSN must use CRLF only, keep lines within 998
 * octets, keep the boundary out of its parts and the original headers
 * within 64 KiB; then Python's email package must read each one as a
 * well-formed multipart/report (skipped without /usr/bin/python3). Also:
 * argument errors leave the buffer alone, header injection through
 * addresses fails, reply parsing, status syntax, the null sender, and
 * random envelopes and originals still give well-formed output, and a
 * header field cut before a run of spaces leaves no line of white space
 * only.
 */
#include "check.h"
#include "../../deliver/dsn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOLDEN_DIR	"tests/golden/dsn"
#define PYTHON		"/usr/bin/python3"

#define NOW_US		1700000000123456ULL	/* 2023-11-14 22:13:20 UTC */
#define HOUR_US		3600000000ULL
#define QID		"018BD2C3A4F50001"

static const struct dsn_info base_info = {
	.reporting_mta = "mx.sluice.test",
	.queue_id = QID,
	.arrival_us = NOW_US - 26 * HOUR_US,
	.now_us = NOW_US,
	.sender = "alice@sender.example",
	.received_from = "client.sender.example ([192.0.2.10])",
	.expired = false,
	.max_age_days = 5,
};

static const char plain_orig[] =
    "Received: from client.sender.example ([192.0.2.10])\r\n"
    "\tby mx.sluice.test with ESMTP id 018BD2C3A4F50001;\r\n"
    "\tMon, 13 Nov 2023 20:13:20 +0000\r\n"
    "From: Alice <alice@sender.example>\r\n"
    "To: bob@rcpt.example\r\n"
    "Subject: Quarterly report\r\n"
    "Message-ID: <q3@sender.example>\r\n"
    "Date: Mon, 13 Nov 2023 20:13:19 +0000\r\n"
    "\r\n"
    "Hello Bob,\r\n"
    "\r\n"
    "--=_sluice_" QID "_1700000000123456\r\n"
    "this body line must not matter: only headers are returned.\r\n";

struct dsn_case {
	const char *name;
	const char *subject;		/* expected in part 3 */
	struct dsn_info info;
	struct dsn_rcpt rcpts[4];
	size_t n;
	const char *orig;		/* NULL: built by gen */
	size_t orig_len;		/* 0: strlen(orig) */
	void (*gen)(struct buf *);
	const char *expect;		/* must occur in the DSN, or NULL */
	const char *refuse;		/* must not occur in the DSN, or NULL */
};

/* 80 KiB of headers: more than DSN_HEADERS_MAX. */
static void
gen_big(struct buf *b)
{
	unsigned i;

	buf_puts(b, "Subject: Big headers\r\nFrom: alice@sender.example\r\n");
	for (i = 0; i < 1000; i++)
		buf_printf(b, "X-Filler-%04u: %s\r\n", i,
		    "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefgh"
		    "ijklmn");
	buf_puts(b, "\r\nbody\r\n");
}

/* A 2500-byte header line and a 1200-byte word in a reply. */
static char long_diag[1300];
static void
gen_long(struct buf *b)
{
	unsigned i;

	buf_puts(b, "Subject: Long lines\r\nX-Long: ");
	for (i = 0; i < 2500; i++)
		buf_append(b, &"abcdefghij"[i % 10], 1);
	buf_puts(b, "\r\nX-Utf8-Long: ");
	for (i = 0; i < 500; i++)
		buf_puts(b, "\xc3\xa9");	/* é, 2 bytes */
	buf_puts(b, "\r\n\r\n");
	memcpy(long_diag, "550 5.7.1 ", 10);
	for (i = 10; i < 1210; i++)
		long_diag[i] = "0123456789"[i % 10];
	long_diag[i] = '\0';
}

static const struct dsn_case cases[] = {
	{
		.name = "one_550",
		.subject = "Quarterly report",
		.rcpts = { {
			.addr = "bob@rcpt.example",
			.status = "5.1.1",
			.remote_mta = "mx1.rcpt.example",
			.diagnostic = "550 5.1.1 <bob@rcpt.example>: "
			    "Recipient address rejected: User unknown",
			.last_attempt_us = NOW_US - 1000000,
		} },
		.n = 1,
		.orig = plain_orig,
		.expect = "Final-Recipient: rfc822; bob@rcpt.example\r\n"
		    "Action: failed\r\nStatus: 5.1.1\r\n"
		    "Remote-MTA: dns; mx1.rcpt.example\r\n",
	},
	{
		.name = "three_mixed",
		.subject = "Quarterly report",
		.rcpts = {
			{
				.addr = "bob@rcpt.example",
				.status = "5.1.1",
				.remote_mta = "mx1.rcpt.example",
				.diagnostic = "550 5.1.1 no such user",
				.last_attempt_us = NOW_US - 2000000,
			},
			{
				.addr = "carol@other.example",
				.orig_rcpt = "Carol.Smith@old.example",
				.status = "5.2.2",
				.remote_mta = "mx.other.example",
				.diagnostic = "552-5.2.2 The email account that "
				    "you tried to reach is over quota. Please "
				    "direct the recipient to the help page "
				    "552 5.2.2 https://support.other.example/"
				    "mail/?p=QuotaExceeded x12si3456789abc.12 - "
				    "gsmtp",
				.last_attempt_us = NOW_US - 1000000,
			},
			{
				.addr = "dave@nomx.example",
				.orig_rcpt = "dave@nomx.example",
				.status = "5.1.10",
				.diagnostic = "null MX: nomx.example accepts "
				    "no mail (RFC 7505)",
			},
		},
		.n = 3,
		.orig = plain_orig,
		.expect = "Original-Recipient: rfc822; "
		    "Carol.Smith@old.example\r\n",
	},
	{
		.name = "expired",
		.subject = "Quarterly report",
		.info = { .expired = true },
		.rcpts = { {
			.addr = "bob@slow.example",
			.status = "4.4.7",
			.remote_mta = "mx.slow.example",
			.diagnostic = "421 4.4.2 mx.slow.example Error: timeout "
			    "exceeded",
			.last_attempt_us = NOW_US - HOUR_US,
		} },
		.n = 1,
		.orig = plain_orig,
		.expect = "Subject: Undelivered Mail Returned to Sender: "
		    "delivery time expired\r\n",
	},
	{
		.name = "no_body",
		.subject = "Headers only",
		.rcpts = { { .addr = "bob@rcpt.example", .status = "5.0.0" } },
		.n = 1,
		.orig = "From: alice@sender.example\r\nSubject: Headers only\r\n"
		    "X-Last: no line end",
		.expect = "X-Last: no line end\r\n\r\n--=_sluice_",
	},
	{
		.name = "boundary_in_headers",
		.subject = "Boundary trap",
		.rcpts = { { .addr = "bob@rcpt.example", .status = "5.1.1" } },
		.n = 1,
		.orig = "Subject: Boundary trap\r\n"
		    "X-Trap: =_sluice_" QID "_1700000000123456\r\n"
		    "--=_sluice_" QID "_1700000000123456.1\r\n"
		    "\r\nbody\r\n",
		.expect = "boundary=\"=_sluice_" QID "_1700000000123456.2\"",
	},
	{
		.name = "big_headers",
		.subject = "Big headers",
		.rcpts = { { .addr = "bob@rcpt.example", .status = "5.3.4",
		    .diagnostic = "552 5.3.4 Message headers too big" } },
		.n = 1,
		.gen = gen_big,
		.expect = "It was longer than 65536 bytes and has",
		.refuse = "X-Filler-0999",
	},
	{
		.name = "bare_lf",
		.subject = "Bare line ends",
		.rcpts = { { .addr = "bob@rcpt.example", .status = "5.1.1" } },
		.n = 1,
		.orig = "Subject: Bare line ends\nFrom: alice@sender.example\r"
		    "X-After-CR: yes\r\nX-Nul: a\0b\r\n\nbody\r\n",
		.orig_len = sizeof("Subject: Bare line ends\nFrom: "
		    "alice@sender.example\rX-After-CR: yes\r\nX-Nul: a\0b"
		    "\r\n\nbody\r\n") - 1,
		.expect = "Subject: Bare line ends\r\n"
		    "From: alice@sender.example\r\nX-After-CR: yes\r\n"
		    "X-Nul: a?b\r\n\r\n--=_sluice_",
		.refuse = "body",
	},
	{
		.name = "long_lines",
		.subject = "Long lines",
		.rcpts = { { .addr = "bob@rcpt.example", .status = "5.7.1",
		    .remote_mta = "mx1.rcpt.example", .diagnostic = long_diag } },
		.n = 1,
		.gen = gen_long,
	},
	{
		.name = "utf8",
		.subject = "Gr\xc3\xbc\xc3\x9f""e aus K\xc3\xb6ln",
		.info = { .sender = "j\xc3\xb6rg@absender.example",
		    .received_from = "h\xc3\xa9lo.example ([192.0.2.11])" },
		.rcpts = { {
			.addr = "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad"
			    "\x90.example",
			.status = "5.1.1",
			.remote_mta = "mx.\xe4\xbe\x8b.example",
			.diagnostic = "550 5.1.1 unknown user "
			    "\xe7\x94\xa8\xe6\x88\xb7",
		}, {
			.addr = "plus+tag=x@\xff\xfe.example",
			.status = "5.1.2",
		} },
		.n = 2,
		.orig = "From: J\xc3\xb6rg <j\xc3\xb6rg@absender.example>\r\n"
		    "Subject: Gr\xc3\xbc\xc3\x9f""e aus K\xc3\xb6ln\r\n\r\n",
		.expect = "Final-Recipient: utf-8; \\x{7528}\\x{6237}@"
		    "\\x{4F8B}\\x{5B50}.example\r\n",
	},
	{
		.name = "hostile",
		.subject = "Hostile envelope",
		.info = { .sender = "eve@evil.example>\r\nBcc: victim@x.example",
		    .received_from = "helo\r\nX-Injected: 1" },
		.rcpts = { {
			.addr = "bob@rcpt.example\r\nX-Injected: 2",
			.orig_rcpt = "bob\n@rcpt.example",
			.status = "5.1.1",
			.remote_mta = "mx\r\nX-Injected: 3",
			.diagnostic = "550 5.1.1 first line\r\n550 5.1.1 "
			    "second\x01line\x7f",
		} },
		.n = 1,
		.orig = "Subject: Hostile envelope\r\n\r\n",
		.expect = "To: <eve@evil.example>  Bcc: victim@x.example>\r\n",
		.refuse = "\nX-Injected",
	},
};

/* The case's info: base_info with the case's non-zero fields on top. */
static struct dsn_info
case_info(const struct dsn_case *c)
{
	struct dsn_info i = base_info;

	if (c->info.sender != NULL)
		i.sender = c->info.sender;
	if (c->info.received_from != NULL)
		i.received_from = c->info.received_from;
	i.expired = c->info.expired;
	return i;
}

static bool
contains(const struct buf *b, const char *s)
{
	return memmem(b->data, b->len, s, strlen(s)) != NULL;
}

/* CRLF only, no line over DSN_LINE_MAX octets; then the LF form. */
static bool
check_lines(const char *name, const struct buf *m, struct buf *lf)
{
	size_t i, start = 0;
	bool ok = true;

	for (i = 0; i < m->len; i++) {
		char c = m->data[i];

		if (c == '\r' && i + 1 < m->len && m->data[i + 1] == '\n') {
			if (i - start > DSN_LINE_MAX) {
				fprintf(stderr, "%s: line at %zu is %zu "
				    "octets\n", name, start, i - start);
				ok = false;
			}
			buf_puts(lf, "\n");
			start = i + 2;
			i++;
			continue;
		}
		if (c == '\r' || c == '\n') {
			fprintf(stderr, "%s: bare %s at %zu\n", name,
			    c == '\r' ? "CR" : "LF", i);
			ok = false;
		}
		buf_append(lf, &c, 1);
	}
	if (start != m->len) {
		fprintf(stderr, "%s: does not end in CRLF\n", name);
		ok = false;
	}
	return ok;
}

/* The boundary from the Content-Type header, and the part bodies hold it
 * only as delimiter lines. */
static bool
check_boundary(const char *name, const struct buf *m)
{
	const char *p = memmem(m->data, m->len, "boundary=\"", 10), *q;
	char delim[128];
	size_t blen, count = 0;
	const char *s, *end = m->data + m->len;

	if (p == NULL || (q = memchr(p + 10, '"', (size_t)(end - p - 10))) ==
	    NULL || q - p - 10 > 70) {
		fprintf(stderr, "%s: no boundary\n", name);
		return false;
	}
	blen = (size_t)(q - p - 10);
	snprintf(delim, sizeof(delim), "%.*s", (int)blen, p + 10);
	for (s = q; (s = memmem(s, (size_t)(end - s), delim, blen)) != NULL;
	    s += blen) {
		/* Every occurrence must be "\r\n--B\r\n" or the final one. */
		if (s - m->data < 4 || memcmp(s - 4, "\r\n--", 4) != 0) {
			fprintf(stderr, "%s: boundary inside a part\n", name);
			return false;
		}
		count++;
	}
	if (count != 4) {
		fprintf(stderr, "%s: %zu delimiters, want 4\n", name, count);
		return false;
	}
	return true;
}

/* Part 3 (after the last delimiter but one) within DSN_HEADERS_MAX. */
static bool
check_cap(const char *name, const struct buf *m)
{
	static const char ct[] = "Content-Type: text/rfc822-headers\r\n";
	const char *p = memmem(m->data, m->len, ct, sizeof(ct) - 1), *end;
	const char *body;

	if (p == NULL)
		return false;
	body = memmem(p, (size_t)(m->data + m->len - p), "\r\n\r\n", 4);
	end = m->data + m->len;
	if (body == NULL)
		return false;
	body += 4;
	/* The closing delimiter is "\r\n--B--\r\n" at the end. */
	end = memmem(body, (size_t)(end - body), "\r\n--=_sluice_", 13);
	if (end == NULL || end - body > DSN_HEADERS_MAX) {
		fprintf(stderr, "%s: headers part too big\n", name);
		return false;
	}
	return true;
}

static const char py_check[] =
"import email, re, sys\n"
"from email import policy\n"
"from email.parser import BytesParser\n"
"bad = 0\n"
"def fail(name, why):\n"
"    global bad\n"
"    bad += 1\n"
"    print('FAIL python %s: %s' % (name, why))\n"
"for line in open(sys.argv[1], 'rb').read().split(b'\\n'):\n"
"    if not line:\n"
"        continue\n"
"    path, n, subj = line.split(b'\\t')\n"
"    name = path.decode().rsplit('/', 1)[-1]\n"
"    n = int(n)\n"
"    raw = open(path, 'rb').read()\n"
"    m = BytesParser(policy=policy.compat32).parsebytes(raw)\n"
"    if m.defects: fail(name, 'defects %r' % m.defects)\n"
"    if m.get_content_type() != 'multipart/report': fail(name, 'type')\n"
"    if m.get_param('report-type') != 'delivery-status':\n"
"        fail(name, 'report-type')\n"
"    if m['Auto-Submitted'] != 'auto-replied': fail(name, 'auto')\n"
"    if not m['Message-ID'] or not m['Date']: fail(name, 'ids')\n"
"    parts = m.get_payload()\n"
"    if not isinstance(parts, list) or len(parts) != 3:\n"
"        fail(name, 'not 3 parts')\n"
"        continue\n"
"    for p in parts:\n"
"        if p.defects: fail(name, 'part defects %r' % p.defects)\n"
"    if parts[0].get_content_type() != 'text/plain': fail(name, 'part 1')\n"
"    if parts[1].get_content_type() != 'message/delivery-status':\n"
"        fail(name, 'part 2')\n"
"        continue\n"
"    blocks = parts[1].get_payload()\n"
"    if not blocks[0].get('Reporting-MTA', '').startswith('dns; '):\n"
"        fail(name, 'Reporting-MTA')\n"
"    if len(blocks) != 1 + n:\n"
"        fail(name, '%d recipient blocks, want %d' % (len(blocks) - 1, n))\n"
"    for b in blocks[1:]:\n"
"        if not re.match(r'(rfc822|utf-8); \\S', b.get('Final-Recipient', '')):\n"
"            fail(name, 'Final-Recipient %r' % b['Final-Recipient'])\n"
"        if b['Action'] != 'failed': fail(name, 'Action')\n"
"        if not re.fullmatch(r'[45]\\.\\d{1,3}\\.\\d{1,3}', b.get('Status', '')):\n"
"            fail(name, 'Status %r' % b['Status'])\n"
"    if parts[2].get_content_type() != 'text/rfc822-headers':\n"
"        fail(name, 'part 3')\n"
"        continue\n"
"    h = parts[2].get_payload(decode=True)\n"
"    if b'Subject: ' + subj not in h: fail(name, 'no original Subject')\n"
"    g = BytesParser(policy=policy.compat32).parsebytes(h)\n"
"    if g['Subject'] is None: fail(name, 'part 3 does not parse')\n"
"print('python: %d problem(s)' % bad)\n"
"sys.exit(1 if bad else 0)\n";

/* Writes each DSN to a temporary directory and has Python read them. */
static void
python_check(struct buf *dsns, size_t ndsn)
{
	char dir[] = "/tmp/t_dsn.XXXXXX", path[256], cmd[512];
	struct buf manifest = { 0 };
	size_t i;
	FILE *f;
	int rc;

	if (access(PYTHON, X_OK) != 0) {
		printf("SKIP python check: %s not found\n", PYTHON);
		return;
	}
	CHECK_FATAL(mkdtemp(dir) != NULL);
	for (i = 0; i < ndsn; i++) {
		snprintf(path, sizeof(path), "%s/%s.eml", dir, cases[i].name);
		f = fopen(path, "wb");
		CHECK_FATAL(f != NULL);
		CHECK(fwrite(dsns[i].data, 1, dsns[i].len, f) == dsns[i].len);
		fclose(f);
		buf_printf(&manifest, "%s\t%zu\t%s\n", path, cases[i].n,
		    cases[i].subject);
	}
	snprintf(path, sizeof(path), "%s/manifest", dir);
	f = fopen(path, "wb");
	CHECK_FATAL(f != NULL);
	fwrite(manifest.data, 1, manifest.len, f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/check.py", dir);
	f = fopen(path, "wb");
	CHECK_FATAL(f != NULL);
	fputs(py_check, f);
	fclose(f);
	printf("RUN python email check\n");
	fflush(stdout);
	snprintf(cmd, sizeof(cmd), "%s %s/check.py %s/manifest", PYTHON, dir,
	    dir);
	rc = system(cmd);
	CHECK(rc == 0);
	printf("%s python email check\n", rc == 0 ? "PASS" : "FAIL");
	for (i = 0; i < ndsn; i++) {
		snprintf(path, sizeof(path), "%s/%s.eml", dir, cases[i].name);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/manifest", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/check.py", dir);
	unlink(path);
	rmdir(dir);
	buf_free(&manifest);
}

static void
golden_cases(void)
{
	struct buf dsns[NELEM(cases)];
	size_t i;

	memset(dsns, 0, sizeof(dsns));
	for (i = 0; i < NELEM(cases); i++) {
		const struct dsn_case *c = &cases[i];
		struct dsn_info info = case_info(c);
		struct buf orig = { 0 }, lf = { 0 };
		char refpath[256];
		bool ok = true;
		int rc;

		printf("RUN %s\n", c->name);
		if (c->gen != NULL)
			c->gen(&orig);
		else
			buf_append(&orig, c->orig,
			    c->orig_len ? c->orig_len : strlen(c->orig));
		rc = dsn_build(&info, c->rcpts, c->n, (const uint8_t *)orig.data,
		    orig.len, &dsns[i]);
		CHECK_FATAL(rc == 0);
		ok &= check_lines(c->name, &dsns[i], &lf);
		ok &= check_boundary(c->name, &dsns[i]);
		ok &= check_cap(c->name, &dsns[i]);
		if (c->expect != NULL && !contains(&dsns[i], c->expect)) {
			fprintf(stderr, "%s: missing %s\n", c->name, c->expect);
			ok = false;
		}
		if (c->refuse != NULL && contains(&dsns[i], c->refuse)) {
			fprintf(stderr, "%s: holds %s\n", c->name, c->refuse);
			ok = false;
		}
		snprintf(refpath, sizeof(refpath), "%s/%s.ref", GOLDEN_DIR,
		    c->name);
		ok &= check_golden(c->name, refpath, lf.data, lf.len);
		if (!ok)
			check_failures++;
		printf("%s %s\n", ok ? "PASS" : "FAIL", c->name);
		buf_free(&orig);
		buf_free(&lf);
	}
	python_check(dsns, NELEM(cases));
	for (i = 0; i < NELEM(cases); i++)
		buf_free(&dsns[i]);
}

/* Bad arguments: -EINVAL, and the output buffer keeps its bytes. */
static void
bad_args(void)
{
	struct dsn_rcpt r = { .addr = "bob@rcpt.example", .status = "5.1.1" };
	struct dsn_rcpt r2 = r;
	struct dsn_info info = base_info;
	struct buf out = { 0 };
	const uint8_t o[] = "Subject: x\r\n\r\n";

	printf("RUN bad_args\n");
	buf_puts(&out, "keep");
#define BAD(expr)							\
	do {								\
		CHECK((expr) == -EINVAL);				\
		CHECK(out.len == 4 && memcmp(out.data, "keep", 4) == 0); \
	} while (0)
	BAD(dsn_build(NULL, &r, 1, o, sizeof(o) - 1, &out));
	BAD(dsn_build(&info, NULL, 1, o, sizeof(o) - 1, &out));
	BAD(dsn_build(&info, &r, 0, o, sizeof(o) - 1, &out));
	BAD(dsn_build(&info, &r, 1, NULL, 5, &out));
	CHECK(dsn_build(&info, &r, 1, o, sizeof(o) - 1, NULL) == -EINVAL);
	info.sender = "";
	BAD(dsn_build(&info, &r, 1, o, sizeof(o) - 1, &out));
	info.sender = NULL;
	BAD(dsn_build(&info, &r, 1, o, sizeof(o) - 1, &out));
	info = base_info;
	info.reporting_mta = NULL;
	BAD(dsn_build(&info, &r, 1, o, sizeof(o) - 1, &out));
	info.reporting_mta = "mx.example>\r\nX: y";
	BAD(dsn_build(&info, &r, 1, o, sizeof(o) - 1, &out));
	info = base_info;
	info.queue_id = "018BD2C3A4F5000";
	BAD(dsn_build(&info, &r, 1, o, sizeof(o) - 1, &out));
	info.queue_id = "018BD2C3A4F5000G";
	BAD(dsn_build(&info, &r, 1, o, sizeof(o) - 1, &out));
	info.queue_id = NULL;
	BAD(dsn_build(&info, &r, 1, o, sizeof(o) - 1, &out));
	info = base_info;
	r2.addr = NULL;
	BAD(dsn_build(&info, &r2, 1, o, sizeof(o) - 1, &out));
	r2.addr = "";
	BAD(dsn_build(&info, &r2, 1, o, sizeof(o) - 1, &out));
	r2 = r;
	r2.status = NULL;
	BAD(dsn_build(&info, &r2, 1, o, sizeof(o) - 1, &out));
	r2.status = "2.0.0";
	BAD(dsn_build(&info, &r2, 1, o, sizeof(o) - 1, &out));
	r2.status = "5.1";
	BAD(dsn_build(&info, &r2, 1, o, sizeof(o) - 1, &out));
#undef BAD
	/* An empty original is fine, and appends after what was there. */
	CHECK(dsn_build(&info, &r, 1, NULL, 0, &out) == 0);
	CHECK(out.len > 4 && memcmp(out.data, "keepFrom: ", 10) == 0);
	buf_free(&out);
	printf("PASS bad_args\n");
}

static void
reply_parsing(void)
{
	static const struct {
		const char *reply;
		int rc, code;
		const char *status;
	} t[] = {
		{ "550 5.1.1 <x@y>: no such user", 0, 550, "5.1.1" },
		{ "550-5.1.1 The email account does not exist", 0, 550,
		    "5.1.1" },
		{ "452 4.2.2 mailbox full", 0, 452, "4.2.2" },
		{ "421 4.4.2 timeout", 0, 421, "4.4.2" },
		{ "250 2.0.0 Ok: queued as 12345", 0, 250, "2.0.0" },
		{ "554", 0, 554, "" },
		{ "554 no enhanced code here", 0, 554, "" },
		{ "550 4.1.1 class does not match", 0, 550, "" },
		{ "550 5.1.1000 too many digits", 0, 550, "" },
		{ "550 5.1.10 null MX", 0, 550, "5.1.10" },
		{ "550 5.123.456 widest", 0, 550, "5.123.456" },
		{ "550 5.1.1;no space after", 0, 550, "" },
		{ "550\t5.1.1", -EINVAL, 0, "" },
		{ "55 short", -EINVAL, 0, "" },
		{ "650 6.0.0 no such class", -EINVAL, 0, "" },
		{ "abc", -EINVAL, 0, "" },
		{ "", -EINVAL, 0, "" },
		{ NULL, -EINVAL, 0, "" },
	};
	char status[DSN_STATUS_MAX + 1];
	size_t i;
	int code;

	printf("RUN reply_parsing\n");
	for (i = 0; i < NELEM(t); i++) {
		int rc = dsn_parse_reply(t[i].reply, &code, status);

		if (rc != t[i].rc || code != t[i].code ||
		    strcmp(status, t[i].status) != 0) {
			fprintf(stderr, "reply '%s': got %d %d '%s'\n",
			    t[i].reply ? t[i].reply : "(null)", rc, code,
			    status);
			check_failures++;
		}
	}
	CHECK(dsn_status_valid("5.1.1"));
	CHECK(dsn_status_valid("4.4.7"));
	CHECK(dsn_status_valid("2.0.0"));
	CHECK(dsn_status_valid("5.123.456"));
	CHECK(!dsn_status_valid("5.1234.1"));
	CHECK(!dsn_status_valid("3.1.1"));
	CHECK(!dsn_status_valid("5.1."));
	CHECK(!dsn_status_valid("5..1"));
	CHECK(!dsn_status_valid("5.1.1 "));
	CHECK(!dsn_status_valid(""));
	CHECK(!dsn_status_valid(NULL));
	CHECK(dsn_is_bounce(""));
	CHECK(dsn_is_bounce("<>"));
	CHECK(dsn_is_bounce(NULL));
	CHECK(!dsn_is_bounce("MAILER-DAEMON@example.org"));
	CHECK(!dsn_is_bounce("a@b"));
	printf("PASS reply_parsing\n");
}

/* Random bytes, rich in CR, LF, spaces, '-' and 8-bit; no NUL if text. */
static void
random_bytes(char *p, size_t n, bool text)
{
	static const char pick[] = "\r\n -=_:\t\xc3\xa9\xff";
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t r = check_rand();

		p[i] = r % 3 == 0 ? pick[(r >> 8) % (sizeof(pick) - 1)] :
		    (char)(r >> 16);
		if (text && p[i] == '\0')
			p[i] = 'x';
	}
}

/* Whatever the input, the output keeps its shape. */
static void
random_inputs(void)
{
	static char addr[3][300], diag[3000], mta[100], from[200];
	static uint8_t orig[20000];
	struct dsn_rcpt r[3];
	struct dsn_info info = base_info;
	unsigned iter, k;
	bool ok = true;

	printf("RUN random_inputs\n");
	for (iter = 0; iter < 500 && ok; iter++) {
		struct buf out = { 0 }, lf = { 0 };
		size_t olen = check_rand() % sizeof(orig);

		random_bytes((char *)orig, olen, false);
		for (k = 0; k < 3; k++) {
			size_t alen = 1 + check_rand() % (sizeof(addr[k]) - 1);

			random_bytes(addr[k], alen, true);
			addr[k][alen] = '\0';
			r[k] = (struct dsn_rcpt){ .addr = addr[k],
			    .status = k == 0 ? "5.1.1" : "4.4.7",
			    .remote_mta = k == 1 ? NULL : mta,
			    .diagnostic = k == 2 ? NULL : diag,
			    .orig_rcpt = k == 1 ? addr[0] : NULL,
			    .last_attempt_us = NOW_US };
		}
		k = (unsigned)(check_rand() % (sizeof(diag) - 1));
		random_bytes(diag, k, true);
		diag[k] = '\0';
		k = (unsigned)(check_rand() % (sizeof(mta) - 1));
		random_bytes(mta, k, true);
		mta[k] = '\0';
		k = 1 + (unsigned)(check_rand() % (sizeof(from) - 1));
		random_bytes(from, k, true);
		from[k] = '\0';
		info.sender = from;
		info.received_from = mta;
		info.expired = iter % 2;
		info.now_us = NOW_US + iter;
		CHECK_FATAL(dsn_build(&info, r, 3, orig, olen, &out) == 0);
		ok &= check_lines("random", &out, &lf);
		ok &= check_boundary("random", &out);
		ok &= check_cap("random", &out);
		buf_free(&out);
		buf_free(&lf);
	}
	if (!ok)
		check_failures++;
	printf("%s random_inputs\n", ok ? "PASS" : "FAIL");
}

/* Lines of white space only (not empty ones): none in a DSN. */
static unsigned
blank_lines(const struct buf *m)
{
	size_t i, start = 0;
	unsigned n = 0;
	bool blank = true;

	for (i = 0; i + 1 < m->len; i++) {
		if (m->data[i] == '\r' && m->data[i + 1] == '\n') {
			n += blank && i > start;
			blank = true;
			start = i + 2;
			i++;
		} else if (m->data[i] != ' ' && m->data[i] != '\t') {
			blank = false;
		}
	}
	return n;
}

/*
 * RFC 5322 section 3.2.2: no line of a folded header field is white
 * space only. A field cut right before a run of spaces used to put the
 * run on a line of its own, and a run longer than a line filled whole
 * lines (found by tests/fuzz/fuzz_dsn.c).
 */
static void
fold_space_runs(void)
{
	static char mta[1100], diag[1100], from[2100];
	struct dsn_info info = base_info;
	struct dsn_rcpt r = { .addr = "bob@rcpt.example", .status = "5.1.1",
	    .diagnostic = diag };
	struct buf out = { 0 }, lf = { 0 };

	printf("RUN fold_space_runs\n");
	/* "dns; " breaks after "dns;", then a line of " " and 997 x. */
	memset(mta, 'x', 997);
	memset(mta + 997, ' ', 40);
	memset(diag, 'y', 997);
	memset(diag + 997, ' ', 40);
	memcpy(from, "alice", 5);
	memset(from + 5, ' ', 2000);
	memcpy(from + 2005, "@sender.example", 15);
	info.received_from = mta;
	info.sender = from;
	CHECK_FATAL(dsn_build(&info, &r, 1, (const uint8_t *)plain_orig,
	    sizeof(plain_orig) - 1, &out) == 0);
	CHECK(blank_lines(&out) == 0);
	CHECK(check_lines("fold_space_runs", &out, &lf));
	/* The words are all there. */
	CHECK(contains(&out, "Received-From-MTA: dns;\r\n xxxxxxxx"));
	CHECK(contains(&out, "xxxxxxx\r\nArrival-Date: "));
	CHECK(contains(&out, "yyyyyyy\r\nLast-Attempt-Date: ") ||
	    contains(&out, "yyyyyyy\r\n\r\n--"));
	CHECK(contains(&out, "\r\n @sender.example>\r\n"));
	printf("%s fold_space_runs\n", blank_lines(&out) == 0 ? "PASS" :
	    "FAIL");
	buf_free(&out);
	buf_free(&lf);
}

int
main(void)
{
	golden_cases();
	bad_args();
	reply_parsing();
	random_inputs();
	fold_space_runs();
	return check_done();
}
