/*
 * Description: struct buf keeps its ceiling. With max set, every append
 * (buf_append, buf_puts, buf_printf, buf_reserve) that would pass it fails
 * with -ENOBUFS and leaves the contents as they were; an exact fit
 * succeeds (also for buf_printf, whose NUL may sit past max); the
 * allocation stays within max + 1; max 0 is no ceiling; buf_reset and
 * buf_free keep max. buf_puts_all appends its pieces in order, or
 * nothing when they would pass max.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "check.h"

int
main(void)
{
	struct buf b = { .max = 10 };
	struct buf u = { 0 };
	size_t i;

	printf("RUN ceiling\n");
	CHECK(buf_append(&b, "0123456", 7) == 0);
	CHECK(buf_append(&b, "7890", 4) == -ENOBUFS);
	CHECK(b.len == 7 && memcmp(b.data, "0123456", 7) == 0);
	CHECK(buf_puts(&b, "abcd") == -ENOBUFS);
	CHECK(buf_printf(&b, "%s", "abcd") == -ENOBUFS);
	CHECK(b.len == 7 && memcmp(b.data, "0123456", 7) == 0);
	CHECK(buf_reserve(&b, 4) == -ENOBUFS);
	CHECK(buf_reserve(&b, 3) == 0);
	CHECK(buf_printf(&b, "%d", 789) == 0);	/* exactly max */
	CHECK(b.len == 10 && memcmp(b.data, "0123456789", 10) == 0);
	CHECK(b.cap <= b.max + 1);
	CHECK(buf_append(&b, "x", 1) == -ENOBUFS);
	CHECK(buf_append(&b, "", 0) == 0);
	CHECK(buf_reserve(&b, SIZE_MAX) == -ENOBUFS);

	printf("RUN reset and free keep max\n");
	buf_reset(&b);
	CHECK(b.max == 10);
	CHECK(buf_append(&b, "0123456789x", 11) == -ENOBUFS);
	buf_free(&b);
	CHECK(b.max == 10 && b.data == NULL && b.len == 0);
	CHECK(buf_append(&b, "0123456789x", 11) == -ENOBUFS);
	CHECK(buf_append(&b, "0123456789", 10) == 0);
	CHECK(b.cap <= b.max + 1);

	printf("RUN lowered max\n");
	b.max = 4;	/* below what is held: nothing more fits */
	CHECK(buf_append(&b, "x", 1) == -ENOBUFS);
	buf_consume(&b, 8);
	CHECK(b.len == 2 && buf_append(&b, "ab", 2) == 0);
	CHECK(buf_append(&b, "c", 1) == -ENOBUFS);
	buf_free(&b);

	printf("RUN pieces: all or none\n");
	{
		const char *fit[] = { "ab", "", "cde", "f" };
		const char *over[] = { "gh", "ijk" };

		b.max = 8;
		CHECK(buf_puts_all(&b, fit, 4) == 0);
		CHECK(b.len == 6 && memcmp(b.data, "abcdef", 6) == 0);
		CHECK(buf_puts_all(&b, over, 2) == -ENOBUFS);
		CHECK(b.len == 6);	/* not even "gh" */
		CHECK(buf_puts_all(&b, over, 1) == 0);
		CHECK(b.len == 8 && memcmp(b.data, "abcdefgh", 8) == 0);
		CHECK(buf_puts_all(&b, fit + 1, 1) == 0);	/* "" fits */
		buf_free(&b);
	}

	printf("RUN no ceiling\n");
	for (i = 0; i < 100000; i++)
		CHECK(buf_printf(&u, "%05zu", i % 100000) == 0);
	CHECK(u.len == 500000);
	CHECK(memcmp(u.data + 5 * 12345, "12345", 5) == 0);
	buf_free(&u);
	return check_done();
}
