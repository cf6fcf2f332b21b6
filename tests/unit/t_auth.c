/*
 * Description: the engine's password checks (engine/auth.c). A session's
 * credentials go to the worker threads and come back, through the
 * shard's eventfd, as OK for the right password and FAILED for a wrong
 * one or an unknown user, with the password wiped from the session;
 * failed logins from one address are held back 1 s, 2 s, 4 s, then
 * refused at limits.auth_failures, per address (IPv6 per /64), until the
 * window passes; a clock a little behind another shard's still counts.
 * An unknown user is checked against a dummy hash made with the first
 * user's method, cost and salt, whichever method that is.
 */
#include <crypt.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../../engine/auth.h"
#include "check.h"

static uint64_t
next_id(void *ctx, uint64_t now_ms)
{
	(void)now_ms;
	return ++*(uint64_t *)ctx;
}

/*
 * A config with one AUTH listener and the user alice (password "pw"),
 * hashed with method (crypt_gensalt's prefix) at cost count.
 */
static void
load_hashed(struct config *cfg, const char *method, unsigned long count,
    const char *extra)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE], path[] = "/tmp/t_auth.XXXXXX";
	struct config_errors errs = { 0 };
	struct crypt_data cd;
	const char *hash;
	FILE *f;
	int fd;

	memset(&cd, 0, sizeof(cd));
	CHECK_FATAL(crypt_gensalt_rn(method, count, NULL, 0, setting,
	    sizeof(setting)) != NULL);
	hash = crypt_rn("pw", setting, &cd, (int)sizeof(cd));
	CHECK_FATAL(hash != NULL);
	fd = mkstemp(path);
	CHECK_FATAL(fd >= 0);
	f = fdopen(fd, "w");
	CHECK_FATAL(f != NULL);
	fprintf(f, "listen:\n  - address: 127.0.0.1:2525\n    auth: optional\n"
	    "    auth_insecure: true\nusers:\n  - name: alice\n"
	    "    password: '%s'\n    allowed_from: ['@example.com']\n"
	    "limits:\n  auth_failures: 4\n  auth_failure_window: 10s\n%s",
	    hash, extra);
	CHECK_FATAL(fclose(f) == 0);
	if (config_load(cfg, path, NULL, 0, NULL, &errs) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		CHECK_FATAL(!"config loads");
	}
	config_errors_free(&errs);
	unlink(path);
}

/* bcrypt at its lowest cost: a test has no guesser to slow down. */
static void
load(struct config *cfg, const char *extra)
{
	load_hashed(cfg, "$2b$", 4, extra);
}

/* A session that has sent AUTH PLAIN for user/pass and waits. */
static void
auth_session(struct smtp_session *s, const struct smtp_server_cfg *scfg,
    const struct config *cfg, const struct smtp_id_source *ids,
    const char *b64)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char line[256];

	memset(s, 0, sizeof(*s));
	smtp_session_init(s, scfg, &cfg->listen[0].policy,
	    (struct sockaddr *)&sin, false, ids);
	CHECK(smtp_session_greet(s) == SMTP_EV_NONE);
	snprintf(line, sizeof(line), "EHLO c\r\nAUTH PLAIN %s\r\n", b64);
	CHECK_FATAL(smtp_session_input(s, line, strlen(line)) ==
	    SMTP_EV_AUTH);
	buf_reset(&s->out);
}

/* Wait (bounded) for the eventfd, then take the one verdict. */
static struct auth_result *
verdict(int efd)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };
	struct auth_result *r;
	uint64_t v;

	CHECK_FATAL(poll(&p, 1, 10000) == 1);
	CHECK_FATAL(read(efd, &v, sizeof(v)) == (ssize_t)sizeof(v));
	r = auth_reap(0);
	CHECK_FATAL(r != NULL);
	CHECK(r->next == NULL);
	return r;
}

