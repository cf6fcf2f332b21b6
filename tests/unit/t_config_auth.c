/*
 * Description: the AUTH part of the configuration (engine/config_auth.c):
 * listen[].auth and auth_insecure reach each listener's policy with
 * sender_restrictions; users from the file and from users_file are found
 * by name with their allowed_from; a password that is not a crypt(3)
 * hash of an accepted method is refused without being repeated; a
 * users_file others may read is refused; every error names its file and
 * line. Exit 0: all cases passed; 1: some failed.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "../../engine/config.h"

#define HASH_Y "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"
#define HASH_6 "$6$CsNJaVvqZKkUwdth$2SBwDPaBOrs2NzO6d6FpWf9FIB8WNu8xXFHo8N/hBGeL0C/zZ2pqfk9n0hUW8ioSLqJvWCgzMDYZtEEkGx/r8."
#define HASH_2B "$2b$05$6tVnc1SX3wKqGuh2YntVAOh0OS.SpBBZnzA4.3rzZ0tVhFs1cpxEC"

static char dir[64];

/* Write text to dir/name with mode; returns the path (static buffer). */
static const char *
put(const char *name, const char *text, mode_t mode)
{
	static char path[2][128];
	static int which;
	char *p = path[which++ % 2];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	f = fopen(p, "w");
	CHECK_FATAL(f != NULL);
	fputs(text, f);
	CHECK_FATAL(fclose(f) == 0);
	CHECK_FATAL(chmod(p, mode) == 0);
	return p;
}

/*
 * Load text as the config file with overrides ("USERS" in it stands for
 * the users file's path); errors go to got (joined by '\n', "@" for the
 * config file's path, "%" for the users file's).
 */
static int
load(struct config *cfg, const char *text, const char *const *ovr,
    char *got, size_t gotlen)
{
	char users[128], yaml[8192];
	const char *path, *u;
	struct config_errors errs = { 0 };
	size_t novr = 0, i, o = 0;
	int n;

	snprintf(users, sizeof(users), "%s/users", dir);
	if ((u = strstr(text, "USERS")) != NULL)
		snprintf(yaml, sizeof(yaml), "%.*s%s%s", (int)(u - text), text,
		    users, u + 5);
	else
		snprintf(yaml, sizeof(yaml), "%s", text);
	path = put("sluice.yaml", yaml, 0600);
	while (ovr != NULL && ovr[novr] != NULL)
		novr++;
	n = config_load(cfg, path, (char *const *)ovr, novr, NULL, &errs);
	got[0] = '\0';
	for (i = 0; i < errs.n; i++) {
		const char *m = errs.msg[i];

		while (*m != '\0' && o + 1 < gotlen) {
			if (strncmp(m, path, strlen(path)) == 0) {
				got[o++] = '@';
				m += strlen(path);
			} else if (strncmp(m, users, strlen(users)) == 0) {
				got[o++] = '%';
				m += strlen(users);
			} else {
				got[o++] = *m++;
			}
		}
		if (o + 1 < gotlen)
			got[o++] = '\n';
		got[o] = '\0';
	}
	config_errors_free(&errs);
	return n;
}

static void
expect(const char *name, const char *text, const char *const *ovr,
    const char *want)
{
	struct config cfg;
	char got[4096];
	int n;

	printf("RUN %s\n", name);
	n = load(&cfg, text, ovr, got, sizeof(got));
	CHECK(n > 0);
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "%s: expected:\n%s--- got:\n%s---\n", name,
		    want, got);
		check_failures++;
	}
	/* A password value never shows in a message. */
	CHECK(strstr(got, "hunter2") == NULL);
	if (n == 0)
		config_free(&cfg);
}

