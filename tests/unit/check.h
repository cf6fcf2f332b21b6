/*
 * check.h - the smallest test harness: CHECK() aborts the case with file:line.
 *
 * A unit test is one program per behaviour, tests/unit/t_NAME.c, built as
 * tests/unit/t_NAME.t. Exit 0: pass; 1: fail; 77: skip. Table-driven tests
 * print "RUN name" / "PASS name" / "FAIL name" per case.
 */
#ifndef SLUICE_CHECK_H
#define SLUICE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "../../lib/buf.h"

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

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

#endif