static void
workers(void)
{
	static const struct {
		const char *b64, *user;
		enum smtp_auth_result res;
	} cases[] = {
		{ "AGFsaWNlAHB3", "alice", SMTP_AUTH_OK },	/* \0alice\0pw */
		{ "AGFsaWNlAHB4", "alice", SMTP_AUTH_FAILED },	/* \0alice\0px */
		{ "AG1hbGxvcnkAcHc=", "mallory", SMTP_AUTH_FAILED },
		{ "AEFsaWNlAHB3", "Alice", SMTP_AUTH_FAILED },	/* case counts */
	};
	struct smtp_server_cfg scfg;
	uint64_t last = 0;
	struct smtp_id_source ids = { next_id, &last };
	struct smtp_session s;
	struct auth_result *r;
	struct config cfg;
	char dummy[AUTH_DUMMY_MAX];
	int efd = eventfd(0, EFD_CLOEXEC);
	size_t i;

	CHECK_FATAL(efd >= 0);
	load(&cfg, "");
	CHECK_FATAL(auth_dummy_make(&cfg, dummy, sizeof(dummy)) == 0);
	smtp_server_cfg_init(&scfg, "mx.test", 100000, 10, 2048, 20);
	CHECK_FATAL(auth_global_init(&cfg, 1, &efd) == 0);
	for (i = 0; i < NELEM(cases); i++) {
		printf("RUN worker verdict for %s\n", cases[i].b64);
		auth_session(&s, &scfg, &cfg, &ids, cases[i].b64);
		CHECK(auth_submit(0, 7, 3, &cfg, dummy, &s, 1000) ==
		    SMTP_AUTH_OK);
		CHECK(s.auth_pass[0] == '\0');	/* the session's copy wiped */
		r = verdict(efd);
		CHECK(r->res == cases[i].res);
		CHECK(r->conn_idx == 7 && r->conn_gen == 3);
		CHECK(strcmp(r->user_name, cases[i].user) == 0);
		CHECK(strcmp(r->mech, "PLAIN") == 0);
		CHECK(strcmp(r->client, "0.0.0.0") == 0);
		if (r->res == SMTP_AUTH_OK) {
			CHECK(r->user != NULL && r->user->nallowed_from == 1);
			CHECK(strcmp(r->user->name, "alice") == 0);
		}
		free(r);
		smtp_session_free(&s);
	}

	printf("RUN an address at its limit gets LOCKED without a check\n");
	for (i = 0; i < 3; i++)
		CHECK(auth_fail_delay_ms(auth_addr_key("0.0.0.0"), 5000) !=
		    UINT64_MAX);
	CHECK(auth_fail_delay_ms(auth_addr_key("0.0.0.0"), 5000) ==
	    UINT64_MAX);
	auth_session(&s, &scfg, &cfg, &ids, "AGFsaWNlAHB3");
	CHECK(auth_submit(0, 1, 1, &cfg, dummy, &s, 6000) ==
	    SMTP_AUTH_LOCKED);
	CHECK(s.auth_pass[0] == '\0');
	CHECK(auth_reap(0) == NULL);
	/* The window passed: checked again (and right). */
	CHECK(auth_submit(0, 1, 1, &cfg, dummy, &s, 5000 + 10000) ==
	    SMTP_AUTH_OK);
	r = verdict(efd);
	CHECK(r->res == SMTP_AUTH_FAILED);	/* the password was wiped */
	free(r);
	smtp_session_free(&s);
	auth_global_stop();
	config_free(&cfg);
	close(efd);
}