static void
good_config(void)
{
	struct config cfg;
	const struct user_cfg *u;
	char got[4096];

	printf("RUN users, users_file and the listeners' policy\n");
	put("users", "# name:hash[:senders]\n"
	    "\n"
	    "bob@example.org:" HASH_6 "\n"
	    "carol:" HASH_2B ":carol@example.org, @carol.example\r\n",
	    0640);
	CHECK_FATAL(load(&cfg,
	    "listen:\n"
	    "  - address: 127.0.0.1:2525\n"
	    "    auth: optional\n"
	    "    auth_insecure: true\n"
	    "  - address: 127.0.0.1:2587\n"
	    "    auth: required\n"
	    "  - address: 127.0.0.1:2526\n"
	    "sender_restrictions: email\n"
	    "relay_domains: [Local.Example, .sub.example.]\n"
	    "users:\n"
	    "  - name: alice\n"
	    "    password: \"" HASH_Y "\"\n"
	    "    allowed_from: [alice@example.com, \"@alias.example\"]\n"
	    "users_file: USERS\n", NULL, got, sizeof(got)) == 0 ||
	    (fprintf(stderr, "%s", got), 0));
	CHECK(cfg.listen[0].policy.auth == SMTP_AUTH_OPTIONAL);
	CHECK(cfg.listen[0].policy.auth_insecure);
	CHECK(cfg.listen[0].policy.senders == SMTP_SENDER_EMAIL);
	CHECK(cfg.listen[1].policy.auth == SMTP_AUTH_REQUIRED);
	CHECK(!cfg.listen[1].policy.auth_insecure);
	CHECK(cfg.listen[2].policy.auth == SMTP_AUTH_OFF);
	CHECK(cfg.listen[2].policy.senders == SMTP_SENDER_EMAIL);
	CHECK(cfg.nrelay_domains == 2);
	CHECK(strcmp(cfg.relay_domains[0].s, "local.example") == 0);
	CHECK(strcmp(cfg.relay_domains[1].s, ".sub.example") == 0);
	CHECK(cfg.nusers == 3);
	u = config_user_find(&cfg, "alice");
	CHECK_FATAL(u != NULL);
	CHECK(strcmp(u->password, HASH_Y) == 0);
	CHECK(u->nallowed_from == 2);
	CHECK(strcmp(u->allowed_from[1].s, "@alias.example") == 0);
	u = config_user_find(&cfg, "carol");
	CHECK_FATAL(u != NULL);
	CHECK(strcmp(u->password, HASH_2B) == 0);
	CHECK(u->nallowed_from == 2);
	CHECK(strcmp(u->allowed_from[0].s, "carol@example.org") == 0);
	CHECK(strcmp(u->allowed_from[1].s, "@carol.example") == 0);
	u = config_user_find(&cfg, "bob@example.org");
	CHECK(u != NULL && u->nallowed_from == 0);
	CHECK(config_user_find(&cfg, "Alice") == NULL);
	CHECK(config_user_find(&cfg, "dave") == NULL);
	config_free(&cfg);

	printf("RUN overrides reach the policy too\n");
	{
		static const char *const ovr[] = { "listen.0.auth=required",
		    "sender_restrictions=domain", NULL };

		CHECK_FATAL(load(&cfg, "users:\n  - name: a\n    password: '"
		    HASH_Y "'\n", ovr, got, sizeof(got)) == 0);
		CHECK(cfg.listen[0].policy.auth == SMTP_AUTH_REQUIRED);
		CHECK(cfg.listen[0].policy.senders == SMTP_SENDER_DOMAIN);
		config_free(&cfg);
	}
}

