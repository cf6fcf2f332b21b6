/*
 * hash_password.c - `sluicectl hash-password`; see hash_password.h.
 *
 * The hash is yescrypt ("$y$", libxcrypt's recommended method and cost,
 * with a salt from the system's random source), the method sluiced's
 * password workers spend the most on per guess. The password itself is
 * never written anywhere and is wiped from memory once hashed.
 *
 * From a terminal, echo is off while the password is typed (restored on
 * SIGINT, SIGTERM and SIGTSTP too), and it must be typed twice alike;
 * scripts pipe it in once: `echo "$PW" | sluicectl hash-password`.
 */
#include "hash_password.h"

#include <crypt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "../proto/sasl.h"

/* Room for SASL_FIELD_MAX bytes, a newline and a byte to spot overflow. */
#define PW_BUF (SASL_FIELD_MAX + 3)

static struct termios saved;
static volatile sig_atomic_t echo_off;

static void
restore_echo(int sig)
{
	if (echo_off)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * One line of fd 0 into buf, without its line end. 0, or -1 with the
 * reason on stderr (end of input, or longer than SMTP AUTH can carry).
 */
static int
read_line(char *buf, size_t len)
{
	size_t n;

	if (fgets(buf, (int)len, stdin) == NULL) {
		fputs("sluicectl: hash-password: no password given\n", stderr);
		return -1;
	}
	n = strlen(buf);
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	else if (!feof(stdin)) {
		/* The rest of an overlong line is not read: it is refused. */
		fprintf(stderr, "sluicectl: hash-password: longer than %d "
		    "bytes, more than SMTP AUTH carries\n", SASL_FIELD_MAX);
		return -1;
	}
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	if (n > SASL_FIELD_MAX) {
		fprintf(stderr, "sluicectl: hash-password: longer than %d "
		    "bytes, more than SMTP AUTH carries\n", SASL_FIELD_MAX);
		return -1;
	}
	if (n == 0) {
		fputs("sluicectl: hash-password: empty password\n", stderr);
		return -1;
	}
	return 0;
}

/* Prompt on stderr and read a line with echo off. */
static int
read_hidden(const char *prompt, char *buf, size_t len)
{
	struct termios t;
	int rc;

	if (tcgetattr(STDIN_FILENO, &saved) < 0) {
		fputs(prompt, stderr);
		return read_line(buf, len);
	}
	t = saved;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	signal(SIGINT, restore_echo);
	signal(SIGTERM, restore_echo);
	signal(SIGTSTP, restore_echo);
	echo_off = 1;
	/* Echo off before the prompt: nothing typed after it is shown. */
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
	fputs(prompt, stderr);
	fflush(stderr);
	rc = read_line(buf, len);
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	echo_off = 0;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGTSTP, SIG_DFL);
	return rc;
}

int
ctl_hash_password(int argc, char **argv)
{
	char pw[PW_BUF], again[PW_BUF], setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;
	const char *out;
	int rc = 1;

	(void)argv;
	if (argc != 1) {
		fputs("sluicectl: hash-password takes no arguments (the "
		    "password is read from the terminal or stdin)\n", stderr);
		return 2;
	}
	if (isatty(STDIN_FILENO)) {
		if (read_hidden("Password: ", pw, sizeof(pw)) < 0 ||
		    read_hidden("Password again: ", again, sizeof(again)) < 0)
			goto out;
		if (strcmp(pw, again) != 0) {
			fputs("sluicectl: hash-password: the passwords do not "
			    "match\n", stderr);
			goto out;
		}
	} else if (read_line(pw, sizeof(pw)) < 0) {
		goto out;
	}
	memset(&cd, 0, sizeof(cd));
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting,
	    sizeof(setting)) == NULL ||
	    (out = crypt_rn(pw, setting, &cd, (int)sizeof(cd))) == NULL) {
		perror("sluicectl: hash-password: crypt");
		goto out;
	}
	if (printf("%s\n", out) < 0 || fflush(stdout) != 0) {
		perror("sluicectl: hash-password: stdout");
		goto out;
	}
	rc = 0;
out:
	explicit_bzero(pw, sizeof(pw));
	explicit_bzero(again, sizeof(again));
	explicit_bzero(&cd, sizeof(cd));
	return rc;
}