static void
throttle(void)
{
	struct config cfg;
	uint64_t a = auth_addr_key("192.0.2.1"), b = auth_addr_key("192.0.2.2");
	int efd = -1;

	load(&cfg, "");
	/* Workers start only for AUTH listeners: none here. */
	cfg.listen[0].policy.auth = SMTP_AUTH_OFF;
	CHECK_FATAL(auth_global_init(&cfg, 1, &efd) == 0);

	printf("RUN delays 1 s, 2 s, 4 s, then the limit\n");
	CHECK(auth_fail_delay_ms(a, 100000) == 1000);
	CHECK(auth_fail_delay_ms(a, 101000) == 2000);
	CHECK(auth_fail_delay_ms(b, 101000) == 1000);	/* its own count */
	CHECK(auth_fail_delay_ms(a, 103000) == 4000);
	CHECK(auth_fail_delay_ms(a, 107000) == UINT64_MAX);
	CHECK(auth_fail_delay_ms(a, 107500) == UINT64_MAX);

	printf("RUN the window runs from the last failure\n");
	CHECK(auth_fail_delay_ms(a, 107500 + 9999) == UINT64_MAX);
	CHECK(auth_fail_delay_ms(a, 117499 + 10000) == 1000);

	printf("RUN a shard whose clock is behind still counts\n");
	CHECK(auth_fail_delay_ms(b, 200000) == 1000);
	CHECK(auth_fail_delay_ms(b, 199990) == 2000);

	printf("RUN IPv6 counts per /64\n");
	CHECK(auth_addr_key("2001:db8:1:2::1") ==
	    auth_addr_key("2001:db8:1:2:ffff::9"));
	CHECK(auth_addr_key("2001:db8:1:2::1") !=
	    auth_addr_key("2001:db8:1:3::1"));
	CHECK(auth_addr_key("192.0.2.1") != auth_addr_key("192.0.2.10"));
	auth_global_stop();
	config_free(&cfg);
}

/* The dummy's setting (all before its last '$') is the first user's. */
static void
dummies(void)
{
	static const struct {
		const char *method;
		unsigned long count;
		const char *prefix;
	} cases[] = {
		{ "$2b$", 4, "$2b$04$" },
		{ "$6$", 1000, "$6$rounds=1000$" },
		{ "$y$", 3, "$y$j7T$" },
	};
	char dummy[AUTH_DUMMY_MAX], again[AUTH_DUMMY_MAX];
	struct config cfg;
	const char *pw;
	size_t i, n;

	for (i = 0; i < NELEM(cases); i++) {
		printf("RUN the dummy hash follows a first user of %s\n",
		    cases[i].prefix);
		load_hashed(&cfg, cases[i].method, cases[i].count, "");
		pw = cfg.users[0].password;
		CHECK_FATAL(strncmp(pw, cases[i].prefix,
		    strlen(cases[i].prefix)) == 0);
		CHECK_FATAL(auth_dummy_make(&cfg, dummy, sizeof(dummy)) == 0);
		CHECK_FATAL(auth_dummy_make(&cfg, again, sizeof(again)) == 0);
		n = (size_t)(strrchr(pw, '$') - pw);
		CHECK(strlen(dummy) == strlen(pw));
		CHECK(strncmp(dummy, pw, n) == 0);
		CHECK(strcmp(dummy, pw) != 0);	/* not alice's password */
		CHECK(strcmp(dummy, again) != 0);	/* a random one each time */
		config_free(&cfg);
	}

	printf("RUN with no users, the dummy is a yescrypt hash\n");
	load(&cfg, "");
	cfg.nusers = 0;
	CHECK(auth_dummy_make(&cfg, dummy, sizeof(dummy)) == 0);
	CHECK(strncmp(dummy, "$y$", 3) == 0);
	cfg.nusers = 1;
	config_free(&cfg);

	printf("RUN no listener offers AUTH: no dummy is made\n");
	load(&cfg, "");
	cfg.listen[0].policy.auth = SMTP_AUTH_OFF;
	strcpy(dummy, "x");
	CHECK(auth_dummy_make(&cfg, dummy, sizeof(dummy)) == 0);
	CHECK(dummy[0] == '\0');
	config_free(&cfg);

	printf("RUN a dummy too long for its room is an error\n");
	load(&cfg, "");
	CHECK(auth_dummy_make(&cfg, dummy, 20) == -EINVAL);
	config_free(&cfg);
}

int
main(void)
{
	dummies();
	throttle();
	workers();
	return check_done();
}