static void
bad_config(void)
{
	expect("plaintext password",
	    "users:\n  - name: alice\n    password: hunter2\n", NULL,
	    "@:3: users.0.password: not a crypt(3) hash (a plaintext "
	    "password?); store the output of `sluicectl hash-password` (the "
	    "value is not shown)\n");
	expect("legacy and unknown methods",
	    "users:\n"
	    "  - {name: a, password: '$1$hunter2$abcdefghijklmnopqrstuv'}\n"
	    "  - {name: b, password: '$5$hunter2$19HbK6.WzXiOPV1eZtclS5yD'}\n"
	    "  - {name: c, password: '$hunter2$x'}\n", NULL,
	    "@:2: users.0.password: hash method not accepted (use yescrypt "
	    "$y$, bcrypt $2b$ or sha512-crypt $6$, as `sluicectl "
	    "hash-password` writes)\n"
	    "@:3: users.1.password: hash method not accepted (use yescrypt "
	    "$y$, bcrypt $2b$ or sha512-crypt $6$, as `sluicectl "
	    "hash-password` writes)\n"
	    "@:4: users.2.password: hash method not accepted (use yescrypt "
	    "$y$, bcrypt $2b$ or sha512-crypt $6$, as `sluicectl "
	    "hash-password` writes)\n");
	expect("a salt without its hash",
	    "users:\n  - {name: a, password: '$y$j9T$F5Jx5fExrKuPp53xLKQ..1$'}\n"
	    "  - {name: b, password: '$2b$05$6tVnc1SX3wKqGuh2YntVAO'}\n"
	    "  - {name: c, password: '$6$hunter2'}\n", NULL,
	    "@:2: users.0.password: not a whole crypt(3) hash (a salt without "
	    "its hash?)\n"
	    "@:3: users.1.password: not a whole crypt(3) hash (a salt without "
	    "its hash?)\n"
	    "@:4: users.2.password: not a whole crypt(3) hash (a salt without "
	    "its hash?)\n");
	expect("odd characters",
	    "users:\n  - {name: a, password: '$6$salt$hunter2 x'}\n", NULL,
	    "@:2: users.0.password: not a crypt(3) hash (unexpected "
	    "characters; the value is not shown)\n");
	expect("names, senders, modes",
	    "listen:\n  - address: 127.0.0.1:25\n    auth: yes\n"
	    "sender_restrictions: strict\n"
	    "relay_domains: [example.com, \"*.example.com\", \"[1.2.3.4]\"]\n"
	    "users:\n"
	    "  - name: 'a:b'\n    password: '" HASH_Y "'\n"
	    "    allowed_from: [alice, \"@\", \"@[1.2.3.4]\", a@b@c.d]\n"
	    "  - password: '" HASH_Y "'\n", NULL,
	    "@:3: listen.0.auth: invalid value 'yes' (expected none, "
	    "optional or required)\n"
	    "@:4: sender_restrictions: invalid value 'strict' (expected none, "
	    "domain or email)\n"
	    "@:5: relay_domains.1: invalid domain '*.example.com' (expected "
	    "example.com, or .example.com for its subdomains)\n"
	    "@:5: relay_domains.2: invalid domain '[1.2.3.4]' (expected "
	    "example.com, or .example.com for its subdomains)\n"
	    "@:7: users.0.name: invalid user name 'a:b' (no control "
	    "characters, no ':')\n"
	    "@:9: users.0.allowed_from.0: invalid sender 'alice' (expected "
	    "user@example.com, or @example.com for the whole domain)\n"
	    "@:9: users.0.allowed_from.1: invalid sender '@' (expected "
	    "user@example.com, or @example.com for the whole domain)\n"
	    "@:9: users.0.allowed_from.2: invalid sender '@[1.2.3.4]' "
	    "(expected user@example.com, or @example.com for the whole "
	    "domain)\n"
	    "@:9: users.0.allowed_from.3: invalid sender 'a@b@c.d' (expected "
	    "user@example.com, or @example.com for the whole domain)\n"
	    "@:10: users.1.name: required key is missing\n");
	expect("AUTH without users",
	    "listen:\n  - address: 127.0.0.1:25\n  - address: 127.0.0.1:26\n"
	    "    auth: optional\n", NULL,
	    "@:4: listen.1.auth: AUTH is on but no user is configured "
	    "(users, users_file)\n");

	put("users", "a:" HASH_Y "\n", 0644);
	expect("users_file readable by everyone", "users_file: USERS\n",
	    NULL, "@:1: users_file: users file % has mode 0644: others may "
	    "read or change it (chmod o-rw it)\n");
	put("users", "a:" HASH_Y "\n", 0602);
	expect("users_file writable by everyone", "users_file: USERS\n",
	    NULL, "@:1: users_file: users file % has mode 0602: others may "
	    "read or change it (chmod o-rw it)\n");
	unlink(put("users", "", 0600));
	expect("users_file missing", "users_file: USERS\n", NULL,
	    "@:1: users_file: cannot open users file %: No such file or "
	    "directory\n");
	put("users", "# users\n"
	    "alice:" HASH_Y "\n"
	    "bob hunter2\n"
	    "carol:hunter2\n"
	    "dave:" HASH_Y ":dave\n"
	    "alice:" HASH_6 "\n"
	    "ctl\x01:" HASH_Y "\n", 0600);
	expect("users_file lines",
	    "users:\n  - name: dave\n    password: '" HASH_Y "'\n"
	    "users_file: USERS\n", NULL,
	    "%:3: expected name:hash[:senders]\n"
	    "%:4: not a crypt(3) hash (a plaintext password?); store the "
	    "output of `sluicectl hash-password` (the value is not shown)\n"
	    "%:5: invalid sender 'dave' (expected user@example.com, or "
	    "@example.com for the whole domain)\n"
	    "%:5: user 'dave' is defined twice\n"
	    "%:6: user 'alice' is defined twice\n"
	    "%:7: invalid user name 'ctl?' (no control characters, no ':')\n");
}

int
main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/t_config_auth.XXXXXX");
	CHECK_FATAL(mkdtemp(dir) != NULL);
	good_config();
	bad_config();
	unlink(put("users", "", 0600));
	unlink(put("sluice.yaml", "", 0600));
	CHECK(rmdir(dir) == 0);
	return check_done();
}
