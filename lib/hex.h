/*
 * hex.h - 64-bit numbers as fixed-width upper-case hex, so that the text
 * sorts like the number (queue ids: queue/queue_id.c, and the inbound
 * session that prints them without depending on the queue); and the value
 * of one hex digit, for whatever reads hex back.
 */
#ifndef SLUICE_HEX_H
#define SLUICE_HEX_H

#include <stdint.h>

#define HEX64_LEN 16

/* v as HEX64_LEN digits, leading zeros kept, NUL-terminated. */
static inline void
hex64_format(uint64_t v, char out[HEX64_LEN + 1])
{
	static const char digits[] = "0123456789ABCDEF";

	for (int i = HEX64_LEN - 1; i >= 0; i--) {
		out[i] = digits[v & 0xf];
		v >>= 4;
	}
	out[HEX64_LEN] = '\0';
}

/* The value of one hex digit (either case), or -1 if c is not one. */
static inline int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
