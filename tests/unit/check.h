/*
 * check.h - the smallest test harness: CHECK() aborts the case with file:line.
 *
 * A unit test is one program per behaviour, tests/unit/t_NAME.c, built as
 * tests/unit/t_NAME.t. Exit 0: pass; 1: fail; 77: skip. Table-driven tests
 * print "RUN name" / "PASS name" / "FAIL name" per case (check_run(),
 * check_run_table()). Also here: golden files (check_slurp(), the NAME.in
 * walk, the .ref compare, the escapes of .in lines) and a fixed
 * pseudo-random sequence. The queue's, the committer's and the config
 * loader's tests share more in queue_check.h, commit_check.h and
 * config_check.h.
 */
#ifndef SLUICE_CHECK_H
#define SLUICE_CHECK_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/buf.h"
#include "../../lib/hex.h"

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

/* The number of elements of array a. */
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int check_failures;

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",        \
			    __FILE__, __LINE__, #cond);                     \
			check_failures++;                                   \
		}                                                           \
	} while (0)

#define CHECK_FATAL(cond)                                                   \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",        \
			    __FILE__, __LINE__, #cond);                     \
			exit(T_EXIT_FAIL);                                  \
		}                                                           \
	} while (0)

static inline int
check_done(void)
{
	if (check_failures) {
		fprintf(stderr, "%d check(s) failed\n", check_failures);
		return T_EXIT_FAIL;
	}
	return T_EXIT_PASS;
}

/*
 * A whole file, NUL-terminated, malloc'd (free it); NULL if it cannot be
 * read. *len (if len is not NULL) is its length without the NUL. For the
 * golden-file tests.
 */
static inline char *
check_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b = { 0 };
	char tmp[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, n);
	fclose(f);
	if (len != NULL)
		*len = b.len;
	buf_append(&b, "", 1);
	return b.data;
}

/*
 * One named case of a table-driven test: "RUN name", fn, then "PASS name"
 * or "FAIL name" by whether a CHECK failed in it. Returns true if it
 * passed. stdout is flushed first, so that the lines stay in order with
 * stderr's.
 */
static inline bool
check_run(const char *name, void (*fn)(void))
{
	int before = check_failures;

	printf("RUN %s\n", name);
	fflush(stdout);
	fn();
	printf("%s %s\n", check_failures != before ? "FAIL" : "PASS", name);
	return check_failures == before;
}

struct check_case {
	const char *name;
	void (*fn)(void);
};

/*
 * Every case of a table, in order; returns how many failed. stdout is
 * made line-buffered first, to keep RUN/PASS lines whole when stderr is
 * merged into it.
 */
static inline int
check_run_table(const struct check_case *c, size_t n)
{
	int failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < n; i++)
		failed += !check_run(c[i].name, c[i].fn);
	return failed;
}

/*
 * Pseudo-random numbers for the tests that try many inputs: xorshift64*
 * from a fixed seed, the same sequence in every run, so that a failure
 * can be run again. One sequence per test program.
 */
static uint64_t check_rng = 0x9e3779b97f4a7c15u;

static inline uint64_t
check_rand(void)
{
	check_rng ^= check_rng >> 12;
	check_rng ^= check_rng << 25;
	check_rng ^= check_rng >> 27;
	return check_rng * 0x2545f4914f6cdd1du;
}

/*
 * The next case of a golden directory: the NAME of its next NAME.in (in
 * readdir order) into name[0..cap); false when there is none.
 */
static inline bool
check_golden_next(DIR *d, char *name, size_t cap)
{
	struct dirent *de;

	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);

		if (n < 4 || strcmp(de->d_name + n - 3, ".in") != 0 ||
		    n - 3 >= cap)
			continue;
		memcpy(name, de->d_name, n - 3);
		name[n - 3] = '\0';
		return true;
	}
	return false;
}

/*
 * Is got[0..len) the golden file path holds? If not, says so on stderr
 * with both texts. SLUICE_GOLDEN_UPDATE=1 rewrites the file from got
 * first: review the change with git diff.
 */
static inline bool
check_golden(const char *name, const char *path, const char *got, size_t len)
{
	const char *up = getenv("SLUICE_GOLDEN_UPDATE");
	size_t rlen = 0;
	char *ref;
	bool same;

	if (up != NULL && strcmp(up, "1") == 0) {
		FILE *f = fopen(path, "wb");

		CHECK_FATAL(f != NULL);
		CHECK_FATAL(fwrite(got, 1, len, f) == len);
		CHECK_FATAL(fclose(f) == 0);
	}
	ref = check_slurp(path, &rlen);
	same = ref != NULL && rlen == len && memcmp(ref, got, len) == 0;
	if (!same)
		fprintf(stderr, "--- %s expected (%s):\n%s--- got:\n%.*s", name,
		    path, ref != NULL ? ref : "(none)\n", (int)len, got);
	free(ref);
	return same;
}

/*
 * One line p[0..n) of a golden .in file, as the bytes it stands for,
 * appended to b: \r \n \t \0, \xHH the byte HH, \RNNNc NNN times the
 * byte c, any other \c the character c; then CRLF, unless the line ends
 * in \c. A malformed escape fails the test rather than mean a byte.
 */
static inline void
check_unescape(struct buf *b, const char *p, size_t n)
{
	const char *q = p, *end = p + n;
	int crlf = 1;

	while (q < end) {
		char c = *q++;
		size_t k = 1;

		if (c == '\\' && q < end) {
			char e = *q++;

			if (e == 'r') {
				c = '\r';
			} else if (e == 'n') {
				c = '\n';
			} else if (e == 't') {
				c = '\t';
			} else if (e == '0') {
				c = '\0';
			} else if (e == 'c' && q == end) {
				crlf = 0;
				continue;
			} else if (e == 'x' && end - q >= 2) {
				CHECK_FATAL(hex_digit(q[0]) >= 0 &&
				    hex_digit(q[1]) >= 0);
				c = (char)(hex_digit(q[0]) * 16 +
				    hex_digit(q[1]));
				q += 2;
			} else if (e == 'R') {
				char *num_end;
				long r = strtol(q, &num_end, 10);

				CHECK_FATAL(r > 0 && num_end < end);
				k = (size_t)r;
				q = num_end;
				c = *q++;
			} else {
				c = e;
			}
		}
		while (k-- > 0)
			CHECK_FATAL(buf_append(b, &c, 1) == 0);
	}
	if (crlf)
		CHECK_FATAL(buf_append(b, "\r\n", 2) == 0);
}

#endif
